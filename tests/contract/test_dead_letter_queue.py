"""`DeadLetterQueue`: the in-memory queue and SQS on moto, with the template's dead-letter queue, park a
refused record's body with the reason, the message it came in and the refused finding's place and id."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from tests.contract.conftest import IN_MEMORY, client, drain, emptied, string_attributes
from vtriage.adapters.sqs import SqsDeadLetterQueue
from vtriage.fakes import FakeDeadLetterQueue, RecordedFailure
from vtriage.ports import DeadLetterQueue


@dataclass(frozen=True)
class Parking:
    """The queue under test, and what an operator finds parked in it."""

    queue: DeadLetterQueue
    parked: Callable[[], list[RecordedFailure]]


@pytest.fixture
def parking(implementation: str, request: pytest.FixtureRequest) -> Parking:
    if implementation == IN_MEMORY:
        fake = FakeDeadLetterQueue()
        return Parking(fake, lambda: list(fake.sent))
    aws = emptied(request.getfixturevalue("aws"), "AlertDeadLetterQueue")
    sqs, url = client(aws, "sqs"), aws.ref("AlertDeadLetterQueue")

    def parked() -> list[RecordedFailure]:
        found = []
        for message in drain(sqs, url):
            attributes = string_attributes(message)
            found.append(
                RecordedFailure(
                    message_id=attributes["vtriage_message_id"],
                    reason=attributes["vtriage_reason"],
                    body=message["Body"],
                    where=attributes.get("vtriage_where", ""),
                    alert_id=attributes.get("vtriage_alert_id"),
                )
            )
        return found

    return Parking(SqsDeadLetterQueue(sqs, url), parked)


def test_a_refused_record_is_parked_with_its_body_and_reason(parking: Parking) -> None:
    # Given a record refused whole
    body = '{"detail-type": "GuardDuty Finding", "detail": "not an object"}'

    # When it is parked
    parking.queue.send("message-1", body, "detail: not an object")

    # Then its body is parked unchanged, with the reason and the message it came in
    assert parking.parked() == [RecordedFailure("message-1", "detail: not an object", body)]


def test_a_finding_refused_alone_is_parked_with_its_place_and_id(parking: Parking) -> None:
    # Given one finding of a record refused alone
    body = '{"detail": {"findings": [{"Id": "finding-0"}, {"Id": "finding-1"}]}}'

    # When it is parked
    parking.queue.send("message-2", body, "no resource", where="detail.findings[1]", alert_id="finding-1")

    # Then the whole body is parked, naming the finding's place in it and its id
    assert parking.parked() == [
        RecordedFailure("message-2", "no resource", body, "detail.findings[1]", "finding-1")
    ]
