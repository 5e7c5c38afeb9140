"""EC2 instance isolation: every network interface of the instance moves to a quarantine security group
that allows no traffic in and none out."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from vtriage.adapters.aws_errors import is_transient
from vtriage.errors import TransientError
from vtriage.models import Action, ActionStatus, ActionType

_INSTANCE_GONE_CODES = frozenset({"InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed"})


class Ec2InstanceIsolation:
    """Implements `InstanceIsolation` with security groups; leaves instances with the protected tag alone."""

    def __init__(self, ec2_client: Any, quarantine_group_name: str, protected_tag_key: str) -> None:
        """Take a boto3 EC2 client, the quarantine group's name and the tag key that protects an instance."""
        self._ec2 = ec2_client
        self._group_name = quarantine_group_name
        self._protected_tag_key = protected_tag_key

    def isolate(self, instance_id: str, dry_run: bool) -> Action:
        """Isolate the instance; when dry_run, only say what would change and change nothing."""
        try:
            return self._isolate(instance_id, dry_run)
        except ClientError as error:
            if is_transient(error):
                raise TransientError(f"EC2 is unavailable while isolating {instance_id}: {error}") from error
            if error.response.get("Error", {}).get("Code") in _INSTANCE_GONE_CODES:
                return _action(instance_id, ActionStatus.FAILED, f"instance not found: {error}")
            raise

    def _isolate(self, instance_id: str, dry_run: bool) -> Action:
        instance = self._describe_instance(instance_id)
        if instance is None:
            reason = "instance not found (InvalidInstanceID.NotFound)"
            return _action(instance_id, ActionStatus.FAILED, reason)

        tags = {tag["Key"]: tag.get("Value", "") for tag in instance.get("Tags", [])}
        if self._protected_tag_key in tags:
            return _action(
                instance_id,
                ActionStatus.SKIPPED,
                f"not isolated: the instance carries the protected tag "
                f"{self._protected_tag_key}={tags[self._protected_tag_key]!r}",
            )

        before = _groups_by_interface(instance.get("NetworkInterfaces", []))
        vpc_id = instance.get("VpcId")
        if not before or not vpc_id:
            state = instance.get("State", {}).get("Name", "unknown")
            return _action(
                instance_id,
                ActionStatus.SKIPPED,
                f"not isolated: the instance has no network interface in a VPC (state {state})",
            )

        group = self._find_group(vpc_id)
        if group is not None and not _has_rules(group):
            group_id = str(group["GroupId"])
            if all(groups == [group_id] for groups in before.values()):
                return _action(
                    instance_id,
                    ActionStatus.DONE,
                    f"already isolated: every network interface is only in {self._group_name} ({group_id})",
                    before=before,
                    after=before,
                )
        if dry_run:
            detail = self._dry_run_detail(vpc_id, group, before)
            return _action(instance_id, ActionStatus.DRY_RUN, detail, before=before)

        group_was_open = group is not None and _has_rules(group)
        group_id = self._ensure_closed_group(vpc_id, group)
        to_move = [eni for eni, groups in before.items() if groups != [group_id]]
        for eni in to_move:
            self._ec2.modify_network_interface_attribute(NetworkInterfaceId=eni, Groups=[group_id])
        after = self._current_groups(list(before))
        # Verify the effect rather than trust the calls: a security action must not report a false success.
        still_open = {eni: groups for eni, groups in after.items() if groups != [group_id]}
        if still_open:
            return _action(
                instance_id,
                ActionStatus.FAILED,
                f"isolation did not take: {_describe_groups(still_open, 'still')} after moving them to "
                f"{self._group_name} ({group_id})",
                before=before,
                after=after,
            )
        changes = []
        if to_move:
            moved = _describe_groups({eni: before[eni] for eni in to_move}, "was")
            changes.append(f"moved {moved} to {self._group_name} ({group_id})")
        if group_was_open:
            changes.append(f"revoked the rules found on {self._group_name} ({group_id})")
        detail = "isolated: " + "; ".join(changes) + "; the quarantine group allows no traffic in or out"
        return _action(instance_id, ActionStatus.DONE, detail, before=before, after=after)

    def _describe_instance(self, instance_id: str) -> dict[str, Any] | None:
        response = self._ec2.describe_instances(InstanceIds=[instance_id])
        for reservation in response.get("Reservations", []):
            for instance in reservation.get("Instances", []):
                return dict(instance)
        return None

    def _find_group(self, vpc_id: str) -> dict[str, Any] | None:
        response = self._ec2.describe_security_groups(
            Filters=[
                {"Name": "vpc-id", "Values": [vpc_id]},
                {"Name": "group-name", "Values": [self._group_name]},
            ]
        )
        groups = response.get("SecurityGroups", [])
        return dict(groups[0]) if groups else None

    def _ensure_closed_group(self, vpc_id: str, group: dict[str, Any] | None) -> str:
        """The quarantine group's id, created if missing, with every rule on it revoked."""
        if group is None:
            try:
                self._ec2.create_security_group(
                    GroupName=self._group_name,
                    Description="vtriage quarantine: no inbound, no outbound traffic",
                    VpcId=vpc_id,
                    TagSpecifications=[
                        {
                            "ResourceType": "security-group",
                            "Tags": [
                                {"Key": "Name", "Value": self._group_name},
                                {"Key": "vtriage:purpose", "Value": "quarantine"},
                            ],
                        }
                    ],
                )
            except ClientError as error:
                # Another isolation in the same VPC created it first: use theirs.
                if error.response.get("Error", {}).get("Code") != "InvalidGroup.Duplicate":
                    raise
            group = self._find_group(vpc_id)
            if group is None:
                # EC2 is eventually consistent: the new group may take a moment to be listed.
                raise TransientError(f"security group {self._group_name} not visible yet in {vpc_id}")
        group_id = str(group["GroupId"])
        # A new group comes with an allow-all egress rule; a found one may have been opened by hand.
        if group.get("IpPermissions"):
            self._revoke(self._ec2.revoke_security_group_ingress, group_id, group["IpPermissions"])
        if group.get("IpPermissionsEgress"):
            self._revoke(self._ec2.revoke_security_group_egress, group_id, group["IpPermissionsEgress"])
        return group_id

    @staticmethod
    def _revoke(revoke: Any, group_id: str, permissions: list[dict[str, Any]]) -> None:
        try:
            revoke(GroupId=group_id, IpPermissions=permissions)
        except ClientError as error:
            # A concurrent isolation in the same VPC revoked them first: the group is closed either way.
            if error.response.get("Error", {}).get("Code") != "InvalidPermission.NotFound":
                raise

    def _current_groups(self, interface_ids: list[str]) -> dict[str, list[str]]:
        response = self._ec2.describe_network_interfaces(NetworkInterfaceIds=interface_ids)
        return _groups_by_interface(response.get("NetworkInterfaces", []))

    def _dry_run_detail(self, vpc_id: str, group: dict[str, Any] | None, before: dict[str, list[str]]) -> str:
        if group is None:
            target = f"a new security group {self._group_name} in {vpc_id} with no rules (not created)"
        else:
            target = f"{self._group_name} ({group['GroupId']})"
            if _has_rules(group):
                target += " after revoking the rules found on it"
        return f"dry run, nothing changed: would move {_describe_groups(before, 'now')} to {target}"


def _has_rules(group: dict[str, Any]) -> bool:
    return bool(group.get("IpPermissions") or group.get("IpPermissionsEgress"))


def _groups_by_interface(interfaces: list[dict[str, Any]]) -> dict[str, list[str]]:
    return {
        str(interface["NetworkInterfaceId"]): sorted(
            str(group["GroupId"]) for group in interface.get("Groups", [])
        )
        for interface in interfaces
    }


def _describe_groups(groups_by_interface: dict[str, list[str]], tense: str) -> str:
    return ", ".join(
        f"{eni} ({tense} in {', '.join(groups) or 'no group'})" for eni, groups in groups_by_interface.items()
    )


def _action(
    instance_id: str,
    status: ActionStatus,
    detail: str,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> Action:
    return Action(
        type=ActionType.ISOLATE_INSTANCE,
        target=instance_id,
        status=status,
        detail=detail,
        before=before,
        after=after,
    )
