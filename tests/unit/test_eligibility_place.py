"""Where a deployment acts: its own account and its member accounts, in the Regions ActRegions admits, as
the settings read them from the environment and as planning and the remediate function apply them."""

from __future__ import annotations

import pytest

from tests.factories import make_alert
from vtriage.config.enrich import EnrichSettings
from vtriage.config.remediate import RemediateSettings
from vtriage.eligibility import Place, eligibility, requiring_approval
from vtriage.errors import ConfigurationError
from vtriage.models import Action, ActionStatus, ActionType, Provenance

OWN = "123456789012"
MEMBER = "210987654321"
UNLISTED = "999999999999"
DETECTOR = Provenance(channel="detector")
# The template parameter behind each variable, as template.yaml names it.
PARAMETERS = {
    "MEMBER_ACCOUNT_IDS": "MemberAccountIds",
    "ACT_REGIONS": "ActRegions",
    "MEMBER_ROLE_NAME": "MemberRoleName",
    "MEMBER_EXTERNAL_ID": "MemberExternalId",
}

REMEDIATE = {"AWS_REGION": "us-east-1", "CASES_TABLE_NAME": "cases", "OWN_ACCOUNT_ID": OWN}
ENRICH = {
    **REMEDIATE,
    "ENRICHMENTS_TABLE_NAME": "enrichments",
    "STATE_MACHINE_ARN": "arn:aws:states:us-east-1:123456789012:stateMachine:triage",
    "DEAD_LETTER_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/dlq",
    "VT_API_KEY": "key",
    "ALERT_QUEUE_ARN": "arn:aws:sqs:us-east-1:123456789012:alerts",
    "PUSHED_ALERT_QUEUE_ARN": "arn:aws:sqs:us-east-1:123456789012:pushed",
}


# ---------------------------------------------------------------- Place


@pytest.mark.parametrize(
    ("account", "region"),
    [(OWN, "us-east-1"), (OWN, "ap-southeast-2"), (MEMBER, "eu-west-1"), (MEMBER, "us-gov-west-1")],
)
def test_the_own_account_and_a_member_are_acted_on_in_any_region_when_none_is_listed(
    account: str, region: str
) -> None:
    # Given a deployment with one member account and no Region restriction
    place = Place(own_account=OWN, members=frozenset({MEMBER}))

    # Then a finding of either account, in any Region, may be acted on there
    assert place.reasons_against(make_alert(account=account, region=region)) == []


def test_an_account_neither_own_nor_listed_is_refused_with_the_accounts_named() -> None:
    # Given a deployment with one member account
    place = Place(own_account=OWN, members=frozenset({MEMBER}))

    # When a finding of another account is judged
    [reason] = place.reasons_against(make_alert(account=UNLISTED))

    # Then it is refused, the reason naming the finding's account, the deployment's and its members
    assert reason == (
        f"the finding names account '{UNLISTED}', not this deployment's ({OWN}) nor one of its member "
        f"accounts ({MEMBER}): vtriage acts only in its own account and the accounts MemberAccountIds lists"
    )
    # And with no member listed, a member's finding is refused alike
    [alone] = Place(own_account=OWN).reasons_against(make_alert(account=MEMBER))
    assert f"names account '{MEMBER}'" in alone
    assert "(none listed)" in alone


def test_a_region_act_regions_does_not_list_is_refused_and_a_listed_one_admitted() -> None:
    # Given a deployment acting in two Regions
    place = Place(own_account=OWN, members=frozenset({MEMBER}), regions=frozenset({"us-east-1", "eu-west-1"}))

    # Then a member's finding in a listed Region may be acted on, and in another is refused, naming both
    assert place.reasons_against(make_alert(account=MEMBER, region="eu-west-1")) == []
    [reason] = place.reasons_against(make_alert(account=MEMBER, region="eu-west-3"))
    assert reason == (
        "the finding names Region 'eu-west-3', not one of the Regions ActRegions lists (eu-west-1, "
        "us-east-1): vtriage acts only there"
    )
    # And a finding of an unlisted account in an unlisted Region is refused for both
    assert len(place.reasons_against(make_alert(account=UNLISTED, region="eu-west-3"))) == 2


@pytest.mark.parametrize("region", ["", "us-east-1.evil.example", "../eu-west-1", "US-EAST-1", "eu-west"])
def test_a_region_that_is_no_region_name_is_never_acted_on(region: str) -> None:
    # Given a deployment acting in every Region
    place = Place(own_account=OWN)

    # When a finding names something that is not a Region name (it would choose the endpoint called)
    [reason] = place.reasons_against(make_alert(region=region))

    # Then it is refused, the value escaped in the reason
    assert "which is not a Region name" in reason


def test_planning_gives_a_members_detector_finding_its_actions_and_an_unlisted_accounts_none() -> None:
    # Given a deployment with one member account
    place = Place(own_account=OWN, members=frozenset({MEMBER}))

    # When the member's and an unlisted account's detector findings are judged
    member = eligibility(make_alert(account=MEMBER, region="eu-west-1"), DETECTOR, place, "approval")
    unlisted = eligibility(make_alert(account=UNLISTED, region="eu-west-1"), DETECTOR, place, "approval")

    # Then the member's may be acted on automatically, the other's not, with the reason
    assert (member.not_actionable, member.approval) == ((), None)
    assert len(unlisted.not_actionable) == 1
    assert f"names account '{UNLISTED}'" in unlisted.not_actionable[0]


# ---------------------------------------------------------------- settings


def test_the_settings_read_members_and_regions_into_the_place_of_both_functions() -> None:
    # Given both functions' environments listing two members (spaces and a repeat as a person types them)
    # and two Regions
    listed = {
        "MEMBER_ACCOUNT_IDS": f" {MEMBER}, 111122223333,{MEMBER}",
        "ACT_REGIONS": "eu-west-1, us-east-1",
    }
    remediate = RemediateSettings.from_environ({**REMEDIATE, **listed})
    enrich = EnrichSettings.from_environ({**ENRICH, **listed})

    # Then each reads them alike, and its place is the own account, the members and those Regions
    assert remediate.member_account_ids == (MEMBER, "111122223333")
    assert remediate.act_regions == ("eu-west-1", "us-east-1")
    expected = Place(
        own_account=OWN,
        members=frozenset({MEMBER, "111122223333"}),
        regions=frozenset({"eu-west-1", "us-east-1"}),
    )
    assert remediate.place == enrich.place == expected


def test_without_members_or_regions_the_place_is_the_own_account_in_every_region() -> None:
    # Given the template's defaults: both variables empty
    settings = RemediateSettings.from_environ({**REMEDIATE, "MEMBER_ACCOUNT_IDS": "", "ACT_REGIONS": ""})

    # Then the place is the own account alone, in every Region; the role and external id have defaults
    assert settings.place == Place(own_account=OWN)
    assert settings.member_role_name == "vtriage-member"
    assert settings.external_id == f"vtriage-{OWN}"
    assert RemediateSettings.from_environ({**REMEDIATE, "MEMBER_EXTERNAL_ID": "org-x"}).external_id == "org-x"


def test_listing_the_own_account_as_a_member_leaves_it_the_own_account() -> None:
    # Given the deployment's own account among the members
    settings = RemediateSettings.from_environ({**REMEDIATE, "MEMBER_ACCOUNT_IDS": f"{OWN},{MEMBER}"})

    # Then it is reached with the function's own credentials, never through a member role
    assert settings.place.members == frozenset({MEMBER})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MEMBER_ACCOUNT_IDS", "21098765432"),
        ("MEMBER_ACCOUNT_IDS", f"{MEMBER};{UNLISTED}"),
        ("MEMBER_ACCOUNT_IDS", "arn:aws:iam::210987654321:root"),
        ("ACT_REGIONS", "eu-west-1,Frankfurt"),
        ("MEMBER_ROLE_NAME", "vtriage member"),
        ("MEMBER_ROLE_NAME", "x" * 65),
        ("MEMBER_EXTERNAL_ID", "a"),
        ("MEMBER_EXTERNAL_ID", "has space"),
    ],
)
def test_a_bad_member_or_region_setting_stops_the_function_naming_the_variable(name: str, value: str) -> None:
    # Given the remediate function's environment with one bad value
    # Then it refuses to start, naming the template parameter a person typed, then the variable
    with pytest.raises(ConfigurationError, match=rf"{PARAMETERS[name]} \({name}\): "):
        RemediateSettings.from_environ({**REMEDIATE, name: value})


@pytest.mark.parametrize(
    ("name", "value", "said"),
    [
        (
            "MEMBER_ACCOUNT_IDS",
            "12345",
            "MemberAccountIds (MEMBER_ACCOUNT_IDS): '12345' is not a 12-digit account id",
        ),
        (
            "MEMBER_ACCOUNT_IDS",
            f"{MEMBER},12345,abc",
            "MemberAccountIds (MEMBER_ACCOUNT_IDS): '12345', 'abc' are not 12-digit account ids",
        ),
        (
            "ACT_REGIONS",
            "eu-west-1,Frankfurt",
            "ActRegions (ACT_REGIONS): 'Frankfurt' is not a Region name (such as eu-west-1)",
        ),
    ],
)
def test_a_bad_member_or_region_is_named_in_a_persons_words(name: str, value: str, said: str) -> None:
    # Given each function's environment with one bad value, as a person types it in the template
    for settings, environment in ((RemediateSettings, REMEDIATE), (EnrichSettings, ENRICH)):
        # When the function starts, Then it says which parameter, which value and what it should be
        with pytest.raises(ConfigurationError) as refused:
            settings.from_environ({**environment, name: value})
        assert str(refused.value).endswith(f"is invalid: {said}")


def test_a_pushed_alerts_action_planned_skipped_waits_for_no_one() -> None:
    # Given a pushed alert's two actions: one to run, one planned skipped (temporary credentials)
    runs = Action(type=ActionType.ISOLATE_INSTANCE, target="i-1")
    cannot = Action(type=ActionType.DISABLE_ACCESS_KEY, target="ASIAIOSFODNN7EXAMPLE").with_outcome(
        ActionStatus.SKIPPED, "not run, nothing changed: temporary credentials (ASIA...) cannot be disabled"
    )

    # When each is made to wait for a person
    waiting, skipped = requiring_approval([runs, cannot], "pushed through the intake")

    # Then the one to run waits, and the skipped one keeps its own reason, asking no one to approve it
    assert waiting.parameters == {"needs_approval": "true"}
    assert skipped == cannot
