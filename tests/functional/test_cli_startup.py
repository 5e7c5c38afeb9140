"""The `vtriage` command as it starts: what it loads before it answers, a bad option or parameter refused
on one line before anything starts, Ctrl-C at any moment of its start-up, a reader that goes away, and
progress lines written from two threads. Start-up runs the real command in a process of its own, with
`python -X importtime` saying which modules it loaded."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.functional.conftest import event
from tests.functional.test_runner_cli import C2, command, environment, in_process, with_default_ctrl_c
from vtriage_local.cli import ProgressLines

pytestmark = pytest.mark.functional

START_TIMEOUT_S = 120
# What the local AWS and the operator commands load; neither is needed to refuse a file or a parameter.
LOCAL_AWS = {"moto", "vtriage_local.stack", "vtriage_local.runner", "boto3", "botocore", "requests"}
OPERATOR_COMMANDS = {"vtriage_ops.cli"}
RUN_COMMAND = {"vtriage_local.cli"}


def timed_command(*arguments: str) -> list[str]:
    """The `vtriage` command line, its imports listed on stderr as each completes (`-X importtime`)."""
    [python, *rest] = command(*arguments)
    return [python, "-X", "importtime", *rest]


def started(arguments: list[str], variables: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`vtriage ARGUMENTS` run to its end as a user's shell starts it, its imports timed (`timed_command`)."""
    return subprocess.run(
        timed_command(*arguments),
        capture_output=True,
        env=variables,
        timeout=START_TIMEOUT_S,
        check=False,
        text=True,
    )


def imported(stderr: str) -> set[str]:
    """The modules `python -X importtime` says were imported."""
    return {line.rsplit("|", 1)[1].strip() for line in stderr.splitlines() if line.startswith("import time:")}


def said(stderr: str) -> list[str]:
    """What the command itself wrote on stderr (the import times left out)."""
    return [line for line in stderr.splitlines() if not line.startswith("import time:")]


def test_a_file_that_is_not_json_is_refused_without_loading_the_local_aws(tmp_path: Path) -> None:
    # Given a file that is not JSON
    notes = tmp_path / "notes.json"
    notes.write_text("the alert is in the ticket", encoding="utf-8")
    temp = tmp_path / "tmp"

    # When `vtriage run` runs it, as a user's shell starts it
    done = started(["run", str(notes)], environment(temp))

    # Then it exits 2, the progress says the record was refused as read, and the report gives the
    # refusal on one line
    assert done.returncode == 2, done.stderr
    assert [line.split("] ", 1)[1] for line in said(done.stderr)] == [
        "read 1 record(s); 1 refused as read (the report says why)"
    ]
    assert (
        "  notes.json: not queued: not JSON (Expecting value at line 1, column 1)" in done.stdout.splitlines()
    )
    # and neither moto, the local stack, the AWS SDK nor the operator commands were loaded for it, and
    # nothing is left in the temporary folder
    loaded = imported(done.stderr)
    assert loaded >= RUN_COMMAND
    assert loaded & (LOCAL_AWS | OPERATOR_COMMANDS) == set()
    assert list(temp.iterdir()) == []


@pytest.mark.parametrize(
    ("arguments", "needed", "not_needed"),
    [
        (["--version"], set(), LOCAL_AWS | OPERATOR_COMMANDS | RUN_COMMAND),
        (["run", "--version"], RUN_COMMAND, LOCAL_AWS | OPERATOR_COMMANDS),
        (
            ["cases", "--help"],
            OPERATOR_COMMANDS,
            {"moto", "vtriage_local.stack", "vtriage_local.runner"} | RUN_COMMAND,
        ),
        (["rollback", "--help"], OPERATOR_COMMANDS, {"moto", "vtriage_local.stack"} | RUN_COMMAND),
        (["send", "--help"], OPERATOR_COMMANDS, {"moto", "vtriage_local.stack"} | RUN_COMMAND),
    ],
)
def test_each_command_loads_its_own_module_only(
    tmp_path: Path, arguments: list[str], needed: set[str], not_needed: set[str]
) -> None:
    # Given the `vtriage` command
    # When it is asked for its version, or for a command's help
    done = started(arguments, environment(tmp_path / "tmp"))

    # Then it answers, having loaded that command's module and neither the local AWS nor another
    # command's
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("vtriage 0." if "--version" in arguments else "usage: vtriage ")
    loaded = imported(done.stderr)
    assert loaded >= needed
    assert loaded & not_needed == set()


@pytest.mark.parametrize(
    ("arguments", "said_exactly"),
    [
        (["--vt-faults", ","], "argument --vt-faults: no fault given: expected KIND:PROBABILITY"),
        (["--vt-faults="], "argument --vt-faults: no fault given: expected KIND:PROBABILITY"),
        (["--vt-faults", "429:0.1,,500:0.1"], "argument --vt-faults: an empty fault in '429:0.1,,500:0.1'"),
        (
            ["--vt-faults", "429:0.1,429:0.9"],
            "argument --vt-faults: fault 429 given twice in '429:0.1,429:0.9': give each kind once",
        ),
        (
            ["--deferred-wait-s", "-1"],
            "argument --deferred-wait-s: -1 is negative: a wait is 0 seconds or more",
        ),
        (["--deferred-wait-s", "nan"], "argument --deferred-wait-s: 'nan' is not a number of seconds"),
        (["--only", ","], "argument --only: no value given: name verdicts or statuses, among malicious"),
    ],
)
def test_an_empty_or_repeated_option_value_is_refused_on_one_line(
    arguments: list[str], said_exactly: str
) -> None:
    # Given a good alert file and an option given empty, repeated or negative
    # When the runner is called
    status, stdout, stderr = in_process("run", *arguments, str(event(C2)))

    # Then it exits 1 with one line saying what is wrong, and nothing on stdout
    assert (status, stdout) == (1, "")
    [line] = stderr.splitlines()
    assert line.startswith(f"vtriage run: {said_exactly}")


def test_an_unknown_template_parameter_is_refused_on_one_line_before_anything_starts(tmp_path: Path) -> None:
    # Given a parameter template.yaml does not have, one written in the wrong case, and a good alert file
    temp = tmp_path / "tmp"

    # When the runner is called with them
    done = started(
        ["run", "--parameter-overrides", "Foo=bar", "--parameter-overrides", "dryrun=false", str(event(C2))],
        environment(temp),
    )

    # Then it exits 1 with one short line naming both, the right spelling of the second, and where to see
    # the parameters; the local AWS was not loaded, and no log file was left
    assert done.returncode == 1, done.stderr
    assert said(done.stderr) == [
        "vtriage run: --parameter-overrides: template.yaml has no parameter Foo, dryrun (did you mean "
        "DryRun?); its Parameters section lists the 51 it has"
    ]
    assert done.stdout == ""
    assert imported(done.stderr) & LOCAL_AWS == set()
    assert list(temp.iterdir()) == []


def test_run_and_send_help_name_every_kind_of_file_they_read(tmp_path: Path) -> None:
    # Given the two commands that read alert files
    for name in ("run", "send"):
        # When a user asks for the command's help
        done = subprocess.run(
            command(name, "--help"),
            capture_output=True,
            env=environment(tmp_path / name),
            timeout=START_TIMEOUT_S,
            check=True,
            text=True,
        )

        # Then it names each kind of file alert_files reads, and each source intake reads in one
        text = " ".join(done.stdout.split())
        for kind in (
            "an SQS event (each record's body is one message)",
            "JSON Lines (each line that is not blank is one message",
            "a GuardDuty finding",
            "an OCSF finding",
            "a CrowdStrike Falcon alert (Alerts API entity or response, Event Streams detection)",
            "a Google Workspace Alert Center alert",
            "Security Hub get-findings output",
        ):
            assert kind in text, (name, kind)


@pytest.mark.parametrize(
    ("overrides", "said_exactly"),
    [
        (["DryRun=maybe"], "DryRun (DRY_RUN): 'maybe' must be one of true, false"),
        (
            ["DryRun=false", "MaxActionsPerHour=ten"],
            "MaxActionsPerHour (MAX_ACTIONS_PER_HOUR): 'ten' must be a number "
            "(the parameter's Type is Number)",
        ),
        (
            ["ApprovalTimeoutSeconds=5", "MemberAccountIds=1234"],
            "ApprovalTimeoutSeconds (APPROVAL_TIMEOUT_SECONDS): '5' must be a number from 60 to 604800; "
            "MemberAccountIds (MEMBER_ACCOUNT_IDS): '1234' must be 12-digit account ids separated by commas, "
            "without spaces",
        ),
    ],
)
def test_a_template_parameter_value_cloudformation_would_refuse_is_one_line_before_anything_starts(
    tmp_path: Path, overrides: list[str], said_exactly: str
) -> None:
    # Given overrides of which some value its parameter's definition in template.yaml refuses, and a good
    # alert file
    temp = tmp_path / "tmp"
    arguments = [part for override in overrides for part in ("--parameter-overrides", override)]

    # When the runner is called with them, as a user's shell starts it
    done = started(["run", *arguments, str(event(C2))], environment(temp))

    # Then it exits 1 with one line naming each parameter refused, its value and what is allowed, as
    # CloudFormation would refuse it; the local AWS was not loaded, and no log file was left
    assert done.returncode == 1, done.stderr
    assert said(done.stderr) == [f"vtriage run: --parameter-overrides: {said_exactly}"]
    assert done.stdout == ""
    assert imported(done.stderr) & LOCAL_AWS == set()
    assert list(temp.iterdir()) == []


@pytest.mark.parametrize(
    ("base_url", "said_exactly"),
    [
        (
            "http://127.0.0.1:18950",
            "VT_BASE_URL must end in /api/v3 (VirusTotal API v3's root), got 'http://127.0.0.1:18950'",
        ),
        (
            "ftp://127.0.0.1:18950/api/v3",
            "VT_BASE_URL must be an https:// URL (http only on loopback), not ftp: "
            "'ftp://127.0.0.1:18950/api/v3'",
        ),
        (
            "http://10.0.0.5/api/v3",
            "VT_BASE_URL must be an https:// URL (http only on loopback), not http: 'http://10.0.0.5/api/v3'",
        ),
    ],
)
def test_a_live_virustotal_url_the_enrich_function_refuses_is_one_line_before_anything_starts(
    tmp_path: Path, base_url: str, said_exactly: str
) -> None:
    # Given a VirusTotal key and a VT_BASE_URL that is not VirusTotal API v3's root over https (or http
    # on loopback), and a good alert file
    temp = tmp_path / "tmp"
    variables = environment(temp) | {"VT_API_KEY": "a-key", "VT_BASE_URL": base_url}

    # When the runner is called, as a user's shell starts it
    done = started(["run", str(event(C2))], variables)

    # Then it exits 1 with one line naming the variable, what it must be and what it was given, no
    # traceback and no report; the local AWS was not loaded, and no log file was left
    assert done.returncode == 1, done.stderr
    assert said(done.stderr) == [f"vtriage run: {said_exactly}"]
    assert done.stdout == ""
    assert imported(done.stderr) & LOCAL_AWS == set()
    assert list(temp.iterdir()) == []


def _interrupt_once_seen(arguments: list[str], seen: str, temp: Path) -> tuple[int, list[str], str]:
    """Start `vtriage ARGUMENTS` (its standard input left open, never written), send Ctrl-C once its stderr
    holds a line ending with `seen`: its status, what it said on stderr, and its stdout."""
    running = subprocess.Popen(
        with_default_ctrl_c(timed_command(*arguments)),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=environment(temp),
        text=True,
    )
    assert running.stderr is not None
    # A command that never says `seen` is killed, and the test fails on its status.
    too_late = threading.Timer(START_TIMEOUT_S, running.kill)
    too_late.start()
    lines: list[str] = []
    while not any(line.rstrip().endswith(seen) for line in lines):
        line = running.stderr.readline()
        if not line:
            break
        lines.append(line)
    running.send_signal(signal.SIGINT)
    too_late.cancel()
    stdout, rest = running.communicate(timeout=60)
    return running.returncode, said("".join(lines) + rest), stdout


@pytest.mark.parametrize(
    ("arguments", "seen", "last_line"),
    [
        # The run command's module is loading (its options declared, the alert-file reader among the
        # first of its imports), or has loaded and waits on the standard input: either way before it runs.
        (["run", "-"], "vtriage_local.alert_files", "vtriage run: interrupted"),
        # The file was read and the local AWS is loading: moto's imports take over a second.
        (
            ["run", str(event(C2))],
            "loading the local AWS (moto)",
            "vtriage run: interrupted; the local stack is stopped, nothing was reported",
        ),
    ],
)
def test_ctrl_c_while_the_command_starts_is_one_line_and_status_130(
    tmp_path: Path, arguments: list[str], seen: str, last_line: str
) -> None:
    # Given `vtriage run` starting, its modules loading
    temp = tmp_path / "tmp"

    # When Ctrl-C is pressed
    status, stderr, stdout = _interrupt_once_seen(arguments, seen, temp)

    # Then it stops with status 130, saying so on one line, with no traceback and no report, and leaves
    # nothing in the temporary folder
    assert status == 130, "\n".join(stderr)
    assert stderr[-1] == last_line
    assert not any("Traceback" in line or "KeyboardInterrupt" in line for line in stderr)
    assert stdout == ""
    assert list(temp.iterdir()) == []


@pytest.mark.parametrize("arguments", [["run"], ["run", "--json"], ["--help"]])
def test_a_reader_that_goes_away_ends_the_command_quietly(tmp_path: Path, arguments: list[str]) -> None:
    # Given a file that is not JSON (its report is printed at once), and a reader that has gone away
    # before the command writes, as `head` does once it has its lines
    notes = tmp_path / "notes.json"
    notes.write_text("the alert is in the ticket", encoding="utf-8")
    running = subprocess.Popen(
        command(*arguments, *([str(notes)] if arguments[0] == "run" else [])),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=environment(tmp_path / "tmp"),
        text=True,
    )
    assert running.stdout is not None
    running.stdout.close()

    # When the command writes its report (or its help)
    _, stderr = running.communicate(timeout=START_TIMEOUT_S)

    # Then it stops without a traceback: with 141 (128 + SIGPIPE, as a shell reports `yes | head`), or 0
    # for the help, which argparse writes and forgets
    assert running.returncode == (0 if arguments == ["--help"] else 141), stderr
    assert "Traceback" not in stderr
    assert "BrokenPipeError" not in stderr
    assert all(line.startswith("vtriage [") for line in stderr.splitlines())


class _Terminal(io.StringIO):
    """A stream as slow as a terminal can be: each write lets other threads run before it lands."""

    def write(self, text: str) -> int:
        time.sleep(0.0005)
        return super().write(text)


def test_progress_lines_from_two_threads_never_run_into_each_other() -> None:
    # Given the runner's progress on stderr, told at once by the main thread (records) and the watcher
    # thread (cases)
    stream = _Terminal()
    progress = ProgressLines(stream)

    def tell(who: str) -> None:
        for number in range(40):
            progress(f"{who} {number}")

    # When both tell their 40 lines at the same time
    watcher = threading.Thread(target=tell, args=("case",))
    watcher.start()
    tell("record")
    watcher.join()

    # Then each of the 80 lines is whole, on a line of its own
    lines = stream.getvalue().splitlines()
    assert len(lines) == 80
    assert all(re.fullmatch(r"vtriage \[ *\d+\.\d s\] (case|record) \d+", line) for line in lines), lines
    assert {line.split("] ", 1)[1] for line in lines} == {
        f"{who} {number}" for who in ("case", "record") for number in range(40)
    }


TITLE = "C&C domain queried by the café's kiosk \u2014 i-0b3f6c2d9e1a47c58, the instance named on the finding"


def test_progress_lines_off_a_terminal_are_whole_and_ascii() -> None:
    # Given progress told on a stream that is no terminal (a file, a CI log), of a case whose title is
    # longer than a line and not ASCII
    stream = io.StringIO()
    progress = ProgressLines(stream)

    # When it tells of the case
    progress(f"case 1 (of 1 started) SUCCEEDED: malicious, remediate, TICKETED: {TITLE}")

    # Then the line is whole, every character outside ASCII escaped as the report writes it
    (line,) = stream.getvalue().splitlines()
    assert line.isascii()
    assert line.endswith("caf\\xe9's kiosk \\u2014 i-0b3f6c2d9e1a47c58, the instance named on the finding")


def test_progress_lines_on_a_terminal_fit_its_width(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given progress told on a terminal 80 columns wide (a pseudo-terminal)
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.delenv("TERM", raising=False)
    leader, follower = os.openpty()
    with os.fdopen(follower, "w", encoding="utf-8") as terminal:
        progress = ProgressLines(terminal)

        # When it tells of a case whose title is longer than the line
        progress(f"case 1 (of 1 started) SUCCEEDED: malicious, remediate, TICKETED: {TITLE}")
        written = os.read(leader, 4096).decode("utf-8")
    os.close(leader)

    # Then the line fits the 80 columns, its start kept as it is and cut with the report's mark
    (line,) = written.splitlines()
    assert len(line) == 80
    assert line.startswith("vtriage [")
    assert "case 1 (of 1 started) SUCCEEDED: malicious, remediate" in line
    assert line.endswith("...")
