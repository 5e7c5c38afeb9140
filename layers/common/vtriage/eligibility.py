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
- **The place.** Actions run only in the deployment's own account and Region. A finding that names
  another account or Region gets no action and is ticketed, with the reason.

The reasons land in `Alert.not_actionable` (the playbooks then plan nothing, and the case shows why), or,
for pushed alerts waiting for a person, on each planned action as the `needs_approval` parameter the
remediate function honours.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from vtriage.intake.fields import escaped
from vtriage.models import NEEDS_APPROVAL_PARAMETER, Action, Alert, Provenance

__all__ = [
    "WAITS_FOR_A_PERSON",
    "Eligibility",
    "Place",
    "PushedAlertActions",
    "eligibility",
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


@dataclass(frozen=True)
class Place:
    """Where this deployment may act: its own account (a set, so that member accounts can join it) and
    the Region its functions run in."""

    accounts: frozenset[str]
    region: str

    def reasons_against(self, alert: Alert) -> list[str]:
        """Why the alert lives somewhere this deployment does not act; empty when it lives here."""
        reasons = []
        if alert.account not in self.accounts:
            own = ", ".join(sorted(self.accounts)) or "none configured"
            reasons.append(
                f"the finding names account '{escaped(alert.account, _SHOWN)}', not this deployment's "
                f"({own}): vtriage acts only in its own account"
            )
        if alert.region != self.region:
            reasons.append(
                f"the finding names Region '{escaped(alert.region, _SHOWN)}', not this deployment's "
                f"({self.region}): vtriage acts only in its own Region"
            )
        return reasons


@dataclass(frozen=True)
class Eligibility:
    """What may happen to an alert automatically: `not_actionable` says why nothing may (the alert is
    ticketed); otherwise `approval`, when set, says why each planned action waits for a person."""

    not_actionable: tuple[str, ...] = ()
    approval: str | None = None

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
    reasons = place.reasons_against(alert)
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
            return Eligibility(approval=f"{why}: {approval}")
    return Eligibility(not_actionable=tuple(reasons))


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
    function honours), with the reason in its detail."""
    return [
        action.model_copy(
            update={
                "parameters": {**action.parameters, NEEDS_APPROVAL_PARAMETER: "true"},
                "detail": _joined((action.detail, WAITS_FOR_A_PERSON + reason)),
            }
        )
        for action in actions
    ]


def _joined(parts: Iterable[str]) -> str:
    return "; ".join(part for part in parts if part)
