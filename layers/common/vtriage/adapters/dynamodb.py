"""Cases and enrichments in DynamoDB, on the low-level client passed in."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from vtriage.adapters.aws_errors import raise_transient
from vtriage.errors import TransientError
from vtriage.models import Case, CaseStatus, Enrichment, HistoryEntry, Ioc, Repeat, Verdict

_T = TypeVar("_T")
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


def to_attribute(value: Any) -> dict[str, Any]:
    """A JSON-compatible value as one DynamoDB attribute value."""
    return dict(_serializer.serialize(json.loads(json.dumps(value), parse_float=Decimal)))


def case_from_item(item: dict[str, Any]) -> Case:
    """A stored case item as a Case."""
    document = from_item(item)
    document.pop("expires_at", None)
    return Case.model_validate(document)


# The index on the cases table by status, newest `updated_at` first (template.yaml, CasesTable).
BY_STATUS_INDEX = "by-status"


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
        # Every write keeps the history up to date, whichever step changed the status.
        document = case.with_status_recorded().model_dump(mode="json")
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
        return case_from_item(response["Item"])

    def list_by_status(self, status: CaseStatus, limit: int | None = None) -> list[Case]:
        """The cases in this status, the most recently updated first (the `by-status` index)."""
        found: list[Case] = []
        request: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": BY_STATUS_INDEX,
            "KeyConditionExpression": "#status = :status",
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": {":status": {"S": status.value}},
            "ScanIndexForward": False,
        }
        while limit is None or len(found) < limit:
            if limit is not None:
                request["Limit"] = limit - len(found)
            try:
                response = self._client.query(**request)
            except ClientError as error:
                raise_transient(error)
                raise
            found.extend(case_from_item(item) for item in response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                break
            request["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        return found

    def list_cases(
        self, statuses: Iterable[CaseStatus] | None = None, limit: int | None = None
    ) -> list[Case]:
        """The cases in any of these statuses (every status when None), most recently updated first."""
        found = [
            case for status in (statuses or list(CaseStatus)) for case in self.list_by_status(status, limit)
        ]
        found.sort(key=lambda case: case.updated_at, reverse=True)
        return found if limit is None else found[:limit]

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


class DynamoRepeatLedger:
    """Repeats of findings, in the cases table: a `repeat#<digest>` item per repeat key holds the case
    that key opened until its window ends (one GetItem finds it; the item has no status, so it stays out
    of the by-status index, and DynamoDB's TTL removes it), and repeats are folded into that case with
    one conditional UpdateItem, so that a concurrent write to the case loses nothing and a repeat
    delivered twice counts once."""

    def __init__(self, client: Any, table_name: str, now: Callable[[], datetime]) -> None:
        """Take a boto3 DynamoDB client, the cases table's name and the clock."""
        self._client = client
        self._table = table_name
        self._now = now

    def earlier_case(self, repeat_key: str) -> str | None:
        """The id of the case the repeat key opened, while its window is open; else None."""
        try:
            response = self._client.get_item(
                TableName=self._table, Key={"case_id": {"S": repeat_key}}, ConsistentRead=True
            )
        except ClientError as error:
            raise_transient(error)
            raise
        item = from_item(response["Item"]) if "Item" in response else None
        # TTL deletes expired items only eventually: the window is checked here.
        if item is None or int(item.get("expires_at", 0)) <= _epoch(self._now()):
            return None
        return str(item["repeat_of"])

    def remember(self, repeat_key: str, case_id: str, until: datetime) -> None:
        """Point the repeat key at this case until `until`."""
        document = {"case_id": repeat_key, "repeat_of": case_id, "expires_at": _epoch(until)}
        try:
            self._client.put_item(TableName=self._table, Item=to_item(document))
        except ClientError as error:
            raise_transient(error)
            raise

    def fold(self, case_id: str, repeat: Repeat, entry: HistoryEntry) -> bool:
        """Count the repeat on the case and add `entry` to its history; False when the case is gone or
        already counts this repeat (by its case id)."""
        try:
            self._client.update_item(
                TableName=self._table,
                Key={"case_id": {"S": case_id}},
                UpdateExpression=(
                    "SET #count = if_not_exists(#count, :zero) + :one, "
                    "#ids = list_append(if_not_exists(#ids, :empty), :ids), "
                    "#last = :repeat, "
                    "#history = list_append(if_not_exists(#history, :empty), :entry), "
                    "#updated = :now"
                ),
                ConditionExpression="attribute_exists(case_id) AND NOT contains(#ids, :id)",
                ExpressionAttributeNames={
                    "#count": "repeat_count",
                    "#ids": "repeat_case_ids",
                    "#last": "last_repeat",
                    "#history": "history",
                    "#updated": "updated_at",
                },
                ExpressionAttributeValues={
                    ":zero": {"N": "0"},
                    ":one": {"N": "1"},
                    ":empty": {"L": []},
                    ":ids": {"L": [{"S": repeat.case_id}]},
                    ":id": {"S": repeat.case_id},
                    ":repeat": to_attribute(repeat.model_dump(mode="json")),
                    ":entry": {"L": [to_attribute(entry.model_dump(mode="json"))]},
                    # As the models write it, so that the by-status index sorts every case alike.
                    ":now": {"S": str(entry.model_dump(mode="json")["at"])},
                },
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise_transient(error)
            raise
        return True


def failure_key(message_id: str) -> str:
    """Where the failure record of a rejected message lives in the cases table."""
    return f"failure#{message_id}"


class DynamoEnrichmentCache:
    """Enrichments keyed by IOC and fetch time, fresh for a time that depends on their verdict.

    Each enrichment is written twice: under its fetch time, as history kept until its TTL, and under
    the sort key `latest`, so that a batch reads the newest enrichment of all its IOCs with one
    BatchGetItem (100 keys a call) instead of a query each, and writes them with one BatchWriteItem
    (25 items a call). Two workers storing the same IOC at once: the last write is the one kept.
    """

    def __init__(
        self,
        client: Any,
        table_name: str,
        freshness: Mapping[Verdict, timedelta],
        retention: timedelta,
        now: Callable[[], datetime],
        *,
        pause: Callable[[float], None] = time.sleep,
    ) -> None:
        """`freshness`: how long an enrichment of each verdict answers for its IOC; `retention`: how
        long it is kept at all."""
        self._client = client
        self._table = table_name
        self._freshness = dict(freshness)
        self._retention = retention
        self._now = now
        self._pause = pause

    def get_fresh(self, iocs: Sequence[Ioc]) -> dict[str, Enrichment]:
        """The newest enrichment of each IOC while it is fresh, by IOC key, marked as coming from the
        cache; an IOC with none is absent."""
        keys = list(dict.fromkeys(ioc.key for ioc in iocs))
        now = _epoch(self._now())
        fresh: dict[str, Enrichment] = {}
        for chunk in _chunks(keys, _BATCH_GET_KEYS):
            request = {
                self._table: {"Keys": [{"ioc_key": {"S": key}, "fetched_at": {"S": LATEST}} for key in chunk]}
            }
            for response in _until_processed(
                self._client.batch_get_item, request, "UnprocessedKeys", self._pause
            ):
                for item in response.get("Responses", {}).get(self._table, []):
                    document = from_item(item)
                    if int(document.get("fresh_until", 0)) > now:
                        enrichment = Enrichment.model_validate(document["enrichment"])
                        fresh[enrichment.key] = enrichment.model_copy(update={"cached": True})
        return fresh

    def put(self, enrichments: Sequence[Enrichment]) -> None:
        """Keep the enrichments: each fresh for its verdict's time, kept for the retention period."""
        writes = [
            {"PutRequest": {"Item": to_item(document)}}
            for enrichment in enrichments
            for document in self._documents(enrichment)
        ]
        for chunk in _chunks(writes, _BATCH_WRITE_ITEMS):
            _until_processed(
                self._client.batch_write_item, {self._table: chunk}, "UnprocessedItems", self._pause
            )

    def _documents(self, enrichment: Enrichment) -> list[dict[str, Any]]:
        fetched = enrichment.fetched_at.astimezone(UTC)
        document = {
            "ioc_key": enrichment.key,
            "fetched_at": fetched.isoformat(),
            "verdict": enrichment.verdict.value,
            "fresh_until": _epoch(fetched + self._freshness[enrichment.verdict]),
            "expires_at": _epoch(fetched + self._retention),
            "enrichment": enrichment.model_dump(mode="json"),
        }
        return [document, document | {"fetched_at": LATEST}]


# The sort key under which each IOC's newest enrichment is kept beside its history.
LATEST = "latest"
# DynamoDB's limits: keys a BatchGetItem reads, items a BatchWriteItem writes.
_BATCH_GET_KEYS = 100
_BATCH_WRITE_ITEMS = 25
# DynamoDB leaves part of a batch unprocessed when it throttles: sent again this many times, backing off.
_UNPROCESSED_ATTEMPTS = 6
_UNPROCESSED_PAUSE_S = 0.05


def _chunks(values: Sequence[_T], size: int) -> Iterator[Sequence[_T]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _until_processed(
    send: Callable[..., dict[str, Any]],
    request: dict[str, Any],
    unprocessed: str,
    pause: Callable[[float], None],
) -> list[dict[str, Any]]:
    """Send a batch request, then again what DynamoDB left unprocessed (`UnprocessedKeys` or
    `UnprocessedItems`) with exponential back-off; the responses, or TransientError if some stays left."""
    responses: list[dict[str, Any]] = []
    for attempt in range(_UNPROCESSED_ATTEMPTS):
        if attempt:
            pause(_UNPROCESSED_PAUSE_S * 2**attempt)
        try:
            response = send(RequestItems=request)
        except ClientError as error:
            raise_transient(error)
            raise
        responses.append(response)
        request = response.get(unprocessed) or {}
        if not request:
            return responses
    raise TransientError(
        f"DynamoDB left part of a batch request unprocessed after {_UNPROCESSED_ATTEMPTS} attempts"
    )
