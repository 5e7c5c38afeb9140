"""Named errors. The state machine routes on these names (a Lambda error's type is its class name)."""

from __future__ import annotations

from datetime import datetime
from typing import Any


class VtriageError(Exception):
    """Base of every error vtriage raises on purpose."""


class TransientError(VtriageError):
    """Worth retrying: a dependency was briefly unavailable. Matched by Retry in the state machine.

    `retry_after` is how many seconds the dependency asked us to wait (an HTTP Retry-After), if it said.
    """

    def __init__(self, *args: object, retry_after: float | None = None) -> None:
        super().__init__(*args)
        self.retry_after = retry_after


class ConfigurationError(VtriageError):
    """A setting is missing or invalid: retrying cannot help, a person must fix the deployment."""


class InvalidAlertError(VtriageError):
    """A record that can never become a case, with a reason that names the field at fault."""

    def __init__(self, reason: str, field: str | None = None) -> None:
        self.reason = reason
        self.field = field
        super().__init__(f"{field}: {reason}" if field else reason)


class CaseNotFoundError(VtriageError):
    """The state machine named a case that DynamoDB does not hold."""


class RemediationError(VtriageError):
    """A response action failed in a way a person must look at: the state machine opens a ticket."""


class MemberRoleError(RemediationError):
    """A member account cannot be reached: its role is missing, does not trust this deployment, or wants
    another external id; or the account is not a listed member. The action fails with the account and
    role named, and the case goes to a ticket."""


class QuotaExhaustedError(TransientError):
    """The VirusTotal quota shared by every worker is spent until `retry_at` (timezone-aware, UTC).

    The record that met it is deferred until then, not failed: `window` says which quota refused it,
    "minute" or "day" (the daily one reopens at 00:00 UTC).
    """

    def __init__(self, message: str, retry_at: datetime, window: str = "minute") -> None:
        self.retry_at = retry_at
        self.window = window
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        # Exceptions pickle through their constructor arguments; keep retry_at and window across the trip.
        return (self.__class__, (str(self), self.retry_at, self.window))
