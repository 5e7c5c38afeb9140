"""The approval function URL's pages, in memory: what a person sees of a case whose alert is hostile,
and what the page records of who decided."""

from __future__ import annotations

from typing import Any

from tests.factories import make_alert, make_case
from tests.unit.test_approval import APPROVAL_URL, KEY, NOW
from vtriage.approval import ApprovalRequest, request_approval
from vtriage.approval_page import answer
from vtriage.errors import TransientError
from vtriage.fakes import (
    FakeApprovalNotifier,
    FakeTaskCallback,
    InMemoryApprovalStore,
    InMemoryCaseRepository,
)
from vtriage.models import Action, ActionStatus, ActionType, Approver, CaseStatus, Decision, Verdict

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
    assert "<dt>Why</dt><dd>the playbook asks\\r\\nReject: hxxps://evil.example/r</dd>" in body
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
    assert "approved: it runs now" in page["body"]
    assert [kind for kind, _, _ in callback.calls] == ["success"]
