"""A message body as a JSON document: refused whole only when no part of the pipeline could carry it.

The same check runs at the intake (which answers 400) and in the enrich function (which rejects the
record), so that a body the intake accepts is never refused later for its encoding.

A body's own text must be what SQS carries. What its `\\u` escapes decode to is a sender's value, and costs
only that value: a control character (an ESC in an attacker's user agent) is kept, since every JSON vtriage
writes escapes it again and every place a person reads it shows it escaped (`vtriage.display`); a lone
surrogate, which UTF-8 cannot encode (so neither DynamoDB nor any API could take the value), and the
noncharacters U+FFFE and U+FFFF become U+FFFD, the replacement character, in that value alone.
"""

from __future__ import annotations

import json
import re
from typing import Any

from vtriage.errors import InvalidAlertError

# Deeper than any detector's finding (GuardDuty's deepest path is about 10 levels): a bound that keeps
# every reader of the document away from Python's recursion limit.
MAX_NESTING = 64

# What SQS carries and SNS publishes is their documented XML character range (tab, line feed, carriage
# return, U+0020-U+D7FF, U+E000-U+FFFD, U+10000-U+10FFFF); refused is its complement, written out: the
# negated class of the allowed ranges costs every cold start about 3 ms to compile, this one a tenth of
# that.
_REFUSED_CHARACTER = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
# What a decoded value may not keep: what UTF-8 cannot encode, and the two noncharacters.
_UNENCODABLE = re.compile("[\ud800-\udfff\ufffe\uffff]")
REPLACEMENT_CHARACTER = "\ufffd"


def decode_body(body: str) -> Any:
    """The JSON document of a message body; InvalidAlertError (field `body`) when it is not JSON, is
    nested deeper than MAX_NESTING, or its text holds a character SQS refuses. A value whose escapes
    decode to a lone surrogate, U+FFFE or U+FFFF has each of them replaced by U+FFFD."""
    refused = _REFUSED_CHARACTER.search(body)
    if refused is not None:
        raise InvalidAlertError(_refused_character(refused), field="body")
    try:
        document = json.loads(body)
    except json.JSONDecodeError as error:
        raise InvalidAlertError(not_json(error), field="body") from None
    except RecursionError:
        raise InvalidAlertError(f"nested deeper than {MAX_NESTING} levels", field="body") from None
    except ValueError as error:
        # Python refuses to convert integers of more than 4,300 digits (a guard against quadratic time).
        raise InvalidAlertError(f"not usable JSON: {error}", field="body") from None
    return _carriable(document)


def not_json(error: json.JSONDecodeError, *, line: int | None = None) -> str:
    """Why a text that is not JSON is refused: what the parser met, at which line and column (`line`: the
    line of its file the text is, when it is one line of JSON Lines)."""
    # Two of the parser's messages end in "at" ("Unterminated string starting at"): the place follows.
    return f"not JSON ({error.msg.removesuffix(' at')} at line {line or error.lineno}, column {error.colno})"


def _carriable(document: Any) -> Any:
    """The document, its depth checked, with every unencodable character of its strings (keys too)
    replaced. Walked without recursion; a container is rebuilt only when one of its keys changes."""
    root: list[Any] = [document]
    stack: list[tuple[list[Any] | dict[Any, Any], Any, int]] = [(root, 0, 1)]
    while stack:
        parent, slot, depth = stack.pop()
        value = parent[slot]
        if isinstance(value, str):
            if _UNENCODABLE.search(value) is not None:
                parent[slot] = _UNENCODABLE.sub(REPLACEMENT_CHARACTER, value)
            continue
        if not isinstance(value, dict | list):
            continue
        if depth > MAX_NESTING:
            raise InvalidAlertError(f"nested deeper than {MAX_NESTING} levels", field="body")
        if isinstance(value, dict):
            if any(_UNENCODABLE.search(key) is not None for key in value):
                value = {_UNENCODABLE.sub(REPLACEMENT_CHARACTER, key): item for key, item in value.items()}
                parent[slot] = value
            stack.extend((value, key, depth + 1) for key in value)
        else:
            stack.extend((value, index, depth + 1) for index in range(len(value)))
    return root[0]


def _refused_character(match: re.Match[str]) -> str:
    code = ord(match.group())
    kind = (
        "a lone surrogate"
        if 0xD800 <= code <= 0xDFFF
        else "a noncharacter"
        if code > 0xFFFD
        else "a control character"
    )
    return f"the body holds U+{code:04X} ({kind}) at offset {match.start()}, which SQS does not carry"
