"""One alert's triage: its IOCs assessed, its verdict, its actions planned, its branch, the case stored and
its execution started; or the case kept pending while its enrichment is deferred."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, NamedTuple

from vtriage.display import shown
from vtriage.eligibility import Eligibility, Place, PushedAlertActions, eligibility, requiring_approval
from vtriage.enrich.lookups import Lookups, pending, unavailable, virustotal_unavailable
from vtriage.enrich.outcomes import DEFERRALS, CaseSummary, Deferral, LastDelivery, later
from vtriage.enrich.repeats import Repeats, Variants
from vtriage.models import (
    Alert,
    Branch,
    Case,
    CaseStatus,
    ExecutionInput,
    HistoryEntry,
    IocOutcome,
    Provenance,
    worst_verdict,
)
from vtriage.playbook import (
    DEFAULT_TICKET_MIN_SEVERITY,
    IpBlockMethod,
    Playbooks,
    choose_branch,
    default_playbooks,
    plan_actions,
)

if TYPE_CHECKING:
    # The ports only type this step's collaborators: the enrich function's cold start need not load them.
    from vtriage.ports import CaseRepository, ExecutionStarter


def execution_input(case: Case, ticket_min_severity: str = DEFAULT_TICKET_MIN_SEVERITY) -> ExecutionInput:
    """The state machine's input for a case: a few hundred bytes whatever the size of the case."""
    return ExecutionInput(
        case_id=case.case_id,
        route=choose_branch(case, ticket_min_severity),
        verdict=case.verdict,
        severity=case.alert.severity.label,
        remediable=case.remediable,
        actions=len(case.actions),
    )


class TriageRules:
    """What the deployment decides for every alert: where it may act (`place`) and what a pushed alert's
    actions wait for (`vtriage.eligibility`), the playbooks that plan actions (the shipped ones by
    default) and the means of an IP block, and the severity from which a case goes to a ticket rather
    than being closed."""

    def __init__(
        self,
        place: Place,
        *,
        pushed_alert_actions: PushedAlertActions = "approval",
        playbooks: Playbooks | None = None,
        ip_block_method: IpBlockMethod = "none",
        ticket_min_severity: str = DEFAULT_TICKET_MIN_SEVERITY,
    ) -> None:
        self.place = place
        self.pushed_alert_actions: PushedAlertActions = pushed_alert_actions
        self.playbooks = playbooks if playbooks is not None else default_playbooks()
        self.ip_block_method: IpBlockMethod = ip_block_method
        self.ticket_min_severity = ticket_min_severity


class StoredCase(NamedTuple):
    """An alert's case as the cases table held it when its batch was read (None: no case yet)."""

    case: Case | None


class Triage:
    """Triages alerts into cases.

    A case triaged already is resumed (its execution started again, which is harmless), never enriched
    again. With `repeats`, a repeat of a finding is folded into its earlier case unless it says more;
    with `variants`, another content under a known finding id and version is a case of its own, and
    each of the two cases names the other.
    """

    def __init__(
        self,
        cases: CaseRepository,
        executions: ExecutionStarter,
        lookups: Lookups,
        rules: TriageRules,
        now: Callable[[], datetime],
        *,
        repeats: Repeats | None = None,
        variants: Variants | None = None,
    ) -> None:
        self.cases = cases
        self.executions = executions
        self.lookups = lookups
        self.rules = rules
        self.now = now
        self.repeats = repeats
        self.variants = variants

    def triage(
        self,
        alert: Alert,
        provenance: Provenance,
        stored: StoredCase | None = None,
        *,
        last_delivery: LastDelivery | None = None,
    ) -> CaseSummary:
        """Enrich the alert's IOCs, store the case, start its execution. A repeat is not enriched again.
        What may run automatically is decided by the alert's channel (`provenance`) and place. `stored`
        is its case as read with its batch; without it, the case is read now.

        Raises QuotaExhaustedError (or PutOffError) after storing the case as PENDING_ENRICHMENT when the
        quota ran out (or the invocation's time, or VirusTotal refuses the key). Raises the error of a
        lookup VirusTotal failed (a 5xx, a timeout), for a retry, unless the record is on its
        `last_delivery`: then the case is made without that enrichment, saying why (`unavailable`).
        """
        rules = self.rules
        allowed = eligibility(alert, provenance, rules.place, rules.pushed_alert_actions)
        alert = allowed.applied_to(alert)
        existing = stored.case if stored is not None else self.cases.get(alert.case_id)
        if existing is not None and existing.status is not CaseStatus.PENDING_ENRICHMENT:
            return self._resume(existing)
        repeats = self.repeats
        earlier = repeats.earlier_case(alert) if repeats is not None and existing is None else None
        if repeats is not None and earlier is not None and alert.case_id in earlier.repeat_case_ids:
            # This very repeat was folded into its earlier case already: a repeat delivery.
            return repeats.tell(earlier, alert.case_id, duplicate=True)
        outcomes: list[IocOutcome] = []
        refusal: Deferral | None = None
        for ioc in alert.iocs:
            try:
                outcomes.append(self.lookups.assess(ioc))
            except DEFERRALS as error:
                refusal = later(refusal, error)
                outcomes.append(pending(ioc, error))
            except Exception as error:
                if last_delivery is None or not virustotal_unavailable(error):
                    raise
                # Failing again would park the alert on the dead-letter queue, where nobody triages it.
                outcomes.append(unavailable(ioc, error, last_delivery))
        now = self.now()
        created_at = existing.created_at if existing is not None else now
        if refusal is not None:
            # A repeat keeps no case of its own while it waits: it is folded once it is enriched.
            if earlier is None:
                self._keep_pending(
                    alert,
                    provenance,
                    existing=existing,
                    outcomes=outcomes,
                    refusal=refusal,
                    created_at=created_at,
                    now=now,
                )
            raise refusal
        verdict = worst_verdict([outcome.verdict for outcome in outcomes if outcome.skipped_reason is None])
        actions = plan_actions(alert, outcomes, rules.playbooks, ip_block_method=rules.ip_block_method)
        actions = allowed.placed(actions)
        if allowed.approval is not None:
            actions = requiring_approval(actions, allowed.approval)
        case = Case(
            case_id=alert.case_id,
            alert=alert,
            verdict=verdict,
            iocs=outcomes,
            actions=actions,
            execution_arn=self.executions.arn_for(alert.case_id),
            created_at=created_at,
            updated_at=now,
            history=list(existing.history) if existing is not None else [_received(alert, created_at)],
            provenance=provenance,
        )
        branch = choose_branch(case, rules.ticket_min_severity)
        case.record(CaseStatus.ENRICHED, now, _enriched_note(case, branch, allowed))
        if repeats is not None and earlier is not None and not repeats.says_more(case, branch, earlier):
            return repeats.fold(earlier, case, now)
        if existing is not None:
            self.cases.save(case)
        elif not self.cases.create(case):
            stored_since = self.cases.get(case.case_id)
            if stored_since is not None and stored_since.status is not CaseStatus.PENDING_ENRICHMENT:
                # Another delivery of the same finding won the race: its case stands.
                return self._resume(stored_since)
            self.cases.save(case)
        if repeats is not None:
            repeats.remember(case, now)
        if self.variants is not None:
            self.variants.note_other_contents(case, now)
        arn = self.executions.start(case.case_id, execution_input(case, rules.ticket_min_severity))
        return CaseSummary(case_id=case.case_id, verdict=verdict, execution_arn=arn, duplicate=False)

    def _keep_pending(
        self,
        alert: Alert,
        provenance: Provenance,
        *,
        existing: Case | None,
        outcomes: list[IocOutcome],
        refusal: Deferral,
        created_at: datetime,
        now: datetime,
    ) -> None:
        # The case shows what is known and that the rest is pending: no verdict, no action, no execution.
        case = Case(
            case_id=alert.case_id,
            alert=alert,
            iocs=outcomes,
            error=f"enrichment pending until {refusal.retry_at.isoformat()}: {refusal}",
            status=existing.status if existing is not None else CaseStatus.NEW,
            created_at=created_at,
            updated_at=now,
            history=list(existing.history) if existing is not None else [_received(alert, created_at)],
            provenance=provenance,
        )
        if case.status is not CaseStatus.PENDING_ENRICHMENT:
            until = refusal.retry_at.isoformat()
            case.record(CaseStatus.PENDING_ENRICHMENT, now, f"enrichment put off until {until}: {refusal}")
        if existing is not None:
            self.cases.save(case)
        else:
            # False when another delivery stored it first: its version stands, this record comes back.
            self.cases.create(case)

    def _resume(self, case: Case) -> CaseSummary:
        # Starting again is harmless (the execution is named after the case) and finishes the job
        # of a delivery that stored the case but died before starting its execution.
        arn = self.executions.start(case.case_id, execution_input(case, self.rules.ticket_min_severity))
        return CaseSummary(case_id=case.case_id, verdict=case.verdict, execution_arn=arn, duplicate=True)


def _received(alert: Alert, at: datetime) -> HistoryEntry:
    """The first step of every case: the alert came in."""
    # The id and version are the sender's: escaped, as everything a person reads from the history.
    note = f"{alert.source} finding {shown(alert.id)} (version {shown(alert.version)})"
    return HistoryEntry(status=CaseStatus.NEW, at=at, note=note)


def _enriched_note(case: Case, branch: Branch, allowed: Eligibility) -> str:
    """The history line of a case once enriched: its verdict, what was planned and why, its branch
    (the line says "route")."""
    count = len(case.actions)
    note = f"verdict {case.verdict.value}; {count} action{'s' if count != 1 else ''} planned"
    if allowed.not_actionable:
        note += "; no automatic action: " + "; ".join(allowed.not_actionable)
    else:
        if allowed.approval is not None and case.actions:
            note += f", each waiting for a person ({allowed.approval})"
        if allowed.elsewhere is not None:
            note += f"; {allowed.elsewhere}"
    unavailable_iocs = sum(1 for ioc in case.iocs if ioc.virustotal_unavailable)
    if unavailable_iocs:
        some = f"{unavailable_iocs} IOC{'s' if unavailable_iocs != 1 else ''}"
        them = "them" if unavailable_iocs != 1 else "it"
        note += (
            f"; {some} not enriched: VirusTotal unavailable up to the record's last delivery, "
            f"a person judges {them}"
        )
    return note + f"; route {branch.value}"
