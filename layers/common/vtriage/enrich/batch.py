"""One invocation's batch of queued records: each body read once, the IOCs of all its alerts looked up
together, then each record handled in turn, only its own fault costing it anything."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import NamedTuple

from aws_lambda_powertools import Logger

from vtriage.display import shown
from vtriage.enrich.lookups import Deadline, Lookups, unavailability, virustotal_unavailable
from vtriage.enrich.outcomes import (
    DEFERRALS,
    CaseSummary,
    Deferral,
    LastDelivery,
    RecordOutcome,
    failure_reason,
    later,
)
from vtriage.enrich.records import Deferrals, QueuedRecord, Refusals
from vtriage.enrich.triage import StoredCase, Triage
from vtriage.errors import TransientError
from vtriage.intake import FindingRefusal, IntakeOptions, IntakeResult
from vtriage.intake.body import decode_body
from vtriage.models import Alert, Case, CaseStatus, Channel, Provenance
from vtriage.provenance import provenance_of

logger = Logger(child=True)

# A record is not begun with less than this left in the invocation: it is deferred instead.
RECORD_RESERVE_SECONDS = 3.0


def _never_transient(error: Exception) -> bool:
    return False


class ReadRecord(NamedTuple):
    """A queued record as its batch read it: its findings, or what reading its body raised; and, for each
    of its alerts, the stored case read with the batch (None for an alert whose case is read when it is
    triaged: see `Batch.read`)."""

    record: QueuedRecord
    reading: IntakeResult | Exception
    stored: tuple[StoredCase | None, ...]


class Batch:
    """Handles the records of one batch.

    Every record ends in one of three ways: its findings become cases (or repeats of cases, or are
    ignored with a reason); a finding that cannot be read or triaged, whatever the exception, is refused
    alone with its reason (`refusals`); or the record is deferred (the VirusTotal quota is spent, the
    invocation is out of time, VirusTotal refuses the API key) and comes back later (`deferrals`). Only
    transient errors (`is_transient` names those of the platform) fail a record, for a retry; but on a
    record's last delivery (its receive count has reached `max_receives`, its queue's maxReceiveCount),
    an IOC VirusTotal still fails for (a 5xx, a timeout) is triaged without its enrichment, saying so,
    rather than parked on the dead-letter queue where nobody triages it.

    The channel a record came through (`channels`, by its queue's ARN; an unknown queue is `queue`)
    decides, with the deployment's place, what may happen automatically (`vtriage.eligibility`).
    """

    def __init__(
        self,
        *,
        intake: IntakeOptions,
        triage: Triage,
        refusals: Refusals,
        deferrals: Deferrals,
        channels: Mapping[str, Channel] | None = None,
        is_transient: Callable[[Exception], bool] = _never_transient,
        max_receives: int | None = None,
    ) -> None:
        self.intake = intake
        self.triage = triage
        self.refusals = refusals
        self.deferrals = deferrals
        self.channels: Mapping[str, Channel] = channels if channels is not None else {}
        # Errors of the platform (a connection to AWS dropped) that a retry may cure, beside TransientError.
        self.is_transient = is_transient
        # The queues' maxReceiveCount: the delivery after which a failed record is parked (None: unknown).
        self.max_receives = max_receives

    @property
    def lookups(self) -> Lookups:
        """The batch's IOC lookups, and what they counted."""
        return self.triage.lookups

    @property
    def deadline(self) -> Deadline:
        """The end of the invocation the batch must fit in."""
        return self.triage.lookups.deadline

    def read(self, records: Iterable[QueuedRecord]) -> list[ReadRecord]:
        """Read each record's body once, and each of its alerts' stored case once; then look up,
        concurrently and once, every IOC of the alerts whose case has no verdict yet.

        Never raises: a record that cannot be read, or whose lookup failed, meets its error when it is
        handled, so that only that record fails. A case read here is handed to the first alert of its
        case id in the batch; a later one reads it again when triaged, since the first may store it.
        """
        readings: list[tuple[QueuedRecord, IntakeResult | Exception]] = []
        for record in records:
            try:
                readings.append((record, self.intake.read(decode_body(record.body))))
            except Exception as error:  # refused with its reason when its record is handled
                readings.append((record, error))
        alerts = [
            alert for _, reading in readings if isinstance(reading, IntakeResult) for alert in reading.alerts
        ]
        stored = self._stored_cases(alerts)
        self.lookups.prefetch(
            ioc
            for alert in alerts
            if alert.case_id in stored and _needs_enrichment(stored[alert.case_id])
            for ioc in alert.iocs
        )
        handed: set[str] = set()

        def handed_once(alert: Alert) -> StoredCase | None:
            if alert.case_id not in stored or alert.case_id in handed:
                return None
            handed.add(alert.case_id)
            return StoredCase(stored[alert.case_id])

        return [
            ReadRecord(
                record,
                reading,
                tuple(handed_once(alert) for alert in reading.alerts)
                if isinstance(reading, IntakeResult)
                else (),
            )
            for record, reading in readings
        ]

    def _stored_cases(self, alerts: list[Alert]) -> dict[str, Case | None]:
        """The stored case of each alert, by case id; a case that cannot be read is left out (it is read
        again when its alert is triaged)."""
        stored: dict[str, Case | None] = {}
        for alert in alerts:
            if alert.case_id in stored:
                continue
            try:
                stored[alert.case_id] = self.triage.cases.get(alert.case_id)
            except Exception as error:
                logger.warning("case lookup failed before enrichment", extra={"error": failure_reason(error)})
        return stored

    def handle(self, read: ReadRecord) -> RecordOutcome:
        """Handle a record of the batch: its findings triaged (`triage_record`), then the record deferred
        when its enrichment was put off. A record is begun only with RECORD_RESERVE_SECONDS left in the
        invocation; otherwise it is deferred untouched.

        Raises what must fail the record: a transient error, for a retry, or PutOffError once the
        record is hidden until it can go on (see `Deferrals`).
        """
        record = read.record
        if self.deadline.time_left() < RECORD_RESERVE_SECONDS:
            reason = "the invocation ran out of time before this record was handled"
            self.deferrals.put_off(record, self.deferrals.now(), reason)
            return RecordOutcome(
                message_id=record.message_id, deferred_until=self.deferrals.now(), deferred_reason=reason
            )
        outcome = self.triage_record(read)
        for summary in outcome.cases:
            logger.info("case triaged", extra=summary.model_dump(mode="json"))
        if outcome.deferred_until is not None:
            self.deferrals.put_off(
                record, outcome.deferred_until, outcome.deferred_reason or "enrichment put off"
            )
        return outcome

    def triage_record(self, read: ReadRecord) -> RecordOutcome:
        """Turn a record's findings, which came as its queue's channel says, into cases; refuse for good,
        each alone and with a reason a person can act on, the findings that cannot be (the whole record
        when none can be read); log the ignored ones; and say until when the rest is deferred.

        A refusal is recorded with its reason (`failure#<message id>` for the whole record,
        `failure#<message id>#<where>` for one finding; a finding that fails while it is triaged is
        refused under its case id, its place in the body being unknown by then) and parked on the
        dead-letter queue. Transient errors propagate, so the queue delivers the record again.
        """
        record = read.record
        message_id = record.message_id
        result = read.reading
        if isinstance(result, Exception):
            if self._retryable(result):
                self._log_failure(message_id, None, result, retried=True, record=record)
                raise result
            self._log_failure(message_id, None, result)
            refusal = FindingRefusal(where="", reason=failure_reason(result))
            self.refusals.refuse(message_id, record.body, refusal)
            return RecordOutcome(message_id=message_id, rejected_reason=refusal.reason, refused=[refusal])
        provenance = self.provenance(record)
        last = self.last_delivery(record)
        summaries: list[CaseSummary] = []
        refused = list(result.refused)
        deferral: Deferral | None = None
        for alert, stored in zip(result.alerts, read.stored, strict=True):
            try:
                summaries.append(self.triage.triage(alert, provenance, stored, last_delivery=last))
            except DEFERRALS as error:
                deferral = later(deferral, error)
            except Exception as error:
                if self._retryable(error):
                    self._log_failure(message_id, alert.case_id, error, retried=True, record=record)
                    raise
                self._log_failure(message_id, alert.case_id, error)
                reason = f"finding {shown(alert.id)} could not be triaged: {failure_reason(error)}"
                refused.append(FindingRefusal(where=alert.case_id, reason=reason, alert_id=alert.id))
        for refusal in refused:
            self.refusals.refuse(message_id, record.body, refusal)
        for ignored in result.ignored:
            logger.info(
                "finding ignored",
                extra={
                    "message_id": message_id,
                    "where": ignored.where,
                    "alert_id": shown(ignored.alert_id),
                    "reason": ignored.reason,
                },
            )
        return RecordOutcome(
            message_id=message_id,
            cases=summaries,
            rejected_reason=next((refusal.reason for refusal in refused if not refusal.where), None),
            refused=refused,
            ignored=list(result.ignored),
            deferred_until=deferral.retry_at if deferral is not None else None,
            deferred_reason=str(deferral) if deferral is not None else None,
        )

    def provenance(self, record: QueuedRecord) -> Provenance:
        """Where the record came from: the channel of its queue, with the intake's stamp of its sender when
        that queue is the intake's."""
        return provenance_of(self.channels.get(record.queue_arn, "queue"), record.attributes)

    def last_delivery(self, record: QueuedRecord) -> LastDelivery | None:
        """The record's last delivery, when its receive count has reached the queues' maxReceiveCount."""
        if self.max_receives is None or record.receive_count < self.max_receives:
            return None
        return LastDelivery(self.max_receives)

    def _retryable(self, error: Exception) -> bool:
        return isinstance(error, TransientError) or self.is_transient(error)

    def _log_failure(
        self,
        message_id: str,
        case_id: str | None,
        error: Exception,
        *,
        retried: bool = False,
        record: QueuedRecord | None = None,
    ) -> None:
        """A record's (or one finding's) failure in the log: the exception's type and its message,
        escaped and cut, with the message id and the case id when known; a record to retry says why in a
        few words (`retry_reason`) and which delivery this was."""
        extra: dict[str, object] = {
            "message_id": message_id,
            "case_id": case_id,
            "error_type": type(error).__name__,
            "error": failure_reason(error),
        }
        if retried:
            extra["retry_reason"] = (
                f"VirusTotal unavailable ({unavailability(error)})"
                if virustotal_unavailable(error)
                else failure_reason(error)
            )
        if record is not None:
            extra["delivery"] = record.receive_count
            extra["max_receives"] = self.max_receives
        logger.warning("record will be retried" if retried else "record failed", extra=extra)


def _needs_enrichment(case: Case | None) -> bool:
    """Whether an alert whose case is `case` needs its IOCs: no case yet, or one waiting for them."""
    return case is None or case.status is CaseStatus.PENDING_ENRICHMENT
