"""Security Hub findings (ASFF) as normalised Alerts.

Understood deliveries: the EventBridge event `Security Hub Findings - Imported` (source
`aws.securityhub`, one Alert per finding of `detail.findings[]`), `aws securityhub get-findings` output
(`Findings[]`) and one bare ASFF finding.

A finding whose `Workflow.Status` is SUPPRESSED or RESOLVED, or whose `RecordState` is ARCHIVED, is
acknowledged and gives no Alert: the record is accepted and makes no case. With
`skip_guardduty=True`, findings that GuardDuty sent through Security Hub give no Alert either, for
deployments where GuardDuty also reaches the queue directly (one finding must not make two cases).

IOCs come from `ThreatIntelIndicators`, `Network`, `Threats[].FilePaths[].Hash` and, for findings from
GuardDuty, the flattened GuardDuty fields in `ProductFields`. ASFF's `Process` (name, path, pids) and
`Malware` (name, path, type, state) carry no hash, address or domain, so they give no IOC.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from vtriage.errors import InvalidAlertError
from vtriage.intake.fields import Candidate, Fields, json_kind, shown
from vtriage.models import Alert, IocType, Resource, ResourceType, Severity

SOURCE = "securityhub"
EVENT_SOURCE = "aws.securityhub"
EVENT_DETAIL_TYPE = "Security Hub Findings - Imported"

ACKNOWLEDGED_WORKFLOW = frozenset({"SUPPRESSED", "RESOLVED"})
ARCHIVED = "ARCHIVED"

# ASFF's labels, at the bottom of their Normalized band divided by ten (GuardDuty's 0-10 scale).
_LABEL_SCORES = {"INFORMATIONAL": 0.0, "LOW": 1.0, "MEDIUM": 4.0, "HIGH": 7.0, "CRITICAL": 9.0}
_THREAT_INTEL_TYPES = {
    "DOMAIN": IocType.DOMAIN,
    "IPV4_ADDRESS": IocType.IP,
    "IPV6_ADDRESS": IocType.IP,
    "URL": IocType.URL,
    "HASH_MD5": IocType.FILE,
    "HASH_SHA1": IocType.FILE,
    "HASH_SHA256": IocType.FILE,
}
_NETWORK_FIELDS = (
    ("SourceIpV4", IocType.IP),
    ("SourceIpV6", IocType.IP),
    ("DestinationIpV4", IocType.IP),
    ("DestinationIpV6", IocType.IP),
    ("SourceDomain", IocType.DOMAIN),
    ("DestinationDomain", IocType.DOMAIN),
)
_ARN_REGION = re.compile(r"arn:aws[a-z-]*:securityhub:(?P<region>[a-z0-9-]+):")
# GuardDuty's fields in ProductFields: `aws/guardduty/service/...` (older findings: without the prefix),
# list items written `.0_` or `:0`. Matched on the end of the key, once the list indices are gone.
_PRODUCT_FIELD_INDEX = re.compile(r"(?:\.[0-9]+_|:[0-9]+)(?=/|$)")
_GUARDDUTY_PRODUCT_FIELDS: tuple[tuple[str, IocType], ...] = (
    ("remoteIpDetails/ipAddressV4", IocType.IP),
    ("remoteIpDetails/ipAddressV6", IocType.IP),
    ("dnsRequestAction/domain", IocType.DOMAIN),
    ("domainDetails/domain", IocType.DOMAIN),
    ("threatIntelligenceDetails/threatFileSha256", IocType.FILE),
    ("executableSha256", IocType.FILE),
    ("filePaths/hash", IocType.FILE),
)
_SHA512_LENGTH = 128


def is_event(document: Mapping[str, Any]) -> bool:
    """Whether the document is an EventBridge event from Security Hub."""
    return document.get("source") == EVENT_SOURCE


def is_finding(document: Mapping[str, Any]) -> bool:
    """Whether the document is one ASFF finding."""
    return "ProductArn" in document and "AwsAccountId" in document


def is_get_findings_output(document: Mapping[str, Any]) -> bool:
    """Whether the document is `aws securityhub get-findings` output (its first finding is ASFF)."""
    findings = document.get("Findings")
    return (
        isinstance(findings, list)
        and bool(findings)
        and isinstance(findings[0], dict)
        and is_finding(findings[0])
    )


def alerts_from_event(event: Mapping[str, Any], *, skip_guardduty: bool = False) -> list[Alert]:
    """The Alerts of a `Security Hub Findings - Imported` event: one per finding still to triage."""
    detail = event.get("detail")
    if not isinstance(detail, dict):
        raise InvalidAlertError(
            "missing" if detail is None else f"expected an object, got {json_kind(detail)}", field="detail"
        )
    envelope = {key: event.get(key) for key in ("account", "region")}
    return _alerts(detail.get("findings"), "detail.findings", envelope, skip_guardduty=skip_guardduty)


def alerts_from_get_findings(output: Mapping[str, Any], *, skip_guardduty: bool = False) -> list[Alert]:
    """The Alerts of `aws securityhub get-findings` output."""
    return _alerts(output.get("Findings"), "Findings", {}, skip_guardduty=skip_guardduty)


def alerts_from_finding(finding: Mapping[str, Any], *, skip_guardduty: bool = False) -> list[Alert]:
    """The Alert of one bare ASFF finding; none when it is acknowledged or skipped."""
    alert = _FindingReader(finding, prefix="", envelope={}).alert(skip_guardduty=skip_guardduty)
    return [alert] if alert else []


def is_guardduty_finding(finding: Mapping[str, Any]) -> bool:
    """Whether GuardDuty sent this finding to Security Hub."""
    product_arn = finding.get("ProductArn")
    return finding.get("ProductName") == "GuardDuty" or (
        isinstance(product_arn, str) and "product/aws/guardduty" in product_arn
    )


def _alerts(findings: Any, at: str, envelope: Mapping[str, Any], *, skip_guardduty: bool) -> list[Alert]:
    if findings is None:
        raise InvalidAlertError("missing", field=at)
    if not isinstance(findings, list):
        raise InvalidAlertError(f"expected a list of findings, got {json_kind(findings)}", field=at)
    if not findings:
        raise InvalidAlertError("empty: no finding to triage", field=at)
    alerts = []
    for index, finding in enumerate(findings):
        where = f"{at}[{index}]"
        if not isinstance(finding, dict):
            raise InvalidAlertError(f"expected a finding object, got {json_kind(finding)}", field=where)
        alert = _FindingReader(finding, prefix=where + ".", envelope=envelope).alert(
            skip_guardduty=skip_guardduty
        )
        if alert is not None:
            alerts.append(alert)
    return alerts


class _FindingReader(Fields):
    """Reads one ASFF finding."""

    def __init__(self, finding: Mapping[str, Any], *, prefix: str, envelope: Mapping[str, Any]) -> None:
        super().__init__(prefix)
        self.finding = finding
        self.envelope = envelope

    def alert(self, *, skip_guardduty: bool) -> Alert | None:
        """The normalised Alert; None when the finding is acknowledged or a skipped GuardDuty one."""
        finding = self.finding
        finding_id = self.text(finding, "Id", "", required=True) or ""
        if self.acknowledged() or (skip_guardduty and is_guardduty_finding(finding)):
            return None
        created_at = self.timestamp(finding, "CreatedAt", "", required=True) or _never()
        updated_at = self.timestamp(finding, "UpdatedAt", "", required=True) or _never()
        resources = self.resources()
        own_addresses = frozenset(address for resource in resources for address in resource.addresses)
        iocs = self.iocs(self.ioc_candidates(), own_addresses)
        return Alert(
            id=finding_id,
            source=SOURCE,
            type=self.finding_type(),
            title=self.text(finding, "Title", "") or self.finding_type(),
            severity=self.severity(),
            created_at=created_at,
            updated_at=updated_at,
            version=updated_at.isoformat(),
            account=self.account(finding.get("AwsAccountId") or self.envelope.get("account"), "AwsAccountId"),
            region=self.finding_region(),
            resources=resources,
            iocs=tuple(iocs.values()),
        )

    def acknowledged(self) -> bool:
        """SUPPRESSED or RESOLVED in the workflow, or ARCHIVED: someone has already dealt with it."""
        workflow = self.object(self.finding, "Workflow", "")
        status = self.text(workflow, "Status", "Workflow") if workflow else None
        legacy_state = self.text(self.finding, "WorkflowState", "")
        record_state = self.text(self.finding, "RecordState", "")
        return (
            (status or "").upper() in ACKNOWLEDGED_WORKFLOW
            or (status is None and (legacy_state or "").upper() == "RESOLVED")
            or (record_state or "").upper() == ARCHIVED
        )

    def finding_type(self) -> str:
        """The first of `Types`, else the generator."""
        types = self.texts(self.finding, "Types", "")
        if types:
            return types[0][1]
        return self.text(self.finding, "GeneratorId", "", required=True) or ""

    def severity(self) -> Severity:
        """`Severity.Normalized` (0-100) divided by ten, else `Severity.Label`."""
        severity = self.object(self.finding, "Severity", "", required=True) or {}
        normalized = severity.get("Normalized")
        if normalized is not None:
            if (
                isinstance(normalized, bool)
                or not isinstance(normalized, int | float)
                or not 0 <= normalized <= 100
            ):
                raise InvalidAlertError(
                    f"expected a number from 0 to 100, got {shown(normalized)}",
                    field=self.where("Severity.Normalized"),
                )
            return Severity(score=round(float(normalized) / 10, 1))
        label = self.text(severity, "Label", "Severity", required=True) or ""
        if label.upper() not in _LABEL_SCORES:
            raise InvalidAlertError(
                f"expected one of {', '.join(_LABEL_SCORES)}, got {shown(label)}",
                field=self.where("Severity.Label"),
            )
        return Severity(score=_LABEL_SCORES[label.upper()])

    def finding_region(self) -> str:
        """The finding's `Region`, else the event's, else the Region in `ProductArn`."""
        value = self.finding.get("Region") or self.envelope.get("region")
        if value is None:
            product_arn = self.finding.get("ProductArn")
            match = _ARN_REGION.match(product_arn) if isinstance(product_arn, str) else None
            value = match["region"] if match else None
        if value is None:
            raise InvalidAlertError("missing", field=self.where("Region"))
        return self.region(value, "Region")

    # --- resources ------------------------------------------------------------------------------

    def resources(self) -> tuple[Resource, ...]:
        """The instances, access keys, buckets and objects of `Resources[]`."""
        found: list[Resource] = []
        for path, resource in self.objects(self.finding, "Resources", ""):
            resource_type = self.text(resource, "Type", path)
            details = self.object(resource, "Details", path) or {}
            resource_id = self.text(resource, "Id", path) or ""
            if resource_type == "AwsEc2Instance":
                found.append(self.instance(resource_id, details, path))
            elif resource_type == "AwsIamAccessKey":
                access_key = self.access_key(resource_id, details, path)
                if access_key is not None:
                    found.append(access_key)
            elif resource_type == "AwsS3Bucket" and resource_id:
                name = _after(resource_id, "arn:aws:s3:::")
                found.append(Resource(type=ResourceType.S3_BUCKET, id=name, bucket=name))
            elif resource_type == "AwsS3Object" and resource_id:
                bucket, _, key = _after(resource_id, "arn:aws:s3:::").partition("/")
                if key:
                    found.append(
                        Resource(type=ResourceType.S3_OBJECT, id=f"{bucket}/{key}", bucket=bucket, key=key)
                    )
        return tuple(found)

    def instance(self, resource_id: str, details: Mapping[str, Any], path: str) -> Resource:
        """An EC2 instance: the id from its ARN, its VPC, network interfaces and own addresses."""
        instance_id = resource_id.rpartition("/")[2]
        if not instance_id:
            raise InvalidAlertError("missing", field=self.where(f"{path}.Id"))
        at = f"{path}.Details.AwsEc2Instance"
        instance = self.object(details, "AwsEc2Instance", f"{path}.Details") or {}
        addresses = [address for _, address in self.texts(instance, "IpV4Addresses", at)]
        addresses += [address for _, address in self.texts(instance, "IpV6Addresses", at)]
        interfaces = [
            interface_id
            for interface_path, interface in self.objects(instance, "NetworkInterfaces", at)
            if (interface_id := self.text(interface, "NetworkInterfaceId", interface_path))
        ]
        return Resource(
            type=ResourceType.INSTANCE,
            id=instance_id,
            vpc_id=self.text(instance, "VpcId", at),
            network_interface_ids=tuple(dict.fromkeys(interfaces)),
            addresses=tuple(dict.fromkeys(addresses)),
        )

    def access_key(self, resource_id: str, details: Mapping[str, Any], path: str) -> Resource | None:
        """An IAM access key: `AccessKeyId`, else the id GuardDuty writes as `AWS::IAM::AccessKey:<id>`."""
        at = f"{path}.Details.AwsIamAccessKey"
        key = self.object(details, "AwsIamAccessKey", f"{path}.Details") or {}
        key_id = self.text(key, "AccessKeyId", at) or _after(resource_id, "AWS::IAM::AccessKey:")
        if not key_id or key_id.startswith("arn:"):
            return None
        user = self.text(key, "PrincipalName", at) or self.text(key, "UserName", at)
        return Resource(type=ResourceType.ACCESS_KEY, id=key_id, user_name=user)

    # --- IOCs -----------------------------------------------------------------------------------

    def ioc_candidates(self) -> list[Candidate]:
        """(type, raw value, path) of every place an indicator may be."""
        finding = self.finding
        found: list[Candidate] = []
        for path, indicator in self.objects(finding, "ThreatIntelIndicators", ""):
            ioc_type = _THREAT_INTEL_TYPES.get((self.text(indicator, "Type", path) or "").upper())
            value = self.text(indicator, "Value", path)
            if ioc_type is not None and value:
                found.append((ioc_type, value, f"{path}.Value"))
        network = self.object(finding, "Network", "")
        if network is not None:
            for key, ioc_type in _NETWORK_FIELDS:
                value = self.text(network, key, "Network")
                if value:
                    found.append((ioc_type, value, f"Network.{key}"))
        for threat_path, threat in self.objects(finding, "Threats", ""):
            for file_path, file in self.objects(threat, "FilePaths", threat_path):
                value = self.text(file, "Hash", file_path)
                # The algorithm is not stated: a SHA-512 is valid here, but VirusTotal knows no SHA-512.
                if value and len(value) != _SHA512_LENGTH:
                    found.append((IocType.FILE, value, f"{file_path}.Hash"))
        found += self.product_field_candidates()
        return found

    def product_field_candidates(self) -> list[Candidate]:
        """GuardDuty's remote addresses, domains and hashes, flattened into `ProductFields`."""
        fields = self.object(self.finding, "ProductFields", "")
        if not fields:
            return []
        found: list[Candidate] = []
        for key in fields:
            if not isinstance(key, str) or "localIpDetails" in key:
                continue
            plain = _PRODUCT_FIELD_INDEX.sub("", key)
            for ending, ioc_type in _GUARDDUTY_PRODUCT_FIELDS:
                if plain.endswith(ending):
                    value = self.text(fields, key, "ProductFields")
                    if value:
                        found.append((ioc_type, value, f"ProductFields.{key[:200]}"))
                    break
        return found


def _never() -> Any:
    """Unreachable: the `required=True` lookup before it raises instead of returning None."""
    raise AssertionError("a required lookup returned None")


def _after(text: str, prefix: str) -> str:
    return text[len(prefix) :] if text.startswith(prefix) else text
