"""IamAccessKeyDisabler against moto's IAM: the key's status and the user's containment (the stack's
deny-all policy attached) after disabling and rollback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from tests.functional.conftest import use_dummy_aws_credentials
from vtriage.adapters.iam import IamAccessKeyDisabler
from vtriage.errors import TransientError
from vtriage.models import Action, ActionStatus, ActionType
from vtriage_local.template import load_template

pytestmark = pytest.mark.functional

REGION = "us-east-1"
PROTECTED_TAG = "vtriage:protected"
CASE_ID = "guardduty-0123456789abcdef0123456789abcdef"
DENY_ALL = {"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "*", "Resource": "*"}]}


@dataclass
class Account:
    """moto's IAM, and the containment policy created there as the stack creates it."""

    iam: Any
    containment_policy: str


@pytest.fixture
def account(monkeypatch: pytest.MonkeyPatch) -> Iterator[Account]:
    """An IAM client on moto (dummy credentials: nothing can reach a real account), holding the
    template's UserContainmentPolicy."""
    use_dummy_aws_credentials(monkeypatch, REGION)
    stack_policy = load_template()["Resources"]["UserContainmentPolicy"]["Properties"]
    with mock_aws():
        iam = boto3.client("iam", region_name=REGION)
        arn = iam.create_policy(
            PolicyName="vtriage-UserContainmentPolicy-1A2B3C",
            PolicyDocument=json.dumps(stack_policy["PolicyDocument"]),
        )["Policy"]["Arn"]
        yield Account(iam, str(arn))


def create_user(iam: Any, name: str = "ci-deployer", tags: dict[str, str] | None = None) -> str:
    """A user with one active access key; returns the key id."""
    iam.create_user(UserName=name, Tags=[{"Key": k, "Value": v} for k, v in (tags or {}).items()])
    return str(iam.create_access_key(UserName=name)["AccessKey"]["AccessKeyId"])


def key_status(iam: Any, key_id: str, user: str = "ci-deployer") -> str:
    [key] = [
        k for k in iam.list_access_keys(UserName=user)["AccessKeyMetadata"] if k["AccessKeyId"] == key_id
    ]
    return str(key["Status"])


def attached(iam: Any, user: str = "ci-deployer") -> set[str]:
    """The ARNs of the managed policies attached to the user."""
    return {p["PolicyArn"] for p in iam.list_attached_user_policies(UserName=user)["AttachedPolicies"]}


def inline_policies(iam: Any, user: str = "ci-deployer") -> list[str]:
    return list(iam.list_user_policies(UserName=user)["PolicyNames"])


def disabler(account: Account) -> IamAccessKeyDisabler:
    return IamAccessKeyDisabler(account.iam, PROTECTED_TAG, account.containment_policy)


def disable(key_id: str, user: str = "ci-deployer", case_id: str = CASE_ID) -> Action:
    return Action(
        type=ActionType.DISABLE_ACCESS_KEY, target=key_id, parameters={"user_name": user, "case_id": case_id}
    )


def test_the_stack_policy_denies_the_user_everything(account: Account) -> None:
    # Given the policy the stack creates for containment, as created
    version = account.iam.get_policy(PolicyArn=account.containment_policy)["Policy"]["DefaultVersionId"]
    document = account.iam.get_policy_version(PolicyArn=account.containment_policy, VersionId=version)[
        "PolicyVersion"
    ]["Document"]

    # Then it denies every action on every resource, without condition: whatever credential the user
    # holds (another key, a password, a session it issued itself)
    [statement] = document["Statement"]
    assert (statement["Effect"], statement["Action"], statement["Resource"]) == ("Deny", "*", "*")
    assert "Condition" not in statement


def test_the_key_is_inactive_and_the_user_contained_and_rollback_restores_both(account: Account) -> None:
    # Given a user with an active key
    iam = account.iam
    key_id = create_user(iam)

    # When the key is disabled for real
    done = disabler(account).run(disable(key_id), dry_run=False)

    # Then the key is inactive, the stack's deny-all policy is attached, and no inline policy was written
    assert key_status(iam, key_id) == "Inactive"
    assert attached(iam) == {account.containment_policy}
    assert inline_policies(iam) == []
    assert done.status is ActionStatus.DONE
    assert done.before == {
        "user_name": "ci-deployer",
        "key_status": "Active",
        "containment_policy_arn": account.containment_policy,
        "contained": False,
    }
    assert done.after is not None
    assert (done.after["key_status"], done.after["contained"]) == ("Inactive", True)
    assert f"contain ci-deployer with the deny-all policy {account.containment_policy}" in done.detail

    # And when it is rolled back, the key is active again and the policy detached
    undone = disabler(account).rollback(done)
    assert key_status(iam, key_id) == "Active"
    assert attached(iam) == set()
    assert undone.status is ActionStatus.ROLLED_BACK
    assert "detached the deny-all policy" in undone.detail

    # And rolling back again changes nothing and says so
    again = disabler(account).rollback(done)
    assert again.detail.startswith("already as before")
    assert key_status(iam, key_id) == "Active"


def test_dry_run_changes_nothing_and_says_what_would_change(account: Account) -> None:
    # Given a user with an active key
    key_id = create_user(account.iam)

    # When the key is disabled in dry run
    action = disabler(account).run(disable(key_id), dry_run=True)

    # Then the key is still active, nothing is attached, and the detail says both would change
    assert key_status(account.iam, key_id) == "Active"
    assert attached(account.iam) == set()
    assert action.status is ActionStatus.DRY_RUN
    assert f"would set access key {key_id} of ci-deployer Inactive (was Active)" in action.detail
    assert f"contain ci-deployer with the deny-all policy {account.containment_policy}" in action.detail


def test_disabling_twice_changes_nothing_more(account: Account) -> None:
    # Given a key disabled once
    key_id = create_user(account.iam)
    disabler(account).run(disable(key_id), dry_run=False)

    # When it is disabled again
    again = disabler(account).run(disable(key_id), dry_run=False)

    # Then the policy is attached once, and the action says it was already done
    assert attached(account.iam) == {account.containment_policy}
    assert again.status is ActionStatus.DONE
    assert again.detail.startswith("already disabled")


def test_a_user_contained_before_this_case_stays_contained_after_its_rollback(account: Account) -> None:
    # Given a user an earlier case contained, and a new key since
    iam = account.iam
    first_key = create_user(iam)
    disabler(account).run(disable(first_key, case_id="guardduty-earlier"), dry_run=False)
    second_key = str(iam.create_access_key(UserName="ci-deployer")["AccessKey"]["AccessKeyId"])

    # When this case disables the new key, then is rolled back
    done = disabler(account).run(disable(second_key), dry_run=False)
    undone = disabler(account).rollback(done)

    # Then only the new key is active again: the user stays contained, as the earlier case left it
    assert done.before is not None
    assert done.before["contained"] is True
    assert key_status(iam, second_key) == "Active"
    assert key_status(iam, first_key) == "Inactive"
    assert attached(iam) == {account.containment_policy}
    assert undone.detail == f"rolled back: set access key {second_key} Active again"


def test_a_rollback_detaches_only_the_stacks_policy(account: Account) -> None:
    # Given a user vtriage contained, to whom an administrator then attached a deny-all policy of theirs
    iam = account.iam
    key_id = create_user(iam)
    done = disabler(account).run(disable(key_id), dry_run=False)
    by_hand = iam.create_policy(PolicyName="contained-by-hand", PolicyDocument=json.dumps(DENY_ALL))
    iam.attach_user_policy(UserName="ci-deployer", PolicyArn=by_hand["Policy"]["Arn"])

    # When the case is rolled back
    disabler(account).rollback(done)

    # Then the administrator's policy stays
    assert attached(iam) == {by_hand["Policy"]["Arn"]}


def test_a_key_inactive_before_vtriage_stays_inactive_after_rollback(account: Account) -> None:
    # Given a key someone already deactivated
    key_id = create_user(account.iam)
    account.iam.update_access_key(UserName="ci-deployer", AccessKeyId=key_id, Status="Inactive")

    # When vtriage disables it (containing the user) and is rolled back
    done = disabler(account).run(disable(key_id), dry_run=False)
    disabler(account).rollback(done)

    # Then the key is still inactive, and the containment is gone
    assert key_status(account.iam, key_id) == "Inactive"
    assert attached(account.iam) == set()


def test_a_protected_user_is_skipped(account: Account) -> None:
    # Given a break-glass user carrying the protected tag
    key_id = create_user(account.iam, tags={PROTECTED_TAG: "break-glass"})

    # When its key is disabled
    action = disabler(account).run(disable(key_id), dry_run=False)

    # Then nothing changed, and the action says why
    assert action.status is ActionStatus.SKIPPED
    assert f"{PROTECTED_TAG}='break-glass'" in action.detail
    assert key_status(account.iam, key_id) == "Active"
    assert attached(account.iam) == set()


def test_without_a_containment_policy_only_the_key_is_disabled_and_the_detail_says_so(
    account: Account,
) -> None:
    # Given a user with an active key, and no containment policy configured
    key_id = create_user(account.iam)
    bare = IamAccessKeyDisabler(account.iam, PROTECTED_TAG, None)

    # When the key is disabled
    done = bare.run(disable(key_id), dry_run=False)

    # Then the key is inactive, nothing is attached, and the detail says the user is not contained
    assert done.status is ActionStatus.DONE
    assert key_status(account.iam, key_id) == "Inactive"
    assert attached(account.iam) == set()
    assert "other credentials are not contained" in done.detail
    assert "USER_CONTAINMENT_POLICY_ARN" in done.detail


def test_a_missing_containment_policy_leaves_the_key_disabled_and_the_action_failed(
    account: Account,
) -> None:
    # Given a user with an active key, and a containment policy that no longer exists
    key_id = create_user(account.iam)
    gone = "arn:aws:iam::123456789012:policy/deleted-with-an-old-stack"
    disabler_without_policy = IamAccessKeyDisabler(account.iam, PROTECTED_TAG, gone)

    # When the key is disabled
    action = disabler_without_policy.run(disable(key_id), dry_run=False)

    # Then the key is inactive, and the action failed saying the user is not contained and why
    assert key_status(account.iam, key_id) == "Inactive"
    assert action.status is ActionStatus.FAILED
    assert action.detail.startswith(f"disabled only in part: set access key {key_id}")
    assert f"ci-deployer not contained: the containment policy {gone} does not exist" in action.detail
    # And its rollback puts the key back
    disabler_without_policy.rollback(action)
    assert key_status(account.iam, key_id) == "Active"


def test_a_missing_user_key_or_parameter_fails_with_the_reason(account: Account) -> None:
    # Given one user with a key and another user
    key_id = create_user(account.iam)
    create_user(account.iam, name="someone-else")

    # When keys are disabled for an unknown user, for the wrong user, and with no user at all
    unknown = disabler(account).run(disable(key_id, user="nobody"), dry_run=False)
    wrong = disabler(account).run(disable(key_id, user="someone-else"), dry_run=False)
    no_user = disabler(account).run(Action(type=ActionType.DISABLE_ACCESS_KEY, target=key_id), dry_run=False)

    # Then each fails with a reason, and the key is untouched
    assert (unknown.status, wrong.status, no_user.status) == (ActionStatus.FAILED,) * 3
    assert "user nobody not found" in unknown.detail
    assert f"{key_id} is not a key of user someone-else" in wrong.detail
    assert "parameter user_name missing" in no_user.detail
    assert key_status(account.iam, key_id) == "Active"
    assert attached(account.iam, "someone-else") == set()


def test_throttling_is_transient() -> None:
    # Given IAM throttling (botocore's Stubber, no network)
    client = boto3.client("iam", region_name=REGION, aws_access_key_id="t", aws_secret_access_key="t")
    stubber = Stubber(client)
    stubber.add_client_error("list_user_tags", service_error_code="Throttling", http_status_code=400)
    stubber.activate()

    # When a key is disabled, Then the state machine's Retry gets a TransientError
    with pytest.raises(TransientError, match="Throttling"):
        IamAccessKeyDisabler(client, PROTECTED_TAG, "arn:aws:iam::123456789012:policy/contain").run(
            disable("AKIAIOSFODNN7EXAMPLE"), dry_run=False
        )


@pytest.mark.parametrize("key_id", ["ASIAIOSFODNN7EXAMPLE", "GeneratedFindingAccessKeyId"])
def test_a_key_that_is_no_long_term_key_is_skipped_and_the_user_left_alone(
    account: Account, key_id: str
) -> None:
    # Given a user with an active key, and an action naming temporary credentials (or no key id at all)
    iam = account.iam
    own_key = create_user(iam)

    # When it is run for real (planning gives such a key no action to run: checked again here)
    outcome = disabler(account).run(disable(key_id), dry_run=False)

    # Then it is skipped, saying why, and neither the user's key nor its policies changed
    assert outcome.status is ActionStatus.SKIPPED
    assert outcome.detail.startswith("not disabled: ")
    assert ("temporary credentials (ASIA...)" in outcome.detail) is key_id.startswith("ASIA")
    assert key_status(iam, own_key) == "Active"
    assert attached(iam) == set()
