"""`RepeatLedger`: the in-memory ledger and the DynamoDB one on the template's cases table point a repeat
key at its case while its window is open, and fold each repeat into the case once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pytest

from tests.contract.conftest import IN_MEMORY, NOW, RETENTION, Clock, client, emptied
from tests.factories import make_alert, make_case
from vtriage.adapters.dynamodb import DynamoCaseRepository, DynamoRepeatLedger
from vtriage.bounds import MAX_HISTORY
from vtriage.fakes import InMemoryCaseRepository, InMemoryRepeatLedger
from vtriage.models import Case, CaseStatus, HistoryEntry, Repeat, Verdict
from vtriage.ports import CaseRepository, RepeatLedger

REPEAT_KEY = "repeat#" + "a" * 64


@dataclass(frozen=True)
class Ledger:
    """The ledger under test and the cases it folds repeats into."""

    repeats: RepeatLedger
    cases: CaseRepository


@pytest.fixture
def ledger(implementation: str, request: pytest.FixtureRequest, clock: Clock) -> Ledger:
    if implementation == IN_MEMORY:
        cases = InMemoryCaseRepository()
        return Ledger(InMemoryRepeatLedger(cases, clock), cases)
    aws = emptied(request.getfixturevalue("aws"), "CasesTable")
    dynamodb, table = client(aws, "dynamodb"), aws.ref("CasesTable")
    return Ledger(
        DynamoRepeatLedger(dynamodb, table, clock), DynamoCaseRepository(dynamodb, table, RETENTION, clock)
    )


def _stored_case(ledger: Ledger, **fields: object) -> Case:
    case = make_case(make_alert(), status=CaseStatus.TICKETED, **fields)
    assert ledger.cases.create(case)
    return case


def _repeat(number: int) -> tuple[Repeat, HistoryEntry]:
    at = NOW + timedelta(minutes=number)
    repeat = Repeat(
        alert_id=f"{number:032x}",
        version=f"2026-11-26T12:{number:02d}:00Z",
        case_id=f"guardduty-{number:032x}",
        at=at,
        verdict=Verdict.MALICIOUS,
        severity=8,
    )
    return repeat, HistoryEntry(status=CaseStatus.TICKETED, at=at, note=repeat.note)


def test_a_repeat_key_points_at_its_case_until_its_window_ends(ledger: Ledger, clock: Clock) -> None:
    # Given a repeat key never seen, Then it points at no case
    assert ledger.repeats.earlier_case(REPEAT_KEY) is None

    # When it is pointed at a case for an hour
    ledger.repeats.remember(REPEAT_KEY, "guardduty-" + "1" * 32, NOW + timedelta(hours=1))

    # Then it points there within the hour, and at nothing once the hour is over
    clock.advance(timedelta(minutes=59))
    assert ledger.repeats.earlier_case(REPEAT_KEY) == "guardduty-" + "1" * 32
    clock.advance(timedelta(minutes=2))
    assert ledger.repeats.earlier_case(REPEAT_KEY) is None


def test_a_repeat_key_pointed_again_points_at_the_new_case(ledger: Ledger) -> None:
    # Given a key pointed at one case, When it is pointed at another, Then it points at the other
    ledger.repeats.remember(REPEAT_KEY, "guardduty-" + "1" * 32, NOW + timedelta(hours=1))
    ledger.repeats.remember(REPEAT_KEY, "guardduty-" + "2" * 32, NOW + timedelta(hours=1))
    assert ledger.repeats.earlier_case(REPEAT_KEY) == "guardduty-" + "2" * 32


def test_a_repeat_is_folded_into_its_case_once(ledger: Ledger) -> None:
    # Given a stored case and two repeats of its finding
    case = _stored_case(ledger)
    first, first_entry = _repeat(1)
    second, second_entry = _repeat(2)

    # When the first is folded twice (a redelivery) and the second once
    folds = [
        ledger.repeats.fold(case.case_id, first, first_entry),
        ledger.repeats.fold(case.case_id, first, first_entry),
        ledger.repeats.fold(case.case_id, second, second_entry),
    ]

    # Then each counts once, the latest is kept, and each has its line in the history
    assert folds == [True, False, True]
    stored = ledger.cases.get(case.case_id)
    assert stored is not None
    assert (stored.repeat_count, stored.repeat_case_ids) == (2, [first.case_id, second.case_id])
    assert stored.last_repeat == second
    assert stored.history[-2:] == [first_entry, second_entry]
    assert stored.updated_at == second.at
    # And the rest of the case is as it was
    assert (stored.status, stored.alert) == (case.status, case.alert)


def test_a_repeat_of_a_case_that_is_gone_is_not_folded(ledger: Ledger) -> None:
    # Given no case, When a repeat is folded into one, Then it is not, and no case appears
    repeat, entry = _repeat(1)
    assert not ledger.repeats.fold("guardduty-" + "0" * 32, repeat, entry)
    assert ledger.cases.get("guardduty-" + "0" * 32) is None


def test_a_repeat_folded_into_a_case_with_a_full_history_still_counts(ledger: Ledger) -> None:
    # Given a case whose history is full
    history = [
        HistoryEntry(status=CaseStatus.TICKETED, at=NOW - timedelta(minutes=MAX_HISTORY - index))
        for index in range(MAX_HISTORY)
    ]
    case = _stored_case(ledger, history=history)

    # When a repeat is folded into it
    repeat, entry = _repeat(1)
    assert ledger.repeats.fold(case.case_id, repeat, entry)

    # Then it counts, its line is the latest, the first step is kept and the history stays within bounds
    stored = ledger.cases.get(case.case_id)
    assert stored is not None
    assert stored.repeat_count == 1
    assert stored.history[0] == history[0]
    assert stored.history[-1] == entry
    assert len(stored.history) <= MAX_HISTORY
    assert stored.history_dropped == MAX_HISTORY + 1 - len(stored.history)
