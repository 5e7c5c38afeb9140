"""Google Threat Intelligence: the x-tool header every request carries, and the `gti-assessment` rule of
the verdict policy, on synthetic recordings built from GTI's documented object shapes
(tests/fixtures/vt/synthetic-gti-*.json; tests/fixtures/vt/PROVENANCE.md)."""

from __future__ import annotations

import copy
import json
import random
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from vtriage import __version__
from vtriage.adapters.virustotal import X_TOOL, VirusTotalClient
from vtriage.errors import ConfigurationError
from vtriage.models import Ioc, IocType, Verdict
from vtriage.verdict import DEFAULT_POLICY_PATH, GtiAssessment, VerdictPolicy, assess_ioc, load_policy
from vtriage.virustotal.context import trim_context
from vtriage_local.replay import ReplayServer

VT_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "vt"
FETCHED_AT = datetime(2026, 1, 2, 9, 0, tzinfo=UTC)
DEFAULT = load_policy(None)
API_KEY = "gti-k3y-0123456789abcdef0123456789abcdef0123456789abcdef01234567"

FILE_FEW_ENGINES = "synthetic-gti-file-malicious-few-engines.json"
DOMAIN_SUSPICIOUS = "synthetic-gti-domain-suspicious-no-engines.json"
DOMAIN_BENIGN_WEAK = "synthetic-gti-domain-mandiant-benign-weak-detection.json"
DOMAIN_BENIGN_STRONG = "synthetic-gti-domain-mandiant-benign-strong-detection.json"
IP_BENIGN_TRUSTED = "synthetic-gti-ip-mandiant-benign-trusted-engine.json"
SYNTHETIC = {
    FILE_FEW_ENGINES: IocType.FILE,
    DOMAIN_SUSPICIOUS: IocType.DOMAIN,
    DOMAIN_BENIGN_WEAK: IocType.DOMAIN,
    DOMAIN_BENIGN_STRONG: IocType.DOMAIN,
    IP_BENIGN_TRUSTED: IocType.IP,
}
REAL = {
    "opencti__vt_test_domain.json": IocType.DOMAIN,
    "opencti__vt_test_file.json": IocType.FILE,
    "opencti__vt_test_url.json": IocType.URL,
    "demisto__TestData_ip.json": IocType.IP,
}


def vt_object(name: str) -> dict[str, Any]:
    """A deep copy of the `data` object of a recording under tests/fixtures/vt."""
    data: dict[str, Any] = json.loads((VT_FIXTURES / name).read_text())["data"]
    return copy.deepcopy(data)


def ioc_of(ioc_type: IocType, data: dict[str, Any]) -> Ioc:
    value = data["attributes"]["url"] if ioc_type is IocType.URL else data["id"]
    return Ioc(type=ioc_type, value=value, found_at="finding.service.action")


def assess(name: str, policy: VerdictPolicy = DEFAULT, **attributes: Any) -> tuple[Verdict, list[str]]:
    """The verdict and reasons of a recording, with some attributes replaced (None removes one)."""
    data = vt_object(name)
    for key, value in attributes.items():
        if value is None:
            data["attributes"].pop(key, None)
        else:
            data["attributes"][key] = value
    enrichment = assess_ioc(ioc_of(SYNTHETIC.get(name) or REAL[name], data), data, policy, FETCHED_AT)
    return enrichment.verdict, enrichment.reasons


def with_gti(policy: VerdictPolicy = DEFAULT, **changes: Any) -> VerdictPolicy:
    """The policy with some settings of its gti_assessment rule changed, validated as a file would be."""
    document = policy.model_dump(mode="json")
    document["gti_assessment"].update(changes)
    return VerdictPolicy.model_validate(document)


# --- the rule, table-driven --------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    recording: str
    verdict: Verdict
    decided_by: str
    says: tuple[str, ...]


CASES = {
    "gti-malicious-with-one-engine": Case(
        FILE_FEW_ENGINES,
        Verdict.MALICIOUS,
        "malicious [gti-assessment]: Google Threat Intelligence's verdict is malicious (severity high, "
        "threat score 80 of 100). A GTI malicious verdict is a strong signal: it makes the file malicious "
        "whatever the engine count",
        ("harmless [engine-count]: 1 of 74 engines flag it, below the file suspicious threshold 2: Bkav",),
    ),
    "gti-suspicious-with-no-engine": Case(
        DOMAIN_SUSPICIOUS,
        Verdict.SUSPICIOUS,
        "suspicious [gti-assessment]: Google Threat Intelligence's verdict is suspicious (severity medium, "
        "threat score 55 of 100). A GTI suspicious verdict is a strong signal: it makes the domain "
        "suspicious whatever the engine count",
        ("harmless [engine-count]: none of the 92 engines",),
    ),
    "mandiant-benign-softens-two-weak-engines": Case(
        DOMAIN_BENIGN_WEAK,
        Verdict.HARMLESS,
        "harmless [gti-assessment]: a Mandiant analyst assessed this domain as benign (Google Threat "
        "Intelligence's verdict: benign, severity none, threat score 0 of 100), which softens a weak engine "
        "detection: 2 malicious and 0 suspicious of 92 engines, below the domain malicious threshold 3, "
        "none of them a trusted engine",
        ("suspicious [engine-count]: 2 of 92 engines flag it", "alphaMountain.ai, CRDF"),
    ),
    "mandiant-benign-never-clears-a-strong-detection": Case(
        DOMAIN_BENIGN_STRONG,
        Verdict.MALICIOUS,
        "malicious [engine-count]: 5 of 92 engines flag it as malicious (domain threshold 3)",
        ("a Mandiant analyst assessed this domain as benign", "which never clears a malicious verdict"),
    ),
    "mandiant-benign-never-softens-a-trusted-engine": Case(
        IP_BENIGN_TRUSTED,
        Verdict.SUSPICIOUS,
        "suspicious [engine-count]: 1 of 92 engines flag it",
        (
            "trusted engines flagging it as malicious: Fortinet",
            "a Mandiant analyst assessed this IP address as benign",
            "which does not soften a trusted engine's flag",
        ),
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_the_gti_assessment_rule_on_the_documented_shapes(case: Case) -> None:
    # Given a recording carrying a gti_assessment, at the shipped policy
    # When its IOC is assessed
    verdict, reasons = assess(case.recording)

    # Then the verdict is the rule's, the first reason says which rule decided and why in plain words,
    # and the other reasons say what else was seen
    assert verdict is case.verdict
    assert reasons[0].startswith(case.decided_by)
    rest = "\n".join(reasons[1:])
    for said in case.says:
        assert said in rest


@pytest.mark.parametrize("name", sorted(SYNTHETIC))
def test_without_a_gti_assessment_the_engines_alone_decide(name: str) -> None:
    # Given a recording whose gti_assessment is taken away (VirusTotal's own tier, or no x-tool header)
    # When it is assessed at the shipped policy and at a policy with every GTI setting off
    verdict, reasons = assess(name, gti_assessment=None)
    off = with_gti(malicious_verdict=None, suspicious_verdict=None, analyst_benign_softens=False)
    unaffected = assess(name, off, gti_assessment=None)

    # Then the GTI settings change nothing, and no reason speaks of GTI or Mandiant
    assert (verdict, reasons) == unaffected
    assert "gti-assessment" not in " ".join(reasons)
    assert not any("Google Threat Intelligence" in reason or "Mandiant" in reason for reason in reasons)


@pytest.mark.parametrize("name", sorted(REAL))
def test_the_real_reports_which_carry_no_gti_assessment_are_judged_as_before(name: str) -> None:
    # Given the real VirusTotal reports, none of which carries a gti_assessment
    assert "gti_assessment" not in vt_object(name)["attributes"]

    # When each is assessed with the GTI rule at its defaults and with it turned off
    off = with_gti(malicious_verdict=None, suspicious_verdict=None, analyst_benign_softens=False)

    # Then both give the same verdict and the same reasons, word for word
    assert assess(name) == assess(name, off)


def test_the_engine_verdicts_the_gti_cases_would_have_had_without_gti() -> None:
    # Given the recordings without their gti_assessment
    # Then the engines alone say: one untrusted engine on a file is harmless, two on a domain suspicious,
    # five on a domain malicious, one trusted engine on an IP suspicious
    assert assess(FILE_FEW_ENGINES, gti_assessment=None)[0] is Verdict.HARMLESS
    assert assess(DOMAIN_SUSPICIOUS, gti_assessment=None)[0] is Verdict.HARMLESS
    assert assess(DOMAIN_BENIGN_WEAK, gti_assessment=None)[0] is Verdict.SUSPICIOUS
    assert assess(DOMAIN_BENIGN_STRONG, gti_assessment=None)[0] is Verdict.MALICIOUS
    assert assess(IP_BENIGN_TRUSTED, gti_assessment=None)[0] is Verdict.SUSPICIOUS


# --- the edges of the rule ---------------------------------------------------------------------------


def test_a_gti_verdict_that_agrees_with_the_engines_is_a_supporting_reason() -> None:
    # Given a domain five engines flag, which GTI also calls malicious
    verdict, reasons = assess(
        DOMAIN_BENIGN_STRONG,
        gti_assessment={"verdict": {"value": "VERDICT_MALICIOUS"}, "severity": {"value": "SEVERITY_HIGH"}},
    )

    # Then the engine count decides, and GTI is named as agreeing
    assert verdict is Verdict.MALICIOUS
    assert reasons[0].startswith("malicious [engine-count]")
    assert "Google Threat Intelligence's verdict is malicious (severity high): it agrees" in reasons


def test_gti_suspicious_and_a_mandiant_benign_flag_together_are_never_softened() -> None:
    # Given the weakly detected domain whose assessment says suspicious although an analyst said benign
    assessment = vt_object(DOMAIN_BENIGN_WEAK)["attributes"]["gti_assessment"]
    assessment["verdict"] = {"value": "VERDICT_SUSPICIOUS"}

    # When it is assessed
    verdict, reasons = assess(DOMAIN_BENIGN_WEAK, gti_assessment=assessment)

    # Then it stays suspicious: GTI's own strong verdict outweighs the analyst's flag
    assert verdict is Verdict.SUSPICIOUS
    assert any(
        "but Google Threat Intelligence's own verdict is suspicious, a strong signal that is never softened"
        in reason
        for reason in reasons
    )


def test_matching_crowdsourced_rules_are_not_softened_by_a_mandiant_benign_assessment() -> None:
    # Given the file flagged by two untrusted engines (suspicious by count), matching a crowdsourced YARA
    # rule, that a Mandiant analyst assessed as benign
    results = vt_object(FILE_FEW_ENGINES)["attributes"]["last_analysis_results"]
    results["Zillya"] = {"category": "malicious", "engine_name": "Zillya", "result": "Trojan.Agent"}
    benign = vt_object(DOMAIN_BENIGN_WEAK)["attributes"]["gti_assessment"]

    # When it is assessed
    verdict, reasons = assess(
        FILE_FEW_ENGINES,
        last_analysis_results=results,
        last_analysis_stats={"malicious": 2, "undetected": 72},
        crowdsourced_yara_results=[{"rule_name": "win_ransom_auto", "ruleset_name": "synthetic"}],
        gti_assessment=benign,
    )

    # Then it stays suspicious, and the reasons say the analyst's assessment does not soften rule matches
    assert verdict is Verdict.SUSPICIOUS
    assert reasons[0].startswith("suspicious [engine-count]: 2 of 74 engines flag it")
    assert any("which does not soften matching crowdsourced rules" in reason for reason in reasons)


def test_community_signals_still_raise_a_softened_domain_to_suspicious() -> None:
    # Given the weakly detected domain an analyst assessed as benign, with a bad community reputation
    verdict, reasons = assess(DOMAIN_BENIGN_WEAK, reputation=-25)

    # Then the analyst's assessment softens the engines, and the community rule, applied last, raises
    # the domain to suspicious as it would any harmless verdict
    assert verdict is Verdict.SUSPICIOUS
    assert reasons[0].startswith("suspicious [community]")
    assert reasons[1].startswith("harmless [gti-assessment]: a Mandiant analyst assessed this domain")


def test_a_gti_malicious_verdict_counts_even_when_no_engine_analysed_the_object() -> None:
    # Given the file no engine gave an opinion on, which GTI calls malicious
    verdict, reasons = assess(FILE_FEW_ENGINES, last_analysis_stats={"type-unsupported": 74})

    # Then GTI's verdict decides, and the first supporting reason says no engine analysed it
    assert verdict is Verdict.MALICIOUS
    assert reasons[0].startswith("malicious [gti-assessment]")
    assert reasons[1].startswith("unknown [not-analysed]")


# --- the policy ---------------------------------------------------------------------------------------


def test_a_policy_can_make_a_gti_malicious_verdict_only_suspicious_or_ignore_it() -> None:
    # Given a team that does not want GTI alone to trigger automatic action, and one that ignores it
    cautious = with_gti(malicious_verdict="suspicious")
    ignoring = with_gti(malicious_verdict=None)

    # When the file one engine flags and GTI calls malicious is assessed under each
    cautious_verdict, cautious_reasons = assess(FILE_FEW_ENGINES, cautious)
    ignoring_verdict, ignoring_reasons = assess(FILE_FEW_ENGINES, ignoring)

    # Then it is suspicious under the first, and the engines' harmless under the second, which says why
    assert cautious_verdict is Verdict.SUSPICIOUS
    assert cautious_reasons[0].startswith("suspicious [gti-assessment]")
    assert "it makes the file suspicious whatever the engine count" in cautious_reasons[0]
    assert ignoring_verdict is Verdict.HARMLESS
    assert ignoring_reasons[0].startswith("harmless [engine-count]")
    assert any("this policy does not let it change the verdict" in reason for reason in ignoring_reasons)


def test_a_policy_can_keep_a_mandiant_benign_assessment_from_softening() -> None:
    # Given a policy where an analyst's benign assessment softens nothing
    # When the weakly detected domain is assessed
    verdict, reasons = assess(DOMAIN_BENIGN_WEAK, with_gti(analyst_benign_softens=False))

    # Then the engine count stands, and the reasons say the assessment was seen
    assert verdict is Verdict.SUSPICIOUS
    assert reasons[0].startswith("suspicious [engine-count]")
    assert any("this policy does not let it soften engine detections" in reason for reason in reasons)


def test_the_shipped_policy_file_states_the_gti_defaults() -> None:
    # Given the policy file shipped in the layer
    shipped = load_policy(DEFAULT_POLICY_PATH)

    # Then its gti_assessment rule is the documented default: GTI malicious makes malicious, suspicious
    # makes suspicious, a Mandiant analyst's benign assessment softens weak detections
    assert shipped.gti_assessment == GtiAssessment()
    assert shipped.gti_assessment.model_dump() == {
        "malicious_verdict": "malicious",
        "suspicious_verdict": "suspicious",
        "analyst_benign_softens": True,
    }


@pytest.mark.parametrize(
    ("rule", "named"),
    [
        ({"malicious_verdict": "harmless"}, "gti_assessment.malicious_verdict"),
        ({"suspicious_verdict": "malicious"}, "gti_assessment.suspicious_verdict"),
        ({"analyst_benign_soften": True}, "gti_assessment.analyst_benign_soften"),
    ],
    ids=["lowering", "raising-suspicious-to-malicious", "typo"],
)
def test_a_bad_gti_setting_is_a_configuration_error_naming_it(
    tmp_path: Path, rule: dict[str, Any], named: str
) -> None:
    # Given a policy file with one mistake in its gti_assessment rule
    path = tmp_path / "policy.json"
    path.write_text(json.dumps({"gti_assessment": rule}))

    # When it is loaded at start-up
    with pytest.raises(ConfigurationError) as raised:
        load_policy(path)

    # Then the error names the field at fault
    assert f"{named}:" in str(raised.value)


# --- the context ----------------------------------------------------------------------------------------


def test_the_trimmed_context_keeps_the_gti_assessment_unwrapped() -> None:
    # Given the file GTI calls malicious
    data = vt_object(FILE_FEW_ENGINES)

    # When its context is trimmed for the case
    context = trim_context(IocType.FILE, data["attributes"], data.get("relationships"), data["id"])

    # Then the assessment is there, its {"value": ...} wrappers unwrapped, its factors kept
    assert context["gti_assessment"] == {
        "verdict": "VERDICT_MALICIOUS",
        "severity": "SEVERITY_HIGH",
        "threat_score": 80,
        "contributing_factors": {
            "gavs_categories": ["ransom"],
            "gavs_detections": 3,
            "gti_confidence_score": 85,
            "normalised_categories": ["ransomware"],
        },
        "description": "Malicious with high severity (synthetic sample): categorised as ransomware.",
    }


def test_the_context_keeps_the_mandiant_flags_and_drops_what_it_cannot_show() -> None:
    # Given an assessment with an analyst flag, repeated categories, a nested factor and no verdict
    attributes = {
        "gti_assessment": {
            "threat_score": {"value": 0},
            "contributing_factors": {
                "mandiant_analyst_benign": True,
                "normalised_categories": ["phishing", "malware", "phishing"],
                "nested": {"not": "shown"},
            },
        }
    }

    # When the context is trimmed
    context = trim_context(IocType.DOMAIN, attributes)

    # Then the flag and the score are kept, categories once each, the nested factor left out
    assert context["gti_assessment"] == {
        "threat_score": 0,
        "contributing_factors": {
            "mandiant_analyst_benign": True,
            "normalised_categories": ["phishing", "malware"],
        },
    }


def test_an_object_without_a_gti_assessment_has_none_in_its_context() -> None:
    data = vt_object("opencti__vt_test_domain.json")

    context = trim_context(IocType.DOMAIN, data["attributes"], data.get("relationships"), data["id"])

    assert "gti_assessment" not in context


# --- the x-tool header ----------------------------------------------------------------------------------


@pytest.fixture
def gti_replay(tmp_path: Path) -> Iterator[ReplayServer]:
    """The replay server serving the GTI file recording, as Google Threat Intelligence would."""
    (tmp_path / "files").mkdir()
    shutil.copy(VT_FIXTURES / FILE_FEW_ENGINES, tmp_path / "files" / FILE_FEW_ENGINES)
    with ReplayServer(tmp_path, api_key=API_KEY) as server:
        yield server


def test_the_x_tool_header_names_vtriage_in_the_form_gti_asks_for() -> None:
    # Then the header is org.productName.vMAJOR.MINOR, naming vtriage and its version
    major, minor = __version__.split(".")[:2]
    assert re.fullmatch(r"[a-z]+\.[a-z]+\.v\d+\.\d+", X_TOOL)
    assert f"vtriage.vtriage.v{major}.{minor}" == X_TOOL


def test_the_x_tool_header_reaches_the_server_so_the_gti_assessment_comes_back(
    gti_replay: ReplayServer,
) -> None:
    # Given the replay server, which, as GTI, adds the gti_assessment only for a request naming its tool
    file = ioc_of(IocType.FILE, vt_object(FILE_FEW_ENGINES))
    bare = requests.get(f"{gti_replay.base_url}/files/{file.value}", headers={"x-apikey": API_KEY}, timeout=5)
    assert bare.status_code == 200
    assert "gti_assessment" not in bare.json()["data"]["attributes"]

    # When vtriage's client looks the file up
    with requests.Session() as session:
        client = VirusTotalClient(
            session, API_KEY, gti_replay.base_url, sleep=lambda _: None, rng=random.Random(1)
        )
        data = client.lookup(file)

    # Then its x-tool header reached the server: the object carries GTI's assessment, and the verdict
    # uses it
    assert data is not None
    assert data["attributes"]["gti_assessment"]["verdict"] == {"value": "VERDICT_MALICIOUS"}
    enrichment = assess_ioc(file, data, DEFAULT, FETCHED_AT)
    assert enrichment.verdict is Verdict.MALICIOUS
    assert enrichment.reasons[0].startswith("malicious [gti-assessment]")
