"""Quarantining an S3 object: the object the finding scanned, copied to a quarantine bucket with tags, then
deleted where it was."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from botocore.exceptions import ClientError

from vtriage.adapters.aws_errors import error_code, transient_aws_errors
from vtriage.display import shown
from vtriage.models import Action, ActionStatus
from vtriage.protected_tag import protecting_tag

# CopyObject copies at most 5 GB in one request; larger objects need a multipart copy.
MAX_SINGLE_COPY_BYTES = 5 * 1024**3
_NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound", "NoSuchVersion"})
# What S3 answers a conditional copy or delete (CopySourceIfMatch, IfMatch) when the object changed since
# it was read: 412, or 409 when a write to the key raced the request.
_CHANGED_CODES = frozenset({"412", "PreconditionFailed", "409", "ConditionalRequestConflict"})
# S3's version id of an object written while its bucket kept no versions: a later upload replaces that
# version in place, so it tells no upload apart and only the ETag can.
_NO_VERSION = "null"
# Characters AWS accepts in tag values across services; anything else is replaced in the tag only.
_TAG_UNSAFE = re.compile(r"[^\w .:/=+\-@]")


@dataclass(frozen=True)
class _Scanned:
    """The object a finding scanned: its bucket and key, and the version id and ETag the finding names
    (None when it names none; a version id of 'null' names no version)."""

    bucket: str
    key: str
    version_id: str | None
    etag: str | None

    @classmethod
    def of(cls, bucket: str, key: str, parameters: Mapping[str, str]) -> _Scanned:
        version_id = parameters.get("version_id") or None
        return cls(
            bucket, key, None if version_id == _NO_VERSION else version_id, parameters.get("etag") or None
        )

    @property
    def location(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def named(self) -> str:
        """The object as a person reads it: its version when the finding names one."""
        return f"version {_quoted(self.version_id)} of {self.location}" if self.version_id else self.location


class S3ObjectQuarantine:
    """`ResponseActuator` for QUARANTINE_OBJECT: the object `parameters["bucket"]`/`parameters["key"]` that
    the finding scanned is copied to `s3://<quarantine bucket>/<case id>/<bucket>/<key>`, tagged with the
    case and where it came from, then deleted from its bucket.

    Only that object is moved, never whatever the key holds when the action runs (it may run hours after
    the scan, once approved): with the finding's version id (`parameters["version_id"]`) every call names
    that version, and its ETag must be the finding's (`parameters["etag"]`) when the finding gives one;
    without a version id, the object at the key must have the finding's ETag, and the copy and the delete
    are conditional on it. An object neither identifies, or another object at the key, is skipped with the
    reason. So is an object outside the source buckets (`source_buckets`, QuarantineSourceBuckets: the same
    name or pattern bounds the IAM grants), or one carrying the protected tag, or whose bucket does.

    Deleting a version removes it for good (no delete marker): the copy in quarantine holds its bytes, and
    the detail says what the key serves afterwards (the version before it, when the one moved was current).
    Rollback copies the object back, with its original tags, when the key holds nothing newer, and keeps the
    quarantine copy: it may be the only evidence left, and deleting it is a person's decision.
    """

    def __init__(
        self, s3_client: Any, quarantine_bucket: str, protected_tag_key: str, source_buckets: str
    ) -> None:
        """Take a boto3 S3 client, the quarantine bucket's name, the tag key that protects a resource, and
        the name or pattern (`*` any characters) of the buckets objects may be moved out of."""
        self._s3 = s3_client
        self._quarantine = quarantine_bucket
        self._protected_tag_key = protected_tag_key
        self._source_buckets = source_buckets

    def outcome_without_acting(self, action: Action) -> Action | None:
        """The action skipped, with the reason, when its bucket is not a source bucket (or is the quarantine
        bucket), or when the finding names neither the object's version nor its ETag; None otherwise
        (`ForeseeingActuator`: known without calling S3)."""
        bucket, key = action.parameters.get("bucket"), action.parameters.get("key")
        if not bucket or not key:
            return None
        scanned = _Scanned.of(bucket, key, action.parameters)
        if bucket == self._quarantine:
            reason = f"{scanned.location} is in the quarantine bucket itself"
        elif not bucket_matches(self._source_buckets, bucket):
            reason = (
                f"bucket {bucket} is not among the buckets objects may be quarantined out of "
                f"(QuarantineSourceBuckets: {self._source_buckets})"
            )
        elif scanned.version_id is None and scanned.etag is None:
            reason = (
                f"the finding names neither the version nor the ETag of the object it scanned, so nothing "
                f"tells that the object at {scanned.location} now is that one"
            )
        else:
            return None
        return action.with_outcome(
            ActionStatus.SKIPPED, f"not quarantined: {reason}; the object is left where it is, for a person"
        )

    def run(self, action: Action, dry_run: bool) -> Action:
        """Move the object the finding scanned to quarantine; `before` holds where it was (version, size,
        ETag, tags, whether it was the current object), `after` where it is now and what the key serves."""
        bucket, key = action.parameters.get("bucket"), action.parameters.get("key")
        if not bucket or not key:
            return action.with_outcome(
                ActionStatus.FAILED, "not quarantined: parameters bucket and key are needed"
            )
        foreseen = self.outcome_without_acting(action)
        if foreseen is not None:
            return foreseen
        scanned = _Scanned.of(bucket, key, action.parameters)
        quarantine_key = f"{action.parameters.get('case_id') or 'no-case'}/{bucket}/{key}"
        return self._guard(
            action,
            "quarantining",
            lambda: self._quarantine_object(action, scanned, quarantine_key, dry_run),
        )

    def rollback(self, action: Action) -> Action:
        """Copy the object back where it was, with its original tags, unless the key holds an object written
        since; the quarantine copy is kept."""
        before = action.before or {}
        if "bucket" not in before or "quarantine_key" not in before:
            return action.model_copy(update={"detail": "nothing to undo: no object location was recorded"})
        return self._guard(action, "restoring", lambda: self._restore(action, before))

    def _quarantine_object(
        self, action: Action, scanned: _Scanned, quarantine_key: str, dry_run: bool
    ) -> Action:
        bucket, key, source = scanned.bucket, scanned.key, scanned.location
        destination = f"s3://{self._quarantine}/{quarantine_key}"
        original = self._head(bucket, key, scanned.version_id)
        copy = self._head(self._quarantine, quarantine_key)
        if original is None:
            return self._not_there(action, scanned, quarantine_key, copy)
        if scanned.etag is not None and _etag(original.get("ETag")) != _etag(scanned.etag):
            what = (
                f"{scanned.named} is not the object scanned"
                if scanned.version_id
                else f"the object at {source} is no longer the one scanned"
            )
            detail = (
                f"not quarantined: {what}: ETag {_quoted(original.get('ETag'))}, the finding's "
                f"{_quoted(scanned.etag)}; left as it is, for a person"
            )
            return action.with_outcome(ActionStatus.SKIPPED, detail)
        # The version checked: every call below names it, so that an upload meanwhile is never the one moved.
        version_id = original.get("VersionId") or None
        object_tags = self._object_tags(bucket, key, version_id)
        protected = self._protected_reason(bucket, object_tags)
        if protected:
            return action.with_outcome(ActionStatus.SKIPPED, f"not quarantined: {protected}")
        size = int(original.get("ContentLength", 0))
        current = original if scanned.version_id is None else self._head(bucket, key)
        was_current = current is not None and current.get("VersionId") == original.get("VersionId")
        before = {
            "bucket": bucket,
            "key": key,
            "version_id": version_id,
            "size": size,
            "etag": original.get("ETag"),
            "tags": object_tags,
            "current": was_current,
            "quarantine_bucket": self._quarantine,
            "quarantine_key": quarantine_key,
        }
        if size > MAX_SINGLE_COPY_BYTES:
            detail = (
                f"not quarantined: {scanned.named} is {size} bytes, more than one copy moves (5 GB): move it "
                "by hand"
            )
            return action.with_outcome(ActionStatus.FAILED, detail)
        removed = (
            f"delete version {_quoted(version_id)} from {bucket} for good" if version_id else "delete it"
        )
        if dry_run:
            detail = (
                f"dry run, nothing changed: would copy {scanned.named} ({size} bytes) to {destination}, "
                f"tagged with the case and its origin, then {removed}"
            )
            return action.with_outcome(ActionStatus.DRY_RUN, detail, before)

        if copy is None or int(copy.get("ContentLength", -1)) != size:
            changed = self._copy_to_quarantine(action, scanned, original, quarantine_key)
            if changed is not None:
                return changed
        copy = self._head(self._quarantine, quarantine_key)
        # Never delete the original before the copy is there, whole.
        if copy is None or int(copy.get("ContentLength", -1)) != size:
            return action.with_outcome(
                ActionStatus.FAILED,
                f"not quarantined: the copy at {destination} did not take",
            )
        try:
            if version_id:
                self._s3.delete_object(Bucket=bucket, Key=key, VersionId=version_id)
            else:
                self._s3.delete_object(Bucket=bucket, Key=key, IfMatch=original["ETag"])
        except ClientError as error:
            if error_code(error) not in _CHANGED_CODES:
                raise
            detail = (
                f"not quarantined: the object at {source} changed before it was deleted (no longer ETag "
                f"{_quoted(original.get('ETag'))}): the object there now is left as it is; the copy of the "
                f"one scanned is at {destination}, for a person"
            )
            return action.with_outcome(ActionStatus.SKIPPED, detail, before)
        left = self._head(bucket, key)
        after = {
            "bucket": bucket,
            "key": key,
            "quarantine_bucket": self._quarantine,
            "quarantine_key": quarantine_key,
            "quarantine_version_id": copy.get("VersionId"),
            "deleted_version_id": version_id,
            # What the key served once the object was moved: a rollback never copies over anything newer.
            "current": None if left is None else _identity(left),
        }
        detail = f"quarantined: moved {scanned.named} to {destination}"
        if left is not None and not was_current:
            detail += (
                f"; it was an older version: the current object of {source} ({_described(left)}) is left"
            )
        elif left is not None and left.get("VersionId"):
            detail += f"; {source} now serves version {_quoted(left.get('VersionId'))}, the one before it"
        elif left is not None:
            detail += f"; {source} holds another object written since ({_described(left)}), left as it is"
        return action.with_outcome(ActionStatus.DONE, detail, before, after)

    def _not_there(
        self, action: Action, scanned: _Scanned, quarantine_key: str, copy: dict[str, Any] | None
    ) -> Action:
        """The outcome when the object scanned is not in its bucket: already quarantined when its copy is
        there; skipped when the key holds another object; failed when the key holds nothing."""
        if copy is not None:
            state = {
                "bucket": scanned.bucket,
                "key": scanned.key,
                "quarantine_bucket": self._quarantine,
                "quarantine_key": quarantine_key,
            }
            detail = f"already quarantined: {scanned.location} is at s3://{self._quarantine}/{quarantine_key}"
            return action.with_outcome(ActionStatus.DONE, detail, state, state)
        current = self._head(scanned.bucket, scanned.key) if scanned.version_id else None
        if current is not None:
            detail = (
                f"not quarantined: the object at {scanned.location} is no longer the one scanned: it has no "
                f"version {_quoted(scanned.version_id)} (the finding's); it holds {_described(current)}; "
                "left as it is, for a person"
            )
            return action.with_outcome(ActionStatus.SKIPPED, detail)
        return action.with_outcome(ActionStatus.FAILED, f"not quarantined: object {scanned.named} not found")

    def _copy_to_quarantine(
        self, action: Action, scanned: _Scanned, original: Mapping[str, Any], quarantine_key: str
    ) -> Action | None:
        """Copy the version checked, on condition its ETag is still the one read; the action skipped with
        the reason when the object changed in between, None once copied."""
        copy_source = {"Bucket": scanned.bucket, "Key": scanned.key}
        if original.get("VersionId"):
            copy_source["VersionId"] = str(original["VersionId"])
        tags = {
            "vtriage:case": action.parameters.get("case_id") or "no-case",
            "vtriage:original-bucket": scanned.bucket,
            "vtriage:original-key": _tag_value(scanned.key),
        }
        try:
            self._s3.copy_object(
                Bucket=self._quarantine,
                Key=quarantine_key,
                CopySource=copy_source,
                CopySourceIfMatch=original["ETag"],
                MetadataDirective="COPY",
                TaggingDirective="REPLACE",
                Tagging=urlencode(tags),
            )
        except ClientError as error:
            if error_code(error) not in _CHANGED_CODES:
                raise
            detail = (
                f"not quarantined: the object at {scanned.location} changed while it was being copied (no "
                f"longer ETag {_quoted(original.get('ETag'))}): nothing was moved, for a person"
            )
            return action.with_outcome(ActionStatus.SKIPPED, detail)
        return None

    def _restore(self, action: Action, before: dict[str, Any]) -> Action:
        bucket, key = str(before["bucket"]), str(before["key"])
        quarantine_bucket, quarantine_key = str(before["quarantine_bucket"]), str(before["quarantine_key"])
        source = f"s3://{bucket}/{key}"
        destination = f"s3://{quarantine_bucket}/{quarantine_key}"
        at_key = self._head(bucket, key)
        copy = self._head(quarantine_bucket, quarantine_key)
        after = {"bucket": bucket, "key": key}
        if copy is None and at_key is None:
            return action.with_outcome(
                ActionStatus.FAILED, f"rollback failed: neither {source} nor {destination} exists"
            )
        if copy is None:
            return action.with_outcome(
                ActionStatus.ROLLED_BACK, f"already as before: {source} is in place", after=after
            )
        # Never deleted here: the quarantined copy is evidence, and may be the only copy left.
        kept = (
            f"kept the quarantined copy at {destination} as evidence (delete it by hand once the case is "
            "closed)"
        )
        after = {**after, "quarantine_bucket": quarantine_bucket, "quarantine_key": quarantine_key}
        if at_key is not None and _etag(at_key.get("ETag")) == _etag(before.get("etag")):
            etag = _quoted(at_key.get("ETag"))
            detail = f"already as before: {source} holds the object quarantined (ETag {etag}); {kept}"
            return action.with_outcome(ActionStatus.ROLLED_BACK, detail, after=after)
        if before.get("current") is False:
            detail = (
                f"nothing copied back: the version quarantined ({_quoted(before.get('version_id'))}) was an "
                f"older version of {source}, not what the key served, and the quarantine left the key as it "
                f"was (S3 puts no version back behind a newer one); {kept}: copy it back by hand if that "
                "version must return"
            )
            return action.with_outcome(ActionStatus.ROLLED_BACK, detail, after=after)
        left = (action.after or {}).get("current")
        if at_key is not None and not _same_object(at_key, left):
            detail = (
                f"rollback failed: {source} holds an object written since the quarantine "
                f"({_described(at_key)}), which a rollback never overwrites; {kept}: copy it back by hand if "
                "it must return"
            )
            return action.with_outcome(ActionStatus.FAILED, detail, after=after)
        self._s3.copy_object(
            Bucket=bucket,
            Key=key,
            CopySource={"Bucket": quarantine_bucket, "Key": quarantine_key},
            MetadataDirective="COPY",
            TaggingDirective="REPLACE",
            Tagging=urlencode(before.get("tags") or {}),
        )
        if self._head(bucket, key) is None:
            return action.with_outcome(
                ActionStatus.FAILED, f"rollback failed: the copy back to {source} did not take"
            )
        over = (
            f" (over version {_quoted(at_key.get('VersionId'))}, which the key served once the quarantined "
            "one was deleted)"
            if at_key is not None
            else ""
        )
        detail = f"rolled back: copied {destination} back to {source}{over}; {kept}"
        return action.with_outcome(ActionStatus.ROLLED_BACK, detail, after=after)

    def _head(self, bucket: str, key: str, version_id: str | None = None) -> dict[str, Any] | None:
        try:
            if version_id:
                return dict(self._s3.head_object(Bucket=bucket, Key=key, VersionId=version_id))
            return dict(self._s3.head_object(Bucket=bucket, Key=key))
        except ClientError as error:
            code = error_code(error)
            # S3 answers a version id it never issued (a bucket that keeps no versions) 400, with no body.
            if code in _NOT_FOUND_CODES or (version_id and code == "400"):
                return None
            raise

    def _object_tags(self, bucket: str, key: str, version_id: str | None = None) -> dict[str, str]:
        versioned = {"VersionId": version_id} if version_id else {}
        tag_set = self._s3.get_object_tagging(Bucket=bucket, Key=key, **versioned).get("TagSet", [])
        return {str(tag["Key"]): str(tag.get("Value", "")) for tag in tag_set}

    def _bucket_tags(self, bucket: str) -> dict[str, str]:
        try:
            tag_set = self._s3.get_bucket_tagging(Bucket=bucket).get("TagSet", [])
        except ClientError as error:
            if error_code(error) == "NoSuchTagSet":
                return {}
            raise
        return {str(tag["Key"]): str(tag.get("Value", "")) for tag in tag_set}

    def _protected_reason(self, bucket: str, object_tags: dict[str, str]) -> str | None:
        for what, tags in (("object", object_tags), ("bucket", self._bucket_tags(bucket))):
            found = protecting_tag(tags.items(), self._protected_tag_key)
            if found is not None:
                return f"the {what} carries the protected tag {found}"
        return None

    def _guard(self, action: Action, doing: str, operation: Callable[[], Action]) -> Action:
        """Throttling (SlowDown) and 5xx become TransientError; a missing bucket, FAILED."""
        try:
            with transient_aws_errors(f"S3 is unavailable while {doing} {action.target}", busy={"SlowDown"}):
                return operation()
        except ClientError as error:
            if error_code(error) == "NoSuchBucket":
                return action.with_outcome(ActionStatus.FAILED, f"{doing} failed: {error}")
            raise


def bucket_matches(pattern: str, bucket: str) -> bool:
    """Whether the bucket is one the name or pattern names, `*` standing for any characters, as in the IAM
    resource ARN (`arn:aws:s3:::<pattern>/*`) it also bounds."""
    return re.fullmatch(".*".join(re.escape(part) for part in pattern.split("*")), bucket) is not None


def _etag(value: object) -> str:
    """An ETag as compared: S3 writes it in quotes, detectors often without."""
    return str(value or "").strip().strip('"').lower()


def _quoted(value: object) -> str:
    """A version id or ETag in a detail: quoted and escaped, cut when long (a finding's are a sender's),
    an ETag without the quotes S3 writes around it; 'none' when there is none."""
    return "none" if value is None else shown(str(value).strip().strip('"'))


def _described(head: Mapping[str, Any]) -> str:
    """The object a HEAD found, as a person reads it: its version when its bucket keeps versions, its ETag."""
    etag = f"ETag {_quoted(head.get('ETag'))}"
    return (
        f"version {_quoted(head['VersionId'])}, {etag}"
        if head.get("VersionId")
        else f"another object, {etag}"
    )


def _identity(head: Mapping[str, Any]) -> dict[str, Any]:
    return {"version_id": head.get("VersionId"), "etag": head.get("ETag")}


def _same_object(head: Mapping[str, Any], recorded: Mapping[str, Any] | None) -> bool:
    """Whether the object a HEAD found is the one recorded (by version id when both have one)."""
    if not recorded:
        return False
    if head.get("VersionId") and recorded.get("version_id"):
        return bool(head.get("VersionId") == recorded.get("version_id"))
    return _etag(head.get("ETag")) == _etag(recorded.get("etag"))


def _tag_value(value: str) -> str:
    """The value as a tag can hold it (the exact key is in the quarantine key and on the case)."""
    return _TAG_UNSAFE.sub("_", value)[:256]
