"""Each function's settings are validated at start-up, and a bad one is named."""

from __future__ import annotations

import pytest

from vtriage.composition.enrich import batch_factory, verdict_policy
from vtriage.composition.ticket import ticket_dependencies
from vtriage.config.approval import ApprovalSettings
from vtriage.config.enrich import EnrichSettings
from vtriage.config.remediate import RemediateSettings
from vtriage.config.ticket import TicketSettings
from vtriage.errors import ConfigurationError
from vtriage.models import IocType

ENRICH = {
    "AWS_REGION": "eu-west-1",
    "CASES_TABLE_NAME": "cases",
    "ENRICHMENTS_TABLE_NAME": "enrichments",
    "STATE_MACHINE_ARN": "arn:aws:states:eu-west-1:123456789012:stateMachine:triage",
    "DEAD_LETTER_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/dlq",
    "VT_API_KEY_SECRET_NAME": "vtriage/virustotal-api-key",
    "ALERT_QUEUE_ARN": "arn:aws:sqs:eu-west-1:123456789012:AlertQueue",
    "PUSHED_ALERT_QUEUE_ARN": "arn:aws:sqs:eu-west-1:123456789012:PushedAlertQueue",
    "OWN_ACCOUNT_ID": "123456789012",
}


def test_enrich_settings_take_their_documented_defaults() -> None:
    # Given only the required variables, When they are read
    settings = EnrichSettings.from_environ(ENRICH)

    # Then the defaults are the documented ones, the thresholds coming from the shipped policy file
    assert settings.vt_base_url == "https://www.virustotal.com/api/v3"
    assert settings.retention_days == 90
    assert (settings.vt_quota_per_minute, settings.vt_quota_per_day) == (4, 500)
    policy = verdict_policy(settings)
    assert (policy.thresholds.of(IocType.FILE).malicious, policy.thresholds.of(IocType.DOMAIN).malicious) == (
        5,
        3,
    )


def test_environment_thresholds_replace_the_policy_file_for_every_type() -> None:
    # Given both thresholds in the environment
    settings = EnrichSettings.from_environ(
        {**ENRICH, "VERDICT_MALICIOUS_MIN_ENGINES": "7", "VERDICT_SUSPICIOUS_MIN_ENGINES": "2"}
    )

    # Then every IOC type uses them
    policy = verdict_policy(settings)
    assert {(policy.thresholds.of(t).malicious, policy.thresholds.of(t).suspicious) for t in IocType} == {
        (7, 2)
    }


def test_one_threshold_alone_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="VERDICT_SUSPICIOUS_MIN_ENGINES"):
        EnrichSettings.from_environ({**ENRICH, "VERDICT_MALICIOUS_MIN_ENGINES": "7"})


def test_intake_options_come_from_the_environment() -> None:
    settings = EnrichSettings.from_environ(
        {**ENRICH, "IOC_ALLOW_LIST": "example.org, 8.8.8.8", "SKIP_GUARDDUTY_IN_SECURITYHUB": "true"}
    )
    assert settings.intake.allow_list == frozenset({"example.org", "8.8.8.8"})
    assert settings.intake.skip_guardduty_in_securityhub is True


def test_the_cap_on_findings_samples_and_the_deployments_own_hosts_come_from_the_environment() -> None:
    # Given a deployment behind a VirusTotal gateway, with Jira, a higher cap and samples ignored
    settings = EnrichSettings.from_environ(
        {
            **ENRICH,
            "VT_BASE_URL": "https://vt-gateway.corp.example.net/api/v3",
            "JIRA_BASE_URL": "https://Acme.atlassian.net/",
            "SERVICENOW_BASE_URL": "",
            "MAX_FINDINGS_PER_MESSAGE": "300",
            "IGNORE_SAMPLE_FINDINGS": "true",
        }
    )

    # Then intake reads with them: the gateway's and Jira's hosts are never looked up nor acted on
    assert settings.intake.never_act_hosts == frozenset({"vt-gateway.corp.example.net", "acme.atlassian.net"})
    assert (settings.intake.max_findings, settings.intake.ignore_samples) == (300, True)
    # And by default a message may make 200 alerts, and samples are triaged
    defaults = EnrichSettings.from_environ(ENRICH).intake
    assert (defaults.max_findings, defaults.ignore_samples) == (200, False)


@pytest.mark.parametrize("missing", ["CASES_TABLE_NAME", "STATE_MACHINE_ARN", "DEAD_LETTER_QUEUE_URL"])
def test_a_missing_setting_is_named_in_the_error(missing: str) -> None:
    # Given the environment without one required variable
    environ = {name: value for name, value in ENRICH.items() if name != missing}

    # When the settings are read, Then the error names it
    with pytest.raises(ConfigurationError, match=missing):
        EnrichSettings.from_environ(environ)


def test_a_key_source_is_required_and_the_error_says_which_variables_give_one() -> None:
    # Given neither a secret name nor a key
    environ = {name: value for name, value in ENRICH.items() if name != "VT_API_KEY_SECRET_NAME"}

    # Then the error tells what to set
    with pytest.raises(ConfigurationError, match="VT_API_KEY_SECRET_NAME"):
        EnrichSettings.from_environ(environ)


def test_a_bad_value_is_named_and_the_key_never_appears_in_the_error() -> None:
    # Given a state machine ARN that is not one, and a key given directly
    environ = {**ENRICH, "STATE_MACHINE_ARN": "triage", "VT_API_KEY": "0123secretkey"}

    # When the settings are read, Then the bad variable is named and the key is not echoed
    with pytest.raises(ConfigurationError, match="STATE_MACHINE_ARN") as raised:
        EnrichSettings.from_environ(environ)
    assert "0123secretkey" not in str(raised.value)


def test_a_virustotal_key_pasted_with_its_line_end_is_used_without_it() -> None:
    # Given a key given directly, as pasted from a file with its line end
    settings = EnrichSettings.from_environ({**ENRICH, "VT_API_KEY": "0123secretkey\n"})

    # Then the key sent to VirusTotal is the key alone (with the newline, every lookup would answer 401)
    assert settings.vt_api_key is not None
    assert settings.vt_api_key.get_secret_value() == "0123secretkey"
    # and whitespace alone is no key: the error names the variables that give one
    without_secret = {name: value for name, value in ENRICH.items() if name != "VT_API_KEY_SECRET_NAME"}
    with pytest.raises(ConfigurationError, match="VT_API_KEY_SECRET_NAME"):
        EnrichSettings.from_environ({**without_secret, "VT_API_KEY": " \n"})


def test_a_record_is_deferred_at_most_max_deferrals_times() -> None:
    assert EnrichSettings.from_environ(ENRICH).max_deferrals == 500
    assert EnrichSettings.from_environ({**ENRICH, "MAX_DEFERRALS": "20"}).max_deferrals == 20
    with pytest.raises(ConfigurationError, match="MAX_DEFERRALS"):
        EnrichSettings.from_environ({**ENRICH, "MAX_DEFERRALS": "0"})


def test_remediation_is_dry_run_unless_explicitly_turned_off() -> None:
    # Given the remediate function's environment without DRY_RUN, and with DRY_RUN=false
    base = {"AWS_REGION": "eu-west-1", "CASES_TABLE_NAME": "cases", "OWN_ACCOUNT_ID": "123456789012"}

    # Then dry-run is the default, and only an explicit false turns it off
    assert RemediateSettings.from_environ(base).dry_run is True
    assert RemediateSettings.from_environ({**base, "DRY_RUN": "false"}).dry_run is False


def test_the_ticket_topic_must_be_an_sns_arn() -> None:
    with pytest.raises(ConfigurationError, match="TICKET_TOPIC_ARN"):
        TicketSettings.from_environ(
            {"AWS_REGION": "eu-west-1", "CASES_TABLE_NAME": "c", "TICKET_TOPIC_ARN": "x"}
        )


def test_deep_context_on_a_quota_too_small_for_one_lookup_is_refused_at_start() -> None:
    # Given deep context (up to 4 requests a lookup) and a shared quota of 2 requests a minute
    settings = EnrichSettings.from_environ(
        ENRICH | {"QUOTA_TABLE_NAME": "quota", "VT_DEEP_CONTEXT": "true", "VT_QUOTA_PER_MINUTE": "2"}
    )

    # When the enrich function builds its adapters, Then it refuses, naming the settings to change
    with pytest.raises(
        ConfigurationError, match="up to 4 requests: VT_QUOTA_PER_MINUTE and VT_QUOTA_PER_DAY"
    ):
        batch_factory(settings)


def test_the_remediate_function_needs_its_own_account_to_know_where_it_may_act() -> None:
    # Given the remediate function's environment without OWN_ACCOUNT_ID, and with a malformed one
    base = {"AWS_REGION": "eu-west-1", "CASES_TABLE_NAME": "cases"}

    # Then it refuses to start, naming the variable; with a good one, its place is that account alone, in
    # every Region (no member account, no ActRegions)
    for bad in ({}, {"OWN_ACCOUNT_ID": "99999999999x"}):
        with pytest.raises(ConfigurationError, match="OWN_ACCOUNT_ID"):
            RemediateSettings.from_environ({**base, **bad})
    place = RemediateSettings.from_environ({**base, "OWN_ACCOUNT_ID": "123456789012"}).place
    assert (place.own_account, place.members, place.regions) == ("123456789012", frozenset(), frozenset())


APPROVAL = {
    "AWS_REGION": "eu-west-1",
    "CASES_TABLE_NAME": "cases",
    "GUARDRAILS_TABLE_NAME": "guardrails",
    "APPROVAL_SIGNING_KEY_SECRET": "vtriage/approval-signing-key",
    "APPROVAL_TOPIC_ARN": "arn:aws:sns:eu-west-1:123456789012:approvals",
    "CASE_PAGE_KEY_SECRET": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:CasePageKey-AbCdEf",
}


def test_vt_augment_is_off_by_default_and_needs_the_virustotal_key_when_on() -> None:
    # Given the approval function's environment, Then VT Augment is off unless turned on
    assert ApprovalSettings.from_environ(APPROVAL).vt_augment is False

    # When it is turned on without a key source, Then the function refuses to start, saying what to set
    with pytest.raises(ConfigurationError, match="VT_AUGMENT=true needs the VirusTotal key: set VT_API_KEY"):
        ApprovalSettings.from_environ({**APPROVAL, "VT_AUGMENT": "true"})

    # And with the key's secret and widget colours, the colours are read as the widget's parameters
    settings = ApprovalSettings.from_environ(
        {
            **APPROVAL,
            "VT_AUGMENT": "true",
            "VT_API_KEY_SECRET_NAME": "vtriage/virustotal-api-key",
            "VT_AUGMENT_THEME": "fg1=#1A1A1A, bg1=ffffff",
        }
    )
    assert settings.vt_augment_theme == (("fg1", "#1a1a1a"), ("bg1", "#ffffff"))
    # And a colour the widget does not take is named
    with pytest.raises(ConfigurationError, match=r"VT_AUGMENT_THEME: .*unknown widget colours \['fg2'\]"):
        ApprovalSettings.from_environ({**APPROVAL, "VT_AUGMENT_THEME": "fg2=#ffffff"})


def test_a_tickets_case_page_link_needs_the_approval_url_and_its_key_together() -> None:
    # Given the ticket function's environment
    base = {
        "AWS_REGION": "eu-west-1",
        "CASES_TABLE_NAME": "cases",
        "TICKET_TOPIC_ARN": "arn:aws:sns:eu-west-1:1:t",
    }
    url = "https://abc123.lambda-url.eu-west-1.on.aws/"

    # Then neither is a ticket without the link, both make links valid 30 days, one alone is refused
    assert (
        TicketSettings.from_environ({**base, "APPROVAL_URL": "", "CASE_PAGE_KEY_SECRET": ""}).approval_url
        is None
    )
    both = TicketSettings.from_environ({**base, "APPROVAL_URL": url, "CASE_PAGE_KEY_SECRET": "k"})
    assert (both.approval_url, both.case_page_link_days) == (url, 30)
    with pytest.raises(ConfigurationError, match="set both APPROVAL_URL and CASE_PAGE_KEY_SECRET"):
        TicketSettings.from_environ({**base, "APPROVAL_URL": url})
    # And the link's host is reached over https only
    with pytest.raises(ConfigurationError, match=r"APPROVAL_URL: .*https"):
        TicketSettings.from_environ(
            {**base, "APPROVAL_URL": "http://example.com/", "CASE_PAGE_KEY_SECRET": "k"}
        )


def test_approval_links_stay_off_tickets_unless_turned_on_and_then_need_the_approval_function() -> None:
    # Given the ticket function's environment as the template writes it by default
    base = {
        "AWS_REGION": "eu-west-1",
        "CASES_TABLE_NAME": "cases",
        "TICKET_TOPIC_ARN": "arn:aws:sns:eu-west-1:1:t",
        "APPROVAL_FUNCTION_NAME": "",
    }

    # Then the links stay off tickets, and the ticket function has no approval function to ask for them,
    # even when one is named
    assert TicketSettings.from_environ(base).approval_links_in_tickets is False
    named = TicketSettings.from_environ({**base, "APPROVAL_FUNCTION_NAME": "vtriage-approval"})
    assert ticket_dependencies(named).desk.approvals is None
    # And the approval function answers a request no link by default
    assert ApprovalSettings.from_environ(APPROVAL).approval_links_in_tickets is False

    # When the links are turned on with the approval function named, Then the ticket function may ask it
    on = TicketSettings.from_environ(
        {**base, "APPROVAL_LINKS_IN_TICKETS": "true", "APPROVAL_FUNCTION_NAME": "vtriage-approval"}
    )
    assert on.approval_links_in_tickets is True
    assert ticket_dependencies(on).desk.approvals is not None

    # And turned on without it, or set to what is not a boolean, the function refuses to start, naming the
    # template parameter
    with pytest.raises(
        ConfigurationError, match=r"ApprovalLinksInTickets \(APPROVAL_LINKS_IN_TICKETS\) true needs"
    ):
        TicketSettings.from_environ({**base, "APPROVAL_LINKS_IN_TICKETS": "true"})
    with pytest.raises(ConfigurationError, match=r"ApprovalLinksInTickets \(APPROVAL_LINKS_IN_TICKETS\): "):
        TicketSettings.from_environ({**base, "APPROVAL_LINKS_IN_TICKETS": "sometimes"})
