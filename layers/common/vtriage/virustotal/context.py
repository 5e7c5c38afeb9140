"""The trimmed view of a VirusTotal object that an analyst needs, small enough to keep on a case.

A raw object can weigh hundreds of KB (90+ engine results, certificates, PE details); the context keeps
what answers "what is this and who says it is bad", caps every list and long text, and writes dates as
ISO-8601 UTC strings.
"""

from __future__ import annotations

import json
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
MAX_RESOLUTIONS = 20
MAX_RELATED = 10
MAX_RELATED_DETECTIONS = 10
MAX_YARA_RULES = 10
MAX_GTI_FACTORS = 30
CONTEXT_MAX_BYTES = 48 * 1024
"""The context's own budget, leaving room in the 64 KB per stored enrichment for the rest of it."""

# Dropped in this order, largest and least decisive first, if a context still exceeds its budget.
_DROPPABLE = (
    "communicating_files",
    "contacted_urls",
    "contacted_domains",
    "contacted_ips",
    "detected_urls",
    "whois",
    "last_dns_records",
    "resolutions",
    "crowdsourced_yara_results",
    "detections",
)

# Whois keys, lower-cased, for each field parsed out of the raw text; the first one present wins.
_WHOIS_FIELDS = {
    "registrar": ("registrar",),
    "creation_date": (
        "creation date",
        "created",
        "created on",
        "registered on",
        "registration time",
        "regdate",
    ),
    "expiry_date": (
        "registry expiry date",
        "registrar registration expiration date",
        "expiration date",
        "expiry date",
        "expires on",
        "paid-till",
        "expiration time",
    ),
    "updated_date": ("updated date", "last updated", "updated", "last-modified"),
    "registrant_organization": ("registrant organization", "registrant organisation", "registrant org"),
    "registrant_country": ("registrant country",),
    "organization": ("orgname", "org-name", "organization"),
    "network_name": ("netname",),
    "country": ("country",),
}

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
    ioc_type: IocType,
    attributes: dict[str, Any],
    relationships: dict[str, Any] | None = None,
    object_id: str | None = None,
) -> dict[str, Any]:
    """The analyst's view of an object's `attributes` and of the `relationships` the lookup asked for
    (descriptors, or full objects with deep context). `object_id` (the domain or IP itself) lets a
    resolution descriptor, whose id is the IP followed by the host name, be split. Absent fields are
    left out, and the whole stays within `CONTEXT_MAX_BYTES` of JSON."""
    related = relationships or {}
    context = _TRIMMERS[ioc_type](attributes, related)
    if ioc_type in (IocType.DOMAIN, IocType.IP):
        context.update(_network_relations(ioc_type, related, object_id))
    context.update(
        {
            "detections": detections(attributes),
            "last_analysis_date": iso_date(attributes.get("last_analysis_date")),
            "reputation": _integer(attributes.get("reputation")),
            "total_votes": _counts(attributes.get("total_votes")),
            "tags": _strings(attributes.get("tags"), MAX_TAGS),
            "gti_assessment": gti_assessment(attributes.get("gti_assessment")),
        }
    )
    return _within_budget({name: value for name, value in context.items() if value not in (None, [], {}, "")})


def parse_whois(whois: Any) -> dict[str, str]:
    """Key fields of a raw whois record: registrar, creation, expiry and update dates, registrant
    organisation and country (domains), organisation, network name and country (IPs). The first line
    carrying a field wins; redacted values are kept as they are."""
    if not isinstance(whois, str):
        return {}
    lines: dict[str, str] = {}
    for line in whois.splitlines():
        key, separator, value = line.partition(":")
        key, value = key.strip().casefold(), value.strip()
        if separator and value and key not in lines:
            lines[key] = value
    fields = {}
    for name, keys in _WHOIS_FIELDS.items():
        found = next((lines[key] for key in keys if key in lines), None)
        if found is not None:
            fields[name] = _text(found, MAX_LABEL_CHARS) or ""
    return fields


def related_objects(
    relationships: dict[str, Any], name: str, limit: int = MAX_RELATED
) -> list[dict[str, Any]]:
    """The objects of one relationship, trimmed: the id (and the URL of a URL), plus, for full objects
    (deep context), their engine counts and flagging engines, and a file's name, type and threat label."""
    trimmed = []
    for item in _relationship_items(relationships, name)[:limit]:
        attributes = item.get("attributes")
        attributes = attributes if isinstance(attributes, dict) else {}
        context_attributes = item.get("context_attributes")
        context_attributes = context_attributes if isinstance(context_attributes, dict) else {}
        entry: dict[str, Any] = {
            "id": _text(item.get("id"), MAX_LABEL_CHARS),
            "type": _text(item.get("type"), 32),
            "url": _text(attributes.get("url") or context_attributes.get("url")),
        }
        stats = attributes.get("last_analysis_stats")
        if isinstance(stats, dict):
            entry.update(
                {
                    "malicious": _integer(stats.get("malicious")) or 0,
                    "suspicious": _integer(stats.get("suspicious")) or 0,
                    "total": sum(_counts(stats).values()),
                    "detections": detections(attributes)[:MAX_RELATED_DETECTIONS],
                    "last_analysis_date": iso_date(attributes.get("last_analysis_date")),
                }
            )
        if item.get("type") == "file":
            classification = _threat_classification(attributes.get("popular_threat_classification")) or {}
            entry.update(
                {
                    "name": _text(attributes.get("meaningful_name"), MAX_LABEL_CHARS),
                    "type_description": _text(attributes.get("type_description"), MAX_LABEL_CHARS),
                    "threat_label": classification.get("suggested_threat_label"),
                }
            )
        trimmed.append({key: value for key, value in entry.items() if value not in (None, [], "")})
    return trimmed


def _network_relations(
    ioc_type: IocType, relationships: dict[str, Any], object_id: str | None
) -> dict[str, Any]:
    """Resolutions of a domain or IP, and with deep context its detected URLs and communicating files."""
    urls = related_objects(relationships, "urls", limit=40)
    files = related_objects(relationships, "communicating_files")
    detected = [url for url in urls if url.get("malicious", 0) + url.get("suspicious", 0) > 0]
    detected.sort(key=lambda url: -(url.get("malicious", 0) + url.get("suspicious", 0)))
    return {
        "resolutions": _resolutions(ioc_type, relationships, object_id),
        "detected_urls": detected[:MAX_RELATED],
        "urls_examined": len(urls) if "urls" in relationships else None,
        "communicating_files": sorted(files, key=lambda file: -file.get("malicious", 0)),
    }


def _resolutions(
    ioc_type: IocType, relationships: dict[str, Any], object_id: str | None
) -> list[dict[str, Any]]:
    """What a domain resolved to (`ip`), or what resolved to an IP (`host`), newest first when dated.

    A descriptor's id is the IP followed by the host name (`1.2.3.4example.com`); a full resolution object
    (deep context) says both, with the date."""
    other = "ip" if ioc_type is IocType.DOMAIN else "host"
    resolutions = []
    for item in _relationship_items(relationships, "resolutions"):
        attributes = item.get("attributes")
        attributes = attributes if isinstance(attributes, dict) else {}
        value = attributes.get("ip_address" if other == "ip" else "host_name")
        identifier = str(item.get("id") or "")
        if not value and object_id and identifier:
            if other == "ip" and identifier.endswith(object_id):
                value = identifier[: -len(object_id)]
            elif other == "host" and identifier.startswith(object_id):
                value = identifier[len(object_id) :]
        if value:
            resolution = {other: _text(value, MAX_LABEL_CHARS), "date": iso_date(attributes.get("date"))}
            resolutions.append({key: item for key, item in resolution.items() if item is not None})
    resolutions.sort(key=lambda resolution: resolution.get("date", ""), reverse=True)
    return resolutions[:MAX_RESOLUTIONS]


def _relationship_items(relationships: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """The related objects or descriptors of one relationship, one-to-one or one-to-many."""
    relation = relationships.get(name)
    data = relation.get("data") if isinstance(relation, dict) else None
    if isinstance(data, dict):
        return [data]
    return [item for item in data if isinstance(item, dict)] if isinstance(data, list) else []


def _within_budget(context: dict[str, Any]) -> dict[str, Any]:
    """The context, with its bulkiest optional parts dropped (and named) if it exceeds its budget."""
    dropped = []
    for name in _DROPPABLE:
        if len(json.dumps(context, default=str).encode()) <= CONTEXT_MAX_BYTES:
            break
        if context.pop(name, None) is not None:
            dropped.append(name)
    if dropped:
        context["dropped_for_size"] = dropped
    return context


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


def gti_assessment(value: Any) -> dict[str, Any] | None:
    """Google Threat Intelligence's assessment of the object, its `{"value": ...}` wrappers unwrapped:
    `verdict` (`VERDICT_MALICIOUS`, ...), `severity` (`SEVERITY_HIGH`, ...), `threat_score` (0-100),
    `contributing_factors` (flags, scores and category lists, capped) and `description`; None when the
    object has none (VirusTotal's own tier, or a request without `x-tool`)."""
    if not isinstance(value, dict):
        return None
    factors = value.get("contributing_factors")
    trimmed = {
        "verdict": _text(_wrapped(value.get("verdict")), MAX_LABEL_CHARS),
        "severity": _text(_wrapped(value.get("severity")), MAX_LABEL_CHARS),
        "threat_score": _integer(_wrapped(value.get("threat_score"))),
        "contributing_factors": _factors(factors) if isinstance(factors, dict) else None,
        "description": _text(value.get("description")),
    }
    return {name: item for name, item in trimmed.items() if item not in (None, {}, "")} or None


def _wrapped(value: Any) -> Any:
    """The `value` of GTI's `{"value": ...}` wrapper (the value itself when not wrapped)."""
    return value.get("value") if isinstance(value, dict) else value


def _factors(factors: dict[str, Any]) -> dict[str, Any]:
    """GTI's contributing factors: flags and numbers as they are, texts cut, lists of texts
    de-duplicated and capped; anything nested deeper is left out."""
    kept: dict[str, Any] = {}
    for name, value in sorted(factors.items(), key=lambda item: str(item[0]))[:MAX_GTI_FACTORS]:
        key = str(name)[:MAX_LABEL_CHARS]
        if isinstance(value, bool | int | float):
            kept[key] = value
        elif isinstance(value, str):
            kept[key] = _text(value, MAX_LABEL_CHARS)
        elif isinstance(value, list):
            texts = list(dict.fromkeys(_strings(value, MAX_CATEGORIES * 2)))[:MAX_CATEGORIES]
            if texts:
                kept[key] = [text[:MAX_LABEL_CHARS] for text in texts]
    return kept


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


def _file(attributes: dict[str, Any], relationships: dict[str, Any]) -> dict[str, Any]:
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
        "crowdsourced_yara_results": _yara(attributes.get("crowdsourced_yara_results")),
        "sigma_analysis_stats": _counts(attributes.get("sigma_analysis_stats")),
        "crowdsourced_ids_stats": _counts(attributes.get("crowdsourced_ids_stats")),
        "contacted_urls": related_objects(relationships, "contacted_urls"),
        "contacted_domains": related_objects(relationships, "contacted_domains"),
        "contacted_ips": related_objects(relationships, "contacted_ips"),
    }


def _yara(value: Any) -> list[dict[str, str]]:
    """Crowdsourced YARA matches: rule, ruleset, source and author, capped."""
    if not isinstance(value, list):
        return []
    matches = []
    for item in value[:MAX_YARA_RULES]:
        if isinstance(item, dict):
            match = {
                key: _text(item.get(key), MAX_LABEL_CHARS)
                for key in ("rule_name", "ruleset_name", "source", "author")
            }
            matches.append({key: text for key, text in match.items() if text})
    return matches


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
        "whois_fields": parse_whois(attributes.get("whois")),
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
        "whois_fields": parse_whois(attributes.get("whois")),
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
        "serving_ip_detections": _serving_ip_detections(relationships),
        "network_location": _descriptor_id(relationships, "network_location"),
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


def _serving_ip_detections(relationships: dict[str, Any]) -> dict[str, Any] | None:
    """With deep context, the serving IP's own engine counts and flagging engines."""
    related = related_objects(relationships, "last_serving_ip_address", limit=1)
    if not related or "total" not in related[0]:
        return None
    return {
        key: related[0][key]
        for key in ("malicious", "suspicious", "total", "detections")
        if key in related[0]
    }


def _descriptor_id(relationships: dict[str, Any], name: str) -> str | None:
    items = _relationship_items(relationships, name)
    return _text(items[0].get("id"), MAX_LABEL_CHARS) if items else None


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
