"""The composition root: builds each function's adapters from its settings, once per container.

This is the only module that creates AWS clients. Clients are built on first use, never at import,
and reused across invocations of a warm container.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import boto3
import requests
from aws_lambda_powertools.utilities.parameters import SecretsProvider
from botocore.config import Config

from vtriage.adapters.dynamodb import DynamoCaseRepository, DynamoEnrichmentCache
from vtriage.adapters.ec2 import Ec2InstanceIsolation
from vtriage.adapters.sns import SnsTicketSink
from vtriage.adapters.sqs import SqsDeadLetterQueue
from vtriage.adapters.stepfunctions import StepFunctionsExecutionStarter
from vtriage.config import EnrichSettings, RemediateSettings, Settings, TicketSettings
from vtriage.enrich import Enricher
from vtriage.verdict import VerdictPolicy
from vtriage.virustotal.client import VirusTotalClient

# Standard retry mode backs off on throttling; the Lambda timeout bounds the total.
_AWS_CONFIG = Config(retries={"mode": "standard", "max_attempts": 4}, connect_timeout=3, read_timeout=10)
_SECRET_MAX_AGE_SECONDS = 300


def utc_now() -> datetime:
    """The current time, timezone-aware."""
    return datetime.now(UTC)


def _client(settings: Settings, service: str) -> Any:
    return boto3.session.Session(region_name=settings.region).client(
        service,  # type: ignore[call-overload]
        config=_AWS_CONFIG,
        endpoint_url=settings.aws_endpoint_url,
    )


def _cases(settings: Settings) -> DynamoCaseRepository:
    return DynamoCaseRepository(
        _client(settings, "dynamodb"), settings.cases_table, timedelta(days=settings.retention_days), utc_now
    )


@cache
def enricher_factory(settings: EnrichSettings) -> Callable[[], Enricher]:
    """A factory of per-batch enrichers sharing this container's clients and HTTP connection pool."""
    retention = timedelta(days=settings.retention_days)
    dynamodb = _client(settings, "dynamodb")
    cases = DynamoCaseRepository(dynamodb, settings.cases_table, retention, utc_now)
    cache_ = DynamoEnrichmentCache(
        dynamodb, settings.enrichments_table, timedelta(hours=settings.cache_hours), retention, utc_now
    )
    executions = StepFunctionsExecutionStarter(_client(settings, "stepfunctions"), settings.state_machine_arn)
    dead_letters = SqsDeadLetterQueue(_client(settings, "sqs"), settings.dead_letter_queue_url)
    secrets = SecretsProvider(boto3_client=_client(settings, "secretsmanager"))
    session = requests.Session()
    policy = VerdictPolicy(
        malicious_min_engines=settings.malicious_min_engines,
        suspicious_min_engines=settings.suspicious_min_engines,
    )

    def api_key() -> str:
        if settings.vt_api_key is not None:
            return settings.vt_api_key.get_secret_value()
        assert settings.vt_api_key_secret is not None  # the settings validator guarantees one of the two
        # Cached for a few minutes, so a rotated key is picked up without a redeploy.
        return str(secrets.get(settings.vt_api_key_secret, max_age=_SECRET_MAX_AGE_SECONDS))

    def new_enricher() -> Enricher:
        intel = VirusTotalClient(
            session,
            api_key(),
            base_url=settings.vt_base_url,
            timeout=(3.05, settings.vt_timeout_seconds),
        )
        return Enricher(
            intel=intel,
            cache=cache_,
            cases=cases,
            executions=executions,
            dead_letters=dead_letters,
            policy=policy,
            now=utc_now,
        )

    return new_enricher


@dataclass(frozen=True)
class RemediationDependencies:
    """What the remediate function acts through."""

    cases: DynamoCaseRepository
    isolation: Ec2InstanceIsolation


@cache
def remediation_dependencies(settings: RemediateSettings) -> RemediationDependencies:
    """The remediate function's adapters, built once per container."""
    return RemediationDependencies(
        cases=_cases(settings),
        isolation=Ec2InstanceIsolation(
            _client(settings, "ec2"), settings.quarantine_group_name, settings.protected_tag_key
        ),
    )


@dataclass(frozen=True)
class TicketDependencies:
    """What the ticket function acts through."""

    cases: DynamoCaseRepository
    sink: SnsTicketSink


@cache
def ticket_dependencies(settings: TicketSettings) -> TicketDependencies:
    """The ticket function's adapters, built once per container."""
    return TicketDependencies(
        cases=_cases(settings),
        sink=SnsTicketSink(_client(settings, "sns"), settings.ticket_topic_arn, utc_now),
    )
