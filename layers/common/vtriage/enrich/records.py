"""A queued record, and its fates beside its cases: refused for good (kept with its reason and parked on
the dead-letter queue), or deferred until it can go on (hidden on its queue, or queued afresh), a bounded
number of times."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, NamedTuple

from aws_lambda_powertools import Logger

from vtriage.bounds import (
    LAMBDA_MAX_SECONDS,
    SQS_MAX_DELAY_SECONDS,
    SQS_MAX_MESSAGE_ATTRIBUTES,
    SQS_MAX_VISIBILITY_SECONDS,
)
from vtriage.display import shown
from vtriage.enrich.outcomes import PutOffError
from vtriage.intake import FindingRefusal

if TYPE_CHECKING:
    # The ports only type this step's collaborators: the enrich function's cold start need not load them.
    from vtriage.ports import CaseRepository, DeadLetterQueue, MessageDeferral

logger = Logger(child=True)

# A received message stays hidden for at most SQS's 12 h counted from that receive; the invocation that
# defers it has already run for a while (at most Lambda's 15 min), so the deferral stops short by that much.
MAX_DEFERRAL_SECONDS = SQS_MAX_VISIBILITY_SECONDS - LAMBDA_MAX_SECONDS
# SQS delays a new message by at most 15 min; a longer wait is finished by hiding the copy when it comes.
MAX_REQUEUE_DELAY_SECONDS = SQS_MAX_DELAY_SECONDS
# The message attribute in which a re-queued copy carries the deferrals of the copies before it.
DEFERRALS_ATTRIBUTE = "vtriage_deferrals"


class QueuedRecord(NamedTuple):
    """One message as its queue delivered it: what the enrich domain reads of an SQS record."""

    message_id: str
    body: str
    # The queue it came from, by the ARN AWS sets on every record: its channel, and where it is deferred.
    queue_arn: str = ""
    receipt_handle: str = ""
    # How many times the queue has delivered this copy (ApproximateReceiveCount).
    receive_count: int = 1
    # Its string message attributes (the intake's stamp of its sender among them).
    attributes: Mapping[str, str] = MappingProxyType({})

    def deferrals_before(self) -> int:
        """The deferrals of the copies queued before this one (0 for the original message)."""
        value = self.attributes.get(DEFERRALS_ATTRIBUTE)
        return int(value) if value is not None and value.isdigit() else 0

    def attributes_with_deferrals(self, deferrals: int) -> dict[str, str]:
        """The string attributes for a fresh copy of the message, with the count of deferrals so far."""
        attributes = {name: value for name, value in self.attributes.items() if name != DEFERRALS_ATTRIBUTE}
        if len(attributes) >= SQS_MAX_MESSAGE_ATTRIBUTES:
            # The count must travel; a sender's attribute beyond SQS's ten is what gives way.
            left_out = sorted(attributes)[SQS_MAX_MESSAGE_ATTRIBUTES - 1 :]
            logger.warning("message attributes left out of a deferred copy", extra={"attributes": left_out})
            attributes = {name: value for name, value in attributes.items() if name not in left_out}
        return attributes | {DEFERRALS_ATTRIBUTE: str(deferrals)}


class Refusals:
    """Refuses records, or findings of a record, for good: each kept with its reason and the record's body
    (`cases`) and parked on the dead-letter queue, once per refusal of a message however often it comes
    back. Retrying could never succeed, and it must not hold up what stands beside it."""

    def __init__(self, cases: CaseRepository, dead_letters: DeadLetterQueue) -> None:
        self.cases = cases
        self.dead_letters = dead_letters
        self.rejected = 0

    def refuse(self, message_id: str, body: str, refusal: FindingRefusal) -> None:
        """Keep the refusal with the record's body and park them on the dead-letter queue."""
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


class Deferrals:
    """Puts records off until they can go on, on the queue each came from (`queues`, by its ARN).

    A record is hidden and reported failed, so that the queue keeps it; once it has been received
    `requeue_after_receives` times, a fresh copy is queued instead (and this one acknowledged), so that
    deferrals never reach the queue's maxReceiveCount and the dead-letter queue. Each copy carries the
    count of deferrals before it and every string attribute of the record (the intake's stamp among
    them); past `max_deferrals` the record is refused (`refusals`).
    """

    def __init__(
        self,
        queues: Mapping[str, MessageDeferral],
        refusals: Refusals,
        now: Callable[[], datetime],
        *,
        requeue_after_receives: int = 3,
        max_deferrals: int = 500,
    ) -> None:
        self.queues = queues
        self.refusals = refusals
        self.now = now
        self.requeue_after_receives = requeue_after_receives
        self.max_deferrals = max_deferrals
        self.deferred = 0
        # Deferred records reported failed so that the queue keeps them hidden: not faults to retry.
        self.hidden = 0

    def put_off(self, record: QueuedRecord, until: datetime, reason: str) -> None:
        """Defer the record until `until`, saying why. Raises PutOffError once the record is hidden, so that
        its batch reports it failed."""
        receives = record.receive_count
        deferrals = record.deferrals_before() + receives
        log = {"message_id": record.message_id, "until": until.isoformat(), "reason": reason}
        if deferrals > self.max_deferrals:
            refusal = FindingRefusal(
                where="",
                reason=f"deferred {deferrals} times, more than the {self.max_deferrals} allowed"
                f" (MAX_DEFERRALS); the last time because {reason}",
            )
            self.refusals.refuse(record.message_id, record.body, refusal)
            return
        self.deferred += 1
        seconds = max(1, math.ceil((until - self.now()).total_seconds()))
        queue = self.queues.get(record.queue_arn)
        if queue is not None and receives >= self.requeue_after_receives:
            queue.requeue(
                record.body,
                record.attributes_with_deferrals(deferrals),
                min(seconds, MAX_REQUEUE_DELAY_SECONDS),
            )
            logger.info("record deferred as a fresh message", extra={**log, "deferrals": deferrals})
            return
        if queue is not None:
            queue.defer(record.receipt_handle, min(seconds, MAX_DEFERRAL_SECONDS))
        logger.info("record deferred", extra={**log, "deferrals": deferrals})
        self.hidden += 1
        raise PutOffError(reason, until)
