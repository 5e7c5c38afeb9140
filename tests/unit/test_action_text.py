"""Each response action in words: what the approval page and the tickets tell a person it will change
and how a rollback undoes it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.factories import make_alert, make_case
from vtriage.action_text import UNCONFIGURED_SKIPS, action_name, describe, not_contained, status_words
from vtriage.approval import ApprovalRequest, request_approval
from vtriage.fakes import FakeApprovalNotifier, InMemoryApprovalStore, InMemoryCaseRepository
from vtriage.models import Action, ActionStatus, ActionType

# A target and parameters for each action type, as the playbook plans them (vtriage.playbook._targets).
PLANNED = {
    ActionType.ISOLATE_INSTANCE: ("i-0abc1234def567890", {}),
    ActionType.SNAPSHOT_VOLUMES: ("i-0abc1234def567890", {}),
    ActionType.TAG_INSTANCE: ("i-0abc1234def567890", {}),
    ActionType.BLOCK_IP_WAF: ("198.51.100.7", {}),
    ActionType.BLOCK_IP_NACL: ("198.51.100.7", {"instance_id": "i-0abc1234def567890"}),
    ActionType.DISABLE_ACCESS_KEY: ("AKIAIOSFODNN7EXAMPLE", {"user_name": "deploy-bot"}),
    ActionType.QUARANTINE_OBJECT: ("s3://uploads/invoice.exe", {"bucket": "uploads", "key": "invoice.exe"}),
    ActionType.BLOCK_DOMAIN_DNS_FIREWALL: ("c2.example.com", {}),
    ActionType.CONTAIN_HOST: ("6d5e2a1f0b3c4d5e6f708192a3b4c5d6", {}),
}


def test_every_action_type_is_described() -> None:
    # Given every action type vtriage can plan, Then each has a target and parameters in this test
    assert set(PLANNED) == set(ActionType)


@pytest.mark.parametrize("action_type", list(ActionType))
def test_each_action_says_in_words_what_it_changes_on_its_target_and_how_it_is_rolled_back(
    action_type: ActionType,
) -> None:
    # Given an action as the playbook plans it
    target, parameters = PLANNED[action_type]
    action = Action(type=action_type, target=target, parameters=parameters)

    # When it is described
    text = describe(action)

    # Then its name is words, not its code, and what it changes names its target
    assert text.name == action_name(action_type)
    assert action_type.value not in text.name
    assert "_" not in text.name
    assert target in text.changes
    # And both are whole sentences, each ending with one full stop
    for sentence in (text.changes, text.rollback):
        assert sentence[0].isupper()
        assert sentence.endswith(".")
        assert not sentence.endswith("..")
    # And the rollback says what it restores or why nothing is undone
    assert text.rollback.startswith(("Rollback ", "Nothing to roll back"))


def test_an_isolation_names_the_instance_the_quarantine_group_and_what_rollback_restores() -> None:
    # Given an isolation of an instance
    action = Action(type=ActionType.ISOLATE_INSTANCE, target="i-0abc1234def567890")

    # When it is described, Then it says where the instance goes and what rollback gives back
    text = describe(action)
    assert text.name == "Isolate the instance"
    assert text.changes.startswith(
        "Moves every network interface of instance i-0abc1234def567890 into vtriage's quarantine "
        "security group"
    )
    assert text.rollback == "Rollback puts each interface back in the security groups it had before."


def test_the_parameters_an_action_acts_through_are_named() -> None:
    # Given a network ACL block for an instance and an access key of a user
    nacl = Action(type=ActionType.BLOCK_IP_NACL, target="198.51.100.7", parameters={"instance_id": "i-01"})
    key = Action(
        type=ActionType.DISABLE_ACCESS_KEY, target="AKIAIOSFODNN7EXAMPLE", parameters={"user_name": "bob"}
    )

    # When they are described, Then the instance whose subnets and the user whose key are named
    assert "the subnets of instance i-01" in describe(nacl).changes
    assert "of IAM user bob" in describe(key).changes


def test_values_from_the_alert_are_escaped_on_one_line() -> None:
    # Given an S3 object whose key carries a line break and a fake approval link
    key = "dropper\nApprove: https://evil.example/a\u202e"
    action = Action(
        type=ActionType.QUARANTINE_OBJECT,
        target=f"s3://uploads/{key}",
        parameters={"bucket": "uploads\r\n", "key": key},
    )

    # When it is described, Then the sender's values stay on the line, visible and not a link
    text = describe(action)
    assert "\n" not in text.changes
    assert "\u202e" not in text.changes
    assert "https://evil" not in text.changes
    assert "s3://uploads/dropper\\nApprove: hxxps://evil.example/a\\u202e" in text.changes
    assert "bucket uploads\\r\\n" in text.changes


@pytest.mark.parametrize("status", list(ActionStatus))
def test_each_status_is_words(status: ActionStatus) -> None:
    # Given an action status, When it is put in words, Then no code (pending_approval, dry_run) shows
    assert "_" not in status_words(status)


def test_the_approval_request_an_approver_gets_says_the_same_as_the_page() -> None:
    # Given an isolation waiting for a person
    action = Action(
        type=ActionType.ISOLATE_INSTANCE, target="i-0abc1234def567890", status=ActionStatus.PENDING_APPROVAL
    )
    case = make_case(make_alert(), actions=[action])
    notifier = FakeApprovalNotifier()
    request = ApprovalRequest(
        case_id=case.case_id,
        index=0,
        task_token="task-1",
        approval_url="https://approve.example/",
        approval_timeout_seconds=600,
    )

    # When its approval is requested
    request_approval(
        request,
        InMemoryCaseRepository([case]),
        store=InMemoryApprovalStore(),
        notifier=notifier,
        key=b"a-signing-key",
        now=datetime(2026, 11, 26, 12, 0, tzinfo=UTC),
    )

    # Then the approvers' message names the action in words and says what it changes and how it is
    # rolled back, as the approval page does
    [(_, _, report)] = notifier.sent
    lines = report.text().splitlines()
    text = describe(action)
    assert "Action: Isolate the instance" in lines
    assert f"Changes: {text.changes}" in lines
    assert f"Rollback: {text.rollback}" in lines


def _outcome(action_type: ActionType, target: str, status: ActionStatus, detail: str = "") -> Action:
    return Action(type=action_type, target=target).with_outcome(status, detail)


def test_a_block_the_deployment_configures_nothing_for_leaves_an_isolated_instance_contained() -> None:
    # Given a C&C case whose instance was isolated, and whose domain block was skipped because the
    # deployment configures no DNS Firewall list (what its actuator says for every case)
    unconfigured = UNCONFIGURED_SKIPS[ActionType.BLOCK_DOMAIN_DNS_FIREWALL]
    actions = [
        _outcome(ActionType.ISOLATE_INSTANCE, "i-1", ActionStatus.DONE, "isolated"),
        _outcome(ActionType.BLOCK_DOMAIN_DNS_FIREWALL, "c2.example", ActionStatus.SKIPPED, unconfigured),
    ]

    # When what is not contained is asked
    # Then nothing: the skipped block is the deployment's choice, not this case's containment failing
    assert not_contained(actions) == []


def test_a_block_skipped_for_this_case_is_not_contained_even_beside_an_isolation() -> None:
    # Given the same case, but its domain block skipped for a reason of its own
    actions = [
        _outcome(ActionType.ISOLATE_INSTANCE, "i-1", ActionStatus.DONE, "isolated"),
        _outcome(
            ActionType.BLOCK_DOMAIN_DNS_FIREWALL, "c2.example", ActionStatus.SKIPPED, "not blocked: protected"
        ),
    ]

    # When / Then the block is named as not contained, with its reason
    assert not_contained(actions) == ["block_domain_dns_firewall c2.example skipped: not blocked: protected"]


def test_an_isolation_skipped_for_the_unconfigured_blocks_words_is_still_not_contained() -> None:
    # Given an isolation skipped with the words an unconfigured DNS block says (they mean nothing for it)
    unconfigured = UNCONFIGURED_SKIPS[ActionType.BLOCK_DOMAIN_DNS_FIREWALL]
    actions = [_outcome(ActionType.ISOLATE_INSTANCE, "i-1", ActionStatus.SKIPPED, unconfigured)]

    # When / Then the isolation is named: only the action type that said it is left out
    assert len(not_contained(actions)) == 1
