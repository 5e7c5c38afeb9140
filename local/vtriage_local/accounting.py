"""The runner's account of a run: every finding of every record exactly once, as a case, a repeat folded
into a case, an ignored finding, a pending one or a failure.

The runner reads each record as the deployed enrich function does (`decode_body` and the deployed
`IntakeOptions.read`), so it knows every finding a record holds; what became of each one it then reads
from the local AWS once the run has settled: the cases table (cases, repeat keys, failure records) and
the state machine's executions (a repeat's execution names the case it was folded into).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from vtriage.action_text import not_contained
from vtriage.errors import InvalidAlertError
from vtriage.intake import IntakeOptions
from vtriage.intake.body import decode_body
from vtriage.models import Action, Alert, CaseStatus, Severity
from vtriage_local.alert_files import Delivery

JourneyState = Literal["queued", "acknowledged", "dead_lettered", "refused"]


@dataclass
class Journey:
    """What became of one delivery in the local queue."""

    delivery: Delivery
    # The SQS ids it had: the first, then any copy the enrich function queued afresh to defer it.
    message_ids: list[str] = field(default_factory=list)
    state: JourneyState = "queued"
    reason: str = ""


@dataclass(frozen=True)
class Finding:
    """One finding of a record, as the deployed enrich function reads it: what the run accounts for.

    A record in which no finding can be identified is one finding, refused whole (`where` "").
    """

    alert: Alert | None = None
    alert_id: str | None = None
    where: str | None = None
    refused: str | None = None
    ignored: str | None = None

    @property
    def stands_for_its_record(self) -> bool:
        """Whether no finding is identified here and this stands for its whole record: one that is not
        JSON or of no known shape, or a page that holds none (an empty get-findings page)."""
        return self.alert is None and self.alert_id is None and "[" not in (self.where or "")


NO_FINDING = "no finding to triage in it"


def findings_in(body: str, intake: IntakeOptions) -> list[Finding]:
    """Every finding of a message body as the enrich function with these intake options reads it."""
    try:
        result = intake.read(decode_body(body))
    except InvalidAlertError as error:
        return [Finding(where="", refused=str(error))]
    except Exception as error:  # a parser's fault costs this record, never the run
        return [Finding(where="", refused=f"the intake failed on it ({type(error).__name__})")]
    if not (result.alerts or result.refused or result.ignored):
        return [Finding(where="", ignored=NO_FINDING)]
    return [
        *(Finding(alert=alert, alert_id=alert.id) for alert in result.alerts),
        *(
            Finding(alert_id=refusal.alert_id, where=refusal.where, refused=refusal.reason)
            for refusal in result.refused
        ),
        *(Finding(alert_id=item.alert_id, where=item.where, ignored=item.reason) for item in result.ignored),
    ]


@dataclass(frozen=True)
class Execution:
    """A triage execution of the run."""

    name: str
    arn: str
    status: str
    started: datetime
    # The case its input names: for the execution of a folded repeat, the case it was folded into.
    case_id: str | None = None
    # Still RUNNING because it waits for a person to approve or reject an action of its case (the state
    # machine holds a task token in WaitForApproval): nobody decides in a local run, so the runner does
    # not wait for it.
    waiting_for_approval: bool = False


@dataclass(frozen=True)
class Settled:
    """The local AWS once the queue is drained and the executions have finished."""

    items: dict[str, dict[str, Any]]  # the cases table by key: cases, repeat keys, failure records
    executions: dict[str, Execution]  # by name
    queue_busy: bool  # records still delayed or hidden in the alert queue
    waited_s: float  # how long the runner waited for deferred records


@dataclass
class Account:
    """The runner's document, but for its stats."""

    cases: list[dict[str, Any]]
    ignored: list[dict[str, Any]]
    pending: list[dict[str, Any]]
    failures: list[dict[str, Any]]
    # Everything accounted for: each finding, and each record in which none is identified, once.
    findings: int
    # Of them, the records in which no finding is identified (`Finding.stands_for_its_record`).
    records_without_findings: int = 0


def account(journeys: list[tuple[Journey, list[Finding]]], settled: Settled) -> Account:
    """What became of every finding of every delivery, each exactly once."""
    ledger = _Ledger(settled)
    for journey, findings in journeys:
        ledger.take(journey, findings)
    accounted = ledger.result(sum(len(findings) for _, findings in journeys))
    accounted.records_without_findings = sum(
        1 for _, findings in journeys for finding in findings if finding.stands_for_its_record
    )
    return accounted


UNACCOUNTED = (
    "the enrich function acknowledged it without a case, a repeat or a failure record (see the function log)"
)


@dataclass
class _FailureRecord:
    key: str
    where: str
    document: dict[str, Any]
    used: bool = False


class _Ledger:
    def __init__(self, settled: Settled) -> None:
        self.settled = settled
        self.cases: dict[str, dict[str, Any]] = {}
        self.claimed: set[str] = set()
        self.ignored: list[dict[str, Any]] = []
        self.pending: list[dict[str, Any]] = []
        self.failures: list[dict[str, Any]] = []
        self.folded_into = {
            repeat_id: key
            for key, item in settled.items.items()
            if _is_case(item)
            for repeat_id in item.get("repeat_case_ids") or []
        }

    def take(self, journey: Journey, findings: list[Finding]) -> None:
        """Place each finding of one delivery, then any failure record of it no finding accounts for."""
        records = self._failure_records(journey)
        for finding in findings:
            self._place(journey, finding, records)
        for record in records:
            if not record.used:
                self._fail(journey, Finding(), record)

    def result(self, findings: int) -> Account:
        """The cases (oldest execution first), then the other fates in the order of the deliveries."""
        executions = self.settled.executions
        for name in executions:
            stored = self.settled.items.get(name)
            if _is_case(stored) and not _is_pending(stored):
                self._summary(name)  # a case no finding of the run claims is shown all the same
        order = sorted(
            self.cases,
            key=lambda case_id: (
                case_id not in executions,
                executions[case_id].started.timestamp() if case_id in executions else 0.0,
            ),
        )
        return Account(
            cases=[self.cases[case_id] for case_id in order],
            ignored=self.ignored,
            pending=self.pending,
            failures=self.failures,
            findings=findings,
        )

    def _place(self, journey: Journey, finding: Finding, records: list[_FailureRecord]) -> None:
        message_id = journey.delivery.source_id
        alert = finding.alert
        if journey.state == "refused":
            self._fail(journey, finding, reason=journey.reason)
        elif finding.ignored is not None:
            self.ignored.append(
                _entry(message_id, finding, reason=finding.ignored) | {"alert_id": finding.alert_id}
            )
        elif (record := _specific(records, finding)) is not None:
            self._fail(journey, finding, record)
        elif alert is not None and self._case_or_repeat(alert, message_id):
            pass
        elif alert is not None and _is_pending(self.settled.items.get(alert.case_id)):
            self._pend(journey, finding, str(self.settled.items[alert.case_id].get("error") or ""))
        elif (record := _whole(records)) is not None:
            self._fail(journey, finding, record)
        elif journey.state == "dead_lettered":
            self._fail(journey, finding, reason=journey.reason)
        elif alert is not None and (journey.state == "queued" or self.settled.queue_busy):
            # Deferred: a record waiting for the quota keeps no trace of a repeat, nor always a case; a
            # record being retried says why.
            self._pend(journey, finding, journey.reason)
        elif alert is not None and (earlier := self._ledger_case(alert)) is not None:
            self._repeat(earlier, alert, message_id, same_finding=False)
        else:
            self._fail(journey, finding, reason=finding.refused or UNACCOUNTED)

    def _case_or_repeat(self, alert: Alert, message_id: str) -> bool:
        """Place the alert as its case, or as a repeat of a case; False when it is neither (yet)."""
        stored = self.settled.items.get(alert.case_id)
        if _is_case(stored) and not _is_pending(stored):
            if alert.case_id in self.claimed:
                # The same finding met again: another delivery of it, which the first one's case answered.
                self._repeat(alert.case_id, alert, message_id, same_finding=True)
            else:
                self.claimed.add(alert.case_id)
                self._summary(alert.case_id)["message_id"] = message_id
            return True
        earlier = self.folded_into.get(alert.case_id) or self._execution_case(alert)
        if earlier is None:
            return False
        self._repeat(earlier, alert, message_id, same_finding=False)
        return True

    def _execution_case(self, alert: Alert) -> str | None:
        """The case a repeat's execution (named after the repeat) was started for."""
        execution = self.settled.executions.get(alert.case_id)
        if execution is None or execution.case_id in {None, alert.case_id}:
            return None
        return execution.case_id if _is_case(self.settled.items.get(execution.case_id or "")) else None

    def _ledger_case(self, alert: Alert) -> str | None:
        """The case the alert's repeat key opened: where a repeat that left no other trace was folded."""
        pointer = self.settled.items.get(alert.repeat_key) or {}
        earlier = str(pointer.get("repeat_of") or "")
        stored = self.settled.items.get(earlier)
        return earlier if earlier != alert.case_id and _is_case(stored) and not _is_pending(stored) else None

    def _summary(self, case_id: str) -> dict[str, Any]:
        if case_id not in self.cases:
            execution = self.settled.executions.get(case_id)
            self.cases[case_id] = case_summary(
                self.settled.items[case_id],
                execution.status if execution else "NOT_STARTED",
                waiting_for_approval=execution is not None and execution.waiting_for_approval,
            )
        return self.cases[case_id]

    def _repeat(self, case_id: str, alert: Alert, message_id: str, *, same_finding: bool) -> None:
        self._summary(case_id)["repeats"].append(
            {"alert_id": alert.id, "message_id": message_id, "same_finding": same_finding}
        )

    def _pend(self, journey: Journey, finding: Finding, reason: str) -> None:
        waited = f"still queued when the runner stopped waiting after {self.settled.waited_s:g} s"
        why = reason or "deferred (the VirusTotal quota is spent) or being retried"
        self.pending.append(_entry(journey.delivery.source_id, finding, reason=f"{why}; {waited}"))

    def _fail(
        self,
        journey: Journey,
        finding: Finding,
        record: _FailureRecord | None = None,
        *,
        reason: str | None = None,
    ) -> None:
        if record is not None:
            record.used = True
            reason = str(record.document.get("reason") or "rejected (no reason kept)")
            finding = Finding(
                alert_id=finding.alert_id or record.document.get("alert_id"),
                where=finding.where or record.where or None,
            )
        self.failures.append(_entry(journey.delivery.source_id, finding, reason=reason or UNACCOUNTED))

    def _failure_records(self, journey: Journey) -> list[_FailureRecord]:
        """The failure records the enrich function left for this delivery (under each of its SQS ids)."""
        found: list[_FailureRecord] = []
        for message_id in journey.message_ids:
            prefix = _failure_key(message_id)
            for key, item in self.settled.items.items():
                if key == prefix or key.startswith(prefix + "#"):
                    where = str(item.get("where") or key[len(prefix) + 1 :])
                    found.append(_FailureRecord(key=key, where=where, document=item))
        return found


def _failure_key(message_id: str) -> str:
    # Imported here: the cases table's adapter loads boto3, which the account of a run refused as it was
    # read (made by vtriage_local.preflight before anything starts, no record queued) never needs.
    from vtriage.adapters.dynamodb import failure_key  # noqa: PLC0415

    return failure_key(message_id)


def _specific(records: list[_FailureRecord], finding: Finding) -> _FailureRecord | None:
    """The failure record of this one finding: by its place in the document, else by its id."""
    for record in records:
        if record.where and finding.where and record.where == finding.where:
            return record
    for record in records:
        if record.where and finding.alert_id and record.document.get("alert_id") == finding.alert_id:
            return record
    return None


def _whole(records: list[_FailureRecord]) -> _FailureRecord | None:
    return next((record for record in records if not record.where), None)


def _entry(message_id: str, finding: Finding, *, reason: str) -> dict[str, Any]:
    """An ignored, pending or failed finding: its record, its id and place when known, and why."""
    entry: dict[str, Any] = {"message_id": message_id, "reason": reason}
    if finding.alert_id is not None:
        entry["alert_id"] = finding.alert_id
    if finding.where:
        entry["where"] = finding.where
    return entry


def _is_case(item: dict[str, Any] | None) -> bool:
    return item is not None and isinstance(item.get("alert"), dict)


def _is_pending(item: dict[str, Any] | None) -> bool:
    return _is_case(item) and (item or {}).get("status") == CaseStatus.PENDING_ENRICHMENT.value


def case_summary(
    case: dict[str, Any], execution_status: str, *, waiting_for_approval: bool = False
) -> dict[str, Any]:
    """A stored case as the runner's JSON contract shows it; `message_id` and `repeats` are filled in as
    the run's findings are placed. `waiting_for_approval`: its execution waits for a person's decision
    on an action (`pending_approval`), so it is RUNNING, neither failed nor pending."""
    alert = case["alert"]
    ticket = case.get("ticket")
    return {
        "case_id": case["case_id"],
        "message_id": None,
        "alert_id": alert["id"],
        "source": alert["source"],
        # Where the finding lives: the account and Region its actions run in, when they may run.
        "account": alert["account"],
        "region": alert["region"],
        "type": alert["type"],
        "title": alert.get("title", ""),
        # What remediation could act on, as the finding names it: an instance, an access key, a bucket...
        "resources": [
            {"type": resource["type"], "id": resource["id"]} for resource in alert.get("resources", [])
        ],
        # What it is about that no action acts on (a Lambda function, a cluster...), as the detector names it.
        "subjects": list(alert.get("subjects", [])),
        "severity": alert["severity"]["score"],
        "severity_label": Severity(
            score=float(alert["severity"]["score"]),
            informational=bool(alert["severity"].get("informational")),
        ).shown_label,
        "verdict": case["verdict"],
        "branch": case.get("branch"),
        "status": case.get("status"),
        "execution_arn": case.get("execution_arn"),
        "execution_status": execution_status,
        "waiting_for_approval": waiting_for_approval,
        "iocs": [
            {
                "type": ioc["type"],
                "value": ioc["value"],
                "verdict": ioc["verdict"],
                "skipped_reason": ioc.get("skipped_reason"),
                "malicious": ioc.get("malicious", 0),
                "suspicious": ioc.get("suspicious", 0),
                "total": ioc.get("total", 0),
                "cached": ioc.get("cached", False),
                "reasons": ioc.get("reasons", []),
                "link": ioc.get("link"),
                "found_at": ioc.get("found_at"),
            }
            for ioc in case.get("iocs", [])
        ],
        "actions": [
            {
                "type": action["type"],
                "target": action["target"],
                "status": action["status"],
                "detail": action.get("detail", ""),
                # Where it ran (set once it ran): the finding's account and Region.
                "account": action.get("account"),
                "region": action.get("region"),
            }
            for action in case.get("actions", [])
        ],
        # The actions that were to cut the threat off and did not, and why (`not_contained`): such a case
        # is never REMEDIATED.
        "not_contained": not_contained(
            Action(
                type=action["type"],
                target=action["target"],
                status=action["status"],
                detail=action.get("detail", ""),
            )
            for action in case.get("actions", [])
        ),
        "ticket": {"provider": ticket["provider"], "id": ticket["id"], "url": ticket.get("url")}
        if ticket
        else None,
        "error": case.get("error"),
        # Why no action may run automatically (another account or Region, a pushed alert, ...), where
        # the alert came from, and the cases of other contents under the same finding id and version.
        "not_actionable": list(alert.get("not_actionable", [])),
        # A detector's generated sample, and what intake noted (a guessed severity, a stand-in, a cut).
        "sample": bool(alert.get("sample", False)),
        "notes": list(alert.get("notes", [])),
        # An alert from outside AWS (Falcon, Workspace): its platform, product, customer, host, user, link.
        "vendor": alert.get("vendor"),
        "provenance": case.get("provenance"),
        "variant_case_ids": list(case.get("variant_case_ids", [])),
        "repeats": [],
    }


def execution_case_id(execution_input: str) -> str | None:
    """The case an execution's input names."""
    try:
        document = json.loads(execution_input)
    except json.JSONDecodeError:
        return None
    case_id = document.get("case_id") if isinstance(document, dict) else None
    return case_id if isinstance(case_id, str) else None
