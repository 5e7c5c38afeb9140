"""The shared VirusTotal quota on moto, with the template's QuotaTable: limiters in parallel, records
deferred to the next window and back, VirusTotal's own 429s, the cache's freshness per verdict, metrics."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from moto.core.models import DEFAULT_ACCOUNT_ID as ACCOUNT_ID
from moto.dynamodb.models import DynamoDBBackend
from moto.sqs.models import sqs_backends

from tests.functional.conftest import EVENTS
from vtriage.adapters.dynamodb import DynamoEnrichmentCache
from vtriage.adapters.quota import DynamoQuotaLimiter
from vtriage.composition.enrich import batch_factory
from vtriage.composition.sqs_batch import triage_sqs_batch
from vtriage.config.enrich import EnrichSettings
from vtriage.errors import QuotaExhaustedError
from vtriage.models import Enrichment, Ioc, IocType, Verdict
from vtriage_local.replay import ReplayServer, bundled_recordings
from vtriage_local.stack import REGION, LocalAws

SAMPLES = [
    "synthetic-guardduty-backdoor-c2-dns.json",  # domain tawuhoju.com
    "synthetic-guardduty-iam-tor-caller.json",  # ip 23.129.64.215
    "synthetic-guardduty-ec2-suspicious-dns.json",  # domain telemetry-sync.net
]
# Half a minute before the next window: a deferral here hides a record for 30 s.
MID_MINUTE = datetime(2026, 11, 26, 12, 0, 30, tzinfo=UTC)
NEXT_MINUTE = datetime(2026, 11, 26, 12, 1, 1, tzinfo=UTC)


class Clock:
    """A clock a test moves by hand."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


def _settings(**overrides: str) -> EnrichSettings:
    """The enrich function's settings as the local stack deployed them, with some overridden."""
    return EnrichSettings.from_environ({**os.environ, **overrides})


def _limiter(aws: LocalAws, per_minute: int, per_day: int, now: Callable[[], datetime]) -> DynamoQuotaLimiter:
    return DynamoQuotaLimiter(aws.client("dynamodb"), aws.ref("QuotaTable"), per_minute, per_day, now)


def _enqueue_samples(aws: LocalAws) -> None:
    for name in SAMPLES:
        aws.client("sqs").send_message(
            QueueUrl=aws.ref("AlertQueue"),
            MessageBody=(EVENTS / name).read_text(),
            MessageAttributes={"sample": {"DataType": "String", "StringValue": name}},
        )


def _receive(aws: LocalAws) -> dict[str, Any]:
    """Up to 10 messages of the alert queue as Lambda's event source mapping hands them over."""
    messages = (
        aws.client("sqs")
        .receive_message(
            QueueUrl=aws.ref("AlertQueue"),
            MaxNumberOfMessages=10,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        .get("Messages", [])
    )
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


def _failed(response: Mapping[str, Any]) -> set[str]:
    return {str(item["itemIdentifier"]) for item in response["batchItemFailures"]}


def _acknowledge_successes(aws: LocalAws, event: dict[str, Any], response: Mapping[str, Any]) -> None:
    """What the event source mapping does with a partial batch response: delete the records that succeeded."""
    failed = {item["itemIdentifier"] for item in response["batchItemFailures"]}
    for record in event["Records"]:
        if record["messageId"] not in failed:
            aws.client("sqs").delete_message(
                QueueUrl=aws.ref("AlertQueue"), ReceiptHandle=record["receiptHandle"]
            )


def _queue_counts(aws: LocalAws, logical_id: str) -> dict[str, int]:
    attributes = aws.client("sqs").get_queue_attributes(QueueUrl=aws.ref(logical_id), AttributeNames=["All"])
    return {
        name: int(attributes["Attributes"][name])
        for name in (
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        )
    }


def _hidden_for_ms(aws: LocalAws) -> list[int]:
    """When each hidden message of the alert queue becomes visible again, in ms after now (moto's state)."""
    queue = sqs_backends[ACCOUNT_ID][REGION].queues[aws.ref("AlertQueue").rsplit("/", 1)[-1]]
    now_ms = time.time() * 1000
    return sorted(int(message.visible_at - now_ms) for message in queue._messages if not message.visible)


def _time_travel(aws: LocalAws, records: list[dict[str, Any]]) -> None:
    """Make hidden records visible now, as if their deferral had run out."""
    for record in records:
        aws.client("sqs").change_message_visibility(
            QueueUrl=aws.ref("AlertQueue"), ReceiptHandle=record["receiptHandle"], VisibilityTimeout=0
        )


def _cases_by_status(aws: LocalAws) -> dict[str, int]:
    """How many cases wait for enrichment, and how many were triaged (enriched, then maybe ticketed)."""
    items = aws.client("dynamodb").scan(TableName=aws.ref("CasesTable"))["Items"]
    counts: dict[str, int] = {}
    # Only cases: the table also holds repeat keys (`repeat#...`), which have no status.
    for item in (item for item in items if "status" in item):
        status = "PENDING_ENRICHMENT" if item["status"]["S"] == "PENDING_ENRICHMENT" else "TRIAGED"
        counts[status] = counts.get(status, 0) + 1
    return counts


@pytest.fixture(autouse=True)
def isolated_transactions(monkeypatch: pytest.MonkeyPatch) -> None:
    """Give moto's transactions the isolation DynamoDB documents (serializable).

    moto copies the tables before a transaction and puts the copy back when it is cancelled, without a
    lock: a transaction cancelled in one thread can undo a write another thread made meanwhile, which
    DynamoDB never does. Without this, these tests (whose lookups run in parallel) would measure moto.
    """
    lock = threading.Lock()
    original = DynamoDBBackend.transact_write_items

    def serialised(backend: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
        with lock:
            original(backend, transact_items)

    monkeypatch.setattr(DynamoDBBackend, "transact_write_items", serialised)


def test_two_limiters_sharing_the_table_never_exceed_the_quota_together(local_aws: LocalAws) -> None:
    # Given two workers' limiters on the one quota table: 5 requests a minute, 100 a day
    clock = Clock(datetime(2026, 11, 26, 12, 0, 10, tzinfo=UTC))
    limiters = [_limiter(local_aws, 5, 100, clock) for _ in range(2)]
    granted: list[int] = []
    refused: list[QuotaExhaustedError] = []
    lock = threading.Lock()

    def worker(limiter: DynamoQuotaLimiter) -> None:
        for _ in range(8):
            try:
                limiter.acquire()
            except QuotaExhaustedError as error:
                with lock:
                    refused.append(error)
            else:
                with lock:
                    granted.append(1)

    # When both ask for 8 requests each at the same time
    threads = [threading.Thread(target=worker, args=(limiter,)) for limiter in limiters for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then exactly 5 were granted between them, and the others were told to wait for 12:01
    assert len(granted) == 5
    assert len(refused) == 27
    assert {(error.window, error.retry_at) for error in refused} == {
        ("minute", datetime(2026, 11, 26, 12, 1, tzinfo=UTC))
    }
    # and the day counted only what was granted
    assert limiters[0].used("day#2026-11-26") == 5
    assert limiters[0].used("minute#2026-11-26T12:00") == 5


def test_when_the_day_is_spent_no_minute_unit_is_taken_and_the_wait_is_until_midnight_utc(
    local_aws: LocalAws,
) -> None:
    # Given a day quota of 2, spent at 23:10 UTC
    clock = Clock(datetime(2026, 11, 26, 23, 10, tzinfo=UTC))
    limiter = _limiter(local_aws, 4, 2, clock)
    limiter.acquire()
    limiter.acquire()

    # When a third request is asked for a minute later
    clock.at += timedelta(minutes=1)
    with pytest.raises(QuotaExhaustedError) as raised:
        limiter.acquire()

    # Then it is refused until 00:00 UTC, and the new minute's quota is untouched
    assert (raised.value.window, raised.value.retry_at) == ("day", datetime(2026, 11, 27, tzinfo=UTC))
    assert limiter.used("minute#2026-11-26T23:11") == 0
    # and the next day the quota is whole again
    clock.at = datetime(2026, 11, 27, 0, 0, 1, tzinfo=UTC)
    limiter.acquire()
    assert limiter.used("day#2026-11-27") == 1


def test_a_block_of_units_is_taken_whole_or_not_at_all(local_aws: LocalAws) -> None:
    # Given a quota of 10 a minute and 12 a day, with 7 of the minute taken as one block
    clock = Clock(datetime(2026, 11, 26, 12, 0, 5, tzinfo=UTC))
    limiter = _limiter(local_aws, 10, 12, clock)
    limiter.acquire(7)

    # When a block of 4 is asked for, Then it is refused and nothing of it is spent
    with pytest.raises(QuotaExhaustedError) as refused:
        limiter.acquire(4)
    assert refused.value.window == "minute"
    assert "fewer than 4 requests left" in str(refused.value)
    assert limiter.used("minute#2026-11-26T12:00") == 7
    # and the 3 left can still be taken, one by one
    for _ in range(3):
        limiter.acquire()
    assert limiter.used("minute#2026-11-26T12:00") == 10

    # When the next minute a block of 3 is asked for but the day has only 2 left, Then the day refuses it
    clock.at += timedelta(minutes=1)
    with pytest.raises(QuotaExhaustedError) as refused:
        limiter.acquire(3)
    assert (refused.value.window, limiter.used("minute#2026-11-26T12:01")) == ("day", 0)
    # and a block larger than a whole minute's quota is refused without asking the table
    with pytest.raises(QuotaExhaustedError, match="do not fit in the quota of 10 a minute"):
        limiter.acquire(11)


def test_the_cache_reads_and_writes_batches_larger_than_dynamodb_takes_in_one_call(
    local_aws: LocalAws,
) -> None:
    # Given 130 enrichments (BatchGetItem reads 100 keys a call, BatchWriteItem writes 25 items)
    fetched = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    clock = Clock(fetched)
    settings = _settings()
    cache = DynamoEnrichmentCache(
        local_aws.client("dynamodb"),
        settings.enrichments_table,
        settings.cache_ttls,
        timedelta(days=90),
        clock,
    )
    iocs = [Ioc(type=IocType.IP, value=f"198.51.100.{n}", found_at="x") for n in range(130)]

    # When they are stored in one call and read back in one call, with an IOC never stored among them
    cache.put(
        [
            Enrichment(
                ioc_type=ioc.type,
                value=ioc.value,
                verdict=Verdict.MALICIOUS,
                link="https://vt",
                fetched_at=fetched,
            )
            for ioc in iocs
        ]
    )
    never_stored = Ioc(type=IocType.IP, value="203.0.113.9", found_at="x")
    fresh = cache.get_fresh([*iocs, never_stored])

    # Then every stored one answers, marked as cached, and the other is absent
    assert sorted(fresh) == sorted(ioc.key for ioc in iocs)
    assert all(enrichment.cached for enrichment in fresh.values())
    # and each IOC keeps its history beside its newest enrichment
    history = local_aws.client("dynamodb").query(
        TableName=settings.enrichments_table,
        KeyConditionExpression="ioc_key = :key",
        ExpressionAttributeValues={":key": {"S": iocs[0].key}},
    )["Items"]
    assert sorted(item["fetched_at"]["S"] for item in history) == [fetched.isoformat(), "latest"]


def test_with_one_request_a_minute_the_other_records_are_deferred_to_the_next_minute_and_none_is_lost(
    local_aws: LocalAws,
) -> None:
    # Given a quota of one request a minute, three alerts with distinct IOCs queued, and VirusTotal replayed
    with ReplayServer(bundled_recordings(), api_key="local-replay-key") as virustotal:
        clock = Clock(MID_MINUTE)
        settings = _settings(
            VT_QUOTA_PER_MINUTE="1", VT_BASE_URL=virustotal.base_url, DEFERRAL_REQUEUE_AFTER_RECEIVES="2"
        )
        new_batch = batch_factory(settings, clock)
        _enqueue_samples(local_aws)

        # When the enrich function gets them at 12:00:30
        event = _receive(local_aws)
        response = triage_sqs_batch(new_batch(), event)
        _acknowledge_successes(local_aws, event, response)

        # Then one case is enriched with one request, and the two other records are retried, not parked
        assert virustotal.request_count == 1
        assert len(response["batchItemFailures"]) == 2
        assert _cases_by_status(local_aws) == {"TRIAGED": 1, "PENDING_ENRICHMENT": 2}
        assert _queue_counts(local_aws, "AlertDeadLetterQueue")["ApproximateNumberOfMessages"] == 0
        # and they are hidden until the next minute begins (30 s), not for the queue's 365 s
        hidden = _hidden_for_ms(local_aws)
        assert len(hidden) == 2
        assert all(20_000 < ms <= 30_000 for ms in hidden), hidden
        _time_travel(local_aws, [r for r in event["Records"] if r["messageId"] in _failed(response)])
        back = _receive(local_aws)["Records"]
        assert len(back) == 2
        assert {record["attributes"]["ApproximateReceiveCount"] for record in back} == {"2"}

        # When they are handled in the new minute (received twice: at the re-queue threshold of this test)
        clock.at = NEXT_MINUTE
        event = {"Records": back}
        response = triage_sqs_batch(new_batch(), event)
        _acknowledge_successes(local_aws, event, response)

    # Then one more case is enriched, and the last record is queued afresh for the next minute
    assert response["batchItemFailures"] == []
    assert _cases_by_status(local_aws) == {"TRIAGED": 2, "PENDING_ENRICHMENT": 1}
    assert _queue_counts(local_aws, "AlertQueue") == {
        "ApproximateNumberOfMessages": 0,
        "ApproximateNumberOfMessagesNotVisible": 0,
        "ApproximateNumberOfMessagesDelayed": 1,
    }
    assert _queue_counts(local_aws, "AlertDeadLetterQueue")["ApproximateNumberOfMessages"] == 0
    # and no IOC was asked for twice: two lookups, two requests
    assert virustotal.request_count == 2


def test_virustotal_429s_defer_the_records_and_they_are_enriched_once_it_answers_again(
    local_aws: LocalAws,
) -> None:
    # Given VirusTotal answering every request with 429 QuotaExceededError (no wait between retries)
    clock = Clock(MID_MINUTE)
    with ReplayServer(
        bundled_recordings(), api_key="local-replay-key", faults={"429": 1.0}, retry_after_s=0
    ) as refusing:
        _enqueue_samples(local_aws)
        event = _receive(local_aws)

        # When the batch is handled with a generous quota of our own, one lookup at a time
        settings = _settings(VT_QUOTA_PER_MINUTE="100", VT_BASE_URL=refusing.base_url, VT_MAX_CONCURRENCY="1")
        response = triage_sqs_batch(batch_factory(settings, clock)(), event)

        # Then every record is deferred, none parked, and every case says its enrichment is pending
        assert len(response["batchItemFailures"]) == 3
        assert _cases_by_status(local_aws) == {"PENDING_ENRICHMENT": 3}
        assert _queue_counts(local_aws, "AlertDeadLetterQueue")["ApproximateNumberOfMessages"] == 0
        # and after the first lookup's 429s (4 attempts by the client) nothing more was asked
        assert refusing.request_count == 4

    # When they come back at the next minute and VirusTotal answers again
    _time_travel(local_aws, event["Records"])
    back = _receive(local_aws)
    assert len(back["Records"]) == 3
    clock.at = NEXT_MINUTE
    with ReplayServer(bundled_recordings(), api_key="local-replay-key") as answering:
        settings = _settings(VT_QUOTA_PER_MINUTE="100", VT_BASE_URL=answering.base_url)
        response = triage_sqs_batch(batch_factory(settings, clock)(), back)

        # Then all three are enriched, each IOC looked up once
        assert response["batchItemFailures"] == []
        assert _cases_by_status(local_aws) == {"TRIAGED": 3}
        assert answering.request_count == 3


def test_the_cache_keeps_each_verdict_fresh_for_its_own_time(local_aws: LocalAws) -> None:
    # Given the enrichments table with the default freshness per verdict, and four enrichments fetched now
    fetched = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    clock = Clock(fetched)
    settings = _settings()
    dynamodb = local_aws.client("dynamodb")
    cache = DynamoEnrichmentCache(
        dynamodb, settings.enrichments_table, settings.cache_ttls, timedelta(days=90), clock
    )
    iocs = {
        verdict: Ioc(type=IocType.DOMAIN, value=f"{verdict.value}.com", found_at="x") for verdict in Verdict
    }
    cache.put(
        [
            Enrichment(
                ioc_type=ioc.type, value=ioc.value, verdict=verdict, link="https://vt", fetched_at=fetched
            )
            for verdict, ioc in iocs.items()
        ]
    )

    def fresh_after(hours: float) -> set[str]:
        clock.at = fetched + timedelta(hours=hours)
        fresh = cache.get_fresh(list(iocs.values()))
        return {verdict.value for verdict, ioc in iocs.items() if ioc.key in fresh}

    # Then each answers from the cache for its verdict's time: 24 h, 12 h, 6 h, 1 h
    assert fresh_after(0.5) == {"malicious", "suspicious", "harmless", "unknown"}
    assert fresh_after(2) == {"malicious", "suspicious", "harmless"}
    assert fresh_after(7) == {"malicious", "suspicious"}
    assert fresh_after(13) == {"malicious"}
    assert fresh_after(25) == set()


def test_the_handler_emits_its_counts_as_metrics(
    local_aws: LocalAws, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a day quota of one request, and three alerts with distinct IOCs queued
    monkeypatch.setenv("VT_QUOTA_PER_DAY", "1")
    _enqueue_samples(local_aws)
    event = _receive(local_aws)
    capsys.readouterr()

    # When the real handler gets the batch
    response = local_aws.invoke("EnrichFunction", event)

    # Then two records are deferred, and its EMF metrics say what it did
    assert len(response["batchItemFailures"]) == 2
    documents = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    [metrics] = [document for document in documents if "Deferred" in document]
    counts = {name: metrics[name] for name in ("VirusTotalRequests", "CacheHits", "Deferred", "Rejected")}
    assert counts == {"VirusTotalRequests": [1.0], "CacheHits": [0.0], "Deferred": [2.0], "Rejected": [0.0]}
    assert _queue_counts(local_aws, "AlertDeadLetterQueue")["ApproximateNumberOfMessages"] == 0
