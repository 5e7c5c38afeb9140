"""The enrich function on moto, built from template.yaml: a poison record beside nine findings, values
longer than DynamoDB's keys, cases larger than its items, repeats without end, and a VirusTotal key that
is refused or pasted with its line end."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.factories import make_alert, make_case
from tests.functional.conftest import EVENTS
from tests.unit.test_enrich import _domain_findings
from tests.unit.test_enrich_fates import POISONS, poison_body
from vtriage.adapters.dynamodb import (
    DynamoCaseRepository,
    DynamoEnrichmentCache,
    DynamoRepeatLedger,
    item_size,
)
from vtriage.bounds import MAX_HISTORY, MAX_REPEAT_IDS
from vtriage.models import (
    Enrichment,
    HistoryEntry,
    Ioc,
    IocOutcome,
    IocType,
    Repeat,
    Verdict,
)
from vtriage_local.replay import ReplayServer, bundled_recordings
from vtriage_local.stack import LocalAws

AT = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
LONG_URL = "http://soclosebutyetqq.com/" + "a" * 2100


def _long_url_finding() -> str:
    """An OCSF finding naming a URL longer than DynamoDB's 2,048-byte partition key."""
    finding = json.loads((EVENTS / "synthetic-ocsf-detection-finding-defanged.json").read_text())
    finding["observables"].append({"name": "url", "type_id": 6, "type": "URL String", "value": LONG_URL})
    return json.dumps(finding)


def _receive(aws: LocalAws, queue: str = "AlertQueue") -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    while True:
        batch = (
            aws.client("sqs")
            .receive_message(
                QueueUrl=aws.ref(queue),
                MaxNumberOfMessages=10,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
            .get("Messages", [])
        )
        if not batch:
            return messages
        messages.extend(batch)


def _event(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The messages as Lambda's event source mapping hands them to the function."""
    return {
        "Records": [
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": message.get("Attributes", {}),
                "messageAttributes": {
                    name: {"stringValue": value.get("StringValue"), "dataType": value["DataType"]}
                    for name, value in message.get("MessageAttributes", {}).items()
                },
                "md5OfBody": message.get("MD5OfBody", ""),
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:AlertQueue",
                "awsRegion": "us-east-1",
            }
            for message in messages
        ]
    }


def _deliver(aws: LocalAws, bodies: list[str]) -> dict[str, Any]:
    """Queue the bodies and receive them as one batch for the enrich function."""
    for body in bodies:
        aws.client("sqs").send_message(QueueUrl=aws.ref("AlertQueue"), MessageBody=body)
    messages = _receive(aws)
    assert len(messages) == len(bodies)
    return _event(messages)


def _items(aws: LocalAws) -> list[dict[str, Any]]:
    table = aws.client("dynamodb")
    items: list[dict[str, Any]] = []
    request: dict[str, Any] = {"TableName": aws.ref("CasesTable")}
    while True:
        response = table.scan(**request)
        items.extend(response["Items"])
        if "LastEvaluatedKey" not in response:
            return items
        request["ExclusiveStartKey"] = response["LastEvaluatedKey"]


def _cases(aws: LocalAws) -> list[dict[str, Any]]:
    """The stored cases: items with a status that are not failure records."""
    return [
        item for item in _items(aws) if "status" in item and not item["case_id"]["S"].startswith("failure#")
    ]


def _failures(aws: LocalAws, message_id: str) -> list[dict[str, Any]]:
    return [item for item in _items(aws) if item["case_id"]["S"].startswith(f"failure#{message_id}")]


def _logs(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """The log records with their extra fields (message id, case id, reason...)."""
    return [record.__dict__ for record in caplog.records]


def _metrics(output: str) -> list[dict[str, Any]]:
    """The EMF documents the function printed."""
    return [json.loads(line) for line in output.splitlines() if '"_aws"' in line]


@pytest.mark.parametrize("kind", [*POISONS, "URL IOC over 2,048 bytes"])
def test_a_poison_record_beside_nine_findings_costs_only_itself_on_the_real_handler(
    kind: str, local_aws: LocalAws, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Given nine findings and a poison record queued together, and a quota with room for the batch
    monkeypatch.setenv("VT_QUOTA_PER_MINUTE", "1000")
    poison = _long_url_finding() if kind == "URL IOC over 2,048 bytes" else poison_body(kind)
    bodies = _domain_findings(9, "beside")
    bodies.insert(4, poison)
    event = _deliver(local_aws, bodies)
    [poison_id] = [record["messageId"] for record in event["Records"] if record["body"] == poison]
    caplog.set_level(logging.INFO)

    # When the real handler gets the batch
    response = local_aws.invoke("EnrichFunction", event)

    # Then nothing is retried, and the nine findings are cases
    assert response["batchItemFailures"] == []
    failures = _failures(local_aws, poison_id)
    fate = "refused" if failures else "triaged"
    assert fate in POISONS.get(kind, {"triaged"})
    assert len(_cases(local_aws)) == 9 + (fate == "triaged")
    if fate == "refused":
        # and the poison record is refused with its reason, kept, parked with it, and logged
        [failure] = failures
        reason = failure["reason"]["S"]
        [parked] = _receive(local_aws, "AlertDeadLetterQueue")
        assert parked["MessageAttributes"]["vtriage_reason"]["StringValue"] == reason
        assert parked["MessageAttributes"]["vtriage_message_id"]["StringValue"] == poison_id
        refused = [log for log in _logs(caplog) if log["msg"] == "record refused"]
        assert [(log["message_id"], log["reason"]) for log in refused] == [(poison_id, reason)]
    else:
        assert _receive(local_aws, "AlertDeadLetterQueue") == []


def test_a_url_longer_than_a_dynamodb_key_is_cached_under_its_hash(local_aws: LocalAws) -> None:
    # Given the enrichments table and the enrichment of a 2,127-character URL
    cache = DynamoEnrichmentCache(
        local_aws.client("dynamodb"),
        local_aws.ref("EnrichmentsTable"),
        dict.fromkeys(Verdict, timedelta(hours=1)),
        timedelta(days=90),
        lambda: AT,
    )
    url = Ioc(type=IocType.URL, value=LONG_URL, found_at="observables[2].value")
    cache.put(
        [
            Enrichment(
                ioc_type=url.type, value=url.value, verdict=Verdict.UNKNOWN, link="https://vt", fetched_at=AT
            )
        ]
    )

    # When it is read back, Then it answers whole for its IOC
    [(key, enrichment)] = cache.get_fresh([url]).items()
    assert (key, enrichment.value, enrichment.cached) == (url.key, LONG_URL, True)


def _huge_case() -> Any:
    """A case of 120 URL IOCs of 2 KB each, with long reasons: over 500 KB as an item."""
    values = [f"http://synthetic-{n}.example.org/" + "p" * 2000 for n in range(120)]
    alert = make_alert(
        iocs=tuple(Ioc(type=IocType.URL, value=value, found_at="detail.urls") for value in values)
    )
    outcomes = [
        IocOutcome(
            type=IocType.URL,
            value=value,
            found_at="detail.urls",
            verdict=Verdict.MALICIOUS if n == 0 else Verdict.UNKNOWN,
            reasons=[f"reason {k} " + "r" * 300 for k in range(4)],
        )
        for n, value in enumerate(values)
    ]
    return make_case(alert, iocs=outcomes, verdict=Verdict.MALICIOUS)


def test_a_case_larger_than_a_dynamodb_item_is_stored_trimmed_with_notes(local_aws: LocalAws) -> None:
    # Given a case over 500 KB (DynamoDB refuses items over 400 KB)
    cases = DynamoCaseRepository(
        local_aws.client("dynamodb"), local_aws.ref("CasesTable"), timedelta(days=90), lambda: AT
    )
    case = _huge_case()

    # When it is stored
    assert cases.create(case)

    # Then it is kept under the limit, its verdict and malicious IOC kept, and it says what it left out
    item = local_aws.client("dynamodb").get_item(
        TableName=local_aws.ref("CasesTable"), Key={"case_id": {"S": case.case_id}}
    )["Item"]
    assert item_size(item) < 400 * 1024
    stored = cases.get(case.case_id)
    assert stored is not None
    assert stored.verdict is Verdict.MALICIOUS
    assert stored.iocs[0].verdict is Verdict.MALICIOUS
    assert any(note.startswith("IOCs:") and "of 120 kept" in note for note in stored.notes)


def test_repeats_folded_without_end_keep_the_case_bounded_and_every_count(local_aws: LocalAws) -> None:
    # Given a stored case
    client, table = local_aws.client("dynamodb"), local_aws.ref("CasesTable")
    cases = DynamoCaseRepository(client, table, timedelta(days=90), lambda: AT)
    ledger = DynamoRepeatLedger(client, table, lambda: AT)
    case = make_case(make_alert())
    case.record(case.status, AT, "received")
    cases.create(case)

    # When its finding repeats 130 times
    for n in range(130):
        repeat = Repeat(
            alert_id=f"{n:032x}",
            version="1",
            case_id=f"guardduty-{n}",
            at=AT,
            verdict=Verdict.UNKNOWN,
            severity=8,
        )
        entry = HistoryEntry(status=case.status, at=AT + timedelta(minutes=n), note=repeat.note)
        assert ledger.fold(case.case_id, repeat, entry)

    # Then every repeat is counted, the latest are kept, the first step of its history too
    stored = cases.get(case.case_id)
    assert stored is not None
    assert stored.repeat_count == 130
    assert len(stored.repeat_case_ids) <= MAX_REPEAT_IDS
    assert stored.repeat_case_ids[-1] == "guardduty-129"
    assert len(stored.history) <= MAX_HISTORY
    assert stored.history[0].status.value == "NEW"
    assert stored.history[0].note == "received"
    assert stored.history[-1].note.startswith(f"repeat of {129:032x}")
    assert stored.history_dropped == 131 - len(stored.history)
    # and a repeat delivered again is still counted once
    latest = Repeat(
        alert_id=f"{129:032x}",
        version="1",
        case_id="guardduty-129",
        at=AT,
        verdict=Verdict.UNKNOWN,
        severity=8,
    )
    assert not ledger.fold(case.case_id, latest, HistoryEntry(status=case.status, at=AT, note=latest.note))


@pytest.fixture
def replay(monkeypatch: pytest.MonkeyPatch) -> Iterator[ReplayServer]:
    """VirusTotal served by the replay server, which takes only the key `local-replay-key`."""
    with ReplayServer(bundled_recordings(), api_key="local-replay-key") as server:
        monkeypatch.setenv("VT_BASE_URL", server.base_url)
        monkeypatch.delenv("VT_API_KEY", raising=False)
        yield server


def test_a_virustotal_key_refused_defers_the_records_counts_a_metric_and_parks_nothing(
    replay: ReplayServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given a deployment whose VirusTotal key VirusTotal refuses (401 WrongCredentialsError), looking
    # IOCs up one at a time (lookups already in flight would each meet the refusal and count it)
    monkeypatch.setenv("VT_MAX_CONCURRENCY", "1")
    with LocalAws(vt_api_key="revoked-key-5f0c1d") as aws:
        event = _deliver(
            aws,
            [
                (EVENTS / name).read_text()
                for name in (
                    "synthetic-guardduty-backdoor-c2-dns.json",
                    "synthetic-guardduty-iam-tor-caller.json",
                )
            ],
        )
        capsys.readouterr()
        caplog.set_level(logging.INFO)

        # When the real handler gets the batch
        response = aws.invoke("EnrichFunction", event)
        parked = _receive(aws, "AlertDeadLetterQueue")

    # Then VirusTotal was asked once, and both records are deferred for a retry, none parked
    assert replay.request_count == 1
    assert len(response["batchItemFailures"]) == 2
    assert parked == []
    # and the refusal is a metric an alarm watches, and an error in the log that never shows the key
    output = capsys.readouterr()
    [metrics] = _metrics(output.out)
    assert metrics["VirusTotalAuthFailures"] == [1.0]
    assert metrics["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "vtriage"
    [error] = [log for log in _logs(caplog) if log["levelname"] == "ERROR"]
    assert "refused the API key" in error["msg"]
    assert "WrongCredentialsError" in error["error"]
    assert "revoked-key-5f0c1d" not in output.out + output.err + caplog.text + repr(_logs(caplog))


def test_a_virustotal_key_stored_with_its_line_end_still_works(replay: ReplayServer) -> None:
    # Given the key in Secrets Manager as pasted from a file, with its newline
    with LocalAws(vt_api_key="local-replay-key\n") as aws:
        event = _deliver(aws, [(EVENTS / "synthetic-guardduty-iam-tor-caller.json").read_text()])

        # When the real handler gets the record
        response = aws.invoke("EnrichFunction", event)

        # Then VirusTotal answered and the case is malicious
        assert response["batchItemFailures"] == []
        [case] = _cases(aws)
        assert case["verdict"]["S"] == "malicious"
    assert replay.request_count == 1
