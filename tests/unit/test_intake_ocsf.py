"""OCSF intake: Detection and Security Findings become Alerts, with observables and refanged free text."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from vtriage.errors import InvalidAlertError
from vtriage.intake import parse_alerts

EVENTS = Path(__file__).resolve().parents[2] / "events"
DEFANGED = "synthetic-ocsf-detection-finding-defanged.json"


def load() -> Any:
    return json.loads((EVENTS / DEFANGED).read_text())


def iocs_of(document: Any) -> list[tuple[str, str, str | None]]:
    [alert] = parse_alerts(document)
    return [(ioc.type.value, ioc.value, ioc.skipped_reason) for ioc in alert.iocs]


def test_defanged_sample_reads_as_the_detector_wrote_it() -> None:
    # Given the OCSF Detection Finding with defanged indicators in its text
    [alert] = parse_alerts(load())

    # Then the alert's fields come from the finding
    assert alert.source == "ocsf"
    assert alert.id == "edr-7f3c2a91-4d5e-4b6a-9c8d-1e2f3a4b5c6d"
    assert alert.type == "Command and Control"
    assert alert.title == "Beacon to known command-and-control infrastructure"
    assert (alert.severity.score, alert.severity.label) == (7.0, "high")
    assert (alert.account, alert.region) == ("123456789012", "us-east-1")
    assert alert.created_at.isoformat() == "2025-03-18T16:01:41+00:00"
    assert alert.version == "2025-03-18T16:02:05+00:00"
    # And the observable comes first, then the free text in the order it was read
    assert [(ioc.value, ioc.found_at) for ioc in alert.iocs][:3] == [
        ("23.129.64.215", "observables[0].value"),
        ("http://soclosebutyetqq.com/69.exe", "message"),
        ("tawuhoju.com", "finding_info.desc"),
    ]


def test_a_security_finding_reads_its_id_from_finding() -> None:
    # Given the same content as a class 2001 Security Finding (OCSF 1.0)
    document = load()
    document["class_uid"] = 2001
    document["finding"] = document.pop("finding_info")

    # When it is parsed, then the id and IOCs are the same
    [alert] = parse_alerts(document)
    assert alert.id == "edr-7f3c2a91-4d5e-4b6a-9c8d-1e2f3a4b5c6d"
    assert ("domain", "tawuhoju.com", None) in iocs_of(document)


def test_security_hub_v2_event_and_custom_event_give_the_same_alert_as_the_bare_finding() -> None:
    # Given the finding alone, in Security Hub's `Findings Imported V2` event, and as a custom event's detail
    finding = load()
    v2 = {
        "version": "0",
        "id": "e51603d1-054a-ad9d-9f49-8d82d6e81acf",
        "detail-type": "Findings Imported V2",
        "source": "aws.securityhub",
        "account": "123456789012",
        "time": "2025-03-18T16:02:07Z",
        "region": "us-east-1",
        "resources": [],
        "detail": {"findings": [copy.deepcopy(finding)]},
    }
    custom = {**v2, "detail-type": "EDR Detection", "source": "example.edr", "detail": copy.deepcopy(finding)}

    # When each is parsed, then it is the same alert
    [from_bare] = parse_alerts(finding)
    assert parse_alerts(v2) == [from_bare]
    assert parse_alerts(custom) == [from_bare]


@pytest.mark.parametrize(
    ("severity_id", "score", "label"),
    [
        (0, 0.0, "low"),
        (1, 1.0, "low"),
        (2, 2.0, "low"),
        (3, 5.0, "medium"),
        (4, 7.0, "high"),
        (5, 9.0, "critical"),
        (6, 10.0, "critical"),
        (99, 0.0, "low"),
    ],
)
def test_severity_id_maps_into_the_matching_band(severity_id: int, score: float, label: str) -> None:
    document = load()
    document["severity_id"] = severity_id

    [alert] = parse_alerts(document)

    assert (alert.severity.score, alert.severity.label) == (score, label)


@pytest.mark.parametrize("status_id", [3, 4, 5, 6])
def test_a_suppressed_resolved_archived_or_deleted_finding_gives_no_alert(status_id: int) -> None:
    document = load()
    document["status_id"] = status_id

    assert parse_alerts(document) == []


def test_observables_by_type_id_hash_kind_by_length() -> None:
    # Given observables of every type VirusTotal knows, and of others it does not
    document = load()
    document["message"] = document["finding_info"]["desc"] = document["finding_info"]["title"] = (
        "nothing here"
    )
    md5 = "D41D8CD98F00B204E9800998ECF8427F"
    document["observables"] = [
        {"name": "a", "type_id": 1, "value": "Tawuhoju.COM"},
        {"name": "b", "type_id": 2, "value": "2606:4700:4700:0:0:0:0:1111"},
        {"name": "c", "type_id": 6, "value": "hxxp://soclosebutyetqq[.]com/69.exe"},
        {"name": "d", "type_id": 8, "value": md5},
        {"name": "e", "type_id": 8, "value": "a" * 128},
        {"name": "f", "type_id": 1, "value": "WEB01"},
        {"name": "g", "type_id": 4, "value": "alice"},
        {"name": "h", "type_id": 5, "value": "alice@tawuhoju.com"},
    ]

    # When it is parsed, then each known type gives its canonical IOC and the rest nothing
    assert iocs_of(document) == [
        ("domain", "tawuhoju.com", None),
        ("ip", "2606:4700:4700::1111", None),
        ("url", "http://soclosebutyetqq.com/69.exe", None),
        ("file", md5.lower(), None),
    ]


def test_a_hostile_observable_refuses_the_finding_naming_it() -> None:
    document = load()
    document["observables"][0]["value"] = "23.129.64.215/../../files"

    with pytest.raises(InvalidAlertError) as caught:
        parse_alerts(document)

    assert caught.value.field == "observables[0].value"


def test_hostile_free_text_is_never_a_reason_to_refuse_and_never_an_ioc() -> None:
    # Given prose full of things that are not indicators, or hostile ones
    document = load()
    document["observables"] = []
    document["message"] = "see evil.com/../../files/x and W64/BURNTCIGAR.CA!tr; setup.py ran; v1.2"
    document["finding_info"]["desc"] = "host\r\nX: evil[.]com\u200b and 999.1.1.1 and edr-7f3c2a91"
    document["finding_info"]["title"] = "x" * 70000

    # When it is parsed, then it is accepted with only the clean indicators
    assert iocs_of(document) == []


def test_the_findings_own_uid_is_not_taken_for_a_hash() -> None:
    # Given a finding whose uid is 32 hex digits, quoted in its own description
    document = load()
    uid = "963561db131bebb39f8f302239bf6f13"
    document["finding_info"]["uid"] = uid
    document["finding_info"]["desc"] = f"Finding {uid} matched."
    document["observables"] = []
    document["message"] = ""

    assert iocs_of(document) == []


def _bad_class(document: dict[str, Any]) -> None:
    document["class_uid"] = 4001


def _no_uid(document: dict[str, Any]) -> None:
    del document["finding_info"]["uid"]


def _uid_with_newline(document: dict[str, Any]) -> None:
    document["finding_info"]["uid"] = "abc\ndef"


def _severity_word(document: dict[str, Any]) -> None:
    document["severity_id"] = "High"


def _no_time(document: dict[str, Any]) -> None:
    del document["time"]


def _time_as_text(document: dict[str, Any]) -> None:
    document["finding_info"]["modified_time"] = "yesterday"


def _account_with_slash(document: dict[str, Any]) -> None:
    document["cloud"]["account"]["uid"] = "../123"


@pytest.mark.parametrize(
    ("break_it", "field", "reason"),
    [
        (_bad_class, "class_uid", "expected 2004 (Detection Finding) or 2001"),
        (_no_uid, "finding_info.uid", "missing"),
        (_uid_with_newline, "finding_info.uid", "at most 128"),
        (_severity_word, "severity_id", "expected one of 0, 1, 2"),
        (_no_time, "time_dt", "missing"),
        (_time_as_text, "finding_info.modified_time", "milliseconds since 1970"),
        (_account_with_slash, "cloud.account.uid", "letters, digits"),
    ],
    ids=lambda value: getattr(value, "__name__", None),
)
def test_a_broken_finding_is_refused_naming_the_field(break_it: Any, field: str, reason: str) -> None:
    document = load()
    break_it(document)

    with pytest.raises(InvalidAlertError) as caught:
        parse_alerts(document)

    assert caught.value.field == field
    assert reason in caught.value.reason


def test_a_finding_from_outside_aws_has_an_unknown_account_and_region() -> None:
    document = load()
    del document["cloud"]

    [alert] = parse_alerts(document)

    assert (alert.account, alert.region) == ("unknown", "unknown")
