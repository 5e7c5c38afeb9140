"""Every rule of the verdict engine and the policy file, on the real VirusTotal reports."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from vtriage.errors import ConfigurationError
from vtriage.models import Ioc, IocType, Verdict
from vtriage.verdict import (
    DEFAULT_POLICY_PATH,
    Crowdsourced,
    Thresholds,
    TrustedEngines,
    TypeThresholds,
    VerdictPolicy,
    assess_ioc,
    load_policy,
)

VT_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "vt"
FETCHED_AT = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
FILE_SHA256 = "4bc00f7d638e042da764e8648c03c0db46700599dd4f08d117e3e9e8b538519b"
DEFAULT = load_policy(None)


def vt_fixture(name: str) -> dict[str, Any]:
    """A deep copy of the `data` object of a real VirusTotal report kept under tests/fixtures/vt."""
    data: dict[str, Any] = json.loads((VT_FIXTURES / name).read_text())["data"]
    return copy.deepcopy(data)


def ioc(ioc_type: IocType, value: str) -> Ioc:
    return Ioc(type=ioc_type, value=value, found_at="finding.service.action")


DOMAIN = ioc(IocType.DOMAIN, "tawuhoju.com")
FILE = ioc(IocType.FILE, FILE_SHA256)
URL = ioc(IocType.URL, "http://soclosebutyetqq.com/69.exe")
IP = ioc(IocType.IP, "23.129.64.215")


def policy(**changes: Any) -> VerdictPolicy:
    """The default policy with some parts replaced, validated as a policy file would be."""
    document = DEFAULT.model_dump(mode="json")
    document.update(changes)
    return VerdictPolicy.model_validate(document)


def keep_only_flagging(vt_object: dict[str, Any], engines: set[str]) -> dict[str, Any]:
    """The report as if only these engines had flagged it: the others become undetected, stats follow."""
    results = vt_object["attributes"]["last_analysis_results"]
    for name, result in results.items():
        if result["category"] in ("malicious", "suspicious") and name not in engines:
            result["category"] = "undetected"
            result["result"] = "unrated"
    counts: dict[str, int] = {}
    for result in results.values():
        counts[result["category"]] = counts.get(result["category"], 0) + 1
    vt_object["attributes"]["last_analysis_stats"] = counts
    return vt_object


# --- the policy file ---------------------------------------------------------------------------------


def test_the_shipped_policy_file_states_the_documented_defaults() -> None:
    # Given the policy file shipped in the layer
    shipped = load_policy(DEFAULT_POLICY_PATH)

    # Then it holds exactly the defaults the code documents, per type
    assert shipped.thresholds == VerdictPolicy().thresholds
    assert shipped.trusted_engines == VerdictPolicy().trusted_engines
    assert shipped.popularity == VerdictPolicy().popularity
    assert shipped.crowdsourced == VerdictPolicy().crowdsourced
    assert shipped.community == VerdictPolicy().community
    assert shipped.thresholds.of(IocType.FILE) == Thresholds(malicious=5, suspicious=2)
    assert shipped.thresholds.of(IocType.DOMAIN) == Thresholds(malicious=3, suspicious=1)


@pytest.mark.parametrize(
    ("document", "named"),
    [
        ({"thresholds": {"file": {"malicious": 0, "suspicious": 1}}}, "thresholds.file.malicious"),
        ({"thresholds": {"url": {"malicious": 2, "suspicious": 3}}}, "thresholds.url"),
        ({"thresholds": {"hash": {"malicious": 3, "suspicious": 1}}}, "thresholds.hash"),
        ({"trusted_engines": {"engines": "Kaspersky"}}, "trusted_engines.engines"),
        ({"popularity": {"max_rank": -5}}, "popularity.max_rank"),
        ({"crowdsourced": {"sigma_levels": ["severe"]}}, "crowdsourced.sigma_levels.0"),
        ({"community": {"malicous_votes_min": 3}}, "community.malicous_votes_min"),
    ],
    ids=["zero", "suspicious-above-malicious", "unknown-type", "not-a-list", "negative", "level", "typo"],
)
def test_an_invalid_policy_file_is_a_configuration_error_naming_the_field(
    tmp_path: Path, document: dict[str, Any], named: str
) -> None:
    # Given a policy file with one mistake
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(document))

    # When it is loaded at start-up
    with pytest.raises(ConfigurationError) as raised:
        load_policy(path)

    # Then the error names the file and the field at fault
    assert str(path) in str(raised.value)
    assert f"{named}:" in str(raised.value)


@pytest.mark.parametrize(
    ("content", "said"),
    [(None, "cannot be read"), ("{not json", "not JSON"), ("[1, 2]", "must be a JSON object")],
    ids=["missing", "not-json", "not-an-object"],
)
def test_a_policy_file_that_is_missing_or_not_a_json_object_is_refused(
    tmp_path: Path, content: str | None, said: str
) -> None:
    path = tmp_path / "policy.json"
    if content is not None:
        path.write_text(content)

    with pytest.raises(ConfigurationError, match=said):
        load_policy(path)


def test_a_partial_policy_file_keeps_the_defaults_of_what_it_leaves_out(tmp_path: Path) -> None:
    # Given a policy that only raises the URL thresholds
    path = tmp_path / "policy.json"
    path.write_text(json.dumps({"thresholds": {"url": {"malicious": 12, "suspicious": 4}}}))

    # When it is loaded
    loaded = load_policy(path)

    # Then the URL thresholds change and everything else keeps its default
    assert loaded.thresholds.url == Thresholds(malicious=12, suspicious=4)
    assert loaded.thresholds.file == VerdictPolicy().thresholds.file
    assert loaded.trusted_engines == VerdictPolicy().trusted_engines
    # and the real URL report (11 engines) is no longer malicious by count
    enrichment = assess_ioc(URL, vt_fixture("opencti__vt_test_url.json"), loaded, FETCHED_AT)
    assert enrichment.reasons[1].startswith("suspicious [engine-count]: 11 of 93 engines flag it")


def test_the_legacy_constructor_sets_the_same_thresholds_for_every_type() -> None:
    legacy = VerdictPolicy(malicious_min_engines=4, suspicious_min_engines=2)

    assert {legacy.thresholds.of(t) for t in IocType} == {Thresholds(malicious=4, suspicious=2)}
    assert legacy.trusted_engines == VerdictPolicy().trusted_engines


# --- rule 1: per-type engine thresholds ---------------------------------------------------------------


def test_the_same_count_is_malicious_for_a_domain_but_only_suspicious_for_a_file() -> None:
    # Given the real file report reduced to 3 flagging engines, none of them trusted, and the real domain
    # report, which 6 engines flag
    file_report = keep_only_flagging(vt_fixture("opencti__vt_test_file.json"), {"Ad-Aware", "Zillya", "MAX"})
    assert file_report["attributes"]["last_analysis_stats"]["malicious"] == 3
    domain_policy = policy(thresholds={"domain": {"malicious": 3, "suspicious": 1}})

    # When both are decided under the default per-type thresholds
    file_enrichment = assess_ioc(FILE, file_report, DEFAULT, FETCHED_AT)
    domain_enrichment = assess_ioc(
        DOMAIN, vt_fixture("opencti__vt_test_domain.json"), domain_policy, FETCHED_AT
    )

    # Then 3 engines leave the file suspicious (files need 5) and 6 make the domain malicious (3)
    assert file_enrichment.verdict is Verdict.SUSPICIOUS
    assert file_enrichment.reasons[0] == (
        "suspicious [engine-count]: 3 of 74 engines flag it (3 malicious, 0 suspicious; file thresholds: "
        "suspicious 2, malicious 5): Ad-Aware, MAX, Zillya"
    )
    assert domain_enrichment.verdict is Verdict.MALICIOUS


def test_one_engine_flagging_a_file_stays_harmless_below_the_file_suspicious_threshold() -> None:
    # Given the real file report with a single (untrusted) engine left flagging it, and no YARA match
    report = keep_only_flagging(vt_fixture("opencti__vt_test_file.json"), {"Zillya"})
    report["attributes"].pop("crowdsourced_yara_results")
    report["attributes"]["reputation"] = 0
    report["attributes"]["total_votes"] = {"harmless": 0, "malicious": 0}

    # When it is decided
    enrichment = assess_ioc(FILE, report, DEFAULT, FETCHED_AT)

    # Then one engine is noise for a file: harmless, and the reason names the engine and the threshold
    assert enrichment.verdict is Verdict.HARMLESS
    assert enrichment.reasons == [
        "harmless [engine-count]: 1 of 74 engines flag it, below the file suspicious threshold 2: Zillya"
    ]


# --- rule 2: trusted engines, over every engine -------------------------------------------------------


def test_a_trusted_engine_past_the_twentieth_engine_alphabetically_makes_the_domain_suspicious() -> None:
    # Given the real domain report (92 engine results) where only Webroot still flags it, an engine far
    # down the alphabet
    report = keep_only_flagging(vt_fixture("opencti__vt_test_domain.json"), {"Webroot"})
    alphabetical = sorted(report["attributes"]["last_analysis_results"], key=str.casefold)
    assert alphabetical.index("Webroot") >= 20
    assert list(report["attributes"]["last_analysis_results"]).index("Webroot") >= 20
    # and a policy that trusts Webroot and needs 2 engines for suspicious (so the count alone says harmless)
    trusting = policy(
        thresholds={"domain": {"malicious": 3, "suspicious": 2}},
        trusted_engines={"engines": ["Webroot"], "suspicious_min": 1, "malicious_min": 2},
        community={"reputation_at_most": None, "malicious_votes_min": None},
    )

    # When it is decided
    enrichment = assess_ioc(DOMAIN, report, trusting, FETCHED_AT)

    # Then the trusted engine is found and decides, and the count rule's sentence follows
    assert enrichment.verdict is Verdict.SUSPICIOUS
    assert enrichment.reasons == [
        "suspicious [trusted-engines]: 1 trusted engine(s) flag it as malicious (at least 1 make it "
        "suspicious, 2 malicious; looked for among all 92 engine results): Webroot",
        "harmless [engine-count]: 1 of 92 engines flag it, below the domain suspicious threshold 2: Webroot",
    ]


def test_two_trusted_engines_make_a_file_malicious_below_the_count_threshold() -> None:
    # Given the real file report reduced to Sophos and Zillya, the last two engines alphabetically
    report = keep_only_flagging(vt_fixture("opencti__vt_test_file.json"), {"Sophos", "Zillya", "Ad-Aware"})
    trusting = policy(
        trusted_engines={"engines": ["sophos", "ZILLYA"], "suspicious_min": 1, "malicious_min": 2}
    )

    # When it is decided
    enrichment = assess_ioc(FILE, report, trusting, FETCHED_AT)

    # Then the two trusted engines (matched whatever the case) make it malicious though 3 < 5
    assert enrichment.verdict is Verdict.MALICIOUS
    assert enrichment.reasons[0] == (
        "malicious [trusted-engines]: 2 trusted engines flag it as malicious (at least 2 make it malicious; "
        "looked for among all 74 engine results): Sophos, Zillya"
    )
    assert enrichment.reasons[1].startswith("suspicious [engine-count]: 3 of 74 engines flag it")


# --- rule 3: crowdsourced YARA, Sigma and IDS (files) -------------------------------------------------


def test_the_crowdsourced_yara_match_of_the_real_file_makes_it_suspicious_when_engines_do_not() -> None:
    # Given the real file report (it matches the crowdsourced YARA rule win_kerrdown_auto) and a policy
    # under which neither the engines nor the trusted engines nor the community decide anything
    quiet = policy(
        thresholds={"file": {"malicious": 60, "suspicious": 60}},
        trusted_engines={"engines": []},
        community={"reputation_at_most": None, "malicious_votes_min": None},
    )

    # When it is decided
    enrichment = assess_ioc(FILE, vt_fixture("opencti__vt_test_file.json"), quiet, FETCHED_AT)

    # Then the YARA match makes it suspicious and the reason names the rule and its ruleset
    assert enrichment.verdict is Verdict.SUSPICIOUS
    assert enrichment.reasons[0] == (
        "suspicious [crowdsourced-rules]: crowdsourced rules match this file (they make a file suspicious, "
        "never malicious on their own): 1 YARA rule(s): win_kerrdown_auto (win.kerrdown_auto)"
    )
    assert enrichment.reasons[1].startswith("harmless [engine-count]: 47 of 74 engines flag it")


def test_the_yara_match_corroborates_the_real_file_at_the_default_policy() -> None:
    enrichment = assess_ioc(FILE, vt_fixture("opencti__vt_test_file.json"), DEFAULT, FETCHED_AT)

    assert enrichment.verdict is Verdict.MALICIOUS
    assert "crowdsourced rules also match: 1 YARA rule(s): win_kerrdown_auto (win.kerrdown_auto)" in (
        enrichment.reasons
    )


@pytest.mark.parametrize(
    ("attributes", "said"),
    [
        ({"sigma_analysis_stats": {"critical": 0, "high": 2, "medium": 5, "low": 9}}, "2 Sigma rule(s)"),
        (
            {"sigma_analysis_summary": {"Sigma Integrated Rule Set (GitHub)": {"critical": 1, "high": 0}}},
            "1 Sigma",
        ),
        ({"crowdsourced_ids_stats": {"high": 1, "medium": 0, "low": 3, "info": 7}}, "1 IDS rule(s)"),
    ],
    ids=["sigma-stats", "sigma-summary", "ids"],
)
def test_sigma_and_ids_matches_of_high_severity_make_a_clean_file_suspicious(
    attributes: dict[str, Any], said: str
) -> None:
    # Given the real file report as if no engine flagged it and no YARA rule matched, plus Sigma/IDS results
    report = keep_only_flagging(vt_fixture("opencti__vt_test_file.json"), set())
    report["attributes"].pop("crowdsourced_yara_results")
    report["attributes"].update(attributes)
    report["attributes"]["reputation"] = 0
    report["attributes"]["total_votes"] = {}

    # When it is decided
    enrichment = assess_ioc(FILE, report, DEFAULT, FETCHED_AT)

    # Then it is suspicious, never malicious, on crowdsourced rules alone
    assert enrichment.verdict is Verdict.SUSPICIOUS
    assert enrichment.reasons[0].startswith("suspicious [crowdsourced-rules]:")
    assert said in enrichment.reasons[0]


def test_low_severity_sigma_and_ids_matches_alone_do_not_count() -> None:
    report = keep_only_flagging(vt_fixture("opencti__vt_test_file.json"), set())
    report["attributes"].pop("crowdsourced_yara_results")
    report["attributes"].update(
        {"sigma_analysis_stats": {"low": 9, "medium": 4}, "crowdsourced_ids_stats": {"low": 3, "info": 7}}
    )
    report["attributes"]["reputation"] = 0
    report["attributes"]["total_votes"] = {}

    assert assess_ioc(FILE, report, DEFAULT, FETCHED_AT).verdict is Verdict.HARMLESS


def test_crowdsourced_rules_count_only_for_files() -> None:
    # Given the real URL report with YARA results grafted on and engines silenced
    report = keep_only_flagging(vt_fixture("opencti__vt_test_url.json"), set())
    report["attributes"]["crowdsourced_yara_results"] = [{"rule_name": "x", "ruleset_name": "y"}]
    quiet = policy(community={"reputation_at_most": None, "malicious_votes_min": None})

    assert assess_ioc(URL, report, quiet, FETCHED_AT).verdict is Verdict.HARMLESS
    assert Crowdsourced().yara_min_matches == 1


# --- rule 4: popularity softens a weak detection, never a strong one ----------------------------------


def test_a_top_popularity_rank_never_clears_the_real_malicious_domain() -> None:
    # Given the real malicious domain (6 engines) as if Cisco Umbrella ranked it 5th
    report = vt_fixture("opencti__vt_test_domain.json")
    report["attributes"]["popularity_ranks"]["Cisco Umbrella"]["rank"] = 5

    # When it is decided
    enrichment = assess_ioc(DOMAIN, report, DEFAULT, FETCHED_AT)

    # Then the detections decide, and the reasons say the rank was looked at and could not clear it
    assert enrichment.verdict is Verdict.MALICIOUS
    assert enrichment.reasons[0].startswith("malicious [engine-count]: 6 of 93 engines")
    assert (
        "popularity: Cisco Umbrella ranks it 5, within the top 10000, which never clears a detection "
        "that reached the malicious threshold"
    ) in enrichment.reasons


def test_a_top_popularity_rank_softens_a_weak_detection_by_untrusted_engines() -> None:
    # Given the real domain with only CRDF and Webroot (untrusted) flagging it, ranked 42nd by Cisco Umbrella
    report = keep_only_flagging(vt_fixture("opencti__vt_test_domain.json"), {"CRDF", "Webroot"})
    report["attributes"]["popularity_ranks"]["Cisco Umbrella"]["rank"] = 42
    report["attributes"]["reputation"] = 0
    report["attributes"]["total_votes"] = {}

    # When it is decided
    enrichment = assess_ioc(DOMAIN, report, DEFAULT, FETCHED_AT)

    # Then the weak detection is softened to harmless, with the rank and the engines in the reasons
    assert enrichment.verdict is Verdict.HARMLESS
    assert enrichment.reasons == [
        "harmless [popularity]: a weak detection on a popular domain (Cisco Umbrella ranks it 42, within the "
        "top 10000): 2 malicious and 0 suspicious engines, below the domain malicious threshold 3",
        "suspicious [engine-count]: 2 of 92 engines flag it (2 malicious, 0 suspicious; domain thresholds: "
        "suspicious 1, malicious 3): CRDF, Webroot",
    ]


def test_the_real_rank_outside_the_top_does_not_soften_and_a_trusted_flag_is_never_softened() -> None:
    # Given the real domain flagged only by Kaspersky (trusted), with its real rank 506742, then ranked 42nd
    report = keep_only_flagging(vt_fixture("opencti__vt_test_domain.json"), {"Kaspersky"})
    ranked = copy.deepcopy(report)
    ranked["attributes"]["popularity_ranks"]["Cisco Umbrella"]["rank"] = 42

    # When both are decided
    unranked_verdict = assess_ioc(DOMAIN, report, DEFAULT, FETCHED_AT)
    ranked_verdict = assess_ioc(DOMAIN, ranked, DEFAULT, FETCHED_AT)

    # Then both stay suspicious
    assert unranked_verdict.verdict is Verdict.SUSPICIOUS
    assert ranked_verdict.verdict is Verdict.SUSPICIOUS
    assert (
        "popularity: Cisco Umbrella ranks it 42, within the top 10000, which does not soften a trusted "
        "engine's flag"
    ) in ranked_verdict.reasons


# --- rule 5: reputation and community votes -----------------------------------------------------------


def test_reputation_and_votes_raise_the_real_url_to_suspicious_when_engines_do_not_decide() -> None:
    # Given the real URL report (reputation -154, 5 malicious votes, 0 harmless) under thresholds above its 11
    # engines and no trusted engine
    quiet = policy(thresholds={"url": {"malicious": 50, "suspicious": 50}}, trusted_engines={"engines": []})

    # When it is decided
    enrichment = assess_ioc(URL, vt_fixture("opencti__vt_test_url.json"), quiet, FETCHED_AT)

    # Then the community signals raise it to suspicious, and say which
    assert enrichment.verdict is Verdict.SUSPICIOUS
    assert enrichment.reasons[0] == (
        "suspicious [community]: VirusTotal's community disagrees with the engines (community signals make "
        "an IOC suspicious, never malicious): reputation -154 (at most -10); 5 malicious community votes "
        "against 0 harmless (at least 3)"
    )


def test_community_signals_alone_never_make_an_ioc_malicious() -> None:
    # Given the real IP report as if no engine flagged it, with overwhelming community votes
    report = keep_only_flagging(vt_fixture("demisto__TestData_ip.json"), set())
    report["attributes"]["last_analysis_stats"] = {"harmless": 80, "undetected": 7}
    report["attributes"]["reputation"] = -1000
    report["attributes"]["total_votes"] = {"harmless": 2, "malicious": 500}

    # When it is decided
    enrichment = assess_ioc(IP, report, DEFAULT, FETCHED_AT)

    # Then it is suspicious at most
    assert enrichment.verdict is Verdict.SUSPICIOUS
    assert enrichment.reasons[0].startswith("suspicious [community]:")


def test_votes_below_the_minimum_or_outvoted_do_not_count() -> None:
    # Given the real IP report (reputation -4, 1 malicious vote) with engines silenced
    report = keep_only_flagging(vt_fixture("demisto__TestData_ip.json"), set())
    report["attributes"]["last_analysis_stats"] = {"harmless": 80, "undetected": 7}
    outvoted = copy.deepcopy(report)
    outvoted["attributes"]["total_votes"] = {"harmless": 9, "malicious": 4}

    assert assess_ioc(IP, report, DEFAULT, FETCHED_AT).verdict is Verdict.HARMLESS
    assert assess_ioc(IP, outvoted, DEFAULT, FETCHED_AT).verdict is Verdict.HARMLESS


def test_a_policy_can_be_built_from_its_parts() -> None:
    built = VerdictPolicy(
        thresholds=TypeThresholds(ip=Thresholds(malicious=10, suspicious=5)),
        trusted_engines=TrustedEngines(engines=("Kaspersky",)),
    )

    enrichment = assess_ioc(IP, vt_fixture("demisto__TestData_ip.json"), built, FETCHED_AT)

    assert enrichment.verdict is Verdict.SUSPICIOUS
    assert enrichment.reasons[0].startswith(
        "suspicious [engine-count]: 7 of 87 engines flag it (5 malicious, 2 suspicious; ip thresholds: "
        "suspicious 5, malicious 10)"
    )
