"""The case lifecycle on moto: history, listing by status (`vtriage cases`), and repeats of a finding
folded into their case by the real enrich handler and state machine."""

from __future__ import annotations

import contextlib
import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.factories import make_alert, make_case
from tests.functional.conftest import event, wait_for_execution
from vtriage.adapters.dynamodb import DynamoCaseRepository, DynamoRepeatLedger
from vtriage.models import Case, CaseStatus, HistoryEntry, Repeat, Ticket, Verdict
from vtriage_cli.main import main as vtriage
from vtriage_local.alert_files import Delivery
from vtriage_local.runner import Pipeline
from vtriage_local.stack import LocalAws

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def _repository(aws: LocalAws) -> DynamoCaseRepository:
    return DynamoCaseRepository(
        aws.client("dynamodb"), aws.ref("CasesTable"), timedelta(days=90), lambda: NOW
    )


def _stored_case(aws: LocalAws, finding_id: str, status: CaseStatus, updated_at: datetime) -> Case:
    """A case moved to this status, written as the functions write cases."""
    case = make_case(make_alert(id=finding_id), created_at=NOW, updated_at=NOW)
    case.record(status, updated_at)
    assert _repository(aws).create(case)
    return case


def _cases_command(*arguments: str) -> tuple[int, str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        status = vtriage(["cases", *arguments])
    return status, stdout.getvalue(), stderr.getvalue()


def _listed(stdout: str, case: Case) -> tuple[str, str]:
    """The table's row of a case in `vtriage cases`' text, and the lines naming it below the table (its
    number, id, type, severity and status, place and update, ticket)."""
    lines = stdout.splitlines()
    [start] = [index for index, line in enumerate(lines) if case.case_id in line]
    number = lines[start].split(".")[0]
    [row] = [line for line in lines[:start] if line.split()[:1] == [number]]
    return row, "\n".join(lines[start : start + 4])


def test_cases_are_listed_by_status_newest_first_without_the_tables_other_records(
    local_aws: LocalAws,
) -> None:
    # Given two ticketed cases and a closed one, a rejected record and a repeat key in the cases table
    older = _stored_case(local_aws, "a" * 32, CaseStatus.TICKETED, NOW + timedelta(minutes=1))
    newer = _stored_case(local_aws, "b" * 32, CaseStatus.TICKETED, NOW + timedelta(minutes=2))
    closed = _stored_case(local_aws, "c" * 32, CaseStatus.CLOSED, NOW + timedelta(minutes=3))
    _repository(local_aws).record_failure("m-1", "body: not JSON", "{")
    DynamoRepeatLedger(local_aws.client("dynamodb"), local_aws.ref("CasesTable"), lambda: NOW).remember(
        "repeat#0123", closed.case_id, NOW + timedelta(hours=24)
    )

    # When `vtriage cases --status ticketed --json` runs against the stack's table (CASES_TABLE_NAME)
    status, stdout, _ = _cases_command("--status", "ticketed", "--json")

    # Then it lists the two ticketed cases, the most recently updated first, each with its history
    assert status == 0
    listed = json.loads(stdout)["cases"]
    assert [case["case_id"] for case in listed] == [newer.case_id, older.case_id]
    assert all(case["status"] == "TICKETED" for case in listed)
    assert listed[0]["history"][-1]["status"] == "TICKETED"

    # When it runs with no status, Then every case is listed, and nothing else the table holds
    status, stdout, _ = _cases_command("--json")
    assert status == 0
    assert [case["case_id"] for case in json.loads(stdout)["cases"]] == [
        closed.case_id,
        newer.case_id,
        older.case_id,
    ]


def test_cases_prints_a_readable_table_for_a_named_table(local_aws: LocalAws) -> None:
    # Given a closed case
    closed = _stored_case(local_aws, "d" * 32, CaseStatus.CLOSED, NOW)

    # When the table is named on the command line
    status, stdout, _ = _cases_command("--table", local_aws.ref("CasesTable"), "--status", "CLOSED")

    # Then its row in the table shows its verdict, status, title and instance, the lines below the table
    # its id, type and status, and the counts follow
    assert status == 0
    row, below = _listed(stdout, closed)
    assert row.split()[1:3] == [closed.verdict.value, "-"]
    assert "CLOSED" in row
    assert closed.alert.title[:12] in row
    assert "i-0abc1234def567890" in row
    assert closed.alert.type in below
    assert "CLOSED" in below
    assert "statuses: 1 CLOSED" in stdout
    assert stdout.rstrip().endswith("1 case")
    # and every line fits an 80-column terminal
    assert max(map(len, stdout.splitlines())) <= 80


def test_cases_without_a_table_or_with_an_unknown_status_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given no CASES_TABLE_NAME, When cases runs without --table, Then it says how to name the table
    monkeypatch.delenv("CASES_TABLE_NAME", raising=False)
    status, _, stderr = _cases_command()
    assert status == 1
    assert "--table" in stderr

    # When the status is not one a case can have, Then it is a usage error naming the valid ones
    status, _, stderr = _cases_command("--table", "cases", "--status", "DONE")
    assert status == 1
    assert "TICKETED" in stderr


MEMBER, OTHER_MEMBER = "111122223333", "444455556666"


def test_cases_lists_only_the_cases_of_the_accounts_named(local_aws: LocalAws) -> None:
    # Given, in one cases table, ticketed cases of findings from the deployment's account and from two
    # member accounts (the member's two, the newer last), and a closed case of the member account
    own = make_case(make_alert(id="e" * 32), status=CaseStatus.TICKETED, updated_at=NOW)
    member_older = make_case(
        make_alert(id="f" * 32, account=MEMBER, region="eu-west-1"),
        status=CaseStatus.TICKETED,
        updated_at=NOW + timedelta(minutes=1),
    )
    other = make_case(
        make_alert(id="1" * 32, account=OTHER_MEMBER),
        status=CaseStatus.TICKETED,
        updated_at=NOW + timedelta(minutes=2),
    )
    member_newer = make_case(
        make_alert(id="2" * 32, account=MEMBER, region="eu-west-1"),
        status=CaseStatus.TICKETED,
        updated_at=NOW + timedelta(minutes=3),
    )
    member_closed = make_case(
        make_alert(id="3" * 32, account=MEMBER), status=CaseStatus.CLOSED, updated_at=NOW
    )
    for case in (own, member_older, other, member_newer, member_closed):
        assert _repository(local_aws).create(case)

    # When `vtriage cases --account <member> --status ticketed --json` runs
    status, stdout, _ = _cases_command("--account", MEMBER, "--status", "ticketed", "--json")

    # Then it lists the member's ticketed cases alone, newest first, each naming its account and Region
    assert status == 0
    listed = json.loads(stdout)["cases"]
    assert [case["case_id"] for case in listed] == [member_newer.case_id, member_older.case_id]
    assert {(case["account"], case["region"]) for case in listed} == {(MEMBER, "eu-west-1")}

    # When two accounts are named, once comma-separated and once repeated, Then both accounts' cases are
    # listed the same way, and the deployment's own is not
    for arguments in (
        ("--account", f"{MEMBER},{OTHER_MEMBER}"),
        ("--account", MEMBER, "--account", OTHER_MEMBER),
    ):
        status, stdout, _ = _cases_command(*arguments, "--status", "TICKETED", "--json")
        assert status == 0
        assert [case["case_id"] for case in json.loads(stdout)["cases"]] == [
            member_newer.case_id,
            other.case_id,
            member_older.case_id,
        ]

    # When a limit is given with the account, Then it counts that account's cases, not the table's
    status, stdout, _ = _cases_command("--account", MEMBER, "--limit", "2", "--json")
    assert status == 0
    assert [case["case_id"] for case in json.loads(stdout)["cases"]] == [
        member_newer.case_id,
        member_older.case_id,
    ]

    # When the table is printed for the other member, Then its one case shows its account, and the count
    status, stdout, _ = _cases_command("--account", OTHER_MEMBER)
    assert status == 0
    _, below = _listed(stdout, other)
    assert OTHER_MEMBER in below
    assert stdout.rstrip().endswith("1 case")

    # When an account has no case, Then the listing says so, naming the account
    status, stdout, _ = _cases_command("--account", "999999999999")
    assert status == 0
    assert "no cases" in stdout
    assert "999999999999" in stdout


def test_cases_with_an_account_id_that_is_not_one_is_a_usage_error() -> None:
    # When the account is not 12 digits, Then it is a usage error saying what an account id is
    status, _, stderr = _cases_command("--table", "cases", "--account", f"{MEMBER},12345")
    assert status == 1
    assert "'12345'" in stderr
    assert "12 digits" in stderr


def test_the_repeat_ledger_finds_the_case_within_its_window_and_folds_each_repeat_once(
    local_aws: LocalAws,
) -> None:
    # Given a ticketed case and its repeat key, remembered for 24 hours
    clock = [NOW]
    ledger = DynamoRepeatLedger(local_aws.client("dynamodb"), local_aws.ref("CasesTable"), lambda: clock[0])
    case = _stored_case(local_aws, "e" * 32, CaseStatus.TICKETED, NOW)
    ledger.remember(case.alert.repeat_key, case.case_id, NOW + timedelta(hours=24))

    # When a repeat is folded into it, then folded again (a second delivery)
    repeat = Repeat(
        alert_id="f" * 32,
        version="v2",
        case_id="guardduty-repeat",
        at=NOW,
        verdict=Verdict.SUSPICIOUS,
        severity=8,
    )
    entry = HistoryEntry(status=CaseStatus.TICKETED, at=NOW + timedelta(hours=1), note=repeat.note)
    first, second = ledger.fold(case.case_id, repeat, entry), ledger.fold(case.case_id, repeat, entry)

    # Then it is found within the window, counted once, with its line in the history
    assert ledger.earlier_case(case.alert.repeat_key) == case.case_id
    assert (first, second) == (True, False)
    stored = _repository(local_aws).get(case.case_id)
    assert stored is not None
    assert (stored.repeat_count, stored.repeat_case_ids, stored.last_repeat) == (
        1,
        ["guardduty-repeat"],
        repeat,
    )
    assert stored.history[-1] == entry
    assert stored.updated_at == entry.at
    # and once the window has passed it is not found any more
    clock[0] = NOW + timedelta(hours=24, seconds=1)
    assert ledger.earlier_case(case.alert.repeat_key) is None


def test_a_fold_keeps_what_another_step_wrote_on_the_case_meanwhile(local_aws: LocalAws) -> None:
    # Given a case whose ticket was stored by the ticket function after the enrich function read it
    repository = _repository(local_aws)
    case = _stored_case(local_aws, "9" * 32, CaseStatus.ENRICHED, NOW)
    ticketed = case.model_copy(deep=True)
    ticketed.status = CaseStatus.TICKETED
    ticketed.ticket = Ticket(provider="sns", id="T-1", created_at=NOW)
    repository.save(ticketed)

    # When a repeat is folded into it
    ledger = DynamoRepeatLedger(local_aws.client("dynamodb"), local_aws.ref("CasesTable"), lambda: NOW)
    repeat = Repeat(
        alert_id="x", version="2", case_id="guardduty-x", at=NOW, verdict=Verdict.UNKNOWN, severity=5
    )
    assert ledger.fold(
        case.case_id, repeat, HistoryEntry(status=CaseStatus.ENRICHED, at=NOW, note=repeat.note)
    )

    # Then the ticket is still there: the fold is an update, not a rewrite of the case
    stored = repository.get(case.case_id)
    assert stored is not None
    assert stored.ticket is not None
    assert (stored.ticket.id, stored.status, stored.repeat_count) == ("T-1", CaseStatus.TICKETED, 1)


def _triage(pipeline: Pipeline, aws: LocalAws, body: str, source_id: str) -> None:
    """Queue one record, let the enrich handler take it, and wait for every execution to finish."""
    pipeline.enqueue(Delivery(source_id=source_id, body=body))
    _, failures = pipeline.drain()
    assert failures == []
    sfn = aws.client("stepfunctions")
    for execution in sfn.list_executions(stateMachineArn=aws.ref("TriageStateMachine"))["executions"]:
        wait_for_execution(sfn, execution["executionArn"])


def _all_cases(aws: LocalAws) -> list[Case]:
    return _repository(aws).list_cases()


def test_a_repeat_of_a_ticketed_finding_updates_its_case_and_keeps_its_one_ticket(
    local_aws: LocalAws,
) -> None:
    # Given a suspicious-DNS finding that went through the pipeline to a ticket
    pipeline = Pipeline(local_aws)
    sample = json.loads(event("synthetic-guardduty-ec2-suspicious-dns.json").read_text())
    _triage(pipeline, local_aws, json.dumps(sample), "first")
    [case] = _all_cases(local_aws)
    assert case.status is CaseStatus.TICKETED
    assert case.ticket is not None

    # When GuardDuty reports the same activity on the same instance under another finding id
    sample["detail"]["id"] = "f" * 32
    _triage(pipeline, local_aws, json.dumps(sample), "repeat")

    # Then there is still one case, with its one ticket, counting the repeat in its history
    [after] = _all_cases(local_aws)
    assert after.case_id == case.case_id
    assert after.ticket == case.ticket
    assert after.repeat_count == 1
    statuses = [entry.status for entry in after.history]
    assert statuses[:3] == [CaseStatus.NEW, CaseStatus.ENRICHED, CaseStatus.TICKETED]
    assert after.history[-1].note.startswith("repeat of " + "f" * 32)
    # and the execution started for the repeat took the case to its ticket and succeeded
    executions = local_aws.client("stepfunctions").list_executions(
        stateMachineArn=local_aws.ref("TriageStateMachine")
    )["executions"]
    assert len(executions) == 2
    assert {execution["status"] for execution in executions} == {"SUCCEEDED"}


def test_a_closed_case_keeps_its_history_and_is_found_by_status(local_aws: LocalAws) -> None:
    # Given an informational Security Hub control finding with no IOC, through the pipeline
    pipeline = Pipeline(local_aws)
    _triage(
        pipeline, local_aws, event("securityhub-afsbp-ec2.7-ebs-default-encryption.json").read_text(), "afsbp"
    )

    # When the closed cases are listed
    status, stdout, _ = _cases_command("--status", "CLOSED", "--json")

    # Then the case is there, and its history starts with its arrival and its enrichment
    assert status == 0
    [listed] = json.loads(stdout)["cases"]
    assert (listed["verdict"], listed["severity_label"], listed["branch"]) == (
        "unknown",
        "informational",
        "close",
    )
    history: list[dict[str, Any]] = listed["history"]
    assert [entry["status"] for entry in history][:2] == ["NEW", "ENRICHED"]
    # (the real sample is of another account than the local one, which the enrichment notes)
    note = history[1]["note"]
    assert note.startswith("verdict unknown; 0 actions planned; no automatic action: the finding names")
    assert note.endswith("; route close")
