"""ServiceNow tickets: one incident per case through the Table API, work notes for what follows.

- Create: `POST {base}/api/now/table/incident` with short_description, description, impact, urgency,
  category, correlation_id (the case id), correlation_display ("vtriage") and, when configured,
  assignment_group and caller_id; ServiceNow answers 201 `{"result": {"sys_id", "number", ...}}`.
- Comment: `PATCH {base}/api/now/table/incident/{sys_id}` with `{"work_notes": text}` (or
  `comments`, visible to the caller); 200.
- Auth: HTTP Basic (an integration user) or an OAuth 2.0 bearer token.
- Errors: `{"error": {"message", "detail"}, "status": "failure"}`.

- Lookup: `GET {base}/api/now/table/incident?sysparm_query=correlation_id=<case id>^ORDERBYsys_created_on`
  with `sysparm_fields=sys_id,number,correlation_id` and `sysparm_limit=1`; 200 `{"result": [...]}`.

The ticket's id is the incident number (INC0010001) and its url
`{base}/nav_to.do?uri=incident.do?sys_id={sys_id}`, from which a comment reads the sys_id back.

`open` looks the case's record up by its correlation_id before it creates one: the state machine
retries the ticket step after a timeout, and when ServiceNow created the incident but its answer was
lost, creating again would open a second ticket for the case. A record counts only when its
correlation_id is the case id itself, since the Table API drops a condition it cannot read and then
answers with any record. A failed lookup raises what a failed create would (a timeout or 5xx is a
`TransientError`, 401/403 a configuration error).

Every text sent is plain text: the report (vtriage's links first, each value escaped on its labelled
line) with ServiceNow's `[code]...[/code]` tags neutralised as `(code)...(/code)`, since a journal field
(work notes, comments) renders what such tags hold as HTML where the instance allows it
(glide.ui.security.allow_codetag): a title or an S3 key from the alert could otherwise bring its own
markup and links into the incident.

Impact and urgency from the detector's severity (`DEFAULT_IMPACT_URGENCY`, 1 = high, 3 = low), which
the default priority lookup turns into: critical → 1/1 (P1 Critical), high → 1/2 (P2 High),
medium → 2/2 (P3 Moderate), low → 2/3 (P4 Low).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import requests

from vtriage.adapters.http_tickets import (
    DEFAULT_TIMEOUT,
    Credentials,
    HttpTicketClient,
    TicketProviderError,
    json_object,
)
from vtriage.display import one_line
from vtriage.models import Case, Ticket
from vtriage.report import Report, ReportLink, comment_text

PROVIDER = "servicenow"
VENDOR = "ServiceNow"
DEFAULT_IMPACT_URGENCY: Mapping[str, tuple[int, int]] = {
    "critical": (1, 1),
    "high": (1, 2),
    "medium": (2, 2),
    "low": (2, 3),
}
DEFAULT_CATEGORY = "security"
COMMENT_FIELDS = ("work_notes", "comments")
# The incident table's dictionary: short_description holds 160 characters, description 4,000.
MAX_SHORT_DESCRIPTION_CHARS = 160
MAX_DESCRIPTION_CHARS = 4000
_SYS_ID = re.compile(r"^[0-9a-f]{32}$")
_SYS_ID_IN_URL = re.compile(r"sys_id(?:=|%3D)([0-9a-f]{32})", re.IGNORECASE)
_CODE_TAG = re.compile(r"\[(\s*/?\s*code\s*)\]", re.IGNORECASE)


class ServiceNowTicketSink:
    """Implements `TicketSink` on the ServiceNow Table API (incident table by default)."""

    def __init__(
        self,
        session: requests.Session,
        base_url: str,
        credentials: Credentials,
        *,
        now: Callable[[], datetime],
        category: str | None = DEFAULT_CATEGORY,
        assignment_group: str | None = None,
        caller_id: str | None = None,
        comment_field: str = "work_notes",
        impact_urgency: Mapping[str, tuple[int, int]] = DEFAULT_IMPACT_URGENCY,
        table: str = "incident",
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
    ) -> None:
        """Take the instance (`https://your-instance.service-now.com`), Basic credentials or a bearer
        token, a clock, and the incident's optional category, assignment group and caller."""
        if comment_field not in COMMENT_FIELDS:
            raise ValueError(f"comment_field must be one of {COMMENT_FIELDS}")
        if not re.fullmatch(r"[a-z0-9_]+", table):
            raise ValueError("table must be a ServiceNow table name")
        self._base_url = base_url.rstrip("/")
        self._now = now
        self._category = category
        self._assignment_group = assignment_group
        self._caller_id = caller_id
        self._comment_field = comment_field
        self._impact_urgency = dict(impact_urgency)
        self._table = table
        self._http = HttpTicketClient(
            VENDOR, session, credentials, read_vendor_message=read_error, timeout=timeout
        )

    def __repr__(self) -> str:
        return f"ServiceNowTicketSink(base_url={self._base_url!r}, table={self._table!r})"

    def open(self, case: Case, report: Report) -> Ticket:
        """The case's incident: the one already correlated with the case (a retry whose first create
        answer was lost), else a new one holding the report. The ticket is named by the number."""
        sys_id, number = self.find_record(case) or self._create_record(case, report)
        url = f"{self._base_url}/nav_to.do?uri={self._table}.do?sys_id={sys_id}"
        return Ticket(provider=PROVIDER, id=number, url=url, created_at=self._now())

    def find_record(self, case: Case) -> tuple[str, str] | None:
        """The sys_id and number of the oldest record whose correlation_id is the case id, or None."""
        response = self._http.send(
            "GET",
            self._table_url(),
            params={
                "sysparm_query": f"correlation_id={case.case_id}^ORDERBYsys_created_on",
                "sysparm_fields": "sys_id,number,correlation_id",
                "sysparm_limit": "1",
            },
        )
        results = json_object(response).get("result")
        if not isinstance(results, list):
            raise TicketProviderError(VENDOR, response.status_code, "the query answer holds no result list")
        for record in results:
            if isinstance(record, dict) and record.get("correlation_id") == case.case_id:
                found = _sys_id_and_number(record)
                if found is None:
                    raise TicketProviderError(
                        VENDOR, response.status_code, "the query answer holds no sys_id and number"
                    )
                return found
        return None

    def _create_record(self, case: Case, report: Report) -> tuple[str, str]:
        response = self._http.send(
            "POST",
            self._table_url(),
            body=_json(self.record_for(case, report)),
            params={"sysparm_fields": "sys_id,number"},
        )
        result = json_object(response).get("result")
        found = _sys_id_and_number(result) if isinstance(result, dict) else None
        if found is None:
            raise TicketProviderError(VENDOR, response.status_code, "the answer holds no sys_id and number")
        return found

    def comment(self, ticket: Ticket, text: str, links: Sequence[ReportLink] = ()) -> None:
        """Add the text to the incident's work notes (or comments, as configured), vtriage's links first."""
        sys_id = self._sys_id_of(ticket)
        body = _json({self._comment_field: neutralised(comment_text(text, links))})
        self._http.send("PATCH", f"{self._table_url()}/{sys_id}", body=body)

    def record_for(self, case: Case, report: Report) -> dict[str, str]:
        """The incident's fields for the case. A report longer than the description holds goes, whole,
        into the work notes too."""
        impact, urgency = self._impact_urgency.get(case.alert.severity.label, (2, 2))
        text = neutralised(report.text())
        record = {
            "short_description": _short_description(case),
            "description": _fit(text, MAX_DESCRIPTION_CHARS),
            "impact": str(impact),
            "urgency": str(urgency),
            # The task table's fields for a record mirrored from another system.
            "correlation_id": case.case_id,
            "correlation_display": "vtriage",
        }
        if len(text) > MAX_DESCRIPTION_CHARS:
            record["work_notes"] = text
        optional = {
            "category": self._category,
            "assignment_group": self._assignment_group,
            "caller_id": self._caller_id,
        }
        record.update({name: value for name, value in optional.items() if value})
        return record

    def _table_url(self) -> str:
        return f"{self._base_url}/api/now/table/{self._table}"

    def _sys_id_of(self, ticket: Ticket) -> str:
        """The incident's sys_id: from the ticket's url, else looked up by its number."""
        found = _SYS_ID_IN_URL.search(ticket.url or "")
        if found:
            return found.group(1).lower()
        response = self._http.send(
            "GET",
            self._table_url(),
            params={
                # Numbers are letters and digits: anything else could add a condition to the query.
                "sysparm_query": "number=" + re.sub(r"[^A-Za-z0-9]", "", ticket.id),
                "sysparm_fields": "sys_id",
                "sysparm_limit": "1",
            },
        )
        results = json_object(response).get("result")
        if isinstance(results, list) and results and isinstance(results[0], dict):
            sys_id = results[0].get("sys_id")
            if isinstance(sys_id, str) and _SYS_ID.match(sys_id):
                return sys_id
        raise TicketProviderError(VENDOR, response.status_code, f"no {self._table} numbered {ticket.id}")


def neutralised(text: str) -> str:
    """The text with ServiceNow's `[code]` and `[/code]` tags (any case or spacing) written as
    `(code)` and `(/code)`, so that no journal field renders part of it as HTML."""
    return _CODE_TAG.sub(r"(\1)", text)


def read_error(response: requests.Response) -> str | None:
    """ServiceNow's `error.message` and `error.detail`, in one line."""
    error = json_object(response).get("error")
    if not isinstance(error, dict):
        return None
    parts = [str(error[name]) for name in ("message", "detail") if error.get(name)]
    return ": ".join(parts) or None


def _sys_id_and_number(record: dict[str, Any]) -> tuple[str, str] | None:
    sys_id = record.get("sys_id")
    number = record.get("number")
    if not isinstance(sys_id, str) or not _SYS_ID.match(sys_id) or not isinstance(number, str) or not number:
        return None
    return sys_id, number


def _short_description(case: Case) -> str:
    text = f"[{case.alert.severity.label.upper()}] {case.verdict.value}: {one_line(case.alert.title)}"
    single_line = neutralised(" ".join(text.split()))
    if len(single_line) > MAX_SHORT_DESCRIPTION_CHARS:
        single_line = single_line[: MAX_SHORT_DESCRIPTION_CHARS - 3].rstrip() + "..."
    return single_line


def _fit(report: str, max_chars: int) -> str:
    if len(report) <= max_chars:
        return report
    notice = "\n[cut at the description's 4,000 characters: the whole report is in the work notes]"
    return report[: max_chars - len(notice)] + notice


def _json(document: dict[str, Any]) -> bytes:
    return json.dumps(document, ensure_ascii=False).encode()
