"""Google Workspace Alert Center alerts (API v1beta1 `Alert` resources) as normalised Alerts.

Understood deliveries, recognised by shape:

- one `Alert` (`alertId`, `customerId`, `type`, `source`, `data`, `metadata`, ...), as `alerts.get`
  returns it; a JSON array of them; `alerts.list` output (`{"alerts": [...], "nextPageToken": ...}`),
  each alert read on its own; a page with no alert (`{"alerts": []}`, and `{}` or `{"nextPageToken":
  ...}`, as Google's JSON writes an empty list) is acknowledged, no case;
- a Cloud Pub/Sub push message (`{"message": {"data": <base64>, "attributes": {...}, "messageId": ...},
  "subscription": ...}`), as Alert Center publishes to a topic: its `data` is base64-encoded JSON, an
  `Alert` or, as Alert Center's notification guide documents, the alert's own payload beside the
  `alertcenter_*` attributes (type, source, times, resource status). Such a payload names no `alertId`:
  the message's `messageId`, which a redelivery keeps, identifies it.

What an alert says is read by its payload's type, `data["@type"]`
(`type.googleapis.com/google.apps.alertcenter.type.MailPhishing`, ...), never by its `type` text, which
Google words for people. The mail alerts (`MailPhishing`, `PhishingSpike`, `BadWhitelist`) name the
attachments' SHA-256 (`messages[].attachmentsSha256Hash[]`), the sender (`maliciousEntity.fromHeader`,
whose domain is looked up) and, for a misconfigured allow-list, `sourceIp`; an account warning
(`AccountWarning`: leaked password, suspicious login, ...) the login's `loginDetails.ipAddress`. Any other
type is read for the same fields wherever its payload has them; an alert with no IOC (a state-sponsored
attack warning, a compromised device, ...) still becomes a case, routed by its severity.

The customer's own domains are never looked up: `domainId.customerPrimaryDomain`, and the domains of the
customer's own addresses the alert names (the affected user, the mail's recipients). A
sender inside the organisation (`isInternal`) is not looked up either, and neither is a public mail
provider's domain (`gmail.com`...), which says nothing of who sent the mail.

Severity: `metadata.severity` HIGH 7, MEDIUM 5, LOW 2; else critical, noted. Version: `updateTime`. The
content part of the case id is what decides the alert's triage (`digest.triage_content`), never its
`etag` or `metadata.assignee`, which change while the alert does not.
Acknowledged, no case: an alert marked for deletion (`deleted`, or a notification of status `DELETED`)
or closed in the Alert Center (`metadata.status` `CLOSED`).

A Workspace alert names no AWS account or Region (`vendor.NO_AWS_PLACE`): it is triaged and ticketed
with the mail's context, never acted on in AWS, nor on a mailbox; its case shows the product (the
alert's `source`), the users it is about and the investigation tool's link (`Alert.vendor`). The users
are the affected users, every one: `email`, a Google Operations incident's `affectedUserEmails[]`, the
user who broke a DLP rule (`ruleViolationInfo.triggeringUserEmail`); else the mail's recipients; else, for
a sensitive admin action, the administrator who took it (`actorEmail`). They are kept in alphabetical
order, each once whatever its case (`VendorAlert.users`: the first 500, noted, and a digest of them all
beyond), so that the same users listed in another order are the same case; the case's identity (repeat
key, triage content) holds every one of them, and the line a person reads (`VendorAlert.user`) names the
first ten, then how many more. A value with no `@` (Google's samples write `string`) names no one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from vtriage.display import escaped, json_kind, shown
from vtriage.errors import InvalidAlertError
from vtriage.intake import sources, vendor
from vtriage.intake.digest import triage_content
from vtriage.intake.fields import (
    UNREADABLE_SEVERITY,
    UNREADABLE_SEVERITY_NOTE,
    Candidate,
    Fields,
    ioc_of,
    is_true,
)
from vtriage.intake.outcomes import Acknowledged, Finding, peek_id
from vtriage.models import MAX_VENDOR_USERS, Alert, Ioc, IocType, Severity, VendorAlert

PLATFORM = "Google Workspace"
PRODUCT = "Google Workspace Alert Center"
TYPE_PREFIX = "type.googleapis.com/google.apps.alertcenter.type."
# The host of the Admin console's security investigation tool, where `securityInvestigationToolLink` points.
CONSOLE_HOSTS = ("admin.google.com",)
SEVERITIES = {"HIGH": 7.0, "MEDIUM": 5.0, "LOW": 2.0}
CLOSED = "CLOSED"
# Mail alerts: the payload of user reported phishing and spam, reclassifications, spoofing, allow-lists.
MAIL_TYPES = frozenset({"MailPhishing", "PhishingSpike", "BadWhitelist"})
# Domains of public mail providers: a sender there says nothing of who sent the mail.
PUBLIC_MAIL_DOMAINS = frozenset(
    {
        "gmail.com",
        "googlemail.com",
        "outlook.com",
        "hotmail.com",
        "live.com",
        "yahoo.com",
        "icloud.com",
        "aol.com",
        "proton.me",
        "protonmail.com",
    }
)
CUSTOMER_DOMAIN_REASON = "the customer's own domain (the alert names it as the organisation's)"
INTERNAL_SENDER_REASON = "the sender is inside the organisation (isInternal): not looked up"
PUBLIC_MAIL_REASON = "a public mail provider's domain: it says nothing of who sent the mail"
NOT_AN_ADDRESS_REASON = "not an e-mail address: no sender domain to look up"
# The most users the line a person reads names (`VendorAlert.user`); the rest are counted there.
_NAMED_USERS = 10
# The most characters of a Pub/Sub message's `data` decoded (an alert is a few KB).
MAX_PUSHED_DATA = 1_000_000


def findings_of(document: Mapping[str, Any]) -> list[Finding]:
    """The alerts of a Workspace document (see `sources.is_workspace_document`), each read on its own."""
    if sources.is_workspace_alert(document):
        return [finding_of_bare(document, where="")]
    if sources.is_pubsub_push(document):
        return [_pushed(document)]
    alerts = document.get("alerts")
    if not isinstance(alerts, list) or not alerts:
        said = (
            "alerts is empty"
            if isinstance(alerts, list)
            else "no alerts (Google's JSON leaves an empty list out)"
        )
        reason = f"{said}: a page of alerts.list with no alert, nothing to triage"
        return [Finding(where="alerts", read=lambda: Acknowledged(reason), content=document)]
    return [finding_of_bare(item, where=f"alerts[{index}]") for index, item in enumerate(alerts)]


def finding_of_bare(item: Any, *, where: str) -> Finding:
    """One Alert, at `where` in its document."""

    def read() -> Alert | Acknowledged:
        if not isinstance(item, dict):
            raise InvalidAlertError(
                f"expected an Alert Center alert, got {json_kind(item)}", field=where or None
            )
        return _AlertReader(item, where + "." if where else "").outcome()

    alert_id = peek_id(item.get("alertId")) if isinstance(item, dict) else None
    return Finding(
        where=where,
        read=read,
        content=item,
        alert_id=alert_id,
        triage_content=lambda alert: triage_content(
            alert, status=_status_of(item), prefix=where + "." if where else ""
        ),
    )


def _status_of(alert: Any) -> Any:
    """The Alert Center status an alert's `metadata` gives (NOT_STARTED, IN_PROGRESS...), if any."""
    metadata = alert.get("metadata") if isinstance(alert, dict) else None
    return metadata.get("status") if isinstance(metadata, dict) else None


def _pushed(document: Mapping[str, Any]) -> Finding:
    """The one alert of a Pub/Sub push message."""
    message = document["message"]
    decoded = _decoded_data(message.get("data"))
    content = decoded if isinstance(decoded, dict) and sources.is_workspace_alert(decoded) else message

    def read() -> Alert | Acknowledged:
        if not isinstance(decoded, dict):
            problem = (
                decoded if isinstance(decoded, str) else f"expected a JSON object, got {json_kind(decoded)}"
            )
            raise InvalidAlertError(problem, field="message.data")
        if sources.is_workspace_alert(decoded):
            return _AlertReader(decoded, "message.data.").outcome()
        return _AlertReader(_notified_alert(message, decoded), "message.", notification=True).outcome()

    alert_id = peek_id(decoded.get("alertId")) if isinstance(decoded, dict) else None
    prefix = (
        "message.data." if isinstance(decoded, dict) and sources.is_workspace_alert(decoded) else "message."
    )
    return Finding(
        where="",
        read=read,
        content=content,
        alert_id=alert_id or peek_id(message.get("messageId")),
        triage_content=lambda alert: triage_content(alert, status=_status_of(decoded), prefix=prefix),
    )


def _decoded_data(data: Any) -> Any:
    """The JSON a message's base64 `data` holds; a string saying what is wrong when it holds none."""
    if not isinstance(data, str) or not data:
        return f"expected base64-encoded JSON, got {json_kind(data) if data != '' else 'an empty string'}"
    if len(data) > MAX_PUSHED_DATA:
        return f"longer than {MAX_PUSHED_DATA:,} characters: not an Alert Center notification"
    # Pub/Sub writes standard base64; the URL-safe alphabet and a missing padding are read too.
    padded = data.strip() + "=" * (-len(data.strip()) % 4)
    alphabet = b"-_" if "-" in padded or "_" in padded else None
    try:
        return json.loads(base64.b64decode(padded, altchars=alphabet, validate=True).decode("utf-8"))
    except (binascii.Error, ValueError, RecursionError):
        return "not base64-encoded JSON"


def _notified_alert(message: Mapping[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
    """An Alert as a notification's attributes and payload tell it (Alert Center's notification guide)."""
    attributes = message.get("attributes")
    named = attributes if isinstance(attributes, dict) else {}
    alert: dict[str, Any] = {
        "alertId": message.get("messageId"),
        "type": named.get("alertcenter_type"),
        "source": named.get("alertcenter_source"),
        "createTime": named.get("alertcenter_create_time"),
        "startTime": named.get("alertcenter_start_time"),
        "updateTime": named.get("alertcenter_update_time"),
        "data": payload,
    }
    if named.get("alertcenter_resource_status") == "DELETED":
        alert["deleted"] = True
    return alert


class _AlertReader(Fields):
    """Reads one Alert."""

    def __init__(self, alert: Mapping[str, Any], prefix: str, *, notification: bool = False) -> None:
        super().__init__(prefix)
        self.alert = alert
        self.notification = notification
        self.customer_domains: set[str] = set()

    def outcome(self) -> Alert | Acknowledged:
        """The Alert, or Acknowledged (deleted, closed); InvalidAlertError when it has no `alertId`."""
        alert = self.alert
        alert_id = self.required_text(alert, "alertId", "") if not self.notification else self.message_id()
        metadata = self.branch(alert, "metadata", "") or {}
        if is_true(alert.get("deleted")):
            said = (
                "attributes.alertcenter_resource_status is 'DELETED'"
                if self.notification
                else "deleted is true"
            )
            return Acknowledged(f"{self.where(said)}: marked for deletion in the Alert Center", alert_id)
        status = self.loose_text(metadata, "status")
        if status is not None and status.strip().upper() == CLOSED:
            return Acknowledged(
                f"{self.where('metadata.status')} is 'CLOSED': dealt with in the Alert Center", alert_id
            )
        data = self.branch(alert, "data", "")
        payload_type = self.payload_type(data)
        if self.notification:
            self.note(
                "an Alert Center notification naming no alertId: the Pub/Sub messageId stands in (a"
                " redelivery keeps it)"
            )
        affected, recipients = self.own_users(data or {})
        iocs = self.payload_iocs(payload_type, data or {})
        text_type = self.loose_text(alert, "type")
        alert_type = payload_type or text_type or "Alert Center alert"
        title = text_type or alert_type
        operations_title = self.loose_text(data or {}, "title")
        if operations_title:
            title = f"{title}: {operations_title}"
        created = self.moment(alert, "createTime", "", instead="startTime stands in") or self.moment(
            alert, "startTime", "", instead="updateTime stands in"
        )
        updated = self.moment(alert, "updateTime", "", instead="createTime stands in")
        if created is None and updated is None:
            self.malformed(self.where("createTime"), "missing, and no other time", "1970 stands in")
        # The affected users, else the mail's recipients, else the administrator a sensitive admin action
        # alert is about.
        users = _users(affected or recipients or [_address((data or {}).get("actorEmail"))])
        kept = users[:MAX_VENDOR_USERS]
        if len(users) > len(kept):
            self.note(
                f"users: the alert names {len(users)}; the first {len(kept)} in alphabetical order are kept,"
                f" {len(users) - len(kept)} more left out (the case's identity holds them all)"
            )
        details = VendorAlert(
            platform=PLATFORM,
            product=vendor.name(self.loose_text(alert, "source")) or PRODUCT,
            tenant=vendor.name(alert.get("customerId")),
            user=_users_line(users),
            users=tuple(kept),
            users_left_out=len(users) - len(kept),
            users_digest=_digest_of(users) if len(users) > len(kept) else None,
            console_url=vendor.console_url(
                self,
                alert.get("securityInvestigationToolLink"),
                "securityInvestigationToolLink",
                CONSOLE_HOSTS,
            ),
        )
        return self.finish(
            alert_id=alert_id,
            alert_type=alert_type,
            title=vendor.name(title, 300) or alert_type,
            severity=self.severity(metadata),
            created=created,
            updated=updated,
            iocs=iocs,
            details=details,
        )

    def message_id(self) -> str:
        """The Pub/Sub message's id, standing in for the alert's."""
        value = self.alert.get("alertId")
        if not isinstance(value, str) or not value:
            raise InvalidAlertError(
                "missing: a notification naming no alertId is identified by its message's id",
                field=self.where("messageId"),
            )
        return value

    def payload_type(self, data: Mapping[str, Any] | None) -> str | None:
        """The payload's type, `data["@type"]` without Google's prefix (`MailPhishing`); None when absent."""
        if data is None:
            return None
        value = data.get("@type")
        if value is None or value == "":
            self.note(
                f"{self.where('data.@type')}: missing; the payload is read for IOCs by its fields' names"
            )
            return None
        if not isinstance(value, str):
            self.note(
                f"{self.where('data.@type')}: expected a string, got {json_kind(value)}; read by field names"
            )
            return None
        text = value.strip()
        if text.startswith(TYPE_PREFIX):
            return vendor.name(text[len(TYPE_PREFIX) :], 100)
        self.note(f"{self.where('data.@type')}: {shown(value)} is no Alert Center type; read by field names")
        return None

    def own_users(self, data: Mapping[str, Any]) -> tuple[list[str], list[str]]:
        """The customer's own addresses the alert names: the affected users (`email`; a Google Operations
        incident's `affectedUserEmails[]`; the user who broke a DLP rule,
        `ruleViolationInfo.triggeringUserEmail`), and the mail's recipients; their domains, and the
        primary domain, are the customer's. The malicious entity is not among them: it may be the outside
        sender; nor is the alert's assignee, or the administrator who took a sensitive action, who may
        work elsewhere (a managed security provider)."""
        affected_emails = data.get("affectedUserEmails")
        affected = self._addresses(
            [
                data.get("email"),
                *(affected_emails if isinstance(affected_emails, list) else [affected_emails]),
                self.loose_object(data, "ruleViolationInfo").get("triggeringUserEmail"),
            ]
        )
        messages = data.get("messages")
        recipients = self._addresses(
            [message.get("recipient") for message in messages if isinstance(message, dict)]
            if isinstance(messages, list)
            else []
        )
        primary = self.loose_object(data, "domainId").get("customerPrimaryDomain")
        if isinstance(primary, str) and primary.strip():
            self.customer_domains.add(primary.strip().lower().rstrip("."))
        return affected, recipients

    def _addresses(self, values: list[Any]) -> list[str]:
        """The values that are e-mail addresses, each once; their domains are the customer's."""
        addresses: list[str] = []
        for value in values:
            if _address(value) is not None and value not in addresses:
                addresses.append(value)
                self.customer_domains.add(_domain_of(value))
        return addresses

    def payload_iocs(self, payload_type: str | None, data: Mapping[str, Any]) -> list[Ioc]:
        """The payload's IOCs, read as its type says (any other type: by the fields' names)."""
        reader = _READERS.get(payload_type or "", _AlertReader.fields_by_name)
        return reader(self, data)

    def mail_iocs(self, data: Mapping[str, Any]) -> list[Ioc]:
        """A mail alert's: the attachments' SHA-256, the sender's domain, the allow-listed source address."""
        iocs = self.attachment_iocs(data)
        iocs += self.sender_iocs(data)
        iocs += self.address_iocs(data)
        return iocs

    def login_iocs(self, data: Mapping[str, Any]) -> list[Ioc]:
        """An account warning's: the address of the login."""
        return self.address_iocs(data)

    def fields_by_name(self, data: Mapping[str, Any]) -> list[Ioc]:
        """Any other payload's: the same fields, wherever it has them."""
        return [*self.attachment_iocs(data), *self.sender_iocs(data), *self.address_iocs(data)]

    def attachment_iocs(self, data: Mapping[str, Any]) -> list[Ioc]:
        """Each attachment's SHA-256 (`messages[].attachmentsSha256Hash[]`)."""
        candidates: list[Candidate] = []
        for path, message in self.branches(data, "messages", "data"):
            candidates += self.candidate_list(IocType.FILE, message, "attachmentsSha256Hash", path)
        return list(self.iocs(candidates, frozenset()).values())

    def sender_iocs(self, data: Mapping[str, Any]) -> list[Ioc]:
        """The sender's domain (`maliciousEntity.fromHeader`), unless it is the customer's own."""
        malicious = self.branch(data, "maliciousEntity", "data")
        sender = malicious.get("fromHeader") if malicious is not None else None
        if sender is None or sender == "":
            return []
        path = "data.maliciousEntity.fromHeader"
        if not isinstance(sender, str) or "@" not in sender:
            return [
                Ioc(
                    type=IocType.DOMAIN,
                    value=escaped(sender),
                    found_at=path,
                    skipped_reason=NOT_AN_ADDRESS_REASON,
                )
            ]
        ioc = ioc_of(Candidate(IocType.DOMAIN, _domain_of(sender), path))
        if ioc.skipped_reason is not None:
            return [ioc]
        if is_true(data.get("isInternal")):
            reason = INTERNAL_SENDER_REASON
        elif _under(ioc.value, self.customer_domains):
            reason = CUSTOMER_DOMAIN_REASON
        elif ioc.value in PUBLIC_MAIL_DOMAINS:
            reason = PUBLIC_MAIL_REASON
        else:
            return [ioc]
        return [ioc.model_copy(update={"skipped_reason": reason})]

    def address_iocs(self, data: Mapping[str, Any]) -> list[Ioc]:
        """`sourceIp` (a misconfigured allow-list's) and `loginDetails.ipAddress` (an account warning's)."""
        candidates = self.candidate(IocType.IP, data, "sourceIp", "data")
        login = self.branch(data, "loginDetails", "data")
        if login is not None:
            candidates += self.candidate(IocType.IP, login, "ipAddress", "data.loginDetails")
        return list(self.iocs(candidates, frozenset()).values())

    def severity(self, metadata: Mapping[str, Any]) -> Severity:
        """`metadata.severity` on 0-10; else critical, noted."""
        value = metadata.get("severity")
        if isinstance(value, str) and value.strip().upper() in SEVERITIES:
            return Severity(score=SEVERITIES[value.strip().upper()])
        if self.notification and value is None:
            self.malformed(
                self.where("attributes"), "a notification names no severity", UNREADABLE_SEVERITY_NOTE
            )
            return UNREADABLE_SEVERITY
        problem = "missing" if value is None else f"expected HIGH, MEDIUM or LOW, got {shown(value)}"
        self.malformed(self.where("metadata.severity"), problem, UNREADABLE_SEVERITY_NOTE)
        return UNREADABLE_SEVERITY

    def finish(
        self,
        *,
        alert_id: str,
        alert_type: str,
        title: str,
        severity: Severity,
        created: datetime | None,
        updated: datetime | None,
        iocs: list[Ioc],
        details: VendorAlert,
    ) -> Alert:
        """The Alert, placed outside AWS, its IOCs each once."""
        vendor.outside_aws(self, details)
        return vendor.placed_outside_aws(
            self,
            source=sources.WORKSPACE,
            alert_id=alert_id,
            alert_type=alert_type,
            title=title,
            severity=severity,
            created=created,
            updated=updated,
            iocs=iocs,
            details=details,
        )


_READERS: dict[str, Callable[[_AlertReader, Mapping[str, Any]], list[Ioc]]] = {
    **dict.fromkeys(MAIL_TYPES, _AlertReader.mail_iocs),
    "AccountWarning": _AlertReader.login_iocs,
}


def _users(addresses: Sequence[str | None]) -> list[str]:
    """The users an alert is about, as its case keeps them (`VendorAlert.users`): every address once,
    whatever its case, in alphabetical order, so that an alert listing the same users in another order
    names them alike (one case, one repeat key)."""
    by_key: dict[str, str] = {}
    for address in sorted(name for value in addresses if (name := vendor.name(value)) is not None):
        by_key.setdefault(address.casefold(), address)
    return [by_key[key] for key in sorted(by_key)]


def _users_line(users: list[str]) -> str | None:
    """The users as a person reads them (`VendorAlert.user`): the first _NAMED_USERS, then how many more.
    None when there is none."""
    if not users:
        return None
    more = len(users) - _NAMED_USERS
    return ", ".join(users[:_NAMED_USERS]) + (f" and {more} more" if more > 0 else "")


def _digest_of(users: list[str]) -> str:
    """The SHA-256 (hex) of every user, in lower case and in order (`VendorAlert.users_digest`)."""
    return hashlib.sha256("\n".join(users).lower().encode()).hexdigest()


def _address(value: Any) -> str | None:
    """The value when it is an e-mail address (it holds an `@`): Google's samples write `string` and
    `demo_...` where an address belongs."""
    return value if isinstance(value, str) and "@" in value else None


def _domain_of(address: str) -> str:
    """The domain of an e-mail address as a From header writes it (`Name <user@domain>`), lower case."""
    return address.rpartition("@")[2].strip().strip(">").strip().lower().rstrip(".")


def _under(name: str, parents: set[str]) -> bool:
    labels = name.split(".")
    return any(".".join(labels[start:]) in parents for start in range(len(labels)))
