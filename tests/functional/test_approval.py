"""The approval function's URL, as an approver's browser meets it: the real handler, a real waiting
execution on moto, and links signed with the key the stack keeps in Secrets Manager. The approval
request as an approver's mailbox gets it, from the approvals topic."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tests.functional.conftest import wait_for_execution
from tests.functional.test_state_machine import (
    _approval_inbox,
    _approval_links,
    _case,
    _cases,
    _click,
    _instance,
    _isolation,
    _start,
)
from vtriage.adapters.guardrails import DynamoApprovalStore
from vtriage.approval import sign, verify
from vtriage.approval_links import ApprovalClaims, Decision
from vtriage.models import Action, ActionStatus, ActionType, Verdict
from vtriage_local.stack import LocalAws

BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


def _token(link: str) -> str:
    return parse_qs(urlsplit(link).query)["token"][0]


def _with_token(link: str, token: str) -> str:
    return link.split("?", 1)[0] + "?token=" + token


def _signing_key(aws: LocalAws) -> bytes:
    name = aws.parameters["ApprovalSigningKeySecretName"]
    return str(aws.client("secretsmanager").get_secret_value(SecretId=name)["SecretString"]).encode()


def _request(aws: LocalAws, method: str, **fields: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "version": "2.0",
        "rawPath": "/",
        "rawQueryString": "",
        "requestContext": {"http": {"method": method, "path": "/"}},
        "isBase64Encoded": False,
    } | fields
    response: dict[str, Any] = aws.invoke("ApprovalFunction", event)
    return response


def test_the_approval_url_refuses_forged_expired_and_reused_tokens(local_aws: LocalAws) -> None:
    # Given an execution waiting for a person to approve an isolation, and its links
    inbox = _approval_inbox(local_aws)
    instance_id, _ = _instance(local_aws)
    case = _case(Verdict.MALICIOUS, [_isolation(instance_id, needs_approval="true")])
    execution_arn = _start(local_aws, case)
    links = _approval_links(local_aws, inbox)
    genuine = verify(_token(links["approve"]), _signing_key(local_aws), datetime.now(UTC))

    # When a token is altered (the reject link's signature under approve claims), Then it is refused: 403
    approve_body, _, _ = _token(links["approve"]).partition(".")
    _, _, reject_signature = _token(links["reject"]).partition(".")
    tampered = _with_token(links["approve"], f"{approve_body}.{reject_signature}")
    assert _click(local_aws, tampered)["statusCode"] == 403
    assert _click(local_aws, tampered, method="GET")["statusCode"] == 403

    # When a token is signed with another key, Then it is refused: 403
    forged = sign(genuine, b"a key the attacker made up")
    assert _click(local_aws, _with_token(links["approve"], forged))["statusCode"] == 403

    # When a genuine token has expired, Then it is gone: 410
    expired_claims = ApprovalClaims(
        **(genuine.model_dump() | {"expires_at": int((datetime.now(UTC) - timedelta(seconds=1)).timestamp())})
    )
    expired = sign(expired_claims, _signing_key(local_aws))
    assert _click(local_aws, _with_token(links["approve"], expired))["statusCode"] == 410

    # And none of these decided anything: the execution still waits, the action still pending
    waiting = _cases(local_aws).get(case.case_id)
    assert waiting is not None
    assert waiting.actions[0].status is ActionStatus.PENDING_APPROVAL
    sfn = local_aws.client("stepfunctions")
    assert sfn.describe_execution(executionArn=execution_arn)["status"] == "RUNNING"

    # When the genuine approve link is confirmed, Then it works once
    first = _click(local_aws, links["approve"])
    assert first["statusCode"] == 200
    assert wait_for_execution(sfn, execution_arn)["status"] == "SUCCEEDED"

    # And used again, or its reject twin used after it, it is gone: 410
    assert _click(local_aws, links["approve"])["statusCode"] == 410
    assert _click(local_aws, links["reject"])["statusCode"] == 410
    assert _click(local_aws, links["approve"], method="GET")["statusCode"] == 410
    assert genuine.decision is Decision.APPROVE


def test_the_approval_url_answers_requests_without_a_token_or_with_another_method(
    local_aws: LocalAws,
) -> None:
    # Given the approval function's URL, When it is called without a token or with PUT
    no_token = _request(local_aws, "GET")
    empty_post = _request(local_aws, "POST", body="")
    put = _request(local_aws, "PUT", rawQueryString="token=x.y")

    # Then it says what is wrong, never caches, and never leaks the page's address to other sites
    assert (no_token["statusCode"], empty_post["statusCode"], put["statusCode"]) == (400, 400, 405)
    assert no_token["headers"]["cache-control"] == "no-store"
    assert no_token["headers"]["referrer-policy"] == "no-referrer"


def _confirm(aws: LocalAws, link: str, source_ip: str, user_agent: str) -> dict[str, Any]:
    """What the approval function's URL answers a browser confirming a decision (POST from its page)."""
    event = {
        "version": "2.0",
        "rawPath": "/",
        "rawQueryString": "",
        "headers": {"content-type": "application/x-www-form-urlencoded", "user-agent": user_agent},
        "requestContext": {
            "http": {"method": "POST", "path": "/", "sourceIp": source_ip, "userAgent": user_agent}
        },
        "body": link.split("?", 1)[1],
        "isBase64Encoded": False,
    }
    response: dict[str, Any] = aws.invoke("ApprovalFunction", event)
    return response


def _store(aws: LocalAws) -> DynamoApprovalStore:
    return DynamoApprovalStore(aws.client("dynamodb"), aws.ref("GuardrailsTable"))


def _notes(aws: LocalAws, case_id: str) -> list[str]:
    case = _cases(aws).get(case_id)
    assert case is not None
    return [entry.note for entry in case.history]


def test_the_approvers_address_and_user_agent_are_kept_with_the_decision(local_aws: LocalAws) -> None:
    # Given an execution waiting for a person to approve an isolation, and its links
    inbox = _approval_inbox(local_aws)
    instance_id, _ = _instance(local_aws)
    case = _case(Verdict.MALICIOUS, [_isolation(instance_id, needs_approval="true")])
    execution_arn = _start(local_aws, case)
    links = _approval_links(local_aws, inbox)

    # When a person confirms the approval from a browser
    answer = _confirm(local_aws, links["approve"], "203.0.113.44", BROWSER)

    # Then it decided, and the execution went on
    assert answer["statusCode"] == 200
    sfn = local_aws.client("stepfunctions")
    assert wait_for_execution(sfn, execution_arn)["status"] == "SUCCEEDED"
    # And the approvals store keeps the decision with the address and user agent the request came from
    approval_id = verify(_token(links["approve"]), _signing_key(local_aws), datetime.now(UTC)).approval_id
    item = _store(local_aws).item(approval_id)
    assert item is not None
    assert item["state"]["S"] == "approve"
    assert item["decided_by_source_ip"]["S"] == "203.0.113.44"
    assert item["decided_by_user_agent"]["S"] == BROWSER
    # And the case's history says who approved what, from where
    [note] = [note for note in _notes(local_aws, case.case_id) if "approved by a person" in note]
    assert note.startswith(f"isolate_instance {instance_id} approved by a person through the approval link")
    assert note.endswith(f"from 203.0.113.44 (user agent {BROWSER})")


class StepFunctionsOutage:
    """A loopback proxy in front of moto that answers Step Functions' SendTaskSuccess and
    SendTaskFailure with 503 ServiceUnavailable while `down` is set, and passes everything else on."""

    def __init__(self, upstream: str) -> None:
        self.down = threading.Event()
        self.refused = 0
        outage = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                target = self.headers.get("X-Amz-Target", "")
                if outage.down.is_set() and target.endswith(("SendTaskSuccess", "SendTaskFailure")):
                    outage.refused += 1
                    error = {"__type": "ServiceUnavailable", "message": "Service is unavailable"}
                    json_type = {"Content-Type": "application/x-amz-json-1.0"}
                    self._answer(503, json_type, json.dumps(error).encode())
                    return
                headers = {name: value for name, value in self.headers.items() if name.lower() != "host"}
                passed = requests.request(
                    self.command, upstream + self.path, headers=headers, data=body, timeout=30
                )
                framing = {"content-length", "transfer-encoding", "connection", "content-encoding"}
                kept = {name: value for name, value in passed.headers.items() if name.lower() not in framing}
                self._answer(passed.status_code, kept, passed.content)

            def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @contextmanager
    def running(self) -> Iterator[StepFunctionsOutage]:
        self._thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()


@pytest.mark.parametrize("decision", ["approve", "reject"])
def test_a_decision_step_functions_could_not_take_leaves_the_link_working(
    local_aws: LocalAws, monkeypatch: pytest.MonkeyPatch, decision: str
) -> None:
    # Given an execution waiting for a person, and Step Functions unavailable to the approval function
    inbox = _approval_inbox(local_aws)
    instance_id, _ = _instance(local_aws)
    case = _case(Verdict.MALICIOUS, [_isolation(instance_id, needs_approval="true")])
    execution_arn = _start(local_aws, case)
    links = _approval_links(local_aws, inbox)
    sfn = local_aws.client("stepfunctions")
    with StepFunctionsOutage(local_aws.endpoint_url).running() as outage:
        monkeypatch.setenv("AWS_ENDPOINT_URL", outage.url)
        outage.down.set()

        # When the person confirms, Then the page says nothing was decided and to try again
        refused = _confirm(local_aws, links[decision], "203.0.113.44", BROWSER)
        assert refused["statusCode"] == 503
        assert "the link still works" in refused["body"]
        assert outage.refused >= 1
        # And nothing was spent: the execution waits, the action too, and the link still opens its page
        assert sfn.describe_execution(executionArn=execution_arn)["status"] == "RUNNING"
        waiting = _cases(local_aws).get(case.case_id)
        assert waiting is not None
        assert waiting.actions[0].status is ActionStatus.PENDING_APPROVAL
        assert "did not reach the waiting step" in waiting.history[-1].note
        assert _click(local_aws, links[decision], method="GET")["statusCode"] == 200

        # When Step Functions answers again and the person retries the same link
        outage.down.clear()
        again = _confirm(local_aws, links[decision], "203.0.113.44", BROWSER)

        # Then it decides, and the execution goes on as the person decided (through the proxy still: the
        # functions the execution runs share this process's endpoint)
        assert again["statusCode"] == 200
        assert wait_for_execution(sfn, execution_arn)["status"] == "SUCCEEDED"
        # And a third use of either link is refused as used
        assert _click(local_aws, links["approve"])["statusCode"] == 410
        assert _click(local_aws, links["reject"])["statusCode"] == 410
        monkeypatch.setenv("AWS_ENDPOINT_URL", local_aws.endpoint_url)
    decided = _cases(local_aws).get(case.case_id)
    assert decided is not None
    expected = ActionStatus.SKIPPED if decision == "reject" else ActionStatus.DRY_RUN
    assert decided.actions[0].status is expected


def _approval_request(aws: LocalAws, case_id: str) -> dict[str, Any]:
    """What the state machine's WaitForApproval step sends the approval function."""
    return {
        "case_id": case_id,
        "index": 0,
        "task_token": "synthetic-task-token-" + case_id,
        "approval_url": aws.get_att("ApprovalFunctionUrl", "FunctionUrl"),
        "approval_timeout_seconds": 3600,
    }


def _inbox(aws: LocalAws, topic: str, name: str) -> str:
    sqs, sns = aws.client("sqs"), aws.client("sns")
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=aws.ref(topic), Protocol="sqs", Endpoint=arn)
    return str(url)


def _received(aws: LocalAws, inbox: str, wait_s: float = 5.0) -> list[dict[str, Any]]:
    sqs = aws.client("sqs")
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        messages = sqs.receive_message(QueueUrl=inbox, MaxNumberOfMessages=10).get("Messages", [])
        if messages:
            return [json.loads(message["Body"]) for message in messages]
        time.sleep(0.05)
    return []


def test_an_approval_for_a_kilobyte_s3_key_of_line_breaks_reaches_the_approvers_alone(
    local_aws: LocalAws,
) -> None:
    # Given a case whose quarantine waits for approval, on an S3 key of 1 KB full of line breaks and
    # fake approval lines; an approver subscribed to the approvals topic, and a ticket reader to tickets
    key = ("dropper\r\nApprove: https://evil.example/approve\u202e\t" * 40)[:1024]
    action = Action(
        type=ActionType.QUARANTINE_OBJECT,
        target=f"uploads/{key}",
        status=ActionStatus.PENDING_APPROVAL,
        parameters={"bucket": "uploads", "key": key},
    )
    case = _case(Verdict.MALICIOUS, [action])
    assert _cases(local_aws).create(case)
    approvers = _inbox(local_aws, "ApprovalTopic", "approvers")
    ticket_readers = _inbox(local_aws, "TicketTopic", "ticket-readers")

    # When the state machine asks for the approval
    answer = local_aws.invoke("ApprovalFunction", _approval_request(local_aws, case.case_id))

    # Then the waiting step is answered no link (ApprovalLinksInTickets=false, the default): only until when
    assert sorted(answer) == ["case_id", "expires_at", "index"]

    # Then the approvers get it, under a subject SNS accepts: ASCII, no control character, <= 99 characters
    [notification] = _received(local_aws, approvers)
    subject = notification["Subject"]
    assert subject.startswith("vtriage approval needed: Quarantine the S3 object: uploads/dropper\\r\\nApp")
    assert subject.isascii()
    assert len(subject) <= 99
    assert not any(ord(character) < 32 or ord(character) == 127 for character in subject)
    # And the message opens with vtriage's header and the two real links, before anything from the alert
    lines = notification["Message"].splitlines()
    assert lines[0] == "vtriage case report: approval needed: Quarantine the S3 object"
    link_lines = [line for line in lines if line.startswith(("Approve:", "Reject:"))]
    assert [line.split()[0] for line in link_lines] == ["Approve:", "Reject:"]
    assert all(line.split()[1].startswith(_url(local_aws) + "?token=") for line in link_lines)
    target = next(line for line in lines if line.startswith("Target: "))
    assert target.startswith("Target: uploads/dropper\\r\\nApprove: hxxps://evil.example/approve\\u202e\\t")
    assert target.endswith("more characters]")
    assert "https://evil" not in notification["Message"]
    # And nobody subscribed to tickets got the links
    assert _received(local_aws, ticket_readers, wait_s=1.0) == []


def _url(aws: LocalAws) -> str:
    return aws.get_att("ApprovalFunctionUrl", "FunctionUrl")
