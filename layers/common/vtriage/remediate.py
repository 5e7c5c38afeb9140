"""Run a case's planned response actions, within a cap, and record every outcome on the case;
roll back what is reversible."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from vtriage.errors import CaseNotFoundError, RemediationError, TransientError
from vtriage.models import (
    DRY_RUN_PARAMETER,
    NEEDS_APPROVAL_PARAMETER,
    Action,
    ActionStatus,
    ActionType,
    Branch,
    Case,
    CaseStatus,
    TaskInput,
)
from vtriage.ports import CaseRepository, ResponseActuator

Actuators = Mapping[ActionType, ResponseActuator]

# PENDING_APPROVAL counts as not yet run: the state machine calls this function only once a person
# approved, so the approved actions must run now.
_NOT_YET_RUN = frozenset({ActionStatus.PLANNED, ActionStatus.PENDING_APPROVAL})

# Outcomes that use up the cap: the port acted, or tried to. A SKIPPED outcome changed nothing.
_COUNTS_TOWARDS_CAP = frozenset(
    {ActionStatus.DONE, ActionStatus.DRY_RUN, ActionStatus.FAILED, ActionStatus.ROLLED_BACK}
)

# What a rollback undoes: an action that acted (or failed part-way, or failed to roll back) and
# recorded the state before it. A dry run, a skip, or a failure that changed nothing records no state.
_MAY_HAVE_CHANGED = frozenset({ActionStatus.DONE, ActionStatus.FAILED})

# The parameter every actuator receives with the case id (tags, quarantine keys, snapshots carry it).
CASE_ID_PARAMETER = "case_id"


class BlastRadius(Protocol):
    """The blast-radius cap shared by every case: how many actions may act in the current hour."""

    def acquire(self) -> bool:
        """Take one action from the current hour's allowance; False when it is spent."""
        ...


class PlannedItem(BaseModel):
    """One action as the state machine's Map sees it: a reference, never the action itself."""

    model_config = ConfigDict(extra="forbid")

    case_id: str
    index: int = Field(ge=0, description="the action's position in the case's actions")
    approval: bool = Field(description="whether a person must approve it before it runs")
    approval_timeout_seconds: int = Field(ge=1)


class RemediationPlan(BaseModel):
    """What the plan step returns: the items of the Map, the ones needing no person first."""

    model_config = ConfigDict(extra="forbid")

    case_id: str
    items: list[PlannedItem]


class ActionTask(BaseModel):
    """What the state machine passes to run one action of a case."""

    model_config = ConfigDict(extra="ignore")

    case_id: str
    index: int = Field(ge=0)


class ActionOutcome(BaseModel):
    """What running one action returns to the state machine: its status, nothing larger."""

    model_config = ConfigDict(extra="forbid")

    case_id: str
    index: int
    status: ActionStatus
    changed: bool


class RemediationResult(BaseModel):
    """What the remediate function returns to the state machine: small, the case holds the rest."""

    model_config = ConfigDict(extra="forbid")

    case_id: str
    actions: list[Action]
    changed: bool


class RollbackResult(BaseModel):
    """What `rollback_case` did, action by action, in the order it undid them (last run first)."""

    model_config = ConfigDict(extra="forbid")

    case_id: str
    actions: list[Action]
    complete: bool
    changed: bool


class FinishedRemediation(BaseModel):
    """What the `finish` step returns to the state machine: the case and whether anything changed."""

    model_config = ConfigDict(extra="forbid")

    case_id: str
    changed: bool


@dataclass(frozen=True)
class Remediator:
    """The remediation steps the state machine calls, each under the function's guardrails.

    The payload names the step: `plan` (which actions run now and which wait for approval), `run`
    (one action, by index), `finish` (raise what must reach the ticket). Without a step, every action
    of the case runs at once, as `remediate_case` does.
    """

    cases: CaseRepository
    actuators: Actuators
    blast_radius: BlastRadius | None
    dry_run: bool
    max_actions_per_case: int
    max_actions_per_hour: int
    approval_timeout_seconds: int

    def step(self, event: Mapping[str, Any]) -> BaseModel:
        """Carry out the step the payload names; ValueError for a step that does not exist."""
        step = event.get("step")
        if step == "plan":
            return plan_remediation(
                TaskInput.model_validate(event),
                self.cases,
                dry_run=self.dry_run,
                max_actions=self.max_actions_per_case,
                blast_radius=self.blast_radius,
                max_actions_per_hour=self.max_actions_per_hour,
                approval_timeout_seconds=self.approval_timeout_seconds,
            )
        if step == "run":
            return run_action(ActionTask.model_validate(event), self.cases, self.actuators, self.dry_run)
        if step == "finish":
            result = finish_remediation(TaskInput.model_validate(event), self.cases)
            return FinishedRemediation(case_id=result.case_id, changed=result.changed)
        if step is not None:
            raise ValueError(f"unknown remediation step {step!r}: plan, run or finish")
        return remediate_case(
            TaskInput.model_validate(event),
            self.cases,
            self.actuators,
            dry_run=self.dry_run,
            max_actions=self.max_actions_per_case,
        )


def remediate_case(
    task: TaskInput,
    cases: CaseRepository,
    actuators: Actuators,
    dry_run: bool,
    max_actions: int,
    *,
    now: datetime | None = None,
) -> RemediationResult:
    """Run the case's actions not yet run, at most `max_actions` per case, and save their outcomes.

    Each action goes to the actuator of its type; a type with no actuator fails (a person must look).
    An action runs in dry run
    when `dry_run` is set or its parameters say `dry_run=true`. Actuators receive the case id in the
    `case_id` parameter; the case keeps the action's parameters as planned.

    Actions beyond the cap are SKIPPED for a person to decide. Running it again changes nothing:
    actions already run are never run twice. An action that raises is recorded as FAILED, the case
    is saved, and `RemediationError` is raised so the state machine opens a ticket; a
    `TransientError` leaves its action not yet run, so that the state machine's Retry runs it again.
    """
    case = cases.get(task.case_id)
    if case is None:
        raise CaseNotFoundError(f"case {task.case_id} not found")
    before = case.model_copy(deep=True)
    budget = max_actions - sum(1 for action in case.actions if action.status in _COUNTS_TOWARDS_CAP)
    failures: list[str] = []
    transient: TransientError | None = None

    for index, action in enumerate(case.actions):
        if action.status not in _NOT_YET_RUN:
            continue
        if budget <= 0:
            case.actions[index] = _beyond_the_cap(action, max_actions)
            continue
        try:
            outcome = _run(case, action, actuators, dry_run)
        except TransientError as error:
            transient = error
            break
        except Exception as error:  # any failure of an action must reach a person, whatever its kind
            outcome = action.model_copy(
                update={"status": ActionStatus.FAILED, "detail": f"{type(error).__name__}: {error}"}
            )
            failures.append(f"{action.type.value} {action.target}: {outcome.detail}")
        case.actions[index] = outcome
        if outcome.status in _COUNTS_TOWARDS_CAP:
            budget -= 1

    case.branch = Branch.REMEDIATE
    if any(action.status is ActionStatus.DONE for action in case.actions):
        case.status = CaseStatus.REMEDIATED
    changed = case != before
    if changed:
        case.updated_at = now or datetime.now(UTC)
        cases.save(case)

    if transient is not None:
        raise transient
    if failures:
        raise RemediationError(f"case {case.case_id}: " + "; ".join(failures))
    return RemediationResult(case_id=case.case_id, actions=case.actions, changed=changed)


def plan_remediation(
    task: TaskInput,
    cases: CaseRepository,
    *,
    dry_run: bool,
    max_actions: int,
    blast_radius: BlastRadius | None,
    max_actions_per_hour: int,
    approval_timeout_seconds: int,
    now: datetime | None = None,
) -> RemediationPlan:
    """Decide, for each action not yet run, whether it runs now or waits for a person, and save that.

    An action waits (PENDING_APPROVAL, with the reason) when its playbook asks for approval
    (`needs_approval=true`) or when it would act for real and the blast-radius cap of the hour is spent;
    a dry run changes nothing and uses none of it. Beyond `max_actions` per case, actions are SKIPPED
    as in `remediate_case`. The items come back with those needing no person first, so that the Map,
    which runs one at a time, acts on them before it waits.
    """
    case = cases.get(task.case_id)
    if case is None:
        raise CaseNotFoundError(f"case {task.case_id} not found")
    before = case.model_copy(deep=True)
    budget = max_actions - sum(1 for action in case.actions if action.status in _COUNTS_TOWARDS_CAP)
    automatic: list[PlannedItem] = []
    waiting: list[PlannedItem] = []

    for index, action in enumerate(case.actions):
        if action.status not in _NOT_YET_RUN:
            continue
        if budget <= 0:
            case.actions[index] = _beyond_the_cap(action, max_actions)
            continue
        budget -= 1
        reason = _why_a_person_must_approve(action, dry_run, blast_radius, max_actions_per_hour)
        if reason is not None:
            case.actions[index] = action.model_copy(
                update={"status": ActionStatus.PENDING_APPROVAL, "detail": reason}
            )
        item = PlannedItem(
            case_id=case.case_id,
            index=index,
            approval=case.actions[index].status is ActionStatus.PENDING_APPROVAL,
            approval_timeout_seconds=approval_timeout_seconds,
        )
        (waiting if item.approval else automatic).append(item)

    case.branch = Branch.REMEDIATE
    if case != before:
        case.updated_at = now or datetime.now(UTC)
        cases.save(case)
    return RemediationPlan(case_id=case.case_id, items=automatic + waiting)


def run_action(
    task: ActionTask,
    cases: CaseRepository,
    actuators: Actuators,
    dry_run: bool,
    *,
    now: datetime | None = None,
) -> ActionOutcome:
    """Run one action of the case (planned, or approved by a person) and save its outcome.

    An action already run is left as it is: running this again changes nothing. An action that raises
    is recorded FAILED with the reason, and `finish_remediation` sends the case to a ticket with it; a
    `TransientError` saves nothing and is raised for the state machine's Retry.
    """
    case = cases.get(task.case_id)
    if case is None:
        raise CaseNotFoundError(f"case {task.case_id} not found")
    if task.index >= len(case.actions):
        raise CaseNotFoundError(f"case {task.case_id} has no action {task.index}")
    action = case.actions[task.index]
    if action.status not in _NOT_YET_RUN:
        return ActionOutcome(case_id=case.case_id, index=task.index, status=action.status, changed=False)
    try:
        outcome = _run(case, action, actuators, dry_run)
    except TransientError:
        raise
    except Exception as error:  # any failure of an action must reach a person, whatever its kind
        outcome = action.model_copy(
            update={"status": ActionStatus.FAILED, "detail": f"{type(error).__name__}: {error}"}
        )
    case.actions[task.index] = outcome
    case.branch = Branch.REMEDIATE
    if outcome.status is ActionStatus.DONE:
        case.status = CaseStatus.REMEDIATED
    case.updated_at = now or datetime.now(UTC)
    cases.save(case)
    return ActionOutcome(case_id=case.case_id, index=task.index, status=outcome.status, changed=True)


def finish_remediation(
    task: TaskInput, cases: CaseRepository, *, now: datetime | None = None
) -> RemediationResult:
    """Once every action ran or was decided: raise `RemediationError` naming what failed, and what still
    waits for a person (an approval that timed out: the ticket escalates it), so that the state machine
    opens the ticket with it; otherwise return the outcomes."""
    case = cases.get(task.case_id)
    if case is None:
        raise CaseNotFoundError(f"case {task.case_id} not found")
    failed = [action for action in case.actions if action.status is ActionStatus.FAILED]
    waiting = [action for action in case.actions if action.status is ActionStatus.PENDING_APPROVAL]
    problems = [f"{action.type.value} {action.target} failed: {action.detail}" for action in failed]
    if waiting:
        escalation = "no decision within the approval time: escalated to the ticket"
        for index, action in enumerate(case.actions):
            if action.status is ActionStatus.PENDING_APPROVAL and escalation not in action.detail:
                case.actions[index] = action.model_copy(
                    update={"detail": f"{action.detail}; {escalation}" if action.detail else escalation}
                )
        case.updated_at = now or datetime.now(UTC)
        cases.save(case)
        problems += [
            f"{action.type.value} {action.target} still waits for approval: escalated" for action in waiting
        ]
    if problems:
        raise RemediationError(f"case {case.case_id}: " + "; ".join(problems))
    return RemediationResult(case_id=case.case_id, actions=case.actions, changed=False)


def _beyond_the_cap(action: Action, max_actions: int) -> Action:
    """The action skipped because the case's automatic actions reached their cap: a person decides."""
    return action.model_copy(
        update={
            "status": ActionStatus.SKIPPED,
            "detail": (
                f"not run: the cap of {max_actions} automatic actions per case was reached; "
                "a person must decide whether to run it"
            ),
        }
    )


def _why_a_person_must_approve(
    action: Action, dry_run: bool, blast_radius: BlastRadius | None, max_actions_per_hour: int
) -> str | None:
    if action.status is ActionStatus.PENDING_APPROVAL:
        return action.detail or "waiting for a person to approve it"
    if action.parameters.get(NEEDS_APPROVAL_PARAMETER, "").lower() == "true":
        return "waiting for a person: the playbook asks for approval before this action"
    acts_for_real = not (dry_run or action.parameters.get(DRY_RUN_PARAMETER, "").lower() == "true")
    if acts_for_real and blast_radius is not None and not blast_radius.acquire():
        return (
            f"waiting for a person: the blast-radius cap of {max_actions_per_hour} actions per hour "
            "is reached"
        )
    return None


def rollback_case(
    case_id: str,
    cases: CaseRepository,
    actuators: Actuators,
    *,
    now: datetime | None = None,
) -> RollbackResult:
    """Undo what the case's actions changed, last run first, and save each outcome on the case.

    An action is undone when it ran (DONE, or FAILED part-way or in an earlier rollback) and recorded
    the state before it: its actuator restores that state and the action becomes ROLLED_BACK. What
    cannot be undone (forensic snapshots) stays DONE and says why; a rollback that fails is FAILED with
    the reason, and the next rollback tries it again. Dry runs and skipped actions changed nothing and
    are left alone. Running it again changes nothing more. A `TransientError` saves the progress and is
    raised, so that running it again finishes the job.
    """
    case = cases.get(case_id)
    if case is None:
        raise CaseNotFoundError(f"case {case_id} not found")

    before = case.model_copy(deep=True)
    attempted: list[Action] = []
    complete = True
    transient: TransientError | None = None
    for index in reversed(range(len(case.actions))):
        action = case.actions[index]
        if action.status not in _MAY_HAVE_CHANGED or action.before is None:
            continue
        try:
            outcome = _undo(case, action, actuators)
        except TransientError as error:
            transient = error
            complete = False
            break
        except Exception as error:  # a rollback that fails must reach a person, whatever its kind
            outcome = action.model_copy(
                update={
                    "status": ActionStatus.FAILED,
                    "detail": f"rollback failed: {type(error).__name__}: {error}",
                }
            )
        case.actions[index] = outcome
        attempted.append(outcome)
        if outcome.status is ActionStatus.FAILED:
            complete = False

    changed = case != before
    if changed:
        case.updated_at = now or datetime.now(UTC)
        cases.save(case)
    if transient is not None:
        raise transient
    return RollbackResult(case_id=case.case_id, actions=attempted, complete=complete, changed=changed)


def _for_actuator(case: Case, action: Action) -> Action:
    """The action as an actuator sees it: with the case id among its parameters."""
    return action.model_copy(update={"parameters": {CASE_ID_PARAMETER: case.case_id, **action.parameters}})


def _run(case: Case, action: Action, actuators: Actuators, dry_run: bool) -> Action:
    """Run one action through its actuator; keep the planned type, target and parameters, take the outcome."""
    actuator = actuators.get(action.type)
    if actuator is None:
        raise RemediationError(f"no actuator is configured for {action.type.value} actions")
    action_dry_run = dry_run or action.parameters.get(DRY_RUN_PARAMETER, "").lower() == "true"
    result = actuator.run(_for_actuator(case, action), action_dry_run)
    return _take_outcome(action, result)


def _undo(case: Case, action: Action, actuators: Actuators) -> Action:
    """Roll one action back through its actuator; keep the planned type, target and parameters."""
    actuator = actuators.get(action.type)
    if actuator is None:
        raise RemediationError(f"no actuator is configured for {action.type.value} actions")
    return _take_outcome(action, actuator.rollback(_for_actuator(case, action)))


def _take_outcome(action: Action, result: Action) -> Action:
    return action.model_copy(
        update={
            "status": result.status,
            "detail": result.detail,
            "before": result.before,
            "after": result.after,
        }
    )
