"""NaclIpBlocker against moto's EC2: the deny entries in a VPC's network ACLs after blocking, rotation
and rollback."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from tests.functional.conftest import use_dummy_aws_credentials
from vtriage.adapters.nacl import CURSOR_TAG, NaclIpBlocker
from vtriage.errors import TransientError
from vtriage.models import Action, ActionStatus, ActionType

pytestmark = pytest.mark.functional

REGION = "us-east-1"
IP = "198.51.100.7"


@pytest.fixture
def ec2(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """An EC2 client on moto, with dummy credentials so that nothing can reach a real account."""
    use_dummy_aws_credentials(monkeypatch, REGION)
    with mock_aws():
        yield boto3.client("ec2", region_name=REGION)


def create_vpc(ec2: Any, custom_acl: bool = False) -> str:
    """A VPC with its default network ACL and, when asked, a custom one."""
    vpc_id = str(ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"])
    if custom_acl:
        ec2.create_network_acl(VpcId=vpc_id)
    return vpc_id


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


def acl_ids(ec2: Any, vpc_id: str) -> list[str]:
    acls = ec2.describe_network_acls(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["NetworkAcls"]
    return sorted(acl["NetworkAclId"] for acl in acls)


def block(vpc_id: str, ip: str = IP) -> Action:
    return Action(
        type=ActionType.BLOCK_IP_NACL, target=ip, parameters={"vpc_id": vpc_id, "case_id": "case-1"}
    )


def test_the_ip_is_denied_both_ways_in_every_acl_of_the_vpc_and_rollback_removes_it(ec2: Any) -> None:
    # Given a VPC with its default network ACL and a custom one
    vpc_id = create_vpc(ec2, custom_acl=True)
    actuator = NaclIpBlocker(ec2, 1, 10)

    # When the IP is blocked for real
    done = actuator.run(block(vpc_id), dry_run=False)

    # Then each network ACL denies it in and out at the first vtriage rule number
    assert denies(ec2, vpc_id) == {
        (acl, direction, 1): "198.51.100.7/32"
        for acl in acl_ids(ec2, vpc_id)
        for direction in ("ingress", "egress")
    }
    assert done.status is ActionStatus.DONE
    assert done.before is not None
    assert len(done.before["entries"]) == 4

    # And when it is rolled back, no deny entry is left
    undone = actuator.rollback(done)
    assert denies(ec2, vpc_id) == {}
    assert undone.status is ActionStatus.ROLLED_BACK

    # And rolling back again changes nothing and says so
    again = actuator.rollback(done)
    assert again.detail.startswith("already as before")


def test_dry_run_writes_no_entry_and_says_which_it_would(ec2: Any) -> None:
    # Given a VPC
    vpc_id = create_vpc(ec2)
    [acl] = acl_ids(ec2, vpc_id)

    # When the IP is blocked in dry run
    action = NaclIpBlocker(ec2, 1, 10).run(block(vpc_id), dry_run=True)

    # Then nothing was written, not even the rotation cursor, and the detail names the rule numbers
    assert denies(ec2, vpc_id) == {}
    assert ec2.describe_network_acls(NetworkAclIds=[acl])["NetworkAcls"][0].get("Tags", []) == []
    assert action.status is ActionStatus.DRY_RUN
    assert f"would deny 198.51.100.7/32 at {acl} ingress rule 1; {acl} egress rule 1" in action.detail


def test_blocking_twice_writes_the_entries_once(ec2: Any) -> None:
    # Given an IP blocked once
    vpc_id = create_vpc(ec2)
    actuator = NaclIpBlocker(ec2, 1, 10)
    actuator.run(block(vpc_id), dry_run=False)
    first = denies(ec2, vpc_id)

    # When it is blocked again
    again = actuator.run(block(vpc_id), dry_run=False)

    # Then there are still just the two entries, and the action says it was already blocked
    assert denies(ec2, vpc_id) == first
    assert len(first) == 2
    assert again.status is ActionStatus.DONE
    assert again.detail.startswith("already blocked")


def test_new_blocks_replace_the_oldest_when_the_range_is_full(ec2: Any) -> None:
    # Given a range of two rule numbers, both used by earlier blocks
    vpc_id = create_vpc(ec2)
    [acl] = acl_ids(ec2, vpc_id)
    actuator = NaclIpBlocker(ec2, 1, 2)
    actuator.run(block(vpc_id, "203.0.113.1"), dry_run=False)
    actuator.run(block(vpc_id, "203.0.113.2"), dry_run=False)

    # When two more IPs are blocked
    third = actuator.run(block(vpc_id, "203.0.113.3"), dry_run=False)
    actuator.run(block(vpc_id, "203.0.113.4"), dry_run=False)

    # Then each replaced the oldest in turn: rule 1, then rule 2
    assert denies(ec2, vpc_id) == {
        (acl, "ingress", 1): "203.0.113.3/32",
        (acl, "egress", 1): "203.0.113.3/32",
        (acl, "ingress", 2): "203.0.113.4/32",
        (acl, "egress", 2): "203.0.113.4/32",
    }
    assert "replacing the deny of 203.0.113.1/32" in third.detail
    # And the cursor points back at rule 1, the oldest
    tags = ec2.describe_network_acls(NetworkAclIds=[acl])["NetworkAcls"][0]["Tags"]
    assert {"Key": CURSOR_TAG, "Value": "1"} in tags


def test_rollback_puts_back_the_entry_a_block_replaced(ec2: Any) -> None:
    # Given a range of one rule number: a first block, then a second that replaced it
    vpc_id = create_vpc(ec2)
    [acl] = acl_ids(ec2, vpc_id)
    actuator = NaclIpBlocker(ec2, 1, 1)
    actuator.run(block(vpc_id, "203.0.113.1"), dry_run=False)
    second = actuator.run(block(vpc_id, "203.0.113.2"), dry_run=False)

    # When the second is rolled back
    actuator.rollback(second)

    # Then the first block is back in place
    assert denies(ec2, vpc_id) == {
        (acl, "ingress", 1): "203.0.113.1/32",
        (acl, "egress", 1): "203.0.113.1/32",
    }


def test_entries_vtriage_did_not_write_are_never_replaced(ec2: Any) -> None:
    # Given a range of two whose first number holds the team's own allow rule
    vpc_id = create_vpc(ec2)
    [acl] = acl_ids(ec2, vpc_id)
    for egress in (False, True):
        ec2.create_network_acl_entry(
            NetworkAclId=acl,
            RuleNumber=1,
            Protocol="6",
            RuleAction="allow",
            Egress=egress,
            CidrBlock="10.0.0.0/8",
            PortRange={"From": 443, "To": 443},
        )
    actuator = NaclIpBlocker(ec2, 1, 2)

    # When two IPs are blocked
    actuator.run(block(vpc_id, "203.0.113.1"), dry_run=False)
    full = actuator.run(block(vpc_id, "203.0.113.2"), dry_run=False)

    # Then the first took rule 2, and the second replaced it, never the team's rule 1
    assert denies(ec2, vpc_id) == {
        (acl, "ingress", 2): "203.0.113.2/32",
        (acl, "egress", 2): "203.0.113.2/32",
    }
    allow = [
        e
        for e in ec2.describe_network_acls(NetworkAclIds=[acl])["NetworkAcls"][0]["Entries"]
        if e["RuleNumber"] == 1
    ]
    assert {e["RuleAction"] for e in allow} == {"allow"}
    assert full.status is ActionStatus.DONE


def test_an_ipv6_address_is_denied_as_a_128(ec2: Any) -> None:
    # Given a VPC
    vpc_id = create_vpc(ec2)

    # When an IPv6 address is blocked
    NaclIpBlocker(ec2, 1, 10).run(block(vpc_id, "2001:DB8::7"), dry_run=False)

    # Then the deny entries hold its canonical /128
    assert set(denies(ec2, vpc_id).values()) == {"2001:db8::7/128"}


def test_a_missing_vpc_or_parameter_fails_with_the_reason(ec2: Any) -> None:
    # Given an actuator, When it is asked to block without a VPC, in an unknown VPC, and a non-IP
    actuator = NaclIpBlocker(ec2, 1, 10)
    no_parameter = actuator.run(Action(type=ActionType.BLOCK_IP_NACL, target=IP), dry_run=False)
    unknown = actuator.run(block("vpc-0123456789abcdef0"), dry_run=False)
    not_ip = actuator.run(block(create_vpc(ec2), "evil.example"), dry_run=False)

    # Then each fails with a reason a person can act on
    assert no_parameter.status is ActionStatus.FAILED
    assert "parameter vpc_id missing" in no_parameter.detail
    assert unknown.status is ActionStatus.FAILED
    assert "no network ACL found in vpc-0123456789abcdef0" in unknown.detail
    assert not_ip.status is ActionStatus.FAILED
    assert "not an IP address" in not_ip.detail


def test_a_range_outside_the_rule_numbers_is_refused() -> None:
    # Given a range NACLs cannot hold, When the actuator is built, Then it refuses
    with pytest.raises(ValueError, match="not within 1-32766"):
        NaclIpBlocker(object(), 0, 10)


def test_throttling_is_transient() -> None:
    # Given EC2 throttling (botocore's Stubber, no network)
    client = boto3.client("ec2", region_name=REGION, aws_access_key_id="t", aws_secret_access_key="t")
    stubber = Stubber(client)
    stubber.add_client_error(
        "describe_network_acls", service_error_code="RequestLimitExceeded", http_status_code=503
    )
    stubber.activate()

    # When an IP is blocked, Then the state machine's Retry gets a TransientError
    with pytest.raises(TransientError, match="RequestLimitExceeded"):
        NaclIpBlocker(client, 1, 10).run(block("vpc-0123456789abcdef0"), dry_run=False)
