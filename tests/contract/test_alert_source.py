"""`AlertSource`: the in-memory source and both vendors' adapters, CrowdStrike Falcon's Alerts API
(`FalconAlertSource`) and Google Workspace's Alert Center (`WorkspaceAlertSource`, through google-auth as
the poller calls it), list the alerts created since a time, oldest first, each unchanged, page by page as
they are read; a vendor that stops answering mid-way ends the listing with a `TransientError` after the
alerts read before, and one refusing the credentials with a `ConfigurationError`.

The vendors are the loopback servers of the pollers' functional tests (`tests/functional/test_pollers.py`),
answering as CrowdStrike and Google document, two alerts a page, serving real alerts (tests/corpus).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from google.auth.transport.requests import AuthorizedSession
from google.oauth2 import service_account

from tests.contract.conftest import IN_MEMORY
from tests.functional.test_pollers import (
    ADMIN,
    CLIENT_ID,
    CLIENT_SECRET,
    WORKSPACE_SAMPLES,
    FalconApi,
    GoogleApis,
    falcon_samples,
    load,
    service_account_key,
)
from vtriage.adapters.falcon import FalconAlertSource, FalconClient, FalconCredentials
from vtriage.adapters.workspace import SCOPE, WorkspaceAlertSource
from vtriage.errors import ConfigurationError, TransientError
from vtriage.fakes import FakeAlertSource
from vtriage.ports import AlertSource, PolledAlert

FALCON = "falcon"
WORKSPACE = "workspace"
SOURCES = (
    pytest.param(IN_MEMORY, id=IN_MEMORY),
    pytest.param(FALCON, id="falcon-loopback", marks=pytest.mark.functional),
    pytest.param(WORKSPACE, id="workspace-loopback", marks=pytest.mark.functional),
)
PAGE_SIZE = 2
# Whole seconds: both vendors' filters name a second.
SINCE = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Vendor:
    """The source under test; a way to have the vendor serve a real alert created at a time (the alert as
    served: what a listing must give back, with its id); and ways to make the vendor stop answering, or
    refuse the credentials."""

    source: AlertSource
    serve: Callable[[datetime], tuple[str, dict[str, Any]]]
    stop_answering: Callable[[], None]
    refuse_credentials: Callable[[], None]


@pytest.fixture(params=SOURCES)
def vendor(request: pytest.FixtureRequest) -> Iterator[Vendor]:
    if request.param == IN_MEMORY:
        yield _in_memory()
    elif request.param == FALCON:
        yield from _falcon()
    else:
        yield from _workspace()


def _in_memory() -> Vendor:
    fake = FakeAlertSource()
    samples = iter(falcon_samples())

    def serve(created: datetime) -> tuple[str, dict[str, Any]]:
        served = {**next(samples), "created_timestamp": created.isoformat()}
        fake.alerts.append(PolledAlert(served["composite_id"], created, json.dumps(served)))
        return served["composite_id"], served

    def stop_answering() -> None:
        # The listing read one page: it fails from there.
        fake.fail_after = PAGE_SIZE

    def refuse() -> None:
        fake.refused = True

    return Vendor(fake, serve, stop_answering, refuse)


def _falcon() -> Iterator[Vendor]:
    api = FalconApi()
    samples = iter(falcon_samples())

    def serve(created: datetime) -> tuple[str, dict[str, Any]]:
        served = api.add(next(samples), created)
        return str(served["composite_id"]), served

    def stop_answering() -> None:
        # The next page's entities fail (HTTP 500), as the pollers' test of a failing CrowdStrike.
        api.fail_entities_after = 0

    def refuse() -> None:
        # Every request is refused 401 whatever its token: an API client without the scope Alerts: Read.
        api.refuse_every_token = True

    with api.server, requests.Session() as session:
        client = FalconClient(session, api.server.base_url, FalconCredentials(CLIENT_ID, CLIENT_SECRET))
        yield Vendor(FalconAlertSource(client, page_size=PAGE_SIZE), serve, stop_answering, refuse)


def _workspace() -> Iterator[Vendor]:
    apis = GoogleApis(page_size=PAGE_SIZE)
    samples = iter([load(name) for name in WORKSPACE_SAMPLES])

    def serve(created: datetime) -> tuple[str, dict[str, Any]]:
        served = apis.add(next(samples), created)
        return str(served["alertId"]), served

    def stop_answering() -> None:
        # Every request from now on is throttled (429), beyond the waits the adapter allows.
        apis.throttle_next = 100

    def refuse() -> None:
        apis.refuse_delegation = True

    with apis.server:
        key, apis.public_key = service_account_key(apis.token_uri)
        apis.client_email = key["client_email"]
        # As the Workspace poller's composition root builds it (vtriage.composition.workspace_poller).
        credentials = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
            key, scopes=[SCOPE]
        ).with_subject(ADMIN)
        with AuthorizedSession(credentials, max_refresh_attempts=1) as session:  # type: ignore[no-untyped-call]
            # Google's waits between throttled attempts are cut to nothing: the listing is what is tested.
            source = WorkspaceAlertSource(
                session, base_url=apis.server.base_url, page_size=PAGE_SIZE, max_wait_seconds=0
            )
            yield Vendor(source, serve, stop_answering, refuse)


def _read(alert: PolledAlert) -> tuple[str, datetime | None, dict[str, Any]]:
    return alert.alert_id, alert.created_at, json.loads(alert.body)


def test_the_alerts_created_since_are_listed_oldest_first_unchanged_across_pages(vendor: Vendor) -> None:
    # Given five alerts served out of order: one a second before the time asked for, one at that very
    # second, three after it
    at = {minutes: SINCE + timedelta(minutes=minutes) for minutes in (30, 0, 10)}
    served = {minutes: vendor.serve(created) for minutes, created in at.items()}
    vendor.serve(SINCE - timedelta(seconds=1))
    served[20] = vendor.serve(SINCE + timedelta(minutes=20))

    # When the alerts created since that time are listed
    listed = [_read(alert) for alert in vendor.source.alerts_created_since(SINCE)]

    # Then those four are listed, oldest first, each with its id, its creation time and its body as served
    expected = [
        (served[minutes][0], SINCE + timedelta(minutes=minutes), served[minutes][1])
        for minutes in (0, 10, 20, 30)
    ]
    assert listed == expected


def test_a_vendor_with_no_alert_since_lists_none(vendor: Vendor) -> None:
    # Given one alert, created before the time asked for
    vendor.serve(SINCE - timedelta(hours=1))

    # When the alerts created since are listed, Then there are none
    assert list(vendor.source.alerts_created_since(SINCE)) == []


def test_a_vendor_that_stops_answering_mid_way_ends_the_listing_after_the_alerts_read(vendor: Vendor) -> None:
    # Given four alerts, two a page
    first = [vendor.serve(SINCE + timedelta(minutes=minutes)) for minutes in (1, 2)]
    [vendor.serve(SINCE + timedelta(minutes=minutes)) for minutes in (3, 4)]

    # When the first page is read, and the vendor then stops answering
    listing = iter(vendor.source.alerts_created_since(SINCE))
    read = [_read(next(listing)) for _ in range(PAGE_SIZE)]
    vendor.stop_answering()

    # Then the first page's alerts were given, and the rest of the listing is a transient error
    assert [(alert_id, body) for alert_id, _, body in read] == first
    with pytest.raises(TransientError):
        next(listing)


def test_a_vendor_refusing_the_credentials_is_a_configuration_error(vendor: Vendor) -> None:
    # Given an alert, and a vendor refusing the credentials
    vendor.serve(SINCE + timedelta(minutes=1))
    vendor.refuse_credentials()

    # When the alerts are listed, Then nothing is listed: the credentials are for a person to fix
    with pytest.raises(ConfigurationError):
        list(vendor.source.alerts_created_since(SINCE))
