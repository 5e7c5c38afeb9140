"""The context analysts look at, from real VirusTotal reports and relationships, and its size."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vtriage.models import Ioc, IocType
from vtriage.verdict import assess_ioc, load_policy
from vtriage.virustotal.context import CONTEXT_MAX_BYTES, parse_whois, trim_context

VT_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "vt"
FETCHED_AT = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
FILE_SHA256 = "4bc00f7d638e042da764e8648c03c0db46700599dd4f08d117e3e9e8b538519b"
DEFAULT = load_policy(None)
DYNAMODB_ITEM_BUDGET = 64 * 1024


def vt_fixture(name: str) -> dict[str, Any]:
    """A deep copy of a real VirusTotal document kept under tests/fixtures/vt (`data` when it has one)."""
    document: dict[str, Any] = json.loads((VT_FIXTURES / name).read_text())
    return copy.deepcopy(document.get("data", document))


def ioc(ioc_type: IocType, value: str) -> Ioc:
    return Ioc(type=ioc_type, value=value, found_at="finding.service.action")


def as_related(vt_object: dict[str, Any], **context_attributes: str) -> dict[str, Any]:
    """A real object as a relationship call returns it (deep context): the object, maybe with context."""
    related = copy.deepcopy(vt_object)
    related.pop("relationships", None)
    if context_attributes:
        related["context_attributes"] = context_attributes
    return related


def test_the_domain_context_parses_whois_key_fields_and_keeps_the_raw_text_trimmed() -> None:
    # Given the real demisto domain report, whose whois holds registrant and expiry fields
    context = assess_ioc(
        ioc(IocType.DOMAIN, "down.mykings.pw"),
        vt_fixture("demisto__test_data_domain.json"),
        DEFAULT,
        FETCHED_AT,
    ).context

    # Then the key fields are parsed (the first line carrying each wins) next to the raw text
    assert context["whois_fields"] == {
        "registrar": "Namecheap",
        "creation_date": "2017-01-21T16:26:19.0Z",
        "expiry_date": "2018-01-21T23:59:59.0Z",
        "updated_date": "2017-03-06T21:52:39.0Z",
        "registrant_country": "PA",
    }
    assert context["whois"].startswith("Domain Name: :domain_id:")
    assert context["registrar"] == "Namecheap"
    assert context["categories"]


def test_whois_fields_of_the_real_domain_and_ip_reports() -> None:
    domain = parse_whois(vt_fixture("opencti__vt_test_domain.json")["attributes"]["whois"])
    network = parse_whois(vt_fixture("demisto__TestData_ip.json")["attributes"]["whois"])

    assert domain == {
        "registrar": "CommuniGal Communication Ltd.",
        "creation_date": "2016-12-29T13:28:19Z",
        "expiry_date": "2022-12-29T13:28:19Z",
        "updated_date": "2021-12-30T08:12:59Z",
    }
    assert network["organization"] == "Emerald Onion"
    assert network["network_name"] == "ENCRYPTED-TRANSIT-IPV4"
    assert network["country"] == "US"
    assert network["creation_date"] == "2017-07-19"
    assert parse_whois(None) == {}


def test_resolutions_asked_for_in_the_lookup_give_the_ips_a_domain_resolved_to() -> None:
    # Given the real domain report with the resolutions relationship as the lookup returns it: descriptors
    # whose id is the IP followed by the domain (VirusTotal's resolution id)
    report = vt_fixture("opencti__vt_test_domain.json")
    report["relationships"] = {
        "resolutions": {
            "data": [
                {"type": "resolution", "id": "198.51.100.7tawuhoju.com"},
                {"type": "resolution", "id": "2001:db8::1tawuhoju.com"},
            ],
            "meta": {"count": 2},
        }
    }

    # When it is decided
    context = assess_ioc(ioc(IocType.DOMAIN, "tawuhoju.com"), report, DEFAULT, FETCHED_AT).context

    # Then the IPs are listed
    assert context["resolutions"] == [{"ip": "198.51.100.7"}, {"ip": "2001:db8::1"}]


def test_full_resolution_objects_give_hosts_of_an_ip_newest_first() -> None:
    relationships = {
        "resolutions": {
            "data": [
                {
                    "type": "resolution",
                    "id": "23.129.64.215old.example",
                    "attributes": {
                        "host_name": "old.example",
                        "ip_address": "23.129.64.215",
                        "date": 1500000000,
                    },
                },
                {
                    "type": "resolution",
                    "id": "23.129.64.215new.example",
                    "attributes": {
                        "host_name": "new.example",
                        "ip_address": "23.129.64.215",
                        "date": 1600000000,
                    },
                },
                {"type": "resolution", "id": "23.129.64.215descriptor.example"},
            ]
        }
    }
    attributes = vt_fixture("demisto__TestData_ip.json")["attributes"]

    context = trim_context(IocType.IP, attributes, relationships, object_id="23.129.64.215")

    assert context["resolutions"] == [
        {"host": "new.example", "date": "2020-09-13T12:26:40Z"},
        {"host": "old.example", "date": "2017-07-14T02:40:00Z"},
        {"host": "descriptor.example"},
    ]


def test_deep_context_lists_detected_urls_with_their_detections_and_communicating_files() -> None:
    # Given the real IP report with deep relationships: the real URL and domain reports as the IP's URLs
    # (only the URL has detections of its own) and the real file report as a communicating file
    report = vt_fixture("demisto__TestData_ip.json")
    report["relationships"] = {
        "urls": {"data": [as_related(vt_fixture("opencti__vt_test_url.json"))]},
        "communicating_files": {"data": [as_related(vt_fixture("opencti__vt_test_file.json"))]},
    }
    clean_url = as_related(vt_fixture("opencti__vt_test_url.json"), url="http://clean.example/")
    clean_url["attributes"].pop("url")
    clean_url["attributes"]["last_analysis_stats"] = {"harmless": 80, "malicious": 0, "suspicious": 0}
    report["relationships"]["urls"]["data"].append(clean_url)

    # When it is decided
    context = assess_ioc(ioc(IocType.IP, "23.129.64.215"), report, DEFAULT, FETCHED_AT).context

    # Then the detected URL is listed with its engine counts and its flagging engines, the clean one is not
    (detected,) = context["detected_urls"]
    assert detected["url"] == "http://soclosebutyetqq.com/69.exe"
    assert (detected["malicious"], detected["total"]) == (11, 93)
    assert {"engine": "Kaspersky", "category": "malicious", "result": "malware"} in detected["detections"]
    assert len(detected["detections"]) == 10  # capped per related object
    assert context["urls_examined"] == 2
    # and the communicating file with its name, type, threat label and counts
    (file,) = context["communicating_files"]
    assert file["id"] == FILE_SHA256
    assert file["type_description"] == "Win32 DLL"
    assert file["threat_label"] == "trojan.dllhijacker/cometer"
    assert file["malicious"] == 47


def test_relationship_descriptors_of_the_real_relationships_fixture_are_listed_by_id() -> None:
    # Given the real relationships fixture: communicating_files descriptors of an IP, without attributes
    relationships = vt_fixture("demisto__TestData_relationships.json")
    attributes = vt_fixture("demisto__TestData_ip.json")["attributes"]

    context = trim_context(IocType.IP, attributes, relationships, object_id="1.1.1.1")

    assert [file["id"] for file in context["communicating_files"]] == [
        "1471f53e5391f8a06171ffe21dec0d6d27b0201e28e66455030609b7a7ba955e",
        "fedfc48d750b959d11004f56ba49815a011295824e02684aada549505378468a",
    ]
    assert "detected_urls" not in context


def test_the_url_context_names_its_network_location_and_the_serving_ips_own_detections() -> None:
    report = vt_fixture("opencti__vt_test_url.json")
    report["relationships"] = {
        "network_location": {"data": {"type": "domain", "id": "soclosebutyetqq.com"}},
        "last_serving_ip_address": {"data": as_related(vt_fixture("demisto__TestData_ip.json"))},
    }

    context = assess_ioc(
        ioc(IocType.URL, "http://soclosebutyetqq.com/69.exe"), report, DEFAULT, FETCHED_AT
    ).context

    assert context["network_location"] == "soclosebutyetqq.com"
    assert context["serving_ip_address"] == "23.129.64.215"
    assert context["serving_ip_detections"]["malicious"] == 5
    assert context["last_final_url"] == "http://soclosebutyetqq.com/69.exe"


def test_the_file_context_keeps_crowdsourced_yara_and_contacted_hosts() -> None:
    report = vt_fixture("opencti__vt_test_file.json")
    report["relationships"] = {
        "contacted_domains": {"data": [{"type": "domain", "id": "tawuhoju.com"}]},
        "contacted_ips": {"data": [{"type": "ip_address", "id": "23.129.64.215"}]},
    }

    context = assess_ioc(ioc(IocType.FILE, FILE_SHA256), report, DEFAULT, FETCHED_AT).context

    assert context["crowdsourced_yara_results"] == [
        {
            "rule_name": "win_kerrdown_auto",
            "ruleset_name": "win.kerrdown_auto",
            "source": "https://malpedia.caad.fkie.fraunhofer.de/",
            "author": "Felix Bilstein - yara-signator at cocacoding dot com",
        }
    ]
    assert context["contacted_domains"] == [{"id": "tawuhoju.com", "type": "domain"}]
    assert context["contacted_ips"] == [{"id": "23.129.64.215", "type": "ip_address"}]
    assert context["last_submission_date"]


def test_the_largest_real_report_with_full_deep_context_stays_under_64_kb_stored() -> None:
    # Given the largest real report (the file, 38 KB) and a domain carrying every deep relationship at its
    # fullest: 40 URL objects and 40 communicating files (each a full real report), 40 resolutions,
    # a 40 KB whois and 500 DNS records
    largest = max(VT_FIXTURES.glob("*.json"), key=lambda path: path.stat().st_size)
    assert largest.name == "opencti__vt_test_file.json"
    url_object = as_related(vt_fixture("opencti__vt_test_url.json"))
    file_object = as_related(vt_fixture("opencti__vt_test_file.json"))
    domain = vt_fixture("opencti__vt_test_domain.json")
    domain["attributes"]["whois"] = "".join(f"Registrant Line {n}: some value\n" for n in range(1000))
    domain["attributes"]["last_dns_records"] = [{"type": "A", "value": "198.51.100.1", "ttl": 60}] * 500
    domain["relationships"] = {
        "urls": {"data": [url_object] * 40},
        "communicating_files": {"data": [file_object] * 40},
        "resolutions": {
            "data": [{"type": "resolution", "id": f"198.51.100.{n}tawuhoju.com"} for n in range(40)]
        },
    }
    file_report = vt_fixture(largest.name)
    file_report["attributes"]["names"] = [f"dropper-{n}.exe" for n in range(5000)]
    file_report["attributes"]["crowdsourced_yara_results"] *= 300

    # When they are decided and serialised as the cache stores them
    sizes = {
        "file": len(
            assess_ioc(ioc(IocType.FILE, FILE_SHA256), file_report, DEFAULT, FETCHED_AT).model_dump_json()
        ),
        "domain": len(
            assess_ioc(ioc(IocType.DOMAIN, "tawuhoju.com"), domain, DEFAULT, FETCHED_AT).model_dump_json()
        ),
    }

    # Then each stored enrichment stays under 64 KB (measured: the domain, the larger, is well below)
    assert max(sizes.values()) < DYNAMODB_ITEM_BUDGET
    assert all(size < CONTEXT_MAX_BYTES + 8 * 1024 for size in sizes.values())


def test_a_context_over_its_budget_drops_its_bulkiest_parts_and_says_so() -> None:
    # Given a domain whose detections alone are far over budget (10 000 flagging engines with long labels)
    attributes = vt_fixture("opencti__vt_test_domain.json")["attributes"]
    attributes["last_analysis_results"] = {
        f"Engine {n:05}": {"category": "malicious", "engine_name": f"Engine {n:05}", "result": "x" * 150}
        for n in range(10000)
    }

    # When the context is trimmed
    context = trim_context(IocType.DOMAIN, attributes)

    # Then it fits its budget, and names what it dropped
    assert len(json.dumps(context).encode()) <= CONTEXT_MAX_BYTES
    assert "detections" in context["dropped_for_size"]
    assert context["registrar"] == "CommuniGal Communication Ltd."
