"""`AlertQueue`: the in-memory queue and SQS on moto, with the template's pushed-alert queue, queue a
pushed alert's body unchanged with the attributes saying who sent it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from tests.contract.conftest import IN_MEMORY, client, drain, emptied, string_attributes
from vtriage.adapters.alert_queue import SqsAlertQueue
from vtriage.fakes import FakeAlertQueue
from vtriage.ports import AlertQueue


@dataclass(frozen=True)
class Queue:
    """The queue under test, and what the enrich function receives from it: (body, attributes)."""

    alerts: AlertQueue
    received: Callable[[], list[tuple[str, dict[str, str]]]]


@pytest.fixture
def queue(implementation: str, request: pytest.FixtureRequest) -> Queue:
    if implementation == IN_MEMORY:
        fake = FakeAlertQueue()
        return Queue(fake, lambda: list(zip(fake.bodies, fake.attributes, strict=True)))
    aws = emptied(request.getfixturevalue("aws"), "PushedAlertQueue")
    sqs, url = client(aws, "sqs"), aws.ref("PushedAlertQueue")
    return Queue(
        SqsAlertQueue(sqs, url),
        lambda: [(message["Body"], string_attributes(message)) for message in drain(sqs, url)],
    )


def test_a_pushed_alert_is_queued_unchanged_with_who_sent_it(queue: Queue) -> None:
    # Given two pushed alerts from one sender, one body not even JSON
    attributes = {
        "vtriage_sender": "arn:aws:iam::123456789012:role/edr-forwarder",
        "vtriage_source_ip": "198.51.100.7",
    }
    bodies = ['{"detail-type": "GuardDuty Finding", "detail": {}}', "not json \u202e at all"]

    # When both are sent
    ids = [queue.alerts.send(body, attributes) for body in bodies]

    # Then each has its own message id, and both arrive as sent
    assert len(set(ids)) == 2
    assert all(ids)
    assert sorted(queue.received()) == sorted((body, attributes) for body in bodies)
