"""The pollers' settings: validated when the function starts, each bad value named."""

from __future__ import annotations

from datetime import timedelta

import pytest

from vtriage.adapters.falcon import FALCON_CLOUDS
from vtriage.config.pollers import FalconPollerSettings, WorkspacePollerSettings
from vtriage.errors import ConfigurationError

COMMON = {
    "AWS_REGION": "us-east-1",
    "CASES_TABLE_NAME": "vtriage-cases",
    "ALERT_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/vtriage-AlertQueue",
    "GUARDRAILS_TABLE_NAME": "vtriage-guardrails",
}
FALCON = {**COMMON, "FALCON_API_SECRET_NAME": "vtriage/falcon-api-client"}
WORKSPACE = {
    **COMMON,
    "WORKSPACE_SERVICE_ACCOUNT_SECRET_NAME": "vtriage/workspace-service-account",
    "WORKSPACE_DELEGATED_ADMIN": "security-admin@example.com",
}


def test_the_falcon_poller_defaults_to_the_us_1_cloud_and_a_day_back_then_a_quarter_hour_overlap() -> None:
    # When the Falcon poller's settings are read with only what the template must set
    settings = FalconPollerSettings.from_environ(FALCON)

    # Then it calls the us-1 cloud, reads a day back at first, then 15 minutes behind its cursor,
    # remembers queued alerts a week, and queues at most 500 a poll
    assert FALCON_CLOUDS[settings.falcon_cloud] == "https://api.crowdstrike.com"
    assert settings.falcon_base_url is None
    assert settings.first_window == timedelta(hours=24)
    assert settings.overlap == timedelta(minutes=15)
    assert settings.remember_for == timedelta(days=7)
    assert settings.max_alerts_per_poll == 500


@pytest.mark.parametrize(
    ("cloud", "host"),
    [
        ("us-1", "api.crowdstrike.com"),
        ("US-2", "api.us-2.crowdstrike.com"),
        ("eu-1", "api.eu-1.crowdstrike.com"),
        ("us-gov-1", "api.laggar.gcw.crowdstrike.com"),
    ],
)
def test_each_falcon_cloud_has_its_api_host(cloud: str, host: str) -> None:
    # When the poller is set to a cloud, Then it calls that cloud's API over https
    settings = FalconPollerSettings.from_environ({**FALCON, "FALCON_CLOUD": cloud})
    assert FALCON_CLOUDS[settings.falcon_cloud] == f"https://{host}"


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("FALCON_CLOUD", "us-3", "FALCON_CLOUD"),
        ("FALCON_BASE_URL", "http://api.crowdstrike.example", "https"),
        ("FALCON_API_SECRET_NAME", "", "FALCON_API_SECRET_NAME"),
        ("POLL_PAGE_SIZE", "5000", "POLL_PAGE_SIZE"),
        ("POLL_REMEMBER_DAYS", "0.005", "POLL_REMEMBER_DAYS must be longer than POLL_OVERLAP_MINUTES"),
    ],
)
def test_a_bad_falcon_poller_setting_stops_the_function_naming_it(
    variable: str, value: str, named: str
) -> None:
    # When a setting is out of its range or form, Then the function stops with the setting named
    with pytest.raises(ConfigurationError, match=named):
        FalconPollerSettings.from_environ({**FALCON, variable: value})


def test_a_loopback_falcon_url_may_be_plain_http_for_local_runs() -> None:
    # When the base URL is a loopback server's, Then http is accepted (nothing leaves the machine)
    settings = FalconPollerSettings.from_environ({**FALCON, "FALCON_BASE_URL": "http://127.0.0.1:8080"})
    assert settings.falcon_base_url == "http://127.0.0.1:8080"


def test_the_workspace_poller_needs_the_delegated_administrator() -> None:
    # When the administrator the service account acts as is missing or not an address
    for value in (None, "not-an-address"):
        environ = {k: v for k, v in WORKSPACE.items() if k != "WORKSPACE_DELEGATED_ADMIN"}
        if value is not None:
            environ["WORKSPACE_DELEGATED_ADMIN"] = value

        # Then the function stops, naming it
        with pytest.raises(ConfigurationError, match="WORKSPACE_DELEGATED_ADMIN"):
            WorkspacePollerSettings.from_environ(environ)


@pytest.mark.parametrize(("given", "kept"), [("C046psxkn", "046psxkn"), ("046psxkn", "046psxkn"), ("", None)])
def test_the_workspace_customer_id_is_kept_without_the_admin_consoles_leading_c(
    given: str, kept: str | None
) -> None:
    # When the customer id is given as the Admin console shows it, or as the API takes it, or not at all
    settings = WorkspacePollerSettings.from_environ({**WORKSPACE, "WORKSPACE_CUSTOMER_ID": given})

    # Then the API gets it without the "C" (and Google infers it when none is given)
    assert settings.customer_id == kept


def test_the_alert_center_url_must_be_https() -> None:
    # When the Alert Center URL is plain http to a remote host, Then the function stops
    with pytest.raises(ConfigurationError, match="https"):
        WorkspacePollerSettings.from_environ(
            {**WORKSPACE, "WORKSPACE_ALERT_CENTER_URL": "http://example.com"}
        )
