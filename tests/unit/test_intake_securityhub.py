"""Security Hub intake: ASFF findings become Alerts, acknowledged ones are ignored with the reason, a bad
value costs only itself, and a finding that cannot be identified is refused alone, naming the field."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from vtriage.errors import InvalidAlertError
from vtriage.intake import FindingRefusal, IgnoredFinding, IntakeResult, read_document
from vtriage.models import Alert, Resource, ResourceType, Subject

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


def alerts_of(document: Any, **options: Any) -> list[Alert]:
    """The alerts of a document in which every finding is an alert or ignored: none is refused."""
    result = read_document(document, **options)
    assert result.refused == ()
    return list(result.alerts)


def skipped(alert: Alert) -> list[tuple[str, str, str | None]]:
    """(value, where it was found, why it is skipped) of every IOC the alert keeps but never looks up."""
    return [(ioc.value, ioc.found_at, ioc.skipped_reason) for ioc in alert.iocs if ioc.skipped_reason]


def test_threat_intel_sample_reads_as_the_console_shows_it() -> None:
    # Given the threat-intelligence sample
    event = load(THREAT_INTEL)

    # When it is parsed
    [alert] = alerts_of(event)

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


@pytest.mark.parametrize(
    ("product_arn", "product"),
    [
        (
            "arn:aws:securityhub:us-east-1:123456789012:product/123456789012/default",
            "arn:aws:securityhub:us-east-1:123456789012:product/123456789012/default",
        ),
        (
            "arn:aws:securityhub:us-east-1::product/aws/inspector",
            "arn:aws:securityhub:us-east-1::product/aws/inspector",
        ),
        (["not", "text"], ""),
    ],
)
def test_the_alert_carries_the_product_that_generated_the_finding(product_arn: Any, product: str) -> None:
    # Given the threat-intel finding under a product ARN (or a ProductArn that is no text)
    event = load(THREAT_INTEL)
    finding_of(event)["ProductArn"] = product_arn

    # When it is read
    [alert] = alerts_of(event)

    # Then the alert carries the product as written ('' when none can be read), for eligibility to judge
    assert alert.product == product


def test_a_guardduty_finding_read_directly_names_no_product() -> None:
    # Given GuardDuty's own event (not through Security Hub)
    event = json.loads((EVENTS / "synthetic-guardduty-backdoor-c2-dns.json").read_text())

    # When it is read, Then its alert names no Security Hub product
    [alert] = alerts_of(event)
    assert alert.product is None


def test_the_instances_own_public_address_in_network_is_skipped_as_its_own() -> None:
    # Given a finding whose network source is the instance's own public address
    event = load(THREAT_INTEL)
    finding_of(event)["Network"]["SourceIpV4"] = "54.210.17.33"

    # When it is parsed
    [alert] = alerts_of(event)

    # Then the address is kept but never looked up
    own = [ioc for ioc in alert.iocs if ioc.value == "54.210.17.33"]
    assert [ioc.skipped_reason for ioc in own] == ["address of the alert's own resource"]


def test_guardduty_product_fields_give_the_remote_address_not_the_local_one() -> None:
    # Given GuardDuty's finding as Security Hub imports it
    [alert] = alerts_of(load(GUARDDUTY_PRODUCT))

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
    [alert] = alerts_of(event)

    # Then the field gives its IOC, or none
    assert [(ioc.type.value, ioc.value) for ioc in alert.iocs] == ([expected] if expected else [])


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("Workflow", {"Status": "SUPPRESSED"}, "detail.findings[0].Workflow.Status is SUPPRESSED"),
        ("Workflow", {"Status": "RESOLVED"}, "detail.findings[0].Workflow.Status is RESOLVED"),
        ("RecordState", "ARCHIVED", "detail.findings[0].RecordState is ARCHIVED"),
        (
            "Compliance",
            {"Status": "PASSED"},
            "a passed check: detail.findings[0].Compliance.Status is PASSED",
        ),
    ],
)
def test_an_acknowledged_finding_is_ignored_with_its_reason(field: str, value: Any, reason: str) -> None:
    # Given a finding someone has already suppressed, resolved or archived, or a check that passed
    event = load(THREAT_INTEL)
    finding_of(event)[field] = value

    # When it is read
    result = read_document(event)

    # Then there is nothing to triage, and the finding is accounted for as ignored, saying why
    assert (result.alerts, result.refused) == ((), ())
    assert result.ignored == (
        IgnoredFinding(
            where="detail.findings[0]", reason=reason, alert_id="threat-intel-matcher/2025-03-18/5d2b1c0e9f84"
        ),
    )


def test_only_the_findings_still_open_become_alerts() -> None:
    # Given an event with an open finding and a resolved one
    event = load(THREAT_INTEL)
    resolved = copy.deepcopy(finding_of(event))
    resolved["Id"] = "threat-intel-matcher/2025-03-18/resolved"
    resolved["Workflow"] = {"Status": "RESOLVED"}
    event["detail"]["findings"].append(resolved)

    # When it is read
    result = read_document(event)

    # Then only the open one is an alert, and the resolved one is ignored, not lost
    assert [alert.id for alert in result.alerts] == ["threat-intel-matcher/2025-03-18/5d2b1c0e9f84"]
    assert [(ignored.where, ignored.alert_id) for ignored in result.ignored] == [
        ("detail.findings[1]", "threat-intel-matcher/2025-03-18/resolved")
    ]


def test_guardduty_findings_in_security_hub_can_be_skipped() -> None:
    # Given GuardDuty's finding through Security Hub, and a finding of another product
    guardduty_event, other_event = load(GUARDDUTY_PRODUCT), load(THREAT_INTEL)

    # When GuardDuty findings are skipped, then only the other product's finding is an alert
    skipped_guardduty = read_document(guardduty_event, skip_guardduty_in_securityhub=True)
    assert skipped_guardduty.alerts == ()
    # and the reason names the template parameter a deployer or a `vtriage run` user sets to read them
    assert [ignored.reason for ignored in skipped_guardduty.ignored] == [
        "a GuardDuty finding seen through Security Hub: GuardDuty reaches the queue directly (to read"
        " GuardDuty's findings through Security Hub instead, set the template parameter"
        " GuardDutyFindingsVia=securityhub; SKIP_GUARDDUTY_IN_SECURITYHUB)"
    ]
    assert len(alerts_of(other_event, skip_guardduty_in_securityhub=True)) == 1
    # And by default both are
    assert len(alerts_of(guardduty_event)) == 1


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
    [alert] = alerts_of(event)

    # Then remediation sees the key with its user (and the kind of principal), the bucket and the object
    assert alert.resources == (
        Resource(
            type=ResourceType.ACCESS_KEY,
            id="AKIAIOSFODNN7EXAMPLE",
            user_name="ci-deployer",
            user_type="IAMUser",
        ),
        Resource(type=ResourceType.S3_BUCKET, id="incoming-uploads", bucket="incoming-uploads"),
        Resource(
            type=ResourceType.S3_OBJECT,
            id="incoming-uploads/2025/03/invoice.pdf.exe",
            bucket="incoming-uploads",
            key="2025/03/invoice.pdf.exe",
        ),
    )


def test_an_object_names_the_version_and_etag_security_hub_saw() -> None:
    # Given a finding on an object whose details give its version and ETag (ASFF's AwsS3Object)
    event = load(THREAT_INTEL)
    finding_of(event)["Resources"] = [
        {
            "Type": "AwsS3Object",
            "Id": "arn:aws:s3:::incoming-uploads/2025/03/invoice.pdf.exe",
            "Details": {
                "AwsS3Object": {"ETag": '"546bb6ef89bebfb053999777f6930d7e"', "VersionId": "3HL4kqtJlcpXroD"}
            },
        },
    ]

    # When it is parsed
    [alert] = alerts_of(event)

    # Then the object carries both as Security Hub wrote them: the quarantine acts on that object alone
    [item] = alert.resources
    assert (item.bucket, item.key) == ("incoming-uploads", "2025/03/invoice.pdf.exe")
    assert (item.version_id, item.etag) == ("3HL4kqtJlcpXroD", '"546bb6ef89bebfb053999777f6930d7e"')


LOCAL_INSTANCE_ARN = "arn:aws:ec2:us-east-1:123456789012:instance/i-0b3f6c2d9e1a47c58"


@pytest.mark.parametrize(
    ("resource_id", "resource_region", "elsewhere"),
    [
        (
            "arn:aws:ec2:eu-west-3:999999999999:instance/i-0b3f6c2d9e1a47c58",
            "eu-west-3",
            ["account '999999999999' (detail.findings[0].Resources[0].Id)", "Region 'eu-west-3'"],
        ),
        (
            "arn:aws:ec2:us-east-1:999999999999:instance/i-0b3f6c2d9e1a47c58",
            "us-east-1",
            ["account '999999999999' (detail.findings[0].Resources[0].Id)"],
        ),
        (LOCAL_INSTANCE_ARN, "eu-west-3", ["Region 'eu-west-3' (detail.findings[0].Resources[0].Region)"]),
        ("arn:aws:ec2:instance/i-0b3f6c2d9e1a47c58", "us-east-1", ["is no ARN as AWS writes them"]),
    ],
    ids=["other-account-and-region", "other-account", "other-region-field", "no-arn"],
)
def test_an_instance_living_elsewhere_than_the_finding_is_never_acted_on(
    resource_id: str, resource_region: str, elsewhere: list[str]
) -> None:
    # Given the finding of this account and Region, its instance's ARN or Region naming another place
    event = load(THREAT_INTEL)
    [resource] = finding_of(event)["Resources"]
    resource.update({"Id": resource_id, "Region": resource_region})

    # When it is read
    [alert] = alerts_of(event)

    # Then the alert stands as the finding's, with its IOCs, and is never acted on: the reason names the
    # place the resource claims and the field that claims it
    assert (alert.account, alert.region) == ("123456789012", "us-east-1")
    assert len(alert.iocs) == 4
    [reason] = alert.not_actionable
    assert reason.startswith("detail.findings[0].Resources[0]")
    assert all(place in reason for place in elsewhere), reason
    assert any(reason in note for note in alert.notes)


def test_resources_where_the_finding_lives_or_with_no_place_in_their_arn_are_acted_on() -> None:
    # Given the instance of the finding's own account and Region, and S3 and IAM resources whose ids name
    # no account or Region (S3's ARNs have none; GuardDuty writes the key's id without an ARN)
    event = load(THREAT_INTEL)
    [instance] = finding_of(event)["Resources"]
    assert (instance["Id"], instance["Region"]) == (LOCAL_INSTANCE_ARN, "us-east-1")
    finding_of(event)["Resources"] += [
        {"Type": "AwsS3Bucket", "Id": "arn:aws:s3:::incoming-uploads", "Region": "us-east-1"},
        {"Type": "AwsIamAccessKey", "Id": "AWS::IAM::AccessKey:AKIAIOSFODNN7EXAMPLE", "Region": "us-east-1"},
        # Not a target: its place is not read
        {"Type": "AwsEc2SecurityGroup", "Id": "arn:aws:ec2:eu-west-3:999999999999:security-group/sg-1"},
    ]

    # When it is read, Then nothing stands against acting on it
    [alert] = alerts_of(event)
    assert alert.not_actionable == ()
    assert [resource.id for resource in alert.resources] == [
        "i-0b3f6c2d9e1a47c58",
        "incoming-uploads",
        "AKIAIOSFODNN7EXAMPLE",
    ]


def test_get_findings_output_and_a_bare_finding_give_the_same_alert_as_the_event() -> None:
    # Given one finding as the event, as `aws securityhub get-findings` prints it, and alone
    event = load(THREAT_INTEL)
    finding = finding_of(event)

    # When each is parsed, then it is the same alert
    [from_event] = alerts_of(event)
    assert alerts_of({"Findings": [finding]}) == [from_event]
    assert alerts_of(finding) == [from_event]


@pytest.mark.parametrize(
    ("updated_at", "version"),
    [
        ("last Tuesday", "raw-'last Tuesday'"),
        (None, "2025-03-18T15:04:01+00:00"),
        ("", "2025-03-18T15:04:01+00:00"),
    ],
    ids=["unreadable", "missing", "empty"],
)
def test_a_finding_whose_updated_at_does_not_read_is_versioned_by_its_text_else_its_creation(
    updated_at: str | None, version: str
) -> None:
    # Given a finding whose UpdatedAt is no time, or is missing or empty
    event = load(THREAT_INTEL)
    finding = finding_of(event)
    finding["UpdatedAt"] = updated_at
    finding["CreatedAt"] = "2025-03-18T15:04:01.000Z"

    # When it is parsed
    [alert] = alerts_of(event)

    # Then its text as written versions it, else the time that stands in; no action runs on it
    assert alert.version == version
    assert any(reason.startswith("detail.findings[0].UpdatedAt: ") for reason in alert.not_actionable)


@pytest.mark.parametrize(
    ("severity", "shown"),
    [
        ({"Label": "INFORMATIONAL", "Normalized": 0}, "informational"),
        ({"Label": "INFORMATIONAL"}, "informational"),
        ({"Normalized": 0}, "informational"),
        ({"Label": "LOW", "Normalized": 1}, "low"),
        ({"Label": "LOW", "Normalized": 0}, "low"),
    ],
)
def test_an_informational_finding_is_shown_informational_and_ranked_low(
    severity: dict[str, Any], shown: str
) -> None:
    # Given the real AFSBP EC2.7 finding, rated as Security Hub rates it (a Normalized 0 is INFORMATIONAL)
    event = load(COMPLIANCE)
    finding_of(event)["Severity"] = severity

    # When it is read
    [alert] = alerts_of(event)

    # Then a person reads the detector's word, and triage ranks it in the low band all the same
    assert alert.severity.shown_label == shown
    assert alert.severity.label == "low"


def test_the_afsbp_sample_as_security_hub_sent_it_is_informational() -> None:
    # Given the real AFSBP EC2.7 finding, Severity {"Label": "INFORMATIONAL", ...} as Security Hub sent it
    [alert] = alerts_of(load(COMPLIANCE))

    # Then it is shown as informational, scored 0
    assert (alert.severity.score, alert.severity.shown_label) == (0.0, "informational")


@pytest.mark.parametrize(
    ("label", "score"),
    [("INFORMATIONAL", 0.0), ("LOW", 1.0), ("MEDIUM", 4.0), ("HIGH", 7.0), ("CRITICAL", 9.0)],
)
def test_severity_label_alone_maps_to_the_bottom_of_its_band(label: str, score: float) -> None:
    event = load(THREAT_INTEL)
    finding_of(event)["Severity"] = {"Label": label}

    [alert] = alerts_of(event)

    assert alert.severity.score == score
    assert alert.severity.label == ("low" if score < 4 else label.lower())


@pytest.mark.parametrize(
    ("severity", "score", "label"),
    [
        ({"Label": "LOW", "Normalized": 50}, 1.0, "low"),  # the label wins over a Normalized of another band
        ({"Label": "LOW", "Normalized": 20}, 2.0, "low"),  # a Normalized in the label's band places it
        ({"Label": "CRITICAL", "Normalized": 40}, 9.0, "critical"),
        ({"Normalized": 75}, 7.5, "high"),  # no label: Normalized
        ({"Label": "low", "Normalized": 0}, 1.0, "low"),
    ],
)
def test_severity_label_is_read_first_as_aws_prefers(
    severity: dict[str, Any], score: float, label: str
) -> None:
    # Given a finding whose Severity.Label and Normalized may disagree
    event = load(THREAT_INTEL)
    finding_of(event)["Severity"] = severity

    # When it is read
    [alert] = alerts_of(event)

    # Then the label decides the band, as AWS's user guide says it is the preferred attribute
    assert (alert.severity.score, alert.severity.label) == (score, label)
    assert alert.not_actionable == ()


def test_the_real_compliance_sample_takes_its_region_from_the_event() -> None:
    # Given the real compliance finding, which has no top-level Region
    [alert] = alerts_of(load(COMPLIANCE))

    # Then the event's Region stands in, and the informational finding scores 0
    assert (alert.region, alert.account, alert.severity.score) == ("us-east-1", "111111111111", 0.0)
    assert alert.iocs == ()
    assert alert.notes == ()


# --- Custom Action events ----------------------------------------------------------------------------


def _custom_action(*findings: dict[str, Any]) -> dict[str, Any]:
    """A `Security Hub Findings - Custom Action` event, as the console's "send to" button publishes it."""
    event: dict[str, Any] = load(THREAT_INTEL)
    event["detail-type"] = "Security Hub Findings - Custom Action"
    event["resources"] = ["arn:aws:securityhub:us-east-1:123456789012:action/custom/SendToVtriage"]
    event["detail"] = {
        "actionName": "SendToVtriage",
        "actionDescription": "Triage the selected findings with vtriage",
        "findings": list(findings),
    }
    return event


def test_a_custom_action_event_gives_the_same_alerts_noting_the_action() -> None:
    # Given the threat-intel finding sent from the console through a custom action
    finding = finding_of(load(THREAT_INTEL))
    event = _custom_action(copy.deepcopy(finding))

    # When it is read
    [alert] = alerts_of(event)

    # Then it is the alert the Imported event gives, with a note naming the action
    [imported] = alerts_of(load(THREAT_INTEL))
    assert alert.model_copy(update={"notes": ()}) == imported
    assert alert.notes == ("sent by the Security Hub custom action 'SendToVtriage'",)


def test_a_custom_action_with_several_findings_gives_each_its_own_fate() -> None:
    # Given a custom action sending an open finding, a finding without Id and a suppressed one
    finding = finding_of(load(THREAT_INTEL))
    without_id = {key: value for key, value in finding.items() if key != "Id"}
    suppressed = dict(copy.deepcopy(finding), Id="suppressed-1", Workflow={"Status": "SUPPRESSED"})
    event = _custom_action(copy.deepcopy(finding), without_id, suppressed)

    # When it is read
    result = read_document(event)

    # Then each finding stands once: an alert, a refusal naming the field, an ignored finding
    assert [alert.id for alert in result.alerts] == ["threat-intel-matcher/2025-03-18/5d2b1c0e9f84"]
    assert result.refused == (
        FindingRefusal(where="detail.findings[1]", reason="detail.findings[1].Id: missing"),
    )
    assert [ignored.alert_id for ignored in result.ignored] == ["suppressed-1"]


# --- a bad value costs only itself -----------------------------------------------------------------


def test_the_user_guides_threats_example_keeps_its_algorithm_name_as_a_skipped_hash() -> None:
    # Given a finding whose `Threats` say "Hash": "sha256", as the AWS Security Hub user guide's example
    event = load(THREAT_INTEL)
    finding_of(event)["Threats"] = [
        {
            "Name": "Trojan.Generic",
            "Severity": "HIGH",
            "ItemCount": 1,
            "FilePaths": [
                {"FileName": "dropper", "FilePath": "/tmp/dropper", "ResourceId": "i-0b3f", "Hash": "sha256"}
            ],
        }
    ]

    # When it is read
    [alert] = alerts_of(event)

    # Then the finding is triaged with its other IOCs; the value is kept, skipped, with its field
    assert (
        "sha256",
        "Threats[0].FilePaths[0].Hash",
        "not an md5, sha1 or sha256 hash (32, 40 or 64 hex digits): 'sha256'",
    ) in skipped(alert)
    assert len(alert.iocs) == 5


def test_a_hash_indicator_of_another_length_than_its_type_declares_is_never_looked_up() -> None:
    # Given a HASH_SHA256 indicator whose value has an md5's length
    event = load(THREAT_INTEL)
    finding_of(event)["ThreatIntelIndicators"] = [
        {"Type": "HASH_SHA256", "Value": "546bb6ef89bebfb053999777f6930d7e"}
    ]
    del finding_of(event)["Network"]

    # When it is read, then it is kept, skipped: the declared algorithm wins over the length
    [alert] = alerts_of(event)
    assert skipped(alert) == [
        (
            "546bb6ef89bebfb053999777f6930d7e",
            "ThreatIntelIndicators[0].Value",
            "the field declares sha256, but the value has 32 hex digits (a md5): not looked up as another"
            " algorithm",
        )
    ]


def test_a_url_indicator_too_long_to_be_a_cache_key_is_skipped() -> None:
    # Given a URL indicator of 3,000 bytes (DynamoDB refuses a key over 2,048 bytes)
    event = load(THREAT_INTEL)
    finding_of(event)["ThreatIntelIndicators"] = [{"Type": "URL", "Value": "https://evil.com/" + "a" * 3000}]
    del finding_of(event)["Network"]

    # When it is read, then the URL is kept skipped, cut, and nothing of it is looked up
    [alert] = alerts_of(event)
    [(value, _, reason)] = skipped(alert)
    assert len(value) <= 203
    assert str(reason).startswith("URL longer than 2000 bytes")


def _hostile_indicator(finding: dict[str, Any]) -> None:
    finding["ThreatIntelIndicators"][0]["Value"] = "tawuhoju.com/../../files/x"


def _network_as_list(finding: dict[str, Any]) -> None:
    finding["Network"] = ["23.129.64.215"]


def test_a_hostile_indicator_is_kept_skipped_and_the_others_looked_up() -> None:
    event = load(THREAT_INTEL)
    _hostile_indicator(finding_of(event))

    [alert] = alerts_of(event)

    assert skipped(alert)[0] == (
        "tawuhoju.com/../../files/x",
        "ThreatIntelIndicators[0].Value",
        "'/' is not allowed in a domain: 'tawuhoju.com/../../files/x'",
    )
    assert [ioc.value for ioc in alert.iocs if ioc.skipped_reason is None] == [
        "23.129.64.215",
        "4bc00f7d638e042da764e8648c03c0db46700599dd4f08d117e3e9e8b538519b",
        "tawuhoju.com",
    ]


def test_a_network_block_that_is_no_object_is_noted_and_the_alert_goes_on() -> None:
    event = load(THREAT_INTEL)
    _network_as_list(finding_of(event))

    [alert] = alerts_of(event)

    assert alert.notes == ("detail.findings[0].Network: expected an object, got a list; not read for IOCs",)
    assert alert.not_actionable == ()


# --- a malformed identity field keeps the alert, noted, and never acted on ---------------------------


def _no_severity(finding: dict[str, Any]) -> None:
    del finding["Severity"]


def _severity_too_high(finding: dict[str, Any]) -> None:
    finding["Severity"] = {"Normalized": 101}


def _bad_account(finding: dict[str, Any]) -> None:
    finding["AwsAccountId"] = "12345"


def _no_updated_at(finding: dict[str, Any]) -> None:
    del finding["UpdatedAt"]


def _bad_label(finding: dict[str, Any]) -> None:
    finding["Severity"] = {"Label": "SEVERE"}


@pytest.mark.parametrize(
    ("break_it", "not_actionable"),
    [
        (_no_severity, "detail.findings[0].Severity: missing, and no FindingProviderFields.Severity"),
        (
            _severity_too_high,
            "detail.findings[0].Severity.Normalized: expected a number from 0 to 100, got 101",
        ),
        (
            _bad_label,
            "detail.findings[0].Severity.Label: expected one of INFORMATIONAL, LOW, MEDIUM, HIGH, CRITICAL,"
            " got 'SEVERE'",
        ),
        (_bad_account, "detail.findings[0].AwsAccountId: expected a 12-digit AWS account id, got '12345'"),
        (_no_updated_at, "detail.findings[0].UpdatedAt: missing"),
    ],
    ids=lambda value: getattr(value, "__name__", None),
)
def test_a_malformed_identity_field_keeps_the_alert_noted_and_never_acted_on(
    break_it: Any, not_actionable: str
) -> None:
    # Given a good event broken in an identity field
    event = load(THREAT_INTEL)
    break_it(finding_of(event))

    # When it is read
    [alert] = alerts_of(event)

    # Then the alert stands with its IOCs, and says why no action may run on it automatically
    assert not_actionable in alert.not_actionable
    assert len(alert.iocs) == 4
    assert alert.account == "123456789012"


def test_an_unreadable_severity_is_scored_critical_and_a_bad_account_falls_back_to_the_event() -> None:
    event = load(THREAT_INTEL)
    _no_severity(finding_of(event))
    _bad_account(finding_of(event))

    [alert] = alerts_of(event)

    assert alert.severity.label == "critical"
    assert alert.account == "123456789012"


def test_a_finding_without_id_is_refused_alone_and_the_others_go_on() -> None:
    # Given an event with the real finding and a copy without its Id
    event = load(THREAT_INTEL)
    without_id = {key: value for key, value in finding_of(event).items() if key != "Id"}
    event["detail"]["findings"].insert(0, without_id)

    # When it is read
    result = read_document(event)

    # Then the copy is refused, naming the field, and the real finding is an alert
    assert result.refused == (
        FindingRefusal(where="detail.findings[0]", reason="detail.findings[0].Id: missing"),
    )
    assert [alert.id for alert in result.alerts] == ["threat-intel-matcher/2025-03-18/5d2b1c0e9f84"]


def test_a_sample_finding_is_triaged_as_a_sample_or_ignored() -> None:
    # Given an ASFF finding marked as a sample
    event = load(THREAT_INTEL)
    finding_of(event)["Sample"] = True

    # When it is read, by default and where samples are ignored
    [alert] = alerts_of(event)
    ignoring: IntakeResult = read_document(event, ignore_samples=True)

    # Then it is triaged, never acted on; or ignored, saying why
    assert alert.sample
    assert "a sample finding" in alert.not_actionable
    assert [ignored.reason for ignored in ignoring.ignored] == [
        "detail.findings[0].Sample: a sample finding; sample findings are ignored here"
    ]


def test_an_unknown_security_hub_event_is_refused() -> None:
    event = load(THREAT_INTEL)
    event["detail-type"] = "Security Hub Insight Results"

    with pytest.raises(InvalidAlertError) as caught:
        read_document(event)

    assert caught.value.field == "detail-type"
    assert "'Security Hub Findings - Imported'" in caught.value.reason
    assert "'Security Hub Findings - Custom Action'" in caught.value.reason


# --- where providers and older findings put severity, type and the sample flag ----------------------------

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
BATCH_IMPORT = "aws-cli__securityhub_batch-import-findings.json"
SAMPLE_2018 = "rackspace-docs-developer-blog__aws-security-hub-overview_get-findings.json"


def load_corpus(name: str) -> Any:
    return json.loads((CORPUS / name).read_text())


def test_severity_and_type_a_provider_puts_under_finding_provider_fields_are_read() -> None:
    # Given the AWS CLI's batch-import-findings example: Label LOW and the types only under
    # FindingProviderFields, where a provider's BatchImportFindings puts them
    document = load_corpus(BATCH_IMPORT)

    # When it is read
    [alert] = alerts_of(document)

    # Then it is low, typed as the provider says, and nothing had to be guessed
    assert (alert.severity.score, alert.severity.label) == (1.0, "low")
    assert alert.type == "Software and Configuration Checks/Vulnerabilities/CVE"
    assert (alert.notes, alert.not_actionable) == ((), ())


def test_severity_and_types_of_the_finding_itself_come_before_the_providers() -> None:
    # Given the same finding once Security Hub has set its own Severity and Types (a person raised it)
    [finding] = load_corpus(BATCH_IMPORT)
    finding["Severity"] = {"Label": "HIGH", "Normalized": 70}
    finding["Types"] = ["Effects/Data Exposure"]

    # When it is read, then the finding's own values win
    [alert] = alerts_of(finding)
    assert (alert.severity.label, alert.type) == ("high", "Effects/Data Exposure")


def test_an_unreadable_severity_falls_back_to_the_providers_noted() -> None:
    # Given the same finding with a Severity whose label is none of ASFF's
    [finding] = load_corpus(BATCH_IMPORT)
    finding["Severity"] = {"Label": "SEVERE"}

    # When it is read, then the provider's LOW stands, and the bad label is noted and keeps it from action
    [alert] = alerts_of(finding)
    assert alert.severity.label == "low"
    assert alert.not_actionable == (
        "Severity.Label: expected one of INFORMATIONAL, LOW, MEDIUM, HIGH, CRITICAL, got 'SEVERE'",
    )


def test_a_providers_own_score_alone_is_read_and_said_to_be_guessed() -> None:
    # Given the provider's severity without its Label: only its own score, Original "10"
    [finding] = load_corpus(BATCH_IMPORT)
    del finding["FindingProviderFields"]["Severity"]["Label"]

    # When it is read, then 10 on the product's own scale is scored 10, and the note says it was guessed
    [alert] = alerts_of(finding)
    assert alert.severity.score == 10.0
    assert alert.notes == (
        "FindingProviderFields.Severity.Original: neither Label nor Normalized, which AWS requires;"
        " severity guessed from the product's own score (10): 10",
    )


def test_a_2018_guardduty_sample_flagged_in_product_fields_additional_info_is_a_sample() -> None:
    # Given a get-findings output of 2018 (Rackspace's blog): GuardDuty's generated BitcoinTool sample,
    # flagged only by ProductFields."additionalInfo", a JSON string holding "sample":true
    document = load_corpus(SAMPLE_2018)

    # When it is read
    [alert] = alerts_of(document)

    # Then it is triaged as a sample, never acted on, and its placeholder domain is skipped
    assert alert.sample
    assert "a sample finding" in alert.not_actionable
    assert skipped(alert) == [
        (
            "GeneratedFindingDomainName",
            "ProductFields.action/dnsRequestAction/domain",
            "a placeholder of a GuardDuty sample finding (GeneratedFinding...)",
        )
    ]
    # and where samples are ignored, it is ignored
    assert [ignored.alert_id for ignored in read_document(document, ignore_samples=True).ignored] == [
        alert.id
    ]


def test_a_product_field_merely_ending_like_the_sample_flag_is_not_one() -> None:
    # Given the 2018 sample whose flag sits under a key that only ends in "additionalInfo"
    document = load_corpus(SAMPLE_2018)
    fields = document["Findings"][0]["ProductFields"]
    fields["notadditionalInfo"] = fields.pop("additionalInfo")

    # When it is read, then it is not taken for a sample
    [alert] = alerts_of(document)
    assert not alert.sample


def test_a_resolved_finding_without_an_id_is_ignored_not_refused() -> None:
    # Given the batch-import example, resolved, that lost its Id
    [finding] = load_corpus(BATCH_IMPORT)
    del finding["Id"]
    finding["Workflow"] = {"Status": "RESOLVED"}

    # When it is read, then it is ignored as resolved: nobody needs a refusal of a finding dealt with
    result = read_document(finding)
    assert (result.alerts, result.refused) == ((), ())
    assert result.ignored == (IgnoredFinding(where="", reason="Workflow.Status is RESOLVED", alert_id=None),)


# --- what the alert is about when no action acts on it -----------------------------------------------

EKS_CONTROL = "cdk-eks-blueprints-patterns__securityhub_eks-1_get-findings.json"
EKS_CLUSTER_ARN = "arn:aws:eks:us-east-1:XXXXXXXXXXX:cluster/starter-blueprint"


def test_a_control_failed_on_an_eks_cluster_names_the_cluster() -> None:
    # Given a real get-findings output: control EKS.1 failed on the EKS cluster starter-blueprint
    document = load_corpus(EKS_CONTROL)

    # When it is read
    [alert] = alerts_of(document)

    # Then the alert is about that cluster, by its type and ARN, and names nothing vtriage acts on
    assert alert.subjects == (Subject(type="AwsEksCluster", id=EKS_CLUSTER_ARN),)
    assert alert.resources == ()


def test_a_resource_gives_its_name_from_its_details_and_a_bad_one_is_noted() -> None:
    # Given the same finding on a Lambda function with its FunctionName, a container whose Name is a
    # number, and a resource whose Id is an object
    document = load_corpus(EKS_CONTROL)
    document["Findings"][0]["Resources"] = [
        {
            "Type": "AwsLambdaFunction",
            "Id": "arn:aws:lambda:us-east-1:111111111111:function:image-resizer",
            "Details": {"AwsLambdaFunction": {"FunctionName": "image-resizer"}},
        },
        {"Type": "Container", "Id": "0f8e7d6c5b4a", "Details": {"Container": {"Name": 7}}},
        {"Type": "AwsEcsCluster", "Id": {"Arn": "arn:aws:ecs:us-east-1:111111111111:cluster/payments"}},
    ]

    # When it is read
    [alert] = alerts_of(document)

    # Then the function is named, the container kept by its id alone, and the cluster left out, each bad
    # value noted with its field
    assert alert.subjects == (
        Subject(
            type="AwsLambdaFunction",
            id="arn:aws:lambda:us-east-1:111111111111:function:image-resizer",
            name="image-resizer",
        ),
        Subject(type="Container", id="0f8e7d6c5b4a"),
    )
    notes = " ".join(alert.notes)
    assert "Findings[0].Resources[1].Details.Container.Name: expected a string, got a number" in notes
    assert "Findings[0].Resources[2].Id: expected a string, got an object" in notes


def test_resources_vtriage_acts_on_are_no_subjects() -> None:
    # Given the threat intel sample, on an EC2 instance
    # When it is read
    [alert] = alerts_of(load(THREAT_INTEL))

    # Then the instance is a resource and the alert has no subject
    assert (len(alert.resources), alert.subjects) == (1, ())


# --- an ASFF finding is Security Hub's by its own marks, however it is delivered -------------------------

# DefectDojo's test file: {"findings": [...]} holding one Inspector finding (MEDIUM, on i-1234xxyy) without
# the AwsAccountId ASFF requires.
NO_ACCOUNT = "defectdojo__awssecurityhub_missing_account_id.json"
NO_ACCOUNT_ID = "arn:aws:inspector2:us-east-1:1234567:finding/12344bc"
ASR_EVENT = "asr__afsbp-ec2.7_imported_envelope.json"


def _no_account_finding() -> dict[str, Any]:
    finding: dict[str, Any] = load_corpus(NO_ACCOUNT)["findings"][0]
    return finding


@pytest.mark.parametrize(
    ("deliver", "where"),
    [
        (lambda finding: finding, ""),
        (lambda finding: [finding], "[0]"),
        (lambda finding: {"findings": [finding]}, "findings[0]"),
        (lambda finding: {"Findings": [finding]}, "Findings[0]"),
    ],
    ids=["bare", "array", "event-detail-alone", "get-findings"],
)
def test_an_asff_finding_without_its_account_is_read_as_security_hub_however_delivered(
    deliver: Any, where: str
) -> None:
    # Given DefectDojo's Inspector finding that lacks its AwsAccountId, alone, in an array, as an event's
    # detail alone and as get-findings output
    document = deliver(_no_account_finding())

    # When it is read
    [alert] = alerts_of(document)

    # Then it is a Security Hub finding, MEDIUM on its instance, and only the missing account is noted
    prefix = f"{where}." if where else ""
    assert (alert.id, alert.source) == (NO_ACCOUNT_ID, "securityhub")
    assert (alert.severity.label, alert.region, alert.account) == ("medium", "us-east-1", "unknown")
    assert [(resource.type, resource.id) for resource in alert.resources] == [
        (ResourceType.INSTANCE, "i-1234xxyy")
    ]
    assert alert.notes == (f"{prefix}AwsAccountId: missing; 'unknown' stands in",)
    assert alert.not_actionable == (f"{prefix}AwsAccountId: missing",)


def test_an_events_detail_delivered_alone_is_the_alert_the_whole_event_gives() -> None:
    # Given the real AFSBP EC2.7 event, and its detail alone (what an EventBridge target with InputPath
    # $.detail receives)
    event = load_corpus(ASR_EVENT)

    # When each is read
    [whole] = alerts_of(event)
    [alone] = alerts_of(event["detail"])

    # Then they are the same alert, the same case
    assert alone == whole
    assert (alone.source, alone.severity.shown_label) == ("securityhub", "informational")


def test_a_custom_actions_detail_delivered_alone_still_names_the_action() -> None:
    # Given the detail of a Security Hub custom action's event, delivered alone
    detail = _custom_action(finding_of(load(THREAT_INTEL)))["detail"]

    # When it is read, then the alert says which custom action sent it
    [alert] = alerts_of(detail)
    assert alert.notes == ("sent by the Security Hub custom action 'SendToVtriage'",)


@pytest.mark.parametrize(
    "name",
    [
        "aws-cli__guardduty_get-findings.json",  # get-findings output, PascalCase
        "gd-automated-response__guardduty_ec2_event.json",  # a bare finding, camelCase
        "stix-shifter__aws_guardduty_sample_response_2.json",
    ],
)
def test_a_guardduty_finding_is_still_read_as_guardduty(name: str) -> None:
    # Given a real GuardDuty finding as boto3, the API and the CLI give it (no ASFF mark: SchemaVersion
    # "2.0", no ProductArn)
    document = load_corpus(name)

    # When it is read, then GuardDuty's reader reads it, and the API's {"findings": [...]} too
    for shape in (document, {"findings": document.get("Findings", [document])}):
        assert {alert.source for alert in read_document(shape).alerts} == {"guardduty"}


# --- what a finding lacks or holds in a form ASFF does not document is said, with its field ---------------


@pytest.mark.parametrize(
    ("resources", "said"),
    [
        (None, "Findings[0].Resources: expected a list of one resource or more, got null"),
        ([], "Findings[0].Resources: expected a list of one resource or more, got an empty list"),
        ("absent", "Findings[0].Resources: missing (ASFF requires at least one resource)"),
    ],
    ids=["null", "empty", "absent"],
)
def test_a_finding_without_resources_says_so_and_is_never_acted_on(resources: Any, said: str) -> None:
    # Given the real batch-import example (on an instance) whose Resources is null, empty or absent
    [finding] = load_corpus(BATCH_IMPORT)
    if resources == "absent":
        del finding["Resources"]
    else:
        finding["Resources"] = resources

    # When it is read
    [alert] = alerts_of({"Findings": [finding]})

    # Then it names no resource, the note says why, and no action runs on it (its own addresses are unknown)
    assert alert.resources == ()
    assert f"{said}; the alert names no resource" in alert.notes
    assert said in alert.not_actionable


def test_product_fields_that_are_null_are_said_not_read() -> None:
    # Given a GuardDuty finding seen through Security Hub whose ProductFields is null
    event = load(GUARDDUTY_PRODUCT)
    finding_of(event)["ProductFields"] = None

    # When it is read, then the note says GuardDuty's fields there were not read
    [alert] = alerts_of(event)
    assert (
        "detail.findings[0].ProductFields: expected an object, got null; not read for IOCs nor for"
        " GuardDuty's sample flag" in alert.notes
    )


@pytest.mark.parametrize(
    ("severity", "score", "said"),
    [
        (
            {"Label": "HIGH", "Normalized": "75"},
            7.5,
            "detail.findings[0].Severity.Normalized: a number written as a string ('75'): read as 75",
        ),
        (
            {"Normalized": "70"},
            7.0,
            "detail.findings[0].Severity.Normalized: a number written as a string ('70'): read as 70",
        ),
        (
            {"Label": "HIGH", "Normalized": "seventy"},
            7.0,
            "detail.findings[0].Severity.Normalized: expected a number from 0 to 100, got 'seventy';"
            " not read: detail.findings[0].Severity.Label gives the severity",
        ),
    ],
    ids=["string-beside-label", "string-alone", "no-number"],
)
def test_a_normalized_severity_written_as_a_string_is_read_noted_and_one_that_is_no_number_is_noted(
    severity: dict[str, Any], score: float, said: str
) -> None:
    # Given a finding whose Severity.Normalized is text (as a relay re-encoded it)
    event = load(THREAT_INTEL)
    finding_of(event)["Severity"] = severity

    # When it is read
    [alert] = alerts_of(event)

    # Then the number is read when it is one, and either way the note says what was there
    assert alert.severity.score == score
    assert said in alert.notes
    assert alert.not_actionable == ()
