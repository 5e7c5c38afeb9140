"""One typed settings model per function, read from the environment when the function starts.

A missing or bad setting stops the function with a `ConfigurationError` that names the variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from vtriage.errors import ConfigurationError

DEFAULT_VT_BASE_URL = "https://www.virustotal.com/api/v3"


class Settings(BaseModel):
    """Base of every function's settings: fields are filled from environment variables by alias."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    region: str = Field(alias="AWS_REGION", min_length=1)
    # boto3 reads AWS_ENDPOINT_URL by itself; it is kept here so clients built for one endpoint
    # are never reused against another.
    aws_endpoint_url: str | None = Field(default=None, alias="AWS_ENDPOINT_URL")
    cases_table: str = Field(alias="CASES_TABLE_NAME", min_length=1)
    retention_days: int = Field(default=90, alias="RETENTION_DAYS", ge=1)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Self:
        """Validate the settings; raise ConfigurationError naming each missing or bad variable."""
        source = dict(os.environ if environ is None else environ)
        if "AWS_REGION" not in source and "AWS_DEFAULT_REGION" in source:
            source["AWS_REGION"] = source["AWS_DEFAULT_REGION"]
        try:
            return cls.model_validate(source)
        except ValidationError as error:
            problems = []
            for issue in error.errors():
                name = ".".join(str(part) for part in issue["loc"]) or "settings"
                problems.append(f"{name}: {issue['msg']}")
            raise ConfigurationError(f"{cls.__name__} is invalid: " + "; ".join(problems)) from None


class EnrichSettings(Settings):
    """Settings of the enrich function."""

    enrichments_table: str = Field(alias="ENRICHMENTS_TABLE_NAME", min_length=1)
    state_machine_arn: str = Field(alias="STATE_MACHINE_ARN", pattern=r"^arn:aws[\w-]*:states:")
    dead_letter_queue_url: str = Field(alias="DEAD_LETTER_QUEUE_URL", min_length=1)
    vt_api_key_secret: str | None = Field(default=None, alias="VT_API_KEY_SECRET_NAME")
    vt_api_key: SecretStr | None = Field(default=None, alias="VT_API_KEY")
    vt_base_url: str = Field(default=DEFAULT_VT_BASE_URL, alias="VT_BASE_URL", pattern=r"^https?://")
    vt_timeout_seconds: float = Field(default=10.0, alias="VT_TIMEOUT_SECONDS", gt=0, le=60)
    malicious_min_engines: int = Field(default=3, alias="VERDICT_MALICIOUS_MIN_ENGINES", ge=1)
    suspicious_min_engines: int = Field(default=1, alias="VERDICT_SUSPICIOUS_MIN_ENGINES", ge=1)
    cache_hours: float = Field(default=6.0, alias="ENRICHMENT_CACHE_HOURS", ge=0)

    @model_validator(mode="after")
    def _needs_a_key_source(self) -> Self:
        if not self.vt_api_key and not self.vt_api_key_secret:
            raise ValueError("set VT_API_KEY_SECRET_NAME (Secrets Manager) or VT_API_KEY (local runs)")
        if self.suspicious_min_engines > self.malicious_min_engines:
            raise ValueError("VERDICT_SUSPICIOUS_MIN_ENGINES must not exceed VERDICT_MALICIOUS_MIN_ENGINES")
        return self


class RemediateSettings(Settings):
    """Settings of the remediate function. Dry-run unless DRY_RUN is explicitly false."""

    dry_run: bool = Field(default=True, alias="DRY_RUN")
    protected_tag_key: str = Field(default="vtriage:protected", alias="PROTECTED_TAG_KEY", min_length=1)
    quarantine_group_name: str = Field(
        default="vtriage-quarantine", alias="QUARANTINE_GROUP_NAME", min_length=1
    )
    max_actions_per_case: int = Field(default=5, alias="MAX_ACTIONS_PER_CASE", ge=0)


class TicketSettings(Settings):
    """Settings of the ticket function."""

    ticket_topic_arn: str = Field(alias="TICKET_TOPIC_ARN", pattern=r"^arn:aws[\w-]*:sns:")
