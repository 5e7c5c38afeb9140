"""VirusTotal down (5xx, no answer in time) while a record is retried, with the in-memory fakes: the
record is retried while deliveries remain, and on its last one the alert becomes a case without those
enrichments, to a person, never a record parked on the dead-letter queue. The quota's 429 and the key's
401 keep their own paths."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tests.unit.test_enrich import C2, TOR, World, _sample, _sqs_event
from tests.unit.test_settings import ENRICH
from vtriage.composition.sqs_batch import triage_sqs_batch
from vtriage.config.enrich import EnrichSettings
from vtriage.enrich.lookups import KEY_REFUSED_RETRY
from vtriage.errors import ConfigurationError, TransientError
from vtriage.models import Branch, Case, CaseStatus, Verdict
from vtriage.virustotal.errors import (
    VirusTotalError,
    VirusTotalQuotaExceededError,
    VirusTotalUnavailableError,
    VirusTotalWrongCredentialsError,
)

C2_DOMAIN = "domain#tawuhoju.com"
TOR_IP = "ip#23.129.64.215"
DELIVERIES = 5


def _after_retries(error: VirusTotalError, attempts: int = 4) -> VirusTotalError:
    """The error the VirusTotal client raises once its attempts are spent."""
    error.attempts = attempts
    return error


def http_500() -> VirusTotalError:
    return _after_retries(VirusTotalUnavailableError("Internal Server Error", "HTTP500", 500))


def timeout() -> VirusTotalError:
    return _after_retries(
        VirusTotalUnavailableError("no answer from VirusTotal in time: read timed out", "Timeout")
    )


def _world(errors: dict[str, Exception], **settings: Any) -> World:
    world = World(errors=errors, **settings)
    world.max_receives = DELIVERIES
    return world


def _log(caplog: pytest.LogCaptureFixture, message: str) -> list[dict[str, Any]]:
    return [record.__dict__ for record in caplog.records if record.getMessage() == message]


def _only_case(world: World) -> Case:
    [case_id] = world.cases.case_ids
    return world.case(case_id)


def test_while_deliveries_remain_a_record_virustotal_fails_for_is_retried_saying_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given VirusTotal answering HTTP 500 to every attempt for the C&C domain
    world = _world({C2_DOMAIN: http_500()})
    caplog.set_level(logging.INFO)

    # When the record is delivered the fourth time of five
    response = triage_sqs_batch(world.batch(), _sqs_event(C2, receives=DELIVERIES - 1))

    # Then it fails for a retry, as today: no case, nothing parked, nothing cached
    assert response["batchItemFailures"] == [{"itemIdentifier": "m-0"}]
    assert (world.cases.case_ids, world.executions.started, world.dead_letters.sent) == ([], {}, [])
    assert world.cache.puts == []
    # And the log says why in a few words, and which delivery it was
    [logged] = _log(caplog, "record will be retried")
    assert logged["retry_reason"] == "VirusTotal unavailable (HTTP 500, 4 attempts)"
    assert (logged["delivery"], logged["max_receives"]) == (4, DELIVERIES)


def test_on_its_last_delivery_the_alert_becomes_a_ticketed_case_saying_virustotal_was_unavailable() -> None:
    # Given VirusTotal answering HTTP 500 to every attempt for the C&C domain
    world = _world({C2_DOMAIN: http_500()})

    # When the record is delivered the fifth time of five, the last before the dead-letter queue
    response = triage_sqs_batch(world.batch(), _sqs_event(C2, receives=DELIVERIES))

    # Then it is acknowledged, nothing is parked, and its alert is a case
    assert response["batchItemFailures"] == []
    assert world.dead_letters.sent == []
    case = _only_case(world)
    assert case.status is CaseStatus.ENRICHED
    # And the domain says why it has no verdict of its own
    [ioc] = case.iocs
    assert ioc.reasons[0] == (
        "not enriched: VirusTotal unavailable (HTTP 500, 4 attempts) on the last of 5 deliveries"
    )
    assert "Internal Server Error" in ioc.reasons[1]
    assert (ioc.verdict, ioc.total, ioc.virustotal_unavailable) == (Verdict.UNKNOWN, 0, True)
    # And the case is unknown, never harmless, goes to a ticket and remediates nothing
    assert (case.verdict, case.remediable) == (Verdict.UNKNOWN, False)
    started = world.executions.started[case.case_id]
    assert (started.route, started.remediable) == (Branch.TICKET, False)
    assert "1 IOC not enriched: VirusTotal unavailable" in case.history[-1].note
    # And nothing of the failure is cached: the next lookup asks VirusTotal again
    assert world.cache.puts == []


def test_an_alert_below_the_ticket_severity_still_goes_to_a_person_when_virustotal_was_down() -> None:
    # Given a deployment that closes unknown alerts below critical, and VirusTotal timing out
    world = _world({C2_DOMAIN: timeout()}, ticket_min_severity="critical")

    # When the high-severity C&C record is on its last delivery
    triage_sqs_batch(world.batch(), _sqs_event(C2, receives=DELIVERIES))

    # Then the case is ticketed all the same: nobody judged its IOC, so a person must
    case = _only_case(world)
    assert world.executions.started[case.case_id].route is Branch.TICKET
    assert case.iocs[0].reasons[0] == (
        "not enriched: VirusTotal unavailable (Timeout, 4 attempts) on the last of 5 deliveries"
    )


def test_without_the_queues_max_receive_count_a_record_virustotal_fails_for_is_always_retried() -> None:
    # Given a batch that does not know the queues' maxReceiveCount, and VirusTotal answering HTTP 500
    world = World(errors={C2_DOMAIN: http_500()})

    # When the record comes a fifth time, Then it fails for a retry, as it did before
    response = triage_sqs_batch(world.batch(), _sqs_event(C2, receives=DELIVERIES))
    assert response["batchItemFailures"] == [{"itemIdentifier": "m-0"}]
    assert world.cases.case_ids == []


def test_on_the_last_delivery_a_429_still_defers_the_record_and_makes_no_verdict() -> None:
    # Given VirusTotal's quota spent (429 after the client's retries)
    quota = VirusTotalQuotaExceededError("Quota exceeded", "QuotaExceededError", 429)
    world = _world({TOR_IP: quota})

    # When the record is on its last delivery
    response = triage_sqs_batch(world.batch(), _sqs_event(TOR, receives=DELIVERIES))

    # Then it is queued afresh for the next minute (its deferral path), its case pending, no execution
    assert response["batchItemFailures"] == []
    [copy] = world.deferral.requeued
    assert (copy.body, copy.delay_seconds) == (_sample(TOR), 60)
    case = _only_case(world)
    assert case.status is CaseStatus.PENDING_ENRICHMENT
    assert not any(ioc.virustotal_unavailable for ioc in case.iocs)
    assert world.executions.started == {}


def test_on_the_last_delivery_a_refused_key_still_defers_the_record_until_it_is_fixed() -> None:
    # Given VirusTotal refusing the API key
    wrong = VirusTotalWrongCredentialsError("Wrong API key", "WrongCredentialsError", 401)
    world = _world({TOR_IP: wrong})
    batch = world.batch()

    # When the record is on its last delivery
    triage_sqs_batch(batch, _sqs_event(TOR, receives=DELIVERIES))

    # Then it waits for the key as before: counted, pending, no verdict and no execution
    assert batch.lookups.auth_failures == 1
    [copy] = world.deferral.requeued
    assert copy.delay_seconds == int(KEY_REFUSED_RETRY.total_seconds())
    assert _only_case(world).status is CaseStatus.PENDING_ENRICHMENT
    assert world.executions.started == {}


def test_on_the_last_delivery_another_transient_error_still_fails_the_record() -> None:
    # Given a transient error that is not VirusTotal's (a throttled table, say) on the IOC's lookup
    world = _world({TOR_IP: TransientError("enrichments table throttled")})

    # When the record is on its last delivery, Then it fails as before: only VirusTotal's outage is
    # triaged without
    response = triage_sqs_batch(world.batch(), _sqs_event(TOR, receives=DELIVERIES))
    assert response["batchItemFailures"] == [{"itemIdentifier": "m-0"}]
    assert world.cases.case_ids == []


def test_a_deferral_requeued_after_the_queues_last_delivery_is_refused_at_start_up() -> None:
    # Given records deferred on their fourth receive queued afresh only then, on queues that park them
    # after their third
    environment = {**ENRICH, "DEFERRAL_REQUEUE_AFTER_RECEIVES": "4", "MAX_RECEIVE_COUNT": "3"}

    # When the function's settings are read, Then it stops, naming both settings
    with pytest.raises(ConfigurationError, match=r"DEFERRAL_REQUEUE_AFTER_RECEIVES \(4\) must not exceed"):
        EnrichSettings.from_environ(environment)
    # And the template's values pass
    assert EnrichSettings.from_environ({**ENRICH, "MAX_RECEIVE_COUNT": "5"}).max_receive_count == 5
