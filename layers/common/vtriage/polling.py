"""The pollers' step: the alerts a vendor's API created since the last poll (CrowdStrike Falcon's Alerts
API, Google Workspace's Alert Center), each queued for the enrich function once, unchanged.

A poll reads from its source's cursor (the creation time of the newest alert queued so far) less an
overlap, so that an alert the vendor lists a little after it was created is still read; the first poll
reads back `first_window`. Every alert listed is claimed by its vendor id before it is queued (an alert
without one by its content's digest): one queued already is skipped, so the overlap never queues an alert
twice. A claim that could not be queued is given up and the next poll takes it again; a claim left by a
poll that died is taken over once its lease (`POLL_CLAIM_LEASE`) has passed.

The cursor moves only past what was queued (or found queued already), never past an alert that failed
or that another poll still holds, and it moves whatever stops the poll: the vendor failing mid-way, the
most alerts one poll queues (`max_alerts`), the invocation's time running out. Each message carries the
attribute `vtriage_poller` naming its source.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict

from vtriage.ports import AlertQueue, AlertSource, PolledAlert, PollState

__all__ = ["SOURCE_ATTRIBUTE", "PollOptions", "PollReport", "Poller", "alert_identity"]

# The message attribute naming the poller that queued an alert ("falcon", "workspace").
SOURCE_ATTRIBUTE = "vtriage_poller"


@dataclass(frozen=True)
class PollOptions:
    """How a poller reads its source: how far back the first poll reads, how far behind the cursor every
    poll reads again, how long a queued alert is remembered (longer than the overlap, so that an alert
    read again is still known), and the most alerts one poll queues."""

    first_window: timedelta
    overlap: timedelta
    remember_for: timedelta
    max_alerts: int


class PollReport(BaseModel):
    """What one poll did: from when it read, how many alerts it listed, queued, found queued already or
    held by another poll, the cursor it leaves, and whether it read everything there was."""

    model_config = ConfigDict(frozen=True)

    source: str
    since: datetime
    listed: int
    queued: int
    already_queued: int
    held: int
    cursor: datetime | None
    complete: bool


def alert_identity(alert: PolledAlert) -> str:
    """The key an alert is claimed under: the vendor's id, or the digest of its text when it names none
    (queued all the same: the enrich function refuses it with the reason, where a person finds it)."""
    if alert.alert_id:
        return alert.alert_id
    return "sha256:" + hashlib.sha256(alert.body.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Poller:
    """One vendor's poller: its source's alerts onto the alert queue, remembered in `state`."""

    source: str
    alerts: AlertSource
    state: PollState
    queue: AlertQueue
    options: PollOptions

    def poll(
        self, now: datetime, deadline: float | None = None, clock: Callable[[], float] = time.monotonic
    ) -> PollReport:
        """Queue the alerts created since the last poll. `deadline` (a `clock()` instant) stops the poll
        before it claims another alert. A failure of the vendor or of the queue is raised once the cursor
        has moved past what was queued."""
        cursor = self.state.cursor(self.source)
        since = cursor - self.options.overlap if cursor is not None else now - self.options.first_window
        newest = cursor
        listed = queued = already_queued = held = 0
        # Set once an alert is left behind (held by another poll): the cursor stays at or before it.
        left_behind = False
        complete = True
        try:
            for alert in self.alerts.alerts_created_since(since):
                if queued >= self.options.max_alerts or (deadline is not None and clock() >= deadline):
                    complete = False
                    break
                listed += 1
                outcome = self._queue_once(alert, now)
                if outcome == "held":
                    held += 1
                    left_behind = True
                    continue
                if outcome == "queued":
                    already_queued += 1
                else:
                    queued += 1
                moment = alert.created_at
                if not left_behind and moment is not None and (newest is None or moment > newest):
                    newest = moment
        finally:
            if newest is not None and newest != cursor:
                self.state.advance(self.source, newest)
        return PollReport(
            source=self.source,
            since=since,
            listed=listed,
            queued=queued,
            already_queued=already_queued,
            held=held,
            cursor=newest,
            complete=complete,
        )

    def _queue_once(self, alert: PolledAlert, now: datetime) -> str:
        """Queue the alert unless it was queued already or another poll holds it; say which happened."""
        identity = alert_identity(alert)
        outcome = self.state.claim(self.source, identity, now)
        if outcome != "claimed":
            return outcome
        try:
            message_id = self.queue.send(alert.body, {SOURCE_ATTRIBUTE: self.source})
        except BaseException:
            self.state.release(self.source, identity)
            raise
        self.state.mark_queued(self.source, identity, message_id, now + self.options.remember_for)
        return "sent"
