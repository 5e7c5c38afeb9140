"""Quarantining an S3 object: copied to a quarantine bucket with tags, then deleted where it was."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from botocore.exceptions import ClientError

from vtriage.adapters.aws_errors import error_code, transient_aws_errors
from vtriage.models import Action, ActionStatus

# CopyObject copies at most 5 GB in one request; larger objects need a multipart copy.
MAX_SINGLE_COPY_BYTES = 5 * 1024**3
_NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
# Characters AWS accepts in tag values across services; anything else is replaced in the tag only.
_TAG_UNSAFE = re.compile(r"[^\w .:/=+\-@]")


class S3ObjectQuarantine:
    """`ResponseActuator` for QUARANTINE_OBJECT: the object `parameters["bucket"]`/`parameters["key"]` is
    copied to `s3://<quarantine bucket>/<case id>/<bucket>/<key>`, tagged with the case and where it came
    from, then deleted from its bucket. Objects or buckets carrying the protected tag are left alone.

    In a versioned bucket the delete adds a delete marker: the original bytes stay as a noncurrent
    version, which the detail names. Rollback copies the object back, with its original tags, and keeps
    the quarantine copy: it may be the only evidence left, and deleting it is a person's decision.
    """

    def __init__(self, s3_client: Any, quarantine_bucket: str, protected_tag_key: str) -> None:
        """Take a boto3 S3 client, the quarantine bucket's name and the tag key that protects a resource."""
        self._s3 = s3_client
        self._quarantine = quarantine_bucket
        self._protected_tag_key = protected_tag_key

    def run(self, action: Action, dry_run: bool) -> Action:
        """Move the object to quarantine; `before` holds where it was (version, size, tags), `after` where
        it is now."""
        bucket, key = action.parameters.get("bucket"), action.parameters.get("key")
        if not bucket or not key:
            return action.with_outcome(
                ActionStatus.FAILED, "not quarantined: parameters bucket and key are needed"
            )
        quarantine_key = f"{action.parameters.get('case_id') or 'no-case'}/{bucket}/{key}"
        return self._guard(
            action,
            "quarantining",
            lambda: self._quarantine_object(action, bucket, key, quarantine_key, dry_run),
        )

    def rollback(self, action: Action) -> Action:
        """Copy the object back where it was, with its original tags; the quarantine copy is kept."""
        before = action.before or {}
        if "bucket" not in before or "quarantine_key" not in before:
            return action.model_copy(update={"detail": "nothing to undo: no object location was recorded"})
        return self._guard(action, "restoring", lambda: self._restore(action, before))

    def _quarantine_object(
        self, action: Action, bucket: str, key: str, quarantine_key: str, dry_run: bool
    ) -> Action:
        source = f"s3://{bucket}/{key}"
        destination = f"s3://{self._quarantine}/{quarantine_key}"
        original = self._head(bucket, key)
        copy = self._head(self._quarantine, quarantine_key)
        if original is None:
            if copy is None:
                return action.with_outcome(ActionStatus.FAILED, f"not quarantined: object {source} not found")
            state = {
                "bucket": bucket,
                "key": key,
                "quarantine_bucket": self._quarantine,
                "quarantine_key": quarantine_key,
            }
            return action.with_outcome(
                ActionStatus.DONE, f"already quarantined: {source} is at {destination}", state, state
            )
        protected = self._protected_reason(bucket, key)
        if protected:
            return action.with_outcome(ActionStatus.SKIPPED, f"not quarantined: {protected}")
        size = int(original.get("ContentLength", 0))
        versioned = self._versioned(bucket)
        before = {
            "bucket": bucket,
            "key": key,
            "version_id": original.get("VersionId"),
            "size": size,
            "etag": original.get("ETag"),
            "tags": self._object_tags(bucket, key),
            "versioned": versioned,
            "quarantine_bucket": self._quarantine,
            "quarantine_key": quarantine_key,
        }
        if size > MAX_SINGLE_COPY_BYTES:
            detail = (
                f"not quarantined: {source} is {size} bytes, more than one copy moves (5 GB): move it by hand"
            )
            return action.with_outcome(ActionStatus.FAILED, detail)
        version_note = (
            f"; versioning is on in {bucket}: the original stays as noncurrent version "
            f"{original.get('VersionId')} behind a delete marker, delete that version once the case is "
            "closed if it must go"
            if versioned
            else ""
        )
        if dry_run:
            detail = (
                f"dry run, nothing changed: would copy {source} ({size} bytes) to {destination}, tagged with "
                f"the case and its origin, then delete the original{version_note}"
            )
            return action.with_outcome(ActionStatus.DRY_RUN, detail, before)

        if copy is None or int(copy.get("ContentLength", -1)) != size:
            copy_source = {"Bucket": bucket, "Key": key}
            if original.get("VersionId"):
                copy_source["VersionId"] = str(original["VersionId"])
            tags = {
                "vtriage:case": action.parameters.get("case_id") or "no-case",
                "vtriage:original-bucket": bucket,
                "vtriage:original-key": _tag_value(key),
            }
            self._s3.copy_object(
                Bucket=self._quarantine,
                Key=quarantine_key,
                CopySource=copy_source,
                MetadataDirective="COPY",
                TaggingDirective="REPLACE",
                Tagging=urlencode(tags),
            )
        copy = self._head(self._quarantine, quarantine_key)
        # Never delete the original before the copy is there, whole.
        if copy is None or int(copy.get("ContentLength", -1)) != size:
            return action.with_outcome(
                ActionStatus.FAILED,
                f"not quarantined: the copy at {destination} did not take",
            )
        deleted = self._s3.delete_object(Bucket=bucket, Key=key)
        after = {
            "bucket": bucket,
            "key": key,
            "quarantine_bucket": self._quarantine,
            "quarantine_key": quarantine_key,
            "quarantine_version_id": copy.get("VersionId"),
            "delete_marker_version_id": deleted.get("VersionId") if deleted.get("DeleteMarker") else None,
        }
        detail = f"quarantined: moved {source} to {destination}{version_note}"
        return action.with_outcome(ActionStatus.DONE, detail, before, after)

    def _restore(self, action: Action, before: dict[str, Any]) -> Action:
        bucket, key = str(before["bucket"]), str(before["key"])
        quarantine_bucket, quarantine_key = str(before["quarantine_bucket"]), str(before["quarantine_key"])
        source = f"s3://{bucket}/{key}"
        destination = f"s3://{quarantine_bucket}/{quarantine_key}"
        original = self._head(bucket, key)
        copy = self._head(quarantine_bucket, quarantine_key)
        after = {"bucket": bucket, "key": key}
        if copy is None and original is None:
            return action.with_outcome(
                ActionStatus.FAILED, f"rollback failed: neither {source} nor {destination} exists"
            )
        if copy is None:
            return action.with_outcome(
                ActionStatus.ROLLED_BACK, f"already as before: {source} is in place", after=after
            )
        steps = []
        if original is None:
            tags = before.get("tags") or {}
            self._s3.copy_object(
                Bucket=bucket,
                Key=key,
                CopySource={"Bucket": quarantine_bucket, "Key": quarantine_key},
                MetadataDirective="COPY",
                TaggingDirective="REPLACE",
                Tagging=urlencode(tags),
            )
            steps.append(f"copied {destination} back to {source}")
        if self._head(bucket, key) is None:
            return action.with_outcome(
                ActionStatus.FAILED, f"rollback failed: the copy back to {source} did not take"
            )
        # Never deleted here: the quarantined copy is evidence, and may be the only copy left.
        steps.append(
            f"kept the quarantined copy at {destination} as evidence (delete it by hand once the case "
            "is closed)"
        )
        after = {**after, "quarantine_bucket": quarantine_bucket, "quarantine_key": quarantine_key}
        if len(steps) == 1:
            detail = f"already as before: {source} is in place; " + steps[0]
        else:
            detail = "rolled back: " + "; ".join(steps)
        return action.with_outcome(ActionStatus.ROLLED_BACK, detail, after=after)

    def _head(self, bucket: str, key: str) -> dict[str, Any] | None:
        try:
            return dict(self._s3.head_object(Bucket=bucket, Key=key))
        except ClientError as error:
            if error_code(error) in _NOT_FOUND_CODES:
                return None
            raise

    def _object_tags(self, bucket: str, key: str) -> dict[str, str]:
        tag_set = self._s3.get_object_tagging(Bucket=bucket, Key=key).get("TagSet", [])
        return {str(tag["Key"]): str(tag.get("Value", "")) for tag in tag_set}

    def _bucket_tags(self, bucket: str) -> dict[str, str]:
        try:
            tag_set = self._s3.get_bucket_tagging(Bucket=bucket).get("TagSet", [])
        except ClientError as error:
            if error_code(error) == "NoSuchTagSet":
                return {}
            raise
        return {str(tag["Key"]): str(tag.get("Value", "")) for tag in tag_set}

    def _protected_reason(self, bucket: str, key: str) -> str | None:
        for what, tags in (("object", self._object_tags(bucket, key)), ("bucket", self._bucket_tags(bucket))):
            if self._protected_tag_key in tags:
                tag = f"{self._protected_tag_key}={tags[self._protected_tag_key]!r}"
                return f"the {what} carries the protected tag {tag}"
        return None

    def _versioned(self, bucket: str) -> bool:
        # Suspended versioning still keeps the versions made while it was on.
        return self._s3.get_bucket_versioning(Bucket=bucket).get("Status") in {"Enabled", "Suspended"}

    def _guard(self, action: Action, doing: str, operation: Callable[[], Action]) -> Action:
        """Throttling (SlowDown) and 5xx become TransientError; a missing bucket, FAILED."""
        try:
            with transient_aws_errors(f"S3 is unavailable while {doing} {action.target}", busy={"SlowDown"}):
                return operation()
        except ClientError as error:
            if error_code(error) == "NoSuchBucket":
                return action.with_outcome(ActionStatus.FAILED, f"{doing} failed: {error}")
            raise


def _tag_value(value: str) -> str:
    """The value as a tag can hold it (the exact key is in the quarantine key and on the case)."""
    return _TAG_UNSAFE.sub("_", value)[:256]
