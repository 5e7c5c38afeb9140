"""What a new user's trial found lost or misread, run as the user ran it: `vtriage run --json` on the real
documents, through the whole local pipeline. A Falcon Cloud Security detection from the stream is a case a
person gets, never acted on in AWS; an ASFF finding without its account is Security Hub's, on its
instance; a GuardDuty fan-out through SNS is triaged, and a notification holding no alert is refused
saying what and where; a Malware Protection for S3 scan result's detail alone is a case on its object,
never acted on."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pytest

from vtriage_cli.main import main as vtriage

pytestmark = pytest.mark.functional

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
CLOUD_STREAM = CORPUS / "elastic-integrations__crowdstrike_falcon_test-falcon-cspmioa-streaming.json"
NO_ACCOUNT = CORPUS / "defectdojo__awssecurityhub_missing_account_id.json"
NOTIFICATION = CORPUS / "synthetic-sns-notification-guardduty-event.json"
SCAN_DETAIL_ALONE = CORPUS / "polar__file_test_tasks_build_scan_result.json"
S3_SCAN_EVENT = (
    Path(__file__).resolve().parents[2] / "events" / "synthetic-guardduty-malware-s3-object-scan.json"
)


def run_json(*paths: Path) -> tuple[int, dict[str, Any]]:
    """`vtriage run --json FILES`, as a user types it: its exit status and its JSON document."""
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(io.StringIO()):
        status = vtriage(["run", "--json", *map(str, paths)])
    return status, json.loads(stdout.getvalue())


def test_a_falcon_cloud_detection_from_the_stream_is_a_case_a_person_gets_and_nothing_runs_in_aws() -> None:
    # Given Elastic's CSPMIOAStreamingEvent: an IAM user terminated an EC2 instance (High)
    # When a user runs it through the local pipeline
    status, document = run_json(CLOUD_STREAM)

    # Then it is a case, nothing ignored: High, its caller's address looked up, a ticket for a person
    assert status == 0
    assert (document["ignored"], document["failures"], document["pending"]) == ([], [], [])
    [case] = document["cases"]
    assert (case["source"], case["severity"], case["severity_label"]) == ("falcon", 7, "high")
    assert case["title"] == "EC2 instance manually deleted by IAM user (Impact: Data Destruction)"
    assert [(ioc["type"], ioc["value"]) for ioc in case["iocs"] if ioc["skipped_reason"] is None] == [
        ("ip", "81.2.69.144")
    ]
    assert case["ticket"] is not None
    assert case["execution_status"] == "SUCCEEDED"
    # And no AWS action is planned: the case names the AWS account in a note, and says why
    assert case["actions"] == []
    assert "a CrowdStrike Falcon alert names no AWS account or Region" in " ".join(case["not_actionable"])
    assert any("account 'XXXXXXXXXXXX'" in note for note in case["notes"])
    assert case["vendor"]["user"] == "cs_internal_service_acct"


def test_an_asff_finding_without_its_account_is_a_security_hub_case_on_its_instance() -> None:
    # Given DefectDojo's {"findings": [...]}: one Inspector finding (MEDIUM, on i-1234xxyy) without its
    # AwsAccountId
    # When a user runs it
    status, document = run_json(NO_ACCOUNT)

    # Then it is a Security Hub case on its instance, MEDIUM, only the missing account said, never acted on
    assert status == 0
    [case] = document["cases"]
    assert (case["source"], case["severity_label"]) == ("securityhub", "medium")
    assert [resource["id"] for resource in case["resources"]] == ["i-1234xxyy"]
    assert case["notes"] == ["findings[0].AwsAccountId: missing; 'unknown' stands in"]
    assert "findings[0].AwsAccountId: missing" in case["not_actionable"]
    assert case["actions"] == []


def test_a_guardduty_fan_out_through_sns_is_triaged_and_a_notification_without_an_alert_refused(
    tmp_path: Path,
) -> None:
    # Given what an SQS queue subscribed to an SNS topic receives without raw message delivery: the
    # real GuardDuty event's notification, and a notification whose Message is a text, not the event
    notification = NOTIFICATION.read_text()
    text = json.loads(notification) | {"Message": "EC2 instance i-0a1b2c3d4e5f67890 is querying a C&C domain"}
    event = {
        "Records": [
            {"messageId": "fan-out-1", "body": notification},
            {"messageId": "fan-out-2", "body": json.dumps(text)},
        ]
    }
    path = tmp_path / "sqs-event.json"
    path.write_text(json.dumps(event))

    # When a user runs the queue's records
    status, document = run_json(path)

    # Then the event is triaged as GuardDuty's own (the DNS request's domain looked up, on its instance),
    # the envelope noted
    [case] = document["cases"]
    assert (case["source"], case["alert_id"]) == ("guardduty", "92b49806f26831e4f3895e2f4cd97a52")
    assert [ioc["value"] for ioc in case["iocs"]] == ["xr7v2k9q.com"]
    assert case["notes"][0].startswith("read from the Message of an SNS notification")
    # And the other record is refused, naming its record, the field and what is wrong; the run says so
    [refused] = document["failures"]
    assert refused["message_id"] == "fan-out-2"
    assert refused["reason"].startswith("Message: not JSON (")
    assert "an SNS notification's Message must be the alert's JSON" in refused["reason"]
    assert status == 2


def test_a_scan_results_detail_alone_is_a_case_on_its_object_and_nothing_runs_even_when_malicious(
    tmp_path: Path,
) -> None:
    # Given what Polar's worker receives from Malware Protection for S3 (a scan result's detail alone, no
    # account, Region or time), and the detail alone of a scan result in the deployment's own account
    # whose object's MD5 VirusTotal knows as malicious
    malicious = tmp_path / "malicious-scan-detail.json"
    malicious.write_text(json.dumps(json.loads(S3_SCAN_EVENT.read_text())["detail"]))

    # When a user runs them
    status, document = run_json(SCAN_DETAIL_ALONE, malicious)

    # Then each is GuardDuty's case on the object it names, its eTag looked up, none refused
    assert status == 0
    assert (document["failures"], document["ignored"]) == ([], [])
    polar, found = document["cases"]
    assert (polar["source"], polar["alert_id"]) == (
        "guardduty",
        "arn:aws:s3:::polar-s3/e2e-artifacts/unknown.bin",
    )
    assert polar["title"] == (
        "Malware Protection for S3 found EICAR-Test-File (not a virus) in s3://polar-s3/e2e-artifacts/unknown.bin"
    )
    assert [(ioc["value"], ioc["found_at"]) for ioc in polar["iocs"]] == [
        ("e0b4e5c5f76b4564d8ee6bbcd6e0e6f2", "s3ObjectDetails.eTag")
    ]
    # And even the malicious one runs no action: without its event the account and Region are unknown,
    # and the case says so; a person gets the ticket
    assert found["verdict"] == "malicious"
    for case in (polar, found):
        assert (case["account"], case["region"]) == ("unknown", "unknown")
        assert (case["actions"], case["branch"], case["status"]) == ([], "ticket", "TICKETED")
        assert case["ticket"] is not None
        reasons = " ".join(case["not_actionable"])
        assert (
            "a Malware Protection for S3 scan result's detail alone, without its EventBridge event" in reasons
        )
        assert "the finding names account 'unknown', not this deployment's" in reasons
