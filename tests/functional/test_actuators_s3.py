"""S3ObjectQuarantine against moto's S3: where the object is after quarantine and after rollback."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from tests.functional.conftest import use_dummy_aws_credentials
from vtriage.adapters.s3 import S3ObjectQuarantine
from vtriage.errors import TransientError
from vtriage.models import Action, ActionStatus, ActionType

pytestmark = pytest.mark.functional

REGION = "us-east-1"
PROTECTED_TAG = "vtriage:protected"
CASE_ID = "guardduty-0123456789abcdef0123456789abcdef"
QUARANTINE = "vtriage-quarantine-123456789012"
BUCKET = "uploads"
KEY = "incoming/invoice (1).exe"
BODY = b"MZ\x90\x00 pretend malware"


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """An S3 client on moto with an uploads bucket holding one tagged object, and the quarantine bucket."""
    use_dummy_aws_credentials(monkeypatch, REGION)
    with mock_aws():
        client = boto3.client("s3", region_name=REGION)
        client.create_bucket(Bucket=BUCKET)
        client.create_bucket(Bucket=QUARANTINE)
        client.put_object(Bucket=BUCKET, Key=KEY, Body=BODY, Tagging="owner=billing&stage=raw")
        yield client


def quarantine(s3: Any) -> S3ObjectQuarantine:
    return S3ObjectQuarantine(s3, QUARANTINE, PROTECTED_TAG)


def planned(key: str = KEY) -> Action:
    return Action(
        type=ActionType.QUARANTINE_OBJECT,
        target=f"s3://{BUCKET}/{key}",
        parameters={"bucket": BUCKET, "key": key, "case_id": CASE_ID},
    )


def keys(s3: Any, bucket: str) -> list[str]:
    return [item["Key"] for item in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


def tags(s3: Any, bucket: str, key: str) -> dict[str, str]:
    return {tag["Key"]: tag["Value"] for tag in s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]}


QUARANTINE_KEY = f"{CASE_ID}/{BUCKET}/{KEY}"


def test_the_object_moves_to_quarantine_and_rollback_brings_it_back(s3: Any) -> None:
    # Given a tagged object in the uploads bucket

    # When it is quarantined for real
    done = quarantine(s3).run(planned(), dry_run=False)

    # Then it is gone from uploads and sits in quarantine, same bytes, tagged with the case and origin
    assert keys(s3, BUCKET) == []
    assert keys(s3, QUARANTINE) == [QUARANTINE_KEY]
    assert s3.get_object(Bucket=QUARANTINE, Key=QUARANTINE_KEY)["Body"].read() == BODY
    assert tags(s3, QUARANTINE, QUARANTINE_KEY) == {
        "vtriage:case": CASE_ID,
        "vtriage:original-bucket": BUCKET,
        "vtriage:original-key": "incoming/invoice _1_.exe",
    }
    assert done.status is ActionStatus.DONE
    assert done.before is not None
    assert done.before["tags"] == {"owner": "billing", "stage": "raw"}
    assert done.before["size"] == len(BODY)

    # And when it is rolled back, it is back with its own tags, and the quarantined copy is kept, whole:
    # it may be the only evidence left
    undone = quarantine(s3).rollback(done)
    assert s3.get_object(Bucket=BUCKET, Key=KEY)["Body"].read() == BODY
    assert tags(s3, BUCKET, KEY) == {"owner": "billing", "stage": "raw"}
    assert keys(s3, QUARANTINE) == [QUARANTINE_KEY]
    assert s3.get_object(Bucket=QUARANTINE, Key=QUARANTINE_KEY)["Body"].read() == BODY
    assert undone.status is ActionStatus.ROLLED_BACK
    assert f"kept the quarantined copy at s3://{QUARANTINE}/{QUARANTINE_KEY}" in undone.detail

    # And rolling back again changes nothing and says so
    again = quarantine(s3).rollback(done)
    assert again.detail.startswith("already as before")
    assert keys(s3, BUCKET) == [KEY]
    assert keys(s3, QUARANTINE) == [QUARANTINE_KEY]


def test_rollback_never_deletes_the_quarantined_copy_even_when_the_original_is_back_already(s3: Any) -> None:
    # Given an object quarantined, then put back in its bucket by hand
    done = quarantine(s3).run(planned(), dry_run=False)
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"restored by hand")

    # When the quarantine is rolled back
    undone = quarantine(s3).rollback(done)

    # Then the object put back by hand is left as it is, and the quarantined copy is still there
    assert s3.get_object(Bucket=BUCKET, Key=KEY)["Body"].read() == b"restored by hand"
    assert s3.get_object(Bucket=QUARANTINE, Key=QUARANTINE_KEY)["Body"].read() == BODY
    assert undone.status is ActionStatus.ROLLED_BACK
    assert undone.detail.startswith("already as before")
    assert "kept the quarantined copy" in undone.detail


def test_dry_run_changes_nothing_and_says_what_would_change(s3: Any) -> None:
    # Given the object, When it is quarantined in dry run
    action = quarantine(s3).run(planned(), dry_run=True)

    # Then nothing moved, and the detail names both places and the size
    assert keys(s3, BUCKET) == [KEY]
    assert keys(s3, QUARANTINE) == []
    assert action.status is ActionStatus.DRY_RUN
    assert f"would copy s3://{BUCKET}/{KEY} ({len(BODY)} bytes) to s3://{QUARANTINE}/{QUARANTINE_KEY}" in (
        action.detail
    )


def test_quarantining_twice_changes_nothing_more(s3: Any) -> None:
    # Given the object quarantined once
    quarantine(s3).run(planned(), dry_run=False)

    # When it is quarantined again
    again = quarantine(s3).run(planned(), dry_run=False)

    # Then it is still there once, and the action says it was already done
    assert keys(s3, QUARANTINE) == [QUARANTINE_KEY]
    assert again.status is ActionStatus.DONE
    assert again.detail.startswith("already quarantined")


def test_a_versioned_bucket_keeps_a_noncurrent_version_and_says_so(s3: Any) -> None:
    # Given versioning on in the uploads bucket, and a new version of the object
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    version_id = s3.put_object(Bucket=BUCKET, Key=KEY, Body=BODY)["VersionId"]

    # When it is quarantined
    done = quarantine(s3).run(planned(), dry_run=False)

    # Then the current object is gone, the detail names the version left behind the delete marker
    assert keys(s3, BUCKET) == []
    assert f"noncurrent version {version_id} behind a delete marker" in done.detail
    assert done.after is not None
    assert done.after["delete_marker_version_id"] is not None


def test_a_protected_object_or_bucket_is_skipped(s3: Any) -> None:
    # Given an object carrying the protected tag, and a protected bucket holding another
    s3.put_object(Bucket=BUCKET, Key="evidence.bin", Body=b"x", Tagging=f"{PROTECTED_TAG}=legal-hold")
    s3.create_bucket(Bucket="backups")
    s3.put_bucket_tagging(Bucket="backups", Tagging={"TagSet": [{"Key": PROTECTED_TAG, "Value": ""}]})
    s3.put_object(Bucket="backups", Key="db.dump", Body=b"y")
    in_backups = Action(
        type=ActionType.QUARANTINE_OBJECT,
        target="s3://backups/db.dump",
        parameters={"bucket": "backups", "key": "db.dump", "case_id": CASE_ID},
    )

    # When both are quarantined
    object_protected = quarantine(s3).run(planned("evidence.bin"), dry_run=False)
    bucket_protected = quarantine(s3).run(in_backups, dry_run=False)

    # Then both are skipped with the reason, and nothing moved
    assert object_protected.status is ActionStatus.SKIPPED
    assert f"the object carries the protected tag {PROTECTED_TAG}='legal-hold'" in object_protected.detail
    assert bucket_protected.status is ActionStatus.SKIPPED
    assert "the bucket carries the protected tag" in bucket_protected.detail
    assert keys(s3, QUARANTINE) == []
    assert "evidence.bin" in keys(s3, BUCKET)


def test_a_missing_object_bucket_or_parameter_fails_with_the_reason(s3: Any) -> None:
    # When a missing object, an object in a missing bucket, and an action without parameters are quarantined
    no_object = quarantine(s3).run(planned("gone.exe"), dry_run=False)
    no_bucket = S3ObjectQuarantine(s3, "no-such-quarantine", PROTECTED_TAG).run(planned(), dry_run=False)
    no_parameters = quarantine(s3).run(
        Action(type=ActionType.QUARANTINE_OBJECT, target=f"s3://{BUCKET}/{KEY}"), dry_run=False
    )

    # Then each fails with a reason, and the object stays where it is
    assert no_object.status is ActionStatus.FAILED
    assert f"object s3://{BUCKET}/gone.exe not found" in no_object.detail
    assert no_bucket.status is ActionStatus.FAILED
    assert "NoSuchBucket" in no_bucket.detail
    assert no_parameters.status is ActionStatus.FAILED
    assert "parameters bucket and key are needed" in no_parameters.detail
    assert keys(s3, BUCKET) == [KEY]


def test_slow_down_is_transient() -> None:
    # Given S3 asking to slow down (botocore's Stubber, no network)
    client = boto3.client("s3", region_name=REGION, aws_access_key_id="t", aws_secret_access_key="t")
    stubber = Stubber(client)
    stubber.add_client_error("head_object", service_error_code="SlowDown", http_status_code=503)
    stubber.activate()

    # When an object is quarantined, Then the state machine's Retry gets a TransientError
    with pytest.raises(TransientError, match="SlowDown"):
        quarantine(client).run(planned(), dry_run=False)
