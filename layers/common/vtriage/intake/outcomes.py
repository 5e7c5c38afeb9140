"""What intake makes of each finding of a document: an alert, a refusal or an ignored finding.

The parsers list a document's findings as `Finding`s, each read on its own by `read_document`, so that
one finding that cannot be read costs only itself.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vtriage.models import Alert, Frozen


class FindingRefusal(Frozen):
    """One finding of a document that cannot become an alert; the others go on without it."""

    where: str  # the finding's place in the document ("Findings[3]", "detail.findings[0]"); "" for all of it
    reason: str  # what is wrong, naming the field at fault ("Findings[3].Id: missing")
    alert_id: str | None = None  # the finding's id, when it could be read


class IgnoredFinding(Frozen):
    """One finding acknowledged without a case (resolved, suppressed, archived, a passed check, ...)."""

    where: str
    reason: str
    alert_id: str | None = None


class IntakeResult(Frozen):
    """Every finding of one document, each exactly once: an alert, a refusal or an ignored finding."""

    alerts: tuple[Alert, ...] = ()
    refused: tuple[FindingRefusal, ...] = ()
    ignored: tuple[IgnoredFinding, ...] = ()


@dataclass(frozen=True)
class Acknowledged:
    """A finding read whole that needs no case, and why (the reason names the field that says so)."""

    reason: str
    alert_id: str | None = None


@dataclass(frozen=True)
class Finding:
    """One finding of a document, not read yet.

    `where` is its place in the document ("" when the document is that one finding); `read` gives its
    Alert, or Acknowledged, or raises (InvalidAlertError naming the field at fault, or anything else a
    hostile value provokes: `read_document` makes that the finding's refusal); `content` is the finding
    itself, without its envelope (its digest is part of the case id); `alert_id` is its id as far as it
    could be seen without reading it, for a refusal to name. `triage_content`, for a source whose
    documents carry volatile metadata beside the alert (Falcon, Workspace: crawl times, etags,
    assignees), gives what of the alert read decides its triage (`digest.triage_content`): that is
    digested instead of `content`.
    """

    where: str
    read: Callable[[], Alert | Acknowledged]
    content: Any
    alert_id: str | None = None
    triage_content: Callable[[Alert], Any] | None = None


# An id longer than this is not shown on a refusal: no detector's finding id comes near it.
_MAX_SHOWN_ID = 512


def peek_id(value: object) -> str | None:
    """A finding's id for a refusal: the value when it is a non-empty string of a sensible length."""
    if isinstance(value, str) and value and len(value) <= _MAX_SHOWN_ID:
        return value
    return None
