"""`CaseRepository` and `SearchableCases`: the in-memory repository and the DynamoDB one on the template's
cases table keep, read, replace and list cases alike, and keep a refused record once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import pytest

from tests.contract.conftest import IN_MEMORY, RETENTION, Clock, client, emptied
from tests.factories import make_alert, make_case
from vtriage.adapters.dynamodb import DynamoCaseRepository, failure_key, from_item
from vtriage.fakes import InMemoryCaseRepository
from vtriage.models import Case, CaseStatus, HistoryEntry, Verdict
from vtriage.ports import SearchableCases
from vtriage_local.stack import LocalAws


@dataclass(frozen=True)
class Refusal:
    """What a repository kept of a refused record, as an operator reads it back."""

    reason: str
    body: str
    alert_id: str | None


@dataclass(frozen=True)
class Repository:
    """The repository under test, and how an operator reads back a refusal it kept."""

    cases: SearchableCases
    refusal: Callable[[str, str], Refusal | None]


@pytest.fixture
def repository(implementation: str, request: pytest.FixtureRequest, clock: Clock) -> Repository:
    if implementation == IN_MEMORY:
        fake = InMemoryCaseRepository()

        def kept(message_id: str, where: str) -> Refusal | None:
            found = fake.failures.get((message_id, where))
            return None if found is None else Refusal(found.reason, found.body, found.alert_id)

        return Repository(fake, kept)
    aws = emptied(request.getfixturevalue("aws"), "CasesTable")
    dynamodb = client(aws, "dynamodb")
    dynamo = DynamoCaseRepository(dynamodb, aws.ref("CasesTable"), RETENTION, clock)

    def stored(message_id: str, where: str) -> Refusal | None:
        # As an operator reads a refusal back (and `vtriage run`'s accounting): the item at its key
        response = dynamodb.get_item(
            TableName=aws.ref("CasesTable"),
            Key={"case_id": {"S": failure_key(message_id, where)}},
            ConsistentRead=True,
        )
        if "Item" not in response:
            return None
        found = from_item(response["Item"])
        return Refusal(found["reason"], found["body"], found.get("alert_id"))

    return Repository(dynamo, stored)


def _case(number: int = 1, status: CaseStatus = CaseStatus.NEW, minutes: int = 0) -> Case:
    """A case as the enrich function makes one: its first step on its history."""
    alert = make_alert(id=f"{number:032x}")
    case = make_case(alert)
    case.record(status, alert.updated_at + timedelta(minutes=minutes), "the alert came in")
    return case


def test_a_case_is_created_once_and_reads_back_as_created(repository: Repository) -> None:
    # Given a new case
    cases = repository.cases
    case = _case()

    # When it is created, then created again with another verdict (a repeat delivery)
    first = cases.create(case)
    second = cases.create(case.model_copy(update={"verdict": Verdict.MALICIOUS}))

    # Then only the first creates it, and it reads back as created
    assert (first, second) == (True, False)
    assert cases.get(case.case_id) == case


def test_a_case_never_created_reads_as_none(repository: Repository) -> None:
    # Given a repository holding one case, When another is read, Then there is none
    repository.cases.create(_case(1))
    assert repository.cases.get(_case(2).case_id) is None


def test_a_save_replaces_the_case_and_its_history_keeps_every_status(repository: Repository) -> None:
    # Given a stored case
    cases = repository.cases
    case = _case()
    cases.create(case)

    # When a step reads it, records a ticket on it and saves it, then another does the same to close it
    ticketed = cases.get(case.case_id)
    assert ticketed is not None
    ticketed.record(CaseStatus.TICKETED, case.updated_at + timedelta(minutes=1), "ticket FAKE-1 opened")
    cases.save(ticketed)
    closed = cases.get(case.case_id)
    assert closed is not None
    closed.record(CaseStatus.CLOSED, case.updated_at + timedelta(minutes=2), "closed")
    cases.save(closed)

    # Then it reads back as saved last, its history holding every step in order
    assert cases.get(case.case_id) == closed
    assert [entry.status for entry in closed.history] == [
        CaseStatus.NEW,
        CaseStatus.TICKETED,
        CaseStatus.CLOSED,
    ]


def test_a_save_of_a_copy_read_earlier_keeps_what_another_step_appended_meanwhile(
    repository: Repository,
) -> None:
    # Given a stored case that two steps read at once
    cases = repository.cases
    case = _case()
    cases.create(case)
    early, late = cases.get(case.case_id), cases.get(case.case_id)
    assert early is not None
    assert late is not None

    # When the first records a repeat and a variant and saves, then the second records its step and saves
    noted_at = case.updated_at + timedelta(minutes=1)
    early.history.append(HistoryEntry(status=CaseStatus.NEW, at=noted_at, note="repeat of the finding"))
    early.repeat_case_ids.append("guardduty-" + "e" * 32)
    early.repeat_count = 1
    early.variant_case_ids.append("guardduty-" + "f" * 32)
    cases.save(early)
    late.record(CaseStatus.ENRICHED, case.updated_at + timedelta(minutes=2), "enriched")
    cases.save(late)

    # Then the case keeps both: the second step's status, and the first's repeat, variant and history line
    stored = cases.get(case.case_id)
    assert stored is not None
    assert stored.status is CaseStatus.ENRICHED
    assert [entry.note for entry in stored.history] == [
        "the alert came in",
        "repeat of the finding",
        "enriched",
    ]
    assert (stored.repeat_count, stored.repeat_case_ids) == (1, ["guardduty-" + "e" * 32])
    assert stored.variant_case_ids == ["guardduty-" + "f" * 32]


def test_a_case_waiting_for_its_enrichment_is_replaced_only_while_it_waits(repository: Repository) -> None:
    # Given a case waiting for its enrichment, that two deliveries of its finding read at once
    cases = repository.cases
    case = _case(status=CaseStatus.PENDING_ENRICHMENT)
    cases.create(case)
    first, second = cases.get(case.case_id), cases.get(case.case_id)
    assert first is not None
    assert second is not None

    # When the first triages it and replaces it, then the second tries to replace it with its own triage
    first.record(CaseStatus.ENRICHED, case.updated_at + timedelta(minutes=1), "enriched by the first")
    second.record(CaseStatus.ENRICHED, case.updated_at + timedelta(minutes=2), "enriched by the second")
    replaced, lost = cases.replace_pending(first), cases.replace_pending(second)

    # Then only the first replaces it, and the second learns it lost: the first's triage stands
    assert (replaced, lost) == (True, False)
    assert cases.get(case.case_id) == first
    # And a case that was never stored is not created by it
    assert cases.replace_pending(_case(2, CaseStatus.ENRICHED)) is False
    assert cases.get(_case(2).case_id) is None


def test_a_case_waiting_again_is_replaced_keeping_what_was_appended_meanwhile(repository: Repository) -> None:
    # Given a case waiting for its enrichment, read by a delivery, then put off again by another
    cases = repository.cases
    case = _case(status=CaseStatus.PENDING_ENRICHMENT)
    cases.create(case)
    reader, other = cases.get(case.case_id), cases.get(case.case_id)
    assert reader is not None
    assert other is not None
    other.history.append(
        HistoryEntry(
            status=CaseStatus.PENDING_ENRICHMENT,
            at=case.updated_at + timedelta(minutes=1),
            note="put off again",
        )
    )
    assert cases.replace_pending(other)

    # When the reader triages it and replaces it
    reader.record(CaseStatus.ENRICHED, case.updated_at + timedelta(minutes=2), "enriched")
    replaced = cases.replace_pending(reader)

    # Then it is replaced (it still waited), its history keeping the other's line in its place
    assert replaced is True
    stored = cases.get(case.case_id)
    assert stored is not None
    assert stored.status is CaseStatus.ENRICHED
    assert [entry.note for entry in stored.history] == ["the alert came in", "put off again", "enriched"]


def test_a_refused_record_is_kept_once_per_place_with_its_reason_and_body(repository: Repository) -> None:
    # Given a repository
    cases = repository.cases

    # When a record is refused whole twice (a redelivery), and one finding of another refused alone
    first = cases.record_failure("message-1", "not JSON", "{oops")
    again = cases.record_failure("message-1", "not JSON", "{oops")
    alone = cases.record_failure(
        "message-2", "no resource", '{"findings": [{}]}', where="detail.findings[0]", alert_id="finding-0"
    )

    # Then each is kept once, with its reason, body and the refused finding's id
    assert (first, again, alone) == (True, False, True)
    assert repository.refusal("message-1", "") == Refusal("not JSON", "{oops", None)
    assert repository.refusal("message-2", "detail.findings[0]") == Refusal(
        "no resource", '{"findings": [{}]}', "finding-0"
    )
    assert repository.refusal("message-2", "") is None


def test_cases_are_listed_by_status_most_recently_updated_first(repository: Repository) -> None:
    # Given four cases, updated one minute apart, in three statuses
    cases = repository.cases
    statuses = [CaseStatus.TICKETED, CaseStatus.CLOSED, CaseStatus.TICKETED, CaseStatus.FAILED]
    for number, status in enumerate(statuses, start=1):
        assert cases.create(_case(number, status, minutes=number))

    # When they are listed by status, with and without a limit
    ticketed = cases.list_cases([CaseStatus.TICKETED])
    open_or_failed = cases.list_cases([CaseStatus.TICKETED, CaseStatus.FAILED], limit=2)
    every = cases.list_cases()

    # Then each list holds the cases in those statuses, the latest updated first
    assert [case.case_id for case in ticketed] == [_case(3).case_id, _case(1).case_id]
    assert [case.case_id for case in open_or_failed] == [_case(4).case_id, _case(3).case_id]
    assert [case.case_id for case in every] == [_case(number).case_id for number in (4, 3, 2, 1)]


def _counting_reads(dynamodb: object) -> list[str]:
    """The case ids the client reads with GetItem, counted as the requests go out."""
    read: list[str] = []

    def count(params: dict[str, object], **_: object) -> None:
        read.append(str(params["Key"]))

    dynamodb.meta.events.register("before-parameter-build.dynamodb.GetItem", count)  # type: ignore[attr-defined]
    return read


@pytest.mark.functional
def test_a_task_that_loads_a_case_and_saves_it_reads_it_once(aws: LocalAws, clock: Clock) -> None:
    # Given a stored case, and a task's repository (one Lambda container)
    emptied(aws, "CasesTable")
    dynamodb = client(aws, "dynamodb")
    cases = DynamoCaseRepository(dynamodb, aws.ref("CasesTable"), RETENTION, clock)
    case = _case()
    cases.create(case)
    reads = _counting_reads(dynamodb)

    # When the task loads it, records its step and saves it, twice (a step saves before and after acting)
    loaded = cases.get(case.case_id)
    assert loaded is not None
    loaded.record(CaseStatus.ENRICHED, case.updated_at + timedelta(minutes=1), "enriched")
    cases.save(loaded)
    loaded.record(CaseStatus.TICKETED, case.updated_at + timedelta(minutes=2), "ticketed")
    cases.save(loaded)

    # Then the table was read once, by the load: each save merged with what the task last read or wrote
    assert len(reads) == 1
    stored = cases.get(case.case_id)
    assert stored is not None
    assert [entry.note for entry in stored.history] == ["the alert came in", "enriched", "ticketed"]


@pytest.mark.functional
def test_a_save_after_another_containers_write_reads_again_and_keeps_both(
    aws: LocalAws, clock: Clock
) -> None:
    # Given a stored case loaded by two tasks in two containers (two repositories on the same table)
    emptied(aws, "CasesTable")
    first = DynamoCaseRepository(client(aws, "dynamodb"), aws.ref("CasesTable"), RETENTION, clock)
    second_client = client(aws, "dynamodb")
    second = DynamoCaseRepository(second_client, aws.ref("CasesTable"), RETENTION, clock)
    case = _case()
    first.create(case)
    early, late = first.get(case.case_id), second.get(case.case_id)
    assert early is not None
    assert late is not None
    reads = _counting_reads(second_client)

    # When the first folds a repeat in and saves, then the second records its step and saves
    early.history.append(
        HistoryEntry(status=CaseStatus.NEW, at=case.updated_at, note="repeat of the finding")
    )
    early.repeat_case_ids.append("guardduty-" + "e" * 32)
    early.repeat_count = 1
    first.save(early)
    late.record(CaseStatus.ENRICHED, case.updated_at + timedelta(minutes=2), "enriched")
    second.save(late)

    # Then the second's save found the case changed, read it again, and kept both
    assert len(reads) == 1
    stored = second.get(case.case_id)
    assert stored is not None
    assert stored.status is CaseStatus.ENRICHED
    assert stored.repeat_case_ids == ["guardduty-" + "e" * 32]
    assert [entry.note for entry in stored.history] == [
        "the alert came in",
        "repeat of the finding",
        "enriched",
    ]
