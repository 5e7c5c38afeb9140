"""Approvals: a person approves or rejects a waiting action through a link, with no AWS login.

A link carries a signed token (HMAC-SHA256 with a key kept in Secrets Manager): the approval's id, the
case, the action, the decision and when it expires. Nobody without the key can make or alter one. The
approve and reject links of one action share the approval's id, and the store lets that id be decided
once (a conditional write): whichever link is used first decides, and any later use is refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vtriage.errors import CaseNotFoundError, VtriageError
from vtriage.models import Action, ActionStatus, Case
from vtriage.ports import CaseRepository
from vtriage.ticket import ApprovalLinks

# The error name the state machine catches when a person rejects an action.
REJECTED_ERROR = "ApprovalRejected"
# Query parameter of the links.
TOKEN_PARAMETER = "token"  # noqa: S105 (a parameter name, not a secret)


class Decision(StrEnum):
    """What a link does."""

    APPROVE = "approve"
    REJECT = "reject"


class InvalidTokenError(VtriageError):
    """The token is malformed or its signature does not match: forged or altered (HTTP 403)."""


class GoneTokenError(VtriageError):
    """A genuine token that can no longer be used: expired, or already used (HTTP 410)."""


class ApprovalClaims(BaseModel):
    """What a token says, signed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    approval_id: str = Field(min_length=16)
    case_id: str
    action_index: int = Field(ge=0)
    decision: Decision
    expires_at: int = Field(description="seconds since the epoch, UTC")


class ApprovalRequest(BaseModel):
    """What the state machine's waitForTaskToken step sends the approval function."""

    model_config = ConfigDict(extra="ignore")

    case_id: str
    index: int = Field(ge=0)
    task_token: str = Field(min_length=1)
    approval_url: str = Field(pattern=r"^https?://")
    approval_timeout_seconds: int = Field(ge=1)


class ApprovalResult(BaseModel):
    """What a decision did, for the page shown to the person."""

    model_config = ConfigDict(extra="forbid")

    case_id: str
    action: str
    decision: Decision


class ApprovalStore(Protocol):
    """Pending approvals, each decided at most once."""

    def put_pending(self, claims: ApprovalClaims, task_token: str) -> None:
        """Keep the waiting step's task token under the approval id, until the approval expires."""
        ...

    def is_pending(self, approval_id: str) -> bool:
        """Whether the approval waits for a decision."""
        ...

    def decide(self, approval_id: str, decision: Decision, decided_at: datetime) -> str | None:
        """Mark the approval decided, only if it was pending; return its task token, or None when it
        was already decided or never existed."""
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

    def notify(self, case: Case, action: Action, links: ApprovalLinks) -> None:
        """Send the approval request with its links."""
        ...


def sign(claims: ApprovalClaims, key: bytes) -> str:
    """The token: the claims as compact JSON and their HMAC-SHA256, both URL-safe base64."""
    body = _b64encode(json.dumps(claims.model_dump(mode="json"), separators=(",", ":")).encode())
    return f"{body}.{_b64encode(_mac(body, key))}"


def verify(token: str, key: bytes, now: datetime) -> ApprovalClaims:
    """The token's claims once its signature is checked; `InvalidTokenError` when forged or altered,
    `GoneTokenError` when expired."""
    body, dot, signature = token.strip().partition(".")
    if not dot or not body or not signature:
        raise InvalidTokenError("malformed approval token")
    try:
        given = _b64decode(signature)
    except (binascii.Error, ValueError):
        raise InvalidTokenError("malformed approval token") from None
    if not hmac.compare_digest(given, _mac(body, key)):
        raise InvalidTokenError("the approval token's signature does not match")
    try:
        claims = ApprovalClaims.model_validate_json(_b64decode(body))
    except (ValidationError, binascii.Error, ValueError):
        raise InvalidTokenError("malformed approval token") from None
    if now.timestamp() >= claims.expires_at:
        raise GoneTokenError("this approval link has expired")
    return claims


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
        approve_url=link(Decision.APPROVE), reject_url=link(Decision.REJECT), expires_at=expires
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
    notifier.notify(case, case.actions[request.index], links)
    return links


def check(token: str, key: bytes, store: ApprovalStore, now: datetime) -> ApprovalClaims:
    """The claims of a token that may still decide (for the confirmation page); raises as `verify`,
    and `GoneTokenError` when its approval is already decided."""
    claims = verify(token, key, now)
    if not store.is_pending(claims.approval_id):
        raise GoneTokenError("this approval was already decided")
    return claims


def decide(
    token: str,
    *,
    key: bytes,
    store: ApprovalStore,
    cases: CaseRepository,
    callback: TaskCallback,
    now: datetime,
) -> ApprovalResult:
    """Carry out the decision a link carries, once: approve resumes the waiting step, reject records the
    action as skipped by a person and fails the step with `ApprovalRejected`."""
    moment = now
    claims = verify(token, key, moment)
    # Decided first: two clicks at once, or the approve and the reject link, cannot both act.
    task_token = store.decide(claims.approval_id, claims.decision, moment)
    if task_token is None:
        raise GoneTokenError("this approval was already decided")
    case = cases.get(claims.case_id)
    if case is None or claims.action_index >= len(case.actions):
        raise CaseNotFoundError(f"case {claims.case_id} or its action {claims.action_index} not found")
    action = case.actions[claims.action_index]
    label = f"{action.type.value} {action.target}"
    when = moment.astimezone(UTC).isoformat(timespec="seconds")
    if claims.decision is Decision.APPROVE:
        resumed = callback.succeed(task_token, {"decision": Decision.APPROVE.value, "decided_at": when})
    else:
        if action.status is ActionStatus.PENDING_APPROVAL:
            case.actions[claims.action_index] = action.model_copy(
                update={
                    "status": ActionStatus.SKIPPED,
                    "detail": f"not run: rejected by a person through the approval link at {when}",
                }
            )
            case.updated_at = moment
            cases.save(case)
        resumed = callback.fail(task_token, REJECTED_ERROR, f"{label} rejected at {when}")
    if not resumed:
        raise GoneTokenError("the approval request has timed out: the case was escalated")
    return ApprovalResult(case_id=case.case_id, action=label, decision=claims.decision)


def _mac(body: str, key: bytes) -> bytes:
    return hmac.new(key, body.encode(), hashlib.sha256).digest()


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
