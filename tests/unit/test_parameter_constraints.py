"""`vtriage run --parameter-overrides` values are checked against template.yaml's parameter definitions as
CloudFormation checks them before it deploys anything (`vtriage_local.template.parameter_problems`)."""

from __future__ import annotations

import pytest

from vtriage_local.template import load_template, parameter_problems


@pytest.mark.parametrize(
    ("given", "said"),
    [
        ({"DryRun": "maybe"}, "DryRun (DRY_RUN): 'maybe' must be one of true, false"),
        ({"DryRun": "True"}, "DryRun (DRY_RUN): 'True' must be one of true, false"),
        (
            {"MaxActionsPerHour": "ten"},
            "MaxActionsPerHour (MAX_ACTIONS_PER_HOUR): 'ten' must be a number "
            "(the parameter's Type is Number)",
        ),
        (
            {"MaxActionsPerHour": "-1"},
            "MaxActionsPerHour (MAX_ACTIONS_PER_HOUR): '-1' must be a number of at least 0",
        ),
        (
            {"ApprovalTimeoutSeconds": "604801"},
            "ApprovalTimeoutSeconds (APPROVAL_TIMEOUT_SECONDS): '604801' must be a number from 60 to 604800",
        ),
        (
            {"EnrichMaximumConcurrency": "1"},
            "EnrichMaximumConcurrency: '1' must be a number from 2 to 1000",
        ),
        ({"LogRetentionDays": "2"}, "LogRetentionDays: '2' must be one of 1, 3, 5, 7, 14, 30, 60, 90"),
        (
            {"JiraBaseUrl": "http://jira.example.com"},
            "JiraBaseUrl (JIRA_BASE_URL): 'http://jira.example.com' must be an https:// URL",
        ),
        (
            {"NaclRuleNumberMin": "0"},
            "NaclRuleNumberMin (NACL_RULE_MIN): '0' must match ^([1-9][0-9]{0,4})?$",
        ),
    ],
)
def test_a_value_its_parameter_refuses_is_named_with_what_is_allowed(
    given: dict[str, str], said: str
) -> None:
    # Given one override template.yaml's definition of its parameter refuses
    # When it is checked as a local run checks it
    problems = parameter_problems(load_template(), given, loopback_http=True)

    # Then one problem names the parameter, its variable, the value and what is allowed
    [problem] = problems
    assert problem.startswith(said)


def test_every_default_and_the_values_the_readme_gives_are_accepted() -> None:
    # Given the template's own defaults and the overrides the README and the tests give
    template = load_template()
    defaults = {name: str(spec.get("Default", "")) for name, spec in template["Parameters"].items()}
    given = {
        "DryRun": "false",
        "MaxActionsPerHour": "0",
        "VirusTotalQuotaPerMinute": "10000",
        "ApprovalTimeoutSeconds": "60",
        "EnrichMaximumConcurrency": "1000",
        "LogRetentionDays": "3653",
        "MemberAccountIds": "111122223333",
        "QuarantineSourceBuckets": "vtriage-demo-uploads-*",
        "JiraBaseUrl": "https://jira.example.com",
    }

    # When they are checked, Then none is refused
    assert parameter_problems(template, defaults) == []
    assert parameter_problems(template, given) == []


def test_a_ticket_providers_url_over_http_passes_on_loopback_alone_in_a_local_run() -> None:
    # Given a stand-in Jira on this machine, over plain http
    template = load_template()
    stand_in = {"JiraBaseUrl": "http://127.0.0.1:8080"}

    # When a local run checks it, Then it passes (the ticket function accepts http on loopback alone),
    # where CloudFormation's own pattern refuses it; a host off loopback is refused either way
    assert parameter_problems(template, stand_in, loopback_http=True) == []
    assert parameter_problems(template, stand_in) != []
    assert parameter_problems(template, {"JiraBaseUrl": "http://10.0.0.5"}, loopback_http=True) != []


@pytest.mark.parametrize(
    ("given", "said"),
    [
        (
            {"MaxActionsPerHour": "1.5"},
            "MaxActionsPerHour (MAX_ACTIONS_PER_HOUR): '1.5' must be a whole number (the functions read it "
            "as one: a count, seconds or days)",
        ),
        (
            {"ApprovalTimeoutSeconds": "60.5"},
            "ApprovalTimeoutSeconds (APPROVAL_TIMEOUT_SECONDS): '60.5' must be a whole number (the functions "
            "read it as one: a count, seconds or days)",
        ),
    ],
)
def test_a_fraction_for_a_count_is_refused_before_a_function_would_refuse_it(
    given: dict[str, str], said: str
) -> None:
    # Given a fraction for a Number parameter, which CloudFormation takes and the function reads as an int
    # When it is checked
    problems = parameter_problems(load_template(), given)

    # Then it is refused, saying it must be whole
    assert problems == [said]


def test_every_number_parameter_of_the_template_is_a_whole_count() -> None:
    # Given the template's Number parameters, When their defaults and bounds are read
    numbers = {
        name: [spec.get(key) for key in ("Default", "MinValue", "MaxValue") if key in spec]
        for name, spec in load_template()["Parameters"].items()
        if spec.get("Type") == "Number"
    }

    # Then each is a whole number, as the local check of overrides assumes
    assert numbers
    assert {
        name: values for name, values in numbers.items() if any(not isinstance(v, int) for v in values)
    } == {}


@pytest.mark.parametrize(
    ("spec", "value", "said"),
    [
        ({"Type": "Number", "MaxValue": 10}, "11", "Limit: '11' must be a number of at most 10"),
        (
            {"Type": "Number", "MinValue": 1, "MaxValue": 10},
            "0",
            "Limit: '0' must be a number from 1 to 10",
        ),
        ({"Type": "String", "MinLength": 3}, "ab", "Limit: 'ab' must be at least 3 characters long"),
        ({"Type": "String", "MaxLength": 4}, "abcde", "Limit: 'abcde' must be at most 4 characters long"),
        (
            {"Type": "String", "MinLength": 2, "MaxLength": 4},
            "a",
            "Limit: 'a' must be 2 to 4 characters long",
        ),
        ({"Type": "String", "MinLength": 2, "MaxLength": 4}, "abcd", None),
        ({"Type": "Number", "MinValue": 1, "MaxValue": 10}, "10", None),
    ],
)
def test_each_bound_cloudformation_checks_is_said_in_its_own_words(
    spec: dict[str, object], value: str, said: str | None
) -> None:
    # Given a template whose parameter has one or both bounds of a length or a number
    template = {"Parameters": {"Limit": spec}, "Resources": {}}

    # When a value is checked against it
    problems = parameter_problems(template, {"Limit": value})

    # Then a value outside says which bound it broke, and one within passes
    assert problems == ([said] if said else [])
