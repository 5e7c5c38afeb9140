"""GuardDuty intake: each sample event becomes the Alert an analyst would expect; a bad value costs only
itself (a skipped IOC, a noted stand-in), and a finding that cannot be identified is refused alone with a
reason that names the field at fault."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from moto.events.models import EventPattern

from tests.unit.timing import time_ratio
from vtriage.eligibility import Place, eligibility
from vtriage.errors import InvalidAlertError
from vtriage.intake import FindingRefusal, IntakeResult, read_document
from vtriage.intake.fields import PLACEHOLDER_REASON
from vtriage.models import Action, Alert, IocOutcome, Provenance, Resource, ResourceType, Subject, Verdict
from vtriage.playbook import plan_actions
from vtriage_local.template import load_template

EVENTS = Path(__file__).resolve().parents[2] / "events"

BACKDOOR = "synthetic-guardduty-backdoor-c2-dns.json"
TOR_CALLER = "synthetic-guardduty-iam-tor-caller.json"
PORT_PROBE = "synthetic-guardduty-portprobe.json"
GET_FINDINGS = "guardduty-getfindings-trojan-droppoint-dns.json"
KUBERNETES = "synthetic-guardduty-kubernetes-api.json"
RDS_LOGIN = "synthetic-guardduty-rds-login.json"
LAMBDA_NETWORK = "synthetic-guardduty-lambda-network.json"
RUNTIME = "synthetic-guardduty-runtime-process.json"
EBS_MALWARE = "synthetic-guardduty-ebs-malware.json"
S3_SCAN = "synthetic-guardduty-malware-s3-object-scan.json"

TOR_EXIT = "23.129.64.215"
KNOWN_SHA256 = "4bc00f7d638e042da764e8648c03c0db46700599dd4f08d117e3e9e8b538519b"
KNOWN_MD5 = "546bb6ef89bebfb053999777f6930d7e"
EICAR_SHA256 = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f"

SAMPLE_INSTANCE = Resource(
    type=ResourceType.INSTANCE,
    id="i-99999999",
    vpc_id="GeneratedFindingVPCId",
    network_interface_ids=("eni-bfcffe88",),
    addresses=("10.0.0.1", "198.51.100.0"),
)
SAMPLE_ACCESS_KEY = Resource(
    type=ResourceType.ACCESS_KEY,
    id="GeneratedFindingAccessKeyId",
    user_name="GeneratedFindingUserName",
    user_type="IAMUser",
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
    # The same finding from member account 111122223333, in eu-west-1.
    "synthetic-guardduty-member-account-c2-dns.json": Expected(
        iocs={("domain", "tawuhoju.com", True)},
        resources={
            Resource(
                type=ResourceType.INSTANCE,
                id="i-0d4e8a1c7b2f93e56",
                vpc_id="vpc-0e5f7a9b1c3d24680",
                network_interface_ids=("eni-0c3b5d7e9f1a2b468",),
                addresses=("10.0.1.25", "203.0.113.33"),
            )
        },
    ),
    TOR_CALLER: Expected(
        iocs={("ip", "23.129.64.215", True)},
        resources={
            Resource(
                type=ResourceType.ACCESS_KEY,
                id="AKIAIOSFODNN7EXAMPLE",
                user_name="ci-deployer",
                user_type="IAMUser",
            )
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
    # An EKS cluster, a database and a Lambda function: nothing a response acts on.
    KUBERNETES: Expected(iocs={("ip", TOR_EXIT, True), ("ip", "192.0.2.44", False)}, resources=set()),
    RDS_LOGIN: Expected(iocs={("ip", TOR_EXIT, True)}, resources=set()),
    LAMBDA_NETWORK: Expected(iocs={("ip", TOR_EXIT, True)}, resources=set()),
    RUNTIME: Expected(iocs={("file", KNOWN_SHA256, True)}, resources={WEB_FRONTEND}),
    EBS_MALWARE: Expected(
        iocs={("file", KNOWN_SHA256, True), ("file", EICAR_SHA256, True)},
        resources={
            Resource(
                type=ResourceType.INSTANCE,
                id="i-0a5c7e9b1d3f24680",
                vpc_id="vpc-0d2e4f6a8b0c13579",
                network_interface_ids=("eni-04b6d8f0a2c4e6b81",),
                addresses=("10.0.2.88",),
            )
        },
    ),
    S3_SCAN: Expected(
        iocs={("file", KNOWN_MD5, True)},
        resources={
            Resource(
                type=ResourceType.S3_BUCKET,
                id="vtriage-demo-uploads-123456789012",
                bucket="vtriage-demo-uploads-123456789012",
            ),
            Resource(
                type=ResourceType.S3_OBJECT,
                id="vtriage-demo-uploads-123456789012/incoming/2025/03/remittance-advice.dll",
                bucket="vtriage-demo-uploads-123456789012",
                key="incoming/2025/03/remittance-advice.dll",
                version_id="3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrH",
                etag=KNOWN_MD5,
            ),
        },
    ),
}


def load(name: str) -> Any:
    return json.loads((EVENTS / name).read_text())


def only_alert(document: Any, **options: Any) -> Alert:
    result = read_document(document, **options)
    assert (result.refused, result.ignored) == ((), ())
    assert len(result.alerts) == 1
    return result.alerts[0]


def only_refusal(document: Any) -> FindingRefusal:
    """The refusal of a document holding one finding that cannot be identified."""
    result = read_document(document)
    assert (result.alerts, result.ignored) == ((), ())
    [refused] = result.refused
    return refused


def pascal_case(value: Any) -> Any:
    """The document as `aws guardduty get-findings` spells it: every key with a capital first letter."""
    if isinstance(value, dict):
        return {key[:1].upper() + key[1:]: pascal_case(item) for key, item in value.items()}
    if isinstance(value, list):
        return [pascal_case(item) for item in value]
    return value


def rejection(document: Any) -> InvalidAlertError:
    """The refusal of a document in which no finding can be identified at all."""
    with pytest.raises(InvalidAlertError) as caught:
        read_document(document)
    return caught.value


def skipped(alert: Alert) -> list[tuple[str, str, str | None]]:
    """(value, where it was found, why it is skipped) of every IOC the alert keeps but never looks up."""
    return [(ioc.value, ioc.found_at, ioc.skipped_reason) for ioc in alert.iocs if ioc.skipped_reason]


# --- every sample ---------------------------------------------------------------------------------


def test_every_sample_event_has_its_expectations_written_down() -> None:
    # Given the GuardDuty sample events a user runs through the demo
    samples = {path.name for path in EVENTS.glob("*guardduty*.json") if "securityhub" not in path.name}

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
    alerts = read_document(output).alerts

    # Then there is one alert per finding, each with its own IOC in canonical form
    assert [alert.id for alert in alerts] == [
        "034f3664616c49cb85349d0511ecd306",
        "9d2f7a3c1e5b48f6a0c2d4e6f8a1b3c5",
    ]
    assert [(ioc.value, ioc.skipped_reason) for ioc in alerts[1].iocs] == [
        ("update-check.example.org", "reserved name (example.org, RFC 2606)")
    ]


@pytest.mark.parametrize(
    ("document", "key"),
    [({"Findings": []}, "Findings"), ({"findings": []}, "findings")],
    ids=["aws guardduty get-findings", "the API's GetFindings response"],
)
def test_a_page_of_get_findings_with_no_finding_is_ignored_saying_so(
    document: dict[str, Any], key: str
) -> None:
    # Given get-findings output with no finding, as a poller meets one (elastic/integrations' GuardDuty
    # pipeline test data holds the API's `{"findings":[]}`)
    # When intake reads it
    result = read_document(document)

    # Then nothing is refused and no case is made: the page is ignored, with the reason
    assert (result.alerts, result.refused) == ((), ())
    [ignored] = result.ignored
    assert (ignored.where, ignored.reason) == (
        key,
        f"{key} is empty: a page of get-findings with no finding, nothing to triage",
    )


def test_the_apis_get_findings_response_gives_the_same_alert_as_the_cli() -> None:
    # Given a finding as the GuardDuty API's GetFindings response holds it (`findings`, camelCase) and as
    # `aws guardduty get-findings` prints it (`Findings`, PascalCase)
    event = load(BACKDOOR)
    api = {"findings": [event["detail"]]}
    cli = {"Findings": [pascal_case(event["detail"])]}

    # When intake reads each, Then they are the same alert, placed where each document holds it
    assert only_alert(api) == only_alert(cli)
    assert read_document({"findings": [event["detail"], 7]}).refused[0].where == "findings[1]"


def test_a_lone_findings_list_beside_other_keys_is_no_shape_vtriage_knows() -> None:
    # Given an object whose `findings` sits beside a key no GetFindings response has
    error = rejection({"findings": [], "count": 0})

    # When intake reads it, Then it is refused whole as an unknown shape, naming its keys
    assert error.reason.startswith("unknown shape")
    assert error.reason.endswith("got keys ['count', 'findings']")


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


def test_version_is_the_raw_text_when_updated_at_does_not_read_and_there_is_no_count() -> None:
    # Given a finding whose updatedAt is no time and whose service has no count, then its later update
    event = load(PORT_PROBE)
    event["detail"]["updatedAt"] = "last Tuesday"
    del event["detail"]["service"]["count"]
    later = copy.deepcopy(event)
    later["detail"]["updatedAt"] = "this Wednesday"

    # When both are parsed
    first, second = only_alert(event), only_alert(later)

    # Then the text as written versions each, so the update is a new case, and no action runs on either
    assert first.version == "raw-'last Tuesday'"
    assert second.version == "raw-'this Wednesday'"
    assert first.case_id != second.case_id
    assert any(reason.startswith("detail.updatedAt: ") for reason in first.not_actionable)


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


# --- every action and evidence block ------------------------------------------------------------

ACTION = "service.action"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            KUBERNETES,
            [
                (TOR_EXIT, f"{ACTION}.kubernetesApiCallAction.remoteIpDetails.ipAddressV4", None),
                (
                    "192.0.2.44",
                    f"{ACTION}.kubernetesApiCallAction.sourceIPs[0]",
                    "documentation address (RFC 5737)",
                ),
            ],
        ),
        (RDS_LOGIN, [(TOR_EXIT, f"{ACTION}.rdsLoginAttemptAction.remoteIpDetails.ipAddressV4", None)]),
        (LAMBDA_NETWORK, [(TOR_EXIT, f"{ACTION}.networkConnectionAction.remoteIpDetails.ipAddressV4", None)]),
    ],
)
def test_each_action_gives_its_remote_addresses_with_where_they_were_found(
    name: str, expected: list[tuple[str, str, str | None]]
) -> None:
    # Given a Kubernetes API call, an RDS login attempt or a Lambda function's network connection
    # When it is parsed
    alert = only_alert(load(name))

    # Then every remote address is an IOC, in order, each once, with its path and any reason to skip it
    assert [(ioc.value, ioc.found_at, ioc.skipped_reason) for ioc in alert.iocs] == expected


def test_a_remote_ipv6_address_is_read_beside_the_ipv4_one() -> None:
    # Given an RDS login attempt whose remote end GuardDuty gives in both families
    event = load(RDS_LOGIN)
    remote = event["detail"]["service"]["action"]["rdsLoginAttemptAction"]["remoteIpDetails"]
    remote["ipAddressV6"] = "2001:DB8:0:0::7"

    # When it is parsed
    alert = only_alert(event)

    # Then both are kept, the IPv6 one canonical and skipped as a documentation address
    assert [(ioc.value, ioc.skipped_reason) for ioc in alert.iocs] == [
        (TOR_EXIT, None),
        ("2001:db8::7", "documentation address (RFC 3849)"),
    ]


def test_kubernetes_source_ips_in_get_findings_output_are_named_as_the_api_spells_them() -> None:
    # Given get-findings output of the Kubernetes sample, with a hostile second source address and a
    # remote address block that is not an object
    detail = load(KUBERNETES)["detail"]
    detail["service"]["action"]["kubernetesApiCallAction"]["sourceIPs"][1] = "23.129.64.215/../x"
    detail["service"]["action"]["kubernetesApiCallAction"]["remoteIpDetails"] = "23.129.64.215"
    output = {"Findings": [pascal_case(detail)]}
    call = output["Findings"][0]["Service"]["Action"]["KubernetesApiCallAction"]
    call["SourceIps"] = call.pop("SourceIPs")

    # When it is parsed
    alert = only_alert(output)

    # Then the hostile address is kept skipped, found where the API (camelCase) puts it, as in every delivery
    assert skipped(alert)[1:] == [
        (
            "23.129.64.215/../x",
            f"{ACTION}.kubernetesApiCallAction.sourceIPs[1]",
            "a network prefix ('/') is not an IP address: '23.129.64.215/../x'",
        )
    ]
    # And the note on what was not read names the field as boto3 and the CLI spell it
    assert alert.notes == (
        "Findings[0].Service.Action.KubernetesApiCallAction.RemoteIpDetails:"
        " expected an object, got a string; not read for IOCs",
    )


def test_runtime_hashes_come_from_the_process_its_context_and_the_threat_list() -> None:
    # Given a Runtime Monitoring finding naming a hash in every documented place, and one in the
    # process lineage, where GuardDuty documents none
    event = load(RUNTIME)
    service = event["detail"]["service"]
    process = service["runtimeDetails"]["process"]
    process["executableSha256"] = "a" * 64
    process["lineage"][0]["executableSha256"] = "f" * 64
    service["runtimeDetails"]["context"] = {
        "modifyingProcess": {"name": "dropper", "executableSha256": "B" * 64},
        "targetProcess": {"name": "sshd", "executableSha256": "c" * 64},
        "moduleName": "rootkit",
        "moduleSha256": "d" * 64,
    }

    # When it is parsed
    alert = only_alert(event)

    # Then every documented hash is an IOC, canonical (lower case), with its path; the lineage is not read
    runtime = "service.runtimeDetails"
    assert [(ioc.value, ioc.found_at) for ioc in alert.iocs] == [
        (KNOWN_SHA256, "service.evidence.threatIntelligenceDetails[0].threatFileSha256"),
        ("a" * 64, f"{runtime}.process.executableSha256"),
        ("b" * 64, f"{runtime}.context.modifyingProcess.executableSha256"),
        ("c" * 64, f"{runtime}.context.targetProcess.executableSha256"),
        ("d" * 64, f"{runtime}.context.moduleSha256"),
    ]


def test_an_ebs_scan_gives_every_file_paths_hash_once() -> None:
    # Given the EBS malware scan sample: two copies of one trojan and an EICAR test file
    alert = only_alert(load(EBS_MALWARE))

    # Then each distinct hash is one IOC, found at its first file path
    names = "service.ebsVolumeScanDetails.scanDetections.threatDetectedByName.threatNames"
    assert [(ioc.value, ioc.found_at) for ioc in alert.iocs] == [
        (KNOWN_SHA256, f"{names}[0].filePaths[0].hash"),
        (EICAR_SHA256, f"{names}[1].filePaths[0].hash"),
    ]


def test_an_ebs_scan_value_that_is_no_hash_is_skipped_beside_the_valid_one() -> None:
    # Given an EBS malware scan listing a valid sha256 beside a value that is not a hash (as GuardDuty's
    # own EBS samples do)
    event = load(EBS_MALWARE)
    names = event["detail"]["service"]["ebsVolumeScanDetails"]["scanDetections"]["threatDetectedByName"]
    names["threatNames"][1]["filePaths"][0]["hash"] = "../../files/eicar"

    # When it is parsed
    alert = only_alert(event)

    # Then the valid hash is looked up and the other is kept, skipped with the reason and its field
    files = "service.ebsVolumeScanDetails.scanDetections.threatDetectedByName.threatNames"
    assert [(ioc.value, ioc.skipped_reason) for ioc in alert.iocs if ioc.skipped_reason is None] == [
        (KNOWN_SHA256, None)
    ]
    assert skipped(alert) == [
        (
            "../../files/eicar",
            f"{files}[1].filePaths[0].hash",
            "not an md5, sha1 or sha256 hash (32, 40 or 64 hex digits): '../../files/eicar'",
        )
    ]
    assert alert.not_actionable == ()


def _s3_malware_finding() -> dict[str, Any]:
    """A Malware Protection for S3 finding as a detector reports it (`Object:S3/MaliciousFile`), built on
    the real S3 sample: its bucket, one object with its hash, and the scan's threats."""
    finding: dict[str, Any] = load("guardduty-s3-pentest-parrot-linux.json")
    finding["type"] = "Object:S3/MaliciousFile"
    finding["resource"]["resourceType"] = "S3Object"
    finding["resource"]["s3BucketDetails"][0]["s3ObjectDetails"] = [
        {"key": "incoming/remittance.zip", "hash": KNOWN_SHA256.upper(), "versionId": "v1"}
    ]
    del finding["service"]["action"]
    finding["service"]["malwareScanDetails"] = {
        "threats": [
            {
                "name": "Trojan.DllHijacker",
                "source": "Amazon",
                "hash": KNOWN_SHA256,
                "itemPaths": [{"nestedItemPath": "remittance.zip/version.dll", "hash": "e" * 64}],
                "itemDetails": [{"itemPath": "remittance.zip/readme.exe", "hash": "b" * 40}],
            }
        ]
    }
    return finding


def test_a_detector_s3_malware_finding_names_the_object_and_every_threat_hash() -> None:
    # Given a Malware Protection for S3 finding from a detector
    finding = _s3_malware_finding()

    # When it is parsed
    alert = only_alert(finding)

    # Then the threats' hashes (nested items too) and the object's own hash are IOCs, each once
    threats = "service.malwareScanDetails.threats[0]"
    assert [(ioc.value, ioc.found_at) for ioc in alert.iocs] == [
        (KNOWN_SHA256, f"{threats}.hash"),
        ("e" * 64, f"{threats}.itemPaths[0].hash"),
        ("b" * 40, f"{threats}.itemDetails[0].hash"),
    ]
    # And the object is a resource remediation can quarantine, the version scanned with it
    assert (
        Resource(
            type=ResourceType.S3_OBJECT,
            id="bucketName/incoming/remittance.zip",
            bucket="bucketName",
            key="incoming/remittance.zip",
            version_id="v1",
        )
        in alert.resources
    )


def test_an_attack_sequence_gives_its_endpoints_and_its_actors_process_hashes() -> None:
    # Given an attack sequence finding naming network endpoints and a process
    event = load(TOR_CALLER)
    event["detail"]["service"]["detection"] = {
        "sequence": {
            "uid": "sequence-1",
            "description": "Credentials used from a Tor exit node, then data staged",
            "actors": [
                {"id": "actor-1", "process": {"name": "curl", "path": "/usr/bin/curl", "sha256": "c" * 64}}
            ],
            "endpoints": [
                {"id": "endpoint-1", "ip": "10.0.4.9"},
                {"id": "endpoint-2", "domain": "tawuhoju.com", "port": 443},
            ],
        }
    }

    # When it is parsed
    alert = only_alert(event)

    # Then the endpoints and the process hash are IOCs beside the API call's address
    sequence = "service.detection.sequence"
    assert [(ioc.value, ioc.found_at, ioc.skipped_reason) for ioc in alert.iocs] == [
        (TOR_EXIT, f"{ACTION}.awsApiCallAction.remoteIpDetails.ipAddressV4", None),
        ("10.0.4.9", f"{sequence}.endpoints[0].ip", "private address"),
        ("tawuhoju.com", f"{sequence}.endpoints[1].domain", None),
        ("c" * 64, f"{sequence}.actors[0].process.sha256", None),
    ]


# --- Malware Protection for S3: the object scan result event -------------------------------------


def test_s3_scan_result_reads_as_an_alert_on_the_object() -> None:
    # Given the scan result of an object with threats found
    event = load(S3_SCAN)

    # When it is parsed
    alert = only_alert(event)

    # Then the alert is the object, versioned by its version id, High as GuardDuty rates the same finding
    assert alert.id == "arn:aws:s3:::vtriage-demo-uploads-123456789012/incoming/2025/03/remittance-advice.dll"
    assert alert.type == "Object:S3/MaliciousFile"
    assert alert.title == (
        "Malware Protection for S3 found Trojan.DllHijacker in"
        " s3://vtriage-demo-uploads-123456789012/incoming/2025/03/remittance-advice.dll"
    )
    assert (alert.severity.score, alert.severity.label) == (8.0, "high")
    assert alert.version == "version-3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrH"
    assert (alert.account, alert.region) == ("123456789012", "us-east-1")
    assert alert.created_at.isoformat() == alert.updated_at.isoformat() == "2025-03-24T13:30:45+00:00"
    # And its ETag, an MD5, is the IOC, with where it came from
    assert [(ioc.value, ioc.found_at) for ioc in alert.iocs] == [(KNOWN_MD5, "s3ObjectDetails.eTag")]


@pytest.mark.parametrize("status", ["NO_THREATS_FOUND", "UNSUPPORTED", "ACCESS_DENIED", "FAILED"])
def test_a_scan_result_without_threats_makes_no_alert(status: str) -> None:
    # Given a scan result that found nothing (or could not scan)
    event = load(S3_SCAN)
    event["detail"]["scanResultDetails"] = {"scanResultStatus": status, "threats": None}

    # When it is parsed
    result = read_document(event)

    # Then there is nothing to triage: no alert, no refusal, the scan result acknowledged with its status
    assert (result.alerts, result.refused) == ((), ())
    [ignored] = result.ignored
    assert ignored.reason == f"detail.scanResultDetails.scanResultStatus is {status!r}: no threat found"
    assert (
        ignored.alert_id
        == "arn:aws:s3:::vtriage-demo-uploads-123456789012/incoming/2025/03/remittance-advice.dll"
    )


def test_a_scan_result_is_versioned_by_version_id_then_etag_then_event_id() -> None:
    # Given one scan result in an unversioned bucket ("null" is S3's version id there), then without an ETag
    event = load(S3_SCAN)
    details = event["detail"]["s3ObjectDetails"]
    details["versionId"] = "null"
    by_etag = only_alert(event)
    del details["versionId"], details["eTag"]
    by_event = only_alert(event)
    again = copy.deepcopy(event)
    again["id"] = "0c2e4a6b-8d0f-4135-9a7b-c9e1f3a5b7d9"

    # Then the ETag, and failing it the event id, tells the uploads apart
    assert by_etag.version == f"etag-{KNOWN_MD5}"
    assert by_event.version == "event-f2a4c6e8-0b1d-4f3a-9c5e-7a9b1d3f5a7c"
    assert by_event.iocs == ()
    # And the same event delivered twice is one case, a new scan result another
    assert only_alert(copy.deepcopy(event)).case_id == by_event.case_id
    assert only_alert(again).case_id != by_event.case_id


@pytest.mark.parametrize(
    "etag", ["546bb6ef89bebfb053999777f6930d7e-3", "ASIAI44QH8DHBEXAMPLE", "not hex at all 0123456789abcd"]
)
def test_an_etag_that_is_no_md5_is_kept_skipped_and_the_alert_stands(etag: str) -> None:
    # Given an object uploaded in parts, or an ETag in another form (as in AWS's example event)
    event = load(S3_SCAN)
    event["detail"]["s3ObjectDetails"]["eTag"] = etag

    # When it is parsed
    alert = only_alert(event)

    # Then nothing is looked up, the ETag is kept with the reason, and the object can still be quarantined
    assert skipped(alert) == [
        (
            etag,
            "s3ObjectDetails.eTag",
            "an S3 ETag that is no MD5 (an object uploaded in parts, or encrypted with SSE-KMS or SSE-C):"
            " no hash to look up",
        )
    ]
    assert {resource.type for resource in alert.resources} == {ResourceType.S3_BUCKET, ResourceType.S3_OBJECT}


def test_a_hostile_object_key_is_kept_on_the_resource_and_escaped_in_the_title() -> None:
    # Given an object whose key an uploader chose to break things
    event = load(S3_SCAN)
    event["detail"]["s3ObjectDetails"]["objectKey"] = "../../x\r\nX-Injected: 1"

    # When it is parsed
    alert = only_alert(event)

    # Then the key is kept as it is on the resource, for the quarantine, and never reaches a lookup
    [item] = [resource for resource in alert.resources if resource.type is ResourceType.S3_OBJECT]
    assert item.key == "../../x\r\nX-Injected: 1"
    assert [ioc.value for ioc in alert.iocs] == [KNOWN_MD5]
    # And the alert's id and title show it escaped, on one line
    escaped = "../../x\\r\\nX-Injected: 1"
    assert alert.id == f"arn:aws:s3:::vtriage-demo-uploads-123456789012/{escaped}"
    assert alert.title.endswith(f"s3://vtriage-demo-uploads-123456789012/{escaped}")


def _scan_without_bucket(event: dict[str, Any]) -> None:
    del event["detail"]["s3ObjectDetails"]["bucketName"]


def _scan_of_another_resource(event: dict[str, Any]) -> None:
    event["detail"]["resourceType"] = "EBS_VOLUME"


def _scan_without_result(event: dict[str, Any]) -> None:
    del event["detail"]["scanResultDetails"]


def _scan_with_key_as_number(event: dict[str, Any]) -> None:
    event["detail"]["s3ObjectDetails"]["objectKey"] = 42


@pytest.mark.parametrize(
    ("break_it", "reason"),
    [
        (_scan_without_bucket, "detail.s3ObjectDetails.bucketName: missing"),
        (
            _scan_of_another_resource,
            "detail.resourceType: unsupported resource type 'EBS_VOLUME': expected 'S3_OBJECT'",
        ),
        (_scan_without_result, "detail.scanResultDetails: missing"),
        (_scan_with_key_as_number, "detail.s3ObjectDetails.objectKey: expected a string, got a number"),
    ],
    ids=lambda value: getattr(value, "__name__", None),
)
def test_a_scan_result_naming_no_object_is_refused_naming_the_field(break_it: Any, reason: str) -> None:
    # Given a scan result that names no object (the alert's identity), or no result
    event = load(S3_SCAN)
    break_it(event)

    # When it is read, then it is refused, saying which field is wrong and how
    assert only_refusal(event) == FindingRefusal(where="", reason=reason)


@pytest.mark.parametrize(
    ("field", "value", "note"),
    [
        (
            "time",
            "2025-03-24 13:30:45",
            "time: '2025-03-24 13:30:45' has no time zone: read as UTC; read as 2025-03-24T13:30:45+00:00",
        ),
        ("account", "1234", "account: expected a 12-digit AWS account id, got '1234'; 'unknown' stands in"),
        ("time", None, "time: missing; 1970-01-01T00:00:00+00:00 stands in"),
    ],
)
def test_a_scan_result_with_a_malformed_time_or_account_is_triaged_but_never_acted_on(
    field: str, value: str | None, note: str
) -> None:
    # Given a scan result whose envelope time is in a vendor's own form or missing, or whose account is
    # malformed
    event = load(S3_SCAN)
    event[field] = value

    # When it is read
    alert = only_alert(event)

    # Then the alert stands, with a note on the case and a reason against any automatic action
    assert alert.notes == (note,)
    assert alert.not_actionable == (note.partition(";")[0],)
    assert [ioc.value for ioc in alert.iocs] == [KNOWN_MD5]


# --- Malware Protection for S3: the scan result's detail alone ---------------------------------------

SCAN_ALONE_NOTES = (
    "source: missing, and no detail-type: a Malware Protection for S3 scan result's detail alone, without"
    " its EventBridge event; read as GuardDuty's scan result by its own fields; the account, Region, time and"
    " id only the event gives are missing",
    "time: missing; 1970-01-01T00:00:00+00:00 stands in",
    "account: missing; 'unknown' stands in",
    "region: missing; 'unknown' stands in",
)


def test_a_scan_results_detail_alone_is_the_scan_result_on_its_object_missing_what_the_event_gives() -> None:
    # Given a scan result with threats found as an EventBridge target with InputPath $.detail delivers it:
    # its detail, without the event that names its account, Region, time and id
    event = load(S3_SCAN)
    detail = event["detail"]

    # When the detail alone is read, and the whole event
    alone = only_alert(detail)
    whole = only_alert(event)

    # Then it is the same scan result, GuardDuty's, on the same object, with the same IOC and version
    for field in ("id", "source", "type", "title", "severity", "version", "resources", "iocs"):
        assert getattr(alone, field) == getattr(whole, field), field
    # And what only the event gives is missing: each said, 'unknown' standing in, and no action runs on it
    assert (alone.account, alone.region) == ("unknown", "unknown")
    assert alone.notes == SCAN_ALONE_NOTES
    assert alone.not_actionable == tuple(note.partition(";")[0] for note in SCAN_ALONE_NOTES)


def test_a_scan_results_detail_alone_is_acted_on_nowhere_where_its_event_would_be() -> None:
    # Given a scan result in the deployment's own account whose object is found malicious, delivered by
    # the detector rules as its whole event, and as its detail alone
    event = load(S3_SCAN)
    whole, alone = only_alert(event), only_alert(event["detail"])
    place = Place(own_account="123456789012")

    def decided(alert: Alert) -> tuple[list[Action], tuple[str, ...]]:
        [md5] = alert.iocs
        found = IocOutcome(type=md5.type, value=md5.value, found_at=md5.found_at, verdict=Verdict.MALICIOUS)
        allowed = eligibility(alert, Provenance(channel="detector"), place, "approval").applied_to(alert)
        return plan_actions(allowed, [found]), allowed.not_actionable

    # When the deployment plans what may run on each
    whole_actions, whole_reasons = decided(whole)
    alone_actions, alone_reasons = decided(alone)

    # Then the whole event's object is acted on; the detail alone plans nothing, and the case says why:
    # no account is known, so none is the deployment's, and no Region
    assert ([action.type.value for action in whole_actions], whole_reasons) == (["quarantine_object"], ())
    assert alone_actions == []
    reasons = " ".join(alone_reasons)
    assert "account: missing" in reasons
    assert "the finding names account 'unknown', not this deployment's (123456789012)" in reasons
    assert "the finding names Region 'unknown', which is not a Region name" in reasons


def test_a_scan_results_detail_alone_without_threats_is_acknowledged_naming_its_field() -> None:
    # Given the detail alone of a scan result that found nothing
    detail = load(S3_SCAN)["detail"]
    detail["scanResultDetails"] = {"scanResultStatus": "NO_THREATS_FOUND", "threats": None}

    # When it is read, then it is ignored with its status, its field named where it is in the document
    result = read_document(detail)
    assert (result.alerts, result.refused) == ((), ())
    [ignored] = result.ignored
    assert ignored.reason == "scanResultDetails.scanResultStatus is 'NO_THREATS_FOUND': no threat found"


def test_a_scan_results_detail_alone_naming_no_object_is_refused_naming_the_field() -> None:
    # Given the detail alone of a scan result without its bucket, and an array of two details, the second
    # naming no key
    detail = load(S3_SCAN)["detail"]
    without_bucket = copy.deepcopy(detail)
    del without_bucket["s3ObjectDetails"]["bucketName"]
    without_key = copy.deepcopy(detail)
    del without_key["s3ObjectDetails"]["objectKey"]

    # When each is read
    refusal = only_refusal(without_bucket)
    listed = read_document([detail, without_key])

    # Then each is refused alone, with its field where it is in the document
    assert refusal == FindingRefusal(where="", reason="s3ObjectDetails.bucketName: missing")
    assert len(listed.alerts) == 1
    assert listed.refused == (FindingRefusal(where="[1]", reason="[1].s3ObjectDetails.objectKey: missing"),)


@pytest.mark.parametrize(
    "document",
    [
        {"schemaVersion": "2.0", "scanStatus": "COMPLETED"},
        {"resourceType": "S3_OBJECT", "schemaVersion": "1.0"},
        {"resourceType": "EBS_VOLUME", "scanResultDetails": {"scanResultStatus": "THREATS_FOUND"}},
    ],
)
def test_a_document_with_only_some_of_a_scan_results_marks_is_no_scan_result(
    document: dict[str, Any],
) -> None:
    # Given a document that has what a scan result found but not what it scanned (an S3 object), or the
    # other way round
    # When it is read, then it is of no known shape: the reason lists its keys
    with pytest.raises(InvalidAlertError, match="unknown shape"):
        read_document(document)


def test_the_template_rule_queues_scan_results_with_threats_and_only_those() -> None:
    # Given the EventBridge rule the template deploys for Malware Protection for S3
    rule = load_template()["Resources"]["GuardDutyMalwareScanRule"]["Properties"]
    matcher = EventPattern(None, rule["EventPattern"])
    found = load(S3_SCAN)
    clean = copy.deepcopy(found)
    clean["detail"]["scanResultDetails"] = {"scanResultStatus": "NO_THREATS_FOUND", "threats": None}

    # Then the sample is queued, a clean result is not, and the rule targets the alert queue
    assert matcher.matches_event(found)
    assert not matcher.matches_event(clean)
    assert [target["Arn"] for target in rule["Targets"]] == [{"Fn::GetAtt": ["AlertQueue", "Arn"]}]


# --- a finding that cannot be identified is refused, alone -----------------------------------------


def _without_id(event: dict[str, Any]) -> None:
    del event["detail"]["id"]


def _id_as_number(event: dict[str, Any]) -> None:
    event["detail"]["id"] = 42


@pytest.mark.parametrize(
    ("break_it", "reason"),
    [
        (_without_id, "detail.id: missing"),
        (_id_as_number, "detail.id: expected a string, got a number"),
    ],
    ids=lambda value: getattr(value, "__name__", None),
)
def test_a_finding_without_its_id_is_refused_naming_the_field(break_it: Any, reason: str) -> None:
    # Given a good event broken where the finding's identity is
    event = load(BACKDOOR)
    break_it(event)

    # When it is read, then the finding is refused with a reason that names the field
    refused = only_refusal(event)
    assert (refused.where, refused.reason) == ("", reason)


def _security_hub_source(event: dict[str, Any]) -> None:
    event["source"] = "aws.securityhub"


def _post_scan_action_detail_type(event: dict[str, Any]) -> None:
    event["detail-type"] = "GuardDuty Malware Protection Post Scan Action Failed"


@pytest.mark.parametrize(
    ("break_it", "field", "reason"),
    [
        (_security_hub_source, "detail-type", "unsupported Security Hub event 'GuardDuty Finding'"),
        (_post_scan_action_detail_type, "detail-type", "expected 'GuardDuty Finding' or 'GuardDuty Malware"),
    ],
    ids=lambda value: getattr(value, "__name__", None),
)
def test_an_event_of_an_unknown_kind_is_refused_whole_naming_the_field(
    break_it: Any, field: str, reason: str
) -> None:
    event = load(BACKDOOR)
    break_it(event)

    error = rejection(event)

    assert error.field == field
    assert reason in error.reason


# --- a malformed identity field keeps the alert, noted, and never acted on -------------------------

DETAIL = "detail"


def _severity_as_word(event: dict[str, Any]) -> None:
    event["detail"]["severity"] = "HIGH"


def _severity_out_of_range(event: dict[str, Any]) -> None:
    event["detail"]["severity"] = 11


def _severity_as_list(event: dict[str, Any]) -> None:
    event["detail"]["severity"] = [8]


@pytest.mark.parametrize(
    ("break_it", "reason"),
    [
        (_severity_as_word, "detail.severity: expected a number from 0 to 10, got 'HIGH'"),
        (_severity_out_of_range, "detail.severity: expected a number from 0 to 10, got 11"),
        (_severity_as_list, "detail.severity: expected a number from 0 to 10, got a list"),
    ],
    ids=lambda value: getattr(value, "__name__", None),
)
def test_a_severity_that_cannot_be_read_is_scored_critical_so_that_a_person_sees_it(
    break_it: Any, reason: str
) -> None:
    # Given a finding whose severity is not GuardDuty's 0-10 number
    event = load(BACKDOOR)
    break_it(event)

    # When it is read
    alert = only_alert(event)

    # Then the alert stands, scored critical (a ticket whatever TICKET_MIN_SEVERITY says), noted, and no
    # action runs on it automatically
    assert alert.severity.label == "critical"
    assert alert.notes == (f"{reason}; severity guessed: scored critical so that a person sees it",)
    assert alert.not_actionable == (reason,)
    assert [ioc.value for ioc in alert.iocs] == ["tawuhoju.com"]


def test_a_malformed_account_falls_back_to_the_events_and_the_alert_is_never_acted_on() -> None:
    # Given a finding whose account id is not 12 digits, in an event whose envelope has the account
    event = load(BACKDOOR)
    event["detail"]["accountId"] = "12345"

    # When it is read
    alert = only_alert(event)

    # Then the event's account stands in, and the case says why nothing runs automatically
    assert alert.account == "123456789012"
    assert alert.notes == (
        "detail.accountId: expected a 12-digit AWS account id, got '12345'; '123456789012' stands in",
    )
    assert alert.not_actionable == ("detail.accountId: expected a 12-digit AWS account id, got '12345'",)


def test_a_bare_finding_without_account_or_region_gets_a_marked_placeholder() -> None:
    # Given a bare finding (no envelope to fall back on) without account id nor its own ARN (which would
    # name the account), and with a Region that is none
    finding = load(BACKDOOR)["detail"]
    del finding["accountId"]
    del finding["arn"]
    finding["region"] = "mars-1"

    # When it is read
    alert = only_alert(finding)

    # Then both are 'unknown', noted, and the alert is not actionable
    assert (alert.account, alert.region) == ("unknown", "unknown")
    assert alert.not_actionable == (
        "accountId: missing",
        "region: expected an AWS Region such as 'us-east-1', got 'mars-1'",
    )


@pytest.mark.parametrize(
    ("value", "created_at", "problem"),
    [
        (
            "2025-03-18 14:02:11",
            "2025-03-18T14:02:11+00:00",
            "detail.createdAt: '2025-03-18 14:02:11' has no time zone: read as UTC",
        ),
        (
            1742306531,
            "2025-03-18T14:02:11+00:00",
            "detail.createdAt: a number, not ISO 8601: read as seconds since 1970",
        ),
        (
            "Tue, 18 Mar 2025 14:02:11 GMT",
            "2025-03-18T14:02:11+00:00",
            "detail.createdAt: 'Tue, 18 Mar 2025 14:02:11 GMT' is not ISO 8601 (read as RFC 2822)",
        ),
        (
            "9999-12-31T23:59:59-01:00",  # OverflowError once converted to UTC
            "2025-03-18T14:02:11.482000+00:00",
            "detail.createdAt: a time out of range: '9999-12-31T23:59:59-01:00'",
        ),
        (
            "yesterday",
            "2025-03-18T14:02:11.482000+00:00",
            "detail.createdAt: expected an ISO 8601 timestamp with a time zone, got 'yesterday'",
        ),
    ],
)
def test_a_time_in_a_vendors_own_form_is_read_when_it_can_be_and_the_alert_is_never_acted_on(
    value: Any, created_at: str, problem: str
) -> None:
    # Given a finding whose createdAt is not ISO 8601 with a time zone
    event = load(BACKDOOR)
    event["detail"]["createdAt"] = value

    # When it is read
    alert = only_alert(event)

    # Then the time is read when it can be, else updatedAt stands in; either way it is noted, and no
    # action runs on the alert automatically
    assert alert.created_at.isoformat() == created_at
    assert alert.not_actionable == (problem,)
    assert alert.version == alert.updated_at.isoformat()


def test_a_finding_without_any_version_is_kept_unversioned_and_never_acted_on() -> None:
    event = load(BACKDOOR)
    del event["detail"]["updatedAt"]
    del event["detail"]["service"]["count"]

    alert = only_alert(event)

    assert alert.version == "unversioned"
    assert alert.not_actionable == (
        "detail.updatedAt: missing, and no service.count to tell this finding's versions apart",
    )


def test_an_instance_without_its_id_is_no_resource_and_the_alert_is_never_acted_on() -> None:
    # Given an instance finding whose instance has no id
    event = load(BACKDOOR)
    del event["detail"]["resource"]["instanceDetails"]["instanceId"]

    # When it is read
    alert = only_alert(event)

    # Then no resource is read (its own addresses are unknown too), and nothing runs automatically
    assert alert.resources == ()
    assert alert.not_actionable == ("detail.resource.instanceDetails.instanceId: missing",)
    assert [ioc.value for ioc in alert.iocs] == ["tawuhoju.com"]


@pytest.mark.parametrize(
    ("zone", "actionable"),
    [("eu-west-3a", False), ("us-east-10a", False), ("us-east-1b", True), ("us-east-1-bos-1a", True)],
)
def test_an_instance_in_a_zone_of_another_region_is_never_acted_on(zone: str, actionable: bool) -> None:
    # Given the finding of Region us-east-1 naming its instance in this Availability Zone
    event = load(BACKDOOR)
    assert event["detail"]["region"] == "us-east-1"
    event["detail"]["resource"]["instanceDetails"]["availabilityZone"] = zone

    # When it is read
    alert = only_alert(event)

    # Then an instance in another Region's zone is kept and named, but never acted on, the zone said
    assert [resource.id for resource in alert.resources] == ["i-0b3f6c2d9e1a47c58"]
    if actionable:
        assert alert.not_actionable == ()
    else:
        [reason] = alert.not_actionable
        assert reason.startswith("detail.resource.instanceDetails.availabilityZone: the instance is in")
        assert f"'{zone}'" in reason
        assert "not in the finding's Region 'us-east-1'" in reason


# --- a value where an IOC belongs costs only itself ------------------------------------------------

DNS_DOMAIN = "service.action.dnsRequestAction.domain"


@pytest.mark.parametrize(
    ("value", "shown", "reason"),
    [
        ("evil.com/../admin", "evil.com/../admin", "'/' is not allowed in a domain: 'evil.com/../admin'"),
        (
            "evil.com\r\nX-Injected: 1",
            "evil.com\\r\\nX-Injected: 1",
            "line break (CR/LF) in 'evil.com\\r\\nX-Injected: 1'",
        ),
        (42, "42", "expected a string, got int"),
        ({"name": "evil.com"}, "<an object>", "expected a string, got dict"),
        ("GeneratedFindingDomainName", "GeneratedFindingDomainName", PLACEHOLDER_REASON),
        ("x" * 5000, "x" * 200 + "...", "domain value longer than 4096 characters: '" + "x" * 80 + "...'"),
    ],
    ids=["path", "line-break", "number", "object", "placeholder", "too-long"],
)
def test_a_bad_domain_is_kept_skipped_escaped_and_cut_and_the_alert_goes_on(
    value: Any, shown: str, reason: str
) -> None:
    # Given a DNS finding whose domain is no domain (hostile, no string, a placeholder, far too long)
    event = load(BACKDOOR)
    event["detail"]["service"]["action"]["dnsRequestAction"]["domain"] = value

    # When it is read
    alert = only_alert(event)

    # Then the alert stands, and the value is on it as a skipped IOC: escaped, cut, with its reason and field
    assert skipped(alert) == [(shown, DNS_DOMAIN, reason)]
    assert alert.resources == (WEB_FRONTEND,)
    assert alert.not_actionable == ()


def test_a_remote_address_block_that_is_no_object_is_noted_and_the_alert_goes_on() -> None:
    event = load(TOR_CALLER)
    event["detail"]["service"]["action"]["awsApiCallAction"]["remoteIpDetails"] = "23.129.64.215"

    alert = only_alert(event)

    assert alert.iocs == ()
    assert alert.notes == (
        "detail.service.action.awsApiCallAction.remoteIpDetails: expected an object, got a string;"
        " not read for IOCs",
    )


def test_a_hostile_value_in_get_findings_output_costs_only_itself() -> None:
    # Given get-findings output whose domain would reach into another VirusTotal path
    output = load(GET_FINDINGS)
    output["Findings"][0]["Service"]["Action"]["DnsRequestAction"]["Domain"] = "3322.org/../files/abc"

    # When it is parsed
    alert = only_alert(output)

    # Then the finding is an alert, the value kept skipped where the API puts it
    assert skipped(alert) == [
        ("3322.org/../files/abc", DNS_DOMAIN, "'/' is not allowed in a domain: '3322.org/../files/abc'")
    ]


def test_a_hash_of_another_length_than_its_field_declares_is_never_looked_up_as_another_algorithm() -> None:
    # Given a threat list match whose `threatFileSha256` holds 32 hex digits (an md5's length)
    event = load(TOR_CALLER)
    event["detail"]["service"]["evidence"] = {"threatIntelligenceDetails": [{"threatFileSha256": KNOWN_MD5}]}

    # When it is read
    alert = only_alert(event)

    # Then it is kept, skipped: the field's algorithm wins over the value's length
    assert skipped(alert) == [
        (
            KNOWN_MD5,
            "service.evidence.threatIntelligenceDetails[0].threatFileSha256",
            "the field declares sha256, but the value has 32 hex digits (a md5): not looked up as another"
            " algorithm",
        )
    ]


def test_the_aws_service_that_made_a_call_is_never_looked_up_and_never_a_target() -> None:
    # Given an API call GuardDuty says CloudFormation made through its own endpoint
    event = load(TOR_CALLER)
    event["detail"]["service"]["action"]["awsApiCallAction"] = {
        "api": "CreateStack",
        "callerType": "Domain",
        "domainDetails": {"domain": "cloudformation.amazonaws.com"},
        "serviceName": "cloudformation.amazonaws.com",
    }

    # When it is read, and the playbooks plan on its IOCs as the enrich function gives them
    alert = only_alert(event)
    actions = plan_actions(alert, [IocOutcome.skipped(ioc) for ioc in alert.iocs])

    # Then the endpoint is kept on the case, skipped as AWS's own, and no playbook acts on it
    assert skipped(alert) == [
        (
            "cloudformation.amazonaws.com",
            "service.action.awsApiCallAction.domainDetails.domain",
            "an AWS service endpoint (amazonaws.com): never looked up or acted on",
        )
    ]
    assert actions == []


# --- GuardDuty's generated sample findings -------------------------------------------------------

REAL_SAMPLES = [
    GET_FINDINGS,
    "guardduty-iam-recon-malicious-ip-caller.json",
    "guardduty-s3-pentest-parrot-linux.json",
]


@pytest.mark.parametrize("name", REAL_SAMPLES)
def test_guardduty_sample_findings_are_triaged_as_samples_and_never_acted_on(name: str) -> None:
    # Given a finding from GuardDuty's "Generate sample findings" (additionalInfo says sample: true)
    document = load(name)

    # When it is read
    alert = only_alert(document)

    # Then it is triaged, marked as a sample, and no action may run on it
    assert alert.sample is True
    assert alert.not_actionable == ("a GuardDuty sample finding (service.additionalInfo.sample)",)
    assert alert.notes == (
        "a GuardDuty sample finding (service.additionalInfo.sample): GuardDuty generated it to test a"
        " pipeline; triaged, never acted on",
    )


@pytest.mark.parametrize("name", REAL_SAMPLES)
def test_guardduty_sample_findings_can_be_ignored(name: str) -> None:
    # Given the same sample, read by a deployment that ignores samples
    result = read_document(load(name), ignore_samples=True)

    # Then it makes no alert, and is accounted for as ignored with the reason and its id
    assert (result.alerts, result.refused) == ((), ())
    [ignored] = result.ignored
    assert ignored.reason.startswith("a GuardDuty sample finding")
    assert ignored.alert_id is not None


def test_a_generated_dns_sample_keeps_its_placeholder_domain_as_skipped() -> None:
    # Given a DNS sample finding as GuardDuty generates it: its domain is the placeholder
    event = load(BACKDOOR)
    event["detail"]["service"]["action"]["dnsRequestAction"]["domain"] = "GeneratedFindingDomainName"
    event["detail"]["service"]["additionalInfo"] = {"value": '{"sample":true}', "type": "default"}

    # When it is read
    alert = only_alert(event)

    # Then the sample is triaged, the placeholder kept skipped with the reason, never a refusal
    assert alert.sample
    assert skipped(alert) == [("GeneratedFindingDomainName", DNS_DOMAIN, PLACEHOLDER_REASON)]


# --- one finding, one fate ----------------------------------------------------------------------------


def _findings_around(*findings: Any) -> dict[str, Any]:
    """get-findings output: the real sample's finding, then the given ones."""
    output: dict[str, Any] = load(GET_FINDINGS)
    output["Findings"] += list(findings)
    return output


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"Leaf": 1}
    for _ in range(depth):
        value = {"Nested": value}
    return value


def _poisoned(break_it: Any) -> dict[str, Any]:
    finding: dict[str, Any] = copy.deepcopy(load(GET_FINDINGS)["Findings"][0])
    finding["Id"] = "0123456789abcdef0123456789abcdef"
    break_it(finding)
    return finding


POISONS = {
    # the poison records, each now costing only its own finding's actionability
    "time out of range": lambda finding: finding.update(CreatedAt="9999-12-31T23:59:59-01:00"),
    "list where a number belongs": lambda finding: finding.update(Severity=[8]),
    "count as a list": lambda finding: finding.update(UpdatedAt=None) or finding["Service"].update(Count=[1]),
    "empty service": lambda finding: finding.update(Service={}),
    "empty resource": lambda finding: finding.update(Resource={}),
    "nested 1,200 deep": lambda finding: finding["Service"].update(AdditionalInfo=_nested(1200)),
}


@pytest.mark.parametrize("poison", sorted(POISONS))
def test_a_poison_finding_in_get_findings_output_never_costs_the_others(poison: str) -> None:
    # Given get-findings output with the real finding and a poisoned copy of it
    output = _findings_around(_poisoned(POISONS[poison]))

    # When it is read
    result = read_document(output)

    # Then both findings are alerts: the poison costs at most its own finding's stand-ins and notes, and
    # the real one is untouched
    assert [alert.id for alert in result.alerts] == [
        "034f3664616c49cb85349d0511ecd306",
        "0123456789abcdef0123456789abcdef",
    ]
    assert result.refused == ()
    assert result.alerts[0] == only_alert(load(GET_FINDINGS))


def test_get_findings_output_mixing_good_and_bad_findings_gives_each_its_own_fate() -> None:
    # Given get-findings output: the real finding, one without an id, one that is no object, one ignored
    sample = copy.deepcopy(load(GET_FINDINGS)["Findings"][0])
    without_id = {key: value for key, value in sample.items() if key != "Id"}
    output = _findings_around(without_id, "not a finding")

    # When it is read
    result = read_document(output)

    # Then the good one is an alert and each bad one a refusal of its own, naming the field
    assert [alert.id for alert in result.alerts] == ["034f3664616c49cb85349d0511ecd306"]
    assert result.refused == (
        FindingRefusal(where="Findings[1]", reason="Findings[1].Id: missing"),
        FindingRefusal(where="Findings[2]", reason="Findings[2]: expected a finding object, got a string"),
    )


class _Exploding(dict[str, Any]):
    """A finding whose reading raises what no check foresaw (a stand-in for any future surprise)."""

    def get(self, key: str, default: Any = None) -> Any:
        if key == "service":
            raise MemoryError("no room left")
        return super().get(key, default)


def test_any_exception_while_reading_one_finding_is_that_findings_refusal_naming_its_type() -> None:
    # Given get-findings output in which reading the second finding raises something unforeseen
    exploding = _Exploding(load(BACKDOOR)["detail"])
    output = _findings_around(exploding)

    # When it is read
    result = read_document(output)

    # Then the first is an alert and the second alone is refused, the exception's type named
    assert [alert.id for alert in result.alerts] == ["034f3664616c49cb85349d0511ecd306"]
    [refused] = result.refused
    assert refused.where == "Findings[1]"
    assert refused.alert_id == "963561db131bebb39f8f302239bf6f13"
    assert refused.reason.startswith("Findings[1]: MemoryError while reading it ('no room left')")


def test_a_file_of_105_findings_passes_whole_and_the_cap_refuses_the_rest_saying_how_to_raise_it() -> None:
    # Given get-findings output of 105 findings
    finding = load(GET_FINDINGS)["Findings"][0]
    output = {"Findings": [dict(finding, Id=f"{index:032x}") for index in range(105)]}

    # When it is read with the default cap, and with a cap of 100
    whole = read_document(output)
    capped = read_document(output, max_findings=100)

    # Then by default every finding is an alert; with the cap, the last five are refused, saying why
    assert len(whole.alerts) == 105
    assert len(capped.alerts) == 100
    assert [refused.where for refused in capped.refused] == [
        f"Findings[{index}]" for index in range(100, 105)
    ]
    assert capped.refused[0].alert_id == f"{100:032x}"
    assert capped.refused[0].reason == (
        "beyond the cap of 100 alerts per message: send the findings in smaller messages, or raise"
        " MaxFindingsPerMessage (MAX_FINDINGS_PER_MESSAGE)"
    )


def test_the_trimmed_real_event_is_triaged_as_guardduty_s_but_never_acted_on() -> None:
    # Given the real event that was cut down by hand: no source, detail-type or account, but its detail
    # is a GuardDuty finding (a generated sample)
    event = load("invalid/guardduty-ssh-bruteforce-trimmed-event.json")

    # When it is read
    alert = only_alert(event)

    # Then the finding is an alert, noted for what the event lacks, and never acted on
    assert (alert.id, alert.source, alert.account, alert.region) == (
        "02be5693b63eea1d67e6f321c6aee4f3",
        "guardduty",
        "unknown",
        "us-east-1",
    )
    assert alert.not_actionable == (
        "source: missing, and no detail-type",
        "a GuardDuty sample finding (service.additionalInfo.sample)",
        "detail.accountId: missing",
    )


def test_an_event_from_another_source_is_refused_even_with_a_guardduty_detail() -> None:
    event = load(BACKDOOR)
    event["source"] = "example.edr"

    error = rejection(event)

    assert (error.field, error.reason) == (
        "source",
        "unsupported event source 'example.edr': expected 'aws.guardduty', 'aws.securityhub', or an OCSF"
        " finding (with class_uid) as detail",
    )


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ([], "unknown shape: expected an EventBridge event from GuardDuty or Security Hub"),
        (["GuardDuty"], "got a list without a finding in it"),
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


def test_mixed_sqs_batch_has_one_good_record_one_non_json_body_and_one_event_without_an_id() -> None:
    # Given the mixed SQS batch sample
    records = load("invalid/sqs-batch-mixed.json")["Records"]
    good, not_json, no_id = (record["body"] for record in records)

    # When each body is decoded and read
    alert = only_alert(json.loads(good))
    with pytest.raises(json.JSONDecodeError):
        json.loads(not_json)
    refused = only_refusal(json.loads(no_id))

    # Then the first is the port probe, and the third's finding, which nothing identifies, is refused
    # naming detail.id
    assert alert == only_alert(load(PORT_PROBE))
    assert refused == FindingRefusal(where="", reason="detail.id: missing", alert_id=None)


def test_reading_is_linear_in_the_length_of_a_hostile_value() -> None:
    # Given findings whose domain is a long label of distinct non-ASCII letters (IDNA is quadratic in it)
    event = load(BACKDOOR)

    def read(size: int) -> IntakeResult:
        label = "".join(chr(0x4E00 + index) for index in range(size))
        event["detail"]["service"]["action"]["dnsRequestAction"]["domain"] = label + ".com"
        return read_document(event)

    # When each is read, then 8 times the length costs about 8 times the time, not 64
    assert time_ratio(read, 200) < 30


# --- events as SOAR tools write them: a PascalCase detail, a finding without `service` --------------------

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
PASCAL_ROOT = "guardduty-soar__root-user-forensics_event.json"
PASCAL_TEMPLATE = "guardduty-soar__ec2-brute-force-target_event_tpl.json"
NO_SERVICE = "soar-lab__readme_accesskeyleak_test_event.json"


def load_corpus(name: str) -> Any:
    return json.loads((CORPUS / name).read_text())


def test_an_event_whose_detail_is_pascal_case_reads_as_the_bare_pascal_case_finding() -> None:
    # Given GuardDuty-SOAR's test event: an EventBridge GuardDuty Finding whose detail is PascalCase
    event = load_corpus(PASCAL_ROOT)

    # When it is read, and its detail alone as a bare finding
    alert = only_alert(event)
    bare = only_alert(event["detail"])

    # Then it is the root user's finding, as the bare finding reads, its fields named as the sender
    # spelt them; only the Region comes from the event around it
    assert (alert.id, alert.type, alert.severity.score) == (
        "6acdc15e4418414a868e8bbdf45b456b",
        "Policy:IAMUser/RootCredentialUsage",
        8.0,
    )
    assert (
        alert.resources
        == bare.resources
        == (
            Resource(
                type=ResourceType.ACCESS_KEY, id="ASIA_PLACEHOLDER_KEY", user_name="root", user_type="Root"
            ),
        )
    )
    assert (alert.region, bare.region) == ("us-east-1", "unknown")
    assert "detail.AccountId: expected a 12-digit AWS account id, got '1234567891234'" in alert.not_actionable
    assert "detail.CreatedAt: missing" in alert.not_actionable


def test_a_pascal_case_event_that_lost_its_id_is_refused_naming_the_field_as_sent() -> None:
    # Given the same event without its `Id`
    event = load_corpus(PASCAL_ROOT)
    del event["detail"]["Id"]

    # When it is read, then the refusal names `detail.Id`, as the sender spells it
    refused = only_refusal(event)
    assert refused.reason == "detail.Id: missing"


def test_an_unrendered_pascal_case_template_keeps_its_placeholders_as_skipped_values() -> None:
    # Given GuardDuty-SOAR's brute-force event template, `${malicious_ip}` where the remote IP belongs
    event = load_corpus(PASCAL_TEMPLATE)

    # When it is read, then it is the brute force finding, and the placeholder is kept, never looked up
    alert = only_alert(event)
    assert alert.type == "UnauthorizedAccess:EC2/SSHBruteForce"
    assert skipped(alert) == [
        (
            "${malicious_ip}",
            "service.action.networkConnectionAction.remoteIpDetails.ipAddressV4",
            "not an IP address: '${malicious_ip}'",
        )
    ]


def test_a_finding_without_service_is_triaged_noted_and_never_acted_on() -> None:
    # Given a hand-written AccessKeyLeak event: id, type, account and access key, but no `service`
    event = load_corpus(NO_SERVICE)

    # When it is read
    alert = only_alert(event)

    # Then it is an alert on the access key, saying what is missing and kept from any automatic action
    # (without `service`, whether it is a sample cannot even be told)
    assert (alert.id, alert.type, alert.severity.score) == (
        "test-finding-id-001",
        "UnauthorizedAccess:IAMUser/AccessKeyLeak",
        8.0,
    )
    assert alert.resources == (
        Resource(
            type=ResourceType.ACCESS_KEY,
            id="AKIAIOSFODNN7EXAMPLE",
            user_name="soar-test-user",
            user_type="IAMUser",
        ),
    )
    assert alert.not_actionable == ("detail.service: missing",)
    assert alert.notes == (
        "detail.service: missing; the detection (action, evidence, sample flag) is unknown: no IOC is read"
        " from it",
    )


@pytest.mark.parametrize(
    ("service", "not_actionable"),
    [
        ({}, ()),
        ("GuardDuty", ("detail.service: expected an object, got a string",)),
        (None, ("detail.service: missing",)),
    ],
)
def test_an_empty_or_unreadable_service_is_an_alert_too(
    service: Any, not_actionable: tuple[str, ...]
) -> None:
    # Given the same event with `service` empty, a string, or null
    event = load_corpus(NO_SERVICE)
    event["detail"]["service"] = service

    # When it is read, then it is an alert on the same access key, kept from action unless `service` is
    # GuardDuty's object (empty, it names nothing that would be missed)
    alert = only_alert(event)
    assert alert.id == "test-finding-id-001"
    assert [resource.id for resource in alert.resources] == ["AKIAIOSFODNN7EXAMPLE"]
    assert alert.not_actionable == not_actionable


# ---------------------------------------------------------------- the place a finding's own ARN names

# PaloAltoNetworks/pan_guard_duty's finding (tests/corpus/PROVENANCE.md): no accountId, its own arn naming
# account 140651570565 in us-west-2.
ARN_ONLY = "pan-guard-duty__lambda_fw_config_gd_finding.json"
ARN_ACCOUNT = "140651570565"


def test_a_real_finding_without_account_id_lives_in_the_account_its_own_arn_names() -> None:
    # Given the real finding with no accountId, whose arn names its account and Region
    finding = load_corpus(ARN_ONLY)
    assert "accountId" not in finding

    # When it is read
    alert = only_alert(finding)

    # Then it lives in the ARN's account and its own Region, may be acted on, and the case says where the
    # account came from
    assert (alert.account, alert.region) == (ARN_ACCOUNT, "us-west-2")
    assert alert.not_actionable == ()
    assert alert.notes == (
        f"accountId: missing; the account {ARN_ACCOUNT} is taken from the finding's own ARN (arn)",
    )


def test_a_finding_without_account_id_or_region_takes_both_from_its_arn_before_the_event() -> None:
    # Given the finding without region either, in an event around it naming another account and Region
    # (the administrator's, where the event was delivered)
    finding = load_corpus(ARN_ONLY)
    del finding["region"]
    event = {**load(BACKDOOR), "detail": finding}

    # When it is read
    alert = only_alert(event)

    # Then the finding's own ARN says where it lives, both noted
    assert (alert.account, alert.region) == (ARN_ACCOUNT, "us-west-2")
    assert alert.not_actionable == ()
    assert (
        "detail.region: missing; the region us-west-2 is taken from the finding's own ARN (detail.arn)"
        in (alert.notes)
    )


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        (
            "accountId",
            "111122223333",
            f"detail.arn: names account {ARN_ACCOUNT}, but detail.accountId names 111122223333",
        ),
        ("region", "eu-west-1", "detail.arn: names region us-west-2, but detail.region names eu-west-1"),
    ],
)
def test_a_finding_whose_arn_names_another_place_than_its_fields_is_not_acted_on(
    field: str, value: str, named: str
) -> None:
    # Given the finding, its own field naming another account (or Region) than its arn
    event = {**load(BACKDOOR), "detail": {**load_corpus(ARN_ONLY), field: value}}

    # When it is read
    alert = only_alert(event)

    # Then its own field stands, and it is not acted on, the reason naming both
    assert (alert.account if field == "accountId" else alert.region) == value
    assert any(reason.startswith(named) for reason in alert.not_actionable), alert.not_actionable


@pytest.mark.parametrize(
    "arn",
    [
        # Another finding's ARN: it says nothing of this one.
        "arn:aws:guardduty:us-west-2:140651570565:detector/f4afdb9f43c68ca3fdc7eefa34ae392f/finding/aab0a6dfa206ad5b35117774c12ef57f",
        # Not a GuardDuty finding's ARN.
        "arn:aws:iam::140651570565:role/guardduty",
        "arn:aws:guardduty:us-west-2:14065157056:detector/f4afdb9f43c68ca3fdc7eefa34ae392f/finding/9cb0da8eee22ffdb25dee0e56ddb8740",
    ],
)
def test_an_arn_that_is_not_this_findings_own_names_no_account(arn: str) -> None:
    # Given the finding without accountId, its arn not its own GuardDuty finding ARN
    finding = {**load_corpus(ARN_ONLY), "arn": arn}

    # When it is read, Then the account is unknown and nothing is acted on, as without an arn
    alert = only_alert(finding)
    assert alert.account == "unknown"
    assert "accountId: missing" in alert.not_actionable


# --- what the alert is about when no action acts on it -----------------------------------------------


@pytest.mark.parametrize(
    ("name", "subject"),
    [
        (
            "elastic-integrations__aws_guardduty_test-guardduty_2.json",
            Subject(
                type="EKSCluster", id="GeneratedFindingEKSClusterArn", name="GeneratedFindingEKSClusterName"
            ),
        ),
        (
            "elastic-integrations__aws_guardduty_test-guardduty_4.json",
            Subject(
                type="RDSDBInstance",
                id="arn:aws:rds:us-east-1:123456789000:db:GeneratedFindingDBInstanceId",
                name="GeneratedFindingDBInstanceId",
            ),
        ),
        (
            "elastic-integrations__aws_guardduty_test-guardduty_5.json",
            Subject(type="Container", id="abcd1234"),
        ),
        (
            "synthetic-guardduty-ecs-runtime-c2-dns.json",
            Subject(
                type="ECSCluster", id="arn:aws:ecs:us-east-1:123456789012:cluster/payments", name="payments"
            ),
        ),
    ],
)
def test_a_finding_on_a_resource_vtriage_cannot_act_on_names_it(name: str, subject: Subject) -> None:
    # Given a real GuardDuty finding on an EKS cluster, an RDS DB instance or a container (and an ECS one)
    document = load_corpus(name)

    # When it is read
    alert = only_alert(document)

    # Then the alert names what it is about, by the detector's type, its ARN (else id) and its name, and
    # nothing vtriage could act on
    assert (alert.subjects, alert.resources) == ((subject,), ())


def test_the_lambda_sample_names_its_function_and_the_kubernetes_and_rds_samples_theirs() -> None:
    # Given the Lambda, EKS and RDS samples of events/
    # When each is read
    named = {name: only_alert(load(name)).subjects for name in (LAMBDA_NETWORK, KUBERNETES, RDS_LOGIN)}

    # Then each names its function, cluster and DB instance
    assert named == {
        LAMBDA_NETWORK: (
            Subject(
                type="Lambda",
                id="arn:aws:lambda:us-east-1:123456789012:function:image-resizer",
                name="image-resizer",
            ),
        ),
        KUBERNETES: (
            Subject(
                type="EKSCluster",
                id="arn:aws:eks:us-east-1:123456789012:cluster/orders-prod",
                name="orders-prod",
            ),
        ),
        RDS_LOGIN: (
            Subject(
                type="RDSDBInstance",
                id="arn:aws:rds:us-east-1:123456789012:db:orders-db-1",
                name="orders-db-1",
            ),
        ),
    }


def test_a_bad_function_arn_and_name_are_skipped_with_their_fields() -> None:
    # Given the Lambda sample whose functionArn is a number, and whose name is 3,000 characters
    event = load(LAMBDA_NETWORK)
    details = event["detail"]["resource"]["lambdaDetails"]
    details["functionArn"] = 42
    details["functionName"] = "f" * 3000

    # When it is read
    alert = only_alert(event)

    # Then neither bad value is kept: the alert names no function, and the notes say which field was
    # wrong and why; the alert is still triaged and actionable as before
    assert alert.subjects == ()
    notes = " ".join(alert.notes)
    assert "detail.resource.lambdaDetails.functionArn: expected a string, got a number" in notes
    assert "detail.resource.lambdaDetails.functionName: expected at most 256 characters, got 3,000" in notes
    assert "detail.resource.lambdaDetails.functionName: expected at most 2,048 characters, got 3,000" in notes
    assert "does not say which Lambda it is about" in notes
    assert alert.not_actionable == ()


PRIVILEGED_POD = "cdk-eks-blueprints-patterns__guardduty_privileged-container_get-findings.json"


def test_a_privileged_container_finding_names_its_pod_beside_its_cluster() -> None:
    # Given the real get-findings output of GuardDuty's PrivilegedContainer finding: the pod privileged-pod
    # in namespace argocd, on the EKS cluster guardduty-blueprint
    document = load_corpus(PRIVILEGED_POD)

    # When it is read
    alert = only_alert(document)

    # Then the alert is about the cluster and the pod (namespace/name), read in a person's words, and
    # names nothing vtriage could act on
    assert alert.subjects == (
        Subject(
            type="EKSCluster",
            id="arn:aws:eks:us-east-1:123456789012:cluster/guardduty-blueprint",
            name="guardduty-blueprint",
        ),
        Subject(type="KubernetesWorkload", id="argocd/privileged-pod", name="privileged-pod"),
    )
    assert alert.subjects[1].described == "Kubernetes workload privileged-pod (argocd/privileged-pod)"
    assert alert.resources == ()


def test_a_malformed_workload_is_skipped_with_its_field_and_the_cluster_still_kept() -> None:
    # Given the PrivilegedContainer finding whose workload name is a number and whose namespace is blank
    document = load_corpus(PRIVILEGED_POD)
    workload = document["Findings"][0]["Resource"]["KubernetesDetails"]["KubernetesWorkloadDetails"]
    workload["Name"] = 42
    workload["Namespace"] = "  "

    # When it is read
    alert = only_alert(document)

    # Then no workload is kept, the notes name each field as sent and why, and the cluster is still named
    assert [subject.type for subject in alert.subjects] == ["EKSCluster"]
    notes = " ".join(alert.notes)
    where = "Findings[0].Resource.KubernetesDetails.KubernetesWorkloadDetails"
    assert f"{where}.Name: expected a string, got a number" in notes
    assert f"{where}.Namespace: blank" in notes
    assert "does not say which Kubernetes workload it is about" in notes


def test_two_findings_on_two_pods_of_one_cluster_are_two_cases() -> None:
    # Given the PrivilegedContainer finding, and the same finding about another pod of the same cluster
    first = only_alert(load_corpus(PRIVILEGED_POD))
    document = load_corpus(PRIVILEGED_POD)
    kubernetes = document["Findings"][0]["Resource"]["KubernetesDetails"]
    kubernetes["KubernetesWorkloadDetails"]["Name"] = "other-pod"

    # When the second is read
    second = only_alert(document)

    # Then they do not repeat each other: each pod is its own case
    assert first.repeat_key != second.repeat_key


def test_a_pascal_case_finding_names_its_function_and_its_fields_as_sent() -> None:
    # Given the Lambda sample's finding as get-findings writes it (PascalCase), its name a list
    finding = pascal_case(load(LAMBDA_NETWORK)["detail"])
    finding["Resource"]["LambdaDetails"]["FunctionName"] = ["image-resizer"]

    # When it is read
    alert = only_alert({"Findings": [finding]})

    # Then the function is named by its ARN alone, and the note names the field as the sender spelt it
    assert alert.subjects == (
        Subject(type="Lambda", id="arn:aws:lambda:us-east-1:123456789012:function:image-resizer"),
    )
    assert any(
        note.startswith("Findings[0].Resource.LambdaDetails.FunctionName: expected a string, got a list")
        for note in alert.notes
    )


def test_an_instance_finding_names_no_subject() -> None:
    # Given the runtime sample on an EC2 instance, which vtriage can act on
    # When it is read
    alert = only_alert(load(RUNTIME))

    # Then the instance is a resource, and no subject is added beside it
    assert (len(alert.resources), alert.subjects) == (1, ())


# The GuardDuty User Guide's example of a Malware Protection for S3 scan result, as published by
# terraform-aws-notify-slack (tests/corpus/PROVENANCE.md).
USER_GUIDE_S3_SCAN = (
    "terraform-aws-notify-slack__guardduty_malware_protection_object_scan_result_message.json"
)


def test_the_object_a_scan_result_names_is_the_version_and_etag_it_scanned() -> None:
    # Given the User Guide's example scan result, which names the object's version and ETag
    event = load_corpus(USER_GUIDE_S3_SCAN)

    # When it is parsed
    alert = only_alert(event)

    # Then the object carries both as GuardDuty wrote them: the quarantine acts on that object alone
    [item] = [resource for resource in alert.resources if resource.type is ResourceType.S3_OBJECT]
    assert (item.bucket, item.key) == ("amzn-s3-demo-bucket", "APKAEIBAERJR2EXAMPLE")
    assert (item.version_id, item.etag) == ("d41d8cd98f00b204e9800998eEXAMPLE", "ASIAI44QH8DHBEXAMPLE")


def test_a_detector_s3_malware_finding_names_the_etag_it_scanned() -> None:
    # Given a Malware Protection for S3 finding from a detector whose object names its ETag too
    finding = _s3_malware_finding()
    finding["resource"]["s3BucketDetails"][0]["s3ObjectDetails"][0]["eTag"] = KNOWN_MD5

    # When it is parsed
    alert = only_alert(finding)

    # Then the object carries its version and ETag; one that is not text is left out, not refused
    [item] = [resource for resource in alert.resources if resource.type is ResourceType.S3_OBJECT]
    assert (item.version_id, item.etag) == ("v1", KNOWN_MD5)
    finding["resource"]["s3BucketDetails"][0]["s3ObjectDetails"][0]["eTag"] = {"not": "text"}
    alert = only_alert(finding)
    [item] = [resource for resource in alert.resources if resource.type is ResourceType.S3_OBJECT]
    assert (item.version_id, item.etag) == ("v1", None)
