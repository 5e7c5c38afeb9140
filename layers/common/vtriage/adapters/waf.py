"""Blocking an IP address in an AWS WAFv2 IP set, which a web ACL rule blocks."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from vtriage.adapters.aws_errors import error_code, transient_aws_errors
from vtriage.adapters.own_addresses import own_address_refusal
from vtriage.errors import TransientError
from vtriage.models import Action, ActionStatus

# WAF refuses an update made with a stale lock token; someone else changed the set in between.
_LOCK_CONFLICT = "WAFOptimisticLockException"
# The set is being created or changed by WAF itself: it will be usable shortly.
_BUSY_CODES = frozenset({"WAFUnavailableEntityException"})
_IP_VERSION = {4: "IPV4", 6: "IPV6"}


class WafIpSetBlocker:
    """`ResponseActuator` for BLOCK_IP_WAF: adds the target address (/32 or /128) to one WAFv2 IP set.

    An address the account itself holds in the case's Region (an Elastic IP, an address of one of its
    network interfaces: `own_address_refusal`) is never added: the action is skipped, naming what holds it.
    Every change reads the set and its lock token, writes the whole address list back with that token,
    and starts again when WAF answers that the set changed in between. Rollback removes the address
    only when vtriage added it.
    """

    def __init__(
        self,
        wafv2_client: Any,
        ip_set_name: str,
        ip_set_id: str,
        scope: str,
        *,
        ec2_client: Any,
        max_attempts: int = 5,
    ) -> None:
        """Take a boto3 WAFv2 client and the IP set's name, id and scope (REGIONAL or CLOUDFRONT;
        a CLOUDFRONT set needs a client in us-east-1), and a boto3 EC2 client of the account and Region
        whose own addresses are never blocked."""
        self._waf = wafv2_client
        self._ec2 = ec2_client
        self._name = ip_set_name
        self._id = ip_set_id
        self._scope = scope
        self._max_attempts = max_attempts

    @property
    def _label(self) -> str:
        return f"WAF IP set {self._name} ({self._id}, {self._scope})"

    def run(self, action: Action, dry_run: bool) -> Action:
        """Add the address to the set, unless it is there already or the account holds it (skipped, in a
        dry run too); `before`/`after` say whether it was there."""
        cidr = _host_network(action.target)
        if cidr is None:
            return action.with_outcome(
                ActionStatus.FAILED, f"not blocked: {action.target!r} is not an IP address"
            )
        own = own_address_refusal(self._ec2, action.target)
        if own is not None:
            return action.with_outcome(ActionStatus.SKIPPED, own)
        return self._guard(action, "blocking", lambda: self._add(action, cidr, dry_run))

    def rollback(self, action: Action) -> Action:
        """Remove the address from the set if vtriage added it; leave it if it was there before."""
        before = action.before or {}
        cidr = _host_network(action.target)
        if cidr is None or "present" not in before:
            return action.model_copy(
                update={"detail": "nothing to undo: no state of the IP set was recorded"}
            )
        if before.get("present") or before.get("covered_by"):
            detail = (
                f"already as before: {cidr} was blocked by {self._label} before this case acted, so it stays"
            )
            return action.with_outcome(ActionStatus.ROLLED_BACK, detail, after=before)
        return self._guard(action, "unblocking", lambda: self._remove(action, cidr))

    def _add(
        self, action: Action, cidr: ipaddress.IPv4Network | ipaddress.IPv6Network, dry_run: bool
    ) -> Action:
        for _ in range(self._max_attempts):
            ip_set, lock_token = self._read()
            version = _IP_VERSION[cidr.version]
            if ip_set.get("IPAddressVersion") != version:
                held = ip_set.get("IPAddressVersion")
                detail = f"not blocked: {self._label} holds {held} addresses, not {version}"
                return action.with_outcome(ActionStatus.FAILED, detail)
            addresses = [str(address) for address in ip_set.get("Addresses", [])]
            exact = any(_same(address, cidr) for address in addresses)
            covering = next((address for address in addresses if _covers(address, cidr)), None)
            before = {"address": str(cidr), "present": exact, "covered_by": None if exact else covering}
            if exact or covering:
                detail = f"already blocked: {cidr} is in {self._label}" + (
                    f" (covered by {covering})" if not exact else ""
                )
                return action.with_outcome(ActionStatus.DONE, detail, before, before)
            if dry_run:
                detail = (
                    f"dry run, nothing changed: would add {cidr} to {self._label}, "
                    f"which holds {len(addresses)} address(es)"
                )
                return action.with_outcome(ActionStatus.DRY_RUN, detail, before)
            if not self._write(ip_set, [*addresses, str(cidr)], lock_token):
                continue
            after = {"address": str(cidr), "present": True, "covered_by": None}
            return action.with_outcome(
                ActionStatus.DONE, f"blocked: added {cidr} to {self._label}", before, after
            )
        raise TransientError(
            f"{self._label} kept changing: gave up adding {cidr} after {self._max_attempts} tries"
        )

    def _remove(self, action: Action, cidr: ipaddress.IPv4Network | ipaddress.IPv6Network) -> Action:
        for _ in range(self._max_attempts):
            ip_set, lock_token = self._read()
            addresses = [str(address) for address in ip_set.get("Addresses", [])]
            kept = [address for address in addresses if not _same(address, cidr)]
            after = {"address": str(cidr), "present": False, "covered_by": None}
            if kept == addresses:
                detail = f"already as before: {cidr} is not in {self._label}"
                return action.with_outcome(ActionStatus.ROLLED_BACK, detail, after=after)
            if not self._write(ip_set, kept, lock_token):
                continue
            return action.with_outcome(
                ActionStatus.ROLLED_BACK,
                f"rolled back: removed {cidr} from {self._label}",
                after=after,
            )
        raise TransientError(
            f"{self._label} kept changing: gave up removing {cidr} after {self._max_attempts} tries"
        )

    def _read(self) -> tuple[dict[str, Any], str]:
        response = self._waf.get_ip_set(Name=self._name, Scope=self._scope, Id=self._id)
        return dict(response["IPSet"]), str(response["LockToken"])

    def _write(self, ip_set: dict[str, Any], addresses: list[str], lock_token: str) -> bool:
        """Replace the set's addresses; False when the lock token went stale (read again and retry)."""
        # UpdateIPSet replaces every mutable field: pass the description back or it is cleared.
        extra = {"Description": ip_set["Description"]} if ip_set.get("Description") else {}
        try:
            self._waf.update_ip_set(
                Name=self._name,
                Scope=self._scope,
                Id=self._id,
                Addresses=addresses,
                LockToken=lock_token,
                **extra,
            )
        except ClientError as error:
            if error_code(error) == _LOCK_CONFLICT:
                return False
            raise
        return True

    def _guard(self, action: Action, doing: str, operation: Callable[[], Action]) -> Action:
        """Throttling, 5xx and a busy set become TransientError; a missing set or a full one, FAILED."""
        try:
            with transient_aws_errors(f"WAF is unavailable while {doing} {action.target}", busy=_BUSY_CODES):
                return operation()
        except ClientError as error:
            code = error_code(error)
            if code == "WAFNonexistentItemException":
                return action.with_outcome(
                    ActionStatus.FAILED, f"{doing} failed: {self._label} not found: {error}"
                )
            if code == "WAFLimitsExceededException":
                return action.with_outcome(
                    ActionStatus.FAILED, f"{doing} failed: {self._label} is full: {error}"
                )
            raise


def _host_network(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """The /32 or /128 network of a single address; None for anything else (never a wider range)."""
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    return ipaddress.ip_network(address)


def _parse(address: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(address, strict=False)
    except ValueError:
        return None


def _same(address: str, cidr: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    # Compared as networks: an IPv6 address has many spellings.
    return _parse(address) == cidr


def _covers(address: str, cidr: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    network = _parse(address)
    if isinstance(network, ipaddress.IPv4Network) and isinstance(cidr, ipaddress.IPv4Network):
        return cidr.subnet_of(network)
    if isinstance(network, ipaddress.IPv6Network) and isinstance(cidr, ipaddress.IPv6Network):
        return cidr.subnet_of(network)
    return False
