"""The trimmed view of a VirusTotal object that an analyst needs, small enough to keep on a case.

A raw object can weigh hundreds of KB (90+ engine results, certificates, PE details); the context keeps
what answers "what is this and who says it is bad", caps every list and long text, and writes dates as
ISO-8601 UTC strings.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from vtriage.models import IocType

FLAGGING_CATEGORIES = ("malicious", "suspicious")
WHOIS_MAX_CHARS = 2048
MAX_TEXT_CHARS = 512
MAX_LABEL_CHARS = 160
MAX_NAMES = 10
MAX_DNS_RECORDS = 20
MAX_CATEGORIES = 20
MAX_RANKS = 10
MAX_REDIRECTIONS = 10
MAX_TAGS = 20
MAX_THREAT_LABELS = 5

_SIGNATURE_KEYS = (
    "verified",
    "signers",
    "signing date",
    "product",
    "description",
    "copyright",
    "original name",
    "internal name",
    "file version",
)


def trim_context(
    ioc_type: IocType, attributes: dict[str, Any], relationships: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The analyst's view of an object's `attributes` (and, for URLs, the serving IP among its
    `relationships` when the lookup asked for it). Absent fields are left out."""
    context = _TRIMMERS[ioc_type](attributes, relationships or {})
    context.update(
        {
            "detections": detections(attributes),
            "last_analysis_date": iso_date(attributes.get("last_analysis_date")),
            "reputation": _integer(attributes.get("reputation")),
            "total_votes": _counts(attributes.get("total_votes")),
            "tags": _strings(attributes.get("tags"), MAX_TAGS),
        }
    )
    return {name: value for name, value in context.items() if value not in (None, [], {}, "")}


def detections(attributes: dict[str, Any]) -> list[dict[str, str]]:
    """Every engine that flags the object (malicious or suspicious) with its label, sorted by engine.

    Reads all of `last_analysis_results`: engines come back alphabetically, so a check that stops
    after the first N would miss every engine further down the alphabet.
    """
    results = attributes.get("last_analysis_results")
    if not isinstance(results, dict):
        return []
    flagged = []
    for key, result in results.items():
        if not isinstance(result, dict) or result.get("category") not in FLAGGING_CATEGORIES:
            continue
        engine = result.get("engine_name") or key
        flagged.append(
            {
                "engine": _text(engine, MAX_LABEL_CHARS) or str(key),
                "category": str(result["category"]),
                "result": _text(result.get("result"), MAX_LABEL_CHARS) or "",
            }
        )
    return sorted(flagged, key=lambda detection: detection["engine"].casefold())


def iso_date(value: Any) -> str | None:
    """A VirusTotal UTC timestamp (seconds since the epoch) as an ISO-8601 UTC string."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        moment = datetime.fromtimestamp(value, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None
    return moment.isoformat().replace("+00:00", "Z")


def trim_whois(whois: Any, limit: int = WHOIS_MAX_CHARS) -> str | None:
    """A whois record cut at a line boundary to about `limit` characters, saying how much was cut."""
    if not isinstance(whois, str) or not whois.strip():
        return None
    text = whois.strip()
    if len(text) <= limit:
        return text
    cut = text.rfind("\n", 0, limit)
    kept = text[: cut if cut > 0 else limit]
    return f"{kept}\n[trimmed: {len(kept)} of {len(text)} characters shown]"


def _file(attributes: dict[str, Any], _relationships: dict[str, Any]) -> dict[str, Any]:
    names = _strings(attributes.get("names"), MAX_NAMES)
    all_names = attributes.get("names")
    return {
        "sha256": _text(attributes.get("sha256")),
        "sha1": _text(attributes.get("sha1")),
        "md5": _text(attributes.get("md5")),
        "meaningful_name": _text(attributes.get("meaningful_name")),
        "names": names,
        "names_total": len(all_names)
        if isinstance(all_names, list) and len(all_names) > len(names)
        else None,
        "type_description": _text(attributes.get("type_description")),
        "type_tag": _text(attributes.get("type_tag")),
        "size": _integer(attributes.get("size")),
        "first_submission_date": iso_date(attributes.get("first_submission_date")),
        "last_submission_date": iso_date(attributes.get("last_submission_date")),
        "times_submitted": _integer(attributes.get("times_submitted")),
        "popular_threat_classification": _threat_classification(
            attributes.get("popular_threat_classification")
        ),
        "signature_info": _signature(attributes.get("signature_info")),
    }


def _domain(attributes: dict[str, Any], _relationships: dict[str, Any]) -> dict[str, Any]:
    return {
        "registrar": _text(attributes.get("registrar")),
        "creation_date": iso_date(attributes.get("creation_date")),
        "last_update_date": iso_date(attributes.get("last_update_date")),
        "categories": _categories(attributes.get("categories")),
        "last_dns_records": _dns_records(attributes.get("last_dns_records")),
        "last_dns_records_date": iso_date(attributes.get("last_dns_records_date")),
        "popularity_ranks": _ranks(attributes.get("popularity_ranks")),
        "whois": trim_whois(attributes.get("whois")),
        "whois_date": iso_date(attributes.get("whois_date")),
    }


def _ip(attributes: dict[str, Any], _relationships: dict[str, Any]) -> dict[str, Any]:
    return {
        "asn": _integer(attributes.get("asn")),
        "as_owner": _text(attributes.get("as_owner")),
        "country": _text(attributes.get("country")),
        "continent": _text(attributes.get("continent")),
        "network": _text(attributes.get("network")),
        "regional_internet_registry": _text(attributes.get("regional_internet_registry")),
        "whois": trim_whois(attributes.get("whois")),
        "whois_date": iso_date(attributes.get("whois_date")),
    }


def _url(attributes: dict[str, Any], relationships: dict[str, Any]) -> dict[str, Any]:
    return {
        "url": _text(attributes.get("url")),
        "last_final_url": _text(attributes.get("last_final_url")),
        "title": _text(attributes.get("title")),
        "categories": _categories(attributes.get("categories")),
        "redirection_chain": _strings(attributes.get("redirection_chain"), MAX_REDIRECTIONS),
        "last_http_response_code": _integer(attributes.get("last_http_response_code")),
        "serving_ip_address": _serving_ip(attributes, relationships),
        "threat_names": _strings(attributes.get("threat_names"), MAX_NAMES),
        "first_submission_date": iso_date(attributes.get("first_submission_date")),
    }


_TRIMMERS: dict[IocType, Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]] = {
    IocType.FILE: _file,
    IocType.DOMAIN: _domain,
    IocType.IP: _ip,
    IocType.URL: _url,
}


def _serving_ip(attributes: dict[str, Any], relationships: dict[str, Any]) -> str | None:
    """The IP that served the URL: the `last_serving_ip_address` relationship, when it was requested."""
    relation = relationships.get("last_serving_ip_address") or attributes.get("last_serving_ip_address")
    if isinstance(relation, dict):
        data = relation.get("data", relation)
        if isinstance(data, dict):
            return _text(data.get("id"))
    return _text(relation)


def _threat_classification(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        return None
    trimmed = {
        "suggested_threat_label": _text(value.get("suggested_threat_label")),
        "popular_threat_category": _labels(value.get("popular_threat_category")),
        "popular_threat_name": _labels(value.get("popular_threat_name")),
    }
    return {name: item for name, item in trimmed.items() if item} or None


def _labels(value: Any) -> list[dict[str, Any]]:
    """VirusTotal's `[{"value", "count"}]` label lists, most counted first, capped."""
    if not isinstance(value, list):
        return []
    counted = [
        (_text(item.get("value"), MAX_LABEL_CHARS), _integer(item.get("count")) or 0)
        for item in value
        if isinstance(item, dict) and item.get("value")
    ]
    counted.sort(key=lambda label: -label[1])
    return [{"value": label, "count": count} for label, count in counted[:MAX_THREAT_LABELS]]


def _signature(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        return None
    trimmed = {key: _text(value.get(key)) for key in _SIGNATURE_KEYS if value.get(key) not in (None, "")}
    return trimmed or None


def _categories(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    items = sorted(value.items(), key=lambda item: str(item[0]).casefold())[:MAX_CATEGORIES]
    return {
        str(source)[:MAX_LABEL_CHARS]: _text(category, MAX_LABEL_CHARS) or "" for source, category in items
    }


def _dns_records(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        return []
    records = []
    for record in value[:MAX_DNS_RECORDS]:
        if isinstance(record, dict):
            trimmed = {
                "type": _text(record.get("type"), 16),
                "value": _text(record.get("value"), MAX_LABEL_CHARS),
                "ttl": _integer(record.get("ttl")),
            }
            records.append({name: item for name, item in trimmed.items() if item is not None})
    return records


def _ranks(value: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(value, dict):
        return {}
    ranks = {}
    for source, rank in sorted(value.items(), key=lambda item: str(item[0]).casefold())[:MAX_RANKS]:
        if isinstance(rank, dict):
            ranks[str(source)[:MAX_LABEL_CHARS]] = {
                "rank": _integer(rank.get("rank")),
                "date": iso_date(rank.get("timestamp")),
            }
    return ranks


def _counts(value: Any) -> dict[str, int]:
    if not isinstance(value, dict):
        return {}
    return {
        str(name): int(count)
        for name, count in value.items()
        if isinstance(count, int) and not isinstance(count, bool)
    }


def _strings(value: Any, limit: int) -> list[str]:
    items: Iterable[Any] = value if isinstance(value, list) else []
    texts = (_text(item) for item in items)
    return [text for text in texts if text][:limit]


def _text(value: Any, limit: int = MAX_TEXT_CHARS) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _integer(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value)
