"""remediate_case: runs planned actions through the actuator of their type, under a cap, records every
outcome and never runs an action twice. rollback_case: undoes what is reversible, last run first."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.fakes import FakeActuator, InMemoryCaseRepository, make_alert, make_case
from vtriage.eligibility import Place, requiring_approval
from vtriage.errors import CaseNotFoundError, RemediationError, TransientError
from vtriage.models import (
    Action,
    ActionStatus,
    ActionType,
    Branch,
    Case,
    CaseStatus,
    Resource,
    ResourceType,
    TaskInput,
    Verdict,
)
from vtriage.remediate import (
    EXECUTION_TIMEOUT_SECONDS,
    KEPT_FOR,
    Remediator,
    remediate_case,
    rollback_case,
)

NOW = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
LATER = datetime(2024, 5, 1, 11, 0, tzinfo=UTC)
QUARANTINE = "sg-quarantine"
# The deployment's own place: the account and Region `make_alert` names.
PLACE = Place(accounts=frozenset({"123456789012"}), region="us-east-1")


def isolation(
    instances: dict[str, str] | None = None,
    *,
    protected: set[str] | None = None,
    errors: dict[str, Exception] | None = None,
    rollback_errors: dict[str, Exception] | None = None,
) -> FakeActuator:
    """An isolation actuator over instances (id → security group) that moves them to sg-quarantine."""
    return FakeActuator(
        ActionType.ISOLATE_INSTANCE,
        instances,
        acted_state=QUARANTINE,
        protected=protected or set(),
        errors=errors,
        rollback_errors=rollback_errors,
    )


def malicious_case(
    *instance_ids: str,
    statuses: dict[str, ActionStatus] | None = None,
    extra: tuple[Action, ...] = (),
) -> Case:
    """An enriched malicious case with one isolation planned per instance, then the `extra` actions."""
    statuses = statuses or {}
    alert = make_alert(
        resources=tuple(Resource(type=ResourceType.INSTANCE, id=instance_id) for instance_id in instance_ids)
    )
    return make_case(
        alert,
        status=CaseStatus.ENRICHED,
        verdict=Verdict.MALICIOUS,
        actions=[
            Action(
                type=ActionType.ISOLATE_INSTANCE,
                target=instance_id,
                status=statuses.get(instance_id, ActionStatus.PLANNED),
            )
            for instance_id in instance_ids
        ]
        + list(extra),
    )


def run(
    case: Case,
    *actuators: FakeActuator,
    dry_run: bool = False,
    max_actions: int = 5,
) -> tuple[InMemoryCaseRepository, Case]:
    """Store the case, remediate it, return the repository and the stored case."""
    cases = InMemoryCaseRepository([case])
    remediate_case(
        TaskInput(case_id=case.case_id),
        cases,
        {actuator.action_type: actuator for actuator in actuators},
        dry_run=dry_run,
        max_actions=max_actions,
        place=PLACE,
        now=NOW,
    )
    return cases, stored(cases, case)


def stored(cases: InMemoryCaseRepository, case: Case) -> Case:
    found = cases.get(case.case_id)
    assert found is not None
    return found


def statuses(case: Case) -> dict[str, ActionStatus]:
    return {action.target: action.status for action in case.actions}


def test_live_run_isolates_and_marks_the_case_remediated() -> None:
    # Given a malicious case planning to isolate one instance
    case = malicious_case("i-1")
    actuator = isolation({"i-1": "sg-web"})

    # When it is remediated for real
    cases, saved = run(case, actuator)

    # Then the instance is isolated and the case records the outcome with before and after
    assert actuator.states["i-1"] == QUARANTINE
    [action] = saved.actions
    assert action.status is ActionStatus.DONE
    assert action.before == {"state": "sg-web"}
    assert action.after == {"state": QUARANTINE}
    assert saved.status is CaseStatus.REMEDIATED
    assert saved.branch is Branch.REMEDIATE
    assert saved.updated_at == NOW
    assert cases.saves == 1


def test_each_action_goes_to_the_actuator_of_its_type_with_the_case_id() -> None:
    # Given a case planning an isolation and a WAF block
    block = Action(type=ActionType.BLOCK_IP_WAF, target="198.51.100.7", parameters={"note": "from alert"})
    case = malicious_case("i-1", extra=(block,))
    isolate, waf = (
        isolation({"i-1": "sg-web"}),
        FakeActuator(ActionType.BLOCK_IP_WAF, {"198.51.100.7": "open"}),
    )

    # When it is remediated
    _, saved = run(case, isolate, waf)

    # Then each actuator ran its own action, and saw the case id beside the planned parameters
    assert isolate.calls == [("i-1", False)]
    assert waf.calls == [("198.51.100.7", False)]
    [(seen, _)] = waf.runs
    assert seen.parameters == {"case_id": case.case_id, "note": "from alert"}
    # And the case keeps the parameters as planned
    assert saved.actions[1].parameters == {"note": "from alert"}
    assert statuses(saved) == {"i-1": ActionStatus.DONE, "198.51.100.7": ActionStatus.DONE}


def test_an_action_type_without_an_actuator_fails_for_a_person_to_see() -> None:
    # Given a case planning a NACL block, and no NACL actuator configured
    block = Action(type=ActionType.BLOCK_IP_NACL, target="198.51.100.7", parameters={"vpc_id": "vpc-1"})
    case = malicious_case("i-1", extra=(block,))
    cases = InMemoryCaseRepository([case])
    actuator = isolation({"i-1": "sg-web"})

    # When it is remediated, Then the state machine hears of it
    with pytest.raises(RemediationError, match="no actuator is configured for block_ip_nacl"):
        remediate_case(
            TaskInput(case_id=case.case_id),
            cases,
            {ActionType.ISOLATE_INSTANCE: actuator},
            dry_run=False,
            max_actions=5,
            place=PLACE,
        )

    # And the block is recorded as failed while the isolation still ran
    assert statuses(stored(cases, case)) == {"i-1": ActionStatus.DONE, "198.51.100.7": ActionStatus.FAILED}


def test_dry_run_changes_nothing_and_says_what_would_change() -> None:
    # Given a malicious case
    case = malicious_case("i-1")
    actuator = isolation({"i-1": "sg-web"})

    # When it is remediated in dry run
    _, saved = run(case, actuator, dry_run=True)

    # Then nothing moved, the action says what would, and the case is not called remediated
    assert actuator.states["i-1"] == "sg-web"
    assert actuator.calls == [("i-1", True)]
    [action] = saved.actions
    assert action.status is ActionStatus.DRY_RUN
    assert "sg-web" in action.detail
    assert saved.status is CaseStatus.ENRICHED
    assert saved.branch is Branch.REMEDIATE


def test_an_action_can_ask_for_dry_run_when_the_rest_runs_live() -> None:
    # Given a live remediation where the playbook marked the WAF block dry run
    block = Action(type=ActionType.BLOCK_IP_WAF, target="198.51.100.7", parameters={"dry_run": "true"})
    case = malicious_case("i-1", extra=(block,))
    isolate, waf = (
        isolation({"i-1": "sg-web"}),
        FakeActuator(ActionType.BLOCK_IP_WAF, {"198.51.100.7": "open"}),
    )

    # When it is remediated for real
    _, saved = run(case, isolate, waf)

    # Then the isolation ran live, the block only in dry run
    assert isolate.calls == [("i-1", False)]
    assert waf.calls == [("198.51.100.7", True)]
    assert waf.states["198.51.100.7"] == "open"
    assert statuses(saved) == {"i-1": ActionStatus.DONE, "198.51.100.7": ActionStatus.DRY_RUN}


def test_actions_beyond_the_cap_are_skipped_for_a_person_to_decide() -> None:
    # Given a case with three isolations planned and a cap of two
    case = malicious_case("i-1", "i-2", "i-3")
    actuator = isolation({"i-1": "sg-a", "i-2": "sg-a", "i-3": "sg-a"})

    # When it is remediated
    _, saved = run(case, actuator, max_actions=2)

    # Then only the first two ran; the third is skipped and says why
    assert [call[0] for call in actuator.calls] == ["i-1", "i-2"]
    assert statuses(saved) == {
        "i-1": ActionStatus.DONE,
        "i-2": ActionStatus.DONE,
        "i-3": ActionStatus.SKIPPED,
    }
    skipped = saved.actions[2]
    assert "cap of 2" in skipped.detail
    assert "person must decide" in skipped.detail
    assert actuator.states["i-3"] == "sg-a"


def test_a_cap_of_zero_runs_nothing() -> None:
    # Given a case with a planned isolation and a cap of zero
    case = malicious_case("i-1")
    actuator = isolation({"i-1": "sg-a"})

    # When it is remediated
    _, saved = run(case, actuator, max_actions=0)

    # Then the actuator was never called and the action is skipped
    assert actuator.calls == []
    assert statuses(saved) == {"i-1": ActionStatus.SKIPPED}
    assert saved.status is CaseStatus.ENRICHED


def test_a_protected_instance_does_not_use_up_the_cap() -> None:
    # Given a cap of one, and a first instance that is protected
    case = malicious_case("i-protected", "i-2")
    actuator = isolation({"i-protected": "sg-a", "i-2": "sg-a"}, protected={"i-protected"})

    # When it is remediated
    _, saved = run(case, actuator, max_actions=1)

    # Then the protected one is skipped with its reason and the second still runs
    assert statuses(saved) == {"i-protected": ActionStatus.SKIPPED, "i-2": ActionStatus.DONE}
    assert "protected" in saved.actions[0].detail


def test_an_action_that_raises_is_recorded_as_failed_then_raises_remediation_error() -> None:
    # Given two isolations, the first of which raises (say, a missing IAM permission)
    case = malicious_case("i-1", "i-2")
    actuator = isolation(
        {"i-1": "sg-a", "i-2": "sg-a"},
        errors={"i-1": PermissionError("UnauthorizedOperation: ec2:ModifyNetworkInterfaceAttribute")},
    )
    cases = InMemoryCaseRepository([case])

    # When the case is remediated
    with pytest.raises(RemediationError, match="UnauthorizedOperation"):
        remediate_case(
            TaskInput(case_id=case.case_id),
            cases,
            {ActionType.ISOLATE_INSTANCE: actuator},
            dry_run=False,
            max_actions=5,
            place=PLACE,
        )

    # Then the failure is saved on the case with the error, and the other action still ran
    saved = stored(cases, case)
    assert statuses(saved) == {"i-1": ActionStatus.FAILED, "i-2": ActionStatus.DONE}
    assert "PermissionError: UnauthorizedOperation" in saved.actions[0].detail
    assert saved.status is CaseStatus.REMEDIATED
    assert saved.branch is Branch.REMEDIATE


def test_a_failed_outcome_from_the_actuator_is_recorded_without_raising() -> None:
    # Given a planned isolation of an instance that no longer exists
    case = malicious_case("i-gone")

    # When the case is remediated
    _, saved = run(case, isolation({}))

    # Then the action is failed with the actuator's reason and the case is not remediated
    [action] = saved.actions
    assert action.status is ActionStatus.FAILED
    assert "not found" in action.detail
    assert saved.status is CaseStatus.ENRICHED


def test_running_twice_changes_nothing_more() -> None:
    # Given a case remediated once, with one action beyond the cap
    case = malicious_case("i-1", "i-2")
    actuators = {ActionType.ISOLATE_INSTANCE: isolation({"i-1": "sg-a", "i-2": "sg-a"})}
    cases = InMemoryCaseRepository([case])
    task = TaskInput(case_id=case.case_id)
    first = remediate_case(task, cases, actuators, dry_run=False, max_actions=1, place=PLACE, now=NOW)
    after_first = cases.get(case.case_id)

    # When it is remediated again (a retry, a redelivery)
    second = remediate_case(task, cases, actuators, dry_run=False, max_actions=1, place=PLACE, now=NOW)

    # Then no action ran again, nothing was written, and the result says so
    assert first.changed is True
    assert second.changed is False
    assert len(actuators[ActionType.ISOLATE_INSTANCE].calls) == 1
    assert cases.saves == 1
    assert cases.get(case.case_id) == after_first
    assert second.actions == first.actions


def test_a_transient_error_leaves_the_action_for_the_retry() -> None:
    # Given two isolations, the second of which meets EC2 throttling
    case = malicious_case("i-1", "i-2")
    throttled = isolation(
        {"i-1": "sg-a", "i-2": "sg-a"}, errors={"i-2": TransientError("RequestLimitExceeded")}
    )
    cases = InMemoryCaseRepository([case])
    task = TaskInput(case_id=case.case_id)

    # When the case is remediated
    with pytest.raises(TransientError):
        remediate_case(
            task, cases, {ActionType.ISOLATE_INSTANCE: throttled}, dry_run=False, max_actions=5, place=PLACE
        )

    # Then the first outcome is saved and the second action is still planned, for the state machine's Retry
    assert statuses(stored(cases, case)) == {"i-1": ActionStatus.DONE, "i-2": ActionStatus.PLANNED}

    # And when the retry comes once EC2 recovers, only the second action runs
    recovered = isolation({"i-1": QUARANTINE, "i-2": "sg-a"})
    remediate_case(
        task, cases, {ActionType.ISOLATE_INSTANCE: recovered}, dry_run=False, max_actions=5, place=PLACE
    )
    assert recovered.calls == [("i-2", False)]


def test_actions_already_run_count_towards_the_cap() -> None:
    # Given a case where one isolation already ran and another is planned, under a cap of one
    case = malicious_case("i-1", "i-2", statuses={"i-1": ActionStatus.DONE})
    actuator = isolation({"i-1": QUARANTINE, "i-2": "sg-a"})

    # When it is remediated
    _, saved = run(case, actuator, max_actions=1)

    # Then the planned one is skipped: the case has used its one automatic action
    assert actuator.calls == []
    assert statuses(saved) == {"i-1": ActionStatus.DONE, "i-2": ActionStatus.SKIPPED}


def test_approved_actions_run() -> None:
    # Given an action that waited for approval (the state machine calls remediate once it is given)
    case = malicious_case("i-1", statuses={"i-1": ActionStatus.PENDING_APPROVAL})

    # When the case is remediated
    _, saved = run(case, isolation({"i-1": "sg-a"}))

    # Then the action ran
    assert statuses(saved) == {"i-1": ActionStatus.DONE}


def test_a_case_without_actions_is_marked_remediate_branch_only() -> None:
    # Given a malicious case with nothing to act on
    case = malicious_case()

    # When it is remediated
    _, saved = run(case, isolation())

    # Then it took the remediate branch but is not called remediated
    assert saved.branch is Branch.REMEDIATE
    assert saved.status is CaseStatus.ENRICHED


def test_an_unknown_case_raises_case_not_found() -> None:
    # Given an empty repository, When a case is remediated, Then it is not found
    with pytest.raises(CaseNotFoundError, match="guardduty-missing"):
        remediate_case(
            TaskInput(case_id="guardduty-missing"),
            InMemoryCaseRepository(),
            {},
            dry_run=False,
            max_actions=5,
            place=PLACE,
        )


# --- the deployment's own place ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("alert_fields", "named"),
    [
        ({"account": "999999999999"}, "account '999999999999'"),
        ({"region": "eu-west-1"}, "Region 'eu-west-1'"),
    ],
)
def test_a_finding_from_another_account_or_region_changes_nothing_and_the_ticket_says_why(
    alert_fields: dict[str, str], named: str
) -> None:
    # Given a malicious case planned on a finding that names another account or Region, as if planning had
    # let it through
    alert = make_alert(**alert_fields)
    case = make_case(
        alert,
        status=CaseStatus.ENRICHED,
        verdict=Verdict.MALICIOUS,
        actions=[Action(type=ActionType.ISOLATE_INSTANCE, target="i-0abc1234def567890")],
    )
    actuator = isolation({"i-0abc1234def567890": "sg-web"})
    remediator, cases = _remediator(case, actuator, dry_run=False)
    task = {"case_id": case.case_id}

    # When the state machine plans, runs the action anyway, then finishes
    plan = remediator.step({**task, "step": "plan"}).model_dump(mode="json")
    ran = remediator.step({**task, "step": "run", "index": 0}).model_dump(mode="json")
    with pytest.raises(RemediationError) as finished:
        remediator.step({**task, "step": "finish"})

    # Then nothing was planned, the actuator was never called, the instance is as it was
    assert plan["items"] == []
    assert ran["status"] == "skipped"
    assert actuator.calls == []
    assert actuator.states["i-0abc1234def567890"] == "sg-web"
    # And the action and the error the ticket carries both say why
    [action] = stored(cases, case).actions
    assert action.status is ActionStatus.SKIPPED
    assert action.detail.startswith("not run, nothing changed:")
    assert named in action.detail
    assert named in str(finished.value)


def test_every_action_run_at_once_is_skipped_on_a_finding_from_another_account() -> None:
    # Given a case on another account's finding with an isolation and a WAF block planned
    block = Action(type=ActionType.BLOCK_IP_WAF, target="198.51.100.7")
    case = malicious_case("i-1", extra=(block,)).model_copy(
        update={"alert": make_alert(account="999999999999")}
    )
    isolate = isolation({"i-1": "sg-web"})
    waf = FakeActuator(ActionType.BLOCK_IP_WAF, {"198.51.100.7": "open"})
    cases = InMemoryCaseRepository([case])

    # When every action is run at once, Then the caller hears why nothing ran
    with pytest.raises(RemediationError, match="account '999999999999'"):
        remediate_case(
            TaskInput(case_id=case.case_id),
            cases,
            {isolate.action_type: isolate, waf.action_type: waf},
            dry_run=False,
            max_actions=5,
            place=PLACE,
        )

    # And neither actuator was called, both actions skipped
    assert (isolate.calls, waf.calls) == ([], [])
    assert set(statuses(stored(cases, case)).values()) == {ActionStatus.SKIPPED}


def test_a_not_actionable_finding_is_never_acted_on_even_with_actions_planned() -> None:
    # Given a case whose finding intake marked not actionable (a detector's sample), with an action planned
    alert = make_alert(not_actionable=("a detector's sample finding",))
    case = make_case(
        alert,
        status=CaseStatus.ENRICHED,
        verdict=Verdict.MALICIOUS,
        actions=[Action(type=ActionType.ISOLATE_INSTANCE, target="i-1")],
    )
    actuator = isolation({"i-1": "sg-web"})

    # When it is remediated
    with pytest.raises(RemediationError, match="sample"):
        run(case, actuator)

    # Then nothing ran
    assert actuator.calls == []


# --- rollback_case -------------------------------------------------------------------------------


def remediated(case: Case, *actuators: FakeActuator, max_actions: int = 5) -> InMemoryCaseRepository:
    """Store the case and remediate it for real."""
    cases = InMemoryCaseRepository([case])
    remediate_case(
        TaskInput(case_id=case.case_id),
        cases,
        {actuator.action_type: actuator for actuator in actuators},
        dry_run=False,
        max_actions=max_actions,
        place=PLACE,
        now=NOW,
    )
    return cases


def test_rollback_restores_each_action_last_run_first() -> None:
    # Given a case where an isolation and a WAF block ran, in that order
    block = Action(type=ActionType.BLOCK_IP_WAF, target="198.51.100.7")
    case = malicious_case("i-1", extra=(block,))
    isolate, waf = (
        isolation({"i-1": "sg-web"}),
        FakeActuator(ActionType.BLOCK_IP_WAF, {"198.51.100.7": "open"}),
    )
    cases = remediated(case, isolate, waf)

    # When the case is rolled back
    result = rollback_case(case.case_id, cases, {a.action_type: a for a in (isolate, waf)}, now=LATER)

    # Then both targets are as they were, the block undone before the isolation
    assert isolate.states["i-1"] == "sg-web"
    assert waf.states["198.51.100.7"] == "open"
    assert [action.target for action in result.actions] == ["198.51.100.7", "i-1"]
    assert result.complete is True
    assert result.changed is True
    # And the case records each outcome, keeping the state before the original run
    saved = stored(cases, case)
    assert statuses(saved) == {"i-1": ActionStatus.ROLLED_BACK, "198.51.100.7": ActionStatus.ROLLED_BACK}
    assert saved.actions[0].before == {"state": "sg-web"}
    assert "rolled back" in saved.actions[0].detail
    assert saved.updated_at == LATER


def test_rollback_leaves_dry_runs_skips_and_planned_actions_alone() -> None:
    # Given a case with a dry-run action, a skipped one (cap) and a protected one
    case = malicious_case("i-dry", "i-protected", "i-capped")
    actuator = isolation(
        {"i-dry": "sg-a", "i-protected": "sg-a", "i-capped": "sg-a"}, protected={"i-protected"}
    )
    cases = InMemoryCaseRepository([case])
    remediate_case(
        TaskInput(case_id=case.case_id),
        cases,
        {ActionType.ISOLATE_INSTANCE: actuator},
        dry_run=True,
        max_actions=1,
        place=PLACE,
        now=NOW,
    )
    before_rollback = stored(cases, case)

    # When it is rolled back
    result = rollback_case(case.case_id, cases, {ActionType.ISOLATE_INSTANCE: actuator})

    # Then nothing was asked of the actuator and nothing changed
    assert actuator.rollbacks == []
    assert result.actions == []
    assert result.changed is False
    assert stored(cases, case) == before_rollback


def test_an_irreversible_action_is_kept_and_says_why() -> None:
    # Given a case whose snapshots were taken
    snapshot = Action(type=ActionType.SNAPSHOT_VOLUMES, target="i-1")
    case = malicious_case(extra=(snapshot,))
    snapshots = FakeActuator(ActionType.SNAPSHOT_VOLUMES, {"i-1": "no snapshot"}, reversible=False)
    cases = remediated(case, snapshots)

    # When the case is rolled back
    result = rollback_case(case.case_id, cases, {ActionType.SNAPSHOT_VOLUMES: snapshots})

    # Then the action stays done and says it is kept for forensics
    [action] = stored(cases, case).actions
    assert action.status is ActionStatus.DONE
    assert action.detail == "nothing to undo: kept for forensics"
    assert result.complete is True


def test_rolling_back_twice_changes_nothing_more() -> None:
    # Given a case rolled back once
    case = malicious_case("i-1")
    actuator = isolation({"i-1": "sg-web"})
    cases = remediated(case, actuator)
    actuators = {ActionType.ISOLATE_INSTANCE: actuator}
    rollback_case(case.case_id, cases, actuators, now=LATER)
    saves = cases.saves

    # When it is rolled back again
    again = rollback_case(case.case_id, cases, actuators, now=LATER)

    # Then the actuator was not asked again and nothing was written
    assert len(actuator.rollbacks) == 1
    assert again.changed is False
    assert again.actions == []
    assert cases.saves == saves


def test_a_rollback_that_raises_is_recorded_and_the_others_still_run() -> None:
    # Given two isolations done, the second of which cannot be rolled back (permission missing)
    case = malicious_case("i-1", "i-2")
    actuator = isolation(
        {"i-1": "sg-a", "i-2": "sg-b"}, rollback_errors={"i-2": PermissionError("UnauthorizedOperation")}
    )
    cases = remediated(case, actuator)

    # When the case is rolled back
    result = rollback_case(case.case_id, cases, {ActionType.ISOLATE_INSTANCE: actuator})

    # Then the failure is recorded with its reason, the first instance is restored, the result is incomplete
    saved = stored(cases, case)
    assert statuses(saved) == {"i-1": ActionStatus.ROLLED_BACK, "i-2": ActionStatus.FAILED}
    assert "rollback failed: PermissionError: UnauthorizedOperation" in saved.actions[1].detail
    assert saved.actions[1].before == {"state": "sg-b"}
    assert actuator.states == {"i-1": "sg-a", "i-2": QUARANTINE}
    assert result.complete is False

    # And a later rollback, once the permission is granted, finishes the job
    fixed = isolation({"i-1": "sg-a", "i-2": QUARANTINE})
    retried = rollback_case(case.case_id, cases, {ActionType.ISOLATE_INSTANCE: fixed})
    assert [action.target for action in fixed.rollbacks] == ["i-2"]
    assert fixed.states["i-2"] == "sg-b"
    assert retried.complete is True


def test_a_transient_error_during_rollback_saves_the_progress_and_raises() -> None:
    # Given two isolations done, the first of which meets throttling on rollback
    case = malicious_case("i-1", "i-2")
    actuator = isolation(
        {"i-1": "sg-a", "i-2": "sg-b"}, rollback_errors={"i-1": TransientError("Throttling")}
    )
    cases = remediated(case, actuator)

    # When the case is rolled back, Then the error reaches the caller
    with pytest.raises(TransientError):
        rollback_case(case.case_id, cases, {ActionType.ISOLATE_INSTANCE: actuator})

    # And what was undone before it is saved, the rest left for the next try
    assert statuses(stored(cases, case)) == {"i-1": ActionStatus.DONE, "i-2": ActionStatus.ROLLED_BACK}


def test_rollback_of_an_unknown_case_raises_case_not_found() -> None:
    # Given an empty repository, When a case is rolled back, Then it is not found
    with pytest.raises(CaseNotFoundError, match="guardduty-missing"):
        rollback_case("guardduty-missing", InMemoryCaseRepository(), {})


# --- rollback across cases -----------------------------------------------------------------------


def isolated_by_two_cases() -> tuple[InMemoryCaseRepository, FakeActuator, Case, Case]:
    """i-1 isolated by case A (it was in sg-web), then found isolated already by a later case B."""
    actuator = isolation({"i-1": "sg-web"})
    first, second = (
        malicious_case("i-1").model_copy(update={"case_id": case_id, "created_at": created})
        for case_id, created in (("case-a", NOW), ("case-b", LATER))
    )
    cases = InMemoryCaseRepository([first, second])
    for case in (first, second):
        remediate_case(
            TaskInput(case_id=case.case_id),
            cases,
            {ActionType.ISOLATE_INSTANCE: actuator},
            dry_run=False,
            max_actions=5,
            place=PLACE,
            now=NOW,
        )
    return cases, actuator, first, second


@pytest.mark.parametrize("first_rolled_back", ["case-a", "case-b"])
def test_a_change_another_open_case_relies_on_is_kept_until_the_last_of_them_is_rolled_back(
    first_rolled_back: str,
) -> None:
    # Given an instance isolated by two open cases
    cases, actuator, _, _ = isolated_by_two_cases()
    other = "case-b" if first_rolled_back == "case-a" else "case-a"
    actuators = {ActionType.ISOLATE_INSTANCE: actuator}

    # When one of them is rolled back
    first = rollback_case(first_rolled_back, cases, actuators, now=LATER)

    # Then the instance stays isolated, and the case says which open case relies on it
    assert actuator.states["i-1"] == QUARANTINE
    [kept] = stored_case(cases, first_rolled_back).actions
    assert kept.status is ActionStatus.ROLLED_BACK
    assert kept.detail.startswith(f"not undone: open case(s) {other} rely on this isolate_instance of i-1")
    assert (kept.after or {})[KEPT_FOR] == [other]
    assert len(first.kept) == 1
    assert other in first.kept[0]

    # When the other is rolled back too
    second = rollback_case(other, cases, actuators, now=LATER)

    # Then the instance has its own group back, and both cases say what became of their isolation
    assert actuator.states["i-1"] == "sg-web"
    assert [action.status for action in stored_case(cases, other).actions] == [ActionStatus.ROLLED_BACK]
    assert len(second.released) == 1
    assert first_rolled_back in second.released[0]
    released = stored_case(cases, first_rolled_back).actions[0]
    assert f"when case {other} was rolled back" in released.detail
    assert KEPT_FOR not in (released.after or {})


def test_a_change_kept_for_a_case_since_closed_is_undone_by_rolling_back_again() -> None:
    # Given an instance isolated by two cases, A rolled back while B was open (so the isolation was kept)
    cases, actuator, _, _ = isolated_by_two_cases()
    actuators = {ActionType.ISOLATE_INSTANCE: actuator}
    rollback_case("case-a", cases, actuators, now=LATER)
    assert actuator.states["i-1"] == QUARANTINE

    # When B is closed without a rollback, and A is rolled back again
    cases.save(stored_case(cases, "case-b").model_copy(update={"status": CaseStatus.CLOSED}))
    again = rollback_case("case-a", cases, actuators, now=LATER)

    # Then nothing relies on the isolation any more: the instance has its own group back
    assert actuator.states["i-1"] == "sg-web"
    assert again.kept == []
    assert stored_case(cases, "case-a").actions[0].detail.startswith("rolled back")


def test_cases_that_acted_on_different_targets_do_not_hold_each_other() -> None:
    # Given two cases isolating different instances
    actuator = isolation({"i-1": "sg-web", "i-2": "sg-db"})
    first = malicious_case("i-1").model_copy(update={"case_id": "case-a"})
    second = malicious_case("i-2").model_copy(update={"case_id": "case-b"})
    cases = InMemoryCaseRepository([first, second])
    for case in (first, second):
        remediate_case(
            TaskInput(case_id=case.case_id),
            cases,
            {ActionType.ISOLATE_INSTANCE: actuator},
            dry_run=False,
            max_actions=5,
            place=PLACE,
        )

    # When one is rolled back
    result = rollback_case("case-a", cases, {ActionType.ISOLATE_INSTANCE: actuator})

    # Then its instance is restored at once and the other stays isolated
    assert actuator.states == {"i-1": "sg-web", "i-2": QUARANTINE}
    assert result.kept == []


def stored_case(cases: InMemoryCaseRepository, case_id: str) -> Case:
    found = cases.get(case_id)
    assert found is not None
    return found


# ---------------------------------------------------------------- the steps the state machine calls


def _remediator(
    case: Case, actuator: FakeActuator, *, dry_run: bool
) -> tuple[Remediator, InMemoryCaseRepository]:
    cases = InMemoryCaseRepository([case])
    remediator = Remediator(
        cases=cases,
        actuators={actuator.action_type: actuator},
        blast_radius=None,
        dry_run=dry_run,
        max_actions_per_case=5,
        max_actions_per_hour=20,
        approval_timeout_seconds=3600,
        place=PLACE,
    )
    return remediator, cases


def test_the_steps_plan_run_and_finish_a_case_with_small_payloads() -> None:
    # Given a malicious case with one isolation planned, acted on for real
    case = malicious_case("i-0123456789abcdef0")
    actuator = isolation({"i-0123456789abcdef0": "sg-web"})
    remediator, cases = _remediator(case, actuator, dry_run=False)
    task = {"case_id": case.case_id}

    # When the state machine calls plan, run for the one action, then finish
    plan = remediator.step({**task, "step": "plan"}).model_dump(mode="json")
    ran = remediator.step({**task, "step": "run", "index": 0}).model_dump(mode="json")
    finished = remediator.step({**task, "step": "finish"}).model_dump(mode="json")

    # Then the instance was isolated by the run step, and finish, which acts on nothing, answers only
    # the case and that it changed nothing
    assert [item["index"] for item in plan["items"]] == [0]
    assert ran["status"] == "done"
    assert actuator.states["i-0123456789abcdef0"] == QUARANTINE
    assert finished == {"case_id": case.case_id, "changed": False}
    stored = cases.get(case.case_id)
    assert stored is not None
    assert stored.actions[0].status is ActionStatus.DONE


def test_an_unknown_step_is_refused_naming_the_steps_there_are() -> None:
    # Given the steps of a case
    case = malicious_case("i-0123456789abcdef0")
    remediator, _ = _remediator(case, isolation({"i-0123456789abcdef0": "sg-web"}), dry_run=True)

    # When a payload names a step that does not exist, Then it is refused with the ones that do
    steps = "plan, run, record_failure or finish"
    with pytest.raises(ValueError, match=f"unknown remediation step 'undo': {steps}"):
        remediator.step({"case_id": case.case_id, "step": "undo"})


def test_an_action_the_state_machine_could_not_run_is_recorded_failed_and_finish_reports_it() -> None:
    # Given a case with two isolations planned, the first of which the Map could not run (its function
    # timed out), and the second ran
    case = malicious_case("i-1", "i-2")
    actuator = isolation({"i-1": "sg-web", "i-2": "sg-web"})
    remediator, cases = _remediator(case, actuator, dry_run=False)
    task = {"case_id": case.case_id}
    remediator.step({**task, "step": "plan"})
    error = {"Error": "Sandbox.Timedout", "Cause": "Task timed out after 60.00 seconds"}

    # When the Map's Catch records the first failure, the second runs, and the Map finishes
    recorded = remediator.step({**task, "step": "record_failure", "index": 0, "error": error})
    ran = remediator.step({**task, "step": "run", "index": 1})
    with pytest.raises(RemediationError) as finished:
        remediator.step({**task, "step": "finish"})

    # Then the first is failed with the error (and a warning it may have acted in part), the second done,
    # and the ticket's error names the failure
    assert recorded.model_dump(mode="json")["status"] == "failed"
    assert ran.model_dump(mode="json")["status"] == "done"
    first = stored(cases, case).actions[0]
    assert first.status is ActionStatus.FAILED
    assert "Sandbox.Timedout: Task timed out after 60.00 seconds" in first.detail
    assert "may have acted in part" in first.detail
    assert "isolate_instance i-1 failed" in str(finished.value)


def test_recording_a_failure_never_overwrites_an_outcome() -> None:
    # Given an action that ran (its function answered, then the invocation was reported lost)
    case = malicious_case("i-1")
    remediator, cases = _remediator(case, isolation({"i-1": "sg-web"}), dry_run=False)
    remediator.step({"case_id": case.case_id, "step": "run", "index": 0})

    # When a failure is recorded for it, Then it stays done
    recorded = remediator.step(
        {"case_id": case.case_id, "step": "record_failure", "index": 0, "error": {"Error": "States.Timeout"}}
    )
    assert recorded.model_dump(mode="json") == {
        "case_id": case.case_id,
        "index": 0,
        "status": "done",
        "changed": False,
    }
    assert stored(cases, case).actions[0].status is ActionStatus.DONE


def test_finish_reports_an_action_the_execution_never_ran() -> None:
    # Given a planned action the Map never reached (its failure could not even be recorded)
    case = malicious_case("i-1")
    remediator, _ = _remediator(case, isolation({"i-1": "sg-web"}), dry_run=False)

    # When the remediation finishes, Then the ticket hears of it
    with pytest.raises(RemediationError, match="isolate_instance i-1 never ran"):
        remediator.step({"case_id": case.case_id, "step": "finish"})


def test_only_the_approvals_that_fit_in_the_execution_are_waited_for() -> None:
    # Given six actions that each need a person, and approvals as long as the template allows (7 days)
    case = malicious_case(*(f"i-{n}" for n in range(6)))
    case = case.model_copy(
        update={
            "actions": [
                action.model_copy(update={"parameters": {"needs_approval": "true"}})
                for action in case.actions
            ]
        }
    )
    cases = InMemoryCaseRepository([case])
    remediator = Remediator(
        cases=cases,
        actuators={},
        blast_radius=None,
        dry_run=False,
        max_actions_per_case=6,
        max_actions_per_hour=20,
        approval_timeout_seconds=7 * 86_400,
        place=PLACE,
    )

    # When the remediation is planned
    plan = remediator.step({"case_id": case.case_id, "step": "plan"}).model_dump(mode="json")

    # Then the Map waits only for as many as the execution's time holds, with a day to spare, and the
    # others are escalated to the ticket at once
    assert EXECUTION_TIMEOUT_SECONDS == 30 * 86_400
    assert [item["index"] for item in plan["items"]] == [0, 1, 2, 3]
    waited = sum(item["approval_timeout_seconds"] for item in plan["items"])
    assert waited <= EXECUTION_TIMEOUT_SECONDS - 86_400
    left = stored(cases, case).actions[4:]
    assert all(action.status is ActionStatus.PENDING_APPROVAL for action in left)
    assert all("not waited for" in action.detail for action in left)
    assert all("escalated to the ticket" in action.detail for action in left)


def test_an_action_waits_for_a_person_for_the_reason_its_plan_gave() -> None:
    # Given a pushed alert's isolation, waiting for a person as planned, and a playbook's own approval
    pushed, asked = malicious_case("i-1", "i-2").actions
    planned = "planned by playbook c2"
    pushed_reason = "pushed through the intake: a person approves each action (PushedAlertActions=approval)"
    [pushed] = requiring_approval([pushed.model_copy(update={"detail": planned})], pushed_reason)
    asked = asked.model_copy(update={"parameters": {"needs_approval": "true"}, "detail": planned})
    case = malicious_case("i-1", "i-2").model_copy(update={"actions": [pushed, asked]})
    cases = InMemoryCaseRepository([case])
    remediator = Remediator(
        cases=cases,
        actuators={},
        blast_radius=None,
        dry_run=False,
        max_actions_per_case=5,
        max_actions_per_hour=20,
        approval_timeout_seconds=3600,
        place=PLACE,
    )

    # When the remediation is planned
    remediator.step({"case_id": case.case_id, "step": "plan"})

    # Then each waits, the pushed one saying it was pushed (and nothing of a playbook asking), the other
    # that its playbook asks; both keep what planned them
    waiting_pushed, waiting_asked = stored(cases, case).actions
    assert (waiting_pushed.status, waiting_asked.status) == (ActionStatus.PENDING_APPROVAL,) * 2
    assert pushed_reason in waiting_pushed.detail
    assert "the playbook asks for approval" not in waiting_pushed.detail
    assert "the playbook asks for approval" in waiting_asked.detail
    assert all(action.detail.startswith(planned) for action in (waiting_pushed, waiting_asked))
