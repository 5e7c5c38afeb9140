"""The S3 quarantine's rules that need no S3: which buckets objects may be moved out of
(QuarantineSourceBuckets: the remediate function's settings, its actuators, the actuator itself), which
objects a finding identifies well enough to be moved (its version id or its ETag), and how the plan records
an object that may not be moved: skipped with the reason, the case going on to its ticket. What the
actuator does in S3 is tested on moto (tests/functional/test_actuators_s3.py)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.factories import make_alert, make_case
from tests.remediation_steps import finish, plan, remediator
from vtriage.adapters.s3 import S3ObjectQuarantine, bucket_matches
from vtriage.composition.remediate import actuators
from vtriage.config.remediate import RemediateSettings
from vtriage.eligibility import Place
from vtriage.errors import ConfigurationError
from vtriage.fakes import InMemoryCaseRepository
from vtriage.models import Action, ActionStatus, ActionType, CaseStatus, Resource, ResourceType, Verdict
from vtriage.ports import ForeseeingActuator

OWN_ACCOUNT = "123456789012"
PLACE = Place(own_account=OWN_ACCOUNT, regions=frozenset({"us-east-1"}))
QUARANTINE_BUCKET = "vtriage-quarantine-123456789012"
SOURCES = "uploads-*"
VERSION = "3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrH"
ETAG = "546bb6ef89bebfb053999777f6930d7e"
ENVIRON = {"AWS_REGION": "us-east-1", "CASES_TABLE_NAME": "cases", "OWN_ACCOUNT_ID": OWN_ACCOUNT}


class NoS3:
    """An S3 client no call may reach: what these tests ask is known without S3."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"S3 was called: {name}")


def quarantine(sources: str = SOURCES) -> S3ObjectQuarantine:
    return S3ObjectQuarantine(NoS3(), QUARANTINE_BUCKET, "vtriage:protected", sources)


def object_action(bucket: str = "uploads-eu", key: str = "incoming/invoice.exe", **identity: str) -> Action:
    """A quarantine of the object as the playbook plans it, with the version and ETag given."""
    return Action(
        type=ActionType.QUARANTINE_OBJECT,
        target=f"s3://{bucket}/{key}",
        parameters={"bucket": bucket, "key": key, "case_id": "guardduty-1", **identity},
    )


def skipped_without_s3(actuator: S3ObjectQuarantine, action: Action) -> Action:
    """The outcome foreseen, which must be the one each run gives (dry run or not), no S3 call made."""
    foreseen = actuator.outcome_without_acting(action)
    assert foreseen is not None
    assert foreseen == actuator.run(action, True) == actuator.run(action, False)
    assert foreseen.status is ActionStatus.SKIPPED
    return foreseen


@pytest.mark.parametrize(
    ("pattern", "bucket", "matches"),
    [
        ("uploads", "uploads", True),
        ("uploads", "uploads-eu", False),
        ("uploads", "my-uploads", False),
        ("uploads-*", "uploads-eu", True),
        ("uploads-*", "uploads-", True),
        ("uploads-*", "uploads", False),
        ("data-*-raw", "data-eu-west-1-raw", True),
        ("data-*-raw", "data-eu-west-1-raw-copy", False),
        # A dot is a dot, not any character
        ("my.bucket", "my.bucket", True),
        ("my.bucket", "myxbucket", False),
    ],
)
def test_a_bucket_is_a_source_only_when_the_name_or_pattern_names_it_whole(
    pattern: str, bucket: str, matches: bool
) -> None:
    # Given QuarantineSourceBuckets, as IAM reads it in arn:aws:s3:::<pattern>/* (`*` any characters)
    # When a bucket is checked against it, Then it matches only as a whole name
    assert bucket_matches(pattern, bucket) is matches


def test_an_object_outside_the_source_buckets_is_skipped_without_calling_s3() -> None:
    # Given an object named by its version and ETag, in a bucket QuarantineSourceBuckets does not name
    action = object_action("payroll", version_id=VERSION, etag=ETAG)

    # When its quarantine is foreseen and run, Then it is skipped, saying which bucket and what is allowed
    outcome = skipped_without_s3(quarantine(), action)
    assert outcome.detail == (
        "not quarantined: bucket payroll is not among the buckets objects may be quarantined out of "
        "(QuarantineSourceBuckets: uploads-*); the object is left where it is, for a person"
    )


def test_an_object_of_the_quarantine_bucket_itself_is_never_moved_even_when_the_pattern_names_it() -> None:
    # Given source buckets whose pattern also names the quarantine bucket, and an object in it
    action = object_action(QUARANTINE_BUCKET, "guardduty-0/uploads-eu/invoice.exe", version_id=VERSION)

    # When its quarantine is foreseen and run, Then it is skipped, saying why
    outcome = skipped_without_s3(quarantine("vtriage-*"), action)
    assert "is in the quarantine bucket itself" in outcome.detail


@pytest.mark.parametrize("identity", [{}, {"version_id": "null"}, {"version_id": "", "etag": ""}])
def test_an_object_the_finding_names_neither_the_version_nor_the_etag_of_is_skipped(
    identity: dict[str, str],
) -> None:
    # Given an object in a source bucket whose finding names no version (S3's 'null' tells no upload
    # apart) and no ETag: nothing tells the object at the key now from the one scanned
    action = object_action(**identity)

    # When its quarantine is foreseen and run, Then it is skipped, saying so
    outcome = skipped_without_s3(quarantine(), action)
    assert outcome.detail == (
        "not quarantined: the finding names neither the version nor the ETag of the object it scanned, so "
        "nothing tells that the object at s3://uploads-eu/incoming/invoice.exe now is that one; the object "
        "is left where it is, for a person"
    )


@pytest.mark.parametrize(
    "identity", [{"version_id": VERSION}, {"etag": ETAG}, {"version_id": "null", "etag": ETAG}]
)
def test_an_object_identified_in_a_source_bucket_is_left_to_its_run(identity: dict[str, str]) -> None:
    # Given an object in a source bucket, named by its version or its ETag
    # When its outcome is asked for beforehand, Then only running it (reading S3) tells
    assert quarantine().outcome_without_acting(object_action(**identity)) is None


def test_the_source_buckets_are_read_from_the_environment_and_checked_at_start_up() -> None:
    # Given the remediate function's environment, with the template's QuarantineSourceBuckets or without
    # When its settings are read, Then a name or pattern is kept, an empty value is none
    read = RemediateSettings.from_environ({**ENVIRON, "QUARANTINE_SOURCE_BUCKETS": "uploads-*"})
    assert read.quarantine_source_buckets == "uploads-*"
    unset = RemediateSettings.from_environ({**ENVIRON, "QUARANTINE_SOURCE_BUCKETS": ""})
    assert unset.quarantine_source_buckets is None
    # And one that would name every bucket, or no bucket name at all, stops the function, naming it
    for refused in ("*", "*-uploads", "Uploads", "uploads/raw"):
        with pytest.raises(ConfigurationError, match="QUARANTINE_SOURCE_BUCKETS"):
            RemediateSettings.from_environ({**ENVIRON, "QUARANTINE_SOURCE_BUCKETS": refused})


@pytest.mark.parametrize(
    ("configured", "says"),
    [
        ({}, "no quarantine bucket is configured"),
        ({"QUARANTINE_SOURCE_BUCKETS": SOURCES}, "no quarantine bucket is configured"),
        ({"QUARANTINE_BUCKET": QUARANTINE_BUCKET}, "no source bucket is configured"),
    ],
)
def test_without_a_quarantine_bucket_and_source_buckets_no_object_is_moved(
    configured: dict[str, str], says: str
) -> None:
    # Given a deployment missing the quarantine bucket or the source buckets
    settings = RemediateSettings.from_environ({**ENVIRON, **configured})

    # When the remediate function builds its quarantine actuator
    built = actuators(settings)[ActionType.QUARANTINE_OBJECT]

    # Then it skips every object beforehand, saying what is missing (the case goes to its ticket)
    assert isinstance(built, ForeseeingActuator)
    outcome = built.outcome_without_acting(object_action(version_id=VERSION, etag=ETAG))
    assert outcome is not None
    assert outcome.status is ActionStatus.SKIPPED
    assert says in outcome.detail


def test_with_both_the_remediate_function_moves_objects_of_the_source_buckets_alone() -> None:
    # Given a deployment with a quarantine bucket and source buckets
    environ = {**ENVIRON, "QUARANTINE_BUCKET": QUARANTINE_BUCKET, "QUARANTINE_SOURCE_BUCKETS": SOURCES}
    built = actuators(RemediateSettings.from_environ(environ))[ActionType.QUARANTINE_OBJECT]
    assert isinstance(built, ForeseeingActuator)

    # When an object of a source bucket and one of another bucket are asked about beforehand
    in_sources = built.outcome_without_acting(object_action(version_id=VERSION))
    elsewhere = built.outcome_without_acting(object_action("payroll", version_id=VERSION))

    # Then the first is left to its run, the second skipped, naming the pattern
    assert in_sources is None
    assert elsewhere is not None
    assert "(QuarantineSourceBuckets: uploads-*)" in elsewhere.detail


def test_the_plan_records_an_object_outside_the_source_buckets_as_skipped_and_the_case_goes_on() -> None:
    # Given a malicious case planning the quarantine of an object in a bucket no source pattern names
    scanned = Resource(
        type=ResourceType.S3_OBJECT,
        id="payroll/march.xlsx",
        bucket="payroll",
        key="march.xlsx",
        version_id=VERSION,
        etag=ETAG,
    )
    alert = make_alert(type="Object:S3/MaliciousFile", resources=(scanned,))
    action = object_action("payroll", "march.xlsx", version_id=VERSION, etag=ETAG)
    case = make_case(alert, status=CaseStatus.ENRICHED, verdict=Verdict.MALICIOUS, actions=[action])
    cases = InMemoryCaseRepository([case])
    steps = remediator(cases, {ActionType.QUARANTINE_OBJECT: quarantine()}, place=PLACE)

    # When the remediate function plans, then finishes, the case
    planned = plan(steps, case.case_id)
    finish(steps, case.case_id)

    # Then no run step is planned, the action is recorded skipped with the reason, where the finding lives,
    # and nothing failed: the state machine goes on to the case's ticket, which shows the reason
    assert planned.items == []
    stored = cases.get(case.case_id)
    assert stored is not None
    [recorded] = stored.actions
    assert recorded.status is ActionStatus.SKIPPED
    assert "bucket payroll is not among the buckets objects may be quarantined out of" in recorded.detail
    assert (recorded.account, recorded.region) == (OWN_ACCOUNT, "us-east-1")
