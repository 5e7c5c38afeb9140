"""CrowdStrike Falcon alerts as normalised Alerts: endpoint, identity, cloud and NG-SIEM detections.

Understood deliveries, recognised by shape:

- an Event Streams event (`{"metadata": {"eventType": ...}, "event": {...}}`): `EppDetectionSummaryEvent`,
  whatever its casing (CrowdStrike writes `EPPDetectionSummaryEvent` too), the other detection summaries
  (every event type ending in `DetectionSummaryEvent`, read by the same reader, each for the fields it
  has: see below), the retired `DetectionSummaryEvent` (legacy: CrowdStrike stopped sending it on 30
  September 2025; read for stored streams), and `CSPMIOAStreamingEvent`, a Falcon Cloud Security indicator
  of attack (see below). Any other event type names no detection of its own: acknowledged, no case, the
  reason saying what it is (an incident, `IncidentSummaryEvent` or Identity Protection's, groups detections
  that each stream as a detection summary; a `CustomerIOCEvent` is a host meeting one of the customer's own
  indicators, which raises a detection summary when the indicator is set to detect or block; audit and
  remote response events);
- an alert entity of the Alerts API, as `POST /alerts/entities/alerts/v2` returns each in `resources[]`
  (keyed by `composite_id`): endpoint and identity detections, cloud detections and NG-SIEM correlation
  detections (`source_ips`, `source_hosts`, `destination_hosts`); the whole response, or a JSON array of
  entities (or of stream events), each read on its own. A response's `errors[]` are noted on each of its
  alerts; a page with no alert (`"resources": []`) is acknowledged, no case; a response with errors and no
  alert (a 401's body) is refused, saying it is an API error, not alerts.

Identity is the vendor's own: `composite_id` (Alerts API), `CompositeId` (Event Streams), `DetectId`
(legacy), or one vtriage makes for a cloud detection (see below), so that a redelivery is the same case;
the content part of the case id is what decides the alert's triage (`digest.triage_content`), so that a
crawl (`crawled_timestamp`) or an enrichment (`MitreAttack[]`) of the same alert is the same case too.
Version: `updated_timestamp`, else the event's `metadata.eventCreationTime`. Severity, each number on its
own scale: the Alerts API's `severity` is 0-100 (30 Low is 3, 70 High is 7, 90 Critical is 9 on vtriage's
0-10); an Event Streams detection summary's `Severity` is 1 (informational) to 5 (critical), as
CrowdStrike's documented samples rate it (`"Severity": 4, "SeverityName": "High"`), or 0-100 as Falcon now
writes it in detection summaries (`70`, `High`): a whole number from 1 to 5 is read on the first scale, any
other on the second. A number written as a string is read, noted. The severity's name (`severity_name`,
`SeverityName`) wins where the number says another band, noted; it stands in for a missing or unreadable
number; with neither, critical, noted. A cloud detection's severity is its name (see below).

IOCs, in the order they are looked up (the cap on IOCs per alert keeps the first):

- the detected file's hashes, then each hash of `ioc_context[]` and the alert's own `ioc_type` and
  `ioc_value`, the quarantined and associated files', the parent's and the grandparent's. One lookup per
  file: its sha256, else its md5; the file's other hashes are kept, skipped with the reason. Falcon
  writes zeros where it has no hash (always for sha1): kept skipped as placeholders;
- the host's external address (`device.external_ip`), the remote address of each network access, each
  DNS request's domain, an identity detection's source endpoint address, a correlation detection's
  `source_ips`, `destination_ips`, `source_hosts` and `destination_hosts`, an XDR detection's
  comma-separated `IPv4Addresses`;
- the URLs, domains and addresses written in the command lines (the process's, its parent's, its
  grandparent's), refanged; a word that only looks like a domain (`userinit.exe`, a user folder) is no
  IOC, and a hex run in a command line is a GUID or a token far more often than a hash: not read.

What each Event Streams detection summary gives, as Elastic's Falcon integration's test data show them:
`EppDetectionSummaryEvent` and the legacy `DetectionSummaryEvent` the file's hashes, `IOCType`/`IOCValue`,
network accesses, DNS requests and command lines, on the host of `AgentId`/`SensorId`;
`IdpDetectionSummaryEvent` the source endpoint's address (`SourceEndpointIpAddress`), its host
(`SourceEndpointHostName`) and account (`SourceAccountName`); `XdrDetectionSummaryEvent` the addresses of
`IPv4Addresses` and the hosts of `HostNames` (both comma-separated); `MobileDetectionSummaryEvent`,
`DataProtectionDetectionSummaryEvent` and `OverwatchGenericDetectionSummaryEvent` no IOC vtriage can look
up (an app's identifier, the egressed content's hash of the customer's own file, none): their host and
user are shown, and their severity routes them.

A `CSPMIOAStreamingEvent` (Falcon Cloud Security's indicator of attack: a cloud API call matching one of its
policies) is read for the fields Elastic's integration maps and CrowdStrike's samples carry: its policy
(`PolicyStatement`, the alert's type and title, with `Tactic` and `Technique`), its severity by name
(`SeverityName`: its `Severity` number is on a scale CrowdStrike does not document for these events, 1
beside High in its samples, and is not read), the caller's address (`UserSourceIp`, looked up), the user
(`UserName`, else `UserId`), the time of the call (`EventCreatedTimestamp`), the cloud account, Region and
call (`AccountId`, `Region`, `CloudService`, `EventAction`: named in a note) and the resource it names
(`ResourceId`, `ResourceIdType`, `ResourceName`: what the alert is about, a subject). CrowdStrike gives it no
id: vtriage names it from the customer, policy, account, Region, time, user and resource
(`<cid>:cspm-ioa:<policy>:<account>:<Region>:<time>:<user>:<resource>`, `-` for a part it lacks), so that a
redelivery is the same case.

The host's own names and local addresses (`device.hostname`, `device.local_ip`, the network accesses'
local addresses, an XDR detection's `HostNames`, ...) are its own: a value equal to one is skipped, never
looked up. Private, internal and
reserved values are skipped by `canonical_ioc`, and CrowdStrike's own hosts (the console every alert
links to, the API) are never looked up.

A Falcon alert names no AWS account or Region (`vendor.NO_AWS_PLACE`): it is never acted on in AWS, not
even a cloud detection naming an AWS account (its note names the account; the same resource's GuardDuty or
Security Hub finding is acted on where it lives, under the place rules); its case shows the Falcon product,
host, user and console link (`Alert.vendor`). The host the detection
happened on is its resource, by its Falcon device id (`device.device_id`; a stream event's `AgentId`,
`SensorId` or `AgentIdString`): the one thing vtriage may act on, by containing it in the deployment's own
Falcon tenant (`eligibility.Place` decides where an action may run).
Acknowledged, no case: an alert whose `status` is `closed`, or whose `is_closed` is true (an automated
lead's). CrowdStrike's test detection (a command line
naming `crowdstrike_sample_detection`) is a sample: triaged and never acted on, or ignored with
`ignore_samples`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from vtriage.display import escaped, json_kind, shown
from vtriage.errors import InvalidAlertError
from vtriage.intake import sources, vendor
from vtriage.intake.canonical import OWN_ADDRESS_REASON, canonical_ioc, is_bare_host_name
from vtriage.intake.digest import triage_content
from vtriage.intake.fields import (
    UNREADABLE_SEVERITY,
    UNREADABLE_SEVERITY_NOTE,
    Candidate,
    Fields,
    declared_algorithm,
    epoch_time,
    ioc_of,
    is_true,
    join,
    own_values,
)
from vtriage.intake.outcomes import Acknowledged, Finding, peek_id
from vtriage.intake.refang import MAX_FREE_TEXT, candidates_in_text, read_extent
from vtriage.intake.suffixes import public_suffix
from vtriage.models import Alert, Ioc, IocType, Resource, ResourceType, Severity, VendorAlert

PLATFORM = "CrowdStrike Falcon"
EPP_EVENT = "EppDetectionSummaryEvent"
LEGACY_EVENT = "DetectionSummaryEvent"
# Falcon Cloud Security's indicator-of-attack detections, as Event Streams sends them.
CSPM_IOA_EVENT = "CSPMIOAStreamingEvent"
# The hosts of Falcon's consoles (falcon.crowdstrike.com, falcon.us-2..., falcon.laggar.gcw...).
CONSOLE_HOSTS = ("crowdstrike.com",)
CLOSED = "closed"
# The `type` of an automated lead (Falcon's grouping of related indicators on a host).
AUTOMATED_LEAD = "automated-lead"
# CrowdStrike's test detection: `choice /m crowdstrike_sample_detection` on Windows.
SAMPLE_MARKER = "crowdstrike_sample_detection"
SAMPLE_REASON = f"CrowdStrike's test detection (a command line naming {SAMPLE_MARKER})"
# Falcon's severity names, on vtriage's 0-10 (the bands of its 0-100 scale); `INFO` is Event Streams'.
_INFORMATIONAL_NAMES = frozenset({"informational", "info"})
_SEVERITY_NAMES = {"informational": 1.0, "info": 1.0, "low": 3.0, "medium": 5.0, "high": 7.0, "critical": 9.0}
# Event Streams' 1 (informational) to 5 (critical), onto the same bands.
_FIVE_STEP_SEVERITIES = {1: 1.0, 2: 3.0, 3: 5.0, 4: 7.0, 5: 9.0}
# A severity a sender wrote as a string of digits ("70").
_NUMBER_TEXT = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3})?")
# Falcon's `ioc_type` values vtriage can look up.
_IOC_TYPES = {
    "hash_sha256": IocType.FILE,
    "hash_md5": IocType.FILE,
    "domain": IocType.DOMAIN,
    "ipv4": IocType.IP,
    "ipv6": IocType.IP,
    "url": IocType.URL,
}
_FILE_HASH_KEYS = ("sha256", "md5", "sha1")
_STREAM_HASH_KEYS = ("SHA256String", "MD5String", "SHA1String")
_COMMAND_LINE_TYPES = frozenset({IocType.URL, IocType.DOMAIN, IocType.IP})
_PRODUCTS = {
    "epp": "Falcon Insight",
    "idp": "Falcon Identity Protection",
    "ngsiem": "Falcon Next-Gen SIEM",
    "fcs": "Falcon Cloud Security",
    "overwatch": "Falcon OverWatch",
}
# The product of a detection summary that does not name its own (`SourceProducts`), by event type.
_STREAM_PRODUCTS = {
    "eppdetectionsummaryevent": "Falcon Insight",
    "detectionsummaryevent": "Falcon Insight",
    "idpdetectionsummaryevent": "Falcon Identity Protection",
    "mobiledetectionsummaryevent": "Falcon for Mobile",
    "xdrdetectionsummaryevent": "Falcon Insight XDR",
    "cspmioastreamingevent": "Falcon Cloud Security",
}
# Why the stream events that most look like alerts make no case: what each is, and where its detections go.
_INCIDENT = "an incident groups detections that each arrive as a detection summary of their own, triaged"
_IDENTITY_INCIDENT = f"{_INCIDENT} (Identity Protection incidents: IdpDetectionSummaryEvent)"
_NOT_DETECTIONS = {
    "incidentsummaryevent": f"{_INCIDENT} (CrowdScore incidents: {EPP_EVENT})",
    "identityprotectionevent": _IDENTITY_INCIDENT,
    "identityprotectionincidentevent": _IDENTITY_INCIDENT,
    "customeriocevent": (
        "a host met one of the customer's own indicators (IOC Management): a sighting, not a detection; an"
        f" indicator set to detect or block raises a detection summary of its own ({EPP_EVENT}), triaged"
    ),
}
# An EventCreatedTimestamp of this many seconds or more is in milliseconds (12 digits and more).
_MILLISECONDS_FROM = 100_000_000_000
ANOTHER_HASH = "another hash of the file whose {kept} is looked up: one lookup per file"
CUT_URL_REASON = (
    "cut at a space inside quotes: the URL that ran goes on past it; not looked up, its host is instead"
)
# A Falcon device id (the sensor's agent id, AID): 32 hexadecimal digits.
_DEVICE_ID = re.compile(r"[0-9a-fA-F]{32}")
# How many of an Alerts API response's errors a refusal or a note names.
_ERRORS_SHOWN = 3
# The most items read from one comma-separated field (the cap on IOCs per alert keeps fewer still).
MAX_LISTED = 200
# Where a stream event names the device the detection happened on.
_STREAM_DEVICE_KEYS = ("AgentId", "SensorId", "AgentIdString")


def findings_of(document: Mapping[str, Any], *, ignore_samples: bool = False) -> list[Finding]:
    """The alerts of a Falcon document (see `sources.is_falcon_document`), each read on its own."""
    if sources.is_falcon_alert(document):
        return [finding_of_bare(document, where="", ignore_samples=ignore_samples)]
    resources = document.get("resources")
    errors = _api_errors(document.get("errors"))
    if not isinstance(resources, list) or not resources:
        if errors:
            raise InvalidAlertError(f"a CrowdStrike API error response, not alerts: {errors}", field="errors")
        reason = "resources is empty: a page of the Alerts API with no alert, nothing to triage"
        return [Finding(where="resources", read=lambda: Acknowledged(reason), content=document)]
    return [
        _entity(item, f"resources[{index}]", ignore_samples=ignore_samples, response_errors=errors)
        for index, item in enumerate(resources)
    ]


def _api_errors(errors: Any) -> str:
    """CrowdStrike's `errors[]` of a response as a person reads them (`401 access denied, ...`), the first
    few, escaped; empty when there are none."""
    if not isinstance(errors, list) or not errors:
        return ""
    described = []
    for error in errors[:_ERRORS_SHOWN]:
        if not isinstance(error, dict):
            described.append(shown(error, 120))
            continue
        code, message, named = error.get("code"), error.get("message"), error.get("id")
        parts = [str(code) if isinstance(code, int) and not isinstance(code, bool) else shown(code, 20)]
        if message not in (None, ""):
            parts.append(shown(message, 200))
        if named not in (None, ""):
            parts.append(f"(id {shown(named, 120)})")
        described.append(" ".join(parts))
    more = f", and {len(errors) - _ERRORS_SHOWN} more" if len(errors) > _ERRORS_SHOWN else ""
    return "; ".join(described) + more


def finding_of_bare(document: Mapping[str, Any], *, where: str, ignore_samples: bool = False) -> Finding:
    """One bare Falcon alert (a stream event or an alert entity), at `where` in its document."""
    if sources.is_falcon_stream_event(document):
        return _stream_event(document, where, ignore_samples=ignore_samples)
    return _entity(document, where, ignore_samples=ignore_samples)


def _entity(item: Any, where: str, *, ignore_samples: bool, response_errors: str = "") -> Finding:
    def read() -> Alert | Acknowledged:
        if isinstance(item, str):
            raise InvalidAlertError(
                f"{shown(item)} is an alert's id, not the alert: fetch the alerts with"
                " POST /alerts/entities/alerts/v2 (composite_ids) and send the entities",
                field=where or None,
            )
        if not isinstance(item, dict):
            raise InvalidAlertError(
                f"expected a Falcon alert entity, got {json_kind(item)}", field=where or None
            )
        prefix = where + "." if where else ""
        reader = _EntityReader(item, prefix)
        if response_errors:
            reader.note(
                f"the Alerts API response that held this alert also reported errors: {response_errors}"
                " (alerts asked for may be missing from it)"
            )
        return reader.outcome(ignore_samples=ignore_samples)

    alert_id = peek_id(item.get("composite_id")) if isinstance(item, dict) else None
    status = item.get("status") if isinstance(item, dict) else None
    prefix = where + "." if where else ""
    return Finding(
        where=where,
        read=read,
        content=item,
        alert_id=alert_id,
        triage_content=lambda alert: triage_content(alert, status=status, prefix=prefix),
    )


def _stream_event(document: Mapping[str, Any], where: str, *, ignore_samples: bool) -> Finding:
    event = document.get("event")

    def read() -> Alert | Acknowledged:
        prefix = where + "." if where else ""
        return _StreamReader(document, prefix).outcome(ignore_samples=ignore_samples)

    alert_id = None
    if isinstance(event, dict):
        alert_id = peek_id(event.get("CompositeId")) or peek_id(event.get("DetectId"))
    prefix = where + "." if where else ""
    # What the event says of the detection, never its envelope (its offset changes when a stream is read
    # again) nor its enrichment (MitreAttack[] added on a redelivery).
    return Finding(
        where=where,
        read=read,
        content=event,
        alert_id=alert_id,
        triage_content=lambda alert: triage_content(alert, status=None, prefix=prefix),
    )


class _FalconReader(Fields):
    """What reading a Falcon alert entity and a stream event share."""

    def severity(self, value: Any, name: Any, field: str, name_field: str, *, stream: bool) -> Severity:
        """The alert's severity on vtriage's 0-10: its number on its own scale (`stream`: an Event Streams
        event's, else the Alerts API's 0-100; see the module's docstring), unless its name says another
        band (the name wins, noted); the name when the number is missing or unreadable; else critical,
        noted."""
        number = self.severity_number(value, field)
        expected = "a number from 1 to 5 or from 0 to 100" if stream else "a number from 0 to 100"
        read = _on_falcon_scale(number, stream=stream) if number is not None else None
        caption = name.strip().lower() if isinstance(name, str) else ""
        named = _SEVERITY_NAMES.get(caption)
        problem = "missing" if value is None else f"expected {expected}, got {shown(value)}"
        if named is None:
            if read is not None:
                return read
            self.malformed(self.where(field), problem, UNREADABLE_SEVERITY_NOTE)
            return UNREADABLE_SEVERITY
        by_name = Severity(score=named, informational=caption in _INFORMATIONAL_NAMES)
        if read is None:
            if value is not None:
                self.malformed(self.where(field), problem, f"its name {caption!r} stands in")
            return by_name
        if read.label != by_name.label:
            scale = "1-5 or 0-100" if stream else "0-100"
            self.note(
                f"{self.where(field)} is {shown(value)}, {read.label} on Falcon's {scale} scale, but"
                f" {self.where(name_field)} says {shown(name)}: read as {by_name.label}, as the name says"
            )
            return by_name
        # Named, the severity is informational when its name says so, whatever the number's scale.
        return read.model_copy(update={"informational": by_name.informational})

    def severity_number(self, value: Any, field: str) -> float | None:
        """The severity's number; one written as a string of digits is read, noted; None otherwise."""
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _NUMBER_TEXT.fullmatch(value.strip()):
            number = float(value.strip())
            self.note(
                f"{self.where(field)}: a number written as a string ({shown(value)}): read as {number:g}"
            )
            return number
        return None

    def file_iocs(
        self, parent: Mapping[str, Any], at: str, keys: Iterable[str], own: frozenset[str]
    ) -> list[Ioc]:
        """The hashes of one file: the first that can be looked up is, the file's others are kept skipped."""
        iocs: list[Ioc] = []
        kept: Ioc | None = None
        for candidate in (found for key in keys for found in self.candidate(IocType.FILE, parent, key, at)):
            ioc = ioc_of(candidate, own)
            if ioc.skipped_reason is None:
                if kept is None:
                    kept = ioc
                elif ioc.value != kept.value:
                    ioc = ioc.model_copy(update={"skipped_reason": ANOTHER_HASH.format(kept=kept.found_at)})
            iocs.append(ioc)
        return iocs

    def typed_ioc(self, ioc_type: Any, value: Any, at: str, own: frozenset[str]) -> list[Ioc]:
        """An IOC Falcon names with its own type (`ioc_type`, `IOCType`), when vtriage can look it up."""
        name = ioc_type.strip().lower() if isinstance(ioc_type, str) else ""
        kind = _IOC_TYPES.get(name)
        if kind is None or value is None or value == "":
            return []
        algorithm = declared_algorithm(name) if kind is IocType.FILE else None
        return [ioc_of(Candidate(kind, value, at, algorithm), own)]

    def host_candidates(self, parent: Mapping[str, Any], key: str, at: str) -> list[Candidate]:
        """A list of host names or addresses (`source_hosts`): an address read as one, a name as a domain,
        and a name without a dot (a machine's name on its own network) not at all."""
        return [
            candidate._replace(ioc_type=IocType.IP if _is_address(candidate.raw) else IocType.DOMAIN)
            for candidate in self.candidate_list(IocType.DOMAIN, parent, key, at)
            if not is_bare_host_name(candidate.raw)
        ]

    def command_line_iocs(
        self, kept: dict[str, Ioc], texts: Iterable[tuple[str, str]], own: frozenset[str]
    ) -> None:
        """Add the URLs, domains and addresses written in command lines (path, text) to `kept`.

        A command line is prose no detector vouches for: a candidate `canonical_ioc` refuses is dropped,
        and so is a "domain" whose top-level domain no registry knows (a file or folder name such as
        `userinit.exe`); a hex run (a GUID, a token) is not read as a hash. A URL cut at a space inside
        quotes (`'http://host/a b/x.ps1'`: the quoted URL goes on past the space) is not the URL that ran:
        kept skipped, and its host is looked up instead."""
        for path, text in texts:
            extent = read_extent(text)
            if extent < len(text):
                self.note(
                    f"{self.where(path)}: a command line of {len(text):,} characters, read for IOCs only up"
                    f" to character {extent:,} (the cap is {MAX_FREE_TEXT:,})"
                )
            for ioc_type, raw in candidates_in_text(text):
                if ioc_type not in _COMMAND_LINE_TYPES:
                    continue
                try:
                    ioc = canonical_ioc(ioc_type, raw, path, own)
                except InvalidAlertError:
                    continue
                if ioc.type is IocType.URL and ioc.skipped_reason is None and _cut_at_a_space(text, raw):
                    kept.setdefault(ioc.key, ioc.model_copy(update={"skipped_reason": CUT_URL_REASON}))
                    host = urlsplit(ioc.value).hostname or ""
                    host_type = IocType.IP if _is_address(host) else IocType.DOMAIN
                    try:
                        ioc = canonical_ioc(host_type, host, path, own)
                    except InvalidAlertError:
                        continue
                if ioc.type is IocType.DOMAIN:
                    if public_suffix(ioc.value) is None:
                        continue
                    if ioc.skipped_reason is None and ioc.value in own:
                        ioc = ioc.model_copy(update={"skipped_reason": OWN_ADDRESS_REASON})
                kept.setdefault(ioc.key, ioc)

    def host(self, parent: Mapping[str, Any], keys: Iterable[str], at: str) -> tuple[Resource, ...]:
        """The host the detection happened on, by the device id the first of `keys` holds (lower case); a
        value that is no device id (or Falcon's all-zero placeholder) is noted and passed over."""
        for key in keys:
            value = parent.get(key)
            if value is None or value == "":
                continue
            text = value.strip() if isinstance(value, str) else ""
            if _DEVICE_ID.fullmatch(text) and text.strip("0"):
                return (Resource(type=ResourceType.FALCON_HOST, id=text.lower()),)
            self.note(
                f"{self.where(join(at, key))}: {shown(value)} is not a Falcon device id (32 hexadecimal"
                " digits): no host to act on"
            )
        return ()

    def note_cloud_place(
        self,
        parent: Mapping[str, Any],
        at: str,
        *,
        account: str,
        providers: Iterable[str],
        region: str,
        action: str = "",
    ) -> None:
        """A cloud detection names the cloud account (`parent[account]`) and Region it saw, and the API call
        it saw there (`action`): said, since vtriage acts on no Falcon alert in AWS."""
        account_id = self.loose_text(parent, account)
        if account_id is None:
            return
        provider = next((name for key in providers if (name := self.loose_text(parent, key))), "cloud")
        region_name = self.loose_text(parent, region)
        where = f"Region {shown(region_name, 40)}" if region_name else "no Region"
        self.note(
            f"{self.where(join(at, account))}: the detection names {shown(provider, 20)} account"
            f" {shown(account_id, 40)} in {where}{action}; vtriage acts on a Falcon alert nowhere: the same"
            " resource's GuardDuty or Security Hub finding is acted on where it lives"
        )

    def sample(self, command_lines: Iterable[tuple[str, str]]) -> bool:
        """Whether a command line is CrowdStrike's test detection's."""
        return any(SAMPLE_MARKER in text.lower() for _, text in command_lines)

    def finish(
        self,
        *,
        alert_id: str,
        alert_type: str,
        title: str,
        severity: Severity,
        created: datetime | None,
        updated: datetime | None,
        iocs: Iterable[Ioc],
        sample: bool,
        details: VendorAlert,
        hosts: tuple[Resource, ...],
    ) -> Alert:
        """The Alert, placed outside AWS, with what was read and noted (its IOCs each once, at the first
        place they were found) and the host it is about. Where actions may run on it is eligibility's to
        say (`eligibility.Place`): none in AWS, its host's containment in the deployment's own tenant."""
        if sample:
            self.not_actionable.append(SAMPLE_REASON)
        return vendor.placed_outside_aws(
            self,
            source=sources.FALCON,
            alert_id=alert_id,
            alert_type=alert_type,
            title=title,
            severity=severity,
            created=created,
            updated=updated,
            iocs=iocs,
            details=details,
            hosts=hosts,
            sample=sample,
        )


class _EntityReader(_FalconReader):
    """Reads one alert entity of the Alerts API."""

    def __init__(self, entity: Mapping[str, Any], prefix: str) -> None:
        super().__init__(prefix)
        self.entity = entity

    def outcome(self, *, ignore_samples: bool) -> Alert | Acknowledged:
        """The Alert, or Acknowledged (closed in Falcon, an ignored test detection); InvalidAlertError
        when the entity has no `composite_id`."""
        entity = self.entity
        alert_id = self.required_text(entity, "composite_id", "")
        status = self.loose_text(entity, "status")
        if status is not None and status.strip().lower() == CLOSED:
            return Acknowledged(f"{self.where('status')} is 'closed': dealt with in Falcon", alert_id)
        if is_true(entity.get("is_closed")):
            return Acknowledged(f"{self.where('is_closed')} is true: dealt with in Falcon", alert_id)
        command_lines = self.command_lines()
        sample = self.sample(command_lines)
        if sample and ignore_samples:
            return Acknowledged(f"{SAMPLE_REASON} (IGNORE_SAMPLES)", alert_id)
        device = self.branch(entity, "device", "") or {}
        own = self.own(device)
        kept: dict[str, Ioc] = {}
        for ioc in self.iocs_of(device, own):
            kept.setdefault(ioc.key, ioc)
        self.command_line_iocs(kept, command_lines, own)
        self.note_cloud_place(
            entity, "", account="cloud_account_id", providers=("cloud_provider",), region="cloud_region"
        )
        alert_type, title = self.type_and_title()
        created = self.moment(entity, "created_timestamp", "", instead="timestamp stands in") or self.moment(
            entity, "timestamp", "", instead="updated_timestamp stands in"
        )
        updated = self.moment(entity, "updated_timestamp", "", instead="created_timestamp stands in")
        if created is None and updated is None:
            self.malformed(self.where("created_timestamp"), "missing, and no other time", "1970 stands in")
        return self.finish(
            alert_id=alert_id,
            alert_type=alert_type,
            title=vendor.name(title, 300) or alert_type,
            severity=self.severity(
                entity.get("severity"), entity.get("severity_name"), "severity", "severity_name", stream=False
            ),
            created=created,
            updated=updated,
            iocs=kept.values(),
            sample=sample,
            details=self.details(device),
            hosts=self.host(device, ("device_id",), "device"),
        )

    def type_and_title(self) -> tuple[str, str]:
        """The alert's type (`name`) and title (`display_name`, else `name`, and `description`). An
        automated lead names itself after its host and a time ("host-1 at 2026-05-11T05:11:47Z"): its
        type and title come from its indicators' names and description instead, the host being shown on
        its own."""
        entity = self.entity
        if str(entity.get("type")).strip().lower() == AUTOMATED_LEAD:
            indicators = [item for _, item in self.branches(entity, "threatgraph_indicators", "")]
            names = list(
                dict.fromkeys(name for item in indicators if (name := vendor.name(item.get("display_name"))))
            )
            description = next(
                (text for item in indicators if (text := self.loose_text(item, "description"))), None
            )
            alert_type = names[0] if names else "Automated lead"
            title = "Automated lead" + (f": {', '.join(names)}" if names else "")
            return alert_type, f"{title}: {description}" if description else title
        name = self.loose_text(entity, "display_name") or self.loose_text(entity, "name")
        description = self.loose_text(entity, "description")
        alert_type = (
            self.loose_text(entity, "name") or name or self.loose_text(entity, "type") or "Falcon alert"
        )
        title = name or alert_type
        if description and description != title:
            title = f"{title}: {description}"
        return alert_type, title

    def command_lines(self) -> list[tuple[str, str]]:
        """(path, text) of the process's, its parent's and its grandparent's command lines."""
        found = []
        text = self.loose_text(self.entity, "cmdline")
        if text:
            found.append(("cmdline", text))
        for key in ("parent_details", "grandparent_details"):
            text = self.loose_text(self.loose_object(self.entity, key), "cmdline")
            if text:
                found.append((f"{key}.cmdline", text))
        return found

    def own(self, device: Mapping[str, Any]) -> frozenset[str]:
        """The host's own names and local addresses (not its external address: that one is looked up)."""
        entity = self.entity
        hostinfo = self.loose_object(device, "hostinfo")
        values: list[Any] = [
            device.get("hostname"),
            device.get("local_ip"),
            device.get("machine_domain"),
            hostinfo.get("domain"),
            entity.get("source_endpoint_host_name"),
            entity.get("target_endpoint_host_name"),
            entity.get("target_domain_controller_host_name"),
        ]
        host_names = entity.get("host_names")
        values += host_names if isinstance(host_names, list) else []
        accesses = entity.get("network_accesses")
        for access in accesses if isinstance(accesses, list) else []:
            if isinstance(access, dict):
                values.append(access.get("local_address"))
        external = device.get("external_ip")
        return own_values(value for value in values if value != external)

    def iocs_of(self, device: Mapping[str, Any], own: frozenset[str]) -> list[Ioc]:
        """The entity's IOCs from its fields, most telling first (see the module's docstring)."""
        entity = self.entity
        found = self.file_iocs(entity, "", _FILE_HASH_KEYS, own)
        for path, context in self.branches(entity, "ioc_context", ""):
            found += self.file_iocs(context, path, _FILE_HASH_KEYS, own)
            found += self.typed_ioc(
                context.get("ioc_type"), context.get("ioc_value"), f"{path}.ioc_value", own
            )
        found += self.typed_ioc(entity.get("ioc_type"), entity.get("ioc_value"), "ioc_value", own)
        for key in ("quarantined_files", "associated_files"):
            for path, item in self.branches(entity, key, ""):
                found += self.file_iocs(item, path, _FILE_HASH_KEYS, own)
        for key in ("parent_details", "grandparent_details"):
            details = self.branch(entity, key, "")
            if details is not None:
                found += self.file_iocs(details, key, _FILE_HASH_KEYS, own)
        candidates = self.candidate(IocType.IP, device, "external_ip", "device")
        for path, access in self.branches(entity, "network_accesses", ""):
            candidates += self.candidate(IocType.IP, access, "remote_address", path)
        for path, request in self.branches(entity, "dns_requests", ""):
            candidates += self.candidate(IocType.DOMAIN, request, "domain_name", path)
        for key in ("source_endpoint_ip_address", "source_endpoint_address_ip4", "source_ip_address"):
            candidates += self.candidate(IocType.IP, entity, key, "")
        for key in ("source_ips", "destination_ips"):
            candidates += self.candidate_list(IocType.IP, entity, key, "")
        for key in ("source_hosts", "destination_hosts"):
            candidates += self.host_candidates(entity, key, "")
        found += self.iocs(candidates, own).values()
        return found

    def details(self, device: Mapping[str, Any]) -> VendorAlert:
        """The alert in Falcon's terms: product, customer, host, user, console link."""
        entity = self.entity
        products = entity.get("source_products")
        product = (
            ", ".join(item for item in products if isinstance(item, str) and item)
            if isinstance(products, list)
            else None
        ) or _PRODUCTS.get(str(entity.get("product")).lower())
        return VendorAlert(
            platform=PLATFORM,
            product=vendor.name(product),
            tenant=vendor.first_name(entity.get("cid"), device.get("cid")),
            host=vendor.first_name(
                device.get("hostname"),
                entity.get("source_endpoint_host_name"),
                entity.get("host_names"),
                [item.get("hostname") for _, item in self.branches(entity, "threatgraph_indicators", "")],
            ),
            user=vendor.first_name(
                entity.get("user_name"), entity.get("source_account_name"), entity.get("user_names")
            ),
            console_url=vendor.console_url(
                self, entity.get("falcon_host_link"), "falcon_host_link", CONSOLE_HOSTS
            ),
        )


class _StreamReader(_FalconReader):
    """Reads one Event Streams event."""

    def __init__(self, document: Mapping[str, Any], prefix: str) -> None:
        super().__init__(prefix)
        self.document = document

    def outcome(self, *, ignore_samples: bool) -> Alert | Acknowledged:
        """The Alert of a detection summary, or Acknowledged (another event type, an ignored test
        detection); InvalidAlertError when the event has no `event` object or no id."""
        metadata = self.required_object(self.document, "metadata", "")
        event_type = metadata.get("eventType")
        kind = event_type.strip().lower() if isinstance(event_type, str) else None
        event = self.required_object(self.document, "event", "")
        legacy = kind == LEGACY_EVENT.lower()
        if kind == CSPM_IOA_EVENT.lower():
            return self.cloud_detection(metadata, event)
        if kind is None or not kind.endswith(LEGACY_EVENT.lower()):
            return Acknowledged(
                f"{self.where('metadata.eventType')} is {shown(event_type)}, not a detection summary"
                f" ({EPP_EVENT}, IdpDetectionSummaryEvent, ...) nor a cloud detection ({CSPM_IOA_EVENT}):"
                f" {_NOT_DETECTIONS.get(kind or '', 'no alert to triage')}",
                peek_id(event.get("CompositeId")),
            )
        id_key = "CompositeId" if "CompositeId" in event else "DetectId"
        alert_id = self.required_text(event, id_key, "event")
        command_lines = self.command_lines(event)
        sample = self.sample(command_lines)
        if sample and ignore_samples:
            return Acknowledged(f"{SAMPLE_REASON} (IGNORE_SAMPLES)", alert_id)
        own = self.own(event)
        found = self.file_iocs(event, "event", _STREAM_HASH_KEYS, own)
        found += self.typed_ioc(event.get("IOCType"), event.get("IOCValue"), "event.IOCValue", own)
        candidates: list[Candidate] = []
        for path, access in self.branches(event, "NetworkAccesses", "event"):
            candidates += self.candidate(IocType.IP, access, "RemoteAddress", path)
        for path, request in self.branches(event, "DnsRequests", "event"):
            candidates += self.candidate(IocType.DOMAIN, request, "DomainName", path)
        for key in ("SourceEndpointIpAddress", "SourceEndpointAddressIp4"):
            candidates += self.candidate(IocType.IP, event, key, "event")
        candidates += [
            Candidate(IocType.IP, address, path) for path, address in _listed(event, "IPv4Addresses", "event")
        ]
        found += self.iocs(candidates, own).values()
        kept: dict[str, Ioc] = {}
        for ioc in found:
            kept.setdefault(ioc.key, ioc)
        self.command_line_iocs(kept, command_lines, own)
        if legacy:
            self.note(
                f"a {LEGACY_EVENT} (metadata.eventType): CrowdStrike retired it on 30 September 2025;"
                f" read as a legacy event ({EPP_EVENT} and the Alerts API replace it)"
            )
        name = self.loose_text(event, "Name") or self.loose_text(event, "DetectName")
        description = self.loose_text(event, "Description") or self.loose_text(event, "DetectDescription")
        alert_type = name or (event_type if isinstance(event_type, str) else EPP_EVENT)
        title = f"{alert_type}: {description}" if description and description != alert_type else alert_type
        created = self.stream_time(metadata)
        return self.finish(
            alert_id=alert_id,
            alert_type=alert_type,
            title=vendor.name(title, 300) or alert_type,
            severity=self.severity(
                event.get("Severity"),
                event.get("SeverityName"),
                "event.Severity",
                "event.SeverityName",
                stream=True,
            ),
            created=created,
            updated=created,
            iocs=kept.values(),
            sample=sample,
            details=VendorAlert(
                platform=PLATFORM,
                product=vendor.first_name(event.get("SourceProducts"), _STREAM_PRODUCTS.get(kind or "")),
                tenant=vendor.name(metadata.get("customerIDString")),
                host=vendor.first_name(
                    event.get("Hostname"),
                    event.get("ComputerName"),
                    event.get("SourceEndpointHostName"),
                    [name for _, name in _listed(event, "HostNames", "event")],
                ),
                user=vendor.first_name(event.get("UserName"), event.get("SourceAccountName")),
                console_url=vendor.console_url(
                    self, event.get("FalconHostLink"), "event.FalconHostLink", CONSOLE_HOSTS
                ),
            ),
            hosts=self.host(event, _STREAM_DEVICE_KEYS, "event"),
        )

    def cloud_detection(self, metadata: Mapping[str, Any], event: Mapping[str, Any]) -> Alert:
        """The Alert of a Falcon Cloud Security indicator of attack (`CSPMIOAStreamingEvent`): the policy it
        matched, its tactic and technique, the cloud account, Region and API call it saw, the user and the
        address that made the call (looked up), the resource it names (a subject), placed outside AWS
        like every Falcon alert (see the module's docstring)."""
        statement = self.loose_text(event, "PolicyStatement")
        alert_type = vendor.name(statement, 300) or CSPM_IOA_EVENT
        if statement is None:
            self.note(f"{self.where('event.PolicyStatement')}: missing; the event type names the alert")
        attack = ": ".join(
            name for key in ("Tactic", "Technique") if (name := vendor.name(event.get(key), 100))
        )
        title = f"{alert_type} ({attack})" if attack else alert_type
        service = vendor.name(event.get("CloudService"), 40)
        call = " ".join(
            escaped(name, 100)
            for key in ("CloudService", "EventAction")
            if (name := vendor.name(event.get(key), 100))
        )
        action = f" (the API call {call})" if call else ""
        self.note_cloud_place(
            event,
            "event",
            account="AccountId",
            providers=("CloudProvider", "CloudPlatform"),
            region="Region",
            action=action,
        )
        self.cloud_subject(event, service)
        found = self.iocs(self.candidate(IocType.IP, event, "UserSourceIp", "event"), frozenset())
        updated = self.stream_time(metadata)
        return self.finish(
            alert_id=self.loose_text(event, "CompositeId") or self.cloud_detection_id(metadata, event),
            alert_type=alert_type,
            title=vendor.name(title, 300) or alert_type,
            severity=self.cloud_severity(event),
            created=self.cloud_event_time(event) or updated,
            updated=updated,
            iocs=found.values(),
            sample=False,
            details=VendorAlert(
                platform=PLATFORM,
                product=vendor.first_name(
                    event.get("SourceProducts"), _STREAM_PRODUCTS[CSPM_IOA_EVENT.lower()]
                ),
                tenant=vendor.name(metadata.get("customerIDString")),
                user=vendor.first_name(event.get("UserName"), event.get("UserId")),
                console_url=vendor.console_url(
                    self, event.get("ReportUrl"), "event.ReportUrl", CONSOLE_HOSTS
                ),
            ),
            hosts=(),
        )

    def cloud_detection_id(self, metadata: Mapping[str, Any], event: Mapping[str, Any]) -> str:
        """An id for a cloud detection, which CrowdStrike gives none: what tells one detection from another
        (the customer, the policy, the account and Region, when the cloud API call was made, by whom, on
        which resource), so that a redelivery is the same case. A part the event lacks is `-`."""
        parts = [metadata.get("customerIDString"), "cspm-ioa"]
        parts += [event.get(key) for key in ("PolicyId", "AccountId", "Region", "EventCreatedTimestamp")]
        parts += [event.get(key) for key in ("UserId", "ResourceId")]
        return ":".join(_id_part(part) for part in parts)

    def cloud_severity(self, event: Mapping[str, Any]) -> Severity:
        """A cloud detection's severity, by its name (`SeverityName`): its number (`Severity`) is on a scale
        CrowdStrike does not document for these events (1 is High in its samples, Informational on the
        detection summaries' 1-5), so it is not read. Without a name it can read, critical, noted."""
        name = event.get("SeverityName")
        caption = name.strip().lower() if isinstance(name, str) else ""
        named = _SEVERITY_NAMES.get(caption)
        if named is not None:
            return Severity(score=named, informational=caption in _INFORMATIONAL_NAMES)
        problem = (
            "missing"
            if name is None or name == ""
            else f"expected Critical, High, Medium, Low or Informational, got {shown(name)}"
        )
        self.malformed(
            self.where("event.SeverityName"),
            f"{problem} (a cloud detection's Severity number is on a scale CrowdStrike does not document)",
            UNREADABLE_SEVERITY_NOTE,
        )
        return UNREADABLE_SEVERITY

    def cloud_event_time(self, event: Mapping[str, Any]) -> datetime | None:
        """When the cloud API call was made (`EventCreatedTimestamp`): seconds since 1970, or milliseconds
        when it runs to 12 digits or more (as Elastic's integration reads it); None when absent."""
        value = event.get("EventCreatedTimestamp")
        if isinstance(value, int | float) and not isinstance(value, bool):
            moment = epoch_time(value / 1000 if abs(value) >= _MILLISECONDS_FROM else value)
            if moment is not None:
                return moment
            self.malformed(
                self.where("event.EventCreatedTimestamp"),
                f"a time out of range: {shown(value)}",
                "the stream event's time stands in",
            )
            return None
        return self.moment(
            event, "EventCreatedTimestamp", "event", instead="the stream event's time stands in"
        )

    def cloud_subject(self, event: Mapping[str, Any], service: str | None) -> None:
        """The cloud resource a detection names (`ResourceId`, its `ResourceName`), kept as what the alert is
        about: vtriage acts on no resource a Falcon alert names."""
        if event.get("ResourceId") in (None, ""):
            return
        kind = vendor.name(event.get("ResourceIdType"), 60) or (
            f"{service} resource" if service else "cloud resource"
        )
        name = self.subject_name(event, "ResourceName", "event")
        self.subject(kind, event, "event", ("ResourceId",), name)

    def command_lines(self, event: Mapping[str, Any]) -> list[tuple[str, str]]:
        """(path, text) of the command lines the event names (the legacy event spells `Grandparent`)."""
        found = []
        for key in ("CommandLine", "ParentCommandLine", "GrandParentCommandLine", "GrandparentCommandLine"):
            text = self.loose_text(event, key)
            if text:
                found.append((f"event.{key}", text))
        return found

    def own(self, event: Mapping[str, Any]) -> frozenset[str]:
        """The host's own names and local addresses."""
        keys = (
            "Hostname",
            "ComputerName",
            "LocalIP",
            "LocalIPv6",
            "SourceEndpointHostName",
            "TargetEndpointHostName",
        )
        values: list[Any] = [event.get(key) for key in keys]
        values += [name for _, name in _listed(event, "HostNames", "event")]
        accesses = event.get("NetworkAccesses")
        for access in accesses if isinstance(accesses, list) else []:
            if isinstance(access, dict):
                values.append(access.get("LocalAddress"))
        return own_values(values)

    def stream_time(self, metadata: Mapping[str, Any]) -> datetime | None:
        """`metadata.eventCreationTime`, in milliseconds since 1970 (what the stream documents)."""
        value = metadata.get("eventCreationTime")
        field = self.where("metadata.eventCreationTime")
        if isinstance(value, int | float) and not isinstance(value, bool):
            moment = epoch_time(value / 1000)
            if moment is not None:
                return moment
            self.malformed(field, f"milliseconds out of range: {shown(value)}", "1970 stands in")
            return None
        return self.moment(metadata, "eventCreationTime", "metadata", instead="1970 stands in", required=True)


def _id_part(value: Any) -> str:
    """One part of an id vtriage makes: a number or a text (stripped, its first 128 characters) as
    written, `-` for anything else."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()[:128]
    return "-"


def _cut_at_a_space(text: str, url: str) -> bool:
    """Whether `url`, as found in the command line `text`, opens a quoted string and ends at a space before
    the quote closes (`DownloadString('http://host/a b/x.ps1')`): the URL that ran goes on past the space.
    A URL that is one word of a quoted command (`cmd /c "iwr http://host/x.ps1 | iex"`) is whole."""
    start = text.find(url)
    end = start + len(url)
    if start < 1 or end >= len(text) or not text[end].isspace():
        return False
    quote = text[start - 1]
    return quote in ("'", '"') and quote in text[end:]


def _listed(parent: Mapping[str, Any], key: str, at: str) -> list[tuple[str, str]]:
    """(path, item) of a comma-separated text (an XDR detection's `IPv4Addresses`, `HostNames`), each item
    stripped and named by its place (`event.IPv4Addresses[1]`); none when the field is no such text."""
    value = parent.get(key)
    if not isinstance(value, str):
        return []
    items = (item.strip() for item in value.split(",", MAX_LISTED)[:MAX_LISTED])
    return [(f"{join(at, key)}[{index}]", item) for index, item in enumerate(items) if item]


def _on_falcon_scale(number: float, *, stream: bool) -> Severity | None:
    """A severity's number on vtriage's 0-10: an Event Streams whole number from 1 to 5 on that scale,
    any other from 0 to 100 divided by ten; None when out of range."""
    if stream and number.is_integer() and int(number) in _FIVE_STEP_SEVERITIES:
        return Severity(score=_FIVE_STEP_SEVERITIES[int(number)], informational=int(number) == 1)
    if 0 <= number <= 100:
        return Severity(score=round(number / 10, 1))
    return None


def _is_address(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        ipaddress.ip_address(value.strip())
    except ValueError:
        return False
    return True
