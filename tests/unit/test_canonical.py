"""IOC canonicalisation: one spelling per indicator, skipped with a reason when it must not be looked up,
refused when it is malformed or hostile, because the value becomes part of a VirusTotal URL path."""

from __future__ import annotations

import string
from importlib import resources

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.provisional import domains, urls

from tests.unit.timing import time_ratio
from vtriage.errors import InvalidAlertError
from vtriage.intake import suffixes
from vtriage.intake.canonical import DEPLOYMENT_HOST_REASON, canonical_ioc, with_allow_list, with_never_act
from vtriage.models import IocType

IP, DOMAIN, URL, FILE = IocType.IP, IocType.DOMAIN, IocType.URL, IocType.FILE
FOUND_AT = "service.action.dnsRequestAction.domain"
SHA256_OF_ABC = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"

# --- tables ---------------------------------------------------------------------------------------

ACCEPTED = [
    # (type, raw, canonical value): looked up
    (IP, "23.129.64.215", "23.129.64.215"),
    (IP, " 8.8.8.8 ", "8.8.8.8"),
    (IP, "2606:4700:4700:0000:0000:0000:0000:1111", "2606:4700:4700::1111"),
    (IP, "2606:4700:4700::1111".upper(), "2606:4700:4700::1111"),
    (IP, "::ffff:23.129.64.215", "23.129.64.215"),
    (DOMAIN, "tawuhoju.com", "tawuhoju.com"),
    (DOMAIN, "  Telemetry-Sync.NET.  ", "telemetry-sync.net"),
    (DOMAIN, "3322.org", "3322.org"),
    (DOMAIN, "bücher.de", "xn--bcher-kva.de"),
    (DOMAIN, "xn--bcher-kva.de", "xn--bcher-kva.de"),
    (DOMAIN, "evil[.]com", "evil.com"),
    (DOMAIN, "a" * 63 + ".com", "a" * 63 + ".com"),
    (URL, "HTTP://Evil.COM/Path/To?Q=Keep&Case=1#Frag", "http://evil.com/Path/To?Q=Keep&Case=1#Frag"),
    (URL, "https://evil.com", "https://evil.com"),
    (URL, "https://EVIL.com:8443/a%2Fb/../c?x=%41", "https://evil.com:8443/a%2Fb/../c?x=%41"),
    (URL, "hxxps://evil[.]com/payload.exe", "https://evil.com/payload.exe"),
    (URL, "http://[2606:4700::1111]/x", "http://[2606:4700::1111]/x"),
    (FILE, "D41D8CD98F00B204E9800998ECF8427F", "d41d8cd98f00b204e9800998ecf8427f"),
    (FILE, "a9993e364706816aba3e25717850c26c9cd0d89d", "a9993e364706816aba3e25717850c26c9cd0d89d"),
    (FILE, SHA256_OF_ABC.upper(), SHA256_OF_ABC),
]

SKIPPED = [
    # (type, raw, canonical value, reason): kept on the case, never looked up
    (IP, "0.0.0.0", "0.0.0.0", "unspecified address"),
    (IP, "127.0.0.1", "127.0.0.1", "loopback address"),
    (IP, "169.254.169.254", "169.254.169.254", "link-local address"),
    (IP, "fe80::1", "fe80::1", "link-local address"),
    (IP, "224.0.0.251", "224.0.0.251", "multicast address"),
    (IP, "192.0.2.10", "192.0.2.10", "documentation address (RFC 5737)"),
    (IP, "198.51.100.7", "198.51.100.7", "documentation address (RFC 5737)"),
    (IP, "203.0.113.99", "203.0.113.99", "documentation address (RFC 5737)"),
    (IP, "2001:DB8::1", "2001:db8::1", "documentation address (RFC 3849)"),
    (IP, "100.64.0.1", "100.64.0.1", "shared address space (RFC 6598)"),
    (IP, "198.18.0.1", "198.18.0.1", "benchmarking address (RFC 2544)"),
    (IP, "10.0.1.25", "10.0.1.25", "private address"),
    (IP, "172.16.5.4", "172.16.5.4", "private address"),
    (IP, "192.168.1.1", "192.168.1.1", "private address"),
    (IP, "fd00::1", "fd00::1", "private address"),
    (IP, "240.0.0.1", "240.0.0.1", "reserved address"),
    (IP, "::ffff:10.0.0.1", "10.0.0.1", "private address"),
    (DOMAIN, "ip-10-0-1-25.ec2.internal", "ip-10-0-1-25.ec2.internal", "internal name (.internal)"),
    (
        DOMAIN,
        "ip-10-0-0-1.us-west-2.compute.internal",
        "ip-10-0-0-1.us-west-2.compute.internal",
        "internal name (.compute.internal, an EC2 private DNS name)",
    ),
    (DOMAIN, "printer.local", "printer.local", "internal name (.local, multicast DNS)"),
    (DOMAIN, "app.localhost", "app.localhost", "internal name (.localhost)"),
    (DOMAIN, "nas.lan", "nas.lan", "internal name (.lan)"),
    (DOMAIN, "router.home.arpa", "router.home.arpa", "internal name (.home.arpa, RFC 8375)"),
    (DOMAIN, "Example.COM", "example.com", "reserved name (example.com, RFC 2606)"),
    (DOMAIN, "www.example.net", "www.example.net", "reserved name (example.net, RFC 2606)"),
    (DOMAIN, "cdn.example.org", "cdn.example.org", "reserved name (example.org, RFC 2606)"),
    (DOMAIN, "shop.example", "shop.example", "reserved name (.example, RFC 2606)"),
    (DOMAIN, "api.test", "api.test", "reserved name (.test, RFC 2606)"),
    (DOMAIN, "nothing.invalid", "nothing.invalid", "reserved name (.invalid, RFC 2606)"),
    (URL, "http://10.0.0.5:8080/admin", "http://10.0.0.5:8080/admin", "private address"),
    (URL, "https://www.EXAMPLE.com/x", "https://www.example.com/x", "reserved name (example.com, RFC 2606)"),
    (
        URL,
        "https://alice:s3cret@evil.com/",
        "https://alice:s3cret@evil.com/",
        "URL carries credentials (user info before '@'): not sent to VirusTotal",
    ),
    (FILE, "d41d8cd98f00b204e9800998ecf8427e", "d41d8cd98f00b204e9800998ecf8427e", "md5 of empty content"),
    (FILE, "0" * 64, "0" * 64, "placeholder hash (all zeros)"),
    (
        FILE,
        "A" * 128,
        "a" * 128,
        "a sha512 (128 hex digits): VirusTotal looks files up by md5, sha1 or sha256 only",
    ),
    # AWS's own endpoints and VirusTotal: never looked up, never a target
    (
        DOMAIN,
        "cloudformation.amazonaws.com",
        "cloudformation.amazonaws.com",
        "an AWS service endpoint (amazonaws.com): never looked up or acted on",
    ),
    (
        DOMAIN,
        "s3.cn-north-1.amazonaws.com.cn",
        "s3.cn-north-1.amazonaws.com.cn",
        "an AWS service endpoint (amazonaws.com.cn): never looked up or acted on",
    ),
    (
        DOMAIN,
        "AMAZONAWS.COM.",
        "amazonaws.com",
        "an AWS service endpoint (amazonaws.com): never looked up or acted on",
    ),
    (
        URL,
        "https://www.virustotal.com/api/v3/files/x",
        "https://www.virustotal.com/api/v3/files/x",
        "VirusTotal's own host: never looked up or acted on",
    ),
]

REJECTED = [
    # (type, raw, what the reason says)
    (IP, "", "empty ip value"),
    (IP, "   ", "empty ip value"),
    (IP, "23.129.64.215/32", "network prefix ('/')"),
    (IP, "fe80::1%25eth0", "zone index ('%')"),
    (IP, "23.129.64.215\r\n", "line break (CR/LF)"),
    (IP, "23.129.64.215 8.8.8.8", "whitespace"),
    (IP, "010.0.0.1", "not an IP address"),
    (IP, "256.1.1.1", "not an IP address"),
    (IP, "evil.com", "not an IP address"),
    (IP, "1.2.3.4?x", "not an IP address"),
    (DOMAIN, "", "empty domain value"),
    (DOMAIN, "evil.com/../../files/abc", "'/' is not allowed in a domain"),
    (DOMAIN, "evil.com?relationships=x", "'?' is not allowed in a domain"),
    (DOMAIN, "evil.com#x", "'#' is not allowed in a domain"),
    (DOMAIN, "evil%2ecom", "'%' is not allowed in a domain"),
    (DOMAIN, "user@evil.com", "'@' is not allowed in a domain"),
    (DOMAIN, "evil.com:443", "':' is not allowed in a domain"),
    (DOMAIN, "evil..com", "empty label ('..')"),
    (DOMAIN, "..", "empty label ('..')"),
    (DOMAIN, ".evil.com", "must be 1-63 characters"),
    (DOMAIN, "evil .com", "whitespace"),
    (DOMAIN, "evil.com\nHost: other", "line break (CR/LF)"),
    (DOMAIN, "evil\u200b.com", "invisible character U+200B"),
    (DOMAIN, "evil\tcom", "whitespace"),
    (DOMAIN, "evil.com\x00", "control or invisible character U+0000"),
    (DOMAIN, "a" * 64 + ".com", "must be 1-63 characters"),
    (DOMAIN, ".".join(["abcdefghi"] * 26), "longer than 253 characters"),
    (DOMAIN, "-evil.com", "not starting or ending with '-'"),
    (DOMAIN, "evil-.com", "not starting or ending with '-'"),
    (DOMAIN, "under_score.com", "must be 1-63 characters of a-z, 0-9 and '-'"),
    (DOMAIN, "localhost", "at least two labels"),
    (DOMAIN, "1.2.3.4", "an IP address is not a domain"),
    (DOMAIN, "evil\uff0fpath.com", "must be 1-63 characters"),  # a full-width solidus becomes '/' in IDNA
    (DOMAIN, "xn--zz.com", "not valid punycode"),
    (URL, "evil.com/path", "not an absolute URL"),
    (URL, "javascript:alert(1)", "not an absolute URL"),
    (URL, "file:///etc/passwd", "unsupported URL scheme 'file'"),
    (URL, "http://evil.com/a b", "whitespace"),
    (URL, "http://evil.com/\r\nHost: x", "line break (CR/LF)"),
    (URL, "http:///path", "URL without a host"),
    (URL, "http://evil.com:99999/", "invalid port"),
    (URL, "http://evil..com/", "empty label ('..')"),
    (URL, "http://[1.2.3.4]/", "only IPv6 addresses go between brackets"),
    (URL, "https://evil.com/" + "a" * 2000, "URL longer than 2000 bytes"),
    (URL, "https://evil.com/" + "\u00e9" * 1000, "URL longer than 2000 bytes"),  # 2,000 bytes in UTF-8
    (URL, "https://" + "a" * 9000 + ".com/", "longer than 4096 characters"),
    (DOMAIN, "a" * 5000 + ".com", "longer than 4096 characters"),
    (DOMAIN, "\u00fc" * 300 + ".com", "longer than 253 characters"),
    (DOMAIN, "\u00fc" * 64 + ".com", "must be 1-63 characters"),
    (FILE, "abc", "not an md5, sha1 or sha256 hash"),
    (FILE, "g" * 32, "not an md5, sha1 or sha256 hash"),
    (FILE, SHA256_OF_ABC + "0", "not an md5, sha1 or sha256 hash"),
    (FILE, SHA256_OF_ABC[:63] + "/", "not an md5, sha1 or sha256 hash"),
]


@pytest.mark.parametrize(("ioc_type", "raw", "value"), ACCEPTED)
def test_accepted_values_are_canonical_and_will_be_looked_up(ioc_type: IocType, raw: str, value: str) -> None:
    # When a well-formed value is canonicalised
    ioc = canonical_ioc(ioc_type, raw, FOUND_AT)

    # Then it has its one canonical spelling, keeps where it was found, and is not skipped
    assert (ioc.type, ioc.value, ioc.found_at, ioc.skipped_reason) == (ioc_type, value, FOUND_AT, None)


@pytest.mark.parametrize(("ioc_type", "raw", "value", "reason"), SKIPPED)
def test_skipped_values_say_why_they_are_never_looked_up(
    ioc_type: IocType, raw: str, value: str, reason: str
) -> None:
    ioc = canonical_ioc(ioc_type, raw, FOUND_AT)

    assert (ioc.value, ioc.skipped_reason) == (value, reason)


@pytest.mark.parametrize(("ioc_type", "raw", "reason"), REJECTED)
def test_malformed_or_hostile_values_are_refused_naming_the_field(
    ioc_type: IocType, raw: str, reason: str
) -> None:
    # When a value that must never become a lookup is canonicalised
    with pytest.raises(InvalidAlertError) as caught:
        canonical_ioc(ioc_type, raw, FOUND_AT)

    # Then the refusal names the field it came from and what is wrong with it
    assert caught.value.field == FOUND_AT
    assert reason in caught.value.reason


def test_a_value_that_is_not_a_string_is_refused() -> None:
    with pytest.raises(InvalidAlertError, match="expected a string, got int"):
        canonical_ioc(IP, 42, FOUND_AT)  # type: ignore[arg-type]


def test_the_alerts_own_addresses_are_skipped_in_any_spelling() -> None:
    # Given an instance whose own public addresses are known
    own = frozenset({"54.210.17.33", "2600:1F18:0:0:0:0:0:1"})

    # When those addresses, and a URL on one of them, turn up as IOCs
    as_ip = canonical_ioc(IP, "::ffff:54.210.17.33", FOUND_AT, own)
    as_ipv6 = canonical_ioc(IP, "2600:1f18::1", FOUND_AT, own)
    as_url = canonical_ioc(URL, "http://54.210.17.33/health", FOUND_AT, own)
    someone_else = canonical_ioc(IP, "54.210.17.34", FOUND_AT, own)

    # Then they are kept, skipped as the alert's own, and another address is looked up
    reasons = [ioc.skipped_reason for ioc in (as_ip, as_ipv6, as_url, someone_else)]
    assert reasons == ["address of the alert's own resource"] * 3 + [None]
    assert as_ip.value == "54.210.17.33"


# --- properties -----------------------------------------------------------------------------------

FORBIDDEN = ("/", "?", "#", "%", "..")
PATH_SAFE_TYPES = st.sampled_from([IP, DOMAIN, FILE])
# Characters that make values hostile or that IDNA maps onto ASCII punctuation, mixed with ordinary ones.
TRICKY_TEXT = st.text(
    alphabet=st.sampled_from(
        [
            *(string.ascii_letters + string.digits + "-.:/?#%@[]_ \t\r\n"),
            *(
                "\u3002",
                "\uff0e",
                "\uff0f",
                "\uff1f",
                "\u2024",
                "\u200b",
                "\u00ad",
                "\u00df",
                "\u00fc",
                "\u0130",
            ),
        ]
    ),
    max_size=40,
)
HASHES = st.sampled_from([32, 40, 64]).flatmap(
    lambda size: st.text(alphabet="0123456789abcdefABCDEF", min_size=size, max_size=size)
)
IP_ADDRESSES = st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)).map(str)
GENERAL = settings(max_examples=300, deadline=None)


def assert_path_safe(value: str) -> None:
    assert value
    assert not any(fragment in value for fragment in FORBIDDEN), value
    assert not any(character.isspace() for character in value), value


def assert_idempotent(ioc_type: IocType, value: str, reason: str | None) -> None:
    again = canonical_ioc(ioc_type, value, FOUND_AT)
    assert (again.value, again.skipped_reason) == (value, reason)


@GENERAL
@given(ioc_type=PATH_SAFE_TYPES, raw=st.one_of(TRICKY_TEXT, st.text(max_size=40)))
def test_any_text_is_refused_or_becomes_a_path_safe_fixed_point(ioc_type: IocType, raw: str) -> None:
    # Given any text at all where an IP, a domain or a hash belongs
    refusal: InvalidAlertError | None = None
    try:
        ioc = canonical_ioc(ioc_type, raw, FOUND_AT)
    except InvalidAlertError as error:
        refusal = error
    if refusal is not None:
        # Then either it is refused, naming the field
        assert refusal.field == FOUND_AT
        return
    # Or it becomes a value safe in a URL path, that canonicalises to itself
    assert_path_safe(ioc.value)
    assert_idempotent(ioc_type, ioc.value, ioc.skipped_reason)


@GENERAL
@given(raw=IP_ADDRESSES)
def test_every_ip_address_is_accepted_path_safe_and_idempotent(raw: str) -> None:
    ioc = canonical_ioc(IP, raw, FOUND_AT)

    assert_path_safe(ioc.value)
    assert_idempotent(IP, ioc.value, ioc.skipped_reason)


@GENERAL
@given(raw=domains())
def test_every_valid_domain_is_accepted_lower_case_path_safe_and_idempotent(raw: str) -> None:
    ioc = canonical_ioc(DOMAIN, raw, FOUND_AT)

    assert ioc.value == raw.lower()
    assert_path_safe(ioc.value)
    assert_idempotent(DOMAIN, ioc.value, ioc.skipped_reason)


@GENERAL
@given(raw=HASHES)
def test_every_hash_is_accepted_lower_case_path_safe_and_idempotent(raw: str) -> None:
    ioc = canonical_ioc(FILE, raw, FOUND_AT)

    assert ioc.value == raw.lower()
    assert_path_safe(ioc.value)
    assert_idempotent(FILE, ioc.value, ioc.skipped_reason)


@GENERAL
@given(raw=urls())
def test_urls_keep_path_and_query_byte_for_byte_and_are_idempotent(raw: str) -> None:
    # Given a valid http(s) URL
    scheme, _, rest = raw.partition("://")
    authority, slash, path = rest.partition("/")

    # When it is canonicalised
    ioc = canonical_ioc(URL, raw, FOUND_AT)

    # Then only the scheme and host change case; everything after the host is unchanged
    assert ioc.value == f"{scheme.lower()}://{authority.lower()}{slash}{path}"
    assert not any(character.isspace() for character in ioc.value)
    assert_idempotent(URL, ioc.value, ioc.skipped_reason)


# --- the Public Suffix List snapshot ---------------------------------------------------------------

PUBLIC_SUFFIX_CASES = [
    # (domain, skipped reason or None when it is looked up)
    ("tawuhoju.com", None),
    ("evil.co.uk", None),
    ("cdn.evil.co.uk", None),
    ("a.b.kawasaki.jp", None),  # *.kawasaki.jp: b.kawasaki.jp is a suffix, a.b.kawasaki.jp is registrable
    ("city.kawasaki.jp", None),  # !city.kawasaki.jp: an exception to the wildcard
    ("xn--fiqs8s.xn--fiqs8s", None),  # an internationalised TLD, spelt as IDNA
    ("user.github.io", None),  # the PRIVATE section is not read: github.io names are looked up
    ("co.uk", "a public suffix ('co.uk'), not a registrable domain"),
    ("b.kawasaki.jp", "a public suffix ('b.kawasaki.jp'), not a registrable domain"),
    ("evil.notatld", "unknown top-level domain '.notatld' (not in the Public Suffix List snapshot)"),
    ("printer.local", "internal name (.local, multicast DNS)"),
    ("ip-10-0-0-1.ec2.internal", "internal name (.internal)"),
]


@pytest.mark.parametrize(("domain", "reason"), PUBLIC_SUFFIX_CASES)
def test_a_domain_is_looked_up_only_under_a_real_public_suffix(domain: str, reason: str | None) -> None:
    assert canonical_ioc(DOMAIN, domain, FOUND_AT).skipped_reason == reason


def test_a_url_on_an_unknown_top_level_domain_is_skipped() -> None:
    ioc = canonical_ioc(URL, "http://update.notatld/x", FOUND_AT)
    assert (
        ioc.skipped_reason == "unknown top-level domain '.notatld' (not in the Public Suffix List snapshot)"
    )


def test_the_snapshot_is_shipped_with_the_code_and_read_on_first_use_only() -> None:
    # Given the package as installed: the snapshot is package data, holds the ICANN section, is parsed once
    snapshot = resources.files("vtriage").joinpath("data", "public_suffix_list.dat").read_text("utf-8")
    assert "===BEGIN ICANN DOMAINS===" in snapshot
    assert suffixes.public_suffix("evil.com") == "com"
    assert suffixes._rules.cache_info().currsize == 1


# --- defanged structured values -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ioc_type", "raw", "value"),
    [
        (DOMAIN, "evil[dot]com", "evil.com"),
        (DOMAIN, "evil(.)co{.}uk", "evil.co.uk"),
        (URL, "hxxp[:]//evil[.]com/a[.]exe", "http://evil.com/a[.]exe"),
        (URL, "hxxps[://]evil(dot)com/", "https://evil.com/"),
    ],
)
def test_a_defanged_structured_value_is_refanged(ioc_type: IocType, raw: str, value: str) -> None:
    # The path of a URL stays byte for byte: only its scheme and host are refanged
    assert canonical_ioc(ioc_type, raw, FOUND_AT).value == value


# --- the allow-list --------------------------------------------------------------------------------

ALLOW_LIST = frozenset(
    {"Corp.Example.NET.", "microsoft.com", "10.20.0.0/16", "8.8.8.8", SHA256_OF_ABC.upper()}
)
ALLOW_LIST_CASES = [
    # (type, raw, allow-listed?)
    (DOMAIN, "microsoft.com", True),
    (DOMAIN, "update.MICROSOFT.com", True),
    (DOMAIN, "notmicrosoft.com", False),
    (DOMAIN, "microsoft.com.evil.ru", False),
    (URL, "https://download.microsoft.com/x.exe", True),
    (URL, "https://microsoft.com.evil.ru/", False),
    (IP, "8.8.8.8", True),
    (IP, "8.8.4.4", False),
    (URL, "http://8.8.8.8/", True),
    (FILE, SHA256_OF_ABC, True),
    (FILE, "a9993e364706816aba3e25717850c26c9cd0d89d", False),
]


@pytest.mark.parametrize(("ioc_type", "raw", "allowed"), ALLOW_LIST_CASES)
def test_allow_listed_values_are_skipped_with_the_reason(ioc_type: IocType, raw: str, allowed: bool) -> None:
    ioc = canonical_ioc(ioc_type, raw, FOUND_AT, allow_list=ALLOW_LIST)
    assert ioc.skipped_reason == ("allow-listed" if allowed else None)


def test_a_stronger_reason_than_the_allow_list_is_kept() -> None:
    # Given a private address inside an allow-listed network
    ioc = canonical_ioc(IP, "10.20.3.4", FOUND_AT, allow_list=ALLOW_LIST)

    # Then it says why it could never be looked up at all
    assert ioc.skipped_reason == "private address"


# --- what a field declares ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("algorithm", "raw", "reason"),
    [
        ("sha256", SHA256_OF_ABC, None),
        ("md5", "D41D8CD98F00B204E9800998ECF8427F", None),
        (
            "sha256",
            "546bb6ef89bebfb053999777f6930d7e",
            "the field declares sha256, but the value has 32 hex digits (a md5): not looked up as another"
            " algorithm",
        ),
        (
            "sha1",
            SHA256_OF_ABC,
            "the field declares sha1, but the value has 64 hex digits (a sha256): not looked up as another"
            " algorithm",
        ),
    ],
)
def test_the_algorithm_a_field_declares_wins_over_the_values_length(
    algorithm: str, raw: str, reason: str | None
) -> None:
    # Given a hash from a field that says which algorithm it holds (`threatFileSha256`, HASH_SHA256)
    # When it is canonicalised with that algorithm
    ioc = canonical_ioc(FILE, raw, FOUND_AT, algorithm=algorithm)

    # Then a value of another algorithm's length is kept but never looked up as that other algorithm
    assert (ioc.value, ioc.skipped_reason) == (raw.lower(), reason)


# --- the never-act list ---------------------------------------------------------------------------


def test_the_deployments_own_hosts_are_never_looked_up_and_no_allow_list_changes_that() -> None:
    # Given IOCs naming the ticket provider's host (and a name under it), and a lookalike that is not it
    iocs = [
        canonical_ioc(DOMAIN, "acme.atlassian.net", FOUND_AT),
        canonical_ioc(URL, "https://api.acme.atlassian.net/rest", FOUND_AT),
        canonical_ioc(DOMAIN, "acme.atlassian.net.evil.ru", FOUND_AT),
    ]

    # When the deployment's hosts are applied, and then an allow-list naming none of them
    marked = with_allow_list(with_never_act(iocs, frozenset({"Acme.Atlassian.NET"})), frozenset({"evil.ru"}))

    # Then the provider's host is never a lookup, with a reason that says why; the lookalike is only
    # skipped because the team allow-listed it
    assert [ioc.skipped_reason for ioc in marked] == [
        DEPLOYMENT_HOST_REASON,
        DEPLOYMENT_HOST_REASON,
        "allow-listed",
    ]


def test_an_allow_list_entry_never_turns_an_aws_endpoint_into_a_lookup() -> None:
    # Given an AWS endpoint on a team's allow-list
    ioc = canonical_ioc(
        DOMAIN, "cloudformation.amazonaws.com", FOUND_AT, allow_list=frozenset({"amazonaws.com"})
    )

    # Then the never-act reason stands, not "allow-listed"
    assert ioc.skipped_reason == "an AWS service endpoint (amazonaws.com): never looked up or acted on"


# --- linear time ----------------------------------------------------------------------------------


def test_a_long_internationalised_domain_takes_time_linear_in_its_length() -> None:
    # Given domains of n and 8n distinct non-ASCII characters (IDNA encoding is quadratic in a label)
    def domain(size: int) -> str:
        return "".join(chr(0x4E00 + index) for index in range(size)) + ".com"

    # When each is canonicalised, then both are refused, and 8n costs about 8 times n, not 64
    ratio = time_ratio(lambda size: _refused(DOMAIN, domain(size)), 200)
    assert ratio < 30


def _refused(ioc_type: IocType, raw: str, times: int = 10) -> None:
    for _ in range(times):
        with pytest.raises(InvalidAlertError):
            canonical_ioc(ioc_type, raw, FOUND_AT)
