"""Remediate function: runs a case's planned actions under its guardrails (dry-run by default)."""

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from vtriage.adapters.factories import remediation_dependencies
from vtriage.config import RemediateSettings
from vtriage.models import TaskInput
from vtriage.remediate import remediate_case

logger = Logger()


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Remediate the case named in the state machine's payload."""
    settings = RemediateSettings.from_environ()
    dependencies = remediation_dependencies(settings)
    result = remediate_case(
        TaskInput.model_validate(event),
        dependencies.cases,
        dependencies.isolation,
        dry_run=settings.dry_run,
        max_actions=settings.max_actions_per_case,
    )
    return result.model_dump(mode="json")
