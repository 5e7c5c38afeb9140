"""`vtriage run`: run alert files through the whole pipeline on a local AWS (moto) and VirusTotal replay.

What it prints: the report (or `--json`) on stdout; on stderr, what it is doing (the set-up, then each
record and case as it is handled; `--quiet` silences it, `--json` does not, since stdout stays one JSON
document), and any error, on one line. The functions' logs go to a temporary file that is kept, its path
printed, only with `--verbose` or when something failed; otherwise nothing is left behind.

Everything is checked before the local AWS is loaded (moto alone takes over a second to import): the
options, the template parameters' names, and the files, read and checked (`vtriage_local.preflight`). A
usage error, or a run whose every file is refused as it is read, is answered in a fraction of a second.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import io
import json
import logging
import math
import os
import signal
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import IO, Any

from vtriage.config.virustotal import vt_base_url_problem
from vtriage.display import one_line, printable
from vtriage_local.alert_files import FILE_CONTENTS, UsageError, read_alert_files
from vtriage_local.preflight import DEFERRED_WAIT_S, Progress, ReadRecords, VirusTotalSource, nobody_watches
from vtriage_local.replay import checked_faults
from vtriage_local.report import ONLY_VALUES, print_report, something_failed
from vtriage_local.template import load_template, parameter_problems
from vtriage_local.terminal import ascii_text, cut, on_terminal, terminal_width

EXIT_OK, EXIT_SETUP, EXIT_REJECTED = 0, 1, 2
# What a shell reports for a command stopped by Ctrl-C (128 + SIGINT).
EXIT_INTERRUPTED = 130

_FAULT_EXAMPLE = "expected KIND:PROBABILITY, e.g. 429:0.3 or 429:0.3,500:0.1"


def _faults(text: str) -> dict[str, float]:
    parts = [part.strip() for part in text.split(",")]
    if not any(parts):
        raise argparse.ArgumentTypeError(f"no fault given: {_FAULT_EXAMPLE}")
    faults: dict[str, float] = {}
    for part in parts:
        if not part:
            raise argparse.ArgumentTypeError(f"an empty fault in {text!r}: {_FAULT_EXAMPLE}")
        kind, _, probability = part.partition(":")
        kind = kind.strip()
        try:
            value = float(probability)
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad fault {part!r}: {_FAULT_EXAMPLE}") from None
        if kind in faults:
            raise argparse.ArgumentTypeError(f"fault {kind} given twice in {text!r}: give each kind once")
        faults[kind] = value
    try:
        return checked_faults(faults)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _latency(text: str) -> int:
    try:
        latency = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of milliseconds") from None
    if latency < 0:
        raise argparse.ArgumentTypeError(f"{latency} is negative: a latency is 0 ms or more")
    return latency


def _wait(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(seconds):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds")
    if seconds < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative: a wait is 0 seconds or more")
    return seconds


def _only(text: str) -> frozenset[str]:
    values = frozenset(part.strip().lower() for part in text.split(",") if part.strip())
    among = f"name verdicts or statuses, among {', '.join(ONLY_VALUES)}"
    if not values:
        raise argparse.ArgumentTypeError(f"no value given: {among}")
    unknown = sorted(values - set(ONLY_VALUES))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown value {', '.join(map(repr, unknown))}: {among}")
    return values


def _parameter(text: str) -> tuple[str, str]:
    key, separator, value = text.partition("=")
    if not separator or not key:
        raise argparse.ArgumentTypeError(f"bad parameter {text!r}: expected KEY=VALUE, e.g. DryRun=false")
    return key, value


def declare_run(run: argparse.ArgumentParser) -> None:
    """Declare `vtriage run`'s arguments on its parser (the `vtriage` command names it); sets `handler`.
    Nothing here loads the local AWS: that waits until a record is to be queued."""
    run.description = (
        f"{FILE_CONTENTS}; - reads one from the standard input. VirusTotal is live when VT_API_KEY is set, "
        "replayed from recordings otherwise. Progress goes to stderr, the report to stdout."
    )
    run.add_argument("files", nargs="+", metavar="FILE", help="an alert file, or - for the standard input")
    run.add_argument(
        "--vt-fixtures",
        type=Path,
        metavar="DIR",
        help="recorded VirusTotal responses to serve (DIR/<collection>/<id>.json)",
    )
    run.add_argument(
        "--json",
        action="store_true",
        help="print one JSON document on stdout and nothing else (progress stays on stderr)",
    )
    run.add_argument(
        "--only",
        type=_only,
        metavar="VALUE,...",
        help="report only the cases of these verdicts or statuses, e.g. malicious,failed (a case is "
        "shown when its verdict or its status is one of them; the counts stay the whole run's)",
    )
    run.add_argument(
        "--vt-latency-ms",
        type=_latency,
        default=0,
        metavar="MS",
        help="latency the replay server adds to each answer",
    )
    run.add_argument(
        "--vt-faults",
        type=_faults,
        default=None,
        metavar="KIND:P,...",
        help="faults the replay server injects, each kind once, e.g. 429:0.3,500:0.1,timeout:0.05",
    )
    run.add_argument("--seed", type=int, default=0, help="seed of the injected faults")
    run.add_argument(
        "--deferred-wait-s",
        type=_wait,
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
    run.add_argument(
        "--verbose",
        action="store_true",
        help="keep the functions' logs in a temporary file and print its path (they are kept anyway when "
        "something failed)",
    )
    run.add_argument("--quiet", action="store_true", help="print no progress on stderr")
    run.set_defaults(handler=run_alert_files)


class ProgressLines:
    """Progress on a stream (stderr), a line at a time, each with the time since the start.

    The runner's watcher thread tells of the cases as they finish while the main thread tells of the
    records: each line is written whole, its line feed with it, under a lock, so that two never run into
    each other. Once the stream's reader is gone (a closed pipe), or the run is stopped (`stop`), the run
    goes on without telling.
    """

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        # As the report does: on a terminal each line fits its width; elsewhere (a file, a CI log) the
        # lines are whole and in ASCII.
        self._width = terminal_width(stream) if on_terminal(stream) else None
        self._started = time.monotonic()
        self._lock = threading.Lock()
        self._reader_gone = False
        self._stopped_by: Callable[[], bool] = lambda: False

    def stop(self) -> None:
        """Write no more lines: the run was stopped (Ctrl-C), and what its threads still finish is not
        news. Safe in a signal handler: it takes no lock (the handler may interrupt a line being written)."""
        self._reader_gone = True

    def stop_when(self, stopped: Callable[[], bool]) -> None:
        """Write no more lines once `stopped()` says so, asked before each line."""
        self._stopped_by = stopped

    def __call__(self, message: str) -> None:
        """Write one progress line."""
        # A sender's value in the message was escaped by one_line where it was put in; the operator's own
        # (VT_BASE_URL, a log's path) is shown as it is, so that it can be copied.
        line = f"vtriage [{time.monotonic() - self._started:5.1f} s] {printable(message)}"
        line = ascii_text(line) if self._width is None else cut(line, self._width)
        line += "\n"
        with self._lock:
            if self._reader_gone or self._stopped_by():
                return
            try:
                self._stream.write(line)
                self._stream.flush()
            except BrokenPipeError:
                self._reader_gone = True


def run_alert_files(arguments: argparse.Namespace) -> int:
    """`vtriage run`: 0 when every finding became a case, a repeat or was ignored, 2 when some were
    refused or are still pending, 1 on a usage or set-up error, 130 when stopped by Ctrl-C."""
    if arguments.only and arguments.json:
        print("vtriage run: --only filters the report, --json lists everything: use one", file=sys.stderr)
        return EXIT_SETUP
    if arguments.vt_fixtures is not None and not arguments.vt_fixtures.is_dir():
        print(f"vtriage run: --vt-fixtures {arguments.vt_fixtures} is not a folder", file=sys.stderr)
        return EXIT_SETUP
    parameters = dict(arguments.parameter_overrides)
    refused = refused_parameters(parameters)
    if refused is not None:
        print(f"vtriage run: --parameter-overrides: {refused}", file=sys.stderr)
        return EXIT_SETUP
    source = VirusTotalSource.from_environment(
        recordings=arguments.vt_fixtures,
        latency_ms=arguments.vt_latency_ms,
        faults=arguments.vt_faults,
        seed=arguments.seed,
    )
    # The enrich function would refuse it at start-up; said here before anything starts, in the same words.
    vt_problem = vt_base_url_problem(source.base_url) if source.api_key is not None else None
    if vt_problem is not None:
        print(f"vtriage run: VT_BASE_URL {vt_problem}", file=sys.stderr)
        return EXIT_SETUP
    progress: Progress = nobody_watches if arguments.quiet else ProgressLines(sys.stderr)
    try:
        read = read_alert_files(arguments.files, sys.stdin.buffer)
    except UsageError as error:
        print(f"vtriage run: {error}", file=sys.stderr)
        return EXIT_SETUP
    records = ReadRecords.checked(read, progress)
    log_kept: str | None = None
    if records.none_to_queue:
        # Nothing to queue: nothing starts, and no function runs that could leave a log.
        document = records.refused_document(source)
    else:
        ran = _run_on_local_aws(records, source, parameters, arguments, progress)
        if isinstance(ran, int):
            return ran
        document, log_kept = ran
    if arguments.json:
        print(json.dumps(document, indent=2))
    else:
        print_report(document, log_kept, arguments.only or ())
    return EXIT_REJECTED if document["failures"] or document["pending"] else EXIT_OK


def refused_parameters(parameters: dict[str, str]) -> str | None:
    """What is wrong with the template parameters given, on one line, as CloudFormation would refuse them
    before deploying anything (None when each is one of template.yaml's Parameters and its value meets
    that parameter's constraints): the names it does not declare, else each value its parameter's
    `AllowedValues`, `AllowedPattern`, `MinValue`/`MaxValue`, `MinLength`/`MaxLength` or `Type: Number`
    refuses. A ticket provider's URL over http on loopback passes (a stand-in on this machine). The
    template is read only when parameters are given."""
    if not parameters:
        return None
    template = load_template()
    declared = list(template.get("Parameters", {}))
    unknown = [name for name in parameters if name not in declared]
    if not unknown:
        problems = parameter_problems(template, parameters, loopback_http=True)
        # The operator's own values, each shown by its repr (one line, control characters escaped).
        return "; ".join(problems) or None
    by_lower = {name.lower(): name for name in declared}
    said = []
    for name in unknown:
        close = by_lower.get(name.lower()) or next(
            iter(difflib.get_close_matches(name, declared, n=1, cutoff=0.75)), None
        )
        said.append(f"{one_line(name)} (did you mean {close}?)" if close else one_line(name))
    return (
        f"template.yaml has no parameter {', '.join(said)}; its Parameters section lists the "
        f"{len(declared)} it has"
    )


def _run_on_local_aws(
    records: ReadRecords,
    source: VirusTotalSource,
    parameters: dict[str, str],
    arguments: argparse.Namespace,
    progress: Progress,
) -> tuple[dict[str, Any], str | None] | int:
    """Run the records on a local AWS: the runner's document and the path of the functions' logs when
    they are kept; or the exit status when the run stopped short (Ctrl-C, a set-up error)."""
    keep_log = arguments.verbose
    log: IO[str] | None = None
    interruption = _Interruption(progress)
    try:
        with _interruptible(interruption):
            progress("loading the local AWS (moto)")
            # Loaded only now, once a record is to be queued: moto takes over a second to import.
            from vtriage_local.runner import run_records  # noqa: PLC0415
            from vtriage_local.stack import LocalSetupError  # noqa: PLC0415

            log = tempfile.NamedTemporaryFile(  # noqa: SIM115 (kept or removed below, once the run is over)
                "w", prefix="vtriage-", suffix=".log", delete=False, encoding="utf-8"
            )
            if keep_log:
                progress(f"the functions' logs go to {log.name}")
            with log:
                try:
                    document = run_records(
                        records,
                        source,
                        log,
                        parameters=parameters,
                        deferred_wait_s=arguments.deferred_wait_s,
                        progress=progress,
                    )
                except LocalSetupError as error:
                    kept = _kept_if(keep_log or _written(log.name), log.name)
                    print(
                        f"vtriage run: {error}" + (f" (function logs: {kept})" if kept else ""),
                        file=sys.stderr,
                    )
                    return EXIT_SETUP
    except KeyboardInterrupt:
        kept = _kept_if(keep_log, log.name) if log is not None else None
        print(
            "vtriage run: interrupted; the local stack is stopped, nothing was reported"
            + (f" (function logs: {kept})" if kept else ""),
            file=interruption.said_on,
            flush=True,
        )
        return EXIT_INTERRUPTED
    except BaseException:
        # The runner's own fault: its traceback, and the logs kept to look into it.
        if log is not None:
            print(f"vtriage run: failed; function logs: {log.name}", file=sys.stderr)
        raise
    # A run whose functions wrote nothing has no log worth keeping.
    kept = _kept_if(keep_log or (something_failed(document) and _written(log.name)), log.name)
    if kept:
        progress(f"the functions' logs are kept in {kept}")
    return document, kept


def _written(path: str) -> bool:
    return Path(path).stat().st_size > 0


def _kept_if(keep: bool, path: str) -> str | None:
    """The log's path when it is kept; otherwise it is removed."""
    if keep:
        return path
    Path(path).unlink(missing_ok=True)
    return None


class _Interruption:
    """What Ctrl-C leaves of a run's output: the one line saying it stopped, nothing else.

    When Ctrl-C arrives, threads of the run are still at work and go on until the process ends: the
    enrich function's VirusTotal lookups (a thread pool), moto's Step Functions engine running executions
    and their task handlers, the progress watcher. What they would say then (cases finishing, logging
    errors on the closed log, connection errors to the stopped stack, powertools' warnings, moto's engine
    messages) tells of a run nobody waits for any more. `hush` silences all of it at once, before the
    main thread unwinds: the progress stops, logging and warnings are off, a thread's uncaught exception
    is not printed, and the standard output and error of the process point at the null device; the
    stop line goes to `said_on`, a copy of the standard error kept for it.

    Python runs a signal's handler in the main thread only, a few milliseconds after the signal came,
    while other threads may still write; the progress watcher's lines come in bursts. So the progress
    also asks `signalled`, which reads the byte the interpreter writes on its wakeup descriptor the
    moment the signal arrives (`watch`), before any Python code runs.
    """

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self.said_on: IO[str] = sys.stderr
        self._wakeup: int | None = None
        self._heard = False
        if isinstance(progress, ProgressLines):
            progress.stop_when(self.signalled)

    def watch(self, wakeup: int | None) -> None:
        """Read signals' arrivals from `wakeup`, the read end of `signal.set_wakeup_fd`'s non-blocking
        pipe (None: no more)."""
        self._wakeup = wakeup

    def signalled(self) -> bool:
        """Whether Ctrl-C has arrived, its handler run or not."""
        wakeup = self._wakeup
        if self._heard or wakeup is None:
            return self._heard
        with contextlib.suppress(OSError):
            # Each byte is a signal's number.
            self._heard = signal.SIGINT in os.read(wakeup, 512)
        return self._heard

    def hush(self) -> None:
        """Silence the run for good (called by the Ctrl-C handler, in the main thread, once). It never
        raises: an error here would replace the KeyboardInterrupt, and the functions' own `except
        Exception` would take it for theirs and carry the run on."""
        with contextlib.suppress(Exception):
            if isinstance(self._progress, ProgressLines):
                self._progress.stop()
            logging.disable(logging.CRITICAL)
            # A log record already on its way to a closed stream is dropped, not reported with a traceback.
            logging.raiseExceptions = False
            warnings.simplefilter("ignore")
            threading.excepthook = _unheard
            self.said_on = _standard_streams_to_null(sys.stderr)


def _unheard(_: threading.ExceptHookArgs) -> None:
    """A thread's uncaught exception once the run is stopped: not printed."""


def _standard_streams_to_null(stderr: IO[str]) -> IO[str]:
    """Point the process's standard output and error at the null device, whoever writes to them (a
    thread, a library holding the stream, the interpreter at exit); return a stream on the standard error
    as it was. Streams that are no file descriptors (a test's StringIO) are left as they are, and
    returned as they are."""
    try:
        stdout, stderr_fd = sys.stdout.fileno(), stderr.fileno()
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return stderr
    for stream in (sys.stdout, stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    kept = os.fdopen(os.dup(stderr_fd), "w", encoding="utf-8", errors="backslashreplace")
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        for descriptor in {stdout, stderr_fd}:
            os.dup2(null, descriptor)
    finally:
        os.close(null)
    return kept


@contextmanager
def _interruptible(interruption: _Interruption) -> Iterator[None]:
    """Ctrl-C stops the run once: the first hushes the run (`_Interruption.hush`), then raises
    KeyboardInterrupt, and later ones are ignored while the local stack and the replay server stop, so
    that the stop is clean and says so on one line."""

    def interrupted(_signal: int, _frame: FrameType | None) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        interruption.hush()
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) in {
        signal.SIG_IGN,
        None,
    }:
        yield
        return
    previous = signal.signal(signal.SIGINT, interrupted)
    wakeup, woken = os.pipe()
    for end in (wakeup, woken):
        os.set_blocking(end, False)
    previous_wakeup = signal.set_wakeup_fd(woken, warn_on_full_buffer=False)
    interruption.watch(wakeup)
    try:
        yield
    finally:
        signal.set_wakeup_fd(previous_wakeup)
        signal.signal(signal.SIGINT, previous)
        interruption.watch(None)
        os.close(wakeup)
        os.close(woken)
