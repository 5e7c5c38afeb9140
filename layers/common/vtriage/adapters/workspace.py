"""Google Workspace's Alert Center (API v1beta1) as an `AlertSource`: `alerts.list`,
`GET https://alertcenter.googleapis.com/v1beta1/alerts` with `filter` `createTime >= "<time>"`, `orderBy`
`createTime asc`, `pageSize` and `pageToken` (the previous page's `nextPageToken`; none on the last).

It is called through a session that authenticates each request (google-auth's `AuthorizedSession` over a
service account's credentials, delegated to an administrator for the scope `SCOPE`: see
`vtriage.composition.workspace_poller`); google-auth takes the token, renews it before it expires, and
renews it once more when the API answers 401. Then:

- a token Google refuses to issue (delegation not granted for the scope, a disabled key, a subject that
  is no administrator), or a 401 or 403 from the API, raises `WorkspaceAuthError`;
- a 429 or 503 waits as Google asks (`Retry-After`), or backs off, at most `max_wait_seconds` a time and
  `max_retries` times, then raises `TransientError`, as any other 5xx, a timeout or a refused connection;
- any other answer raises `WorkspaceApiError` with the status and Google's `error.message`.

Checked against Google's reference for `alerts.list` and its supported query filter fields.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import requests
from google.auth import exceptions as google_auth_errors

from vtriage.adapters.retry_after import retry_after_seconds
from vtriage.clock import rfc3339_time
from vtriage.errors import ConfigurationError, TransientError, VtriageError
from vtriage.ports import PolledAlert

ALERT_CENTER_URL = "https://alertcenter.googleapis.com"
ALERTS_PATH = "/v1beta1/alerts"
# The one scope the Alert Center API takes; the service account's client id is granted it under
# domain-wide delegation.
SCOPE = "https://www.googleapis.com/auth/apps.alerts"
DEFAULT_TIMEOUT = (3.05, 20.0)
_RETRIED = frozenset({429, 503})
_MAX_MESSAGE = 300


class WorkspaceApiError(VtriageError):
    """The Alert Center refused a request: sending it again unchanged cannot help."""

    def __init__(self, http_status: int, message: str) -> None:
        self.http_status = http_status
        self.message = message
        super().__init__(f"Google Workspace Alert Center refused the request (HTTP {http_status}): {message}")

    def __reduce__(self) -> tuple[Any, ...]:
        # Exceptions pickle through their constructor arguments.
        return (self.__class__, (self.http_status, self.message))


class WorkspaceAuthError(ConfigurationError):
    """Google refused the service account or its delegation: a person must fix the key, the delegation of
    the scope, or the administrator it acts as."""


class WorkspaceAlertSource:
    """Alert Center alerts created since a time, oldest first, page by page (see the module docstring)."""

    def __init__(
        self,
        session: requests.Session,
        *,
        base_url: str = ALERT_CENTER_URL,
        customer_id: str | None = None,
        page_size: int = 100,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        max_retries: int = 3,
        max_wait_seconds: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """`session` authenticates every request (an `AuthorizedSession`); `customer_id` is the Workspace
        account's id without its leading "C" (Google infers it from the administrator when None)."""
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        self._session = session
        self._url = base_url.rstrip("/") + ALERTS_PATH
        self._customer_id = customer_id
        self._page_size = page_size
        self._timeout = timeout
        self._max_retries = max_retries
        self._max_wait = max_wait_seconds
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"WorkspaceAlertSource(url={self._url!r})"

    def alerts_created_since(self, since: datetime) -> Iterator[PolledAlert]:
        """The alerts created at or after `since`, oldest first, page by page."""
        params: dict[str, str | int] = {
            "filter": f'createTime >= "{since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}"',
            "orderBy": "createTime asc",
            "pageSize": self._page_size,
        }
        if self._customer_id:
            params["customerId"] = self._customer_id
        while True:
            document = self._list(params)
            for alert in document.get("alerts") or []:
                if isinstance(alert, dict):
                    alert_id = alert.get("alertId")
                    yield PolledAlert(
                        alert_id=alert_id if isinstance(alert_id, str) else "",
                        created_at=rfc3339_time(alert.get("createTime")),
                        # ASCII, all else escaped: a vendor's text may decode to a lone surrogate or a
                        # noncharacter, which SQS (or UTF-8) cannot take raw; the enrich function decodes it.
                        body=json.dumps(alert),
                    )
            token = document.get("nextPageToken")
            if not isinstance(token, str) or not token:
                return
            params["pageToken"] = token

    def _list(self, params: Mapping[str, str | int]) -> dict[str, Any]:
        waits = 0
        while True:
            response = self._send(params)
            if response.status_code in _RETRIED and waits < self._max_retries:
                waits += 1
                asked = retry_after_seconds(response.headers.get("Retry-After"))
                wait = asked if asked is not None else float(2 ** (waits - 1))
                self._sleep(max(0.0, min(wait, self._max_wait)))
                continue
            return self._answer(response)

    def _send(self, params: Mapping[str, str | int]) -> requests.Response:
        try:
            return self._session.request(
                "GET", self._url, params=params, timeout=self._timeout, allow_redirects=False
            )
        except google_auth_errors.RefreshError as error:
            raise WorkspaceAuthError(
                f"Google refused the service account a token for the Alert Center: {_line(str(error))}. "
                f"Check the key in the secret, that domain-wide delegation grants its client id the scope "
                f"{SCOPE}, and that the delegated subject is an administrator"
            ) from None
        except google_auth_errors.TransportError as error:
            raise TransientError(f"cannot reach Google's token endpoint ({type(error).__name__})") from None
        except requests.Timeout as error:
            raise TransientError(
                f"the Alert Center did not answer in time ({type(error).__name__})"
            ) from None
        except requests.ConnectionError as error:
            raise TransientError(f"cannot connect to the Alert Center ({type(error).__name__})") from None
        except requests.RequestException as error:
            raise WorkspaceApiError(0, f"cannot send the request ({type(error).__name__})") from None

    def _answer(self, response: requests.Response) -> dict[str, Any]:
        status = response.status_code
        if 200 <= status < 300:
            try:
                document = response.json()
            except ValueError:
                raise WorkspaceApiError(status, "alerts.list answered something other than JSON") from None
            if not isinstance(document, dict):
                raise WorkspaceApiError(status, "alerts.list answered JSON that is not an object")
            return document
        said = _said(response)
        if status in _RETRIED or status >= 500:
            raise TransientError(
                f"the Alert Center is unavailable (HTTP {status}) after {self._max_retries} waits: {said}",
                retry_after=retry_after_seconds(response.headers.get("Retry-After")),
            )
        if status in (401, 403):
            raise WorkspaceAuthError(
                f"the Alert Center refused alerts.list (HTTP {status}): {said}. The service account's "
                f"delegation needs the scope {SCOPE}, and its subject must be an administrator"
            )
        raise WorkspaceApiError(status, f"alerts.list: {said}")


def _said(response: requests.Response) -> str:
    """Google's `error.message`, else the body, on one short line."""
    try:
        document = response.json()
    except ValueError:
        document = None
    error = document.get("error") if isinstance(document, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    return _line(str(message) if message else response.text or response.reason or "no message")


def _line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= _MAX_MESSAGE else line[: _MAX_MESSAGE - 3] + "..."
