"""The guardrails' state in DynamoDB (the blast-radius counter and the single-use approvals), and the
Step Functions and SNS adapters of the approval step."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from vtriage.adapters.aws_errors import error_code, raise_transient
from vtriage.approval import ApprovalClaims, Decision
from vtriage.models import Action, Case
from vtriage.ticket import ApprovalLinks

# Items of the guardrails table are keyed "<kind>#<id>".
BLAST_RADIUS_PREFIX = "blast-radius#"
APPROVAL_PREFIX = "approval#"
_PENDING = "pending"
# Subjects of SNS messages stop at 100 characters.
_MAX_SUBJECT = 100
# An hour's counter is kept a day after its hour, for anyone looking at what happened.
_COUNTER_KEPT = timedelta(days=1)
# A decided approval is kept this long after it expires, as a record of who decided what when.
_APPROVAL_KEPT = timedelta(days=7)


class DynamoBlastRadius:
    """The blast-radius cap: at most `max_per_hour` acting actions per clock hour (UTC), every case and
    every concurrent function together. One conditional ADD per action: no read-modify-write race."""

    def __init__(
        self, dynamodb_client: Any, table: str, max_per_hour: int, now: Callable[[], datetime]
    ) -> None:
        """Take a boto3 DynamoDB client, the guardrails table, the cap and a clock."""
        self._dynamodb = dynamodb_client
        self._table = table
        self._max = max_per_hour
        self._now = now

    def acquire(self) -> bool:
        """Take one action from this hour's allowance; False when it is spent."""
        now = self._now()
        hour = now.strftime("%Y-%m-%dT%H")
        try:
            self._dynamodb.update_item(
                TableName=self._table,
                Key={"key": {"S": BLAST_RADIUS_PREFIX + hour}},
                UpdateExpression="ADD #used :one SET #expires = :expires",
                ConditionExpression="attribute_not_exists(#used) OR #used < :max",
                ExpressionAttributeNames={"#used": "used", "#expires": "expires_at"},
                ExpressionAttributeValues={
                    ":one": {"N": "1"},
                    ":max": {"N": str(self._max)},
                    ":expires": {"N": str(int((now + _COUNTER_KEPT).timestamp()))},
                },
            )
        except ClientError as error:
            if error_code(error) == "ConditionalCheckFailedException":
                return False
            raise_transient(error)
            raise
        return True


class DynamoApprovalStore:
    """`ApprovalStore` on the guardrails table: an approval is decided by a conditional write, once."""

    def __init__(self, dynamodb_client: Any, table: str) -> None:
        """Take a boto3 DynamoDB client and the guardrails table."""
        self._dynamodb = dynamodb_client
        self._table = table

    def put_pending(self, claims: ApprovalClaims, task_token: str) -> None:
        """Keep the task token; a retried request for the same approval rewrites it only while pending."""
        try:
            self._dynamodb.put_item(
                TableName=self._table,
                Item={
                    "key": {"S": APPROVAL_PREFIX + claims.approval_id},
                    "state": {"S": _PENDING},
                    "task_token": {"S": task_token},
                    "case_id": {"S": claims.case_id},
                    "action_index": {"N": str(claims.action_index)},
                    "valid_until": {"N": str(claims.expires_at)},
                    "expires_at": {"N": str(claims.expires_at + int(_APPROVAL_KEPT.total_seconds()))},
                },
                ConditionExpression="attribute_not_exists(#key) OR #state = :pending",
                ExpressionAttributeNames={"#key": "key", "#state": "state"},
                ExpressionAttributeValues={":pending": {"S": _PENDING}},
            )
        except ClientError as error:
            if error_code(error) == "ConditionalCheckFailedException":
                return  # already decided: nothing to wait for
            raise_transient(error)
            raise

    def is_pending(self, approval_id: str) -> bool:
        """Whether the approval exists and waits for a decision."""
        try:
            item = self._dynamodb.get_item(
                TableName=self._table,
                Key={"key": {"S": APPROVAL_PREFIX + approval_id}},
                ConsistentRead=True,
            ).get("Item")
        except ClientError as error:
            raise_transient(error)
            raise
        return bool(item) and item.get("state", {}).get("S") == _PENDING

    def decide(self, approval_id: str, decision: Decision, decided_at: datetime) -> str | None:
        """Mark it decided if pending; its task token, or None when decided before or unknown."""
        try:
            response = self._dynamodb.update_item(
                TableName=self._table,
                Key={"key": {"S": APPROVAL_PREFIX + approval_id}},
                UpdateExpression="SET #state = :decision, #decided = :at",
                ConditionExpression="#state = :pending",
                ExpressionAttributeNames={"#state": "state", "#decided": "decided_at"},
                ExpressionAttributeValues={
                    ":decision": {"S": decision.value},
                    ":pending": {"S": _PENDING},
                    ":at": {"S": decided_at.isoformat()},
                },
                ReturnValues="ALL_NEW",
            )
        except ClientError as error:
            if error_code(error) == "ConditionalCheckFailedException":
                return None
            raise_transient(error)
            raise
        return str(response["Attributes"]["task_token"]["S"])


class StepFunctionsTaskCallback:
    """`TaskCallback` through SendTaskSuccess and SendTaskFailure."""

    # The step no longer waits for this token.
    _GONE_CODES = frozenset({"TaskTimedOut", "TaskDoesNotExist", "InvalidToken"})

    def __init__(self, stepfunctions_client: Any) -> None:
        """Take a boto3 Step Functions client."""
        self._sfn = stepfunctions_client

    def succeed(self, task_token: str, output: dict[str, Any]) -> bool:
        """Resume the step with the output; False when it no longer waits."""
        return self._call(
            lambda: self._sfn.send_task_success(taskToken=task_token, output=json.dumps(output))
        )

    def fail(self, task_token: str, error: str, cause: str) -> bool:
        """Fail the step with the error; False when it no longer waits."""
        return self._call(
            lambda: self._sfn.send_task_failure(taskToken=task_token, error=error, cause=cause[:32768])
        )

    def _call(self, send: Callable[[], Any]) -> bool:
        try:
            send()
        except ClientError as error:
            if error_code(error) in self._GONE_CODES:
                return False
            raise_transient(error)
            raise
        return True


class SnsApprovalNotifier:
    """`ApprovalNotifier` publishing the approval request, with its links, to an SNS topic."""

    def __init__(self, sns_client: Any, topic_arn: str) -> None:
        """Take a boto3 SNS client and the topic people subscribe to (the ticket topic)."""
        self._sns = sns_client
        self._topic_arn = topic_arn

    def notify(self, case: Case, action: Action, links: ApprovalLinks) -> None:
        """Publish a short, readable request: what waits, why, and the two links."""
        subject = f"vtriage approval needed: {action.type.value} {action.target}"
        expires = links.expires_at.isoformat(timespec="minutes") if links.expires_at else "never"
        message = "\n".join(
            [
                f"Case {case.case_id}: {case.alert.title}",
                f"Verdict: {case.verdict.value}; severity {case.alert.severity.label}",
                f"Action waiting for a person: {action.type.value} on {action.target}",
                f"Why: {action.detail or 'the playbook asks for approval'}",
                "",
                f"Approve: {links.approve_url}",
                f"Reject:  {links.reject_url}",
                f"The links work once and expire at {expires}; after that the case is escalated.",
            ]
        )
        try:
            self._sns.publish(
                TopicArn=self._topic_arn,
                Subject=subject[:_MAX_SUBJECT],
                Message=message,
                MessageAttributes={
                    "case_id": {"DataType": "String", "StringValue": case.case_id},
                    "kind": {"DataType": "String", "StringValue": "approval_request"},
                },
            )
        except ClientError as error:
            raise_transient(error)
            raise
