"""How AWS client errors map onto the project's named errors."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from contextlib import contextmanager

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


@contextmanager
def transient_aws_errors(unavailable: str = "", *, busy: Collection[str] = ()) -> Iterator[None]:
    """Within the block, a throttling or 5xx ClientError (or one whose code is in `busy`: a service's own
    "try again later") is raised as TransientError, its message `"<unavailable>: <error>"` (the error alone
    when `unavailable` is empty); any other ClientError passes unchanged, for the caller to handle."""
    try:
        yield
    except ClientError as error:
        if is_transient(error) or error_code(error) in busy:
            raise TransientError(f"{unavailable}: {error}" if unavailable else str(error)) from error
        raise
