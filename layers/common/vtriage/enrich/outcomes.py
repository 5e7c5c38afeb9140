"""What becomes of a queued record and of each of its alerts, and what puts a record off until later."""

from datetime import datetime
from typing import NamedTuple

from pydantic import BaseModel, ConfigDict

from vtriage.display import shown
from vtriage.errors import InvalidAlertError, QuotaExhaustedError, TransientError
from vtriage.intake import FindingRefusal, IgnoredFinding
from vtriage.models import Verdict


class CaseSummary(BaseModel):
    """What became of one alert: its case, verdict and execution.

    A repeat of an earlier case's finding names that case, and the execution that tells its ticket.
    """

    model_config = ConfigDict(defer_build=True)

    case_id: str
    verdict: Verdict
    execution_arn: str
    duplicate: bool
    repeat: bool = False


class RecordOutcome(BaseModel):
    """What became of one queued record: the cases it made, the findings refused (alone, or the whole
    record when a refusal's `where` is empty) and ignored, and until when the rest is deferred."""

    model_config = ConfigDict(defer_build=True)

    message_id: str
    cases: list[CaseSummary] = []
    rejected_reason: str | None = None  # the record refused whole
    refused: list[FindingRefusal] = []
    ignored: list[IgnoredFinding] = []
    deferred_until: datetime | None = None
    deferred_reason: str | None = None


class PutOffError(TransientError):
    """A record's enrichment put off until `retry_at`: the invocation had too little time left to look
    its IOCs up, or VirusTotal refuses the API key. Like a spent quota, it defers the record, never
    refuses it."""

    def __init__(self, message: str, retry_at: datetime) -> None:
        self.retry_at = retry_at
        super().__init__(message)


class LastDelivery(NamedTuple):
    """A record on its last delivery: its receive count has reached the queue's maxReceiveCount
    (`max_receives`), so that failing it once more would park it on the dead-letter queue. What VirusTotal
    cannot answer then is triaged without its enrichment rather than lost."""

    max_receives: int


# What defers a record rather than failing it.
Deferral = QuotaExhaustedError | PutOffError
DEFERRALS = (QuotaExhaustedError, PutOffError)


def later(current: Deferral | None, new: Deferral) -> Deferral:
    """Of two deferrals, the one that waits longer."""
    return new if current is None or new.retry_at > current.retry_at else current


def failure_reason(error: BaseException) -> str:
    """An exception as a reason a person reads: its type and message, escaped and cut, since a message
    may quote what the sender sent (an InvalidAlertError's reason names the field and is kept as is)."""
    if isinstance(error, InvalidAlertError):
        return str(error)
    message = str(error)
    return f"{type(error).__name__}: {shown(message, 300)}" if message else type(error).__name__
