"""Open one ticket per case, with a report an analyst can read in an email or a ticket: vtriage's own
links first, then every value from the alert escaped on its labelled line (`vtriage.display`)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from vtriage.display import Report, ReportLine, ReportLink, one_line, severity_guessed
from vtriage.errors import CaseNotFoundError
from vtriage.models import (
    Alert,
    Branch,
    Case,
    CaseStatus,
    Enrichment,
    IocOutcome,
    IocType,
    Resource,
    TaskInput,
    Ticket,
)
from vtriage.ports import CaseRepository, TicketSink

MAX_ERROR_BYTES = 1024
SAMPLE_LINE = "yes: its detector generated it to test a pipeline; never acted on automatically"
TOP_ENGINES = 5
MAX_DNS_RECORDS_SHOWN = 5
MAX_WHOIS_LINES_SHOWN = 4
_INDENT = 6
_RESOLUTION_TYPES = ("A", "AAAA", "CNAME")


class ApprovalLinks(BaseModel):
    """The links a person opens to approve or reject a case's pending actions, no AWS login needed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    approve_url: str
    reject_url: str
    expires_at: datetime | None = None


class CasePageLink(BaseModel):
    """A link to the case's page on the approval function's URL: the case read-only, until it expires."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str
    expires_at: datetime


class TicketResult(BaseModel):
    """What the ticket function returns to the state machine."""

    model_config = ConfigDict(extra="forbid")

    case_id: str
    ticket: Ticket


def open_ticket(
    task: TaskInput,
    cases: CaseRepository,
    sink: TicketSink,
    now: datetime,
    *,
    enrichments: Mapping[str, Enrichment] | None = None,
    approval: ApprovalLinks | None = None,
    case_page: CasePageLink | None = None,
) -> TicketResult:
    """Open the case's ticket through the sink and store it on the case; a case has at most one.

    A retry returns the ticket already opened. A caught error (`task.error`) marks the case FAILED
    and is kept on it and in the report. `enrichments`, `approval` and `case_page` go into the report
    (see `render_report`).
    """
    case = cases.get(task.case_id)
    if case is None:
        raise CaseNotFoundError(f"case {task.case_id} not found")
    if case.ticket is not None:
        if case.uncommented_repeats:
            # A repeat of the finding folded into this case: the ticket hears of it, no new ticket opens.
            # The comment names the repeat's finding id: escaped as any sender's value.
            sink.comment(case.ticket, one_line(case.repeat_comment(), limit=MAX_ERROR_BYTES))
            case.repeats_commented = case.repeat_count
            case.updated_at = now
            cases.save(case)
        return TicketResult(case_id=case.case_id, ticket=case.ticket)

    if case.branch is not Branch.REMEDIATE:
        case.branch = Branch.TICKET
    case.updated_at = now
    if task.error:
        case.error = describe_error(task.error)
        if case.status is not CaseStatus.FAILED:
            case.record(CaseStatus.FAILED, now)
    elif case.status not in (CaseStatus.REMEDIATED, CaseStatus.TICKETED):
        case.record(CaseStatus.TICKETED, now)

    report = render_report(case, enrichments=enrichments, approval=approval, case_page=case_page)
    case.ticket = sink.open(case, report)
    case.repeats_commented = case.repeat_count
    cases.save(case)
    return TicketResult(case_id=case.case_id, ticket=case.ticket)


def describe_error(error: dict[str, str]) -> str:
    """`Error: Cause` from what a Catch caught, at most 1 KB (DynamoDB items and emails stay small).

    A Lambda error's Cause is a JSON document: its `errorMessage` is what a person needs.
    """
    name = error.get("Error") or "Error"
    cause = error.get("Cause") or ""
    try:
        parsed = json.loads(cause)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("errorMessage"), str):
        cause = parsed["errorMessage"]
    text = f"{name}: {cause}" if cause else name
    return _trim_utf8(text, MAX_ERROR_BYTES)


def render_report(
    case: Case,
    *,
    enrichments: Mapping[str, Enrichment] | None = None,
    approval: ApprovalLinks | None = None,
    case_page: CasePageLink | None = None,
) -> Report:
    """The case as a report: the approval links and the case page link first when there are any, then
    the alert, its resources, every IOC and why, the actions and the error, each value escaped on its
    labelled line.

    `enrichments`, by IOC key (`type#value`), add to each IOC the engines that flag it and the key
    context VirusTotal gave (network and whois, resolutions, registrar, first seen, file names).
    """
    enriched = enrichments or {}
    alert = case.alert
    lines = [
        _line("Title", alert.title),
        _line("Case", case.case_id),
        _line("Status", case.status.value + (f" (branch: {case.branch.value})" if case.branch else "")),
        _line("Verdict", case.verdict.value.upper()),
        _line("Severity", f"{alert.severity.label.upper()} {alert.severity.score:g}" + _guessed(alert.notes)),
        _BLANK,
        ReportLine(label="Alert"),
        _line("Type", alert.type, indent=2),
        _line("Source", alert.source, indent=2),
        _line("ID", alert.id, indent=2),
        _line("Account", alert.account, indent=2),
        _line("Region", alert.region, indent=2),
        *_vendor_lines(alert),
        _line("Created", alert.created_at.isoformat(), indent=2),
        _line("Updated", alert.updated_at.isoformat(), indent=2),
        *([_line("Sent through", case.provenance.described, indent=2)] if case.provenance else []),
        *([_line("Sample finding", SAMPLE_LINE, indent=2)] if alert.sample else []),
        *(_line("Not acted on", reason, indent=2) for reason in alert.not_actionable),
        *(_line("Note", note, indent=2) for note in alert.notes),
        _BLANK,
        ReportLine(label=f"Resources ({len(alert.resources)})"),
        *([_resource_line(resource) for resource in alert.resources] or [_NONE]),
        _BLANK,
        ReportLine(label=f"Indicators of compromise ({len(case.iocs)})"),
        *(
            [
                line
                for ioc in case.iocs
                for line in _ioc_lines(ioc, enriched.get(f"{ioc.type.value}#{ioc.value}"))
            ]
            or [_NONE]
        ),
        _BLANK,
        ReportLine(label=f"Actions ({len(case.actions)})"),
        *(
            [
                _line(
                    f"- {action.type.value}",
                    f"{one_line(action.target)}: {action.status.value}"
                    + (f" in {_where(action.account, action.region)}" if action.account else "")
                    + (f" - {one_line(action.detail)}" if action.detail else ""),
                    indent=2,
                    escape=False,
                )
                for action in case.actions
            ]
            or [_NONE]
        ),
    ]
    if case.variant_case_ids:
        # Another content delivered under this finding's id and version: triaged as a case of its own.
        variants = ", ".join(case.variant_case_ids)
        lines += [_BLANK, _line("Same finding id and version, other content", variants)]
    if case.error:
        lines += [_BLANK, _line("Error", case.error)]
    headline = f"{alert.severity.label.upper()} {alert.severity.score:g}, {case.verdict.value.upper()}"
    links: list[ReportLink] = []
    notes: list[str] = []
    if approval is not None:
        links += approval_report_links(approval)
        notes.append(approval_links_note(approval))
    if case_page is not None:
        links.append(ReportLink(label="Case page", url=case_page.url))
        notes.append(case_page_note(case_page))
    return Report(headline=headline, links=tuple(links), links_note=". ".join(notes), lines=tuple(lines))


def approval_report_links(approval: ApprovalLinks) -> tuple[ReportLink, ReportLink]:
    """The approve and reject links, labelled as a report shows them first."""
    return (
        ReportLink(label="Approve", url=approval.approve_url),
        ReportLink(label="Reject", url=approval.reject_url),
    )


def approval_links_note(approval: ApprovalLinks) -> str:
    """What the approval links do and until when."""
    expires = approval.expires_at.isoformat() if approval.expires_at is not None else "never"
    return f"Approval needed: open one link (each works once; they expire at {expires})"


def case_page_note(case_page: CasePageLink) -> str:
    """What the case page link shows and until when."""
    expires = case_page.expires_at.isoformat(timespec="minutes")
    return f"The case page shows the case and its VirusTotal reports, decides nothing, works until {expires}"


_BLANK = ReportLine()
_NONE = ReportLine(label="(none)", indent=2)


def _where(account: str, region: str | None) -> str:
    """Where an action ran, as its ticket line says it: the finding's account and Region."""
    return f"account {one_line(account)}, Region {one_line(region or '')}"


def _guessed(notes: tuple[str, ...]) -> str:
    """What the severity line adds when intake had to guess the severity."""
    if not severity_guessed(notes):
        return ""
    return " (guessed by vtriage: see the notes)"


def _line(label: str, value: object, indent: int = 0, *, escape: bool = True) -> ReportLine:
    """A labelled line; the value escaped unless the caller composed it of escaped parts."""
    return ReportLine(label=label, value=one_line(value) if escape else str(value), indent=indent)


def _vendor_lines(alert: Alert) -> list[ReportLine]:
    """What an alert from outside AWS says in its vendor's terms, each value escaped (the console link
    too: it is the sender's)."""
    vendor = alert.vendor
    if vendor is None:
        return []
    named = (
        ("Platform", vendor.platform),
        ("Product", vendor.product),
        ("Customer", vendor.tenant),
        ("Host", vendor.host),
        ("User", vendor.user),
        ("Console", vendor.console_url),
    )
    return [_line(label, value, indent=2) for label, value in named if value]


def _resource_line(resource: Resource) -> ReportLine:
    facts = []
    if resource.vpc_id:
        facts.append(f"vpc {one_line(resource.vpc_id)}")
    if resource.network_interface_ids:
        facts.append("interfaces " + ", ".join(one_line(eni) for eni in resource.network_interface_ids))
    if resource.addresses:
        facts.append("addresses " + ", ".join(one_line(address) for address in resource.addresses))
    if resource.user_name:
        facts.append(f"user {one_line(resource.user_name)}")
    if resource.bucket:
        facts.append(f"bucket {one_line(resource.bucket)}")
    if resource.key:
        facts.append(f"key {one_line(resource.key)}")
    value = one_line(resource.id) + (f" ({'; '.join(facts)})" if facts else "")
    return _line(f"- {resource.type.value}", value, indent=2, escape=False)


def _ioc_lines(ioc: IocOutcome, enrichment: Enrichment | None = None) -> list[ReportLine]:
    head = f"- {ioc.type.value}"
    if ioc.skipped_reason:
        value = f"{one_line(ioc.value)}: not looked up ({one_line(ioc.skipped_reason)})"
        return [_line(head, value, indent=2, escape=False)]
    counts = f"{ioc.malicious} malicious, {ioc.suspicious} suspicious of {ioc.total} engines"
    lines = [
        _line(head, f"{one_line(ioc.value)}: {ioc.verdict.value.upper()}", indent=2, escape=False),
        _line("detections", counts + (" (from cache)" if ioc.cached else ""), indent=_INDENT),
    ]
    lines += [_line("why", reason, indent=_INDENT) for reason in ioc.reasons]
    if enrichment is not None:
        lines += _context_lines(ioc.type, enrichment.context)
    if ioc.link:
        lines.append(ReportLine(label="VirusTotal", link=ioc.link, indent=_INDENT))
    lines.append(_line("found at", ioc.found_at, indent=_INDENT))
    return lines


def _context_lines(ioc_type: IocType, context: Mapping[str, Any]) -> list[ReportLine]:
    """The engines that flag the IOC, then what an analyst asks first about this type of IOC."""
    facts: list[tuple[str, str]] = []
    engines = _top_engines(context.get("detections"))
    if engines:
        facts.append(("engines", engines))
    if ioc_type is IocType.IP:
        network = _joined(
            f"AS{context['asn']}" if context.get("asn") is not None else None,
            context.get("as_owner"),
            context.get("country"),
            context.get("network"),
        )
        if network:
            facts.append(("network", network))
    elif ioc_type is IocType.DOMAIN:
        registration = _joined(
            context.get("registrar"),
            f"created {context['creation_date']}" if context.get("creation_date") else None,
        )
        if registration:
            facts.append(("registered", registration))
        resolves_to = _dns_records_line(context.get("last_dns_records"))
        if resolves_to:
            facts.append(("resolves to", resolves_to))
    elif ioc_type is IocType.URL:
        for name, label in (("last_final_url", "final URL"), ("serving_ip_address", "served by")):
            if context.get(name):
                facts.append((label, str(context[name])))
    elif ioc_type is IocType.FILE:
        described = _joined(
            context.get("type_description"),
            f"{context['size']} bytes" if context.get("size") is not None else None,
        )
        name = context.get("meaningful_name") or ""
        if name or described:
            facts.append(("file", f"{name}" + (f" ({described})" if described else "")))
        threat = context.get("popular_threat_classification")
        if isinstance(threat, dict) and threat.get("suggested_threat_label"):
            facts.append(("threat label", str(threat["suggested_threat_label"])))
    if context.get("first_submission_date"):
        facts.append(("first seen", str(context["first_submission_date"])))
    if context.get("last_analysis_date"):
        facts.append(("last analysed", str(context["last_analysis_date"])))
    facts += [("whois", line) for line in _whois_lines(context.get("whois"))]
    return [_line(label, value, indent=_INDENT) for label, value in facts]


def _top_engines(detections: Any) -> str:
    """Up to five flagging engines, malicious before suspicious, with their labels."""
    if not isinstance(detections, list):
        return ""
    flagged = [item for item in detections if isinstance(item, dict) and item.get("engine")]
    flagged.sort(key=lambda item: item.get("category") != "malicious")
    shown = [
        f"{item['engine']} ({item.get('result') or item.get('category') or 'flagged'})"
        for item in flagged[:TOP_ENGINES]
    ]
    more = len(flagged) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def _dns_records_line(records: Any) -> str:
    """The domain's last DNS records as the report's "resolves to" line, the first few of them."""
    if not isinstance(records, list):
        return ""
    # What the name resolves to: address and alias records, not its name servers or SOA.
    shown = [
        f"{record['type']} {record['value']}"
        for record in records
        if isinstance(record, dict) and record.get("value") and record.get("type") in _RESOLUTION_TYPES
    ]
    more = len(shown) - MAX_DNS_RECORDS_SHOWN
    return ", ".join(shown[:MAX_DNS_RECORDS_SHOWN]) + (f" and {more} more" if more > 0 else "")


def _whois_lines(whois: Any) -> list[str]:
    if not isinstance(whois, str):
        return []
    lines = [line.strip() for line in whois.splitlines() if line.strip()]
    if len(lines) > MAX_WHOIS_LINES_SHOWN:
        return [
            *lines[:MAX_WHOIS_LINES_SHOWN],
            f"[{len(lines) - MAX_WHOIS_LINES_SHOWN} more lines in the case]",
        ]
    return lines


def _joined(*parts: Any) -> str:
    return ", ".join(str(part) for part in parts if part not in (None, ""))


def _trim_utf8(text: str, max_bytes: int) -> str:
    encoded = text.encode()
    if len(encoded) <= max_bytes:
        return text
    marker = " [...]"
    # errors="ignore" drops a multi-byte character cut in half at the boundary
    return encoded[: max_bytes - len(marker)].decode(errors="ignore") + marker
