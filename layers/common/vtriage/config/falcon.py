"""Where CrowdStrike Falcon's API is, for the Falcon poller and the remediate function."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from vtriage.config import Settings, empty_is_unset, https_only

# CrowdStrike's clouds, each with its API's base URL (vtriage.adapters.falcon.FALCON_CLOUDS).
FalconCloud = Literal["us-1", "us-2", "eu-1", "us-gov-1"]


class FalconApiSettings(Settings):
    """Where CrowdStrike Falcon's API is: the Falcon cloud the API client lives in (FALCON_CLOUD), or a URL
    instead (FALCON_BASE_URL: a proxy, or a loopback server in tests; https only). Shared by the Falcon
    poller and the remediate function (host containment), each with the API client's secret."""

    falcon_cloud: FalconCloud = Field(default="us-1", alias="FALCON_CLOUD")
    falcon_base_url: str | None = Field(default=None, alias="FALCON_BASE_URL")

    @field_validator("falcon_cloud", mode="before")
    @classmethod
    def _falcon_cloud_name(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    _empty_falcon_url_is_unset = empty_is_unset("falcon_base_url")

    @field_validator("falcon_base_url")
    @classmethod
    def _falcon_over_https(cls, value: str | None) -> str | None:
        return None if value is None else https_only(value)
