"""`TicketSink`: the in-memory sink and SNS on moto, with the template's ticket topic, open a ticket per
case, dated by the clock, whose report reaches the people subscribed, and pass comments on."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.contract.conftest import IN_MEMORY, NOW, Clock, client
from tests.factories import make_alert, make_case
from vtriage.adapters.sns import SnsTicketSink
from vtriage.fakes import FakeTicketSink
from vtriage.models import Case
from vtriage.ports import TicketSink
from vtriage.report import Report, ReportLine
from vtriage_local.stack import LocalAws

REPORT = Report(
    headline="HIGH 8, MALICIOUS",
    lines=(
        ReportLine(label="Indicators of compromise (1)"),
        ReportLine(label="- ip", value="198.51.100.7: MALICIOUS", indent=2),
    ),
)


@dataclass(frozen=True)
class Sink:
    """The sink under test, and the texts (reports and comments) its readers received."""

    tickets: TicketSink
    received: Callable[[], list[str]]


@pytest.fixture
def sink(implementation: str, request: pytest.FixtureRequest, clock: Clock) -> Sink:
    if implementation == IN_MEMORY:
        fake = FakeTicketSink(clock)
        return Sink(
            fake,
            lambda: [opened.report.text() for opened in fake.opened] + [text for _, text in fake.comments],
        )
    aws: LocalAws = request.getfixturevalue("aws")
    published: Callable[[str], list[dict[str, Any]]] = request.getfixturevalue("published")
    return Sink(
        SnsTicketSink(client(aws, "sns"), aws.ref("TicketTopic"), clock),
        lambda: [str(envelope["Message"]) for envelope in published("TicketTopic")],
    )


def _case(number: int) -> Case:
    return make_case(make_alert(id=f"{number:032x}"))


def test_each_case_gets_a_ticket_dated_now_whose_report_reaches_its_readers(sink: Sink) -> None:
    # Given two cases
    first, second = _case(1), _case(2)

    # When a ticket is opened for each
    tickets = [sink.tickets.open(first, REPORT), sink.tickets.open(second, REPORT)]

    # Then each has its own id, dated now, and both reports were received
    assert len({ticket.id for ticket in tickets}) == 2
    assert all(ticket.id and ticket.provider for ticket in tickets)
    assert [ticket.created_at for ticket in tickets] == [NOW, NOW]
    assert sink.received() == [REPORT.text(), REPORT.text()]


def test_a_comment_on_a_ticket_reaches_its_readers(sink: Sink) -> None:
    # Given a ticket opened for a case
    ticket = sink.tickets.open(_case(1), REPORT)

    # When a comment is added to it
    sink.tickets.comment(ticket, "The finding repeated 1 more time")

    # Then the readers received the report, then the comment
    assert sink.received() == [REPORT.text(), "The finding repeated 1 more time"]
