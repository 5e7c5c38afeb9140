"""Pushed alerts: what a sender gets back for each kind of request, and what reaches the queue."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import pytest

from vtriage.errors import TransientError
from vtriage.intake import parse_alerts
from vtriage.intake_api import AlertRejectedError, accept_alert, caller_of, function_url_response

EVENTS = Path(__file__).resolve().parents[2] / "events"
FINDING = EVENTS / "guardduty-ec2-canary-outbound-ssh.json"
GET_FINDINGS = EVENTS / "guardduty-getfindings-trojan-droppoint-dns.json"
SENDER = "arn:aws:iam::123456789012:role/edr-forwarder"


class FakeAlertQueue:
    """The AlertQueue port in memory: keeps what it was sent, or fails as a throttled SQS would."""

    def __init__(self, unavailable: bool = False) -> None:
        self.bodies: list[str] = []
        self.unavailable = unavailable

    def send(self, body: str) -> str:
        """Keep the body; return a message id."""
        if self.unavailable:
            raise TransientError("ThrottlingException: slow down")
        self.bodies.append(body)
        return f"message-{len(self.bodies)}"


def function_url_request(
    body: str | None, method: str = "POST", base64_encoded: bool = False
) -> dict[str, Any]:
    """A request as a Lambda function URL with IAM auth delivers it (payload format 2.0)."""
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/",
        "rawQueryString": "",
        "headers": {"content-type": "application/json", "host": "abc123.lambda-url.us-east-1.on.aws"},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "authorizer": {
                "iam": {
                    "accessKey": "ASIAEXAMPLE",
                    "accountId": "123456789012",
                    "callerId": "AROAEXAMPLE:forwarder",
                    "userArn": SENDER,
                    "userId": "AROAEXAMPLE:forwarder",
                }
            },
            "domainName": "abc123.lambda-url.us-east-1.on.aws",
            "http": {
                "method": method,
                "path": "/",
                "protocol": "HTTP/1.1",
                "sourceIp": "198.51.100.7",
                "userAgent": "forwarder/1.0",
            },
            "requestId": "0f4c5a2e-5b7a-4c38-9a53-7d1c2f0e9b11",
            "routeKey": "$default",
            "stage": "$default",
            "time": "19/Mar/2025:09:48:15 +0000",
            "timeEpoch": 1742377695000,
        },
        "body": body,
        "isBase64Encoded": base64_encoded,
    }


def answer(response: dict[str, Any]) -> dict[str, Any]:
    """The JSON body of a response."""
    body: dict[str, Any] = json.loads(response["body"])
    return body


# ---------------------------------------------------------------- accepted


def test_a_valid_finding_is_queued_unchanged_and_the_sender_learns_its_ids() -> None:
    # Given a GuardDuty finding exactly as a detector pushes it
    body = FINDING.read_text(encoding="utf-8")
    queue = FakeAlertQueue()

    # When it is posted
    response = function_url_response(function_url_request(body), queue)

    # Then it is accepted, and the very bytes sent are on the queue
    assert response["statusCode"] == 202
    assert response["headers"]["Content-Type"] == "application/json"
    assert queue.bodies == [body]
    # And the answer names the message, the alert and the case it will become
    (alert,) = parse_alerts(json.loads(body))
    assert answer(response) == {
        "message_id": "message-1",
        "alert_ids": [alert.id],
        "case_ids": [alert.case_id],
    }


def test_get_findings_output_with_several_findings_is_one_message_naming_every_alert() -> None:
    # Given get-findings output holding two findings
    document = json.loads(GET_FINDINGS.read_text(encoding="utf-8"))
    second = copy.deepcopy(document["Findings"][0])
    second["Id"] = "1" * 32
    document["Findings"].append(second)
    queue = FakeAlertQueue()

    # When it is posted
    response = function_url_response(function_url_request(json.dumps(document)), queue)

    # Then one message is queued and both alerts are named
    assert response["statusCode"] == 202
    assert len(queue.bodies) == 1
    assert answer(response)["alert_ids"] == [document["Findings"][0]["Id"], "1" * 32]


def test_a_base64_encoded_body_is_decoded_before_it_is_checked_and_queued_as_text() -> None:
    # Given a body the function URL passed base64-encoded (a content type it does not take for text)
    body = FINDING.read_text(encoding="utf-8")
    encoded = base64.b64encode(body.encode("utf-8")).decode("ascii")
    queue = FakeAlertQueue()

    # When it is posted
    response = function_url_response(function_url_request(encoded, base64_encoded=True), queue)

    # Then the decoded text is what is queued
    assert response["statusCode"] == 202
    assert queue.bodies == [body]


def test_a_body_exactly_at_the_size_limit_is_accepted() -> None:
    # Given a body whose UTF-8 size is the limit
    body = FINDING.read_text(encoding="utf-8")
    queue = FakeAlertQueue()

    # When it is checked against a limit of exactly its size
    accepted = accept_alert(body, queue, max_message_bytes=len(body.encode("utf-8")))

    # Then it is queued
    assert accepted.message_id == "message-1"
    assert queue.bodies == [body]


# ---------------------------------------------------------------- rejected: nothing is queued


def test_a_finding_without_its_id_is_refused_naming_the_field() -> None:
    # Given a finding that lost its id
    document = json.loads(FINDING.read_text(encoding="utf-8"))
    del document["id"]
    queue = FakeAlertQueue()

    # When it is posted
    response = function_url_response(function_url_request(json.dumps(document)), queue)

    # Then it is refused with the field at fault, and nothing is queued
    assert response["statusCode"] == 400
    assert answer(response)["field"] == "id"
    assert "missing" in answer(response)["error"]
    assert queue.bodies == []


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ('{"detail-type": "GuardDuty Finding", ', "body", "not JSON"),
        ("", "body", "empty"),
        ("   \n", "body", "empty"),
        ('{"hello": "world"}', None, "unknown shape"),
        ("[1, 2, 3]", None, "unknown shape"),
        ("[" * 100_000 + "]" * 100_000, "body", "nested too deeply"),
    ],
    ids=["truncated", "empty", "blank", "unknown-object", "list", "deeply-nested"],
)
def test_a_body_that_is_not_an_alert_is_refused_with_a_reason(
    body: str, field: str | None, words: str
) -> None:
    # Given a body that cannot become an alert
    queue = FakeAlertQueue()

    # When it is posted
    response = function_url_response(function_url_request(body), queue)

    # Then the sender is told why, naming the field where there is one, and nothing is queued
    assert response["statusCode"] == 400
    assert answer(response)["field"] == field
    assert words in answer(response)["error"]
    assert queue.bodies == []


def test_a_request_without_a_body_is_refused() -> None:
    # Given a POST with no body at all
    queue = FakeAlertQueue()

    # When it arrives
    response = function_url_response(function_url_request(None), queue)

    # Then it is refused
    assert response["statusCode"] == 400
    assert answer(response) == {
        "error": "the body is empty: send one alert document as JSON",
        "field": "body",
    }
    assert queue.bodies == []


def test_an_sqs_event_posted_whole_is_refused_naming_its_records() -> None:
    # Given an SQS event (a batch of records) rather than one alert
    body = json.dumps({"Records": [{"body": FINDING.read_text(encoding="utf-8")}]})
    queue = FakeAlertQueue()

    # When it is posted
    response = function_url_response(function_url_request(body), queue)

    # Then it is refused, pointing at Records
    assert response["statusCode"] == 400
    assert answer(response)["field"] == "Records"
    assert queue.bodies == []


def test_a_body_one_byte_over_the_limit_is_refused_as_too_large() -> None:
    # Given a valid finding one byte larger than the limit
    body = FINDING.read_text(encoding="utf-8")
    limit = len(body.encode("utf-8")) - 1
    queue = FakeAlertQueue()

    # When it is posted
    response = function_url_response(function_url_request(body), queue, max_message_bytes=limit)

    # Then it is refused as too large, saying both sizes
    assert response["statusCode"] == 413
    assert answer(response)["field"] == "body"
    assert f"{limit + 1} bytes" in answer(response)["error"]
    assert str(limit) in answer(response)["error"]
    assert queue.bodies == []


def test_the_size_limit_counts_bytes_not_characters() -> None:
    # Given a finding whose title has characters of several UTF-8 bytes each
    document = json.loads(FINDING.read_text(encoding="utf-8"))
    document["title"] = "Ausgehender SSH-Verkehr über Port 22 — ungewöhnlich ✓"
    body = json.dumps(document, ensure_ascii=False)
    queue = FakeAlertQueue()

    # When the limit is its length in characters, which is fewer than its bytes
    with pytest.raises(AlertRejectedError) as rejected:
        accept_alert(body, queue, max_message_bytes=len(body))

    # Then it is too large
    assert rejected.value.status == 413
    assert queue.bodies == []


@pytest.mark.parametrize(
    "character", ["\uffff", "\ufffe", "\x00", "\ud800"], ids=["FFFF", "FFFE", "NUL", "surrogate"]
)
def test_a_body_with_a_character_sqs_refuses_is_rejected_before_it_is_sent(character: str) -> None:
    # Given a finding whose title holds, raw, a character outside what SQS carries
    body = FINDING.read_text(encoding="utf-8").replace('"title": "', f'"title": "before{character}', 1)
    assert character in body
    queue = FakeAlertQueue()

    # When it is posted
    response = function_url_response(function_url_request(body), queue)

    # Then it is refused, saying which character and where, and nothing is queued
    assert response["statusCode"] == 400
    assert answer(response)["field"] == "body"
    assert f"U+{ord(character):04X}" in answer(response)["error"]
    assert queue.bodies == []


@pytest.mark.parametrize(
    ("encoded", "words"),
    [("not base64!", "does not decode"), (base64.b64encode(b'{"title": "\xff"}').decode(), "not UTF-8")],
    ids=["bad-base64", "not-utf8"],
)
def test_a_base64_body_that_does_not_decode_to_text_is_refused(encoded: str, words: str) -> None:
    # Given a base64-flagged body that is not base64, or not UTF-8 once decoded
    queue = FakeAlertQueue()

    # When it is posted
    response = function_url_response(function_url_request(encoded, base64_encoded=True), queue)

    # Then it is refused
    assert response["statusCode"] == 400
    assert words in answer(response)["error"]
    assert queue.bodies == []


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_any_method_but_post_is_refused_with_the_allowed_one(method: str) -> None:
    # Given a valid finding sent with another method
    queue = FakeAlertQueue()
    request = function_url_request(FINDING.read_text(encoding="utf-8"), method=method)

    # When it arrives
    response = function_url_response(request, queue)

    # Then it is refused with 405, saying POST is the one to use
    assert response["statusCode"] == 405
    assert response["headers"]["Allow"] == "POST"
    assert method in answer(response)["error"]
    assert queue.bodies == []


def test_a_direct_invocation_that_is_not_an_http_request_is_refused() -> None:
    # Given an event that did not come through the function URL (a plain Invoke)
    queue = FakeAlertQueue()

    # When the intake answers it
    response = function_url_response(json.loads(FINDING.read_text(encoding="utf-8")), queue)

    # Then nothing is queued
    assert response["statusCode"] == 405
    assert queue.bodies == []


def test_a_busy_queue_gives_503_so_the_sender_retries() -> None:
    # Given a queue that is throttling
    queue = FakeAlertQueue(unavailable=True)

    # When a valid finding is posted
    response = function_url_response(function_url_request(FINDING.read_text(encoding="utf-8")), queue)

    # Then the sender is told to retry
    assert response["statusCode"] == 503
    assert response["headers"]["Retry-After"] == "1"
    assert "retry" in answer(response)["error"]


def test_the_caller_is_the_iam_principal_that_signed_the_request() -> None:
    # Given a request signed by a role, and an event with no authorizer
    request = function_url_request("{}")

    # Then the signer is found, and its absence is None
    assert caller_of(request) == SENDER
    assert caller_of({"body": "{}"}) is None
