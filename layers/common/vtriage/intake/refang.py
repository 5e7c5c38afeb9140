"""Refanging and free-text extraction: strict, small, and only a source of candidates.

Analysts and detectors write indicators "defanged" so that nobody clicks them: `hxxps://evil[.]com`,
`23.129.64[.]215`, `evil(dot)com`, `http[:]//...`, `user[at]evil.com`. `refang_dots` undoes the bracketed
dot spellings, `refang_scheme` a defanged scheme and `://`, and `candidates_in_text` finds the IP
addresses, domains, URLs and hashes in a piece of prose. Nothing here decides whether a value is safe:
every candidate still goes through `canonical_ioc`, which refuses or skips it, and a refused free-text
candidate is dropped rather than failing the alert (prose is not a field the detector vouches for).

Why not a library. The runtime may depend only on boto3, powertools, requests and pydantic, and the
known bugs of the usual libraries are ones a triage pipeline must not have:

- iocextract: `hxxps` was refanged to `http` (issue #49), so the URL looked up was not the one in the
  alert; a defanged IP came back as a URL with `http://` prepended (issues #61, #77); the URL regexes
  backtracked catastrophically on long paths (#52, fixed by #56), a denial of service on hostile text;
  URL boundaries swallowed trailing punctuation and backticks (#81) and, looking backwards from `[.]`,
  started URLs at arbitrary characters (#2).
- ioc-fanger: refanged inside ordinary words (`shotput` became `shttput`, issue #25), because its
  patterns had no word boundaries.
- ioc-finder: AV signature names such as `W64/BURNTCIGAR.CA!tr` became the domain `burntcigar.ca`
  (issue #279, closed as won't-fix), and URLs kept a closing `)` or `'),` (issue #130).

What this module does instead:

- every pattern is linear: tokens are split on whitespace and quoting characters first, and each token
  is matched whole (`fullmatch`) by patterns without nested quantifiers;
- a defanged scheme is refanged only at the start of a token and only before `://` (or a defanged
  `://`), so `hxxps` becomes `https` and never `http`, and no word is ever rewritten;
- the dot spellings are bracketed (`[.]`, `(.)`, `{.}`, `[dot]`, `(dot)`, `{dot}`): a bare word `dot` is
  never a dot;
- an IP address stays an IP address and a URL a URL, each under its own type;
- a token is taken whole or not at all: `W64/BURNTCIGAR.CA!tr` is not a domain, and nothing is cut out
  of the middle of a longer token;
- closing brackets and sentence punctuation are trimmed from the end of a token only when unbalanced;
- a bare `name.py`, `name.sh`, `name.zip`... (file names whose extension is also a top-level domain)
  is not a domain unless it was written defanged, which says the writer meant a domain.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator

from vtriage.models import IocType

# The most characters of one free text read for indicators: more costs time and finds nothing a detector
# vouches for. A text cut so is noted on its alert (see `read_extent`).
MAX_FREE_TEXT = 64 * 1024
_MAX_TOKEN = 2048

_SPACED_DOT = re.compile(r"\s?([\[({])\s?(\.|dot)\s?([\])}])\s?", re.IGNORECASE)
_SPACED_AT = re.compile(r"\s?([\[({])\s?(at|@)\s?([\])}])\s?", re.IGNORECASE)
_DOTS = re.compile(r"\[\.\]|\(\.\)|\{\.\}|\[dot\]|\(dot\)|\{dot\}", re.IGNORECASE)
_ATS = re.compile(r"\[at\]|\(at\)|\{at\}|\[@\]", re.IGNORECASE)
_SEPARATOR = re.compile(r"\[://\]|\(://\)|\{://\}|\[:\]//|\(:\)//|:\[//\]|://")
_SCHEME = re.compile(
    r"(?P<scheme>hxxps|hxxp|fxp|https|http|ftp)(?P<separator>\[://\]|\(://\)|\{://\}|\[:\]//|\(:\)//|:\[//\]|://)",
    re.IGNORECASE,
)
_REAL_SCHEMES = {
    "hxxp": "http",
    "hxxps": "https",
    "fxp": "ftp",
    "http": "http",
    "https": "https",
    "ftp": "ftp",
}

_TOKEN_SEPARATORS = re.compile(r"[\s\"'`<>|\\^]+")
_SEPARATOR_CHARACTERS = frozenset("\"'`<>|\\^")
_LEADING = "([{*"
_TRAILING = ".,;:!?*"
_CLOSING = {")": "(", "]": "[", "}": "{"}

_IPV4 = re.compile(r"(?:[0-9]{1,3}\.){3}[0-9]{1,3}")
_IPV4_WITH_PORT = re.compile(r"(?P<ip>(?:[0-9]{1,3}\.){3}[0-9]{1,3}):[0-9]{1,5}")
_IPV6 = re.compile(r"[0-9a-fA-F]{0,4}(?::[0-9a-fA-F]{0,4}){2,7}")
# A hash alone, or labelled as in `sha256:...` or `md5=...`.
_LABELLED_HASH = re.compile(
    r"(?:(?:md5|sha1|sha-1|sha256|sha-256)[:=])?(?P<hash>[0-9a-fA-F]{32}|[0-9a-fA-F]{40}|[0-9a-fA-F]{64})",
    re.IGNORECASE,
)
_LABEL = r"[^\W_](?:[\w-]{0,61}[^\W_])?"
_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL}){{1,126}}\.?")
_URL = re.compile(r"(?:https?|ftp)://[^\s]+", re.IGNORECASE)

# Extensions of files that analysts name in prose and that are also top-level domains.
_FILE_EXTENSION_TLDS = frozenset({"py", "sh", "zip", "mov", "md", "pl", "so", "rs", "ps", "sys", "pm", "cs"})


def refang_dots(text: str) -> str:
    """Only the bracketed dot spellings undone: for values that are a domain or a URL's host."""
    return _DOTS.sub(".", _SPACED_DOT.sub(".", text))


def refang_scheme(url: str) -> str:
    """A URL whose scheme and `://` are defanged, with both restored; any other text unchanged."""
    match = _SCHEME.match(url)
    if match is None:
        return url
    scheme = _REAL_SCHEMES[match["scheme"].lower()]
    rest = url[match.end() :]
    # Only inside a URL: `[/]` and `[:]` are brackets elsewhere (markdown, log formats).
    rest = rest.replace("[/]", "/").replace("[:]", ":")
    return f"{scheme}://{rest}"


def read_extent(text: str) -> int:
    """How many characters of `text` `candidates_in_text` reads: all of it up to `MAX_FREE_TEXT`; of a
    longer text, the first `MAX_FREE_TEXT` less the token the cut runs through, since a token cut short
    could read as another indicator (`evil.com` cut to `evil.co`). Linear in `MAX_FREE_TEXT`."""
    if len(text) <= MAX_FREE_TEXT:
        return len(text)
    end = MAX_FREE_TEXT
    while end and not _is_separator(text[end]):
        end -= 1
    return end


def _is_separator(character: str) -> bool:
    return character.isspace() or character in _SEPARATOR_CHARACTERS


def candidates_in_text(text: str) -> Iterator[tuple[IocType, str]]:
    """(type, refanged value) of each indicator-looking token of `text`, in order, each once.

    Only the first `read_extent(text)` characters (about 64 KiB) are read. Every candidate must still
    pass `canonical_ioc`.
    """
    seen: set[tuple[IocType, str]] = set()
    normalised = _SPACED_AT.sub("[at]", _SPACED_DOT.sub("[.]", text[: read_extent(text)]))
    for raw_token in _TOKEN_SEPARATORS.split(normalised):
        # A token too long to be an indicator is passed over before any work on it.
        if len(raw_token) > _MAX_TOKEN:
            continue
        token = _trim(raw_token)
        if not token:
            continue
        candidate = _classify(token)
        if candidate is not None and candidate not in seen:
            seen.add(candidate)
            yield candidate


def _trim(token: str) -> str:
    """The token without leading openers and trailing punctuation or unbalanced closers.

    Linear in the token's length: each bracket kind is counted once, and the counts follow the cut.
    """
    token = token.lstrip(_LEADING)
    counts = {character: token.count(character) for pair in _CLOSING.items() for character in pair}
    end = len(token)
    while end:
        last = token[end - 1]
        unbalanced = last in _CLOSING and counts[last] > counts[_CLOSING[last]]
        if not (last in _TRAILING or unbalanced):
            break
        if last in counts:
            counts[last] -= 1
        end -= 1
    return token[:end]


def _classify(token: str) -> tuple[IocType, str] | None:
    start = _scheme_start(token)
    if start is not None:
        url = refang_scheme(refang_dots(token[start:]))
        return (IocType.URL, url) if _URL.fullmatch(url) else None
    defanged = _DOTS.search(token) is not None or _ATS.search(token) is not None
    value = _ATS.sub("@", refang_dots(token))
    if _IPV4.fullmatch(value):
        return IocType.IP, value
    with_port = _IPV4_WITH_PORT.fullmatch(value)
    if with_port:
        return IocType.IP, with_port["ip"]
    if value.count(":") >= 2 and _IPV6.fullmatch(value):
        return (IocType.IP, value) if _is_ipv6(value) else None
    labelled_hash = _LABELLED_HASH.fullmatch(value)
    if labelled_hash:
        return IocType.FILE, labelled_hash["hash"]
    if "@" in value:
        # An e-mail address: its domain is the indicator VirusTotal knows.
        value = value.rpartition("@")[2]
    if _DOMAIN.fullmatch(value) and not value.replace(".", "").isdigit():
        top_level = value.rstrip(".").rpartition(".")[2].lower()
        if top_level in _FILE_EXTENSION_TLDS and not defanged:
            return None
        return IocType.DOMAIN, value
    return None


def _is_ipv6(value: str) -> bool:
    try:
        ipaddress.IPv6Address(value)
    except ValueError:
        return False
    return True


def _scheme_start(token: str) -> int | None:
    """Where a URL starts in the token: at its start, or after `=` / `:` (`url=http://...`)."""
    match = _SCHEME.search(token)
    if match is None:
        return None
    start = match.start()
    if start == 0 or token[start - 1] in "=(:[{,;":
        return start
    return None
