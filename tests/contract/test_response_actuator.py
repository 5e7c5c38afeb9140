"""`ResponseActuator`: the in-memory actuator and every real one act, dry-run, repeat, roll back and refuse
alike. The real ones act on moto's AWS of the template's stack (the EC2 isolation, snapshots and tags of
an instance launched as the functional tests launch one; the network ACL deny entries of its subnet;
an IAM user's access key and the template's containment policy; an S3 object and a quarantine bucket;
an address in a WAF IP set), on a DNS Firewall domain list served on loopback as Route 53 Resolver's API
documents it (moto has no DNS Firewall), and on a Falcon host of the fake CrowdStrike API of
`tests/functional/test_contain_host.py`.

What the state of a target is differs between the two (a string, the groups of each network interface,
the addresses of a set, ...): each says whether it changed, never what it is. What an actuator cannot
do is not asked of it: an action kept as evidence (`snapshot_volumes`) is never undone, the WAF IP set's
addresses and the domain list's domains are the deployment's own and carry no protected tag, and any
address or domain can be blocked, so none is missing.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import count
from typing import Any

import boto3
import pytest
import requests

from tests.contract.conftest import IN_MEMORY, client
from tests.functional.conftest import launch_instance
from tests.functional.test_contain_host import CID, CLIENT_ID, CLIENT_SECRET, PROTECTED_TAG, FalconHosts
from tests.functional.test_ticket_providers import Answer, LoopbackServer, Received, json_answer
from vtriage.adapters.dns_firewall import DnsFirewallDomainBlocker
from vtriage.adapters.ec2 import Ec2InstanceIsolation, Ec2InstanceTagging, Ec2VolumeSnapshots
from vtriage.adapters.falcon import FalconClient, FalconCredentials, FalconHostContainment
from vtriage.adapters.iam import IamAccessKeyDisabler
from vtriage.adapters.nacl import OPT_IN_TAG, OPT_IN_VALUE, NaclIpBlocker
from vtriage.adapters.s3 import S3ObjectQuarantine
from vtriage.adapters.waf import WafIpSetBlocker
from vtriage.fakes import FakeActuator
from vtriage.models import Action, ActionStatus, ActionType
from vtriage.ports import ResponseActuator
from vtriage_local.stack import REGION, LocalAws

# An instance id of the right form that no instance has.
MISSING = "i-0123456789abcdef0"


@dataclass(frozen=True)
class Kind:
    """What an action type's actuator is asked beyond acting once: whether a rollback undoes it, whether
    its target can carry the protected tag, whether its target can be missing; and what the detail of
    an action on a missing target says."""

    reversible: bool = True
    protectable: bool = True
    missable: bool = True
    missing_says: str = "not found"


KINDS = {
    ActionType.ISOLATE_INSTANCE: Kind(),
    ActionType.SNAPSHOT_VOLUMES: Kind(reversible=False),
    ActionType.TAG_INSTANCE: Kind(),
    ActionType.BLOCK_IP_WAF: Kind(protectable=False, missable=False),
    ActionType.BLOCK_IP_NACL: Kind(),
    ActionType.DISABLE_ACCESS_KEY: Kind(),
    ActionType.QUARANTINE_OBJECT: Kind(),
    ActionType.BLOCK_DOMAIN_DNS_FIREWALL: Kind(protectable=False, missable=False),
    ActionType.CONTAIN_HOST: Kind(missing_says="no device"),
}


def kinds(wanted: Callable[[Kind], bool] = lambda kind: True) -> list[Any]:
    """The action types whose actuators are asked this, one test each."""
    return [
        pytest.param(action_type, id=action_type.value) for action_type, kind in KINDS.items() if wanted(kind)
    ]


@dataclass(frozen=True)
class Targets:
    """The actuator under test; a way to make an action on a new target of it (carrying the protected
    tag or not), and one on a target that does not exist; the state of an action's target now (opaque:
    compared, never read); and what the detail of an action on a missing target says."""

    actuator: ResponseActuator
    make: Callable[[bool], Action]
    missing: Callable[[], Action]
    state: Callable[[Action], Any]
    missing_says: str


@pytest.fixture
def targets(
    action_type: ActionType, implementation: str, request: pytest.FixtureRequest
) -> Iterator[Targets]:
    kind = KINDS[action_type]
    if implementation == IN_MEMORY:
        yield _in_memory(action_type, kind)
        return
    aws: LocalAws = request.getfixturevalue("aws")
    yield from _REAL[action_type](aws)


def _in_memory(action_type: ActionType, kind: Kind) -> Targets:
    fake = FakeActuator(action_type, protected={"target-protected"}, reversible=kind.reversible)

    def known(protected: bool) -> Action:
        target = "target-protected" if protected else f"target-{len(fake.states)}"
        fake.states[target] = "as found"
        return _action(action_type, target)

    return Targets(
        fake,
        known,
        lambda: _action(action_type, "target-missing"),
        lambda a: fake.states.get(a.target),
        "not found",
    )


def _action(action_type: ActionType, target: str, **parameters: str) -> Action:
    return Action(type=action_type, target=target, parameters={"case_id": "guardduty-1", **parameters})


# --- the real actuators ------------------------------------------------------------------------------


def _protected_tag(aws: LocalAws) -> str:
    return str(aws.function_environment()["PROTECTED_TAG_KEY"])


def _instances(aws: LocalAws) -> Callable[[bool], str]:
    """A way to launch an instance, carrying the protected tag or not."""
    ec2, protected_tag = client(aws, "ec2"), _protected_tag(aws)

    def launched(protected: bool) -> str:
        return launch_instance(ec2, tags={protected_tag: "true"} if protected else None).instance_id

    return launched


def _instance(aws: LocalAws, instance_id: str) -> dict[str, Any]:
    reservations = client(aws, "ec2").describe_instances(InstanceIds=[instance_id])["Reservations"]
    instance: dict[str, Any] = reservations[0]["Instances"][0]
    return instance


def _isolation(aws: LocalAws) -> Iterator[Targets]:
    launched = _instances(aws)

    def groups(action: Action) -> dict[str, list[str]]:
        return {
            interface["NetworkInterfaceId"]: sorted(group["GroupId"] for group in interface["Groups"])
            for interface in _instance(aws, action.target)["NetworkInterfaces"]
        }

    isolation = Ec2InstanceIsolation(
        client(aws, "ec2"), str(aws.function_environment()["QUARANTINE_GROUP_NAME"]), _protected_tag(aws)
    )
    yield Targets(
        isolation,
        lambda protected: _action(ActionType.ISOLATE_INSTANCE, launched(protected)),
        lambda: _action(ActionType.ISOLATE_INSTANCE, MISSING),
        groups,
        "not found",
    )


def _snapshots(aws: LocalAws) -> Iterator[Targets]:
    launched, ec2 = _instances(aws), client(aws, "ec2")

    def taken(action: Action) -> list[str]:
        snapshots = ec2.describe_snapshots(
            OwnerIds=["self"], Filters=[{"Name": "tag:vtriage:instance", "Values": [action.target]}]
        )["Snapshots"]
        return sorted(snapshot["SnapshotId"] for snapshot in snapshots)

    yield Targets(
        Ec2VolumeSnapshots(ec2, _protected_tag(aws)),
        lambda protected: _action(ActionType.SNAPSHOT_VOLUMES, launched(protected)),
        lambda: _action(ActionType.SNAPSHOT_VOLUMES, MISSING),
        taken,
        "not found",
    )


def _tagging(aws: LocalAws) -> Iterator[Targets]:
    launched = _instances(aws)

    def tags(action: Action) -> dict[str, str]:
        return {tag["Key"]: tag["Value"] for tag in _instance(aws, action.target).get("Tags", [])}

    yield Targets(
        Ec2InstanceTagging(client(aws, "ec2"), _protected_tag(aws)),
        lambda protected: _action(ActionType.TAG_INSTANCE, launched(protected)),
        lambda: _action(ActionType.TAG_INSTANCE, MISSING),
        tags,
        "not found",
    )


def _network_acls(aws: LocalAws) -> Iterator[Targets]:
    ec2, protected_tag = client(aws, "ec2"), _protected_tag(aws)

    def opted_in_subnet(protected: bool) -> Action:
        # An instance whose subnet's network ACL the team opted in (and protected, when asked).
        instance = launch_instance(ec2)
        tags = [{"Key": OPT_IN_TAG, "Value": OPT_IN_VALUE}]
        if protected:
            tags.append({"Key": protected_tag, "Value": "true"})
        ec2.create_tags(Resources=[_subnet_acl(ec2, instance.subnet_id)], Tags=tags)
        return _action(ActionType.BLOCK_IP_NACL, "198.51.100.7", instance_id=instance.instance_id)

    def denies(action: Action) -> list[tuple[bool, int, str]]:
        subnet = _instance(aws, str(action.parameters["instance_id"]))["SubnetId"]
        [acl] = ec2.describe_network_acls(NetworkAclIds=[_subnet_acl(ec2, subnet)])["NetworkAcls"]
        return sorted(
            (entry["Egress"], entry["RuleNumber"], entry.get("CidrBlock", ""))
            for entry in acl["Entries"]
            if entry["RuleAction"] == "deny"
        )

    yield Targets(
        NaclIpBlocker(ec2, 1, 18, protected_tag),
        opted_in_subnet,
        lambda: _action(ActionType.BLOCK_IP_NACL, "198.51.100.7", instance_id=MISSING),
        denies,
        "not found",
    )


def _subnet_acl(ec2: Any, subnet_id: str) -> str:
    acls = ec2.describe_network_acls(Filters=[{"Name": "association.subnet-id", "Values": [subnet_id]}])
    return str(acls["NetworkAcls"][0]["NetworkAclId"])


def _access_keys(aws: LocalAws) -> Iterator[Targets]:
    iam, protected_tag = client(aws, "iam"), _protected_tag(aws)

    def user_with_a_key(protected: bool) -> Action:
        user = f"ci-deployer-{uuid.uuid4().hex[:8]}"
        iam.create_user(UserName=user, Tags=[{"Key": protected_tag, "Value": "true"}] if protected else [])
        key = iam.create_access_key(UserName=user)["AccessKey"]["AccessKeyId"]
        return _action(ActionType.DISABLE_ACCESS_KEY, str(key), user_name=user)

    def key_and_policies(action: Action) -> tuple[str, list[str]]:
        user = str(action.parameters["user_name"])
        [key] = [
            k
            for k in iam.list_access_keys(UserName=user)["AccessKeyMetadata"]
            if k["AccessKeyId"] == action.target
        ]
        attached = iam.list_attached_user_policies(UserName=user)["AttachedPolicies"]
        return str(key["Status"]), sorted(policy["PolicyArn"] for policy in attached)

    containment = str(aws.function_environment()["USER_CONTAINMENT_POLICY_ARN"])
    yield Targets(
        IamAccessKeyDisabler(iam, protected_tag, containment),
        user_with_a_key,
        lambda: _action(ActionType.DISABLE_ACCESS_KEY, "AKIAIOSFODNN7EXAMPLE", user_name="ci-deployer-gone"),
        key_and_policies,
        "not found",
    )


def _objects(aws: LocalAws) -> Iterator[Targets]:
    s3, protected_tag = client(aws, "s3"), _protected_tag(aws)
    uploads, quarantine = f"uploads-{uuid.uuid4().hex[:12]}", f"vtriage-quarantine-{uuid.uuid4().hex[:12]}"
    for bucket in (uploads, quarantine):
        s3.create_bucket(Bucket=bucket)
    numbers = count()

    def uploaded(protected: bool) -> Action:
        key = f"incoming/invoice ({next(numbers)}).exe"
        tagging = f"{protected_tag}=true" if protected else "owner=billing"
        put = s3.put_object(Bucket=uploads, Key=key, Body=b"MZ\x90\x00 pretend malware", Tagging=tagging)
        # As the playbook plans it: the object the finding scanned, named by its ETag.
        return _action(
            ActionType.QUARANTINE_OBJECT, f"s3://{uploads}/{key}", bucket=uploads, key=key, etag=put["ETag"]
        )

    def where_it_was(action: Action) -> tuple[bytes, dict[str, str]] | None:
        bucket, key = str(action.parameters["bucket"]), str(action.parameters["key"])
        listed = s3.list_objects_v2(Bucket=bucket, Prefix=key).get("Contents", [])
        if not any(item["Key"] == key for item in listed):
            return None
        tags = s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]
        body: bytes = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        return body, {tag["Key"]: tag["Value"] for tag in tags}

    gone, etag = "incoming/never-uploaded.exe", '"0123456789abcdef0123456789abcdef"'
    yield Targets(
        S3ObjectQuarantine(s3, quarantine, protected_tag, uploads),
        uploaded,
        lambda: _action(
            ActionType.QUARANTINE_OBJECT, f"s3://{uploads}/{gone}", bucket=uploads, key=gone, etag=etag
        ),
        where_it_was,
        "not found",
    )


def _waf_ip_set(aws: LocalAws) -> Iterator[Targets]:
    waf, name = client(aws, "wafv2"), f"vtriage-blocked-{uuid.uuid4().hex[:8]}"
    ip_set = waf.create_ip_set(
        Name=name, Scope="REGIONAL", IPAddressVersion="IPV4", Addresses=[], Description="blocked by vtriage"
    )["Summary"]["Id"]
    numbers = count(7)

    def addresses(action: Action) -> list[str]:
        return sorted(waf.get_ip_set(Name=name, Scope="REGIONAL", Id=ip_set)["IPSet"]["Addresses"])

    yield Targets(
        WafIpSetBlocker(waf, name, str(ip_set), "REGIONAL", ec2_client=client(aws, "ec2")),
        lambda protected: _action(ActionType.BLOCK_IP_WAF, f"198.51.100.{next(numbers)}"),
        _unasked,
        addresses,
        "not found",
    )


def _dns_firewall(aws: LocalAws) -> Iterator[Targets]:
    firewall = DnsFirewall()
    numbers = count()
    with firewall.server:
        resolver = boto3.client(
            "route53resolver",
            region_name=REGION,
            endpoint_url=firewall.server.base_url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        yield Targets(
            DnsFirewallDomainBlocker(resolver, firewall.LIST_ID),
            lambda protected: _action(ActionType.BLOCK_DOMAIN_DNS_FIREWALL, f"evil-{next(numbers)}.example"),
            _unasked,
            lambda action: sorted(firewall.domains),
            "not found",
        )


def _falcon_hosts(aws: LocalAws) -> Iterator[Targets]:
    falcon = FalconHosts()

    def served(protected: bool) -> Action:
        device_id = uuid.uuid4().hex
        falcon.serve(
            {"device_id": device_id, "cid": CID, "hostname": f"LAPTOP-{device_id[:6].upper()}"},
            tags=[PROTECTED_TAG] if protected else [],
            status="normal",
        )
        return _action(ActionType.CONTAIN_HOST, device_id)

    def containment(action: Action) -> str:
        # What a person sees once the sensor applied a change it was asked for.
        status = str(falcon.devices[action.target]["status"])
        return {"containment_pending": "contained", "lift_containment_pending": "normal"}.get(status, status)

    with falcon.server, requests.Session() as session:
        falcon_client = FalconClient(
            session, falcon.server.base_url, FalconCredentials(CLIENT_ID, CLIENT_SECRET)
        )
        yield Targets(
            FalconHostContainment(lambda: falcon_client, CID, PROTECTED_TAG),
            served,
            lambda: _action(ActionType.CONTAIN_HOST, uuid.uuid4().hex),
            containment,
            "no device",
        )


def _unasked() -> Action:
    raise AssertionError("any address or domain can be blocked: none is missing")


_REAL: dict[ActionType, Callable[[LocalAws], Iterator[Targets]]] = {
    ActionType.ISOLATE_INSTANCE: _isolation,
    ActionType.SNAPSHOT_VOLUMES: _snapshots,
    ActionType.TAG_INSTANCE: _tagging,
    ActionType.BLOCK_IP_WAF: _waf_ip_set,
    ActionType.BLOCK_IP_NACL: _network_acls,
    ActionType.DISABLE_ACCESS_KEY: _access_keys,
    ActionType.QUARANTINE_OBJECT: _objects,
    ActionType.BLOCK_DOMAIN_DNS_FIREWALL: _dns_firewall,
    ActionType.CONTAIN_HOST: _falcon_hosts,
}


class DnsFirewall:
    """Route 53 Resolver's DNS Firewall, one domain list, on loopback: `ListFirewallDomains` and
    `UpdateFirewallDomains` (Operation ADD or REMOVE) as its API reference documents them, in the AWS JSON
    1.1 protocol (`POST /`, the operation in `X-Amz-Target: Route53Resolver.<operation>`); the domains
    listed fully qualified, with a final dot; an unknown list answered 400 `ResourceNotFoundException`."""

    LIST_ID = "rslvr-fdl-0123456789abcdef"

    def __init__(self) -> None:
        self.domains: set[str] = set()
        self._lock = threading.Lock()
        self.server = LoopbackServer(self.respond)

    def respond(self, request: Received) -> Answer:
        operation = str(request.headers.get("X-Amz-Target", "")).removeprefix("Route53Resolver.")
        body = request.json()
        if body.get("FirewallDomainListId") != self.LIST_ID:
            return _aws_json_error("ResourceNotFoundException", "The domain list does not exist.")
        with self._lock:
            if operation == "ListFirewallDomains":
                return json_answer(200, {"Domains": sorted(domain + "." for domain in self.domains)})
            if operation == "UpdateFirewallDomains" and body.get("Operation") in ("ADD", "REMOVE"):
                given = {str(domain).rstrip(".") for domain in body["Domains"]}
                self.domains = self.domains | given if body["Operation"] == "ADD" else self.domains - given
                status = {"Status": "UPDATING", "StatusMessage": "Updating domains"}
                return json_answer(200, {"Id": self.LIST_ID, "Name": "vtriage-blocked", **status})
        return _aws_json_error("ValidationException", f"{operation} is not served here")


def _aws_json_error(code: str, message: str) -> Answer:
    return (
        400,
        {"Content-Type": "application/x-amz-json-1.1"},
        json.dumps({"__type": code, "message": message}).encode(),
    )


# --- the contract -------------------------------------------------------------------------------------


def test_every_action_type_is_held_to_the_contract() -> None:
    # Given the action types vtriage can take, Then each one's actuator is held to this contract
    assert set(KINDS) == set(ActionType)
    assert set(_REAL) == set(ActionType)


def _act_twice(targets: Targets) -> tuple[Action, Any, Action, Any]:
    """A new target's action dry-run, then run twice: what the contract says of each; the action run, the
    state before, the first run's outcome, the state after."""
    # Given a target as it is
    action = targets.make(False)
    before = targets.state(action)

    # When the action is dry-run, Then it says so and the target is unchanged
    dry = targets.actuator.run(action, dry_run=True)
    assert dry.status is ActionStatus.DRY_RUN, dry.detail
    assert dry.detail.startswith("dry run")
    assert targets.state(action) == before

    # When it runs, Then it changes the target and records its state before and after
    done = targets.actuator.run(action, dry_run=False)
    acted = targets.state(action)
    assert done.status is ActionStatus.DONE, done.detail
    assert acted != before
    assert done.before
    assert done.after

    # When it runs again, Then it finds the target acted on and changes nothing
    again = targets.actuator.run(action, dry_run=False)
    assert again.status is ActionStatus.DONE, again.detail
    assert targets.state(action) == acted
    return action, before, done, acted


@pytest.mark.parametrize("action_type", kinds(lambda kind: kind.reversible))
def test_a_dry_run_changes_nothing_an_action_acts_once_and_its_rollback_undoes_it(targets: Targets) -> None:
    action, before, done, _ = _act_twice(targets)

    # When the first run is rolled back, Then the target is as it was before the action
    undone = targets.actuator.rollback(done)
    assert undone.status is ActionStatus.ROLLED_BACK, undone.detail
    assert targets.state(action) == before


@pytest.mark.parametrize("action_type", kinds(lambda kind: not kind.reversible))
def test_a_dry_run_changes_nothing_an_action_acts_once_and_what_it_keeps_outlives_a_rollback(
    targets: Targets,
) -> None:
    action, _, done, acted = _act_twice(targets)

    # When the first run is rolled back, Then nothing is undone, and it says so
    kept = targets.actuator.rollback(done)
    assert kept.status is done.status
    assert kept.detail.startswith("nothing to undo")
    assert targets.state(action) == acted


@pytest.mark.parametrize("action_type", kinds(lambda kind: kind.protectable))
def test_a_protected_target_is_left_alone(targets: Targets) -> None:
    # Given a target carrying the protected tag
    action = targets.make(True)
    before = targets.state(action)

    # When the action runs for real
    result = targets.actuator.run(action, dry_run=False)

    # Then it is skipped with the reason, and the target is unchanged
    assert result.status is ActionStatus.SKIPPED, result.detail
    assert "protected" in result.detail
    assert targets.state(action) == before


@pytest.mark.parametrize("action_type", kinds(lambda kind: kind.missable))
def test_a_target_that_does_not_exist_fails_the_action(targets: Targets) -> None:
    # Given no such target, When the action runs, Then it fails saying the target is not there
    result = targets.actuator.run(targets.missing(), dry_run=False)
    assert result.status is ActionStatus.FAILED, result.detail
    assert targets.missing_says in result.detail
