"""Settings of the approval function."""

from __future__ import annotations

from typing import Self

from pydantic import Field, field_validator, model_validator

from vtriage.config import empty_is_unset
from vtriage.config.virustotal import VirusTotalKeySettings
from vtriage.virustotal.widget import theme_parameters


class ApprovalSettings(VirusTotalKeySettings):
    """Settings of the approval function: it sends approval links and takes the decisions made on them."""

    guardrails_table: str = Field(alias="GUARDRAILS_TABLE_NAME", min_length=1)
    # The Secrets Manager secret holding the key that signs approval links (HMAC-SHA256).
    signing_key_secret: str = Field(alias="APPROVAL_SIGNING_KEY_SECRET", min_length=1)
    # Where approval requests (with their links) are published: the approvals topic, which only this
    # function may publish to.
    notification_topic_arn: str = Field(alias="APPROVAL_TOPIC_ARN", pattern=r"^arn:aws[\w-]*:sns:")
    # The Secrets Manager secret holding the key that checks case page links (the ticket function signs
    # them); unset, case page links are refused.
    case_page_key_secret: str | None = Field(default=None, alias="CASE_PAGE_KEY_SECRET")
    # VT Augment: the VirusTotal key's licence includes it, so the case's pages show each IOC's widget,
    # minted with the key when a page is opened. Off (the default), the key is never read and the pages
    # link to VirusTotal's own. Optional widget colours: "fg1=#1a1a1a,bg1=#ffffff" (fg1, bg1, bg2, bd1).
    vt_augment: bool = Field(default=False, alias="VT_AUGMENT")
    # ApprovalLinksInTickets: true, the ticket function asks for approvals and the links are answered to it,
    # for the ticket. False (the default), the state machine's waiting step asks, and is answered no link:
    # a waiting step's answer may be kept in the execution's history, which its readers would decide with.
    approval_links_in_tickets: bool = Field(default=False, alias="APPROVAL_LINKS_IN_TICKETS")
    # Pairs, not a dict: settings are hashable (each composition root is cached by its settings).
    vt_augment_theme: tuple[tuple[str, str], ...] = Field(default=(), alias="VT_AUGMENT_THEME")

    _empty_case_page_key_is_unset = empty_is_unset("case_page_key_secret")

    @field_validator("vt_augment_theme", mode="before")
    @classmethod
    def _theme_colours(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        pairs = [part.partition("=") for part in value.split(",") if part.strip()]
        if any(not sep for _, sep, _ in pairs):
            raise ValueError("give the colours as name=#rrggbb, comma-separated (fg1, bg1, bg2, bd1)")
        return tuple(theme_parameters({name.strip(): colour.strip() for name, _, colour in pairs}).items())

    @model_validator(mode="after")
    def _augment_needs_a_key(self) -> Self:
        problem = self.key_source_problem()
        if self.vt_augment and problem:
            raise ValueError(f"VT_AUGMENT=true needs the VirusTotal key: {problem}")
        return self
