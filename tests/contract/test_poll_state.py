"""`PollState`: the in-memory state and the DynamoDB one on the template's guardrails table keep a poller's
cursor, never moving it back, and let one poll at a time claim an alert, queued once until forgotten."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.contract.conftest import IN_MEMORY, NOW, client, emptied
from vtriage.adapters.poll_state import DynamoPollState
from vtriage.fakes import InMemoryPollState
from vtriage.ports import POLL_CLAIM_LEASE, PollState

# A composite id as CrowdStrike writes it: long, with colons.
ALERT = "92012896127c4a8236ba7601b886b0:ind:2ce412d17b334ad4adc8c1c54dbfec4b:13:02931d61-1bd6"


@pytest.fixture
def state(implementation: str, request: pytest.FixtureRequest) -> PollState:
    if implementation == IN_MEMORY:
        return InMemoryPollState()
    aws = emptied(request.getfixturevalue("aws"), "GuardrailsTable")
    return DynamoPollState(client(aws, "dynamodb"), aws.ref("GuardrailsTable"))


def test_a_cursor_is_kept_per_source_to_the_microsecond_and_never_moves_back(state: PollState) -> None:
    # Given no cursor yet
    assert state.cursor("falcon") is None

    # When the Falcon cursor moves to a time with microseconds, then back an hour
    moment = NOW.replace(microsecond=123456)
    state.advance("falcon", moment)
    state.advance("falcon", moment - timedelta(hours=1))

    # Then it stays at the later time, and the Workspace poller's is another
    assert state.cursor("falcon") == moment
    assert state.cursor("workspace") is None

    # When it moves forward by a microsecond, Then it follows
    state.advance("falcon", moment + timedelta(microseconds=1))
    assert state.cursor("falcon") == moment + timedelta(microseconds=1)


def test_an_alert_is_claimed_by_one_poll_and_once_queued_by_none_until_forgotten(state: PollState) -> None:
    # When two polls claim the same alert
    first = state.claim("falcon", ALERT, NOW)
    second = state.claim("falcon", ALERT, NOW)

    # Then the first holds it, the second is told it is held
    assert (first, second) == ("claimed", "held")

    # When the first queued it, Then every later claim is told it is queued, until it is forgotten
    state.mark_queued("falcon", ALERT, "message-1", until=NOW + timedelta(days=7))
    assert state.claim("falcon", ALERT, NOW + POLL_CLAIM_LEASE * 2) == "queued"
    assert state.claim("falcon", ALERT, NOW + timedelta(days=7, seconds=1)) == "claimed"
    # And the same id from the other source is another alert
    assert state.claim("workspace", ALERT, NOW) == "claimed"


def test_a_released_claim_and_a_claim_whose_lease_passed_are_claimed_again(state: PollState) -> None:
    # Given an alert claimed then released (its queueing failed)
    assert state.claim("falcon", ALERT, NOW) == "claimed"
    state.release("falcon", ALERT)

    # Then the next poll claims it
    assert state.claim("falcon", ALERT, NOW) == "claimed"

    # When the poll holding it dies, Then it is held until the lease passes, and then taken over
    assert state.claim("falcon", ALERT, NOW + POLL_CLAIM_LEASE - timedelta(seconds=1)) == "held"
    assert state.claim("falcon", ALERT, NOW + POLL_CLAIM_LEASE) == "claimed"


def test_releasing_a_queued_alert_keeps_it_queued(state: PollState) -> None:
    # Given an alert queued
    assert state.claim("falcon", ALERT, NOW) == "claimed"
    state.mark_queued("falcon", ALERT, "message-1", until=NOW + timedelta(days=7))

    # When it is released (a late failure), Then it still counts as queued
    state.release("falcon", ALERT)
    assert state.claim("falcon", ALERT, NOW) == "queued"
