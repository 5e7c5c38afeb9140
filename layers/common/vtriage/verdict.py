"""The verdict engine: from a VirusTotal object to a verdict an analyst can explain, under a policy file.

Rules, in the order they are applied (docs/virustotal.md gives the defaults and the reasoning):

1. `engine-count`: per-type thresholds on `last_analysis_stats` (never on `last_analysis_results`, which may
   be trimmed: a report can list 3 engines while its stats count 87).
2. `trusted-engines`: engines the team trusts, looked for among *every* engine result, never the first N;
   enough of them flagging it malicious make it at least suspicious, or malicious.
3. `crowdsourced-rules` (files): matching crowdsourced YARA, Sigma or IDS rules make it at least suspicious.
4. `popularity` (domains): a popularity rank softens a weak detection (below the malicious threshold, no
   trusted engine) to harmless; it never clears a detection that reached the malicious threshold.
5. `gti-assessment` (objects that carry Google Threat Intelligence's `gti_assessment`): a GTI malicious
   or suspicious verdict is a strong signal that raises the verdict; a Mandiant analyst's benign
   assessment softens a weak engine detection to harmless, never a strong one. Objects without a
   `gti_assessment` are judged by the other rules alone, exactly as before.
6. `community`: reputation and community votes can raise harmless to suspicious, never to malicious.

Every reason starts with `<verdict> [<rule>]:` for the rule that decided, and names the flagging engines;
the reasons after the first are the other rules that had something to say.
"""

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Self, TypeGuard

from pydantic import BaseModel, ConfigDict, Field, model_validator

from vtriage.config import load_config
from vtriage.models import EngineStats, Enrichment, Ioc, IocType, Verdict
from vtriage.virustotal.context import detections, gti_assessment, trim_context
from vtriage.virustotal.objects import NOTES_KEY, gui_link

DEFAULT_POLICY_PATH = Path(__file__).resolve().parent / "data" / "verdict-policy.json"

_LOOKED_CATEGORIES = ("malicious", "suspicious", "harmless", "undetected")
_NOUNS = {IocType.FILE: "file", IocType.URL: "URL", IocType.DOMAIN: "domain", IocType.IP: "IP address"}
_MAX_NAMED_RULES = 5

SigmaLevel = Literal["critical", "high", "medium", "low"]
IdsLevel = Literal["high", "medium", "low", "info"]

_GTI_STRONG = ("malicious", "suspicious")


class _PolicyPart(BaseModel):
    # Unknown keys are refused, so a typo in the policy file stops the function at start-up. Built when
    # first validated: `load_policy` builds VerdictPolicy, the parts within it, and never the parts'
    # own validators, which only a part made on its own needs (defaults are made when a file leaves
    # its part out).
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)


class Thresholds(_PolicyPart):
    """Engine counts for one IOC type: `malicious` engines for malicious, flagging engines (malicious or
    suspicious) for suspicious."""

    malicious: int = Field(ge=1)
    suspicious: int = Field(ge=1)

    @model_validator(mode="after")
    def _suspicious_below_malicious(self) -> Self:
        if self.suspicious > self.malicious:
            raise ValueError("the suspicious threshold must not exceed the malicious threshold")
        return self


class TypeThresholds(_PolicyPart):
    """Thresholds per IOC type. Files get higher ones: their ~70 engines include heuristic and machine-
    learning engines that flag packed or unsigned binaries; URL, domain and IP engines are block lists."""

    file: Thresholds = Field(default_factory=lambda: Thresholds(malicious=5, suspicious=2))
    url: Thresholds = Field(default_factory=lambda: Thresholds(malicious=3, suspicious=1))
    domain: Thresholds = Field(default_factory=lambda: Thresholds(malicious=3, suspicious=1))
    ip: Thresholds = Field(default_factory=lambda: Thresholds(malicious=3, suspicious=1))

    def of(self, ioc_type: IocType) -> Thresholds:
        """The thresholds of one IOC type."""
        thresholds: Thresholds = getattr(self, ioc_type.value)
        return thresholds


class TrustedEngines(_PolicyPart):
    """Engines whose `malicious` weighs more than a head count, matched case-insensitively by result key or
    engine name, among all engine results."""

    engines: tuple[str, ...] = (
        "BitDefender",
        "ESET",
        "ESET-NOD32",
        "Fortinet",
        "Google Safebrowsing",
        "Kaspersky",
        "Microsoft",
        "Sophos",
    )
    suspicious_min: int = Field(default=1, ge=1)
    malicious_min: int = Field(default=2, ge=1)

    @model_validator(mode="after")
    def _suspicious_below_malicious(self) -> Self:
        if self.suspicious_min > self.malicious_min:
            raise ValueError("suspicious_min must not exceed malicious_min")
        return self


class Popularity(_PolicyPart):
    """A domain ranked within the top `max_rank` of any popularity list may have a weak detection softened."""

    enabled: bool = True
    max_rank: int = Field(default=10000, ge=1)


class Crowdsourced(_PolicyPart):
    """Crowdsourced rule matches on files that make a file at least suspicious."""

    yara_min_matches: int = Field(default=1, ge=1)
    sigma_levels: tuple[SigmaLevel, ...] = ("critical", "high")
    sigma_min_matches: int = Field(default=1, ge=1)
    ids_levels: tuple[IdsLevel, ...] = ("high",)
    ids_min_matches: int = Field(default=1, ge=1)


class GtiAssessment(_PolicyPart):
    """What Google Threat Intelligence's `gti_assessment` does to a verdict, for objects that carry one.

    `malicious_verdict`: what a GTI malicious verdict makes the IOC at least (`malicious`, `suspicious`, or
    null to ignore it); `suspicious_verdict`: the same for a GTI suspicious verdict. Whatever these say, a
    GTI malicious or suspicious verdict is never softened. `analyst_benign_softens`: whether a Mandiant
    analyst's benign assessment softens a weak engine detection to harmless."""

    malicious_verdict: Literal["malicious", "suspicious"] | None = "malicious"
    suspicious_verdict: Literal["suspicious"] | None = "suspicious"
    analyst_benign_softens: bool = True


class Community(_PolicyPart):
    """Secondary signals that can raise harmless to suspicious; null turns one off."""

    reputation_at_most: int | None = -10
    malicious_votes_min: int | None = Field(default=3, ge=1)


class VerdictPolicy(_PolicyPart):
    """The verdict policy, as the policy file states it (`load_policy`).

    `VerdictPolicy(malicious_min_engines=M, suspicious_min_engines=S)` still works: it sets the thresholds
    of every IOC type to M and S and keeps every other default.
    """

    description: str = ""
    thresholds: TypeThresholds = Field(default_factory=TypeThresholds)
    trusted_engines: TrustedEngines = Field(default_factory=TrustedEngines)
    popularity: Popularity = Field(default_factory=Popularity)
    crowdsourced: Crowdsourced = Field(default_factory=Crowdsourced)
    gti_assessment: GtiAssessment = Field(default_factory=GtiAssessment)
    community: Community = Field(default_factory=Community)
    # The single-threshold form of earlier versions: when given, the thresholds of every type.
    malicious_min_engines: int | None = Field(default=None, ge=1, exclude=True)
    suspicious_min_engines: int | None = Field(default=None, ge=1, exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _same_thresholds_for_every_type(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        malicious = data.get("malicious_min_engines")
        suspicious = data.get("suspicious_min_engines")
        if malicious is None and suspicious is None:
            return data
        if "thresholds" in data:
            raise ValueError("give either thresholds or malicious_min_engines/suspicious_min_engines")
        same = {
            "malicious": 3 if malicious is None else malicious,
            "suspicious": 1 if suspicious is None else suspicious,
        }
        return {**data, "thresholds": {ioc_type.value: same for ioc_type in IocType}}


def load_policy(path: Path | None = None) -> VerdictPolicy:
    """The verdict policy in the JSON file at `path` (the shipped default when None), validated.

    Raises ConfigurationError naming the file and each bad field (`thresholds.file.malicious: ...`).
    """
    source = Path(path or DEFAULT_POLICY_PATH)
    return load_config(VerdictPolicy, source, named=f"verdict policy {source}", whole="policy")


@dataclass
class _Decision:
    """The verdict so far, the sentence of the rule that decided it, and what other rules said."""

    verdict: Verdict
    sentence: str
    supporting: list[str] = field(default_factory=list)

    def override(self, verdict: Verdict, sentence: str) -> None:
        """Another rule decides; the sentence it replaces stays as the first supporting reason."""
        self.supporting.insert(0, self.sentence)
        self.verdict = verdict
        self.sentence = sentence

    @property
    def reasons(self) -> list[str]:
        return [self.sentence, *self.supporting]

    @property
    def rule(self) -> str:
        """The rule that decided, as its sentence names it (`<verdict> [<rule>]: ...`)."""
        return self.sentence.partition("[")[2].partition("]")[0]


@dataclass(frozen=True)
class _GtiView:
    """Google Threat Intelligence's assessment of one object, in plain words."""

    verdict: str
    severity: str | None
    threat_score: int | None
    analyst_benign: bool
    analyst_malicious: bool

    @property
    def strong(self) -> bool:
        """A GTI malicious or suspicious verdict: a strong signal, never softened."""
        return self.verdict in _GTI_STRONG

    def _details(self) -> list[str]:
        details = []
        if self.severity:
            details.append(f"severity {self.severity}")
        if self.threat_score is not None:
            details.append(f"threat score {self.threat_score} of 100")
        if self.analyst_malicious:
            details.append("a Mandiant analyst assessed it as malicious")
        return details

    def summary(self) -> str:
        """'malicious, severity high, threat score 80 of 100'."""
        return ", ".join([self.verdict, *self._details()])

    def says(self) -> str:
        """'Google Threat Intelligence's verdict is malicious (severity high, threat score 80 of 100)'."""
        details = self._details()
        return f"Google Threat Intelligence's verdict is {self.verdict}" + (
            f" ({', '.join(details)})" if details else ""
        )


def _gti_view(attributes: dict[str, Any]) -> _GtiView | None:
    """The object's `gti_assessment` read (`VERDICT_MALICIOUS` as `malicious`, `SEVERITY_HIGH` as `high`),
    or None when it has none. The Mandiant analyst flags are read from the raw contributing factors."""
    trimmed = gti_assessment(attributes.get("gti_assessment"))
    if trimmed is None:
        return None
    factors = _mapping(_mapping(attributes.get("gti_assessment")).get("contributing_factors"))
    verdict = str(trimmed.get("verdict") or "VERDICT_UNKNOWN")
    severity = trimmed.get("severity")
    return _GtiView(
        verdict=verdict.removeprefix("VERDICT_").lower(),
        severity=str(severity).removeprefix("SEVERITY_").lower() if severity else None,
        threat_score=trimmed.get("threat_score"),
        analyst_benign=factors.get("mandiant_analyst_benign") is True,
        analyst_malicious=factors.get("mandiant_analyst_malicious") is True,
    )


def assess_ioc(
    ioc: Ioc, vt_object: dict[str, Any] | None, policy: VerdictPolicy, fetched_at: datetime
) -> Enrichment:
    """The enrichment of one IOC from its VirusTotal object (`data`), or from None when VirusTotal
    answered 404: the verdict, the counts, the reasons that explain it, and the trimmed context.

    A note the client left on the object (a secondary call that failed) becomes `Enrichment.note`.
    """
    if ioc.skipped_reason:
        raise ValueError(f"{ioc.key} is skipped ({ioc.skipped_reason}) and gets no verdict")
    noun = _NOUNS[ioc.type]
    if vt_object is None:
        return Enrichment(
            ioc_type=ioc.type,
            value=ioc.value,
            verdict=Verdict.UNKNOWN,
            reasons=[f"unknown [not-found]: VirusTotal has never seen this {noun} (404 NotFoundError)"],
            link=gui_link(ioc),
            fetched_at=fetched_at,
        )

    attributes = _mapping(vt_object.get("attributes"))
    relationships = vt_object.get("relationships")
    raw_stats = attributes.get("last_analysis_stats")
    stats = EngineStats.from_vt(raw_stats) if isinstance(raw_stats, dict) else EngineStats()
    decision = _assess(ioc.type, attributes, stats, _engines_that_looked(raw_stats), policy)
    # A URL's own id (the SHA-256 of the canonical URL) is the form VirusTotal documents for GUI links;
    # other types link by the IOC's value, which VirusTotal's GUI takes as it is.
    vt_id = vt_object.get("id") if ioc.type is IocType.URL else None
    notes = _mapping(vt_object.get(NOTES_KEY)).get("notes")
    return Enrichment(
        ioc_type=ioc.type,
        value=ioc.value,
        verdict=decision.verdict,
        stats=stats,
        reasons=decision.reasons,
        context=trim_context(
            ioc.type,
            attributes,
            relationships if isinstance(relationships, dict) else None,
            object_id=str(vt_object.get("id") or ioc.value),
        ),
        link=gui_link(ioc, vt_id if isinstance(vt_id, str) and vt_id else None),
        fetched_at=fetched_at,
        note="; ".join(str(note) for note in notes) if isinstance(notes, list) and notes else None,
    )


def _assess(
    ioc_type: IocType, attributes: dict[str, Any], stats: EngineStats, looked: int, policy: VerdictPolicy
) -> _Decision:
    """Apply the rules in order; see the module docstring."""
    noun = _NOUNS[ioc_type]
    gti = _gti_view(attributes)
    if looked == 0:
        unanalysed = _Decision(
            Verdict.UNKNOWN,
            f"unknown [not-analysed]: VirusTotal knows this {noun} but no engine has analysed it "
            f"({stats.total} engine results, none harmless, undetected, suspicious or malicious)",
        )
        if gti is not None:
            _raise_on_gti_verdict(unanalysed, gti, noun, policy.gti_assessment)
            _apply_analyst_benign(unanalysed, gti, noun, None, policy.gti_assessment)
        return unanalysed
    thresholds = policy.thresholds.of(ioc_type)
    flagged = detections(attributes)
    decision = _engine_count(ioc_type, stats, looked, thresholds, flagged)
    trusted = _trusted_flagging(attributes, policy.trusted_engines)
    _apply_trusted_engines(decision, trusted, policy.trusted_engines, _total_results(attributes))
    if ioc_type is IocType.FILE:
        _apply_crowdsourced(decision, attributes, policy.crowdsourced)
    if ioc_type is IocType.DOMAIN and policy.popularity.enabled:
        _apply_popularity(
            decision,
            attributes,
            stats=stats,
            thresholds=thresholds,
            trusted=trusted,
            rule=policy.popularity,
        )
    if gti is not None:
        _raise_on_gti_verdict(decision, gti, noun, policy.gti_assessment)
        weak = _Weakness(
            stats=stats,
            thresholds=thresholds,
            trusted=bool(trusted),
            rule_matches=ioc_type is IocType.FILE
            and bool(_crowdsourced_evidence(attributes, policy.crowdsourced)),
        )
        _apply_analyst_benign(decision, gti, noun, weak, policy.gti_assessment)
    _apply_community(decision, attributes, policy.community)
    return decision


def _engine_count(
    ioc_type: IocType,
    stats: EngineStats,
    looked: int,
    thresholds: Thresholds,
    flagged: list[dict[str, str]],
) -> _Decision:
    """Rule 1: the per-type engine thresholds on the stats."""
    kind = ioc_type.value
    flagging = stats.malicious + stats.suspicious
    if stats.malicious >= thresholds.malicious:
        return _Decision(
            Verdict.MALICIOUS,
            f"malicious [engine-count]: {stats.malicious} of {stats.total} engines flag it as malicious "
            f"({kind} threshold {thresholds.malicious})"
            + _named(flagged, "malicious", stats.malicious)
            + _also_suspicious(flagged, stats.suspicious),
        )
    if flagging >= thresholds.suspicious:
        return _Decision(
            Verdict.SUSPICIOUS,
            f"suspicious [engine-count]: {flagging} of {stats.total} engines flag it "
            f"({stats.malicious} malicious, {stats.suspicious} suspicious; {kind} thresholds: suspicious "
            f"{thresholds.suspicious}, malicious {thresholds.malicious})" + _named(flagged, None, flagging),
        )
    if flagging == 0:
        return _Decision(
            Verdict.HARMLESS,
            f"harmless [engine-count]: none of the {looked} engines that analysed it flag it "
            f"({stats.harmless} harmless, {stats.undetected} undetected of {stats.total})",
        )
    return _Decision(
        Verdict.HARMLESS,
        f"harmless [engine-count]: {flagging} of {stats.total} engines flag it, below the {kind} "
        f"suspicious threshold {thresholds.suspicious}" + _named(flagged, None, flagging),
    )


def _apply_trusted_engines(
    decision: _Decision, trusted: list[str], rule: TrustedEngines, total_results: int
) -> None:
    """Rule 2: trusted engines that say malicious, found anywhere in the engine results."""
    if not trusted:
        return
    names = ", ".join(trusted)
    where = f"looked for among all {total_results} engine results"
    if len(trusted) >= rule.malicious_min and decision.verdict.weight < Verdict.MALICIOUS.weight:
        decision.override(
            Verdict.MALICIOUS,
            f"malicious [trusted-engines]: {len(trusted)} trusted engines flag it as malicious "
            f"(at least {rule.malicious_min} make it malicious; {where}): {names}",
        )
    elif len(trusted) >= rule.suspicious_min and decision.verdict.weight < Verdict.SUSPICIOUS.weight:
        decision.override(
            Verdict.SUSPICIOUS,
            f"suspicious [trusted-engines]: {len(trusted)} trusted engine(s) flag it as malicious "
            f"(at least {rule.suspicious_min} make it suspicious, {rule.malicious_min} malicious; "
            f"{where}): {names}",
        )
    else:
        decision.supporting.append(f"trusted engines flagging it as malicious: {names}")


def _apply_crowdsourced(decision: _Decision, attributes: dict[str, Any], rule: Crowdsourced) -> None:
    """Rule 3 (files): crowdsourced YARA, Sigma and IDS matches."""
    evidence = _crowdsourced_evidence(attributes, rule)
    if not evidence:
        return
    listed = "; ".join(evidence)
    if decision.verdict.weight < Verdict.SUSPICIOUS.weight:
        decision.override(
            Verdict.SUSPICIOUS,
            f"suspicious [crowdsourced-rules]: crowdsourced rules match this file "
            f"(they make a file suspicious, never malicious on their own): {listed}",
        )
    else:
        decision.supporting.append(f"crowdsourced rules also match: {listed}")


def _apply_popularity(
    decision: _Decision,
    attributes: dict[str, Any],
    *,
    stats: EngineStats,
    thresholds: Thresholds,
    trusted: list[str],
    rule: Popularity,
) -> None:
    """Rule 4 (domains): a high popularity rank softens a weak detection, never a strong one."""
    best = _best_rank(attributes.get("popularity_ranks"))
    if best is None or best[1] > rule.max_rank:
        return
    source, rank = best
    ranked = f"{source} ranks it {rank}, within the top {rule.max_rank}"
    if decision.verdict is Verdict.MALICIOUS:
        decision.supporting.append(
            f"popularity: {ranked}, which never clears a detection that reached the malicious threshold"
        )
    elif decision.verdict is Verdict.SUSPICIOUS:
        if trusted:
            decision.supporting.append(f"popularity: {ranked}, which does not soften a trusted engine's flag")
        elif stats.malicious < thresholds.malicious:
            decision.override(
                Verdict.HARMLESS,
                f"harmless [popularity]: a weak detection on a popular domain ({ranked}): "
                f"{stats.malicious} malicious and {stats.suspicious} suspicious engines, below the domain "
                f"malicious threshold {thresholds.malicious}",
            )


def _raise_on_gti_verdict(decision: _Decision, gti: _GtiView, noun: str, rule: GtiAssessment) -> None:
    """Rule 5, first half: a GTI malicious or suspicious verdict raises the verdict to what the policy
    says it makes; any other GTI verdict is noted, and never lowers the engines' verdict."""
    makes = {"malicious": rule.malicious_verdict, "suspicious": rule.suspicious_verdict}.get(gti.verdict)
    if makes is None:
        if gti.analyst_benign and not gti.strong:
            return  # the analyst's assessment is the news; _apply_analyst_benign says what it does
        if gti.strong:
            decision.supporting.append(f"{gti.says()}; this policy does not let it change the verdict")
        elif decision.verdict.weight >= Verdict.SUSPICIOUS.weight:
            decision.supporting.append(
                f"{gti.says()}, which does not lower the verdict: only a Mandiant analyst's benign "
                "assessment softens weak engine detections"
            )
        else:
            decision.supporting.append(gti.says())
        return
    target = Verdict(makes)
    if decision.verdict.weight < target.weight:
        decision.override(
            target,
            f"{target.value} [gti-assessment]: {gti.says()}. A GTI {gti.verdict} verdict is a strong signal: "
            f"it makes the {noun} {target.value} whatever the engine count",
        )
    elif decision.verdict is target:
        decision.supporting.append(f"{gti.says()}: it agrees")
    else:
        decision.supporting.append(f"{gti.says()}; the heavier {decision.verdict.value} verdict stands")


@dataclass(frozen=True)
class _Weakness:
    """What a Mandiant analyst's benign assessment needs to know of the engines' detection."""

    stats: EngineStats
    thresholds: Thresholds
    trusted: bool
    rule_matches: bool


def _apply_analyst_benign(
    decision: _Decision, gti: _GtiView, noun: str, weak: _Weakness | None, rule: GtiAssessment
) -> None:
    """Rule 5, second half: a Mandiant analyst's benign assessment softens a weak engine detection
    (suspicious by the engine count alone: below the malicious threshold, no trusted engine, no
    crowdsourced rule) to harmless; it never softens a strong one. `weak` is None when no engine
    analysed the object."""
    if not gti.analyst_benign:
        return
    assessed = (
        f"a Mandiant analyst assessed this {noun} as benign "
        f"(Google Threat Intelligence's verdict: {gti.summary()})"
    )
    if gti.strong:
        decision.supporting.append(
            f"{assessed}, but Google Threat Intelligence's own verdict is {gti.verdict}, a strong signal "
            "that is never softened"
        )
    elif decision.verdict is Verdict.MALICIOUS:
        decision.supporting.append(
            f"{assessed}, which never clears a malicious verdict: it softens only weak engine detections"
        )
    elif decision.verdict is not Verdict.SUSPICIOUS or weak is None:
        decision.supporting.append(assessed)
    elif decision.rule != "engine-count":
        decision.supporting.append(
            f"{assessed}, which softens only weak engine detections, not what the {decision.rule} rule found"
        )
    elif weak.trusted:
        decision.supporting.append(f"{assessed}, which does not soften a trusted engine's flag")
    elif weak.rule_matches:
        decision.supporting.append(f"{assessed}, which does not soften matching crowdsourced rules")
    elif not rule.analyst_benign_softens:
        decision.supporting.append(f"{assessed}; this policy does not let it soften engine detections")
    else:
        stats = weak.stats
        decision.override(
            Verdict.HARMLESS,
            f"harmless [gti-assessment]: {assessed}, which softens a weak engine detection: "
            f"{stats.malicious} malicious and {stats.suspicious} suspicious of {stats.total} engines, below "
            f"the {noun} malicious threshold {weak.thresholds.malicious}, none of them a trusted engine",
        )


def _apply_community(decision: _Decision, attributes: dict[str, Any], rule: Community) -> None:
    """Rule 6: reputation and community votes raise harmless to suspicious, never further."""
    signals = []
    reputation = attributes.get("reputation")
    if (
        rule.reputation_at_most is not None
        and _is_number(reputation)
        and reputation <= rule.reputation_at_most
    ):
        signals.append(f"reputation {reputation} (at most {rule.reputation_at_most})")
    votes = _mapping(attributes.get("total_votes"))
    bad, good = _count(votes.get("malicious")), _count(votes.get("harmless"))
    if rule.malicious_votes_min is not None and bad >= rule.malicious_votes_min and bad > good:
        signals.append(
            f"{bad} malicious community votes against {good} harmless (at least {rule.malicious_votes_min})"
        )
    if not signals:
        return
    listed = "; ".join(signals)
    if decision.verdict is Verdict.HARMLESS:
        decision.override(
            Verdict.SUSPICIOUS,
            f"suspicious [community]: VirusTotal's community disagrees with the engines "
            f"(community signals make an IOC suspicious, never malicious): {listed}",
        )
    else:
        decision.supporting.append(f"community: {listed}")


def _trusted_flagging(attributes: dict[str, Any], rule: TrustedEngines) -> list[str]:
    """Trusted engines that say malicious, from every entry of `last_analysis_results`, sorted."""
    wanted = {engine.casefold() for engine in rule.engines}
    results = attributes.get("last_analysis_results")
    if not wanted or not isinstance(results, dict):
        return []
    found = set()
    for key, result in results.items():
        if not isinstance(result, dict) or result.get("category") != "malicious":
            continue
        name = str(result.get("engine_name") or key)
        if str(key).casefold() in wanted or name.casefold() in wanted:
            found.add(name)
    return sorted(found, key=str.casefold)


def _crowdsourced_evidence(attributes: dict[str, Any], rule: Crowdsourced) -> list[str]:
    """Sentences for each kind of crowdsourced match that reaches its minimum."""
    evidence = []
    yara = [item for item in _list(attributes.get("crowdsourced_yara_results")) if isinstance(item, dict)]
    if len(yara) >= rule.yara_min_matches:
        named = [
            f"{item.get('rule_name') or '?'} ({item.get('ruleset_name') or 'ruleset ?'})"
            for item in yara[:_MAX_NAMED_RULES]
        ]
        more = f" and {len(yara) - _MAX_NAMED_RULES} more" if len(yara) > _MAX_NAMED_RULES else ""
        evidence.append(f"{len(yara)} YARA rule(s): " + ", ".join(named) + more)
    sigma = _level_counts(attributes.get("sigma_analysis_stats"))
    if not sigma:
        for counts in _mapping(attributes.get("sigma_analysis_summary")).values():
            for level, count in _level_counts(counts).items():
                sigma[level] = sigma.get(level, 0) + count
    sigma_hits = sum(sigma.get(level, 0) for level in rule.sigma_levels)
    if sigma_hits >= rule.sigma_min_matches:
        evidence.append(f"{sigma_hits} Sigma rule(s) of level {'/'.join(rule.sigma_levels)}")
    ids = _level_counts(attributes.get("crowdsourced_ids_stats"))
    ids_hits = sum(ids.get(level, 0) for level in rule.ids_levels)
    if ids_hits >= rule.ids_min_matches:
        evidence.append(f"{ids_hits} IDS rule(s) of severity {'/'.join(rule.ids_levels)}")
    return evidence


def _best_rank(ranks: Any) -> tuple[str, int] | None:
    """The best (lowest) popularity rank of the domain and the list that gives it."""
    best: tuple[str, int] | None = None
    for source, entry in _mapping(ranks).items():
        rank = _mapping(entry).get("rank")
        if _is_number(rank) and rank >= 1 and (best is None or rank < best[1]):
            best = (str(source), int(rank))
    return best


def _named(flagged: list[dict[str, str]], category: str | None, counted: int) -> str:
    """': engine, engine, ...' for the engines of the category (both categories when None), saying
    so when the report lists fewer engines than its stats count (a trimmed report)."""
    engines = [d["engine"] for d in flagged if category is None or d["category"] == category]
    if not engines:
        return "; the report names none of these engines" if counted else ""
    listed = ", ".join(engines)
    if len(engines) < counted:
        return f": {listed} (the report names {len(engines)} of the {counted})"
    return f": {listed}"


def _also_suspicious(flagged: list[dict[str, str]], suspicious: int) -> str:
    """'; N more say suspicious: ...' when some engines say suspicious too."""
    if suspicious == 0:
        return ""
    return f"; {suspicious} more say suspicious" + _named(flagged, "suspicious", suspicious)


def _engines_that_looked(raw_stats: Any) -> int:
    """Engines that gave an opinion; type-unsupported, failure and timeout results are not opinions."""
    if not isinstance(raw_stats, dict):
        return 0
    return sum(
        int(value) for name, value in raw_stats.items() if name in _LOOKED_CATEGORIES and _is_number(value)
    )


def _total_results(attributes: dict[str, Any]) -> int:
    results = attributes.get("last_analysis_results")
    return len(results) if isinstance(results, dict) else 0


def _level_counts(value: Any) -> dict[str, int]:
    return {str(level): int(count) for level, count in _mapping(value).items() if _is_number(count)}


def _count(value: Any) -> int:
    return int(value) if _is_number(value) else 0


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
