"""Falcon poller: on its schedule, queues the CrowdStrike Falcon alerts created since the last poll on the
detector queue, each once and unchanged."""

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from vtriage.clock import utc_now
from vtriage.composition.falcon_poller import falcon_poller
from vtriage.composition.pollers import deadline_of
from vtriage.config.pollers import FalconPollerSettings

logger = Logger()


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Poll the Alerts API once (the scheduled event carries nothing the poll needs)."""
    report = falcon_poller(FalconPollerSettings.from_environ()).poll(utc_now(), deadline_of(context))
    logger.info("alerts polled", extra=report.model_dump(mode="json"))
    return report.model_dump(mode="json")
