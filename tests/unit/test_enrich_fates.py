"""What becomes of every record of a batch, with in-memory fakes: poison refused alone, findings refused
alone, the invocation's time, VirusTotal refusing the key, and deferrals that never cycle forever."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from tests.unit.test_enrich import (
    C2,
    TOR,
    World,
    _domain_findings,
    _event_of,
    _queued,
    _sample,
    _sqs_event,
)
from vtriage.composition.enrich import aws_connection_failed
from vtriage.composition.sqs_batch import triage_sqs_batch
from vtriage.enrich.batch import Batch
from vtriage.enrich.lookups import FINISH_RESERVE_SECONDS, KEY_REFUSED_RETRY
from vtriage.fakes import FakeExecutionStarter, FakeThreatIntel
from vtriage.intake import IntakeOptions, IntakeResult
from vtriage.models import CaseStatus, Ioc, Verdict
from vtriage.virustotal.errors import (
    VirusTotalError,
    VirusTotalInvalidArgumentError,
    VirusTotalWrongCredentialsError,
)


class Stopwatch:
    """A `time.monotonic` a test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Context:
    """The part of the Lambda context the batch reads: the time the invocation has left."""

    def __init__(self, remaining_s: float) -> None:
        self.remaining_s = remaining_s

    def get_remaining_time_in_millis(self) -> int:
        return int(self.remaining_s * 1000)


def _records_of(world: World) -> dict[str, CaseStatus]:
    return {case_id: world.case(case_id).status for case_id in world.cases.case_ids}


def _log(caplog: pytest.LogCaptureFixture, message: str) -> list[dict[str, Any]]:
    return [record.__dict__ for record in caplog.records if record.getMessage() == message]


# ---------------------------------------------------------------- one finding, one fate


def test_a_finding_refused_alone_is_kept_and_parked_under_its_place_and_the_others_go_on() -> None:
    # Given a Security Hub event with two findings, the second without the `Id` every finding needs
    event = json.loads(_sample("synthetic-securityhub-threat-intel.json"))
    second = json.loads(json.dumps(event["detail"]["findings"][0]))
    del second["Id"]
    event["detail"]["findings"].append(second)
    body = json.dumps(event)
    world = World()

    # When the record is handled
    outcome = world.handle_record("m-1", body)

    # Then the first finding is a case, and the second is refused alone, under its place in the body
    assert len(outcome.cases) == 1
    assert outcome.rejected_reason is None
    [refusal] = outcome.refused
    assert (refusal.where, refusal.reason) == ("detail.findings[1]", "detail.findings[1].Id: missing")
    # kept as `failure#m-1#detail.findings[1]` with the record's body, and parked with its place
    assert world.cases.failures["m-1", "detail.findings[1]"].body == body
    [parked] = world.dead_letters.sent
    assert (parked.message_id, parked.where, parked.reason) == ("m-1", "detail.findings[1]", refusal.reason)


def test_an_ignored_finding_is_logged_with_its_reason_and_makes_no_case(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given a GuardDuty finding seen through Security Hub, which the deployment skips there
    world = World()
    world.intake = IntakeOptions(skip_guardduty_in_securityhub=True)
    caplog.set_level(logging.INFO)

    # When it is handled
    outcome = world.handle_record("m-1", _sample("synthetic-securityhub-guardduty-product.json"))

    # Then nothing is stored, refused or parked, and the log says which finding was left alone and why
    assert (outcome.cases, outcome.refused, world.cases.case_ids, world.dead_letters.sent) == ([], [], [], [])
    [ignored] = outcome.ignored
    [logged] = _log(caplog, "finding ignored")
    assert (logged["message_id"], logged["where"], logged["reason"]) == ("m-1", ignored.where, ignored.reason)
    assert "Security Hub" in ignored.reason


@pytest.mark.parametrize("body", ['{"findings":[]}', '{"Findings": []}'], ids=["the API's", "the CLI's"])
def test_a_page_of_get_findings_with_no_finding_is_acknowledged_and_nothing_is_parked(
    body: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a batch holding a GuardDuty get-findings page with no finding (a poller's empty page, as in
    # elastic/integrations' GuardDuty test data) beside a finding
    world = World()
    batch = world.batch()
    caplog.set_level(logging.INFO)

    # When the batch is triaged
    response = triage_sqs_batch(batch, _event_of([*_domain_findings(1, "good"), body]))

    # Then the page is acknowledged: not retried, nothing refused, kept or parked for it, the finding a case
    assert response["batchItemFailures"] == []
    assert (world.cases.failures, world.dead_letters.sent, batch.refusals.rejected) == ({}, [], 0)
    assert len(world.cases.case_ids) == 1
    # and the log says why it made no case
    [logged] = _log(caplog, "finding ignored")
    assert logged["message_id"] == "m-1"
    assert "is empty: a page of get-findings with no finding" in logged["reason"]


class CountedReading(IntakeOptions):
    """The deployment's reading of a body, counting the documents it is given."""

    def read(self, document: Any) -> IntakeResult:
        READS.append(document)
        return super().read(document)


READS: list[Any] = []


def test_each_body_is_read_once_per_batch_by_the_lookups_and_the_triage_together() -> None:
    # Given a batch of three records, one of them a poison body
    world = World()
    world.intake = CountedReading()
    READS.clear()

    # When it is triaged
    triage_sqs_batch(
        world.batch(), _event_of([*_domain_findings(2, "once"), poison_body("list where a number belongs")])
    )

    # Then each body was read once, although the lookups before and the triage after both needed it
    assert len(READS) == 3


# ---------------------------------------------------------------- poison stays alone

DEEP_PASCAL_CASE = '{"Findings": [' + '{"Detail": ' * 1200 + "{}" + "}" * 1200 + "]}"


def poison_body(kind: str) -> str:
    """One record that has made the enrich function raise: each of the kinds issue 9 found."""
    if kind == "timestamp out of range":
        event = json.loads(_sample(TOR))
        event["detail"]["updatedAt"] = "9999-12-31T23:59:59-01:00"
        return json.dumps(event)
    if kind == "list where a number belongs":
        finding = json.loads(_sample("synthetic-ocsf-detection-finding-defanged.json"))
        finding["severity_id"] = [4]
        return json.dumps(finding)
    if kind == "1,200-deep PascalCase body":
        return DEEP_PASCAL_CASE
    if kind == "integer of 5,000 digits":
        return '{"detail": {"severity": ' + "9" * 5000 + "}}"
    if kind == "lone surrogate":
        return _sample(TOR).replace('"title": "', '"title": "\\ud800', 1)
    if kind == "escape character in the user agent":
        event = json.loads(_sample(TOR))
        event["detail"]["service"]["action"]["awsApiCallAction"]["userAgent"] = "aws-cli/2.0 \x1b[2J\x1b[H"
        return json.dumps(event)
    raise AssertionError(kind)


# Whether a bad time or a list as a severity costs the finding or only the value is the parser's call;
# the enrich function's promise is that it costs nothing else. A body no reader can hold (nested too
# deep, an integer Python will not convert) is refused whole; an escape decoding to a character SQS does
# not carry raw costs only its value: the finding is triaged.
POISONS = {
    "timestamp out of range": {"refused", "triaged"},
    "list where a number belongs": {"refused", "triaged"},
    "1,200-deep PascalCase body": {"refused"},
    "integer of 5,000 digits": {"refused"},
    "lone surrogate": {"triaged"},
    "escape character in the user agent": {"triaged"},
}


@pytest.mark.parametrize("kind", POISONS)
def test_a_poison_record_in_a_batch_of_ten_costs_only_itself(kind: str) -> None:
    # Given a batch of nine findings and one poison record
    world = World()
    bodies = _domain_findings(9, "good")
    bodies.insert(4, poison_body(kind))
    batch = world.batch()

    # When the batch is triaged
    response = triage_sqs_batch(batch, _event_of(bodies))

    # Then nothing is retried, the nine findings are cases, and the poison record has a fate of its own:
    # refused with a reason that is kept and parked with it, or (a bad value degraded) a case
    assert response["batchItemFailures"] == []
    refusals = [failure for failure in world.cases.failures.values() if failure.message_id == "m-4"]
    fate = "refused" if refusals else "triaged"
    assert fate in POISONS[kind]
    assert len(world.cases.case_ids) == 9 + (fate == "triaged")
    assert all(status is CaseStatus.ENRICHED for status in _records_of(world).values())
    if refusals:
        [refusal] = refusals
        assert refusal.reason
        assert [(parked.message_id, parked.reason) for parked in world.dead_letters.sent] == [
            ("m-4", refusal.reason)
        ]
        assert batch.refusals.rejected == 1


def test_a_body_nested_too_deep_is_refused_saying_so() -> None:
    # Given a body no reader can hold, When it is handled alone
    world = World()
    deep = world.handle_record("m-1", poison_body("1,200-deep PascalCase body"))

    # Then it is refused whole with a reason that says what is wrong
    assert deep.rejected_reason is not None
    assert "nested deeper than" in deep.rejected_reason


def test_an_escape_a_sender_controls_costs_only_its_value() -> None:
    # Given a Tor caller's finding whose user agent (the caller chooses it) clears a terminal, and one
    # whose title holds a lone surrogate UTF-8 cannot encode
    world = World()

    # When each is handled alone
    escaped = world.handle_record("m-1", poison_body("escape character in the user agent"))
    surrogate = world.handle_record("m-2", poison_body("lone surrogate"))

    # Then neither is refused: each is a case, the title's surrogate replaced by U+FFFD
    assert escaped.rejected_reason is None
    assert surrogate.rejected_reason is None
    titles = [case.alert.title for case_id in world.cases.case_ids if (case := world.cases.get(case_id))]
    assert len(titles) == 2
    assert any(title.startswith("\ufffd") for title in titles)


def test_a_finding_whose_triage_raises_is_refused_alone_logged_with_its_type_and_case(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given a batch of three findings, one of which makes triage raise an unforeseen error
    world = World(errors={"domain#tawuhoju.com": RecursionError("maximum recursion depth exceeded")})
    caplog.set_level(logging.INFO)

    # When the batch is triaged
    response = triage_sqs_batch(world.batch(), _sqs_event(TOR, C2, "synthetic-guardduty-portprobe.json"))

    # Then the two others are cases, nothing is retried, and that finding is refused with the error's
    # type and message, kept under its case id with its alert id, and parked
    assert response["batchItemFailures"] == []
    assert len(world.cases.case_ids) == 2
    [refusal] = world.cases.failures.values()
    assert refusal.message_id == "m-1"
    assert refusal.reason.endswith("could not be triaged: RecursionError: 'maximum recursion depth exceeded'")
    assert refusal.alert_id is not None
    assert refusal.where.startswith("guardduty-")
    [parked] = world.dead_letters.sent
    assert (parked.where, parked.alert_id) == (refusal.where, refusal.alert_id)
    # and the log says which record and case failed, and how
    [failed] = _log(caplog, "record failed")
    assert (failed["message_id"], failed["case_id"], failed["error_type"]) == (
        "m-1",
        refusal.where,
        "RecursionError",
    )
    assert "maximum recursion depth" in failed["error"]


def test_a_connection_to_aws_that_fails_retries_the_record_instead_of_refusing_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given Step Functions unreachable (a dropped connection: the platform's fault, not the record's)
    world = World()
    world.executions = FakeExecutionStarter(error=EndpointConnectionError(endpoint_url="https://states"))
    world.is_transient = aws_connection_failed
    caplog.set_level(logging.INFO)

    # When a record is triaged
    response = triage_sqs_batch(world.batch(), _sqs_event(TOR))

    # Then it is retried, not refused, and the log says why
    assert [item["itemIdentifier"] for item in response["batchItemFailures"]] == ["m-0"]
    assert world.cases.failures == {}
    assert world.dead_letters.sent == []
    [retried] = _log(caplog, "record will be retried")
    assert retried["error_type"] == "EndpointConnectionError"


def test_only_connection_failures_count_as_the_platforms_fault() -> None:
    # An answer AWS gave (a refusal, a bad request) is not cured by retrying; a connection may be
    denied = ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "StartExecution")
    assert aws_connection_failed(EndpointConnectionError(endpoint_url="https://states")) is True
    assert aws_connection_failed(denied) is False
    assert aws_connection_failed(ValueError("bad")) is False


def test_virustotal_refusing_one_ioc_costs_that_ioc_and_not_its_alert() -> None:
    # Given VirusTotal refusing the lookup of the C&C domain as an invalid argument
    refused = VirusTotalInvalidArgumentError("invalid domain", "InvalidArgumentError", 400)
    world = World(errors={"domain#tawuhoju.com": refused})

    # When the finding is handled
    [summary] = world.handle_record("m-1", _sample(C2)).cases

    # Then the case stands, the IOC without a verdict of its own and the reason why
    case = world.case(summary.case_id)
    [domain] = [ioc for ioc in case.iocs if ioc.value == "tawuhoju.com"]
    assert (domain.verdict, domain.skipped_reason) == (Verdict.UNKNOWN, None)
    assert domain.reasons == ["not enriched: VirusTotal InvalidArgumentError (HTTP 400): invalid domain"]
    assert world.cases.failures == {}


def test_a_virustotal_that_cannot_be_asked_at_all_defers_the_record_rather_than_judging_its_iocs() -> None:
    # Given something at VT_BASE_URL that answers with a page that is not VirusTotal's (a gateway's login)
    not_virustotal = VirusTotalError(
        "the answer is not a VirusTotal object: no JSON `data` object in it", "InvalidResponseError", 200
    )
    world = World(errors={"domain#tawuhoju.com": not_virustotal})

    # When the finding is handled
    outcome = world.handle_record("m-1", _sample(C2))

    # Then it waits for the setting to be fixed: no verdict drawn without VirusTotal, nothing refused
    assert outcome.cases == []
    assert outcome.deferred_until == world.clock() + KEY_REFUSED_RETRY
    assert world.cases.failures == {}


# ---------------------------------------------------------------- time


class SlowIntel(FakeThreatIntel):
    """Takes `seconds` of the stopwatch per lookup, and notes what the cache held when each began."""

    def __init__(self, stopwatch: Stopwatch, seconds: float, world: World) -> None:
        super().__init__()
        self._stopwatch = stopwatch
        self._seconds = seconds
        self._world = world
        self.cached_when_asked: list[int] = []

    def lookup(self, ioc: Ioc, deadline: float | None = None) -> dict[str, Any] | None:
        self.cached_when_asked.append(len(self._world.cache.puts))
        self._stopwatch.now += self._seconds
        return super().lookup(ioc, deadline)


def _timed_world(seconds_per_lookup: float) -> tuple[World, Batch, SlowIntel, Stopwatch]:
    world = World()
    stopwatch = Stopwatch()
    intel = SlowIntel(stopwatch, seconds_per_lookup, world)
    world.intel = intel
    world.monotonic = stopwatch
    world.max_concurrency = 1
    return world, world.batch(), intel, stopwatch


def test_lookups_stop_before_the_invocation_runs_out_and_the_records_left_are_deferred_not_lost() -> None:
    # Given four findings whose lookups take 16 s each, in an invocation with 60 s left
    world, batch, intel, stopwatch = _timed_world(16)
    start = stopwatch.now

    # When the batch is triaged
    response = triage_sqs_batch(batch, _event_of(_domain_findings(4, "slow")), Context(60))  # type: ignore[arg-type]

    # Then three lookups ran, each told to end before the time kept for storing cases, and the fourth
    # was not begun (it could not end before that): its record is deferred, its case pending
    assert len(intel.lookups) == 3
    assert intel.deadlines == [start + 60 - FINISH_RESERVE_SECONDS] * 3
    assert [item["itemIdentifier"] for item in response["batchItemFailures"]] == ["m-3"]
    assert world.deferral.hidden == [("handle-3", 1)]
    statuses = sorted(status.value for status in _records_of(world).values())
    assert statuses == ["ENRICHED", "ENRICHED", "ENRICHED", "PENDING_ENRICHMENT"]
    assert (batch.deferrals.deferred, batch.refusals.rejected, world.dead_letters.sent) == (1, 0, [])


def test_each_enrichment_is_cached_as_it_arrives_so_a_timeout_loses_nothing_already_looked_up() -> None:
    # Given three findings looked up one after the other
    world, batch, intel, _ = _timed_world(1)

    # When their batch is read
    batch.read(_queued(_domain_findings(3, "cached")))

    # Then each lookup found every earlier one in the cache already: none waited for the others
    assert intel.cached_when_asked == [0, 1, 2]
    assert len(world.cache.puts) == 3


def test_a_record_not_begun_before_the_invocation_ends_is_deferred_untouched() -> None:
    # Given an invocation with two seconds left
    world, batch, intel, _ = _timed_world(1)

    # When a batch of two records arrives
    response = triage_sqs_batch(batch, _sqs_event(C2, TOR), Context(2))  # type: ignore[arg-type]

    # Then nothing is looked up or stored, and both records come back a second later
    assert intel.lookups == []
    assert world.cases.case_ids == []
    assert sorted(world.deferral.hidden) == [("handle-0", 1), ("handle-1", 1)]
    assert len(response["batchItemFailures"]) == 2


# ---------------------------------------------------------------- VirusTotal refusing the key


def test_virustotal_refusing_the_key_defers_every_record_counts_once_and_parks_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given VirusTotal answering 401 WrongCredentialsError, and three findings with distinct IOCs
    wrong = VirusTotalWrongCredentialsError("Wrong API key", "WrongCredentialsError", 401)
    world = World(
        errors=dict.fromkeys(["domain#tawuhoju.com", "ip#23.129.64.215", "domain#telemetry-sync.net"], wrong)
    )
    world.max_concurrency = 1
    batch = world.batch()
    caplog.set_level(logging.INFO)

    # When the batch is triaged
    response = triage_sqs_batch(batch, _sqs_event(C2, TOR, "synthetic-guardduty-ec2-suspicious-dns.json"))

    # Then VirusTotal was asked once, the refusal counted once, and every record waits five minutes for
    # the key to be fixed: none refused, none parked
    assert len(world.intel.lookups) == 1
    assert batch.lookups.auth_failures == 1
    assert len(response["batchItemFailures"]) == 3
    assert {seconds for _, seconds in world.deferral.hidden} == {int(KEY_REFUSED_RETRY.total_seconds())}
    assert (world.dead_letters.sent, world.cases.failures, batch.refusals.rejected) == ([], {}, 0)
    for case_id in world.cases.case_ids:
        case = world.case(case_id)
        assert case.status is CaseStatus.PENDING_ENRICHMENT
        assert case.error is not None
        assert "refused the API key" in case.error
    # and the log says so, once, as an error
    [logged] = _log(
        caplog,
        "VirusTotal refused the API key: a configuration error; records are deferred until it is fixed",
    )
    assert logged["levelname"] == "ERROR"
    assert "WrongCredentialsError" in logged["error"]


# ---------------------------------------------------------------- deferrals never cycle forever


def _deferred_event(name: str, receives: int, deferrals_before: int) -> dict[str, Any]:
    event = _sqs_event(name, receives=receives)
    event["Records"][0]["messageAttributes"]["vtriage_deferrals"] = {
        "stringValue": str(deferrals_before),
        "dataType": "String",
    }
    return event


def test_a_record_deferred_up_to_the_bound_is_deferred_again() -> None:
    # Given the minute's quota spent, and a record deferred twice before and received for the second time
    world = World(per_minute=1)
    triage_sqs_batch(world.batch(), _sqs_event(C2))
    world.max_deferrals = 4

    # When it is deferred again (its fourth deferral, the bound)
    response = triage_sqs_batch(world.batch(), _deferred_event(TOR, receives=2, deferrals_before=2))

    # Then it is hidden until the next minute, not refused
    assert len(response["batchItemFailures"]) == 1
    assert world.dead_letters.sent == []


def test_a_record_deferred_past_the_bound_is_refused_to_the_dead_letter_queue_with_the_reason() -> None:
    # Given the minute's quota spent, and a record deferred three times before, received for the second time
    world = World(per_minute=1)
    triage_sqs_batch(world.batch(), _sqs_event(C2))
    world.max_deferrals = 4
    batch = world.batch()

    # When it would be deferred a fifth time
    response = triage_sqs_batch(batch, _deferred_event(TOR, receives=2, deferrals_before=3))

    # Then it is acknowledged and refused whole, its reason saying why, kept and parked
    assert response["batchItemFailures"] == []
    assert world.deferral.hidden == []
    assert world.deferral.requeued == []
    [parked] = world.dead_letters.sent
    assert parked.message_id == "m-0"
    assert parked.reason.startswith("deferred 5 times, more than the 4 allowed (MAX_DEFERRALS)")
    assert "quota" in parked.reason
    assert world.cases.failures["m-0", ""].reason == parked.reason
    assert (batch.deferrals.deferred, batch.refusals.rejected) == (0, 1)


def test_a_refusal_is_parked_once_however_often_its_record_comes_back() -> None:
    # Given a record that is not JSON, delivered twice under the same message id (SQS delivers at least once)
    world = World()
    world.handle_record("m-9", "{not json")

    # When it comes again
    again = world.handle_record("m-9", "{not json")

    # Then it is refused again but parked once
    assert again.rejected_reason is not None
    assert len(world.dead_letters.sent) == 1
