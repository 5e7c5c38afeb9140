"""Sends a rejected record to the dead-letter queue with the reason it was rejected."""

from __future__ import annotations

from typing import Any

from vtriage.adapters.aws_errors import transient_aws_errors

# SQS message attributes cap a value at the message size; a reason is a sentence, keep it short.
MAX_REASON = 1024


class SqsDeadLetterQueue:
    """The alert queue's dead-letter queue, written to directly for records that can never succeed."""

    def __init__(self, client: Any, queue_url: str) -> None:
        self._client = client
        self._queue_url = queue_url

    def send(
        self, message_id: str, body: str, reason: str, *, where: str = "", alert_id: str | None = None
    ) -> None:
        """Park the original body with its reason and the id of the message it came in; for a finding
        refused alone, also its place in the body (`vtriage_where`) and its id when known."""
        attributes = {
            "vtriage_reason": reason[:MAX_REASON],
            "vtriage_message_id": message_id,
            "vtriage_where": where[:MAX_REASON],
            "vtriage_alert_id": (alert_id or "")[:MAX_REASON],
        }
        with transient_aws_errors():
            self._client.send_message(
                QueueUrl=self._queue_url,
                MessageBody=body or "(empty body)",
                # SQS refuses an empty attribute value: those not known are left out.
                MessageAttributes={
                    name: {"DataType": "String", "StringValue": value}
                    for name, value in attributes.items()
                    if value
                },
            )
