"""Tickets: one per case, holding what an analyst needs to act on it, kept up to date as the case moves.

The ticket function takes four steps of the state machine (`TicketDesk.handle`):

- `open` (the last step of every branch but closure): opens the case's ticket with its report, or, when
  one is open already, tells it what changed since it last heard (repeats of the finding, the outcome of
  the remediation, an error);
- `before_approval` (before each approval wait of a remediation): opens the ticket with the case as it
  stands, so that it exists when a person is asked to decide; by default (ApprovalLinksInTickets=false)
  it also tells the ticket that the action waits for a person, who decides (the approvers, through the
  approvals topic), until when, and links the case's read-only page: never a link that decides;
- `request_approval` (the waiting step itself, with ApprovalLinksInTickets=true only): asks the approval
  function to hold the action for a person (it keeps the step's task token and sends the links to the
  approvers) and puts the approve and reject links, with their expiry, on the ticket. By default the
  waiting step invokes the approval function itself, and the ticket function never fetches a link;
- `decision` (once a person decided): tells the ticket who approved or rejected the action, and when.

The report: vtriage's own links first (the case page link), then the alert, its resources, every IOC with
its verdict, reasons, engines and the context VirusTotal gave (read from the enrichments table, as the
case was judged on it), the actions done or planned and where, and the error; each value escaped on its
labelled line (`vtriage.display`). Each update is a comment. A retried step tells the ticket nothing
twice: what it was told is kept on it (`Ticket.told`), by digest.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from aws_lambda_powertools import Logger
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter

from vtriage.action_text import action_name, describe, not_contained, status_words
from vtriage.approval_links import ApprovalLinks
from vtriage.display import one_line, severity_guessed
from vtriage.errors import ConfigurationError, VtriageError
from vtriage.models import (
    NO_ACTION_ON_SUBJECT,
    Action,
    ActionStatus,
    Alert,
    Branch,
    Case,
    CaseStatus,
    Enrichment,
    HistoryEntry,
    IocOutcome,
    IocType,
    Resource,
    Subject,
    Ticket,
)
from vtriage.ports import (
    ApprovalRequests,
    CaseRepository,
    EnrichmentRecords,
    TicketSink,
    action_at,
    existing_case,
)
from vtriage.report import Report, ReportLine, ReportLink

logger = Logger(child=True)

MAX_ERROR_BYTES = 1024
SAMPLE_LINE = "yes: its detector generated it to test a pipeline; never acted on automatically"
TOP_ENGINES = 5
MAX_LISTED = 5
MAX_WHOIS_LINES_SHOWN = 4
MAX_CATEGORIES_SHOWN = 3
# The updates a ticket remembers having been told (the oldest are forgotten first).
MAX_TOLD = 50
_INDENT = 6
_RESOLUTION_TYPES = ("A", "AAAA", "CNAME")
_ESCALATED = "escalated to the ticket"
# Who decides a waiting action when its links stay with the approvers (ApprovalLinksInTickets=false).
APPROVERS_DECIDE = (
    "the approvers, asked through the approvals topic with links only they receive; this ticket carries "
    "no link that decides"
)


class CasePageLink(BaseModel):
    """A link to the case's page on the approval function's URL: the case read-only, until it expires."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str
    expires_at: datetime


class TicketResult(BaseModel):
    """What the `open` and `before_approval` steps return to the state machine."""

    model_config = ConfigDict(extra="forbid")

    case_id: str
    ticket: Ticket


class ApprovalRequested(BaseModel):
    """What the `request_approval` step returns: never the links, which go to people only."""

    model_config = ConfigDict(extra="forbid")

    case_id: str
    index: int
    expires_at: datetime | None
    on_ticket: bool = Field(description="whether the ticket now carries the links")


class TicketTold(BaseModel):
    """What the `decision` step returns: whether the ticket heard of the decision now."""

    model_config = ConfigDict(extra="forbid")

    case_id: str
    told: bool


class OpenTicketTask(BaseModel):
    """The `open` step (a payload naming no step is one) and the `before_approval` step, which names the
    action about to wait and how long it may wait."""

    model_config = ConfigDict(extra="ignore")

    step: Literal["open", "before_approval"] = "open"
    case_id: str
    error: dict[str, str] | None = Field(default=None, description="the Error and Cause a Catch caught")
    index: int | None = Field(default=None, ge=0, description="before_approval: the action about to wait")
    approval_timeout_seconds: int | None = Field(default=None, ge=1)


class ApprovalTicketTask(BaseModel):
    """The `request_approval` step: what the state machine's waitForTaskToken step sends."""

    model_config = ConfigDict(extra="ignore")

    step: Literal["request_approval"]
    case_id: str
    index: int = Field(ge=0)
    task_token: str = Field(min_length=1)
    approval_url: str = Field(pattern=r"^https?://")
    approval_timeout_seconds: int = Field(ge=1)


class DecisionTicketTask(BaseModel):
    """The `decision` step: a person approved or rejected the action `index`."""

    model_config = ConfigDict(extra="ignore")

    step: Literal["decision"]
    case_id: str
    index: int = Field(ge=0)


def _step_of(payload: Any) -> str:
    step = payload.get("step", "open") if isinstance(payload, dict) else getattr(payload, "step", "open")
    return "open" if step == "before_approval" else str(step)


TicketTask = Annotated[
    Annotated[OpenTicketTask, Tag("open")]
    | Annotated[ApprovalTicketTask, Tag("request_approval")]
    | Annotated[DecisionTicketTask, Tag("decision")],
    Discriminator(_step_of),
]
_TASKS: TypeAdapter[TicketTask] = TypeAdapter(TicketTask)


def ticket_task(event: Mapping[str, Any]) -> OpenTicketTask | ApprovalTicketTask | DecisionTicketTask:
    """The step a state machine payload asks for; a payload naming no step opens the ticket."""
    return _TASKS.validate_python(dict(event))


@dataclass(frozen=True)
class TicketDesk:
    """The ticket function's steps over its ports (see the module docstring)."""

    cases: CaseRepository
    # The configured provider, made when a step first needs it: a provider that cannot be reached or
    # configured never stops an approval from being asked for.
    sink: Callable[[], TicketSink]
    enrichments: EnrichmentRecords | None
    # The approval function, asked for the links of a waiting action to put on the ticket: only with
    # ApprovalLinksInTickets=true. None (the default deployment): no step fetches a link that decides, and
    # a ticket says who decides a waiting action instead.
    approvals: ApprovalRequests | None
    # The case page link of a case, made now; None when none is configured or its key cannot be read.
    case_page_link: Callable[[str, datetime], CasePageLink | None]

    def handle(
        self, task: OpenTicketTask | ApprovalTicketTask | DecisionTicketTask, now: datetime
    ) -> TicketResult | ApprovalRequested | TicketTold:
        """Carry out the step."""
        if isinstance(task, ApprovalTicketTask):
            return request_approval_on_ticket(task, self.cases, self.approvals, self.sink, now)
        if isinstance(task, DecisionTicketTask):
            return tell_decision(task, self.cases, self.sink, now)
        return open_ticket(
            task,
            self.cases,
            self.sink(),
            now,
            enrichments=self.enrichments,
            case_page=lambda: self.case_page_link(task.case_id, now),
            links_on_ticket=self.approvals is not None,
        )


def open_ticket(
    task: OpenTicketTask,
    cases: CaseRepository,
    sink: TicketSink,
    now: datetime,
    *,
    enrichments: EnrichmentRecords | None = None,
    case_page: Callable[[], CasePageLink | None] = lambda: None,
    links_on_ticket: bool = False,
) -> TicketResult:
    """Open the case's ticket through the sink and store it on the case; a case has at most one.

    The `open` step settles the case first: a caught error (`task.error`) marks it FAILED and is kept on
    it; otherwise it is TICKETED (a remediated case stays REMEDIATED). When the case has a ticket already,
    the ticket is told what it has not heard: the finding's repeats, and (the `open` step) where the case
    stands now when that changed since it was opened or last told (a remediation's outcome after its
    approvals, an error). The `before_approval` step opens the ticket and changes nothing else of the
    case; unless the approval links go on the ticket (`links_on_ticket`, ApprovalLinksInTickets=true), it
    then tells the ticket, once, that the action `task.index` waits for a person (`waiting_comment`).
    The report reads each IOC's enrichment from `enrichments` (the enrichments table).
    """
    made: list[CasePageLink | None] = []

    def page() -> CasePageLink | None:
        # Made once a step: the report and the waiting comment link the same page.
        if not made:
            made.append(case_page())
        return made[0]

    ticket = _open_or_update(
        task, cases, sink, now, enrichments=enrichments, case_page=page, links_on_ticket=links_on_ticket
    )
    if task.step == "before_approval" and not links_on_ticket:
        ticket = _tell_waiting(task, cases, sink, now, page) or ticket
    return TicketResult(case_id=task.case_id, ticket=ticket)


def _open_or_update(
    task: OpenTicketTask,
    cases: CaseRepository,
    sink: TicketSink,
    now: datetime,
    *,
    enrichments: EnrichmentRecords | None,
    case_page: Callable[[], CasePageLink | None],
    links_on_ticket: bool,
) -> Ticket:
    """`open_ticket` but for the waiting comment: the case's ticket, opened or told what it has not heard."""
    case = existing_case(cases, task.case_id)
    before = case.model_copy(deep=True)
    if task.step == "open":
        _settle(case, task, now)
    if case.ticket is None:
        read = enrichments.as_judged(case.iocs) if enrichments is not None else None
        report = render_report(case, enrichments=read, case_page=case_page(), links_on_ticket=links_on_ticket)
        opened = sink.open(case, report)
        case.ticket = opened.model_copy(update={"told": [_outcome_key(case)]})
        case.repeats_commented = case.repeat_count
        case.updated_at = now
        cases.save(case)
        return case.ticket

    ticket = case.ticket
    if case.uncommented_repeats:
        # A repeat of the finding folded into this case: the ticket hears of it, no new ticket opens.
        # The comment names the repeat's finding id: escaped as any sender's value.
        sink.comment(ticket, one_line(case.repeat_comment(), limit=MAX_ERROR_BYTES))
        case.repeats_commented = case.repeat_count
    outcome = _outcome_key(case)
    if task.step == "open" and outcome not in ticket.told:
        sink.comment(ticket, outcome_comment(case))
        case.ticket = _told(ticket, outcome)
    if case != before:
        case.updated_at = now
        cases.save(case)
    return case.ticket


def _tell_waiting(
    task: OpenTicketTask,
    cases: CaseRepository,
    sink: TicketSink,
    now: datetime,
    case_page: Callable[[], CasePageLink | None],
) -> Ticket | None:
    """Tell the case's ticket, once, that the action `task.index` waits for a person, with the case's
    read-only page as its only link (ApprovalLinksInTickets=false); the ticket as it is kept then."""
    if task.index is None:
        return None
    case = existing_case(cases, task.case_id)
    if case.ticket is None:
        return None
    key = _digest("waiting", f"{task.index}")
    if key in case.ticket.told:
        return case.ticket
    expires = (
        now + timedelta(seconds=task.approval_timeout_seconds) if task.approval_timeout_seconds else None
    )
    page = case_page()
    links = (ReportLink(label="Case page", url=page.url),) if page is not None else ()
    sink.comment(case.ticket, waiting_comment(case, task.index, expires, page), links=links)
    _remember(cases, case.case_id, now, told=key)
    return existing_case(cases, task.case_id).ticket


def request_approval_on_ticket(
    task: ApprovalTicketTask,
    cases: CaseRepository,
    approvals: ApprovalRequests | None,
    sink: Callable[[], TicketSink],
    now: datetime,
) -> ApprovalRequested:
    """Ask the approval function to hold the action for a person (it keeps the waiting step's token and
    sends the links to the approvers), then put the links on the case's ticket.

    The links reach the ticket as a comment, with their expiry and what the action will change; a retry
    puts them there once. When the ticket cannot take them (its provider fails, or the case has no ticket
    because opening it failed), the approval stands all the same: the approvers have the links, and the
    case's history says why the ticket lacks them. An approval the approval function cannot hold raises,
    for the waiting step's Retry and Catch."""
    if approvals is None:
        raise ConfigurationError(
            "this ticket function fetches no approval link (ApprovalLinksInTickets is false): the state "
            "machine's waiting step must invoke the approval function itself"
        )
    case = existing_case(cases, task.case_id)
    action = action_at(case, task.index)
    links = approvals.request(
        case_id=case.case_id,
        index=task.index,
        task_token=task.task_token,
        approval_url=task.approval_url,
        timeout_seconds=task.approval_timeout_seconds,
        ticket=case.ticket,
    )

    def requested(on_ticket: bool) -> ApprovalRequested:
        return ApprovalRequested(
            case_id=case.case_id, index=task.index, expires_at=links.expires_at, on_ticket=on_ticket
        )

    if case.ticket is None:
        return requested(on_ticket=False)
    key = _digest("approval", links.approval_id or links.approve_url)
    if key in case.ticket.told:
        return requested(on_ticket=True)
    try:
        sink().comment(
            case.ticket, approval_comment(case, task.index, links), links=approval_report_links(links)
        )
    except VtriageError as error:
        logger.warning("the approval links could not be put on the ticket", extra={"case_id": case.case_id})
        _remember(
            cases,
            case.case_id,
            now,
            note=f"{action.type.value} {one_line(action.target)}: its approval links could not be put on "
            f"ticket {one_line(case.ticket.id)} ({type(error).__name__}: {one_line(str(error))}); the "
            "approvers received them",
        )
        return requested(on_ticket=False)
    _remember(cases, case.case_id, now, told=key)
    return requested(on_ticket=True)


def tell_decision(
    task: DecisionTicketTask, cases: CaseRepository, sink: Callable[[], TicketSink], now: datetime
) -> TicketTold:
    """Tell the case's ticket that a person approved or rejected the action, who (as far as the request
    proves it) and when; once. A case without a ticket is left alone: its last step opens one with
    everything."""
    case = existing_case(cases, task.case_id)
    if case.ticket is None:
        return TicketTold(case_id=case.case_id, told=False)
    text = decision_comment(case, task.index)
    key = _digest("decision", text)
    if key in case.ticket.told:
        return TicketTold(case_id=case.case_id, told=False)
    sink().comment(case.ticket, text)
    _remember(cases, case.case_id, now, told=key)
    return TicketTold(case_id=case.case_id, told=True)


def describe_error(error: dict[str, str]) -> str:
    """`Error: Cause` from what a Catch caught, at most 1 KB (DynamoDB items and emails stay small).

    A Lambda error's Cause is a JSON document: its `errorMessage` is what a person needs.
    """
    name = error.get("Error") or "Error"
    cause = error.get("Cause") or ""
    try:
        parsed = json.loads(cause)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("errorMessage"), str):
        cause = parsed["errorMessage"]
    text = f"{name}: {cause}" if cause else name
    return _trim_utf8(text, MAX_ERROR_BYTES)


def render_report(
    case: Case,
    *,
    enrichments: Mapping[str, Enrichment] | None = None,
    case_page: CasePageLink | None = None,
    links_on_ticket: bool = False,
) -> Report:
    """The case as a report: the case page link first when there is one, then the alert, its resources,
    every IOC and why, the actions and the error, each value escaped on its labelled line.

    `enrichments`, by IOC key (`type#value`), as read from the enrichments table, add to each IOC looked up
    the engines that flag it and what VirusTotal's context answers first for its type (see
    `docs/virustotal.md`, "What a ticket shows"); an IOC the table no longer holds says so.
    `links_on_ticket` (ApprovalLinksInTickets=true): the waiting actions' approve and reject links follow on
    the ticket; otherwise the report says who decides them, and carries no link that decides.
    """
    alert = case.alert
    lines = [
        _line("Title", alert.title),
        _line("Case", case.case_id),
        _status_line(case),
        *_not_contained_lines(case),
        _line("Verdict", case.verdict.value.upper()),
        _line(
            "Severity",
            f"{alert.severity.shown_label.upper()} {alert.severity.score:g}" + _guessed(alert.notes),
        ),
        *_waiting_lines(case, links_on_ticket=links_on_ticket),
        _BLANK,
        ReportLine(label="Alert"),
        _line("Type", alert.type, indent=2),
        _line("Source", alert.source, indent=2),
        _line("ID", alert.id, indent=2),
        _line("Account", alert.account, indent=2),
        _line("Region", alert.region, indent=2),
        *_vendor_lines(alert),
        _line("Created", alert.created_at.isoformat(), indent=2),
        _line("Updated", alert.updated_at.isoformat(), indent=2),
        *([_line("Sent through", case.provenance.described, indent=2)] if case.provenance else []),
        *([_line("Sample finding", SAMPLE_LINE, indent=2)] if alert.sample else []),
        *(_line("Not acted on", reason, indent=2) for reason in alert.not_actionable),
        *(_line("Note", note, indent=2) for note in alert.notes),
        _BLANK,
        ReportLine(label=f"Resources ({len(alert.resources) + len(alert.subjects)})"),
        *(
            [_resource_line(resource) for resource in alert.resources]
            + [_subject_line(subject) for subject in alert.subjects]
            or [_NONE]
        ),
        _BLANK,
        ReportLine(label=f"Indicators of compromise ({len(case.iocs)})"),
        *([line for ioc in case.iocs for line in _ioc_lines(ioc, enrichments)] or [_NONE]),
        _BLANK,
        *_actions_section(case, explained=True),
    ]
    if case.variant_case_ids:
        # Another content delivered under this finding's id and version: triaged as a case of its own.
        variants = ", ".join(case.variant_case_ids)
        lines += [_BLANK, _line("Same finding id and version, other content", variants)]
    if case.error:
        lines += [_BLANK, _line("Error", case.error)]
    headline = f"{alert.severity.shown_label.upper()} {alert.severity.score:g}, {case.verdict.value.upper()}"
    if not_contained(case.actions):
        headline += ", NOT CONTAINED"
    links: list[ReportLink] = []
    notes: list[str] = []
    if case_page is not None:
        links.append(ReportLink(label="Case page", url=case_page.url))
        notes.append(case_page_note(case_page))
    return Report(headline=headline, links=tuple(links), links_note=". ".join(notes), lines=tuple(lines))


def outcome_comment(case: Case) -> str:
    """What a ticket opened earlier is told once the case moved on: its status, its actions and the
    error, as the report shows them."""
    lines = [
        ReportLine(label="Update from vtriage: where the case stands now"),
        _status_line(case),
        *_not_contained_lines(case),
        *_actions_section(case, explained=False),
        *([_line("Error", case.error)] if case.error else []),
    ]
    return "\n".join(line.text for line in lines)


def approval_comment(case: Case, index: int, links: ApprovalLinks) -> str:
    """What the ticket is told when an action is held for a person, beside the approve and reject links:
    what the links do and until when (`approval_links_note`), which action, where, what it changes, how it
    is rolled back and why it waits."""
    action = action_at(case, index)
    text = describe(action)
    lines = [
        ReportLine(label=f"Approval requested for action {index + 1} of {len(case.actions)}"),
        ReportLine(label=approval_links_note(links)),
        _line("Action", f"{text.name} {one_line(action.target)}", escape=False),
        *([_line("Where", _where(action.account, action.region), escape=False)] if action.account else []),
        _line("Changes", text.changes, escape=False),
        _line("Rollback", text.rollback, escape=False),
        _line("Why it waits", action.detail or "the playbook asks for approval"),
    ]
    return "\n".join(line.text for line in lines)


def waiting_comment(
    case: Case, index: int, expires_at: datetime | None, case_page: CasePageLink | None
) -> str:
    """What the ticket is told when an action is about to wait for a person and its links stay with the
    approvers (ApprovalLinksInTickets=false): that it waits, who decides, until when, which action, where,
    what it changes, how it is rolled back and why it waits; the case page, which decides nothing."""
    action = action_at(case, index)
    text = describe(action)
    until = expires_at.isoformat(timespec="minutes") if expires_at is not None else "the approval's timeout"
    lines = [
        ReportLine(label=f"Waiting for a person: action {index + 1} of {len(case.actions)}"),
        _line("Who decides", APPROVERS_DECIDE, escape=False),
        _line("Until", f"{until}; without a decision by then, the action is escalated on this ticket"),
        _line("Action", f"{text.name} {one_line(action.target)}", escape=False),
        *([_line("Where", _where(action.account, action.region), escape=False)] if action.account else []),
        _line("Changes", text.changes, escape=False),
        _line("Rollback", text.rollback, escape=False),
        _line("Why it waits", action.detail or "the playbook asks for approval"),
    ]
    if case_page is not None:
        lines.append(ReportLine(label=case_page_note(case_page)))
    return "\n".join(line.text for line in lines)


def decision_comment(case: Case, index: int) -> str:
    """What the ticket is told once a person approved or rejected the action: the decision as the case's
    history records it (when, from which address and user agent), and what follows."""
    action = action_at(case, index)
    approved = _decision_note(case, action, "approved")
    rejected = _decision_note(case, action, "rejected")
    head = f"Decision on action {index + 1} of {len(case.actions)}, {action_name(action.type)} "
    head += one_line(action.target)
    if rejected is not None and (approved is None or rejected.at >= approved.at):
        return f"{head}: {one_line(rejected.note)}. It does not run."
    if approved is not None:
        return (
            f"{head}: {one_line(approved.note)}. It runs now; this ticket hears how it went when the "
            "remediation ends."
        )
    return f"{head}: {status_words(action.status)}" + (
        f" - {one_line(action.detail)}" if action.detail else ""
    )


def approval_report_links(approval: ApprovalLinks) -> tuple[ReportLink, ReportLink]:
    """The approve and reject links, labelled as a report or a comment shows them first."""
    return (
        ReportLink(label="Approve", url=approval.approve_url),
        ReportLink(label="Reject", url=approval.reject_url),
    )


def approval_links_note(approval: ApprovalLinks) -> str:
    """What the approval links do and until when."""
    expires = approval.expires_at.isoformat() if approval.expires_at is not None else "never"
    return (
        f"Approval needed: open one link (each works once; they expire at {expires}); a link opens a "
        "confirmation page, and only its button decides. Without a decision by then, the action is "
        "escalated on this ticket"
    )


def case_page_note(case_page: CasePageLink) -> str:
    """What the case page link shows and until when."""
    expires = case_page.expires_at.isoformat(timespec="minutes")
    return f"The case page shows the case and its VirusTotal reports, decides nothing, works until {expires}"


_BLANK = ReportLine()
_NONE = ReportLine(label="(none)", indent=2)


def _settle(case: Case, task: OpenTicketTask, now: datetime) -> None:
    """The case's branch and status as its last step leaves them: FAILED with a caught error, else
    TICKETED unless remediated."""
    if case.branch is not Branch.REMEDIATE:
        case.branch = Branch.TICKET
    if task.error:
        case.error = describe_error(task.error)
        if case.status is not CaseStatus.FAILED:
            case.record(CaseStatus.FAILED, now)
    elif case.status not in (CaseStatus.REMEDIATED, CaseStatus.TICKETED):
        case.record(CaseStatus.TICKETED, now)


def _remember(
    cases: CaseRepository, case_id: str, now: datetime, *, told: str | None = None, note: str | None = None
) -> None:
    """Keep on the case, read afresh (a person's decision may have been written meanwhile), what its
    ticket was told, or a note of what it could not be told."""
    case = existing_case(cases, case_id)
    if told is not None and case.ticket is not None:
        case.ticket = _told(case.ticket, told)
    if note is not None:
        case.record(case.status, now, note)
    case.updated_at = now
    cases.save(case)


def _told(ticket: Ticket, key: str) -> Ticket:
    return ticket.model_copy(update={"told": [*ticket.told, key][-MAX_TOLD:]})


def _digest(kind: str, text: str) -> str:
    return f"{kind}#{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def _outcome_key(case: Case) -> str:
    return _digest("outcome", outcome_comment(case))


def _decision_note(case: Case, action: Action, verb: str) -> HistoryEntry | None:
    """The case's latest history line recording that a person made this decision on the action."""
    prefix = f"{action.type.value} {one_line(action.target)} {verb} by "
    return next((entry for entry in reversed(case.history) if entry.note.startswith(prefix)), None)


def _status_line(case: Case) -> ReportLine:
    return _line("Status", case.status.value + (f" (branch: {case.branch.value})" if case.branch else ""))


def _not_contained_lines(case: Case) -> list[ReportLine]:
    """Right below the status: the actions that were to cut the threat off and did not, and why (the
    status is then never REMEDIATED), so that no one reads the case as contained."""
    return [_line("Not contained", line, escape=False) for line in not_contained(case.actions)]


def _waiting_lines(case: Case, *, links_on_ticket: bool) -> list[ReportLine]:
    """A line saying that actions wait for a person, while they do (not yet escalated), and who decides."""
    waiting = [
        action
        for action in case.actions
        if action.status is ActionStatus.PENDING_APPROVAL and _ESCALATED not in action.detail
    ]
    if not waiting:
        return []
    count = f"{len(waiting)} action{'s' if len(waiting) != 1 else ''}"
    if links_on_ticket:
        return [_line("Waiting for a person", f"{count}: the approve and reject links follow on this ticket")]
    return [_line("Waiting for a person", f"{count}: {APPROVERS_DECIDE}")]


def _actions_section(case: Case, *, explained: bool) -> list[ReportLine]:
    """The actions done or planned, each with where it runs, its status and outcome; `explained` adds what
    each changes and how it is rolled back (`vtriage.action_text`)."""
    lines = [ReportLine(label=f"Actions ({len(case.actions)})")]
    for action in case.actions:
        place = f", {_where(action.account, action.region)}" if action.account else ""
        status = status_words(action.status)
        # An action's outcome says what it changed, from what: longer than other values.
        detail = one_line(action.detail, limit=MAX_ERROR_BYTES)
        if _words(detail).startswith(_words(status)):
            # The outcome names the status already ("dry run, nothing changed: would move ...").
            status, detail = detail, ""
        value = f"{one_line(action.target)}{place}: {status}" + (f" - {detail}" if detail else "")
        lines.append(
            _line(f"- {action_name(action.type)} ({action.type.value})", value, indent=2, escape=False)
        )
        if explained:
            text = describe(action)
            lines.append(_line("changes", text.changes, indent=_INDENT, escape=False))
            lines.append(_line("rollback", text.rollback, indent=_INDENT, escape=False))
    return lines if case.actions else [*lines, _NONE]


def _words(text: str) -> str:
    """The text's words, lower case, without punctuation: "dry run, nothing changed" reads as "dry run:
    nothing changed"."""
    return " ".join(re.findall(r"[a-z0-9]+", text.casefold()))


def _where(account: str, region: str | None) -> str:
    """Where an action ran, as its ticket line says it: the finding's account and Region."""
    return f"account {one_line(account)}, Region {one_line(region or '')}"


def _guessed(notes: tuple[str, ...]) -> str:
    """What the severity line adds when intake had to guess the severity."""
    if not severity_guessed(notes):
        return ""
    return " (guessed by vtriage: see the notes)"


def _line(label: str, value: object, indent: int = 0, *, escape: bool = True) -> ReportLine:
    """A labelled line; the value escaped unless the caller composed it of escaped parts."""
    return ReportLine(label=label, value=one_line(value) if escape else str(value), indent=indent)


def _vendor_lines(alert: Alert) -> list[ReportLine]:
    """What an alert from outside AWS says in its vendor's terms, each value escaped (the console link
    too: it is the sender's)."""
    vendor = alert.vendor
    if vendor is None:
        return []
    named = (
        ("Platform", vendor.platform),
        ("Product", vendor.product),
        ("Customer", vendor.tenant),
        ("Host", vendor.host),
        ("User", vendor.user),
        ("Console", vendor.console_url),
    )
    return [_line(label, value, indent=2) for label, value in named if value]


def _resource_line(resource: Resource) -> ReportLine:
    facts = []
    if resource.vpc_id:
        facts.append(f"vpc {one_line(resource.vpc_id)}")
    if resource.network_interface_ids:
        facts.append("interfaces " + ", ".join(one_line(eni) for eni in resource.network_interface_ids))
    if resource.addresses:
        facts.append("addresses " + ", ".join(one_line(address) for address in resource.addresses))
    if resource.user_name:
        facts.append(f"user {one_line(resource.user_name)}")
    if resource.bucket:
        facts.append(f"bucket {one_line(resource.bucket)}")
    if resource.key:
        facts.append(f"key {one_line(resource.key)}")
    value = one_line(resource.id) + (f" ({'; '.join(facts)})" if facts else "")
    return _line(f"- {resource.type.value}", value, indent=2, escape=False)


def _subject_line(subject: Subject) -> ReportLine:
    """What the alert is about that no action acts on, said so: the kind in words, its name and id."""
    return _line(f"- {subject.kind}", f"{subject.named}: {NO_ACTION_ON_SUBJECT}", indent=2, escape=False)


def _ioc_lines(ioc: IocOutcome, enrichments: Mapping[str, Enrichment] | None) -> list[ReportLine]:
    head = f"- {ioc.type.value}"
    if ioc.skipped_reason:
        value = f"{one_line(ioc.value)}: not looked up ({one_line(ioc.skipped_reason)})"
        return [_line(head, value, indent=2, escape=False)]
    lines = [_line(head, f"{one_line(ioc.value)}: {ioc.verdict.value.upper()}", indent=2, escape=False)]
    if ioc.virustotal_unavailable:
        # Never looked up: VirusTotal failed until the record's last delivery. No engine counted, no context
        # was ever kept; its reasons say what failed.
        lines.append(_line("detections", "none: VirusTotal could not be reached for it", indent=_INDENT))
        lines += [_line("why", reason, indent=_INDENT) for reason in ioc.reasons]
        return lines
    counts = f"{ioc.malicious} malicious, {ioc.suspicious} suspicious of {ioc.total} engines"
    lines.append(_line("detections", counts + (" (from cache)" if ioc.cached else ""), indent=_INDENT))
    lines += [_line("why", reason, indent=_INDENT) for reason in ioc.reasons]
    if enrichments is not None:
        enrichment = enrichments.get(f"{ioc.type.value}#{ioc.value}")
        if enrichment is None:
            lines.append(
                _line(
                    "context", "not kept: the enrichments table no longer holds this lookup", indent=_INDENT
                )
            )
        else:
            if ioc.fetched_at is not None and enrichment.fetched_at != ioc.fetched_at:
                newer = (
                    f"VirusTotal's answer of {enrichment.fetched_at.isoformat()} (the one judged on is gone)"
                )
                lines.append(_line("context of", newer, indent=_INDENT))
            lines += _context_lines(ioc.type, enrichment.context)
            if enrichment.note:
                lines.append(_line("note", enrichment.note, indent=_INDENT))
    if ioc.link:
        lines.append(ReportLine(label="VirusTotal", link=ioc.link, indent=_INDENT))
    lines.append(_line("found at", ioc.found_at, indent=_INDENT))
    return lines


def _context_lines(ioc_type: IocType, context: Mapping[str, Any]) -> list[ReportLine]:
    """The engines that flag the IOC, then what an analyst asks first about this type of IOC (the
    context `vtriage.virustotal.context.trim_context` keeps), each on its labelled line."""
    facts: list[tuple[str, str]] = []
    engines = _top_engines(context.get("detections"))
    if engines:
        facts.append(("engines", engines))
    gti = _gti(context.get("gti_assessment"))
    if gti:
        facts.append(("Google TI", gti))
    facts += _TYPE_FACTS[ioc_type](context)
    if context.get("first_submission_date"):
        facts.append(("first seen", str(context["first_submission_date"])))
    if context.get("last_analysis_date"):
        facts.append(("last analysed", str(context["last_analysis_date"])))
    facts += _related_facts(context)
    facts += [("whois", line) for line in _whois_lines(context.get("whois"))]
    dropped = context.get("dropped_for_size")
    if isinstance(dropped, list) and dropped:
        facts.append(("left out", "for size: " + ", ".join(str(name) for name in dropped)))
    return [_line(label, value, indent=_INDENT) for label, value in facts if value]


def _ip_facts(context: Mapping[str, Any]) -> list[tuple[str, str]]:
    network = _joined(
        f"AS{context['asn']}" if context.get("asn") is not None else None,
        context.get("as_owner"),
        context.get("country"),
        context.get("network"),
    )
    whois = _mapping(context.get("whois_fields"))
    return [
        ("network", network),
        ("registered to", _joined(whois.get("organization"), whois.get("network_name"))),
        ("resolved from", _listed([item.get("host") for item in _dicts(context.get("resolutions"))])),
    ]


def _domain_facts(context: Mapping[str, Any]) -> list[tuple[str, str]]:
    whois = _mapping(context.get("whois_fields"))
    created = context.get("creation_date") or whois.get("creation_date")
    registration = _joined(
        context.get("registrar") or whois.get("registrar"),
        f"created {created}" if created else None,
        f"expires {whois['expiry_date']}" if whois.get("expiry_date") else None,
    )
    registrant = _joined(whois.get("registrant_organization"), whois.get("registrant_country"))
    resolved = [
        _joined(item.get("ip"), f"on {item['date'][:10]}" if item.get("date") else None, separator=" ")
        for item in _dicts(context.get("resolutions"))
    ]
    return [
        ("registered", registration),
        ("registrant", registrant),
        ("resolves to", _dns_records_line(context.get("last_dns_records"))),
        ("resolved to", _listed(resolved)),
        ("categories", _categories_line(context.get("categories"))),
    ]


def _url_facts(context: Mapping[str, Any]) -> list[tuple[str, str]]:
    redirections = context.get("redirection_chain")
    return [
        ("final URL", str(context.get("last_final_url") or "")),
        ("title", str(context.get("title") or "")),
        ("served by", str(context.get("serving_ip_address") or "")),
        ("redirects through", _listed(redirections if isinstance(redirections, list) else [])),
        ("threat names", _listed(context.get("threat_names") or [])),
        ("categories", _categories_line(context.get("categories"))),
    ]


def _file_facts(context: Mapping[str, Any]) -> list[tuple[str, str]]:
    described = _joined(
        context.get("type_description"),
        f"{context['size']} bytes" if context.get("size") is not None else None,
    )
    name = str(context.get("meaningful_name") or "")
    kept = [str(other) for other in context.get("names") or []]
    names = [other for other in kept if other != name]
    total = context.get("names_total")
    # The names VirusTotal knows beyond those the context kept.
    unkept = max(0, total - len(kept)) if isinstance(total, int) else 0
    threat = _mapping(context.get("popular_threat_classification"))
    signature = _mapping(context.get("signature_info"))
    yara = [item.get("rule_name") for item in _dicts(context.get("crowdsourced_yara_results"))]
    return [
        ("file", name + (f" ({described})" if described else "") if name else described),
        ("also named", _listed(names, extra=unkept)),
        ("threat label", str(threat.get("suggested_threat_label") or "")),
        ("signature", _joined(signature.get("verified"), signature.get("signers"))),
        ("YARA rules", _listed(yara)),
        ("contacted", _listed([item.get("id") for key in _CONTACTED for item in _dicts(context.get(key))])),
    ]


_TYPE_FACTS: dict[IocType, Callable[[Mapping[str, Any]], list[tuple[str, str]]]] = {
    IocType.IP: _ip_facts,
    IocType.DOMAIN: _domain_facts,
    IocType.URL: _url_facts,
    IocType.FILE: _file_facts,
}
_CONTACTED = ("contacted_domains", "contacted_ips", "contacted_urls")


def _related_facts(context: Mapping[str, Any]) -> list[tuple[str, str]]:
    """With deep context: the detected URLs and the communicating files, most flagged first."""
    urls = [
        f"{item.get('url') or item.get('id')} ({item.get('malicious', 0)}/{item.get('total', 0)})"
        for item in _dicts(context.get("detected_urls"))
    ]
    files = [
        _joined(item.get("name") or item.get("id"), item.get("threat_label"), separator=" ")
        + f" ({item.get('malicious', 0)}/{item.get('total', 0)})"
        for item in _dicts(context.get("communicating_files"))
    ]
    return [("detected URLs", _listed(urls)), ("communicating files", _listed(files))]


def _gti(assessment: Any) -> str:
    """Google Threat Intelligence's assessment, when the key is GTI's."""
    if not isinstance(assessment, dict) or not assessment.get("verdict"):
        return ""
    score = assessment.get("threat_score")
    return _joined(
        assessment.get("verdict"),
        f"severity {assessment['severity']}" if assessment.get("severity") else None,
        f"threat score {score} of 100" if score is not None else None,
    )


def _top_engines(detections: Any) -> str:
    """Up to five flagging engines, malicious before suspicious, with their labels."""
    if not isinstance(detections, list):
        return ""
    flagged = [item for item in detections if isinstance(item, dict) and item.get("engine")]
    flagged.sort(key=lambda item: item.get("category") != "malicious")
    shown = [
        f"{item['engine']} ({item.get('result') or item.get('category') or 'flagged'})"
        for item in flagged[:TOP_ENGINES]
    ]
    more = len(flagged) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def _dns_records_line(records: Any) -> str:
    """The domain's last DNS records as the report's "resolves to" line, the first few of them."""
    # What the name resolves to: address and alias records, not its name servers or SOA.
    shown = [
        f"{record['type']} {record['value']}"
        for record in _dicts(records)
        if record.get("value") and record.get("type") in _RESOLUTION_TYPES
    ]
    return _listed(shown)


def _categories_line(categories: Any) -> str:
    """The categories engines give, each once, the first few."""
    values = list(dict.fromkeys(str(value) for value in _mapping(categories).values() if value))
    return _listed(values, limit=MAX_CATEGORIES_SHOWN)


def _whois_lines(whois: Any) -> list[str]:
    if not isinstance(whois, str):
        return []
    lines = [line.strip() for line in whois.splitlines() if line.strip()]
    if len(lines) > MAX_WHOIS_LINES_SHOWN:
        more = len(lines) - MAX_WHOIS_LINES_SHOWN
        return [*lines[:MAX_WHOIS_LINES_SHOWN], f"[{more} more lines on VirusTotal's page]"]
    return lines


def _listed(values: Sequence[Any], *, limit: int = MAX_LISTED, extra: int = 0) -> str:
    """The first `limit` values, and how many more there are (`extra`: more still, not in `values`)."""
    present = [str(value) for value in values if value not in (None, "")]
    more = max(0, len(present) - limit) + extra
    return ", ".join(present[:limit]) + (f" and {more} more" if more > 0 else "")


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _joined(*parts: Any, separator: str = ", ") -> str:
    return separator.join(str(part) for part in parts if part not in (None, ""))


def _trim_utf8(text: str, max_bytes: int) -> str:
    encoded = text.encode()
    if len(encoded) <= max_bytes:
        return text
    marker = " [...]"
    # errors="ignore" drops a multi-byte character cut in half at the boundary
    return encoded[: max_bytes - len(marker)].decode(errors="ignore") + marker
