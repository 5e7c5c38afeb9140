"""The contracts between the parts of the pipeline: alerts, IOCs, enrichments, cases."""

import hashlib
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field

from vtriage.display import one_line


class IocType(StrEnum):
    """The kinds of indicator VirusTotal can look up."""

    IP = "ip"
    DOMAIN = "domain"
    URL = "url"
    FILE = "file"


class Verdict(StrEnum):
    """An explainable verdict, for one IOC or a whole case."""

    MALICIOUS = "malicious"
    SUSPICIOUS = "suspicious"
    HARMLESS = "harmless"
    UNKNOWN = "unknown"

    @property
    def weight(self) -> int:
        """How strongly the verdict calls for a response: a case takes its IOCs' heaviest verdict."""
        return _VERDICT_WEIGHT[self]


_VERDICT_WEIGHT = {Verdict.HARMLESS: 0, Verdict.UNKNOWN: 1, Verdict.SUSPICIOUS: 2, Verdict.MALICIOUS: 3}


def worst_verdict(verdicts: list[Verdict]) -> Verdict:
    """The verdict of a case: its heaviest IOC verdict, `unknown` when nothing was looked up."""
    return max(verdicts, key=lambda verdict: verdict.weight, default=Verdict.UNKNOWN)


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)


class Ioc(Frozen):
    """An indicator of compromise, in canonical form, with where in the alert it was found."""

    type: IocType
    value: str
    found_at: str = Field(description="dotted path of the field the value came from")
    skipped_reason: str | None = Field(
        default=None, description="why it is kept on the case but never looked up"
    )

    @property
    def key(self) -> str:
        """The IOC's identity in the cache and on the case: `type#value`."""
        return f"{self.type.value}#{self.value}"


class ResourceType(StrEnum):
    """What a remediation action may act on."""

    INSTANCE = "instance"
    ACCESS_KEY = "access_key"
    S3_BUCKET = "s3_bucket"
    S3_OBJECT = "s3_object"
    # A host running CrowdStrike's sensor, by its Falcon device id (the agent id, AID).
    FALCON_HOST = "falcon_host"


class Resource(Frozen):
    """A resource named by the alert: an AWS resource, or a Falcon host (its device id)."""

    type: ResourceType
    id: str
    vpc_id: str | None = None
    network_interface_ids: tuple[str, ...] = ()
    addresses: tuple[str, ...] = Field(default=(), description="the resource's own IP addresses")
    user_name: str | None = None
    user_type: str | None = Field(
        default=None,
        description="for an access key, the kind of principal the finding says holds it (GuardDuty's "
        "userType, Security Hub's PrincipalType): IAMUser, Root, AssumedRole, ...; None when not named",
    )
    bucket: str | None = None
    key: str | None = None
    version_id: str | None = Field(
        default=None,
        description="for an S3 object, the version the detector scanned, as it wrote it (S3's version id; "
        "'null' in a bucket that never kept versions); None when not named",
    )
    etag: str | None = Field(
        default=None,
        description="for an S3 object, its ETag when the detector scanned it, as it wrote it; None when not "
        "named. `quarantine_object` acts only on the object these two identify",
    )

    @classmethod
    def s3_object(cls, bucket: str, key: str, *, version_id: str | None, etag: str | None) -> Self:
        """An S3 object as a detector names it, with the version and ETag it scanned (None where it names
        none): the quarantine acts only on that object."""
        return cls(
            type=ResourceType.S3_OBJECT,
            id=f"{bucket}/{key}",
            bucket=bucket,
            key=key,
            version_id=version_id,
            etag=etag,
        )


# An IAM user's long-term access key id (AKIA...): the only kind UpdateAccessKey can set Inactive. STS's
# temporary credentials are ASIA...
_LONG_TERM_KEY_PREFIX = "AKIA"
_TEMPORARY_KEY_PREFIX = "ASIA"


def why_a_key_cannot_be_disabled(key_id: str, user_type: str | None) -> str | None:
    """Why disabling this access key (`disable_access_key`: IAM's UpdateAccessKey) cannot work, as a
    person reads it, with what to do instead; None for an IAM user's long-term key (AKIA..., held by an
    IAMUser or by a principal the finding does not name). The remediate function still reads the live key
    before it acts."""
    kind = (user_type or "").strip()
    if kind.casefold() == "root":
        return (
            "the root user's access keys are managed by the root user: vtriage cannot disable them (delete "
            "them signed in as the root user, and review who can sign in as root)"
        )
    if key_id.startswith(_TEMPORARY_KEY_PREFIX):
        sessions = (
            "deny the user's sessions issued before now (aws:TokenIssueTime) and disable the long-term key "
            "that issued them"
            if kind.casefold() == "iamuser"
            else "revoke the role's sessions (IAM: the role's Revoke active sessions)"
        )
        return f"temporary credentials (ASIA...) from AWS STS cannot be disabled: {sessions}"
    if kind and kind.casefold() != "iamuser":
        return (
            f"the key is held by a principal of type {one_line(kind, limit=40)}, not an IAM user: only an "
            "IAM user's long-term keys (AKIA...) can be disabled"
        )
    if not key_id.startswith(_LONG_TERM_KEY_PREFIX):
        return "not an IAM user's long-term access key id (AKIA...): there is no such key to disable"
    return None


# Words a person reads for the resource types detectors write, GuardDuty's and Security Hub's (ASFF) alike;
# a type not named here is shown as the detector wrote it.
_SUBJECT_KINDS = {
    "Lambda": "Lambda function",
    "AwsLambdaFunction": "Lambda function",
    "EKSCluster": "EKS cluster",
    "AwsEksCluster": "EKS cluster",
    "KubernetesWorkload": "Kubernetes workload",
    "ECSCluster": "ECS cluster",
    "AwsEcsCluster": "ECS cluster",
    "Container": "container",
    "RDSDBInstance": "RDS DB instance",
    "AwsRdsDbInstance": "RDS DB instance",
    "RDSLimitlessDB": "RDS Limitless Database shard group",
    "AwsAccount": "AWS account",
}
NO_ACTION_ON_SUBJECT = "vtriage takes no action on this kind of resource"


class Subject(Frozen):
    """What an alert is about that no response action acts on (a Lambda function, an EKS or ECS cluster,
    a container, an RDS DB instance, ...): kept so that a person reads which one, and so that findings on
    two of them are two cases. Values are the sender's, as the detector wrote them: shown escaped."""

    type: str = Field(description="the detector's resource type as written: 'Lambda', 'AwsEksCluster', ...")
    id: str = Field(description="its ARN when the finding gives one, else its id or name")
    name: str | None = Field(default=None, description="a short name a person knows it by, when given")

    @property
    def kind(self) -> str:
        """The type in a person's words ('Lambda function'), else as the detector wrote it (escaped)."""
        return _SUBJECT_KINDS.get(self.type) or one_line(self.type, limit=60)

    @property
    def named(self) -> str:
        """Its name and id, escaped: 'image-resizer (arn:aws:lambda:...)'; its id alone without a name."""
        if self.name and self.name != self.id:
            return f"{one_line(self.name, limit=100)} ({one_line(self.id)})"
        return one_line(self.id)

    @property
    def described(self) -> str:
        """One line a person reads, escaped: 'Lambda function image-resizer (arn:aws:lambda:...)'."""
        return f"{self.kind} {self.named}"

    @property
    def short(self) -> str:
        """A few words for a table's cell, escaped: 'Lambda function image-resizer'."""
        return f"{self.kind} {one_line(self.name or self.id, limit=100)}"


class Severity(Frozen):
    """The detector's own rating, on GuardDuty's 0-10 scale, and its label."""

    score: float = Field(ge=0, le=10)
    # Left out of a case's item when False: cases stored before it was kept read as they did.
    informational: bool = Field(
        default=False,
        exclude_if=lambda informational: not informational,
        description="the detector rated it informational (ASFF's INFORMATIONAL, OCSF's Informational, "
        "Falcon's): shown so, and ranked low like any score below 4",
    )

    @property
    def label(self) -> str:
        """GuardDuty's bands, which triage ranks (`ticket_min_severity`, a repeat's escalation): low below
        4, medium below 7, high below 9, critical above."""
        if self.score >= 9:
            return "critical"
        if self.score >= 7:
            return "high"
        if self.score >= 4:
            return "medium"
        return "low"

    @property
    def shown_label(self) -> str:
        """The label a person reads: 'informational' where the detector said so, else the band."""
        return "informational" if self.informational else self.label


# The most users a vendor's alert keeps by name (`VendorAlert.users`): a campaign mailed to thousands fits a
# case all the same. 500 addresses take about 15 KB of a stored case (at most about 100 KB, each name cut at
# 200 characters), within the 300 KB a case item is bounded to (`vtriage.bounds`); the state machine's
# input never holds them (`ExecutionInput`).
MAX_VENDOR_USERS = 500


class VendorAlert(Frozen):
    """What an alert from a detector outside AWS (CrowdStrike Falcon, Google Workspace) says in its vendor's
    terms: the platform and product that raised it, the vendor's customer it belongs to, the host and
    user it is about, and its page in the vendor's console. Such an alert names no AWS account or Region:
    no AWS action is ever planned or run on it (`eligibility.Place`). Values are the sender's, shown
    escaped."""

    platform: str = Field(description="the vendor's platform, as a reason names it: 'CrowdStrike Falcon'")
    product: str | None = Field(default=None, description="the product or source that raised the alert")
    tenant: str | None = Field(default=None, description="the vendor's customer id (Falcon CID, Workspace)")
    host: str | None = None
    user: str | None = Field(
        default=None,
        description="the user the alert is about, or the users as a person reads them (Workspace: the "
        "first ten of `users`, then how many more)",
    )
    users: tuple[str, ...] = Field(
        default=(),
        description="every user the alert is about (Workspace), each once whatever its case, in "
        f"alphabetical order, the first {MAX_VENDOR_USERS} at most (`users_digest` then stands for them "
        "all); empty when the detector names one user (`user`), and in cases stored before they were kept",
    )
    users_left_out: int = Field(default=0, description="how many more users the alert names than it keeps")
    users_digest: str | None = Field(
        default=None,
        description="when the alert names more users than `users` keeps: the SHA-256 of them all (lower "
        "case, in order), so that alerts differing only in users left out are still told apart",
    )
    console_url: str | None = Field(
        default=None, description="the alert in the vendor's console: https, on the vendor's own host"
    )

    @property
    def user_identity(self) -> str:
        """The users the alert is about as its identity holds them (the repeat key, the triage content):
        every user, in lower case, in order (the digest of them all when some are left out); the user
        named (`user`) when the detector names one. For ten users or fewer it is `user` in lower case,
        as it was before every user was kept."""
        if self.users_digest is not None:
            return f"sha256:{self.users_digest}"
        if self.users:
            return ", ".join(self.users).lower()
        return (self.user or "").lower()

    @property
    def users_beyond_user(self) -> bool:
        """Whether the alert names users that `user`, the line a person reads, leaves out."""
        return self.users_digest is not None or (bool(self.users) and ", ".join(self.users) != self.user)

    @property
    def outside_aws(self) -> str:
        """Why no AWS action may run on the alert, as a person reads it."""
        return (
            f"a {self.platform} alert names no AWS account or Region: vtriage takes no AWS action on it"
            " (a person decides, from its ticket)"
        )


class Alert(Frozen):
    """An alert from any detector, normalised."""

    id: str
    source: str
    type: str
    title: str
    severity: Severity
    created_at: datetime
    updated_at: datetime
    version: str = Field(description="what changes when the detector updates the finding")
    account: str
    region: str
    resources: tuple[Resource, ...] = ()
    subjects: tuple[Subject, ...] = Field(
        default=(),
        description="what the alert is about that no action acts on (a Lambda function, a cluster, a "
        "container, a database...), as the detector names it; empty in cases stored before it was kept",
    )
    iocs: tuple[Ioc, ...] = ()
    notes: tuple[str, ...] = Field(
        default=(), description="what intake did that an analyst should know, such as IOCs cut by the cap"
    )
    not_actionable: tuple[str, ...] = Field(
        default=(),
        description="why no action may run on this alert automatically (a malformed account id or time, "
        "a detector's sample finding, ...): such an alert is ticketed, never remediated",
    )
    sample: bool = Field(default=False, description="a detector's generated sample finding")
    product: str | None = Field(
        default=None,
        description="the ARN of the Security Hub product that generated the finding (its ProductArn, '' when "
        "it names none), for a finding delivered through Security Hub; None when the detector delivered it "
        "itself: only AWS's own integrated products are acted on automatically",
    )
    vendor: VendorAlert | None = Field(
        default=None,
        description="for an alert from a detector outside AWS (CrowdStrike Falcon, Google Workspace): its "
        "vendor's terms; None for AWS's detectors and OCSF",
    )
    content_digest: str = Field(
        default="",
        description="SHA-256 of the finding's own content (canonical JSON, keys folded to lower case), "
        "without the envelope it was delivered in; for Falcon and Workspace, of what decides its triage, "
        "without volatile metadata (vtriage.intake.digest, decision 11): part of the case id",
    )

    @property
    def case_id(self) -> str:
        """Deterministic: the same finding at the same version with the same content is the same case and
        execution name; another content under a known id and version is a case of its own."""
        identity = "\x1f".join(
            (self.source, self.account, self.region, self.id, self.version, self.content_digest)
        )
        digest = hashlib.sha256(identity.encode()).hexdigest()
        return f"{self.source}-{digest[:32]}"

    def case_id_through(self, channel: "Channel") -> str:
        """The case id of this finding delivered through `channel` when its own (`case_id`) is held by the
        case of a copy that came first through a channel trusted with less (a pushed copy of a detector's
        finding): the more trusted delivery is triaged as its channel's, in a case of its own, since an
        execution already runs on the first one. Of the same form as `case_id`."""
        digest = hashlib.sha256(f"{self.case_id}\x1f{channel}".encode()).hexdigest()
        return f"{self.source}-{digest[:32]}"

    @property
    def finding_key(self) -> str:
        """What every content delivered under this finding's id and version shares (`finding#<digest>`):
        the key of the ledger that makes two contents of one finding note each other."""
        identity = "\x1f".join((self.source, self.account, self.region, self.id, self.version))
        return "finding#" + hashlib.sha256(identity.encode()).hexdigest()[:40]

    @property
    def repeat_key(self) -> str:
        """What a repeat of this finding shares with it, whatever its finding id and version: the detector,
        account, region, finding type, resources and IOCs, the subjects (the same C&C address contacted by
        another Lambda function is that function's case), and for an alert from outside AWS the host and
        user it is about (the same attachment mailed to another recipient is another person's case). An
        alert naming neither resource nor IOC is too vague to be matched with another finding: only later
        versions of its own finding repeat it, whatever its subjects (one control's findings on one account
        are not the repeats of another control's). Subjects only ever tell findings apart: an alert without
        any has the key it had before they were kept."""
        resources = sorted(f"{resource.type.value}:{resource.id}" for resource in self.resources)
        iocs = sorted(ioc.key for ioc in self.iocs)
        subject = [*resources, *iocs] or [f"finding:{self.id}"]
        parts = [self.source, self.account, self.region, self.type, "\x1e".join(subject)]
        if self.subjects:
            parts.append("\x1e".join(sorted(f"{item.type}:{item.id}" for item in self.subjects)))
        if self.vendor is not None:
            parts += [f"host:{(self.vendor.host or '').lower()}", f"user:{self.vendor.user_identity}"]
        identity = "\x1f".join(parts)
        return "repeat#" + hashlib.sha256(identity.encode()).hexdigest()[:40]


class EngineStats(Frozen):
    """VirusTotal's `last_analysis_stats`, with the total of every category it reported."""

    malicious: int = 0
    suspicious: int = 0
    harmless: int = 0
    undetected: int = 0
    timeout: int = 0
    total: int = 0

    @classmethod
    def from_vt(cls, stats: dict[str, Any]) -> Self:
        """Read `last_analysis_stats`; categories vary by object type and all count in the total."""
        counts = {name: int(value) for name, value in stats.items() if isinstance(value, int | float)}
        known = {name: counts.get(name, 0) for name in ("malicious", "suspicious", "harmless", "undetected")}
        return cls(**known, timeout=counts.get("timeout", 0), total=sum(counts.values()))


class Enrichment(BaseModel):
    """What VirusTotal says of one IOC, the verdict drawn from it and why."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    ioc_type: IocType
    value: str
    verdict: Verdict
    stats: EngineStats = EngineStats()
    reasons: list[str] = []
    context: dict[str, Any] = {}
    link: str
    fetched_at: datetime
    cached: bool = False
    note: str | None = None

    @property
    def key(self) -> str:
        """The IOC's identity: `type#value`."""
        return f"{self.ioc_type.value}#{self.value}"


class ActionStatus(StrEnum):
    """What became of a response action."""

    PLANNED = "planned"
    DONE = "done"
    DRY_RUN = "dry_run"
    SKIPPED = "skipped"
    FAILED = "failed"
    PENDING_APPROVAL = "pending_approval"
    ROLLED_BACK = "rolled_back"


class ActionType(StrEnum):
    """The response actions vtriage can take."""

    ISOLATE_INSTANCE = "isolate_instance"
    SNAPSHOT_VOLUMES = "snapshot_volumes"
    TAG_INSTANCE = "tag_instance"
    BLOCK_IP_WAF = "block_ip_waf"
    BLOCK_IP_NACL = "block_ip_nacl"
    DISABLE_ACCESS_KEY = "disable_access_key"
    QUARANTINE_OBJECT = "quarantine_object"
    BLOCK_DOMAIN_DNS_FIREWALL = "block_domain_dns_firewall"
    CONTAIN_HOST = "contain_host"

    @property
    def acts_in_aws(self) -> bool:
        """Whether the action changes something in an AWS account (in the finding's own account and
        Region); `contain_host` acts in the deployment's own Falcon tenant instead."""
        return self is not ActionType.CONTAIN_HOST

    @property
    def contains_threat(self) -> bool:
        """Whether the action cuts the threat off (isolates, blocks, disables, quarantines, contains): every
        type but the evidence (`snapshot_volumes`) and the marking (`tag_instance`). A case is contained
        only when each of its containment actions is done (`vtriage.action_text.not_contained`)."""
        return self not in (ActionType.SNAPSHOT_VOLUMES, ActionType.TAG_INSTANCE)


# The parameter with which a playbook asks for one action to run in dry run whatever the global setting.
DRY_RUN_PARAMETER = "dry_run"
# The parameter with which a playbook (or the planning of a pushed alert) asks for a person to approve
# one action before it runs.
NEEDS_APPROVAL_PARAMETER = "needs_approval"


class Action(BaseModel):
    """A response action planned on a case, and its outcome once run."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    type: ActionType
    target: str
    parameters: dict[str, str] = Field(
        default={}, description="what the action needs beside its target: user name, VPC, bucket, ..."
    )
    status: ActionStatus = ActionStatus.PLANNED
    detail: str = ""
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    account: str | None = Field(
        default=None,
        description="the account the action concerns (the finding's), where it ran or would have run: set "
        "by the remediate function on every outcome (done, skipped, refused, failed, rolled back)",
    )
    region: str | None = Field(
        default=None,
        description="the Region the action concerns (the finding's), where it ran or would have run: set "
        "by the remediate function on every outcome",
    )

    def with_outcome(
        self,
        status: ActionStatus,
        detail: str,
        before: dict[str, Any] | None = None,
        after: dict[str, Any] | None = None,
    ) -> Self:
        """The action with this outcome; `before` stays as recorded when not given (a rollback keeps it)."""
        return self.model_copy(
            update={
                "status": status,
                "detail": detail,
                "before": self.before if before is None else before,
                "after": after,
            }
        )

    def with_outcome_of(self, result: "Action") -> Self:
        """The action as planned (type, target, parameters) with the outcome an actuator returned for it:
        its status, detail, before and after, as the actuator gave them."""
        return self.model_copy(
            update={
                "status": result.status,
                "detail": result.detail,
                "before": result.before,
                "after": result.after,
            }
        )


class CaseStatus(StrEnum):
    """Where a case is in its life."""

    NEW = "NEW"
    # The VirusTotal quota ran out before every IOC was looked up: no verdict yet, the record comes back.
    PENDING_ENRICHMENT = "PENDING_ENRICHMENT"
    ENRICHED = "ENRICHED"
    REMEDIATED = "REMEDIATED"
    TICKETED = "TICKETED"
    CLOSED = "CLOSED"
    FAILED = "FAILED"


class Branch(StrEnum):
    """The state machine's three ways out."""

    REMEDIATE = "remediate"
    TICKET = "ticket"
    CLOSE = "close"


class IocOutcome(BaseModel):
    """One IOC as the case shows it: skipped with a reason, or looked up with its verdict."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    type: IocType
    value: str
    found_at: str
    verdict: Verdict = Verdict.UNKNOWN
    skipped_reason: str | None = None
    malicious: int = 0
    suspicious: int = 0
    total: int = 0
    cached: bool = False
    reasons: list[str] = []
    link: str | None = None
    fetched_at: datetime | None = None
    virustotal_unavailable: bool = Field(
        default=False,
        description="VirusTotal failed (5xx, timeout, no connection) on every try up to the record's last "
        "delivery: triaged without its enrichment, judged by no one, so its case goes to a person",
    )

    @classmethod
    def skipped(cls, ioc: Ioc) -> Self:
        """An IOC kept on the case and never looked up."""
        return cls(type=ioc.type, value=ioc.value, found_at=ioc.found_at, skipped_reason=ioc.skipped_reason)

    @classmethod
    def enriched(cls, ioc: Ioc, enrichment: Enrichment) -> Self:
        """An IOC with what VirusTotal said of it."""
        return cls(
            type=ioc.type,
            value=ioc.value,
            found_at=ioc.found_at,
            verdict=enrichment.verdict,
            malicious=enrichment.stats.malicious,
            suspicious=enrichment.stats.suspicious,
            total=enrichment.stats.total,
            cached=enrichment.cached,
            reasons=enrichment.reasons,
            link=enrichment.link,
            fetched_at=enrichment.fetched_at,
        )


class Ticket(BaseModel):
    """A ticket opened for a case."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    provider: str
    id: str
    url: str | None = None
    created_at: datetime
    told: list[str] = Field(
        default=[],
        description="what the ticket was told since it opened (the outcome it shows, each approval request "
        "and decision), each by a short digest, so that a retried step tells it nothing twice",
    )


class HistoryEntry(BaseModel):
    """One step in a case's life: the status it was in, when, and what happened."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    status: CaseStatus
    at: datetime
    note: str = ""


class Repeat(BaseModel):
    """A later occurrence of a case's finding (another finding id or version on the same resources and
    IOCs, within the repeat window), folded into the case instead of opening a new one."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    alert_id: str
    version: str
    case_id: str = Field(description="the case id the repeat would have had: the name of its execution")
    at: datetime
    verdict: Verdict
    severity: float = Field(ge=0, le=10)

    @property
    def note(self) -> str:
        """The case history's line for this repeat."""
        return f"repeat of {self.alert_id} (version {self.version}): verdict {self.verdict.value}"


# The channel an alert came through: the detector rules' queue, the intake function's queue, any other.
Channel = Literal["detector", "intake", "queue"]


class Provenance(Frozen):
    """Where an alert came from, as the channel (never the body) says: `detector` through the detector
    rules' queue (EventBridge), `intake` pushed through the intake function (its own queue, with the
    SigV4 caller, source address and user agent the intake stamped), `queue` anything else."""

    channel: Channel
    sender: str | None = Field(default=None, description="the IAM principal that signed the push")
    source_ip: str | None = None
    user_agent: str | None = None

    @property
    def described(self) -> str:
        """One line a person reads: the channel, and who sent it when known (already escaped)."""
        if self.channel == "detector":
            return "the detector rules (EventBridge)"
        if self.channel == "queue":
            return "a queue that is not one of vtriage's"
        line = f"the intake URL, signed by {self.sender or 'an unknown sender'}"
        if self.source_ip:
            line += f"; from {self.source_ip}"
        if self.user_agent:
            line += f"; agent {self.user_agent}"
        return line


class Case(BaseModel):
    """A triaged alert: what DynamoDB keeps and what the state machine reads by case id."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    case_id: str
    alert: Alert
    status: CaseStatus = CaseStatus.NEW
    verdict: Verdict = Verdict.UNKNOWN
    iocs: list[IocOutcome] = []
    actions: list[Action] = []
    branch: Branch | None = None
    execution_arn: str | None = None
    ticket: Ticket | None = None
    error: str | None = None
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None = None
    history: list[HistoryEntry] = Field(default=[], description="every change of status, oldest first")
    # Repeats of the finding folded into this case; the ticket function tells the ticket about the
    # ones beyond `repeats_commented` and then raises it to `repeat_count`.
    repeat_count: int = Field(default=0, ge=0)
    repeat_case_ids: list[str] = Field(
        default=[], description="the case ids of the repeats already folded, so that none counts twice"
    )
    last_repeat: Repeat | None = None
    repeats_commented: int = Field(default=0, ge=0)
    # DynamoDB stops an item at 400 KB: what a stored case leaves out to stay within it, and the
    # history steps it no longer keeps (its first and latest steps are kept).
    notes: list[str] = Field(
        default=[], description="what the stored case left out to stay within its bounds, with counts"
    )
    history_dropped: int = Field(default=0, ge=0, description="history steps left out, oldest first")
    provenance: Provenance | None = Field(
        default=None, description="where the alert came from, and who sent it"
    )
    variant_case_ids: list[str] = Field(
        default=[],
        description="the cases of other contents delivered under this finding's id and version, and of "
        "the same content delivered through another channel (a pushed copy and the detector's own), each "
        "triaged on its own",
    )

    @property
    def remediable(self) -> bool:
        """A malicious case with an action that could act on one of its resources: one planned, not one
        skipped as it was planned (an access key that cannot be disabled, say), which goes to a ticket."""
        return self.verdict is Verdict.MALICIOUS and any(
            action.status is not ActionStatus.SKIPPED for action in self.actions
        )

    def record(self, status: CaseStatus, at: datetime, note: str = "") -> None:
        """Move the case to `status` at `at` and add the step to its history: every step that changes a
        case's status does it here (the state machine's CloseCase and MarkCaseFailed write the same way,
        held to this model by tests/unit/test_state_machine_case_writes.py)."""
        self.status = status
        self.updated_at = at
        self.history.append(HistoryEntry(status=status, at=at, note=note))

    def with_appended(self, stored: "Case") -> "Case":
        """The case to write over `stored`: this version, plus what others appended to the stored case
        since this version was read, which a whole-item write would lose: the variants the enrich function
        noted, the repeats it folded (their ids, count and latest), and their lines in the history, each in
        its place in time. Every `CaseRepository.save` keeps them so. A status another writer set meanwhile
        (the state machine's CloseCase and MarkCaseFailed write the item directly) stands, with the fields
        set with it, unless this version changed the status later: the latest status change wins."""
        history = list(self.history)
        for entry in stored.history:
            if entry not in self.history:
                index = len(history)
                # Never before the first step (the alert came in), which the bounds keep.
                while index > 1 and history[index - 1].at > entry.at:
                    index -= 1
                history.insert(index, entry)
        update: dict[str, Any] = {
            "variant_case_ids": _appended(self.variant_case_ids, stored.variant_case_ids),
            "repeat_case_ids": _appended(self.repeat_case_ids, stored.repeat_case_ids),
            "history": history,
            "updated_at": max(self.updated_at, stored.updated_at),
        }
        if stored.repeat_count > self.repeat_count:
            update |= {"repeat_count": stored.repeat_count, "last_repeat": stored.last_repeat}
        theirs = _latest_status_change(stored.history, seen=self.history)
        mine = _latest_status_change(self.history, seen=stored.history)
        if theirs is not None and (mine is None or theirs.at > mine.at):
            update |= {
                "status": stored.status,
                "branch": stored.branch,
                "closed_at": stored.closed_at,
                "error": stored.error,
            }
        return self.model_copy(update=update)

    @property
    def uncommented_repeats(self) -> int:
        """Repeats folded into the case that its ticket has not been told about yet."""
        return max(0, self.repeat_count - self.repeats_commented)

    def repeat_comment(self) -> str:
        """What to add to the case's ticket about its repeats not yet commented on."""
        latest = self.last_repeat
        count = self.uncommented_repeats
        text = f"The finding repeated {count} more time{'s' if count != 1 else ''}"
        if latest is not None:
            text += (
                f"; latest: {latest.alert_id} version {latest.version} at {latest.at.isoformat()}, "
                f"verdict {latest.verdict.value}, severity {latest.severity:g}"
            )
        return text + f". {self.repeat_count} repeat(s) in all; no new case or ticket was opened."


def _appended(mine: list[str], stored: list[str]) -> list[str]:
    return [*mine, *(value for value in stored if value not in mine)]


def _latest_status_change(history: list[HistoryEntry], seen: list[HistoryEntry]) -> HistoryEntry | None:
    """The latest line of `history` that `seen` lacks and that moved the case to another status (a
    repeat's line keeps the status it found, and changes none)."""
    latest = None
    for before, entry in zip([None, *history], history, strict=False):
        if entry not in seen and (before is None or entry.status is not before.status):
            latest = entry
    return latest


class ExecutionInput(Frozen):
    """The state machine's input: a case id and a small summary, far below the 256 KB payload limit."""

    case_id: str
    # The case's branch, under the name the state machine's Choice reads (`$.route`, its input contract).
    route: Branch = Field(description="the case's branch (`choose_branch`): remediate, ticket or close")
    verdict: Verdict
    severity: str
    remediable: bool
    actions: int
    error: dict[str, str] | None = None


class TaskInput(BaseModel):
    """What the state machine passes to the remediate and ticket functions."""

    model_config = ConfigDict(extra="ignore", defer_build=True)

    case_id: str
    error: dict[str, str] | None = Field(default=None, description="the Error and Cause a Catch caught")
