"""`FindingLedger`: the in-memory ledger and the DynamoDB one on the template's cases table list the cases
one finding id and version made, and have a case name another once, both within MAX_VARIANTS."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pytest

from tests.contract.conftest import IN_MEMORY, NOW, RETENTION, Clock, client, emptied
from tests.factories import make_alert, make_case
from vtriage.adapters.dynamodb import DynamoCaseRepository
from vtriage.adapters.finding_ledger import DynamoFindingLedger
from vtriage.bounds import MAX_HISTORY, MAX_VARIANTS
from vtriage.fakes import InMemoryCaseRepository, InMemoryFindingLedger
from vtriage.models import Case, CaseStatus, HistoryEntry
from vtriage.ports import CaseRepository, FindingLedger

FINDING_KEY = "finding#" + "b" * 64


@dataclass(frozen=True)
class Ledger:
    """The ledger under test and the cases it notes variants on."""

    findings: FindingLedger
    cases: CaseRepository


@pytest.fixture
def ledger(implementation: str, request: pytest.FixtureRequest, clock: Clock) -> Ledger:
    if implementation == IN_MEMORY:
        cases = InMemoryCaseRepository()
        return Ledger(InMemoryFindingLedger(cases), cases)
    aws = emptied(request.getfixturevalue("aws"), "CasesTable")
    dynamodb, table = client(aws, "dynamodb"), aws.ref("CasesTable")
    return Ledger(
        DynamoFindingLedger(dynamodb, table, RETENTION, clock),
        DynamoCaseRepository(dynamodb, table, RETENTION, clock),
    )


def _case_id(number: int) -> str:
    return f"guardduty-{number:032x}"


def _stored_case(ledger: Ledger, digest: str, history: list[HistoryEntry] | None = None) -> Case:
    """A stored case of the finding, with this history, or the first step of one."""
    alert = make_alert(content_digest=digest)
    first = HistoryEntry(status=CaseStatus.NEW, at=alert.updated_at, note="the alert came in")
    case = make_case(alert, history=history or [first])
    assert ledger.cases.create(case)
    return case


def _note(text: str, minutes: int = 1) -> HistoryEntry:
    return HistoryEntry(status=CaseStatus.NEW, at=NOW + timedelta(minutes=minutes), note=text)


def test_the_cases_of_one_finding_meet_in_the_ledger(ledger: Ledger) -> None:
    # Given a finding id and version no case joined yet
    findings = ledger.findings

    # When a first case joins it twice (a redelivery), then a second
    first = findings.join(FINDING_KEY, _case_id(1))
    again = findings.join(FINDING_KEY, _case_id(1))
    second = findings.join(FINDING_KEY, _case_id(2))

    # Then each learns of those already there, never of itself
    assert (first, again, second) == ([], [], [_case_id(1)])
    assert findings.join(FINDING_KEY, _case_id(1)) == [_case_id(2)]
    assert findings.join("finding#" + "c" * 64, _case_id(3)) == []


def test_the_ledger_stops_growing_at_its_bound(ledger: Ledger) -> None:
    # Given MAX_VARIANTS + 2 cases joining one finding id and version
    for number in range(MAX_VARIANTS + 2):
        ledger.findings.join(FINDING_KEY, _case_id(number))

    # When a latecomer joins, Then it learns of the first MAX_VARIANTS only
    assert ledger.findings.join(FINDING_KEY, _case_id(999)) == [_case_id(n) for n in range(MAX_VARIANTS)]


def test_a_case_names_another_content_once_with_a_line_in_its_history(ledger: Ledger) -> None:
    # Given a stored case
    case = _stored_case(ledger, "a" * 64)

    # When it is told twice of another content's case
    noted = ledger.findings.note_variant(case.case_id, _case_id(2), _note("another content came later"))
    again = ledger.findings.note_variant(case.case_id, _case_id(2), _note("again", minutes=2))

    # Then it names that case once, with one line in its history, and keeps everything else
    assert (noted, again) == (True, False)
    stored = ledger.cases.get(case.case_id)
    assert stored is not None
    assert stored.variant_case_ids == [_case_id(2)]
    assert [entry.note for entry in stored.history] == ["the alert came in", "another content came later"]
    assert stored.updated_at == NOW + timedelta(minutes=1)
    assert (stored.status, stored.alert) == (case.status, case.alert)


def test_a_note_on_a_case_that_is_gone_creates_nothing(ledger: Ledger) -> None:
    # Given no case, When a variant is noted on one, Then it is not, and no case appears
    assert not ledger.findings.note_variant(_case_id(7), _case_id(2), _note("nobody"))
    assert ledger.cases.get(_case_id(7)) is None


def test_a_case_names_at_most_max_variants_and_a_full_history_takes_no_line(ledger: Ledger) -> None:
    # Given a case whose history is full
    history = [
        HistoryEntry(status=CaseStatus.NEW, at=NOW - timedelta(minutes=MAX_HISTORY - index))
        for index in range(MAX_HISTORY)
    ]
    case = _stored_case(ledger, "a" * 64, history=history)

    # When it is told of MAX_VARIANTS + 1 other contents
    notes = [
        ledger.findings.note_variant(case.case_id, _case_id(number), _note(f"variant {number}"))
        for number in range(MAX_VARIANTS + 1)
    ]

    # Then it names the first MAX_VARIANTS, and its history is as it was
    assert notes == [True] * MAX_VARIANTS + [False]
    stored = ledger.cases.get(case.case_id)
    assert stored is not None
    assert stored.variant_case_ids == [_case_id(number) for number in range(MAX_VARIANTS)]
    assert stored.history == history
