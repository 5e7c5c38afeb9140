"""The intake function as deployed from template.yaml: function URL requests (payload format 2.0)
invoked through Lambda, answered by the real handler, queued on the template's alert queue."""

from __future__ import annotations

import json
from typing import Any

from tests.functional.conftest import event, load_event
from vtriage_local.runner import Pipeline
from vtriage_local.stack import LocalAws

INTAKE_FUNCTION = "IntakeFunction"
ALERT_QUEUE = "AlertQueue"


def function_url_request(body: str, method: str = "POST") -> dict[str, Any]:
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
                    "userArn": "arn:aws:iam::123456789012:role/edr-forwarder",
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
        "isBase64Encoded": False,
    }


def post(aws: LocalAws, request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """Invoke the deployed intake function through Lambda; its status and JSON answer."""
    invocation = aws.client("lambda").invoke(FunctionName=INTAKE_FUNCTION, Payload=json.dumps(request))
    assert "FunctionError" not in invocation, invocation["Payload"].read()
    response = json.loads(invocation["Payload"].read())
    return int(response["statusCode"]), json.loads(response["body"])


def queued_bodies(aws: LocalAws) -> list[str]:
    """Every body waiting on the alert queue."""
    sqs = aws.client("sqs")
    messages = sqs.receive_message(QueueUrl=aws.ref(ALERT_QUEUE), MaxNumberOfMessages=10).get("Messages", [])
    return [message["Body"] for message in messages]


def test_a_pushed_finding_is_queued_and_becomes_a_case(local_aws: LocalAws) -> None:
    # Given a GuardDuty event as a detector would push it
    body = event("synthetic-guardduty-backdoor-c2-dns.json").read_text(encoding="utf-8")

    # When it is posted to the intake function
    status, answer = post(local_aws, function_url_request(body))

    # Then it is accepted, naming the alert and the case it becomes
    assert status == 202
    assert answer["alert_ids"] == [load_event("synthetic-guardduty-backdoor-c2-dns.json")["detail"]["id"]]
    (case_id,) = answer["case_ids"]
    # And when the enrich function drains the queue, that message becomes that case
    outcomes, failures = Pipeline(local_aws).drain()
    assert failures == []
    assert [outcome["queue_message_id"] for outcome in outcomes] == [answer["message_id"]]
    assert Pipeline(local_aws).case(case_id) is not None


def test_a_pushed_body_reaches_the_queue_byte_for_byte(local_aws: LocalAws) -> None:
    # Given get-findings output, formatted as the CLI prints it
    body = event("guardduty-getfindings-trojan-droppoint-dns.json").read_text(encoding="utf-8")

    # When it is posted
    status, answer = post(local_aws, function_url_request(body))

    # Then the queue holds exactly what was sent
    assert status == 202
    assert queued_bodies(local_aws) == [body]
    assert answer["message_id"]


def test_a_finding_missing_a_field_is_refused_and_nothing_is_queued(local_aws: LocalAws) -> None:
    # Given a GuardDuty event whose finding lost its id
    document = load_event("synthetic-guardduty-backdoor-c2-dns.json")
    del document["detail"]["id"]

    # When it is posted
    status, answer = post(local_aws, function_url_request(json.dumps(document)))

    # Then the sender is told which field, and the queue stays empty
    assert status == 400
    assert answer["field"] == "detail.id"
    assert answer["error"]
    assert queued_bodies(local_aws) == []


def test_a_body_that_is_not_json_is_refused(local_aws: LocalAws) -> None:
    # Given a truncated body
    body = event("synthetic-guardduty-backdoor-c2-dns.json").read_text(encoding="utf-8")[:200]

    # When it is posted
    status, answer = post(local_aws, function_url_request(body))

    # Then it is refused as not JSON
    assert status == 400
    assert answer["field"] == "body"
    assert "not JSON" in answer["error"]
    assert queued_bodies(local_aws) == []


def test_a_body_larger_than_a_queue_message_is_refused_as_too_large(local_aws: LocalAws) -> None:
    # Given a valid event padded past 256 KiB (EventBridge's and the queue's default limit)
    document = load_event("synthetic-guardduty-backdoor-c2-dns.json")
    document["detail"]["description"] = "x" * 262_144

    # When it is posted
    status, answer = post(local_aws, function_url_request(json.dumps(document)))

    # Then it is refused with 413, and nothing is queued
    assert status == 413
    assert answer["field"] == "body"
    assert queued_bodies(local_aws) == []


def test_a_get_is_refused_with_405(local_aws: LocalAws) -> None:
    # Given a GET to the intake URL
    request = function_url_request("", method="GET")

    # When it arrives
    status, answer = post(local_aws, request)

    # Then it is refused, and nothing is queued
    assert status == 405
    assert "POST" in answer["error"]
    assert queued_bodies(local_aws) == []
