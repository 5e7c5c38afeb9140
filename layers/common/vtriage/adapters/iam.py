"""Disabling an IAM user's access key and revoking the sessions issued with the user's credentials."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from vtriage.adapters.aws_errors import error_code, is_transient
from vtriage.errors import TransientError
from vtriage.models import Action, ActionStatus

REVOKE_POLICY_NAME = "vtriage-revoke-sessions"


def utc_now() -> datetime:
    """The current time, timezone-aware."""
    return datetime.now(UTC)


class IamAccessKeyDisabler:
    """`ResponseActuator` for DISABLE_ACCESS_KEY: sets the key (the target) Inactive and revokes the
    user's (`parameters["user_name"]`) older sessions.

    Sessions are revoked as AWS documents it for temporary credentials: an inline user policy
    `vtriage-revoke-sessions` denying everything to credentials issued before now
    (`aws:TokenIssueTime`); credentials issued later, and long-term keys, are not affected by it.
    Rollback reactivates the key if it was active, and removes that policy (or puts back the one it
    replaced). Users carrying the protected tag are left alone.
    """

    def __init__(
        self, iam_client: Any, protected_tag_key: str, now: Callable[[], datetime] = utc_now
    ) -> None:
        """Take a boto3 IAM client, the tag key that protects a user, and a clock."""
        self._iam = iam_client
        self._protected_tag_key = protected_tag_key
        self._now = now

    def run(self, action: Action, dry_run: bool) -> Action:
        """Disable the key and revoke older sessions; `before`/`after` hold the key status and the policy."""
        user_name = action.parameters.get("user_name")
        if not user_name:
            return action.with_outcome(ActionStatus.FAILED, "not disabled: parameter user_name missing")
        return self._guard(action, user_name, "disabling", lambda: self._disable(action, user_name, dry_run))

    def rollback(self, action: Action) -> Action:
        """Reactivate the key if it was active before, and put the revoke policy back as it was."""
        before = action.before or {}
        user_name = before.get("user_name")
        if not user_name or "key_status" not in before:
            return action.model_copy(update={"detail": "nothing to undo: no key state was recorded"})
        return self._guard(
            action, str(user_name), "re-enabling", lambda: self._restore(action, str(user_name), before)
        )

    def _disable(self, action: Action, user_name: str, dry_run: bool) -> Action:
        protected = self._protected_value(user_name)
        if protected is not None:
            tag = f"{self._protected_tag_key}={protected!r}"
            detail = f"not disabled: user {user_name} carries the protected tag {tag}"
            return action.with_outcome(ActionStatus.SKIPPED, detail)
        key_status = self._key_status(user_name, action.target)
        if key_status is None:
            return action.with_outcome(
                ActionStatus.FAILED,
                f"not disabled: access key {action.target} is not a key of user {user_name}",
            )
        policy = self._revoke_policy(user_name)
        statement_id = _statement_id(action.parameters.get("case_id", ""))
        before = {"user_name": user_name, "key_status": key_status, "revoke_policy": policy}
        deactivate = key_status != "Inactive"
        # A revoke policy from an earlier case is renewed: this case's sessions may be newer than its cut-off.
        revoke = not _has_statement(policy, statement_id)
        if not deactivate and not revoke:
            detail = (
                f"already disabled: access key {action.target} of {user_name} is Inactive and "
                f"sessions issued before {_cut_off(policy)} are revoked by {REVOKE_POLICY_NAME}"
            )
            return action.with_outcome(ActionStatus.DONE, detail, before, before)
        cut_off = self._now().astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        steps = []
        if deactivate:
            steps.append(f"set access key {action.target} of {user_name} Inactive (was {key_status})")
        if revoke:
            steps.append(
                f"revoke {user_name}'s sessions issued before {cut_off} "
                f"with the inline policy {REVOKE_POLICY_NAME}"
                + (f" (replacing the one denying sessions before {_cut_off(policy)})" if policy else "")
            )
        if dry_run:
            return action.with_outcome(
                ActionStatus.DRY_RUN, "dry run, nothing changed: would " + " and ".join(steps), before
            )
        if deactivate:
            self._iam.update_access_key(UserName=user_name, AccessKeyId=action.target, Status="Inactive")
        if revoke:
            self._iam.put_user_policy(
                UserName=user_name,
                PolicyName=REVOKE_POLICY_NAME,
                PolicyDocument=json.dumps(_revoke_document(statement_id, cut_off)),
            )
        after = {
            "user_name": user_name,
            "key_status": self._key_status(user_name, action.target),
            "revoke_policy": self._revoke_policy(user_name),
        }
        return action.with_outcome(ActionStatus.DONE, "disabled: " + "; ".join(steps), before, after)

    def _restore(self, action: Action, user_name: str, before: dict[str, Any]) -> Action:
        key_status = self._key_status(user_name, action.target)
        policy = self._revoke_policy(user_name)
        if key_status is None:
            gone = f"access key {action.target} of {user_name} no longer exists"
            return action.with_outcome(ActionStatus.FAILED, f"rollback failed: {gone}")
        steps = []
        if before.get("key_status") == "Active" and key_status != "Active":
            self._iam.update_access_key(UserName=user_name, AccessKeyId=action.target, Status="Active")
            steps.append(f"set access key {action.target} Active again")
        old_policy = before.get("revoke_policy")
        if old_policy is None and policy is not None:
            self._iam.delete_user_policy(UserName=user_name, PolicyName=REVOKE_POLICY_NAME)
            steps.append(f"removed the inline policy {REVOKE_POLICY_NAME}")
        elif old_policy is not None and policy != old_policy:
            self._iam.put_user_policy(
                UserName=user_name, PolicyName=REVOKE_POLICY_NAME, PolicyDocument=json.dumps(old_policy)
            )
            steps.append(f"put back the {REVOKE_POLICY_NAME} denying sessions before {_cut_off(old_policy)}")
        after = {
            "user_name": user_name,
            "key_status": self._key_status(user_name, action.target),
            "revoke_policy": self._revoke_policy(user_name),
        }
        if not steps:
            detail = (
                f"already as before: access key {action.target} is {key_status}, the revoke policy as it was"
            )
            return action.with_outcome(ActionStatus.ROLLED_BACK, detail, after=after)
        return action.with_outcome(ActionStatus.ROLLED_BACK, "rolled back: " + "; ".join(steps), after=after)

    def _protected_value(self, user_name: str) -> str | None:
        paginator = self._iam.get_paginator("list_user_tags")
        for page in paginator.paginate(UserName=user_name):
            for tag in page.get("Tags", []):
                if tag["Key"] == self._protected_tag_key:
                    return str(tag.get("Value", ""))
        return None

    def _key_status(self, user_name: str, access_key_id: str) -> str | None:
        paginator = self._iam.get_paginator("list_access_keys")
        for page in paginator.paginate(UserName=user_name):
            for key in page.get("AccessKeyMetadata", []):
                if key["AccessKeyId"] == access_key_id:
                    return str(key["Status"])
        return None

    def _revoke_policy(self, user_name: str) -> dict[str, Any] | None:
        try:
            response = self._iam.get_user_policy(UserName=user_name, PolicyName=REVOKE_POLICY_NAME)
        except ClientError as error:
            if error_code(error) == "NoSuchEntity":
                return None
            raise
        document = response["PolicyDocument"]
        # boto3 decodes the URL-encoded JSON document; be tolerant if a client hands back the string.
        return dict(document) if isinstance(document, dict) else dict(json.loads(document))

    def _guard(self, action: Action, user_name: str, doing: str, operation: Callable[[], Action]) -> Action:
        """Throttling and 5xx become TransientError; a missing user, FAILED."""
        try:
            return operation()
        except ClientError as error:
            if is_transient(error):
                raise TransientError(f"IAM is unavailable while {doing} {action.target}: {error}") from error
            if error_code(error) == "NoSuchEntity":
                return action.with_outcome(
                    ActionStatus.FAILED, f"{doing} failed: user {user_name} not found: {error}"
                )
            raise


def _statement_id(case_id: str) -> str:
    """A statement id naming the case (IAM allows only letters and digits in a Sid)."""
    return "VtriageRevokeOlderSessions" + re.sub(r"[^A-Za-z0-9]", "", case_id)[:64]


def _revoke_document(statement_id: str, cut_off: str) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": statement_id,
                "Effect": "Deny",
                "Action": "*",
                "Resource": "*",
                "Condition": {"DateLessThan": {"aws:TokenIssueTime": cut_off}},
            }
        ],
    }


def _statements(policy: dict[str, Any] | None) -> list[dict[str, Any]]:
    statements = (policy or {}).get("Statement", [])
    return [statements] if isinstance(statements, dict) else list(statements)


def _has_statement(policy: dict[str, Any] | None, statement_id: str) -> bool:
    return any(statement.get("Sid") == statement_id for statement in _statements(policy))


def _cut_off(policy: dict[str, Any] | None) -> str:
    for statement in _statements(policy):
        value = statement.get("Condition", {}).get("DateLessThan", {}).get("aws:TokenIssueTime")
        if value:
            return str(value)
    return "an unknown time"
