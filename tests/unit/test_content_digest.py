"""Identity includes content: the case id of a finding is drawn from its id, its version and the digest
of its own content, so that another content under a known id and version is a case of its own while the
same finding, however it is delivered, stays one case."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from vtriage.intake import read_document
from vtriage.intake.digest import content_digest
from vtriage.models import Alert

ROOT = Path(__file__).resolve().parents[2]


def _event(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((ROOT / "events" / name).read_text())
    return document


def _only_alert(document: Any) -> Alert:
    (alert,) = read_document(document).alerts
    return alert


def _camel(value: Any) -> Any:
    """GuardDuty's event spelling of an API (PascalCase) document: each key's first letter lower-cased."""
    if isinstance(value, dict):
        return {key[:1].lower() + key[1:]: _camel(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_camel(item) for item in value]
    return value


def test_the_same_guardduty_finding_from_get_findings_and_from_eventbridge_is_one_case() -> None:
    # Given a real finding as get-findings returns it (PascalCase), and the same finding as EventBridge
    # delivers it (camelCase, in an event envelope of its own)
    listed = _event("guardduty-getfindings-trojan-droppoint-dns.json")
    finding = listed["Findings"][0]
    event = {
        "version": "0",
        "id": "0b4a3c1e-4d0f-4e58-9c6f-1a2b3c4d5e6f",
        "detail-type": "GuardDuty Finding",
        "source": "aws.guardduty",
        "account": finding["AccountId"],
        "time": finding["UpdatedAt"],
        "region": finding["Region"],
        "resources": [],
        "detail": _camel(finding),
    }

    # When both are read
    from_api = _only_alert({"Findings": [finding]})
    from_event = _only_alert(event)

    # Then they have one content digest and one case id
    assert from_api.content_digest == from_event.content_digest != ""
    assert from_api.case_id == from_event.case_id


def test_another_content_under_the_same_id_and_version_is_another_case() -> None:
    # Given the C&C sample, and a benign document borrowing its finding id and updatedAt
    genuine = _event("synthetic-guardduty-backdoor-c2-dns.json")
    benign = copy.deepcopy(genuine)
    benign["detail"]["severity"] = 1
    benign["detail"]["type"] = "Recon:EC2/PortProbeUnprotectedPort"
    benign["detail"]["service"].pop("action", None)

    # When both are read
    first, second = _only_alert(benign), _only_alert(genuine)

    # Then they claim the same finding, but are not the same case
    assert (first.id, first.version) == (second.id, second.version)
    assert first.finding_key == second.finding_key
    assert first.content_digest != second.content_digest
    assert first.case_id != second.case_id


def test_a_redelivery_in_another_envelope_is_the_same_case() -> None:
    # Given the C&C sample delivered a second time by EventBridge (a new event id and time)
    first = _event("synthetic-guardduty-backdoor-c2-dns.json")
    again = copy.deepcopy(first)
    again["id"] = "aa0b7a4e-0000-4000-8000-000000000001"
    again["time"] = "2025-03-18T14:09:00Z"

    # Then it is the same case: the envelope is not the finding
    assert _only_alert(first).case_id == _only_alert(again).case_id


def test_the_digest_is_canonical_json_and_never_fails_on_depth() -> None:
    # Given two spellings of one content (key order, key case, 2.0 and 2), and one nested very deeply
    one = {"B": [1, 2.0, {"c": "\u00e9"}], "a": None}
    other = {"a": None, "b": [1, 2, {"C": "\u00e9"}]}
    deep: list[Any] = []
    cursor = deep
    for _ in range(5000):
        cursor.append([])
        cursor = cursor[0]

    # Then the spellings agree, keys that differ only by case in one object are kept apart, and depth
    # costs nothing
    assert content_digest(one) == content_digest(other)
    assert content_digest({"a": 1, "A": 2}) != content_digest({"a": 2, "A": 1})
    assert len(content_digest(deep)) == 64
