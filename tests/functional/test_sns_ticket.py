"""SnsTicketSink against moto: the report a subscriber receives, and the ticket that names it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from tests.functional.conftest import use_dummy_aws_credentials
from vtriage.adapters.sns import SnsTicketSink
from vtriage.display import Report, ReportLine
from vtriage.errors import TransientError
from vtriage.models import Alert, Case, CaseStatus, Severity, Verdict

pytestmark = pytest.mark.functional

REGION = "us-east-1"
NOW = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
REPORT = Report(
    headline="HIGH 8, MALICIOUS",
    lines=(
        ReportLine(label="Indicators of compromise (1)"),
        ReportLine(label="- ip", value="198.51.100.7: MALICIOUS", indent=2),
    ),
)


@dataclass
class Subscribed:
    """A topic on moto with an SQS queue subscribed to it."""

    sns: Any
    sqs: Any
    topic_arn: str
    queue_url: str

    def received(self) -> list[dict[str, Any]]:
        """The SNS notifications the queue holds, as SNS delivers them to SQS (a JSON envelope)."""
        response = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10)
        messages = response.get("Messages", [])
        return [json.loads(message["Body"]) for message in messages]


@pytest.fixture
def subscribed(monkeypatch: pytest.MonkeyPatch) -> Iterator[Subscribed]:
    """A ticket topic with a queue subscribed, on moto, with dummy credentials."""
    use_dummy_aws_credentials(monkeypatch, REGION)
    with mock_aws():
        sns = boto3.client("sns", region_name=REGION)
        sqs = boto3.client("sqs", region_name=REGION)
        topic_arn = sns.create_topic(Name="vtriage-tickets")["TopicArn"]
        queue_url = sqs.create_queue(QueueName="ticket-inbox")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
        yield Subscribed(sns, sqs, topic_arn, queue_url)


def make_case(title: str = "198.51.100.7 is performing SSH brute force attacks", finding: str = "f1") -> Case:
    alert = Alert(
        id=finding,
        source="guardduty",
        type="UnauthorizedAccess:EC2/SSHBruteForce",
        title=title,
        severity=Severity(score=8),
        created_at=NOW,
        updated_at=NOW,
        version="1",
        account="123456789012",
        region=REGION,
    )
    return Case(
        case_id=alert.case_id,
        alert=alert,
        status=CaseStatus.ENRICHED,
        verdict=Verdict.MALICIOUS,
        created_at=NOW,
        updated_at=NOW,
    )


def test_the_report_reaches_a_subscriber_with_a_subject_and_the_ticket_id(subscribed: Subscribed) -> None:
    # Given a ticket topic with a queue subscribed
    sink = SnsTicketSink(subscribed.sns, subscribed.topic_arn, now=lambda: NOW)
    case = make_case()

    # When a ticket is opened for a case
    ticket = sink.open(case, REPORT)

    # Then the subscriber reads the report as plain text, under a subject naming the case
    [notification] = subscribed.received()
    assert notification["Message"] == REPORT.text()
    assert notification["Message"].endswith("Indicators of compromise (1)\n  - ip: 198.51.100.7: MALICIOUS\n")
    assert notification["Subject"] == (
        f"[HIGH] malicious {ticket.id}: 198.51.100.7 is performing SSH brute force attacks"
    )
    assert notification["MessageAttributes"]["case_id"]["Value"] == case.case_id
    assert notification["MessageAttributes"]["verdict"]["Value"] == "malicious"
    # And the ticket names the provider, a short id and the time it was opened
    assert ticket.provider == "sns"
    assert ticket.id.startswith("VT-")
    assert len(ticket.id) <= 16
    assert ticket.created_at == NOW


def test_the_ticket_id_is_stable_for_a_case_and_differs_between_cases(subscribed: Subscribed) -> None:
    # Given a sink
    sink = SnsTicketSink(subscribed.sns, subscribed.topic_arn, now=lambda: NOW)

    # When tickets are opened twice for one case and once for another
    first = sink.open(make_case(finding="f1"), REPORT)
    again = sink.open(make_case(finding="f1"), REPORT)
    other = sink.open(make_case(finding="f2"), REPORT)

    # Then the same case names the same ticket, another case another one
    assert first.id == again.id
    assert other.id != first.id


def test_a_long_non_ascii_title_still_makes_a_subject_sns_accepts(subscribed: Subscribed) -> None:
    # Given a case whose title is long, accented and spans lines
    title = "Connexion SSH répétée depuis 198.51.100.7\nvers l\u2019instance \u2014 " + "très " * 40
    sink = SnsTicketSink(subscribed.sns, subscribed.topic_arn, now=lambda: NOW)

    # When its ticket is opened
    sink.open(make_case(title=title), REPORT)

    # Then the subject is ASCII, one line, under 100 characters, and still readable, the break escaped
    [notification] = subscribed.received()
    subject = notification["Subject"]
    assert subject.isascii()
    assert "\n" not in subject
    assert len(subject) < 100
    assert "Connexion SSH repetee depuis 198.51.100.7\\nvers l'instance - tr" in subject
    assert subject.endswith("...")


def test_a_kilobyte_title_of_control_characters_still_makes_a_subject_sns_accepts(
    subscribed: Subscribed,
) -> None:
    # Given a title of 1 KB made of line breaks, tabs, NULs and a right-to-left override
    title = ("Approve\r\n\t\x00\u202e" * 120)[:1024]
    sink = SnsTicketSink(subscribed.sns, subscribed.topic_arn, now=lambda: NOW)

    # When its ticket is opened
    sink.open(make_case(title=title), REPORT)

    # Then the subject has no control character, is ASCII and at most 99 characters
    [notification] = subscribed.received()
    subject = notification["Subject"]
    assert subject.isascii()
    assert not any(ord(character) < 32 or ord(character) == 127 for character in subject)
    assert len(subject) <= 99
    assert subject.startswith("[HIGH] malicious VT-")


def test_a_report_beyond_the_sns_limit_is_cut_with_a_notice(subscribed: Subscribed) -> None:
    # Given a report of 300 KB (a case with a great many IOCs)
    report = Report(
        headline="HIGH 8, MALICIOUS",
        lines=(ReportLine(label="- ip", value="198.51.100.7: MALICIOUS", indent=2),) * 10_000,
    )
    sink = SnsTicketSink(subscribed.sns, subscribed.topic_arn, now=lambda: NOW)

    # When its ticket is opened
    sink.open(make_case(), report)

    # Then the published message fits under 256 KB and says where the rest is
    [notification] = subscribed.received()
    message = notification["Message"]
    assert len(message.encode()) <= 250_000
    assert message.startswith("vtriage case report: HIGH 8, MALICIOUS\n")
    assert "  - ip: 198.51.100.7: MALICIOUS\n" in message
    assert "the case in DynamoDB holds everything" in message


def test_throttling_is_transient() -> None:
    # Given SNS throttling the publish (botocore's Stubber: no network)
    client = boto3.client(
        "sns", region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    stubber = Stubber(client)
    stubber.add_client_error("publish", service_error_code="Throttling", http_status_code=400)
    stubber.activate()
    sink = SnsTicketSink(client, f"arn:aws:sns:{REGION}:123456789012:vtriage-tickets", now=lambda: NOW)

    # When a ticket is opened, Then the state machine's Retry gets a TransientError
    with pytest.raises(TransientError, match="Throttling"):
        sink.open(make_case(), REPORT)
    stubber.assert_no_pending_responses()
