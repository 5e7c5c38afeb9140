"""Cases and enrichments in DynamoDB, on the low-level client passed in."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from vtriage.adapters.aws_errors import error_code, transient_aws_errors
from vtriage.bounds import MAX_HISTORY, MAX_REPEAT_IDS, bounded, fit_case
from vtriage.errors import TransientError
from vtriage.models import Case, CaseStatus, Enrichment, HistoryEntry, Ioc, IocOutcome, Repeat, Verdict

_T = TypeVar("_T")
_serializer = TypeSerializer()
_deserializer = TypeDeserializer()

# DynamoDB items stop at 400 KB; a rejected body is kept up to this size and marked as cut beyond it.
MAX_KEPT_BODY = 64 * 1024
# A refusal's reason is a sentence or two; kept up to this size.
MAX_KEPT_REASON = 4096
# DynamoDB's key limits are 2,048 bytes for a partition key and 1,024 for a sort key: a key built from a
# value a sender controls (an IOC, a finding's place) is hashed beyond this many bytes.
MAX_KEY_BYTES = 1024


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


def item_size(item: Mapping[str, Any]) -> int:
    """The size DynamoDB counts for an item against its 400 KB limit, by its documented rules: the UTF-8
    bytes of every attribute name and string, about a byte per two digits of a number, and 3 bytes per
    list or map plus one per element."""
    return sum(len(name.encode()) + _value_size(value) for name, value in item.items())


def _value_size(value: Mapping[str, Any]) -> int:
    [(kind, inner)] = value.items()
    if kind == "S":
        return len(str(inner).encode())
    if kind == "N":
        return len(str(inner)) // 2 + 2
    if kind == "B":
        return len(inner)
    if kind in {"BOOL", "NULL"}:
        return 1
    if kind == "L":
        return 3 + sum(1 + _value_size(element) for element in inner)
    if kind == "M":
        return 3 + sum(len(key.encode()) + 1 + _value_size(element) for key, element in inner.items())
    return sum(len(str(element).encode()) for element in inner)  # SS, NS, BS


def bounded_key(key: str) -> str:
    """The key itself, or, beyond MAX_KEY_BYTES, its first part (up to `#`) and the SHA-256 of the whole."""
    if len(key.encode()) <= MAX_KEY_BYTES:
        return key
    kind = key.split("#", 1)[0][:64]
    return f"{kind}#sha256:{hashlib.sha256(key.encode()).hexdigest()}"


def to_attribute(value: Any) -> dict[str, Any]:
    """A JSON-compatible value as one DynamoDB attribute value."""
    return dict(_serializer.serialize(json.loads(json.dumps(value), parse_float=Decimal)))


def case_from_item(item: dict[str, Any]) -> Case:
    """A stored case item as a Case."""
    document = from_item(item)
    document.pop("expires_at", None)
    document.pop(REVISION, None)
    return Case.model_validate(document)


# Every write to a case item adds one to this attribute (an item written before it had none: 0), so that
# a whole-item write can be made conditional on the version it merged with.
REVISION = "revision"


def revision_of(item: Mapping[str, Any]) -> int:
    """The revision of a stored case item; 0 for one written before revisions."""
    return int(item[REVISION]["N"]) if REVISION in item else 0


def revision_condition(item: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """A condition (with its values; the name is `#revision`) that holds while the stored item is still
    at the revision of `item`."""
    if REVISION not in item:
        return "attribute_not_exists(#revision)", {}
    return "#revision = :revision", {":revision": item[REVISION]}


# What a conditional UpdateItem on a case sets to add one to its revision (`:zero`, `:one` its values).
ADD_A_REVISION = "#revision = if_not_exists(#revision, :zero) + :one"


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
        # The item this thread last read or wrote, by case id: what a save merges with first, sparing the
        # read of a case a task just loaded (the condition on its revision still catches any write in
        # between). One only: a task loads and saves one case. Per thread, as a task runs on one: where
        # tasks share a repository (threads of one process), each keeps its own.
        self._seen = threading.local()

    def _item(self, case: Case, revision: int) -> dict[str, Any]:
        # Every write keeps the case within its bounds and DynamoDB's item limit (measured, trimmed with a
        # note when over).
        measured: list[tuple[Case, dict[str, Any]]] = []

        def size_of(candidate: Case) -> int:
            measured.append((candidate, self._raw_item(candidate)))
            return item_size(measured[-1][1])

        fitted = fit_case(case, size_of)
        # The case fitted is the last one measured: its item is not made again (a case is 4 KB and more).
        raw = measured[-1][1] if measured and measured[-1][0] is fitted else self._raw_item(fitted)
        return {**raw, REVISION: {"N": str(revision)}}

    def _raw_item(self, case: Case) -> dict[str, Any]:
        document = case.model_dump(mode="json")
        document["expires_at"] = _epoch(case.created_at + self._retention)
        return to_item(document)

    def create(self, case: Case) -> bool:
        """Store a new case; False when one with this id exists already (a repeat delivery)."""
        with transient_aws_errors():
            try:
                self._client.put_item(
                    TableName=self._table,
                    Item=self._item(case, revision=1),
                    ConditionExpression="attribute_not_exists(case_id)",
                )
            except ClientError as error:
                if error_code(error) == "ConditionalCheckFailedException":
                    return False
                raise
        return True

    def get(self, case_id: str) -> Case | None:
        """The case, or None."""
        with transient_aws_errors():
            response = self._client.get_item(
                TableName=self._table, Key={"case_id": {"S": case_id}}, ConsistentRead=True
            )
        self._seen.last = (case_id, response.get("Item"))
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
            with transient_aws_errors():
                response = self._client.query(**request)
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
        """Replace the stored case with this version, keeping what others appended to it meanwhile (see
        `Case.with_appended`): the write is conditional on the revision it merged with, and merged again
        when another write came in between. TransientError when the case keeps changing."""
        self._merge_and_write(case, only_while_pending=False)

    def replace_pending(self, case: Case) -> bool:
        """Replace the stored case with this version while the stored one is PENDING_ENRICHMENT, keeping what
        others appended to it (`Case.with_appended`); False when it is not (another delivery triaged it) or
        is gone. The write is conditional on the revision read, so that a delivery that triaged the case in
        between is never overwritten; another pending write in between is merged and tried again."""
        return self._merge_and_write(case, only_while_pending=True)

    def _merge_and_write(self, case: Case, *, only_while_pending: bool) -> bool:
        """Write the case merged with the stored one, conditional on the stored revision, again on a
        conflict; False, writing nothing, when `only_while_pending` and the stored case no longer waits
        for its enrichment (or is gone)."""
        seen: tuple[str, dict[str, Any] | None] | None = getattr(self._seen, "last", None)
        self._seen.last = None
        for attempt in range(_SAVE_ATTEMPTS):
            if attempt == 0 and seen is not None and seen[0] == case.case_id:
                stored = seen[1]
            else:
                stored = self._stored_item(case.case_id)
            pending = (
                stored is not None and stored.get("status", {}).get("S") == CaseStatus.PENDING_ENRICHMENT
            )
            if only_while_pending and not pending:
                return False
            values: dict[str, Any] = {}
            if stored is None:
                item, condition = self._item(case, revision=1), "attribute_not_exists(case_id)"
            else:
                merged = case.with_appended(case_from_item(stored))
                item = self._item(merged, revision=revision_of(stored) + 1)
                condition, values = revision_condition(stored)
            request: dict[str, Any] = {
                "TableName": self._table,
                "Item": item,
                "ConditionExpression": condition,
            }
            if "#revision" in condition:
                request["ExpressionAttributeNames"] = {"#revision": REVISION}
            if values:
                request["ExpressionAttributeValues"] = values
            with transient_aws_errors():
                try:
                    self._client.put_item(**request)
                except ClientError as error:
                    if error_code(error) != "ConditionalCheckFailedException":
                        raise
                    continue
            self._seen.last = (case.case_id, item)
            return True
        waiting = " while it waited for its enrichment" if only_while_pending else " while it was saved"
        raise TransientError(f"case {case.case_id} kept changing{waiting}")

    def _stored_item(self, case_id: str) -> dict[str, Any] | None:
        with transient_aws_errors():
            response = self._client.get_item(
                TableName=self._table, Key={"case_id": {"S": case_id}}, ConsistentRead=True
            )
        item: dict[str, Any] | None = response.get("Item")
        return item

    def record_failure(
        self, message_id: str, reason: str, body: str, *, where: str = "", alert_id: str | None = None
    ) -> bool:
        """Keep a refused record (`where` empty) or a finding refused alone (`where` its place), with its
        reason and the record's body, queryable by status REJECTED; False when kept already."""
        now = self._now()
        kept = body if len(body) <= MAX_KEPT_BODY else body[:MAX_KEPT_BODY]
        document: dict[str, Any] = {
            "case_id": failure_key(message_id, where),
            "status": "REJECTED",
            "message_id": message_id,
            "where": where,
            "reason": reason[:MAX_KEPT_REASON],
            "body": kept,
            "body_truncated": len(kept) < len(body),
            "created_at": now.isoformat(),
            "updated_at": now.isoformat(),
            "expires_at": _epoch(now + self._retention),
        }
        if alert_id is not None:
            document["alert_id"] = alert_id[:MAX_KEY_BYTES]
        with transient_aws_errors():
            try:
                self._client.put_item(
                    TableName=self._table,
                    Item=to_item(document),
                    # A record delivered again (SQS delivers at least once, a deferred one comes back) is
                    # refused once: its refusals are not parked twice.
                    ConditionExpression="attribute_not_exists(case_id)",
                )
            except ClientError as error:
                if error_code(error) == "ConditionalCheckFailedException":
                    return False
                raise
        return True


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
        with transient_aws_errors():
            response = self._client.get_item(
                TableName=self._table, Key={"case_id": {"S": repeat_key}}, ConsistentRead=True
            )
        item = from_item(response["Item"]) if "Item" in response else None
        # TTL deletes expired items only eventually: the window is checked here.
        if item is None or int(item.get("expires_at", 0)) <= _epoch(self._now()):
            return None
        return str(item["repeat_of"])

    def remember(self, repeat_key: str, case_id: str, until: datetime) -> None:
        """Point the repeat key at this case until `until`."""
        document = {"case_id": repeat_key, "repeat_of": case_id, "expires_at": _epoch(until)}
        with transient_aws_errors():
            self._client.put_item(TableName=self._table, Item=to_item(document))

    def fold(self, case_id: str, repeat: Repeat, entry: HistoryEntry) -> bool:
        """Count the repeat on the case and add `entry` to its history; False when the case is gone or
        already counts this repeat (by its case id). A case whose history or repeat ids are full is
        compacted first (`vtriage.bounds.bounded`): the counts are kept, the oldest entries left out."""
        for _ in range(_FOLD_ATTEMPTS):
            with transient_aws_errors():
                try:
                    self._client.update_item(
                        TableName=self._table,
                        Key={"case_id": {"S": case_id}},
                        UpdateExpression=(
                            "SET #count = if_not_exists(#count, :zero) + :one, "
                            "#ids = list_append(if_not_exists(#ids, :empty), :ids), "
                            "#last = :repeat, "
                            "#history = list_append(if_not_exists(#history, :empty), :entry), "
                            f"#updated = :now, {ADD_A_REVISION}"
                        ),
                        ConditionExpression=(
                            "attribute_exists(case_id) AND NOT contains(#ids, :id)"
                            " AND (attribute_not_exists(#ids) OR size(#ids) < :max_ids)"
                            " AND (attribute_not_exists(#history) OR size(#history) < :max_history)"
                        ),
                        ExpressionAttributeNames={
                            "#count": "repeat_count",
                            "#ids": "repeat_case_ids",
                            "#last": "last_repeat",
                            "#history": "history",
                            "#updated": "updated_at",
                            "#revision": REVISION,
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
                            ":max_ids": {"N": str(MAX_REPEAT_IDS)},
                            ":max_history": {"N": str(MAX_HISTORY)},
                        },
                    )
                except ClientError as error:
                    if error_code(error) != "ConditionalCheckFailedException":
                        raise
                    if not self._make_room(case_id, repeat.case_id):
                        return False
                    continue
            return True
        raise TransientError(f"case {case_id} kept changing while a repeat was folded into it")

    def _make_room(self, case_id: str, repeat_case_id: str) -> bool:
        """After a fold was refused: False when the case is gone or counts this repeat already; else True,
        once a full history or list of repeat ids has been compacted (or the case changed meanwhile)."""
        with transient_aws_errors():
            item = self._client.get_item(
                TableName=self._table, Key={"case_id": {"S": case_id}}, ConsistentRead=True
            ).get("Item")
        if item is None:
            return False
        case = case_from_item(item)
        if repeat_case_id in case.repeat_case_ids:
            return False
        if len(case.history) < MAX_HISTORY and len(case.repeat_case_ids) < MAX_REPEAT_IDS:
            return True
        # Compacted below the bounds, so that the next repeats fold by update again for a while.
        compacted = bounded(case, MAX_HISTORY - _ROOM_MADE, MAX_REPEAT_IDS - _ROOM_MADE)
        replacement = to_item(compacted.model_dump(mode="json"))
        if "expires_at" in item:
            replacement["expires_at"] = item["expires_at"]
        replacement[REVISION] = {"N": str(revision_of(item) + 1)}
        unchanged, revision_values = revision_condition(item)
        with transient_aws_errors():
            try:
                self._client.put_item(
                    TableName=self._table,
                    Item=replacement,
                    # Only over the version read: a concurrent write wins, and the fold tries again.
                    ConditionExpression=unchanged,
                    ExpressionAttributeNames={"#revision": REVISION},
                    **({"ExpressionAttributeValues": revision_values} if revision_values else {}),
                )
            except ClientError as error:
                if error_code(error) != "ConditionalCheckFailedException":
                    raise
        return True


# A fold refused because the case changed meanwhile is tried again this many times.
_FOLD_ATTEMPTS = 4
# A save whose case changed between its read and its write is merged and tried again this many times.
_SAVE_ATTEMPTS = 5
# A compaction leaves room for this many more repeats before the next one.
_ROOM_MADE = 20


def failure_key(message_id: str, where: str = "") -> str:
    """Where the failure record of a refused message lives in the cases table (`failure#<message id>`),
    or of one finding refused alone (`failure#<message id>#<where>`, `where` its place in the body)."""
    if not where:
        return f"failure#{message_id}"
    if len(where.encode()) > _MAX_WHERE_BYTES:
        where = "sha256:" + hashlib.sha256(where.encode()).hexdigest()
    return f"failure#{message_id}#{where}"


# A finding's place ("detail.findings[3]") is short; one longer than this is hashed in its key.
_MAX_WHERE_BYTES = 256


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
        keys = list(dict.fromkeys(bounded_key(ioc.key) for ioc in iocs))
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
        if item_size(to_item({"enrichment": enrichment.model_dump(mode="json")})) > _MAX_ENRICHMENT_BYTES:
            # VirusTotal's context is trimmed already; what is left over DynamoDB's limit is left out.
            enrichment = enrichment.model_copy(
                update={"context": {}, "note": "; ".join(filter(None, [enrichment.note, _CONTEXT_LEFT_OUT]))}
            )
        document = {
            # A key over DynamoDB's limit (a long URL) is hashed; the enrichment keeps the IOC whole.
            "ioc_key": bounded_key(enrichment.key),
            "fetched_at": fetched.isoformat(),
            "verdict": enrichment.verdict.value,
            "fresh_until": _epoch(fetched + self._freshness[enrichment.verdict]),
            "expires_at": _epoch(fetched + self._retention),
            "enrichment": enrichment.model_dump(mode="json"),
        }
        return [document, document | {"fetched_at": LATEST}]


class DynamoEnrichmentRecords:
    """The enrichments `DynamoEnrichmentCache` keeps, read back for a person (the ticket function): each
    IOC's enrichment as its case was judged on it, under the sort key of its fetch time, else the last one
    put (`latest`). The ones judged on are asked for first, in one BatchGetItem (100 keys a call); the last
    one put only of the IOCs whose judged-on one is not kept (gone with its TTL) or never was fetched: an
    item holds VirusTotal's whole context, and reading both of each IOC read it twice."""

    def __init__(self, client: Any, table_name: str, *, pause: Callable[[float], None] = time.sleep) -> None:
        """Read the enrichments table `table_name` with this DynamoDB client."""
        self._client = client
        self._table = table_name
        self._pause = pause

    def as_judged(self, iocs: Sequence[IocOutcome]) -> dict[str, Enrichment]:
        """By IOC key, the enrichment each looked-up IOC was judged on, else the last one kept."""
        judged_on: dict[tuple[str, str], str] = {}
        latest: dict[tuple[str, str], str] = {}
        for ioc in iocs:
            if ioc.skipped_reason is not None:
                continue
            key = f"{ioc.type.value}#{ioc.value}"
            if ioc.fetched_at is not None:
                judged_on[(bounded_key(key), ioc.fetched_at.astimezone(UTC).isoformat())] = key
            latest[(bounded_key(key), LATEST)] = key
        judged = self._read(judged_on)
        missing = {where: key for where, key in latest.items() if key not in judged}
        return judged | self._read(missing)

    def _read(self, wanted: Mapping[tuple[str, str], str]) -> dict[str, Enrichment]:
        """The enrichments kept under these (IOC key, sort key) pairs, by IOC key; the first found of an IOC
        when several of its pairs are asked for."""
        found: dict[tuple[str, str], Enrichment] = {}
        for chunk in _chunks(list(wanted), _BATCH_GET_KEYS):
            request = {
                self._table: {
                    "Keys": [{"ioc_key": {"S": ioc_key}, "fetched_at": {"S": at}} for ioc_key, at in chunk],
                    "ProjectionExpression": "ioc_key, fetched_at, enrichment",
                }
            }
            for response in _until_processed(
                self._client.batch_get_item, request, "UnprocessedKeys", self._pause
            ):
                for item in response.get("Responses", {}).get(self._table, []):
                    document = from_item(item)
                    enrichment = Enrichment.model_validate(document["enrichment"])
                    found[(document["ioc_key"], document["fetched_at"])] = enrichment
        read: dict[str, Enrichment] = {}
        for where, key in wanted.items():
            if key not in read and where in found:
                read[key] = found[where]
        return read


# The sort key under which each IOC's newest enrichment is kept beside its history.
LATEST = "latest"
# An enrichment item stays well below DynamoDB's 400 KB; beyond this its context is not cached.
_MAX_ENRICHMENT_BYTES = 300 * 1024
_CONTEXT_LEFT_OUT = "context left out of the cache: too large for a DynamoDB item"
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
        with transient_aws_errors():
            response = send(RequestItems=request)
        responses.append(response)
        request = response.get(unprocessed) or {}
        if not request:
            return responses
    raise TransientError(
        f"DynamoDB left part of a batch request unprocessed after {_UNPROCESSED_ATTEMPTS} attempts"
    )
