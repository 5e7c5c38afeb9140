"""OCSF findings as normalised Alerts: Detection Finding (class 2004) and Security Finding (class 2001).

Understood deliveries: a bare OCSF finding, Security Hub's `Findings Imported V2` EventBridge event
(source `aws.securityhub`, OCSF findings in `detail.findings[]`), and any EventBridge event whose
`detail` is an OCSF finding (a custom detector's `PutEvents`).

The Alert's source is always `ocsf`, never the product's own name: the source prefixes the case id,
which names the Step Functions execution, and so must not come from text the sender chose.

- id: `finding_info.uid` (2004) or `finding.uid` (2001); version: its `modified_time`, else `time`.
- severity: `severity_id` onto GuardDuty's 0-10 scale, at a point inside the matching band:
  0 Unknown 0, 1 Informational 1, 2 Low 2, 3 Medium 5, 4 High 7, 5 Critical 9, 6 Fatal 10, 99 Other 0.
- IOCs: `observables[]` by `type_id` (1 hostname, 2 IP address, 6 URL, 8 hash: md5, sha1 or sha256 by
  length), then the indicators found in the free text of `message`, the title and the description,
  refanged. A hostname without a dot (a NetBIOS-style host name) or a hash of another length (SHA-512,
  ssdeep...) is not something VirusTotal can look up and is passed over.
- Findings whose `status_id` is 3 Suppressed, 4 Resolved, 5 Archived or 6 Deleted are acknowledged
  and give no Alert.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from vtriage.errors import InvalidAlertError
from vtriage.intake.fields import Candidate, Fields, add_free_text_iocs, json_kind, shown
from vtriage.models import Alert, IocType, Severity

SOURCE = "ocsf"
EVENT_SOURCE = "aws.securityhub"
EVENT_DETAIL_TYPE = "Findings Imported V2"
DETECTION_FINDING = 2004
SECURITY_FINDING = 2001

SEVERITY_SCORES = {0: 0.0, 1: 1.0, 2: 2.0, 3: 5.0, 4: 7.0, 5: 9.0, 6: 10.0, 99: 0.0}
ACKNOWLEDGED_STATUS_IDS = frozenset({3, 4, 5, 6})
_OBSERVABLE_TYPES = {1: IocType.DOMAIN, 2: IocType.IP, 6: IocType.URL, 8: IocType.FILE}
_LOOKUP_HASH_LENGTHS = frozenset({32, 40, 64})
_PLAIN_ID = re.compile(r"[A-Za-z0-9._:/+=@-]{1,128}")
_UNKNOWN = "unknown"


def is_finding(document: Mapping[str, Any]) -> bool:
    """Whether the document is an OCSF event (it has a `class_uid`)."""
    return "class_uid" in document


def alerts_from_event(event: Mapping[str, Any], *, skip_guardduty: bool = False) -> list[Alert]:
    """The Alerts of an EventBridge event holding OCSF: `Findings Imported V2`, or `detail` itself."""
    detail = event.get("detail")
    if not isinstance(detail, dict):
        raise InvalidAlertError(
            "missing" if detail is None else f"expected an object, got {json_kind(detail)}", field="detail"
        )
    envelope = {key: event.get(key) for key in ("account", "region")}
    if is_finding(detail):
        return _maybe(_FindingReader(detail, "detail.", envelope).alert(skip_guardduty=skip_guardduty))
    findings = detail.get("findings")
    if not isinstance(findings, list) or not findings:
        raise InvalidAlertError(
            f"expected a non-empty list of OCSF findings, got {json_kind(findings)}", field="detail.findings"
        )
    alerts: list[Alert] = []
    for index, finding in enumerate(findings):
        where = f"detail.findings[{index}]"
        if not isinstance(finding, dict):
            raise InvalidAlertError(f"expected an OCSF finding object, got {json_kind(finding)}", field=where)
        alerts += _maybe(_FindingReader(finding, where + ".", envelope).alert(skip_guardduty=skip_guardduty))
    return alerts


def alerts_from_finding(finding: Mapping[str, Any], *, skip_guardduty: bool = False) -> list[Alert]:
    """The Alert of one bare OCSF finding; none when it is acknowledged."""
    return _maybe(_FindingReader(finding, "", {}).alert(skip_guardduty=skip_guardduty))


def _maybe(alert: Alert | None) -> list[Alert]:
    return [alert] if alert is not None else []


class _FindingReader(Fields):
    """Reads one OCSF finding."""

    def __init__(self, finding: Mapping[str, Any], prefix: str, envelope: Mapping[str, Any]) -> None:
        super().__init__(prefix)
        self.finding = finding
        self.envelope = envelope

    def alert(self, *, skip_guardduty: bool) -> Alert | None:
        """The normalised Alert; None when the finding is acknowledged or a skipped GuardDuty one."""
        class_uid = self.finding.get("class_uid")
        if class_uid not in (DETECTION_FINDING, SECURITY_FINDING) or isinstance(class_uid, bool):
            raise InvalidAlertError(
                f"unsupported OCSF class {shown(class_uid)}: expected {DETECTION_FINDING} (Detection Finding)"
                f" or {SECURITY_FINDING} (Security Finding)",
                field=self.where("class_uid"),
            )
        info_key = "finding_info" if class_uid == DETECTION_FINDING else "finding"
        info = self.object(self.finding, info_key, "", required=True) or {}
        finding_id = self.text(info, "uid", info_key, required=True) or ""
        if not _PLAIN_ID.fullmatch(finding_id):
            raise InvalidAlertError(
                f"expected an id of at most 128 letters, digits and ._:/+=@-, got {shown(finding_id)}",
                field=self.where(f"{info_key}.uid"),
            )
        if self.acknowledged() or (skip_guardduty and self.product_name().lower() == "guardduty"):
            return None
        event_time = self.moment(self.finding, "time", "", required=True) or _never()
        updated_at = self.moment(info, "modified_time", info_key) or event_time
        created_at = self.moment(info, "created_time", info_key) or min(event_time, updated_at)
        kept = self.iocs(self.observable_candidates(), frozenset())
        title = self.text(info, "title", info_key)
        texts = [
            (path, text)
            for path, text in (
                ("message", self.text(self.finding, "message", "")),
                (f"{info_key}.title", title),
                (f"{info_key}.desc", self.text(info, "desc", info_key)),
            )
            if text
        ]
        ignored = frozenset(
            value.lower() for value in (finding_id, self.text(self.metadata(), "uid", "metadata")) if value
        )
        add_free_text_iocs(kept, texts, frozenset(), ignored)
        types = self.texts(info, "types", info_key)
        finding_type = (
            types[0][1] if types else self.text(self.finding, "class_name", "") or "Detection Finding"
        )
        return Alert(
            id=finding_id,
            source=SOURCE,
            type=finding_type,
            title=title or finding_type,
            severity=self.severity(),
            created_at=created_at,
            updated_at=updated_at,
            version=updated_at.isoformat(),
            account=self.cloud_value("account", ("account", "uid"), ACCOUNT_PATTERN),
            region=self.cloud_value("region", ("region",), REGION_PATTERN),
            iocs=tuple(kept.values()),
        )

    def acknowledged(self) -> bool:
        """Suppressed, resolved, archived or deleted: someone has already dealt with it."""
        status_id = self.finding.get("status_id")
        return (
            isinstance(status_id, int)
            and not isinstance(status_id, bool)
            and status_id in ACKNOWLEDGED_STATUS_IDS
        )

    def metadata(self) -> dict[str, Any]:
        """`metadata`, or an empty object."""
        return self.object(self.finding, "metadata", "") or {}

    def product_name(self) -> str:
        """`metadata.product.name`, or an empty string."""
        product = self.object(self.metadata(), "product", "metadata") or {}
        return self.text(product, "name", "metadata.product") or ""

    def severity(self) -> Severity:
        """`severity_id` on GuardDuty's 0-10 scale."""
        value = self.finding.get("severity_id")
        if value is None:
            raise InvalidAlertError("missing", field=self.where("severity_id"))
        if isinstance(value, bool) or value not in SEVERITY_SCORES:
            raise InvalidAlertError(
                f"expected one of {', '.join(map(str, SEVERITY_SCORES))}, got {shown(value)}",
                field=self.where("severity_id"),
            )
        return Severity(score=SEVERITY_SCORES[value])

    def moment(
        self, parent: Mapping[str, Any], key: str, at: str, *, required: bool = False
    ) -> datetime | None:
        """An OCSF timestamp: `key` in milliseconds since the epoch, or `key_dt` in RFC 3339."""
        value = parent.get(key)
        if value is None:
            return self.timestamp(parent, f"{key}_dt", at, required=required)
        path = self.where(f"{at}.{key}" if at else key)
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 32503680000000:
            raise InvalidAlertError(f"expected milliseconds since 1970, got {shown(value)}", field=path)
        return datetime.fromtimestamp(value / 1000, tz=UTC)

    def cloud_value(self, envelope_key: str, path: tuple[str, ...], pattern: re.Pattern[str]) -> str:
        """`cloud.<path>`, else the event's value, else 'unknown' (detectors outside AWS have neither)."""
        node: Any = self.object(self.finding, "cloud", "") or {}
        where = "cloud"
        for key in path[:-1]:
            node = self.object(node, key, where) or {}
            where = f"{where}.{key}"
        value = self.text(node, path[-1], where) or self.envelope.get(envelope_key)
        if value is None:
            return _UNKNOWN
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise InvalidAlertError(
                f"expected at most 64 letters, digits and ._:-, got {shown(value)}",
                field=self.where(f"{where}.{path[-1]}"),
            )
        return value

    def observable_candidates(self) -> list[Candidate]:
        """(type, value, path) of the observables VirusTotal can look up."""
        found: list[Candidate] = []
        for path, observable in self.objects(self.finding, "observables", ""):
            type_id = observable.get("type_id")
            ioc_type = (
                _OBSERVABLE_TYPES.get(type_id)
                if isinstance(type_id, int) and not isinstance(type_id, bool)
                else None
            )
            value = self.text(observable, "value", path)
            if ioc_type is None or value is None:
                continue
            if ioc_type is IocType.DOMAIN and "." not in value.strip().rstrip("."):
                continue
            if ioc_type is IocType.FILE and len(value.strip()) not in _LOOKUP_HASH_LENGTHS:
                continue
            found.append((ioc_type, value, f"{path}.value"))
        return found


ACCOUNT_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,64}")
REGION_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def _never() -> Any:
    raise AssertionError("a required lookup returned None")
