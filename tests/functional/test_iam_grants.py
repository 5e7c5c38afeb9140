"""Every AWS API call a function makes is granted by its IAM policy in template.yaml.

moto enforces no IAM, so a handler that starts calling an API its policy does not grant passes every
other test and fails only once deployed (as the enrich cache's move from Query/PutItem to
BatchGetItem/BatchWriteItem did). Here each real handler runs on the local stack through its main
paths while every botocore call is recorded; each call is then turned into the IAM actions that
authorise it, on each resource IAM authorises it on (the call's resource types in the Service
Authorization Reference), in the context IAM evaluates conditions in: the keys the request sets
(`aws:TagKeys`, `aws:RequestTag/...`, `ec2:CreateAction`, `iam:PolicyARN`, `s3:ResourceAccount`) and the
resource's tags (`aws:ResourceTag/...`, `iam:ResourceTag/...`, `s3:ExistingObjectTag/...`, read from
moto when the checks run). A need is granted when an Allow statement of the function's policies, as
deployed with the parameters the scenario used, covers it and no Deny statement does.

Covered paths (one local stack for the module; state machines are not run, so only the invoked
handler makes calls):
- EnrichFunction: a batch of three findings and an invalid JSON record (dead-letter queue), with the
  VirusTotal key from Secrets Manager and lookups replayed; a second batch of the same findings
  updated later and one repeated (cache read, repeat folded into its case); a third batch with the
  daily VirusTotal quota spent (records deferred, one of them re-queued).
- RemediateFunction: plan, run of every action, finish, in dry run on the case the enrich function
  made of the C&C sample, then for real on cases with every action type moto can run (snapshot, tag,
  isolation, WAF and NACL blocks, access key disabled, S3 quarantine from an unversioned and a
  versioned bucket); and a plan that sends two actions to approval.
- ApprovalFunction: the state machine's approval requests, then a person approving one and rejecting
  the other through the function URL.
- TicketFunction: a ticket for the C&C case through the SNS provider; the step before each approval
  wait (the ticket opened, then told that the action waits), as deployed by default.
- IntakeFunction: a pushed finding queued.
Not covered: the DNS Firewall actuator's calls (moto has no Route 53 Resolver DNS Firewall, so the
list stays unconfigured and the actuator calls nothing), the vendor ticket providers, rollback (run by
an operator's `vtriage rollback`, not by a function).

Further checks change one thing in a recorded call or in a resource's tags, as a bug in the code or a
forged finding could, and show the remediate function's policy refusing it: a protected instance
isolated, tags deleted wholesale, another group closed, a network ACL nobody opted in, another policy
attached to a user, an object of another account, of the quarantine bucket or of AWSLogs/ deleted.

A condition operator this file does not evaluate fails the test until it learns it; a key a request
does not set is absent, as for IAM (Null true, ForAllValues true, any other operator false).
"""

from __future__ import annotations

import copy
import json
import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from unittest import mock
from urllib.parse import parse_qs, unquote

import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError

from tests.factories import make_alert, make_case
from tests.functional.conftest import launch_instance, load_event
from tests.functional.test_intake_function import function_url_request
from vtriage.adapters.dynamodb import DynamoCaseRepository
from vtriage.intake import read_document
from vtriage.models import Action, ActionType, CaseStatus, Verdict
from vtriage_local.replay import ReplayServer, bundled_recordings
from vtriage_local.stack import ACCOUNT_ID, REGION, LocalAws

pytestmark = pytest.mark.functional

FUNCTIONS = ["ApprovalFunction", "EnrichFunction", "IntakeFunction", "RemediateFunction", "TicketFunction"]
C2_SAMPLE = "synthetic-guardduty-backdoor-c2-dns.json"
FIRST_BATCH = [
    C2_SAMPLE,
    "synthetic-guardduty-iam-tor-caller.json",
    "synthetic-guardduty-ec2-suspicious-dns.json",
]
QUARANTINE_BUCKET = "vtriage-quarantine-123456789012"
# Objects are quarantined out of these, named by the QuarantineSourceBuckets pattern "uploads*".
SOURCE_BUCKETS = ("uploads", "uploads-versioned")
PROTECTED_TAG = "vtriage:protected"
NACL_OPT_IN = "vtriage:nacl-block"
APPROVER_INBOX = "approver-inbox"

# What each function must at least have called on the paths above: a scenario that silently stopped
# reaching a path (or a recorder that records nothing) fails here rather than passing on nothing.
EXERCISED: dict[str, set[str]] = {
    "EnrichFunction": {
        "secretsmanager:GetSecretValue",
        "dynamodb:BatchGetItem",
        "dynamodb:BatchWriteItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "states:StartExecution",
        "sqs:SendMessage",
        "sqs:ChangeMessageVisibility",
    },
    "RemediateFunction": {
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "ec2:DescribeInstances",
        "ec2:DescribeTags",
        # Whether an address to block is the account's own (an Elastic IP).
        "ec2:DescribeAddresses",
        "ec2:CreateSnapshot",
        "ec2:CreateSecurityGroup",
        "ec2:ModifyNetworkInterfaceAttribute",
        "ec2:CreateTags",
        "ec2:CreateNetworkAclEntry",
        "wafv2:UpdateIPSet",
        "iam:UpdateAccessKey",
        "iam:AttachUserPolicy",
        "s3:PutObject",
        "s3:DeleteObject",
        "s3:GetObjectVersion",
        "s3:GetObjectVersionTagging",
        "s3:DeleteObjectVersion",
    },
    "ApprovalFunction": {
        "secretsmanager:GetSecretValue",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "sns:Publish",
        "states:SendTaskSuccess",
        "states:SendTaskFailure",
    },
    # BatchGetItem: the report reads its IOCs' VirusTotal context from the enrichments table.
    "TicketFunction": {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:BatchGetItem", "sns:Publish"},
    "IntakeFunction": {"sqs:SendMessage"},
}

# ---------------------------------------------------------------- recording


@dataclass(frozen=True)
class ApiCall:
    """One botocore call: the service's IAM prefix, the operation, its parameters as the code gave them."""

    service: str
    operation: str
    parameters: Mapping[str, Any] = field(compare=False)


@contextmanager
def recording_calls() -> Iterator[list[ApiCall]]:
    """Every AWS API call made while inside, from any thread (the enrich lookups run in workers)."""
    calls: list[ApiCall] = []
    # Private to botocore, and the one place every client's calls pass through.
    original = BaseClient._make_api_call  # type: ignore[attr-defined]

    def record(client: BaseClient, operation_name: str, api_params: dict[str, Any]) -> Any:
        model = client.meta.service_model
        # The signing name is the IAM prefix for every service here (Step Functions signs as "states").
        service = model.signing_name or model.endpoint_prefix
        calls.append(ApiCall(service, operation_name, copy.deepcopy(api_params)))
        return original(client, operation_name, api_params)

    with mock.patch.object(BaseClient, "_make_api_call", autospec=True, side_effect=record):
        yield calls


# ---------------------------------------------------------------- calls to IAM actions


@dataclass(frozen=True)
class Need:
    """An IAM action a call needs on one resource (None: any, for the actions that name none), with
    the request context its conditions are evaluated on: the keys the request sets, and the tags of the
    resource as IAM sees them."""

    action: str
    resource: str | None = None
    context: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def key_values(self, key: str) -> tuple[str, ...] | None:
        """The values of a condition key, or None when the request's context lacks it."""
        return dict(self.context).get(key)


class Lookup(Protocol):
    """What turning a call into needs reads from the account: the secrets' ARNs, the resources' tags
    (as they are when the checks run: vtriage never changes the tags a condition reads), buckets' owners
    and the attachments of network interfaces."""

    def secret_arn(self, name: str) -> str:
        """The ARN of the secret a call named."""
        ...

    def tags(self, arn: str) -> Mapping[str, str]:
        """The tags of an EC2 resource, an IAM user or an S3 object (none when it is gone)."""
        ...

    def bucket_account(self, bucket: str) -> str:
        """The account that owns the bucket (s3:ResourceAccount)."""
        ...

    def interface(self, interface_id: str) -> Mapping[str, str]:
        """The interface's subnet ("subnet") and, when attached, instance ("instance")."""
        ...


# Operations authorised by an action of another name.
RENAMED = {
    ("s3", "HeadObject"): "GetObject",
    ("s3", "HeadBucket"): "ListBucket",
    ("s3", "ListObjectsV2"): "ListBucket",
    ("sqs", "SendMessageBatch"): "SendMessage",
    ("sqs", "ChangeMessageVisibilityBatch"): "ChangeMessageVisibility",
    ("sqs", "DeleteMessageBatch"): "DeleteMessage",
}
# TransactWriteItems is authorised per item, by the item's kind.
TRANSACT_ITEM_ACTIONS = {
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
}
EC2_RESOURCE_TYPES = {
    "i-": "instance",
    "sg-": "security-group",
    "acl-": "network-acl",
    "snap-": "snapshot",
    "vol-": "volume",
    "eni-": "network-interface",
    "subnet-": "subnet",
    "vpc-": "vpc",
}
# The S3 actions whose request context holds the object's tags (s3:ExistingObjectTag): reading and
# tagging an object, not deleting it (the Service Authorization Reference for Amazon S3).
OBJECT_TAG_ACTIONS = {
    "s3:GetObject",
    "s3:GetObjectVersion",
    "s3:GetObjectTagging",
    "s3:GetObjectVersionTagging",
    "s3:PutObjectTagging",
    "s3:PutObjectVersionTagging",
    "s3:DeleteObjectTagging",
    "s3:DeleteObjectVersionTagging",
}
Context = tuple[tuple[str, tuple[str, ...]], ...]


def _table_arn(name: str) -> str:
    return f"arn:aws:dynamodb:{REGION}:{ACCOUNT_ID}:table/{name}"


def _object_arn(bucket: str, key: str) -> str:
    return f"arn:aws:s3:::{bucket}/{key}"


def _copy_source(source: Any) -> tuple[str, str, str | None]:
    """Bucket, key and version of a CopySource: boto3's dict, or S3's "bucket/key?versionId=" text."""
    if isinstance(source, Mapping):
        return str(source["Bucket"]), str(source["Key"]), source.get("VersionId")
    path, _, query = str(source).lstrip("/").partition("?")
    bucket, _, key = path.partition("/")
    version = parse_qs(query).get("versionId", [None])[0]
    return bucket, unquote(key), version


def _tag_keys(tags: Any) -> tuple[str, ...]:
    return tuple(sorted(str(tag["Key"]) for tag in tags or []))


def _request_tags(tags: Any) -> Context:
    """What tags given in a request set: aws:TagKeys and one aws:RequestTag/<key> each."""
    given = {str(tag["Key"]): str(tag.get("Value", "")) for tag in tags or []}
    return (
        ("aws:TagKeys", tuple(sorted(given))),
        *((f"aws:RequestTag/{key}", (value,)) for key, value in sorted(given.items())),
    )


def needs_of(call: ApiCall, lookup: Lookup) -> list[Need]:
    """The IAM actions that authorise this call, on each resource it names, in its request context."""
    needs = _needs_of(call, lookup)
    return [Need(n.action, n.resource, n.context + _resource_context(n, lookup)) for n in needs]


def _needs_of(call: ApiCall, lookup: Lookup) -> list[Need]:
    p = call.parameters
    action = f"{call.service}:{RENAMED.get((call.service, call.operation), call.operation)}"
    if call.service == "dynamodb":
        if call.operation == "TransactWriteItems":
            return [
                Need(TRANSACT_ITEM_ACTIONS[kind], _table_arn(request["TableName"]))
                for item in p["TransactItems"]
                for kind, request in item.items()
            ]
        if call.operation == "TransactGetItems":
            return [
                Need("dynamodb:GetItem", _table_arn(item["Get"]["TableName"])) for item in p["TransactItems"]
            ]
        if "RequestItems" in p:
            return [Need(action, _table_arn(table)) for table in p["RequestItems"]]
        return [Need(action, _table_arn(p["TableName"]))]
    if call.service == "sqs":
        queue_name = str(p["QueueUrl"]).rstrip("/").rsplit("/", 1)[-1]
        return [Need(action, f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{queue_name}")]
    if call.service == "sns":
        return [Need(action, str(p["TopicArn"]))]
    if call.service == "states":
        # A task token is no resource: SendTask* are authorised on a state machine the token does not name.
        return [Need(action, p.get("stateMachineArn"))]
    if call.service == "secretsmanager":
        return [Need(action, lookup.secret_arn(str(p["SecretId"])))]
    if call.service == "iam" and "UserName" in p:
        policy: Context = (("iam:PolicyARN", (str(p["PolicyArn"]),)),) if "PolicyArn" in p else ()
        return [Need(action, f"arn:aws:iam::{ACCOUNT_ID}:user/{p['UserName']}", policy)]
    if call.service == "wafv2":
        scope = "global" if p.get("Scope") == "CLOUDFRONT" else "regional"
        return [Need(action, f"arn:aws:wafv2:{REGION}:{ACCOUNT_ID}:{scope}/ipset/{p['Name']}/{p['Id']}")]
    if call.service == "s3":
        return _s3_needs(call, action, lookup)
    if call.service == "ec2":
        return _ec2_needs(call, action, lookup)
    return [Need(action)]


def _s3_needs(call: ApiCall, action: str, lookup: Lookup) -> list[Need]:
    p = call.parameters

    def on(need_action: str, bucket: str, key: str | None = None) -> Need:
        resource = f"arn:aws:s3:::{bucket}" if key is None else _object_arn(bucket, key)
        return Need(need_action, resource, (("s3:ResourceAccount", (lookup.bucket_account(bucket),)),))

    if "Key" not in p:
        return [on(action, p["Bucket"])]
    version_suffix = "Version" if p.get("VersionId") else ""
    if call.operation == "CopyObject":
        # A copy reads its source (a given version through GetObjectVersion) and writes its target,
        # with its tags when the request sets them.
        bucket, key, version = _copy_source(p["CopySource"])
        needs = [
            on("s3:GetObjectVersion" if version else "s3:GetObject", bucket, key),
            on("s3:PutObject", p["Bucket"], p["Key"]),
        ]
        if p.get("Tagging") and p.get("TaggingDirective") == "REPLACE":
            needs.append(on("s3:PutObjectTagging", p["Bucket"], p["Key"]))
        if p.get("TaggingDirective", "COPY") == "COPY":
            needs.append(on(f"s3:GetObject{'Version' if version else ''}Tagging", bucket, key))
        return needs
    if call.operation in {"GetObject", "HeadObject", "DeleteObject", "GetObjectTagging", "PutObjectTagging"}:
        service, _, name = action.partition(":")
        name = name.replace("Object", f"Object{version_suffix}", 1) if version_suffix else name
        return [on(f"{service}:{name}", p["Bucket"], p["Key"])]
    return [on(action, p["Bucket"], p["Key"])]


def _ec2_needs(call: ApiCall, action: str, lookup: Lookup) -> list[Need]:
    p = call.parameters
    if call.operation.startswith("Describe"):
        # Describe* support no resource-level permissions.
        return [Need(action)]
    if call.operation in {"CreateTags", "DeleteTags"}:
        # Without Tags, DeleteTags deletes every tag of the resource, and the request sets no aws:TagKeys.
        keys: Context = (("aws:TagKeys", _tag_keys(p["Tags"])),) if "Tags" in p else ()
        return [Need(action, _ec2_arn(resource_id), keys) for resource_id in p["Resources"]]
    # Tags given at creation are in the creating request's context, and are authorised as
    # ec2:CreateTags on the new resource, with the creating action as ec2:CreateAction.
    created = {
        str(spec["ResourceType"]).replace("_", "-"): _request_tags(spec.get("Tags"))
        for spec in p.get("TagSpecifications", [])
    }
    tagging = [
        Need(
            "ec2:CreateTags",
            _ec2_arn_of_type(kind, "*"),
            (*context, ("ec2:CreateAction", (call.operation,))),
        )
        for kind, context in created.items()
    ]
    return _ec2_resources(call, action, created, lookup) + tagging


def _ec2_resources(call: ApiCall, action: str, created: Mapping[str, Context], lookup: Lookup) -> list[Need]:
    """The resources IAM authorises an EC2 operation on (its Service Authorization Reference entry)."""
    p = call.parameters

    def new(kind: str) -> Need:
        return Need(action, _ec2_arn_of_type(kind, "*"), created.get(kind, ()))

    if call.operation == "CreateSecurityGroup":
        return [new("security-group"), Need(action, _ec2_arn_of_type("vpc", str(p["VpcId"])))]
    if call.operation == "CreateSnapshot":
        return [Need(action, _ec2_arn_of_type("volume", str(p["VolumeId"]))), new("snapshot")]
    if call.operation in {
        "RevokeSecurityGroupIngress",
        "RevokeSecurityGroupEgress",
        "AuthorizeSecurityGroupIngress",
        "AuthorizeSecurityGroupEgress",
    }:
        return [Need(action, _ec2_arn(str(p["GroupId"])))]
    if call.operation in {"CreateNetworkAclEntry", "ReplaceNetworkAclEntry", "DeleteNetworkAclEntry"}:
        return [Need(action, _ec2_arn(str(p["NetworkAclId"])))]
    if call.operation == "ModifyNetworkInterfaceAttribute":
        interface = lookup.interface(str(p["NetworkInterfaceId"]))
        named = [str(p["NetworkInterfaceId"]), *map(str, p.get("Groups", [])), *interface.values()]
        return [Need(action, _ec2_arn(resource_id)) for resource_id in named]
    raise AssertionError(f"teach _ec2_resources() the resources of ec2:{call.operation}")


def _ec2_arn(resource_id: str) -> str:
    for prefix, resource_type in EC2_RESOURCE_TYPES.items():
        if resource_id.startswith(prefix):
            return _ec2_arn_of_type(resource_type, resource_id)
    raise AssertionError(f"{resource_id}: teach _ec2_arn() its resource type")


def _ec2_arn_of_type(resource_type: str, resource_id: str) -> str:
    # Snapshot ARNs name no account.
    account = "" if resource_type == "snapshot" else ACCOUNT_ID
    return f"arn:aws:ec2:{REGION}:{account}:{resource_type}/{resource_id}"


def _resource_context(need: Need, lookup: Lookup) -> Context:
    """The resource's tags as the condition keys IAM gives them (none for a resource being created)."""
    if need.resource is None or need.resource.endswith("/*"):
        return ()
    service = need.resource.split(":")[2]
    if service == "ec2":
        prefixes = ["aws:ResourceTag/"]
    elif service == "iam":
        prefixes = ["aws:ResourceTag/", "iam:ResourceTag/"]
    elif service == "s3" and need.action in OBJECT_TAG_ACTIONS:
        prefixes = ["s3:ExistingObjectTag/"]
    else:
        # A bucket's tags count only where ABAC is on for it, which no bucket here has.
        return ()
    tags = lookup.tags(need.resource)
    return tuple((prefix + key, (value,)) for prefix in prefixes for key, value in sorted(tags.items()))


# ---------------------------------------------------------------- the template's policies


def _condition_holds(value: Any, template: Mapping[str, Any], parameters: Mapping[str, str]) -> bool:
    """A template condition (Fn::And/Or/Not/Equals over parameters), with these parameter values."""
    if isinstance(value, str):
        return _condition_holds(template["Conditions"][value], template, parameters)
    [(function, arguments)] = value.items()
    if function == "Condition":
        return _condition_holds(template["Conditions"][arguments], template, parameters)
    if function == "Fn::And":
        return all(_condition_holds(item, template, parameters) for item in arguments)
    if function == "Fn::Or":
        return any(_condition_holds(item, template, parameters) for item in arguments)
    if function == "Fn::Not":
        return not _condition_holds(arguments[0], template, parameters)
    if function == "Fn::Equals":
        left, right = (parameters[item["Ref"]] if isinstance(item, dict) else str(item) for item in arguments)
        return left == right
    raise AssertionError(f"teach _condition_holds() about {function}")


def deployed_statements(aws: LocalAws, logical_id: str) -> list[dict[str, Any]]:
    """The function's Allow and Deny statements as deployed with the stack's parameters: Fn::If
    decided, intrinsic functions resolved to local names."""
    template = aws.template
    found: list[dict[str, Any]] = []
    for policy in aws.functions[logical_id].policies:
        # Managed policies and SAM policy templates (DynamoDBCrudPolicy...) hide what they grant from here.
        assert isinstance(policy, dict), f"{logical_id}: teach deployed_statements() what {policy!r} grants"
        assert "Statement" in policy, f"{logical_id}: teach deployed_statements() what {policy!r} grants"
        for written in policy["Statement"]:
            statement = written
            if set(written) == {"Fn::If"}:
                condition, when_true, when_false = written["Fn::If"]
                statement = when_true if _condition_holds(condition, template, aws.parameters) else when_false
                if statement == {"Ref": "AWS::NoValue"}:
                    continue
            assert not {"NotAction", "NotResource"} & set(statement), (
                f"{logical_id}: teach this test NotAction"
            )
            assert statement["Effect"] in {"Allow", "Deny"}, statement
            found.append(aws.resolve(statement))
    return found


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _wildcard(pattern: str, *, ignore_case: bool = False) -> re.Pattern[str]:
    """An IAM pattern (* and ?) as a regular expression."""
    regex = re.escape(pattern).replace(r"\*", ".*").replace(r"\?", ".")
    return re.compile(f"^{regex}$", re.IGNORECASE if ignore_case else 0)


# The condition operators this file evaluates, on one value of the request against one of the policy.
OPERATORS: dict[str, Callable[[str, str], bool]] = {
    "StringEquals": lambda value, expected: value == expected,
    "StringLike": lambda value, expected: _wildcard(expected).match(value) is not None,
    "ArnEquals": lambda value, expected: value == expected,
    "ArnLike": lambda value, expected: _wildcard(expected).match(value) is not None,
}


def _condition_met(need: Need, condition: Mapping[str, Any]) -> bool:
    """Whether every test of a statement's Condition holds in the need's request context, as IAM
    evaluates them: Null on the key's presence; ForAllValues true when the key is absent, ForAnyValue
    false; a plain operator false when the key is absent."""
    for operator, tests in condition.items():
        for key, allowed in tests.items():
            expected = [str(value) for value in _as_list(allowed)]
            values = need.key_values(key)
            if operator == "Null":
                [absent] = expected
                if (values is None) != (absent == "true"):
                    return False
                continue
            if not _test_holds(operator, key, values, expected):
                return False
    return True


def _test_holds(operator: str, key: str, values: tuple[str, ...] | None, expected: list[str]) -> bool:
    qualifier, _, name = operator.rpartition(":")
    unknown = f"teach _condition_met() the condition {operator} {key}"
    assert name in OPERATORS, unknown
    assert qualifier in {"", "ForAllValues", "ForAnyValue"}, unknown
    compare = OPERATORS[name]
    matched = [any(compare(value, one) for one in expected) for value in values or ()]
    if qualifier == "ForAllValues":
        return all(matched)
    if qualifier == "ForAnyValue":
        return any(matched)
    assert values is None or len(values) == 1, f"{key} has many values: use ForAllValues or ForAnyValue"
    return values is not None and matched[0]


def applies(statement: Mapping[str, Any], need: Need) -> bool:
    """Whether the statement (Allow or Deny) covers the need: its action, its resource, its condition."""
    if not any(
        _wildcard(str(action), ignore_case=True).match(need.action)
        for action in _as_list(statement["Action"])
    ):
        return False
    resource_matches = need.resource is None or any(
        _wildcard(str(resource)).match(need.resource) for resource in _as_list(statement["Resource"])
    )
    return resource_matches and _condition_met(need, statement.get("Condition", {}))


def refusal(need: Need, statements: list[dict[str, Any]]) -> str | None:
    """Why IAM refuses the need under these statements (an explicit Deny wins over any Allow), or None
    when it is granted."""
    denials = [str(s.get("Sid", "a Deny")) for s in statements if s["Effect"] == "Deny" and applies(s, need)]
    if denials:
        return f"denied by {', '.join(denials)}"
    if any(statement["Effect"] == "Allow" and applies(statement, need) for statement in statements):
        return None
    return "allowed by no statement"


@dataclass
class Refused:
    """Why a need is refused, and the operations that needed it."""

    reason: str
    operations: list[str] = field(default_factory=list)


def refused_needs(
    calls: list[ApiCall], statements: list[dict[str, Any]], lookup: Lookup
) -> dict[Need, Refused]:
    """Each need of the calls that the statements do not grant, with why and the operations that needed it."""
    refused: dict[Need, Refused] = {}
    for call in calls:
        for need in needs_of(call, lookup):
            reason = refusal(need, statements)
            if reason is not None:
                refused.setdefault(need, Refused(reason)).operations.append(
                    f"{call.service}:{call.operation}"
                )
    return refused


def describe(logical_id: str, refused: Mapping[Need, Refused]) -> str:
    """A failure message naming the function, the action, the resource, why, and the calls."""
    lines = [
        f"{logical_id}: {need.action} on {need.resource or 'any resource'}"
        + (f" with {dict(need.context)}" if need.context else "")
        + f": {why.reason}, needed by {sorted(set(why.operations))}"
        for need, why in refused.items()
    ]
    return f"{logical_id}'s policies in template.yaml do not grant:\n  " + "\n  ".join(lines)


# ---------------------------------------------------------------- the scenario


@dataclass
class World:
    """The resources the cases act on."""

    instance_id: str
    vpc_id: str
    web_group_id: str
    ip_set_id: str
    access_key_id: str
    inbox_url: str


@dataclass
class Observed:
    """The local stack after the scenario, the resources it acted on, and the calls each function made.
    It is the `Lookup` the checks read the account through."""

    aws: LocalAws
    calls: dict[str, list[ApiCall]] = field(default_factory=dict)
    world: World | None = None

    def invoke(self, logical_id: str, event: Any) -> Any:
        """Run the function's real handler, recording the calls it makes."""
        with recording_calls() as calls:
            try:
                return self.aws.invoke(logical_id, event)
            finally:
                self.calls.setdefault(logical_id, []).extend(calls)

    def secret_arn(self, name: str) -> str:
        """The ARN of the secret a call named (Secrets Manager adds six random characters)."""
        if name.startswith("arn:"):
            return name
        return str(self.aws.client("secretsmanager").describe_secret(SecretId=name)["ARN"])

    def tags(self, arn: str) -> Mapping[str, str]:
        """The tags of an EC2 resource, an IAM user or an S3 object (none when it is gone)."""
        service, resource = arn.split(":")[2], arn.split(":", 5)[5]
        if service == "ec2":
            resource_id = resource.split("/", 1)[1]
            found = self.aws.client("ec2").describe_tags(
                Filters=[{"Name": "resource-id", "Values": [resource_id]}]
            )["Tags"]
        elif service == "iam":
            found = self.aws.client("iam").list_user_tags(UserName=resource.rsplit("/", 1)[-1])["Tags"]
        elif service == "s3":
            bucket, _, key = resource.partition("/")
            try:
                found = self.aws.client("s3").get_object_tagging(Bucket=bucket, Key=key)["TagSet"]
            except ClientError:
                # Moved to quarantine since: it had no protected tag, or the quarantine would have skipped it.
                found = []
        else:
            raise AssertionError(f"teach Observed.tags() the tags of {arn}")
        return {str(tag["Key"]): str(tag.get("Value", "")) for tag in found}

    def bucket_account(self, bucket: str) -> str:
        """Every bucket of the local stack is the deployment's account's."""
        return ACCOUNT_ID

    def interface(self, interface_id: str) -> Mapping[str, str]:
        """The interface's subnet and, when attached, instance."""
        [found] = self.aws.client("ec2").describe_network_interfaces(NetworkInterfaceIds=[interface_id])[
            "NetworkInterfaces"
        ]
        instance = found.get("Attachment", {}).get("InstanceId")
        return {"subnet": str(found["SubnetId"])} | ({"instance": str(instance)} if instance else {})


def _build_world(aws: LocalAws) -> World:
    launched = launch_instance(aws.client("ec2"))
    ip_set_id = aws.client("wafv2").create_ip_set(
        Name="vtriage-blocked", Scope="REGIONAL", IPAddressVersion="IPV4", Addresses=[]
    )["Summary"]["Id"]
    iam = aws.client("iam")
    iam.create_user(UserName="ci-deployer")
    access_key_id = iam.create_access_key(UserName="ci-deployer")["AccessKey"]["AccessKeyId"]
    s3 = aws.client("s3")
    for bucket in (*SOURCE_BUCKETS, QUARANTINE_BUCKET):
        s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket="uploads-versioned", VersioningConfiguration={"Status": "Enabled"})
    for bucket in SOURCE_BUCKETS:
        s3.put_object(Bucket=bucket, Key="dropper.exe", Body=b"MZ")
    # The team opts the VPC's network ACLs in to vtriage's deny entries.
    ec2 = aws.client("ec2")
    acls = ec2.describe_network_acls(Filters=[{"Name": "vpc-id", "Values": [launched.vpc_id]}])["NetworkAcls"]
    ec2.create_tags(
        Resources=[acl["NetworkAclId"] for acl in acls], Tags=[{"Key": NACL_OPT_IN, "Value": "allowed"}]
    )
    sqs, sns = aws.client("sqs"), aws.client("sns")
    inbox_url = sqs.create_queue(QueueName=APPROVER_INBOX)["QueueUrl"]
    inbox_arn = sqs.get_queue_attributes(QueueUrl=inbox_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(TopicArn=aws.ref("ApprovalTopic"), Protocol="sqs", Endpoint=inbox_arn)
    return World(
        launched.instance_id, launched.vpc_id, launched.group_id, ip_set_id, access_key_id, inbox_url
    )


def _deploy_with(aws: LocalAws, monkeypatch: pytest.MonkeyPatch, **parameters: str) -> None:
    """What a deploy with these parameters changes: the functions' environment, and (through the
    stack's parameters) which conditional statements their policies have."""
    aws.parameters.update(parameters)
    for name, value in aws.function_environment().items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)


def _queued_batch(
    aws: LocalAws, bodies: list[str], receive_count: dict[int, str] | None = None
) -> dict[str, Any]:
    """The bodies sent to the alert queue and received back as Lambda's SQS event hands them over."""
    sqs = aws.client("sqs")
    for body in bodies:
        sqs.send_message(QueueUrl=aws.ref("AlertQueue"), MessageBody=body)
    messages: list[dict[str, Any]] = []
    while len(messages) < len(bodies):
        received = sqs.receive_message(
            QueueUrl=aws.ref("AlertQueue"), MaxNumberOfMessages=10, AttributeNames=["All"]
        ).get("Messages", [])
        assert received, f"only {len(messages)} of {len(bodies)} messages came back from the alert queue"
        messages.extend(received)
    records = []
    for index, message in enumerate(messages):
        attributes = dict(message.get("Attributes", {}))
        if receive_count and index in receive_count:
            attributes["ApproximateReceiveCount"] = receive_count[index]
        records.append(
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": attributes,
                "messageAttributes": {},
                "md5OfBody": message.get("MD5OfBody", ""),
                "eventSource": "aws:sqs",
                "eventSourceARN": aws.get_att("AlertQueue", "Arn"),
                "awsRegion": REGION,
            }
        )
    return {"Records": records}


def _updated_later(sample: dict[str, Any]) -> dict[str, Any]:
    later = copy.deepcopy(sample)
    later["detail"]["updatedAt"] = "2026-11-26T11:00:00.000Z"
    return later


def _unseen_c2_finding(number: int) -> dict[str, Any]:
    """The C&C sample as another finding, on a domain never looked up."""
    finding: dict[str, Any] = load_event(C2_SAMPLE)
    finding["detail"]["id"] = f"{number:032x}"
    dns = finding["detail"]["service"]["action"]["dnsRequestAction"]
    dns["domain"] = dns["domainWithSuffix"] = f"never-looked-up-{number}.com"
    return finding


def _enrich(observed: Observed, world: World, monkeypatch: pytest.MonkeyPatch) -> str:
    """The enrich paths; the id of the case made of the C&C sample, on the world's instance."""
    aws = observed.aws
    samples = {name: load_event(name) for name in FIRST_BATCH}
    samples[C2_SAMPLE]["detail"]["resource"]["instanceDetails"]["instanceId"] = world.instance_id
    [c2_alert] = read_document(samples[C2_SAMPLE]).alerts

    # A new batch: lookups (key from Secrets Manager), cases, executions, and a record dead-lettered.
    first = [json.dumps(sample) for sample in samples.values()] + ["{not json"]
    response = observed.invoke("EnrichFunction", _queued_batch(aws, first))
    assert response["batchItemFailures"] == [], response
    # The same findings updated later (answered from the cache), and one delivered again (a repeat).
    second = [json.dumps(_updated_later(sample)) for sample in samples.values()] + [first[1]]
    observed.invoke("EnrichFunction", _queued_batch(aws, second))
    # The day's VirusTotal quota spent: records deferred, the one received often enough re-queued.
    _deploy_with(aws, monkeypatch, VirusTotalQuotaPerDay="1")
    third = [json.dumps(_unseen_c2_finding(number)) for number in range(2)]
    response = observed.invoke("EnrichFunction", _queued_batch(aws, third, receive_count={0: "5"}))
    assert len(response["batchItemFailures"]) == 1, response
    return c2_alert.case_id


def _remediate(observed: Observed, case_id: str, expected_runs: int | None = None) -> None:
    """plan, run of each action planned to run now, finish."""
    plan = observed.invoke("RemediateFunction", {"case_id": case_id, "step": "plan"})
    runs = [item for item in plan["items"] if not item.get("approval")]
    if expected_runs is not None:
        assert len(runs) == expected_runs, plan
    for item in runs:
        observed.invoke("RemediateFunction", {"case_id": case_id, "step": "run", "index": item["index"]})
    observed.invoke("RemediateFunction", {"case_id": case_id, "step": "finish"})


def _seed(aws: LocalAws, case_id: str, actions: list[Action]) -> str:
    """A malicious case with these actions planned, stored as the enrich function would."""
    now = datetime.now(UTC)
    case = make_case(
        make_alert(),
        case_id=case_id,
        status=CaseStatus.ENRICHED,
        verdict=Verdict.MALICIOUS,
        actions=actions,
        created_at=now,
        updated_at=now,
    )
    retention = timedelta(days=int(aws.parameters["RetentionDays"]))
    repository = DynamoCaseRepository(aws.client("dynamodb"), aws.ref("CasesTable"), retention, lambda: now)
    assert repository.create(case)
    return case_id


def _approval_links(aws: LocalAws, inbox_url: str, expected: int) -> list[dict[str, str]]:
    """The approve and reject links of the approval requests the approver received."""
    found: list[dict[str, str]] = []
    deadline = time.monotonic() + 10
    while len(found) < expected and time.monotonic() < deadline:
        for message in (
            aws.client("sqs").receive_message(QueueUrl=inbox_url, MaxNumberOfMessages=10).get("Messages", [])
        ):
            text = json.loads(message["Body"])["Message"]
            # The links stand first, each on a line of its own, under the message's fixed header.
            links = dict(re.findall(r"^\s*(Approve|Reject):\s+(\S+)$", text, flags=re.MULTILINE))
            if links:
                found.append({decision.lower(): link for decision, link in links.items()})
    assert len(found) == expected, f"{len(found)} approval requests arrived, {expected} expected"
    return found


def _confirm(link: str) -> dict[str, Any]:
    """The request a person's browser sends when confirming a decision on its page."""
    query = link.split("?", 1)[1]
    return {
        "version": "2.0",
        "rawPath": "/",
        "rawQueryString": "",
        "headers": {"content-type": "application/x-www-form-urlencoded"},
        "requestContext": {"http": {"method": "POST", "path": "/", "sourceIp": "198.51.100.7"}},
        "body": query,
        "isBase64Encoded": False,
    }


def _run_scenario(observed: Observed, monkeypatch: pytest.MonkeyPatch) -> None:
    aws = observed.aws
    world = observed.world = _build_world(aws)
    _deploy_with(
        aws,
        monkeypatch,
        WafIpSetName="vtriage-blocked",
        WafIpSetId=world.ip_set_id,
        NaclRuleNumberMin="1",
        NaclRuleNumberMax="10",
        QuarantineBucket=QUARANTINE_BUCKET,
        QuarantineSourceBuckets="uploads*",
        MaxActionsPerHour="100",
    )

    # Intake: a pushed finding queued.
    pushed = observed.invoke("IntakeFunction", function_url_request(json.dumps(load_event(C2_SAMPLE))))
    assert pushed["statusCode"] == 202, pushed
    aws.client("sqs").purge_queue(QueueUrl=aws.ref("AlertQueue"))

    # Enrich, then the C&C case remediated in dry run and ticketed.
    c2_case = _enrich(observed, world, monkeypatch)
    # Isolation, snapshots and tags run; the DNS Firewall block, with no domain list here, is skipped by
    # the plan itself, which knows the outcome without acting.
    _remediate(observed, c2_case, expected_runs=3)
    ticket = observed.invoke("TicketFunction", {"case_id": c2_case})
    assert ticket["ticket"]["provider"] == "sns", ticket

    # Every action type moto can run, for real.
    _deploy_with(aws, monkeypatch, DryRun="false")
    host = [
        Action(type=ActionType.SNAPSHOT_VOLUMES, target=world.instance_id),
        Action(type=ActionType.TAG_INSTANCE, target=world.instance_id),
        Action(type=ActionType.ISOLATE_INSTANCE, target=world.instance_id),
    ]
    network = [
        Action(type=ActionType.BLOCK_IP_WAF, target="198.51.100.7"),
        Action(
            type=ActionType.BLOCK_IP_NACL,
            target="198.51.100.7",
            parameters={"instance_id": world.instance_id},
        ),
    ]
    identity_and_data = [
        Action(
            type=ActionType.DISABLE_ACCESS_KEY,
            target=world.access_key_id,
            parameters={"user_name": "ci-deployer"},
        ),
        *(
            Action(
                type=ActionType.QUARANTINE_OBJECT,
                target=f"s3://{bucket}/dropper.exe",
                parameters={"bucket": bucket, "key": "dropper.exe", **_scanned(aws, bucket, "dropper.exe")},
            )
            for bucket in SOURCE_BUCKETS
        ),
    ]
    for name, actions in (("host", host), ("network", network), ("identity", identity_and_data)):
        _remediate(observed, _seed(aws, f"iam-grants-{name}", actions), expected_runs=len(actions))

    # Two actions waiting for a person: requested by the state machine, then approved and rejected.
    waiting = [
        Action(type=ActionType.TAG_INSTANCE, target=world.instance_id, parameters={"needs_approval": "true"}),
        Action(
            type=ActionType.SNAPSHOT_VOLUMES, target=world.instance_id, parameters={"needs_approval": "true"}
        ),
    ]
    case_id = _seed(aws, "iam-grants-approval", waiting)
    plan = observed.invoke("RemediateFunction", {"case_id": case_id, "step": "plan"})
    assert [item["approval"] for item in plan["items"]] == [True, True], plan
    for index in range(len(waiting)):
        # The step before each wait: the ticket opens, then hears that the action waits and who decides
        # (ApprovalLinksInTickets=false, the default: the ticket function fetches no link).
        observed.invoke(
            "TicketFunction",
            {"step": "before_approval", "case_id": case_id, "index": index, "approval_timeout_seconds": 3600},
        )
        observed.invoke(
            "ApprovalFunction",
            {
                "case_id": case_id,
                "index": index,
                "task_token": f"token-{index}",
                "approval_url": aws.get_att("ApprovalFunctionUrl", "FunctionUrl"),
                "approval_timeout_seconds": 3600,
            },
        )
    first, second = _approval_links(aws, world.inbox_url, expected=2)
    for link in (first["approve"], second["reject"]):
        answered = observed.invoke("ApprovalFunction", _confirm(link))
        assert answered["statusCode"] == 200, answered
    # The approved action runs, then the remediation finishes with the rejected one skipped.
    observed.invoke("RemediateFunction", {"case_id": case_id, "step": "run", "index": 0})
    observed.invoke("RemediateFunction", {"case_id": case_id, "step": "finish"})


def _scanned(aws: LocalAws, bucket: str, key: str) -> dict[str, str]:
    """What GuardDuty's finding names of the object it scanned: its ETag, and its version id where the
    bucket keeps versions (then every call of the quarantine names that version)."""
    head = aws.client("s3").head_object(Bucket=bucket, Key=key)
    version = {"version_id": str(head["VersionId"])} if head.get("VersionId") else {}
    return {"etag": str(head["ETag"]).strip('"'), **version}


@pytest.fixture(scope="module")
def observed() -> Iterator[Observed]:
    """The scenario run once on one local stack, VirusTotal replayed; the stack kept for the checks."""
    with pytest.MonkeyPatch.context() as outside:
        outside.delenv("VT_API_KEY", raising=False)
        with ReplayServer(bundled_recordings(), api_key="local-replay-key") as virustotal:
            outside.setenv("VT_BASE_URL", virustotal.base_url)
            with LocalAws(run_state_machines=False) as aws, pytest.MonkeyPatch.context() as deployed:
                result = Observed(aws)
                _run_scenario(result, deployed)
                yield result


# ---------------------------------------------------------------- the checks


@pytest.mark.parametrize("logical_id", FUNCTIONS)
def test_every_call_a_function_makes_is_granted_by_its_policy(observed: Observed, logical_id: str) -> None:
    # Given the calls the function's handler made on its main paths
    calls = observed.calls.get(logical_id, [])
    actions = {need.action for call in calls for need in needs_of(call, observed)}
    assert EXERCISED[logical_id] <= actions, (
        f"{logical_id} never called {sorted(EXERCISED[logical_id] - actions)}: the scenario missed a path"
    )

    # When they are checked against the function's policies as deployed, Deny statements included
    refused = refused_needs(calls, deployed_statements(observed.aws, logical_id), observed)

    # Then each one is granted
    assert not refused, describe(logical_id, refused)


def test_a_policy_without_batch_get_item_is_reported_naming_the_function_and_the_action(
    observed: Observed,
) -> None:
    # Given the enrich function's statements with dynamodb:BatchGetItem taken out
    statements = deployed_statements(observed.aws, "EnrichFunction")
    for statement in statements:
        statement["Action"] = [a for a in _as_list(statement["Action"]) if a != "dynamodb:BatchGetItem"]

    # When its calls are checked against them
    refused = refused_needs(observed.calls["EnrichFunction"], statements, observed)

    # Then the missing grant is reported, on the enrichments table, naming the function
    assert {(need.action, need.resource) for need in refused} == {
        ("dynamodb:BatchGetItem", observed.aws.get_att("EnrichmentsTable", "Arn"))
    }
    assert "EnrichFunction: dynamodb:BatchGetItem on arn:aws:dynamodb" in describe("EnrichFunction", refused)


def test_as_deployed_by_default_the_ticket_function_may_not_and_does_not_invoke_the_approval_function(
    observed: Observed,
) -> None:
    # Given the ticket function's calls through the scenario (its ticket steps, before approvals included)
    # and its policy as deployed by default (ApprovalLinksInTickets=false)
    calls = observed.calls["TicketFunction"]
    statements = deployed_statements(observed.aws, "TicketFunction")

    # Then it called no Lambda API, and no statement lets it invoke a function
    assert not [call for call in calls if call.service == "lambda"]
    assert not [
        statement for statement in statements if "lambda:InvokeFunction" in str(statement.get("Action"))
    ]


def test_a_grant_on_another_resource_does_not_count(observed: Observed) -> None:
    # Given the ticket function's statements with PutItem granted on another table than the cases'
    statements = deployed_statements(observed.aws, "TicketFunction")
    for statement in statements:
        if statement.get("Sid") == "Cases":
            statement["Resource"] = observed.aws.get_att("GuardrailsTable", "Arn")

    # When its calls are checked, Then its reads and writes of cases are reported
    refused = refused_needs(observed.calls["TicketFunction"], statements, observed)
    assert {need.action for need in refused} == {"dynamodb:GetItem", "dynamodb:PutItem"}


# What the remediate function's policy lets through, or not, when a call or a resource is other than in
# the scenario: the calls are the recorded ones with one thing changed (a tag, a group, a bucket), as a
# bug in the code or a forged finding could change it.


@dataclass
class Retagged:
    """The account as observed, but for some resources' tags and some buckets' owners: what IAM would
    see if they were so."""

    observed: Observed
    added: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    removed: Mapping[str, set[str]] = field(default_factory=dict)
    owners: Mapping[str, str] = field(default_factory=dict)

    def secret_arn(self, name: str) -> str:
        """As observed."""
        return self.observed.secret_arn(name)

    def tags(self, arn: str) -> Mapping[str, str]:
        """The observed tags, with those added and without those removed."""
        tags = {**self.observed.tags(arn), **self.added.get(arn, {})}
        return {key: value for key, value in tags.items() if key not in self.removed.get(arn, set())}

    def bucket_account(self, bucket: str) -> str:
        """The owner given for the bucket, else as observed."""
        return self.owners.get(bucket) or self.observed.bucket_account(bucket)

    def interface(self, interface_id: str) -> Mapping[str, str]:
        """As observed."""
        return self.observed.interface(interface_id)


def remediate_calls(observed: Observed, operation: str) -> list[ApiCall]:
    """The remediate function's recorded calls of one operation."""
    found = [call for call in observed.calls["RemediateFunction"] if call.operation == operation]
    assert found, f"the remediate function never called {operation}: the scenario missed a path"
    return found


def changed(call: ApiCall, operation: str | None = None, **parameters: Any) -> ApiCall:
    """The call with some parameters set otherwise (None: left out), or as another operation."""
    merged = {**call.parameters, **parameters}
    kept = {key: value for key, value in merged.items() if value is not None}
    return ApiCall(call.service, operation or call.operation, kept)


def refusals(observed: Observed, calls: list[ApiCall], lookup: Lookup | None = None) -> dict[str, str]:
    """Why the remediate function's deployed policy refuses each need of the calls, by resource."""
    statements = deployed_statements(observed.aws, "RemediateFunction")
    refused = refused_needs(calls, statements, lookup or observed)
    return {f"{need.action} {need.resource}": why.reason for need, why in refused.items()}


def the_world(observed: Observed) -> World:
    assert observed.world is not None
    return observed.world


def test_isolating_a_protected_instance_is_denied_by_the_policy(observed: Observed) -> None:
    # Given the calls that moved the instance's interface to the quarantine group, granted as it was
    world = the_world(observed)
    moves = remediate_calls(observed, "ModifyNetworkInterfaceAttribute")
    instance = _ec2_arn(world.instance_id)
    assert refusals(observed, moves) == {}

    # When they are checked as if the instance carried the protected tag
    protected = Retagged(observed, added={instance: {PROTECTED_TAG: "break-glass"}})
    refused = refusals(observed, moves, protected)

    # Then IAM refuses them, on the instance, by the protected-resources Deny
    assert refused == {
        f"ec2:ModifyNetworkInterfaceAttribute {instance}": "denied by NeverChangeProtectedResources"
    }


def test_every_change_to_a_protected_instance_its_volumes_and_interfaces_is_denied(
    observed: Observed,
) -> None:
    # Given every call that changed the instance, its volume or its interface (snapshot, tags, isolation)
    world = the_world(observed)
    [instance] = observed.aws.client("ec2").describe_instances(InstanceIds=[world.instance_id])[
        "Reservations"
    ][0]["Instances"]
    resources = [
        _ec2_arn(world.instance_id),
        *(_ec2_arn(m["Ebs"]["VolumeId"]) for m in instance["BlockDeviceMappings"]),
        *(_ec2_arn(i["NetworkInterfaceId"]) for i in instance["NetworkInterfaces"]),
    ]
    changes = [
        *remediate_calls(observed, "CreateSnapshot"),
        *[
            c
            for c in remediate_calls(observed, "CreateTags")
            if world.instance_id in c.parameters["Resources"]
        ],
        *remediate_calls(observed, "ModifyNetworkInterfaceAttribute"),
    ]

    # When they are checked as if each of those carried the protected tag
    protected = Retagged(observed, added={arn: {PROTECTED_TAG: ""} for arn in resources})
    refused = refusals(observed, changes, protected)

    # Then each change is denied on each of them, whatever the tag's value (even empty)
    assert {key.split(" ", 1)[1] for key in refused} == set(resources)
    assert set(refused.values()) == {"denied by NeverChangeProtectedResources"}


def test_tags_are_never_deleted_wholesale_and_the_tags_that_decide_access_never_touched(
    observed: Observed,
) -> None:
    # Given the call that tagged the quarantined instance, a network ACL vtriage wrote to, and the
    # account's own web group
    world = the_world(observed)
    tagging, *_ = [
        call
        for call in remediate_calls(observed, "CreateTags")
        if call.parameters["Resources"] == [world.instance_id]
    ]
    acl_id = str(remediate_calls(observed, "CreateNetworkAclEntry")[0].parameters["NetworkAclId"])
    instance, acl, web_group = _ec2_arn(world.instance_id), _ec2_arn(acl_id), _ec2_arn(world.web_group_id)
    wholesale = changed(tagging, Tags=None, operation="DeleteTags")

    # When tags are deleted without naming any (EC2 then deletes them all), the protected tag deleted,
    # the NACL opt-in set, or the account's group marked as a quarantine group
    deleting_all = refusals(observed, [wholesale])
    deleting_protected = refusals(
        observed, [changed(tagging, Tags=[{"Key": PROTECTED_TAG}], operation="DeleteTags")]
    )
    opting_in = refusals(
        observed, [changed(tagging, Resources=[acl_id], Tags=[{"Key": NACL_OPT_IN, "Value": "allowed"}])]
    )
    marking = refusals(
        observed,
        [
            changed(
                tagging,
                Resources=[world.web_group_id],
                Tags=[{"Key": "vtriage:purpose", "Value": "quarantine"}],
            )
        ],
    )

    # Then IAM refuses each, by the Deny that says why
    assert deleting_all == {f"ec2:DeleteTags {instance}": "denied by NeverDeleteEveryTag"}
    assert deleting_protected == {f"ec2:DeleteTags {instance}": "denied by NeverTouchTheTagsThatDecideAccess"}
    assert opting_in == {f"ec2:CreateTags {acl}": "denied by NeverTouchTheTagsThatDecideAccess"}
    assert marking == {f"ec2:CreateTags {web_group}": "denied by ExceptAtCreationNoTagThatDecidesAccess"}
    # And the wholesale delete would be refused without any Deny: the Allow needs the keys named (under
    # ForAllValues alone, a request without aws:TagKeys would match it)
    allows = [s for s in deployed_statements(observed.aws, "RemediateFunction") if s["Effect"] == "Allow"]
    [why] = refused_needs([wholesale], allows, observed).values()
    assert why.reason == "allowed by no statement"


def test_only_vtriage_quarantine_groups_are_created_closed_opened_or_moved_into(observed: Observed) -> None:
    # Given the calls that created the quarantine groups, closed one, opened the untracking one, and moved
    # the interface through the untracking group into the closed one
    world = the_world(observed)
    create, *_ = remediate_calls(observed, "CreateSecurityGroup")
    revoke, *_ = remediate_calls(observed, "RevokeSecurityGroupEgress")
    authorize, *_ = remediate_calls(observed, "AuthorizeSecurityGroupIngress")
    *_, into_closed = remediate_calls(observed, "ModifyNetworkInterfaceAttribute")
    [closed_group] = into_closed.parameters["Groups"]
    web_group = _ec2_arn(world.web_group_id)

    # When the account's own web group is closed, opened or an interface moved into it, the closed
    # quarantine group opened, or a group created without the quarantine tag
    refused = refusals(
        observed,
        [
            changed(revoke, GroupId=world.web_group_id),
            changed(authorize, GroupId=world.web_group_id),
            changed(into_closed, Groups=[world.web_group_id]),
            changed(authorize, GroupId=closed_group),
            changed(create, TagSpecifications=None),
        ],
    )

    # Then IAM allows none of it
    assert refused == {
        f"ec2:RevokeSecurityGroupEgress {web_group}": "allowed by no statement",
        f"ec2:AuthorizeSecurityGroupIngress {web_group}": "allowed by no statement",
        f"ec2:ModifyNetworkInterfaceAttribute {web_group}": "allowed by no statement",
        f"ec2:AuthorizeSecurityGroupIngress {_ec2_arn(closed_group)}": "allowed by no statement",
        f"ec2:CreateSecurityGroup {_ec2_arn_of_type('security-group', '*')}": "allowed by no statement",
    }


def test_network_acl_entries_are_written_only_where_the_team_opted_in(observed: Observed) -> None:
    # Given the calls that wrote the deny entries and the rule cursor into the opted-in network ACLs
    entries = remediate_calls(observed, "CreateNetworkAclEntry")
    cursors = [
        c for c in remediate_calls(observed, "CreateTags") if c.parameters["Resources"][0].startswith("acl-")
    ]
    acls = {_ec2_arn(str(call.parameters["NetworkAclId"])) for call in entries}

    # When they are checked as if the network ACLs carried no opt-in tag
    not_opted_in = Retagged(observed, removed={arn: {NACL_OPT_IN} for arn in acls})
    refused = refusals(observed, [*entries, *cursors], not_opted_in)

    # Then IAM refuses every entry and every cursor
    assert refused == {
        **{f"ec2:CreateNetworkAclEntry {arn}": "allowed by no statement" for arn in acls},
        **{f"ec2:CreateTags {arn}": "allowed by no statement" for arn in acls},
    }


def test_users_are_contained_only_with_the_stacks_policy_and_never_when_protected(observed: Observed) -> None:
    # Given the calls that disabled the key and contained its user
    [attach] = remediate_calls(observed, "AttachUserPolicy")
    [disable] = remediate_calls(observed, "UpdateAccessKey")
    user = f"arn:aws:iam::{ACCOUNT_ID}:user/ci-deployer"
    administrator = "arn:aws:iam::aws:policy/AdministratorAccess"

    # When another policy is attached, an inline one written, or the user carries the protected tag
    other_policy = refusals(
        observed,
        [
            changed(attach, PolicyArn=administrator),
            ApiCall(
                "iam", "PutUserPolicy", {"UserName": "ci-deployer", "PolicyName": "p", "PolicyDocument": "{}"}
            ),
        ],
    )
    protected = refusals(
        observed, [attach, disable], Retagged(observed, added={user: {PROTECTED_TAG: "yes"}})
    )

    # Then IAM refuses each
    assert other_policy == {
        f"iam:AttachUserPolicy {user}": "allowed by no statement",
        f"iam:PutUserPolicy {user}": "allowed by no statement",
    }
    assert protected == {
        f"iam:AttachUserPolicy {user}": "denied by NeverChangeProtectedResources",
        f"iam:UpdateAccessKey {user}": "denied by NeverChangeProtectedResources",
    }


def test_objects_move_only_out_of_the_named_buckets_of_this_account_never_from_quarantine_or_logs(
    observed: Observed,
) -> None:
    # Given the calls that copied an object to quarantine and deleted it where it was
    [delete, *_] = [
        c for c in remediate_calls(observed, "DeleteObject") if c.parameters["Bucket"] == "uploads"
    ]
    [copy_call, *_] = remediate_calls(observed, "CopyObject")
    source = str(copy_call.parameters["CopySource"]["Bucket"]), str(copy_call.parameters["CopySource"]["Key"])
    assert refusals(observed, [delete, copy_call]) == {}

    # When the object is in a bucket of another account, in a bucket not named, in the quarantine
    # bucket, under AWSLogs/, or tagged protected
    elsewhere = refusals(observed, [delete], Retagged(observed, owners={"uploads": "210987654321"}))
    refused = refusals(
        observed,
        [
            changed(delete, Bucket="payroll"),
            changed(delete, Bucket=QUARANTINE_BUCKET, Key="case/uploads/dropper.exe"),
            changed(delete, Key="AWSLogs/123456789012/CloudTrail/us-east-1/trail.json.gz"),
        ],
    )
    protected_object = _object_arn(*source)
    copy_protected = refusals(
        observed, [copy_call], Retagged(observed, added={protected_object: {PROTECTED_TAG: "legal-hold"}})
    )

    # Then IAM refuses each
    assert elsewhere == {"s3:DeleteObject arn:aws:s3:::uploads/dropper.exe": "allowed by no statement"}
    assert refused == {
        "s3:DeleteObject arn:aws:s3:::payroll/dropper.exe": "allowed by no statement",
        f"s3:DeleteObject arn:aws:s3:::{QUARANTINE_BUCKET}/case/uploads/dropper.exe": (
            "denied by KeepQuarantinedCopies"
        ),
        "s3:DeleteObject arn:aws:s3:::uploads/AWSLogs/123456789012/CloudTrail/us-east-1/trail.json.gz": (
            "denied by NeverTouchAwsLogs"
        ),
    }
    assert copy_protected == {
        f"{copy_call_read_action(copy_call)} {protected_object}": "denied by NeverMoveProtectedObjects"
    }


def test_the_version_scanned_is_deleted_only_out_of_the_named_buckets_of_this_account(
    observed: Observed,
) -> None:
    # Given the calls that read, copied and deleted the version GuardDuty scanned in the versioned bucket,
    # each naming it
    [delete] = [c for c in remediate_calls(observed, "DeleteObject") if c.parameters.get("VersionId")]
    [head] = [c for c in remediate_calls(observed, "HeadObject") if c.parameters.get("VersionId")]
    [tagging] = [c for c in remediate_calls(observed, "GetObjectTagging") if c.parameters.get("VersionId")]
    assert delete.parameters["Bucket"] == "uploads-versioned"
    assert refusals(observed, [delete, head, tagging]) == {}

    # When the version is in a bucket of another account, in a bucket not named, in the quarantine bucket
    # or under AWSLogs/
    elsewhere = refusals(observed, [delete], Retagged(observed, owners={"uploads-versioned": "210987654321"}))
    refused = refusals(
        observed,
        [
            changed(delete, Bucket="payroll"),
            changed(delete, Bucket=QUARANTINE_BUCKET, Key="case/uploads/dropper.exe"),
            changed(delete, Key="AWSLogs/123456789012/CloudTrail/us-east-1/trail.json.gz"),
            changed(tagging, Key="AWSLogs/123456789012/CloudTrail/us-east-1/trail.json.gz"),
        ],
    )

    # Then IAM refuses each: a version is deleted (s3:DeleteObjectVersion) under the same bounds as an object
    logs = "arn:aws:s3:::uploads-versioned/AWSLogs/123456789012/CloudTrail/us-east-1/trail.json.gz"
    assert elsewhere == {
        "s3:DeleteObjectVersion arn:aws:s3:::uploads-versioned/dropper.exe": "allowed by no statement"
    }
    assert refused == {
        "s3:DeleteObjectVersion arn:aws:s3:::payroll/dropper.exe": "allowed by no statement",
        f"s3:DeleteObjectVersion arn:aws:s3:::{QUARANTINE_BUCKET}/case/uploads/dropper.exe": (
            "denied by KeepQuarantinedCopies"
        ),
        f"s3:DeleteObjectVersion {logs}": "denied by NeverTouchAwsLogs",
        f"s3:GetObjectVersionTagging {logs}": "denied by NeverTouchAwsLogs",
    }


def copy_call_read_action(call: ApiCall) -> str:
    """The action a copy reads its source with."""
    return "s3:GetObjectVersion" if _copy_source(call.parameters["CopySource"])[2] else "s3:GetObject"
