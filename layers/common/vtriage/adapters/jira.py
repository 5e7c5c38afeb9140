"""Jira Cloud tickets: one issue per case through REST API v3, comments on it for what follows.

- Create: `POST {base}/rest/api/3/issue` with `fields` {project.key, summary, issuetype.name,
  description (Atlassian Document Format), labels, priority.name}; Jira answers 201 `{id, key, self}`.
- Comment: `POST {base}/rest/api/3/issue/{key}/comment` with `{"body": ADF}`; 201.
- Auth: HTTP Basic with the Atlassian account's email and an API token.
- Errors: `{"errorMessages": [...], "errors": {field: message}}`.

- Lookup: `GET {base}/rest/api/3/search/jql` with `jql=project = "KEY" AND labels = "<case id>"
  ORDER BY created ASC`, `fields=key`, `maxResults=1`; 200 `{"issues": [{"id", "key", "self"}], ...}`.
  (The older `GET /rest/api/3/search` is removed from Jira Cloud.)

The ticket's id is the issue key and its url `{base}/browse/{key}`.

Every issue carries the case id as a label, and `open` looks that label up before it creates: the state
machine retries the ticket step after a timeout, and when Jira created the issue but its answer was
lost, creating again would open a second ticket for the case. The search is eventually consistent
(Atlassian: usually seconds), so a retry within that window can still miss the issue it just created;
the state machine's retry interval makes that unlikely, not impossible. A failed lookup raises what a
failed create would (a timeout or 5xx is a `TransientError`, 401/403 a configuration error).

Priority from the detector's severity (`DEFAULT_PRIORITIES`, Jira's default priority scheme):
critical (9-10) → Highest, high (7-8.9) → High, medium (4-6.9) → Medium, low (below 4) → Low.
Pass `priorities=None` for a project whose create screen has no priority field (Jira answers 400).

The description is the report in ADF: vtriage's header and its approval links (link marks) first, then
each line's label as text and its values (the alert's, VirusTotal's) under a `code` mark, which Jira
shows as code and never turns into a link; a VirusTotal page vtriage built is a link. Comments are
vtriage's own text around escaped values, all under a code mark.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import requests

from vtriage.adapters.http_tickets import (
    DEFAULT_TIMEOUT,
    BasicCredentials,
    HttpTicketClient,
    TicketProviderError,
    json_object,
)
from vtriage.display import one_line
from vtriage.models import Case, Ticket
from vtriage.report import LINKS_HEADER, REPORT_HEADER, VALUES_NOTE, Report, ReportLine, ReportLink

PROVIDER = "jira"
VENDOR = "Jira"
DEFAULT_PRIORITIES: Mapping[str, str] = {
    "critical": "Highest",
    "high": "High",
    "medium": "Medium",
    "low": "Low",
}
DEFAULT_LABELS = ("vtriage",)
MAX_SUMMARY_CHARS = 255
# Jira Cloud refuses a text field above 32,767 characters; leave room for the ADF around the text.
MAX_DESCRIPTION_CHARS = 30_000
MAX_LABEL_CHARS = 255
_ISSUE_KEY = re.compile(r"^[A-Z][A-Z0-9_]*-[0-9]+$")


class JiraTicketSink:
    """Implements `TicketSink` on Jira Cloud's REST API v3."""

    def __init__(
        self,
        session: requests.Session,
        base_url: str,
        credentials: BasicCredentials,
        project_key: str,
        issue_type: str = "Task",
        *,
        now: Callable[[], datetime],
        priorities: Mapping[str, str] | None = DEFAULT_PRIORITIES,
        labels: Iterable[str] = DEFAULT_LABELS,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
    ) -> None:
        """Take the site (`https://your-domain.atlassian.net`), the account email and API token, the
        project and issue type to create, a clock, the severity → priority names and fixed labels."""
        if not project_key:
            raise ValueError("a Jira project key is required")
        self._base_url = base_url.rstrip("/")
        self._project_key = project_key
        self._issue_type = issue_type
        self._now = now
        self._priorities = dict(priorities) if priorities is not None else None
        self._labels = [label_for(label) for label in labels]
        self._http = HttpTicketClient(
            VENDOR, session, credentials, read_vendor_message=read_error, timeout=timeout
        )

    def __repr__(self) -> str:
        return f"JiraTicketSink(base_url={self._base_url!r}, project_key={self._project_key!r})"

    def open(self, case: Case, report: Report) -> Ticket:
        """The case's issue: the one already labelled with the case (a retry whose first create
        answer was lost), else a new issue holding the report. The ticket is named by the issue key."""
        key = self.find_issue_key(case) or self._create_issue(case, report)
        return Ticket(provider=PROVIDER, id=key, url=f"{self._base_url}/browse/{key}", created_at=self._now())

    def find_issue_key(self, case: Case) -> str | None:
        """The key of the project's oldest issue labelled with the case, or None when there is none."""
        jql = (
            f"project = {jql_string(self._project_key)} AND labels = {jql_string(case_label(case))}"
            " ORDER BY created ASC"
        )
        response = self._http.send(
            "GET",
            f"{self._base_url}/rest/api/3/search/jql",
            params={"jql": jql, "fields": "key", "maxResults": "1"},
        )
        issues = json_object(response).get("issues")
        if not isinstance(issues, list):
            raise TicketProviderError(VENDOR, response.status_code, "the search answer holds no issues")
        if not issues:
            return None
        key = issues[0].get("key") if isinstance(issues[0], dict) else None
        if not isinstance(key, str) or not _ISSUE_KEY.match(key):
            raise TicketProviderError(VENDOR, response.status_code, "the search answer names no issue key")
        return key

    def _create_issue(self, case: Case, report: Report) -> str:
        fields = issue_fields(
            case,
            report,
            project_key=self._project_key,
            issue_type=self._issue_type,
            priorities=self._priorities,
            labels=self._labels,
        )
        response = self._http.send(
            "POST", f"{self._base_url}/rest/api/3/issue", body=_json({"fields": fields})
        )
        key = json_object(response).get("key")
        if not isinstance(key, str) or not _ISSUE_KEY.match(key):
            raise TicketProviderError(VENDOR, response.status_code, "the answer names no issue key")
        return key

    def comment(self, ticket: Ticket, text: str, links: Sequence[ReportLink] = ()) -> None:
        """Add the text as a comment on the ticket's issue, vtriage's links first as links."""
        key = urllib.parse.quote(ticket.id, safe="")
        url = f"{self._base_url}/rest/api/3/issue/{key}/comment"
        self._http.send("POST", url, body=_json({"body": adf_comment(_fit(text), links)}))


def issue_fields(
    case: Case,
    report: Report,
    *,
    project_key: str,
    issue_type: str,
    priorities: Mapping[str, str] | None,
    labels: Iterable[str],
) -> dict[str, Any]:
    """The `fields` of the create-issue request for the case."""
    alert = case.alert
    fields: dict[str, Any] = {
        "project": {"key": project_key},
        "issuetype": {"name": issue_type},
        "summary": summary_for(case),
        "description": adf_report(report),
        "labels": _unique(
            [
                *labels,
                label_for(f"severity-{alert.severity.label}"),
                label_for(f"verdict-{case.verdict.value}"),
                label_for(alert.source),
                label_for(alert.type),
                # `open` finds the issue of a case by this label before it creates one.
                case_label(case),
            ]
        ),
    }
    if priorities is not None and alert.severity.label in priorities:
        fields["priority"] = {"name": priorities[alert.severity.label]}
    return fields


def summary_for(case: Case) -> str:
    """One line of at most 255 characters: severity, verdict and the alert's title, escaped."""
    text = f"[{case.alert.severity.label.upper()}] {case.verdict.value}: {one_line(case.alert.title)}"
    single_line = " ".join(text.split())
    if len(single_line) > MAX_SUMMARY_CHARS:
        single_line = single_line[: MAX_SUMMARY_CHARS - 3].rstrip() + "..."
    return single_line


def label_for(text: str) -> str:
    """A Jira label: no whitespace (Jira refuses it), at most 255 characters."""
    return re.sub(r"\s+", "_", text.strip())[:MAX_LABEL_CHARS]


def case_label(case: Case) -> str:
    """The label naming the case's issue: the case id, already free of whitespace and short."""
    return label_for(case.case_id)


def jql_string(value: str) -> str:
    """The value as a quoted JQL string: a quote or backslash in it cannot end the string early."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def adf_document(text: str) -> dict[str, Any]:
    """vtriage's plain text (a comment) as an Atlassian Document Format document: a paragraph per block
    of lines, hard breaks between the lines, each line under a code mark (never a link)."""
    blocks = [block for block in re.split(r"\n\s*\n", text.strip("\n")) if block.strip()]
    paragraphs = [_paragraph_of_lines([[_code(line)] for line in block.split("\n")]) for block in blocks]
    return {"type": "doc", "version": 1, "content": paragraphs or [{"type": "paragraph", "content": []}]}


def adf_comment(text: str, links: Sequence[ReportLink] = ()) -> dict[str, Any]:
    """A comment as an ADF document: vtriage's links first as links under the links header (the approval
    links of a waiting action), then the text as `adf_document` writes it, under code marks."""
    document = adf_document(text)
    if links:
        lines = [[_text(LINKS_HEADER)], *([_text(f"{link.label}: "), _link(link.url)] for link in links)]
        head = _paragraph([node for line in _with_breaks(lines) for node in line])
        document["content"] = [head, *document["content"]]
    return document


def adf_report(report: Report) -> dict[str, Any]:
    """The report as an ADF document: the header, the approval links as links, then a paragraph per
    section whose values are under a code mark and whose VirusTotal pages are links. Cut with a notice
    at Jira's field size."""
    head: list[list[dict[str, Any]]] = [[_text(f"{REPORT_HEADER}: {report.headline}")]]
    if report.links:
        lines = [[_text(LINKS_HEADER)]]
        if report.links_note:
            lines.append([_text(report.links_note)])
        lines += [[_text(f"{link.label}: "), _link(link.url)] for link in report.links]
        head.append([node for line in _with_breaks(lines) for node in line])
    head.append([_text(VALUES_NOTE)])
    paragraphs = [_paragraph(nodes) for nodes in head]
    budget = MAX_DESCRIPTION_CHARS - len(_CUT_NOTICE)
    used = sum(len(_plain(paragraph)) for paragraph in paragraphs)
    section: list[list[dict[str, Any]]] = []
    for line in [*report.lines, ReportLine()]:
        if line.label or line.value or line.link:
            used += len(line.text) + 1
            if used > budget:
                section.append([_text(_CUT_NOTICE.strip())])
                break
            section.append(_line_nodes(line))
            continue
        if section:
            paragraphs.append(_paragraph_of_lines(section))
            section = []
    if section:
        paragraphs.append(_paragraph_of_lines(section))
    return {"type": "doc", "version": 1, "content": paragraphs}


def _line_nodes(line: ReportLine) -> list[dict[str, Any]]:
    label = " " * line.indent + line.label
    if line.link:
        return [_text(f"{label}: "), _link(line.link)]
    if line.value:
        return [_text(f"{label}: "), _code(line.value)]
    return [_text(label)]


def _paragraph_of_lines(lines: list[list[dict[str, Any]]]) -> dict[str, Any]:
    return _paragraph([node for line in _with_breaks(lines) for node in line])


def _with_breaks(lines: list[list[dict[str, Any]]]) -> list[list[dict[str, Any]]]:
    return [line if not index else [{"type": "hardBreak"}, *line] for index, line in enumerate(lines)]


def _paragraph(nodes: list[dict[str, Any]]) -> dict[str, Any]:
    # ADF refuses an empty text node: none is kept.
    kept = [node for node in nodes if node.get("type") != "text" or node["text"]]
    return {"type": "paragraph", "content": kept}


def _text(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def _code(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text, "marks": [{"type": "code"}]}


def _link(url: str) -> dict[str, Any]:
    return {"type": "text", "text": url, "marks": [{"type": "link", "attrs": {"href": url}}]}


def _plain(paragraph: dict[str, Any]) -> str:
    return "".join(node.get("text", "\n") for node in paragraph["content"])


def read_error(response: requests.Response) -> str | None:
    """Jira's `errorMessages` and per-field `errors`, in one line."""
    document = json_object(response)
    messages = [str(message) for message in document.get("errorMessages") or [] if message]
    errors = document.get("errors")
    if isinstance(errors, dict):
        messages += [f"{name}: {message}" for name, message in errors.items()]
    return "; ".join(messages) or None


_CUT_NOTICE = "\n\n[cut at Jira's field size limit: the case in DynamoDB holds everything]"


def _fit(text: str) -> str:
    if len(text) <= MAX_DESCRIPTION_CHARS:
        return text
    return text[: MAX_DESCRIPTION_CHARS - len(_CUT_NOTICE)] + _CUT_NOTICE


def _unique(labels: list[str]) -> list[str]:
    return [label for index, label in enumerate(labels) if label and label not in labels[:index]]


def _json(document: dict[str, Any]) -> bytes:
    return json.dumps(document, ensure_ascii=False).encode()
