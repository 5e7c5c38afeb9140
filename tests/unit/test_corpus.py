"""Real findings from public repositories and vendor documentation, run through the real parser.

Each document of tests/corpus is read by `decode_body` and `IntakeOptions().read` exactly as the enrich
function reads a message body, and held to what tests/corpus/expected.json says a person reading it
expects: how many alerts, refusals and ignored findings; for each alert its source, whether it is a
sample, whether it may be acted on, its severity, the IOCs to look up (exactly those) and the values
that must be kept as skipped with a reason (at least those). expected.json was written by reading the
documents, not from the parser's output; tests/corpus/PROVENANCE.md says where each comes from.

Keys of an expected document:
- `findings`: how many findings the document holds, counted by reading it.
- `refused_document`: the whole body is refused (InvalidAlertError); `may_refuse_document`: refusing the
  whole body is also an acceptable reading (OCSF arrays, which issue 9 leaves optional).
- `alerts`: `id` (null: not checked), `source`, `lookups` ([type, canonical value], exactly),
  `skipped` ([type, value, [reason keywords]], each present, value compared case-insensitively, reason
  matching any keyword), and optionally `sample`, `actionable` (false: `not_actionable` is not empty),
  `severity` (the label), `type`, `not_actionable` (keywords, each named by one of the reasons),
  `subjects` ([type, id, name], exactly, in order: what the alert is about that no action acts on), and
  `user` (the user an alert from outside AWS names in its vendor's terms, `Alert.vendor.user`; null: none).
- `refused` / `ignored`: `where` (null: not checked) and `reason` keywords (any, case-insensitive).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from vtriage.errors import InvalidAlertError
from vtriage.intake import FindingRefusal, IgnoredFinding, IntakeOptions, IntakeResult
from vtriage.intake.body import decode_body
from vtriage.models import Alert

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
EXPECTED: dict[str, dict[str, Any]] = json.loads((CORPUS / "expected.json").read_text())["documents"]
_PROVENANCE_ROW = re.compile(r"^\| `([^`]+)`", re.MULTILINE)


def corpus_files() -> set[str]:
    """The documents of the corpus (every JSON file but the expectations)."""
    return {path.name for path in CORPUS.glob("*.json")} - {"expected.json"}


def test_every_corpus_document_has_its_expectation_and_its_provenance() -> None:
    # Given the documents in tests/corpus
    documents = corpus_files()

    # When the expectations and the provenance table are read
    provenance = set(_PROVENANCE_ROW.findall((CORPUS / "PROVENANCE.md").read_text()))

    # Then each document is described in both, and neither describes a document that is not there
    assert documents == set(EXPECTED)
    assert documents == provenance


def test_the_corpus_is_mostly_real_and_small() -> None:
    # Given the corpus
    documents = corpus_files()

    # Then real documents outnumber invented ones by far, and the whole stays small
    synthetic = {name for name in documents if name.startswith("synthetic-")}
    assert len(documents) - len(synthetic) >= 25
    assert sum((CORPUS / name).stat().st_size for name in documents) < 2_000_000


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_document_reads_as_a_person_reads_it(name: str) -> None:
    # Given a real document and what a person reading it expects
    expected = EXPECTED[name]
    body = (CORPUS / name).read_text(encoding="utf-8")

    # When it is read as the enrich function reads a message body
    try:
        result = IntakeOptions().read(decode_body(body))
    except InvalidAlertError as error:
        refused: InvalidAlertError | None = error
    else:
        refused = None

    # Then it meets every expectation, each mismatch named
    if refused is not None:
        allowed = expected.get("refused_document") or expected.get("may_refuse_document")
        assert allowed, f"{name}: the whole document was refused: {refused}"
        assert refused.reason.strip(), f"{name}: refused without a reason"
        return
    assert not expected.get("refused_document"), (
        f"{name}: expected the whole document refused; got {_summary(result)}"
    )
    problems = _problems(expected, result)
    assert not problems, f"{name}:\n  " + "\n  ".join(problems) + f"\n  parser: {_summary(result)}"


def _problems(expected: dict[str, Any], result: IntakeResult) -> list[str]:
    problems: list[str] = []
    counted = len(result.alerts) + len(result.refused) + len(result.ignored)
    if counted != expected["findings"]:
        problems.append(f"{expected['findings']} findings in the document, {counted} accounted for")
    for kind in ("alerts", "refused", "ignored"):
        wanted = len(expected.get(kind, []))
        got = len(getattr(result, kind))
        if wanted != got:
            problems.append(f"expected {wanted} {kind}, got {got}")
    unmatched = list(result.alerts)
    for want in expected.get("alerts", []):
        alert = _take_alert(unmatched, want["id"])
        if alert is None:
            problems.append(f"no alert with id {want['id']!r}")
            continue
        problems += [f"alert {alert.id!r}: {problem}" for problem in _alert_problems(want, alert)]
    for kind in ("refused", "ignored"):
        entries = list(getattr(result, kind))
        for want in expected.get(kind, []):
            match = next((entry for entry in entries if _entry_matches(want, entry)), None)
            if match is None:
                problems.append(
                    f"no {kind} finding at {want['where']!r} with a reason naming any of {want['reason']}"
                )
            else:
                entries.remove(match)
    return problems


def _take_alert(alerts: list[Alert], alert_id: str | None) -> Alert | None:
    for alert in alerts:
        if alert_id is None or alert.id == alert_id:
            alerts.remove(alert)
            return alert
    return None


def _alert_problems(want: dict[str, Any], alert: Alert) -> list[str]:
    problems: list[str] = []
    if alert.source != want["source"]:
        problems.append(f"source {alert.source!r}, expected {want['source']!r}")
    looked_up = {(ioc.type.value, ioc.value) for ioc in alert.iocs if ioc.skipped_reason is None}
    wanted_lookups = {(kind, value) for kind, value in want["lookups"]}
    if looked_up != wanted_lookups:
        problems.append(
            f"looks up {sorted(looked_up)}, expected {sorted(wanted_lookups)}"
            f" (extra {sorted(looked_up - wanted_lookups)}, missing {sorted(wanted_lookups - looked_up)})"
        )
    skipped = [(ioc.type.value, ioc.value.lower(), ioc.skipped_reason) for ioc in alert.iocs]
    for kind, value, keywords in want["skipped"]:
        reasons = [why for type_, value_, why in skipped if why and (type_, value_) == (kind, value.lower())]
        if not reasons:
            problems.append(f"{kind} {value!r} is not kept as skipped (skipped: {skipped})")
        elif not any(_names_any(reason, keywords) for reason in reasons):
            problems.append(f"{kind} {value!r} skipped as {reasons}, not for any of {keywords}")
    if "sample" in want and alert.sample != want["sample"]:
        problems.append(f"sample is {alert.sample}, expected {want['sample']}")
    if "actionable" in want and (not alert.not_actionable) != want["actionable"]:
        problems.append(f"not_actionable {list(alert.not_actionable)}, not actionable={want['actionable']}")
    if "severity" in want and alert.severity.label != want["severity"]:
        problems.append(f"severity {alert.severity.label} ({alert.severity.score}), not {want['severity']}")
    if "type" in want and alert.type != want["type"]:
        problems.append(f"type {alert.type!r}, expected {want['type']!r}")
    subjects = [[subject.type, subject.id, subject.name] for subject in alert.subjects]
    if "subjects" in want and subjects != want["subjects"]:
        problems.append(f"subjects {subjects}, expected {want['subjects']}")
    user = alert.vendor.user if alert.vendor is not None else None
    if "user" in want and user != want["user"]:
        problems.append(f"names the user {user!r}, expected {want['user']!r}")
    for keyword in want.get("not_actionable", []):
        if not any(keyword in reason for reason in alert.not_actionable):
            problems.append(f"no reason against action names {keyword!r}: {list(alert.not_actionable)}")
    return problems


def _entry_matches(want: dict[str, Any], entry: FindingRefusal | IgnoredFinding) -> bool:
    where_matches = want["where"] is None or want["where"] == entry.where
    return where_matches and _names_any(entry.reason, want["reason"])


def _names_any(text: str, keywords: list[str]) -> bool:
    lowered = text.lower()
    return any(keyword.lower() in lowered for keyword in keywords)


def _summary(result: IntakeResult) -> str:
    alerts = [
        {
            "id": alert.id,
            "sample": alert.sample,
            "not_actionable": list(alert.not_actionable),
            "severity": alert.severity.label,
            "iocs": [(ioc.type.value, ioc.value, ioc.skipped_reason) for ioc in alert.iocs],
        }
        for alert in result.alerts
    ]
    refused = [(entry.where, entry.reason) for entry in result.refused]
    ignored = [(entry.where, entry.reason) for entry in result.ignored]
    return json.dumps({"alerts": alerts, "refused": refused, "ignored": ignored})
