"""Every sample in events/, whatever its source, gives exactly the IOCs a person reading it would list."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from vtriage.intake import IntakeOptions, read_document
from vtriage.intake.canonical import DEPLOYMENT_HOST_REASON
from vtriage.models import Alert

EVENTS = Path(__file__).resolve().parents[2] / "events"

TOR_EXIT = ("ip", "23.129.64.215", True)
C2_DOMAIN = ("domain", "tawuhoju.com", True)
BACKDOOR_SHA256 = ("file", "4bc00f7d638e042da764e8648c03c0db46700599dd4f08d117e3e9e8b538519b", True)
BACKDOOR_MD5 = ("file", "546bb6ef89bebfb053999777f6930d7e", True)
EICAR_SHA256 = ("file", "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f", True)

# (source, [the IOC set of each alert, as (type, value, looked up?)]) for every sample directly in events/.
# tests/functional/test_samples.py runs every sample through the whole pipeline against this same table.
EXPECTED: dict[str, tuple[str, list[set[tuple[str, str, bool]]]]] = {
    "guardduty-ec2-canary-outbound-ssh.json": ("guardduty", [{("ip", "0.0.0.0", False)}]),
    "guardduty-iam-recon-malicious-ip-caller.json": ("guardduty", [{("ip", "198.51.100.0", False)}]),
    "guardduty-s3-pentest-parrot-linux.json": ("guardduty", [{("ip", "198.51.100.0", False)}]),
    "guardduty-getfindings-trojan-droppoint-dns.json": ("guardduty", [{("domain", "3322.org", True)}]),
    "synthetic-guardduty-backdoor-c2-dns.json": ("guardduty", [{C2_DOMAIN}]),
    # The same finding in a member account (111122223333) and another Region (eu-west-1).
    "synthetic-guardduty-member-account-c2-dns.json": ("guardduty", [{C2_DOMAIN}]),
    "synthetic-guardduty-iam-tor-caller.json": ("guardduty", [{TOR_EXIT}]),
    "synthetic-guardduty-ec2-suspicious-dns.json": ("guardduty", [{("domain", "telemetry-sync.net", True)}]),
    "synthetic-guardduty-portprobe.json": ("guardduty", [{TOR_EXIT, ("ip", "198.51.100.7", False)}]),
    "synthetic-guardduty-kubernetes-api.json": ("guardduty", [{TOR_EXIT, ("ip", "192.0.2.44", False)}]),
    "synthetic-guardduty-rds-login.json": ("guardduty", [{TOR_EXIT}]),
    "synthetic-guardduty-lambda-network.json": ("guardduty", [{TOR_EXIT}]),
    "synthetic-guardduty-runtime-process.json": ("guardduty", [{BACKDOOR_SHA256}]),
    "synthetic-guardduty-ebs-malware.json": ("guardduty", [{BACKDOOR_SHA256, EICAR_SHA256}]),
    # The scan result names no hash: the object's ETag, an MD5 of the same file, is the IOC.
    "synthetic-guardduty-malware-s3-object-scan.json": ("guardduty", [{BACKDOOR_MD5}]),
    # A compliance check: a real finding with nothing to look up.
    "securityhub-afsbp-ec2.7-ebs-default-encryption.json": ("securityhub", [set()]),
    "synthetic-securityhub-threat-intel.json": (
        "securityhub",
        [{C2_DOMAIN, TOR_EXIT, BACKDOOR_SHA256, ("ip", "10.0.1.25", False)}],
    ),
    "synthetic-securityhub-guardduty-product.json": ("securityhub", [{TOR_EXIT}]),
    # The member account's finding above as Security Hub's aggregation delivers it to the home Region.
    "synthetic-securityhub-guardduty-member-account-c2-dns.json": ("securityhub", [{C2_DOMAIN}]),
    "synthetic-ocsf-detection-finding-defanged.json": (
        "ocsf",
        [
            {
                TOR_EXIT,
                C2_DOMAIN,
                ("url", "http://soclosebutyetqq.com/69.exe", True),
                ("url", "https://evil-update.example.net/stage2?id=7", False),
                ("domain", "ip-10-0-1-25.ec2.internal", False),
                ("ip", "10.0.1.25", False),
                # (the device's host name WEB01, an observable without a dot, is no domain: no IOC)
            }
        ],
    ),
}

# The samples GuardDuty generated ("Generate sample findings": additionalInfo says sample): triaged as
# samples, never acted on.
GENERATED_SAMPLES = {
    "guardduty-getfindings-trojan-droppoint-dns.json",
    "guardduty-iam-recon-malicious-ip-caller.json",
    "guardduty-s3-pentest-parrot-linux.json",
}


def load(name: str) -> Any:
    return json.loads((EVENTS / name).read_text())


def alerts_of(document: Any, **options: Any) -> list[Alert]:
    """The alerts of a sample: every sample's findings are alerts, none refused or ignored."""
    result = read_document(document, **options)
    assert (result.refused, result.ignored) == ((), ())
    return list(result.alerts)


def test_every_sample_has_its_expected_iocs_written_down() -> None:
    # Given every sample a user runs through the demo
    samples = {path.name for path in EVENTS.glob("*.json")}

    # Then each is described here, and nothing described is missing
    assert samples == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample_gives_exactly_the_expected_iocs(name: str) -> None:
    # Given a sample as it sits in events/
    source, expected = EXPECTED[name]

    # When it is parsed
    alerts = alerts_of(load(name))

    # Then each alert has exactly the IOCs a person would list, each once, from the right source
    found = [
        {(ioc.type.value, ioc.value, ioc.skipped_reason is None) for ioc in alert.iocs} for alert in alerts
    ]
    assert found == expected
    assert all(len(alert.iocs) == len(iocs) for alert, iocs in zip(alerts, found, strict=True))
    assert {alert.source for alert in alerts} == {source}
    # And only GuardDuty's generated samples say anything more: that they are samples
    assert all(alert.sample == (name in GENERATED_SAMPLES) for alert in alerts)
    assert all(bool(alert.notes) == alert.sample for alert in alerts)


def test_the_real_samples_are_the_corpus_copies_byte_for_byte() -> None:
    # Given the real samples of events/ and the corpus copies of the same source files
    corpus = EVENTS.parent / "tests" / "corpus"
    copies = {
        "guardduty-ec2-canary-outbound-ssh.json": "gd-automated-response__guardduty_ec2_event.json",
        "guardduty-iam-recon-malicious-ip-caller.json": "gd-automated-response__guardduty_iam_event.json",
        "guardduty-s3-pentest-parrot-linux.json": "gd-automated-response__guardduty_s3_event.json",
        "guardduty-getfindings-trojan-droppoint-dns.json": "warren__testdata_guardduty_getfindings.json",
        "securityhub-afsbp-ec2.7-ebs-default-encryption.json": "asr__afsbp-ec2.7_imported_envelope.json",
    }

    # Then each sample is its source file unchanged, as the corpus holds it (tests/unit/test_provenance.py
    # checks both against the SHA-256 recorded when they were copied)
    assert {name for name in EXPECTED if not name.startswith("synthetic-")} == set(copies)
    assert all((EVENTS / name).read_bytes() == (corpus / copy).read_bytes() for name, copy in copies.items())


def _threat_intel_with_addresses(count: int) -> Any:
    event = load("synthetic-securityhub-threat-intel.json")
    finding = event["detail"]["findings"][0]
    finding["ThreatIntelIndicators"] = [
        {"Type": "IPV4_ADDRESS", "Value": f"23.129.{index // 250}.{index % 250 + 1}"}
        for index in range(count)
    ] + [
        {"Type": "IPV4_ADDRESS", "Value": f"10.0.{index // 250}.{index % 250 + 1}"} for index in range(count)
    ]
    del finding["Network"]
    return event


def test_the_cap_keeps_the_first_iocs_of_each_kind_and_notes_the_cut() -> None:
    # Given a finding naming 60 public and 60 private addresses
    event = _threat_intel_with_addresses(60)

    # When it is parsed with the default cap of 50
    [alert] = alerts_of(event)

    # Then the first 50 to look up and the first 50 skipped are kept, in order
    looked_up = [ioc.value for ioc in alert.iocs if ioc.skipped_reason is None]
    skipped = [ioc.value for ioc in alert.iocs if ioc.skipped_reason is not None]
    assert looked_up == [f"23.129.0.{index + 1}" for index in range(50)]
    assert len(skipped) == 50
    # And the case says what was cut, and why
    assert len(alert.notes) == 2
    assert alert.notes[0].startswith(
        "60 IOCs to look up: kept the first 50 (the cap on IOCs per alert), left out 10"
    )
    assert "ip 23.129.0.51" in alert.notes[0]


def test_the_cap_is_a_parameter_and_an_alert_under_it_has_no_note() -> None:
    event = _threat_intel_with_addresses(3)

    [capped] = alerts_of(event, max_iocs=2)
    [uncapped] = alerts_of(event)

    assert [ioc.value for ioc in capped.iocs if ioc.skipped_reason is None] == ["23.129.0.1", "23.129.0.2"]
    assert len(capped.notes) == 2
    assert uncapped.notes == ()
    assert len(uncapped.iocs) == 6


def test_the_allow_list_applies_to_every_source() -> None:
    # Given a team that trusts the Tor exit address (say, its own relay)
    allow_list = frozenset({"23.129.64.215"})

    # When GuardDuty, Security Hub and OCSF samples naming it are parsed with the allow-list
    names = [
        "synthetic-guardduty-iam-tor-caller.json",
        "synthetic-securityhub-guardduty-product.json",
        "synthetic-ocsf-detection-finding-defanged.json",
    ]
    reasons = {
        name: [
            ioc.skipped_reason
            for alert in alerts_of(load(name), allow_list=allow_list)
            for ioc in alert.iocs
            if ioc.value == "23.129.64.215"
        ]
        for name in names
    }

    # Then the address is kept on each case, skipped as allow-listed
    assert reasons == {name: ["allow-listed"] for name in names}


def test_the_deployments_own_hosts_are_never_looked_up_whatever_the_allow_list_says() -> None:
    # Given a finding naming the deployment's Jira host among its indicators
    event = load("synthetic-securityhub-threat-intel.json")
    event["detail"]["findings"][0]["ThreatIntelIndicators"].append(
        {"Type": "URL", "Value": "https://acme.atlassian.net/browse/SEC-1"}
    )
    options = IntakeOptions(
        never_act_hosts=frozenset({"acme.atlassian.net"}), allow_list=frozenset({"atlassian.net"})
    )

    # When it is read with the deployment's options
    [alert] = options.read(event).alerts

    # Then the host is kept on the case, skipped as the deployment's own: the allow-list does not decide it
    reasons = [ioc.skipped_reason for ioc in alert.iocs if ioc.value.startswith("https://acme")]
    assert reasons == [DEPLOYMENT_HOST_REASON]
