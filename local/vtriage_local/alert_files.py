"""Alert files as the queue receives them: the records a file holds, each one message body.

Both commands that take alert files read them here, so that a file means the same to each: `vtriage run`
(the local runner) and `vtriage send` (the operator package, `vtriage_ops`). This module imports nothing
of the local runner's moto stack (an import-linter contract holds it).

A file is checked as it is read, before anything is started: a document the pipeline would refuse whole
(not text, not JSON, nested too deeply, holding a character SQS cannot carry) is one record refused here
with the reason the enrich function and the intake give, so that a run of such files alone needs no
local AWS at all.

A file that is not one JSON document but JSON Lines (a Falcon Event Streams chunk, an export of alerts one
per line) is one record per line, each named after its file and line (`stream.ndjson line 2`), as a
stream's consumer would queue each event on its own. It is JSON Lines when at least one of its lines is,
from its first column, a whole JSON object: then each line that is not blank is a record, and a line that
is cut off, not JSON or not UTF-8 is refused alone, its reason giving its place in the file (`not JSON
(Unterminated string starting at line 4, column 812)`), while the other lines are queued. Such a line is
never part of a pretty-printed document: its first line (`{` or `[`) is no whole object, and every line
inside it is indented (by json.dumps, jq and JSON.stringify, and by a formatter that keeps an array's
objects one a line, as OCSF's examples do), so that a document cut off (or otherwise broken) stays one
record, refused with the line and column where it breaks. A file none of whose lines is such an object
(every line cut off, say) is judged the same way, as one document.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from vtriage.errors import InvalidAlertError
from vtriage.intake import DOCUMENT_SHAPES
from vtriage.intake.body import decode_body, not_json

# What a file may hold, as `vtriage run` and `vtriage send` say it in their help (`deliveries_in`).
FILE_CONTENTS = (
    f"Each FILE is an SQS event (each record's body is one message), JSON Lines (each line that is not "
    f"blank is one message, as a Falcon Event Streams chunk), or else one message: {DOCUMENT_SHAPES}"
)

# The file name that stands for the standard input.
STDIN = "-"
STDIN_SOURCE_ID = "stdin"

_UTF8_BOM = b"\xef\xbb\xbf"

# What JSON counts as white space around a value (RFC 8259), the line feed aside: a line holding only these
# is blank, and they are what is trimmed from a line's record (a Windows line end's carriage return).
_JSON_SPACE = b" \t\r"


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
    JSON or that the pipeline would refuse whole is one record refused, with the reason; JSON Lines are a
    record per line, a bad line refused alone; the records of an SQS event are handed on as they are, for
    the enrich function to judge, as it does in AWS."""
    try:
        # A byte-order mark belongs to the file, not to the alert.
        text = raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as error:
        return _json_lines(raw, name) or [
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
        return _json_lines(raw, name) or [Delivery(source_id=name, body=text, refused=_refusal(text))]
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


def _json_lines(raw: bytes, name: str) -> list[Delivery]:
    """A record for each line that is not blank, when the content is JSON Lines (at least one line, from its
    first column, a whole JSON object: see the module's docstring); none otherwise (the content is
    then judged as one document)."""
    deliveries: list[Delivery] = []
    any_object = False
    # Split at line feeds only: a JSON string may hold U+2028, which str.splitlines would split at.
    for number, line in enumerate(raw.removeprefix(_UTF8_BOM).split(b"\n"), start=1):
        body = line.strip(_JSON_SPACE)
        if not body:
            continue
        source_id = f"{name} line {number}"
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as error:
            offset = len(line) - len(line.lstrip(_JSON_SPACE)) + error.start
            deliveries.append(
                Delivery(
                    source_id=source_id,
                    body="",
                    refused=f"not UTF-8 text (byte 0x{body[error.start]:02x} at offset {offset} of line "
                    f"{number}): SQS carries text only",
                )
            )
            continue
        try:
            # The line as it is in the file, so that a column the parser gives is the file's.
            document = json.loads(line.decode("utf-8"))
        except json.JSONDecodeError as error:
            refused: str | None = not_json(error, line=number)
        except (RecursionError, ValueError):
            refused = _refusal(text)
        else:
            any_object = any_object or (line[:1] == b"{" and isinstance(document, dict))
            refused = _refusal(text)
        deliveries.append(Delivery(source_id=source_id, body=text, refused=refused))
    return deliveries if any_object else []


def _refusal(text: str) -> str | None:
    """Why the enrich function (and the intake) would refuse this document whole, or None."""
    if not text:
        return "the file is empty, and SQS takes no empty message"
    try:
        decode_body(text)
    except InvalidAlertError as error:
        return error.reason
    return None
