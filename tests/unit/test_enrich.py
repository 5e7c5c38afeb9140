"""The enrich domain with in-memory fakes: verdicts, dedupe, cache, repeats and rejected records."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import (
    FakeDeadLetterQueue,
    FakeExecutionStarter,
    FakeThreatIntel,
    InMemoryCaseRepository,
    InMemoryEnrichmentCache,
)
from vtriage.enrich import Enricher
from vtriage.errors import TransientError
from vtriage.models import CaseStatus, Verdict
from vtriage.verdict import VerdictPolicy

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def _vt(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((ROOT / "tests" / "fixtures" / "vt" / name).read_text())["data"]
    return data


def _sample(name: str) -> str:
    return (ROOT / "events" / name).read_text()


class World:
    """An Enricher over fakes, with the real VirusTotal reports the samples' IOCs name."""

    def __init__(self, errors: dict[str, Exception] | None = None) -> None:
        self.intel = FakeThreatIntel(
            {
                "domain#tawuhoju.com": _vt("opencti__vt_test_domain.json"),
                "ip#23.129.64.215": _vt("demisto__TestData_ip.json"),
            },
            errors=errors,
        )
        self.cache = InMemoryEnrichmentCache(now=lambda: NOW)
        self.cases = InMemoryCaseRepository()
        self.executions = FakeExecutionStarter()
        self.dead_letters = FakeDeadLetterQueue()

    def enricher(self) -> Enricher:
        """A new enricher, as each Lambda invocation makes for its batch."""
        return Enricher(
            intel=self.intel,
            cache=self.cache,
            cases=self.cases,
            executions=self.executions,
            dead_letters=self.dead_letters,
            policy=VerdictPolicy(),
            now=lambda: NOW,
        )


def test_malicious_c2_domain_on_an_instance_makes_a_remediable_case_and_starts_its_execution() -> None:
    # Given the C&C sample and VirusTotal's real report of its domain
    world = World()

    # When its record is handled
    outcome = world.enricher().handle_record("m-1", _sample("synthetic-guardduty-backdoor-c2-dns.json"))

    # Then one malicious case is stored, with its isolation planned, and its execution started by case id
    [summary] = outcome.cases
    case = world.cases.get(summary.case_id)
    assert case is not None
    assert (case.verdict, case.status) == (Verdict.MALICIOUS, CaseStatus.ENRICHED)
    assert [(action.type, action.target) for action in case.actions] == [
        ("isolate_instance", "i-0b3f6c2d9e1a47c58")
    ]
    started = world.executions.started[summary.case_id]
    assert (started.verdict, started.remediable, started.severity) == (Verdict.MALICIOUS, True, "high")
    assert world.intel.lookups == ["domain#tawuhoju.com"]


def test_malicious_ip_probing_an_instance_plans_no_isolation() -> None:
    # Given a port probe from a malicious IP: the instance is the target, not the culprit
    world = World()

    # When it is handled
    [summary] = world.enricher().handle_record("m-1", _sample("synthetic-guardduty-portprobe.json")).cases

    # Then the case is malicious but nothing is planned against the instance, so a person decides
    case = world.cases.get(summary.case_id)
    assert case is not None
    assert case.verdict is Verdict.MALICIOUS
    assert case.actions == []
    assert world.executions.started[summary.case_id].remediable is False


def test_an_ioc_met_twice_in_a_batch_is_looked_up_once_and_counts_as_a_hit() -> None:
    # Given two findings sharing 23.129.64.215, in one batch
    world = World()
    enricher = world.enricher()

    # When both are handled
    enricher.handle_record("m-1", _sample("synthetic-guardduty-iam-tor-caller.json"))
    second = enricher.handle_record("m-2", _sample("synthetic-guardduty-portprobe.json"))

    # Then VirusTotal is asked once, and the second case shows the IOC as answered without a request
    assert world.intel.lookups == ["ip#23.129.64.215"]
    assert (enricher.lookups, enricher.cache_hits) == (1, 1)
    case = world.cases.get(second.cases[0].case_id)
    assert case is not None
    [ip] = [ioc for ioc in case.iocs if ioc.value == "23.129.64.215"]
    assert ip.cached is True
    assert ip.verdict is Verdict.MALICIOUS


def test_a_later_batch_reads_a_fresh_enrichment_from_the_cache() -> None:
    # Given an IOC enriched in an earlier batch
    world = World()
    world.enricher().handle_record("m-1", _sample("synthetic-guardduty-iam-tor-caller.json"))

    # When a new batch meets it in another finding
    enricher = world.enricher()
    enricher.handle_record("m-2", _sample("synthetic-guardduty-portprobe.json"))

    # Then no new lookup is made
    assert world.intel.lookups == ["ip#23.129.64.215"]
    assert (enricher.lookups, enricher.cache_hits) == (0, 1)


def test_a_repeat_delivery_is_not_enriched_again_and_names_the_same_execution() -> None:
    # Given a finding already triaged
    world = World()
    body = _sample("synthetic-guardduty-iam-tor-caller.json")
    [first] = world.enricher().handle_record("m-1", body).cases

    # When the same finding is delivered again
    [again] = world.enricher().handle_record("m-2", body).cases

    # Then it is the same case and execution, marked as a repeat, with no new lookup and one execution
    assert (again.case_id, again.execution_arn, again.duplicate) == (first.case_id, first.execution_arn, True)
    assert world.intel.lookups == ["ip#23.129.64.215"]
    assert list(world.executions.started) == [first.case_id]


def test_a_record_that_is_not_json_is_rejected_with_its_reason_kept_and_parked() -> None:
    # Given a body that is not JSON
    world = World()

    # When it is handled
    outcome = world.enricher().handle_record("m-9", "{not json")

    # Then it is rejected with a reason naming the body, recorded, and sent to the dead-letter queue
    assert outcome.cases == []
    assert outcome.rejected_reason is not None
    assert outcome.rejected_reason.startswith("body: not JSON")
    [failure] = world.cases.failures.values()
    assert (failure.message_id, failure.body) == ("m-9", "{not json")
    [parked] = world.dead_letters.sent
    assert (parked.message_id, parked.reason) == ("m-9", outcome.rejected_reason)
    assert world.intel.lookups == []


def test_a_finding_missing_a_required_field_is_rejected_naming_the_field() -> None:
    # Given a GuardDuty event whose detail lacks `service`
    world = World()
    event = json.loads(_sample("synthetic-guardduty-iam-tor-caller.json"))
    del event["detail"]["service"]

    # When it is handled
    outcome = world.enricher().handle_record("m-3", json.dumps(event))

    # Then the reason names the field
    assert outcome.rejected_reason is not None
    assert "detail.service" in outcome.rejected_reason
    assert world.executions.started == {}


def test_a_transient_virustotal_error_fails_the_record_for_a_retry_and_stores_no_case() -> None:
    # Given VirusTotal answering the IP's lookup with a transient error
    world = World(errors={"ip#23.129.64.215": TransientError("429 QuotaExceededError")})

    # When the record is handled, Then the error propagates so that only this record is retried
    with pytest.raises(TransientError):
        world.enricher().handle_record("m-1", _sample("synthetic-guardduty-iam-tor-caller.json"))
    assert world.cases.case_ids == []
    assert world.executions.started == {}
    assert world.dead_letters.sent == []
