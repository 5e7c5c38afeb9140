"""What a person reads: every value a sender controls, shown on one line after a label vtriage wrote
(the case report built on it, which every ticket provider and the approval request share, is
`vtriage.report`).

A finding's sender chooses its title, ids, resource names, S3 keys and IOC values; VirusTotal's whois
and file names are chosen by whoever registered the domain or submitted the file. Pasted as they are,
a line break lets such text start a line of its own ("Approve: https://..."), a right-to-left override
reverses what follows it, and a reader (a mail client, Jira, Slack) turns a URL in it into a link.
`one_line` is the one escaping every output uses: line breaks, tabs and every other control or format
character become visible escapes (`\\n`, `\\t`, `\\u202e`), URL schemes are defanged (`hxxps://`), and a
long value is cut with a note of how much was left out. Each output then adds its own vendor's
escaping on top (HTML, Slack's `&<>` and code fences, Jira's code marks, ServiceNow's `[code]`).

`shown`, `escaped` and `json_kind` name a sender's value inside vtriage's own messages (a refusal's or a
skipped IOC's reason, a note): escaped as Python writes a string (line breaks, controls, quotes), cut
when long, a list or an object by its kind only.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from typing import Any

# Most characters of one value shown; a whois record or a long S3 key is cut after that.
MAX_SHOWN_CHARS = 300
# Unicode categories shown as escapes: controls, format characters (bidirectional overrides,
# zero-width joiners), line and paragraph separators, surrogates, private use and unassigned.
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})
_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# A scheme a reader would turn into a link, and the `www.` prefix some readers link without one.
_LINKABLE = re.compile(r"\b(h)(tt)(ps?)(:/)|\b(f)(t)(p)(:/)|\b(www)(\.)", re.IGNORECASE)

# The most characters of a sender's value kept on a skipped IOC.
SHOWN_VALUE_LENGTH = 200

# What intake writes in a note when it had to guess an alert's severity (none could be read, or only a
# product's own score), so that every report can say the severity was guessed.
SEVERITY_GUESSED = "severity guessed"


def one_line(value: object, limit: int = MAX_SHOWN_CHARS) -> str:
    """The value as text on one line: line breaks, tabs and other control or format characters escaped
    (`\\n`, `\\t`, `\\u202e`), URL schemes defanged (`hxxps://`, `fxp://`, `www[.]`), and cut after
    `limit` characters with the count of those left out.

    Escaping twice changes nothing (a backslash is kept as it is), so a value escaped when it was read
    (a skipped IOC's) shows the same."""
    text = value if isinstance(value, str) else str(value)
    pieces: list[str] = []
    length = 0
    for position, character in enumerate(text):
        piece = _escaped_character(character)
        if length + len(piece) > limit:
            return _defanged("".join(pieces)) + f"... [{len(text) - position} more characters]"
        pieces.append(piece)
        length += len(piece)
    return _defanged("".join(pieces))


def printable(value: object) -> str:
    """The value as text on one line, its control and format characters escaped as `one_line` writes
    them, but neither defanged nor cut: for vtriage's own lines that quote the operator's values (a URL,
    a path), where a sender's value was escaped by `one_line` when it was put in."""
    text = value if isinstance(value, str) else str(value)
    return "".join(_escaped_character(character) for character in text)


def severity_guessed(notes: Iterable[str]) -> bool:
    """Whether an alert's notes say intake guessed its severity."""
    return any(SEVERITY_GUESSED in note for note in notes)


def json_kind(value: Any) -> str:
    """The JSON type of a decoded value, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def shown(value: Any, limit: int = 80) -> str:
    """A value quoted and escaped for a message, cut when long; a list or an object by its kind only."""
    if isinstance(value, list | dict):
        return json_kind(value)
    text = repr(value[: limit + 1] if isinstance(value, str) else value)
    return text if len(text) <= limit else text[:limit] + "..."


def escaped(value: Any, limit: int = SHOWN_VALUE_LENGTH) -> str:
    """A sender's value as it is kept on a skipped IOC: a string escaped as Python does (line breaks,
    controls, quotes) without its quotes, anything else by its JSON kind or literal; cut when long."""
    if isinstance(value, str):
        text = repr(value[: limit + 1])[1:-1]
    elif isinstance(value, list | dict):
        return f"<{json_kind(value)}>"
    else:
        text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _escaped_character(character: str) -> str:
    if character in _NAMED_ESCAPES:
        return _NAMED_ESCAPES[character]
    if unicodedata.category(character) not in _ESCAPED_CATEGORIES:
        return character
    code = ord(character)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _defanged(text: str) -> str:
    def defang(match: re.Match[str]) -> str:
        if match.group(1):
            return f"{match.group(1)}xx{match.group(3)}{match.group(4)}"
        if match.group(5):
            return f"{match.group(5)}x{match.group(7)}{match.group(8)}"
        return f"{match.group(9)}[.]"

    return _LINKABLE.sub(defang, text)
