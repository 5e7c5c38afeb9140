"""Approvals: a person approves or rejects a waiting action through a link, with no AWS login.

A link carries a signed token (HMAC-SHA256 with a key kept in Secrets Manager): the approval's id, the
case, the action, the decision and when it expires. Nobody without the key can make or alter one. The
approve and reject links of one action share the approval's id, and the store lets that id be decided
once: whichever link is used first decides, and any later use is refused.

A decision is spent only once the waiting step has it. Using a link first claims the approval for a
short lease (a conditional write: two clicks at once cannot both act), then records the decision and
who made it on the case, then resumes the step (SendTaskSuccess or SendTaskFailure); only when that
succeeded is the approval settled. When resuming fails (Step Functions throttled or unavailable), the
claim is released and the case notes it: the same link works again. A claim whose request died before
either is taken again once its lease has passed.

The request proves little of who clicked: the function URL gives the address it came from and the user
agent it sent (`Approver`), both kept with the decision in the store and on the case's history.

The same URL shows a case read-only through a case page link (`case_page_link`, the `view` parameter):
its token names the case and when it expires, signed with another key (the case page key), which the
ticket function holds to put the link in each ticket. That key can make links that show a case, never
one that decides: approval tokens are checked with the signing key alone, which only this function reads.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Literal

from aws_lambda_powertools import Logger
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vtriage.action_text import action_name, describe
from vtriage.approval_links import ApprovalClaims, ApprovalLinks, Approver, Decision
from vtriage.display import one_line
from vtriage.errors import CaseNotFoundError, TransientError, VtriageError
from vtriage.models import Action, ActionStatus, ActionType, Case, Ticket
from vtriage.ports import ApprovalNotifier, ApprovalStore, CaseRepository, TaskCallback
from vtriage.report import Report, ReportLine
from vtriage.ticket import CasePageLink, approval_report_links

logger = Logger(child=True)

# The error name the state machine catches when a person rejects an action.
REJECTED_ERROR = "ApprovalRejected"
# Query parameter of the links.
TOKEN_PARAMETER = "token"  # noqa: S105 (a parameter name, not a secret)
# Query parameter of the case page links.
VIEW_PARAMETER = "view"


class InvalidTokenError(VtriageError):
    """The token is malformed or its signature does not match: forged or altered (HTTP 403)."""


class GoneTokenError(VtriageError):
    """A genuine token that can no longer be used: expired, or already used (HTTP 410)."""


class ApprovalRequest(BaseModel):
    """What the approval function is asked for the state machine's waitForTaskToken step: by that step
    itself (the default), or with ApprovalLinksInTickets=true by the ticket function which that step then
    invokes (`vtriage.ticket.request_approval_on_ticket`): the waiting action, the step's token, and the
    case's ticket, which the request names (else the one the case keeps)."""

    model_config = ConfigDict(extra="ignore")

    case_id: str
    index: int = Field(ge=0)
    task_token: str = Field(min_length=1)
    approval_url: str = Field(pattern=r"^https?://")
    approval_timeout_seconds: int = Field(ge=1)
    ticket: Ticket | None = None


class CasePageClaims(BaseModel):
    """What a case page link's token says, signed with the case page key: the case to show, and until
    when. It decides nothing."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    page: Literal["case"] = "case"
    case_id: str = Field(min_length=1)
    expires_at: int = Field(description="seconds since the epoch, UTC")


class ApprovalResult(BaseModel):
    """What a decision did, for the page shown to the person."""

    model_config = ConfigDict(extra="forbid")

    case_id: str
    action: str = Field(description="the action's code and target, as the case's history names it")
    action_type: ActionType
    target: str
    decision: Decision


def sign(claims: ApprovalClaims | CasePageClaims, key: bytes) -> str:
    """The token: the claims as compact JSON and their HMAC-SHA256, both URL-safe base64."""
    body = _b64encode(json.dumps(claims.model_dump(mode="json"), separators=(",", ":")).encode())
    return f"{body}.{_b64encode(_mac(body, key))}"


def verify(token: str, key: bytes, now: datetime) -> ApprovalClaims:
    """The token's claims once its signature is checked; `InvalidTokenError` when forged or altered,
    `GoneTokenError` when expired."""
    body = _signed_body(token, key, "approval token")
    try:
        claims = ApprovalClaims.model_validate_json(body)
    except ValidationError:
        raise InvalidTokenError("malformed approval token") from None
    if now.timestamp() >= claims.expires_at:
        raise GoneTokenError("this approval link has expired")
    return claims


def case_page_link(
    approval_url: str, case_id: str, key: bytes, now: datetime, valid_for: timedelta
) -> CasePageLink:
    """A link to the case's page on the approval function's URL, signed with the case page key, that
    shows the case until `now + valid_for` and decides nothing."""
    expires = now + valid_for
    claims = CasePageClaims(case_id=case_id, expires_at=int(expires.timestamp()))
    separator = "&" if "?" in approval_url else "?"
    return CasePageLink(
        url=f"{approval_url}{separator}{VIEW_PARAMETER}={sign(claims, key)}", expires_at=expires
    )


def verify_case_page(token: str, key: bytes, now: datetime) -> CasePageClaims:
    """A case page token's claims once its signature is checked with the case page key;
    `InvalidTokenError` when forged or altered, `GoneTokenError` when expired."""
    body = _signed_body(token, key, "case page token")
    try:
        claims = CasePageClaims.model_validate_json(body)
    except ValidationError:
        raise InvalidTokenError("malformed case page token") from None
    if now.timestamp() >= claims.expires_at:
        raise GoneTokenError("this case page link has expired")
    return claims


def _signed_body(token: str, key: bytes, what: str) -> bytes:
    """The token's JSON body once its HMAC is checked with `key`; `InvalidTokenError` otherwise."""
    body, dot, signature = token.strip().partition(".")
    if not dot or not body or not signature:
        raise InvalidTokenError(f"malformed {what}")
    try:
        given = _b64decode(signature)
    except (binascii.Error, ValueError):
        raise InvalidTokenError(f"malformed {what}") from None
    if not hmac.compare_digest(given, _mac(body, key)):
        raise InvalidTokenError(f"the {what}'s signature does not match")
    try:
        return _b64decode(body)
    except (binascii.Error, ValueError):
        raise InvalidTokenError(f"malformed {what}") from None


def approval_id_for(task_token: str) -> str:
    """The approval's id, derived from the waiting step's token so that a retried request is the same
    approval and the same links."""
    return hashlib.sha256(task_token.encode()).hexdigest()[:32]


def request_approval(
    request: ApprovalRequest,
    cases: CaseRepository,
    *,
    store: ApprovalStore,
    notifier: ApprovalNotifier,
    key: bytes,
    now: datetime,
) -> ApprovalLinks:
    """Keep the waiting step's token, make the approve and reject links, and send them to people."""
    case = cases.get(request.case_id)
    if case is None:
        raise CaseNotFoundError(f"case {request.case_id} not found")
    if request.index >= len(case.actions):
        raise CaseNotFoundError(f"case {request.case_id} has no action {request.index}")
    expires = now + timedelta(seconds=request.approval_timeout_seconds)
    approval_id = approval_id_for(request.task_token)

    def link(decision: Decision) -> str:
        claims = ApprovalClaims(
            approval_id=approval_id,
            case_id=case.case_id,
            action_index=request.index,
            decision=decision,
            expires_at=int(expires.timestamp()),
        )
        separator = "&" if "?" in request.approval_url else "?"
        return f"{request.approval_url}{separator}{TOKEN_PARAMETER}={sign(claims, key)}"

    links = ApprovalLinks(
        approve_url=link(Decision.APPROVE),
        reject_url=link(Decision.REJECT),
        expires_at=expires,
        approval_id=approval_id,
    )
    store.put_pending(
        ApprovalClaims(
            approval_id=approval_id,
            case_id=case.case_id,
            action_index=request.index,
            decision=Decision.APPROVE,
            expires_at=int(expires.timestamp()),
        ),
        request.task_token,
    )
    action = case.actions[request.index]
    # The ticket the asking ticket function names, else the one the case keeps (the state machine's waiting
    # step asks by default, after the step before it opened the ticket).
    ticket = request.ticket or case.ticket
    notifier.notify(case, action, approval_request(case, action, links, ticket=ticket))
    return links


def approval_request(
    case: Case, action: Action, links: ApprovalLinks, *, ticket: Ticket | None = None
) -> Report:
    """What an approver reads: the two links first under vtriage's header, then what waits, what it
    changes, how it is rolled back and why it waits, every value from the alert escaped on its labelled
    line."""
    expires = links.expires_at.isoformat(timespec="minutes") if links.expires_at else "never"
    alert = case.alert
    text = describe(action)
    lines = [
        ReportLine(label="Action", value=action_name(action.type)),
        ReportLine(label="Target", value=one_line(action.target)),
        ReportLine(label="Changes", value=text.changes),
        ReportLine(label="Rollback", value=text.rollback),
        ReportLine(label="Why", value=one_line(action.detail or "the playbook asks for approval")),
        ReportLine(label="Case", value=one_line(case.case_id)),
        ReportLine(label="Title", value=one_line(alert.title)),
        ReportLine(label="Verdict", value=case.verdict.value),
        ReportLine(label="Severity", value=f"{alert.severity.shown_label} {alert.severity.score:g}"),
        ReportLine(label="Finding", value=one_line(alert.id)),
        ReportLine(label="Account", value=one_line(alert.account)),
        ReportLine(label="Region", value=one_line(alert.region)),
    ]
    if case.provenance is not None:
        lines.append(ReportLine(label="Sent through", value=one_line(case.provenance.described)))
    if ticket is not None:
        # The case's ticket holds the evidence (these links too with ApprovalLinksInTickets=true), and
        # hears of the decision.
        lines.append(ReportLine(label="Ticket", value=f"{one_line(ticket.provider)} {one_line(ticket.id)}"))
        if ticket.url:
            lines.append(ReportLine(label="Ticket page", link=ticket.url))
    return Report(
        headline=f"approval needed: {action_name(action.type)}",
        links=approval_report_links(links),
        links_note=f"Open one link: each works once, until {expires}; after that the case is escalated.",
        lines=tuple(lines),
    )


def check(token: str, key: bytes, store: ApprovalStore, now: datetime) -> ApprovalClaims:
    """The claims of a token that may still decide (for the confirmation page); raises as `verify`,
    and `GoneTokenError` when its approval is already decided."""
    claims = verify(token, key, now)
    if not store.is_pending(claims.approval_id, now):
        raise GoneTokenError("this approval was already decided")
    return claims


def carry_out_decision(
    token: str,
    *,
    key: bytes,
    store: ApprovalStore,
    cases: CaseRepository,
    callback: TaskCallback,
    now: datetime,
    approver: Approver | None = None,
) -> ApprovalResult:
    """Carry out the decision a link carries, once: approve resumes the waiting step, reject records the
    action as skipped by a person and fails the step with `ApprovalRejected`. The decision and who made
    it go on the case's history. When the step cannot be resumed, the link stays usable (see the module
    docstring) and the error is raised."""
    who = approver or Approver()
    claims = verify(token, key, now)
    # Held first: two clicks at once, or the approve and the reject link, cannot both act.
    task_token = store.claim(claims.approval_id, claims.decision, who, now)
    if task_token is None:
        raise GoneTokenError("this approval was already decided (or is being decided at this moment)")
    try:
        case, before = _record_decision(claims, who, cases, now)
    except BaseException:
        store.release(claims.approval_id)
        raise
    action = case.actions[claims.action_index]
    label = f"{action.type.value} {one_line(action.target)}"
    when = now.astimezone(UTC).isoformat(timespec="seconds")
    try:
        if claims.decision is Decision.APPROVE:
            resumed = callback.succeed(task_token, {"decision": Decision.APPROVE.value, "decided_at": when})
        else:
            resumed = callback.fail(task_token, REJECTED_ERROR, f"{label} rejected at {when}")
    except BaseException as error:
        store.release(claims.approval_id)
        _undo_decision(
            claims,
            before,
            cases,
            now,
            f"{label}: the {claims.decision.value} decision {who.describe()} did not reach the waiting step "
            f"({type(error).__name__}): nothing was decided, the link still works",
        )
        raise
    try:
        store.settle(claims.approval_id)
    except TransientError:
        # The step has the decision, which stands: the hold left behind lapses, and a later use of the
        # link finds the step no longer waiting.
        logger.warning("an approval decided could not be marked so", extra={"case_id": claims.case_id})
    if not resumed:
        _undo_decision(
            claims,
            before,
            cases,
            now,
            f"{label}: the {claims.decision.value} decision {who.describe()} came after the step stopped "
            "waiting (timed out or stopped): nothing ran on it",
        )
        raise GoneTokenError("the approval request has timed out: the case was escalated")
    return ApprovalResult(
        case_id=case.case_id,
        action=label,
        action_type=action.type,
        target=action.target,
        decision=claims.decision,
    )


def _record_decision(
    claims: ApprovalClaims, approver: Approver, cases: CaseRepository, now: datetime
) -> tuple[Case, Action]:
    """Put the decision and who made it on the case (a rejected action as skipped), before the step
    resumes: once resumed, the remediate function writes the case, and a later write here would undo
    its work. The case and the action as it was before."""
    case = cases.get(claims.case_id)
    if case is None or claims.action_index >= len(case.actions):
        raise CaseNotFoundError(f"case {claims.case_id} or its action {claims.action_index} not found")
    before = case.actions[claims.action_index]
    when = now.astimezone(UTC).isoformat(timespec="seconds")
    verb = "approved" if claims.decision is Decision.APPROVE else "rejected"
    by = f"by a person through the approval link at {when} {approver.describe()}"
    if claims.decision is Decision.REJECT and before.status is ActionStatus.PENDING_APPROVAL:
        case.actions[claims.action_index] = before.model_copy(
            update={"status": ActionStatus.SKIPPED, "detail": f"not run: rejected {by}"}
        )
    case.record(case.status, now, f"{before.type.value} {one_line(before.target)} {verb} {by}")
    cases.save(case)
    return case, before


def _undo_decision(
    claims: ApprovalClaims, before: Action, cases: CaseRepository, now: datetime, note: str
) -> None:
    """The decision did not take effect: the action as it was, and a note saying so on the history."""
    case = cases.get(claims.case_id)
    if case is None or claims.action_index >= len(case.actions):
        return
    case.actions[claims.action_index] = before
    case.record(case.status, now, note)
    cases.save(case)


def _mac(body: str, key: bytes) -> bytes:
    return hmac.new(key, body.encode(), hashlib.sha256).digest()


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
