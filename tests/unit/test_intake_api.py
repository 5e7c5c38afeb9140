"""Pushed alerts: what a sender gets back for each kind of request, and what reaches the queue."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import pytest

from vtriage.config.intake import DEFAULT_INTAKE_MAX_MESSAGE_BYTES
from vtriage.fakes import FakeAlertQueue
from vtriage.intake import IntakeOptions, IntakeResult
from vtriage.intake.body import decode_body
from vtriage.intake_api import AlertRejectedError, accept_alert, function_url_response
from vtriage.provenance import caller_stamp, provenance_of

EVENTS = Path(__file__).resolve().parents[2] / "events"
FINDING = EVENTS / "guardduty-ec2-canary-outbound-ssh.json"
GET_FINDINGS = EVENTS / "guardduty-getfindings-trojan-droppoint-dns.json"
SECURITY_HUB_GUARDDUTY = EVENTS / "synthetic-securityhub-guardduty-product.json"
SECURITY_HUB_THREAT_INTEL = EVENTS / "synthetic-securityhub-threat-intel.json"
SENDER = "arn:aws:iam::123456789012:role/edr-forwarder"
# As the template deploys the enrich function: GuardDuty findings seen through Security Hub are skipped.
OPTIONS = IntakeOptions(skip_guardduty_in_securityhub=True)


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


def respond(
    request: dict[str, Any],
    queue: FakeAlertQueue,
    max_message_bytes: int = DEFAULT_INTAKE_MAX_MESSAGE_BYTES,
    options: IntakeOptions = OPTIONS,
) -> dict[str, Any]:
    """The intake's response to a request, reading bodies as the deployed enrich function does."""
    return function_url_response(request, queue, options=options, max_message_bytes=max_message_bytes)


def read(body: str) -> IntakeResult:
    """What the enrich function makes of a body."""
    return OPTIONS.read(decode_body(body))


def get_findings(*findings: dict[str, Any]) -> str:
    """GuardDuty get-findings output holding these findings."""
    return json.dumps({"Findings": list(findings)})


def getfindings_finding(finding_id: str) -> dict[str, Any]:
    """The real get-findings finding, under another id."""
    document = json.loads(GET_FINDINGS.read_text(encoding="utf-8"))
    finding: dict[str, Any] = copy.deepcopy(document["Findings"][0])
    finding["Id"] = finding_id
    return finding


# ---------------------------------------------------------------- accepted


def test_a_valid_finding_is_queued_unchanged_and_the_sender_learns_its_ids() -> None:
    # Given a GuardDuty finding exactly as a detector pushes it
    body = FINDING.read_text(encoding="utf-8")
    queue = FakeAlertQueue()

    # When it is posted
    response = respond(function_url_request(body), queue)

    # Then it is accepted, and the very bytes sent are on the queue
    assert response["statusCode"] == 202
    assert response["headers"]["Content-Type"] == "application/json"
    assert queue.bodies == [body]
    # And the answer names the message, the alert and the case it will become, and nothing refused
    (alert,) = read(body).alerts
    assert alert.id == json.loads(body)["id"]
    assert answer(response) == {
        "message_id": "message-1",
        "sender": SENDER,
        "alert_ids": [alert.id],
        "case_ids": [alert.case_id],
        "refused": [],
        "ignored": [],
    }


def test_get_findings_output_with_several_findings_is_one_message_naming_every_alert() -> None:
    # Given get-findings output holding two findings
    document = json.loads(GET_FINDINGS.read_text(encoding="utf-8"))
    second = copy.deepcopy(document["Findings"][0])
    second["Id"] = "1" * 32
    document["Findings"].append(second)
    queue = FakeAlertQueue()

    # When it is posted
    response = respond(function_url_request(json.dumps(document)), queue)

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
    response = respond(function_url_request(encoded, base64_encoded=True), queue)

    # Then the decoded text is what is queued
    assert response["statusCode"] == 202
    assert queue.bodies == [body]


def test_a_body_exactly_at_the_size_limit_is_accepted() -> None:
    # Given a body whose UTF-8 size is the limit
    body = FINDING.read_text(encoding="utf-8")
    queue = FakeAlertQueue()

    # When it is checked against a limit of exactly its size
    accepted = accept_alert(
        body, queue, options=OPTIONS, stamp={}, max_message_bytes=len(body.encode("utf-8"))
    )

    # Then it is queued
    assert accepted.message_id == "message-1"
    assert queue.bodies == [body]


def test_a_finding_refused_alone_is_named_and_the_others_are_queued() -> None:
    # Given get-findings output in which the second of three findings lost its id
    broken = getfindings_finding("2" * 32)
    del broken["Id"]
    body = get_findings(getfindings_finding("1" * 32), broken, getfindings_finding("3" * 32))
    queue = FakeAlertQueue()

    # When it is posted
    response = respond(function_url_request(body), queue)

    # Then the document is queued for the two others, and the sender learns which finding was refused, why
    assert response["statusCode"] == 202
    assert queue.bodies == [body]
    assert answer(response)["alert_ids"] == ["1" * 32, "3" * 32]
    (refused,) = answer(response)["refused"]
    assert refused["where"] == "Findings[1]"
    assert "Id" in refused["reason"]
    assert set(refused) == {"where", "reason"}


def test_ignored_findings_are_named_and_the_document_is_queued() -> None:
    # Given a Security Hub event holding a GuardDuty finding (which reaches the queue on its own rule)
    # and a finding of another product
    event = json.loads(SECURITY_HUB_GUARDDUTY.read_text(encoding="utf-8"))
    other = json.loads(SECURITY_HUB_THREAT_INTEL.read_text(encoding="utf-8"))["detail"]["findings"][0]
    event["detail"]["findings"].append(other)
    body = json.dumps(event)
    queue = FakeAlertQueue()

    # When it is posted
    response = respond(function_url_request(body), queue)

    # Then it is queued, the other product's finding is an alert, and the GuardDuty one is named as
    # ignored, with its id and why
    assert response["statusCode"] == 202
    assert queue.bodies == [body]
    assert answer(response)["alert_ids"] == [other["Id"]]
    (ignored,) = answer(response)["ignored"]
    assert ignored["where"] == "detail.findings[0]"
    assert ignored["alert_id"] == event["detail"]["findings"][0]["Id"]
    assert ignored["reason"]
    assert answer(response)["refused"] == []


# ---------------------------------------------------------------- rejected: nothing is queued


def test_a_finding_without_its_id_is_refused_naming_the_field() -> None:
    # Given a finding that lost its id
    document = json.loads(FINDING.read_text(encoding="utf-8"))
    del document["id"]
    queue = FakeAlertQueue()

    # When it is posted
    response = respond(function_url_request(json.dumps(document)), queue)

    # Then it is refused naming the field at fault, and nothing is queued
    assert response["statusCode"] == 400
    assert "id" in f"{answer(response)['field']}: {answer(response)['error']}"
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
        ("[" * 100_000 + "]" * 100_000, "body", "nested deeper"),
    ],
    ids=["truncated", "empty", "blank", "unknown-object", "list", "deeply-nested"],
)
def test_a_body_that_is_not_an_alert_is_refused_with_a_reason(
    body: str, field: str | None, words: str
) -> None:
    # Given a body that cannot become an alert
    queue = FakeAlertQueue()

    # When it is posted
    response = respond(function_url_request(body), queue)

    # Then the sender is told why, naming the field where there is one, and nothing is queued
    assert response["statusCode"] == 400
    assert answer(response)["field"] == field
    assert words in answer(response)["error"]
    assert queue.bodies == []


def test_a_document_whose_every_finding_is_refused_is_refused_with_each_reason() -> None:
    # Given get-findings output whose two findings both lost their ids
    first, second = getfindings_finding("1" * 32), getfindings_finding("2" * 32)
    del first["Id"], second["Id"]
    queue = FakeAlertQueue()

    # When it is posted
    response = respond(function_url_request(get_findings(first, second)), queue)

    # Then nothing is queued (the enrich function would refuse every finding), and each one's refusal is
    # listed
    assert response["statusCode"] == 400
    assert queue.bodies == []
    refused = answer(response)["refused"]
    assert [item["where"] for item in refused] == ["Findings[0]", "Findings[1]"]
    assert all("Id" in item["reason"] for item in refused)
    assert "2" in answer(response)["error"]


def test_a_get_findings_page_with_no_finding_is_accepted_as_ignored_saying_so() -> None:
    # Given get-findings output that found nothing (a poller's empty page: no fault of its sender)
    queue = FakeAlertQueue()

    # When it is posted
    response = respond(function_url_request(get_findings()), queue)

    # Then it is accepted as the enrich function reads it: no alert, nothing refused, the page ignored
    # with the reason (as an empty page of Falcon's Alerts API or Alert Center's alerts.list)
    assert response["statusCode"] == 202
    assert (answer(response)["alert_ids"], answer(response)["refused"]) == ([], [])
    (ignored,) = answer(response)["ignored"]
    assert (ignored["where"], ignored["reason"]) == (
        "Findings",
        "Findings is empty: a page of get-findings with no finding, nothing to triage",
    )


def _nested(depth: int) -> str:
    """A Security Hub get-findings body whose one finding nests `depth` PascalCase objects deep."""
    return '{"Findings": [{"Id": "x", "Resources": [' + '{"Details": ' * depth + "{}" + "}" * depth + "]}]}"


def _with_title(prefix: str) -> str:
    """The GuardDuty finding, its title starting with this JSON text."""
    return FINDING.read_text(encoding="utf-8").replace('"title": "', f'"title": "{prefix}', 1)


def _altered(change: Any) -> str:
    """The GuardDuty finding, changed by `change(document)`."""
    document = json.loads(FINDING.read_text(encoding="utf-8"))
    change(document)
    return json.dumps(document)


@pytest.mark.parametrize(
    "body",
    [
        _altered(lambda d: d.update(updatedAt="99999-01-01T00:00:00Z")),
        _altered(lambda d: d.update(createdAt=10**30)),
        _altered(lambda d: d.update(severity=[5])),
        _altered(lambda d: d["service"].update(count=[1, 2])),
        _altered(lambda d: d.update(service={})),
        _altered(lambda d: d.update(resource={"resourceType": "Instance", "instanceDetails": {}})),
        _nested(1_200),
        _with_title("\\ud800"),
        _with_title("\\u0000"),
    ],
    ids=[
        "timestamp-out-of-range",
        "timestamp-overflowing",
        "list-for-severity",
        "list-for-count",
        "empty-service",
        "empty-instance-details",
        "pascalcase-1200-deep",
        "lone-surrogate-escaped",
        "nul-escaped",
    ],
)
def test_a_body_that_used_to_crash_the_reader_is_answered_4xx_or_queued_never_5xx(body: str) -> None:
    # Given a body that once made the parsers raise (OverflowError, TypeError, AssertionError,
    # RecursionError) or whose escapes decode to characters SQS does not carry raw
    queue = FakeAlertQueue()

    # When it is posted
    response = respond(function_url_request(body), queue)

    # Then the sender is answered: 400 with a reason and nothing queued, or 202 and queued
    assert response["statusCode"] in {202, 400}
    if response["statusCode"] == 400:
        assert answer(response)["error"]
        assert queue.bodies == []
    else:
        assert queue.bodies == [body]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (_nested(1_200), "nested deeper than 64"),
        (_with_title("\ufffe"), "U+FFFE (a noncharacter)"),
    ],
    ids=["pascalcase-1200-deep", "raw-noncharacter"],
)
def test_a_body_no_part_of_the_pipeline_can_carry_is_refused_saying_why(body: str, words: str) -> None:
    # Given a body nested too deeply, or whose text holds a character SQS does not carry
    queue = FakeAlertQueue()

    # When it is posted
    response = respond(function_url_request(body), queue)

    # Then it is refused, saying what is wrong, and nothing is queued
    assert response["statusCode"] == 400
    assert words in answer(response)["error"]
    assert queue.bodies == []


@pytest.mark.parametrize(
    ("escape", "title_starts"),
    [("\\u001b[31m", "\x1b[31m"), ("\\u0000", "\x00"), ("\\ud800", "\ufffd"), ("\\uffff", "\ufffd")],
    ids=["esc", "nul", "lone-surrogate", "noncharacter"],
)
def test_an_escape_in_a_finding_costs_only_its_value_and_the_alert_is_queued(
    escape: str, title_starts: str
) -> None:
    # Given a finding whose title starts with an escape decoding to a character SQS does not carry raw
    queue = FakeAlertQueue()
    body = _with_title(escape)

    # When it is posted
    response = respond(function_url_request(body), queue)

    # Then it is queued as it came, and the finding is read: its title keeps a control character, and
    # has U+FFFD where UTF-8 could not encode the character
    assert response["statusCode"] == 202, answer(response)
    assert queue.bodies == [body]
    [alert] = OPTIONS.read(decode_body(body)).alerts
    assert alert.title.startswith(title_starts)


class ReaderWithAFault(IntakeOptions):
    """The deployment's reading, with a fault no test has found yet: every body makes a parser raise."""

    def read(self, document: Any) -> IntakeResult:
        """Raise as a parser meeting an unforeseen value would."""
        raise OverflowError("date value out of range")


def test_an_unexpected_error_while_reading_a_body_is_the_body_s_400_naming_the_error() -> None:
    # Given a reader that fails on a body in a way nobody foresaw
    queue = FakeAlertQueue()
    request = function_url_request(FINDING.read_text(encoding="utf-8"))

    # When a body is posted
    response = respond(request, queue, options=ReaderWithAFault())

    # Then the sender gets 400 naming the error (not 502, which would ask for a retry that cannot help),
    # and nothing is queued
    assert response["statusCode"] == 400
    assert answer(response)["field"] == "body"
    assert "OverflowError" in answer(response)["error"]
    assert "date value out of range" in answer(response)["error"]
    assert queue.bodies == []


def test_a_request_without_a_body_is_refused() -> None:
    # Given a POST with no body at all
    queue = FakeAlertQueue()

    # When it arrives
    response = respond(function_url_request(None), queue)

    # Then it is refused
    assert response["statusCode"] == 400
    assert answer(response) == {
        "error": "the body is empty: send one alert document as JSON",
        "field": "body",
        "refused": [],
    }
    assert queue.bodies == []


def test_an_sqs_event_posted_whole_is_refused_naming_its_records() -> None:
    # Given an SQS event (a batch of records) rather than one alert
    body = json.dumps({"Records": [{"body": FINDING.read_text(encoding="utf-8")}]})
    queue = FakeAlertQueue()

    # When it is posted
    response = respond(function_url_request(body), queue)

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
    response = respond(function_url_request(body), queue, max_message_bytes=limit)

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
        accept_alert(body, queue, options=OPTIONS, stamp={}, max_message_bytes=len(body))

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
    response = respond(function_url_request(body), queue)

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
    response = respond(function_url_request(encoded, base64_encoded=True), queue)

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
    response = respond(request, queue)

    # Then it is refused with 405, saying POST is the one to use
    assert response["statusCode"] == 405
    assert response["headers"]["Allow"] == "POST"
    assert method in answer(response)["error"]
    assert queue.bodies == []


def test_a_direct_invocation_that_is_not_an_http_request_is_refused() -> None:
    # Given an event that did not come through the function URL (a plain Invoke)
    queue = FakeAlertQueue()

    # When the intake answers it
    response = respond(json.loads(FINDING.read_text(encoding="utf-8")), queue)

    # Then nothing is queued
    assert response["statusCode"] == 405
    assert queue.bodies == []


def test_a_busy_queue_gives_503_so_the_sender_retries() -> None:
    # Given a queue that is throttling
    queue = FakeAlertQueue(unavailable=True)

    # When a valid finding is posted
    response = respond(function_url_request(FINDING.read_text(encoding="utf-8")), queue)

    # Then the sender is told to retry
    assert response["statusCode"] == 503
    assert response["headers"]["Retry-After"] == "1"
    assert "retry" in answer(response)["error"]


def test_a_queued_alert_is_stamped_with_the_signed_caller_its_address_and_its_agent() -> None:
    # Given a finding pushed by a role (the function URL's IAM auth names it in the event)
    queue = FakeAlertQueue()

    # When it is accepted
    response = respond(function_url_request(FINDING.read_text(encoding="utf-8")), queue)

    # Then the message carries who sent it, from where and with what, and the sender is told who it was
    assert response["statusCode"] == 202
    assert queue.attributes == [
        {
            "vtriage_sender": SENDER,
            "vtriage_sender_id": "AROAEXAMPLE:forwarder",
            "vtriage_sender_account": "123456789012",
            "vtriage_source_ip": "198.51.100.7",
            "vtriage_user_agent": "forwarder/1.0",
        }
    ]
    assert answer(response)["sender"] == SENDER
    # And the enrich function, reading that stamp on the intake's queue, records the same sender
    provenance = provenance_of("intake", queue.attributes[0])
    assert (provenance.sender, provenance.source_ip, provenance.user_agent) == (
        SENDER,
        "198.51.100.7",
        "forwarder/1.0",
    )


def test_a_user_agent_with_line_breaks_is_stamped_escaped_and_cut() -> None:
    # Given a request whose user agent (the sender's to choose) holds a line break and goes on and on
    request = function_url_request("{}")
    request["requestContext"]["http"]["userAgent"] = "x\nApprove: https://evil.example/" + "a" * 500

    # When its stamp is taken
    stamp = caller_stamp(request)

    # Then the line break is escaped, and the value cut
    assert "\n" not in stamp["vtriage_user_agent"]
    assert stamp["vtriage_user_agent"].startswith("x\\nApprove:")
    assert len(stamp["vtriage_user_agent"]) <= 203


def test_a_request_without_an_authorizer_is_stamped_with_what_it_has() -> None:
    # Given an event with neither authorizer nor HTTP context
    stamp = caller_stamp({"body": "{}"})

    # Then no attribute is invented (SQS refuses empty ones), and the provenance says the sender is unknown
    assert stamp == {}
    assert provenance_of("intake", stamp).described == "the intake URL, signed by an unknown sender"


def test_a_stamp_is_believed_only_on_the_intake_queue() -> None:
    # Given the stamp of a real push
    stamp = caller_stamp(function_url_request("{}"))

    # When the same attributes arrive on a record of the detector rules' queue, or of another queue
    # Then they are not read: the channel says where the record came from, and nobody is named
    assert provenance_of("detector", stamp).sender is None
    assert provenance_of("queue", stamp).sender is None
