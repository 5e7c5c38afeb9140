"""How AWS client errors map onto the project's named errors."""

from __future__ import annotations

from botocore.exceptions import ClientError

from vtriage.errors import TransientError

# Error codes AWS documents as throttling or server-side trouble: worth a retry with back-off.
TRANSIENT_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "ProvisionedThroughputExceededException",
        "InternalServerError",
        "InternalServerErrorException",
        "InternalFailure",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "TransactionInProgressException",
    }
)


def error_code(error: ClientError) -> str:
    """The error's AWS code (`ThrottlingException`, `NoSuchKey`, ...), or "" when it has none."""
    return str(error.response.get("Error", {}).get("Code", ""))


def is_transient(error: ClientError) -> bool:
    """True for throttling and 5xx errors."""
    code = error_code(error)
    status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return code in TRANSIENT_CODES or status >= 500


def raise_transient(error: ClientError) -> None:
    """Re-raise a throttling or 5xx error as TransientError; return for any other, for the caller to raise."""
    if is_transient(error):
        raise TransientError(str(error)) from error
