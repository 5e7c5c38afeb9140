"""`TaskCallback`: the in-memory callback and Step Functions on moto resume a step waiting on its task
token with an output, or fail it with an error, once; a step answered or timed out waits no more.

On moto the step is a real execution's: a state machine of one task state that sends its task token to
a queue and waits for it (`sqs:sendMessage.waitForTaskToken`, the callback pattern the approval step
uses), run by moto's Step Functions engine, switched on for these tests (the package's stack records
executions without running them). What moto cannot show: it answers SendTaskFailure for a token whose
step has ended (it looks the token up in finished executions too), where AWS answers TaskTimedOut; so
a failure sent after the step ended is asserted on neither implementation.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from tests.contract.conftest import IN_MEMORY, client
from vtriage.adapters.guardrails import StepFunctionsTaskCallback
from vtriage.fakes import FakeTaskCallback
from vtriage.ports import TaskCallback
from vtriage_local.stack import ACCOUNT_ID, LocalAws

# How long a test waits for moto's engine to start a step or end an execution.
ENGINE_WAIT_S = 30.0
OUTPUT = {"decision": "approve", "approver": "alice@example.com"}


@dataclass(frozen=True)
class Steps:
    """The callback under test; a way to start a step that waits (its task token), at most so many
    seconds; how the step of a token ended ("SUCCEEDED" with its output, "FAILED" with its error), once
    it has; and a way to let a step's timeout pass."""

    callback: TaskCallback
    waiting: Callable[[int], str]
    ended: Callable[[str], tuple[str, Any]]
    let_time_out: Callable[[str], None]


@pytest.fixture
def steps(implementation: str, request: pytest.FixtureRequest) -> Iterator[Steps]:
    if implementation == IN_MEMORY:
        fake = FakeTaskCallback()

        def answered(token: str) -> tuple[str, Any]:
            kind, answer = fake.answered[token]
            return ("SUCCEEDED", answer) if kind == "success" else ("FAILED", answer)

        yield Steps(fake, lambda _: f"task-token-{uuid.uuid4().hex}", answered, fake.stop_waiting)
        return
    aws: LocalAws = request.getfixturevalue("aws")
    with _executing_state_machines(aws):
        yield _waiting_steps(aws)


@contextmanager
def _executing_state_machines(aws: LocalAws) -> Iterator[None]:
    """moto's Step Functions engine runs executions while inside (through moto's configuration API, as
    the local stack sets it), and only records them again after."""

    def executing(executes: bool) -> None:
        config = {"stepfunctions": {"execute_state_machine": executes}}
        requests.post(f"{aws.endpoint_url}/moto-api/config", json=config, timeout=10).raise_for_status()

    executing(True)
    try:
        yield
    finally:
        executing(False)


def _waiting_steps(aws: LocalAws) -> Steps:
    sqs, sfn = client(aws, "sqs"), client(aws, "stepfunctions")
    queue = str(sqs.create_queue(QueueName="contract-task-tokens")["QueueUrl"])
    definition = {
        "StartAt": "WaitForAPerson",
        "States": {
            "WaitForAPerson": {
                "Type": "Task",
                "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
                "Parameters": {"QueueUrl": queue, "MessageBody": {"task_token.$": "$$.Task.Token"}},
                "TimeoutSecondsPath": "$.timeout_seconds",
                "End": True,
            }
        },
    }
    machine = sfn.create_state_machine(
        name=f"contract-waits-{uuid.uuid4().hex[:8]}",
        definition=json.dumps(definition),
        roleArn=f"arn:aws:iam::{ACCOUNT_ID}:role/vtriage-local",
    )["stateMachineArn"]
    executions: dict[str, str] = {}

    def waiting(timeout_seconds: int) -> str:
        execution = sfn.start_execution(
            stateMachineArn=machine, input=json.dumps({"timeout_seconds": timeout_seconds})
        )["executionArn"]
        token = _next_token(sqs, queue)
        executions[token] = str(execution)
        return token

    def ended(token: str) -> tuple[str, Any]:
        described = _finished(sfn, executions[token])
        if described["status"] == "SUCCEEDED":
            return "SUCCEEDED", json.loads(described["output"])
        return str(described["status"]), described.get("error")

    def let_time_out(token: str) -> None:
        # The step's timeout passes: its execution ends, failed with States.Timeout.
        described = _finished(sfn, executions[token])
        assert (described["status"], described.get("error")) == ("FAILED", "States.Timeout")

    return Steps(StepFunctionsTaskCallback(sfn), waiting, ended, let_time_out)


def _next_token(sqs: Any, queue: str) -> str:
    """The task token the waiting step sent to the queue."""
    deadline = time.monotonic() + ENGINE_WAIT_S
    while time.monotonic() < deadline:
        for message in sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=0).get("Messages", []):
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
            return str(json.loads(message["Body"])["task_token"])
        time.sleep(0.05)
    raise AssertionError("no step started waiting")


def _finished(sfn: Any, execution: str) -> dict[str, Any]:
    """The execution, once it has ended."""
    deadline = time.monotonic() + ENGINE_WAIT_S
    while time.monotonic() < deadline:
        described: dict[str, Any] = sfn.describe_execution(executionArn=execution)
        if described["status"] != "RUNNING":
            return described
        time.sleep(0.05)
    raise AssertionError(f"{execution} is still running")


def test_a_waiting_step_resumed_ends_with_the_output_and_waits_no_more(steps: Steps) -> None:
    # Given a step waiting on its task token
    token = steps.waiting(60)

    # When it is resumed with an output
    resumed = steps.callback.succeed(token, OUTPUT)

    # Then it had waited, and it ended with that output
    assert resumed is True
    assert steps.ended(token) == ("SUCCEEDED", OUTPUT)
    # And a second answer finds no step waiting, and changes nothing
    assert steps.callback.succeed(token, {"decision": "reject"}) is False
    assert steps.ended(token) == ("SUCCEEDED", OUTPUT)


def test_a_waiting_step_failed_ends_with_the_error_and_is_resumed_no_more(steps: Steps) -> None:
    # Given a step waiting on its task token
    token = steps.waiting(60)

    # When it is failed with an error
    failed = steps.callback.fail(token, "ApprovalRejected", "rejected by alice@example.com")

    # Then it had waited, and it ended with that error
    assert failed is True
    assert steps.ended(token) == ("FAILED", "ApprovalRejected")
    # And resuming it afterwards finds no step waiting
    assert steps.callback.succeed(token, OUTPUT) is False
    assert steps.ended(token) == ("FAILED", "ApprovalRejected")


def test_a_step_that_timed_out_is_not_resumed(steps: Steps) -> None:
    # Given a step that waited one second for its answer, in vain
    token = steps.waiting(1)
    steps.let_time_out(token)

    # When it is resumed, Then no step waits on its token
    assert steps.callback.succeed(token, OUTPUT) is False
