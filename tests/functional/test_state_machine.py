"""The state machine, unchanged, on moto's Step Functions engine: each branch, and the Catch paths."""

from __future__ import annotations

import contextlib
import http.server
import io
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import pytest

from tests.functional.conftest import EVENTS, launch_instance, load_event, wait_for_execution
from vtriage.adapters.dynamodb import DynamoCaseRepository
from vtriage.enrich.triage import execution_input
from vtriage.errors import InvalidAlertError
from vtriage.intake import read_document
from vtriage.models import (
    Action,
    ActionStatus,
    ActionType,
    Branch,
    Case,
    CaseStatus,
    IocOutcome,
    IocType,
    Verdict,
)
from vtriage.remediate import EXECUTION_TIMEOUT_SECONDS, TIME_BESIDE_APPROVALS_SECONDS
from vtriage_cli.main import main as vtriage
from vtriage_local.replay import ReplayServer, bundled_recordings
from vtriage_local.stack import ACCOUNT_ID, REGION, LocalAws
from vtriage_local.template import PROJECT_ROOT, load_template

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def _case(verdict: Verdict, actions: list[Action] | None = None, case_id: str | None = None) -> Case:
    [alert] = read_document(load_event("synthetic-guardduty-backdoor-c2-dns.json")).alerts
    return Case(
        case_id=case_id or alert.case_id,
        alert=alert,
        status=CaseStatus.ENRICHED,
        verdict=verdict,
        iocs=[
            IocOutcome(type=IocType.DOMAIN, value="tawuhoju.com", found_at="service.action", verdict=verdict)
        ],
        actions=actions or [],
        created_at=NOW,
        updated_at=NOW,
    )


def _cases(aws: LocalAws) -> DynamoCaseRepository:
    return DynamoCaseRepository(
        aws.client("dynamodb"), aws.ref("CasesTable"), timedelta(days=90), lambda: NOW
    )


def _start(aws: LocalAws, case: Case, store: bool = True, route: Branch | None = None) -> str:
    """Store the case and start its execution, routed as the playbook says or as `route` forces."""
    if store:
        assert _cases(aws).create(case)
    summary = execution_input(case)
    if route is not None:
        summary = summary.model_copy(update={"route": route})
    started = aws.client("stepfunctions").start_execution(
        stateMachineArn=aws.ref("TriageStateMachine"), name=case.case_id, input=summary.model_dump_json()
    )
    return str(started["executionArn"])


def _run(
    aws: LocalAws, case: Case, store: bool = True, route: Branch | None = None
) -> tuple[dict[str, Any], Case | None]:
    execution = wait_for_execution(aws.client("stepfunctions"), _start(aws, case, store, route))
    return execution, _cases(aws).get(case.case_id) if store else None


def _instance(aws: LocalAws) -> tuple[str, list[str]]:
    launched = launch_instance(aws.client("ec2"))
    return launched.instance_id, [launched.group_id]


def _interface_groups(aws: LocalAws, instance_id: str) -> list[list[str]]:
    reservations = aws.client("ec2").describe_instances(InstanceIds=[instance_id])["Reservations"]
    interfaces = reservations[0]["Instances"][0]["NetworkInterfaces"]
    return [[group["GroupId"] for group in interface["Groups"]] for interface in interfaces]


def test_malicious_remediable_case_is_remediated_in_dry_run_then_ticketed(local_aws: LocalAws) -> None:
    # Given a malicious case with an isolation planned on a real (moto) instance
    instance_id, groups = _instance(local_aws)
    case = _case(Verdict.MALICIOUS, [Action(type=ActionType.ISOLATE_INSTANCE, target=instance_id)])

    # When the state machine runs it with the default settings (dry-run)
    execution, stored = _run(local_aws, case)

    # Then it went through Remediate and OpenTicket, planned the isolation and changed nothing
    assert execution["status"] == "SUCCEEDED"
    assert stored is not None
    assert stored.branch == "remediate"
    assert [action.status for action in stored.actions] == ["dry_run"]
    assert stored.ticket is not None
    assert _interface_groups(local_aws, instance_id) == [groups]


def test_with_dry_run_off_the_instance_keeps_only_the_quarantine_group(
    local_aws: LocalAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given remediation switched to act for real, and a malicious case on an instance
    monkeypatch.setenv("DRY_RUN", "false")
    instance_id, groups = _instance(local_aws)
    case = _case(Verdict.MALICIOUS, [Action(type=ActionType.ISOLATE_INSTANCE, target=instance_id)])

    # When the state machine runs it
    execution, stored = _run(local_aws, case)

    # Then every interface of the instance carries only the quarantine group, which has no rules
    assert execution["status"] == "SUCCEEDED"
    assert stored is not None
    assert stored.status is CaseStatus.REMEDIATED
    assert [action.status for action in stored.actions] == ["done"]
    [[quarantine]] = _interface_groups(local_aws, instance_id)
    assert quarantine not in groups
    group = local_aws.client("ec2").describe_security_groups(GroupIds=[quarantine])["SecurityGroups"][0]
    assert group["GroupName"] == "vtriage-quarantine"
    assert group["IpPermissions"] == []
    assert group["IpPermissionsEgress"] == []


def test_vtriage_rollback_gives_the_isolated_instance_its_groups_back(
    local_aws: LocalAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an instance isolated for real by the state machine
    monkeypatch.setenv("DRY_RUN", "false")
    instance_id, groups = _instance(local_aws)
    case = _case(Verdict.MALICIOUS, [Action(type=ActionType.ISOLATE_INSTANCE, target=instance_id)])
    execution, _ = _run(local_aws, case)
    assert execution["status"] == "SUCCEEDED"
    assert _interface_groups(local_aws, instance_id) != [groups]

    # When `vtriage rollback CASE_ID` runs against the stack, and once more
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        status = vtriage(["rollback", case.case_id, "--json"])
        again = vtriage(["rollback", case.case_id])

    # Then the interface is back in its own groups, the action says so, and a second run changes nothing
    assert (status, again) == (0, 0)
    assert _interface_groups(local_aws, instance_id) == [groups]
    stored = _cases(local_aws).get(case.case_id)
    assert stored is not None
    assert [action.status for action in stored.actions] == ["rolled_back"]
    assert "nothing to undo" in stdout.getvalue()


def test_suspicious_case_is_ticketed_without_remediation(local_aws: LocalAws) -> None:
    # Given a suspicious case, When the state machine runs it
    execution, stored = _run(local_aws, _case(Verdict.SUSPICIOUS), route=Branch.TICKET)

    # Then a ticket is opened and nothing else happens
    assert execution["status"] == "SUCCEEDED"
    assert stored is not None
    assert (stored.branch, stored.status) == ("ticket", CaseStatus.TICKETED)
    assert stored.ticket is not None
    assert stored.ticket.provider == "sns"


@pytest.mark.parametrize("verdict", [Verdict.HARMLESS, Verdict.UNKNOWN])
def test_harmless_or_unknown_case_is_closed_by_the_direct_dynamodb_integration(
    local_aws: LocalAws, verdict: Verdict
) -> None:
    # Given a case with nothing against it, routed to closure, When the state machine runs it
    execution, stored = _run(local_aws, _case(verdict), route=Branch.CLOSE)

    # Then the case is closed, with its record kept, and no ticket is opened
    assert execution["status"] == "SUCCEEDED"
    assert stored is not None
    assert (stored.branch, stored.status, stored.ticket) == ("close", CaseStatus.CLOSED, None)
    assert stored.closed_at is not None
    # and its history ends with the closure the state machine recorded
    assert stored.history[-1].status is CaseStatus.CLOSED


class _ClosedAfterItsRead:
    """The DynamoDB client of a step whose save reads the case just before the state machine closes it:
    the first GetItem answers, then the close runs to its end, then the step goes on to its write."""

    def __init__(self, client: Any, close: Callable[[], None]) -> None:
        self._client = client
        self._close: Callable[[], None] | None = close

    def get_item(self, **request: Any) -> Any:
        answer = self._client.get_item(**request)
        close, self._close = self._close, None
        if close is not None:
            close()
        return answer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_a_save_whose_read_falls_before_close_case_keeps_the_case_closed(local_aws: LocalAws) -> None:
    # Given a stored case, and a step (a repeat's enrich) holding a copy read before its closing, which
    # notes the execution it started
    case = _case(Verdict.HARMLESS)
    assert _cases(local_aws).create(case)
    step_copy = _cases(local_aws).get(case.case_id)
    assert step_copy is not None
    step_copy.execution_arn = f"arn:aws:states:{REGION}:{ACCOUNT_ID}:execution:vtriage:repeat"

    # When the step saves it, and the state machine's CloseCase writes the case between the save's read
    # of the stored item and its write
    def close() -> None:
        execution = wait_for_execution(
            local_aws.client("stepfunctions"), _start(local_aws, case, store=False, route=Branch.CLOSE)
        )
        assert execution["status"] == "SUCCEEDED"

    step = DynamoCaseRepository(
        _ClosedAfterItsRead(local_aws.client("dynamodb"), close),
        local_aws.ref("CasesTable"),
        timedelta(days=90),
        lambda: NOW,
    )
    step.save(step_copy)

    # Then the case stays closed, with what CloseCase wrote, and keeps what the step noted: the save saw
    # the revision CloseCase added and merged again instead of writing over it
    stored = _cases(local_aws).get(case.case_id)
    assert stored is not None
    assert (stored.status, stored.branch) == (CaseStatus.CLOSED, Branch.CLOSE)
    assert stored.closed_at is not None
    assert stored.history[-1].status is CaseStatus.CLOSED
    assert stored.execution_arn == step_copy.execution_arn


def _entered_states(aws: LocalAws, execution_arn: str) -> list[str]:
    history = aws.client("stepfunctions").get_execution_history(executionArn=execution_arn)
    return [
        event["stateEnteredEventDetails"]["name"]
        for event in history["events"]
        if "stateEnteredEventDetails" in event
    ]


def test_remediation_error_is_caught_into_the_ticket_step(local_aws: LocalAws) -> None:
    # Given an execution for a malicious case that DynamoDB does not hold, so Remediate fails
    case = _case(Verdict.MALICIOUS, [Action(type=ActionType.ISOLATE_INSTANCE, target="i-0123456789abcdef0")])

    # When the state machine runs it
    execution, _ = _run(local_aws, case, store=False)

    # Then the plan's Catch went to OpenTicket, whose Catch went to MarkCaseFailed, which invents no case
    assert execution["status"] == "FAILED"
    assert _entered_states(local_aws, execution["executionArn"]) == [
        "RouteOnVerdict",
        "PlanRemediation",
        "OpenTicket",
        "MarkCaseFailed",
    ]


def test_when_no_ticket_can_be_opened_the_case_is_failed_with_the_error(local_aws: LocalAws) -> None:
    # Given a suspicious case and a ticket topic that has gone away
    local_aws.client("sns").delete_topic(TopicArn=local_aws.ref("TicketTopic"))

    # When the state machine runs it
    execution, stored = _run(local_aws, _case(Verdict.SUSPICIOUS), route=Branch.TICKET)

    # Then the ticket step's Catch marked the case FAILED with the error, and the execution failed
    assert execution["status"] == "FAILED"
    assert _entered_states(local_aws, execution["executionArn"]) == [
        "RouteOnVerdict",
        "OpenTicket",
        "MarkCaseFailed",
        "TriageFailed",
    ]
    assert stored is not None
    assert stored.status is CaseStatus.FAILED
    assert stored.error
    assert "NotFound" in stored.error


def test_execution_input_is_a_small_summary(local_aws: LocalAws) -> None:
    # Given the largest sample alert's case, When its execution input is built, Then it is a few hundred bytes
    payload = execution_input(_case(Verdict.MALICIOUS)).model_dump_json()
    assert len(payload.encode()) < 1024
    assert set(json.loads(payload)) == {
        "case_id",
        "route",
        "verdict",
        "severity",
        "remediable",
        "actions",
        "error",
    }


# ---------------------------------------------------------------- guardrails and approvals

APPROVAL_WAIT_S = 60.0


def _approval_inbox(aws: LocalAws) -> str:
    """A queue subscribed to the approvals topic, where approvers' notifications arrive."""
    sqs, sns = aws.client("sqs"), aws.client("sns")
    url = sqs.create_queue(QueueName="approver-inbox")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=aws.ref("ApprovalTopic"), Protocol="sqs", Endpoint=arn)
    return str(url)


def _links_in(text: str) -> dict[str, str]:
    """The approve and reject links a message carries, on lines of their own."""
    found = re.findall(r"^(Approve|Reject):\s+(\S+)$", text, flags=re.MULTILINE)
    return {decision.lower(): link for decision, link in found}


def _approval_request(aws: LocalAws, inbox: str) -> str:
    """The text of the next approval request the approver receives."""
    sqs = aws.client("sqs")
    deadline = time.monotonic() + APPROVAL_WAIT_S
    while time.monotonic() < deadline:
        for message in sqs.receive_message(QueueUrl=inbox, MaxNumberOfMessages=10).get("Messages", []):
            text = str(json.loads(message["Body"])["Message"])
            if _links_in(text):
                return text
        time.sleep(0.05)
    raise AssertionError("no approval request arrived")


def _approval_links(aws: LocalAws, inbox: str) -> dict[str, str]:
    """The approve and reject links of the next approval request the approver receives."""
    return _links_in(_approval_request(aws, inbox))


def _ticket_inbox(aws: LocalAws) -> str:
    """A queue subscribed to the ticket topic, where an analyst's tickets and their updates arrive."""
    sqs, sns = aws.client("sqs"), aws.client("sns")
    url = sqs.create_queue(QueueName="ticket-inbox")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=aws.ref("TicketTopic"), Protocol="sqs", Endpoint=arn)
    return str(url)


def _ticket_messages(aws: LocalAws, inbox: str, count: int) -> list[dict[str, str]]:
    """The next `count` messages of the ticket topic (a ticket, or an update on one), as sent: each its
    subject and text."""
    sqs = aws.client("sqs")
    received: list[dict[str, Any]] = []
    deadline = time.monotonic() + APPROVAL_WAIT_S
    while len(received) < count and time.monotonic() < deadline:
        for message in sqs.receive_message(QueueUrl=inbox, MaxNumberOfMessages=10).get("Messages", []):
            received.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=inbox, ReceiptHandle=message["ReceiptHandle"])
        time.sleep(0.05)
    assert len(received) >= count, f"{len(received)} of {count} ticket messages arrived"
    # SNS keeps no order across messages sent in the same instant: the publish time orders them.
    received.sort(key=lambda notification: str(notification["Timestamp"]))
    return [{"subject": str(item["Subject"]), "text": str(item["Message"])} for item in received]


def _click(aws: LocalAws, link: str, method: str = "POST") -> dict[str, Any]:
    """What the approval function's URL answers a person who opens the link (GET) or confirms it (POST)."""
    query = link.split("?", 1)[1]
    event: dict[str, Any] = {
        "version": "2.0",
        "rawPath": "/",
        "rawQueryString": query if method == "GET" else "",
        "headers": {"content-type": "application/x-www-form-urlencoded"},
        "requestContext": {"http": {"method": method, "path": "/", "sourceIp": "198.51.100.7"}},
        "body": query if method == "POST" else None,
        "isBase64Encoded": False,
    }
    response: dict[str, Any] = aws.invoke("ApprovalFunction", event)
    return response


def _isolation(instance_id: str, **parameters: str) -> Action:
    return Action(type=ActionType.ISOLATE_INSTANCE, target=instance_id, parameters=parameters)


def test_an_approved_action_runs_and_the_case_is_ticketed(local_aws: LocalAws) -> None:
    # Given a malicious case whose playbook asks a person to approve the isolation, and an approver
    inbox = _approval_inbox(local_aws)
    instance_id, groups = _instance(local_aws)
    case = _case(Verdict.MALICIOUS, [_isolation(instance_id, needs_approval="true")])

    # When the execution waits, Then the action is pending approval and the approver got the links
    execution_arn = _start(local_aws, case)
    links = _approval_links(local_aws, inbox)
    waiting = _cases(local_aws).get(case.case_id)
    assert waiting is not None
    assert waiting.actions[0].status is ActionStatus.PENDING_APPROVAL
    assert local_aws.client("stepfunctions").describe_execution(executionArn=execution_arn)["status"] == (
        "RUNNING"
    )

    # When the approver opens the link, Then a page asks to confirm and nothing is decided yet
    page = _click(local_aws, links["approve"], method="GET")
    assert page["statusCode"] == 200
    assert '<form method="post">' in page["body"]

    # When the approver confirms
    answer = _click(local_aws, links["approve"])
    execution = wait_for_execution(local_aws.client("stepfunctions"), execution_arn)

    # Then the action ran (dry run by default) and the case was ticketed
    assert answer["statusCode"] == 200
    assert "approved" in answer["body"]
    assert execution["status"] == "SUCCEEDED"
    stored = _cases(local_aws).get(case.case_id)
    assert stored is not None
    assert [action.status for action in stored.actions] == [ActionStatus.DRY_RUN]
    assert stored.ticket is not None
    assert _interface_groups(local_aws, instance_id) == [groups]
    assert "WaitForApproval" in _entered_states(local_aws, execution_arn)


@pytest.fixture
def links_in_tickets_aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalAws]:
    """A fresh local AWS deployed with ApprovalLinksInTickets=true, VirusTotal served by the replay server."""
    with ReplayServer(bundled_recordings(), api_key="local-replay-key") as replay:
        monkeypatch.setenv("VT_BASE_URL", replay.base_url)
        monkeypatch.delenv("VT_API_KEY", raising=False)
        with LocalAws(parameters={"ApprovalLinksInTickets": "true"}) as aws:
            yield aws


def test_by_default_the_ticket_says_who_decides_and_carries_no_link_that_decides(
    local_aws: LocalAws,
) -> None:
    # Given the default deployment (ApprovalLinksInTickets=false), an approver, an analyst reading the
    # ticket topic, and a malicious case whose isolation waits for a person
    approver = _approval_inbox(local_aws)
    analyst = _ticket_inbox(local_aws)
    instance_id, _ = _instance(local_aws)
    case = _case(Verdict.MALICIOUS, [_isolation(instance_id, needs_approval="true")])

    # When the execution waits for the person
    execution_arn = _start(local_aws, case)
    request = _approval_request(local_aws, approver)
    opened, waiting = _ticket_messages(local_aws, analyst, 2)

    # Then the ticket opened before the approval was asked for, saying who decides, and the approval
    # request names it
    stored = _cases(local_aws).get(case.case_id)
    assert stored is not None
    assert stored.ticket is not None
    ticket = stored.ticket.id
    assert opened["subject"].startswith(f"[HIGH] malicious {ticket}: ")
    assert (
        "Waiting for a person: 1 action: the approvers, asked through the approvals topic with links only "
        "they receive; this ticket carries no link that decides"
    ) in opened["text"]
    assert f"Ticket: sns {ticket}" in request.splitlines()
    # And the ticket heard that the isolation waits, who decides and until when, linking the case's
    # read-only page and no link that decides
    assert waiting["subject"] == f"Update on {ticket}"
    assert "Waiting for a person: action 1 of 1" in waiting["text"]
    assert "\nUntil: " in waiting["text"]
    assert f"Action: Isolate the instance {instance_id}" in waiting["text"]
    assert re.search(r"^Case page: \S+\?view=\S+$", waiting["text"], flags=re.MULTILINE)
    tokens = [link.split("token=")[1] for link in _links_in(request).values()]
    assert len(tokens) == 2
    for message in (opened, waiting):
        assert _links_in(message["text"]) == {}
        assert not any(token in message["text"] for token in tokens)
    # And the execution's history holds no link either: the approval function answered the wait none
    history = json.dumps(
        local_aws.client("stepfunctions").get_execution_history(executionArn=execution_arn), default=str
    )
    assert not any(token in history for token in tokens)
    assert "WaitForApproval" in _entered_states(local_aws, execution_arn)

    # When the approver approves the action through the link the approvals topic brought
    assert _click(local_aws, _links_in(request)["approve"])["statusCode"] == 200
    execution = wait_for_execution(local_aws.client("stepfunctions"), execution_arn)

    # Then the ticket hears who approved it, then where the case stands
    decision, outcome = _ticket_messages(local_aws, analyst, 2)
    assert execution["status"] == "SUCCEEDED"
    assert "approved by a person through the approval link" in decision["text"]
    assert outcome["text"].startswith("Update from vtriage: where the case stands now\nStatus: TICKETED")


def test_with_approval_links_in_tickets_the_ticket_carries_the_links_and_hears_the_decision(
    links_in_tickets_aws: LocalAws,
) -> None:
    # Given a deployment with ApprovalLinksInTickets=true, an approver, an analyst reading the ticket
    # topic, and a malicious case whose isolation waits for a person
    local_aws = links_in_tickets_aws
    approver = _approval_inbox(local_aws)
    analyst = _ticket_inbox(local_aws)
    instance_id, _ = _instance(local_aws)
    case = _case(Verdict.MALICIOUS, [_isolation(instance_id, needs_approval="true")])

    # When the execution waits for the person
    execution_arn = _start(local_aws, case)
    request = _approval_request(local_aws, approver)
    opened, links = _ticket_messages(local_aws, analyst, 2)

    # Then the ticket opened before the approval was asked for, saying an action waits, and the case keeps it
    waiting = _cases(local_aws).get(case.case_id)
    assert waiting is not None
    assert waiting.ticket is not None
    ticket = waiting.ticket.id
    assert opened["subject"].startswith(f"[HIGH] malicious {ticket}: ")
    assert (
        "Waiting for a person: 1 action: the approve and reject links follow on this ticket" in opened["text"]
    )
    assert "  - Isolate the instance (isolate_instance): " in opened["text"]
    # And the approval request names the ticket, whose update carries the very links the approver got
    assert f"Ticket: sns {ticket}" in request.splitlines()
    assert links["subject"] == f"Update on {ticket}"
    assert "Approval requested for action 1 of 1" in links["text"]
    assert _links_in(links["text"]) == _links_in(request)
    # And the execution's history holds no link: they went to people only
    history = json.dumps(
        local_aws.client("stepfunctions").get_execution_history(executionArn=execution_arn), default=str
    )
    assert _links_in(request)["approve"].split("token=")[1] not in history

    # When a person approves the action through the ticket's link
    assert _click(local_aws, _links_in(links["text"])["approve"])["statusCode"] == 200
    execution = wait_for_execution(local_aws.client("stepfunctions"), execution_arn)

    # Then the ticket hears who approved it, then where the case stands: the isolation ran (dry run)
    decision, outcome = _ticket_messages(local_aws, analyst, 2)
    assert execution["status"] == "SUCCEEDED"
    assert decision["text"].startswith(f"Decision on action 1 of 1, Isolate the instance {instance_id}: ")
    assert "approved by a person through the approval link" in decision["text"]
    assert outcome["text"].startswith("Update from vtriage: where the case stands now\nStatus: TICKETED")
    assert (
        f"  - Isolate the instance (isolate_instance): {instance_id}, account {ACCOUNT_ID}, Region {REGION}: "
        "dry run"
    ) in outcome["text"]
    assert "would move " in outcome["text"]
    # And only that one ticket opened for the case
    assert (decision["subject"], outcome["subject"]) == (f"Update on {ticket}",) * 2
    assert _states_entered_after(local_aws, execution_arn, "WaitForApproval")[:2] == [
        "TellTicketOfApproval",
        "RunAction",
    ]


def _states_entered_after(aws: LocalAws, execution_arn: str, state: str) -> list[str]:
    entered = _entered_states(aws, execution_arn)
    return entered[entered.index(state) + 1 :]


def test_a_rejected_action_is_skipped_with_the_reason(local_aws: LocalAws) -> None:
    # Given an execution waiting for approval of an isolation, and an analyst reading its ticket
    inbox = _approval_inbox(local_aws)
    analyst = _ticket_inbox(local_aws)
    instance_id, groups = _instance(local_aws)
    case = _case(Verdict.MALICIOUS, [_isolation(instance_id, needs_approval="true")])
    execution_arn = _start(local_aws, case)
    links = _approval_links(local_aws, inbox)

    # When the approver rejects it
    answer = _click(local_aws, links["reject"])
    execution = wait_for_execution(local_aws.client("stepfunctions"), execution_arn)

    # Then the action never ran, says who stopped it, and the case is ticketed without an error
    assert answer["statusCode"] == 200
    assert execution["status"] == "SUCCEEDED"
    stored = _cases(local_aws).get(case.case_id)
    assert stored is not None
    assert stored.actions[0].status is ActionStatus.SKIPPED
    assert "rejected by a person" in stored.actions[0].detail
    assert stored.ticket is not None
    assert stored.error is None
    assert "ActionRejected" in _entered_states(local_aws, execution_arn)
    assert _interface_groups(local_aws, instance_id) == [groups]
    # And the approve link, used after the reject one, is refused
    assert _click(local_aws, links["approve"])["statusCode"] == 410
    # And the ticket, opened before the approval, heard who rejected the action and that it does not run
    _, _, rejection, _ = _ticket_messages(local_aws, analyst, 4)
    assert "rejected by a person through the approval link" in rejection["text"]
    assert rejection["text"].endswith("It does not run.")


def test_an_approval_nobody_gives_times_out_and_escalates_the_ticket(
    local_aws: LocalAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given approvals that wait one second, and an action that needs one
    monkeypatch.setenv("APPROVAL_TIMEOUT_SECONDS", "1")
    inbox = _approval_inbox(local_aws)
    instance_id, _ = _instance(local_aws)
    case = _case(Verdict.MALICIOUS, [_isolation(instance_id, needs_approval="true")])

    # When nobody answers
    execution_arn = _start(local_aws, case)
    links = _approval_links(local_aws, inbox)
    execution = wait_for_execution(local_aws.client("stepfunctions"), execution_arn)

    # Then the ticket is opened with the escalation, and the action still waits, saying so
    assert execution["status"] == "SUCCEEDED"
    assert _entered_states(local_aws, execution_arn)[-3:] == [
        "ApprovalTimedOut",
        "FinishRemediation",
        "OpenTicket",
    ]
    stored = _cases(local_aws).get(case.case_id)
    assert stored is not None
    assert stored.ticket is not None
    assert stored.error is not None
    assert "waits for approval: escalated" in stored.error
    assert stored.actions[0].status is ActionStatus.PENDING_APPROVAL
    assert "escalated to the ticket" in stored.actions[0].detail
    # And the link, now expired, is refused
    assert _click(local_aws, links["approve"])["statusCode"] == 410


def test_a_protected_instance_is_skipped_with_the_reason(local_aws: LocalAws) -> None:
    # Given a malicious case on an instance that carries the protected tag
    instance_id, groups = _instance(local_aws)
    local_aws.client("ec2").create_tags(
        Resources=[instance_id], Tags=[{"Key": "vtriage:protected", "Value": "database"}]
    )
    case = _case(Verdict.MALICIOUS, [_isolation(instance_id)])

    # When the state machine runs it
    execution, stored = _run(local_aws, case)

    # Then the isolation is skipped, saying why, and the instance keeps its groups
    assert execution["status"] == "SUCCEEDED"
    assert stored is not None
    assert stored.actions[0].status is ActionStatus.SKIPPED
    assert "protected" in stored.actions[0].detail
    assert _interface_groups(local_aws, instance_id) == [groups]


def test_beyond_the_blast_radius_cap_actions_wait_for_approval(
    local_aws: LocalAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given remediation acting for real with a cap of one action per hour, and two instances to isolate
    monkeypatch.setenv("DRY_RUN", "false")
    monkeypatch.setenv("MAX_ACTIONS_PER_HOUR", "1")
    inbox = _approval_inbox(local_aws)
    first, _ = _instance(local_aws)
    second, second_groups = _instance(local_aws)
    case = _case(Verdict.MALICIOUS, [_isolation(first), _isolation(second)])

    # When the state machine runs it
    execution_arn = _start(local_aws, case)
    links = _approval_links(local_aws, inbox)

    # Then the first isolation ran, and the second waits for a person with the reason, changing nothing
    waiting = _cases(local_aws).get(case.case_id)
    assert waiting is not None
    assert [action.status for action in waiting.actions] == [
        ActionStatus.DONE,
        ActionStatus.PENDING_APPROVAL,
    ]
    assert "blast-radius cap of 1 action per hour" in waiting.actions[1].detail
    assert _interface_groups(local_aws, second) == [second_groups]

    # When the approver rejects the second one, Then the execution ends with the ticket
    assert _click(local_aws, links["reject"])["statusCode"] == 200
    execution = wait_for_execution(local_aws.client("stepfunctions"), execution_arn)
    assert execution["status"] == "SUCCEEDED"
    stored = _cases(local_aws).get(case.case_id)
    assert stored is not None
    # And the case is ticketed, not remediated: the second instance, never isolated, is still on the
    # network, and its history says so first
    assert stored.status is CaseStatus.TICKETED
    assert stored.history[-1].note.startswith(f"not contained: isolate_instance {second} skipped")
    assert stored.ticket is not None


def test_an_action_that_fails_sends_the_case_to_the_ticket_with_the_error(local_aws: LocalAws) -> None:
    # Given a malicious case planning a WAF block, with no WAF IP set configured (the default)
    case = _case(Verdict.MALICIOUS, [Action(type=ActionType.BLOCK_IP_WAF, target="203.0.113.9")])

    # When the state machine runs it
    execution, stored = _run(local_aws, case)

    # Then the action failed, and FinishRemediation's Catch took the error to the ticket
    assert execution["status"] == "SUCCEEDED"
    assert _entered_states(local_aws, execution["executionArn"])[-2:] == ["FinishRemediation", "OpenTicket"]
    assert stored is not None
    assert stored.actions[0].status is ActionStatus.FAILED
    assert stored.ticket is not None
    assert stored.error is not None
    assert "no actuator is configured for block_ip_waf" in stored.error


def test_an_action_that_cannot_run_does_not_cancel_the_others(
    local_aws: LocalAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a malicious case isolating three instances, and Lambda timing out on the run of the second
    # (the platform's error, as Lambda reports it; the function itself is the real one for every other call)
    instances = [_instance(local_aws)[0] for _ in range(3)]
    case = _case(Verdict.MALICIOUS, [_isolation(instance_id) for instance_id in instances])
    timed_out = type("Sandbox.Timedout", (Exception,), {})
    invoke = local_aws.invoke

    def lambda_timing_out_on_the_second_action(logical_id: str, event: Any) -> Any:
        if logical_id == "RemediateFunction" and event.get("step") == "run" and event.get("index") == 1:
            raise timed_out("Task timed out after 60.00 seconds")
        return invoke(logical_id, event)

    monkeypatch.setattr(local_aws, "invoke", lambda_timing_out_on_the_second_action)

    # When the state machine runs it
    execution, stored = _run(local_aws, case)

    # Then the third action still ran, the second is recorded failed with the error, and the ticket
    # carries the failure
    assert execution["status"] == "SUCCEEDED"
    assert stored is not None
    assert [action.status for action in stored.actions] == [
        ActionStatus.DRY_RUN,
        ActionStatus.FAILED,
        ActionStatus.DRY_RUN,
    ]
    assert "Sandbox.Timedout" in stored.actions[1].detail
    assert "may have acted in part" in stored.actions[1].detail
    states = _entered_states(local_aws, execution["executionArn"])
    assert "RecordActionFailure" in states
    assert states[-2:] == ["FinishRemediation", "OpenTicket"]
    assert stored.ticket is not None
    assert stored.error is not None
    assert f"isolate_instance {instances[1]} failed" in stored.error


def test_a_finding_from_another_account_is_ticketed_and_changes_nothing_even_with_dry_run_off(
    local_aws: LocalAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given remediation acting for real, and a case whose finding names another account, with an isolation
    # planned on an instance of this one (as if planning had let it through)
    monkeypatch.setenv("DRY_RUN", "false")
    instance_id, groups = _instance(local_aws)
    case = _case(Verdict.MALICIOUS, [_isolation(instance_id)])
    case = case.model_copy(update={"alert": case.alert.model_copy(update={"account": "999999999999"})})

    # When the state machine runs it
    execution, stored = _run(local_aws, case)

    # Then the instance keeps its groups, the action is skipped with the reason, and the ticket carries it
    assert execution["status"] == "SUCCEEDED"
    assert _interface_groups(local_aws, instance_id) == [groups]
    assert stored is not None
    assert stored.actions[0].status is ActionStatus.SKIPPED
    assert "account '999999999999'" in stored.actions[0].detail
    assert stored.ticket is not None
    assert stored.error is not None
    assert "account '999999999999'" in stored.error


def test_the_execution_has_a_timeout_above_every_approval_wait_it_plans() -> None:
    # Given the state machine's definition and the template's bound on the approval timeout
    text = (PROJECT_ROOT / "statemachine" / "triage.asl.json").read_text(encoding="utf-8")
    definition = json.loads(re.sub(r"\$\{\w+\}", "X", text))
    longest_approval = load_template()["Parameters"]["ApprovalTimeoutSeconds"]["MaxValue"]

    # Then the whole execution is bounded, by the time the plan step counts on, above the longest approval
    assert definition["TimeoutSeconds"] == EXECUTION_TIMEOUT_SECONDS
    assert longest_approval + TIME_BESIDE_APPROVALS_SECONDS < EXECUTION_TIMEOUT_SECONDS


def _largest_sample_alert() -> Any:
    for path in sorted(EVENTS.glob("*.json"), key=lambda p: p.stat().st_size, reverse=True):
        try:
            alerts = read_document(json.loads(path.read_text())).alerts
        except (InvalidAlertError, ValueError):
            continue  # the invalid samples
        if alerts:
            return alerts[0]
    raise AssertionError("no sample alert")


def test_every_payload_of_a_remediation_is_a_small_summary(local_aws: LocalAws) -> None:
    # Given the largest sample alert as a malicious case planning the most actions a case runs, moved to
    # the deployment's own account and Region so that its actions run
    alert = _largest_sample_alert().model_copy(
        update={"account": ACCOUNT_ID, "region": REGION, "not_actionable": ()}
    )
    instances = [_instance(local_aws)[0] for _ in range(5)]
    case = _case(Verdict.MALICIOUS, [_isolation(instance_id) for instance_id in instances]).model_copy(
        update={"alert": alert, "case_id": alert.case_id}
    )

    # When the state machine runs it
    execution, stored = _run(local_aws, case)

    # Then every state's input and output in the history stays below 8 KB
    assert execution["status"] == "SUCCEEDED"
    assert stored is not None
    assert [action.status for action in stored.actions] == [ActionStatus.DRY_RUN] * 5
    history = local_aws.client("stepfunctions").get_execution_history(executionArn=execution["executionArn"])
    sizes = [
        len(str(details.get(field, "")).encode())
        for event in history["events"]
        for key, details in event.items()
        if key.endswith("EventDetails") and isinstance(details, dict)
        for field in ("input", "output")
    ]
    assert sizes
    assert max(sizes) < 8 * 1024


class _WebhookReceiver(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        type(self).received.append(json.loads(self.rfile.read(length)))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        return None


def test_the_ticket_goes_to_the_configured_provider_with_credentials_from_secrets_manager(
    local_aws: LocalAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a webhook receiver on loopback, its URL in a Secrets Manager secret, and the ticket
    # function configured for the webhook provider
    _WebhookReceiver.received.clear()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _WebhookReceiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hooks/soc"
        local_aws.client("secretsmanager").create_secret(
            Name="vtriage/ticket-webhook", SecretString=json.dumps({"url": url})
        )
        monkeypatch.setenv("TICKET_PROVIDER", "webhook")
        monkeypatch.setenv("TICKET_SECRET_NAME", "vtriage/ticket-webhook")

        # When a suspicious case runs through the state machine
        execution, stored = _run(local_aws, _case(Verdict.SUSPICIOUS))
    finally:
        server.shutdown()

    # Then the webhook received the case report, and the case keeps the webhook's ticket
    assert execution["status"] == "SUCCEEDED"
    [message] = _WebhookReceiver.received
    assert "tawuhoju.com" in message["text"]
    assert stored is not None
    assert stored.ticket is not None
    assert stored.ticket.provider == "webhook"
