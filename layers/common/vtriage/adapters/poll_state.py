"""What the pollers remember, on the guardrails table: each source's cursor ("poll-cursor#<source>", kept
until the stack goes) and each alert it queued ("polled#<source>#<digest of the alert's id>", expired by
the table's TTL). Every write is conditional: the cursor never moves back, and an alert is claimed by one
poll at a time. The template lets each poller's role touch its own source's items only
(`dynamodb:LeadingKeys`)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from vtriage.adapters.aws_errors import error_code, transient_aws_errors
from vtriage.ports import POLL_CLAIM_LEASE, ClaimOutcome

CURSOR_PREFIX = "poll-cursor#"
POLLED_PREFIX = "polled#"
_HELD = "held"
_QUEUED = "queued"
# Stored in one fixed form, so that DynamoDB's string order is the time order.
_CURSOR_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def cursor_key(source: str) -> str:
    """The key of a source's cursor item."""
    return CURSOR_PREFIX + source


def polled_key(source: str, alert_id: str) -> str:
    """The key of a polled alert's item: its id's digest, since a vendor's id may be long or hold any
    character."""
    return f"{POLLED_PREFIX}{source}#{hashlib.sha256(alert_id.encode('utf-8')).hexdigest()}"


class DynamoPollState:
    """`PollState` on the guardrails table."""

    def __init__(self, dynamodb_client: Any, table: str) -> None:
        """Take a boto3 DynamoDB client and the guardrails table."""
        self._dynamodb = dynamodb_client
        self._table = table

    def cursor(self, source: str) -> datetime | None:
        """The source's cursor, or None before its first poll queued anything."""
        with transient_aws_errors():
            item = self._dynamodb.get_item(
                TableName=self._table, Key={"key": {"S": cursor_key(source)}}, ConsistentRead=True
            ).get("Item")
        if not item or "cursor" not in item:
            return None
        return datetime.strptime(item["cursor"]["S"], _CURSOR_FORMAT).replace(tzinfo=UTC)

    def advance(self, source: str, to: datetime) -> None:
        """Move the cursor to `to`, unless it is there or further already."""
        value = to.astimezone(UTC).strftime(_CURSOR_FORMAT)
        with transient_aws_errors():
            try:
                self._dynamodb.put_item(
                    TableName=self._table,
                    Item={"key": {"S": cursor_key(source)}, "cursor": {"S": value}},
                    ConditionExpression="attribute_not_exists(#cursor) OR #cursor < :cursor",
                    ExpressionAttributeNames={"#cursor": "cursor"},
                    ExpressionAttributeValues={":cursor": {"S": value}},
                )
            except ClientError as error:
                if error_code(error) == "ConditionalCheckFailedException":
                    return  # a later cursor is stored already
                raise

    def claim(self, source: str, alert_id: str, now: datetime) -> ClaimOutcome:
        """Hold the alert until `now + POLL_CLAIM_LEASE`, unless queued or held by a live claim."""
        epoch = int(now.timestamp())
        with transient_aws_errors():
            try:
                self._dynamodb.put_item(
                    TableName=self._table,
                    Item={
                        "key": {"S": polled_key(source, alert_id)},
                        "alert_id": {"S": alert_id[:1024]},
                        "state": {"S": _HELD},
                        "expires_at": {"N": str(int((now + POLL_CLAIM_LEASE).timestamp()))},
                    },
                    # A held item expires with its lease, a queued one when it is no longer remembered;
                    # DynamoDB's TTL deletes expired items only within days: until then the condition
                    # treats them as gone.
                    ConditionExpression="attribute_not_exists(#key) OR #expires <= :now",
                    ExpressionAttributeNames={"#key": "key", "#expires": "expires_at"},
                    ExpressionAttributeValues={":now": {"N": str(epoch)}},
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
            except ClientError as error:
                if error_code(error) == "ConditionalCheckFailedException":
                    # What the item held, returned with the refusal (ReturnValuesOnConditionCheckFailure).
                    returned: Any = error.response.get("Item")
                    existing = (
                        returned if isinstance(returned, dict) and returned else self._item(source, alert_id)
                    )
                    return "queued" if existing.get("state", {}).get("S") == _QUEUED else "held"
                raise
        return "claimed"

    def _item(self, source: str, alert_id: str) -> dict[str, Any]:
        with transient_aws_errors():
            item: dict[str, Any] = self._dynamodb.get_item(
                TableName=self._table, Key={"key": {"S": polled_key(source, alert_id)}}, ConsistentRead=True
            ).get("Item", {})
        return item

    def mark_queued(self, source: str, alert_id: str, message_id: str, until: datetime) -> None:
        """Remember the alert as queued, with its message id, until `until` (the item's TTL)."""
        with transient_aws_errors():
            self._dynamodb.update_item(
                TableName=self._table,
                Key={"key": {"S": polled_key(source, alert_id)}},
                UpdateExpression="SET #state = :queued, #message = :message, #expires = :expires",
                ExpressionAttributeNames={
                    "#state": "state",
                    "#message": "message_id",
                    "#expires": "expires_at",
                },
                ExpressionAttributeValues={
                    ":queued": {"S": _QUEUED},
                    ":message": {"S": message_id},
                    ":expires": {"N": str(int(until.timestamp()))},
                },
            )

    def release(self, source: str, alert_id: str) -> None:
        """Delete a held alert's item, so that the next poll claims it again (a queued one stays)."""
        with transient_aws_errors():
            try:
                self._dynamodb.delete_item(
                    TableName=self._table,
                    Key={"key": {"S": polled_key(source, alert_id)}},
                    ConditionExpression="#state = :held",
                    ExpressionAttributeNames={"#state": "state"},
                    ExpressionAttributeValues={":held": {"S": _HELD}},
                )
            except ClientError as error:
                if error_code(error) == "ConditionalCheckFailedException":
                    return
                raise
