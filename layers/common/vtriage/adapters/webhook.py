"""Generic webhook tickets: one JSON POST per case, another per comment.

The body works as is for a Slack incoming webhook (and Mattermost, Rocket.Chat and the like):

- `text`: the headline and the report (Slack's `mrkdwn`, with `&`, `<` and `>` escaped), what a chat
  shows in a notification and what a receiver that knows no blocks shows whole;
- `blocks` (optional): a header, the report in code sections of at most 3,000 characters, a context line;
- `event`: `ticket_opened` or `ticket_comment`; `ticket`: `{provider, id}`;
- `case` (on `ticket_opened`): a machine-readable summary (ids, alert, verdict, IOCs, actions);
- `comment` (on `ticket_comment`): the comment's text;
- `sent_at`: when it was sent (ISO-8601 UTC), covered by the signature, so a receiver can refuse replays.

With a signing secret, every POST carries `X-Vtriage-Signature-256: sha256=<hex>`, the HMAC-SHA256 of
the exact body bytes under the secret (GitHub's scheme): a receiver recomputes it over the raw body and
compares in constant time. Any 2xx answer is success (Slack answers 200 `ok`).

The ticket's id is stable for the case (`VT-` and 10 hex digits, the SNS provider's id too), so a retry
names the same ticket. The webhook URL is a secret (anyone holding a Slack webhook URL can post):
it never appears in an error, a repr or a log line.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import requests

from vtriage.adapters.http_tickets import DEFAULT_TIMEOUT, HttpTicketClient, json_object
from vtriage.adapters.sns import ticket_id
from vtriage.models import Case, Ticket

PROVIDER = "webhook"
VENDOR = "the webhook"
SIGNATURE_HEADER = "X-Vtriage-Signature-256"
SIGNATURE_PREFIX = "sha256="
# Slack: a section's text holds 3,000 characters, a header's 150, a message 50 blocks; a text
# beyond 40,000 characters is cut.
MAX_SECTION_CHARS = 3000
MAX_HEADER_CHARS = 150
MAX_REPORT_SECTIONS = 40
MAX_TEXT_CHARS = 39_000
_FENCE = "```"


def sign(body: bytes, secret: str) -> str:
    """The signature header's value for this body: `sha256=` and the hex HMAC-SHA256 under the secret."""
    return SIGNATURE_PREFIX + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(body: bytes, secret: str, header_value: str | None) -> bool:
    """True when the header is the body's signature under the secret (for receivers and tests)."""
    return header_value is not None and hmac.compare_digest(sign(body, secret), header_value)


class WebhookTicketSink:
    """Implements `TicketSink` as JSON POSTs to one URL."""

    def __init__(
        self,
        session: requests.Session,
        url: str,
        *,
        now: Callable[[], datetime],
        signing_secret: str | None = None,
        include_blocks: bool = True,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
    ) -> None:
        """Take the webhook URL, a clock, an optional shared secret to sign with, and whether to send
        Slack blocks beside the text."""
        if not url.startswith(("https://", "http://")):
            raise ValueError("the webhook URL must be an http(s) URL")
        self._url = url
        self._now = now
        self._signing_secret = signing_secret or None
        self._include_blocks = include_blocks
        secrets = [url, *([signing_secret] if signing_secret else [])]
        self._http = HttpTicketClient(
            VENDOR, session, None, read_vendor_message=read_error, timeout=timeout, secrets=secrets
        )

    def __repr__(self) -> str:
        return f"WebhookTicketSink(signed={self._signing_secret is not None})"

    def open(self, case: Case, report: str) -> Ticket:
        """POST the report and the case summary; the ticket is named by a stable id."""
        ticket = Ticket(provider=PROVIDER, id=ticket_id(case.case_id), created_at=self._now())
        headline = (
            f"[{case.alert.severity.label.upper()}] {case.verdict.value} {ticket.id}: {case.alert.title}"
        )
        payload: dict[str, Any] = {
            "text": _cut(f"*{escape(headline)}*\n{escape(report)}", MAX_TEXT_CHARS),
            "event": "ticket_opened",
            "ticket": {"provider": PROVIDER, "id": ticket.id},
            "case": case_summary(case),
            "sent_at": _iso(ticket.created_at),
        }
        if self._include_blocks:
            payload["blocks"] = report_blocks(headline, report, case.case_id, ticket.id)
        self._post(payload)
        return ticket

    def comment(self, ticket: Ticket, text: str) -> None:
        """POST the comment, naming the ticket it belongs to."""
        payload = {
            "text": _cut(f"*Update on {escape(ticket.id)}*\n{escape(text)}", MAX_TEXT_CHARS),
            "event": "ticket_comment",
            "ticket": {"provider": ticket.provider, "id": ticket.id},
            "comment": text,
            "sent_at": _iso(self._now()),
        }
        self._post(payload)

    def _post(self, payload: dict[str, Any]) -> None:
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json; charset=utf-8"}
        if self._signing_secret:
            headers[SIGNATURE_HEADER] = sign(body, self._signing_secret)
        self._http.send("POST", self._url, body=body, headers=headers)


def case_summary(case: Case) -> dict[str, Any]:
    """What a program needs of the case, without parsing the report."""
    alert = case.alert
    return {
        "case_id": case.case_id,
        "status": case.status.value,
        "branch": case.branch.value if case.branch else None,
        "verdict": case.verdict.value,
        "alert": {
            "id": alert.id,
            "source": alert.source,
            "type": alert.type,
            "title": alert.title,
            "severity": alert.severity.label,
            "severity_score": alert.severity.score,
            "account": alert.account,
            "region": alert.region,
            "resources": [{"type": resource.type.value, "id": resource.id} for resource in alert.resources],
        },
        "iocs": [
            {
                "type": ioc.type.value,
                "value": ioc.value,
                "verdict": ioc.verdict.value,
                "malicious": ioc.malicious,
                "total": ioc.total,
                "link": ioc.link,
                "skipped_reason": ioc.skipped_reason,
            }
            for ioc in case.iocs
        ],
        "actions": [
            {"type": action.type.value, "target": action.target, "status": action.status.value}
            for action in case.actions
        ],
        "error": case.error,
    }


def report_blocks(headline: str, report: str, case_id: str, ticket: str) -> list[dict[str, Any]]:
    """Slack blocks: a header, the report in code sections, and a context line naming case and ticket."""
    room = MAX_SECTION_CHARS - 2 * len(_FENCE) - 2
    chunks = _chunks(escape(report), room)
    if len(chunks) > MAX_REPORT_SECTIONS:
        chunks = [*chunks[: MAX_REPORT_SECTIONS - 1], "[report cut: the case in DynamoDB holds everything]"]
    header = headline if len(headline) <= MAX_HEADER_CHARS else headline[: MAX_HEADER_CHARS - 3] + "..."
    return [
        {"type": "header", "text": {"type": "plain_text", "text": header}},
        *(
            {"type": "section", "text": {"type": "mrkdwn", "text": f"{_FENCE}\n{chunk}\n{_FENCE}"}}
            for chunk in chunks
        ),
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": f"vtriage case `{case_id}` · ticket {escape(ticket)}"}],
        },
    ]


def escape(text: str) -> str:
    """Slack's three control characters as the entities Slack documents."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def read_error(response: requests.Response) -> str | None:
    """A receiver's error: Slack answers a short text (`invalid_payload`, `no_service`), others JSON."""
    document = json_object(response)
    for name in ("error", "message", "detail"):
        value = document.get(name)
        if isinstance(value, str) and value:
            return value
    return None


def _chunks(text: str, size: int) -> list[str]:
    """The text in pieces of at most `size` characters, cut at line ends where a line allows it."""
    chunks: list[str] = []
    current = ""
    for line in text.splitlines():
        rest = line
        while len(rest) > size:
            if current:
                chunks.append(current)
                current = ""
            chunks.append(rest[:size])
            rest = rest[size:]
        candidate = f"{current}\n{rest}" if current else rest
        if len(candidate) > size:
            chunks.append(current)
            candidate = rest
        current = candidate
    if current:
        chunks.append(current)
    return chunks or [""]


def _cut(text: str, max_chars: int) -> str:
    return text if len(text) <= max_chars else text[: max_chars - 12] + "\n[cut here]"


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
