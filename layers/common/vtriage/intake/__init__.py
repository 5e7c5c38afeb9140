"""Intake: one SQS message body, already JSON-decoded, becomes normalised Alerts.

`parse_alerts` recognises the shape of the document and hands it to the detector's parser. Whatever
it cannot turn into an Alert raises `InvalidAlertError` with a reason that names the field at fault.
"""

from __future__ import annotations

from typing import Any

from vtriage.errors import InvalidAlertError
from vtriage.intake import guardduty
from vtriage.models import Alert

__all__ = ["parse_alerts"]

_SHAPES = "an EventBridge GuardDuty event, a GuardDuty finding or get-findings output"
_KEYS_SHOWN = 12


def parse_alerts(document: Any) -> list[Alert]:
    """The Alerts in one message body: one for an event or a finding, one per finding of get-findings."""
    if not isinstance(document, dict):
        raise InvalidAlertError(
            f"unknown shape: expected {_SHAPES} (a JSON object); got {guardduty.json_kind(document)}"
        )
    if "Records" in document:
        raise InvalidAlertError(
            "an SQS event, not a message body: parse each record's body on its own", field="Records"
        )
    if guardduty.is_eventbridge_event(document):
        return [guardduty.alert_from_event(document)]
    if guardduty.is_get_findings_output(document):
        return guardduty.alerts_from_get_findings(document)
    if guardduty.is_bare_finding(document):
        return [guardduty.alert_from_finding(document)]
    raise InvalidAlertError(f"unknown shape: expected {_SHAPES}; got keys [{_keys(document)}]")


def _keys(document: dict[Any, Any]) -> str:
    """The document's keys for a message: sorted, escaped, and only the first few."""
    names = sorted(str(key)[:40] for key in document)
    shown = ", ".join(repr(name) for name in names[:_KEYS_SHOWN])
    return shown + (f", ... ({len(names)} keys)" if len(names) > _KEYS_SHOWN else "")
