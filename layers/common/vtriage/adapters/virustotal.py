"""The VirusTotal API v3 client: one GET per IOC, retried with back-off only when retrying can help.

The one GET asks for the IOC's most useful relationships in the same call (`?relationships=...`): VirusTotal
returns them as descriptors (type and id) inside the object, with no further request. "Deep context", off by
default, sends more requests per IOC for full related objects (detected URLs with their detections,
communicating files, resolutions with dates); each is counted in `requests_sent`, and one that fails leaves
the primary report intact with a note (`NOTES_KEY`).

The same code talks to the live API, to a corporate gateway standing in for it, and to the local replay
server: only the base URL differs. What VirusTotal's objects and errors are (ids, links, error types, the
trimmed view of an object) lives in `vtriage.virustotal`; this module holds the HTTP.

Every request names vtriage in an `x-tool` header (`X_TOOL`): Google Threat Intelligence, VirusTotal's
enterprise tier, adds its `gti_assessment` to an object only for requests that carry one.
"""

from __future__ import annotations

import json
import logging
import math
import random
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import requests

from vtriage import __version__
from vtriage.errors import TransientError
from vtriage.models import Ioc, IocType
from vtriage.virustotal.errors import (
    ERRORS_BY_CODE,
    VirusTotalError,
    VirusTotalNotFoundError,
    VirusTotalUnavailableError,
)
from vtriage.virustotal.objects import NOTES_KEY, object_ref

if TYPE_CHECKING:
    from vtriage.virustotal.widget import Widget

logger = logging.getLogger(__name__)

_REDACTED = "[redacted]"
_MAX_MESSAGE_CHARS = 500

DEFAULT_RELATIONSHIPS: dict[IocType, tuple[str, ...]] = {
    IocType.FILE: ("contacted_domains", "contacted_ips"),
    IocType.URL: ("last_serving_ip_address", "network_location"),
    IocType.DOMAIN: ("resolutions",),
    IocType.IP: ("resolutions",),
}
"""Relationships asked for in the lookup itself: descriptors only, no extra request."""

DEEP_RELATIONSHIPS: dict[IocType, tuple[str, ...]] = {
    IocType.FILE: ("contacted_urls", "contacted_domains", "contacted_ips"),
    IocType.URL: ("last_serving_ip_address",),
    IocType.DOMAIN: ("urls", "communicating_files", "resolutions"),
    IocType.IP: ("urls", "communicating_files", "resolutions"),
}
"""Relationships fetched as full objects with deep context: one more request each, per IOC found."""


# An attempt is sent only when its read can wait at least this long before the lookup's deadline.
MIN_READ_SECONDS = 1.0


def _x_tool(version: str) -> str:
    """The `x-tool` value for this version, in the form Google Threat Intelligence asks integrations
    for: `org.productName.vMAJOR.MINOR`. vtriage is its own organisation, hence `vtriage.vtriage`."""
    major, minor = [*version.split("."), "0", "0"][:2]
    return f"vtriage.vtriage.v{major}.{minor}"


X_TOOL = _x_tool(__version__)
"""The `x-tool` header of every request (docs/virustotal.md, "Google Threat Intelligence")."""


class VirusTotalClient:
    """Looks IOCs up in VirusTotal API v3; implements `vtriage.ports.ThreatIntel`.

    Retries 429, 5xx, timeouts and connection errors with exponential back-off and full jitter, honouring
    a `Retry-After` header (seconds), never waiting longer than `backoff_cap` at a time. Never retries
    400, 401, 403 or 404. The API key never appears in an exception message or in a repr.

    A lookup given a deadline fits its retry budget to it: each attempt's read timeout is cut to the time
    left, and no attempt is sent, and no back-off waited, that could not end before the deadline. The
    Lambda function passes the end of its invocation (less the time it keeps to store its cases), so
    that however many attempts and however long the timeouts, a lookup never outlasts the function.
    """

    def __init__(
        self,
        session: requests.Session,
        api_key: str,
        base_url: str,
        *,
        timeout: tuple[float, float] = (3.05, 10.0),
        max_attempts: int = 4,
        backoff_base: float = 0.5,
        backoff_cap: float = 8.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        deep_context: bool = False,
        deep_context_limit: int = 10,
        relationships: Mapping[IocType, tuple[str, ...]] | None = None,
        deep_relationships: Mapping[IocType, tuple[str, ...]] | None = None,
    ) -> None:
        """`base_url` is the API's root (`EnrichSettings.vt_base_url`: the live API by default, a gateway
        or the local replay server). `deep_context` sends one more request per relationship of
        `deep_relationships` for each IOC VirusTotal knows, asking for at most `deep_context_limit` related
        objects each; `relationships` are asked for as descriptors in the lookup itself (both default to
        this module's tables)."""
        if not api_key:
            raise ValueError("a VirusTotal API key is required")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if not 1 <= deep_context_limit <= 40:
            raise ValueError("deep_context_limit must be between 1 and 40 (VirusTotal's page size)")
        self._session = session
        self._api_key = api_key
        self._base_url = base_url.rstrip("/")
        self._timeout = timeout
        self._max_attempts = max_attempts
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 -- jitter, not cryptography
        self._lock = threading.Lock()
        self._requests_sent = 0
        self._deep_context = deep_context
        self._deep_context_limit = deep_context_limit
        self._relationships = dict(DEFAULT_RELATIONSHIPS if relationships is None else relationships)
        self._deep_relationships = dict(
            DEEP_RELATIONSHIPS if deep_relationships is None else deep_relationships
        )

    def __repr__(self) -> str:
        return (
            f"VirusTotalClient(base_url={self._base_url!r}, max_attempts={self._max_attempts}, "
            f"deep_context={self._deep_context})"
        )

    @property
    def deep_context(self) -> bool:
        """Whether lookups fetch full related objects, at one more request per relationship."""
        return self._deep_context

    def requests_per_lookup(self, ioc_type: IocType) -> int:
        """The most requests one lookup of this type sends, retries aside: 1, plus one per deep
        relationship with deep context (the quota units a lookup takes)."""
        return 1 + (len(self._deep_relationships.get(ioc_type, ())) if self._deep_context else 0)

    @property
    def requests_sent(self) -> int:
        """Every HTTP request sent so far, retries included (for stats and metrics)."""
        with self._lock:
            return self._requests_sent

    def lookup(self, ioc: Ioc, deadline: float | None = None) -> dict[str, Any] | None:
        """The object's `data` as VirusTotal returns it, or None when VirusTotal has never seen it (404).

        `deadline`: a `clock` instant (`time.monotonic()` by default) that no request or retry runs past.
        Raises ValueError for an IOC kept as skipped, and a `VirusTotalError` subclass when VirusTotal
        refuses the request or stays unavailable after the last attempt the deadline allows.
        """
        if ioc.skipped_reason:
            raise ValueError(f"{ioc.key} is skipped ({ioc.skipped_reason}) and is never looked up")
        collection, identifier = object_ref(ioc)
        # The id is already canonical; quoting it keeps a hostile value from reaching another path.
        object_url = f"{self._base_url}/{collection}/{urllib.parse.quote(identifier, safe='')}"
        wanted = self._relationships.get(ioc.type, ())
        query = "?" + urllib.parse.urlencode({"relationships": ",".join(wanted)}, safe=",") if wanted else ""
        try:
            data = self._get_data(object_url + query, deadline)
        except VirusTotalNotFoundError:
            return None
        if self._deep_context:
            self._add_deep_context(data, object_url, self._deep_relationships.get(ioc.type, ()), deadline)
        return data

    def widget(
        self, query: str, theme: dict[str, str] | None = None, deadline: float | None = None
    ) -> Widget:
        """VT Augment's widget for an observable (a hash, URL, domain or IP, as the IOC's value): the URL
        to frame, valid three days, and the detection ratio (`vtriage.virustotal.widget`). Raises a
        `VirusTotalError` subclass as `lookup` does: 403 `VirusTotalForbiddenError` when the key's
        licence does not include VT Augment, 429 when its quota is spent, `InvalidResponseError` when
        the answer names no widget page of VirusTotal's."""
        # Only the approval function (VT Augment) asks for widgets: the enrich function never loads them.
        from vtriage.virustotal.widget import theme_parameters, widget_of  # noqa: PLC0415

        parameters = urllib.parse.urlencode({"query": query, **theme_parameters(theme or {})})
        return widget_of(self._get_data(f"{self._base_url}/widget/url?{parameters}", deadline))

    def _add_deep_context(
        self, data: dict[str, Any], object_url: str, names: tuple[str, ...], deadline: float | None
    ) -> None:
        """Replace relationship descriptors with full objects, one request per relationship. A failure
        keeps the primary report and what was fetched, with a note; after a failure that retrying could
        not cure (quota, outage) the remaining relationships are not asked for, to spare the quota."""
        relationships = data.setdefault("relationships", {})
        if not isinstance(relationships, dict):
            relationships = data["relationships"] = {}
        notes: list[str] = []
        sent = 0
        for position, name in enumerate(names):
            url = f"{object_url}/{urllib.parse.quote(name, safe='')}?limit={self._deep_context_limit}"
            sent += 1
            try:
                relationships[name] = self._get_document(url, deadline)
            except VirusTotalError as error:
                notes.append(f"deep context: {name} not fetched ({error}); the primary report is kept")
                if isinstance(error, TransientError):
                    skipped = names[position + 1 :]
                    if skipped:
                        notes.append(f"deep context: {', '.join(skipped)} not asked for after that failure")
                    break
        data[NOTES_KEY] = {"deep_requests": sent, "notes": notes}

    def _get_data(self, url: str, deadline: float | None) -> dict[str, Any]:
        """GET the URL with retries and return the `data` object of the answer."""
        data = self._get_document(url, deadline).get("data")
        if not isinstance(data, dict):
            raise VirusTotalError(
                "the answer is not a VirusTotal object: no JSON `data` object in it",
                "InvalidResponseError",
                200,
            )
        return data

    def _get_document(self, url: str, deadline: float | None) -> dict[str, Any]:
        """GET the URL with retries and return the JSON document of a 200 answer that holds `data`."""
        for attempt in range(1, self._max_attempts + 1):
            retry_after: float | None = None
            timeout = self._attempt_timeout(deadline)
            if timeout is None:
                out_of_time = VirusTotalUnavailableError(
                    "not asked: too little time left before the lookup's deadline", "OutOfTime"
                )
                out_of_time.attempts = attempt - 1
                raise out_of_time
            try:
                response = self._send(url, timeout)
            except requests.Timeout as error:
                failure: VirusTotalError = VirusTotalUnavailableError(
                    self._redact(f"no answer from VirusTotal in time: {error}"), "Timeout"
                )
            except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as error:
                failure = VirusTotalUnavailableError(
                    self._redact(f"cannot connect to VirusTotal: {error}"), "ConnectionError"
                )
            except requests.RequestException as error:
                # An invalid base URL or the like: a setting to fix, not worth retrying.
                failure = VirusTotalError(self._redact(f"cannot send the request: {error}"), "RequestError")
            else:
                if response.status_code == 200:
                    return self._read_document(response)
                failure = self._error_of(response)
                retry_after = _retry_after_seconds(response.headers.get("Retry-After"))
            # Said with the failure: "HTTP 500 after 4 attempts" tells an outage from a blip.
            failure.attempts = attempt
            if not isinstance(failure, TransientError) or attempt == self._max_attempts:
                raise failure
            delay = self._delay(attempt, retry_after)
            needed = delay + self._timeout[0] + MIN_READ_SECONDS
            if deadline is not None and self._clock() + needed > deadline:
                # No other attempt could end before the deadline: this failure is the answer.
                raise failure
            logger.warning(
                "VirusTotal %s on %s; retrying in %.2f s (attempt %d of %d)",
                failure.code,
                url,
                delay,
                attempt,
                self._max_attempts,
            )
            self._sleep(delay)
        raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover

    def _attempt_timeout(self, deadline: float | None) -> tuple[float, float] | None:
        """The (connect, read) timeouts of the next attempt, the read cut to the time left before the
        deadline; None when too little is left for an attempt."""
        if deadline is None:
            return self._timeout
        connect, read = self._timeout
        left = deadline - self._clock()
        if left < connect + MIN_READ_SECONDS:
            return None
        return connect, min(read, left - connect)

    def _send(self, url: str, timeout: tuple[float, float]) -> requests.Response:
        """Send one GET, counting it."""
        with self._lock:
            self._requests_sent += 1
        return self._session.get(
            url,
            headers={
                "x-apikey": self._api_key,
                "accept": "application/json",
                "user-agent": f"vtriage/{__version__}",
                "x-tool": X_TOOL,
            },
            timeout=timeout,
            # A redirect would carry the x-apikey header to wherever it points.
            allow_redirects=False,
        )

    def _read_document(self, response: requests.Response) -> dict[str, Any]:
        """The JSON document of a 200 answer; its `data` is an object, or a list for a relationship."""
        try:
            document = response.json()
        except ValueError:
            document = None
        data = document.get("data") if isinstance(document, dict) else None
        if not isinstance(document, dict) or not isinstance(data, dict | list):
            raise VirusTotalError(
                "the answer is not a VirusTotal object: no JSON `data` object in it",
                "InvalidResponseError",
                response.status_code,
            )
        return document

    def _error_of(self, response: requests.Response) -> VirusTotalError:
        """The typed error of a non-200 answer, with the key scrubbed from whatever the server said."""
        if 300 <= response.status_code < 400:
            return VirusTotalError(
                self._redact(f"unexpected redirect to {response.headers.get('Location', '?')}"),
                "UnexpectedRedirectError",
                response.status_code,
            )
        error = error_from_response(response.status_code, response.content)
        return type(error)(self._redact(error.message), self._redact(error.code), error.http_status)

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """How long to wait before the next attempt: Retry-After when given, else full jitter."""
        if retry_after is not None:
            return min(self._backoff_cap, retry_after)
        ceiling = min(self._backoff_cap, self._backoff_base * 2 ** (attempt - 1))
        return self._rng.uniform(0.0, ceiling)

    def _redact(self, text: str) -> str:
        """The text without the API key in it."""
        return text.replace(self._api_key, _REDACTED)


def most_requests_per_lookup(deep_context: bool) -> int:
    """The most requests any lookup sends with the default relationships: what a quota window must
    hold at the least for lookups to run at all."""
    return 1 + (max(len(names) for names in DEEP_RELATIONSHIPS.values()) if deep_context else 0)


def is_retryable_status(http_status: int) -> bool:
    """True for the statuses worth retrying: 429 and every 5xx."""
    return http_status == 429 or http_status >= 500


def error_from_response(status: int, body: str | bytes | None) -> VirusTotalError:
    """The typed error for an error response `{"error": {"code", "message"}}`.

    A documented code gives its own class. An undocumented code, or a body that is not VirusTotal's JSON
    (a gateway's HTML page, an empty body), gives the base class keeping the code, except on 429 and 5xx,
    which give `VirusTotalUnavailableError` so that they stay retryable.
    """
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else (body or "")
    code, message = _read_error(text)
    error_class = ERRORS_BY_CODE.get(code or "")
    if error_class is None:
        error_class = VirusTotalUnavailableError if is_retryable_status(status) else VirusTotalError
    if message is None:
        message = " ".join(text.split())[:_MAX_MESSAGE_CHARS] or "no error message in the response"
    return error_class(message[:_MAX_MESSAGE_CHARS], code or f"HTTP{status}", status)


def _read_error(text: str) -> tuple[str | None, str | None]:
    """VirusTotal's error code and message, or None for what the body does not hold."""
    try:
        document = json.loads(text)
    except ValueError:
        return None, None
    error = document.get("error") if isinstance(document, dict) else None
    if not isinstance(error, dict):
        return None, None
    code = error.get("code")
    message = error.get("message")
    return (
        code if isinstance(code, str) and code else None,
        str(message) if message is not None else None,
    )


def _retry_after_seconds(value: str | None) -> float | None:
    """A Retry-After header given in seconds, or None (absent, an HTTP date, or nonsense)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds
