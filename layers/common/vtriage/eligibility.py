"""Whether an alert may be acted on automatically, given where it came from and where it lives.

Two things no finding can talk its way past, decided when its actions are planned:

- **The channel.** Only findings that came through the detector rules (EventBridge to the alert queue)
  are eligible for automatic action. A pushed alert (the intake URL, or `vtriage send`) is ticketed, or
  its actions each wait for a person, as the deployment chooses (`PushedAlertActions`); a record from
  any other queue is ticketed.
- **The product.** Through the detector rules, a Security Hub finding is acted on automatically only when
  one of AWS's own integrated products generated it (`ProductArn` `arn:<partition>:securityhub:<region>::
  product/aws/<service>`). Anyone allowed `securityhub:BatchImportFindings` can import a finding under a
  custom product (`product/<account>/default`), which the rule delivers all the same: such a finding is
  treated as a pushed alert, its reason naming the product.
- **The place.** AWS actions run only in the deployment's own account and its member accounts
  (`MemberAccountIds`, through the role each one trusts it with), in the finding's own Region, when
  `ActRegions` admits it (every Region when empty). A finding that names any other account or Region gets
  no action and is ticketed, with the reason; the remediate function checks again before each action.
  An alert from a detector outside AWS (CrowdStrike Falcon, Google Workspace) names no AWS account or
  Region at all: it never gets an AWS action. The one action that acts outside AWS, `contain_host`, runs
  only on a CrowdStrike Falcon alert whose customer id (CID) is the deployment's own Falcon tenant
  (`FalconCid`): never on another tenant's alert, never on a Workspace or AWS alert.

The reasons land in `Alert.not_actionable` (the playbooks then plan nothing, and the case shows why), or,
for pushed alerts waiting for a person, on each planned action as the `needs_approval` parameter the
remediate function honours.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from vtriage.display import escaped
from vtriage.intake import sources
from vtriage.models import NEEDS_APPROVAL_PARAMETER, Action, ActionStatus, ActionType, Alert, Provenance

__all__ = [
    "WAITS_FOR_A_PERSON",
    "Eligibility",
    "Place",
    "PushedAlertActions",
    "eligibility",
    "falcon_cid",
    "requiring_approval",
]

# What becomes of a pushed alert's actions: none (a ticket), or each waiting for a person.
PushedAlertActions = Literal["ticket", "approval"]

# What an action's detail says before the reason it waits for a person (the remediate function keeps it).
WAITS_FOR_A_PERSON = "waits for a person: "

# A value a sender chose, shown in a reason: escaped, and cut well below a ticket line.
_SHOWN = 64

# An AWS service's own product in Security Hub: no account in the ARN, and `aws` as the company
# (`arn:aws:securityhub:us-east-1::product/aws/guardduty`); a custom or partner product is anything else.
_AWS_PRODUCT = re.compile(r"arn:aws(?:-[a-z]+)*:securityhub:[a-z0-9-]+::product/aws/[a-z0-9-]+")

# A Region's name (`eu-west-1`, `us-gov-west-1`): a finding's Region chooses where its actions run, so
# nothing else may choose an endpoint.
_REGION_NAME = re.compile(r"[a-z]{2}(-[a-z]+)+-\d")

# A Falcon customer id: 32 hexadecimal digits, which the console shows in capitals with a two-digit
# checksum (`0123...CDEF-1A`, the CCID) and the API in lower case without it.
_FALCON_CID = re.compile(r"([0-9a-fA-F]{32})(?:-[0-9a-fA-F]{2})?")


def falcon_cid(value: str) -> str | None:
    """A Falcon customer id in the API's form (32 lower-case hexadecimal digits), from either form; None
    when the value is neither."""
    match = _FALCON_CID.fullmatch(value.strip())
    return match.group(1).lower() if match else None


@dataclass(frozen=True)
class Place:
    """Where this deployment may act: its own account (with the function's own credentials) and its member
    accounts (through the role it assumes in each), in the Regions `regions` names, or in every Region
    when it names none. A finding is acted on in its own account and Region, never elsewhere."""

    own_account: str
    members: frozenset[str] = frozenset()
    regions: frozenset[str] = frozenset()
    # The deployment's own Falcon tenant (FalconCid, in the API's form): the only one whose hosts it
    # contains. None: it contains no host.
    falcon_cid: str | None = None

    def reasons_against(self, alert: Alert) -> list[str]:
        """Why no AWS action may run where the alert lives; empty when it lives here. An alert from a
        detector outside AWS (`Alert.vendor`) lives in no AWS account or Region."""
        if alert.vendor is not None:
            return [alert.vendor.outside_aws]
        return self._against(alert.account, alert.region)

    def reasons_against_action(self, alert: Alert, action: ActionType) -> list[str]:
        """Why an action of this type may not run on the alert where it lives: an AWS action in the
        alert's AWS account and Region (`reasons_against`), a host's containment in this deployment's own
        Falcon tenant (`host_reasons_against`). Empty when it may."""
        if action.acts_in_aws:
            return self.reasons_against(alert)
        return self.host_reasons_against(alert)

    def host_reasons_against(self, alert: Alert) -> list[str]:
        """Why the host an alert names may not be contained: only a CrowdStrike Falcon alert's, and only
        in this deployment's own Falcon tenant (`falcon_cid`). Empty when it may."""
        if alert.source != sources.FALCON or alert.vendor is None:
            return [
                "only a CrowdStrike Falcon alert's host is contained (contain_host), in the deployment's "
                "own Falcon tenant"
            ]
        if self.falcon_cid is None:
            return [
                "no Falcon tenant is configured (FalconCid): vtriage contains hosts only in the deployment's "
                "own Falcon tenant, and none is named"
            ]
        tenant = alert.vendor.tenant
        if tenant is None:
            return [
                "the alert names no Falcon customer id (CID): vtriage contains hosts only in the "
                f"deployment's own Falcon tenant ({self.falcon_cid})"
            ]
        if falcon_cid(tenant) != self.falcon_cid:
            return [
                f"the alert's Falcon customer id '{escaped(tenant, _SHOWN)}' is not this deployment's "
                f"({self.falcon_cid}): vtriage contains hosts only in its own Falcon tenant (FalconCid)"
            ]
        return []

    def reasons_against_alert(self, alert: Alert) -> list[str]:
        """Why no action of any kind may run where the alert lives: an AWS alert's place (its account and
        Region); a Falcon alert's tenant, when it is not this deployment's (then neither an AWS action nor
        its host's containment may run); any other vendor's alert lives in no AWS account or Region."""
        if alert.source == sources.FALCON and alert.vendor is not None:
            against_host = self.host_reasons_against(alert)
            return [alert.vendor.outside_aws, *against_host] if against_host else []
        return self.reasons_against(alert)

    def _against(self, account: str, region: str) -> list[str]:
        reasons = []
        if account != self.own_account and account not in self.members:
            members = ", ".join(sorted(self.members)) or "none listed"
            reasons.append(
                f"the finding names account '{escaped(account, _SHOWN)}', not this deployment's "
                f"({self.own_account}) nor one of its member accounts ({members}): vtriage acts only in "
                "its own account and the accounts MemberAccountIds lists"
            )
        if not _REGION_NAME.fullmatch(region):
            reasons.append(
                f"the finding names Region '{escaped(region, _SHOWN)}', which is not a Region name: "
                "vtriage acts only in the finding's own Region"
            )
        elif self.regions and region not in self.regions:
            reasons.append(
                f"the finding names Region '{escaped(region, _SHOWN)}', not one of the Regions ActRegions "
                f"lists ({', '.join(sorted(self.regions))}): vtriage acts only there"
            )
        return reasons


@dataclass(frozen=True)
class Eligibility:
    """What may happen to an alert automatically: `not_actionable` says why nothing may (the alert is
    ticketed); otherwise `approval`, when set, says why each planned action waits for a person."""

    not_actionable: tuple[str, ...] = ()
    approval: str | None = None
    # Whether the alert's actions act in AWS (it names an AWS account and Region) or on its Falcon host;
    # `elsewhere` says why the other kind is never planned on it (a Falcon alert's AWS actions).
    acts_in_aws: bool = True
    elsewhere: str | None = None

    def placed(self, actions: Sequence[Action]) -> list[Action]:
        """The planned actions that act where the alert lives: an AWS alert's AWS actions, a Falcon
        alert's host containment; the others are left out (`elsewhere` says why)."""
        return [action for action in actions if action.type.acts_in_aws == self.acts_in_aws]

    def applied_to(self, alert: Alert) -> Alert:
        """The alert with these reasons added to its own `not_actionable` ones (each once)."""
        if not self.not_actionable:
            return alert
        reasons = tuple(dict.fromkeys((*alert.not_actionable, *self.not_actionable)))
        return alert.model_copy(update={"not_actionable": reasons})


def eligibility(
    alert: Alert, provenance: Provenance, place: Place, pushed_alert_actions: PushedAlertActions
) -> Eligibility:
    """Decide what may happen to the alert automatically, from its channel and its place (see the
    module's docstring)."""
    reasons = place.reasons_against_alert(alert)
    # An alert that names an AWS account and Region is acted on in AWS; one from outside AWS only by
    # containing its host (a Falcon alert in the deployment's own tenant), never in AWS.
    in_aws = alert.vendor is None
    elsewhere = None if alert.vendor is None else alert.vendor.outside_aws
    product = _foreign_product(alert) if provenance.channel == "detector" else None
    if provenance.channel == "queue":
        reasons.append(
            f"it came from {provenance.described}: only findings from the detector rules are acted on"
        )
    elif provenance.channel == "intake" or product is not None:
        why = f"pushed through {provenance.described}" if product is None else product
        if pushed_alert_actions == "ticket":
            reasons.append(f"{why}: pushed alerts are ticketed, never acted on (PushedAlertActions=ticket)")
        elif not reasons:
            approval = "a person approves each action on a pushed alert (PushedAlertActions=approval)"
            return Eligibility(approval=f"{why}: {approval}", elsewhere=elsewhere, acts_in_aws=in_aws)
    return Eligibility(not_actionable=tuple(reasons), elsewhere=elsewhere, acts_in_aws=in_aws)


def _foreign_product(alert: Alert) -> str | None:
    """Why a finding delivered through Security Hub counts as pushed (the product that generated it is
    not one of AWS's own), or None when it is AWS's or the detector delivered it itself."""
    if alert.product is None or _AWS_PRODUCT.fullmatch(alert.product):
        return None
    named = f"under the product '{escaped(alert.product, 160)}'" if alert.product else "with no ProductArn"
    return (
        f"imported into Security Hub {named}, not one of AWS's own integrated products "
        "(anyone allowed securityhub:BatchImportFindings can import under a custom product): treated as "
        "a pushed alert"
    )


def requiring_approval(actions: Sequence[Action], reason: str) -> list[Action]:
    """The actions, each waiting for a person before it runs (the playbook parameter the remediate
    function honours), with the reason in its detail; one planned skipped (it cannot work) stays as it
    is, with its own reason."""
    return [
        action.model_copy(
            update={
                "parameters": {**action.parameters, NEEDS_APPROVAL_PARAMETER: "true"},
                "detail": _joined((action.detail, WAITS_FOR_A_PERSON + reason)),
            }
        )
        if action.status is ActionStatus.PLANNED
        else action
        for action in actions
    ]


def _joined(parts: Iterable[str]) -> str:
    return "; ".join(part for part in parts if part)
