"""The protected tag as every actuator reads it (`vtriage.protected_tag`): the key however a person typed
it (case, spaces around it or its colon), any value; a key that only contains it protects nothing. Each
actuator that honours the tag is run over a fake client that answers only the reads it makes before
deciding, and fails the test on any other call."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, cast

import pytest

from vtriage.adapters.ec2 import Ec2InstanceIsolation, Ec2InstanceTagging, Ec2VolumeSnapshots
from vtriage.adapters.falcon import FalconClient, FalconHostContainment
from vtriage.adapters.iam import IamAccessKeyDisabler
from vtriage.adapters.nacl import OPT_IN_TAG, OPT_IN_VALUE, NaclIpBlocker
from vtriage.models import Action, ActionStatus, ActionType
from vtriage.ports import ResponseActuator
from vtriage.protected_tag import is_protected_key, protecting_tag, tag_key_form

PROTECTED_TAG = "vtriage:protected"

# The key as people type it by hand: another case, a stray space before or after it, or around its colon.
TYPED_OTHERWISE = [
    "VTriage:Protected",
    "VTRIAGE:PROTECTED",
    "vtriage:protected ",
    " vtriage:protected",
    "vtriage: protected",
    "vtriage :protected",
    "  VTriage : Protected  ",
]
# Keys that only contain the protected key, or resemble it: each is another key.
OTHER_KEYS = [
    "vtriage:protected-until",
    "vtriage:unprotected",
    "vtriage:protect",
    "vtriage:protection",
    "vtriage-protected",
    "vtriage:pro tected",
    "protected",
    "vtriage:protected:false",
]


@pytest.mark.parametrize("key", [PROTECTED_TAG, *TYPED_OTHERWISE])
def test_the_protected_key_however_typed_protects(key: str) -> None:
    # Given a resource carrying the protected key typed this way, beside another tag
    tags = [("Name", "web-1"), (key, "true")]

    # When its tags are read, Then that tag protects it, and says how the resource carries it
    found = protecting_tag(tags, PROTECTED_TAG)
    assert found is not None
    assert (found.key, found.value) == (key, "true")


@pytest.mark.parametrize("key", OTHER_KEYS)
def test_a_key_that_only_contains_the_protected_key_protects_nothing(key: str) -> None:
    # Given a resource carrying a key that only contains or resembles the protected one
    # When its tags are read, Then nothing protects it
    assert protecting_tag([(key, "true")], PROTECTED_TAG) is None
    assert not is_protected_key(key, PROTECTED_TAG)


@pytest.mark.parametrize("value", ["true", "false", "", "no", "prod-db"])
def test_any_value_protects_as_iams_null_condition_holds_it(value: str) -> None:
    # Given the protected key with this value (IAM's Deny asks only whether the key is there)
    # When the tags are read, Then the resource is protected, whatever the value says
    found = protecting_tag([(PROTECTED_TAG, value)], PROTECTED_TAG)
    assert found is not None
    assert found.value == value


def test_a_protected_key_configured_with_another_case_or_spaces_matches_the_same_keys() -> None:
    # Given the protected key configured (PROTECTED_TAG_KEY) with capitals and a stray space
    configured = " VTriage: Protected"

    # When resources are read, Then the key in any of its spellings protects, and other keys do not
    assert all(is_protected_key(key, configured) for key in [PROTECTED_TAG, *TYPED_OTHERWISE])
    assert not any(is_protected_key(key, configured) for key in OTHER_KEYS)
    assert tag_key_form(configured) == PROTECTED_TAG


def test_the_reason_names_the_tag_as_the_resource_carries_it_and_what_it_was_read_as() -> None:
    # Given one resource carrying the key as configured and another carrying it typed otherwise
    exact = protecting_tag([(PROTECTED_TAG, "prod-db")], PROTECTED_TAG)
    typed = protecting_tag([("VTriage: Protected ", "true")], PROTECTED_TAG)

    # When each is written in an action's detail, Then the exact key reads as it always did, and the
    # other one is quoted (its spaces visible) with the key it was read as
    assert str(exact) == "vtriage:protected='prod-db'"
    assert str(typed) == "'VTriage: Protected '='true' (read as vtriage:protected)"


# ---------------------------------------------------------------- every actuator that honours the tag


class ReadOnlyAws:
    """A boto3 client answering only the reads given (operation name: response, the same for a
    paginator's single page); any other call fails the test, naming it: an actuator may only read a
    protected target before leaving it alone."""

    def __init__(self, **answers: dict[str, Any]) -> None:
        """Answer each named operation with its response."""
        self._answers = answers
        self.calls: list[str] = []

    def __getattr__(self, operation: str) -> Callable[..., dict[str, Any]]:
        if operation.startswith("__"):
            raise AttributeError(operation)

        def answer(**_: Any) -> dict[str, Any]:
            self.calls.append(operation)
            if operation not in self._answers:
                raise AssertionError(f"the actuator called {operation} on a protected target")
            return self._answers[operation]

        return answer

    def get_paginator(self, operation: str) -> ReadOnlyAws.Pages:
        """A paginator of the operation's one page."""
        return ReadOnlyAws.Pages(getattr(self, operation))

    class Pages:
        """A paginator whose `paginate` yields the operation's answer as its only page."""

        def __init__(self, operation: Callable[..., dict[str, Any]]) -> None:
            """Page over the operation."""
            self._operation = operation

        def paginate(self, **parameters: Any) -> Iterator[dict[str, Any]]:
            """The operation's answer, one page."""
            yield self._operation(**parameters)


INSTANCE = "i-0a1b2c3d4e5f67890"
CASE = "guardduty-0123456789abcdef0123456789abcdef"


def _tags(key: str) -> list[dict[str, str]]:
    return [{"Key": "Name", "Value": "web-1"}, {"Key": key, "Value": "true"}]


def _instance_described(key: str) -> dict[str, Any]:
    """DescribeInstances' answer for the instance, carrying the key."""
    instance = {
        "InstanceId": INSTANCE,
        "SubnetId": "subnet-1",
        "Tags": _tags(key),
        "NetworkInterfaces": [
            {"NetworkInterfaceId": "eni-1", "SubnetId": "subnet-1", "VpcId": "vpc-1", "Groups": []}
        ],
        "BlockDeviceMappings": [{"DeviceName": "/dev/xvda", "Ebs": {"VolumeId": "vol-1"}}],
    }
    return {"Reservations": [{"Instances": [instance]}]}


def _ec2_with_instance(key: str) -> ReadOnlyAws:
    return ReadOnlyAws(describe_instances=_instance_described(key))


def _isolation(key: str) -> tuple[ResponseActuator, Action]:
    return (
        Ec2InstanceIsolation(_ec2_with_instance(key), "vtriage-quarantine", PROTECTED_TAG),
        Action(type=ActionType.ISOLATE_INSTANCE, target=INSTANCE, parameters={"case_id": CASE}),
    )


def _snapshots(key: str) -> tuple[ResponseActuator, Action]:
    return (
        Ec2VolumeSnapshots(_ec2_with_instance(key), PROTECTED_TAG),
        Action(type=ActionType.SNAPSHOT_VOLUMES, target=INSTANCE, parameters={"case_id": CASE}),
    )


def _tagging(key: str) -> tuple[ResponseActuator, Action]:
    return (
        Ec2InstanceTagging(_ec2_with_instance(key), PROTECTED_TAG),
        Action(type=ActionType.TAG_INSTANCE, target=INSTANCE, parameters={"case_id": CASE}),
    )


def _network_acl(key: str) -> tuple[ResponseActuator, Action]:
    # The instance's subnet's network ACL, opted in, and protected; the instance itself is not.
    acl = {
        "NetworkAclId": "acl-1",
        "Entries": [],
        "Tags": [{"Key": OPT_IN_TAG, "Value": OPT_IN_VALUE}, {"Key": key, "Value": "true"}],
    }
    ec2 = ReadOnlyAws(
        describe_instances=_instance_described("Name"),
        describe_network_acls={"NetworkAcls": [acl]},
        # The address is not the account's own (no Elastic IP, no interface holds it).
        describe_addresses={"Addresses": []},
        describe_network_interfaces={"NetworkInterfaces": []},
    )
    return (
        NaclIpBlocker(ec2, 1, 18, PROTECTED_TAG),
        Action(type=ActionType.BLOCK_IP_NACL, target="198.51.100.7", parameters={"instance_id": INSTANCE}),
    )


def _access_key(key: str) -> tuple[ResponseActuator, Action]:
    iam = ReadOnlyAws(list_user_tags={"Tags": _tags(key)})
    policy = "arn:aws:iam::123456789012:policy/vtriage-contain"
    return (
        IamAccessKeyDisabler(iam, PROTECTED_TAG, policy),
        Action(
            type=ActionType.DISABLE_ACCESS_KEY, target="AKIAIOSFODNN7EXAMPLE", parameters={"user_name": "ci"}
        ),
    )


ACTUATORS = {
    ActionType.ISOLATE_INSTANCE: _isolation,
    ActionType.SNAPSHOT_VOLUMES: _snapshots,
    ActionType.TAG_INSTANCE: _tagging,
    ActionType.BLOCK_IP_NACL: _network_acl,
    ActionType.DISABLE_ACCESS_KEY: _access_key,
}


@pytest.mark.parametrize("key", [PROTECTED_TAG, *TYPED_OTHERWISE])
@pytest.mark.parametrize("dry_run", [False, True], ids=["for-real", "dry-run"])
@pytest.mark.parametrize("action_type", list(ACTUATORS), ids=lambda action_type: action_type.value)
def test_every_aws_actuator_leaves_a_target_protected_by_the_key_however_typed_alone(
    action_type: ActionType, dry_run: bool, key: str
) -> None:
    # Given an actuator whose target (or, for a network ACL block, the ACL) carries the protected key
    # typed this way, over a client that fails on anything but reading it
    actuator, action = ACTUATORS[action_type](key)

    # When the action runs
    outcome = actuator.run(action, dry_run)

    # Then it is skipped, naming the tag as the resource carries it, and nothing but reads was called
    assert outcome.status is ActionStatus.SKIPPED, outcome.detail
    assert "carries the protected tag" in outcome.detail
    named = f"{PROTECTED_TAG}='true'" if key == PROTECTED_TAG else f"{key!r}='true' (read as {PROTECTED_TAG})"
    assert named in outcome.detail


FALCON_PROTECTED = "FalconGroupingTags/vtriage-protected"
DEVICE = "0123456789abcdef0123456789abcdef"
CID = "fedcba9876543210fedcba9876543210"


class ReadOnlyFalcon:
    """A Falcon API client answering only the read of one device; any action on it fails the test."""

    def __init__(self, grouping_tags: list[str]) -> None:
        """Serve the device with these grouping tags."""
        self._tags = grouping_tags

    def device(self, device_id: str) -> dict[str, Any]:
        """The live device, in this deployment's tenant, not contained."""
        return {
            "device_id": device_id,
            "cid": CID,
            "hostname": "laptop-7",
            "status": "normal",
            "tags": self._tags,
        }

    def device_action(self, action_name: str, device_id: str) -> None:
        """Any action fails the test: the host is protected."""
        raise AssertionError(f"{action_name} sent for {device_id}, a protected host")


@pytest.mark.parametrize(
    "tag",
    [
        FALCON_PROTECTED,
        "falcongroupingtags/VTRIAGE-PROTECTED",
        "FalconGroupingTags/VTriage-Protected",
        " FalconGroupingTags/vtriage-protected ",
    ],
)
def test_a_falcon_host_carrying_the_protected_grouping_tag_however_typed_is_never_contained(tag: str) -> None:
    # Given a host of the deployment's tenant carrying the protected grouping tag spelt this way
    falcon = ReadOnlyFalcon(["FalconGroupingTags/laptops", tag])
    actuator = FalconHostContainment(lambda: cast(FalconClient, falcon), CID, FALCON_PROTECTED)

    # When its containment runs for real, Then it is skipped, saying why, and nothing was sent
    outcome = actuator.run(Action(type=ActionType.CONTAIN_HOST, target=DEVICE), False)
    assert outcome.status is ActionStatus.SKIPPED
    assert f"carries the protected grouping tag {FALCON_PROTECTED}" in outcome.detail
