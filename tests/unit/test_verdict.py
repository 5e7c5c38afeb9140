"""The verdict policy and the trimmed context, on real VirusTotal reports (tests/fixtures/vt)."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from vtriage.models import Enrichment, Ioc, IocType, Verdict
from vtriage.verdict import TrustedEngines, VerdictPolicy, assess_ioc
from vtriage.virustotal.context import WHOIS_MAX_CHARS, trim_context
from vtriage_local.replay import bundled_recordings

VT_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "vt"
FETCHED_AT = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
FILE_SHA256 = "4bc00f7d638e042da764e8648c03c0db46700599dd4f08d117e3e9e8b538519b"
DEFAULT = VerdictPolicy()


def vt_fixture(name: str) -> dict[str, Any]:
    """The `data` object of a real VirusTotal report kept under tests/fixtures/vt."""
    data: dict[str, Any] = json.loads((VT_FIXTURES / name).read_text())["data"]
    return data


def recording(collection: str, name: str) -> dict[str, Any]:
    """The `data` object of one of the bundled replay recordings."""
    data: dict[str, Any] = json.loads((bundled_recordings() / collection / name).read_text())["data"]
    return data


def ioc(ioc_type: IocType, value: str) -> Ioc:
    return Ioc(type=ioc_type, value=value, found_at="finding.service.action")


REAL_REPORTS = [
    ("opencti__vt_test_domain.json", ioc(IocType.DOMAIN, "tawuhoju.com"), 6, 93),
    ("opencti__vt_test_file.json", ioc(IocType.FILE, FILE_SHA256), 47, 74),
    ("opencti__vt_test_url.json", ioc(IocType.URL, "http://soclosebutyetqq.com/69.exe"), 11, 93),
    ("demisto__TestData_ip.json", ioc(IocType.IP, "23.129.64.215"), 5, 87),
    ("demisto__test_data_domain.json", ioc(IocType.DOMAIN, "down.mykings.pw"), 8, 98),
]
DEFAULT_MALICIOUS_THRESHOLD = {IocType.FILE: 5, IocType.URL: 3, IocType.DOMAIN: 3, IocType.IP: 3}


@pytest.mark.parametrize(("fixture", "indicator", "malicious", "total"), REAL_REPORTS)
def test_every_real_report_is_malicious_at_the_default_threshold(
    fixture: str, indicator: Ioc, malicious: int, total: int
) -> None:
    # Given a real VirusTotal report whose stats count at least 3 malicious engines
    vt_object = vt_fixture(fixture)

    # When the default policy decides
    enrichment = assess_ioc(indicator, vt_object, DEFAULT, FETCHED_AT)

    # Then it is malicious, with the counts of the stats and a reason naming rule, counts and threshold
    assert enrichment.verdict is Verdict.MALICIOUS
    assert (enrichment.stats.malicious, enrichment.stats.total) == (malicious, total)
    threshold = DEFAULT_MALICIOUS_THRESHOLD[indicator.type]
    assert enrichment.reasons[0].startswith(
        f"malicious [engine-count]: {malicious} of {total} engines flag it as malicious "
        f"({indicator.type.value} threshold {threshold})"
    )
    assert enrichment.ioc_type is indicator.type
    assert enrichment.value == indicator.value
    assert enrichment.fetched_at == FETCHED_AT
    assert enrichment.cached is False


def test_the_reason_names_every_flagging_engine_not_only_the_first_ones() -> None:
    # Given the real file report: 47 malicious engines spread over 74 results
    vt_object = vt_fixture("opencti__vt_test_file.json")
    flagging = sorted(
        name
        for name, result in vt_object["attributes"]["last_analysis_results"].items()
        if result["category"] == "malicious"
    )
    assert len(flagging) == 47

    # When it is decided
    enrichment = assess_ioc(ioc(IocType.FILE, FILE_SHA256), vt_object, DEFAULT, FETCHED_AT)

    # Then every one of them is named, including those far down the alphabet and the result list
    named = enrichment.reasons[0].split("(file threshold 5): ", 1)[1].split(", ")
    assert sorted(named) == flagging
    assert "Zillya" in named
    assert "Panda" in named  # the last malicious engine in the report's own order


def test_the_domain_reason_reads_as_a_sentence_an_analyst_understands() -> None:
    enrichment = assess_ioc(
        ioc(IocType.DOMAIN, "tawuhoju.com"), vt_fixture("opencti__vt_test_domain.json"), DEFAULT, FETCHED_AT
    )

    # The rule that decided comes first, then what the other rules had to say
    assert enrichment.reasons == [
        "malicious [engine-count]: 6 of 93 engines flag it as malicious (domain threshold 3): "
        "Avira, CRDF, Forcepoint ThreatSeeker, Fortinet, Kaspersky, Webroot",
        "trusted engines flagging it as malicious: Fortinet, Kaspersky",
        "community: reputation -37 (at most -10)",
    ]


def test_a_trimmed_report_is_judged_on_its_stats_and_says_it_names_fewer_engines() -> None:
    # Given the demisto IP report: 3 engines listed, while its stats count 5 malicious and 2 suspicious
    vt_object = vt_fixture("demisto__TestData_ip.json")
    assert len(vt_object["attributes"]["last_analysis_results"]) == 3

    # When it is decided
    enrichment = assess_ioc(ioc(IocType.IP, "23.129.64.215"), vt_object, DEFAULT, FETCHED_AT)

    # Then the stats decide, and the reason is honest about the engines it can name
    assert enrichment.verdict is Verdict.MALICIOUS
    assert (enrichment.stats.malicious, enrichment.stats.suspicious) == (5, 2)
    assert enrichment.reasons == [
        "malicious [engine-count]: 5 of 87 engines flag it as malicious (ip threshold 3): GreenSnow "
        "(the report names 1 of the 5); 2 more say suspicious: Snort IP sample list "
        "(the report names 1 of the 2)"
    ]


def test_a_stricter_malicious_threshold_turns_the_file_suspicious() -> None:
    # Given a policy that wants more malicious engines than the file's 47, and trusts no engine
    strict = VerdictPolicy(
        malicious_min_engines=48, suspicious_min_engines=1, trusted_engines=TrustedEngines(engines=())
    )

    # When the file is decided
    enrichment = assess_ioc(
        ioc(IocType.FILE, FILE_SHA256), vt_fixture("opencti__vt_test_file.json"), strict, FETCHED_AT
    )

    # Then it is only suspicious, and the reason gives both thresholds
    assert enrichment.verdict is Verdict.SUSPICIOUS
    assert enrichment.reasons[0].startswith(
        "suspicious [engine-count]: 47 of 74 engines flag it (47 malicious, 0 suspicious; "
        "file thresholds: suspicious 1, malicious 48): "
    )


def test_a_higher_suspicious_threshold_than_the_flags_makes_it_harmless_and_says_why() -> None:
    # Given a policy that needs 8 flagging engines while the IP has 5 malicious + 2 suspicious
    lenient = VerdictPolicy(malicious_min_engines=8, suspicious_min_engines=8)

    # When the IP is decided
    enrichment = assess_ioc(
        ioc(IocType.IP, "23.129.64.215"), vt_fixture("demisto__TestData_ip.json"), lenient, FETCHED_AT
    )

    # Then it is harmless, and the reason says 7 engines flagged it, under the threshold
    assert enrichment.verdict is Verdict.HARMLESS
    assert enrichment.reasons[0].startswith(
        "harmless [engine-count]: 7 of 87 engines flag it, below the ip suspicious threshold 8"
    )


def test_the_synthetic_suspicious_domain_is_suspicious_with_engines_past_the_first_twenty() -> None:
    # Given the bundled synthetic recording: 1 malicious and 1 suspicious engine out of 90
    vt_object = recording("domains", "synthetic-telemetry-sync.net.json")
    engines = list(vt_object["attributes"]["last_analysis_results"])
    assert engines.index("Sophos") >= 20
    assert engines.index("Quttera") >= 20

    # When it is decided
    enrichment = assess_ioc(ioc(IocType.DOMAIN, "telemetry-sync.net"), vt_object, DEFAULT, FETCHED_AT)

    # Then it is suspicious and both engines are named, Sophos also as a trusted engine
    assert enrichment.verdict is Verdict.SUSPICIOUS
    assert enrichment.reasons == [
        "suspicious [engine-count]: 2 of 90 engines flag it (1 malicious, 1 suspicious; domain thresholds: "
        "suspicious 1, malicious 3): Quttera, Sophos",
        "trusted engines flagging it as malicious: Sophos",
    ]


def test_the_synthetic_popular_domain_is_harmless() -> None:
    # Given the bundled synthetic recording of a popular domain no engine flags
    vt_object = recording("domains", "synthetic-aws.amazon.com.json")

    # When it is decided
    enrichment = assess_ioc(ioc(IocType.DOMAIN, "aws.amazon.com"), vt_object, DEFAULT, FETCHED_AT)

    # Then it is harmless, and its popularity rank is in the context
    assert enrichment.verdict is Verdict.HARMLESS
    assert enrichment.reasons == [
        "harmless [engine-count]: none of the 90 engines that analysed it flag it "
        "(88 harmless, 2 undetected of 90)"
    ]
    assert enrichment.context["popularity_ranks"]["Cisco Umbrella"]["rank"] == 310


def test_a_popularity_rank_never_clears_a_domain_that_engines_flag() -> None:
    # Given the real malicious domain, which also carries a Cisco Umbrella rank
    vt_object = vt_fixture("opencti__vt_test_domain.json")
    assert vt_object["attributes"]["popularity_ranks"]

    # When it is decided
    enrichment = assess_ioc(ioc(IocType.DOMAIN, "tawuhoju.com"), vt_object, DEFAULT, FETCHED_AT)

    # Then the detections decide
    assert enrichment.verdict is Verdict.MALICIOUS


def test_an_ioc_virustotal_never_saw_is_unknown() -> None:
    # Given VirusTotal answered 404 (the client returns None)
    indicator = ioc(IocType.URL, "http://www.somedomain.com/this/is/my/url")

    # When it is decided
    enrichment = assess_ioc(indicator, None, DEFAULT, FETCHED_AT)

    # Then it is unknown, says so, and links to the GUI by the URL identifier
    assert enrichment.verdict is Verdict.UNKNOWN
    assert enrichment.reasons == [
        "unknown [not-found]: VirusTotal has never seen this URL (404 NotFoundError)",
    ]
    assert enrichment.stats.total == 0
    assert enrichment.context == {}
    assert enrichment.link == (
        "https://www.virustotal.com/gui/url/aHR0cDovL3d3dy5zb21lZG9tYWluLmNvbS90aGlzL2lzL215L3VybA"
    )


@pytest.mark.parametrize(
    "stats",
    [None, {}, {"type-unsupported": 70, "failure": 2, "timeout": 1}],
    ids=["no-stats", "empty-stats", "no-engine-looked"],
)
def test_an_object_no_engine_analysed_is_unknown(stats: dict[str, int] | None) -> None:
    # Given a report whose stats show no engine that gave an opinion
    vt_object = copy.deepcopy(vt_fixture("opencti__vt_test_file.json"))
    vt_object["attributes"].pop("last_analysis_stats")
    if stats is not None:
        vt_object["attributes"]["last_analysis_stats"] = stats

    # When it is decided
    enrichment = assess_ioc(ioc(IocType.FILE, FILE_SHA256), vt_object, DEFAULT, FETCHED_AT)

    # Then it is unknown, whatever the (stale) engine results say
    assert enrichment.verdict is Verdict.UNKNOWN
    assert enrichment.reasons[0].startswith(
        "unknown [not-analysed]: VirusTotal knows this file but no engine has analysed it"
    )


def test_a_skipped_ioc_gets_no_verdict() -> None:
    skipped = Ioc(
        type=IocType.IP,
        value="192.0.2.10",
        found_at="finding.remoteIp",
        skipped_reason="documentation address",
    )

    with pytest.raises(ValueError, match="skipped"):
        assess_ioc(skipped, None, DEFAULT, FETCHED_AT)


def test_a_policy_with_suspicious_above_malicious_is_refused() -> None:
    with pytest.raises(ValidationError, match="must not exceed"):
        VerdictPolicy(malicious_min_engines=2, suspicious_min_engines=3)


def test_links_point_at_the_virustotal_gui_page_of_each_type() -> None:
    links = {
        indicator.type: assess_ioc(indicator, vt_fixture(fixture), DEFAULT, FETCHED_AT).link
        for fixture, indicator, _, _ in REAL_REPORTS[:4]
    }

    assert links == {
        IocType.DOMAIN: "https://www.virustotal.com/gui/domain/tawuhoju.com",
        IocType.FILE: f"https://www.virustotal.com/gui/file/{FILE_SHA256}",
        # a URL links by VirusTotal's own id for it, the SHA-256 of the canonical URL
        IocType.URL: "https://www.virustotal.com/gui/url/"
        "7d83e9f686ff0122ded311f27aababf6922800a45a23a4dacc860b56ccada4cb",
        IocType.IP: "https://www.virustotal.com/gui/ip-address/23.129.64.215",
    }


def test_the_file_context_holds_what_an_analyst_needs_and_stays_small() -> None:
    # Given the largest real report (the file, 38 KB on disk)
    enrichment = assess_ioc(
        ioc(IocType.FILE, FILE_SHA256), vt_fixture("opencti__vt_test_file.json"), DEFAULT, FETCHED_AT
    )
    context = enrichment.context

    # Then the context carries detections by engine with labels, for flagging engines only
    assert len(context["detections"]) == 47
    assert {"engine": "ESET-NOD32", "category": "malicious", "result": "a variant of Win32/OceanLotus.B"} in (
        context["detections"]
    )
    assert {detection["category"] for detection in context["detections"]} == {"malicious"}
    # and the classification, names, type, size and dates as ISO-8601 UTC
    assert context["popular_threat_classification"]["suggested_threat_label"] == "trojan.dllhijacker/cometer"
    assert context["names"] == ["."]
    assert context["type_description"] == "Win32 DLL"
    assert context["size"] == 87040
    assert context["first_submission_date"] == "2018-08-22T19:53:49Z"
    assert context["last_analysis_date"] == "2021-11-09T06:48:26Z"
    # and leaves out the bulky parts
    assert "last_analysis_results" not in context
    assert "pe_info" not in context
    # and the whole enrichment stays far below DynamoDB's and Step Functions' limits
    assert len(json.dumps(context).encode()) < 32 * 1024
    assert len(enrichment.model_dump_json().encode()) < 32 * 1024


def test_the_file_context_caps_names_and_keeps_the_signature_summary() -> None:
    # Given a file report with many names and a signature block
    attributes = copy.deepcopy(vt_fixture("opencti__vt_test_file.json")["attributes"])
    attributes["names"] = [f"dropper-{number}.exe" for number in range(200)]
    attributes["signature_info"] = {
        "product": "Example Tool",
        "verified": "Signed",
        "x509": [{"big": "x" * 5000}],
    }

    # When the context is trimmed
    context = trim_context(IocType.FILE, attributes)

    # Then names are capped with the total kept, and the signature keeps its summary fields only
    assert len(context["names"]) == 10
    assert context["names_total"] == 200
    assert context["signature_info"] == {"verified": "Signed", "product": "Example Tool"}


def test_the_domain_context_holds_dns_registrar_categories_whois_and_ranks() -> None:
    context = assess_ioc(
        ioc(IocType.DOMAIN, "tawuhoju.com"), vt_fixture("opencti__vt_test_domain.json"), DEFAULT, FETCHED_AT
    ).context

    assert context["registrar"] == "CommuniGal Communication Ltd."
    assert context["creation_date"] == "2016-12-29T13:28:19Z"
    assert context["categories"]["Webroot"] == "Malware Sites"
    assert {"type": "NS", "value": "ns-28.awsdns-03.com", "ttl": 21600} in context["last_dns_records"]
    assert context["popularity_ranks"] == {"Cisco Umbrella": {"rank": 506742, "date": "2022-06-21T16:58:08Z"}}
    assert context["whois"].startswith("Creation Date: 2016-12-29T13:28:19Z\nDNSSEC: unsigned")
    assert "last_https_certificate" not in context


def test_a_long_whois_and_many_dns_records_are_trimmed() -> None:
    # Given a domain with a 40 KB whois record and 500 DNS records
    attributes = copy.deepcopy(vt_fixture("opencti__vt_test_domain.json")["attributes"])
    attributes["whois"] = "".join(f"Registrant Line {number}: some value\n" for number in range(1000))
    attributes["last_dns_records"] = [
        {"type": "A", "value": f"198.51.100.{n % 250}", "ttl": 60} for n in range(500)
    ]

    # When the context is trimmed
    context = trim_context(IocType.DOMAIN, attributes)

    # Then the whois is cut at a line to about 2 KB and says so, and the records are capped
    assert len(context["whois"]) < WHOIS_MAX_CHARS + 100
    assert context["whois"].endswith("characters shown]")
    assert "Registrant Line 0: some value\n" in context["whois"]
    assert len(context["last_dns_records"]) == 20


def test_the_ip_context_holds_network_owner_and_whois() -> None:
    context = assess_ioc(
        ioc(IocType.IP, "23.129.64.215"), vt_fixture("demisto__TestData_ip.json"), DEFAULT, FETCHED_AT
    ).context

    assert context["asn"] == 396507
    assert context["as_owner"] == "EMERALD-ONION"
    assert context["country"] == "US"
    assert context["network"] == "23.129.64.0/24"
    assert context["whois"].startswith("NetRange: 23.129.64.0 - 23.129.64.255")
    assert [detection["engine"] for detection in context["detections"]] == [
        "GreenSnow",
        "Snort IP sample list",
    ]


def test_the_url_context_holds_final_url_categories_response_code_and_serving_ip() -> None:
    # Given the real URL report, looked up with its last_serving_ip_address relationship
    vt_object = copy.deepcopy(vt_fixture("opencti__vt_test_url.json"))
    vt_object["relationships"] = {
        "last_serving_ip_address": {"data": {"type": "ip_address", "id": "203.0.113.9"}}
    }

    # When it is decided
    context = assess_ioc(
        ioc(IocType.URL, "http://soclosebutyetqq.com/69.exe"), vt_object, DEFAULT, FETCHED_AT
    ).context

    # Then the context holds what the URL led to
    assert context["last_final_url"] == "http://soclosebutyetqq.com/69.exe"
    assert context["last_http_response_code"] == 200
    assert context["categories"]["Sophos"] == "command and control"
    assert context["threat_names"] == ["C2/Generic-A"]
    assert context["serving_ip_address"] == "203.0.113.9"
    assert context["first_submission_date"] == "2016-03-01T23:31:59Z"
    assert "last_http_response_headers" not in context


def test_an_enrichment_survives_a_json_round_trip() -> None:
    # Given an enrichment as the cache would store it
    enrichment = assess_ioc(
        ioc(IocType.FILE, FILE_SHA256), vt_fixture("opencti__vt_test_file.json"), DEFAULT, FETCHED_AT
    )

    # When it is written and read back
    restored = Enrichment.model_validate_json(enrichment.model_dump_json())

    # Then nothing is lost
    assert restored == enrichment
