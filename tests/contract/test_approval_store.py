"""`ApprovalStore`: the in-memory store and the DynamoDB one on the template's guardrails table let an
approval be held by one request at a time, for a lease, and decided once."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.contract.conftest import IN_MEMORY, NOW, client, emptied
from vtriage.adapters.guardrails import DynamoApprovalStore
from vtriage.approval_links import ApprovalClaims, Approver, Decision
from vtriage.fakes import InMemoryApprovalStore
from vtriage.ports import CLAIM_LEASE, ApprovalStore

APPROVAL_ID = "0123456789abcdef0123456789abcdef"
CLAIMS = ApprovalClaims(
    approval_id=APPROVAL_ID,
    case_id="guardduty-" + "1" * 32,
    action_index=0,
    decision=Decision.APPROVE,
    expires_at=int((NOW + timedelta(hours=1)).timestamp()),
)
ALICE = Approver(source_ip="198.51.100.7", user_agent="Mozilla/5.0")
BOB = Approver(source_ip="203.0.113.9", user_agent="curl/8.5.0")


@pytest.fixture
def store(implementation: str, request: pytest.FixtureRequest) -> ApprovalStore:
    if implementation == IN_MEMORY:
        return InMemoryApprovalStore()
    aws = emptied(request.getfixturevalue("aws"), "GuardrailsTable")
    return DynamoApprovalStore(client(aws, "dynamodb"), aws.ref("GuardrailsTable"))


def test_a_pending_approval_is_claimed_by_one_request_only(store: ApprovalStore) -> None:
    # Given an approval waiting for a decision
    store.put_pending(CLAIMS, "task-token-1")
    assert store.is_pending(APPROVAL_ID, NOW)

    # When two requests claim it at once, one to approve and one to reject
    first = store.claim(APPROVAL_ID, Decision.APPROVE, ALICE, NOW)
    second = store.claim(APPROVAL_ID, Decision.REJECT, BOB, NOW)

    # Then the first holds it, with the waiting step's token, and the second gets nothing
    assert (first, second) == ("task-token-1", None)
    assert not store.is_pending(APPROVAL_ID, NOW)


def test_a_settled_approval_is_decided_for_good(store: ApprovalStore) -> None:
    # Given an approval claimed and settled
    store.put_pending(CLAIMS, "task-token-1")
    assert store.claim(APPROVAL_ID, Decision.APPROVE, ALICE, NOW) == "task-token-1"
    store.settle(APPROVAL_ID)

    # When it is claimed again, even once the lease has passed, or put pending again (a retried request)
    later = NOW + CLAIM_LEASE + timedelta(seconds=5)
    store.put_pending(CLAIMS, "task-token-2")

    # Then it no longer waits for anyone
    assert not store.is_pending(APPROVAL_ID, later)
    assert store.claim(APPROVAL_ID, Decision.REJECT, BOB, later) is None


def test_a_released_approval_waits_again(store: ApprovalStore) -> None:
    # Given an approval claimed, whose decision did not reach the waiting step
    store.put_pending(CLAIMS, "task-token-1")
    assert store.claim(APPROVAL_ID, Decision.APPROVE, ALICE, NOW) == "task-token-1"

    # When it is released
    store.release(APPROVAL_ID)

    # Then it waits again, and the next request can claim it
    assert store.is_pending(APPROVAL_ID, NOW)
    assert store.claim(APPROVAL_ID, Decision.REJECT, BOB, NOW) == "task-token-1"


def test_a_claim_whose_request_died_lapses_after_its_lease(store: ApprovalStore) -> None:
    # Given an approval claimed by a request that never settled nor released it
    store.put_pending(CLAIMS, "task-token-1")
    assert store.claim(APPROVAL_ID, Decision.APPROVE, ALICE, NOW) == "task-token-1"

    # When another request comes within the lease, then after it
    within = NOW + CLAIM_LEASE - timedelta(seconds=5)
    after = NOW + CLAIM_LEASE + timedelta(seconds=5)

    # Then it is refused within, and takes the approval after
    assert store.claim(APPROVAL_ID, Decision.REJECT, BOB, within) is None
    assert store.is_pending(APPROVAL_ID, after)
    assert store.claim(APPROVAL_ID, Decision.REJECT, BOB, after) == "task-token-1"


def test_settling_or_releasing_an_approval_nobody_holds_changes_nothing(store: ApprovalStore) -> None:
    # Given an approval waiting, and one never put
    store.put_pending(CLAIMS, "task-token-1")

    # When both are settled and released without a claim
    for approval_id in (APPROVAL_ID, "f" * 32):
        store.settle(approval_id)
        store.release(approval_id)

    # Then the first still waits, and the unknown one is not pending and cannot be claimed
    assert store.is_pending(APPROVAL_ID, NOW)
    assert not store.is_pending("f" * 32, NOW)
    assert store.claim("f" * 32, Decision.APPROVE, ALICE, NOW) is None
