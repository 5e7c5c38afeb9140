"""Cases and enrichments in DynamoDB, on the low-level client passed in."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from vtriage.adapters.aws_errors import raise_transient
from vtriage.models import Case, Enrichment, Ioc

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()

# DynamoDB items stop at 400 KB; a rejected body is kept up to this size and marked as cut beyond it.
MAX_KEPT_BODY = 64 * 1024


def to_item(document: dict[str, Any]) -> dict[str, Any]:
    """A JSON-compatible document as a DynamoDB item (numbers as Decimal, as DynamoDB requires)."""
    native = json.loads(json.dumps(document), parse_float=Decimal)
    return {name: _serializer.serialize(value) for name, value in native.items()}


def from_item(item: dict[str, Any]) -> dict[str, Any]:
    """A DynamoDB item as a JSON-compatible document."""
    native = {name: _deserializer.deserialize(value) for name, value in item.items()}
    return json.loads(json.dumps(native, default=_decimal_to_number))  # type: ignore[no-any-return]


def _decimal_to_number(value: object) -> int | float:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


class DynamoCaseRepository:
    """Cases, one item each, keyed by `case_id`; rejected records beside them as `failure#<message id>`."""

    def __init__(
        self, client: Any, table_name: str, retention: timedelta, now: Callable[[], datetime]
    ) -> None:
        self._client = client
        self._table = table_name
        self._retention = retention
        self._now = now

    def _item(self, case: Case) -> dict[str, Any]:
        document = case.model_dump(mode="json")
        document["expires_at"] = _epoch(case.created_at + self._retention)
        return to_item(document)

    def create(self, case: Case) -> bool:
        """Store a new case; False when one with this id exists already (a repeat delivery)."""
        try:
            self._client.put_item(
                TableName=self._table,
                Item=self._item(case),
                ConditionExpression="attribute_not_exists(case_id)",
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise_transient(error)
            raise
        return True

    def get(self, case_id: str) -> Case | None:
        """The case, or None."""
        try:
            response = self._client.get_item(
                TableName=self._table, Key={"case_id": {"S": case_id}}, ConsistentRead=True
            )
        except ClientError as error:
            raise_transient(error)
            raise
        if "Item" not in response:
            return None
        document = from_item(response["Item"])
        document.pop("expires_at", None)
        return Case.model_validate(document)

    def save(self, case: Case) -> None:
        """Replace the stored case with this version."""
        try:
            self._client.put_item(TableName=self._table, Item=self._item(case))
        except ClientError as error:
            raise_transient(error)
            raise

    def record_failure(self, message_id: str, reason: str, body: str) -> None:
        """Keep a rejected record, its reason and its body, queryable by status REJECTED."""
        now = self._now()
        kept = body if len(body) <= MAX_KEPT_BODY else body[:MAX_KEPT_BODY]
        document = {
            "case_id": failure_key(message_id),
            "status": "REJECTED",
            "message_id": message_id,
            "reason": reason,
            "body": kept,
            "body_truncated": len(kept) < len(body),
            "created_at": now.isoformat(),
            "updated_at": now.isoformat(),
            "expires_at": _epoch(now + self._retention),
        }
        try:
            self._client.put_item(TableName=self._table, Item=to_item(document))
        except ClientError as error:
            raise_transient(error)
            raise

    def get_failure(self, message_id: str) -> dict[str, Any] | None:
        """The failure record of a rejected message, or None."""
        response = self._client.get_item(
            TableName=self._table, Key={"case_id": {"S": failure_key(message_id)}}, ConsistentRead=True
        )
        return from_item(response["Item"]) if "Item" in response else None


def failure_key(message_id: str) -> str:
    """Where the failure record of a rejected message lives in the cases table."""
    return f"failure#{message_id}"


class DynamoEnrichmentCache:
    """Enrichments keyed by IOC and fetch time: the newest one answers while it is fresh; older ones
    stay as history until their TTL."""

    def __init__(
        self,
        client: Any,
        table_name: str,
        freshness: timedelta,
        retention: timedelta,
        now: Callable[[], datetime],
    ) -> None:
        self._client = client
        self._table = table_name
        self._freshness = freshness
        self._retention = retention
        self._now = now

    def get_fresh(self, ioc: Ioc) -> Enrichment | None:
        """The newest enrichment of the IOC if it is still fresh, marked as coming from the cache."""
        try:
            response = self._client.query(
                TableName=self._table,
                KeyConditionExpression="ioc_key = :key",
                ExpressionAttributeValues={":key": {"S": ioc.key}},
                ScanIndexForward=False,
                Limit=1,
            )
        except ClientError as error:
            raise_transient(error)
            raise
        items = response.get("Items", [])
        if not items:
            return None
        document = from_item(items[0])
        if int(document.get("fresh_until", 0)) <= _epoch(self._now()):
            return None
        enrichment = Enrichment.model_validate(document["enrichment"])
        return enrichment.model_copy(update={"cached": True})

    def put(self, enrichment: Enrichment) -> None:
        """Keep the enrichment: fresh for the configured time, kept for the retention period."""
        fetched = enrichment.fetched_at.astimezone(UTC)
        document = {
            "ioc_key": enrichment.key,
            "fetched_at": fetched.isoformat(),
            "verdict": enrichment.verdict.value,
            "fresh_until": _epoch(fetched + self._freshness),
            "expires_at": _epoch(fetched + self._retention),
            "enrichment": enrichment.model_dump(mode="json"),
        }
        try:
            self._client.put_item(TableName=self._table, Item=to_item(document))
        except ClientError as error:
            raise_transient(error)
            raise
