"""The remediation steps (plan, run, finish, as the state machine calls them) and rollback_case with
every actuator on one moto account: what a case does to real (moto) resources when run for real, in dry
run, and when rolled back."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import boto3
import pytest
from moto import mock_aws

from tests.factories import make_alert, make_case
from tests.functional.conftest import launch_instance, use_dummy_aws_credentials
from tests.remediation_steps import remediate, remediator
from vtriage.adapters.ec2 import Ec2InstanceIsolation, Ec2InstanceTagging, Ec2VolumeSnapshots
from vtriage.adapters.iam import IamAccessKeyDisabler
from vtriage.adapters.nacl import NaclIpBlocker
from vtriage.adapters.s3 import S3ObjectQuarantine
from vtriage.adapters.waf import WafIpSetBlocker
from vtriage.eligibility import Place
from vtriage.errors import RemediationError
from vtriage.fakes import FakeActuatorsByPlace, InMemoryCaseRepository
from vtriage.models import (
    Action,
    ActionStatus,
    ActionType,
    Case,
    CaseStatus,
    IocOutcome,
    IocType,
    Resource,
    ResourceType,
    Verdict,
)
from vtriage.playbook import plan_actions
from vtriage.ports import ResponseActuator
from vtriage.remediate import rollback_case

pytestmark = pytest.mark.functional

REGION = "us-east-1"
PROTECTED_TAG = "vtriage:protected"
IP = "198.51.100.7"
QUARANTINE_BUCKET = "vtriage-quarantine-123456789012"
# The deployment's own place: moto's account, and the Region of every client here.
PLACE = Place(own_account="123456789012", regions=frozenset({REGION}))


@dataclass
class Account:
    """The moto account's clients and the resources a case acts on."""

    ec2: Any
    waf: Any
    iam: Any
    s3: Any
    instance_id: str
    web_group: str
    vpc_id: str
    ip_set_id: str
    key_id: str
    containment_policy: str


@pytest.fixture
def account(monkeypatch: pytest.MonkeyPatch) -> Iterator[Account]:
    """An instance, a WAF IP set, a user with a key and an uploaded object, on moto."""
    use_dummy_aws_credentials(monkeypatch, REGION)
    with mock_aws():
        ec2, waf = boto3.client("ec2", region_name=REGION), boto3.client("wafv2", region_name=REGION)
        iam, s3 = boto3.client("iam", region_name=REGION), boto3.client("s3", region_name=REGION)
        launched = launch_instance(ec2)
        # The team lets vtriage write deny entries in the network ACL of the instance's subnet.
        [subnet_acl] = ec2.describe_network_acls(
            Filters=[{"Name": "association.subnet-id", "Values": [launched.subnet_id]}]
        )["NetworkAcls"]
        ec2.create_tags(
            Resources=[subnet_acl["NetworkAclId"]], Tags=[{"Key": "vtriage:nacl-block", "Value": "allowed"}]
        )
        ip_set_id = waf.create_ip_set(
            Name="blocked", Scope="REGIONAL", IPAddressVersion="IPV4", Addresses=[]
        )["Summary"]["Id"]
        iam.create_user(UserName="ci-deployer")
        key_id = iam.create_access_key(UserName="ci-deployer")["AccessKey"]["AccessKeyId"]
        deny_all = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Deny", "Action": "*", "Resource": "*"}],
        }
        containment = iam.create_policy(PolicyName="contain", PolicyDocument=json.dumps(deny_all))
        s3.create_bucket(Bucket="uploads")
        s3.create_bucket(Bucket=QUARANTINE_BUCKET)
        s3.put_object(Bucket="uploads", Key="dropper.exe", Body=b"MZ")
        yield Account(
            ec2,
            waf,
            iam,
            s3,
            launched.instance_id,
            launched.group_id,
            launched.vpc_id,
            ip_set_id,
            key_id,
            containment["Policy"]["Arn"],
        )


def actuators(account: Account) -> dict[ActionType, ResponseActuator]:
    return {
        ActionType.SNAPSHOT_VOLUMES: Ec2VolumeSnapshots(account.ec2, PROTECTED_TAG),
        ActionType.TAG_INSTANCE: Ec2InstanceTagging(account.ec2, PROTECTED_TAG),
        ActionType.ISOLATE_INSTANCE: Ec2InstanceIsolation(account.ec2, "vtriage-quarantine", PROTECTED_TAG),
        ActionType.BLOCK_IP_WAF: WafIpSetBlocker(
            account.waf, "blocked", account.ip_set_id, "REGIONAL", ec2_client=account.ec2
        ),
        ActionType.BLOCK_IP_NACL: NaclIpBlocker(account.ec2, 1, 10),
        ActionType.DISABLE_ACCESS_KEY: IamAccessKeyDisabler(
            account.iam, PROTECTED_TAG, account.containment_policy
        ),
        ActionType.QUARANTINE_OBJECT: S3ObjectQuarantine(
            account.s3, QUARANTINE_BUCKET, PROTECTED_TAG, "uploads"
        ),
    }


def planned_case(account: Account) -> Case:
    """A malicious case planning one action of every type moto can run, in playbook order."""
    actions = [
        Action(type=ActionType.SNAPSHOT_VOLUMES, target=account.instance_id),
        Action(type=ActionType.TAG_INSTANCE, target=account.instance_id),
        Action(type=ActionType.ISOLATE_INSTANCE, target=account.instance_id),
        Action(type=ActionType.BLOCK_IP_WAF, target=IP),
        Action(type=ActionType.BLOCK_IP_NACL, target=IP, parameters={"instance_id": account.instance_id}),
        Action(
            type=ActionType.DISABLE_ACCESS_KEY, target=account.key_id, parameters={"user_name": "ci-deployer"}
        ),
        Action(
            type=ActionType.QUARANTINE_OBJECT,
            target="s3://uploads/dropper.exe",
            # The ETag GuardDuty names: the object's MD5.
            parameters={"bucket": "uploads", "key": "dropper.exe", "etag": hashlib.md5(b"MZ").hexdigest()},
        ),
    ]
    return make_case(make_alert(), status=CaseStatus.ENRICHED, verdict=Verdict.MALICIOUS, actions=actions)


@dataclass(frozen=True)
class World:
    """What a person would check in the console."""

    interface_groups: tuple[str, ...]
    instance_tags: frozenset[str]
    waf_addresses: tuple[str, ...]
    nacl_denies: frozenset[str]
    key_status: str
    user_policies: tuple[str, ...]
    uploads: tuple[str, ...]
    quarantined: tuple[str, ...]


def world(account: Account) -> World:
    instance = account.ec2.describe_instances(InstanceIds=[account.instance_id])["Reservations"][0][
        "Instances"
    ][0]
    acls = account.ec2.describe_network_acls(Filters=[{"Name": "vpc-id", "Values": [account.vpc_id]}])[
        "NetworkAcls"
    ]
    [key] = account.iam.list_access_keys(UserName="ci-deployer")["AccessKeyMetadata"]
    return World(
        interface_groups=tuple(g["GroupId"] for eni in instance["NetworkInterfaces"] for g in eni["Groups"]),
        instance_tags=frozenset(tag["Key"] for tag in instance.get("Tags", [])),
        waf_addresses=tuple(
            account.waf.get_ip_set(Name="blocked", Scope="REGIONAL", Id=account.ip_set_id)["IPSet"][
                "Addresses"
            ]
        ),
        nacl_denies=frozenset(
            f"{'egress' if e['Egress'] else 'ingress'} {e['CidrBlock']}"
            for acl in acls
            for e in acl["Entries"]
            if e["RuleAction"] == "deny" and e["RuleNumber"] < 32767
        ),
        key_status=key["Status"],
        user_policies=tuple(
            p["PolicyArn"]
            for p in account.iam.list_attached_user_policies(UserName="ci-deployer")["AttachedPolicies"]
        ),
        uploads=tuple(o["Key"] for o in account.s3.list_objects_v2(Bucket="uploads").get("Contents", [])),
        quarantined=tuple(
            o["Key"] for o in account.s3.list_objects_v2(Bucket=QUARANTINE_BUCKET).get("Contents", [])
        ),
    )


def test_a_live_run_acts_everywhere_and_rollback_restores_all_but_the_snapshots(account: Account) -> None:
    # Given a malicious case planning every action, and the account as it is
    case = planned_case(account)
    cases = InMemoryCaseRepository([case])
    original = world(account)

    # When the case is remediated for real
    remediate(
        remediator(cases, actuators(account), place=PLACE, dry_run=False, max_actions_per_case=10),
        case.case_id,
    )

    # Then every action is done and the account shows it
    remediated = cases.get(case.case_id)
    assert remediated is not None
    assert [a.status for a in remediated.actions] == [ActionStatus.DONE] * 7, [
        a.detail for a in remediated.actions
    ]
    now = world(account)
    assert account.web_group not in now.interface_groups
    assert {"vtriage:case", "vtriage:quarantined"} <= now.instance_tags
    assert now.waf_addresses == (f"{IP}/32",)
    assert now.nacl_denies == {f"ingress {IP}/32", f"egress {IP}/32"}
    assert now.key_status == "Inactive"
    assert now.user_policies == (account.containment_policy,)
    assert now.uploads == ()
    assert now.quarantined == (f"{case.case_id}/uploads/dropper.exe",)

    # When the case is rolled back
    result = rollback_case(case.case_id, cases, FakeActuatorsByPlace(actuators(account)))

    # Then the account is as it was, last action undone first; the snapshots stay for forensics, and the
    # quarantined copy stays as evidence beside the object put back
    assert world(account) == replace(original, quarantined=(f"{case.case_id}/uploads/dropper.exe",))
    assert result.complete is True
    assert [a.type for a in result.actions] == [a.type for a in reversed(remediated.actions)]
    rolled_back = cases.get(case.case_id)
    assert rolled_back is not None
    assert [a.status for a in rolled_back.actions] == [ActionStatus.DONE] + [ActionStatus.ROLLED_BACK] * 6
    assert "kept for forensics" in rolled_back.actions[0].detail
    snapshots = account.ec2.describe_snapshots(
        OwnerIds=["self"], Filters=[{"Name": "tag:vtriage:case", "Values": [case.case_id]}]
    )["Snapshots"]
    assert len(snapshots) == 1


def test_a_dry_run_changes_nothing_anywhere(account: Account) -> None:
    # Given the same case and the account as it is
    case = planned_case(account)
    cases = InMemoryCaseRepository([case])
    original = world(account)

    # When the case is remediated in dry run
    remediate(
        remediator(cases, actuators(account), place=PLACE, dry_run=True, max_actions_per_case=10),
        case.case_id,
    )

    # Then every action says what it would do, and nothing changed, not even a snapshot taken
    stored = cases.get(case.case_id)
    assert stored is not None
    assert [a.status for a in stored.actions] == [ActionStatus.DRY_RUN] * 7, [
        a.detail for a in stored.actions
    ]
    assert all(a.detail.startswith("dry run, nothing changed: would") for a in stored.actions)
    assert world(account) == original
    case_snapshots = account.ec2.describe_snapshots(
        OwnerIds=["self"], Filters=[{"Name": "tag:vtriage:case", "Values": [case.case_id]}]
    )["Snapshots"]
    assert case_snapshots == []


# ---------------------------------------------------------------- forged findings and shared changes


def test_a_forged_finding_moves_only_the_live_instances_interfaces_and_blocks_only_in_its_subnets(
    account: Account,
) -> None:
    # Given a second instance in another VPC, whose subnet's network ACL is opted in too
    other = launch_instance(account.ec2)
    [other_acl] = account.ec2.describe_network_acls(
        Filters=[{"Name": "association.subnet-id", "Values": [other.subnet_id]}]
    )["NetworkAcls"]
    account.ec2.create_tags(
        Resources=[other_acl["NetworkAclId"]], Tags=[{"Key": "vtriage:nacl-block", "Value": "allowed"}]
    )
    [other_eni] = interface_groups_of(account, other.instance_id)
    # And a finding on the first instance that names, as a forged one would, the other's VPC, interface and
    # address beside it
    alert = make_alert(
        type="Backdoor:EC2/C&CActivity.B",
        resources=(
            Resource(
                type=ResourceType.INSTANCE,
                id=account.instance_id,
                vpc_id=other.vpc_id,
                network_interface_ids=(other_eni,),
                addresses=("10.0.1.99",),
            ),
        ),
    )
    iocs = [IocOutcome(type=IocType.IP, value=IP, found_at="service.action", verdict=Verdict.MALICIOUS)]
    case = make_case(
        alert,
        status=CaseStatus.ENRICHED,
        verdict=Verdict.MALICIOUS,
        iocs=iocs,
        actions=plan_actions(alert, iocs, ip_block_method="nacl"),
    )
    cases = InMemoryCaseRepository([case])

    # When the case is remediated for real
    remediate(
        remediator(cases, actuators(account), place=PLACE, dry_run=False, max_actions_per_case=10),
        case.case_id,
    )

    # Then the live instance's own interface is isolated and its own subnet's network ACL denies the IP
    stored = cases.get(case.case_id)
    assert stored is not None
    assert {a.type: a.status for a in stored.actions}[ActionType.ISOLATE_INSTANCE] is ActionStatus.DONE
    assert account.web_group not in world(account).interface_groups
    assert world(account).nacl_denies == {f"ingress {IP}/32", f"egress {IP}/32"}
    # And the interface, VPC and network ACL the finding named are untouched
    assert interface_groups_of(account, other.instance_id) == {other_eni: [other.group_id]}
    named_vpc_acls = account.ec2.describe_network_acls(
        Filters=[{"Name": "vpc-id", "Values": [other.vpc_id]}]
    )["NetworkAcls"]
    named_denies = [
        entry
        for acl in named_vpc_acls
        for entry in acl["Entries"]
        if entry["RuleAction"] == "deny" and entry["RuleNumber"] < 32767
    ]
    assert named_denies == []


def test_a_finding_from_another_account_changes_nothing_anywhere(account: Account) -> None:
    # Given the case planning every action, on a finding that names another account
    case = planned_case(account).model_copy(update={"alert": make_alert(account="999999999999")})
    cases = InMemoryCaseRepository([case])
    original = world(account)

    # When it is remediated for real, Then the caller hears why nothing ran
    with pytest.raises(RemediationError, match="account '999999999999'"):
        remediate(remediator(cases, actuators(account), place=PLACE, max_actions_per_case=10), case.case_id)

    # And nothing changed anywhere, and every action says why it was skipped
    assert world(account) == original
    stored = cases.get(case.case_id)
    assert stored is not None
    assert {a.status for a in stored.actions} == {ActionStatus.SKIPPED}
    assert all("account '999999999999'" in a.detail for a in stored.actions)


def test_rolling_back_one_of_two_cases_that_isolated_an_instance_keeps_it_isolated(account: Account) -> None:
    # Given two open cases that each isolated the same instance, the second finding it isolated already
    isolate = actuators(account)
    cases = InMemoryCaseRepository()
    for case_id in ("case-first", "case-second"):
        case = make_case(
            make_alert(),
            case_id=case_id,
            status=CaseStatus.ENRICHED,
            verdict=Verdict.MALICIOUS,
            actions=[Action(type=ActionType.ISOLATE_INSTANCE, target=account.instance_id)],
        )
        cases.create(case)
        remediate(remediator(cases, isolate, place=PLACE), case_id)
    isolated = world(account).interface_groups
    assert account.web_group not in isolated

    # When the first is rolled back
    first = rollback_case("case-first", cases, FakeActuatorsByPlace(isolate))

    # Then the instance stays isolated, and the case says the other open case relies on it
    assert world(account).interface_groups == isolated
    [kept] = first.actions
    assert kept.status is ActionStatus.ROLLED_BACK
    assert "not undone: open case(s) case-second rely on this isolate_instance" in kept.detail

    # When the second is rolled back too, Then the instance has its own group back
    second = rollback_case("case-second", cases, FakeActuatorsByPlace(isolate))
    assert world(account).interface_groups == (account.web_group,)
    assert "case case-first" in second.released[0]


def interface_groups_of(account: Account, instance_id: str) -> dict[str, list[str]]:
    instance = account.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    return {
        eni["NetworkInterfaceId"]: [g["GroupId"] for g in eni["Groups"]]
        for eni in instance["NetworkInterfaces"]
    }
