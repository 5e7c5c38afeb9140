"""`QuotaLimiter`: the in-memory limiter and the DynamoDB one on the template's quota table give the same
requests a minute and a day, refuse the same blocks, and say alike when the quota reopens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.contract.conftest import IN_MEMORY, Clock, client, emptied
from vtriage.adapters.quota import DynamoQuotaLimiter
from vtriage.errors import QuotaExhaustedError
from vtriage.fakes import FakeQuotaLimiter
from vtriage.ports import QuotaLimiter

PER_MINUTE, PER_DAY = 4, 6


@pytest.fixture
def limiter(implementation: str, request: pytest.FixtureRequest, clock: Clock) -> QuotaLimiter:
    if implementation == IN_MEMORY:
        return FakeQuotaLimiter(PER_MINUTE, PER_DAY, clock)
    aws = emptied(request.getfixturevalue("aws"), "QuotaTable")
    return DynamoQuotaLimiter(client(aws, "dynamodb"), aws.ref("QuotaTable"), PER_MINUTE, PER_DAY, clock)


def _refusal(limiter: QuotaLimiter, units: int = 1) -> QuotaExhaustedError:
    with pytest.raises(QuotaExhaustedError) as refused:
        limiter.acquire(units)
    return refused.value


def test_a_minute_gives_its_requests_then_refuses_until_the_next_minute(
    limiter: QuotaLimiter, clock: Clock
) -> None:
    # Given a quota of 4 requests a minute, When 4 are taken in one minute
    for _ in range(PER_MINUTE):
        limiter.acquire()

    # Then the fifth is refused, naming the minute and when it ends
    refused = _refusal(limiter)
    assert refused.window == "minute"
    assert refused.retry_at == datetime(2026, 11, 26, 12, 1, tzinfo=UTC)

    # And the next minute gives requests again
    clock.advance(timedelta(minutes=1))
    limiter.acquire()


def test_a_block_that_does_not_fit_is_refused_whole_and_spends_nothing(limiter: QuotaLimiter) -> None:
    # Given 3 of the minute's 4 requests taken
    limiter.acquire(3)

    # When a block of 2 is asked for, Then it is refused, and the one request left is still there
    assert _refusal(limiter, 2).window == "minute"
    limiter.acquire(1)
    assert _refusal(limiter, 1).window == "minute"


def test_the_day_refuses_beyond_its_requests_until_midnight_utc(limiter: QuotaLimiter, clock: Clock) -> None:
    # Given a day of 6 requests, 4 taken this minute and 2 the next
    limiter.acquire(4)
    clock.advance(timedelta(minutes=1))
    limiter.acquire(2)

    # When one more is asked for in a later minute
    clock.advance(timedelta(minutes=1))
    refused = _refusal(limiter)

    # Then the day refuses it until 00:00 UTC, and the next day gives requests again
    assert refused.window == "day"
    assert refused.retry_at == datetime(2026, 11, 27, tzinfo=UTC)
    clock.advance(timedelta(days=1))
    limiter.acquire(PER_MINUTE)


def test_a_block_larger_than_a_minute_gives_is_refused_by_the_minute(limiter: QuotaLimiter) -> None:
    # Given a fresh quota, When more requests than a minute gives are asked for at once
    refused = _refusal(limiter, PER_MINUTE + 1)

    # Then the minute refuses them, and nothing was spent
    assert refused.window == "minute"
    limiter.acquire(PER_MINUTE)


def test_a_request_of_no_unit_is_a_programming_error(limiter: QuotaLimiter) -> None:
    # Given a limiter, When no unit is asked for, Then it is refused as an error of the caller
    with pytest.raises(ValueError, match="at least one unit"):
        limiter.acquire(0)
