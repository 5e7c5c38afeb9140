"""GuardDuty findings as normalised Alerts: their IOCs and the resources a response could act on.

Three deliveries of the same finding are understood: the EventBridge event (`GuardDuty Finding`,
camelCase `detail`), the bare finding (camelCase), and `aws guardduty get-findings` output (PascalCase
under `Findings[]`). PascalCase keys are turned into camelCase one by one, so a finding reads the same
whichever way it came, while errors still name each field the way the sender spelt it.

Malware Protection for S3 also reports on its own, without a detector: the EventBridge event
`GuardDuty Malware Protection Object Scan Result` names the bucket and key of a scanned object. An
object with threats found becomes an Alert on that object; any other scan result makes no Alert.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from vtriage.errors import InvalidAlertError
from vtriage.intake.canonical import canonical_ioc
from vtriage.intake.fields import Fields, json_kind, shown
from vtriage.intake.fields import join as _join
from vtriage.models import Alert, Ioc, IocType, Resource, ResourceType, Severity

SOURCE = "guardduty"
EVENT_SOURCE = "aws.guardduty"
EVENT_DETAIL_TYPE = "GuardDuty Finding"
MALWARE_SCAN_DETAIL_TYPE = "GuardDuty Malware Protection Object Scan Result"
# The type GuardDuty gives the same detection when a detector runs the plan; its default severity is High.
MALWARE_SCAN_ALERT_TYPE = "Object:S3/MaliciousFile"
MALWARE_SCAN_SEVERITY = 8.0
_THREATS_FOUND = "THREATS_FOUND"
# S3's version id of every object in a bucket that never had versioning: it tells no upload apart.
_UNVERSIONED = "null"
# An ETag that is 32 hex digits is the object's MD5 when it was uploaded in one part without SSE-KMS or
# SSE-C (Amazon S3 User Guide, "Checking object integrity"); a multipart ETag ends in "-<parts>".
_MD5_ETAG = re.compile(r"[0-9a-fA-F]{32}")

_ACCOUNT_ID = re.compile(r"[0-9]{12}")
_REGION = re.compile(r"[a-z]{2}(?:-[a-z]+)+-[0-9]{1,2}")
# Members read here whose wire (camelCase) name is not their PascalCase name with a lower-case first letter.
_CAMEL_EXCEPTIONS = {"SourceIps": "sourceIPs"}
_PASCAL_EXCEPTIONS = {camel: pascal for pascal, camel in _CAMEL_EXCEPTIONS.items()}


def is_eventbridge_event(document: Mapping[str, Any]) -> bool:
    """Whether the document has the EventBridge envelope (GuardDuty's or any other detector's)."""
    return any(key in document for key in ("detail-type", "source", "detail"))


def is_get_findings_output(document: Mapping[str, Any]) -> bool:
    """Whether the document is `aws guardduty get-findings` output."""
    return "Findings" in document


def is_bare_finding(document: Mapping[str, Any]) -> bool:
    """Whether the document is one GuardDuty finding, camelCase (the API) or PascalCase (boto3)."""
    camel = "type" in document and ("schemaVersion" in document or "service" in document)
    pascal = "Type" in document and ("SchemaVersion" in document or "Service" in document)
    return camel or pascal


def alerts_from_event(event: Mapping[str, Any]) -> list[Alert]:
    """The Alerts of a GuardDuty EventBridge event: one per `GuardDuty Finding`, one per Malware
    Protection for S3 scan result that found threats, none for a scan result that did not."""
    _check_source(event)
    if event.get("detail-type") == MALWARE_SCAN_DETAIL_TYPE:
        alert = alert_from_malware_scan(event)
        return [alert] if alert else []
    return [alert_from_event(event)]


def alert_from_event(event: Mapping[str, Any]) -> Alert:
    """The Alert of an EventBridge `GuardDuty Finding` event."""
    _check_source(event)
    _check_detail_type(event, EVENT_DETAIL_TYPE)
    detail = _detail(event)
    envelope = {key: event.get(key) for key in ("account", "region")}
    return _FindingReader(detail, prefix="detail.", pascal=False, envelope=envelope).alert()


def alert_from_malware_scan(event: Mapping[str, Any]) -> Alert | None:
    """The Alert of a `GuardDuty Malware Protection Object Scan Result` event, on the scanned object;
    None when the scan found no threat (or could not scan), as there is then nothing to triage.

    The event carries no finding id and no hash: the alert is the object (its ARN), versioned by the
    object's version id, else its ETag, else the event's id, so that a redelivered event, or a rescan
    of the same upload, is the same case. An ETag that is an MD5 is the one IOC (see `_MD5_ETAG`).
    """
    _check_source(event)
    _check_detail_type(event, MALWARE_SCAN_DETAIL_TYPE)
    reader = _FindingReader(_detail(event), prefix="detail.", pascal=False)
    detail = reader.finding
    resource_type = reader.fields.text(detail, "resourceType", "")
    if resource_type is not None and resource_type != "S3_OBJECT":
        raise InvalidAlertError(
            f"unsupported resource type {shown(resource_type)}: expected 'S3_OBJECT'",
            field=reader.where("resourceType"),
        )
    result = reader.required_object(detail, "scanResultDetails", "")
    status = reader.required_text(result, "scanResultStatus", "scanResultDetails")
    if status != _THREATS_FOUND:
        return None
    threats = [
        name
        for path, threat in reader.fields.objects(result, "threats", "scanResultDetails")
        if (name := reader.fields.text(threat, "name", path))
    ]
    at = "s3ObjectDetails"
    item = reader.required_object(detail, at, "")
    bucket = reader.required_text(item, "bucketName", at)
    key = reader.required_text(item, "objectKey", at)
    etag = reader.fields.text(item, "eTag", at)
    version_id = reader.fields.text(item, "versionId", at)
    moment = _event_time(event)
    if version_id and version_id != _UNVERSIONED:
        version = f"version-{version_id}"
    elif etag:
        version = f"etag-{etag}"
    else:
        version = f"event-{_event_id(event)}"
    iocs: tuple[Ioc, ...] = ()
    if etag and _MD5_ETAG.fullmatch(etag.strip('"')):
        iocs = (canonical_ioc(IocType.FILE, etag.strip('"'), f"{at}.eTag"),)
    named = ", ".join(_printable(name) for name in threats) or "an unnamed threat"
    # The key is the uploader's choice: the id and title show it escaped, the resource keeps it as it is.
    shown_key = _printable(key)
    return Alert(
        id=f"arn:aws:s3:::{bucket}/{shown_key}",
        source=SOURCE,
        type=MALWARE_SCAN_ALERT_TYPE,
        title=f"Malware Protection for S3 found {named} in s3://{bucket}/{shown_key}",
        severity=Severity(score=MALWARE_SCAN_SEVERITY),
        created_at=moment,
        updated_at=moment,
        version=version,
        account=_envelope_account(event),
        region=_envelope_region(event),
        resources=(
            Resource(type=ResourceType.S3_BUCKET, id=bucket, bucket=bucket),
            Resource(type=ResourceType.S3_OBJECT, id=f"{bucket}/{key}", bucket=bucket, key=key),
        ),
        iocs=iocs,
    )


def _printable(text: str) -> str:
    """The text with every character that is not printable (CR, LF, controls) escaped as Python does."""
    return "".join(character if character.isprintable() else repr(character)[1:-1] for character in text)


def _check_source(event: Mapping[str, Any]) -> None:
    source = event.get("source")
    if source == EVENT_SOURCE:
        return
    if source is None:
        raise InvalidAlertError(
            f"missing: an EventBridge event from GuardDuty has source {EVENT_SOURCE!r}", field="source"
        )
    raise InvalidAlertError(
        f"unsupported event source {shown(source)}: expected {EVENT_SOURCE!r}, 'aws.securityhub',"
        " or an OCSF finding (with class_uid) as detail",
        field="source",
    )


def _check_detail_type(event: Mapping[str, Any], expected: str) -> None:
    detail_type = event.get("detail-type")
    if detail_type == expected:
        return
    supported = f"{EVENT_DETAIL_TYPE!r} or {MALWARE_SCAN_DETAIL_TYPE!r}"
    if detail_type is None:
        raise InvalidAlertError(f"missing: expected {supported}", field="detail-type")
    raise InvalidAlertError(
        f"unsupported GuardDuty event {shown(detail_type)}: expected {supported}", field="detail-type"
    )


def _detail(event: Mapping[str, Any]) -> dict[str, Any]:
    detail = event.get("detail")
    if detail is None:
        raise InvalidAlertError("missing", field="detail")
    if not isinstance(detail, dict):
        raise InvalidAlertError(f"expected an object, got {json_kind(detail)}", field="detail")
    return detail


def _event_time(event: Mapping[str, Any]) -> datetime:
    """The event's `time`, in UTC: when GuardDuty published the scan result."""
    value = event.get("time")
    moment = _parse_timestamp(value) if isinstance(value, str) else None
    if moment is None:
        reason = "missing" if value is None else f"expected an ISO 8601 timestamp, got {shown(value)}"
        raise InvalidAlertError(reason, field="time")
    return moment


def _event_id(event: Mapping[str, Any]) -> str:
    value = event.get("id")
    if not isinstance(value, str) or not value:
        raise InvalidAlertError(
            "missing, and no versionId or eTag to tell this scan result apart", field="id"
        )
    return value


def _envelope_account(event: Mapping[str, Any]) -> str:
    value = event.get("account")
    if not isinstance(value, str) or not _ACCOUNT_ID.fullmatch(value):
        reason = "missing" if value is None else f"expected a 12-digit AWS account id, got {shown(value)}"
        raise InvalidAlertError(reason, field="account")
    return value


def _envelope_region(event: Mapping[str, Any]) -> str:
    value = event.get("region")
    if not isinstance(value, str) or not _REGION.fullmatch(value):
        reason = (
            "missing" if value is None else f"expected an AWS Region such as 'us-east-1', got {shown(value)}"
        )
        raise InvalidAlertError(reason, field="region")
    return value


def _parse_timestamp(text: str) -> datetime | None:
    """An ISO 8601 timestamp with a time zone, in UTC; None when it is not one."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment.astimezone(UTC) if moment.tzinfo is not None else None


def alerts_from_get_findings(output: Mapping[str, Any]) -> list[Alert]:
    """One Alert per finding of `aws guardduty get-findings` output."""
    findings = output.get("Findings")
    if not isinstance(findings, list):
        raise InvalidAlertError(f"expected a list of findings, got {json_kind(findings)}", field="Findings")
    if not findings:
        raise InvalidAlertError("empty: get-findings returned no finding to triage", field="Findings")
    alerts = []
    for index, finding in enumerate(findings):
        where = f"Findings[{index}]"
        if not isinstance(finding, dict):
            raise InvalidAlertError(f"expected a finding object, got {json_kind(finding)}", field=where)
        pascal = _is_pascal_case(finding)
        reader = _FindingReader(
            _camel_case(finding) if pascal else finding, prefix=where + ".", pascal=pascal
        )
        alerts.append(reader.alert())
    return alerts


def alert_from_finding(finding: Mapping[str, Any]) -> Alert:
    """The Alert of one bare GuardDuty finding, camelCase or PascalCase."""
    pascal = _is_pascal_case(finding)
    camel = _camel_case(finding) if pascal else dict(finding)
    return _FindingReader(camel, prefix="", pascal=pascal).alert()


class _GuardDutyFields(Fields):
    """Typed reads of a GuardDuty finding, naming each field as the sender spelt it (camel or Pascal case)."""

    def __init__(self, prefix: str, pascal: bool) -> None:
        super().__init__(prefix)
        self.pascal = pascal

    def where(self, path: str) -> str:
        """A finding path as the sender's document spells it."""
        if self.pascal:
            path = ".".join(_pascal_segment(segment) for segment in path.split("."))
        return self.prefix + path


class _FindingReader:
    """Reads one camelCase finding; names each field as it appears in the sender's document."""

    def __init__(
        self,
        finding: dict[str, Any],
        *,
        prefix: str,
        pascal: bool,
        envelope: Mapping[str, Any] | None = None,
    ) -> None:
        self.fields = _GuardDutyFields(prefix, pascal)
        self.finding = finding
        self.envelope = envelope or {}

    def alert(self) -> Alert:
        """The normalised Alert, or InvalidAlertError naming the first field that prevents it."""
        finding = self.finding
        finding_id = self.required_text(finding, "id", "")
        finding_type = self.required_text(finding, "type", "")
        resource = self.required_object(finding, "resource", "")
        service = self.required_object(finding, "service", "")
        created_at = self.fields.timestamp(finding, "createdAt", "", required=True) or _never()
        updated_at, version = self.updated_at_and_version(service)
        resources = self.resources(resource)
        own_addresses = frozenset(address for item in resources for address in item.addresses)
        return Alert(
            id=finding_id,
            source=SOURCE,
            type=finding_type,
            title=self.fields.text(finding, "title", "") or finding_type,
            severity=self.severity(),
            created_at=created_at,
            updated_at=updated_at or created_at,
            version=version,
            account=self.account(),
            region=self.region(),
            resources=resources,
            iocs=self.iocs(service, resource, own_addresses),
        )

    # --- the finding's own fields -------------------------------------------------------------

    def severity(self) -> Severity:
        """GuardDuty's 0-10 score."""
        value = self.finding.get("severity")
        if value is None:
            raise InvalidAlertError("missing", field=self.where("severity"))
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 10:
            raise InvalidAlertError(
                f"expected a number from 0 to 10, got {shown(value)}", field=self.where("severity")
            )
        return Severity(score=float(value))

    def updated_at_and_version(self, service: Mapping[str, Any]) -> tuple[datetime | None, str]:
        """When the finding last changed, and the version that names this state of it."""
        updated_at = self.fields.timestamp(self.finding, "updatedAt", "")
        if updated_at is not None:
            return updated_at, updated_at.isoformat()
        count = service.get("count")
        if isinstance(count, int) and not isinstance(count, bool):
            return None, f"count-{count}"
        raise InvalidAlertError(
            "missing, and no service.count to tell this finding's versions apart",
            field=self.where("updatedAt"),
        )

    def account(self) -> str:
        """The account the finding belongs to: the finding's own, else the event's."""
        value = self.finding.get("accountId") or self.envelope.get("account")
        if value is None:
            raise InvalidAlertError("missing", field=self.where("accountId"))
        if not isinstance(value, str) or not _ACCOUNT_ID.fullmatch(value):
            raise InvalidAlertError(
                f"expected a 12-digit AWS account id, got {shown(value)}", field=self.where("accountId")
            )
        return value

    def region(self) -> str:
        """The Region the finding was generated in: the finding's own, else the event's."""
        value = self.finding.get("region") or self.envelope.get("region")
        if value is None:
            raise InvalidAlertError("missing", field=self.where("region"))
        if not isinstance(value, str) or not _REGION.fullmatch(value):
            raise InvalidAlertError(
                f"expected an AWS Region such as 'us-east-1', got {shown(value)}", field=self.where("region")
            )
        return value

    # --- resources ------------------------------------------------------------------------------

    def resources(self, resource: Mapping[str, Any]) -> tuple[Resource, ...]:
        """What a response could act on, by the finding's resource type.

        GuardDuty's sample findings fill in details of every kind whatever the resource type, so
        only the details that the resource type names are read: an S3 finding's sample instance
        must never be isolated.
        """
        resource_type = self.fields.text(resource, "resourceType", "resource")
        if resource_type == "Instance":
            return (self.instance(resource),)
        if resource_type == "AccessKey":
            key = self.access_key(resource, required=True)
            return (key,) if key else ()
        if resource_type in ("S3Bucket", "S3Object"):
            # The access key is the identity that touched the bucket: it may be disabled.
            key = self.access_key(resource, required=False)
            return (*self.buckets(resource), *((key,) if key else ()))
        return ()

    def instance(self, resource: Mapping[str, Any]) -> Resource:
        """The EC2 instance, with its VPC, network interfaces and its own addresses."""
        at = "resource.instanceDetails"
        details = self.required_object(resource, "instanceDetails", "resource")
        instance_id = self.required_text(details, "instanceId", at)
        vpc_id: str | None = None
        interface_ids: list[str] = []
        addresses: list[str] = []
        for path, interface in self.fields.objects(details, "networkInterfaces", at):
            vpc_id = vpc_id or self.fields.text(interface, "vpcId", path)
            interface_id = self.fields.text(interface, "networkInterfaceId", path)
            if interface_id and interface_id not in interface_ids:
                interface_ids.append(interface_id)
            candidates = [self.fields.text(interface, "privateIpAddress", path)]
            for private_path, private in self.fields.objects(interface, "privateIpAddresses", path):
                candidates.append(self.fields.text(private, "privateIpAddress", private_path))
            candidates.append(self.fields.text(interface, "publicIp", path))
            candidates.extend(value for _, value in self.fields.texts(interface, "ipv6Addresses", path))
            for address in candidates:
                if address and address not in addresses:
                    addresses.append(address)
        return Resource(
            type=ResourceType.INSTANCE,
            id=instance_id,
            vpc_id=vpc_id,
            network_interface_ids=tuple(interface_ids),
            addresses=tuple(addresses),
        )

    def access_key(self, resource: Mapping[str, Any], *, required: bool) -> Resource | None:
        """The IAM access key and the user it belongs to."""
        details = self.fields.object(resource, "accessKeyDetails", "resource", required=required)
        if details is None:
            return None
        at = "resource.accessKeyDetails"
        key_id = self.fields.text(details, "accessKeyId", at, required=required)
        if key_id is None:
            return None
        return Resource(
            type=ResourceType.ACCESS_KEY, id=key_id, user_name=self.fields.text(details, "userName", at)
        )

    def buckets(self, resource: Mapping[str, Any]) -> list[Resource]:
        """The S3 buckets, and the objects GuardDuty names in them."""
        found: list[Resource] = []
        for path, bucket in self.fields.objects(resource, "s3BucketDetails", "resource"):
            name = self.required_text(bucket, "name", path)
            found.append(Resource(type=ResourceType.S3_BUCKET, id=name, bucket=name))
            for object_path, item in self.fields.objects(bucket, "s3ObjectDetails", path):
                key = self.fields.text(item, "key", object_path)
                if key:
                    found.append(
                        Resource(type=ResourceType.S3_OBJECT, id=f"{name}/{key}", bucket=name, key=key)
                    )
        return found

    # --- IOCs -----------------------------------------------------------------------------------

    def iocs(
        self, service: Mapping[str, Any], resource: Mapping[str, Any], own_addresses: frozenset[str]
    ) -> tuple[Ioc, ...]:
        """Every IOC the finding names, canonical, each kept once at the first place it was found."""
        kept: dict[str, Ioc] = {}
        for ioc_type, raw, path in self.ioc_candidates(service, resource):
            try:
                ioc = canonical_ioc(ioc_type, raw, path, own_addresses)
            except InvalidAlertError as error:
                raise InvalidAlertError(error.reason, field=self.where(path)) from None
            kept.setdefault(ioc.key, ioc)
        return tuple(kept.values())

    def ioc_candidates(
        self, service: Mapping[str, Any], resource: Mapping[str, Any]
    ) -> list[tuple[IocType, str, str]]:
        """(type, raw value, path in the finding) of every place GuardDuty puts an indicator."""
        found: list[tuple[IocType, str, str]] = []
        action = self.fields.object(service, "action", "service") or {}
        at = "service.action"

        for kind in ("networkConnectionAction", "awsApiCallAction", "rdsLoginAttemptAction"):
            details = self.fields.object(action, kind, at)
            if details is not None:
                found += self.remote_ips(details, f"{at}.{kind}")
        port_probe = self.fields.object(action, "portProbeAction", at)
        if port_probe is not None:
            for path, probe in self.fields.objects(port_probe, "portProbeDetails", f"{at}.portProbeAction"):
                found += self.remote_ips(probe, path)
        api_call = self.fields.object(action, "awsApiCallAction", at)
        if api_call is not None:
            domain_details = self.fields.object(api_call, "domainDetails", f"{at}.awsApiCallAction")
            if domain_details is not None:
                found += self.candidates(
                    IocType.DOMAIN, domain_details, "domain", f"{at}.awsApiCallAction.domainDetails"
                )
        dns_request = self.fields.object(action, "dnsRequestAction", at)
        if dns_request is not None:
            found += self.candidates(IocType.DOMAIN, dns_request, "domain", f"{at}.dnsRequestAction")
        kubernetes = self.fields.object(action, "kubernetesApiCallAction", at)
        if kubernetes is not None:
            path = f"{at}.kubernetesApiCallAction"
            found += self.remote_ips(kubernetes, path)
            found += [
                (IocType.IP, value, where)
                for where, value in self.fields.texts(kubernetes, "sourceIPs", path)
            ]
        found += self.threat_intelligence_hashes(service)
        found += self.malware_scan_hashes(service)
        found += self.malware_threat_hashes(service)
        found += self.s3_object_hashes(resource)
        found += self.runtime_hashes(service)
        found += self.attack_sequence_candidates(service)
        return found

    def remote_ips(self, parent: Mapping[str, Any], at: str) -> list[tuple[IocType, str, str]]:
        """The IPv4 and IPv6 addresses of `remoteIpDetails` under `parent`."""
        details = self.fields.object(parent, "remoteIpDetails", at)
        if details is None:
            return []
        path = f"{at}.remoteIpDetails"
        return [
            *self.candidates(IocType.IP, details, "ipAddressV4", path),
            *self.candidates(IocType.IP, details, "ipAddressV6", path),
        ]

    def threat_intelligence_hashes(self, service: Mapping[str, Any]) -> list[tuple[IocType, str, str]]:
        """File hashes a threat list matched, from `service.evidence`."""
        evidence = self.fields.object(service, "evidence", "service")
        if evidence is None:
            return []
        found: list[tuple[IocType, str, str]] = []
        for path, detail in self.fields.objects(evidence, "threatIntelligenceDetails", "service.evidence"):
            found += self.candidates(IocType.FILE, detail, "threatFileSha256", path)
        return found

    def malware_scan_hashes(self, service: Mapping[str, Any]) -> list[tuple[IocType, str, str]]:
        """File hashes of an EBS malware scan: `ebsVolumeScanDetails...threatNames[].filePaths[].hash`."""
        at = "service.ebsVolumeScanDetails"
        scan = self.fields.object(service, "ebsVolumeScanDetails", "service")
        detections = self.fields.object(scan, "scanDetections", at) if scan else None
        by_name = (
            self.fields.object(detections, "threatDetectedByName", f"{at}.scanDetections")
            if detections
            else None
        )
        if by_name is None:
            return []
        found: list[tuple[IocType, str, str]] = []
        names_at = f"{at}.scanDetections.threatDetectedByName"
        for threat_path, threat in self.fields.objects(by_name, "threatNames", names_at):
            for file_path, file in self.fields.objects(threat, "filePaths", threat_path):
                found += self.candidates(IocType.FILE, file, "hash", file_path)
        return found

    def malware_threat_hashes(self, service: Mapping[str, Any]) -> list[tuple[IocType, str, str]]:
        """File hashes of the newer Malware Protection findings (for S3 with a detector, on-demand and
        backup scans): `service.malwareScanDetails.threats[]`, its `itemPaths[]` and `itemDetails[]`."""
        at = "service.malwareScanDetails"
        scan = self.fields.object(service, "malwareScanDetails", "service")
        if scan is None:
            return []
        found: list[tuple[IocType, str, str]] = []
        for threat_path, threat in self.fields.objects(scan, "threats", at):
            found += self.candidates(IocType.FILE, threat, "hash", threat_path)
            for kind in ("itemPaths", "itemDetails"):
                for item_path, item in self.fields.objects(threat, kind, threat_path):
                    found += self.candidates(IocType.FILE, item, "hash", item_path)
        return found

    def runtime_hashes(self, service: Mapping[str, Any]) -> list[tuple[IocType, str, str]]:
        """Hashes of Runtime Monitoring: the process's executable, and in `context` the processes that
        modified or were targeted and the kernel module loaded. GuardDuty documents no hash for the
        process's `lineage[]` (only its executable paths), so none is read there."""
        at = "service.runtimeDetails"
        runtime = self.fields.object(service, "runtimeDetails", "service")
        if runtime is None:
            return []
        found: list[tuple[IocType, str, str]] = []
        process = self.fields.object(runtime, "process", at)
        if process is not None:
            found += self.candidates(IocType.FILE, process, "executableSha256", f"{at}.process")
        context = self.fields.object(runtime, "context", at)
        if context is not None:
            context_at = f"{at}.context"
            for kind in ("modifyingProcess", "targetProcess"):
                other = self.fields.object(context, kind, context_at)
                if other is not None:
                    found += self.candidates(IocType.FILE, other, "executableSha256", f"{context_at}.{kind}")
            found += self.candidates(IocType.FILE, context, "moduleSha256", context_at)
        return found

    def attack_sequence_candidates(self, service: Mapping[str, Any]) -> list[tuple[IocType, str, str]]:
        """An attack sequence's network endpoints (IP and domain) and its actors' process hashes:
        `service.detection.sequence`."""
        detection = self.fields.object(service, "detection", "service")
        sequence = self.fields.object(detection, "sequence", "service.detection") if detection else None
        if sequence is None:
            return []
        at = "service.detection.sequence"
        found: list[tuple[IocType, str, str]] = []
        for path, endpoint in self.fields.objects(sequence, "endpoints", at):
            found += self.candidates(IocType.IP, endpoint, "ip", path)
            found += self.candidates(IocType.DOMAIN, endpoint, "domain", path)
        for path, actor in self.fields.objects(sequence, "actors", at):
            process = self.fields.object(actor, "process", path)
            if process is not None:
                found += self.candidates(IocType.FILE, process, "sha256", f"{path}.process")
        return found

    def s3_object_hashes(self, resource: Mapping[str, Any]) -> list[tuple[IocType, str, str]]:
        """Hashes of the S3 objects a Malware Protection finding names."""
        found: list[tuple[IocType, str, str]] = []
        for bucket_path, bucket in self.fields.objects(resource, "s3BucketDetails", "resource"):
            for object_path, item in self.fields.objects(bucket, "s3ObjectDetails", bucket_path):
                found += self.candidates(IocType.FILE, item, "hash", object_path)
        return found

    def candidates(
        self, ioc_type: IocType, parent: Mapping[str, Any], key: str, at: str
    ) -> list[tuple[IocType, str, str]]:
        """The one candidate at `parent[key]`, if GuardDuty filled it in."""
        value = self.fields.text(parent, key, at)
        return [(ioc_type, value, _join(at, key))] if value else []

    # --- typed access that names the field at fault ---------------------------------------------

    def where(self, path: str) -> str:
        """A finding path as the sender's document spells it."""
        return self.fields.where(path)

    def required_object(self, parent: Mapping[str, Any], key: str, at: str) -> dict[str, Any]:
        """`parent[key]` as an object, or InvalidAlertError naming it."""
        return self.fields.object(parent, key, at, required=True) or _never()

    def required_text(self, parent: Mapping[str, Any], key: str, at: str) -> str:
        """`parent[key]` as a non-empty string, or InvalidAlertError naming it."""
        return self.fields.text(parent, key, at, required=True) or _never()


def _never() -> Any:
    """Unreachable: the `required=True` lookup before it raises instead of returning None."""
    raise AssertionError("a required lookup returned None")


def _is_pascal_case(finding: Mapping[str, Any]) -> bool:
    return "Id" in finding or "SchemaVersion" in finding or "Type" in finding


def _camel_case(value: Any) -> Any:
    """The same document with every object key's first letter lower-cased, as GuardDuty's API spells it."""
    if isinstance(value, dict):
        return {_camel_key(key): _camel_case(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_camel_case(item) for item in value]
    return value


def _camel_key(key: Any) -> Any:
    if not isinstance(key, str):
        return key
    return _CAMEL_EXCEPTIONS.get(key, key[:1].lower() + key[1:])


def _pascal_segment(segment: str) -> str:
    name, bracket, index = segment.partition("[")
    name = _PASCAL_EXCEPTIONS.get(name, name[:1].upper() + name[1:])
    return name + bracket + index
