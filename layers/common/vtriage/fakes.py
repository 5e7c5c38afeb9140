"""In-memory fakes of the ports in `vtriage.ports`, one each, in the same order, for tests.

Each fake behaves as its port's adapter does and records what it was asked, so that a test can assert on
it: `tests/contract` runs one set of assertions against the fake and the adapter of every port, an AWS
adapter on moto (for `ResponseActuator`, every actuator; for `TaskCallback`, an execution that waits on
its task token) or a vendor's over HTTP against a loopback server answering as the vendor documents
(`ThreatIntel` and `WidgetSource`: VirusTotal's replay server; `AlertSource`: the pollers' fake
CrowdStrike and Google). Stored models round-trip through JSON, as they do through DynamoDB, so that a
model that would not survive storage fails here too. It ships with the package, beside the ports, but no
function loads it (the import contract `nothing-shipped-loads-the-fakes`).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from vtriage.approval_links import ApprovalClaims, ApprovalLinks, Approver, Decision
from vtriage.bounds import MAX_HISTORY, MAX_REPEAT_IDS, MAX_VARIANTS, bounded
from vtriage.clock import next_minute, next_utc_midnight, utc_now
from vtriage.errors import ConfigurationError, MemberRoleError, QuotaExhaustedError, TransientError
from vtriage.models import (
    Action,
    ActionStatus,
    ActionType,
    Case,
    CaseStatus,
    Enrichment,
    ExecutionInput,
    HistoryEntry,
    Ioc,
    IocOutcome,
    IocType,
    Repeat,
    Ticket,
    Verdict,
)
from vtriage.ports import CLAIM_LEASE, POLL_CLAIM_LEASE, ClaimOutcome, PolledAlert, ResponseActuator
from vtriage.report import Report, ReportLink
from vtriage.virustotal.widget import Widget


@dataclass(frozen=True)
class RecordedFailure:
    """A refused record (`where` empty) or finding, as `CaseRepository.record_failure` or
    `DeadLetterQueue.send` kept it."""

    message_id: str
    reason: str
    body: str
    where: str = ""
    alert_id: str | None = None


class InMemoryCaseRepository:
    """`CaseRepository` and `SearchableCases` in a dict. Cases are copied in and out, as a database would,
    and every write keeps them as the DynamoDB repository does: the history and repeat ids within their
    bounds, and a save keeps what others appended to the stored case meanwhile (`Case.with_appended`)."""

    def __init__(self, cases: Iterable[Case] = ()) -> None:
        """Start with these cases stored (as given)."""
        self._lock = threading.Lock()
        self._cases: dict[str, str] = {case.case_id: case.model_dump_json() for case in cases}
        self.failures: dict[tuple[str, str], RecordedFailure] = {}
        self.saves = 0

    def create(self, case: Case) -> bool:
        """Store a new case; False when a case with this id already exists."""
        with self._lock:
            if case.case_id in self._cases:
                return False
            self._cases[case.case_id] = _stored(case).model_dump_json()
            return True

    def get(self, case_id: str) -> Case | None:
        """A copy of the stored case, or None."""
        with self._lock:
            stored = self._cases.get(case_id)
        return None if stored is None else Case.model_validate_json(stored)

    def save(self, case: Case) -> None:
        """Replace the stored case with this version of it, keeping what others appended meanwhile."""
        with self._lock:
            stored = self._cases.get(case.case_id)
            if stored is not None:
                case = case.with_appended(Case.model_validate_json(stored))
            self._cases[case.case_id] = _stored(case).model_dump_json()
            self.saves += 1

    def replace_pending(self, case: Case) -> bool:
        """Replace the stored case with this version while the stored one is PENDING_ENRICHMENT, keeping
        what others appended to it; False when it is not, or is gone (not counted in `saves`)."""
        with self._lock:
            stored = self._cases.get(case.case_id)
            if stored is None:
                return False
            current = Case.model_validate_json(stored)
            if current.status is not CaseStatus.PENDING_ENRICHMENT:
                return False
            self._cases[case.case_id] = _stored(case.with_appended(current)).model_dump_json()
            return True

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

    def _update(self, case_id: str, change: Callable[[Case], Case | None]) -> bool:
        """Apply `change` to the stored case in one step (a conditional update in DynamoDB); False when
        the case is gone or `change` returns None."""
        with self._lock:
            stored = self._cases.get(case_id)
            if stored is None:
                return False
            changed = change(Case.model_validate_json(stored))
            if changed is None:
                return False
            self._cases[case_id] = changed.model_dump_json()
            return True


def _stored(case: Case) -> Case:
    """The case as a write keeps it: its history and repeat ids within their bounds."""
    return bounded(case)


class InMemoryEnrichmentCache:
    """`EnrichmentCache` in a dict: the enrichment last put for an IOC answers while it is fresh, marked
    `cached=True`, as in the DynamoDB cache (where the last write of an IOC is the one kept).

    `freshness` is how long an enrichment answers: one time for every verdict, a time per verdict (as
    the deployment configures it), or None for ever.
    """

    def __init__(
        self,
        freshness: timedelta | Mapping[Verdict, timedelta] | None = None,
        now: Callable[[], datetime] = utc_now,
        enrichments: Iterable[Enrichment] = (),
    ) -> None:
        """Keep enrichments fresh for `freshness` after their `fetched_at`, by the clock `now`."""
        self._lock = threading.Lock()
        self._freshness = freshness
        self._now = now
        self._latest: dict[str, str] = {}
        self.puts: list[Enrichment] = []
        self.writes = 0
        self.reads: list[list[str]] = []
        for enrichment in enrichments:
            self._latest[enrichment.key] = enrichment.model_dump_json()

    def get_fresh(self, iocs: Sequence[Ioc]) -> dict[str, Enrichment]:
        """The enrichment last put for each IOC while still fresh, marked as cached, by IOC key."""
        with self._lock:
            self.reads.append([ioc.key for ioc in iocs])
            stored = [self._latest[ioc.key] for ioc in iocs if ioc.key in self._latest]
        fresh: dict[str, Enrichment] = {}
        for text in stored:
            enrichment = Enrichment.model_validate_json(text)
            if self._is_fresh(enrichment):
                fresh[enrichment.key] = enrichment.model_copy(update={"cached": True})
        return fresh

    def put(self, enrichments: Sequence[Enrichment]) -> None:
        """Keep the enrichments, each replacing the one an earlier put kept for its IOC."""
        with self._lock:
            self.writes += 1
            for enrichment in enrichments:
                self.puts.append(enrichment)
                self._latest[enrichment.key] = enrichment.model_dump_json()

    def _is_fresh(self, enrichment: Enrichment) -> bool:
        if self._freshness is None:
            return True
        freshness = (
            self._freshness if isinstance(self._freshness, timedelta) else self._freshness[enrichment.verdict]
        )
        return enrichment.fetched_at + freshness > self._now()


class InMemoryEnrichmentRecords:
    """`EnrichmentRecords` over enrichments kept as the enrichments table keeps them: each under its fetch
    time, and the last one put of each IOC (as its `latest` item)."""

    def __init__(self, enrichments: Iterable[Enrichment] = ()) -> None:
        """Keep these enrichments, as if each had been put into the table in this order."""
        self._kept: dict[tuple[str, datetime], Enrichment] = {}
        self._newest: dict[str, Enrichment] = {}
        self.reads: list[list[str]] = []
        for enrichment in enrichments:
            self._kept[(enrichment.key, enrichment.fetched_at)] = enrichment
            self._newest[enrichment.key] = enrichment

    def as_judged(self, iocs: Sequence[IocOutcome]) -> dict[str, Enrichment]:
        """The enrichment each looked-up IOC was judged on, else the last one kept, by IOC key."""
        looked_up = [ioc for ioc in iocs if ioc.skipped_reason is None]
        self.reads.append([f"{ioc.type.value}#{ioc.value}" for ioc in looked_up])
        found: dict[str, Enrichment] = {}
        for ioc in looked_up:
            key = f"{ioc.type.value}#{ioc.value}"
            judged = self._kept.get((key, ioc.fetched_at)) if ioc.fetched_at is not None else None
            enrichment = judged or self._newest.get(key)
            if enrichment is not None:
                found[key] = enrichment
        return found


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
        """The stored object for the IOC's key, or None; raises the configured error if any, and
        ValueError for an IOC kept as skipped (never looked up, nor recorded), as the client does.
        Answers at once, so it never outlasts `deadline` (recorded, as each lookup's key is)."""
        if ioc.skipped_reason:
            raise ValueError(f"{ioc.key} is skipped ({ioc.skipped_reason}) and is never looked up")
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

    def arn_for(self, name: str) -> str:
        """The ARN the execution of this name has, or will have once started."""
        prefix, machine = self._state_machine_arn.split(":stateMachine:", 1)
        return f"{prefix}:execution:{machine}:{name}"

    def start(self, name: str, execution_input: ExecutionInput) -> str:
        """Start the execution unless one of this name already started; return its ARN."""
        with self._lock:
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


class FakeActuatorsByPlace:
    """`ActuatorsByPlace` whose every place has the same actuators (those of AWS action types; the others
    act outside AWS), as one account and Region would. Given `accounts`, it reaches those alone and
    refuses any other with `MemberRoleError`, as the deployment refuses an account that is neither its
    own nor a listed member. It records each place asked, in order, in `places` (account, Region, case
    id)."""

    def __init__(
        self, actuators: Mapping[ActionType, ResponseActuator], accounts: Iterable[str] | None = None
    ) -> None:
        """Give these actuators, one per action type, wherever a case lives (in `accounts` alone, when
        given)."""
        self._in_aws = {kind: actuator for kind, actuator in actuators.items() if kind.acts_in_aws}
        self._outside_aws = {kind: actuator for kind, actuator in actuators.items() if not kind.acts_in_aws}
        self._accounts = None if accounts is None else frozenset(accounts)
        self.places: list[tuple[str, str, str]] = []

    def at(self, account: str, region: str, case_id: str) -> Mapping[ActionType, ResponseActuator]:
        """The AWS actions' actuators, the same in every account and Region; the place is recorded.
        Raises `MemberRoleError` for an account it does not reach."""
        self.places.append((account, region, case_id))
        if self._accounts is not None and account not in self._accounts:
            raise MemberRoleError(
                f"account {account} is neither this deployment's nor a listed member account "
                "(MemberAccountIds): vtriage assumes no role there"
            )
        return self._in_aws

    def outside_aws(self) -> Mapping[ActionType, ResponseActuator]:
        """The actuators of the action types that act outside AWS."""
        return self._outside_aws


class FakeBlastRadius:
    """`BlastRadius` allowing `max_per_hour` actions per UTC clock hour by the clock `now`, as the DynamoDB
    counter does."""

    def __init__(self, max_per_hour: int, now: Callable[[], datetime] = utc_now) -> None:
        """Allow `max_per_hour` actions each hour."""
        self._max = max_per_hour
        self._now = now
        self.used: dict[str, int] = {}

    @property
    def taken(self) -> int:
        """The actions taken, every hour together."""
        return sum(self.used.values())

    def acquire(self) -> bool:
        """Take one action from the current hour's allowance; False when it is spent."""
        hour = self._now().astimezone(UTC).strftime("%Y-%m-%dT%H")
        if self.used.get(hour, 0) >= self._max:
            return False
        self.used[hour] = self.used.get(hour, 0) + 1
        return True


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
        # The links each comment carried, in the order of `comments`.
        self.comment_links: list[tuple[ReportLink, ...]] = []

    def open(self, case: Case, report: Report) -> Ticket:
        """Open a ticket for the case with the report."""
        if self._error is not None:
            raise self._error
        ticket = Ticket(provider="fake", id=f"FAKE-{len(self.opened) + 1}", created_at=self._now())
        self.opened.append(OpenedTicket(ticket, case.model_copy(deep=True), report))
        return ticket

    def comment(self, ticket: Ticket, text: str, links: Sequence[ReportLink] = ()) -> None:
        """Record a comment on the ticket (which may have been opened by an earlier run), and its links."""
        if self._error is not None:
            raise self._error
        self.comments.append((ticket, text))
        self.comment_links.append(tuple(links))


class FakeQuotaLimiter:
    """`QuotaLimiter` counting requests per UTC minute and day by the clock `now`, as the DynamoDB one
    does: a block that does not fit spends nothing, and the refusal names the window short of room."""

    def __init__(self, per_minute: int, per_day: int, now: Callable[[], datetime] = utc_now) -> None:
        """Allow `per_minute` requests a minute and `per_day` a UTC day."""
        if per_minute < 1 or per_day < 1:
            raise ValueError("a quota allows at least one request a minute and a day")
        self._lock = threading.Lock()
        self._per_minute = per_minute
        self._per_day = per_day
        self._now = now
        self.used: dict[str, int] = {}
        self.refused = 0
        self.takes: list[int] = []

    def acquire(self, units: int = 1) -> None:
        """Take `units` requests, all or none, or raise QuotaExhaustedError saying when the quota reopens."""
        if units < 1:
            raise ValueError("a request takes at least one unit of the quota")
        now = self._now().astimezone(UTC)
        day, minute = f"day#{now:%Y-%m-%d}", f"minute#{now:%Y-%m-%dT%H:%M}"
        with self._lock:
            if units > self._per_minute:
                self.refused += 1
                raise QuotaExhaustedError(
                    f"{units} requests do not fit in the quota of {self._per_minute} a minute",
                    next_minute(now),
                    window="minute",
                )
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


class FakeAlertQueue:
    """`AlertQueue` that keeps what it was sent, in order, or fails as a throttled SQS does."""

    def __init__(self, unavailable: bool = False) -> None:
        """Start empty; `unavailable` makes every send raise TransientError."""
        self.bodies: list[str] = []
        self.attributes: list[dict[str, str]] = []
        self.unavailable = unavailable

    def send(self, body: str, attributes: Mapping[str, str]) -> str:
        """Keep the body and its attributes; return a message id."""
        if self.unavailable:
            raise TransientError("ThrottlingException: slow down")
        self.bodies.append(body)
        self.attributes.append(dict(attributes))
        return f"message-{len(self.bodies)}"


class FakeAlertSource:
    """`AlertSource` over a list of alerts: those created at or after `since`, oldest first (an alert with
    no creation time is listed with the others, last). Records each `since` it was asked for; `fail_after`
    raises TransientError once that many alerts were listed (a vendor that stops answering mid-way);
    `refused` raises ConfigurationError before any, as a vendor refusing the credentials makes the
    adapters do."""

    def __init__(
        self, alerts: Iterable[PolledAlert] = (), fail_after: int | None = None, refused: bool = False
    ) -> None:
        """List these alerts; fail after `fail_after` of them, when given; refuse every listing when
        `refused`."""
        self.alerts = list(alerts)
        self.fail_after = fail_after
        self.refused = refused
        self.asked: list[datetime] = []

    def alerts_created_since(self, since: datetime) -> Iterator[PolledAlert]:
        """The alerts created at or after `since`, oldest first."""
        self.asked.append(since)
        if self.refused:
            raise ConfigurationError("the vendor refused the API client's credentials (HTTP 401)")
        listed = sorted(
            (alert for alert in self.alerts if alert.created_at is None or alert.created_at >= since),
            key=lambda alert: (alert.created_at is None, alert.created_at or since),
        )
        for count, alert in enumerate(listed):
            if self.fail_after is not None and count >= self.fail_after:
                raise TransientError("the vendor's API is unavailable (HTTP 503)")
            yield alert


@dataclass(frozen=True)
class PollClaim:
    """A polled alert as `InMemoryPollState` remembers it: held until `until`, or queued."""

    state: str
    until: datetime
    message_id: str = ""


class InMemoryPollState:
    """`PollState` in dicts: cursors by source, and each source's alerts claimed or queued by id."""

    def __init__(self) -> None:
        """Start with no cursor and no alert."""
        self.cursors: dict[str, datetime] = {}
        self.claims: dict[tuple[str, str], PollClaim] = {}

    def cursor(self, source: str) -> datetime | None:
        """The source's cursor, or None."""
        return self.cursors.get(source)

    def advance(self, source: str, to: datetime) -> None:
        """Move the cursor forward to `to` (a later one stays)."""
        current = self.cursors.get(source)
        if current is None or to > current:
            self.cursors[source] = to

    def claim(self, source: str, alert_id: str, now: datetime) -> ClaimOutcome:
        """Hold the alert until `now + POLL_CLAIM_LEASE`, unless queued or held by a live claim."""
        existing = self.claims.get((source, alert_id))
        if existing is not None and existing.state == "queued" and existing.until > now:
            return "queued"
        if existing is not None and existing.state == "held" and existing.until > now:
            return "held"
        self.claims[(source, alert_id)] = PollClaim("held", now + POLL_CLAIM_LEASE)
        return "claimed"

    def mark_queued(self, source: str, alert_id: str, message_id: str, until: datetime) -> None:
        """Remember the alert as queued until `until`."""
        self.claims[(source, alert_id)] = PollClaim("queued", until, message_id)

    def release(self, source: str, alert_id: str) -> None:
        """Forget a held alert (a queued one stays)."""
        existing = self.claims.get((source, alert_id))
        if existing is not None and existing.state == "held":
            del self.claims[(source, alert_id)]


class InMemoryRepeatLedger:
    """`RepeatLedger` over an `InMemoryCaseRepository`: repeat keys in a dict, until their window ends; a
    fold updates the stored case in one step, as the DynamoDB ledger's conditional update does, and
    compacts a case whose history or repeat ids are full first (`vtriage.bounds.bounded`)."""

    # As the DynamoDB ledger: a compaction leaves room for this many more repeats.
    ROOM_MADE = 20

    def __init__(self, cases: InMemoryCaseRepository, now: Callable[[], datetime] = utc_now) -> None:
        """Fold into `cases`; a repeat key's window is open while its `until` is after `now()`."""
        self._cases = cases
        self._now = now
        self.keys: dict[str, tuple[str, datetime]] = {}

    def earlier_case(self, repeat_key: str) -> str | None:
        """The case the repeat key points at while its window is open; else None."""
        kept = self.keys.get(repeat_key)
        return kept[0] if kept is not None and kept[1] > self._now() else None

    def remember(self, repeat_key: str, case_id: str, until: datetime) -> None:
        """Point the repeat key at this case until `until` (replacing what it pointed at)."""
        self.keys[repeat_key] = (case_id, until)

    def fold(self, case_id: str, repeat: Repeat, entry: HistoryEntry) -> bool:
        """Count the repeat on the case and add `entry` to its history; False when the case is gone or
        counts this repeat already."""

        def folded(case: Case) -> Case | None:
            if repeat.case_id in case.repeat_case_ids:
                return None
            if len(case.history) >= MAX_HISTORY or len(case.repeat_case_ids) >= MAX_REPEAT_IDS:
                case = bounded(case, MAX_HISTORY - self.ROOM_MADE, MAX_REPEAT_IDS - self.ROOM_MADE)
            return case.model_copy(
                update={
                    "repeat_count": case.repeat_count + 1,
                    "repeat_case_ids": [*case.repeat_case_ids, repeat.case_id],
                    "last_repeat": repeat,
                    "history": [*case.history, entry],
                    "updated_at": entry.at,
                }
            )

        return self._cases._update(case_id, folded)


class InMemoryFindingLedger:
    """`FindingLedger` over an `InMemoryCaseRepository`: the case ids of each finding id and version in a
    dict; a note updates the stored case in one step, as the DynamoDB ledger's conditional update does.
    Both stop growing at MAX_VARIANTS."""

    def __init__(self, cases: InMemoryCaseRepository) -> None:
        """Note variants on `cases`."""
        self._cases = cases
        self.keys: dict[str, list[str]] = {}

    def join(self, finding_key: str, case_id: str) -> list[str]:
        """Add the case to those of its finding id and version (while fewer than MAX_VARIANTS); return
        the others already there."""
        known = self.keys.setdefault(finding_key, [])
        others = [other for other in known if other != case_id]
        if case_id not in known and len(known) < MAX_VARIANTS:
            known.append(case_id)
        return others

    def note_variant(self, case_id: str, variant_case_id: str, entry: HistoryEntry) -> bool:
        """Name the variant on the case and add `entry` to its history (the variant alone when the history
        is full); False when the case is gone, names it already, or names MAX_VARIANTS."""

        def noted(case: Case) -> Case | None:
            variants = case.variant_case_ids
            if variant_case_id in variants or len(variants) >= MAX_VARIANTS:
                return None
            history = case.history if len(case.history) >= MAX_HISTORY else [*case.history, entry]
            return case.model_copy(
                update={
                    "variant_case_ids": [*variants, variant_case_id],
                    "history": history,
                    "updated_at": entry.at,
                }
            )

        return self._cases._update(case_id, noted)


@dataclass(frozen=True)
class Held:
    """An approval one request holds while it passes the decision on."""

    decision: Decision
    approver: Approver
    until: datetime


class InMemoryApprovalStore:
    """`ApprovalStore`: task tokens by approval id, held for CLAIM_LEASE while deciding, then decided once."""

    def __init__(self) -> None:
        """Start with no approval."""
        self.tokens: dict[str, str] = {}
        self.held: dict[str, Held] = {}
        self.decided: dict[str, tuple[Decision, Approver]] = {}

    def put_pending(self, claims: ApprovalClaims, task_token: str) -> None:
        """Keep the task token; rewritten only while the approval is neither held nor decided."""
        if claims.approval_id not in self.decided and claims.approval_id not in self.held:
            self.tokens[claims.approval_id] = task_token

    def is_pending(self, approval_id: str, now: datetime) -> bool:
        """Whether the approval waits for a decision (a hold whose lease has passed waits again)."""
        held = self.held.get(approval_id)
        waiting = approval_id in self.tokens and approval_id not in self.decided
        return waiting and (held is None or held.until < now)

    def claim(self, approval_id: str, decision: Decision, approver: Approver, at: datetime) -> str | None:
        """Hold the approval for this decision until `at + CLAIM_LEASE`; its task token, or None."""
        if not self.is_pending(approval_id, at):
            return None
        self.held[approval_id] = Held(decision, approver, at + CLAIM_LEASE)
        return self.tokens[approval_id]

    def release(self, approval_id: str) -> None:
        """Let a held approval wait again (nothing when it is not held)."""
        self.held.pop(approval_id, None)

    def settle(self, approval_id: str) -> None:
        """Mark a held approval decided as its holder decided (nothing when it is not held)."""
        held = self.held.pop(approval_id, None)
        if held is not None:
            self.decided[approval_id] = (held.decision, held.approver)


class FakeTaskCallback:
    """`TaskCallback` recording each call as (kind, task token, output or error): "success" or "failure".
    A step waits on each token it is given until it is answered once, as Step Functions' does: its
    answer is kept in `answered` (kind, output or error), and a token answered, or one whose step
    `stop_waiting` ended (a timeout, a stopped execution), answers False. `waiting=False` answers every
    token as a step that no longer waits; `error` is raised instead of resuming (Step Functions
    throttled or unavailable)."""

    def __init__(self, waiting: bool = True, error: Exception | None = None) -> None:
        """Let each token's step wait until answered (none when not `waiting`), or raise `error`."""
        self.waiting = waiting
        self.error = error
        self.calls: list[tuple[str, str, Any]] = []
        self.answered: dict[str, tuple[str, Any]] = {}
        self._stopped: set[str] = set()

    def succeed(self, task_token: str, output: dict[str, Any]) -> bool:
        """Record the success; whether the step waited (and so now has this output)."""
        return self._answer("success", task_token, output)

    def fail(self, task_token: str, error: str, cause: str) -> bool:
        """Record the failure; whether the step waited (and so now fails with this error)."""
        return self._answer("failure", task_token, error)

    def stop_waiting(self, task_token: str) -> None:
        """The step waiting on this token waits no more (its timeout passed, its execution stopped)."""
        self._stopped.add(task_token)

    def _answer(self, kind: str, task_token: str, answer: Any) -> bool:
        self.calls.append((kind, task_token, answer))
        if self.error is not None:
            raise self.error
        if not self.waiting or task_token in self.answered or task_token in self._stopped:
            return False
        self.answered[task_token] = (kind, answer)
        return True


class FakeApprovalNotifier:
    """`ApprovalNotifier` keeping each request it was asked to send as (case id, action, report)."""

    def __init__(self) -> None:
        """Start empty."""
        self.sent: list[tuple[str, Action, Report]] = []

    def notify(self, case: Case, action: Action, request: Report) -> None:
        """Record the request."""
        self.sent.append((case.case_id, action, request))


@dataclass(frozen=True)
class RequestedApproval:
    """One request `FakeApprovalRequests` was asked to make."""

    case_id: str
    index: int
    task_token: str
    approval_url: str
    timeout_seconds: int
    ticket: Ticket | None


class FakeApprovalRequests:
    """`ApprovalRequests` making links as the approval function does in shape: both links of a task token
    carry the same approval id (derived from the token), on `approval_url`, expiring `timeout_seconds`
    after `now`. Every request is recorded; `error` is raised instead when given."""

    def __init__(self, now: Callable[[], datetime] = utc_now, error: Exception | None = None) -> None:
        """Date the links' expiry by `now`; raise `error` on every request when given."""
        self._now = now
        self.error = error
        self.requested: list[RequestedApproval] = []

    def request(
        self,
        *,
        case_id: str,
        index: int,
        task_token: str,
        approval_url: str,
        timeout_seconds: int,
        ticket: Ticket | None,
    ) -> ApprovalLinks:
        """Record the request and return its links."""
        if self.error is not None:
            raise self.error
        self.requested.append(
            RequestedApproval(case_id, index, task_token, approval_url, timeout_seconds, ticket)
        )
        approval_id = hashlib.sha256(task_token.encode()).hexdigest()[:32]
        return ApprovalLinks(
            approve_url=f"{approval_url}?token=approve.{approval_id}",
            reject_url=f"{approval_url}?token=reject.{approval_id}",
            expires_at=self._now() + timedelta(seconds=timeout_seconds),
            approval_id=approval_id,
        )


class FakeWidgetSource:
    """`WidgetSource` answering every observable with a widget page of its own, or raising `error` (a
    403 for a key without VT Augment, a 429) for every one, or `errors[query]` for some. Every query is
    recorded, in order."""

    def __init__(self, error: Exception | None = None, errors: Mapping[str, Exception] | None = None) -> None:
        """Mint for every query, or raise `error` for all, or `errors[query]` for those."""
        self._lock = threading.Lock()
        self._error = error
        self._errors = dict(errors or {})
        self.queries: list[str] = []

    def widget(self, query: str, deadline: float | None = None) -> Widget:
        """`https://www.virustotal.com/ui/widget/html/fake-<n>` (n counting the queries), 3 of 70."""
        with self._lock:
            self.queries.append(query)
            number = len(self.queries)
        error = self._errors.get(query, self._error)
        if error is not None:
            raise error
        return Widget(url=f"https://www.virustotal.com/ui/widget/html/fake-{number}", detections=3, total=70)
