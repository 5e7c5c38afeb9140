"""NaclIpBlocker against moto's EC2: the deny entries in the network ACLs of an instance's subnets after
blocking, rotation and rollback; only network ACLs the team opted in are ever written."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from tests.functional.conftest import machine_image, use_dummy_aws_credentials
from vtriage.adapters.nacl import CURSOR_TAG, OPT_IN_TAG, OPT_IN_VALUE, NaclIpBlocker
from vtriage.errors import TransientError
from vtriage.models import Action, ActionStatus, ActionType

pytestmark = pytest.mark.functional

REGION = "us-east-1"
IP = "198.51.100.7"
PROTECTED_TAG = "vtriage:protected"


@pytest.fixture
def ec2(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """An EC2 client on moto, with dummy credentials so that nothing can reach a real account."""
    use_dummy_aws_credentials(monkeypatch, REGION)
    with mock_aws():
        yield boto3.client("ec2", region_name=REGION)


@dataclass(frozen=True)
class Placed:
    """An instance in a subnet of a VPC of its own, and the network ACL that guards that subnet."""

    instance_id: str
    vpc_id: str
    subnet_id: str
    acl_id: str


def opt_in(ec2: Any, acl_id: str) -> None:
    """What the team does to let vtriage write deny entries in a network ACL."""
    ec2.create_tags(Resources=[acl_id], Tags=[{"Key": OPT_IN_TAG, "Value": OPT_IN_VALUE}])


def subnet_acl(ec2: Any, subnet_id: str) -> str:
    """The network ACL associated with the subnet (the VPC's default one unless replaced)."""
    acls = ec2.describe_network_acls(Filters=[{"Name": "association.subnet-id", "Values": [subnet_id]}])
    [acl] = acls["NetworkAcls"]
    return str(acl["NetworkAclId"])


def place_instance(ec2: Any, *, opted_in: bool = True, cidr: str = "10.0.0.0/16") -> Placed:
    """An instance in a new VPC and subnet; the subnet's network ACL opted in unless asked otherwise."""
    vpc_id = str(ec2.create_vpc(CidrBlock=cidr)["Vpc"]["VpcId"])
    subnet_cidr = cidr.replace("0.0/16", "1.0/24")
    subnet_id = str(ec2.create_subnet(VpcId=vpc_id, CidrBlock=subnet_cidr)["Subnet"]["SubnetId"])
    image_id = machine_image(ec2)
    instance_id = str(
        ec2.run_instances(ImageId=image_id, MinCount=1, MaxCount=1, SubnetId=subnet_id)["Instances"][0][
            "InstanceId"
        ]
    )
    acl_id = subnet_acl(ec2, subnet_id)
    if opted_in:
        opt_in(ec2, acl_id)
    return Placed(instance_id, vpc_id, subnet_id, acl_id)


def denies(ec2: Any, vpc_id: str) -> dict[tuple[str, str, int], str]:
    """(network ACL, direction, rule number) → address, for every deny entry below the default rule."""
    acls = ec2.describe_network_acls(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["NetworkAcls"]
    return {
        (acl["NetworkAclId"], "egress" if entry["Egress"] else "ingress", entry["RuleNumber"]): entry.get(
            "CidrBlock"
        )
        or entry["Ipv6CidrBlock"]
        for acl in acls
        for entry in acl["Entries"]
        if entry["RuleAction"] == "deny" and entry["RuleNumber"] < 32767
    }


def block(instance_id: str, ip: str = IP, **parameters: str) -> Action:
    return Action(
        type=ActionType.BLOCK_IP_NACL,
        target=ip,
        parameters={"instance_id": instance_id, "case_id": "case-1", **parameters},
    )


def both_ways(acl_id: str, number: int, address: str) -> dict[tuple[str, str, int], str]:
    return {(acl_id, "ingress", number): address, (acl_id, "egress", number): address}


def test_the_ip_is_denied_both_ways_in_the_network_acl_of_the_instances_subnet_and_rollback_removes_it(
    ec2: Any,
) -> None:
    # Given an instance whose subnet's network ACL the team opted in
    placed = place_instance(ec2)
    actuator = NaclIpBlocker(ec2, 1, 10)

    # When the IP is blocked for real
    done = actuator.run(block(placed.instance_id), dry_run=False)

    # Then that network ACL denies it in and out at the first vtriage rule number, and the detail says whose
    # subnets they guard
    assert denies(ec2, placed.vpc_id) == both_ways(placed.acl_id, 1, "198.51.100.7/32")
    assert done.status is ActionStatus.DONE
    assert f"the network ACLs of the subnets of {placed.instance_id}" in done.detail
    assert done.before is not None
    assert len(done.before["entries"]) == 2

    # And when it is rolled back, no deny entry is left
    undone = actuator.rollback(done)
    assert denies(ec2, placed.vpc_id) == {}
    assert undone.status is ActionStatus.ROLLED_BACK

    # And rolling back again changes nothing and says so
    again = actuator.rollback(done)
    assert again.detail.startswith("already as before")


def test_a_forged_vpc_is_never_used_only_the_live_instances_subnets(ec2: Any) -> None:
    # Given the instance's own VPC, and another VPC whose network ACL is opted in too
    placed = place_instance(ec2)
    elsewhere = place_instance(ec2, cidr="10.1.0.0/16")

    # When a block names the instance but, as a forged finding would, the other VPC beside it
    done = NaclIpBlocker(ec2, 1, 10).run(block(placed.instance_id, vpc_id=elsewhere.vpc_id), dry_run=False)

    # Then only the instance's own subnet's network ACL holds the deny; the named VPC is untouched
    assert done.status is ActionStatus.DONE
    assert denies(ec2, placed.vpc_id) == both_ways(placed.acl_id, 1, "198.51.100.7/32")
    assert denies(ec2, elsewhere.vpc_id) == {}
    assert elsewhere.vpc_id not in done.detail


def test_a_network_acl_not_opted_in_is_never_written_and_the_reason_says_how_to_opt_in(ec2: Any) -> None:
    # Given an instance whose subnet's network ACL carries no opt-in tag
    placed = place_instance(ec2, opted_in=False)

    # When the IP is blocked for real
    action = NaclIpBlocker(ec2, 1, 10).run(block(placed.instance_id), dry_run=False)

    # Then nothing is written, not even the rotation cursor, and the reason says how to opt in
    assert denies(ec2, placed.vpc_id) == {}
    assert ec2.describe_network_acls(NetworkAclIds=[placed.acl_id])["NetworkAcls"][0].get("Tags", []) == []
    assert action.status is ActionStatus.SKIPPED
    assert action.detail.startswith("not blocked, nothing changed")
    assert f"{placed.acl_id} is not opted in (tag it vtriage:nacl-block=allowed" in action.detail


def test_only_the_opted_in_network_acls_of_the_instances_subnets_are_written(ec2: Any) -> None:
    # Given an instance with a second interface in another subnet, guarded by a network ACL of its own
    # that is not opted in, while the first subnet's is
    placed = place_instance(ec2)
    other_subnet = ec2.create_subnet(VpcId=placed.vpc_id, CidrBlock="10.0.2.0/24")["Subnet"]["SubnetId"]
    other_acl = ec2.create_network_acl(VpcId=placed.vpc_id)["NetworkAcl"]["NetworkAclId"]
    association = next(
        a["NetworkAclAssociationId"]
        for acl in ec2.describe_network_acls(NetworkAclIds=[placed.acl_id])["NetworkAcls"]
        for a in acl["Associations"]
        if a["SubnetId"] == other_subnet
    )
    ec2.replace_network_acl_association(AssociationId=association, NetworkAclId=other_acl)
    interface = ec2.create_network_interface(SubnetId=other_subnet)["NetworkInterface"]["NetworkInterfaceId"]
    ec2.attach_network_interface(NetworkInterfaceId=interface, InstanceId=placed.instance_id, DeviceIndex=1)

    # When the IP is blocked
    done = NaclIpBlocker(ec2, 1, 10).run(block(placed.instance_id), dry_run=False)

    # Then the opted-in one denies it, the other is left alone and named with the reason
    assert denies(ec2, placed.vpc_id) == both_ways(placed.acl_id, 1, "198.51.100.7/32")
    assert done.status is ActionStatus.DONE
    assert f"left alone: {other_acl} is not opted in" in done.detail


def test_a_protected_network_acl_is_left_alone_even_when_opted_in(ec2: Any) -> None:
    # Given an opted-in network ACL that also carries the protected tag
    placed = place_instance(ec2)
    ec2.create_tags(Resources=[placed.acl_id], Tags=[{"Key": PROTECTED_TAG, "Value": "core"}])

    # When the IP is blocked
    action = NaclIpBlocker(ec2, 1, 10, PROTECTED_TAG).run(block(placed.instance_id), dry_run=False)

    # Then nothing is written, and the reason names the tag
    assert denies(ec2, placed.vpc_id) == {}
    assert action.status is ActionStatus.SKIPPED
    assert f"{placed.acl_id} carries the protected tag {PROTECTED_TAG}" in action.detail


def test_an_instance_that_does_not_exist_changes_nothing_and_says_so(ec2: Any) -> None:
    # Given a VPC with an opted-in network ACL, and an instance id that does not exist in the account
    placed = place_instance(ec2)

    # When a block names that instance
    action = NaclIpBlocker(ec2, 1, 10).run(block("i-0123456789abcdef0"), dry_run=False)

    # Then nothing is written and the action fails with the reason
    assert denies(ec2, placed.vpc_id) == {}
    assert action.status is ActionStatus.FAILED
    assert "nothing changed" in action.detail
    assert "not found" in action.detail


def test_dry_run_writes_no_entry_and_says_which_it_would(ec2: Any) -> None:
    # Given an instance in an opted-in subnet
    placed = place_instance(ec2)

    # When the IP is blocked in dry run
    action = NaclIpBlocker(ec2, 1, 10).run(block(placed.instance_id), dry_run=True)

    # Then nothing was written, not even the rotation cursor, and the detail names the rule numbers
    assert denies(ec2, placed.vpc_id) == {}
    tags = ec2.describe_network_acls(NetworkAclIds=[placed.acl_id])["NetworkAcls"][0]["Tags"]
    assert all(tag["Key"] != CURSOR_TAG for tag in tags)
    assert action.status is ActionStatus.DRY_RUN
    acl = placed.acl_id
    assert f"would deny 198.51.100.7/32 at {acl} ingress rule 1; {acl} egress rule 1" in action.detail


def test_blocking_twice_writes_the_entries_once(ec2: Any) -> None:
    # Given an IP blocked once
    placed = place_instance(ec2)
    actuator = NaclIpBlocker(ec2, 1, 10)
    actuator.run(block(placed.instance_id), dry_run=False)
    first = denies(ec2, placed.vpc_id)

    # When it is blocked again
    again = actuator.run(block(placed.instance_id), dry_run=False)

    # Then there are still just the two entries, and the action says it was already blocked
    assert denies(ec2, placed.vpc_id) == first
    assert len(first) == 2
    assert again.status is ActionStatus.DONE
    assert again.detail.startswith("already blocked")


def test_new_blocks_replace_the_oldest_when_the_range_is_full(ec2: Any) -> None:
    # Given a range of two rule numbers, both used by earlier blocks
    placed = place_instance(ec2)
    actuator = NaclIpBlocker(ec2, 1, 2)
    actuator.run(block(placed.instance_id, "203.0.113.1"), dry_run=False)
    actuator.run(block(placed.instance_id, "203.0.113.2"), dry_run=False)

    # When two more IPs are blocked
    third = actuator.run(block(placed.instance_id, "203.0.113.3"), dry_run=False)
    actuator.run(block(placed.instance_id, "203.0.113.4"), dry_run=False)

    # Then each replaced the oldest in turn: rule 1, then rule 2
    assert denies(ec2, placed.vpc_id) == {
        **both_ways(placed.acl_id, 1, "203.0.113.3/32"),
        **both_ways(placed.acl_id, 2, "203.0.113.4/32"),
    }
    assert "replacing the deny of 203.0.113.1/32" in third.detail
    # And the cursor points back at rule 1, the oldest
    tags = ec2.describe_network_acls(NetworkAclIds=[placed.acl_id])["NetworkAcls"][0]["Tags"]
    assert {"Key": CURSOR_TAG, "Value": "1"} in tags


def test_rollback_puts_back_the_entry_a_block_replaced(ec2: Any) -> None:
    # Given a range of one rule number: a first block, then a second that replaced it
    placed = place_instance(ec2)
    actuator = NaclIpBlocker(ec2, 1, 1)
    actuator.run(block(placed.instance_id, "203.0.113.1"), dry_run=False)
    second = actuator.run(block(placed.instance_id, "203.0.113.2"), dry_run=False)

    # When the second is rolled back
    actuator.rollback(second)

    # Then the first block is back in place
    assert denies(ec2, placed.vpc_id) == both_ways(placed.acl_id, 1, "203.0.113.1/32")


def test_entries_vtriage_did_not_write_are_never_replaced(ec2: Any) -> None:
    # Given a range of two whose first number holds the team's own allow rule
    placed = place_instance(ec2)
    for egress in (False, True):
        ec2.create_network_acl_entry(
            NetworkAclId=placed.acl_id,
            RuleNumber=1,
            Protocol="6",
            RuleAction="allow",
            Egress=egress,
            CidrBlock="10.0.0.0/8",
            PortRange={"From": 443, "To": 443},
        )
    actuator = NaclIpBlocker(ec2, 1, 2)

    # When two IPs are blocked
    actuator.run(block(placed.instance_id, "203.0.113.1"), dry_run=False)
    full = actuator.run(block(placed.instance_id, "203.0.113.2"), dry_run=False)

    # Then the first took rule 2, and the second replaced it, never the team's rule 1
    assert denies(ec2, placed.vpc_id) == both_ways(placed.acl_id, 2, "203.0.113.2/32")
    allow = [
        e
        for e in ec2.describe_network_acls(NetworkAclIds=[placed.acl_id])["NetworkAcls"][0]["Entries"]
        if e["RuleNumber"] == 1
    ]
    assert {e["RuleAction"] for e in allow} == {"allow"}
    assert full.status is ActionStatus.DONE


def test_an_ipv6_address_is_denied_as_a_128(ec2: Any) -> None:
    # Given an instance in an opted-in subnet
    placed = place_instance(ec2)

    # When an IPv6 address is blocked
    NaclIpBlocker(ec2, 1, 10).run(block(placed.instance_id, "2001:DB8::7"), dry_run=False)

    # Then the deny entries hold its canonical /128
    assert set(denies(ec2, placed.vpc_id).values()) == {"2001:db8::7/128"}


def test_a_missing_instance_parameter_or_a_non_ip_fails_with_the_reason(ec2: Any) -> None:
    # Given an actuator, When it is asked to block without an instance, and to block a non-IP
    placed = place_instance(ec2)
    actuator = NaclIpBlocker(ec2, 1, 10)
    no_parameter = actuator.run(Action(type=ActionType.BLOCK_IP_NACL, target=IP), dry_run=False)
    not_ip = actuator.run(block(placed.instance_id, "evil.example"), dry_run=False)

    # Then each fails with a reason a person can act on, and nothing is written
    assert no_parameter.status is ActionStatus.FAILED
    assert "parameter instance_id" in no_parameter.detail
    assert not_ip.status is ActionStatus.FAILED
    assert "not an IP address" in not_ip.detail
    assert denies(ec2, placed.vpc_id) == {}


def test_a_range_outside_the_rule_numbers_is_refused() -> None:
    # Given a range NACLs cannot hold, When the actuator is built, Then it refuses
    with pytest.raises(ValueError, match="not within 1-32766"):
        NaclIpBlocker(object(), 0, 10)


def test_throttling_is_transient() -> None:
    # Given EC2 throttling (botocore's Stubber, no network)
    client = boto3.client("ec2", region_name=REGION, aws_access_key_id="t", aws_secret_access_key="t")
    stubber = Stubber(client)
    # (the address is not the account's own: no Elastic IP, no network interface holds it)
    stubber.add_response("describe_addresses", {"Addresses": []})
    stubber.add_response("describe_network_interfaces", {"NetworkInterfaces": []})
    stubber.add_client_error(
        "describe_instances", service_error_code="RequestLimitExceeded", http_status_code=503
    )
    stubber.activate()

    # When an IP is blocked, Then the state machine's Retry gets a TransientError
    with pytest.raises(TransientError, match="RequestLimitExceeded"):
        NaclIpBlocker(client, 1, 10).run(block("i-0123456789abcdef0"), dry_run=False)
