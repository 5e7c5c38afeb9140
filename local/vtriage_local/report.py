"""The runner's readable output: one block per case."""

from __future__ import annotations

from typing import Any

_VERDICT_MARK = {"malicious": "!!", "suspicious": "! ", "harmless": "ok", "unknown": "? "}


def render(document: dict[str, Any], log_path: str | None = None) -> str:
    """A summary per case, then the rejected records and the run's figures."""
    lines: list[str] = []
    for case in document["cases"]:
        lines.extend(_case_block(case))
        lines.append("")
    if document["failures"]:
        lines.append(f"Rejected records ({len(document['failures'])}):")
        lines.extend(f"  {failure['message_id']}: {failure['reason']}" for failure in document["failures"])
        lines.append("")
    if document.get("ignored"):
        lines.append(f"Records acknowledged without a case ({len(document['ignored'])}):")
        lines.extend(f"  {item['message_id']}: {item['reason']}" for item in document["ignored"])
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
    lines.append(
        f"{len(document['cases'])} case(s) from {stats['records']} record(s); "
        f"{stats['vt_requests']} VirusTotal request(s), {stats['vt_cache_hits']} cache hit(s); "
        f"{stats['duration_s']:.1f} s"
    )
    if log_path:
        lines.append(f"function logs: {log_path}")
    return "\n".join(lines)


def _case_block(case: dict[str, Any]) -> list[str]:
    lines = [
        f"== {case['type']}  [{case['source']}, severity {case['severity']:g} {case['severity_label']}]",
        f"   alert     {case['alert_id']}",
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
            lines.append(f"     {action['type']} {action['target']}: {action['status']}")
            if action["detail"]:
                lines.append(f"          {action['detail']}")
    ticket = case["ticket"]
    lines.append(f"   ticket    {ticket['provider']} {ticket['id']}" if ticket else "   ticket    none")
    if case.get("error"):
        lines.append(f"   error     {case['error']}")
    return lines


def _ioc_line(ioc: dict[str, Any]) -> str:
    head = f"{ioc['type']:<6} {ioc['value']:<40}"
    if ioc["skipped_reason"]:
        return f"{head} skipped: {ioc['skipped_reason']}"
    counts = f"{ioc['malicious']} malicious, {ioc['suspicious']} suspicious of {ioc['total']} engines"
    cached = " (cached)" if ioc["cached"] else ""
    return f"{head} {_VERDICT_MARK.get(ioc['verdict'], '  ')} {ioc['verdict']:<10} {counts}{cached}"
