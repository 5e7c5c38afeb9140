"""Forged findings, run as a new user runs them: `vtriage run --json --parameter-overrides DryRun=false`
(`run_files`), against a local account set up as it was before they arrived and read afterwards as a
person reads it in the console, the ticket topic's mail and the approvers' mail.

The documents are in tests/adversarial/: each forged from a real finding of tests/corpus/ the way a holder
of `sqs:SendMessage`, `securityhub:BatchImportFindings` or the intake URL could forge it
(tests/adversarial/PROVENANCE.md says from which finding and how). The one genuine finding is the real
GuardDuty C&C finding of warren's examples, in the deployment's Region and querying a domain VirusTotal
flags: it is isolated for real, and no forged document may change that or make anything else change.

`run_files` owns its local AWS from start to stop. `_ObservedStack` steps in at both ends, and replaces
nothing the pipeline runs: once the stack is up it sets the account up (instances in their own VPCs, the
protected tag, network ACLs the team opted in, mailboxes subscribed to the ticket and approvals topics,
alerts pushed through the intake function) and reads it; before the stack stops it reads it again.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

import vtriage_local.runner as runner
from tests.functional.test_intake_function import SENDER, function_url_request
from tests.functional.test_ticket_providers import (
    JIRA_EMAIL,
    JIRA_TOKEN,
    SN_PASSWORD,
    SN_USER,
    FakeJira,
    FakeServiceNow,
    LoopbackServer,
    adf_code,
    adf_links,
    adf_text,
)
from vtriage.approval import TOKEN_PARAMETER
from vtriage.models import Resource, ResourceType
from vtriage_local.replay import bundled_recordings
from vtriage_local.report import print_report
from vtriage_local.runner import VirusTotalSource, run_files
from vtriage_local.seed import seed_instances
from vtriage_local.stack import LocalAws
from vtriage_local.template import PROJECT_ROOT, Intrinsics, load_template

pytestmark = pytest.mark.functional

ADVERSARIAL = PROJECT_ROOT / "tests" / "adversarial"
GENUINE = "synthetic-genuine-c2-dns.json"
GENUINE_ON_PROTECTED = "synthetic-genuine-c2-dns-protected-instance.json"
OTHER_ACCOUNT = "synthetic-forged-other-account-c2-dns.json"
OTHER_REGION = "synthetic-forged-other-region-c2-dns.json"
OTHER_ACCOUNT_AND_REGION = "synthetic-forged-other-account-and-region-c2-dns.json"
IMPORTED_OTHER_ACCOUNT = "synthetic-forged-securityhub-other-account.json"
FOREIGN_INSTANCE_ARN = "synthetic-forged-securityhub-foreign-instance-arn.json"
OTHER_VPC = "synthetic-forged-other-vpc-c2-ip.json"
BORROWED_ID = "synthetic-forged-borrowed-id-benign.json"
TITLE_INJECTION = "synthetic-forged-injection-title-c2-dns.json"
S3_KEY_INJECTION = "synthetic-forged-injection-s3-key.json"

QUARANTINE_GROUP = "vtriage-quarantine"
UNTRACKING_GROUP = "vtriage-quarantine-untracking"
PROTECTED_TAG = "vtriage:protected"
NACL_OPT_IN = {"Key": "vtriage:nacl-block", "Value": "allowed"}
MALICIOUS_IP = "23.129.64.215"
# A genuine C&C case whose instance is isolated leaves nothing uncontained, though the local account has no
# DNS Firewall domain list: the skipped block is the deployment's choice, not the case's containment failing.
NOTHING_UNCONTAINED: list[str] = []

# The local instance the genuine finding names (warren's real one), a bystander in another VPC whose
# interface and address a forged finding gives the first one, and a protected instance beside the first.
INSTANCE = Resource(
    type=ResourceType.INSTANCE,
    id="i-0a1b2c3d4e5f67890",
    vpc_id="vpc-0abc123def456",
    network_interface_ids=("eni-0fedcba0987654321",),
    addresses=("172.31.24.50",),
)
BYSTANDER = Resource(
    type=ResourceType.INSTANCE,
    id="i-0b5e11a7e5d9c3f21",
    vpc_id="vpc-0b5e11a7e5d9c3f23",
    network_interface_ids=("eni-0b5e11a7e5d9c3f22",),
    addresses=("10.20.5.17",),
)
PROTECTED = Resource(
    type=ResourceType.INSTANCE,
    id="i-0c0ffee5a1e5d0b07",
    vpc_id="vpc-0abc123def456",
    network_interface_ids=("eni-0c0ffee5a1e5d0b08",),
    addresses=("172.31.24.77",),
)

# What a sender may claim to be: the names it puts in request headers and in an SQS message's attributes.
FORGED_SENDER = (
    "arn:aws:iam::123456789012:role/aws-service-role/guardduty.amazonaws.com/AWSServiceRoleForAmazonGuardDuty"
)
FORGED_STAMP = {
    "vtriage_sender": FORGED_SENDER,
    "vtriage_sender_account": "123456789012",
    "vtriage_source_ip": "10.0.0.1",
    "vtriage_user_agent": "aws-internal/3 guardduty",
}


# ---------------------------------------------------------------- the local account, before and after


@dataclass(frozen=True)
class Ec2Account:
    """What a person reads in the EC2 console: each interface's groups, each instance's tags, each
    security group's rules and tags, the snapshots of the instances' volumes, each network ACL's entries
    and tags."""

    interface_groups: dict[str, list[str]]
    instance_tags: dict[str, dict[str, str]]
    instance_volumes: dict[str, list[str]]
    security_groups: dict[str, dict[str, Any]]
    snapshots: dict[str, dict[str, Any]]
    network_acls: dict[str, dict[str, Any]]

    def quarantine_group(self, vpc_id: str, name: str = QUARANTINE_GROUP) -> str:
        """The id of vtriage's group of this name in the VPC."""
        (found,) = [
            group_id
            for group_id, group in self.security_groups.items()
            if group["name"] == name and group["vpc"] == vpc_id
        ]
        return found

    def snapshots_of(self, instance_id: str) -> dict[str, dict[str, Any]]:
        """The snapshots of the instance's volumes."""
        volumes = set(self.instance_volumes[instance_id])
        return {sid: snap for sid, snap in self.snapshots.items() if snap["volume"] in volumes}

    def acls_of(self, vpc_id: str) -> dict[str, dict[str, Any]]:
        """The network ACLs of the VPC."""
        return {acl_id: acl for acl_id, acl in self.network_acls.items() if acl["vpc"] == vpc_id}

    def of_instance(self, resource: Resource) -> dict[str, Any]:
        """Everything about one instance: its interfaces' groups, its tags, its volumes' snapshots."""
        return {
            "groups": {eni: self.interface_groups[eni] for eni in self.interfaces_of(resource.id)},
            "tags": self.instance_tags[resource.id],
            "snapshots": self.snapshots_of(resource.id),
        }

    def interfaces_of(self, instance_id: str) -> list[str]:
        """The instance's interfaces (recorded with the instance: `eni@instance`)."""
        return sorted(key for key in self.interface_groups if key.endswith("@" + instance_id))

    def groups_of(self, interface_id: str) -> list[str]:
        """The groups an interface is in now."""
        (found,) = [
            groups for key, groups in self.interface_groups.items() if key.split("@")[0] == interface_id
        ]
        return found


def _tags(tags: list[dict[str, str]] | None) -> dict[str, str]:
    return {tag["Key"]: tag["Value"] for tag in tags or []}


def read_ec2(aws: LocalAws) -> Ec2Account:
    """The local account's EC2 as a person reads it."""
    ec2 = aws.client("ec2")
    instances = [
        instance
        for reservation in ec2.describe_instances()["Reservations"]
        for instance in reservation["Instances"]
    ]
    interface_groups: dict[str, list[str]] = {}
    for interface in ec2.describe_network_interfaces()["NetworkInterfaces"]:
        owner = interface.get("Attachment", {}).get("InstanceId", "")
        key = f"{interface['NetworkInterfaceId']}@{owner}"
        interface_groups[key] = sorted(group["GroupId"] for group in interface["Groups"])
    volumes = {
        instance["InstanceId"]: [m["Ebs"]["VolumeId"] for m in instance.get("BlockDeviceMappings", [])]
        for instance in instances
    }
    every_volume = [volume for listed in volumes.values() for volume in listed]
    snapshots = (
        ec2.describe_snapshots(Filters=[{"Name": "volume-id", "Values": every_volume}])["Snapshots"]
        if every_volume
        else []
    )
    return Ec2Account(
        interface_groups=interface_groups,
        instance_tags={instance["InstanceId"]: _tags(instance.get("Tags")) for instance in instances},
        instance_volumes=volumes,
        security_groups={
            group["GroupId"]: {
                "name": group["GroupName"],
                "vpc": group.get("VpcId"),
                "ingress": group["IpPermissions"],
                "egress": group["IpPermissionsEgress"],
                "tags": _tags(group.get("Tags")),
            }
            for group in ec2.describe_security_groups()["SecurityGroups"]
        },
        snapshots={
            snapshot["SnapshotId"]: {"volume": snapshot["VolumeId"], "tags": _tags(snapshot.get("Tags"))}
            for snapshot in snapshots
        },
        network_acls={
            acl["NetworkAclId"]: {
                "vpc": acl["VpcId"],
                "entries": sorted(
                    (
                        e["RuleNumber"],
                        e["Egress"],
                        e["RuleAction"],
                        e.get("CidrBlock") or e.get("Ipv6CidrBlock"),
                    )
                    for e in acl["Entries"]
                ),
                "tags": _tags(acl.get("Tags")),
            }
            for acl in ec2.describe_network_acls()["NetworkAcls"]
        },
    )


@dataclass
class Observed:
    """The local account around one run: EC2 before the findings arrived and once the run settled, the
    mail of the ticket topic and of the approvals topic, and what the intake function answered."""

    before: Ec2Account | None = None
    after: Ec2Account | None = None
    tickets: list[dict[str, Any]] = field(default_factory=list)
    approvals: list[dict[str, Any]] = field(default_factory=list)
    intake_answers: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)

    @property
    def ec2(self) -> tuple[Ec2Account, Ec2Account]:
        """EC2 before and after, both read."""
        assert self.before is not None
        assert self.after is not None
        return self.before, self.after

    def ticket_of(self, case_id: str) -> dict[str, Any]:
        """The one ticket mail of the case."""
        (found,) = [mail for mail in self.tickets if _attribute(mail, "case_id") == case_id]
        return found

    def approvals_of(self, case_id: str) -> list[dict[str, Any]]:
        """The approval requests naming the case."""
        return [mail for mail in self.approvals if f"Case: {case_id}" in mail["Message"]]


def _attribute(mail: dict[str, Any], name: str) -> str | None:
    value = mail.get("MessageAttributes", {}).get(name, {})
    return str(value["Value"]) if "Value" in value else None


Prepare = Callable[[LocalAws, Observed], None]


class _ObservedStack(LocalAws):
    """The runner's local AWS, set up by the test once started and read before it stops."""

    def __init__(self, observed: Observed, prepare: Prepare | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._observed = observed
        self._prepare = prepare
        self._inboxes: dict[str, str] = {}

    def start(self) -> None:
        super().start()
        self._inboxes = {topic: _subscribe(self, topic) for topic in ("TicketTopic", "ApprovalTopic")}
        if self._prepare is not None:
            self._prepare(self, self._observed)
        self._observed.before = read_ec2(self)

    def stop(self) -> None:
        try:
            if self._inboxes:
                self._observed.after = read_ec2(self)
                self._observed.tickets = _received(self, self._inboxes["TicketTopic"])
                self._observed.approvals = _received(self, self._inboxes["ApprovalTopic"])
        finally:
            super().stop()


def _subscribe(aws: LocalAws, topic: str) -> str:
    """A mailbox (a queue) subscribed to the topic, as a person's e-mail address would be."""
    sqs = aws.client("sqs")
    url = str(sqs.create_queue(QueueName=f"inbox-{topic}")["QueueUrl"])
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    aws.client("sns").subscribe(TopicArn=aws.ref(topic), Protocol="sqs", Endpoint=arn)
    return url


def _received(aws: LocalAws, inbox: str) -> list[dict[str, Any]]:
    """Every notification the mailbox holds: SNS's envelope with Subject and Message."""
    sqs = aws.client("sqs")
    found: list[dict[str, Any]] = []
    while True:
        messages = sqs.receive_message(QueueUrl=inbox, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            return found
        for message in messages:
            found.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=inbox, ReceiptHandle=message["ReceiptHandle"])


def vtriage_run(
    files: list[str],
    *,
    prepare: Prepare | None = None,
    parameters: dict[str, str] | None = None,
    environment: dict[str, str] | None = None,
) -> tuple[dict[str, Any], Observed]:
    """`vtriage run --json --parameter-overrides DryRun=false [PARAMETERS] FILES`, as a document, with the
    local account observed around it."""
    observed = Observed()
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("VT_API_KEY", raising=False)
        for name, value in (environment or {}).items():
            patch.setenv(name, value)
        patch.setattr(runner, "LocalAws", lambda **kwargs: _ObservedStack(observed, prepare, **kwargs))
        document = run_files(
            [ADVERSARIAL / name for name in files],
            VirusTotalSource(recordings=bundled_recordings()),
            io.StringIO(),
            parameters={"DryRun": "false", **(parameters or {})},
        )
    return document, observed


def seed(aws: LocalAws, *instances: Resource) -> None:
    """The instances, each in its own VPC with its own interface and address, before any finding."""
    mirrored = seed_instances(aws.client("ec2"), instances)
    assert mirrored.left_out == []
    assert sorted(mirrored.created) == sorted(instance.id for instance in instances)


def opt_in_network_acls(aws: LocalAws, vpc_id: str) -> None:
    """The team lets vtriage write deny entries in the VPC's network ACLs."""
    ec2 = aws.client("ec2")
    acls = ec2.describe_network_acls(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["NetworkAcls"]
    ec2.create_tags(Resources=[acl["NetworkAclId"] for acl in acls], Tags=[NACL_OPT_IN])


def cases_by_file(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The run's cases by the file they came in."""
    return {case["message_id"]: case for case in document["cases"]}


def statuses(case: dict[str, Any]) -> dict[str, str]:
    """Each action's status, by type."""
    return {action["type"]: action["status"] for action in case["actions"]}


def action(case: dict[str, Any], action_type: str) -> dict[str, Any]:
    """The case's one action of this type."""
    found: list[dict[str, Any]] = [a for a in case["actions"] if a["type"] == action_type]
    assert len(found) == 1, case["actions"]
    return found[0]


def lines_of(mail: dict[str, Any]) -> list[str]:
    """The mail's lines as a reader sees them: a lone CR breaks a line in most readers too."""
    return re.split(r"\r\n|\r|\n", str(mail["Message"]))


# ---------------------------------------------------------------- 1. another account, another Region


def test_findings_naming_another_account_or_region_change_nothing_in_the_local_account() -> None:
    # Given the local instance the genuine finding names, in its VPC, with the network ACL opted in
    def prepare(aws: LocalAws, _: Observed) -> None:
        seed(aws, INSTANCE)
        opt_in_network_acls(aws, str(INSTANCE.vpc_id))

    # When the genuine finding, forged to name account 999999999999, Region eu-west-3 or both, and a
    # Security Hub finding imported as account 999999999999 on the same instance, run for real on a
    # deployment that acts in its own Region only (ActRegions; every Region by default)
    forged = [OTHER_ACCOUNT, OTHER_REGION, OTHER_ACCOUNT_AND_REGION, IMPORTED_OTHER_ACCOUNT]
    document, observed = vtriage_run(forged, prepare=prepare, parameters={"ActRegions": "us-east-1"})

    # Then nothing changed anywhere in the local account: groups, interfaces, tags, snapshots, NACLs
    before, after = observed.ec2
    assert after == before
    # And each is a case of its own, malicious (VirusTotal flags its domain), with no action, ticketed
    cases = cases_by_file(document)
    assert sorted(cases) == sorted(forged)
    named = {
        IMPORTED_OTHER_ACCOUNT: ["names account '999999999999'"],
        OTHER_ACCOUNT: ["names account '999999999999'"],
        OTHER_REGION: ["names Region 'eu-west-3'"],
        OTHER_ACCOUNT_AND_REGION: ["names account '999999999999'", "names Region 'eu-west-3'"],
    }
    for name, case in cases.items():
        assert case["verdict"] == "malicious", name
        assert case["actions"] == [], name
        assert (case["branch"], case["status"], case["error"]) == ("ticket", "TICKETED", None), name
        assert case["provenance"]["channel"] == "detector"
        for expected in named[name]:
            assert any(expected in reason for reason in case["not_actionable"]), (name, expected)
        # And its ticket says why, on its labelled line
        lines = lines_of(observed.ticket_of(case["case_id"]))
        for expected in named[name]:
            assert any(
                line.strip().startswith("Not acted on: the finding") and expected in line for line in lines
            ), (name, expected)
    assert document["failures"] == []


def test_an_imported_finding_naming_an_instance_of_another_account_changes_nothing_here() -> None:
    # Given the local instance
    def prepare(aws: LocalAws, _: Observed) -> None:
        seed(aws, INSTANCE)

    # When a Security Hub finding of this account and Region names it in an ARN of account 999999999999,
    # Region eu-west-3 (and `Resources[].Region` eu-west-3), run for real
    document, observed = vtriage_run([FOREIGN_INSTANCE_ARN], prepare=prepare)

    # Then nothing changed in the local account
    before, after = observed.ec2
    assert after == before
    # And the finding is a malicious case, with no action done, ticketed with the resource's place
    [case] = document["cases"]
    assert case["verdict"] == "malicious"
    assert not any(found["status"] == "done" for found in case["actions"]), case["actions"]
    assert case["ticket"] is not None
    reasons = " ".join(case["not_actionable"] + [found["detail"] for found in case["actions"]])
    assert "999999999999" in reasons
    assert "eu-west-3" in reasons


# ---------------------------------------------------------------- 2. the instance named with another VPC


def test_a_local_instance_named_with_another_vpcs_interface_isolates_only_its_own_interfaces() -> None:
    # Given the local instance in its VPC and a bystander in another VPC, the network ACLs of both opted
    # in, and NACL blocking on (rule numbers 1-18; IP_BLOCK_METHOD=nacl, which the template cannot set)
    def prepare(aws: LocalAws, _: Observed) -> None:
        seed(aws, INSTANCE, BYSTANDER)
        for resource in (INSTANCE, BYSTANDER):
            opt_in_network_acls(aws, str(resource.vpc_id))

    # When a C&C finding names the local instance with the bystander's VPC, interface and address, and a
    # remote address VirusTotal flags
    document, observed = vtriage_run(
        [OTHER_VPC],
        prepare=prepare,
        parameters={"NaclRuleNumberMin": "1", "NaclRuleNumberMax": "18"},
        environment={"IP_BLOCK_METHOD": "nacl"},
    )

    # Then the instance is isolated through its own interface, in its own VPC's quarantine group
    [case] = document["cases"]
    assert statuses(case) == {
        "snapshot_volumes": "done",
        "tag_instance": "done",
        "isolate_instance": "done",
        "block_ip_nacl": "done",
    }
    before, after = observed.ec2
    quarantine = after.quarantine_group(str(INSTANCE.vpc_id))
    assert after.groups_of(INSTANCE.network_interface_ids[0]) == [quarantine]
    # And nothing of the bystander or of its VPC changed: its interface, tags, snapshots, no group made
    # there, its network ACL's entries and tags
    assert after.of_instance(BYSTANDER) == before.of_instance(BYSTANDER)
    assert [g for g in after.security_groups.values() if g["vpc"] == BYSTANDER.vpc_id] == [
        g for g in before.security_groups.values() if g["vpc"] == BYSTANDER.vpc_id
    ]
    assert after.acls_of(str(BYSTANDER.vpc_id)) == before.acls_of(str(BYSTANDER.vpc_id))
    # And the address is denied both ways in the instance's own VPC's network ACL, which the detail names
    [(acl_id, acl)] = after.acls_of(str(INSTANCE.vpc_id)).items()
    denies = [entry for entry in acl["entries"] if entry[2] == "deny" and entry[3] == f"{MALICIOUS_IP}/32"]
    assert sorted(egress for _, egress, _, _ in denies) == [False, True]
    detail = action(case, "block_ip_nacl")["detail"]
    assert acl_id in detail
    assert not any(other in detail for other in before.acls_of(str(BYSTANDER.vpc_id)))
    assert BYSTANDER.network_interface_ids[0] not in action(case, "isolate_instance")["detail"]


# ---------------------------------------------------------------- 3. a borrowed finding id and version


def test_a_benign_document_borrowing_the_genuine_findings_id_and_version_swallows_nothing() -> None:
    # Given the local instance
    def prepare(aws: LocalAws, _: Observed) -> None:
        seed(aws, INSTANCE)

    # When a benign real finding carrying the genuine finding's id and updatedAt arrives first, then the
    # genuine finding, then the genuine finding once more (a true redelivery), for real
    document, observed = vtriage_run([BORROWED_ID, GENUINE, GENUINE], prepare=prepare)

    # Then there are two cases under the one finding id: the genuine one is isolated
    cases = cases_by_file(document)
    assert sorted(cases) == sorted([BORROWED_ID, GENUINE])
    benign, genuine = cases[BORROWED_ID], cases[GENUINE]
    assert benign["alert_id"] == genuine["alert_id"]
    assert benign["case_id"] != genuine["case_id"]
    assert (genuine["verdict"], genuine["status"]) == ("malicious", "REMEDIATED")
    assert genuine["not_contained"] == NOTHING_UNCONTAINED
    assert statuses(genuine)["isolate_instance"] == "done"
    _, after = observed.ec2
    assert after.groups_of(INSTANCE.network_interface_ids[0]) == [
        after.quarantine_group(str(INSTANCE.vpc_id))
    ]
    assert benign["actions"] == []
    # And the genuine case names the benign one, in the run's document and in its ticket
    assert genuine["variant_case_ids"] == [benign["case_id"]]
    label = "Same finding id and version, other content: "
    assert label + benign["case_id"] in lines_of(observed.ticket_of(genuine["case_id"]))
    # And the redelivery stayed the genuine case's: one case, one snapshot, one ticket
    assert genuine["repeats"] == [
        {"alert_id": genuine["alert_id"], "message_id": f"{GENUINE} (2)", "same_finding": True}
    ]
    assert len(after.snapshots_of(INSTANCE.id)) == 1
    assert len([mail for mail in observed.tickets if _attribute(mail, "case_id") == genuine["case_id"]]) == 1
    assert document["failures"] == []


def test_the_benign_case_names_the_genuine_one_that_came_after_it() -> None:
    # Given the local instance
    def prepare(aws: LocalAws, _: Observed) -> None:
        seed(aws, INSTANCE)

    # When the benign document borrowing the genuine finding's id and version arrives, then the genuine
    # one, for real (the benign case's steps run while the genuine one is noted on it)
    document, _ = vtriage_run([BORROWED_ID, GENUINE], prepare=prepare)

    # Then the benign case names the genuine one: no step's save lost the note
    cases = cases_by_file(document)
    assert cases[BORROWED_ID]["variant_case_ids"] == [cases[GENUINE]["case_id"]]


# ---------------------------------------------------------------- 4 and 6. the control, and protection


@pytest.fixture(scope="module")
def control_run() -> tuple[dict[str, Any], Observed]:
    """The genuine finding on the local instance (given a second interface), and the same finding on a
    protected instance beside it, run for real."""

    def prepare(aws: LocalAws, _: Observed) -> None:
        seed(aws, INSTANCE, PROTECTED)
        ec2 = aws.client("ec2")
        attach_a_second_interface(ec2)
        ec2.create_tags(Resources=[PROTECTED.id], Tags=[{"Key": PROTECTED_TAG, "Value": "payments"}])

    return vtriage_run([GENUINE, GENUINE_ON_PROTECTED], prepare=prepare)


def test_the_genuine_finding_is_isolated_for_real_through_the_untracking_group(
    control_run: tuple[dict[str, Any], Observed],
) -> None:
    # Given the genuine C&C finding on the local instance with two interfaces, run with DryRun=false
    document, observed = control_run
    case = cases_by_file(document)[GENUINE]
    before, after = observed.ec2

    # Then its disks are kept, it is marked, and it is isolated; the domain block is skipped (no list
    # configured), which leaves the case remediated: nothing it could contain is left
    assert (case["verdict"], case["branch"], case["status"]) == ("malicious", "remediate", "REMEDIATED")
    assert case["not_contained"] == NOTHING_UNCONTAINED
    assert statuses(case) == {
        "snapshot_volumes": "done",
        "tag_instance": "done",
        "isolate_instance": "done",
        "block_domain_dns_firewall": "skipped",
    }
    # And both its interfaces are only in the quarantine group, which allows nothing either way
    quarantine = after.quarantine_group(str(INSTANCE.vpc_id))
    untracking = after.quarantine_group(str(INSTANCE.vpc_id), UNTRACKING_GROUP)
    interfaces = after.interfaces_of(INSTANCE.id)
    assert len(interfaces) == 2
    assert {after.interface_groups[eni][0] for eni in interfaces} == {quarantine}
    assert all(after.interface_groups[eni] == [quarantine] for eni in interfaces)
    assert after.security_groups[quarantine]["ingress"] == []
    assert after.security_groups[quarantine]["egress"] == []
    # And the untracking group it passed through allows all traffic both ways; both are vtriage's own
    for rules in (after.security_groups[untracking]["ingress"], after.security_groups[untracking]["egress"]):
        assert any(
            rule["IpProtocol"] == "-1" and {"CidrIp": "0.0.0.0/0"} in rule["IpRanges"] for rule in rules
        ), rules
    for group in (quarantine, untracking):
        assert after.security_groups[group]["tags"]["vtriage:purpose"] == "quarantine"
    # And the detail says the two steps and why: connections untracked, then cut
    detail = action(case, "isolate_instance")["detail"]
    assert re.search(
        rf"first to {UNTRACKING_GROUP} \({untracking}\), which allows all traffic so that the connections"
        rf" they carried became untracked, then to {QUARANTINE_GROUP} \({quarantine}\), which allows none:"
        r" the untracked connections were cut at once",
        detail,
    )
    assert all(eni.split("@")[0] in detail for eni in interfaces)
    # And the instance carries the case, a snapshot of its volume carries it too, and a ticket went out
    assert after.instance_tags[INSTANCE.id] == {
        "vtriage:case": case["case_id"],
        "vtriage:quarantined": "true",
    }
    [snapshot] = after.snapshots_of(INSTANCE.id).values()
    assert snapshot["tags"]["vtriage:case"] == case["case_id"]
    assert before.snapshots_of(INSTANCE.id) == {}
    assert observed.ticket_of(case["case_id"])["Subject"].startswith("[HIGH] malicious VT-")


def test_a_genuine_finding_on_a_protected_instance_changes_nothing_on_it(
    control_run: tuple[dict[str, Any], Observed],
) -> None:
    # Given the genuine C&C finding naming an instance that carries vtriage:protected, run for real
    document, observed = control_run
    case = cases_by_file(document)[GENUINE_ON_PROTECTED]
    before, after = observed.ec2

    # Then nothing changed on it: its interface's groups, its tags, no snapshot
    assert after.of_instance(PROTECTED) == before.of_instance(PROTECTED)
    assert after.snapshots_of(PROTECTED.id) == {}
    # And each of its actions says it was skipped for the protected tag, and a person gets the ticket
    for action_type in ("snapshot_volumes", "tag_instance", "isolate_instance"):
        found = action(case, action_type)
        assert found["status"] == "skipped", found
        assert PROTECTED_TAG in found["detail"], found
    assert case["ticket"] is not None
    assert observed.ticket_of(case["case_id"])["Subject"].startswith("[HIGH] malicious VT-")


def test_a_case_whose_isolation_is_skipped_says_first_it_is_not_contained_and_is_ticketed() -> None:
    # Given the local instance with a second network interface that carries the protected tag
    def prepare(aws: LocalAws, _: Observed) -> None:
        seed(aws, INSTANCE)
        ec2 = aws.client("ec2")
        second = attach_a_second_interface(ec2)
        ec2.create_tags(Resources=[second], Tags=[{"Key": "VTRIAGE:PROTECTED", "Value": ""}])

    # When the genuine C&C finding runs for real
    document, observed = vtriage_run([GENUINE], prepare=prepare)

    # Then its disks are kept and it is marked, but it is not isolated: it is still on the network
    [case] = document["cases"]
    assert statuses(case) == {
        "snapshot_volumes": "done",
        "tag_instance": "done",
        "isolate_instance": "skipped",
        "block_domain_dns_firewall": "skipped",
    }
    # And the case is ticketed, not remediated, saying first that the instance is not contained and why
    assert (case["branch"], case["status"]) == ("remediate", "TICKETED")
    isolation = f"isolate_instance {INSTANCE.id} skipped: not isolated: network interface "
    assert case["not_contained"][0].startswith(isolation)
    assert "carries the protected tag 'VTRIAGE:PROTECTED'" in case["not_contained"][0]
    # And its ticket says so right below its status, its headline too
    mail = lines_of(observed.ticket_of(case["case_id"]))
    status = mail.index("Status: TICKETED (branch: remediate)")
    assert mail[status + 1].startswith("Not contained: " + isolation)
    assert any(line.endswith("HIGH 8, MALICIOUS, NOT CONTAINED") for line in mail)
    # And the runner's report says so below the verdict and in its counts
    printed = io.StringIO()
    print_report(document, None, (), file=printed)
    text = printed.getvalue()
    assert f"malicious -> branch remediate, TICKETED\n   contained no: isolate_instance {INSTANCE.id}" in text
    assert "statuses: 1 TICKETED\n1 case(s) not contained" in text


def attach_a_second_interface(ec2: Any) -> str:
    """A second network interface on the local instance, in its first one's subnet and groups: its id."""
    primary = ec2.describe_network_interfaces(NetworkInterfaceIds=[INSTANCE.network_interface_ids[0]])
    [interface] = primary["NetworkInterfaces"]
    second: str = ec2.create_network_interface(
        SubnetId=interface["SubnetId"], Groups=[group["GroupId"] for group in interface["Groups"]]
    )["NetworkInterface"]["NetworkInterfaceId"]
    ec2.attach_network_interface(NetworkInterfaceId=second, InstanceId=INSTANCE.id, DeviceIndex=1)
    return second


# ---------------------------------------------------------------- 5 and 7. pushed alerts, injection


@pytest.fixture(scope="module")
def pushed_run() -> tuple[dict[str, Any], Observed]:
    """Alerts pushed through the intake function with a forged sender stamp in their headers (the C&C
    finding with a hostile title, the S3 scan result with a hostile 1 KB key), an SQS event disguised as
    a detector record, and a record put on the detector queue directly with a forged stamp in its
    message attributes; approvals wait one second (the template's minimum is 60) so that the run ends."""

    def push(aws: LocalAws, observed: Observed, name: str, body: str) -> None:
        request = function_url_request(body)
        # What a sender controls: its headers. The stamp comes from what Lambda signed, never from them.
        request["headers"].update(FORGED_STAMP)
        request["headers"]["x-vtriage-sender"] = FORGED_SENDER
        response = aws.invoke("IntakeFunction", request)
        observed.intake_answers[name] = (int(response["statusCode"]), json.loads(response["body"]))

    def prepare(aws: LocalAws, observed: Observed) -> None:
        seed(aws, INSTANCE)
        for name in (TITLE_INJECTION, S3_KEY_INJECTION):
            push(aws, observed, name, (ADVERSARIAL / name).read_text(encoding="utf-8"))
        disguised = {
            "Records": [
                {
                    "body": (ADVERSARIAL / GENUINE).read_text(encoding="utf-8"),
                    "eventSourceARN": aws.get_att("AlertQueue", "Arn"),
                    "messageAttributes": {
                        name: {"stringValue": value, "dataType": "String"}
                        for name, value in FORGED_STAMP.items()
                    },
                }
            ]
        }
        push(aws, observed, "disguised-sqs-event", json.dumps(disguised))
        aws.client("sqs").send_message(
            QueueUrl=aws.ref("AlertQueue"),
            MessageBody=(ADVERSARIAL / OTHER_ACCOUNT).read_text(encoding="utf-8"),
            MessageAttributes={
                name: {"DataType": "String", "StringValue": value} for name, value in FORGED_STAMP.items()
            },
        )

    return vtriage_run([], prepare=prepare, parameters={"ApprovalTimeoutSeconds": "1"})


def _pushed_case(document: dict[str, Any], observed: Observed, file: str) -> dict[str, Any]:
    """The case of the pushed file, by the case id the intake function answered with."""
    status, answer = observed.intake_answers[file]
    assert status == 202, answer
    [case_id] = answer["case_ids"]
    found: list[dict[str, Any]] = [case for case in document["cases"] if case["case_id"] == case_id]
    assert len(found) == 1, case_id
    return found[0]


def test_pushed_alerts_wait_for_a_person_and_a_forged_sender_stamp_is_never_believed(
    pushed_run: tuple[dict[str, Any], Observed],
) -> None:
    # Given alerts pushed through the intake URL by a signed sender whose headers claim to be GuardDuty,
    # and a record put on the detector queue with the same claim in its attributes (see pushed_run)
    document, observed = pushed_run

    # Then the intake queued each pushed alert stamped with the signed caller, not the headers' claim
    for name in (TITLE_INJECTION, S3_KEY_INJECTION):
        status, answer = observed.intake_answers[name]
        assert (status, answer["sender"]) == (202, SENDER), name
    # And an SQS event disguised as a detector record, stamp included, was refused and never queued
    status, answer = observed.intake_answers["disguised-sqs-event"]
    assert status == 400
    assert "SQS event" in answer["error"]
    genuine_id = json.loads((ADVERSARIAL / GENUINE).read_text(encoding="utf-8"))["detail"]["id"]
    assert not any(case["alert_id"] == genuine_id for case in document["cases"])

    # And the pushed C&C finding's actions each waited for a person, and were escalated when nobody came
    pushed = _pushed_case(document, observed, TITLE_INJECTION)
    assert pushed["provenance"] == {
        "channel": "intake",
        "sender": SENDER,
        "source_ip": "198.51.100.7",
        "user_agent": "forwarder/1.0",
    }
    assert pushed["verdict"] == "malicious"
    assert pushed["actions"]
    for found in pushed["actions"]:
        assert found["status"] == "pending_approval", found
        assert "escalated to the ticket" in found["detail"], found
    # And nothing changed on the instance it names, for real though the run was
    before, after = observed.ec2
    assert after.of_instance(INSTANCE) == before.of_instance(INSTANCE)
    # And each action's approval request went to the approvers alone, never to the ticket topic: a
    # ticket may link to the case's read-only page, never carry a link that decides
    assert len(observed.approvals_of(pushed["case_id"])) == len(pushed["actions"])
    decision_tokens = {
        token
        for mail in observed.approvals_of(pushed["case_id"])
        for token in re.findall(rf"\.on\.aws/?\?{TOKEN_PARAMETER}=([\w.-]+)", mail["Message"])
    }
    assert len(decision_tokens) == 2 * len(pushed["actions"])  # an approve and a reject link each
    for mail in observed.tickets:
        assert not any(token in mail["Message"] for token in decision_tokens)
        assert not any(line.startswith(("Approve:", "Reject:")) for line in lines_of(mail))
    # And the pushed S3 object's quarantine waited for a person too
    s3_case = _pushed_case(document, observed, S3_KEY_INJECTION)
    assert statuses(s3_case) == {"quarantine_object": "pending_approval"}
    assert len(observed.approvals_of(s3_case["case_id"])) == 1

    # And the record put on the detector queue with a forged stamp is the detector's, sender unknown:
    # the stamp is believed on the intake's own queue only, and named nowhere
    [stamped] = [case for case in document["cases"] if case["provenance"]["channel"] == "detector"]
    assert stamped["provenance"] == {
        "channel": "detector",
        "sender": None,
        "source_ip": None,
        "user_agent": None,
    }
    ticket = observed.ticket_of(stamped["case_id"])["Message"]
    assert "Sent through: the detector rules (EventBridge)" in ticket
    assert FORGED_SENDER not in json.dumps(document)
    assert FORGED_SENDER not in ticket


def test_a_pushed_alerts_waiting_actions_say_they_wait_because_it_was_pushed(
    pushed_run: tuple[dict[str, Any], Observed],
) -> None:
    # Given the C&C finding pushed through the intake URL (see pushed_run)
    document, observed = pushed_run

    # Then each of its actions says it waits for a person because the alert was pushed, never that a
    # playbook asked for it
    pushed = _pushed_case(document, observed, TITLE_INJECTION)
    assert pushed["actions"]
    for found in pushed["actions"]:
        assert "PushedAlertActions=approval" in found["detail"], found
        assert "the playbook asks for approval" not in found["detail"], found


# Where a sender's text breaks a line in the hostile title and S3 key: each piece must never start one.
def _pieces(file: str, *path: str) -> list[str]:
    value: Any = json.loads((ADVERSARIAL / file).read_text(encoding="utf-8"))
    for step in path:
        value = value[step]
    return [piece.strip() for piece in re.split(r"\r\n|\r|\n", str(value)) if len(piece.strip()) >= 3]


HOSTILE = ["https://evil", "\u202e", "\r"]


def _assert_escaped(mail: dict[str, Any], pieces: list[str]) -> None:
    """The mail SNS delivered: a subject SNS accepts, no hostile piece starting a line, nothing live."""
    subject = str(mail["Subject"])
    assert subject.isascii(), subject
    assert len(subject) <= 99, subject
    assert not any(ord(character) < 32 or ord(character) == 127 for character in subject), subject
    message = str(mail["Message"])
    for hostile in HOSTILE:
        assert hostile not in message, hostile
    for line in lines_of(mail):
        assert not any(line.strip().startswith(piece) for piece in pieces), line


def test_sender_text_is_escaped_on_its_labelled_line_behind_vtriages_own_links(
    pushed_run: tuple[dict[str, Any], Observed],
) -> None:
    document, observed = pushed_run  # see pushed_run
    title_pieces = _pieces(TITLE_INJECTION, "detail", "title")
    key_pieces = _pieces(S3_KEY_INJECTION, "detail", "s3ObjectDetails", "objectKey")

    # Given the C&C finding with a hostile title and the S3 scan result with a hostile 1 KB key, pushed
    titled = _pushed_case(document, observed, TITLE_INJECTION)
    keyed = _pushed_case(document, observed, S3_KEY_INJECTION)
    requests = observed.approvals_of(titled["case_id"]) + observed.approvals_of(keyed["case_id"])
    tickets = [observed.ticket_of(titled["case_id"]), observed.ticket_of(keyed["case_id"])]
    assert len(requests) == len(titled["actions"]) + 1

    # Then every approval request and ticket SNS delivered has a subject SNS accepts, and no line of the
    # sender's starts a line of its own, nor any link of the sender's is live
    for mail in requests + tickets:
        _assert_escaped(mail, title_pieces + key_pieces)
    # And each approval request opens with vtriage's header and its own two links, before any sender text
    for mail in requests:
        lines = lines_of(mail)
        assert lines[0].startswith("vtriage case report: approval needed: ")
        links = [index for index, line in enumerate(lines) if line.startswith(("Approve:", "Reject:"))]
        assert [lines[index].split()[0] for index in links] == ["Approve:", "Reject:"]
        assert all(re.fullmatch(r"(Approve|Reject):\s+https?://\S+\?token=\S+", lines[i]) for i in links)
        first_sender_line = min(
            index for index, line in enumerate(lines) if line.strip().startswith(("Title:", "Target:"))
        )
        assert max(links) < first_sender_line
    # And the hostile title is one labelled line, its breaks, links and override escaped
    [title_line] = [line for line in lines_of(tickets[0]) if line.startswith("Title: ")]
    assert title_line.startswith("Title: EC2 instance i-0a1b2c3d4e5f67890 is querying a known C&C domain ")
    assert "\\u202egpj.exe\\r\\nApprove: hxxps://evil.example/approve?token=forged\\r\\n" in title_line
    assert "{noformat}[code]<script>alert(document.cookie)</script>[/code]{noformat}\\n```\\n" in title_line
    # And the 1 KB key is one labelled line on the approval request, escaped and cut
    [keyed_request] = observed.approvals_of(keyed["case_id"])
    [target] = [line for line in lines_of(keyed_request) if line.startswith("Target: ")]
    assert target.startswith(
        "Target: s3://amzn-s3-demo-bucket/invoice.pdf\\r\\nApprove: hxxps://evil.example/approve?token=forged\\r\\n"
    )
    assert target.endswith("more characters]")
    assert keyed_request["Subject"].startswith(
        "vtriage approval needed: Quarantine the S3 object: s3://amzn-s3-demo-bucket/invoice.pdf\\r\\n"
    )


def _vendor_run(provider: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The C&C finding with a hostile title from the detector rules, for real, its ticket opened with
    the vendor (a fake on loopback); the run's document and the record the vendor created."""
    fake: FakeJira | FakeServiceNow = FakeJira() if provider == "jira" else FakeServiceNow()
    secret = (
        {"email": JIRA_EMAIL, "api_token": JIRA_TOKEN}
        if provider == "jira"
        else {"username": SN_USER, "password": SN_PASSWORD}
    )
    with LoopbackServer(fake) as server:
        fake.base_url = server.base_url
        vendor = (
            {"JiraBaseUrl": server.base_url, "JiraProjectKey": "SEC"}
            if provider == "jira"
            else {"ServiceNowBaseUrl": server.base_url}
        )

        def prepare(aws: LocalAws, _: Observed) -> None:
            seed(aws, INSTANCE)
            secrets = aws.client("secretsmanager")
            secrets.create_secret(Name="vtriage/tickets", SecretString=json.dumps(secret))

        document, _ = vtriage_run(
            [TITLE_INJECTION],
            prepare=prepare,
            parameters={"TicketProvider": provider, "TicketSecretName": "vtriage/tickets", **vendor},
        )
    records = fake.issues if isinstance(fake, FakeJira) else fake.incidents
    [record] = records.values()
    return document, record


def test_a_hostile_title_reaches_jira_as_code_on_one_line_with_no_link_of_the_senders() -> None:
    # Given the C&C finding whose title plants approval lines, Jira and ServiceNow markup, a fence, a
    # script, links and a right-to-left override, When it runs for real with tickets in Jira
    document, issue = _vendor_run("jira")
    [case] = document["cases"]
    assert (case["status"], case["ticket"]["provider"]) == ("REMEDIATED", "jira")
    assert case["not_contained"] == NOTHING_UNCONTAINED

    # Then the summary is one line, escaped and defanged
    summary = issue["summary"]
    assert "\n" not in summary
    assert "\r" not in summary
    assert len(summary) <= 255
    assert summary.startswith("[HIGH] malicious: EC2 instance i-0a1b2c3d4e5f67890 is querying a known C&C")
    # And the description's only links are vtriage's own (the case's read-only page on the approval
    # function's URL, the VirusTotal page), none of the sender's
    description = issue["description"]
    case_page, *others = adf_links(description)
    assert re.fullmatch(r"https://[0-9a-f]{32}\.lambda-url\.us-east-1\.on\.aws/?\?view=[\w.-]+", case_page)
    assert others == ["https://www.virustotal.com/gui/domain/tawuhoju.com"]
    assert "https://evil" not in json.dumps(issue)
    # And the title is one code-marked text (Jira renders no markup, link or macro in code)
    [title] = [code for code in adf_code(description) if code.startswith("EC2 instance i-0a1b2c3d4e5f67890")]
    assert "\\u202egpj.exe\\r\\nApprove: hxxps://evil.example/approve?token=forged\\r\\n{noformat}" in title
    # And no piece of the sender's text starts a line of the issue
    pieces = _pieces(TITLE_INJECTION, "detail", "title")
    for line in adf_text(description).splitlines():
        assert not any(line.strip().startswith(piece) for piece in pieces), line


def test_a_hostile_title_reaches_servicenow_with_its_code_tags_neutralised() -> None:
    # Given the same finding, When it runs for real with tickets in ServiceNow
    document, incident = _vendor_run("servicenow")
    [case] = document["cases"]
    assert (case["status"], case["ticket"]["provider"]) == ("REMEDIATED", "servicenow")
    assert case["not_contained"] == NOTHING_UNCONTAINED

    # Then no [code] tag of the sender's reaches the incident: ServiceNow would render what it holds
    texts = [incident["short_description"], incident["description"], *incident["work_notes_journal"]]
    for text in texts:
        assert "[code]" not in text.lower()
        assert "[/code]" not in text.lower()
        assert "https://evil" not in text
        assert "\u202e" not in text
        assert "\r" not in text
    # And the title is one labelled line, its tags written (code)...(/code), its breaks escaped
    [title] = [line for line in incident["description"].splitlines() if line.startswith("Title: ")]
    assert "\\r\\n{noformat}(code)<script>alert(document.cookie)</script>(/code){noformat}\\n" in title
    pieces = _pieces(TITLE_INJECTION, "detail", "title")
    for text in texts:
        for line in text.splitlines():
            assert not any(line.strip().startswith(piece) for piece in pieces), line
    assert "\n" not in incident["short_description"]


# ---------------------------------------------------------------- 8. what IAM holds, read from template.yaml

# tests/template/test_template.py already reads template.yaml for: the protected-tag Deny on every change
# (test_the_protected_tag_deny_covers_every_change_the_remediate_function_may_make), Null aws:TagKeys
# (test_tags_are_changed_only_by_name_and_never_the_ones_that_decide_access), S3 in this account on the
# named buckets (test_objects_move_only_between_the_named_buckets_of_this_account), no PutUserPolicy
# (test_users_are_contained_with_the_stacks_deny_all_policy_and_no_policy_is_ever_written) and no wildcard
# change without a condition (test_no_grant_changes_a_wildcard_resource_without_a_condition), and senders
# holding the intake URL alone, no sqs:SendMessage (test_the_intake_url_takes_only_iam_signed_requests).
# What follows adds what those do not read.


def _remediate_statements() -> list[dict[str, Any]]:
    """Every statement of the remediate function, both branches of each Fn::If, as written."""
    template = load_template()
    found = []
    for policy in template["Resources"]["RemediateFunction"]["Properties"]["Policies"]:
        for statement in policy.get("Statement", []):
            branches = statement["Fn::If"][1:] if set(statement) == {"Fn::If"} else [statement]
            found += [branch for branch in branches if isinstance(branch, dict) and "Effect" in branch]
    return found


def _remediate_allows() -> list[dict[str, Any]]:
    """Every Allow of the remediate function."""
    return [statement for statement in _remediate_statements() if statement["Effect"] == "Allow"]


def _remediate_statement(sid: str) -> dict[str, Any]:
    """The remediate function's statement of this Sid."""
    (found,) = [statement for statement in _remediate_statements() if statement.get("Sid") == sid]
    return found


def _actions(statement: dict[str, Any]) -> list[str]:
    actions = statement["Action"]
    return [actions] if isinstance(actions, str) else list(actions)


def _resources(statement: dict[str, Any]) -> list[str]:
    """The statement's resources as written; one the stack names (!Ref, !GetAtt) as `stack:<id>`."""
    resources = statement["Resource"]
    listed = resources if isinstance(resources, list) else [resources]
    written = []
    for resource in listed:
        if isinstance(resource, dict) and "Fn::Sub" in resource:
            written.append(str(resource["Fn::Sub"]))
        elif isinstance(resource, dict) and ("Ref" in resource or "Fn::GetAtt" in resource):
            named = resource.get("Ref") or resource["Fn::GetAtt"][0]
            written.append(f"stack:{named}")
        else:
            written.append(str(resource))
    return written


def test_security_group_rules_change_only_on_vtriages_quarantine_groups() -> None:
    # Given every grant of the remediate function that revokes or adds a rule, or moves an interface into
    # a security group
    rule_changes = {
        "ec2:RevokeSecurityGroupIngress",
        "ec2:RevokeSecurityGroupEgress",
        "ec2:AuthorizeSecurityGroupIngress",
        "ec2:AuthorizeSecurityGroupEgress",
    }
    granting = [s for s in _remediate_allows() if rule_changes & set(_actions(s))]
    moving = [
        s
        for s in _remediate_allows()
        if "ec2:ModifyNetworkInterfaceAttribute" in _actions(s)
        and any(":security-group/" in r for r in _resources(s))
    ]

    # Then each holds only for a group tagged as vtriage's quarantine group (a tag set only at creation)
    assert granting
    assert moving
    for statement in granting + moving:
        condition = statement["Condition"]["StringEquals"]
        assert condition["aws:ResourceTag/vtriage:purpose"] == "quarantine", statement["Sid"]
        assert all(":security-group/" in r for r in _resources(statement)), statement["Sid"]
    # And rules are added only to the untracking group, never to the closed one
    for statement in granting:
        adds = {"ec2:AuthorizeSecurityGroupIngress", "ec2:AuthorizeSecurityGroupEgress"}
        if adds & set(_actions(statement)):
            assert statement["Condition"]["StringLike"] == {"aws:ResourceTag/Name": "*-untracking"}
    # And no function may tag an existing group into one
    tag_guard = _remediate_statement("ExceptAtCreationNoTagThatDecidesAccess")
    assert tag_guard["Effect"] == "Deny"
    keys = set(tag_guard["Condition"]["ForAnyValue:StringEquals"]["aws:TagKeys"])
    assert {"vtriage:purpose", "Name"} <= keys


def test_network_acl_entries_change_only_where_the_team_opted_in() -> None:
    # Given every grant of the remediate function on network ACLs
    on_acls = [s for s in _remediate_allows() if any(":network-acl/" in r for r in _resources(s))]
    entry_actions = {"ec2:CreateNetworkAclEntry", "ec2:ReplaceNetworkAclEntry", "ec2:DeleteNetworkAclEntry"}

    # Then every one, entries and the rule cursor's tag alike, holds only on an ACL tagged
    # vtriage:nacl-block=allowed
    assert entry_actions <= {a for s in on_acls for a in _actions(s)}
    for statement in on_acls:
        assert statement["Condition"]["StringEquals"]["aws:ResourceTag/vtriage:nacl-block"] == "allowed"
    # And no grant reaches network ACL entries on any other resource
    for statement in _remediate_allows():
        if entry_actions & set(_actions(statement)):
            assert all(":network-acl/" in r for r in _resources(statement)), statement["Sid"]
    # And the function can never set or remove the opt-in itself
    decide = _remediate_statement("NeverTouchTheTagsThatDecideAccess")
    assert decide["Effect"] == "Deny"
    assert "vtriage:nacl-block" in decide["Condition"]["ForAnyValue:StringEquals"]["aws:TagKeys"]


# The pseudo parameters of a deployment in account 123456789012, us-east-1, and two member accounts.
_PSEUDO = {"AWS::Partition": "aws", "AWS::AccountId": "123456789012", "AWS::Region": "us-east-1"}
_MEMBERS = ("111122223333", "444455556666")
# How an EC2 grant names resources of every Region; NeverActOutsideActRegions must deny each such change
# outside ActRegions.
_EC2_ANY_REGION = "arn:${AWS::Partition}:ec2:*:"


def _assumable_roles(parameters: dict[str, str]) -> list[tuple[list[str], dict[str, Any]]]:
    """Each Allow of sts:AssumeRole of the remediate function once CloudFormation resolved it with these
    parameters (conditions chosen, intrinsics evaluated): its resources and its Condition block."""
    template = load_template()
    defaults = {name: str(spec.get("Default", "")) for name, spec in template["Parameters"].items()}
    values = _PSEUDO | defaults | parameters
    intrinsics = Intrinsics(
        template, values, ref=lambda name: values.get(name, f"stack:{name}"), get_att=lambda *_: "stack"
    )
    [policy] = template["Resources"]["RemediateFunction"]["Properties"]["Policies"]
    statements = intrinsics.resolve(policy["Statement"])
    return [
        ([s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"], s.get("Condition", {}))
        for s in statements
        if s["Effect"] == "Allow" and "sts:AssumeRole" in _actions(s)
    ]


def _allows(resources: list[str], condition: dict[str, Any], role_arn: str) -> bool:
    """Whether IAM lets a statement of these resources and this Condition block reach the role: a resource
    matching the ARN, and every condition (each operator, each key) holding for the role's account.
    Only the operators this test can read are accepted, so that a new one cannot pass unread."""
    account = role_arn.split(":")[4]
    context = {"aws:ResourceAccount": account}
    if not any(re.fullmatch(re.escape(r).replace(r"\*", ".*"), role_arn) for r in resources):
        return False
    for operator, keys in condition.items():
        assert operator == "StringEquals", f"a condition operator this test does not read: {operator}"
        for key, wanted in keys.items():
            assert key in context, f"a condition key this test does not read: {key}"
            if context[key] not in ([wanted] if isinstance(wanted, str) else wanted):
                return False
    return True


def test_every_change_the_remediate_function_may_make_is_bound_to_this_account_or_a_members_role() -> None:
    # Given every grant of the remediate function to change something
    template = load_template()
    changes = [
        s
        for s in _remediate_allows()
        if any(not a.partition(":")[2].startswith(("Describe", "Get", "List")) for a in _actions(s))
    ]
    any_region = {
        a for s in changes if any(r.startswith(_EC2_ANY_REGION) for r in _resources(s)) for a in _actions(s)
    }

    # Then each names resources of this account (for EC2, in any Region: a finding is acted on in its
    # own), or is held to this account by s3:ResourceAccount, or creates a snapshot (an ARN with no
    # account) tagged for forensics, or assumes a member account's role (read below)
    assert changes
    for statement in changes:
        sid = statement["Sid"]
        if _actions(statement) == ["sts:AssumeRole"]:
            continue
        for resource in _resources(statement):
            if resource.startswith("arn:${AWS::Partition}:s3:::"):
                condition = statement["Condition"]["StringEquals"]
                assert condition["s3:ResourceAccount"] == {"Ref": "AWS::AccountId"}, sid
            elif resource.startswith("arn:${AWS::Partition}:ec2:*::snapshot/"):
                created = statement["Condition"]["StringEquals"]
                forensics = created.get("aws:RequestTag/vtriage:purpose") == "forensics"
                assert forensics or created.get("ec2:CreateAction") == "CreateSnapshot", sid
            elif resource.startswith("arn:${AWS::Partition}:ec2:"):
                assert resource.startswith(_EC2_ANY_REGION + "${AWS::AccountId}:"), sid
            elif resource.startswith("arn:${AWS::Partition}:iam::"):
                assert resource.startswith("arn:${AWS::Partition}:iam::${AWS::AccountId}:"), sid
            elif resource.startswith("stack:"):
                assert resource.removeprefix("stack:") in template["Resources"], sid
            else:
                assert ":${AWS::AccountId}:" in resource, (sid, resource)
    # And every EC2 change of any Region is denied outside ActRegions when ActRegions is set
    assert any_region
    deny = _remediate_statement("NeverActOutsideActRegions")
    assert deny["Effect"] == "Deny"
    assert any_region <= set(_actions(deny)), any_region - set(_actions(deny))
    assert deny["Condition"] == {
        "StringNotEquals": {"aws:RequestedRegion": {"Fn::Split": [",", {"Ref": "ActRegions"}]}}
    }
    # And with no member listed, no role of any account may be assumed
    assert _assumable_roles({"MemberAccountIds": ""}) == []
    # And with members listed, exactly their MemberRoleName role may be: not another role of theirs, nor
    # that role in this account or in an account not listed
    for members in [_MEMBERS[:1], _MEMBERS]:
        grants = _assumable_roles({"MemberAccountIds": ",".join(members), "MemberRoleName": "vtriage-member"})
        assert grants

        def assumable(arn: str, grants: list[tuple[list[str], dict[str, Any]]] = grants) -> bool:
            return any(_allows(resources, condition, arn) for resources, condition in grants)

        for member in members:
            assert assumable(f"arn:aws:iam::{member}:role/vtriage-member"), member
            assert not assumable(f"arn:aws:iam::{member}:role/OrganizationAccountAccessRole"), member
            assert not assumable(f"arn:aws:iam::{member}:role/vtriage-member-admin"), member
        for other in ["123456789012", "999999999999", *(m for m in _MEMBERS if m not in members)]:
            assert not assumable(f"arn:aws:iam::{other}:role/vtriage-member"), other


def test_no_object_is_read_moved_or_written_under_aws_logs() -> None:
    # Given every S3 action the remediate function is granted
    granted = {a for s in _remediate_allows() for a in _actions(s) if a.startswith("s3:")}

    # Then a Deny refuses each read of an object's bytes and each change under AWSLogs/ in any bucket,
    # where AWS services deliver logs (tags and a bucket's settings are read only to find the protected tag)
    deny = _remediate_statement("NeverTouchAwsLogs")
    assert deny["Effect"] == "Deny"
    assert _resources(deny) == ["arn:${AWS::Partition}:s3:::*/AWSLogs/*"]
    assert granted
    settings = {"s3:GetObjectTagging", "s3:GetBucketTagging", "s3:GetBucketVersioning"}
    assert granted - settings <= set(_actions(deny))


# ---------------------------------------------------------------- a custom product's import

CUSTOM_PRODUCT = "synthetic-forged-securityhub-custom-product.json"


def test_a_finding_imported_under_a_custom_product_changes_nothing_until_a_person_approves() -> None:
    # Given the local instance
    def prepare(aws: LocalAws, _: Observed) -> None:
        seed(aws, INSTANCE)

    # When a Security Hub finding of this account and Region, on that instance, imported under the
    # account's own custom product (as any holder of BatchImportFindings can), runs for real
    document, observed = vtriage_run([CUSTOM_PRODUCT], prepare=prepare)

    # Then nothing changed in the local account
    before, after = observed.ec2
    assert after == before
    # And the case's actions each wait for a person, as a pushed alert's do, naming the product
    [case] = document["cases"]
    assert case["verdict"] == "malicious"
    assert case["provenance"]["channel"] == "detector"
    assert case["actions"]
    assert set(statuses(case).values()) == {"pending_approval"}, case["actions"]
    product = "arn:aws:securityhub:us-east-1:123456789012:product/123456789012/default"
    assert all(f"under the product '{product}'" in found["detail"] for found in case["actions"])
