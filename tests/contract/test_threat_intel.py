"""`ThreatIntel`: the in-memory intel and the VirusTotal client, over HTTP against the replay server
(`vtriage_local.replay`, VirusTotal API v3's paths, headers and errors on loopback) serving the bundled
recordings, answer an IOC of each type with its object as VirusTotal keeps it, an unknown one with
None, never look up an IOC kept as skipped, and end a lookup by its deadline.

The in-memory intel holds the same recordings' `data` objects, as a unit test gives it a fixture's.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from tests.contract.conftest import IN_MEMORY, OVER_HTTP
from vtriage.adapters.virustotal import VirusTotalClient
from vtriage.fakes import FakeThreatIntel
from vtriage.models import Ioc, IocType
from vtriage.ports import ThreatIntel
from vtriage.virustotal.errors import VirusTotalUnavailableError
from vtriage_local.replay import ReplayServer, bundled_recordings

API_KEY = "contract-replay-key"
# One real recording of each type (local/vtriage_local/recordings/PROVENANCE.md), by the IOC it answers.
RECORDED = {
    Ioc(type=IocType.DOMAIN, value="tawuhoju.com", found_at="service.action"): "domains/tawuhoju.com.json",
    Ioc(type=IocType.IP, value="23.129.64.215", found_at="service.action"): "ip_addresses/23.129.64.215.json",
    Ioc(type=IocType.URL, value="http://soclosebutyetqq.com/69.exe", found_at="service.action"): (
        "urls/7d83e9f686ff0122ded311f27aababf6922800a45a23a4dacc860b56ccada4cb.json"
    ),
    Ioc(
        type=IocType.FILE,
        value="4bc00f7d638e042da764e8648c03c0db46700599dd4f08d117e3e9e8b538519b",
        found_at="service.action",
    ): "files/4bc00f7d638e042da764e8648c03c0db46700599dd4f08d117e3e9e8b538519b.json",
}
# IOCs of each type no recording answers (documentation addresses and names, a hash of nothing).
UNKNOWN = [
    Ioc(type=IocType.DOMAIN, value="never-seen.example", found_at="service.action"),
    Ioc(type=IocType.IP, value="192.0.2.44", found_at="service.action"),
    Ioc(type=IocType.URL, value="http://never-seen.example/x.exe", found_at="service.action"),
    Ioc(
        type=IocType.FILE,
        value="e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        found_at="service.action",
    ),
]


@pytest.fixture(params=OVER_HTTP)
def implementation(request: pytest.FixtureRequest) -> str:
    """In memory, or the VirusTotal client against the replay server on loopback."""
    return str(request.param)


@dataclass(frozen=True)
class Intel:
    """The intel under test; the requests it sent to VirusTotal so far; a way to make VirusTotal hold
    its next answer longer than any lookup waits (what the in-memory intel never does)."""

    intel: ThreatIntel
    sent: Callable[[], int]
    hold_next_answer: Callable[[], None]


def recorded_object(ioc: Ioc) -> dict[str, Any]:
    """The `data` object VirusTotal answered for the IOC, as recorded."""
    document = json.loads((bundled_recordings() / RECORDED[ioc]).read_text(encoding="utf-8"))
    data: dict[str, Any] = document["data"]
    return data


@pytest.fixture
def intel(implementation: str) -> Iterator[Intel]:
    if implementation == IN_MEMORY:
        fake = FakeThreatIntel({ioc.key: recorded_object(ioc) for ioc in RECORDED})
        yield Intel(fake, lambda: len(fake.lookups), lambda: None)
        return
    with ReplayServer(bundled_recordings(), api_key=API_KEY) as replay, requests.Session() as session:
        client = VirusTotalClient(session, API_KEY, replay.base_url)
        yield Intel(client, lambda: replay.request_count, lambda: replay.fail_next("timeout"))


def test_a_known_ioc_of_each_type_answers_its_object_as_virustotal_keeps_it(intel: Intel) -> None:
    # Given an IOC of each type that VirusTotal knows
    for ioc in RECORDED:
        # When it is looked up
        found = intel.intel.lookup(ioc)

        # Then the answer is VirusTotal's object for it, whole
        assert found == recorded_object(ioc), ioc.key


def test_an_ioc_virustotal_never_saw_answers_none(intel: Intel) -> None:
    # Given IOCs of each type that VirusTotal has never seen, When each is looked up, Then none is found
    assert [intel.intel.lookup(ioc) for ioc in UNKNOWN] == [None] * len(UNKNOWN)


def test_an_ioc_kept_as_skipped_is_never_looked_up(intel: Intel) -> None:
    # Given a known IOC, kept on its case as skipped (an allow-listed value)
    ioc = next(iter(RECORDED)).model_copy(update={"skipped_reason": "on the IOC allow list"})

    # When it is looked up, Then the lookup is refused and nothing was asked of VirusTotal
    with pytest.raises(ValueError, match="is never looked up"):
        intel.intel.lookup(ioc)
    assert intel.sent() == 0


def test_a_lookup_ends_by_its_deadline_whatever_virustotal_does(intel: Intel) -> None:
    # Given VirusTotal holding its next answer longer than a lookup may wait, and a deadline 5 s away
    intel.hold_next_answer()
    deadline = time.monotonic() + 5

    # When a known IOC is looked up with that deadline
    ioc = next(iter(RECORDED))
    outcome: object
    try:
        outcome = intel.intel.lookup(ioc, deadline)
    except VirusTotalUnavailableError as error:
        outcome = error

    # Then the lookup is over by then: answered, or given up as VirusTotal unavailable (worth a retry)
    assert time.monotonic() <= deadline
    assert outcome == recorded_object(ioc) or isinstance(outcome, VirusTotalUnavailableError)
