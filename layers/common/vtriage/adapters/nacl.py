"""Blocking an IP address with deny entries in the network ACLs of an instance's subnets, where the team
opted them in."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from vtriage.adapters.aws_errors import error_code, is_transient, transient_aws_errors
from vtriage.adapters.own_addresses import own_address_refusal
from vtriage.models import Action, ActionStatus
from vtriage.protected_tag import protecting_tag

# Where each network ACL keeps the rule number the next vtriage entry goes to (its rotation cursor).
CURSOR_TAG = "vtriage:next-rule-number"
# The tag by which the team lets vtriage add deny entries to a network ACL: without it, none is written.
OPT_IN_TAG, OPT_IN_VALUE = "vtriage:nacl-block", "allowed"
_INSTANCE_GONE_CODES = frozenset({"InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed"})
_DIRECTIONS = {False: "ingress", True: "egress"}
_LIMIT_CODES = frozenset({"NetworkAclEntryLimitExceeded", "RulesPerAclLimitExceeded"})

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class _Slot:
    """One entry to write: a network ACL, a direction, a rule number and the entry it replaces."""

    network_acl_id: str
    egress: bool
    rule_number: int
    previous: dict[str, Any] | None

    def record(self) -> dict[str, Any]:
        return {
            "network_acl_id": self.network_acl_id,
            "egress": self.egress,
            "rule_number": self.rule_number,
            "previous": self.previous,
        }

    def describe(self) -> str:
        text = f"{self.network_acl_id} {_DIRECTIONS[self.egress]} rule {self.rule_number}"
        if self.previous is not None:
            text += f" (replacing the deny of {_cidr_of(self.previous)})"
        return text


class NaclIpBlocker:
    """`ResponseActuator` for BLOCK_IP_NACL: an ingress and an egress deny entry for the address in the
    network ACLs of the subnets of the instance `parameters["instance_id"]`, as EC2 describes that instance
    now (never the VPC or subnets a finding names), and only in those the team opted in with the tag
    `vtriage:nacl-block=allowed`. Network ACLs carrying the protected tag are left alone. An address the
    account itself holds in that Region (an Elastic IP, an address of one of its network interfaces:
    `own_address_refusal`) is never denied: the action is skipped, naming what holds it.

    Entries take rule numbers within a range reserved for vtriage, below the account's own allow rules.
    A free number is used first; when the range is full, the next number in rotation (the oldest vtriage
    entry) is replaced. Only vtriage's own kind of entry (deny all traffic for one address) is ever
    replaced. Each network ACL keeps its rotation cursor in the tag `vtriage:next-rule-number`.
    Rollback deletes the entries it wrote, or puts back the ones they replaced.
    """

    def __init__(
        self,
        ec2_client: Any,
        rule_number_min: int,
        rule_number_max: int,
        protected_tag_key: str = "vtriage:protected",
    ) -> None:
        """Take a boto3 EC2 client, the rule number range reserved for vtriage (e.g. 1 and 18) and the tag
        key that protects a resource."""
        if not 1 <= rule_number_min <= rule_number_max <= 32766:
            raise ValueError(f"rule number range {rule_number_min}-{rule_number_max} is not within 1-32766")
        self._ec2 = ec2_client
        self._min = rule_number_min
        self._max = rule_number_max
        self._protected_tag_key = protected_tag_key

    def run(self, action: Action, dry_run: bool) -> Action:
        """Deny the address both ways in the opted-in network ACLs of the instance's subnets; `before` lists
        each entry written and the entry it replaced, so that rollback can put things back. An address the
        account holds is skipped, in a dry run too."""
        cidr = _host_network(action.target)
        if cidr is None:
            return action.with_outcome(
                ActionStatus.FAILED, f"not blocked: {action.target!r} is not an IP address"
            )
        own = own_address_refusal(self._ec2, action.target)
        if own is not None:
            return action.with_outcome(ActionStatus.SKIPPED, own)
        instance_id = action.parameters.get("instance_id")
        if not instance_id:
            return action.with_outcome(
                ActionStatus.FAILED,
                "not blocked: no instance named (parameter instance_id): the network ACLs are those of an "
                "instance's subnets, read from the instance itself",
            )
        return self._guard(action, "blocking", lambda: self._block(action, cidr, instance_id, dry_run))

    def rollback(self, action: Action) -> Action:
        """Delete the entries vtriage wrote, or put back those they replaced, where they are still its own."""
        before = action.before or {}
        cidr = _host_network(action.target)
        if cidr is None or "entries" not in before:
            return action.model_copy(update={"detail": "nothing to undo: no network ACL entry was recorded"})
        entries = list(before["entries"])
        return self._guard(action, "unblocking", lambda: self._unblock(action, cidr, entries))

    def _opted_in_acls(self, instance_id: str) -> tuple[list[dict[str, Any]], list[str]] | str:
        """The network ACLs of the live instance's subnets that vtriage may edit, and why each other one is
        left alone; or why there is nothing to block in (the instance or its subnets not found)."""
        response = self._ec2.describe_instances(InstanceIds=[instance_id])
        instances = [i for r in response.get("Reservations", []) for i in r.get("Instances", [])]
        if not instances:
            return f"instance {instance_id!r} not found in this account and Region"
        instance = instances[0]
        subnets = {str(instance["SubnetId"])} if instance.get("SubnetId") else set()
        subnets |= {
            str(interface["SubnetId"])
            for interface in instance.get("NetworkInterfaces", [])
            if interface.get("SubnetId")
        }
        if not subnets:
            return f"instance {instance_id} is in no subnet"
        paginator = self._ec2.get_paginator("describe_network_acls")
        pages = paginator.paginate(Filters=[{"Name": "association.subnet-id", "Values": sorted(subnets)}])
        acls = [dict(acl) for page in pages for acl in page.get("NetworkAcls", [])]
        if not acls:
            listed = ", ".join(sorted(subnets))
            return f"no network ACL is associated with the subnets of {instance_id} ({listed})"
        allowed: list[dict[str, Any]] = []
        left: list[str] = []
        for acl in acls:
            tags = {str(tag.get("Key")): str(tag.get("Value", "")) for tag in acl.get("Tags", [])}
            acl_id = str(acl["NetworkAclId"])
            protected = protecting_tag(tags.items(), self._protected_tag_key)
            if protected is not None:
                left.append(f"{acl_id} carries the protected tag {protected}")
            elif tags.get(OPT_IN_TAG) != OPT_IN_VALUE:
                left.append(
                    f"{acl_id} is not opted in (tag it {OPT_IN_TAG}={OPT_IN_VALUE} to let vtriage add deny "
                    "entries to it)"
                )
            else:
                allowed.append(acl)
        return allowed, left

    def _block(self, action: Action, cidr: _Network, instance_id: str, dry_run: bool) -> Action:
        found = self._opted_in_acls(instance_id)
        if isinstance(found, str):
            return action.with_outcome(ActionStatus.FAILED, f"not blocked, nothing changed: {found}")
        acls, left = found
        left_note = f"; left alone: {'; '.join(left)}" if left else ""
        if not acls:
            return action.with_outcome(
                ActionStatus.SKIPPED,
                f"not blocked, nothing changed: no network ACL of the subnets of {instance_id} may be edited"
                + left_note.replace("; left alone", ""),
            )
        slots: list[_Slot] = []
        already: list[str] = []
        cursors: dict[str, int] = {}
        for acl in acls:
            acl_id = str(acl["NetworkAclId"])
            missing = [egress for egress in (False, True) if not self._denied(acl, egress, cidr)]
            already += [
                f"{acl_id} {_DIRECTIONS[egress]}" for egress in (False, True) if egress not in missing
            ]
            if not missing:
                continue
            number = self._choose_rule_number(acl, missing)
            if number is None:
                detail = (
                    f"not blocked: every rule number {self._min}-{self._max} of {acl_id} holds an entry "
                    "vtriage did not write; widen the range reserved for vtriage"
                )
                return action.with_outcome(ActionStatus.FAILED, detail)
            slots += [_Slot(acl_id, egress, number, _entry_at(acl, egress, number)) for egress in missing]
            cursors[acl_id] = self._after(number)
        before = {
            "address": str(cidr),
            "instance_id": instance_id,
            "entries": [slot.record() for slot in slots],
        }
        if not slots:
            detail = f"already blocked: {cidr} is denied in {', '.join(already)}{left_note}"
            return action.with_outcome(ActionStatus.DONE, detail, before, before)
        planned = "; ".join(slot.describe() for slot in slots)
        where = f" (the network ACLs of the subnets of {instance_id})"
        if dry_run:
            detail = f"dry run, nothing changed: would deny {cidr} at {planned}{where}{left_note}"
            return action.with_outcome(ActionStatus.DRY_RUN, detail, before)

        written: list[_Slot] = []
        for slot in slots:
            try:
                self._write(slot, cidr)
            except ClientError as error:
                if is_transient(error) or error_code(error) not in _LIMIT_CODES:
                    raise
                # Record what was written, so that rollback can undo a half-applied block.
                partial = {**before, "entries": [done.record() for done in written]}
                detail = (
                    f"blocked only in part: {slot.network_acl_id} has no room for another rule ({error}); "
                    f"shrink the range reserved for vtriage ({self._min}-{self._max})"
                )
                return action.with_outcome(
                    ActionStatus.FAILED, detail, partial, _entries_after(cidr, written)
                )
            written.append(slot)
        for acl_id, cursor in cursors.items():
            self._ec2.create_tags(Resources=[acl_id], Tags=[{"Key": CURSOR_TAG, "Value": str(cursor)}])
        detail = f"blocked: denied {cidr} at {planned}{where}{left_note}"
        return action.with_outcome(ActionStatus.DONE, detail, before, _entries_after(cidr, written))

    def _unblock(self, action: Action, cidr: _Network, entries: list[dict[str, Any]]) -> Action:
        acl_ids = sorted({str(record["network_acl_id"]) for record in entries})
        acls = {str(acl["NetworkAclId"]): acl for acl in self._network_acls(acl_ids)} if acl_ids else {}
        undone: list[str] = []
        left: list[str] = []
        for record in entries:
            acl_id, egress, number = (
                str(record["network_acl_id"]),
                bool(record["egress"]),
                int(record["rule_number"]),
            )
            where = f"{acl_id} {_DIRECTIONS[egress]} rule {number}"
            acl = acls.get(acl_id)
            if acl is None:
                left.append(f"{where}: the network ACL no longer exists")
                continue
            current = _entry_at(acl, egress, number)
            if current is None or not _is_vtriage_deny(current, cidr):
                continue  # already gone, or rotated over by a later block: not vtriage's to remove now
            previous = record.get("previous")
            if previous:
                self._ec2.replace_network_acl_entry(**_entry_arguments(acl_id, previous))
                undone.append(f"{where} (put back the deny of {_cidr_of(previous)})")
            else:
                self._ec2.delete_network_acl_entry(NetworkAclId=acl_id, RuleNumber=number, Egress=egress)
                undone.append(where)
        after = {"address": str(cidr), "entries": []}
        if left:
            detail = "rollback incomplete: " + "; ".join(left)
            if undone:
                detail += f"; removed {cidr} from " + "; ".join(undone)
            return action.with_outcome(ActionStatus.FAILED, detail, after=after)
        if not undone:
            detail = f"already as before: no vtriage entry denies {cidr} any more"
            return action.with_outcome(ActionStatus.ROLLED_BACK, detail, after=after)
        return action.with_outcome(
            ActionStatus.ROLLED_BACK,
            f"rolled back: removed {cidr} from " + "; ".join(undone),
            after=after,
        )

    def _network_acls(self, acl_ids: list[str]) -> list[dict[str, Any]]:
        """Those of the network ACLs that still exist (one asked for at a time: a deleted one is left out)."""
        found = []
        for acl_id in acl_ids:
            try:
                response = self._ec2.describe_network_acls(NetworkAclIds=[acl_id])
            except ClientError as error:
                if error_code(error) == "InvalidNetworkAclID.NotFound":
                    continue
                raise
            found += [dict(acl) for acl in response.get("NetworkAcls", [])]
        return found

    def _denied(self, acl: dict[str, Any], egress: bool, cidr: _Network) -> bool:
        """Whether a deny entry for the address already applies before the account's own rules."""
        return any(
            bool(entry.get("Egress")) == egress
            and int(entry["RuleNumber"]) <= self._max
            and _is_vtriage_deny(entry, cidr)
            for entry in acl.get("Entries", [])
        )

    def _choose_rule_number(self, acl: dict[str, Any], directions: list[bool]) -> int | None:
        """The first number from the cursor on that is free in these directions; else the first, in the
        same order, holding only vtriage-style entries (the oldest in rotation); None when neither."""
        size = self._max - self._min + 1
        cursor = _cursor(acl, self._min, self._max)
        order = [self._min + (cursor - self._min + step) % size for step in range(size)]
        free = next(
            (n for n in order if all(_entry_at(acl, egress, n) is None for egress in directions)),
            None,
        )
        if free is not None:
            return free
        return next(
            (n for n in order if all(_replaceable(_entry_at(acl, egress, n)) for egress in directions)),
            None,
        )

    def _after(self, number: int) -> int:
        return self._min if number >= self._max else number + 1

    def _write(self, slot: _Slot, cidr: _Network) -> None:
        arguments = _entry_arguments(
            slot.network_acl_id,
            {"RuleNumber": slot.rule_number, "Egress": slot.egress, "Protocol": "-1", "RuleAction": "deny"}
            | _cidr_argument(cidr),
        )
        if slot.previous is None:
            self._ec2.create_network_acl_entry(**arguments)
        else:
            self._ec2.replace_network_acl_entry(**arguments)

    def _guard(self, action: Action, doing: str, operation: Callable[[], Action]) -> Action:
        """Throttling and 5xx become TransientError; a network ACL or the instance gone meanwhile, FAILED."""
        try:
            with transient_aws_errors(f"EC2 is unavailable while {doing} {action.target}"):
                return operation()
        except ClientError as error:
            if error_code(error) in _INSTANCE_GONE_CODES:
                return action.with_outcome(
                    ActionStatus.FAILED, f"not blocked, nothing changed: instance not found: {error}"
                )
            if error_code(error) in {"InvalidNetworkAclID.NotFound", "InvalidNetworkAclEntry.NotFound"}:
                return action.with_outcome(ActionStatus.FAILED, f"{doing} failed: {error}")
            raise


def _host_network(value: str) -> _Network | None:
    """The /32 or /128 network of a single address; None for anything else (never a wider range)."""
    try:
        return ipaddress.ip_network(ipaddress.ip_address(value.strip()))
    except ValueError:
        return None


def _cidr_of(entry: dict[str, Any]) -> str:
    return str(entry.get("CidrBlock") or entry.get("Ipv6CidrBlock") or "?")


def _cidr_argument(cidr: _Network) -> dict[str, str]:
    return {"CidrBlock": str(cidr)} if cidr.version == 4 else {"Ipv6CidrBlock": str(cidr)}


def _is_vtriage_deny(entry: dict[str, Any], cidr: _Network | None) -> bool:
    """A deny of all traffic for a single address (this one when given): the only kind vtriage writes."""
    if entry.get("RuleAction") != "deny" or str(entry.get("Protocol")) != "-1":
        return False
    try:
        network = ipaddress.ip_network(_cidr_of(entry), strict=False)
    except ValueError:
        return False
    if cidr is not None:
        return network == cidr
    return network.num_addresses == 1


def _replaceable(entry: dict[str, Any] | None) -> bool:
    return entry is None or _is_vtriage_deny(entry, None)


def _entry_at(acl: dict[str, Any], egress: bool, number: int) -> dict[str, Any] | None:
    for entry in acl.get("Entries", []):
        if bool(entry.get("Egress")) == egress and int(entry["RuleNumber"]) == number:
            return dict(entry)
    return None


def _entry_arguments(acl_id: str, entry: dict[str, Any]) -> dict[str, Any]:
    """The arguments of Create/ReplaceNetworkAclEntry writing this entry (as DescribeNetworkAcls shows it)."""
    arguments: dict[str, Any] = {"NetworkAclId": acl_id}
    for key in (
        "RuleNumber",
        "Egress",
        "Protocol",
        "RuleAction",
        "CidrBlock",
        "Ipv6CidrBlock",
        "PortRange",
        "IcmpTypeCode",
    ):
        if entry.get(key) is not None:
            arguments[key] = entry[key]
    return arguments


def _cursor(acl: dict[str, Any], low: int, high: int) -> int:
    for tag in acl.get("Tags", []):
        if tag.get("Key") == CURSOR_TAG:
            try:
                value = int(tag.get("Value", ""))
            except ValueError:
                return low
            return value if low <= value <= high else low
    return low


def _entries_after(cidr: _Network, written: list[_Slot]) -> dict[str, Any]:
    return {
        "address": str(cidr),
        "entries": [
            {"network_acl_id": slot.network_acl_id, "egress": slot.egress, "rule_number": slot.rule_number}
            for slot in written
        ],
    }
