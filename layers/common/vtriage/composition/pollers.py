"""What the two pollers' composition roots share: the poll's state on the guardrails table, the detector
queue and the poll's options. Each reads its credentials through `vtriage.composition.secret_object`."""

from __future__ import annotations

import time

from aws_lambda_powertools.utilities.typing import LambdaContext

from vtriage.adapters.alert_queue import SqsAlertQueue
from vtriage.adapters.poll_state import DynamoPollState
from vtriage.composition import aws_client
from vtriage.config.pollers import PollerSettings
from vtriage.polling import Poller, PollOptions
from vtriage.ports import AlertSource


def poller(settings: PollerSettings, source: str, alerts: AlertSource) -> Poller:
    """The poller of `source`: its alerts queued on the detector queue, its state on the guardrails
    table."""
    return Poller(
        source=source,
        alerts=alerts,
        state=DynamoPollState(aws_client(settings, "dynamodb"), settings.guardrails_table),
        queue=SqsAlertQueue(aws_client(settings, "sqs"), settings.alert_queue_url),
        options=PollOptions(
            first_window=settings.first_window,
            overlap=settings.overlap,
            remember_for=settings.remember_for,
            max_alerts=settings.max_alerts_per_poll,
        ),
    )


# Time kept, out of the invocation's, to save the cursor and answer after the poll stops.
_TIME_TO_FINISH_SECONDS = 10.0


def deadline_of(context: LambdaContext) -> float:
    """The `time.monotonic()` instant a poll stops claiming alerts: the invocation's end, less the time
    to save its cursor."""
    return time.monotonic() + context.get_remaining_time_in_millis() / 1000 - _TIME_TO_FINISH_SECONDS
