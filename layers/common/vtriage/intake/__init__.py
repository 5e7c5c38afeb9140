"""Intake: one SQS message body becomes normalised Alerts, one fate per finding.

`decode_body` turns the body into a JSON document, refusing what no part of the pipeline can carry
(not JSON, nested too deeply, lone surrogates, characters DynamoDB or SNS refuse). `read_document`
recognises the document's shape and hands each finding to its detector's parser; it returns an
`IntakeResult` in which every finding of the document stands exactly once:

- as an `Alert` (a bad value where an IOC belongs costs only itself: it is kept as a skipped IOC);
- as a `FindingRefusal`, alone, with a reason naming the field at fault, when no alert can be
  identified in that finding;
- as an `IgnoredFinding`, when the finding is acknowledged already (suppressed, resolved, archived, a
  passed check) or is a GuardDuty finding seen through Security Hub when those are skipped.

Only a document in which no finding can be identified at all (not an object, an unknown shape) raises
`InvalidAlertError`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from vtriage.errors import InvalidAlertError
from vtriage.intake import guardduty, ocsf, securityhub
from vtriage.intake.canonical import with_allow_list
from vtriage.intake.fields import json_kind, shown
from vtriage.models import Alert, Frozen, Ioc


class FindingRefusal(Frozen):
    """One finding of a document that cannot become an alert; the others go on without it."""

    where: str  # the finding's place in the document ("Findings[3]", "detail.findings[0]"); "" for all of it
    reason: str  # what is wrong, naming the field at fault ("Findings[3].Id: missing")
    alert_id: str | None = None  # the finding's id, when it could be read


class IgnoredFinding(Frozen):
    """One finding acknowledged without a case (resolved, suppressed, archived, a passed check, ...)."""

    where: str
    reason: str
    alert_id: str | None = None


class IntakeResult(Frozen):
    """Every finding of one document, each exactly once: an alert, a refusal or an ignored finding."""

    alerts: tuple[Alert, ...] = ()
    refused: tuple[FindingRefusal, ...] = ()
    ignored: tuple[IgnoredFinding, ...] = ()

__all__ = [
    "DEFAULT_MAX_IOCS",
    "FindingRefusal",
    "IgnoredFinding",
    "IntakeOptions",
    "IntakeResult",
    "parse_alerts",
    "read_document",
]

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


def read_document(
    document: Any,
    *,
    allow_list: frozenset[str] = frozenset(),
    max_iocs: int = DEFAULT_MAX_IOCS,
    skip_guardduty_in_securityhub: bool = False,
) -> IntakeResult:
    """Every finding of one decoded message body, each as an alert, a refusal or an ignored finding.

    Raises InvalidAlertError only when no finding can be identified in the document at all.
    """
    # TRANSITIONAL (issue 9): the parsers still refuse a whole document for one bad finding; they move
    # to one fate per finding behind this same signature.
    alerts = _parse(document, skip_guardduty=skip_guardduty_in_securityhub)
    return IntakeResult(alerts=tuple(_finish(alert, allow_list, max_iocs) for alert in alerts))


class IntakeOptions(BaseModel):
    """How a deployment reads alerts: what it trusts, how many IOCs an alert may hold, which path
    GuardDuty findings take."""

    model_config = ConfigDict(frozen=True)

    allow_list: frozenset[str] = frozenset()
    max_iocs: int = DEFAULT_MAX_IOCS
    skip_guardduty_in_securityhub: bool = False

    def read(self, document: Any) -> IntakeResult:
        """`read_document` with these options."""
        return read_document(
            document,
            allow_list=self.allow_list,
            max_iocs=self.max_iocs,
            skip_guardduty_in_securityhub=self.skip_guardduty_in_securityhub,
        )

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
