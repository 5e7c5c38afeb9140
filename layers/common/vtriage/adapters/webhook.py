"""Generic webhook tickets: one JSON POST per case, another per comment.

The body works as is for a Slack incoming webhook (and Mattermost, Rocket.Chat and the like):

- `text`: the headline, vtriage's links (Slack's `<url|label>` links), then the report in a code block
  (Slack's `mrkdwn`, with `&`, `<` and `>` escaped and no run of backticks that could close the block),
  what a chat shows in a notification and what a receiver that knows no blocks shows whole;
- `blocks` (optional): a header, vtriage's links, the report in code sections of at most 3,000
  characters, a context line;
- `event`: `ticket_opened` or `ticket_comment`; `ticket`: `{provider, id}`;
- `case` (on `ticket_opened`): a machine-readable summary (ids, alert, verdict, IOCs, actions), with
  the alert's values as they came, for programs (JSON keeps them apart from vtriage's own fields);
- `comment` (on `ticket_comment`): the comment's text;
- `sent_at`: when it was sent (ISO-8601 UTC).

Every value from the alert in `text` and `blocks` is escaped on its labelled line (`vtriage.display`)
inside a code block, where Slack makes no link and no formatting of it.

With a signing secret, every POST carries `X-Vtriage-Timestamp: <seconds since the epoch>` and
`X-Vtriage-Signature-256: sha256=<hex>`, the HMAC-SHA256 under the secret of the timestamp, a dot and
the exact body bytes (`<timestamp>.<body>`, Slack's and Stripe's scheme). A receiver recomputes it over
the raw body, compares in constant time, and refuses a timestamp more than `REPLAY_WINDOW_SECONDS`
(5 minutes) from its own clock, so that a captured request cannot be replayed later (`verify` does
all three). Any 2xx answer is success (Slack answers 200 `ok`).

The ticket's id is stable for the case (`VT-` and 10 hex digits, the SNS provider's id too), so a retry
names the same ticket. The webhook URL is a secret (anyone holding a Slack webhook URL can post):
it never appears in an error, a repr or a log line.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import requests

from vtriage.adapters.http_tickets import DEFAULT_TIMEOUT, HttpTicketClient, json_object
from vtriage.adapters.sns import ticket_id
from vtriage.config import https_url_problem
from vtriage.errors import ConfigurationError
from vtriage.models import Case, Ticket
from vtriage.report import LINKS_HEADER, REPORT_HEADER, VALUES_NOTE, Report, ReportLink

PROVIDER = "webhook"
VENDOR = "the webhook"
SIGNATURE_HEADER = "X-Vtriage-Signature-256"
TIMESTAMP_HEADER = "X-Vtriage-Timestamp"
SIGNATURE_PREFIX = "sha256="
# How far from its own clock a receiver accepts a request's timestamp.
REPLAY_WINDOW_SECONDS = 300
# Slack: a section's text holds 3,000 characters, a header's 150, a message 50 blocks; a text
# beyond 40,000 characters is cut.
MAX_SECTION_CHARS = 3000
MAX_HEADER_CHARS = 150
MAX_REPORT_SECTIONS = 40
MAX_TEXT_CHARS = 39_000
_FENCE = "```"


def sign(body: bytes, secret: str, timestamp: int) -> str:
    """The signature header's value: `sha256=` and the hex HMAC-SHA256, under the secret, of the
    timestamp, a dot and the body."""
    signed = str(timestamp).encode() + b"." + body
    return SIGNATURE_PREFIX + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def verify(
    body: bytes,
    secret: str,
    signature: str | None,
    timestamp: str | None,
    *,
    now: datetime,
    window_seconds: int = REPLAY_WINDOW_SECONDS,
) -> bool:
    """What a receiver checks: the timestamp is a number within `window_seconds` of `now`, and the
    signature is that of the timestamp and the body under the secret."""
    if signature is None or timestamp is None or not timestamp.isdigit():
        return False
    if abs(now.timestamp() - int(timestamp)) > window_seconds:
        return False
    return hmac.compare_digest(sign(body, secret, int(timestamp)), signature)


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
        problem = https_url_problem(url)
        if problem:
            # The URL itself is a secret: only what is wrong with it is said.
            raise ConfigurationError(f"the webhook URL {problem}")
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

    def open(self, case: Case, report: Report) -> Ticket:
        """POST the report and the case summary; the ticket is named by a stable id."""
        ticket = Ticket(provider=PROVIDER, id=ticket_id(case.case_id), created_at=self._now())
        headline = f"{REPORT_HEADER} {ticket.id}: {report.headline}"
        payload: dict[str, Any] = {
            "text": message_text(headline, report),
            "event": "ticket_opened",
            "ticket": {"provider": PROVIDER, "id": ticket.id},
            "case": case_summary(case),
            "sent_at": _iso(ticket.created_at),
        }
        if self._include_blocks:
            payload["blocks"] = report_blocks(headline, report, case.case_id, ticket.id)
        self._post(payload)
        return ticket

    def comment(self, ticket: Ticket, text: str, links: Sequence[ReportLink] = ()) -> None:
        """POST the comment, naming the ticket it belongs to: vtriage's links first as Slack links, then
        the text in a code block."""
        head = [f"*Update on {escape(ticket.id)}*"]
        if links:
            head += [escape(LINKS_HEADER), *(_slack_link(link) for link in links)]
        payload: dict[str, Any] = {
            "text": _cut_fenced("\n".join(head) + "\n", code_text(text)),
            "event": "ticket_comment",
            "ticket": {"provider": ticket.provider, "id": ticket.id},
            "comment": text,
            "sent_at": _iso(self._now()),
        }
        if links:
            payload["links"] = [{"label": link.label, "url": link.url} for link in links]
        self._post(payload)

    def _post(self, payload: dict[str, Any]) -> None:
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json; charset=utf-8"}
        if self._signing_secret:
            timestamp = int(self._now().timestamp())
            headers[TIMESTAMP_HEADER] = str(timestamp)
            headers[SIGNATURE_HEADER] = sign(body, self._signing_secret, timestamp)
        self._http.send("POST", self._url, body=body, headers=headers)


def message_text(headline: str, report: Report) -> str:
    """The `text` field: the headline, vtriage's links as Slack links, then the report in a code block."""
    head = [f"*{escape(headline)}*"]
    if report.links:
        head.append(escape(LINKS_HEADER))
        if report.links_note:
            head.append(escape(report.links_note))
        head += [_slack_link(link) for link in report.links]
    head.append(escape(VALUES_NOTE))
    return _cut_fenced("\n".join(head) + "\n", code_text(report.body()))


def _slack_link(link: ReportLink) -> str:
    """One of vtriage's links as Slack shows it: `Label: <url|Label>`."""
    return f"{escape(link.label)}: <{escape(link.url)}|{escape(link.label)}>"


def code_text(text: str) -> str:
    """Text for a Slack code block: `&`, `<` and `>` as entities, and no two backticks side by side (a
    zero-width space parts them), so that nothing in it can close the block."""
    return escape(text).replace("``", "`\u200b`").replace("``", "`\u200b`")


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
            # What the case is about that no action acts on (a Lambda function, a cluster), as the detector
            # named it: the sender's values, for a program to read (Slack's text shows them escaped).
            "subjects": [
                {"type": subject.type, "id": subject.id, "name": subject.name} for subject in alert.subjects
            ],
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


def report_blocks(headline: str, report: Report, case_id: str, ticket: str) -> list[dict[str, Any]]:
    """Slack blocks: a header, vtriage's links, the report in code sections, and a context line naming
    case and ticket."""
    room = MAX_SECTION_CHARS - 2 * len(_FENCE) - 2
    chunks = _chunks(code_text(report.body()), room)
    if len(chunks) > MAX_REPORT_SECTIONS:
        chunks = [*chunks[: MAX_REPORT_SECTIONS - 1], "[report cut: the case in DynamoDB holds everything]"]
    header = headline if len(headline) <= MAX_HEADER_CHARS else headline[: MAX_HEADER_CHARS - 3] + "..."
    blocks: list[dict[str, Any]] = [{"type": "header", "text": {"type": "plain_text", "text": header}}]
    if report.links:
        lines = [escape(LINKS_HEADER), *([escape(report.links_note)] if report.links_note else [])]
        lines += [f"<{escape(link.url)}|{escape(link.label)}>" for link in report.links]
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)}})
    blocks += [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"{_FENCE}\n{chunk}\n{_FENCE}"}}
        for chunk in chunks
    ]
    blocks.append(
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": f"vtriage case `{case_id}` · ticket {escape(ticket)}"}],
        }
    )
    return blocks


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


def _cut_fenced(head: str, code: str) -> str:
    """The head, then the code in a code block, the whole within Slack's text limit."""
    room = MAX_TEXT_CHARS - len(head) - 2 * len(_FENCE) - 2
    if len(code) > room:
        code = code[: room - 12] + "\n[cut here]"
    return f"{head}{_FENCE}\n{code}\n{_FENCE}"


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
