"""The default ticket sink: the case report, published to an SNS topic that email or queues subscribe to.

SNS refuses a subject that is not ASCII, holds a line break or a control character, or has 100
characters or more: `subject_line` makes one of any text (the approval request's subject too), so that
a long or odd title or S3 key never stops a ticket or an approval e-mail from being sent.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from vtriage.adapters.aws_errors import transient_aws_errors
from vtriage.display import one_line
from vtriage.models import Case, Ticket
from vtriage.report import Report, ReportLink, comment_text

PROVIDER = "sns"
# SNS: ASCII, no line breaks or control characters, fewer than 100 characters.
MAX_SUBJECT_CHARS = 99
# SNS refuses a message above 256 KB, attributes included: leave room for them.
MAX_MESSAGE_BYTES = 250_000
# Typographic punctuation that NFKD does not reduce to ASCII, kept readable rather than dropped.
_ASCII_PUNCTUATION = str.maketrans(
    {"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-", "\u2014": "-"}
)


def ticket_id(case_id: str) -> str:
    """A short id stable for the case, so that a retried publish names the same ticket."""
    return "VT-" + hashlib.sha256(case_id.encode()).hexdigest()[:10].upper()


def subject_for(case: Case, ticket: str) -> str:
    """An email subject SNS accepts: severity, verdict, ticket id and as much of the title as fits."""
    severity = case.alert.severity.label.upper()
    return subject_line(f"[{severity}] {case.verdict.value} {ticket}: ", case.alert.title)


def subject_line(prefix: str, value: str = "") -> str:
    """A subject SNS accepts: vtriage's `prefix`, then the sender's `value` escaped (`one_line`), as
    ASCII on one line of at most 99 characters."""
    # A value cut long before the subject's end: one_line's note of what was cut would be cut again.
    text = prefix + one_line(value, limit=MAX_SUBJECT_CHARS) if value else prefix
    readable = unicodedata.normalize("NFKD", text.translate(_ASCII_PUNCTUATION))
    ascii_text = readable.encode("ascii", errors="ignore").decode()
    single_line = re.sub(r"[\x00-\x1f\x7f\s]+", " ", ascii_text).strip()
    if len(single_line) > MAX_SUBJECT_CHARS:
        single_line = single_line[: MAX_SUBJECT_CHARS - 3].rstrip() + "..."
    return single_line


class SnsTicketSink:
    """Implements `TicketSink`: one SNS message per ticket, the report as its body."""

    def __init__(self, sns_client: Any, topic_arn: str, now: Callable[[], datetime]) -> None:
        """Take a boto3 SNS client, the topic to publish to and a clock for the ticket's creation time."""
        self._sns = sns_client
        self._topic_arn = topic_arn
        self._now = now

    def open(self, case: Case, report: Report) -> Ticket:
        """Publish the report as plain text; the ticket is the published message, named by a stable id."""
        ticket = Ticket(provider=PROVIDER, id=ticket_id(case.case_id), created_at=self._now())
        with transient_aws_errors(f"SNS is unavailable for ticket {ticket.id}"):
            self._sns.publish(
                TopicArn=self._topic_arn,
                Subject=subject_for(case, ticket.id),
                Message=_fit(report.text(), MAX_MESSAGE_BYTES),
                # Subscribers can filter on these without parsing the report.
                MessageAttributes={
                    "case_id": {"DataType": "String", "StringValue": case.case_id},
                    "ticket_id": {"DataType": "String", "StringValue": ticket.id},
                    "severity": {"DataType": "String", "StringValue": case.alert.severity.label},
                    "verdict": {"DataType": "String", "StringValue": case.verdict.value},
                },
            )
        return ticket

    def comment(self, ticket: Ticket, text: str, links: Sequence[ReportLink] = ()) -> None:
        """Publish the comment as a follow-up message that names the ticket in its subject, vtriage's links
        first."""
        with transient_aws_errors(f"SNS is unavailable for ticket {ticket.id}"):
            self._sns.publish(
                TopicArn=self._topic_arn,
                Subject=subject_line(f"Update on {ticket.id}"),
                Message=_fit(comment_text(text, links), MAX_MESSAGE_BYTES),
                MessageAttributes={
                    "ticket_id": {"DataType": "String", "StringValue": ticket.id},
                    "event": {"DataType": "String", "StringValue": "comment"},
                },
            )


def _fit(report: str, max_bytes: int) -> str:
    encoded = report.encode()
    if len(encoded) <= max_bytes:
        return report
    notice = "\n[report cut at 250 KB by SNS's message size limit: the case in DynamoDB holds everything]\n"
    # errors="ignore" drops a multi-byte character cut in half at the boundary
    return encoded[: max_bytes - len(notice.encode())].decode(errors="ignore") + notice
