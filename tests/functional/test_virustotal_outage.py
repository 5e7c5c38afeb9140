"""VirusTotal down for longer than the retries: the real enrich handler on moto, the records delivered as
the event source mapping and the redrive policy do (`vtriage_local.runner.Pipeline`), and VirusTotal on
loopback answering HTTP 500 to every request (the replay server's injected fault). The alert becomes a
ticketed case on its record's last delivery, and nothing reaches the dead-letter queue."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.functional.conftest import event
from tests.functional.test_runner_cli import C2, C2_TITLE, RUN_TIMEOUT_S, command, environment
from vtriage_local.alert_files import read_deliveries
from vtriage_local.replay import ReplayServer, bundled_recordings
from vtriage_local.runner import REPLAY_QUOTA, Pipeline
from vtriage_local.stack import LocalAws

pytestmark = pytest.mark.functional

UNAVAILABLE = "VirusTotal unavailable (HTTP 500, 4 attempts)"
NOT_ENRICHED = f"not enriched: {UNAVAILABLE} on the last of 5 deliveries"


@pytest.fixture
def virustotal_down(monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalAws]:
    """A fresh local AWS with the template's resources, its VirusTotal answering every request HTTP 500.
    The quota is the one `vtriage run` applies to a VirusTotal on this machine: redeliveries come at once
    here (not after the queue's visibility timeout), and the public API's 4 lookups a minute would defer
    the fifth."""
    with ReplayServer(bundled_recordings(), api_key="local-replay-key", faults={"500": 1.0}) as replay:
        monkeypatch.setenv("VT_BASE_URL", replay.base_url)
        monkeypatch.delenv("VT_API_KEY", raising=False)
        with LocalAws(parameters=REPLAY_QUOTA) as aws:
            yield aws


def _dead_letters(aws: LocalAws) -> int:
    attributes = aws.client("sqs").get_queue_attributes(
        QueueUrl=aws.ref("AlertDeadLetterQueue"), AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"])


def _queued_c2(aws: LocalAws, progress: list[str]) -> Pipeline:
    pipeline = Pipeline(aws, progress.append)
    [delivery] = read_deliveries(event(C2))
    pipeline.enqueue(delivery)
    return pipeline


def test_the_alert_becomes_a_ticketed_case_on_its_last_delivery_and_nothing_is_dead_lettered(
    virustotal_down: LocalAws,
) -> None:
    # Given the C&C finding queued, and VirusTotal answering HTTP 500 to every attempt
    progress: list[str] = []
    pipeline = _queued_c2(virustotal_down, progress)

    # When the enrich function gets its record, again and again as SQS redelivers it
    outcomes, failures = pipeline.drain(wait_s=0)

    # Then the first four deliveries are retried, each saying why as it happens
    retried = [line for line in progress if line.endswith(f"; 1 to retry: {UNAVAILABLE}")]
    assert len(retried) == 4, progress
    # And the fifth, the last before the dead-letter queue, is acknowledged: nothing is parked
    assert failures == []
    assert len(outcomes) == 1
    assert _dead_letters(virustotal_down) == 0
    # And its alert is a case the state machine took to a ticket, saying why its domain has no verdict
    settled = pipeline.settle(waited_s=0)
    [case] = [item for item in settled.items.values() if isinstance(item.get("alert"), dict)]
    assert (case["verdict"], case["branch"], case["status"]) == ("unknown", "ticket", "TICKETED")
    assert case["ticket"] is not None
    [ioc] = case["iocs"]
    assert (ioc["value"], ioc["verdict"], ioc["reasons"][0]) == ("tawuhoju.com", "unknown", NOT_ENRICHED)
    assert case["actions"] == []
    # And nothing of the failure was cached
    assert _enrichments(virustotal_down) == []


def _enrichments(aws: LocalAws) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = aws.client("dynamodb").scan(TableName=aws.ref("EnrichmentsTable"))["Items"]
    return items


def test_a_record_still_failing_on_the_queues_last_delivery_says_its_last_error(
    virustotal_down: LocalAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an enrich function that counts more deliveries than its queue gives (MAX_RECEIVE_COUNT 9, the
    # queue's maxReceiveCount 5), so that VirusTotal's outage still fails the record on the queue's last
    monkeypatch.setenv("MAX_RECEIVE_COUNT", "9")
    pipeline = _queued_c2(virustotal_down, [])

    # When the record is delivered until the queue parks it
    outcomes, failures = pipeline.drain(wait_s=0)

    # Then the run says what failed it, not only where the log is
    assert outcomes == []
    [failure] = failures
    assert failure["reason"] == (
        "the enrich function failed on it 5 times; moved to the dead-letter queue "
        f"(last error: {UNAVAILABLE})"
    )
    assert _dead_letters(virustotal_down) == 1


def test_vtriage_run_with_virustotal_failing_reports_a_case_saying_it_was_not_enriched(
    tmp_path: Path,
) -> None:
    # Given the C&C sample, and the replay server answering every request HTTP 500
    # When `vtriage run --vt-faults 500:1` runs it
    done = subprocess.run(
        command("run", "--vt-faults", "500:1", str(event(C2))),
        capture_output=True,
        env=environment(tmp_path / "tmp"),
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    stdout, stderr = done.stdout.decode(), done.stderr.decode()

    # Then it exits 0: the finding became a case, none is refused
    assert done.returncode == 0, stderr
    # And the progress said why the record was retried
    assert f"enrich function: 0 of 1 record(s) handled; 1 to retry: {UNAVAILABLE}" in stderr
    # And the report shows the ticketed case and its domain's reason
    lines = stdout.splitlines()
    assert any(line.split()[:4] == ["1", "unknown", "ticket", "TICKETED"] for line in lines), stdout
    report = " ".join(stdout.split())
    assert C2_TITLE in report
    assert NOT_ENRICHED in report
    assert "Refused" not in stdout
    assert "1 case(s), 0 repeat(s), 0 ignored, 0 pending, 0 refused" in report


def test_vtriage_run_with_virustotal_refusing_for_quota_says_the_record_is_deferred_not_handled(
    tmp_path: Path,
) -> None:
    # Given the C&C sample, and the replay server answering every request HTTP 429 (quota exceeded)
    # When `vtriage run --vt-faults 429:1` runs it, not waiting for the deferral to end
    done = subprocess.run(
        command("run", "--vt-faults", "429:1", "--deferred-wait-s", "0", str(event(C2))),
        capture_output=True,
        env=environment(tmp_path / "tmp"),
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    stderr = done.stderr.decode()

    # Then the progress says the record was deferred, and why, and never counts it as handled
    progress = [line.split("] ", 1)[1] for line in stderr.splitlines() if "enrich function:" in line]
    assert progress, stderr
    deferred = "enrich function: 0 of 1 record(s) handled; 1 deferred: "
    assert all(line.startswith(deferred) for line in progress)
    assert all("(HTTP 429)" in line for line in progress)
    # And the run ends with the record pending (exit status 2), as before
    assert done.returncode == 2, stderr
