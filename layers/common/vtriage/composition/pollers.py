"""What the two pollers' composition roots share: the poll's state on the guardrails table, the detector
queue, the poll's options, and their credentials read from Secrets Manager as a JSON object."""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools.utilities.parameters.exceptions import TransformParameterError
from aws_lambda_powertools.utilities.typing import LambdaContext

from vtriage.adapters.alert_queue import SqsAlertQueue
from vtriage.adapters.poll_state import DynamoPollState
from vtriage.composition import SECRET_MAX_AGE_SECONDS, aws_client, secrets_provider
from vtriage.config import PollerSettings
from vtriage.errors import ConfigurationError
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


def secret_object(settings: PollerSettings, name: str, needed: tuple[str, ...]) -> dict[str, Any]:
    """The secret `name` as a JSON object holding at least the keys `needed`; a ConfigurationError that
    names the secret and the keys, never a value, otherwise."""
    try:
        secret = secrets_provider(settings)().get(name, transform="json", max_age=SECRET_MAX_AGE_SECONDS)
    except TransformParameterError:
        # Its message may quote the value: say only what is wrong.
        raise ConfigurationError(f"the secret {name} must hold a JSON object") from None
    if not isinstance(secret, dict):
        raise ConfigurationError(f"the secret {name} must hold a JSON object")
    missing = [key for key in needed if not isinstance(secret.get(key), str) or not secret[key].strip()]
    if missing:
        raise ConfigurationError(f"the secret {name} lacks the key(s) {', '.join(missing)}")
    return {str(key): value for key, value in secret.items()}


# Time kept, out of the invocation's, to save the cursor and answer after the poll stops.
_TIME_TO_FINISH_SECONDS = 10.0


def deadline_of(context: LambdaContext) -> float:
    """The `time.monotonic()` instant a poll stops claiming alerts: the invocation's end, less the time
    to save its cursor."""
    return time.monotonic() + context.get_remaining_time_in_millis() / 1000 - _TIME_TO_FINISH_SECONDS
