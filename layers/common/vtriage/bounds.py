"""What a stored case may hold, and the limits of the queue a record waits in.

DynamoDB refuses an item over 400 KB, and a case's history and repeats grow with every repeat of its
finding: a case is bounded before every write.

- Its history keeps its first step (the alert came in) and the latest ones; `history_dropped` counts
  the steps left out. Its repeat ids keep the latest ones; `repeat_count` still counts every repeat.
- A case whose item would still exceed `CASE_ITEM_LIMIT` is trimmed in steps, each noted on the case
  (`Case.notes`), until it fits: first the detail of each IOC's enrichment (its reasons beyond the
  first few), then long texts, then IOCs beyond a count (the heaviest verdicts are kept, and the note
  counts every verdict left out: the case's verdict was drawn from all of them), then the alert's
  resources and notes beyond a count. A case that fits in none of these is refused whole
  (`CaseTooLargeError`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from vtriage.errors import VtriageError
from vtriage.models import Case, IocOutcome

# DynamoDB's own limit is 400 KB; the rest is room for what later steps add to a stored case (actions'
# outcomes with their before and after state, a ticket, repeats folded into it by an update).
CASE_ITEM_LIMIT = 300 * 1024
MAX_HISTORY = 100
MAX_REPEAT_IDS = 100
# The cases one finding id and version may list, and the other contents' cases one case may name: a
# sender who sends content after content under one id makes a case of each, but the lists stop here.
MAX_VARIANTS = 20
KEPT_REASONS = 2
MAX_TEXT = 500
KEPT_IOCS = 50
KEPT_DETAILS = 20

_CUT = "... [cut]"

# SQS's own limits, which a deferred record keeps within (`vtriage.enrich.records` decides how long it
# waits, `vtriage.adapters.quota` hides or re-queues it): a received message is hidden for at most 12 h
# counted from that receive, a new message delayed for at most 15 min, and a message carries at most 10
# attributes. Lambda runs an invocation for at most 15 min.
SQS_MAX_VISIBILITY_SECONDS = 12 * 3600
SQS_MAX_DELAY_SECONDS = 15 * 60
SQS_MAX_MESSAGE_ATTRIBUTES = 10
LAMBDA_MAX_SECONDS = 15 * 60


class CaseTooLargeError(VtriageError):
    """A case that stays over the item limit however it is trimmed: its record is refused with this reason."""


def bounded(case: Case, max_history: int = MAX_HISTORY, max_repeat_ids: int = MAX_REPEAT_IDS) -> Case:
    """The case with its history and repeat ids within these bounds, saying so; the counts are kept."""
    update: dict[str, object] = {}
    notes = case.notes
    if len(case.history) > max_history:
        dropped = len(case.history) - max_history
        update["history"] = [case.history[0], *case.history[1 + dropped :]]
        update["history_dropped"] = case.history_dropped + dropped
        notes = _noted(
            notes,
            "history:",
            f"history: the first step and the latest {max_history - 1} are kept,"
            f" {case.history_dropped + dropped} earlier steps left out",
        )
    if len(case.repeat_case_ids) > max_repeat_ids:
        update["repeat_case_ids"] = case.repeat_case_ids[-max_repeat_ids:]
        notes = _noted(
            notes,
            "repeats:",
            f"repeats: the ids of the latest {max_repeat_ids} of {case.repeat_count} repeats are kept",
        )
    if not update:
        return case
    return case.model_copy(update={**update, "notes": notes})


def fit_case(case: Case, size_of: Callable[[Case], int], limit: int = CASE_ITEM_LIMIT) -> Case:
    """The case bounded and, when `size_of` (the size of its stored item) still exceeds `limit`, trimmed
    step by step with a note for each step; raises CaseTooLargeError when no step is enough."""
    case = bounded(case)
    size = size_of(case)
    if size <= limit:
        return case
    for trim in (_without_enrichment_detail, _with_short_texts, _with_fewer_iocs, _with_fewer_details):
        case = trim(case)
        size = size_of(case)
        if size <= limit:
            return case
    raise CaseTooLargeError(
        f"the case is {size:,} bytes as a DynamoDB item even trimmed, over the {limit:,} bytes it may take"
    )


def _noted(notes: list[str], prefix: str, note: str) -> list[str]:
    """The notes with `note` in place of any earlier note of the same kind (same prefix)."""
    return [*(existing for existing in notes if not existing.startswith(prefix)), note]


def _trimmed_note(case: Case, note: str) -> list[str]:
    return _noted(case.notes, note.split(":", 1)[0] + ":", note)


def _without_enrichment_detail(case: Case) -> Case:
    left_out = sum(max(0, len(ioc.reasons) - KEPT_REASONS) for ioc in case.iocs)
    if not left_out:
        return case
    iocs = [ioc.model_copy(update={"reasons": ioc.reasons[:KEPT_REASONS]}) for ioc in case.iocs]
    note = (
        f"enrichment detail: each IOC keeps its first {KEPT_REASONS} reasons, {left_out} left out to stay"
        " within DynamoDB's 400 KB item"
    )
    return case.model_copy(update={"iocs": iocs, "notes": _trimmed_note(case, note)})


def _with_short_texts(case: Case) -> Case:
    cut = 0

    def short(text: str) -> str:
        nonlocal cut
        if len(text) <= MAX_TEXT:
            return text
        cut += 1
        return text[:MAX_TEXT] + _CUT

    iocs = [
        ioc.model_copy(
            update={
                "reasons": [short(reason) for reason in ioc.reasons],
                "skipped_reason": None if ioc.skipped_reason is None else short(ioc.skipped_reason),
                "found_at": short(ioc.found_at),
            }
        )
        for ioc in case.iocs
    ]
    actions = [action.model_copy(update={"detail": short(action.detail)}) for action in case.actions]
    history = [entry.model_copy(update={"note": short(entry.note)}) for entry in case.history]
    alert = case.alert.model_copy(
        update={
            "title": short(case.alert.title),
            "type": short(case.alert.type),
            "notes": tuple(short(note) for note in case.alert.notes),
            "not_actionable": tuple(short(reason) for reason in case.alert.not_actionable),
            "iocs": tuple(
                ioc.model_copy(
                    update={
                        "found_at": short(ioc.found_at),
                        "skipped_reason": None if ioc.skipped_reason is None else short(ioc.skipped_reason),
                    }
                )
                for ioc in case.alert.iocs
            ),
        }
    )
    error = None if case.error is None else short(case.error)
    if not cut:
        return case
    note = f"long texts: {cut} texts cut at {MAX_TEXT} characters to stay within DynamoDB's 400 KB item"
    return case.model_copy(
        update={
            "iocs": iocs,
            "actions": actions,
            "history": history,
            "alert": alert,
            "error": error,
            "notes": _trimmed_note(case, note),
        }
    )


def _with_fewer_iocs(case: Case) -> Case:
    if len(case.iocs) <= KEPT_IOCS and len(case.alert.iocs) <= KEPT_IOCS:
        return case
    # The heaviest verdicts first, then what was looked up, then the skipped ones; in their order within.
    ranked = sorted(
        range(len(case.iocs)),
        key=lambda index: (_looked_up(case.iocs[index]), case.iocs[index].verdict.weight),
        reverse=True,
    )
    kept_indexes = sorted(ranked[:KEPT_IOCS])
    kept = [case.iocs[index] for index in kept_indexes]
    left_out = [case.iocs[index] for index in ranked[KEPT_IOCS:]]
    kept_keys = {(ioc.type, ioc.value) for ioc in kept}
    alert_iocs = tuple(ioc for ioc in case.alert.iocs if (ioc.type, ioc.value) in kept_keys)
    counts = Counter("skipped" if not _looked_up(ioc) else ioc.verdict.value for ioc in left_out)
    counted = ", ".join(f"{count} {kind}" for kind, count in sorted(counts.items())) or "none"
    note = (
        f"IOCs: {len(kept)} of {len(case.iocs)} kept (the heaviest verdicts first) to stay within"
        f" DynamoDB's 400 KB item; left out: {counted}. The case's verdict was drawn from all of them"
    )
    return case.model_copy(
        update={
            "iocs": kept,
            "alert": case.alert.model_copy(update={"iocs": alert_iocs}),
            "notes": _trimmed_note(case, note),
        }
    )


def _with_fewer_details(case: Case) -> Case:
    alert = case.alert
    if len(alert.resources) <= KEPT_DETAILS and len(alert.notes) <= KEPT_DETAILS:
        return case
    note = (
        f"alert detail: {min(len(alert.resources), KEPT_DETAILS)} of {len(alert.resources)} resources and"
        f" {min(len(alert.notes), KEPT_DETAILS)} of {len(alert.notes)} notes kept to stay within"
        " DynamoDB's 400 KB item"
    )
    trimmed = alert.model_copy(
        update={"resources": alert.resources[:KEPT_DETAILS], "notes": alert.notes[:KEPT_DETAILS]}
    )
    return case.model_copy(update={"alert": trimmed, "notes": _trimmed_note(case, note)})


def _looked_up(ioc: IocOutcome) -> bool:
    return ioc.skipped_reason is None
