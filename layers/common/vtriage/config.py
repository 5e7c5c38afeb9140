"""One typed settings model per function, read from the environment when the function starts, and the
one loader of configuration (`load_config`), which also reads the playbooks and the verdict policy files.

A missing or bad setting stops the function with a `ConfigurationError` that names the variable.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal, Self, TypeVar
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from vtriage.eligibility import Place, falcon_cid
from vtriage.errors import ConfigurationError
from vtriage.intake import DEFAULT_MAX_FINDINGS, DEFAULT_MAX_IOCS, IntakeOptions
from vtriage.models import Channel, Verdict
from vtriage.virustotal.widget import theme_parameters

ConfigT = TypeVar("ConfigT", bound=BaseModel)


def load_config(
    model: type[ConfigT],
    source: Path | Mapping[str, object],
    *,
    named: str,
    whole: str,
    plural: bool = False,
) -> ConfigT:
    """`source` validated as `model`: a JSON file (a Path), whose document must be an object, or values
    read already (the environment). Raises ConfigurationError starting with `named` (the file and the
    setting that names it, or the settings class): the file cannot be read, is not JSON, or each field at
    fault by its path (`playbooks.0.actions.1.type: ...`; `whole` for the document as a whole). `plural`:
    `named` takes "are" ("playbooks ... are invalid")."""
    if isinstance(source, Path):
        try:
            text = source.read_text(encoding="utf-8")
        except OSError as error:
            raise ConfigurationError(f"{named}: cannot be read ({error.strerror})") from None
        try:
            document = json.loads(text)
        except ValueError as error:
            raise ConfigurationError(f"{named}: not JSON ({error})") from None
        if not isinstance(document, dict):
            raise ConfigurationError(f"{named}: the document must be a JSON object")
    else:
        document = source
    try:
        return model.model_validate(document)
    except ValidationError as error:
        problems = []
        for issue in error.errors():
            name = ".".join(str(part) for part in issue["loc"]) or whole
            if name in TEMPLATE_PARAMETERS:
                name = f"{TEMPLATE_PARAMETERS[name]} ({name})"
            problems.append(f"{name}: {issue['msg']}")
        verb = "are" if plural else "is"
        raise ConfigurationError(f"{named} {verb} invalid: " + "; ".join(problems)) from None


# The template parameters (template.yaml) a person types for an organisation, by the variable each one
# sets: a settings error names the parameter first, then the variable (`MemberAccountIds
# (MEMBER_ACCOUNT_IDS)`), as `vtriage run` names a value CloudFormation's constraint refuses.
TEMPLATE_PARAMETERS = {
    "MEMBER_ACCOUNT_IDS": "MemberAccountIds",
    "ACT_REGIONS": "ActRegions",
    "MEMBER_ROLE_NAME": "MemberRoleName",
    "MEMBER_EXTERNAL_ID": "MemberExternalId",
    "APPROVAL_LINKS_IN_TICKETS": "ApprovalLinksInTickets",
}

DEFAULT_VT_BASE_URL = "https://www.virustotal.com/api/v3"
_MUST_BE_HTTPS = "must be an https:// URL (http only on loopback)"


def https_url_problem(url: str) -> str | None:
    """Why the URL may not carry a credential or an alert, or None when it may: https only, since
    plain http shows the API key, the ticket credentials and the alert to the network path. http is
    accepted on loopback alone (127.0.0.0/8, ::1, localhost), where local runs and tests serve."""
    try:
        parts = urlsplit(url.strip())
        host = (parts.hostname or "").lower()
    except ValueError:
        return f"{_MUST_BE_HTTPS}, not a URL"
    if not host:
        return f"{_MUST_BE_HTTPS} naming a host"
    if parts.scheme == "https" or (parts.scheme == "http" and _is_loopback(host)):
        return None
    return f"{_MUST_BE_HTTPS}, not {parts.scheme or 'scheme-less'}"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _none_if_empty(cls: type, value: object) -> object:
    return None if isinstance(value, str) and not value.strip() else value


def empty_is_unset(*fields: str) -> Any:
    """A validator making these fields unset (None) when given an empty or blank string: the template
    passes every parameter, and CloudFormation cannot leave a variable out without Fn::If, so an
    unconfigured one arrives as "". Its attribute name must differ from a base class's, which it would
    otherwise replace."""
    return field_validator(*fields, mode="before")(_none_if_empty)


class Settings(BaseModel):
    """Base of every function's settings: fields are filled from environment variables by alias."""

    # Built when a function first reads its settings: each function reads one class of settings, and its
    # cold start need not pay for building the validators of the four others.
    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore", defer_build=True)

    region: str = Field(alias="AWS_REGION", min_length=1)
    # boto3 reads AWS_ENDPOINT_URL by itself; it is kept here so clients built for one endpoint
    # are never reused against another.
    aws_endpoint_url: str | None = Field(default=None, alias="AWS_ENDPOINT_URL")
    cases_table: str = Field(alias="CASES_TABLE_NAME", min_length=1)
    retention_days: int = Field(default=90, alias="RETENTION_DAYS", ge=1)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Self:
        """Validate the settings; raise ConfigurationError naming each missing or bad variable."""
        source = dict(os.environ if environ is None else environ)
        if "AWS_REGION" not in source and "AWS_DEFAULT_REGION" in source:
            source["AWS_REGION"] = source["AWS_DEFAULT_REGION"]
        return load_config(cls, source, named=cls.__name__, whole="settings")


class AlertReadingSettings(Settings):
    """How a deployment reads alerts. The enrich function and the intake function share these settings, so
    that the intake judges a pushed body exactly as the enrich function will read it."""

    # Values the team trusts (comma-separated), IOCs kept per alert, and whether GuardDuty findings that
    # also reach the queue through Security Hub are ignored there.
    ioc_allow_list: str = Field(default="", alias="IOC_ALLOW_LIST")
    max_iocs_per_alert: int = Field(default=DEFAULT_MAX_IOCS, alias="MAX_IOCS_PER_ALERT", ge=1, le=500)
    skip_guardduty_in_securityhub: bool = Field(default=False, alias="SKIP_GUARDDUTY_IN_SECURITYHUB")
    # The most alerts one message may make (the findings beyond are refused with the reason), and whether
    # detectors' sample findings are ignored rather than triaged (they are never acted on either way).
    max_findings_per_message: int = Field(
        default=DEFAULT_MAX_FINDINGS, alias="MAX_FINDINGS_PER_MESSAGE", ge=1, le=10_000
    )
    ignore_sample_findings: bool = Field(default=False, alias="IGNORE_SAMPLE_FINDINGS")
    # The ticket provider's hosts, never looked up nor acted on when a finding names them.
    jira_base_url: str | None = Field(default=None, alias="JIRA_BASE_URL")
    servicenow_base_url: str | None = Field(default=None, alias="SERVICENOW_BASE_URL")
    swimlane_base_url: str | None = Field(default=None, alias="SWIMLANE_BASE_URL")

    _empty_url_is_unset = empty_is_unset("jira_base_url", "servicenow_base_url", "swimlane_base_url")

    @property
    def intake(self) -> IntakeOptions:
        """How alerts are read."""
        allowed = frozenset(value.strip() for value in self.ioc_allow_list.split(",") if value.strip())
        return IntakeOptions(
            allow_list=allowed,
            max_iocs=self.max_iocs_per_alert,
            skip_guardduty_in_securityhub=self.skip_guardduty_in_securityhub,
            ignore_samples=self.ignore_sample_findings,
            max_findings=self.max_findings_per_message,
            never_act_hosts=frozenset(host for url in self.own_urls() if (host := _host(url))),
        )

    def own_urls(self) -> list[str | None]:
        """The URLs of services this deployment uses, whose hosts no finding may make a lookup or target."""
        return [self.jira_base_url, self.servicenow_base_url, self.swimlane_base_url]


def _https_only(url: str) -> str:
    problem = https_url_problem(url)
    if problem:
        raise ValueError(f"{problem}: {url.strip()[:200]!r}")
    return url.strip()


def _host(url: str | None) -> str | None:
    """The host of a URL, lower case; None when there is none."""
    if not url:
        return None
    try:
        host = urlsplit(url.strip()).hostname
    except ValueError:
        return None
    return host.lower() if host else None


# What a member account id, a Region name and an IAM role name may look like: checked at start-up, so
# that a typo stops the function instead of leaving an account or Region silently unacted on.
_ACCOUNT_ID = re.compile(r"\d{12}")
_REGION_NAME = re.compile(r"[a-z]{2}(-[a-z]+)+-\d")
_ROLE_NAME = r"^[A-Za-z0-9+=,.@_-]{1,64}$"


def _listed(value: object, pattern: re.Pattern[str], one: str, many: str) -> object:
    """A comma-separated variable as a tuple of its values (each stripped, each once, in order); every
    value must match `pattern`, else the error names the values that do not: "'12345' is not `one`",
    "'1', '2' are not `many`"."""
    if not isinstance(value, str):
        return value
    values = tuple(dict.fromkeys(part.strip() for part in value.split(",") if part.strip()))
    bad = [repr(part[:40]) for part in values if not pattern.fullmatch(part)]
    # The values go in as context, never into the template, whose braces would be read as placeholders.
    if len(bad) == 1:
        raise PydanticCustomError("listed", "{bad} is not {what}", {"bad": bad[0], "what": one})
    if bad:
        raise PydanticCustomError("listed", "{bad} are not {what}", {"bad": ", ".join(bad[:5]), "what": many})
    return values


def _as_account_ids(value: object) -> object:
    return _listed(value, _ACCOUNT_ID, "a 12-digit account id", "12-digit account ids")


def _as_region_names(value: object) -> object:
    return _listed(
        value, _REGION_NAME, "a Region name (such as eu-west-1)", "Region names (such as eu-west-1)"
    )


def _place(
    own_account_id: str,
    member_account_ids: tuple[str, ...],
    act_regions: tuple[str, ...],
    own_falcon_cid: str | None,
) -> Place:
    return Place(
        own_account=own_account_id,
        members=frozenset(member_account_ids) - {own_account_id},
        regions=frozenset(act_regions),
        falcon_cid=own_falcon_cid,
    )


class FalconTenantSettings(Settings):
    """The deployment's own CrowdStrike Falcon tenant (FALCON_CID): the only one whose hosts it contains
    (`contain_host`); unset, it contains no host. The console's form (capitals, with the two-digit
    checksum: `0123...CDEF-1A`) and the API's (32 lower-case hexadecimal digits) are both taken."""

    falcon_cid: str | None = Field(default=None, alias="FALCON_CID")

    @field_validator("falcon_cid", mode="before")
    @classmethod
    def _falcon_cid_form(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        if not value.strip():
            return None
        cid = falcon_cid(value)
        if cid is None:
            raise ValueError("a Falcon customer id is 32 hexadecimal digits (the console's may end in -XX)")
        return cid


# CrowdStrike's clouds, each with its API's base URL (vtriage.adapters.falcon.FALCON_CLOUDS).
FalconCloud = Literal["us-1", "us-2", "eu-1", "us-gov-1"]


class FalconApiSettings(Settings):
    """Where CrowdStrike Falcon's API is: the Falcon cloud the API client lives in (FALCON_CLOUD), or a URL
    instead (FALCON_BASE_URL: a proxy, or a loopback server in tests; https only). Shared by the Falcon
    poller and the remediate function (host containment), each with the API client's secret."""

    falcon_cloud: FalconCloud = Field(default="us-1", alias="FALCON_CLOUD")
    falcon_base_url: str | None = Field(default=None, alias="FALCON_BASE_URL")

    @field_validator("falcon_cloud", mode="before")
    @classmethod
    def _falcon_cloud_name(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    _empty_falcon_url_is_unset = empty_is_unset("falcon_base_url")

    @field_validator("falcon_base_url")
    @classmethod
    def _falcon_over_https(cls, value: str | None) -> str | None:
        return None if value is None else _https_only(value)


class VirusTotalKeySettings(Settings):
    """How a function reaches VirusTotal: the API key, from Secrets Manager (VT_API_KEY_SECRET_NAME) or
    given for local runs (VT_API_KEY), and the API's root (VT_BASE_URL: a gateway's, or the replay
    server's). Shared by the enrich function and, with VT Augment, the approval function."""

    vt_api_key_secret: str | None = Field(default=None, alias="VT_API_KEY_SECRET_NAME")
    vt_api_key: SecretStr | None = Field(default=None, alias="VT_API_KEY")
    vt_base_url: str = Field(default=DEFAULT_VT_BASE_URL, alias="VT_BASE_URL")

    @field_validator("vt_base_url")
    @classmethod
    def _vt_over_https(cls, value: str) -> str:
        return _https_only(value)

    _empty_secret_name_is_unset = empty_is_unset("vt_api_key_secret")

    @field_validator("vt_api_key", mode="before")
    @classmethod
    def _key_without_whitespace(cls, value: object) -> object:
        # A key pasted with its line end would make VirusTotal answer 401 to every lookup.
        if isinstance(value, str):
            return value.strip() or None
        return value

    def key_source_problem(self) -> str | None:
        """What is missing for the key to be read, or None."""
        if not self.vt_api_key and not self.vt_api_key_secret:
            return "set VT_API_KEY_SECRET_NAME (Secrets Manager) or VT_API_KEY (local runs)"
        return None


class EnrichSettings(AlertReadingSettings, VirusTotalKeySettings, FalconTenantSettings):
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
    # Where actions may be planned: the deployment's own account (`!Ref AWS::AccountId`) and its member
    # accounts (MemberAccountIds), in the Regions ActRegions lists (every Region when empty). A finding
    # of any other account or Region is given no action; it is ticketed with the reason.
    own_account_id: str = Field(alias="OWN_ACCOUNT_ID", pattern=r"^\d{12}$")
    member_account_ids: tuple[str, ...] = Field(default=(), alias="MEMBER_ACCOUNT_IDS")
    act_regions: tuple[str, ...] = Field(default=(), alias="ACT_REGIONS")
    # What becomes of alerts pushed through the intake: a ticket, no action ("ticket"), or actions that
    # each wait for a person ("approval"). Only the detector rules' findings are acted on automatically.
    pushed_alert_actions: Literal["ticket", "approval"] = Field(
        default="approval", alias="PUSHED_ALERT_ACTIONS"
    )
    # A record deferred when received this many times is queued afresh instead of hidden, so that
    # deferrals never use up the queue's maxReceiveCount (5) and park a record in the dead-letter queue.
    deferral_requeue_after_receives: int = Field(default=3, alias="DEFERRAL_REQUEUE_AFTER_RECEIVES", ge=1)
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

    @field_validator("ip_block_method", "ticket_min_severity", "pushed_alert_actions", mode="before")
    @classmethod
    def _lower_case(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("member_account_ids", mode="before")
    @classmethod
    def _account_ids(cls, value: object) -> object:
        return _as_account_ids(value)

    @field_validator("act_regions", mode="before")
    @classmethod
    def _region_names(cls, value: object) -> object:
        return _as_region_names(value)

    def own_urls(self) -> list[str | None]:
        """The ticket provider's URLs and VirusTotal's (VT_BASE_URL, a gateway's when one stands in)."""
        return [*super().own_urls(), self.vt_base_url]

    @property
    def place(self) -> Place:
        """Where this deployment acts: its own account and its members, in the Regions allowed; its own
        Falcon tenant's hosts."""
        return _place(self.own_account_id, self.member_account_ids, self.act_regions, self.falcon_cid)

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
        return self


class RemediateSettings(FalconApiSettings, FalconTenantSettings):
    """Settings of the remediate function. Dry-run unless DRY_RUN is explicitly false."""

    dry_run: bool = Field(default=True, alias="DRY_RUN")
    # Where actions run: the deployment's own account (the template passes AWS::AccountId), with the
    # function's credentials, and each member account through its role MEMBER_ROLE_NAME (the session
    # named after the case, MEMBER_EXTERNAL_ID as sts:ExternalId), in the finding's Region when
    # ACT_REGIONS lists it (every Region when empty). An action on a finding of any other account or
    # Region is skipped.
    own_account_id: str = Field(alias="OWN_ACCOUNT_ID", pattern=r"^\d{12}$")
    member_account_ids: tuple[str, ...] = Field(default=(), alias="MEMBER_ACCOUNT_IDS")
    member_role_name: str = Field(default="vtriage-member", alias="MEMBER_ROLE_NAME", pattern=_ROLE_NAME)
    # Not a secret: what the member role requires as sts:ExternalId (member-role.yaml's ExternalId).
    member_external_id: str | None = Field(
        default=None,
        alias="MEMBER_EXTERNAL_ID",
        min_length=2,
        max_length=1224,
        pattern=r"^[A-Za-z0-9+=,.@:/_-]+$",
    )
    act_regions: tuple[str, ...] = Field(default=(), alias="ACT_REGIONS")
    protected_tag_key: str = Field(default="vtriage:protected", alias="PROTECTED_TAG_KEY", min_length=1)
    quarantine_group_name: str = Field(
        default="vtriage-quarantine", alias="QUARANTINE_GROUP_NAME", min_length=1
    )
    max_actions_per_case: int = Field(default=5, alias="MAX_ACTIONS_PER_CASE", ge=0)
    # The blast-radius cap: actions that change something (not dry runs), across every case, per clock
    # hour. Beyond it an action waits for a person. Counted in GUARDRAILS_TABLE_NAME; without a table
    # there is no cap.
    max_actions_per_hour: int = Field(default=10, alias="MAX_ACTIONS_PER_HOUR", ge=0)
    guardrails_table: str | None = Field(default=None, alias="GUARDRAILS_TABLE_NAME")
    # How long an approval link is valid and the state machine waits for it (TimeoutSecondsPath).
    approval_timeout_seconds: int = Field(default=86_400, alias="APPROVAL_TIMEOUT_SECONDS", ge=1)
    # Each actuator is configured only when its settings are: an empty value means "not configured".
    waf_ip_set_name: str | None = Field(default=None, alias="WAF_IP_SET_NAME")
    waf_ip_set_id: str | None = Field(default=None, alias="WAF_IP_SET_ID")
    waf_ip_set_scope: Literal["REGIONAL", "CLOUDFRONT"] = Field(default="REGIONAL", alias="WAF_IP_SET_SCOPE")
    nacl_rule_min: int | None = Field(default=None, alias="NACL_RULE_MIN", ge=1, le=32766)
    nacl_rule_max: int | None = Field(default=None, alias="NACL_RULE_MAX", ge=1, le=32766)
    quarantine_bucket: str | None = Field(default=None, alias="QUARANTINE_BUCKET")
    dns_firewall_domain_list_id: str | None = Field(default=None, alias="DNS_FIREWALL_DOMAIN_LIST_ID")
    # The stack's deny-all policy, attached to a user whose access key is disabled; unset, the key is
    # disabled and the user's other credentials are left as they are (the action says so).
    user_containment_policy_arn: str | None = Field(
        default=None, alias="USER_CONTAINMENT_POLICY_ARN", pattern=r"^arn:aws[\w-]*:iam::\d{12}:policy/"
    )
    # Host containment (contain_host) in the deployment's own Falcon tenant (FALCON_CID) with the API
    # client whose credentials the secret holds (a JSON object {"client_id", "client_secret"}; its scope
    # Hosts: Read and Write); unset, contain_host actions are skipped with the reason. A host carrying the
    # protected grouping tag is never contained.
    falcon_api_secret: str | None = Field(default=None, alias="FALCON_API_SECRET_NAME")
    falcon_protected_tag: str = Field(
        default="FalconGroupingTags/vtriage-protected",
        alias="FALCON_PROTECTED_GROUPING_TAG",
        pattern=r"^[A-Za-z0-9_/-]+$",
    )

    @field_validator("falcon_protected_tag", mode="before")
    @classmethod
    def _grouping_tag(cls, value: object) -> object:
        # Falcon lists a grouping tag "vtriage-protected" as "FalconGroupingTags/vtriage-protected".
        if isinstance(value, str) and value.strip() and "/" not in value:
            return f"FalconGroupingTags/{value.strip()}"
        return value.strip() if isinstance(value, str) else value

    _empty_is_unset = empty_is_unset(
        "guardrails_table",
        "falcon_api_secret",
        "waf_ip_set_name",
        "waf_ip_set_id",
        "nacl_rule_min",
        "nacl_rule_max",
        "quarantine_bucket",
        "dns_firewall_domain_list_id",
        "user_containment_policy_arn",
        "member_external_id",
    )

    @field_validator("member_account_ids", mode="before")
    @classmethod
    def _account_ids(cls, value: object) -> object:
        return _as_account_ids(value)

    @field_validator("act_regions", mode="before")
    @classmethod
    def _region_names(cls, value: object) -> object:
        return _as_region_names(value)

    @model_validator(mode="after")
    def _actuator_settings_come_in_pairs(self) -> Self:
        if (self.waf_ip_set_name is None) != (self.waf_ip_set_id is None):
            raise ValueError("set both WAF_IP_SET_NAME and WAF_IP_SET_ID, or neither")
        if (self.nacl_rule_min is None) != (self.nacl_rule_max is None):
            raise ValueError("set both NACL_RULE_MIN and NACL_RULE_MAX, or neither")
        if (
            self.nacl_rule_min is not None
            and self.nacl_rule_max is not None
            and (self.nacl_rule_min > self.nacl_rule_max)
        ):
            raise ValueError("NACL_RULE_MIN must not exceed NACL_RULE_MAX")
        return self

    @property
    def place(self) -> Place:
        """Where this deployment acts: its own account and its members, in the Regions allowed; its own
        Falcon tenant's hosts."""
        return _place(self.own_account_id, self.member_account_ids, self.act_regions, self.falcon_cid)

    @property
    def external_id(self) -> str:
        """What each member role requires as sts:ExternalId: MEMBER_EXTERNAL_ID, or by default
        `vtriage-<own account id>` (member-role.yaml's default for the same deployment account)."""
        return self.member_external_id or f"vtriage-{self.own_account_id}"


class ApprovalSettings(VirusTotalKeySettings):
    """Settings of the approval function: it sends approval links and takes the decisions made on them."""

    guardrails_table: str = Field(alias="GUARDRAILS_TABLE_NAME", min_length=1)
    # The Secrets Manager secret holding the key that signs approval links (HMAC-SHA256).
    signing_key_secret: str = Field(alias="APPROVAL_SIGNING_KEY_SECRET", min_length=1)
    # Where approval requests (with their links) are published: the approvals topic, which only this
    # function may publish to.
    notification_topic_arn: str = Field(alias="APPROVAL_TOPIC_ARN", pattern=r"^arn:aws[\w-]*:sns:")
    # The Secrets Manager secret holding the key that checks case page links (the ticket function signs
    # them); unset, case page links are refused.
    case_page_key_secret: str | None = Field(default=None, alias="CASE_PAGE_KEY_SECRET")
    # VT Augment: the VirusTotal key's licence includes it, so the case's pages show each IOC's widget,
    # minted with the key when a page is opened. Off (the default), the key is never read and the pages
    # link to VirusTotal's own. Optional widget colours: "fg1=#1a1a1a,bg1=#ffffff" (fg1, bg1, bg2, bd1).
    vt_augment: bool = Field(default=False, alias="VT_AUGMENT")
    # ApprovalLinksInTickets: true, the ticket function asks for approvals and the links are answered to it,
    # for the ticket. False (the default), the state machine's waiting step asks, and is answered no link:
    # a waiting step's answer may be kept in the execution's history, which its readers would decide with.
    approval_links_in_tickets: bool = Field(default=False, alias="APPROVAL_LINKS_IN_TICKETS")
    # Pairs, not a dict: settings are hashable (each composition root is cached by its settings).
    vt_augment_theme: tuple[tuple[str, str], ...] = Field(default=(), alias="VT_AUGMENT_THEME")

    _empty_case_page_key_is_unset = empty_is_unset("case_page_key_secret")

    @field_validator("vt_augment_theme", mode="before")
    @classmethod
    def _theme_colours(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        pairs = [part.partition("=") for part in value.split(",") if part.strip()]
        if any(not sep for _, sep, _ in pairs):
            raise ValueError("give the colours as name=#rrggbb, comma-separated (fg1, bg1, bg2, bd1)")
        return tuple(theme_parameters({name.strip(): colour.strip() for name, _, colour in pairs}).items())

    @model_validator(mode="after")
    def _augment_needs_a_key(self) -> Self:
        problem = self.key_source_problem()
        if self.vt_augment and problem:
            raise ValueError(f"VT_AUGMENT=true needs the VirusTotal key: {problem}")
        return self


class SwimlaneFields(BaseModel):
    """Which field of the Swimlane application holds each value vtriage writes, by the field's id, key or
    name (SWIMLANE_FIELDS, a JSON object of these keys, each replacing its default; null leaves an
    optional value out). The defaults name the fields a team adds to its application for vtriage."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Searched before a record is created, so that a retried ticket step finds the case's record.
    case_id: str = Field(default="vtriage Case ID", min_length=1)
    title: str | None = Field(default="Title", min_length=1)
    severity: str | None = Field(default="Severity", min_length=1)
    verdict: str | None = Field(default="Verdict", min_length=1)
    report: str | None = Field(default="Description", min_length=1)
    # Where repeats, approvals and escalations are commented.
    comments: str = Field(default="Comments", min_length=1)


class CasePageLinkSettings(Settings):
    """Where a ticket's case page link points (APPROVAL_URL, the approval function's URL) and the key
    that signs it (CASE_PAGE_KEY_SECRET), both or neither; the link works for CASE_PAGE_LINK_DAYS."""

    approval_url: str | None = Field(default=None, alias="APPROVAL_URL")
    case_page_key_secret: str | None = Field(default=None, alias="CASE_PAGE_KEY_SECRET")
    case_page_link_days: int = Field(default=30, alias="CASE_PAGE_LINK_DAYS", ge=1, le=365)

    _empty_link_setting_is_unset = empty_is_unset("approval_url", "case_page_key_secret")

    @field_validator("approval_url")
    @classmethod
    def _approval_url_over_https(cls, value: str | None) -> str | None:
        # The link carries a token that shows the case to whoever holds it.
        return None if value is None else _https_only(value)

    @model_validator(mode="after")
    def _both_or_neither(self) -> Self:
        if (self.approval_url is None) != (self.case_page_key_secret is None):
            raise ValueError("set both APPROVAL_URL and CASE_PAGE_KEY_SECRET, or neither")
        return self

    @property
    def case_page_link_valid_for(self) -> timedelta:
        """How long a ticket's case page link works."""
        return timedelta(days=self.case_page_link_days)


class TicketSettings(CasePageLinkSettings):
    """Settings of the ticket function: SNS by default; Jira Cloud, ServiceNow, Swimlane or a webhook
    with their credentials in a Secrets Manager secret (a JSON object: see the README)."""

    ticket_topic_arn: str = Field(alias="TICKET_TOPIC_ARN", pattern=r"^arn:aws[\w-]*:sns:")
    ticket_provider: Literal["sns", "jira", "servicenow", "swimlane", "webhook"] = Field(
        default="sns", alias="TICKET_PROVIDER"
    )
    ticket_secret_name: str | None = Field(default=None, alias="TICKET_SECRET_NAME", min_length=1)
    jira_base_url: str | None = Field(default=None, alias="JIRA_BASE_URL")
    jira_project_key: str | None = Field(default=None, alias="JIRA_PROJECT_KEY", min_length=1)
    jira_issue_type: str = Field(default="Task", alias="JIRA_ISSUE_TYPE", min_length=1)
    servicenow_base_url: str | None = Field(default=None, alias="SERVICENOW_BASE_URL")
    swimlane_base_url: str | None = Field(default=None, alias="SWIMLANE_BASE_URL")
    # A Swimlane id goes into the API's paths: letters, digits, _ and - only.
    swimlane_application_id: str | None = Field(
        default=None, alias="SWIMLANE_APPLICATION_ID", pattern=r"^[A-Za-z0-9_-]{1,64}$"
    )
    swimlane_fields: SwimlaneFields = Field(default_factory=SwimlaneFields, alias="SWIMLANE_FIELDS")
    # Where each ticket reads what VirusTotal said of the case's IOCs (engines, context); unset, tickets
    # show what the case keeps and say the context was not read.
    enrichments_table: str | None = Field(default=None, alias="ENRICHMENTS_TABLE_NAME")
    # ApprovalLinksInTickets: true, the state machine's waiting step invokes the ticket function, which asks
    # the approval function (APPROVAL_FUNCTION_NAME) to hold the action and puts its approve and reject
    # links on the ticket, where whoever reads the ticket can decide. False (the default), the waiting
    # step invokes the approval function itself, the ticket function never asks it for a link, and a
    # ticket says who decides instead.
    approval_links_in_tickets: bool = Field(default=False, alias="APPROVAL_LINKS_IN_TICKETS")
    approval_function_name: str | None = Field(default=None, alias="APPROVAL_FUNCTION_NAME")

    _empty_is_unset = empty_is_unset(
        "enrichments_table",
        "approval_function_name",
        "ticket_secret_name",
        "jira_base_url",
        "jira_project_key",
        "servicenow_base_url",
        "swimlane_base_url",
        "swimlane_application_id",
    )

    @field_validator("jira_base_url", "servicenow_base_url", "swimlane_base_url")
    @classmethod
    def _providers_over_https(cls, value: str | None) -> str | None:
        return None if value is None else _https_only(value)

    @field_validator("swimlane_fields", mode="before")
    @classmethod
    def _swimlane_fields_from_json(cls, value: object) -> object:
        # The variable holds a JSON object; empty, the defaults stand.
        if not isinstance(value, str):
            return value
        if not value.strip():
            return {}
        try:
            document = json.loads(value)
        except ValueError as error:
            raise ValueError(f"not JSON ({error})") from None
        if isinstance(document, dict):
            return document
        # A ValueError, which pydantic reports as this field's error (a TypeError it would not catch).
        raise ValueError("must be a JSON object of the values vtriage writes and their fields")

    @model_validator(mode="after")
    def _provider_is_complete(self) -> Self:
        needed = {
            "sns": {},
            "jira": {
                "JIRA_BASE_URL": self.jira_base_url,
                "JIRA_PROJECT_KEY": self.jira_project_key,
                "TICKET_SECRET_NAME": self.ticket_secret_name,
            },
            "servicenow": {
                "SERVICENOW_BASE_URL": self.servicenow_base_url,
                "TICKET_SECRET_NAME": self.ticket_secret_name,
            },
            "swimlane": {
                "SWIMLANE_BASE_URL": self.swimlane_base_url,
                "SWIMLANE_APPLICATION_ID": self.swimlane_application_id,
                "TICKET_SECRET_NAME": self.ticket_secret_name,
            },
            "webhook": {"TICKET_SECRET_NAME": self.ticket_secret_name},
        }[self.ticket_provider]
        missing = [name for name, value in needed.items() if not value]
        if missing:
            raise ValueError(f"TICKET_PROVIDER={self.ticket_provider} needs {', '.join(missing)}")
        return self

    @model_validator(mode="after")
    def _links_need_the_approval_function(self) -> Self:
        if self.approval_links_in_tickets and not self.approval_function_name:
            raise ValueError(
                "ApprovalLinksInTickets (APPROVAL_LINKS_IN_TICKETS) true needs APPROVAL_FUNCTION_NAME, the "
                "approval function the ticket function asks for the links"
            )
        return self


# What SQS accepted per message until 2025, and the most EventBridge puts in one event: every
# GuardDuty or Security Hub event fits. SQS now takes up to 1 MiB where the queue allows it.
DEFAULT_INTAKE_MAX_MESSAGE_BYTES = 262_144


class IntakeSettings(AlertReadingSettings):
    """Settings of the intake function (pushed alerts)."""

    # The pushed-alert queue: its own, so that the channel (never the body) tells pushed alerts apart.
    pushed_alert_queue_url: str = Field(alias="PUSHED_ALERT_QUEUE_URL", pattern=r"^https?://")
    max_message_bytes: int = Field(
        default=DEFAULT_INTAKE_MAX_MESSAGE_BYTES, alias="INTAKE_MAX_MESSAGE_BYTES", ge=1024, le=1_048_576
    )


class PollerSettings(Settings):
    """What every poller shares: where polled alerts go (the detector queue), where the poll's cursor
    and the alerts queued are kept (the guardrails table), and how far each poll reads."""

    alert_queue_url: str = Field(alias="ALERT_QUEUE_URL", pattern=r"^https?://")
    guardrails_table: str = Field(alias="GUARDRAILS_TABLE_NAME", min_length=1)
    # The first poll reads alerts this far back; every later poll from its cursor less the overlap,
    # so that an alert the vendor lists a little after it was created is still read.
    first_window_hours: float = Field(default=24.0, alias="POLL_FIRST_WINDOW_HOURS", gt=0, le=24 * 30)
    overlap_minutes: float = Field(default=15.0, alias="POLL_OVERLAP_MINUTES", ge=0, le=24 * 60)
    # How long a queued alert's id is remembered: longer than the overlap, or an alert read again in it
    # would be queued again.
    remember_days: float = Field(default=7.0, alias="POLL_REMEMBER_DAYS", gt=0, le=365)
    # The most alerts one poll queues (the next poll goes on from there), and how many one page lists.
    max_alerts_per_poll: int = Field(default=500, alias="POLL_MAX_ALERTS", ge=1, le=10_000)
    page_size: int = Field(default=100, alias="POLL_PAGE_SIZE", ge=1, le=1000)

    @model_validator(mode="after")
    def _remembered_beyond_the_overlap(self) -> Self:
        if timedelta(days=self.remember_days) <= timedelta(minutes=self.overlap_minutes):
            raise ValueError("POLL_REMEMBER_DAYS must be longer than POLL_OVERLAP_MINUTES")
        return self

    @property
    def first_window(self) -> timedelta:
        """How far back the first poll reads."""
        return timedelta(hours=self.first_window_hours)

    @property
    def overlap(self) -> timedelta:
        """How far behind its cursor every poll reads again."""
        return timedelta(minutes=self.overlap_minutes)

    @property
    def remember_for(self) -> timedelta:
        """How long a queued alert is remembered."""
        return timedelta(days=self.remember_days)


class FalconPollerSettings(PollerSettings, FalconApiSettings):
    """Settings of the Falcon poller: the API client's credentials in a Secrets Manager secret (a JSON
    object {"client_id", "client_secret"}) and the Falcon cloud it lives in (`FalconApiSettings`)."""

    falcon_api_secret: str = Field(alias="FALCON_API_SECRET_NAME", min_length=1)
    # Further FQL ANDed to the time filter (`product:'epp'`): which alerts the poller reads.
    falcon_filter: str = Field(default="", alias="FALCON_ALERT_FILTER", max_length=1000)


class WorkspacePollerSettings(PollerSettings):
    """Settings of the Google Workspace poller: a service account's key (the JSON file Google issues,
    unchanged) in a Secrets Manager secret, and the administrator it acts as through domain-wide
    delegation."""

    workspace_service_account_secret: str = Field(alias="WORKSPACE_SERVICE_ACCOUNT_SECRET_NAME", min_length=1)
    delegated_admin: str = Field(alias="WORKSPACE_DELEGATED_ADMIN", pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    # The Workspace account's id without its leading "C" (Google infers it from the administrator).
    customer_id: str | None = Field(default=None, alias="WORKSPACE_CUSTOMER_ID", pattern=r"^[A-Za-z0-9]+$")
    # Instead of Google's Alert Center URL (a loopback server in tests): https only.
    alert_center_url: str = Field(
        default="https://alertcenter.googleapis.com", alias="WORKSPACE_ALERT_CENTER_URL"
    )

    @field_validator("customer_id", mode="before")
    @classmethod
    def _without_the_leading_c(cls, value: object) -> object:
        # The Admin console shows the id as "C0..."; the API wants it without the "C".
        if isinstance(value, str):
            text = value.strip()
            return (text[1:] if re.fullmatch(r"C[0-9][A-Za-z0-9]*", text) else text) or None
        return value

    @field_validator("alert_center_url")
    @classmethod
    def _over_https(cls, value: str) -> str:
        return _https_only(value)
