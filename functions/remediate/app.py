"""Remediate function: plans a case's actions under its guardrails, runs them one by one (dry-run by
default), and reports what failed or still waits for a person.

The state machine names the step in the payload: `plan` (which actions run now and which wait for
approval), `run` (one action, by index), `finish` (raise what must reach the ticket). Without a step,
every action of the case runs at once, as `remediate_case` does.
"""

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from vtriage.composition.remediate import remediation_dependencies
from vtriage.config import RemediateSettings
from vtriage.models import TaskInput
from vtriage.remediate import (
    ActionTask,
    finish_remediation,
    plan_remediation,
    remediate_case,
    run_action,
)

logger = Logger()


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Carry out the step of the remediation the state machine's payload names."""
    settings = RemediateSettings.from_environ()
    dependencies = remediation_dependencies(settings)
    step = event.get("step")
    if step == "plan":
        plan = plan_remediation(
            TaskInput.model_validate(event),
            dependencies.cases,
            dry_run=settings.dry_run,
            max_actions=settings.max_actions_per_case,
            blast_radius=dependencies.blast_radius,
            max_actions_per_hour=settings.max_actions_per_hour,
            approval_timeout_seconds=settings.approval_timeout_seconds,
        )
        return plan.model_dump(mode="json")
    if step == "run":
        outcome = run_action(
            ActionTask.model_validate(event), dependencies.cases, dependencies.actuators, settings.dry_run
        )
        return outcome.model_dump(mode="json")
    if step == "finish":
        result = finish_remediation(TaskInput.model_validate(event), dependencies.cases)
        return {"case_id": result.case_id, "changed": result.changed}
    if step is not None:
        raise ValueError(f"unknown remediation step {step!r}: plan, run or finish")
    whole = remediate_case(
        TaskInput.model_validate(event),
        dependencies.cases,
        dependencies.actuators,
        dry_run=settings.dry_run,
        max_actions=settings.max_actions_per_case,
    )
    return whole.model_dump(mode="json")
