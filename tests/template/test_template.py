"""The SAM template against the code it deploys: handlers, settings, queues, tables, state machine, IAM.

These tests read template.yaml and the sources as data (the handlers are parsed, never imported), so
a mistake that would only show after a deploy fails here first.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import pytest
from moto.events.models import EventPattern

from vtriage.config import Settings
from vtriage.config.approval import ApprovalSettings
from vtriage.config.enrich import EnrichSettings
from vtriage.config.intake import IntakeSettings
from vtriage.config.pollers import FalconPollerSettings, WorkspacePollerSettings
from vtriage.config.remediate import RemediateSettings
from vtriage.config.ticket import TicketSettings
from vtriage_local.template import FunctionSpec, choose_if, functions, load_template

PROJECT_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = PROJECT_ROOT / "template.yaml"

SETTINGS_BY_FUNCTION: dict[str, type[Settings]] = {
    "EnrichFunction": EnrichSettings,
    "RemediateFunction": RemediateSettings,
    "TicketFunction": TicketSettings,
    "IntakeFunction": IntakeSettings,
    "ApprovalFunction": ApprovalSettings,
    "FalconPollerFunction": FalconPollerSettings,
    "WorkspacePollerFunction": WorkspacePollerSettings,
}
# The parameters that deploy the pollers (each exists only when its vendor's credentials are given): the
# environment checks below read every function as deployed with them.
POLLERS_CONFIGURED = {
    "FalconApiSecretName": "vtriage/falcon-api-client",
    "WorkspaceServiceAccountSecretName": "vtriage/workspace-service-account",
    "WorkspaceDelegatedAdmin": "security-admin@example.com",
}
# Set by Lambda itself in every execution environment.
PROVIDED_BY_LAMBDA = {"AWS_REGION": "us-east-1"}
# The services each function may call: anything else in its policies is a privilege it does not use.
SERVICES_BY_FUNCTION = {
    "EnrichFunction": {"dynamodb", "states", "sqs", "secretsmanager"},
    "RemediateFunction": {
        "dynamodb",
        "ec2",
        "wafv2",
        "iam",
        "s3",
        "route53resolver",
        "sts",
        "secretsmanager",
    },
    "TicketFunction": {"dynamodb", "sns", "secretsmanager", "lambda"},
    "IntakeFunction": {"sqs"},
    "ApprovalFunction": {"dynamodb", "states", "sns", "secretsmanager"},
    "FalconPollerFunction": {"sqs", "dynamodb", "secretsmanager"},
    "WorkspacePollerFunction": {"sqs", "dynamodb", "secretsmanager"},
}
SUBSTITUTION = re.compile(r"\$\{([A-Za-z0-9_]+)\}")
FAKE_ACCOUNT = "arn:aws:{service}:us-east-1:123456789012:{resource}"


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    """The project's template, intrinsic functions in their long form."""
    return load_template(TEMPLATE_PATH)


@pytest.fixture(scope="module")
def specs(template: dict[str, Any]) -> dict[str, FunctionSpec]:
    """Every function of the template, Globals applied, code paths under this checkout."""
    return functions(template, PROJECT_ROOT)


def resources_of_type(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    """The template's resources of one type, by logical id."""
    return {name: r for name, r in template["Resources"].items() if r["Type"] == resource_type}


def properties(template: dict[str, Any], logical_id: str) -> dict[str, Any]:
    """The Properties of one resource (empty when it has none)."""
    return dict(template["Resources"][logical_id].get("Properties", {}))


def get_att_arn(logical_id: str) -> dict[str, list[str]]:
    """How the loaded template spells `!GetAtt <logical_id>.Arn`."""
    return {"Fn::GetAtt": [logical_id, "Arn"]}


def deployed_value(value: Any, template: dict[str, Any]) -> str:
    """What an environment value becomes once deployed, with a realistic stand-in for each resource."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str | int | float):
        return str(value)
    if value == {"Ref": "AWS::AccountId"}:
        return "123456789012"
    if isinstance(value, dict) and set(value) == {"Fn::If"}:
        return deployed_value(choose_if(value, template, POLLERS_CONFIGURED), template)
    if isinstance(value, dict) and set(value) == {"Fn::GetAtt"}:
        name, attribute = value["Fn::GetAtt"]
        if (name, attribute) == ("ApprovalFunctionUrl", "FunctionUrl"):
            # SAM's URL resource of the approval function (FunctionUrlConfig), not in the template.
            return "https://abcdefghijklmnopqrstuvwxyz012345.lambda-url.us-east-1.on.aws/"
        if template["Resources"][name]["Type"] == "AWS::SQS::Queue" and attribute == "Arn":
            return FAKE_ACCOUNT.format(service="sqs", resource=f"vtriage-{name}")
    if isinstance(value, dict) and set(value) == {"Ref"}:
        name = value["Ref"]
        if name in POLLERS_CONFIGURED:
            return POLLERS_CONFIGURED[name]
        if name in template.get("Parameters", {}):
            return str(template["Parameters"][name]["Default"])
        resource_type = template["Resources"][name]["Type"]
        stand_ins = {
            "AWS::DynamoDB::Table": f"vtriage-{name}-1A2B3C",
            # A function's name, as SAM makes it.
            "AWS::Serverless::Function": f"vtriage-{name}-1A2B3C",
            "AWS::SQS::Queue": f"https://sqs.us-east-1.amazonaws.com/123456789012/vtriage-{name}",
            "AWS::SNS::Topic": FAKE_ACCOUNT.format(service="sns", resource=f"vtriage-{name}"),
            "AWS::Serverless::StateMachine": FAKE_ACCOUNT.format(
                service="states", resource=f"stateMachine:{name}-1A2B3C"
            ),
            "AWS::IAM::ManagedPolicy": f"arn:aws:iam::123456789012:policy/vtriage-{name}-1A2B3C",
            "AWS::SecretsManager::Secret": FAKE_ACCOUNT.format(
                service="secretsmanager", resource=f"secret:{name}-1A2B3C"
            ),
        }
        if resource_type in stand_ins:
            return stand_ins[resource_type]
    raise AssertionError(f"no stand-in for environment value {value!r}: teach deployed_value() about it")


def deployed_environment(spec: FunctionSpec, template: dict[str, Any]) -> dict[str, str]:
    """The function's environment as Lambda would give it to the code."""
    environment = {name: deployed_value(value, template) for name, value in spec.environment.items()}
    return {**PROVIDED_BY_LAMBDA, **environment}


def statements(spec: FunctionSpec) -> list[dict[str, Any]]:
    """Every statement of the function's inline policies, conditional ones (Fn::If) included."""
    found: list[dict[str, Any]] = []
    for policy in spec.policies:
        # Managed policies and policy templates grant more than the function calls, and hide it from here.
        assert isinstance(policy, dict), f"{spec.logical_id}: {policy!r} is not an inline policy"
        assert "Statement" in policy, f"{spec.logical_id}: {policy!r} is not an inline policy"
        for statement in policy["Statement"]:
            found.extend(conditional_branches(statement))
    return found


def conditional_branches(statement: dict[str, Any]) -> list[dict[str, Any]]:
    """A statement, or each statement an `Fn::If` may give (AWS::NoValue gives none)."""
    if set(statement) != {"Fn::If"}:
        return [statement]
    _, when_true, when_false = statement["Fn::If"]
    return [branch for branch in (when_true, when_false) if branch != {"Ref": "AWS::NoValue"}]


def environment_names(model: type[Settings], required_only: bool = False) -> set[str]:
    """The environment variables a settings model reads (only those without a default, if asked)."""
    return {
        field.alias
        for field in model.model_fields.values()
        if field.alias is not None and (field.is_required() or not required_only)
    }


def as_list(value: Any) -> list[Any]:
    """A policy element that may be one value or a list, as a list."""
    return value if isinstance(value, list) else [value]


# ---------------------------------------------------------------- handlers


def test_every_function_has_a_handler_file_defining_its_handler(specs: dict[str, FunctionSpec]) -> None:
    # Given every function the template deploys
    assert set(specs) == set(SETTINGS_BY_FUNCTION)
    for spec in specs.values():
        # When its handler module is parsed (never imported: importing would build AWS clients)
        handler_file = spec.code_dir / (spec.handler_module.replace(".", "/") + ".py")
        assert handler_file.is_file(), f"{spec.logical_id}: {handler_file} does not exist"
        module = ast.parse(handler_file.read_text(encoding="utf-8"), filename=str(handler_file))
        handlers = [
            node
            for node in module.body
            if isinstance(node, ast.FunctionDef) and node.name == spec.handler_function
        ]

        # Then it defines the handler at module level, taking Lambda's (event, context)
        assert handlers, f"{spec.logical_id}: {handler_file} defines no function {spec.handler_function}"
        assert len(handlers[0].args.args) == 2, f"{spec.logical_id}: the handler must take (event, context)"


def test_every_handler_file_belongs_to_a_function_of_the_template(specs: dict[str, FunctionSpec]) -> None:
    # Given the handler files on disk and the ones the template points at
    on_disk = {path.resolve() for path in (PROJECT_ROOT / "functions").glob("*/app.py")}
    deployed = {
        (spec.code_dir / (spec.handler_module.replace(".", "/") + ".py")).resolve() for spec in specs.values()
    }

    # Then none is left out of the deployment
    assert on_disk - deployed == set()


# ---------------------------------------------------------------- settings


@pytest.mark.parametrize("logical_id", sorted(SETTINGS_BY_FUNCTION))
def test_every_required_setting_is_set_by_the_template(
    logical_id: str, specs: dict[str, FunctionSpec]
) -> None:
    # Given the settings the function's model cannot do without
    model = SETTINGS_BY_FUNCTION[logical_id]
    required = environment_names(model, required_only=True)

    # When the template's environment for the function is compared with them
    missing = required - set(specs[logical_id].environment) - set(PROVIDED_BY_LAMBDA)

    # Then every one of them is set
    assert missing == set(), f"{logical_id} needs {sorted(missing)} in its environment"


@pytest.mark.parametrize("logical_id", sorted(SETTINGS_BY_FUNCTION))
def test_the_deployed_environment_validates_in_the_settings_model(
    logical_id: str, template: dict[str, Any], specs: dict[str, FunctionSpec]
) -> None:
    # Given the environment the function would start with once deployed
    environment = deployed_environment(specs[logical_id], template)

    # When its settings are read from it, Then they validate (patterns, ranges, the VT key source)
    SETTINGS_BY_FUNCTION[logical_id].from_environ(environment)


@pytest.mark.parametrize("logical_id", sorted(SETTINGS_BY_FUNCTION))
def test_every_variable_the_template_sets_is_read_by_the_function(
    logical_id: str, specs: dict[str, FunctionSpec]
) -> None:
    # Given what the function's settings model and powertools read
    model = SETTINGS_BY_FUNCTION[logical_id]
    read = environment_names(model)

    # When the template's variables are compared with it
    unread = {name for name in specs[logical_id].environment if name not in read}
    unread = {name for name in unread if not name.startswith("POWERTOOLS_")}

    # Then none is unread: a misspelt optional setting would otherwise be silently ignored
    assert unread == set(), f"{logical_id} sets {sorted(unread)}, which {model.__name__} does not read"


def test_every_function_writes_cases_to_the_same_table_with_the_same_retention(
    template: dict[str, Any], specs: dict[str, FunctionSpec]
) -> None:
    # Given each function's settings as deployed
    settings = [
        SETTINGS_BY_FUNCTION[logical_id].from_environ(deployed_environment(spec, template))
        for logical_id, spec in specs.items()
    ]

    # Then they agree on where cases live and how long they are kept
    assert len({(s.cases_table, s.retention_days) for s in settings}) == 1


def reading(settings: EnrichSettings | IntakeSettings) -> dict[str, Any]:
    """The options a function reads alerts with. The hosts it never looks up are left out: they are its
    own services' (the enrich function's include VirusTotal's), and decide no finding's fate."""
    return settings.intake.model_dump(exclude={"never_act_hosts"})


def test_the_intake_function_reads_alerts_exactly_as_the_enrich_function_does(
    template: dict[str, Any], specs: dict[str, FunctionSpec]
) -> None:
    # Given both functions' settings as deployed
    intake = IntakeSettings.from_environ(deployed_environment(specs["IntakeFunction"], template))
    enrich = EnrichSettings.from_environ(deployed_environment(specs["EnrichFunction"], template))

    # Then they read a body with the same options, so that the intake refuses (400) what the enrich
    # function would refuse, and names the findings it would ignore
    assert reading(intake) == reading(enrich)
    assert enrich.intake.skip_guardduty_in_securityhub is True
    # And also with a team's allow list given as a parameter
    allow_list = {"IocAllowList": "scanner.example.com, 203.0.113.9"}
    with_allow_list = {**template, "Parameters": {**template["Parameters"]}}
    for name, value in allow_list.items():
        with_allow_list["Parameters"][name] = {**template["Parameters"][name], "Default": value}
    intake = IntakeSettings.from_environ(deployed_environment(specs["IntakeFunction"], with_allow_list))
    enrich = EnrichSettings.from_environ(deployed_environment(specs["EnrichFunction"], with_allow_list))
    assert reading(intake) == reading(enrich)
    assert enrich.intake.allow_list == {"scanner.example.com", "203.0.113.9"}


# ---------------------------------------------------------------- queues


ALERT_QUEUES = {"AlertQueue": "detector", "PushedAlertQueue": "intake"}


def sqs_events(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The enrich function's SQS event sources, by the queue each reads."""
    enrich = template["Resources"]["EnrichFunction"]["Properties"]
    events = [e["Properties"] for e in enrich["Events"].values() if e["Type"] == "SQS"]
    return {event["Queue"]["Fn::GetAtt"][0]: event for event in events}


def test_the_enrich_function_reads_both_queues_and_knows_each_ones_channel(
    template: dict[str, Any], specs: dict[str, FunctionSpec]
) -> None:
    # Given the enrich function's event sources and its settings as deployed
    settings = EnrichSettings.from_environ(deployed_environment(specs["EnrichFunction"], template))

    # Then it reads the detector rules' queue and the pushed-alert queue, and no other
    assert set(sqs_events(template)) == set(ALERT_QUEUES)
    # And it tells a record's channel by the ARN of the queue it came from, and defers it there
    environment = specs["EnrichFunction"].environment
    assert environment["ALERT_QUEUE_ARN"] == get_att_arn("AlertQueue")
    assert environment["PUSHED_ALERT_QUEUE_ARN"] == get_att_arn("PushedAlertQueue")
    assert (environment["ALERT_QUEUE_URL"], environment["PUSHED_ALERT_QUEUE_URL"]) == (
        {"Ref": "AlertQueue"},
        {"Ref": "PushedAlertQueue"},
    )
    assert sorted(settings.channels.values()) == ["detector", "intake"]
    # And it knows the deployment's own account, and what becomes of pushed alerts (approval by default)
    assert environment["OWN_ACCOUNT_ID"] == {"Ref": "AWS::AccountId"}
    assert settings.pushed_alert_actions == "approval"
    assert template["Parameters"]["PushedAlertActions"]["AllowedValues"] == ["ticket", "approval"]
    assert environment["PUSHED_ALERT_ACTIONS"] == {"Ref": "PushedAlertActions"}
    # And it may hide or re-send a deferred record on either queue
    enrich_statements = statements(specs["EnrichFunction"])
    (defer,) = [s for s in enrich_statements if "sqs:ChangeMessageVisibility" in s["Action"]]
    assert sorted(item["Fn::GetAtt"][0] for item in as_list(defer["Resource"])) == sorted(ALERT_QUEUES)


@pytest.mark.parametrize("queue", sorted(ALERT_QUEUES))
def test_a_batch_is_never_redelivered_while_the_enrich_function_still_works_on_it(
    queue: str, template: dict[str, Any], specs: dict[str, FunctionSpec]
) -> None:
    # Given the enrich function's SQS event source on this queue
    event = sqs_events(template)[queue]

    # When the queue's visibility timeout is compared with the function's timeout and batching window
    visibility = int(properties(template, queue)["VisibilityTimeout"])
    needed = 6 * specs["EnrichFunction"].timeout + int(event.get("MaximumBatchingWindowInSeconds", 0))

    # Then it is at least what AWS recommends
    assert visibility >= needed


@pytest.mark.parametrize("queue", sorted(ALERT_QUEUES))
def test_the_enrich_function_reports_partial_batch_failures(queue: str, template: dict[str, Any]) -> None:
    # Given the enrich function's SQS event source on this queue
    event = sqs_events(template)[queue]

    # Then one failed record is retried alone, not with its whole batch
    assert "ReportBatchItemFailures" in event["FunctionResponseTypes"]


@pytest.mark.parametrize("queue", sorted(ALERT_QUEUES))
def test_alerts_that_keep_failing_end_in_the_dead_letter_queue(queue: str, template: dict[str, Any]) -> None:
    # Given the queue's redrive policy and the dead-letter queue
    properties_ = properties(template, queue)
    dead_letters = properties(template, "AlertDeadLetterQueue")
    redrive = properties_["RedrivePolicy"]

    # Then failing messages move to the dead-letter queue after a few tries
    assert redrive["deadLetterTargetArn"] == get_att_arn("AlertDeadLetterQueue")
    assert 3 <= int(redrive["maxReceiveCount"]) <= 10
    # And they are kept there longer than on the queue they came from (SQS's default is 4 days)
    kept = int(properties_.get("MessageRetentionPeriod", 345_600))
    assert int(dead_letters["MessageRetentionPeriod"]) > kept


@pytest.mark.parametrize("queue", sorted(ALERT_QUEUES))
def test_the_enrich_function_knows_the_delivery_after_which_its_queue_parks_a_record(
    queue: str, template: dict[str, Any], specs: dict[str, FunctionSpec]
) -> None:
    # Given the queue's redrive policy and the enrich function's settings as deployed
    redrive = properties(template, queue)["RedrivePolicy"]
    settings = EnrichSettings.from_environ(deployed_environment(specs["EnrichFunction"], template))

    # Then the function's last delivery is the queue's: there, an IOC VirusTotal still fails for is
    # triaged without its enrichment instead of the record going to the dead-letter queue
    assert settings.max_receive_count == int(redrive["maxReceiveCount"])
    # And a deferral is queued afresh by then, never parked
    assert settings.deferral_requeue_after_receives <= settings.max_receive_count


@pytest.mark.parametrize("logical_id", ["AlertQueue", "PushedAlertQueue", "AlertDeadLetterQueue"])
def test_queues_are_encrypted_at_rest(logical_id: str, template: dict[str, Any]) -> None:
    # Given a queue that holds alert bodies
    queue = properties(template, logical_id)

    # Then it is encrypted
    assert queue.get("SqsManagedSseEnabled") is True or "KmsMasterKeyId" in queue


DETECTOR_RULES = {
    "GuardDutyFindingsRule": "aws.guardduty",
    "GuardDutyMalwareScanRule": "aws.guardduty",
    "SecurityHubFindingsRule": "aws.securityhub",
}
SEVERITY_LABELS = ["INFORMATIONAL", "LOW", "MEDIUM", "HIGH", "CRITICAL"]
# GuardDuty's documented bands: LOW 1.0-3.9, MEDIUM 4.0-6.9, HIGH 7.0-8.9, CRITICAL 9.0-10.0.
GUARDDUTY_FLOORS = {"INFORMATIONAL": 0, "LOW": 1, "MEDIUM": 4, "HIGH": 7, "CRITICAL": 9}


def rule_pattern(template: dict[str, Any], rule: str, minimum_severity: str) -> dict[str, Any]:
    """A rule's event pattern as EventBridge receives it when the stack is deployed with this
    MinimumSeverity: the !Sub text with its !FindInMap variables filled in, parsed as JSON."""
    pattern = properties(template, rule)["EventPattern"]
    if "Fn::Sub" not in pattern:
        # A pattern with no severity to fill in (malware scan results carry none) is plain YAML.
        plain: dict[str, Any] = pattern
        return plain
    text, variables = pattern["Fn::Sub"]
    for name, value in variables.items():
        mapping, key, attribute = value["Fn::FindInMap"]
        assert key == {"Ref": "MinimumSeverity"}
        text = text.replace(
            "${" + name + "}", str(template["Mappings"][mapping][minimum_severity][attribute])
        )
    parsed: dict[str, Any] = json.loads(text)
    return parsed


def test_the_minimum_severity_parameter_offers_every_label_and_keeps_guardduty_whole_by_default(
    template: dict[str, Any],
) -> None:
    # Given the MinimumSeverity parameter
    parameter = template["Parameters"]["MinimumSeverity"]

    # Then it takes Security Hub's labels, and its default lets every GuardDuty finding (1.0 and up) through
    assert parameter["AllowedValues"] == SEVERITY_LABELS
    assert parameter["Default"] == "LOW"
    assert set(template["Mappings"]["SeverityFloor"]) == set(SEVERITY_LABELS)


@pytest.mark.parametrize("rule", sorted(DETECTOR_RULES))
def test_detector_findings_reach_the_alert_queue_and_only_from_their_rule(
    rule: str, template: dict[str, Any]
) -> None:
    # Given the rule and the alert queue's policy
    target = properties(template, rule)
    policy = properties(template, "AlertQueuePolicy")
    allows = [s for s in policy["PolicyDocument"]["Statement"] if s["Effect"] == "Allow"]

    # Then the rule matches its detector's findings and targets the queue
    assert rule_pattern(template, rule, "LOW")["source"] == [DETECTOR_RULES[rule]]
    assert [t["Arn"] for t in target["Targets"]] == [get_att_arn("AlertQueue")]
    # And the queue lets EventBridge send on behalf of that rule, one statement per rule, and nothing else
    assert policy["Queues"] == [{"Ref": "AlertQueue"}]
    assert {s["Condition"]["ArnEquals"]["aws:SourceArn"]["Fn::GetAtt"][0] for s in allows} == set(
        DETECTOR_RULES
    )
    (statement,) = [s for s in allows if s["Condition"]["ArnEquals"]["aws:SourceArn"] == get_att_arn(rule)]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage"


@pytest.mark.parametrize("minimum", SEVERITY_LABELS)
def test_guardduty_findings_below_the_minimum_severity_are_not_queued(
    minimum: str, template: dict[str, Any]
) -> None:
    # Given the GuardDuty rule's pattern for this minimum
    pattern = rule_pattern(template, "GuardDutyFindingsRule", minimum)
    floor = GUARDDUTY_FLOORS[minimum]

    # Then it compares the score as a JSON number (a quoted number never matches a numeric filter)
    assert pattern["detail"]["severity"] == [{"numeric": [">=", floor]}]
    assert pattern["detail-type"] == ["GuardDuty Finding"]
    # And, evaluated by moto's EventBridge engine, a finding at the floor is queued and one just below is not
    matcher = EventPattern(None, pattern)

    def finding(score: float) -> Any:  # moto types events as its own TypedDict
        return {"source": "aws.guardduty", "detail-type": "GuardDuty Finding", "detail": {"severity": score}}

    assert matcher.matches_event(finding(float(floor)))
    assert matcher.matches_event(finding(10.0))
    assert not matcher.matches_event(finding(floor - 0.1))


@pytest.mark.parametrize("minimum", SEVERITY_LABELS)
def test_security_hub_findings_below_the_minimum_severity_are_not_queued(
    minimum: str, template: dict[str, Any]
) -> None:
    # Given the Security Hub rule's pattern for this minimum
    pattern = rule_pattern(template, "SecurityHubFindingsRule", minimum)

    # Then it takes imported findings labelled at or above the minimum, and only those
    assert pattern["detail-type"] == ["Security Hub Findings - Imported"]
    labels = pattern["detail"]["findings"]["Severity"]["Label"]
    assert labels == SEVERITY_LABELS[SEVERITY_LABELS.index(minimum) :]


def test_the_intake_url_takes_only_iam_signed_requests(template: dict[str, Any]) -> None:
    # Given the intake function and the policy its senders get
    intake = properties(template, "IntakeFunction")
    senders = properties(template, "AlertSendersPolicy")["PolicyDocument"]["Statement"]
    grants = {statement["Action"]: statement for statement in senders}

    # Then its URL authenticates with IAM (SigV4), and no resource policy opens it to anyone
    assert intake["FunctionUrlConfig"]["AuthType"] == "AWS_IAM"
    permissions = resources_of_type(template, "AWS::Lambda::Permission").values()
    assert all(p["Properties"]["FunctionName"] != {"Ref": "IntakeFunction"} for p in permissions)
    # And a sender may call the URL only as an IAM-authenticated one, and may not queue directly: the
    # intake is its only way in, and it stamps who sent each alert
    url = grants["lambda:InvokeFunctionUrl"]
    assert url["Resource"] == get_att_arn("IntakeFunction")
    assert url["Condition"] == {"StringEquals": {"lambda:FunctionUrlAuthType": "AWS_IAM"}}
    assert grants["lambda:InvokeFunction"]["Resource"] == get_att_arn("IntakeFunction")
    assert set(grants) == {"lambda:InvokeFunctionUrl", "lambda:InvokeFunction"}
    assert all(statement["Effect"] == "Allow" for statement in senders)


def test_a_sender_may_invoke_the_intake_function_only_through_its_url(template: dict[str, Any]) -> None:
    # Given the policy senders get
    senders = properties(template, "AlertSendersPolicy")["PolicyDocument"]["Statement"]

    # Then lambda:InvokeFunction (which URLs created since October 2025 need too) holds only for a request
    # through the function URL: a direct Invoke, whose hand-made function-URL event could name any caller,
    # source address and user agent for the intake to stamp, is not allowed
    (invoke,) = [statement for statement in senders if statement["Action"] == "lambda:InvokeFunction"]
    assert invoke["Effect"] == "Allow"
    assert invoke["Condition"] == {"Bool": {"lambda:InvokedViaFunctionUrl": "true"}}


def test_the_intake_function_queues_on_the_pushed_alert_queue_only(
    template: dict[str, Any], specs: dict[str, FunctionSpec]
) -> None:
    # Given the intake function's environment and policy
    intake = specs["IntakeFunction"]

    # Then it writes to the pushed-alert queue, and to nothing else
    assert intake.environment["PUSHED_ALERT_QUEUE_URL"] == {"Ref": "PushedAlertQueue"}
    (statement,) = statements(intake)
    assert statement["Action"] == "sqs:SendMessage"
    assert statement["Resource"] == get_att_arn("PushedAlertQueue")


# How IAM evaluates a condition (IAM User Guide, "Condition operators" and "Conditions with multiple
# context keys or values"): operators and keys are ANDed; values of one key are ORed, NOR-ed under a
# negated operator; a key absent from the request makes a positive operator false and a negated one true.
_NEGATED = {"ArnNotEquals": "ArnEquals", "StringNotEquals": "StringEquals"}


def _condition_holds(condition: dict[str, Any], context: dict[str, Any]) -> bool:
    for operator, keys in condition.items():
        for key, values in keys.items():
            wanted = as_list(values)
            if operator in _NEGATED:
                if key in context and context[key] in wanted:
                    return False
            elif operator in {"ArnEquals", "StringEquals", "Bool"}:
                if key not in context or context[key] not in wanted:
                    return False
            else:
                raise AssertionError(f"teach _condition_holds the operator {operator}")
    return True


def _statement_applies(statement: dict[str, Any], request: dict[str, Any]) -> bool:
    principal = statement["Principal"]
    if principal != "*" and principal != {"Service": request.get("service")}:
        return False
    actions = as_list(statement["Action"])
    if request["action"] not in actions and "sqs:*" not in actions:
        return False
    return _condition_holds(statement.get("Condition", {}), request["context"])


def deployed_policy(template: dict[str, Any], value: Any) -> Any:
    """A policy as deployed with the pollers configured: each `Fn::If` replaced by the branch it takes,
    what `AWS::NoValue` leaves removed."""
    if isinstance(value, list):
        items = [deployed_policy(template, item) for item in value]
        return [item for item in items if item != {"Ref": "AWS::NoValue"}]
    if isinstance(value, dict) and set(value) == {"Fn::If"}:
        return deployed_policy(template, choose_if(value, template, POLLERS_CONFIGURED))
    if isinstance(value, dict):
        return {key: deployed_policy(template, item) for key, item in value.items()}
    return value


def may_send(template: dict[str, Any], policy: str, request: dict[str, Any], identity_allows: bool) -> bool:
    """Whether a queue policy lets this request send (an explicit Deny wins; otherwise an Allow in the
    queue policy or in the caller's own identity policy is enough, the caller being of this account)."""
    document = deployed_policy(template, properties(template, policy)["PolicyDocument"]["Statement"])
    applying = [statement for statement in document if _statement_applies(statement, request)]
    if any(statement["Effect"] == "Deny" for statement in applying):
        return False
    return identity_allows or any(statement["Effect"] == "Allow" for statement in applying)


def _role(logical_id: str) -> dict[str, Any]:
    return {
        "action": "sqs:SendMessage",
        "context": {"aws:PrincipalArn": {"Fn::GetAtt": [logical_id, "Arn"]}, "aws:SecureTransport": "true"},
    }


def _service(service: str, source_arn: Any) -> dict[str, Any]:
    return {
        "action": "sqs:SendMessage",
        "service": service,
        "context": {"aws:SourceArn": source_arn, "aws:SecureTransport": "true"},
    }


ADMINISTRATOR = {
    "action": "sqs:SendMessage",
    "context": {
        "aws:PrincipalArn": "arn:aws:iam::123456789012:role/Administrator",
        "aws:SecureTransport": "true",
    },
}
SOMEONE_ELSES_RULE = "arn:aws:events:us-east-1:123456789012:rule/someone-elses"
SOMEONES_TOPIC = "arn:aws:sns:us-east-1:123456789012:someones-topic"


@pytest.mark.parametrize("rule", sorted(DETECTOR_RULES))
def test_the_detector_rules_may_send_to_the_alert_queue(rule: str, template: dict[str, Any]) -> None:
    # When EventBridge sends on behalf of one of the stack's rules
    request = _service("events.amazonaws.com", get_att_arn(rule))

    # Then the queue takes it, and the pushed-alert queue does not
    assert may_send(template, "AlertQueuePolicy", request, identity_allows=False)
    assert not may_send(template, "PushedAlertQueuePolicy", request, identity_allows=False)


@pytest.mark.parametrize(
    ("sender", "request_", "alert_queue", "pushed_queue"),
    [
        ("the enrich function (re-queueing)", _role("EnrichFunctionRole"), True, True),
        ("the intake function", _role("IntakeFunctionRole"), False, True),
        ("the Falcon poller", _role("FalconPollerFunctionRole"), True, False),
        ("the Workspace poller", _role("WorkspacePollerFunctionRole"), True, False),
        ("an administrator", ADMINISTRATOR, False, False),
        ("another EventBridge rule", _service("events.amazonaws.com", SOMEONE_ELSES_RULE), False, False),
        ("an SNS topic", _service("sns.amazonaws.com", SOMEONES_TOPIC), False, False),
    ],
)
def test_only_the_channels_own_writers_may_send_to_each_queue(
    sender: str, request_: dict[str, Any], alert_queue: bool, pushed_queue: bool, template: dict[str, Any]
) -> None:
    # Given a sender whose own policy allows it to send anywhere (an administrator, a function's role)
    # When it sends to each queue
    # Then only the queue's own writers get through: an explicit Deny beats the sender's own Allow
    to_alert_queue = may_send(template, "AlertQueuePolicy", request_, identity_allows=True)
    to_pushed_queue = may_send(template, "PushedAlertQueuePolicy", request_, identity_allows=True)
    assert (to_alert_queue, to_pushed_queue) == (alert_queue, pushed_queue), sender


def test_the_queue_policies_cover_their_queues(template: dict[str, Any]) -> None:
    # Given each queue policy
    for policy, queue in (("AlertQueuePolicy", "AlertQueue"), ("PushedAlertQueuePolicy", "PushedAlertQueue")):
        document = properties(template, policy)
        # Then it is the queue's, and each of its statements is about that queue
        assert document["Queues"] == [{"Ref": queue}]
        assert {json.dumps(s["Resource"]) for s in document["PolicyDocument"]["Statement"]} == {
            json.dumps(get_att_arn(queue))
        }


# ---------------------------------------------------------------- tables


@pytest.mark.parametrize(
    ("logical_id", "keys", "ttl_attribute"),
    [
        ("CasesTable", [("case_id", "HASH")], "expires_at"),
        ("EnrichmentsTable", [("ioc_key", "HASH"), ("fetched_at", "RANGE")], "expires_at"),
        ("QuotaTable", [("window", "HASH")], "expires_at"),
        ("GuardrailsTable", [("key", "HASH")], "expires_at"),
    ],
)
def test_tables_have_the_keys_the_code_uses_and_are_protected(
    logical_id: str, keys: list[tuple[str, str]], ttl_attribute: str, template: dict[str, Any]
) -> None:
    # Given a table of the template
    table = properties(template, logical_id)
    types = {a["AttributeName"]: a["AttributeType"] for a in table["AttributeDefinitions"]}

    # Then its key is the one the code reads and writes, as strings
    assert [(k["AttributeName"], k["KeyType"]) for k in table["KeySchema"]] == keys
    assert all(types[name] == "S" for name, _ in keys)
    # And old items expire, it scales on demand, is encrypted and can be restored to any point in time
    assert table["TimeToLiveSpecification"] == {"AttributeName": ttl_attribute, "Enabled": True}
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["SSESpecification"]["SSEEnabled"] is True
    assert table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True


def test_every_table_is_covered_by_the_table_checks(template: dict[str, Any]) -> None:
    # Given the tables of the template, Then each one is among those checked above
    assert set(resources_of_type(template, "AWS::DynamoDB::Table")) == {
        "CasesTable",
        "EnrichmentsTable",
        "QuotaTable",
        "GuardrailsTable",
    }


def test_cases_can_be_listed_by_status_newest_first(template: dict[str, Any]) -> None:
    # Given the cases table's secondary indexes
    indexes = {i["IndexName"]: i for i in properties(template, "CasesTable")["GlobalSecondaryIndexes"]}

    # Then "by-status" is keyed by status and sorted by update time
    keys = [(k["AttributeName"], k["KeyType"]) for k in indexes["by-status"]["KeySchema"]]
    assert keys == [("status", "HASH"), ("updated_at", "RANGE")]


# ---------------------------------------------------------------- state machine


def test_state_machine_substitutions_match_its_definition(template: dict[str, Any]) -> None:
    # Given the state machine's substitutions and its definition file
    machine = properties(template, "TriageStateMachine")
    definition_path = PROJECT_ROOT / machine["DefinitionUri"]
    assert definition_path.is_file(), f"the template names {machine['DefinitionUri']}, which does not exist"
    used = set(SUBSTITUTION.findall(definition_path.read_text(encoding="utf-8")))

    # Then every placeholder in the definition is substituted, and every substitution is used
    assert used == set(machine["DefinitionSubstitutions"])


@pytest.mark.parametrize(
    ("links_in_tickets", "waits_through"), [("false", "ApprovalFunction"), ("true", "TicketFunction")]
)
def test_the_state_machine_may_invoke_every_function_it_names_and_no_other(
    template: dict[str, Any], links_in_tickets: str, waits_through: str
) -> None:
    # Given the functions the definition receives as substitutions, as deployed with ApprovalLinksInTickets
    parameters = {"ApprovalLinksInTickets": links_in_tickets}
    machine = properties(template, "TriageStateMachine")
    substitutions = {
        name: choose_if(value, template, parameters)
        for name, value in machine["DefinitionSubstitutions"].items()
    }
    named = {
        value["Fn::GetAtt"][0]
        for value in substitutions.values()
        if isinstance(value, dict)
        and "Fn::GetAtt" in value
        and template["Resources"][value["Fn::GetAtt"][0]]["Type"] == "AWS::Serverless::Function"
    }

    # When the functions its role may invoke are collected
    policies = [choose_if(policy, template, parameters) for policy in machine["Policies"]]
    invocable = {
        policy["LambdaInvokePolicy"]["FunctionName"]["Ref"]
        for policy in policies
        if isinstance(policy, dict) and "LambdaInvokePolicy" in policy
    }

    # Then they are the same; the approval wait invokes the approval function itself by default, the ticket
    # function (which then asks the approval function for the links) only with ApprovalLinksInTickets=true
    assert named
    assert invocable == named
    assert substitutions["ApprovalRequestFunctionArn"] == {"Fn::GetAtt": [waits_through, "Arn"]}
    assert ("ApprovalFunction" in invocable) is (links_in_tickets == "false")


def test_only_with_approval_links_in_tickets_may_the_ticket_function_fetch_them(
    template: dict[str, Any],
) -> None:
    # Given the ticket function's policy and environment, and the parameter's declaration
    ticket = properties(template, "TicketFunction")
    invokes = [
        entry
        for policy in ticket["Policies"]
        for entry in policy.get("Statement", [])
        if any(
            branch.get("Action") == "lambda:InvokeFunction"
            for branch in conditional_branches(entry)
            if isinstance(branch, dict)
        )
    ]

    # Then its one grant to invoke the approval function holds only under HasApprovalLinksInTickets
    [conditional] = invokes
    condition, granted, otherwise = conditional["Fn::If"]
    assert condition == "HasApprovalLinksInTickets"
    assert granted["Resource"] == get_att_arn("ApprovalFunction")
    assert otherwise == {"Ref": "AWS::NoValue"}
    assert template["Conditions"]["HasApprovalLinksInTickets"] == {
        "Fn::Equals": [{"Ref": "ApprovalLinksInTickets"}, "true"]
    }
    # And it is told the approval function's name only then; the default is false
    environment = ticket["Environment"]["Variables"]
    assert choose_if(environment["APPROVAL_FUNCTION_NAME"], template, {}) == ""
    assert choose_if(environment["APPROVAL_FUNCTION_NAME"], template, {"ApprovalLinksInTickets": "true"}) == {
        "Ref": "ApprovalFunction"
    }
    assert template["Parameters"]["ApprovalLinksInTickets"]["Default"] == "false"
    for function in ("TicketFunction", "ApprovalFunction"):
        variables = properties(template, function)["Environment"]["Variables"]
        assert variables["APPROVAL_LINKS_IN_TICKETS"] == {"Ref": "ApprovalLinksInTickets"}


def test_the_state_machine_logs_errors_without_execution_data(template: dict[str, Any]) -> None:
    # Given the state machine's logging and its role
    machine = properties(template, "TriageStateMachine")
    actions = {
        action
        for policy in machine["Policies"]
        if isinstance(policy, dict) and "Statement" in policy
        for statement in policy["Statement"]
        for action in as_list(statement["Action"])
    }

    # Then errors go to its log group, alert details stay out of the logs, and it may deliver them
    assert machine["Logging"]["Level"] == "ERROR"
    assert machine["Logging"]["IncludeExecutionData"] is False
    destination = machine["Logging"]["Destinations"][0]["CloudWatchLogsLogGroup"]["LogGroupArn"]
    assert destination == get_att_arn("TriageStateMachineLogGroup")
    assert {"logs:CreateLogDelivery", "logs:PutResourcePolicy", "logs:DescribeLogGroups"} <= actions
    assert machine["Tracing"] == {"Enabled": True}


# ---------------------------------------------------------------- least privilege


@pytest.mark.parametrize("logical_id", sorted(SERVICES_BY_FUNCTION))
def test_functions_are_granted_only_named_actions_of_the_services_they_call(
    logical_id: str, specs: dict[str, FunctionSpec]
) -> None:
    # Given every statement of the function's policies
    for statement in statements(specs[logical_id]):
        actions = as_list(statement["Action"])

        # Then each allows (or denies) named actions, of the services the function calls
        assert statement["Effect"] in {"Allow", "Deny"}
        assert "NotAction" not in statement
        assert "NotResource" not in statement
        for action in actions:
            service = action.partition(":")[0]
            assert "*" not in action, f"{logical_id}: {action} is a wildcard"
            assert service in SERVICES_BY_FUNCTION[logical_id], f"{logical_id} has no use for {action}"


def is_mutating(action: str) -> bool:
    """Whether an action may change something: any but the Describe*, Get* and List* reads."""
    return not action.partition(":")[2].startswith(("Describe", "Get", "List"))


def wildcard_resource(resource: Any, template: dict[str, Any]) -> bool:
    """Whether a Resource is every resource ("*"), or an ARN whose resource part holds a "*", either
    written or from a parameter whose allowed pattern admits one. Resources named by !Ref or !GetAtt
    are one resource."""
    if isinstance(resource, dict) and "Fn::Sub" in resource:
        text = resource["Fn::Sub"] if isinstance(resource["Fn::Sub"], str) else resource["Fn::Sub"][0]
    elif isinstance(resource, str):
        text = resource
    else:
        return False

    def substituted(match: re.Match[str]) -> str:
        # Pseudo parameters (${AWS::Region}) and attributes (${Queue.Arn}) name one thing.
        parameter = template["Parameters"].get(match.group(1), {})
        pattern = parameter.get("AllowedPattern")
        return "*" if pattern is not None and re.fullmatch(pattern, "a*") else "x"

    arn = re.sub(r"\$\{([A-Za-z0-9_:.]+)\}", substituted, text)
    resource_part = arn.split(":", 5)[5] if arn.startswith("arn:") else arn
    return "*" in resource_part


def unconditioned_wildcard_grants(
    named_statements: list[tuple[str, dict[str, Any]]], template: dict[str, Any]
) -> list[str]:
    """Each Allow of an action that changes something, on a wildcard resource, without a Condition."""
    found = []
    for owner, statement in named_statements:
        if statement["Effect"] != "Allow" or statement.get("Condition"):
            continue
        mutating = [
            a for a in as_list(statement["Action"]) if is_mutating(a) and a not in LOG_DELIVERY_ACTIONS
        ]
        wildcards = [r for r in as_list(statement["Resource"]) if wildcard_resource(r, template)]
        if mutating and wildcards:
            found.append(f"{owner} {statement.get('Sid', '')}: {mutating} on {wildcards}")
    return found


# Step Functions documents these for delivering a state machine's logs: they support no resource-level
# permissions, and no condition key narrows them.
LOG_DELIVERY_ACTIONS = {
    "logs:CreateLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:PutResourcePolicy",
}


def every_identity_statement(template: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every statement of every identity policy of the template (functions', the state machine's, the
    managed policies'), conditional ones included, with the resource it belongs to."""
    found: list[tuple[str, dict[str, Any]]] = []
    for logical_id, resource in template["Resources"].items():
        written: list[Any] = []
        if resource["Type"] in {"AWS::Serverless::Function", "AWS::Serverless::StateMachine"}:
            # SAM policy templates (LambdaInvokePolicy...) name their one resource themselves.
            written = [
                s
                for p in resource["Properties"].get("Policies", [])
                if "Statement" in p
                for s in p["Statement"]
            ]
        elif resource["Type"] == "AWS::IAM::ManagedPolicy":
            written = as_list(resource["Properties"]["PolicyDocument"]["Statement"])
        found += [(logical_id, branch) for statement in written for branch in conditional_branches(statement)]
    return found


def test_no_grant_changes_a_wildcard_resource_without_a_condition(template: dict[str, Any]) -> None:
    # Given every statement of every function's, the state machine's and every managed policy
    found = every_identity_statement(template)
    assert {owner for owner, _ in found} >= {
        "RemediateFunction",
        "TriageStateMachine",
        "UserContainmentPolicy",
    }

    # When the Allow statements of actions that change something are read for wildcard resources
    unconditioned = unconditioned_wildcard_grants(found, template)

    # Then every one of them carries a condition that narrows it
    assert unconditioned == []


def test_an_unconditioned_wildcard_grant_is_found_whether_written_or_from_a_parameter(
    template: dict[str, Any],
) -> None:
    # Given grants as they were before IAM enforced the rules: interfaces moved on any instance, source
    # buckets named by a pattern parameter, and a read on every resource
    swap = {
        "Effect": "Allow",
        "Action": "ec2:ModifyNetworkInterfaceAttribute",
        "Resource": {"Fn::Sub": "arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:instance/*"},
    }
    buckets = {
        "Effect": "Allow",
        "Action": "s3:GetBucketVersioning",
        "Resource": {"Fn::Sub": "arn:${AWS::Partition}:s3:::${QuarantineSourceBuckets}"},
    }
    delete_in_buckets = {**buckets, "Action": ["s3:GetBucketVersioning", "s3:DeleteBucket"]}
    describe = {"Effect": "Allow", "Action": "ec2:DescribeInstances", "Resource": "*"}
    one_table = {
        "Effect": "Allow",
        "Action": "dynamodb:PutItem",
        "Resource": {"Fn::GetAtt": ["CasesTable", "Arn"]},
    }
    statements_found = [("Old", s) for s in (swap, buckets, delete_in_buckets, describe, one_table)]

    # When they are read, Then the changes on wildcards are found, and the reads and the one table are not
    assert unconditioned_wildcard_grants(statements_found, template) == [
        f"Old : ['ec2:ModifyNetworkInterfaceAttribute'] on [{swap['Resource']}]",
        f"Old : ['s3:DeleteBucket'] on [{buckets['Resource']}]",
    ]
    # And a condition is what lets a wildcard grant pass
    conditioned = {**swap, "Condition": {"Null": {"aws:ResourceTag/vtriage:protected": "true"}}}
    assert unconditioned_wildcard_grants([("Old", conditioned)], template) == []


def remediate_statement(specs: dict[str, FunctionSpec], sid: str) -> dict[str, Any]:
    """The remediate function's statement of this Sid (either branch of its Fn::If)."""
    (found,) = [s for s in statements(specs["RemediateFunction"]) if s.get("Sid") == sid]
    return found


def test_the_protected_tag_deny_covers_every_change_the_remediate_function_may_make(
    specs: dict[str, FunctionSpec],
) -> None:
    # Given the EC2 and IAM actions that change something the remediate function is granted, and the tag
    # its code treats as protecting a resource
    remediate = specs["RemediateFunction"]
    granted = {
        action
        for statement in statements(remediate)
        if statement["Effect"] == "Allow"
        for action in as_list(statement["Action"])
        if action.partition(":")[0] in {"ec2", "iam"} and is_mutating(action)
    }
    protected_key = remediate.environment["PROTECTED_TAG_KEY"]
    deny = remediate_statement(specs, "NeverChangeProtectedResources")

    # Then one Deny refuses every one of them on any resource carrying that tag, whatever its value
    assert {"ec2:ModifyNetworkInterfaceAttribute", "iam:UpdateAccessKey", "iam:AttachUserPolicy"} <= granted
    assert (deny["Effect"], deny["Resource"]) == ("Deny", "*")
    assert deny["Condition"] == {"Null": {f"aws:ResourceTag/{protected_key}": "false"}}
    assert granted - set(deny["Action"]) == set()
    # And the source objects it may read (and so copy to quarantine) are refused when they carry it
    objects = remediate_statement(specs, "MoveObjectsOutOfSourceBuckets")
    reads = {a for a in as_list(objects["Action"]) if a in {"s3:GetObject", "s3:GetObjectVersion"}}
    never_move = remediate_statement(specs, "NeverMoveProtectedObjects")
    assert never_move["Condition"] == {"Null": {f"s3:ExistingObjectTag/{protected_key}": "false"}}
    assert reads
    assert reads <= set(never_move["Action"])


def test_tags_are_changed_only_by_name_and_never_the_ones_that_decide_access(
    specs: dict[str, FunctionSpec],
) -> None:
    # Given every grant of the remediate function to tag or untag
    tagging = [
        s
        for s in statements(specs["RemediateFunction"])
        if s["Effect"] == "Allow" and {"ec2:CreateTags", "ec2:DeleteTags"} & set(as_list(s["Action"]))
    ]

    # Then each names the keys it may set, or tags only as a resource is created
    for statement in tagging:
        condition = statement["Condition"]
        at_creation = "ec2:CreateAction" in condition.get("StringEquals", {})
        named = condition.get("Null", {}).get("aws:TagKeys") == "false" and "aws:TagKeys" in condition.get(
            "ForAllValues:StringEquals", {}
        )
        assert at_creation or named, statement["Sid"]
    # And no DeleteTags goes without keys, and the protected tag and the NACL opt-in are never touched
    assert remediate_statement(specs, "NeverDeleteEveryTag")["Condition"] == {"Null": {"aws:TagKeys": "true"}}
    decide = remediate_statement(specs, "NeverTouchTheTagsThatDecideAccess")
    assert set(decide["Condition"]["ForAnyValue:StringEquals"]["aws:TagKeys"]) == {
        specs["RemediateFunction"].environment["PROTECTED_TAG_KEY"],
        "vtriage:nacl-block",
    }


def test_users_are_contained_with_the_stacks_deny_all_policy_and_no_policy_is_ever_written(
    template: dict[str, Any], specs: dict[str, FunctionSpec]
) -> None:
    # Given every action any function is granted, the containment policy and the grant to attach it
    granted = {
        a
        for spec in specs.values()
        for s in statements(spec)
        if s["Effect"] == "Allow"
        for a in as_list(s["Action"])
    }
    policy = properties(template, "UserContainmentPolicy")["PolicyDocument"]["Statement"]
    attach = remediate_statement(specs, "ContainUsersWithTheDenyAllPolicy")

    # Then no function may write or attach a policy of its choosing
    writes = {
        "iam:PutUserPolicy",
        "iam:PutRolePolicy",
        "iam:PutGroupPolicy",
        "iam:CreatePolicy",
        "iam:CreatePolicyVersion",
        "iam:AttachRolePolicy",
        "iam:AttachGroupPolicy",
    }
    assert granted & writes == set()
    # And the one policy it attaches is the stack's, which denies everything
    assert attach["Action"] == "iam:AttachUserPolicy"
    assert attach["Condition"]["ArnEquals"] == {"iam:PolicyARN": {"Ref": "UserContainmentPolicy"}}
    assert [(s["Effect"], s["Action"], s["Resource"]) for s in policy] == [("Deny", "*", "*")]
    assert specs["RemediateFunction"].environment["USER_CONTAINMENT_POLICY_ARN"] == {
        "Ref": "UserContainmentPolicy"
    }


def test_objects_move_only_between_the_named_buckets_of_this_account(
    template: dict[str, Any], specs: dict[str, FunctionSpec]
) -> None:
    # Given the remediate function's S3 grants, as written
    written = [s for policy in specs["RemediateFunction"].policies for s in policy["Statement"]]
    s3_allows = [
        branch
        for statement in written
        for branch in conditional_branches(statement)
        if branch["Effect"] == "Allow" and any(a.startswith("s3:") for a in as_list(branch["Action"]))
    ]
    source_buckets = template["Parameters"]["QuarantineSourceBuckets"]

    # Then each is in this account only, on the buckets the parameters name, and exists only when both
    # the quarantine bucket and the source buckets are given
    assert s3_allows
    for statement in s3_allows:
        assert statement["Condition"] == {"StringEquals": {"s3:ResourceAccount": {"Ref": "AWS::AccountId"}}}
        resource = statement["Resource"]["Fn::Sub"]
        assert set(SUBSTITUTION.findall(resource)) in ({"QuarantineSourceBuckets"}, {"QuarantineBucket"})
        (conditional,) = [s for s in written if set(s) == {"Fn::If"} and s["Fn::If"][1] is statement]
        assert conditional["Fn::If"][0] == "HasQuarantineSourceBuckets"
    # And by default no bucket is named, nor can "every bucket" be
    assert source_buckets["Default"] == ""
    only_quarantine = {"QuarantineBucket": "vtriage-quarantine"}
    assert condition_holds(template, "HasQuarantineSourceBuckets", only_quarantine) is False
    pattern = re.compile(source_buckets["AllowedPattern"])
    assert [bool(pattern.fullmatch(value)) for value in ("data-*", "uploads", "*", "*-logs")] == [
        True,
        True,
        False,
        False,
    ]
    # And nothing deletes from the quarantine bucket
    keep = remediate_statement(specs, "KeepQuarantinedCopies")
    assert keep["Effect"] == "Deny"
    assert {"s3:DeleteObject", "s3:DeleteObjectVersion"} <= set(keep["Action"])
    assert keep["Resource"] == {"Fn::Sub": "arn:${AWS::Partition}:s3:::${QuarantineBucket}/*"}


# ---------------------------------------------------------------- concurrency

# Small pools of their own: a flood of one function (the approval URL is public) throttles neither the
# others nor the rest of the account. Lambda keeps 100 of the account's concurrency unreserved.
RESERVED_CONCURRENCY = {
    "ApprovalFunction": 2,
    "RemediateFunction": 5,
    "TicketFunction": 5,
    "IntakeFunction": 10,
    # One poll at a time: two would list the same alerts at once.
    "FalconPollerFunction": 1,
    "WorkspacePollerFunction": 1,
}


def test_functions_have_small_reserved_pools_and_enrich_a_maximum_concurrency(
    template: dict[str, Any], specs: dict[str, FunctionSpec]
) -> None:
    # Given each function's reserved concurrency and the enrich function's queue event sources
    reserved = {name: properties(template, name).get("ReservedConcurrentExecutions") for name in specs}
    enrich = properties(template, "EnrichFunction")
    events = [e["Properties"] for e in enrich["Events"].values() if e["Type"] == "SQS"]
    parameter = template["Parameters"]["EnrichMaximumConcurrency"]

    # Then the approval, remediate, ticket and intake functions run in small pools of their own
    assert {k: v for k, v in reserved.items() if v is not None} == RESERVED_CONCURRENCY
    # And the enrich function is bounded by its event sources instead (a reserved pool below their
    # maximum would throttle the queue's pollers), each at the parameter's value: 5 by default, and at
    # least the 2 SQS requires
    assert reserved["EnrichFunction"] is None
    assert events
    for event in events:
        assert event["ScalingConfig"] == {"MaximumConcurrency": {"Ref": "EnrichMaximumConcurrency"}}
    assert (parameter["Default"], parameter["MinValue"], parameter["MaxValue"]) == (5, 2, 1000)
    # And what is reserved leaves room in an account with the default quota (1000, 100 kept unreserved)
    assert sum(RESERVED_CONCURRENCY.values()) <= 50


def test_only_the_enrich_function_may_start_triage_or_read_the_api_key(
    specs: dict[str, FunctionSpec],
) -> None:
    # Given the actions each function is granted
    granted = {
        logical_id: {action for s in statements(spec) for action in as_list(s["Action"])}
        for logical_id, spec in specs.items()
    }

    # Then starting executions and reading secrets belong to the functions that need them alone
    for logical_id, actions in granted.items():
        sensitive = actions & {"states:StartExecution", "secretsmanager:GetSecretValue"}
        assert not sensitive or logical_id in {
            "EnrichFunction",
            "ApprovalFunction",
            "TicketFunction",
            "FalconPollerFunction",
            "WorkspacePollerFunction",
            "RemediateFunction",
        }, f"{logical_id} may {sorted(sensitive)}"
    # And the ticket function reads only the ticket provider's secret and the key that signs case page
    # links, and starts nothing
    case_page_key, ticket_secret = [
        s for s in statements(specs["TicketFunction"]) if s["Action"] == "secretsmanager:GetSecretValue"
    ]
    assert "${TicketSecretName}-??????" in ticket_secret["Resource"]["Fn::Sub"]
    assert case_page_key["Resource"] == {"Ref": "CasePageKey"}
    assert "states:StartExecution" not in granted["TicketFunction"]
    # And the approval function reads only the keys that sign approval links and case page links, and
    # the VirusTotal key under VT Augment (tests/template/test_approvals_template.py holds its condition)
    signing_key, checking_key, virustotal_key = [
        s for s in statements(specs["ApprovalFunction"]) if s["Action"] == "secretsmanager:GetSecretValue"
    ]
    assert signing_key["Resource"] == {"Ref": "ApprovalSigningKey"}
    assert checking_key["Resource"] == {"Ref": "CasePageKey"}
    assert "${VirusTotalApiKeySecretName}-??????" in virustotal_key["Resource"]["Fn::Sub"]
    assert "states:StartExecution" not in granted["ApprovalFunction"]
    # And each poller reads only its vendor's credentials, and starts nothing
    for poller, parameter in (
        ("FalconPollerFunction", "FalconApiSecretName"),
        ("WorkspacePollerFunction", "WorkspaceServiceAccountSecretName"),
    ):
        (poller_secret,) = [
            s for s in statements(specs[poller]) if s["Action"] == "secretsmanager:GetSecretValue"
        ]
        assert poller_secret["Resource"]["Fn::Sub"].endswith(f":secret:${{{parameter}}}-??????")
        assert "states:StartExecution" not in granted[poller]
    # And the remediate function reads only the Falcon API client's credentials (host containment), and
    # starts nothing
    (falcon_secret,) = [
        s for s in statements(specs["RemediateFunction"]) if s["Action"] == "secretsmanager:GetSecretValue"
    ]
    assert falcon_secret["Resource"]["Fn::Sub"].endswith(":secret:${FalconApiSecretName}-??????")
    assert "states:StartExecution" not in granted["RemediateFunction"]
    # And only the remediate function may change EC2
    assert {a for a in granted["EnrichFunction"] | granted["TicketFunction"] if a.startswith("ec2:")} == set()


# ---------------------------------------------------------------- layer


def test_the_layer_ships_the_domain_package_for_the_functions_runtime(template: dict[str, Any]) -> None:
    # Given the common layer and the functions' runtime
    layer = template["Resources"]["CommonLayer"]
    function_globals = template["Globals"]["Function"]
    content = PROJECT_ROOT / layer["Properties"]["ContentUri"]

    # Then sam build runs the layer's Makefile, which turns it into python/vtriage/... plus its
    # requirements, for the functions' runtime and architecture
    assert (content / "vtriage" / "__init__.py").is_file()
    assert (content / "requirements.txt").is_file()
    assert layer["Metadata"]["BuildMethod"] == "makefile"
    makefile = (content / "Makefile").read_text()
    assert "build-CommonLayer:" in makefile
    assert f"RUNTIME_PYTHON ?= {function_globals['Runtime']}\n" in makefile
    assert f"PYTHON_VERSION := {function_globals['Runtime'].removeprefix('python')}\n" in makefile
    platform = {"arm64": "manylinux2014_aarch64", "x86_64": "manylinux2014_x86_64"}
    assert f"PLATFORM := {platform[function_globals['Architectures'][0]]}\n" in makefile
    assert function_globals["Runtime"] in layer["Properties"]["CompatibleRuntimes"]
    assert layer["Metadata"]["BuildArchitecture"] in function_globals["Architectures"]
    assert function_globals["Architectures"] == layer["Properties"]["CompatibleArchitectures"]
    # And every function gets it
    assert {"Ref": "CommonLayer"} in function_globals["Layers"]


# ---------------------------------------------------------------- outputs


def test_the_stack_outputs_what_users_and_the_local_runner_look_up(template: dict[str, Any]) -> None:
    # Given the template's outputs, Then the documented ones are there
    assert {
        "AlertQueueUrl",
        "AlertQueueArn",
        "PushedAlertQueueUrl",
        "IntakeUrl",
        "AlertSendersPolicyArn",
        "StateMachineArn",
        "CasesTableName",
        "TicketTopicArn",
    } <= set(template["Outputs"])


def test_the_approval_url_is_public_and_only_through_the_url(template: dict[str, Any]) -> None:
    # Given the approval function and the permissions that open it
    approval = properties(template, "ApprovalFunction")
    permissions = [
        p["Properties"]
        for p in resources_of_type(template, "AWS::Lambda::Permission").values()
        if p["Properties"]["FunctionName"] == {"Ref": "ApprovalFunction"}
    ]

    # Then approvers need no AWS login (the signed token is the authority), and anyone may invoke it
    # only through its URL
    assert approval["FunctionUrlConfig"]["AuthType"] == "NONE"
    assert permissions == [
        {
            "Action": "lambda:InvokeFunction",
            "FunctionName": {"Ref": "ApprovalFunction"},
            "Principal": "*",
            "InvokedViaFunctionUrl": True,
        }
    ]


@pytest.mark.parametrize(
    ("condition", "sid"),
    [
        ("HasRegionalWafIpSet", "BlockIpsInTheRegionalWafIpSet"),
        ("HasCloudFrontWafIpSet", "BlockIpsInTheCloudFrontWafIpSet"),
        ("HasNaclRules", "DenyIpsInOptedInNetworkAcls"),
        ("HasQuarantineSourceBuckets", "KeepObjectsInQuarantine"),
        ("HasQuarantineSourceBuckets", "MoveObjectsOutOfSourceBuckets"),
        ("HasDnsFirewallDomainList", "BlockDomainsInTheDnsFirewallList"),
    ],
)
def test_an_actuator_is_granted_its_actions_only_when_configured(
    condition: str, sid: str, specs: dict[str, FunctionSpec]
) -> None:
    # Given the remediate function's statements, as written
    written = [s for policy in specs["RemediateFunction"].policies for s in policy["Statement"]]

    # Then the actuator's statement exists only under its condition, and nothing otherwise
    (conditional,) = [s for s in written if set(s) == {"Fn::If"} and s["Fn::If"][1].get("Sid") == sid]
    assert conditional["Fn::If"][0] == condition
    assert conditional["Fn::If"][2] == {"Ref": "AWS::NoValue"}


# ---------------------------------------------------------------- alarms

ENRICH_HANDLER = PROJECT_ROOT / "functions" / "enrich" / "app.py"
# What each AWS namespace reports a metric for: the dimension naming the resource, how the template
# gives that dimension its value, the resource type, and the metrics AWS documents for it that alarms use.
AWS_METRICS: dict[str, tuple[str, str, str, set[str]]] = {
    "AWS/SQS": (
        "QueueName",
        "QueueName",
        "AWS::SQS::Queue",
        {"ApproximateNumberOfMessagesVisible", "ApproximateAgeOfOldestMessage"},
    ),
    "AWS/States": (
        "StateMachineArn",
        "Ref",
        "AWS::Serverless::StateMachine",
        {"ExecutionsFailed", "ExecutionsTimedOut", "ExecutionsAborted"},
    ),
    "AWS/Lambda": ("FunctionName", "Ref", "AWS::Serverless::Function", {"Errors", "Throttles"}),
}
HOUR = 3600


def alarms(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The Properties of every CloudWatch alarm of the template, by logical id."""
    found = resources_of_type(template, "AWS::CloudWatch::Alarm")
    return {name: properties(template, name) for name in found}


def watched_resource(alarm: dict[str, Any]) -> str | None:
    """The logical id of the resource whose AWS metric the alarm watches (None for a custom metric)."""
    if alarm["Namespace"] not in AWS_METRICS:
        return None
    dimension, attribute, _, _ = AWS_METRICS[alarm["Namespace"]]
    (value,) = [d["Value"] for d in alarm["Dimensions"] if d["Name"] == dimension]
    if attribute == "Ref":
        logical_id: str = value["Ref"]
        return logical_id
    target, got = value["Fn::GetAtt"]
    assert got == attribute, f"{dimension} is the queue's {attribute}, not its {got}"
    return str(target)


def enrich_handler_metrics() -> set[str]:
    """The metric names the enrich handler emits, read as source: the `name=` of its `add_metric` calls,
    either a literal or the key of a loop over `function(...).items()`, where the function, imported
    from the layer, returns a dict literal."""
    module = ast.parse(ENRICH_HANDLER.read_text(encoding="utf-8"), filename=str(ENRICH_HANDLER))
    imported = {
        alias.asname or alias.name: node.module
        for node in module.body
        if isinstance(node, ast.ImportFrom) and node.module
        for alias in node.names
    }
    loops = {
        node.target.elts[0].id: node.iter
        for node in ast.walk(module)
        if isinstance(node, ast.For)
        and isinstance(node.target, ast.Tuple)
        and isinstance(node.target.elts[0], ast.Name)
    }
    names: set[str] = set()
    for node in ast.walk(module):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        if node.func.attr != "add_metric":
            continue
        (name,) = [keyword.value for keyword in node.keywords if keyword.arg == "name"]
        if isinstance(name, ast.Constant):
            names.add(str(name.value))
            continue
        # for name, count in function(...).items(): ...
        assert isinstance(name, ast.Name), f"line {node.lineno}: unreadable metric name"
        items = loops[name.id]
        unreadable = f"line {node.lineno}: metric names from {ast.unparse(items)}"
        if not isinstance(items, ast.Call) or not isinstance(items.func, ast.Attribute):
            raise AssertionError(unreadable)
        producer = items.func.value
        if not isinstance(producer, ast.Call) or not isinstance(producer.func, ast.Name):
            raise AssertionError(unreadable)
        names |= returned_keys(imported[producer.func.id], producer.func.id)
    return names


def returned_keys(module_name: str, function: str) -> set[str]:
    """The string keys of the dict literals a function of the layer returns, read as source."""
    path = PROJECT_ROOT / "layers" / "common" / (module_name.replace(".", "/") + ".py")
    module = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    (definition,) = [n for n in module.body if isinstance(n, ast.FunctionDef) and n.name == function]
    keys = {
        str(key.value)
        for node in ast.walk(definition)
        if isinstance(node, ast.Return) and isinstance(node.value, ast.Dict)
        for key in node.value.keys
        if isinstance(key, ast.Constant)
    }
    assert keys, f"{module_name}.{function} returns no dict literal of metric names"
    return keys


def condition_holds(template: dict[str, Any], condition: str, parameters: dict[str, str]) -> bool:
    """A template condition evaluated as CloudFormation would, for these parameter values (defaults else)."""

    def evaluate(node: Any) -> Any:
        if not isinstance(node, dict):
            return node
        ((function, argument),) = node.items()
        if function == "Ref":
            return parameters.get(argument, template["Parameters"][argument].get("Default"))
        if function == "Condition":
            return evaluate(template["Conditions"][argument])
        operations = {
            "Fn::Not": lambda values: not values[0],
            "Fn::Equals": lambda values: values[0] == values[1],
            "Fn::And": all,
            "Fn::Or": any,
        }
        return operations[function]([evaluate(item) for item in argument])

    return bool(evaluate(template["Conditions"][condition]))


def test_every_alarm_watches_a_metric_that_a_resource_of_this_stack_reports(
    template: dict[str, Any], specs: dict[str, FunctionSpec]
) -> None:
    # Given every alarm, and where the enrich function's powertools metrics go once deployed
    enrich_environment = specs["EnrichFunction"].environment
    custom_namespace = enrich_environment["POWERTOOLS_METRICS_NAMESPACE"]
    service = enrich_environment["POWERTOOLS_SERVICE_NAME"]
    found = alarms(template)
    assert found

    for logical_id, alarm in found.items():
        resource = watched_resource(alarm)
        if resource is None:
            # Then a custom metric is one of the enrich function's, with the dimension powertools adds
            assert alarm["Namespace"] == custom_namespace, f"{logical_id}: nothing emits {alarm['Namespace']}"
            assert alarm["Dimensions"] == [{"Name": "service", "Value": service}], logical_id
            continue
        # Then an AWS metric is one its namespace reports, for a resource of the template of that type
        _, _, resource_type, documented = AWS_METRICS[alarm["Namespace"]]
        assert alarm["MetricName"] in documented, f"{logical_id}: {alarm['MetricName']}"
        assert template["Resources"][resource]["Type"] == resource_type, f"{logical_id}: {resource}"
        assert len(alarm["Dimensions"]) == 1, f"{logical_id}: AWS reports no such combination of dimensions"


def test_the_metrics_alarms_watch_are_the_ones_the_enrich_handler_emits(template: dict[str, Any]) -> None:
    # Given the names the enrich handler's add_metric calls emit
    emitted = enrich_handler_metrics()

    # When the custom metrics the alarms watch are collected
    watched = {alarm["MetricName"] for alarm in alarms(template).values() if watched_resource(alarm) is None}

    # Then each one is emitted: a renamed metric would leave its alarm watching nothing, silently
    assert {"RecordsRetried", "VirusTotalAuthFailures", "Deferred"} <= watched
    assert watched - emitted == set(), f"the enrich handler emits {sorted(emitted)}"


def test_every_function_has_an_errors_and_a_throttles_alarm(
    template: dict[str, Any], specs: dict[str, FunctionSpec]
) -> None:
    # Given the Lambda metrics watched by the alarms
    watched = {
        (watched_resource(alarm), alarm["MetricName"])
        for alarm in alarms(template).values()
        if alarm["Namespace"] == "AWS/Lambda"
    }

    # Then every function's errors (timeouts included) and throttles are watched
    assert watched == {(function, metric) for function in specs for metric in ("Errors", "Throttles")}


def test_lost_alerts_unfinished_executions_and_long_waits_are_alarmed(template: dict[str, Any]) -> None:
    # Given what each alarm watches
    by_metric = {
        (alarm["Namespace"], alarm["MetricName"], watched_resource(alarm)): alarm
        for alarm in alarms(template).values()
    }

    # Then an alert in the dead-letter queue, and an execution that failed, timed out or was stopped,
    # alarm at once
    at_once = [
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible", "AlertDeadLetterQueue"),
        ("AWS/States", "ExecutionsFailed", "TriageStateMachine"),
        ("AWS/States", "ExecutionsTimedOut", "TriageStateMachine"),
        ("AWS/States", "ExecutionsAborted", "TriageStateMachine"),
    ]
    for key in at_once:
        alarm = by_metric[key]
        assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (0, "GreaterThanThreshold"), key
        assert alarm["EvaluationPeriods"] == 1, key
    # And an alert waiting on the queue for over an hour (deferred until the daily quota reopens) alarms
    waiting = by_metric[("AWS/SQS", "ApproximateAgeOfOldestMessage", "AlertQueue")]
    assert (waiting["Statistic"], waiting["Threshold"]) == ("Maximum", HOUR)
    assert waiting["ComparisonOperator"] == "GreaterThanThreshold"
    # And so do records deferred in every period of an hour (deferred minute by minute, re-queued afresh)
    (deferred,) = [alarm for key, alarm in by_metric.items() if key[1] == "Deferred"]
    assert deferred["DatapointsToAlarm"] == deferred["EvaluationPeriods"]
    assert deferred["Period"] * deferred["EvaluationPeriods"] == HOUR
    assert (deferred["Statistic"], deferred["Threshold"]) == ("Sum", 0)


def test_every_alarm_publishes_to_the_alarm_topic_and_says_what_missing_data_means(
    template: dict[str, Any],
) -> None:
    # Given every alarm
    for logical_id, alarm in alarms(template).items():
        # Then it publishes to the alarm topic when it fires, and when it clears
        assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}], logical_id
        assert alarm["OKActions"] == [{"Ref": "AlarmTopic"}], logical_id
        # And missing data is treated deliberately: counts are missing when nothing happened
        assert alarm["TreatMissingData"] == "notBreaching", logical_id
        # And it tells the person who receives it what happened
        assert len(alarm["AlarmDescription"]) > 40, logical_id


def test_only_cloudwatch_alarms_of_this_account_may_publish_to_the_encrypted_alarm_topic(
    template: dict[str, Any],
) -> None:
    # Given the alarm topic, its policy and its key
    topic = properties(template, "AlarmTopic")
    (policy,) = [
        p["Properties"]
        for p in resources_of_type(template, "AWS::SNS::TopicPolicy").values()
        if {"Ref": "AlarmTopic"} in p["Properties"]["Topics"]
    ]
    key_policy = properties(template, "AlarmTopicKey")["KeyPolicy"]["Statement"]

    # Then the topic's policy lets CloudWatch publish only for alarms of this account
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert (statement["Effect"], statement["Action"]) == ("Allow", "sns:Publish")
    assert statement["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert statement["Resource"] == {"Ref": "AlarmTopic"}
    assert statement["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    source = statement["Condition"]["ArnLike"]["aws:SourceArn"]["Fn::Sub"]
    assert source.endswith(":cloudwatch:${AWS::Region}:${AWS::AccountId}:alarm:*")
    # And it is encrypted with a key of the stack's (CloudWatch may not use the AWS managed alias/aws/sns),
    # which CloudWatch may use for this topic alone
    assert topic["KmsMasterKeyId"] == {"Ref": "AlarmTopicKey"}
    (cloudwatch,) = [s for s in key_policy if s.get("Principal") == {"Service": "cloudwatch.amazonaws.com"}]
    assert set(cloudwatch["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey*"}
    topic_arn = cloudwatch["Condition"]["StringEquals"]["kms:EncryptionContext:aws:sns:topicArn"]["Fn::Sub"]
    assert topic_arn.endswith(":" + topic["TopicName"]["Fn::Sub"])
    assert properties(template, "AlarmTopicKey")["EnableKeyRotation"] is True


def test_alarms_are_emailed_only_when_an_address_is_given(template: dict[str, Any]) -> None:
    # Given the AlarmEmail parameter and the topic's subscriptions
    parameter = template["Parameters"]["AlarmEmail"]
    subscriptions = resources_of_type(template, "AWS::SNS::Subscription")
    (email,) = [s for s in subscriptions.values() if s["Properties"]["TopicArn"] == {"Ref": "AlarmTopic"}]

    # Then the subscription sends the alarms to that address, by email
    assert email["Properties"]["Protocol"] == "email"
    assert email["Properties"]["Endpoint"] == {"Ref": "AlarmEmail"}
    # And it exists only when an address is given: none by default
    assert parameter["Default"] == ""
    assert condition_holds(template, email["Condition"], {}) is False
    assert condition_holds(template, email["Condition"], {"AlarmEmail": "soc@example.com"}) is True
    # And the parameter takes an address or nothing
    pattern = re.compile(parameter["AllowedPattern"])
    assert pattern.fullmatch("")
    assert pattern.fullmatch("soc@example.com")
    assert not pattern.fullmatch("soc at example.com")
    # And subscribers other than email find the topic in the outputs
    assert template["Outputs"]["AlarmTopicArn"]["Value"] == {"Ref": "AlarmTopic"}


@pytest.mark.parametrize(
    ("parameters", "method"),
    [
        ({}, "none"),
        ({"NaclRuleNumberMin": "1", "NaclRuleNumberMax": "18"}, "nacl"),
        ({"WafIpSetName": "blocked", "WafIpSetId": "a1b2c3d4-0000-0000-0000-000000000000"}, "waf"),
        (
            {
                "WafIpSetName": "blocked",
                "WafIpSetId": "a1b2c3d4-0000-0000-0000-000000000000",
                "NaclRuleNumberMin": "1",
                "NaclRuleNumberMax": "18",
            },
            "waf",
        ),
    ],
)
def test_the_enrich_function_plans_ip_blocks_with_the_means_the_deployment_configured(
    parameters: dict[str, str], method: str, template: dict[str, Any], specs: dict[str, FunctionSpec]
) -> None:
    # Given a deployment's parameters for the WAF IP set and the network ACL rule numbers
    configured = specs["EnrichFunction"].environment["IP_BLOCK_METHOD"]

    # When the enrich function's IP_BLOCK_METHOD is evaluated with them, as CloudFormation would
    chosen = choose_if(configured, template, parameters)

    # Then malicious IPs are blocked with what was configured (the WAF first), and not at all without it
    assert chosen == method
