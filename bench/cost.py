"""The price of 1,000 alerts (issue 13, point 5): what vtriage costs in AWS per alert, counted from a run of
the whole stack on moto, priced at the public list prices of one Region, beside a per-alert Lambda with no
cache and no batching (bench.naive_lambda) run on the same alerts.

The corpus is bench.runner_speed's: 100 C&C DNS findings over 40 domains, each on an instance of its own,
VirusTotal replayed at 150 ms a request. vtriage runs through vtriage_local.runner.run_deliveries in this
process, as `vtriage run` does (the queue, the enrich function, the real state machine and its handlers);
the meter (`Meter`) watches it from outside the product, for the run's length only:

- Lambda: each handler invocation (`LocalAws.invoke`, which moto's Lambda dispatches to) is timed, billed
  as Lambda bills, rounded up to the millisecond, times the function's memory setting read from
  template.yaml (its Architectures says which price: arm64). Invocations are measured one at a time: in
  Lambda each has an environment and a CPU share of its own, here they share one process and two cores
  with moto and the state machine's engine, and a duration would otherwise include the wait for the
  interpreter. The first invocation of each function includes its module imports (its cold start; in AWS
  there are as many as concurrent environments).
- AWS API calls: every botocore call is seen (`BaseClient._make_api_call`) and billed to who made it: a
  function (the invocation's thread, or a client the function created, for its worker threads), the
  state machine's service integrations (clients moto's engine creates), or the runner itself (its own
  reads and set-up: not billed, except where it stands in for an AWS service, below).
- Step Functions: state transitions are read from each execution's history, as AWS bills a STANDARD
  workflow (template.yaml gives the state machine no Type: SAM's default, STANDARD): every state entered,
  inside the Map's iterations too, and every retry of a task.
- DynamoDB (PAY_PER_REQUEST tables): read and write request units from each request and the sizes of the
  items it touches, read from moto's tables just before and after the call, by AWS's documented rules
  (`item_size`, `write_units`, `read_units`, `dynamodb_consumption`), global secondary index writes
  included (the cases table's `by-status` index projects every attribute).
- SQS: each API call, in 64 KB chunks. The runner stands in for two AWS services whose requests are billed:
  EventBridge sending each alert to the queue (one SendMessage), and Lambda's event source mapping
  receiving a batch (one ReceiveMessage that returned messages) and deleting the handled ones (one
  DeleteMessageBatch per batch; the runner deletes one by one). In AWS the mapping also long-polls each
  queue continually while it is empty: those receives are paid whether alerts come or not, and are in no
  per-alert figure.
- SNS publishes (64 KB chunks), Secrets Manager calls, and VirusTotal requests (the runner's count of the
  requests sent to the replay server; not priced: VirusTotal's premium API is a subscription).

`python -m bench.cost` prints the figures alone (about two minutes on two cores).
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import math
import os
import tempfile
import threading
import time
import weakref
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import botocore.client
import botocore.session
from botocore.exceptions import ClientError
from moto.dynamodb.models import dynamodb_backends

from bench import naive_lambda
from bench.runner_speed import C2Corpus, c2_corpus, write_domain_recordings
from vtriage_local.alert_files import Delivery
from vtriage_local.replay import ReplayServer
from vtriage_local.runner import VirusTotalSource, run_deliveries
from vtriage_local.stack import ACCOUNT_ID, REGION, LocalAws
from vtriage_local.template import TEMPLATE_PATH, load_template

LATENCY_MS = 150
PER_ALERTS = 1000
STATE_MACHINE = "TriageStateMachine"
# The function the runner hands the queue's batches to (the event source mapping's); the state machine
# invokes the others.
QUEUE_FUNCTION = "EnrichFunction"
NAIVE_FUNCTION = "NaivePerAlertFunction"
NAIVE_TABLE = "NaiveAlertsTable"
API_KEY = "bench-replay-key"
KB = 1024
SQS_CHUNK_BYTES = 64 * KB
# A handler waiting longer than this for its turn runs alongside another (and is counted as overlapping):
# moto's engine gives up on a Lambda invoke after botocore's 60 s read timeout, and would retry it.
_TURN_WAIT_S = 30.0

# ------------------------------------------------------------------------------------------------ prices

REGION_NAME = "US East (N. Virginia), us-east-1"
PRICES_READ = "2026-11-29"
_READ = f"read {PRICES_READ} from a stored copy of the page"


@dataclass(frozen=True)
class Price:
    """A public list price: `usd` for every `per` units, where it was read."""

    usd: float
    per: int
    unit: str
    source: str
    note: str = ""

    def of(self, quantity: float) -> float:
        """The price of `quantity` units."""
        return quantity * self.usd / self.per

    def describe(self) -> dict[str, Any]:
        """The price as results.json records it."""
        described = {
            "usd": self.usd,
            "per": self.per,
            "unit": self.unit,
            "source": self.source,
            "read": _READ,
        }
        return described | ({"note": self.note} if self.note else {})


_THIRD_PARTY = (
    "a third-party page quoting AWS's us-east-1 list price: the stored copy of AWS's own pricing page "
    "shows the table's headings without its figures"
)
PRICES: dict[str, Price] = {
    "lambda_gb_second_arm64": Price(
        0.0000133334,
        1,
        "GB-second, Arm (first tier: the first 7.5 billion GB-seconds a month)",
        "https://cloudchipr.com/blog/aws-lambda-pricing",
        _THIRD_PARTY,
    ),
    "lambda_gb_second_x86_64": Price(
        0.0000166667,
        1,
        "GB-second, x86 (first tier: the first 6 billion GB-seconds a month)",
        "https://cloudchipr.com/blog/aws-lambda-pricing",
        _THIRD_PARTY,
    ),
    "lambda_requests": Price(
        0.20,
        1_000_000,
        "requests (invocations)",
        "https://docs.aws.amazon.com/whitepapers/latest/how-aws-pricing-works/lambda.html",
    ),
    "stepfunctions_state_transitions": Price(
        0.025,
        1000,
        "state transitions (Standard workflows)",
        "https://aws.amazon.com/step-functions/pricing/",
    ),
    "dynamodb_write_request_units": Price(
        0.625,
        1_000_000,
        "write request units (on-demand, Standard table class)",
        "https://airbyte.com/data-engineering-resources/dynamodb-pricing",
        _THIRD_PARTY + " (the November 2024 on-demand price)",
    ),
    "dynamodb_read_request_units": Price(
        0.125,
        1_000_000,
        "read request units (on-demand, Standard table class)",
        "https://airbyte.com/data-engineering-resources/dynamodb-pricing",
        _THIRD_PARTY + " (the November 2024 on-demand price)",
    ),
    "sqs_requests": Price(
        0.40,
        1_000_000,
        "requests, standard queues (each 64 KB chunk of a payload is a request)",
        "https://cloudburn.io/blog/amazon-sqs-pricing",
        "a third-party page ('all prices are for US East (N. Virginia)'); the 64 KB rule is AWS's "
        "(https://aws.amazon.com/jp/sqs/features/)",
    ),
    "sns_requests": Price(
        0.50,
        1_000_000,
        "publish requests, standard topics (each 64 KB chunk is a request)",
        "https://www.factualminds.com/blog/amazon-sns-pricing-publishes-fanout-protocols/",
        "a third-party page (us-east-1); the 64 KB rule is AWS's (https://aws.amazon.com/sns/faqs/); "
        "deliveries to the topic's subscribers are billed apart, by protocol, and not counted",
    ),
    "secretsmanager_api_calls": Price(
        0.05,
        10_000,
        "API calls",
        "https://raw.githubusercontent.com/api-evangelist/amazon-secrets-manager/refs/heads/main/plans/"
        "amazon-secrets-manager-plans-pricing.yml",
        "a transcription of https://aws.amazon.com/secrets-manager/pricing/ (its pricing examples); "
        "each secret also costs $0.40 a month, whatever the alerts",
    ),
}

# ------------------------------------------------------------------------------------------ unit rules


def billed_ms(seconds: float) -> int:
    """A duration as Lambda bills it: rounded up to the next millisecond."""
    return max(1, math.ceil(round(seconds * 1000, 6)))


def gb_seconds(memory_mb: int, milliseconds: int) -> float:
    """Lambda's GB-seconds: the memory setting in GB (1,024 MB) times the billed duration in seconds."""
    return memory_mb / KB * milliseconds / 1000


def request_chunks(payload_bytes: int) -> int:
    """The requests SQS and SNS bill for one API call: one per 64 KB chunk of its payload, at least one."""
    return max(1, math.ceil(payload_bytes / SQS_CHUNK_BYTES))


def _number_size(text: str) -> int:
    digits = text.lstrip("+-").replace(".", "").split("e")[0].split("E")[0].strip("0") or "0"
    return math.ceil(len(digits) / 2) + 1


def attribute_value_size(value: Mapping[str, Any]) -> int:
    """The size of one DynamoDB attribute value (in the low-level JSON form), without its name, by
    AWS's rules (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html):
    a string its UTF-8 bytes, a number about one byte per two significant digits plus one, binary its
    raw bytes, null or a boolean one byte, a list or map three bytes plus one per element and its
    elements' sizes (a map's element names included), a set the sum of its elements."""
    ((kind, content),) = value.items()
    if kind == "S":
        return len(str(content).encode())
    if kind == "N":
        return _number_size(str(content))
    if kind == "B":
        return len(content) if isinstance(content, bytes) else len(str(content)) * 3 // 4
    if kind in {"BOOL", "NULL"}:
        return 1
    if kind == "SS":
        return sum(len(str(element).encode()) for element in content)
    if kind == "NS":
        return sum(_number_size(str(element)) for element in content)
    if kind == "BS":
        return sum(attribute_value_size({"B": element}) for element in content)
    if kind == "L":
        return 3 + sum(1 + attribute_value_size(element) for element in content)
    if kind == "M":
        return 3 + sum(
            1 + len(name.encode()) + attribute_value_size(element) for name, element in content.items()
        )
    raise ValueError(f"not a DynamoDB attribute value: {kind}")


def item_size(item: Mapping[str, Mapping[str, Any]] | None) -> int:
    """An item's size as DynamoDB bills it: each attribute's name (UTF-8 bytes) and value. No item: 0."""
    return sum(len(name.encode()) + attribute_value_size(value) for name, value in (item or {}).items())


def write_units(size_bytes: int, *, transactional: bool = False) -> int:
    """Write request units of writing one item: one per KB, rounded up, at least one; twice that in a
    transaction."""
    return max(1, math.ceil(size_bytes / KB)) * (2 if transactional else 1)


def read_units(size_bytes: int, *, consistent: bool, transactional: bool = False) -> float:
    """Read request units of reading `size_bytes` (one item, or a query's whole result): one per 4 KB,
    rounded up, at least one, for a strongly consistent read; half for an eventually consistent one;
    twice for a transactional one."""
    units = max(1, math.ceil(size_bytes / (4 * KB)))
    if transactional:
        return float(2 * units)
    return float(units) if consistent else units / 2


Item = dict[str, dict[str, Any]]


@dataclass(frozen=True)
class Index:
    """A global secondary index: its key attributes and what it projects."""

    name: str
    keys: tuple[str, ...]
    projection: str = "ALL"
    non_key_attributes: tuple[str, ...] = ()


@dataclass(frozen=True)
class TableSpec:
    """A table's key attributes and global secondary indexes, as its template declares them."""

    name: str
    keys: tuple[str, ...]
    indexes: tuple[Index, ...] = ()

    def key_of(self, item: Mapping[str, Any]) -> tuple[str, ...]:
        """The item's primary key, as a comparable value."""
        return tuple(json.dumps(item.get(name), sort_keys=True) for name in self.keys)


def _projected(item: Item, table: TableSpec, index: Index) -> Item:
    if index.projection == "ALL":
        return item
    kept = set(table.keys) | set(index.keys) | set(index.non_key_attributes)
    return {name: value for name, value in item.items() if name in kept}


def index_write_units(table: TableSpec, before: Item | None, after: Item | None) -> int:
    """Write request units a successful write of one item costs the table's global secondary indexes, by
    AWS's rules (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/GSI.html#GSI.Writes):
    an item entering an index is one write, leaving it one, changing its index key two (a delete and a
    put), changing only its projected attributes one, and an item in no index before or after none.
    Each write is billed on the size of the index entry it writes or deletes."""
    units = 0
    for index in table.indexes:
        was = before is not None and all(name in before for name in index.keys)
        now = after is not None and all(name in after for name in index.keys)
        old = _projected(before, table, index) if was and before is not None else None
        new = _projected(after, table, index) if now and after is not None else None
        if old is not None and new is not None:
            if any(old.get(name) != new.get(name) for name in index.keys):
                units += write_units(item_size(old)) + write_units(item_size(new))
            elif old != new:
                units += write_units(item_size(new))
        elif old is not None:
            units += write_units(item_size(old))
        elif new is not None:
            units += write_units(item_size(new))
    return units


@dataclass
class Consumed:
    """Request units one table consumed."""

    read: float = 0.0
    write: float = 0.0
    # The part of `write` spent on the table's global secondary indexes.
    index_write: float = 0.0

    def add(self, other: Consumed) -> None:
        """Fold another consumption into this one."""
        self.read += other.read
        self.write += other.write
        self.index_write += other.index_write


Stored = Mapping[tuple[str, tuple[str, ...]], Item | None]


def _table_name(name: str) -> str:
    return name.rsplit("table/", 1)[-1]


def touched_keys(
    operation: str, params: Mapping[str, Any], tables: Mapping[str, TableSpec]
) -> list[tuple[str, Item]]:
    """The (table, key) of every item a DynamoDB request reads or writes by its key, in order."""
    found: list[tuple[str, Item]] = []

    def add(table_name: str, item_or_key: Mapping[str, Any]) -> None:
        table = tables.get(_table_name(table_name))
        if table is not None:
            found.append(
                (table.name, {name: item_or_key[name] for name in table.keys if name in item_or_key})
            )

    if operation in {"GetItem", "UpdateItem", "DeleteItem"}:
        add(params["TableName"], params["Key"])
    elif operation == "PutItem":
        add(params["TableName"], params["Item"])
    elif operation == "BatchGetItem":
        for table_name, request in params["RequestItems"].items():
            for key in request["Keys"]:
                add(table_name, key)
    elif operation == "BatchWriteItem":
        for table_name, requests_ in params["RequestItems"].items():
            for request in requests_:
                if "PutRequest" in request:
                    add(table_name, request["PutRequest"]["Item"])
                else:
                    add(table_name, request["DeleteRequest"]["Key"])
    elif operation in {"TransactWriteItems", "TransactGetItems"}:
        for entry in params["TransactItems"]:
            ((_, action),) = entry.items()
            add(action["TableName"], action.get("Item") or action["Key"])
    return found


def dynamodb_consumption(
    operation: str,
    params: Mapping[str, Any],
    response: Mapping[str, Any],
    *,
    succeeded: bool,
    before: Stored,
    after: Stored,
    tables: Mapping[str, TableSpec],
) -> dict[str, Consumed]:
    """The request units one DynamoDB request consumed, per table: `before` and `after` hold the stored
    items it touched by key (None where there was none), as they were just before and after it.

    A write is billed on the larger of the item before and after it (a failed conditional write on the
    existing item, at least one unit); a read by key on the whole stored item (a projection reads it
    whole), an absent item costing the minimum; BatchGetItem and BatchWriteItem item by item; a query or
    scan on the total size of the items it returned (the items a filter dropped are not seen here)."""
    consumed: dict[str, Consumed] = defaultdict(Consumed)

    def stored(table_name: str, key_or_item: Mapping[str, Any], when: Stored) -> Item | None:
        table = tables[_table_name(table_name)]
        return when.get((table.name, table.key_of(key_or_item)))

    def write(table_name: str, key_or_item: Mapping[str, Any], *, transactional: bool = False) -> None:
        name = _table_name(table_name)
        if name not in tables:
            return
        old, new = stored(name, key_or_item, before), stored(name, key_or_item, after)
        index_units = index_write_units(tables[name], old, new) if succeeded else 0
        consumed[name].write += write_units(max(item_size(old), item_size(new)), transactional=transactional)
        consumed[name].write += index_units
        consumed[name].index_write += index_units

    def read(
        table_name: str, key: Mapping[str, Any], *, consistent: bool, transactional: bool = False
    ) -> None:
        name = _table_name(table_name)
        if name in tables:
            size = item_size(stored(name, key, before))
            consumed[name].read += read_units(size, consistent=consistent, transactional=transactional)

    if operation in {"PutItem", "UpdateItem", "DeleteItem"}:
        write(params["TableName"], params.get("Item") or params["Key"])
    elif operation == "GetItem":
        read(params["TableName"], params["Key"], consistent=bool(params.get("ConsistentRead")))
    elif operation == "BatchGetItem":
        for table_name, request in params["RequestItems"].items():
            for key in request["Keys"]:
                read(table_name, key, consistent=bool(request.get("ConsistentRead")))
    elif operation == "BatchWriteItem":
        for table_name, requests_ in params["RequestItems"].items():
            for request in requests_:
                write(
                    table_name, request.get("PutRequest", {}).get("Item") or request["DeleteRequest"]["Key"]
                )
    elif operation == "TransactWriteItems":
        for entry in params["TransactItems"]:
            ((_, action),) = entry.items()
            write(action["TableName"], action.get("Item") or action["Key"], transactional=True)
    elif operation == "TransactGetItems":
        for entry in params["TransactItems"]:
            action = entry["Get"]
            read(action["TableName"], action["Key"], consistent=True, transactional=True)
    elif operation in {"Query", "Scan"}:
        name = _table_name(str(params["TableName"]))
        total = sum(item_size(item) for item in response.get("Items", []))
        consumed[name].read += read_units(total, consistent=bool(params.get("ConsistentRead")))
    return dict(consumed)


_RETRIED_TASK_EVENTS = {"TaskScheduled", "LambdaFunctionScheduled", "ActivityScheduled"}


def state_transitions(events: Sequence[Mapping[str, Any]]) -> int:
    """The state transitions a STANDARD execution is billed for, from its history: one per state entered
    (a Map's iterations' states included; the iterations themselves are not transitions), and one per
    retry of a task (a task scheduled again within the state it entered)."""
    entered = sum(1 for event in events if str(event["type"]).endswith("StateEntered"))
    tasks_entered = sum(1 for event in events if event["type"] == "TaskStateEntered")
    scheduled = sum(1 for event in events if event["type"] in _RETRIED_TASK_EVENTS)
    return entered + max(0, scheduled - tasks_entered)


def lambda_tasks(events: Sequence[Mapping[str, Any]]) -> int:
    """How many times an execution invoked a Lambda function, from its history."""
    return sum(
        1
        for event in events
        if event["type"] == "LambdaFunctionScheduled"
        or (
            event["type"] == "TaskScheduled"
            and event.get("taskScheduledEventDetails", {}).get("resourceType") == "lambda"
        )
    )


# --------------------------------------------------------------------------------------- the template


@dataclass(frozen=True)
class FunctionBilling:
    """What Lambda bills a function on: its memory setting and architecture."""

    memory_mb: int
    architecture: str


def function_billing(template: Mapping[str, Any]) -> dict[str, FunctionBilling]:
    """Each function's memory setting and architecture, as template.yaml sets them (its own properties,
    else the Globals, else Lambda's defaults: 128 MB, x86_64)."""
    globals_ = template.get("Globals", {}).get("Function", {})
    found: dict[str, FunctionBilling] = {}
    for logical_id, resource in template["Resources"].items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        properties = resource.get("Properties", {})
        memory = properties.get("MemorySize", globals_.get("MemorySize", 128))
        architectures = properties.get("Architectures", globals_.get("Architectures", ["x86_64"]))
        if not isinstance(memory, int) or not isinstance(architectures, list):
            raise TypeError(f"{logical_id}: MemorySize and Architectures must be literal values to be priced")
        found[logical_id] = FunctionBilling(memory, str(architectures[0]))
    return found


def table_specs(template: Mapping[str, Any]) -> dict[str, TableSpec]:
    """Each DynamoDB table of the template (named by its logical id, as the local stack names it), with
    its key and global secondary indexes; a table not billed on demand cannot be priced here."""
    found: dict[str, TableSpec] = {}
    for logical_id, resource in template["Resources"].items():
        if resource.get("Type") != "AWS::DynamoDB::Table":
            continue
        properties = resource.get("Properties", {})
        if properties.get("BillingMode") != "PAY_PER_REQUEST":
            raise ValueError(f"{logical_id} is not billed on demand (PAY_PER_REQUEST): priced only on demand")
        indexes = tuple(
            Index(
                name=str(index["IndexName"]),
                keys=tuple(str(key["AttributeName"]) for key in index["KeySchema"]),
                projection=str(index.get("Projection", {}).get("ProjectionType", "ALL")),
                non_key_attributes=tuple(index.get("Projection", {}).get("NonKeyAttributes", [])),
            )
            for index in properties.get("GlobalSecondaryIndexes", [])
        )
        keys = tuple(str(key["AttributeName"]) for key in properties["KeySchema"])
        found[logical_id] = TableSpec(logical_id, keys, indexes)
    return found


def state_machine_type(template: Mapping[str, Any], logical_id: str = STATE_MACHINE) -> str:
    """The state machine's workflow type: its Type property, else SAM's default, STANDARD."""
    return str(template["Resources"][logical_id].get("Properties", {}).get("Type", "STANDARD"))


# ------------------------------------------------------------------------------------------ the meter

HARNESS = "runner"
# A DynamoDB request that failed its condition still consumes capacity; one DynamoDB refused (a validation
# error, a missing table, throttling) is not billed.
_BILLED_DYNAMODB_OUTCOMES = {"succeeded", "ConditionalCheckFailedException", "TransactionCanceledException"}
ENGINE = "state machine (service integrations)"


@dataclass(frozen=True)
class Call:
    """One AWS API call as the meter saw it."""

    caller: str
    service: str
    operation: str
    requests: int = 1
    queue: str = ""
    messages: int = 0
    consumed: dict[str, Consumed] = field(default_factory=dict)


def _sqs_payload(operation: str, params: Mapping[str, Any], response: Mapping[str, Any]) -> int:
    def message_bytes(body: Any, attributes: Mapping[str, Any]) -> int:
        size = len(str(body or "").encode())
        for name, value in attributes.items():
            size += len(name.encode()) + len(str(value.get("DataType", "")).encode())
            size += len(str(value.get("StringValue", "")).encode()) + len(value.get("BinaryValue", b""))
        return size

    if operation == "SendMessage":
        return message_bytes(params.get("MessageBody"), params.get("MessageAttributes", {}))
    if operation == "SendMessageBatch":
        return sum(
            message_bytes(entry.get("MessageBody"), entry.get("MessageAttributes", {}))
            for entry in params.get("Entries", [])
        )
    if operation == "ReceiveMessage":
        return sum(
            message_bytes(message.get("Body"), message.get("MessageAttributes", {}))
            for message in response.get("Messages", [])
        )
    return 0


def _sns_payload(params: Mapping[str, Any]) -> int:
    entries = params.get("PublishBatchRequestEntries") or [params]
    size = 0
    for entry in entries:
        size += len(str(entry.get("Message", "")).encode()) + len(str(entry.get("Subject", "")).encode())
        for name, value in entry.get("MessageAttributes", {}).items():
            size += len(name.encode()) + len(str(value.get("StringValue", "")).encode())
    return size


@dataclass(frozen=True)
class Invocation:
    """One handler invocation, as Lambda would bill it."""

    function: str
    billed_ms: int
    overlapped: bool


class Meter:
    """Counts what a run in this process consumes, from outside the product, while it is active: the
    handlers' invocations and their durations, every AWS API call and who made it, and the state
    machine's execution histories (read as each local stack stops)."""

    def __init__(self, tables: Mapping[str, TableSpec]) -> None:
        self.tables = dict(tables)
        self.calls: list[Call] = []
        self.invocations: list[Invocation] = []
        self.histories: list[list[dict[str, Any]]] = []
        self._local = threading.local()
        self._turn = threading.Lock()
        self._lock = threading.Lock()
        self._client_callers: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
        self._main = threading.main_thread()
        self._patches: list[Any] = []

    # -- life cycle

    def __enter__(self) -> Meter:
        meter = self
        make_api_call = botocore.client.BaseClient._make_api_call  # type: ignore[attr-defined]
        create_client = botocore.session.Session.create_client
        invoke, stop = LocalAws.invoke, LocalAws.stop

        def counted_call(client: Any, operation: str, params: dict[str, Any]) -> Any:
            return meter._counted(client, operation, params, lambda: make_api_call(client, operation, params))

        def labelled_client(session: Any, *args: Any, **kwargs: Any) -> Any:
            client = create_client(session, *args, **kwargs)
            meter._client_callers[client] = meter._caller_here()
            return client

        def timed_invoke(aws: LocalAws, logical_id: str, event: Any) -> Any:
            return meter.invoke(logical_id, lambda: invoke(aws, logical_id, event))

        def stop_after_reading(aws: LocalAws) -> None:
            try:
                meter._read_histories(aws)
            finally:
                stop(aws)

        self._patches = [
            mock.patch.object(botocore.client.BaseClient, "_make_api_call", counted_call),
            mock.patch.object(botocore.session.Session, "create_client", labelled_client),
            mock.patch.object(LocalAws, "invoke", timed_invoke),
            mock.patch.object(LocalAws, "stop", stop_after_reading),
        ]
        for patch in self._patches:
            patch.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        for patch in reversed(self._patches):
            patch.stop()
        self._patches = []

    # -- invocations

    def invoke(self, function: str, run: Callable[[], Any]) -> Any:
        """Run one invocation of `function` alone, timed, its AWS calls billed to it."""
        overlapped = not self._turn.acquire(timeout=_TURN_WAIT_S)
        previous = getattr(self._local, "function", None)
        self._local.function = function
        started = time.perf_counter()
        try:
            return run()
        finally:
            elapsed = time.perf_counter() - started
            self._local.function = previous
            if not overlapped:
                self._turn.release()
            with self._lock:
                self.invocations.append(Invocation(function, billed_ms(elapsed), overlapped))

    def _caller_here(self) -> str:
        function = getattr(self._local, "function", None)
        if function is not None:
            return str(function)
        return HARNESS if threading.current_thread() is self._main else ENGINE

    # -- API calls

    def _counted(self, client: Any, operation: str, params: dict[str, Any], send: Callable[[], Any]) -> Any:
        if getattr(self._local, "quiet", False):
            return send()
        caller = (
            getattr(self._local, "function", None) or self._client_callers.get(client) or self._caller_here()
        )
        service = str(client.meta.service_model.service_name)
        keys = touched_keys(operation, params, self.tables) if service == "dynamodb" else []
        before = self._stored(keys)
        response: Mapping[str, Any] = {}
        outcome = "error"
        try:
            response = send()
            outcome = "succeeded"
            return response
        except ClientError as error:
            response = error.response
            outcome = str(error.response.get("Error", {}).get("Code", "error"))
            raise
        finally:
            self._record(caller, service, operation, params, response, outcome, keys, before)

    def _record(
        self,
        caller: str,
        service: str,
        operation: str,
        params: Mapping[str, Any],
        response: Mapping[str, Any],
        outcome: str,
        keys: list[tuple[str, Item]],
        before: Stored,
    ) -> None:
        call = Call(caller, service, operation)
        if service == "dynamodb" and outcome in _BILLED_DYNAMODB_OUTCOMES:
            consumed = dynamodb_consumption(
                operation,
                params,
                response,
                succeeded=outcome == "succeeded",
                before=before,
                after=self._stored(keys),
                tables=self.tables,
            )
            call = Call(caller, service, operation, consumed=consumed)
        elif service == "sqs":
            queue = str(params.get("QueueUrl", "")).rsplit("/", 1)[-1]
            call = Call(
                caller,
                service,
                operation,
                requests=request_chunks(_sqs_payload(operation, params, response)),
                queue=queue,
                messages=len(response.get("Messages", [])),
            )
        elif service == "sns" and operation in {"Publish", "PublishBatch"}:
            call = Call(caller, service, operation, requests=request_chunks(_sns_payload(params)))
        with self._lock:
            self.calls.append(call)

    def _stored(self, keys: list[tuple[str, Item]]) -> dict[tuple[str, tuple[str, ...]], Item | None]:
        """The items at these keys in moto's tables, now (moto runs in this process)."""
        backend = dynamodb_backends[ACCOUNT_ID][REGION]
        found: dict[tuple[str, tuple[str, ...]], Item | None] = {}
        for table_name, key in keys:
            table = self.tables[table_name]
            found[(table_name, table.key_of(key))] = None
            if table_name not in backend.tables:
                continue
            for _ in range(3):  # another thread may be writing the item
                try:
                    item = backend.get_item(table_name, key)
                    found[(table_name, table.key_of(key))] = item.to_json()["Attributes"] if item else None
                    break
                except RuntimeError:
                    continue
        return found

    # -- executions

    def _read_histories(self, aws: LocalAws) -> None:
        if STATE_MACHINE not in aws.physical:
            return
        self._local.quiet = True
        try:
            stepfunctions = aws.client("stepfunctions")
            pages = stepfunctions.get_paginator("list_executions").paginate(
                stateMachineArn=aws.ref(STATE_MACHINE)
            )
            for page in pages:
                for execution in page["executions"]:
                    events: list[dict[str, Any]] = []
                    arguments = {"executionArn": execution["executionArn"], "maxResults": 1000}
                    while True:
                        history = stepfunctions.get_execution_history(**arguments)
                        events.extend(history["events"])
                        if not history.get("nextToken"):
                            break
                        arguments["nextToken"] = history["nextToken"]
                    self.histories.append(events)
        finally:
            self._local.quiet = False


# ------------------------------------------------------------------------------------------- the tally


@dataclass
class Usage:
    """What a run consumed, counted from what ran."""

    alerts: int
    billing: dict[str, FunctionBilling]
    invocations: dict[str, list[int]] = field(default_factory=dict)
    overlapping_invocations: int = 0
    executions: int = 0
    state_transitions: int = 0
    dynamodb: dict[str, Consumed] = field(default_factory=dict)
    sqs: Counter[str] = field(default_factory=Counter)
    sns_requests: int = 0
    secretsmanager_calls: int = 0
    vt_requests: int = 0
    not_billed: Counter[str] = field(default_factory=Counter)

    @property
    def read_units(self) -> float:
        """Read request units over every table."""
        return sum(consumed.read for consumed in self.dynamodb.values())

    @property
    def write_units(self) -> float:
        """Write request units over every table."""
        return sum(consumed.write for consumed in self.dynamodb.values())

    def gb_seconds(self, function: str) -> float:
        """The function's GB-seconds over the run."""
        return gb_seconds(self.billing[function].memory_mb, sum(self.invocations.get(function, [])))


# The AWS services whose API calls carry no request charge (the control plane the remediate function uses)
# or are billed otherwise (Step Functions' API for a STANDARD workflow: its transitions; Lambda's Invoke:
# the invocation, counted under Lambda).
_FREE_SERVICES = {"ec2", "iam", "sts", "organizations", "s3control", "wafv2", "route53resolver"}


def tally(meter: Meter, *, alerts: int, billing: Mapping[str, FunctionBilling], vt_requests: int) -> Usage:
    """The usage a metered run adds up to, by the billing rules in the module's docstring."""
    usage = Usage(alerts=alerts, billing=dict(billing), vt_requests=vt_requests)
    for invocation in meter.invocations:
        usage.invocations.setdefault(invocation.function, []).append(invocation.billed_ms)
        usage.overlapping_invocations += invocation.overlapped
    usage.executions = len(meter.histories)
    usage.state_transitions = sum(state_transitions(events) for events in meter.histories)
    dynamodb: dict[str, Consumed] = defaultdict(Consumed)
    batch_open = False
    for call in meter.calls:
        if call.caller == HARNESS:
            batch_open = _tally_runner_call(call, usage, batch_open=batch_open)
            continue
        if call.service == "dynamodb":
            for table, consumed in call.consumed.items():
                dynamodb[table].add(consumed)
        elif call.service == "sqs":
            usage.sqs[f"{call.operation} by {call.caller}"] += call.requests
        elif call.service == "sns" and call.operation in {"Publish", "PublishBatch"}:
            usage.sns_requests += call.requests
        elif call.service == "secretsmanager":
            usage.secretsmanager_calls += 1
        elif call.service in _FREE_SERVICES:
            usage.not_billed[f"{call.service} (no request charge)"] += 1
        elif call.service == "stepfunctions":
            usage.not_billed["stepfunctions API (a STANDARD workflow is billed by transitions)"] += 1
        elif call.service == "lambda" and call.operation == "Invoke":
            usage.not_billed["lambda Invoke (the invocation is counted under Lambda)"] += 1
        else:
            raise ValueError(f"no billing rule for {call.service} {call.operation} (by {call.caller})")
    usage.dynamodb = dict(dynamodb)
    return usage


def _tally_runner_call(call: Call, usage: Usage, *, batch_open: bool) -> bool:
    """Bill a call of the runner where it stands in for an AWS service; returns whether a received batch
    still waits for its DeleteMessageBatch (calls are in the order the runner made them)."""
    alert_queues = {"AlertQueue", "PushedAlertQueue"}
    if call.service == "sqs" and call.queue in alert_queues:
        if call.operation == "SendMessage":
            usage.sqs["SendMessage by EventBridge (one per alert)"] += call.requests
            return batch_open
        if call.operation == "ReceiveMessage" and call.messages:
            usage.sqs["ReceiveMessage by the event source mapping (batches received)"] += call.requests
            return True
        if call.operation == "DeleteMessage":
            if batch_open:
                usage.sqs["DeleteMessageBatch by the event source mapping (one per batch)"] += 1
                return False
            usage.not_billed["sqs DeleteMessage within a batch's one DeleteMessageBatch"] += 1
            return batch_open
        if call.operation == "ReceiveMessage":
            usage.not_billed["sqs ReceiveMessage that found nothing (in AWS: continual long polling)"] += 1
            return batch_open
    usage.not_billed["the runner's own calls (set-up, reads, queue attributes)"] += 1
    return batch_open


# ------------------------------------------------------------------------------------------ the prices


def cost_of(usage: Usage, per_alerts: int = PER_ALERTS) -> dict[str, float]:
    """The USD `per_alerts` alerts cost, per service, at PRICES."""
    scale = per_alerts / usage.alerts
    lambda_usd = sum(
        PRICES[f"lambda_gb_second_{usage.billing[function].architecture}"].of(usage.gb_seconds(function))
        for function in usage.invocations
    )
    lambda_usd += PRICES["lambda_requests"].of(sum(len(ms) for ms in usage.invocations.values()))
    by_service = {
        "lambda": lambda_usd,
        "stepfunctions": PRICES["stepfunctions_state_transitions"].of(usage.state_transitions),
        "dynamodb": PRICES["dynamodb_read_request_units"].of(usage.read_units)
        + PRICES["dynamodb_write_request_units"].of(usage.write_units),
        "sqs": PRICES["sqs_requests"].of(sum(usage.sqs.values())),
        "sns": PRICES["sns_requests"].of(usage.sns_requests),
        "secretsmanager": PRICES["secretsmanager_api_calls"].of(usage.secretsmanager_calls),
    }
    return {service: usd * scale for service, usd in by_service.items()}


def _per_alert(value: float, usage: Usage) -> float:
    return round(value / usage.alerts, 4)


def describe(usage: Usage) -> dict[str, Any]:
    """A run's cost of 1,000 alerts and the counts per alert it comes from, as results.json holds them."""
    usd = cost_of(usage)
    functions = sorted(usage.invocations)
    return {
        "usd_per_1000_alerts": round(sum(usd.values()), 6),
        "usd_per_1000_alerts_by_service": {service: round(value, 6) for service, value in usd.items()},
        "alerts": usage.alerts,
        "per_alert": {
            "lambda_invocations": {f: _per_alert(len(usage.invocations[f]), usage) for f in functions},
            "lambda_gb_seconds": {f: round(usage.gb_seconds(f) / usage.alerts, 6) for f in functions},
            "stepfunctions_state_transitions": _per_alert(usage.state_transitions, usage),
            "dynamodb_read_request_units": _per_alert(usage.read_units, usage),
            "dynamodb_write_request_units": _per_alert(usage.write_units, usage),
            "sqs_requests": _per_alert(sum(usage.sqs.values()), usage),
            "sns_publish_requests": _per_alert(usage.sns_requests, usage),
            "secretsmanager_calls": _per_alert(usage.secretsmanager_calls, usage),
            "virustotal_requests": _per_alert(usage.vt_requests, usage),
        },
        "totals": {
            "lambda": {
                f: {
                    "invocations": len(usage.invocations[f]),
                    "billed_ms": sum(usage.invocations[f]),
                    "mean_billed_ms": round(sum(usage.invocations[f]) / len(usage.invocations[f]), 1),
                    "memory_mb": usage.billing[f].memory_mb,
                    "architecture": usage.billing[f].architecture,
                    "gb_seconds": round(usage.gb_seconds(f), 4),
                }
                for f in functions
            },
            "invocations_measured_overlapping": usage.overlapping_invocations,
            "stepfunctions_executions": usage.executions,
            "stepfunctions_state_transitions": usage.state_transitions,
            "dynamodb_by_table": {
                table: {
                    "read_request_units": consumed.read,
                    "write_request_units": consumed.write,
                    "of_which_index_writes": consumed.index_write,
                }
                for table, consumed in sorted(usage.dynamodb.items())
            },
            "sqs_requests": dict(sorted(usage.sqs.items())),
            "sns_publish_requests": usage.sns_requests,
            "secretsmanager_calls": usage.secretsmanager_calls,
            "virustotal_requests": usage.vt_requests,
            "calls_not_billed": dict(sorted(usage.not_billed.items())),
        },
    }


# --------------------------------------------------------------------------------------------- the runs


@contextlib.contextmanager
def _replayed_corpus(corpus: C2Corpus) -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as folder:
        recordings = Path(folder) / "recordings"
        write_domain_recordings(recordings, set(corpus.domains))
        yield recordings


def measure_vtriage(corpus: C2Corpus, recordings: Path, latency_ms: int = LATENCY_MS) -> Usage:
    """vtriage on the corpus end to end, as `vtriage run` runs it, metered."""
    template = load_template(TEMPLATE_PATH)
    if state_machine_type(template) != "STANDARD":
        raise ValueError(f"{STATE_MACHINE} is not a STANDARD workflow: its transitions are priced as one")
    deliveries = [Delivery(source_id=str(alert["id"]), body=json.dumps(alert)) for alert in corpus.alerts]
    source = VirusTotalSource(recordings=recordings, latency_ms=latency_ms)
    with Meter(table_specs(template)) as meter:
        document = run_deliveries(deliveries, source, io.StringIO())
    cases = document["cases"]
    if len(cases) != len(corpus.alerts) or document["failures"] or document["pending"]:
        raise RuntimeError(
            f"vtriage made {len(cases)} case(s) of {len(corpus.alerts)} alerts; failures "
            f"{document['failures'][:3]}, pending {document['pending'][:3]}"
        )
    invoked_by_executions = sum(lambda_tasks(events) for events in meter.histories)
    metered = sum(1 for invocation in meter.invocations if invocation.function != QUEUE_FUNCTION)
    if invoked_by_executions != metered:
        raise RuntimeError(
            f"the executions invoked functions {invoked_by_executions} times, the meter timed {metered}: "
            "an invocation bypassed LocalAws.invoke"
        )
    return tally(
        meter,
        alerts=len(corpus.alerts),
        billing=function_billing(template),
        vt_requests=document["stats"]["vt_requests"],
    )


NAIVE_TABLE_SPEC = TableSpec(NAIVE_TABLE, ("alert_id",))
# The template's memory setting for every function (its Globals), so that the two designs differ only in
# what they do; arm64 as the template's.
NAIVE_BILLING = FunctionBilling(memory_mb=512, architecture="arm64")


def measure_naive(corpus: C2Corpus, recordings: Path, latency_ms: int = LATENCY_MS) -> Usage:
    """bench.naive_lambda invoked once per alert of the corpus, against the same replay server at the
    same latency, metered as vtriage is."""
    with (
        contextlib.redirect_stdout(io.StringIO()),
        ReplayServer(recordings, api_key=API_KEY, latency_ms=latency_ms) as replay,
        Meter({NAIVE_TABLE: NAIVE_TABLE_SPEC}) as meter,
        LocalAws(run_state_machines=False) as aws,
    ):
        aws.client("dynamodb").create_table(
            TableName=NAIVE_TABLE,
            KeySchema=[{"AttributeName": "alert_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "alert_id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        environment = {"NAIVE_TABLE_NAME": NAIVE_TABLE, "VT_BASE_URL": replay.base_url, "VT_API_KEY": API_KEY}
        before = replay.request_count
        with mock.patch.dict(os.environ, environment):
            for alert in corpus.alerts:
                meter.invoke(NAIVE_FUNCTION, functools.partial(naive_lambda.handler, alert, None))
        vt_requests = replay.request_count - before
    return tally(
        meter, alerts=len(corpus.alerts), billing={NAIVE_FUNCTION: NAIVE_BILLING}, vt_requests=vt_requests
    )


APPROXIMATIONS = [
    "Lambda durations are this machine's (2 cores shared with other work), each invocation measured "
    "alone; AWS calls answered by moto in this process, VirusTotal by the replay server at 150 ms",
    "the first invocation of each function carries its cold start (module imports); in AWS there is one "
    "per environment Lambda starts, more under concurrency, and Secrets Manager is read once per "
    "environment (and when its cache of 300 s lapses)",
    "DynamoDB item sizes by AWS's documented formula (numbers approximately); a write billed on the "
    "larger of the item before and after it, read from moto's tables around the call; global secondary "
    "index writes by AWS's rules, in a transaction billed as standard writes; a cancelled transaction "
    "billed on each item's existing size, twice; a query or scan on the size of what it returned",
    "SQS: the event source mapping's requests as the runner stands in for it: one ReceiveMessage per "
    "batch that returned records, one DeleteMessageBatch per batch (the runner deletes one by one); in "
    "AWS it may receive fewer records per batch (its batching window is 5 s): more receives and enrich "
    "invocations per alert under a trickle of alerts; and its continual long polling of the empty "
    "queues is not in a per-alert figure",
    "EventBridge's delivery of each GuardDuty finding to the queue: one SendMessage (EventBridge does not "
    "bill events of AWS services on the default bus)",
    "free tiers ignored; Lambda's and DynamoDB's first price tier; one Region's list prices",
]

NOT_COUNTED = [
    "CloudWatch Logs ingestion and storage of the functions' and the state machine's logs",
    "X-Ray traces (Tracing: Active on the functions and the state machine) and CloudWatch metrics",
    "DynamoDB storage and point-in-time recovery (per GB-month, not per alert)",
    "Secrets Manager's $0.40 per secret a month, KMS, data transfer",
    "SNS deliveries to the ticket and approval topics' subscribers (billed by protocol)",
    "EventBridge: events of AWS services on the default bus are not billed",
    "the VirusTotal subscription (its requests are counted, not priced)",
]


def cost_per_1000_alerts(alerts: int | None = None) -> dict[str, Any]:
    """The cost of 1,000 alerts for vtriage and for the naive design, measured on bench.runner_speed's
    corpus, as results.json holds it."""
    corpus = c2_corpus() if alerts is None else c2_corpus(alerts=alerts, unique=max(1, alerts * 2 // 5))
    with _replayed_corpus(corpus) as recordings:
        vtriage = measure_vtriage(corpus, recordings)
        naive = measure_naive(corpus, recordings)
    vtriage_figures, naive_figures = describe(vtriage), describe(naive)
    return {
        "cost_per_1000_alerts_usd": vtriage_figures["usd_per_1000_alerts"],
        "cost_per_1000_alerts": {
            "region": REGION_NAME,
            "prices_read": _READ,
            "corpus": {
                "alerts": len(corpus.alerts),
                "unique_iocs": len(set(corpus.domains)),
                "instances": len(corpus.instances),
                "virustotal_latency_ms": LATENCY_MS,
                "what": "bench.runner_speed's C&C DNS findings, each on its own instance",
            },
            "vtriage": vtriage_figures,
            "naive_per_alert_lambda": naive_figures
            | {
                "design": "bench/naive_lambda.py: one invocation per alert (from EventBridge, no queue), "
                "each IOC looked up in VirusTotal one after another with no cache, one DynamoDB item per "
                "alert written; no remediation, ticket or workflow; 512 MB arm64, as the template's "
                "functions"
            },
            "vtriage_over_naive": round(
                vtriage_figures["usd_per_1000_alerts"] / naive_figures["usd_per_1000_alerts"], 2
            ),
            "prices": {name: price.describe() for name, price in PRICES.items()},
            "approximations": APPROXIMATIONS,
            "not_counted": NOT_COUNTED,
        },
    }


if __name__ == "__main__":
    print(json.dumps(cost_per_1000_alerts(), indent=2))
