"""Who sent a pushed alert: what the intake function stamps on the message it queues, and how the enrich
function reads it back.

The stamp travels as SQS message attributes on the pushed-alert queue, which only the intake function
(and the enrich function, re-queueing a deferred record with its attributes) may write to: the queue's
policy denies every other sender. The enrich function therefore believes these attributes on that
queue's records and on no other queue's; the channel itself is told by the record's `eventSourceARN`,
which AWS sets.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vtriage.display import escaped
from vtriage.models import Channel, Provenance

__all__ = ["STAMP_ATTRIBUTES", "Channel", "caller_stamp", "provenance_of"]

SENDER_ATTRIBUTE = "vtriage_sender"
SENDER_ID_ATTRIBUTE = "vtriage_sender_id"
SENDER_ACCOUNT_ATTRIBUTE = "vtriage_sender_account"
SOURCE_IP_ATTRIBUTE = "vtriage_source_ip"
USER_AGENT_ATTRIBUTE = "vtriage_user_agent"
STAMP_ATTRIBUTES = (
    SENDER_ATTRIBUTE,
    SENDER_ID_ATTRIBUTE,
    SENDER_ACCOUNT_ATTRIBUTE,
    SOURCE_IP_ATTRIBUTE,
    USER_AGENT_ATTRIBUTE,
)

# An ARN is at most 2,048 characters; a user agent is the sender's to choose, and is cut shorter.
_MAX_STAMP = 512
_MAX_USER_AGENT = 200


def caller_stamp(event: Mapping[str, Any]) -> dict[str, str]:
    """The message attributes that say who pushed a function URL request (payload format 2.0): the
    SigV4 caller Lambda authenticated (`requestContext.authorizer.iam`: userArn, callerId, accountId),
    the source address and the user agent. Values are escaped and cut; the ones absent are left out
    (SQS refuses an empty attribute)."""
    context = _mapping(event.get("requestContext"))
    iam = _mapping(_mapping(context.get("authorizer")).get("iam"))
    http = _mapping(context.get("http"))
    values = {
        SENDER_ATTRIBUTE: (iam.get("userArn"), _MAX_STAMP),
        SENDER_ID_ATTRIBUTE: (iam.get("callerId"), _MAX_STAMP),
        SENDER_ACCOUNT_ATTRIBUTE: (iam.get("accountId"), _MAX_STAMP),
        SOURCE_IP_ATTRIBUTE: (http.get("sourceIp"), _MAX_STAMP),
        USER_AGENT_ATTRIBUTE: (http.get("userAgent"), _MAX_USER_AGENT),
    }
    return {
        name: escaped(value, limit)
        for name, (value, limit) in values.items()
        if isinstance(value, str) and value
    }


def provenance_of(channel: Channel, attributes: Mapping[str, str | None]) -> Provenance:
    """The provenance of a record that came through `channel`, with the intake's stamp read from its
    message attributes only when the channel is the intake's own queue."""
    if channel != "intake":
        return Provenance(channel=channel)

    def stamp(name: str) -> str | None:
        value = attributes.get(name)
        return value[:_MAX_STAMP] if value else None

    sender = stamp(SENDER_ATTRIBUTE)
    caller, account = stamp(SENDER_ID_ATTRIBUTE), stamp(SENDER_ACCOUNT_ATTRIBUTE)
    if sender is None and caller is not None:
        sender = f"caller {caller}" + (f" of account {account}" if account else "")
    return Provenance(
        channel="intake",
        sender=sender,
        source_ip=stamp(SOURCE_IP_ATTRIBUTE),
        user_agent=stamp(USER_AGENT_ATTRIBUTE),
    )


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}
