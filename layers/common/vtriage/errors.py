"""Named errors. The state machine routes on these names (a Lambda error's type is its class name)."""

from __future__ import annotations


class VtriageError(Exception):
    """Base of every error vtriage raises on purpose."""


class TransientError(VtriageError):
    """Worth retrying: a dependency was briefly unavailable. Matched by Retry in the state machine."""


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
