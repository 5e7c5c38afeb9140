"""The Swimlane ticket provider against a loopback server that plays Swimlane's REST API.

`FakeSwimlane` answers as Swimlane's Python driver (swimlane/swimlane-python) and Kibana's Swimlane
connector (elastic/kibana, stack_connectors/swimlane) call it: the `Private-Token` header, an
application's definition (`GET /api/app/{appId}`, fields with `id`, `name`, `key`, `fieldType`,
`inputType`, `lengthType`, `maxLength`, `readOnly`, `required`), records created with
`{"applicationId", "values": {fieldId: value}}` and answered with `id`, `name` (the tracking id) and
`createdDate`, read by id and by tracking id, searched through `POST /api/search` in pages (`pageSize`,
`offset` the page's number; results keyed by application id, without the tracking id, as the driver
notes), commented on through `.../record/{recordId}/{commentsFieldId}/comment`, and errors as
`{"ErrorCode", "Argument"}` with 400. Its application is `synthetic-`: the shape of a real exported
application definition (alex-way/swimlane-cli's test of one), with fields of vtriage's default mapping.

What the documentation leaves open, the fake decides the way that is hardest on vtriage: its text
`equals` filter compares without regard to case, so only an exact match may be taken for the case.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
import requests
from moto import mock_aws

from tests.factories import make_alert
from tests.functional.conftest import use_dummy_aws_credentials
from tests.functional.test_adversarial import INSTANCE, TITLE_INJECTION, seed, vtriage_run
from tests.functional.test_ticket_providers import (
    APPROVAL_LINKS,
    APPROVAL_TEXT,
    APPROVE_URL,
    HOSTILE_TITLE,
    NOW,
    PLAIN_REPORT,
    VT_LINK,
    Answer,
    LoopbackServer,
    Received,
    is_json,
    json_answer,
    report_of,
    text_answer,
    triaged_case,
)
from vtriage.adapters.http_tickets import TicketProviderAuthError, TicketProviderError
from vtriage.adapters.swimlane import SEARCH_PAGE_SIZE, TOKEN_HEADER, SwimlaneTicketSink
from vtriage.composition.ticket import ticket_sink
from vtriage.config.ticket import SwimlaneFields, TicketSettings
from vtriage.errors import ConfigurationError, TransientError
from vtriage.models import Ticket
from vtriage.report import LINKS_HEADER, Report, ReportLine
from vtriage_local.stack import LocalAws

pytestmark = pytest.mark.functional

PAT = "pat-0123456789abcdefSECRET"
APP_ID = "aSyntheticVtriage"
ACRONYM = "SAI"
REPORT_MAX_CHARS = 5000
DEFAULT_FIELDS = SwimlaneFields().model_dump()


def text_field(field_id: str, name: str, **options: Any) -> dict[str, Any]:
    """A text field's definition, as an application's `fields` hold it."""
    return {
        "$type": "Core.Models.Fields.TextField, Core",
        "inputType": "text",
        "lengthType": "none",
        "id": field_id,
        "name": name,
        "key": name.lower().replace(" ", "-"),
        "fieldType": "text",
        "required": False,
        "readOnly": False,
        **options,
    }


def synthetic_application() -> dict[str, Any]:
    """`synthetic-` application: an alert application with the fields vtriage's default mapping names,
    the tracking and history fields every application has, and a rich text and a JSON field."""
    return {
        "$type": "Core.Models.Application.Application, Core",
        "id": APP_ID,
        "name": "Alert & Incident Management",
        "acronym": ACRONYM,
        "trackingFieldId": "aTrackingField0001",
        "fields": [
            {
                "$type": "Core.Models.Fields.TrackingField, Core",
                "prefix": f"{ACRONYM}-",
                "id": "aTrackingField0001",
                "name": "Tracking Id",
                "key": "tracking-id",
                "fieldType": "tracking",
                "readOnly": True,
            },
            text_field("acase", "vtriage Case ID"),
            text_field("atitl", "Title", lengthType="characters", maxLength=255),
            text_field("asevr", "Severity"),
            text_field("averd", "Verdict"),
            text_field("adesc", "Description", lengthType="characters", maxLength=REPORT_MAX_CHARS),
            text_field("arich", "Analyst Notes", inputType="rich", lengthType="words"),
            text_field("ajson", "Raw Alert", inputType="json"),
            {
                "$type": "Core.Models.Fields.CommentsField, Core",
                "id": "acomm",
                "name": "Comments",
                "key": "comments",
                "fieldType": "comments",
                "required": False,
                "readOnly": False,
            },
            {
                "$type": "Core.Models.Fields.History.HistoryField, Core",
                "id": "ahist",
                "name": "History",
                "key": "history",
                "fieldType": "history",
                "readOnly": False,
            },
        ],
    }


def sw_error(code: int, argument: str) -> Answer:
    """Swimlane's error body, with the 400 its driver reads error codes from."""
    return json_answer(400, {"ErrorCode": code, "Argument": argument})


@dataclass
class FakeSwimlane:
    """Swimlane's REST API, as documented, for one application."""

    application: dict[str, Any] = field(default_factory=synthetic_application)
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    comments: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    searches: list[dict[str, Any]] = field(default_factory=list)

    @property
    def fields(self) -> dict[str, dict[str, Any]]:
        """The application's field definitions by id."""
        return {definition["id"]: definition for definition in self.application["fields"]}

    def value_of(self, record: dict[str, Any], name: str) -> Any:
        """A record's value of the field of that name."""
        [field_id] = [i for i, definition in self.fields.items() if definition["name"] == name]
        return record["values"].get(field_id)

    def __call__(self, request: Received) -> Answer:
        if request.headers.get(TOKEN_HEADER) != PAT:
            return text_answer(401, "")
        if request.method == "POST" and not is_json(request):
            return text_answer(415, "Unsupported Media Type")
        parts = request.path.strip("/").split("/")
        if parts[:1] != ["api"]:
            return text_answer(404, "Not Found")
        if request.method == "POST" and parts == ["api", "search"]:
            return self._search(request.json())
        if parts[1:2] != ["app"] or len(parts) < 3:
            return text_answer(404, "Not Found")
        if parts[2] != APP_ID:
            return sw_error(2003, parts[2])
        route = parts[3:]
        if request.method == "GET" and route == []:
            return json_answer(200, self.application)
        if request.method == "POST" and route == ["record"]:
            return self._create(request.json())
        if request.method == "GET" and route[:1] == ["record"] and len(route) == 2:
            return self._read(self.records.get(route[1]), route[1])
        if request.method == "GET" and route[:2] == ["record", "tracking"] and len(route) == 3:
            found = [record for record in self.records.values() if record["name"] == route[2]]
            return self._read(found[0] if found else None, route[2])
        if (
            request.method == "POST"
            and route[:1] == ["record"]
            and route[3:] == ["comment"]
            and len(route) == 4
        ):
            return self._comment(route[1], route[2], request.json())
        return text_answer(405, "Method Not Allowed")

    def _create(self, body: dict[str, Any]) -> Answer:
        if body.get("applicationId") != APP_ID:
            return sw_error(2003, str(body.get("applicationId")))
        values = body.get("values")
        if not isinstance(values, dict):
            return sw_error(5008, "values")
        for field_id, value in values.items():
            definition = self.fields.get(field_id)
            if definition is None:
                return sw_error(3003, field_id)
            if definition["fieldType"] != "text" or definition.get("readOnly"):
                return sw_error(5013, definition["name"])
            if not isinstance(value, str):
                return sw_error(5013, definition["name"])
            limit = definition.get("maxLength")
            if definition.get("lengthType") == "characters" and limit is not None and len(value) > limit:
                return sw_error(5008, f"{definition['name']} holds at most {limit} characters")
            if definition.get("lengthType") == "words" and limit is not None and len(value.split()) > limit:
                return sw_error(5008, f"{definition['name']} holds at most {limit} words")
        for definition in self.application["fields"]:
            if definition.get("required") and not values.get(definition["id"]):
                return sw_error(5010, definition["name"])
        return json_answer(200, self.add(values))

    def add(self, values: dict[str, Any]) -> dict[str, Any]:
        """A new record holding the values (created through the API, or by a person in Swimlane)."""
        number = len(self.records) + 1
        record_id = "a" + secrets.token_hex(8)
        record: dict[str, Any] = {
            "$type": "Core.Models.Record.Record, Core",
            "id": record_id,
            "name": f"{ACRONYM}-{number}",
            "trackingId": number,
            "trackingFull": f"{ACRONYM}-{number}",
            "applicationId": APP_ID,
            "values": dict(values),
            "createdDate": f"2024-05-01T10:00:{number:02d}.000Z",
            "isNew": False,
        }
        self.records[record_id] = record
        return record

    def _read(self, record: dict[str, Any] | None, asked: str) -> Answer:
        return json_answer(200, record) if record is not None else sw_error(3002, asked)

    def _search(self, report: dict[str, Any]) -> Answer:
        self.searches.append(report)
        if report.get("applicationIds") != [APP_ID]:
            return sw_error(2003, str(report.get("applicationIds")))
        matching = list(self.records.values())
        for condition in report.get("filters", []):
            if condition.get("fieldId") not in self.fields:
                return sw_error(3003, str(condition.get("fieldId")))
            if condition.get("filterType") != "equals":
                return sw_error(4001, str(condition.get("filterType")))
            wanted = str(condition.get("value", "")).casefold()
            matching = [
                record
                for record in matching
                if str(record["values"].get(condition["fieldId"], "")).casefold() == wanted
            ]
        size, page = int(report["pageSize"]), int(report["offset"])
        columns = report.get("columns", [])
        results = [
            # Search results carry the asked columns, not the tracking id (the driver reads it apart).
            {
                "id": record["id"],
                "applicationId": APP_ID,
                "values": {name: value for name, value in record["values"].items() if name in columns},
            }
            for record in matching[page * size : (page + 1) * size]
        ]
        return json_answer(200, {"results": {APP_ID: results}, "count": len(matching)})

    def _comment(self, record_id: str, field_id: str, body: dict[str, Any]) -> Answer:
        if record_id not in self.records:
            return sw_error(3002, record_id)
        if self.fields.get(field_id, {}).get("fieldType") != "comments":
            return sw_error(3003, field_id)
        if not isinstance(body.get("message"), str) or not isinstance(body.get("isRichText"), bool):
            return sw_error(5008, "message")
        self.comments.setdefault(record_id, []).append(body)
        return text_answer(200, "")


@pytest.fixture
def swimlane() -> Iterator[tuple[FakeSwimlane, LoopbackServer]]:
    """A fake Swimlane instance on loopback."""
    fake = FakeSwimlane()
    with LoopbackServer(fake) as server:
        yield fake, server


@pytest.fixture
def session() -> Iterator[requests.Session]:
    """A requests session, closed after the test."""
    with requests.Session() as http:
        yield http


def sw_sink(session: requests.Session, base_url: str, token: str = PAT, **options: Any) -> SwimlaneTicketSink:
    fields = {**DEFAULT_FIELDS, **options.pop("fields", {})}
    return SwimlaneTicketSink(session, base_url, token, APP_ID, fields, now=lambda: NOW, **options)


def routes(server: LoopbackServer) -> list[tuple[str, str]]:
    """Every request's method and path, in order."""
    return [(received.method, received.path) for received in server.received]


def test_swimlane_creates_a_record_with_the_mapped_fields(
    swimlane: tuple[FakeSwimlane, LoopbackServer], session: requests.Session
) -> None:
    # Given a Swimlane application and a high-severity malicious case
    fake, server = swimlane
    case = triaged_case(score=8)
    report = report_of(case)

    # When its ticket is opened in Swimlane
    ticket = sw_sink(session, server.base_url).open(case, report)

    # Then the ticket is the record, named by its tracking id, linked to its page
    [record] = fake.records.values()
    assert ticket == Ticket(
        provider="swimlane",
        id=f"{ACRONYM}-1",
        url=f"{server.base_url}/record/{APP_ID}/{record['id']}",
        created_at=NOW,
    )
    # And the application was read, the case looked up, then the record created, each with the token
    assert routes(server) == [
        ("GET", f"/api/app/{APP_ID}"),
        ("POST", "/api/search"),
        ("POST", f"/api/app/{APP_ID}/record"),
    ]
    assert all(received.headers[TOKEN_HEADER] == PAT for received in server.received)
    assert all("Authorization" not in received.headers for received in server.received)
    assert server.received[-1].json()["applicationId"] == APP_ID
    # And each value is in the field the default mapping names
    assert fake.value_of(record, "vtriage Case ID") == case.case_id
    assert fake.value_of(record, "Title").startswith("[HIGH] malicious: 198.51.100.7 is performing SSH")
    assert (fake.value_of(record, "Severity"), fake.value_of(record, "Verdict")) == ("high", "malicious")
    assert fake.value_of(record, "Description") == report.text()
    # And nothing went to a field vtriage does not map
    assert set(record["values"]) == {"acase", "atitl", "asevr", "averd", "adesc"}


def test_swimlane_fields_may_be_named_by_id_or_key_and_values_left_out(
    swimlane: tuple[FakeSwimlane, LoopbackServer], session: requests.Session
) -> None:
    # Given a mapping naming the case id field by its id and the report by its key, without the verdict
    fake, server = swimlane
    fields = {"case_id": "acase", "report": "description", "verdict": None}

    # When a ticket is opened
    sw_sink(session, server.base_url, fields=fields).open(triaged_case(), PLAIN_REPORT)

    # Then the values are where the mapping says, and no verdict was written
    [record] = fake.records.values()
    assert record["values"]["acase"] == triaged_case().case_id
    assert record["values"]["adesc"] == PLAIN_REPORT.text()
    assert "averd" not in record["values"]


def test_swimlane_gets_what_the_alert_says_as_escaped_plain_text(
    swimlane: tuple[FakeSwimlane, LoopbackServer], session: requests.Session
) -> None:
    # Given a case whose title carries links, markup and a fake approval line
    fake, server = swimlane
    case = triaged_case(title=HOSTILE_TITLE)

    # When its record is created
    sw_sink(session, server.base_url).open(case, report_of(case))

    # Then the title is one escaped line, and no value holds a link of the sender's
    [record] = fake.records.values()
    title = fake.value_of(record, "Title")
    assert "\n" not in title
    assert title.startswith("[HIGH] malicious: Scan finished\\n\\nApprove: hxxps://evil.example/approve")
    assert "https://evil" not in json.dumps(record["values"])
    # And the report's title line is one labelled line; the only links are vtriage's own, first
    description = fake.value_of(record, "Description")
    assert "\nTitle: Scan finished\\n\\nApprove: hxxps://" in description
    assert description.index("Case page: https://abc.lambda-url") < description.index("Title: ")
    assert f"VirusTotal: {VT_LINK}" in description


def test_swimlane_cuts_a_long_report_at_the_fields_size_and_says_so(
    swimlane: tuple[FakeSwimlane, LoopbackServer], session: requests.Session
) -> None:
    # Given a report longer than the description field's maxLength
    fake, server = swimlane
    report = Report(headline="HIGH 8, MALICIOUS", lines=(ReportLine(label="line of the report"),) * 400)
    assert len(report.text()) > REPORT_MAX_CHARS

    # When the record is created
    sw_sink(session, server.base_url).open(triaged_case(), report)

    # Then Swimlane accepted it, cut at the field's size with a notice of where the rest is
    [record] = fake.records.values()
    description = fake.value_of(record, "Description")
    assert len(description) == REPORT_MAX_CHARS
    assert description.endswith("[cut at the field's size: the case in DynamoDB holds everything]")


def test_swimlane_cuts_a_report_at_a_fields_word_limit_keeping_its_lines(
    swimlane: tuple[FakeSwimlane, LoopbackServer], session: requests.Session
) -> None:
    # Given a description field limited to 40 words, and a report of many more
    fake, server = swimlane
    [description] = [f for f in fake.application["fields"] if f["name"] == "Description"]
    description.update(lengthType="words", maxLength=40)
    case = triaged_case()

    # When the record is created
    sw_sink(session, server.base_url).open(case, report_of(case))

    # Then Swimlane accepted it: 40 words, the last saying it was cut, the report's lines kept
    [record] = fake.records.values()
    text = fake.value_of(record, "Description")
    assert len(text.split()) == 40
    assert text.endswith(" [cut]")
    assert report_of(case).text().startswith(text.removesuffix(" [cut]"))
    assert "\n" in text


def test_swimlane_comments_a_repeat_as_plain_text_on_the_records_comments(
    swimlane: tuple[FakeSwimlane, LoopbackServer], session: requests.Session
) -> None:
    # Given a record opened for a case
    fake, server = swimlane
    sink = sw_sink(session, server.base_url)
    ticket = sink.open(triaged_case(), PLAIN_REPORT)

    # When a repeat of the finding is commented on it
    sink.comment(ticket, "Seen again at 2024-05-01T11:00:00Z\nDetails: " + VT_LINK)

    # Then Swimlane holds the comment in the record's comments field, not as rich text
    [record] = fake.records.values()
    assert routes(server)[-1] == ("POST", f"/api/app/{APP_ID}/record/{record['id']}/acomm/comment")
    assert fake.comments[record["id"]] == [
        {
            "message": "Seen again at 2024-05-01T11:00:00Z\nDetails: " + VT_LINK,
            "isRichText": False,
            "createdDate": "2024-05-01T10:00:00Z",
        }
    ]


def test_swimlane_puts_the_approval_links_first_in_the_comment(
    swimlane: tuple[FakeSwimlane, LoopbackServer], session: requests.Session
) -> None:
    # Given a record opened for a case whose action waits for a person
    fake, server = swimlane
    sink = sw_sink(session, server.base_url)
    ticket = sink.open(triaged_case(), PLAIN_REPORT)

    # When the ticket function puts the approval links on it
    sink.comment(ticket, APPROVAL_TEXT, links=APPROVAL_LINKS)

    # Then the plain-text comment starts with the links under vtriage's header, then the text
    [record] = fake.records.values()
    [comment] = fake.comments[record["id"]]
    assert (
        comment["message"]
        == f"{LINKS_HEADER}\nApprove: {APPROVE_URL}\nReject:  {APPROVE_URL}x\n\n{APPROVAL_TEXT}"
    )
    assert comment["isRichText"] is False


def test_swimlane_finds_the_record_by_tracking_id_when_the_ticket_has_no_url(
    swimlane: tuple[FakeSwimlane, LoopbackServer], session: requests.Session
) -> None:
    # Given a ticket stored with its tracking id only
    fake, server = swimlane
    sink = sw_sink(session, server.base_url)
    tracking_id = sink.open(triaged_case(), PLAIN_REPORT).id

    # When it is commented on
    sink.comment(Ticket(provider="swimlane", id=tracking_id, created_at=NOW), "approved by alice")

    # Then the record was read by its tracking id, then commented
    [record] = fake.records.values()
    assert routes(server)[-2:] == [
        ("GET", f"/api/app/{APP_ID}/record/tracking/{tracking_id}"),
        ("POST", f"/api/app/{APP_ID}/record/{record['id']}/acomm/comment"),
    ]
    assert [comment["message"] for comment in fake.comments[record["id"]]] == ["approved by alice"]


def test_swimlane_retry_after_a_lost_create_answer_returns_the_record_instead_of_a_second(
    swimlane: tuple[FakeSwimlane, LoopbackServer], session: requests.Session
) -> None:
    # Given Swimlane that creates the record but whose answer comes after the client's read timeout
    fake, server = swimlane
    sink = sw_sink(session, server.base_url, timeout=(3.05, 0.5))
    server.lose_the_answer_to(lambda request: routes_of(request) == ("POST", f"/api/app/{APP_ID}/record"))
    case = triaged_case()
    with pytest.raises(TransientError, match="Swimlane did not answer in time"):
        sink.open(case, report_of(case))
    assert server.answer_lost.wait(timeout=10)
    [created] = fake.records.values()

    # When the ticket step is retried
    ticket = sink.open(case, report_of(case))

    # Then Swimlane still holds exactly one record, and the retry's ticket is that record
    assert list(fake.records.values()) == [created]
    assert ticket == Ticket(
        provider="swimlane",
        id=created["name"],
        url=f"{server.base_url}/record/{APP_ID}/{created['id']}",
        created_at=NOW,
    )
    # And the retry searched, then read the record found for its tracking id (search results lack it)
    assert routes(server)[-2:] == [
        ("POST", "/api/search"),
        ("GET", f"/api/app/{APP_ID}/record/{created['id']}"),
    ]


def routes_of(request: Received) -> tuple[str, str]:
    """The request's method and path."""
    return request.method, request.path


def test_swimlane_looks_the_case_up_with_an_equals_filter_on_its_case_id_field(
    swimlane: tuple[FakeSwimlane, LoopbackServer], session: requests.Session
) -> None:
    # Given an application and a case
    fake, server = swimlane
    case = triaged_case()

    # When its ticket is opened
    sw_sink(session, server.base_url).open(case, PLAIN_REPORT)

    # Then the search asked the application for the case id in the case id field, one page at a time
    [search] = fake.searches
    assert search["applicationIds"] == [APP_ID]
    assert search["filters"] == [{"fieldId": "acase", "filterType": "equals", "value": case.case_id}]
    assert (search["pageSize"], search["offset"]) == (SEARCH_PAGE_SIZE, 0)


def test_swimlane_pages_past_records_whose_case_id_differs_in_case_to_the_cases_own(
    swimlane: tuple[FakeSwimlane, LoopbackServer], session: requests.Session
) -> None:
    # Given more than a page of records a person made, whose case id field holds the case's id with
    # letters in capitals, then the case's own record
    fake, server = swimlane
    sink = sw_sink(session, server.base_url)
    case = triaged_case()
    letters = [index for index, character in enumerate(case.case_id) if character.isalpha()]
    for index in letters[: SEARCH_PAGE_SIZE + 2]:
        typed = case.case_id[:index] + case.case_id[index].upper() + case.case_id[index + 1 :]
        fake.add({"acase": typed, "atitl": "typed by hand"})
    own = sink.open(case, PLAIN_REPORT)
    assert [search["offset"] for search in fake.searches] == [0, 1]
    fake.searches.clear()

    # When the case's ticket step runs again
    again = sink.open(case, PLAIN_REPORT)

    # Then it read past the first page and found the case's own record, not one of the typed ones
    assert [search["offset"] for search in fake.searches] == [0, 1]
    assert (again.id, again.url) == (own.id, own.url)
    assert own.id == f"{ACRONYM}-{SEARCH_PAGE_SIZE + 3}"
    assert len(fake.records) == SEARCH_PAGE_SIZE + 3


def test_swimlane_never_takes_another_cases_record_for_the_cases_own(
    swimlane: tuple[FakeSwimlane, LoopbackServer], session: requests.Session
) -> None:
    # Given a record already open for one case
    fake, server = swimlane
    sink = sw_sink(session, server.base_url)
    first_case = triaged_case(title="first finding")
    first = sink.open(first_case, PLAIN_REPORT)

    # When another case's ticket is opened, and the first case's ticket step runs again
    other_case_id = make_alert(id="0f9e8d7c6b5a49382716a5b4c3d2e1f0").case_id
    second = sink.open(triaged_case(title="second finding", case_id=other_case_id), PLAIN_REPORT)
    again = sink.open(first_case, PLAIN_REPORT)

    # Then the other case got a record of its own, and the first case kept its one record
    assert second.id != first.id
    assert (again.id, again.url) == (first.id, first.url)
    assert len(fake.records) == 2


def test_swimlane_refusing_the_token_is_a_clear_error_without_it(
    swimlane: tuple[FakeSwimlane, LoopbackServer], session: requests.Session
) -> None:
    # Given a revoked personal access token
    _, server = swimlane
    sink = sw_sink(session, server.base_url, token="pat-revoked-REVOKEDSECRET")

    # When a ticket is opened, Then the error says Swimlane refused the credentials
    with pytest.raises(TicketProviderAuthError) as raised:
        sink.open(triaged_case(), PLAIN_REPORT)
    error = raised.value
    assert isinstance(error, ConfigurationError)
    assert str(error) == "Swimlane refused the request (HTTP 401): Unauthorized"
    # And the token is neither in it nor in the sink's repr
    assert "REVOKEDSECRET" not in str(error)
    assert "REVOKEDSECRET" not in repr(sink)
    assert PAT not in repr(sw_sink(session, server.base_url))


def test_swimlane_rate_limit_is_transient_with_its_retry_after_and_creates_nothing(
    swimlane: tuple[FakeSwimlane, LoopbackServer], session: requests.Session
) -> None:
    # Given a sink that has read the application, then Swimlane rate-limiting the token
    fake, server = swimlane
    sink = sw_sink(session, server.base_url)
    sink.open(triaged_case(title="first finding"), PLAIN_REPORT)
    server.outage = json_answer(
        429, {"ErrorCode": -1, "Argument": "Too many requests"}, {"Retry-After": "20"}
    )
    sent = len(server.received)

    # When another case's ticket is opened, Then a TransientError (what the state machine retries with
    # back-off) says when to come back
    other_case_id = make_alert(id="0f9e8d7c6b5a49382716a5b4c3d2e1f0").case_id
    with pytest.raises(TransientError) as raised:
        sink.open(triaged_case(case_id=other_case_id), PLAIN_REPORT)
    assert type(raised.value) is TransientError
    assert raised.value.retry_after == 20.0
    assert "HTTP 429" in str(raised.value)
    # And the refused lookup stopped it: one request, nothing created without knowing the record exists
    assert routes(server)[sent:] == [("POST", "/api/search")]
    assert len(fake.records) == 1

    # And once the limit is lifted, the retry opens the case's record
    server.outage = None
    assert sink.open(triaged_case(case_id=other_case_id), PLAIN_REPORT).id == f"{ACRONYM}-2"


def test_swimlane_server_error_is_transient(
    swimlane: tuple[FakeSwimlane, LoopbackServer], session: requests.Session
) -> None:
    # Given Swimlane failing, When a ticket is opened, Then the error is transient and nothing is created
    fake, server = swimlane
    server.outage = text_answer(503, "Service Unavailable")
    with pytest.raises(TransientError, match="Swimlane is unavailable \\(HTTP 503\\): Service Unavailable"):
        sw_sink(session, server.base_url).open(triaged_case(), PLAIN_REPORT)
    assert fake.records == {}


def test_swimlane_refusing_a_record_names_its_error_code(
    swimlane: tuple[FakeSwimlane, LoopbackServer], session: requests.Session
) -> None:
    # Given an application where a field vtriage does not write is required
    fake, server = swimlane
    fake.application["fields"].append(text_field("astat", "Status", required=True))

    # When a ticket is opened, Then the error carries Swimlane's error name, code and argument
    with pytest.raises(TicketProviderError) as raised:
        sw_sink(session, server.base_url).open(triaged_case(), PLAIN_REPORT)
    assert raised.value.http_status == 400
    assert str(raised.value) == "Swimlane refused the request (HTTP 400): RequiredFieldMissing (5010): Status"
    assert not isinstance(raised.value, TransientError)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"severity": "Priority"},
            f"SWIMLANE_FIELDS severity: Swimlane application {APP_ID} has no field whose id, key or name is "
            "'Priority'; its fields: 'Tracking Id', 'vtriage Case ID', 'Title'",
        ),
        (
            {"report": "Analyst Notes"},
            f"SWIMLANE_FIELDS report: the field 'Analyst Notes' (arich) of Swimlane application {APP_ID} "
            "is not plain text (rich text renders HTML)",
        ),
        (
            {"title": "raw-alert"},
            f"SWIMLANE_FIELDS title: the field 'Raw Alert' (ajson) of Swimlane application {APP_ID} "
            "is not plain text (it holds JSON)",
        ),
        (
            {"comments": "Description"},
            f"SWIMLANE_FIELDS comments: the field 'Description' (adesc) of Swimlane application {APP_ID} "
            "is a text field, not comments",
        ),
        (
            {"case_id": "Tracking Id"},
            f"SWIMLANE_FIELDS case_id: the field 'Tracking Id' (aTrackingField0001) of Swimlane application "
            f"{APP_ID} is a tracking field, not text",
        ),
    ],
)
def test_a_field_mapping_the_application_cannot_take_stops_before_any_record(
    fields: dict[str, str],
    message: str,
    swimlane: tuple[FakeSwimlane, LoopbackServer],
    session: requests.Session,
) -> None:
    # Given a mapping that names a field the application lacks, or one of the wrong kind
    fake, server = swimlane

    # When a ticket is opened, Then it stops with a configuration error naming the value and the field
    with pytest.raises(ConfigurationError) as raised:
        sw_sink(session, server.base_url, fields=fields).open(triaged_case(), PLAIN_REPORT)
    assert str(raised.value).startswith(message)
    # And only the application's definition was read: nothing searched, nothing created
    assert routes(server) == [("GET", f"/api/app/{APP_ID}")]
    assert fake.records == {}


# --- built from the ticket function's settings and secret -------------------------------------------


def swimlane_settings(**environment: str) -> TicketSettings:
    return TicketSettings.from_environ(
        {
            "AWS_REGION": "us-east-1",
            "CASES_TABLE_NAME": "cases",
            "TICKET_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:tickets",
            "TICKET_PROVIDER": "swimlane",
            "TICKET_SECRET_NAME": "vtriage/swimlane",
            "SWIMLANE_BASE_URL": "https://swimlane.example.com",
            "SWIMLANE_APPLICATION_ID": APP_ID,
            **environment,
        }
    )


def test_the_ticket_function_builds_swimlane_from_its_settings_and_secret(
    swimlane: tuple[FakeSwimlane, LoopbackServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the ticket function configured for Swimlane, the token in its secret, fields by id and key
    fake, server = swimlane
    use_dummy_aws_credentials(monkeypatch, "us-east-1")
    with mock_aws():
        boto3.client("secretsmanager", region_name="us-east-1").create_secret(
            Name="vtriage/swimlane", SecretString=json.dumps({"access_token": PAT})
        )
        settings = swimlane_settings(
            SWIMLANE_BASE_URL=server.base_url, SWIMLANE_FIELDS='{"case_id": "acase", "title": "title"}'
        )

        # When its ticket sink is built and opens a ticket
        sink = ticket_sink(settings)
        ticket = sink.open(triaged_case(), PLAIN_REPORT)

    # Then it is the Swimlane sink, with the token from the secret, and the fields mapped as configured
    assert isinstance(sink, SwimlaneTicketSink)
    assert PAT not in repr(sink)
    assert ticket.provider == "swimlane"
    [record] = fake.records.values()
    assert record["values"]["acase"] == triaged_case().case_id
    assert record["values"]["atitl"].startswith("[HIGH] malicious:")


def test_a_swimlane_secret_without_the_token_names_the_key_it_lacks(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a secret holding a user name and password instead of a personal access token
    use_dummy_aws_credentials(monkeypatch, "us-east-1")
    with mock_aws():
        boto3.client("secretsmanager", region_name="us-east-1").create_secret(
            Name="vtriage/swimlane", SecretString=json.dumps({"username": "u", "password": "p4ssSECRET"})
        )

        # When the sink is built, Then the error names the secret and the key, and no value of it
        with pytest.raises(ConfigurationError) as raised:
            ticket_sink(swimlane_settings())
    assert str(raised.value) == "the secret vtriage/swimlane lacks the key 'access_token' that swimlane needs"
    assert "p4ssSECRET" not in str(raised.value)


# --- the whole pipeline, with tickets in Swimlane -----------------------------------------------------


def test_vtriage_run_opens_the_cases_record_in_swimlane_with_the_hostile_title_escaped() -> None:
    # Given the C&C finding whose title plants approval lines, markup and links, and Swimlane as the
    # ticket provider (the fake on loopback, its token in the ticket secret)
    fake = FakeSwimlane()
    with LoopbackServer(fake) as server:

        def prepare(aws: LocalAws, _: object) -> None:
            seed(aws, INSTANCE)
            aws.client("secretsmanager").create_secret(
                Name="vtriage/tickets", SecretString=json.dumps({"access_token": PAT})
            )

        # When it runs for real
        document, _ = vtriage_run(
            [TITLE_INJECTION],
            prepare=prepare,
            parameters={
                "TicketProvider": "swimlane",
                "TicketSecretName": "vtriage/tickets",
                "SwimlaneBaseUrl": server.base_url,
                "SwimlaneApplicationId": APP_ID,
            },
        )

    # Then the case's ticket is its Swimlane record, holding the case id and the escaped report
    [case] = document["cases"]
    assert case["ticket"]["provider"] == "swimlane"
    [record] = fake.records.values()
    assert case["ticket"]["id"] == record["name"]
    assert fake.value_of(record, "vtriage Case ID") == case["case_id"]
    assert fake.value_of(record, "Title").startswith("[HIGH] malicious: EC2 instance i-0a1b2c3d4e5f67890")
    assert "https://evil" not in json.dumps(record["values"])
    assert "\nTitle: EC2 instance i-0a1b2c3d4e5f67890" in fake.value_of(record, "Description")
