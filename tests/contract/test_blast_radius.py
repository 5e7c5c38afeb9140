"""`BlastRadius`: the in-memory counter and the DynamoDB one on the template's guardrails table give the
same number of actions each clock hour."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.contract.conftest import IN_MEMORY, Clock, client, emptied
from vtriage.adapters.guardrails import DynamoBlastRadius
from vtriage.fakes import FakeBlastRadius
from vtriage.ports import BlastRadius

MAX_PER_HOUR = 3


@pytest.fixture
def radius(implementation: str, request: pytest.FixtureRequest, clock: Clock) -> BlastRadius:
    if implementation == IN_MEMORY:
        return FakeBlastRadius(MAX_PER_HOUR, clock)
    aws = emptied(request.getfixturevalue("aws"), "GuardrailsTable")
    return DynamoBlastRadius(client(aws, "dynamodb"), aws.ref("GuardrailsTable"), MAX_PER_HOUR, clock)


def test_an_hour_gives_its_actions_then_none_until_the_next_hour(radius: BlastRadius, clock: Clock) -> None:
    # Given a cap of 3 actions an hour, at 12:00:30
    # When 4 actions are asked for within the hour
    taken = [radius.acquire() for _ in range(MAX_PER_HOUR + 1)]
    clock.advance(timedelta(minutes=59))
    late = radius.acquire()

    # Then the first 3 are given and the others refused
    assert taken == [True] * MAX_PER_HOUR + [False]
    assert not late

    # And at the next clock hour the cap gives actions again
    clock.advance(timedelta(minutes=1))
    assert radius.acquire()
