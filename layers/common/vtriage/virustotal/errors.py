"""One typed exception per VirusTotal API v3 error code: what the `ThreatIntel` port raises and enrich
reads. The client (`vtriage.adapters.virustotal`) reads an error response into one of them.

The codes and HTTP statuses are those of https://docs.virustotal.com/reference/errors. Classes are
named `VirusTotal<Code>` so that they never collide with vtriage's own `TransientError`.

Retryable errors (429, 5xx, timeouts, connection failures) also subclass `vtriage.errors.TransientError`;
401 and 403 errors also subclass `vtriage.errors.ConfigurationError`, because only a person fixing the key
or the account can make them go away.
"""

from __future__ import annotations

from typing import Any, ClassVar

from vtriage import errors as vtriage_errors


class VirusTotalError(vtriage_errors.VtriageError):
    """An error answered by VirusTotal (or met on the way to it), with VirusTotal's code and message."""

    default_code: ClassVar[str] = "VirusTotalError"
    default_status: ClassVar[int | None] = None

    def __init__(self, message: str, code: str | None = None, http_status: int | None = None) -> None:
        self.code = code or self.default_code
        self.message = message
        self.http_status = http_status if http_status is not None else self.default_status
        # The requests sent before this answer was given up on (the client sets it after its retries).
        self.attempts = 1
        status = f" (HTTP {self.http_status})" if self.http_status is not None else ""
        super().__init__(f"VirusTotal {self.code}{status}: {message}")

    def __reduce__(self) -> tuple[Any, ...]:
        # Exceptions pickle through their constructor arguments; keep code, status and attempts across
        # the trip.
        return (self.__class__, (self.message, self.code, self.http_status), {"attempts": self.attempts})


class VirusTotalBadRequestError(VirusTotalError):
    """400: the API request is invalid or malformed."""

    default_code = "BadRequestError"
    default_status = 400


class VirusTotalInvalidArgumentError(VirusTotalError):
    """400: some of the provided arguments are incorrect."""

    default_code = "InvalidArgumentError"
    default_status = 400


class VirusTotalNotAvailableYet(VirusTotalError):  # noqa: N818 -- named after VirusTotal's own code
    """400: the resource is not available yet, but will become available later."""

    default_code = "NotAvailableYet"
    default_status = 400


class VirusTotalUnselectiveContentQueryError(VirusTotalError):
    """400: a content search query is not selective enough."""

    default_code = "UnselectiveContentQueryError"
    default_status = 400


class VirusTotalUnsupportedContentQueryError(VirusTotalError):
    """400: unsupported content search query."""

    default_code = "UnsupportedContentQueryError"
    default_status = 400


class VirusTotalAuthenticationRequiredError(VirusTotalError, vtriage_errors.ConfigurationError):
    """401: the request carried no API key."""

    default_code = "AuthenticationRequiredError"
    default_status = 401


class VirusTotalUserNotActiveError(VirusTotalError, vtriage_errors.ConfigurationError):
    """401: the account that owns the key is not active."""

    default_code = "UserNotActiveError"
    default_status = 401


class VirusTotalWrongCredentialsError(VirusTotalError, vtriage_errors.ConfigurationError):
    """401: the API key is wrong."""

    default_code = "WrongCredentialsError"
    default_status = 401


class VirusTotalForbiddenError(VirusTotalError, vtriage_errors.ConfigurationError):
    """403: the key may not perform this operation (for example a premium endpoint on a public key)."""

    default_code = "ForbiddenError"
    default_status = 403


class VirusTotalNotFoundError(VirusTotalError):
    """404: VirusTotal has never seen the object. For a lookup this is a result (`unknown`), not a failure."""

    default_code = "NotFoundError"
    default_status = 404


class VirusTotalAlreadyExistsError(VirusTotalError):
    """409: the resource already exists."""

    default_code = "AlreadyExistsError"
    default_status = 409


class VirusTotalFailedDependencyError(VirusTotalError):
    """424: the request depended on another request and that request failed."""

    default_code = "FailedDependencyError"
    default_status = 424


class VirusTotalQuotaExceededError(VirusTotalError, vtriage_errors.TransientError):
    """429: a minute, daily or monthly quota is used up (the daily one resets at 00:00 UTC)."""

    default_code = "QuotaExceededError"
    default_status = 429


class VirusTotalTooManyRequestsError(VirusTotalError, vtriage_errors.TransientError):
    """429: too many requests."""

    default_code = "TooManyRequestsError"
    default_status = 429


class VirusTotalTransientError(VirusTotalError, vtriage_errors.TransientError):
    """503: a transient server error; retrying might work."""

    default_code = "TransientError"
    default_status = 503


class VirusTotalDeadlineExceededError(VirusTotalError, vtriage_errors.TransientError):
    """504: the operation took too long to complete."""

    default_code = "DeadlineExceededError"
    default_status = 504


class VirusTotalUnavailableError(VirusTotalError, vtriage_errors.TransientError):
    """VirusTotal could not be reached (timeout, connection failure) or answered a server error that
    VirusTotal does not document; worth retrying later."""

    default_code = "UnavailableError"


ERRORS_BY_CODE: dict[str, type[VirusTotalError]] = {
    error_class.default_code: error_class
    for error_class in (
        VirusTotalBadRequestError,
        VirusTotalInvalidArgumentError,
        VirusTotalNotAvailableYet,
        VirusTotalUnselectiveContentQueryError,
        VirusTotalUnsupportedContentQueryError,
        VirusTotalAuthenticationRequiredError,
        VirusTotalUserNotActiveError,
        VirusTotalWrongCredentialsError,
        VirusTotalForbiddenError,
        VirusTotalNotFoundError,
        VirusTotalAlreadyExistsError,
        VirusTotalFailedDependencyError,
        VirusTotalQuotaExceededError,
        VirusTotalTooManyRequestsError,
        VirusTotalTransientError,
        VirusTotalDeadlineExceededError,
    )
}
"""Every error code VirusTotal documents, mapped to its exception class."""
