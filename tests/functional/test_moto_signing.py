"""The local AWS's requests carry no computed signature (vtriage_local.moto_speedups.signed_for_moto), and
moto answers them exactly as it answers requests botocore signs: the same calls, made once with each, in
the own account and a member account, in two Regions, over each protocol the functions use."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

import pytest
from botocore.auth import SigV4Auth

from tests.functional.conftest import answer_to
from vtriage_local.moto_speedups import UNCHECKED_SIGNATURE
from vtriage_local.stack import ACCOUNT_ID, LocalAws

pytestmark = pytest.mark.functional

# botocore's own signer, read as this module is imported, before any local AWS patches it.
BOTOCORE_SIGNS = SigV4Auth.add_auth
MEMBER = "210987654321"
OTHER_REGION = "eu-west-1"

Call = Callable[[LocalAws], Any]


def _queues(aws: LocalAws, account: str = ACCOUNT_ID) -> list[str]:
    urls = aws.client("sqs", account=account).list_queues().get("QueueUrls", [])
    return sorted(url.rsplit("/", 2)[-2] + "/" + url.rsplit("/", 1)[-1] for url in urls)


CALLS: dict[str, Call] = {
    "who this is (query protocol, STS)": lambda aws: aws.client("sts").get_caller_identity()["Account"],
    "who this is in a member account, through its role": lambda aws: aws.client(
        "sts", account=MEMBER
    ).get_caller_identity()["Account"],
    "the queues of each account (JSON protocol, SQS)": lambda aws: (_queues(aws), _queues(aws, MEMBER)),
    "the tables of each Region (DynamoDB)": lambda aws: (
        aws.client("dynamodb").list_tables()["TableNames"],
        aws.client("dynamodb", region=OTHER_REGION).list_tables()["TableNames"],
    ),
    "the functions (REST protocol, Lambda)": lambda aws: sorted(
        function["FunctionName"] for function in aws.client("lambda").list_functions()["Functions"]
    ),
    "instances described (EC2)": lambda aws: aws.client("ec2").describe_instances()["Reservations"],
    "a refusal": lambda aws: aws.client("dynamodb").get_item(TableName="no-such", Key={"k": {"S": "x"}}),
}


@pytest.fixture(scope="module")
def aws() -> Iterator[LocalAws]:
    with LocalAws(parameters={"MemberAccountIds": MEMBER}) as local:
        local.deploy_member_roles()
        local.client("sqs", account=MEMBER).create_queue(QueueName="member-queue")
        local.client("dynamodb", region=OTHER_REGION).create_table(
            TableName="elsewhere",
            KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield local


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


@contextmanager
def _signed_by_botocore() -> Iterator[None]:
    with mock.patch.object(SigV4Auth, "add_auth", BOTOCORE_SIGNS):
        yield


@pytest.mark.parametrize("name", list(CALLS))
def test_moto_answers_an_unsigned_request_as_a_signed_one(aws: LocalAws, name: str) -> None:
    # Given a call to the local AWS
    call = CALLS[name]

    # When it is made with botocore's signature and with none computed
    with _signed_by_botocore():
        signed = answer_to(call, aws)
    unsigned = answer_to(call, aws)

    # Then moto gives both the same answer
    assert unsigned == signed


def test_a_request_to_the_local_aws_carries_the_credentials_scope_and_no_signature(aws: LocalAws) -> None:
    # Given a client of a member account (temporary credentials, through its role) in another Region
    client = aws.client("sqs", region=OTHER_REGION, account=MEMBER)
    sent: list[dict[str, str]] = []
    client.meta.events.register(
        "before-send",
        lambda request, **_: sent.append({name: _text(value) for name, value in request.headers.items()}),
    )

    # When it makes a call, and the same call is made signed by botocore
    client.list_queues()
    with _signed_by_botocore():
        client.list_queues()

    # Then both requests name the same access key, scope and signed headers, with the session token;
    # only botocore's carries a signature
    unsigned, signed = (headers["Authorization"].split(", ") for headers in sent)
    assert unsigned[:2] == signed[:2]
    assert f"/{OTHER_REGION}/sqs/aws4_request" in unsigned[0]
    assert unsigned[2] == f"Signature={UNCHECKED_SIGNATURE}"
    assert signed[2] != unsigned[2]
    assert sent[0]["X-Amz-Security-Token"] == sent[1]["X-Amz-Security-Token"]
