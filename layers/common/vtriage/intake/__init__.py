"""Intake: one SQS message body becomes normalised Alerts, one fate per finding.

`decode_body` turns the body into a JSON document, refusing what no part of the pipeline can carry
(not JSON, nested too deeply, lone surrogates, characters DynamoDB or SNS refuse). `read_document`
recognises the document's shape, lists its findings and reads each on its own; it returns an
`IntakeResult` in which every finding of the document stands exactly once:

- as an `Alert` (a bad value where an IOC belongs costs only itself: it is kept as a skipped IOC; a
  malformed account, Region, time or severity keeps the alert, noted and not actionable);
- as a `FindingRefusal`, alone, with a reason naming the field at fault, when no alert can be
  identified in that finding (no id, an unknown shape), when reading it raised anything at all (the
  exception's type is named), or when the message already made `max_findings` alerts;
- as an `IgnoredFinding`, when the finding is acknowledged already (suppressed, resolved, archived, a
  passed check), is a GuardDuty finding seen through Security Hub when those are skipped, or a sample
  finding when samples are ignored.

An SNS notification (what a queue subscribed to a topic receives without raw message delivery) is read
as the document its `Message` holds, its findings placed under `Message`, its alerts noting the envelope,
which raises no trust: the channel decides provenance (decision 2), never a topic a body names.

Only a document in which no finding can be identified at all (not an object or an array of findings,
an unknown shape, an empty array, an SNS message carrying no such document) raises `InvalidAlertError`.
A page of a known shape with no finding (get-findings, Falcon's Alerts API, Alert Center's alerts.list)
is one `IgnoredFinding` saying so.

A detector's reader is imported when a document of its shape is first read (`vtriage.intake.sources`
tells the shapes apart): importing this package loads none, so a function's cold start pays for no
reader, and a deployment fed by one detector only ever loads that detector's.
"""

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from vtriage.display import json_kind, shown
from vtriage.errors import InvalidAlertError
from vtriage.intake import sources
from vtriage.intake.body import decode_body
from vtriage.intake.digest import content_digest
from vtriage.intake.outcomes import Acknowledged, Finding, FindingRefusal, IgnoredFinding, IntakeResult
from vtriage.models import Alert, Ioc

__all__ = [
    "DEFAULT_MAX_FINDINGS",
    "DEFAULT_MAX_IOCS",
    "FindingRefusal",
    "IgnoredFinding",
    "IntakeOptions",
    "IntakeResult",
    "read_document",
]

DEFAULT_MAX_IOCS = 50
# The most alerts one message may make: a real get-findings file of 105 findings passes whole.
DEFAULT_MAX_FINDINGS = 200
MAX_FINDINGS_SETTING = "MaxFindingsPerMessage (MAX_FINDINGS_PER_MESSAGE)"

# What a message body may be, as errors and the commands that read alert files name it.
DOCUMENT_SHAPES = (
    "an EventBridge event from GuardDuty or Security Hub (or a Security Hub event's detail alone), a"
    " GuardDuty finding or Malware Protection for S3 scan result, GuardDuty or Security Hub get-findings"
    " output, an ASFF finding, an OCSF finding, a CrowdStrike Falcon alert (Alerts API entity or response,"
    " Event Streams detection), a Google Workspace Alert Center alert (alerts.list output, a Pub/Sub push),"
    " a JSON array of findings, or an SNS notification carrying one of these in its Message"
)
_KEYS_SHOWN = 12


class IntakeOptions(BaseModel):
    """How a deployment reads alerts: what it trusts, how many IOCs an alert and how many alerts a
    message may hold, which path GuardDuty findings take, what becomes of sample findings, and the
    deployment's own hosts (never looked up nor acted on)."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    allow_list: frozenset[str] = frozenset()
    max_iocs: int = DEFAULT_MAX_IOCS
    skip_guardduty_in_securityhub: bool = False
    ignore_samples: bool = False
    max_findings: int = Field(default=DEFAULT_MAX_FINDINGS, ge=1)
    never_act_hosts: frozenset[str] = frozenset()

    def read(self, document: Any) -> IntakeResult:
        """`read_document` with these options."""
        return read_document(
            document,
            allow_list=self.allow_list,
            max_iocs=self.max_iocs,
            skip_guardduty_in_securityhub=self.skip_guardduty_in_securityhub,
            ignore_samples=self.ignore_samples,
            max_findings=self.max_findings,
            never_act_hosts=self.never_act_hosts,
        )


def read_document(
    document: Any,
    *,
    allow_list: frozenset[str] = frozenset(),
    max_iocs: int = DEFAULT_MAX_IOCS,
    skip_guardduty_in_securityhub: bool = False,
    ignore_samples: bool = False,
    max_findings: int = DEFAULT_MAX_FINDINGS,
    never_act_hosts: frozenset[str] = frozenset(),
) -> IntakeResult:
    """Every finding of one decoded message body, each as an alert, a refusal or an ignored finding.

    `allow_list`: values a team trusts, skipped as "allow-listed" (see `canonical.is_allow_listed`).
    `max_iocs`: the most IOCs kept per alert for lookup, and again for the skipped ones; a cut is noted
    on the alert. `skip_guardduty_in_securityhub`: GuardDuty findings that arrive through Security Hub
    are ignored, when GuardDuty also reaches the queue directly. `ignore_samples`: detectors' sample
    findings are ignored instead of triaged (never acted on either way). `max_findings`: the most
    alerts the document may make; the findings after that are refused, saying so. `never_act_hosts`:
    the deployment's own hosts (VirusTotal's base URL, the ticket provider's): never looked up, never
    a target.

    Raises InvalidAlertError only when no finding can be identified in the document at all; nothing
    else escapes: whatever reading one finding raises is that finding's refusal.
    """
    try:
        findings = _findings(
            document, skip_guardduty=skip_guardduty_in_securityhub, ignore_samples=ignore_samples
        )
    except InvalidAlertError:
        raise
    except Exception as error:  # no shape check may let a hostile document crash its batch
        raise InvalidAlertError(f"{type(error).__name__} while reading the document's shape") from None
    alerts: list[Alert] = []
    refused: list[FindingRefusal] = []
    ignored: list[IgnoredFinding] = []
    for finding in findings:
        if len(alerts) >= max_findings:
            refused.append(
                FindingRefusal(
                    where=finding.where, reason=_beyond_cap(max_findings), alert_id=finding.alert_id
                )
            )
            continue
        try:
            outcome = finding.read()
            if isinstance(outcome, Acknowledged):
                ignored.append(
                    IgnoredFinding(
                        where=finding.where,
                        reason=outcome.reason,
                        alert_id=outcome.alert_id or finding.alert_id,
                    )
                )
                continue
            content = finding.content if finding.triage_content is None else finding.triage_content(outcome)
            finished = _finish(outcome, allow_list, max_iocs, never_act_hosts)
            alerts.append(finished.model_copy(update={"content_digest": content_digest(content)}))
        except InvalidAlertError as error:
            refused.append(FindingRefusal(where=finding.where, reason=str(error), alert_id=finding.alert_id))
        except Exception as error:  # a value no check foresaw: this finding's refusal, never its batch's
            refused.append(
                FindingRefusal(
                    where=finding.where, reason=_unexpected(error, finding), alert_id=finding.alert_id
                )
            )
    return IntakeResult(alerts=tuple(alerts), refused=tuple(refused), ignored=tuple(ignored))


def _beyond_cap(max_findings: int) -> str:
    return (
        f"beyond the cap of {max_findings} alerts per message: send the findings in smaller messages,"
        f" or raise {MAX_FINDINGS_SETTING}"
    )


def _unexpected(error: Exception, finding: Finding) -> str:
    where = finding.where or "the finding"
    message = shown(str(error), 120)
    return f"{where}: {type(error).__name__} while reading it ({message}): not a finding vtriage can read"


def _findings(document: Any, *, skip_guardduty: bool, ignore_samples: bool) -> list[Finding]:
    """The findings of the document, not read yet; InvalidAlertError when its shape is unknown."""
    if isinstance(document, list):
        return _array(document, skip_guardduty=skip_guardduty, ignore_samples=ignore_samples)
    if not isinstance(document, dict):
        raise InvalidAlertError(
            f"unknown shape: expected {DOCUMENT_SHAPES} (a JSON object); got {json_kind(document)}"
        )
    if "Records" in document:
        raise InvalidAlertError(
            "an SQS event, not a message body: parse each record's body on its own", field="Records"
        )
    if sources.is_sns_envelope(document):
        return _sns(document, skip_guardduty=skip_guardduty, ignore_samples=ignore_samples)
    # Before the EventBridge envelope: a Workspace alert has a `source` of its own.
    if sources.is_falcon_document(document):
        from vtriage.intake import falcon  # noqa: PLC0415

        return falcon.findings_of(document, ignore_samples=ignore_samples)
    if sources.is_workspace_document(document):
        from vtriage.intake import workspace  # noqa: PLC0415

        return workspace.findings_of(document)
    if sources.is_eventbridge_event(document):
        return _event(document, skip_guardduty=skip_guardduty, ignore_samples=ignore_samples)
    if sources.is_securityhub_get_findings_output(document):
        from vtriage.intake import securityhub  # noqa: PLC0415

        return securityhub.findings_of_get_findings(
            document, skip_guardduty=skip_guardduty, ignore_samples=ignore_samples
        )
    if sources.is_guardduty_get_findings_output(document):
        from vtriage.intake import guardduty  # noqa: PLC0415

        return guardduty.findings_of_get_findings(document, ignore_samples=ignore_samples)
    finding = _bare(document, "", skip_guardduty=skip_guardduty, ignore_samples=ignore_samples)
    if finding is None:
        raise InvalidAlertError(f"unknown shape: expected {DOCUMENT_SHAPES}; got keys [{_keys(document)}]")
    return [finding]


def _sns(envelope: dict[str, Any], *, skip_guardduty: bool, ignore_samples: bool) -> list[Finding]:
    """The findings of the document an SNS notification carries in its `Message` (what a queue subscribed
    to a topic receives without raw message delivery), each placed under `Message` and its alert noting
    the envelope. The envelope raises no trust: the channel the body came on decides its provenance
    (decision 2), never a topic it names. Anything else SNS sends (a subscription's confirmation), a
    `Message` that is no JSON document, and a notification inside another are refused, saying so."""
    kind = envelope.get("Type")
    if kind != sources.SNS_NOTIFICATION:
        raise InvalidAlertError(
            f"an SNS message of Type {shown(kind)}, not a notification ({sources.SNS_NOTIFICATION!r}):"
            " no alert in it",
            field="Type",
        )
    message = envelope.get("Message")
    if not isinstance(message, str):
        raise InvalidAlertError(
            f"expected the published document as a string, got {json_kind(message)}", field="Message"
        )
    try:
        document = decode_body(message)
    except InvalidAlertError as error:
        raise InvalidAlertError(
            f"{error.reason}: an SNS notification's Message must be the alert's JSON, as its detector"
            " published it",
            field="Message",
        ) from None
    if isinstance(document, dict) and sources.is_sns_envelope(document):
        raise InvalidAlertError("an SNS notification inside an SNS notification: not read", field="Message")
    try:
        findings = _findings(document, skip_guardduty=skip_guardduty, ignore_samples=ignore_samples)
    except InvalidAlertError as error:
        field = f"Message.{error.field}" if error.field else "Message"
        raise InvalidAlertError(f"{error.reason} (in an SNS notification's Message)", field=field) from None
    note = (
        f"read from the Message of an SNS notification (topic {shown(envelope.get('TopicArn'), 200)},"
        f" message {shown(envelope.get('MessageId'), 80)}): the envelope is the sender's word, never"
        " checked; the queue the message came on decides its provenance"
    )
    return [_in_sns_message(finding, note) for finding in findings]


def _in_sns_message(finding: Finding, note: str) -> Finding:
    """The finding as it sits in an SNS notification: under `Message`, its alert noting the envelope. Its
    content is the finding's own, so that it is the same case however it was delivered."""

    def read() -> Alert | Acknowledged:
        outcome = finding.read()
        if isinstance(outcome, Alert):
            return outcome.model_copy(update={"notes": (note, *outcome.notes)})
        return outcome

    where = f"Message.{finding.where}" if finding.where else "Message"
    return replace(finding, where=where, read=read)


def _bare(
    document: dict[str, Any], where: str, *, skip_guardduty: bool, ignore_samples: bool
) -> Finding | None:
    """One bare finding of any source, at `where`; None when its shape is no finding's."""
    if sources.is_ocsf_finding(document):
        from vtriage.intake import ocsf  # noqa: PLC0415

        return ocsf.finding_of_bare(document, where=where, skip_guardduty=skip_guardduty)
    if sources.is_asff_finding(document):
        from vtriage.intake import securityhub  # noqa: PLC0415

        return securityhub.finding_of_bare(
            document, where=where, skip_guardduty=skip_guardduty, ignore_samples=ignore_samples
        )
    if sources.is_bare_guardduty_finding(document):
        from vtriage.intake import guardduty  # noqa: PLC0415

        return guardduty.finding_of_bare(document, where=where, ignore_samples=ignore_samples)
    if sources.is_malware_scan_result(document):
        from vtriage.intake import guardduty  # noqa: PLC0415

        return guardduty.finding_of_scan_result(document, where=where)
    if sources.is_falcon_alert(document):
        from vtriage.intake import falcon  # noqa: PLC0415

        return falcon.finding_of_bare(document, where=where, ignore_samples=ignore_samples)
    if sources.is_workspace_alert(document):
        from vtriage.intake import workspace  # noqa: PLC0415

        return workspace.finding_of_bare(document, where=where)
    return None


def _array(document: list[Any], *, skip_guardduty: bool, ignore_samples: bool) -> list[Finding]:
    """A JSON array of bare findings (Prowler writes its OCSF and ASFF output so): each item on its own,
    an item of no known shape refused alone. Unknown as a whole when no item is a finding."""
    findings: list[Finding] = []
    recognised = False
    for index, item in enumerate(document):
        where = f"[{index}]"
        finding = (
            _bare(item, where, skip_guardduty=skip_guardduty, ignore_samples=ignore_samples)
            if isinstance(item, dict)
            else None
        )
        recognised = recognised or finding is not None
        findings.append(finding or Finding(where=where, read=_unknown_item(item, where), content=item))
    if not recognised:
        raise InvalidAlertError(
            f"unknown shape: expected {DOCUMENT_SHAPES}; got a list without a finding in it"
        )
    return findings


def _unknown_item(item: Any, where: str) -> Callable[[], Alert]:
    def read() -> Alert:
        shape = f"keys [{_keys(item)}]" if isinstance(item, dict) else json_kind(item)
        raise InvalidAlertError(f"unknown shape: expected a finding; got {shape}", field=where)

    return read


def _event(event: dict[str, Any], *, skip_guardduty: bool, ignore_samples: bool) -> list[Finding]:
    detail_type = event.get("detail-type")
    if sources.is_securityhub_event(event):
        if detail_type in sources.ASFF_DETAIL_TYPES:
            from vtriage.intake import securityhub  # noqa: PLC0415

            return securityhub.findings_of_event(
                event, skip_guardduty=skip_guardduty, ignore_samples=ignore_samples
            )
        if detail_type == sources.OCSF_DETAIL_TYPE:
            from vtriage.intake import ocsf  # noqa: PLC0415

            return ocsf.findings_of_event(event, skip_guardduty=skip_guardduty)
        expected = " or ".join(repr(name) for name in (*sources.ASFF_DETAIL_TYPES, sources.OCSF_DETAIL_TYPE))
        raise InvalidAlertError(
            f"unsupported Security Hub event {shown(detail_type)}: expected {expected}", field="detail-type"
        )
    detail = event.get("detail")
    if (
        event.get("source") != sources.GUARDDUTY_EVENT_SOURCE
        and isinstance(detail, dict)
        and sources.is_ocsf_finding(detail)
    ):
        from vtriage.intake import ocsf  # noqa: PLC0415

        return ocsf.findings_of_event(event, skip_guardduty=skip_guardduty)
    from vtriage.intake import guardduty  # noqa: PLC0415

    return guardduty.findings_of_event(event, ignore_samples=ignore_samples)


def _finish(
    alert: Alert, allow_list: frozenset[str], max_iocs: int, never_act_hosts: frozenset[str]
) -> Alert:
    """The alert with the deployment's own hosts and the allow-list applied, its IOCs capped, the cut
    noted. The never-act skip comes first: no allow-list entry can make those hosts a lookup."""
    # Loaded by the reader that made the alert already.
    from vtriage.intake.canonical import with_allow_list, with_never_act  # noqa: PLC0415

    iocs = with_never_act(alert.iocs, never_act_hosts) if never_act_hosts else alert.iocs
    iocs = with_allow_list(iocs, allow_list) if allow_list else iocs
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
