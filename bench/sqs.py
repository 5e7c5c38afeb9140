"""The SQS event Lambda gives the enrich function for a batch of alerts."""

from __future__ import annotations

import json
from typing import Any


def sqs_event(alerts: list[dict[str, Any]]) -> dict[str, Any]:
    """One SQS record per alert, from the template's alert queue, received once."""
    return {
        "Records": [
            {
                "messageId": f"bench-{index}-{alert['id']}",
                "receiptHandle": f"handle-{index}",
                "body": json.dumps(alert),
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:AlertQueue",
                "awsRegion": "us-east-1",
            }
            for index, alert in enumerate(alerts)
        ]
    }
