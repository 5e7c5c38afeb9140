"""Where `vtriage run` mirrors a finding's resources, and the organisation parameters it deploys with,
read as CloudFormation reads them: no moto, no network."""

from __future__ import annotations

import pytest

from vtriage_local.seed import unmirrorable
from vtriage_local.stack import ACCOUNT_ID, LocalAws, LocalSetupError
from vtriage_local.template import MEMBER_ROLE_TEMPLATE_PATH, load_template, parameter_problems


@pytest.mark.parametrize(
    ("account", "region"),
    [("111122223333", "eu-west-1"), ("123456789012", "us-gov-west-1"), ("210987654321", "cn-north-1")],
)
def test_a_finding_of_an_account_and_region_aws_could_have_is_mirrored_there(
    account: str, region: str
) -> None:
    # Given a 12-digit account id and a Region name
    # Then nothing stands in the way of mirroring its resources there
    assert unmirrorable(account, region) is None


@pytest.mark.parametrize(
    ("account", "region", "named"),
    [
        ("unknown", "eu-west-1", "no account id ('unknown')"),
        ("11112222333", "eu-west-1", "no account id"),
        ("111122223333", "GeneratedFindingRegion", "no AWS Region ('GeneratedFindingRegion')"),
        ("111122223333", "eu-west-1\n", "no AWS Region"),
    ],
)
def test_a_finding_naming_no_account_or_region_says_why_nothing_is_mirrored(
    account: str, region: str, named: str
) -> None:
    # Given a finding whose account or Region is no such thing
    # Then the reason names what it is
    assert named in (unmirrorable(account, region) or "")


def test_member_accounts_are_checked_as_cloudformation_checks_them() -> None:
    # Given the template's MemberAccountIds and ActRegions, and the member role's template
    template = load_template()
    member_role = load_template(MEMBER_ROLE_TEMPLATE_PATH)

    # Then listed ids and Regions pass, and what CloudFormation refuses is named with its pattern
    assert parameter_problems(template, {"MemberAccountIds": "111122223333,444455556666"}) == []
    assert parameter_problems(template, {"MemberAccountIds": ""}) == []
    [problem] = parameter_problems(template, {"MemberAccountIds": "111122223333, 444455556666"})
    assert problem == (
        "MemberAccountIds (MEMBER_ACCOUNT_IDS): '111122223333, 444455556666' must be 12-digit account ids "
        "separated by commas, without spaces"
    )
    assert parameter_problems(member_role, {"NaclBlocking": "true", "ActRegions": "eu-west-1"}) == []
    assert parameter_problems(member_role, {"NaclBlocking": "yes"}) == [
        "NaclBlocking: 'yes' must be one of true, false"
    ]


@pytest.mark.parametrize(
    ("override", "said"),
    [
        (
            {"MemberAccountIds": "12345"},
            "MemberAccountIds (MEMBER_ACCOUNT_IDS): '12345' must be 12-digit account ids separated by "
            "commas, without spaces",
        ),
        (
            {"ActRegions": "eu-west-1, us-east-1"},
            "ActRegions (ACT_REGIONS): 'eu-west-1, us-east-1' must be Region names (such as eu-west-1) "
            "separated by commas, without spaces",
        ),
    ],
)
def test_a_value_cloudformation_refuses_stops_the_local_stack_before_it_is_built(
    override: dict[str, str], said: str
) -> None:
    # Given a parameter override CloudFormation's constraint refuses, as a person types it
    # When the local stack is described (nothing is started yet)
    with pytest.raises(LocalSetupError) as refused:
        LocalAws(parameters=override)

    # Then it says which parameter and variable, the value, and what it must be: no function's settings
    # nor the member role's template refuse it later in their own terms
    assert str(refused.value) == said


def test_an_account_listed_twice_is_one_member_and_the_own_account_none() -> None:
    # Given MemberAccountIds listing a member twice and the deployment's own account
    stack = LocalAws(parameters={"MemberAccountIds": f"140651570565,{ACCOUNT_ID},140651570565"})

    # Then the member is one member (one role to deploy), the own account none, and a note says so once
    assert stack.member_accounts() == ["140651570565"]
    assert stack.organisation_notes() == [
        f"MemberAccountIds lists this deployment's own account {ACCOUNT_ID}: it is acted in as the own "
        "account, with the functions' own credentials (no member role is assumed there)"
    ]
    assert LocalAws(parameters={"MemberAccountIds": "140651570565"}).organisation_notes() == []
