"""Security Hub intake: ASFF findings become Alerts, acknowledged ones none, and bad values are refused
naming the field."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from vtriage.errors import InvalidAlertError
from vtriage.intake import parse_alerts
from vtriage.models import Resource, ResourceType

EVENTS = Path(__file__).resolve().parents[2] / "events"
THREAT_INTEL = "synthetic-securityhub-threat-intel.json"
GUARDDUTY_PRODUCT = "synthetic-securityhub-guardduty-product.json"
COMPLIANCE = "securityhub-afsbp-ec2.7-ebs-default-encryption.json"
REMOTE_IP_KEY = "aws/guardduty/service/action/networkConnectionAction/remoteIpDetails/ipAddressV4"


def load(name: str) -> Any:
    return json.loads((EVENTS / name).read_text())


def finding_of(event: dict[str, Any]) -> dict[str, Any]:
    finding: dict[str, Any] = event["detail"]["findings"][0]
    return finding


def test_threat_intel_sample_reads_as_the_console_shows_it() -> None:
    # Given the threat-intelligence sample
    event = load(THREAT_INTEL)

    # When it is parsed
    [alert] = parse_alerts(event)

    # Then the alert's fields come from the ASFF finding
    assert alert.id == "threat-intel-matcher/2025-03-18/5d2b1c0e9f84"
    assert alert.source == "securityhub"
    assert alert.type == "TTPs/Command and Control/Backdoor"
    assert (alert.severity.score, alert.severity.label) == (7.0, "high")
    assert (alert.account, alert.region) == ("123456789012", "us-east-1")
    assert alert.version == "2025-03-18T15:04:01+00:00"
    # And the instance, named by ARN, is the resource, with its own addresses
    assert alert.resources == (
        Resource(
            type=ResourceType.INSTANCE,
            id="i-0b3f6c2d9e1a47c58",
            vpc_id="vpc-0d2e4f6a8b0c13579",
            network_interface_ids=("eni-0f4a2b7c9d1e3a865",),
            addresses=("10.0.1.25", "54.210.17.33"),
        ),
    )
    # And each IOC says where it was found; the MUTEX indicator is no IOC
    assert [ioc.found_at for ioc in alert.iocs] == [
        "ThreatIntelIndicators[0].Value",
        "ThreatIntelIndicators[1].Value",
        "ThreatIntelIndicators[2].Value",
        "Network.SourceIpV4",
    ]


def test_the_instances_own_public_address_in_network_is_skipped_as_its_own() -> None:
    # Given a finding whose network source is the instance's own public address
    event = load(THREAT_INTEL)
    finding_of(event)["Network"]["SourceIpV4"] = "54.210.17.33"

    # When it is parsed
    [alert] = parse_alerts(event)

    # Then the address is kept but never looked up
    own = [ioc for ioc in alert.iocs if ioc.value == "54.210.17.33"]
    assert [ioc.skipped_reason for ioc in own] == ["address of the alert's own resource"]


def test_guardduty_product_fields_give_the_remote_address_not_the_local_one() -> None:
    # Given GuardDuty's finding as Security Hub imports it
    [alert] = parse_alerts(load(GUARDDUTY_PRODUCT))

    # Then the remote IP comes from ProductFields and the local IP is not an IOC
    assert [(ioc.value, ioc.found_at) for ioc in alert.iocs] == [
        ("23.129.64.215", f"ProductFields.{REMOTE_IP_KEY}")
    ]
    assert (alert.severity.score, alert.severity.label) == (2.0, "low")


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("aws/guardduty/service/action/dnsRequestAction/domain", "Tawuhoju.COM", ("domain", "tawuhoju.com")),
        (
            "aws/guardduty/service/action/awsApiCallAction/domainDetails/domain",
            "3322.org",
            ("domain", "3322.org"),
        ),
        (
            "aws/guardduty/service/action/portProbeAction/portProbeDetails.0_/remoteIpDetails/ipAddressV4",
            "23.129.64.215",
            ("ip", "23.129.64.215"),
        ),
        ("action/awsApiCallAction/remoteIpDetails/ipAddressV4", "23.129.64.215", ("ip", "23.129.64.215")),
        (
            "aws/guardduty/service/evidence/threatIntelligenceDetails.0_/threatFileSha256",
            "4BC00F7D638E042DA764E8648C03C0DB46700599DD4F08D117E3E9E8B538519B",
            ("file", "4bc00f7d638e042da764e8648c03c0db46700599dd4f08d117e3e9e8b538519b"),
        ),
        (
            "aws/guardduty/service/runtimeDetails/process/executableSha256",
            "4bc00f7d638e042da764e8648c03c0db46700599dd4f08d117e3e9e8b538519b",
            ("file", "4bc00f7d638e042da764e8648c03c0db46700599dd4f08d117e3e9e8b538519b"),
        ),
        (
            "aws/guardduty/service/action/networkConnectionAction/remoteIpDetails/city/cityName",
            "Berlin",
            None,
        ),
    ],
)
def test_each_kind_of_guardduty_product_field_is_read(
    key: str, value: str, expected: tuple[str, str] | None
) -> None:
    # Given a GuardDuty finding in Security Hub with only this one product field
    event = load(GUARDDUTY_PRODUCT)
    finding_of(event)["ProductFields"] = {key: value}

    # When it is parsed
    [alert] = parse_alerts(event)

    # Then the field gives its IOC, or none
    assert [(ioc.type.value, ioc.value) for ioc in alert.iocs] == ([expected] if expected else [])


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("Workflow", {"Status": "SUPPRESSED"}),
        ("Workflow", {"Status": "RESOLVED"}),
        ("RecordState", "ARCHIVED"),
    ],
)
def test_an_acknowledged_finding_gives_no_alert(field: str, value: Any) -> None:
    # Given a finding someone has already suppressed, resolved or archived
    event = load(THREAT_INTEL)
    finding_of(event)[field] = value

    # When it is parsed, then there is nothing to triage: the record is accepted and makes no case
    assert parse_alerts(event) == []


def test_only_the_findings_still_open_become_alerts() -> None:
    # Given an event with an open finding and a resolved one
    event = load(THREAT_INTEL)
    resolved = copy.deepcopy(finding_of(event))
    resolved["Id"] = "threat-intel-matcher/2025-03-18/resolved"
    resolved["Workflow"] = {"Status": "RESOLVED"}
    event["detail"]["findings"].append(resolved)

    # When it is parsed, then only the open one is an alert
    assert [alert.id for alert in parse_alerts(event)] == ["threat-intel-matcher/2025-03-18/5d2b1c0e9f84"]


def test_guardduty_findings_in_security_hub_can_be_skipped() -> None:
    # Given GuardDuty's finding through Security Hub, and a finding of another product
    guardduty_event, other_event = load(GUARDDUTY_PRODUCT), load(THREAT_INTEL)

    # When GuardDuty findings are skipped, then only the other product's finding is an alert
    assert parse_alerts(guardduty_event, skip_guardduty_in_securityhub=True) == []
    assert len(parse_alerts(other_event, skip_guardduty_in_securityhub=True)) == 1
    # And by default both are
    assert len(parse_alerts(guardduty_event)) == 1


def test_access_key_bucket_and_object_resources() -> None:
    # Given a finding on an access key, a bucket and an object, as ASFF names them
    event = load(THREAT_INTEL)
    finding_of(event)["Resources"] = [
        {
            "Type": "AwsIamAccessKey",
            "Id": "AWS::IAM::AccessKey:AKIAIOSFODNN7EXAMPLE",
            "Details": {"AwsIamAccessKey": {"PrincipalName": "ci-deployer", "PrincipalType": "IAMUser"}},
        },
        {"Type": "AwsS3Bucket", "Id": "arn:aws:s3:::incoming-uploads"},
        {"Type": "AwsS3Object", "Id": "arn:aws:s3:::incoming-uploads/2025/03/invoice.pdf.exe"},
        {"Type": "AwsAccount", "Id": "AWS::::Account:123456789012"},
    ]

    # When it is parsed
    [alert] = parse_alerts(event)

    # Then remediation sees the key with its user, the bucket and the object
    assert alert.resources == (
        Resource(type=ResourceType.ACCESS_KEY, id="AKIAIOSFODNN7EXAMPLE", user_name="ci-deployer"),
        Resource(type=ResourceType.S3_BUCKET, id="incoming-uploads", bucket="incoming-uploads"),
        Resource(
            type=ResourceType.S3_OBJECT,
            id="incoming-uploads/2025/03/invoice.pdf.exe",
            bucket="incoming-uploads",
            key="2025/03/invoice.pdf.exe",
        ),
    )


def test_get_findings_output_and_a_bare_finding_give_the_same_alert_as_the_event() -> None:
    # Given one finding as the event, as `aws securityhub get-findings` prints it, and alone
    event = load(THREAT_INTEL)
    finding = finding_of(event)

    # When each is parsed, then it is the same alert
    [from_event] = parse_alerts(event)
    assert parse_alerts({"Findings": [finding]}) == [from_event]
    assert parse_alerts(finding) == [from_event]


@pytest.mark.parametrize(
    ("label", "score"),
    [("INFORMATIONAL", 0.0), ("LOW", 1.0), ("MEDIUM", 4.0), ("HIGH", 7.0), ("CRITICAL", 9.0)],
)
def test_severity_label_alone_maps_to_the_bottom_of_its_band(label: str, score: float) -> None:
    event = load(THREAT_INTEL)
    finding_of(event)["Severity"] = {"Label": label}

    [alert] = parse_alerts(event)

    assert alert.severity.score == score
    assert alert.severity.label == ("low" if score < 4 else label.lower())


def test_the_real_compliance_sample_takes_its_region_from_the_event() -> None:
    # Given the real compliance finding, which has no top-level Region
    [alert] = parse_alerts(load(COMPLIANCE))

    # Then the event's Region stands in, and the informational finding scores 0
    assert (alert.region, alert.account, alert.severity.score) == ("us-east-1", "111111111111", 0.0)
    assert alert.iocs == ()


def _hostile_indicator(finding: dict[str, Any]) -> None:
    finding["ThreatIntelIndicators"][0]["Value"] = "tawuhoju.com/../../files/x"


def _no_severity(finding: dict[str, Any]) -> None:
    del finding["Severity"]


def _severity_too_high(finding: dict[str, Any]) -> None:
    finding["Severity"] = {"Normalized": 101}


def _bad_account(finding: dict[str, Any]) -> None:
    finding["AwsAccountId"] = "12345"


def _no_updated_at(finding: dict[str, Any]) -> None:
    del finding["UpdatedAt"]


def _network_as_list(finding: dict[str, Any]) -> None:
    finding["Network"] = ["23.129.64.215"]


@pytest.mark.parametrize(
    ("break_it", "field", "reason"),
    [
        (_hostile_indicator, "detail.findings[0].ThreatIntelIndicators[0].Value", "'/' is not allowed"),
        (_no_severity, "detail.findings[0].Severity", "missing"),
        (_severity_too_high, "detail.findings[0].Severity.Normalized", "from 0 to 100"),
        (_bad_account, "detail.findings[0].AwsAccountId", "12-digit"),
        (_no_updated_at, "detail.findings[0].UpdatedAt", "missing"),
        (_network_as_list, "detail.findings[0].Network", "expected an object, got a list"),
    ],
    ids=lambda value: getattr(value, "__name__", None),
)
def test_a_broken_finding_is_refused_naming_the_field(break_it: Any, field: str, reason: str) -> None:
    # Given a good event broken in one place
    event = load(THREAT_INTEL)
    break_it(finding_of(event))

    # When it is parsed
    with pytest.raises(InvalidAlertError) as caught:
        parse_alerts(event)

    # Then the refusal names the field and what is wrong
    assert caught.value.field == field
    assert reason in caught.value.reason


def test_an_unknown_security_hub_event_is_refused() -> None:
    event = load(THREAT_INTEL)
    event["detail-type"] = "Security Hub Insight Results"

    with pytest.raises(InvalidAlertError) as caught:
        parse_alerts(event)

    assert caught.value.field == "detail-type"
    assert "'Security Hub Findings - Imported'" in caught.value.reason
