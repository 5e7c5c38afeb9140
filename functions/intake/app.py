"""Intake function: behind a function URL with IAM auth, queues one pushed alert once it validates."""

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from vtriage.composition.intake import intake_queue
from vtriage.config.intake import IntakeSettings
from vtriage.intake_api import function_url_response
from vtriage.provenance import caller_stamp

logger = Logger()


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Answer one function URL request: 202 once queued, 4xx with the reason and field otherwise, each
    body read with the options the enrich function reads it with."""
    settings = IntakeSettings.from_environ()
    response = function_url_response(
        event, intake_queue(settings), options=settings.intake, max_message_bytes=settings.max_message_bytes
    )
    # Who pushed what, answered or not: a refused body is queued nowhere, so the log is its only record.
    logger.info(
        "pushed alert answered",
        extra={"status": response["statusCode"], "caller": caller_stamp(event), "response": response["body"]},
    )
    return response
