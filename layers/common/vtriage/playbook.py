"""Which response actions a triaged alert calls for."""

from __future__ import annotations

from vtriage.models import Action, ActionType, Alert, ResourceType, Verdict

# GuardDuty finding types are ThreatPurpose:ResourceType/ThreatFamily. These purposes mean the
# instance itself is compromised (it talks to a C&C server, runs a trojan or a miner): cutting it off
# the network is the proportionate answer. A probe or brute force *against* an instance is not.
COMPROMISED_INSTANCE_PURPOSES = frozenset({"Backdoor", "Trojan", "CryptoCurrency"})


def instance_is_compromised(alert: Alert) -> bool:
    """Whether the finding says the instance itself is compromised, not merely targeted."""
    purpose = alert.type.split(":", 1)[0]
    return purpose in COMPROMISED_INSTANCE_PURPOSES or "C&C" in alert.type


def plan_actions(alert: Alert, verdict: Verdict) -> list[Action]:
    """Isolate every instance the alert names when VirusTotal confirms (malicious) a finding that says
    the instance is compromised; nothing otherwise, so the case goes to a person.

    Actions are only planned here; the remediate function decides, under its guardrails, what runs.
    """
    if verdict is not Verdict.MALICIOUS or not instance_is_compromised(alert):
        return []
    return [
        Action(type=ActionType.ISOLATE_INSTANCE, target=resource.id)
        for resource in alert.resources
        if resource.type is ResourceType.INSTANCE
    ]
