"""The VirusTotal quota shared by every worker (DynamoDB) and the deferral of the records it refuses (SQS)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from vtriage.adapters.aws_errors import error_code, transient_aws_errors
from vtriage.bounds import SQS_MAX_DELAY_SECONDS, SQS_MAX_VISIBILITY_SECONDS
from vtriage.clock import next_minute, next_utc_midnight
from vtriage.errors import QuotaExhaustedError, TransientError

# A window's item outlives its window by this much, then DynamoDB's TTL removes it.
_MINUTE_ITEM_KEPT = timedelta(hours=1)
_DAY_ITEM_KEPT = timedelta(days=2)
# Two workers taking a unit at the same instant make DynamoDB cancel one transaction with
# TransactionConflict: that one tries again after a short random pause.
_CONFLICT_ATTEMPTS = 8
_CONFLICT_PAUSE_S = 0.02


class DynamoQuotaLimiter:
    """Implements `vtriage.ports.QuotaLimiter` on a table keyed by `window` (S) with a TTL on `expires_at`.

    Each request takes a unit of the current minute (`minute#2026-11-26T12:00`) and one of the current
    UTC day (`day#2026-11-26`) in one transaction of two conditional `ADD used :units`, so that every
    Lambda sharing the table shares the quota, and a minute unit is never spent when the day is
    exhausted. A batch takes the units of all its lookups in one transaction when they fit.
    """

    def __init__(
        self,
        client: Any,
        table_name: str,
        per_minute: int,
        per_day: int,
        now: Callable[[], datetime],
        *,
        pause: Callable[[float], None] = time.sleep,
    ) -> None:
        if per_minute < 1 or per_day < 1:
            raise ValueError("a quota allows at least one request a minute and a day")
        self._client = client
        self._table = table_name
        self._per_minute = per_minute
        self._per_day = per_day
        self._now = now
        self._pause = pause
        self._rng = random.Random()  # noqa: S311 -- jitter, not cryptography

    def acquire(self, units: int = 1) -> None:
        """Take `units` requests from the minute's and the day's quota, all or none, or raise
        QuotaExhaustedError naming the window that has fewer left."""
        if units < 1:
            raise ValueError("a request takes at least one unit of the quota")
        now = self._now().astimezone(UTC)
        minute_ends = next_minute(now)
        day_ends = next_utc_midnight(now)
        if units > self._per_minute:
            raise QuotaExhaustedError(
                f"{units} requests do not fit in the quota of {self._per_minute} a minute",
                minute_ends,
                window="minute",
            )
        if units > self._per_day:
            raise QuotaExhaustedError(
                f"{units} requests do not fit in the daily quota of {self._per_day}", day_ends, window="day"
            )
        day = self._take(f"day#{now:%Y-%m-%d}", units, self._per_day, day_ends + _DAY_ITEM_KEPT)
        minute = self._take(
            f"minute#{now:%Y-%m-%dT%H:%M}", units, self._per_minute, minute_ends + _MINUTE_ITEM_KEPT
        )
        for attempt in range(1, _CONFLICT_ATTEMPTS + 1):
            try:
                with transient_aws_errors():
                    self._client.transact_write_items(TransactItems=[day, minute])
            except ClientError as error:
                if error_code(error) != "TransactionCanceledException":
                    raise
                reasons = [reason.get("Code") for reason in error.response.get("CancellationReasons", [])]
                spent = "is spent" if units == 1 else f"has fewer than {units} requests left"
                if reasons and reasons[0] == "ConditionalCheckFailed":
                    raise QuotaExhaustedError(
                        f"the VirusTotal daily quota ({self._per_day} requests) {spent} until 00:00 UTC",
                        day_ends,
                        window="day",
                    ) from None
                if len(reasons) > 1 and reasons[1] == "ConditionalCheckFailed":
                    raise QuotaExhaustedError(
                        f"the VirusTotal quota of {self._per_minute} requests a minute {spent}",
                        minute_ends,
                        window="minute",
                    ) from None
                if attempt == _CONFLICT_ATTEMPTS:
                    raise TransientError(f"the quota table stayed busy: {reasons}") from error
                self._pause(self._rng.uniform(0, _CONFLICT_PAUSE_S * attempt))
            else:
                return

    def _take(self, window: str, units: int, limit: int, expires: datetime) -> dict[str, Any]:
        return {
            "Update": {
                "TableName": self._table,
                "Key": {"window": {"S": window}},
                "UpdateExpression": "SET expires_at = :expires ADD used :units",
                # `units` ≤ limit is checked before: a window never yet used always has room.
                "ConditionExpression": "attribute_not_exists(used) OR used <= :room",
                "ExpressionAttributeValues": {
                    ":units": {"N": str(units)},
                    ":room": {"N": str(limit - units)},
                    ":expires": {"N": str(int(expires.timestamp()))},
                },
            }
        }

    def used(self, window: str) -> int:
        """How many requests a window has taken (`minute#...` or `day#...`), for tests and operators."""
        response = self._client.get_item(
            TableName=self._table, Key={"window": {"S": window}}, ConsistentRead=True
        )
        return int(response.get("Item", {}).get("used", {}).get("N", "0"))


class SqsMessageDeferral:
    """Implements `vtriage.ports.MessageDeferral` on an SQS queue."""

    def __init__(self, client: Any, queue_url: str) -> None:
        self._client = client
        self._queue_url = queue_url

    def defer(self, receipt_handle: str, seconds: int) -> None:
        """Hide the received message for `seconds` (capped at SQS's 12 h)."""
        with transient_aws_errors():
            self._client.change_message_visibility(
                QueueUrl=self._queue_url,
                ReceiptHandle=receipt_handle,
                VisibilityTimeout=max(0, min(seconds, SQS_MAX_VISIBILITY_SECONDS)),
            )

    def requeue(self, body: str, attributes: Mapping[str, str], delay_seconds: int) -> None:
        """Queue a fresh copy of the message with its string attributes, delayed (capped at 15 min)."""
        with transient_aws_errors():
            self._client.send_message(
                QueueUrl=self._queue_url,
                MessageBody=body,
                DelaySeconds=max(0, min(delay_seconds, SQS_MAX_DELAY_SECONDS)),
                MessageAttributes={
                    name: {"DataType": "String", "StringValue": value} for name, value in attributes.items()
                },
            )
