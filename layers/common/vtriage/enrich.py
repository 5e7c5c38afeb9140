"""Enrichment: from one queued record to cases with verdicts and a started triage execution."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from pydantic import BaseModel

from vtriage.errors import InvalidAlertError
from vtriage.intake import parse_alerts
from vtriage.models import (
    Alert,
    Case,
    CaseStatus,
    Enrichment,
    ExecutionInput,
    Ioc,
    IocOutcome,
    Verdict,
    worst_verdict,
)
from vtriage.playbook import plan_actions
from vtriage.ports import CaseRepository, DeadLetterQueue, EnrichmentCache, ExecutionStarter, ThreatIntel
from vtriage.verdict import VerdictPolicy, decide

logger = Logger(child=True)


class CaseSummary(BaseModel):
    """What became of one alert: its case, verdict and execution."""

    case_id: str
    verdict: Verdict
    execution_arn: str
    duplicate: bool


class RecordOutcome(BaseModel):
    """What became of one queued record: the cases it made, or why it was rejected."""

    message_id: str
    cases: list[CaseSummary] = []
    rejected_reason: str | None = None


def execution_input(case: Case) -> ExecutionInput:
    """The state machine's input for a case: a few hundred bytes whatever the size of the case."""
    return ExecutionInput(
        case_id=case.case_id,
        verdict=case.verdict,
        severity=case.alert.severity.label,
        remediable=case.remediable,
        actions=len(case.actions),
    )


@dataclass
class Enricher:
    """Triages the records of one batch. An IOC met twice in the batch is looked up once."""

    intel: ThreatIntel
    cache: EnrichmentCache
    cases: CaseRepository
    executions: ExecutionStarter
    dead_letters: DeadLetterQueue
    policy: VerdictPolicy
    now: Callable[[], datetime]
    lookups: int = 0
    cache_hits: int = 0
    _seen: dict[str, Enrichment] = field(default_factory=dict)

    def handle_record(self, message_id: str, body: str) -> RecordOutcome:
        """Turn a record into cases, or reject it for good with a reason a person can act on.

        A rejected record is recorded with its reason and parked on the dead-letter queue, then
        acknowledged: retrying it could never succeed, and it must not hold up the records beside it.
        Transient errors propagate, so the queue delivers the record again.
        """
        try:
            alerts = parse_alerts(_decode(body))
        except InvalidAlertError as error:
            reason = str(error)
            self.cases.record_failure(message_id, reason, body)
            self.dead_letters.send(message_id, body, reason)
            return RecordOutcome(message_id=message_id, rejected_reason=reason)
        return RecordOutcome(message_id=message_id, cases=[self.triage(alert) for alert in alerts])

    def handle_sqs_record(self, record: SQSRecord) -> dict[str, object]:
        """The batch processor's record handler: a raised error marks this record, and only it, failed."""
        outcome = self.handle_record(record.message_id, record.body)
        if outcome.rejected_reason is not None:
            logger.warning(
                "record rejected", extra={"message_id": record.message_id, "reason": outcome.rejected_reason}
            )
        for summary in outcome.cases:
            logger.info("case triaged", extra=summary.model_dump(mode="json"))
        return outcome.model_dump(mode="json")

    def triage(self, alert: Alert) -> CaseSummary:
        """Enrich the alert's IOCs, store the case, start its execution. A repeat is not enriched again."""
        existing = self.cases.get(alert.case_id)
        if existing is not None:
            return self._resume(existing)
        outcomes = [self._assess(ioc) for ioc in alert.iocs]
        verdict = worst_verdict([outcome.verdict for outcome in outcomes if outcome.skipped_reason is None])
        now = self.now()
        case = Case(
            case_id=alert.case_id,
            alert=alert,
            status=CaseStatus.ENRICHED,
            verdict=verdict,
            iocs=outcomes,
            actions=plan_actions(alert, verdict),
            execution_arn=self.executions.arn_for(alert.case_id),
            created_at=now,
            updated_at=now,
        )
        if not self.cases.create(case):
            # Another delivery of the same finding won the race: its case stands.
            stored = self.cases.get(case.case_id)
            return self._resume(stored or case)
        arn = self.executions.start(case.case_id, execution_input(case))
        return CaseSummary(case_id=case.case_id, verdict=verdict, execution_arn=arn, duplicate=False)

    def _resume(self, case: Case) -> CaseSummary:
        # Starting again is harmless (the execution is named after the case) and finishes the job
        # of a delivery that stored the case but died before starting its execution.
        arn = self.executions.start(case.case_id, execution_input(case))
        return CaseSummary(case_id=case.case_id, verdict=case.verdict, execution_arn=arn, duplicate=True)

    def _assess(self, ioc: Ioc) -> IocOutcome:
        if ioc.skipped_reason is not None:
            return IocOutcome.skipped(ioc)
        enrichment = self._seen.get(ioc.key)
        if enrichment is None:
            enrichment = self._enrich(ioc)
            self._seen[ioc.key] = enrichment.model_copy(update={"cached": True})
        else:
            # Met earlier in this batch: answered without a request, as a cache hit is.
            self.cache_hits += 1
        return IocOutcome.enriched(ioc, enrichment)

    def _enrich(self, ioc: Ioc) -> Enrichment:
        cached = self.cache.get_fresh(ioc)
        if cached is not None:
            self.cache_hits += 1
            return cached
        self.lookups += 1
        enrichment = decide(ioc, self.intel.lookup(ioc), self.policy, self.now())
        self.cache.put(enrichment)
        return enrichment


def _decode(body: str) -> object:
    try:
        return json.loads(body)
    except json.JSONDecodeError as error:
        raise InvalidAlertError(
            f"not JSON ({error.msg} at line {error.lineno}, column {error.colno})", field="body"
        ) from None
