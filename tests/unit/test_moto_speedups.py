"""The local AWS's patches of moto (vtriage_local.moto_speedups) answer what moto answers: each operation is
run once with them and once without, on the same data, and the answers compared."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import boto3
import botocore.session
import pytest
from botocore.exceptions import ClientError, ParamValidationError
from moto import mock_aws
from moto.sqs import models as sqs_models
from moto.stepfunctions.parser.asl.component.common.path import result_path
from moto.stepfunctions.parser.asl.utils.json_path import NoSuchJsonPathError, extract_json

from tests.functional.conftest import keyed_by_case_id, use_dummy_aws_credentials
from vtriage_local.moto_speedups import EC2_ENDPOINT_PREFIX, ITEM_OPERATIONS, moto_speedups

TABLE = "speedups"
ITEM = {
    "case_id": {"S": "case-1"},
    "count": {"N": "12.5"},
    "blob": {"B": b"\x00\x01binary\xff"},
    "flag": {"BOOL": True},
    "nothing": {"NULL": True},
    "names": {"SS": ["a", "b"]},
    "numbers": {"NS": ["1", "2"]},
    "blobs": {"BS": [b"x", b"y"]},
    "history": {"L": [{"M": {"at": {"S": "2026-11-29T08:00:00Z"}, "what": {"S": "opened"}}}, {"N": "3"}]},
    "alert": {"M": {"title": {"S": "C&C <script>"}, "tags": {"L": [{"S": "x"}]}, "empty": {"M": {}}}},
}


@pytest.fixture(autouse=True)
def _in_process_moto_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto in this process alone: no endpoint a local stack of another test left in the environment."""
    use_dummy_aws_credentials(monkeypatch, "us-east-1")


@contextmanager
def _patched(on: bool) -> Iterator[None]:
    with ExitStack() as stack:
        if on:
            for patch in moto_speedups():
                stack.enter_context(patch)
        yield


def _answers(operation: Callable[[Any], Any], on: bool) -> Any:
    """The operation's answer on a fresh table holding ITEM, with or without the patches."""
    with mock_aws(), _patched(on):
        client = keyed_by_case_id(TABLE)
        client.put_item(TableName=TABLE, Item=ITEM)
        try:
            answer = operation(client)
        except ClientError as error:
            return ("refused", error.response["Error"]["Code"], error.response["Error"]["Message"])
        answer.pop("ResponseMetadata", None)
        return answer


KEY = {"case_id": {"S": "case-1"}}
NEW_ONLY = "attribute_not_exists(case_id)"
OPERATIONS: dict[str, Callable[[Any], Any]] = {
    "GetItem": lambda client: client.get_item(TableName=TABLE, Key=KEY, ConsistentRead=True),
    "GetItem of nothing": lambda client: client.get_item(TableName=TABLE, Key={"case_id": {"S": "none"}}),
    "BatchGetItem": lambda client: client.batch_get_item(
        RequestItems={TABLE: {"Keys": [KEY, {"case_id": {"S": "none"}}]}}
    ),
    "PutItem returning the old item": lambda client: client.put_item(
        TableName=TABLE, Item={**ITEM, "count": {"N": "13"}}, ReturnValues="ALL_OLD"
    ),
    "UpdateItem returning the new item": lambda client: client.update_item(
        TableName=TABLE,
        Key=KEY,
        UpdateExpression="SET #c = #c + :one REMOVE flag",
        ExpressionAttributeNames={"#c": "count"},
        ExpressionAttributeValues={":one": {"N": "1"}},
        ReturnValues="ALL_NEW",
    ),
    "DeleteItem": lambda client: client.delete_item(TableName=TABLE, Key=KEY, ReturnValues="ALL_OLD"),
    "Query": lambda client: client.query(
        TableName=TABLE,
        KeyConditionExpression="case_id = :id",
        ExpressionAttributeValues={":id": {"S": "case-1"}},
        ReturnConsumedCapacity="TOTAL",
    ),
    "Scan": lambda client: client.scan(TableName=TABLE, Limit=1),
    "BatchWriteItem": lambda client: client.batch_write_item(
        RequestItems={TABLE: [{"PutRequest": {"Item": {**ITEM, "case_id": {"S": "case-2"}}}}]}
    ),
    "TransactGetItems": lambda client: client.transact_get_items(
        TransactItems=[{"Get": {"TableName": TABLE, "Key": KEY}}]
    ),
    "TransactWriteItems refused": lambda client: client.transact_write_items(
        TransactItems=[
            {"Put": {"TableName": TABLE, "Item": ITEM, "ConditionExpression": NEW_ONLY}},
        ]
    ),
    "PutItem refused by its condition": lambda client: client.put_item(
        TableName=TABLE, Item=ITEM, ConditionExpression=NEW_ONLY
    ),
}


@pytest.mark.parametrize("name", sorted(OPERATIONS))
def test_each_item_operation_answers_what_moto_answers(name: str) -> None:
    # Given an item of every attribute type, and an operation on it
    operation = OPERATIONS[name]
    # When it is served with the patches and without them
    patched, unpatched = _answers(operation, on=True), _answers(operation, on=False)
    # Then the answers are the same, refusals included
    assert patched == unpatched


def test_every_item_operation_of_dynamodb_is_compared() -> None:
    # Given the operations answered as plain JSON
    # When they are set against the ones this module compares
    compared = {name.split()[0] for name in OPERATIONS}
    # Then none is answered without a comparison
    assert compared >= ITEM_OPERATIONS


def _put_attributes(client: Any, attributes: int, size: int) -> str:
    item = {"case_id": {"S": "big"}} | {f"a{index:03d}": {"S": "x" * size} for index in range(attributes)}
    try:
        client.put_item(TableName=TABLE, Item=item)
    except ClientError as error:
        return str(error.response["Error"]["Message"])
    return "stored"


@pytest.mark.parametrize(("attributes", "size"), [(39, 10_000), (41, 10_000), (400, 1_000), (400, 1_010)])
def test_the_item_size_limit_refuses_what_moto_refuses(attributes: int, size: int) -> None:
    # Given items on either side of moto's item size limit
    outcomes = []
    for on in (True, False):
        with mock_aws(), _patched(on):
            client = keyed_by_case_id(TABLE)
            # When each is put with the patches and without them
            outcomes.append(_put_attributes(client, attributes, size))
    # Then both store it or both refuse it with the same message
    assert outcomes[0] == outcomes[1]


def test_an_update_that_grows_an_item_past_the_limit_is_refused_as_moto_refuses_it() -> None:
    # Given an item just under the limit, its size kept while it was stored
    outcomes = []
    for on in (True, False):
        with mock_aws(), _patched(on):
            client = keyed_by_case_id(TABLE)
            assert _put_attributes(client, 40, 10_000) == "stored"
            # When an update removes one attribute and adds two of the same size
            try:
                client.update_item(
                    TableName=TABLE,
                    Key={"case_id": {"S": "big"}},
                    UpdateExpression="REMOVE a000 SET b1 = :v, b2 = :v",
                    ExpressionAttributeValues={":v": {"S": "y" * 10_000}},
                )
                outcomes.append("stored")
            except ClientError as error:
                outcomes.append(str(error.response["Error"]["Message"]))
    # Then both refuse it, or both store it
    assert outcomes[0] == outcomes[1]


DOCUMENTS = [
    {"case": {"case_id": "a", "actions": [{"type": "isolate_instance"}, {"type": "tag_instance"}]}},
    {"case": {"case_id": "b", "actions": []}, "step": "finish"},
    {"Payload": {"status": "TICKETED"}},
]
PATHS = ["$.case.case_id", "$.case.actions[0].type", "$.case.actions[*].type", "$.step", "$.Payload.status"]


def _extracted(on: bool) -> list[Any]:
    found: list[Any] = []
    with _patched(on):
        for document in DOCUMENTS:
            for path in PATHS:
                try:
                    found.append(extract_json(path, document))
                except NoSuchJsonPathError as error:
                    found.append(("not found", error.message))
    return found


def test_the_state_machines_paths_find_what_moto_finds() -> None:
    # Given the state machine's kind of paths and documents, each path met in several documents
    # When moto's engine evaluates them with the parsed paths kept, and parsing each every time
    kept, parsed_each_time = _extracted(on=True), _extracted(on=False)
    # Then they find the same values and miss the same ones
    assert kept == parsed_each_time
    assert "not found" in str(kept)
    assert "isolate_instance" in str(kept)


def _received_after(seconds: float, on: bool, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The bodies a receive answers `seconds` after three messages were sent to a queue retaining them
    60 s, with the patches or without them."""
    with mock_aws(), _patched(on):
        sqs = boto3.client("sqs", region_name="us-east-1")
        url = sqs.create_queue(QueueName="retained", Attributes={"MessageRetentionPeriod": "60"})["QueueUrl"]
        for body in ("one", "two", "three"):
            sqs.send_message(QueueUrl=url, MessageBody=body)
        sent_at = time.time()
        with monkeypatch.context() as clock:
            clock.setattr(sqs_models, "unix_time", lambda: sent_at + seconds)
            answer = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)
    return sorted(message["Body"] for message in answer.get("Messages", []))


@pytest.mark.parametrize("seconds", [0, 59, 61, 3600])
def test_a_receive_answers_the_messages_moto_retains(seconds: float, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given three messages sent to a queue that retains them 60 s
    # When they are received some time later, with the patches and without them
    patched = _received_after(seconds, True, monkeypatch)
    unpatched = _received_after(seconds, False, monkeypatch)
    # Then both answer the same messages: all of them within the retention period, none past it
    assert patched == unpatched
    assert patched == (["one", "three", "two"] if seconds < 60 else [])


# Attribute values botocore checks itself: each form the whole check leaves to it, refused or accepted.
ODD_VALUES: dict[str, Any] = {
    "a number as a string's value": {"S": 5},
    "a number given as a number": {"N": 1},
    "a set holding a number": {"SS": ["a", 1]},
    "a binary value given as text": {"B": "text"},
    "a binary value given as a bytearray": {"B": bytearray(b"\x00\x01")},
    "a map value that is null": {"M": {"k": {"S": None}}},
    "an empty value in a list": {"L": [{}]},
    "a boolean given as text": {"BOOL": "yes"},
    "a member no attribute value has": {"X": "y"},
    "two members": {"S": "a", "N": "1"},
    "a map key longer than an attribute name": {"M": {"k" * 65_536: {"S": "v"}}},
    "a value that is not a map": "plain",
}


def _put_answer(value: Any, on: bool) -> Any:
    """What putting an item holding `value` gives, with the patches or without: the answer, botocore's or
    moto's refusal, or moto's own failure."""
    with mock_aws(), _patched(on):
        client = keyed_by_case_id(TABLE)
        try:
            client.put_item(TableName=TABLE, Item={"case_id": {"S": "odd"}, "value": value})
            return client.get_item(TableName=TABLE, Key={"case_id": {"S": "odd"}}).get("Item")
        except ParamValidationError as error:
            return ("not valid", str(error))
        except ClientError as error:
            return ("refused", error.response["Error"]["Code"], error.response["Error"]["Message"])
        except Exception as error:  # moto itself fails on some values botocore lets through
            return ("moto failed", type(error).__name__)


@pytest.mark.parametrize("name", sorted(ODD_VALUES))
def test_an_attribute_value_botocore_checks_itself_gives_what_it_gives_unpatched(name: str) -> None:
    # Given an attribute value of a form botocore refuses, or accepts only through its own walk
    value = ODD_VALUES[name]
    # When an item holding it is put, with the patches and without them
    patched, unpatched = _put_answer(value, on=True), _put_answer(value, on=False)
    # Then both give the same: the same refusal in the same words, or the same item stored
    assert patched == unpatched


def _request_body(params: dict[str, Any], on: bool) -> Any:
    """The JSON body botocore writes for a PutItem of these parameters, with the patches or without."""
    with _patched(on):
        client: Any = boto3.client("dynamodb", region_name="us-east-1")
        model = client.meta.service_model.operation_model("PutItem")
        return json.loads(client._serializer.serialize_to_request(params, model)["body"])


def test_an_item_is_written_to_the_wire_as_botocore_writes_it() -> None:
    # Given an item of every attribute type, binary ones and nested maps and lists among them
    params = {"TableName": TABLE, "Item": ITEM, "ConditionExpression": NEW_ONLY}
    # When botocore writes its request, with the patches and without them
    patched, unpatched = _request_body(params, on=True), _request_body(params, on=False)
    # Then the bodies are the same, binary values in base64
    assert patched == unpatched
    assert patched["Item"]["blobs"] == {"BS": ["eA==", "eQ=="]}


RESULT_PATHS = ["$.plan", "$.outcome", "$.error", "$.decision", "$.ticket", "$.a.b"]


def _placed_results(on: bool) -> list[Any]:
    """Where moto's engine puts a task's result in its state's input for each ResultPath, twice each."""
    placed: list[Any] = []
    with _patched(on):
        for _ in range(2):
            for path in RESULT_PATHS:
                state_input = {"case_id": "c", "route": "remediate", "a": {"kept": True}}
                # The parser moto's ResultPath calls, as it calls it (by its module's name).
                parse = vars(result_path)["parse"]
                placed.append(parse(path).update_or_create(state_input, {"items": [1, 2]}))
    return placed


def test_a_tasks_result_lands_where_moto_puts_it() -> None:
    # Given the state machine's ResultPaths, each met twice, as moto's engine meets them for each task
    # When moto's engine places a task's result with the parsed paths kept, and parsing each every time
    kept, parsed_each_time = _placed_results(on=True), _placed_results(on=False)
    # Then every result lands in the same place, beside the same input
    assert kept == parsed_each_time
    assert kept[0] == {"case_id": "c", "route": "remediate", "a": {"kept": True}, "plan": {"items": [1, 2]}}


_REGIONS_SEEN = """
import json, sys
if sys.argv[1] == "patched":
    import vtriage_local.moto_speedups
from moto.ec2.models.availability_zones_and_regions import RegionsAndZonesBackend as listed
regions = [[region.name, region.endpoint, region.opt_in_status] for region in listed.regions]
zones = {name: [vars(zone) for zone in found] for name, found in listed.zones.items()}
print(json.dumps([regions, zones]))
"""


def _regions_moto_lists(how: str) -> Any:
    """The Regions and zones moto's EC2 lists once imported in a new interpreter, imported by the local
    AWS's patches first or on its own."""
    done = subprocess.run(
        [sys.executable, "-c", _REGIONS_SEEN, how], capture_output=True, text=True, check=True, timeout=120
    )
    return json.loads(done.stdout)


def test_moto_lists_the_regions_it_lists_without_the_patches() -> None:
    # Given botocore's model of EC2, whose endpoint prefix the patches give moto's import
    prefix = botocore.session.get_session().get_service_data("ec2")["metadata"]["endpointPrefix"]
    assert prefix == EC2_ENDPOINT_PREFIX
    # When moto's EC2 is imported by the patches' module, and on its own
    patched, plain = _regions_moto_lists("patched"), _regions_moto_lists("plain")
    # Then it lists the same Regions of every partition, with the same zones
    assert patched == plain
    assert any(region[0] == "us-east-1" for region in patched[0])
    assert any(region[0].startswith("cn-") for region in patched[0])
