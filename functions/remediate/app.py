"""Remediate function: plans a case's actions under its guardrails, runs them one by one (dry-run by
default), and reports what failed or still waits for a person. The payload names the step (see
`vtriage.remediate.Remediator`)."""

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from vtriage.composition.remediate import remediator
from vtriage.config.remediate import RemediateSettings

logger = Logger()


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Carry out the step of the remediation the state machine's payload names."""
    return remediator(RemediateSettings.from_environ()).step(event).model_dump(mode="json")
