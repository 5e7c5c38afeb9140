"""The DynamoDB enrichment cache when DynamoDB leaves part of a batch unprocessed (it does when it
throttles), on botocore's Stubber: no network."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from vtriage.adapters.dynamodb import LATEST, DynamoEnrichmentCache, to_item
from vtriage.errors import TransientError
from vtriage.models import Enrichment, Ioc, IocType, Verdict

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
