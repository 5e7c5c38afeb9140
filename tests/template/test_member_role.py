"""member-role.yaml against template.yaml: a member account's role grants what the remediate function's own
role grants for acting on resources, scoped the same way and under the same Denies, and trusts only that
role, with the external id and session name the function uses."""

from __future__ import annotations

from typing import Any

import pytest

from tests.template.test_template import as_list, conditional_branches, statements
from vtriage.adapters.aws_sessions import member_containment_policy_arn, session_name
from vtriage.config.remediate import RemediateSettings
from vtriage_local.template import PROJECT_ROOT, TEMPLATE_PATH, functions, load_template

MEMBER_ROLE_PATH = PROJECT_ROOT / "member-role.yaml"

# What the deployment's role may do that a member's role never grants, and why: the function's own tables,
# the role it assumes, and the resources that live in the deployment account only (the WAF IP set, the DNS
# Firewall domain list, the quarantine bucket and the source buckets' objects moved there; and the S3-only
# Denies that guard them). In a member account those actions are skipped, saying so.
DEPLOYMENT_ONLY = {
    "Cases": "the cases table",
    "BlastRadiusCounter": "the guardrails table",
    "AssumeMemberRoles": "the member roles themselves",
    "BlockIpsInTheRegionalWafIpSet": "the deployment's WAF IP set",
    "BlockIpsInTheCloudFrontWafIpSet": "the deployment's WAF IP set",
    "BlockDomainsInTheDnsFirewallList": "the deployment's DNS Firewall domain list",
    "MoveObjectsOutOfSourceBuckets": "objects go to the deployment's quarantine bucket",
    "ReadSourceBucketSettings": "objects go to the deployment's quarantine bucket",
    "KeepObjectsInQuarantine": "the deployment's quarantine bucket",
    "NeverMoveProtectedObjects": "guards the S3 grants above",
    "NeverTouchAwsLogs": "guards the S3 grants above",
    "KeepQuarantinedCopies": "guards the deployment's quarantine bucket",
    "ReadFalconApiClientForContainment": "the deployment's own Falcon tenant's API client, not AWS",
}


@pytest.fixture(scope="module")
def deployment() -> dict[str, Any]:
    """The deployment template, intrinsic functions in their long form."""
    return load_template(TEMPLATE_PATH)


@pytest.fixture(scope="module")
def member() -> dict[str, Any]:
    """member-role.yaml, intrinsic functions in their long form."""
    return load_template(MEMBER_ROLE_PATH)


def own_statements(deployment: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The remediate function's statements by Sid, conditional ones included."""
    found = statements(functions(deployment, PROJECT_ROOT)["RemediateFunction"])
    return {statement["Sid"]: statement for statement in found}


def member_role(member: dict[str, Any]) -> dict[str, Any]:
    """The member role's properties."""
    return dict(member["Resources"]["MemberRole"]["Properties"])


def member_statements(member: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The member role's statements by Sid, conditional ones included."""
    [policy] = member_role(member)["Policies"]
    return {
        branch["Sid"]: branch
        for statement in policy["PolicyDocument"]["Statement"]
        for branch in conditional_branches(statement)
    }


def test_the_member_role_grants_the_deployment_roles_statements_for_acting_on_resources_word_for_word(
    deployment: dict[str, Any], member: dict[str, Any]
) -> None:
    # Given the remediate function's statements and the member role's
    own, theirs = own_statements(deployment), member_statements(member)

    # Then every statement of the member role is the deployment's of the same Sid, word for word: actions,
    # resources (${AWS::AccountId} is each template's own account), conditions, effect
    assert theirs
    for sid, statement in theirs.items():
        assert statement == own[sid], sid
    # And the deployment grants nothing else, but what lives in the deployment account alone
    assert set(own) - set(theirs) == set(DEPLOYMENT_ONLY)


def test_the_two_roles_grant_the_same_actions_on_resources_and_deny_the_same(
    deployment: dict[str, Any], member: dict[str, Any]
) -> None:
    # Given the EC2 and IAM actions each role allows, and those each denies
    def actions(found: dict[str, dict[str, Any]], effect: str) -> set[str]:
        return {
            action
            for statement in found.values()
            if statement["Effect"] == effect
            for action in as_list(statement["Action"])
            if action.partition(":")[0] in {"ec2", "iam"}
        }

    own, theirs = own_statements(deployment), member_statements(member)

    # Then they are the same actions, and the protected-tag Deny is the same statement in both
    assert actions(theirs, "Allow") == actions(own, "Allow")
    assert {"ec2:ModifyNetworkInterfaceAttribute", "iam:UpdateAccessKey", "ec2:CreateNetworkAclEntry"} <= (
        actions(theirs, "Allow")
    )
    assert actions(theirs, "Deny") == actions(own, "Deny")
    assert theirs["NeverChangeProtectedResources"] == own["NeverChangeProtectedResources"]
    assert theirs["NeverActOutsideActRegions"] == own["NeverActOutsideActRegions"]


def test_users_are_contained_with_the_member_accounts_own_deny_all_policy_named_as_the_function_expects(
    member: dict[str, Any],
) -> None:
    # Given the member role's containment grant and its deny-all policy
    grant = member_statements(member)["ContainUsersWithTheDenyAllPolicy"]
    policy = member["Resources"]["UserContainmentPolicy"]["Properties"]

    # Then the grant names that policy alone, which denies everything, and its name is the one the
    # remediate function attaches in a member account (<RoleName>-user-containment)
    assert grant["Condition"]["ArnEquals"]["iam:PolicyARN"] == {"Ref": "UserContainmentPolicy"}
    assert policy["PolicyDocument"]["Statement"] == [
        {"Sid": "ContainedByVtriage", "Effect": "Deny", "Action": "*", "Resource": "*"}
    ]
    assert policy["ManagedPolicyName"] == {"Fn::Sub": "${RoleName}-user-containment"}
    assert member_containment_policy_arn("aws", "210987654321", "vtriage-member") == (
        "arn:aws:iam::210987654321:policy/vtriage-member-user-containment"
    )


def test_the_member_role_trusts_only_the_remediate_role_with_the_functions_external_id_and_session_name(
    deployment: dict[str, Any], member: dict[str, Any]
) -> None:
    # Given the member role's trust policy
    role = member_role(member)
    [trust] = role["AssumeRolePolicyDocument"]["Statement"]

    # Then only the role given as RemediateRoleArn may assume it, and only as the function does: with the
    # external id (by default vtriage-<deployment account>, the function's default too), in a session
    # named vtriage-<case>, and within the organisation when one is given
    assert trust["Principal"] == {"AWS": {"Ref": "RemediateRoleArn"}}
    assert trust["Action"] == "sts:AssumeRole"
    assert trust["Condition"]["StringLike"] == {"sts:RoleSessionName": "vtriage-*"}
    with_org, without_org = trust["Condition"]["StringEquals"]["Fn::If"][1:]
    assert with_org["aws:PrincipalOrgID"] == {"Ref": "OrganizationId"}
    assert without_org["sts:ExternalId"] == with_org["sts:ExternalId"]
    external_id = without_org["sts:ExternalId"]["Fn::If"]
    assert external_id[:2] == ["HasExternalId", {"Ref": "ExternalId"}]
    assert external_id[2]["Fn::Sub"][0] == "vtriage-${DeploymentAccount}"
    settings = RemediateSettings.from_environ(
        {"AWS_REGION": "us-east-1", "CASES_TABLE_NAME": "cases", "OWN_ACCOUNT_ID": "123456789012"}
    )
    assert settings.external_id == "vtriage-123456789012"
    assert session_name("guardduty-0123456789abcdef0123456789abcdef").startswith("vtriage-")
    # And the role's name is the deployment's MemberRoleName by default, which only it may assume
    assert (
        member["Parameters"]["RoleName"]["Default"] == deployment["Parameters"]["MemberRoleName"]["Default"]
    )
    assert deployment["Outputs"]["RemediateFunctionRoleArn"]["Value"] == {
        "Fn::GetAtt": ["RemediateFunctionRole", "Arn"]
    }


def test_both_templates_take_the_regions_and_identifiers_in_the_same_form(
    deployment: dict[str, Any], member: dict[str, Any]
) -> None:
    # Given the parameters both templates share in meaning
    pairs = [("ActRegions", "ActRegions"), ("MemberRoleName", "RoleName"), ("MemberExternalId", "ExternalId")]

    # Then each is constrained alike, so that a value one accepts the other accepts too
    for own, theirs in pairs:
        assert (
            deployment["Parameters"][own]["AllowedPattern"] == member["Parameters"][theirs]["AllowedPattern"]
        )
        assert deployment["Parameters"][own]["Default"] == member["Parameters"][theirs]["Default"]
