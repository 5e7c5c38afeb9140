"""The local AWS's memory savers (vtriage_local.moto_memory) keep what moto answers: each is run with and
without, on the same data, and what moto answers, stores and refuses compared; what they let go is only
what nothing holds (copies moto made to answer a read, replaced items, deleted messages), documentation
strings, and instance-type offerings until they are asked for."""

from __future__ import annotations

import copy
import gc
import json
import platform
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import boto3
import botocore.loaders
import pytest
import requests
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.core.model_instances import reset_model_data
from moto.dynamodb.models.dynamo_type import Item
from moto.ec2.models import instance_types
from moto.sqs.models import Message
from moto.utilities.utils import load_resource

from bench.cost import state_transitions
from tests.functional.conftest import keyed_by_case_id, use_dummy_aws_credentials
from vtriage_local.moto_memory import (
    LiveInstances,
    OfferingsByRegion,
    PackedEvents,
    defer_instance_type_offerings,
    moto_memory,
)

TABLE = "memory"
KEY = {"case_id": {"S": "case-1"}}


@pytest.fixture(autouse=True)
def _in_process_moto_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto in this process alone: no endpoint a local stack of another test left in the environment."""
    use_dummy_aws_credentials(monkeypatch, "us-east-1")


@contextmanager
def _savers(on: bool) -> Iterator[None]:
    with ExitStack() as stack:
        if on:
            for saver in moto_memory():
                stack.enter_context(saver)
        yield


def _case_read_and_revised(on: bool) -> tuple[list[Any], int, list[dict[str, Any]]]:
    """A case written, revised ten times and read after each revision, as the pipeline does; what moto
    answered, how many items it still tracks, and what its dashboard lists of them."""
    with mock_aws(), _savers(on):
        # Tracking as moto starts it: a local stack an earlier test of this process ran may have left its
        # classes' instances tracked weakly.
        reset_model_data()
        client = keyed_by_case_id(TABLE)
        answers: list[Any] = []
        for revision in range(10):
            item = {**KEY, "revision": {"N": str(revision)}, "alert": {"M": {"title": {"S": "C&C"}}}}
            client.put_item(TableName=TABLE, Item=item)
            answers.append(client.get_item(TableName=TABLE, Key=KEY, ConsistentRead=True)["Item"])
            answers.append(client.scan(TableName=TABLE)["Items"])
        gc.collect()
        tracked = list(Item.instances_tracked)  # type: ignore[attr-defined]
        return answers, len(tracked), _dashboard("dynamodb", "Item")


def _dashboard(service: str, model: str) -> list[dict[str, Any]]:
    """What moto's dashboard lists of a model (`/moto-api/data.json`)."""
    data = requests.get("http://motoapi.amazonaws.com/moto-api/data.json", timeout=10).json()
    return list(data[service][model])


def test_items_moto_copied_to_answer_reads_are_let_go_and_the_answers_are_the_same() -> None:
    # Given a case written, revised and read ten times, with the savers and without
    answers_kept, tracked_kept, dashboard_kept = _case_read_and_revised(on=False)
    answers, tracked, dashboard = _case_read_and_revised(on=True)
    # Then moto answered the same reads the same
    assert answers == answers_kept
    # and where moto alone kept at least every revision replaced (and the copies it made to answer scans),
    assert tracked_kept >= 10
    # only the item the table holds is still tracked, and its dashboard lists it as before
    assert tracked == 1
    assert len(dashboard) == 1
    assert dashboard[0] in dashboard_kept


def _messages_received_and_deleted(on: bool) -> tuple[list[str], int]:
    """Five messages sent, received and deleted: the bodies received, and the messages moto still tracks."""
    with mock_aws(), _savers(on):
        reset_model_data()  # tracking as moto starts it (see _case_read_and_revised)
        sqs = boto3.client("sqs", region_name="us-east-1")
        queue = sqs.create_queue(QueueName="alerts")["QueueUrl"]
        for index in range(5):
            sqs.send_message(QueueUrl=queue, MessageBody=f"alert {index}")
        bodies = []
        for message in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]:
            bodies.append(message["Body"])
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
        gc.collect()
        return sorted(bodies), len(list(Message.instances_tracked))  # type: ignore[attr-defined]


def test_deleted_messages_are_let_go_and_the_messages_received_are_the_same() -> None:
    # Given five messages sent, received and deleted, with the savers and without
    bodies_kept, tracked_kept = _messages_received_and_deleted(on=False)
    bodies, tracked = _messages_received_and_deleted(on=True)
    # Then the same messages were received; moto alone still held the five deleted (and the copies it
    # made to hand them out), the savers none
    assert bodies == bodies_kept == [f"alert {index}" for index in range(5)]
    assert tracked_kept >= 5
    assert tracked == 0


# A task state runs in a thread of its own in moto's engine, as the triage state machine's tasks do.
_TWO_STATES = {
    "StartAt": "Plan",
    "States": {
        "Plan": {"Type": "Pass", "Result": {"branch": "remediate"}, "ResultPath": "$.plan", "Next": "Wait"},
        "Wait": {"Type": "Wait", "Seconds": 0, "End": True},
    },
}


def _finished_threads() -> int:
    """Threads that have ended and are still in memory."""
    gc.collect()
    return sum(
        1 for found in gc.get_objects() if isinstance(found, threading.Thread) and not found.is_alive()
    )


def _held_histories() -> list[Any]:
    """The history each execution of moto's engine holds (what GetExecutionHistory copies)."""
    from moto.stepfunctions.parser.models import stepfunctions_parser_backends  # noqa: PLC0415

    backend = stepfunctions_parser_backends["123456789012"]["us-east-1"]
    return [
        execution.exec_worker.env.event_manager._history_event_list for execution in backend._get_executions()
    ]


def _executions_run(on: bool, count: int = 6, held: list[Any] | None = None) -> tuple[list[Any], int]:
    """Executions run to their end by moto's engine: what Step Functions answered of each (description
    and history, but for times and ids), and how many more finished threads are in memory than before;
    the histories the engine held once they had ended are added to `held`."""
    held = [] if held is None else held
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}), _savers(on):
        sfn = boto3.client("stepfunctions", region_name="us-east-1")
        machine = sfn.create_state_machine(
            name="triage", definition=json.dumps(_TWO_STATES), roleArn="arn:aws:iam::123456789012:role/sfn"
        )["stateMachineArn"]
        before = _finished_threads()
        # Another test of this process may have left an execution waiting (for a task token): only
        # the threads these executions start are waited for.
        running_before = set(threading.enumerate())
        arns = [
            sfn.start_execution(stateMachineArn=machine, name=f"case-{index}", input='{"case_id": "c"}')[
                "executionArn"
            ]
            for index in range(count)
        ]
        deadline = time.monotonic() + 30
        while any(sfn.describe_execution(executionArn=arn)["status"] == "RUNNING" for arn in arns):
            assert time.monotonic() < deadline, "moto's engine did not finish the executions"
            time.sleep(0.05)
        # An execution reads SUCCEEDED a moment before its worker thread has ended it.
        while any(
            thread.name.endswith("(_execution_logic)") and thread not in running_before
            for thread in threading.enumerate()
        ):
            assert time.monotonic() < deadline, "moto's engine did not end the executions"
            time.sleep(0.01)
        answers: list[Any] = []
        held.extend(_held_histories())
        for arn in arns:
            described = sfn.describe_execution(executionArn=arn)
            answers.append({key: described.get(key) for key in ("name", "status", "input", "output")})
            history = sfn.get_execution_history(executionArn=arn)["events"]
            answers.append(
                [{key: value for key, value in event.items() if key != "timestamp"} for event in history]
            )
        return answers, _finished_threads() - before


def test_finished_engine_threads_are_let_go_and_executions_answer_the_same() -> None:
    # Given executions run to their end by moto's engine, with the savers and without
    answers_kept, finished_kept = _executions_run(on=False)
    answers, finished = _executions_run(on=True)
    # Then Step Functions answered the same of each execution, its history included
    assert answers == answers_kept
    assert answers[0]["status"] == "SUCCEEDED"
    # and where moto alone kept every thread its engine started (at least one for each execution and
    # one for its program), with the savers no finished thread is left in memory
    assert finished_kept >= 2 * 6
    assert finished == 0


def test_an_ended_execution_s_history_is_held_packed_and_answered_whole() -> None:
    # Given executions run to their end by moto's engine, with the savers and without
    held_kept: list[Any] = []
    held: list[Any] = []
    answers_kept, _ = _executions_run(on=False, held=held_kept)
    answers, _ = _executions_run(on=True, held=held)
    histories_kept, histories = answers_kept[1::2], answers[1::2]
    # Then GetExecutionHistory answered every event as before, and the cost bench counts the same
    # transitions in them
    assert histories == histories_kept
    assert len(histories[0]) >= 5
    assert [state_transitions(events) for events in histories] == [
        state_transitions(events) for events in histories_kept
    ]
    # and where moto held each history as its events, the engine now holds it packed, with none of them
    assert all(not isinstance(events, PackedEvents) and len(events) >= 5 for events in held_kept)
    assert len(held) == 6
    assert all(isinstance(events, PackedEvents) and len(events) == 0 for events in held)


def test_an_event_added_after_the_history_was_packed_is_answered_after_the_packed_ones() -> None:
    # Given a history packed, then an event appended to it (as moto would append one to its list)
    history = PackedEvents([{"id": 1, "type": "ExecutionStarted"}, {"id": 2, "type": "ExecutionSucceeded"}])
    appended = {"id": 3, "type": "ExecutionAborted"}
    history.append(appended)
    # When it is packed again (the execution ended twice)
    repacked = PackedEvents(history)
    # Then moto's deep copy of either is every event in order, each a copy
    whole = [{"id": 1, "type": "ExecutionStarted"}, {"id": 2, "type": "ExecutionSucceeded"}, appended]
    assert copy.deepcopy(history) == copy.deepcopy(repacked) == whole
    assert copy.deepcopy(history)[2] is not appended


def test_every_module_of_the_engine_naming_its_thread_list_gets_the_weak_one() -> None:
    # Given the savers started
    with _savers(True):
        # Then every module of moto that names the engine's thread list names the one holding them weakly
        holders = {
            name: module.TMP_THREADS
            for name, module in list(sys.modules.items())
            if name.startswith("moto.") and hasattr(module, "TMP_THREADS")
        }
        assert len(holders) >= 2
        assert all(isinstance(threads, LiveInstances) for threads in holders.values())
    # and once they stop, moto's own list again
    assert not any(
        isinstance(getattr(module, "TMP_THREADS", None), LiveInstances)
        for module in list(sys.modules.values())
    )


def _documentation_emptied(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            key: ""
            if key in {"documentation", "documentationUrl"} and isinstance(item, str)
            else _documentation_emptied(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_documentation_emptied(item) for item in value]
    return value


@pytest.mark.parametrize("service", ["dynamodb", "ec2", "s3", "stepfunctions"])
def test_service_models_are_read_whole_but_for_their_documentation(service: str) -> None:
    # Given botocore's model of a service, read by a fresh loader with the savers and without
    with _savers(True):
        saved = botocore.loaders.create_loader().load_service_model(service, "service-2")
    whole = botocore.loaders.create_loader().load_service_model(service, "service-2")
    # Then the model is botocore's, in its order, each documentation string empty
    assert saved == _documentation_emptied(whole)
    assert list(saved["shapes"]) == list(whole["shapes"])
    assert '"documentation": "<' in json.dumps(whole)
    assert '"documentation": "<' not in json.dumps(saved)


def test_clients_made_with_the_savers_answer_and_refuse_as_before() -> None:
    # Given DynamoDB and S3 clients made from models read with the savers
    with mock_aws(), _savers(True):
        session = boto3.session.Session()
        client = session.client("dynamodb", region_name="us-east-1")
        s3 = session.client("s3", region_name="us-east-1")
        # When S3 (whose client reads its context parameters' documentation) makes a bucket
        s3.create_bucket(Bucket="quarantine")
        assert [bucket["Name"] for bucket in s3.list_buckets()["Buckets"]] == ["quarantine"]
        # When it creates a table, writes to it and asks for a missing table
        client.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "case_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "case_id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        client.put_item(TableName=TABLE, Item=KEY)
        # Then it reads its item back, and the refusal is botocore's modelled error
        assert client.get_item(TableName=TABLE, Key=KEY)["Item"] == KEY
        with pytest.raises(client.exceptions.ResourceNotFoundException):
            client.describe_table(TableName="missing")


def test_instance_type_offerings_are_moto_s_own_once_asked_for() -> None:
    # Given moto's offerings deferred (as the local AWS does)
    defer_instance_type_offerings()
    catalogue = instance_types.INSTANCE_TYPE_OFFERINGS
    # Then every location type is deferred, each Region read when asked for, as moto reads it
    assert set(catalogue) == {"region", "availability-zone", "availability-zone-id"}
    for location_type, offerings in catalogue.items():
        assert isinstance(offerings, OfferingsByRegion)
        own = load_resource(f"ec2/resources/instance_type_offerings/{location_type}/eu-west-3.json")
        assert offerings["eu-west-3"] == [{**offering, "LocationType": location_type} for offering in own]
        assert offerings.get("nowhere-1") is None
        assert "us-east-1" in offerings
        assert len(offerings) == 30


def test_launches_and_offerings_are_answered_and_refused_as_before() -> None:
    # Given moto's offerings deferred
    defer_instance_type_offerings()
    with mock_aws():
        ec2 = boto3.client("ec2", region_name="eu-west-3")
        image = ec2.describe_images()["Images"][0]["ImageId"]
        # When an instance is launched in a zone of the Region, of a type offered there
        launched = ec2.run_instances(
            ImageId=image,
            MinCount=1,
            MaxCount=1,
            InstanceType="t3.micro",
            Placement={"AvailabilityZone": "eu-west-3a"},
        )
        # Then it runs there; a zone of another Region is refused as moto refuses it
        assert launched["Instances"][0]["Placement"]["AvailabilityZone"] == "eu-west-3a"
        with pytest.raises(ClientError, match="InvalidParameterValue"):
            ec2.run_instances(
                ImageId=image, MinCount=1, MaxCount=1, Placement={"AvailabilityZone": "us-east-1a"}
            )
        # and the offerings asked for are the Region's
        offered = ec2.describe_instance_type_offerings(
            LocationType="availability-zone", Filters=[{"Name": "instance-type", "Values": ["t3.micro"]}]
        )["InstanceTypeOfferings"]
        assert {offering["Location"] for offering in offered} == {"eu-west-3a", "eu-west-3b", "eu-west-3c"}


def test_the_local_aws_reads_no_instance_type_catalogue_until_asked_for() -> None:
    # Given a fresh process that loads the local AWS's modules (moto's EC2 models among them)
    probe = """
import json, sys, vtriage_local.stack
from moto.batch import models as batch
from moto.utilities.utils import load_resource
catalogue = sys.modules["moto.ec2.models.instance_types"]
unread = {kind: dict.__len__(offerings) for kind, offerings in catalogue.INSTANCE_TYPE_OFFERINGS.items()}
unread["types"] = dict.__len__(catalogue.INSTANCE_TYPES)
unread["families"] = list.__len__(catalogue.INSTANCE_FAMILIES)
own = load_resource("ec2/resources/instance_types.json")
print(json.dumps({
    "unread": unread,
    "types": catalogue.INSTANCE_TYPES == own,
    "families": sorted(catalogue.INSTANCE_FAMILIES) == sorted({name.split(".")[0] for name in own}),
    "batch_families": "t3" in batch.EC2_INSTANCE_FAMILIES and "nope" not in batch.EC2_INSTANCE_FAMILIES,
    "described": [
        {key: kind[key] for key in own["t3.micro"]}
        for kind in catalogue.InstanceTypeBackend().describe_instance_types(["t3.micro"])
    ] == [own["t3.micro"]],
}))
"""
    shown = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    found = json.loads(shown)
    # Then nothing of the catalogue was read as it loaded
    assert found["unread"] == {
        "region": 0,
        "availability-zone": 0,
        "availability-zone-id": 0,
        "types": 0,
        "families": 0,
    }
    # and once asked for, the instance types, their families (Batch's among them) and what
    # DescribeInstanceTypes answers are moto's own
    assert found["types"] is True
    assert found["families"] is True
    assert found["batch_families"] is True
    assert found["described"] is True


# Eight threads allocating at once, as moto's engine threads do, then glibc's own account of its arenas
# (malloc_info's XML: one <heap> element an arena).
_ARENAS_PROBE = """
import ctypes, json, os, sys, tempfile, threading
from vtriage_local.moto_memory import one_malloc_arena
applied = one_malloc_arena() if sys.argv[1] == "one" else None
barrier = threading.Barrier(8)
held = []
def allocate():
    barrier.wait()
    held.append([bytearray(4096) for _ in range(200)])
threads = [threading.Thread(target=allocate) for _ in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
libc = ctypes.CDLL(None)
libc.fopen.restype = ctypes.c_void_p
libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
libc.fclose.argtypes = [ctypes.c_void_p]
with tempfile.TemporaryDirectory() as folder:
    path = os.path.join(folder, "arenas.xml").encode()
    stream = libc.fopen(path, b"w")
    libc.malloc_info(0, stream)
    libc.fclose(stream)
    with open(path, encoding="utf-8") as written:
        info = written.read()
print(json.dumps({"applied": applied, "arenas": info.count("<heap nr=")}))
"""


def _arenas_after_eight_threads(arenas: str) -> dict[str, Any]:
    shown = subprocess.run(
        [sys.executable, "-c", _ARENAS_PROBE, arenas], capture_output=True, text=True, check=True
    ).stdout
    return dict(json.loads(shown))


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc arenas")
def test_threads_allocate_from_one_arena_once_asked() -> None:
    # Given fresh processes in which eight threads allocate at once, one as glibc starts, one after the
    # runner asked for one arena
    alone = _arenas_after_eight_threads("glibc's own")
    asked = _arenas_after_eight_threads("one")
    # Then glibc alone made the threads arenas of their own; asked, it made none but its main arena
    assert alone["arenas"] > 1
    assert asked == {"applied": True, "arenas": 1}
