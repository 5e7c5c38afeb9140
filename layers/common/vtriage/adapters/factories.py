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
import requests.adapters
from aws_lambda_powertools.utilities.parameters import SecretsProvider
from botocore.config import Config

from vtriage.adapters.alert_queue import SqsAlertQueue
from vtriage.adapters.dns_firewall import DnsFirewallDomainBlocker
from vtriage.adapters.dynamodb import DynamoCaseRepository, DynamoEnrichmentCache, DynamoRepeatLedger
from vtriage.adapters.ec2 import Ec2InstanceIsolation, Ec2InstanceTagging, Ec2VolumeSnapshots
from vtriage.adapters.guardrails import (
    DynamoApprovalStore,
    DynamoBlastRadius,
    SnsApprovalNotifier,
    StepFunctionsTaskCallback,
)
from vtriage.adapters.http_tickets import BasicCredentials, BearerToken
from vtriage.adapters.iam import IamAccessKeyDisabler
from vtriage.adapters.jira import JiraTicketSink
from vtriage.adapters.nacl import NaclIpBlocker
from vtriage.adapters.quota import DynamoQuotaLimiter, SqsMessageDeferral
from vtriage.adapters.s3 import S3ObjectQuarantine
from vtriage.adapters.servicenow import ServiceNowTicketSink
from vtriage.adapters.sns import SnsTicketSink
from vtriage.adapters.sqs import SqsDeadLetterQueue
from vtriage.adapters.stepfunctions import StepFunctionsExecutionStarter
from vtriage.adapters.waf import WafIpSetBlocker
from vtriage.adapters.webhook import WebhookTicketSink
from vtriage.config import (
    ApprovalSettings,
    EnrichSettings,
    IntakeSettings,
    RemediateSettings,
    Settings,
    TicketSettings,
)
from vtriage.enrich import Enricher
from vtriage.errors import ConfigurationError
from vtriage.models import ActionType
from vtriage.playbook import load_playbooks
from vtriage.ports import ResponseActuator, TicketSink
from vtriage.remediate import Actuators
from vtriage.verdict import VerdictPolicy, load_policy
from vtriage.virustotal.client import VirusTotalClient

# Standard retry mode backs off on throttling; the Lambda timeout bounds the total.
_AWS_CONFIG = Config(retries={"mode": "standard", "max_attempts": 4}, connect_timeout=3, read_timeout=10)
_SECRET_MAX_AGE_SECONDS = 300


def utc_now() -> datetime:
    """The current time, timezone-aware."""
    return datetime.now(UTC)


@cache
def _session(region: str) -> boto3.session.Session:
    # One session per container: each session loads botocore's service models afresh, which costs
    # a cold start ~50 ms per client when every client has a session of its own.
    return boto3.session.Session(region_name=region)


def _client(settings: Settings, service: str) -> Any:
    return _session(settings.region).client(
        service,  # type: ignore[call-overload]
        config=_AWS_CONFIG,
        endpoint_url=settings.aws_endpoint_url,
    )


def _secrets_provider(settings: Settings) -> Callable[[], SecretsProvider]:
    """A Secrets Manager provider built when a secret is first read, not when the container starts."""

    @cache
    def provider() -> SecretsProvider:
        return SecretsProvider(boto3_client=_client(settings, "secretsmanager"))

    return provider


class _OnFirstUse:
    """A client created the first time it is called: for services a warm container may never need
    (the dead-letter queue, deferrals, Secrets Manager once the key is cached), kept off the cold start."""

    def __init__(self, settings: Settings, service: str) -> None:
        self._settings = settings
        self._service = service
        self._client: Any = None

    def __getattr__(self, name: str) -> Any:
        if self._client is None:
            self._client = _client(self._settings, self._service)
        return getattr(self._client, name)


def _cases(settings: Settings) -> DynamoCaseRepository:
    return DynamoCaseRepository(
        _client(settings, "dynamodb"), settings.cases_table, timedelta(days=settings.retention_days), utc_now
    )


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


@cache
def enricher_factory(
    settings: EnrichSettings, now: Callable[[], datetime] = utc_now
) -> Callable[[], Enricher]:
    """A factory of per-batch enrichers sharing this container's clients, HTTP connection pool and
    quota limiter. `now` is the clock of the quota windows, the cache and the cases."""
    retention = timedelta(days=settings.retention_days)
    dynamodb = _client(settings, "dynamodb")
    cases = DynamoCaseRepository(dynamodb, settings.cases_table, retention, now)
    cache_ = DynamoEnrichmentCache(dynamodb, settings.enrichments_table, settings.cache_ttls, retention, now)
    limiter = (
        DynamoQuotaLimiter(
            dynamodb, settings.quota_table, settings.vt_quota_per_minute, settings.vt_quota_per_day, now
        )
        if settings.quota_table is not None
        else None
    )
    sqs = _OnFirstUse(settings, "sqs")
    deferral = (
        SqsMessageDeferral(sqs, settings.alert_queue_url) if settings.alert_queue_url is not None else None
    )
    executions = StepFunctionsExecutionStarter(_client(settings, "stepfunctions"), settings.state_machine_arn)
    dead_letters = SqsDeadLetterQueue(sqs, settings.dead_letter_queue_url)
    secrets = _secrets_provider(settings)
    session = requests.Session()
    # One connection per concurrent lookup, kept alive across batches of a warm container.
    adapter = requests.adapters.HTTPAdapter(
        pool_connections=1, pool_maxsize=max(settings.vt_max_concurrency, 10)
    )
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    policy = verdict_policy(settings)
    # Read and validated once, when the container starts: a bad file stops the function right away.
    playbooks = load_playbooks(settings.playbooks_path)
    repeats = DynamoRepeatLedger(dynamodb, settings.cases_table, now)

    def api_key() -> str:
        if settings.vt_api_key is not None:
            return settings.vt_api_key.get_secret_value()
        assert settings.vt_api_key_secret is not None  # the settings validator guarantees one of the two
        # Cached for a few minutes, so a rotated key is picked up without a redeploy.
        return str(secrets().get(settings.vt_api_key_secret, max_age=_SECRET_MAX_AGE_SECONDS))

    def new_enricher() -> Enricher:
        intel = VirusTotalClient(
            session,
            api_key(),
            base_url=settings.vt_base_url,
            timeout=(3.05, settings.vt_timeout_seconds),
            deep_context=settings.vt_deep_context,
        )
        return Enricher(
            intel=intel,
            cache=cache_,
            cases=cases,
            executions=executions,
            dead_letters=dead_letters,
            policy=policy,
            now=now,
            limiter=limiter,
            deferral=deferral,
            max_concurrency=settings.vt_max_concurrency,
            requeue_after_receives=settings.deferral_requeue_after_receives,
            request_counter=lambda: intel.requests_sent,
            intake=settings.intake,
            playbooks=playbooks,
            ip_block_method=settings.ip_block_method,
            ticket_min_severity=settings.ticket_min_severity,
            repeats=repeats,
            repeat_window=settings.repeat_window,
        )

    return new_enricher


@dataclass(frozen=True)
class RemediationDependencies:
    """What the remediate function acts through."""

    cases: DynamoCaseRepository
    actuators: Actuators
    blast_radius: DynamoBlastRadius | None


def actuators(settings: RemediateSettings) -> Actuators:
    """One actuator per action type whose settings are configured: the EC2 and IAM ones need none, the
    WAF, NACL and S3 ones their resource. An action of a type left out fails, for a person. The DNS
    Firewall one is always there and skips its actions when no domain list is configured."""
    ec2 = _client(settings, "ec2")
    protected = settings.protected_tag_key
    found: dict[ActionType, ResponseActuator] = {
        ActionType.ISOLATE_INSTANCE: Ec2InstanceIsolation(ec2, settings.quarantine_group_name, protected),
        ActionType.SNAPSHOT_VOLUMES: Ec2VolumeSnapshots(ec2, protected),
        ActionType.TAG_INSTANCE: Ec2InstanceTagging(ec2, protected),
        ActionType.DISABLE_ACCESS_KEY: IamAccessKeyDisabler(_client(settings, "iam"), protected),
    }
    if settings.waf_ip_set_name is not None and settings.waf_ip_set_id is not None:
        # A CLOUDFRONT IP set lives in us-east-1 whatever the function's region.
        waf_region = "us-east-1" if settings.waf_ip_set_scope == "CLOUDFRONT" else settings.region
        waf = boto3.session.Session(region_name=waf_region).client(
            "wafv2", config=_AWS_CONFIG, endpoint_url=settings.aws_endpoint_url
        )
        found[ActionType.BLOCK_IP_WAF] = WafIpSetBlocker(
            waf, settings.waf_ip_set_name, settings.waf_ip_set_id, settings.waf_ip_set_scope
        )
    if settings.nacl_rule_min is not None and settings.nacl_rule_max is not None:
        found[ActionType.BLOCK_IP_NACL] = NaclIpBlocker(ec2, settings.nacl_rule_min, settings.nacl_rule_max)
    if settings.quarantine_bucket is not None:
        found[ActionType.QUARANTINE_OBJECT] = S3ObjectQuarantine(
            _client(settings, "s3"), settings.quarantine_bucket, protected
        )
    # Without a domain list this actuator calls nothing and skips, saying so: "where the account has one,
    # otherwise a ticket" needs no failure, which would mark the case FAILED.
    found[ActionType.BLOCK_DOMAIN_DNS_FIREWALL] = DnsFirewallDomainBlocker(
        _client(settings, "route53resolver"), settings.dns_firewall_domain_list_id
    )
    return found


@cache
def remediation_dependencies(settings: RemediateSettings) -> RemediationDependencies:
    """The remediate function's adapters, built once per container."""
    return RemediationDependencies(
        cases=_cases(settings),
        actuators=actuators(settings),
        blast_radius=(
            DynamoBlastRadius(
                _client(settings, "dynamodb"),
                settings.guardrails_table,
                settings.max_actions_per_hour,
                utc_now,
            )
            if settings.guardrails_table is not None
            else None
        ),
    )


@dataclass(frozen=True)
class ApprovalDependencies:
    """What the approval function acts through."""

    cases: DynamoCaseRepository
    store: DynamoApprovalStore
    callback: StepFunctionsTaskCallback
    notifier: SnsApprovalNotifier
    signing_key: Callable[[], bytes]


@cache
def approval_dependencies(settings: ApprovalSettings) -> ApprovalDependencies:
    """The approval function's adapters, built once per container."""
    secrets = SecretsProvider(boto3_client=_client(settings, "secretsmanager"))

    def signing_key() -> bytes:
        # Cached for a few minutes, so a rotated key is picked up without a redeploy.
        return str(secrets.get(settings.signing_key_secret, max_age=_SECRET_MAX_AGE_SECONDS)).encode()

    return ApprovalDependencies(
        cases=_cases(settings),
        store=DynamoApprovalStore(_client(settings, "dynamodb"), settings.guardrails_table),
        callback=StepFunctionsTaskCallback(_client(settings, "stepfunctions")),
        notifier=SnsApprovalNotifier(_client(settings, "sns"), settings.notification_topic_arn),
        signing_key=signing_key,
    )


@dataclass(frozen=True)
class TicketDependencies:
    """What the ticket function acts through."""

    cases: DynamoCaseRepository
    sink: TicketSink


@cache
def ticket_dependencies(settings: TicketSettings) -> TicketDependencies:
    """The ticket function's adapters, built once per container."""
    return TicketDependencies(cases=_cases(settings), sink=ticket_sink(settings))


def ticket_sink(settings: TicketSettings) -> TicketSink:
    """The configured ticket provider; the vendors' credentials come from the ticket secret."""
    if settings.ticket_provider == "sns":
        return SnsTicketSink(_client(settings, "sns"), settings.ticket_topic_arn, utc_now)
    assert settings.ticket_secret_name is not None  # the settings validator requires it for vendors
    secret = _secrets_provider(settings)().get(
        settings.ticket_secret_name, transform="json", max_age=_SECRET_MAX_AGE_SECONDS
    )
    if not isinstance(secret, dict):
        raise ConfigurationError(f"the secret {settings.ticket_secret_name} must hold a JSON object")
    fields = {str(key): str(value) for key, value in secret.items()}
    session = requests.Session()
    try:
        if settings.ticket_provider == "jira":
            assert settings.jira_base_url is not None
            assert settings.jira_project_key is not None
            return JiraTicketSink(
                session,
                settings.jira_base_url,
                BasicCredentials(fields["email"], fields["api_token"]),
                settings.jira_project_key,
                settings.jira_issue_type,
                now=utc_now,
            )
        if settings.ticket_provider == "servicenow":
            assert settings.servicenow_base_url is not None
            credentials: BasicCredentials | BearerToken = (
                BearerToken(fields["access_token"])
                if "access_token" in fields
                else BasicCredentials(fields["username"], fields["password"])
            )
            return ServiceNowTicketSink(session, settings.servicenow_base_url, credentials, now=utc_now)
        return WebhookTicketSink(
            session, fields["url"], now=utc_now, signing_secret=fields.get("signing_secret")
        )
    except KeyError as missing:
        raise ConfigurationError(
            f"the secret {settings.ticket_secret_name} lacks the key {missing} "
            f"that {settings.ticket_provider} needs"
        ) from None


@cache
def intake_queue(settings: IntakeSettings) -> SqsAlertQueue:
    """The intake function's alert queue, built once per container."""
    return SqsAlertQueue(_client(settings, "sqs"), settings.alert_queue_url)
