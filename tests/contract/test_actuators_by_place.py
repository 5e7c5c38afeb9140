"""`ActuatorsByPlace`: the in-memory places and the remediate function's own (`PlacedActuators`, built by
its composition root from its settings, as deployed with a member account) give, wherever a case lives,
an actuator for every action type that acts in AWS, and the same actuators outside AWS for every case;
an actuator of a place acts there (a member's instance through its role, on moto's other account); an
account neither the deployment's nor a listed member is refused with `MemberRoleError`.

The in-memory places give the same actuators in every account it reaches: what it is told of a place is
the account alone.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.contract.conftest import IN_MEMORY
from tests.functional.conftest import launch_instance
from tests.functional.test_organisation import ROLE, member_role
from vtriage.composition.remediate import placed_actuators
from vtriage.config.remediate import RemediateSettings
from vtriage.errors import MemberRoleError
from vtriage.fakes import FakeActuator, FakeActuatorsByPlace
from vtriage.models import Action, ActionStatus, ActionType
from vtriage.ports import ActuatorsByPlace
from vtriage_local.stack import ACCOUNT_ID, REGION, LocalAws

MEMBER = "210987654321"
UNLISTED = "999999999999"
ELSEWHERE = "eu-west-1"
IN_AWS = frozenset(kind for kind in ActionType if kind.acts_in_aws)
OUTSIDE_AWS = frozenset(kind for kind in ActionType if not kind.acts_in_aws)


@dataclass(frozen=True)
class Places:
    """The places under test; a way to have an instance in an account and Region (its id); and the
    state of an instance there (opaque: compared, never read)."""

    places: ActuatorsByPlace
    instance_in: Callable[[str, str], str]
    state: Callable[[str, str, str], Any]


@pytest.fixture
def places(implementation: str, request: pytest.FixtureRequest) -> Places:
    if implementation == IN_MEMORY:
        actuators = {kind: FakeActuator(kind) for kind in ActionType}
        isolation = actuators[ActionType.ISOLATE_INSTANCE]

        def known(account: str, region: str) -> str:
            instance_id = f"i-{uuid.uuid4().hex[:17]}"
            isolation.states[instance_id] = "running"
            return instance_id

        return Places(
            FakeActuatorsByPlace(actuators, accounts={ACCOUNT_ID, MEMBER}),
            known,
            lambda account, region, instance_id: isolation.states[instance_id],
        )
    aws: LocalAws = request.getfixturevalue("aws")
    settings: RemediateSettings = request.getfixturevalue("deployed_with_a_member")
    return Places(placed_actuators(settings), _launcher(aws), _interface_groups(aws))


@pytest.fixture(scope="module")
def deployed_with_a_member(template_stack: LocalAws) -> RemediateSettings:
    """The remediate function's settings as deployed with one member account, its role created there
    (as member-role.yaml does); every action type configured: the network ACL rule range and a WAF IP
    set (its id, never read until it acts)."""
    member_role(template_stack, MEMBER)
    environ = {
        **os.environ,
        "MEMBER_ACCOUNT_IDS": MEMBER,
        "MEMBER_ROLE_NAME": ROLE,
        "NACL_RULE_MIN": "1",
        "NACL_RULE_MAX": "18",
        "WAF_IP_SET_NAME": "vtriage-blocked",
        "WAF_IP_SET_ID": "a1b2c3d4-5678-90ab-cdef-EXAMPLE11111",
    }
    return RemediateSettings.from_environ(environ)


def _launcher(aws: LocalAws) -> Callable[[str, str], str]:
    def launched(account: str, region: str) -> str:
        return launch_instance(aws.client("ec2", region=region, account=account)).instance_id

    return launched


def _interface_groups(aws: LocalAws) -> Callable[[str, str, str], Any]:
    def groups(account: str, region: str, instance_id: str) -> Any:
        ec2 = aws.client("ec2", region=region, account=account)
        [instance] = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"]
        return [sorted(group["GroupId"] for group in eni["Groups"]) for eni in instance["NetworkInterfaces"]]

    return groups


def _isolation(instance_id: str, case_id: str) -> Action:
    return Action(type=ActionType.ISOLATE_INSTANCE, target=instance_id, parameters={"case_id": case_id})


@pytest.mark.parametrize(("account", "region"), [(ACCOUNT_ID, REGION), (MEMBER, ELSEWHERE)])
def test_every_action_type_has_its_actuator_wherever_a_case_lives(
    places: Places, account: str, region: str
) -> None:
    # Given the deployment's own account, or a member's in another Region, When a case there asks for its
    # actuators, and another case there afterwards
    here = places.places.at(account, region, "guardduty-first")
    again = places.places.at(account, region, "guardduty-second")

    # Then every action type acting in AWS has one there, kept for the next case
    assert set(here) == IN_AWS
    assert all(again[kind] is here[kind] for kind in IN_AWS)
    # And those acting outside AWS are the same whichever case asks
    assert set(places.places.outside_aws()) == OUTSIDE_AWS
    assert all(places.places.outside_aws()[kind] is places.places.outside_aws()[kind] for kind in OUTSIDE_AWS)


@pytest.mark.parametrize(("account", "region"), [(ACCOUNT_ID, REGION), (MEMBER, ELSEWHERE)])
def test_an_actuator_of_a_place_acts_on_the_instance_there(places: Places, account: str, region: str) -> None:
    # Given an instance in the account and Region a case lives in
    instance_id = places.instance_in(account, region)
    before = places.state(account, region, instance_id)

    # When the isolation of that place runs for the case
    case_id = f"guardduty-{uuid.uuid4().hex}"
    isolate = places.places.at(account, region, case_id)[ActionType.ISOLATE_INSTANCE]
    done = isolate.run(_isolation(instance_id, case_id), dry_run=False)

    # Then the instance there is isolated
    assert done.status is ActionStatus.DONE, done.detail
    assert places.state(account, region, instance_id) != before


def test_an_account_neither_the_deployments_nor_a_member_is_refused(places: Places) -> None:
    # Given an account that is not listed, When a case there asks for its actuators, Then it is refused,
    # naming the account
    with pytest.raises(MemberRoleError, match=f"account {UNLISTED} is neither this deployment's"):
        places.places.at(UNLISTED, REGION, "guardduty-unlisted")
