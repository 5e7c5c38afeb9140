"""SnsTicketSink against moto: the report a subscriber receives, and the ticket that names it; and the ticket
a bundled sample gets through the whole local pipeline, which the README shows."""

from __future__ import annotations

import io
import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from tests.functional.conftest import event, use_dummy_aws_credentials
from vtriage.adapters.sns import SnsTicketSink
from vtriage.errors import TransientError
from vtriage.intake import read_document
from vtriage.models import Alert, Case, CaseStatus, Severity, Verdict
from vtriage.report import Report, ReportLine
from vtriage_local.alert_files import Delivery
from vtriage_local.replay import ReplayServer, bundled_recordings
from vtriage_local.runner import REPLAY_QUOTA, Pipeline, mirror_resources
from vtriage_local.stack import LocalAws
from vtriage_local.template import PROJECT_ROOT

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


# --- the ticket the README shows: the C&C sample, through the local pipeline --------------------------

README = PROJECT_ROOT / "README.md"
C2_SAMPLE = "synthetic-guardduty-backdoor-c2-dns.json"
# The README's copy sits between these two lines, in a fenced block.
SAMPLE_START = "<!-- sample ticket: tests/functional/test_sns_ticket.py holds it to what the code renders -->"
SAMPLE_END = "<!-- end of the sample ticket -->"
TICKET_WAIT_S = 30.0
# What differs from one run to the next, and how the README writes it.
RUN_SPECIFIC = (
    (re.compile(r"https://[0-9a-z]+\.lambda-url\.[a-z0-9-]+\.on\.aws/?\?view=\S+"), "<case page link>"),
    (re.compile(r"works until \S+"), "works until <30 days after the ticket opened>"),
    # Volumes and groups the local run made for the sample's instance (their ids are moto's).
    (re.compile(r"\b(vol|sg)-[0-9a-f]{17}\b"), r"\1-<id>"),
)


def as_in_the_readme(message: str) -> str:
    """A ticket as the README shows it: what differs from run to run written as a placeholder."""
    for pattern, placeholder in RUN_SPECIFIC:
        message = pattern.sub(placeholder, message)
    return message


def readme_sample() -> str:
    """The sample ticket the README shows, as written there."""
    text = README.read_text(encoding="utf-8")
    assert SAMPLE_START in text, "the README has lost its sample ticket's first marker"
    assert SAMPLE_END in text, "the README has lost its sample ticket's last marker"
    block = text.split(SAMPLE_START, 1)[1].split(SAMPLE_END, 1)[0].strip()
    assert block.startswith("```text\n"), "the sample ticket is a ```text block"
    assert block.endswith("\n```"), "the sample ticket's block ends the sample"
    return block.removeprefix("```text\n").removesuffix("```")


@contextmanager
def ticket_of(sample: str) -> Iterator[dict[str, Any]]:
    """The ticket a sample of events/ gets as `vtriage run` runs it (its instance mirrored, VirusTotal
    replayed, the real handlers and state machine): the SNS notification a subscriber receives."""
    body = event(sample).read_text()
    with (
        pytest.MonkeyPatch.context() as monkeypatch,
        ReplayServer(bundled_recordings(), api_key="local-replay-key") as replay,
    ):
        monkeypatch.setenv("VT_BASE_URL", replay.base_url)
        monkeypatch.delenv("VT_API_KEY", raising=False)
        with LocalAws(vt_api_key="local-replay-key", parameters=REPLAY_QUOTA) as aws:
            sqs, sns = aws.client("sqs"), aws.client("sns")
            inbox = sqs.create_queue(QueueName="analyst-inbox")["QueueUrl"]
            arn = sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])["Attributes"][
                "QueueArn"
            ]
            sns.subscribe(TopicArn=aws.ref("TicketTopic"), Protocol="sqs", Endpoint=arn)
            aws.deploy_member_roles()
            mirror_resources(aws, list(read_document(json.loads(body)).alerts), io.StringIO())
            pipeline = Pipeline(aws)
            pipeline.enqueue(Delivery(source_id=sample, body=body))
            assert pipeline.drain()[1] == []
            deadline = time.monotonic() + TICKET_WAIT_S
            messages: list[dict[str, Any]] = []
            while not messages and time.monotonic() < deadline:
                messages = sqs.receive_message(QueueUrl=inbox, MaxNumberOfMessages=10).get("Messages", [])
                time.sleep(0 if messages else 0.05)
            assert messages, f"the ticket of {sample} never arrived"
            [message] = messages
            yield json.loads(message["Body"])


@pytest.fixture(scope="module")
def c2_ticket() -> Iterator[dict[str, Any]]:
    """The ticket the C&C sample gets through the local pipeline."""
    with ticket_of(C2_SAMPLE) as ticket:
        yield ticket


def test_the_readmes_sample_ticket_is_what_the_c2_sample_gets(c2_ticket: dict[str, Any]) -> None:
    # Given the ticket the C&C sample gets through the local pipeline, as its subscriber reads it
    rendered = as_in_the_readme(f"Subject: {c2_ticket['Subject']}\n{c2_ticket['Message']}")

    # Then the README shows exactly that, but for what differs from run to run
    assert readme_sample() == rendered, f"paste this into the README's sample ticket:\n{rendered}"


def test_the_c2_samples_ticket_carries_virustotals_context_and_what_was_done(
    c2_ticket: dict[str, Any],
) -> None:
    # Given the C&C sample's ticket, read from the enrichments table by the real ticket function
    lines = c2_ticket["Message"].splitlines()

    # Then its domain shows the engines, registration, DNS records and categories VirusTotal gave, and its
    # page
    assert "  - domain: tawuhoju.com: MALICIOUS" in lines
    context = [line.strip().split(":", 1)[0] for line in lines if line.startswith("      ")]
    for label in (
        "detections",
        "why",
        "engines",
        "registered",
        "resolves to",
        "categories",
        "whois",
        "VirusTotal",
    ):
        assert label in context, label
    assert "      VirusTotal: https://www.virustotal.com/gui/domain/tawuhoju.com" in lines
    # And each action says what it would change, where, and how it is rolled back
    assert any(
        line.startswith(
            "  - Isolate the instance (isolate_instance): i-0b3f6c2d9e1a47c58, account 123456789012"
        )
        for line in lines
    )
    assert sum(line.startswith("      rollback: ") for line in lines) == 4


def test_the_ticket_of_a_finding_on_a_lambda_function_names_the_function() -> None:
    # Given GuardDuty's C&C finding on the Lambda function image-resizer, which vtriage cannot act on
    # When it goes through the local pipeline to its ticket
    with ticket_of("synthetic-guardduty-lambda-network.json") as ticket:
        lines = ticket["Message"].splitlines()

    # Then the ticket's resources name the function, by its name and ARN, and say vtriage takes no action
    # on it
    assert "Resources (1)" in lines
    assert (
        "  - Lambda function: image-resizer (arn:aws:lambda:us-east-1:123456789012:function:image-resizer):"
        " vtriage takes no action on this kind of resource"
    ) in lines
