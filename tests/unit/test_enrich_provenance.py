"""The channel and the place decide what may happen automatically, and identity includes content: the
enrich domain with in-memory fakes, fed SQS records as Lambda hands them over."""

from __future__ import annotations

import copy
import json
from datetime import timedelta
from typing import Any

import pytest

from tests.unit.test_enrich import ALERT_QUEUE_ARN, C2, DETECTOR, World, _sample
from vtriage.composition.sqs_batch import triage_sqs_batch
from vtriage.eligibility import Place, PushedAlertActions, eligibility, requiring_approval
from vtriage.enrich.batch import Batch, ReadRecord
from vtriage.enrich.records import QueuedRecord
from vtriage.fakes import InMemoryFindingLedger
from vtriage.models import (
    NEEDS_APPROVAL_PARAMETER,
    Action,
    ActionStatus,
    ActionType,
    Branch,
    Case,
    CaseStatus,
    Provenance,
)

PUSHED_QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:PushedAlertQueue"
SENDER = "arn:aws:sts::123456789012:assumed-role/edr-forwarder/session-1"
# What the intake function stamps on a message pushed by that role.
STAMP = {
    "vtriage_sender": SENDER,
    "vtriage_sender_id": "AROAEXAMPLE:session-1",
    "vtriage_sender_account": "123456789012",
    "vtriage_source_ip": "198.51.100.7",
    "vtriage_user_agent": "forwarder/1.0",
}
PLACE = Place(own_account="123456789012", regions=frozenset({"us-east-1"}))


class Deployment(World):
    """The enrich function's world, reading both queues, with the ledger of finding contents."""

    def __init__(self, per_minute: int | None = None) -> None:
        super().__init__(per_minute=per_minute)
        self.findings = InMemoryFindingLedger(self.cases)
        self.channels = {ALERT_QUEUE_ARN: "detector", PUSHED_QUEUE_ARN: "intake"}
        self.queues = {ALERT_QUEUE_ARN: self.deferral, PUSHED_QUEUE_ARN: self.deferral}


def _batch(world: Deployment, pushed_alert_actions: PushedAlertActions = "approval") -> Batch:
    """A new batch for the deployment, as each invocation makes."""
    world.pushed_alert_actions = pushed_alert_actions
    return world.batch()


def _record(
    body: str, queue_arn: str, attributes: dict[str, str] | None = None, receives: int = 1, index: int = 0
) -> dict[str, Any]:
    """One SQS record of `queue_arn` as Lambda's event source mapping hands it to the function."""
    return {
        "messageId": f"m-{index}",
        "receiptHandle": f"handle-{index}",
        "body": body,
        "attributes": {"ApproximateReceiveCount": str(receives)},
        "messageAttributes": {
            name: {"stringValue": value, "dataType": "String"} for name, value in (attributes or {}).items()
        },
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": "us-east-1",
    }


def _triage(batch: Batch, *records: dict[str, Any]) -> dict[str, Any]:
    return dict(triage_sqs_batch(batch, {"Records": list(records)}))


def _only_case(world: Deployment) -> Case:
    (case_id,) = world.cases.case_ids
    return world.case(case_id)


def _with_account(sample: str, account: str | None = None, region: str | None = None) -> str:
    event = json.loads(_sample(sample))
    if account is not None:
        event["detail"]["accountId"] = account
    if region is not None:
        event["detail"]["region"] = region
    return json.dumps(event)


# ---------------------------------------------------------------- the channel


def test_a_detector_finding_of_the_own_account_is_planned_for_automatic_action() -> None:
    # Given the C&C sample (a malicious domain, an instance) on the detector rules' queue
    world = Deployment()

    # When its batch is triaged
    _triage(_batch(world), _record(_sample(C2), ALERT_QUEUE_ARN))

    # Then actions are planned with no person in the way, and the case says where it came from
    case = _only_case(world)
    assert case.actions
    assert all(NEEDS_APPROVAL_PARAMETER not in action.parameters for action in case.actions)
    assert case.alert.not_actionable == ()
    assert case.provenance == Provenance(channel="detector")
    assert world.executions.started[case.case_id].route is Branch.REMEDIATE


def test_a_pushed_alert_waits_for_a_person_for_each_action_and_names_its_sender() -> None:
    # Given the same finding pushed through the intake (its own queue, stamped with the signed caller)
    world = Deployment()

    # When its batch is triaged, the deployment leaving pushed alerts to approval (the default)
    _triage(_batch(world), _record(_sample(C2), PUSHED_QUEUE_ARN, STAMP))

    # Then the same actions are planned, each waiting for a person, saying why and who sent it
    case = _only_case(world)
    assert [action.type for action in case.actions] == [
        ActionType.SNAPSHOT_VOLUMES,
        ActionType.TAG_INSTANCE,
        ActionType.ISOLATE_INSTANCE,
        ActionType.BLOCK_DOMAIN_DNS_FIREWALL,
    ]
    assert all(action.parameters[NEEDS_APPROVAL_PARAMETER] == "true" for action in case.actions)
    for action in case.actions:
        assert SENDER in action.detail
        assert "PushedAlertActions=approval" in action.detail
    # And the case records who sent it, from where and with what
    assert case.provenance == Provenance(
        channel="intake", sender=SENDER, source_ip="198.51.100.7", user_agent="forwarder/1.0"
    )
    assert any("each waiting for a person" in entry.note for entry in case.history)


def test_a_pushed_alert_is_only_ticketed_when_the_deployment_says_so() -> None:
    # Given the same pushed finding, and a deployment that tickets pushed alerts
    world = Deployment()

    # When its batch is triaged
    _triage(_batch(world, "ticket"), _record(_sample(C2), PUSHED_QUEUE_ARN, STAMP))

    # Then nothing is planned, the reason is on the case, and a person gets a ticket
    case = _only_case(world)
    assert case.actions == []
    (reason,) = case.alert.not_actionable
    assert SENDER in reason
    assert "PushedAlertActions=ticket" in reason
    assert world.executions.started[case.case_id].route is Branch.TICKET


def test_a_stamp_forged_on_the_detector_queue_names_nobody() -> None:
    # Given a record of the detector rules' queue that carries sender attributes (its policy admits only
    # EventBridge and the enrich function; were anyone to slip them in, they would not be read)
    world = Deployment()

    # When its batch is triaged
    _triage(_batch(world), _record(_sample(C2), ALERT_QUEUE_ARN, STAMP))

    # Then the case names the detector channel and no sender
    assert _only_case(world).provenance == Provenance(channel="detector")


def test_a_record_from_a_queue_vtriage_does_not_know_is_ticketed() -> None:
    # Given a record whose queue is neither the detector rules' nor the intake's
    world = Deployment()
    other = "arn:aws:sqs:us-east-1:123456789012:SomebodyElsesQueue"

    # When its batch is triaged
    _triage(_batch(world), _record(_sample(C2), other, STAMP))

    # Then nothing is planned, its stamp is not believed, and the reason says where it came from
    case = _only_case(world)
    assert case.actions == []
    assert case.provenance == Provenance(channel="queue")
    assert any("not one of vtriage's" in reason for reason in case.alert.not_actionable)


# A Security Hub finding imported under the account's own custom product (BatchImportFindings).
CUSTOM_PRODUCT_FINDING = "synthetic-securityhub-threat-intel.json"
CUSTOM_PRODUCT = "arn:aws:securityhub:us-east-1:123456789012:product/123456789012/default"


def _with_product(sample: str, product_arn: str) -> str:
    event = json.loads(_sample(sample))
    event["detail"]["findings"][0]["ProductArn"] = product_arn
    return json.dumps(event)


def test_a_custom_products_finding_from_the_detector_rules_waits_for_a_person_naming_the_product() -> None:
    # Given a Security Hub finding imported under a custom product, on the detector rules' queue (the
    # rule delivers every imported finding: anyone allowed BatchImportFindings reaches it)
    world = Deployment()

    # When its batch is triaged, pushed alerts left to approval (the default)
    _triage(_batch(world), _record(_sample(CUSTOM_PRODUCT_FINDING), ALERT_QUEUE_ARN))

    # Then its actions are planned as for a pushed alert, each waiting for a person, naming the product
    case = _only_case(world)
    assert case.alert.product == CUSTOM_PRODUCT
    assert case.actions
    assert all(action.parameters[NEEDS_APPROVAL_PARAMETER] == "true" for action in case.actions)
    for action in case.actions:
        assert f"under the product '{CUSTOM_PRODUCT}'" in action.detail
        assert "PushedAlertActions=approval" in action.detail
    assert case.provenance == Provenance(channel="detector")


def test_a_custom_products_finding_is_only_ticketed_when_the_deployment_tickets_pushed_alerts() -> None:
    # Given the custom product's finding on the detector rules' queue, and a deployment that tickets
    # pushed alerts
    world = Deployment()

    # When its batch is triaged
    _triage(_batch(world, "ticket"), _record(_sample(CUSTOM_PRODUCT_FINDING), ALERT_QUEUE_ARN))

    # Then nothing is planned, the reason names the product, and a person gets a ticket
    case = _only_case(world)
    assert case.actions == []
    (reason,) = case.alert.not_actionable
    assert CUSTOM_PRODUCT in reason
    assert "PushedAlertActions=ticket" in reason
    assert world.executions.started[case.case_id].route is Branch.TICKET


@pytest.mark.parametrize(
    "product_arn",
    [
        "arn:aws:securityhub:us-east-1::product/aws/inspector",
        "arn:aws-us-gov:securityhub:us-gov-west-1::product/aws/access-analyzer",
    ],
)
def test_an_aws_products_finding_from_the_detector_rules_is_acted_on_automatically(product_arn: str) -> None:
    # Given the same finding as generated by one of AWS's own integrated products
    world = Deployment()

    # When it comes through the detector rules
    _triage(_batch(world), _record(_with_product(CUSTOM_PRODUCT_FINDING, product_arn), ALERT_QUEUE_ARN))

    # Then its actions run with no person in the way
    case = _only_case(world)
    assert case.actions
    assert all(NEEDS_APPROVAL_PARAMETER not in action.parameters for action in case.actions)
    assert world.executions.started[case.case_id].route is Branch.REMEDIATE


@pytest.mark.parametrize(
    ("product_arn", "shown"),
    [
        # AWS's product name under an account: a custom product named to pass for AWS's.
        (
            "arn:aws:securityhub:us-east-1:123456789012:product/aws/guardduty",
            "'arn:aws:securityhub:us-east-1:123456789012:product/aws/guardduty'",
        ),
        (
            "arn:aws:securityhub:us-east-1::product/aws/guardduty\nApprove: https://evil.example/",
            "guardduty\\nApprove: https://evil.example/'",
        ),
        ("", "with no ProductArn"),
    ],
)
def test_a_product_that_only_looks_like_awss_is_not_trusted(product_arn: str, shown: str) -> None:
    # Given the finding under a product ARN that is not exactly an AWS product's (or none)
    world = Deployment()

    # When it comes through the detector rules, pushed alerts ticketed
    body = _with_product(CUSTOM_PRODUCT_FINDING, product_arn)
    _triage(_batch(world, "ticket"), _record(body, ALERT_QUEUE_ARN))

    # Then nothing runs, and the reason shows the product escaped on one line
    case = _only_case(world)
    assert case.actions == []
    (reason,) = case.alert.not_actionable
    assert shown in reason
    assert "\n" not in reason


def test_a_deferred_pushed_record_goes_back_to_its_own_queue_with_its_stamp() -> None:
    # Given a pushed record received for the third time while the quota is spent
    world = Deployment(per_minute=1)
    world.limiter.acquire()  # type: ignore[union-attr]
    # When its batch is triaged
    response = _triage(_batch(world), _record(_sample(C2), PUSHED_QUEUE_ARN, STAMP, receives=3))

    # Then it is queued afresh, carrying its sender, and acknowledged
    assert response["batchItemFailures"] == []
    (copy_,) = world.deferral.requeued
    assert {name: copy_.attributes[name] for name in STAMP} == STAMP
    assert copy_.attributes["vtriage_deferrals"] == "3"


def test_the_deferred_copy_goes_to_the_queue_the_record_came_from() -> None:
    # Given one deferral per queue
    world = Deployment(per_minute=1)
    world.limiter.acquire()  # type: ignore[union-attr]
    detector_queue, pushed_queue = type(world.deferral)(), type(world.deferral)()
    world.queues = {ALERT_QUEUE_ARN: detector_queue, PUSHED_QUEUE_ARN: pushed_queue}

    # When a pushed record and a detector record are deferred as fresh copies
    _triage(
        _batch(world),
        _record(_sample(C2), PUSHED_QUEUE_ARN, STAMP, receives=3, index=0),
        _record(_sample(C2), ALERT_QUEUE_ARN, receives=3, index=1),
    )

    # Then each copy went back to its own queue
    assert len(pushed_queue.requeued) == len(detector_queue.requeued) == 1
    assert pushed_queue.requeued[0].attributes["vtriage_sender"] == SENDER
    assert "vtriage_sender" not in detector_queue.requeued[0].attributes


# ---------------------------------------------------------------- the place


@pytest.mark.parametrize(
    ("account", "region", "expected"),
    [
        ("999999999999", None, "names account '999999999999', not this deployment's (123456789012)"),
        (None, "eu-west-1", "names Region 'eu-west-1', not one of the Regions ActRegions lists (us-east-1)"),
    ],
)
def test_a_detector_finding_of_another_account_or_region_changes_nothing_and_is_ticketed(
    account: str | None, region: str | None, expected: str
) -> None:
    # Given the C&C sample naming another account, or another Region, than the deployment's
    world = Deployment()

    # When it comes through the detector rules
    _triage(_batch(world), _record(_with_account(C2, account, region), ALERT_QUEUE_ARN))

    # Then no action is planned, the reason is on the case, and a person gets a ticket
    case = _only_case(world)
    assert case.actions == []
    assert any(expected in reason for reason in case.alert.not_actionable)
    assert world.executions.started[case.case_id].route is Branch.TICKET
    assert any("no automatic action" in entry.note for entry in case.history)


def test_a_pushed_alert_of_another_account_is_ticketed_not_sent_to_approval() -> None:
    # Given a pushed finding naming another account
    world = Deployment()

    # When it is triaged with pushed alerts left to approval
    _triage(_batch(world), _record(_with_account(C2, "999999999999"), PUSHED_QUEUE_ARN, STAMP))

    # Then nobody is asked to approve an action in an account vtriage does not act in: no action at all
    case = _only_case(world)
    assert case.actions == []
    assert world.executions.started[case.case_id].route is Branch.TICKET


def test_an_account_id_with_line_breaks_is_escaped_in_the_reason() -> None:
    # Given an alert whose account a sender wrote with a line break and a fake link
    world = Deployment()
    alert = next(iter(world.intake.read(json.loads(_sample(C2))).alerts))
    forged = alert.model_copy(update={"account": "1\nApprove: https://evil.example/"})

    # When its eligibility is decided
    decision = eligibility(forged, DETECTOR, PLACE, "approval")

    # Then the reason holds the account escaped on one line
    (reason,) = decision.not_actionable
    assert "\n" not in reason
    assert "1\\nApprove" in reason


def test_requiring_approval_keeps_each_actions_own_parameters() -> None:
    # Given an action with parameters of its own
    action = Action(type=ActionType.DISABLE_ACCESS_KEY, target="AKIA", parameters={"user_name": "ci"})

    # When it is made to wait for a person
    (waiting,) = requiring_approval([action], "pushed")

    # Then it keeps them, and waits
    assert waiting.parameters == {"user_name": "ci", NEEDS_APPROVAL_PARAMETER: "true"}


# ---------------------------------------------------------------- identity includes content


def _benign_borrowing(sample: str) -> str:
    """A low-severity document with nothing to look up that borrows the sample's finding id and version."""
    event = json.loads(_sample(sample))
    benign = copy.deepcopy(event)
    benign["detail"]["severity"] = 1
    benign["detail"]["type"] = "Recon:EC2/PortProbeUnprotectedPort"
    benign["detail"]["title"] = "Unprotected port on EC2 instance is being probed."
    benign["detail"]["service"]["action"] = {"actionType": "PORT_PROBE"}
    return json.dumps(benign)


def test_another_content_under_a_known_id_and_version_is_a_case_of_its_own_each_naming_the_other() -> None:
    # Given a benign document that borrowed the C&C finding's id and updatedAt, triaged first
    world = Deployment()
    _triage(_batch(world), _record(_benign_borrowing(C2), ALERT_QUEUE_ARN, index=0))
    (benign_id,) = world.cases.case_ids

    # When the genuine finding arrives with the same id and version
    _triage(_batch(world), _record(_sample(C2), ALERT_QUEUE_ARN, index=1))

    # Then it is a case of its own, remediable, with its execution started
    (genuine_id,) = [case_id for case_id in world.cases.case_ids if case_id != benign_id]
    genuine, benign = world.case(genuine_id), world.case(benign_id)
    assert genuine.alert.id == benign.alert.id
    assert genuine.actions
    assert world.executions.started[genuine_id].route is Branch.REMEDIATE
    # And each case names the other, with a line in its history
    assert genuine.variant_case_ids == [benign_id]
    assert benign.variant_case_ids == [genuine_id]
    assert any(benign_id in entry.note and "came earlier" in entry.note for entry in genuine.history)
    assert any(genuine_id in entry.note and "came later" in entry.note for entry in benign.history)


def test_a_true_redelivery_stays_one_case() -> None:
    # Given the C&C finding triaged once
    world = Deployment()
    _triage(_batch(world), _record(_sample(C2), ALERT_QUEUE_ARN, index=0))

    # When the very same finding is delivered again
    _triage(_batch(world), _record(_sample(C2), ALERT_QUEUE_ARN, index=1))

    # Then it is still one case, naming no other
    case = _only_case(world)
    assert case.variant_case_ids == []
    assert case.status is not CaseStatus.PENDING_ENRICHMENT


# ---------------------------------------------------------------- repeats across channels


def _with_id(sample: str, finding_id: str) -> str:
    event = json.loads(_sample(sample))
    event["detail"]["id"] = finding_id
    return json.dumps(event)


def test_a_pushed_alert_cannot_make_a_detectors_later_finding_a_repeat() -> None:
    # Given a pushed copy of the C&C finding (another finding id; same type, instance and domain), its
    # actions waiting for a person
    world = Deployment()
    _triage(_batch(world), _record(_with_id(C2, "e" * 32), PUSHED_QUEUE_ARN, STAMP, index=0))
    (pushed_id,) = world.cases.case_ids

    # When the detector's own finding arrives within the repeat window
    _triage(_batch(world), _record(_sample(C2), ALERT_QUEUE_ARN, index=1))

    # Then it is not folded into the pushed case: a case of its own, acted on without a person
    (detector_id,) = [case_id for case_id in world.cases.case_ids if case_id != pushed_id]
    detector_case = world.case(detector_id)
    assert detector_case.actions
    assert all(NEEDS_APPROVAL_PARAMETER not in action.parameters for action in detector_case.actions)
    assert world.case(pushed_id).repeat_count == 0


def test_a_pushed_copy_of_a_detectors_finding_is_folded_into_its_case() -> None:
    # Given the detector's C&C finding triaged
    world = Deployment()
    _triage(_batch(world), _record(_sample(C2), ALERT_QUEUE_ARN, index=0))
    (detector_id,) = world.cases.case_ids

    # When a pushed copy of it (another finding id) arrives
    _triage(_batch(world), _record(_with_id(C2, "e" * 32), PUSHED_QUEUE_ARN, STAMP, index=1))

    # Then it says nothing more: it is folded into the detector's case as a repeat
    assert world.cases.case_ids == [detector_id]
    assert world.case(detector_id).repeat_count == 1


# ---------------------------------------------------------------- one finding through two channels


def _sent(
    world: Deployment, channel: str, index: int, pushed_alert_actions: PushedAlertActions = "approval"
) -> None:
    """The C&C sample delivered once through `channel`: the intake's queue, stamped, or the detector's."""
    record = (
        _record(_sample(C2), PUSHED_QUEUE_ARN, STAMP, index=index)
        if channel == "intake"
        else _record(_sample(C2), ALERT_QUEUE_ARN, index=index)
    )
    _triage(_batch(world, pushed_alert_actions), record)


def _by_channel(world: Deployment) -> dict[str, Case]:
    """Every stored case, by the channel it records."""
    cases = [world.case(case_id) for case_id in world.cases.case_ids]
    found: dict[str, Case] = {case.provenance.channel: case for case in cases if case.provenance is not None}
    assert len(found) == len(cases), [case.provenance for case in cases]
    return found


@pytest.mark.parametrize("pushed_alert_actions", ["approval", "ticket"])
def test_the_detectors_delivery_of_a_finding_pushed_first_is_acted_on_in_a_case_of_its_own(
    pushed_alert_actions: PushedAlertActions,
) -> None:
    # Given an identical copy of the C&C finding pushed first through the intake URL (a forwarder, `vtriage
    # send` of `aws guardduty get-findings`, or someone holding the intake's permission), triaged: its
    # actions wait for a person, or none is planned, and its execution has started
    world = Deployment()
    _sent(world, "intake", 0, pushed_alert_actions)
    (pushed_id,) = world.cases.case_ids
    pushed_before = world.case(pushed_id)
    pushed_started = world.executions.started[pushed_id]

    # When the detector rules deliver the same finding
    _sent(world, "detector", 1, pushed_alert_actions)

    # Then it is triaged as the detector's, in a case of its own: the four actions planned with no person in
    # the way, its execution started on the remediate route
    cases = _by_channel(world)
    detector = cases["detector"]
    assert detector.case_id == detector.alert.case_id_through("detector") != pushed_id
    assert [action.type for action in detector.actions] == [
        ActionType.SNAPSHOT_VOLUMES,
        ActionType.TAG_INSTANCE,
        ActionType.ISOLATE_INSTANCE,
        ActionType.BLOCK_DOMAIN_DNS_FIREWALL,
    ]
    assert all(NEEDS_APPROVAL_PARAMETER not in action.parameters for action in detector.actions)
    assert detector.provenance == Provenance(channel="detector")
    assert world.executions.started[detector.case_id].route is Branch.REMEDIATE
    # And the pushed copy's case is left to its execution as it was (its channel, its plan, its input)
    pushed = cases["intake"]
    assert (pushed.case_id, pushed.provenance, pushed.actions) == (
        pushed_id,
        pushed_before.provenance,
        pushed_before.actions,
    )
    assert world.executions.started[pushed_id] == pushed_started
    # And each case names the other, the detector's saying who pushed the copy that came first
    assert detector.variant_case_ids == [pushed_id]
    assert pushed.variant_case_ids == [detector.case_id]
    assert any(
        f"came earlier through the intake URL, signed by {SENDER}" in entry.note and pushed_id in entry.note
        for entry in detector.history
    )
    assert any(
        "came later through the detector rules (EventBridge)" in entry.note and detector.case_id in entry.note
        for entry in pushed.history
    )


def test_each_channels_delivery_again_meets_its_own_case() -> None:
    # Given the C&C finding pushed first, then delivered by the detector rules in a case of its own
    world = Deployment()
    _sent(world, "intake", 0)
    _sent(world, "detector", 1)
    cases = _by_channel(world)

    # When each is delivered once more
    detector_again = _triage(_batch(world), _record(_sample(C2), ALERT_QUEUE_ARN, index=2))
    pushed_again = _triage(_batch(world), _record(_sample(C2), PUSHED_QUEUE_ARN, STAMP, index=3))

    # Then each meets its own case, which runs once: no third case, no third execution
    assert detector_again["batchItemFailures"] == pushed_again["batchItemFailures"] == []
    assert sorted(world.cases.case_ids) == sorted(case.case_id for case in cases.values())
    assert sorted(world.executions.started) == sorted(case.case_id for case in cases.values())
    assert _by_channel(world) == cases


def test_a_copy_pushed_after_the_detectors_delivery_changes_nothing() -> None:
    # Given the C&C finding delivered by the detector rules and triaged
    world = Deployment()
    _sent(world, "detector", 0)
    (case_id,) = world.cases.case_ids
    before = world.case(case_id)

    # When an identical copy is pushed through the intake URL
    _sent(world, "intake", 1)

    # Then it is a duplicate of the detector's case, whose channel and plan stay
    assert world.cases.case_ids == [case_id]
    assert world.case(case_id) == before
    assert list(world.executions.started) == [case_id]


def test_a_pushed_copy_meeting_the_detectors_case_waiting_for_enrichment_is_triaged_as_the_detectors() -> (
    None
):
    # Given the detector's C&C finding waiting for its enrichment (the minute's VirusTotal quota spent)
    world = Deployment(per_minute=1)
    world.limiter.acquire()  # type: ignore[union-attr]
    _sent(world, "detector", 0)
    (case_id,) = world.cases.case_ids
    assert world.case(case_id).status is CaseStatus.PENDING_ENRICHMENT

    # When an identical copy is pushed through the intake URL the next minute, then the detector's record
    # comes back
    world.clock.at += timedelta(minutes=1)
    _sent(world, "intake", 1)
    _sent(world, "detector", 2)

    # Then the one case keeps the detector's channel and its plan, with no person in the way, and says a
    # pushed copy met it
    assert world.cases.case_ids == [case_id]
    case = world.case(case_id)
    assert case.provenance == Provenance(channel="detector")
    assert case.actions
    assert all(NEEDS_APPROVAL_PARAMETER not in action.parameters for action in case.actions)
    assert any(
        f"a copy delivered through the intake URL, signed by {SENDER}" in entry.note for entry in case.history
    )
    assert world.executions.started[case_id].route is Branch.REMEDIATE


def test_the_detectors_delivery_meeting_a_pushed_copy_waiting_for_enrichment_takes_its_case() -> None:
    # Given a pushed copy of the C&C finding waiting for its enrichment (no execution yet)
    world = Deployment(per_minute=1)
    world.limiter.acquire()  # type: ignore[union-attr]
    _sent(world, "intake", 0)
    (case_id,) = world.cases.case_ids
    assert world.case(case_id).provenance.channel == "intake"  # type: ignore[union-attr]

    # When the detector rules deliver the same finding the next minute
    world.clock.at += timedelta(minutes=1)
    _sent(world, "detector", 1)

    # Then the one case is the detector's: its channel, its plan, its history saying a copy came first
    assert world.cases.case_ids == [case_id]
    case = world.case(case_id)
    assert case.provenance == Provenance(channel="detector")
    assert all(NEEDS_APPROVAL_PARAMETER not in action.parameters for action in case.actions)
    assert any(
        f"a copy delivered earlier through the intake URL, signed by {SENDER}" in entry.note
        for entry in case.history
    )
    assert world.executions.started[case_id].route is Branch.REMEDIATE

    # And when the pushed copy's record comes back, it changes nothing
    _sent(world, "intake", 2)
    assert world.case(case_id).provenance == Provenance(channel="detector")
    assert list(world.executions.started) == [case_id]


def test_the_detectors_delivery_put_off_after_a_pushed_copy_waits_in_its_own_case() -> None:
    # Given a pushed copy of the C&C finding triaged, its lookup the minute's one request, and its
    # enrichment no longer in the cache
    world = Deployment(per_minute=1)
    _sent(world, "intake", 0)
    (pushed_id,) = world.cases.case_ids
    world.cache = type(world.cache)(now=world.clock)

    # When the detector rules deliver the same finding, then once more the next minute
    _sent(world, "detector", 1)
    waiting = _by_channel(world)["detector"]
    world.clock.at += timedelta(minutes=1)
    _sent(world, "detector", 2)

    # Then its own case waited for its enrichment, then was triaged as the detector's
    assert waiting.status is CaseStatus.PENDING_ENRICHMENT
    detector = world.case(waiting.case_id)
    assert detector.status is CaseStatus.ENRICHED
    assert all(NEEDS_APPROVAL_PARAMETER not in action.parameters for action in detector.actions)
    assert world.executions.started[detector.case_id].route is Branch.REMEDIATE
    assert world.case(pushed_id).provenance.channel == "intake"  # type: ignore[union-attr]


def _read(world: Deployment, channel: str, index: int) -> tuple[Batch, ReadRecord]:
    """A batch that has read one delivery of the C&C sample (and its stored case), not yet triaged."""
    batch = _batch(world)
    queue, stamp = (PUSHED_QUEUE_ARN, STAMP) if channel == "intake" else (ALERT_QUEUE_ARN, {})
    [read] = batch.read([QueuedRecord(f"m-{index}", _sample(C2), queue, attributes=stamp)])
    return batch, read


def test_a_pushed_copy_stored_while_the_detectors_delivery_was_triaged_does_not_swallow_it() -> None:
    # Given the detector's delivery of the C&C finding read with no case stored yet
    world = Deployment()
    batch, detector = _read(world, "detector", 0)

    # When a pushed copy is triaged in the meantime (another invocation), then the detector's delivery
    _sent(world, "intake", 1)
    outcome = batch.triage_record(detector)

    # Then the detector's delivery is still triaged as the detector's, in a case of its own
    cases = _by_channel(world)
    assert [summary.case_id for summary in outcome.cases] == [cases["detector"].case_id]
    assert all(NEEDS_APPROVAL_PARAMETER not in action.parameters for action in cases["detector"].actions)


def test_a_pushed_copy_enriched_while_the_detectors_delivery_was_triaged_does_not_swallow_it() -> None:
    # Given a pushed copy waiting for its enrichment, and the detector's delivery read with it
    world = Deployment(per_minute=1)
    world.limiter.acquire()  # type: ignore[union-attr]
    _sent(world, "intake", 0)
    world.clock.at += timedelta(minutes=1)
    batch, detector = _read(world, "detector", 1)

    # When the pushed copy's record comes back and is triaged first, then the detector's delivery
    _sent(world, "intake", 2)
    outcome = batch.triage_record(detector)

    # Then the pushed copy's case stays as its execution has it, and the detector's is a case of its own
    cases = _by_channel(world)
    assert [summary.case_id for summary in outcome.cases] == [cases["detector"].case_id]
    assert all(NEEDS_APPROVAL_PARAMETER not in action.parameters for action in cases["detector"].actions)
    assert all(action.parameters[NEEDS_APPROVAL_PARAMETER] == "true" for action in cases["intake"].actions)


def test_a_pushed_copy_read_while_the_detectors_case_waited_never_lowers_it() -> None:
    # Given the detector's case waiting for its enrichment, and a pushed copy read with it
    world = Deployment(per_minute=1)
    world.limiter.acquire()  # type: ignore[union-attr]
    _sent(world, "detector", 0)
    (case_id,) = world.cases.case_ids
    world.clock.at += timedelta(minutes=1)
    batch, pushed = _read(world, "intake", 1)

    # When the detector's record comes back and is triaged first, then the pushed copy
    _sent(world, "detector", 2)
    triaged = world.case(case_id)
    outcome = batch.triage_record(pushed)

    # Then the pushed copy is a duplicate of the detector's case, which it leaves as it was
    assert [(summary.case_id, summary.duplicate) for summary in outcome.cases] == [(case_id, True)]
    assert world.cases.case_ids == [case_id]
    assert world.case(case_id) == triaged


def test_a_pushed_copy_of_a_later_version_folded_first_does_not_swallow_the_detectors() -> None:
    # Given the detector's C&C finding whose actions ran in dry run, DryRun now off
    world = Deployment()
    _sent(world, "detector", 0)
    (first_id,) = world.cases.case_ids
    first = world.case(first_id)
    first.actions = [action.with_outcome(ActionStatus.DRY_RUN, "dry run") for action in first.actions]
    first.record(CaseStatus.TICKETED, world.clock.at)
    world.cases.save(first)
    world.dry_run = False

    # When a copy of the finding's next version is pushed first (its actions would wait for a person:
    # folded), then the detector rules deliver that version
    later = json.loads(_sample(C2))
    later["detail"]["updatedAt"] = "2026-11-26T15:00:00.000Z"
    _triage(_batch(world), _record(json.dumps(later), PUSHED_QUEUE_ARN, STAMP, index=1))
    assert world.case(first_id).repeat_count == 1
    _triage(_batch(world), _record(json.dumps(later), ALERT_QUEUE_ARN, index=2))

    # Then the detector's delivery is no duplicate of the folded copy: a case of its own, which acts
    (detector_id,) = [case_id for case_id in world.cases.case_ids if case_id != first_id]
    assert world.executions.started[detector_id].route is Branch.REMEDIATE
    assert all(
        NEEDS_APPROVAL_PARAMETER not in action.parameters for action in world.case(detector_id).actions
    )

    # And when the detector rules deliver that version again, and the copy is pushed again, each meets a
    # case already there: no third case, no other execution
    started = dict(world.executions.started)
    _triage(_batch(world), _record(json.dumps(later), ALERT_QUEUE_ARN, index=3))
    _triage(_batch(world), _record(json.dumps(later), PUSHED_QUEUE_ARN, STAMP, index=4))
    assert sorted(world.cases.case_ids) == sorted([first_id, detector_id])
    assert world.executions.started == started
    assert world.case(first_id).repeat_count == 1


def test_a_case_waiting_for_its_enrichment_takes_the_more_trusted_channel_while_it_still_waits() -> None:
    # Given a pushed copy of the C&C finding waiting for its enrichment, the quota spent for the minute
    world = Deployment(per_minute=1)
    world.limiter.acquire()  # type: ignore[union-attr]
    _sent(world, "intake", 0)
    (case_id,) = world.cases.case_ids

    # When the detector rules deliver the same finding in the same minute (put off too), then the pushed
    # copy's record comes back, put off again
    _sent(world, "detector", 1)
    raised = world.case(case_id)
    _sent(world, "intake", 2)

    # Then the waiting case took the detector's channel, saying so once, and the pushed copy left it so
    waiting = world.case(case_id)
    assert raised.provenance == waiting.provenance == Provenance(channel="detector")
    assert waiting.status is CaseStatus.PENDING_ENRICHMENT
    notes = [entry.note for entry in waiting.history if "came through the detector rules" in entry.note]
    assert len(notes) == 1
    assert world.executions.started == {}
