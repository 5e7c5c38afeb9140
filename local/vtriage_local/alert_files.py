"""Alert files as the queue receives them: the records a file holds, each one message body.

Both commands that take alert files read them here, so that a file means the same to each: `vtriage run`
(the local runner) and `vtriage send` (the operator package, `vtriage_ops`). This module imports nothing
of the local runner's moto stack (an import-linter contract holds it).

A file is checked as it is read, before anything is started: a document the pipeline would refuse whole
(not text, not JSON, nested too deeply, holding a character SQS cannot carry) is one record refused here
with the reason the enrich function and the intake give, so that a run of such files alone needs no
local AWS at all.

A file that is not one JSON document but JSON Lines (every non-empty line a JSON object: a Falcon Event
Streams chunk, an export of alerts one per line) is one record per line, each named after its file and
line (`stream.ndjson line 2`), as a stream's consumer would queue each event on its own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from vtriage.errors import InvalidAlertError
from vtriage.intake.body import decode_body

# The file name that stands for the standard input.
STDIN = "-"
STDIN_SOURCE_ID = "stdin"


class UsageError(Exception):
    """The command line or an input file cannot be used at all (exit status 1)."""


@dataclass
class Delivery:
    """One record as it is handed to the queue."""

    source_id: str
    body: str
    # Why it never enters the queue: the queue could not carry it, or the pipeline would refuse it whole
    # (set when the file is read).
    refused: str | None = None


def read_alert_files(names: list[str], stdin: BinaryIO) -> list[Delivery]:
    """The records of every file named, in order; `-` reads `stdin` (once). A name that is a directory,
    missing or unreadable is a UsageError saying which."""
    return [delivery for _, delivery in read_named_alert_files(names, stdin)]


def read_named_alert_files(names: list[str], stdin: BinaryIO) -> list[tuple[str, Delivery]]:
    """`read_alert_files`, each record beside the name it was read from (for a command that prints
    the file of each record, as `vtriage send` does)."""
    if names.count(STDIN) > 1:
        raise UsageError("- (the standard input) can be read only once")
    deliveries: list[tuple[str, Delivery]] = []
    for name in names:
        read = deliveries_in(stdin.read(), STDIN_SOURCE_ID) if name == STDIN else read_deliveries(Path(name))
        deliveries.extend((name, delivery) for delivery in read)
    return deliveries


def read_deliveries(path: Path) -> list[Delivery]:
    """The records a file holds: each record of an SQS event, or the whole document as one message
    (as EventBridge delivers an event, and as `vtriage send` queues any other alert)."""
    if path.is_dir():
        raise UsageError(f"{path} is a directory: name its files, e.g. {path / '*.json'}")
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"no such file: {path}") from None
    except OSError as error:
        raise UsageError(f"cannot read {path}: {error.strerror}") from None
    return deliveries_in(raw, path.name)


def deliveries_in(raw: bytes, name: str) -> list[Delivery]:
    """The records of a file's content, named after the file (`name`). A content that is not text, not
    JSON or that the pipeline would refuse whole is one record refused, with the reason; the records of
    an SQS event are handed on as they are, for the enrich function to judge, as it does in AWS."""
    try:
        # A byte-order mark belongs to the file, not to the alert.
        text = raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as error:
        return [
            Delivery(
                source_id=name,
                body="",
                refused=f"not UTF-8 text (byte 0x{raw[error.start]:02x} at offset {error.start}): "
                "SQS carries text only",
            )
        ]
    try:
        document = json.loads(text)
    except (json.JSONDecodeError, RecursionError, ValueError):
        lines = _json_lines(text)
        if lines:
            return [
                Delivery(source_id=f"{name} line {number}", body=line, refused=_refusal(line))
                for number, line in lines
            ]
        document = None
    if isinstance(document, dict) and isinstance(document.get("Records"), list):
        records = document["Records"]
        if not records:
            return [Delivery(source_id=name, body=text, refused="an SQS event without records")]
        if all(isinstance(record, dict) and "body" in record for record in records):
            return [
                Delivery(
                    source_id=str(record.get("messageId") or f"{name}#{index}"), body=str(record["body"])
                )
                for index, record in enumerate(records)
            ]
    return [Delivery(source_id=name, body=text, refused=_refusal(text))]


def _json_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) of each non-empty line, when the text is JSON Lines: two or more non-empty
    lines, each a JSON object; none otherwise (the text is then judged as one document)."""
    # Split at line feeds only: a JSON string may hold U+2028, which str.splitlines would split at.
    lines = [(number, line.strip()) for number, line in enumerate(text.split("\n"), start=1) if line.strip()]
    if len(lines) < 2:
        return []
    for _, line in lines:
        if not line.startswith("{"):
            return []
        try:
            if not isinstance(json.loads(line), dict):
                return []
        except (json.JSONDecodeError, RecursionError, ValueError):
            return []
    return lines


def _refusal(text: str) -> str | None:
    """Why the enrich function (and the intake) would refuse this document whole, or None."""
    if not text:
        return "the file is empty, and SQS takes no empty message"
    try:
        decode_body(text)
    except InvalidAlertError as error:
        return error.reason
    return None
