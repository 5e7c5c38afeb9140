"""The Jira, ServiceNow and webhook ticket providers against loopback servers that play the vendors.

Each fake vendor checks what the vendor documents (method, path, auth header, content type, the body's
fields and their limits) and answers as the vendor does: the same status codes and the same shapes of
success and error bodies. The servers listen on 127.0.0.1 on a port the system picks.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
import requests
from moto import mock_aws

from tests.factories import make_alert, make_case
from tests.functional.conftest import use_dummy_aws_credentials
from vtriage.adapters.http_tickets import (
    BasicCredentials,
    BearerToken,
    TicketProviderAuthError,
    TicketProviderError,
)
from vtriage.adapters.jira import JiraTicketSink
from vtriage.adapters.retry_after import retry_after_seconds
from vtriage.adapters.servicenow import ServiceNowTicketSink
from vtriage.adapters.sns import SnsTicketSink
from vtriage.adapters.webhook import (
    REPLAY_WINDOW_SECONDS,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookTicketSink,
    sign,
    verify,
)
from vtriage.composition.ticket import ticket_sink
from vtriage.config.ticket import TicketSettings
from vtriage.errors import ConfigurationError, TransientError
from vtriage.models import (
    Action,
    ActionStatus,
    ActionType,
    Case,
    CaseStatus,
    IocOutcome,
    IocType,
    Severity,
    Subject,
    Ticket,
    Verdict,
)
from vtriage.ports import TicketSink
from vtriage.report import LINKS_HEADER, Report, ReportLine, ReportLink
from vtriage.ticket import CasePageLink, render_report

pytestmark = pytest.mark.functional

NOW = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
VT_LINK = "https://www.virustotal.com/gui/ip-address/198.51.100.7"
CASE_PAGE_URL = "https://abc.lambda-url.us-east-1.on.aws/?view=page&token=t0"
APPROVE_URL = "https://abc.lambda-url.us-east-1.on.aws/?decision=approve&token=t1"
# The approve and reject links of a waiting action, as the ticket function puts them on a ticket.
APPROVAL_LINKS = (
    ReportLink(label="Approve", url=APPROVE_URL),
    ReportLink(label="Reject", url=APPROVE_URL + "x"),
)
APPROVAL_TEXT = "Approval requested for action 1 of 1\nAction: Isolate the instance i-0abc1234def567890"
PLAIN_REPORT = Report(headline="HIGH 8, MALICIOUS", lines=(ReportLine(label="Case", value="guardduty-1"),))
# What a sender puts in a finding's title to plant links and markup of its own in a ticket.
HOSTILE_TITLE = (
    "Scan finished\n\nApprove: https://evil.example/approve [code]<a href='https://evil.example'>"
    "Reject</a>[/code] ```\n*bold* <https://evil.example|click>\u202e"
)

Answer = tuple[int, dict[str, str], bytes]


# --- a loopback HTTP server -------------------------------------------------------------------------


@dataclass
class Received:
    """One request as the server received it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: Message
    body: bytes

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)


class LoopbackServer:
    """An HTTP server on 127.0.0.1 that records every request and lets `answer` reply to it.

    `outage`, when set, answers every request instead (a rate limit, a server error).
    `lose_the_answer_to` makes the vendor act on a request but hold its answer until the client gave up.
    """

    def __init__(self, answer: Callable[[Received], Answer]) -> None:
        self._answer = answer
        self.received: list[Received] = []
        self.outage: Answer | None = None
        self.answer_lost = threading.Event()
        self._lose_answer_to: Callable[[Received], bool] | None = None
        self._lock = threading.Lock()
        self._release_held_answers = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                split = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                request = Received(
                    self.command, split.path, parse_qs(split.query), self.headers, self.rfile.read(length)
                )
                server.received.append(request)
                status, headers, body = server.outage or server._answer(request)
                if server._answer_is_lost(request):
                    # The vendor has acted; its answer never reaches the client, which times out.
                    server.answer_lost.set()
                    server._release_held_answers.wait(timeout=30)
                    self.close_connection = True
                    return
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PATCH = do_PUT = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        # A short poll interval makes shutdown quick.
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)

    def lose_the_answer_to(self, matches: Callable[[Received], bool]) -> None:
        """The next request that `matches` is answered as usual (the vendor acts on it), but the answer
        is held back until the server stops: the client sees a read timeout. `answer_lost` is set then."""
        self._lose_answer_to = matches

    def _answer_is_lost(self, request: Received) -> bool:
        with self._lock:
            if self._lose_answer_to is None or not self._lose_answer_to(request):
                return False
            self._lose_answer_to = None
            return True

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:<port>`."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._release_held_answers.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()


def json_answer(status: int, document: Any, headers: dict[str, str] | None = None) -> Answer:
    """A JSON answer."""
    return (
        status,
        {"Content-Type": "application/json;charset=UTF-8", **(headers or {})},
        json.dumps(document).encode(),
    )


def text_answer(status: int, text: str, headers: dict[str, str] | None = None) -> Answer:
    """A plain-text answer."""
    return status, {"Content-Type": "text/plain; charset=utf-8", **(headers or {})}, text.encode()


def is_json(request: Received) -> bool:
    """The request says its body is JSON."""
    return request.headers.get("Content-Type", "").split(";")[0].strip() == "application/json"


def basic(username: str, password: str) -> str:
    """The Authorization header of HTTP Basic auth."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


# --- Jira Cloud -------------------------------------------------------------------------------------

JIRA_EMAIL = "soc-bot@example.com"
JIRA_TOKEN = "ATATT3xFfGF0-jira-api-token-value"
# The JQL the fake Jira understands: a project and a label, each a quoted string, optionally ordered.
JQL_PROJECT_AND_LABEL = re.compile(
    r'^project = "(?P<project>(?:[^"\\]|\\.)*)" AND labels = "(?P<label>(?:[^"\\]|\\.)*)"'
    r"(?: ORDER BY created (?:ASC|DESC))?$"
)


def adf_problems(document: Any) -> list[str]:
    """What makes the document invalid Atlassian Document Format (the subset vtriage writes)."""
    if not isinstance(document, dict) or document.get("type") != "doc" or document.get("version") != 1:
        return ["not an ADF doc of version 1"]
    problems = []
    for block in document.get("content", []):
        if block.get("type") != "paragraph" or not isinstance(block.get("content"), list):
            problems.append(f"unexpected block {block.get('type')}")
            continue
        for node in block["content"]:
            if node.get("type") == "hardBreak":
                continue
            if node.get("type") != "text" or not isinstance(node.get("text"), str) or not node["text"]:
                problems.append(f"invalid inline node {node}")
            marks = node.get("marks", [])
            for mark in marks:
                # ADF's code mark combines with no mark but a link.
                if mark.get("type") == "code" and all(other["type"] in ("code", "link") for other in marks):
                    continue
                if mark.get("type") != "link" or not str(mark.get("attrs", {}).get("href", "")).startswith(
                    "http"
                ):
                    problems.append(f"invalid mark {mark}")
    return problems


def adf_text(document: dict[str, Any]) -> str:
    """The document's text, hard breaks as new lines, paragraphs separated by blank lines."""
    paragraphs = []
    for block in document["content"]:
        paragraphs.append(
            "".join("\n" if node["type"] == "hardBreak" else node["text"] for node in block["content"])
        )
    return "\n\n".join(paragraphs)


def adf_links(document: dict[str, Any]) -> list[str]:
    """Every link target in the document."""
    return [
        mark["attrs"]["href"]
        for block in document["content"]
        for node in block["content"]
        for mark in node.get("marks", [])
        if mark["type"] == "link"
    ]


def adf_code(document: dict[str, Any]) -> list[str]:
    """Every text under a code mark (shown as code: Jira makes no link of it)."""
    return [
        node["text"]
        for block in document["content"]
        for node in block["content"]
        if any(mark["type"] == "code" for mark in node.get("marks", []))
    ]


@dataclass
class FakeJira:
    """Jira Cloud's REST API v3, as documented, for one project."""

    base_url: str = ""
    project: str = "SEC"
    issue_types: tuple[str, ...] = ("Task", "Bug")
    priorities: tuple[str, ...] = ("Highest", "High", "Medium", "Low", "Lowest")
    issues: dict[str, dict[str, Any]] = field(default_factory=dict)
    comments: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def __call__(self, request: Received) -> Answer:
        if request.headers.get("Authorization") != basic(JIRA_EMAIL, JIRA_TOKEN):
            # Jira Cloud's answer to missing or wrong Basic credentials is plain text.
            return text_answer(401, "Client must be authenticated to access this resource.")
        if request.method == "POST" and not is_json(request):
            return json_answer(415, {"errorMessages": ["Unsupported Media Type"], "errors": {}})
        parts = request.path.strip("/").split("/")
        if request.method == "POST" and parts == ["rest", "api", "3", "issue"]:
            return self._create(request.json())
        if request.method == "GET" and parts == ["rest", "api", "3", "search", "jql"]:
            return self._search(request.query)
        if (
            request.method == "POST"
            and parts[:4] == ["rest", "api", "3", "issue"]
            and parts[5:] == ["comment"]
        ):
            return self._comment(parts[4], request.json())
        return json_answer(404, {"errorMessages": ["Not found"], "errors": {}})

    def _create(self, document: dict[str, Any]) -> Answer:
        fields = document.get("fields", {})
        errors: dict[str, str] = {}
        if fields.get("project", {}).get("key") != self.project:
            errors["project"] = "Specify a valid project ID or key"
        if fields.get("issuetype", {}).get("name") not in self.issue_types:
            errors["issuetype"] = "Specify an issue type"
        summary = fields.get("summary")
        if not isinstance(summary, str) or not summary:
            errors["summary"] = "You must specify a summary of the issue."
        elif len(summary) > 255:
            errors["summary"] = "Summary must be less than 255 characters."
        elif "\n" in summary:
            errors["summary"] = "The summary is invalid because it contains newline characters."
        if adf_problems(fields.get("description")):
            errors["description"] = (
                "Operation value must be an Atlassian Document (see the Atlassian Document Format)"
            )
        for label in fields.get("labels", []):
            if " " in label or len(label) > 255:
                errors["labels"] = f"The label '{label}' contains spaces which is invalid."
        if "priority" in fields and fields["priority"].get("name") not in self.priorities:
            errors["priority"] = "Specify a valid 'id' or 'name' for Priority"
        if errors:
            return json_answer(400, {"errorMessages": [], "errors": errors})
        number = len(self.issues) + 1
        key = f"{self.project}-{number}"
        self.issues[key] = fields
        issue_id = str(10000 + number)
        return json_answer(
            201, {"id": issue_id, "key": key, "self": f"{self.base_url}/rest/api/3/issue/{issue_id}"}
        )

    def _search(self, query: dict[str, list[str]]) -> Answer:
        """The enhanced JQL search (`/rest/api/3/search/jql`), for JQL naming a project and a label."""
        jql = query.get("jql", [""])[0]
        matched = JQL_PROJECT_AND_LABEL.match(jql)
        if matched is None:
            return json_answer(
                400, {"errorMessages": [f"Error in the JQL Query: cannot read {jql!r}"], "errors": {}}
            )
        project, label = (re.sub(r"\\(.)", r"\1", matched.group(name)) for name in ("project", "label"))
        if project != self.project:
            message = f"The value '{project}' does not exist for the field 'project'."
            return json_answer(400, {"errorMessages": [message], "errors": {}})
        keys = [key for key, fields in self.issues.items() if label in fields.get("labels", [])]
        if matched.group(0).endswith("DESC"):
            keys.reverse()
        limit = int(query.get("maxResults", ["50"])[0])
        issues = [
            {
                "id": self._id_of(key),
                "key": key,
                "self": f"{self.base_url}/rest/api/3/issue/{self._id_of(key)}",
            }
            for key in keys[:limit]
        ]
        page: dict[str, Any] = {"issues": issues, "isLast": len(keys) <= limit}
        if len(keys) > limit:
            page["nextPageToken"] = "next-page"
        return json_answer(200, page)

    @staticmethod
    def _id_of(key: str) -> str:
        return str(10000 + int(key.rsplit("-", 1)[1]))

    def _comment(self, key: str, document: dict[str, Any]) -> Answer:
        if key not in self.issues:
            message = "Issue does not exist or you do not have permission to see it."
            return json_answer(404, {"errorMessages": [message], "errors": {}})
        if adf_problems(document.get("body")):
            return json_answer(400, {"errorMessages": ["Comment body is not valid ADF."], "errors": {}})
        self.comments.setdefault(key, []).append(document["body"])
        comment_id = str(10100 + len(self.comments[key]))
        return json_answer(
            201,
            {
                "id": comment_id,
                "self": f"{self.base_url}/rest/api/3/issue/{key}/comment/{comment_id}",
                "body": document["body"],
                "created": "2024-05-01T10:00:00.000+0000",
            },
        )


@pytest.fixture
def jira() -> Iterator[tuple[FakeJira, LoopbackServer]]:
    """A fake Jira Cloud site on loopback."""
    fake = FakeJira()
    with LoopbackServer(fake) as server:
        fake.base_url = server.base_url
        yield fake, server


@pytest.fixture
def session() -> Iterator[requests.Session]:
    """A requests session, closed after the test."""
    with requests.Session() as http:
        yield http


def jira_sink(
    session: requests.Session, base_url: str, token: str = JIRA_TOKEN, **options: Any
) -> JiraTicketSink:
    return JiraTicketSink(
        session, base_url, BasicCredentials(JIRA_EMAIL, token), "SEC", "Task", now=lambda: NOW, **options
    )


def triaged_case(score: float = 8, title: str | None = None, **fields: Any) -> Case:
    """A malicious case on an instance, with one IOC, one action awaiting approval and a VirusTotal link."""
    defaults: dict[str, Any] = {
        "status": CaseStatus.ENRICHED,
        "verdict": Verdict.MALICIOUS,
        "iocs": [
            IocOutcome(
                type=IocType.IP,
                value="198.51.100.7",
                found_at="service.action.networkConnectionAction.remoteIpDetails.ipAddressV4",
                verdict=Verdict.MALICIOUS,
                malicious=7,
                total=94,
                reasons=["7 engines flag it malicious (threshold 3)"],
                link=VT_LINK,
            )
        ],
        "actions": [
            Action(
                type=ActionType.ISOLATE_INSTANCE,
                target="i-0abc1234def567890",
                status=ActionStatus.PENDING_APPROVAL,
            )
        ],
    }
    alert = make_alert(severity=Severity(score=score), **({"title": title} if title else {}))
    return make_case(alert, **{**defaults, **fields})


def report_of(case: Case) -> Report:
    """The case's report as the ticket function renders it, with its case page link."""
    return render_report(case, case_page=CasePageLink(url=CASE_PAGE_URL, expires_at=NOW))


def test_jira_creates_an_issue_with_the_documented_fields(
    jira: tuple[FakeJira, LoopbackServer], session: requests.Session
) -> None:
    # Given a Jira site and a high-severity malicious case
    fake, server = jira
    case = triaged_case(score=8)
    report = report_of(case)

    # When its ticket is opened in Jira
    ticket = jira_sink(session, server.base_url).open(case, report)

    # Then the ticket is the issue, named by its key, with its browse URL
    assert ticket == Ticket(
        provider="jira", id="SEC-1", url=f"{server.base_url}/browse/SEC-1", created_at=NOW
    )
    # And the case's issue was looked up, found nothing, and was created by a JSON POST with Basic auth
    lookup, request = server.received
    assert (lookup.method, lookup.path) == ("GET", "/rest/api/3/search/jql")
    assert (request.method, request.path) == ("POST", "/rest/api/3/issue")
    assert request.headers["Accept"] == "application/json"
    # And the issue holds the project, type, priority from severity, labels and the report in ADF
    fields = fake.issues["SEC-1"]
    assert fields["project"] == {"key": "SEC"}
    assert fields["issuetype"] == {"name": "Task"}
    assert fields["priority"] == {"name": "High"}
    assert fields["summary"].startswith("[HIGH] malicious: 198.51.100.7 is performing SSH brute force")
    assert {"vtriage", "severity-high", "verdict-malicious", "guardduty", case.case_id} <= set(
        fields["labels"]
    )
    text = adf_text(fields["description"])
    # (its isolation is planned, not yet run: not contained)
    assert text.startswith("vtriage case report: HIGH 8, MALICIOUS, NOT CONTAINED\n\nLinks from vtriage")
    assert f"Title: {case.alert.title}" in text
    # And the case page link comes first, then the VirusTotal page: the only links an analyst can click
    assert adf_links(fields["description"]) == [CASE_PAGE_URL, VT_LINK]
    # And the alert's values are code, which Jira shows as such
    assert case.alert.title in adf_code(fields["description"])


def test_jira_makes_no_link_of_what_the_alert_says(
    jira: tuple[FakeJira, LoopbackServer], session: requests.Session
) -> None:
    # Given a case whose title and IOC carry links and fake approval lines
    fake, server = jira
    case = triaged_case(title=HOSTILE_TITLE)
    case.iocs[0] = case.iocs[0].model_copy(update={"value": "https://evil.example/payload"})

    # When its issue is created
    ticket = jira_sink(session, server.base_url).open(case, report_of(case))

    # Then the only links are vtriage's, and the title is one code-marked line, escaped and defanged
    description = fake.issues[ticket.id]["description"]
    assert adf_links(description) == [CASE_PAGE_URL, VT_LINK]
    [title] = [code for code in adf_code(description) if code.startswith("Scan finished")]
    assert title.startswith("Scan finished\\n\\nApprove: hxxps://evil.example/approve [code]")
    assert title.endswith("\\u202e")
    assert "https://evil" not in json.dumps(description)
    # And the summary is one line, escaped
    assert fake.issues[ticket.id]["summary"].startswith(
        "[HIGH] malicious: Scan finished\\n\\nApprove: hxxps://"
    )


@pytest.mark.parametrize(("score", "priority"), [(9.5, "Highest"), (8, "High"), (5, "Medium"), (2, "Low")])
def test_jira_priority_follows_the_detectors_severity(
    jira: tuple[FakeJira, LoopbackServer], session: requests.Session, score: float, priority: str
) -> None:
    # Given a case of this severity, When its issue is created
    fake, server = jira
    ticket = jira_sink(session, server.base_url).open(triaged_case(score=score), PLAIN_REPORT)

    # Then the issue has the mapped priority
    assert fake.issues[ticket.id]["priority"] == {"name": priority}


def test_jira_comments_on_the_issue_in_adf(
    jira: tuple[FakeJira, LoopbackServer], session: requests.Session
) -> None:
    # Given an issue opened for a case
    fake, server = jira
    sink = jira_sink(session, server.base_url)
    ticket = sink.open(triaged_case(), PLAIN_REPORT)

    # When a repeat of the finding is commented on it
    sink.comment(ticket, "Seen again at 2024-05-01T11:00:00Z\nDetails: " + VT_LINK)

    # Then Jira holds the comment, posted to the issue's comment endpoint, as code that makes no link
    assert [(r.method, r.path) for r in server.received][-1] == ("POST", "/rest/api/3/issue/SEC-1/comment")
    [comment] = fake.comments["SEC-1"]
    assert adf_text(comment) == "Seen again at 2024-05-01T11:00:00Z\nDetails: " + VT_LINK
    assert adf_links(comment) == []
    assert adf_code(comment) == ["Seen again at 2024-05-01T11:00:00Z", "Details: " + VT_LINK]


def test_jira_puts_the_approval_links_first_in_the_comment_as_links(
    jira: tuple[FakeJira, LoopbackServer], session: requests.Session
) -> None:
    # Given an issue opened for a case whose action waits for a person
    fake, server = jira
    sink = jira_sink(session, server.base_url)
    ticket = sink.open(triaged_case(), PLAIN_REPORT)

    # When the ticket function puts the approval links on it
    sink.comment(ticket, APPROVAL_TEXT, links=APPROVAL_LINKS)

    # Then Jira accepted the comment: the two links first, clickable, under vtriage's header, then the text
    # as code
    [comment] = fake.comments["SEC-1"]
    assert adf_links(comment) == [APPROVE_URL, APPROVE_URL + "x"]
    assert adf_text(comment).startswith(f"{LINKS_HEADER}\nApprove: {APPROVE_URL}\nReject: {APPROVE_URL}x\n\n")
    assert adf_code(comment) == APPROVAL_TEXT.splitlines()


def test_jira_refusing_the_credentials_is_a_clear_error_without_them(
    jira: tuple[FakeJira, LoopbackServer], session: requests.Session
) -> None:
    # Given a revoked API token
    _, server = jira
    sink = jira_sink(session, server.base_url, token="ATATT-revoked-token")

    # When a ticket is opened, Then the error says Jira refused the credentials, and what Jira said
    with pytest.raises(TicketProviderAuthError) as raised:
        sink.open(triaged_case(), PLAIN_REPORT)
    error = raised.value
    assert isinstance(error, ConfigurationError)
    assert error.http_status == 401
    assert (
        str(error)
        == "Jira refused the request (HTTP 401): Client must be authenticated to access this resource."
    )
    # And neither the token nor the Basic header is anywhere in it, nor in the sink's repr
    encoded = basic(JIRA_EMAIL, "ATATT-revoked-token").removeprefix("Basic ")
    for secret in ("ATATT-revoked-token", encoded):
        assert secret not in str(error)
        assert secret not in repr(sink)


def test_jira_rate_limit_is_transient_with_its_retry_after(
    jira: tuple[FakeJira, LoopbackServer], session: requests.Session
) -> None:
    # Given Jira rate-limiting the account
    _, server = jira
    server.outage = text_answer(429, "Rate limit exceeded.", {"Retry-After": "30"})

    # When a ticket is opened, Then a TransientError (the name the state machine retries) says when
    with pytest.raises(TransientError) as raised:
        jira_sink(session, server.base_url).open(triaged_case(), PLAIN_REPORT)
    assert type(raised.value) is TransientError
    assert raised.value.retry_after == 30.0
    assert "HTTP 429" in str(raised.value)
    # And it was sent once: nothing retries or sleeps inside the provider
    assert len(server.received) == 1


def test_jira_server_error_is_transient(
    jira: tuple[FakeJira, LoopbackServer], session: requests.Session
) -> None:
    # Given Jira failing, When a ticket is opened, Then the error is transient
    fake, server = jira
    server.outage = json_answer(503, {"errorMessages": ["Service Unavailable"], "errors": {}})
    with pytest.raises(TransientError, match="Jira is unavailable \\(HTTP 503\\): Service Unavailable"):
        jira_sink(session, server.base_url).open(triaged_case(), PLAIN_REPORT)
    # And the failed lookup stopped it: nothing was created without knowing whether the issue exists
    assert [(r.method, r.path) for r in server.received] == [("GET", "/rest/api/3/search/jql")]
    assert fake.issues == {}


def test_jira_looks_the_case_up_with_the_enhanced_jql_search_before_creating(
    jira: tuple[FakeJira, LoopbackServer], session: requests.Session
) -> None:
    # Given a Jira site and a case
    _, server = jira
    case = triaged_case()

    # When its ticket is opened
    jira_sink(session, server.base_url).open(case, PLAIN_REPORT)

    # Then the first request searched the project for the case's label, asking for one key only
    lookup = server.received[0]
    assert (lookup.method, lookup.path) == ("GET", "/rest/api/3/search/jql")
    assert lookup.query == {
        "jql": [f'project = "SEC" AND labels = "{case.case_id}" ORDER BY created ASC'],
        "fields": ["key"],
        "maxResults": ["1"],
    }
    assert lookup.headers["Authorization"] == basic(JIRA_EMAIL, JIRA_TOKEN)
    assert lookup.headers["Accept"] == "application/json"
    assert lookup.body == b""


def test_jira_retry_after_a_lost_create_answer_returns_the_issue_instead_of_a_second(
    jira: tuple[FakeJira, LoopbackServer], session: requests.Session
) -> None:
    # Given Jira that creates the issue but whose answer comes after the client's read timeout
    fake, server = jira
    sink = jira_sink(session, server.base_url, timeout=(3.05, 0.5))
    server.lose_the_answer_to(lambda request: (request.method, request.path) == ("POST", "/rest/api/3/issue"))
    case = triaged_case()
    with pytest.raises(TransientError, match="Jira did not answer in time"):
        sink.open(case, report_of(case))
    assert server.answer_lost.wait(timeout=10)
    assert list(fake.issues) == ["SEC-1"]

    # When the ticket step is retried
    ticket = sink.open(case, report_of(case))

    # Then Jira still holds exactly one issue, and the retry's ticket is the issue the first call created
    assert list(fake.issues) == ["SEC-1"]
    assert ticket == Ticket(
        provider="jira", id="SEC-1", url=f"{server.base_url}/browse/SEC-1", created_at=NOW
    )
    assert [(r.method, r.path) for r in server.received] == [
        ("GET", "/rest/api/3/search/jql"),
        ("POST", "/rest/api/3/issue"),
        ("GET", "/rest/api/3/search/jql"),
    ]


def test_jira_field_errors_are_named_as_jira_names_them(
    jira: tuple[FakeJira, LoopbackServer], session: requests.Session
) -> None:
    # Given a priority scheme the project does not have
    _, server = jira
    sink = jira_sink(session, server.base_url, priorities={"high": "P1"})

    # When a ticket is opened, Then the error carries Jira's field error
    with pytest.raises(TicketProviderError) as raised:
        sink.open(triaged_case(score=8), PLAIN_REPORT)
    assert raised.value.http_status == 400
    assert "priority: Specify a valid 'id' or 'name' for Priority" in str(raised.value)
    assert not isinstance(raised.value, TransientError)


def test_jira_comment_on_a_missing_issue_says_so(
    jira: tuple[FakeJira, LoopbackServer], session: requests.Session
) -> None:
    # Given an issue key Jira does not know
    _, server = jira
    missing = Ticket(provider="jira", id="SEC-404", created_at=NOW)

    # When it is commented on, Then Jira's 404 message comes back
    with pytest.raises(TicketProviderError, match="Issue does not exist or you do not have permission"):
        jira_sink(session, server.base_url).comment(missing, "again")


def test_jira_without_a_priority_field_sends_none(
    jira: tuple[FakeJira, LoopbackServer], session: requests.Session
) -> None:
    # Given a project whose screens have no priority, When an issue is created without priorities
    fake, server = jira
    ticket = jira_sink(session, server.base_url, priorities=None).open(triaged_case(), PLAIN_REPORT)

    # Then no priority was sent
    assert "priority" not in fake.issues[ticket.id]


# --- ServiceNow -------------------------------------------------------------------------------------

SN_USER = "vtriage.integration"
SN_PASSWORD = "s3rvicenow-Pa55word!"
SN_TOKEN = "oauth-access-token-value"
INCIDENT_FIELDS = {
    "short_description",
    "description",
    "impact",
    "urgency",
    "category",
    "correlation_id",
    "correlation_display",
    "assignment_group",
    "caller_id",
    "work_notes",
    "comments",
}
# The default priority lookup rules: (impact, urgency) → priority.
PRIORITY = {
    ("1", "1"): "1",
    ("1", "2"): "2",
    ("2", "1"): "2",
    ("1", "3"): "3",
    ("2", "2"): "3",
    ("3", "1"): "3",
    ("2", "3"): "4",
    ("3", "2"): "4",
    ("3", "3"): "5",
}


def sn_error(status: int, message: str, detail: str) -> Answer:
    """ServiceNow's error body."""
    return json_answer(status, {"error": {"message": message, "detail": detail}, "status": "failure"})


@dataclass
class FakeServiceNow:
    """The ServiceNow Table API, as documented, for the incident table."""

    base_url: str = ""
    incidents: dict[str, dict[str, Any]] = field(default_factory=dict)
    ignored_fields: list[str] = field(default_factory=list)
    table_fields: frozenset[str] = frozenset(INCIDENT_FIELDS)

    def __call__(self, request: Received) -> Answer:
        if request.headers.get("Authorization") not in (basic(SN_USER, SN_PASSWORD), f"Bearer {SN_TOKEN}"):
            return sn_error(401, "User Not Authenticated", "Required to provide Auth information")
        if request.headers.get("Accept") != "application/json":
            return sn_error(406, "Not acceptable", "The Accept header must name application/json")
        if request.method in ("POST", "PATCH") and not is_json(request):
            return sn_error(415, "Unsupported media type", "The body must be application/json")
        parts = request.path.strip("/").split("/")
        if parts[:4] != ["api", "now", "table", "incident"] or len(parts) > 5:
            return sn_error(400, "Invalid table", "Only the incident table exists here")
        if request.method == "POST" and len(parts) == 4:
            return self._create(request.json(), request.query)
        if request.method == "PATCH" and len(parts) == 5:
            return self._update(parts[4], request.json())
        if request.method == "GET" and len(parts) == 4:
            return self._query(request.query)
        return sn_error(405, "Method not Supported", f"{request.method} is not supported here")

    def _create(self, record: dict[str, Any], query: dict[str, list[str]]) -> Answer:
        problem = self._check(record)
        if problem:
            return sn_error(400, "Invalid field value", problem)
        sys_id = uuid.uuid4().hex
        stored = {
            **{name: value for name, value in record.items() if name in self.table_fields},
            "sys_id": sys_id,
            "number": f"INC{10000 + len(self.incidents) + 1:07d}",
            "priority": PRIORITY[(record.get("impact", "3"), record.get("urgency", "3"))],
            "work_notes_journal": [record["work_notes"]] if record.get("work_notes") else [],
        }
        self.incidents[sys_id] = stored
        wanted = query.get("sysparm_fields", [""])[0].split(",")
        result = {name: stored[name] for name in wanted if name in stored} if wanted != [""] else stored
        location = f"{self.base_url}/api/now/table/incident/{sys_id}"
        return json_answer(201, {"result": result}, {"Location": location})

    def _update(self, sys_id: str, record: dict[str, Any]) -> Answer:
        if sys_id not in self.incidents:
            return sn_error(
                404, "No Record found", "Record doesn't exist or ACL restricts the record retrieval"
            )
        problem = self._check(record)
        if problem:
            return sn_error(400, "Invalid field value", problem)
        incident = self.incidents[sys_id]
        if record.get("work_notes"):
            incident["work_notes_journal"].append(record["work_notes"])
        if record.get("comments"):
            incident.setdefault("comments_journal", []).append(record["comments"])
        return json_answer(200, {"result": {"sys_id": sys_id, "number": incident["number"]}})

    def _query(self, query: dict[str, list[str]]) -> Answer:
        """Records matching every `field=value` condition of the encoded query (joined by `^`), oldest
        first (ORDERBY clauses need nothing more here), with the asked fields, up to the limit.

        A condition on a field the table lacks is dropped, as the Table API does by default
        (`glide.invalid_query.returns_no_rows` false): the query then matches other records."""
        conditions = [
            condition.partition("=")
            for condition in query.get("sysparm_query", [""])[0].split("^")
            if condition and not condition.startswith("ORDERBY")
        ]
        conditions = [
            (name, equals, value)
            for name, equals, value in conditions
            if name in self.table_fields | {"sys_id", "number"}
        ]
        wanted = query.get("sysparm_fields", [""])[0].split(",")
        limit = int(query.get("sysparm_limit", ["10000"])[0])
        matching = [
            incident
            for incident in self.incidents.values()
            if all(incident.get(name) == value for name, _, value in conditions)
        ]
        found = [
            {name: incident[name] for name in wanted if name in incident} if wanted != [""] else incident
            for incident in matching[:limit]
        ]
        return json_answer(200, {"result": found})

    def _check(self, record: dict[str, Any]) -> str | None:
        # The Table API ignores unknown fields without a word: keep them so a test can fail on them.
        self.ignored_fields += [name for name in record if name not in self.table_fields]
        if any(not isinstance(value, str) for value in record.values()):
            return "field values must be strings"
        for name in ("impact", "urgency"):
            if name in record and record[name] not in ("1", "2", "3"):
                return f"{name} must be 1, 2 or 3"
        if len(record.get("short_description", "")) > 160:
            return "short_description exceeds its 160 characters"
        if len(record.get("description", "")) > 4000:
            return "description exceeds its 4000 characters"
        return None


@pytest.fixture
def servicenow() -> Iterator[tuple[FakeServiceNow, LoopbackServer]]:
    """A fake ServiceNow instance on loopback."""
    fake = FakeServiceNow()
    with LoopbackServer(fake) as server:
        fake.base_url = server.base_url
        yield fake, server


def sn_sink(session: requests.Session, base_url: str, **options: Any) -> ServiceNowTicketSink:
    credentials = options.pop("credentials", BasicCredentials(SN_USER, SN_PASSWORD))
    return ServiceNowTicketSink(session, base_url, credentials, now=lambda: NOW, **options)


def test_servicenow_creates_an_incident_with_the_documented_fields(
    servicenow: tuple[FakeServiceNow, LoopbackServer], session: requests.Session
) -> None:
    # Given an instance and a high-severity malicious case
    fake, server = servicenow
    case = triaged_case(score=8)
    report = report_of(case)

    # When its ticket is opened as an incident, with an assignment group
    ticket = sn_sink(session, server.base_url, assignment_group="Security Operations").open(case, report)

    # Then the ticket is named by the incident number and links to the record by sys_id
    [incident] = fake.incidents.values()
    assert ticket.provider == "servicenow"
    assert ticket.id == incident["number"] == "INC0010001"
    assert ticket.url == f"{server.base_url}/nav_to.do?uri=incident.do?sys_id={incident['sys_id']}"
    # And the case's record was looked up, none was found, and a JSON POST to the incident table
    # asking only for sys_id and number created it
    lookup, request = server.received
    assert (lookup.method, lookup.path) == ("GET", "/api/now/table/incident")
    assert (request.method, request.path) == ("POST", "/api/now/table/incident")
    assert request.query == {"sysparm_fields": ["sys_id,number"]}
    # And the incident holds the report, severity as impact/urgency (P2), category, group and case id
    assert incident["description"] == report.text()
    assert incident["short_description"].startswith("[HIGH] malicious: 198.51.100.7")
    assert (incident["impact"], incident["urgency"], incident["priority"]) == ("1", "2", "2")
    assert incident["category"] == "security"
    assert incident["assignment_group"] == "Security Operations"
    assert incident["correlation_id"] == case.case_id
    assert fake.ignored_fields == []


@pytest.mark.parametrize(("score", "priority"), [(9.5, "1"), (8, "2"), (5, "3"), (2, "4")])
def test_servicenow_priority_follows_the_detectors_severity(
    servicenow: tuple[FakeServiceNow, LoopbackServer], session: requests.Session, score: float, priority: str
) -> None:
    # Given a case of this severity, When its incident is created
    fake, server = servicenow
    sn_sink(session, server.base_url).open(triaged_case(score=score), PLAIN_REPORT)

    # Then the instance's priority lookup gives the mapped priority
    [incident] = fake.incidents.values()
    assert incident["priority"] == priority


def test_servicenow_accepts_an_oauth_bearer_token(
    servicenow: tuple[FakeServiceNow, LoopbackServer], session: requests.Session
) -> None:
    # Given an OAuth access token instead of a password, When an incident is created
    fake, server = servicenow
    sn_sink(session, server.base_url, credentials=BearerToken(SN_TOKEN)).open(triaged_case(), PLAIN_REPORT)

    # Then it was sent as a bearer token and the incident exists
    assert server.received[0].headers["Authorization"] == f"Bearer {SN_TOKEN}"
    assert len(fake.incidents) == 1


def test_servicenow_keeps_a_long_report_whole_in_the_work_notes(
    servicenow: tuple[FakeServiceNow, LoopbackServer], session: requests.Session
) -> None:
    # Given a report longer than the description field holds
    fake, server = servicenow
    report = Report(headline="HIGH 8, MALICIOUS", lines=(ReportLine(label="line of the report"),) * 400)

    # When the incident is created
    sn_sink(session, server.base_url).open(triaged_case(), report)

    # Then the description is cut and says where the rest is, and the work notes hold it all
    [incident] = fake.incidents.values()
    assert len(incident["description"]) <= 4000
    assert incident["description"].endswith("the whole report is in the work notes]")
    assert incident["work_notes_journal"] == [report.text()]


def test_servicenow_neutralises_code_tags_from_the_alert(
    servicenow: tuple[FakeServiceNow, LoopbackServer], session: requests.Session
) -> None:
    # Given a case whose title carries ServiceNow's [code] tags around a link, long enough for the work notes
    fake, server = servicenow
    case = triaged_case(title=HOSTILE_TITLE)
    report = report_of(case)
    long_report = report.model_copy(update={"lines": report.lines + (ReportLine(label="filler"),) * 400})

    # When its incident is created, and commented on with a value from the alert
    sink = sn_sink(session, server.base_url)
    ticket = sink.open(case, long_report)
    sink.comment(ticket, "repeat of [CODE]<b>x</b>[ /code ]")

    # Then no field or journal entry holds a [code] tag: each became (code), and the title stays one line
    [incident] = fake.incidents.values()
    stored = [incident["short_description"], incident["description"], *incident["work_notes_journal"]]
    assert all("[code]" not in text.lower() and "[/code]" not in text.lower() for text in stored)
    assert "(code)<a href='hxxps://evil.example'>Reject</a>(/code)" in incident["description"]
    assert incident["work_notes_journal"][-1] == "repeat of (CODE)<b>x</b>( /code )"
    assert "\nApprove: hxxps" not in incident["description"]
    assert "Title: Scan finished\\n\\nApprove: hxxps://evil.example/approve" in incident["description"]


def test_servicenow_comments_go_to_the_work_notes(
    servicenow: tuple[FakeServiceNow, LoopbackServer], session: requests.Session
) -> None:
    # Given an incident opened for a case
    fake, server = servicenow
    sink = sn_sink(session, server.base_url)
    ticket = sink.open(triaged_case(), PLAIN_REPORT)

    # When a repeat of the finding is commented on it
    sink.comment(ticket, "Seen again at 2024-05-01T11:00:00Z")

    # Then a PATCH of the record by sys_id added the work note
    [incident] = fake.incidents.values()
    request = server.received[-1]
    assert (request.method, request.path) == ("PATCH", f"/api/now/table/incident/{incident['sys_id']}")
    assert request.json() == {"work_notes": "Seen again at 2024-05-01T11:00:00Z"}
    assert incident["work_notes_journal"] == ["Seen again at 2024-05-01T11:00:00Z"]


def test_servicenow_puts_the_approval_links_first_in_the_work_note(
    servicenow: tuple[FakeServiceNow, LoopbackServer], session: requests.Session
) -> None:
    # Given an incident opened for a case whose action waits for a person
    fake, server = servicenow
    sink = sn_sink(session, server.base_url)
    ticket = sink.open(triaged_case(), PLAIN_REPORT)

    # When the ticket function puts the approval links on it
    sink.comment(ticket, APPROVAL_TEXT, links=APPROVAL_LINKS)

    # Then the work note starts with the links under vtriage's header, then the text
    [incident] = fake.incidents.values()
    assert incident["work_notes_journal"] == [
        f"{LINKS_HEADER}\nApprove: {APPROVE_URL}\nReject:  {APPROVE_URL}x\n\n{APPROVAL_TEXT}"
    ]


def test_servicenow_finds_the_record_by_number_when_the_ticket_has_no_url(
    servicenow: tuple[FakeServiceNow, LoopbackServer], session: requests.Session
) -> None:
    # Given a ticket stored with its number only, and a sink commenting visibly to the caller
    fake, server = servicenow
    sink = sn_sink(session, server.base_url, comment_field="comments")
    number = sink.open(triaged_case(), PLAIN_REPORT).id

    # When it is commented on
    sink.comment(Ticket(provider="servicenow", id=number, created_at=NOW), "approved by alice")

    # Then the record was looked up by number, then patched
    [incident] = fake.incidents.values()
    assert [r.method for r in server.received] == ["GET", "POST", "GET", "PATCH"]
    assert server.received[2].query["sysparm_query"] == [f"number={number}"]
    assert incident["comments_journal"] == ["approved by alice"]


def test_servicenow_refusing_the_credentials_is_a_clear_error_without_them(
    servicenow: tuple[FakeServiceNow, LoopbackServer], session: requests.Session
) -> None:
    # Given a wrong password
    _, server = servicenow
    sink = sn_sink(session, server.base_url, credentials=BasicCredentials(SN_USER, "wr0ng-Pa55"))

    # When an incident is created, Then the error quotes ServiceNow and holds no credential
    with pytest.raises(TicketProviderAuthError) as raised:
        sink.open(triaged_case(), PLAIN_REPORT)
    message = str(raised.value)
    assert message == (
        "ServiceNow refused the request (HTTP 401): "
        "User Not Authenticated: Required to provide Auth information"
    )
    assert "wr0ng-Pa55" not in message
    assert "wr0ng-Pa55" not in repr(sink)


def test_servicenow_rate_limit_is_transient_with_its_retry_after(
    servicenow: tuple[FakeServiceNow, LoopbackServer], session: requests.Session
) -> None:
    # Given a rate limit rule refusing the integration user
    _, server = servicenow
    server.outage = sn_error(429, "Too many requests", "Rate limit exceeded")
    server.outage[1]["Retry-After"] = "12"

    # When an incident is created, Then the error is transient and says when to come back
    with pytest.raises(TransientError) as raised:
        sn_sink(session, server.base_url).open(triaged_case(), PLAIN_REPORT)
    assert type(raised.value) is TransientError
    assert raised.value.retry_after == 12.0
    assert "Too many requests: Rate limit exceeded" in str(raised.value)
    # And the refused lookup stopped it: nothing was created without knowing whether the record exists
    assert [r.method for r in server.received] == ["GET"]


def test_servicenow_looks_the_case_up_by_correlation_id_before_creating(
    servicenow: tuple[FakeServiceNow, LoopbackServer], session: requests.Session
) -> None:
    # Given an instance and a case
    _, server = servicenow
    case = triaged_case()

    # When its ticket is opened
    sn_sink(session, server.base_url, credentials=BearerToken(SN_TOKEN)).open(case, PLAIN_REPORT)

    # Then the first request queried the table by the case's correlation_id, for one record
    lookup = server.received[0]
    assert (lookup.method, lookup.path) == ("GET", "/api/now/table/incident")
    assert lookup.query == {
        "sysparm_query": [f"correlation_id={case.case_id}^ORDERBYsys_created_on"],
        "sysparm_fields": ["sys_id,number,correlation_id"],
        "sysparm_limit": ["1"],
    }
    assert lookup.headers["Authorization"] == f"Bearer {SN_TOKEN}"
    assert lookup.headers["Accept"] == "application/json"
    assert lookup.body == b""


def test_servicenow_retry_after_a_lost_create_answer_returns_the_incident_instead_of_a_second(
    servicenow: tuple[FakeServiceNow, LoopbackServer], session: requests.Session
) -> None:
    # Given an instance that creates the incident but whose answer comes after the client's read timeout
    fake, server = servicenow
    sink = sn_sink(session, server.base_url, timeout=(3.05, 0.5))
    server.lose_the_answer_to(lambda request: request.method == "POST")
    case = triaged_case()
    with pytest.raises(TransientError, match="ServiceNow did not answer in time"):
        sink.open(case, report_of(case))
    assert server.answer_lost.wait(timeout=10)
    [created] = fake.incidents.values()

    # When the ticket step is retried
    ticket = sink.open(case, report_of(case))

    # Then the instance still holds exactly one incident, and the retry's ticket is that incident
    assert list(fake.incidents.values()) == [created]
    assert ticket == Ticket(
        provider="servicenow",
        id=created["number"],
        url=f"{server.base_url}/nav_to.do?uri=incident.do?sys_id={created['sys_id']}",
        created_at=NOW,
    )
    assert [r.method for r in server.received] == ["GET", "POST", "GET"]


def test_servicenow_record_without_the_cases_correlation_id_is_not_taken_for_its_ticket(
    servicenow: tuple[FakeServiceNow, LoopbackServer], session: requests.Session
) -> None:
    # Given a table without the task table's correlation fields, where the Table API drops the lookup's
    # condition and answers with any record
    fake, server = servicenow
    fake.table_fields = frozenset(INCIDENT_FIELDS - {"correlation_id", "correlation_display"})
    sink = sn_sink(session, server.base_url)
    first = sink.open(triaged_case(title="first finding"), PLAIN_REPORT)

    # When another case's ticket is opened
    other_case_id = make_alert(id="0f9e8d7c6b5a49382716a5b4c3d2e1f0").case_id
    second = sink.open(triaged_case(title="second finding", case_id=other_case_id), PLAIN_REPORT)

    # Then the other case got its own incident, not the first case's
    assert (first.id, second.id) == ("INC0010001", "INC0010002")
    assert len(fake.incidents) == 2


def test_servicenow_comment_on_a_missing_record_says_so(
    servicenow: tuple[FakeServiceNow, LoopbackServer], session: requests.Session
) -> None:
    # Given a ticket whose record was deleted
    _, server = servicenow
    gone = Ticket(
        provider="servicenow",
        id="INC0099999",
        url=f"{server.base_url}/nav_to.do?uri=incident.do?sys_id={'0' * 32}",
        created_at=NOW,
    )

    # When it is commented on, Then ServiceNow's 404 message comes back
    with pytest.raises(TicketProviderError, match="HTTP 404\\): No Record found: Record doesn't exist"):
        sn_sink(session, server.base_url).comment(gone, "again")


@pytest.mark.parametrize("vendor", ["jira", "servicenow"])
def test_the_ticket_of_another_case_is_never_taken_for_the_cases_own(
    vendor: str, request: pytest.FixtureRequest, session: requests.Session
) -> None:
    # Given a ticket already open at the vendor for one case
    fake, server = request.getfixturevalue(vendor)
    sink = (jira_sink if vendor == "jira" else sn_sink)(session, server.base_url)
    records = fake.issues if vendor == "jira" else fake.incidents
    first_case = triaged_case(title="first finding")
    first = sink.open(first_case, PLAIN_REPORT)

    # When another case's ticket is opened, and the first case's ticket step runs again
    other_case_id = make_alert(id="0f9e8d7c6b5a49382716a5b4c3d2e1f0").case_id
    second = sink.open(triaged_case(title="second finding", case_id=other_case_id), PLAIN_REPORT)
    again = sink.open(first_case, PLAIN_REPORT)

    # Then the other case got a ticket of its own, and the first case kept its one ticket
    assert second.id != first.id
    assert (again.id, again.url) == (first.id, first.url)
    assert len(records) == 2


@pytest.mark.parametrize(("vendor", "name"), [("jira", "Jira"), ("servicenow", "ServiceNow")])
def test_a_lookup_timing_out_is_transient_and_creates_nothing(
    vendor: str, name: str, request: pytest.FixtureRequest, session: requests.Session
) -> None:
    # Given a vendor whose answer to the lookup before a create comes after the client's read timeout
    fake, server = request.getfixturevalue(vendor)
    server.lose_the_answer_to(lambda received: received.method == "GET")
    make_sink = jira_sink if vendor == "jira" else sn_sink
    records = fake.issues if vendor == "jira" else fake.incidents

    # When a ticket is opened, Then the error is transient and nothing was created
    with pytest.raises(TransientError, match=f"{name} did not answer in time"):
        make_sink(session, server.base_url, timeout=(3.05, 0.5)).open(triaged_case(), PLAIN_REPORT)
    assert [received.method for received in server.received] == ["GET"]
    assert records == {}


# --- generic webhook (Slack-compatible) -------------------------------------------------------------

WEBHOOK_PATH = "/services/T0001/B0001/XXXXsecretXXXXpathXXXX"
SIGNING_SECRET = "whsec-shared-signing-secret"


@dataclass
class FakeSlackWebhook:
    """A Slack incoming webhook (answers as Slack does) that also checks vtriage's signature header."""

    secret: str | None = SIGNING_SECRET
    messages: list[dict[str, Any]] = field(default_factory=list)
    # The receiver's clock; the sinks under test sign with NOW.
    now: datetime = NOW

    def __call__(self, request: Received) -> Answer:
        if request.method != "POST" or request.path != WEBHOOK_PATH:
            return text_answer(404, "no_service")
        if not is_json(request):
            return text_answer(400, "invalid_payload")
        if self.secret is not None and not verify(
            request.body,
            self.secret,
            request.headers.get(SIGNATURE_HEADER),
            request.headers.get(TIMESTAMP_HEADER),
            now=self.now,
        ):
            return text_answer(401, "invalid_signature")
        try:
            message = request.json()
        except ValueError:
            return text_answer(400, "invalid_payload")
        if not isinstance(message.get("text"), str) or not message["text"]:
            return text_answer(400, "no_text")
        if self._block_problems(message.get("blocks", [])):
            return text_answer(400, "invalid_blocks")
        self.messages.append(message)
        return text_answer(200, "ok")

    @staticmethod
    def _block_problems(blocks: list[dict[str, Any]]) -> list[str]:
        problems = [] if len(blocks) <= 50 else ["more than 50 blocks"]
        for block in blocks:
            if block["type"] == "header" and (
                block["text"]["type"] != "plain_text" or len(block["text"]["text"]) > 150
            ):
                problems.append("header")
            if block["type"] == "section" and len(block["text"]["text"]) > 3000:
                problems.append("section longer than 3000 characters")
        return problems


@pytest.fixture
def slack() -> Iterator[tuple[FakeSlackWebhook, LoopbackServer]]:
    """A fake incoming webhook on loopback, checking signatures with SIGNING_SECRET."""
    fake = FakeSlackWebhook()
    with LoopbackServer(fake) as server:
        yield fake, server


def webhook_sink(
    session: requests.Session, url: str, secret: str | None = SIGNING_SECRET
) -> WebhookTicketSink:
    return WebhookTicketSink(session, url, now=lambda: NOW, signing_secret=secret)


def test_webhook_posts_a_signed_slack_message_with_the_case(
    slack: tuple[FakeSlackWebhook, LoopbackServer], session: requests.Session
) -> None:
    # Given an incoming webhook that checks signatures, and a case whose title has Slack's control characters
    fake, server = slack
    case = triaged_case(title="C&C <beacon> from i-0abc1234def567890")
    report = report_of(case)

    # When its ticket is opened
    ticket = webhook_sink(session, server.base_url + WEBHOOK_PATH).open(case, report)
    again = webhook_sink(session, server.base_url + WEBHOOK_PATH).open(case, report)

    # Then the webhook accepted two signed messages naming the same, stable ticket
    assert ticket.id == again.id
    assert ticket.id.startswith("VT-")
    assert ticket.provider == "webhook"
    first = fake.messages[0]
    # And the text is the headline, vtriage's links as Slack links, then the report in a code block,
    # escaped as Slack asks
    text = first["text"]
    assert text.startswith(f"*vtriage case report {ticket.id}: HIGH 8, MALICIOUS, NOT CONTAINED*\n")
    assert f"Case page: <{CASE_PAGE_URL.replace('&', '&amp;')}|Case page>" in text
    title = "Title: C&amp;C &lt;beacon&gt; from i-0abc"
    assert text.index("|Case page>") < text.index("```") < text.index(title)
    assert f"VirusTotal: {VT_LINK}" in text
    assert text.endswith("```")
    # And the blocks carry a header, the links, then the report
    assert first["blocks"][0]["type"] == "header"
    assert "|Case page>" in first["blocks"][1]["text"]["text"]
    assert "Indicators of compromise (1)" in first["blocks"][2]["text"]["text"]
    # And the machine-readable summary names the case, its IOC and its action
    assert first["event"] == "ticket_opened"
    assert first["ticket"] == {"provider": "webhook", "id": ticket.id}
    assert first["case"]["case_id"] == case.case_id
    assert first["case"]["alert"]["severity"] == "high"
    assert first["case"]["iocs"][0]["link"] == VT_LINK
    assert first["case"]["actions"] == [
        {"type": "isolate_instance", "target": "i-0abc1234def567890", "status": "pending_approval"}
    ]
    assert first["sent_at"] == "2024-05-01T10:00:00Z"


def test_webhooks_summary_names_what_the_case_is_about_when_no_action_acts_on_it(
    slack: tuple[FakeSlackWebhook, LoopbackServer], session: requests.Session
) -> None:
    # Given a case about a Lambda function (a subject: vtriage takes no action on it), with no resource
    function = "arn:aws:lambda:us-east-1:123456789012:function:image-resizer"
    fake, server = slack
    alert = make_alert(resources=(), subjects=(Subject(type="Lambda", id=function, name="image-resizer"),))
    case = make_case(alert, status=CaseStatus.ENRICHED, verdict=Verdict.MALICIOUS)

    # When its ticket is opened through the webhook
    webhook_sink(session, server.base_url + WEBHOOK_PATH).open(case, report_of(case))

    # Then the machine-readable summary names the function, as the report's text does
    [message] = fake.messages
    assert message["case"]["alert"]["resources"] == []
    assert message["case"]["alert"]["subjects"] == [
        {"type": "Lambda", "id": function, "name": "image-resizer"}
    ]
    assert "Lambda function" in message["text"]
    assert "image-resizer" in message["text"]


def test_webhook_splits_a_long_report_into_blocks_slack_accepts(
    slack: tuple[FakeSlackWebhook, LoopbackServer], session: requests.Session
) -> None:
    # Given a report of about 20,000 characters
    fake, server = slack
    report = Report(
        headline="HIGH 8, MALICIOUS",
        lines=tuple(ReportLine(label=f"- line {number} of a long report", indent=2) for number in range(700)),
    )

    # When it is posted
    webhook_sink(session, server.base_url + WEBHOOK_PATH).open(triaged_case(), report)

    # Then Slack accepted it, every line present across the sections
    [message] = fake.messages
    sections = [block["text"]["text"] for block in message["blocks"] if block["type"] == "section"]
    assert len(sections) > 1
    assert "line 0 of" in sections[0]
    assert "line 699 of" in sections[-1]


def test_webhook_comment_is_another_signed_post(
    slack: tuple[FakeSlackWebhook, LoopbackServer], session: requests.Session
) -> None:
    # Given a ticket opened through the webhook
    fake, server = slack
    sink = webhook_sink(session, server.base_url + WEBHOOK_PATH)
    ticket = sink.open(triaged_case(), PLAIN_REPORT)

    # When it is commented on
    sink.comment(ticket, "Seen again at 2024-05-01T11:00:00Z")

    # Then the webhook received the comment, naming the ticket
    comment = fake.messages[-1]
    assert comment["event"] == "ticket_comment"
    assert comment["ticket"] == {"provider": "webhook", "id": ticket.id}
    assert comment["comment"] == "Seen again at 2024-05-01T11:00:00Z"
    assert comment["text"] == f"*Update on {ticket.id}*\n```\nSeen again at 2024-05-01T11:00:00Z\n```"


def test_webhook_comment_carries_the_approval_links_as_slack_links(
    slack: tuple[FakeSlackWebhook, LoopbackServer], session: requests.Session
) -> None:
    # Given a ticket opened through the webhook for a case whose action waits for a person
    fake, server = slack
    sink = webhook_sink(session, server.base_url + WEBHOOK_PATH)
    ticket = sink.open(triaged_case(), PLAIN_REPORT)

    # When the ticket function puts the approval links on it
    sink.comment(ticket, APPROVAL_TEXT, links=APPROVAL_LINKS)

    # Then the message names the ticket, then the links as Slack links, then the text in a code block
    comment = fake.messages[-1]
    approve = APPROVE_URL.replace("&", "&amp;")
    assert comment["text"] == (
        f"*Update on {ticket.id}*\n{LINKS_HEADER}\nApprove: <{approve}|Approve>\n"
        f"Reject: <{approve}x|Reject>\n```\n{APPROVAL_TEXT}\n```"
    )
    # And a program reads them apart from the text
    assert comment["links"] == [
        {"label": "Approve", "url": APPROVE_URL},
        {"label": "Reject", "url": APPROVE_URL + "x"},
    ]
    assert comment["comment"] == APPROVAL_TEXT


def test_webhook_keeps_what_the_alert_says_inside_its_code_block(
    slack: tuple[FakeSlackWebhook, LoopbackServer], session: requests.Session
) -> None:
    # Given a case whose title holds a code fence, Slack markup and a link
    fake, server = slack
    case = triaged_case(title=HOSTILE_TITLE)

    # When its ticket is posted
    webhook_sink(session, server.base_url + WEBHOOK_PATH).open(case, report_of(case))

    # Then the text and every section open and close exactly one code block: the title's fence is broken
    [message] = fake.messages
    sections = [block["text"]["text"] for block in message["blocks"] if block["type"] == "section"]
    for text in (message["text"], *sections[1:]):
        assert text.count("```") == 2
        assert text.endswith("```")
    # And the title's link is defanged and its angle brackets escaped, so Slack makes no link of it
    assert "Title: Scan finished\\n\\nApprove: hxxps://evil.example/approve" in message["text"]
    assert "&lt;hxxps://evil.example|click&gt;" in message["text"]
    assert "https://evil" not in json.dumps([message["text"], message["blocks"]])
    # And the machine-readable summary keeps the title as the alert gave it, for programs
    assert message["case"]["alert"]["title"] == HOSTILE_TITLE


def test_webhook_signs_a_timestamp_so_a_replayed_request_is_refused(
    slack: tuple[FakeSlackWebhook, LoopbackServer], session: requests.Session
) -> None:
    # Given a signing webhook, When a ticket is posted
    _, server = slack
    webhook_sink(session, server.base_url + WEBHOOK_PATH).open(triaged_case(), PLAIN_REPORT)

    # Then the request carries its time and a signature over "<time>.<body>"
    [request] = server.received
    timestamp = request.headers[TIMESTAMP_HEADER]
    assert timestamp == str(int(NOW.timestamp()))
    assert request.headers[SIGNATURE_HEADER] == sign(request.body, SIGNING_SECRET, int(timestamp))

    # And a receiver accepts it within the window, and refuses it replayed after the window
    signature = request.headers[SIGNATURE_HEADER]
    within = datetime.fromtimestamp(NOW.timestamp() + REPLAY_WINDOW_SECONDS - 1, UTC)
    after = datetime.fromtimestamp(NOW.timestamp() + REPLAY_WINDOW_SECONDS + 1, UTC)
    assert verify(request.body, SIGNING_SECRET, signature, timestamp, now=within)
    assert not verify(request.body, SIGNING_SECRET, signature, timestamp, now=after)
    # And neither the body nor the time can be changed under the signature
    later = str(int(timestamp) + 60)
    assert not verify(request.body, SIGNING_SECRET, signature, later, now=NOW)
    assert not verify(request.body + b" ", SIGNING_SECRET, signature, timestamp, now=NOW)


def test_a_webhook_secret_with_a_plain_http_url_stops_the_ticket_function(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given the ticket function configured for a webhook whose secret holds a plain http URL
    use_dummy_aws_credentials(monkeypatch, "us-east-1")
    with mock_aws():
        secret = {"url": "http://hooks.example.com/services/T1/B1/plainSECRETpath", "signing_secret": "s"}
        boto3.client("secretsmanager", region_name="us-east-1").create_secret(
            Name="vtriage/webhook", SecretString=json.dumps(secret)
        )
        settings = TicketSettings.from_environ(
            {
                "AWS_REGION": "us-east-1",
                "CASES_TABLE_NAME": "cases",
                "TICKET_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:tickets",
                "TICKET_PROVIDER": "webhook",
                "TICKET_SECRET_NAME": "vtriage/webhook",
            }
        )

        # When its ticket sink is built, Then it stops, naming the secret and its key, not the URL
        with pytest.raises(ConfigurationError) as raised:
            ticket_sink(settings)
    message = str(raised.value)
    assert message.startswith("the secret vtriage/webhook, key 'url': the webhook URL must be an https://")
    assert "plainSECRETpath" not in message
    assert "hooks.example.com" not in message


def test_a_plain_http_webhook_url_is_refused_without_showing_it() -> None:
    # Given a webhook URL over plain http on another host
    url = "http://hooks.example.com/services/T0001/B0001/plainSECRETpath"

    # When the sink is made, Then it is a configuration error that names no part of the URL
    with pytest.raises(ConfigurationError, match="must be an https:// URL") as raised:
        WebhookTicketSink(requests.Session(), url, now=lambda: NOW)
    assert "plainSECRETpath" not in str(raised.value)
    assert "hooks.example.com" not in str(raised.value)


def test_webhook_signed_with_the_wrong_secret_is_refused_without_leaking(
    slack: tuple[FakeSlackWebhook, LoopbackServer], session: requests.Session
) -> None:
    # Given a sink whose shared secret is not the receiver's
    _, server = slack
    sink = webhook_sink(session, server.base_url + WEBHOOK_PATH, secret="whsec-old-rotated-secret")

    # When a ticket is opened, Then the receiver's refusal comes back as an auth error
    with pytest.raises(TicketProviderAuthError, match="HTTP 401\\): invalid_signature") as raised:
        sink.open(triaged_case(), PLAIN_REPORT)
    # And neither the secret nor the webhook's secret path is in the error or the repr
    for secret in ("whsec-old-rotated-secret", "XXXXsecretXXXXpathXXXX"):
        assert secret not in str(raised.value)
        assert secret not in repr(sink)


def test_webhook_unknown_url_is_refused_without_leaking_it(
    slack: tuple[FakeSlackWebhook, LoopbackServer], session: requests.Session
) -> None:
    # Given a webhook URL Slack no longer serves
    _, server = slack
    url = server.base_url + "/services/T0001/B0001/revokedSECRETpath"

    # When a ticket is opened, Then Slack's answer is quoted and the URL is not
    with pytest.raises(TicketProviderError, match="HTTP 404\\): no_service") as raised:
        webhook_sink(session, url).open(triaged_case(), PLAIN_REPORT)
    assert "revokedSECRETpath" not in str(raised.value)


def test_webhook_rate_limit_and_server_errors_are_transient(
    slack: tuple[FakeSlackWebhook, LoopbackServer], session: requests.Session
) -> None:
    # Given Slack rate-limiting, then failing
    _, server = slack
    sink = webhook_sink(session, server.base_url + WEBHOOK_PATH)
    server.outage = text_answer(429, "rate_limited", {"Retry-After": "1"})

    # When tickets are opened, Then both errors are transient, the first with its Retry-After
    with pytest.raises(TransientError) as limited:
        sink.open(triaged_case(), PLAIN_REPORT)
    assert limited.value.retry_after == 1.0
    server.outage = text_answer(500, "internal_error")
    with pytest.raises(TransientError, match="HTTP 500\\): internal_error"):
        sink.open(triaged_case(), PLAIN_REPORT)


def test_an_unreachable_provider_is_transient_and_the_error_names_no_url(session: requests.Session) -> None:
    # Given a loopback port nothing listens on
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/services/T0001/B0001/unreachableSECRET"

    # When a ticket is opened there, Then the error is transient and says nothing of the URL
    with pytest.raises(TransientError) as raised:
        webhook_sink(session, url).open(triaged_case(), PLAIN_REPORT)
    assert str(raised.value) == "cannot connect to the webhook (ConnectionError)"
    assert raised.value.__cause__ is None
    assert raised.value.__suppress_context__


def test_retry_after_may_be_an_http_date() -> None:
    # Given a Retry-After as an HTTP date 90 s after now, When it is read, Then it is 90 s
    now = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    assert retry_after_seconds("Wed, 01 May 2024 10:01:30 GMT", now) == 90.0
    assert retry_after_seconds("soon", now) is None
    assert retry_after_seconds("-5", now) == 0.0


# --- SNS, and every provider as a TicketSink --------------------------------------------------------


def test_sns_comment_is_a_follow_up_message_naming_the_ticket(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a ticket topic on moto with a queue subscribed
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        sns = boto3.client("sns", region_name="us-east-1")
        sqs = boto3.client("sqs", region_name="us-east-1")
        topic_arn = sns.create_topic(Name="vtriage-tickets")["TopicArn"]
        queue_url = sqs.create_queue(QueueName="tickets")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
        sink = SnsTicketSink(sns, topic_arn, now=lambda: NOW)
        ticket = Ticket(provider="sns", id="VT-0123456789", created_at=NOW)

        # When the ticket is commented on
        sink.comment(ticket, "Seen again at 2024-05-01T11:00:00Z")

        # Then subscribers receive the comment, its subject and attributes naming the ticket
        [message] = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
        notification = json.loads(message["Body"])
        assert notification["Subject"] == "Update on VT-0123456789"
        assert notification["Message"] == "Seen again at 2024-05-01T11:00:00Z"
        assert notification["MessageAttributes"]["ticket_id"]["Value"] == "VT-0123456789"
        assert notification["MessageAttributes"]["event"]["Value"] == "comment"

        # When the approval links of a waiting action are put on it
        sink.comment(ticket, APPROVAL_TEXT, links=APPROVAL_LINKS)

        # Then the subscribers read the links first, under vtriage's header, then the text
        [message] = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
        assert json.loads(message["Body"])["Message"] == (
            f"{LINKS_HEADER}\nApprove: {APPROVE_URL}\nReject:  {APPROVE_URL}x\n\n{APPROVAL_TEXT}"
        )


def test_every_provider_is_a_ticket_sink(session: requests.Session) -> None:
    # Given one sink of each provider, typed as the port (mypy checks that each one implements it)
    sinks: list[TicketSink] = [
        jira_sink(session, "https://example.atlassian.net"),
        sn_sink(session, "https://example.service-now.com"),
        webhook_sink(session, "https://hooks.example.com" + WEBHOOK_PATH),
        SnsTicketSink(None, "arn:aws:sns:us-east-1:123456789012:t", now=lambda: NOW),
    ]

    # Then each opens and comments, and none shows a credential in its repr
    for sink in sinks:
        assert callable(sink.open)
        assert callable(sink.comment)
        for secret in (JIRA_TOKEN, SN_PASSWORD, SIGNING_SECRET, "XXXXsecretXXXXpathXXXX"):
            assert secret not in repr(sink)
