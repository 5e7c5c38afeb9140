"""Settings of the remediate function."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, field_validator, model_validator

from vtriage.config import empty_is_unset
from vtriage.config.falcon import FalconApiSettings
from vtriage.config.place import PlaceSettings

# What an IAM role name may look like: checked at start-up.
_ROLE_NAME = r"^[A-Za-z0-9+=,.@_-]{1,64}$"


class RemediateSettings(FalconApiSettings, PlaceSettings):
    """Settings of the remediate function. Dry-run unless DRY_RUN is explicitly false."""

    dry_run: bool = Field(default=True, alias="DRY_RUN")
    # Where actions run: the deployment's own account (the template passes AWS::AccountId), with the
    # function's credentials, and each member account through its role MEMBER_ROLE_NAME (the session
    # named after the case, MEMBER_EXTERNAL_ID as sts:ExternalId), in the finding's Region when
    # ACT_REGIONS lists it (every Region when empty). An action on a finding of any other account or
    # Region is skipped.
    member_role_name: str = Field(default="vtriage-member", alias="MEMBER_ROLE_NAME", pattern=_ROLE_NAME)
    # Not a secret: what the member role requires as sts:ExternalId (member-role.yaml's ExternalId).
    member_external_id: str | None = Field(
        default=None,
        alias="MEMBER_EXTERNAL_ID",
        min_length=2,
        max_length=1224,
        pattern=r"^[A-Za-z0-9+=,.@:/_-]+$",
    )
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
    # The buckets objects may be quarantined out of: a bucket name or a pattern ("uploads-*", `*` any
    # characters), as the template's QuarantineSourceBuckets, which also bounds the IAM grants; unset, no
    # object is moved (the quarantine is skipped, the case ticketed). Never one that starts with "*".
    quarantine_source_buckets: str | None = Field(
        default=None, alias="QUARANTINE_SOURCE_BUCKETS", pattern=r"^[a-z0-9][a-z0-9.*-]*$"
    )
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
        "quarantine_source_buckets",
        "dns_firewall_domain_list_id",
        "user_containment_policy_arn",
        "member_external_id",
    )

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
    def external_id(self) -> str:
        """What each member role requires as sts:ExternalId: MEMBER_EXTERNAL_ID, or by default
        `vtriage-<own account id>` (member-role.yaml's default for the same deployment account)."""
        return self.member_external_id or f"vtriage-{self.own_account_id}"
