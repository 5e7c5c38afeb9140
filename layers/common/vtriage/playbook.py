"""Which response actions a triaged alert calls for (declarative playbooks), and where the state machine
takes its case.

Playbooks live in a JSON file (`data/playbooks.json` unless `PLAYBOOKS_PATH` names another), validated
when the enrich function starts. Each playbook matches an alert by its finding type, the verdicts of its
IOCs, the IOC types and the resource types, and lists actions; the target and parameters of each action
are taken from the alert: an instance action acts on every instance the alert names, an IP or domain
block on every matching IP or domain, a key on every access key, a quarantine on every S3 object, a host
containment on the Falcon host (its device id) a CrowdStrike Falcon alert names.
"""

import fnmatch
from collections.abc import Iterable, Sequence
from functools import cache
from pathlib import Path
from typing import Literal, NamedTuple, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from vtriage.config import load_config
from vtriage.errors import ConfigurationError
from vtriage.models import (
    DRY_RUN_PARAMETER,
    NEEDS_APPROVAL_PARAMETER,
    Action,
    ActionStatus,
    ActionType,
    Alert,
    Branch,
    Case,
    IocOutcome,
    IocType,
    Resource,
    ResourceType,
    Verdict,
    why_a_key_cannot_be_disabled,
)

DEFAULT_PLAYBOOKS_PATH = Path(__file__).resolve().parent / "data" / "playbooks.json"

# In a playbook, `block_ip` stands for the IP block the deployment chose (IP_BLOCK_METHOD): a WAF IP
# set, a network ACL, or none at all.
BLOCK_IP = "block_ip"
IpBlockMethod = Literal["waf", "nacl", "none"]
_BLOCK_IP_BY_METHOD: dict[str, ActionType | None] = {
    "waf": ActionType.BLOCK_IP_WAF,
    "nacl": ActionType.BLOCK_IP_NACL,
    "none": None,
}

# What each action acts on: an IOC of the alert (by type) or one of its resources (by type).
_IOC_TARGETS: dict[ActionType, IocType] = {
    ActionType.BLOCK_IP_WAF: IocType.IP,
    ActionType.BLOCK_IP_NACL: IocType.IP,
    ActionType.BLOCK_DOMAIN_DNS_FIREWALL: IocType.DOMAIN,
}
_RESOURCE_TARGETS: dict[ActionType, ResourceType] = {
    ActionType.SNAPSHOT_VOLUMES: ResourceType.INSTANCE,
    ActionType.TAG_INSTANCE: ResourceType.INSTANCE,
    ActionType.ISOLATE_INSTANCE: ResourceType.INSTANCE,
    ActionType.DISABLE_ACCESS_KEY: ResourceType.ACCESS_KEY,
    ActionType.QUARANTINE_OBJECT: ResourceType.S3_OBJECT,
    ActionType.CONTAIN_HOST: ResourceType.FALCON_HOST,
}

SEVERITY_LABELS = ("low", "medium", "high", "critical")
SeverityLabel = Literal["low", "medium", "high", "critical"]
DEFAULT_TICKET_MIN_SEVERITY: SeverityLabel = "medium"

_GLOB_CHARACTERS = frozenset("*?[")


class _Strict(BaseModel):
    # Unknown keys are refused, so that a misspelt condition is an error rather than a match-all. Built
    # when first validated: `load_playbooks` builds Playbooks, the parts within it, and never the parts'
    # own validators, which only a part made on its own needs.
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)


class Match(_Strict):
    """When a playbook applies. Every condition given must hold; an empty list does not constrain."""

    finding_types: tuple[str, ...] = Field(
        default=(),
        description="markers found anywhere in the finding type, or glob patterns (with * ? [) matching "
        "the whole type; both case-insensitive",
    )
    verdicts: tuple[Verdict, ...] = Field(
        default=(Verdict.MALICIOUS,),
        description="at least one IOC (of `ioc_types`) must have one of these verdicts; empty: no IOC needed",
    )
    ioc_types: tuple[IocType, ...] = Field(default=(), description="the IOC types that count")
    resource_types: tuple[ResourceType, ...] = Field(
        default=(), description="the alert must name a resource of one of these types"
    )

    def type_matches(self, finding_type: str) -> bool:
        """Whether the finding type meets `finding_types`."""
        if not self.finding_types:
            return True
        folded = finding_type.casefold()
        for pattern in self.finding_types:
            wanted = pattern.casefold()
            if _GLOB_CHARACTERS & set(wanted):
                if fnmatch.fnmatchcase(folded, wanted):
                    return True
            elif wanted in folded:
                return True
        return False

    def matching_iocs(self, iocs: Iterable[IocOutcome]) -> list[IocOutcome]:
        """The looked-up IOCs of the wanted types with one of the wanted verdicts."""
        return [
            ioc
            for ioc in iocs
            if ioc.skipped_reason is None
            and (not self.ioc_types or ioc.type in self.ioc_types)
            and ioc.verdict in self.verdicts
        ]


class ActionSpec(_Strict):
    """One action of a playbook: its type (or `block_ip`), whether it always runs in dry run, and whether
    a person approves it before it runs."""

    type: ActionType | Literal["block_ip"]
    dry_run: bool = Field(
        default=False, description="plan and check only, even when the remediate function acts for real"
    )
    needs_approval: bool = Field(
        default=False, description="wait for a person to approve it (an approval link) before it runs"
    )
    parameters: dict[str, str] = Field(
        default={}, description="fixed parameters added to those taken from the alert"
    )


class Playbook(_Strict):
    """A named rule: when `match` holds, plan `actions` on what the alert names."""

    name: str = Field(min_length=1)
    description: str = ""
    match: Match = Field(default_factory=Match)
    actions: tuple[ActionSpec, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _actions_can_find_a_target(self) -> Self:
        for index, spec in enumerate(self.actions):
            for action_type in _action_types_of(spec.type):
                where = f"actions.{index}.type"
                ioc_type = _IOC_TARGETS.get(action_type)
                if ioc_type is not None:
                    if not self.match.verdicts:
                        raise ValueError(
                            f"{where}: {spec.type} acts on IOCs by their verdict, "
                            "so match.verdicts must not be empty"
                        )
                    if self.match.ioc_types and ioc_type not in self.match.ioc_types:
                        raise ValueError(
                            f"{where}: {spec.type} acts on {ioc_type.value} IOCs, "
                            "which match.ioc_types excludes"
                        )
                resource_type = _RESOURCE_TARGETS.get(action_type)
                if (
                    resource_type is not None
                    and self.match.resource_types
                    and resource_type not in self.match.resource_types
                ):
                    raise ValueError(
                        f"{where}: {spec.type} acts on {resource_type.value} resources, "
                        "which match.resource_types excludes"
                    )
        return self


class Playbooks(_Strict):
    """Every playbook, in the order their actions are planned."""

    description: str = ""
    playbooks: tuple[Playbook, ...]

    @model_validator(mode="after")
    def _names_are_unique(self) -> Self:
        seen: set[str] = set()
        for playbook in self.playbooks:
            if playbook.name in seen:
                raise ValueError(f"two playbooks are named {playbook.name!r}")
            seen.add(playbook.name)
        return self


def load_playbooks(path: Path | None = None) -> Playbooks:
    """The playbooks in the JSON file at `path` (the shipped defaults when None), validated.

    Raises ConfigurationError naming the file and each bad field (`playbooks.0.actions.1.type: ...`).
    """
    source = Path(path or DEFAULT_PLAYBOOKS_PATH)
    return load_config(
        Playbooks, source, named=f"playbooks {source} (PLAYBOOKS_PATH)", whole="playbooks", plural=True
    )


@cache
def default_playbooks() -> Playbooks:
    """The shipped playbooks (read once)."""
    return load_playbooks()


def plan_actions(
    alert: Alert,
    iocs: Sequence[IocOutcome],
    playbooks: Playbooks | None = None,
    *,
    ip_block_method: IpBlockMethod = "none",
) -> list[Action]:
    """The actions every matching playbook plans on the alert, in playbook order, each planned once.

    An action needs something to act on: an instance action without an instance in the alert, a NACL
    block without an instance (whose subnets it guards), a key action without the key's user, is not
    planned. An action that cannot work on what the alert names is planned SKIPPED, saying why and what
    to do instead, so that the case goes to a person: disabling temporary credentials (ASIA...), the
    root user's keys or another principal's (`why_a_key_cannot_be_disabled`). Actions are only planned
    here; the remediate function decides, under its guardrails, what runs. An alert that is not
    actionable (`Alert.not_actionable` says why) gets no action: it is ticketed.
    """
    if alert.not_actionable:
        return []
    planned: list[Action] = []
    seen: set[tuple[ActionType, str, tuple[tuple[str, str], ...]]] = set()
    for playbook in (playbooks or default_playbooks()).playbooks:
        if not _applies(playbook.match, alert, iocs):
            continue
        matched = playbook.match.matching_iocs(iocs)
        for spec in playbook.actions:
            action_type = _resolve(spec.type, ip_block_method)
            if action_type is None:
                continue
            for target, parameters, unworkable in _targets(action_type, alert, matched):
                all_parameters = {**spec.parameters, **parameters}
                if spec.dry_run:
                    all_parameters[DRY_RUN_PARAMETER] = "true"
                if spec.needs_approval:
                    all_parameters[NEEDS_APPROVAL_PARAMETER] = "true"
                identity = (action_type, target, tuple(sorted(all_parameters.items())))
                if identity in seen:
                    continue
                seen.add(identity)
                action = Action(
                    type=action_type,
                    target=target,
                    parameters=all_parameters,
                    detail=f"planned by playbook {playbook.name}",
                )
                if unworkable is not None:
                    action = action.with_outcome(
                        ActionStatus.SKIPPED,
                        f"not run, nothing changed: {unworkable} (playbook {playbook.name})",
                    )
                planned.append(action)
    return planned


def choose_branch(case: Case, ticket_min_severity: str = DEFAULT_TICKET_MIN_SEVERITY) -> Branch:
    """The branch the state machine takes the case down (the case's `branch`; its execution input's
    `route`).

    Remediation when actions are planned on a malicious case; a person (ticket) for anything malicious or
    suspicious, and for a case with an IOC VirusTotal could not answer for (an outage up to the record's
    last delivery: nobody judged it). An alert VirusTotal does not incriminate (no IOC to look up, or only
    unknown or harmless ones) still goes to a person when its detector rates it at or above
    `ticket_min_severity`, and is closed, with its record kept, below it.
    """
    if case.remediable:
        return Branch.REMEDIATE
    if case.verdict in (Verdict.MALICIOUS, Verdict.SUSPICIOUS):
        return Branch.TICKET
    if any(ioc.virustotal_unavailable for ioc in case.iocs):
        return Branch.TICKET
    if severity_rank(case.alert.severity.label) >= severity_rank(ticket_min_severity):
        return Branch.TICKET
    return Branch.CLOSE


def severity_rank(label: str) -> int:
    """The place of a severity label (low, medium, high, critical) in that order."""
    try:
        return SEVERITY_LABELS.index(label.lower())
    except ValueError:
        raise ConfigurationError(
            f"severity {label!r} is not one of {', '.join(SEVERITY_LABELS)} (TICKET_MIN_SEVERITY)"
        ) from None


def _applies(match: Match, alert: Alert, iocs: Sequence[IocOutcome]) -> bool:
    if not match.type_matches(alert.type):
        return False
    if match.resource_types and not any(
        resource.type in match.resource_types for resource in alert.resources
    ):
        return False
    return not match.verdicts or bool(match.matching_iocs(iocs))


def _action_types_of(spec_type: ActionType | str) -> list[ActionType]:
    """Every action type a spec may stand for (`block_ip`: each configurable IP block)."""
    if spec_type == BLOCK_IP:
        return [action for action in _BLOCK_IP_BY_METHOD.values() if action is not None]
    return [ActionType(spec_type)]


def _resolve(spec_type: ActionType | str, ip_block_method: IpBlockMethod) -> ActionType | None:
    if spec_type == BLOCK_IP:
        return _BLOCK_IP_BY_METHOD[ip_block_method]
    return ActionType(spec_type)


class _Target(NamedTuple):
    """What one action acts on, the parameters its actuator expects, and why it cannot work when it
    cannot (the action is then planned SKIPPED with the reason)."""

    target: str
    parameters: dict[str, str]
    unworkable: str | None = None


def _targets(action_type: ActionType, alert: Alert, matched: Sequence[IocOutcome]) -> list[_Target]:
    """Each target the action acts on, with the parameters its actuator expects."""
    ioc_type = _IOC_TARGETS.get(action_type)
    if ioc_type is not None:
        values = list(dict.fromkeys(ioc.value for ioc in matched if ioc.type is ioc_type))
        if action_type is ActionType.BLOCK_IP_NACL:
            # A network ACL guards subnets: block in those of each instance the alert names. The remediate
            # function reads the instance's subnets from EC2, never the VPC or subnets the alert names.
            instances = list(dict.fromkeys(_instances(alert.resources)))
            return [_Target(value, {"instance_id": instance}) for value in values for instance in instances]
        return [_Target(value, {}) for value in values]
    resource_type = _RESOURCE_TARGETS[action_type]
    targets: list[_Target] = []
    for resource in alert.resources:
        if resource.type is not resource_type:
            continue
        if resource_type is ResourceType.ACCESS_KEY:
            if resource.user_name:
                targets.append(
                    _Target(
                        resource.id,
                        {"user_name": resource.user_name},
                        why_a_key_cannot_be_disabled(resource.id, resource.user_type),
                    )
                )
        elif resource_type is ResourceType.S3_OBJECT:
            if resource.bucket and resource.key:
                location = f"s3://{resource.bucket}/{resource.key}"
                targets.append(_Target(location, _object_parameters(resource)))
        else:
            targets.append(_Target(resource.id, {}))
    return targets


def _object_parameters(resource: Resource) -> dict[str, str]:
    """An S3 object's bucket and key, and the version and ETag the detector scanned when it named them:
    the quarantine acts on that object only, never on whatever the key holds when it runs."""
    parameters = {"bucket": str(resource.bucket), "key": str(resource.key)}
    if resource.version_id:
        parameters["version_id"] = resource.version_id
    if resource.etag:
        parameters["etag"] = resource.etag
    return parameters


def _instances(resources: Iterable[Resource]) -> list[str]:
    return [resource.id for resource in resources if resource.type is ResourceType.INSTANCE]
