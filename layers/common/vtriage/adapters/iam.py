"""Disabling an IAM user's access key and containing the user with the stack's deny-all policy."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from vtriage.adapters.aws_errors import error_code, is_transient, transient_aws_errors
from vtriage.models import Action, ActionStatus, why_a_key_cannot_be_disabled
from vtriage.protected_tag import ProtectingTag, protecting_tag

# Why attaching the containment policy can fail once the key is already disabled.
_ATTACH_PROBLEMS = {
    "LimitExceeded": "{user} already has as many managed policies attached as IAM allows",
    "NoSuchEntity": "the containment policy {policy} does not exist (was the stack's policy deleted?)",
}


class IamAccessKeyDisabler:
    """`ResponseActuator` for DISABLE_ACCESS_KEY: sets the key (the target) Inactive and contains its
    user (`parameters["user_name"]`) by attaching the stack's deny-all managed policy.

    The policy is attached, never written: the function's role may attach that one policy and no other
    (`iam:PolicyARN`), so the grant cannot raise anyone's privileges as `PutUserPolicy` could. It denies
    the user everything, with any of its credentials, until it is detached. Without a containment policy
    configured, only the key is disabled, and the action says so. Users carrying the protected tag are
    left alone (and IAM denies the role both changes on them). Rollback reactivates the key if it was
    active, and detaches the policy if this action attached it.
    """

    def __init__(self, iam_client: Any, protected_tag_key: str, containment_policy_arn: str | None) -> None:
        """Take a boto3 IAM client, the tag key that protects a user, and the deny-all policy's ARN."""
        self._iam = iam_client
        self._protected_tag_key = protected_tag_key
        self._policy_arn = containment_policy_arn

    def run(self, action: Action, dry_run: bool) -> Action:
        """Disable the key and contain its user; `before`/`after` hold the key's status and whether the
        containment policy is attached."""
        user_name = action.parameters.get("user_name")
        if not user_name:
            return action.with_outcome(ActionStatus.FAILED, "not disabled: parameter user_name missing")
        # Planning gives such a key no action to run; checked again here, whoever planned it.
        unworkable = why_a_key_cannot_be_disabled(action.target, None)
        if unworkable is not None:
            return action.with_outcome(ActionStatus.SKIPPED, f"not disabled: {unworkable}")
        return self._guard(action, user_name, "disabling", lambda: self._disable(action, user_name, dry_run))

    def rollback(self, action: Action) -> Action:
        """Reactivate the key if it was active before, and detach the containment policy if this action
        attached it."""
        before = action.before or {}
        user_name = before.get("user_name")
        if not user_name or "key_status" not in before:
            return action.model_copy(update={"detail": "nothing to undo: no key state was recorded"})
        return self._guard(
            action, str(user_name), "re-enabling", lambda: self._restore(action, str(user_name), before)
        )

    def _disable(self, action: Action, user_name: str, dry_run: bool) -> Action:
        protected = self._protecting_tag(user_name)
        if protected is not None:
            detail = f"not disabled: user {user_name} carries the protected tag {protected}"
            return action.with_outcome(ActionStatus.SKIPPED, detail)
        key_status = self._key_status(user_name, action.target)
        if key_status is None:
            return action.with_outcome(
                ActionStatus.FAILED,
                f"not disabled: access key {action.target} is not a key of user {user_name}",
            )
        policy = self._policy_arn
        contained = policy is not None and self._attached(user_name, policy)
        before = {
            "user_name": user_name,
            "key_status": key_status,
            "containment_policy_arn": policy,
            "contained": contained,
        }
        deactivate = key_status != "Inactive"
        contain = policy is not None and not contained
        uncontained = (
            ""
            if policy is not None
            else f"; {user_name}'s other credentials are not contained: no containment policy is "
            "configured (USER_CONTAINMENT_POLICY_ARN)"
        )
        if not deactivate and not contain:
            already = f"already disabled: access key {action.target} of {user_name} is Inactive"
            if policy is not None:
                already += f" and {user_name} is contained by {policy}"
            return action.with_outcome(ActionStatus.DONE, already + uncontained, before, before)
        steps = []
        if deactivate:
            steps.append(f"set access key {action.target} of {user_name} Inactive (was {key_status})")
        if contain:
            steps.append(f"contain {user_name} with the deny-all policy {policy}")
        if dry_run:
            detail = "dry run, nothing changed: would " + " and ".join(steps) + uncontained
            return action.with_outcome(ActionStatus.DRY_RUN, detail, before)
        if deactivate:
            self._iam.update_access_key(UserName=user_name, AccessKeyId=action.target, Status="Inactive")
        if contain and policy is not None:
            problem = self._attach(user_name, policy)
            if problem is not None:
                after = self._state(user_name, action.target, policy)
                detail = f"{user_name} not contained: {problem}"
                if deactivate:
                    detail = f"disabled only in part: {steps[0]}; {detail}"
                return action.with_outcome(ActionStatus.FAILED, detail, before, after)
        after = self._state(user_name, action.target, policy)
        detail = "disabled: " + "; ".join(steps) + uncontained
        return action.with_outcome(ActionStatus.DONE, detail, before, after)

    def _restore(self, action: Action, user_name: str, before: dict[str, Any]) -> Action:
        policy = before.get("containment_policy_arn")
        key_status = self._key_status(user_name, action.target)
        if key_status is None:
            gone = f"access key {action.target} of {user_name} no longer exists"
            return action.with_outcome(ActionStatus.FAILED, f"rollback failed: {gone}")
        steps = []
        if before.get("key_status") == "Active" and key_status != "Active":
            self._iam.update_access_key(UserName=user_name, AccessKeyId=action.target, Status="Active")
            steps.append(f"set access key {action.target} Active again")
        # Detached only when this action attached it: a user contained before stays contained.
        if policy and not before.get("contained") and self._attached(user_name, str(policy)):
            self._iam.detach_user_policy(UserName=user_name, PolicyArn=str(policy))
            steps.append(f"detached the deny-all policy {policy} from {user_name}")
        after = self._state(user_name, action.target, str(policy) if policy else None)
        if not steps:
            detail = (
                f"already as before: access key {action.target} is {key_status}, "
                f"{user_name} as contained as it was"
            )
            return action.with_outcome(ActionStatus.ROLLED_BACK, detail, after=after)
        return action.with_outcome(ActionStatus.ROLLED_BACK, "rolled back: " + "; ".join(steps), after=after)

    def _attach(self, user_name: str, policy: str) -> str | None:
        """Attach the containment policy; None when done, else why not (the key is disabled by then)."""
        try:
            self._iam.attach_user_policy(UserName=user_name, PolicyArn=policy)
        except ClientError as error:
            template = _ATTACH_PROBLEMS.get(error_code(error))
            if template is None or is_transient(error):
                raise
            return template.format(user=user_name, policy=policy) + f" ({error_code(error)})"
        return None

    def _state(self, user_name: str, access_key_id: str, policy: str | None) -> dict[str, Any]:
        return {
            "user_name": user_name,
            "key_status": self._key_status(user_name, access_key_id),
            "containment_policy_arn": policy,
            "contained": policy is not None and self._attached(user_name, policy),
        }

    def _protecting_tag(self, user_name: str) -> ProtectingTag | None:
        paginator = self._iam.get_paginator("list_user_tags")
        tags = (
            (str(tag["Key"]), str(tag.get("Value", "")))
            for page in paginator.paginate(UserName=user_name)
            for tag in page.get("Tags", [])
        )
        return protecting_tag(tags, self._protected_tag_key)

    def _key_status(self, user_name: str, access_key_id: str) -> str | None:
        paginator = self._iam.get_paginator("list_access_keys")
        for page in paginator.paginate(UserName=user_name):
            for key in page.get("AccessKeyMetadata", []):
                if key["AccessKeyId"] == access_key_id:
                    return str(key["Status"])
        return None

    def _attached(self, user_name: str, policy: str) -> bool:
        paginator = self._iam.get_paginator("list_attached_user_policies")
        return any(
            attached["PolicyArn"] == policy
            for page in paginator.paginate(UserName=user_name)
            for attached in page.get("AttachedPolicies", [])
        )

    def _guard(self, action: Action, user_name: str, doing: str, operation: Callable[[], Action]) -> Action:
        """Throttling and 5xx become TransientError; a missing user, FAILED."""
        try:
            with transient_aws_errors(f"IAM is unavailable while {doing} {action.target}"):
                return operation()
        except ClientError as error:
            if error_code(error) == "NoSuchEntity":
                return action.with_outcome(
                    ActionStatus.FAILED, f"{doing} failed: user {user_name} not found: {error}"
                )
            raise
