"""`ApprovalNotifier`: the in-memory notifier and SNS on moto, with the template's approval topic, send an
approval request to the approvers, naming its case."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.contract.conftest import IN_MEMORY, client
from tests.factories import make_alert, make_case
from vtriage.adapters.guardrails import SnsApprovalNotifier
from vtriage.fakes import FakeApprovalNotifier
from vtriage.models import Action, ActionStatus, ActionType
from vtriage.ports import ApprovalNotifier
from vtriage.report import Report, ReportLine, ReportLink
from vtriage_local.stack import LocalAws

REQUEST = Report(
    headline="approval needed: Isolate the instance",
    links=(
        ReportLink(label="Approve", url="https://abc123.lambda-url.us-east-1.on.aws/?token=a"),
        ReportLink(label="Reject", url="https://abc123.lambda-url.us-east-1.on.aws/?token=r"),
    ),
    lines=(ReportLine(label="Target", value="i-0abc1234def567890"),),
)


@dataclass(frozen=True)
class Notifier:
    """The notifier under test, and what approvers received: (case id, text)."""

    approvals: ApprovalNotifier
    received: Callable[[], list[tuple[str, str]]]


@pytest.fixture
def notifier(implementation: str, request: pytest.FixtureRequest) -> Notifier:
    if implementation == IN_MEMORY:
        fake = FakeApprovalNotifier()
        return Notifier(fake, lambda: [(case_id, report.text()) for case_id, _, report in fake.sent])
    aws: LocalAws = request.getfixturevalue("aws")
    published: Callable[[str], list[dict[str, Any]]] = request.getfixturevalue("published")
    return Notifier(
        SnsApprovalNotifier(client(aws, "sns"), aws.ref("ApprovalTopic")),
        lambda: [
            (envelope["MessageAttributes"]["case_id"]["Value"], envelope["Message"])
            for envelope in published("ApprovalTopic")
        ],
    )


def test_an_approval_request_reaches_the_approvers_naming_its_case(notifier: Notifier) -> None:
    # Given an isolation waiting for a person
    action = Action(
        type=ActionType.ISOLATE_INSTANCE, target="i-0abc1234def567890", status=ActionStatus.PENDING_APPROVAL
    )
    case = make_case(make_alert(), actions=[action])

    # When its approval request is sent
    notifier.approvals.notify(case, action, REQUEST)

    # Then the approvers received it as it was written, naming the case
    assert notifier.received() == [(case.case_id, REQUEST.text())]
