"""The pollers as template.yaml deploys them: only when configured, on a schedule, one poll at a time, with
grants no wider than their own items, their queue and their own secret."""

from __future__ import annotations

import fnmatch
from typing import Any

import pytest

from vtriage.adapters.guardrails import APPROVAL_PREFIX, BLAST_RADIUS_PREFIX
from vtriage.adapters.poll_state import cursor_key, polled_key
from vtriage.composition.falcon_poller import SOURCE as FALCON
from vtriage.composition.workspace_poller import SOURCE as WORKSPACE
from vtriage_local.template import TEMPLATE_PATH, condition_holds, load_template

# Each poller: its function, its condition, its source (the key prefix of its items), its secret.
POLLERS = {
    "FalconPollerFunction": ("HasFalconPoller", FALCON, "FalconApiSecretName"),
    "WorkspacePollerFunction": ("HasWorkspacePoller", WORKSPACE, "WorkspaceServiceAccountSecretName"),
}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(TEMPLATE_PATH)


def resources_naming(template: dict[str, Any], logical_id: str) -> set[str]:
    """The resources whose properties name `logical_id` (a !Ref or !GetAtt of it), but the queue policy."""
    needle = repr(logical_id)
    return {
        name
        for name, resource in template["Resources"].items()
        if name != "AlertQueuePolicy" and needle in repr(resource.get("Properties", {}))
    }


@pytest.mark.parametrize("function", sorted(POLLERS))
def test_a_poller_and_all_it_needs_exist_only_once_its_vendor_is_configured(
    function: str, template: dict[str, Any]
) -> None:
    # Given the poller's condition
    condition, _, _ = POLLERS[function]

    # Then a stack deployed with the defaults has no poller, and one given the vendor's credentials has it
    assert not condition_holds(template, condition, {})
    configured = {
        "FalconApiSecretName": "vtriage/falcon",
        "WorkspaceServiceAccountSecretName": "vtriage/workspace",
        "WorkspaceDelegatedAdmin": "admin@example.com",
    }
    assert condition_holds(template, condition, configured)
    # And the function, its log group and everything naming it (its alarms) carry the condition
    dependents = resources_naming(template, function) | {function, f"{function}LogGroup"}
    assert {f"{function}ErrorsAlarm", f"{function}ThrottlesAlarm"} <= dependents
    for name in dependents:
        assert template["Resources"][name].get("Condition") == condition, name
    # And the queue policy names its role only under the condition
    deny = template["Resources"]["AlertQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    (spared,) = [s for s in deny if s["Sid"] == "OnlyTheDetectorRulesAndTheEnrichFunction"]
    role = {"Fn::GetAtt": [f"{function}Role", "Arn"]}
    assert {"Fn::If": [condition, role, {"Ref": "AWS::NoValue"}]} in spared["Condition"]["ArnNotEquals"][
        "aws:PrincipalArn"
    ]


@pytest.mark.parametrize("function", sorted(POLLERS))
def test_a_poller_runs_on_its_schedule_one_poll_at_a_time_onto_the_detector_queue(
    function: str, template: dict[str, Any]
) -> None:
    # Given the poller's function
    properties = template["Resources"][function]["Properties"]

    # Then it runs every PollIntervalMinutes, one at a time, a failed poll left to the next
    (event,) = properties["Events"].values()
    assert event["Type"] == "Schedule"
    assert event["Properties"]["Schedule"] == {"Fn::Sub": "rate(${PollIntervalMinutes} minutes)"}
    assert properties["ReservedConcurrentExecutions"] == 1
    assert properties["EventInvokeConfig"] == {"MaximumRetryAttempts": 0}
    # And it queues on the detector queue, and keeps its state on the guardrails table
    variables = properties["Environment"]["Variables"]
    assert variables["ALERT_QUEUE_URL"] == {"Ref": "AlertQueue"}
    assert variables["GUARDRAILS_TABLE_NAME"] == {"Ref": "GuardrailsTable"}


@pytest.mark.parametrize("function", sorted(POLLERS))
def test_a_pollers_grants_reach_only_its_own_items_its_queue_and_its_secret(
    function: str, template: dict[str, Any]
) -> None:
    # Given the poller's statements
    _, source, secret = POLLERS[function]
    (policy,) = template["Resources"][function]["Properties"]["Policies"]
    by_sid = {statement["Sid"]: statement for statement in policy["Statement"]}

    # Then it may send to the detector queue only
    assert by_sid["QueuePolledAlerts"]["Action"] == "sqs:SendMessage"
    assert by_sid["QueuePolledAlerts"]["Resource"] == {"Fn::GetAtt": ["AlertQueue", "Arn"]}
    # And on the guardrails table, only the items whose keys its adapter writes: its cursor and its alerts
    state = by_sid["PollCursorAndQueuedAlerts"]
    assert state["Resource"] == {"Fn::GetAtt": ["GuardrailsTable", "Arn"]}
    patterns = state["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]

    def allowed(key: str) -> bool:
        return any(fnmatch.fnmatchcase(key, pattern) for pattern in patterns)

    assert allowed(cursor_key(source))
    assert allowed(polled_key(source, "any alert id"))
    # never the blast-radius counters, the approvals, or the other poller's items
    other = next(s for _, s, _ in POLLERS.values() if s != source)
    for key in (
        f"{BLAST_RADIUS_PREFIX}2026-05-01T10",
        f"{APPROVAL_PREFIX}abc",
        cursor_key(other),
        polled_key(other, "x"),
    ):
        assert not allowed(key), key
    # And it reads its own secret only
    credentials = [s for s in policy["Statement"] if s["Action"] == "secretsmanager:GetSecretValue"]
    assert [s["Resource"]["Fn::Sub"].rsplit(":secret:", 1)[1] for s in credentials] == [
        f"${{{secret}}}-??????"
    ]
