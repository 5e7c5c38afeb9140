"""The digest of a finding's content: what tells two deliveries under one finding id and version apart.

A detector's finding id and version (`updatedAt`, or its count) say which finding a delivery claims to
be; only its content says what it is. What is digested, per source (decision 11):

- AWS's detectors (GuardDuty, Security Hub) and OCSF: the finding itself, never the envelope it came in
  (an EventBridge event, get-findings output), so that the same finding read from either gives the same
  digest; keys are folded to lower case, so that GuardDuty's camelCase (events) and PascalCase (the API)
  spellings of one finding agree as well. These detectors change a finding's version whenever they change
  the finding.
- CrowdStrike Falcon and Google Workspace: what decides the alert's triage (`triage_content`), never the
  volatile metadata their documents carry beside it, which changes under one id and version: Falcon's
  `crawled_timestamp` (the Alerts API crawls an alert again without updating it), an Event Streams
  event's enrichment (`MitreAttack[]` added on a redelivery) and the host's own addresses
  (`LocalIPv6`), which only decide which IOCs are the host's own; Workspace's `etag` and
  `metadata.assignee`. A stream's offset was never part of it (the event is digested without its
  envelope).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from typing import Any

from vtriage.models import Alert

# JSON integers beyond this are not exact as floats: they are kept as written.
_EXACT_INTEGER = 2**53
# A vendor alert's users as kept (every one, or a digest of them all): digested as `user_identity`.
_USERS = {"users", "users_left_out", "users_digest"}


def content_digest(finding: Any) -> str:
    """The SHA-256 (hex) of the finding's canonical JSON: keys folded to lower case (kept as written
    where two keys of one object fold alike) and sorted, numbers with an integral value written as
    integers, no insignificant white space. Written without recursion: no nesting depth can make it
    fail."""
    digest = hashlib.sha256()
    pending: list[Any] = [finding]
    while pending:
        item = pending.pop()
        if isinstance(item, _Text):
            digest.update(item.encode())
        elif isinstance(item, dict):
            folds = Counter(str(key).casefold() for key in item)
            members = sorted(
                (
                    (str(key).casefold() if folds[str(key).casefold()] == 1 else str(key), value)
                    for key, value in item.items()
                ),
                key=lambda member: member[0],
            )
            pending.append(_Text("}"))
            for index, (key, value) in reversed(list(enumerate(members))):
                pending.append(value)
                pending.append(_Text(("," if index else "") + _scalar(key) + ":"))
            pending.append(_Text("{"))
        elif isinstance(item, list):
            pending.append(_Text("]"))
            for index, value in reversed(list(enumerate(item))):
                pending.append(value)
                if index:
                    pending.append(_Text(","))
            pending.append(_Text("["))
        else:
            digest.update(_scalar(item).encode())
    return digest.hexdigest()


def triage_content(alert: Alert, *, status: Any, prefix: str) -> dict[str, Any]:
    """What of a vendor's alert (read from its document at `prefix`) decides its triage: its type and
    title, severity, the vendor's status (`status`, as the document says it), its IOCs with the field each
    came from and why it is skipped, its host (resources) and the vendor's terms (product, customer, host,
    users, every one, console link), whether it is a sample and why it may not be acted on (each reason named
    relative to the alert, so that the alert alone or inside a list gives the same), and what it is about
    that no action acts on (a cloud detection's resource). Neither the times (the version stands for them),
    nor the notes, nor anything intake does not read."""
    content: dict[str, Any] = {
        "type": alert.type,
        "title": alert.title,
        "severity": alert.severity.score,
        "status": status if isinstance(status, str | int | float | bool) or status is None else None,
        "iocs": [[ioc.type.value, ioc.value, ioc.found_at, ioc.skipped_reason] for ioc in alert.iocs],
        "resources": [resource.model_dump(mode="json") for resource in alert.resources],
        "vendor": alert.vendor.model_dump(mode="json", exclude=_USERS) if alert.vendor is not None else None,
        "sample": alert.sample,
        "not_actionable": sorted(reason.removeprefix(prefix) for reason in alert.not_actionable),
    }
    if alert.vendor is not None and alert.vendor.users_beyond_user:
        # Only then: an alert whose users its `user` line names all keeps the digest (the case id) it had
        content["users"] = alert.vendor.user_identity
    if alert.subjects:  # only then: an alert naming none keeps the digest (the case id) it always had
        content["subjects"] = [subject.model_dump(mode="json") for subject in alert.subjects]
    return content


class _Text(str):
    """Canonical JSON text to hash as is (punctuation and keys), not a value to encode."""

    __slots__ = ()


def _scalar(value: Any) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < _EXACT_INTEGER:
        value = int(value)
    return json.dumps(value, ensure_ascii=True)
