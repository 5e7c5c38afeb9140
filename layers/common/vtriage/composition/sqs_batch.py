"""Lambda's SQS batch at the edge of the enrich function: its records become the domain's QueuedRecord
values, and what becomes of them the partial batch response, through powertools' batch processor. No
module of the domain sees Lambda's event types."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from vtriage.enrich.batch import Batch
from vtriage.enrich.records import QueuedRecord


def queued_record(record: SQSRecord) -> QueuedRecord:
    """What the domain reads of an SQS record: its ids, body, queue, receive count and string attributes."""
    return QueuedRecord(
        message_id=record.message_id,
        body=record.body,
        queue_arn=record.event_source_arn,
        receipt_handle=record.receipt_handle,
        receive_count=int(record.attributes.approximate_receive_count or 1),
        attributes={
            name: attribute.string_value
            for name, attribute in record.message_attributes.items()
            if attribute.string_value is not None
        },
    )


def triage_sqs_batch(
    batch: Batch, event: dict[str, Any], context: LambdaContext | None = None
) -> PartialItemFailureResponse:
    """Triage an SQS batch, within the invocation's remaining time when a Lambda context gives it: every
    record read and every IOC looked up first, concurrently and once, then each record in turn.

    Returns the partial batch response: records to retry and records deferred until they can go on.
    """
    if context is not None:
        batch.deadline.limit(context.get_remaining_time_in_millis() / 1000)
    # SQS gives each message of a batch its own id.
    read = {reading.record.message_id: reading for reading in batch.read(_queued_records(event))}

    def handle(record: SQSRecord) -> dict[str, object]:
        # A raised error marks this record, and only it, failed.
        return batch.handle(read[record.message_id]).model_dump(mode="json")

    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    return process_partial_response(event=event, record_handler=handle, processor=processor, context=context)


def _queued_records(event: dict[str, Any]) -> Iterator[QueuedRecord]:
    for raw in event.get("Records", []):
        try:
            yield queued_record(SQSRecord(raw))
        except (KeyError, TypeError, ValueError):
            continue  # a record Lambda could not have sent: failed alone when the processor meets it


def batch_metrics(batch: Batch, response: PartialItemFailureResponse) -> dict[str, int]:
    """What the enrich function counts for a batch, by metric name."""
    lookups = batch.lookups
    return {
        "VirusTotalRequests": lookups.vt_requests,
        "VirusTotalLookups": lookups.looked_up,
        "VirusTotalAuthFailures": lookups.auth_failures,
        "CacheHits": lookups.cache_hits,
        "Deferred": batch.deferrals.deferred,
        "Rejected": batch.refusals.rejected,
        # Faults only: a deferred record is reported failed too, to stay hidden until it can go on.
        "RecordsRetried": len(response["batchItemFailures"]) - batch.deferrals.hidden,
    }
