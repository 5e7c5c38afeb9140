"""The local AWS answers botocore's requests in process (vtriage_local.loopback) exactly as its HTTP server
answers them: the same calls, made once through the in-process hook and once over loopback HTTP, give
the same answers, errors, binary bodies and other accounts included."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import boto3
import pytest
from moto.core.models import botocore_stubber
from moto.stepfunctions.parser.asl.utils.boto_client import boto_client_for

from tests.functional.conftest import answer_to
from vtriage_local.stack import REGION, LocalAws

Call = Callable[[Callable[[str], Any]], Any]


def _over_http(aws: LocalAws) -> Callable[[str], Any]:
    """Clients of the local AWS whose requests go over its HTTP server: without moto's botocore hook."""

    def make(service: str) -> Any:
        made = aws.client(service)
        made.meta.events.unregister("before-send", botocore_stubber)
        return made

    return make


CALLS: dict[str, Call] = {
    "a table described": lambda client: client("dynamodb").describe_table(TableName=_table_name()),
    "an item written and read": lambda client: (
        client("dynamodb").put_item(
            TableName=_table_name(),
            Item={"case_id": {"S": "loopback"}, "blob": {"B": b"\x00\xff"}, "n": {"N": "1.5"}},
        ),
        client("dynamodb").get_item(TableName=_table_name(), Key={"case_id": {"S": "loopback"}}),
    )[1],
    # Each call makes the state it needs: under pytest-xdist another worker may run the others.
    "a refused conditional write": lambda client: (
        client("dynamodb").put_item(TableName=_table_name(), Item={"case_id": {"S": "written-first"}}),
        client("dynamodb").put_item(
            TableName=_table_name(),
            Item={"case_id": {"S": "written-first"}},
            ConditionExpression="attribute_not_exists(case_id)",
        ),
    )[1],
    "a missing table": lambda client: client("dynamodb").get_item(
        TableName="no-such-table", Key={"case_id": {"S": "x"}}
    ),
    "a binary object written and read back": lambda client: (
        client("s3").create_bucket(Bucket="vtriage-loopback"),
        client("s3").put_object(Bucket="vtriage-loopback", Key="k", Body=bytes(range(256))),
        client("s3").get_object(Bucket="vtriage-loopback", Key="k")["Body"].read(),
    )[2],
    "a missing object": lambda client: client("s3").head_object(Bucket="vtriage-loopback", Key="none"),
    "instances described (EC2's query protocol)": lambda client: sorted(
        instance["State"]["Name"]
        for reservation in client("ec2").describe_instances()["Reservations"]
        for instance in reservation["Instances"]
    ),
    "who this is": lambda client: client("sts").get_caller_identity()["Account"],
}

_TABLE: list[str] = []


def _table_name() -> str:
    return _TABLE[0]


@pytest.fixture(scope="module")
def aws() -> Any:
    with LocalAws() as local:
        _TABLE[:] = [local.ref("CasesTable")]
        yield local


@pytest.mark.parametrize("name", list(CALLS))
def test_a_call_answered_in_process_gives_what_the_http_server_gives(aws: LocalAws, name: str) -> None:
    # Given a call, and clients of the local AWS through the in-process hook and over HTTP
    call = CALLS[name]

    # When the call is made through each (the HTTP one first: the in-process one then meets its effects)
    over_http = answer_to(call, _over_http(aws))
    in_process = answer_to(call, aws.client)

    # Then both answers are the same
    assert in_process == over_http


def _connections_refused(aws: LocalAws, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Make the local AWS's HTTP server refuse every connection from now on; the list notes each one."""
    server = aws._server._server  # type: ignore[union-attr]
    assert server is not None
    connections: list[Any] = []

    def refuse(*args: Any) -> bool:
        connections.append(args)
        return False

    monkeypatch.setattr(server, "verify_request", refuse)
    return connections


def test_clients_made_as_the_handlers_make_them_are_answered_without_the_http_server(
    aws: LocalAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the HTTP server refusing every connection from now on, and noting each one
    connections = _connections_refused(aws, monkeypatch)

    # When a handler's kind of client (boto3's default session, AWS_ENDPOINT_URL) makes calls
    tables = boto3.client("dynamodb").list_tables()["TableNames"]
    queues = boto3.client("sqs").list_queues().get("QueueUrls", [])

    # Then they are answered, and no connection reached the server
    assert aws.ref("CasesTable") in tables
    assert aws.ref("AlertQueue") in queues
    assert connections == []


def test_the_state_machine_engines_clients_are_answered_without_the_http_server(
    aws: LocalAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the HTTP server refusing every connection from now on, and noting each one
    connections = _connections_refused(aws, monkeypatch)

    # When a client made as moto's Step Functions engine makes it for a task (the server's port, named
    # localhost) calls DynamoDB
    port = aws.endpoint_url.rsplit(":", 1)[-1]
    engine_client: Any = boto_client_for(REGION, "dynamodb")
    tables = engine_client.list_tables()["TableNames"]

    # Then it is answered, and no connection reached the server
    assert engine_client.meta.endpoint_url == f"http://localhost:{port}"
    assert aws.ref("CasesTable") in tables
    assert connections == []
