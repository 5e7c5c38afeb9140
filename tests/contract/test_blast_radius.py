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


def capped(
    implementation: str, request: pytest.FixtureRequest, clock: Clock, max_per_hour: int
) -> BlastRadius:
    """The implementation under test, with a cap of `max_per_hour` actions an hour."""
    if implementation == IN_MEMORY:
        return FakeBlastRadius(max_per_hour, clock)
    aws = emptied(request.getfixturevalue("aws"), "GuardrailsTable")
    return DynamoBlastRadius(client(aws, "dynamodb"), aws.ref("GuardrailsTable"), max_per_hour, clock)


@pytest.fixture
def radius(implementation: str, request: pytest.FixtureRequest, clock: Clock) -> BlastRadius:
    return capped(implementation, request, clock, MAX_PER_HOUR)


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


def test_a_cap_of_zero_gives_no_action_at_all(
    implementation: str, request: pytest.FixtureRequest, clock: Clock
) -> None:
    # Given a cap of 0 actions an hour (MaxActionsPerHour=0: every action that changes something waits
    # for a person), in an hour nothing has been taken yet
    radius = capped(implementation, request, clock, 0)

    # When actions are asked for, this hour and the next
    taken = [radius.acquire(), radius.acquire()]
    clock.advance(timedelta(hours=1))
    taken.append(radius.acquire())

    # Then none is given: the first of an hour is no exception
    assert taken == [False, False, False]
