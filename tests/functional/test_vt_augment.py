"""VT Augment end to end: an alert triaged on moto through the real handlers and state machine, its ticket
carrying the case page link, and that link opened on the approval function's URL (the real handler),
VirusTotal answered by the replay server as its widget endpoint documents. Triage mints no widget; each
opening of the page mints them afresh; a widget VirusTotal refuses leaves a link and the reason; without
the setting the page links to VirusTotal and asks it nothing."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.functional.conftest import event, wait_for_execution
from vtriage_local.alert_files import Delivery
from vtriage_local.replay import ReplayServer, bundled_recordings
from vtriage_local.runner import REPLAY_QUOTA, Pipeline
from vtriage_local.stack import LocalAws

pytestmark = pytest.mark.functional

# A GuardDuty DNS exfiltration finding: its one IOC, telemetry-sync.net, is recorded and suspicious, so
# the case goes to a ticket.
SAMPLE = "synthetic-guardduty-ec2-suspicious-dns.json"
DOMAIN = "telemetry-sync.net"
WIDGET_OF_DOMAIN = (
    "https://www.virustotal.com/ui/widget/html/"
    + base64.urlsafe_b64encode(f"replay||domains||{DOMAIN}".encode()).decode()
)
TICKET_WAIT_S = 30.0


@dataclass
class Triaged:
    """A stack on moto whose one case went through triage to its ticket, and what that ticket says."""

    aws: LocalAws
    replay: ReplayServer
    ticket: str
    case_page_url: str
    vt_requests_in_triage: int
    widget_requests_in_triage: int


def _ticket_inbox(aws: LocalAws) -> str:
    """A queue subscribed to the ticket topic, where an analyst's tickets arrive."""
    sqs, sns = aws.client("sqs"), aws.client("sns")
    url = str(sqs.create_queue(QueueName="ticket-inbox")["QueueUrl"])
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=aws.ref("TicketTopic"), Protocol="sqs", Endpoint=arn)
    return url


def _next_ticket(aws: LocalAws, inbox: str) -> str:
    sqs = aws.client("sqs")
    deadline = time.monotonic() + TICKET_WAIT_S
    while time.monotonic() < deadline:
        for message in sqs.receive_message(QueueUrl=inbox, MaxNumberOfMessages=10).get("Messages", []):
            return str(json.loads(message["Body"])["Message"])
        time.sleep(0.05)
    raise AssertionError("no ticket arrived")


def _triage(aws: LocalAws, replay: ReplayServer) -> Triaged:
    """The sample through the pipeline to its ticket, as GuardDuty's rule would queue it."""
    inbox = _ticket_inbox(aws)
    pipeline = Pipeline(aws)
    pipeline.enqueue(Delivery(source_id=SAMPLE, body=event(SAMPLE).read_text()))
    _, failures = pipeline.drain()
    assert failures == []
    sfn = aws.client("stepfunctions")
    for execution in sfn.list_executions(stateMachineArn=aws.ref("TriageStateMachine"))["executions"]:
        assert wait_for_execution(sfn, execution["executionArn"])["status"] == "SUCCEEDED"
    ticket = _next_ticket(aws, inbox)
    [link] = re.findall(r"^Case page:\s+(\S+)$", ticket, flags=re.MULTILINE)
    return Triaged(aws, replay, ticket, link, replay.request_count, replay.widget_requests)


def _open(aws: LocalAws, link: str) -> dict[str, Any]:
    """What the approval function's URL answers a browser that opens the link."""
    request = {
        "version": "2.0",
        "rawPath": "/",
        "rawQueryString": urlsplit(link).query,
        "requestContext": {"http": {"method": "GET", "path": "/", "sourceIp": "198.51.100.23"}},
        "isBase64Encoded": False,
    }
    response: dict[str, Any] = aws.invoke("ApprovalFunction", request)
    return response


def _csp(page: dict[str, Any], *, frames: bool) -> str:
    """The CSP a page must carry: nothing loaded but its one inline stylesheet, allowed by that text's
    SHA-256 as a browser checks it; VirusTotal's frames only when it frames any."""
    [stylesheet] = re.findall(r"<style>(.*?)</style>", page["body"], flags=re.DOTALL)
    digest = base64.b64encode(hashlib.sha256(stylesheet.encode()).digest()).decode()
    csp = (
        f"default-src 'none'; style-src 'sha256-{digest}'; form-action 'self'; base-uri 'none'; "
        "frame-ancestors 'none'"
    )
    return csp + ("; frame-src https://www.virustotal.com" if frames else "")


def _frames(page: dict[str, Any]) -> list[str]:
    return [html.unescape(src) for src in re.findall(r'<iframe src="([^"]*)"', page["body"])]


@pytest.fixture(scope="module")
def augmented() -> Iterator[Triaged]:
    """A stack deployed with VirusTotalAugment=true, its case triaged and ticketed."""
    with (
        pytest.MonkeyPatch.context() as monkeypatch,
        ReplayServer(bundled_recordings(), api_key="local-replay-key") as replay,
    ):
        monkeypatch.setenv("VT_BASE_URL", replay.base_url)
        monkeypatch.delenv("VT_API_KEY", raising=False)
        with LocalAws(parameters={"VirusTotalAugment": "true", **REPLAY_QUOTA}) as aws:
            yield _triage(aws, replay)


def test_triage_mints_no_widget_and_opening_the_tickets_case_page_mints_one(augmented: Triaged) -> None:
    # Given a case triaged through VirusTotal with VT Augment on: its IOC was looked up, no widget minted
    assert augmented.vt_requests_in_triage >= 1
    assert augmented.widget_requests_in_triage == 0
    # And its ticket links to the case's page, saying until when and that it decides nothing
    assert "decides nothing, works until" in augmented.ticket

    # When the analyst opens the ticket's case page link
    page = _open(augmented.aws, augmented.case_page_url)

    # Then the page shows the case, with the IOC's widget minted now from VirusTotal's widget endpoint
    assert page["statusCode"] == 200
    assert _frames(page) == [WIDGET_OF_DOMAIN]
    assert augmented.replay.widget_requests == 1
    assert f"<h3>Domain <code>{DOMAIN}</code></h3>" in page["body"]
    assert "<dt>Verdict</dt><dd><span class='badge suspicious'>suspicious</span></dd>" in page["body"]
    # And the page allows exactly VirusTotal's frame origin
    assert page["headers"]["content-security-policy"] == _csp(page, frames=True)

    # When the same stored link is opened again, Then a widget is minted afresh (none is ever stored)
    again = _open(augmented.aws, augmented.case_page_url)
    assert _frames(again) == [WIDGET_OF_DOMAIN]
    assert augmented.replay.widget_requests == 2


def test_a_widget_virustotal_refuses_leaves_the_case_page_with_a_link_and_the_reason(
    augmented: Triaged, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given VirusTotal answering the widget endpoint 429 (the key's quota spent), on every attempt
    augmented.replay.fail_next("429", count=2)

    # When the case page is opened
    page = _open(augmented.aws, augmented.case_page_url)

    # Then it shows the case, with a link to VirusTotal's page of the IOC and why there is no widget
    assert page["statusCode"] == 200
    assert _frames(page) == []
    assert f'<a href="https://www.virustotal.com/gui/domain/{DOMAIN}"' in page["body"]
    assert "the VirusTotal key&#x27;s quota is spent for now (VirusTotal answered 429)" in page["body"]
    assert page["headers"]["content-security-policy"] == _csp(page, frames=False)

    # Given a key whose licence lacks VT Augment (VirusTotal answers the widget endpoint 403)
    with ReplayServer(bundled_recordings(), api_key="local-replay-key", vt_augment=False) as unlicensed:
        monkeypatch.setenv("VT_BASE_URL", unlicensed.base_url)

        # When the case page is opened, Then it says so beside the link
        refused = _open(augmented.aws, augmented.case_page_url)
        assert refused["statusCode"] == 200
        assert unlicensed.widget_requests == 1
    assert _frames(refused) == []
    assert "not licensed for VT Augment (VirusTotal answered 403)" in refused["body"]


def test_without_vt_augment_the_case_page_links_to_virustotal_and_asks_it_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a stack deployed without VirusTotalAugment (the default), its case triaged and ticketed
    with ReplayServer(bundled_recordings(), api_key="local-replay-key") as replay:
        monkeypatch.setenv("VT_BASE_URL", replay.base_url)
        monkeypatch.delenv("VT_API_KEY", raising=False)
        with LocalAws(parameters=REPLAY_QUOTA) as aws:
            triaged = _triage(aws, replay)

            # When the analyst opens the ticket's case page link
            page = _open(aws, triaged.case_page_url)

            # Then the page shows the case with a link to VirusTotal's page of the IOC, and frames nothing
            assert page["statusCode"] == 200
            assert _frames(page) == []
            assert f'<a href="https://www.virustotal.com/gui/domain/{DOMAIN}"' in page["body"]
            assert "no widget" not in page["body"]
            assert page["headers"]["content-security-policy"] == _csp(page, frames=False)
            # And opening it sent VirusTotal nothing: no widget, no lookup, with no key read for it
            assert replay.request_count == triaged.vt_requests_in_triage
            assert replay.widget_requests == 0
