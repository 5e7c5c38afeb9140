"""The runner's readable output: one block per case, then the findings that made no case of their own.

Everything a sender controls (ids, values, the reasons that quote them) is shown escaped and cut."""

from __future__ import annotations

from typing import Any

_VERDICT_MARK = {"malicious": "!!", "suspicious": "! ", "harmless": "ok", "unknown": "? "}
_REPEATS_SHOWN = 5


def render(document: dict[str, Any], log_path: str | None = None) -> str:
    """A summary per case, then the refused, pending and ignored findings, and the run's figures."""
    lines: list[str] = []
    for case in document["cases"]:
        lines.extend(_case_block(case))
        lines.append("")
    for key, title in (
        ("failures", "Refused"),
        ("pending", "Pending (still deferred when the run stopped waiting)"),
        ("ignored", "Ignored (acknowledged without a case)"),
    ):
        if document.get(key):
            lines.append(f"{title} ({len(document[key])}):")
            lines.extend(f"  {_finding(item)}: {_plain(item['reason'], 300)}" for item in document[key])
            lines.append("")
    statuses = {action["status"] for case in document["cases"] for action in case["actions"]}
    if "dry_run" in statuses:
        lines.append(
            "Remediation ran in dry-run mode (the default): nothing was changed. To let it act, deploy with\n"
            "  sam deploy --parameter-overrides DryRun=false\n"
            "or try it here on the local copy of the instances:\n"
            "  vtriage run --parameter-overrides DryRun=false FILE...\n"
            "Acting for real, an action waits for a person when its playbook asks for approval or\n"
            "the hour's allowance (MaxActionsPerHour) is spent: the ticket topic then gets approve and\n"
            "reject links, signed, expiring and single-use (README, Approvals).\n"
            "`vtriage rollback CASE_ID` undoes what was done."
        )
        lines.append("")
    stats = document["stats"]
    repeats = sum(len(case.get("repeats", [])) for case in document["cases"])
    lines.append(
        f"{len(document['cases'])} case(s), {repeats} repeat(s), {len(document.get('ignored', []))} ignored, "
        f"{len(document.get('pending', []))} pending, {len(document['failures'])} refused, "
        f"of {stats.get('findings', '?')} finding(s) in {stats['records']} record(s); "
        f"{stats['vt_requests']} VirusTotal request(s), {stats['vt_cache_hits']} cache hit(s); "
        f"{stats['duration_s']:.1f} s"
    )
    if log_path:
        lines.append(f"function logs: {log_path}")
    return "\n".join(lines)


def _case_block(case: dict[str, Any]) -> list[str]:
    lines = [
        f"== {_plain(case['type'])}  "
        f"[{case['source']}, severity {case['severity']:g} {case['severity_label']}]",
        f"   alert     {_plain(case['alert_id'])}",
        f"   case      {case['case_id']}",
        f"   verdict   {case['verdict'].upper()}  ->  branch {case['branch'] or '-'}"
        f"  (execution {case['execution_status']}, case {case.get('status') or '-'})",
    ]
    if case["iocs"]:
        lines.append("   IOCs")
        for ioc in case["iocs"]:
            lines.append("     " + _ioc_line(ioc))
            if ioc["skipped_reason"] is None and ioc["reasons"]:
                lines.append(f"          {ioc['reasons'][0]}")
    else:
        lines.append("   IOCs      none found in the alert")
    if case["actions"]:
        lines.append("   actions")
        for action in case["actions"]:
            lines.append(f"     {action['type']} {_plain(action['target'])}: {action['status']}")
            if action["detail"]:
                lines.append(f"          {action['detail']}")
    if case.get("repeats"):
        lines.append(f"   repeats   {len(case['repeats'])}, folded into this case")
        lines.extend(f"     {_finding(repeat)}" for repeat in case["repeats"][:_REPEATS_SHOWN])
        if len(case["repeats"]) > _REPEATS_SHOWN:
            lines.append(f"     ... and {len(case['repeats']) - _REPEATS_SHOWN} more (see --json)")
    ticket = case["ticket"]
    lines.append(f"   ticket    {ticket['provider']} {ticket['id']}" if ticket else "   ticket    none")
    if case.get("error"):
        lines.append(f"   error     {case['error']}")
    return lines


def _ioc_line(ioc: dict[str, Any]) -> str:
    head = f"{ioc['type']:<6} {_plain(ioc['value']):<40}"
    if ioc["skipped_reason"]:
        return f"{head} skipped: {ioc['skipped_reason']}"
    counts = f"{ioc['malicious']} malicious, {ioc['suspicious']} suspicious of {ioc['total']} engines"
    cached = " (cached)" if ioc["cached"] else ""
    return f"{head} {_VERDICT_MARK.get(ioc['verdict'], '  ')} {ioc['verdict']:<10} {counts}{cached}"


def _finding(item: dict[str, Any]) -> str:
    """A finding as a person finds it again: its record, its place in it, and its id."""
    text = _plain(item["message_id"])
    if item.get("where"):
        text += f" {_plain(item['where'])}"
    if item.get("alert_id"):
        text += f" ({_plain(item['alert_id'])})"
    return text


def _plain(value: Any, limit: int = 120) -> str:
    """A value a sender controls, printable whatever it holds (control characters and lone surrogates
    escaped) and cut when long."""
    text = str(value)
    if not text.isprintable():
        text = repr(text)[1:-1]
    return text if len(text) <= limit else text[:limit] + "..."
