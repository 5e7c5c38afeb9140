"""EC2 response actions on an instance.

Isolation cuts the instance off the network the way AWS's incident-response guidance does, so that open
sessions end too: every network interface first goes to an untracking group that allows all traffic
(connections it carries become untracked), then to a quarantine group that allows none (untracked
connections end at once). Snapshots keep its EBS volumes for forensics; tags mark it as quarantined.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from vtriage.adapters.aws_errors import error_code, is_transient, transient_aws_errors
from vtriage.errors import TransientError
from vtriage.models import Action, ActionStatus, ActionType
from vtriage.protected_tag import ProtectingTag, protecting_tag

_INSTANCE_GONE_CODES = frozenset({"InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed"})
# IAM refusing a call (EC2's codes, old and new, and the generic one): no retry makes it pass.
_ACCESS_DENIED_CODES = frozenset({"UnauthorizedOperation", "Client.UnauthorizedOperation", "AccessDenied"})

CASE_TAG = "vtriage:case"
QUARANTINED_TAG = "vtriage:quarantined"
SNAPSHOT_INSTANCE_TAG = "vtriage:instance"
SNAPSHOT_DEVICE_TAG = "vtriage:device"
# Both isolation groups carry it: the only security groups vtriage creates, or revokes rules on.
PURPOSE_TAG, QUARANTINE_PURPOSE = "vtriage:purpose", "quarantine"
# The untracking group's name: the quarantine group's, with this suffix.
UNTRACKING_SUFFIX = "-untracking"

# Every protocol, every port, from and to every address: a flow such a rule allows both ways is not
# tracked (EC2 User Guide, "Security group connection tracking", Untracked connections).
_ALLOW_ALL = [
    {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}], "Ipv6Ranges": [{"CidrIpv6": "::/0"}]}
]
# What the guide says stays tracked whatever the rules: said in the detail, for a person to judge.
_STAYS_TRACKED = (
    "ICMP, and connections through a NAT gateway, load balancer, Global Accelerator, Network Firewall or "
    "transit gateway, stay tracked until they time out; a network ACL deny cuts those"
)


@dataclass(frozen=True)
class _Isolation:
    """What one isolation found and moved, for its detail."""

    current: dict[str, list[str]]
    vpcs: list[str]
    untracking: dict[str, str]
    quarantine: dict[str, str]
    to_move: list[str]
    in_progress: list[str]
    finished: list[str]
    resumed: set[str]
    moved_by_other: set[str]


class _NotVtriagesGroupError(Exception):
    """A security group of the isolation group's name that vtriage did not create (no purpose tag)."""


class Ec2InstanceIsolation:
    """Implements `ResponseActuator` for ISOLATE_INSTANCE with security groups; leaves an instance alone
    when it, one of its network interfaces, their subnets, their VPCs or vtriage's groups there carries the
    protected tag.

    In each VPC of the instance's interfaces, vtriage keeps two groups of its own (tag
    `vtriage:purpose=quarantine`): the quarantine group, with no rule, and the untracking group
    (`<quarantine group>-untracking`), which allows all traffic both ways. Isolation moves each interface
    to the untracking group, then at once to the quarantine group: connections the instance had open
    become untracked on the first move and are cut by the second, where a move straight to a group
    without rules would leave them open until they time out. `before` maps each interface to the groups
    it was in; rollback puts them back, from wherever either step left them.

    Several findings on one instance are triaged at once, so another case may be isolating it too. An
    interface found in either of vtriage's groups was moved by another isolation: this one never records
    those groups as the interface's own (the isolation that moved it recorded the real ones, and undoes
    them), never sends it back through the untracking group, and finishes the second step for one left
    in the untracking group. Moving an interface into the quarantine group is always safe, so when the
    result is checked, one another isolation just put back in the untracking group is moved on too.
    """

    def __init__(self, ec2_client: Any, quarantine_group_name: str, protected_tag_key: str) -> None:
        """Take a boto3 EC2 client, the quarantine group's name and the tag key that protects an instance."""
        self._ec2 = ec2_client
        self._group_name = quarantine_group_name
        self._untracking_name = quarantine_group_name + UNTRACKING_SUFFIX
        self._protected_tag_key = protected_tag_key

    def run(self, action: Action, dry_run: bool) -> Action:
        """Isolate the action's target instance; when dry_run, only say what would change and change
        nothing. `before` maps each interface to its groups. The `case_id` parameter, when given, tells
        this case from another one named by the instance's `vtriage:case` tag."""
        return self.run_with_checkpoint(action, dry_run, _no_checkpoint)

    def run_with_checkpoint(
        self, action: Action, dry_run: bool, checkpoint: Callable[[Action], None]
    ) -> Action:
        """`run`, handing `checkpoint` the groups of each interface (`before`) before the first one moves,
        and what a stop between the two steps would leave, so that they are on the case should the run
        go no further (`CheckpointingActuator`). Given an action whose `before` an earlier run recorded
        so, the groups it names are those of the interfaces that run moved, and this run finishes them."""
        case_id = action.parameters.get("case_id") or None
        return action.with_outcome_of(self._isolated(action, dry_run, case_id, checkpoint))

    def _isolated(
        self, action: Action, dry_run: bool, case_id: str | None, checkpoint: Callable[[Action], None]
    ) -> Action:
        instance_id = action.target
        try:
            with transient_aws_errors(f"EC2 is unavailable while isolating {instance_id}"):
                return self._isolate(action, dry_run, case_id, checkpoint)
        except _NotVtriagesGroupError as error:
            return _action(instance_id, ActionStatus.FAILED, f"not isolated: {error}")
        except ClientError as error:
            if error_code(error) in _INSTANCE_GONE_CODES:
                return _action(instance_id, ActionStatus.FAILED, f"instance not found: {error}")
            raise

    def rollback(self, action: Action) -> Action:
        """Put each network interface recorded in `before` back in the groups it was in, undoing both steps
        of the isolation (it may be in the untracking group if the isolation stopped between them)."""
        if action.before is None:
            return _unchanged(action, "nothing to undo: no interface groups were recorded")
        if not action.before:
            # Each interface was in vtriage's groups already: the isolation that moved it undoes it.
            return action.with_outcome(
                ActionStatus.ROLLED_BACK,
                "nothing to undo: this case found the instance isolated by another isolation, which "
                "recorded the groups each interface had and puts them back when it is rolled back",
                after=action.after,
            )
        before = {str(eni): sorted(str(group) for group in groups) for eni, groups in action.before.items()}
        return _guard_instance_errors(
            action, "restoring the groups of", lambda: self._restore(action, before)
        )

    def _restore(self, action: Action, before: dict[str, list[str]]) -> Action:
        current = self._existing_groups(list(before))
        missing = [eni for eni in before if eni not in current]
        unknown = [eni for eni in before if eni in current and not before[eni]]
        to_restore = [eni for eni in before if eni in current and before[eni] and current[eni] != before[eni]]
        refused: dict[str, Exception] = {}
        for eni in to_restore:
            try:
                self._ec2.modify_network_interface_attribute(NetworkInterfaceId=eni, Groups=before[eni])
            except ClientError as error:
                if _is_access_denied(error):
                    # Refused for good (an SCP, a Deny on a protected group): the others are still put back.
                    refused[eni] = error
                    continue
                if is_transient(error) or error_code(error) not in {
                    "InvalidGroup.NotFound",
                    "InvalidGroupId.Malformed",
                }:
                    raise
                return action.with_outcome(
                    ActionStatus.FAILED,
                    f"rollback failed: cannot put {eni} back in {', '.join(before[eni])}: {error}",
                    after=current,
                )
        after = self._existing_groups(list(before))
        if refused:
            return action.with_outcome(
                ActionStatus.FAILED, self._refused_rollback(refused, before, after), after=after
            )
        not_restored = {eni: groups for eni, groups in after.items() if before[eni] and groups != before[eni]}
        if missing or not_restored or unknown:
            problems = []
            if missing:
                problems.append(f"network interface(s) {', '.join(missing)} no longer exist")
            if not_restored:
                problems.append(f"{_describe_groups(not_restored, 'still')} after restoring")
            if unknown:
                problems.append(
                    f"the groups {', '.join(unknown)} had before are unknown (an earlier isolation had "
                    "stopped half-way): put them back by hand"
                )
            return action.with_outcome(
                ActionStatus.FAILED, "rollback incomplete: " + "; ".join(problems), after=after
            )
        if not to_restore:
            detail = "already as before isolation: every network interface is in its original groups"
        else:
            restored = _describe_groups({eni: before[eni] for eni in to_restore}, "back")
            detail = f"rolled back: {restored}; both steps of the isolation are undone"
        return action.with_outcome(ActionStatus.ROLLED_BACK, detail, after=after)

    def _refused_rollback(
        self, refused: dict[str, Exception], before: dict[str, list[str]], after: dict[str, list[str]]
    ) -> str:
        """What a person does about the interfaces EC2 refused to put back: each named with the groups it
        was to go back into, EC2's code, which of them carry the protected tag (what such a Deny usually
        reads), and where it is now; the others' outcome. The action stays FAILED with its `before`, so
        that `vtriage rollback` tries again."""
        groups = sorted({group for eni in refused for group in before[eni]})
        try:
            protecting = _protecting_tags(
                self._ec2, {group: group for group in groups}, self._protected_tag_key
            )
        except ClientError:
            protecting = {}
        parts = []
        for eni, error in refused.items():
            code = _refusal(error, code_only=True)
            why = f"EC2 refused to put {eni} back into {', '.join(before[eni])} ({code})"
            marked = [
                f"{group} carries the protected tag {protecting[group]}"
                for group in before[eni]
                if group in protecting
            ]
            if marked:
                why += f": {'; '.join(marked)}, which IAM or an organisation policy may deny changes to"
            now = ", ".join(after.get(eni, [])) or "no group known"
            parts.append(f"{why}; it is still in {now}: move it by hand, then run vtriage rollback again")
        restored = [eni for eni in before if eni not in refused and after.get(eni) == before[eni]]
        if restored:
            parts.append(f"{_describe_groups({eni: before[eni] for eni in restored}, 'back')}")
        return "rollback failed: " + "; ".join(parts)

    def _existing_groups(self, interface_ids: list[str]) -> dict[str, list[str]]:
        """Groups of those of the interfaces that still exist (a filter, so a deleted one is not an error)."""
        response = self._ec2.describe_network_interfaces(
            Filters=[{"Name": "network-interface-id", "Values": interface_ids}]
        )
        return _groups_by_interface(response.get("NetworkInterfaces", []))

    def _isolate(
        self, action: Action, dry_run: bool, case_id: str | None, checkpoint: Callable[[Action], None]
    ) -> Action:
        instance_id = action.target
        instance = _describe_instance(self._ec2, instance_id)
        if instance is None:
            reason = "instance not found (InvalidInstanceID.NotFound) in this account and Region"
            return _action(instance_id, ActionStatus.FAILED, reason)

        tags = _tags(instance)
        protected = _protected_reason(instance, self._protected_tag_key, "not isolated")
        if protected:
            return _action(instance_id, ActionStatus.SKIPPED, protected)

        # The live instance's own interfaces and VPCs, never those a finding names.
        interfaces = instance.get("NetworkInterfaces", [])
        current = _groups_by_interface(interfaces)
        vpc_of = {
            str(interface["NetworkInterfaceId"]): str(interface.get("VpcId") or instance.get("VpcId") or "")
            for interface in interfaces
        }
        if not current or not all(vpc_of.values()):
            state = instance.get("State", {}).get("Name", "unknown")
            return _action(
                instance_id,
                ActionStatus.SKIPPED,
                f"not isolated: the instance has no network interface in a VPC (state {state})",
            )
        vpcs = sorted(set(vpc_of.values()))
        protected = self._protected_network(interfaces, vpcs)
        if protected:
            return _action(instance_id, ActionStatus.SKIPPED, protected)
        quarantine, untracking = self._find_groups(vpcs)
        protected = self._protected_groups([*quarantine.values(), *untracking.values()])
        if protected:
            return _action(instance_id, ActionStatus.SKIPPED, protected)
        untracking_ids = {str(group["GroupId"]) for group in untracking.values() if group is not None}
        quarantine_ids = {str(group["GroupId"]) for group in quarantine.values() if group is not None}
        # An interface already in one of vtriage's groups was moved there by another isolation (another
        # case's, running now or done, or an earlier attempt stopped half-way): its groups before are not
        # these, and that isolation recorded the real ones. This one records only what it finds unmoved.
        in_progress = [eni for eni, groups in current.items() if set(groups) & untracking_ids]
        moved = {eni for eni, groups in current.items() if set(groups) & (untracking_ids | quarantine_ids)}
        # Except those an earlier run of this very action moved: it recorded their groups on the case
        # before moving them (the checkpoint) and stopped; this run keeps those groups and finishes it.
        recorded = _recorded_groups(action.before)
        resumed = {eni for eni in moved if recorded.get(eni)}
        moved_by_other = moved - resumed
        before = {eni: groups for eni, groups in current.items() if eni not in moved}
        before.update({eni: recorded[eni] for eni in sorted(resumed)})
        other = self._other_case(tags, case_id)

        closed = {
            vpc: str(group["GroupId"])
            for vpc, group in quarantine.items()
            if group is not None and not _has_rules(group)
        }
        if all(current[eni] == [closed.get(vpc_of[eni], "")] for eni in current):
            names = ", ".join(f"{self._group_name} ({closed[vpc]})" for vpc in vpcs)
            return _action(
                instance_id,
                ActionStatus.DONE,
                f"already isolated{other}: every network interface is only in {names}; "
                + _whose_groups(resumed, moved_by_other),
                before=before,
                after=current,
            )
        if dry_run:
            detail = self._dry_run_detail(vpc_of, quarantine, untracking, current)
            return _action(instance_id, ActionStatus.DRY_RUN, detail, before=before)

        opened = [vpc for vpc in vpcs if quarantine[vpc] is not None and _has_rules(quarantine[vpc] or {})]
        quarantine_of = {vpc: self._ensure_closed_group(vpc, quarantine[vpc]) for vpc in vpcs}
        untracking_of = {vpc: self._ensure_untracking_group(vpc, untracking[vpc]) for vpc in vpcs}
        # Only what no isolation moved yet passes through the untracking group: sending one that another
        # case already quarantined back through it would open it again.
        to_move = [eni for eni in before if eni not in moved]
        if to_move or in_progress:
            checkpoint(
                _action(
                    instance_id,
                    ActionStatus.PLANNED,
                    self._under_way(sorted({*to_move, *in_progress}), vpcs, untracking_of),
                    before=before,
                )
            )
        failure = self._two_steps(
            to_move, vpc_of, untracking_of, quarantine_of, finish=in_progress, groups_had=current
        )
        if failure is not None:
            after = self._groups_if_known(list(current))
            return _action(instance_id, ActionStatus.FAILED, failure, before=before, after=after)
        after, finished = self._finish_others(list(current), vpc_of, untracking_of, quarantine_of)
        # Verify the effect rather than trust the calls: a security action must not report a false success.
        still_open = {eni: groups for eni, groups in after.items() if groups != [quarantine_of[vpc_of[eni]]]}
        if still_open:
            return _action(
                instance_id,
                ActionStatus.FAILED,
                f"isolation did not take: {_describe_groups(still_open, 'still')} after moving them to "
                f"{self._group_name}",
                before=before,
                after=after,
            )
        detail = self._isolated_detail(
            _Isolation(
                current=current,
                vpcs=vpcs,
                untracking=untracking_of,
                quarantine=quarantine_of,
                to_move=to_move,
                in_progress=in_progress,
                finished=finished,
                resumed=resumed,
                moved_by_other=moved_by_other,
            ),
            other,
            opened,
        )
        return _action(instance_id, ActionStatus.DONE, detail, before=before, after=after)

    def _isolated_detail(self, done: _Isolation, other: str, opened: list[str]) -> str:
        """What a successful isolation says it did, step by step, and for whom."""
        untracking_named = ", ".join(f"{self._untracking_name} ({done.untracking[v]})" for v in done.vpcs)
        quarantine_named = ", ".join(f"{self._group_name} ({done.quarantine[v]})" for v in done.vpcs)
        changes = []
        if done.to_move:
            moved = _describe_groups({eni: done.current[eni] for eni in done.to_move}, "was")
            changes.append(
                f"moved {moved} first to {untracking_named}, which allows all traffic so that the "
                f"connections they carried became untracked, then to {quarantine_named}, which allows "
                'none: the untracked connections were cut at once (EC2 User Guide, "Security group '
                f'connection tracking"); {_STAYS_TRACKED}'
            )
        if done.resumed:
            left_between = sorted(done.resumed & set(done.in_progress))
            changes.append(
                f"an earlier run of this action, which stopped, had moved {', '.join(sorted(done.resumed))} "
                "and recorded the groups they had (kept here, for a rollback)"
                + (
                    f"; {', '.join(left_between)} were moved on from {untracking_named} to "
                    f"{quarantine_named} (its second step, done here)"
                    if left_between
                    else ""
                )
            )
        relied = sorted(done.moved_by_other | (set(done.finished) - done.resumed))
        if relied:
            finished_here = sorted((set(done.in_progress) | set(done.finished)) - done.resumed)
            changes.append(
                f"isolation in progress or done by another case{other}: {', '.join(relied)} had been "
                "moved to vtriage's groups by it"
                + (
                    f", and {', '.join(finished_here)} were moved on from "
                    f"{untracking_named} to {quarantine_named} (its second step, done here)"
                    if finished_here
                    else ""
                )
                + "; the groups they had before are recorded by that isolation, which undoes it"
            )
        if opened:
            changes.append(f"revoked the rules found on {self._group_name} in {', '.join(opened)}")
        return "isolated: " + "; ".join(changes) + "; the quarantine group allows no traffic in or out"

    def _protected_network(self, interfaces: list[dict[str, Any]], vpcs: list[str]) -> str | None:
        """Why the instance's network is left alone: which of its interfaces, their subnets and their VPCs
        (where vtriage's groups are created) carry the protected tag; None when none does. IAM's Deny
        would refuse a move or a new group there part-way through the isolation, after other moves."""
        named: dict[str, str] = {}
        for interface in interfaces:
            named[str(interface["NetworkInterfaceId"])] = (
                f"network interface {interface['NetworkInterfaceId']}"
            )
        for interface in interfaces:
            if interface.get("SubnetId"):
                named.setdefault(str(interface["SubnetId"]), f"subnet {interface['SubnetId']}")
        named.update({vpc: f"VPC {vpc}" for vpc in vpcs})
        return _protected_resources(self._ec2, named, self._protected_tag_key, "not isolated")

    def _protected_groups(self, groups: list[dict[str, Any] | None]) -> str | None:
        """Why the instance is left alone: which of vtriage's groups found carry the protected tag (rules
        revoked or added there, interfaces moved into them); None when none does."""
        reasons = []
        for group in groups:
            if group is None:
                continue
            tags = ((str(tag.get("Key")), str(tag.get("Value", ""))) for tag in group.get("Tags", []))
            protecting = protecting_tag(tags, self._protected_tag_key)
            if protecting is not None:
                named = f"security group {group.get('GroupName')} ({group['GroupId']})"
                reasons.append(f"{named} carries the protected tag {protecting}")
        return "not isolated: " + "; ".join(reasons) if reasons else None

    def _other_case(self, tags: dict[str, str], case_id: str | None) -> str:
        """' by case X' when the instance's case tag names another case than this one; '' otherwise."""
        tagged = tags.get(CASE_TAG)
        if not tagged or tagged == case_id:
            return ""
        return f" (the instance's {CASE_TAG} tag names case {tagged!r:.80})"

    def _finish_others(
        self,
        interface_ids: list[str],
        vpc_of: dict[str, str],
        untracking: dict[str, str],
        quarantine: dict[str, str],
    ) -> tuple[dict[str, list[str]], list[str]]:
        """The interfaces' groups now, once each found in the untracking group (another case's isolation
        between its two steps) has been moved on to the quarantine group; and the ones so moved."""
        finished: list[str] = []
        after = self._current_groups(interface_ids)
        for _ in range(3):
            between = [eni for eni, groups in after.items() if groups == [untracking[vpc_of[eni]]]]
            if not between:
                break
            for eni in between:
                self._ec2.modify_network_interface_attribute(
                    NetworkInterfaceId=eni, Groups=[quarantine[vpc_of[eni]]]
                )
            finished.extend(eni for eni in between if eni not in finished)
            after = self._current_groups(interface_ids)
        return after, finished

    def _two_steps(
        self,
        to_move: list[str],
        vpc_of: dict[str, str],
        untracking: dict[str, str],
        quarantine: dict[str, str],
        *,
        finish: list[str],
        groups_had: dict[str, list[str]],
    ) -> str | None:
        """Move each interface to the untracking group, then each (and each of `finish`, left in the
        untracking group by another isolation or an earlier run) to the quarantine group; None when both
        steps took.

        Should any move fail (an error EC2 answered, a timeout, a lost connection, anything) once an
        interface may be in the untracking group, none is left in that group, which allows everything:
        each goes on to the quarantine group (the only groups the function's role may move interfaces
        into), and the reason is returned, so that the action fails with its `before` for a rollback
        (`_close_after`). Should EC2 refuse the very first move, nothing changed: throttling or a server
        error is raised as `TransientError`, for the Retry; any other refusal (IAM's, say) is returned as
        the reason, saying that no interface moved. `groups_had` are the groups each interface was in."""
        second = to_move + [eni for eni in finish if eni not in to_move]
        # Those in the untracking group: each left there before this run, and each whose move was answered.
        untracked: list[str] = list(finish)
        moving: str | None = None
        closed: set[str] = set()
        try:
            for eni in to_move:
                moving = eni
                self._ec2.modify_network_interface_attribute(
                    NetworkInterfaceId=eni, Groups=[untracking[vpc_of[eni]]]
                )
                untracked.append(eni)
            for eni in second:
                moving = eni
                self._ec2.modify_network_interface_attribute(
                    NetworkInterfaceId=eni, Groups=[quarantine[vpc_of[eni]]]
                )
                closed.add(eni)
        except Exception as error:  # whatever stopped it, no interface may stay in the open group
            # EC2 made no move it answered with an error; a move whose answer never came (a timeout, a
            # lost connection) it may have made.
            unanswered = moving if not isinstance(error, ClientError) else None
            if not untracked and unanswered is None:
                if isinstance(error, ClientError) and not is_transient(error):
                    return (
                        f"not isolated: EC2 refused the first move, of {moving} into {self._untracking_name} "
                        f"({_refusal(error)}): no interface was moved: each is still in the groups it had"
                    )
                with transient_aws_errors("EC2 is unavailable while isolating"):
                    raise
            return self._close_after(
                error,
                second,
                passed=set(untracked),
                unanswered=unanswered,
                closed=closed,
                vpc_of=vpc_of,
                quarantine=quarantine,
                groups_had=groups_had,
            )
        return None

    def _close_after(
        self,
        error: Exception,
        second: list[str],
        *,
        passed: set[str],
        unanswered: str | None,
        closed: set[str],
        vpc_of: dict[str, str],
        quarantine: dict[str, str],
        groups_had: dict[str, list[str]],
    ) -> str:
        """Once the two steps stopped on `error`, move every interface not yet in the quarantine group
        straight there; the reason the isolation failed, saying what each interface went through and
        where it is. `passed` are the interfaces EC2 answered it moved into the untracking group (or found
        there), `unanswered` the one whose move went unanswered (EC2 may have made it), if any.

        When one cannot be moved, `TransientError` asks for the state machine's Retry, which moves it on,
        saying which may still be open to all traffic; unless IAM refused every such move: no retry
        would pass, and the reason says first which interfaces are in the untracking group (open to all
        traffic), then which were never moved (in their own groups)."""
        stopped = f"isolation stopped between its two steps ({type(error).__name__}: {error})"
        refused = self._quarantine_directly([eni for eni in second if eni not in closed], vpc_of, quarantine)
        # Only an interface that entered the untracking group, or may have, can be open to all traffic.
        entered = passed | ({unanswered} if unanswered else set())
        left_open = [eni for eni in second if eni in refused and eni in entered]
        never_moved = [eni for eni in second if eni in refused and eni not in entered]
        if not all(_is_access_denied(refusal) for refusal in refused.values()):
            raise TransientError(self._retry_reason(stopped, left_open, never_moved)) from error
        reasons = []
        if left_open:
            them = "it" if len(left_open) == 1 else "them"
            where = (
                "may still be"
                if unanswered in left_open
                else ("is still" if len(left_open) == 1 else "are still")
            )
            codes = ", ".join(sorted({_refusal(refused[eni], code_only=True) for eni in left_open}))
            reasons.append(
                f"{', '.join(left_open)} {where} in {self._untracking_name}, which allows all traffic in and "
                f"out: EC2 refused to move {them} on to {self._group_name} ({codes}): move {them} by hand "
                "now, or roll the case back (the groups each interface had are recorded on it)"
            )
        reasons.extend(
            f"{eni} was not isolated: EC2 refused to move it ({_refusal(refused[eni], code_only=True)}), so "
            f"it is still in the groups it had ({', '.join(groups_had.get(eni, [])) or 'none'})"
            for eni in never_moved
        )
        reasons.append(stopped)
        moved_on = [eni for eni in second if eni not in refused]
        if moved_on:
            which = (
                "every interface was then"
                if not refused
                else f"{', '.join(moved_on)} {'was' if len(moved_on) == 1 else 'were'}"
            )
            reasons.append(f"{which} moved on to {self._group_name}: {self._how_cut(moved_on, passed)}")
        return "; ".join(reasons)

    def _how_cut(self, moved_on: list[str], passed: set[str]) -> str:
        """Whether the connections of the interfaces moved on to the quarantine group were cut: only those
        of the ones that passed through the untracking group first."""
        straight = [eni for eni in moved_on if eni not in passed]
        if straight:
            return (
                f"{', '.join(straight)} may not have passed through {self._untracking_name} (a move there "
                "failed, went unanswered or was never made), so connections they carried may stay open "
                "until they time out"
            )
        return f"each had passed through {self._untracking_name} first, so its connections were cut too"

    def _retry_reason(self, stopped: str, left_open: list[str], never_moved: list[str]) -> str:
        """What the state machine's Retry is told when interfaces could not be moved on: which may still be
        open to all traffic, and which never entered the untracking group."""
        reasons = [stopped]
        if left_open:
            reasons.append(
                f"{', '.join(left_open)} could not be moved on to {self._group_name} and may still be in "
                f"{self._untracking_name}, which allows all traffic in and out: the retry moves them on; "
                "should every retry fail, move them by hand now, or roll the case back (the groups each "
                "interface had are recorded on it)"
            )
        if never_moved:
            reasons.append(
                f"{', '.join(never_moved)} never entered {self._untracking_name} but could not be moved to "
                f"{self._group_name} either: not isolated yet, the retry isolates them"
            )
        return "; ".join(reasons)

    def _quarantine_directly(
        self, to_move: list[str], vpc_of: dict[str, str], quarantine: dict[str, str]
    ) -> dict[str, Exception]:
        """Move every interface straight to the quarantine group; the error of each that could not be
        moved, whatever it was."""
        refused: dict[str, Exception] = {}
        for eni in to_move:
            try:
                self._ec2.modify_network_interface_attribute(
                    NetworkInterfaceId=eni, Groups=[quarantine[vpc_of[eni]]]
                )
            except Exception as error:  # whatever the error: the others must still be moved, and it reported
                refused[eni] = error
        return refused

    def _under_way(self, moving: list[str], vpcs: list[str], untracking: dict[str, str]) -> str:
        """What the case says while the two steps run: what a stop between them would leave open (first,
        so that a ticket that shortens it keeps that)."""
        groups = ", ".join(f"{self._untracking_name} ({untracking[vpc]})" for vpc in vpcs)
        return (
            f"isolation started; should it stop between its two steps, any of {', '.join(moving)} left in "
            f"{groups} is open to all traffic in and out: running the action again moves them on to "
            f"{self._group_name}, and a rollback puts each back in the groups recorded here"
        )

    def _find_group(self, vpc_id: str, name: str) -> dict[str, Any] | None:
        """vtriage's group of this name in the VPC; `_NotVtriagesGroupError` when that one is not its."""
        return self._groups_named([vpc_id], [name])[vpc_id, name]

    def _find_groups(
        self, vpc_ids: list[str]
    ) -> tuple[dict[str, dict[str, Any] | None], dict[str, dict[str, Any] | None]]:
        """vtriage's quarantine and untracking groups in each VPC, by VPC (None where missing), asked for
        in one call; `_NotVtriagesGroupError` for the first found that is not vtriage's, quarantine groups
        first."""
        found = self._groups_named(vpc_ids, [self._group_name, self._untracking_name])
        return (
            {vpc: found[vpc, self._group_name] for vpc in vpc_ids},
            {vpc: found[vpc, self._untracking_name] for vpc in vpc_ids},
        )

    def _groups_named(
        self, vpc_ids: list[str], names: list[str]
    ) -> dict[tuple[str, str], dict[str, Any] | None]:
        """The groups of these names in these VPCs, by (VPC, name), None where missing (a name is unique in a
        VPC); `_NotVtriagesGroupError` for the first found, by name then VPC, that is not vtriage's."""
        response = self._ec2.describe_security_groups(
            Filters=[
                {"Name": "vpc-id", "Values": vpc_ids},
                {"Name": "group-name", "Values": names},
            ]
        )
        found: dict[tuple[str, str], dict[str, Any] | None] = dict.fromkeys(
            ((vpc, name) for name in names for vpc in vpc_ids), None
        )
        for group in response.get("SecurityGroups", []):
            where = (str(group.get("VpcId")), str(group.get("GroupName")))
            if where in found and found[where] is None:
                found[where] = dict(group)
        for (vpc_id, name), group in found.items():
            if group is not None and _purpose(group) != QUARANTINE_PURPOSE:
                raise _NotVtriagesGroupError(
                    f"security group {name} ({group['GroupId']}) in {vpc_id} does not carry the tag "
                    f"{PURPOSE_TAG}={QUARANTINE_PURPOSE}: vtriage did not create it and does not use it; "
                    "rename it, or tag it if it is meant as vtriage's"
                )
        return found

    def _create_group(self, vpc_id: str, name: str, description: str) -> dict[str, Any]:
        try:
            self._ec2.create_security_group(
                GroupName=name,
                Description=description,
                VpcId=vpc_id,
                TagSpecifications=[
                    {
                        "ResourceType": "security-group",
                        "Tags": [
                            {"Key": "Name", "Value": name},
                            {"Key": PURPOSE_TAG, "Value": QUARANTINE_PURPOSE},
                        ],
                    }
                ],
            )
        except ClientError as error:
            # Another isolation in the same VPC created it first: use theirs.
            if error_code(error) != "InvalidGroup.Duplicate":
                raise
        group = self._find_group(vpc_id, name)
        if group is None:
            # EC2 is eventually consistent: the new group may take a moment to be listed.
            raise TransientError(f"security group {name} not visible yet in {vpc_id}")
        return group

    def _ensure_closed_group(self, vpc_id: str, group: dict[str, Any] | None) -> str:
        """The quarantine group's id, created if missing, with every rule on it revoked."""
        if group is None:
            group = self._create_group(
                vpc_id, self._group_name, "vtriage quarantine: no inbound, no outbound traffic"
            )
        group_id = str(group["GroupId"])
        # A new group comes with an allow-all egress rule; a found one may have been opened by hand.
        if group.get("IpPermissions"):
            self._revoke(self._ec2.revoke_security_group_ingress, group_id, group["IpPermissions"])
        if group.get("IpPermissionsEgress"):
            self._revoke(self._ec2.revoke_security_group_egress, group_id, group["IpPermissionsEgress"])
        return group_id

    def _ensure_untracking_group(self, vpc_id: str, group: dict[str, Any] | None) -> str:
        """The untracking group's id, created if missing, allowing all traffic in and out (IPv4 and IPv6)."""
        if group is None:
            group = self._create_group(
                vpc_id,
                self._untracking_name,
                "vtriage isolation, first step: allows all traffic so that open connections become "
                "untracked; interfaces pass through it to the quarantine group",
            )
        group_id = str(group["GroupId"])
        if not _allows_all(group.get("IpPermissions", [])):
            self._authorize(self._ec2.authorize_security_group_ingress, group_id)
        if not _allows_all(group.get("IpPermissionsEgress", [])):
            self._authorize(self._ec2.authorize_security_group_egress, group_id)
        return group_id

    @staticmethod
    def _authorize(authorize: Any, group_id: str) -> None:
        for permission in _ALLOW_ALL[0]["IpRanges"], _ALLOW_ALL[0]["Ipv6Ranges"]:
            key = "IpRanges" if "CidrIp" in permission[0] else "Ipv6Ranges"
            try:
                authorize(GroupId=group_id, IpPermissions=[{"IpProtocol": "-1", key: permission}])
            except ClientError as error:
                # Already there (a new group's egress rule, or a concurrent isolation's).
                if error_code(error) != "InvalidPermission.Duplicate":
                    raise

    @staticmethod
    def _revoke(revoke: Any, group_id: str, permissions: list[dict[str, Any]]) -> None:
        try:
            revoke(GroupId=group_id, IpPermissions=permissions)
        except ClientError as error:
            # A concurrent isolation in the same VPC revoked them first: the group is closed either way.
            if error_code(error) != "InvalidPermission.NotFound":
                raise

    def _groups_if_known(self, interface_ids: list[str]) -> dict[str, list[str]] | None:
        """The interfaces' groups now, or None when EC2 cannot say (the failure being recorded matters
        more than this reading of its effect)."""
        try:
            return self._current_groups(interface_ids)
        except Exception:  # whatever the error: the failure is recorded without it
            return None

    def _current_groups(self, interface_ids: list[str]) -> dict[str, list[str]]:
        response = self._ec2.describe_network_interfaces(NetworkInterfaceIds=interface_ids)
        return _groups_by_interface(response.get("NetworkInterfaces", []))

    def _dry_run_detail(
        self,
        vpc_of: dict[str, str],
        quarantine: dict[str, dict[str, Any] | None],
        untracking: dict[str, dict[str, Any] | None],
        current: dict[str, list[str]],
    ) -> str:
        def named(name: str, group: dict[str, Any] | None, vpc: str, rules: str) -> str:
            if group is None:
                return f"a new security group {name} in {vpc} {rules} (not created)"
            return f"{name} ({group['GroupId']})"

        targets = []
        for vpc in sorted(set(vpc_of.values())):
            first = named(self._untracking_name, untracking[vpc], vpc, "allowing all traffic")
            second = named(self._group_name, quarantine[vpc], vpc, "with no rules")
            if quarantine[vpc] is not None and _has_rules(quarantine[vpc] or {}):
                second += " after revoking the rules found on it"
            targets.append(f"first to {first}, then to {second}")
        return (
            f"dry run, nothing changed: would move {_describe_groups(current, 'now')} "
            + "; ".join(targets)
            + ", so that connections open now are cut, not left to time out"
        )


def _whose_groups(resumed: set[str], moved_by_other: set[str]) -> str:
    """Who recorded the groups the interfaces of an instance found isolated had before."""
    whose = (
        f"an earlier run of this action moved {', '.join(sorted(resumed))} there and recorded the groups "
        "they had, kept here for a rollback"
        if resumed
        else ""
    )
    if moved_by_other or not resumed:
        whose += ("; for the others, " if whose else "") + (
            "the groups they had before are recorded by the isolation that moved them, which undoes it"
        )
    return whose


def _no_checkpoint(_: Action) -> None:
    """The checkpoint of a run no case records (a run outside the remediation)."""


def _recorded_groups(before: dict[str, Any] | None) -> dict[str, list[str]]:
    """The groups of each interface an isolation's `before` names (a checkpoint of an earlier run)."""
    return {
        str(eni): sorted(str(group) for group in groups)
        for eni, groups in (before or {}).items()
        if isinstance(groups, list)
    }


def _purpose(group: dict[str, Any]) -> str | None:
    return {str(tag.get("Key")): str(tag.get("Value")) for tag in group.get("Tags", [])}.get(PURPOSE_TAG)


def _has_rules(group: dict[str, Any]) -> bool:
    return bool(group.get("IpPermissions") or group.get("IpPermissionsEgress"))


def _allows_all(permissions: list[dict[str, Any]]) -> bool:
    """Whether the rules allow every protocol from/to 0.0.0.0/0 and ::/0."""
    everything = [p for p in permissions if str(p.get("IpProtocol")) == "-1"]
    ipv4 = any(r.get("CidrIp") == "0.0.0.0/0" for p in everything for r in p.get("IpRanges", []))
    ipv6 = any(r.get("CidrIpv6") == "::/0" for p in everything for r in p.get("Ipv6Ranges", []))
    return ipv4 and ipv6


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


class Ec2VolumeSnapshots:
    """`ResponseActuator` for SNAPSHOT_VOLUMES: snapshots every EBS volume of the instance for forensics,
    each tagged with the case id, the instance and the device; none when the instance or one of its
    volumes carries the protected tag. Nothing to undo: snapshots are kept."""

    def __init__(self, ec2_client: Any, protected_tag_key: str) -> None:
        """Take a boto3 EC2 client and the tag key that protects an instance and its volumes."""
        self._ec2 = ec2_client
        self._protected_tag_key = protected_tag_key

    def run(self, action: Action, dry_run: bool) -> Action:
        """Snapshot the volumes not yet snapshotted for this case; `after` maps each volume to its snapshot.
        A volume EC2 refuses to snapshot (IAM, a KMS grant) fails the action, which names the snapshots
        taken and each volume refused (`after["refused"]`: volume to EC2's error code); the others are
        still taken.

        Needs `parameters["case_id"]` (set by the remediation's run step).
        """
        return _guard_instance_errors(action, "snapshotting", lambda: self._snapshot(action, dry_run))

    def rollback(self, action: Action) -> Action:
        """Nothing to undo: the snapshots are evidence, kept for forensics."""
        snapshots = (action.after or {}).get("snapshots") or {}
        kept = ", ".join(str(snapshot) for snapshot in snapshots.values()) or "none taken"
        return _unchanged(action, f"nothing to undo: snapshots kept for forensics ({kept})")

    def _snapshot(self, action: Action, dry_run: bool) -> Action:
        case_id = action.parameters.get("case_id")
        if not case_id:
            return action.with_outcome(
                ActionStatus.FAILED, "parameter case_id missing: snapshots are tagged with it"
            )
        instance = _describe_instance(self._ec2, action.target)
        if instance is None:
            return action.with_outcome(ActionStatus.FAILED, "instance not found (InvalidInstanceID.NotFound)")
        protected = _protected_reason(instance, self._protected_tag_key, "not snapshotted")
        if protected:
            return action.with_outcome(ActionStatus.SKIPPED, protected)
        volumes = {
            str(mapping["Ebs"]["VolumeId"]): str(mapping.get("DeviceName", "?"))
            for mapping in instance.get("BlockDeviceMappings", [])
            if mapping.get("Ebs", {}).get("VolumeId")
        }
        if not volumes:
            return action.with_outcome(
                ActionStatus.SKIPPED, "not snapshotted: the instance has no EBS volume"
            )
        # IAM's Deny would refuse a protected volume's snapshot after the others' were taken: none is.
        protected = _protected_resources(
            self._ec2,
            {volume: f"volume {volume} ({device})" for volume, device in volumes.items()},
            self._protected_tag_key,
            "not snapshotted",
        )
        if protected:
            return action.with_outcome(ActionStatus.SKIPPED, protected)

        taken = self._snapshots_of_case(case_id, action.target)
        before = {
            "volumes": volumes,
            "snapshots": {vol: snap for vol, snap in taken.items() if vol in volumes},
        }
        to_take = [volume for volume in volumes if volume not in taken]
        if not to_take:
            listing = ", ".join(f"{vol} ({volumes[vol]}) in {taken[vol]}" for vol in volumes)
            return action.with_outcome(
                ActionStatus.DONE, f"already snapshotted for {case_id}: {listing}", before, before
            )
        if dry_run:
            listing = ", ".join(f"{vol} ({volumes[vol]})" for vol in to_take)
            detail = f"dry run, nothing changed: would snapshot {listing}, tagged {CASE_TAG}={case_id}"
            return action.with_outcome(ActionStatus.DRY_RUN, detail, before)

        new: dict[str, str] = {}
        refused: dict[str, ClientError] = {}
        for volume in to_take:
            try:
                new[volume] = self._take(volume, volumes[volume], action.target, case_id)
            except ClientError as error:
                if is_transient(error):
                    raise  # retried: the snapshots taken are found by their tags and not taken again
                # Each volume is evidence of its own: the others are still snapshotted.
                refused[volume] = error
        after: dict[str, Any] = {"volumes": volumes, "snapshots": {**before["snapshots"], **new}}
        listing = ", ".join(f"{vol} ({volumes[vol]}) in {snap}" for vol, snap in new.items())
        if not refused:
            detail = f"snapshotted for forensics: {listing}"
            return action.with_outcome(ActionStatus.DONE, detail, before, after)
        after["refused"] = {vol: _refusal(error, code_only=True) for vol, error in refused.items()}
        took = "; ".join(f"took {snap} of {vol} ({volumes[vol]})" for vol, snap in new.items())
        earlier = ", ".join(f"{snap} of {vol} ({volumes[vol]})" for vol, snap in before["snapshots"].items())
        parts = [
            took or "no snapshot taken",
            *(
                f"EC2 refused the snapshot of {vol} ({volumes[vol]}): {_refusal(error, code_only=True)}"
                for vol, error in refused.items()
            ),
            *([f"taken earlier for {case_id}: {earlier}"] if earlier else []),
        ]
        headline = "snapshotted only in part" if new or earlier else "not snapshotted"
        return action.with_outcome(ActionStatus.FAILED, f"{headline}: " + "; ".join(parts), before, after)

    def _take(self, volume: str, device: str, instance_id: str, case_id: str) -> str:
        """Snapshot one volume, tagged with the case, the instance and the device; its snapshot id."""
        response = self._ec2.create_snapshot(
            VolumeId=volume,
            Description=f"vtriage forensics: {device} of {instance_id}, case {case_id}",
            TagSpecifications=[
                {
                    "ResourceType": "snapshot",
                    "Tags": [
                        {"Key": CASE_TAG, "Value": case_id},
                        {"Key": SNAPSHOT_INSTANCE_TAG, "Value": instance_id},
                        {"Key": SNAPSHOT_DEVICE_TAG, "Value": device},
                        {"Key": "vtriage:purpose", "Value": "forensics"},
                    ],
                }
            ],
        )
        return str(response["SnapshotId"])

    def _snapshots_of_case(self, case_id: str, instance_id: str) -> dict[str, str]:
        """Volume id to snapshot id, for the snapshots already taken of this instance for this case."""
        paginator = self._ec2.get_paginator("describe_snapshots")
        found: dict[str, str] = {}
        for page in paginator.paginate(
            OwnerIds=["self"],
            Filters=[
                {"Name": f"tag:{CASE_TAG}", "Values": [case_id]},
                {"Name": f"tag:{SNAPSHOT_INSTANCE_TAG}", "Values": [instance_id]},
            ],
        ):
            for snapshot in page.get("Snapshots", []):
                if snapshot.get("State") != "error":
                    found.setdefault(str(snapshot["VolumeId"]), str(snapshot["SnapshotId"]))
        return found


class Ec2InstanceTagging:
    """`ResponseActuator` for TAG_INSTANCE: tags the instance with `vtriage:case` and `vtriage:quarantined`;
    rollback puts those two tags back as they were (removed, or their old values)."""

    def __init__(self, ec2_client: Any, protected_tag_key: str) -> None:
        """Take a boto3 EC2 client and the tag key that protects an instance."""
        self._ec2 = ec2_client
        self._protected_tag_key = protected_tag_key

    def run(self, action: Action, dry_run: bool) -> Action:
        """Tag the instance; `before`/`after` hold the two tags' values (None when absent).

        Needs `parameters["case_id"]` (set by the remediation's run step).
        """
        return _guard_instance_errors(action, "tagging", lambda: self._tag(action, dry_run))

    def rollback(self, action: Action) -> Action:
        """Remove the tags that were absent before, and give back their old values to the others."""
        if not action.before or not isinstance(action.before.get("tags"), dict):
            return _unchanged(action, "nothing to undo: no tags were recorded")
        before: dict[str, str | None] = dict(action.before["tags"])
        return _guard_instance_errors(action, "untagging", lambda: self._untag(action, before))

    def _tag(self, action: Action, dry_run: bool) -> Action:
        case_id = action.parameters.get("case_id")
        if not case_id:
            return action.with_outcome(
                ActionStatus.FAILED, "parameter case_id missing: the instance is tagged with it"
            )
        instance = _describe_instance(self._ec2, action.target)
        if instance is None:
            return action.with_outcome(ActionStatus.FAILED, "instance not found (InvalidInstanceID.NotFound)")
        protected = _protected_reason(instance, self._protected_tag_key, "not tagged")
        if protected:
            return action.with_outcome(ActionStatus.SKIPPED, protected)
        wanted = {CASE_TAG: case_id, QUARANTINED_TAG: "true"}
        current = _tags(instance)
        before = {"tags": {key: current.get(key) for key in wanted}}
        to_set = {key: value for key, value in wanted.items() if current.get(key) != value}
        if not to_set:
            return action.with_outcome(
                ActionStatus.DONE, f"already tagged: {_describe_tags(wanted)}", before, before
            )
        if dry_run:
            detail = f"dry run, nothing changed: would tag {_describe_tags(to_set)}" + _replacing(
                current, to_set
            )
            return action.with_outcome(ActionStatus.DRY_RUN, detail, before)
        self._ec2.create_tags(
            Resources=[action.target], Tags=[{"Key": key, "Value": value} for key, value in to_set.items()]
        )
        after = {"tags": {key: self._current_tags(action.target).get(key) for key in wanted}}
        detail = f"tagged {_describe_tags(to_set)}" + _replacing(current, to_set)
        return action.with_outcome(ActionStatus.DONE, detail, before, after)

    def _untag(self, action: Action, before: dict[str, str | None]) -> Action:
        current = self._current_tags(action.target)
        to_delete = [key for key, value in before.items() if value is None and key in current]
        to_reset = {
            key: value for key, value in before.items() if value is not None and current.get(key) != value
        }
        if to_delete:
            self._ec2.delete_tags(Resources=[action.target], Tags=[{"Key": key} for key in to_delete])
        if to_reset:
            self._ec2.create_tags(
                Resources=[action.target],
                Tags=[{"Key": key, "Value": value} for key, value in to_reset.items()],
            )
        now = self._current_tags(action.target)
        after = {"tags": {key: now.get(key) for key in before}}
        if not to_delete and not to_reset:
            return action.with_outcome(
                ActionStatus.ROLLED_BACK, "already as before: the tags are as they were", after=after
            )
        changes = []
        if to_delete:
            changes.append(f"removed {', '.join(to_delete)}")
        if to_reset:
            changes.append(f"restored {_describe_tags(to_reset)}")
        return action.with_outcome(
            ActionStatus.ROLLED_BACK, "rolled back: " + "; ".join(changes), after=after
        )

    def _current_tags(self, instance_id: str) -> dict[str, str]:
        instance = _describe_instance(self._ec2, instance_id)
        if instance is None:
            raise ClientError(
                {"Error": {"Code": "InvalidInstanceID.NotFound", "Message": f"{instance_id} not found"}},
                "DescribeInstances",
            )
        return _tags(instance)


def _describe_instance(ec2: Any, instance_id: str) -> dict[str, Any] | None:
    response = ec2.describe_instances(InstanceIds=[instance_id])
    for reservation in response.get("Reservations", []):
        for instance in reservation.get("Instances", []):
            return dict(instance)
    return None


def _tags(instance: dict[str, Any]) -> dict[str, str]:
    return {str(tag["Key"]): str(tag.get("Value", "")) for tag in instance.get("Tags", [])}


def _protected_reason(instance: dict[str, Any], protected_tag_key: str, verb: str) -> str | None:
    protecting = protecting_tag(_tags(instance).items(), protected_tag_key)
    if protecting is None:
        return None
    return f"{verb}: the instance carries the protected tag {protecting}"


def _protecting_tags(
    ec2: Any, resource_ids: Iterable[str], protected_tag_key: str
) -> dict[str, ProtectingTag]:
    """The tag protecting each of these resources, by resource id (EC2's DescribeTags, one listing for
    resources of any type); a resource no tag protects is absent."""
    ids = sorted(set(resource_ids))
    if not ids:
        return {}
    tags: dict[str, list[tuple[str, str]]] = {}
    for page in ec2.get_paginator("describe_tags").paginate(Filters=[{"Name": "resource-id", "Values": ids}]):
        for tag in page.get("Tags", []):
            tags.setdefault(str(tag["ResourceId"]), []).append((str(tag["Key"]), str(tag.get("Value", ""))))
    found = {resource: protecting_tag(pairs, protected_tag_key) for resource, pairs in tags.items()}
    return {resource: protecting for resource, protecting in found.items() if protecting is not None}


def _protected_resources(ec2: Any, named: dict[str, str], protected_tag_key: str, verb: str) -> str | None:
    """Why an action is skipped: each resource of `named` (id to how a person reads it) that carries the
    protected tag, with that tag; None when none does."""
    protecting = _protecting_tags(ec2, named, protected_tag_key)
    reasons = [
        f"{named[rid]} carries the protected tag {protecting[rid]}" for rid in named if rid in protecting
    ]
    return f"{verb}: " + "; ".join(reasons) if reasons else None


def _is_access_denied(error: Exception) -> bool:
    """Whether IAM refused the call: no retry makes it pass."""
    return isinstance(error, ClientError) and error_code(error) in _ACCESS_DENIED_CODES


def _refusal(error: Exception, *, code_only: bool = False) -> str:
    """An error as a reason says it: its code and EC2's message (`UnauthorizedOperation: ...`), or its
    code alone; a class name for an error EC2 did not answer with."""
    if not isinstance(error, ClientError):
        return type(error).__name__
    message = str(error.response.get("Error", {}).get("Message", ""))
    return error_code(error) if code_only or not message else f"{error_code(error)}: {message}"


def _describe_tags(tags: dict[str, str]) -> str:
    return ", ".join(f"{key}={value}" for key, value in tags.items())


def _replacing(current: dict[str, str], to_set: dict[str, str]) -> str:
    replaced = {key: current[key] for key in to_set if key in current}
    return f" (replacing {_describe_tags(replaced)})" if replaced else ""


def _guard_instance_errors(action: Action, doing: str, operation: Callable[[], Action]) -> Action:
    """Run an EC2 operation: throttling and 5xx become TransientError, a missing instance a FAILED action."""
    try:
        with transient_aws_errors(f"EC2 is unavailable while {doing} {action.target}"):
            return operation()
    except ClientError as error:
        if error_code(error) in _INSTANCE_GONE_CODES:
            return action.with_outcome(ActionStatus.FAILED, f"instance not found: {error}")
        raise


def _unchanged(action: Action, detail: str) -> Action:
    return action.model_copy(update={"detail": detail})
