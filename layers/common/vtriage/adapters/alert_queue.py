"""Queues an alert for the enrich function: a pushed one on the pushed-alert queue (the intake function), a
polled one on the detector queue (the pollers)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vtriage.adapters.aws_errors import transient_aws_errors


class SqsAlertQueue:
    """A queue the enrich function reads: the pushed-alert queue, which only the intake function writes to,
    or the detector queue, which the pollers write to beside the detector rules."""

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
