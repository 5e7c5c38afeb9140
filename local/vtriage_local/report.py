"""The runner's readable report: where VirusTotal answered from, a table with one row per case, each
case's details (the finding, its IOCs with their verdicts, reasons and VirusTotal links, the actions), the
findings that made no case of their own, and the counts by verdict, branch and status.

It fits an 80-column terminal: it is laid out for the terminal's width, and printed anywhere else (a file,
a pipe) it is ASCII text of 80 columns. Lines break at spaces only: a link, an ARN or a file name longer
than its line stays whole on a line of its own (`vtriage_local.terminal.lines`).
Everything a sender controls (titles, ids, values, the reasons and details that quote them) is shown
escaped, as literal text (`vtriage_local.terminal.shown`): cut when long, a reason in its middle, so that
its end (what a file held, where) stays."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import IO, Any

from rich.console import Group, RenderableType
from rich.text import Text

from vtriage.action_text import status_words
from vtriage.display import one_line, severity_guessed
from vtriage.models import NO_ACTION_ON_SUBJECT, ActionStatus, Subject
from vtriage.virustotal.objects import GUI_BASE_URL
from vtriage_local.terminal import (
    BRANCHES,
    REPORT_WIDTH,
    STATUSES,
    VERDICTS,
    CaseRow,
    ascii_text,
    case_table,
    counts,
    emit,
    lines,
    main_resource,
    on_terminal,
    shown,
    status_text,
    terminal_width,
    verdict_text,
)

_REPEATS_SHOWN = 5
_WAITING = status_words(ActionStatus.PENDING_APPROVAL)
# A case's details: a label this wide, three columns in, then its values one column after it.
_LABEL_INDENT = 3
_LABEL_WIDTH = 9
_VALUE_INDENT = _LABEL_INDENT + _LABEL_WIDTH + 1
# The most characters of a reason shown (refused, pending, ignored, not acted on): cut in the middle.
_REASON_LIMIT = 2000
# What `--only` may name: a case's verdict or its status (lower-case, as a person types it).
ONLY_VALUES = (*VERDICTS, *(status.lower() for status in STATUSES))


def print_report(
    document: dict[str, Any],
    log_path: str | None = None,
    only: Collection[str] = (),
    file: IO[str] | None = None,
) -> None:
    """Print the report as `vtriage run` does, on `file` (stdout when None): on a terminal as wide as it
    is and in colour, otherwise as ASCII text REPORT_WIDTH columns wide (`emit`), laid out with the
    sender's characters outside ASCII already escaped, so that their escapes fit the lines too."""
    terminal = on_terminal(file)
    shown_document = document if terminal else _ascii_document(document)
    emit(report(shown_document, log_path, only, terminal_width(file)), file)


def _ascii_document(value: Any) -> Any:
    """The document with every string's characters outside ASCII escaped (`ascii_text`)."""
    if isinstance(value, str):
        return ascii_text(value)
    if isinstance(value, dict):
        return {key: _ascii_document(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_ascii_document(item) for item in value]
    return value


def report(
    document: dict[str, Any],
    log_path: str | None = None,
    only: Collection[str] = (),
    width: int = REPORT_WIDTH,
) -> list[RenderableType]:
    """The report, `width` columns wide, for rich to print. `only` (values of ONLY_VALUES) keeps the
    cases whose verdict or status is one of them; the counts and figures at the end are the whole run's."""
    return list(_report(document, log_path, {value.lower() for value in only}, width))


def shown_by(case: dict[str, Any], only: Collection[str]) -> bool:
    """Whether `--only` keeps the case: no filter, or its verdict or status is among the values."""
    if not only:
        return True
    return str(case.get("verdict") or "").lower() in only or str(case.get("status") or "").lower() in only


def something_failed(document: dict[str, Any]) -> bool:
    """Whether the run needs a closer look: a finding refused or still pending, a case FAILED, an action
    that failed, or an execution that neither succeeded nor waits for a person."""
    cases = document["cases"]
    return bool(
        document["failures"]
        or document["pending"]
        or any(case.get("status") == "FAILED" for case in cases)
        or any(action["status"] == "failed" for case in cases for action in case["actions"])
        or any(case["execution_status"] not in {"SUCCEEDED", "RUNNING"} for case in cases)
    )


def _report(
    document: dict[str, Any], log_path: str | None, only: set[str], width: int
) -> Iterable[RenderableType]:
    yield _paragraph(_banner(document.get("virustotal")), width)
    cases = document["cases"]
    numbered = list(enumerate(cases, start=1))
    kept = [(number, case) for number, case in numbered if shown_by(case, only)]
    yield Text()
    if kept:
        yield case_table([_row(number, case) for number, case in kept], width)
        for number, case in kept:
            yield Text()
            yield _details(number, case, width)
    elif cases:
        yield _paragraph(Text(f"No case is {' or '.join(sorted(only))} (--only)."), width)
    else:
        yield Text("No case was made.")
    for key, title in (
        ("failures", "Refused"),
        ("pending", "Pending (still deferred when the run stopped waiting)"),
        ("ignored", "Ignored (acknowledged without a case)"),
    ):
        if document.get(key) and (key != "ignored" or not only):
            yield Text()
            heading = Text(
                f"{title} ({len(document[key])}):", style="bold red" if key == "failures" else "bold"
            )
            yield _paragraph(heading, width)
            for item in document[key]:
                line = _place(item)
                line.append(": ")
                # Whole: its end often says what was found instead, or where.
                line.append_text(shown(item["reason"], _REASON_LIMIT, keep_end=True))
                found = [line]
                if item.get("alert_id"):
                    found.append(_finding_id(item))
                yield Group(*lines(Text("  "), found, width, 2))
    # Said of the cases shown only: `--only` matching none prints nothing about the others' actions.
    statuses = {action["status"] for _, case in kept for action in case["actions"]}
    if "dry_run" in statuses:
        yield Text()
        yield _paragraph(
            Text(
                "Remediation ran in dry-run mode (the default): nothing was changed. To let it act, "
                "deploy with `sam deploy --parameter-overrides DryRun=false`, or try it here on the local "
                "copy of the resources: `vtriage run --parameter-overrides DryRun=false FILE...`. Acting "
                "for real, an action waits for a person when its playbook asks for approval or the hour's "
                "allowance (MaxActionsPerHour) is spent: its approve and reject links (signed, expiring, "
                "single-use) go to the approvals topic, and the case's ticket says who decides and until "
                "when; the ticket carries the links too only with ApprovalLinksInTickets=true (README, "
                "Approvals)."
            ),
            width,
        )
    yield Text()
    for line in _totals(document, len(kept), only):
        yield _paragraph(line, width)
    if log_path:
        # The path whole, after its label or on a line of its own: a path is copied, not read.
        yield Group(*lines(Text("function logs: "), [Text(log_path)], width, len("function logs: ")))


def _paragraph(text: Text, width: int) -> Group:
    """vtriage's own text broken at spaces to fit `width`: a path or link in it stays whole. (Lines in a
    Group: console.print joins the bare texts it is given into a new one, which it would wrap again.)"""
    return Group(*lines(Text(), [text], width, 0))


def _banner(virustotal: dict[str, Any] | None) -> Text:
    """Where VirusTotal's answers came from: the replay server (recordings) or the live API."""
    if not virustotal:
        return Text("VirusTotal: not recorded in this document", style="bold")
    if virustotal.get("mode") == "live":
        banner = Text(f"VirusTotal: LIVE, {virustotal.get('base_url')} (the key in VT_API_KEY)", style="bold")
        if virustotal.get("on_this_machine"):
            banner.append("; on this machine: no VirusTotal quota applied")
        return banner
    banner = Text("VirusTotal: replayed from recordings", style="bold")
    if virustotal.get("bundled"):
        banner.append(" (those bundled with vtriage)")
    else:
        banner.append(" in ")
        banner.append_text(shown(virustotal.get("recordings")))
    banner.append("; no request left this machine (set VT_API_KEY to ask the live API)")
    return banner


def _resources(case: dict[str, Any]) -> list[tuple[str, str]]:
    return [(str(resource["type"]), str(resource["id"])) for resource in case.get("resources", [])]


def _subjects(case: dict[str, Any]) -> list[Subject]:
    """What the case is about that vtriage takes no action on (a Lambda function, a cluster...)."""
    return [Subject.model_validate(subject) for subject in case.get("subjects", [])]


def _resource_values(case: dict[str, Any]) -> list[Text]:
    """The details' `resource` line: each resource, then what the case is about that vtriage takes no
    action on, saying so."""
    resources = [shown(f"{kind} {resource_id}") for kind, resource_id in _resources(case)]
    return resources + [shown(f"{item.described} - {NO_ACTION_ON_SUBJECT}", 3000) for item in _subjects(case)]


def _row(number: int, case: dict[str, Any]) -> CaseRow:
    return CaseRow(
        number=number,
        verdict=case["verdict"],
        branch=case["branch"],
        status=case.get("status"),
        title=case.get("title") or case["type"],
        resource=main_resource(_resources(case), _subjects(case)),
        iocs=len(case["iocs"]),
    )


def _details(number: int, case: dict[str, Any], width: int) -> Group:
    """One case below the table, `width` columns wide: the finding, its place, its verdict, each IOC and
    each action."""
    number_text = Text(f"{number}. ", style="bold")
    title = shown(case.get("title") or case["type"], 300, style="bold")
    details = lines(number_text, [title], width, len(number_text))

    def line(label: str, *values: Text) -> None:
        """The values under a label, one below the other."""
        head = Text(" " * _LABEL_INDENT)
        head.append(label, style="dim")
        details.extend(lines(head, values, width, _VALUE_INDENT))

    guessed = " (guessed: see the notes)" if severity_guessed(case.get("notes", [])) else ""
    finding = shown(case["type"], 200)
    finding.append(f", {one_line(case['source'], 40)}, severity {case['severity']:g} ")
    finding.append(f"{case['severity_label']}{guessed}")
    line("finding", finding)
    line("where", shown(f"account {case['account']}, Region {case['region']}", 200))
    line("resource", *(_resource_values(case) or [Text("none")]))
    line("alert", shown(case["alert_id"]))
    execution = f"{case['case_id']}, execution {case['execution_status']}"
    if case.get("waiting_for_approval"):
        execution += f", {_WAITING}"
    line("case", shown(execution))
    verdict = verdict_text(case["verdict"])
    verdict.append(f" -> branch {case['branch'] or '-'}, ")
    verdict.append_text(status_text(case.get("status")))
    line("verdict", verdict)
    if uncontained := case.get("not_contained", []):
        # Right below the status, so that no one reads the case as contained.
        line("contained", *(shown(f"no: {gap}", _REASON_LIMIT, "bold red") for gap in uncontained))
    vendor = case.get("vendor")
    if vendor:
        line("vendor", _vendor_text(vendor))
        if vendor.get("console_url"):
            # Read by intake only as https on the vendor's own console host.
            line("console", _link(str(vendor["console_url"]), "https://"))
    if case.get("sample"):
        line("sample", Text("generated by its detector to test a pipeline; never acted on"))
    for reason in case.get("not_actionable", []):
        line("not acted", shown(reason, _REASON_LIMIT, keep_end=True))
    for note in case.get("notes", []):
        line("note", shown(note, _REASON_LIMIT, keep_end=True))
    for ioc in case["iocs"]:
        line("IOC", *_ioc_lines(ioc))
    if not case["iocs"]:
        line("IOCs", Text("none found in the alert"))
    for action in case["actions"]:
        line("action", *_action_lines(action, (case["account"], case["region"])))
    if case.get("repeats"):
        repeats = [Text(f"{len(case['repeats'])}, folded into this case")]
        repeats.extend(_finding(repeat) for repeat in case["repeats"][:_REPEATS_SHOWN])
        if len(case["repeats"]) > _REPEATS_SHOWN:
            repeats.append(Text(f"... and {len(case['repeats']) - _REPEATS_SHOWN} more (see --json)"))
        line("repeats", *repeats)
    ticket = case["ticket"]
    line("ticket", shown(f"{ticket['provider']} {ticket['id']}") if ticket else Text("none"))
    if case.get("error"):
        line("error", shown(case["error"], _REASON_LIMIT, style="red", keep_end=True))
    return Group(*details)


_VENDOR_FIELDS = (("product", "product"), ("tenant", "customer"), ("host", "host"))
# The most characters of a vendor line shown (its users: as many whole names as fit, then how many more).
_VENDOR_LIMIT = 300


def _vendor_text(vendor: dict[str, Any]) -> Text:
    """An alert from outside AWS in its vendor's terms: platform and product, customer, host, and its
    users, each escaped (`one_line`): as many whole names as fit the line, then how many more, never a
    name cut in its middle."""
    named = [one_line(vendor["platform"])] + [
        f"{label} {one_line(vendor[key])}" for key, label in _VENDOR_FIELDS if vendor.get(key)
    ]
    users = [str(user) for user in vendor.get("users") or []]
    if users:
        room = _VENDOR_LIMIT - len("; ".join(named)) - len("; user ")
        total = len(users) + int(vendor.get("users_left_out") or 0)
        named.append("user " + _whole_names(users, room, total))
    elif vendor.get("user"):  # a detector naming one user, or a case stored before every user was kept
        named.append(f"user {one_line(vendor['user'])}")
    text = "; ".join(named)
    return shown(text, max(_VENDOR_LIMIT, len(text)))


def _whole_names(names: list[str], room: int, total: int) -> str:
    """As many of `names` as fit whole in `room` characters (the first always), each escaped
    (`one_line`), then how many more of `total` there are."""
    kept: list[str] = []
    for name in map(one_line, names):
        more = total - len(kept) - 1
        if kept and len(", ".join([*kept, name]) + (f" and {more} more" if more > 0 else "")) > room:
            break
        kept.append(name)
    more = total - len(kept)
    return ", ".join(kept) + (f" and {more} more" if more > 0 else "")


def _link(url: str, prefix: str = GUI_BASE_URL + "/") -> Text:
    """A link vtriage made or checked (VirusTotal's page of an IOC, a vendor's console), clickable where
    the terminal allows, when it starts with `prefix`, as it should; anything else is shown escaped, as a
    sender's value. Given as a value of its own, it starts a line of its own (`lines`)."""
    if url.startswith(prefix) and url.isprintable() and " " not in url:
        return Text(url, style=f"link {url}")
    return shown(url)


def _ioc_lines(ioc: dict[str, Any]) -> list[Text]:
    head = shown(f"{ioc['type']} {ioc['value']}", 300)
    if ioc["skipped_reason"]:
        head.append(" skipped: ")
        head.append_text(shown(ioc["skipped_reason"]))
        return [head]
    head.append(" ")
    head.append_text(verdict_text(ioc["verdict"]))
    shown_lines = [head]
    figures = f"{ioc['malicious']} malicious, {ioc['suspicious']} suspicious of {ioc['total']} engines"
    shown_lines.append(Text(figures + (" (cached)" if ioc["cached"] else "")))
    shown_lines.extend(shown(reason) for reason in ioc["reasons"])
    if ioc.get("link"):
        shown_lines.append(_link(str(ioc["link"])))
    return shown_lines


def _action_lines(action: dict[str, Any], finding_place: tuple[str, str]) -> list[Text]:
    head = Text(f"{action['type']} ")
    head.append_text(shown(action["target"]))
    # An action waiting for approval asks something of the reader, in words; the others keep their code.
    status = _WAITING if action["status"] == ActionStatus.PENDING_APPROVAL.value else action["status"]
    # The target a word of its own, nothing glued to it: an S3 key or an ARN is copied whole.
    head.append(" -> ")
    head.append(status, style="bold red" if action["status"] == "failed" else "")
    if action.get("account") and (action["account"], action.get("region")) != finding_place:
        # Where it ran, when not where the finding lives (the `where` line above).
        head.append_text(shown(f" in account {action['account']}, Region {action.get('region')}"))
    return [head, shown(action["detail"], _REASON_LIMIT, keep_end=True)] if action["detail"] else [head]


def _finding(item: dict[str, Any]) -> Text:
    """A finding as a person finds it again: its record, its place in it, and its id."""
    text = _place(item)
    if item.get("alert_id"):
        text.append(", ")
        text.append_text(_finding_id(item))
    return text


def _place(item: dict[str, Any]) -> Text:
    """Where a finding came: its record, and its place in it."""
    text = shown(item["message_id"])
    if item.get("where"):
        text.append(" ")
        text.append_text(shown(item["where"]))
    return text


def _finding_id(item: dict[str, Any]) -> Text:
    """`finding ID`: the id a word of its own, nothing glued to it, so that it is copied whole (an ARN is
    longer than a line)."""
    text = Text("finding ")
    text.append_text(shown(item["alert_id"]))
    return text


def _totals(document: dict[str, Any], kept: int, only: set[str]) -> Iterable[Text]:
    cases = document["cases"]
    if only:
        yield Text(f"Showing {kept} of {len(cases)} case(s) (--only {','.join(sorted(only))}); all of them:")
    yield counts("verdicts", (case["verdict"] for case in cases), VERDICTS)
    yield counts("branches", (case["branch"] for case in cases), BRANCHES)
    yield counts("statuses", (case.get("status") for case in cases), STATUSES)
    uncontained = sum(1 for case in cases if case.get("not_contained"))
    if uncontained:
        yield Text(
            f"{uncontained} case(s) not contained: an action to cut the threat off did not run for real "
            "(each case's `contained` line says which and why)",
            style="bold red",
        )
    waiting = sum(1 for case in cases if case.get("waiting_for_approval"))
    if waiting:
        yield Text(
            f"{waiting} case(s) {_WAITING}: their executions stay RUNNING until a person approves or "
            "rejects; the runner did not wait for them",
            style="yellow",
        )
    stats = document["stats"]
    repeats = sum(len(case.get("repeats", [])) for case in cases)
    failures = len(document["failures"])
    yield Text(
        f"{len(cases)} case(s), {repeats} repeat(s), {len(document.get('ignored', []))} ignored, "
        f"{len(document.get('pending', []))} pending, {failures} refused, "
        f"of {_findings_and_records(stats)}; "
        f"{stats['vt_requests']} VirusTotal request(s), {stats['vt_cache_hits']} cache hit(s); "
        f"{stats['duration_s']:.1f} s",
        style="bold red" if failures else "",
    )


def _findings_and_records(stats: dict[str, Any]) -> str:
    """What the run's fates add up to: its findings, and the records in which none was identified (not
    JSON, no known shape, an empty page), each of which stands for itself."""
    without = int(stats.get("records_without_findings", 0))
    findings = stats.get("findings")
    if findings is None:
        return f"{stats['records']} record(s)"
    records = f"in {stats['records']} record(s)"
    if not without:
        return f"{findings} finding(s) {records}"
    return (
        f"{int(findings) - without} finding(s) and {without} record(s) with no finding identified, {records}"
    )
