"""open_ticket and render_report: one ticket per case, a report a person can act on."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from tests.fakes import FakeTicketSink, InMemoryCaseRepository, make_alert, make_case
from vtriage.errors import CaseNotFoundError, TransientError
from vtriage.models import (
    Action,
    ActionStatus,
    ActionType,
    Branch,
    Case,
    CaseStatus,
    IocOutcome,
    IocType,
    TaskInput,
    Verdict,
)
from vtriage.ticket import MAX_ERROR_BYTES, open_ticket, render_report

NOW = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
VT_LINK = "https://www.virustotal.com/gui/ip-address/198.51.100.7"


def triaged_case(**fields: object) -> Case:
    """A malicious case with one looked-up IOC, one skipped IOC and one isolation done."""
    defaults: dict[str, object] = {
        "status": CaseStatus.ENRICHED,
        "verdict": Verdict.MALICIOUS,
        "iocs": [
            IocOutcome(
                type=IocType.IP,
                value="198.51.100.7",
                found_at="service.action.networkConnectionAction.remoteIpDetails.ipAddressV4",
                verdict=Verdict.MALICIOUS,
                malicious=7,
                suspicious=2,
                total=94,
                reasons=["7 engines flag it malicious (threshold 3)"],
                link=VT_LINK,
            ),
            IocOutcome(
                type=IocType.IP,
                value="10.0.1.25",
                found_at="resource.instanceDetails.networkInterfaces.0.privateIpAddress",
                skipped_reason="private address (RFC 1918)",
            ),
        ],
        "actions": [
            Action(
                type=ActionType.ISOLATE_INSTANCE,
                target="i-0abc1234def567890",
                status=ActionStatus.DONE,
                detail="isolated: moved eni-0a1b2c3d4e5f60718 to vtriage-quarantine",
            )
        ],
    }
    return make_case(make_alert(), **{**defaults, **fields})


def ticket_for(
    case: Case, error: dict[str, str] | None = None
) -> tuple[InMemoryCaseRepository, FakeTicketSink]:
    """Store the case and open its ticket; return the repository and the sink."""
    cases = InMemoryCaseRepository([case])
    sink = FakeTicketSink(now=lambda: NOW)
    open_ticket(TaskInput(case_id=case.case_id, error=error), cases, sink, NOW)
    return cases, sink


def stored(cases: InMemoryCaseRepository, case_id: str) -> Case:
    case = cases.get(case_id)
    assert case is not None
    return case


def test_a_suspicious_case_gets_a_ticket_stored_on_it() -> None:
    # Given a suspicious case on the ticket branch
    case = triaged_case(verdict=Verdict.SUSPICIOUS, actions=[])

    # When its ticket is opened
    cases, sink = ticket_for(case)

    # Then one ticket went out with the case report, and the case keeps it
    [opened] = sink.opened
    assert opened.report == render_report(opened.case)
    saved = stored(cases, case.case_id)
    assert saved.ticket == opened.ticket
    assert saved.branch is Branch.TICKET
    assert saved.status is CaseStatus.TICKETED
    assert saved.updated_at == NOW
    assert saved.error is None


def test_a_retry_returns_the_same_ticket_and_never_opens_a_second() -> None:
    # Given a case whose ticket is open
    case = triaged_case()
    cases = InMemoryCaseRepository([case])
    sink = FakeTicketSink(now=lambda: NOW)
    task = TaskInput(case_id=case.case_id)
    first = open_ticket(task, cases, sink, NOW)

    # When the ticket function runs again for it
    second = open_ticket(task, cases, sink, NOW)

    # Then it returns the same ticket and nothing more was sent or written
    assert second.ticket == first.ticket
    assert len(sink.opened) == 1
    assert cases.saves == 1


def test_a_remediated_case_keeps_its_branch_and_status() -> None:
    # Given a case the remediate function isolated
    case = triaged_case(branch=Branch.REMEDIATE, status=CaseStatus.REMEDIATED)

    # When its ticket is opened
    cases, _ = ticket_for(case)

    # Then it stays on the remediate branch and remediated
    saved = stored(cases, case.case_id)
    assert saved.branch is Branch.REMEDIATE
    assert saved.status is CaseStatus.REMEDIATED
    assert saved.ticket is not None


def test_a_caught_error_fails_the_case_and_is_in_the_report() -> None:
    # Given a case whose remediation raised, as a Catch hands it on (Cause is Lambda's JSON error)
    case = triaged_case(branch=Branch.REMEDIATE, status=CaseStatus.REMEDIATED)
    cause = json.dumps(
        {"errorMessage": "case x: isolate_instance i-1: AccessDenied", "errorType": "RemediationError"}
    )
    error = {"Error": "RemediationError", "Cause": cause}

    # When its ticket is opened
    cases, sink = ticket_for(case, error)

    # Then the case is failed with a readable error, kept in the report too
    saved = stored(cases, case.case_id)
    assert saved.status is CaseStatus.FAILED
    assert saved.error == "RemediationError: case x: isolate_instance i-1: AccessDenied"
    assert saved.branch is Branch.REMEDIATE
    assert "RemediationError: case x: isolate_instance i-1: AccessDenied" in sink.opened[0].report


def test_an_error_with_a_plain_cause_is_kept_as_is() -> None:
    # Given a Catch of a non-Lambda error with a plain-text cause
    case = triaged_case()

    # When its ticket is opened
    cases, _ = ticket_for(case, {"Error": "States.Timeout", "Cause": "Task timed out after 60 seconds"})

    # Then the error reads "Error: Cause"
    assert stored(cases, case.case_id).error == "States.Timeout: Task timed out after 60 seconds"


def test_a_huge_error_is_trimmed_to_one_kilobyte() -> None:
    # Given an error whose cause is far longer than 1 KB, in multi-byte characters
    case = triaged_case()
    error = {"Error": "TransientError", "Cause": "é" * 5000}

    # When its ticket is opened
    cases, _ = ticket_for(case, error)

    # Then the kept error fits in 1 KB of UTF-8 and says it was cut
    kept = stored(cases, case.case_id).error
    assert kept is not None
    assert kept.startswith("TransientError: ééé")
    assert len(kept.encode()) <= MAX_ERROR_BYTES
    assert kept.endswith("[...]")


def test_a_sink_that_fails_leaves_the_case_without_a_ticket_for_the_retry() -> None:
    # Given a sink that is briefly unavailable
    case = triaged_case()
    cases = InMemoryCaseRepository([case])
    failing = FakeTicketSink(error=TransientError("SNS throttled"))

    # When the ticket is opened, Then the error reaches the state machine's Retry
    with pytest.raises(TransientError):
        open_ticket(TaskInput(case_id=case.case_id), cases, failing, NOW)

    # And the case holds no ticket, so the retry opens one
    assert stored(cases, case.case_id).ticket is None
    result = open_ticket(TaskInput(case_id=case.case_id), cases, FakeTicketSink(now=lambda: NOW), NOW)
    assert stored(cases, case.case_id).ticket == result.ticket


def test_an_unknown_case_raises_case_not_found() -> None:
    # Given an empty repository, When a ticket is opened, Then the case is not found
    with pytest.raises(CaseNotFoundError):
        open_ticket(TaskInput(case_id="guardduty-missing"), InMemoryCaseRepository(), FakeTicketSink(), NOW)


def test_the_report_tells_the_whole_story_in_plain_text() -> None:
    # Given a failed, remediated malicious case
    case = triaged_case(status=CaseStatus.FAILED, branch=Branch.REMEDIATE, error="RemediationError: boom")

    # When its report is rendered
    report = render_report(case)
    lines = report.splitlines()

    # Then the first line names the severity and the verdict, then the title
    assert lines[0] == (
        "[HIGH 8] MALICIOUS: 198.51.100.7 is performing SSH brute force attacks against i-0abc1234def567890"
    )
    # And the alert's facts are there
    for fact in (
        "UnauthorizedAccess:EC2/SSHBruteForce",
        "5eb7d1a3a1f1f1ce3f4e3a1d7b8c9e0f",
        "123456789012",
        "us-east-1",
        "2024-05-01T09:30:00+00:00",
        "2024-05-01T09:45:00+00:00",
        case.case_id,
    ):
        assert fact in report
    # And the resource, with its network details
    assert "instance i-0abc1234def567890 (vpc vpc-0a1b2c3d; interfaces eni-0a1b2c3d4e5f60718" in report
    # And every IOC: the looked-up one with counts, reasons and link; the skipped one with its reason
    assert "ip 198.51.100.7: MALICIOUS" in report
    assert "7 malicious, 2 suspicious of 94 engines" in report
    assert "why: 7 engines flag it malicious (threshold 3)" in report
    assert VT_LINK in report
    assert "ip 10.0.1.25: not looked up (private address (RFC 1918))" in report
    # And the actions with status and detail, and the error
    assert "isolate_instance i-0abc1234def567890: done - isolated: moved eni-0a1b2c3d4e5f60718" in report
    assert "RemediationError: boom" in report
    # And it is plain text: no HTML, no JSON
    assert "<" not in report
    assert "{" not in report


def test_the_report_of_an_empty_case_says_none_rather_than_nothing() -> None:
    # Given a case with no resources, IOCs or actions
    case = make_case(make_alert(resources=()))

    # When its report is rendered
    report = render_report(case)

    # Then each section says there is nothing, and no error section appears
    assert report.count("(none)") == 3
    assert "Error" not in report
