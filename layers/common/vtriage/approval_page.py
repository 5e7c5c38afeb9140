"""The approval function URL's pages: what a person sees when opening an approve or reject link, and
the decision the page's button sends. Opening a link (GET) changes nothing, so that mail scanners and
chat previews that fetch links cannot approve anything; only the button (POST) decides, and the address
and user agent it came from are kept with the decision. Every value from the alert on a page is escaped
on its labelled line (`vtriage.display.one_line`), then as HTML."""

from __future__ import annotations

import base64
import html
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

from aws_lambda_powertools import Logger

from vtriage.approval import TOKEN_PARAMETER, GoneTokenError, InvalidTokenError, carry_out_decision, check
from vtriage.display import one_line
from vtriage.errors import CaseNotFoundError, TransientError
from vtriage.models import Approver, Decision
from vtriage.ports import ApprovalStore, CaseRepository, TaskCallback

logger = Logger(child=True)

_HEADERS = {
    "content-type": "text/html; charset=utf-8",
    "cache-control": "no-store",
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
    "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
}


def answer(
    event: dict[str, Any],
    *,
    key: bytes,
    store: ApprovalStore,
    cases: CaseRepository,
    callback: TaskCallback,
    now: datetime,
) -> dict[str, Any]:
    """The function URL's answer to a person's request: a confirmation page for GET, the decision for
    POST, and 4xx pages that say what was wrong with the link."""
    method = str(event.get("requestContext", {}).get("http", {}).get("method", "GET")).upper()
    if method not in {"GET", "POST"}:
        return _page(405, "Not allowed", "Open the link from the notification.")
    token = _token(event, method)
    if not token:
        return _page(400, "No approval token", "Open the link exactly as the notification gives it.")
    try:
        if method == "GET":
            return _confirmation(token, key, store, cases, now)
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


def _confirmation(
    token: str, key: bytes, store: ApprovalStore, cases: CaseRepository, now: datetime
) -> dict[str, Any]:
    """What waits and a button that decides: opening a link decides nothing."""
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
        ("Case", one_line(case.case_id)),
        ("Title", one_line(case.alert.title)),
        ("Verdict", case.verdict.value),
    ]
    return _page(200, f"{verb} {action.type.value}?", "", form=(verb, token), facts=facts)


def _token(event: dict[str, Any], method: str) -> str | None:
    if method == "POST":
        body = event.get("body") or ""
        if event.get("isBase64Encoded"):
            body = base64.b64decode(body).decode("utf-8", "replace")
        values = parse_qs(body).get(TOKEN_PARAMETER)
    else:
        values = parse_qs(event.get("rawQueryString") or "").get(TOKEN_PARAMETER)
        if not values:
            single = (event.get("queryStringParameters") or {}).get(TOKEN_PARAMETER)
            values = [single] if single else None
    return values[0] if values else None


def _page(
    status: int,
    title: str,
    text: str,
    form: tuple[str, str] | None = None,
    facts: list[tuple[str, str]] | None = None,
) -> dict[str, Any]:
    listed = "".join(
        f"<dt>{html.escape(label)}</dt><dd>{html.escape(value)}</dd>" for label, value in facts or []
    )
    details = f"<dl>{listed}</dl>" if listed else ""
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
        f"<body><h1>{html.escape(title)}</h1>{paragraph}{details}{button}</body></html>"
    )
    return {"statusCode": status, "headers": dict(_HEADERS), "body": body}
