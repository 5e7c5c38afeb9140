"""Every AWS API call a function makes is granted by its IAM policy in template.yaml.

moto enforces no IAM, so a handler that starts calling an API its policy does not grant passes every
other test and fails only once deployed (as the enrich cache's move from Query/PutItem to
BatchGetItem/BatchWriteItem did). Here each real handler runs on the local stack through its main
paths while every botocore call is recorded; each call is then turned into the IAM actions (and, where
the request names it simply, the resource) that authorise it, and checked against the Allow statements
of that function's policies, as deployed with the parameters the scenario used.

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
- TicketFunction: a ticket for the C&C case through the SNS provider.
- IntakeFunction: a pushed finding queued.
Not covered: the DNS Firewall actuator's calls (moto has no Route 53 Resolver DNS Firewall, so the
list stays unconfigured and the actuator calls nothing), the vendor ticket providers, rollback (run by
an operator's `vtriage rollback`, not by a function).

Conditions are evaluated for the keys these calls set (`aws:TagKeys`, `ec2:CreateAction`); a statement
whose condition uses another key fails the test until this file learns it.
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
from typing import Any
from unittest import mock
from urllib.parse import parse_qs, unquote

import pytest
from botocore.client import BaseClient

from tests.fakes import make_alert, make_case
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
        "ec2:CreateSnapshot",
        "ec2:CreateSecurityGroup",
        "ec2:ModifyNetworkInterfaceAttribute",
        "ec2:CreateTags",
        "ec2:CreateNetworkAclEntry",
        "wafv2:UpdateIPSet",
        "iam:UpdateAccessKey",
        "iam:PutUserPolicy",
        "s3:PutObject",
        "s3:DeleteObject",
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
    "TicketFunction": {"dynamodb:GetItem", "dynamodb:PutItem", "sns:Publish"},
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
    """An IAM action a call needs, on a resource when the request names it simply (None: any resource),
    with the condition keys the request sets."""

    action: str
    resource: str | None = None
    context: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def key_values(self, key: str) -> tuple[str, ...] | None:
        """The values of a condition key, or None when the request does not set it."""
        return dict(self.context).get(key)


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
EC2_RESOURCE_TYPES = {"i-": "instance", "sg-": "security-group", "acl-": "network-acl", "snap-": "snapshot"}


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


def needs_of(call: ApiCall, secret_arn: Callable[[str], str]) -> list[Need]:
    """The IAM actions (with resources where simple) that authorise this call."""
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
        return [Need(action, secret_arn(str(p["SecretId"])))]
    if call.service == "iam" and "UserName" in p:
        return [Need(action, f"arn:aws:iam::{ACCOUNT_ID}:user/{p['UserName']}")]
    if call.service == "wafv2":
        scope = "global" if p.get("Scope") == "CLOUDFRONT" else "regional"
        return [Need(action, f"arn:aws:wafv2:{REGION}:{ACCOUNT_ID}:{scope}/ipset/{p['Name']}/{p['Id']}")]
    if call.service == "s3":
        return _s3_needs(call, action)
    if call.service == "ec2":
        return _ec2_needs(call, action)
    return [Need(action)]


def _s3_needs(call: ApiCall, action: str) -> list[Need]:
    p = call.parameters
    if "Key" not in p:
        return [Need(action, f"arn:aws:s3:::{p['Bucket']}")]
    target = _object_arn(p["Bucket"], p["Key"])
    version_suffix = "Version" if p.get("VersionId") else ""
    if call.operation == "CopyObject":
        # A copy reads its source (a given version through GetObjectVersion) and writes its target,
        # with its tags when the request sets them.
        bucket, key, version = _copy_source(p["CopySource"])
        needs = [
            Need("s3:GetObjectVersion" if version else "s3:GetObject", _object_arn(bucket, key)),
            Need("s3:PutObject", target),
        ]
        if p.get("Tagging") and p.get("TaggingDirective") == "REPLACE":
            needs.append(Need("s3:PutObjectTagging", target))
        if p.get("TaggingDirective", "COPY") == "COPY":
            needs.append(Need(f"s3:GetObject{'Version' if version else ''}Tagging", _object_arn(bucket, key)))
        return needs
    if call.operation in {"GetObject", "HeadObject", "DeleteObject", "GetObjectTagging", "PutObjectTagging"}:
        service, _, name = action.partition(":")
        name = name.replace("Object", f"Object{version_suffix}", 1) if version_suffix else name
        return [Need(f"{service}:{name}", target)]
    return [Need(action, target)]


def _ec2_needs(call: ApiCall, action: str) -> list[Need]:
    p = call.parameters
    if call.operation in {"CreateTags", "DeleteTags"}:
        keys = _tag_keys(p.get("Tags"))
        return [
            Need(action, _ec2_arn(resource_id), (("aws:TagKeys", keys),)) for resource_id in p["Resources"]
        ]
    needs = [Need(action)]
    # Tags given at creation are authorised as ec2:CreateTags, with the creating action as ec2:CreateAction.
    for specification in p.get("TagSpecifications", []):
        resource_type = str(specification["ResourceType"]).replace("_", "-")
        needs.append(
            Need(
                "ec2:CreateTags",
                _ec2_arn_of_type(resource_type, "*"),
                (
                    ("aws:TagKeys", _tag_keys(specification.get("Tags"))),
                    ("ec2:CreateAction", (call.operation,)),
                ),
            )
        )
    return needs


def _ec2_arn(resource_id: str) -> str:
    for prefix, resource_type in EC2_RESOURCE_TYPES.items():
        if resource_id.startswith(prefix):
            return _ec2_arn_of_type(resource_type, resource_id)
    raise AssertionError(f"tagging {resource_id}: teach _ec2_arn() its resource type")


def _ec2_arn_of_type(resource_type: str, resource_id: str) -> str:
    # Snapshot ARNs name no account.
    account = "" if resource_type == "snapshot" else ACCOUNT_ID
    return f"arn:aws:ec2:{REGION}:{account}:{resource_type}/{resource_id}"


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


def allow_statements(aws: LocalAws, logical_id: str) -> list[dict[str, Any]]:
    """The function's Allow statements as deployed with the stack's parameters: Fn::If decided,
    intrinsic functions resolved to local names."""
    template = aws.template
    found: list[dict[str, Any]] = []
    for policy in aws.functions[logical_id].policies:
        # Managed policies and SAM policy templates (DynamoDBCrudPolicy...) hide what they grant from here.
        assert isinstance(policy, dict), f"{logical_id}: teach allow_statements() what {policy!r} grants"
        assert "Statement" in policy, f"{logical_id}: teach allow_statements() what {policy!r} grants"
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
            if statement["Effect"] == "Allow":
                found.append(aws.resolve(statement))
    return found


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _wildcard(pattern: str, *, ignore_case: bool = False) -> re.Pattern[str]:
    """An IAM pattern (* and ?) as a regular expression."""
    regex = re.escape(pattern).replace(r"\*", ".*").replace(r"\?", ".")
    return re.compile(f"^{regex}$", re.IGNORECASE if ignore_case else 0)


def _condition_met(need: Need, condition: Mapping[str, Any]) -> bool:
    for operator, tests in condition.items():
        for key, allowed in tests.items():
            allowed_values = {str(value) for value in _as_list(allowed)}
            values = need.key_values(key)
            if operator == "StringEquals":
                if values is None or not set(values) <= allowed_values or not values:
                    return False
            elif operator == "ForAllValues:StringEquals":
                if not set(values or ()) <= allowed_values:
                    return False
            else:
                raise AssertionError(f"teach _condition_met() the condition {operator} {key}")
    return True


def grants(statement: Mapping[str, Any], need: Need) -> bool:
    """Whether this Allow statement authorises the need."""
    if not any(
        _wildcard(str(action), ignore_case=True).match(need.action)
        for action in _as_list(statement["Action"])
    ):
        return False
    resource_matches = need.resource is None or any(
        _wildcard(str(resource)).match(need.resource) for resource in _as_list(statement["Resource"])
    )
    return resource_matches and _condition_met(need, statement.get("Condition", {}))


def missing_grants(
    calls: list[ApiCall], statements: list[dict[str, Any]], secret_arn: Callable[[str], str]
) -> dict[Need, list[str]]:
    """Each need of the calls that no statement grants, with the operations that needed it."""
    missing: dict[Need, list[str]] = {}
    for call in calls:
        for need in needs_of(call, secret_arn):
            if not any(grants(statement, need) for statement in statements):
                missing.setdefault(need, []).append(f"{call.service}:{call.operation}")
    return missing


def describe(logical_id: str, missing: Mapping[Need, list[str]]) -> str:
    """A failure message naming the function, the action, the resource and the calls."""
    lines = [
        f"{logical_id}: {need.action} on {need.resource or 'any resource'}"
        + (f" with {dict(need.context)}" if need.context else "")
        + f", needed by {sorted(set(operations))}"
        for need, operations in missing.items()
    ]
    return f"{logical_id}'s policies in template.yaml do not grant:\n  " + "\n  ".join(lines)


# ---------------------------------------------------------------- the scenario


@dataclass
class Observed:
    """The local stack after the scenario, and the calls each function made."""

    aws: LocalAws
    calls: dict[str, list[ApiCall]] = field(default_factory=dict)

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


@dataclass
class World:
    """The resources the cases act on."""

    instance_id: str
    vpc_id: str
    ip_set_id: str
    access_key_id: str
    inbox_url: str


def _build_world(aws: LocalAws) -> World:
    launched = launch_instance(aws.client("ec2"))
    ip_set_id = aws.client("wafv2").create_ip_set(
        Name="vtriage-blocked", Scope="REGIONAL", IPAddressVersion="IPV4", Addresses=[]
    )["Summary"]["Id"]
    iam = aws.client("iam")
    iam.create_user(UserName="ci-deployer")
    access_key_id = iam.create_access_key(UserName="ci-deployer")["AccessKey"]["AccessKeyId"]
    s3 = aws.client("s3")
    for bucket in ("uploads", "versioned-uploads", QUARANTINE_BUCKET):
        s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket="versioned-uploads", VersioningConfiguration={"Status": "Enabled"})
    for bucket in ("uploads", "versioned-uploads"):
        s3.put_object(Bucket=bucket, Key="dropper.exe", Body=b"MZ")
    sqs, sns = aws.client("sqs"), aws.client("sns")
    inbox_url = sqs.create_queue(QueueName=APPROVER_INBOX)["QueueUrl"]
    inbox_arn = sqs.get_queue_attributes(QueueUrl=inbox_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(TopicArn=aws.ref("ApprovalTopic"), Protocol="sqs", Endpoint=inbox_arn)
    return World(launched.instance_id, launched.vpc_id, ip_set_id, access_key_id, inbox_url)


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
            links = dict(re.findall(r"^(Approve|Reject):\s+(\S+)$", text, flags=re.MULTILINE))
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
    world = _build_world(aws)
    _deploy_with(
        aws,
        monkeypatch,
        WafIpSetName="vtriage-blocked",
        WafIpSetId=world.ip_set_id,
        NaclRuleNumberMin="1",
        NaclRuleNumberMax="10",
        QuarantineBucket=QUARANTINE_BUCKET,
        MaxActionsPerHour="100",
    )

    # Intake: a pushed finding queued.
    pushed = observed.invoke("IntakeFunction", function_url_request(json.dumps(load_event(C2_SAMPLE))))
    assert pushed["statusCode"] == 202, pushed
    aws.client("sqs").purge_queue(QueueUrl=aws.ref("AlertQueue"))

    # Enrich, then the C&C case remediated in dry run and ticketed.
    c2_case = _enrich(observed, world, monkeypatch)
    _remediate(observed, c2_case, expected_runs=4)
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
        Action(type=ActionType.BLOCK_IP_NACL, target="198.51.100.7", parameters={"vpc_id": world.vpc_id}),
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
                parameters={"bucket": bucket, "key": "dropper.exe"},
            )
            for bucket in ("uploads", "versioned-uploads")
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
    actions = {need.action for call in calls for need in needs_of(call, observed.secret_arn)}
    assert EXERCISED[logical_id] <= actions, (
        f"{logical_id} never called {sorted(EXERCISED[logical_id] - actions)}: the scenario missed a path"
    )

    # When they are checked against the function's policies as deployed
    missing = missing_grants(calls, allow_statements(observed.aws, logical_id), observed.secret_arn)

    # Then each one is granted
    assert not missing, describe(logical_id, missing)


def test_a_policy_without_batch_get_item_is_reported_naming_the_function_and_the_action(
    observed: Observed,
) -> None:
    # Given the enrich function's statements with dynamodb:BatchGetItem taken out
    statements = allow_statements(observed.aws, "EnrichFunction")
    for statement in statements:
        statement["Action"] = [a for a in _as_list(statement["Action"]) if a != "dynamodb:BatchGetItem"]

    # When its calls are checked against them
    missing = missing_grants(observed.calls["EnrichFunction"], statements, observed.secret_arn)

    # Then the missing grant is reported, on the enrichments table, naming the function
    assert {(need.action, need.resource) for need in missing} == {
        ("dynamodb:BatchGetItem", observed.aws.get_att("EnrichmentsTable", "Arn"))
    }
    assert "EnrichFunction: dynamodb:BatchGetItem on arn:aws:dynamodb" in describe("EnrichFunction", missing)


def test_a_grant_on_another_resource_does_not_count(observed: Observed) -> None:
    # Given the ticket function's statements with PutItem granted on another table than the cases'
    statements = allow_statements(observed.aws, "TicketFunction")
    for statement in statements:
        if statement.get("Sid") == "Cases":
            statement["Resource"] = observed.aws.get_att("GuardrailsTable", "Arn")

    # When its calls are checked, Then its reads and writes of cases are reported
    missing = missing_grants(observed.calls["TicketFunction"], statements, observed.secret_arn)
    assert {need.action for need in missing} == {"dynamodb:GetItem", "dynamodb:PutItem"}
