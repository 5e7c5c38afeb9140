"""Enrich function: a batch of queued alerts in, cases with verdicts and started executions out."""

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.typing import LambdaContext

from vtriage.adapters.factories import enricher_factory
from vtriage.config import EnrichSettings

logger = Logger()
metrics = Metrics()


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    """Triage each record; report the ones to retry as partial batch failures."""
    enricher = enricher_factory(EnrichSettings.from_environ())()
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    response = process_partial_response(
        event=event, record_handler=enricher.handle_sqs_record, processor=processor, context=context
    )
    metrics.add_metric(name="VirusTotalLookups", unit=MetricUnit.Count, value=enricher.lookups)
    metrics.add_metric(name="EnrichmentCacheHits", unit=MetricUnit.Count, value=enricher.cache_hits)
    metrics.add_metric(name="RecordsRetried", unit=MetricUnit.Count, value=len(response["batchItemFailures"]))
    return response
