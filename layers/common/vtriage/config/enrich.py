"""Settings of the enrich function."""

from datetime import timedelta
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, field_validator, model_validator

from vtriage.config.alerts import AlertReadingSettings
from vtriage.config.place import PlaceSettings
from vtriage.config.virustotal import VirusTotalKeySettings
from vtriage.models import Channel, Verdict


class EnrichSettings(AlertReadingSettings, VirusTotalKeySettings, PlaceSettings):
    """Settings of the enrich function."""

    enrichments_table: str = Field(alias="ENRICHMENTS_TABLE_NAME", min_length=1)
    state_machine_arn: str = Field(alias="STATE_MACHINE_ARN", pattern=r"^arn:aws[\w-]*:states:")
    dead_letter_queue_url: str = Field(alias="DEAD_LETTER_QUEUE_URL", min_length=1)
    vt_timeout_seconds: float = Field(default=10.0, alias="VT_TIMEOUT_SECONDS", gt=0, le=60)
    # The verdict policy (thresholds per IOC type, trusted engines, ...): the shipped file unless a path
    # is given. The two thresholds below, when set, override it for every IOC type.
    verdict_policy_path: Path | None = Field(default=None, alias="VERDICT_POLICY_PATH")
    malicious_min_engines: int | None = Field(default=None, alias="VERDICT_MALICIOUS_MIN_ENGINES", ge=1)
    suspicious_min_engines: int | None = Field(default=None, alias="VERDICT_SUSPICIOUS_MIN_ENGINES", ge=1)
    # Context that costs extra VirusTotal requests per IOC (detected URLs, communicating files).
    vt_deep_context: bool = Field(default=False, alias="VT_DEEP_CONTEXT")
    # How long an enrichment answers from the cache, by verdict: a malicious verdict rarely reverses in
    # a day, while an unknown IOC may be analysed by VirusTotal within the hour.
    cache_ttl_malicious_hours: float = Field(default=24.0, alias="CACHE_TTL_MALICIOUS_HOURS", ge=0)
    cache_ttl_suspicious_hours: float = Field(default=12.0, alias="CACHE_TTL_SUSPICIOUS_HOURS", ge=0)
    cache_ttl_harmless_hours: float = Field(default=6.0, alias="CACHE_TTL_HARMLESS_HOURS", ge=0)
    cache_ttl_unknown_hours: float = Field(default=1.0, alias="CACHE_TTL_UNKNOWN_HOURS", ge=0)
    # The quota shared by every worker; the defaults are the public API's (a free key). Without a
    # table there is no shared limiter and only VirusTotal's own 429 answers defer records.
    quota_table: str | None = Field(default=None, alias="QUOTA_TABLE_NAME", min_length=1)
    vt_quota_per_minute: int = Field(default=4, alias="VT_QUOTA_PER_MINUTE", ge=1)
    vt_quota_per_day: int = Field(default=500, alias="VT_QUOTA_PER_DAY", ge=1)
    vt_max_concurrency: int = Field(default=4, alias="VT_MAX_CONCURRENCY", ge=1, le=64)
    # The queues the function reads, by the ARN AWS sets on each record: it says the record's channel
    # (the detector rules' queue, the intake's own queue; any other is "queue"). Deferred records are
    # hidden on, or re-sent to, the queue they came from (its URL; without one, they are only retried).
    alert_queue_arn: str = Field(alias="ALERT_QUEUE_ARN", pattern=r"^arn:aws[\w-]*:sqs:")
    pushed_alert_queue_arn: str = Field(alias="PUSHED_ALERT_QUEUE_ARN", pattern=r"^arn:aws[\w-]*:sqs:")
    alert_queue_url: str | None = Field(default=None, alias="ALERT_QUEUE_URL", min_length=1)
    pushed_alert_queue_url: str | None = Field(default=None, alias="PUSHED_ALERT_QUEUE_URL", min_length=1)
    # What becomes of alerts pushed through the intake: a ticket, no action ("ticket"), or actions that
    # each wait for a person ("approval"). Only the detector rules' findings are acted on automatically.
    pushed_alert_actions: Literal["ticket", "approval"] = Field(
        default="approval", alias="PUSHED_ALERT_ACTIONS"
    )
    # A record deferred when received this many times is queued afresh instead of hidden, so that
    # deferrals never use up the queue's maxReceiveCount (5) and park a record in the dead-letter queue.
    deferral_requeue_after_receives: int = Field(default=3, alias="DEFERRAL_REQUEUE_AFTER_RECEIVES", ge=1)
    # The alert queues' maxReceiveCount (template.yaml's RedrivePolicy, which the template passes here):
    # on a record's last delivery, an IOC VirusTotal still fails for (5xx, timeout) is triaged without its
    # enrichment, to a person, rather than parked on the dead-letter queue.
    max_receive_count: int = Field(default=5, alias="MAX_RECEIVE_COUNT", ge=1, le=1000)
    # A record deferred more times than this (quota spent, invocation out of time, VirusTotal refusing the
    # key), counted across its re-queued copies, is refused to the dead-letter queue with the reason:
    # a deferral never cycles forever. At one deferral a minute, 500 is over eight hours.
    max_deferrals: int = Field(default=500, alias="MAX_DEFERRALS", ge=1)
    # Playbooks: the shipped file unless a path is given; read and validated when the function starts.
    playbooks_path: Path | None = Field(default=None, alias="PLAYBOOKS_PATH")
    # What a playbook's `block_ip` action becomes. None by default: a WAF IP set or a network ACL entry
    # only protects what sits behind that web ACL or in that VPC, needs resources of the deployment's
    # own, and would fail every case where they are missing; without it the IP goes to a ticket.
    ip_block_method: Literal["waf", "nacl", "none"] = Field(default="none", alias="IP_BLOCK_METHOD")
    # An alert VirusTotal does not incriminate goes to a ticket at or above this detector severity.
    ticket_min_severity: Literal["low", "medium", "high", "critical"] = Field(
        default="medium", alias="TICKET_MIN_SEVERITY"
    )
    # A repeat of a finding (same type, resources and IOCs; another id or version) within this many
    # hours of its case is folded into that case instead of opening another. 0 turns it off.
    repeat_window_hours: float = Field(default=24.0, alias="REPEAT_WINDOW_HOURS", ge=0)
    # The deployment's DryRun, as the remediate function acts under it: a repeat of a case whose actions
    # ran only in dry run is folded into it while it holds, and is a case of its own, which acts, once it
    # is turned off. Dry-run unless explicitly false, as the remediate function.
    dry_run: bool = Field(default=True, alias="DRY_RUN")

    @field_validator("ip_block_method", "ticket_min_severity", "pushed_alert_actions", mode="before")
    @classmethod
    def _lower_case(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    def own_urls(self) -> list[str | None]:
        """The ticket provider's URLs and VirusTotal's (VT_BASE_URL, a gateway's when one stands in)."""
        return [*super().own_urls(), self.vt_base_url]

    @property
    def channels(self) -> dict[str, Channel]:
        """The channel of each queue the function reads, by queue ARN."""
        return {self.alert_queue_arn: "detector", self.pushed_alert_queue_arn: "intake"}

    @property
    def repeat_window(self) -> timedelta:
        """How long after a case its finding's repeats are folded into it."""
        return timedelta(hours=self.repeat_window_hours)

    @property
    def cache_ttls(self) -> dict[Verdict, timedelta]:
        """How long an enrichment stays fresh in the cache, for each verdict."""
        return {
            Verdict.MALICIOUS: timedelta(hours=self.cache_ttl_malicious_hours),
            Verdict.SUSPICIOUS: timedelta(hours=self.cache_ttl_suspicious_hours),
            Verdict.HARMLESS: timedelta(hours=self.cache_ttl_harmless_hours),
            Verdict.UNKNOWN: timedelta(hours=self.cache_ttl_unknown_hours),
        }

    @model_validator(mode="after")
    def _needs_a_key_source(self) -> Self:
        problem = self.key_source_problem()
        if problem:
            raise ValueError(problem)
        thresholds = (self.malicious_min_engines, self.suspicious_min_engines)
        if (thresholds[0] is None) != (thresholds[1] is None):
            raise ValueError(
                "set both VERDICT_MALICIOUS_MIN_ENGINES and VERDICT_SUSPICIOUS_MIN_ENGINES, or neither"
            )
        if self.suspicious_min_engines is not None and self.suspicious_min_engines > (
            self.malicious_min_engines or 0
        ):
            raise ValueError("VERDICT_SUSPICIOUS_MIN_ENGINES must not exceed VERDICT_MALICIOUS_MIN_ENGINES")
        if self.deferral_requeue_after_receives > self.max_receive_count:
            # A deferral hidden on a receive past the queue's last would park its record on the dead-letter
            # queue.
            raise ValueError(
                f"DEFERRAL_REQUEUE_AFTER_RECEIVES ({self.deferral_requeue_after_receives}) must not exceed "
                f"MAX_RECEIVE_COUNT ({self.max_receive_count}), the alert queues' maxReceiveCount"
            )
        return self
