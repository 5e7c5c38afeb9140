"""What a response action is, in words a person reads: its name, what it will change on its target and
how a rollback (`vtriage rollback <case id>`) undoes it. The one home of these descriptions: the approval
page and the tickets say the same thing of the same action.

Each description follows what the action's actuator does (vtriage.adapters): when an actuator changes,
its sentence here changes with it. Values from the alert (a target, a user name, an S3 key) are escaped
with `vtriage.display.one_line`; a caller adds its own output's escaping (HTML, a vendor's markup) on top.
Every sentence ends with one full stop, so a caller never adds its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from vtriage.display import one_line
from vtriage.models import Action, ActionStatus, ActionType

# The command that undoes what a case's actions changed, as an operator types it.
ROLLBACK_COMMAND = "vtriage rollback"

_NAMES = {
    ActionType.ISOLATE_INSTANCE: "Isolate the instance",
    ActionType.SNAPSHOT_VOLUMES: "Snapshot the instance's volumes",
    ActionType.TAG_INSTANCE: "Tag the instance as quarantined",
    ActionType.BLOCK_IP_WAF: "Block the IP address in AWS WAF",
    ActionType.BLOCK_IP_NACL: "Block the IP address in network ACLs",
    ActionType.DISABLE_ACCESS_KEY: "Disable the access key",
    ActionType.QUARANTINE_OBJECT: "Quarantine the S3 object",
    ActionType.BLOCK_DOMAIN_DNS_FIREWALL: "Block the domain in DNS Firewall",
    ActionType.CONTAIN_HOST: "Contain the host in CrowdStrike Falcon",
}

_STATUSES = {
    ActionStatus.PLANNED: "planned",
    ActionStatus.DONE: "done",
    ActionStatus.DRY_RUN: "dry run, nothing changed",
    ActionStatus.SKIPPED: "skipped",
    ActionStatus.FAILED: "failed",
    ActionStatus.PENDING_APPROVAL: "waiting for a person's approval",
    ActionStatus.ROLLED_BACK: "rolled back",
}


# A containment action in one of these leaves nothing for `not_contained` to say.
_CONTAINED = frozenset({ActionStatus.DONE, ActionStatus.ROLLED_BACK})

# What an actuator says when it skips an action because the deployment configures nothing for that kind
# (`ForeseeingActuator`): the deployment's choice, made for every case, not this case's containment
# failing, so `not_contained` leaves it out (a C&C case whose instance was isolated is remediated where
# no DNS Firewall list is configured; the block's own line says it was skipped, and why).
UNCONFIGURED_SKIPS = {
    ActionType.BLOCK_DOMAIN_DNS_FIREWALL: "not blocked: no DNS Firewall domain list configured"
}


@dataclass(frozen=True)
class ActionText:
    """One action in words: its name, what it will change, how a rollback undoes that. `changes` and
    `rollback` are whole sentences; sender values in them are escaped (`one_line`)."""

    name: str
    changes: str
    rollback: str


def action_name(action_type: ActionType) -> str:
    """The action's name as a person reads it ("Isolate the instance"), never its code."""
    return _NAMES[action_type]


def status_words(status: ActionStatus) -> str:
    """An action's status as a person reads it ("waiting for a person's approval")."""
    return _STATUSES[status]


def not_contained(actions: Iterable[Action]) -> list[str]:
    """What of the threat is still not cut off: each containment action (`ActionType.contains_threat`) that
    did not run for real, as a person reads it first ("isolate_instance i-0ab skipped: not isolated:
    ..."), empty when every one is done (or none was planned). Skipped, failed, refused, still planned,
    waiting for a person and dry-run actions all leave the threat where it was; a rolled-back one was
    undone by a person's rollback, which says so itself. A case with such an action is never REMEDIATED:
    it is ticketed, saying this first (docs/decisions/0006-case-lifecycle.md)."""
    return [_uncontained(action) for action in actions if leaves_threat(action)]


def leaves_threat(action: Action) -> bool:
    """Whether the action was to cut the threat off and did not (`not_contained` names it); an action
    the deployment configures nothing for (`UNCONFIGURED_SKIPS`) was never to."""
    unconfigured = action.status is ActionStatus.SKIPPED and action.detail == UNCONFIGURED_SKIPS.get(
        action.type
    )
    return action.type.contains_threat and action.status not in _CONTAINED and not unconfigured


def _uncontained(action: Action) -> str:
    head = f"{action.type.value} {one_line(action.target)}"
    detail = one_line(action.detail)
    status = status_words(action.status)
    if detail.startswith(status):
        # The outcome says its status already ("dry run, nothing changed: would move ...").
        return f"{head} {detail}"
    return f"{head} {status}" + (f": {detail}" if detail else "")


def describe(action: Action) -> ActionText:
    """What this action will change on its target and how a rollback undoes it, in words."""
    target = one_line(action.target)
    changes, rollback = _SENTENCES[action.type](action, target)
    return ActionText(name=action_name(action.type), changes=changes, rollback=rollback)


def _parameter(action: Action, name: str) -> str | None:
    value = action.parameters.get(name)
    return one_line(value) if value else None


def _isolate(action: Action, target: str) -> tuple[str, str]:
    return (
        f"Moves every network interface of instance {target} into vtriage's quarantine security group, "
        "which allows no traffic in or out; connections already open end too.",
        "Rollback puts each interface back in the security groups it had before.",
    )


def _snapshot(action: Action, target: str) -> tuple[str, str]:
    return (
        f"Takes a snapshot of every EBS volume of instance {target}, tagged with the case, for forensics; "
        "the instance keeps running as it is.",
        "Nothing to roll back: the snapshots are evidence and are kept (delete them by hand once no "
        "longer needed).",
    )


def _tag(action: Action, target: str) -> tuple[str, str]:
    return (
        f"Tags instance {target} with vtriage:case (this case) and vtriage:quarantined=true.",
        "Rollback puts those two tags back as they were: removed, or their earlier values.",
    )


def _block_ip_waf(action: Action, target: str) -> tuple[str, str]:
    return (
        f"Adds {target} to the deployment's AWS WAF IP set, which its web ACL blocks.",
        "Rollback removes the address from the IP set, unless it was there before this action.",
    )


def _block_ip_nacl(action: Action, target: str) -> tuple[str, str]:
    instance = _parameter(action, "instance_id")
    where = f"the subnets of instance {instance}" if instance else "the alert's instance's subnets"
    return (
        f"Adds an inbound and an outbound deny entry for {target} to the network ACLs of {where}, "
        "only in those tagged vtriage:nacl-block=allowed.",
        "Rollback deletes those entries, or puts back the entries they replaced.",
    )


def _disable_access_key(action: Action, target: str) -> tuple[str, str]:
    user = _parameter(action, "user_name")
    owner = f" of IAM user {user}" if user else ""
    contained = f"user {user}" if user else "its user"
    return (
        f"Sets access key {target}{owner} to Inactive, and attaches the deployment's deny-all policy to "
        f"{contained} (when one is configured), which denies it everything with any of its credentials.",
        "Rollback makes the key active again if it was active before, and detaches the deny-all policy "
        "if this action attached it.",
    )


def _quarantine_object(action: Action, target: str) -> tuple[str, str]:
    bucket = _parameter(action, "bucket")
    source = f"bucket {bucket}" if bucket else "its bucket"
    version = _parameter(action, "version_id")
    scanned = (
        f"version {version} of object {target}, the one the finding scanned,"
        if version and version != "null"
        else f"object {target}, only if it is still the one the finding scanned (its ETag),"
    )
    return (
        f"Copies {scanned} to the quarantine bucket, tagged with the case and where it came from, then "
        f"deletes it from {source}; an object written at the key since is left as it is.",
        "Rollback copies the object back where it was, with its original tags, unless an object written "
        "since is there; the quarantine copy is kept as evidence.",
    )


def _block_domain(action: Action, target: str) -> tuple[str, str]:
    return (
        f"Adds {target} to the account's Route 53 Resolver DNS Firewall domain list, which its rule group "
        "blocks.",
        "Rollback removes the domain from the list, unless it was there before this action.",
    )


def _contain_host(action: Action, target: str) -> tuple[str, str]:
    return (
        f"Network-contains Falcon host {target} in the deployment's own CrowdStrike Falcon tenant: it then "
        "talks only to the CrowdStrike cloud and what the containment policy allows.",
        "Rollback lifts the containment this action made; a host contained before is left contained.",
    )


_SENTENCES = {
    ActionType.ISOLATE_INSTANCE: _isolate,
    ActionType.SNAPSHOT_VOLUMES: _snapshot,
    ActionType.TAG_INSTANCE: _tag,
    ActionType.BLOCK_IP_WAF: _block_ip_waf,
    ActionType.BLOCK_IP_NACL: _block_ip_nacl,
    ActionType.DISABLE_ACCESS_KEY: _disable_access_key,
    ActionType.QUARANTINE_OBJECT: _quarantine_object,
    ActionType.BLOCK_DOMAIN_DNS_FIREWALL: _block_domain,
    ActionType.CONTAIN_HOST: _contain_host,
}
