"""`vtriage send FILE... --intake-url URL` against the template's intake function on moto.

moto serves no function URL, so a loopback server stands in for the part of Lambda in front of one
with IAM auth: it checks the request's SigV4 signature (service `lambda`, the caller's credentials) and
answers 403 itself when it fails, as Lambda does; otherwise it hands the real intake handler the
payload-2.0 event, naming the signer in `requestContext.authorizer.iam` as STS knows it."""

from __future__ import annotations

import io
import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.functional.conftest import event, load_event
from vtriage_cli.main import main as vtriage
from vtriage_local.stack import REGION, LocalAws

ALERT_QUEUE = "AlertQueue"
PUSHED_ALERT_QUEUE = "PushedAlertQueue"
_AUTHORIZATION = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)"
    r"/aws4_request, SignedHeaders=(?P<signed>[^,]+), Signature=(?P<signature>[0-9a-f]{64})$"
)


class FunctionUrl:
    """A function URL with IAM auth on loopback, in front of the stack's real intake handler."""

    def __init__(self, aws: LocalAws) -> None:
        self.aws = aws
        self.requests: list[dict[str, str]] = []
        identity = aws.client("sts").get_caller_identity()
        self.caller = {"arn": identity["Arn"], "user_id": identity["UserId"], "account": identity["Account"]}
        url = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status, headers, answer = url.answer(self.path, dict(self.headers.items()), body)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(answer.encode())

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FunctionUrl:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def answer(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], str]:
        """What Lambda answers: 403 for a request not signed by the caller's credentials, otherwise the
        intake handler's response."""
        self.requests.append(headers)
        if not self._signed_by_caller(path, headers, body):
            refusal = {"Message": "The request signature we calculated does not match the one you provided"}
            return 403, {"Content-Type": "application/json"}, json.dumps(refusal)
        response = self.aws.invoke("IntakeFunction", self._event(path, headers, body))
        return int(response["statusCode"]), dict(response.get("headers", {})), str(response["body"])

    def _signed_by_caller(self, path: str, headers: dict[str, str], body: bytes) -> bool:
        lowered = {name.lower(): value for name, value in headers.items()}
        match = _AUTHORIZATION.match(lowered.get("authorization", ""))
        if match is None or match["service"] != "lambda" or match["region"] != REGION:
            return False
        signed = match["signed"].split(";")
        request = AWSRequest(
            method="POST",
            url=f"http://{lowered['host']}{path}",
            data=body,
            headers={name: lowered[name] for name in signed if name != "host"},
        )
        request.context["timestamp"] = lowered["x-amz-date"]
        # The local stack's credentials, which the caller's AWS configuration holds in these tests.
        signer = SigV4Auth(Credentials("testing", "testing", "testing"), "lambda", REGION)
        canonical = signer.canonical_request(request)
        expected = signer.signature(signer.string_to_sign(request, canonical), request)
        return bool(match["key"] == "testing" and expected == match["signature"])

    def _event(self, path: str, headers: dict[str, str], body: bytes) -> dict[str, Any]:
        return {
            "version": "2.0",
            "routeKey": "$default",
            "rawPath": path,
            "rawQueryString": "",
            "headers": {name.lower(): value for name, value in headers.items()},
            "requestContext": {
                "accountId": self.caller["account"],
                "authorizer": {
                    "iam": {
                        "accessKey": "testing",
                        "accountId": self.caller["account"],
                        "callerId": self.caller["user_id"],
                        "userArn": self.caller["arn"],
                        "userId": self.caller["user_id"],
                    }
                },
                "http": {
                    "method": "POST",
                    "path": path,
                    "protocol": "HTTP/1.1",
                    "sourceIp": "127.0.0.1",
                    "userAgent": headers.get("User-Agent", ""),
                },
            },
            "body": body.decode("utf-8"),
            "isBase64Encoded": False,
        }


@pytest.fixture
def intake(local_aws: LocalAws) -> Iterator[FunctionUrl]:
    """The stack's intake function behind a loopback function URL with IAM auth."""
    with FunctionUrl(local_aws) as url:
        yield url


def queued(aws: LocalAws, queue: str) -> list[dict[str, Any]]:
    """Every message waiting on the queue, with its attributes."""
    sqs = aws.client("sqs")
    received = sqs.receive_message(
        QueueUrl=aws.ref(queue), MaxNumberOfMessages=10, MessageAttributeNames=["All"]
    )
    return list(received.get("Messages", []))


def queued_bodies(aws: LocalAws) -> list[str]:
    """Every body waiting on the pushed-alert queue."""
    return [message["Body"] for message in queued(aws, PUSHED_ALERT_QUEUE)]


def printed(out: str) -> str:
    """What `vtriage send` printed, without the intake handler's log lines: the stand-in runs the
    handler in this process, where its logger writes to the same stdout (in Lambda, to CloudWatch)."""
    return "".join(line for line in out.splitlines(keepends=True) if not line.startswith('{"level"'))


def send(capsys: pytest.CaptureFixture[str], *arguments: str) -> tuple[int, dict[str, Any]]:
    """Run `vtriage send ... --json`; its exit status and document."""
    status = vtriage(["send", *arguments, "--json"])
    out = printed(capsys.readouterr().out)
    return status, json.loads(out) if out else {}


def test_a_finding_file_is_pushed_through_the_intake_and_queued_unchanged_with_its_sender(
    local_aws: LocalAws, intake: FunctionUrl, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a GuardDuty event file
    path = event("synthetic-guardduty-backdoor-c2-dns.json")

    # When it is sent to the stack's intake URL
    status, document = send(capsys, str(path), "--intake-url", intake.url)

    # Then the request was signed for Lambda, and the intake queued the file byte for byte on the
    # pushed-alert queue, stamped with the signer; nothing reached the detector rules' queue
    assert status == 0
    (request,) = intake.requests
    assert request["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=testing/")
    (message,) = queued(local_aws, PUSHED_ALERT_QUEUE)
    assert message["Body"] == path.read_text(encoding="utf-8")
    assert message["MessageAttributes"]["vtriage_sender"]["StringValue"] == intake.caller["arn"]
    assert queued(local_aws, ALERT_QUEUE) == []
    # And the output names the alert, the message and who it was sent as
    (sent,) = document["sent"]
    assert sent["source_id"] == path.name
    assert sent["alert_ids"] == [load_event("synthetic-guardduty-backdoor-c2-dns.json")["detail"]["id"]]
    assert sent["message_id"] == message["MessageId"]
    assert sent["sender"] == intake.caller["arn"]
    assert document["rejected"] == []


def test_the_standard_input_is_sent_as_run_reads_it(
    local_aws: LocalAws,
    intake: FunctionUrl,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a GuardDuty event piped to the command, named `-` as `vtriage run -` takes it
    path = event("synthetic-guardduty-backdoor-c2-dns.json")
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(path.read_bytes())))

    # When it is sent
    status, document = send(capsys, "-", "--intake-url", intake.url)

    # Then the piped document is queued byte for byte, named stdin, as a file would be
    assert status == 0
    assert queued_bodies(local_aws) == [path.read_text(encoding="utf-8")]
    (sent,) = document["sent"]
    assert sent["source_id"] == "stdin"
    assert sent["alert_ids"] == [load_event("synthetic-guardduty-backdoor-c2-dns.json")["detail"]["id"]]


def test_an_sqs_event_file_pushes_each_record_body(
    local_aws: LocalAws, intake: FunctionUrl, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given an SQS event file, read as `vtriage run` reads it: one message per record
    path = event("sqs/synthetic-sqs-guardduty-backdoor-c2-dns.json")
    records = load_event("sqs/synthetic-sqs-guardduty-backdoor-c2-dns.json")["Records"]

    # When it is sent
    status, document = send(capsys, str(path), "--intake-url", intake.url)

    # Then each record's body is queued, named by its message id
    assert status == 0
    assert sorted(queued_bodies(local_aws)) == sorted(record["body"] for record in records)
    assert [sent["source_id"] for sent in document["sent"]] == [record["messageId"] for record in records]


def test_a_bad_file_is_reported_and_not_queued_while_the_good_one_is(
    local_aws: LocalAws, intake: FunctionUrl, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Given a good file and a finding that lost its id
    good = event("guardduty-ec2-canary-outbound-ssh.json")
    broken = load_event("guardduty-ec2-canary-outbound-ssh.json")
    del broken["id"]
    bad = tmp_path / "broken.json"
    bad.write_text(json.dumps(broken), encoding="utf-8")

    # When both are sent
    status, document = send(capsys, str(bad), str(good), "--intake-url", intake.url)

    # Then only the good one is queued, the bad one is reported with its field, and the status says so
    assert status == 2
    assert queued_bodies(local_aws) == [good.read_text(encoding="utf-8")]
    (rejected,) = document["rejected"]
    assert rejected["source_id"] == "broken.json"
    assert "id" in f"{rejected['field']}: {rejected['error']}"
    assert "missing" in rejected["error"]


def test_the_readable_output_says_what_was_sent_and_what_was_not(
    local_aws: LocalAws, intake: FunctionUrl, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Given a good file and one that is not JSON
    good = event("guardduty-ec2-canary-outbound-ssh.json")
    bad = tmp_path / "notes.txt"
    bad.write_text("the alert is in the ticket", encoding="utf-8")

    # When they are sent without --json
    status = vtriage(["send", str(good), str(bad), "--intake-url", intake.url])
    out = printed(capsys.readouterr().out)

    # Then one line says it was sent, and as whom, and one says why the other was not
    assert status == 2
    lines = out.splitlines()
    assert lines[0].startswith("sent")
    assert "16afba5c5c43e07c9e3e5e2e544e95df" in lines[0]
    assert intake.caller["arn"] in lines[0]
    assert lines[1].startswith("rejected")
    assert "notes.txt (body): not JSON" in lines[1]


def test_a_finding_refused_alone_is_named_and_the_status_says_so(
    local_aws: LocalAws, intake: FunctionUrl, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Given get-findings output whose second finding lost its id
    document = load_event("guardduty-getfindings-trojan-droppoint-dns.json")
    broken = json.loads(json.dumps(document["Findings"][0]))
    del broken["Id"]
    document["Findings"].append(broken)
    path = tmp_path / "get-findings.json"
    path.write_text(json.dumps(document), encoding="utf-8")

    # When it is sent
    status, output = send(capsys, str(path), "--intake-url", intake.url)

    # Then it is queued for the good finding, the refused one is named with its reason, and the status
    # says that not everything will become a case
    assert status == 2
    assert queued_bodies(local_aws) == [path.read_text(encoding="utf-8")]
    (sent,) = output["sent"]
    assert sent["alert_ids"] == [document["Findings"][0]["Id"]]
    assert [refused["where"] for refused in sent["refused"]] == ["Findings[1]"]
    assert output["rejected"] == []


def test_a_request_lambda_refuses_is_a_setup_error_naming_the_senders_policy(
    local_aws: LocalAws,
    intake: FunctionUrl,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given credentials that are not the caller's (a signature Lambda cannot match)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    good = event("guardduty-ec2-canary-outbound-ssh.json")

    # When a good file is sent
    status = vtriage(["send", str(good), "--intake-url", intake.url])

    # Then the command fails saying what to check, and nothing is queued
    assert status == 1
    error = capsys.readouterr().err
    assert "403" in error
    assert "AlertSendersPolicy" in error
    assert queued_bodies(local_aws) == []


def test_an_intake_url_that_does_not_answer_is_a_setup_error(
    local_aws: LocalAws, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given an intake URL where nothing listens
    with FunctionUrl(local_aws) as stopped:
        url = stopped.url

    # When a good file is sent there
    status = vtriage(["send", str(event("guardduty-ec2-canary-outbound-ssh.json")), "--intake-url", url])

    # Then the command fails naming the URL, and nothing is queued
    assert status == 1
    assert url in capsys.readouterr().err
    assert queued_bodies(local_aws) == []


def test_a_missing_file_is_a_usage_error(
    local_aws: LocalAws, intake: FunctionUrl, capsys: pytest.CaptureFixture[str]
) -> None:
    # When a file that does not exist is sent
    status = vtriage(["send", "no-such-alert.json", "--intake-url", intake.url])

    # Then nothing is queued and the file is named
    assert status == 1
    assert "no-such-alert.json" in capsys.readouterr().err
    assert queued_bodies(local_aws) == []


def test_a_file_that_is_not_utf8_text_is_refused_beside_a_good_one_that_is_queued(
    local_aws: LocalAws, intake: FunctionUrl, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Given a file saved as Latin-1, which SQS cannot carry, and a good file
    bad = tmp_path / "latin-1.json"
    bad.write_bytes('{"detail": "caf\u00e9"}'.encode("latin-1"))
    good = event("guardduty-ec2-canary-outbound-ssh.json")

    # When both are sent
    status, document = send(capsys, str(bad), str(good), "--intake-url", intake.url)

    # Then the bad one is refused saying where its text breaks, and only the good one is queued
    assert status == 2
    (rejected,) = document["rejected"]
    assert rejected["source_id"] == "latin-1.json"
    assert "not UTF-8" in rejected["error"]
    assert "offset 15" in rejected["error"]
    assert queued_bodies(local_aws) == [good.read_text(encoding="utf-8")]
