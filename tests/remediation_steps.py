"""The remediation as the state machine drives it (statemachine/triage.asl.json): `plan`, then `run` for
each planned item in the order of the Map (its approvals given), then `finish`. Unit and functional tests
remediate a case through these steps, the one path production takes."""

from __future__ import annotations

from vtriage.eligibility import Place
from vtriage.fakes import FakeActuatorsByPlace
from vtriage.models import ActionStatus
from vtriage.ports import BlastRadius, SearchableCases
from vtriage.remediate import ActionOutcome, Actuators, FinishedRemediation, RemediationPlan, Remediator


def remediator(
    cases: SearchableCases,
    actuators: Actuators,
    *,
    place: Place,
    dry_run: bool = False,
    max_actions_per_case: int = 5,
    max_actions_per_hour: int = 20,
    approval_timeout_seconds: int = 3600,
    blast_radius: BlastRadius | None = None,
) -> Remediator:
    """The remediate function's steps over these cases, with these actuators in every account and Region
    (`FakeActuatorsByPlace`: the function asks for those of each case's place, as deployed)."""
    return Remediator(
        cases=cases,
        actuators=FakeActuatorsByPlace(actuators),
        blast_radius=blast_radius,
        dry_run=dry_run,
        max_actions_per_case=max_actions_per_case,
        max_actions_per_hour=max_actions_per_hour,
        approval_timeout_seconds=approval_timeout_seconds,
        place=place,
    )


def plan(steps: Remediator, case_id: str) -> RemediationPlan:
    """The `plan` step, as the state machine's PlanRemediation state calls it."""
    planned = steps.step({"step": "plan", "case_id": case_id})
    assert isinstance(planned, RemediationPlan)
    return planned


def run(steps: Remediator, case_id: str, index: int) -> ActionOutcome:
    """The `run` step for one action, as the Map's RunAction state calls it."""
    outcome = steps.step({"step": "run", "case_id": case_id, "index": index})
    assert isinstance(outcome, ActionOutcome)
    return outcome


def finish(steps: Remediator, case_id: str) -> FinishedRemediation:
    """The `finish` step: raises `RemediationError` with what must reach the ticket."""
    finished = steps.step({"step": "finish", "case_id": case_id})
    assert isinstance(finished, FinishedRemediation)
    return finished


def remediate(steps: Remediator, case_id: str) -> list[ActionStatus]:
    """Plan the case, run each planned item in the Map's order (a person approving those that wait), and
    finish: one execution's remediate branch. Returns the status each run step reported; raises what
    `finish` raises (`RemediationError` for the ticket), or what a run step raises (`TransientError`,
    which the state machine retries)."""
    reported = [run(steps, case_id, item.index).status for item in plan(steps, case_id).items]
    finish(steps, case_id)
    return reported
