"""Queues a pushed alert on the pushed-alert queue, where the enrich function picks it up."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vtriage.adapters.aws_errors import transient_aws_errors


class SqsAlertQueue:
    """The pushed-alert queue, written to by the intake function only."""

    def __init__(self, client: Any, queue_url: str) -> None:
        self._client = client
        self._queue_url = queue_url

    def send(self, body: str, attributes: Mapping[str, str]) -> str:
        """Queue the body unchanged, with these string message attributes (who sent it); return SQS's
        message id. Throttling raises TransientError."""
        with transient_aws_errors():
            response = self._client.send_message(
                QueueUrl=self._queue_url,
                MessageBody=body,
                MessageAttributes={
                    name: {"DataType": "String", "StringValue": value} for name, value in attributes.items()
                },
            )
        return str(response["MessageId"])
