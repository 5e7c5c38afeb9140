"""The state machine, unchanged, on moto's Step Functions engine: each branch, and the Catch paths."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.functional.conftest import load_event, wait_for_execution
from vtriage.adapters.dynamodb import DynamoCaseRepository
from vtriage.enrich import execution_input
from vtriage.intake import parse_alerts
from vtriage.models import Action, ActionType, Case, CaseStatus, IocOutcome, IocType, Verdict
from vtriage_local.stack import LocalAws

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def _case(verdict: Verdict, actions: list[Action] | None = None, case_id: str | None = None) -> Case:
    [alert] = parse_alerts(load_event("synthetic-guardduty-backdoor-c2-dns.json"))
    return Case(
        case_id=case_id or alert.case_id,
        alert=alert,
        status=CaseStatus.ENRICHED,
        verdict=verdict,
        iocs=[
            IocOutcome(type=IocType.DOMAIN, value="tawuhoju.com", found_at="service.action", verdict=verdict)
        ],
        actions=actions or [],
        created_at=NOW,
        updated_at=NOW,
    )


def _run(aws: LocalAws, case: Case, store: bool = True) -> tuple[dict[str, Any], Case | None]:
    cases = DynamoCaseRepository(
        aws.client("dynamodb"), aws.ref("CasesTable"), timedelta(days=90), lambda: NOW
    )
    if store:
        assert cases.create(case)
    sfn = aws.client("stepfunctions")
    started = sfn.start_execution(
        stateMachineArn=aws.ref("TriageStateMachine"),
        name=case.case_id,
        input=execution_input(case).model_dump_json(),
    )
    execution = wait_for_execution(sfn, started["executionArn"])
    return execution, cases.get(case.case_id) if store else None


def _instance(aws: LocalAws) -> tuple[str, list[str]]:
    ec2 = aws.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="web", Description="web", VpcId=vpc)["GroupId"]
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    # Groups given on the interface, not SecurityGroupIds: with the latter moto pins them on every
    # interface whatever ModifyNetworkInterfaceAttribute sets later, which AWS does not.
    instance = ec2.run_instances(
        ImageId=image,
        MinCount=1,
        MaxCount=1,
        NetworkInterfaces=[{"DeviceIndex": 0, "SubnetId": subnet, "Groups": [group]}],
    )
    return instance["Instances"][0]["InstanceId"], [group]


def _interface_groups(aws: LocalAws, instance_id: str) -> list[list[str]]:
    reservations = aws.client("ec2").describe_instances(InstanceIds=[instance_id])["Reservations"]
    interfaces = reservations[0]["Instances"][0]["NetworkInterfaces"]
    return [[group["GroupId"] for group in interface["Groups"]] for interface in interfaces]


def test_malicious_remediable_case_is_remediated_in_dry_run_then_ticketed(local_aws: LocalAws) -> None:
    # Given a malicious case with an isolation planned on a real (moto) instance
    instance_id, groups = _instance(local_aws)
    case = _case(Verdict.MALICIOUS, [Action(type=ActionType.ISOLATE_INSTANCE, target=instance_id)])

    # When the state machine runs it with the default settings (dry-run)
    execution, stored = _run(local_aws, case)

    # Then it went through Remediate and OpenTicket, planned the isolation and changed nothing
    assert execution["status"] == "SUCCEEDED"
    assert stored is not None
    assert stored.branch == "remediate"
    assert [action.status for action in stored.actions] == ["dry_run"]
    assert stored.ticket is not None
    assert _interface_groups(local_aws, instance_id) == [groups]


def test_with_dry_run_off_the_instance_keeps_only_the_quarantine_group(
    local_aws: LocalAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given remediation switched to act for real, and a malicious case on an instance
    monkeypatch.setenv("DRY_RUN", "false")
    instance_id, groups = _instance(local_aws)
    case = _case(Verdict.MALICIOUS, [Action(type=ActionType.ISOLATE_INSTANCE, target=instance_id)])

    # When the state machine runs it
    execution, stored = _run(local_aws, case)

    # Then every interface of the instance carries only the quarantine group, which has no rules
    assert execution["status"] == "SUCCEEDED"
    assert stored is not None
    assert stored.status is CaseStatus.REMEDIATED
    assert [action.status for action in stored.actions] == ["done"]
    [[quarantine]] = _interface_groups(local_aws, instance_id)
    assert quarantine not in groups
    group = local_aws.client("ec2").describe_security_groups(GroupIds=[quarantine])["SecurityGroups"][0]
    assert group["GroupName"] == "vtriage-quarantine"
    assert group["IpPermissions"] == []
    assert group["IpPermissionsEgress"] == []


def test_suspicious_case_is_ticketed_without_remediation(local_aws: LocalAws) -> None:
    # Given a suspicious case, When the state machine runs it
    execution, stored = _run(local_aws, _case(Verdict.SUSPICIOUS))

    # Then a ticket is opened and nothing else happens
    assert execution["status"] == "SUCCEEDED"
    assert stored is not None
    assert (stored.branch, stored.status) == ("ticket", CaseStatus.TICKETED)
    assert stored.ticket is not None
    assert stored.ticket.provider == "sns"


@pytest.mark.parametrize("verdict", [Verdict.HARMLESS, Verdict.UNKNOWN])
def test_harmless_or_unknown_case_is_closed_by_the_direct_dynamodb_integration(
    local_aws: LocalAws, verdict: Verdict
) -> None:
    # Given a case with nothing against it, When the state machine runs it
    execution, stored = _run(local_aws, _case(verdict))

    # Then the case is closed, with its record kept, and no ticket is opened
    assert execution["status"] == "SUCCEEDED"
    assert stored is not None
    assert (stored.branch, stored.status, stored.ticket) == ("close", CaseStatus.CLOSED, None)
    assert stored.closed_at is not None


def _entered_states(aws: LocalAws, execution_arn: str) -> list[str]:
    history = aws.client("stepfunctions").get_execution_history(executionArn=execution_arn)
    return [
        event["stateEnteredEventDetails"]["name"]
        for event in history["events"]
        if "stateEnteredEventDetails" in event
    ]


def test_remediation_error_is_caught_into_the_ticket_step(local_aws: LocalAws) -> None:
    # Given an execution for a malicious case that DynamoDB does not hold, so Remediate fails
    case = _case(Verdict.MALICIOUS, [Action(type=ActionType.ISOLATE_INSTANCE, target="i-0123456789abcdef0")])

    # When the state machine runs it
    execution, _ = _run(local_aws, case, store=False)

    # Then Remediate's Catch went to OpenTicket, whose Catch went to MarkCaseFailed, which invents no case
    assert execution["status"] == "FAILED"
    assert _entered_states(local_aws, execution["executionArn"]) == [
        "RouteOnVerdict",
        "Remediate",
        "OpenTicket",
        "MarkCaseFailed",
    ]


def test_when_no_ticket_can_be_opened_the_case_is_failed_with_the_error(local_aws: LocalAws) -> None:
    # Given a suspicious case and a ticket topic that has gone away
    local_aws.client("sns").delete_topic(TopicArn=local_aws.ref("TicketTopic"))

    # When the state machine runs it
    execution, stored = _run(local_aws, _case(Verdict.SUSPICIOUS))

    # Then the ticket step's Catch marked the case FAILED with the error, and the execution failed
    assert execution["status"] == "FAILED"
    assert _entered_states(local_aws, execution["executionArn"]) == [
        "RouteOnVerdict",
        "OpenTicket",
        "MarkCaseFailed",
        "TriageFailed",
    ]
    assert stored is not None
    assert stored.status is CaseStatus.FAILED
    assert stored.error
    assert "NotFound" in stored.error


def test_execution_input_is_a_small_summary(local_aws: LocalAws) -> None:
    # Given the largest sample alert's case, When its execution input is built, Then it is a few hundred bytes
    payload = execution_input(_case(Verdict.MALICIOUS)).model_dump_json()
    assert len(payload.encode()) < 1024
    assert set(json.loads(payload)) == {"case_id", "verdict", "severity", "remediable", "actions", "error"}
