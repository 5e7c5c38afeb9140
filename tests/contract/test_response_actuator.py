"""`ResponseActuator`: the in-memory actuator and a real one, the EC2 isolation on moto (an instance
launched as the functional tests launch one), act, dry-run, repeat, roll back and refuse alike. What the
state of a target is differs between the two (a string, the groups of each network interface): each
says whether it changed, never what it is."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.contract.conftest import IN_MEMORY, client
from tests.functional.conftest import launch_instance
from vtriage.adapters.ec2 import Ec2InstanceIsolation
from vtriage.fakes import FakeActuator
from vtriage.models import Action, ActionStatus, ActionType
from vtriage.ports import ResponseActuator
from vtriage_local.stack import LocalAws

# An instance id of the right form that no instance has.
MISSING = "i-0123456789abcdef0"


@dataclass(frozen=True)
class Targets:
    """The actuator under test, a way to make a target for it (carrying the protected tag or not), and
    the state of a target now (opaque: compared, never read)."""

    actuator: ResponseActuator
    make: Callable[[bool], str]
    state: Callable[[str], Any]


@pytest.fixture
def targets(implementation: str, request: pytest.FixtureRequest) -> Targets:
    if implementation == IN_MEMORY:
        fake = FakeActuator(ActionType.ISOLATE_INSTANCE, protected={"i-protected"})

        def known(protected: bool) -> str:
            target = "i-protected" if protected else f"i-{len(fake.states)}"
            fake.states[target] = "running"
            return target

        return Targets(fake, known, fake.states.get)
    aws: LocalAws = request.getfixturevalue("aws")
    ec2, environment = client(aws, "ec2"), aws.function_environment()
    protected_tag = str(environment["PROTECTED_TAG_KEY"])

    def launched(protected: bool) -> str:
        instance_id = launch_instance(ec2).instance_id
        if protected:
            ec2.create_tags(Resources=[instance_id], Tags=[{"Key": protected_tag, "Value": "true"}])
        return instance_id

    def groups(instance_id: str) -> dict[str, list[str]]:
        instance = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
        return {
            interface["NetworkInterfaceId"]: sorted(group["GroupId"] for group in interface["Groups"])
            for interface in instance["NetworkInterfaces"]
        }

    isolation = Ec2InstanceIsolation(ec2, str(environment["QUARANTINE_GROUP_NAME"]), protected_tag)
    return Targets(isolation, launched, groups)


def _action(target: str) -> Action:
    return Action(type=ActionType.ISOLATE_INSTANCE, target=target, parameters={"case_id": "guardduty-1"})


def test_a_dry_run_changes_nothing_an_action_acts_once_and_its_rollback_undoes_it(targets: Targets) -> None:
    # Given a target as it is
    target = targets.make(False)
    before = targets.state(target)

    # When the action is dry-run, Then it says so and the target is unchanged
    dry = targets.actuator.run(_action(target), dry_run=True)
    assert dry.status is ActionStatus.DRY_RUN
    assert dry.detail.startswith("dry run")
    assert targets.state(target) == before

    # When it runs, Then it changes the target and records its state before and after
    done = targets.actuator.run(_action(target), dry_run=False)
    acted = targets.state(target)
    assert done.status is ActionStatus.DONE
    assert acted != before
    assert done.before
    assert done.after

    # When it runs again, Then it finds the target acted on and changes nothing
    again = targets.actuator.run(_action(target), dry_run=False)
    assert again.status is ActionStatus.DONE
    assert targets.state(target) == acted

    # When the first run is rolled back, Then the target is as it was before the action
    undone = targets.actuator.rollback(done)
    assert undone.status is ActionStatus.ROLLED_BACK
    assert targets.state(target) == before


def test_a_protected_target_is_left_alone(targets: Targets) -> None:
    # Given a target carrying the protected tag
    target = targets.make(True)
    before = targets.state(target)

    # When the action runs for real
    result = targets.actuator.run(_action(target), dry_run=False)

    # Then it is skipped with the reason, and the target is unchanged
    assert result.status is ActionStatus.SKIPPED
    assert "protected" in result.detail
    assert targets.state(target) == before


def test_a_target_that_does_not_exist_fails_the_action(targets: Targets) -> None:
    # Given no such target, When the action runs, Then it fails saying the target is not found
    result = targets.actuator.run(_action(MISSING), dry_run=False)
    assert result.status is ActionStatus.FAILED
    assert "not found" in result.detail
