"""The approval links' models: what a link decides, what its signed token says, the pair of links a person
opens to approve or reject one waiting action, and who used one. The approval function makes and checks
them; the ticket function puts the links on a ticket; the enrich function never loads them."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from vtriage.display import one_line


class Decision(StrEnum):
    """What an approval link does."""

    APPROVE = "approve"
    REJECT = "reject"


class ApprovalClaims(BaseModel):
    """What an approval link's token says, signed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    approval_id: str = Field(min_length=16)
    case_id: str
    action_index: int = Field(ge=0)
    decision: Decision
    expires_at: int = Field(description="seconds since the epoch, UTC")


class ApprovalLinks(BaseModel):
    """The links a person opens to approve or reject one waiting action, no AWS login needed: made and
    signed by the approval function, which alone holds the signing key; both carry the approval's id."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    approve_url: str
    reject_url: str
    expires_at: datetime | None = None
    approval_id: str | None = Field(default=None, description="the approval both links decide, once")


# The longest user agent an approval's history shows.
MAX_USER_AGENT_CHARS = 200


class Approver(BaseModel):
    """Who used an approval link, as far as the request proves it: the address the function URL saw it
    come from and the user agent it sent. Either may be missing; neither is an identity a person vouched
    for."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source_ip: str | None = None
    user_agent: str | None = None

    def describe(self) -> str:
        """`from <address> (user agent <...>)`, each escaped for a person to read."""
        address = one_line(self.source_ip, limit=64) if self.source_ip else "an unknown address"
        agent = one_line(self.user_agent, limit=MAX_USER_AGENT_CHARS) if self.user_agent else "none"
        return f"from {address} (user agent {agent})"
