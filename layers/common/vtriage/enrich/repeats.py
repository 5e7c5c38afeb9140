"""Repeats and variants of a finding.

A repeat (another finding id or version; same type, resources and IOCs, and for an alert from outside AWS
the same host and user: `Alert.repeat_key`) within `window` of the case its finding opened is folded into
that case instead of opening another, unless it says something worse (a heavier verdict, a higher
severity band, a branch that does more, a channel trusted with more) or would act where the earlier case's
response stopped without acting (its actions ran in dry run, failed, waited for a person or never ran). A
variant (another content under a known finding id and version, or the same content through a channel
trusted with more than the first copy's) is a case of its own, and each of the two cases names the other.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from aws_lambda_powertools import Logger

from vtriage.display import severity_guessed, shown
from vtriage.enrich.outcomes import CaseSummary
from vtriage.models import (
    DRY_RUN_PARAMETER,
    NEEDS_APPROVAL_PARAMETER,
    ActionStatus,
    Alert,
    Branch,
    Case,
    CaseStatus,
    Channel,
    ExecutionInput,
    HistoryEntry,
    Provenance,
    Repeat,
)
from vtriage.playbook import DEFAULT_TICKET_MIN_SEVERITY, choose_branch, severity_rank

if TYPE_CHECKING:
    # The ports only type this step's collaborators: the enrich function's cold start need not load them.
    from vtriage.ports import CaseRepository, ExecutionStarter, FindingLedger, RepeatLedger

logger = Logger(child=True)

# How much a branch does: a repeat whose branch does more than its earlier case's is a case of its own.
_BRANCH_RANK = {Branch.CLOSE: 0, Branch.TICKET: 1, Branch.REMEDIATE: 2}
# How much a channel is trusted with: a pushed alert cannot make a detector's later finding a repeat, nor
# keep the detector's own delivery of the same finding from being triaged as the detector's.
_CHANNEL_TRUST: dict[Channel, int] = {"queue": 0, "intake": 1, "detector": 2}
# The channels, most trusted first.
CHANNELS_BY_TRUST: tuple[Channel, ...] = tuple(
    sorted(_CHANNEL_TRUST, key=_CHANNEL_TRUST.__getitem__, reverse=True)
)

# What an action that ran leaves: it acted (a person may have rolled it back since: their decision stands).
_RAN = frozenset({ActionStatus.DONE, ActionStatus.ROLLED_BACK})
# What an action whose response stopped short of acting leaves, which a later run may change: the
# deployment has left dry run, a failure passed, the cap that held it for a person has room, its execution
# timed out before it. (A case whose every action was skipped goes to a ticket: a repeat that would act
# already says more by its route.)
_LEFT_UNDONE = {
    ActionStatus.DRY_RUN: "ran in dry run",
    ActionStatus.FAILED: "failed",
    ActionStatus.SKIPPED: "skipped",
    ActionStatus.PENDING_APPROVAL: "waited for a person",
    ActionStatus.PLANNED: "never ran",
}
# The statuses the last step of a case's execution leaves (the ticket's, CloseCase's, MarkCaseFailed's).
_ENDED = frozenset({CaseStatus.TICKETED, CaseStatus.CLOSED, CaseStatus.FAILED})


def channel_of(provenance: Provenance | None) -> Channel:
    """The channel of a provenance; a case stored before provenance was recorded came through the one queue
    there was: the detector's."""
    return provenance.channel if provenance is not None else "detector"


def channel_trust(channel: Channel) -> int:
    """How much a channel is trusted with (the detector rules' the most)."""
    return _CHANNEL_TRUST[channel]


def trust(provenance: Provenance | None) -> int:
    """How much the channel of `provenance` is trusted with."""
    return channel_trust(channel_of(provenance))


def left_undone(case: Case) -> str | None:
    """What the case's response left undone, when it stopped with none of its actions run: its execution
    ended (or waits for a person on every action left) with some action in dry run, failed, waiting for a
    person or never run; None when an action ran, when there is nothing such, or while its execution may
    still be acting (an action still planned), which a second case must never race."""
    if any(action.status in _RAN for action in case.actions):
        return None
    statuses = [action.status for action in case.actions]
    planned = ActionStatus.PLANNED in statuses
    stopped = case.status is CaseStatus.FAILED or (
        not planned and (case.status in _ENDED or ActionStatus.PENDING_APPROVAL in statuses)
    )
    if not stopped:
        return None
    counts = {status: statuses.count(status) for status in _LEFT_UNDONE if status in statuses}
    if not counts:
        return None
    return ", ".join(f"{count} {_LEFT_UNDONE[status]}" for status, count in counts.items())


class Repeats:
    """Where a repeat meets its earlier case (`ledger`), for `window` after that case was triaged."""

    def __init__(
        self,
        ledger: RepeatLedger,
        cases: CaseRepository,
        executions: ExecutionStarter,
        *,
        window: timedelta = timedelta(hours=24),
        ticket_min_severity: str = DEFAULT_TICKET_MIN_SEVERITY,
        dry_run: bool = True,
    ) -> None:
        """`dry_run`: the deployment's DryRun, which the remediate function acts under: while it holds, a
        repeat of a case whose actions ran in dry run would only run in dry run again, and is folded."""
        self.ledger = ledger
        self.cases = cases
        self.executions = executions
        self.window = window
        self.ticket_min_severity = ticket_min_severity
        self.dry_run = dry_run

    def earlier_case(self, alert: Alert) -> Case | None:
        """The case an earlier occurrence of this finding opened within the repeat window, if any; or this
        very finding's case under a channel's own id (`Alert.case_id_through`: the same finding id,
        version and content), which the caller tells from a repeat by its `finding_key`."""
        if self.window <= timedelta(0):
            return None
        earlier_id = self.ledger.earlier_case(alert.repeat_key)
        if earlier_id is None or earlier_id == alert.case_id:
            return None
        earlier = self.cases.get(earlier_id)
        if earlier is None or earlier.status is CaseStatus.PENDING_ENRICHMENT:
            return None
        if (
            earlier.alert.finding_key == alert.finding_key
            and earlier.alert.content_digest != alert.content_digest
        ):
            # Another content under the same finding id and version is no repeat: a case of its own.
            return None
        return earlier

    def remember(self, case: Case, now: datetime) -> None:
        """Make the case the one its finding's repeats meet, until the window closes."""
        if self.window > timedelta(0):
            self.ledger.remember(case.alert.repeat_key, case.case_id, now + self.window)

    def folded_already(self, earlier: Case, case_id: str, provenance: Provenance) -> bool:
        """Whether a delivery of case id `case_id` is another of a repeat folded into `earlier` already,
        which it cannot turn into news: it is not trusted with more than the earlier case, and the earlier
        case's response did not stop without acting (`left_undone`). The copy folded first may have come
        through a channel trusted with less, or met a response still running: such a delivery is triaged
        again (from the cache), and is folded, or a case of its own when it says more."""
        if case_id not in earlier.repeat_case_ids or trust(provenance) > trust(earlier.provenance):
            return False
        return self.dry_run or left_undone(earlier) is None

    def news(self, case: Case, branch: Branch, earlier: Case) -> str | None:
        """Why a repeat is a case of its own rather than folded into its earlier case, or None: it says
        something worse (a heavier verdict, a higher severity band, a branch that does more), came through
        a channel trusted with more (a detector's finding after a pushed alert), or would act where the
        earlier case's response stopped without acting (`left_undone`: after DryRun was turned off, say).
        A severity within the same band (GuardDuty's 5.0 then 5.3) is no news, nor is one intake had to
        guess (scored critical so that a person sees it: a notification naming none, the earlier case has
        the detector's own)."""
        earlier_branch = choose_branch(earlier, self.ticket_min_severity)
        label, earlier_label = case.alert.severity.label, earlier.alert.severity.label
        if case.verdict.weight > earlier.verdict.weight:
            return f"verdict {case.verdict.value}, heavier than that case's {earlier.verdict.value}"
        if not severity_guessed(case.alert.notes) and severity_rank(label) > severity_rank(earlier_label):
            return f"severity {label}, above that case's {earlier_label}"
        if _BRANCH_RANK[branch] > _BRANCH_RANK[earlier_branch]:
            return f"route {branch.value}, which does more than that case's {earlier_branch.value}"
        if trust(case.provenance) > trust(earlier.provenance):
            return f"through {_described(case.provenance)}, trusted with more than that case's channel"
        undone = left_undone(earlier) if self._acts(case, branch) else None
        if undone is not None:
            return f"its actions would run, where none of the earlier case's did ({undone})"
        return None

    def _acts(self, case: Case, branch: Branch) -> bool:
        """Whether the case's execution would act: its route remediates, with an action that runs for real
        (the deployment not in dry run, the action not kept to one) and without waiting for a person."""
        if self.dry_run or branch is not Branch.REMEDIATE:
            return False
        return any(
            action.status is ActionStatus.PLANNED
            and action.parameters.get(NEEDS_APPROVAL_PARAMETER, "").lower() != "true"
            and action.parameters.get(DRY_RUN_PARAMETER, "").lower() != "true"
            for action in case.actions
        )

    def fold(self, earlier: Case, case: Case, now: datetime) -> CaseSummary:
        """Count the repeat on its earlier case, with a line in its history, and tell its ticket."""
        alert = case.alert
        repeat = Repeat(
            alert_id=alert.id,
            version=alert.version,
            case_id=case.case_id,
            at=now,
            verdict=case.verdict,
            severity=alert.severity.score,
        )
        entry = HistoryEntry(status=earlier.status, at=now, note=repeat.note)
        # False when another delivery of this repeat folded it first: telling the ticket again is harmless.
        folded = self.ledger.fold(earlier.case_id, repeat, entry)
        logger.info(
            "repeat folded into its earlier case",
            extra={"case_id": earlier.case_id, "repeat_case_id": case.case_id, "first_fold": folded},
        )
        return self.tell(earlier, case.case_id, duplicate=not folded)

    def tell(self, earlier: Case, repeat_case_id: str, *, duplicate: bool) -> CaseSummary:
        """Start the execution, named after the repeat, that takes the earlier case to its ticket (which
        comments on the repeat); none for a case that was closed, which stays closed."""
        if earlier.ticket is None and choose_branch(earlier, self.ticket_min_severity) is Branch.CLOSE:
            arn = earlier.execution_arn or self.executions.arn_for(earlier.case_id)
        else:
            summary = ExecutionInput(
                case_id=earlier.case_id,
                route=Branch.TICKET,
                verdict=earlier.verdict,
                severity=earlier.alert.severity.label,
                remediable=False,
                actions=0,
            )
            arn = self.executions.start(repeat_case_id, summary)
        return CaseSummary(
            case_id=earlier.case_id,
            verdict=earlier.verdict,
            execution_arn=arn,
            duplicate=duplicate,
            repeat=True,
        )


class Variants:
    """Where the contents delivered under one finding id and version meet (`ledger`)."""

    def __init__(self, ledger: FindingLedger, cases: CaseRepository) -> None:
        self.ledger = ledger
        self.cases = cases

    def note_other_contents(self, case: Case, now: datetime) -> None:
        """When other contents came under this case's finding id and version, or the same content through
        another channel (a pushed copy, then the detector's own delivery: `Alert.case_id_through`), make this
        case and each of theirs name the other (each triaged on its own: none is a duplicate of another).
        Done once the case is stored, so that of two contents arriving together the later one always finds
        the earlier's case."""
        alert = case.alert
        for other_id in self.ledger.join(alert.finding_key, case.case_id):
            other = self.cases.get(other_id)
            if other is None:
                continue
            finding = f"finding {shown(alert.id)} (version {shown(alert.version)})"
            if other.alert.content_digest == alert.content_digest:
                # The same finding, delivered again through a channel trusted with more.
                earlier_note = (
                    f"the same {finding} came earlier through {_described(other.provenance)} as case "
                    f"{other_id}, verdict {other.verdict.value}: this delivery, through "
                    f"{_described(case.provenance)}, is a case of its own, triaged as that channel's"
                )
                later_note = (
                    f"the same {finding} came later through {_described(case.provenance)} as case "
                    f"{case.case_id}, verdict {case.verdict.value}: a case of its own, triaged as that "
                    "channel's; this one is left as it was"
                )
            else:
                earlier_note = (
                    f"another content of {finding} came earlier as case {other_id}, "
                    f"verdict {other.verdict.value}: this one differs, and is triaged on its own"
                )
                later_note = (
                    f"another content of {finding} came later as case {case.case_id}, "
                    f"verdict {case.verdict.value}: it differs, and is triaged on its own"
                )
            self.ledger.note_variant(
                case.case_id, other_id, HistoryEntry(status=case.status, at=now, note=earlier_note)
            )
            self.ledger.note_variant(
                other_id, case.case_id, HistoryEntry(status=other.status, at=now, note=later_note)
            )
            logger.warning(
                "another content of a known finding id and version"
                if other.alert.content_digest != alert.content_digest
                else "a known finding delivered again through a channel trusted with more",
                extra={"case_id": case.case_id, "other_case_id": other_id, "finding_key": alert.finding_key},
            )


def _described(provenance: Provenance | None) -> str:
    """The channel a person reads (`Provenance.described`, escaped already)."""
    return (provenance or Provenance(channel=channel_of(provenance))).described
