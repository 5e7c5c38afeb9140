"""What a stored case keeps when it would outgrow DynamoDB's 400 KB item, or its history and repeats grow
without end: trimmed in order, with notes, the counts kept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.factories import make_alert, make_case
from vtriage.bounds import (
    KEPT_IOCS,
    KEPT_REASONS,
    MAX_HISTORY,
    MAX_REPEAT_IDS,
    MAX_TEXT,
    CaseTooLargeError,
    bounded,
    fit_case,
)
from vtriage.models import Case, CaseStatus, HistoryEntry, Ioc, IocOutcome, IocType, Verdict

AT = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def _size(case: Case) -> int:
    """The case's size as JSON: what these tests measure it by (the DynamoDB adapter counts its item)."""
    return len(case.model_dump_json().encode())


def _url(index: int, length: int) -> str:
    return f"http://synthetic-{index}.example.org/" + "a" * length


def _big_case(iocs: int, url_length: int = 1500, reasons: int = 6) -> Case:
    """A case with `iocs` URL IOCs: the first two malicious, the last ten skipped, the rest unknown."""
    values = [_url(index, url_length) for index in range(iocs)]
    outcomes = []
    for index, value in enumerate(values):
        skipped = index >= iocs - 10
        verdict = Verdict.MALICIOUS if index < 2 else Verdict.UNKNOWN
        outcomes.append(
            IocOutcome(
                type=IocType.URL,
                value=value,
                found_at=f"detail.urls[{index}]",
                verdict=verdict,
                skipped_reason="allow-listed" if skipped else None,
                reasons=[] if skipped else [f"reason {n} " + "r" * 200 for n in range(reasons)],
            )
        )
    alert = make_alert(
        iocs=tuple(Ioc(type=IocType.URL, value=value, found_at="detail.urls") for value in values)
    )
    return make_case(alert, iocs=outcomes, verdict=Verdict.MALICIOUS)


def test_a_case_that_fits_is_stored_as_it_is() -> None:
    case = _big_case(iocs=3)
    assert fit_case(case, _size) is case


def test_the_detail_of_each_enrichment_goes_first_and_the_case_says_so() -> None:
    # Given a case just over the limit because of its IOCs' reasons
    case = _big_case(iocs=20, url_length=50)
    limit = _size(case) - 1000

    # When it is fitted, Then each IOC keeps its first reasons, and nothing else is cut
    fitted = fit_case(case, _size, limit)
    assert _size(fitted) <= limit
    assert all(len(ioc.reasons) <= KEPT_REASONS for ioc in fitted.iocs)
    assert len(fitted.iocs) == 20
    [note] = fitted.notes
    assert note.startswith("enrichment detail:")
    assert "left out" in note


def test_iocs_beyond_a_count_go_with_their_counts_kept_and_the_heaviest_verdicts_stay() -> None:
    # Given a case of 200 URL IOCs of 1.5 KB each (over 600 KB as JSON): two malicious, ten skipped
    case = _big_case(iocs=200)
    assert _size(case) > 600_000

    # When it is fitted under 300 KB
    fitted = fit_case(case, _size, 300 * 1024)

    # Then it fits, keeps the verdict, and keeps the malicious IOCs among the first it keeps
    assert _size(fitted) <= 300 * 1024
    assert fitted.verdict is Verdict.MALICIOUS
    assert len(fitted.iocs) == KEPT_IOCS
    assert [ioc.verdict for ioc in fitted.iocs].count(Verdict.MALICIOUS) == 2
    assert {ioc.value for ioc in fitted.alert.iocs} == {ioc.value for ioc in fitted.iocs}
    # and its notes say what was left out, with counts of every kind
    [ioc_note] = [note for note in fitted.notes if note.startswith("IOCs:")]
    assert f"{KEPT_IOCS} of 200 kept" in ioc_note
    assert "10 skipped" in ioc_note
    assert "140 unknown" in ioc_note


def test_long_texts_are_cut_before_any_ioc_is_left_out() -> None:
    # Given a case of five IOCs whose reasons are very long
    case = _big_case(iocs=5, url_length=10, reasons=2)
    long_reason = "x" * 50_000
    case.iocs = [ioc.model_copy(update={"reasons": [long_reason, long_reason]}) for ioc in case.iocs]

    # When it is fitted under 20 KB
    fitted = fit_case(case, _size, 20_000)

    # Then every IOC stays, each reason cut and marked
    assert len(fitted.iocs) == 5
    assert all(
        len(reason) <= MAX_TEXT + 20 and reason.endswith("[cut]")
        for ioc in fitted.iocs
        for reason in ioc.reasons
        if reason
    )
    assert any(note.startswith("long texts:") for note in fitted.notes)


def test_a_case_that_fits_in_no_trim_is_refused_whole() -> None:
    # Given a limit below what even an alert alone takes
    with pytest.raises(CaseTooLargeError, match="even trimmed"):
        fit_case(_big_case(iocs=3), _size, 100)


def test_history_keeps_its_first_step_and_the_latest_ones_and_counts_the_rest() -> None:
    # Given a case whose finding repeated 150 times, each a step of its history
    case = make_case(make_alert())
    case.history = [HistoryEntry(status=CaseStatus.NEW, at=AT, note="finding came in")] + [
        HistoryEntry(status=CaseStatus.TICKETED, at=AT + timedelta(minutes=n), note=f"repeat {n}")
        for n in range(150)
    ]

    # When it is bounded
    kept = bounded(case)

    # Then it keeps the first step and the latest, and counts the others
    assert len(kept.history) == MAX_HISTORY
    assert kept.history[0].note == "finding came in"
    assert kept.history[-1].note == "repeat 149"
    assert kept.history_dropped == 151 - MAX_HISTORY
    assert any(note.startswith("history:") and "51 earlier steps left out" in note for note in kept.notes)
    # and bounding it again counts on from there
    kept.history.append(HistoryEntry(status=CaseStatus.TICKETED, at=AT + timedelta(hours=5), note="one more"))
    again = bounded(kept)
    assert again.history_dropped == 52
    assert [note for note in again.notes if note.startswith("history:")] == [
        "history: the first step and the latest 99 are kept, 52 earlier steps left out"
    ]


def test_repeat_ids_keep_the_latest_and_the_count_of_every_repeat() -> None:
    case = make_case(make_alert(), repeat_count=130, repeat_case_ids=[f"guardduty-{n}" for n in range(130)])
    kept = bounded(case)
    assert kept.repeat_case_ids == [f"guardduty-{n}" for n in range(130 - MAX_REPEAT_IDS, 130)]
    assert kept.repeat_count == 130
    assert f"repeats: the ids of the latest {MAX_REPEAT_IDS} of 130 repeats are kept" in kept.notes
