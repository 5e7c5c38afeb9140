"""The DynamoDB enrichment cache when DynamoDB leaves part of a batch unprocessed (it does when it
throttles), and what the ticket function's reads of it ask DynamoDB for, on botocore's Stubber: no
network."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from vtriage.adapters.dynamodb import LATEST, DynamoEnrichmentCache, DynamoEnrichmentRecords, to_item
from vtriage.errors import TransientError
from vtriage.models import Enrichment, Ioc, IocOutcome, IocType, Verdict

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
TABLE = "enrichments"
FRESHNESS = dict.fromkeys(Verdict, timedelta(hours=1))


def _cache(client: Any, pauses: list[float]) -> DynamoEnrichmentCache:
    return DynamoEnrichmentCache(
        client, TABLE, FRESHNESS, timedelta(days=90), lambda: NOW, pause=pauses.append
    )


def _ioc(value: str) -> Ioc:
    return Ioc(type=IocType.DOMAIN, value=value, found_at="detail.domain")


def _enrichment(ioc: Ioc) -> Enrichment:
    return Enrichment(
        ioc_type=ioc.type, value=ioc.value, verdict=Verdict.HARMLESS, link="https://vt", fetched_at=NOW
    )


def _stored(ioc: Ioc) -> dict[str, Any]:
    return to_item(
        {
            "ioc_key": ioc.key,
            "fetched_at": LATEST,
            "fresh_until": int((NOW + timedelta(hours=1)).timestamp()),
            "enrichment": _enrichment(ioc).model_dump(mode="json"),
        }
    )


def _key(ioc: Ioc) -> dict[str, Any]:
    return {"ioc_key": {"S": ioc.key}, "fetched_at": {"S": LATEST}}


@pytest.fixture
def dynamodb() -> Any:
    return boto3.client(
        "dynamodb", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )


def test_keys_left_unprocessed_are_asked_for_again_after_a_pause(dynamodb: Any) -> None:
    # Given DynamoDB answering the first read for one IOC of two and leaving the other unprocessed
    first, second = _ioc("first.example"), _ioc("second.example")
    pauses: list[float] = []
    with Stubber(dynamodb) as stub:
        stub.add_response(
            "batch_get_item",
            {
                "Responses": {TABLE: [_stored(first)]},
                "UnprocessedKeys": {TABLE: {"Keys": [_key(second)]}},
            },
            {"RequestItems": {TABLE: {"Keys": [_key(first), _key(second)]}}},
        )
        stub.add_response(
            "batch_get_item",
            {"Responses": {TABLE: [_stored(second)]}, "UnprocessedKeys": {}},
            {"RequestItems": {TABLE: {"Keys": [_key(second)]}}},
        )

        # When both are read
        fresh = _cache(dynamodb, pauses).get_fresh([first, second])

        # Then both answer, after one pause, and DynamoDB was asked exactly twice
        stub.assert_no_pending_responses()
    assert sorted(fresh) == [first.key, second.key]
    assert len(pauses) == 1


def test_writes_dynamodb_keeps_leaving_unprocessed_end_in_a_transient_error(dynamodb: Any) -> None:
    # Given DynamoDB leaving a write unprocessed every time it is sent
    ioc = _ioc("throttled.example")
    pauses: list[float] = []
    with Stubber(dynamodb) as stub:
        for _ in range(6):
            stub.add_response(
                "batch_write_item",
                {"UnprocessedItems": {TABLE: [{"PutRequest": {"Item": _stored(ioc)}}]}},
                {"RequestItems": ANY},
            )

        # When the enrichment is stored, Then after six attempts, backing off, it gives up with a
        # transient error (the caller decides what a lost cache write costs)
        with pytest.raises(TransientError, match="unprocessed after 6 attempts"):
            _cache(dynamodb, pauses).put([_enrichment(ioc)])
        stub.assert_no_pending_responses()
    assert pauses == sorted(pauses)
    assert len(pauses) == 5


def _kept(ioc: Ioc, at: str) -> dict[str, Any]:
    return to_item(
        {"ioc_key": ioc.key, "fetched_at": at, "enrichment": _enrichment(ioc).model_dump(mode="json")}
    )


def _read(ioc: Ioc, at: str) -> dict[str, Any]:
    return {"ioc_key": {"S": ioc.key}, "fetched_at": {"S": at}}


PROJECTION = "ioc_key, fetched_at, enrichment"


def test_a_ticket_reads_each_ioc_once_when_what_it_was_judged_on_is_kept(dynamodb: Any) -> None:
    # Given two IOCs of a case, each judged on a lookup still kept, and a third whose lookup is gone
    kept, also_kept, gone = _ioc("kept.example"), _ioc("also-kept.example"), _ioc("gone.example")
    judged_at = NOW.isoformat()
    with Stubber(dynamodb) as stub:
        stub.add_response(
            "batch_get_item",
            {"Responses": {TABLE: [_kept(kept, judged_at), _kept(also_kept, judged_at)]}},
            {
                "RequestItems": {
                    TABLE: {
                        "Keys": [_read(kept, judged_at), _read(also_kept, judged_at), _read(gone, judged_at)],
                        "ProjectionExpression": PROJECTION,
                    }
                }
            },
        )
        stub.add_response(
            "batch_get_item",
            {"Responses": {TABLE: [_kept(gone, LATEST)]}},
            {"RequestItems": {TABLE: {"Keys": [_read(gone, LATEST)], "ProjectionExpression": PROJECTION}}},
        )

        # When the ticket function reads them back
        iocs = [IocOutcome.enriched(ioc, _enrichment(ioc)) for ioc in (kept, also_kept, gone)]
        found = DynamoEnrichmentRecords(dynamodb, TABLE).as_judged(iocs)

        # Then DynamoDB is asked for the lookups judged on, then for the last one kept of the IOC alone
        # whose lookup is gone: no IOC's enrichment is read twice
        stub.assert_no_pending_responses()
    assert sorted(found) == sorted(ioc.key for ioc in (kept, also_kept, gone))
