"""Refanging and free-text extraction: the spellings analysts use are undone, the known bugs of the usual
libraries are not repeated, and every candidate is only a candidate."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.timing import time_ratio
from vtriage.intake.refang import candidates_in_text, refang_dots, refang_scheme
from vtriage.models import IocType

IP, DOMAIN, URL, FILE = IocType.IP, IocType.DOMAIN, IocType.URL, IocType.FILE
SHA256 = "4bc00f7d638e042da764e8648c03c0db46700599dd4f08d117e3e9e8b538519b"

# Values of a domain, or a URL's host: `canonical_ioc` undoes only the bracketed dot spellings.
DOTS_REFANGED = [
    ("evil[dot]com", "evil.com"),
    ("evil(DOT)com", "evil.com"),
    ("evil {dot} com", "evil.com"),
    ("evil [ . ] com", "evil.com"),
    ("files{.}evil[.]com", "files.evil.com"),
    ("23.129.64[.]215", "23.129.64.215"),
    # Left alone: prose with a bare "dot", and brackets that hold anything else
    ("connect the dot com bubble", "connect the dot com bubble"),
    ("[link](docs)", "[link](docs)"),
]


@pytest.mark.parametrize(("defanged", "expected"), DOTS_REFANGED)
def test_refang_dots_undoes_only_the_bracketed_dot_spellings(defanged: str, expected: str) -> None:
    assert refang_dots(defanged) == expected


# URLs, as `canonical_ioc` and `candidates_in_text` read them: the scheme restored, then the host's dots.
SCHEMES_REFANGED = [
    ("hxxp://evil[.]com/a", "http://evil.com/a"),
    ("hxxps://evil[.]com/a", "https://evil.com/a"),  # iocextract #49 turned this into http
    ("HXXPS://evil(.)com", "https://evil.com"),
    ("fxp://files{.}evil[.]com/x", "ftp://files.evil.com/x"),
    ("http[:]//evil[.]com", "http://evil.com"),
    ("https[://]evil[.]com", "https://evil.com"),
    ("hxxp(://)evil[.]com", "http://evil.com"),
    ("hxxp:[//]evil[.]com", "http://evil.com"),
    ("hxxp://evil[.]com[/]path[:]8", "http://evil.com/path:8"),
    # Left alone: words that merely contain a scheme-like part (ioc-fanger #25)
    ("shotput and hotpocket", "shotput and hotpocket"),
    ("xhxxp://evil.com", "xhxxp://evil.com"),
]


@pytest.mark.parametrize(("defanged", "expected"), SCHEMES_REFANGED)
def test_refang_scheme_restores_a_defanged_scheme_only_at_the_start(defanged: str, expected: str) -> None:
    assert refang_scheme(refang_dots(defanged)) == expected


EXTRACTED = [
    # (text, candidates in order)
    ("C2 at hxxps://evil-update[.]example[.]net/a?b=1.", [(URL, "https://evil-update.example.net/a?b=1")]),
    ("beacon to 23.129.64[.]215:443 then tawuhoju[.]com", [(IP, "23.129.64.215"), (DOMAIN, "tawuhoju.com")]),
    # A defanged IP stays an IP, never becomes http://... (iocextract #61, #77)
    ("101.28[.]225[.]248", [(IP, "101.28.225.248")]),
    # Quotes, brackets and punctuation around a URL are not part of it (ioc-finder #130, iocextract #81)
    ("DownloadString('https://example[.]org/rdp.ps1');g", [(URL, "https://example.org/rdp.ps1")]),
    ("Foo (https://citizenlab.ca/about/), bar", [(URL, "https://citizenlab.ca/about/")]),
    ("see `https://evil.com/x`", [(URL, "https://evil.com/x")]),
    # ...but balanced brackets inside it are
    (
        "https://en.wikipedia.org/wiki/Quine_(computing)",
        [(URL, "https://en.wikipedia.org/wiki/Quine_(computing)")],
    ),
    # A URL starts at its scheme, never earlier (iocextract #2)
    ("CDATA[^h00ps://online(.)bank(.)com/x]]", []),
    ("redirect=hxxp://evil[.]com/x", [(URL, "http://evil.com/x")]),
    # AV signature names and file names are not domains (ioc-finder #279)
    ("W64/BURNTCIGAR.CA!tr", []),
    ("ran setup.py and install.sh from update.zip", []),
    ("but evil[.]sh is a domain once defanged", [(DOMAIN, "evil.sh")]),
    (
        "hashes: sha256:" + SHA256.upper() + " md5=d41d8cd98f00b204e9800998ecf8427f",
        [
            (FILE, SHA256.upper()),
            (FILE, "d41d8cd98f00b204e9800998ecf8427f"),
        ],
    ),
    ("from fe80::1 and 2606:4700:4700::1111 at 12:30:45", [(IP, "fe80::1"), (IP, "2606:4700:4700::1111")]),
    ("mail ops[at]tawuhoju[.]com", [(DOMAIN, "tawuhoju.com")]),
    ("mail ops (at) evil[.]com", [(DOMAIN, "evil.com")]),
    ("version 1.2 and 1.2.3", []),
    ("evil.com evil.com EVIL.com", [(DOMAIN, "evil.com"), (DOMAIN, "EVIL.com")]),
]


@pytest.mark.parametrize(("text", "expected"), EXTRACTED)
def test_candidates_in_text(text: str, expected: list[tuple[IocType, str]]) -> None:
    assert list(candidates_in_text(text)) == expected


def test_a_long_hostile_text_is_read_in_bounded_time_and_size() -> None:
    # Given text built to make backtracking regexes explode (iocextract #52), and far longer than 64 KiB
    hostile = "http://a.com/" + "../" * 50_000 + " " + ("a." * 40_000) + "[.]" * 10_000

    # When candidates are extracted, then it returns, and every candidate is bounded in size
    found = list(candidates_in_text(hostile))
    assert all(len(value) <= 2048 for _, value in found)


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=200))
def test_every_candidate_is_a_single_token_without_whitespace(text: str) -> None:
    for ioc_type, value in candidates_in_text(text):
        assert ioc_type in (IP, DOMAIN, URL, FILE)
        assert value
        assert not any(character.isspace() for character in value)


@pytest.mark.parametrize("run", [")", "]", ".", "),", "a)"])
def test_a_long_run_of_trailing_punctuation_takes_time_linear_in_its_length(run: str) -> None:
    # Given prose ending in a long run of closing brackets or punctuation (trimming it was quadratic)
    def extract(size: int) -> None:
        list(candidates_in_text("see evil.com" + run * (size // len(run))))

    # When candidates are extracted from n and 8n characters, then 8n costs about 8 times n, not 64
    assert time_ratio(extract, 4000) < 30
