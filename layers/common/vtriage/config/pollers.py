"""Settings of the pollers: what every poller shares, and the Falcon and Google Workspace pollers'."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Self

from pydantic import Field, field_validator, model_validator

from vtriage.config import Settings, https_only
from vtriage.config.falcon import FalconApiSettings


class PollerSettings(Settings):
    """What every poller shares: where polled alerts go (the detector queue), where the poll's cursor
    and the alerts queued are kept (the guardrails table), and how far each poll reads."""

    alert_queue_url: str = Field(alias="ALERT_QUEUE_URL", pattern=r"^https?://")
    guardrails_table: str = Field(alias="GUARDRAILS_TABLE_NAME", min_length=1)
    # The first poll reads alerts this far back; every later poll from its cursor less the overlap,
    # so that an alert the vendor lists a little after it was created is still read.
    first_window_hours: float = Field(default=24.0, alias="POLL_FIRST_WINDOW_HOURS", gt=0, le=24 * 30)
    overlap_minutes: float = Field(default=15.0, alias="POLL_OVERLAP_MINUTES", ge=0, le=24 * 60)
    # How long a queued alert's id is remembered: longer than the overlap, or an alert read again in it
    # would be queued again.
    remember_days: float = Field(default=7.0, alias="POLL_REMEMBER_DAYS", gt=0, le=365)
    # The most alerts one poll queues (the next poll goes on from there), and how many one page lists.
    max_alerts_per_poll: int = Field(default=500, alias="POLL_MAX_ALERTS", ge=1, le=10_000)
    page_size: int = Field(default=100, alias="POLL_PAGE_SIZE", ge=1, le=1000)

    @model_validator(mode="after")
    def _remembered_beyond_the_overlap(self) -> Self:
        if timedelta(days=self.remember_days) <= timedelta(minutes=self.overlap_minutes):
            raise ValueError("POLL_REMEMBER_DAYS must be longer than POLL_OVERLAP_MINUTES")
        return self

    @property
    def first_window(self) -> timedelta:
        """How far back the first poll reads."""
        return timedelta(hours=self.first_window_hours)

    @property
    def overlap(self) -> timedelta:
        """How far behind its cursor every poll reads again."""
        return timedelta(minutes=self.overlap_minutes)

    @property
    def remember_for(self) -> timedelta:
        """How long a queued alert is remembered."""
        return timedelta(days=self.remember_days)


class FalconPollerSettings(PollerSettings, FalconApiSettings):
    """Settings of the Falcon poller: the API client's credentials in a Secrets Manager secret (a JSON
    object {"client_id", "client_secret"}) and the Falcon cloud it lives in (`FalconApiSettings`)."""

    falcon_api_secret: str = Field(alias="FALCON_API_SECRET_NAME", min_length=1)
    # Further FQL ANDed to the time filter (`product:'epp'`): which alerts the poller reads.
    falcon_filter: str = Field(default="", alias="FALCON_ALERT_FILTER", max_length=1000)


class WorkspacePollerSettings(PollerSettings):
    """Settings of the Google Workspace poller: a service account's key (the JSON file Google issues,
    unchanged) in a Secrets Manager secret, and the administrator it acts as through domain-wide
    delegation."""

    workspace_service_account_secret: str = Field(alias="WORKSPACE_SERVICE_ACCOUNT_SECRET_NAME", min_length=1)
    delegated_admin: str = Field(alias="WORKSPACE_DELEGATED_ADMIN", pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    # The Workspace account's id without its leading "C" (Google infers it from the administrator).
    customer_id: str | None = Field(default=None, alias="WORKSPACE_CUSTOMER_ID", pattern=r"^[A-Za-z0-9]+$")
    # Instead of Google's Alert Center URL (a loopback server in tests): https only.
    alert_center_url: str = Field(
        default="https://alertcenter.googleapis.com", alias="WORKSPACE_ALERT_CENTER_URL"
    )

    @field_validator("customer_id", mode="before")
    @classmethod
    def _without_the_leading_c(cls, value: object) -> object:
        # The Admin console shows the id as "C0..."; the API wants it without the "C".
        if isinstance(value, str):
            text = value.strip()
            return (text[1:] if re.fullmatch(r"C[0-9][A-Za-z0-9]*", text) else text) or None
        return value

    @field_validator("alert_center_url")
    @classmethod
    def _over_https(cls, value: str) -> str:
        return https_only(value)
