"""The protected tag: which tag on a resource keeps vtriage's hands off it, as every actuator reads it.

People type the key by hand, in a console or a template. `VTriage:Protected`, a stray space before or
after the key or around its colon (`vtriage: protected`) mean the same to them, so they mean the same
here: keys are compared in lower case, without the spaces around them and around their colons. IAM's
`aws:ResourceTag/<key>` matches the key's case loosely too, but not its spaces: the code catches more
than IAM does (README, "What the remediate function may do").

Any value protects, as IAM's `Null` condition on the key holds it: `true`, `false` and an empty value
alike. A key that only contains the protected key (`vtriage:protected-until`, `vtriage:unprotected`) is
another key and protects nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

_SPACE_AROUND_COLONS = re.compile(r"\s*:\s*")


def tag_key_form(key: str) -> str:
    """The key as vtriage compares it: in lower case, without spaces around it or its colons."""
    return _SPACE_AROUND_COLONS.sub(":", key.strip()).casefold()


def is_protected_key(key: str, protected_key: str) -> bool:
    """Whether a tag key is the protected key, however a person typed either."""
    return tag_key_form(key) == tag_key_form(protected_key)


@dataclass(frozen=True)
class ProtectingTag:
    """The tag that protects a resource: its key as the resource carries it, its value, and the key it
    was read as (the configured protected key)."""

    key: str
    value: str
    protected_key: str

    def __str__(self) -> str:
        """`key='value'`; a key typed otherwise than the configured one is quoted, and says what it was
        read as, so that a person sees why it counted."""
        if self.key == self.protected_key:
            return f"{self.key}={self.value!r}"
        return f"{self.key!r}={self.value!r} (read as {self.protected_key})"


def protecting_tag(tags: Iterable[tuple[str, str]], protected_key: str) -> ProtectingTag | None:
    """The first of a resource's tags (key, value) whose key is the protected key (`is_protected_key`);
    None when no tag protects it."""
    for key, value in tags:
        if is_protected_key(key, protected_key):
            return ProtectingTag(key, value, protected_key)
    return None
