"""The remediation steps the state machine calls (`Remediator.step`: plan, run, record_failure, finish):
planned actions run through the actuator of their type, under a cap, every outcome is recorded and no
action runs twice. rollback_case: undoes what is reversible, last run first."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.factories import make_alert, make_case
from tests.remediation_steps import finish, plan, remediate, remediator, run
from vtriage.adapters.dns_firewall import DnsFirewallDomainBlocker
from vtriage.composition.remediate import actuators, actuators_outside_aws, deployment_account_only
from vtriage.config.remediate import RemediateSettings
from vtriage.eligibility import Place, requiring_approval
from vtriage.errors import CaseNotFoundError, RemediationError, TransientError
from vtriage.fakes import FakeActuator, FakeActuatorsByPlace, InMemoryCaseRepository
from vtriage.models import (
    Action,
    ActionStatus,
    ActionType,
    Branch,
    Case,
    CaseStatus,
    Resource,
    ResourceType,
    Verdict,
)
from vtriage.ports import ForeseeingActuator, ResponseActuator
from vtriage.remediate import EXECUTION_TIMEOUT_SECONDS, KEPT_FOR, Remediator, rollback_case

NOW = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
LATER = datetime(2024, 5, 1, 11, 0, tzinfo=UTC)
QUARANTINE = "sg-quarantine"
# The deployment's own place: the account and Region `make_alert` names.
PLACE = Place(own_account="123456789012", regions=frozenset({"us-east-1"}))


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


def remediated(
    case: Case,
    *actuators: FakeActuator,
    dry_run: bool = False,
    max_actions: int = 5,
) -> tuple[InMemoryCaseRepository, Case]:
    """Store the case, remediate it as one execution does (plan, run each item, finish), return the
    repository and the stored case. For a case whose `finish` must raise, use `remediate` directly."""
    cases = InMemoryCaseRepository([case])
    remediate(steps_over(cases, *actuators, dry_run=dry_run, max_actions=max_actions), case.case_id)
    return cases, stored(cases, case)


def steps_over(
    cases: InMemoryCaseRepository, *actuators: FakeActuator, dry_run: bool = False, max_actions: int = 5
) -> Remediator:
    """The remediate function's steps over the cases, with these actuators, in the deployment's place."""
    return remediator(
        cases,
        {actuator.action_type: actuator for actuator in actuators},
        place=PLACE,
        dry_run=dry_run,
        max_actions_per_case=max_actions,
    )


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
    started = datetime.now(UTC)

    # When it is remediated for real
    cases, saved = remediated(case, actuator)

    # Then the instance is isolated and the case records the outcome with before and after
    assert actuator.states["i-1"] == QUARANTINE
    [action] = saved.actions
    assert action.status is ActionStatus.DONE
    assert action.before == {"state": "sg-web"}
    assert action.after == {"state": QUARANTINE}
    assert saved.status is CaseStatus.REMEDIATED
    assert saved.branch is Branch.REMEDIATE
    assert started <= saved.updated_at <= datetime.now(UTC)
    # And its history ends with the step, when it was taken
    assert (saved.history[-1].status, saved.history[-1].at) == (CaseStatus.REMEDIATED, saved.updated_at)
    # And the case was written twice: by the plan (its branch) and by the action's run; finish writes nothing
    assert cases.saves == 2


def test_each_action_goes_to_the_actuator_of_its_type_with_the_case_id() -> None:
    # Given a case planning an isolation and a WAF block
    block = Action(type=ActionType.BLOCK_IP_WAF, target="198.51.100.7", parameters={"note": "from alert"})
    case = malicious_case("i-1", extra=(block,))
    isolate, waf = (
        isolation({"i-1": "sg-web"}),
        FakeActuator(ActionType.BLOCK_IP_WAF, {"198.51.100.7": "open"}),
    )

    # When it is remediated
    _, saved = remediated(case, isolate, waf)

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

    # When it is remediated, Then the run step reports the block failed and the ticket hears why
    with pytest.raises(RemediationError, match="no actuator is configured for block_ip_nacl"):
        remediate(steps_over(cases, actuator), case.case_id)

    # And the block is recorded as failed while the isolation still ran
    assert statuses(stored(cases, case)) == {"i-1": ActionStatus.DONE, "198.51.100.7": ActionStatus.FAILED}


def test_dry_run_changes_nothing_and_says_what_would_change() -> None:
    # Given a malicious case
    case = malicious_case("i-1")
    actuator = isolation({"i-1": "sg-web"})

    # When it is remediated in dry run
    _, saved = remediated(case, actuator, dry_run=True)

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
    _, saved = remediated(case, isolate, waf)

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
    _, saved = remediated(case, actuator, max_actions=2)

    # Then only the first two ran; the third is skipped and says why
    assert [call[0] for call in actuator.calls] == ["i-1", "i-2"]
    # And the case is not called remediated: the third instance is still on the network, and its history
    # says so first, once
    [ticketed] = saved.history
    assert ticketed.status is CaseStatus.TICKETED
    assert ticketed.note.startswith("not contained: isolate_instance i-3 skipped: not run: the cap of 2")
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
    _, saved = remediated(case, actuator, max_actions=0)

    # Then the actuator was never called and the action is skipped
    assert actuator.calls == []
    assert statuses(saved) == {"i-1": ActionStatus.SKIPPED}
    assert saved.status is CaseStatus.ENRICHED


def test_a_protected_instance_is_skipped_with_its_reason_and_the_others_still_run() -> None:
    # Given a first instance that is protected, and a second that is not
    case = malicious_case("i-protected", "i-2")
    actuator = isolation({"i-protected": "sg-a", "i-2": "sg-a"}, protected={"i-protected"})

    # When it is remediated
    _, saved = remediated(case, actuator)

    # Then the protected one is skipped with its reason and the second still runs
    assert statuses(saved) == {"i-protected": ActionStatus.SKIPPED, "i-2": ActionStatus.DONE}
    assert "protected" in saved.actions[0].detail
    assert actuator.states == {"i-protected": "sg-a", "i-2": QUARANTINE}


def test_a_case_whose_isolation_is_skipped_but_whose_snapshot_ran_is_ticketed_not_contained() -> None:
    # Given a case planning a snapshot, then the isolation of a protected instance
    snapshot = Action(type=ActionType.SNAPSHOT_VOLUMES, target="i-protected")
    case = malicious_case("i-protected", extra=(snapshot,))
    isolate = isolation({"i-protected": "sg-a"}, protected={"i-protected"})
    snapshots = FakeActuator(ActionType.SNAPSHOT_VOLUMES, {"i-protected": "none"}, acted_state="snap-1")

    # When it is remediated for real
    _, saved = remediated(case, isolate, snapshots)

    # Then the snapshot ran and the isolation did not
    assert [action.status for action in saved.actions] == [ActionStatus.SKIPPED, ActionStatus.DONE]
    # And the case is ticketed, never remediated, its history saying first what is not contained and why
    assert saved.status is CaseStatus.TICKETED
    assert [entry.status for entry in saved.history] == [CaseStatus.TICKETED]
    assert saved.history[-1].note.startswith("not contained: isolate_instance i-protected skipped: ")
    assert "protected" in saved.history[-1].note


def test_a_case_whose_containment_all_ran_is_remediated_whatever_the_order() -> None:
    # Given a case planning a snapshot first, then an isolation
    snapshot = Action(type=ActionType.SNAPSHOT_VOLUMES, target="i-1")
    case = malicious_case(extra=(snapshot, Action(type=ActionType.ISOLATE_INSTANCE, target="i-1")))
    snapshots = FakeActuator(ActionType.SNAPSHOT_VOLUMES, {"i-1": "no snapshot"}, acted_state="snap-1")

    # When it is remediated for real
    _, saved = remediated(case, isolation({"i-1": "sg-a"}), snapshots)

    # Then the case is remediated once, when its isolation ran (the snapshot alone contained nothing)
    assert [action.status for action in saved.actions] == [ActionStatus.DONE, ActionStatus.DONE]
    assert [entry.status for entry in saved.history] == [CaseStatus.REMEDIATED]


def test_an_action_that_raises_is_recorded_as_failed_and_finish_raises_remediation_error() -> None:
    # Given two isolations, the first of which raises (say, a missing IAM permission)
    case = malicious_case("i-1", "i-2")
    actuator = isolation(
        {"i-1": "sg-a", "i-2": "sg-a"},
        errors={"i-1": PermissionError("UnauthorizedOperation: ec2:ModifyNetworkInterfaceAttribute")},
    )
    cases = InMemoryCaseRepository([case])
    steps = steps_over(cases, actuator)

    # When the case is remediated
    plan(steps, case.case_id)
    first, second = run(steps, case.case_id, 0), run(steps, case.case_id, 1)
    with pytest.raises(RemediationError, match="UnauthorizedOperation") as raised:
        finish(steps, case.case_id)

    # Then the run step reported the failure without raising (the Map goes on), the failure is saved on
    # the case with the error, and the other action still ran
    assert (first.status, first.changed) == (ActionStatus.FAILED, True)
    assert second.status is ActionStatus.DONE
    saved = stored(cases, case)
    assert statuses(saved) == {"i-1": ActionStatus.FAILED, "i-2": ActionStatus.DONE}
    assert "PermissionError: UnauthorizedOperation" in saved.actions[0].detail
    # And what the ticket gets says first that i-1 is not contained
    assert str(raised.value).startswith(f"case {case.case_id}: not contained: isolate_instance i-1 failed; ")
    # And the case is not called remediated (i-1 is still on the network): the ticket step settles it
    assert saved.status is CaseStatus.ENRICHED
    assert saved.branch is Branch.REMEDIATE


def test_a_failed_outcome_from_the_actuator_is_recorded_and_reaches_the_ticket() -> None:
    # Given a planned isolation of an instance that no longer exists
    case = malicious_case("i-gone")
    cases = InMemoryCaseRepository([case])
    steps = steps_over(cases, isolation({}))

    # When the case is remediated
    plan(steps, case.case_id)
    outcome = run(steps, case.case_id, 0)
    with pytest.raises(RemediationError, match=r"isolate_instance i-gone failed: .*not found"):
        finish(steps, case.case_id)

    # Then the run step reports it failed, the action keeps the actuator's reason, and the case is not
    # remediated
    assert outcome.status is ActionStatus.FAILED
    [action] = stored(cases, case).actions
    assert action.status is ActionStatus.FAILED
    assert "not found" in action.detail
    assert stored(cases, case).status is CaseStatus.ENRICHED


def test_running_twice_changes_nothing_more() -> None:
    # Given a case remediated once, with one action beyond the cap
    case = malicious_case("i-1", "i-2")
    actuator = isolation({"i-1": "sg-a", "i-2": "sg-a"})
    cases = InMemoryCaseRepository([case])
    steps = steps_over(cases, actuator, max_actions=1)
    first = remediate(steps, case.case_id)
    after_first, saves = cases.get(case.case_id), cases.saves

    # When it is remediated again (a retry, a redelivery, a second execution)
    again = plan(steps, case.case_id)
    rerun = [run(steps, case.case_id, index) for index in range(2)]
    finish(steps, case.case_id)

    # Then no action ran again, nothing was written, and the steps say so
    assert first == [ActionStatus.DONE]
    assert again.items == []
    assert [(outcome.status, outcome.changed) for outcome in rerun] == [
        (ActionStatus.DONE, False),
        (ActionStatus.SKIPPED, False),
    ]
    assert len(actuator.calls) == 1
    assert cases.saves == saves
    assert cases.get(case.case_id) == after_first


def test_a_transient_error_leaves_the_action_for_the_retry() -> None:
    # Given two isolations, the second of which meets EC2 throttling
    case = malicious_case("i-1", "i-2")
    throttled = isolation(
        {"i-1": "sg-a", "i-2": "sg-a"}, errors={"i-2": TransientError("RequestLimitExceeded")}
    )
    cases = InMemoryCaseRepository([case])

    # When the case is remediated, Then the run step raises for the state machine's Retry
    with pytest.raises(TransientError):
        remediate(steps_over(cases, throttled), case.case_id)

    # And the first outcome is saved and the second action is still planned, nothing saved for it
    assert statuses(stored(cases, case)) == {"i-1": ActionStatus.DONE, "i-2": ActionStatus.PLANNED}

    # And when the retry comes once EC2 recovers, only the second action runs
    recovered = isolation({"i-1": QUARANTINE, "i-2": "sg-a"})
    retried = run(steps_over(cases, recovered), case.case_id, 1)
    assert recovered.calls == [("i-2", False)]
    assert retried.status is ActionStatus.DONE
    assert statuses(stored(cases, case)) == {"i-1": ActionStatus.DONE, "i-2": ActionStatus.DONE}


def test_actions_already_run_count_towards_the_cap() -> None:
    # Given a case where one isolation already ran and another is planned, under a cap of one
    case = malicious_case("i-1", "i-2", statuses={"i-1": ActionStatus.DONE})
    actuator = isolation({"i-1": QUARANTINE, "i-2": "sg-a"})

    # When it is remediated
    _, saved = remediated(case, actuator, max_actions=1)

    # Then the planned one is skipped: the case has used its one automatic action
    assert actuator.calls == []
    assert statuses(saved) == {"i-1": ActionStatus.DONE, "i-2": ActionStatus.SKIPPED}


def test_approved_actions_run() -> None:
    # Given an action that waits for approval
    case = malicious_case("i-1", statuses={"i-1": ActionStatus.PENDING_APPROVAL})
    cases = InMemoryCaseRepository([case])
    steps = steps_over(cases, isolation({"i-1": "sg-a"}))

    # When the plan sends it to a person, and the state machine runs it once the person approved
    [item] = plan(steps, case.case_id).items
    outcome = run(steps, case.case_id, item.index)

    # Then it waited for the approval, and then ran
    assert item.approval is True
    assert outcome.status is ActionStatus.DONE
    assert statuses(stored(cases, case)) == {"i-1": ActionStatus.DONE}


def test_a_case_without_actions_is_marked_remediate_branch_only() -> None:
    # Given a malicious case with nothing to act on
    case = malicious_case()

    # When it is remediated
    _, saved = remediated(case, isolation())

    # Then it took the remediate branch but is not called remediated
    assert saved.branch is Branch.REMEDIATE
    assert saved.status is CaseStatus.ENRICHED


@pytest.mark.parametrize("step", ["plan", "run", "record_failure", "finish"])
def test_an_unknown_case_raises_case_not_found(step: str) -> None:
    # Given an empty repository, When any step names a case, Then it is not found
    steps = steps_over(InMemoryCaseRepository())
    with pytest.raises(CaseNotFoundError, match="guardduty-missing"):
        steps.step({"step": step, "case_id": "guardduty-missing", "index": 0})


@pytest.mark.parametrize("step", ["run", "record_failure"])
def test_an_action_the_case_does_not_have_raises_case_not_found(step: str) -> None:
    # Given a case with one action
    case = malicious_case("i-1")
    steps = steps_over(InMemoryCaseRepository([case]), isolation({"i-1": "sg-a"}))

    # When a step names its second action, Then it is not found, naming the case and the index
    with pytest.raises(CaseNotFoundError, match=f"case {case.case_id} has no action 1"):
        steps.step({"step": step, "case_id": case.case_id, "index": 1})


def test_a_payload_without_a_step_is_refused_naming_the_steps_there_are() -> None:
    # Given a case with a planned isolation
    case = malicious_case("i-1")
    actuator = isolation({"i-1": "sg-a"})
    cases = InMemoryCaseRepository([case])

    # When a payload names the case but no step, Then it is refused, naming the steps there are
    with pytest.raises(ValueError, match="names no remediation step: plan, run, record_failure or finish"):
        steps_over(cases, actuator).step({"case_id": case.case_id})

    # And nothing ran, nothing was written
    assert actuator.calls == []
    assert cases.saves == 0


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
    cases = InMemoryCaseRepository([case])
    steps = steps_over(cases, actuator)

    # When the state machine plans, runs the action anyway, then finishes
    planned = plan(steps, case.case_id)
    ran = run(steps, case.case_id, 0)
    with pytest.raises(RemediationError) as finished:
        finish(steps, case.case_id)

    # Then nothing was planned, the actuator was never called, the instance is as it was
    assert planned.items == []
    assert ran.status is ActionStatus.SKIPPED
    assert actuator.calls == []
    assert actuator.states["i-0abc1234def567890"] == "sg-web"
    # And the action and the error the ticket carries both say why
    [action] = stored(cases, case).actions
    assert action.status is ActionStatus.SKIPPED
    assert action.detail.startswith("not run, nothing changed:")
    assert named in action.detail
    assert named in str(finished.value)


def test_a_refused_action_run_anyway_is_skipped_and_changes_nothing() -> None:
    # Given a case on another account's finding whose isolation is still planned (planned before the
    # deployment's place was set, say), and a live actuator
    case = malicious_case("i-1").model_copy(update={"alert": make_alert(account="999999999999")})
    actuator = isolation({"i-1": "sg-web"})
    cases = InMemoryCaseRepository([case])

    # When the run step is called for it without a plan
    outcome = run(steps_over(cases, actuator), case.case_id, 0)

    # Then the actuator was never called and the action says why it was skipped
    assert (outcome.status, outcome.changed) == (ActionStatus.SKIPPED, True)
    assert actuator.calls == []
    [action] = stored(cases, case).actions
    assert action.detail.startswith("not run, nothing changed:")
    assert "account '999999999999'" in action.detail


def test_every_action_is_skipped_on_a_finding_from_another_account() -> None:
    # Given a case on another account's finding with an isolation and a WAF block planned
    block = Action(type=ActionType.BLOCK_IP_WAF, target="198.51.100.7")
    case = malicious_case("i-1", extra=(block,)).model_copy(
        update={"alert": make_alert(account="999999999999")}
    )
    isolate = isolation({"i-1": "sg-web"})
    waf = FakeActuator(ActionType.BLOCK_IP_WAF, {"198.51.100.7": "open"})
    cases = InMemoryCaseRepository([case])

    # When the case is remediated, Then the ticket hears why nothing ran
    with pytest.raises(RemediationError, match="account '999999999999'"):
        remediate(steps_over(cases, isolate, waf), case.case_id)

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

    # When it is remediated, Then the ticket hears why
    with pytest.raises(RemediationError, match="sample"):
        remediate(steps_over(InMemoryCaseRepository([case]), actuator), case.case_id)

    # And nothing ran
    assert actuator.calls == []


# --- rollback_case -------------------------------------------------------------------------------


def test_rollback_restores_each_action_last_run_first() -> None:
    # Given a case where an isolation and a WAF block ran, in that order
    block = Action(type=ActionType.BLOCK_IP_WAF, target="198.51.100.7")
    case = malicious_case("i-1", extra=(block,))
    isolate, waf = (
        isolation({"i-1": "sg-web"}),
        FakeActuator(ActionType.BLOCK_IP_WAF, {"198.51.100.7": "open"}),
    )
    cases, _ = remediated(case, isolate, waf)

    # When the case is rolled back, after the steps that ran it (they stamp the case with the clock's time)
    later = datetime.now(UTC) + timedelta(minutes=1)
    result = rollback_case(
        case.case_id, cases, FakeActuatorsByPlace({a.action_type: a for a in (isolate, waf)}), now=later
    )

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
    assert saved.updated_at == later


def test_rollback_leaves_dry_runs_skips_and_planned_actions_alone() -> None:
    # Given a case with a dry-run action, a skipped one (cap) and a protected one
    case = malicious_case("i-dry", "i-protected", "i-capped")
    actuator = isolation(
        {"i-dry": "sg-a", "i-protected": "sg-a", "i-capped": "sg-a"}, protected={"i-protected"}
    )
    cases, before_rollback = remediated(case, actuator, dry_run=True, max_actions=2)
    assert statuses(before_rollback) == {
        "i-dry": ActionStatus.DRY_RUN,
        "i-protected": ActionStatus.SKIPPED,
        "i-capped": ActionStatus.SKIPPED,
    }

    # When it is rolled back
    result = rollback_case(case.case_id, cases, FakeActuatorsByPlace({ActionType.ISOLATE_INSTANCE: actuator}))

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
    cases, _ = remediated(case, snapshots)

    # When the case is rolled back
    result = rollback_case(
        case.case_id, cases, FakeActuatorsByPlace({ActionType.SNAPSHOT_VOLUMES: snapshots})
    )

    # Then the action stays done and says it is kept for forensics
    [action] = stored(cases, case).actions
    assert action.status is ActionStatus.DONE
    assert action.detail == "nothing to undo: kept for forensics"
    assert result.complete is True


def test_rolling_back_twice_changes_nothing_more() -> None:
    # Given a case rolled back once
    case = malicious_case("i-1")
    actuator = isolation({"i-1": "sg-web"})
    cases, _ = remediated(case, actuator)
    actuators = {ActionType.ISOLATE_INSTANCE: actuator}
    rollback_case(case.case_id, cases, FakeActuatorsByPlace(actuators), now=LATER)
    saves = cases.saves

    # When it is rolled back again
    again = rollback_case(case.case_id, cases, FakeActuatorsByPlace(actuators), now=LATER)

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
    cases, _ = remediated(case, actuator)

    # When the case is rolled back
    result = rollback_case(case.case_id, cases, FakeActuatorsByPlace({ActionType.ISOLATE_INSTANCE: actuator}))

    # Then the failure is recorded with its reason, the first instance is restored, the result is incomplete
    saved = stored(cases, case)
    assert statuses(saved) == {"i-1": ActionStatus.ROLLED_BACK, "i-2": ActionStatus.FAILED}
    assert "rollback failed: PermissionError: UnauthorizedOperation" in saved.actions[1].detail
    assert saved.actions[1].before == {"state": "sg-b"}
    assert actuator.states == {"i-1": "sg-a", "i-2": QUARANTINE}
    assert result.complete is False

    # And a later rollback, once the permission is granted, finishes the job
    fixed = isolation({"i-1": "sg-a", "i-2": QUARANTINE})
    retried = rollback_case(case.case_id, cases, FakeActuatorsByPlace({ActionType.ISOLATE_INSTANCE: fixed}))
    assert [action.target for action in fixed.rollbacks] == ["i-2"]
    assert fixed.states["i-2"] == "sg-b"
    assert retried.complete is True


def test_a_transient_error_during_rollback_saves_the_progress_and_raises() -> None:
    # Given two isolations done, the first of which meets throttling on rollback
    case = malicious_case("i-1", "i-2")
    actuator = isolation(
        {"i-1": "sg-a", "i-2": "sg-b"}, rollback_errors={"i-1": TransientError("Throttling")}
    )
    cases, _ = remediated(case, actuator)

    # When the case is rolled back, Then the error reaches the caller
    with pytest.raises(TransientError):
        rollback_case(case.case_id, cases, FakeActuatorsByPlace({ActionType.ISOLATE_INSTANCE: actuator}))

    # And what was undone before it is saved, the rest left for the next try
    assert statuses(stored(cases, case)) == {"i-1": ActionStatus.DONE, "i-2": ActionStatus.ROLLED_BACK}


def test_rollback_of_an_unknown_case_raises_case_not_found() -> None:
    # Given an empty repository, When a case is rolled back, Then it is not found
    with pytest.raises(CaseNotFoundError, match="guardduty-missing"):
        rollback_case("guardduty-missing", InMemoryCaseRepository(), FakeActuatorsByPlace({}))


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
        remediate(steps_over(cases, actuator), case.case_id)
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
    first = rollback_case(first_rolled_back, cases, FakeActuatorsByPlace(actuators), now=LATER)

    # Then the instance stays isolated, and the case says which open case relies on it
    assert actuator.states["i-1"] == QUARANTINE
    [kept] = stored_case(cases, first_rolled_back).actions
    assert kept.status is ActionStatus.ROLLED_BACK
    assert kept.detail.startswith(f"not undone: open case(s) {other} rely on this isolate_instance of i-1")
    assert (kept.after or {})[KEPT_FOR] == [other]
    assert len(first.kept) == 1
    assert other in first.kept[0]

    # When the other is rolled back too
    second = rollback_case(other, cases, FakeActuatorsByPlace(actuators), now=LATER)

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
    rollback_case("case-a", cases, FakeActuatorsByPlace(actuators), now=LATER)
    assert actuator.states["i-1"] == QUARANTINE

    # When B is closed without a rollback, and A is rolled back again
    cases.save(stored_case(cases, "case-b").model_copy(update={"status": CaseStatus.CLOSED}))
    again = rollback_case("case-a", cases, FakeActuatorsByPlace(actuators), now=LATER)

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
        remediate(steps_over(cases, actuator), case.case_id)

    # When one is rolled back
    result = rollback_case("case-a", cases, FakeActuatorsByPlace({ActionType.ISOLATE_INSTANCE: actuator}))

    # Then its instance is restored at once and the other stays isolated
    assert actuator.states == {"i-1": "sg-web", "i-2": QUARANTINE}
    assert result.kept == []


def stored_case(cases: InMemoryCaseRepository, case_id: str) -> Case:
    found = cases.get(case_id)
    assert found is not None
    return found


# ---------------------------------------------------------------- the steps the state machine calls


def test_the_steps_plan_run_and_finish_a_case_with_small_payloads() -> None:
    # Given a malicious case with one isolation planned, acted on for real
    case = malicious_case("i-0123456789abcdef0")
    actuator = isolation({"i-0123456789abcdef0": "sg-web"})
    cases = InMemoryCaseRepository([case])
    steps = steps_over(cases, actuator)
    task = {"case_id": case.case_id}

    # When the state machine calls plan, run for the one action, then finish
    planned = steps.step({**task, "step": "plan"}).model_dump(mode="json")
    ran = steps.step({**task, "step": "run", "index": 0}).model_dump(mode="json")
    finished = steps.step({**task, "step": "finish"}).model_dump(mode="json")

    # Then the instance was isolated by the run step, and finish, which acts on nothing, answers only
    # the case and that it changed nothing
    assert [item["index"] for item in planned["items"]] == [0]
    assert ran["status"] == "done"
    assert actuator.states["i-0123456789abcdef0"] == QUARANTINE
    assert finished == {"case_id": case.case_id, "changed": False}
    stored = cases.get(case.case_id)
    assert stored is not None
    assert stored.actions[0].status is ActionStatus.DONE


def test_an_unknown_step_is_refused_naming_the_steps_there_are() -> None:
    # Given the steps of a case
    case = malicious_case("i-0123456789abcdef0")
    steps = steps_over(
        InMemoryCaseRepository([case]), isolation({"i-0123456789abcdef0": "sg-web"}), dry_run=True
    )

    # When a payload names a step that does not exist, Then it is refused with the ones that do
    named = "plan, run, record_failure or finish"
    with pytest.raises(ValueError, match=f"unknown remediation step 'undo': {named}"):
        steps.step({"case_id": case.case_id, "step": "undo"})


def test_an_action_the_state_machine_could_not_run_is_recorded_failed_and_finish_reports_it() -> None:
    # Given a case with two isolations planned, the first of which the Map could not run (its function
    # timed out), and the second ran
    case = malicious_case("i-1", "i-2")
    actuator = isolation({"i-1": "sg-web", "i-2": "sg-web"})
    cases = InMemoryCaseRepository([case])
    steps = steps_over(cases, actuator)
    task = {"case_id": case.case_id}
    steps.step({**task, "step": "plan"})
    error = {"Error": "Sandbox.Timedout", "Cause": "Task timed out after 60.00 seconds"}

    # When the Map's Catch records the first failure, the second runs, and the Map finishes
    recorded = steps.step({**task, "step": "record_failure", "index": 0, "error": error})
    ran = steps.step({**task, "step": "run", "index": 1})
    with pytest.raises(RemediationError) as finished:
        steps.step({**task, "step": "finish"})

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
    cases = InMemoryCaseRepository([case])
    steps = steps_over(cases, isolation({"i-1": "sg-web"}))
    steps.step({"case_id": case.case_id, "step": "run", "index": 0})

    # When a failure is recorded for it, Then it stays done
    recorded = steps.step(
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
    steps = steps_over(InMemoryCaseRepository([case]), isolation({"i-1": "sg-web"}))

    # When the remediation finishes, Then the ticket hears of it
    with pytest.raises(RemediationError, match="isolate_instance i-1 never ran"):
        steps.step({"case_id": case.case_id, "step": "finish"})


def test_a_failed_wait_for_approval_is_recorded_for_a_person_to_decide() -> None:
    # Given an action waiting for a person, whose approval request could not be sent
    case = malicious_case("i-1", statuses={"i-1": ActionStatus.PENDING_APPROVAL})
    cases = InMemoryCaseRepository([case])
    actuator = isolation({"i-1": "sg-web"})
    steps = steps_over(cases, actuator)
    error = {"Error": "Lambda.AWSLambdaException", "Cause": "Rate exceeded"}

    # When the Map's Catch records the failure, Then the action is failed, never run, and says so
    recorded = steps.step({"case_id": case.case_id, "step": "record_failure", "index": 0, "error": error})
    assert recorded.model_dump(mode="json")["status"] == "failed"
    [action] = stored(cases, case).actions
    assert action.detail == (
        "not run: waiting for its approval failed (Lambda.AWSLambdaException: Rate exceeded); "
        "a person must decide"
    )
    assert actuator.calls == []


def test_finish_escalates_an_approval_no_one_gave_to_the_ticket_once() -> None:
    # Given an action still waiting for a person when the Map ends (its approval timed out)
    case = malicious_case("i-1", statuses={"i-1": ActionStatus.PENDING_APPROVAL})
    case.actions[0] = case.actions[0].model_copy(update={"detail": "waiting for a person"})
    cases = InMemoryCaseRepository([case])
    steps = steps_over(cases, isolation({"i-1": "sg-web"}))

    # When the remediation finishes, Then the ticket hears it still waits
    with pytest.raises(RemediationError, match="isolate_instance i-1 still waits for approval: escalated"):
        finish(steps, case.case_id)

    # And the action says it was escalated, still waiting, once however often finish runs (a retry)
    with pytest.raises(RemediationError):
        finish(steps, case.case_id)
    [action] = stored(cases, case).actions
    assert action.status is ActionStatus.PENDING_APPROVAL
    assert action.detail == (
        "waiting for a person; no decision within the approval time: escalated to the ticket"
    )


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
    steps = remediator(cases, {}, place=PLACE, max_actions_per_case=6, approval_timeout_seconds=7 * 86_400)

    # When the remediation is planned
    planned = steps.step({"case_id": case.case_id, "step": "plan"}).model_dump(mode="json")

    # Then the Map waits only for as many as the execution's time holds, with a day to spare, and the
    # others are escalated to the ticket at once
    assert EXECUTION_TIMEOUT_SECONDS == 30 * 86_400
    assert [item["index"] for item in planned["items"]] == [0, 1, 2, 3]
    waited = sum(item["approval_timeout_seconds"] for item in planned["items"])
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
    steps = remediator(cases, {}, place=PLACE, max_actions_per_case=5, approval_timeout_seconds=3600)

    # When the remediation is planned
    steps.step({"case_id": case.case_id, "step": "plan"})

    # Then each waits, the pushed one saying it was pushed (and nothing of a playbook asking), the other
    # that its playbook asks; both keep what planned them
    waiting_pushed, waiting_asked = stored(cases, case).actions
    assert (waiting_pushed.status, waiting_asked.status) == (ActionStatus.PENDING_APPROVAL,) * 2
    assert pushed_reason in waiting_pushed.detail
    assert "the playbook asks for approval" not in waiting_pushed.detail
    assert "the playbook asks for approval" in waiting_asked.detail
    assert all(action.detail.startswith(planned) for action in (waiting_pushed, waiting_asked))


# --- every outcome names where -------------------------------------------------------------------

MEMBER = "210987654321"
ELSEWHERE = "eu-west-1"
# A deployment acting for an organisation: its own account and one member, in two Regions.
ORGANISATION = Place(
    own_account="123456789012", members=frozenset({MEMBER}), regions=frozenset({"us-east-1", ELSEWHERE})
)


def member_case(*instance_ids: str) -> Case:
    """A malicious case of the member account's finding in another Region, isolating these instances."""
    case = malicious_case(*instance_ids)
    return case.model_copy(
        update={"alert": case.alert.model_copy(update={"account": MEMBER, "region": ELSEWHERE})}
    )


def places(case: Case) -> dict[str, tuple[ActionStatus, str | None, str | None]]:
    """Each action's status and the account and Region it names, by target."""
    return {action.target: (action.status, action.account, action.region) for action in case.actions}


def test_every_outcome_of_a_run_names_the_members_account_and_region() -> None:
    # Given a member's case with three isolations, the second of which raises (an invalid target), and a
    # cap of two actions
    case = member_case("i-1", "i-2", "i-3")
    actuator = isolation(
        {"i-1": "sg-a", "i-2": "sg-a", "i-3": "sg-a"}, errors={"i-2": ValueError("InvalidInstanceID")}
    )
    cases = InMemoryCaseRepository([case])
    steps = remediator(
        cases, {ActionType.ISOLATE_INSTANCE: actuator}, place=ORGANISATION, max_actions_per_case=2
    )

    # When it is remediated (the failure reaching the ticket)
    with pytest.raises(RemediationError, match="InvalidInstanceID"):
        remediate(steps, case.case_id)

    # Then the action done, the one that failed and the one beyond the cap each name the member's account
    # and Region
    assert places(stored(cases, case)) == {
        "i-1": (ActionStatus.DONE, MEMBER, ELSEWHERE),
        "i-2": (ActionStatus.FAILED, MEMBER, ELSEWHERE),
        "i-3": (ActionStatus.SKIPPED, MEMBER, ELSEWHERE),
    }


def test_an_action_the_state_machine_could_not_run_names_the_members_account_and_region() -> None:
    # Given a member's case whose isolation is planned (by an earlier plan that named no place)
    case = member_case("i-1")
    cases = InMemoryCaseRepository([case])
    steps = remediator(cases, {}, place=ORGANISATION)

    # When the Map's Catch records that its function timed out
    error = {"Error": "Sandbox.Timedout", "Cause": "Task timed out after 60.00 seconds"}
    steps.step({"case_id": case.case_id, "step": "record_failure", "index": 0, "error": error})

    # Then the failure names the member's account and Region
    assert places(stored(cases, case)) == {"i-1": (ActionStatus.FAILED, MEMBER, ELSEWHERE)}


@pytest.mark.parametrize("planned_first", [True, False], ids=["planned", "run-without-a-plan"])
def test_a_refused_action_names_the_account_and_region_it_was_refused_in(planned_first: bool) -> None:
    # Given a case of an account that is not listed, in another Region, with an isolation planned
    case = member_case("i-1")
    case = case.model_copy(update={"alert": case.alert.model_copy(update={"account": "999999999999"})})
    actuator = isolation({"i-1": "sg-a"})
    cases = InMemoryCaseRepository([case])
    steps = remediator(cases, {ActionType.ISOLATE_INSTANCE: actuator}, place=ORGANISATION)

    # When the plan refuses it, or the run step is called for it anyway
    if planned_first:
        plan(steps, case.case_id)
    else:
        run(steps, case.case_id, 0)

    # Then nothing ran, and the skipped action names the account and Region it was refused in
    assert actuator.calls == []
    assert places(stored(cases, case)) == {"i-1": (ActionStatus.SKIPPED, "999999999999", ELSEWHERE)}


def test_a_rollback_names_the_members_account_and_region_whether_it_undid_or_failed() -> None:
    # Given a member's two isolations done, the second of which cannot be rolled back
    case = member_case("i-1", "i-2")
    actuator = isolation(
        {"i-1": "sg-a", "i-2": "sg-b"}, rollback_errors={"i-2": PermissionError("UnauthorizedOperation")}
    )
    cases = InMemoryCaseRepository([case])
    remediate(remediator(cases, {ActionType.ISOLATE_INSTANCE: actuator}, place=ORGANISATION), case.case_id)

    # When the case is rolled back
    result = rollback_case(case.case_id, cases, FakeActuatorsByPlace({ActionType.ISOLATE_INSTANCE: actuator}))

    # Then the action undone and the one whose rollback failed both name the member's account and Region
    assert places(stored(cases, case)) == {
        "i-1": (ActionStatus.ROLLED_BACK, MEMBER, ELSEWHERE),
        "i-2": (ActionStatus.FAILED, MEMBER, ELSEWHERE),
    }
    assert [(action.account, action.region) for action in result.actions] == [(MEMBER, ELSEWHERE)] * 2


def _with_a_domain_block(case: Case, **parameters: str) -> Case:
    """The case with a block of its C&C domain planned after its isolation."""
    block = Action(type=ActionType.BLOCK_DOMAIN_DNS_FIREWALL, target="c2.example.net", parameters=parameters)
    return case.model_copy(update={"actions": [*case.actions, block]})


def test_an_action_its_actuator_skips_without_acting_is_recorded_by_the_plan_and_never_run() -> None:
    # Given a case planning an isolation, then a domain block on a deployment without a domain list
    case = _with_a_domain_block(malicious_case("i-1"))
    cases = InMemoryCaseRepository([case])
    unconfigured = DnsFirewallDomainBlocker(route53resolver_client=None, domain_list_id=None)
    steps = remediator(
        cases,
        {
            ActionType.ISOLATE_INSTANCE: isolation({"i-1": "sg-web"}),
            ActionType.BLOCK_DOMAIN_DNS_FIREWALL: unconfigured,
        },
        place=PLACE,
    )

    # When the plan step runs
    planned = plan(steps, case.case_id)

    # Then the state machine gets the isolation alone to run, and the block is recorded as its run would
    # record it: skipped, saying why, in the finding's account and Region
    assert [item.index for item in planned.items] == [0]
    block = cases.get(case.case_id).actions[1]  # type: ignore[union-attr]
    assert block.status is ActionStatus.SKIPPED
    assert block.detail == "not blocked: no DNS Firewall domain list configured"
    assert (block.account, block.region) == (case.alert.account, case.alert.region)
    assert block.parameters == {}
    # And the whole remediation ends as it ended when the block was run: nothing failed, nothing waits
    assert remediate(steps, case.case_id) == [ActionStatus.DONE]
    done = cases.get(case.case_id)
    assert done is not None
    assert [action.status for action in done.actions] == [ActionStatus.DONE, ActionStatus.SKIPPED]


def test_an_action_waiting_for_a_person_is_planned_even_when_its_actuator_would_skip_it() -> None:
    # Given a case whose domain block waits for a person, on a deployment without a domain list
    case = _with_a_domain_block(malicious_case(), needs_approval="true")
    cases = InMemoryCaseRepository([case])
    unconfigured = DnsFirewallDomainBlocker(route53resolver_client=None, domain_list_id=None)
    steps = remediator(cases, {ActionType.BLOCK_DOMAIN_DNS_FIREWALL: unconfigured}, place=PLACE)

    # When the plan step runs
    planned = plan(steps, case.case_id)

    # Then the block still waits for its approval, as before
    assert [(item.index, item.approval) for item in planned.items] == [(0, True)]
    assert cases.get(case.case_id).actions[0].status is ActionStatus.PENDING_APPROVAL  # type: ignore[union-attr]


def test_a_member_accounts_action_is_left_to_its_run_which_skips_it_the_same() -> None:
    # Given a case in a member account planning a domain block, on a deployment without a domain list
    member = "210987654321"
    place = Place(own_account=PLACE.own_account, members=frozenset({member}), regions=PLACE.regions)
    case = _with_a_domain_block(make_case(make_alert(account=member), status=CaseStatus.ENRICHED))
    cases = InMemoryCaseRepository([case])
    unconfigured = DnsFirewallDomainBlocker(route53resolver_client=None, domain_list_id=None)
    steps = remediator(cases, {ActionType.BLOCK_DOMAIN_DNS_FIREWALL: unconfigured}, place=place)

    # When the plan step runs, Then the block is planned: the member's actuators are had by its run alone
    assert [item.index for item in plan(steps, case.case_id).items] == [0]
    # And its run skips it with the same reason
    run(steps, case.case_id, 0)
    block = cases.get(case.case_id).actions[0]  # type: ignore[union-attr]
    assert (block.status, block.detail) == (
        ActionStatus.SKIPPED,
        "not blocked: no DNS Firewall domain list configured",
    )


def _foreseeing_actuators() -> list[Any]:
    """Every actuator the remediate function builds that may foresee an outcome, on a deployment with no
    resource configured: the DNS Firewall one without a list, the S3 quarantine without a bucket, host
    containment without a Falcon client, and one of an action a member's finding may not run."""
    settings = RemediateSettings.from_environ(
        {"AWS_REGION": "us-east-1", "CASES_TABLE_NAME": "cases", "OWN_ACCOUNT_ID": PLACE.own_account}
    )
    built = {**actuators(settings), **actuators_outside_aws(settings)}
    found = [
        pytest.param(action_type, actuator, id=action_type.value)
        for action_type, actuator in built.items()
        if isinstance(actuator, ForeseeingActuator)
    ]
    member_only = deployment_account_only("the WAF IP set", PLACE.own_account, "210987654321")
    return [*found, pytest.param(ActionType.BLOCK_IP_WAF, member_only, id="member")]


@pytest.mark.parametrize(("action_type", "actuator"), _foreseeing_actuators())
def test_an_outcome_foreseen_is_the_one_running_the_action_gives(
    action_type: ActionType, actuator: ForeseeingActuator
) -> None:
    # Given an action of the actuator's type
    action = Action(type=action_type, target="target-1", parameters={"case_id": "case-1"})

    # When its outcome is foreseen, and when the action is run, in dry run and for real
    foreseen = actuator.outcome_without_acting(action)

    # Then the outcome is known, and it is what each run gives
    assert foreseen is not None
    runs: ResponseActuator = actuator  # type: ignore[assignment]  # each is both
    assert foreseen == runs.run(action, True) == runs.run(action, False)


def test_the_dns_firewall_actuator_with_a_list_foresees_nothing() -> None:
    # Given the DNS Firewall actuator of a deployment with a domain list
    blocker = DnsFirewallDomainBlocker(route53resolver_client=None, domain_list_id="rslvr-fdl-1")
    # When a block's outcome is asked for beforehand, Then only running it tells
    block = Action(type=ActionType.BLOCK_DOMAIN_DNS_FIREWALL, target="c2.example.net")
    assert blocker.outcome_without_acting(block) is None
