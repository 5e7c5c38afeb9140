"""The enrich function's composition root: its adapters, built once per container, and a new `Batch`
over them for each invocation."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import botocore.exceptions
import requests
import requests.adapters

from vtriage.adapters.dynamodb import DynamoCaseRepository, DynamoEnrichmentCache, DynamoRepeatLedger
from vtriage.adapters.finding_ledger import DynamoFindingLedger
from vtriage.adapters.quota import DynamoQuotaLimiter, SqsMessageDeferral
from vtriage.adapters.sqs import SqsDeadLetterQueue
from vtriage.adapters.stepfunctions import StepFunctionsExecutionStarter
from vtriage.adapters.virustotal import VirusTotalClient, most_requests_per_lookup
from vtriage.clock import utc_now
from vtriage.composition import OnFirstUse, aws_client, built_once, secrets_provider, virustotal_api_key
from vtriage.config.enrich import EnrichSettings
from vtriage.enrich.batch import Batch
from vtriage.enrich.lookups import Lookups
from vtriage.enrich.records import Deferrals, Refusals
from vtriage.enrich.repeats import Repeats, Variants
from vtriage.enrich.triage import Triage, TriageRules
from vtriage.errors import ConfigurationError
from vtriage.playbook import load_playbooks
from vtriage.verdict import VerdictPolicy, load_policy


def aws_connection_failed(error: Exception) -> bool:
    """A connection to AWS that failed or timed out: a retry may cure it, so the record is retried
    rather than refused (throttling and 5xx answers already arrive as TransientError)."""
    return isinstance(error, botocore.exceptions.ConnectionError | botocore.exceptions.HTTPClientError)


def verdict_policy(settings: EnrichSettings) -> VerdictPolicy:
    """The policy file (the shipped one by default); the environment's two thresholds, when set,
    replace its thresholds for every IOC type."""
    policy = load_policy(settings.verdict_policy_path)
    if settings.malicious_min_engines is None or settings.suspicious_min_engines is None:
        return policy
    return VerdictPolicy.model_validate(
        policy.model_dump(exclude={"thresholds"})
        | {
            "malicious_min_engines": settings.malicious_min_engines,
            "suspicious_min_engines": settings.suspicious_min_engines,
        }
    )


@built_once
def batch_factory(settings: EnrichSettings, now: Callable[[], datetime] = utc_now) -> Callable[[], Batch]:
    """A factory of per-batch triage sharing this container's clients, HTTP connection pool and quota
    limiter. `now` is the clock of the quota windows, the cache and the cases. A client a batch may not
    need (Step Functions, SQS, Secrets Manager) is created when first used."""
    needed = most_requests_per_lookup(settings.vt_deep_context)
    if (
        settings.quota_table is not None
        and min(settings.vt_quota_per_minute, settings.vt_quota_per_day) < needed
    ):
        # Each lookup takes a unit of the quota per request it sends: it could never run.
        raise ConfigurationError(
            f"VT_DEEP_CONTEXT makes a lookup send up to {needed} requests: VT_QUOTA_PER_MINUTE and "
            f"VT_QUOTA_PER_DAY must be at least {needed}"
        )
    retention = timedelta(days=settings.retention_days)
    dynamodb = aws_client(settings, "dynamodb")
    cases = DynamoCaseRepository(dynamodb, settings.cases_table, retention, now)
    cache_ = DynamoEnrichmentCache(dynamodb, settings.enrichments_table, settings.cache_ttls, retention, now)
    limiter = (
        DynamoQuotaLimiter(
            dynamodb, settings.quota_table, settings.vt_quota_per_minute, settings.vt_quota_per_day, now
        )
        if settings.quota_table is not None
        else None
    )
    sqs = OnFirstUse(settings, "sqs")
    # A deferred record is hidden on, or re-sent to, the queue it came from.
    queue_urls = {
        settings.alert_queue_arn: settings.alert_queue_url,
        settings.pushed_alert_queue_arn: settings.pushed_alert_queue_url,
    }
    queues = {arn: SqsMessageDeferral(sqs, url) for arn, url in queue_urls.items() if url is not None}
    # Created when the first execution starts: a batch whose records are all deferred, refused or ignored
    # starts none, and the client's service model costs a cold start about as much as DynamoDB's.
    executions = StepFunctionsExecutionStarter(
        OnFirstUse(settings, "stepfunctions"), settings.state_machine_arn
    )
    dead_letters = SqsDeadLetterQueue(sqs, settings.dead_letter_queue_url)
    secrets = secrets_provider(settings)
    session = requests.Session()
    # One connection per concurrent lookup, kept alive across batches of a warm container.
    adapter = requests.adapters.HTTPAdapter(
        pool_connections=1, pool_maxsize=max(settings.vt_max_concurrency, 10)
    )
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    policy = verdict_policy(settings)
    # Read and validated once, when the container starts: a bad file stops the function right away.
    rules = TriageRules(
        place=settings.place,
        pushed_alert_actions=settings.pushed_alert_actions,
        playbooks=load_playbooks(settings.playbooks_path),
        ip_block_method=settings.ip_block_method,
        ticket_min_severity=settings.ticket_min_severity,
    )
    repeats = Repeats(
        DynamoRepeatLedger(dynamodb, settings.cases_table, now),
        cases,
        executions,
        window=settings.repeat_window,
        ticket_min_severity=settings.ticket_min_severity,
        dry_run=settings.dry_run,
    )
    variants = Variants(DynamoFindingLedger(dynamodb, settings.cases_table, retention, now), cases)
    intake = settings.intake
    channels = settings.channels

    def new_batch() -> Batch:
        intel = VirusTotalClient(
            session,
            virustotal_api_key(settings, secrets),
            base_url=settings.vt_base_url,
            timeout=(3.05, settings.vt_timeout_seconds),
            deep_context=settings.vt_deep_context,
        )
        lookups = Lookups(
            intel,
            cache_,
            policy,
            now,
            limiter=limiter,
            max_concurrency=settings.vt_max_concurrency,
            request_counter=lambda: intel.requests_sent,
        )
        refusals = Refusals(cases, dead_letters)
        return Batch(
            intake=intake,
            triage=Triage(cases, executions, lookups, rules, now, repeats=repeats, variants=variants),
            refusals=refusals,
            deferrals=Deferrals(
                queues,
                refusals,
                now,
                requeue_after_receives=settings.deferral_requeue_after_receives,
                max_deferrals=settings.max_deferrals,
            ),
            channels=channels,
            is_transient=aws_connection_failed,
            max_receives=settings.max_receive_count,
        )

    return new_batch
