"""remediate_case: runs planned actions under a cap, records every outcome, never runs an action twice."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.fakes import FakeInstanceIsolation, InMemoryCaseRepository, make_alert, make_case
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
from vtriage.remediate import remediate_case

NOW = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


def malicious_case(*instance_ids: str, statuses: dict[str, ActionStatus] | None = None) -> Case:
    """An enriched malicious case with one isolation planned per instance."""
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
        ],
    )


def run(
    case: Case, isolation: FakeInstanceIsolation, *, dry_run: bool = False, max_actions: int = 5
) -> tuple[InMemoryCaseRepository, Case]:
    """Store the case, remediate it, return the repository and the stored case."""
    cases = InMemoryCaseRepository([case])
    remediate_case(
        TaskInput(case_id=case.case_id), cases, isolation, dry_run=dry_run, max_actions=max_actions, now=NOW
    )
    stored = cases.get(case.case_id)
    assert stored is not None
    return cases, stored


def statuses(case: Case) -> dict[str, ActionStatus]:
    return {action.target: action.status for action in case.actions}


def test_live_run_isolates_and_marks_the_case_remediated() -> None:
    # Given a malicious case planning to isolate one instance
    case = malicious_case("i-1")
    isolation = FakeInstanceIsolation({"i-1": ["sg-web"]})

    # When it is remediated for real
    cases, stored = run(case, isolation)

    # Then the instance is isolated and the case records the outcome with before and after
    assert isolation.groups["i-1"] == ["sg-quarantine"]
    [action] = stored.actions
    assert action.status is ActionStatus.DONE
    assert action.before == {"groups": ["sg-web"]}
    assert action.after == {"groups": ["sg-quarantine"]}
    assert stored.status is CaseStatus.REMEDIATED
    assert stored.branch is Branch.REMEDIATE
    assert stored.updated_at == NOW
    assert cases.saves == 1


def test_dry_run_changes_nothing_and_says_what_would_change() -> None:
    # Given a malicious case
    case = malicious_case("i-1")
    isolation = FakeInstanceIsolation({"i-1": ["sg-web"]})

    # When it is remediated in dry run
    _, stored = run(case, isolation, dry_run=True)

    # Then nothing moved, the action says what would, and the case is not called remediated
    assert isolation.groups["i-1"] == ["sg-web"]
    assert isolation.calls == [("i-1", True)]
    [action] = stored.actions
    assert action.status is ActionStatus.DRY_RUN
    assert "sg-web" in action.detail
    assert stored.status is CaseStatus.ENRICHED
    assert stored.branch is Branch.REMEDIATE


def test_actions_beyond_the_cap_are_skipped_for_a_person_to_decide() -> None:
    # Given a case with three isolations planned and a cap of two
    case = malicious_case("i-1", "i-2", "i-3")
    isolation = FakeInstanceIsolation({"i-1": ["sg-a"], "i-2": ["sg-a"], "i-3": ["sg-a"]})

    # When it is remediated
    _, stored = run(case, isolation, max_actions=2)

    # Then only the first two ran; the third is skipped and says why
    assert [call[0] for call in isolation.calls] == ["i-1", "i-2"]
    assert statuses(stored) == {
        "i-1": ActionStatus.DONE,
        "i-2": ActionStatus.DONE,
        "i-3": ActionStatus.SKIPPED,
    }
    skipped = stored.actions[2]
    assert "cap of 2" in skipped.detail
    assert "person must decide" in skipped.detail
    assert isolation.groups["i-3"] == ["sg-a"]


def test_a_cap_of_zero_runs_nothing() -> None:
    # Given a case with a planned isolation and a cap of zero
    case = malicious_case("i-1")
    isolation = FakeInstanceIsolation({"i-1": ["sg-a"]})

    # When it is remediated
    _, stored = run(case, isolation, max_actions=0)

    # Then the port was never called and the action is skipped
    assert isolation.calls == []
    assert statuses(stored) == {"i-1": ActionStatus.SKIPPED}
    assert stored.status is CaseStatus.ENRICHED


def test_a_protected_instance_does_not_use_up_the_cap() -> None:
    # Given a cap of one, and a first instance that is protected
    case = malicious_case("i-protected", "i-2")
    isolation = FakeInstanceIsolation({"i-protected": ["sg-a"], "i-2": ["sg-a"]}, protected={"i-protected"})

    # When it is remediated
    _, stored = run(case, isolation, max_actions=1)

    # Then the protected one is skipped with its reason and the second still runs
    assert statuses(stored) == {"i-protected": ActionStatus.SKIPPED, "i-2": ActionStatus.DONE}
    assert "protected" in stored.actions[0].detail


def test_an_action_that_raises_is_recorded_as_failed_then_raises_remediation_error() -> None:
    # Given two isolations, the first of which raises (say, a missing IAM permission)
    case = malicious_case("i-1", "i-2")
    isolation = FakeInstanceIsolation(
        {"i-1": ["sg-a"], "i-2": ["sg-a"]},
        errors={"i-1": PermissionError("UnauthorizedOperation: ec2:ModifyNetworkInterfaceAttribute")},
    )
    cases = InMemoryCaseRepository([case])

    # When the case is remediated
    with pytest.raises(RemediationError, match="UnauthorizedOperation"):
        remediate_case(TaskInput(case_id=case.case_id), cases, isolation, dry_run=False, max_actions=5)

    # Then the failure is saved on the case with the error, and the other action still ran
    stored = cases.get(case.case_id)
    assert stored is not None
    assert statuses(stored) == {"i-1": ActionStatus.FAILED, "i-2": ActionStatus.DONE}
    assert "PermissionError: UnauthorizedOperation" in stored.actions[0].detail
    assert stored.status is CaseStatus.REMEDIATED
    assert stored.branch is Branch.REMEDIATE


def test_a_failed_outcome_from_the_port_is_recorded_without_raising() -> None:
    # Given a planned isolation of an instance that no longer exists
    case = malicious_case("i-gone")
    isolation = FakeInstanceIsolation({})

    # When the case is remediated
    _, stored = run(case, isolation)

    # Then the action is failed with the port's reason and the case is not remediated
    [action] = stored.actions
    assert action.status is ActionStatus.FAILED
    assert "InvalidInstanceID.NotFound" in action.detail
    assert stored.status is CaseStatus.ENRICHED


def test_running_twice_changes_nothing_more() -> None:
    # Given a case remediated once, with one action beyond the cap
    case = malicious_case("i-1", "i-2")
    isolation = FakeInstanceIsolation({"i-1": ["sg-a"], "i-2": ["sg-a"]})
    cases = InMemoryCaseRepository([case])
    task = TaskInput(case_id=case.case_id)
    first = remediate_case(task, cases, isolation, dry_run=False, max_actions=1, now=NOW)
    after_first = cases.get(case.case_id)

    # When it is remediated again (a retry, a redelivery)
    second = remediate_case(task, cases, isolation, dry_run=False, max_actions=1, now=NOW)

    # Then no action ran again, nothing was written, and the result says so
    assert first.changed is True
    assert second.changed is False
    assert len(isolation.calls) == 1
    assert cases.saves == 1
    assert cases.get(case.case_id) == after_first
    assert second.actions == first.actions


def test_a_transient_error_leaves_the_action_for_the_retry() -> None:
    # Given two isolations, the second of which meets EC2 throttling
    case = malicious_case("i-1", "i-2")
    isolation = FakeInstanceIsolation(
        {"i-1": ["sg-a"], "i-2": ["sg-a"]}, errors={"i-2": TransientError("RequestLimitExceeded")}
    )
    cases = InMemoryCaseRepository([case])
    task = TaskInput(case_id=case.case_id)

    # When the case is remediated
    with pytest.raises(TransientError):
        remediate_case(task, cases, isolation, dry_run=False, max_actions=5)

    # Then the first outcome is saved and the second action is still planned, for the state machine's Retry
    stored = cases.get(case.case_id)
    assert stored is not None
    assert statuses(stored) == {"i-1": ActionStatus.DONE, "i-2": ActionStatus.PLANNED}

    # And when the retry comes once EC2 recovers, only the second action runs
    retry_isolation = FakeInstanceIsolation({"i-1": ["sg-quarantine"], "i-2": ["sg-a"]})
    remediate_case(task, cases, retry_isolation, dry_run=False, max_actions=5)
    assert retry_isolation.calls == [("i-2", False)]


def test_actions_already_run_count_towards_the_cap() -> None:
    # Given a case where one isolation already ran and another is planned, under a cap of one
    case = malicious_case("i-1", "i-2", statuses={"i-1": ActionStatus.DONE})
    isolation = FakeInstanceIsolation({"i-1": ["sg-quarantine"], "i-2": ["sg-a"]})

    # When it is remediated
    _, stored = run(case, isolation, max_actions=1)

    # Then the planned one is skipped: the case has used its one automatic action
    assert isolation.calls == []
    assert statuses(stored) == {"i-1": ActionStatus.DONE, "i-2": ActionStatus.SKIPPED}


def test_approved_actions_run() -> None:
    # Given an action that waited for approval (the state machine calls remediate once it is given)
    case = malicious_case("i-1", statuses={"i-1": ActionStatus.PENDING_APPROVAL})
    isolation = FakeInstanceIsolation({"i-1": ["sg-a"]})

    # When the case is remediated
    _, stored = run(case, isolation)

    # Then the action ran
    assert statuses(stored) == {"i-1": ActionStatus.DONE}


def test_a_case_without_actions_is_marked_remediate_branch_only() -> None:
    # Given a malicious case with nothing to act on
    case = malicious_case()

    # When it is remediated
    _, stored = run(case, FakeInstanceIsolation())

    # Then it took the remediate branch but is not called remediated
    assert stored.branch is Branch.REMEDIATE
    assert stored.status is CaseStatus.ENRICHED


def test_an_unknown_case_raises_case_not_found() -> None:
    # Given an empty repository, When a case is remediated, Then it is not found
    with pytest.raises(CaseNotFoundError, match="guardduty-missing"):
        remediate_case(
            TaskInput(case_id="guardduty-missing"),
            InMemoryCaseRepository(),
            FakeInstanceIsolation(),
            dry_run=False,
            max_actions=5,
        )
