"""The verdict policy: from VirusTotal's engine counts to an explainable verdict.

The verdict comes from `last_analysis_stats` only: `last_analysis_results` may be trimmed (a report can
list 3 engines while its stats count 87), so it only serves to name the engines in the reasons, and then
all of it is read, never the first N.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Self

from pydantic import BaseModel, Field, model_validator

from vtriage.models import EngineStats, Enrichment, Ioc, IocType, Verdict
from vtriage.virustotal.client import gui_link
from vtriage.virustotal.context import detections, trim_context

_LOOKED_CATEGORIES = ("malicious", "suspicious", "harmless", "undetected")
_NOUNS = {IocType.FILE: "file", IocType.URL: "URL", IocType.DOMAIN: "domain", IocType.IP: "IP address"}


class VerdictPolicy(BaseModel, frozen=True):
    """How many engines must flag an IOC for each verdict."""

    malicious_min_engines: int = Field(default=3, ge=1)
    suspicious_min_engines: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _suspicious_below_malicious(self) -> Self:
        if self.suspicious_min_engines > self.malicious_min_engines:
            raise ValueError("suspicious_min_engines must not exceed malicious_min_engines")
        return self


def decide(
    ioc: Ioc, vt_object: dict[str, Any] | None, policy: VerdictPolicy, fetched_at: datetime
) -> Enrichment:
    """The enrichment of one IOC from its VirusTotal object (`data`), or from None when VirusTotal
    answered 404: the verdict, the counts, the sentences that explain it, and the trimmed context.

    - malicious: at least `malicious_min_engines` engines say malicious;
    - suspicious: malicious + suspicious engines reach `suspicious_min_engines`;
    - harmless: engines looked and too few flagged it;
    - unknown: VirusTotal has never seen it, or no engine has analysed it.
    """
    if ioc.skipped_reason:
        raise ValueError(f"{ioc.key} is skipped ({ioc.skipped_reason}) and gets no verdict")
    noun = _NOUNS[ioc.type]
    if vt_object is None:
        return Enrichment(
            ioc_type=ioc.type,
            value=ioc.value,
            verdict=Verdict.UNKNOWN,
            reasons=[f"unknown: VirusTotal has never seen this {noun} (404 NotFoundError)"],
            link=gui_link(ioc),
            fetched_at=fetched_at,
        )

    attributes = vt_object.get("attributes")
    attributes = attributes if isinstance(attributes, dict) else {}
    relationships = vt_object.get("relationships")
    raw_stats = attributes.get("last_analysis_stats")
    stats = EngineStats.from_vt(raw_stats) if isinstance(raw_stats, dict) else EngineStats()
    looked = _engines_that_looked(raw_stats)
    verdict, reason = _rule(noun, stats, looked, policy, detections(attributes))
    # A URL's own id (the SHA-256 of the canonical URL) is the form VirusTotal documents for GUI links;
    # other types link by the IOC's value, which VirusTotal's GUI takes as it is.
    vt_id = vt_object.get("id") if ioc.type is IocType.URL else None
    return Enrichment(
        ioc_type=ioc.type,
        value=ioc.value,
        verdict=verdict,
        stats=stats,
        reasons=[reason],
        context=trim_context(
            ioc.type, attributes, relationships if isinstance(relationships, dict) else None
        ),
        link=gui_link(ioc, vt_id if isinstance(vt_id, str) and vt_id else None),
        fetched_at=fetched_at,
    )


def _rule(
    noun: str,
    stats: EngineStats,
    looked: int,
    policy: VerdictPolicy,
    flagged: list[dict[str, str]],
) -> tuple[Verdict, str]:
    """The rule that fires, and the sentence that says so."""
    if looked == 0:
        return Verdict.UNKNOWN, (
            f"unknown: VirusTotal knows this {noun} but no engine has analysed it "
            f"({stats.total} engine results, none harmless, undetected, suspicious or malicious)"
        )
    flagging = stats.malicious + stats.suspicious
    if stats.malicious >= policy.malicious_min_engines:
        return Verdict.MALICIOUS, (
            f"malicious: {stats.malicious} of {stats.total} engines flag it as malicious "
            f"(threshold {policy.malicious_min_engines})"
            + _named(flagged, "malicious", stats.malicious)
            + _also_suspicious(flagged, stats.suspicious)
        )
    if flagging >= policy.suspicious_min_engines:
        return Verdict.SUSPICIOUS, (
            f"suspicious: {flagging} of {stats.total} engines flag it "
            f"({stats.malicious} malicious, {stats.suspicious} suspicious; suspicious threshold "
            f"{policy.suspicious_min_engines}, malicious threshold {policy.malicious_min_engines})"
            + _named(flagged, None, flagging)
        )
    if flagging == 0:
        return Verdict.HARMLESS, (
            f"harmless: none of the {looked} engines that analysed it flag it "
            f"({stats.harmless} harmless, {stats.undetected} undetected of {stats.total})"
        )
    return Verdict.HARMLESS, (
        f"harmless: {flagging} of {stats.total} engines flag it, below the suspicious threshold "
        f"{policy.suspicious_min_engines}" + _named(flagged, None, flagging)
    )


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
        int(value)
        for name, value in raw_stats.items()
        if name in _LOOKED_CATEGORIES and isinstance(value, int | float) and not isinstance(value, bool)
    )
