"""The approval function URL's pages: what a person sees when opening an approve or reject link, the
decision the page's button sends, and a case's own page.

Opening an approve or reject link (GET, `token`) changes nothing, so that mail scanners and chat previews
that fetch links cannot approve anything; only the button (POST) decides, and the address and user agent
it came from are kept with the decision. A case page link (GET, `view`: `vtriage.approval.case_page_link`,
the link every ticket carries) shows the case and decides nothing at all.

Both pages show on one screen, desktop or phone, what a person needs to decide: the finding (title,
account, Region, resources, the detector or vendor), the evidence (each IOC with its verdict, the
reasons and VirusTotal's view), and the actions; the approval page puts first the action that waits,
what it will change and how it is rolled back (`vtriage.action_text`, the words the tickets use too), and
when its link stops working (UTC, and how long from now).
Beside each IOC looked up, VirusTotal's view of it: with VT Augment (`widgets`, the deployment's key
licensed for it), its widget, minted when the page is opened (a widget URL lives three days, so none is
stored and a link stays good for as long as it is valid; triage never mints one); otherwise, or when
minting fails, a link to VirusTotal's own page of it, with the reason. An IOC kept but never looked up
(private, allow-listed) is never sent to VirusTotal, for a widget either.

Every value from the alert on a page is escaped on its labelled line (`vtriage.display.one_line`), then
as HTML. The page loads nothing from elsewhere and runs no script: its one stylesheet is inline and its
Content-Security-Policy allows that stylesheet alone, by its hash (`STYLESHEET`), and one frame origin,
VirusTotal's, only on a page that shows widgets; no other site may frame the page (its button).
"""

from __future__ import annotations

import base64
import hashlib
import html
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from aws_lambda_powertools import Logger

from vtriage.action_text import ROLLBACK_COMMAND, action_name, describe, not_contained, status_words
from vtriage.approval import (
    TOKEN_PARAMETER,
    VIEW_PARAMETER,
    GoneTokenError,
    InvalidTokenError,
    carry_out_decision,
    check,
    verify_case_page,
)
from vtriage.approval_links import Approver, Decision
from vtriage.display import one_line
from vtriage.errors import CaseNotFoundError, ConfigurationError, TransientError, VtriageError
from vtriage.models import (
    DRY_RUN_PARAMETER,
    NO_ACTION_ON_SUBJECT,
    Action,
    Alert,
    Case,
    CaseStatus,
    Ioc,
    IocOutcome,
    IocType,
    ResourceType,
)
from vtriage.ports import ApprovalStore, CaseRepository, TaskCallback, WidgetSource
from vtriage.virustotal.errors import (
    VirusTotalError,
    VirusTotalForbiddenError,
    VirusTotalNotFoundError,
    VirusTotalQuotaExceededError,
    VirusTotalTooManyRequestsError,
)
from vtriage.virustotal.objects import GUI_BASE_URL, gui_link
from vtriage.virustotal.widget import WIDGET_ORIGIN, Widget

logger = Logger(child=True)

# Widgets minted for one page: each is a request on the key's quota, and a case may hold many IOCs.
MAX_WIDGETS = 10
# How long a page waits for VirusTotal's widget URLs (the function has 10 s): later ones are links.
WIDGET_WAIT_SECONDS = 5.0
_MINTING_THREADS = 4

# The pages' one stylesheet, inline: the CSP allows exactly this text, by its SHA-256.
STYLESHEET = (
    "*,*::before,*::after{box-sizing:border-box}"
    "html{-webkit-text-size-adjust:100%;color-scheme:light}"
    "body{margin:0;font:16px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,'Noto Sans',sans-serif;"
    "color:#1f2328;background:#f6f8fa}"
    "header{background:#24292f;color:#fff;padding:.6rem 1rem;display:flex;flex-wrap:wrap;gap:.25rem .75rem;"
    "align-items:baseline}"
    "header strong{font-size:1.1rem}header span{color:#d0d7de}"
    "main{max-width:78rem;margin:0 auto;padding:1rem;display:grid;gap:1rem}"
    "@media (min-width:60rem){main.split{grid-template-columns:minmax(0,1fr) minmax(0,1fr);"
    "align-items:start}}"
    "main>div{display:grid;gap:1rem;min-width:0}"
    "section{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:1rem 1.25rem;min-width:0}"
    "h1{font-size:1.4rem;line-height:1.25;margin:0 0 .5rem}"
    "h2{font-size:1.15rem;line-height:1.3;margin:0 0 .5rem}"
    "h3{font-size:1rem;margin:0 0 .25rem}"
    "p{margin:.5rem 0}"
    "dl{display:grid;grid-template-columns:minmax(5rem,max-content) minmax(0,1fr);gap:.2rem .9rem;"
    "margin:.5rem 0}"
    "dt{color:#59636e;font-weight:600}dd{margin:0}"
    "@media (max-width:32rem){main{padding:.6rem}section{padding:.8rem}"
    "dl{grid-template-columns:5.6rem minmax(0,1fr);gap:.15rem .6rem}dt{font-size:.9rem}}"
    "h1,h2,h3,p,dd,li{overflow-wrap:anywhere}"
    "code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.9em}"
    "a{color:#0969da}"
    ".badge{display:inline-block;padding:0 .55rem;border-radius:999px;border:1px solid;font-size:.85rem;"
    "font-weight:600;white-space:nowrap}"
    ".malicious{color:#82071e;background:#ffebe9;border-color:#ff8182}"
    ".suspicious{color:#7d4e00;background:#fff8c5;border-color:#d4a72c}"
    ".harmless{color:#116329;background:#dafbe1;border-color:#4ac26b}"
    ".unknown,.skipped{color:#59636e;background:#f6f8fa;border-color:#d0d7de}"
    ".ioc{border-top:1px solid #d8dee4;padding:.75rem 0 .25rem}.ioc:first-of-type{border-top:0;padding-top:0}"
    ".action{border-left:4px solid #0969da}"
    ".expires{background:#fff8c5;border:1px solid #d4a72c;border-radius:6px;padding:.5rem .75rem}"
    ".note{color:#59636e;font-size:.93rem}"
    "ul{margin:.25rem 0;padding-left:1.25rem}li{margin:.2rem 0}"
    "form{margin:1rem 0 .25rem}"
    "button{font:inherit;font-weight:600;font-size:1.05rem;width:100%;padding:.8rem 1rem;border:0;"
    "border-radius:8px;color:#fff;background:#1f883d;cursor:pointer}"
    "button.reject{background:#cf222e}"
    "button:focus-visible{outline:3px solid #0969da;outline-offset:2px}"
    "iframe{display:block;width:100%;border:1px solid #d0d7de;border-radius:6px}"
)
_STYLE_HASH = base64.b64encode(hashlib.sha256(STYLESHEET.encode()).digest()).decode()
# Nothing from elsewhere, no script, no other style; the button posts to this URL only; no site frames it.
PAGE_CSP = (
    f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
WIDGET_PAGE_CSP = f"{PAGE_CSP}; frame-src {WIDGET_ORIGIN}"
_HEADERS = {
    "content-type": "text/html; charset=utf-8",
    "cache-control": "no-store",
    # The page's address holds its token: no request it makes (the widgets, a link) may carry it away.
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
}
# The widget runs VirusTotal's scripts in VirusTotal's own origin, and opens VirusTotal's pages.
_FRAME_SANDBOX = "allow-scripts allow-same-origin allow-popups allow-popups-to-escape-sandbox"


def answer(
    event: dict[str, Any],
    *,
    key: bytes,
    store: ApprovalStore,
    cases: CaseRepository,
    callback: TaskCallback,
    now: datetime,
    case_page_key: bytes | None = None,
    widgets: WidgetSource | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """The function URL's answer to a person's request: the case page for GET with `view` (checked with
    `case_page_key`), a confirmation page for GET with `token`, the decision for POST, and 4xx pages that
    say what was wrong with the link. `widgets` (VT Augment, when the deployment's key may use it) mints
    each IOC's widget on the pages that show the case; `clock` is the time its wait is measured on."""
    method = str(event.get("requestContext", {}).get("http", {}).get("method", "GET")).upper()
    if method not in {"GET", "POST"}:
        return _page(405, "Not allowed", "Open the link from the notification.")
    view = _query_value(event, VIEW_PARAMETER) if method == "GET" else None
    if view:
        return _case_page(view, case_page_key, cases, now, Minting(widgets, clock))
    token = _token(event, method)
    if not token:
        return _page(400, "No approval token", "Open the link exactly as the notification gives it.")
    try:
        if method == "GET":
            return _confirmation(token, key, store, cases, now, minting=Minting(widgets, clock))
        result = carry_out_decision(
            token, key=key, store=store, cases=cases, callback=callback, now=now, approver=approver_of(event)
        )
    except InvalidTokenError as error:
        logger.warning("refused an approval token", extra={"reason": str(error)})
        return _page(403, "Refused", "This link is not a valid vtriage approval link.")
    except GoneTokenError as error:
        return _page(410, "No longer valid", str(error))
    except CaseNotFoundError:
        return _page(404, "Not found", "The case of this approval is gone.")
    except TransientError as error:
        logger.warning("a decision could not be passed on", extra={"reason": str(error)})
        return _page(
            503,
            "Not decided yet",
            "The decision could not be passed on (a service was briefly unavailable). Nothing was "
            "decided and the link still works: try again in a minute.",
        )
    logger.info(
        "approval decided",
        extra={
            "case_id": result.case_id,
            "decision": result.decision.value,
            "source_ip": approver_of(event).source_ip,
        },
    )
    name, target = action_name(result.action_type), one_line(result.target)
    if result.decision is Decision.APPROVE:
        title = f"Approved: {name}"
        text = f"You approved it: it runs now on {target}, and the case's ticket will say what it changed."
    else:
        title = f"Rejected: {name}"
        text = (
            f"You rejected it: it will not run on {target}, and the case goes to its ticket with your "
            "decision."
        )
    return _page(200, title, f"{text} Case {one_line(result.case_id)}. You can close this page.")


def approver_of(event: dict[str, Any]) -> Approver:
    """What the function URL's request proves of who sent it: its source address and user agent, as
    Lambda reports them in the request context (not headers, which the sender writes)."""
    http = event.get("requestContext", {}).get("http", {})
    address, agent = http.get("sourceIp"), http.get("userAgent")
    return Approver(
        source_ip=address if isinstance(address, str) and address else None,
        user_agent=agent if isinstance(agent, str) and agent else None,
    )


@dataclass(frozen=True)
class Shown:
    """What a page shows of VirusTotal beside one IOC: its widget, or why there is none (None: the
    deployment does not use VT Augment, and the link says all)."""

    widget: Widget | None = None
    missing: str | None = None


@dataclass(frozen=True)
class Minting:
    """VT Augment on a page: the widget source (None without VT Augment) and the clock its wait is
    measured on."""

    widgets: WidgetSource | None
    clock: Callable[[], float] = time.monotonic

    def shown(self, case: Case) -> dict[int, Shown]:
        """What the page shows beside each IOC looked up, by its position on the case: a widget minted for
        each of the first `MAX_WIDGETS`, together, for at most `WIDGET_WAIT_SECONDS`; a reason for each
        of the others. Empty without VT Augment."""
        if self.widgets is None:
            return {}
        looked_up = [index for index, ioc in enumerate(case.iocs) if not ioc.skipped_reason]
        minted, beyond = looked_up[:MAX_WIDGETS], looked_up[MAX_WIDGETS:]
        deadline = self.clock() + WIDGET_WAIT_SECONDS
        source = self.widgets

        def mint(index: int) -> Shown:
            try:
                return Shown(widget=source.widget(case.iocs[index].value, deadline))
            except VtriageError as error:
                logger.warning(
                    "no VT Augment widget for an IOC",
                    extra={"case_id": case.case_id, "error": type(error).__name__},
                )
                return Shown(missing=_why_no_widget(error))

        shown: dict[int, Shown] = {}
        if minted:
            with ThreadPoolExecutor(max_workers=min(_MINTING_THREADS, len(minted))) as pool:
                shown.update(zip(minted, pool.map(mint, minted), strict=True))
        for index in beyond:
            shown[index] = Shown(missing=f"a page shows the widgets of its first {MAX_WIDGETS} IOCs only")
        return shown


def _why_no_widget(error: VtriageError) -> str:
    """Why VirusTotal gave no widget, in words for the person reading the page."""
    if isinstance(error, VirusTotalForbiddenError):
        return "the deployment's VirusTotal key is not licensed for VT Augment (VirusTotal answered 403)"
    if isinstance(error, VirusTotalQuotaExceededError | VirusTotalTooManyRequestsError):
        return "the VirusTotal key's quota is spent for now (VirusTotal answered 429): reload later"
    if isinstance(error, VirusTotalNotFoundError):
        return "VirusTotal has no report of it"
    if isinstance(error, ConfigurationError):
        return "VirusTotal refused the deployment's key, or it could not be read"
    if isinstance(error, TransientError):
        return "VirusTotal did not answer in time: reload the page to try again"
    if isinstance(error, VirusTotalError):
        return f"VirusTotal answered {one_line(error.code, limit=60)}"
    return "VirusTotal could not be asked"


def _case_page(
    view: str, case_page_key: bytes | None, cases: CaseRepository, now: datetime, minting: Minting
) -> dict[str, Any]:
    """The case, read-only."""
    refused = _page(403, "Refused", "This link is not a valid vtriage case page link.")
    if case_page_key is None:
        return refused
    try:
        claims = verify_case_page(view, case_page_key, now)
    except InvalidTokenError as error:
        logger.warning("refused a case page token", extra={"reason": str(error)})
        return refused
    except GoneTokenError as error:
        return _page(410, "No longer valid", str(error))
    case = cases.get(claims.case_id)
    if case is None:
        return _page(404, "Not found", "The case is gone: cases are kept for a limited time.")
    shown = minting.shown(case)
    summary = (
        f"<section><h1>{_text(one_line(case.alert.title))}</h1>"
        f"<p>This page shows the case and decides nothing. "
        f"Its link works until {_text(_when(claims.expires_at, now))}.</p>"
        f"{_listed([('Verdict', _verdict(case.verdict.value)), ('Status', _CASE_STATUSES[case.status])])}"
        f"{_listed([('Not contained', line) for line in not_contained(case.actions)])}"
        f"</section>{_finding(case)}"
    )
    return _page(
        200,
        f"Case {one_line(case.case_id)}",
        kicker="case page (read-only)",
        side=summary,
        main=_evidence(case, shown) + _actions(case, described=True),
        frames=any(item.widget for item in shown.values()),
    )


def _confirmation(
    token: str, key: bytes, store: ApprovalStore, cases: CaseRepository, now: datetime, *, minting: Minting
) -> dict[str, Any]:
    """What waits, what it changes and how it is rolled back, when the link expires, a button that
    decides, and the case's evidence: opening a link decides nothing."""
    claims = check(token, key, store, now)
    case = cases.get(claims.case_id)
    if case is None or claims.action_index >= len(case.actions):
        raise CaseNotFoundError(claims.case_id)
    action = case.actions[claims.action_index]
    approving = claims.decision is Decision.APPROVE
    verb = "Approve" if approving else "Reject"
    name = action_name(action.type)
    text = describe(action)
    first: list[tuple[str, str | Html]] = [
        ("Target", one_line(action.target)),
        ("Changes", text.changes),
        ("Rollback", text.rollback),
        ("Where", _where(case.alert, action)),
        ("Verdict", Html(f"{_verdict(case.verdict.value)} {_text(_counted(case))}")),
    ]
    if action.parameters.get(DRY_RUN_PARAMETER, "").lower() == "true":
        first.append(
            ("Dry run", "the playbook keeps this action in dry run: it records what it would change")
        )
    then: list[tuple[str, str | Html]] = [
        ("Why it waits", one_line(action.detail or "the playbook asks for a person's approval")),
        (
            "Undo it all",
            Html(
                f"<code>{_text(ROLLBACK_COMMAND)} {_text(one_line(case.case_id))}</code> rolls back every "
                "action of the case"
            ),
        ),
    ]
    decide = (
        f"<section class='action'><h1>{verb}: {_text(name[:1].lower() + name[1:])}?</h1>{_listed(first)}"
        f"<p class='expires'>This link works until {_text(_when(claims.expires_at, now))}. After that "
        "the action does not run and the case is escalated to its ticket.</p>"
        f'<form method="post"><input type="hidden" name="{TOKEN_PARAMETER}" value="{_text(token)}">'
        f'<button type="submit" class="{verb.lower()}">'
        f"{'Approve: run it' if approving else 'Reject: do not run it'}</button></form>"
        "<p class='note'>Opening this page decided nothing: only the button does, once. The action's "
        "other link (approve or reject) then stops working. A deployment in dry run (its default) only "
        f"records what the action would change.</p>{_listed(then)}</section>"
    )
    shown = minting.shown(case)
    return _page(
        200,
        f"{verb}: {name}",
        kicker="approval needed",
        side=decide + _finding(case),
        main=_evidence(case, shown) + _actions(case, described=False),
        frames=any(item.widget for item in shown.values()),
    )


def _where(alert: Alert, action: Action) -> str:
    """Where the action acts, as a person reads it: the finding's own account and Region."""
    if not action.type.acts_in_aws:
        return "the deployment's own CrowdStrike Falcon tenant"
    return f"account {one_line(alert.account)}, Region {one_line(alert.region)} (the finding's own)"


def _counted(case: Case) -> str:
    """The IOCs in a few words: '(2 indicators: 1 malicious, 1 not looked up)'."""
    if not case.iocs:
        return "(no indicator)"
    counts: dict[str, int] = {}
    for ioc in case.iocs:
        word = "not looked up" if ioc.skipped_reason else ioc.verdict.value
        counts[word] = counts.get(word, 0) + 1
    listed = ", ".join(f"{count} {word}" for word, count in counts.items())
    return f"({_count(len(case.iocs), 'indicator')}: {listed})"


def _finding(case: Case) -> str:
    """The finding: what it is, from which detector or vendor, where, and on what."""
    alert = case.alert
    rows: list[tuple[str, str | Html]] = [
        ("Title", one_line(alert.title)),
        ("Severity", f"{alert.severity.shown_label} ({alert.severity.score:g} of 10)"),
        ("Type", one_line(alert.type)),
        *_product(alert),
    ]
    if alert.vendor is None:
        rows += [("Account", one_line(alert.account)), ("Region", one_line(alert.region))]
    rows += [(_RESOURCE_LABELS[resource.type], one_line(resource.id)) for resource in alert.resources]
    rows += [
        (subject.kind[:1].upper() + subject.kind[1:], f"{subject.named}: {NO_ACTION_ON_SUBJECT}")
        for subject in alert.subjects
    ]
    rows += [("Finding id", one_line(alert.id)), ("Case", one_line(case.case_id))]
    if case.provenance is not None:
        rows.append(("Sent through", one_line(case.provenance.described)))
    rows += [("Note", one_line(note)) for note in alert.not_actionable]
    return f"<section><h2>Finding</h2>{_listed(rows)}</section>"


def _product(alert: Alert) -> list[tuple[str, str | Html]]:
    """The detector, and the product or vendor that raised the finding."""
    detector = _DETECTORS.get(alert.source) or one_line(alert.source)
    if alert.vendor is not None:
        vendor = alert.vendor
        rows: list[tuple[str, str | Html]] = [("Vendor", one_line(vendor.platform))]
        rows += [
            (label, one_line(value))
            for label, value in (("Product", vendor.product), ("Host", vendor.host), ("User", vendor.user))
            if value
        ]
        rows.append(("AWS", one_line(vendor.outside_aws)))
        return rows
    if alert.product:
        return [("Detector", detector), ("Product", one_line(alert.product))]
    return [("Detector", detector)]


def _evidence(case: Case, shown: dict[int, Shown]) -> str:
    """Each IOC with its verdict, reasons and VirusTotal's view, as HTML."""
    iocs = "".join(_ioc(ioc, shown.get(index)) for index, ioc in enumerate(case.iocs))
    heading = f"Evidence: {_count(len(case.iocs), 'indicator')} of compromise"
    return f"<section><h2>{_text(heading)}</h2>{iocs or '<p>None.</p>'}</section>"


def _actions(case: Case, *, described: bool) -> str:
    """Every action on the case, its target and status; with what it changes when `described`."""
    items = []
    for action in case.actions:
        status = _status(action)
        name, target = _text(action_name(action.type)), _text(one_line(action.target))
        item = f"<li><strong>{name}</strong> <code>{target}</code> - {_text(status)}"
        if described:
            text = describe(action)
            item += f"<br><span class='note'>{_text(text.changes)} {_text(text.rollback)}</span>"
        items.append(item + "</li>")
    listed = f"<ul>{''.join(items)}</ul>" if items else "<p>None.</p>"
    heading = f"Actions on this case ({len(case.actions)})"
    return f"<section><h2>{_text(heading)}</h2>{listed}</section>"


def _status(action: Action) -> str:
    """An action's status and its detail, once: a detail that starts by saying the status says it alone."""
    words = status_words(action.status)
    detail = one_line(action.detail)
    if not detail:
        return words
    return detail if detail.lower().startswith(words.split(",")[0]) else f"{words}: {detail}"


def _ioc(ioc: IocOutcome, shown: Shown | None) -> str:
    """One IOC: its value, verdict and reasons, then its widget or a link to VirusTotal's page."""
    heading = f"<h3>{_text(_IOC_LABELS[ioc.type])} <code>{_text(one_line(ioc.value))}</code></h3>"
    if ioc.skipped_reason:
        facts: list[tuple[str, str | Html]] = [
            ("Not looked up", one_line(ioc.skipped_reason)),
            ("Found at", one_line(ioc.found_at)),
        ]
        return f"<div class='ioc'>{heading}{_listed(facts)}</div>"
    counts = f"{ioc.malicious} malicious and {ioc.suspicious} suspicious of {_count(ioc.total, 'engine')}" + (
        " (from the cache)" if ioc.cached else ""
    )
    facts = [
        ("Verdict", _verdict(ioc.verdict.value)),
        ("Detections", counts),
        *(("Why", one_line(reason)) for reason in ioc.reasons),
        ("Found at", one_line(ioc.found_at)),
    ]
    return f"<div class='ioc'>{heading}{_listed(facts)}{_virustotal(ioc, shown)}</div>"


def _virustotal(ioc: IocOutcome, shown: Shown | None) -> str:
    """VirusTotal's view of a looked-up IOC: its widget, else a link to its page (with why no widget)."""
    if shown is not None and shown.widget is not None:
        widget = shown.widget
        ratio = f"{widget.detections} of {widget.total} security vendors flag it now" if widget.ratio else ""
        caption = "VirusTotal's report (VT Augment, for context)" + (f": {ratio}" if ratio else "")
        return (
            f"<p>{_text(caption)}</p>"
            f'<iframe src="{_text(widget.url)}" title="VirusTotal report" width="100%" height="600" '
            f'sandbox="{_FRAME_SANDBOX}" referrerpolicy="no-referrer" loading="lazy"></iframe>'
        )
    link = _gui_link(ioc)
    anchor = f'<a href="{_text(link)}" rel="noopener noreferrer">VirusTotal\'s page of it</a>'
    if shown is not None and shown.missing:
        return f"<p>{anchor} (no widget: {_text(shown.missing)})</p>"
    return f"<p>{anchor}</p>"


def _gui_link(ioc: IocOutcome) -> str:
    """The IOC's page on VirusTotal: the link its enrichment kept, when it is VirusTotal's."""
    if ioc.link and ioc.link.startswith(GUI_BASE_URL + "/"):
        return ioc.link
    return gui_link(Ioc(type=ioc.type, value=ioc.value, found_at=ioc.found_at))


class Html(str):
    """Markup vtriage wrote, with every value in it escaped already: `_listed` shows it as it is."""

    __slots__ = ()


def _text(value: str) -> str:
    """Text as HTML: every character that could be markup escaped."""
    return html.escape(value)


def _verdict(verdict: str) -> Html:
    """A verdict as a coloured badge (its class is the verdict's own name, never a sender's value)."""
    return Html(f"<span class='badge {_text(verdict)}'>{_text(verdict)}</span>")


def _listed(facts: list[tuple[str, str | Html]]) -> str:
    listed = "".join(
        f"<dt>{_text(label)}</dt><dd>{value if isinstance(value, Html) else _text(value)}</dd>"
        for label, value in facts
    )
    return f"<dl>{listed}</dl>" if listed else ""


def _when(expires_at: int, now: datetime) -> str:
    """When a link stops working: the UTC time, and how long from now ('2026-11-26 13:00 UTC (in 1
    hour)')."""
    moment = datetime.fromtimestamp(expires_at, UTC)
    return f"{moment:%Y-%m-%d %H:%M} UTC ({_from_now(expires_at - now.timestamp())})"


def _from_now(seconds: float) -> str:
    minutes = int(seconds // 60)
    if minutes < 1:
        return "in less than a minute"
    if minutes < 60:
        return f"in {_count(minutes, 'minute')}"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"in {_count(hours, 'hour')}" + (f" {_count(minutes, 'minute')}" if minutes else "")
    days, hours = divmod(hours, 24)
    return f"in {_count(days, 'day')}" + (f" {_count(hours, 'hour')}" if hours else "")


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def _sentence(text: str) -> str:
    """A message as a sentence: a capital first, one full stop last."""
    text = text.strip()
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def _query_value(event: dict[str, Any], name: str) -> str | None:
    values = parse_qs(event.get("rawQueryString") or "").get(name)
    if not values:
        single = (event.get("queryStringParameters") or {}).get(name)
        values = [single] if single else None
    return values[0] if values else None


def _token(event: dict[str, Any], method: str) -> str | None:
    if method == "POST":
        body = event.get("body") or ""
        if event.get("isBase64Encoded"):
            body = base64.b64decode(body).decode("utf-8", "replace")
        values = parse_qs(body).get(TOKEN_PARAMETER)
        return values[0] if values else None
    return _query_value(event, TOKEN_PARAMETER)


def _page(
    status: int,
    title: str,
    text: str = "",
    *,
    kicker: str = "",
    side: str = "",
    main: str = "",
    frames: bool = False,
) -> dict[str, Any]:
    """A page with vtriage's header. A message page (`text`, a 4xx or a decision made) is one section:
    its title and sentence. A case's page has two columns on a wide screen, one on a phone: `side` (what
    to decide, the finding) and `main` (the evidence), both HTML already escaped. `frames`: it frames
    VirusTotal's widgets, which its CSP then allows, and nothing else."""
    if side or main:
        body = f"<main class='split'><div>{side}</div><div>{main}</div></main>"
    else:
        body = f"<main><section><h1>{_text(title)}</h1><p>{_text(_sentence(text))}</p></section></main>"
    document = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        "<meta name='robots' content='noindex'>"
        f"<title>{_text(title)} - vtriage</title><style>{STYLESHEET}</style></head>"
        f"<body><header><strong>vtriage</strong>{f'<span>{_text(kicker)}</span>' if kicker else ''}</header>"
        f"{body}</body></html>"
    )
    headers = dict(_HEADERS) | {"content-security-policy": WIDGET_PAGE_CSP if frames else PAGE_CSP}
    return {"statusCode": status, "headers": headers, "body": document}


_DETECTORS = {
    "guardduty": "Amazon GuardDuty",
    "securityhub": "AWS Security Hub",
    "ocsf": "an OCSF finding",
    "falcon": "CrowdStrike Falcon",
    "workspace": "Google Workspace",
}
_RESOURCE_LABELS = {
    ResourceType.INSTANCE: "EC2 instance",
    ResourceType.ACCESS_KEY: "Access key",
    ResourceType.S3_BUCKET: "S3 bucket",
    ResourceType.S3_OBJECT: "S3 object",
    ResourceType.FALCON_HOST: "Falcon host",
}
_IOC_LABELS = {IocType.IP: "IP address", IocType.DOMAIN: "Domain", IocType.URL: "URL", IocType.FILE: "File"}
_CASE_STATUSES = {
    CaseStatus.NEW: "new",
    CaseStatus.PENDING_ENRICHMENT: "waiting for VirusTotal's quota",
    CaseStatus.ENRICHED: "triaged",
    CaseStatus.REMEDIATED: "remediated",
    CaseStatus.TICKETED: "ticketed",
    CaseStatus.CLOSED: "closed",
    CaseStatus.FAILED: "failed",
}
