"""The ledger of finding contents on the template's cases table (moto): which cases one finding id and
version made, and each case naming the others with one conditional update."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tests.factories import make_alert, make_case
from vtriage.adapters.dynamodb import DynamoCaseRepository, DynamoRepeatLedger
from vtriage.adapters.finding_ledger import DynamoFindingLedger
from vtriage.bounds import MAX_HISTORY, MAX_VARIANTS
from vtriage.models import Case, CaseStatus, HistoryEntry, Repeat, Verdict
from vtriage_local.stack import LocalAws

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
RETENTION = timedelta(days=90)


def _stores(aws: LocalAws) -> tuple[DynamoCaseRepository, DynamoFindingLedger]:
    client, table = aws.client("dynamodb"), aws.ref("CasesTable")
    return DynamoCaseRepository(client, table, RETENTION, lambda: NOW), DynamoFindingLedger(
        client, table, RETENTION, lambda: NOW
    )


def _stored(cases: DynamoCaseRepository, digest: str, **fields: object) -> Case:
    """A case of the one finding id and version, for the content whose digest this is."""
    case = make_case(make_alert(content_digest=digest), **fields)
    assert cases.create(case)
    return case


def _note(text: str) -> HistoryEntry:
    return HistoryEntry(status=CaseStatus.TICKETED, at=NOW, note=text)


def test_contents_of_one_finding_meet_in_the_ledger_and_each_case_names_the_other_once(
    local_aws: LocalAws,
) -> None:
    # Given two cases of one finding id and version with different contents
    cases, ledger = _stores(local_aws)
    first, second = _stored(cases, "a" * 64), _stored(cases, "b" * 64)
    assert first.alert.finding_key == second.alert.finding_key

    # When each joins the ledger (the first twice, as a redelivery would)
    assert ledger.join(first.alert.finding_key, first.case_id) == []
    assert ledger.join(first.alert.finding_key, first.case_id) == []
    others = ledger.join(second.alert.finding_key, second.case_id)

    # Then the second learns of the first, and the first's later join of the second
    assert others == [first.case_id]
    assert ledger.join(first.alert.finding_key, first.case_id) == [second.case_id]

    # When the first is told of the second, twice
    assert ledger.note_variant(first.case_id, second.case_id, _note("another content came later"))
    assert not ledger.note_variant(first.case_id, second.case_id, _note("again"))

    # Then the stored case names it once, with one line in its history, and keeps everything else
    stored = cases.get(first.case_id)
    assert stored is not None
    assert stored.variant_case_ids == [second.case_id]
    assert [entry.note for entry in stored.history].count("another content came later") == 1
    assert stored.alert == first.alert
    # And a case that does not exist is not created by a note
    assert not ledger.note_variant("guardduty-" + "0" * 32, first.case_id, _note("nobody"))
    assert cases.get("guardduty-" + "0" * 32) is None


def test_the_ledger_and_the_names_on_a_case_stop_growing_at_their_bound(local_aws: LocalAws) -> None:
    # Given a sender who sends content after content under one finding id and version
    cases, ledger = _stores(local_aws)
    finding_key = make_alert().finding_key
    case_ids = [f"guardduty-{index:032x}" for index in range(MAX_VARIANTS + 2)]
    for case_id in case_ids:
        ledger.join(finding_key, case_id)

    # Then the ledger keeps the first MAX_VARIANTS, and a latecomer still learns of them
    assert ledger.join(finding_key, "guardduty-" + "f" * 32) == case_ids[:MAX_VARIANTS]

    # And a case whose history is full still names a variant, without the line
    full = _stored(
        cases,
        "c" * 64,
        status=CaseStatus.TICKETED,
        history=[_note(f"step {index}") for index in range(MAX_HISTORY)],
    )
    assert len(full.history) == MAX_HISTORY
    assert ledger.note_variant(full.case_id, case_ids[0], _note("another content"))
    stored = cases.get(full.case_id)
    assert stored is not None
    assert stored.variant_case_ids == [case_ids[0]]
    assert len(stored.history) == MAX_HISTORY
    assert "another content" not in [entry.note for entry in stored.history]


# ---------------------------------------------------------------- a step saving what it read before


def _repeat(case_id: str) -> Repeat:
    return Repeat(
        alert_id="guardduty-finding",
        version="2",
        case_id=case_id,
        at=NOW,
        verdict=Verdict.MALICIOUS,
        severity=8,
    )


def test_a_step_saving_a_case_keeps_the_variant_the_enrich_function_noted_meanwhile(
    local_aws: LocalAws,
) -> None:
    # Given a benign case, read by the ticket step
    cases, ledger = _stores(local_aws)
    benign = _stored(cases, "a" * 64)
    read_by_ticket_step = cases.get(benign.case_id)
    assert read_by_ticket_step is not None

    # When the enrich function notes the genuine case on it, then the step saves what it read, changed
    assert ledger.note_variant(benign.case_id, "guardduty-genuine", _note("another content"))
    read_by_ticket_step.record(CaseStatus.TICKETED, NOW)
    cases.save(read_by_ticket_step)

    # Then the stored case is the step's, and still names the variant, with its line in the history
    stored = cases.get(benign.case_id)
    assert stored is not None
    assert stored.status is CaseStatus.TICKETED
    assert stored.variant_case_ids == ["guardduty-genuine"]
    assert "another content" in [entry.note for entry in stored.history]
    assert stored.history[-1].status is CaseStatus.TICKETED


def test_a_step_saving_a_case_keeps_the_repeat_folded_meanwhile(local_aws: LocalAws) -> None:
    # Given a case, read by a step
    cases, _ = _stores(local_aws)
    repeats = DynamoRepeatLedger(local_aws.client("dynamodb"), local_aws.ref("CasesTable"), lambda: NOW)
    case = _stored(cases, "a" * 64)
    read_by_step = cases.get(case.case_id)
    assert read_by_step is not None

    # When a repeat of its finding is folded into it, then the step saves what it read, changed
    repeat = _repeat("guardduty-repeat")
    assert repeats.fold(case.case_id, repeat, _note(repeat.note))
    read_by_step.record(CaseStatus.TICKETED, NOW)
    cases.save(read_by_step)

    # Then the repeat still counts, once, as the latest, with its line in the history
    stored = cases.get(case.case_id)
    assert stored is not None
    assert stored.status is CaseStatus.TICKETED
    assert (stored.repeat_count, stored.repeat_case_ids, stored.last_repeat) == (1, [repeat.case_id], repeat)
    assert [entry.note for entry in stored.history].count(repeat.note) == 1
    # And a repeat delivered again still counts once
    assert not repeats.fold(case.case_id, repeat, _note(repeat.note))


def test_a_save_merges_again_when_the_case_changes_between_its_read_and_its_write(
    local_aws: LocalAws,
) -> None:
    # Given a case, read by a step, and a client on which a variant is noted on the case just after the
    # step's save read it (as the enrich function would, in that instant)
    client, table = local_aws.client("dynamodb"), local_aws.ref("CasesTable")
    ledger = DynamoFindingLedger(client, table, RETENTION, lambda: NOW)
    noted: list[str] = []

    class NoteAfterRead:
        def __getattr__(self, name: str) -> Any:
            return getattr(client, name)

        def get_item(self, **request: Any) -> Any:
            response = client.get_item(**request)
            if not noted:
                noted.append("guardduty-genuine")
                assert ledger.note_variant(case.case_id, "guardduty-genuine", _note("another content"))
            return response

    cases = DynamoCaseRepository(client, table, RETENTION, lambda: NOW)
    case = _stored(cases, "a" * 64)
    read_by_step = cases.get(case.case_id)
    assert read_by_step is not None
    racing = DynamoCaseRepository(NoteAfterRead(), table, RETENTION, lambda: NOW)

    # When the step saves
    read_by_step.record(CaseStatus.TICKETED, NOW)
    racing.save(read_by_step)

    # Then its write, refused once, was merged again: the note is kept, and so is the step's change
    stored = cases.get(case.case_id)
    assert stored is not None
    assert (stored.status, stored.variant_case_ids) == (CaseStatus.TICKETED, ["guardduty-genuine"])
