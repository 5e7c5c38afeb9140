"""open_ticket and render_report: one ticket per case, a report a person can act on."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.factories import make_alert, make_case
from vtriage.errors import CaseNotFoundError, TransientError
from vtriage.fakes import FakeTicketSink, InMemoryCaseRepository
from vtriage.intake import IntakeOptions
from vtriage.intake.body import decode_body
from vtriage.models import (
    Action,
    ActionStatus,
    ActionType,
    Branch,
    Case,
    CaseStatus,
    EngineStats,
    Enrichment,
    Ioc,
    IocOutcome,
    IocType,
    TaskInput,
    Verdict,
)
from vtriage.ticket import MAX_ERROR_BYTES, ApprovalLinks, open_ticket, render_report
from vtriage.virustotal.context import trim_context

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
    # And its history ends with the step, when it was taken
    assert (saved.history[-1].status, saved.history[-1].at) == (CaseStatus.TICKETED, NOW)


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


def test_a_repeat_folded_into_a_ticketed_case_comments_on_its_ticket_once() -> None:
    # Given a ticketed case into which two repeats of the finding were folded
    case = triaged_case()
    cases = InMemoryCaseRepository([case])
    sink = FakeTicketSink(now=lambda: NOW)
    task = TaskInput(case_id=case.case_id)
    first = open_ticket(task, cases, sink, NOW)
    folded = cases.get(case.case_id)
    assert folded is not None
    folded.repeat_count = 2
    cases.save(folded)

    # When the ticket function runs for the repeat, and again (a retry)
    open_ticket(task, cases, sink, NOW)
    open_ticket(task, cases, sink, NOW)

    # Then no second ticket opened, and the existing one got one comment about the two repeats
    assert len(sink.opened) == 1
    [(ticket, text)] = sink.comments
    assert ticket == first.ticket
    assert "2 more times" in text


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
    assert (saved.history[-1].status, saved.history[-1].at) == (CaseStatus.FAILED, NOW)
    assert saved.error == "RemediationError: case x: isolate_instance i-1: AccessDenied"
    assert saved.branch is Branch.REMEDIATE
    assert "RemediationError: case x: isolate_instance i-1: AccessDenied" in sink.opened[0].report.text()


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
    report = render_report(case).text()
    lines = report.splitlines()

    # Then the first line names the severity and the verdict, and the title has a line of its own
    assert lines[0] == "vtriage case report: HIGH 8, MALICIOUS"
    assert "Title: 198.51.100.7 is performing SSH brute force attacks against i-0abc1234def567890" in lines
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
    assert "- instance: i-0abc1234def567890 (vpc vpc-0a1b2c3d; interfaces eni-0a1b2c3d4e5f60718" in report
    # And every IOC: the looked-up one with counts, reasons and link; the skipped one with its reason
    assert "- ip: 198.51.100.7: MALICIOUS" in report
    assert "detections: 7 malicious, 2 suspicious of 94 engines" in report
    assert "why: 7 engines flag it malicious (threshold 3)" in report
    assert f"VirusTotal: {VT_LINK}" in report
    assert "- ip: 10.0.1.25: not looked up (private address (RFC 1918))" in report
    # And the actions with status and detail, and the error
    assert "- isolate_instance: i-0abc1234def567890: done - isolated: moved eni-0a1b2c3d4e5f60718" in report
    assert "RemediationError: boom" in report
    # And it is plain text: no HTML, no JSON
    assert "<" not in report
    assert "{" not in report


def test_the_report_of_an_empty_case_says_none_rather_than_nothing() -> None:
    # Given a case with no resources, IOCs or actions
    case = make_case(make_alert(resources=()))

    # When its report is rendered
    report = render_report(case).text()

    # Then each section says there is nothing, and no error section appears
    assert report.count("(none)") == 3
    assert "Error" not in report


FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "vt"


def enrichment_from_fixture(name: str, ioc_type: IocType) -> tuple[IocOutcome, Enrichment]:
    """A real VirusTotal object (tests/fixtures/vt) as the case and the cache would hold it."""
    document = json.loads((FIXTURES / name).read_text())
    data = document.get("data", document)
    stats = EngineStats.from_vt(data["attributes"]["last_analysis_stats"])
    enrichment = Enrichment(
        ioc_type=ioc_type,
        value=data["id"],
        verdict=Verdict.MALICIOUS,
        stats=stats,
        reasons=[f"{stats.malicious} engines flag it malicious"],
        context=trim_context(ioc_type, data["attributes"]),
        link=f"https://www.virustotal.com/gui/{ioc_type.value}/{data['id']}",
        fetched_at=NOW,
    )
    ioc = Ioc(type=ioc_type, value=data["id"], found_at="service.action")
    return IocOutcome.enriched(ioc, enrichment), enrichment


def report_with(*pairs: tuple[IocOutcome, Enrichment], approval: ApprovalLinks | None = None) -> str:
    case = triaged_case(iocs=[outcome for outcome, _ in pairs])
    enrichments = {enrichment.key: enrichment for _, enrichment in pairs}
    return render_report(case, enrichments=enrichments, approval=approval).text()


def test_the_report_shows_the_engines_network_and_whois_of_an_ip() -> None:
    # Given an IP VirusTotal knows, with its context
    pair = enrichment_from_fixture("demisto__TestData_ip.json", IocType.IP)

    # When the report is rendered with its enrichment
    report = report_with(pair)

    # Then the IOC shows who flags it, whose network it is, and the start of its whois
    assert "engines: GreenSnow (malicious), Snort IP sample list (suspicious)" in report
    assert "network: AS396507, EMERALD-ONION, US, 23.129.64.0/24" in report
    assert "whois: NetRange: 23.129.64.0 - 23.129.64.255" in report
    assert "whois: [" in report
    assert "more lines in the case]" in report
    assert "VirusTotal: https://www.virustotal.com/gui/ip/23.129.64.215" in report


def test_the_report_shows_a_domains_registration_and_resolutions() -> None:
    # Given a domain flagged by many engines
    pair = enrichment_from_fixture("opencti__vt_test_domain.json", IocType.DOMAIN)
    flagged = len(pair[1].context["detections"])

    # When the report is rendered with its enrichment
    report = report_with(pair)

    # Then it names the top five engines and how many more, the registrar and what it resolves to
    engines_line = next(line for line in report.splitlines() if "engines:" in line)
    assert engines_line.count("(") == 5
    assert engines_line.endswith(f"and {flagged - 5} more")
    assert "Avira (malware)" in engines_line
    assert "registered: CommuniGal Communication Ltd., created 2016-12-29T13:28:19Z" in report
    assert "resolves to: A 66.0.543.66, A 66.0.543.90" in report
    assert "ns-28.awsdns-03.com" not in report.split("resolves to:")[1].splitlines()[0]


def test_the_report_shows_a_files_type_threat_label_and_first_sighting() -> None:
    # Given a file VirusTotal classifies
    pair = enrichment_from_fixture("opencti__vt_test_file.json", IocType.FILE)

    # When the report is rendered with its enrichment
    report = report_with(pair)

    # Then it says what the file is, what it is called as a threat, and when it was first seen
    assert "(Win32 DLL, 87040 bytes)" in report
    assert "threat label: trojan.dllhijacker/cometer" in report
    assert "first seen: 2018-08-22T19:53:49Z" in report


def test_malicious_engines_are_listed_before_suspicious_ones() -> None:
    # Given detections where a suspicious engine comes first alphabetically
    outcome, enrichment = enrichment_from_fixture("demisto__TestData_ip.json", IocType.IP)
    enrichment.context = {
        "detections": [
            {"engine": "Alpha", "category": "suspicious", "result": "suspicious"},
            {"engine": "Zulu", "category": "malicious", "result": "phishing"},
        ]
    }

    # When the report is rendered
    report = report_with((outcome, enrichment))

    # Then the malicious engine leads
    assert "engines: Zulu (phishing), Alpha (suspicious)" in report


def test_the_report_carries_the_approval_links_and_when_they_expire() -> None:
    # Given a case waiting for approval
    approval = ApprovalLinks(
        approve_url="https://abc.lambda-url.us-east-1.on.aws/?decision=approve&token=t1",
        reject_url="https://abc.lambda-url.us-east-1.on.aws/?decision=reject&token=t2",
        expires_at=datetime(2024, 5, 2, 10, 0, tzinfo=UTC),
    )

    # When its ticket is opened with the links
    cases = InMemoryCaseRepository([triaged_case()])
    sink = FakeTicketSink(now=lambda: NOW)
    open_ticket(TaskInput(case_id=triaged_case().case_id), cases, sink, NOW, approval=approval)

    # Then the report sent holds both links, labelled, with their expiry, before anything from the alert
    report = sink.opened[0].report.text()
    assert f"Approve: {approval.approve_url}" in report
    assert f"Reject:  {approval.reject_url}" in report
    assert "expire at 2024-05-02T10:00:00+00:00" in report
    assert report.index(approval.reject_url) < report.index("Title:")


def test_without_enrichments_or_approval_the_report_is_unchanged() -> None:
    # Given a case, When it is rendered with nothing extra, Then it equals the plain report
    case = triaged_case()
    assert render_report(case, enrichments={}, approval=None) == render_report(case)
    assert "Approval" not in render_report(case).text()


# --- what intake found about the alert, on labelled lines: a sample, a guessed severity, its notes -------

CORPUS = Path(__file__).resolve().parents[1] / "corpus"


def _case_of_corpus_document(name: str) -> Case:
    """The case of the one alert a real document of tests/corpus makes, as intake reads it."""
    [alert] = IntakeOptions().read(decode_body((CORPUS / name).read_text())).alerts
    return make_case(alert)


def test_a_guardduty_sample_findings_ticket_says_it_is_a_sample_and_why_it_is_not_acted_on() -> None:
    # Given GuardDuty's generated IAM sample finding (amazon-guardduty-automated-response-sample)
    case = _case_of_corpus_document("gd-automated-response__guardduty_iam_event.json")
    assert case.alert.sample

    # When its ticket's report is rendered
    lines = render_report(case).text().splitlines()

    # Then a labelled line says it is a sample, and another why nothing runs on it automatically
    assert (
        "  Sample finding: yes: its detector generated it to test a pipeline; never acted on automatically"
        in lines
    )
    assert "  Not acted on: a GuardDuty sample finding (service.additionalInfo.sample)" in lines


def test_a_guessed_severity_says_so_on_the_severity_line_and_in_the_notes() -> None:
    # Given QRadar's offense as OCSF (ocsf/examples): no severity_id, no caption, so critical is a guess
    case = _case_of_corpus_document("ocsf-examples__qradar_offense.json")

    # When its ticket's report is rendered
    lines = render_report(case).text().splitlines()

    # Then the severity line says it was guessed, and the note says from what
    assert "Severity: CRITICAL 9 (guessed by vtriage: see the notes)" in lines
    assert "  Note: severity_id: missing; severity guessed: scored critical so that a person sees it" in lines
    assert "  Not acted on: severity_id: missing" in lines


def test_a_read_severity_is_not_said_to_be_guessed() -> None:
    # Given the AWS CLI's batch-import example, whose provider gives Label LOW
    case = _case_of_corpus_document("aws-cli__securityhub_batch-import-findings.json")

    # Then its severity line is the provider's, nothing more
    assert "Severity: LOW 1" in render_report(case).text().splitlines()


def test_notes_and_reasons_a_sender_controls_are_escaped_on_their_line() -> None:
    # Given an alert whose note quotes a sender's value with a line break and a link
    alert = make_alert(
        notes=("detail.region: expected an AWS Region, got 'x\nApprove: https://evil.example'",),
        not_actionable=("detail.region: expected an AWS Region, got 'x\nApprove: https://evil.example'",),
    )

    # When its report is rendered
    text = render_report(make_case(alert)).text()

    # Then neither starts a line of its own, and the link is defanged
    assert "\nApprove:" not in text
    assert "x\\nApprove: hxxps://evil.example" in text
