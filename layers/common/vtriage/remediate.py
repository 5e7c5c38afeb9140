"""Run a case's planned response actions, within a cap, and record every outcome on the case."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict

from vtriage.errors import CaseNotFoundError, RemediationError, TransientError
from vtriage.models import Action, ActionStatus, ActionType, Branch, CaseStatus, TaskInput
from vtriage.ports import CaseRepository, InstanceIsolation

# PENDING_APPROVAL counts as not yet run: the state machine calls this function only once a person
# approved, so the approved actions must run now.
_NOT_YET_RUN = frozenset({ActionStatus.PLANNED, ActionStatus.PENDING_APPROVAL})

# Outcomes that use up the cap: the port acted, or tried to. A SKIPPED outcome changed nothing.
_COUNTS_TOWARDS_CAP = frozenset({ActionStatus.DONE, ActionStatus.DRY_RUN, ActionStatus.FAILED})


class RemediationResult(BaseModel):
    """What the remediate function returns to the state machine: small, the case holds the rest."""

    model_config = ConfigDict(extra="forbid")

    case_id: str
    actions: list[Action]
    changed: bool


def remediate_case(
    task: TaskInput,
    cases: CaseRepository,
    isolation: InstanceIsolation,
    dry_run: bool,
    max_actions: int,
    *,
    now: datetime | None = None,
) -> RemediationResult:
    """Run the case's actions not yet run, at most `max_actions` per case, and save their outcomes.

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
            case.actions[index] = action.model_copy(
                update={
                    "status": ActionStatus.SKIPPED,
                    "detail": (
                        f"not run: the cap of {max_actions} automatic actions per case was reached; "
                        "a person must decide whether to run it"
                    ),
                }
            )
            continue
        try:
            outcome = _run(action, isolation, dry_run)
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


def _run(action: Action, isolation: InstanceIsolation, dry_run: bool) -> Action:
    """Run one action through its port; keep the planned type and target, take the port's outcome."""
    if action.type is ActionType.ISOLATE_INSTANCE:
        result = isolation.isolate(action.target, dry_run)
    else:  # pragma: no cover - every ActionType has a branch above
        raise RemediationError(f"no port runs {action.type.value} actions")
    return action.model_copy(
        update={
            "status": result.status,
            "detail": result.detail,
            "before": result.before,
            "after": result.after,
        }
    )
