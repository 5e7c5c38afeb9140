"""The intake function's adapter: the pushed-alert queue."""

from __future__ import annotations

from vtriage.adapters.alert_queue import SqsAlertQueue
from vtriage.composition import aws_client, built_once
from vtriage.config.intake import IntakeSettings


@built_once
def intake_queue(settings: IntakeSettings) -> SqsAlertQueue:
    """The intake function's queue (the pushed-alert queue), built once per container."""
    return SqsAlertQueue(aws_client(settings, "sqs"), settings.pushed_alert_queue_url)
