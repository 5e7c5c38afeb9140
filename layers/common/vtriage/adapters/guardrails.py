"""The guardrails' state in DynamoDB (the blast-radius counter and the single-use approvals), and the
Step Functions and SNS adapters of the approval step."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from vtriage.adapters.aws_errors import error_code, transient_aws_errors
from vtriage.adapters.sns import subject_line
from vtriage.approval_links import ApprovalClaims, Approver, Decision
from vtriage.models import Action, Case
from vtriage.ports import CLAIM_LEASE
from vtriage.report import Report

# Items of the guardrails table are keyed "<kind>#<id>".
BLAST_RADIUS_PREFIX = "blast-radius#"
APPROVAL_PREFIX = "approval#"
_PENDING = "pending"
# Held by one request while it passes the decision on to the waiting step.
_DECIDING = "deciding"
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
        if self._max <= 0:
            # The condition below lets the hour's first action through whatever the cap (no counter
            # yet): a cap of 0 must give none.
            return False
        now = self._now()
        hour = now.strftime("%Y-%m-%dT%H")
        with transient_aws_errors():
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
                raise
        return True


class DynamoApprovalStore:
    """`ApprovalStore` on the guardrails table. An approval's item goes from `pending` to `deciding`
    (held by one request for a lease, with the decision and who made it) to the decision itself
    (`approve` or `reject`), each step a conditional write; `deciding` goes back to `pending` when the
    decision could not be passed on, or is taken again once its lease has passed."""

    def __init__(self, dynamodb_client: Any, table: str) -> None:
        """Take a boto3 DynamoDB client and the guardrails table."""
        self._dynamodb = dynamodb_client
        self._table = table

    def put_pending(self, claims: ApprovalClaims, task_token: str) -> None:
        """Keep the task token; a retried request for the same approval rewrites it only while pending."""
        with transient_aws_errors():
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
                    return  # already decided, or being decided: nothing to wait for
                raise

    def is_pending(self, approval_id: str, now: datetime) -> bool:
        """Whether the approval exists and waits for a decision (a lapsed hold waits again)."""
        item = self.item(approval_id)
        if not item:
            return False
        state = item.get("state", {}).get("S")
        held_until = float(item.get("held_until", {}).get("N", "0"))
        return state == _PENDING or (state == _DECIDING and held_until < now.timestamp())

    def item(self, approval_id: str) -> dict[str, Any] | None:
        """The approval's item as DynamoDB holds it (for operators and tests), or None."""
        with transient_aws_errors():
            item: dict[str, Any] | None = self._dynamodb.get_item(
                TableName=self._table,
                Key={"key": {"S": APPROVAL_PREFIX + approval_id}},
                ConsistentRead=True,
            ).get("Item")
        return item

    def claim(self, approval_id: str, decision: Decision, approver: Approver, at: datetime) -> str | None:
        """Hold the approval if pending (or held by a request whose lease has passed), recording the
        decision and who made it; its task token, or None."""
        values: dict[str, Any] = {
            ":deciding": {"S": _DECIDING},
            ":pending": {"S": _PENDING},
            ":decision": {"S": decision.value},
            ":at": {"S": at.isoformat()},
            ":now": {"N": str(int(at.timestamp()))},
            ":until": {"N": str(int((at + CLAIM_LEASE).timestamp()))},
            ":ip": {"S": approver.source_ip or ""},
            ":agent": {"S": (approver.user_agent or "")[:1024]},
        }
        with transient_aws_errors():
            try:
                response = self._dynamodb.update_item(
                    TableName=self._table,
                    Key={"key": {"S": APPROVAL_PREFIX + approval_id}},
                    UpdateExpression=(
                        "SET #state = :deciding, #decision = :decision, #decided = :at, #until = :until, "
                        "#ip = :ip, #agent = :agent"
                    ),
                    ConditionExpression="#state = :pending OR (#state = :deciding AND #until < :now)",
                    ExpressionAttributeNames={
                        "#state": "state",
                        "#decision": "decision",
                        "#decided": "decided_at",
                        "#until": "held_until",
                        "#ip": "decided_by_source_ip",
                        "#agent": "decided_by_user_agent",
                    },
                    ExpressionAttributeValues=values,
                    ReturnValues="ALL_NEW",
                )
            except ClientError as error:
                if error_code(error) == "ConditionalCheckFailedException":
                    return None
                raise
        return str(response["Attributes"]["task_token"]["S"])

    def release(self, approval_id: str) -> None:
        """Let a held approval wait again."""
        self._move(approval_id, "SET #state = :pending REMOVE #until", {":pending": {"S": _PENDING}})

    def settle(self, approval_id: str) -> None:
        """Mark a held approval decided as its holder decided."""
        self._move(approval_id, "SET #state = #decision REMOVE #until", {})

    def _move(self, approval_id: str, update: str, values: dict[str, Any]) -> None:
        names = {"#state": "state", "#until": "held_until"}
        if "#decision" in update:
            names["#decision"] = "decision"
        with transient_aws_errors():
            try:
                self._dynamodb.update_item(
                    TableName=self._table,
                    Key={"key": {"S": APPROVAL_PREFIX + approval_id}},
                    UpdateExpression=update,
                    ConditionExpression="#state = :deciding",
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues={":deciding": {"S": _DECIDING}, **values},
                )
            except ClientError as error:
                if error_code(error) == "ConditionalCheckFailedException":
                    return  # no longer held: its lease passed and another request took it
                raise


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
        with transient_aws_errors():
            try:
                send()
            except ClientError as error:
                if error_code(error) in self._GONE_CODES:
                    return False
                raise
        return True


class SnsApprovalNotifier:
    """`ApprovalNotifier` publishing the approval request, with its links, to the approvals topic."""

    def __init__(self, sns_client: Any, topic_arn: str) -> None:
        """Take a boto3 SNS client and the topic approvers subscribe to."""
        self._sns = sns_client
        self._topic_arn = topic_arn

    def notify(self, case: Case, action: Action, request: Report) -> None:
        """Publish the request as plain text, under a subject SNS accepts whatever the target's name: the
        request's headline (the action in words) and the target."""
        with transient_aws_errors():
            self._sns.publish(
                TopicArn=self._topic_arn,
                Subject=subject_line(f"vtriage {request.headline}: ", action.target),
                Message=request.text(),
                MessageAttributes={
                    "case_id": {"DataType": "String", "StringValue": case.case_id},
                    "kind": {"DataType": "String", "StringValue": "approval_request"},
                },
            )
