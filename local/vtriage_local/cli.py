"""The `vtriage` command: run alerts through the whole pipeline locally."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError

from vtriage.adapters.dynamodb import DynamoCaseRepository
from vtriage.composition.remediate import remediator
from vtriage.config import RemediateSettings
from vtriage.errors import CaseNotFoundError, ConfigurationError, VtriageError
from vtriage.intake_api import AlertRejectedError
from vtriage.models import Case, CaseStatus
from vtriage.remediate import rollback_case
from vtriage_local.intake_client import IntakeAnswer, IntakeUnusableError, SignedIntake
from vtriage_local.report import render
from vtriage_local.runner import (
    DEFERRED_WAIT_S,
    Delivery,
    UsageError,
    VirusTotalSource,
    read_deliveries,
    run_files,
)
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vtriage", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "run",
        help="run alert files through the whole pipeline on a local AWS (moto) and VirusTotal replay",
        description="Each FILE may hold an SQS event, an EventBridge event, a GuardDuty finding, "
        "get-findings output, a Security Hub event or an OCSF finding. VirusTotal is live when "
        "VT_API_KEY is set, replayed from recordings otherwise.",
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
    _add_send_command(commands)
    _add_cases_command(commands)
    rollback = commands.add_parser(
        "rollback",
        help="undo what a case's actions changed in a deployed stack's account, last action first",
        description="Reads the remediate function's settings from the environment, as the function does "
        "(CASES_TABLE_NAME, OWN_ACCOUNT_ID, QUARANTINE_GROUP_NAME, WAF_IP_SET_*, NACL_RULE_*, "
        "QUARANTINE_BUCKET, ...), with your ordinary AWS credentials. What cannot be undone (forensic "
        "snapshots) is said so; a change another open case relies on is kept until that case is rolled back "
        "too; a quarantined object is restored and its quarantined copy kept.",
    )
    rollback.add_argument("case_id", metavar="CASE_ID")
    rollback.add_argument("--json", action="store_true", help="print the outcome as JSON")
    return parser


def _add_send_command(commands: Any) -> None:
    send = commands.add_parser(
        "send",
        help="push alert files to a deployed stack through its intake URL (SigV4-signed)",
        description="Each FILE is read as `run` reads it: each record of an SQS event, or the whole "
        "document as one message. Each is posted to the stack's intake function URL, signed with your "
        "ordinary AWS credentials (a role with the stack's AlertSendersPolicy): the intake reads it as "
        "the enrich function will, queues it stamped with who sent it, or answers with the field at "
        "fault. Pushed alerts are ticketed or wait for a person's approval (PushedAlertActions).",
    )
    send.add_argument("files", nargs="+", type=Path, metavar="FILE")
    send.add_argument("--intake-url", required=True, metavar="URL", help="the stack's IntakeUrl output")
    send.add_argument("--region", help="the stack's Region (default: the URL's, else your AWS configuration)")
    send.add_argument(
        "--json", action="store_true", help="print one JSON document on stdout and nothing else"
    )


def _push(delivery: Delivery, intake: SignedIntake) -> IntakeAnswer:
    """Post one record to the intake; a file SQS could not carry (not text, an SQS event without
    records) is refused here, as the intake would refuse its body."""
    if delivery.refused is not None:
        return IntakeAnswer(400, AlertRejectedError(400, delivery.refused, "body").as_json())
    return intake.post(delivery.body)


def _send(arguments: argparse.Namespace) -> int:
    """`vtriage send`: 0 when every record was queued whole, 2 when some records, or findings in them,
    were refused, 1 on a usage error or when the intake could not be used."""
    document: dict[str, Any] = {"sent": [], "rejected": []}
    status = EXIT_OK
    partly_refused = False
    try:
        deliveries = [(path, delivery) for path in arguments.files for delivery in read_deliveries(path)]
        intake = SignedIntake(arguments.intake_url, arguments.region)
        for path, delivery in deliveries:
            answer = _push(delivery, intake)
            if answer.status != 202:
                rejected = answer.document
                document["rejected"].append({"source_id": delivery.source_id, **rejected})
                if not arguments.json:
                    where = f" ({rejected.get('field')})" if rejected.get("field") else ""
                    print(f"rejected  {path}  {delivery.source_id}{where}: {rejected.get('error')}")
                    # A lone refusal is the reason above; several are listed one by one.
                    refusals = rejected.get("refused") or []
                    for refusal in refusals if len(refusals) > 1 else ():
                        print(f"  refused {refusal['where']}: {refusal['reason']}")
                continue
            accepted = answer.document
            document["sent"].append({"source_id": delivery.source_id, **accepted})
            if accepted.get("refused"):
                partly_refused = True
            if not arguments.json:
                alerts = ", ".join(accepted.get("alert_ids") or []) or "none"
                print(
                    f"sent      {path}  {delivery.source_id}: message {accepted.get('message_id')}, "
                    f"alerts {alerts}, as {accepted.get('sender') or 'an unknown sender'}"
                )
                for refusal in accepted.get("refused") or []:
                    print(f"  refused {refusal['where']}: {refusal['reason']}")
                for ignored in accepted.get("ignored") or []:
                    alert_id = ignored["alert_id"] or "no id"
                    print(f"  ignored {ignored['where']} ({alert_id}): {ignored['reason']}")
    except UsageError as error:
        print(f"vtriage: {error}", file=sys.stderr)
        return EXIT_SETUP
    except IntakeUnusableError as error:
        # Nothing after this record was sent; what was sent before it stays listed.
        print(f"vtriage: cannot push to {arguments.intake_url}: {error}", file=sys.stderr)
        document["error"] = str(error)
        status = EXIT_SETUP
    if arguments.json:
        print(json.dumps(document, indent=2))
    if status == EXIT_OK and (document["rejected"] or partly_refused):
        status = EXIT_REJECTED
    return status


def _status(text: str) -> CaseStatus:
    try:
        return CaseStatus(text.upper())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"unknown status {text!r}: one of {', '.join(status.value for status in CaseStatus)}"
        ) from None


def _add_cases_command(commands: Any) -> None:
    cases = commands.add_parser(
        "cases",
        help="list the cases of a deployed stack, by status, most recently updated first",
        description="Reads the cases table of a deployed stack (its by-status index) with your ordinary AWS "
        "credentials; AWS_ENDPOINT_URL, when set, points it elsewhere (a local moto server).",
    )
    cases.add_argument(
        "--status",
        type=_status,
        action="append",
        metavar="STATUS",
        help="only cases in this status (repeatable): " + ", ".join(status.value for status in CaseStatus),
    )
    cases.add_argument(
        "--table",
        default=os.environ.get("CASES_TABLE_NAME"),
        metavar="NAME",
        help="the stack's cases table (default: $CASES_TABLE_NAME)",
    )
    cases.add_argument("--region", help="the table's region (default: your AWS configuration)")
    cases.add_argument("--limit", type=int, default=None, metavar="N", help="at most N cases")
    cases.add_argument(
        "--json", action="store_true", help="print one JSON document on stdout and nothing else"
    )


def case_row(case: Case) -> dict[str, Any]:
    """A case as `vtriage cases --json` lists it."""
    alert = case.alert
    return {
        "case_id": case.case_id,
        "status": case.status.value,
        "verdict": case.verdict.value,
        "branch": case.branch.value if case.branch else None,
        "source": alert.source,
        "type": alert.type,
        "title": alert.title,
        "alert_id": alert.id,
        "severity": alert.severity.score,
        "severity_label": alert.severity.label,
        "created_at": case.created_at.isoformat(),
        "updated_at": case.updated_at.isoformat(),
        "closed_at": case.closed_at.isoformat() if case.closed_at else None,
        "actions": [
            {"type": action.type.value, "target": action.target, "status": action.status.value}
            for action in case.actions
        ],
        "ticket": {"provider": case.ticket.provider, "id": case.ticket.id, "url": case.ticket.url}
        if case.ticket
        else None,
        "repeat_count": case.repeat_count,
        "error": case.error,
        "history": [
            {"status": entry.status.value, "at": entry.at.isoformat(), "note": entry.note}
            for entry in case.history
        ],
    }


def _case_line(case: Case) -> str:
    ticket = case.ticket.id if case.ticket else "-"
    repeats = f" +{case.repeat_count} repeats" if case.repeat_count else ""
    return (
        f"{case.updated_at.isoformat(timespec='seconds'):<26} {case.status.value:<18} "
        f"{case.verdict.value:<10} {case.alert.severity.label:<8} {ticket:<14} "
        f"{case.case_id}  {case.alert.type}{repeats}"
    )


def _cases(arguments: argparse.Namespace) -> int:
    """`vtriage cases`: 0 with the list (which may be empty), 1 on a usage or AWS error."""
    if not arguments.table:
        print("vtriage: name the cases table with --table or CASES_TABLE_NAME", file=sys.stderr)
        return EXIT_SETUP
    # Lambda and many tools set AWS_REGION, which boto3 alone does not read (it reads AWS_DEFAULT_REGION).
    session = boto3.session.Session(region_name=arguments.region or os.environ.get("AWS_REGION") or None)
    if session.region_name is None:
        print("vtriage: no AWS region: set AWS_REGION or pass --region", file=sys.stderr)
        return EXIT_SETUP
    # Listing never writes, so the retention and clock the repository takes for writes play no part.
    repository = DynamoCaseRepository(
        session.client("dynamodb"), arguments.table, timedelta(days=1), _utc_now
    )
    try:
        found = repository.list_cases(arguments.status, limit=arguments.limit)
    except (BotoCoreError, ClientError, VtriageError, ValidationError) as error:
        print(f"vtriage: cannot list the cases of {arguments.table}: {error}", file=sys.stderr)
        return EXIT_SETUP
    if arguments.json:
        print(json.dumps({"table": arguments.table, "cases": [case_row(case) for case in found]}, indent=2))
        return EXIT_OK
    if not found:
        print(
            f"no cases in {arguments.table}"
            + (f" with status {', '.join(s.value for s in arguments.status)}" if arguments.status else "")
        )
        return EXIT_OK
    print(f"{'UPDATED':<26} {'STATUS':<18} {'VERDICT':<10} {'SEVERITY':<8} {'TICKET':<14} CASE  TYPE")
    for case in found:
        print(_case_line(case))
    print(f"{len(found)} case{'s' if len(found) != 1 else ''}")
    return EXIT_OK


def _rollback(arguments: argparse.Namespace) -> int:
    """`vtriage rollback CASE_ID`: 0 when everything reversible was undone, 2 when some could not be,
    1 on a usage or set-up error."""
    try:
        settings = RemediateSettings.from_environ()
        steps = remediator(settings)
        result = rollback_case(arguments.case_id, steps.cases, steps.actuators)
    except (ConfigurationError, CaseNotFoundError, BotoCoreError, ClientError) as error:
        print(f"vtriage: cannot roll back {arguments.case_id}: {error}", file=sys.stderr)
        return EXIT_SETUP
    if arguments.json:
        print(result.model_dump_json(indent=2))
    else:
        for action in result.actions:
            print(f"{action.type.value} {action.target}: {action.status.value}\n    {action.detail}")
        for released in result.released:
            print(f"also undone, kept until now for this case: {released}")
        if not result.actions:
            print(f"nothing to undo in {arguments.case_id}: no action of it changed anything")
    return EXIT_OK if result.complete else EXIT_REJECTED


def _utc_now() -> datetime:
    return datetime.now(UTC)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `vtriage run`: 0 when every finding became a case, a repeat or was ignored, 2 when
    some were refused or are still pending, 1 on a usage or set-up error."""
    try:
        arguments = _parser().parse_args(argv)
    except SystemExit as exit_:
        return EXIT_OK if exit_.code == 0 else EXIT_SETUP
    if arguments.command == "send":
        return _send(arguments)
    if arguments.command == "cases":
        return _cases(arguments)
    if arguments.command == "rollback":
        return _rollback(arguments)
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


if __name__ == "__main__":
    sys.exit(main())
