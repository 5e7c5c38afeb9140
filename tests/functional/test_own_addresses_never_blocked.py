"""The IP-blocking actuators (WAF IP set, network ACL) against moto: an address the account itself holds in
the Region (an Elastic IP of its own instance, an instance's own public IP) is never blocked, the action
skipped naming what holds it, in a dry run too; a foreign address is still blocked.

A finding's evidence may name the instance's own public address without saying it is the instance's (an
OCSF endpoint with no instance_uid, red-team re-check 2, E1): only the live account can tell."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from tests.functional.conftest import launch_instance, machine_image, use_dummy_aws_credentials
from vtriage.adapters.nacl import OPT_IN_TAG, OPT_IN_VALUE, NaclIpBlocker
from vtriage.adapters.waf import WafIpSetBlocker
from vtriage.errors import TransientError
from vtriage.models import Action, ActionStatus, ActionType
from vtriage.ports import ResponseActuator

pytestmark = pytest.mark.functional

REGION = "us-east-1"
FOREIGN_IP = "198.51.100.7"
IP_SET = "vtriage-blocked"


@dataclass(frozen=True)
class Account:
    """An instance holding an Elastic IP, a second instance with a public IP EC2 gave it, an empty WAF IP
    set and the instances' subnet's network ACL, opted in."""

    ec2: Any
    waf: Any
    ip_set_id: str
    instance_id: str
    elastic_ip: str
    allocation_id: str
    interface_id: str
    public_instance_id: str
    public_ip: str
    public_interface_id: str
    vpc_id: str


@pytest.fixture
def account(monkeypatch: pytest.MonkeyPatch) -> Iterator[Account]:
    """The account on moto, with dummy credentials so that nothing can reach a real account."""
    use_dummy_aws_credentials(monkeypatch, REGION)
    with mock_aws():
        ec2, waf = boto3.client("ec2", region_name=REGION), boto3.client("wafv2", region_name=REGION)
        launched = launch_instance(ec2)
        allocation = ec2.allocate_address(Domain="vpc")
        ec2.associate_address(AllocationId=allocation["AllocationId"], InstanceId=launched.instance_id)
        [interface] = ec2.describe_network_interfaces(
            Filters=[{"Name": "attachment.instance-id", "Values": [launched.instance_id]}]
        )["NetworkInterfaces"]
        public = ec2.run_instances(
            ImageId=machine_image(ec2),
            MinCount=1,
            MaxCount=1,
            NetworkInterfaces=[
                {"DeviceIndex": 0, "SubnetId": launched.subnet_id, "AssociatePublicIpAddress": True}
            ],
        )["Instances"][0]
        [acl] = ec2.describe_network_acls(
            Filters=[{"Name": "association.subnet-id", "Values": [launched.subnet_id]}]
        )["NetworkAcls"]
        ec2.create_tags(Resources=[acl["NetworkAclId"]], Tags=[{"Key": OPT_IN_TAG, "Value": OPT_IN_VALUE}])
        ip_set_id = waf.create_ip_set(Name=IP_SET, Scope="REGIONAL", IPAddressVersion="IPV4", Addresses=[])[
            "Summary"
        ]["Id"]
        yield Account(
            ec2=ec2,
            waf=waf,
            ip_set_id=str(ip_set_id),
            instance_id=launched.instance_id,
            elastic_ip=str(allocation["PublicIp"]),
            allocation_id=str(allocation["AllocationId"]),
            interface_id=str(interface["NetworkInterfaceId"]),
            public_instance_id=str(public["InstanceId"]),
            public_ip=str(public["PublicIpAddress"]),
            public_interface_id=str(public["NetworkInterfaces"][0]["NetworkInterfaceId"]),
            vpc_id=launched.vpc_id,
        )


def waf_blocker(account: Account) -> ResponseActuator:
    return WafIpSetBlocker(account.waf, IP_SET, account.ip_set_id, "REGIONAL", ec2_client=account.ec2)


def nacl_blocker(account: Account) -> ResponseActuator:
    return NaclIpBlocker(account.ec2, 1, 10)


def waf_block(account: Account, ip: str) -> Action:
    return Action(type=ActionType.BLOCK_IP_WAF, target=ip, parameters={"case_id": "case-1"})


def nacl_block(account: Account, ip: str) -> Action:
    return Action(
        type=ActionType.BLOCK_IP_NACL,
        target=ip,
        parameters={"case_id": "case-1", "instance_id": account.instance_id},
    )


def blocked_addresses(account: Account) -> list[str]:
    """Every address the WAF IP set and the VPC's network ACLs block now."""
    ip_set = account.waf.get_ip_set(Name=IP_SET, Scope="REGIONAL", Id=account.ip_set_id)["IPSet"]
    acls = account.ec2.describe_network_acls(Filters=[{"Name": "vpc-id", "Values": [account.vpc_id]}])
    denied = [
        str(entry.get("CidrBlock"))
        for acl in acls["NetworkAcls"]
        for entry in acl["Entries"]
        if entry["RuleAction"] == "deny" and entry["RuleNumber"] < 32767
    ]
    return [*ip_set["Addresses"], *denied]


BLOCKERS = {
    "waf": (waf_blocker, waf_block),
    "nacl": (nacl_blocker, nacl_block),
}


@pytest.mark.parametrize("dry_run", [False, True], ids=["for-real", "dry-run"])
@pytest.mark.parametrize("blocker", list(BLOCKERS))
def test_the_accounts_own_elastic_ip_is_never_blocked(account: Account, blocker: str, dry_run: bool) -> None:
    # Given an Elastic IP the account holds on its own instance, named by a finding as a malicious peer
    make_actuator, make_action = BLOCKERS[blocker]

    # When it is blocked
    action = make_actuator(account).run(make_action(account, account.elastic_ip), dry_run=dry_run)

    # Then nothing blocks it, and the action is skipped naming the Elastic IP, its interface and instance
    assert blocked_addresses(account) == []
    assert action.status is ActionStatus.SKIPPED
    assert action.detail == (
        f"not blocked, nothing changed: {account.elastic_ip} is this account's: Elastic IP "
        f"{account.allocation_id} on network interface {account.interface_id} of instance "
        f"{account.instance_id}; vtriage never blocks an address its own account holds"
    )
    assert action.before is None


@pytest.mark.parametrize("dry_run", [False, True], ids=["for-real", "dry-run"])
@pytest.mark.parametrize("blocker", list(BLOCKERS))
def test_an_own_instances_public_ip_is_never_blocked(account: Account, blocker: str, dry_run: bool) -> None:
    # Given the public IP EC2 gave one of the account's instances (no Elastic IP)
    make_actuator, make_action = BLOCKERS[blocker]

    # When it is blocked
    action = make_actuator(account).run(make_action(account, account.public_ip), dry_run=dry_run)

    # Then nothing blocks it, and the action is skipped naming the interface and instance holding it
    assert blocked_addresses(account) == []
    assert action.status is ActionStatus.SKIPPED
    assert (
        f"{account.public_ip} is this account's: public IP of network interface "
        f"{account.public_interface_id} of instance {account.public_instance_id};"
    ) in action.detail


@pytest.mark.parametrize("blocker", list(BLOCKERS))
def test_a_foreign_ip_is_still_blocked(account: Account, blocker: str) -> None:
    # Given an address the account does not hold
    make_actuator, make_action = BLOCKERS[blocker]

    # When it is blocked
    action = make_actuator(account).run(make_action(account, FOREIGN_IP), dry_run=False)

    # Then it is blocked
    assert action.status is ActionStatus.DONE
    assert f"{FOREIGN_IP}/32" in blocked_addresses(account)


@pytest.mark.parametrize("blocker", list(BLOCKERS))
def test_ec2_throttling_the_check_is_transient_and_blocks_nothing(account: Account, blocker: str) -> None:
    # Given EC2 throttling the read of the account's Elastic IPs (botocore's Stubber, no network)
    ec2 = boto3.client("ec2", region_name=REGION)
    stubber = Stubber(ec2)
    stubber.add_client_error(
        "describe_addresses", service_error_code="RequestLimitExceeded", http_status_code=503
    )
    stubber.activate()
    throttled = Account(**{**account.__dict__, "ec2": ec2})
    make_actuator, make_action = BLOCKERS[blocker]

    # When an address is blocked, Then the state machine's Retry gets a TransientError, nothing blocked
    with pytest.raises(TransientError, match=re.escape(f"checking whether {FOREIGN_IP} is this account's")):
        make_actuator(throttled).run(make_action(throttled, FOREIGN_IP), dry_run=False)
    assert blocked_addresses(account) == []
