"""Starts the triage state machine."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from vtriage.adapters.aws_errors import error_code, transient_aws_errors
from vtriage.models import ExecutionInput


def execution_arn(state_machine_arn: str, name: str) -> str:
    """The ARN Step Functions gives an execution: known before it starts, since names are unique."""
    prefix, machine = state_machine_arn.split(":stateMachine:", 1)
    return f"{prefix}:execution:{machine}:{name}"


class StepFunctionsExecutionStarter:
    """Starts executions named after the case, so a repeat delivery never runs a case twice."""

    def __init__(self, client: Any, state_machine_arn: str) -> None:
        self._client = client
        self._state_machine_arn = state_machine_arn

    def arn_for(self, name: str) -> str:
        """The ARN of the execution of this name."""
        return execution_arn(self._state_machine_arn, name)

    def start(self, name: str, execution_input: ExecutionInput) -> str:
        """Start the execution; when one with this name exists already, return its ARN."""
        with transient_aws_errors():
            try:
                response = self._client.start_execution(
                    stateMachineArn=self._state_machine_arn,
                    name=name,
                    input=execution_input.model_dump_json(),
                )
            except ClientError as error:
                if error_code(error) == "ExecutionAlreadyExists":
                    return execution_arn(self._state_machine_arn, name)
                raise
        return str(response["executionArn"])
