"""The approvals' resources in template.yaml, read as IAM would read them: who may publish approval
requests and tickets, who may subscribe to them, and who may read the key that signs approval links;
and the ticket providers' URLs, https only.

A small evaluator applies each resource policy to a request (action, principal, account, TLS) the way
IAM combines policies within one account: an explicit Deny wins; otherwise the principal's own IAM
policy or an Allow of the resource policy grants it. Every caller below is given an identity policy
that allows everything (an administrator), so that only the resource policy can stop it.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import Any

import pytest

from tests.template.test_template import conditional_branches
from vtriage_local.template import functions, load_template

ACCOUNT = "123456789012"
OTHER_ACCOUNT = "210987654321"


def _role(function: str) -> str:
    return f"arn:aws:iam::{ACCOUNT}:role/vtriage-{function}Role-1A2B3C4D5E6F"


def _resolve(value: Any) -> Any:
    """The template's intrinsic functions, as a deployment in ACCOUNT would resolve them."""
    if isinstance(value, list):
        return [_resolve(item) for item in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"Ref"}:
        name = value["Ref"]
        return {"AWS::AccountId": ACCOUNT, "AWS::Partition": "aws", "AWS::Region": "us-east-1"}.get(
            name, f"arn:aws:resource:us-east-1:{ACCOUNT}:{name}"
        )
    if set(value) == {"Fn::GetAtt"}:
        target = value["Fn::GetAtt"]
        logical_id, attribute = target if isinstance(target, list) else str(target).split(".", 1)
        assert attribute == "Arn", value
        assert logical_id.endswith("FunctionRole"), value
        return _role(logical_id.removesuffix("Role"))
    if set(value) == {"Fn::Sub"}:
        text = value["Fn::Sub"]
        return text.replace("${AWS::Partition}", "aws").replace("${AWS::AccountId}", ACCOUNT)
    return {key: _resolve(item) for key, item in value.items()}


@dataclass(frozen=True)
class Request:
    """One API call, as IAM sees it."""

    action: str
    principal_arn: str
    principal_account: str = ACCOUNT
    secure_transport: bool = True

    def context(self) -> dict[str, str]:
        return {
            "aws:PrincipalArn": self.principal_arn,
            "aws:PrincipalAccount": self.principal_account,
            "aws:SecureTransport": str(self.secure_transport).lower(),
        }


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _condition_holds(operator: str, key: str, expected: Any, request: Request) -> bool:
    actual = request.context()[key]  # a key the evaluator does not know fails the test here
    values = [str(value) for value in _listed(expected)]
    checks = {
        "ArnEquals": lambda: actual in values,
        "ArnNotEquals": lambda: actual not in values,
        "StringEquals": lambda: actual in values,
        "StringNotEquals": lambda: actual not in values,
        "Bool": lambda: actual in values,
    }
    return checks[operator]()


def _applies(statement: dict[str, Any], request: Request) -> bool:
    actions = _listed(statement["Action"])
    if not any(fnmatch.fnmatchcase(request.action, pattern) for pattern in actions):
        return False
    principal = statement["Principal"]
    if principal != "*":
        allowed = _listed(principal["AWS"])
        root = f"arn:aws:iam::{request.principal_account}:root"
        if root not in allowed and request.principal_arn not in allowed:
            return False
    return all(
        _condition_holds(operator, key, expected, request)
        for operator, pairs in statement.get("Condition", {}).items()
        for key, expected in pairs.items()
    )


def allowed(statements: list[dict[str, Any]], request: Request, *, identity_allows: bool = True) -> bool:
    """Whether the request succeeds: no Deny of the resource policy applies, and the caller's own
    policy (same account) or an Allow of the resource policy grants it."""
    if any(s["Effect"] == "Deny" and _applies(s, request) for s in statements):
        return False
    same_account = request.principal_account == ACCOUNT
    return (identity_allows and same_account) or any(
        s["Effect"] == "Allow" and _applies(s, request) for s in statements
    )


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


def _policy(template: dict[str, Any], logical_id: str, document_key: str) -> list[dict[str, Any]]:
    document = _resolve(template["Resources"][logical_id]["Properties"][document_key])
    statements: list[dict[str, Any]] = document["Statement"]
    return statements


ADMIN = f"arn:aws:iam::{ACCOUNT}:role/Administrator"
ROOT = f"arn:aws:iam::{ACCOUNT}:root"
READ = "secretsmanager:GetSecretValue"


@pytest.mark.parametrize(
    ("caller", "request_", "approvals", "tickets"),
    [
        ("the approval function", Request("sns:Publish", _role("ApprovalFunction")), True, False),
        ("the ticket function", Request("sns:Publish", _role("TicketFunction")), False, True),
        ("the enrich function", Request("sns:Publish", _role("EnrichFunction")), False, False),
        ("an administrator", Request("sns:Publish", ADMIN), False, False),
        ("an administrator subscribing", Request("sns:Subscribe", ADMIN), True, True),
        (
            "another account subscribing",
            Request("sns:Subscribe", f"arn:aws:iam::{OTHER_ACCOUNT}:root", OTHER_ACCOUNT),
            False,
            False,
        ),
        (
            "the approval function without TLS",
            Request("sns:Publish", _role("ApprovalFunction"), secure_transport=False),
            False,
            False,
        ),
    ],
)
def test_only_the_approval_function_publishes_approvals_and_only_the_account_subscribes(
    caller: str, request_: Request, approvals: bool, tickets: bool, template: dict[str, Any]
) -> None:
    # Given the two topics' policies, and a caller whose own policy allows everything
    # When it publishes to or subscribes to each topic
    to_approvals = allowed(_policy(template, "ApprovalTopicPolicy", "PolicyDocument"), request_)
    to_tickets = allowed(_policy(template, "TicketTopicPolicy", "PolicyDocument"), request_)

    # Then only the topic's own publisher publishes, and only principals of the account subscribe
    assert (to_approvals, to_tickets) == (approvals, tickets), caller


def test_approval_requests_go_to_their_own_encrypted_topic(template: dict[str, Any]) -> None:
    # Given the approval function and the topics
    resources = template["Resources"]
    approval = resources["ApprovalFunction"]["Properties"]
    statements = [branch for s in approval["Policies"][0]["Statement"] for branch in conditional_branches(s)]

    # Then it publishes its requests to the approvals topic, and may publish nowhere else
    assert approval["Environment"]["Variables"]["APPROVAL_TOPIC_ARN"] == {"Ref": "ApprovalTopic"}
    publish = [s for s in statements if "sns:Publish" in _listed(s["Action"])]
    assert [s["Resource"] for s in publish] == [{"Ref": "ApprovalTopic"}]
    # And the topic is encrypted, its policy covers it, and approvers may be subscribed by address
    assert resources["ApprovalTopic"]["Properties"]["KmsMasterKeyId"] == "alias/aws/sns"
    assert resources["ApprovalTopicPolicy"]["Properties"]["Topics"] == [{"Ref": "ApprovalTopic"}]
    subscription = resources["ApproverEmailSubscription"]
    assert subscription["Condition"] == "HasApproverEmail"
    assert subscription["Properties"]["TopicArn"] == {"Ref": "ApprovalTopic"}
    assert template["Outputs"]["ApprovalTopicArn"]["Value"] == {"Ref": "ApprovalTopic"}


def test_no_function_but_the_approval_function_touches_the_approvals_topic(template: dict[str, Any]) -> None:
    # Given every function's environment and policies, as text
    for name, spec in functions(template).items():
        properties = template["Resources"][name]["Properties"]
        text = repr(properties.get("Environment")) + repr(properties.get("Policies"))
        # Then only the approval function names the approvals topic
        assert ("ApprovalTopic" in text) == (name == "ApprovalFunction"), spec.logical_id


@pytest.mark.parametrize(
    ("caller", "request_", "expected"),
    [
        ("the approval function", Request(READ, _role("ApprovalFunction")), True),
        ("the remediate function", Request(READ, _role("RemediateFunction")), False),
        ("the ticket function", Request(READ, _role("TicketFunction")), False),
        ("an administrator", Request(READ, ADMIN), False),
        ("the account's root", Request(READ, ROOT), False),
        ("another account", Request(READ, f"arn:aws:iam::{OTHER_ACCOUNT}:root", OTHER_ACCOUNT), False),
        ("an administrator managing it", Request("secretsmanager:PutResourcePolicy", ADMIN), True),
        ("an administrator rotating it", Request("secretsmanager:UpdateSecret", ADMIN), True),
        ("the root deleting it", Request("secretsmanager:DeleteSecret", ROOT), True),
    ],
)
def test_only_the_approval_function_reads_the_signing_key(
    caller: str, request_: Request, expected: bool, template: dict[str, Any]
) -> None:
    # Given the signing key's resource policy, and a caller whose own policy allows everything
    statements = _policy(template, "ApprovalSigningKeyPolicy", "ResourcePolicy")

    # When it reads the key or manages the secret
    # Then only the approval function reads it, and the account still manages it
    assert allowed(statements, request_) is expected, caller


def test_the_signing_key_policy_is_the_keys_and_the_only_reader_signs_and_checks_links(
    template: dict[str, Any],
) -> None:
    # Given the key's policy and every function
    resources = template["Resources"]
    policy = resources["ApprovalSigningKeyPolicy"]["Properties"]

    # Then the policy is attached to the key, refusing a policy that would open it to the public
    assert policy["SecretId"] == {"Ref": "ApprovalSigningKey"}
    assert policy["BlockPublicPolicy"] is True
    # And the approval function, which signs the links and checks them, is the one told the key's name
    # and the one granted it
    for name in functions(template):
        properties = resources[name]["Properties"]
        told = "APPROVAL_SIGNING_KEY_SECRET" in properties.get("Environment", {}).get("Variables", {})
        granted = "ApprovalSigningKey" in repr(properties.get("Policies"))
        assert told == granted == (name == "ApprovalFunction"), name


@pytest.mark.parametrize(
    ("caller", "request_", "expected"),
    [
        ("the ticket function", Request(READ, _role("TicketFunction")), True),
        ("the approval function", Request(READ, _role("ApprovalFunction")), True),
        ("the enrich function", Request(READ, _role("EnrichFunction")), False),
        ("the remediate function", Request(READ, _role("RemediateFunction")), False),
        ("an administrator", Request(READ, ADMIN), False),
        ("another account", Request(READ, f"arn:aws:iam::{OTHER_ACCOUNT}:root", OTHER_ACCOUNT), False),
        ("an administrator rotating it", Request("secretsmanager:UpdateSecret", ADMIN), True),
    ],
)
def test_only_the_ticket_and_approval_functions_read_the_case_page_key(
    caller: str, request_: Request, expected: bool, template: dict[str, Any]
) -> None:
    # Given the case page key's resource policy, and a caller whose own policy allows everything
    statements = _policy(template, "CasePageKeyPolicy", "ResourcePolicy")

    # When it reads the key or manages the secret
    # Then only the function that signs case page links and the one that checks them read it
    assert allowed(statements, request_) is expected, caller


def test_case_page_links_are_signed_by_the_ticket_function_and_checked_by_the_approval_function(
    template: dict[str, Any],
) -> None:
    # Given the case page key, its policy and every function
    resources = template["Resources"]
    policy = resources["CasePageKeyPolicy"]["Properties"]

    # Then the policy is the key's, refusing a policy that would open it to the public
    assert policy["SecretId"] == {"Ref": "CasePageKey"}
    assert policy["BlockPublicPolicy"] is True
    # And the ticket function (which signs the links it puts in tickets, on the approval function's URL)
    # and the approval function (which checks them) are the ones told the key and granted it
    for name in functions(template):
        properties = resources[name]["Properties"]
        variables = properties.get("Environment", {}).get("Variables", {})
        told = variables.get("CASE_PAGE_KEY_SECRET") == {"Ref": "CasePageKey"}
        granted = "CasePageKey" in repr(properties.get("Policies"))
        assert told == granted == (name in {"TicketFunction", "ApprovalFunction"}), name
    ticket = resources["TicketFunction"]["Properties"]["Environment"]["Variables"]
    assert ticket["APPROVAL_URL"] == {"Fn::GetAtt": ["ApprovalFunctionUrl", "FunctionUrl"]}


def test_the_approval_function_may_read_the_virustotal_key_only_with_vt_augment(
    template: dict[str, Any],
) -> None:
    # Given the approval function's grants
    approval = template["Resources"]["ApprovalFunction"]["Properties"]
    reads = [
        statement
        for statement in approval["Policies"][0]["Statement"]
        if "VirusTotalApiKeySecretName" in repr(statement)
    ]

    # Then its one grant on the VirusTotal key holds only under HasVirusTotalAugment, which the parameter
    # VirusTotalAugment (false by default) sets, and the function is told the setting
    [conditional] = reads
    condition, granted, otherwise = conditional["Fn::If"]
    assert (condition, otherwise) == ("HasVirusTotalAugment", {"Ref": "AWS::NoValue"})
    assert granted["Action"] == "secretsmanager:GetSecretValue"
    assert template["Conditions"]["HasVirusTotalAugment"] == {
        "Fn::Equals": [{"Ref": "VirusTotalAugment"}, "true"]
    }
    assert template["Parameters"]["VirusTotalAugment"]["Default"] == "false"
    assert approval["Environment"]["Variables"]["VT_AUGMENT"] == {"Ref": "VirusTotalAugment"}


@pytest.mark.parametrize("parameter", ["JiraBaseUrl", "ServiceNowBaseUrl", "SwimlaneBaseUrl"])
@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ("", True),
        ("https://example.atlassian.net", True),
        ("http://example.atlassian.net", False),
        ("example.atlassian.net", False),
        ("https://example.atlassian.net\nhttp://x", False),
    ],
)
def test_a_ticket_provider_url_must_be_https_to_deploy(
    parameter: str, value: str, accepted: bool, template: dict[str, Any]
) -> None:
    # Given the parameter's pattern, When CloudFormation checks a value against it (the whole value)
    pattern = template["Parameters"][parameter]["AllowedPattern"]

    # Then only https URLs (or nothing) deploy; the ticket function checks again at start-up
    assert (re.fullmatch(pattern, value) is not None) is accepted
