"""Blocking a domain through a Route 53 Resolver DNS Firewall domain list, which a rule group blocks."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from vtriage.action_text import UNCONFIGURED_SKIPS
from vtriage.adapters.aws_errors import error_code, transient_aws_errors
from vtriage.models import Action, ActionStatus, ActionType

# What DNS Firewall accepts in a domain list: an optional leading "*." then letters, digits, hyphens, dots.
_DOMAIN = re.compile(r"^(\*\.)?([a-z0-9-]+\.)*[a-z0-9-]+$")
# The list is being updated by an earlier call: it takes the next update once that one completes.
_BUSY_CODES = frozenset({"ConflictException"})


class DnsFirewallDomainBlocker:
    """`ResponseActuator` for BLOCK_DOMAIN_DNS_FIREWALL: adds the domain (the target) to one DNS Firewall
    domain list. Without a list (`domain_list_id=None`, an account that has none) every action is
    SKIPPED so that the case goes to a ticket instead. Rollback removes the domain if vtriage added it.
    """

    def __init__(self, route53resolver_client: Any, domain_list_id: str | None) -> None:
        """Take a boto3 Route 53 Resolver client and the domain list's id, or None when there is none."""
        self._resolver = route53resolver_client
        self._list_id = domain_list_id

    def run(self, action: Action, dry_run: bool) -> Action:
        """Add the domain unless the list holds it; `before`/`after` say whether it was there."""
        list_id = self._list_id
        if list_id is None:
            return self._skipped(action)
        domain = _normalise(action.target)
        if not _DOMAIN.match(domain) or len(domain) > 255:
            return action.with_outcome(
                ActionStatus.FAILED, f"not blocked: {action.target!r} is not a domain name"
            )
        return self._guard(action, "blocking", lambda: self._add(action, list_id, domain, dry_run))

    def outcome_without_acting(self, action: Action) -> Action | None:
        """Without a list, the action is skipped, saying so (`ForeseeingActuator`); None with one."""
        return self._skipped(action) if self._list_id is None else None

    @staticmethod
    def _skipped(action: Action) -> Action:
        return action.with_outcome(
            ActionStatus.SKIPPED, UNCONFIGURED_SKIPS[ActionType.BLOCK_DOMAIN_DNS_FIREWALL]
        )

    def rollback(self, action: Action) -> Action:
        """Remove the domain from the list if vtriage added it; leave it if it was there before."""
        before = action.before or {}
        if "present" not in before or not before.get("domain_list_id"):
            return action.model_copy(
                update={"detail": "nothing to undo: no state of the domain list was recorded"}
            )
        list_id, domain = str(before["domain_list_id"]), str(before["domain"])
        if before["present"]:
            detail = (
                f"already as before: {domain} was in DNS Firewall domain list {list_id} before this case "
                "acted"
            )
            return action.with_outcome(ActionStatus.ROLLED_BACK, detail, after=before)
        return self._guard(action, "unblocking", lambda: self._remove(action, list_id, domain))

    def _add(self, action: Action, list_id: str, domain: str, dry_run: bool) -> Action:
        present = domain in self._domains(list_id)
        before = {"domain_list_id": list_id, "domain": domain, "present": present}
        if present:
            detail = f"already blocked: {domain} is in DNS Firewall domain list {list_id}"
            return action.with_outcome(ActionStatus.DONE, detail, before, before)
        if dry_run:
            detail = f"dry run, nothing changed: would add {domain} to DNS Firewall domain list {list_id}"
            return action.with_outcome(ActionStatus.DRY_RUN, detail, before)
        response = self._resolver.update_firewall_domains(
            FirewallDomainListId=list_id, Operation="ADD", Domains=[domain]
        )
        after = {**before, "present": True}
        detail = (
            f"blocked: added {domain} to DNS Firewall domain list {list_id} (list {response.get('Status')})"
        )
        return action.with_outcome(ActionStatus.DONE, detail, before, after)

    def _remove(self, action: Action, list_id: str, domain: str) -> Action:
        after = {"domain_list_id": list_id, "domain": domain, "present": False}
        if domain not in self._domains(list_id):
            detail = f"already as before: {domain} is not in DNS Firewall domain list {list_id}"
            return action.with_outcome(ActionStatus.ROLLED_BACK, detail, after=after)
        self._resolver.update_firewall_domains(
            FirewallDomainListId=list_id, Operation="REMOVE", Domains=[domain]
        )
        detail = f"rolled back: removed {domain} from DNS Firewall domain list {list_id}"
        return action.with_outcome(ActionStatus.ROLLED_BACK, detail, after=after)

    def _domains(self, list_id: str) -> set[str]:
        paginator = self._resolver.get_paginator("list_firewall_domains")
        return {
            _normalise(str(domain))
            for page in paginator.paginate(FirewallDomainListId=list_id)
            for domain in page.get("Domains", [])
        }

    def _guard(self, action: Action, doing: str, operation: Callable[[], Action]) -> Action:
        """Throttling, 5xx and a list busy with an update become TransientError; a missing list, FAILED."""
        try:
            with transient_aws_errors(
                f"DNS Firewall is unavailable while {doing} {action.target}", busy=_BUSY_CODES
            ):
                return operation()
        except ClientError as error:
            if error_code(error) == "ResourceNotFoundException":
                return action.with_outcome(
                    ActionStatus.FAILED,
                    f"{doing} failed: domain list {self._list_id} not found: {error}",
                )
            raise


def _normalise(domain: str) -> str:
    # A listed domain may be fully qualified ("example.com."): compare without the final dot, in lower case.
    return domain.strip().lower().rstrip(".")
