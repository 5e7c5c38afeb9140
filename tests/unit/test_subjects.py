"""What an alert is about when vtriage cannot act on it (`vtriage.models.Subject`): a stored case from before
subjects were kept still reads, its repeat key unchanged; subjects tell two findings apart and never make
two findings one; what a person reads of one is escaped."""

from __future__ import annotations

from tests.factories import make_alert, make_case
from vtriage.adapters.dynamodb import case_from_item, to_item
from vtriage.models import NO_ACTION_ON_SUBJECT, Ioc, IocType, Subject

IMAGE_RESIZER = Subject(
    type="Lambda", id="arn:aws:lambda:us-east-1:123456789012:function:image-resizer", name="image-resizer"
)
THUMBNAILS = Subject(
    type="Lambda", id="arn:aws:lambda:us-east-1:123456789012:function:thumbnails", name="thumbnails"
)
C2_ADDRESS = Ioc(type=IocType.IP, value="23.129.64.215", found_at="service.action")
# make_alert()'s repeat key as vtriage computed it before subjects were kept (models.py at 9ece646).
REPEAT_KEY_BEFORE_SUBJECTS = "repeat#ddf337d5988b40ea234b4dcadcdbb664185743ea"


def test_a_case_stored_before_subjects_were_kept_reads_with_none_and_its_repeat_key_unchanged() -> None:
    # Given a case item as the cases table holds one written before subjects were kept
    document = make_case(make_alert()).model_dump(mode="json")
    del document["alert"]["subjects"]
    item = to_item(document)

    # When the cases repository reads it
    case = case_from_item(item)

    # Then it loads, about nothing vtriage cannot act on, and a new finding on the same instance and IOCs
    # still meets it under the repeat key it was remembered by
    assert case.alert.subjects == ()
    assert case.alert.repeat_key == REPEAT_KEY_BEFORE_SUBJECTS == make_alert().repeat_key


def test_findings_on_two_functions_have_two_repeat_keys_and_on_one_function_one() -> None:
    # Given three findings of one type with the same IOCs: two on image-resizer, one on thumbnails
    first = make_alert(id="a" * 32, resources=(), iocs=(C2_ADDRESS,), subjects=(IMAGE_RESIZER,))
    again = make_alert(id="b" * 32, resources=(), iocs=(C2_ADDRESS,), subjects=(IMAGE_RESIZER,))
    other = make_alert(id="c" * 32, resources=(), iocs=(C2_ADDRESS,), subjects=(THUMBNAILS,))

    # When their repeat keys are compared
    # Then the two on image-resizer share one, and the one on thumbnails has its own
    assert first.repeat_key == again.repeat_key != other.repeat_key


def test_a_subject_never_makes_a_finding_without_resource_or_ioc_the_repeat_of_another() -> None:
    # Given two findings of one type on the same EKS cluster, with no resource and no IOC (two controls)
    cluster = Subject(type="AwsEksCluster", id="arn:aws:eks:us-east-1:123456789012:cluster/orders")
    one = make_alert(id="control-1", resources=(), iocs=(), subjects=(cluster,))
    two = make_alert(id="control-2", resources=(), iocs=(), subjects=(cluster,))

    # When their repeat keys are compared
    # Then they differ: subjects only ever tell findings apart
    assert one.repeat_key != two.repeat_key


def test_a_subject_reads_in_a_persons_words_with_the_senders_values_escaped() -> None:
    # Given a function the detector names, and a resource of a type vtriage has no words for, whose
    # values hold a line break and a link
    hostile = Subject(type="Custom\nType", id="https://evil.example/x\nApprove: yes", name="x")

    # When each is described
    # Then the known type reads in words, the unknown one as written, every sender's value escaped
    assert IMAGE_RESIZER.described == (
        "Lambda function image-resizer (arn:aws:lambda:us-east-1:123456789012:function:image-resizer)"
    )
    assert IMAGE_RESIZER.short == "Lambda function image-resizer"
    assert hostile.described == "Custom\\nType x (hxxps://evil.example/x\\nApprove: yes)"
    assert "\n" not in hostile.short
    assert NO_ACTION_ON_SUBJECT == "vtriage takes no action on this kind of resource"
