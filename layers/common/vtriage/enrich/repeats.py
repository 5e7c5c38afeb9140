"""Repeats and variants of a finding.

A repeat (another finding id or version; same type, resources and IOCs, and for an alert from outside AWS
the same host and user: `Alert.repeat_key`) within `window` of the case its finding opened is folded into
that case instead of opening another, unless it says something worse (a heavier verdict, a higher
severity band, a branch that does more, a channel trusted with more). A variant (another content under
a known finding id and version) is a case of its own, and each of the two cases names the other.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from aws_lambda_powertools import Logger

from vtriage.display import severity_guessed, shown
from vtriage.enrich.outcomes import CaseSummary
from vtriage.models import Alert, Branch, Case, CaseStatus, ExecutionInput, HistoryEntry, Repeat
from vtriage.playbook import DEFAULT_TICKET_MIN_SEVERITY, choose_branch, severity_rank

if TYPE_CHECKING:
    # The ports only type this step's collaborators: the enrich function's cold start need not load them.
    from vtriage.ports import CaseRepository, ExecutionStarter, FindingLedger, RepeatLedger

logger = Logger(child=True)

# How much a branch does: a repeat whose branch does more than its earlier case's is a case of its own.
_BRANCH_RANK = {Branch.CLOSE: 0, Branch.TICKET: 1, Branch.REMEDIATE: 2}
# How much a channel is trusted with: a pushed alert cannot make a detector's later finding a repeat.
_CHANNEL_TRUST = {"queue": 0, "intake": 1, "detector": 2}


def _trust(case: Case) -> int:
    # A case stored before provenance was recorded came through the one queue there was: the detector's.
    channel = case.provenance.channel if case.provenance is not None else "detector"
    return _CHANNEL_TRUST[channel]


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
    ) -> None:
        self.ledger = ledger
        self.cases = cases
        self.executions = executions
        self.window = window
        self.ticket_min_severity = ticket_min_severity

    def earlier_case(self, alert: Alert) -> Case | None:
        """The case an earlier occurrence of this finding opened within the repeat window, if any."""
        if self.window <= timedelta(0):
            return None
        earlier_id = self.ledger.earlier_case(alert.repeat_key)
        if earlier_id is None or earlier_id == alert.case_id:
            return None
        earlier = self.cases.get(earlier_id)
        if earlier is None or earlier.status is CaseStatus.PENDING_ENRICHMENT:
            return None
        if earlier.alert.finding_key == alert.finding_key:
            # Another content under the same finding id and version is no repeat: a case of its own.
            return None
        return earlier

    def remember(self, case: Case, now: datetime) -> None:
        """Make the case the one its finding's repeats meet, until the window closes."""
        if self.window > timedelta(0):
            self.ledger.remember(case.alert.repeat_key, case.case_id, now + self.window)

    def says_more(self, case: Case, branch: Branch, earlier: Case) -> bool:
        """Whether a repeat says something worse than its earlier case (a heavier verdict, a higher severity
        band, a branch that does more), or came through a channel trusted with more (a detector's finding
        after a pushed alert): then it is a case of its own. A severity within the same band (GuardDuty's
        5.0 then 5.3) is no news, nor is one intake had to guess (scored critical so that a person sees it:
        a notification naming none, the earlier case has the detector's own)."""
        earlier_branch = choose_branch(earlier, self.ticket_min_severity)
        more_severe = not severity_guessed(case.alert.notes) and severity_rank(
            case.alert.severity.label
        ) > severity_rank(earlier.alert.severity.label)
        return (
            case.verdict.weight > earlier.verdict.weight
            or more_severe
            or _BRANCH_RANK[branch] > _BRANCH_RANK[earlier_branch]
            or _trust(case) > _trust(earlier)
        )

    def fold(self, earlier: Case, case: Case, now: datetime) -> CaseSummary:
        """Count the repeat on its earlier case, with a line in its history, and tell its ticket."""
        alert = case.alert
        repeat = Repeat(
            alert_id=alert.id,
            version=alert.version,
            case_id=alert.case_id,
            at=now,
            verdict=case.verdict,
            severity=alert.severity.score,
        )
        entry = HistoryEntry(status=earlier.status, at=now, note=repeat.note)
        # False when another delivery of this repeat folded it first: telling the ticket again is harmless.
        folded = self.ledger.fold(earlier.case_id, repeat, entry)
        logger.info(
            "repeat folded into its earlier case",
            extra={"case_id": earlier.case_id, "repeat_case_id": alert.case_id, "first_fold": folded},
        )
        return self.tell(earlier, alert.case_id, duplicate=not folded)

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
        """When other contents came under this case's finding id and version, make this case and each of
        theirs name the other (each triaged on its own: none is a duplicate of another). Done once the case
        is stored, so that of two contents arriving together the later one always finds the earlier's case."""
        alert = case.alert
        for other_id in self.ledger.join(alert.finding_key, case.case_id):
            other = self.cases.get(other_id)
            if other is None:
                continue
            finding = f"finding {shown(alert.id)} (version {shown(alert.version)})"
            self.ledger.note_variant(
                case.case_id,
                other_id,
                HistoryEntry(
                    status=case.status,
                    at=now,
                    note=f"another content of {finding} came earlier as case {other_id}, "
                    f"verdict {other.verdict.value}: this one differs, and is triaged on its own",
                ),
            )
            self.ledger.note_variant(
                other_id,
                case.case_id,
                HistoryEntry(
                    status=other.status,
                    at=now,
                    note=f"another content of {finding} came later as case {case.case_id}, "
                    f"verdict {case.verdict.value}: it differs, and is triaged on its own",
                ),
            )
            logger.warning(
                "another content of a known finding id and version",
                extra={"case_id": case.case_id, "other_case_id": other_id, "finding_key": alert.finding_key},
            )
