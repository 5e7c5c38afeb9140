"""The cost bench's unit rules and price arithmetic (bench/cost.py): how a request, an invocation and an
execution history turn into billed units, by AWS's documented rules, and units into dollars."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench.cost import (
    HARNESS,
    PRICES,
    Call,
    Consumed,
    FunctionBilling,
    Index,
    Invocation,
    Meter,
    TableSpec,
    Usage,
    billed_ms,
    cost_of,
    dynamodb_consumption,
    function_billing,
    gb_seconds,
    item_size,
    request_chunks,
    state_machine_type,
    state_transitions,
    table_specs,
    tally,
)
from bench.naive_lambda import iocs_of
from vtriage_local.template import TEMPLATE_PATH, load_template

ROOT = Path(__file__).resolve().parents[2]
KB = 1024
PLAIN = TableSpec("Plain", ("id",))
TABLES = {"Plain": PLAIN}


def _item_of_size(size: int, key: str = "k1", **extra: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """An item of exactly `size` bytes as DynamoDB measures it: its key, `extra`, and a padding string."""
    item: dict[str, dict[str, Any]] = {"id": {"S": key}, **extra}
    padding = size - item_size(item) - len("pad")
    assert padding >= 0
    return item | {"pad": {"S": "x" * padding}}


def _stored(table: TableSpec, *items: dict[str, dict[str, Any]]) -> dict[Any, Any]:
    return {(table.name, table.key_of(item)): item for item in items}


def _key(table: TableSpec, key: str = "k1") -> tuple[str, tuple[str, ...]]:
    return (table.name, table.key_of({"id": {"S": key}}))


def test_a_5_kb_put_item_costs_5_write_units() -> None:
    # Given a new item of 5 KB
    item = _item_of_size(5 * KB)
    # When it is put into a table that had no item at its key
    consumed = dynamodb_consumption(
        "PutItem",
        {"TableName": "Plain", "Item": item},
        {},
        succeeded=True,
        before={_key(PLAIN): None},
        after=_stored(PLAIN, item),
        tables=TABLES,
    )
    # Then it costs one write unit per KB
    assert consumed["Plain"].write == 5
    assert consumed["Plain"].read == 0


def test_a_transactional_write_of_1_2_kb_costs_4_write_units() -> None:
    # Given an item of 1.2 KB (two KB once rounded up)
    item = _item_of_size(int(1.2 * KB))
    # When a transaction puts it
    consumed = dynamodb_consumption(
        "TransactWriteItems",
        {"TransactItems": [{"Put": {"TableName": "Plain", "Item": item}}]},
        {},
        succeeded=True,
        before={_key(PLAIN): None},
        after=_stored(PLAIN, item),
        tables=TABLES,
    )
    # Then it costs twice the standard write: 2 x 2
    assert consumed["Plain"].write == 4


def test_an_update_is_billed_on_the_larger_of_the_item_before_and_after() -> None:
    # Given a 3 KB item that an update shrinks to half a KB
    before, after = _item_of_size(3 * KB), _item_of_size(KB // 2)
    # When the update runs
    consumed = dynamodb_consumption(
        "UpdateItem",
        {"TableName": "Plain", "Key": {"id": {"S": "k1"}}},
        {},
        succeeded=True,
        before=_stored(PLAIN, before),
        after=_stored(PLAIN, after),
        tables=TABLES,
    )
    # Then it costs what writing the larger, 3 KB, costs
    assert consumed["Plain"].write == 3


def test_a_failed_conditional_write_costs_the_existing_item_and_no_index_write() -> None:
    # Given a 2.5 KB case in the by-status index, and a put whose condition fails (nothing changes)
    cases = table_specs(load_template(TEMPLATE_PATH))["CasesTable"]
    existing = _item_of_size(
        int(2.5 * KB), status={"S": "OPEN"}, updated_at={"S": "2026-11-29T10:00:00Z"}, case_id={"S": "c1"}
    )
    stored = {(cases.name, cases.key_of(existing)): existing}
    # When the conditional write is refused
    consumed = dynamodb_consumption(
        "PutItem",
        {"TableName": "CasesTable", "Item": existing},
        {},
        succeeded=False,
        before=stored,
        after=stored,
        tables={"CasesTable": cases},
    )
    # Then it costs the existing item's three write units, and nothing for the index
    assert consumed["CasesTable"].write == 3
    assert consumed["CasesTable"].index_write == 0


def test_changing_a_cases_index_key_costs_a_delete_and_a_put_in_the_index() -> None:
    # Given the cases table as template.yaml declares it (the by-status index projects every attribute)
    cases = table_specs(load_template(TEMPLATE_PATH))["CasesTable"]
    assert cases.indexes == (Index("by-status", ("status", "updated_at"), "ALL"),)
    # and a 1.5 KB case whose status an update changes
    before = _item_of_size(
        int(1.5 * KB), case_id={"S": "c1"}, status={"S": "OPEN"}, updated_at={"S": "2026-11-29T10:00:00Z"}
    )
    after = before | {"status": {"S": "DONE"}}
    # When the update succeeds
    consumed = dynamodb_consumption(
        "UpdateItem",
        {"TableName": "CasesTable", "Key": {"case_id": {"S": "c1"}}},
        {},
        succeeded=True,
        before={(cases.name, cases.key_of(before)): before},
        after={(cases.name, cases.key_of(after)): after},
        tables={"CasesTable": cases},
    )
    # Then the table write (2) and the index's delete (2) and put (2) are billed
    assert consumed["CasesTable"].write == 6
    assert consumed["CasesTable"].index_write == 4


def test_reads_by_key_are_billed_per_4_kb_per_item_at_their_consistency() -> None:
    # Given a 5 KB item and three 1 KB items
    big = _item_of_size(5 * KB)
    small = [_item_of_size(KB, key=f"s{index}") for index in range(3)]
    stored = _stored(PLAIN, big, *small)

    # When the big one is read strongly then eventually, a missing one eventually, and the small ones in
    # one eventually consistent batch
    def units(operation: str, params: dict[str, Any]) -> float:
        consumed = dynamodb_consumption(
            operation, params, {}, succeeded=True, before=stored, after=stored, tables=TABLES
        )
        return consumed["Plain"].read

    strong = units("GetItem", {"TableName": "Plain", "Key": {"id": {"S": "k1"}}, "ConsistentRead": True})
    eventual = units("GetItem", {"TableName": "Plain", "Key": {"id": {"S": "k1"}}})
    missing = units("GetItem", {"TableName": "Plain", "Key": {"id": {"S": "absent"}}})
    keys = [{"id": {"S": f"s{index}"}} for index in range(3)]
    batch = units("BatchGetItem", {"RequestItems": {"Plain": {"Keys": keys}}})
    # Then 5 KB is two 4 KB units (one eventually), a missing item the minimum, and each batched item its own
    assert (strong, eventual, missing, batch) == (2.0, 1.0, 0.5, 1.5)


def test_a_query_is_billed_on_the_total_size_it_returned() -> None:
    # Given a query that returned ten 1 KB items, eventually consistent
    items = [_item_of_size(KB, key=f"q{index}") for index in range(10)]
    # When its units are counted
    consumed = dynamodb_consumption(
        "Query", {"TableName": "Plain"}, {"Items": items}, succeeded=True, before={}, after={}, tables=TABLES
    )
    # Then 10 KB is three 4 KB units, halved
    assert consumed["Plain"].read == 1.5


def test_item_sizes_follow_dynamodbs_formula() -> None:
    # Given attributes of each kind
    # When their sizes are measured
    # Then a string is its bytes, a number a byte per two digits and one, a list three bytes and one per
    # element, a map its element names too, a boolean one byte; each with its attribute's name
    assert item_size({"name": {"S": "abc"}}) == 4 + 3
    assert item_size({"n": {"N": "12345"}}) == 1 + 4
    assert item_size({"l": {"L": [{"S": "ab"}, {"BOOL": True}]}}) == 1 + 3 + (1 + 2) + (1 + 1)
    assert item_size({"m": {"M": {"k": {"S": "é"}}}}) == 1 + 3 + (1 + 1 + 2)


def test_lambda_bills_milliseconds_rounded_up_times_the_memory_setting() -> None:
    # Given an invocation of 1.2334 s by a function of 512 MB
    milliseconds = billed_ms(1.2334)
    # When its GB-seconds are counted
    # Then the duration is rounded up to the millisecond, and 512 MB is half a GB
    assert milliseconds == 1234
    assert gb_seconds(512, 1234) == pytest.approx(0.617)


def test_sqs_and_sns_bill_each_64_kb_chunk_as_a_request() -> None:
    # Given payloads of nothing, exactly 64 KB and one byte more
    # When their requests are counted
    # Then each started 64 KB chunk is a request, and every call at least one
    assert [request_chunks(size) for size in (0, 64 * KB, 64 * KB + 1, 256 * KB)] == [1, 1, 2, 4]


def test_state_transitions_count_every_state_entered_and_every_retry() -> None:
    # Given an execution: a choice, a task tried twice, then a map of two iterations of a choice and a task
    def entered(kind: str) -> dict[str, Any]:
        return {"type": f"{kind}StateEntered"}

    scheduled = {"type": "TaskScheduled", "taskScheduledEventDetails": {"resourceType": "lambda"}}
    iteration = [{"type": "MapIterationStarted"}, entered("Choice"), entered("Task"), scheduled]
    events = [
        {"type": "ExecutionStarted"},
        entered("Choice"),
        entered("Task"),
        scheduled,
        {"type": "TaskFailed"},
        scheduled,
        entered("Map"),
        *iteration,
        *iteration,
        {"type": "ExecutionSucceeded"},
    ]
    # When its transitions are counted
    # Then the seven states entered and the one retry are billed; the iterations themselves are not
    assert state_transitions(events) == 8


def test_the_runner_is_billed_only_where_it_stands_in_for_eventbridge_and_the_event_source_mapping() -> None:
    # Given the calls of a run: EventBridge's two deliveries (one a 100 KB alert), the event source
    # mapping's batch received and its records deleted one by one, an empty poll, a record moved to the
    # dead-letter queue, the runner's own reads, and a function deferring a record
    meter = Meter(TABLES)
    meter.calls = [
        Call(HARNESS, "sqs", "SendMessage", requests=1, queue="AlertQueue"),
        Call(HARNESS, "sqs", "SendMessage", requests=2, queue="AlertQueue"),
        Call(HARNESS, "sqs", "ReceiveMessage", requests=1, queue="AlertQueue", messages=2),
        Call(HARNESS, "sqs", "DeleteMessage", queue="AlertQueue"),
        Call(HARNESS, "sqs", "DeleteMessage", queue="AlertQueue"),
        Call(HARNESS, "sqs", "ReceiveMessage", queue="PushedAlertQueue"),
        Call(HARNESS, "sqs", "SendMessage", queue="AlertDeadLetterQueue"),
        Call(HARNESS, "dynamodb", "GetItem", consumed={"Plain": Consumed(read=1.0)}),
        Call("EnrichFunction", "sqs", "SendMessage", queue="AlertQueue"),
    ]
    # When the run is tallied
    usage = tally(meter, alerts=2, billing={}, vt_requests=0)
    # Then the deliveries' three requests, one receive, one DeleteMessageBatch and the function's
    # request are billed; the second delete (within the batch's), the empty poll, the dead-lettering and
    # the runner's reads are not
    assert sum(usage.sqs.values()) == 3 + 1 + 1 + 1
    assert usage.read_units == 0
    assert sum(usage.not_billed.values()) == 4


def test_the_cost_of_1000_alerts_scales_the_measured_usage_at_the_list_prices() -> None:
    # Given 100 alerts that took ten 1,000 ms invocations of a 512 MB arm64 function, 1,300 state
    # transitions, 400 read and 600 write units, 120 SQS requests, 100 publishes and 2 secret reads
    usage = Usage(alerts=100, billing={"EnrichFunction": FunctionBilling(512, "arm64")})
    usage.invocations = {"EnrichFunction": [1000] * 10}
    usage.state_transitions = 1300
    usage.dynamodb = {"CasesTable": Consumed(read=400, write=600)}
    usage.sqs["SendMessage by EventBridge (one per alert)"] = 120
    usage.sns_requests, usage.secretsmanager_calls = 100, 2
    # When 1,000 alerts are priced
    usd = cost_of(usage)
    # Then each service is its units for 1,000 alerts at its price
    assert usd["lambda"] == pytest.approx(10 * (5 * 0.0000133334 + 10 * 0.20 / 1e6))
    assert usd["stepfunctions"] == pytest.approx(13_000 * 0.025 / 1000)
    assert usd["dynamodb"] == pytest.approx(4000 * 0.125 / 1e6 + 6000 * 0.625 / 1e6)
    assert usd["sqs"] == pytest.approx(1200 * 0.40 / 1e6)
    assert usd["sns"] == pytest.approx(1000 * 0.50 / 1e6)
    assert usd["secretsmanager"] == pytest.approx(20 * 0.05 / 10_000)


def test_every_price_names_its_source_and_its_unit() -> None:
    # Given the prices the bench uses
    # When each is read
    # Then it has a positive amount, a unit, and the page it was read from
    for name, price in PRICES.items():
        assert price.usd > 0, name
        assert price.source.startswith("https://"), name
        assert price.unit, name


def test_memory_and_architecture_come_from_the_template_globals_unless_a_function_sets_them() -> None:
    # Given a template whose Globals set 512 MB on arm64, one function overriding the memory, and a
    # state machine without a Type
    template = {
        "Globals": {"Function": {"MemorySize": 512, "Architectures": ["arm64"]}},
        "Resources": {
            "Small": {"Type": "AWS::Serverless::Function", "Properties": {}},
            "Large": {"Type": "AWS::Serverless::Function", "Properties": {"MemorySize": 1024}},
            "Machine": {"Type": "AWS::Serverless::StateMachine", "Properties": {}},
        },
    }
    # When the functions' billing and the workflow's type are read
    billing = function_billing(template)
    # Then each function has its setting, and the workflow SAM's default type
    assert billing == {"Small": FunctionBilling(512, "arm64"), "Large": FunctionBilling(1024, "arm64")}
    assert state_machine_type(template, "Machine") == "STANDARD"


def test_the_naive_function_looks_up_the_domain_of_a_dns_finding() -> None:
    # Given the C&C DNS sample the bench's corpus is built from
    alert = json.loads((ROOT / "events" / "synthetic-guardduty-backdoor-c2-dns.json").read_text())
    # When the naive function reads its IOCs
    # Then it finds the domain the instance asked for
    assert iocs_of(alert) == [("domain", "tawuhoju.com")]


def test_invocations_are_tallied_per_function() -> None:
    # Given two invocations of one function and one of another, one of them measured overlapping
    meter = Meter(TABLES)
    meter.invocations = [
        Invocation("EnrichFunction", 900, overlapped=False),
        Invocation("EnrichFunction", 100, overlapped=True),
        Invocation("TicketFunction", 50, overlapped=False),
    ]
    billing = {name: FunctionBilling(512, "arm64") for name in ("EnrichFunction", "TicketFunction")}
    # When the run is tallied
    usage = tally(meter, alerts=1, billing=billing, vt_requests=0)
    # Then each function has its billed milliseconds, and the overlap is counted
    assert usage.invocations == {"EnrichFunction": [900, 100], "TicketFunction": [50]}
    assert usage.gb_seconds("EnrichFunction") == pytest.approx(0.5)
    assert usage.overlapping_invocations == 1
