"""Enrich function: a batch of queued alerts in, cases with verdicts and started executions out."""

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.typing import LambdaContext

from vtriage.composition.enrich import batch_factory
from vtriage.composition.sqs_batch import batch_metrics, triage_sqs_batch
from vtriage.config.enrich import EnrichSettings

logger = Logger()
metrics = Metrics()


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    """Triage each record within the invocation's time; report the ones to retry, and the ones deferred
    (quota spent, out of time, VirusTotal refusing the key), as partial batch failures."""
    batch = batch_factory(EnrichSettings.from_environ())()
    response = triage_sqs_batch(batch, event, context)
    for name, count in batch_metrics(batch, response).items():
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=count)
    return response
