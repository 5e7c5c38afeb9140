"""Contract tests: each port of `vtriage.ports` passes one set of assertions twice, against its in-memory
fake (`vtriage.fakes`) and against its adapter: an AWS adapter on moto, with the template's own tables,
queues, topics and state machine (`vtriage_local.stack.LocalAws`, as the functional tests build them), or
a vendor's adapter over HTTP against a loopback server answering as the vendor documents. A unit test on
a fake then proves what the adapter does. When the two disagree, the adapter is right and the fake
changes.

Deploying the template on moto takes seconds: the package shares one deployment, and each test that uses
it starts with its tables and queues emptied.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from vtriage_local.stack import LocalAws

IN_MEMORY = "in-memory"
ON_MOTO = "moto"
# Every contract test runs once per implementation; the moto run is a functional test.
IMPLEMENTATIONS = (
    pytest.param(IN_MEMORY, id=IN_MEMORY),
    pytest.param(ON_MOTO, id=ON_MOTO, marks=pytest.mark.functional),
)
# A port whose adapter talks to a vendor over HTTP runs it against a server on loopback that answers as
# the vendor documents (VirusTotal's replay server, a fake CrowdStrike or Google): functional too.
ON_LOOPBACK = "loopback"
OVER_HTTP = (
    pytest.param(IN_MEMORY, id=IN_MEMORY),
    pytest.param(ON_LOOPBACK, id=ON_LOOPBACK, marks=pytest.mark.functional),
)

# Half a minute into a minute, so that a test sees the minute and the hour turn over when it moves on.
NOW = datetime(2026, 11, 26, 12, 0, 30, tzinfo=UTC)
RETENTION = timedelta(days=90)


class Clock:
    """A clock a test moves by hand; both implementations of a port read the same one."""

    def __init__(self, at: datetime = NOW) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at

    def advance(self, by: timedelta) -> None:
        """Move the clock on."""
        self.at += by


@pytest.fixture
def clock() -> Clock:
    """A clock at NOW."""
    return Clock()


@pytest.fixture(params=IMPLEMENTATIONS)
def implementation(request: pytest.FixtureRequest) -> str:
    """Which implementation of the port this run tests: IN_MEMORY or ON_MOTO."""
    return str(request.param)


@pytest.fixture(scope="package")
def template_stack() -> Iterator[LocalAws]:
    """The template's resources on moto, deployed once for the package; executions are recorded, never
    run (nothing here needs the functions)."""
    with LocalAws(run_state_machines=False) as aws:
        yield aws


@pytest.fixture
def aws(template_stack: LocalAws) -> LocalAws:
    """The template's resources on moto, as the previous test left them: a test empties what it reads
    (`emptied`)."""
    return template_stack


def client(aws: LocalAws, service: str) -> Any:
    """A boto3 client of the stack, made once (a client takes a tenth of a second to make)."""
    key = (aws.endpoint_url, service)
    if key not in _CLIENTS:
        _CLIENTS[key] = aws.client(service)
    return _CLIENTS[key]


_CLIENTS: dict[tuple[str, str], Any] = {}


def emptied(aws: LocalAws, *logical_ids: str) -> LocalAws:
    """The stack with these tables and queues of the template emptied, so that a test starts from
    nothing there."""
    for logical_id in logical_ids:
        resource_type = aws.template["Resources"][logical_id]["Type"]
        if resource_type == "AWS::DynamoDB::Table":
            _empty_table(aws, logical_id)
        else:
            drain(client(aws, "sqs"), aws.ref(logical_id))
    return aws


@pytest.fixture(scope="package")
def _topic_inbox(template_stack: LocalAws) -> str:
    """A queue subscribed to the template's ticket and approval topics, as a person's mail would be."""
    sqs, sns = client(template_stack, "sqs"), client(template_stack, "sns")
    queue_url = str(sqs.create_queue(QueueName="contract-topic-inbox")["QueueUrl"])
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    for topic in ("TicketTopic", "ApprovalTopic"):
        sns.subscribe(TopicArn=template_stack.ref(topic), Protocol="sqs", Endpoint=queue_arn)
    return queue_url


@pytest.fixture
def published(aws: LocalAws, _topic_inbox: str) -> Callable[[str], list[dict[str, Any]]]:
    """What the template's topic of this logical id delivered to its subscribers since the test began:
    each notification's SNS envelope (`Message`, `Subject`, `MessageAttributes`), in the order received."""
    sqs = client(aws, "sqs")
    drain(sqs, _topic_inbox)

    def delivered(topic: str) -> list[dict[str, Any]]:
        envelopes = [json.loads(message["Body"]) for message in drain(sqs, _topic_inbox)]
        return [envelope for envelope in envelopes if envelope["TopicArn"] == aws.ref(topic)]

    return delivered


def _empty_table(aws: LocalAws, logical_id: str) -> None:
    dynamodb, table = client(aws, "dynamodb"), aws.ref(logical_id)
    schema = aws.template["Resources"][logical_id]["Properties"]["KeySchema"]
    keys = [key["AttributeName"] for key in schema]
    for page in dynamodb.get_paginator("scan").paginate(
        TableName=table,
        ProjectionExpression=", ".join(f"#{index}" for index in range(len(keys))),
        ExpressionAttributeNames={f"#{index}": key for index, key in enumerate(keys)},
    ):
        for item in page["Items"]:
            dynamodb.delete_item(TableName=table, Key={name: item[name] for name in keys})


def drain(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    """Every message the queue delivers now, with its attributes, each deleted once received (SQS allows
    one PurgeQueue a minute, too few for a test each)."""
    received: list[dict[str, Any]] = []
    while True:
        messages = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=10,
            MessageAttributeNames=["All"],
            VisibilityTimeout=30,
            # The template's queues wait for messages (long polling): a drain must not.
            WaitTimeSeconds=0,
        ).get("Messages", [])
        if not messages:
            return received
        for message in messages:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        received.extend(messages)


def string_attributes(message: dict[str, Any]) -> dict[str, str]:
    """A received SQS message's string attributes, by name."""
    return {name: value["StringValue"] for name, value in message.get("MessageAttributes", {}).items()}
