"""Public suffixes, from the snapshot of the Public Suffix List shipped in `vtriage/data/`.

A domain worth a VirusTotal lookup ends in a real public suffix and has at least one label more: a
registrable name (`evil.co.uk`) or a name under one (`cdn.evil.co.uk`). Only the list's ICANN section
is read: its PRIVATE section names suffixes that companies delegate (`github.io`, `s3.amazonaws.com`),
and a name directly under those is still worth looking up.

The list is read once, on first use, and never fetched at run time: a Lambda function must not depend
on publicsuffix.org answering, and the answer must not change between two deliveries of one finding.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources

_SNAPSHOT = "public_suffix_list.dat"
_ICANN_BEGIN = "// ===BEGIN ICANN DOMAINS==="
_ICANN_END = "// ===END ICANN DOMAINS==="


@dataclass(frozen=True)
class _Rules:
    exact: frozenset[str]
    wildcard_parents: frozenset[str]  # `ck` for the rule `*.ck`
    exceptions: frozenset[str]  # `www.ck` for the rule `!www.ck`
    top_levels: frozenset[str]


def public_suffix(name: str) -> str | None:
    """The public suffix of a canonical (lower-case, ASCII, IDNA) name; None when its top-level domain
    is in no rule of the list.

    The list's algorithm: the longest matching rule wins, an exception rule (`!`) beats a wildcard
    (`*.`), and a known top-level domain with no longer rule is its own suffix.
    """
    rules = _rules()
    labels = name.split(".")
    if labels[-1] not in rules.top_levels:
        return None
    for start in range(len(labels)):
        candidate = ".".join(labels[start:])
        if candidate in rules.exceptions:
            return ".".join(labels[start + 1 :])
        if candidate in rules.exact:
            return candidate
        parent = ".".join(labels[start + 1 :])
        if start + 1 < len(labels) and parent in rules.wildcard_parents:
            return candidate
    return labels[-1]


@functools.cache
def _rules() -> _Rules:
    exact: set[str] = set()
    wildcard_parents: set[str] = set()
    exceptions: set[str] = set()
    in_icann = False
    for raw_line in _snapshot_text().splitlines():
        line = raw_line.strip()
        if line == _ICANN_BEGIN:
            in_icann = True
            continue
        if line == _ICANN_END:
            break
        if not in_icann or not line or line.startswith("//"):
            continue
        rule = _ascii(line.split()[0].lower())
        if rule is None:
            continue
        if rule.startswith("!"):
            exceptions.add(rule[1:])
        elif rule.startswith("*."):
            wildcard_parents.add(rule[2:])
        else:
            exact.add(rule)
    top_levels = {rule.rpartition(".")[2] for rule in (*exact, *wildcard_parents, *exceptions)}
    return _Rules(
        exact=frozenset(exact),
        wildcard_parents=frozenset(wildcard_parents),
        exceptions=frozenset(exceptions),
        top_levels=frozenset(top_levels),
    )


def _ascii(rule: str) -> str | None:
    """The rule with internationalised labels in their IDNA (punycode) form, as canonical names are."""
    if rule.isascii():
        return rule
    prefix = rule[0] if rule[0] in "!*" else ""
    body = rule[1:] if prefix == "!" else rule
    try:
        labels = [
            label if label == "*" else label.encode("idna").decode("ascii") for label in body.split(".")
        ]
    except UnicodeError:
        return None
    return ("!" if prefix == "!" else "") + ".".join(labels)


@functools.cache
def _snapshot_text() -> str:
    return resources.files("vtriage").joinpath("data", _SNAPSHOT).read_text(encoding="utf-8")
