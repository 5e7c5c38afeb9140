"""The pollers' step (`vtriage.polling`) on the ports' fakes: what a poll queues, what it remembers, and
where its cursor stops whatever stops the poll."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import pytest

from vtriage.errors import TransientError
from vtriage.fakes import FakeAlertQueue, FakeAlertSource, InMemoryPollState
from vtriage.polling import SOURCE_ATTRIBUTE, Poller, PollOptions, alert_identity
from vtriage.ports import POLL_CLAIM_LEASE, PolledAlert

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
OPTIONS = PollOptions(
    first_window=timedelta(hours=24),
    overlap=timedelta(minutes=15),
    remember_for=timedelta(days=7),
    max_alerts=500,
)


def alert(number: int, minutes_ago: float, alert_id: str | None = None) -> PolledAlert:
    """A synthetic polled alert: its id, its creation time, its JSON text."""
    identity = f"alert-{number}" if alert_id is None else alert_id
    created = NOW - timedelta(minutes=minutes_ago)
    return PolledAlert(identity, created, json.dumps({"id": identity, "created": created.isoformat()}))


def poller(
    source: FakeAlertSource,
    state: InMemoryPollState | None = None,
    queue: FakeAlertQueue | None = None,
    options: PollOptions = OPTIONS,
) -> Poller:
    return Poller("falcon", source, state or InMemoryPollState(), queue or FakeAlertQueue(), options)


def test_the_first_poll_reads_back_the_first_window_and_queues_each_alert_unchanged() -> None:
    # Given three alerts of the last hour
    alerts = [alert(1, 60), alert(2, 30), alert(3, 5)]
    source, queue, state = FakeAlertSource(alerts), FakeAlertQueue(), InMemoryPollState()

    # When the first poll runs
    report = poller(source, state, queue).poll(NOW)

    # Then it asked for the last 24 hours and queued each body as listed, naming its poller
    assert source.asked == [NOW - timedelta(hours=24)]
    assert queue.bodies == [a.body for a in alerts]
    assert queue.attributes == [{SOURCE_ATTRIBUTE: "falcon"}] * 3
    # And its cursor is the newest alert's creation time
    assert state.cursor("falcon") == alerts[-1].created_at
    assert (report.listed, report.queued, report.already_queued, report.complete) == (3, 3, 0, True)


def test_a_later_poll_reads_from_the_cursor_less_the_overlap_and_queues_none_twice() -> None:
    # Given a first poll of two alerts, and one more created since
    source, queue, state = FakeAlertSource([alert(1, 10), alert(2, 5)]), FakeAlertQueue(), InMemoryPollState()
    poller(source, state, queue).poll(NOW)
    source.alerts.append(alert(3, 1))

    # When the next poll runs
    report = poller(source, state, queue).poll(NOW + timedelta(minutes=5))

    # Then it read from the cursor less 15 minutes, and queued the new alert alone
    assert source.asked[-1] == NOW - timedelta(minutes=5) - timedelta(minutes=15)
    assert [json.loads(body)["id"] for body in queue.bodies] == ["alert-1", "alert-2", "alert-3"]
    assert (report.queued, report.already_queued) == (1, 2)
    assert state.cursor("falcon") == NOW - timedelta(minutes=1)


def test_an_alert_remembered_no_longer_is_queued_again_when_read_again() -> None:
    # Given an alert queued, and a poll that reads it again after it is no longer remembered
    source, queue, state = FakeAlertSource([alert(1, 5)]), FakeAlertQueue(), InMemoryPollState()
    short = PollOptions(OPTIONS.first_window, OPTIONS.overlap, timedelta(minutes=30), OPTIONS.max_alerts)
    poller(source, state, queue, short).poll(NOW)
    state.cursors.clear()

    # When the poll runs once it is forgotten
    poller(source, state, queue, short).poll(NOW + timedelta(minutes=31))

    # Then it is queued a second time: what remember_for is for (longer than the overlap)
    assert len(queue.bodies) == 2


def test_a_queue_that_refuses_an_alert_leaves_it_for_the_next_poll_and_the_cursor_before_it() -> None:
    # Given three alerts and a queue that fails on the second
    alerts = [alert(1, 30), alert(2, 20), alert(3, 10)]
    source, state = FakeAlertSource(alerts), InMemoryPollState()

    class FailingOnce(FakeAlertQueue):
        def send(self, body: str, attributes: Mapping[str, str]) -> str:
            if "alert-2" in body and not getattr(self, "failed", False):
                self.failed = True
                raise TransientError("ThrottlingException: slow down")
            return super().send(body, attributes)

    queue = FailingOnce()

    # When a poll runs, Then it fails with the queue's error
    with pytest.raises(TransientError):
        poller(source, state, queue).poll(NOW)

    # And the cursor stops after the first alert, the second is not remembered as queued
    assert state.cursor("falcon") == alerts[0].created_at
    assert ("falcon", "alert-2") not in state.claims

    # When the next poll runs
    poller(source, state, queue).poll(NOW + timedelta(minutes=1))

    # Then it queues the second and the third, and the first not again
    assert [json.loads(body)["id"] for body in queue.bodies] == ["alert-1", "alert-2", "alert-3"]


def test_a_vendor_failing_mid_way_keeps_what_was_queued_and_its_cursor() -> None:
    # Given a source that fails after listing two of three alerts
    alerts = [alert(1, 30), alert(2, 20), alert(3, 10)]
    source, queue, state = FakeAlertSource(alerts, fail_after=2), FakeAlertQueue(), InMemoryPollState()

    # When a poll runs, Then it fails, its cursor at the second alert
    with pytest.raises(TransientError):
        poller(source, state, queue).poll(NOW)
    assert len(queue.bodies) == 2
    assert state.cursor("falcon") == alerts[1].created_at


def test_an_alert_another_poll_holds_is_left_to_it_and_the_cursor_stays_before_it() -> None:
    # Given an alert another poll claimed a minute ago (and died or still works on it), between two others
    alerts = [alert(1, 30), alert(2, 20), alert(3, 10)]
    source, queue, state = FakeAlertSource(alerts), FakeAlertQueue(), InMemoryPollState()
    assert state.claim("falcon", "alert-2", NOW - timedelta(minutes=1)) == "claimed"

    # When a poll runs
    report = poller(source, state, queue).poll(NOW)

    # Then it queues the two others, and its cursor stays before the held alert
    assert [json.loads(body)["id"] for body in queue.bodies] == ["alert-1", "alert-3"]
    assert report.held == 1
    assert state.cursor("falcon") == alerts[0].created_at

    # When a poll runs once the hold's lease has passed
    poller(source, state, queue).poll(NOW + POLL_CLAIM_LEASE)

    # Then it takes the alert over and queues it
    assert [json.loads(body)["id"] for body in queue.bodies] == ["alert-1", "alert-3", "alert-2"]
    assert state.cursor("falcon") == alerts[2].created_at


def test_a_poll_stops_at_its_most_alerts_and_the_next_goes_on_from_there() -> None:
    # Given five alerts and at most two queued a poll
    alerts = [alert(number, 50 - 10 * number) for number in range(5)]
    source, queue, state = FakeAlertSource(alerts), FakeAlertQueue(), InMemoryPollState()
    two = PollOptions(OPTIONS.first_window, OPTIONS.overlap, OPTIONS.remember_for, max_alerts=2)

    # When three polls run
    reports = [poller(source, state, queue, two).poll(NOW + timedelta(seconds=n)) for n in range(3)]

    # Then they queue two, two and one, each alert once, the first two saying they did not read all
    assert [r.queued for r in reports] == [2, 2, 1]
    assert [r.complete for r in reports] == [False, False, True]
    assert [json.loads(body)["id"] for body in queue.bodies] == [f"alert-{n}" for n in range(5)]


def test_a_poll_past_its_deadline_claims_nothing_more() -> None:
    # Given two alerts and a deadline already passed
    source, queue, state = FakeAlertSource([alert(1, 10), alert(2, 5)]), FakeAlertQueue(), InMemoryPollState()

    # When a poll runs
    report = poller(source, state, queue).poll(NOW, deadline=10.0, clock=lambda: 11.0)

    # Then it queued nothing, left the cursor alone, and says it did not read all
    assert queue.bodies == []
    assert state.cursor("falcon") is None
    assert report.complete is False


def test_an_alert_without_an_id_or_a_time_is_queued_once_by_its_digest_and_moves_no_cursor() -> None:
    # Given an alert that names no id and no readable creation time
    nameless = PolledAlert("", None, '{"title": "no id"}')
    source, queue, state = FakeAlertSource([nameless]), FakeAlertQueue(), InMemoryPollState()

    # When two polls run
    poller(source, state, queue).poll(NOW)
    poller(source, state, queue).poll(NOW + timedelta(minutes=1))

    # Then it was queued once (the enrich function refuses it with the reason), and no cursor was kept
    assert queue.bodies == [nameless.body]
    assert alert_identity(nameless).startswith("sha256:")
    assert state.cursor("falcon") is None


def test_the_cursor_never_moves_back() -> None:
    # Given a cursor at noon
    state = InMemoryPollState()
    state.advance("falcon", NOW)

    # When asked to move it back, Then it stays
    state.advance("falcon", NOW - timedelta(hours=1))
    assert state.cursor("falcon") == NOW
