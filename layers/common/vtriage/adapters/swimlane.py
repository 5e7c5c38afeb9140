"""Swimlane tickets: one record per case in a configured application, comments on it for what follows.

Swimlane's REST API, as its Python driver (swimlane/swimlane-python) and Kibana's Swimlane connector
(elastic/kibana, stack_connectors/swimlane) call it:

- Auth: a personal access token in the `Private-Token` header.
- The application: `GET {base}/api/app/{appId}` answers its definition, whose `fields` each have an
  `id`, a `name`, a `key`, a `fieldType` (`text`, `comments`, `valuesList`, ...) and, for text, an
  `inputType` (`text`, `rich`, `json`, ...), `lengthType` (`none`, `characters`, `words`) and
  `maxLength`, and `readOnly`.
- Create: `POST {base}/api/app/{appId}/record` with `{"applicationId", "values": {fieldId: value}}`;
  Swimlane answers the record: `id`, `name` (its tracking id, `SAI-42`), `values`, `createdDate`.
- Read: `GET {base}/api/app/{appId}/record/{recordId}`, or by tracking id
  `GET {base}/api/app/{appId}/record/tracking/{trackingId}`.
- Search: `POST {base}/api/search` with a report: `applicationIds`, `filters` (`fieldId`,
  `filterType` `equals`, `value`), `columns`, `pageSize` and `offset` (the page's number, from 0);
  Swimlane answers `{"results": {appId: [records]}}`, a page shorter than `pageSize` being the last.
- Comment: `POST {base}/api/app/{appId}/record/{recordId}/{commentsFieldId}/comment` with `{"message",
  "isRichText": false, "createdDate"}`; Swimlane answers with no body.
- Errors: `{"ErrorCode": 3002, "Argument": "..."}` (3002 RecordNotFound, 3003 FieldNotFound, ...).

The ticket's id is the record's tracking id and its url `{base}/record/{appId}/{recordId}` (the
record's page, where Kibana's connector links), from which a comment reads the record id back.

Which field holds which value is the field mapping (`SWIMLANE_FIELDS`): each of vtriage's values
(`case_id`, `title`, `severity`, `verdict`, `report`) and `comments` names a field of the application
by its id, key or name. The sink reads the application's definition once (the first ticket of a
container) and checks the mapping against it: every value goes to a writable plain text field (never a
rich text field, which would render a sender's HTML, nor a JSON one), the comments to a comments field.
A mapping that does not fit is a `ConfigurationError` naming the value and the field.

`open` searches the case id field for the case before it creates: the state machine retries the
ticket step after a timeout, and when Swimlane created the record but its answer was lost, creating
again would open a second record for the case. A record counts only when its case id field holds the
case id exactly (the search is not documented to compare text case for case); the search is read page
by page until one does or a page is the last. A failed lookup raises what a failed create would (a
timeout or 5xx is a `TransientError`, 401/403 a configuration error).

Every value is plain text in a plain text field and every comment plain text (`isRichText: false`):
the report is vtriage's own labels around values escaped on their line (`vtriage.display`), the title
one escaped line. A value longer than its field's `maxLength` is cut with a notice (the case id never:
Swimlane refuses it whole).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import requests

from vtriage.adapters.http_tickets import (
    DEFAULT_TIMEOUT,
    HttpTicketClient,
    TicketProviderError,
    json_object,
)
from vtriage.display import one_line
from vtriage.errors import ConfigurationError
from vtriage.models import Case, Ticket
from vtriage.report import Report, ReportLink, comment_text

PROVIDER = "swimlane"
VENDOR = "Swimlane"
TOKEN_HEADER = "Private-Token"  # noqa: S105 (a header name, not a secret)
# The values vtriage writes into a record, then the field that takes comments.
WRITTEN_VALUES = ("case_id", "title", "severity", "verdict", "report")
MAPPED = (*WRITTEN_VALUES, "comments")
REQUIRED = ("case_id", "comments")
SEARCH_PAGE_SIZE = 10
# Pages read before the lookup gives up: a hundred records whose case id field is the case's but for its
# letters' case is no state vtriage would leave a retry to guess in.
MAX_SEARCH_PAGES = 10
MAX_TITLE_CHARS = 255
# Text input types whose value Swimlane renders or validates as something else than plain text.
_NOT_PLAIN = {"rich": "rich text renders HTML", "json": "it holds JSON"}
_SWIMLANE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_RECORD_IN_URL = re.compile(r"/record/([A-Za-z0-9_-]{1,64})/([A-Za-z0-9_-]{1,64})/?$")
_TRACKING_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_ERROR_NAMES = {
    2003: "ApplicationNotFound",
    3000: "DuplicateFieldValue",
    3002: "RecordNotFound",
    3003: "FieldNotFound",
    4001: "BadFilter",
    5008: "ModelValidationError",
    5010: "RequiredFieldMissing",
    5013: "WrongType",
}
_WORD = re.compile(r"\S+")
_CUT_NOTICE = "\n[cut at the field's size: the case in DynamoDB holds everything]"


@dataclass(frozen=True)
class AppField:
    """One field of the application's definition, as far as vtriage writes it."""

    id: str
    name: str
    key: str
    field_type: str
    input_type: str = ""
    length_type: str = "none"
    max_length: int | None = None
    read_only: bool = False

    @classmethod
    def of(cls, definition: dict[str, Any]) -> AppField | None:
        """The field a definition describes, or None when it names no id."""
        field_id = definition.get("id")
        if not isinstance(field_id, str) or not field_id:
            return None
        max_length = definition.get("maxLength")
        return cls(
            id=field_id,
            name=str(definition.get("name") or ""),
            key=str(definition.get("key") or ""),
            field_type=str(definition.get("fieldType") or ""),
            input_type=str(definition.get("inputType") or ""),
            length_type=str(definition.get("lengthType") or "none"),
            max_length=max_length if isinstance(max_length, int) and max_length > 0 else None,
            read_only=definition.get("readOnly") is True,
        )

    def fit(self, text: str) -> str:
        """The text within the field's maxLength (characters or words), cut with a notice."""
        if self.max_length is None:
            return text
        if self.length_type == "words":
            words = list(_WORD.finditer(text))
            if len(words) <= self.max_length:
                return text
            # The text up to its last word kept, lines as they were, and one word saying it was cut.
            kept = words[self.max_length - 2].end() if self.max_length > 1 else 0
            return text[:kept] + " [cut]"
        if self.length_type == "characters" and len(text) > self.max_length:
            if self.max_length <= len(_CUT_NOTICE):
                return text[: self.max_length]
            return text[: self.max_length - len(_CUT_NOTICE)] + _CUT_NOTICE
        return text


@dataclass(frozen=True)
class RecordRef:
    """A record of the application: its id and its tracking id."""

    id: str
    tracking_id: str


@dataclass
class _Mapping:
    """The field mapping resolved against the application's definition, once per sink."""

    values: dict[str, AppField] = field(default_factory=dict)
    comments: AppField | None = None


class SwimlaneTicketSink:
    """Implements `TicketSink` on Swimlane's REST API, one record per case in one application."""

    def __init__(
        self,
        session: requests.Session,
        base_url: str,
        access_token: str,
        application_id: str,
        fields: Mapping[str, str | None],
        *,
        now: Callable[[], datetime],
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
    ) -> None:
        """Take the instance (`https://swimlane.example.com`), a personal access token, the application's
        id, the field mapping (each of `MAPPED` to a field's id, key or name; None leaves a value out) and
        a clock."""
        if not access_token:
            raise ValueError("a Swimlane personal access token is required")
        if not _SWIMLANE_ID.match(application_id):
            raise ValueError("the application id must be a Swimlane id (letters, digits, _ and -)")
        unknown = sorted(set(fields) - set(MAPPED))
        if unknown:
            raise ValueError(f"the field mapping names no value vtriage writes: {', '.join(unknown)}")
        missing = [name for name in REQUIRED if not fields.get(name)]
        if missing:
            raise ValueError(f"the field mapping must name a field for {', '.join(missing)}")
        self._base_url = base_url.rstrip("/")
        self._application_id = application_id
        self._fields = {name: value for name, value in fields.items() if value}
        self._now = now
        self._token = access_token
        self._resolved: _Mapping | None = None
        self._http = HttpTicketClient(
            VENDOR, session, None, read_vendor_message=read_error, timeout=timeout, secrets=[access_token]
        )

    def __repr__(self) -> str:
        return f"SwimlaneTicketSink(base_url={self._base_url!r}, application_id={self._application_id!r})"

    def open(self, case: Case, report: Report) -> Ticket:
        """The case's record: the one whose case id field already holds the case (a retry whose first
        create answer was lost), else a new one holding the report. Named by its tracking id."""
        record = self.find_record(case) or self._create_record(case, report)
        return Ticket(
            provider=PROVIDER, id=record.tracking_id, url=self._record_url(record.id), created_at=self._now()
        )

    def find_record(self, case: Case) -> RecordRef | None:
        """The first record whose case id field holds exactly the case id, or None when there is none."""
        case_field = self._mapping().values["case_id"]
        for page in range(MAX_SEARCH_PAGES):
            response = self._send(
                "POST",
                f"{self._api}/search",
                body={
                    "applicationIds": [self._application_id],
                    "filters": [{"fieldId": case_field.id, "filterType": "equals", "value": case.case_id}],
                    "columns": [case_field.id],
                    "sorts": {},
                    "keywords": "",
                    "pageSize": SEARCH_PAGE_SIZE,
                    "offset": page,
                },
            )
            results = json_object(response).get("results")
            if not isinstance(results, dict):
                raise TicketProviderError(VENDOR, response.status_code, "the search answer holds no results")
            records = results.get(self._application_id, [])
            if not isinstance(records, list):
                raise TicketProviderError(
                    VENDOR, response.status_code, "the search answer holds no record list"
                )
            for found in records:
                record = found if isinstance(found, dict) and isinstance(found.get("values"), dict) else None
                if record is None:
                    record = self._read_record(_record_id(found, response.status_code))
                if record["values"].get(case_field.id) == case.case_id:
                    return self._reference(record)
            if len(records) < SEARCH_PAGE_SIZE:
                return None
        raise TicketProviderError(
            VENDOR,
            None,
            f"the search for case {case.case_id} answered more than {MAX_SEARCH_PAGES * SEARCH_PAGE_SIZE} "
            "records, none of which holds the case id exactly",
        )

    def _create_record(self, case: Case, report: Report) -> RecordRef:
        body = {"applicationId": self._application_id, "values": self.values_for(case, report)}
        response = self._send("POST", f"{self._app_url}/record", body=body)
        return self._reference(json_object(response), response.status_code)

    def comment(self, ticket: Ticket, text: str, links: Sequence[ReportLink] = ()) -> None:
        """Add the text, plain, to the record's comments field, vtriage's links first."""
        record_id = self._record_id_of(ticket)
        comments = self._mapping().comments
        assert comments is not None  # resolving the mapping requires it
        self._send(
            "POST",
            f"{self._app_url}/record/{record_id}/{comments.id}/comment",
            body={
                "message": comment_text(text, links),
                "isRichText": False,
                "createdDate": _rfc3339(self._now()),
            },
        )

    def values_for(self, case: Case, report: Report) -> dict[str, str]:
        """The record's `values` for the case, keyed by the application's field ids."""
        text = {
            "case_id": case.case_id,
            "title": _title(case),
            "severity": case.alert.severity.label,
            "verdict": case.verdict.value,
            "report": report.text(),
        }
        values = {}
        for name, app_field in self._mapping().values.items():
            values[app_field.id] = text[name] if name == "case_id" else app_field.fit(text[name])
        return values

    @property
    def _api(self) -> str:
        return f"{self._base_url}/api"

    @property
    def _app_url(self) -> str:
        return f"{self._api}/app/{self._application_id}"

    def _record_url(self, record_id: str) -> str:
        return f"{self._base_url}/record/{self._application_id}/{record_id}"

    def _send(self, method: str, url: str, *, body: dict[str, Any] | None = None) -> requests.Response:
        data = json.dumps(body, ensure_ascii=False).encode() if body is not None else None
        return self._http.send(method, url, body=data, headers={TOKEN_HEADER: self._token})

    def _read_record(self, record_id: str) -> dict[str, Any]:
        response = self._send("GET", f"{self._app_url}/record/{record_id}")
        record = json_object(response)
        if not isinstance(record.get("values"), dict):
            raise TicketProviderError(VENDOR, response.status_code, f"record {record_id} holds no values")
        return record

    def _reference(self, record: dict[str, Any], status: int | None = None) -> RecordRef:
        """The record's id and tracking id (`name`, or `trackingFull` as the driver reads it)."""
        record_id = record.get("id")
        tracking = record.get("name") or record.get("trackingFull")
        if not isinstance(record_id, str) or not _SWIMLANE_ID.match(record_id):
            raise TicketProviderError(VENDOR, status, "the answer names no record id")
        if not isinstance(tracking, str) or not tracking.strip():
            tracking = None
        if tracking is None:
            # Search results need not carry the tracking id: the record itself does.
            again = self._read_record(record_id)
            tracking = again.get("name") or again.get("trackingFull")
            if not isinstance(tracking, str) or not tracking.strip():
                raise TicketProviderError(VENDOR, status, f"record {record_id} has no tracking id")
        return RecordRef(id=record_id, tracking_id=tracking.strip())

    def _record_id_of(self, ticket: Ticket) -> str:
        """The record's id: from the ticket's url, else looked up by its tracking id."""
        found = _RECORD_IN_URL.search(ticket.url or "")
        if found and found.group(1) == self._application_id:
            return found.group(2)
        if not _TRACKING_ID.match(ticket.id):
            raise TicketProviderError(VENDOR, None, f"{ticket.id!r} is no Swimlane tracking id")
        response = self._send("GET", f"{self._app_url}/record/tracking/{ticket.id}")
        return _record_id(json_object(response), response.status_code)

    def _mapping(self) -> _Mapping:
        """The field mapping, resolved against the application's definition the first time."""
        if self._resolved is None:
            self._resolved = self._resolve()
        return self._resolved

    def _resolve(self) -> _Mapping:
        response = self._send("GET", self._app_url)
        definitions = json_object(response).get("fields")
        if not isinstance(definitions, list):
            raise TicketProviderError(
                VENDOR, response.status_code, "the application's definition holds no fields"
            )
        app_fields = [found for found in map(_field_of, definitions) if found is not None]
        resolved = _Mapping()
        for name, wanted in self._fields.items():
            app_field = self._field_named(app_fields, name, wanted)
            problem = _unfit(name, app_field)
            if problem:
                raise ConfigurationError(
                    f"SWIMLANE_FIELDS {name}: the field {app_field.name!r} ({app_field.id}) of Swimlane "
                    f"application {self._application_id} {problem}"
                )
            if name == "comments":
                resolved.comments = app_field
            else:
                resolved.values[name] = app_field
        return resolved

    def _field_named(self, app_fields: list[AppField], name: str, wanted: str) -> AppField:
        """The field whose id, else key, else name is the mapping's (each unique in an application)."""
        for attribute in ("id", "key", "name"):
            for app_field in app_fields:
                if getattr(app_field, attribute) == wanted:
                    return app_field
        known = ", ".join(repr(app_field.name) for app_field in app_fields[:40])
        raise ConfigurationError(
            f"SWIMLANE_FIELDS {name}: Swimlane application {self._application_id} has no field whose "
            f"id, key or name is {wanted!r}; its fields: {known or 'none'}"
        )


def _field_of(definition: object) -> AppField | None:
    return AppField.of(definition) if isinstance(definition, dict) else None


def _unfit(name: str, app_field: AppField) -> str | None:
    """Why the field cannot take the value, or None when it can."""
    if name == "comments":
        return (
            None
            if app_field.field_type == "comments"
            else f"is a {app_field.field_type or 'typeless'} field, not comments"
        )
    if app_field.field_type != "text":
        return f"is a {app_field.field_type or 'typeless'} field, not text"
    if app_field.input_type in _NOT_PLAIN:
        return f"is not plain text ({_NOT_PLAIN[app_field.input_type]})"
    if app_field.read_only:
        return "is read-only"
    return None


def _record_id(record: object, status: int | None) -> str:
    record_id = record.get("id") if isinstance(record, dict) else None
    if not isinstance(record_id, str) or not _SWIMLANE_ID.match(record_id):
        raise TicketProviderError(VENDOR, status, "the answer names no record id")
    return record_id


def read_error(response: requests.Response) -> str | None:
    """Swimlane's `ErrorCode` (with its name) and `Argument`, in one line."""
    document = json_object(response)
    code = document.get("ErrorCode")
    argument = document.get("Argument")
    parts = []
    if isinstance(code, int | str) and str(code).lstrip("-").isdigit():
        name = _ERROR_NAMES.get(int(code))
        parts.append(f"{name} ({code})" if name else f"error {code}")
    if argument:
        parts.append(str(argument))
    message = document.get("message") or document.get("Message")
    if message:
        parts.append(str(message))
    return ": ".join(parts) or None


def _title(case: Case) -> str:
    """One line of at most 255 characters: severity, verdict and the alert's title, escaped."""
    text = f"[{case.alert.severity.label.upper()}] {case.verdict.value}: {one_line(case.alert.title)}"
    single_line = " ".join(text.split())
    if len(single_line) > MAX_TITLE_CHARS:
        single_line = single_line[: MAX_TITLE_CHARS - 3].rstrip() + "..."
    return single_line


def _rfc3339(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
