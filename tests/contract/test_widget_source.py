"""`WidgetSource`: the in-memory source and the approval function's own (`VirusTotalWidgets`: the
VirusTotal client, its key read from the template's secret on moto) mint a VT Augment widget of an
observable each time they are asked, on VirusTotal's widget pages with the detection ratio; refuse, as
VirusTotal does, a key whose licence lacks VT Augment (403) or whose quota is spent (429); and give up by
the deadline a page waits until.

VirusTotal is the replay server on loopback (`vtriage_local.replay`), answering `GET /api/v3/widget/url`
as VirusTotal documents it, from the bundled recordings, with the key the stack's secret holds.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import pytest
from aws_lambda_powertools.utilities.parameters import SecretsProvider

from tests.contract.conftest import IN_MEMORY, OVER_HTTP, client
from vtriage.composition.approval import VirusTotalWidgets
from vtriage.config.approval import ApprovalSettings
from vtriage.errors import ConfigurationError, TransientError
from vtriage.fakes import FakeWidgetSource
from vtriage.ports import WidgetSource
from vtriage.virustotal.errors import (
    VirusTotalForbiddenError,
    VirusTotalQuotaExceededError,
    VirusTotalUnavailableError,
)
from vtriage.virustotal.widget import Widget, framable
from vtriage_local.replay import ReplayServer, bundled_recordings
from vtriage_local.stack import LocalAws

# A recorded observable (local/vtriage_local/recordings/domains/tawuhoju.com.json).
OBSERVABLE = "tawuhoju.com"
WIDGET_PAGES = "https://www.virustotal.com/ui/widget/html/"


@pytest.fixture(params=OVER_HTTP)
def implementation(request: pytest.FixtureRequest) -> str:
    """In memory, or the approval function's widgets against the replay server on loopback."""
    return str(request.param)


@dataclass(frozen=True)
class Minting:
    """A way to get a widget source whose key is licensed for VT Augment or not, or whose quota is
    spent; the widgets VirusTotal minted so far; a way to make VirusTotal hold its next answer longer
    than a page waits."""

    source: Callable[..., WidgetSource]
    minted: Callable[[], int]
    hold_next_answer: Callable[[], None]


@pytest.fixture
def minting(implementation: str, request: pytest.FixtureRequest) -> Iterator[Minting]:
    if implementation == IN_MEMORY:
        fakes: list[FakeWidgetSource] = []

        def fake(*, licensed: bool = True, quota_spent: bool = False) -> WidgetSource:
            error: Exception | None = None
            if not licensed:
                error = VirusTotalForbiddenError("You are not allowed to perform the requested operation")
            elif quota_spent:
                error = VirusTotalQuotaExceededError("Quota exceeded")
            fakes.append(FakeWidgetSource(error=error))
            return fakes[-1]

        yield Minting(fake, lambda: sum(len(source.queries) for source in fakes), lambda: None)
        return
    aws: LocalAws = request.getfixturevalue("aws")
    with ExitStack() as stack:
        servers: list[ReplayServer] = []

        def replayed(*, licensed: bool = True, quota_spent: bool = False) -> WidgetSource:
            replay = stack.enter_context(
                ReplayServer(bundled_recordings(), api_key=aws.vt_api_key, vt_augment=licensed)
            )
            servers.append(replay)
            if quota_spent:
                # Every attempt the page's client makes (two).
                replay.fail_next("429", 2)
            return _approval_widgets(aws, replay.base_url)

        yield Minting(
            replayed,
            lambda: sum(server.widget_requests for server in servers),
            lambda: servers[-1].fail_next("timeout"),
        )


def _approval_widgets(aws: LocalAws, vt_base_url: str) -> WidgetSource:
    """The approval function's widget source, with its settings as deployed with VT Augment on, and
    VirusTotal at `vt_base_url`."""
    environ = {**os.environ, "VT_AUGMENT": "true", "VT_BASE_URL": vt_base_url}
    environ.pop("VT_API_KEY", None)
    secrets = SecretsProvider(boto3_client=client(aws, "secretsmanager"))
    return VirusTotalWidgets(ApprovalSettings.from_environ(environ), lambda: secrets)


def _on_widget_pages(widget: Widget) -> bool:
    return widget.url.startswith(WIDGET_PAGES) and framable(widget.url) == widget.url


def test_each_request_mints_a_widget_on_virustotals_pages_with_the_detection_ratio(minting: Minting) -> None:
    # Given a key licensed for VT Augment
    source = minting.source()

    # When the widget of an observable is asked for twice (a page opened twice)
    first, second = source.widget(OBSERVABLE), source.widget(OBSERVABLE)

    # Then each is a widget page of VirusTotal's, with how many engines of how many flag the observable,
    # and VirusTotal minted one each time
    for widget in (first, second):
        assert _on_widget_pages(widget), widget.url
        assert widget.detections is not None
        assert widget.total is not None
        assert 0 <= widget.detections <= widget.total
    assert minting.minted() == 2


def test_a_key_whose_licence_lacks_vt_augment_is_refused_for_a_person_to_fix(minting: Minting) -> None:
    # Given a key whose licence does not include VT Augment
    source = minting.source(licensed=False)

    # When a widget is asked for, Then VirusTotal refuses it (403): a configuration to fix, not to retry
    with pytest.raises(VirusTotalForbiddenError) as refused:
        source.widget(OBSERVABLE)
    assert isinstance(refused.value, ConfigurationError)
    assert not isinstance(refused.value, TransientError)


def test_a_key_whose_quota_is_spent_is_refused_for_now(minting: Minting) -> None:
    # Given a key whose quota is spent
    source = minting.source(quota_spent=True)

    # When a widget is asked for, Then VirusTotal refuses it (429), worth asking again later
    with pytest.raises(VirusTotalQuotaExceededError) as refused:
        source.widget(OBSERVABLE)
    assert isinstance(refused.value, TransientError)


def test_a_widget_is_minted_or_given_up_by_the_deadline(minting: Minting) -> None:
    # Given VirusTotal holding its next answer longer than a page waits, and a deadline 5 s away
    source = minting.source()
    minting.hold_next_answer()
    deadline = time.monotonic() + 5

    # When a widget is asked for with that deadline
    outcome: object
    try:
        outcome = source.widget(OBSERVABLE, deadline)
    except VirusTotalUnavailableError as error:
        outcome = error

    # Then it is over by then: minted, or given up as VirusTotal unavailable
    assert time.monotonic() <= deadline
    assert isinstance(outcome, VirusTotalUnavailableError) or (
        isinstance(outcome, Widget) and _on_widget_pages(outcome)
    )
