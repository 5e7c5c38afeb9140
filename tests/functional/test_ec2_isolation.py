"""Ec2InstanceIsolation against moto's EC2: what the instance's network interfaces end up in."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from moto import mock_aws

from tests.functional.conftest import launch_instance, machine_image, use_dummy_aws_credentials
from vtriage.adapters.ec2 import UNTRACKING_SUFFIX, Ec2InstanceIsolation
from vtriage.errors import TransientError
from vtriage.models import Action, ActionStatus, ActionType

pytestmark = pytest.mark.functional

REGION = "us-east-1"
QUARANTINE = "vtriage-quarantine"
UNTRACKING = QUARANTINE + UNTRACKING_SUFFIX
PROTECTED_TAG = "vtriage:protected"
PURPOSE = {"Key": "vtriage:purpose", "Value": "quarantine"}


@pytest.fixture
def ec2(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """An EC2 client on moto, with dummy credentials so that nothing can reach a real account."""
    use_dummy_aws_credentials(monkeypatch, REGION)
    with mock_aws():
        yield boto3.client("ec2", region_name=REGION)


def web_server(ec2: Any, tags: dict[str, str] | None = None) -> tuple[str, str]:
    """An instance with two network interfaces in a 'web' group that allows SSH; returns (instance, group)."""
    launched = launch_instance(ec2, tags=tags, ssh_open=True, second_interface=True)
    return launched.instance_id, launched.group_id


def interface_groups(ec2: Any, instance_id: str) -> dict[str, list[str]]:
    """The groups of each of the instance's network interfaces, as EC2 reports them now."""
    instance = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    return {
        interface["NetworkInterfaceId"]: sorted(group["GroupId"] for group in interface["Groups"])
        for interface in instance["NetworkInterfaces"]
    }


def quarantine_groups(ec2: Any) -> list[dict[str, Any]]:
    """Every security group named like the quarantine group."""
    groups = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": [QUARANTINE]}])
    return list(groups["SecurityGroups"])


def isolation(ec2: Any) -> Ec2InstanceIsolation:
    return Ec2InstanceIsolation(ec2, QUARANTINE, PROTECTED_TAG)


def isolate(ec2: Any, instance_id: str, *, dry_run: bool, case_id: str | None = None) -> Action:
    """Run an isolation of the instance as the remediation's run step does: with the case id, when given."""
    action = Action(
        type=ActionType.ISOLATE_INSTANCE,
        target=instance_id,
        parameters={"case_id": case_id} if case_id else {},
    )
    return isolation(ec2).run(action, dry_run)


def test_isolation_leaves_every_interface_only_in_a_quarantine_group_with_no_rules(ec2: Any) -> None:
    # Given an instance with two interfaces in a group that allows SSH
    instance_id, web = web_server(ec2)
    before = interface_groups(ec2, instance_id)

    # When it is isolated for real
    action = isolate(ec2, instance_id, dry_run=False)

    # Then both interfaces are only in the quarantine group, which allows nothing in or out
    [group] = quarantine_groups(ec2)
    assert group["IpPermissions"] == []
    assert group["IpPermissionsEgress"] == []
    assert {"Key": "vtriage:purpose", "Value": "quarantine"} in group["Tags"]
    assert interface_groups(ec2, instance_id) == {eni: [group["GroupId"]] for eni in before}
    # And the action records what it changed
    assert action.type is ActionType.ISOLATE_INSTANCE
    assert action.target == instance_id
    assert action.status is ActionStatus.DONE
    assert action.before == {eni: [web] for eni in before}
    assert action.after == {eni: [group["GroupId"]] for eni in before}


def test_dry_run_changes_nothing_and_says_what_would_change(ec2: Any) -> None:
    # Given an instance in the web group
    instance_id, web = web_server(ec2)
    before = interface_groups(ec2, instance_id)
    groups_before = ec2.describe_security_groups()["SecurityGroups"]

    # When it is isolated in dry run
    action = isolate(ec2, instance_id, dry_run=True)

    # Then no group was created or changed and the interfaces are where they were
    assert interface_groups(ec2, instance_id) == before
    assert quarantine_groups(ec2) == []
    assert ec2.describe_security_groups()["SecurityGroups"] == groups_before
    # And the action names each interface, its current group and the quarantine group
    assert action.status is ActionStatus.DRY_RUN
    for eni in before:
        assert f"{eni} (now in {web})" in action.detail
    assert QUARANTINE in action.detail
    assert "not created" in action.detail
    assert action.before == before
    assert action.after is None


def test_dry_run_names_an_existing_quarantine_group_by_id(ec2: Any) -> None:
    # Given an isolated instance, so a quarantine group exists, and a second instance in the same VPC
    first, _ = web_server(ec2)
    isolate(ec2, first, dry_run=False)
    [group] = quarantine_groups(ec2)
    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [group["VpcId"]]}])["Subnets"]
    subnet_id = subnets[0]["SubnetId"]
    image_id = machine_image(ec2)
    second = ec2.run_instances(ImageId=image_id, MinCount=1, MaxCount=1, SubnetId=subnet_id)["Instances"][0]

    # When the second is isolated in dry run
    action = isolate(ec2, second["InstanceId"], dry_run=True)

    # Then the detail names the existing quarantine group, and the instance is untouched
    assert action.status is ActionStatus.DRY_RUN
    assert f"{QUARANTINE} ({group['GroupId']})" in action.detail
    assert group["GroupId"] not in next(iter(interface_groups(ec2, second["InstanceId"]).values()))


def test_a_protected_instance_is_skipped_and_untouched(ec2: Any) -> None:
    # Given an instance carrying the protected tag (its value does not matter)
    instance_id, _ = web_server(ec2, tags={PROTECTED_TAG: ""})
    before = interface_groups(ec2, instance_id)

    # When it is isolated for real
    action = isolate(ec2, instance_id, dry_run=False)

    # Then it is skipped with the reason, and nothing changed
    assert action.status is ActionStatus.SKIPPED
    assert PROTECTED_TAG in action.detail
    assert interface_groups(ec2, instance_id) == before
    assert quarantine_groups(ec2) == []


def protect_part_of_the_network(ec2: Any, instance_id: str, part: str) -> tuple[str, str]:
    """Put the protected tag, its key typed otherwise, on one part of the instance's network: its first or
    second interface, its subnet, its VPC, or vtriage's quarantine group there (made as an earlier
    isolation in the VPC left it). Returns the resource and how the reason names it."""
    instance = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    interfaces = sorted(instance["NetworkInterfaces"], key=lambda i: i["Attachment"]["DeviceIndex"])
    if part == "quarantine group":
        resource = ec2.create_security_group(
            GroupName=QUARANTINE,
            Description="left by an earlier isolation",
            VpcId=instance["VpcId"],
            TagSpecifications=[{"ResourceType": "security-group", "Tags": [PURPOSE]}],
        )["GroupId"]
        named = f"security group {QUARANTINE} ({resource})"
    else:
        resource, named = {
            "first interface": (interfaces[0]["NetworkInterfaceId"], "network interface"),
            "second interface": (interfaces[1]["NetworkInterfaceId"], "network interface"),
            "subnet": (interfaces[0]["SubnetId"], "subnet"),
            "VPC": (instance["VpcId"], "VPC"),
        }[part]
        named = f"{named} {resource}"
    ec2.create_tags(Resources=[resource], Tags=[{"Key": "VTriage: Protected", "Value": "legal hold"}])
    return resource, named


@pytest.mark.parametrize("part", ["first interface", "second interface", "subnet", "VPC", "quarantine group"])
@pytest.mark.parametrize("dry_run", [False, True], ids=["for-real", "dry-run"])
def test_an_instance_whose_interface_subnet_vpc_or_quarantine_group_is_protected_is_skipped_untouched(
    ec2: Any, part: str, dry_run: bool
) -> None:
    # Given an instance with two interfaces, one part of whose network carries the protected tag (the key
    # typed otherwise: the deployed Deny would refuse a move or a group there, part-way through)
    instance_id, _ = web_server(ec2)
    before = interface_groups(ec2, instance_id)
    _, named = protect_part_of_the_network(ec2, instance_id, part)
    groups_before = ec2.describe_security_groups()["SecurityGroups"]
    moves = record_moves(ec2)

    # When it is isolated
    action = isolate(ec2, instance_id, dry_run=dry_run)

    # Then the whole isolation is skipped before any move, the reason naming the resource and its tag
    assert action.status is ActionStatus.SKIPPED, action.detail
    assert (
        f"not isolated: {named} carries the protected tag 'VTriage: Protected'='legal hold' "
        "(read as vtriage:protected)" in action.detail
    )
    # And nothing changed: no interface moved, no group created or opened
    assert moves == []
    assert interface_groups(ec2, instance_id) == before
    assert ec2.describe_security_groups()["SecurityGroups"] == groups_before


def test_isolating_twice_reports_already_isolated(ec2: Any) -> None:
    # Given an instance isolated once
    instance_id, _ = web_server(ec2)
    isolate(ec2, instance_id, dry_run=False)
    isolated = interface_groups(ec2, instance_id)

    # When it is isolated again, for real and in dry run
    again = isolate(ec2, instance_id, dry_run=False)
    again_dry = isolate(ec2, instance_id, dry_run=True)

    # Then both say it is already isolated, and nothing changed; neither records vtriage's own group as
    # the groups the interfaces had before (the first isolation recorded those, and undoes it)
    for action in (again, again_dry):
        assert action.status is ActionStatus.DONE
        assert action.detail.startswith("already isolated")
        assert action.before == {}
        assert action.after == isolated
    assert interface_groups(ec2, instance_id) == isolated
    assert len(quarantine_groups(ec2)) == 1


def test_a_quarantine_group_opened_by_hand_is_closed_again(ec2: Any) -> None:
    # Given an isolated instance whose quarantine group someone opened to SSH
    instance_id, _ = web_server(ec2)
    isolate(ec2, instance_id, dry_run=False)
    [group] = quarantine_groups(ec2)
    ec2.authorize_security_group_ingress(
        GroupId=group["GroupId"],
        IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
        ],
    )

    # When it is isolated again
    action = isolate(ec2, instance_id, dry_run=False)

    # Then the rule is gone and the action says so
    [group] = quarantine_groups(ec2)
    assert group["IpPermissions"] == []
    assert action.status is ActionStatus.DONE
    assert "revoked the rules" in action.detail


def test_a_missing_instance_is_a_failed_action_not_an_exception(ec2: Any) -> None:
    # Given no such instance, When it is isolated
    action = isolate(ec2, "i-0123456789abcdef0", dry_run=False)

    # Then the action failed with EC2's reason
    assert action.status is ActionStatus.FAILED
    assert "InvalidInstanceID.NotFound" in action.detail


def planned_isolation(instance_id: str) -> Action:
    """An isolation as a playbook plans it."""
    return Action(type=ActionType.ISOLATE_INSTANCE, target=instance_id, parameters={"case_id": "case-1"})


def test_run_isolates_the_target_and_keeps_the_planned_parameters(ec2: Any) -> None:
    # Given an instance and an isolation planned on it
    instance_id, web = web_server(ec2)
    planned = planned_isolation(instance_id)

    # When the actuator runs it for real
    action = isolation(ec2).run(planned, dry_run=False)

    # Then the instance is isolated and the action is the planned one with its outcome
    [group] = quarantine_groups(ec2)
    interfaces = interface_groups(ec2, instance_id)
    assert interfaces == {eni: [group["GroupId"]] for eni in interfaces}
    assert action.status is ActionStatus.DONE
    assert action.parameters == planned.parameters
    assert action.before == {eni: [web] for eni in interfaces}


def test_rollback_puts_every_interface_back_in_its_groups(ec2: Any) -> None:
    # Given an instance isolated through the actuator
    instance_id, _ = web_server(ec2)
    original = interface_groups(ec2, instance_id)
    done = isolation(ec2).run(planned_isolation(instance_id), dry_run=False)
    assert interface_groups(ec2, instance_id) != original

    # When it is rolled back
    undone = isolation(ec2).rollback(done)

    # Then each interface is back in the groups it had, and the action says so
    assert interface_groups(ec2, instance_id) == original
    assert undone.status is ActionStatus.ROLLED_BACK
    assert undone.detail.startswith("rolled back:")
    assert undone.before == done.before
    assert undone.after == original

    # And rolling back again changes nothing more and says so
    again = isolation(ec2).rollback(done)
    assert again.status is ActionStatus.ROLLED_BACK
    assert again.detail.startswith("already as before isolation")
    assert interface_groups(ec2, instance_id) == original


class DenyingProtectedGroups:
    """moto's EC2 with what IAM's Deny on protected resources (or an organisation's policy) does that moto
    does not: a move of an interface into a security group carrying the protected tag is refused."""

    def __init__(self, ec2: Any) -> None:
        self._ec2 = ec2

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ec2, name)

    def modify_network_interface_attribute(self, **request: Any) -> Any:
        for group in request.get("Groups", []):
            tags = self._ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [group]}])["Tags"]
            if any(tag["Key"] == PROTECTED_TAG for tag in tags):
                error = {"Error": {"Code": "UnauthorizedOperation", "Message": "explicit deny"}}
                raise ClientError(error, "ModifyNetworkInterfaceAttribute")  # type: ignore[arg-type]
        return self._ec2.modify_network_interface_attribute(**request)


def test_a_rollback_refused_into_a_protected_group_fails_saying_what_to_do_and_can_be_run_again(
    ec2: Any,
) -> None:
    # Given an instance isolated for real, whose original group was tagged protected afterwards, and an
    # EC2 that refuses moves into protected groups
    instance_id, group = web_server(ec2)
    original = interface_groups(ec2, instance_id)
    done = isolation(ec2).run(planned_isolation(instance_id), dry_run=False)
    isolated = interface_groups(ec2, instance_id)
    ec2.create_tags(Resources=[group], Tags=[{"Key": PROTECTED_TAG, "Value": "true"}])
    denying = Ec2InstanceIsolation(DenyingProtectedGroups(ec2), QUARANTINE, PROTECTED_TAG)

    # When it is rolled back
    undone = denying.rollback(done)

    # Then the rollback fails, raising nothing: it names each interface EC2 refused to put back, into
    # which group, EC2's code, the group's protected tag, where the interface still is and what to do
    assert undone.status is ActionStatus.FAILED
    assert interface_groups(ec2, instance_id) == isolated
    for eni, groups in isolated.items():
        assert f"EC2 refused to put {eni} back into {group} (UnauthorizedOperation)" in undone.detail
        assert f"it is still in {', '.join(groups)}: move it by hand" in undone.detail
    assert f"{group} carries the protected tag vtriage:protected='true'" in undone.detail
    # And it keeps the groups before the isolation, so that the next rollback tries again
    assert undone.before == done.before

    # When the tag is lifted and the rollback runs again
    ec2.delete_tags(Resources=[group], Tags=[{"Key": PROTECTED_TAG}])
    again = denying.rollback(undone)

    # Then every interface is back in its group
    assert again.status is ActionStatus.ROLLED_BACK
    assert interface_groups(ec2, instance_id) == original


def test_rollback_of_an_instance_that_was_already_isolated_leaves_it_isolated(ec2: Any) -> None:
    # Given an instance isolated by hand before vtriage ran, then "isolated again" by vtriage
    instance_id, _ = web_server(ec2)
    isolate(ec2, instance_id, dry_run=False)
    isolated = interface_groups(ec2, instance_id)
    done = isolation(ec2).run(planned_isolation(instance_id), dry_run=False)

    # When vtriage's action is rolled back
    undone = isolation(ec2).rollback(done)

    # Then the instance stays as vtriage found it: isolated
    assert interface_groups(ec2, instance_id) == isolated
    assert undone.status is ActionStatus.ROLLED_BACK


def test_rollback_reports_an_interface_that_no_longer_exists(ec2: Any) -> None:
    # Given an isolated instance whose second interface was then detached and deleted
    instance_id, _ = web_server(ec2)
    done = isolation(ec2).run(planned_isolation(instance_id), dry_run=False)
    instance = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    [second] = [eni for eni in instance["NetworkInterfaces"] if eni["Attachment"]["DeviceIndex"] == 1]
    ec2.detach_network_interface(AttachmentId=second["Attachment"]["AttachmentId"])
    ec2.delete_network_interface(NetworkInterfaceId=second["NetworkInterfaceId"])

    # When it is rolled back
    undone = isolation(ec2).rollback(done)

    # Then the remaining interface is restored, and the action fails naming the missing one
    assert undone.status is ActionStatus.FAILED
    assert second["NetworkInterfaceId"] in undone.detail
    assert "no longer exist" in undone.detail
    assert undone.before == done.before
    assert interface_groups(ec2, instance_id) == {
        eni: groups for eni, groups in (done.before or {}).items() if eni != second["NetworkInterfaceId"]
    }


# ---------------------------------------------------------------- cutting open sessions


def group_named(ec2: Any, name: str) -> dict[str, Any]:
    [group] = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": [name]}])[
        "SecurityGroups"
    ]
    return dict(group)


def record_moves(ec2: Any) -> list[tuple[str, list[str]]]:
    """Every ModifyNetworkInterfaceAttribute the client sends, as (interface, groups), in order."""
    moves: list[tuple[str, list[str]]] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        moves.append((params["NetworkInterfaceId"], list(params.get("Groups", []))))

    ec2.meta.events.register("before-parameter-build.ec2.ModifyNetworkInterfaceAttribute", record)
    return moves


def allows_everything(permissions: list[dict[str, Any]]) -> bool:
    everything = [p for p in permissions if p["IpProtocol"] == "-1"]
    return any(r["CidrIp"] == "0.0.0.0/0" for p in everything for r in p.get("IpRanges", [])) and any(
        r["CidrIpv6"] == "::/0" for p in everything for r in p.get("Ipv6Ranges", [])
    )


def test_isolation_first_makes_open_connections_untracked_then_cuts_them(ec2: Any) -> None:
    # Given an instance with two interfaces in a group that allows SSH (a session may be open on it)
    instance_id, web = web_server(ec2)
    interfaces = list(interface_groups(ec2, instance_id))
    moves = record_moves(ec2)

    # When it is isolated for real
    action = isolate(ec2, instance_id, dry_run=False)

    # Then each interface went first to the untracking group, which allows all traffic both ways (IPv4 and
    # IPv6, so that open connections become untracked), and only then to the quarantine group, which has
    # no rule (so that those untracked connections end at once)
    untracking, quarantine = group_named(ec2, UNTRACKING), group_named(ec2, QUARANTINE)
    assert moves == [(eni, [untracking["GroupId"]]) for eni in interfaces] + [
        (eni, [quarantine["GroupId"]]) for eni in interfaces
    ]
    assert allows_everything(untracking["IpPermissions"])
    assert allows_everything(untracking["IpPermissionsEgress"])
    assert (quarantine["IpPermissions"], quarantine["IpPermissionsEgress"]) == ([], [])
    # And both are vtriage's own groups, with distinct names, and no interface is left in the open one
    assert PURPOSE in untracking["Tags"]
    assert PURPOSE in quarantine["Tags"]
    assert interface_groups(ec2, instance_id) == {eni: [quarantine["GroupId"]] for eni in interfaces}
    # And the action says what was done, and why, and what stays tracked
    assert action.status is ActionStatus.DONE
    assert action.before == {eni: [web] for eni in interfaces}
    assert f"first to {UNTRACKING} ({untracking['GroupId']})" in action.detail
    assert "connections they carried became untracked" in action.detail
    assert f"then to {QUARANTINE} ({quarantine['GroupId']})" in action.detail
    assert "Security group connection tracking" in action.detail
    assert "ICMP" in action.detail


def test_the_dry_run_names_both_steps(ec2: Any) -> None:
    # Given an instance, When it is isolated in dry run
    instance_id, _ = web_server(ec2)
    action = isolate(ec2, instance_id, dry_run=True)

    # Then both groups and their order are named, and neither was created
    assert action.status is ActionStatus.DRY_RUN
    assert f"first to a new security group {UNTRACKING}" in action.detail
    assert f"then to a new security group {QUARANTINE}" in action.detail
    assert "connections open now are cut" in action.detail
    named = [{"Name": "group-name", "Values": [UNTRACKING, QUARANTINE]}]
    assert ec2.describe_security_groups(Filters=named)["SecurityGroups"] == []


def fail_the_move_to(ec2: Any, group_name: str, code: str, status: int) -> None:
    """EC2 refusing, once, to move an interface into the named group (an error injected at the SDK)."""
    refused: list[str] = []

    def refuse(params: dict[str, Any], **_: Any) -> None:
        groups = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": [group_name]}])
        ids = [group["GroupId"] for group in groups["SecurityGroups"]]
        if not refused and params.get("Groups") == ids:
            refused.append(params["NetworkInterfaceId"])
            answer: Any = {
                "Error": {"Code": code, "Message": "refused"},
                "ResponseMetadata": {"HTTPStatusCode": status},
            }
            raise ClientError(answer, "ModifyNetworkInterfaceAttribute")

    ec2.meta.events.register("before-parameter-build.ec2.ModifyNetworkInterfaceAttribute", refuse)


def test_an_isolation_stopped_between_its_steps_never_leaves_an_interface_in_the_group_that_allows_all(
    ec2: Any,
) -> None:
    # Given an instance, and EC2 refusing once (throttling) to move an interface into the quarantine group,
    # after both went to the untracking group
    instance_id, web = web_server(ec2)
    original = interface_groups(ec2, instance_id)
    fail_the_move_to(ec2, QUARANTINE, "RequestLimitExceeded", 503)

    # When it is isolated
    action = isolate(ec2, instance_id, dry_run=False)

    # Then every interface went straight on to the quarantine group, none is left open, and the action
    # fails saying what happened, keeping the groups before for a rollback
    quarantine = group_named(ec2, QUARANTINE)["GroupId"]
    assert interface_groups(ec2, instance_id) == {eni: [quarantine] for eni in original}
    assert action.status is ActionStatus.FAILED
    assert "isolation stopped between its two steps" in action.detail
    assert "RequestLimitExceeded" in action.detail
    assert action.before == {eni: [web] for eni in original}


def test_a_refused_first_move_changes_nothing_and_the_retry_starts_afresh(ec2: Any) -> None:
    # Given an instance, and EC2 throttling the very first move (into the untracking group)
    instance_id, web = web_server(ec2)
    original = interface_groups(ec2, instance_id)
    fail_the_move_to(ec2, UNTRACKING, "RequestLimitExceeded", 503)

    # When it is isolated, Then the state machine's Retry hears of it, and no interface moved
    with pytest.raises(TransientError, match="RequestLimitExceeded"):
        isolate(ec2, instance_id, dry_run=False)
    assert interface_groups(ec2, instance_id) == original

    # And the retry isolates it, recording the groups the interfaces really had
    retried = isolate(ec2, instance_id, dry_run=False)
    assert retried.status is ActionStatus.DONE
    assert retried.before == {eni: [web] for eni in original}


def test_rollback_undoes_both_steps_even_from_the_untracking_group(ec2: Any) -> None:
    # Given an isolated instance, one of whose interfaces was then moved into the untracking group (as an
    # isolation stopped between its two steps would leave it)
    instance_id, _ = web_server(ec2)
    original = interface_groups(ec2, instance_id)
    done = isolation(ec2).run(planned_isolation(instance_id), dry_run=False)
    first = next(iter(original))
    untracking = group_named(ec2, UNTRACKING)["GroupId"]
    ec2.modify_network_interface_attribute(NetworkInterfaceId=first, Groups=[untracking])

    # When it is rolled back
    undone = isolation(ec2).rollback(done)

    # Then every interface is back in its own groups, none in either of vtriage's groups
    assert interface_groups(ec2, instance_id) == original
    assert undone.status is ActionStatus.ROLLED_BACK
    assert "both steps of the isolation are undone" in undone.detail


def test_a_dry_run_finds_both_of_vtriages_groups_in_one_request(ec2: Any) -> None:
    # Given an isolated instance, so both of vtriage's groups exist in its VPC, and a second instance there
    first, _ = web_server(ec2)
    isolate(ec2, first, dry_run=False)
    [quarantine] = quarantine_groups(ec2)
    [untracking] = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": [UNTRACKING]}])[
        "SecurityGroups"
    ]
    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [quarantine["VpcId"]]}])["Subnets"]
    second = ec2.run_instances(
        ImageId=machine_image(ec2), MinCount=1, MaxCount=1, SubnetId=subnets[0]["SubnetId"]
    )["Instances"][0]["InstanceId"]
    asked: list[str] = []
    ec2.meta.events.register("before-call.ec2", lambda model, **_: asked.append(model.name))

    # When the second is isolated in dry run
    action = isolate(ec2, second, dry_run=True)

    # Then the detail names both groups by id, read from EC2 in one DescribeSecurityGroups after the instance
    # and the protected tags of its network
    assert action.status is ActionStatus.DRY_RUN
    assert f"{UNTRACKING} ({untracking['GroupId']})" in action.detail
    assert f"{QUARANTINE} ({quarantine['GroupId']})" in action.detail
    assert asked == ["DescribeInstances", "DescribeTags", "DescribeSecurityGroups"]


def test_a_group_of_the_quarantine_name_that_vtriage_did_not_create_is_not_used(ec2: Any) -> None:
    # Given a VPC where someone made a group named like the quarantine group, without vtriage's tag
    instance_id, _ = web_server(ec2)
    before = interface_groups(ec2, instance_id)
    vpc_id = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]["VpcId"]
    ec2.create_security_group(GroupName=QUARANTINE, Description="someone else's", VpcId=vpc_id)

    # When the instance is isolated
    action = isolate(ec2, instance_id, dry_run=False)

    # Then nothing moved, and the reason says whose group it is and what to do
    assert action.status is ActionStatus.FAILED
    assert "does not carry the tag vtriage:purpose=quarantine" in action.detail
    assert interface_groups(ec2, instance_id) == before


def stubbed_ec2(code: str, status: int) -> tuple[Any, Stubber]:
    """An EC2 client whose DescribeInstances answers with this error (botocore's Stubber, no network)."""
    client = boto3.client(
        "ec2", region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    stubber = Stubber(client)
    stubber.add_client_error("describe_instances", service_error_code=code, http_status_code=status)
    stubber.activate()
    return client, stubber


@pytest.mark.parametrize(("code", "status"), [("RequestLimitExceeded", 503), ("InternalError", 500)])
def test_throttling_and_server_errors_are_transient(code: str, status: int) -> None:
    # Given EC2 throttling or failing on its side
    client, stubber = stubbed_ec2(code, status)

    # When an instance is isolated, Then the state machine's Retry gets a TransientError
    with pytest.raises(TransientError, match=code):
        isolate(client, "i-0123456789abcdef0", dry_run=False)
    stubber.assert_no_pending_responses()


def test_a_permission_error_reaches_the_caller() -> None:
    # Given a role without ec2:DescribeInstances
    client, _ = stubbed_ec2("UnauthorizedOperation", 403)

    # When an instance is isolated, Then the error is raised for a person to see, not retried
    with pytest.raises(ClientError, match="UnauthorizedOperation"):
        isolate(client, "i-0123456789abcdef0", dry_run=False)


# ---------------------------------------------------------------- two cases isolating one instance at once


class SteppedEc2:
    """An EC2 client that runs `hook` once, just before the first call of `method` (the other case's work,
    slotted in at an exact point of this one's): every other call goes to the real client unchanged."""

    def __init__(self, client: Any, method: str, hook: Callable[[], None]) -> None:
        self._client, self._method, self._hook = client, method, hook
        self._hooked = False

    def __getattr__(self, name: str) -> Any:
        call = getattr(self._client, name)
        if name != self._method or self._hooked:
            return call

        def hooked(**kwargs: Any) -> Any:
            self._hooked = True
            self._hook()
            return call(**kwargs)

        return hooked


class GatedEc2:
    """An EC2 client that waits for the test's word before each move of a network interface, so that a
    case running in another thread advances one move at a time, exactly when the test says."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.arrived = threading.Semaphore(0)
        self.allowed = threading.Semaphore(0)
        self.free = False

    def __getattr__(self, name: str) -> Any:
        call = getattr(self._client, name)
        if name != "modify_network_interface_attribute":
            return call

        def gated(**kwargs: Any) -> Any:
            if not self.free:
                self.arrived.release()
                assert self.allowed.acquire(timeout=30)
            return call(**kwargs)

        return gated

    def wait_for_next_move(self) -> None:
        assert self.arrived.acquire(timeout=30), "the other case never reached its next move"

    def allow_one_move(self) -> None:
        self.allowed.release()
        self.wait_for_next_move()

    def allow_the_rest(self) -> None:
        self.free = True
        self.allowed.release()


def test_a_case_that_finds_another_between_its_two_steps_finishes_the_second_and_relies_on_it(
    ec2: Any,
) -> None:
    # Given two findings on one instance, case-A's isolation having moved every interface to the
    # untracking group, when case-B's isolation of the same instance runs from start to end
    instance_id, web = web_server(ec2)
    interfaces = list(interface_groups(ec2, instance_id))
    ec2.create_tags(Resources=[instance_id], Tags=[{"Key": "vtriage:case", "Value": "case-A"}])
    second: dict[str, Action] = {}
    started: list[str] = []

    def case_b_runs_before_case_a_moves_to_quarantine(params: dict[str, Any], **_: Any) -> None:
        [group] = ec2.describe_security_groups(GroupIds=params["Groups"])["SecurityGroups"]
        if group["GroupName"] == QUARANTINE and not started:
            started.append("case-B")
            second["B"] = isolate(ec2, instance_id, dry_run=False, case_id="case-B")

    ec2.meta.events.register(
        "before-parameter-build.ec2.ModifyNetworkInterfaceAttribute",
        case_b_runs_before_case_a_moves_to_quarantine,
    )

    # When case-A isolates it (case-B running between case-A's two steps)
    first = isolate(ec2, instance_id, dry_run=False, case_id="case-A")

    # Then neither case failed, and every interface is in the quarantine group only
    quarantine = group_named(ec2, QUARANTINE)["GroupId"]
    assert interface_groups(ec2, instance_id) == {eni: [quarantine] for eni in interfaces}
    assert first.status is ActionStatus.DONE
    assert second["B"].status is ActionStatus.DONE
    # And case-A recorded the groups the interfaces really had; case-B recorded none of vtriage's groups
    # as theirs, and says it relied on the isolation in progress, and finished its second step
    assert first.before == {eni: [web] for eni in interfaces}
    assert second["B"].before == {}
    assert "isolation in progress or done by another case" in second["B"].detail
    assert "case 'case-A'" in second["B"].detail
    assert "its second step, done here" in second["B"].detail


def test_two_cases_that_read_the_instance_before_either_moved_it_both_end_done_and_it_ends_isolated(
    ec2: Any,
) -> None:
    # Given two findings on one instance: case-B has read the instance (still in its web group) and is
    # about to move its first interface, when case-A isolates it and, just as case-A checks its result,
    # case-B moves one interface into the untracking group (the race a new-user trial found)
    instance_id, web = web_server(ec2)
    interfaces = list(interface_groups(ec2, instance_id))
    gated = GatedEc2(ec2)
    outcome: dict[str, Action] = {}
    case_b = threading.Thread(
        target=lambda: outcome.update(B=isolate(gated, instance_id, dry_run=False, case_id="case-B"))
    )
    case_b.start()
    gated.wait_for_next_move()
    stepped = SteppedEc2(ec2, "describe_network_interfaces", gated.allow_one_move)

    # When case-A runs to its end, and then case-B does
    first = isolate(stepped, instance_id, dry_run=False, case_id="case-A")
    gated.allow_the_rest()
    case_b.join(timeout=30)

    # Then neither case failed, both recorded the groups the interfaces really had, and every interface
    # ends in the quarantine group only
    quarantine = group_named(ec2, QUARANTINE)["GroupId"]
    assert interface_groups(ec2, instance_id) == {eni: [quarantine] for eni in interfaces}
    assert first.status is ActionStatus.DONE, first.detail
    assert outcome["B"].status is ActionStatus.DONE, outcome["B"].detail
    assert first.before == outcome["B"].before == {eni: [web] for eni in interfaces}
    # And case-A says it moved on the interface case-B had put back in the untracking group
    assert "its second step, done here" in first.detail


def test_rolling_back_both_cases_puts_the_interfaces_back_in_their_own_groups(ec2: Any) -> None:
    # Given an instance isolated by case-A, then found isolated by case-B
    instance_id, _ = web_server(ec2)
    original = interface_groups(ec2, instance_id)
    done_a = isolation(ec2).run(planned_isolation(instance_id), dry_run=False)
    done_b = isolation(ec2).run(
        Action(type=ActionType.ISOLATE_INSTANCE, target=instance_id, parameters={"case_id": "case-2"}),
        dry_run=False,
    )

    # When case-A's isolation is undone and then case-B's (the order remediate uses when case-B is the
    # older case), Then the interfaces are back in their own groups, and case-B's undo changes nothing
    undone_a = isolation(ec2).rollback(done_a)
    undone_b = isolation(ec2).rollback(done_b)
    assert interface_groups(ec2, instance_id) == original
    assert undone_a.status is undone_b.status is ActionStatus.ROLLED_BACK
    assert "found the instance isolated by another isolation" in undone_b.detail
