"""Settings of the ticket function."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from vtriage.config import Settings, empty_is_unset, https_only


class SwimlaneFields(BaseModel):
    """Which field of the Swimlane application holds each value vtriage writes, by the field's id, key or
    name (SWIMLANE_FIELDS, a JSON object of these keys, each replacing its default; null leaves an
    optional value out). The defaults name the fields a team adds to its application for vtriage."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Searched before a record is created, so that a retried ticket step finds the case's record.
    case_id: str = Field(default="vtriage Case ID", min_length=1)
    title: str | None = Field(default="Title", min_length=1)
    severity: str | None = Field(default="Severity", min_length=1)
    verdict: str | None = Field(default="Verdict", min_length=1)
    report: str | None = Field(default="Description", min_length=1)
    # Where repeats, approvals and escalations are commented.
    comments: str = Field(default="Comments", min_length=1)


class CasePageLinkSettings(Settings):
    """Where a ticket's case page link points (APPROVAL_URL, the approval function's URL) and the key
    that signs it (CASE_PAGE_KEY_SECRET), both or neither; the link works for CASE_PAGE_LINK_DAYS."""

    approval_url: str | None = Field(default=None, alias="APPROVAL_URL")
    case_page_key_secret: str | None = Field(default=None, alias="CASE_PAGE_KEY_SECRET")
    case_page_link_days: int = Field(default=30, alias="CASE_PAGE_LINK_DAYS", ge=1, le=365)

    _empty_link_setting_is_unset = empty_is_unset("approval_url", "case_page_key_secret")

    @field_validator("approval_url")
    @classmethod
    def _approval_url_over_https(cls, value: str | None) -> str | None:
        # The link carries a token that shows the case to whoever holds it.
        return None if value is None else https_only(value)

    @model_validator(mode="after")
    def _both_or_neither(self) -> Self:
        if (self.approval_url is None) != (self.case_page_key_secret is None):
            raise ValueError("set both APPROVAL_URL and CASE_PAGE_KEY_SECRET, or neither")
        return self

    @property
    def case_page_link_valid_for(self) -> timedelta:
        """How long a ticket's case page link works."""
        return timedelta(days=self.case_page_link_days)


class TicketSettings(CasePageLinkSettings):
    """Settings of the ticket function: SNS by default; Jira Cloud, ServiceNow, Swimlane or a webhook
    with their credentials in a Secrets Manager secret (a JSON object: see the README)."""

    ticket_topic_arn: str = Field(alias="TICKET_TOPIC_ARN", pattern=r"^arn:aws[\w-]*:sns:")
    ticket_provider: Literal["sns", "jira", "servicenow", "swimlane", "webhook"] = Field(
        default="sns", alias="TICKET_PROVIDER"
    )
    ticket_secret_name: str | None = Field(default=None, alias="TICKET_SECRET_NAME", min_length=1)
    jira_base_url: str | None = Field(default=None, alias="JIRA_BASE_URL")
    jira_project_key: str | None = Field(default=None, alias="JIRA_PROJECT_KEY", min_length=1)
    jira_issue_type: str = Field(default="Task", alias="JIRA_ISSUE_TYPE", min_length=1)
    servicenow_base_url: str | None = Field(default=None, alias="SERVICENOW_BASE_URL")
    swimlane_base_url: str | None = Field(default=None, alias="SWIMLANE_BASE_URL")
    # A Swimlane id goes into the API's paths: letters, digits, _ and - only.
    swimlane_application_id: str | None = Field(
        default=None, alias="SWIMLANE_APPLICATION_ID", pattern=r"^[A-Za-z0-9_-]{1,64}$"
    )
    swimlane_fields: SwimlaneFields = Field(default_factory=SwimlaneFields, alias="SWIMLANE_FIELDS")
    # Where each ticket reads what VirusTotal said of the case's IOCs (engines, context); unset, tickets
    # show what the case keeps and say the context was not read.
    enrichments_table: str | None = Field(default=None, alias="ENRICHMENTS_TABLE_NAME")
    # ApprovalLinksInTickets: true, the state machine's waiting step invokes the ticket function, which asks
    # the approval function (APPROVAL_FUNCTION_NAME) to hold the action and puts its approve and reject
    # links on the ticket, where whoever reads the ticket can decide. False (the default), the waiting
    # step invokes the approval function itself, the ticket function never asks it for a link, and a
    # ticket says who decides instead.
    approval_links_in_tickets: bool = Field(default=False, alias="APPROVAL_LINKS_IN_TICKETS")
    approval_function_name: str | None = Field(default=None, alias="APPROVAL_FUNCTION_NAME")

    _empty_is_unset = empty_is_unset(
        "enrichments_table",
        "approval_function_name",
        "ticket_secret_name",
        "jira_base_url",
        "jira_project_key",
        "servicenow_base_url",
        "swimlane_base_url",
        "swimlane_application_id",
    )

    @field_validator("jira_base_url", "servicenow_base_url", "swimlane_base_url")
    @classmethod
    def _providers_over_https(cls, value: str | None) -> str | None:
        return None if value is None else https_only(value)

    @field_validator("swimlane_fields", mode="before")
    @classmethod
    def _swimlane_fields_from_json(cls, value: object) -> object:
        # The variable holds a JSON object; empty, the defaults stand.
        if not isinstance(value, str):
            return value
        if not value.strip():
            return {}
        try:
            document = json.loads(value)
        except ValueError as error:
            raise ValueError(f"not JSON ({error})") from None
        if isinstance(document, dict):
            return document
        # A ValueError, which pydantic reports as this field's error (a TypeError it would not catch).
        raise ValueError("must be a JSON object of the values vtriage writes and their fields")

    @model_validator(mode="after")
    def _provider_is_complete(self) -> Self:
        needed = {
            "sns": {},
            "jira": {
                "JIRA_BASE_URL": self.jira_base_url,
                "JIRA_PROJECT_KEY": self.jira_project_key,
                "TICKET_SECRET_NAME": self.ticket_secret_name,
            },
            "servicenow": {
                "SERVICENOW_BASE_URL": self.servicenow_base_url,
                "TICKET_SECRET_NAME": self.ticket_secret_name,
            },
            "swimlane": {
                "SWIMLANE_BASE_URL": self.swimlane_base_url,
                "SWIMLANE_APPLICATION_ID": self.swimlane_application_id,
                "TICKET_SECRET_NAME": self.ticket_secret_name,
            },
            "webhook": {"TICKET_SECRET_NAME": self.ticket_secret_name},
        }[self.ticket_provider]
        missing = [name for name, value in needed.items() if not value]
        if missing:
            raise ValueError(f"TICKET_PROVIDER={self.ticket_provider} needs {', '.join(missing)}")
        return self

    @model_validator(mode="after")
    def _links_need_the_approval_function(self) -> Self:
        if self.approval_links_in_tickets and not self.approval_function_name:
            raise ValueError(
                "ApprovalLinksInTickets (APPROVAL_LINKS_IN_TICKETS) true needs APPROVAL_FUNCTION_NAME, the "
                "approval function the ticket function asks for the links"
            )
        return self
