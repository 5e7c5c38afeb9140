"""The outbound ports of the domain, every one of them. Adapters in `vtriage.adapters` implement them on
AWS; `vtriage.fakes` implements each in memory, in the same order, for tests; `tests/contract` holds a
port's fake and its adapter to the same behaviour."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from vtriage.errors import CaseNotFoundError
from vtriage.models import (
    Action,
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
)

if TYPE_CHECKING:
    # Named in the approval and ticket ports' signatures only: the enrich function, which uses neither,
    # does not load these modules at its cold start.
    from vtriage.approval_links import ApprovalClaims, ApprovalLinks, Approver, Decision
    from vtriage.report import Report, ReportLink
    from vtriage.virustotal.widget import Widget


class CaseRepository(Protocol):
    """Where cases live."""

    def create(self, case: Case) -> bool:
        """Store a new case; False when a case with this id already exists (a repeat delivery)."""
        ...

    def get(self, case_id: str) -> Case | None:
        """The case, or None."""
        ...

    def save(self, case: Case) -> None:
        """Replace the case with this version of it."""
        ...

    def replace_pending(self, case: Case) -> bool:
        """Replace the stored case with this version while the stored one still waits for its enrichment
        (PENDING_ENRICHMENT); False when it does not (another delivery triaged it meanwhile) or is gone."""
        ...

    def record_failure(
        self, message_id: str, reason: str, body: str, *, where: str = "", alert_id: str | None = None
    ) -> bool:
        """Keep a refused record (`where` empty), or one finding of it refused alone (`where` its place
        in the body), with the reason and the body; False when this refusal is kept already."""
        ...


def existing_case(cases: CaseRepository, case_id: str) -> Case:
    """The case of this id; raises `CaseNotFoundError` when there is none (a step names a case that must
    exist)."""
    case = cases.get(case_id)
    if case is None:
        raise CaseNotFoundError(f"case {case_id} not found")
    return case


def action_at(case: Case, index: int) -> Action:
    """The case's action at this index; raises `CaseNotFoundError` when the case has no such action."""
    if index >= len(case.actions):
        raise CaseNotFoundError(f"case {case.case_id} has no action {index}")
    return case.actions[index]


class SearchableCases(CaseRepository, Protocol):
    """Cases, and a way to find the others: a rollback must know which other open cases rely on a change."""

    def list_cases(
        self, statuses: Iterable[CaseStatus] | None = None, limit: int | None = None
    ) -> list[Case]:
        """The cases in any of these statuses (every status when None), most recently updated first."""
        ...


class EnrichmentCache(Protocol):
    """Enrichments by IOC, fresh for a time that depends on the verdict."""

    def get_fresh(self, iocs: Sequence[Ioc]) -> dict[str, Enrichment]:
        """The newest enrichment of each IOC still fresh, by IOC key, marked as cached; an IOC with none
        is absent. One read for many IOCs: a batch asks for all of its IOCs at once."""
        ...

    def put(self, enrichments: Sequence[Enrichment]) -> None:
        """Keep these enrichments, in as few writes as the store allows."""
        ...


class EnrichmentRecords(Protocol):
    """The enrichments kept in the enrichments table, read back for a person: what VirusTotal said of a
    case's IOCs, its context and engines beyond what the case itself keeps."""

    def as_judged(self, iocs: Sequence[IocOutcome]) -> dict[str, Enrichment]:
        """By IOC key, the enrichment each looked-up IOC was judged on (the one fetched at its
        `fetched_at`), else the last one kept of it; an IOC with neither (never kept, or gone with the
        table's retention) or never looked up is absent. One read for many IOCs."""
        ...


class ThreatIntel(Protocol):
    """Looks an IOC up (VirusTotal) and returns the raw object, or None when it is unknown there."""

    def lookup(self, ioc: Ioc, deadline: float | None = None) -> dict[str, Any] | None:
        """The object's `data` as VirusTotal returns it, or None for 404. With a `deadline` (a
        `time.monotonic()` instant), no request and no retry runs past it."""
        ...

    def requests_per_lookup(self, ioc_type: IocType) -> int:
        """The most requests one lookup of this type sends, retries aside: the quota units it takes."""
        ...


class ExecutionStarter(Protocol):
    """Starts the triage state machine."""

    def arn_for(self, name: str) -> str:
        """The ARN the execution of this name has, or will have once started."""
        ...

    def start(self, name: str, execution_input: ExecutionInput) -> str:
        """Start (or find, when one with this name already ran) the execution; return its ARN."""
        ...


class DeadLetterQueue(Protocol):
    """Where records that can never succeed are parked, with their reason."""

    def send(
        self, message_id: str, body: str, reason: str, *, where: str = "", alert_id: str | None = None
    ) -> None:
        """Park the original body with the reason it was refused (and, for one finding refused alone,
        its place in the body and its id)."""
        ...


class ResponseActuator(Protocol):
    """Carries out one type of response action, and undoes it where that is possible."""

    def run(self, action: Action, dry_run: bool) -> Action:
        """Act (or, when dry_run, only say what acting would change); return the action with its
        outcome, and the state before and after in `before`/`after` so that it can be rolled back."""
        ...

    def rollback(self, action: Action) -> Action:
        """Restore the state recorded in `action.before`; return the action with the outcome."""
        ...


@runtime_checkable
class ForeseeingActuator(Protocol):
    """An actuator that may know an action's outcome without acting or reading anything: one that skips
    every action it is given, saying why (its resource is not configured, it may not act where the case
    lives). The plan step records that outcome at once, where `run` would have given it, so that the
    state machine spends no run step on it."""

    def outcome_without_acting(self, action: Action) -> Action | None:
        """The outcome `run` gives this action whatever its target's state and dry run or not, when known
        without calling anything; None when only running it tells."""
        ...


@runtime_checkable
class CheckpointingActuator(Protocol):
    """An actuator whose change takes several calls, so that a run cut short (its function timed out, or
    a retry was asked for half-way) could leave it half-made: just before its first change, it hands
    `checkpoint` the action as a stop must leave it on the case, with the state before in `before` and
    what a stop would leave in `detail`. The remediation saves that at once, the action still not run;
    a later run of the action (the state machine's retry) is given it and finishes from there, and a
    failure recorded for the action keeps that `before` for a rollback."""

    def run_with_checkpoint(
        self, action: Action, dry_run: bool, checkpoint: Callable[[Action], None]
    ) -> Action:
        """`ResponseActuator.run`, calling `checkpoint` before the first change (never in a dry run)."""
        ...


class ActuatorsByPlace(Protocol):
    """The actuators of each account and Region a case may be acted on in (the own account with the
    function's credentials, a member account through its role), made the first time a case lives there;
    and those acting outside AWS (a Falcon host's containment), the same whichever case."""

    def at(self, account: str, region: str, case_id: str) -> Mapping[ActionType, ResponseActuator]:
        """The actuators acting in the account and Region, their calls made for the case (a member's
        session is named after it). Raises `MemberRoleError` when the account cannot be reached."""
        ...

    def outside_aws(self) -> Mapping[ActionType, ResponseActuator]:
        """The actuators of the action types that act outside AWS (`ActionType.acts_in_aws` false): in
        the deployment's own Falcon tenant, whatever account and Region a case names."""
        ...


class BlastRadius(Protocol):
    """The blast-radius cap shared by every case: how many actions may act in the current hour."""

    def acquire(self) -> bool:
        """Take one action from the current hour's allowance; False when it is spent."""
        ...


class TicketSink(Protocol):
    """Where tickets go."""

    def open(self, case: Case, report: Report) -> Ticket:
        """Open a ticket for the case with its report, rendered in the provider's own markup."""
        ...

    def comment(self, ticket: Ticket, text: str, links: Sequence[ReportLink] = ()) -> None:
        """Add a comment to a ticket this sink opened (a repeat of its finding, an approval, ...): vtriage's
        `links` (approve, reject), when there are any, first as links the provider makes clickable, under
        the report's links header; then the text, whose sender values are escaped already."""
        ...


class QuotaLimiter(Protocol):
    """The VirusTotal request quota, shared by every worker."""

    def acquire(self, units: int = 1) -> None:
        """Take `units` requests from the quota, all or none, or raise `QuotaExhaustedError` saying when
        it reopens (a block refused may still leave room for fewer)."""
        ...


class MessageDeferral(Protocol):
    """Puts a queued record off until later without failing it or losing it."""

    def defer(self, receipt_handle: str, seconds: int) -> None:
        """Hide the received message for `seconds`, after which the queue delivers it again."""
        ...

    def requeue(self, body: str, attributes: Mapping[str, str], delay_seconds: int) -> None:
        """Queue a fresh copy of the message, delivered after `delay_seconds` (at most 900)."""
        ...


class AlertQueue(Protocol):
    """Where alerts wait for the enrich function: pushed alerts (the intake function) and polled ones
    (the pollers)."""

    def send(self, body: str, attributes: Mapping[str, str]) -> str:
        """Queue the body unchanged, with string attributes saying who sent it; return the message id."""
        ...


@dataclass(frozen=True)
class PolledAlert:
    """One alert as a vendor's API returned it: its JSON text, unchanged but for the page it came in;
    the vendor's id for it ("" when the alert names none); when it was created (None when unreadable)."""

    alert_id: str
    created_at: datetime | None
    body: str


class AlertSource(Protocol):
    """A vendor's API that lists its alerts (CrowdStrike Falcon's Alerts API, Google Workspace's Alert
    Center)."""

    def alerts_created_since(self, since: datetime) -> Iterable[PolledAlert]:
        """Every alert created at or after `since`, oldest first, read page by page as it is iterated.
        Raises `TransientError` when the vendor stays unavailable or keeps refusing for its rate limit,
        and a `ConfigurationError` when it refuses the credentials."""
        ...


# What claiming a polled alert found: it is this poll's to queue ("claimed"), it was queued already
# ("queued"), or another poll holds it and has not said yet whether it queued it ("held").
ClaimOutcome = Literal["claimed", "queued", "held"]

# How long a poll holds an alert it claimed: beyond Lambda's longest timeout (15 minutes), so that only
# a poll that died leaves a claim for a later one to take over.
POLL_CLAIM_LEASE = timedelta(minutes=16)


class PollState(Protocol):
    """What a poller remembers between polls (the guardrails table in AWS): each source's cursor, and the
    alerts it queued, so that none is queued twice."""

    def cursor(self, source: str) -> datetime | None:
        """The creation time of the newest alert the source's polls have queued, or None before the first."""
        ...

    def advance(self, source: str, to: datetime) -> None:
        """Move the source's cursor to `to`; never back (a later cursor stays)."""
        ...

    def claim(self, source: str, alert_id: str, now: datetime) -> ClaimOutcome:
        """Take the alert for queuing until `now + POLL_CLAIM_LEASE`, unless it was queued already or another
        poll holds it (a hold whose lease has passed is taken over)."""
        ...

    def mark_queued(self, source: str, alert_id: str, message_id: str, until: datetime) -> None:
        """Remember the claimed alert as queued, under this message id, until `until`."""
        ...

    def release(self, source: str, alert_id: str) -> None:
        """Give a claimed alert up (it could not be queued): the next poll claims it again."""
        ...


class RepeatLedger(Protocol):
    """Where repeats of a finding meet the case it opened (the cases table in AWS)."""

    def earlier_case(self, repeat_key: str) -> str | None:
        """The id of the case this repeat key opened, while its window is open; else None."""
        ...

    def remember(self, repeat_key: str, case_id: str, until: datetime) -> None:
        """Point the repeat key at this case until `until`."""
        ...

    def fold(self, case_id: str, repeat: Repeat, entry: HistoryEntry) -> bool:
        """Count the repeat on the case and add `entry` to its history, atomically; False when the case is
        gone or already counts this repeat (by its case id)."""
        ...


class FindingLedger(Protocol):
    """Where the contents delivered under one finding id and version meet (the cases table in AWS)."""

    def join(self, finding_key: str, case_id: str) -> list[str]:
        """Add the case to those of its finding id and version; return the others already there."""
        ...

    def note_variant(self, case_id: str, variant_case_id: str, entry: HistoryEntry) -> bool:
        """Name `variant_case_id` on the case and add `entry` to its history, atomically; False when the
        case is gone or names it already."""
        ...


# How long one request holds an approval while it passes the decision on: well beyond the approval
# function's timeout, so that only a request that died leaves a claim for a later one to take.
CLAIM_LEASE = timedelta(seconds=60)


class ApprovalStore(Protocol):
    """Pending approvals, each decided at most once."""

    def put_pending(self, claims: ApprovalClaims, task_token: str) -> None:
        """Keep the waiting step's task token under the approval id, until the approval expires."""
        ...

    def is_pending(self, approval_id: str, now: datetime) -> bool:
        """Whether the approval waits for a decision (a claim whose lease has passed waits again)."""
        ...

    def claim(self, approval_id: str, decision: Decision, approver: Approver, at: datetime) -> str | None:
        """Hold the pending approval for this decision and approver until `at + CLAIM_LEASE`; its task
        token, or None when it is decided, held by another request, or unknown."""
        ...

    def release(self, approval_id: str) -> None:
        """Let a held approval wait again: its decision never reached the waiting step."""
        ...

    def settle(self, approval_id: str) -> None:
        """Mark a held approval decided for good: the waiting step has its decision, or waits no more."""
        ...


class TaskCallback(Protocol):
    """Resumes the waiting state machine step."""

    def succeed(self, task_token: str, output: dict[str, Any]) -> bool:
        """Resume it with this output; False when the step no longer waits (timed out, stopped)."""
        ...

    def fail(self, task_token: str, error: str, cause: str) -> bool:
        """Fail it with this error; False when the step no longer waits."""
        ...


class ApprovalNotifier(Protocol):
    """Tells people that an action waits for them."""

    def notify(self, case: Case, action: Action, request: Report) -> None:
        """Send the approval request, its links first."""
        ...


class ApprovalRequests(Protocol):
    """Asks the approval function to hold one waiting action for a person: it keeps the waiting step's
    task token, sends the approve and reject links to the approvers, and returns the links to the caller
    alone (never into the execution's history), so that the case's ticket can carry them."""

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
        """The links of the action `index` of the case, valid `timeout_seconds`; the approval request
        names `ticket` when the case has one. Raises `TransientError` when the approval function is
        throttled or briefly unavailable."""
        ...


class WidgetSource(Protocol):
    """Mints VirusTotal's VT Augment widget of an observable, for a page to frame (display only)."""

    def widget(self, query: str, deadline: float | None = None) -> Widget:
        """The widget of the observable (an IOC's value): a URL valid three days and the detection
        ratio. Raises a `VirusTotalError` when VirusTotal refuses (403: the key's licence lacks VT
        Augment; 429: its quota is spent) or cannot be reached before `deadline` (a `time.monotonic()`
        instant)."""
        ...
