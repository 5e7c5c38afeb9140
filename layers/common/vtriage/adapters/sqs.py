"""Sends a rejected record to the dead-letter queue with the reason it was rejected."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from vtriage.adapters.aws_errors import raise_transient

# SQS message attributes cap a value at the message size; a reason is a sentence, keep it short.
MAX_REASON = 1024


class SqsDeadLetterQueue:
    """The alert queue's dead-letter queue, written to directly for records that can never succeed."""

    def __init__(self, client: Any, queue_url: str) -> None:
        self._client = client
        self._queue_url = queue_url

    def send(self, message_id: str, body: str, reason: str) -> None:
        """Park the original body with its reason and the id of the message it came in."""
        try:
            self._client.send_message(
                QueueUrl=self._queue_url,
                MessageBody=body or "(empty body)",
                MessageAttributes={
                    "vtriage_reason": {"DataType": "String", "StringValue": reason[:MAX_REASON]},
                    "vtriage_message_id": {"DataType": "String", "StringValue": message_id},
                },
            )
        except ClientError as error:
            raise_transient(error)
            raise
