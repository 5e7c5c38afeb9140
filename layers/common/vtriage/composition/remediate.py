"""The remediate function's adapters: one actuator per configured action type, for each account and Region
a case may be acted on in (built there on first use, kept for the container's life), and the actuators
that act outside AWS (a Falcon host's containment), one set for every case."""

from __future__ import annotations

from functools import cache

import boto3

from vtriage.adapters.aws_sessions import AccountClients, AwsSessions, member_containment_policy_arn
from vtriage.adapters.dns_firewall import DnsFirewallDomainBlocker
from vtriage.adapters.ec2 import Ec2InstanceIsolation, Ec2InstanceTagging, Ec2VolumeSnapshots
from vtriage.adapters.falcon import FalconClient, FalconHostContainment
from vtriage.adapters.guardrails import DynamoBlastRadius
from vtriage.adapters.iam import IamAccessKeyDisabler
from vtriage.adapters.nacl import NaclIpBlocker
from vtriage.adapters.s3 import S3ObjectQuarantine
from vtriage.adapters.waf import WafIpSetBlocker
from vtriage.clock import utc_now
from vtriage.composition import AWS_CONFIG, aws_client, aws_session, built_once, case_repository
from vtriage.composition.falcon import falcon_client
from vtriage.config.remediate import RemediateSettings
from vtriage.models import Action, ActionStatus, ActionType
from vtriage.ports import ResponseActuator
from vtriage.remediate import Actuators, Remediator


def actuators(settings: RemediateSettings, where: AccountClients | None = None) -> Actuators:
    """One actuator per action type whose settings are configured, acting with `where`'s clients (the
    deployment's own account in the function's Region when None): the EC2 and IAM ones need none, the
    WAF, NACL and S3 ones their resource. An action of a type left out fails, for a person. The DNS
    Firewall and S3 quarantine ones are always there and skip their actions, saying why, when no domain
    list, or no quarantine bucket and source buckets, are configured: a default playbook plans them on any
    deployment.

    In a member account the instance, its volumes, its network ACLs and the user are the member's, reached
    through its role; the WAF IP set, the DNS Firewall domain list and the quarantine bucket are this
    deployment's own, and vtriage changes none of them for another account's finding: those actions are
    skipped there, saying so."""
    here = where or AccountClients(
        settings.own_account_id, settings.region, False, lambda service: aws_client(settings, service)
    )
    ec2 = here.client("ec2")
    protected = settings.protected_tag_key
    containment = (
        member_containment_policy_arn(here.partition, here.account, settings.member_role_name)
        if here.member
        else settings.user_containment_policy_arn
    )
    found: dict[ActionType, ResponseActuator] = {
        ActionType.ISOLATE_INSTANCE: Ec2InstanceIsolation(ec2, settings.quarantine_group_name, protected),
        ActionType.SNAPSHOT_VOLUMES: Ec2VolumeSnapshots(ec2, protected),
        ActionType.TAG_INSTANCE: Ec2InstanceTagging(ec2, protected),
        ActionType.DISABLE_ACCESS_KEY: IamAccessKeyDisabler(here.client("iam"), protected, containment),
        # Replaced below when a bucket is configured.
        ActionType.QUARANTINE_OBJECT: SkippingActuator(
            "not quarantined: no quarantine bucket is configured (the QuarantineBucket and "
            "QuarantineSourceBuckets parameters); the object is left where it is, for a person"
        ),
    }
    if settings.nacl_rule_min is not None and settings.nacl_rule_max is not None:
        found[ActionType.BLOCK_IP_NACL] = NaclIpBlocker(
            ec2, settings.nacl_rule_min, settings.nacl_rule_max, protected
        )
    if here.member:
        own = settings.own_account_id
        if settings.waf_ip_set_name is not None and settings.waf_ip_set_id is not None:
            found[ActionType.BLOCK_IP_WAF] = deployment_account_only("the WAF IP set", own, here.account)
        if settings.quarantine_bucket is not None:
            found[ActionType.QUARANTINE_OBJECT] = deployment_account_only(
                "the quarantine bucket", own, here.account
            )
        found[ActionType.BLOCK_DOMAIN_DNS_FIREWALL] = deployment_account_only(
            "the DNS Firewall domain list", own, here.account
        )
        return found
    if settings.waf_ip_set_name is not None and settings.waf_ip_set_id is not None:
        # A CLOUDFRONT IP set lives in us-east-1 whatever the function's region.
        waf_region = "us-east-1" if settings.waf_ip_set_scope == "CLOUDFRONT" else settings.region
        waf = boto3.session.Session(region_name=waf_region).client(
            "wafv2", config=AWS_CONFIG, endpoint_url=settings.aws_endpoint_url
        )
        # The case's own account and Region: where the addresses the finding may name as foreign live.
        found[ActionType.BLOCK_IP_WAF] = WafIpSetBlocker(
            waf, settings.waf_ip_set_name, settings.waf_ip_set_id, settings.waf_ip_set_scope, ec2_client=ec2
        )
    sources = settings.quarantine_source_buckets
    if settings.quarantine_bucket is not None and sources is not None:
        found[ActionType.QUARANTINE_OBJECT] = S3ObjectQuarantine(
            aws_client(settings, "s3"), settings.quarantine_bucket, protected, sources
        )
    elif settings.quarantine_bucket is not None:
        found[ActionType.QUARANTINE_OBJECT] = SkippingActuator(
            "not quarantined: no source bucket is configured (the QuarantineSourceBuckets parameter): "
            "vtriage moves objects only out of the buckets named there; the object is left where it is, "
            "for a person"
        )
    # Without a domain list this actuator calls nothing and skips, saying so: "where the account has one,
    # otherwise a ticket" needs no failure, which would mark the case FAILED. The list, like the WAF IP
    # set, lives in the function's own Region, whichever Region the finding names.
    found[ActionType.BLOCK_DOMAIN_DNS_FIREWALL] = DnsFirewallDomainBlocker(
        aws_client(settings, "route53resolver"), settings.dns_firewall_domain_list_id
    )
    return found


def actuators_outside_aws(settings: RemediateSettings) -> Actuators:
    """The actuators of the action types that act outside AWS, the same whichever account and Region a
    case names: `contain_host`, in the deployment's own Falcon tenant (FALCON_CID) with the API client of
    FALCON_API_SECRET_NAME, made (its secret read) when it first acts. Without both, its actions are
    skipped with the reason and the case goes to its ticket."""
    secret, cid = settings.falcon_api_secret, settings.falcon_cid
    if secret is None or cid is None:
        missing = " and ".join(
            name for name, value in (("FalconApiSecretName", secret), ("FalconCid", cid)) if value is None
        )
        return {
            ActionType.CONTAIN_HOST: SkippingActuator(
                f"not contained: no Falcon API client is configured for host containment ({missing}); "
                "the host is left as it is, for a person"
            )
        }

    @cache
    def client() -> FalconClient:
        return falcon_client(settings, secret)

    return {ActionType.CONTAIN_HOST: FalconHostContainment(client, cid, settings.falcon_protected_tag)}


class SkippingActuator:
    """The actuator of an action this deployment may not or cannot run where the case lives (a resource
    not configured, the deployment account's own resource for a member's finding): it changes nothing
    and says why, so that the case goes to its ticket instead of failing."""

    def __init__(self, reason: str) -> None:
        self._reason = reason

    def run(self, action: Action, dry_run: bool) -> Action:
        """Skip the action, with the reason."""
        return self.outcome_without_acting(action)

    def outcome_without_acting(self, action: Action) -> Action:
        """The action skipped with the reason, known beforehand (`ForeseeingActuator`)."""
        return action.with_outcome(ActionStatus.SKIPPED, self._reason)

    def rollback(self, action: Action) -> Action:
        """Nothing was changed, so nothing is undone."""
        return action.with_outcome(ActionStatus.SKIPPED, "nothing to undo: " + self._reason)


def deployment_account_only(what: str, own_account: str, member_account: str) -> SkippingActuator:
    """The actuator, in a member account, of an action whose target is this deployment's own (a WAF IP
    set, a DNS Firewall domain list, the quarantine bucket): it changes nothing and says so."""
    return SkippingActuator(
        f"not run in member account {member_account}: {what} is this deployment account's "
        f"({own_account}), and vtriage edits no deployment-account resource for another account's "
        "finding; a person decides"
    )


class PlacedActuators:
    """The actuators of each account and Region, built the first time a case lives there and kept: the
    remediator asks for those of the case's place (`ActuatorsByPlace`)."""

    def __init__(self, settings: RemediateSettings, sessions: AwsSessions) -> None:
        self._settings = settings
        self._sessions = sessions
        self._built: dict[tuple[str, str], Actuators] = {}
        # Built once: they act in the deployment's own Falcon tenant whichever place a case names, and
        # one Falcon client keeps one token for every case.
        self._outside_aws = actuators_outside_aws(settings)

    def at(self, account: str, region: str, case_id: str) -> Actuators:
        """The actuators acting in the account and Region for the case (a member's role assumed in a
        session named after it); raises `MemberRoleError` when the account cannot be reached."""
        where = self._sessions.clients(account, region, case_id)
        if (account, region) not in self._built:
            self._built[account, region] = actuators(self._settings, where)
        return self._built[account, region]

    def outside_aws(self) -> Actuators:
        """The actuators acting outside AWS (`actuators_outside_aws`), the same for every case."""
        return self._outside_aws


def placed_actuators(settings: RemediateSettings, sts: object | None = None) -> PlacedActuators:
    """The actuators of every account and Region the deployment acts in, reaching member accounts through
    STS (the function's own client unless `sts` is given)."""
    place = settings.place
    sessions = AwsSessions(
        own_account=settings.own_account_id,
        members=place.members,
        own_session=aws_session,
        sts=sts if sts is not None else aws_client(settings, "sts"),
        role_name=settings.member_role_name,
        external_id=settings.external_id,
        config=AWS_CONFIG,
        endpoint_url=settings.aws_endpoint_url,
    )
    return PlacedActuators(settings, sessions)


@built_once
def remediator(settings: RemediateSettings) -> Remediator:
    """The remediate function's steps over its adapters, built once per container."""
    return build_remediator(settings)


def build_remediator(settings: RemediateSettings, sts: object | None = None) -> Remediator:
    """The remediate function's steps over its adapters, member accounts reached through `sts` (the
    function's own STS client unless given)."""
    return Remediator(
        cases=case_repository(settings),
        actuators=placed_actuators(settings, sts),
        blast_radius=(
            DynamoBlastRadius(
                aws_client(settings, "dynamodb"),
                settings.guardrails_table,
                settings.max_actions_per_hour,
                utc_now,
            )
            if settings.guardrails_table is not None
            else None
        ),
        dry_run=settings.dry_run,
        max_actions_per_case=settings.max_actions_per_case,
        max_actions_per_hour=settings.max_actions_per_hour,
        approval_timeout_seconds=settings.approval_timeout_seconds,
        place=settings.place,
    )
