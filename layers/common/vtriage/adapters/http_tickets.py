"""What the HTTP ticket providers (Jira, ServiceNow, webhook) share: credentials that never print,
one request with a timeout, and the mapping of a vendor's answer onto the project's named errors.

- 2xx: the response.
- 429 and 5xx, timeouts, connection failures: `vtriage.errors.TransientError` itself (the state
  machine's Retry matches that exact name), with the vendor's `Retry-After` in `retry_after`. Nothing
  here sleeps: the caller (Step Functions, or a person) decides when to try again.
- 401 and 403: `TicketProviderAuthError`, also a `ConfigurationError`: only fixing the secret helps.
- any other answer: `TicketProviderError` with the status and what the vendor said.

No message built here ever holds a credential or a URL's path and query (a webhook URL is a secret).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import requests

from vtriage import __version__
from vtriage.adapters.retry_after import retry_after_seconds
from vtriage.errors import ConfigurationError, TransientError, VtriageError

DEFAULT_TIMEOUT = (3.05, 10.0)
"""(connect, read) seconds for every request: well inside the ticket function's Lambda timeout."""
MAX_VENDOR_MESSAGE_CHARS = 500
USER_AGENT = f"vtriage/{__version__}"
_REDACTED = "[redacted]"


class TicketProviderError(VtriageError):
    """A ticket provider refused the request: sending it again unchanged cannot help."""

    def __init__(self, provider: str, http_status: int | None, vendor_message: str) -> None:
        self.provider = provider
        self.http_status = http_status
        self.vendor_message = vendor_message
        status = f" (HTTP {http_status})" if http_status is not None else ""
        super().__init__(f"{provider} refused the request{status}: {vendor_message}")

    def __reduce__(self) -> tuple[Any, ...]:
        # Exceptions pickle through their constructor arguments.
        return (self.__class__, (self.provider, self.http_status, self.vendor_message))


class TicketProviderAuthError(TicketProviderError, ConfigurationError):
    """401 or 403: the credentials are wrong, expired or lack a permission; a person must fix them."""


@dataclass(frozen=True)
class BasicCredentials:
    """A user name (Jira: the account's email) and a password or API token, for HTTP Basic auth."""

    username: str
    password: str = field(repr=False)

    def __post_init__(self) -> None:
        if not self.username or not self.password:
            raise ValueError("both a user name and a password or token are required")


@dataclass(frozen=True)
class BearerToken:
    """An OAuth 2.0 access token, sent as `Authorization: Bearer ...`."""

    token: str = field(repr=False)

    def __post_init__(self) -> None:
        if not self.token:
            raise ValueError("a token is required")


Credentials = BasicCredentials | BearerToken


class HttpTicketClient:
    """Sends one request to a ticket provider and maps its answer (see the module docstring)."""

    def __init__(
        self,
        provider: str,
        session: requests.Session,
        credentials: Credentials | None,
        *,
        read_vendor_message: Callable[[requests.Response], str | None],
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        secrets: Iterable[str] = (),
    ) -> None:
        """`provider` names the vendor in errors; `read_vendor_message` reads its error bodies;
        `secrets` are further values to scrub from any message (a webhook URL, a signing secret)."""
        self.provider = provider
        self._session = session
        self._credentials = credentials
        self._read_vendor_message = read_vendor_message
        self._timeout = timeout
        self._secrets = [value for value in (*_credential_values(credentials), *secrets) if value]

    def __repr__(self) -> str:
        return f"HttpTicketClient(provider={self.provider!r})"

    def send(
        self,
        method: str,
        url: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> requests.Response:
        """Send the request; return a 2xx response, raise a named error for anything else."""
        all_headers = {"Accept": "application/json", "User-Agent": USER_AGENT, **(headers or {})}
        if body is not None:
            all_headers.setdefault("Content-Type", "application/json")
        all_headers.update(self._authorization())
        try:
            response = self._session.request(
                method,
                url,
                data=body,
                headers=all_headers,
                params=params,
                timeout=self._timeout,
                # A redirect would carry the Authorization header to wherever it points.
                allow_redirects=False,
            )
        except requests.Timeout as error:
            # The exception's text holds the URL: name only its kind.
            raise TransientError(f"{self.provider} did not answer in time ({type(error).__name__})") from None
        except requests.ConnectionError as error:
            raise TransientError(f"cannot connect to {self.provider} ({type(error).__name__})") from None
        except requests.RequestException as error:
            raise TicketProviderError(
                self.provider, None, f"cannot send the request ({type(error).__name__})"
            ) from None
        if 200 <= response.status_code < 300:
            return response
        raise self._error_of(response)

    def _authorization(self) -> dict[str, str]:
        if isinstance(self._credentials, BasicCredentials):
            return {"Authorization": f"Basic {_basic_token(self._credentials)}"}
        if isinstance(self._credentials, BearerToken):
            return {"Authorization": f"Bearer {self._credentials.token}"}
        return {}

    def _error_of(self, response: requests.Response) -> VtriageError:
        status = response.status_code
        said = self.redact(self.vendor_message(response))
        if status == 429 or status >= 500:
            retry_after = retry_after_seconds(response.headers.get("Retry-After"))
            wait = f"; it asks to retry after {retry_after:g} s" if retry_after is not None else ""
            return TransientError(
                f"{self.provider} is unavailable (HTTP {status}): {said}{wait}", retry_after=retry_after
            )
        if 300 <= status < 400:
            return TicketProviderError(self.provider, status, "unexpected redirect (not followed)")
        if status in (401, 403):
            return TicketProviderAuthError(self.provider, status, said)
        return TicketProviderError(self.provider, status, said)

    def vendor_message(self, response: requests.Response) -> str:
        """What the vendor said in an error answer, in one line of at most 500 characters."""
        try:
            message = self._read_vendor_message(response)
        except ValueError:
            message = None
        if not message:
            message = response.text or response.reason or "no message in the answer"
        single_line = " ".join(message.split())
        if len(single_line) > MAX_VENDOR_MESSAGE_CHARS:
            single_line = single_line[: MAX_VENDOR_MESSAGE_CHARS - 3] + "..."
        return single_line

    def redact(self, text: str) -> str:
        """The text without any credential or secret in it (a vendor may echo what it was sent)."""
        for secret in self._secrets:
            text = text.replace(secret, _REDACTED)
        return text


def _credential_values(credentials: Credentials | None) -> list[str]:
    if isinstance(credentials, BasicCredentials):
        return [credentials.password, _basic_token(credentials)]
    if isinstance(credentials, BearerToken):
        return [credentials.token]
    return []


def _basic_token(credentials: BasicCredentials) -> str:
    """RFC 7617: base64 of `user:password` in UTF-8."""
    return base64.b64encode(f"{credentials.username}:{credentials.password}".encode()).decode()


def json_object(response: requests.Response) -> dict[str, Any]:
    """The response's JSON object, or an empty dict when it holds none."""
    try:
        document = response.json()
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}
