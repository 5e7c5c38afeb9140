"""Canonical IOCs: one spelling per indicator, strict enough to become part of a VirusTotal URL path.

A value is either accepted (returned as an `Ioc`), accepted but never looked up (returned with a
`skipped_reason`), or refused with an `InvalidAlertError` that names the field it came from. Nothing
malformed or hostile is ever returned: the value later becomes part of `/domains/{value}` and the like.
(The parsers keep a refused value on the alert as a skipped IOC, escaped: see `fields.ioc_of`.)

A domain is looked up only when it ends in a public suffix of the shipped Public Suffix List snapshot
and has a label more; internal and reserved names, bare public suffixes and unknown top-level domains
are kept as skipped, with the reason. AWS's own service endpoints, VirusTotal's and CrowdStrike's hosts are
on a never-act list (`NEVER_ACT_DOMAINS`), as are the deployment's own hosts (`with_never_act`): never looked
up, never a target, whatever an allow-list or a playbook says. An allow-list skips what a team knows to
be its own.

Every length is checked before the work that depends on it (refanging, IDNA encoding), so that the time
spent on one value stays linear in its length.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from vtriage.errors import InvalidAlertError
from vtriage.intake.refang import refang_dots, refang_scheme
from vtriage.intake.suffixes import public_suffix
from vtriage.models import Ioc, IocType

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Longer than any indicator: refused before any other work on the value.
MAX_VALUE_LENGTH = 4096
_MAX_DOMAIN_LENGTH = 253
_MAX_LABEL_LENGTH = 63
# A spelling of a domain longer than this is no domain even defanged (`[.]` for every dot of 253 bytes).
_MAX_DEFANGED_DOMAIN_LENGTH = 1024
# The longest URL looked up, in UTF-8 bytes: its cache key (`url#<url>`) must stay under DynamoDB's
# 2,048-byte limit on a partition key.
MAX_URL_BYTES = 2000
_DNS_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_HEX_DIGITS = re.compile(r"[0-9a-f]+")
_IP_CHARACTERS = re.compile(r"[0-9a-f:.]+")
_PORT = re.compile(r"[0-9]{1,5}")
_ABSOLUTE_URL = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*)://(?P<authority>[^/?#]*)(?P<rest>.*)", re.DOTALL)
_URL_SCHEMES = frozenset({"http", "https", "ftp"})
_NOT_IN_A_DOMAIN = {
    "/": "'/'",
    "?": "'?'",
    "#": "'#'",
    "%": "'%'",
    "@": "'@'",
    ":": "':'",
    "\\": "'\\'",
}

_DOCUMENTATION_V4 = tuple(
    ipaddress.IPv4Network(network) for network in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")
)
_DOCUMENTATION_V6 = ipaddress.IPv6Network("2001:db8::/32")
_SHARED_ADDRESS_SPACE = ipaddress.IPv4Network("100.64.0.0/10")
_BENCHMARKING = ipaddress.IPv4Network("198.18.0.0/15")

# Suffixes that never name a host on the internet, most specific first.
_DOMAIN_SKIPS: tuple[tuple[str, str], ...] = (
    ("compute.internal", "internal name (.compute.internal, an EC2 private DNS name)"),
    ("internal", "internal name (.internal)"),
    ("local", "internal name (.local, multicast DNS)"),
    ("localhost", "internal name (.localhost)"),
    ("lan", "internal name (.lan)"),
    ("home.arpa", "internal name (.home.arpa, RFC 8375)"),
    ("in-addr.arpa", "reverse-lookup name (.in-addr.arpa)"),
    ("ip6.arpa", "reverse-lookup name (.ip6.arpa)"),
    ("example.com", "reserved name (example.com, RFC 2606)"),
    ("example.net", "reserved name (example.net, RFC 2606)"),
    ("example.org", "reserved name (example.org, RFC 2606)"),
    ("example", "reserved name (.example, RFC 2606)"),
    ("test", "reserved name (.test, RFC 2606)"),
    ("invalid", "reserved name (.invalid, RFC 2606)"),
)

# Hashes of zero bytes: every scanner has seen them and they say nothing about a threat.
_EMPTY_CONTENT_HASHES = frozenset(
    {
        "d41d8cd98f00b204e9800998ecf8427e",
        "da39a3ee5e6b4b0d3255bfef95601890afd80709",
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    }
)
_HASH_NAMES = {32: "md5", 40: "sha1", 64: "sha256"}
_SHA512_LENGTH = 128

# Hosts nothing may look up or act on, with every name under them: AWS's own service endpoints and
# principals (a finding names them as the caller of an API: `cloudformation.amazonaws.com`), the
# console's hosts, VirusTotal, whose own lookups would otherwise be blocked, and CrowdStrike's Falcon
# console and API (every Falcon alert links to it; vtriage reads Falcon's API).
NEVER_ACT_DOMAINS: tuple[tuple[str, str], ...] = (
    ("amazonaws.com", "an AWS service endpoint (amazonaws.com)"),
    ("amazonaws.com.cn", "an AWS service endpoint (amazonaws.com.cn)"),
    ("api.aws", "an AWS service endpoint (api.aws)"),
    ("aws.amazon.com", "an AWS console or service host (aws.amazon.com)"),
    ("amazon.com", "an Amazon host (amazon.com)"),
    ("virustotal.com", "VirusTotal's own host"),
    ("crowdstrike.com", "CrowdStrike's own host (crowdstrike.com: the Falcon console and its API)"),
)
NEVER_ACT_SUFFIX = ": never looked up or acted on"
DEPLOYMENT_HOST_REASON = (
    "a host this deployment itself uses (VirusTotal, the ticket provider)" + NEVER_ACT_SUFFIX
)

OWN_ADDRESS_REASON = "address of the alert's own resource"
URL_CREDENTIALS_REASON = "URL carries credentials (user info before '@'): not sent to VirusTotal"
ALLOW_LISTED_REASON = "allow-listed"


def canonical_ioc(
    ioc_type: IocType,
    raw: str,
    found_at: str,
    own_addresses: frozenset[str] = frozenset(),
    *,
    allow_list: frozenset[str] = frozenset(),
    algorithm: str | None = None,
) -> Ioc:
    """The canonical IOC for `raw`, skipped with a reason when it must never be looked up.

    `allow_list` holds values a team trusts (see `is_allow_listed`): a match is skipped as
    "allow-listed" unless a stronger reason (a private address, say) already applies. `algorithm`
    is the hash algorithm the field declares (md5, sha1, sha256, sha512): it wins over the length.
    Raises InvalidAlertError naming `found_at` when the value is malformed or hostile.
    """
    if not isinstance(raw, str):
        raise InvalidAlertError(f"expected a string, got {type(raw).__name__}", field=found_at)
    if len(raw) > MAX_VALUE_LENGTH:
        raise InvalidAlertError(
            f"{ioc_type.value} value longer than {MAX_VALUE_LENGTH} characters: {_preview(raw)}", found_at
        )
    value = raw.strip(" ")
    if not value:
        raise InvalidAlertError(f"empty {ioc_type.value} value", field=found_at)
    problem = _hostile_characters(value)
    if problem:
        raise InvalidAlertError(f"{problem} in {_preview(raw)}", field=found_at)

    if ioc_type is IocType.IP:
        canonical, reason = _canonical_ip(value, found_at, _own_ips(own_addresses))
    elif ioc_type is IocType.DOMAIN:
        canonical, reason = _canonical_domain(value, found_at)
    elif ioc_type is IocType.URL:
        canonical, reason = _canonical_url(value, found_at, _own_ips(own_addresses))
    else:
        canonical, reason = _canonical_hash(value, found_at, algorithm)
    if reason is None and is_allow_listed(ioc_type, canonical, allow_list):
        reason = ALLOW_LISTED_REASON
    return Ioc(type=ioc_type, value=canonical, found_at=found_at, skipped_reason=reason)


def with_never_act(iocs: Iterable[Ioc], hosts: frozenset[str]) -> tuple[Ioc, ...]:
    """The IOCs, a domain or URL on one of the deployment's own `hosts` (or a name under one) now
    skipped: the deployment's own hosts are never looked up nor acted on."""
    names = frozenset(host.strip().lower().rstrip(".") for host in hosts if host.strip())
    return tuple(
        ioc.model_copy(update={"skipped_reason": DEPLOYMENT_HOST_REASON})
        if ioc.skipped_reason is None and _on_hosts(ioc, names)
        else ioc
        for ioc in iocs
    )


def _on_hosts(ioc: Ioc, names: frozenset[str]) -> bool:
    if not names or ioc.type not in (IocType.DOMAIN, IocType.URL):
        return False
    host = _url_host(ioc.value) if ioc.type is IocType.URL else ioc.value
    return host is not None and _is_or_under(host, names)


def _is_or_under(name: str, parents: frozenset[str]) -> bool:
    """Whether `name` is one of `parents` or a name under one of them."""
    labels = name.split(".")
    return any(".".join(labels[start:]) in parents for start in range(len(labels)))


def with_allow_list(iocs: Iterable[Ioc], allow_list: frozenset[str]) -> tuple[Ioc, ...]:
    """The IOCs, those the allow-list matches (and nothing else skipped) now skipped as allow-listed."""
    return tuple(
        ioc.model_copy(update={"skipped_reason": ALLOW_LISTED_REASON})
        if ioc.skipped_reason is None and is_allow_listed(ioc.type, ioc.value, allow_list)
        else ioc
        for ioc in iocs
    )


def is_allow_listed(ioc_type: IocType, value: str, allow_list: frozenset[str]) -> bool:
    """Whether a canonical value is on the allow-list.

    An entry is matched case-insensitively, without a trailing dot. It names a hash, an IP address, a
    URL (exactly), an IP network in CIDR notation (`10.20.0.0/16`: every address in it, and URLs on
    them), or a domain: the domain itself, every name under it, and every URL whose host is one of them.
    """
    if not allow_list:
        return False
    entries = _allow_list_entries(allow_list)
    if value.lower() in entries.values:
        return True
    if ioc_type is IocType.FILE:
        return False
    host = _url_host(value) if ioc_type is IocType.URL else value
    if host is None:
        return False
    if host.startswith("[") or _looks_like_ip(host):
        try:
            address = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return False
        return str(address) in entries.values or any(address in network for network in entries.networks)
    labels = host.split(".")
    return any(".".join(labels[start:]) in entries.values for start in range(len(labels)))


@dataclass(frozen=True)
class _AllowList:
    values: frozenset[str]
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]


@functools.lru_cache(maxsize=16)
def _allow_list_entries(allow_list: frozenset[str]) -> _AllowList:
    values: set[str] = set()
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for entry in allow_list:
        text = entry.strip().lower()
        text = text[:-1] if text.endswith(".") else text
        if not text:
            continue
        if "/" in text and "://" not in text:
            try:
                networks.append(ipaddress.ip_network(text, strict=False))
            except ValueError:
                pass
            else:
                continue
        values.add(text)
        with contextlib.suppress(ValueError):
            values.add(str(ipaddress.ip_address(text)))
    return _AllowList(values=frozenset(values), networks=tuple(networks))


def _url_host(url: str) -> str | None:
    match = _ABSOLUTE_URL.fullmatch(url)
    if match is None:
        return None
    host_and_port = match["authority"].rpartition("@")[2]
    if host_and_port.startswith("["):
        return host_and_port[: host_and_port.find("]") + 1]
    return host_and_port.partition(":")[0]


def _looks_like_ip(host: str) -> bool:
    return host.replace(".", "").isdigit() or ":" in host


def ip_skip_reason(address: IpAddress, own_addresses: Iterable[IpAddress] = ()) -> str | None:
    """Why an address must never be looked up (not routable on the internet, or the alert's own), or None."""
    if address.is_unspecified:
        return "unspecified address"
    if address.is_loopback:
        return "loopback address"
    if address.is_link_local:
        return "link-local address"
    if address.is_multicast:
        return "multicast address"
    if isinstance(address, ipaddress.IPv4Address):
        if any(address in network for network in _DOCUMENTATION_V4):
            return "documentation address (RFC 5737)"
        if address in _SHARED_ADDRESS_SPACE:
            return "shared address space (RFC 6598)"
        if address in _BENCHMARKING:
            return "benchmarking address (RFC 2544)"
    else:
        if address in _DOCUMENTATION_V6:
            return "documentation address (RFC 3849)"
        if address.is_site_local:
            return "site-local address"
    if address.is_reserved:
        return "reserved address"
    if address.is_private:
        return "private address"
    if not address.is_global:
        return "non-public address"
    if address in set(own_addresses):
        return OWN_ADDRESS_REASON
    return None


def _canonical_ip(value: str, found_at: str, own: frozenset[IpAddress]) -> tuple[str, str | None]:
    address = _parse_ip(value, found_at)
    return str(address), ip_skip_reason(address, own)


def _parse_ip(value: str, found_at: str) -> IpAddress:
    lowered = value.lower()
    if "%" in lowered:
        raise InvalidAlertError(
            f"a zone index ('%') is not allowed in an IP address: {_preview(value)}", found_at
        )
    if "/" in lowered:
        raise InvalidAlertError(f"a network prefix ('/') is not an IP address: {_preview(value)}", found_at)
    if not _IP_CHARACTERS.fullmatch(lowered):
        raise InvalidAlertError(f"not an IP address: {_preview(value)}", found_at)
    try:
        address = ipaddress.ip_address(lowered)
    except ValueError:
        raise InvalidAlertError(f"not an IP address: {_preview(value)}", found_at) from None
    # An IPv4-mapped IPv6 address names the IPv4 host: look that up, under its usual spelling.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _own_ips(own_addresses: frozenset[str]) -> frozenset[IpAddress]:
    parsed: set[IpAddress] = set()
    for text in own_addresses:
        try:
            address = ipaddress.ip_address(text.strip())
        except ValueError:
            continue
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        parsed.add(address)
    return frozenset(parsed)


# What IDNA reads as a dot, besides "." itself (ideographic, full-width and half-width full stops).
_IDNA_DOTS = ("\u3002", "\uff0e", "\uff61")


def is_bare_host_name(value: object) -> bool:
    """Whether a host name field's value is a name without a dot, defanged or not (`WEB01`, `filesrv.`):
    a machine's name on its own network, which no resolver outside it knows, so no domain VirusTotal
    can look up. A host name field holding one gives no IOC (an address, or a name with a dot, is read
    as usual)."""
    if not isinstance(value, str):
        return False
    name = _without_root_dot(refang_dots(value).strip())
    # An IPv6 address has no dot either: read as an address, elsewhere.
    return bool(name) and not any(dot in name for dot in (".", ":", *_IDNA_DOTS))


def _canonical_domain(value: str, found_at: str) -> tuple[str, str | None]:
    name = _domain_name(value, found_at)
    return name, domain_skip_reason(name)


def domain_skip_reason(name: str) -> str | None:
    """Why a canonical domain must never be looked up, or None: an internal or reserved name, a bare
    public suffix, a host on the never-act list, or a name whose top-level domain the Public Suffix List
    snapshot does not know."""
    for parent, reason in NEVER_ACT_DOMAINS:
        if name == parent or name.endswith("." + parent):
            return reason + NEVER_ACT_SUFFIX
    for internal, reason in _DOMAIN_SKIPS:
        if name == internal or name.endswith("." + internal):
            return reason
    suffix = public_suffix(name)
    if suffix is None:
        top_level = name.rpartition(".")[2]
        return f"unknown top-level domain '.{top_level}' (not in the Public Suffix List snapshot)"
    if suffix == name:
        return f"a public suffix ('{suffix}'), not a registrable domain"
    return None


def _domain_name(value: str, found_at: str) -> str:
    if len(value) > _MAX_DEFANGED_DOMAIN_LENGTH:
        raise InvalidAlertError(
            f"domain longer than {_MAX_DOMAIN_LENGTH} characters: {_preview(value)}", found_at
        )
    name = refang_dots(value)
    for character, shown in _NOT_IN_A_DOMAIN.items():
        if character in name:
            raise InvalidAlertError(f"{shown} is not allowed in a domain: {_preview(value)}", found_at)
    if ".." in name:
        raise InvalidAlertError(f"empty label ('..') in domain {_preview(value)}", found_at)
    name = _without_root_dot(name).lower()
    if not name.isascii():
        # IDNA encoding takes time quadratic in a label's length: lengths no encoding could bring back
        # within DNS's limits (it never shortens a name) are refused before it.
        _check_lengths(name, value, found_at)
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            raise InvalidAlertError(
                f"not a valid internationalised domain name: {_preview(value)}", found_at
            ) from None
        # IDNA maps some look-alike characters onto ASCII ones (a full-width solidus becomes '/'):
        # the strict label check below sees the mapped form.
        name = _without_root_dot(name)
    if len(name) > _MAX_DOMAIN_LENGTH:
        raise InvalidAlertError(
            f"domain longer than {_MAX_DOMAIN_LENGTH} characters: {_preview(value)}", found_at
        )
    labels = name.split(".")
    if len(labels) < 2:
        raise InvalidAlertError(f"a domain needs at least two labels: {_preview(value)}", found_at)
    for label in labels:
        if not _DNS_LABEL.fullmatch(label):
            raise InvalidAlertError(
                f"label {_preview(label)} of domain {_preview(value)} must be 1-63 characters of a-z, 0-9"
                " and '-', not starting or ending with '-'",
                found_at,
            )
        if label.startswith("xn--"):
            _check_punycode(label, value, found_at)
    if labels[-1].isdigit():
        raise InvalidAlertError(f"an IP address is not a domain: {_preview(value)}", found_at)
    return name


def _check_lengths(name: str, value: str, found_at: str) -> None:
    if len(name) > _MAX_DOMAIN_LENGTH:
        raise InvalidAlertError(
            f"domain longer than {_MAX_DOMAIN_LENGTH} characters: {_preview(value)}", found_at
        )
    for label in name.split("."):
        if len(label) > _MAX_LABEL_LENGTH:
            raise InvalidAlertError(
                f"label {_preview(label)} of domain {_preview(value)} must be 1-63 characters", found_at
            )


def _check_punycode(label: str, value: str, found_at: str) -> None:
    try:
        label.encode("ascii").decode("idna")
    except (UnicodeError, ValueError):
        raise InvalidAlertError(
            f"label {_preview(label)} of domain {_preview(value)} is not valid punycode", found_at
        ) from None


def _without_root_dot(name: str) -> str:
    return name[:-1] if name.endswith(".") else name


def _canonical_url(value: str, found_at: str, own: frozenset[IpAddress]) -> tuple[str, str | None]:
    value = refang_scheme(value)
    scheme_end = value.find("://")
    if scheme_end < 0:
        raise InvalidAlertError(f"not an absolute URL (scheme://host/...): {_preview(value)}", found_at)
    scheme = value[:scheme_end].lower()
    match = _ABSOLUTE_URL.fullmatch(scheme + value[scheme_end:])
    if match is None:
        raise InvalidAlertError(f"not an absolute URL (scheme://host/...): {_preview(value)}", found_at)
    if scheme not in _URL_SCHEMES:
        raise InvalidAlertError(
            f"unsupported URL scheme {_preview(scheme)}: expected http, https or ftp", found_at
        )
    user_info, at_sign, host_and_port = match["authority"].rpartition("@")
    host, port = _split_host_and_port(refang_dots(host_and_port), value, found_at)
    host = host.lower()
    reason = _url_host_skip_reason(host, value, found_at, own)
    if at_sign:
        reason = reason or URL_CREDENTIALS_REASON
    # The path, query and fragment stay byte for byte: VirusTotal's URL identifier depends on them.
    canonical = f"{scheme}://{user_info}{at_sign}{host}{port}{match['rest']}"
    if len(canonical.encode("utf-8", "surrogatepass")) > MAX_URL_BYTES:
        raise InvalidAlertError(
            f"URL longer than {MAX_URL_BYTES} bytes (the longest vtriage looks up): {_preview(value)}",
            found_at,
        )
    return canonical, reason


def _split_host_and_port(host_and_port: str, value: str, found_at: str) -> tuple[str, str]:
    if host_and_port.startswith("["):
        closing = host_and_port.find("]")
        if closing < 0:
            raise InvalidAlertError(f"unclosed IPv6 literal in URL {_preview(value)}", found_at)
        host, port = host_and_port[: closing + 1], host_and_port[closing + 1 :]
    else:
        host, colon, number = host_and_port.partition(":")
        port = colon + number
    if port and not (port.startswith(":") and _PORT.fullmatch(port[1:]) and int(port[1:]) <= 65535):
        raise InvalidAlertError(f"invalid port in URL {_preview(value)}", found_at)
    if not host:
        raise InvalidAlertError(f"URL without a host: {_preview(value)}", found_at)
    return host, port


def _url_host_skip_reason(host: str, value: str, found_at: str, own: frozenset[IpAddress]) -> str | None:
    if host.startswith("["):
        literal = host[1:-1]
        if ":" not in literal:
            raise InvalidAlertError(f"only IPv6 addresses go between brackets: {_preview(value)}", found_at)
        return ip_skip_reason(_parse_ip(literal, found_at), own)
    if host.replace(".", "").isdigit():
        return ip_skip_reason(_parse_ip(host, found_at), own)
    return domain_skip_reason(_domain_name(host, found_at))


def _canonical_hash(value: str, found_at: str, algorithm: str | None) -> tuple[str, str | None]:
    digest = value.lower()
    if _HEX_DIGITS.fullmatch(digest) and len(digest) == _SHA512_LENGTH:
        return digest, "a sha512 (128 hex digits): VirusTotal looks files up by md5, sha1 or sha256 only"
    if not (_HEX_DIGITS.fullmatch(digest) and len(digest) in _HASH_NAMES):
        raise InvalidAlertError(
            f"not an md5, sha1 or sha256 hash (32, 40 or 64 hex digits): {_preview(value)}", found_at
        )
    length_says = _HASH_NAMES[len(digest)]
    if algorithm is not None and algorithm != length_says:
        return digest, (
            f"the field declares {algorithm}, but the value has {len(digest)} hex digits (a {length_says}):"
            " not looked up as another algorithm"
        )
    if digest in _EMPTY_CONTENT_HASHES:
        return digest, f"{_HASH_NAMES[len(digest)]} of empty content"
    if digest.strip("0") == "":
        return digest, "placeholder hash (all zeros)"
    return digest, None


def _hostile_characters(value: str) -> str | None:
    for character in value:
        if character in "\r\n":
            return "line break (CR/LF)"
        category = unicodedata.category(character)
        if category[0] == "Z" or character.isspace():
            return "whitespace"
        if category[0] == "C":
            return f"control or invisible character U+{ord(character):04X}"
    return None


def _preview(value: str, limit: int = 80) -> str:
    """The value as a person can read it in a log line: quoted, escaped, and cut when long."""
    shown = value if len(value) <= limit else value[:limit] + "..."
    return repr(shown)
