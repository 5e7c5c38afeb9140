"""The case schema has one owner, `vtriage.models.Case`: the state machine's own writes to the cases table
(CloseCase and MarkCaseFailed, DynamoDB UpdateItem tasks in statemachine/triage.asl.json) are read from
the definition, applied to a stored case as DynamoDB would apply them, and the result must be a `Case`
(every attribute one of its fields, every status and branch one of its values), its history ending with
the status written, as `Case.record` keeps it. Each adds one to the item's revision, as every write of
`DynamoCaseRepository` does, so that a save that read the case before it merges again rather than
overwriting it. See docs/decisions/0017-one-owner-for-the-case-schema.md."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.factories import make_alert, make_case
from vtriage.adapters.dynamodb import ADD_A_REVISION, REVISION
from vtriage.models import Branch, Case, CaseStatus, Ticket, Verdict

DEFINITION = Path(__file__).resolve().parents[2] / "statemachine" / "triage.asl.json"
CASES_TABLE = "${CasesTableName}"
WRITES = ("arn:aws:states:::dynamodb:updateItem", "arn:aws:states:::dynamodb:putItem")

# What the state machine's paths hold when these states run: the execution input's case id, the time the
# state was entered (Step Functions' ISO 8601, milliseconds and Z), and the Error and Cause a Catch caught.
SAMPLE_PATHS: dict[str, Any] = {
    "$.case_id": "guardduty-5eb7d1a3a1f1f1ce3f4e3a1d7b8c9e0f",
    "$$.State.EnteredTime": "2026-11-26T12:00:00.123Z",
    "$.error.Error": "States.TaskFailed",
    "$.error.Cause": "the ticket function failed",
}


def _states(states: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every state of the definition, those inside Map and Parallel states too, by name."""
    found: dict[str, dict[str, Any]] = {}
    for name, state in states.items():
        found[name] = state
        for nested in [state.get("ItemProcessor"), state.get("Iterator"), *state.get("Branches", [])]:
            if nested:
                found.update(_states(nested["States"]))
    return found


def _case_writes() -> dict[str, dict[str, Any]]:
    """The states that write to the cases table, by name, with their parameters."""
    definition = json.loads(DEFINITION.read_text())
    return {
        name: state["Parameters"]
        for name, state in _states(definition["States"]).items()
        if state.get("Resource") in WRITES and state.get("Parameters", {}).get("TableName") == CASES_TABLE
    }


def _resolved(value: Any) -> Any:
    """A DynamoDB-typed value of the definition, its paths given their sample values, as plain JSON."""
    if isinstance(value, dict) and len(value) == 1:
        [(kind, inner)] = value.items()
        if kind == "S":
            return inner
        if kind == "S.$":
            return _path(inner)
        if kind == "N":
            return int(inner)
        if kind == "L":
            return [_resolved(item) for item in inner]
        if kind == "M":
            return {key: _resolved(item) for key, item in inner.items()}
    raise AssertionError(f"a value the test cannot read yet: {value!r}: teach _resolved its type")


def _path(expression: str) -> str:
    formatted = re.fullmatch(r"States\.Format\('(.*)', (.*)\)", expression)
    if formatted:
        template, arguments = formatted.groups()
        for argument in (part.strip() for part in arguments.split(",")):
            template = template.replace("{}", _path(argument), 1)
        return template
    assert expression in SAMPLE_PATHS, f"a path the test has no sample for: {expression}"
    return str(SAMPLE_PATHS[expression])


def _assignments(update_expression: str) -> list[tuple[str, str]]:
    """The `#name = value` pairs of a `SET a = x, b = f(y, z)` expression (commas inside calls kept)."""
    assert update_expression.startswith("SET "), f"only SET is read here: {update_expression}"
    parts, depth, current = [], 0, ""
    for char in update_expression[len("SET ") :]:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    parts.append(current.strip())
    return [(left.strip(), right.strip()) for left, right in (part.split("=", 1) for part in parts)]


def _applied(parameters: dict[str, Any], stored: dict[str, Any]) -> dict[str, Any]:
    """The stored case (as JSON) once DynamoDB has applied the state's UpdateExpression to it."""
    names: dict[str, str] = parameters["ExpressionAttributeNames"]
    values = {key: _resolved(value) for key, value in parameters["ExpressionAttributeValues"].items()}
    item = dict(stored)
    for name, expression in _assignments(parameters["UpdateExpression"]):
        attribute = names[name]
        appended = re.fullmatch(r"list_append\(if_not_exists\((#\w+), (:\w+)\), (:\w+)\)", expression)
        added = re.fullmatch(r"if_not_exists\((#\w+), (:\w+)\) \+ (:\w+)", expression)
        if appended:
            existing, default, entry = appended.groups()
            assert names[existing] == attribute, f"{attribute} appends to another attribute"
            item[attribute] = [*item.get(attribute, values[default]), *values[entry]]
        elif added:
            existing, default, increment = added.groups()
            assert names[existing] == attribute, f"{attribute} adds to another attribute"
            item[attribute] = item.get(attribute, values[default]) + values[increment]
        else:
            assert expression in values, f"{attribute} = {expression}: a value the test cannot read yet"
            item[attribute] = values[expression]
    return item


def _case(item: dict[str, Any]) -> Case:
    """The case an item holds: the revision is the repository's, not the case's (as `case_from_item`)."""
    return Case.model_validate({key: value for key, value in item.items() if key != REVISION})


def _stored_case() -> dict[str, Any]:
    case = make_case(make_alert(), status=CaseStatus.ENRICHED, verdict=Verdict.MALICIOUS)
    case.record(CaseStatus.ENRICHED, case.updated_at, "verdict malicious")
    return case.model_dump(mode="json")


def test_the_states_that_write_cases_are_the_ones_checked_here() -> None:
    # Given the state machine's definition, When its writes to the cases table are listed, Then they are
    # the two this file checks (a new one is checked by the test below as soon as it exists)
    assert set(_case_writes()) == {"CloseCase", "MarkCaseFailed"}


@pytest.mark.parametrize("state", sorted(_case_writes()))
def test_what_a_state_writes_to_a_case_is_a_case(state: str) -> None:
    # Given a stored case, and what the state writes to it
    parameters = _case_writes()[state]
    stored = _stored_case()

    # When DynamoDB applies the state's update to it
    updated = _applied(parameters, stored)

    # Then the item is still a Case: every attribute a field (but the repository's revision), every
    # status and branch one of its values
    names = set(parameters["ExpressionAttributeNames"].values()) - {REVISION}
    assert names <= set(Case.model_fields), names - set(Case.model_fields)
    case = _case(updated)
    # And the history ends with the status written, at the time it was written, as Case.record keeps it
    assert case.history[:-1] == Case.model_validate(stored).history
    assert (case.history[-1].status, case.history[-1].at) == (case.status, case.updated_at)
    assert case.status in {CaseStatus.CLOSED, CaseStatus.FAILED}


def test_close_case_writes_the_close_branch_and_the_closing_time() -> None:
    # Given what CloseCase writes, When it is applied to a stored case
    case = _case(_applied(_case_writes()["CloseCase"], _stored_case()))

    # Then the case is closed, on the close branch, closed when it was last updated
    assert (case.status, case.branch) == (CaseStatus.CLOSED, Branch.CLOSE)
    assert case.closed_at == case.updated_at


def test_mark_case_failed_keeps_the_error_caught() -> None:
    # Given what MarkCaseFailed writes, When it is applied to a stored case
    case = _case(_applied(_case_writes()["MarkCaseFailed"], _stored_case()))

    # Then the case is failed with the Error and Cause the Catch caught, the Error in its history
    assert case.status is CaseStatus.FAILED
    assert case.error == "States.TaskFailed: the ticket function failed"
    assert case.history[-1].note == "States.TaskFailed"


@pytest.mark.parametrize("state", sorted(_case_writes()))
@pytest.mark.parametrize("revision", [None, 3], ids=["written before revisions", "at revision 3"])
def test_each_state_machine_write_adds_one_to_the_cases_revision(state: str, revision: int | None) -> None:
    # Given a stored case, at a revision or written before there were any
    stored = _stored_case() | ({} if revision is None else {REVISION: revision})

    # When the state's update is applied to it
    parameters = _case_writes()[state]
    updated = _applied(parameters, stored)

    # Then its revision is one more (0 before the first), added as the repository adds it, so that a save
    # conditional on the revision it read fails and merges again
    assert updated[REVISION] == (revision or 0) + 1
    written = [f"{name} = {value}" for name, value in _assignments(parameters["UpdateExpression"])]
    assert ADD_A_REVISION in written


def _read_then_closed(ticketed_at_offset_seconds: int) -> tuple[Case, Case]:
    """A step's copy of a case, read before CloseCase ran on it, and the case as CloseCase left it. The
    step stores the ticket it opened, recording TICKETED this many seconds after CloseCase's write (a
    negative number: before it)."""
    stored = _stored_case()
    read = _case(stored)
    closed = _case(_applied(_case_writes()["CloseCase"], stored))
    read.ticket = Ticket(provider="sns", id="T-1", created_at=closed.updated_at)
    read.record(CaseStatus.TICKETED, closed.updated_at + timedelta(seconds=ticketed_at_offset_seconds))
    return read, closed


def test_a_save_that_read_the_case_before_close_case_keeps_it_closed() -> None:
    # Given a step's copy of a case, read before CloseCase closed it, which changed something and
    # recorded its step before the closing
    read, closed = _read_then_closed(ticketed_at_offset_seconds=-5)

    # When the repository merges it over the stored case (what every save writes)
    merged = read.with_appended(closed)

    # Then the case stays closed, on the close branch, with its closing time and history line, and keeps
    # what the step changed
    assert (merged.status, merged.branch, merged.closed_at) == (
        CaseStatus.CLOSED,
        Branch.CLOSE,
        closed.closed_at,
    )
    assert [entry.status for entry in merged.history][-2:] == [CaseStatus.TICKETED, CaseStatus.CLOSED]
    assert merged.ticket is not None
    assert merged.ticket.id == "T-1"


def test_a_save_whose_step_came_after_close_case_keeps_its_own_status() -> None:
    # Given a step's copy of a case, read before CloseCase closed it, whose step came after the closing
    read, closed = _read_then_closed(ticketed_at_offset_seconds=5)

    # When the repository merges it over the stored case
    merged = read.with_appended(closed)

    # Then the latest status stands, and the closing stays in the history, in its place in time
    assert merged.status is CaseStatus.TICKETED
    assert [entry.status for entry in merged.history][-2:] == [CaseStatus.CLOSED, CaseStatus.TICKETED]
