"""Open one ticket per case, with a plain-text report an analyst can read in an email."""

from __future__ import annotations

import json
from datetime import datetime

from pydantic import BaseModel, ConfigDict

from vtriage.errors import CaseNotFoundError
from vtriage.models import Branch, Case, CaseStatus, IocOutcome, Resource, TaskInput, Ticket
from vtriage.ports import CaseRepository, TicketSink

MAX_ERROR_BYTES = 1024


class TicketResult(BaseModel):
    """What the ticket function returns to the state machine."""

    model_config = ConfigDict(extra="forbid")

    case_id: str
    ticket: Ticket


def open_ticket(task: TaskInput, cases: CaseRepository, sink: TicketSink, now: datetime) -> TicketResult:
    """Open the case's ticket through the sink and store it on the case; a case has at most one.

    A retry returns the ticket already opened. A caught error (`task.error`) marks the case FAILED
    and is kept on it and in the report.
    """
    case = cases.get(task.case_id)
    if case is None:
        raise CaseNotFoundError(f"case {task.case_id} not found")
    if case.ticket is not None:
        return TicketResult(case_id=case.case_id, ticket=case.ticket)

    if case.branch is not Branch.REMEDIATE:
        case.branch = Branch.TICKET
    if task.error:
        case.status = CaseStatus.FAILED
        case.error = describe_error(task.error)
    elif case.status is not CaseStatus.REMEDIATED:
        case.status = CaseStatus.TICKETED
    case.updated_at = now

    case.ticket = sink.open(case, render_report(case))
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


def render_report(case: Case) -> str:
    """The case as plain text: the alert, its resources, every IOC and why, the actions, the error."""
    alert = case.alert
    severity = f"{alert.severity.label.upper()} {alert.severity.score:g}"
    lines = [
        f"[{severity}] {case.verdict.value.upper()}: {alert.title}",
        "",
        _field("Case", case.case_id),
        _field("Status", case.status.value + (f" (branch: {case.branch.value})" if case.branch else "")),
        "",
        "Alert",
        _field("Type", alert.type, indent=2),
        _field("Source", alert.source, indent=2),
        _field("ID", alert.id, indent=2),
        _field("Account", alert.account, indent=2),
        _field("Region", alert.region, indent=2),
        _field("Created", alert.created_at.isoformat(), indent=2),
        _field("Updated", alert.updated_at.isoformat(), indent=2),
        "",
        f"Resources ({len(alert.resources)})",
        *([_resource_line(resource) for resource in alert.resources] or ["  (none)"]),
        "",
        f"Indicators of compromise ({len(case.iocs)})",
        *([line for ioc in case.iocs for line in _ioc_lines(ioc)] or ["  (none)"]),
        "",
        f"Actions ({len(case.actions)})",
        *(
            [
                f"  - {action.type.value} {action.target}: {action.status.value}"
                + (f" - {action.detail}" if action.detail else "")
                for action in case.actions
            ]
            or ["  (none)"]
        ),
    ]
    if case.error:
        lines += ["", "Error", f"  {case.error}"]
    return "\n".join(lines) + "\n"


def _field(name: str, value: str, indent: int = 0) -> str:
    return f"{' ' * indent}{name + ':':<10} {value}"


def _resource_line(resource: Resource) -> str:
    facts = []
    if resource.vpc_id:
        facts.append(f"vpc {resource.vpc_id}")
    if resource.network_interface_ids:
        facts.append("interfaces " + ", ".join(resource.network_interface_ids))
    if resource.addresses:
        facts.append("addresses " + ", ".join(resource.addresses))
    if resource.user_name:
        facts.append(f"user {resource.user_name}")
    if resource.bucket:
        facts.append(f"bucket {resource.bucket}")
    if resource.key:
        facts.append(f"key {resource.key}")
    return f"  - {resource.type.value} {resource.id}" + (f" ({'; '.join(facts)})" if facts else "")


def _ioc_lines(ioc: IocOutcome) -> list[str]:
    head = f"  - {ioc.type.value} {ioc.value}"
    if ioc.skipped_reason:
        return [f"{head}: not looked up ({ioc.skipped_reason})"]
    counts = f"{ioc.malicious} malicious, {ioc.suspicious} suspicious of {ioc.total} engines"
    lines = [
        f"{head}: {ioc.verdict.value.upper()}",
        f"      {counts}" + (" (from cache)" if ioc.cached else ""),
    ]
    lines += [f"      why: {reason}" for reason in ioc.reasons]
    if ioc.link:
        lines.append(f"      VirusTotal: {ioc.link}")
    lines.append(f"      found at: {ioc.found_at}")
    return lines


def _trim_utf8(text: str, max_bytes: int) -> str:
    encoded = text.encode()
    if len(encoded) <= max_bytes:
        return text
    marker = " [...]"
    # errors="ignore" drops a multi-byte character cut in half at the boundary
    return encoded[: max_bytes - len(marker)].decode(errors="ignore") + marker
