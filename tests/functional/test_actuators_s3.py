"""S3ObjectQuarantine against moto's S3: where the object is after quarantine and after rollback, and that
the object moved is the one the finding scanned (its version, its ETag), never another written at the key
since."""

from __future__ import annotations

import hashlib
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
# QuarantineSourceBuckets: the uploads buckets.
SOURCES = "uploads*"
KEY = "incoming/invoice (1).exe"
BODY = b"MZ\x90\x00 pretend malware"
CLEAN = b"%PDF-1.7 the quarterly report, clean"


def md5(body: bytes) -> str:
    """The ETag S3 gives an object uploaded in one part, unencrypted: its MD5 (what a finding names)."""
    return hashlib.md5(body).hexdigest()


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


@pytest.fixture
def versioned(s3: Any) -> Any:
    """The same S3, the uploads bucket keeping versions (the object there is its version 'null')."""
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    return s3


def quarantine(s3: Any) -> S3ObjectQuarantine:
    return S3ObjectQuarantine(s3, QUARANTINE, PROTECTED_TAG, SOURCES)


def planned(
    key: str = KEY, *, bucket: str = BUCKET, etag: str | None = None, version_id: str | None = None
) -> Action:
    """The quarantine as the playbook plans it from a finding naming this ETag (BODY's by default) and
    version (none by default)."""
    identity = {"etag": md5(BODY) if etag is None else etag}
    if version_id is not None:
        identity["version_id"] = version_id
    return Action(
        type=ActionType.QUARANTINE_OBJECT,
        target=f"s3://{bucket}/{key}",
        parameters={"bucket": bucket, "key": key, "case_id": CASE_ID, **identity},
    )


def keys(s3: Any, bucket: str) -> list[str]:
    return [item["Key"] for item in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


def versions(s3: Any, bucket: str = BUCKET, key: str = KEY) -> list[tuple[str, bool]]:
    """Each version of the key, newest first, and whether it is the current one (delete markers left out)."""
    listed = s3.list_object_versions(Bucket=bucket, Prefix=key).get("Versions", [])
    return [(str(item["VersionId"]), bool(item["IsLatest"])) for item in listed if item["Key"] == key]


def body(s3: Any, bucket: str, key: str, version_id: str | None = None) -> bytes:
    versioned = {"VersionId": version_id} if version_id else {}
    found: bytes = s3.get_object(Bucket=bucket, Key=key, **versioned)["Body"].read()
    return found


def tags(s3: Any, bucket: str, key: str) -> dict[str, str]:
    return {tag["Key"]: tag["Value"] for tag in s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]}


QUARANTINE_KEY = f"{CASE_ID}/{BUCKET}/{KEY}"


def test_the_object_moves_to_quarantine_and_rollback_brings_it_back(s3: Any) -> None:
    # Given a tagged object in the uploads bucket, the one the finding scanned (its ETag)

    # When it is quarantined for real
    done = quarantine(s3).run(planned(), dry_run=False)

    # Then it is gone from uploads and sits in quarantine, same bytes, tagged with the case and origin
    assert keys(s3, BUCKET) == []
    assert keys(s3, QUARANTINE) == [QUARANTINE_KEY]
    assert body(s3, QUARANTINE, QUARANTINE_KEY) == BODY
    assert tags(s3, QUARANTINE, QUARANTINE_KEY) == {
        "vtriage:case": CASE_ID,
        "vtriage:original-bucket": BUCKET,
        "vtriage:original-key": "incoming/invoice _1_.exe",
    }
    assert done.status is ActionStatus.DONE
    assert done.detail == f"quarantined: moved s3://{BUCKET}/{KEY} to s3://{QUARANTINE}/{QUARANTINE_KEY}"
    assert done.before is not None
    assert done.before["tags"] == {"owner": "billing", "stage": "raw"}
    assert done.before["size"] == len(BODY)

    # And when it is rolled back, it is back with its own tags, and the quarantined copy is kept, whole:
    # it may be the only evidence left
    undone = quarantine(s3).rollback(done)
    assert body(s3, BUCKET, KEY) == BODY
    assert tags(s3, BUCKET, KEY) == {"owner": "billing", "stage": "raw"}
    assert keys(s3, QUARANTINE) == [QUARANTINE_KEY]
    assert body(s3, QUARANTINE, QUARANTINE_KEY) == BODY
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
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=BODY)

    # When the quarantine is rolled back
    undone = quarantine(s3).rollback(done)

    # Then the object put back by hand is left as it is, and the quarantined copy is still there
    assert body(s3, BUCKET, KEY) == BODY
    assert body(s3, QUARANTINE, QUARANTINE_KEY) == BODY
    assert undone.status is ActionStatus.ROLLED_BACK
    assert undone.detail.startswith("already as before")
    assert "kept the quarantined copy" in undone.detail


def test_rollback_never_overwrites_an_object_written_at_the_key_since(s3: Any) -> None:
    # Given an object quarantined, then another object uploaded at its key
    done = quarantine(s3).run(planned(), dry_run=False)
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=CLEAN)

    # When the quarantine is rolled back
    undone = quarantine(s3).rollback(done)

    # Then the new object is left as it is, the quarantined copy kept, and a person is told why
    assert body(s3, BUCKET, KEY) == CLEAN
    assert body(s3, QUARANTINE, QUARANTINE_KEY) == BODY
    assert undone.status is ActionStatus.FAILED
    assert undone.detail.startswith(
        f"rollback failed: s3://{BUCKET}/{KEY} holds an object written since the quarantine (another object, "
        f"ETag '{md5(CLEAN)}'), which a rollback never overwrites"
    )


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


def test_the_version_scanned_is_quarantined_and_a_clean_upload_since_is_left_as_it_is(versioned: Any) -> None:
    # Given a versioned bucket: the malicious version V1 GuardDuty scanned (the finding names its version
    # id and ETag), then a clean V2 uploaded at the same key before the action runs
    s3 = versioned
    v1 = s3.put_object(Bucket=BUCKET, Key=KEY, Body=BODY)["VersionId"]
    v2 = s3.put_object(Bucket=BUCKET, Key=KEY, Body=CLEAN)["VersionId"]
    action = planned(version_id=v1)

    # When it is quarantined in dry run, Then nothing changes
    dry = quarantine(s3).run(action, dry_run=True)
    assert dry.status is ActionStatus.DRY_RUN
    assert dry.detail.startswith(
        f"dry run, nothing changed: would copy version '{v1}' of s3://{BUCKET}/{KEY}"
    )
    assert versions(s3)[:2] == [(v2, True), (v1, False)]
    assert keys(s3, QUARANTINE) == []

    # When it is quarantined for real
    done = quarantine(s3).run(action, dry_run=False)

    # Then V1's bytes are in quarantine, V1 is gone from the bucket, and V2 is untouched, still current
    assert done.status is ActionStatus.DONE, done.detail
    assert body(s3, QUARANTINE, QUARANTINE_KEY) == BODY
    assert v1 not in dict(versions(s3))
    assert versions(s3)[0] == (v2, True)
    assert body(s3, BUCKET, KEY) == CLEAN
    assert done.before is not None
    assert (done.before["version_id"], done.before["current"]) == (v1, False)
    assert done.detail == (
        f"quarantined: moved version '{v1}' of s3://{BUCKET}/{KEY} to s3://{QUARANTINE}/{QUARANTINE_KEY}; it "
        f"was an older version: the current object of s3://{BUCKET}/{KEY} (version '{v2}', ETag "
        f"'{md5(CLEAN)}') is left"
    )

    # And a rollback never puts V1's bytes over V2: it says so, and keeps the quarantined copy
    undone = quarantine(s3).rollback(done)
    assert undone.status is ActionStatus.ROLLED_BACK
    assert undone.detail.startswith("nothing copied back: the version quarantined")
    assert versions(s3)[0] == (v2, True)
    assert body(s3, BUCKET, KEY) == CLEAN
    assert body(s3, QUARANTINE, QUARANTINE_KEY) == BODY


def test_the_current_version_scanned_is_quarantined_and_rollback_serves_it_again(versioned: Any) -> None:
    # Given a versioned bucket whose current version V1, the one scanned, follows a clean V0
    s3 = versioned
    v0 = s3.put_object(Bucket=BUCKET, Key=KEY, Body=CLEAN)["VersionId"]
    v1 = s3.put_object(Bucket=BUCKET, Key=KEY, Body=BODY, Tagging="owner=billing")["VersionId"]

    # When V1 is quarantined
    done = quarantine(s3).run(planned(version_id=v1), dry_run=False)

    # Then V1 is gone for good (no delete marker hides it: it is deleted), the key serves V0 again, and
    # the detail says so
    assert done.status is ActionStatus.DONE, done.detail
    assert v1 not in dict(versions(s3))
    assert versions(s3)[0] == (v0, True)
    assert body(s3, QUARANTINE, QUARANTINE_KEY) == BODY
    assert done.detail.endswith(f"; s3://{BUCKET}/{KEY} now serves version '{v0}', the one before it")

    # And a rollback serves V1's bytes at the key again, with its tags, over V0, keeping the copy
    undone = quarantine(s3).rollback(done)
    assert undone.status is ActionStatus.ROLLED_BACK, undone.detail
    assert body(s3, BUCKET, KEY) == BODY
    assert tags(s3, BUCKET, KEY) == {"owner": "billing"}
    assert body(s3, QUARANTINE, QUARANTINE_KEY) == BODY
    assert quarantine(s3).rollback(done).detail.startswith("already as before")


def test_an_object_replaced_since_the_scan_is_skipped_and_left_as_it_is(s3: Any) -> None:
    # Given a bucket that keeps no versions, whose object was replaced by a clean one since GuardDuty
    # scanned the malicious one (the finding names only the scanned ETag)
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=CLEAN)
    action = planned(etag=md5(BODY))

    # When it is quarantined, in dry run and for real
    outcomes = [quarantine(s3).run(action, dry_run=dry_run) for dry_run in (True, False)]

    # Then both skip it, saying why, and nothing moved: the case goes to its ticket with the reason
    expected = (
        f"not quarantined: the object at s3://{BUCKET}/{KEY} is no longer the one scanned: ETag "
        f"'{md5(CLEAN)}', the finding's '{md5(BODY)}'; left as it is, for a person"
    )
    assert [(outcome.status, outcome.detail) for outcome in outcomes] == [
        (ActionStatus.SKIPPED, expected)
    ] * 2
    assert body(s3, BUCKET, KEY) == CLEAN
    assert keys(s3, QUARANTINE) == []


def test_a_version_no_longer_in_the_bucket_is_skipped_when_another_object_is_at_the_key(
    versioned: Any,
) -> None:
    # Given the version scanned deleted for good since, and a clean object uploaded at its key
    s3 = versioned
    scanned = s3.put_object(Bucket=BUCKET, Key=KEY, Body=BODY)["VersionId"]
    s3.delete_object(Bucket=BUCKET, Key=KEY, VersionId=scanned)
    now = s3.put_object(Bucket=BUCKET, Key=KEY, Body=CLEAN)["VersionId"]

    # When the scanned version is quarantined
    outcome = quarantine(s3).run(planned(version_id=scanned), dry_run=False)

    # Then it is skipped, naming what the key holds now, which is left as it is
    assert outcome.status is ActionStatus.SKIPPED
    assert outcome.detail == (
        f"not quarantined: the object at s3://{BUCKET}/{KEY} is no longer the one scanned: it has no version "
        f"'{scanned}' (the finding's); it holds version '{now}', ETag '{md5(CLEAN)}'; left as it is, for a "
        "person"
    )
    assert body(s3, BUCKET, KEY) == CLEAN
    assert keys(s3, QUARANTINE) == []


def test_a_version_the_finding_pairs_with_another_etag_is_skipped(versioned: Any) -> None:
    # Given the version a finding names, whose ETag is not the one the finding gives
    s3 = versioned
    version = s3.put_object(Bucket=BUCKET, Key=KEY, Body=CLEAN)["VersionId"]

    # When it is quarantined
    outcome = quarantine(s3).run(planned(version_id=version, etag=md5(BODY)), dry_run=False)

    # Then it is skipped, saying both ETags, and nothing moved
    assert outcome.status is ActionStatus.SKIPPED
    assert outcome.detail == (
        f"not quarantined: version '{version}' of s3://{BUCKET}/{KEY} is not the object scanned: ETag "
        f"'{md5(CLEAN)}', the finding's '{md5(BODY)}'; left as it is, for a person"
    )
    assert keys(s3, QUARANTINE) == []


class UploadsBeforeTheDelete:
    """An S3 client through which another upload replaces the object once the quarantine has copied it,
    just before it deletes it: what an uploader racing the action does."""

    def __init__(self, s3: Any) -> None:
        self._s3 = s3

    def __getattr__(self, name: str) -> Any:
        return getattr(self._s3, name)

    def delete_object(self, **request: Any) -> Any:
        self._s3.put_object(Bucket=BUCKET, Key=KEY, Body=CLEAN)
        return self._s3.delete_object(**request)


def test_an_object_replaced_while_it_is_quarantined_is_never_deleted(s3: Any) -> None:
    # Given the object scanned, replaced by a clean upload between the quarantine's copy and its delete
    racing = UploadsBeforeTheDelete(s3)

    # When it is quarantined
    outcome = S3ObjectQuarantine(racing, QUARANTINE, PROTECTED_TAG, SOURCES).run(planned(), dry_run=False)

    # Then the delete, conditional on the ETag read, deletes nothing: the new upload stays, the copy of the
    # object scanned is in quarantine, and the action is skipped for a person
    assert outcome.status is ActionStatus.SKIPPED
    assert outcome.detail == (
        f"not quarantined: the object at s3://{BUCKET}/{KEY} changed before it was deleted (no longer ETag "
        f"'{md5(BODY)}'): the object there now is left as it is; the copy of the one scanned is at "
        f"s3://{QUARANTINE}/{QUARANTINE_KEY}, for a person"
    )
    assert body(s3, BUCKET, KEY) == CLEAN
    assert body(s3, QUARANTINE, QUARANTINE_KEY) == BODY


def test_a_copy_refused_because_the_object_changed_deletes_nothing() -> None:
    # Given S3 answering the conditional copy 412: the object changed since it was read (botocore's
    # Stubber, no network; no delete is stubbed, so one would fail the test)
    client = boto3.client("s3", region_name=REGION, aws_access_key_id="t", aws_secret_access_key="t")
    stubber = Stubber(client)
    stubber.add_response("head_object", {"ETag": f'"{md5(BODY)}"', "ContentLength": len(BODY)})
    stubber.add_client_error("head_object", service_error_code="404", http_status_code=404)
    stubber.add_response("get_object_tagging", {"TagSet": []})
    stubber.add_response("get_bucket_tagging", {"TagSet": []})
    stubber.add_client_error("copy_object", service_error_code="PreconditionFailed", http_status_code=412)
    stubber.activate()

    # When the object is quarantined
    outcome = quarantine(client).run(planned(), dry_run=False)

    # Then nothing was moved, and the action is skipped for a person
    stubber.assert_no_pending_responses()
    assert outcome.status is ActionStatus.SKIPPED
    assert outcome.detail == (
        f"not quarantined: the object at s3://{BUCKET}/{KEY} changed while it was being copied (no longer "
        f"ETag '{md5(BODY)}'): nothing was moved, for a person"
    )


def test_a_protected_object_or_bucket_is_skipped(s3: Any) -> None:
    # Given an object carrying the protected tag, and a protected bucket holding another
    s3.put_object(Bucket=BUCKET, Key="evidence.bin", Body=b"x", Tagging=f"{PROTECTED_TAG}=legal-hold")
    s3.create_bucket(Bucket="uploads-backups")
    s3.put_bucket_tagging(Bucket="uploads-backups", Tagging={"TagSet": [{"Key": PROTECTED_TAG, "Value": ""}]})
    s3.put_object(Bucket="uploads-backups", Key="db.dump", Body=b"y")

    # When both are quarantined
    object_protected = quarantine(s3).run(planned("evidence.bin", etag=md5(b"x")), dry_run=False)
    bucket_protected = quarantine(s3).run(
        planned("db.dump", bucket="uploads-backups", etag=md5(b"y")), dry_run=False
    )

    # Then both are skipped with the reason, and nothing moved
    assert object_protected.status is ActionStatus.SKIPPED
    assert f"the object carries the protected tag {PROTECTED_TAG}='legal-hold'" in object_protected.detail
    assert bucket_protected.status is ActionStatus.SKIPPED
    assert "the bucket carries the protected tag" in bucket_protected.detail
    assert keys(s3, QUARANTINE) == []
    assert "evidence.bin" in keys(s3, BUCKET)


def test_a_protected_version_is_skipped(versioned: Any) -> None:
    # Given the version scanned carrying the protected tag, a newer one not
    s3 = versioned
    version = s3.put_object(Bucket=BUCKET, Key=KEY, Body=BODY, Tagging=f"{PROTECTED_TAG}=true")["VersionId"]
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=CLEAN)

    # When it is quarantined, Then its own tags are read: it is skipped, and nothing moved
    outcome = quarantine(s3).run(planned(version_id=version), dry_run=False)
    assert outcome.status is ActionStatus.SKIPPED
    assert f"the object carries the protected tag {PROTECTED_TAG}='true'" in outcome.detail
    assert version in dict(versions(s3))
    assert keys(s3, QUARANTINE) == []


def test_a_missing_object_bucket_or_parameter_fails_with_the_reason(s3: Any) -> None:
    # When a missing object, an object in a missing bucket, and an action without parameters are quarantined
    no_object = quarantine(s3).run(planned("gone.exe"), dry_run=False)
    no_bucket = S3ObjectQuarantine(s3, "no-such-quarantine", PROTECTED_TAG, SOURCES).run(
        planned(), dry_run=False
    )
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
