"""Run a case's planned response actions, within a cap, where its finding lives (the deployment's own
account or a member account, in the finding's Region, when the deployment's place admits it; a Falcon
alert's host in the deployment's own Falcon tenant) and nowhere else, and record every outcome on the
case; roll back what is reversible without undoing what another open case relies on."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from vtriage.action_text import leaves_threat, not_contained, status_words
from vtriage.eligibility import WAITS_FOR_A_PERSON, Place
from vtriage.errors import RemediationError, TransientError
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
from vtriage.ports import (
    ActuatorsByPlace,
    BlastRadius,
    CaseRepository,
    CheckpointingActuator,
    ForeseeingActuator,
    ResponseActuator,
    SearchableCases,
    action_at,
    existing_case,
)

# The actuators of one place, one per action type, as `ActuatorsByPlace` gives those of a case's place.
Actuators = Mapping[ActionType, ResponseActuator]

# PENDING_APPROVAL counts as not yet run: the state machine asks to run an action that waited only once
# a person approved it, so it must run now.
_NOT_YET_RUN = frozenset({ActionStatus.PLANNED, ActionStatus.PENDING_APPROVAL})

# Outcomes that use up the cap: the port acted, or tried to. A SKIPPED outcome changed nothing.
_COUNTS_TOWARDS_CAP = frozenset(
    {ActionStatus.DONE, ActionStatus.DRY_RUN, ActionStatus.FAILED, ActionStatus.ROLLED_BACK}
)

# What a rollback undoes: an action that acted (or failed part-way, or failed to roll back) and
# recorded the state before it. A dry run, a skip, or a failure that changed nothing records no state.
_MAY_HAVE_CHANGED = frozenset({ActionStatus.DONE, ActionStatus.FAILED})

# How a case's first words say that its threat is still not cut off (`not_contained`): its history's note
# and its error.
_NOT_CONTAINED = "not contained: "

# When a cap cannot hold every action of a case, the actions that cut the threat off take its units first,
# then the evidence, then the marking: an isolated instance keeps its disks for a snapshot a person
# approves later, while one waiting for its isolation keeps talking to its C&C server (and may wipe what a
# snapshot would keep). Other types (containment, `ActionType.contains_threat`) rank 0.
_CAP_RANK = {ActionType.SNAPSHOT_VOLUMES: 1, ActionType.TAG_INSTANCE: 2}

# Actions whose rollback never changes anything (the snapshots are evidence): no other case relies on
# them being kept, so their actuator says so itself.
_NEVER_UNDONE = frozenset({ActionType.SNAPSHOT_VOLUMES})

# A case that is not closed may still rely on the changes its actions made.
_OPEN = frozenset(status for status in CaseStatus if status is not CaseStatus.CLOSED)

# Where a rollback that kept a change for other open cases names them, and keeps the `after` of the
# action's run (in the action's `after`).
KEPT_FOR = "kept_for"
RUN_AFTER = "run_after"

# The parameter every actuator receives with the case id (tags, quarantine keys, snapshots carry it).
CASE_ID_PARAMETER = "case_id"

# The whole execution's bound: statemachine/triage.asl.json's TimeoutSeconds, which must equal it. The
# Map waits for approvals one after another; only as many waits as fit in it, with a day left for the
# actions, their retries and the ticket, are planned: the others are escalated to the ticket at once.
EXECUTION_TIMEOUT_SECONDS = 30 * 86_400
TIME_BESIDE_APPROVALS_SECONDS = 86_400

# The steps the state machine names in its payloads (statemachine/triage.asl.json).
_STEPS = "plan, run, record_failure or finish"

# How much of a state machine error's cause an action's detail keeps.
_MAX_CAUSE = 500


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


class FailedActionTask(BaseModel):
    """What the state machine passes when running (or waiting to run) one action failed in the Map: the
    Error and Cause its Catch caught."""

    model_config = ConfigDict(extra="ignore")

    case_id: str
    index: int = Field(ge=0)
    error: dict[str, Any] | None = None


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
    kept: list[str] = Field(
        default=[], description="the changes left in place because other open cases rely on them, and why"
    )
    released: list[str] = Field(
        default=[],
        description="changes other cases kept for this one, undone now that no open case relies on them",
    )


class FinishedRemediation(BaseModel):
    """What the `finish` step returns to the state machine: the case and whether anything changed."""

    model_config = ConfigDict(extra="forbid")

    case_id: str
    changed: bool


@dataclass(frozen=True)
class Remediator:
    """The remediation steps the state machine calls, each under the function's guardrails.

    The payload names the step: `plan` (which actions run now and which wait for approval), `run`
    (one action, by index), `record_failure` (the Map could not run one action: record why, and go on),
    `finish` (raise what must reach the ticket). A payload naming no step, or another one, is refused.
    No action runs on a case whose finding lives outside `place`.
    """

    cases: SearchableCases
    actuators: ActuatorsByPlace
    blast_radius: BlastRadius | None
    dry_run: bool
    max_actions_per_case: int
    max_actions_per_hour: int
    approval_timeout_seconds: int
    place: Place

    def step(self, event: Mapping[str, Any]) -> BaseModel:
        """Carry out the step the payload names; ValueError for a payload naming none, or one that does
        not exist."""
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
                place=self.place,
                actuators=self.actuators,
            )
        if step == "run":
            return run_action(
                ActionTask.model_validate(event), self.cases, self.actuators, self.dry_run, place=self.place
            )
        if step == "record_failure":
            return record_action_failure(FailedActionTask.model_validate(event), self.cases)
        if step == "finish":
            result = finish_remediation(TaskInput.model_validate(event), self.cases, place=self.place)
            return FinishedRemediation(case_id=result.case_id, changed=result.changed)
        if step is None:
            raise ValueError(f"the payload names no remediation step: {_STEPS}")
        raise ValueError(f"unknown remediation step {step!r}: {_STEPS}")

    def rollback(self, case_id: str) -> RollbackResult:
        """Undo what the case changed, keeping what other open cases rely on (see `rollback_case`)."""
        return rollback_case(case_id, self.cases, self.actuators)


def refusal(case: Case, place: Place, action: ActionType | None = None) -> str | None:
    """Why an action of this type (of any type when None) may not run on the case: the alert is not
    actionable, or it lives where the deployment does not act so: an AWS action outside its own and its
    member accounts and Regions, or on an alert from outside AWS; a host's containment outside its own
    Falcon tenant (`Place.reasons_against_action`). None when it may run. Planning already gives such a
    finding no action; this is checked again before each action, whoever planned it."""
    where = (
        place.reasons_against_alert(case.alert)
        if action is None
        else place.reasons_against_action(case.alert, action)
    )
    reasons = [*case.alert.not_actionable, *where]
    if not reasons:
        return None
    return "not run, nothing changed: " + "; ".join(dict.fromkeys(reasons))


def _refusals(case: Case, place: Place) -> list[str]:
    """Why the case's actions may not run, each reason once: those of its action types, or of the case
    itself when it has none."""
    kinds: list[ActionType | None] = list(dict.fromkeys(action.type for action in case.actions)) or [None]
    found = (refusal(case, place, kind) for kind in kinds)
    return list(dict.fromkeys(reason for reason in found if reason is not None))


def plan_remediation(
    task: TaskInput,
    cases: CaseRepository,
    *,
    dry_run: bool,
    max_actions: int,
    blast_radius: BlastRadius | None,
    max_actions_per_hour: int,
    approval_timeout_seconds: int,
    place: Place,
    actuators: ActuatorsByPlace | None = None,
    now: datetime | None = None,
) -> RemediationPlan:
    """Decide, for each action not yet run, whether it runs now or waits for a person, and save that.

    An action that may not run where the case's finding lives (`refusal`) gets no item: it is SKIPPED
    with the reason, and `finish_remediation` takes the reason to the ticket. Otherwise an action waits
    (PENDING_APPROVAL, with the reason) when its playbook asks for approval (`needs_approval=true`) or
    when it would act for real and the blast-radius cap of the hour is spent; a dry run changes nothing
    and uses none of it. Beyond `max_actions` per case, actions are SKIPPED for a person to decide.
    An action no person is asked about, whose actuator knows its outcome without acting (`_foreseen`),
    gets that outcome here, as its run would record it, and no item: it changes nothing, so it takes no
    unit of either cap. The caps' units go to the actions that cut the threat off first, then to the
    snapshots, then to the tagging (`_CAP_RANK`), each kind in the playbook's order.
    The items come back with those needing no person first, each part in the playbook's order, so that
    the Map, which runs one at a time, acts on them before it waits. Approvals are waited for one after
    another: those beyond what the execution's time holds (`EXECUTION_TIMEOUT_SECONDS`) get no item and
    are escalated to the ticket.
    """
    case = existing_case(cases, task.case_id)
    before = case.model_copy(deep=True)
    for index, action in enumerate(case.actions):
        refused = refusal(case, place, action.type)
        if refused is not None and action.status in _NOT_YET_RUN:
            case.actions[index] = action.with_outcome(ActionStatus.SKIPPED, refused)

    budget = max_actions - sum(1 for action in case.actions if action.status in _COUNTS_TOWARDS_CAP)
    waits_that_fit = max(
        0, (EXECUTION_TIMEOUT_SECONDS - TIME_BESIDE_APPROVALS_SECONDS) // approval_timeout_seconds
    )
    automatic: list[PlannedItem] = []
    waiting: list[PlannedItem] = []

    by_rank = sorted(range(len(case.actions)), key=lambda index: (_cap_rank(case.actions[index]), index))
    for index in by_rank:
        action = case.actions[index]
        if action.status not in _NOT_YET_RUN:
            continue
        asked = _why_a_person_is_asked(action)
        foreseen = None if asked is not None else _foreseen(case, action, actuators, place)
        if foreseen is not None:
            case.actions[index] = foreseen
            continue
        if budget <= 0:
            case.actions[index] = _beyond_the_cap(action, max_actions)
            continue
        budget -= 1
        reason = asked or _why_the_hour_holds_it_back(action, dry_run, blast_radius, max_actions_per_hour)
        if reason is not None:
            case.actions[index] = action.model_copy(
                update={"status": ActionStatus.PENDING_APPROVAL, "detail": reason}
            )
            if len(waiting) >= waits_that_fit:
                case.actions[index] = _no_time_to_wait(case.actions[index], waits_that_fit)
                continue
        item = PlannedItem(
            case_id=case.case_id,
            index=index,
            approval=case.actions[index].status is ActionStatus.PENDING_APPROVAL,
            approval_timeout_seconds=approval_timeout_seconds,
        )
        (waiting if item.approval else automatic).append(item)

    case.actions = [_placed(case, action) for action in case.actions]
    case.branch = Branch.REMEDIATE
    _save_if_changed(case, before, cases, now)
    in_playbook_order = sorted(automatic, key=_index) + sorted(waiting, key=_index)
    return RemediationPlan(case_id=case.case_id, items=in_playbook_order)


def run_action(
    task: ActionTask,
    cases: CaseRepository,
    actuators: ActuatorsByPlace,
    dry_run: bool,
    *,
    place: Place,
    now: datetime | None = None,
) -> ActionOutcome:
    """Run one action of the case (planned, or approved by a person) and save its outcome.

    An action already run is left as it is: running this again changes nothing. An action of a case
    whose finding lives outside `place` is SKIPPED with the reason and changes nothing. An action that
    raises is recorded FAILED with the reason, and `finish_remediation` sends the case to a ticket with
    it; a `TransientError` saves nothing more and is raised for the state machine's Retry. What a
    `CheckpointingActuator` hands its checkpoint is saved at once, the action still PLANNED: the retry
    runs it again from there, and a failure keeps its `before` and says what it may have left.
    """
    case = existing_case(cases, task.case_id)
    action = action_at(case, task.index)
    if action.status not in _NOT_YET_RUN:
        return ActionOutcome(case_id=case.case_id, index=task.index, status=action.status, changed=False)
    started: list[Action] = []

    def checkpoint(under_way: Action) -> None:
        update = {"status": ActionStatus.PLANNED, "before": under_way.before, "detail": under_way.detail}
        case.actions[task.index] = _placed(case, action.model_copy(update=update))
        case.branch = Branch.REMEDIATE
        case.updated_at = now or datetime.now(UTC)
        cases.save(case)
        started.append(case.actions[task.index])

    try:
        outcome = _run(case, action, actuators, dry_run, place, checkpoint=checkpoint)
    except TransientError:
        raise
    except Exception as error:  # any failure of an action must reach a person, whatever its kind
        failed = f"{type(error).__name__}: {error}"
        if started:
            failed = f"stopped part-way: {started[-1].detail}; {failed}"
        outcome = (started[-1] if started else action).model_copy(
            update={"status": ActionStatus.FAILED, "detail": failed}
        )
    outcome = _placed(case, outcome)
    case.actions[task.index] = outcome
    case.branch = Branch.REMEDIATE
    case.updated_at = now or datetime.now(UTC)
    if _remediated(case) and case.status is not CaseStatus.REMEDIATED:
        case.record(CaseStatus.REMEDIATED, case.updated_at)
    cases.save(case)
    return ActionOutcome(case_id=case.case_id, index=task.index, status=outcome.status, changed=True)


def record_action_failure(
    task: FailedActionTask, cases: CaseRepository, *, now: datetime | None = None
) -> ActionOutcome:
    """Record on the action why the state machine could not run it (or wait for its approval): its
    retries ran out, the function timed out, the approval could not be asked for. The action becomes
    FAILED with the error, unless it had an outcome already; the Map goes on with the next action, and
    `finish_remediation` takes the failure to the ticket."""
    case = existing_case(cases, task.case_id)
    action = action_at(case, task.index)
    if action.status not in _NOT_YET_RUN:
        return ActionOutcome(case_id=case.case_id, index=task.index, status=action.status, changed=False)
    error = task.error or {}
    cause = str(error.get("Cause") or "")
    what = f"{error.get('Error') or 'an unnamed error'}" + (f": {cause[:_MAX_CAUSE]}" if cause else "")
    if action.status is ActionStatus.PENDING_APPROVAL:
        detail = f"not run: waiting for its approval failed ({what}); a person must decide"
    else:
        detail = (
            f"the state machine could not run it ({what}); it may have acted in part: check "
            f"{action.target} and finish or undo by hand"
        )
        if action.before is not None and action.detail:
            # A run that stopped after its checkpoint kept `before`, and says what it may have left: first,
            # so that a ticket that shortens the detail keeps it.
            detail = f"stopped part-way: {action.detail}; {detail}"
    case.actions[task.index] = _placed(case, action.with_outcome(ActionStatus.FAILED, detail))
    case.branch = Branch.REMEDIATE
    case.updated_at = now or datetime.now(UTC)
    cases.save(case)
    return ActionOutcome(case_id=case.case_id, index=task.index, status=ActionStatus.FAILED, changed=True)


def finish_remediation(
    task: TaskInput, cases: CaseRepository, *, place: Place, now: datetime | None = None
) -> RemediationResult:
    """Once every action ran or was decided: raise `RemediationError` naming why nothing ran (a finding
    outside `place`), what failed, what never ran, and what still waits for a person (an approval that
    timed out: the ticket escalates it), so that the state machine opens the ticket with it, the actions
    that were to cut the threat off and did not named first ("not contained: ..."); otherwise return the
    outcomes, a case that acted but whose containment was skipped or only a dry run TICKETED, its history
    saying what is not contained and why (`not_contained`): never REMEDIATED (`_remediated`)."""
    case = existing_case(cases, task.case_id)
    uncontained = not_contained(case.actions)
    problems = _refusals(case, place)
    problems += [
        f"{action.type.value} {action.target} failed: {action.detail}"
        for action in case.actions
        if action.status is ActionStatus.FAILED
    ]
    problems += [
        f"{action.type.value} {action.target} never ran: the execution ended before it"
        if action.before is None
        else f"{action.type.value} {action.target} never finished: the execution ended during it; "
        + action.detail
        for action in case.actions
        if action.status is ActionStatus.PLANNED
    ]
    waiting = [action for action in case.actions if action.status is ActionStatus.PENDING_APPROVAL]
    if waiting:
        escalation = "no decision within the approval time: escalated to the ticket"
        for index, action in enumerate(case.actions):
            escalated = "escalated to the ticket" in action.detail
            if action.status is ActionStatus.PENDING_APPROVAL and not escalated:
                case.actions[index] = action.model_copy(
                    update={"detail": f"{action.detail}; {escalation}" if action.detail else escalation}
                )
        case.updated_at = now or datetime.now(UTC)
        cases.save(case)
        problems += [
            f"{action.type.value} {action.target} still waits for approval: escalated" for action in waiting
        ]
    if problems:
        # What is still not cut off comes first: the ticket and its error lines may be cut.
        left = [
            f"{action.type.value} {action.target} {status_words(action.status)}"
            for action in case.actions
            if leaves_threat(action)
        ]
        first = [_NOT_CONTAINED + ", ".join(left)] if left else []
        raise RemediationError(f"case {case.case_id}: " + "; ".join([*first, *problems]))
    acted = any(action.status is ActionStatus.DONE for action in case.actions)
    if uncontained and acted and case.status is not CaseStatus.TICKETED:
        # A skipped containment raises nothing, yet the case that acted is not remediated: ticketed, saying
        # why (a case that changed nothing is ticketed by the ticket step, as ever).
        case.updated_at = now or datetime.now(UTC)
        case.record(CaseStatus.TICKETED, case.updated_at, _NOT_CONTAINED + "; ".join(uncontained))
        cases.save(case)
    return RemediationResult(case_id=case.case_id, actions=case.actions, changed=False)


def _remediated(case: Case) -> bool:
    """Whether the case is REMEDIATED: an action of it changed something, and every one that cuts the threat
    off did (`not_contained` says nothing). A case whose containment was skipped, failed, refused or waits
    is ticketed instead (docs/decisions/0006-case-lifecycle.md)."""
    acted = any(action.status is ActionStatus.DONE for action in case.actions)
    return acted and not not_contained(case.actions)


def _foreseen(case: Case, action: Action, actuators: ActuatorsByPlace | None, place: Place) -> Action | None:
    """The outcome of an action its actuator knows without acting (`ForeseeingActuator`: one it skips,
    saying why), as `run_action` would record it; None otherwise. Asked only of the actuators that need
    nothing to be had (the deployment's own account's, and those outside AWS: a member's would assume
    its role here), so that the plan makes no call its run would not."""
    if actuators is None:
        return None
    if not action.type.acts_in_aws:
        found: Actuators = actuators.outside_aws()
    elif case.alert.account == place.own_account:
        found = actuators.at(case.alert.account, case.alert.region, case.case_id)
    else:
        return None
    actuator = found.get(action.type)
    if not isinstance(actuator, ForeseeingActuator):
        return None
    outcome = actuator.outcome_without_acting(_for_actuator(case, action))
    return None if outcome is None else action.with_outcome_of(outcome)


def _save_if_changed(case: Case, before: Case, cases: CaseRepository, now: datetime | None) -> None:
    if case != before:
        case.updated_at = now or datetime.now(UTC)
        cases.save(case)


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


def _no_time_to_wait(action: Action, waits_that_fit: int) -> Action:
    """A waiting action the execution has no time left to wait for: escalated to the ticket at once."""
    why = (
        f"not waited for: one execution holds {waits_that_fit} approval wait(s) of this length within "
        f"its {EXECUTION_TIMEOUT_SECONDS // 86_400} days; escalated to the ticket"
    )
    return action.model_copy(update={"detail": f"{action.detail}; {why}" if action.detail else why})


def _cap_rank(action: Action) -> int:
    return _CAP_RANK.get(action.type, 0)


def _index(item: PlannedItem) -> int:
    return item.index


def _why_a_person_is_asked(action: Action) -> str | None:
    """Why a person must approve the action whatever the caps: it waits already, or its playbook (or its
    plan, for a pushed alert) asks for approval; None otherwise."""
    if action.status is ActionStatus.PENDING_APPROVAL:
        return action.detail or "waiting for a person to approve it"
    if action.parameters.get(NEEDS_APPROVAL_PARAMETER, "").lower() == "true":
        # The plan may have said why already (a pushed alert's actions wait for that reason): kept.
        if WAITS_FOR_A_PERSON in action.detail:
            return action.detail
        why = "waiting for a person: the playbook asks for approval before this action"
        return f"{action.detail}; {why}" if action.detail else why
    return None


def _why_the_hour_holds_it_back(
    action: Action, dry_run: bool, blast_radius: BlastRadius | None, max_actions_per_hour: int
) -> str | None:
    """Why an action that would act for real waits for a person: the hour's blast-radius cap is spent
    (taking one of its units otherwise); None when it may run now."""
    acts_for_real = not (dry_run or action.parameters.get(DRY_RUN_PARAMETER, "").lower() == "true")
    if acts_for_real and blast_radius is not None and not blast_radius.acquire():
        actions = "action" if max_actions_per_hour == 1 else "actions"
        return (
            f"waiting for a person: the blast-radius cap of {max_actions_per_hour} {actions} per hour "
            "is reached"
        )
    return None


# ---------------------------------------------------------------------------------------- rollback


def rollback_case(
    case_id: str,
    cases: SearchableCases,
    actuators: ActuatorsByPlace,
    *,
    now: datetime | None = None,
) -> RollbackResult:
    """Undo what the case's actions changed, last run first, and save each outcome on the case.

    An action is undone when it ran (DONE, or FAILED part-way or in an earlier rollback) and recorded
    the state before it: its actuator restores that state and the action becomes ROLLED_BACK. What
    cannot be undone (forensic snapshots) stays DONE and says why; a rollback that fails is FAILED with
    the reason, and the next rollback tries it again. Dry runs and skipped actions changed nothing and
    are left alone.

    A change another open case relies on (the same action on the same target, done by that case too) is
    not undone: the action becomes ROLLED_BACK for this case, says which cases keep it, and names them in
    `after["kept_for"]`. The last of those cases to be rolled back undoes it (each kept change in turn,
    the latest case's first); running this again once they are closed undoes it too.

    Running it again changes nothing more. A `TransientError` saves the progress and is raised, so that
    running it again finishes the job.
    """
    case = existing_case(cases, case_id)
    before = case.model_copy(deep=True)
    others = _Others(cases, case_id)
    attempted: list[Action] = []
    kept: list[str] = []
    released: list[str] = []
    complete = True
    transient: TransientError | None = None
    for index in reversed(range(len(case.actions))):
        action = case.actions[index]
        if not _to_undo(action):
            continue
        try:
            if action.type in _NEVER_UNDONE:
                outcome = _undo(case, action, actuators)
            else:
                outcome = _undo_unless_relied_on(case, index, others, actuators, released, now=now)
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
        outcome = _placed(case, outcome)
        case.actions[index] = outcome
        attempted.append(outcome)
        if outcome.status is ActionStatus.FAILED:
            complete = False
        if _kept_for_others(outcome):
            kept.append(f"{outcome.type.value} {outcome.target}: {outcome.detail}")

    _save_if_changed(case, before, cases, now)
    if transient is not None:
        raise transient
    return RollbackResult(
        case_id=case.case_id,
        actions=attempted,
        complete=complete,
        changed=case != before or bool(released),
        kept=kept,
        released=released,
    )


class _Others:
    """The other cases, read once and only when a rollback first needs them."""

    def __init__(self, cases: SearchableCases, case_id: str) -> None:
        self._cases = cases
        self._case_id = case_id
        self._found: list[Case] | None = None

    def all(self) -> list[Case]:
        if self._found is None:
            self._found = [case for case in self._cases.list_cases() if case.case_id != self._case_id]
        return self._found

    def save(self, case: Case) -> None:
        self._cases.save(case)


def _to_undo(action: Action) -> bool:
    """Whether a rollback has something to do for the action: it may have changed something and recorded
    the state before, or an earlier rollback kept its change for other cases."""
    return (action.status in _MAY_HAVE_CHANGED and action.before is not None) or _kept_for_others(action)


def _kept_for_others(action: Action) -> bool:
    return action.status is ActionStatus.ROLLED_BACK and bool((action.after or {}).get(KEPT_FOR))


def _same_change(one: Action, other: Action) -> bool:
    return one.type is other.type and one.target == other.target


def _relies_on(case: Case, action: Action) -> bool:
    """Whether an open case relies on the action's change: it did (or tried) the same action itself."""
    return case.status in _OPEN and any(
        _same_change(own, action) and own.status in _MAY_HAVE_CHANGED and own.before is not None
        for own in case.actions
    )


def _undo_unless_relied_on(
    case: Case,
    index: int,
    others: _Others,
    actuators: ActuatorsByPlace,
    released: list[str],
    *,
    now: datetime | None,
) -> Action:
    """Undo the action, unless other open cases rely on its change: then keep it, saying for whom. Once
    none does, the changes other cases kept for this one are undone too, the latest case's first."""
    action = _as_run(case.actions[index])
    holders = sorted(other.case_id for other in others.all() if _relies_on(other, action))
    if holders:
        return action.with_outcome(
            ActionStatus.ROLLED_BACK,
            (
                f"not undone: open case(s) {', '.join(holders)} rely on this {action.type.value} of "
                f"{action.target}; it stays until the last of them is rolled back (which undoes it), or "
                f"until `vtriage rollback {case.case_id}` runs again once they are closed"
            ),
            after={KEPT_FOR: holders, RUN_AFTER: action.after},
        )
    # The same change kept by other cases' rollbacks, and this one's, undone as a stack: the latest
    # case's first, so that each puts back the state the one before it left.
    handed_over = [
        (other, position)
        for other in others.all()
        for position, kept in enumerate(other.actions)
        if _same_change(kept, action) and _kept_for_others(kept)
    ]
    stack = sorted(
        [*handed_over, (case, index)], key=lambda entry: (entry[0].created_at, entry[0].case_id), reverse=True
    )
    own = action
    for holder, position in stack:
        if holder is not case:
            released.append(_release(holder, position, case.case_id, actuators, others, now=now))
            continue
        own = _undo(case, action, actuators)
        if own.status is not ActionStatus.ROLLED_BACK:
            return own
    return own


def _release(
    holder: Case,
    position: int,
    releaser: str,
    actuators: ActuatorsByPlace,
    others: _Others,
    *,
    now: datetime | None,
) -> str:
    """Undo a change another case kept for the ones that relied on it, and record that on its case."""
    kept = _as_run(holder.actions[position])
    if kept.before == kept.after:
        # It found the change made already ("already isolated"): its state before is the change itself,
        # and restoring it now would redo what the others undid.
        outcome = kept.with_outcome(
            ActionStatus.ROLLED_BACK,
            f"released when case {releaser} was rolled back: this action had found the change made already",
            after=kept.after,
        )
    else:
        undone = _undo(holder, kept, actuators)
        if undone.status is not ActionStatus.ROLLED_BACK:
            raise RemediationError(
                f"case {holder.case_id}: the {kept.type.value} of {kept.target} it kept could not be "
                f"undone: {undone.detail}"
            )
        outcome = undone.model_copy(
            update={"detail": f"undone when case {releaser} was rolled back: {undone.detail}"}
        )
    holder.actions[position] = outcome
    holder.updated_at = now or datetime.now(UTC)
    others.save(holder)
    return f"case {holder.case_id}: {kept.type.value} {kept.target}: {outcome.detail}"


def _as_run(action: Action) -> Action:
    """The action as its run left it: a change kept for other cases gets back its status and `after`."""
    if not _kept_for_others(action):
        return action
    after = (action.after or {}).get(RUN_AFTER)
    return action.model_copy(
        update={"status": ActionStatus.DONE, "after": dict(after) if isinstance(after, dict) else None}
    )


def _for_actuator(case: Case, action: Action) -> Action:
    """The action as an actuator sees it: with the case id among its parameters."""
    return action.model_copy(update={"parameters": {CASE_ID_PARAMETER: case.case_id, **action.parameters}})


def _run(
    case: Case,
    action: Action,
    actuators: ActuatorsByPlace,
    dry_run: bool,
    place: Place,
    *,
    checkpoint: Callable[[Action], None],
) -> Action:
    """Run one action through its actuator, unless the case's finding lives outside `place`; keep the
    planned type, target and parameters, take the outcome. A `CheckpointingActuator` is given
    `checkpoint`."""
    refused = refusal(case, place, action.type)
    if refused is not None:
        return action.with_outcome(ActionStatus.SKIPPED, refused)
    actuator = _actuators_for(case, action, actuators).get(action.type)
    if actuator is None:
        raise RemediationError(f"no actuator is configured for {action.type.value} actions")
    action_dry_run = dry_run or action.parameters.get(DRY_RUN_PARAMETER, "").lower() == "true"
    if isinstance(actuator, CheckpointingActuator):
        result = actuator.run_with_checkpoint(_for_actuator(case, action), action_dry_run, checkpoint)
    else:
        result = actuator.run(_for_actuator(case, action), action_dry_run)
    return action.with_outcome_of(result)


def _undo(case: Case, action: Action, actuators: ActuatorsByPlace) -> Action:
    """Roll one action back through its actuator; keep the planned type, target and parameters."""
    actuator = _actuators_for(case, action, actuators).get(action.type)
    if actuator is None:
        raise RemediationError(f"no actuator is configured for {action.type.value} actions")
    return _placed(case, action.with_outcome_of(actuator.rollback(_for_actuator(case, action))))


def _actuators_for(case: Case, action: Action, actuators: ActuatorsByPlace) -> Actuators:
    """The actuators that may run the action: an AWS action's are those of the place the case's finding
    lives in (its account and Region); a host's containment acts in the deployment's own Falcon tenant,
    whichever case."""
    if not action.type.acts_in_aws:
        return actuators.outside_aws()
    return actuators.at(case.alert.account, case.alert.region, case.case_id)


def _placed(case: Case, action: Action) -> Action:
    """The action naming the place it concerns, whatever becomes of it (planned, done, skipped, refused,
    failed, rolled back or not): an AWS action's is the finding's account and Region, where it runs or
    would have run (the ticket and the runner's JSON show them). An action outside AWS says where in its
    detail, and an alert from outside AWS names no AWS account or Region."""
    if not action.type.acts_in_aws or case.alert.vendor is not None:
        return action
    return action.model_copy(update={"account": case.alert.account, "region": case.alert.region})
