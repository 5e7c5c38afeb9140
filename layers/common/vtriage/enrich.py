"""Enrichment: from one queued record to cases with verdicts and a started triage execution.

Every record of a batch ends in one of three ways, and only its own fault costs it anything: its
findings become cases (or repeats of cases, or are ignored with a reason); a finding that cannot be
triaged is refused alone, kept in the cases table and parked on the dead-letter queue with its reason;
or the record is deferred (the VirusTotal quota is spent, the invocation is out of time, VirusTotal
refuses the API key) and comes back later, a bounded number of times.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel

from vtriage.eligibility import Eligibility, Place, PushedAlertActions, eligibility, requiring_approval
from vtriage.errors import ConfigurationError, InvalidAlertError, QuotaExhaustedError, TransientError
from vtriage.intake import FindingRefusal, IgnoredFinding, IntakeOptions, IntakeResult
from vtriage.intake.body import decode_body
from vtriage.intake.fields import shown
from vtriage.models import (
    Alert,
    Branch,
    Case,
    CaseStatus,
    Channel,
    Enrichment,
    ExecutionInput,
    HistoryEntry,
    Ioc,
    IocOutcome,
    Provenance,
    Repeat,
    Verdict,
    worst_verdict,
)
from vtriage.playbook import (
    DEFAULT_TICKET_MIN_SEVERITY,
    IpBlockMethod,
    Playbooks,
    default_playbooks,
    plan_actions,
    route,
)
from vtriage.ports import (
    CaseRepository,
    DeadLetterQueue,
    EnrichmentCache,
    ExecutionStarter,
    MessageDeferral,
    QuotaLimiter,
    ThreatIntel,
)
from vtriage.provenance import provenance_of
from vtriage.verdict import VerdictPolicy, decide
from vtriage.virustotal.errors import (
    VirusTotalError,
    VirusTotalQuotaExceededError,
    VirusTotalTooManyRequestsError,
)

logger = Logger(child=True)


class CaseSummary(BaseModel):
    """What became of one alert: its case, verdict and execution.

    A repeat of an earlier case's finding names that case, and the execution that tells its ticket.
    """

    case_id: str
    verdict: Verdict
    execution_arn: str
    duplicate: bool
    repeat: bool = False


class RepeatLedger(Protocol):
    """Where repeats of a finding meet the case it opened (the cases table in AWS)."""

    def earlier_case(self, repeat_key: str) -> str | None:
        """The id of the case this repeat key opened, while its window is open; else None."""
        ...

    def remember(self, repeat_key: str, case_id: str, until: datetime) -> None:
        """Point the repeat key at this case until `until`."""
        ...

    def fold(self, case_id: str, repeat: Repeat, entry: HistoryEntry) -> bool:
        """Count the repeat on the case and add `entry` to its history, atomically; False when the case is
        gone or already counts this repeat (by its case id)."""
        ...


class FindingLedger(Protocol):
    """Where the contents delivered under one finding id and version meet (the cases table in AWS)."""

    def join(self, finding_key: str, case_id: str) -> list[str]:
        """Add the case to those of its finding id and version; return the others already there."""
        ...

    def note_variant(self, case_id: str, variant_case_id: str, entry: HistoryEntry) -> bool:
        """Name `variant_case_id` on the case and add `entry` to its history, atomically; False when the
        case is gone or names it already."""
        ...


class RecordOutcome(BaseModel):
    """What became of one queued record: the cases it made, the findings refused (alone, or the whole
    record when a refusal's `where` is empty) and ignored, and until when the rest is deferred."""

    message_id: str
    cases: list[CaseSummary] = []
    rejected_reason: str | None = None  # the record refused whole
    refused: list[FindingRefusal] = []
    ignored: list[IgnoredFinding] = []
    deferred_until: datetime | None = None
    deferred_reason: str | None = None


class PutOffError(TransientError):
    """A record's enrichment put off until `retry_at`: the invocation had too little time left to look
    its IOCs up, or VirusTotal refuses the API key. Like a spent quota, it defers the record, never
    refuses it."""

    def __init__(self, message: str, retry_at: datetime) -> None:
        self.retry_at = retry_at
        super().__init__(message)


# What defers a record rather than failing it.
Deferral = QuotaExhaustedError | PutOffError
_DEFERRALS = (QuotaExhaustedError, PutOffError)


# SQS hides a received message for at most 12 h counted from that receive; the invocation that defers
# it has already run for a while (at most Lambda's 15 min), so the deferral stops short by that much.
MAX_DEFERRAL_SECONDS = 12 * 3600 - 15 * 60
# SQS delays a new message by at most 15 min; a longer wait is finished by hiding the copy when it comes.
MAX_REQUEUE_DELAY_SECONDS = 15 * 60
# The message attribute in which a re-queued copy carries the deferrals of the copies before it.
DEFERRALS_ATTRIBUTE = "vtriage_deferrals"
# SQS takes at most 10 message attributes.
_MAX_MESSAGE_ATTRIBUTES = 10
# VirusTotal refusing the API key (401, 403) waits for a person: records are put off this long at a time.
KEY_REFUSED_RETRY = timedelta(minutes=5)
# Time kept at the end of an invocation to store cases, start executions and defer records: no lookup
# runs into it (the VirusTotal client cuts its retries to fit), and none starts with less than
# MIN_LOOKUP_SECONDS before it. A record is not begun with less than RECORD_RESERVE_SECONDS left.
FINISH_RESERVE_SECONDS = 10.0
MIN_LOOKUP_SECONDS = 5.0
RECORD_RESERVE_SECONDS = 3.0


def next_minute(moment: datetime) -> datetime:
    """The start of the minute after `moment`, in UTC: when a minute quota reopens."""
    utc = moment.astimezone(UTC)
    return utc.replace(second=0, microsecond=0) + timedelta(minutes=1)


def next_utc_midnight(moment: datetime) -> datetime:
    """The next 00:00 UTC after `moment`: when VirusTotal's daily quota reopens."""
    utc = moment.astimezone(UTC)
    return utc.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)


def quota_refusal(error: VirusTotalError, now: datetime) -> QuotaExhaustedError:
    """A 429 VirusTotal still answered after the client's retries, as a deferral: until the next minute,
    or the next 00:00 UTC when VirusTotal's message names the daily quota."""
    if "daily" in error.message.lower() or "day" in error.message.lower().split():
        return QuotaExhaustedError(f"VirusTotal refused: {error}", next_utc_midnight(now), window="day")
    return QuotaExhaustedError(f"VirusTotal refused: {error}", next_minute(now), window="minute")


def _later(current: Deferral | None, new: Deferral) -> Deferral:
    return new if current is None or new.retry_at > current.retry_at else current


def failure_reason(error: BaseException) -> str:
    """An exception as a reason a person reads: its type and message, escaped and cut, since a message
    may quote what the sender sent (an InvalidAlertError's reason names the field and is kept as is)."""
    if isinstance(error, InvalidAlertError):
        return str(error)
    message = str(error)
    return f"{type(error).__name__}: {shown(message, 300)}" if message else type(error).__name__


def _never_transient(error: Exception) -> bool:
    return False


def execution_input(case: Case, ticket_min_severity: str = DEFAULT_TICKET_MIN_SEVERITY) -> ExecutionInput:
    """The state machine's input for a case: a few hundred bytes whatever the size of the case."""
    return ExecutionInput(
        case_id=case.case_id,
        route=route(case, ticket_min_severity),
        verdict=case.verdict,
        severity=case.alert.severity.label,
        remediable=case.remediable,
        actions=len(case.actions),
    )


@dataclass
class Enricher:
    """Triages the records of one batch.

    Each body is read once (`prefetch` and the handling of its record share the reading). Every IOC the
    batch needs is looked up once, concurrently (`prefetch`), each lookup first taking a unit of the
    shared quota, and cached as soon as it arrives. When the quota is spent, the invocation runs short
    of time (`limit_time`) or VirusTotal refuses the API key, the record is deferred: its case is kept
    as PENDING_ENRICHMENT with whatever was already looked up, and the queue delivers it again.

    A finding that cannot be read or triaged, whatever the exception, is refused alone with its reason;
    only transient errors (`is_transient` names those of the platform) fail the record, for a retry.

    The playbooks plan each case's actions and, with the detector's severity, its route. With a repeat
    ledger, a repeat of a finding (another finding id or version, same type, resources and IOCs) within
    `repeat_window` of its case is folded into that case instead of opening another, unless it says
    something worse (a heavier verdict, or a route that does more).

    The channel a record came through (`channels`, by its queue's ARN) and the deployment's `place`
    decide what may happen automatically (`vtriage.eligibility`): only the detector rules' findings of
    the deployment's own account and Region may be remediated without a person. With a finding ledger,
    another content delivered under a known finding id and version is a case of its own, and each of
    the two cases names the other.
    """

    intel: ThreatIntel
    cache: EnrichmentCache
    cases: CaseRepository
    executions: ExecutionStarter
    dead_letters: DeadLetterQueue
    policy: VerdictPolicy
    now: Callable[[], datetime]
    place: Place
    limiter: QuotaLimiter | None = None
    # The channel of each queue the function reads (by queue ARN, which AWS sets on every record), and
    # where a record deferred from that queue is hidden or re-queued: the queue it came from.
    channels: Mapping[str, Channel] = field(default_factory=dict)
    deferrals: Mapping[str, MessageDeferral] = field(default_factory=dict)
    pushed_alert_actions: PushedAlertActions = "approval"
    max_concurrency: int = 4
    requeue_after_receives: int = 3
    max_deferrals: int = 500
    request_counter: Callable[[], int] | None = None
    intake: IntakeOptions = field(default_factory=IntakeOptions)
    playbooks: Playbooks = field(default_factory=default_playbooks)
    ip_block_method: IpBlockMethod = "none"
    ticket_min_severity: str = DEFAULT_TICKET_MIN_SEVERITY
    repeats: RepeatLedger | None = None
    repeat_window: timedelta = timedelta(hours=24)
    findings: FindingLedger | None = None
    # Errors of the platform (a connection to AWS dropped) that a retry may cure, beside TransientError.
    is_transient: Callable[[Exception], bool] = _never_transient
    monotonic: Callable[[], float] = time.monotonic
    lookups: int = 0
    cache_hits: int = 0
    deferred: int = 0
    rejected: int = 0
    auth_failures: int = 0
    # Deferred records reported failed so that the queue keeps them hidden: not faults to retry.
    hidden: int = 0
    _seen: dict[str, Enrichment] = field(default_factory=dict)
    _used: set[str] = field(default_factory=set)
    _failed: dict[str, Exception] = field(default_factory=dict)
    _known_cases: dict[str, Case | None] = field(default_factory=dict)
    _readings: dict[str, IntakeResult | Exception] = field(default_factory=dict)
    _refusal: Deferral | None = None
    _deadline: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def vt_requests(self) -> int:
        """HTTP requests sent to VirusTotal, retries included, when the client counts them; else lookups."""
        return self.request_counter() if self.request_counter is not None else self.lookups

    def limit_time(self, remaining_seconds: float) -> None:
        """Fit the batch into the invocation's remaining time: lookups end FINISH_RESERVE_SECONDS before
        it, and what cannot be done in time is deferred."""
        self._deadline = self.monotonic() + remaining_seconds

    def _time_left(self) -> float:
        return math.inf if self._deadline is None else self._deadline - self.monotonic()

    def _lookups_end(self) -> float | None:
        return None if self._deadline is None else self._deadline - FINISH_RESERVE_SECONDS

    def prefetch(self, bodies: Iterable[str]) -> None:
        """Look up, concurrently, every IOC the records will need and the cache does not hold.

        Never raises: a record that cannot be read, or whose lookup failed, meets its error when it is
        handled, so that only that record fails.
        """
        wanted: dict[str, Ioc] = {}
        for body in bodies:
            try:
                alerts = self._read(body).alerts
            except Exception:  # noqa: S112 -- refused with its reason when its record is handled
                continue
            for alert in alerts:
                try:
                    existing = self._known_case(alert.case_id)
                except Exception as error:
                    logger.warning(
                        "case lookup failed before enrichment", extra={"error": failure_reason(error)}
                    )
                    continue
                if existing is not None and existing.status is not CaseStatus.PENDING_ENRICHMENT:
                    continue
                for ioc in alert.iocs:
                    if ioc.skipped_reason is None and ioc.key not in self._seen:
                        wanted.setdefault(ioc.key, ioc)
        if not wanted:
            return
        try:
            self._enrich_all(list(wanted.values()))
        except Exception as error:  # only the records needing these IOCs meet it, when handled
            self._failed.update(dict.fromkeys(wanted, error))

    def _read(self, body: str) -> IntakeResult:
        """The findings of a body, read once per batch however often they are asked for; raises what
        reading it raised."""
        reading = self._readings.get(body)
        if reading is None:
            try:
                reading = self.intake.read(decode_body(body))
            except Exception as error:
                reading = error
            self._readings[body] = reading
        if isinstance(reading, Exception):
            raise reading
        return reading

    def handle_record(self, message_id: str, body: str, provenance: Provenance) -> RecordOutcome:
        """Turn a record's findings, which came as `provenance` says, into cases; refuse for good, each
        alone and with a reason a person can act on, the findings that cannot be (the whole record when
        none can be read); log the ignored ones; and say until when the rest is deferred.

        A refusal is recorded with its reason (`failure#<message id>` for the whole record,
        `failure#<message id>#<where>` for one finding; a finding that fails while it is triaged is
        refused under its case id, its place in the body being unknown by then) and parked on the
        dead-letter queue: retrying could never succeed, and it must not hold up what stands beside it.
        Transient errors propagate, so the queue delivers the record again.
        """
        try:
            result = self._read(body)
        except Exception as error:
            if self._retryable(error):
                self._log_failure(message_id, None, error, retried=True)
                raise
            self._log_failure(message_id, None, error)
            refusal = FindingRefusal(where="", reason=failure_reason(error))
            self._refuse(message_id, body, refusal)
            return RecordOutcome(message_id=message_id, rejected_reason=refusal.reason, refused=[refusal])
        summaries: list[CaseSummary] = []
        refused = list(result.refused)
        deferral: Deferral | None = None
        for alert in result.alerts:
            try:
                summaries.append(self.triage(alert, provenance))
            except _DEFERRALS as error:
                deferral = _later(deferral, error)
            except Exception as error:
                if self._retryable(error):
                    self._log_failure(message_id, alert.case_id, error, retried=True)
                    raise
                self._log_failure(message_id, alert.case_id, error)
                reason = f"finding {shown(alert.id)} could not be triaged: {failure_reason(error)}"
                refused.append(FindingRefusal(where=alert.case_id, reason=reason, alert_id=alert.id))
        for refusal in refused:
            self._refuse(message_id, body, refusal)
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

    def _retryable(self, error: Exception) -> bool:
        return isinstance(error, TransientError) or self.is_transient(error)

    def _log_failure(
        self, message_id: str, case_id: str | None, error: Exception, *, retried: bool = False
    ) -> None:
        """A record's (or one finding's) failure in the log: the exception's type and its message,
        escaped and cut, with the message id and the case id when known."""
        logger.warning(
            "record will be retried" if retried else "record failed",
            extra={
                "message_id": message_id,
                "case_id": case_id,
                "error_type": type(error).__name__,
                "error": failure_reason(error),
            },
        )

    def _refuse(self, message_id: str, body: str, refusal: FindingRefusal) -> None:
        """Keep the refusal with the record's body and park them on the dead-letter queue, once per
        refusal of a message however often it is delivered."""
        self.rejected += 1
        logger.warning(
            "finding refused" if refusal.where else "record refused",
            extra={
                "message_id": message_id,
                "where": refusal.where,
                "alert_id": shown(refusal.alert_id),
                "reason": refusal.reason,
            },
        )
        kept = self.cases.record_failure(
            message_id, refusal.reason, body, where=refusal.where, alert_id=refusal.alert_id
        )
        if kept:
            self.dead_letters.send(
                message_id, body, refusal.reason, where=refusal.where, alert_id=refusal.alert_id
            )

    def handle_sqs_record(self, record: SQSRecord) -> dict[str, object]:
        """The batch processor's record handler: a raised error marks this record, and only it, failed.

        A record is begun only with RECORD_RESERVE_SECONDS left in the invocation; otherwise, like a
        record whose enrichment is deferred, it is put off (see `_put_off`).
        """
        if self._time_left() < RECORD_RESERVE_SECONDS:
            reason = "the invocation ran out of time before this record was handled"
            self._put_off(record, self.now(), reason)
            return RecordOutcome(
                message_id=record.message_id, deferred_until=self.now(), deferred_reason=reason
            ).model_dump(mode="json")
        outcome = self.handle_record(record.message_id, record.body, self.provenance(record))
        for summary in outcome.cases:
            logger.info("case triaged", extra=summary.model_dump(mode="json"))
        if outcome.deferred_until is not None:
            self._put_off(record, outcome.deferred_until, outcome.deferred_reason or "enrichment put off")
        return outcome.model_dump(mode="json")

    def provenance(self, record: SQSRecord) -> Provenance:
        """Where the record came from: the channel of its queue (by the ARN AWS sets on the record; an
        unknown queue is `queue`), with the intake's stamp of its sender when that queue is the intake's."""
        channel = self.channels.get(record.event_source_arn, "queue")
        attributes = {name: value.string_value for name, value in record.message_attributes.items()}
        return provenance_of(channel, attributes)

    def _put_off(self, record: SQSRecord, until: datetime, reason: str) -> None:
        """Defer the record until `until`: hide it and report it failed, so the queue keeps it; once it
        has been received `requeue_after_receives` times, queue a fresh copy instead (and acknowledge
        this one), so that deferrals never reach the queue's maxReceiveCount and the DLQ. Each copy
        carries the count of deferrals before it, and every string attribute of the record (the
        intake's stamp among them), and goes back to the queue the record came from; past
        `max_deferrals` the record is refused."""
        receives = int(record.attributes.approximate_receive_count or 1)
        deferrals = _deferrals_before(record) + receives
        log = {"message_id": record.message_id, "until": until.isoformat(), "reason": reason}
        if deferrals > self.max_deferrals:
            refusal = FindingRefusal(
                where="",
                reason=f"deferred {deferrals} times, more than the {self.max_deferrals} allowed"
                f" (MAX_DEFERRALS); the last time because {reason}",
            )
            self._refuse(record.message_id, record.body, refusal)
            return
        self.deferred += 1
        seconds = max(1, math.ceil((until - self.now()).total_seconds()))
        deferral = self.deferrals.get(record.event_source_arn)
        if deferral is not None and receives >= self.requeue_after_receives:
            deferral.requeue(
                record.body,
                _attributes_with_deferrals(record, deferrals),
                min(seconds, MAX_REQUEUE_DELAY_SECONDS),
            )
            logger.info("record deferred as a fresh message", extra={**log, "deferrals": deferrals})
            return
        if deferral is not None:
            deferral.defer(record.receipt_handle, min(seconds, MAX_DEFERRAL_SECONDS))
        logger.info("record deferred", extra={**log, "deferrals": deferrals})
        self.hidden += 1
        raise PutOffError(reason, until)

    def triage(self, alert: Alert, provenance: Provenance) -> CaseSummary:
        """Enrich the alert's IOCs, store the case, start its execution. A repeat is not enriched again.
        What may run automatically is decided by the alert's channel (`provenance`) and place.

        Raises QuotaExhaustedError (or PutOffError) after storing the case as PENDING_ENRICHMENT when the
        quota ran out (or the invocation's time, or VirusTotal refuses the key).
        """
        allowed = eligibility(alert, provenance, self.place, self.pushed_alert_actions)
        alert = allowed.applied_to(alert)
        # Read once by `prefetch`; used once, since this very triage may store the case.
        if alert.case_id in self._known_cases:
            existing = self._known_cases.pop(alert.case_id)
        else:
            existing = self.cases.get(alert.case_id)
        if existing is not None and existing.status is not CaseStatus.PENDING_ENRICHMENT:
            return self._resume(existing)
        earlier = self._earlier_case(alert) if existing is None else None
        if earlier is not None and alert.case_id in earlier.repeat_case_ids:
            # This very repeat was folded into its earlier case already: a repeat delivery.
            return self._tell_about_repeat(earlier, alert.case_id, duplicate=True)
        outcomes: list[IocOutcome] = []
        refusal: Deferral | None = None
        for ioc in alert.iocs:
            try:
                outcomes.append(self._assess(ioc))
            except _DEFERRALS as error:
                refusal = _later(refusal, error)
                outcomes.append(_pending(ioc, error))
        now = self.now()
        created_at = existing.created_at if existing is not None else now
        if refusal is not None:
            # A repeat keeps no case of its own while it waits: it is folded once it is enriched.
            if earlier is None:
                self._keep_pending(
                    alert,
                    provenance,
                    existing=existing,
                    outcomes=outcomes,
                    refusal=refusal,
                    created_at=created_at,
                    now=now,
                )
            raise refusal
        verdict = worst_verdict([outcome.verdict for outcome in outcomes if outcome.skipped_reason is None])
        actions = plan_actions(alert, outcomes, self.playbooks, ip_block_method=self.ip_block_method)
        if allowed.approval is not None:
            actions = requiring_approval(actions, allowed.approval)
        case = Case(
            case_id=alert.case_id,
            alert=alert,
            verdict=verdict,
            iocs=outcomes,
            actions=actions,
            execution_arn=self.executions.arn_for(alert.case_id),
            created_at=created_at,
            updated_at=now,
            history=list(existing.history) if existing is not None else [_received(alert, created_at)],
            provenance=provenance,
        )
        branch = route(case, self.ticket_min_severity)
        case.record(CaseStatus.ENRICHED, now, _enriched_note(case, branch, allowed))
        if earlier is not None and not self._says_more(case, branch, earlier):
            return self._fold(earlier, case, now)
        if existing is not None:
            self.cases.save(case)
        elif not self.cases.create(case):
            stored = self.cases.get(case.case_id)
            if stored is not None and stored.status is not CaseStatus.PENDING_ENRICHMENT:
                # Another delivery of the same finding won the race: its case stands.
                return self._resume(stored)
            self.cases.save(case)
        if self.repeats is not None and self.repeat_window > timedelta(0):
            self.repeats.remember(alert.repeat_key, case.case_id, now + self.repeat_window)
        self._note_other_contents(case, now)
        arn = self.executions.start(case.case_id, execution_input(case, self.ticket_min_severity))
        return CaseSummary(case_id=case.case_id, verdict=verdict, execution_arn=arn, duplicate=False)

    def _note_other_contents(self, case: Case, now: datetime) -> None:
        """When other contents came under this case's finding id and version, make this case and each of
        theirs name the other (each triaged on its own: none is a duplicate of another). Done once the case
        is stored, so that of two contents arriving together the later one always finds the earlier's case."""
        if self.findings is None:
            return
        alert = case.alert
        for other_id in self.findings.join(alert.finding_key, case.case_id):
            other = self.cases.get(other_id)
            if other is None:
                continue
            finding = f"finding {shown(alert.id)} (version {shown(alert.version)})"
            self.findings.note_variant(
                case.case_id,
                other_id,
                HistoryEntry(
                    status=case.status,
                    at=now,
                    note=f"another content of {finding} came earlier as case {other_id}, "
                    f"verdict {other.verdict.value}: this one differs, and is triaged on its own",
                ),
            )
            self.findings.note_variant(
                other_id,
                case.case_id,
                HistoryEntry(
                    status=other.status,
                    at=now,
                    note=f"another content of {finding} came later as case {case.case_id}, "
                    f"verdict {case.verdict.value}: it differs, and is triaged on its own",
                ),
            )
            logger.warning(
                "another content of a known finding id and version",
                extra={"case_id": case.case_id, "other_case_id": other_id, "finding_key": alert.finding_key},
            )

    def _earlier_case(self, alert: Alert) -> Case | None:
        """The case an earlier occurrence of this finding opened within the repeat window, if any."""
        if self.repeats is None or self.repeat_window <= timedelta(0):
            return None
        earlier_id = self.repeats.earlier_case(alert.repeat_key)
        if earlier_id is None or earlier_id == alert.case_id:
            return None
        earlier = self.cases.get(earlier_id)
        if earlier is None or earlier.status is CaseStatus.PENDING_ENRICHMENT:
            return None
        if earlier.alert.finding_key == alert.finding_key:
            # Another content under the same finding id and version is no repeat: a case of its own.
            return None
        return earlier

    def _says_more(self, case: Case, branch: Branch, earlier: Case) -> bool:
        """Whether a repeat says something worse than its earlier case, or came through a channel trusted
        with more (a detector's finding after a pushed alert): then it is a case of its own."""
        earlier_branch = route(earlier, self.ticket_min_severity)
        return (
            case.verdict.weight > earlier.verdict.weight
            or _ROUTE_RANK[branch] > _ROUTE_RANK[earlier_branch]
            or _trust(case) > _trust(earlier)
        )

    def _fold(self, earlier: Case, case: Case, now: datetime) -> CaseSummary:
        """Count the repeat on its earlier case, with a line in its history, and tell its ticket."""
        assert self.repeats is not None  # only a ledger finds an earlier case
        alert = case.alert
        repeat = Repeat(
            alert_id=alert.id,
            version=alert.version,
            case_id=alert.case_id,
            at=now,
            verdict=case.verdict,
            severity=alert.severity.score,
        )
        entry = HistoryEntry(status=earlier.status, at=now, note=repeat.note)
        # False when another delivery of this repeat folded it first: telling the ticket again is harmless.
        folded = self.repeats.fold(earlier.case_id, repeat, entry)
        logger.info(
            "repeat folded into its earlier case",
            extra={"case_id": earlier.case_id, "repeat_case_id": alert.case_id, "first_fold": folded},
        )
        return self._tell_about_repeat(earlier, alert.case_id, duplicate=not folded)

    def _tell_about_repeat(self, earlier: Case, repeat_case_id: str, *, duplicate: bool) -> CaseSummary:
        """Start the execution, named after the repeat, that takes the earlier case to its ticket (which
        comments on the repeat); none for a case that was closed, which stays closed."""
        if earlier.ticket is None and route(earlier, self.ticket_min_severity) is Branch.CLOSE:
            arn = earlier.execution_arn or self.executions.arn_for(earlier.case_id)
        else:
            summary = ExecutionInput(
                case_id=earlier.case_id,
                route=Branch.TICKET,
                verdict=earlier.verdict,
                severity=earlier.alert.severity.label,
                remediable=False,
                actions=0,
            )
            arn = self.executions.start(repeat_case_id, summary)
        return CaseSummary(
            case_id=earlier.case_id,
            verdict=earlier.verdict,
            execution_arn=arn,
            duplicate=duplicate,
            repeat=True,
        )

    def _keep_pending(
        self,
        alert: Alert,
        provenance: Provenance,
        *,
        existing: Case | None,
        outcomes: list[IocOutcome],
        refusal: Deferral,
        created_at: datetime,
        now: datetime,
    ) -> None:
        # The case shows what is known and that the rest is pending: no verdict, no action, no execution.
        case = Case(
            case_id=alert.case_id,
            alert=alert,
            iocs=outcomes,
            error=f"enrichment pending until {refusal.retry_at.isoformat()}: {refusal}",
            created_at=created_at,
            updated_at=now,
            history=list(existing.history) if existing is not None else [_received(alert, created_at)],
            provenance=provenance,
        )
        if existing is None or existing.status is not CaseStatus.PENDING_ENRICHMENT:
            until = refusal.retry_at.isoformat()
            case.record(CaseStatus.PENDING_ENRICHMENT, now, f"enrichment put off until {until}: {refusal}")
        else:
            case.status = CaseStatus.PENDING_ENRICHMENT
        if existing is not None:
            self.cases.save(case)
        else:
            # False when another delivery stored it first: its version stands, this record comes back.
            self.cases.create(case)

    def _known_case(self, case_id: str) -> Case | None:
        if case_id not in self._known_cases:
            self._known_cases[case_id] = self.cases.get(case_id)
        return self._known_cases[case_id]

    def _resume(self, case: Case) -> CaseSummary:
        # Starting again is harmless (the execution is named after the case) and finishes the job
        # of a delivery that stored the case but died before starting its execution.
        arn = self.executions.start(case.case_id, execution_input(case, self.ticket_min_severity))
        return CaseSummary(case_id=case.case_id, verdict=case.verdict, execution_arn=arn, duplicate=True)

    def _assess(self, ioc: Ioc) -> IocOutcome:
        if ioc.skipped_reason is not None:
            return IocOutcome.skipped(ioc)
        enrichment = self._seen.get(ioc.key)
        if enrichment is None:
            if ioc.key not in self._failed:
                self._enrich_all([ioc])
            failure = self._failed.get(ioc.key)
            if failure is not None:
                if _refused_by_virustotal(failure):
                    return _not_enriched(ioc, failure)
                raise failure
            enrichment = self._seen[ioc.key]
        if ioc.key in self._used:
            # Met earlier in this batch: answered without a request, as a cache hit is.
            with self._lock:
                self.cache_hits += 1
            enrichment = enrichment.model_copy(update={"cached": True})
        else:
            self._used.add(ioc.key)
        return IocOutcome.enriched(ioc, enrichment)

    def _enrich_all(self, iocs: list[Ioc]) -> None:
        """Enrich the IOCs into `_seen`, or their errors into `_failed`: one cache read for all, the
        misses looked up concurrently within the quota, each cached as it arrives."""
        try:
            cached = self.cache.get_fresh(iocs)
        except Exception as error:  # only the records that need these IOCs fail, and come back
            self._failed.update(dict.fromkeys((ioc.key for ioc in iocs), error))
            return
        self._seen.update(cached)
        self.cache_hits += len(cached)
        misses = [ioc for ioc in iocs if ioc.key not in cached]
        if not misses:
            return
        try:
            reserved = self._reserve(
                sum(self.intel.requests_per_lookup(ioc.type) for ioc in misses), len(misses)
            )
        except Exception as error:
            self._failed.update(dict.fromkeys((ioc.key for ioc in misses), error))
            return
        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(misses))) as pool:
            futures = {ioc.key: pool.submit(self._look_up, ioc, reserved) for ioc in misses}
        for key, future in futures.items():
            failure = future.exception()
            if failure is None:
                self._seen[key] = future.result()
            elif isinstance(failure, Exception):
                self._failed[key] = failure
            else:
                raise failure

    def _reserve(self, units: int, lookups: int) -> bool:
        """Take the quota of all the lookups (`units` requests) at once when it has room for them; False
        when each lookup must take its own (then as many run as the quota has room for, and the rest are
        deferred)."""
        if self.limiter is None:
            return True
        if lookups == 1:
            return False
        try:
            self.limiter.acquire(units)
        except QuotaExhaustedError:
            return False
        return True

    def _look_up(self, ioc: Ioc, reserved: bool) -> Enrichment:
        """The IOC's enrichment from VirusTotal, taking its unit of the quota unless the batch reserved
        it, cached as soon as it arrives (runs in workers)."""
        with self._lock:
            refusal = self._refusal
        if refusal is not None and refusal.retry_at > self.now():
            # The quota is spent, or the key refused, for this batch: asking again would be refused again.
            raise refusal
        lookups_end = self._lookups_end()
        if lookups_end is not None and self.monotonic() + MIN_LOOKUP_SECONDS > lookups_end:
            raise PutOffError("the invocation had too little time left to look its IOCs up", self.now())
        try:
            if self.limiter is not None and not reserved:
                self.limiter.acquire(self.intel.requests_per_lookup(ioc.type))
            with self._lock:
                self.lookups += 1
            try:
                found = self.intel.lookup(ioc, lookups_end)
            except (VirusTotalQuotaExceededError, VirusTotalTooManyRequestsError) as error:
                raise quota_refusal(error, self.now()) from error
            except ConfigurationError as error:
                raise self._key_refused(error) from error
            except VirusTotalError as error:
                if isinstance(error, TransientError) or _refused_by_virustotal(error):
                    raise
                raise self._virustotal_unusable(error) from error
        except _DEFERRALS as error:
            with self._lock:
                self._refusal = _later(self._refusal, error)
            raise
        enrichment = decide(ioc, found, self.policy, self.now())
        # Cached now, not once the batch's lookups are over: an invocation cut short loses none of it.
        self._keep([enrichment])
        return enrichment

    def _key_refused(self, error: ConfigurationError) -> PutOffError:
        """VirusTotal refusing the API key (401, 403): a configuration error, logged and counted (the
        VirusTotalAuthFailures metric, which an alarm watches); the record waits for the key to be fixed."""
        with self._lock:
            self.auth_failures += 1
        retry_at = self.now() + KEY_REFUSED_RETRY
        # The client never puts the key in an error; the message is VirusTotal's, escaped and cut.
        logger.error(
            "VirusTotal refused the API key: a configuration error; records are deferred until it is fixed",
            extra={
                "error_type": type(error).__name__,
                "error": failure_reason(error),
                "until": retry_at.isoformat(),
            },
        )
        return PutOffError(f"VirusTotal refused the API key ({failure_reason(error)})", retry_at)

    def _virustotal_unusable(self, error: VirusTotalError) -> PutOffError:
        """VirusTotal (or what stands at VT_BASE_URL) cannot be asked at all: no request could be sent, a
        redirect, an answer that is not VirusTotal's. A setting to fix: logged, and the record waits."""
        retry_at = self.now() + KEY_REFUSED_RETRY
        logger.error(
            "VirusTotal could not be asked: check VT_BASE_URL and the network path; records are deferred",
            extra={"error_type": type(error).__name__, "error": str(error), "until": retry_at.isoformat()},
        )
        return PutOffError(f"VirusTotal could not be asked ({error})", retry_at)

    def _keep(self, enrichments: list[Enrichment]) -> None:
        """Cache what was looked up. A write that fails costs a lookup later, never a record: the
        enrichments are in hand and go into the cases regardless."""
        try:
            self.cache.put(enrichments)
        except Exception as error:
            logger.warning(
                "enrichments not cached",
                extra={"iocs": [enrichment.key for enrichment in enrichments], "error": str(error)},
            )


def triage_batch(
    enricher: Enricher, event: dict[str, Any], context: LambdaContext | None = None
) -> PartialItemFailureResponse:
    """Triage an SQS batch: every IOC looked up first, concurrently and once, then each record in turn,
    within the invocation's remaining time when a Lambda context gives it.

    Returns the partial batch response: records to retry and records deferred until they can go on.
    """
    if context is not None:
        enricher.limit_time(context.get_remaining_time_in_millis() / 1000)
    enricher.prefetch(str(record.get("body", "")) for record in event.get("Records", []))
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    return process_partial_response(
        event=event, record_handler=enricher.handle_sqs_record, processor=processor, context=context
    )


# How much a route does: a repeat whose route does more than its earlier case's is a case of its own.
_ROUTE_RANK = {Branch.CLOSE: 0, Branch.TICKET: 1, Branch.REMEDIATE: 2}
# How much a channel is trusted with: a pushed alert cannot make a detector's later finding a repeat.
_CHANNEL_TRUST = {"queue": 0, "intake": 1, "detector": 2}


def _trust(case: Case) -> int:
    # A case stored before provenance was recorded came through the one queue there was: the detector's.
    channel = case.provenance.channel if case.provenance is not None else "detector"
    return _CHANNEL_TRUST[channel]


def _received(alert: Alert, at: datetime) -> HistoryEntry:
    """The first step of every case: the alert came in."""
    # The id and version are the sender's: escaped, as everything a person reads from the history.
    note = f"{alert.source} finding {shown(alert.id)} (version {shown(alert.version)})"
    return HistoryEntry(status=CaseStatus.NEW, at=at, note=note)


def _enriched_note(case: Case, branch: Branch, allowed: Eligibility) -> str:
    """The history line of a case once enriched: its verdict, what was planned and why, its route."""
    count = len(case.actions)
    note = f"verdict {case.verdict.value}; {count} action{'s' if count != 1 else ''} planned"
    if allowed.not_actionable:
        note += "; no automatic action: " + "; ".join(allowed.not_actionable)
    elif allowed.approval is not None and case.actions:
        note += f", each waiting for a person ({allowed.approval})"
    return note + f"; route {branch.value}"


def batch_metrics(enricher: Enricher, response: PartialItemFailureResponse) -> dict[str, int]:
    """What the enrich function counts for a batch, by metric name."""
    return {
        "VirusTotalRequests": enricher.vt_requests,
        "VirusTotalLookups": enricher.lookups,
        "VirusTotalAuthFailures": enricher.auth_failures,
        "CacheHits": enricher.cache_hits,
        "Deferred": enricher.deferred,
        "Rejected": enricher.rejected,
        # Faults only: a deferred record is reported failed too, to stay hidden until it can go on.
        "RecordsRetried": len(response["batchItemFailures"]) - enricher.hidden,
    }


def _deferrals_before(record: SQSRecord) -> int:
    """The deferrals of the copies queued before this one (0 for the original message)."""
    attribute = record.message_attributes[DEFERRALS_ATTRIBUTE]  # None when absent (unlike `.get`)
    value = attribute.string_value if attribute is not None else None
    return int(value) if value is not None and value.isdigit() else 0


def _attributes_with_deferrals(record: SQSRecord, deferrals: int) -> dict[str, str]:
    """The record's string attributes for its fresh copy, with the count of deferrals so far."""
    attributes = {
        name: attribute.string_value
        for name, attribute in record.message_attributes.items()
        if attribute.string_value is not None and name != DEFERRALS_ATTRIBUTE
    }
    if len(attributes) >= _MAX_MESSAGE_ATTRIBUTES:
        # The count must travel; a sender's attribute beyond SQS's ten is what gives way.
        left_out = sorted(attributes)[_MAX_MESSAGE_ATTRIBUTES - 1 :]
        logger.warning("message attributes left out of a deferred copy", extra={"attributes": left_out})
        attributes = {name: value for name, value in attributes.items() if name not in left_out}
    return attributes | {DEFERRALS_ATTRIBUTE: str(deferrals)}


def _refused_by_virustotal(error: Exception) -> bool:
    """VirusTotal answered that it will not look this IOC up (a 4xx other than the key's and the quota's):
    that IOC's fate, not the alert's."""
    return (
        isinstance(error, VirusTotalError)
        and not isinstance(error, TransientError | ConfigurationError)
        and error.http_status is not None
        and 400 <= error.http_status < 500
    )


def _not_enriched(ioc: Ioc, error: Exception) -> IocOutcome:
    """An IOC VirusTotal would not look up: no verdict of its own, and why."""
    reason = f"not enriched: {error}"  # VirusTotal's code and message, cut by the client
    return IocOutcome(type=ioc.type, value=ioc.value, found_at=ioc.found_at, reasons=[reason])


def _pending(ioc: Ioc, refusal: Deferral) -> IocOutcome:
    """An IOC not looked up yet because its lookup was put off: no verdict of its own, and why."""
    return IocOutcome(
        type=ioc.type,
        value=ioc.value,
        found_at=ioc.found_at,
        reasons=[f"pending: not looked up yet, {refusal} (until {refusal.retry_at.isoformat()})"],
    )
