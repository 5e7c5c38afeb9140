"""`vtriage run` shows an organisation's whole path with no AWS account: a member account's finding in
another Region, run as a new user runs it (`vtriage run --json --parameter-overrides DryRun=false
--parameter-overrides MemberAccountIds=<id>`), is acted on in that account and Region; listed nowhere,
or with another account listed, it changes nothing.

The runner mirrors the instance the finding names into moto under the finding's own account and Region
(moto keeps one backend per account, reached through an assumed role's credentials), and deploys
member-role.yaml in each listed account, so that the remediate function takes its real path: STS
AssumeRole into the member role, then EC2 in the finding's Region. `_ObservedStack` reads every place
once the run settled, before the local AWS stops; it replaces nothing the pipeline runs.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import vtriage_local.runner as runner
from tests.functional.conftest import EVENTS
from vtriage_cli.main import main as vtriage
from vtriage_local.seed import SEED_GROUP_NAME
from vtriage_local.stack import ACCOUNT_ID, REGION, LocalAws

pytestmark = pytest.mark.functional

# A member account's GuardDuty finding in eu-west-1 (events/PROVENANCE.md): instance i-0d4e8a1c7b2f93e56
# querying a domain VirusTotal's recording flags.
MEMBER_FINDING = EVENTS / "synthetic-guardduty-member-account-c2-dns.json"
# The same finding as Security Hub's cross-Region aggregation delivers it to the administrator account's
# home Region (us-east-1, the deployment's): a Security Hub event naming the finding's account and Region.
SECURITY_HUB_COPY = EVENTS / "synthetic-securityhub-guardduty-member-account-c2-dns.json"
MEMBER = "111122223333"
ELSEWHERE = "eu-west-1"
INSTANCE = "i-0d4e8a1c7b2f93e56"
INTERFACE = "eni-0c3b5d7e9f1a2b468"
ANOTHER_MEMBER = "444455556666"
MEMBER_ROLE = "vtriage-member"
QUARANTINE_GROUP = "vtriage-quarantine"
INSTANCE_ACTIONS = {"snapshot_volumes", "tag_instance", "isolate_instance"}


@dataclass(frozen=True)
class Ec2Place:
    """What a person reads in the EC2 console of one account and Region: the finding's instance (its
    tags, its interfaces and their groups, the snapshots of its volumes) and vtriage's quarantine groups."""

    instance_tags: dict[str, str] | None
    interface_groups: list[str]
    snapshot_tags: list[dict[str, str]]
    quarantine_groups: list[str]
    interface_ids: tuple[str, ...] = ()


def read_place(aws: LocalAws, account: str, region: str) -> Ec2Place:
    """The account's EC2 in the Region."""
    ec2 = aws.client("ec2", region, account)
    instances = [
        instance
        for reservation in ec2.describe_instances()["Reservations"]
        for instance in reservation["Instances"]
        if instance["InstanceId"] == INSTANCE
    ]
    volumes = {
        mapping["Ebs"]["VolumeId"]
        for instance in instances
        for mapping in instance.get("BlockDeviceMappings", [])
        if "Ebs" in mapping
    }
    # The instance's own interfaces: GuardDuty's finding names its interface (INTERFACE), Security Hub's
    # copy names none, so the one mirrored for it has an id of moto's.
    attached = {
        interface["NetworkInterfaceId"]
        for instance in instances
        for interface in instance.get("NetworkInterfaces", [])
    }
    interfaces = [
        interface
        for interface in ec2.describe_network_interfaces()["NetworkInterfaces"]
        if interface["NetworkInterfaceId"] in attached
    ]
    return Ec2Place(
        instance_tags={tag["Key"]: tag["Value"] for tag in instances[0].get("Tags", [])}
        if instances
        else None,
        interface_groups=sorted(
            group["GroupName"] for interface in interfaces for group in interface["Groups"]
        ),
        snapshot_tags=[
            {tag["Key"]: tag["Value"] for tag in snapshot.get("Tags", [])}
            for snapshot in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]
            if snapshot["VolumeId"] in volumes
        ],
        quarantine_groups=sorted(
            group["GroupName"]
            for group in ec2.describe_security_groups()["SecurityGroups"]
            if group["GroupName"].startswith(QUARANTINE_GROUP)
        ),
        interface_ids=tuple(sorted(attached)),
    )


@dataclass
class Observed:
    """Each account's EC2 in each Region once the run settled, and the roles of each account."""

    places: dict[tuple[str, str], Ec2Place]
    roles: dict[str, dict[str, Any]]


class _ObservedStack(LocalAws):
    """The runner's local AWS, read before it stops."""

    def __init__(self, observed: dict[str, Observed], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._observed = observed

    def stop(self) -> None:
        try:
            places = [(MEMBER, ELSEWHERE), (ACCOUNT_ID, ELSEWHERE), (ACCOUNT_ID, REGION)]
            self._observed["after"] = Observed(
                places={place: read_place(self, *place) for place in places},
                roles={
                    account: {
                        role["RoleName"]: role
                        for role in self.client("iam", account=account).list_roles()["Roles"]
                    }
                    for account in (MEMBER, ANOTHER_MEMBER)
                },
            )
        finally:
            super().stop()


@contextlib.contextmanager
def observed_stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Observed]]:
    """The runner's local AWS replaced by one read before it stops, VirusTotal replayed."""
    observed: dict[str, Observed] = {}
    monkeypatch.delenv("VT_API_KEY", raising=False)
    monkeypatch.setattr(runner, "LocalAws", lambda **kwargs: _ObservedStack(observed, **kwargs))
    yield observed


def vtriage_run(
    monkeypatch: pytest.MonkeyPatch, *overrides: str, finding: Path = MEMBER_FINDING
) -> tuple[int, dict[str, Any], Observed]:
    """`vtriage run --json --parameter-overrides DryRun=false [--parameter-overrides X=Y ...]` on the
    member account's finding (GuardDuty's, or another copy of it): its exit status, its document, and the
    local AWS as it was at the end."""
    arguments = ["run", "--json", "--verbose", "--parameter-overrides", "DryRun=false"]
    for override in overrides:
        arguments.extend(["--parameter-overrides", override])
    stdout = io.StringIO()
    with (
        observed_stack(monkeypatch) as observed,
        contextlib.redirect_stdout(stdout),
        contextlib.redirect_stderr(io.StringIO()),
    ):
        status = vtriage([*arguments, str(finding)])
    return status, json.loads(stdout.getvalue()), observed["after"]


def test_a_member_accounts_finding_in_another_region_is_acted_on_there_through_the_member_role(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given the member account's finding of an instance in eu-west-1, and the deployment (us-east-1)
    # listing that account
    # When a new user runs it for real
    status, document, observed = vtriage_run(monkeypatch, f"MemberAccountIds={MEMBER}")

    # Then it is one malicious case of that account and Region, remediated
    assert status == 0
    assert document["failures"] == []
    [case] = document["cases"]
    assert (case["account"], case["region"]) == (MEMBER, ELSEWHERE)
    assert case["verdict"] == "malicious"
    # The domain block is skipped (no DNS Firewall domain list): the case is ticketed, not remediated
    assert (case["branch"], case["status"], case["error"]) == ("remediate", "TICKETED", None)
    assert [gap.split(" ", 1)[0] for gap in case["not_contained"]] == ["block_domain_dns_firewall"]
    assert case["not_actionable"] == []
    # And each instance action was done, saying it ran in the member account, in eu-west-1
    done = {action["type"]: action for action in case["actions"] if action["status"] == "done"}
    assert set(done) == INSTANCE_ACTIONS, case["actions"]
    for action in done.values():
        assert action["target"] == INSTANCE
        assert (action["account"], action["region"]) == (MEMBER, ELSEWHERE), action
    # And the member account's instance in eu-west-1 is isolated, tagged with the case and snapshotted
    there = observed.places[(MEMBER, ELSEWHERE)]
    assert there.interface_ids == (INTERFACE,)
    assert there.interface_groups == [QUARANTINE_GROUP]
    assert there.instance_tags is not None
    assert there.instance_tags["vtriage:case"] == case["case_id"]
    assert there.instance_tags["vtriage:quarantined"] == "true"
    assert there.snapshot_tags
    assert all(tags.get("vtriage:case") == case["case_id"] for tags in there.snapshot_tags)
    # And nothing happened in the deployment's own account, in either Region
    for place in [(ACCOUNT_ID, ELSEWHERE), (ACCOUNT_ID, REGION)]:
        assert observed.places[place] == Ec2Place(None, [], [], []), place
    # And the member role the actions went through is member-role.yaml's, trusting the deployment's
    # remediate function alone, with the external id it sends
    role = observed.roles[MEMBER][MEMBER_ROLE]
    [trust] = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"]["AWS"].startswith(f"arn:aws:iam::{ACCOUNT_ID}:role/")
    assert trust["Condition"]["StringEquals"]["sts:ExternalId"] == f"vtriage-{ACCOUNT_ID}"
    assert observed.roles[ANOTHER_MEMBER] == {}


@pytest.mark.parametrize(
    "overrides",
    [(), (f"MemberAccountIds={ANOTHER_MEMBER}",)],
    ids=["no member listed", "another account listed"],
)
def test_a_finding_of_an_account_that_is_not_listed_changes_nothing_and_is_ticketed(
    monkeypatch: pytest.MonkeyPatch, overrides: tuple[str, ...]
) -> None:
    # Given the same finding, its account not among MemberAccountIds
    # When a new user runs it for real
    status, document, observed = vtriage_run(monkeypatch, *overrides)

    # Then it is a malicious case of its own account and Region, with no action, ticketed with the reason
    assert status == 0
    [case] = document["cases"]
    assert (case["account"], case["region"]) == (MEMBER, ELSEWHERE)
    assert case["verdict"] == "malicious"
    assert case["actions"] == []
    assert (case["branch"], case["status"], case["error"]) == ("ticket", "TICKETED", None)
    assert case["ticket"] is not None
    assert any(f"names account '{MEMBER}'" in reason for reason in case["not_actionable"])
    # And the member account's instance, mirrored where the finding says it lives, is as it was
    there = observed.places[(MEMBER, ELSEWHERE)]
    assert there.instance_tags == {}
    assert there.interface_groups == [SEED_GROUP_NAME]
    assert (there.snapshot_tags, there.quarantine_groups) == ([], [])
    # And nothing happened in the deployment's own account either
    for place in [(ACCOUNT_ID, ELSEWHERE), (ACCOUNT_ID, REGION)]:
        assert observed.places[place] == Ec2Place(None, [], [], []), place
    # And no role was made in the finding's account: only a listed account gets the member role
    assert MEMBER_ROLE not in observed.roles[MEMBER]
    listed = {override.split("=", 1)[1] for override in overrides}
    assert (MEMBER_ROLE in observed.roles[ANOTHER_MEMBER]) == (ANOTHER_MEMBER in listed)


def test_security_hubs_copy_of_a_members_finding_is_acted_on_in_its_region_when_read_through_security_hub(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given the member account's GuardDuty finding in eu-west-1 as Security Hub's aggregation delivers it
    # to the deployment's Region, and a deployment listing that account that reads GuardDuty findings
    # through Security Hub
    # When a new user runs it for real
    status, document, observed = vtriage_run(
        monkeypatch,
        f"MemberAccountIds={MEMBER}",
        "GuardDutyFindingsVia=securityhub",
        finding=SECURITY_HUB_COPY,
    )

    # Then it is one malicious case of the finding's own account and Region, remediated
    assert status == 0
    assert (document["failures"], document["ignored"]) == ([], [])
    [case] = document["cases"]
    assert (case["account"], case["region"]) == (MEMBER, ELSEWHERE)
    assert case["verdict"] == "malicious"
    # The domain block is skipped (no DNS Firewall domain list): the case is ticketed, not remediated
    assert (case["branch"], case["status"], case["error"]) == ("remediate", "TICKETED", None)
    assert [gap.split(" ", 1)[0] for gap in case["not_contained"]] == ["block_domain_dns_firewall"]
    # And each instance action was done in the member account, in eu-west-1, saying so
    done = {action["type"]: action for action in case["actions"] if action["status"] == "done"}
    assert set(done) == INSTANCE_ACTIONS, case["actions"]
    for action in done.values():
        assert action["target"] == INSTANCE
        assert (action["account"], action["region"]) == (MEMBER, ELSEWHERE), action
    # And the member's instance there is isolated and snapshotted, nothing changed in the deployment's own
    there = observed.places[(MEMBER, ELSEWHERE)]
    assert there.interface_groups == [QUARANTINE_GROUP]
    assert there.snapshot_tags
    for place in [(ACCOUNT_ID, ELSEWHERE), (ACCOUNT_ID, REGION)]:
        assert observed.places[place] == Ec2Place(None, [], [], []), place


def test_security_hubs_copy_of_a_guardduty_finding_makes_no_case_when_guardduty_delivers_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given the same copy, and a deployment listing the member that reads GuardDuty's own events (the
    # default, where the copy would be a second case of the same finding)
    # When a new user runs it for real
    status, document, observed = vtriage_run(
        monkeypatch, f"MemberAccountIds={MEMBER}", finding=SECURITY_HUB_COPY
    )

    # Then it is acknowledged without a case, saying why, and nothing changed anywhere
    assert status == 0
    assert document["cases"] == []
    [ignored] = document["ignored"]
    assert "GuardDuty finding seen through Security Hub" in ignored["reason"]
    for place in [(MEMBER, ELSEWHERE), (ACCOUNT_ID, ELSEWHERE), (ACCOUNT_ID, REGION)]:
        assert observed.places[place] == Ec2Place(None, [], [], []), place


def test_a_member_listed_twice_is_one_member_acted_on_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the deployment listing the member account twice, as a person may type it
    # When a new user runs the member's finding for real
    status, document, observed = vtriage_run(monkeypatch, f"MemberAccountIds={MEMBER},{MEMBER}")

    # Then the run finishes (no traceback: one member role deployed in the account) and the member's
    # instance is isolated there, once
    assert status == 0
    [case] = document["cases"]
    # The domain block is skipped (no DNS Firewall domain list): the case is ticketed, not remediated
    assert (case["branch"], case["status"]) == ("remediate", "TICKETED")
    assert [gap.split(" ", 1)[0] for gap in case["not_contained"]] == ["block_domain_dns_firewall"]
    assert MEMBER_ROLE in observed.roles[MEMBER]
    assert observed.places[(MEMBER, ELSEWHERE)].interface_groups == [QUARANTINE_GROUP]


@pytest.mark.parametrize(
    ("override", "said"),
    [
        (
            "MemberAccountIds=12345",
            "vtriage run: --parameter-overrides: MemberAccountIds (MEMBER_ACCOUNT_IDS): '12345' must be "
            "12-digit account ids separated by commas, without spaces",
        ),
        (
            "ActRegions=eu-west-1, us-east-1",
            "vtriage run: --parameter-overrides: ActRegions (ACT_REGIONS): 'eu-west-1, us-east-1' must be "
            "Region names (such as eu-west-1) separated by commas, without spaces",
        ),
    ],
)
def test_a_bad_organisation_parameter_is_one_line_naming_the_parameter(
    monkeypatch: pytest.MonkeyPatch, override: str, said: str
) -> None:
    # Given a value CloudFormation would refuse, as a person types it
    # When a new user runs a finding with it
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        status = vtriage(["run", "--json", "--parameter-overrides", override, str(MEMBER_FINDING)])

    # Then it is a usage error, one line naming the parameter and what it must be, before anything ran
    assert status == 1
    [line] = [line for line in stderr.getvalue().splitlines() if line.startswith("vtriage run:")]
    assert line == said
    assert "Traceback" not in stderr.getvalue()


def test_listing_the_own_account_is_said_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the deployment listing its own account and the member
    # When a new user runs the member's finding
    monkeypatch.delenv("VT_API_KEY", raising=False)
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        status = vtriage(
            [
                "run",
                "--json",
                "--parameter-overrides",
                f"MemberAccountIds={ACCOUNT_ID},{MEMBER}",
                str(MEMBER_FINDING),
            ]
        )

    # Then the run says once that the own account stays the own account
    assert status == 0
    said = [line for line in stderr.getvalue().splitlines() if "lists this deployment's own account" in line]
    assert len(said) == 1
    assert (
        f"MemberAccountIds lists this deployment's own account {ACCOUNT_ID}: it is acted in as the own"
        in said[0]
    )
