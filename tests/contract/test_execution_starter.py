"""`ExecutionStarter`: the in-memory starter and Step Functions on moto, with the template's state machine,
start one execution per name and give its ARN before and after it starts."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.contract.conftest import IN_MEMORY, client
from vtriage.adapters.stepfunctions import StepFunctionsExecutionStarter
from vtriage.fakes import FakeExecutionStarter
from vtriage.models import Branch, ExecutionInput, Verdict
from vtriage.ports import ExecutionStarter
from vtriage_local.stack import LocalAws


@dataclass(frozen=True)
class Starter:
    """The starter under test, and the inputs of the executions started under a name, as Step Functions
    lists them."""

    executions: ExecutionStarter
    inputs_of: Callable[[str], list[dict[str, Any]]]


@pytest.fixture
def starter(implementation: str, request: pytest.FixtureRequest) -> Starter:
    if implementation == IN_MEMORY:
        fake = FakeExecutionStarter("arn:aws:states:us-east-1:123456789012:stateMachine:TriageStateMachine")
        return Starter(
            fake,
            lambda name: [fake.started[name].model_dump(mode="json")] if name in fake.started else [],
        )
    aws: LocalAws = request.getfixturevalue("aws")
    sfn, machine = client(aws, "stepfunctions"), aws.ref("TriageStateMachine")

    def inputs_of(name: str) -> list[dict[str, Any]]:
        found = sfn.list_executions(stateMachineArn=machine)["executions"]
        arns = [execution["executionArn"] for execution in found if execution["name"] == name]
        return [
            ExecutionInput.model_validate_json(sfn.describe_execution(executionArn=arn)["input"]).model_dump(
                mode="json"
            )
            for arn in arns
        ]

    return Starter(StepFunctionsExecutionStarter(sfn, machine), inputs_of)


def _input(case_id: str, verdict: Verdict = Verdict.MALICIOUS) -> ExecutionInput:
    return ExecutionInput(
        case_id=case_id, route=Branch.TICKET, verdict=verdict, severity="HIGH", remediable=False, actions=0
    )


def test_an_execution_starts_under_the_arn_its_name_gives(starter: Starter) -> None:
    # Given a case id no execution ran for (executions outlive a test on the shared stack)
    name = f"guardduty-{uuid.uuid4().hex}"
    expected = starter.executions.arn_for(name)

    # When its execution starts
    arn = starter.executions.start(name, _input(name))

    # Then it runs under the ARN known before it started, with the input given
    assert arn == expected
    assert arn.endswith(f":execution:TriageStateMachine:{name}")
    assert starter.inputs_of(name) == [_input(name).model_dump(mode="json")]


def test_a_name_started_again_gives_the_same_execution(starter: Starter) -> None:
    # Given an execution started for a case
    name = f"guardduty-{uuid.uuid4().hex}"
    first = starter.executions.start(name, _input(name))

    # When it is started again, the second time with another input (a redelivery after a change)
    second = starter.executions.start(name, _input(name, Verdict.HARMLESS))

    # Then the same execution answers, and only the first ran, with its input
    assert second == first
    assert starter.inputs_of(name) == [_input(name).model_dump(mode="json")]
