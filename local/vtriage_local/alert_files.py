"""Alert files as the queue receives them: the records a file holds, each one message body.

Both commands that take alert files read them here, so that a file means the same to each: `vtriage run`
(the local runner) and `vtriage send` (the operator package, `vtriage_ops`). This module imports nothing
of the local runner's moto stack (an import-linter contract holds it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


class UsageError(Exception):
    """The command line or an input file cannot be used at all (exit status 1)."""


@dataclass
class Delivery:
    """One record as it is handed to the queue."""

    source_id: str
    body: str
    # Why it never enters the queue: the queue could not carry it (set when the file is read).
    refused: str | None = None


def read_deliveries(path: Path) -> list[Delivery]:
    """The records a file holds: each record of an SQS event, or the whole document as one message
    (as EventBridge delivers an event, and as `vtriage send` queues any other alert). A file that is not
    text is one record the queue refuses, with the reason."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise UsageError(f"cannot read {path}: {error.strerror}") from None
    try:
        # A byte-order mark belongs to the file, not to the alert.
        text = raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as error:
        return [
            Delivery(
                source_id=path.name,
                body="",
                refused=f"not UTF-8 text (byte 0x{raw[error.start]:02x} at offset {error.start}): "
                "SQS carries text only",
            )
        ]
    try:
        document = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        # Not an SQS event: the enrich function says what is wrong with it.
        return [Delivery(source_id=path.name, body=text)]
    if isinstance(document, dict) and isinstance(document.get("Records"), list):
        records = document["Records"]
        if not records:
            return [Delivery(source_id=path.name, body=text, refused="an SQS event without records")]
        if all(isinstance(record, dict) and "body" in record for record in records):
            return [
                Delivery(
                    source_id=str(record.get("messageId") or f"{path.name}#{index}"), body=str(record["body"])
                )
                for index, record in enumerate(records)
            ]
    return [Delivery(source_id=path.name, body=text)]
