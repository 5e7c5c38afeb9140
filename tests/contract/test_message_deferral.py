"""`MessageDeferral`: the in-memory deferral and SQS on moto, with the template's alert queue, queue a
fresh copy of a record with its attributes, and hide a received one for a while."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from tests.contract.conftest import IN_MEMORY, client, drain, emptied, string_attributes
from vtriage.adapters.quota import SqsMessageDeferral
from vtriage.fakes import FakeMessageDeferral
from vtriage.ports import MessageDeferral


@dataclass(frozen=True)
class Deferral:
    """The deferral under test, and the copies the queue delivers once their delay has passed."""

    deferral: MessageDeferral
    delivered: Callable[[], list[tuple[str, dict[str, str]]]]


@pytest.fixture
def deferral(implementation: str, request: pytest.FixtureRequest) -> Deferral:
    if implementation == IN_MEMORY:
        fake = FakeMessageDeferral()
        return Deferral(fake, lambda: [(copy.body, copy.attributes) for copy in fake.requeued])
    aws = emptied(request.getfixturevalue("aws"), "AlertQueue")
    sqs, url = client(aws, "sqs"), aws.ref("AlertQueue")
    return Deferral(
        SqsMessageDeferral(sqs, url),
        lambda: [(message["Body"], string_attributes(message)) for message in drain(sqs, url)],
    )


def test_a_requeued_record_comes_back_with_its_body_and_attributes(deferral: Deferral) -> None:
    # Given a record deferred by the quota, with the attributes of the channel it came through
    body = '{"detail-type": "GuardDuty Finding"}'
    attributes = {"vtriage_deferrals": "2", "vtriage_sender": "arn:aws:iam::123456789012:role/edr"}

    # When a fresh copy is queued with no delay
    deferral.deferral.requeue(body, attributes, 0)

    # Then the queue delivers the copy as it was
    assert deferral.delivered() == [(body, attributes)]
