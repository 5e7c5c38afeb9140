"""Settings of the intake function (pushed alerts)."""

from __future__ import annotations

from pydantic import Field

from vtriage.config.alerts import AlertReadingSettings

# What SQS accepted per message until 2025, and the most EventBridge puts in one event: every
# GuardDuty or Security Hub event fits. SQS now takes up to 1 MiB where the queue allows it.
DEFAULT_INTAKE_MAX_MESSAGE_BYTES = 262_144


class IntakeSettings(AlertReadingSettings):
    """Settings of the intake function (pushed alerts)."""

    # The pushed-alert queue: its own, so that the channel (never the body) tells pushed alerts apart.
    pushed_alert_queue_url: str = Field(alias="PUSHED_ALERT_QUEUE_URL", pattern=r"^https?://")
    max_message_bytes: int = Field(
        default=DEFAULT_INTAKE_MAX_MESSAGE_BYTES, alias="INTAKE_MAX_MESSAGE_BYTES", ge=1024, le=1_048_576
    )
