"""`ApprovalRequests`: the in-memory requests and the Lambda adapter, invoking the approval function's
real handler on moto (the template's function, cases table, guardrails table and approval topic), answer
a waiting action's approve and reject links: on the approval URL, both deciding one approval whose id
the task token fixes, valid for the timeout asked; and the approvers are told.

The approval function answers links to its caller only when deployed with ApprovalLinksInTickets=true
(`APPROVAL_LINKS_IN_TICKETS`, which it reads at each invocation): the moto half sets it, as that
deployment does, since only such a deployment's ticket function asks it for links.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from tests.contract.conftest import IN_MEMORY, client
from tests.factories import make_alert, make_case
from vtriage.adapters.approval_requests import LambdaApprovalRequests
from vtriage.adapters.dynamodb import DynamoCaseRepository
from vtriage.approval_links import ApprovalLinks
from vtriage.clock import utc_now
from vtriage.fakes import FakeApprovalRequests
from vtriage.models import Action, ActionStatus, ActionType
from vtriage.ports import ApprovalRequests
from vtriage_local.stack import LocalAws

APPROVAL_URL = "https://abc123.lambda-url.us-east-1.on.aws/"
TIMEOUT_SECONDS = 3600


@dataclass(frozen=True)
class Requests:
    """The requests under test; a way to have a case whose one action waits for a person (its id); and
    what the approvers were told, each text naming its case."""

    approvals: ApprovalRequests
    waiting_case: Callable[[], str]
    told: Callable[[], list[str]]


@pytest.fixture
def requests_(implementation: str, request: pytest.FixtureRequest) -> Requests:
    if implementation == IN_MEMORY:
        fake = FakeApprovalRequests()
        return Requests(
            fake,
            lambda: f"guardduty-{uuid.uuid4().hex}",
            lambda: [f"case {asked.case_id}, action {asked.index}" for asked in fake.requested],
        )
    aws: LocalAws = request.getfixturevalue("aws")
    published: Callable[[str], list[dict[str, Any]]] = request.getfixturevalue("published")
    monkeypatch: pytest.MonkeyPatch = request.getfixturevalue("monkeypatch")
    monkeypatch.setenv("APPROVAL_LINKS_IN_TICKETS", "true")
    cases = DynamoCaseRepository(client(aws, "dynamodb"), aws.ref("CasesTable"), timedelta(days=90), utc_now)

    def waiting_case() -> str:
        isolation = Action(
            type=ActionType.ISOLATE_INSTANCE,
            target="i-0abc1234def567890",
            status=ActionStatus.PENDING_APPROVAL,
        )
        case = make_case(make_alert(id=uuid.uuid4().hex), actions=[isolation])
        assert cases.create(case)
        return case.case_id

    return Requests(
        # The ticket function names it by APPROVAL_FUNCTION_NAME, set only with ApprovalLinksInTickets=true.
        LambdaApprovalRequests(client(aws, "lambda"), aws.ref("ApprovalFunction")),
        waiting_case,
        lambda: [str(envelope["Message"]) for envelope in published("ApprovalTopic")],
    )


def _request(requests_: Requests, case_id: str, task_token: str) -> ApprovalLinks:
    return requests_.approvals.request(
        case_id=case_id,
        index=0,
        task_token=task_token,
        approval_url=APPROVAL_URL,
        timeout_seconds=TIMEOUT_SECONDS,
        ticket=None,
    )


def test_a_waiting_action_gets_two_links_deciding_one_approval_until_its_timeout(requests_: Requests) -> None:
    # Given a case whose action waits for a person, on the waiting step's task token
    case_id = requests_.waiting_case()
    asked_at = utc_now()

    # When its approval is requested
    links = _request(requests_, case_id, f"task-token-{uuid.uuid4().hex}")

    # Then an approve and a reject link, on the approval URL, decide the same approval
    assert links.approve_url.startswith(APPROVAL_URL + "?")
    assert links.reject_url.startswith(APPROVAL_URL + "?")
    assert links.approve_url != links.reject_url
    assert links.approval_id
    # And they are valid for the timeout asked
    assert links.expires_at is not None
    assert asked_at + timedelta(seconds=TIMEOUT_SECONDS) <= links.expires_at
    assert links.expires_at <= utc_now() + timedelta(seconds=TIMEOUT_SECONDS)
    # And the approvers were told, of this case
    [told] = requests_.told()
    assert case_id in told


def test_the_task_token_fixes_the_approval_a_retry_asks_for_again(requests_: Requests) -> None:
    # Given a case whose action waits for a person
    case_id = requests_.waiting_case()
    token = f"task-token-{uuid.uuid4().hex}"

    # When its approval is requested, then again with the same task token (a retry), and with another
    first, retried = _request(requests_, case_id, token), _request(requests_, case_id, token)
    other = _request(requests_, case_id, f"task-token-{uuid.uuid4().hex}")

    # Then the retry's links decide the same approval, the other token's another one
    assert retried.approval_id == first.approval_id
    assert other.approval_id != first.approval_id
