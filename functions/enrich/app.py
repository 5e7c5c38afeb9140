"""Enrich function: a batch of queued alerts in, cases with verdicts and started executions out."""

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.typing import LambdaContext

from vtriage.composition.enrich import enricher_factory
from vtriage.config import EnrichSettings
from vtriage.enrich import triage_batch

logger = Logger()
metrics = Metrics()


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    """Triage each record; report the ones to retry, and the ones deferred until the VirusTotal quota
    reopens, as partial batch failures."""
    enricher = enricher_factory(EnrichSettings.from_environ())()
    response = triage_batch(enricher, event, context)
    metrics.add_metric(name="VirusTotalRequests", unit=MetricUnit.Count, value=enricher.vt_requests)
    metrics.add_metric(name="VirusTotalLookups", unit=MetricUnit.Count, value=enricher.lookups)
    metrics.add_metric(name="CacheHits", unit=MetricUnit.Count, value=enricher.cache_hits)
    metrics.add_metric(name="Deferred", unit=MetricUnit.Count, value=enricher.deferred)
    metrics.add_metric(name="Rejected", unit=MetricUnit.Count, value=enricher.rejected)
    metrics.add_metric(name="RecordsRetried", unit=MetricUnit.Count, value=len(response["batchItemFailures"]))
    return response
