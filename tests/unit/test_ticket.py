"""The ticket function's steps: one ticket per case, with a report a person can act on (VirusTotal's context
read from the enrichments table), opened before an approval, carrying its links, told of each decision and
of the outcome."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from tests.factories import make_alert, make_case
from vtriage.action_text import describe
from vtriage.display import one_line
from vtriage.errors import CaseNotFoundError, ConfigurationError, TransientError
from vtriage.fakes import (
    FakeApprovalRequests,
    FakeTicketSink,
    InMemoryCaseRepository,
    InMemoryEnrichmentRecords,
)
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
    Verdict,
)
from vtriage.ticket import (
    MAX_ERROR_BYTES,
    ApprovalTicketTask,
    CasePageLink,
    DecisionTicketTask,
    OpenTicketTask,
    TicketDesk,
    open_ticket,
    render_report,
    request_approval_on_ticket,
    tell_decision,
    ticket_task,
)
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
    open_ticket(OpenTicketTask(case_id=case.case_id, error=error), cases, sink, NOW)
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
    assert saved.ticket is not None
    assert (saved.ticket.id, saved.ticket.created_at) == (opened.ticket.id, NOW)
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
    task = OpenTicketTask(case_id=case.case_id)
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
    task = OpenTicketTask(case_id=case.case_id)
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
        open_ticket(OpenTicketTask(case_id=case.case_id), cases, failing, NOW)

    # And the case holds no ticket, so the retry opens one
    assert stored(cases, case.case_id).ticket is None
    result = open_ticket(OpenTicketTask(case_id=case.case_id), cases, FakeTicketSink(now=lambda: NOW), NOW)
    assert stored(cases, case.case_id).ticket == result.ticket


def test_an_unknown_case_raises_case_not_found() -> None:
    # Given an empty repository, When a ticket is opened, Then the case is not found
    with pytest.raises(CaseNotFoundError):
        open_ticket(
            OpenTicketTask(case_id="guardduty-missing"), InMemoryCaseRepository(), FakeTicketSink(), NOW
        )


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
    assert (
        "- Isolate the instance (isolate_instance): i-0abc1234def567890: done - isolated: moved "
        "eni-0a1b2c3d4e5f60718"
    ) in report
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


# --- what VirusTotal said, read from the enrichments table as the ticket function reads it -------------

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "vt"


def enrichment_from_fixture(
    name: str, ioc_type: IocType, relationships: dict[str, Any] | None = None
) -> tuple[IocOutcome, Enrichment]:
    """A real VirusTotal object (tests/fixtures/vt) as the enrich function keeps it: its IOC on the case,
    and its enrichment in the enrichments table."""
    document = json.loads((FIXTURES / name).read_text())
    data = document.get("data", document)
    stats = EngineStats.from_vt(data["attributes"]["last_analysis_stats"])
    enrichment = Enrichment(
        ioc_type=ioc_type,
        value=data["id"],
        verdict=Verdict.MALICIOUS,
        stats=stats,
        reasons=[f"{stats.malicious} engines flag it malicious"],
        context=trim_context(ioc_type, data["attributes"], relationships, object_id=data["id"]),
        link=f"https://www.virustotal.com/gui/{ioc_type.value}/{data['id']}",
        fetched_at=NOW,
    )
    ioc = Ioc(type=ioc_type, value=data["id"], found_at="service.action")
    return IocOutcome.enriched(ioc, enrichment), enrichment


def ticket_with(*pairs: tuple[IocOutcome, Enrichment], kept: tuple[Enrichment, ...] | None = None) -> str:
    """The report of the ticket the `open` step opens for a case with these IOCs, reading their
    enrichments (or `kept`) from the enrichments table, as the ticket function does."""
    case = triaged_case(iocs=[outcome for outcome, _ in pairs])
    records = InMemoryEnrichmentRecords(kept if kept is not None else [enrichment for _, enrichment in pairs])
    sink = FakeTicketSink(now=lambda: NOW)
    open_ticket(
        OpenTicketTask(case_id=case.case_id), InMemoryCaseRepository([case]), sink, NOW, enrichments=records
    )
    [opened] = sink.opened
    return opened.report.text()


def test_the_ticket_shows_the_engines_network_and_whois_of_an_ip() -> None:
    # Given an IP VirusTotal knows, whose enrichment the enrich function kept
    pair = enrichment_from_fixture("demisto__TestData_ip.json", IocType.IP)

    # When its case's ticket opens
    report = ticket_with(pair)

    # Then the IOC shows who flags it, whose network it is, and the start of its whois
    assert "engines: GreenSnow (malicious), Snort IP sample list (suspicious)" in report
    assert "network: AS396507, EMERALD-ONION, US, 23.129.64.0/24" in report
    assert "whois: NetRange: 23.129.64.0 - 23.129.64.255" in report
    assert "whois: [" in report
    assert "more lines on VirusTotal's page]" in report
    assert "VirusTotal: https://www.virustotal.com/gui/ip/23.129.64.215" in report


def test_the_ticket_shows_a_domains_registration_resolutions_and_categories() -> None:
    # Given a domain flagged by many engines, and the IPs VirusTotal saw it resolve to (its resolutions
    # relationship, as the lookup asks for it: descriptors whose id is the IP then the domain)
    domain = json.loads((FIXTURES / "demisto__test_data_domain.json").read_text())["data"]["id"]
    resolutions = {
        "resolutions": {
            "data": [{"type": "resolution", "id": f"198.51.100.{number}{domain}"} for number in range(1, 8)]
        }
    }
    pair = enrichment_from_fixture("opencti__vt_test_domain.json", IocType.DOMAIN)
    flagged = len(pair[1].context["detections"])
    other = enrichment_from_fixture("demisto__test_data_domain.json", IocType.DOMAIN, resolutions)

    # When its case's ticket opens
    report = ticket_with(pair, other)

    # Then it names the top five engines and how many more, the registrar and what it resolves to
    engines_line = next(line for line in report.splitlines() if "engines:" in line)
    assert engines_line.count("(") == 5
    assert engines_line.endswith(f"and {flagged - 5} more")
    assert "Avira (malware)" in engines_line
    assert "registered: CommuniGal Communication Ltd., created 2016-12-29T13:28:19Z" in report
    assert "resolves to: A 66.0.543.66, A 66.0.543.90" in report
    assert "ns-28.awsdns-03.com" not in report.split("resolves to:")[1].splitlines()[0]
    # And the IPs it resolved to, the first five and how many more, and the categories engines give it
    assert "resolved to: 198.51.100.1, 198.51.100.2, 198.51.100.3, 198.51.100.4, 198.51.100.5 and 2 more" in (
        report
    )
    assert "categories: " in report


def test_the_ticket_shows_a_files_type_names_threat_label_and_first_sighting() -> None:
    # Given a file VirusTotal classifies
    pair = enrichment_from_fixture("opencti__vt_test_file.json", IocType.FILE)

    # When its case's ticket opens
    report = ticket_with(pair)

    # Then it says what the file is, what else it is called, its threat label and when it was first seen
    assert "file: Win32 DLL, 87040 bytes" in report
    assert "also named: " in report
    assert "threat label: trojan.dllhijacker/cometer" in report
    assert "first seen: 2018-08-22T19:53:49Z" in report


def test_the_ticket_shows_a_urls_final_url_and_threat_names() -> None:
    # Given a URL VirusTotal analysed
    pair = enrichment_from_fixture("opencti__vt_test_url.json", IocType.URL)
    context = pair[1].context

    # When its case's ticket opens
    report = ticket_with(pair)

    # Then it shows where it lands and the threats engines name
    assert f"final URL: {one_line(context['last_final_url'])}" in report
    assert "threat names: " + ", ".join(context["threat_names"][:5]) in report


def test_malicious_engines_are_listed_before_suspicious_ones() -> None:
    # Given detections where a suspicious engine comes first alphabetically
    outcome, enrichment = enrichment_from_fixture("demisto__TestData_ip.json", IocType.IP)
    enrichment.context = {
        "detections": [
            {"engine": "Alpha", "category": "suspicious", "result": "suspicious"},
            {"engine": "Zulu", "category": "malicious", "result": "phishing"},
        ]
    }

    # When its case's ticket opens
    report = ticket_with((outcome, enrichment))

    # Then the malicious engine leads
    assert "engines: Zulu (phishing), Alpha (suspicious)" in report


def test_the_ticket_reads_the_enrichment_the_case_was_judged_on_and_says_when_it_is_gone() -> None:
    # Given an IP judged on one lookup, kept beside a newer lookup of it with other engines
    outcome, judged = enrichment_from_fixture("demisto__TestData_ip.json", IocType.IP)
    newer = judged.model_copy(
        update={
            "fetched_at": datetime(2024, 5, 3, tzinfo=UTC),
            "context": {"detections": [{"engine": "Later", "category": "malicious", "result": "c2"}]},
        }
    )

    # When the ticket opens with both kept, and again with only the newer one kept
    both = ticket_with((outcome, judged), kept=(judged, newer))
    only_newer = ticket_with((outcome, judged), kept=(newer,))
    none_kept = ticket_with((outcome, judged), kept=())

    # Then it shows the engines of the lookup the verdict was drawn from
    assert "engines: GreenSnow (malicious)" in both
    assert "Later" not in both
    # And, that one gone, the newer one's, saying whose they are
    assert "engines: Later (c2)" in only_newer
    assert (
        "context of: VirusTotal's answer of 2024-05-03T00:00:00+00:00 (the one judged on is gone)"
        in only_newer
    )
    # And, none kept, that the context is gone (the verdict, reasons and link stay)
    assert "context: not kept: the enrichments table no longer holds this lookup" in none_kept
    assert "why: " in none_kept


def test_an_ioc_virustotal_never_answered_for_says_so_not_that_its_context_is_gone() -> None:
    # Given a domain triaged without its enrichment: VirusTotal answered 500 until the last delivery
    reason = "not enriched: VirusTotal unavailable (HTTP 500, 4 attempts) on the last of 5 deliveries"
    outcome = IocOutcome(
        type=IocType.DOMAIN,
        value="tawuhoju.com",
        found_at="service.action.dnsRequestAction.domain",
        reasons=[reason],
        virustotal_unavailable=True,
    )
    case = triaged_case(iocs=[outcome])
    sink = FakeTicketSink(now=lambda: NOW)

    # When its case's ticket opens, the enrichments table holding nothing for it
    open_ticket(
        OpenTicketTask(case_id=case.case_id),
        InMemoryCaseRepository([case]),
        sink,
        NOW,
        enrichments=InMemoryEnrichmentRecords([]),
    )
    [opened] = sink.opened
    report = opened.report.text()

    # Then the IOC says VirusTotal was not reached and why, not that a lookup's context was lost,
    # nor a count of zero engines as if VirusTotal had answered
    assert "detections: none: VirusTotal could not be reached for it" in report
    assert f"why: {reason}" in report
    assert "not kept" not in report
    assert "of 0 engines" not in report


def test_a_lookup_whose_context_was_left_out_says_so() -> None:
    # Given an enrichment kept without its context, too large for a DynamoDB item
    outcome, enrichment = enrichment_from_fixture("demisto__TestData_ip.json", IocType.IP)
    enrichment = enrichment.model_copy(
        update={"context": {}, "note": "context left out of the cache: too large for a DynamoDB item"}
    )

    # When its case's ticket opens, Then the note is on the IOC
    assert "note: context left out of the cache: too large for a DynamoDB item" in ticket_with(
        (outcome, enrichment)
    )


def test_the_report_says_what_each_action_changes_and_how_it_is_rolled_back() -> None:
    # Given a case whose isolation ran in the finding's account and Region
    case = triaged_case(
        actions=[
            Action(
                type=ActionType.ISOLATE_INSTANCE,
                target="i-0abc1234def567890",
                status=ActionStatus.DONE,
                detail="isolated",
                account="123456789012",
                region="us-east-1",
            )
        ]
    )

    # When its report is rendered
    lines = render_report(case).text().splitlines()

    # Then the action is named in words, where it ran, and what it changed and how to undo it follow
    text = describe(case.actions[0])
    assert (
        "  - Isolate the instance (isolate_instance): i-0abc1234def567890, account 123456789012, "
        "Region us-east-1: done - isolated"
    ) in lines
    assert f"      changes: {text.changes}" in lines
    assert f"      rollback: {text.rollback}" in lines


# --- the ticket before an approval, the approval's links on it, and each decision ----------------------

APPROVAL_URL = "https://abc.lambda-url.us-east-1.on.aws/"


def waiting_case() -> Case:
    """A malicious case planning two actions: a snapshot done, an isolation waiting for a person."""
    return triaged_case(
        branch=Branch.REMEDIATE,
        actions=[
            Action(
                type=ActionType.SNAPSHOT_VOLUMES,
                target="i-0abc1234def567890",
                status=ActionStatus.DONE,
                detail="snapshots snap-1",
                account="123456789012",
                region="us-east-1",
            ),
            Action(
                type=ActionType.ISOLATE_INSTANCE,
                target="i-0abc1234def567890",
                status=ActionStatus.PENDING_APPROVAL,
                detail="waiting for a person: the playbook asks for approval before this action",
                account="123456789012",
                region="us-east-1",
            ),
        ],
    )


def approval_task(case: Case, token: str = "task-token-1") -> ApprovalTicketTask:
    return ApprovalTicketTask(
        step="request_approval",
        case_id=case.case_id,
        index=1,
        task_token=token,
        approval_url=APPROVAL_URL,
        approval_timeout_seconds=3600,
    )


CASE_PAGE = CasePageLink(url=f"{APPROVAL_URL}?view=signed-case-page", expires_at=NOW)


def before_approval(
    case: Case, *, links_on_ticket: bool = True
) -> tuple[InMemoryCaseRepository, FakeTicketSink]:
    """The case's ticket as the step before the wait opens it, the links following on it (the opt-in) or
    not; the task names no action, so that no waiting comment follows either way."""
    cases = InMemoryCaseRepository([case])
    sink = FakeTicketSink(now=lambda: NOW)
    task = OpenTicketTask(step="before_approval", case_id=case.case_id)
    open_ticket(task, cases, sink, NOW, links_on_ticket=links_on_ticket)
    return cases, sink


def before_approval_task(case: Case) -> OpenTicketTask:
    return OpenTicketTask(
        step="before_approval", case_id=case.case_id, index=1, approval_timeout_seconds=3600
    )


def desk(
    cases: InMemoryCaseRepository, sink: FakeTicketSink, approvals: FakeApprovalRequests | None
) -> TicketDesk:
    return TicketDesk(
        cases=cases,
        sink=lambda: sink,
        enrichments=None,
        approvals=approvals,
        case_page_link=lambda case_id, now: CASE_PAGE,
    )


def test_the_ticket_opens_before_the_approval_and_changes_nothing_else() -> None:
    # Given a case whose isolation waits for a person, with ApprovalLinksInTickets=true
    case = waiting_case()

    # When the step before the approval wait opens its ticket
    cases, sink = before_approval(case, links_on_ticket=True)

    # Then the ticket is open, says an action waits and that its links follow, and the case keeps its status
    [opened] = sink.opened
    assert "Waiting for a person: 1 action: the approve and reject links follow on this ticket" in (
        opened.report.text()
    )
    saved = stored(cases, case.case_id)
    assert saved.ticket is not None
    assert saved.ticket.id == opened.ticket.id
    assert saved.status is CaseStatus.ENRICHED
    assert saved.history == case.history


def test_by_default_the_ticket_says_who_decides_until_when_and_carries_no_link_that_decides() -> None:
    # Given a case whose isolation waits for a person, and the ticket function as deployed by default
    # (ApprovalLinksInTickets=false: no approval function to ask for links)
    case = waiting_case()
    cases = InMemoryCaseRepository([case])
    sink = FakeTicketSink(now=lambda: NOW)
    tickets = desk(cases, sink, approvals=None)

    # When the step before the approval wait runs, and is retried
    tickets.handle(before_approval_task(case), NOW)
    tickets.handle(before_approval_task(case), NOW)

    # Then the ticket opened saying who decides, and links the case page alone
    [opened] = sink.opened
    report = opened.report.text()
    assert (
        "Waiting for a person: 1 action: the approvers, asked through the approvals topic with links only "
        "they receive; this ticket carries no link that decides"
    ) in report
    assert [link.label for link in opened.report.links] == ["Case page"]
    # And it heard once that the isolation waits: for whom, until when, what it changes; its one link the
    # case page, which decides nothing
    [(_, text)] = sink.comments
    [links] = sink.comment_links
    assert text.splitlines()[:3] == [
        "Waiting for a person: action 2 of 2",
        "Who decides: the approvers, asked through the approvals topic with links only they receive; this "
        "ticket carries no link that decides",
        "Until: 2024-05-01T11:00+00:00; without a decision by then, the action is escalated on this ticket",
    ]
    assert "Action: Isolate the instance i-0abc1234def567890" in text
    assert f"Changes: {describe(case.actions[1]).changes}" in text
    assert "decides nothing" in text
    assert [(link.label, link.url) for link in links] == [("Case page", CASE_PAGE.url)]
    assert "token=" not in report + text
    # And the case keeps its status
    assert stored(cases, case.case_id).status is CaseStatus.ENRICHED


def test_by_default_no_step_of_the_ticket_function_fetches_a_link_that_decides() -> None:
    # Given the ticket function as deployed by default (ApprovalLinksInTickets=false), and a case's ticket
    case = waiting_case()
    cases = InMemoryCaseRepository([case])
    sink = FakeTicketSink(now=lambda: NOW)
    tickets = desk(cases, sink, approvals=None)
    tickets.handle(before_approval_task(case), NOW)

    # When a waiting step nonetheless asks it for an approval, Then it refuses, saying why, and the ticket
    # is told nothing more
    with pytest.raises(
        ConfigurationError, match=r"fetches no approval link \(ApprovalLinksInTickets is false\)"
    ):
        tickets.handle(approval_task(case), NOW)
    assert len(sink.comments) == 1


def test_with_the_links_on_tickets_the_step_before_the_wait_leaves_them_to_the_waiting_step() -> None:
    # Given the ticket function with ApprovalLinksInTickets=true
    case = waiting_case()
    cases = InMemoryCaseRepository([case])
    sink = FakeTicketSink(now=lambda: NOW)
    approvals = FakeApprovalRequests(now=lambda: NOW)
    tickets = desk(cases, sink, approvals=approvals)

    # When the step before the wait runs, then the waiting step
    tickets.handle(before_approval_task(case), NOW)
    assert sink.comments == []
    tickets.handle(approval_task(case), NOW)

    # Then the ticket's one comment carries the approve and reject links, first
    [links] = sink.comment_links
    assert [link.label for link in links] == ["Approve", "Reject"]
    assert len(approvals.requested) == 1


def test_the_approval_links_go_on_the_ticket_once_with_their_expiry() -> None:
    # Given the case's ticket opened before the approval wait
    case = waiting_case()
    cases, sink = before_approval(case)
    approvals = FakeApprovalRequests(now=lambda: NOW)
    task = approval_task(case)

    # When the waiting step asks for the approval, and is retried
    first = request_approval_on_ticket(task, cases, approvals, lambda: sink, NOW)
    request_approval_on_ticket(task, cases, approvals, lambda: sink, NOW)

    # Then the approval function was asked (twice: it holds the same approval), naming the ticket
    assert [requested.ticket.id for requested in approvals.requested if requested.ticket] == ["FAKE-1"] * 2
    # And the ticket got one comment: the links first as links, with what the action changes and until when
    [(ticket, text)] = sink.comments
    [links] = sink.comment_links
    assert ticket.id == sink.opened[0].ticket.id
    assert [link.label for link in links] == ["Approve", "Reject"]
    assert all(link.url.startswith(APPROVAL_URL) for link in links)
    assert text.startswith("Approval requested for action 2 of 2")
    assert "expire at 2024-05-01T11:00:00+00:00" in text
    assert "Action: Isolate the instance i-0abc1234def567890" in text
    assert f"Changes: {describe(case.actions[1]).changes}" in text
    # And the step returns no link, only when they expire
    assert first.model_dump(mode="json") == {
        "case_id": case.case_id,
        "index": 1,
        "expires_at": "2024-05-01T11:00:00Z",
        "on_ticket": True,
    }


def test_an_approval_whose_ticket_fails_still_stands_and_the_case_says_why() -> None:
    # Given a case with a ticket, and a ticket provider that fails
    case = waiting_case()
    cases, _ = before_approval(case)
    failing = FakeTicketSink(error=TransientError("Jira unavailable"))

    # When the waiting step asks for the approval
    result = request_approval_on_ticket(
        approval_task(case), cases, FakeApprovalRequests(now=lambda: NOW), lambda: failing, NOW
    )

    # Then the approval stands (the approvers have the links), and the case's history says why the ticket
    # lacks them
    assert result.on_ticket is False
    note = stored(cases, case.case_id).history[-1].note
    assert note.startswith(
        "isolate_instance i-0abc1234def567890: its approval links could not be put on ticket"
    )
    assert "TransientError: Jira unavailable" in note


def test_an_approval_the_approval_function_cannot_hold_raises_for_the_waiting_steps_catch() -> None:
    # Given an approval function that is throttled
    case = waiting_case()
    cases, sink = before_approval(case)
    approvals = FakeApprovalRequests(error=TransientError("TooManyRequestsException"))

    # When the waiting step asks for the approval, Then the error reaches the state machine's Retry, and the
    # ticket is told nothing
    with pytest.raises(TransientError):
        request_approval_on_ticket(approval_task(case), cases, approvals, lambda: sink, NOW)
    assert sink.comments == []


def test_without_a_ticket_the_approval_is_asked_for_all_the_same() -> None:
    # Given a case whose ticket could not be opened before the wait
    case = waiting_case()
    cases = InMemoryCaseRepository([case])
    approvals = FakeApprovalRequests(now=lambda: NOW)

    # When the waiting step asks for the approval
    result = request_approval_on_ticket(approval_task(case), cases, approvals, FakeTicketSink, NOW)

    # Then the approval function was asked, naming no ticket
    assert [requested.ticket for requested in approvals.requested] == [None]
    assert result.on_ticket is False


def test_a_decision_is_told_to_the_ticket_once() -> None:
    # Given a ticketed case whose isolation a person approved (as the approval function records it)
    case = waiting_case()
    cases, sink = before_approval(case)
    decided = stored(cases, case.case_id)
    note = (
        "isolate_instance i-0abc1234def567890 approved by a person through the approval link at "
        "2024-05-01T10:05:00+00:00 from 203.0.113.44 (user agent curl/8)"
    )
    decided.record(decided.status, NOW, note)
    cases.save(decided)
    task = DecisionTicketTask(step="decision", case_id=case.case_id, index=1)

    # When the step after the decision runs, and is retried
    told = tell_decision(task, cases, lambda: sink, NOW)
    again = tell_decision(task, cases, lambda: sink, NOW)

    # Then the ticket heard once who approved it, when and from where, and that it runs now
    assert (told.told, again.told) == (True, False)
    [(_, text)] = sink.comments
    assert text == (
        f"Decision on action 2 of 2, Isolate the instance i-0abc1234def567890: {note}. It runs now; this "
        "ticket hears how it went when the remediation ends."
    )


def test_a_rejection_is_told_to_the_ticket() -> None:
    # Given a ticketed case whose isolation a person rejected
    case = waiting_case()
    cases, sink = before_approval(case)
    decided = stored(cases, case.case_id)
    by = "by a person through the approval link at 2024-05-01T10:05:00+00:00 from 203.0.113.44 (user agent x)"
    decided.actions[1] = decided.actions[1].model_copy(
        update={"status": ActionStatus.SKIPPED, "detail": f"not run: rejected {by}"}
    )
    decided.record(decided.status, NOW, f"isolate_instance i-0abc1234def567890 rejected {by}")
    cases.save(decided)

    # When the step after the rejection runs
    tell_decision(
        DecisionTicketTask(step="decision", case_id=case.case_id, index=1), cases, lambda: sink, NOW
    )

    # Then the ticket hears who rejected it and that it does not run
    [(_, text)] = sink.comments
    assert text.endswith(f"rejected {by}. It does not run.")


def test_a_decision_on_a_case_without_a_ticket_is_left_to_the_last_step() -> None:
    # Given a case without a ticket, When a decision step runs, Then nothing is sent
    case = waiting_case()
    sink = FakeTicketSink()
    result = tell_decision(
        DecisionTicketTask(step="decision", case_id=case.case_id, index=1),
        InMemoryCaseRepository([case]),
        lambda: sink,
        NOW,
    )
    assert result.told is False
    assert sink.comments == []


def test_the_last_step_tells_an_early_ticket_the_outcome_once() -> None:
    # Given a ticket opened before an approval, then the remediation ended: the isolation was rejected and
    # the case carries an error
    case = waiting_case()
    cases, sink = before_approval(case)
    ended = stored(cases, case.case_id)
    ended.actions[1] = ended.actions[1].model_copy(
        update={"status": ActionStatus.SKIPPED, "detail": "not run: rejected by a person"}
    )
    cases.save(ended)
    error = {"Error": "RemediationError", "Cause": "case x: block_ip_waf 198.51.100.7 failed: AccessDenied"}
    task = OpenTicketTask(case_id=case.case_id, error=error)

    # When the last step runs, and is retried
    open_ticket(task, cases, sink, NOW)
    open_ticket(task, cases, sink, NOW)

    # Then no second ticket opened, and the ticket heard once where the case stands: failed, with each action
    assert len(sink.opened) == 1
    [(_, text)] = sink.comments
    assert text.splitlines()[:2] == [
        "Update from vtriage: where the case stands now",
        "Status: FAILED (branch: remediate)",
    ]
    assert (
        "  - Isolate the instance (isolate_instance): i-0abc1234def567890, account 123456789012, "
        "Region us-east-1: skipped - not run: rejected by a person"
    ) in text.splitlines()
    assert text.endswith("Error: RemediationError: case x: block_ip_waf 198.51.100.7 failed: AccessDenied")
    assert stored(cases, case.case_id).status is CaseStatus.FAILED


def test_a_ticket_opened_at_the_end_is_told_nothing_more_by_a_retry() -> None:
    # Given a case ticketed by its last step
    case = triaged_case()
    cases, sink = ticket_for(case)

    # When the step is retried, Then the ticket hears nothing: its report says all of it
    open_ticket(OpenTicketTask(case_id=case.case_id), cases, sink, NOW)
    assert sink.comments == []


@pytest.mark.parametrize(
    ("event", "kind"),
    [
        ({"case_id": "c-1", "error": None}, OpenTicketTask),
        ({"step": "before_approval", "case_id": "c-1"}, OpenTicketTask),
        ({"step": "decision", "case_id": "c-1", "index": 0}, DecisionTicketTask),
        (
            {
                "step": "request_approval",
                "case_id": "c-1",
                "index": 0,
                "task_token": "t",
                "approval_url": APPROVAL_URL,
                "approval_timeout_seconds": 60,
            },
            ApprovalTicketTask,
        ),
    ],
)
def test_each_payload_of_the_state_machine_names_its_step(event: dict[str, Any], kind: type) -> None:
    # Given a payload the state machine sends the ticket function, When it is read, Then it names its step
    assert isinstance(ticket_task(event), kind)


def test_a_payload_naming_an_unknown_step_is_refused() -> None:
    # Given a payload naming no step the ticket function takes, When it is read, Then it is refused
    with pytest.raises(ValidationError):
        ticket_task({"step": "close", "case_id": "c-1"})


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


def test_an_informational_finding_is_said_informational_on_its_ticket() -> None:
    # Given the real AFSBP EC2.7 finding as Security Hub imports it, rated INFORMATIONAL
    case = _case_of_corpus_document("asr__afsbp-ec2.7_imported_envelope.json")

    # When its ticket's report is rendered, Then the headline and the severity line say the detector's word
    lines = render_report(case).text().splitlines()
    assert lines[0].startswith("vtriage case report: INFORMATIONAL 0, ")
    assert "Severity: INFORMATIONAL 0" in lines


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


def test_lists_show_the_first_few_and_count_the_rest() -> None:
    # Given a file known under twelve names, the context keeping ten, and a URL five engines categorise
    file_outcome, file_enrichment = enrichment_from_fixture("opencti__vt_test_file.json", IocType.FILE)
    names = [f"dropper-{number}.exe" for number in range(10)]
    file_enrichment.context = {"meaningful_name": "dropper-0.exe", "names": names, "names_total": 12}
    url_outcome, url_enrichment = enrichment_from_fixture("opencti__vt_test_url.json", IocType.URL)
    url_enrichment.context = {"categories": {f"engine-{number}": f"category {number}" for number in range(5)}}

    # When their case's ticket opens
    report = ticket_with((file_outcome, file_enrichment), (url_outcome, url_enrichment))

    # Then each list shows its first few, and how many more there are, kept or not
    assert (
        "also named: dropper-1.exe, dropper-2.exe, dropper-3.exe, dropper-4.exe, dropper-5.exe and 6 more"
        in report
    )
    assert "categories: category 0, category 1, category 2 and 2 more" in report


def test_the_report_names_what_the_finding_is_about_when_vtriage_cannot_act_on_it() -> None:
    # Given the case of GuardDuty's real finding on an RDS DB instance (elastic/integrations' sample)
    case = _case_of_corpus_document("elastic-integrations__aws_guardduty_test-guardduty_4.json")

    # When its report is rendered
    lines = render_report(case).text().splitlines()

    # Then its resources name the DB instance, by its identifier and ARN, and say vtriage acts on none
    assert "Resources (1)" in lines
    assert (
        "  - RDS DB instance: GeneratedFindingDBInstanceId"
        " (arn:aws:rds:us-east-1:123456789000:db:GeneratedFindingDBInstanceId):"
        " vtriage takes no action on this kind of resource"
    ) in lines
