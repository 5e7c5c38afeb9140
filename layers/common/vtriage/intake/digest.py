"""The digest of a finding's content: what tells two deliveries under one finding id and version apart.

A detector's finding id and version (`updatedAt`, or its count) say which finding a delivery claims to
be; only its content says what it is. The digest is taken over the finding itself, never over the
envelope it came in (an EventBridge event, get-findings output), so that the same finding read from
either gives the same digest; keys are folded to lower case, so that GuardDuty's camelCase (events) and
PascalCase (the API) spellings of one finding agree as well.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from typing import Any

# JSON integers beyond this are not exact as floats: they are kept as written.
_EXACT_INTEGER = 2**53


def content_digest(finding: Any) -> str:
    """The SHA-256 (hex) of the finding's canonical JSON: keys folded to lower case (kept as written
    where two keys of one object fold alike) and sorted, numbers with an integral value written as
    integers, no insignificant white space. Written without recursion: no nesting depth can make it
    fail."""
    digest = hashlib.sha256()
    pending: list[Any] = [finding]
    while pending:
        item = pending.pop()
        if isinstance(item, _Text):
            digest.update(item.encode())
        elif isinstance(item, dict):
            folds = Counter(str(key).casefold() for key in item)
            members = sorted(
                (
                    (str(key).casefold() if folds[str(key).casefold()] == 1 else str(key), value)
                    for key, value in item.items()
                ),
                key=lambda member: member[0],
            )
            pending.append(_Text("}"))
            for index, (key, value) in reversed(list(enumerate(members))):
                pending.append(value)
                pending.append(_Text(("," if index else "") + _scalar(key) + ":"))
            pending.append(_Text("{"))
        elif isinstance(item, list):
            pending.append(_Text("]"))
            for index, value in reversed(list(enumerate(item))):
                pending.append(value)
                if index:
                    pending.append(_Text(","))
            pending.append(_Text("["))
        else:
            digest.update(_scalar(item).encode())
    return digest.hexdigest()


class _Text(str):
    """Canonical JSON text to hash as is (punctuation and keys), not a value to encode."""

    __slots__ = ()


def _scalar(value: Any) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < _EXACT_INTEGER:
        value = int(value)
    return json.dumps(value, ensure_ascii=True)
