"""`vtriage run` as a new user meets it: usage errors on one line, files checked before anything starts,
progress on stderr, the standard input, `--only`, the functions' logs kept only when something failed, and
Ctrl-C. The runs that need the stack run the real command in a process of its own, with a temporary
folder of its own, as a user's shell starts it."""

from __future__ import annotations

import contextlib
import io
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from bench.runner_speed import c2_corpus, write_domain_recordings
from tests.functional.conftest import event
from vtriage_cli.main import main as vtriage

pytestmark = pytest.mark.functional

C2 = "synthetic-guardduty-backdoor-c2-dns.json"
C2_TITLE = "Command and Control server domain name queried by EC2 instance i-0b3f6c2d9e1a47c58."
C2_LINK = "https://www.virustotal.com/gui/domain/tawuhoju.com"
CANARY = "guardduty-ec2-canary-outbound-ssh.json"
BUILDING = "building the stack from template.yaml"
RUN_TIMEOUT_S = 300


def in_process(*arguments: str) -> tuple[int, str, str]:
    """`vtriage ARGUMENTS` in this process: its status, stdout and stderr."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        status = vtriage(list(arguments))
    return status, stdout.getvalue(), stderr.getvalue()


def command(*arguments: str) -> list[str]:
    """The `vtriage` command line, run by this Python (the project's environment)."""
    return [sys.executable, "-m", "vtriage_cli.main", *arguments]


def environment(temp: Path) -> dict[str, str]:
    """The process's environment, with its own temporary folder and no VirusTotal key (replayed)."""
    temp.mkdir()
    variables = {key: value for key, value in os.environ.items() if key not in {"VT_API_KEY", "COLUMNS"}}
    return variables | {"TMPDIR": str(temp)}


def with_default_ctrl_c(command_line: list[str]) -> list[str]:
    """The command line run with Ctrl-C handled as a terminal delivers it: a process started from a
    non-interactive shell may inherit SIGINT ignored, and Python then never raises KeyboardInterrupt. A
    first Python restores the default and becomes the command (exec keeps the default; no preexec_fn,
    which is unsafe in a process with threads, as a test process running moto has)."""
    restore = (
        "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
        "os.execv(sys.argv[1], sys.argv[1:])"
    )
    return [sys.executable, "-c", restore, *command_line]


@pytest.mark.parametrize(
    ("arguments", "said"),
    [
        (
            ["--vt-faults", "418:0.3"],
            "argument --vt-faults: unknown faults ['418']: use 429, 500, 503, timeout",
        ),
        (["--vt-faults", "429:1.5"], "argument --vt-faults: each fault probability must be between 0 and 1"),
        (["--vt-faults", "429"], "argument --vt-faults: bad fault '429': expected KIND:PROBABILITY"),
        (["--vt-latency-ms", "-150"], "argument --vt-latency-ms: -150 is negative"),
        (["--only", "malicious,bogus"], "argument --only: unknown value 'bogus'"),
        (["--only", "failed", "--json"], "--only filters the report, --json lists everything"),
    ],
)
def test_a_bad_option_is_one_line_saying_what_is_wrong(arguments: list[str], said: str) -> None:
    # Given a good alert file and a bad option
    # When the runner is called
    status, stdout, stderr = in_process("run", *arguments, str(event(C2)))

    # Then it exits 1 with one line on stderr saying what is wrong, no traceback, nothing on stdout
    assert status == 1
    assert stdout == ""
    [line] = stderr.splitlines()
    assert line.startswith("vtriage run: ")
    assert said in line


def test_a_directory_or_a_missing_file_is_one_line_naming_it(tmp_path: Path) -> None:
    # Given a directory and a file that does not exist
    missing = tmp_path / "missing.json"

    # When each is given as an alert file
    folder_status, _, folder_said = in_process("run", str(tmp_path), str(event(C2)))
    missing_status, _, missing_said = in_process("run", str(event(C2)), str(missing))

    # Then each is a usage error on one line that says what it is
    assert (folder_status, missing_status) == (1, 1)
    assert folder_said.splitlines() == [
        f"vtriage run: {tmp_path} is a directory: name its files, e.g. {tmp_path / '*.json'}"
    ]
    assert missing_said.splitlines() == [f"vtriage run: no such file: {missing}"]


def test_version_names_the_installed_vtriage() -> None:
    # When `vtriage --version` and `vtriage run --version` run
    # Then each prints vtriage and its version, and exits 0
    for arguments in (["--version"], ["run", "--version"]):
        status, stdout, _ = in_process(*arguments)
        assert status == 0
        assert stdout.startswith("vtriage 0.")


def test_a_file_that_is_not_json_is_refused_before_the_stack_is_built(tmp_path: Path) -> None:
    # Given a file that is not JSON
    notes = tmp_path / "notes.json"
    notes.write_text("the alert is in the ticket", encoding="utf-8")

    # When the runner runs it
    status, stdout, stderr = in_process("run", "--json", str(notes))

    # Then it is refused, saying why, with status 2, and neither the replay server nor the stack was
    # started for it (the progress says what was done: the file was read, nothing more)
    document = json.loads(stdout)
    assert status == 2
    [refused] = document["failures"]
    assert refused["message_id"] == "notes.json"
    assert "not JSON" in refused["reason"]
    assert document["cases"] == []
    assert document["stats"]["vt_requests"] == 0
    assert [line.split("] ", 1)[1] for line in stderr.splitlines()] == [
        "read 1 record(s); 1 refused as read (the report says why)"
    ]
    assert BUILDING not in stderr


def test_an_alert_on_stdin_runs_with_progress_and_leaves_nothing_in_the_temporary_folder(
    tmp_path: Path,
) -> None:
    # Given the C&C sample on the standard input, and an empty temporary folder
    temp = tmp_path / "tmp"

    # When `vtriage run -` runs it, its output not a terminal
    done = subprocess.run(
        command("run", "-"),
        input=event(C2).read_bytes(),
        capture_output=True,
        env=environment(temp),
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    stdout, stderr = done.stdout.decode(), done.stderr.decode()

    # Then it exits 0, and stderr told of each set-up step, the record and the case as they were done
    assert done.returncode == 0, stderr
    progress = [line.split("] ", 1)[1] for line in stderr.splitlines()]
    assert progress[0] == "read 1 record(s)"
    assert any(line.startswith("starting the VirusTotal replay server") for line in progress)
    assert any(line.startswith(BUILDING) for line in progress)
    assert "enrich function: 1 of 1 record(s) handled" in progress
    assert any(
        line.startswith("case 1 (of 1 started) SUCCEEDED: malicious, remediate, TICKETED: Command")
        for line in progress
    )
    # and the report names the record stdin, says VirusTotal was replayed, shows the case's row, its title,
    # its IOC's VirusTotal link, and the counts, in lines that fit 80 columns
    lines = stdout.splitlines()
    assert lines[0].startswith("VirusTotal: replayed from recordings")
    assert any(line.split()[:4] == ["1", "malicious", "remediate", "TICKETED"] for line in lines)
    assert C2_TITLE in " ".join(stdout.split())
    assert C2_LINK in [line.strip() for line in lines]
    assert "verdicts: 1 malicious" in lines
    assert max(map(len, lines)) <= 80
    assert "rollback" not in stdout
    # and nothing is left in the temporary folder: no log was asked for, and nothing failed
    assert list(temp.iterdir()) == []


def test_only_filters_the_report_and_a_run_where_something_failed_keeps_its_log(tmp_path: Path) -> None:
    # Given the C&C sample on the standard input, the canary sample (unknown to VirusTotal) and a file
    # that is not JSON
    temp = tmp_path / "tmp"
    notes = tmp_path / "notes.json"
    notes.write_text("the alert is in the ticket", encoding="utf-8")

    # When the run reports only the malicious cases
    done = subprocess.run(
        command("run", "--only", "malicious", "-", str(event(CANARY)), str(notes)),
        input=event(C2).read_bytes(),
        capture_output=True,
        env=environment(temp),
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    stdout, stderr = done.stdout.decode(), done.stderr.decode()

    # Then it exits 2 (a file was refused); the table and the details show the malicious case alone, and
    # the counts cover both cases
    assert done.returncode == 2, stderr
    lines = stdout.splitlines()
    header = next(index for index, line in enumerate(lines) if line.split()[:2] == ["#", "verdict"])
    rows = lines[header + 2 : lines.index("", header)]
    assert [row.split()[1:3] for row in rows] == [["malicious", "remediate"]]
    assert "Canary" not in stdout
    assert "Showing 1 of 2 case(s) (--only malicious); all of them:" in lines
    assert "verdicts: 1 malicious, 1 unknown" in lines
    assert any(line.startswith("  notes.json: not queued: not JSON") for line in lines)
    # and the functions' logs were kept, their path printed; they are all that is left in the folder
    [log] = list(temp.iterdir())
    # (the path whole on a line: after its label, or below it when the two are wider than 80 columns)
    assert f"function logs: {log}" in " ".join(stdout.split())
    assert any(line.split()[-1:] == [str(log)] for line in lines)
    assert str(log) in stderr
    assert log.read_text(encoding="utf-8")


STOPPED = "vtriage run: interrupted; the local stack is stopped, nothing was reported"


def write_c2_corpus(folder: Path, alerts: int) -> tuple[Path, Path]:
    """bench.runner_speed's C&C corpus: `alerts` findings as JSON Lines, and a recording per domain."""
    corpus = c2_corpus(alerts=alerts)
    write_domain_recordings(folder / "recordings", set(corpus.domains))
    alert_file = folder / "alerts.jsonl"
    alert_file.write_text("".join(json.dumps(alert) + "\n" for alert in corpus.alerts), encoding="utf-8")
    return alert_file, folder / "recordings"


def read_until(descriptor: int, said: bytearray, text: str, deadline: float) -> None:
    """Read the descriptor into `said` until `text` is in it (or it closes, or the deadline passes)."""
    while text.encode() not in said and time.monotonic() < deadline:
        if select.select([descriptor], [], [], 1.0)[0]:
            chunk = os.read(descriptor, 65536)
            if not chunk:
                return
            said += chunk


def drain(descriptor: int, said: bytearray) -> None:
    """Read what the descriptor holds now into `said`, without waiting."""
    while select.select([descriptor], [], [], 0)[0]:
        chunk = os.read(descriptor, 65536)
        if not chunk:
            return
        said += chunk


def stopped(pid: int) -> bool:
    """Whether the process is stopped (SIGSTOP): every write it made is in its pipes."""
    state = Path(f"/proc/{pid}/stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()[0]
    return state in {"T", "t"}


@pytest.mark.parametrize(
    "moment",
    [
        pytest.param(BUILDING, id="building-the-stack"),
        # told after each batch the enrich function handled, before the next is received
        pytest.param("enrich function:", id="between-batches"),
        # told while the enrich function works on a batch (its lookup threads at work), as executions end
        pytest.param("case 1 (of", id="enriching-as-executions-run"),
    ],
)
def test_ctrl_c_stops_the_run_on_one_line_with_status_130_and_leaves_nothing_behind(
    tmp_path: Path, moment: str
) -> None:
    # Given a run of 105 alerts under way at VirusTotal's pace (150 ms an answer), at a moment its progress
    # names: building its stack, between two batches of records, or its enrich function looking a batch's
    # IOCs up in a pool of threads while moto's engine runs executions in threads of its own (the last
    # executions' wait is too short a moment to be caught surely)
    alert_file, recordings = write_c2_corpus(tmp_path, alerts=105)
    temp = tmp_path / "tmp"
    running = subprocess.Popen(
        with_default_ctrl_c(
            command("run", "--vt-fixtures", str(recordings), "--vt-latency-ms", "150", str(alert_file))
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=environment(temp),
        bufsize=0,
    )
    assert running.stdout is not None
    assert running.stderr is not None
    said = bytearray()
    read_until(running.stderr.fileno(), said, moment, time.monotonic() + RUN_TIMEOUT_S)
    assert moment.encode() in said, said.decode(errors="replace")
    # (What it said before the Ctrl-C is told from what it said after by holding the process still while
    # its pipe is read empty: a stopped process writes nothing, and the Ctrl-C waits for it to go on.)
    running.send_signal(signal.SIGSTOP)
    deadline = time.monotonic() + 60
    while not stopped(running.pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    drain(running.stderr.fileno(), said)

    # When Ctrl-C is pressed
    running.send_signal(signal.SIGINT)
    running.send_signal(signal.SIGCONT)
    stdout, after = running.communicate(timeout=60)

    # Then it stops with status 130, saying so on one line and nothing else: no traceback, no progress,
    # no warning, nothing of the threads still at work, and no report
    told = said.decode(errors="replace") + "--- Ctrl-C ---\n" + after.decode(errors="replace")
    assert running.returncode == 130, told
    assert after.decode().splitlines() == [STOPPED], told
    assert stdout == b""
    # and nothing is left in the temporary folder
    assert list(temp.iterdir()) == []


def test_the_s3_sample_is_quarantined_only_out_of_the_source_buckets_and_only_the_object_scanned() -> None:
    # Given GuardDuty Malware Protection for S3's finding of a trojan in an uploads bucket, naming the
    # version and ETag it scanned; the runner mirrors the object with a stand-in body, not those bytes
    sample = str(event("synthetic-guardduty-malware-s3-object-scan.json"))
    acting = ["--parameter-overrides", "DryRun=false"]
    bucket = ["--parameter-overrides", "QuarantineBucket=vtriage-quarantine-123456789012"]

    # When it runs as the template deploys by default (no quarantine bucket), then acting for real with a
    # quarantine bucket and no source buckets, with source buckets that are not the uploads', and with the
    # uploads buckets named as sources
    def run_with(*overrides: str) -> dict[str, Any]:
        _, out, _ = in_process("run", "--json", "--quiet", *overrides, sample)
        [case] = json.loads(out)["cases"]
        return dict(case)

    default = run_with()
    no_sources = run_with(*acting, *bucket)
    other_sources = run_with(*acting, *bucket, "--parameter-overrides", "QuarantineSourceBuckets=payroll-*")
    sources = run_with(
        *acting, *bucket, "--parameter-overrides", "QuarantineSourceBuckets=vtriage-demo-uploads-*"
    )

    # Then each time the quarantine is skipped, saying why, and the case is ticketed, not FAILED: by
    # default and without source buckets for what is missing, outside the sources for the bucket, and in
    # them because the stand-in at the key is not the object GuardDuty scanned
    outcomes = {
        name: (case["status"], tuple((action["type"], action["status"]) for action in case["actions"]))
        for name, case in (
            ("default", default),
            ("no sources", no_sources),
            ("other sources", other_sources),
            ("sources", sources),
        )
    }
    assert set(outcomes.values()) == {("TICKETED", (("quarantine_object", "skipped"),))}, outcomes
    assert "no quarantine bucket is configured" in default["actions"][0]["detail"]
    missing = "no source bucket is configured (the QuarantineSourceBuckets parameter)"
    assert missing in no_sources["actions"][0]["detail"]
    assert other_sources["actions"][0]["detail"] == (
        "not quarantined: bucket vtriage-demo-uploads-123456789012 is not among the buckets objects may be "
        "quarantined out of (QuarantineSourceBuckets: payroll-*); the object is left where it is, for a "
        "person"
    )
    assert sources["actions"][0]["detail"].startswith(
        "not quarantined: the object at s3://vtriage-demo-uploads-123456789012/incoming/2025/03/"
        "remittance-advice.dll is no longer the one scanned: it has no version "
        "'3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrH' (the finding's); it holds another object, ETag "
    )


def test_json_lines_with_a_cut_off_line_run_the_good_findings_and_refuse_that_line_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given three real GuardDuty findings one a line, and a fourth line cut off inside its description (an
    # export interrupted); the run's temporary folder is the test's own
    findings = ["guardduty-ec2-canary-outbound-ssh.json", "guardduty-iam-recon-malicious-ip-caller.json"]
    findings.append("guardduty-s3-pentest-parrot-linux.json")
    lines = [json.dumps(json.loads(event(name).read_text(encoding="utf-8"))) for name in findings]
    fourth = json.dumps(json.loads(event("guardduty-getfindings-trojan-droppoint-dns.json").read_text()))
    quote = fourth.index('"Description": "') + len('"Description": ')
    path = tmp_path / "trunc.jsonl"
    path.write_text("\n".join([*lines, fourth[: quote + 20]]) + "\n", encoding="utf-8")
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))

    # When the runner runs the file
    status, stdout, _ = in_process("run", "--json", "--quiet", str(path))

    # Then the three findings are cases, each named by its line; the fourth line alone is refused, saying
    # what is wrong where; every line is counted, and the run exits 2 (something was refused)
    document = json.loads(stdout)
    assert status == 2
    assert sorted((case["message_id"], case["status"]) for case in document["cases"]) == [
        ("trunc.jsonl line 1", "TICKETED"),
        ("trunc.jsonl line 2", "TICKETED"),
        ("trunc.jsonl line 3", "TICKETED"),
    ]
    assert document["failures"] == [
        {
            "message_id": "trunc.jsonl line 4",
            "reason": f"not queued: not JSON (Unterminated string starting at line 4, column {quote + 1})",
        }
    ]
    assert (document["stats"]["records"], document["stats"]["findings"]) == (4, 4)
