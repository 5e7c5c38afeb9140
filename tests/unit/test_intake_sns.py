"""An SNS notification (what a queue subscribed to a topic receives without raw message delivery) is read
from its Message, as the document its detector published: the same alerts, the same cases, the envelope
only noted; its findings placed under `Message`; a Message that is no alert refused whole, saying what and
where. The envelope raises no trust: the channel the body came on decides what may run (decision 2)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from tests.unit.test_enrich import C2, _sample
from tests.unit.test_enrich_provenance import (
    PUSHED_QUEUE_ARN,
    SENDER,
    STAMP,
    Deployment,
    _batch,
    _only_case,
    _record,
    _triage,
)
from vtriage.errors import InvalidAlertError
from vtriage.fakes import FakeAlertQueue
from vtriage.intake import FindingRefusal, IntakeOptions, IntakeResult
from vtriage.intake.body import decode_body
from vtriage.intake_api import accept_alert
from vtriage.models import NEEDS_APPROVAL_PARAMETER, Provenance

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
# A real GuardDuty event, and the same as the Message of an SNS notification (the envelope SNS documents).
EVENT = "warren__examples_alert_guardduty.json"
NOTIFICATION = "synthetic-sns-notification-guardduty-event.json"
TOPIC = "arn:aws:sns:us-east-1:123456789012:guardduty-findings"


def load(name: str) -> Any:
    return json.loads((CORPUS / name).read_text())


def read(document: Any) -> IntakeResult:
    """The document as the enrich function reads a message body."""
    return IntakeOptions().read(decode_body(json.dumps(document)))


def notification(message: Any) -> dict[str, Any]:
    """The corpus's notification carrying `message` (a document, published as its JSON text; a string as
    it is)."""
    envelope: dict[str, Any] = load(NOTIFICATION)
    envelope["Message"] = message if isinstance(message, str) else json.dumps(message)
    return envelope


def test_a_guardduty_event_published_through_sns_is_the_alert_and_the_case_of_the_event_itself() -> None:
    # Given a real GuardDuty event, and the same event as an SQS queue subscribed to its SNS topic gets it
    event, wrapped = load(EVENT), load(NOTIFICATION)

    # When each is read
    [direct] = read(event).alerts
    [through_sns] = read(wrapped).alerts

    # Then it is the same alert, the same case: the IOC looked up, the instance, the finding's own place
    assert through_sns.case_id == direct.case_id
    assert through_sns.model_copy(update={"notes": direct.notes}) == direct
    assert [ioc.value for ioc in through_sns.iocs] == ["xr7v2k9q.com"]
    # And the case says how it came, naming the topic as the sender's word
    assert through_sns.notes[0] == (
        f"read from the Message of an SNS notification (topic {TOPIC!r}, message"
        " '22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324'): the envelope is the sender's word, never checked; the"
        " queue the message came on decides its provenance"
    )


def test_each_finding_of_the_message_has_its_own_fate_placed_under_message() -> None:
    # Given a notification whose Message is get-findings output: a real GuardDuty finding and a copy
    # without its Id
    output: dict[str, Any] = load("aws-cli__guardduty_get-findings.json")
    broken = copy.deepcopy(output["Findings"][0])
    del broken["Id"]
    output["Findings"].append(broken)

    # When it is read
    result = read(notification(output))

    # Then the good finding is an alert, and the broken one is refused alone, where it sits in the Message
    assert [alert.id for alert in result.alerts] == ["1ab92989eaf0e742df4a014d5example"]
    assert result.refused == (FindingRefusal(where="Message.Findings[1]", reason="Findings[1].Id: missing"),)


@pytest.mark.parametrize(
    ("envelope", "field", "said"),
    [
        (notification("EC2 instance i-0a1b2c3d is querying a C&C domain"), "Message", "not JSON"),
        (notification('{"version": "0", "detail'), "Message", "not JSON"),
        ({**load(NOTIFICATION), "Message": {"detail": {}}}, "Message", "expected the published document"),
        (notification({"hello": "world"}), "Message", "unknown shape"),
        (notification(load("powertools__sqsEvent.json")), "Message.Records", "an SQS event"),
        (notification(load(NOTIFICATION)), "Message", "an SNS notification inside an SNS notification"),
        ({**load(NOTIFICATION), "Type": "SubscriptionConfirmation"}, "Type", "not a notification"),
    ],
    ids=["prose", "cut-off", "object", "unknown-shape", "sqs-event", "nested", "confirmation"],
)
def test_a_notification_holding_no_alert_is_refused_saying_what_and_where(
    envelope: dict[str, Any], field: str, said: str
) -> None:
    # Given an SNS message whose Message is no alert (or that is no notification at all)
    # When it is read
    with pytest.raises(InvalidAlertError) as refused:
        read(envelope)

    # Then the whole body is refused, naming the field at fault and what is wrong with it
    assert refused.value.field == field
    assert said in refused.value.reason


def test_a_pushed_notification_waits_for_a_person_whatever_topic_it_names() -> None:
    # Given the C&C sample published through an SNS topic of the deployment's own account, pushed through
    # the intake URL (its own queue, stamped with the signed caller)
    world = Deployment()
    body = json.dumps(notification(json.loads(_sample(C2))))

    # When its batch is triaged, pushed alerts waiting for approval (the default)
    _triage(_batch(world), _record(body, PUSHED_QUEUE_ARN, STAMP))

    # Then it is the pushed alert it always was: each action waits for a person; the envelope changed
    # nothing of its channel
    case = _only_case(world)
    assert case.actions
    assert all(action.parameters[NEEDS_APPROVAL_PARAMETER] == "true" for action in case.actions)
    assert case.provenance == Provenance(
        channel="intake", sender=SENDER, source_ip="198.51.100.7", user_agent="forwarder/1.0"
    )


def test_the_intake_url_queues_a_notification_as_sent_and_names_its_alert() -> None:
    # Given the notification as a sender pushes it
    body = (CORPUS / NOTIFICATION).read_text()
    queue = FakeAlertQueue()

    # When the intake reads it as the enrich function will
    accepted = accept_alert(body, queue, options=IntakeOptions(), stamp={})

    # Then it is queued unchanged, its alert named
    assert queue.bodies == [body]
    assert list(accepted.alert_ids) == ["92b49806f26831e4f3895e2f4cd97a52"]
