"""The intake function's adapter: the pushed-alert queue."""

from __future__ import annotations

from functools import cache

from vtriage.adapters.alert_queue import SqsAlertQueue
from vtriage.composition import aws_client
from vtriage.config.intake import IntakeSettings


@cache
def intake_queue(settings: IntakeSettings) -> SqsAlertQueue:
    """The intake function's queue (the pushed-alert queue), built once per container."""
    return SqsAlertQueue(aws_client(settings, "sqs"), settings.pushed_alert_queue_url)
