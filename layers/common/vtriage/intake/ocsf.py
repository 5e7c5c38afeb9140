"""OCSF findings as normalised Alerts: Security Finding (class 2001, OCSF 1.0), and the findings of
OCSF 1.1 and later that carry `finding_info`: Vulnerability (2002), Compliance (2003) and Detection
(2004) Findings.

Understood deliveries: a bare OCSF finding, a JSON array of them (as Prowler writes its OCSF output),
Security Hub's `Findings Imported V2` EventBridge event (source `aws.securityhub`, OCSF findings in
`detail.findings[]`), and any EventBridge event whose `detail` is an OCSF finding (a custom detector's
`PutEvents`). Each finding is read on its own.

The Alert's source is always `ocsf`, never the product's own name: the source prefixes the case id,
which names the Step Functions execution, and so must not come from text the sender chose.

- id: `finding_info.uid` (2002-2004) or `finding.uid` (2001), any non-empty string (vendors' ids hold
  spaces, `#`, `|` and run past 128 characters: Prowler's, Security Hub's ARNs); the case id hashes it,
  and every output shows it escaped and cut. Version: its `modified_time`, else `time`.
- severity: `severity_id` onto GuardDuty's 0-10 scale, at a point inside the matching band:
  0 Unknown 0, 1 Informational 1 (shown as informational, ranked low), 2 Low 2, 3 Medium 5, 4 High 7,
  5 Critical 9, 6 Fatal 10, 99 Other 0; else the `severity` caption; else critical, noted.
- IOCs: `observables[]` by `type_id` (1 hostname, 2 IP address, 6 URL, 8 hash: md5, sha1 or sha256 by
  length; a host name without a dot, a machine's name on its own network, is no domain and no IOC); where
  `type_id` is missing, is no integer, is no OCSF type (a negative number) or says 0 Unknown or 99 Other,
  by the `type` caption OCSF gives those types ('Hostname', 'IP Address', 'URL String', 'Hash', OCSF 1.0's
  'File Hash'; producers' 'IPv4 Address' and 'IPv6 Address'; in any case, its words separated by any white
  space, underscores or hyphens, in Unicode's compatibility form NFKC, zero-width characters dropped),
  noted; an observable that neither gives a type is noted with its caption, never dropped without a word.
  Where `type_id` and the caption name two types, the value is read as the caption's type when it is one
  (an address that parses as an address, a name that parses as a domain) and not of the type_id's, else as
  the type_id says; the note says where they disagree and what was read. Then the evidence artifacts of a
  Detection Finding (OCSF 1.1+, `evidences[]`, read whatever the class): each endpoint's `ip`, `hostname`,
  `domain` and `intermediate_ips[]` (`src_endpoint`, `dst_endpoint`), `url.url_string` and `url.hostname`
  (also under `http_request`), the DNS `query.hostname`, and the `hashes[]` of the `file`, of the
  `process`'s file and its parent's, and of the `actor.process`'s and its parent's (by `algorithm_id`: 1
  MD5, 2 SHA-1, 3 SHA-256, 4 SHA-512; 0 Unknown, 99 Other or none by the `algorithm` caption, else by the
  value's length; another algorithm, a fuzzy hash such as TLSH, is no IOC); each found at its field's
  path, the same value found twice one IOC. Then the indicators found in the free text of `message`, the
  title and the description, refanged. The finding's own device and resources (`device.ip`,
  `device.hostname`, `device.network_interfaces[]`, `resources[].uid`, ..., and each evidence's `device`
  and `resources[]`) are its own: kept skipped, never looked up; so are the addresses of an evidence's
  endpoint that is one of its own instances (its `instance_uid` is the device's or a resource's).
- Acknowledged, no case: a finding whose `status_id` is 3 Suppressed, 4 Resolved, 5 Archived or
  6 Deleted (or whose `status` says so), whose `state_id` is 3 Suppressed or 4 Resolved (OCSF
  1.0.0-rc.2), and a passed check (`status_code` PASS, or `compliance.status_id` 1 Pass). This is
  checked as soon as the class is known to be a finding's (other classes give `status_id` other
  meanings), before anything that could refuse the finding: a finding someone has dealt with is
  ignored, never refused.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, TypeGuard

from vtriage.display import json_kind, shown
from vtriage.errors import InvalidAlertError
from vtriage.intake import sources
from vtriage.intake.canonical import canonical_ioc, is_bare_host_name
from vtriage.intake.fields import (
    ACCOUNT_ID,
    GUARDDUTY_COPY_REASON,
    REGION,
    UNKNOWN,
    UNKNOWN_TIME,
    UNREADABLE_SEVERITY,
    UNREADABLE_SEVERITY_NOTE,
    Candidate,
    Envelope,
    Fields,
    epoch_time,
    event_detail,
    join,
    own_values,
)
from vtriage.intake.outcomes import Acknowledged, Finding, peek_id
from vtriage.models import Alert, IocType, Severity

SECURITY_FINDING = 2001
VULNERABILITY_FINDING = 2002
COMPLIANCE_FINDING = 2003
DETECTION_FINDING = 2004
_CLASSES = {
    SECURITY_FINDING: "Security Finding",
    VULNERABILITY_FINDING: "Vulnerability Finding",
    COMPLIANCE_FINDING: "Compliance Finding",
    DETECTION_FINDING: "Detection Finding",
}

# severity_id 1, Informational: shown so, ranked low.
INFORMATIONAL = 1
SEVERITY_SCORES = {0: 0.0, INFORMATIONAL: 1.0, 2: 2.0, 3: 5.0, 4: 7.0, 5: 9.0, 6: 10.0, 99: 0.0}
_SEVERITY_CAPTIONS = {
    "unknown": 0,
    "informational": 1,
    "low": 2,
    "medium": 3,
    "high": 4,
    "critical": 5,
    "fatal": 6,
    "other": 99,
}
ACKNOWLEDGED_STATUS_IDS = {3: "Suppressed", 4: "Resolved", 5: "Archived", 6: "Deleted"}
# OCSF 1.0.0-rc.2 said `state_id` where later versions say `status_id`.
ACKNOWLEDGED_STATE_IDS = {3: "Suppressed", 4: "Resolved"}
PASSED_STATUS_CODES = frozenset({"PASS", "PASSED"})
COMPLIANCE_PASS = 1
HOSTNAME = 1
_OBSERVABLE_TYPES = {HOSTNAME: IocType.DOMAIN, 2: IocType.IP, 6: IocType.URL, 8: IocType.FILE}
# OCSF's captions of those types, as `observable.type` writes them, in the form _caption_key gives them
# ('File Hash' is OCSF 1.0's caption of 8, 'Hash' later versions'). Every OCSF version captions 2 'IP
# Address', for either family; 'IPv4 Address' and 'IPv6 Address' are producers' own (an LLM normaliser's
# OCSF observables write them) and name the same type.
_OBSERVABLE_CAPTIONS = {
    "hostname": HOSTNAME,
    "ip address": 2,
    "ipv4 address": 2,
    "ipv6 address": 2,
    "url string": 6,
    "hash": 8,
    "file hash": 8,
}
# What separates a caption's words: any run of Unicode white space (a no-break space among it),
# underscores or hyphens ('IP  Address', 'IP\u00a0Address', 'ip_address', 'URL-String').
_CAPTION_SEPARATORS = re.compile(r"[\s_-]+")
# Zero-width characters, dropped from a caption before it is matched (`IP\u200b Address`).
_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff"))
# What a note calls a value of each type VirusTotal looks up.
_KINDS = {
    IocType.DOMAIN: "a domain",
    IocType.IP: "an IP address",
    IocType.URL: "a URL",
    IocType.FILE: "a hash",
}
# type_id 0 Unknown and 99 Other: OCSF points to the `type` caption for what the type is.
_UNMAPPED_OBSERVABLE_TYPES = {0: "Unknown", 99: "Other"}
# The most observable indexes, and distinct type captions, a note lists (captions are few: a finding's
# unread ones are all named, unless it is built to flood the note).
_NOTED_INDEXES = 8
_NOTED_CAPTIONS = 20
# Observables whose name says they are the finding's own device or resources.
_OWN_OBSERVABLE_NAMES = ("device.", "resource.", "resources[", "resources.")
_CLOUD_VALUE = re.compile(r"[A-Za-z0-9._:-]{1,64}")
# `fingerprint.algorithm_id` of the hashes VirusTotal knows (it looks up no SHA-512: kept skipped, saying so).
_HASH_ALGORITHMS = {1: "md5", 2: "sha1", 3: "sha256", 4: "sha512"}
# 0 Unknown and 99 Other leave the algorithm to the `algorithm` caption; so does a negative id (OCSF 1.0's
# -1 Other). A caption that names none (or says Unknown, Other) leaves it to the value's length.
_UNNAMED_HASH_ALGORITHMS = (0, 99)
_UNNAMED_HASH_CAPTIONS = frozenset({"", "unknown", "other"})
# The endpoints of an evidence, and what of each is an IOC.
_EVIDENCE_ENDPOINTS = ("src_endpoint", "dst_endpoint")
_ENDPOINT_ADDRESSES = ("ip", "hostname", "domain")
# OCSF times are milliseconds since 1970: a number below this (1973-03-03 in milliseconds, the year 5138
# in seconds) is a time in seconds.
_SECONDS_AT_MOST = 100_000_000_000


def findings_of_event(event: Mapping[str, Any], *, skip_guardduty: bool = False) -> list[Finding]:
    """The findings of an EventBridge event holding OCSF: `Findings Imported V2`, or `detail` itself."""
    detail = event_detail(event)
    envelope = Envelope.of(event)
    if sources.is_ocsf_finding(detail):
        return [_finding(detail, "", "detail.", envelope, skip_guardduty=skip_guardduty)]
    findings = detail.get("findings")
    if not isinstance(findings, list) or not findings:
        raise InvalidAlertError(
            f"expected a non-empty list of OCSF findings, got {json_kind(findings)}", field="detail.findings"
        )
    return [
        _finding(
            finding,
            f"detail.findings[{index}]",
            f"detail.findings[{index}].",
            envelope,
            skip_guardduty=skip_guardduty,
        )
        for index, finding in enumerate(findings)
    ]


def finding_of_bare(finding: Mapping[str, Any], *, where: str = "", skip_guardduty: bool = False) -> Finding:
    """One bare OCSF finding, at `where` in its document."""
    return _finding(finding, where, where + "." if where else "", Envelope(), skip_guardduty=skip_guardduty)


def _finding(finding: Any, where: str, prefix: str, envelope: Envelope, *, skip_guardduty: bool) -> Finding:
    def read() -> Alert | Acknowledged:
        if not isinstance(finding, dict):
            raise InvalidAlertError(
                f"expected an OCSF finding object, got {json_kind(finding)}", field=where or None
            )
        return _FindingReader(finding, prefix, envelope).outcome(skip_guardduty=skip_guardduty)

    return Finding(where=where, read=read, content=finding, alert_id=_peek_uid(finding))


def _peek_uid(finding: Any) -> str | None:
    if not isinstance(finding, dict):
        return None
    for key in ("finding_info", "finding"):
        info = finding.get(key)
        if isinstance(info, dict):
            return peek_id(info.get("uid"))
    return None


class _FindingReader(Fields):
    """Reads one OCSF finding."""

    def __init__(self, finding: Mapping[str, Any], prefix: str, envelope: Envelope) -> None:
        super().__init__(prefix)
        self.finding = finding
        self.envelope = envelope

    def outcome(self, *, skip_guardduty: bool) -> Alert | Acknowledged:
        """The normalised Alert, or Acknowledged (dealt with, a passed check, a skipped GuardDuty
        finding). Raises InvalidAlertError when the finding cannot be identified (class, uid); an
        acknowledged finding is ignored even when it could not be identified."""
        class_uid = self.finding.get("class_uid")
        if not _is_int(class_uid) or class_uid not in _CLASSES:
            supported = ", ".join(f"{number} ({name})" for number, name in _CLASSES.items())
            raise InvalidAlertError(
                f"unsupported OCSF class {shown(class_uid)}: expected {supported}",
                field=self.where("class_uid"),
            )
        acknowledged = self.acknowledged()
        if acknowledged is not None:
            return Acknowledged(acknowledged, _peek_uid(self.finding))
        info_key = "finding" if class_uid == SECURITY_FINDING else "finding_info"
        info = self.required_object(self.finding, info_key, "")
        finding_id = self.required_text(info, "uid", info_key)
        if skip_guardduty and self.product_name().lower() == "guardduty":
            return Acknowledged(GUARDDUTY_COPY_REASON, finding_id)
        event_time = self.ocsf_time(
            self.finding, "time", "", instead="modified_time, else created_time, stands in"
        )
        modified = self.ocsf_time(info, "modified_time", info_key, instead="time stands in")
        created = self.ocsf_time(info, "created_time", info_key, instead="time stands in")
        fallback = event_time or modified or created or self.envelope_time(self.envelope)
        if fallback is None:
            self.malformed(
                self.where("time"), "missing, and no other time", f"{UNKNOWN_TIME.isoformat()} stands in"
            )
            fallback = UNKNOWN_TIME
        updated_at = modified or fallback
        created_at = created or min(fallback, updated_at)
        own = self.own()
        kept = self.iocs([*self.observable_candidates(), *self.evidence_candidates()], own)
        title = self.loose_text(info, "title")
        texts = [
            (path, text)
            for path, text in (
                ("message", self.loose_text(self.finding, "message")),
                (f"{info_key}.title", title),
                (f"{info_key}.desc", self.loose_text(info, "desc")),
            )
            if text
        ]
        metadata = self.loose_object(self.finding, "metadata")
        ignored = frozenset(
            value.lower() for value in (finding_id, self.loose_text(metadata, "uid")) if value
        )
        self.free_text_iocs(kept, texts, own, ignored)
        finding_type = self.finding_type(info) or _CLASSES[class_uid]
        self.resource_subjects()
        subjects = self.alert_subjects()
        return Alert(
            id=finding_id,
            source=sources.OCSF,
            type=finding_type,
            title=title or finding_type,
            severity=self.severity(),
            created_at=created_at,
            updated_at=updated_at,
            version=updated_at.isoformat() if updated_at is not UNKNOWN_TIME else "unversioned",
            account=self.cloud_value("account", ("account", "uid")),
            region=self.cloud_value("region", ("region",)),
            subjects=subjects,
            iocs=tuple(kept.values()),
            notes=self.alert_notes(),
            not_actionable=self.alert_not_actionable(),
        )

    def acknowledged(self) -> str | None:
        """Why the finding needs no case (the field that says so), or None."""
        finding = self.finding
        status_id = finding.get("status_id")
        status = (self.loose_text(finding, "status") or "").strip().capitalize()
        if _is_int(status_id) and status_id in ACKNOWLEDGED_STATUS_IDS:
            name = ACKNOWLEDGED_STATUS_IDS[status_id]
            # `status_id` is OCSF's normative field; a caption that disagrees (Prowler writes "New" for a
            # muted check) is shown, not followed.
            disagrees = (
                f"; {self.where('status')} says {shown(status, 40)}" if status and status != name else ""
            )
            return f"{self.where('status_id')} is {status_id} ({name}{disagrees})"
        if not _is_int(status_id) and status in ACKNOWLEDGED_STATUS_IDS.values():
            return f"{self.where('status')} is {status!r}"
        state_id = finding.get("state_id")
        if _is_int(state_id) and state_id in ACKNOWLEDGED_STATE_IDS:
            name = ACKNOWLEDGED_STATE_IDS[state_id]
            return f"{self.where('state_id')} is {state_id} ({name}, OCSF 1.0.0-rc.2)"
        status_code = (self.loose_text(finding, "status_code") or "").strip().upper()
        if status_code in PASSED_STATUS_CODES:
            return f"a passed check: {self.where('status_code')} is {status_code!r}"
        compliance = self.loose_object(finding, "compliance")
        if compliance.get("status_id") == COMPLIANCE_PASS and _is_int(compliance.get("status_id")):
            return f"a passed check: {self.where('compliance.status_id')} is 1 (Pass)"
        if (self.loose_text(compliance, "status") or "").strip().upper() in PASSED_STATUS_CODES:
            return f"a passed check: {self.where('compliance.status')} says it passed"
        return None

    def product_name(self) -> str:
        """`metadata.product.name`, or an empty string."""
        product = self.loose_object(self.loose_object(self.finding, "metadata"), "product")
        return self.loose_text(product, "name") or ""

    def finding_type(self, info: Mapping[str, Any]) -> str | None:
        """The first of `types`, else the class name."""
        types = info.get("types")
        if isinstance(types, list):
            for value in types:
                if isinstance(value, str) and value:
                    return value
        return self.loose_text(self.finding, "class_name")

    def severity(self) -> Severity:
        """`severity_id` on GuardDuty's 0-10 scale; else the `severity` caption; else critical, noted."""
        value = self.finding.get("severity_id")
        if _is_int(value) and value in SEVERITY_SCORES:
            return Severity(score=SEVERITY_SCORES[value], informational=value == INFORMATIONAL)
        caption = (self.loose_text(self.finding, "severity") or "").strip().lower()
        problem = (
            "missing"
            if value is None
            else f"expected one of {', '.join(map(str, SEVERITY_SCORES))}, got {shown(value)}"
        )
        if caption in _SEVERITY_CAPTIONS:
            if value is not None:
                self.malformed(
                    self.where("severity_id"), problem, f"the severity caption {caption!r} stands in"
                )
            severity_id = _SEVERITY_CAPTIONS[caption]
            return Severity(score=SEVERITY_SCORES[severity_id], informational=severity_id == INFORMATIONAL)
        self.malformed(self.where("severity_id"), problem, UNREADABLE_SEVERITY_NOTE)
        return UNREADABLE_SEVERITY

    def ocsf_time(self, parent: Mapping[str, Any], key: str, at: str, *, instead: str) -> datetime | None:
        """An OCSF timestamp: `key` in milliseconds since the epoch, or `key_dt` in RFC 3339; another form
        is read when it can be, and noted (see `Fields.moment`)."""
        value = parent.get(key)
        if value is None:
            return self.moment(parent, f"{key}_dt", at, instead=instead)
        if _is_int(value) or isinstance(value, float):
            field = self.where(f"{at}.{key}" if at else key)
            if 0 <= value < _SECONDS_AT_MOST:
                # Milliseconds this small are the first days of 1970: the sender wrote seconds.
                moment = epoch_time(value)
                if moment is not None:
                    self.malformed(
                        field,
                        f"{shown(value)} is seconds, not the milliseconds OCSF specifies",
                        f"read as {moment.isoformat()}",
                    )
                    return moment
            moment = epoch_time(value / 1000)
            if moment is not None:
                return moment
            self.malformed(
                self.where(f"{at}.{key}" if at else key),
                f"milliseconds out of range: {shown(value)}",
                instead,
            )
            return None
        return self.moment(parent, key, at, instead=instead)

    def cloud_value(self, envelope_key: str, path: tuple[str, ...]) -> str:
        """`cloud.<path>`, else the event's value, else 'unknown'. A value that is no AWS account id or
        Region (another cloud's, or none at all) is kept when it is plain, and makes the alert not
        actionable: vtriage acts only in AWS accounts it can name."""
        node: Any = self.loose_object(self.finding, "cloud")
        where = "cloud"
        for key in path[:-1]:
            node = self.loose_object(node, key)
            where = f"{where}.{key}"
        field = self.where(f"{where}.{path[-1]}")
        value = node.get(path[-1])
        choices = [(field, value), (envelope_key, getattr(self.envelope, envelope_key))]
        chosen = self.optional_identity(choices, _CLOUD_VALUE, "at most 64 letters, digits and ._:-")
        aws = ACCOUNT_ID if envelope_key == "account" else REGION
        if chosen == UNKNOWN and all(choice in (None, "") for _, choice in choices):
            self.malformed(field, "missing", f"{UNKNOWN!r} stands in: no AWS {envelope_key} to act in")
        elif chosen != UNKNOWN and not aws.fullmatch(chosen):
            self.malformed(
                field, f"{shown(chosen)} is no AWS {envelope_key}", "kept; no AWS resource to act on"
            )
        return chosen

    def own(self) -> frozenset[str]:
        """The finding's own addresses and host names: its device's and its resources', each evidence's
        device's and resources', and those of an evidence's endpoint that is one of its own instances."""
        holders = [self.finding, *self.evidence_objects()]
        values: list[Any] = []
        instances: set[str] = set()
        for holder in holders:
            device = self.loose_object(holder, "device")
            values += [device.get(key) for key in ("ip", "hostname", "name")]
            instances |= _texts(device.get(key) for key in ("instance_uid", "uid"))
            interfaces = device.get("network_interfaces")
            for interface in interfaces if isinstance(interfaces, list) else []:
                if isinstance(interface, dict):
                    values += [interface.get("ip"), interface.get("hostname")]
            resources = holder.get("resources")
            for resource in resources if isinstance(resources, list) else []:
                if isinstance(resource, dict):
                    values += [resource.get(key) for key in ("uid", "name", "hostname", "ip")]
                    instances |= _texts([resource.get("uid")])
        # OCSF does not say which side of a connection the victim is; an endpoint naming one of the
        # finding's own instances is that instance, so its addresses (a public one too) are its own.
        for evidence in holders[1:]:
            for side in _EVIDENCE_ENDPOINTS:
                endpoint = self.loose_object(evidence, side)
                if _is_instance(endpoint.get("instance_uid"), instances):
                    values += [endpoint.get(key) for key in _ENDPOINT_ADDRESSES]
        # An observable says where in the finding its value is: `device.ip` is the device's own.
        observables = self.finding.get("observables")
        for observable in observables if isinstance(observables, list) else []:
            name = observable.get("name") if isinstance(observable, dict) else None
            if isinstance(name, str) and name.startswith(_OWN_OBSERVABLE_NAMES):
                values.append(observable.get("value"))
        return own_values(value for value in values if value != UNKNOWN)

    def resource_subjects(self) -> None:
        """Keep each of `resources[]` as what the alert is about (vtriage acts on no OCSF resource): its
        `type` ('resource' when it names none), its `uid` (else its `name`) and its `name`. What is not as
        OCSF documents it is noted and passed over."""
        resources = self.finding.get("resources")
        if resources is None:
            return
        if not isinstance(resources, list):
            self.note(
                f"{self.where('resources')}: expected a list, got {json_kind(resources)}; no resource kept"
            )
            return
        for index, resource in enumerate(resources):
            path = f"resources[{index}]"
            if not isinstance(resource, dict):
                self.note(f"{self.where(path)}: expected an object, got {json_kind(resource)}; not kept")
                continue
            kind = self.loose_text(resource, "type") or "resource"
            self.subject(kind, resource, path, ("uid", "name"), self.subject_name(resource, "name", path))

    def observable_candidates(self) -> list[Candidate]:
        """(type, value, path) of the observables VirusTotal can look up, typed by `type_id`, else by the
        `type` caption (noted). Where the two disagree (noted), the caption's type when the value reads as
        it and not as the type_id's. An observable whose type neither gives is noted and not read."""
        found: list[Candidate] = []
        # Per problem and caption (by its key): the caption as first written, and the indexes it typed.
        by_caption: dict[tuple[str, str], tuple[str, list[str]]] = {}
        # Per problem: the indexes not read, and each distinct caption (by its key) as first written.
        unread: dict[str, tuple[list[str], dict[str, str]]] = {}
        # Per type_id, caption (by its key) and what was read: the caption as first written, the indexes.
        disagreeing: dict[tuple[int, str, str], tuple[str, list[str]]] = {}
        for path, observable in self.branches(self.finding, "observables", ""):
            value = observable.get("value")
            if value is None or value == "":
                continue
            type_id = observable.get("type_id")
            named = observable.get("type")
            caption = named.strip() if isinstance(named, str) else ""
            key = _caption_key(caption)
            captioned = _OBSERVABLE_CAPTIONS.get(key)
            index = path.removeprefix("observables[").removesuffix("]")
            if _is_int(type_id) and type_id > 0 and type_id not in _UNMAPPED_OBSERVABLE_TYPES:
                # An OCSF type: looked up when VirusTotal knows it, else (User Name, ...) not an IOC.
                chosen: int | None = type_id if type_id in _OBSERVABLE_TYPES else None
                if captioned is not None and captioned != type_id:
                    chosen, outcome = _settled(type_id, captioned, value)
                    _, indexes = disagreeing.setdefault((type_id, key, outcome), (shown(caption, 40), []))
                    indexes.append(index)
            else:
                chosen = captioned
                problem = _type_id_problem(type_id)
                if chosen is not None:
                    _, typed = by_caption.setdefault((problem, key), (shown(caption, 40), []))
                    typed.append(index)
                elif not (_is_int(type_id) and type_id in _UNMAPPED_OBSERVABLE_TYPES and _says_a_type(named)):
                    # 0 Unknown or 99 Other with a plain caption of another type says what it is: no note.
                    indexes, captions = unread.setdefault(problem, ([], {}))
                    indexes.append(index)
                    if caption:
                        captions.setdefault(key, shown(caption, 40))
            if chosen is None:
                continue
            if chosen == HOSTNAME and is_bare_host_name(value):
                # A machine's name on its own network (`WEB01`): no domain, so no IOC.
                continue
            found.append(Candidate(_OBSERVABLE_TYPES[chosen], value, f"{path}.value"))
        for (type_id, _, outcome), (caption, indexes) in disagreeing.items():
            self.note(
                f"{self._observables_at(indexes)}: type_id {type_id} and the type caption {caption}"
                f" disagree; {outcome}"
            )
        for (problem, _), (caption, indexes) in by_caption.items():
            self.note(
                f"{self._observables_at(indexes)}.type_id: {problem}; the type caption {caption} stands in"
            )
        for problem, (indexes, captions) in unread.items():
            named_captions = list(captions.values())
            listed = ", ".join(named_captions[:_NOTED_CAPTIONS])
            if len(named_captions) > _NOTED_CAPTIONS:
                listed += f" and {len(named_captions) - _NOTED_CAPTIONS} more"
            said = (
                f"the type caption ({listed}) is none VirusTotal looks up"
                if named_captions
                else "no type caption says its type"
            )
            self.note(f"{self._observables_at(indexes)}.type_id: {problem}, and {said}: not read for IOCs")
        return found

    def evidence_objects(self) -> list[dict[str, Any]]:
        """The objects of `evidences[]`, read loosely (where they are not as OCSF documents them,
        `evidence_candidates` says so)."""
        evidences = self.finding.get("evidences")
        return [item for item in evidences if isinstance(item, dict)] if isinstance(evidences, list) else []

    def evidence_candidates(self) -> list[Candidate]:
        """(type, value, path) of what VirusTotal can look up in the evidence artifacts (`evidences[]`): the
        endpoints' addresses and host names, URLs, the DNS query, and the hashes of the file and of the
        processes. What is not as OCSF documents it is noted and passed over."""
        found: list[Candidate] = []
        for path, evidence in self.branches(self.finding, "evidences", ""):
            for side in _EVIDENCE_ENDPOINTS:
                endpoint = self.branch(evidence, side, path)
                if endpoint is not None:
                    at = join(path, side)
                    found += self.candidate(IocType.IP, endpoint, "ip", at)
                    found += self.host_candidates(endpoint, ("hostname", "domain"), at)
                    found += self.candidate_list(IocType.IP, endpoint, "intermediate_ips", at)
            found += self.url_candidates(evidence, path)
            request = self.branch(evidence, "http_request", path)
            if request is not None:
                found += self.url_candidates(request, join(path, "http_request"))
            query = self.branch(evidence, "query", path)
            if query is not None:
                found += self.host_candidates(query, ("hostname",), join(path, "query"))
            found += self.file_candidates(evidence, "file", path)
            found += self.process_candidates(evidence, "process", path)
            actor = self.branch(evidence, "actor", path)
            if actor is not None:
                found += self.process_candidates(actor, "process", join(path, "actor"))
        return found

    def host_candidates(self, parent: Mapping[str, Any], keys: tuple[str, ...], at: str) -> list[Candidate]:
        """The domains at `parent[keys]`; a name without a dot (a machine's, a Windows domain's) is none."""
        return [
            candidate
            for key in keys
            for candidate in self.candidate(IocType.DOMAIN, parent, key, at)
            if not is_bare_host_name(candidate.raw)
        ]

    def url_candidates(self, parent: Mapping[str, Any], at: str) -> list[Candidate]:
        """The URL object `parent.url`: its `url_string`, and its `hostname` as a domain."""
        url = self.branch(parent, "url", at)
        if url is None:
            return []
        return [
            *self.candidate(IocType.URL, url, "url_string", join(at, "url")),
            *self.host_candidates(url, ("hostname",), join(at, "url")),
        ]

    def process_candidates(self, parent: Mapping[str, Any], key: str, at: str) -> list[Candidate]:
        """The hashes of the process `parent[key]`'s file and of its parent process's file. Its ancestors
        above the parent are noted, not read: every lookup counts against VirusTotal's quota, and an
        ancestry reaches the system's own processes."""
        process = self.branch(parent, key, at)
        if process is None:
            return []
        path = join(at, key)
        found = self.file_candidates(process, "file", path)
        parent_process = self.branch(process, "parent_process", path)
        if parent_process is not None:
            found += self.file_candidates(parent_process, "file", join(path, "parent_process"))
            if parent_process.get("parent_process"):
                ancestors = self.where(join(path, "parent_process.parent_process"))
                self.note(f"{ancestors}: the process's ancestors above its parent are not read for IOCs")
        return found

    def file_candidates(self, parent: Mapping[str, Any], key: str, at: str) -> list[Candidate]:
        """The hashes of the file `parent[key]` (`hashes[]`, OCSF fingerprints) VirusTotal may look up."""
        file = self.branch(parent, key, at)
        if file is None:
            return []
        found: list[Candidate] = []
        for path, fingerprint in self.branches(file, "hashes", join(at, key)):
            value = fingerprint.get("value")
            readable, algorithm = _hash_algorithm(fingerprint)
            if readable and value is not None and value != "":
                found.append(Candidate(IocType.FILE, value, f"{path}.value", algorithm))
        return found

    def _observables_at(self, indexes: list[str]) -> str:
        """`observables[4, 5, 6]`, the indexes listed up to _NOTED_INDEXES, the rest counted."""
        listed = ", ".join(indexes[:_NOTED_INDEXES])
        more = f" and {len(indexes) - _NOTED_INDEXES} more" if len(indexes) > _NOTED_INDEXES else ""
        return self.where(f"observables[{listed}{more}]")


def _caption_key(caption: str) -> str:
    """An observable's type caption as _OBSERVABLE_CAPTIONS holds it: in Unicode's compatibility form
    (NFKC: full-width letters as letters), zero-width characters dropped, its words separated by one
    space, whatever white space, underscores or hyphens a producer wrote between them, case folded."""
    text = unicodedata.normalize("NFKC", caption).translate(_ZERO_WIDTH)
    return _CAPTION_SEPARATORS.sub(" ", text).strip().casefold()


def _settled(type_id: int, captioned: int, value: Any) -> tuple[int | None, str]:
    """The type an observable is read as when its `type_id` and its caption's type (`captioned`) disagree,
    and what a note says of it: the caption's when the value reads as the caption's type and not as the
    type_id's (an address that parses as an address, a name that parses as a domain), else the
    type_id's (None when VirusTotal looks up no such type)."""
    by_id = _OBSERVABLE_TYPES.get(type_id)
    by_caption = _OBSERVABLE_TYPES[captioned]
    caption_fits = _reads_as(by_caption, value)
    id_fits = by_id is not None and _reads_as(by_id, value)
    if caption_fits and not id_fits:
        return captioned, f"the value is {_KINDS[by_caption]}, read as the caption says"
    if by_id is None:
        return None, f"the value is not {_KINDS[by_caption]}, and type_id {type_id} is no IOC type: not read"
    if caption_fits:
        said = "reads as either"
    elif id_fits:
        said = f"is not {_KINDS[by_caption]}"
    else:
        said = f"is neither {_KINDS[by_caption]} nor {_KINDS[by_id]}"
    return type_id, f"the value {said}: read as type_id says ({_KINDS[by_id]})"


def _reads_as(ioc_type: IocType, value: Any) -> bool:
    """Whether `value` parses as an IOC of `ioc_type` (looked up or kept skipped for what it is: a private
    address is an address), as `canonical_ioc` reads it; a host name without a dot is no domain."""
    try:
        canonical_ioc(ioc_type, value, "")
    except InvalidAlertError:
        return False
    return not (ioc_type is IocType.DOMAIN and is_bare_host_name(value))


def _says_a_type(caption: Any) -> bool:
    """Whether a caption plainly names a type (OCSF's 'Other', 'Process Name'): text as written, without
    a control, format or zero-width character or a compatibility form (`unicodedata.normalize` NFKC would
    change it), and not 'Unknown'."""
    if not isinstance(caption, str) or not caption.strip():
        return False
    plain = unicodedata.normalize("NFKC", caption) == caption and caption.isprintable()
    return plain and _caption_key(caption) != "unknown"


def _type_id_problem(type_id: Any) -> str:
    """What is wrong with an observable's `type_id`, as a note says it."""
    if type_id is None:
        return "missing (OCSF requires it)"
    if not _is_int(type_id):
        return f"expected an integer, got {shown(type_id, 40)}"
    if type_id in _UNMAPPED_OBSERVABLE_TYPES:
        return f"{type_id} ({_UNMAPPED_OBSERVABLE_TYPES[type_id]})"
    return f"{type_id} is no OCSF observable type"


def _hash_algorithm(fingerprint: Mapping[str, Any]) -> tuple[bool, str | None]:
    """(whether the fingerprint is a hash VirusTotal may look up, the algorithm it declares): by
    `algorithm_id`, else (0 Unknown, 99 Other, a negative or no id) by the `algorithm` caption, else by
    the value's length (None). Another algorithm (CTPH, TLSH, quickXorHash...) is no IOC."""
    algorithm_id = fingerprint.get("algorithm_id")
    if _is_int(algorithm_id):
        if algorithm_id in _HASH_ALGORITHMS:
            return True, _HASH_ALGORITHMS[algorithm_id]
        if algorithm_id > 0 and algorithm_id not in _UNNAMED_HASH_ALGORITHMS:
            return False, None
    caption = fingerprint.get("algorithm")
    named = re.sub(r"[^a-z0-9]", "", caption.lower()) if isinstance(caption, str) else ""
    if named in _HASH_ALGORITHMS.values():
        return True, named
    return named in _UNNAMED_HASH_CAPTIONS, None


def _texts(values: Iterable[Any]) -> set[str]:
    """The values that are non-blank strings, stripped."""
    return {value.strip() for value in values if isinstance(value, str) and value.strip()}


def _is_instance(instance_uid: Any, instances: set[str]) -> bool:
    """Whether an endpoint's `instance_uid` is one of `instances`, or the id an instance's ARN ends with."""
    if not isinstance(instance_uid, str) or not instance_uid.strip():
        return False
    uid = instance_uid.strip()
    return uid in instances or any(instance.endswith("/" + uid) for instance in instances)


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)
