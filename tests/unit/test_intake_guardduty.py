"""GuardDuty intake: each sample event becomes the Alert an analyst would expect, and bad input is refused
with a reason that names the field at fault."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from vtriage.errors import InvalidAlertError
from vtriage.intake import parse_alerts
from vtriage.models import Alert, Resource, ResourceType

EVENTS = Path(__file__).resolve().parents[2] / "events"

BACKDOOR = "synthetic-guardduty-backdoor-c2-dns.json"
TOR_CALLER = "synthetic-guardduty-iam-tor-caller.json"
PORT_PROBE = "synthetic-guardduty-portprobe.json"
GET_FINDINGS = "guardduty-getfindings-trojan-droppoint-dns.json"

SAMPLE_INSTANCE = Resource(
    type=ResourceType.INSTANCE,
    id="i-99999999",
    vpc_id="GeneratedFindingVPCId",
    network_interface_ids=("eni-bfcffe88",),
    addresses=("10.0.0.1", "198.51.100.0"),
)
SAMPLE_ACCESS_KEY = Resource(
    type=ResourceType.ACCESS_KEY, id="GeneratedFindingAccessKeyId", user_name="GeneratedFindingUserName"
)
WEB_FRONTEND = Resource(
    type=ResourceType.INSTANCE,
    id="i-0b3f6c2d9e1a47c58",
    vpc_id="vpc-0d2e4f6a8b0c13579",
    network_interface_ids=("eni-0f4a2b7c9d1e3a865",),
    addresses=("10.0.1.25", "54.210.17.33"),
)


@dataclass(frozen=True)
class Expected:
    """What a person reading the sample would list: (type, value, looked up?) IOCs and the resources."""

    iocs: set[tuple[str, str, bool]]
    resources: set[Resource]


EXPECTED: dict[str, Expected] = {
    "guardduty-ec2-canary-outbound-ssh.json": Expected(
        iocs={("ip", "0.0.0.0", False)},
        resources={
            Resource(
                type=ResourceType.INSTANCE,
                id="i-05746eb48123455e0",
                vpc_id="vpc-34865123",
                addresses=("0.0.0.0", "11.111.111.1"),
            )
        },
    ),
    "guardduty-iam-recon-malicious-ip-caller.json": Expected(
        iocs={("ip", "198.51.100.0", False)},
        resources={SAMPLE_ACCESS_KEY},
    ),
    "guardduty-s3-pentest-parrot-linux.json": Expected(
        iocs={("ip", "198.51.100.0", False)},
        resources={
            Resource(type=ResourceType.S3_BUCKET, id="bucketName", bucket="bucketName"),
            SAMPLE_ACCESS_KEY,
        },
    ),
    GET_FINDINGS: Expected(
        iocs={("domain", "3322.org", True)},
        resources={SAMPLE_INSTANCE},
    ),
    BACKDOOR: Expected(
        iocs={("domain", "tawuhoju.com", True)},
        resources={WEB_FRONTEND},
    ),
    TOR_CALLER: Expected(
        iocs={("ip", "23.129.64.215", True)},
        resources={
            Resource(type=ResourceType.ACCESS_KEY, id="AKIAIOSFODNN7EXAMPLE", user_name="ci-deployer")
        },
    ),
    "synthetic-guardduty-ec2-suspicious-dns.json": Expected(
        iocs={("domain", "telemetry-sync.net", True)},
        resources={
            Resource(
                type=ResourceType.INSTANCE,
                id="i-07d1e9a4c3b2f5086",
                vpc_id="vpc-0d2e4f6a8b0c13579",
                network_interface_ids=("eni-02c4e6a8b0d1f3579",),
                addresses=("10.0.2.47",),
            )
        },
    ),
    PORT_PROBE: Expected(
        iocs={("ip", "23.129.64.215", True), ("ip", "198.51.100.7", False)},
        resources={WEB_FRONTEND},
    ),
}


def load(name: str) -> Any:
    return json.loads((EVENTS / name).read_text())


def only_alert(document: Any) -> Alert:
    alerts = parse_alerts(document)
    assert len(alerts) == 1
    return alerts[0]


def pascal_case(value: Any) -> Any:
    """The document as `aws guardduty get-findings` spells it: every key with a capital first letter."""
    if isinstance(value, dict):
        return {key[:1].upper() + key[1:]: pascal_case(item) for key, item in value.items()}
    if isinstance(value, list):
        return [pascal_case(item) for item in value]
    return value


def rejection(document: Any) -> InvalidAlertError:
    with pytest.raises(InvalidAlertError) as caught:
        parse_alerts(document)
    return caught.value


# --- every sample ---------------------------------------------------------------------------------


def test_every_sample_event_has_its_expectations_written_down() -> None:
    # Given the sample events a user runs through the demo
    samples = {path.name for path in EVENTS.glob("*.json")}

    # Then each one is described below, and nothing described is missing
    assert samples == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample_event_gives_exactly_the_expected_iocs_and_resources(name: str) -> None:
    # Given a sample event as it sits in events/
    document = load(name)

    # When it is parsed
    alert = only_alert(document)

    # Then the IOCs, and whether each will be looked up, are exactly those a person would list
    found = {(ioc.type.value, ioc.value, ioc.skipped_reason is None) for ioc in alert.iocs}
    assert found == EXPECTED[name].iocs
    assert len(alert.iocs) == len(found), "an IOC is listed twice"
    # And so are the resources a response could act on
    assert set(alert.resources) == EXPECTED[name].resources
    assert alert.source == "guardduty"


def test_backdoor_sample_reads_as_the_console_shows_it() -> None:
    # Given the C&C DNS sample
    document = load(BACKDOOR)

    # When it is parsed
    alert = only_alert(document)

    # Then every field of the normalised alert comes from the finding
    assert alert.id == "963561db131bebb39f8f302239bf6f13"
    assert alert.type == "Backdoor:EC2/C&CActivity.B!DNS"
    assert alert.title.startswith("Command and Control server domain name queried")
    assert (alert.severity.score, alert.severity.label) == (8.0, "high")
    assert (alert.account, alert.region) == ("123456789012", "us-east-1")
    assert alert.created_at.isoformat() == "2025-03-18T14:02:11.482000+00:00"
    assert alert.version == alert.updated_at.isoformat()
    assert [ioc.found_at for ioc in alert.iocs] == ["service.action.dnsRequestAction.domain"]


def test_port_probe_names_where_each_address_was_found_and_why_one_is_skipped() -> None:
    # Given the port probe sample: one Tor exit node, one documentation address
    document = load(PORT_PROBE)

    # When it is parsed
    alert = only_alert(document)

    # Then each address keeps its own path and only the documentation one is skipped, with the reason
    probes = "service.action.portProbeAction.portProbeDetails"
    assert [(ioc.value, ioc.found_at, ioc.skipped_reason) for ioc in alert.iocs] == [
        ("23.129.64.215", f"{probes}[0].remoteIpDetails.ipAddressV4", None),
        ("198.51.100.7", f"{probes}[1].remoteIpDetails.ipAddressV4", "documentation address (RFC 5737)"),
    ]


def test_real_samples_spend_no_lookup_on_their_addresses() -> None:
    # Given the real public samples, whose addresses are all documentation ranges or 0.0.0.0
    reasons = {}
    for name in EXPECTED:
        if name.startswith("synthetic-"):
            continue
        # When each is parsed
        for ioc in only_alert(load(name)).iocs:
            if ioc.type.value == "ip":
                reasons[ioc.value] = ioc.skipped_reason

    # Then no address will be looked up, and the reasons say why
    assert reasons == {
        "0.0.0.0": "unspecified address",
        "198.51.100.0": "documentation address (RFC 5737)",
    }


# --- the three deliveries of one finding ---------------------------------------------------------


def test_event_bare_finding_and_get_findings_give_the_same_alert() -> None:
    # Given one finding as EventBridge delivers it, as the API returns it, and as get-findings prints it
    event = load(PORT_PROBE)
    bare = copy.deepcopy(event["detail"])
    get_findings = {"Findings": [pascal_case(event["detail"])]}

    # When each is parsed
    from_event, from_bare, from_cli = (only_alert(document) for document in (event, bare, get_findings))

    # Then they are the same alert, and so the same case
    assert from_event == from_bare == from_cli
    assert from_event.case_id == from_cli.case_id


def test_get_findings_gives_one_alert_per_finding_in_order() -> None:
    # Given get-findings output with two findings
    output = load(GET_FINDINGS)
    second = copy.deepcopy(output["Findings"][0])
    second["Id"] = "9d2f7a3c1e5b48f6a0c2d4e6f8a1b3c5"
    second["Service"]["Action"]["DnsRequestAction"]["Domain"] = "Update-Check.Example.ORG."
    output["Findings"].append(second)

    # When it is parsed
    alerts = parse_alerts(output)

    # Then there is one alert per finding, each with its own IOC in canonical form
    assert [alert.id for alert in alerts] == [
        "034f3664616c49cb85349d0511ecd306",
        "9d2f7a3c1e5b48f6a0c2d4e6f8a1b3c5",
    ]
    assert [(ioc.value, ioc.skipped_reason) for ioc in alerts[1].iocs] == [
        ("update-check.example.org", "reserved name (example.org, RFC 2606)")
    ]


def test_get_findings_without_findings_is_refused() -> None:
    error = rejection({"Findings": []})
    assert error.field == "Findings"
    assert "empty" in error.reason


# --- versions and duplicates ---------------------------------------------------------------------


def test_version_falls_back_to_the_count_when_updated_at_is_missing() -> None:
    # Given a finding without updatedAt, seen three times and then a fourth time
    event = load(PORT_PROBE)
    del event["detail"]["updatedAt"]
    again = copy.deepcopy(event)
    again["detail"]["service"]["count"] = 4

    # When both are parsed
    first, later = only_alert(event), only_alert(again)

    # Then the count versions the finding, so the fourth sighting is a new case
    assert first.version == "count-3"
    assert first.updated_at == first.created_at
    assert later.version == "count-4"
    assert first.case_id != later.case_id


def test_a_redelivered_finding_is_the_same_case() -> None:
    assert only_alert(load(PORT_PROBE)).case_id == only_alert(load(PORT_PROBE)).case_id


def test_the_same_address_probing_twice_is_one_ioc_found_at_its_first_place() -> None:
    # Given a port probe whose two probes come from the same address, spelt differently
    event = load(PORT_PROBE)
    probes = event["detail"]["service"]["action"]["portProbeAction"]["portProbeDetails"]
    probes[0]["remoteIpDetails"]["ipAddressV4"] = "::ffff:23.129.64.215"
    probes[1]["remoteIpDetails"]["ipAddressV4"] = "23.129.64.215"

    # When it is parsed
    alert = only_alert(event)

    # Then the address is listed once, where it was first found
    assert [(ioc.value, ioc.found_at) for ioc in alert.iocs] == [
        ("23.129.64.215", "service.action.portProbeAction.portProbeDetails[0].remoteIpDetails.ipAddressV4")
    ]


def test_a_connection_to_the_instances_own_public_address_is_never_looked_up() -> None:
    # Given a network connection whose remote end is the instance's own public IP
    event = load(BACKDOOR)
    event["detail"]["service"]["action"] = {
        "actionType": "NETWORK_CONNECTION",
        "networkConnectionAction": {
            "connectionDirection": "INBOUND",
            "remoteIpDetails": {"ipAddressV4": "54.210.17.33"},
        },
    }

    # When it is parsed
    alert = only_alert(event)

    # Then the address is kept on the case, skipped, with the reason
    assert [(ioc.value, ioc.skipped_reason) for ioc in alert.iocs] == [
        ("54.210.17.33", "address of the alert's own resource")
    ]


def test_api_call_domain_and_threat_intelligence_hash_are_iocs() -> None:
    # Given an API call made through a domain, with a threat list that matched a file
    event = load(TOR_CALLER)
    service = event["detail"]["service"]
    service["action"]["awsApiCallAction"]["domainDetails"] = {"domain": "Relay.Onion-Gate.NET"}
    sha256 = "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08"
    service["evidence"] = {
        "threatIntelligenceDetails": [{"threatListName": "custom", "threatFileSha256": sha256}]
    }

    # When it is parsed
    alert = only_alert(event)

    # Then the address, the domain and the hash are all IOCs, canonical, with their paths
    assert [(ioc.type.value, ioc.value, ioc.found_at) for ioc in alert.iocs] == [
        ("ip", "23.129.64.215", "service.action.awsApiCallAction.remoteIpDetails.ipAddressV4"),
        ("domain", "relay.onion-gate.net", "service.action.awsApiCallAction.domainDetails.domain"),
        ("file", sha256.lower(), "service.evidence.threatIntelligenceDetails[0].threatFileSha256"),
    ]


# --- refusals ------------------------------------------------------------------------------------


def _without_service(event: dict[str, Any]) -> None:
    del event["detail"]["service"]


def _without_id(event: dict[str, Any]) -> None:
    del event["detail"]["id"]


def _severity_as_word(event: dict[str, Any]) -> None:
    event["detail"]["severity"] = "HIGH"


def _severity_out_of_range(event: dict[str, Any]) -> None:
    event["detail"]["severity"] = 11


def _created_at_without_zone(event: dict[str, Any]) -> None:
    event["detail"]["createdAt"] = "2025-03-18 14:02:11"


def _short_account(event: dict[str, Any]) -> None:
    event["detail"]["accountId"] = "12345"


def _no_version_at_all(event: dict[str, Any]) -> None:
    del event["detail"]["updatedAt"]
    del event["detail"]["service"]["count"]


def _security_hub_source(event: dict[str, Any]) -> None:
    event["source"] = "aws.securityhub"


def _malware_scan_detail_type(event: dict[str, Any]) -> None:
    event["detail-type"] = "GuardDuty Malware Protection Object Scan Result"


def _domain_with_path(event: dict[str, Any]) -> None:
    event["detail"]["service"]["action"]["dnsRequestAction"]["domain"] = "evil.com/../admin"


def _domain_with_line_break(event: dict[str, Any]) -> None:
    event["detail"]["service"]["action"]["dnsRequestAction"]["domain"] = "evil.com\r\nX-Injected: 1"


def _domain_as_number(event: dict[str, Any]) -> None:
    event["detail"]["service"]["action"]["dnsRequestAction"]["domain"] = 42


def _instance_without_id(event: dict[str, Any]) -> None:
    del event["detail"]["resource"]["instanceDetails"]["instanceId"]


DNS_DOMAIN = "detail.service.action.dnsRequestAction.domain"


@pytest.mark.parametrize(
    ("break_it", "field", "reason"),
    [
        (_without_service, "detail.service", "missing"),
        (_without_id, "detail.id", "missing"),
        (_severity_as_word, "detail.severity", "expected a number from 0 to 10, got 'HIGH'"),
        (_severity_out_of_range, "detail.severity", "expected a number from 0 to 10, got 11"),
        (_created_at_without_zone, "detail.createdAt", "ISO 8601 timestamp with a time zone"),
        (_short_account, "detail.accountId", "12-digit AWS account id"),
        (_no_version_at_all, "detail.updatedAt", "service.count"),
        (_security_hub_source, "source", "'aws.securityhub'"),
        (_malware_scan_detail_type, "detail-type", "expected 'GuardDuty Finding'"),
        (_domain_with_path, DNS_DOMAIN, "'/' is not allowed in a domain"),
        (_domain_with_line_break, DNS_DOMAIN, "line break (CR/LF)"),
        (_domain_as_number, DNS_DOMAIN, "expected a string, got a number"),
        (_instance_without_id, "detail.resource.instanceDetails.instanceId", "missing"),
    ],
    ids=lambda value: getattr(value, "__name__", None),
)
def test_a_broken_event_is_refused_naming_the_field(break_it: Any, field: str, reason: str) -> None:
    # Given a good event broken in one place
    event = load(BACKDOOR)
    break_it(event)

    # When it is parsed
    error = rejection(event)

    # Then the refusal names the field at fault and says what is wrong with it
    assert error.field == field
    assert reason in error.reason


def test_a_hostile_value_in_get_findings_output_is_named_as_the_sender_spelt_it() -> None:
    # Given get-findings output whose domain would reach into another VirusTotal path
    output = load(GET_FINDINGS)
    output["Findings"][0]["Service"]["Action"]["DnsRequestAction"]["Domain"] = "3322.org/../files/abc"

    # When it is parsed
    error = rejection(output)

    # Then the field is named in PascalCase, under its finding
    assert error.field == "Findings[0].Service.Action.DnsRequestAction.Domain"


def test_an_object_where_a_string_belongs_is_refused() -> None:
    event = load(TOR_CALLER)
    event["detail"]["service"]["action"]["awsApiCallAction"]["remoteIpDetails"] = "23.129.64.215"

    error = rejection(event)

    assert error.field == "detail.service.action.awsApiCallAction.remoteIpDetails"
    assert error.reason == "expected an object, got a string"


def test_the_trimmed_real_event_is_refused_because_it_does_not_say_it_comes_from_guardduty() -> None:
    # Given the real event that was cut down by hand: no source, detail-type or account
    event = load("invalid/guardduty-ssh-bruteforce-trimmed-event.json")

    # When it is parsed
    error = rejection(event)

    # Then the refusal says which field is missing and what it should hold
    assert error.field == "source"
    assert "'aws.guardduty'" in error.reason


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ([], "unknown shape: expected an EventBridge GuardDuty event, a GuardDuty finding or get-findings"),
        ("GuardDuty", "got a string"),
        ({"message": "foo1", "level": 3}, "got keys ['level', 'message']"),
    ],
)
def test_an_unknown_shape_is_refused_with_what_was_expected_and_what_came(
    document: Any, expected: str
) -> None:
    error = rejection(document)
    assert expected in str(error)


def test_a_whole_sqs_event_is_refused_as_not_a_message_body() -> None:
    error = rejection(load("invalid/sqs-batch-mixed.json"))
    assert error.field == "Records"
    assert "each record's body" in error.reason


def test_mixed_sqs_batch_has_one_good_record_one_non_json_body_and_one_event_without_service() -> None:
    # Given the mixed SQS batch sample
    records = load("invalid/sqs-batch-mixed.json")["Records"]
    good, not_json, no_service = (record["body"] for record in records)

    # When each body is decoded and parsed
    alert = only_alert(json.loads(good))
    with pytest.raises(json.JSONDecodeError):
        json.loads(not_json)
    error = rejection(json.loads(no_service))

    # Then the first is the port probe, and the third is refused naming detail.service
    assert alert == only_alert(load(PORT_PROBE))
    assert (error.field, error.reason) == ("detail.service", "missing")
    assert str(error) == "detail.service: missing"
