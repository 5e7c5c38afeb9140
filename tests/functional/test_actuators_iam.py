"""IamAccessKeyDisabler against moto's IAM: the key's status and the revoke-sessions policy after
disabling and rollback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from tests.functional.conftest import use_dummy_aws_credentials
from vtriage.adapters.iam import REVOKE_POLICY_NAME, IamAccessKeyDisabler
from vtriage.errors import TransientError
from vtriage.models import Action, ActionStatus, ActionType

pytestmark = pytest.mark.functional

REGION = "us-east-1"
PROTECTED_TAG = "vtriage:protected"
CASE_ID = "guardduty-0123456789abcdef0123456789abcdef"
NOW = datetime(2024, 5, 1, 10, 0, 30, tzinfo=UTC)


@pytest.fixture
def iam(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """An IAM client on moto, with dummy credentials so that nothing can reach a real account."""
    use_dummy_aws_credentials(monkeypatch, REGION)
    with mock_aws():
        yield boto3.client("iam", region_name=REGION)


def create_user(iam: Any, name: str = "ci-deployer", tags: dict[str, str] | None = None) -> str:
    """A user with one active access key; returns the key id."""
    iam.create_user(UserName=name, Tags=[{"Key": k, "Value": v} for k, v in (tags or {}).items()])
    return str(iam.create_access_key(UserName=name)["AccessKey"]["AccessKeyId"])


def key_status(iam: Any, key_id: str, user: str = "ci-deployer") -> str:
    [key] = [
        k for k in iam.list_access_keys(UserName=user)["AccessKeyMetadata"] if k["AccessKeyId"] == key_id
    ]
    return str(key["Status"])


def revoke_policy(iam: Any, user: str = "ci-deployer") -> dict[str, Any] | None:
    """The user's revoke-sessions inline policy, or None."""
    if REVOKE_POLICY_NAME not in iam.list_user_policies(UserName=user)["PolicyNames"]:
        return None
    return dict(iam.get_user_policy(UserName=user, PolicyName=REVOKE_POLICY_NAME)["PolicyDocument"])


def disabler(iam: Any) -> IamAccessKeyDisabler:
    return IamAccessKeyDisabler(iam, PROTECTED_TAG, now=lambda: NOW)


def disable(key_id: str, user: str = "ci-deployer", case_id: str = CASE_ID) -> Action:
    return Action(
        type=ActionType.DISABLE_ACCESS_KEY, target=key_id, parameters={"user_name": user, "case_id": case_id}
    )


def test_the_key_is_inactive_and_older_sessions_denied_and_rollback_restores_both(iam: Any) -> None:
    # Given a user with an active key
    key_id = create_user(iam)

    # When the key is disabled for real
    done = disabler(iam).run(disable(key_id), dry_run=False)

    # Then the key is inactive and an inline policy denies everything to sessions issued before now
    assert key_status(iam, key_id) == "Inactive"
    policy = revoke_policy(iam)
    assert policy is not None
    [statement] = policy["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Action"] == "*"
    assert statement["Resource"] == "*"
    assert statement["Condition"] == {"DateLessThan": {"aws:TokenIssueTime": "2024-05-01T10:00:30Z"}}
    assert done.status is ActionStatus.DONE
    assert done.before == {"user_name": "ci-deployer", "key_status": "Active", "revoke_policy": None}

    # And when it is rolled back, the key is active again and the policy gone
    undone = disabler(iam).rollback(done)
    assert key_status(iam, key_id) == "Active"
    assert revoke_policy(iam) is None
    assert undone.status is ActionStatus.ROLLED_BACK

    # And rolling back again changes nothing and says so
    again = disabler(iam).rollback(done)
    assert again.detail.startswith("already as before")
    assert key_status(iam, key_id) == "Active"


def test_dry_run_changes_nothing_and_says_what_would_change(iam: Any) -> None:
    # Given a user with an active key
    key_id = create_user(iam)

    # When the key is disabled in dry run
    action = disabler(iam).run(disable(key_id), dry_run=True)

    # Then the key is still active, there is no policy, and the detail says both would change
    assert key_status(iam, key_id) == "Active"
    assert revoke_policy(iam) is None
    assert action.status is ActionStatus.DRY_RUN
    assert f"would set access key {key_id} of ci-deployer Inactive (was Active)" in action.detail
    assert "sessions issued before 2024-05-01T10:00:30Z" in action.detail


def test_disabling_twice_changes_nothing_more(iam: Any) -> None:
    # Given a key disabled once
    key_id = create_user(iam)
    disabler(iam).run(disable(key_id), dry_run=False)
    policy = revoke_policy(iam)

    # When it is disabled again, later
    later = IamAccessKeyDisabler(iam, PROTECTED_TAG, now=lambda: datetime(2024, 5, 1, 11, 0, tzinfo=UTC))
    again = later.run(disable(key_id), dry_run=False)

    # Then the policy keeps its cut-off, and the action says it was already done
    assert revoke_policy(iam) == policy
    assert again.status is ActionStatus.DONE
    assert again.detail.startswith("already disabled")


def test_an_earlier_cases_policy_is_renewed_and_put_back_on_rollback(iam: Any) -> None:
    # Given a user whose sessions an earlier case revoked, and a new key since
    key_id = create_user(iam)
    first = disabler(iam).run(disable(key_id, case_id="guardduty-earlier"), dry_run=False)
    earlier_policy = revoke_policy(iam)
    second_key = str(iam.create_access_key(UserName="ci-deployer")["AccessKey"]["AccessKeyId"])
    later = IamAccessKeyDisabler(iam, PROTECTED_TAG, now=lambda: datetime(2024, 6, 1, tzinfo=UTC))

    # When this case disables the new key
    done = later.run(disable(second_key), dry_run=False)

    # Then the cut-off moved to now, replacing the earlier one
    assert "2024-06-01T00:00:00Z" in json.dumps(revoke_policy(iam))
    assert "replacing the one denying sessions before 2024-05-01T10:00:30Z" in done.detail
    # And rolling this case back puts back the earlier case's policy and reactivates only the new key
    later.rollback(done)
    assert revoke_policy(iam) == earlier_policy
    assert key_status(iam, second_key) == "Active"
    assert key_status(iam, key_id) == "Inactive"
    assert first.status is ActionStatus.DONE


def test_a_key_inactive_before_vtriage_stays_inactive_after_rollback(iam: Any) -> None:
    # Given a key someone already deactivated
    key_id = create_user(iam)
    iam.update_access_key(UserName="ci-deployer", AccessKeyId=key_id, Status="Inactive")

    # When vtriage disables it and is rolled back
    done = disabler(iam).run(disable(key_id), dry_run=False)
    disabler(iam).rollback(done)

    # Then the key is still inactive
    assert key_status(iam, key_id) == "Inactive"
    assert revoke_policy(iam) is None


def test_a_protected_user_is_skipped(iam: Any) -> None:
    # Given a break-glass user carrying the protected tag
    key_id = create_user(iam, tags={PROTECTED_TAG: "break-glass"})

    # When its key is disabled
    action = disabler(iam).run(disable(key_id), dry_run=False)

    # Then nothing changed, and the action says why
    assert action.status is ActionStatus.SKIPPED
    assert f"{PROTECTED_TAG}='break-glass'" in action.detail
    assert key_status(iam, key_id) == "Active"
    assert revoke_policy(iam) is None


def test_a_missing_user_key_or_parameter_fails_with_the_reason(iam: Any) -> None:
    # Given one user with a key and another user
    key_id = create_user(iam)
    create_user(iam, name="someone-else")

    # When keys are disabled for an unknown user, for the wrong user, and with no user at all
    unknown = disabler(iam).run(disable(key_id, user="nobody"), dry_run=False)
    wrong = disabler(iam).run(disable(key_id, user="someone-else"), dry_run=False)
    no_user = disabler(iam).run(Action(type=ActionType.DISABLE_ACCESS_KEY, target=key_id), dry_run=False)

    # Then each fails with a reason, and the key is untouched
    assert (unknown.status, wrong.status, no_user.status) == (ActionStatus.FAILED,) * 3
    assert "user nobody not found" in unknown.detail
    assert f"{key_id} is not a key of user someone-else" in wrong.detail
    assert "parameter user_name missing" in no_user.detail
    assert key_status(iam, key_id) == "Active"


def test_throttling_is_transient() -> None:
    # Given IAM throttling (botocore's Stubber, no network)
    client = boto3.client("iam", region_name=REGION, aws_access_key_id="t", aws_secret_access_key="t")
    stubber = Stubber(client)
    stubber.add_client_error("list_user_tags", service_error_code="Throttling", http_status_code=400)
    stubber.activate()

    # When a key is disabled, Then the state machine's Retry gets a TransientError
    with pytest.raises(TransientError, match="Throttling"):
        disabler(client).run(disable("AKIAIOSFODNN7EXAMPLE"), dry_run=False)
