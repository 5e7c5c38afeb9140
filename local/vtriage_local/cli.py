"""`vtriage run`: run alert files through the whole pipeline on a local AWS (moto) and VirusTotal replay."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from vtriage_local.alert_files import UsageError
from vtriage_local.report import render
from vtriage_local.runner import DEFERRED_WAIT_S, VirusTotalSource, run_files
from vtriage_local.stack import LocalSetupError

EXIT_OK, EXIT_SETUP, EXIT_REJECTED = 0, 1, 2


def _faults(text: str) -> dict[str, float]:
    faults: dict[str, float] = {}
    for part in filter(None, text.split(",")):
        kind, _, probability = part.partition(":")
        try:
            faults[kind.strip()] = float(probability)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"bad fault {part!r}: expected KIND:PROBABILITY, e.g. 429:0.3"
            ) from None
    return faults


def _parameter(text: str) -> tuple[str, str]:
    key, separator, value = text.partition("=")
    if not separator or not key:
        raise argparse.ArgumentTypeError(f"bad parameter {text!r}: expected KEY=VALUE, e.g. DryRun=false")
    return key, value


def add_run_command(commands: Any) -> None:
    """Add `run` to the `vtriage` command's subcommands; it sets `handler`."""
    run = commands.add_parser(
        "run",
        help="run alert files through the whole pipeline on a local AWS (moto) and VirusTotal replay",
        description="Each FILE may hold an SQS event, an EventBridge event, a GuardDuty finding, "
        "get-findings output, a Security Hub event, an OCSF finding, a CrowdStrike Falcon alert (Alerts "
        "API entity or response, Event Streams detection) or a Google Workspace Alert Center alert "
        "(alerts.list output, a Pub/Sub push). VirusTotal is live when VT_API_KEY is set, replayed from "
        "recordings otherwise.",
    )
    run.add_argument("files", nargs="+", type=Path, metavar="FILE")
    run.add_argument(
        "--vt-fixtures",
        type=Path,
        metavar="DIR",
        help="recorded VirusTotal responses to serve (DIR/<collection>/<id>.json)",
    )
    run.add_argument("--json", action="store_true", help="print one JSON document on stdout and nothing else")
    run.add_argument(
        "--vt-latency-ms", type=int, default=0, help="latency the replay server adds to each answer"
    )
    run.add_argument(
        "--vt-faults",
        type=_faults,
        default=None,
        metavar="KIND:P,...",
        help="faults the replay server injects, e.g. 429:0.3,500:0.1,timeout:0.05",
    )
    run.add_argument("--seed", type=int, default=0, help="seed of the injected faults")
    run.add_argument(
        "--deferred-wait-s",
        type=float,
        default=DEFERRED_WAIT_S,
        metavar="N",
        help="how long to wait for records deferred until the VirusTotal quota reopens; those still "
        "waiting are listed as pending (default %(default)g)",
    )
    run.add_argument(
        "--parameter-overrides",
        action="append",
        type=_parameter,
        default=[],
        metavar="KEY=VALUE",
        help="a template parameter, as sam deploy takes it (repeatable), e.g. DryRun=false to act for real",
    )
    run.add_argument("--verbose", action="store_true", help="send the functions' logs to stderr")
    run.set_defaults(handler=run_alert_files)


def run_alert_files(arguments: argparse.Namespace) -> int:
    """`vtriage run`: 0 when every finding became a case, a repeat or was ignored, 2 when some were
    refused or are still pending, 1 on a usage or set-up error."""
    for path in arguments.files:
        if path.is_dir():
            print(f"vtriage: {path} is a folder: name its files, e.g. {path / '*.json'}", file=sys.stderr)
            return EXIT_SETUP
        if not path.is_file():
            print(f"vtriage: no such file: {path}", file=sys.stderr)
            return EXIT_SETUP
    if arguments.vt_fixtures is not None and not arguments.vt_fixtures.is_dir():
        print(f"vtriage: --vt-fixtures {arguments.vt_fixtures} is not a folder", file=sys.stderr)
        return EXIT_SETUP
    source = VirusTotalSource.from_environment(
        recordings=arguments.vt_fixtures,
        latency_ms=arguments.vt_latency_ms,
        faults=arguments.vt_faults,
        seed=arguments.seed,
    )
    parameters = dict(arguments.parameter_overrides)
    wait = max(0.0, arguments.deferred_wait_s)
    log_path: str | None = None
    try:
        if arguments.verbose:
            document = run_files(
                arguments.files, source, sys.stderr, parameters=parameters, deferred_wait_s=wait
            )
        else:
            with tempfile.NamedTemporaryFile("w", prefix="vtriage-", suffix=".log", delete=False) as log:
                log_path = log.name
                document = run_files(
                    arguments.files, source, log, parameters=parameters, deferred_wait_s=wait
                )
    except (UsageError, LocalSetupError) as error:
        print(f"vtriage: {error}", file=sys.stderr)
        return EXIT_SETUP
    if arguments.json:
        print(json.dumps(document, indent=2))
    else:
        print(render(document, log_path))
    return EXIT_REJECTED if document["failures"] or document["pending"] else EXIT_OK
