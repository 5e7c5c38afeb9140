"""The approval function URL's pages: what a person sees when opening an approve or reject link, the
decision the page's button sends, and a case's own page.

Opening an approve or reject link (GET, `token`) changes nothing, so that mail scanners and chat previews
that fetch links cannot approve anything; only the button (POST) decides, and the address and user agent
it came from are kept with the decision. A case page link (GET, `view`: `vtriage.approval.case_page_link`,
the link every ticket carries) shows the case and decides nothing at all.

Both pages show the case's evidence: the finding, each IOC with its verdict and the reasons, the actions.
Beside each IOC looked up, VirusTotal's view of it: with VT Augment (`widgets`, the deployment's key
licensed for it), its widget, minted when the page is opened (a widget URL lives three days, so none is
stored and a link stays good for as long as it is valid; triage never mints one); otherwise, or when
minting fails, a link to VirusTotal's own page of it, with the reason. An IOC kept but never looked up
(private, allow-listed) is never sent to VirusTotal, for a widget either.

Every value from the alert on a page is escaped on its labelled line (`vtriage.display.one_line`), then
as HTML. The page loads nothing from elsewhere (no script, no style, no image); its Content-Security-
Policy allows one frame origin, VirusTotal's, and only on a page that shows widgets.
"""

from __future__ import annotations

import base64
import html
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from aws_lambda_powertools import Logger

from vtriage.approval import (
    TOKEN_PARAMETER,
    VIEW_PARAMETER,
    GoneTokenError,
    InvalidTokenError,
    carry_out_decision,
    check,
    verify_case_page,
)
from vtriage.display import one_line
from vtriage.errors import CaseNotFoundError, ConfigurationError, TransientError, VtriageError
from vtriage.models import Approver, Case, Decision, Ioc, IocOutcome
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

PAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'"
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
    done = "approved: it runs now" if result.decision is Decision.APPROVE else "rejected: it will not run"
    logger.info(
        "approval decided",
        extra={
            "case_id": result.case_id,
            "decision": result.decision.value,
            "source_ip": approver_of(event).source_ip,
        },
    )
    return _page(200, f"{result.action} {done}", f"Case {result.case_id}. You can close this page.")


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
    expires = datetime.fromtimestamp(claims.expires_at, UTC).isoformat(timespec="minutes")
    shown = minting.shown(case)
    return _page(
        200,
        f"Case {one_line(case.case_id)}",
        f"This page shows the case and decides nothing. Its link works until {expires}.",
        evidence=_evidence(case, shown),
        frames=any(item.widget for item in shown.values()),
    )


def _confirmation(
    token: str, key: bytes, store: ApprovalStore, cases: CaseRepository, now: datetime, *, minting: Minting
) -> dict[str, Any]:
    """What waits, a button that decides, and the case's evidence: opening a link decides nothing."""
    claims = check(token, key, store, now)
    case = cases.get(claims.case_id)
    if case is None or claims.action_index >= len(case.actions):
        raise CaseNotFoundError(claims.case_id)
    action = case.actions[claims.action_index]
    verb = "Approve" if claims.decision is Decision.APPROVE else "Reject"
    facts = [
        ("Action", action.type.value),
        ("Target", one_line(action.target)),
        ("Why", one_line(action.detail or "the playbook asks for approval")),
    ]
    shown = minting.shown(case)
    return _page(
        200,
        f"{verb} {action.type.value}?",
        "",
        form=(verb, token),
        facts=facts,
        evidence=_evidence(case, shown),
        frames=any(item.widget for item in shown.values()),
    )


def _evidence(case: Case, shown: dict[int, Shown]) -> str:
    """The finding, each IOC with its verdict, reasons and VirusTotal's view, and the actions, as HTML."""
    alert = case.alert
    finding = [
        ("Case", one_line(case.case_id)),
        ("Title", one_line(alert.title)),
        ("Verdict", case.verdict.value),
        ("Status", case.status.value),
        ("Severity", f"{alert.severity.label} {alert.severity.score:g}"),
        ("Type", one_line(alert.type)),
        ("Source", one_line(alert.source)),
        ("Finding", one_line(alert.id)),
        ("Account", one_line(alert.account)),
        ("Region", one_line(alert.region)),
        *(("Resource", f"{resource.type.value} {one_line(resource.id)}") for resource in alert.resources),
    ]
    iocs = "".join(_ioc(ioc, shown.get(index)) for index, ioc in enumerate(case.iocs)) or "<p>None.</p>"
    actions = [
        (
            action.type.value,
            f"{one_line(action.target)}: {action.status.value}"
            + (f" - {one_line(action.detail)}" if action.detail else ""),
        )
        for action in case.actions
    ]
    listed_actions = _listed(actions) or "<p>None.</p>"
    return (
        f"<h2>Finding</h2>{_listed(finding)}"
        f"<h2>Indicators of compromise ({len(case.iocs)})</h2>{iocs}"
        f"<h2>Actions ({len(case.actions)})</h2>{listed_actions}"
    )


def _ioc(ioc: IocOutcome, shown: Shown | None) -> str:
    """One IOC: its value, verdict and reasons, then its widget or a link to VirusTotal's page."""
    heading = f"<h3>{html.escape(ioc.type.value)} {html.escape(one_line(ioc.value))}</h3>"
    if ioc.skipped_reason:
        facts = [("Not looked up", one_line(ioc.skipped_reason)), ("Found at", one_line(ioc.found_at))]
        return heading + _listed(facts)
    counts = f"{ioc.malicious} malicious, {ioc.suspicious} suspicious of {ioc.total} engines"
    facts = [
        ("Verdict", ioc.verdict.value),
        ("Detections", counts + (" (from the cache)" if ioc.cached else "")),
        *(("Why", one_line(reason)) for reason in ioc.reasons),
        ("Found at", one_line(ioc.found_at)),
    ]
    return heading + _listed(facts) + _virustotal(ioc, shown)


def _virustotal(ioc: IocOutcome, shown: Shown | None) -> str:
    """VirusTotal's view of a looked-up IOC: its widget, else a link to its page (with why no widget)."""
    if shown is not None and shown.widget is not None:
        widget = shown.widget
        ratio = f"{widget.detections} of {widget.total} security vendors flag it now" if widget.ratio else ""
        caption = "VirusTotal's report (VT Augment, for context)" + (f": {ratio}" if ratio else "")
        return (
            f"<p>{html.escape(caption)}</p>"
            f'<iframe src="{html.escape(widget.url)}" title="VirusTotal report" width="100%" height="600" '
            f'sandbox="{_FRAME_SANDBOX}" referrerpolicy="no-referrer" loading="lazy"></iframe>'
        )
    link = _gui_link(ioc)
    anchor = f'<a href="{html.escape(link)}" rel="noopener noreferrer">VirusTotal\'s page of it</a>'
    if shown is not None and shown.missing:
        return f"<p>{anchor} (no widget: {html.escape(shown.missing)})</p>"
    return f"<p>{anchor}</p>"


def _gui_link(ioc: IocOutcome) -> str:
    """The IOC's page on VirusTotal: the link its enrichment kept, when it is VirusTotal's."""
    if ioc.link and ioc.link.startswith(GUI_BASE_URL + "/"):
        return ioc.link
    return gui_link(Ioc(type=ioc.type, value=ioc.value, found_at=ioc.found_at))


def _listed(facts: list[tuple[str, str]]) -> str:
    listed = "".join(f"<dt>{html.escape(label)}</dt><dd>{html.escape(value)}</dd>" for label, value in facts)
    return f"<dl>{listed}</dl>" if listed else ""


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
    text: str,
    form: tuple[str, str] | None = None,
    facts: list[tuple[str, str]] | None = None,
    *,
    evidence: str = "",
    frames: bool = False,
) -> dict[str, Any]:
    """A page: its title, a paragraph, facts, the button, then the evidence (HTML already escaped).
    `frames`: it frames VirusTotal's widgets, which its CSP then allows, and nothing else."""
    details = _listed(facts or [])
    paragraph = f"<p>{html.escape(text)}</p>" if text else ""
    button = ""
    if form is not None:
        verb, token = form
        button = (
            f'<form method="post"><input type="hidden" name="{TOKEN_PARAMETER}" '
            f'value="{html.escape(token)}"><button type="submit">{html.escape(verb)}</button></form>'
        )
    body = (
        "<!doctype html><html><head><meta charset='utf-8'><title>vtriage</title></head>"
        f"<body><h1>{html.escape(title)}</h1>{paragraph}{details}{button}{evidence}</body></html>"
    )
    headers = dict(_HEADERS) | {"content-security-policy": WIDGET_PAGE_CSP if frames else PAGE_CSP}
    return {"statusCode": status, "headers": headers, "body": body}
