"""How the adapters translate AWS client errors: throttling and 5xx become TransientError (the state
machine's Retry and the enrich function's retry act on it), every other error passes unchanged."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from vtriage.adapters.aws_errors import error_code, transient_aws_errors
from vtriage.errors import TransientError


def _client_error(code: str, status: int = 400) -> ClientError:
    response = {
        "Error": {"Code": code, "Message": "as AWS says it"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "PutItem")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("code", "status"),
    [("ThrottlingException", 400), ("ProvisionedThroughputExceededException", 400), ("Anything", 503)],
)
def test_throttling_and_server_errors_become_transient(code: str, status: int) -> None:
    # Given an AWS call that fails with a throttling code or a 5xx status
    error = _client_error(code, status)

    # When it fails within the block, Then it is raised as TransientError, naming the error and its cause
    with pytest.raises(TransientError) as raised, transient_aws_errors():
        raise error
    assert code in str(raised.value)
    assert raised.value.__cause__ is error


def test_the_message_says_what_was_unavailable() -> None:
    # Given an adapter that says what it was doing
    # When DynamoDB throttles it, Then the TransientError's message starts with that, then the error
    unavailable = "the table is unavailable"
    with (
        pytest.raises(TransientError, match=rf"^{unavailable}: .*ThrottlingException"),
        transient_aws_errors(unavailable),
    ):
        raise _client_error("ThrottlingException")


def test_a_service_busy_code_is_transient_too() -> None:
    # Given a service whose own "busy" code is not a throttling code AWS-wide
    # When that code comes back within a block that names it, Then it is transient
    busy = {"WAFUnavailableEntityException"}
    with (
        pytest.raises(TransientError, match="WAFUnavailableEntityException"),
        transient_aws_errors(busy=busy),
    ):
        raise _client_error("WAFUnavailableEntityException")
    # And elsewhere it is an error like any other
    with pytest.raises(ClientError), transient_aws_errors():
        raise _client_error("WAFUnavailableEntityException")


def test_any_other_client_error_passes_unchanged() -> None:
    # Given an error the caller handles itself (a failed condition) and one nobody expects
    for code in ("ConditionalCheckFailedException", "AccessDeniedException"):
        error = _client_error(code)

        # When it fails within the block, Then the same ClientError reaches the caller, its code readable
        with pytest.raises(ClientError) as raised, transient_aws_errors("unavailable"):
            raise error
        assert raised.value is error
        assert error_code(raised.value) == code


def test_an_error_without_a_code_has_an_empty_code() -> None:
    # Given a ClientError whose response carries no error (as botocore builds for some failures)
    error = ClientError({}, "GetItem")

    # When its code is read, Then it is empty, not a KeyError
    assert error_code(error) == ""
