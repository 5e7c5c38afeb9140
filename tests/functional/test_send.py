"""`vtriage send FILE... --queue-url URL` against the template's alert queue on moto, with the ordinary
boto3 client (pointed at moto by AWS_ENDPOINT_URL, as it would be at AWS by the user's configuration)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.functional.conftest import event, load_event
from vtriage_local import cli
from vtriage_local.stack import LocalAws

ALERT_QUEUE = "AlertQueue"


def queued_bodies(aws: LocalAws) -> list[str]:
    """Every body waiting on the alert queue."""
    sqs = aws.client("sqs")
    messages = sqs.receive_message(QueueUrl=aws.ref(ALERT_QUEUE), MaxNumberOfMessages=10).get("Messages", [])
    return [message["Body"] for message in messages]


def send(capsys: pytest.CaptureFixture[str], *arguments: str) -> tuple[int, dict[str, Any]]:
    """Run `vtriage send ... --json`; its exit status and document."""
    status = cli.main(["send", *arguments, "--json"])
    out = capsys.readouterr().out
    return status, json.loads(out) if out else {}


def test_a_finding_file_is_queued_unchanged(local_aws: LocalAws, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a GuardDuty event file
    path = event("synthetic-guardduty-backdoor-c2-dns.json")

    # When it is sent to the deployed queue
    status, document = send(capsys, str(path), "--queue-url", local_aws.ref(ALERT_QUEUE))

    # Then it is queued byte for byte, and the output names the alert and the message
    assert status == 0
    assert queued_bodies(local_aws) == [path.read_text(encoding="utf-8")]
    (sent,) = document["sent"]
    assert sent["source_id"] == path.name
    assert sent["alert_ids"] == [load_event("synthetic-guardduty-backdoor-c2-dns.json")["detail"]["id"]]
    assert sent["message_id"]
    assert document["rejected"] == []


def test_an_sqs_event_file_queues_each_record_body(
    local_aws: LocalAws, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given an SQS event file, read as `vtriage run` reads it: one message per record
    path = event("sqs/synthetic-sqs-guardduty-backdoor-c2-dns.json")
    records = load_event("sqs/synthetic-sqs-guardduty-backdoor-c2-dns.json")["Records"]

    # When it is sent
    status, document = send(capsys, str(path), "--queue-url", local_aws.ref(ALERT_QUEUE))

    # Then each record's body is queued, named by its message id
    assert status == 0
    assert sorted(queued_bodies(local_aws)) == sorted(record["body"] for record in records)
    assert [sent["source_id"] for sent in document["sent"]] == [record["messageId"] for record in records]


def test_a_bad_file_is_reported_and_not_queued_while_the_good_one_is(
    local_aws: LocalAws, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Given a good file and a finding that lost its id
    good = event("guardduty-ec2-canary-outbound-ssh.json")
    broken = load_event("guardduty-ec2-canary-outbound-ssh.json")
    del broken["id"]
    bad = tmp_path / "broken.json"
    bad.write_text(json.dumps(broken), encoding="utf-8")

    # When both are sent
    status, document = send(capsys, str(bad), str(good), "--queue-url", local_aws.ref(ALERT_QUEUE))

    # Then only the good one is queued, the bad one is reported with its field, and the status says so
    assert status == 2
    assert queued_bodies(local_aws) == [good.read_text(encoding="utf-8")]
    (rejected,) = document["rejected"]
    assert rejected["source_id"] == "broken.json"
    assert "id" in f"{rejected['field']}: {rejected['error']}"
    assert "missing" in rejected["error"]


def test_the_readable_output_says_what_was_sent_and_what_was_not(
    local_aws: LocalAws, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Given a good file and one that is not JSON
    good = event("guardduty-ec2-canary-outbound-ssh.json")
    bad = tmp_path / "notes.txt"
    bad.write_text("the alert is in the ticket", encoding="utf-8")

    # When they are sent without --json
    status = cli.main(["send", str(good), str(bad), "--queue-url", local_aws.ref(ALERT_QUEUE)])
    out = capsys.readouterr().out

    # Then one line says it was sent and one says why the other was not
    assert status == 2
    lines = out.splitlines()
    assert lines[0].startswith("sent")
    assert "16afba5c5c43e07c9e3e5e2e544e95df" in lines[0]
    assert lines[1].startswith("rejected")
    assert "notes.txt (body): not JSON" in lines[1]


def test_a_finding_refused_alone_is_named_and_the_status_says_so(
    local_aws: LocalAws, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Given get-findings output whose second finding lost its id
    document = load_event("guardduty-getfindings-trojan-droppoint-dns.json")
    broken = json.loads(json.dumps(document["Findings"][0]))
    del broken["Id"]
    document["Findings"].append(broken)
    path = tmp_path / "get-findings.json"
    path.write_text(json.dumps(document), encoding="utf-8")

    # When it is sent
    status, output = send(capsys, str(path), "--queue-url", local_aws.ref(ALERT_QUEUE))

    # Then it is queued for the good finding, the refused one is named with its reason, and the status
    # says that not everything will become a case
    assert status == 2
    assert queued_bodies(local_aws) == [path.read_text(encoding="utf-8")]
    (sent,) = output["sent"]
    assert sent["alert_ids"] == [document["Findings"][0]["Id"]]
    assert [refused["where"] for refused in sent["refused"]] == ["Findings[1]"]
    assert output["rejected"] == []


def test_a_queue_that_does_not_exist_is_a_setup_error(
    local_aws: LocalAws, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a queue URL nobody deployed
    missing = local_aws.ref(ALERT_QUEUE).rsplit("/", 1)[0] + "/no-such-queue"

    # When a good file is sent there
    status = cli.main(["send", str(event("guardduty-ec2-canary-outbound-ssh.json")), "--queue-url", missing])

    # Then the command fails with a message naming the queue, and the real queue is untouched
    assert status == 1
    assert missing in capsys.readouterr().err
    assert queued_bodies(local_aws) == []


def test_a_missing_file_is_a_usage_error(local_aws: LocalAws, capsys: pytest.CaptureFixture[str]) -> None:
    # When a file that does not exist is sent
    status = cli.main(["send", "no-such-alert.json", "--queue-url", local_aws.ref(ALERT_QUEUE)])

    # Then nothing is queued and the file is named
    assert status == 1
    assert "no-such-alert.json" in capsys.readouterr().err
    assert queued_bodies(local_aws) == []


def test_a_file_that_is_not_utf8_text_is_refused_beside_a_good_one_that_is_queued(
    local_aws: LocalAws, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Given a file saved as Latin-1, which SQS cannot carry, and a good file
    bad = tmp_path / "latin-1.json"
    bad.write_bytes('{"detail": "caf\u00e9"}'.encode("latin-1"))
    good = event("guardduty-ec2-canary-outbound-ssh.json")

    # When both are sent
    status, document = send(capsys, str(bad), str(good), "--queue-url", local_aws.ref(ALERT_QUEUE))

    # Then the bad one is refused saying where its text breaks, and only the good one is queued
    assert status == 2
    (rejected,) = document["rejected"]
    assert rejected["source_id"] == "latin-1.json"
    assert "not UTF-8" in rejected["error"]
    assert "offset 15" in rejected["error"]
    assert queued_bodies(local_aws) == [good.read_text(encoding="utf-8")]
