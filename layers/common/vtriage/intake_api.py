"""Pushed alerts: a detector or a script hands over one alert document, over HTTPS (the intake
function's URL) or with `vtriage send`. It is checked exactly as the enrich function will parse it,
and queued unchanged only when it would become a case; otherwise the sender learns why, naming the
field, and nothing is queued.

Authentication is not done here: the function URL's IAM auth (SigV4) answers 403 before the
function runs.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vtriage.config import DEFAULT_INTAKE_MAX_MESSAGE_BYTES
from vtriage.errors import InvalidAlertError, TransientError, VtriageError
from vtriage.intake import parse_alerts
from vtriage.ports import AlertQueue

__all__ = [
    "AcceptedAlert",
    "AlertRejectedError",
    "accept_alert",
    "caller_of",
    "function_url_response",
]

# The characters SQS accepts in a message body (its documented XML character range): anything else
# would make SendMessage fail after the body had been judged valid.
_REFUSED_BY_SQS = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_JSON_HEADERS = {"Content-Type": "application/json"}


@dataclass(frozen=True)
class AcceptedAlert:
    """A body that was queued: the alerts it holds, their cases-to-be, and the queue's message id."""

    alert_ids: tuple[str, ...]
    case_ids: tuple[str, ...]
    message_id: str

    def as_json(self) -> dict[str, Any]:
        """What the sender is told."""
        return {
            "message_id": self.message_id,
            "alert_ids": list(self.alert_ids),
            "case_ids": list(self.case_ids),
        }


class AlertRejectedError(VtriageError):
    """A body that was not queued, with the HTTP status that says why and the field at fault."""

    def __init__(self, status: int, reason: str, field: str | None = None) -> None:
        self.status = status
        self.reason = reason
        self.field = field
        super().__init__(f"{field}: {reason}" if field else reason)

    def as_json(self) -> dict[str, Any]:
        """What the sender is told: `{"error": ..., "field": ...}`."""
        return {"error": self.reason, "field": self.field}


def accept_alert(
    body: str, queue: AlertQueue, max_message_bytes: int = DEFAULT_INTAKE_MAX_MESSAGE_BYTES
) -> AcceptedAlert:
    """Queue the body if it is one alert document the pipeline can turn into cases; otherwise raise
    AlertRejectedError (413 when too large for the queue, 400 for anything else) and queue nothing.
    TransientError from the queue passes through: nothing was queued, the sender may retry."""
    size = len(body.encode("utf-8", errors="surrogatepass"))
    if size > max_message_bytes:
        raise AlertRejectedError(
            413, f"the body is {size} bytes; the alert queue takes at most {max_message_bytes}", "body"
        )
    if not body.strip():
        raise AlertRejectedError(400, "the body is empty: send one alert document as JSON", "body")
    refused = _REFUSED_BY_SQS.search(body)
    if refused is not None:
        raise AlertRejectedError(
            400,
            f"the body holds the character U+{ord(refused.group()):04X} at offset {refused.start()}, "
            "which SQS does not carry: escape it in the JSON text (\\uXXXX)",
            "body",
        )
    try:
        document = json.loads(body)
    except json.JSONDecodeError as error:
        raise AlertRejectedError(
            400, f"the body is not JSON: {error.msg} at line {error.lineno} column {error.colno}", "body"
        ) from None
    except RecursionError:
        raise AlertRejectedError(
            400, "the body is not usable JSON: it is nested too deeply", "body"
        ) from None
    try:
        alerts = parse_alerts(document)
    except InvalidAlertError as error:
        raise AlertRejectedError(400, error.reason, error.field) from None
    message_id = queue.send(body)
    return AcceptedAlert(
        alert_ids=tuple(alert.id for alert in alerts),
        case_ids=tuple(alert.case_id for alert in alerts),
        message_id=message_id,
    )


def function_url_response(
    event: Mapping[str, Any], queue: AlertQueue, max_message_bytes: int = DEFAULT_INTAKE_MAX_MESSAGE_BYTES
) -> dict[str, Any]:
    """The response to one Lambda function URL request (payload format 2.0): 202 with the alert ids
    and the message id when queued; 400, 405 or 413 with `{"error", "field"}` when not; 503 when the
    queue is briefly unavailable."""
    method = _http(event).get("method")
    if method != "POST":
        rejected = AlertRejectedError(405, f"push an alert with POST, not {method or 'an unknown method'}")
        return _response(405, rejected.as_json(), {"Allow": "POST"})
    try:
        accepted = accept_alert(_body_text(event), queue, max_message_bytes)
    except AlertRejectedError as rejected:
        return _response(rejected.status, rejected.as_json())
    except TransientError:
        busy = {
            "error": "the alert queue is unavailable for a moment: nothing was queued, retry",
            "field": None,
        }
        return _response(503, busy, {"Retry-After": "1"})
    return _response(202, accepted.as_json())


def caller_of(event: Mapping[str, Any]) -> str | None:
    """The IAM principal that signed the request (the function URL's IAM auth puts it in the event)."""
    context = event.get("requestContext")
    authorizer = context.get("authorizer") if isinstance(context, Mapping) else None
    iam = authorizer.get("iam") if isinstance(authorizer, Mapping) else None
    arn = iam.get("userArn") if isinstance(iam, Mapping) else None
    return str(arn) if arn else None


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
