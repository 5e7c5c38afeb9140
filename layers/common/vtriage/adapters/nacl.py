"""Blocking an IP address with deny entries in the network ACLs of a VPC."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from vtriage.adapters.aws_errors import error_code, is_transient
from vtriage.errors import TransientError
from vtriage.models import Action, ActionStatus

# Where each network ACL keeps the rule number the next vtriage entry goes to (its rotation cursor).
CURSOR_TAG = "vtriage:next-rule-number"
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
    """`ResponseActuator` for BLOCK_IP_NACL: an ingress and an egress deny entry for the address in every
    network ACL of the VPC named by `parameters["vpc_id"]`.

    Entries take rule numbers within a range reserved for vtriage, below the account's own allow rules.
    A free number is used first; when the range is full, the next number in rotation (the oldest vtriage
    entry) is replaced. Only vtriage's own kind of entry (deny all traffic for one address) is ever
    replaced. Each network ACL keeps its rotation cursor in the tag `vtriage:next-rule-number`.
    Rollback deletes the entries it wrote, or puts back the ones they replaced.
    """

    def __init__(self, ec2_client: Any, rule_number_min: int, rule_number_max: int) -> None:
        """Take a boto3 EC2 client and the rule number range reserved for vtriage (e.g. 1 and 18)."""
        if not 1 <= rule_number_min <= rule_number_max <= 32766:
            raise ValueError(f"rule number range {rule_number_min}-{rule_number_max} is not within 1-32766")
        self._ec2 = ec2_client
        self._min = rule_number_min
        self._max = rule_number_max

    def run(self, action: Action, dry_run: bool) -> Action:
        """Deny the address both ways in the VPC's network ACLs; `before` lists each entry written and the
        entry it replaced, so that rollback can put things back."""
        cidr = _host_network(action.target)
        if cidr is None:
            return action.with_outcome(
                ActionStatus.FAILED, f"not blocked: {action.target!r} is not an IP address"
            )
        vpc_id = action.parameters.get("vpc_id")
        if not vpc_id:
            return action.with_outcome(ActionStatus.FAILED, "not blocked: parameter vpc_id missing")
        return self._guard(action, "blocking", lambda: self._block(action, cidr, vpc_id, dry_run))

    def rollback(self, action: Action) -> Action:
        """Delete the entries vtriage wrote, or put back those they replaced, where they are still its own."""
        before = action.before or {}
        cidr = _host_network(action.target)
        if cidr is None or "entries" not in before:
            return action.model_copy(update={"detail": "nothing to undo: no network ACL entry was recorded"})
        entries, vpc_id = list(before["entries"]), str(before.get("vpc_id", ""))
        return self._guard(action, "unblocking", lambda: self._unblock(action, cidr, vpc_id, entries))

    def _block(self, action: Action, cidr: _Network, vpc_id: str, dry_run: bool) -> Action:
        acls = self._network_acls(vpc_id)
        if not acls:
            return action.with_outcome(ActionStatus.FAILED, f"not blocked: no network ACL found in {vpc_id}")
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
        before = {"address": str(cidr), "vpc_id": vpc_id, "entries": [slot.record() for slot in slots]}
        if not slots:
            detail = f"already blocked: {cidr} is denied in {', '.join(already)}"
            return action.with_outcome(ActionStatus.DONE, detail, before, before)
        planned = "; ".join(slot.describe() for slot in slots)
        if dry_run:
            detail = f"dry run, nothing changed: would deny {cidr} at {planned}"
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
        detail = f"blocked: denied {cidr} at {planned}"
        return action.with_outcome(ActionStatus.DONE, detail, before, _entries_after(cidr, written))

    def _unblock(self, action: Action, cidr: _Network, vpc_id: str, entries: list[dict[str, Any]]) -> Action:
        # Listed by VPC: a network ACL deleted since is then missing from the answer instead of an error.
        acls = {str(acl["NetworkAclId"]): acl for acl in self._network_acls(vpc_id)} if entries else {}
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

    def _network_acls(self, vpc_id: str) -> list[dict[str, Any]]:
        paginator = self._ec2.get_paginator("describe_network_acls")
        pages = paginator.paginate(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])
        return [dict(acl) for page in pages for acl in page.get("NetworkAcls", [])]

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
        """Throttling and 5xx become TransientError; a network ACL gone meanwhile, FAILED."""
        try:
            return operation()
        except ClientError as error:
            if is_transient(error):
                raise TransientError(f"EC2 is unavailable while {doing} {action.target}: {error}") from error
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
