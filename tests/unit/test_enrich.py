"""The enrich domain with in-memory fakes: verdicts, dedupe, cache, repeats and rejected records."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from vtriage.composition import aws_session
from vtriage.composition.enrich import batch_factory
from vtriage.composition.sqs_batch import batch_metrics, triage_sqs_batch
from vtriage.config.enrich import EnrichSettings
from vtriage.eligibility import Place, PushedAlertActions
from vtriage.enrich.batch import Batch
from vtriage.enrich.lookups import Deadline, Lookups
from vtriage.enrich.outcomes import RecordOutcome
from vtriage.enrich.records import Deferrals, QueuedRecord, Refusals
from vtriage.enrich.repeats import Repeats, Variants
from vtriage.enrich.triage import Triage, TriageRules
from vtriage.errors import QuotaExhaustedError, TransientError
from vtriage.fakes import (
    FakeDeadLetterQueue,
    FakeExecutionStarter,
    FakeMessageDeferral,
    FakeQuotaLimiter,
    FakeThreatIntel,
    InMemoryCaseRepository,
    InMemoryEnrichmentCache,
    InMemoryRepeatLedger,
)
from vtriage.intake import IntakeOptions
from vtriage.models import (
    ActionStatus,
    Branch,
    Case,
    CaseStatus,
    Channel,
    Enrichment,
    Ioc,
    Provenance,
    Verdict,
)
from vtriage.playbook import Playbooks, default_playbooks
from vtriage.ports import FindingLedger, MessageDeferral
from vtriage.verdict import VerdictPolicy
from vtriage.virustotal.errors import VirusTotalQuotaExceededError

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
# The samples' own account and Region, and the detector rules' queue: where these tests' alerts come from.
PLACE = Place(own_account="123456789012", regions=frozenset({"us-east-1"}))
ALERT_QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:AlertQueue"
DETECTOR = Provenance(channel="detector")


def _vt(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((ROOT / "tests" / "fixtures" / "vt" / name).read_text())["data"]
    return data


def _sample(name: str) -> str:
    return (ROOT / "events" / name).read_text()


class Clock:
    """A clock a test moves by hand."""

    def __init__(self, at: datetime = NOW) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


class World:
    """The enrich domain over fakes, with the real VirusTotal reports the samples' IOCs name: its settings
    are attributes a test may change before it makes a batch."""

    def __init__(
        self,
        errors: dict[str, Exception] | None = None,
        per_minute: int | None = None,
        per_day: int = 500,
        clock: Clock | None = None,
        ticket_min_severity: str = "medium",
    ) -> None:
        self.clock = clock or Clock()
        self.intel = FakeThreatIntel(
            {
                "domain#tawuhoju.com": _vt("opencti__vt_test_domain.json"),
                "ip#23.129.64.215": _vt("demisto__TestData_ip.json"),
            },
            errors=errors,
        )
        self.cache = InMemoryEnrichmentCache(now=self.clock)
        self.cases = InMemoryCaseRepository()
        self.executions = FakeExecutionStarter()
        self.dead_letters = FakeDeadLetterQueue()
        self.limiter = FakeQuotaLimiter(per_minute, per_day, self.clock) if per_minute else None
        self.deferral = FakeMessageDeferral()
        self.ledger = InMemoryRepeatLedger(self.cases, self.clock)
        self.findings: FindingLedger | None = None
        self.ticket_min_severity = ticket_min_severity
        self.pushed_alert_actions: PushedAlertActions = "approval"
        # The deployment's DryRun (true unless turned off, as deployed).
        self.dry_run = True
        # The playbooks (None: the shipped ones).
        self.playbooks: Playbooks | None = None
        self.intake = IntakeOptions()
        self.channels: dict[str, Channel] = {ALERT_QUEUE_ARN: "detector"}
        self.queues: dict[str, MessageDeferral] = {ALERT_QUEUE_ARN: self.deferral}
        self.max_concurrency = 4
        self.max_deferrals = 500
        # The queues' maxReceiveCount; None: the batch never knows a record is on its last delivery.
        self.max_receives: int | None = None
        self.is_transient: Callable[[Exception], bool] = lambda error: False
        self.monotonic: Callable[[], float] = time.monotonic

    def batch(self) -> Batch:
        """A new batch, as each Lambda invocation makes, over the fakes and the settings as they are now."""
        lookups = Lookups(
            self.intel,
            self.cache,
            VerdictPolicy(),
            self.clock,
            Deadline(self.monotonic),
            limiter=self.limiter,
            max_concurrency=self.max_concurrency,
        )
        rules = TriageRules(
            place=PLACE,
            pushed_alert_actions=self.pushed_alert_actions,
            playbooks=self.playbooks,
            ticket_min_severity=self.ticket_min_severity,
        )
        repeats = Repeats(
            self.ledger,
            self.cases,
            self.executions,
            ticket_min_severity=self.ticket_min_severity,
            dry_run=self.dry_run,
        )
        variants = Variants(self.findings, self.cases) if self.findings is not None else None
        refusals = Refusals(self.cases, self.dead_letters)
        return Batch(
            intake=self.intake,
            triage=Triage(
                self.cases, self.executions, lookups, rules, self.clock, repeats=repeats, variants=variants
            ),
            refusals=refusals,
            deferrals=Deferrals(self.queues, refusals, self.clock, max_deferrals=self.max_deferrals),
            channels=self.channels,
            is_transient=self.is_transient,
            max_receives=self.max_receives,
        )

    def handle_record(self, message_id: str, body: str, batch: Batch | None = None) -> RecordOutcome:
        """One record of the detector rules' queue, read and triaged by `batch` (a new one by default) as
        in its invocation, but not deferred on its queue: the outcome says until when it would be."""
        batch = batch or self.batch()
        [read] = batch.read([QueuedRecord(message_id, body, ALERT_QUEUE_ARN)])
        return batch.triage_record(read)

    def case(self, case_id: str) -> Case:
        """A stored case, which must exist."""
        case = self.cases.get(case_id)
        assert case is not None, f"no case {case_id}"
        return case


def test_malicious_c2_domain_on_an_instance_makes_a_remediable_case_and_starts_its_execution() -> None:
    # Given the C&C sample and VirusTotal's real report of its domain
    world = World()

    # When its record is handled
    body = _sample("synthetic-guardduty-backdoor-c2-dns.json")
    outcome = world.handle_record("m-1", body)

    # Then one malicious case is stored, with the default playbooks' actions planned (forensic snapshot,
    # tag and isolation of the instance, the domain blocked), and its execution started by case id
    [summary] = outcome.cases
    case = world.cases.get(summary.case_id)
    assert case is not None
    assert (case.verdict, case.status) == (Verdict.MALICIOUS, CaseStatus.ENRICHED)
    assert [(action.type, action.target) for action in case.actions] == [
        ("snapshot_volumes", "i-0b3f6c2d9e1a47c58"),
        ("tag_instance", "i-0b3f6c2d9e1a47c58"),
        ("isolate_instance", "i-0b3f6c2d9e1a47c58"),
        ("block_domain_dns_firewall", "tawuhoju.com"),
    ]
    started = world.executions.started[summary.case_id]
    assert (started.verdict, started.remediable, started.severity) == (Verdict.MALICIOUS, True, "high")
    assert world.intel.lookups == ["domain#tawuhoju.com"]


def test_malicious_ip_probing_an_instance_plans_no_isolation() -> None:
    # Given a port probe from a malicious IP: the instance is the target, not the culprit
    world = World()

    # When it is handled
    body = _sample("synthetic-guardduty-portprobe.json")
    [summary] = world.handle_record("m-1", body).cases

    # Then the case is malicious but nothing is planned against the instance, so a person decides
    case = world.cases.get(summary.case_id)
    assert case is not None
    assert case.verdict is Verdict.MALICIOUS
    assert case.actions == []
    assert world.executions.started[summary.case_id].remediable is False


def test_an_ioc_met_twice_in_a_batch_is_looked_up_once_and_counts_as_a_hit() -> None:
    # Given two findings sharing 23.129.64.215, in one batch
    world = World()
    batch = world.batch()

    # When both are handled
    world.handle_record("m-1", _sample("synthetic-guardduty-iam-tor-caller.json"), batch)
    second = world.handle_record("m-2", _sample("synthetic-guardduty-portprobe.json"), batch)

    # Then VirusTotal is asked once, and the second case shows the IOC as answered without a request
    assert world.intel.lookups == ["ip#23.129.64.215"]
    assert (batch.lookups.looked_up, batch.lookups.cache_hits) == (1, 1)
    case = world.cases.get(second.cases[0].case_id)
    assert case is not None
    [ip] = [ioc for ioc in case.iocs if ioc.value == "23.129.64.215"]
    assert ip.cached is True
    assert ip.verdict is Verdict.MALICIOUS


def test_a_later_batch_reads_a_fresh_enrichment_from_the_cache() -> None:
    # Given an IOC enriched in an earlier batch
    world = World()
    world.handle_record("m-1", _sample("synthetic-guardduty-iam-tor-caller.json"))

    # When a new batch meets it in another finding
    batch = world.batch()
    world.handle_record("m-2", _sample("synthetic-guardduty-portprobe.json"), batch)

    # Then no new lookup is made
    assert world.intel.lookups == ["ip#23.129.64.215"]
    assert (batch.lookups.looked_up, batch.lookups.cache_hits) == (0, 1)


def test_a_repeat_delivery_is_not_enriched_again_and_names_the_same_execution() -> None:
    # Given a finding already triaged
    world = World()
    body = _sample("synthetic-guardduty-iam-tor-caller.json")
    [first] = world.handle_record("m-1", body).cases

    # When the same finding is delivered again
    [again] = world.handle_record("m-2", body).cases

    # Then it is the same case and execution, marked as a repeat, with no new lookup and one execution
    assert (again.case_id, again.execution_arn, again.duplicate) == (first.case_id, first.execution_arn, True)
    assert world.intel.lookups == ["ip#23.129.64.215"]
    assert list(world.executions.started) == [first.case_id]


def test_a_record_that_is_not_json_is_rejected_with_its_reason_kept_and_parked() -> None:
    # Given a body that is not JSON
    world = World()

    # When it is handled
    outcome = world.handle_record("m-9", "{not json")

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
    # Given a GuardDuty event whose detail lacks its `id`: nothing identifies the finding
    world = World()
    event = json.loads(_sample("synthetic-guardduty-iam-tor-caller.json"))
    del event["detail"]["id"]

    # When it is handled
    outcome = world.handle_record("m-3", json.dumps(event))

    # Then the reason names the field
    assert outcome.rejected_reason is not None
    assert "detail.id: missing" in outcome.rejected_reason
    assert world.executions.started == {}


def test_a_transient_virustotal_error_fails_the_record_for_a_retry_and_stores_no_case() -> None:
    # Given VirusTotal answering the IP's lookup with a transient error
    world = World(errors={"ip#23.129.64.215": TransientError("429 QuotaExceededError")})

    # When the record is handled, Then the error propagates so that only this record is retried
    with pytest.raises(TransientError):
        world.handle_record("m-1", _sample("synthetic-guardduty-iam-tor-caller.json"))
    assert world.cases.case_ids == []
    assert world.executions.started == {}
    assert world.dead_letters.sent == []


# ---------------------------------------------------------------- the shared quota and deferral

C2 = "synthetic-guardduty-backdoor-c2-dns.json"  # domain#tawuhoju.com
TOR = "synthetic-guardduty-iam-tor-caller.json"  # ip#23.129.64.215
SUSPICIOUS_DNS = "synthetic-guardduty-ec2-suspicious-dns.json"  # domain#telemetry-sync.net


def _sqs_event(*names: str, receives: int = 1) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": f"m-{index}",
                "receiptHandle": f"handle-{index}",
                "body": _sample(name),
                "attributes": {"ApproximateReceiveCount": str(receives)},
                "messageAttributes": {"origin": {"stringValue": name, "dataType": "String"}},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": ALERT_QUEUE_ARN,
                "awsRegion": "us-east-1",
            }
            for index, name in enumerate(names)
        ]
    }


def test_when_the_minute_quota_runs_out_the_other_records_are_deferred_to_the_next_minute() -> None:
    # Given a quota of one request a minute, at 12:00:20, and three alerts with distinct IOCs
    world = World(per_minute=1, clock=Clock(NOW + timedelta(seconds=20)))
    batch = world.batch()

    # When their batch is triaged
    response = triage_sqs_batch(batch, _sqs_event(C2, TOR, SUSPICIOUS_DNS))

    # Then one request was made, one case was enriched and its execution started
    assert len(world.intel.lookups) == 1
    assert len(world.executions.started) == 1
    # and the two other records are retried, hidden until 12:01:00, not rejected and not parked
    failed = sorted(str(item["itemIdentifier"]) for item in response["batchItemFailures"])
    assert len(failed) == 2
    assert sorted(world.deferral.hidden) == [(f"handle-{m[-1]}", 40) for m in failed]
    assert world.dead_letters.sent == []
    assert (batch.deferrals.deferred, batch.refusals.rejected) == (2, 0)
    # and their cases say that enrichment is pending, with no verdict, no action and no execution
    pending = [case for case_id in world.cases.case_ids if (case := world.cases.get(case_id)) is not None]
    pending = [case for case in pending if case.status is CaseStatus.PENDING_ENRICHMENT]
    assert len(pending) == 2
    for case in pending:
        assert (case.verdict, case.actions, case.execution_arn) == (Verdict.UNKNOWN, [], None)
        assert case.error is not None
        assert "pending" in case.error
        assert all(ioc.reasons[0].startswith("pending") for ioc in case.iocs)


def test_a_deferred_record_is_enriched_when_the_window_reopens_and_nothing_is_looked_up_twice() -> None:
    # Given the batch above, deferred at 12:00:20 with a quota of one request a minute
    clock = Clock(NOW + timedelta(seconds=20))
    world = World(per_minute=1, clock=clock)
    first = triage_sqs_batch(world.batch(), _sqs_event(C2, TOR, SUSPICIOUS_DNS))
    deferred = {str(item["itemIdentifier"]) for item in first["batchItemFailures"]}

    # When the deferred records come back in each of the next two minutes
    names = {f"m-{index}": name for index, name in enumerate((C2, TOR, SUSPICIOUS_DNS))}
    for minute in (1, 2):
        clock.at = NOW + timedelta(minutes=minute, seconds=1)
        event = _sqs_event(*(names[message_id] for message_id in sorted(deferred)), receives=minute + 1)
        response = triage_sqs_batch(world.batch(), event)
        deferred = {
            sorted(deferred)[int(str(item["itemIdentifier"])[-1])] for item in response["batchItemFailures"]
        }

    # Then every case is enriched, each IOC was looked up exactly once, and each execution started once
    assert deferred == set()
    assert sorted(world.intel.lookups) == sorted(
        ["domain#tawuhoju.com", "ip#23.129.64.215", "domain#telemetry-sync.net"]
    )
    cases = [world.cases.get(case_id) for case_id in world.cases.case_ids]
    assert [case.status for case in cases if case is not None] == [CaseStatus.ENRICHED] * 3
    assert len(world.executions.started) == 3


def test_a_case_pending_for_one_of_two_iocs_keeps_the_one_already_looked_up() -> None:
    # Given an alert with two IOCs to look up and a quota of one request a minute
    world = World(per_minute=1)

    # When it is handled
    body = _sample("synthetic-securityhub-threat-intel.json")
    outcome = world.handle_record("m-1", body)

    # Then the record is deferred to the next minute and the first IOC's enrichment is kept in the cache
    assert outcome.deferred_until == NOW + timedelta(minutes=1)
    [looked_up] = world.intel.lookups
    assert [enrichment.key for enrichment in world.cache.puts] == [looked_up]
    # When it comes back the next minute, Then the cached IOC is not asked for again
    world.clock.at = NOW + timedelta(minutes=1)
    world.handle_record("m-1", _sample("synthetic-securityhub-threat-intel.json"))
    assert world.intel.lookups.count(looked_up) == 1


def test_when_the_day_is_spent_the_record_waits_for_midnight_utc_capped_at_twelve_hours() -> None:
    # Given a daily quota already spent, at 09:00 UTC
    clock = Clock(datetime(2026, 11, 26, 9, 0, tzinfo=UTC))
    world = World(per_minute=4, per_day=1, clock=clock)
    triage_sqs_batch(world.batch(), _sqs_event(C2))

    # When another record arrives
    response = triage_sqs_batch(world.batch(), _sqs_event(TOR))

    # Then it is hidden for the longest SQS allows (12 h less the longest invocation), not failed for good
    assert len(response["batchItemFailures"]) == 1
    assert world.deferral.hidden == [("handle-0", 12 * 3600 - 15 * 60)]
    assert world.limiter is not None
    assert world.limiter.used["minute#2026-11-26T09:00"] == 1  # the refused request spent no minute unit


def test_a_record_deferred_again_and_again_is_queued_afresh_instead_of_reaching_the_dead_letter_queue() -> (
    None
):
    # Given a record received for the third time (the default threshold) while the quota is spent
    world = World(per_minute=1)
    triage_sqs_batch(world.batch(), _sqs_event(C2))

    # When it is deferred again
    response = triage_sqs_batch(world.batch(), _sqs_event(TOR, receives=3))

    # Then this copy is acknowledged and a fresh one, with the same body and attributes, waits a minute,
    # counting the three deferrals so far
    assert response["batchItemFailures"] == []
    assert world.deferral.hidden == []
    [copy] = world.deferral.requeued
    assert (copy.body, copy.delay_seconds) == (_sample(TOR), 60)
    assert copy.attributes == {"origin": TOR, "vtriage_deferrals": "3"}


def test_a_virustotal_429_after_the_client_retries_defers_the_record_to_the_next_minute() -> None:
    # Given VirusTotal answering QuotaExceededError for the IP, and no limiter of our own
    quota = VirusTotalQuotaExceededError("Quota exceeded", "QuotaExceededError", 429)
    world = World(errors={"ip#23.129.64.215": quota})
    batch = world.batch()

    # When the record is handled
    response = triage_sqs_batch(batch, _sqs_event(TOR))

    # Then it is deferred to the next minute, not failed for good, and its case is pending
    assert len(response["batchItemFailures"]) == 1
    assert world.deferral.hidden == [("handle-0", 60)]
    [case_id] = world.cases.case_ids
    case = world.cases.get(case_id)
    assert case is not None
    assert case.status is CaseStatus.PENDING_ENRICHMENT


def test_a_429_naming_the_daily_quota_defers_to_midnight_utc() -> None:
    # Given VirusTotal saying that the daily quota is exceeded
    quota = VirusTotalQuotaExceededError("Daily quota exceeded", "QuotaExceededError", 429)
    world = World(errors={"ip#23.129.64.215": quota})

    # When the record is handled, Then it waits for 00:00 UTC
    outcome = world.handle_record("m-1", _sample(TOR))
    assert outcome.deferred_until == datetime(2026, 11, 27, tzinfo=UTC)


def test_an_ioc_repeated_in_a_batch_is_looked_up_once_and_counted_once_as_a_lookup() -> None:
    # Given a batch of three alerts, two sharing 23.129.64.215
    world = World()
    batch = world.batch()

    # When it is triaged
    triage_sqs_batch(batch, _sqs_event(TOR, "synthetic-guardduty-portprobe.json", C2))

    # Then each IOC was asked for once, and the repeat counts as a cache hit
    assert sorted(world.intel.lookups) == ["domain#tawuhoju.com", "ip#23.129.64.215"]
    assert (batch.lookups.looked_up, batch.lookups.cache_hits, batch.lookups.vt_requests) == (2, 1, 2)


class MeetingIntel(FakeThreatIntel):
    """Answers only once `parties` lookups are in flight together; records the most seen at once."""

    def __init__(self, parties: int) -> None:
        super().__init__()
        self._barrier = threading.Barrier(parties, timeout=10)
        self._lock = threading.Lock()
        self.in_flight = 0
        self.most_in_flight = 0

    def lookup(self, ioc: Ioc, deadline: float | None = None) -> dict[str, Any] | None:
        with self._lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            self._barrier.wait()
        finally:
            with self._lock:
                self.in_flight -= 1
        return None


def _domain_findings(count: int, prefix: str) -> list[str]:
    """`count` C&C findings, each of its own instance-less id and domain `{prefix}-{n}.com`."""
    alert = json.loads(_sample(C2))
    bodies = []
    for index in range(count):
        variant = json.loads(json.dumps(alert))
        variant["detail"]["id"] = f"{index:032x}"
        variant["detail"]["service"]["action"]["dnsRequestAction"]["domain"] = f"{prefix}-{index}.com"
        bodies.append(json.dumps(variant))
    return bodies


def _queued(bodies: list[str]) -> list[QueuedRecord]:
    """The bodies as records of the detector rules' queue."""
    return [QueuedRecord(f"m-{index}", body, ALERT_QUEUE_ARN) for index, body in enumerate(bodies)]


def _event_of(bodies: list[str]) -> dict[str, Any]:
    event = _sqs_event(*[C2] * len(bodies))
    for record, body in zip(event["Records"], bodies, strict=True):
        record["body"] = body
    return event


def test_lookups_of_a_batch_run_concurrently_and_never_more_at_once_than_the_setting() -> None:
    # Given eight IOCs to look up and a concurrency of four, against an intel that answers only when
    # four lookups wait together (sequential lookups would never be answered)
    world = World()
    intel = MeetingIntel(parties=4)
    world.intel = intel
    world.max_concurrency = 4
    bodies = _domain_findings(8, "concurrent")

    # When the batch is read
    world.batch().read(_queued(bodies))

    # Then every unique IOC was answered, at most four at a time
    assert len(world.cache.puts) == 8
    assert intel.most_in_flight == 4


def test_a_batch_reads_the_cache_once_takes_its_quota_at_once_and_caches_each_lookup_as_it_arrives() -> None:
    # Given eight findings with a domain each, two of them enriched in an earlier batch, and a quota
    # with room for the batch
    world = World(per_minute=100)
    bodies = _domain_findings(8, "batched")
    world.batch().read(_queued(bodies[:2]))
    world.cache.reads.clear()

    # When the eight are triaged in one batch
    response = triage_sqs_batch(world.batch(), _event_of(bodies))

    # Then the cache was read once for all eight, the quota taken once for the six it did not hold,
    # VirusTotal asked six times, and each answer written once, as it arrived
    assert response["batchItemFailures"] == []
    assert [sorted(keys) for keys in world.cache.reads] == [
        sorted(f"domain#batched-{n}.com" for n in range(8))
    ]
    assert world.limiter is not None
    assert world.limiter.takes == [2, 6]
    assert len(world.intel.lookups) == 2 + 6
    assert world.cache.writes == 2 + 6
    assert sorted(enrichment.key for enrichment in world.cache.puts) == sorted(world.intel.lookups)
    assert len(world.cases.case_ids) == 8


def test_when_the_quota_has_room_for_fewer_than_a_batch_as_many_run_as_fit_and_the_rest_wait() -> None:
    # Given a quota of four requests a minute and six findings with a domain each
    world = World(per_minute=4, clock=Clock(NOW + timedelta(seconds=20)))
    batch = world.batch()

    # When they are triaged in one batch
    response = triage_sqs_batch(batch, _event_of(_domain_findings(6, "scarce")))

    # Then the six could not be taken at once, so each lookup took its own unit: four ran and were
    # enriched, and the two records left are deferred to the next minute, not failed
    assert world.limiter is not None
    assert world.limiter.takes == [1, 1, 1, 1]
    assert len(world.intel.lookups) == 4
    assert len(response["batchItemFailures"]) == 2
    assert batch.deferrals.deferred == 2
    assert sorted(seconds for _, seconds in world.deferral.hidden) == [40, 40]


def test_with_deep_context_each_lookup_takes_a_unit_per_request_it_sends() -> None:
    # Given lookups of four requests each (deep context) and a quota of ten requests a minute
    world = World(per_minute=10, clock=Clock(NOW + timedelta(seconds=20)))
    world.intel = FakeThreatIntel(requests_per_lookup=4)
    batch = world.batch()

    # When six findings with a domain each are triaged in one batch
    response = triage_sqs_batch(batch, _event_of(_domain_findings(6, "deep")))

    # Then the 24 requests could not be taken at once, two lookups (8 requests) fit, and the four
    # records left wait for the next minute: the quota never counts fewer requests than were sent
    assert world.limiter is not None
    assert world.limiter.takes == [4, 4]
    assert len(world.intel.lookups) == 2
    assert len(response["batchItemFailures"]) == 4


class UnwritableCache(InMemoryEnrichmentCache):
    """A cache whose writes fail, as a throttled or unreachable table's do."""

    def put(self, enrichments: Sequence[Enrichment]) -> None:
        raise TransientError("enrichments table throttled")


class UnreadableCache(InMemoryEnrichmentCache):
    """A cache whose reads fail."""

    def get_fresh(self, iocs: Sequence[Ioc]) -> dict[str, Enrichment]:
        raise TransientError("enrichments table unreachable")


def test_a_cache_write_that_fails_costs_no_record() -> None:
    # Given an enrichments table that refuses writes
    world = World()
    world.cache = UnwritableCache(now=world.clock)

    # When a batch is triaged
    response = triage_sqs_batch(world.batch(), _sqs_event(C2, TOR))

    # Then both cases are enriched anyway: the cache only spares a lookup later
    assert response["batchItemFailures"] == []
    verdicts = sorted(world.case(case_id).verdict.value for case_id in world.cases.case_ids)
    assert verdicts == ["malicious", "malicious"]


def test_a_cache_that_cannot_be_read_fails_only_the_records_with_iocs_to_look_up() -> None:
    # Given an enrichments table that cannot be read, and a batch of a finding with an IOC and a
    # Security Hub control finding with none
    world = World()
    world.cache = UnreadableCache(now=world.clock)
    event = _sqs_event(C2, "securityhub-afsbp-ec2.7-ebs-default-encryption.json")

    # When the batch is triaged
    response = triage_sqs_batch(world.batch(), event)

    # Then the finding with the IOC is retried, without a case or a lookup, and the other one is triaged
    assert [item["itemIdentifier"] for item in response["batchItemFailures"]] == ["m-0"]
    assert world.intel.lookups == []
    assert len(world.cases.case_ids) == 1
    assert world.dead_letters.sent == []


def test_cache_ttls_default_per_verdict_and_follow_their_settings() -> None:
    # Given the enrich settings with only the suspicious TTL set
    environ = {
        "AWS_REGION": "eu-west-1",
        "CASES_TABLE_NAME": "cases",
        "ENRICHMENTS_TABLE_NAME": "enrichments",
        "STATE_MACHINE_ARN": "arn:aws:states:eu-west-1:123456789012:stateMachine:triage",
        "DEAD_LETTER_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/dlq",
        "VT_API_KEY_SECRET_NAME": "vtriage/virustotal-api-key",
        "ALERT_QUEUE_ARN": "arn:aws:sqs:eu-west-1:123456789012:AlertQueue",
        "PUSHED_ALERT_QUEUE_ARN": "arn:aws:sqs:eu-west-1:123456789012:PushedAlertQueue",
        "OWN_ACCOUNT_ID": "123456789012",
        "CACHE_TTL_SUSPICIOUS_HOURS": "3",
    }

    # When they are read
    settings = EnrichSettings.from_environ(environ)

    # Then each verdict has its freshness, and the quota defaults are the public API's
    assert {verdict.value: ttl / timedelta(hours=1) for verdict, ttl in settings.cache_ttls.items()} == {
        "malicious": 24,
        "suspicious": 3,
        "harmless": 6,
        "unknown": 1,
    }
    assert (settings.vt_quota_per_minute, settings.vt_quota_per_day, settings.vt_max_concurrency) == (
        4,
        500,
        4,
    )


def test_quota_exhausted_is_a_transient_error_carrying_when_to_retry() -> None:
    # Given the error the limiter raises
    error = QuotaExhaustedError("spent", NOW, window="day")

    # Then the queue retries it like any transient error, and it says when
    assert isinstance(error, TransientError)
    assert (error.retry_at, error.window) == (NOW, "day")


# ---------------------------------------------------------------- routing, history and repeats


def _variant(name: str, **detail: Any) -> str:
    """A sample GuardDuty event with fields of its `detail` replaced (another finding id, version...)."""
    event = json.loads(_sample(name))
    event["detail"].update(detail)
    return json.dumps(event)


def test_a_new_case_keeps_its_history_from_the_alert_to_its_enrichment() -> None:
    # Given the C&C sample, When it is triaged
    world = World()
    [summary] = world.handle_record("m-1", _sample(C2)).cases

    # Then the case's history says when it came in and what enrichment decided
    case = world.case(summary.case_id)
    assert [(entry.status, entry.at) for entry in case.history] == [
        (CaseStatus.NEW, NOW),
        (CaseStatus.ENRICHED, NOW),
    ]
    assert case.alert.id in case.history[0].note
    assert case.history[1].note == "verdict malicious; 4 actions planned; route remediate"
    assert world.executions.started[summary.case_id].route is Branch.REMEDIATE


def test_a_deferred_case_keeps_its_pending_step_in_its_history() -> None:
    # Given a quota of one request a minute, spent by the first of two alerts
    world = World(per_minute=1)
    triage_sqs_batch(world.batch(), _sqs_event(C2))
    deferred = world.handle_record("m-2", _sample(TOR))
    assert deferred.deferred_until is not None

    # When the record comes back once the minute reopens
    world.clock.at = NOW + timedelta(minutes=1)
    [summary] = world.handle_record("m-2", _sample(TOR)).cases

    # Then its history shows the wait, then the enrichment
    statuses = [entry.status for entry in world.case(summary.case_id).history]
    assert statuses == [CaseStatus.NEW, CaseStatus.PENDING_ENRICHMENT, CaseStatus.ENRICHED]


def test_a_medium_severity_alert_with_only_documentation_addresses_goes_to_a_ticket() -> None:
    # Given a real medium-severity (5) finding whose only address is a documentation one
    world = World()

    # When it is triaged
    [summary] = world.handle_record("m-1", _sample("guardduty-iam-recon-malicious-ip-caller.json")).cases

    # Then nothing was looked up, and the detector's severity sends it to a person
    assert world.intel.lookups == []
    started = world.executions.started[summary.case_id]
    assert (started.verdict, started.severity, started.route) == (Verdict.UNKNOWN, "medium", Branch.TICKET)


def test_with_a_high_ticket_threshold_the_same_alert_is_closed() -> None:
    # Given tickets only from high severity, When the medium-severity finding is triaged, Then it is closed
    world = World(ticket_min_severity="high")
    [summary] = world.handle_record("m-1", _sample("guardduty-iam-recon-malicious-ip-caller.json")).cases
    assert world.executions.started[summary.case_id].route is Branch.CLOSE


def test_a_repeat_of_a_finding_is_folded_into_its_case_and_sent_to_its_ticket() -> None:
    # Given a suspicious-DNS finding triaged an hour ago (a ticket route)
    world = World()
    [first] = world.handle_record("m-1", _sample(SUSPICIOUS_DNS)).cases
    world.clock.at = NOW + timedelta(hours=1)

    # When GuardDuty reports the same activity on the same instance under another finding id
    repeat_body = _variant(SUSPICIOUS_DNS, id="f" * 32, updatedAt="2025-03-19T03:07:30.166Z")
    [summary] = world.handle_record("m-2", repeat_body).cases

    # Then no case is opened: the first one counts the repeat and says so in its history
    assert world.cases.case_ids == [first.case_id]
    assert (summary.case_id, summary.repeat, summary.duplicate) == (first.case_id, True, False)
    case = world.case(first.case_id)
    assert case.repeat_count == 1
    assert case.last_repeat is not None
    assert case.last_repeat.alert_id == "f" * 32
    assert case.history[-1].note.startswith("repeat of " + "f" * 32)
    assert case.history[-1].at == NOW + timedelta(hours=1)
    # and an execution named after the repeat takes the first case to its ticket, which is told of it
    [repeat_name] = [name for name in world.executions.started if name != first.case_id]
    told = world.executions.started[repeat_name]
    assert (told.case_id, told.route, told.actions) == (first.case_id, Branch.TICKET, 0)
    assert summary.execution_arn.endswith(":" + repeat_name)
    assert case.uncommented_repeats == 1
    assert "repeated 1 more time" in case.repeat_comment()


def test_a_repeat_delivered_twice_is_counted_once() -> None:
    # Given a finding and a later version of it, each delivered twice
    world = World()
    world.handle_record("m-1", _sample(SUSPICIOUS_DNS))
    later = _variant(SUSPICIOUS_DNS, updatedAt="2025-03-19T09:07:30.166Z")

    # When the later version is handled twice
    [once] = world.handle_record("m-2", later).cases
    [again] = world.handle_record("m-3", later).cases

    # Then it counts once, the second delivery is marked as a duplicate, and one execution tells the ticket
    assert world.case(once.case_id).repeat_count == 1
    assert (again.case_id, again.duplicate, again.execution_arn) == (once.case_id, True, once.execution_arn)
    assert len(world.executions.started) == 2


def test_a_repeat_after_the_window_opens_a_case_of_its_own() -> None:
    # Given a finding triaged 25 hours ago (the default window is 24 hours)
    world = World()
    [first] = world.handle_record("m-1", _sample(SUSPICIOUS_DNS)).cases
    world.clock.at = NOW + timedelta(hours=25)

    # When it repeats
    [later] = world.handle_record("m-2", _variant(SUSPICIOUS_DNS, id="e" * 32)).cases

    # Then it is a new case, and the first one is left as it was
    assert later.case_id != first.case_id
    assert later.repeat is False
    assert world.case(first.case_id).repeat_count == 0


def test_a_repeat_that_virustotal_now_calls_malicious_is_a_case_of_its_own() -> None:
    # Given a DNS finding whose domain VirusTotal did not know an hour ago (unknown, ticketed)
    world = World()
    world.cache = InMemoryEnrichmentCache(freshness=timedelta(minutes=30), now=world.clock)
    [first] = world.handle_record("m-1", _sample(SUSPICIOUS_DNS)).cases
    assert first.verdict is Verdict.UNKNOWN

    # When it repeats after VirusTotal's engines have flagged the domain
    world.clock.at = NOW + timedelta(hours=1)
    world.intel = FakeThreatIntel({"domain#telemetry-sync.net": _vt("opencti__vt_test_domain.json")})
    [later] = world.handle_record("m-2", _variant(SUSPICIOUS_DNS, id="d" * 32)).cases

    # Then the worse news opens its own case, which future repeats now meet
    assert (later.verdict, later.repeat) == (Verdict.MALICIOUS, False)
    assert later.case_id != first.case_id
    assert world.case(first.case_id).repeat_count == 0
    [[kept_case_id, _]] = world.ledger.keys.values()
    assert kept_case_id == later.case_id


def test_a_repeat_in_a_higher_severity_band_is_a_case_of_its_own_and_a_lower_one_is_folded() -> None:
    # Given a high-severity (8) DNS finding triaged an hour ago
    world = World()
    [first] = world.handle_record("m-1", _sample(SUSPICIOUS_DNS)).cases
    world.clock.at = NOW + timedelta(hours=1)

    # When the same activity is reported again at 9 (critical), and again at 5 (medium)
    [critical] = world.handle_record("m-2", _variant(SUSPICIOUS_DNS, id="c" * 32, severity=9)).cases
    [medium] = world.handle_record("m-3", _variant(SUSPICIOUS_DNS, id="d" * 32, severity=5)).cases

    # Then the critical one is not absorbed: a case of its own, which later repeats meet; the medium one
    # says nothing worse than that case and is folded into it
    assert (critical.repeat, critical.case_id != first.case_id) == (False, True)
    assert world.case(critical.case_id).alert.severity.label == "critical"
    assert (medium.repeat, medium.case_id) == (True, critical.case_id)
    assert world.case(first.case_id).repeat_count == 0


WORKSPACE_PHISHING = (
    ROOT / "tests" / "corpus" / "elastic-integrations__google_workspace_alert_test-alert_1.json"
)


def _phishing(alert_id: str, recipient: str | None = None, severity: str | None = None) -> str:
    """Elastic's real user-reported phishing alert (HIGH, example@example.com, three attachments) as another
    alert of Alert Center: another alertId, its messages to `recipient`, rated `severity`."""
    alert = json.loads(WORKSPACE_PHISHING.read_text())
    alert["alertId"] = alert["metadata"]["alertId"] = alert_id
    for message in alert["data"]["messages"]:
        message["recipient"] = recipient or message["recipient"]
    alert["metadata"]["severity"] = severity or alert["metadata"]["severity"]
    return json.dumps(alert)


def test_a_vendor_alert_about_another_user_is_never_the_repeat_of_one_sharing_its_iocs() -> None:
    # Given Elastic's real phishing alert (example@example.com, three attachments), rated MEDIUM, triaged
    world = World()
    [first] = world.handle_record("m-1", _phishing("a-1", severity="MEDIUM")).cases
    world.clock.at = NOW + timedelta(minutes=30)

    # When Alert Center reports the same attachments mailed to the CFO, and again to the first recipient
    [cfo] = world.handle_record("m-2", _phishing("a-2", recipient="cfo@example.com", severity="MEDIUM")).cases
    [again] = world.handle_record("m-3", _phishing("a-3", severity="MEDIUM")).cases

    # Then the CFO's alert is a case of its own, naming its user; the same user's is folded as a repeat
    assert (cfo.repeat, cfo.case_id != first.case_id) == (False, True)
    vendor = world.case(cfo.case_id).alert.vendor
    assert vendor is not None
    assert vendor.user == "cfo@example.com"
    assert (again.repeat, again.case_id) == (True, first.case_id)


def test_a_vendor_alert_rated_higher_is_never_absorbed_into_the_earlier_case() -> None:
    # Given the phishing alert rated MEDIUM, triaged
    world = World()
    [first] = world.handle_record("m-1", _phishing("a-1", severity="MEDIUM")).cases

    # When Alert Center reports it again, about the same user, rated HIGH
    [high] = world.handle_record("m-2", _phishing("a-2", severity="HIGH")).cases

    # Then it is a case of its own, high, and the earlier case counts no repeat
    assert (high.repeat, high.case_id != first.case_id) == (False, True)
    assert world.case(high.case_id).alert.severity.label == "high"
    assert world.case(first.case_id).repeat_count == 0


def test_a_notification_whose_severity_was_guessed_is_folded_into_its_alerts_case() -> None:
    # Given Elastic's real allow-list alert, triaged
    world = World()
    corpus = ROOT / "tests" / "corpus"
    alert = (corpus / "elastic-integrations__google_workspace_alert_test-alert_3.json").read_text()
    [first] = world.handle_record("m-1", alert).cases

    # When its Pub/Sub notification arrives, naming no severity (intake scores it critical, saying so)
    pushed = (corpus / "synthetic-workspace-pubsub-push-badwhitelist.json").read_text()
    [notification] = world.handle_record("m-2", pushed).cases

    # Then the guess is no news: the notification is folded into the alert's case
    assert (notification.repeat, notification.case_id) == (True, first.case_id)


def test_a_repeat_of_a_closed_case_is_counted_and_starts_nothing() -> None:
    # Given a low-severity Security Hub control finding with no IOC, closed
    world = World()
    body = _sample("securityhub-afsbp-ec2.7-ebs-default-encryption.json")
    [first] = world.handle_record("m-1", body).cases
    assert world.executions.started[first.case_id].route is Branch.CLOSE

    # When a later version of the same finding arrives
    event = json.loads(body)
    event["detail"]["findings"][0]["UpdatedAt"] = "2021-02-18T14:56:09.063Z"
    [later] = world.handle_record("m-2", json.dumps(event)).cases

    # Then it is counted on the closed case and no execution is started for it
    assert (later.case_id, later.repeat) == (first.case_id, True)
    assert world.case(first.case_id).repeat_count == 1
    assert list(world.executions.started) == [first.case_id]


# ---------------------------------------------------------------- repeats of a response that did not act

# GuardDuty's next version of the C&C finding: the same activity, counted again later.
C2_LATER = {"updatedAt": "2026-11-26T15:00:00.000Z"}


def _responded(
    world: World, case_id: str, outcome: ActionStatus | tuple[ActionStatus, ...], status: CaseStatus
) -> None:
    """The case as its execution leaves it: every action with `outcome` (or each with its own), the case in
    `status` (the ticket step records TICKETED or FAILED, a remediation that acted REMEDIATED)."""
    case = world.case(case_id)
    outcomes = outcome if isinstance(outcome, tuple) else (outcome,) * len(case.actions)
    case.actions = [
        action.with_outcome(each, f"{each.value} by the remediate function")
        for action, each in zip(case.actions, outcomes, strict=True)
    ]
    if status is not case.status:
        case.record(status, world.clock.at)
    world.cases.save(case)


def test_once_dry_run_is_off_a_later_version_of_a_finding_seen_in_dry_run_acts_in_a_case_of_its_own() -> None:
    # Given the C&C finding triaged while the deployment ran in dry run: its four actions ran in dry run,
    # and its execution ended with its ticket
    world = World()
    [first] = world.handle_record("m-1", _sample(C2)).cases
    _responded(world, first.case_id, ActionStatus.DRY_RUN, CaseStatus.TICKETED)

    # When DryRun is turned off, and GuardDuty sends the finding's next version two hours later
    world.dry_run = False
    world.clock.at = NOW + timedelta(hours=2)
    [later] = world.handle_record("m-2", _variant(C2, **C2_LATER)).cases

    # Then it is not folded into the dry-run case: a case of its own, whose execution remediates
    assert (later.repeat, later.case_id != first.case_id) == (False, True)
    assert world.executions.started[later.case_id].route is Branch.REMEDIATE
    assert world.case(first.case_id).repeat_count == 0
    # And its history says why, naming the earlier case; later repeats meet it
    assert world.case(later.case_id).history[-1].note == (
        f"a repeat of case {first.case_id}, not folded into it: its actions would run, where none of the "
        "earlier case's did (4 ran in dry run)"
    )
    [[kept_case_id, _]] = world.ledger.keys.values()
    assert kept_case_id == later.case_id


def test_while_the_deployment_stays_in_dry_run_a_later_version_is_folded_into_the_dry_run_case() -> None:
    # Given the C&C finding whose actions ran in dry run, and a deployment still in dry run
    world = World()
    [first] = world.handle_record("m-1", _sample(C2)).cases
    _responded(world, first.case_id, ActionStatus.DRY_RUN, CaseStatus.TICKETED)

    # When its next version arrives
    world.clock.at = NOW + timedelta(hours=2)
    [later] = world.handle_record("m-2", _variant(C2, **C2_LATER)).cases

    # Then it would only run in dry run again: it is folded, and its ticket is told
    assert (later.repeat, later.case_id) == (True, first.case_id)
    assert world.case(first.case_id).repeat_count == 1


@pytest.mark.parametrize(
    ("outcome", "status", "left"),
    [
        (ActionStatus.FAILED, CaseStatus.FAILED, "4 failed"),
        # An approval nobody gave in time: the execution escalated it to the ticket and ended.
        (ActionStatus.PENDING_APPROVAL, CaseStatus.FAILED, "4 waited for a person"),
        # Still waiting for a person, with nothing else left to run.
        (ActionStatus.PENDING_APPROVAL, CaseStatus.ENRICHED, "4 waited for a person"),
        # The execution ended (timed out) before it ran them.
        (ActionStatus.PLANNED, CaseStatus.FAILED, "4 never ran"),
        # Refused by a person, or skipped by the remediate function, after the others ran in dry run.
        (
            (*(ActionStatus.DRY_RUN,) * 3, ActionStatus.SKIPPED),
            CaseStatus.TICKETED,
            "3 ran in dry run, 1 skipped",
        ),
    ],
)
def test_a_later_version_of_a_finding_whose_response_stopped_without_acting_acts_in_a_case_of_its_own(
    outcome: ActionStatus | tuple[ActionStatus, ...], status: CaseStatus, left: str
) -> None:
    # Given the C&C finding whose actions all stopped short of acting, DryRun off
    world = World()
    world.dry_run = False
    [first] = world.handle_record("m-1", _sample(C2)).cases
    _responded(world, first.case_id, outcome, status)

    # When its next version arrives
    world.clock.at = NOW + timedelta(hours=2)
    [later] = world.handle_record("m-2", _variant(C2, **C2_LATER)).cases

    # Then it is a case of its own, which remediates, saying what the earlier case left undone
    assert later.repeat is False
    assert world.executions.started[later.case_id].route is Branch.REMEDIATE
    assert world.case(later.case_id).history[-1].note.endswith(f"({left})")


@pytest.mark.parametrize(
    ("outcome", "status"),
    [
        # The response acted: a repeat tells its ticket.
        (ActionStatus.DONE, CaseStatus.REMEDIATED),
        # A person undid what it did: their decision stands.
        (ActionStatus.ROLLED_BACK, CaseStatus.REMEDIATED),
        # Its execution is still running them: a second case would race it.
        (ActionStatus.PLANNED, CaseStatus.ENRICHED),
        (ActionStatus.PLANNED, CaseStatus.TICKETED),
    ],
)
def test_a_later_version_is_folded_while_the_earlier_response_acted_or_still_runs(
    outcome: ActionStatus, status: CaseStatus
) -> None:
    # Given the C&C finding whose response acted (a person may have undone it since), or is still
    # running; DryRun off
    world = World()
    world.dry_run = False
    [first] = world.handle_record("m-1", _sample(C2)).cases
    _responded(world, first.case_id, outcome, status)

    # When its next version arrives
    world.clock.at = NOW + timedelta(hours=2)
    [later] = world.handle_record("m-2", _variant(C2, **C2_LATER)).cases

    # Then it is folded into the earlier case
    assert (later.repeat, later.case_id) == (True, first.case_id)
    assert world.case(first.case_id).repeat_count == 1


def test_a_dry_run_case_with_one_action_still_running_is_not_raced() -> None:
    # Given the C&C finding whose execution is still at work: three actions ran in dry run, the last is
    # still planned
    world = World()
    world.dry_run = False
    [first] = world.handle_record("m-1", _sample(C2)).cases
    case = world.case(first.case_id)
    case.actions = [
        *(action.with_outcome(ActionStatus.DRY_RUN, "dry run") for action in case.actions[:-1]),
        case.actions[-1],
    ]
    world.cases.save(case)

    # When its next version arrives
    [later] = world.handle_record("m-2", _variant(C2, **C2_LATER)).cases

    # Then it is folded: no second execution acts beside the running one
    assert (later.repeat, later.case_id) == (True, first.case_id)
    assert [world.executions.started[name].route for name in world.executions.started] == [
        Branch.REMEDIATE,
        Branch.TICKET,
    ]


def test_a_later_version_delivered_again_after_it_acted_in_a_case_of_its_own_is_that_cases_duplicate() -> (
    None
):
    # Given the dry-run case of the C&C finding and, DryRun off, its next version in a case of its own
    world = World()
    [first] = world.handle_record("m-1", _sample(C2)).cases
    _responded(world, first.case_id, ActionStatus.DRY_RUN, CaseStatus.TICKETED)
    world.dry_run = False
    [later] = world.handle_record("m-2", _variant(C2, **C2_LATER)).cases

    # When that version is delivered again
    [again] = world.handle_record("m-3", _variant(C2, **C2_LATER)).cases

    # Then it meets its case: no third case, no second execution of it
    assert (again.case_id, again.duplicate) == (later.case_id, True)
    assert sorted(world.cases.case_ids) == sorted([first.case_id, later.case_id])
    assert len(world.executions.started) == 2


def test_a_repeat_whose_actions_would_wait_for_a_person_is_folded_into_a_case_that_did_not_act() -> None:
    # Given the C&C finding whose actions ran in dry run, DryRun now off, and a playbook that asks a
    # person before each action: the next version would only ask again
    world = World()
    [first] = world.handle_record("m-1", _sample(C2)).cases
    _responded(world, first.case_id, ActionStatus.DRY_RUN, CaseStatus.TICKETED)
    world.dry_run = False
    shipped = default_playbooks()
    world.playbooks = shipped.model_copy(
        update={
            "playbooks": tuple(
                playbook.model_copy(
                    update={
                        "actions": tuple(
                            spec.model_copy(update={"needs_approval": True}) for spec in playbook.actions
                        )
                    }
                )
                for playbook in shipped.playbooks
            )
        }
    )

    # When its next version arrives
    [later] = world.handle_record("m-2", _variant(C2, **C2_LATER)).cases

    # Then it is folded into the earlier case, whose ticket a person reads
    assert (later.repeat, later.case_id) == (True, first.case_id)


LAMBDA_C2 = "synthetic-guardduty-lambda-network.json"  # ip#23.129.64.215, function image-resizer


def _lambda_finding(finding_id: str, function: str) -> str:
    """The Lambda C&C sample as GuardDuty reports it on another function (its own finding id)."""
    event = json.loads(_sample(LAMBDA_C2))
    event["detail"]["id"] = finding_id
    details = event["detail"]["resource"]["lambdaDetails"]
    details["functionName"] = function
    details["functionArn"] = f"arn:aws:lambda:us-east-1:123456789012:function:{function}"
    return json.dumps(event)


def test_two_lambda_functions_contacting_the_same_ip_are_two_cases() -> None:
    # Given the C&C finding on the Lambda function image-resizer, triaged
    world = World()
    [first] = world.handle_record("m-1", _lambda_finding("a" * 32, "image-resizer")).cases

    # When GuardDuty reports the same type on another function, thumbnail-maker, contacting the same IP
    [other] = world.handle_record("m-2", _lambda_finding("b" * 32, "thumbnail-maker")).cases

    # Then it is a case of its own, naming its own function, and the first case counts no repeat
    assert (other.repeat, other.case_id != first.case_id) == (False, True)
    assert [subject.name for subject in world.case(other.case_id).alert.subjects] == ["thumbnail-maker"]
    assert world.case(first.case_id).repeat_count == 0


def test_the_same_lambda_finding_reported_again_is_still_a_repeat() -> None:
    # Given the C&C finding on image-resizer, triaged an hour ago
    world = World()
    [first] = world.handle_record("m-1", _lambda_finding("a" * 32, "image-resizer")).cases
    world.clock.at = NOW + timedelta(hours=1)

    # When GuardDuty reports the same activity on the same function under another finding id
    [again] = world.handle_record("m-2", _lambda_finding("c" * 32, "image-resizer")).cases

    # Then it is folded into the first case as a repeat
    assert (again.repeat, again.case_id) == (True, first.case_id)
    assert world.case(first.case_id).repeat_count == 1


def test_an_alert_naming_no_resource_and_no_ioc_is_never_the_repeat_of_another_finding() -> None:
    # Given a Security Hub control finding with neither resource nor IOC, triaged
    world = World()
    body = _sample("securityhub-afsbp-ec2.7-ebs-default-encryption.json")
    [first] = world.handle_record("m-1", body).cases

    # When another finding of the same control arrives (another finding id)
    event = json.loads(body)
    event["detail"]["findings"][0]["Id"] += "-other"
    [other] = world.handle_record("m-2", json.dumps(event)).cases

    # Then it is a case of its own: the type alone does not make two findings the same
    assert other.case_id != first.case_id
    assert other.repeat is False


def test_records_retried_counts_faults_and_not_the_records_deferred_until_the_quota_reopens() -> None:
    # Given a quota of one request a minute and a batch of three alerts with distinct IOCs
    world = World(per_minute=1, clock=Clock(NOW + timedelta(seconds=20)))
    batch = world.batch()

    # When the batch is triaged, two records being deferred
    response = triage_sqs_batch(batch, _sqs_event(C2, TOR, SUSPICIOUS_DNS))

    # Then both are reported to the queue (so it keeps them hidden), yet no record counts as retried
    assert len(response["batchItemFailures"]) == 2
    metrics = batch_metrics(batch, response)
    assert (metrics["Deferred"], metrics["RecordsRetried"]) == (2, 0)


def test_records_retried_counts_a_record_that_failed_on_a_transient_error() -> None:
    # Given an enrichments table that cannot be read
    world = World()
    world.cache = UnreadableCache(now=world.clock)
    batch = world.batch()

    # When a batch whose one record needs a lookup is triaged
    response = triage_sqs_batch(batch, _sqs_event(C2))

    # Then that record is retried and counted as such
    assert batch_metrics(batch, response)["RecordsRetried"] == 1


# ---------------------------------------------------------------- the composition root


def test_a_cold_start_creates_the_dynamodb_client_alone_until_a_batch_needs_another() -> None:
    # Given the enrich function's settings, in a Region no other test's session uses, and the clients
    # that session creates
    settings = EnrichSettings.from_environ(
        {
            "AWS_REGION": "eu-south-2",
            "CASES_TABLE_NAME": "cases",
            "ENRICHMENTS_TABLE_NAME": "enrichments",
            "QUOTA_TABLE_NAME": "quota",
            "STATE_MACHINE_ARN": "arn:aws:states:eu-south-2:123456789012:stateMachine:triage",
            "DEAD_LETTER_QUEUE_URL": "https://sqs.eu-south-2.amazonaws.com/123456789012/dlq",
            "VT_API_KEY": "synthetic-key",
            "ALERT_QUEUE_ARN": "arn:aws:sqs:eu-south-2:123456789012:AlertQueue",
            "PUSHED_ALERT_QUEUE_ARN": "arn:aws:sqs:eu-south-2:123456789012:PushedAlertQueue",
            "OWN_ACCOUNT_ID": "123456789012",
        }
    )
    created: list[str] = []

    def note(event_name: str, **_: Any) -> None:
        created.append(event_name.rsplit(".", 1)[-1])

    aws_session(settings.region).events.register("creating-client-class", note)

    # When the container builds its adapters and the first invocation its batch
    batch_factory(settings)()

    # Then only DynamoDB (cases, cache, quota) has a client: Step Functions, SQS and Secrets Manager wait
    # for a batch that starts an execution, defers or refuses a record, or reads the key
    assert created == ["dynamodb"]
