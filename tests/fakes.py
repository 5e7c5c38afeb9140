"""In-memory fakes of every port in `vtriage.ports`, for unit tests.

Each fake behaves as its Protocol's docstring says and records what it was asked, so a test can
assert on it. Stored models round-trip through JSON, as they do through DynamoDB, so a model that
would not survive storage fails here too.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from vtriage.clock import next_minute, next_utc_midnight, utc_now
from vtriage.display import Report
from vtriage.errors import QuotaExhaustedError
from vtriage.models import (
    Action,
    ActionStatus,
    ActionType,
    Alert,
    Case,
    CaseStatus,
    Enrichment,
    ExecutionInput,
    Ioc,
    IocType,
    Resource,
    ResourceType,
    Severity,
    Ticket,
)


@dataclass(frozen=True)
class RecordedFailure:
    """A refused record (`where` empty) or finding as `CaseRepository.record_failure` kept it."""

    message_id: str
    reason: str
    body: str
    where: str = ""
    alert_id: str | None = None


class InMemoryCaseRepository:
    """`CaseRepository` in a dict. Cases are copied in and out, as a database would."""

    def __init__(self, cases: Iterable[Case] = ()) -> None:
        """Start with these cases stored."""
        self._lock = threading.Lock()
        self._cases: dict[str, str] = {case.case_id: case.model_dump_json() for case in cases}
        self.failures: dict[tuple[str, str], RecordedFailure] = {}
        self.saves = 0

    def create(self, case: Case) -> bool:
        """Store a new case; False when a case with this id already exists."""
        with self._lock:
            if case.case_id in self._cases:
                return False
            self._cases[case.case_id] = case.model_dump_json()
            return True

    def get(self, case_id: str) -> Case | None:
        """A copy of the stored case, or None."""
        with self._lock:
            stored = self._cases.get(case_id)
        return None if stored is None else Case.model_validate_json(stored)

    def save(self, case: Case) -> None:
        """Replace the stored case with this version of it."""
        with self._lock:
            self._cases[case.case_id] = case.model_dump_json()
            self.saves += 1

    def record_failure(
        self, message_id: str, reason: str, body: str, *, where: str = "", alert_id: str | None = None
    ) -> bool:
        """Keep a refusal by message id and place; False when one is kept there already."""
        with self._lock:
            if (message_id, where) in self.failures:
                return False
            self.failures[message_id, where] = RecordedFailure(message_id, reason, body, where, alert_id)
            return True

    @property
    def case_ids(self) -> list[str]:
        """The ids of every stored case."""
        with self._lock:
            return list(self._cases)

    def list_cases(
        self, statuses: Iterable[CaseStatus] | None = None, limit: int | None = None
    ) -> list[Case]:
        """The cases in any of these statuses (every status when None), most recently updated first."""
        wanted = set(statuses) if statuses is not None else set(CaseStatus)
        with self._lock:
            stored = list(self._cases.values())
        found = [case for case in map(Case.model_validate_json, stored) if case.status in wanted]
        found.sort(key=lambda case: case.updated_at, reverse=True)
        return found if limit is None else found[:limit]


class InMemoryEnrichmentCache:
    """`EnrichmentCache` in a dict: the newest enrichment of an IOC answers while it is fresh.

    `freshness=None` keeps everything fresh for ever. Like the DynamoDB cache, an enrichment read back
    is marked `cached=True`.
    """

    def __init__(
        self,
        freshness: timedelta | None = None,
        now: Callable[[], datetime] = utc_now,
        enrichments: Iterable[Enrichment] = (),
    ) -> None:
        """Keep enrichments fresh for `freshness` after their `fetched_at`, by the clock `now`."""
        self._lock = threading.Lock()
        self._freshness = freshness
        self._now = now
        self._newest: dict[str, str] = {}
        self.puts: list[Enrichment] = []
        self.writes = 0
        self.reads: list[list[str]] = []
        for enrichment in enrichments:
            self._keep(enrichment)

    def get_fresh(self, iocs: Sequence[Ioc]) -> dict[str, Enrichment]:
        """The newest enrichment of each IOC while still fresh, marked as cached, by IOC key."""
        with self._lock:
            self.reads.append([ioc.key for ioc in iocs])
            stored = [self._newest[ioc.key] for ioc in iocs if ioc.key in self._newest]
        fresh: dict[str, Enrichment] = {}
        for text in stored:
            enrichment = Enrichment.model_validate_json(text)
            if self._freshness is None or enrichment.fetched_at + self._freshness > self._now():
                fresh[enrichment.key] = enrichment.model_copy(update={"cached": True})
        return fresh

    def put(self, enrichments: Sequence[Enrichment]) -> None:
        """Keep enrichments; an older one never replaces a newer one."""
        with self._lock:
            self.writes += 1
            for enrichment in enrichments:
                self.puts.append(enrichment)
                self._keep(enrichment)

    def _keep(self, enrichment: Enrichment) -> None:
        current = self._newest.get(enrichment.key)
        if current is None or Enrichment.model_validate_json(current).fetched_at <= enrichment.fetched_at:
            self._newest[enrichment.key] = enrichment.model_dump_json()


class FakeThreatIntel:
    """`ThreatIntel` from a dict of IOC key (`type#value`) to the VirusTotal `data` object.

    A key it does not hold answers None, as VirusTotal's 404 does. `errors` makes a key raise instead
    (a quota error, a timeout). Every lookup is recorded, in order, by key.
    """

    def __init__(
        self,
        objects: Mapping[str, dict[str, Any]] | None = None,
        errors: Mapping[str, Exception] | None = None,
        requests_per_lookup: int = 1,
    ) -> None:
        """Answer with `objects` (pass a fixture's `["data"]`), raise `errors`, None for the rest; each
        lookup counts as `requests_per_lookup` requests (4 is VirusTotal's with deep context)."""
        self._lock = threading.Lock()
        self._objects = dict(objects or {})
        self._errors = dict(errors or {})
        self._requests_per_lookup = requests_per_lookup
        self.lookups: list[str] = []
        self.deadlines: list[float | None] = []

    def lookup(self, ioc: Ioc, deadline: float | None = None) -> dict[str, Any] | None:
        """The stored object for the IOC's key, or None; raises the configured error if any. Answers at
        once, so it never outlasts `deadline` (recorded, as each lookup's key is)."""
        with self._lock:
            self.lookups.append(ioc.key)
            self.deadlines.append(deadline)
        if ioc.key in self._errors:
            raise self._errors[ioc.key]
        found = self._objects.get(ioc.key)
        return None if found is None else dict(found)

    def requests_per_lookup(self, ioc_type: IocType) -> int:
        """The requests a lookup counts as, whatever its type."""
        return self._requests_per_lookup


class FakeExecutionStarter:
    """`ExecutionStarter` that records executions by name: the same name twice starts once."""

    def __init__(
        self,
        state_machine_arn: str = "arn:aws:states:us-east-1:123456789012:stateMachine:vtriage-triage",
        error: Exception | None = None,
    ) -> None:
        """Name executions after `state_machine_arn`; raise `error` on every start when given."""
        self._lock = threading.Lock()
        self._state_machine_arn = state_machine_arn
        self._error = error
        self.started: dict[str, ExecutionInput] = {}
        self.start_calls = 0

    def arn_for(self, name: str) -> str:
        """The ARN the execution of this name has, or will have once started."""
        prefix, machine = self._state_machine_arn.split(":stateMachine:", 1)
        return f"{prefix}:execution:{machine}:{name}"

    def start(self, name: str, execution_input: ExecutionInput) -> str:
        """Start the execution unless one of this name already started; return its ARN."""
        with self._lock:
            self.start_calls += 1
            if self._error is not None:
                raise self._error
            self.started.setdefault(name, execution_input)
        return self.arn_for(name)


class FakeDeadLetterQueue:
    """`DeadLetterQueue` that keeps every parked record, in order."""

    def __init__(self) -> None:
        """Start empty."""
        self._lock = threading.Lock()
        self.sent: list[RecordedFailure] = []

    def send(
        self, message_id: str, body: str, reason: str, *, where: str = "", alert_id: str | None = None
    ) -> None:
        """Park the body with its reason (and the refused finding's place and id)."""
        with self._lock:
            self.sent.append(RecordedFailure(message_id, reason, body, where, alert_id))


class FakeActuator:
    """`ResponseActuator` for one action type, over a dict of target to its current state (a string).

    Running an action sets its target's state to `acted_state` and records the state before as
    `{"state": ...}`; rollback puts that state back. Like the real actuators: a target it does not know
    fails as a missing one does, `protected` targets are skipped, a second run changes nothing and
    says so, a dry run changes nothing. `errors` / `rollback_errors` make a target raise on run /
    rollback; `reversible=False` makes rollback keep the action ("nothing to undo"). It records every
    action it is given, in order, in `runs` (with its dry_run flag) and `rollbacks`.
    """

    def __init__(
        self,
        action_type: ActionType,
        states: Mapping[str, str] | None = None,
        *,
        acted_state: str = "acted",
        protected: Iterable[str] = (),
        errors: Mapping[str, Exception] | None = None,
        rollback_errors: Mapping[str, Exception] | None = None,
        reversible: bool = True,
    ) -> None:
        """Act on `states` (target → state); see the class docstring for the other knobs."""
        self.action_type = action_type
        self.states: dict[str, str] = dict(states or {})
        self._acted_state = acted_state
        self._protected = set(protected)
        self._errors = dict(errors or {})
        self._rollback_errors = dict(rollback_errors or {})
        self._reversible = reversible
        self.runs: list[tuple[Action, bool]] = []
        self.rollbacks: list[Action] = []

    @property
    def calls(self) -> list[tuple[str, bool]]:
        """Every run as (target, dry_run), in order."""
        return [(action.target, dry_run) for action, dry_run in self.runs]

    def run(self, action: Action, dry_run: bool) -> Action:
        """Act on the target, or only say what would change when dry_run."""
        assert action.type is self.action_type, f"{action.type} sent to the {self.action_type} actuator"
        self.runs.append((action, dry_run))
        target = action.target
        if target in self._errors:
            raise self._errors[target]
        if target not in self.states:
            return action.with_outcome(ActionStatus.FAILED, f"{target} not found")
        if target in self._protected:
            return action.with_outcome(ActionStatus.SKIPPED, f"not acted on: {target} is protected")
        before = {"state": self.states[target]}
        if self.states[target] == self._acted_state:
            return action.with_outcome(ActionStatus.DONE, f"already {self._acted_state}", before, before)
        if dry_run:
            now = before["state"]
            detail = f"dry run, nothing changed: would make {target} {self._acted_state} (now {now})"
            return action.with_outcome(ActionStatus.DRY_RUN, detail, before)
        self.states[target] = self._acted_state
        after = {"state": self._acted_state}
        return action.with_outcome(ActionStatus.DONE, f"{target} is now {self._acted_state}", before, after)

    def rollback(self, action: Action) -> Action:
        """Put back the state recorded in `before`."""
        assert action.type is self.action_type, f"{action.type} sent to the {self.action_type} actuator"
        self.rollbacks.append(action)
        target = action.target
        if target in self._rollback_errors:
            raise self._rollback_errors[target]
        if not self._reversible:
            return action.model_copy(update={"detail": "nothing to undo: kept for forensics"})
        if action.before is None:
            return action.model_copy(update={"detail": "nothing to undo: no state was recorded"})
        if target not in self.states:
            return action.with_outcome(
                ActionStatus.FAILED, f"rollback failed: {target} not found", action.before
            )
        self.states[target] = str(action.before["state"])
        after = {"state": self.states[target]}
        detail = f"rolled back: {target} is {self.states[target]} again"
        return action.with_outcome(ActionStatus.ROLLED_BACK, detail, action.before, after)


@dataclass(frozen=True)
class OpenedTicket:
    """A ticket as `FakeTicketSink` opened it, with what it was given."""

    ticket: Ticket
    case: Case
    report: Report


class FakeTicketSink:
    """`TicketSink` that keeps every ticket it opens and every comment; ids are FAKE-1, FAKE-2, ..."""

    def __init__(self, now: Callable[[], datetime] = utc_now, error: Exception | None = None) -> None:
        """Date tickets by `now`; raise `error` on every open and comment when given."""
        self._now = now
        self._error = error
        self.opened: list[OpenedTicket] = []
        self.comments: list[tuple[Ticket, str]] = []

    def open(self, case: Case, report: Report) -> Ticket:
        """Open a ticket for the case with the report."""
        if self._error is not None:
            raise self._error
        ticket = Ticket(provider="fake", id=f"FAKE-{len(self.opened) + 1}", created_at=self._now())
        self.opened.append(OpenedTicket(ticket, case.model_copy(deep=True), report))
        return ticket

    def comment(self, ticket: Ticket, text: str) -> None:
        """Record a comment on the ticket (which may have been opened by an earlier run)."""
        if self._error is not None:
            raise self._error
        self.comments.append((ticket, text))


def make_case(alert: Alert, **fields: Any) -> Case:
    """A case for the alert, created at the alert's update time, with any field overridden."""
    defaults: dict[str, Any] = {
        "case_id": alert.case_id,
        "alert": alert,
        "created_at": alert.updated_at,
        "updated_at": alert.updated_at,
    }
    return Case(**{**defaults, **fields})


def make_alert(**fields: Any) -> Alert:
    """A GuardDuty SSH brute-force alert on one instance, with any field overridden."""
    defaults: dict[str, Any] = {
        "id": "5eb7d1a3a1f1f1ce3f4e3a1d7b8c9e0f",
        "source": "guardduty",
        "type": "UnauthorizedAccess:EC2/SSHBruteForce",
        "title": "198.51.100.7 is performing SSH brute force attacks against i-0abc1234def567890",
        "severity": Severity(score=8),
        "created_at": datetime(2024, 5, 1, 9, 30, tzinfo=UTC),
        "updated_at": datetime(2024, 5, 1, 9, 45, tzinfo=UTC),
        "version": "2024-05-01T09:45:00Z",
        "account": "123456789012",
        "region": "us-east-1",
        "resources": (
            Resource(
                type=ResourceType.INSTANCE,
                id="i-0abc1234def567890",
                vpc_id="vpc-0a1b2c3d",
                network_interface_ids=("eni-0a1b2c3d4e5f60718",),
                addresses=("10.0.1.25",),
            ),
        ),
    }
    return Alert(**{**defaults, **fields})


class FakeQuotaLimiter:
    """`QuotaLimiter` counting requests per UTC minute and day by the clock `now`, as the DynamoDB one
    does: a request refused by the day spends nothing, one refused by the minute spends nothing."""

    def __init__(self, per_minute: int, per_day: int, now: Callable[[], datetime] = utc_now) -> None:
        """Allow `per_minute` requests a minute and `per_day` a UTC day."""
        self._lock = threading.Lock()
        self._per_minute = per_minute
        self._per_day = per_day
        self._now = now
        self.used: dict[str, int] = {}
        self.refused = 0
        self.takes: list[int] = []

    def acquire(self, units: int = 1) -> None:
        """Take `units` requests, all or none, or raise QuotaExhaustedError saying when the quota reopens."""
        now = self._now().astimezone(UTC)
        day, minute = f"day#{now:%Y-%m-%d}", f"minute#{now:%Y-%m-%dT%H:%M}"
        with self._lock:
            if self.used.get(day, 0) + units > self._per_day:
                self.refused += 1
                raise QuotaExhaustedError("daily quota spent", next_utc_midnight(now), window="day")
            if self.used.get(minute, 0) + units > self._per_minute:
                self.refused += 1
                raise QuotaExhaustedError("minute quota spent", next_minute(now), window="minute")
            self.used[day] = self.used.get(day, 0) + units
            self.used[minute] = self.used.get(minute, 0) + units
            self.takes.append(units)


@dataclass(frozen=True)
class Requeued:
    """A message `FakeMessageDeferral.requeue` queued afresh."""

    body: str
    attributes: dict[str, str]
    delay_seconds: int


class FakeMessageDeferral:
    """`MessageDeferral` that records what it hid and what it queued afresh, in order."""

    def __init__(self) -> None:
        """Start empty."""
        self._lock = threading.Lock()
        self.hidden: list[tuple[str, int]] = []
        self.requeued: list[Requeued] = []

    def defer(self, receipt_handle: str, seconds: int) -> None:
        """Record that the message of this receipt handle is hidden for `seconds`."""
        with self._lock:
            self.hidden.append((receipt_handle, seconds))

    def requeue(self, body: str, attributes: Mapping[str, str], delay_seconds: int) -> None:
        """Record a fresh copy of the message."""
        with self._lock:
            self.requeued.append(Requeued(body, dict(attributes), delay_seconds))
