"""The approval function's URL, as an approver's browser meets it: the real handler, a real waiting
execution on moto, and links signed with the key the stack keeps in Secrets Manager."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

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
from vtriage.approval import ApprovalClaims, Decision, sign, verify
from vtriage.models import ActionStatus, Verdict
from vtriage_local.stack import LocalAws


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
