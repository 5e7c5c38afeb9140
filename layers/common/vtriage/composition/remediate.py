"""The remediate function's adapters: one actuator per configured action type."""

from __future__ import annotations

from functools import cache

import boto3

from vtriage.adapters.dns_firewall import DnsFirewallDomainBlocker
from vtriage.adapters.ec2 import Ec2InstanceIsolation, Ec2InstanceTagging, Ec2VolumeSnapshots
from vtriage.adapters.guardrails import DynamoBlastRadius
from vtriage.adapters.iam import IamAccessKeyDisabler
from vtriage.adapters.nacl import NaclIpBlocker
from vtriage.adapters.s3 import S3ObjectQuarantine
from vtriage.adapters.waf import WafIpSetBlocker
from vtriage.composition import AWS_CONFIG, aws_client, case_repository, utc_now
from vtriage.config import RemediateSettings
from vtriage.models import ActionType
from vtriage.ports import ResponseActuator
from vtriage.remediate import Actuators, Remediator


def actuators(settings: RemediateSettings) -> Actuators:
    """One actuator per action type whose settings are configured: the EC2 and IAM ones need none, the
    WAF, NACL and S3 ones their resource. An action of a type left out fails, for a person. The DNS
    Firewall one is always there and skips its actions when no domain list is configured."""
    ec2 = aws_client(settings, "ec2")
    protected = settings.protected_tag_key
    found: dict[ActionType, ResponseActuator] = {
        ActionType.ISOLATE_INSTANCE: Ec2InstanceIsolation(ec2, settings.quarantine_group_name, protected),
        ActionType.SNAPSHOT_VOLUMES: Ec2VolumeSnapshots(ec2, protected),
        ActionType.TAG_INSTANCE: Ec2InstanceTagging(ec2, protected),
        ActionType.DISABLE_ACCESS_KEY: IamAccessKeyDisabler(
            aws_client(settings, "iam"), protected, settings.user_containment_policy_arn
        ),
    }
    if settings.waf_ip_set_name is not None and settings.waf_ip_set_id is not None:
        # A CLOUDFRONT IP set lives in us-east-1 whatever the function's region.
        waf_region = "us-east-1" if settings.waf_ip_set_scope == "CLOUDFRONT" else settings.region
        waf = boto3.session.Session(region_name=waf_region).client(
            "wafv2", config=AWS_CONFIG, endpoint_url=settings.aws_endpoint_url
        )
        found[ActionType.BLOCK_IP_WAF] = WafIpSetBlocker(
            waf, settings.waf_ip_set_name, settings.waf_ip_set_id, settings.waf_ip_set_scope
        )
    if settings.nacl_rule_min is not None and settings.nacl_rule_max is not None:
        found[ActionType.BLOCK_IP_NACL] = NaclIpBlocker(
            ec2, settings.nacl_rule_min, settings.nacl_rule_max, protected
        )
    if settings.quarantine_bucket is not None:
        found[ActionType.QUARANTINE_OBJECT] = S3ObjectQuarantine(
            aws_client(settings, "s3"), settings.quarantine_bucket, protected
        )
    # Without a domain list this actuator calls nothing and skips, saying so: "where the account has one,
    # otherwise a ticket" needs no failure, which would mark the case FAILED.
    found[ActionType.BLOCK_DOMAIN_DNS_FIREWALL] = DnsFirewallDomainBlocker(
        aws_client(settings, "route53resolver"), settings.dns_firewall_domain_list_id
    )
    return found


@cache
def remediator(settings: RemediateSettings) -> Remediator:
    """The remediate function's steps over its adapters, built once per container."""
    return Remediator(
        cases=case_repository(settings),
        actuators=actuators(settings),
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
