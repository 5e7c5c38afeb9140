"""An isolation interrupted between or during its two steps (red-team report, item 2), against moto's EC2
through the remediation's steps as the state machine drives them: no interface is left in the untracking
group, which allows all traffic, and the case keeps the groups each interface had, for a rollback."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError
from moto import mock_aws

from tests.factories import make_alert, make_case
from tests.functional.conftest import launch_instance, use_dummy_aws_credentials, wait_for_execution
from tests.remediation_steps import finish, plan, run
from tests.remediation_steps import remediator as remediator_over
from vtriage.adapters.dynamodb import DynamoCaseRepository
from vtriage.adapters.ec2 import UNTRACKING_SUFFIX, Ec2InstanceIsolation
from vtriage.clock import utc_now
from vtriage.eligibility import Place
from vtriage.enrich.triage import execution_input
from vtriage.errors import RemediationError, TransientError
from vtriage.fakes import InMemoryCaseRepository
from vtriage.models import Action, ActionStatus, ActionType, Case, CaseStatus, Resource, ResourceType, Verdict
from vtriage.remediate import Remediator, rollback_case
from vtriage_cli.main import main as vtriage
from vtriage_local.stack import ACCOUNT_ID, LocalAws

pytestmark = pytest.mark.functional

REGION = "us-east-1"
QUARANTINE = "vtriage-quarantine"
UNTRACKING = QUARANTINE + UNTRACKING_SUFFIX
PROTECTED = "vtriage:protected"
PLACE = Place(own_account="123456789012", regions=frozenset({REGION}))


@pytest.fixture
def ec2(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """An EC2 client on moto, with dummy credentials so that nothing can reach a real account."""
    use_dummy_aws_credentials(monkeypatch, REGION)
    with mock_aws():
        yield boto3.client("ec2", region_name=REGION)


class FunctionKilled(BaseException):
    """Lambda ending the function at its timeout: no handler of the function's own code runs after it
    (a BaseException, as the sandbox's end is not an error the code could catch)."""


class FailingMoves:
    """The EC2 client, whose ModifyNetworkInterfaceAttribute calls numbered in `failing` raise `error`
    (after EC2 made the move when `applied`, as may happen when the answer is what is lost). Every other
    call goes to the real client."""

    def __init__(self, client: Any, failing: set[int], error: BaseException, *, applied: bool) -> None:
        self._client, self._failing, self._error, self._applied = client, failing, error, applied
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def modify_network_interface_attribute(self, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls not in self._failing:
            return self._client.modify_network_interface_attribute(**kwargs)
        if self._applied:
            self._client.modify_network_interface_attribute(**kwargs)
        raise self._error


def read_timeout() -> ReadTimeoutError:
    return ReadTimeoutError(endpoint_url=f"https://ec2.{REGION}.amazonaws.com/")


def refused(code: str, status: int) -> ClientError:
    answer: Any = {
        "Error": {"Code": code, "Message": "refused"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(answer, "ModifyNetworkInterfaceAttribute")


def isolation_case(instance_id: str) -> Case:
    alert = make_alert(resources=(Resource(type=ResourceType.INSTANCE, id=instance_id),))
    return make_case(
        alert,
        status=CaseStatus.ENRICHED,
        verdict=Verdict.MALICIOUS,
        actions=[Action(type=ActionType.ISOLATE_INSTANCE, target=instance_id)],
    )


def steps(cases: InMemoryCaseRepository, client: Any) -> Remediator:
    """The remediate function's steps, acting for real, isolating with this EC2 client."""
    isolation = Ec2InstanceIsolation(client, QUARANTINE, PROTECTED)
    return remediator_over(cases, {ActionType.ISOLATE_INSTANCE: isolation}, place=PLACE)


def interface_groups(ec2: Any, instance_id: str) -> dict[str, list[str]]:
    instance = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    return {
        interface["NetworkInterfaceId"]: sorted(group["GroupId"] for group in interface["Groups"])
        for interface in instance["NetworkInterfaces"]
    }


def group_id(ec2: Any, name: str) -> str:
    [group] = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": [name]}])[
        "SecurityGroups"
    ]
    return str(group["GroupId"])


def the_action(cases: InMemoryCaseRepository, case: Case) -> Action:
    stored = cases.get(case.case_id)
    assert stored is not None
    return stored.actions[0]


@pytest.mark.parametrize("applied", [True, False], ids=["answer-lost", "move-not-made"])
@pytest.mark.parametrize(
    ("failing_move", "second_went_straight"),
    [(2, True), (3, False)],
    ids=["second-interface-into-untracking", "first-interface-into-quarantine"],
)
def test_a_timeout_on_a_move_leaves_no_interface_open_and_keeps_the_groups_for_the_rollback(
    ec2: Any, failing_move: int, second_went_straight: bool, applied: bool
) -> None:
    # Given an instance with two interfaces in its web group, and EC2's answer to one move timing out: the
    # second (the second interface into the untracking group) or the third (the first interface on to the
    # quarantine group, between the two steps)
    launched = launch_instance(ec2, ssh_open=True, second_interface=True)
    original = interface_groups(ec2, launched.instance_id)
    first, second = original
    case = isolation_case(launched.instance_id)
    cases = InMemoryCaseRepository([case])
    client = FailingMoves(ec2, {failing_move}, read_timeout(), applied=applied)

    # When the remediation runs the isolation
    plan(steps(cases, client), case.case_id)
    outcome = run(steps(cases, client), case.case_id, 0)

    # Then no interface is left in the untracking group: each is in the quarantine group alone
    quarantine = group_id(ec2, QUARANTINE)
    assert interface_groups(ec2, launched.instance_id) == {first: [quarantine], second: [quarantine]}
    # And the action failed, keeping the groups each interface had, and saying what happened and what
    # may still be open
    action = the_action(cases, case)
    assert outcome.status is action.status is ActionStatus.FAILED
    assert action.before == original
    assert "isolation stopped between its two steps (ReadTimeoutError" in action.detail
    if second_went_straight:
        assert f"{second} may not have passed through {UNTRACKING}" in action.detail
        assert "may stay open until they time out" in action.detail
    else:
        assert f"each had passed through {UNTRACKING} first" in action.detail
    # And the ticket hears of it
    with pytest.raises(RemediationError, match=f"isolate_instance {launched.instance_id} failed"):
        finish(steps(cases, client), case.case_id)

    # When the case is rolled back, Then each interface is back in its own groups
    rolled_back = rollback_case(case.case_id, cases, steps(cases, ec2).actuators)
    assert rolled_back.complete
    assert interface_groups(ec2, launched.instance_id) == original


def test_a_refused_second_move_leaves_no_interface_open_and_keeps_the_groups_for_the_rollback(
    ec2: Any,
) -> None:
    # Given an instance with two interfaces, and EC2 refusing the second move (a permission error)
    launched = launch_instance(ec2, ssh_open=True, second_interface=True)
    original = interface_groups(ec2, launched.instance_id)
    first, second = original
    case = isolation_case(launched.instance_id)
    cases = InMemoryCaseRepository([case])
    client = FailingMoves(ec2, {2}, refused("UnauthorizedOperation", 403), applied=False)

    # When the remediation runs the isolation
    plan(steps(cases, client), case.case_id)
    run(steps(cases, client), case.case_id, 0)

    # Then the first interface, moved into the untracking group, was moved on to the quarantine group,
    # and so was the second; the action failed, naming the error, with the groups before
    quarantine = group_id(ec2, QUARANTINE)
    assert interface_groups(ec2, launched.instance_id) == {first: [quarantine], second: [quarantine]}
    action = the_action(cases, case)
    assert action.status is ActionStatus.FAILED
    assert "UnauthorizedOperation" in action.detail
    assert f"{second} may not have passed through {UNTRACKING}" in action.detail
    assert action.before == original

    # And the rollback puts them back
    rollback_case(case.case_id, cases, steps(cases, ec2).actuators)
    assert interface_groups(ec2, launched.instance_id) == original


class RefusesInterface:
    """The EC2 client, refusing every move of one network interface with an access denial, as IAM refuses
    a request a policy denies (moto enforces no IAM; here a Deny the code cannot read, such as an
    organisation's). Every other call goes to the real client."""

    def __init__(self, client: Any, interface_id: str, code: str) -> None:
        self._client, self._interface_id, self._code = client, interface_id, code

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def modify_network_interface_attribute(self, **kwargs: Any) -> Any:
        if kwargs["NetworkInterfaceId"] == self._interface_id:
            raise refused(self._code, 403)
        return self._client.modify_network_interface_attribute(**kwargs)


@pytest.mark.parametrize("code", ["UnauthorizedOperation", "Client.UnauthorizedOperation", "AccessDenied"])
def test_an_interface_iam_refuses_to_move_is_reported_as_never_moved_not_as_open_to_all_traffic(
    ec2: Any, code: str
) -> None:
    # Given an instance with two interfaces, and IAM refusing every move of the second one
    launched = launch_instance(ec2, ssh_open=True, second_interface=True)
    original = interface_groups(ec2, launched.instance_id)
    first, second = original
    case = isolation_case(launched.instance_id)
    cases = InMemoryCaseRepository([case])
    client = RefusesInterface(ec2, second, code)

    # When the remediation runs the isolation, Then no retry is asked for (a denial is no passing trouble)
    plan(steps(cases, client), case.case_id)
    outcome = run(steps(cases, client), case.case_id, 0)

    # And the first interface went through both steps into the quarantine group, the second never moved
    # and is in its own groups: none is left in the untracking group
    quarantine = group_id(ec2, QUARANTINE)
    assert interface_groups(ec2, launched.instance_id) == {first: [quarantine], second: original[second]}
    # And the action failed saying so, first that the second is not isolated, never that one may be open
    action = the_action(cases, case)
    assert outcome.status is action.status is ActionStatus.FAILED
    assert action.detail.startswith(
        f"{second} was not isolated: EC2 refused to move it ({code}), so it is still in the groups it "
        f"had ({', '.join(original[second])}); isolation stopped between its two steps"
    ), action.detail
    assert (
        f"{first} was moved on to {QUARANTINE}: each had passed through {UNTRACKING} first, so its "
        "connections were cut too"
    ) in action.detail
    assert "allows all traffic" not in action.detail
    assert "open to all traffic" not in action.detail
    assert action.before == original

    # And the rollback puts the first one back
    rollback_case(case.case_id, cases, steps(cases, ec2).actuators)
    assert interface_groups(ec2, launched.instance_id) == original


def test_a_first_move_iam_refuses_changes_nothing_and_says_so(ec2: Any) -> None:
    # Given an instance with two interfaces, and IAM refusing every move of the first one
    launched = launch_instance(ec2, ssh_open=True, second_interface=True)
    original = interface_groups(ec2, launched.instance_id)
    first, _ = original
    case = isolation_case(launched.instance_id)
    cases = InMemoryCaseRepository([case])
    client = RefusesInterface(ec2, first, "UnauthorizedOperation")

    # When the remediation runs the isolation
    plan(steps(cases, client), case.case_id)
    outcome = run(steps(cases, client), case.case_id, 0)

    # Then no interface moved, and the action failed saying so, without warning of an open interface
    assert interface_groups(ec2, launched.instance_id) == original
    action = the_action(cases, case)
    assert outcome.status is action.status is ActionStatus.FAILED
    assert action.detail.startswith(
        f"not isolated: EC2 refused the first move, of {first} into {UNTRACKING} (UnauthorizedOperation: "
    ), action.detail
    assert "no interface was moved: each is still in the groups it had" in action.detail
    assert "open to all traffic" not in action.detail
    assert "allows all traffic" not in action.detail


def test_interfaces_iam_refuses_to_move_on_from_the_untracking_group_are_reported_open_first_without_a_retry(
    ec2: Any,
) -> None:
    # Given an instance with two interfaces, both moved into the untracking group, and IAM refusing every
    # move after that (into the quarantine group)
    launched = launch_instance(ec2, ssh_open=True, second_interface=True)
    original = interface_groups(ec2, launched.instance_id)
    first, second = original
    case = isolation_case(launched.instance_id)
    cases = InMemoryCaseRepository([case])
    client = FailingMoves(ec2, set(range(3, 20)), refused("AccessDenied", 403), applied=False)

    # When the remediation runs the isolation, Then no retry is asked for: a retry would be refused too
    plan(steps(cases, client), case.case_id)
    outcome = run(steps(cases, client), case.case_id, 0)

    # And the action failed saying first, truthfully, that both are in the group that allows all traffic,
    # and what to do
    untracking = group_id(ec2, UNTRACKING)
    assert interface_groups(ec2, launched.instance_id) == {first: [untracking], second: [untracking]}
    action = the_action(cases, case)
    assert outcome.status is action.status is ActionStatus.FAILED
    assert action.detail.startswith(
        f"{first}, {second} are still in {UNTRACKING}, which allows all traffic in and out: EC2 refused to "
        f"move them on to {QUARANTINE} (AccessDenied): move them by hand now, or roll the case back"
    ), action.detail
    assert action.before == original

    # And the rollback closes that exposure: each interface back in its own groups
    rollback_case(case.case_id, cases, steps(cases, ec2).actuators)
    assert interface_groups(ec2, launched.instance_id) == original


def test_ec2_unreachable_between_the_steps_asks_for_the_retry_which_finishes_the_isolation(
    ec2: Any,
) -> None:
    # Given an instance with two interfaces, and EC2 unreachable from the third move on: both interfaces
    # are in the untracking group, and neither can be moved on
    launched = launch_instance(ec2, ssh_open=True, second_interface=True)
    original = interface_groups(ec2, launched.instance_id)
    first, second = original
    case = isolation_case(launched.instance_id)
    cases = InMemoryCaseRepository([case])
    unreachable = EndpointConnectionError(endpoint_url=f"https://ec2.{REGION}.amazonaws.com/")
    client = FailingMoves(ec2, set(range(3, 20)), unreachable, applied=False)
    plan(steps(cases, client), case.case_id)

    # When the remediation runs the isolation, Then the state machine's Retry hears of it, told which
    # interfaces may still be open to all traffic
    with pytest.raises(TransientError, match=f"may still be in {UNTRACKING}, which allows all traffic"):
        run(steps(cases, client), case.case_id, 0)
    # And the case already holds the groups each interface had, and says what a stop leaves open
    action = the_action(cases, case)
    assert action.status is ActionStatus.PLANNED
    assert action.before == original
    assert "is open to all traffic in and out" in action.detail

    # When the retry runs it with EC2 back
    retried = run(steps(cases, ec2), case.case_id, 0)

    # Then both interfaces are in the quarantine group alone, the isolation is done, and the groups the
    # interfaces had before are the ones recorded before the first move, never vtriage's
    quarantine = group_id(ec2, QUARANTINE)
    assert interface_groups(ec2, launched.instance_id) == {first: [quarantine], second: [quarantine]}
    action = the_action(cases, case)
    assert retried.status is action.status is ActionStatus.DONE
    assert action.before == original
    assert "an earlier run of this action, which stopped" in action.detail
    assert f"{', '.join(sorted(original))} were moved on from {UNTRACKING}" in action.detail

    # And a rollback puts each interface back in its own groups
    rollback_case(case.case_id, cases, steps(cases, ec2).actuators)
    assert interface_groups(ec2, launched.instance_id) == original


def test_retries_that_all_fail_leave_a_failed_action_that_says_what_may_be_open_and_rolls_back(
    ec2: Any,
) -> None:
    # Given an isolation that stopped with both interfaces in the untracking group, EC2 unreachable
    launched = launch_instance(ec2, ssh_open=True, second_interface=True)
    original = interface_groups(ec2, launched.instance_id)
    case = isolation_case(launched.instance_id)
    cases = InMemoryCaseRepository([case])
    unreachable = EndpointConnectionError(endpoint_url=f"https://ec2.{REGION}.amazonaws.com/")
    client = FailingMoves(ec2, set(range(3, 20)), unreachable, applied=False)
    plan(steps(cases, client), case.case_id)
    with pytest.raises(TransientError) as raised:
        run(steps(cases, client), case.case_id, 0)

    # When the state machine's retries run out and its Catch records the failure (the error and cause
    # Step Functions gives: the TransientError and its message)
    error = {"Error": "TransientError", "Cause": str(raised.value)}
    steps(cases, client).step({"step": "record_failure", "case_id": case.case_id, "index": 0, "error": error})

    # Then the action failed, saying the interfaces may be open to all traffic, with the groups before
    action = the_action(cases, case)
    assert action.status is ActionStatus.FAILED
    assert f"may still be in {UNTRACKING}, which allows all traffic" in action.detail
    assert "is open to all traffic in and out" in action.detail
    assert action.before == original
    # And the ticket carries it
    with pytest.raises(RemediationError, match="open to all traffic"):
        finish(steps(cases, client), case.case_id)

    # And with EC2 back, a rollback puts each interface back in its own groups
    rolled_back = rollback_case(case.case_id, cases, steps(cases, ec2).actuators)
    assert rolled_back.complete
    assert interface_groups(ec2, launched.instance_id) == original


def test_a_function_timed_out_between_the_steps_leaves_what_the_retry_or_a_person_needs(ec2: Any) -> None:
    # Given an instance, and the remediate function ended by Lambda's timeout as it moves the first
    # interface on to the quarantine group (both interfaces are then in the untracking group)
    launched = launch_instance(ec2, ssh_open=True, second_interface=True)
    original = interface_groups(ec2, launched.instance_id)
    first, second = original
    case = isolation_case(launched.instance_id)
    cases = InMemoryCaseRepository([case])
    client = FailingMoves(ec2, {3}, FunctionKilled(), applied=False)
    plan(steps(cases, client), case.case_id)
    with pytest.raises(FunctionKilled):
        run(steps(cases, client), case.case_id, 0)
    untracking = group_id(ec2, UNTRACKING)
    assert interface_groups(ec2, launched.instance_id) == {first: [untracking], second: [untracking]}

    # When the state machine's Catch records the timeout (Lambda's error, as Step Functions reports it)
    error = {"Error": "Sandbox.Timedout", "Cause": "Task timed out after 30.00 seconds"}
    steps(cases, ec2).step({"step": "record_failure", "case_id": case.case_id, "index": 0, "error": error})

    # Then the action failed, saying the function timed out and that an interface left in the untracking
    # group is open to all traffic, and it keeps the groups each interface had, recorded before the moves
    action = the_action(cases, case)
    assert action.status is ActionStatus.FAILED
    assert "Sandbox.Timedout" in action.detail
    assert "is open to all traffic in and out" in action.detail
    assert action.before == original

    # And a rollback closes the instance's exposure: each interface back in its own groups
    rolled_back = rollback_case(case.case_id, cases, steps(cases, ec2).actuators)
    assert rolled_back.complete
    assert interface_groups(ec2, launched.instance_id) == original


def test_the_retry_of_a_function_that_timed_out_between_the_steps_finishes_the_isolation(ec2: Any) -> None:
    # Given an isolation whose function Lambda ended between the two steps (both interfaces in the
    # untracking group)
    launched = launch_instance(ec2, ssh_open=True, second_interface=True)
    original = interface_groups(ec2, launched.instance_id)
    case = isolation_case(launched.instance_id)
    cases = InMemoryCaseRepository([case])
    client = FailingMoves(ec2, {3}, FunctionKilled(), applied=False)
    plan(steps(cases, client), case.case_id)
    with pytest.raises(FunctionKilled):
        run(steps(cases, client), case.case_id, 0)

    # When the state machine retries the run step
    retried = run(steps(cases, ec2), case.case_id, 0)

    # Then the isolation is done, the interfaces in the quarantine group alone, with the groups they had
    quarantine = group_id(ec2, QUARANTINE)
    assert retried.status is ActionStatus.DONE
    assert interface_groups(ec2, launched.instance_id) == {eni: [quarantine] for eni in original}
    assert the_action(cases, case).before == original


# ---------------------------------------------------------------- on the state machine


class DiesMovingIntoQuarantine:
    """The remediate function's EC2 client, whose process Lambda ends (its timeout) as it moves an
    interface into the quarantine group: the moves into the untracking group are made, the second step
    never is."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def modify_network_interface_attribute(self, **kwargs: Any) -> Any:
        [group] = self._client.describe_security_groups(GroupIds=kwargs["Groups"])["SecurityGroups"]
        if group["GroupName"] == QUARANTINE:
            raise FunctionKilled
        return self._client.modify_network_interface_attribute(**kwargs)


def timing_out_between_the_steps(aws: LocalAws, times: int) -> Callable[[str, Any], Any]:
    """The local stack's Lambda, ending the remediate function's first `times` run steps at its timeout
    between the isolation's two steps, and reporting Sandbox.Timedout as Lambda does (the function's own
    code, over the stack's table and EC2, up to that point); every other call is the real function's."""
    invoke = aws.invoke
    timed_out = type("Sandbox.Timedout", (Exception,), {})
    ended: list[int] = []
    place = Place(own_account=ACCOUNT_ID, regions=frozenset({REGION}))

    def invoking(logical_id: str, event: Any) -> Any:
        if logical_id != "RemediateFunction" or event.get("step") != "run" or len(ended) >= times:
            return invoke(logical_id, event)
        ended.append(1)
        cases = DynamoCaseRepository(
            aws.client("dynamodb"), aws.ref("CasesTable"), timedelta(days=90), utc_now
        )
        isolation = Ec2InstanceIsolation(DiesMovingIntoQuarantine(aws.client("ec2")), QUARANTINE, PROTECTED)
        steps = remediator_over(cases, {ActionType.ISOLATE_INSTANCE: isolation}, place=place)
        with pytest.raises(FunctionKilled):
            steps.step(event)
        raise timed_out("Task timed out after 30.00 seconds")

    return invoking


def run_execution(aws: LocalAws, case: Case) -> tuple[dict[str, Any], Case]:
    cases = DynamoCaseRepository(aws.client("dynamodb"), aws.ref("CasesTable"), timedelta(days=90), utc_now)
    assert cases.create(case)
    sfn = aws.client("stepfunctions")
    started = sfn.start_execution(
        stateMachineArn=aws.ref("TriageStateMachine"),
        name=case.case_id,
        input=execution_input(case).model_dump_json(),
    )
    execution = wait_for_execution(sfn, started["executionArn"])
    stored = cases.get(case.case_id)
    assert stored is not None
    return execution, stored


def test_the_state_machine_retries_a_run_lambda_ended_between_the_steps_and_it_finishes_the_isolation(
    local_aws: LocalAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given remediation acting for real, a malicious case isolating an instance, and Lambda ending the
    # remediate function at its timeout between the two steps of the isolation, once
    monkeypatch.setenv("DRY_RUN", "false")
    ec2 = local_aws.client("ec2")
    launched = launch_instance(ec2)
    original = interface_groups(ec2, launched.instance_id)
    monkeypatch.setattr(local_aws, "invoke", timing_out_between_the_steps(local_aws, times=1))

    # When the state machine runs the case
    execution, stored = run_execution(local_aws, isolation_case(launched.instance_id))

    # Then RunAction's Retry ran the step again, which finished the isolation: the interface is in the
    # quarantine group alone, and the action records the groups it had before, never vtriage's
    assert execution["status"] == "SUCCEEDED"
    quarantine = group_id(ec2, QUARANTINE)
    assert interface_groups(ec2, launched.instance_id) == {eni: [quarantine] for eni in original}
    [action] = stored.actions
    assert action.status is ActionStatus.DONE, action.detail
    assert action.before == original
    assert "an earlier run of this action, which stopped" in action.detail


def test_when_every_retry_is_ended_between_the_steps_the_ticket_says_the_instance_may_be_open(
    local_aws: LocalAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given remediation acting for real, and Lambda ending every run of the isolation between its steps
    monkeypatch.setenv("DRY_RUN", "false")
    ec2 = local_aws.client("ec2")
    launched = launch_instance(ec2)
    original = interface_groups(ec2, launched.instance_id)
    monkeypatch.setattr(local_aws, "invoke", timing_out_between_the_steps(local_aws, times=99))

    # When the state machine runs the case
    execution, stored = run_execution(local_aws, isolation_case(launched.instance_id))

    # Then the action failed with the timeout, saying an interface left in the untracking group is open to
    # all traffic, and keeping the groups each interface had; the ticket carries it
    assert execution["status"] == "SUCCEEDED"
    [action] = stored.actions
    assert action.status is ActionStatus.FAILED
    assert "Sandbox.Timedout" in action.detail
    assert "is open to all traffic in and out" in action.detail
    assert action.before == original
    assert stored.ticket is not None
    assert stored.error is not None
    assert "open to all traffic" in stored.error

    # And `vtriage rollback` puts the interface back in its own groups
    with contextlib.redirect_stdout(io.StringIO()):
        assert vtriage(["rollback", stored.case_id]) == 0
    assert interface_groups(ec2, launched.instance_id) == original
