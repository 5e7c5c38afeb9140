"""The caps' units at the plan step: what takes one (never an action its actuator skips without acting),
and who has them first when the hour's blast-radius cap or a case's cap cannot hold every action
(containment, then the snapshots, then the tagging); the actions that run still run in the playbook's
order."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.factories import make_alert, make_case
from tests.remediation_steps import plan, remediator, run
from vtriage.adapters.dns_firewall import DnsFirewallDomainBlocker
from vtriage.eligibility import Place
from vtriage.fakes import FakeActuator, FakeBlastRadius, InMemoryCaseRepository
from vtriage.models import Action, ActionStatus, ActionType, Case, CaseStatus, Resource, ResourceType, Verdict
from vtriage.remediate import Actuators, Remediator

NOW = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
# The deployment's own place: the account and Region `make_alert` names.
PLACE = Place(own_account="123456789012", regions=frozenset({"us-east-1"}))
HOUR_CAP_SAYS = "the blast-radius cap of"
C2_DOMAIN = "tawuhoju.com"


def c2_case(instance_id: str, *types: ActionType) -> Case:
    """An enriched case on the instance with these actions planned, in this (the playbook's) order: a
    domain block names the C&C domain, every other action the instance."""
    alert = make_alert(
        id=f"c2-finding-on-{instance_id}",
        type="Backdoor:EC2/C&CActivity.B!DNS",
        resources=(Resource(type=ResourceType.INSTANCE, id=instance_id),),
    )
    actions = [
        Action(
            type=action_type,
            target=C2_DOMAIN if action_type is ActionType.BLOCK_DOMAIN_DNS_FIREWALL else instance_id,
        )
        for action_type in types
    ]
    return make_case(alert, status=CaseStatus.ENRICHED, verdict=Verdict.MALICIOUS, actions=actions)


# The compromised-instance playbook's actions, then the malicious-domain one's (data/playbooks.json).
C2_ACTIONS = (
    ActionType.SNAPSHOT_VOLUMES,
    ActionType.TAG_INSTANCE,
    ActionType.ISOLATE_INSTANCE,
    ActionType.BLOCK_DOMAIN_DNS_FIREWALL,
)


def instance_actuators(*instance_ids: str) -> dict[ActionType, FakeActuator]:
    """Snapshots, tagging and isolation over these instances."""
    states = dict.fromkeys(instance_ids, "as-found")
    return {
        ActionType.SNAPSHOT_VOLUMES: FakeActuator(ActionType.SNAPSHOT_VOLUMES, states, reversible=False),
        ActionType.TAG_INSTANCE: FakeActuator(ActionType.TAG_INSTANCE, states),
        ActionType.ISOLATE_INSTANCE: FakeActuator(
            ActionType.ISOLATE_INSTANCE, states, acted_state="isolated"
        ),
    }


def steps(
    cases: InMemoryCaseRepository,
    actuators: Actuators,
    *,
    per_hour: int = 20,
    max_actions: int = 5,
) -> Remediator:
    """The remediate function's steps acting for real, on a deployment without a DNS Firewall domain list
    (its actuator skips every block without acting), in an hour with `per_hour` actions allowed and none
    taken yet."""
    unconfigured = DnsFirewallDomainBlocker(route53resolver_client=None, domain_list_id=None)
    return remediator(
        cases,
        {**actuators, ActionType.BLOCK_DOMAIN_DNS_FIREWALL: unconfigured},
        place=PLACE,
        max_actions_per_case=max_actions,
        max_actions_per_hour=per_hour,
        blast_radius=FakeBlastRadius(max_per_hour=per_hour, now=lambda: NOW),
    )


def taken(remediation: Remediator) -> int:
    """The units of the hour's cap the plans took."""
    radius = remediation.blast_radius
    assert isinstance(radius, FakeBlastRadius)
    return radius.taken


def statuses(cases: InMemoryCaseRepository, case: Case) -> dict[ActionType, ActionStatus]:
    stored = cases.get(case.case_id)
    assert stored is not None
    return {action.type: action.status for action in stored.actions}


def test_an_action_its_actuator_would_skip_takes_no_unit_of_the_hours_cap() -> None:
    # Given a case planning a domain block (no domain list: its actuator skips it without acting), then an
    # isolation, and one action left in this hour's blast radius
    case = c2_case("i-1", ActionType.BLOCK_DOMAIN_DNS_FIREWALL, ActionType.ISOLATE_INSTANCE)
    cases = InMemoryCaseRepository([case])
    remediation = steps(cases, instance_actuators("i-1"), per_hour=1)

    # When the remediation is planned
    planned = plan(remediation, case.case_id)

    # Then the block is skipped, saying why, and the isolation has the hour's one unit: it runs now
    assert statuses(cases, case) == {
        ActionType.BLOCK_DOMAIN_DNS_FIREWALL: ActionStatus.SKIPPED,
        ActionType.ISOLATE_INSTANCE: ActionStatus.PLANNED,
    }
    assert [(item.index, item.approval) for item in planned.items] == [(1, False)]
    assert taken(remediation) == 1


def test_an_action_its_actuator_would_skip_takes_no_unit_of_the_cases_cap() -> None:
    # Given a case planning a domain block its actuator skips without acting, then an isolation, under a
    # cap of one automatic action per case
    case = c2_case("i-1", ActionType.BLOCK_DOMAIN_DNS_FIREWALL, ActionType.ISOLATE_INSTANCE)
    cases = InMemoryCaseRepository([case])

    # When the remediation is planned
    planned = plan(steps(cases, instance_actuators("i-1"), max_actions=1), case.case_id)

    # Then the isolation is the case's one action and runs now
    assert statuses(cases, case)[ActionType.ISOLATE_INSTANCE] is ActionStatus.PLANNED
    assert [item.index for item in planned.items] == [1]


def test_when_the_hour_is_short_the_isolation_has_a_unit_before_the_snapshot_and_the_tag() -> None:
    # Given a compromised instance's snapshot, tag and isolation, and one action left this hour
    case = c2_case("i-1", *C2_ACTIONS[:3])
    cases = InMemoryCaseRepository([case])

    # When the remediation is planned
    planned = plan(steps(cases, instance_actuators("i-1"), per_hour=1), case.case_id)

    # Then the isolation runs now; the snapshot and the tag wait for a person, saying why
    stored = cases.get(case.case_id)
    assert stored is not None
    assert [action.status for action in stored.actions] == [
        ActionStatus.PENDING_APPROVAL,
        ActionStatus.PENDING_APPROVAL,
        ActionStatus.PLANNED,
    ]
    assert all(HOUR_CAP_SAYS in action.detail for action in stored.actions[:2])
    # And the Map runs the isolation first, then waits for the others in the playbook's order
    assert [(item.index, item.approval) for item in planned.items] == [(2, False), (0, True), (1, True)]


def test_beyond_the_cases_cap_the_tag_is_left_before_the_snapshot_and_the_isolation() -> None:
    # Given a compromised instance's snapshot, tag and isolation, under a cap of two actions per case
    case = c2_case("i-1", *C2_ACTIONS[:3])
    cases = InMemoryCaseRepository([case])

    # When the remediation is planned
    plan(steps(cases, instance_actuators("i-1"), max_actions=2), case.case_id)

    # Then the isolation and the snapshot run; the tag is left for a person to decide
    assert statuses(cases, case) == {
        ActionType.SNAPSHOT_VOLUMES: ActionStatus.PLANNED,
        ActionType.TAG_INSTANCE: ActionStatus.SKIPPED,
        ActionType.ISOLATE_INSTANCE: ActionStatus.PLANNED,
    }


def test_with_room_for_every_action_they_run_in_the_playbooks_order() -> None:
    # Given a compromised instance's snapshot, tag and isolation, and room for all of them this hour
    case = c2_case("i-1", *C2_ACTIONS[:3])
    cases = InMemoryCaseRepository([case])

    # When the remediation is planned, Then every action runs now, the snapshot first as the playbook says
    planned = plan(steps(cases, instance_actuators("i-1"), per_hour=3), case.case_id)
    assert [(item.index, item.approval) for item in planned.items] == [(0, False), (1, False), (2, False)]


def test_two_compromised_instances_are_both_isolated_when_the_hour_holds_four_actions() -> None:
    # Given two C&C findings on two instances (the red team's run: snapshot, tag, isolation and a domain
    # block each, no domain list), planned one after the other under a cap of four actions this hour
    first, second = c2_case("i-1", *C2_ACTIONS), c2_case("i-2", *C2_ACTIONS)
    cases = InMemoryCaseRepository([first, second])
    actuators = instance_actuators("i-1", "i-2")
    remediation = steps(cases, actuators, per_hour=4)

    # When each case is planned and its actions that need no person run
    for case in (first, second):
        for item in plan(remediation, case.case_id).items:
            if not item.approval:
                run(remediation, case.case_id, item.index)

    # Then both instances are isolated; the first case also snapshotted and tagged its instance, the
    # second's snapshot and tag wait for a person; no domain block took a unit or waits
    assert actuators[ActionType.ISOLATE_INSTANCE].states == {"i-1": "isolated", "i-2": "isolated"}
    assert statuses(cases, first) == {
        ActionType.SNAPSHOT_VOLUMES: ActionStatus.DONE,
        ActionType.TAG_INSTANCE: ActionStatus.DONE,
        ActionType.ISOLATE_INSTANCE: ActionStatus.DONE,
        ActionType.BLOCK_DOMAIN_DNS_FIREWALL: ActionStatus.SKIPPED,
    }
    assert statuses(cases, second) == {
        ActionType.SNAPSHOT_VOLUMES: ActionStatus.PENDING_APPROVAL,
        ActionType.TAG_INSTANCE: ActionStatus.PENDING_APPROVAL,
        ActionType.ISOLATE_INSTANCE: ActionStatus.DONE,
        ActionType.BLOCK_DOMAIN_DNS_FIREWALL: ActionStatus.SKIPPED,
    }
    assert taken(remediation) == 4
