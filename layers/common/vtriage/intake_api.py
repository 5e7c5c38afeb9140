"""Pushed alerts: a detector or a script hands over one alert document over HTTPS, to the intake
function's URL (`vtriage send` signs and posts it there). It is read exactly as the enrich function will
read it, with the same options, and queued unchanged on the pushed-alert queue unless the enrich
function would refuse it: refused whole, or every finding in it refused. The sender learns which
findings become cases, which are refused alone and which are ignored, and why.

Authentication is not done here: the function URL's IAM auth (SigV4) answers 403 before the
function runs. Who signed the request, from where and with which agent is stamped on the queued message
(`vtriage.provenance`): the case records it, and a pushed alert is never acted on without a person
unless the deployment says otherwise.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools import Logger

from vtriage.config.intake import DEFAULT_INTAKE_MAX_MESSAGE_BYTES
from vtriage.display import shown
from vtriage.errors import InvalidAlertError, TransientError, VtriageError
from vtriage.intake import FindingRefusal, IgnoredFinding, IntakeOptions, IntakeResult
from vtriage.intake.body import decode_body
from vtriage.ports import AlertQueue
from vtriage.provenance import SENDER_ATTRIBUTE, caller_stamp

__all__ = [
    "AcceptedAlert",
    "AlertRejectedError",
    "accept_alert",
    "function_url_response",
]

logger = Logger(child=True)

_JSON_HEADERS = {"Content-Type": "application/json"}


def _refused_json(refused: tuple[FindingRefusal, ...]) -> list[dict[str, str]]:
    return [{"where": refusal.where, "reason": refusal.reason} for refusal in refused]


def _ignored_json(ignored: tuple[IgnoredFinding, ...]) -> list[dict[str, str | None]]:
    return [{"where": item.where, "alert_id": item.alert_id, "reason": item.reason} for item in ignored]


@dataclass(frozen=True)
class AcceptedAlert:
    """A body that was queued: the alerts it holds and their cases-to-be, the findings in it refused
    alone or ignored, and the queue's message id."""

    alert_ids: tuple[str, ...]
    case_ids: tuple[str, ...]
    message_id: str
    refused: tuple[FindingRefusal, ...] = ()
    ignored: tuple[IgnoredFinding, ...] = ()
    stamp: Mapping[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """What the sender is told, with the identity the message was stamped with."""
        return {
            "message_id": self.message_id,
            "sender": self.stamp.get(SENDER_ATTRIBUTE),
            "alert_ids": list(self.alert_ids),
            "case_ids": list(self.case_ids),
            "refused": _refused_json(self.refused),
            "ignored": _ignored_json(self.ignored),
        }


class AlertRejectedError(VtriageError):
    """A body that was not queued, with the HTTP status that says why, the field at fault, and, when
    every finding was refused, each finding's refusal."""

    def __init__(
        self, status: int, reason: str, field: str | None = None, refused: tuple[FindingRefusal, ...] = ()
    ) -> None:
        self.status = status
        self.reason = reason
        self.field = field
        self.refused = refused
        super().__init__(f"{field}: {reason}" if field else reason)

    def as_json(self) -> dict[str, Any]:
        """What the sender is told: `{"error", "field", "refused": [{"where", "reason"}]}`."""
        return {"error": self.reason, "field": self.field, "refused": _refused_json(self.refused)}


def accept_alert(
    body: str,
    queue: AlertQueue,
    *,
    options: IntakeOptions,
    stamp: Mapping[str, str],
    max_message_bytes: int = DEFAULT_INTAKE_MAX_MESSAGE_BYTES,
) -> AcceptedAlert:
    """Queue the body, with `stamp` (who sent it: `vtriage.provenance.caller_stamp`) as its message
    attributes, unless the enrich function, reading it with `options`, would refuse it; otherwise raise
    AlertRejectedError (413 when too large for the queue, 400 for anything else) and queue nothing.
    TransientError from the queue passes through: nothing was queued, the sender may retry."""
    size = len(body.encode("utf-8", errors="surrogatepass"))
    if size > max_message_bytes:
        raise AlertRejectedError(
            413, f"the body is {size} bytes; the alert queue takes at most {max_message_bytes}", "body"
        )
    if not body.strip():
        raise AlertRejectedError(400, "the body is empty: send one alert document as JSON", "body")
    result = _read(body, options)
    if not result.alerts and not result.ignored:
        raise _every_finding_refused(result.refused)
    message_id = queue.send(body, stamp)
    return AcceptedAlert(
        alert_ids=tuple(alert.id for alert in result.alerts),
        case_ids=tuple(alert.case_id for alert in result.alerts),
        message_id=message_id,
        refused=result.refused,
        ignored=result.ignored,
        stamp=dict(stamp),
    )


def _read(body: str, options: IntakeOptions) -> IntakeResult:
    """Every finding of the body, as the enrich function reads it. Whatever goes wrong while reading a
    sender's body is that body's refusal (400), never the function's fault (5xx)."""
    try:
        return options.read(decode_body(body))
    except InvalidAlertError as error:
        raise AlertRejectedError(400, error.reason, error.field) from None
    except Exception as error:
        kind = type(error).__name__
        logger.warning(
            "pushed body refused on an unexpected error",
            extra={"error_type": kind, "error": shown(str(error), 200)},
            exc_info=True,
        )
        raise AlertRejectedError(
            400, f"the body could not be read: {kind} ({shown(str(error), 120)})", "body"
        ) from None


def _every_finding_refused(refused: tuple[FindingRefusal, ...]) -> AlertRejectedError:
    """The rejection of a document none of whose findings can become a case."""
    if not refused:
        return AlertRejectedError(400, "the document holds no finding to triage", "body")
    if len(refused) == 1:
        (refusal,) = refused
        return AlertRejectedError(400, refusal.reason, refusal.where or None, refused)
    return AlertRejectedError(
        400, f"every finding was refused ({len(refused)}): see `refused` for each one's reason", None, refused
    )


def function_url_response(
    event: Mapping[str, Any],
    queue: AlertQueue,
    *,
    options: IntakeOptions,
    max_message_bytes: int = DEFAULT_INTAKE_MAX_MESSAGE_BYTES,
) -> dict[str, Any]:
    """The response to one Lambda function URL request (payload format 2.0): 202 with the alert ids,
    the message id, the sender it was stamped with and the findings refused alone or ignored, when
    queued; 400, 405 or 413 with `{"error", "field", "refused"}` when not; 503 when the queue is briefly
    unavailable."""
    method = _http(event).get("method")
    if method != "POST":
        rejected = AlertRejectedError(405, f"push an alert with POST, not {method or 'an unknown method'}")
        return _response(405, rejected.as_json(), {"Allow": "POST"})
    try:
        accepted = accept_alert(
            _body_text(event),
            queue,
            options=options,
            stamp=caller_stamp(event),
            max_message_bytes=max_message_bytes,
        )
    except AlertRejectedError as rejected:
        return _response(rejected.status, rejected.as_json())
    except TransientError:
        busy: dict[str, Any] = {
            "error": "the alert queue is unavailable for a moment: nothing was queued, retry",
            "field": None,
            "refused": [],
        }
        return _response(503, busy, {"Retry-After": "1"})
    return _response(202, accepted.as_json())


def _http(event: Mapping[str, Any]) -> Mapping[str, Any]:
    context = event.get("requestContext")
    http = context.get("http") if isinstance(context, Mapping) else None
    return http if isinstance(http, Mapping) else {}


def _body_text(event: Mapping[str, Any]) -> str:
    """The request body as text. Function URLs base64-encode bodies they do not take for text."""
    body = event.get("body")
    if body is None:
        return ""
    if not isinstance(body, str):
        raise AlertRejectedError(400, "the request carries no readable body", "body")
    if not event.get("isBase64Encoded"):
        return body
    try:
        raw = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise AlertRejectedError(400, "the body is marked base64 but does not decode", "body") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise AlertRejectedError(400, f"the body is not UTF-8 (byte {error.start})", "body") from None


def _response(status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {**_JSON_HEADERS, **(headers or {})},
        "body": json.dumps(payload),
    }
