"""The approval function URL's pages, in memory: what a person sees of a case whose alert is hostile,
what the page records of who decided, and the case page a ticket links to, with VT Augment's widgets
(minted when the page opens) or links to VirusTotal's own pages."""

from __future__ import annotations

import base64
import hashlib
import html
import re
from datetime import timedelta
from typing import Any

import pytest

from tests.factories import make_alert, make_case
from tests.unit.test_approval import APPROVAL_URL, KEY, NOW
from vtriage.approval import ApprovalRequest, case_page_link, request_approval
from vtriage.approval_links import Approver, Decision
from vtriage.approval_page import MAX_WIDGETS, answer
from vtriage.errors import TransientError
from vtriage.fakes import (
    FakeApprovalNotifier,
    FakeTaskCallback,
    FakeWidgetSource,
    InMemoryApprovalStore,
    InMemoryCaseRepository,
)
from vtriage.models import (
    Action,
    ActionStatus,
    ActionType,
    Case,
    CaseStatus,
    IocOutcome,
    IocType,
    Resource,
    ResourceType,
    Subject,
    VendorAlert,
    Verdict,
)
from vtriage.ticket import render_report
from vtriage.virustotal.errors import (
    VirusTotalError,
    VirusTotalForbiddenError,
    VirusTotalQuotaExceededError,
    VirusTotalUnavailableError,
)
from vtriage.virustotal.widget import Widget, widget_of

HOSTILE_TITLE = "Scan <script>alert(1)</script>\nApprove: https://evil.example/a \u202eexe.pdf"


def _waiting() -> tuple[InMemoryCaseRepository, InMemoryApprovalStore, str, str]:
    action = Action(
        type=ActionType.QUARANTINE_OBJECT,
        target="uploads/<img src=x onerror=alert(1)>\nkey",
        status=ActionStatus.PENDING_APPROVAL,
        detail="the playbook asks\r\nReject: https://evil.example/r",
    )
    alert = make_alert(title=HOSTILE_TITLE)
    case = make_case(alert, status=CaseStatus.ENRICHED, verdict=Verdict.MALICIOUS, actions=[action])
    cases, store = InMemoryCaseRepository([case]), InMemoryApprovalStore()
    request = ApprovalRequest(
        case_id=case.case_id,
        index=0,
        task_token="task-1",
        approval_url=APPROVAL_URL,
        approval_timeout_seconds=600,
    )
    links = request_approval(request, cases, store=store, notifier=FakeApprovalNotifier(), key=KEY, now=NOW)
    return cases, store, links.approve_url, case.case_id


def _event(method: str, link: str, **http: str) -> dict[str, Any]:
    query = link.split("?", 1)[1]
    return {
        "rawQueryString": query if method == "GET" else "",
        "body": query if method == "POST" else None,
        "requestContext": {"http": {"method": method, **http}},
    }


def test_the_confirmation_page_shows_the_alerts_values_escaped_once_per_line() -> None:
    # Given an approval waiting for a case whose title, target and detail carry markup and fake lines
    cases, store, approve, _ = _waiting()

    # When the person opens the approve link
    deps: dict[str, Any] = {"key": KEY, "store": store, "cases": cases, "now": NOW}
    page = answer(_event("GET", approve), callback=FakeTaskCallback(), **deps)

    # Then the page shows each value on its labelled row, escaped for HTML and with its controls visible
    body = page["body"]
    assert page["statusCode"] == 200
    title = "<dt>Title</dt><dd>Scan &lt;script&gt;alert(1)&lt;/script&gt;\\nApprove: hxxps://evil.example/a"
    assert title in body
    assert "\\u202eexe.pdf</dd>" in body
    assert "<dt>Target</dt><dd>uploads/&lt;img src=x onerror=alert(1)&gt;\\nkey</dd>" in body
    assert "<dt>Why it waits</dt><dd>the playbook asks\\r\\nReject: hxxps://evil.example/r</dd>" in body
    # And nothing from the alert reaches the page as markup, a control character or a link
    assert "<script>" not in body
    assert "<img" not in body
    assert "\u202e" not in body
    assert "https://evil" not in body
    assert "\n" not in body


def test_confirming_records_the_address_and_user_agent_lambda_reports() -> None:
    # Given an approval, When a person confirms it from a browser
    cases, store, approve, case_id = _waiting()
    http = {"sourceIp": "198.51.100.23", "userAgent": "Mozilla/5.0"}
    deps: dict[str, Any] = {"key": KEY, "store": store, "cases": cases, "now": NOW}
    page = answer(_event("POST", approve, **http), callback=FakeTaskCallback(), **deps)

    # Then it decided, and the store and the case keep who did
    assert page["statusCode"] == 200
    assert list(store.decided.values()) == [
        (Decision.APPROVE, Approver(source_ip="198.51.100.23", user_agent="Mozilla/5.0"))
    ]
    stored = cases.get(case_id)
    assert stored is not None
    assert stored.history[-1].note.endswith("from 198.51.100.23 (user agent Mozilla/5.0)")


def test_a_decision_step_functions_refused_is_a_503_and_the_link_works_again() -> None:
    # Given an approval, and Step Functions throttling the callback
    cases, store, approve, _ = _waiting()
    throttled = FakeTaskCallback(error=TransientError("ThrottlingException"))

    # When the person confirms, Then the page says nothing was decided and to try again
    page = answer(_event("POST", approve), key=KEY, store=store, cases=cases, callback=throttled, now=NOW)
    assert page["statusCode"] == 503
    assert "Nothing was decided and the link still works" in page["body"]

    # And the same link opens its page and decides once Step Functions answers, then is used
    callback = FakeTaskCallback()
    deps: dict[str, Any] = {"key": KEY, "store": store, "cases": cases, "callback": callback, "now": NOW}
    assert answer(_event("GET", approve), **deps)["statusCode"] == 200
    assert answer(_event("POST", approve), **deps)["statusCode"] == 200
    assert answer(_event("POST", approve), **deps)["statusCode"] == 410
    assert [kind for kind, _, _ in callback.calls] == ["success"]


INSTANCE = "i-0abc1234def567890"


def _isolation_waiting(
    timeout_seconds: int = 600,
) -> tuple[InMemoryCaseRepository, InMemoryApprovalStore, Any]:
    """An isolation of the alert's instance waiting for a person, on a malicious case with one IOC."""
    action = Action(
        type=ActionType.ISOLATE_INSTANCE,
        target=INSTANCE,
        status=ActionStatus.PENDING_APPROVAL,
        detail="waiting for a person: the playbook asks for approval before this action",
    )
    ioc = IocOutcome(
        type=IocType.DOMAIN,
        value="c2.example.com",
        found_at="service.action.dnsRequestAction.domain",
        verdict=Verdict.MALICIOUS,
        malicious=6,
        total=93,
        reasons=["6 of 93 engines flag it as malicious (threshold 3)."],
    )
    case = make_case(
        make_alert(), status=CaseStatus.ENRICHED, verdict=Verdict.MALICIOUS, actions=[action], iocs=[ioc]
    )
    cases, store = InMemoryCaseRepository([case]), InMemoryApprovalStore()
    request = ApprovalRequest(
        case_id=case.case_id,
        index=0,
        task_token="task-isolation",
        approval_url=APPROVAL_URL,
        approval_timeout_seconds=timeout_seconds,
    )
    links = request_approval(request, cases, store=store, notifier=FakeApprovalNotifier(), key=KEY, now=NOW)
    return cases, store, links


def _visible_text(body: str) -> str:
    """What a person reads of a page: its text without the markup and the stylesheet, unescaped."""
    body = re.sub(r"<style>.*?</style>", "", body, flags=re.DOTALL)
    return html.unescape(re.sub(r"<[^>]+>", " ", body))


def test_the_approval_page_says_what_the_action_changes_how_it_is_rolled_back_and_until_when() -> None:
    # Given an isolation waiting for a person, its links valid for ten minutes
    cases, store, links = _isolation_waiting()

    # When the approver opens the approve link
    page = answer(
        _event("GET", links.approve_url),
        key=KEY,
        store=store,
        cases=cases,
        callback=FakeTaskCallback(),
        now=NOW,
    )

    # Then the page asks about the action in words, and says what it changes and how it is rolled back
    body = page["body"]
    assert "<h1>Approve: isolate the instance?</h1>" in body
    text = " ".join(_visible_text(body).split())
    assert (
        f"Changes Moves every network interface of instance {INSTANCE} into vtriage's quarantine security "
        "group, which allows no traffic in or out; connections already open end too." in text
    )
    assert "Rollback Rollback puts each interface back in the security groups it had before." in text
    assert "Where account 123456789012, Region us-east-1 (the finding's own)" in text
    # And when its link stops working, in UTC and from now
    assert "This link works until 2026-11-26 12:10 UTC (in 10 minutes)." in text
    # And the finding and the evidence: its account, Region, resource, detector, the IOC and its link
    for shown in (
        "Account 123456789012",
        "Region us-east-1",
        f"EC2 instance {INSTANCE}",
        "Detector Amazon GuardDuty",
        "Domain c2.example.com",
        "Detections 6 malicious and 0 suspicious of 93 engines",
        "VirusTotal's page of it",
    ):
        assert shown in text
    assert '<a href="https://www.virustotal.com/gui/domain/c2.example.com"' in body
    # And no code a person would have to decode, and no sentence ending twice
    for code in ("isolate_instance", "pending_approval", "ENRICHED", "guardduty "):
        assert code not in text
    assert ".." not in text
    # And it is laid out for a phone too, and decided nothing
    assert "<meta name='viewport' content='width=device-width, initial-scale=1'>" in body
    assert store.decided == {}


def test_the_page_runs_no_script_and_styles_only_through_its_one_stylesheet() -> None:
    # Given an approval page
    cases, store, links = _isolation_waiting()
    page = answer(
        _event("GET", links.approve_url),
        key=KEY,
        store=store,
        cases=cases,
        callback=FakeTaskCallback(),
        now=NOW,
    )

    # Then its only style is the one stylesheet its CSP allows by hash: no style attribute (a browser
    # would refuse it), no script, nothing loaded from elsewhere
    body = page["body"]
    assert body.count("<style>") == 1
    assert " style=" not in body
    for tag in ("<script", "<link", "<img", "<object", "<embed"):
        assert tag not in body
    assert page["headers"]["content-security-policy"] == _expected_csp(page, frames=False)


@pytest.mark.parametrize(
    ("timeout_seconds", "expires"),
    [
        (30, "2026-11-26 12:00 UTC (in less than a minute)"),
        (3_660, "2026-11-26 13:01 UTC (in 1 hour 1 minute)"),
        (86_400, "2026-11-27 12:00 UTC (in 1 day)"),
        (7 * 86_400 + 2 * 3_600, "2026-12-03 14:00 UTC (in 7 days 2 hours)"),
    ],
)
def test_the_expiry_is_given_in_utc_and_from_now(timeout_seconds: int, expires: str) -> None:
    # Given links valid for this long
    cases, store, links = _isolation_waiting(timeout_seconds)

    # When the approve link is opened, Then the page says until when, and how long that is from now
    page = answer(
        _event("GET", links.approve_url),
        key=KEY,
        store=store,
        cases=cases,
        callback=FakeTaskCallback(),
        now=NOW,
    )
    assert f"This link works until {expires}." in page["body"]


def test_rejecting_asks_and_answers_in_words() -> None:
    # Given an isolation waiting, and its reject link
    cases, store, links = _isolation_waiting()
    deps: dict[str, Any] = {"key": KEY, "store": store, "cases": cases, "now": NOW}

    # When the person opens it, Then the page asks to reject the action, in words, with its button
    page = answer(_event("GET", links.reject_url), callback=FakeTaskCallback(), **deps)
    assert "<h1>Reject: isolate the instance?</h1>" in page["body"]
    assert '<button type="submit" class="reject">Reject: do not run it</button>' in page["body"]

    # When the person presses it, Then the page says what was rejected and what becomes of it
    callback = FakeTaskCallback()
    done = answer(_event("POST", links.reject_url), callback=callback, **deps)
    text = " ".join(_visible_text(done["body"]).split())
    assert "Rejected: Isolate the instance" in text
    assert (
        f"You rejected it: it will not run on {INSTANCE}, and the case goes to its ticket with your decision."
        in text
    )
    assert [kind for kind, _, _ in callback.calls] == ["failure"]


def test_a_used_link_says_so_in_one_sentence() -> None:
    # Given an approval decided through its approve link
    cases, store, links = _isolation_waiting()
    deps: dict[str, Any] = {"key": KEY, "store": store, "cases": cases, "callback": FakeTaskCallback()}
    assert answer(_event("POST", links.approve_url), now=NOW, **deps)["statusCode"] == 200

    # When its reject link is opened, Then the page says it is no longer valid, as one sentence
    page = answer(_event("GET", links.reject_url), now=NOW, **deps)
    assert page["statusCode"] == 410
    assert "<p>This approval was already decided.</p>" in page["body"]


def test_a_vendors_finding_shows_the_vendor_and_where_its_action_acts() -> None:
    # Given a CrowdStrike Falcon alert, its host's containment waiting for a person
    vendor = VendorAlert(
        platform="CrowdStrike Falcon", product="Falcon Insight XDR", host="WIN-7F3K2", user="ACME\\jdoe"
    )
    host = Resource(type=ResourceType.FALCON_HOST, id="6d5e2a1f0b3c4d5e6f708192a3b4c5d6")
    alert = make_alert(source="falcon", account="none", region="none", vendor=vendor, resources=(host,))
    action = Action(type=ActionType.CONTAIN_HOST, target=host.id, status=ActionStatus.PENDING_APPROVAL)
    case = make_case(alert, status=CaseStatus.ENRICHED, verdict=Verdict.MALICIOUS, actions=[action])
    cases, store = InMemoryCaseRepository([case]), InMemoryApprovalStore()
    request = ApprovalRequest(
        case_id=case.case_id, index=0, task_token="t", approval_url=APPROVAL_URL, approval_timeout_seconds=600
    )
    links = request_approval(request, cases, store=store, notifier=FakeApprovalNotifier(), key=KEY, now=NOW)

    # When the approve link is opened
    page = answer(
        _event("GET", links.approve_url),
        key=KEY,
        store=store,
        cases=cases,
        callback=FakeTaskCallback(),
        now=NOW,
    )

    # Then the finding names the vendor, its product, host and user, and no AWS account or Region
    text = " ".join(_visible_text(page["body"]).split())
    assert "Vendor CrowdStrike Falcon Product Falcon Insight XDR Host WIN-7F3K2 User ACME\\jdoe" in text
    assert "Falcon host 6d5e2a1f0b3c4d5e6f708192a3b4c5d6" in text
    assert "Account none" not in text
    # And the action acts in the deployment's own Falcon tenant
    assert "Where the deployment's own CrowdStrike Falcon tenant" in text
    assert "<h1>Approve: contain the host in CrowdStrike Falcon?</h1>" in page["body"]


class SettleFails(InMemoryApprovalStore):
    """The approvals store, unavailable at the moment the decision is marked as made."""

    def settle(self, approval_id: str) -> None:
        raise TransientError("ProvisionedThroughputExceededException")


def test_a_decision_the_step_took_stands_when_the_store_cannot_mark_it() -> None:
    # Given an approval, and a store that fails once the waiting step has taken the decision
    cases, _, _, case_id = _waiting()
    store = SettleFails()
    request = ApprovalRequest(
        case_id=case_id, index=0, task_token="task-2", approval_url=APPROVAL_URL, approval_timeout_seconds=600
    )
    links = request_approval(request, cases, store=store, notifier=FakeApprovalNotifier(), key=KEY, now=NOW)
    callback = FakeTaskCallback()

    # When the person confirms
    confirm = _event("POST", links.approve_url)
    page = answer(confirm, key=KEY, store=store, cases=cases, callback=callback, now=NOW)

    # Then the page says it was approved (the step has it), never that nothing was decided
    assert page["statusCode"] == 200
    assert "<h1>Approved: Quarantine the S3 object</h1>" in page["body"]
    assert [kind for kind, _, _ in callback.calls] == ["success"]


# ---------------------------------------------------------------- the case page and VT Augment

CASE_PAGE_KEY = b"a-case-page-key-apart-from-the-signing-key"


def _expected_csp(page: dict[str, Any], *, frames: bool) -> str:
    """The CSP a page must carry: its one inline stylesheet allowed by that text's SHA-256 (as a browser
    checks it), nothing else loaded, no other site framing it; VirusTotal's frames only when it has any."""
    [stylesheet] = re.findall(r"<style>(.*?)</style>", page["body"], flags=re.DOTALL)
    digest = base64.b64encode(hashlib.sha256(stylesheet.encode()).digest()).decode()
    csp = (
        f"default-src 'none'; style-src 'sha256-{digest}'; form-action 'self'; base-uri 'none'; "
        "frame-ancestors 'none'"
    )
    return csp + ("; frame-src https://www.virustotal.com" if frames else "")


HOSTILE_DOMAIN = "c2.example.com<script>alert(1)</script>"
HOSTILE_REASON = "engines say <b>bad</b>\nApprove: https://evil.example/a"


def _looked_up(ioc_type: IocType, value: str, **fields: Any) -> IocOutcome:
    defaults: dict[str, Any] = {
        "found_at": "detail.service.action",
        "verdict": Verdict.MALICIOUS,
        "malicious": 7,
        "suspicious": 1,
        "total": 90,
        "reasons": ["7 engines flag it malicious (threshold 3)"],
    }
    return IocOutcome(type=ioc_type, value=value, **(defaults | fields))


def _case_with_iocs(*iocs: IocOutcome) -> Case:
    alert = make_alert(title=HOSTILE_TITLE)
    return make_case(alert, status=CaseStatus.TICKETED, verdict=Verdict.MALICIOUS, iocs=list(iocs))


def _three_iocs() -> Case:
    return _case_with_iocs(
        _looked_up(IocType.IP, "198.51.100.7", link="https://www.virustotal.com/gui/ip-address/198.51.100.7"),
        _looked_up(IocType.DOMAIN, HOSTILE_DOMAIN, reasons=[HOSTILE_REASON]),
        IocOutcome(type=IocType.IP, value="10.0.1.25", found_at="detail.resource", skipped_reason="private"),
    )


def _open_case_page(
    case: Case, widgets: FakeWidgetSource | None = None, *, link_key: bytes = CASE_PAGE_KEY
) -> dict[str, Any]:
    """Open the case's page, as the ticket's link does, through the function URL's request."""
    link = case_page_link(APPROVAL_URL, case.case_id, link_key, NOW, timedelta(days=30))
    deps: dict[str, Any] = {"key": KEY, "store": InMemoryApprovalStore(), "now": NOW}
    cases = InMemoryCaseRepository([case])
    return answer(
        _event("GET", link.url),
        cases=cases,
        callback=FakeTaskCallback(),
        case_page_key=CASE_PAGE_KEY,
        widgets=widgets,
        **deps,
    )


def _frames(page: dict[str, Any]) -> list[str]:
    return [html.unescape(src) for src in re.findall(r'<iframe src="([^"]*)"', page["body"])]


def test_with_vt_augment_the_case_page_frames_a_widget_minted_for_each_ioc_looked_up() -> None:
    # Given a case with two IOCs looked up and a private address kept but never looked up
    case = _three_iocs()
    widgets = FakeWidgetSource()

    # When its page is opened with VT Augment
    page = _open_case_page(case, widgets)

    # Then VirusTotal is asked for a widget of each IOC looked up, now, and never of the private one
    assert page["statusCode"] == 200
    assert widgets.queries == ["198.51.100.7", HOSTILE_DOMAIN]
    # And each widget is framed beside its IOC, with VirusTotal's detection ratio for context
    assert _frames(page) == [
        "https://www.virustotal.com/ui/widget/html/fake-1",
        "https://www.virustotal.com/ui/widget/html/fake-2",
    ]
    assert page["body"].count("3 of 70 security vendors flag it now") == 2
    # And the page allows exactly VirusTotal's frame origin, and nothing else from elsewhere
    assert page["headers"]["content-security-policy"] == _expected_csp(page, frames=True)
    assert page["headers"]["referrer-policy"] == "no-referrer"
    assert "<script" not in page["body"]
    assert "<link" not in page["body"]
    assert "<img" not in page["body"]


def test_the_case_page_shows_the_finding_verdicts_and_reasons_with_every_sender_value_escaped() -> None:
    # Given a case whose title, IOC value and reason carry markup and fake lines
    case = _three_iocs()

    # When its page is opened
    body = _open_case_page(case, FakeWidgetSource())["body"]

    # Then the finding, each verdict and each reason are on their labelled rows, escaped
    assert (
        "<dt>Title</dt><dd>Scan &lt;script&gt;alert(1)&lt;/script&gt;\\nApprove: hxxps://evil.example/a"
        in body
    )
    assert "<dt>Verdict</dt><dd><span class='badge malicious'>malicious</span></dd>" in body
    assert "<h3>Domain <code>c2.example.com&lt;script&gt;alert(1)&lt;/script&gt;</code></h3>" in body
    assert "<dt>Why</dt><dd>engines say &lt;b&gt;bad&lt;/b&gt;\\nApprove: hxxps://evil.example/a</dd>" in body
    assert "<dt>Not looked up</dt><dd>private</dd>" in body
    # And no sender value reaches the page as markup, a control character or a link
    assert "<script>" not in body
    assert "<b>" not in body
    assert "https://evil" not in body
    assert "\u202e" not in body
    assert "\n" not in body
    # And the page says it decides nothing, has no button, and when its link stops working
    assert "decides nothing" in body
    assert "<form" not in body
    assert "Its link works until 2026-12-26 12:00 UTC (in 30 days)." in body


def test_without_vt_augment_the_case_page_links_to_virustotals_own_pages() -> None:
    # Given a case with IOCs looked up, and a deployment without VT Augment
    case = _three_iocs()

    # When its page is opened
    page = _open_case_page(case, widgets=None)

    # Then each IOC looked up links to its page on VirusTotal, and nothing is framed or allowed to be
    assert _frames(page) == []
    assert page["headers"]["content-security-policy"] == _expected_csp(page, frames=False)
    body = page["body"]
    assert (
        '<a href="https://www.virustotal.com/gui/ip-address/198.51.100.7" rel="noopener noreferrer">' in body
    )
    domain_page = (
        "https://www.virustotal.com/gui/domain/c2.example.com%3Cscript%3Ealert%281%29%3C%2Fscript%3E"
    )
    assert f'<a href="{domain_page}" rel="noopener noreferrer">' in body
    assert "no widget" not in body
    # And the private address has no VirusTotal link at all: it was never sent there
    assert "10.0.1.25" in body
    assert "gui/ip-address/10.0.1.25" not in body


@pytest.mark.parametrize(
    ("error", "said"),
    [
        (
            VirusTotalForbiddenError("Forbidden", "ForbiddenError", 403),
            "not licensed for VT Augment (VirusTotal answered 403)",
        ),
        (
            VirusTotalQuotaExceededError("Quota exceeded", "QuotaExceededError", 429),
            "quota is spent for now (VirusTotal answered 429)",
        ),
        (VirusTotalUnavailableError("no answer", "Timeout"), "did not answer in time"),
        (VirusTotalError("odd", "InvalidResponseError", 200), "VirusTotal answered InvalidResponseError"),
    ],
)
def test_a_widget_virustotal_refuses_leaves_the_page_with_a_link_and_the_reason(
    error: VirusTotalError, said: str
) -> None:
    # Given a case with IOCs looked up, and VirusTotal refusing to mint their widgets
    case = _three_iocs()

    # When its page is opened with VT Augment
    page = _open_case_page(case, FakeWidgetSource(error=error))

    # Then the page still shows the case, each IOC linking to VirusTotal's page with why no widget
    assert page["statusCode"] == 200
    assert _frames(page) == []
    body = page["body"]
    assert body.count("(no widget: ") == 2
    assert said in body
    assert '<a href="https://www.virustotal.com/gui/ip-address/198.51.100.7"' in body
    # And with nothing framed, no frame origin is allowed
    assert page["headers"]["content-security-policy"] == _expected_csp(page, frames=False)


def test_one_widget_refused_leaves_the_others_framed() -> None:
    # Given two IOCs, and VirusTotal refusing the widget of one of them
    case = _three_iocs()
    widgets = FakeWidgetSource(errors={HOSTILE_DOMAIN: VirusTotalQuotaExceededError("Quota exceeded")})

    # When its page is opened
    page = _open_case_page(case, widgets)

    # Then the other is framed, the page allows VirusTotal's frames, and the refused one is a link
    assert _frames(page) == ["https://www.virustotal.com/ui/widget/html/fake-1"]
    assert page["headers"]["content-security-policy"] == _expected_csp(page, frames=True)
    assert "(no widget: the VirusTotal key&#x27;s quota is spent for now" in page["body"]


def test_a_page_mints_the_widgets_of_its_first_iocs_only() -> None:
    # Given a case with more IOCs looked up than a page mints widgets for
    iocs = [_looked_up(IocType.IP, f"198.51.100.{n}") for n in range(MAX_WIDGETS + 2)]
    widgets = FakeWidgetSource()

    # When its page is opened
    page = _open_case_page(_case_with_iocs(*iocs), widgets)

    # Then only the first ones are minted (each costs a request on the key's quota), the rest are links
    assert widgets.queries == [f"198.51.100.{n}" for n in range(MAX_WIDGETS)]
    assert len(_frames(page)) == MAX_WIDGETS
    assert page["body"].count(f"a page shows the widgets of its first {MAX_WIDGETS} IOCs only") == 2


def test_the_approval_page_shows_the_cases_evidence_with_its_widgets() -> None:
    # Given an approval waiting on a case with an IOC looked up
    cases, store, approve, case_id = _waiting()
    case = cases.get(case_id)
    assert case is not None
    case.iocs = [_looked_up(IocType.IP, "198.51.100.7")]
    cases.save(case)
    widgets = FakeWidgetSource()

    # When the approver opens the approve link
    page = answer(
        _event("GET", approve),
        key=KEY,
        store=store,
        cases=cases,
        callback=FakeTaskCallback(),
        now=NOW,
        widgets=widgets,
    )

    # Then the page has its button and the evidence, with the IOC's widget minted now; nothing decided
    assert page["statusCode"] == 200
    assert '<button type="submit" class="approve">Approve: run it</button>' in page["body"]
    assert _frames(page) == ["https://www.virustotal.com/ui/widget/html/fake-1"]
    assert page["headers"]["content-security-policy"] == _expected_csp(page, frames=True)
    assert store.decided == {}


def test_a_case_page_link_is_refused_unless_the_case_page_key_signed_it_and_it_is_still_valid() -> None:
    # Given a case
    case = _three_iocs()
    cases = InMemoryCaseRepository([case])
    deps: dict[str, Any] = {
        "key": KEY,
        "store": InMemoryApprovalStore(),
        "cases": cases,
        "callback": FakeTaskCallback(),
        "case_page_key": CASE_PAGE_KEY,
    }
    widgets = FakeWidgetSource()

    # When a link signed with another key (the approval signing key) is opened, Then it is refused: 403
    forged = case_page_link(APPROVAL_URL, case.case_id, KEY, NOW, timedelta(days=1))
    assert answer(_event("GET", forged.url), now=NOW, widgets=widgets, **deps)["statusCode"] == 403
    # When an approval token is given as a case page link, Then it is refused: 403
    _, _, approve, _ = _waiting()
    as_view = approve.replace("?token=", "?view=")
    assert answer(_event("GET", as_view), now=NOW, widgets=widgets, **deps)["statusCode"] == 403
    # When a genuine link has expired, Then it is gone: 410
    genuine = case_page_link(APPROVAL_URL, case.case_id, CASE_PAGE_KEY, NOW, timedelta(days=1))
    later = NOW + timedelta(days=1)
    assert answer(_event("GET", genuine.url), now=later, widgets=widgets, **deps)["statusCode"] == 410
    # When the deployment has no case page key, Then no case page link is honoured: 403
    without = deps | {"case_page_key": None}
    assert answer(_event("GET", genuine.url), now=NOW, widgets=widgets, **without)["statusCode"] == 403
    # And none of these minted a widget
    assert widgets.queries == []


def test_a_case_page_link_decides_nothing_even_when_posted() -> None:
    # Given a case page link
    case = _three_iocs()
    link = case_page_link(APPROVAL_URL, case.case_id, CASE_PAGE_KEY, NOW, timedelta(days=30))
    store = InMemoryApprovalStore()
    callback = FakeTaskCallback()

    # When its token is posted as the page's button would post an approval
    deps: dict[str, Any] = {"key": KEY, "store": store, "cases": InMemoryCaseRepository([case])}
    page = answer(_event("POST", link.url), callback=callback, now=NOW, case_page_key=CASE_PAGE_KEY, **deps)

    # Then nothing is decided: there is no approval token in it
    assert page["statusCode"] == 400
    assert callback.calls == []


def test_a_tickets_case_page_link_states_its_expiry_and_opens_the_case_page() -> None:
    # Given a case, and its case page link made when its ticket opens
    case = _three_iocs()
    link = case_page_link(APPROVAL_URL, case.case_id, CASE_PAGE_KEY, NOW, timedelta(days=30))

    # When the ticket's report is rendered
    text = render_report(case, case_page=link).text()

    # Then the link is among vtriage's own links, with when it stops working and that it decides nothing
    assert f"Case page: {link.url}" in text
    assert "decides nothing, works until 2026-12-26T12:00+00:00" in text
    assert text.index("Case page:") < text.index("Title:")
    # And that link opens the case's page
    page = answer(
        _event("GET", link.url),
        key=KEY,
        store=InMemoryApprovalStore(),
        cases=InMemoryCaseRepository([case]),
        callback=FakeTaskCallback(),
        now=NOW,
        case_page_key=CASE_PAGE_KEY,
    )
    assert page["statusCode"] == 200
    assert f"Case {case.case_id}" in page["body"]


@pytest.mark.parametrize(
    ("url", "framed"),
    [
        (
            "https://www.virustotal.com/ui/widget/html/OTEzZjdh",
            "https://www.virustotal.com/ui/widget/html/OTEzZjdh",
        ),
        # The documentation's own example names the bare host: the same page, framed from www
        (
            "https://virustotal.com/ui/widget/html/OTEzZjdh",
            "https://www.virustotal.com/ui/widget/html/OTEzZjdh",
        ),
        ("https://evil.example/ui/widget/html/OTEzZjdh", None),
        ("http://www.virustotal.com/ui/widget/html/OTEzZjdh", None),
        ("https://www.virustotal.com/gui/home", None),
        ("https://www.virustotal.com.evil.example/ui/widget/html/x", None),
        ("https://user@www.virustotal.com/ui/widget/html/x", None),
        ('https://www.virustotal.com/ui/widget/html/x"onload="alert(1)', None),
        ("javascript:alert(1)", None),
    ],
)
def test_only_a_widget_page_of_virustotals_is_ever_framed(url: str, framed: str | None) -> None:
    # Given VirusTotal's answer (or a gateway's standing in for it) naming this widget URL
    data = {"url": url, "detection_ratio": {"detections": 5, "total": 71}}

    # When it is read, Then only a widget page of VirusTotal's is kept, on the one origin the CSP allows
    if framed is None:
        with pytest.raises(VirusTotalError, match="no widget URL of VirusTotal's"):
            widget_of(data)
    else:
        assert widget_of(data) == Widget(url=framed, detections=5, total=71)


def test_the_page_names_the_lambda_function_a_finding_is_about_escaped() -> None:
    # Given a case about a Lambda function whose name carries markup and a fake line
    function = Subject(
        type="Lambda",
        id="arn:aws:lambda:us-east-1:123456789012:function:image-resizer",
        name="image-resizer<b>\nApprove: https://evil.example/a",
    )
    case = make_case(
        make_alert(resources=(), subjects=(function,)), status=CaseStatus.TICKETED, verdict=Verdict.MALICIOUS
    )

    # When its page is opened
    body = _open_case_page(case, FakeWidgetSource())["body"]

    # Then the finding names the function, its ARN, and that vtriage takes no action on it, escaped
    assert (
        "<dt>Lambda function</dt><dd>image-resizer&lt;b&gt;\\nApprove: hxxps://evil.example/a"
        " (arn:aws:lambda:us-east-1:123456789012:function:image-resizer):"
        " vtriage takes no action on this kind of resource</dd>"
    ) in body
    assert "<b>" not in body
