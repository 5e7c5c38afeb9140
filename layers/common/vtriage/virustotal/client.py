"""The VirusTotal API v3 client: one GET per IOC, retried with back-off only when retrying can help.

The same code talks to the live API, to a corporate gateway standing in for it, and to the local replay
server: only the base URL differs.
"""

from __future__ import annotations

import base64
import logging
import math
import random
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import requests

from vtriage import __version__
from vtriage.config import DEFAULT_VT_BASE_URL
from vtriage.errors import TransientError
from vtriage.models import Ioc, IocType
from vtriage.virustotal.errors import (
    VirusTotalError,
    VirusTotalNotFoundError,
    VirusTotalUnavailableError,
    error_from_response,
)

logger = logging.getLogger(__name__)

GUI_BASE_URL = "https://www.virustotal.com/gui"

_COLLECTIONS = {
    IocType.FILE: "files",
    IocType.URL: "urls",
    IocType.DOMAIN: "domains",
    IocType.IP: "ip_addresses",
}
_GUI_KINDS = {
    IocType.FILE: "file",
    IocType.URL: "url",
    IocType.DOMAIN: "domain",
    IocType.IP: "ip-address",
}
_REDACTED = "[redacted]"


def url_id(url: str) -> str:
    """The URL identifier VirusTotal accepts in `urls/{id}`: the URL in unpadded URL-safe base64."""
    return base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")


def object_ref(ioc: Ioc) -> tuple[str, str]:
    """The (collection, id) under which VirusTotal keeps the IOC: files|urls|domains|ip_addresses."""
    identifier = url_id(ioc.value) if ioc.type is IocType.URL else ioc.value
    return _COLLECTIONS[ioc.type], identifier


def gui_link(ioc: Ioc, vt_id: str | None = None) -> str:
    """The VirusTotal web page of the IOC, for an analyst to open.

    `vt_id` is the object's own id as VirusTotal returned it; for URLs that is the SHA-256 of the
    canonical URL, which the GUI documents for links, so it is preferred over the base64 form.
    """
    identifier = vt_id or object_ref(ioc)[1]
    return f"{GUI_BASE_URL}/{_GUI_KINDS[ioc.type]}/{urllib.parse.quote(identifier, safe='')}"


class VirusTotalClient:
    """Looks IOCs up in VirusTotal API v3; implements `vtriage.ports.ThreatIntel`.

    Retries 429, 5xx, timeouts and connection errors with exponential back-off and full jitter, honouring
    a `Retry-After` header (seconds), never waiting longer than `backoff_cap` at a time. Never retries
    400, 401, 403 or 404. The API key never appears in an exception message or in a repr.
    """

    def __init__(
        self,
        session: requests.Session,
        api_key: str,
        base_url: str = DEFAULT_VT_BASE_URL,
        *,
        timeout: tuple[float, float] = (3.05, 10.0),
        max_attempts: int = 4,
        backoff_base: float = 0.5,
        backoff_cap: float = 8.0,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if not api_key:
            raise ValueError("a VirusTotal API key is required")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self._session = session
        self._api_key = api_key
        self._base_url = base_url.rstrip("/")
        self._timeout = timeout
        self._max_attempts = max_attempts
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._sleep = sleep
        self._rng = rng or random.Random()  # noqa: S311 -- jitter, not cryptography
        self._lock = threading.Lock()
        self._requests_sent = 0

    def __repr__(self) -> str:
        return f"VirusTotalClient(base_url={self._base_url!r}, max_attempts={self._max_attempts})"

    @property
    def requests_sent(self) -> int:
        """Every HTTP request sent so far, retries included (for stats and metrics)."""
        with self._lock:
            return self._requests_sent

    def lookup(self, ioc: Ioc) -> dict[str, Any] | None:
        """The object's `data` as VirusTotal returns it, or None when VirusTotal has never seen it (404).

        Raises ValueError for an IOC kept as skipped, and a `VirusTotalError` subclass when VirusTotal
        refuses the request or stays unavailable after the last attempt.
        """
        if ioc.skipped_reason:
            raise ValueError(f"{ioc.key} is skipped ({ioc.skipped_reason}) and is never looked up")
        collection, identifier = object_ref(ioc)
        # The id is already canonical; quoting it keeps a hostile value from reaching another path.
        url = f"{self._base_url}/{collection}/{urllib.parse.quote(identifier, safe='')}"
        try:
            return self._get_data(url)
        except VirusTotalNotFoundError:
            return None

    def _get_data(self, url: str) -> dict[str, Any]:
        """GET the URL with retries and return the `data` object of the answer."""
        for attempt in range(1, self._max_attempts + 1):
            retry_after: float | None = None
            try:
                response = self._send(url)
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
                    return self._read_data(response)
                failure = self._error_of(response)
                retry_after = _retry_after_seconds(response.headers.get("Retry-After"))
            if not isinstance(failure, TransientError) or attempt == self._max_attempts:
                raise failure
            delay = self._delay(attempt, retry_after)
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

    def _send(self, url: str) -> requests.Response:
        """Send one GET, counting it."""
        with self._lock:
            self._requests_sent += 1
        return self._session.get(
            url,
            headers={
                "x-apikey": self._api_key,
                "accept": "application/json",
                "user-agent": f"vtriage/{__version__}",
            },
            timeout=self._timeout,
            # A redirect would carry the x-apikey header to wherever it points.
            allow_redirects=False,
        )

    def _read_data(self, response: requests.Response) -> dict[str, Any]:
        """The `data` object of a 200 answer."""
        try:
            document = response.json()
        except ValueError:
            document = None
        data = document.get("data") if isinstance(document, dict) else None
        if not isinstance(data, dict):
            raise VirusTotalError(
                "the answer is not a VirusTotal object: no JSON `data` object in it",
                "InvalidResponseError",
                response.status_code,
            )
        return data

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
