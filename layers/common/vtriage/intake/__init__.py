"""Intake: one SQS message body, already JSON-decoded, becomes normalised Alerts.

`parse_alerts` recognises the shape of the document and hands it to the detector's parser. Whatever
it cannot turn into an Alert raises `InvalidAlertError` with a reason that names the field at fault.

A document may also give no Alert at all: a Security Hub or OCSF finding that is already suppressed,
resolved or archived, or a GuardDuty finding seen through Security Hub when those are skipped. The
record is then acknowledged and makes no case.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from vtriage.errors import InvalidAlertError
from vtriage.intake import guardduty, ocsf, securityhub
from vtriage.intake.canonical import with_allow_list
from vtriage.intake.fields import json_kind, shown
from vtriage.models import Alert, Ioc

__all__ = ["DEFAULT_MAX_IOCS", "IntakeOptions", "parse_alerts"]

DEFAULT_MAX_IOCS = 50

_SHAPES = (
    "an EventBridge event from GuardDuty or Security Hub, a GuardDuty finding, GuardDuty or Security Hub"
    " get-findings output, an ASFF finding or an OCSF Detection or Security Finding"
)
_KEYS_SHOWN = 12


def parse_alerts(
    document: Any,
    *,
    allow_list: frozenset[str] = frozenset(),
    max_iocs: int = DEFAULT_MAX_IOCS,
    skip_guardduty_in_securityhub: bool = False,
) -> list[Alert]:
    """The Alerts in one message body: one per finding still to triage (possibly none).

    `allow_list`: values a team trusts, skipped as "allow-listed" (see `canonical.is_allow_listed`).
    `max_iocs`: the most IOCs kept per alert for lookup, and again for the skipped ones; a cut is noted
    on the alert. `skip_guardduty_in_securityhub`: give no Alert for GuardDuty findings that arrive
    through Security Hub, when GuardDuty also reaches the queue directly.
    """
    alerts = _parse(document, skip_guardduty=skip_guardduty_in_securityhub)
    return [_finish(alert, allow_list, max_iocs) for alert in alerts]


class IntakeOptions(BaseModel):
    """How a deployment reads alerts: what it trusts, how many IOCs an alert may hold, which path
    GuardDuty findings take."""

    model_config = ConfigDict(frozen=True)

    allow_list: frozenset[str] = frozenset()
    max_iocs: int = DEFAULT_MAX_IOCS
    skip_guardduty_in_securityhub: bool = False

    def parse(self, document: Any) -> list[Alert]:
        """`parse_alerts` with these options."""
        return parse_alerts(
            document,
            allow_list=self.allow_list,
            max_iocs=self.max_iocs,
            skip_guardduty_in_securityhub=self.skip_guardduty_in_securityhub,
        )


def _parse(document: Any, *, skip_guardduty: bool) -> list[Alert]:
    if not isinstance(document, dict):
        raise InvalidAlertError(
            f"unknown shape: expected {_SHAPES} (a JSON object); got {json_kind(document)}"
        )
    if "Records" in document:
        raise InvalidAlertError(
            "an SQS event, not a message body: parse each record's body on its own", field="Records"
        )
    if guardduty.is_eventbridge_event(document):
        return _from_event(document, skip_guardduty=skip_guardduty)
    if securityhub.is_get_findings_output(document):
        return securityhub.alerts_from_get_findings(document, skip_guardduty=skip_guardduty)
    if guardduty.is_get_findings_output(document):
        return guardduty.alerts_from_get_findings(document)
    if ocsf.is_finding(document):
        return ocsf.alerts_from_finding(document, skip_guardduty=skip_guardduty)
    if securityhub.is_finding(document):
        return securityhub.alerts_from_finding(document, skip_guardduty=skip_guardduty)
    if guardduty.is_bare_finding(document):
        return [guardduty.alert_from_finding(document)]
    raise InvalidAlertError(f"unknown shape: expected {_SHAPES}; got keys [{_keys(document)}]")


def _from_event(event: dict[str, Any], *, skip_guardduty: bool) -> list[Alert]:
    detail_type = event.get("detail-type")
    if securityhub.is_event(event):
        if detail_type == securityhub.EVENT_DETAIL_TYPE:
            return securityhub.alerts_from_event(event, skip_guardduty=skip_guardduty)
        if detail_type == ocsf.EVENT_DETAIL_TYPE:
            return ocsf.alerts_from_event(event, skip_guardduty=skip_guardduty)
        raise InvalidAlertError(
            f"unsupported Security Hub event {shown(detail_type)}: expected"
            f" {securityhub.EVENT_DETAIL_TYPE!r} or {ocsf.EVENT_DETAIL_TYPE!r}",
            field="detail-type",
        )
    detail = event.get("detail")
    if event.get("source") != guardduty.EVENT_SOURCE and isinstance(detail, dict) and ocsf.is_finding(detail):
        return ocsf.alerts_from_event(event, skip_guardduty=skip_guardduty)
    return guardduty.alerts_from_event(event)


def _finish(alert: Alert, allow_list: frozenset[str], max_iocs: int) -> Alert:
    """The alert with the allow-list applied and its IOCs capped, the cut noted."""
    iocs = with_allow_list(alert.iocs, allow_list) if allow_list else alert.iocs
    to_look_up = [ioc for ioc in iocs if ioc.skipped_reason is None]
    skipped = [ioc for ioc in iocs if ioc.skipped_reason is not None]
    notes = list(alert.notes)
    for kind, group in (("to look up", to_look_up), ("skipped", skipped)):
        if len(group) > max_iocs:
            dropped = group[max_iocs:]
            notes.append(
                f"{len(group)} IOCs {kind}: kept the first {max_iocs} (the cap on IOCs per alert),"
                f" left out {len(dropped)}, from {_first_values(dropped)}"
            )
    if len(to_look_up) <= max_iocs and len(skipped) <= max_iocs and iocs == alert.iocs:
        return alert
    kept_keys = {ioc.key for ioc in (*to_look_up[:max_iocs], *skipped[:max_iocs])}
    kept = tuple(ioc for ioc in iocs if ioc.key in kept_keys)
    return alert.model_copy(update={"iocs": kept, "notes": tuple(notes)})


def _first_values(iocs: list[Ioc], count: int = 5) -> str:
    values = ", ".join(f"{ioc.type.value} {ioc.value[:80]}" for ioc in iocs[:count])
    return values + (", ..." if len(iocs) > count else "")


def _keys(document: dict[Any, Any]) -> str:
    """The document's keys for a message: sorted, escaped, and only the first few."""
    names = sorted(str(key)[:40] for key in document)
    listed = ", ".join(repr(name) for name in names[:_KEYS_SHOWN])
    return listed + (f", ... ({len(names)} keys)" if len(names) > _KEYS_SHOWN else "")
