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
from vtriage.enrich.repeats import CHANNELS_BY_TRUST, Repeats, Variants, channel_of, channel_trust, trust
from vtriage.errors import TransientError
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


class _Slot(NamedTuple):
    """Where one delivery's triage goes: the case id, the case stored there (None, or one still waiting for
    its enrichment), the provenance it is triaged with (never one trusted with less than the stored
    case's), and a history line saying how a copy through another channel met it (None when none did)."""

    case_id: str
    existing: Case | None
    provenance: Provenance
    note: str | None = None


# A delivery whose case another delivery stored between its read and its write is triaged again, against
# what is stored, this many times (each time from the cache), then retried by its queue.
_ATTEMPTS = 3


class Triage:
    """Triages alerts into cases.

    A case triaged already is resumed (its execution started again, which is harmless), never enriched
    again; but a finding whose case a copy through a channel trusted with less opened (a pushed copy of a
    detector's finding) is triaged as the more trusted channel's: in place while that case still waits
    for its enrichment, else in a case of its own (`Alert.case_id_through`), since the first case's
    execution may be acting on it. Nothing lowers a case's channel. With `repeats`, a repeat of a finding
    is folded into its earlier case unless it says more; with `variants`, another content under a known
    finding id and version is a case of its own, and each of the two cases names the other.
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
        existing = stored.case if stored is not None else self.cases.get(alert.case_id)
        for _ in range(_ATTEMPTS):
            slot = self._slot(alert, provenance, existing)
            if isinstance(slot, Case):
                return self._resume(slot)
            summary = self._triage_into(slot, alert, last_delivery)
            if summary is not None:
                return summary
            # Another delivery stored the case between this one's read and its write: decide again.
            existing = self.cases.get(alert.case_id)
        raise TransientError(f"case {alert.case_id} kept changing while it was triaged")

    def _slot(self, alert: Alert, provenance: Provenance, existing: Case | None) -> _Slot | Case:
        """Where this delivery's triage goes, given the case `existing` its finding's id holds; or the case
        triaged already that answers it (a repeat delivery, a copy through a channel trusted with no
        more)."""
        if existing is None:
            return _Slot(alert.case_id, None, provenance)
        if existing.status is CaseStatus.PENDING_ENRICHMENT:
            return _pending(alert.case_id, existing, provenance)
        if trust(provenance) <= trust(existing.provenance):
            return existing
        # A copy through a channel trusted with less came first, and its case has an execution, which may
        # be acting on it (its actions waiting for a person, say): that case is left to it, and this
        # delivery is triaged as its channel's in a case of its own, unless one trusted as much is there.
        more_trusted = [
            channel for channel in CHANNELS_BY_TRUST if channel_trust(channel) > trust(provenance)
        ]
        for channel in (*more_trusted, provenance.channel):
            case_id = alert.case_id_through(channel)
            own = self.cases.get(case_id)
            if own is not None:
                return (
                    _pending(case_id, own, provenance) if own.status is CaseStatus.PENDING_ENRICHMENT else own
                )
        return _Slot(alert.case_id_through(provenance.channel), None, provenance)

    def _triage_into(
        self, slot: _Slot, alert: Alert, last_delivery: LastDelivery | None
    ) -> CaseSummary | None:
        """`triage` into the slot: None when another delivery stored its case first (the caller decides
        again against it)."""
        rules = self.rules
        allowed = eligibility(alert, slot.provenance, rules.place, rules.pushed_alert_actions)
        alert = allowed.applied_to(alert)
        existing = slot.existing
        repeats = self.repeats
        earlier = repeats.earlier_case(alert) if repeats is not None and existing is None else None
        if earlier is not None and earlier.alert.finding_key == alert.finding_key:
            # This very finding's case under a channel's own id, made when a copy of it had been folded
            # under its case id (below): a delivery trusted with no more meets it.
            if trust(slot.provenance) <= trust(earlier.provenance):
                return self._resume(earlier)
            earlier = None
        case_id = slot.case_id
        # A repeat folded under this case id already (its execution, which told the ticket, has the name).
        folded = earlier is not None and case_id in earlier.repeat_case_ids
        if repeats is not None and earlier is not None and folded:
            if repeats.folded_already(earlier, case_id, slot.provenance):
                # This very repeat was folded into its earlier case already: a repeat delivery.
                return repeats.tell(earlier, case_id, duplicate=True)
            # The copy folded came through a channel trusted with less, or met a response still running:
            # this delivery is triaged again, and when it says more, it is a case of its channel's own.
            case_id = alert.case_id_through(slot.provenance.channel)
            own = self.cases.get(case_id)
            if own is not None:
                return self._resume(own)
        outcomes, refusal = self._assess(alert, last_delivery)
        now = self.now()
        created_at = existing.created_at if existing is not None else now
        if refusal is not None:
            # A repeat keeps no case of its own while it waits: it is folded once it is enriched.
            if earlier is None:
                self._keep_pending(
                    slot, alert, outcomes=outcomes, refusal=refusal, created_at=created_at, now=now
                )
            raise refusal
        verdict = worst_verdict([outcome.verdict for outcome in outcomes if outcome.skipped_reason is None])
        actions = plan_actions(alert, outcomes, rules.playbooks, ip_block_method=rules.ip_block_method)
        actions = allowed.placed(actions)
        if allowed.approval is not None:
            actions = requiring_approval(actions, allowed.approval)
        case = Case(
            case_id=case_id,
            alert=alert,
            verdict=verdict,
            iocs=outcomes,
            actions=actions,
            execution_arn=self.executions.arn_for(case_id),
            created_at=created_at,
            updated_at=now,
            history=list(existing.history) if existing is not None else [_received(alert, created_at)],
            provenance=slot.provenance,
        )
        branch = choose_branch(case, rules.ticket_min_severity)
        case.record(CaseStatus.ENRICHED, now, _enriched_note(case, branch, allowed))
        if slot.note is not None:
            case.history.append(HistoryEntry(status=case.status, at=now, note=slot.note))
        if repeats is not None and earlier is not None:
            news = repeats.news(case, branch, earlier)
            if news is None:
                # Folded; when a copy of it was folded already, it counts once.
                return (
                    repeats.tell(earlier, slot.case_id, duplicate=True)
                    if folded
                    else repeats.fold(earlier, case, now)
                )
            note = f"a repeat of case {earlier.case_id}, not folded into it: {news}"
            case.history.append(HistoryEntry(status=case.status, at=now, note=note))
        if not (self.cases.replace_pending(case) if existing is not None else self.cases.create(case)):
            return None
        if repeats is not None:
            repeats.remember(case, now)
        if self.variants is not None:
            self.variants.note_other_contents(case, now)
        arn = self.executions.start(case.case_id, execution_input(case, rules.ticket_min_severity))
        return CaseSummary(case_id=case.case_id, verdict=verdict, execution_arn=arn, duplicate=False)

    def _assess(
        self, alert: Alert, last_delivery: LastDelivery | None
    ) -> tuple[list[IocOutcome], Deferral | None]:
        """Each IOC's outcome, and the deferral that waits longest when some were put off (each of those
        then pending). An IOC VirusTotal failed for raises, unless the record is on its last delivery."""
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
        return outcomes, refusal

    def _keep_pending(
        self,
        slot: _Slot,
        alert: Alert,
        *,
        outcomes: list[IocOutcome],
        refusal: Deferral,
        created_at: datetime,
        now: datetime,
    ) -> None:
        # The case shows what is known and that the rest is pending: no verdict, no action, no execution.
        existing = slot.existing
        case = Case(
            case_id=slot.case_id,
            alert=alert,
            iocs=outcomes,
            error=f"enrichment pending until {refusal.retry_at.isoformat()}: {refusal}",
            status=existing.status if existing is not None else CaseStatus.NEW,
            created_at=created_at,
            updated_at=now,
            history=list(existing.history) if existing is not None else [_received(alert, created_at)],
            provenance=slot.provenance,
        )
        if slot.note is not None and existing is not None and existing.provenance != slot.provenance:
            # The channel of the case rose: said once, as it rises.
            case.history.append(HistoryEntry(status=case.status, at=now, note=slot.note))
        if case.status is not CaseStatus.PENDING_ENRICHMENT:
            until = refusal.retry_at.isoformat()
            case.record(CaseStatus.PENDING_ENRICHMENT, now, f"enrichment put off until {until}: {refusal}")
        # False when another delivery stored or triaged it first: its version stands, this record comes
        # back and meets it.
        if existing is not None:
            self.cases.replace_pending(case)
        else:
            self.cases.create(case)

    def _resume(self, case: Case) -> CaseSummary:
        # Starting again is harmless (the execution is named after the case) and finishes the job
        # of a delivery that stored the case but died before starting its execution.
        arn = self.executions.start(case.case_id, execution_input(case, self.rules.ticket_min_severity))
        return CaseSummary(case_id=case.case_id, verdict=case.verdict, execution_arn=arn, duplicate=True)


def _pending(case_id: str, pending_case: Case, provenance: Provenance) -> _Slot:
    """The slot of a delivery meeting a case that waits for its enrichment: triaged with the more trusted of
    the case's channel and its own (the content is the same: the case id says so), saying so when they
    differ."""
    kept = pending_case.provenance or Provenance(channel=channel_of(pending_case.provenance))
    if trust(kept) > trust(provenance):
        note = (
            f"a copy delivered through {provenance.described} came while this case waited for its "
            f"enrichment: triaged as the delivery through {kept.described}, whose content it repeats"
        )
        return _Slot(case_id, pending_case, kept, note)
    if trust(provenance) > trust(kept):
        note = (
            f"a copy delivered earlier through {kept.described} waited for its enrichment; the same finding "
            f"came through {provenance.described}: triaged as that channel's"
        )
        return _Slot(case_id, pending_case, provenance, note)
    return _Slot(case_id, pending_case, provenance)


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
