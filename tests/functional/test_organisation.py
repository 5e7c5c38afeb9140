"""One deployment acting across an organisation, on moto: the state machine, unchanged, runs the real
remediate and ticket functions of a stack deployed with `MemberAccountIds`; member accounts are moto's
other accounts (moto keeps one backend per account and selects it by the credentials of an assumed role),
so the remediate function reaches a member's instance exactly as in AWS, through STS AssumeRole.

What a person checks: the instance of the finding's account and Region is isolated there and nowhere
else, each action names where it ran, a finding of an account that is not listed changes nothing and is
ticketed with the reason, a member role that cannot be assumed fails the action with the account and
role named (ticketed, nothing lost), and a rollback gives each account's instance its groups back.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from tests.functional.conftest import launch_instance, load_event, wait_for_execution
from vtriage.adapters.dynamodb import DynamoCaseRepository
from vtriage.composition.remediate import build_remediator, remediator
from vtriage.config.remediate import RemediateSettings
from vtriage.enrich.triage import execution_input
from vtriage.intake import read_document
from vtriage.models import Action, ActionStatus, ActionType, Case, CaseStatus, IocOutcome, IocType, Verdict
from vtriage_local.stack import ACCOUNT_ID, REGION, LocalAws

pytestmark = pytest.mark.functional

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
MEMBER = "210987654321"
UNLISTED = "999999999999"
ELSEWHERE = "eu-west-1"
ROLE = "vtriage-member"
QUARANTINE_GROUP = "vtriage-quarantine"


def deployed(**parameters: str) -> Iterator[LocalAws]:
    """The stack, acting for real (DryRun=false), with these parameters."""
    with LocalAws(parameters={"DryRun": "false", **parameters}) as aws:
        yield aws


@pytest.fixture
def organisation() -> Iterator[LocalAws]:
    """The stack deployed for an organisation of one member account, its role created there."""
    for aws in deployed(MemberAccountIds=MEMBER):
        member_role(aws, MEMBER)
        yield aws


def member_role(aws: LocalAws, account: str) -> None:
    """The member role as member-role.yaml creates it (moto does not evaluate its trust policy)."""
    aws.client("iam", account=account).create_role(
        RoleName=ROLE,
        AssumeRolePolicyDocument=(
            '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", '
            f'"Principal": {{"AWS": "arn:aws:iam::{ACCOUNT_ID}:root"}}}}]}}'
        ),
    )


def cases(aws: LocalAws) -> DynamoCaseRepository:
    """The stack's cases table."""
    return DynamoCaseRepository(
        aws.client("dynamodb"), aws.ref("CasesTable"), timedelta(days=90), lambda: NOW
    )


def case_of(account: str, region: str, instance_id: str) -> Case:
    """The GuardDuty C&C sample as a malicious case of this account and Region, isolating the instance."""
    [alert] = read_document(load_event("synthetic-guardduty-backdoor-c2-dns.json")).alerts
    alert = alert.model_copy(update={"account": account, "region": region})
    return Case(
        case_id=alert.case_id,
        alert=alert,
        status=CaseStatus.ENRICHED,
        verdict=Verdict.MALICIOUS,
        iocs=[
            IocOutcome(
                type=IocType.DOMAIN,
                value="tawuhoju.com",
                found_at="service.action",
                verdict=Verdict.MALICIOUS,
            )
        ],
        actions=[Action(type=ActionType.ISOLATE_INSTANCE, target=instance_id)],
        created_at=NOW,
        updated_at=NOW,
    )


def triage(aws: LocalAws, case: Case) -> tuple[dict[str, Any], Case]:
    """Store the case and run its execution to the end, as the enrich function starts it."""
    assert cases(aws).create(case)
    started = aws.client("stepfunctions").start_execution(
        stateMachineArn=aws.ref("TriageStateMachine"),
        name=case.case_id,
        input=execution_input(case).model_dump_json(),
    )
    execution = wait_for_execution(aws.client("stepfunctions"), str(started["executionArn"]))
    stored = cases(aws).get(case.case_id)
    assert stored is not None
    return execution, stored


def instance_in(aws: LocalAws, account: str, region: str) -> tuple[str, list[str]]:
    """An instance in its own VPC, in that account and Region, and its interface's groups."""
    launched = launch_instance(aws.client("ec2", region=region, account=account))
    return launched.instance_id, [launched.group_id]


def groups_of(aws: LocalAws, account: str, region: str, instance_id: str) -> list[list[str]]:
    """Each interface's groups, as the console of that account and Region shows them."""
    ec2 = aws.client("ec2", region=region, account=account)
    [instance] = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"]
    return [
        [group["GroupId"] for group in interface["Groups"]] for interface in instance["NetworkInterfaces"]
    ]


def quarantine_groups(aws: LocalAws, account: str, region: str) -> list[str]:
    """vtriage's quarantine groups in that account and Region."""
    ec2 = aws.client("ec2", region=region, account=account)
    found = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": [QUARANTINE_GROUP]}])
    return [group["GroupId"] for group in found["SecurityGroups"]]


def ticket_inbox(aws: LocalAws) -> str:
    """A mailbox (a queue) subscribed to the ticket topic, as a person's e-mail address would be."""
    sqs = aws.client("sqs")
    url = str(sqs.create_queue(QueueName="inbox-tickets")["QueueUrl"])
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    aws.client("sns").subscribe(TopicArn=aws.ref("TicketTopic"), Protocol="sqs", Endpoint=arn)
    return url


def ticket_lines(aws: LocalAws, inbox: str) -> list[str]:
    """The lines of the one ticket mail the mailbox holds."""
    [message] = aws.client("sqs").receive_message(QueueUrl=inbox, MaxNumberOfMessages=10)["Messages"]
    return [line.strip() for line in str(json.loads(message["Body"])["Message"]).splitlines()]


# ---------------------------------------------------------------- where the finding lives


@pytest.mark.parametrize("region", [REGION, ELSEWHERE], ids=["own-region", "another-region"])
def test_a_finding_of_the_own_account_is_acted_on_in_its_own_region(
    organisation: LocalAws, region: str
) -> None:
    # Given an instance of the deployment's own account in the finding's Region
    instance_id, groups = instance_in(organisation, ACCOUNT_ID, region)

    # When the state machine runs the case for real
    execution, stored = triage(organisation, case_of(ACCOUNT_ID, region, instance_id))

    # Then the instance is isolated there, with the function's own credentials, and the action says where
    assert execution["status"] == "SUCCEEDED"
    [action] = stored.actions
    assert (action.status, action.account, action.region) == (ActionStatus.DONE, ACCOUNT_ID, region)
    [[quarantine]] = groups_of(organisation, ACCOUNT_ID, region, instance_id)
    assert quarantine not in groups
    assert quarantine_groups(organisation, ACCOUNT_ID, region) == [quarantine]
    # And the member account was not touched
    assert quarantine_groups(organisation, MEMBER, region) == []


def test_a_member_accounts_finding_in_another_region_isolates_its_instance_there(
    organisation: LocalAws,
) -> None:
    # Given an instance of the member account in another Region than the deployment's, and one with the
    # same setup in the deployment's own account and Region
    instance_id, groups = instance_in(organisation, MEMBER, ELSEWHERE)
    own_instance, own_groups = instance_in(organisation, ACCOUNT_ID, REGION)
    inbox = ticket_inbox(organisation)

    # When the member's finding runs through the state machine for real
    execution, stored = triage(organisation, case_of(MEMBER, ELSEWHERE, instance_id))

    # Then the member's instance is isolated in the member's quarantine group of that Region, and the action
    # names the member account and that Region
    assert execution["status"] == "SUCCEEDED"
    [action] = stored.actions
    assert (action.status, action.account, action.region) == (ActionStatus.DONE, MEMBER, ELSEWHERE)
    assert stored.status is CaseStatus.REMEDIATED
    [[quarantine]] = groups_of(organisation, MEMBER, ELSEWHERE, instance_id)
    assert quarantine not in groups
    assert quarantine_groups(organisation, MEMBER, ELSEWHERE) == [quarantine]
    # And its ticket names the finding's account and Region, and where the action ran
    lines = ticket_lines(organisation, inbox)
    assert f"Account: {MEMBER}" in lines
    assert f"Region: {ELSEWHERE}" in lines
    # (the actions' lines open with "- ", then the action's name and its type)
    [action_line] = [line for line in lines if line.startswith("- ") and "(isolate_instance)" in line]
    assert f"{instance_id}, account {MEMBER}, Region {ELSEWHERE}: done - " in action_line
    # And nothing changed in the deployment's own account, in either Region
    assert groups_of(organisation, ACCOUNT_ID, REGION, own_instance) == [own_groups]
    assert quarantine_groups(organisation, ACCOUNT_ID, REGION) == []
    assert quarantine_groups(organisation, ACCOUNT_ID, ELSEWHERE) == []


def test_in_a_member_account_a_key_is_disabled_with_its_own_containment_and_the_deployments_list_left_alone(
    organisation: LocalAws,
) -> None:
    # Given a member's IAM user with an access key, the member's containment policy as member-role.yaml
    # makes it, and a case disabling the key and blocking the domain in DNS Firewall
    iam = organisation.client("iam", account=MEMBER)
    iam.create_user(UserName="ci-deployer")
    key_id = iam.create_access_key(UserName="ci-deployer")["AccessKey"]["AccessKeyId"]
    deny_all = '{"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "*", "Resource": "*"}]}'
    containment = iam.create_policy(PolicyName=f"{ROLE}-user-containment", PolicyDocument=deny_all)["Policy"]
    case = case_of(MEMBER, ELSEWHERE, "unused").model_copy(
        update={
            "actions": [
                Action(
                    type=ActionType.DISABLE_ACCESS_KEY, target=key_id, parameters={"user_name": "ci-deployer"}
                ),
                Action(type=ActionType.BLOCK_DOMAIN_DNS_FIREWALL, target="tawuhoju.com"),
            ]
        }
    )

    # When the state machine runs it for real
    execution, stored = triage(organisation, case)

    # Then the member's key is inactive and its user contained by the member's own deny-all policy
    assert execution["status"] == "SUCCEEDED"
    disable, block = stored.actions
    assert (disable.status, disable.account) == (ActionStatus.DONE, MEMBER)
    [key] = iam.list_access_keys(UserName="ci-deployer")["AccessKeyMetadata"]
    assert key["Status"] == "Inactive"
    attached = iam.list_attached_user_policies(UserName="ci-deployer")["AttachedPolicies"]
    assert [policy["PolicyArn"] for policy in attached] == [containment["Arn"]]
    # And the domain list, which is the deployment's, is not edited for the member's finding, saying why
    assert block.status is ActionStatus.SKIPPED
    assert (
        f"not run in member account {MEMBER}: the DNS Firewall domain list is this deployment" in block.detail
    )


@pytest.mark.parametrize(
    ("members", "account"),
    [("", MEMBER), (MEMBER, UNLISTED)],
    ids=["no-member-listed", "another-account-than-the-member"],
)
def test_a_finding_of_an_account_that_is_not_listed_changes_nothing_and_is_ticketed(
    members: str, account: str
) -> None:
    for aws in deployed(MemberAccountIds=members):
        # Given an instance in that account, in another Region, and a case isolating it (as if planning had
        # let it through: the remediate function checks the place again before each action)
        instance_id, groups = instance_in(aws, account, ELSEWHERE)

        # When the state machine runs it for real
        execution, stored = triage(aws, case_of(account, ELSEWHERE, instance_id))

        # Then the instance keeps its groups, the action is skipped with the reason, and the ticket has it
        assert execution["status"] == "SUCCEEDED"
        assert groups_of(aws, account, ELSEWHERE, instance_id) == [groups]
        assert quarantine_groups(aws, account, ELSEWHERE) == []
        [action] = stored.actions
        assert (action.status, action.account, action.region) == (ActionStatus.SKIPPED, account, ELSEWHERE)
        assert f"names account '{account}'" in action.detail
        assert "MemberAccountIds" in action.detail
        assert stored.ticket is not None
        assert stored.error is not None
        assert f"names account '{account}'" in stored.error


# ---------------------------------------------------------------- a member role that cannot be assumed


def refusing_sts() -> Any:
    """STS as AWS answers when the member role is missing or does not trust the remediate role."""
    sts = boto3.client("sts", region_name=REGION)
    stubber = Stubber(sts)
    for _ in range(3):
        stubber.add_client_error(
            "assume_role",
            service_error_code="AccessDenied",
            service_message=(
                f"User: arn:aws:sts::{ACCOUNT_ID}:assumed-role/RemediateFunctionRole/remediate is not "
                f"authorized to perform: sts:AssumeRole on resource: arn:aws:iam::{MEMBER}:role/{ROLE}"
            ),
            http_status_code=403,
        )
    stubber.activate()
    return sts


def test_a_member_role_that_cannot_be_assumed_fails_the_action_naming_account_and_role_and_is_ticketed(
    organisation: LocalAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a member's instance, and STS refusing the member role (the remediate function is the real one,
    # built by its composition root, with an STS client that answers AccessDenied as AWS does)
    instance_id, groups = instance_in(organisation, MEMBER, ELSEWHERE)
    inbox = ticket_inbox(organisation)
    steps = build_remediator(RemediateSettings.from_environ(), sts=refusing_sts())
    invoke = organisation.invoke

    def remediate_function_meeting_a_refusing_sts(logical_id: str, event: Any) -> Any:
        if logical_id == "RemediateFunction":
            return steps.step(event).model_dump(mode="json")
        return invoke(logical_id, event)

    monkeypatch.setattr(organisation, "invoke", remediate_function_meeting_a_refusing_sts)

    # When the state machine runs the member's case for real
    execution, stored = triage(organisation, case_of(MEMBER, ELSEWHERE, instance_id))

    # Then the action failed where it was to run (the member's account and Region) with a reason naming the
    # account and the role, the ticket carries it, and the instance is as it was
    assert execution["status"] == "SUCCEEDED"
    [action] = stored.actions
    assert (action.status, action.account, action.region) == (ActionStatus.FAILED, MEMBER, ELSEWHERE)
    role_arn = f"arn:aws:iam::{MEMBER}:role/{ROLE}"
    assert action.detail.startswith(
        f"MemberRoleError: cannot assume the member role {role_arn} in account {MEMBER}"
    )
    assert "AccessDenied" in action.detail
    assert stored.ticket is not None
    assert stored.error is not None
    assert role_arn in stored.error
    # (the actions' lines open with "- ", then the action's name and its type)
    [action_line] = [
        line
        for line in ticket_lines(organisation, inbox)
        if line.startswith("- ") and "(isolate_instance)" in line
    ]
    assert f"{instance_id}, account {MEMBER}, Region {ELSEWHERE}: failed - MemberRoleError: " in action_line
    assert groups_of(organisation, MEMBER, ELSEWHERE, instance_id) == [groups]
    # And nothing is lost: the case keeps its finding, its IOCs and the planned action, for a person to rerun
    assert (stored.alert.account, stored.alert.region) == (MEMBER, ELSEWHERE)
    assert [ioc.value for ioc in stored.iocs] == ["tawuhoju.com"]
    assert (action.type, action.target) == (ActionType.ISOLATE_INSTANCE, instance_id)


# ---------------------------------------------------------------- rollback


def test_rollback_gives_each_accounts_instance_its_groups_back(organisation: LocalAws) -> None:
    # Given an instance isolated for real in the member account (another Region) and one in the own account
    member_instance, member_groups = instance_in(organisation, MEMBER, ELSEWHERE)
    own_instance, own_groups = instance_in(organisation, ACCOUNT_ID, REGION)
    member_case = case_of(MEMBER, ELSEWHERE, member_instance)
    own_case = case_of(ACCOUNT_ID, REGION, own_instance)
    for case in (member_case, own_case):
        execution, stored = triage(organisation, case)
        assert execution["status"] == "SUCCEEDED"
        assert [action.status for action in stored.actions] == [ActionStatus.DONE]
    assert groups_of(organisation, MEMBER, ELSEWHERE, member_instance) != [member_groups]

    # When each case is rolled back, as `vtriage rollback CASE_ID` does
    steps = remediator(RemediateSettings.from_environ())
    rolled = [steps.rollback(case.case_id) for case in (member_case, own_case)]

    # Then each instance is back in its own groups, in its own account and Region, and each action says
    # where it was undone
    assert [result.complete for result in rolled] == [True, True]
    assert groups_of(organisation, MEMBER, ELSEWHERE, member_instance) == [member_groups]
    assert groups_of(organisation, ACCOUNT_ID, REGION, own_instance) == [own_groups]
    for case, account, region in ((member_case, MEMBER, ELSEWHERE), (own_case, ACCOUNT_ID, REGION)):
        rolled_back = cases(organisation).get(case.case_id)
        assert rolled_back is not None
        [action] = rolled_back.actions
        assert (action.status, action.account, action.region) == (ActionStatus.ROLLED_BACK, account, region)
