"""A message body as a JSON document, refused whole when no part of the pipeline could carry it.

The same check runs at the intake (which answers 400) and in the enrich function (which rejects the
record), so that a body the intake accepts is never refused later for its encoding.
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
# that. Lone surrogates, which JSON's `\uD800` escapes can produce, are among them: UTF-8 cannot encode
# them, so DynamoDB cannot store them.
_REFUSED_CHARACTER = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def decode_body(body: str) -> Any:
    """The JSON document of a message body; InvalidAlertError (field `body`) when it is not JSON, is
    nested deeper than MAX_NESTING, or holds a character SQS, SNS or DynamoDB refuses."""
    refused = _REFUSED_CHARACTER.search(body)
    if refused is not None:
        raise InvalidAlertError(_refused_character(refused, "the body"), field="body")
    try:
        document = json.loads(body)
    except json.JSONDecodeError as error:
        raise InvalidAlertError(not_json(error), field="body") from None
    except RecursionError:
        raise InvalidAlertError(f"nested deeper than {MAX_NESTING} levels", field="body") from None
    except ValueError as error:
        # Python refuses to convert integers of more than 4,300 digits (a guard against quadratic time).
        raise InvalidAlertError(f"not usable JSON: {error}", field="body") from None
    _check_decoded(document)
    return document


def not_json(error: json.JSONDecodeError, *, line: int | None = None) -> str:
    """Why a text that is not JSON is refused: what the parser met, at which line and column (`line`: the
    line of its file the text is, when it is one line of JSON Lines)."""
    # Two of the parser's messages end in "at" ("Unterminated string starting at"): the place follows.
    return f"not JSON ({error.msg.removesuffix(' at')} at line {line or error.lineno}, column {error.colno})"


def _check_decoded(document: Any) -> None:
    """Walk the document without recursion: its depth, and the characters its escapes produced."""
    stack: list[tuple[Any, int, str]] = [(document, 1, "")]
    while stack:
        value, depth, path = stack.pop()
        if isinstance(value, str):
            _check_text(value, path)
            continue
        if not isinstance(value, dict | list):
            continue
        if depth > MAX_NESTING:
            raise InvalidAlertError(f"nested deeper than {MAX_NESTING} levels", field="body")
        if isinstance(value, dict):
            for key, item in value.items():
                where = f"{path}.{key}" if path else str(key)
                _check_text(key, where)
                stack.append((item, depth + 1, where[:200]))
        else:
            stack.extend((item, depth + 1, f"{path}[{index}]"[:200]) for index, item in enumerate(value))


def _check_text(text: str, path: str) -> None:
    refused = _REFUSED_CHARACTER.search(text)
    if refused is not None:
        raise InvalidAlertError(_refused_character(refused, "the value"), field=path or "body")


def _refused_character(match: re.Match[str], what: str) -> str:
    code = ord(match.group())
    kind = "a lone surrogate" if 0xD800 <= code <= 0xDFFF else "a control character"
    return (
        f"{what} holds U+{code:04X} ({kind}) at offset {match.start()}, which SQS, SNS and DynamoDB"
        " do not carry"
    )
