"""The approval function, asked by the ticket function to hold one waiting action for a person.

One direct Lambda invocation (`Invoke`, RequestResponse) of the approval function with the request the
state machine's waiting step hands the ticket function: the case, the action's index, the step's task
token, the approval URL and how long the approval waits, and the case's ticket. The approval function
keeps the token, sends the approve and reject links to the approvers, and answers them to this caller
alone: a direct invocation's answer goes into no execution history.

Errors: Lambda's throttling and 5xx (`TooManyRequestsException`, ...) are `TransientError`; so is the
approval function's own `TransientError` (a DynamoDB or SNS outage), read from its error answer
(`FunctionError`, `{"errorType", "errorMessage"}`). Any other error of the function is an
`ApprovalRequestError` naming it, for the waiting step's Catch.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from vtriage.adapters.aws_errors import transient_aws_errors
from vtriage.approval_links import ApprovalLinks
from vtriage.errors import TransientError, VtriageError
from vtriage.models import Ticket

# The approval function's errors worth the waiting step's Retry (vtriage.errors' transient ones).
_TRANSIENT_ERRORS = frozenset({"TransientError", "QuotaExhaustedError"})
# The longest error message of the approval function quoted.
_MAX_MESSAGE_CHARS = 500


class ApprovalRequestError(VtriageError):
    """The approval function could not hold the action for a person (an unknown case or action, a bad
    request, a configuration error): the waiting step's Catch records it on the action."""


class LambdaApprovalRequests:
    """Implements `ApprovalRequests` by invoking the approval function."""

    def __init__(self, lambda_client: Any, function_name: str) -> None:
        """Take a boto3 Lambda client and the approval function's name or ARN."""
        self._lambda = lambda_client
        self._function = function_name

    def __repr__(self) -> str:
        return f"LambdaApprovalRequests(function_name={self._function!r})"

    def request(
        self,
        *,
        case_id: str,
        index: int,
        task_token: str,
        approval_url: str,
        timeout_seconds: int,
        ticket: Ticket | None,
    ) -> ApprovalLinks:
        """The links of the action, once the approval function holds it and has told the approvers."""
        payload = {
            "case_id": case_id,
            "index": index,
            "task_token": task_token,
            "approval_url": approval_url,
            "approval_timeout_seconds": timeout_seconds,
            "ticket": ticket.model_dump(mode="json", exclude={"told"}) if ticket else None,
        }
        with transient_aws_errors(f"the approval function is unavailable for case {case_id}"):
            response = self._lambda.invoke(
                FunctionName=self._function,
                InvocationType="RequestResponse",
                Payload=json.dumps(payload).encode(),
            )
        body = response["Payload"].read()
        if response.get("FunctionError"):
            raise _function_error(body)
        try:
            return ApprovalLinks.model_validate_json(body)
        except ValidationError as error:
            raise ApprovalRequestError(
                f"the approval function's answer holds no approval links ({error.error_count()} errors)"
            ) from None


def _function_error(body: bytes) -> VtriageError:
    """The error the approval function raised, as Lambda reports it."""
    try:
        document = json.loads(body)
    except ValueError:
        document = {}
    if not isinstance(document, dict):
        document = {}
    name = str(document.get("errorType") or "Error")
    message = str(document.get("errorMessage") or "")[:_MAX_MESSAGE_CHARS]
    text = f"the approval function failed: {name}" + (f": {message}" if message else "")
    if name in _TRANSIENT_ERRORS:
        return TransientError(text)
    return ApprovalRequestError(text)
