"""Approvals and the blast-radius cap, in memory: signed single-use links, and which actions wait."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.factories import make_alert, make_case
from vtriage.approval import (
    ApprovalRequest,
    GoneTokenError,
    InvalidTokenError,
    carry_out_decision,
    check,
    request_approval,
    sign,
    verify,
)
from vtriage.approval_links import ApprovalClaims, ApprovalLinks, Approver, Decision
from vtriage.composition.remediate import SkippingActuator, actuators
from vtriage.config.remediate import RemediateSettings
from vtriage.eligibility import Place
from vtriage.errors import ConfigurationError, TransientError
from vtriage.fakes import (
    FakeActuator,
    FakeActuatorsByPlace,
    FakeApprovalNotifier,
    FakeBlastRadius,
    FakeTaskCallback,
    InMemoryApprovalStore,
    InMemoryCaseRepository,
)
from vtriage.models import Action, ActionStatus, ActionType, Case, CaseStatus, TaskInput, Ticket, Verdict
from vtriage.ports import CLAIM_LEASE
from vtriage.remediate import ActionTask, plan_remediation, run_action

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
# The deployment's own place: the account and Region `make_alert` names.
PLACE = Place(own_account="123456789012", regions=frozenset({"us-east-1"}))
KEY = b"a-signing-key-of-enough-length-for-hmac-sha256"
APPROVAL_URL = "https://abc123.lambda-url.us-east-1.on.aws/"


def waiting_case(*statuses: ActionStatus) -> Case:
    actions = [
        Action(type=ActionType.ISOLATE_INSTANCE, target=f"i-{index}", status=status)
        for index, status in enumerate(statuses)
    ]
    return make_case(make_alert(), status=CaseStatus.ENRICHED, verdict=Verdict.MALICIOUS, actions=actions)


def claims(**overrides: Any) -> ApprovalClaims:
    values: dict[str, Any] = {
        "approval_id": "0123456789abcdef0123456789abcdef",
        "case_id": "guardduty-1",
        "action_index": 0,
        "decision": Decision.APPROVE,
        "expires_at": int((NOW + timedelta(hours=1)).timestamp()),
    }
    return ApprovalClaims(**(values | overrides))


def token_of(link: str) -> str:
    return parse_qs(urlsplit(link).query)["token"][0]


# ---------------------------------------------------------------- tokens


def test_a_signed_token_gives_back_its_claims() -> None:
    # Given claims signed with the key, When verified with it, Then they come back unchanged
    assert verify(sign(claims(), KEY), KEY, NOW) == claims()


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda t: sign(claims(decision=Decision.APPROVE), b"another key"), id="other key"),
        pytest.param(lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"), id="altered signature"),
        pytest.param(
            lambda t: sign(claims(action_index=1), KEY).split(".")[0] + "." + t.split(".")[1],
            id="claims swapped under a valid signature",
        ),
        pytest.param(lambda t: t.split(".")[0], id="no signature"),
        pytest.param(lambda t: "not-a-token", id="garbage"),
    ],
)
def test_a_forged_or_altered_token_is_refused(tamper: Any) -> None:
    # Given a genuine token, altered or forged
    forged = tamper(sign(claims(), KEY))

    # When verified, Then it is refused as invalid
    with pytest.raises(InvalidTokenError):
        verify(forged, KEY, NOW)


def test_an_expired_token_is_gone() -> None:
    # Given a genuine token whose time has passed, When verified, Then it is refused as gone
    with pytest.raises(GoneTokenError, match="expired"):
        verify(sign(claims(expires_at=int(NOW.timestamp())), KEY), KEY, NOW)


# ---------------------------------------------------------------- request and decide


def requested(case: Case, task_token: str = "task-token-1") -> tuple[dict[str, Any], ApprovalLinks]:
    cases = InMemoryCaseRepository([case])
    store, notifier = InMemoryApprovalStore(), FakeApprovalNotifier()
    request = ApprovalRequest(
        case_id=case.case_id,
        index=0,
        task_token=task_token,
        approval_url=APPROVAL_URL,
        approval_timeout_seconds=3600,
    )
    links = request_approval(request, cases, store=store, notifier=notifier, key=KEY, now=NOW)
    return {"cases": cases, "store": store, "notifier": notifier}, links


def test_an_approval_request_asked_without_a_ticket_names_the_one_the_case_keeps() -> None:
    # Given a waiting action whose case has a ticket, asked for by the state machine's waiting step itself
    # (ApprovalLinksInTickets=false: no ticket function passes the ticket)
    case = waiting_case(ActionStatus.PENDING_APPROVAL)
    case.ticket = Ticket(provider="sns", id="VT-0123456789", created_at=NOW)

    # When the approval is requested
    parts, _ = requested(case)

    # Then the approvers' request names the case's ticket
    [(_, _, sent)] = parts["notifier"].sent
    assert "Ticket: sns VT-0123456789" in sent.text().splitlines()


def test_an_approval_request_sends_two_links_that_expire_with_the_wait() -> None:
    # Given an action waiting for approval, When the approval is requested
    parts, links = requested(waiting_case(ActionStatus.PENDING_APPROVAL))

    # Then the approver is sent both links first, on the function URL, expiring with the state machine's wait
    [(_, action, sent)] = parts["notifier"].sent
    assert [(link.label, link.url) for link in sent.links] == [
        ("Approve", links.approve_url),
        ("Reject", links.reject_url),
    ]
    assert action.target == "i-0"
    assert links.approve_url.startswith(APPROVAL_URL + "?token=")
    assert links.expires_at == NOW + timedelta(hours=1)
    approve = verify(token_of(links.approve_url), KEY, NOW)
    reject = verify(token_of(links.reject_url), KEY, NOW)
    assert (approve.decision, reject.decision) == (Decision.APPROVE, Decision.REJECT)
    assert approve.approval_id == reject.approval_id


def test_approving_resumes_the_waiting_step_once() -> None:
    # Given an approval request
    case = waiting_case(ActionStatus.PENDING_APPROVAL)
    parts, links = requested(case)
    callback = FakeTaskCallback()
    deps = {"store": parts["store"], "cases": parts["cases"], "callback": callback}

    # When the approve link is used
    result = carry_out_decision(token_of(links.approve_url), key=KEY, now=NOW, **deps)

    # Then the step resumes with the decision
    assert result.decision is Decision.APPROVE
    assert [(kind, token) for kind, token, _ in callback.calls] == [("success", "task-token-1")]
    # And neither link works again: the approval is decided
    for link in (links.approve_url, links.reject_url):
        with pytest.raises(GoneTokenError, match="already decided"):
            carry_out_decision(token_of(link), key=KEY, now=NOW, **deps)
        with pytest.raises(GoneTokenError):
            check(token_of(link), KEY, parts["store"], NOW)
    assert len(callback.calls) == 1


def test_rejecting_records_the_action_as_skipped_and_fails_the_step() -> None:
    # Given an approval request
    case = waiting_case(ActionStatus.PENDING_APPROVAL)
    parts, links = requested(case)
    callback = FakeTaskCallback()

    # When the reject link is used
    carry_out_decision(
        token_of(links.reject_url),
        key=KEY,
        store=parts["store"],
        cases=parts["cases"],
        callback=callback,
        now=NOW,
    )

    # Then the action is skipped, saying a person rejected it, and the step fails with ApprovalRejected
    stored = parts["cases"].get(case.case_id)
    assert stored.actions[0].status is ActionStatus.SKIPPED
    assert "rejected by a person" in stored.actions[0].detail
    assert [(kind, error) for kind, _, error in callback.calls] == [("failure", "ApprovalRejected")]


def test_a_decision_after_the_step_timed_out_is_gone() -> None:
    # Given an approval whose waiting step has already timed out
    case = waiting_case(ActionStatus.PENDING_APPROVAL)
    parts, links = requested(case)

    # When the reject link is used, Then the person is told it is too late
    with pytest.raises(GoneTokenError, match="timed out"):
        carry_out_decision(
            token_of(links.reject_url),
            key=KEY,
            store=parts["store"],
            cases=parts["cases"],
            callback=FakeTaskCallback(waiting=False),
            now=NOW,
        )

    # And the action stays as the escalation left it, the case saying the decision came too late
    stored = parts["cases"].get(case.case_id)
    assert stored.actions[0].status is ActionStatus.PENDING_APPROVAL
    assert "came after the step stopped waiting" in stored.history[-1].note
    # And the link is spent: nothing waits for it any more
    with pytest.raises(GoneTokenError, match="already decided"):
        check(token_of(links.approve_url), KEY, parts["store"], NOW)


APPROVER = Approver(source_ip="198.51.100.7", user_agent="Mozilla/5.0 (X11; Linux x86_64)")


def test_the_decision_records_who_made_it_in_the_store_and_on_the_case() -> None:
    # Given an approval request
    case = waiting_case(ActionStatus.PENDING_APPROVAL)
    parts, links = requested(case)

    # When a person approves from a browser
    carry_out_decision(
        token_of(links.approve_url),
        key=KEY,
        store=parts["store"],
        cases=parts["cases"],
        callback=FakeTaskCallback(),
        now=NOW,
        approver=APPROVER,
    )

    # Then the store keeps the decision with the address and user agent the request came with
    [(decision, approver)] = parts["store"].decided.values()
    assert (decision, approver) == (Decision.APPROVE, APPROVER)
    # And the case's history says what was approved, when, from where and with what
    stored = parts["cases"].get(case.case_id)
    note = stored.history[-1].note
    approved = "isolate_instance i-0 approved by a person through the approval link at 2026-11-26T12:00:00"
    assert note.startswith(approved)
    assert "from 198.51.100.7 (user agent Mozilla/5.0 (X11; Linux x86_64))" in note


def test_a_user_agent_with_line_breaks_is_recorded_escaped() -> None:
    # Given a request whose user agent carries a line break and a bidirectional override
    case = waiting_case(ActionStatus.PENDING_APPROVAL)
    parts, links = requested(case)
    forged = Approver(source_ip="203.0.113.9", user_agent="curl\nApproved by: the CISO\u202e")

    # When it rejects
    carry_out_decision(
        token_of(links.reject_url),
        key=KEY,
        store=parts["store"],
        cases=parts["cases"],
        callback=FakeTaskCallback(),
        now=NOW,
        approver=forged,
    )

    # Then the action's detail and the history show the user agent on one line, escaped
    stored = parts["cases"].get(case.case_id)
    assert "user agent curl\\nApproved by: the CISO\\u202e)" in stored.actions[0].detail
    assert "\n" not in stored.history[-1].note


@pytest.mark.parametrize("link", ["approve_url", "reject_url"])
def test_a_decision_the_step_never_received_leaves_the_link_usable(link: str) -> None:
    # Given an approval request, and Step Functions throttling the callback
    case = waiting_case(ActionStatus.PENDING_APPROVAL)
    parts, links = requested(case)
    token = token_of(getattr(links, link))
    deps = {"key": KEY, "store": parts["store"], "cases": parts["cases"], "now": NOW, "approver": APPROVER}

    # When the link is used, Then the error reaches the page (which asks to try again)
    with pytest.raises(TransientError):
        carry_out_decision(
            token, callback=FakeTaskCallback(error=TransientError("ThrottlingException")), **deps
        )

    # And nothing was spent: the approval still waits, the action too, and the case says what happened
    assert check(token, KEY, parts["store"], NOW).approval_id
    stored = parts["cases"].get(case.case_id)
    assert stored.actions[0].status is ActionStatus.PENDING_APPROVAL
    assert "did not reach the waiting step (TransientError): nothing was decided" in stored.history[-1].note

    # When the same link is used again once Step Functions answers, Then it decides
    callback = FakeTaskCallback()
    result = carry_out_decision(token, callback=callback, **deps)
    assert result.case_id == case.case_id
    assert len(callback.calls) == 1
    # And a third use is refused as used
    with pytest.raises(GoneTokenError, match="already decided"):
        carry_out_decision(token, callback=FakeTaskCallback(), **deps)


def test_a_decision_whose_request_died_can_be_made_again_once_its_hold_lapses() -> None:
    # Given an approval held by a request that died before passing the decision on
    case = waiting_case(ActionStatus.PENDING_APPROVAL)
    parts, links = requested(case)
    store = parts["store"]
    approval_id = verify(token_of(links.approve_url), KEY, NOW).approval_id
    assert store.claim(approval_id, Decision.APPROVE, APPROVER, NOW) == "task-token-1"
    deps = {"key": KEY, "store": store, "cases": parts["cases"], "callback": FakeTaskCallback()}

    # When the link is used again within the hold, Then it is refused
    with pytest.raises(GoneTokenError, match="being decided at this moment"):
        carry_out_decision(token_of(links.approve_url), now=NOW + timedelta(seconds=5), **deps)

    # When it is used after the hold lapsed, Then it decides
    later = NOW + CLAIM_LEASE + timedelta(seconds=1)
    assert carry_out_decision(token_of(links.approve_url), now=later, **deps).decision is Decision.APPROVE


# ---------------------------------------------------------------- plan: blast radius and approvals


def plan(case: Case, *, dry_run: bool, blast_radius: FakeBlastRadius | None, max_actions: int = 5) -> Any:
    cases = InMemoryCaseRepository([case])
    result = plan_remediation(
        TaskInput(case_id=case.case_id),
        cases,
        dry_run=dry_run,
        max_actions=max_actions,
        blast_radius=blast_radius,
        max_actions_per_hour=2,
        approval_timeout_seconds=600,
        place=PLACE,
        now=NOW,
    )
    return result, cases.get(case.case_id)


def test_beyond_the_hourly_cap_actions_wait_for_approval_and_come_last() -> None:
    # Given three planned isolations and one action left in this hour's blast radius
    case = waiting_case(ActionStatus.PLANNED, ActionStatus.PLANNED, ActionStatus.PLANNED)
    radius = FakeBlastRadius(max_per_hour=1, now=lambda: NOW)

    # When the remediation is planned to act for real
    result, stored = plan(case, dry_run=False, blast_radius=radius)

    # Then the first runs now, the other two wait for a person with the reason
    assert [action.status for action in stored.actions] == [
        ActionStatus.PLANNED,
        ActionStatus.PENDING_APPROVAL,
        ActionStatus.PENDING_APPROVAL,
    ]
    assert "blast-radius cap of 2 actions per hour" in stored.actions[1].detail
    assert [(item.index, item.approval) for item in result.items] == [(0, False), (1, True), (2, True)]


def test_dry_runs_use_none_of_the_blast_radius() -> None:
    # Given two planned isolations and no action left in this hour
    case = waiting_case(ActionStatus.PLANNED, ActionStatus.PLANNED)
    radius = FakeBlastRadius(max_per_hour=0, now=lambda: NOW)

    # When the remediation is planned in dry run, Then nothing waits and nothing was taken
    result, _ = plan(case, dry_run=True, blast_radius=radius)
    assert [item.approval for item in result.items] == [False, False]
    assert radius.taken == 0


def test_an_action_the_playbook_marks_waits_for_approval_first_and_runs_once_approved() -> None:
    # Given an isolation the playbook wants approved, on a known instance
    alert = make_alert()
    action = Action(type=ActionType.ISOLATE_INSTANCE, target="i-1", parameters={"needs_approval": "true"})
    case = make_case(alert, status=CaseStatus.ENRICHED, verdict=Verdict.MALICIOUS, actions=[action])
    cases = InMemoryCaseRepository([case])
    plan_remediation(
        TaskInput(case_id=case.case_id),
        cases,
        dry_run=False,
        max_actions=5,
        blast_radius=None,
        max_actions_per_hour=10,
        approval_timeout_seconds=600,
        place=PLACE,
        now=NOW,
    )
    waiting = cases.get(case.case_id)
    assert waiting is not None
    assert waiting.actions[0].status is ActionStatus.PENDING_APPROVAL

    # When the approved action runs, twice (a retried step)
    actuator = FakeActuator(ActionType.ISOLATE_INSTANCE, {"i-1": "sg-web"}, acted_state="sg-quarantine")
    everywhere = FakeActuatorsByPlace({actuator.action_type: actuator})
    first = run_action(ActionTask(case_id=case.case_id, index=0), cases, everywhere, False, place=PLACE)
    again = run_action(ActionTask(case_id=case.case_id, index=0), cases, everywhere, False, place=PLACE)

    # Then it acted once, and the case is remediated
    assert (first.status, first.changed) == (ActionStatus.DONE, True)
    assert (again.status, again.changed) == (ActionStatus.DONE, False)
    assert actuator.calls == [("i-1", False)]
    stored = cases.get(case.case_id)
    assert stored is not None
    assert stored.status is CaseStatus.REMEDIATED


# ---------------------------------------------------------------- wiring


@pytest.mark.parametrize(
    ("environment", "configured"),
    [
        ({}, set()),
        ({"WAF_IP_SET_NAME": "bad-ips", "WAF_IP_SET_ID": "a1b2"}, {ActionType.BLOCK_IP_WAF}),
        ({"NACL_RULE_MIN": "1", "NACL_RULE_MAX": "18"}, {ActionType.BLOCK_IP_NACL}),
        # The quarantine moves objects only out of the source buckets: without them it skips every one.
        ({"QUARANTINE_BUCKET": "quarantine"}, set()),
        (
            {"QUARANTINE_BUCKET": "quarantine", "QUARANTINE_SOURCE_BUCKETS": "uploads-*"},
            {ActionType.QUARANTINE_OBJECT},
        ),
        ({"WAF_IP_SET_NAME": "", "WAF_IP_SET_ID": "", "QUARANTINE_BUCKET": " "}, set()),
    ],
)
def test_only_configured_actuators_are_wired(
    environment: dict[str, str], configured: set[ActionType]
) -> None:
    # Given the remediate function's settings, with some actuators' resources configured
    settings = RemediateSettings.from_environ(
        {"AWS_REGION": "us-east-1", "CASES_TABLE_NAME": "cases", "OWN_ACCOUNT_ID": "123456789012"}
        | environment
    )

    # When its actuators are built
    built = actuators(settings)
    wired = {
        action_type for action_type, actuator in built.items() if not isinstance(actuator, SkippingActuator)
    }

    # Then the EC2, IAM and DNS Firewall ones are always there, the others only when configured, but the
    # S3 quarantine, which a default playbook plans, is there to skip its actions when not configured
    assert set(built) == wired | {ActionType.QUARANTINE_OBJECT}
    always = {
        ActionType.ISOLATE_INSTANCE,
        ActionType.SNAPSHOT_VOLUMES,
        ActionType.TAG_INSTANCE,
        ActionType.DISABLE_ACCESS_KEY,
        ActionType.BLOCK_DOMAIN_DNS_FIREWALL,
    }
    assert wired == always | configured


def test_an_object_is_left_in_place_with_the_reason_when_no_quarantine_bucket_is_configured() -> None:
    # Given a deployment without a quarantine bucket (the template's default)
    settings = RemediateSettings.from_environ(
        {"AWS_REGION": "us-east-1", "CASES_TABLE_NAME": "cases", "OWN_ACCOUNT_ID": "123456789012"}
    )
    action = Action(type=ActionType.QUARANTINE_OBJECT, target="s3://uploads/incoming/dropper.dll")

    # When the default playbook's quarantine of a malicious object runs, acting for real, and is rolled back
    done = actuators(settings)[ActionType.QUARANTINE_OBJECT].run(action, False)
    undone = actuators(settings)[ActionType.QUARANTINE_OBJECT].rollback(done)

    # Then it is skipped (the case goes to its ticket, not FAILED), saying which parameters are missing
    assert done.status is ActionStatus.SKIPPED
    assert "no quarantine bucket is configured" in done.detail
    assert "QuarantineBucket" in done.detail
    assert undone.status is ActionStatus.SKIPPED
    assert undone.detail.startswith("nothing to undo")


def test_half_an_actuator_configuration_is_refused() -> None:
    # Given a WAF IP set name without its id, When the settings are read, Then they name what is missing
    with pytest.raises(ConfigurationError, match="WAF_IP_SET_NAME and WAF_IP_SET_ID"):
        RemediateSettings.from_environ(
            {
                "AWS_REGION": "us-east-1",
                "CASES_TABLE_NAME": "cases",
                "OWN_ACCOUNT_ID": "123456789012",
                "WAF_IP_SET_NAME": "bad-ips",
            }
        )
