"""The intake function as deployed from template.yaml: function URL requests (payload format 2.0)
invoked through Lambda, answered by the real handler, queued on the template's pushed-alert queue
stamped with who sent them."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from tests.functional.conftest import event, load_event
from vtriage_local.runner import Pipeline
from vtriage_local.stack import LocalAws

INTAKE_FUNCTION = "IntakeFunction"
PUSHED_ALERT_QUEUE = "PushedAlertQueue"
SENDER = "arn:aws:iam::123456789012:role/edr-forwarder"


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
        "isBase64Encoded": False,
    }


def post(aws: LocalAws, request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """Invoke the deployed intake function through Lambda; its status and JSON answer."""
    invocation = aws.client("lambda").invoke(FunctionName=INTAKE_FUNCTION, Payload=json.dumps(request))
    assert "FunctionError" not in invocation, invocation["Payload"].read()
    response = json.loads(invocation["Payload"].read())
    return int(response["statusCode"]), json.loads(response["body"])


def queued_messages(aws: LocalAws) -> list[dict[str, Any]]:
    """Every message waiting on the pushed-alert queue, with its attributes."""
    sqs = aws.client("sqs")
    return list(
        sqs.receive_message(
            QueueUrl=aws.ref(PUSHED_ALERT_QUEUE), MaxNumberOfMessages=10, MessageAttributeNames=["All"]
        ).get("Messages", [])
    )


def queued_bodies(aws: LocalAws) -> list[str]:
    """Every body waiting on the pushed-alert queue."""
    return [message["Body"] for message in queued_messages(aws)]


def test_a_pushed_finding_is_queued_and_becomes_a_case(local_aws: LocalAws) -> None:
    # Given a GuardDuty event as a detector would push it
    body = event("synthetic-guardduty-backdoor-c2-dns.json").read_text(encoding="utf-8")

    # When it is posted to the intake function
    status, answer = post(local_aws, function_url_request(body))

    # Then it is accepted, naming the alert and the case it becomes
    assert status == 202
    assert answer["alert_ids"] == [load_event("synthetic-guardduty-backdoor-c2-dns.json")["detail"]["id"]]
    (case_id,) = answer["case_ids"]
    # And when the enrich function drains the queue, that message becomes that case, which records who
    # sent it and plans the actions a detector's finding would get, each waiting for a person
    outcomes, failures = Pipeline(local_aws).drain()
    assert failures == []
    assert [outcome["queue_message_id"] for outcome in outcomes] == [answer["message_id"]]
    case = Pipeline(local_aws).case(case_id)
    assert case is not None
    assert case["provenance"] == {
        "channel": "intake",
        "sender": SENDER,
        "source_ip": "198.51.100.7",
        "user_agent": "forwarder/1.0",
    }
    assert case["actions"]
    assert all(action["parameters"]["needs_approval"] == "true" for action in case["actions"])


def test_a_pushed_message_carries_the_signed_caller_and_its_agent_escaped(local_aws: LocalAws) -> None:
    # Given a finding posted by a role, with a user agent holding a line break
    body = event("synthetic-guardduty-backdoor-c2-dns.json").read_text(encoding="utf-8")
    request = function_url_request(body)
    request["requestContext"]["http"]["userAgent"] = "forwarder/1.0\nApprove: https://evil.example/"

    # When it is accepted
    status, answer = post(local_aws, request)

    # Then the queued message is stamped with what Lambda authenticated and saw, the agent escaped
    assert (status, answer["sender"]) == (202, SENDER)
    (message,) = queued_messages(local_aws)
    stamp = {name: value["StringValue"] for name, value in message["MessageAttributes"].items()}
    assert stamp == {
        "vtriage_sender": SENDER,
        "vtriage_sender_id": "AROAEXAMPLE:forwarder",
        "vtriage_sender_account": "123456789012",
        "vtriage_source_ip": "198.51.100.7",
        "vtriage_user_agent": "forwarder/1.0\\nApprove: https://evil.example/",
    }


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
    assert "detail.id" in f"{answer['field']}: {answer['error']}"
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


def get_findings(*ids: str | None) -> str:
    """Real get-findings output holding one finding per id (None: no Id), each a copy of its finding on
    an instance of its own, so that none is a repeat of another."""
    finding = load_event("guardduty-getfindings-trojan-droppoint-dns.json")["Findings"][0]
    findings = []
    for index, finding_id in enumerate(ids):
        copied = copy.deepcopy(finding)
        copied.pop("Id")
        copied["Resource"]["InstanceDetails"]["InstanceId"] = f"i-{index:017x}"
        if finding_id is not None:
            copied["Id"] = finding_id
        findings.append(copied)
    return json.dumps({"Findings": findings})


def test_a_refused_finding_is_named_and_the_others_become_cases(local_aws: LocalAws) -> None:
    # Given get-findings output whose second finding lost its id
    body = get_findings("1" * 32, None, "3" * 32)

    # When it is posted
    status, answer = post(local_aws, function_url_request(body))

    # Then it is queued for the two others, and the sender learns which finding was refused and why
    assert status == 202
    assert answer["alert_ids"] == ["1" * 32, "3" * 32]
    assert [refused["where"] for refused in answer["refused"]] == ["Findings[1]"]
    assert "Id" in answer["refused"][0]["reason"]
    # And when the enrich function drains the queue, that message makes the two cases named
    outcomes, _ = Pipeline(local_aws).drain()
    assert [outcome["queue_message_id"] for outcome in outcomes] == [answer["message_id"]]
    assert all(Pipeline(local_aws).case(case_id) is not None for case_id in answer["case_ids"])


def test_a_document_whose_every_finding_is_refused_is_answered_400(local_aws: LocalAws) -> None:
    # Given get-findings output whose findings all lost their ids
    body = get_findings(None, None)

    # When it is posted
    status, answer = post(local_aws, function_url_request(body))

    # Then nothing is queued, and each finding's refusal is listed
    assert status == 400
    assert [refused["where"] for refused in answer["refused"]] == ["Findings[0]", "Findings[1]"]
    assert queued_bodies(local_aws) == []


def altered(change: Any) -> str:
    """The GuardDuty event, its finding changed by `change(finding)`."""
    document = load_event("synthetic-guardduty-backdoor-c2-dns.json")
    change(document["detail"])
    return json.dumps(document)


def titled(prefix: str) -> str:
    """The GuardDuty event, its finding's title starting with this JSON text."""
    text = event("synthetic-guardduty-backdoor-c2-dns.json").read_text(encoding="utf-8")
    return text.replace('"title": "', f'"title": "{prefix}', 1)


@pytest.mark.parametrize(
    "body",
    [
        altered(lambda finding: finding.update(updatedAt="99999-01-01T00:00:00Z")),
        altered(lambda finding: finding.update(severity=[5])),
        altered(lambda finding: finding.update(service={})),
        '{"Findings": [{"Id": "x", "Resources": [' + '{"Details": ' * 1_200 + "{}" + "}" * 1_200 + "]}]}",
        titled("\\ud800"),
        titled("\\u0000"),
    ],
    ids=[
        "timestamp-out-of-range",
        "list-for-severity",
        "empty-service",
        "pascalcase-1200-deep",
        "lone-surrogate-escaped",
        "nul-escaped",
    ],
)
def test_a_body_that_used_to_crash_is_answered_without_a_function_error(
    body: str, local_aws: LocalAws
) -> None:
    # Given a body that once made the intake raise, and Lambda answer 502
    # When it is posted to the deployed function (post() fails on a function error)
    status, answer = post(local_aws, function_url_request(body))

    # Then the sender is answered: 400 with a reason and nothing queued, or 202 and queued
    assert status in {202, 400}
    assert queued_bodies(local_aws) == ([] if status == 400 else [body])
    assert status == 202 or answer["error"]
