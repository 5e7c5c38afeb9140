"""The operator commands of `vtriage`: `send`, `cases` and `rollback`, on a deployed stack."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from datetime import timedelta
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from vtriage.adapters.dynamodb import DynamoCaseRepository
from vtriage.clock import utc_now
from vtriage.composition.remediate import remediator
from vtriage.config.remediate import RemediateSettings
from vtriage.errors import CaseNotFoundError, ConfigurationError, VtriageError
from vtriage.intake_api import AlertRejectedError
from vtriage.models import ActionStatus, Case, CaseStatus
from vtriage.remediate import rollback_case
from vtriage_local.alert_files import FILE_CONTENTS, Delivery, UsageError, read_named_alert_files
from vtriage_local.terminal import (
    BRANCHES,
    STATUSES,
    VERDICTS,
    CaseRow,
    case_table,
    counts,
    emit,
    main_resource,
    shown,
    terminal_width,
)
from vtriage_ops.intake_client import IntakeAnswer, IntakeUnusableError, SignedIntake

EXIT_OK, EXIT_SETUP, EXIT_REJECTED = 0, 1, 2

_ACCOUNT_ID = re.compile(r"\d{12}")


def declare_send(send: argparse.ArgumentParser) -> None:
    """Declare `vtriage send`'s arguments on its parser (the `vtriage` command names it); sets `handler`."""
    send.description = (
        f"{FILE_CONTENTS}. Each message is posted to the stack's intake function URL, signed with your "
        "ordinary AWS credentials (a role with the stack's AlertSendersPolicy): the intake reads it as "
        "the enrich function will, queues it stamped with who sent it, or answers with the field at "
        "fault. Pushed alerts are ticketed or wait for a person's approval (PushedAlertActions)."
    )
    send.add_argument("files", nargs="+", metavar="FILE", help="an alert file, or - for the standard input")
    send.add_argument("--intake-url", required=True, metavar="URL", help="the stack's IntakeUrl output")
    send.add_argument("--region", help="the stack's Region (default: the URL's, else your AWS configuration)")
    send.add_argument(
        "--json", action="store_true", help="print one JSON document on stdout and nothing else"
    )
    send.set_defaults(handler=send_files)


def _push(delivery: Delivery, intake: SignedIntake) -> IntakeAnswer:
    """Post one record to the intake; a file SQS could not carry (not text, an SQS event without
    records) is refused here, as the intake would refuse its body."""
    if delivery.refused is not None:
        return IntakeAnswer(400, AlertRejectedError(400, delivery.refused, "body").as_json())
    return intake.post(delivery.body)


def send_files(arguments: argparse.Namespace) -> int:
    """`vtriage send`: 0 when every record was queued whole, 2 when some records, or findings in them,
    were refused, 1 on a usage error or when the intake could not be used."""
    document: dict[str, Any] = {"sent": [], "rejected": []}
    status = EXIT_OK
    partly_refused = False
    try:
        deliveries = read_named_alert_files(arguments.files, sys.stdin.buffer)
        intake = SignedIntake(arguments.intake_url, arguments.region)
        for name, delivery in deliveries:
            answer = _push(delivery, intake)
            if answer.status != 202:
                rejected = answer.document
                document["rejected"].append({"source_id": delivery.source_id, **rejected})
                if not arguments.json:
                    where = f" ({rejected.get('field')})" if rejected.get("field") else ""
                    print(f"rejected  {name}  {delivery.source_id}{where}: {rejected.get('error')}")
                    # A lone refusal is the reason above; several are listed one by one.
                    refusals = rejected.get("refused") or []
                    for refusal in refusals if len(refusals) > 1 else ():
                        print(f"  refused {refusal['where']}: {refusal['reason']}")
                continue
            accepted = answer.document
            document["sent"].append({"source_id": delivery.source_id, **accepted})
            if accepted.get("refused"):
                partly_refused = True
            if not arguments.json:
                alerts = ", ".join(accepted.get("alert_ids") or []) or "none"
                print(
                    f"sent      {name}  {delivery.source_id}: message {accepted.get('message_id')}, "
                    f"alerts {alerts}, as {accepted.get('sender') or 'an unknown sender'}"
                )
                for refusal in accepted.get("refused") or []:
                    print(f"  refused {refusal['where']}: {refusal['reason']}")
                for ignored in accepted.get("ignored") or []:
                    alert_id = ignored["alert_id"] or "no id"
                    print(f"  ignored {ignored['where']} ({alert_id}): {ignored['reason']}")
    except UsageError as error:
        print(f"vtriage: {error}", file=sys.stderr)
        return EXIT_SETUP
    except IntakeUnusableError as error:
        # Nothing after this record was sent; what was sent before it stays listed.
        print(f"vtriage: cannot push to {arguments.intake_url}: {error}", file=sys.stderr)
        document["error"] = str(error)
        status = EXIT_SETUP
    if arguments.json:
        print(json.dumps(document, indent=2))
    if status == EXIT_OK and (document["rejected"] or partly_refused):
        status = EXIT_REJECTED
    return status


def _status(text: str) -> CaseStatus:
    try:
        return CaseStatus(text.upper())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"unknown status {text!r}: one of {', '.join(status.value for status in CaseStatus)}"
        ) from None


def _accounts(text: str) -> list[str]:
    """One `--account` value: an AWS account id, or several separated by commas."""
    accounts = [part.strip() for part in text.split(",") if part.strip()]
    for account in accounts:
        if not _ACCOUNT_ID.fullmatch(account):
            raise argparse.ArgumentTypeError(f"bad account id {account!r}: an AWS account id is 12 digits")
    if not accounts:
        raise argparse.ArgumentTypeError("no account id given: e.g. --account 111122223333")
    return accounts


def declare_cases(cases: argparse.ArgumentParser) -> None:
    """Declare `vtriage cases`'s arguments on its parser (the `vtriage` command names it); sets `handler`."""
    cases.description = (
        "Reads the cases table of a deployed stack (its by-status index) with your ordinary AWS "
        "credentials; AWS_ENDPOINT_URL, when set, points it elsewhere (a local moto server)."
    )
    cases.add_argument(
        "--status",
        type=_status,
        action="append",
        metavar="STATUS",
        help="only cases in this status (repeatable): " + ", ".join(status.value for status in CaseStatus),
    )
    cases.add_argument(
        "--account",
        type=_accounts,
        action="append",
        metavar="ACCOUNT_ID",
        help="only cases of findings from this AWS account (repeatable, or comma-separated): in a "
        "delegated administrator's stack, one member account's cases",
    )
    cases.add_argument(
        "--table",
        default=os.environ.get("CASES_TABLE_NAME"),
        metavar="NAME",
        help="the stack's cases table (default: $CASES_TABLE_NAME)",
    )
    cases.add_argument("--region", help="the table's region (default: your AWS configuration)")
    cases.add_argument("--limit", type=int, default=None, metavar="N", help="at most N cases")
    cases.add_argument(
        "--json", action="store_true", help="print one JSON document on stdout and nothing else"
    )
    cases.set_defaults(handler=list_cases)


def case_row(case: Case) -> dict[str, Any]:
    """A case as `vtriage cases --json` lists it."""
    alert = case.alert
    return {
        "case_id": case.case_id,
        "status": case.status.value,
        "verdict": case.verdict.value,
        "branch": case.branch.value if case.branch else None,
        "source": alert.source,
        "type": alert.type,
        "title": alert.title,
        "alert_id": alert.id,
        "account": alert.account,
        "region": alert.region,
        "severity": alert.severity.score,
        "severity_label": alert.severity.shown_label,
        "created_at": case.created_at.isoformat(),
        "updated_at": case.updated_at.isoformat(),
        "closed_at": case.closed_at.isoformat() if case.closed_at else None,
        "actions": [
            {"type": action.type.value, "target": action.target, "status": action.status.value}
            for action in case.actions
        ],
        "ticket": {"provider": case.ticket.provider, "id": case.ticket.id, "url": case.ticket.url}
        if case.ticket
        else None,
        "repeat_count": case.repeat_count,
        "error": case.error,
        "history": [
            {"status": entry.status.value, "at": entry.at.isoformat(), "note": entry.note}
            for entry in case.history
        ],
    }


def _case_rows(cases: list[Case], width: int) -> list[RenderableType]:
    """The table of the cases (verdict, branch, status, title, resource, IOCs, as `vtriage run` shows
    its own), then each case by its number: its id, type, severity, place, last update and ticket."""
    rows = [
        CaseRow(
            number=number,
            verdict=case.verdict.value,
            branch=case.branch.value if case.branch else None,
            status=case.status.value,
            title=case.alert.title or case.alert.type,
            resource=main_resource(
                ((resource.type.value, resource.id) for resource in case.alert.resources), case.alert.subjects
            ),
            iocs=len(case.iocs),
        )
        for number, case in enumerate(cases, start=1)
    ]
    shown_cases: list[RenderableType] = [case_table(rows, width), Text()]
    for number, case in enumerate(cases, start=1):
        ticket = f"ticket {case.ticket.provider} {case.ticket.id}" if case.ticket else "no ticket"
        repeats = f", {case.repeat_count} repeat(s) folded in" if case.repeat_count else ""
        about = Text("\n").join(
            shown(line)
            for line in (
                case.case_id,
                f"{case.alert.type}, severity {case.alert.severity.score:g} "
                f"{case.alert.severity.shown_label}, {case.status.value}",
                f"account {case.alert.account}, Region {case.alert.region}; "
                f"updated {case.updated_at.isoformat(timespec='seconds')}; {ticket}{repeats}",
            )
        )
        entry = Table.grid(padding=(0, 1))
        entry.add_column(no_wrap=True)
        entry.add_column(overflow="fold")
        entry.add_row(Text(f"{number}.", style="bold"), about)
        shown_cases.append(entry)
    return shown_cases


def list_cases(arguments: argparse.Namespace) -> int:
    """`vtriage cases`: 0 with the list (which may be empty), 1 on a usage or AWS error."""
    if not arguments.table:
        print("vtriage: name the cases table with --table or CASES_TABLE_NAME", file=sys.stderr)
        return EXIT_SETUP
    # Lambda and many tools set AWS_REGION, which boto3 alone does not read (it reads AWS_DEFAULT_REGION).
    session = boto3.session.Session(region_name=arguments.region or os.environ.get("AWS_REGION") or None)
    if session.region_name is None:
        print("vtriage: no AWS region: set AWS_REGION or pass --region", file=sys.stderr)
        return EXIT_SETUP
    accounts = {account for values in arguments.account or () for account in values}
    # Listing never writes, so the retention and clock the repository takes for writes play no part.
    repository = DynamoCaseRepository(session.client("dynamodb"), arguments.table, timedelta(days=1), utc_now)
    try:
        # The by-status index holds no account: with --account every case of the statuses is read, and
        # the limit counts the cases of those accounts.
        found = repository.list_cases(arguments.status, limit=None if accounts else arguments.limit)
    except (BotoCoreError, ClientError, VtriageError, ValidationError) as error:
        print(f"vtriage: cannot list the cases of {arguments.table}: {error}", file=sys.stderr)
        return EXIT_SETUP
    if accounts:
        found = [case for case in found if case.alert.account in accounts][: arguments.limit]
    if arguments.json:
        print(json.dumps({"table": arguments.table, "cases": [case_row(case) for case in found]}, indent=2))
        return EXIT_OK
    if not found:
        print(
            f"no cases in {arguments.table}"
            + (f" with status {', '.join(s.value for s in arguments.status)}" if arguments.status else "")
            + (f" of account {', '.join(sorted(accounts))}" if accounts else "")
        )
        return EXIT_OK
    shown_cases = _case_rows(found, terminal_width())
    if any(action.status is ActionStatus.DONE for case in found for action in case.actions):
        shown_cases.append(Text("vtriage rollback CASE_ID undoes what a case's actions changed, last first."))
    shown_cases.extend(
        [
            counts("verdicts", (case.verdict.value for case in found), VERDICTS),
            counts("branches", (case.branch.value if case.branch else None for case in found), BRANCHES),
            counts("statuses", (case.status.value for case in found), STATUSES),
            Text(f"{len(found)} case{'s' if len(found) != 1 else ''}"),
        ]
    )
    emit(shown_cases)
    return EXIT_OK


def declare_rollback(rollback: argparse.ArgumentParser) -> None:
    """Declare `vtriage rollback`'s arguments on its parser (the `vtriage` command names it); sets
    `handler`."""
    rollback.description = (
        "Reads the remediate function's settings from the environment, as the function does "
        "(CASES_TABLE_NAME, OWN_ACCOUNT_ID, QUARANTINE_GROUP_NAME, WAF_IP_SET_*, NACL_RULE_*, "
        "QUARANTINE_BUCKET, ...), with your ordinary AWS credentials. What cannot be undone (forensic "
        "snapshots) is said so; a change another open case relies on is kept until that case is rolled back "
        "too; a quarantined object is restored and its quarantined copy kept."
    )
    rollback.add_argument("case_id", metavar="CASE_ID")
    rollback.add_argument("--json", action="store_true", help="print the outcome as JSON")
    rollback.set_defaults(handler=roll_back)


def roll_back(arguments: argparse.Namespace) -> int:
    """`vtriage rollback CASE_ID`: 0 when everything reversible was undone, 2 when some could not be,
    1 on a usage or set-up error."""
    try:
        settings = RemediateSettings.from_environ()
        steps = remediator(settings)
        result = rollback_case(arguments.case_id, steps.cases, steps.actuators)
    except (ConfigurationError, CaseNotFoundError, BotoCoreError, ClientError) as error:
        print(f"vtriage: cannot roll back {arguments.case_id}: {error}", file=sys.stderr)
        return EXIT_SETUP
    if arguments.json:
        print(result.model_dump_json(indent=2))
    else:
        for action in result.actions:
            print(f"{action.type.value} {action.target}: {action.status.value}\n    {action.detail}")
        for released in result.released:
            print(f"also undone, kept until now for this case: {released}")
        if not result.actions:
            print(f"nothing to undo in {arguments.case_id}: no action of it changed anything")
    return EXIT_OK if result.complete else EXIT_REJECTED
