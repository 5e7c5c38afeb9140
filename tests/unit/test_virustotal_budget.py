"""The VirusTotal client's retry budget against a deadline, on a transport that never answers in time
and a clock the test moves: no network, no waiting."""

from __future__ import annotations

import random
from typing import Any

import pytest
import requests
import requests.adapters

from vtriage.adapters.virustotal import MIN_READ_SECONDS, VirusTotalClient
from vtriage.config.virustotal import DEFAULT_VT_BASE_URL
from vtriage.models import Ioc, IocType
from vtriage.virustotal.errors import VirusTotalUnavailableError

CONNECT_S, READ_S = 3.05, 10.0


class Clock:
    """A `time.monotonic` and a `time.sleep` that only move the hands."""

    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class NeverAnswers(requests.adapters.BaseAdapter):
    """A transport on which every request waits out its whole timeout, then times out."""

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self._clock = clock
        self.timeouts: list[tuple[float, float]] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        connect, read = kwargs["timeout"]
        self.timeouts.append((connect, read))
        self._clock.now += connect + read
        raise requests.ReadTimeout("read timed out")

    def close(self) -> None:
        pass


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def transport(clock: Clock) -> NeverAnswers:
    return NeverAnswers(clock)


def _client(clock: Clock, transport: NeverAnswers) -> VirusTotalClient:
    session = requests.Session()
    session.mount("https://", transport)
    return VirusTotalClient(
        session,
        "k3y",
        DEFAULT_VT_BASE_URL,
        timeout=(CONNECT_S, READ_S),
        max_attempts=4,
        backoff_cap=8.0,
        sleep=clock.sleep,
        clock=clock,
        rng=random.Random(7),
    )


DOMAIN = Ioc(type=IocType.DOMAIN, value="tawuhoju.com", found_at="detail.service.action")


def test_without_a_deadline_a_lookup_spends_every_attempt_and_back_off_which_issue_9_measured_over_a_minute(
    clock: Clock, transport: NeverAnswers
) -> None:
    # Given VirusTotal never answering, and a lookup given no deadline
    client = _client(clock, transport)
    started = clock.now

    # When the IOC is looked up, Then it fails as VirusTotal being unavailable
    with pytest.raises(VirusTotalUnavailableError):
        client.lookup(DOMAIN)

    # after four whole attempts of 3.05 + 10 s and three back-offs of up to 8 s: up to 76 s, more than the
    # enrich function's 60 s, which is why production passes a deadline
    assert transport.timeouts == [(CONNECT_S, READ_S)] * 4
    assert 4 * 13.05 < clock.now - started <= 4 * 13.05 + 3 * 8 + 1e-9


def test_a_lookup_given_a_deadline_cuts_its_retries_and_its_last_read_to_end_by_it(
    clock: Clock, transport: NeverAnswers
) -> None:
    # Given VirusTotal never answering, and a lookup that must be over 25 s from now
    client = _client(clock, transport)
    deadline = clock.now + 25

    # When the IOC is looked up, Then it fails as VirusTotal being unavailable (a retry later may work)
    with pytest.raises(VirusTotalUnavailableError):
        client.lookup(DOMAIN, deadline)

    # and it ended by the deadline: the second attempt's read was cut to the time left, and no third was
    # sent, although four are allowed
    assert clock.now <= deadline + 1e-9
    [first, second] = transport.timeouts
    assert first == (CONNECT_S, READ_S)
    assert second[0] == CONNECT_S
    assert MIN_READ_SECONDS <= second[1] < READ_S


def test_with_too_little_time_left_for_one_attempt_nothing_is_sent(
    clock: Clock, transport: NeverAnswers
) -> None:
    # Given a deadline closer than a connection and the shortest read
    client = _client(clock, transport)

    # When the IOC is looked up, Then no request is sent and the answer says why
    with pytest.raises(VirusTotalUnavailableError, match="too little time left"):
        client.lookup(DOMAIN, clock.now + CONNECT_S + MIN_READ_SECONDS / 2)
    assert (transport.timeouts, client.requests_sent) == ([], 0)
