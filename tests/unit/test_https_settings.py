"""VirusTotal and the ticket providers are reached over https only: plain http would show the API key,
the ticket credentials and the alerts to the network path. Loopback may serve plain http (local runs,
tests)."""

from __future__ import annotations

import pytest

from vtriage.config import https_url_problem
from vtriage.config.approval import ApprovalSettings
from vtriage.config.enrich import EnrichSettings
from vtriage.config.ticket import TicketSettings
from vtriage.errors import ConfigurationError

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
TICKET = {
    "AWS_REGION": "eu-west-1",
    "CASES_TABLE_NAME": "cases",
    "TICKET_TOPIC_ARN": "arn:aws:sns:eu-west-1:123456789012:tickets",
    "TICKET_SECRET_NAME": "vtriage/tickets",
}


@pytest.mark.parametrize(
    "url",
    [
        "https://www.virustotal.com/api/v3",
        "https://vt-gateway.corp.example:8443/api/v3",
        "http://127.0.0.1:8080/api/v3",
        "http://127.5.6.7/api/v3",
        "http://localhost:9000/api/v3",
        "http://[::1]:9000/api/v3/",
    ],
)
def test_https_and_loopback_http_are_accepted(url: str) -> None:
    # Given VirusTotal's base URL over https, or plain http on loopback, When the settings are read
    settings = EnrichSettings.from_environ({**ENRICH, "VT_BASE_URL": url})

    # Then it is kept
    assert settings.vt_base_url == url


@pytest.mark.parametrize(
    "url",
    [
        "http://www.virustotal.com/api/v3",
        "http://10.0.0.5/api/v3",
        "http://127.0.0.1.evil.example/api/v3",
        "ftp://www.virustotal.com/api/v3",
        "www.virustotal.com/api/v3",
    ],
)
def test_a_virustotal_url_without_https_stops_the_enrich_function(url: str) -> None:
    # Given VT_BASE_URL over plain http to another host (or no scheme at all)
    # When the enrich function reads its settings, Then it stops, naming the variable and why
    with pytest.raises(ConfigurationError, match=r"VT_BASE_URL: .*must be an https:// URL"):
        EnrichSettings.from_environ({**ENRICH, "VT_BASE_URL": url})


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("http://127.0.0.1:18950", "got 'http://127.0.0.1:18950'"),
        ("https://vt-gateway.corp.example", "got 'https://vt-gateway.corp.example'"),
        ("https://www.virustotal.com/api/v2", "got 'https://www.virustotal.com/api/v2'"),
        ("https://www.virustotal.com/api/v3?x=1", "with no query or fragment, got"),
    ],
)
def test_a_virustotal_url_that_is_not_the_api_v3_root_stops_both_functions_that_read_it(
    url: str, said: str
) -> None:
    # Given VT_BASE_URL naming a host without VirusTotal API v3's root (vt-py's host= convention), whose
    # /domains/<name> VirusTotal would answer 404 for every IOC
    approval = {
        **ENRICH,
        "APPROVAL_SIGNING_KEY_SECRET": "k",
        "APPROVAL_TOPIC_ARN": "t",
        "CASE_PAGE_KEY_SECRET": "c",
    }

    # When the enrich function, or the approval function (VT Augment), reads its settings
    # Then it stops at start-up, naming the variable, what it must be and what it was given
    for settings in (EnrichSettings, ApprovalSettings):
        with pytest.raises(
            ConfigurationError, match=r"VT_BASE_URL: .*must end in /api/v3 \(VirusTotal API v3's root\)"
        ) as raised:
            settings.from_environ({**approval, "VT_BASE_URL": url})
        assert said in str(raised.value)


@pytest.mark.parametrize(
    "url",
    [
        "http://user:s3cret-word@127.0.0.1:8443/api/v3",
        "https://s3cret-word@gateway.example.com/api/v3",
        "http://user:s3cret-word@10.0.0.5/api/v2",
    ],
)
def test_a_virustotal_url_carrying_credentials_is_refused_without_repeating_them(url: str) -> None:
    # Given VT_BASE_URL with a user name or password in it, which every run's progress and report would show
    # When the enrich function reads its settings
    with pytest.raises(
        ConfigurationError, match=r"VT_BASE_URL: .*must carry no user name or password"
    ) as raised:
        EnrichSettings.from_environ({**ENRICH, "VT_BASE_URL": url})

    # Then it stops at start-up, and the password is nowhere in what it says
    assert "s3cret-word" not in str(raised.value)


@pytest.mark.parametrize(
    ("provider", "variable", "extra"),
    [
        ("jira", "JIRA_BASE_URL", {"JIRA_PROJECT_KEY": "SEC"}),
        ("servicenow", "SERVICENOW_BASE_URL", {}),
        ("swimlane", "SWIMLANE_BASE_URL", {"SWIMLANE_APPLICATION_ID": "aBcDeFgHiJkLmNoPq"}),
    ],
)
def test_a_ticket_provider_url_without_https_stops_the_ticket_function(
    provider: str, variable: str, extra: dict[str, str]
) -> None:
    # Given the provider's site over plain http
    environment = {**TICKET, **extra, "TICKET_PROVIDER": provider, variable: "http://tickets.example.com"}

    # When the ticket function reads its settings, Then it stops, naming the variable
    with pytest.raises(ConfigurationError, match=rf"{variable}: .*must be an https:// URL"):
        TicketSettings.from_environ(environment)

    # And over https the same settings are accepted
    accepted = TicketSettings.from_environ({**environment, variable: "https://tickets.example.com"})
    assert accepted.ticket_provider == provider


def test_a_host_that_merely_starts_like_loopback_is_not_loopback() -> None:
    # Given hosts that look like loopback in part, When checked, Then only real loopback passes over http
    assert https_url_problem("http://127.0.0.1:1/") is None
    assert https_url_problem("http://localhost.evil.example/") is not None
    assert https_url_problem("http://evil.example/127.0.0.1") is not None
