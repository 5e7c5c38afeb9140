"""Security Hub findings (ASFF) as normalised Alerts, one finding at a time.

Understood deliveries: the EventBridge events `Security Hub Findings - Imported` and `Security Hub
Findings - Custom Action` (source `aws.securityhub`, the findings in `detail.findings[]`; a custom action
adds `actionName` and `actionDescription`), the `detail` of such an event alone (`{"findings": [...]}`, as
an EventBridge target with InputPath `$.detail` receives it), `aws securityhub get-findings` output
(`Findings[]`), one bare ASFF finding and a JSON array of them. Each finding of a document is read on its
own: one that cannot be read is refused alone. A document is ASFF by ASFF's own marks
(`sources.is_asff_finding`), so that a finding missing an attribute (its `AwsAccountId`) is still read
here, the missing attribute noted.

A finding whose `Workflow.Status` is SUPPRESSED or RESOLVED, whose `RecordState` is ARCHIVED, or whose
`Compliance.Status` is PASSED (a passed check) is acknowledged: it makes no case. With
`skip_guardduty=True`, findings that GuardDuty sent through Security Hub are acknowledged too, for
deployments where GuardDuty also reaches the queue directly (one finding must not make two cases).

Severity is read as AWS's user guide prefers: `Severity.Label` first (with `Normalized` placing the
finding inside the label's band when the two agree), else `Normalized`, else the deprecated `Product`
(or `Original`), noted as guessed; when `Severity` is missing or cannot be read, the same from
`FindingProviderFields.Severity`, where a provider's BatchImportFindings puts it. The type likewise:
`Types`, else `FindingProviderFields.Types`, else `GeneratorId`.

A resource vtriage could act on (an instance, an access key, a bucket, an object) must live where the
finding does: one whose ARN or `Resources[].Region` names another account or Region keeps the alert (it
is triaged and ticketed) but makes it not actionable, with the resource's place in the reason. The id an
ARN ends with could name a resource of this account too.

IOCs come from `ThreatIntelIndicators` (a hash's algorithm is the one its `Type` declares),
`Network`, `Threats[].FilePaths[].Hash` and, for findings from GuardDuty, the flattened GuardDuty fields
in `ProductFields`. ASFF's `Process` (name, path, pids) and `Malware` (name, path, type, state) carry
no hash, address or domain, so they give no IOC.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from vtriage.display import escaped, json_kind, shown
from vtriage.errors import InvalidAlertError
from vtriage.intake import sources
from vtriage.intake.fields import (
    GUARDDUTY_COPY_REASON,
    GUESSED_SEVERITY,
    UNKNOWN,
    UNKNOWN_TIME,
    UNREADABLE_SEVERITY,
    UNREADABLE_SEVERITY_NOTE,
    Candidate,
    Envelope,
    Fields,
    declared_algorithm,
    embedded_flag,
    event_detail,
    is_true,
    own_values,
    raw_version,
)
from vtriage.intake.outcomes import Acknowledged, Finding, peek_id
from vtriage.models import Alert, IocType, Resource, ResourceType, Severity

ACKNOWLEDGED_WORKFLOW = frozenset({"SUPPRESSED", "RESOLVED"})
ARCHIVED = "ARCHIVED"
PASSED = "PASSED"

# ASFF's labels, at the bottom of their Normalized band divided by ten (GuardDuty's 0-10 scale).
INFORMATIONAL = "INFORMATIONAL"
_LABEL_SCORES = {INFORMATIONAL: 0.0, "LOW": 1.0, "MEDIUM": 4.0, "HIGH": 7.0, "CRITICAL": 9.0}
_THREAT_INTEL_TYPES: dict[str, tuple[IocType, str | None]] = {
    "DOMAIN": (IocType.DOMAIN, None),
    "IPV4_ADDRESS": (IocType.IP, None),
    "IPV6_ADDRESS": (IocType.IP, None),
    "URL": (IocType.URL, None),
    "HASH_MD5": (IocType.FILE, "md5"),
    "HASH_SHA1": (IocType.FILE, "sha1"),
    "HASH_SHA256": (IocType.FILE, "sha256"),
    "HASH_SHA512": (IocType.FILE, "sha512"),
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
# An ARN as AWS writes it: `arn:partition:service:region:account-id:resource` (Region and account empty
# for S3, Region empty for IAM).
_ARN = re.compile(
    r"arn:(?P<partition>[^:]*):(?P<service>[^:]*):(?P<region>[^:]*):(?P<account>[^:]*):(?P<resource>.+)",
    re.DOTALL,
)
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
# GuardDuty's sample flag as Security Hub flattens it into ProductFields: `.../additionalInfo/sample`,
# `.../additionalInfo/value` or, in 2018's findings, `additionalInfo` itself holding the JSON object.
_SAMPLE_PRODUCT_FIELDS = ("additionalInfo/sample", "additionalInfo/value", "additionalInfo")
# The resource types read as targets of a response: each must live where the finding does.
_TARGET_TYPES = frozenset({"AwsEc2Instance", "AwsIamAccessKey", "AwsS3Bucket", "AwsS3Object"})
# Where ASFF's `Resources[].Details` names a resource no response acts on, by the resource's `Type` (the
# Security Hub API Reference's AwsLambdaFunctionDetails, AwsEksClusterDetails, ...): its short name.
_SUBJECT_NAMES = {
    "AwsLambdaFunction": "FunctionName",
    "AwsEksCluster": "Name",
    "AwsEcsCluster": "ClusterName",
    "AwsRdsDbInstance": "DbInstanceIdentifier",
    "Container": "Name",
}
# A key of ProductFields longer than this is no GuardDuty field; only its start is named.
_MAX_PRODUCT_FIELD_KEY = 200
# A severity a sender wrote as a string of digits ("70").
_NUMBER_TEXT = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3})?")


def is_guardduty_finding(finding: Mapping[str, Any]) -> bool:
    """Whether GuardDuty sent this finding to Security Hub."""
    product_arn = finding.get("ProductArn")
    return finding.get("ProductName") == "GuardDuty" or (
        isinstance(product_arn, str) and "product/aws/guardduty" in product_arn
    )


def findings_of_event(
    event: Mapping[str, Any], *, skip_guardduty: bool = False, ignore_samples: bool = False
) -> list[Finding]:
    """The findings of a `Security Hub Findings - Imported` or `- Custom Action` event, each on its own."""
    detail = event_detail(event)
    envelope = Envelope.of(event)
    return _listed(
        detail.get("findings"),
        "detail.findings",
        envelope,
        skip_guardduty=skip_guardduty,
        ignore_samples=ignore_samples,
    )


def findings_of_get_findings(
    output: Mapping[str, Any], *, skip_guardduty: bool = False, ignore_samples: bool = False
) -> list[Finding]:
    """The findings of a page of ASFF findings, each on its own: `aws securityhub get-findings` output
    (`Findings`), or the `detail` of a Security Hub event delivered alone (`findings`; see
    `sources.securityhub_findings_key`)."""
    key = sources.securityhub_findings_key(output) or "Findings"
    # A detail alone has no account, Region nor time around its findings; a custom action's still names
    # the action.
    envelope = Envelope.of({"detail": output}) if key == "findings" else Envelope()
    return _listed(
        output.get(key), key, envelope, skip_guardduty=skip_guardduty, ignore_samples=ignore_samples
    )


def finding_of_bare(
    finding: Mapping[str, Any], *, where: str = "", skip_guardduty: bool = False, ignore_samples: bool = False
) -> Finding:
    """One bare ASFF finding, at `where` in its document."""
    return _finding(finding, where, Envelope(), skip_guardduty=skip_guardduty, ignore_samples=ignore_samples)


def _listed(
    findings: Any, at: str, envelope: Envelope, *, skip_guardduty: bool, ignore_samples: bool
) -> list[Finding]:
    if findings is None:
        raise InvalidAlertError("missing", field=at)
    if not isinstance(findings, list):
        raise InvalidAlertError(f"expected a list of findings, got {json_kind(findings)}", field=at)
    if not findings:
        raise InvalidAlertError("empty: no finding to triage", field=at)
    return [
        _finding(
            finding, f"{at}[{index}]", envelope, skip_guardduty=skip_guardduty, ignore_samples=ignore_samples
        )
        for index, finding in enumerate(findings)
    ]


def _finding(
    finding: Any, where: str, envelope: Envelope, *, skip_guardduty: bool, ignore_samples: bool
) -> Finding:
    def read() -> Alert | Acknowledged:
        if not isinstance(finding, dict):
            raise InvalidAlertError(
                f"expected a finding object, got {json_kind(finding)}", field=where or None
            )
        reader = _FindingReader(finding, prefix=where + "." if where else "", envelope=envelope)
        return reader.outcome(skip_guardduty=skip_guardduty, ignore_samples=ignore_samples)

    alert_id = peek_id(finding.get("Id")) if isinstance(finding, dict) else None
    return Finding(where=where, read=read, content=finding, alert_id=alert_id)


class _FindingReader(Fields):
    """Reads one ASFF finding."""

    def __init__(self, finding: Mapping[str, Any], *, prefix: str, envelope: Envelope) -> None:
        super().__init__(prefix)
        self.finding = finding
        self.envelope = envelope
        # (path, Id, Region) of each resource read as a target: where each says it lives.
        self.target_places: list[tuple[str, str, Any]] = []

    def outcome(self, *, skip_guardduty: bool, ignore_samples: bool) -> Alert | Acknowledged:
        """The normalised Alert, or Acknowledged (dealt with already, a skipped GuardDuty finding, an
        ignored sample). Raises InvalidAlertError only when the finding has no `Id` and is not
        acknowledged."""
        finding = self.finding
        acknowledged = self.acknowledged()
        if acknowledged is not None:
            # Someone has dealt with it: ignored, even when it could not be identified.
            return Acknowledged(acknowledged, peek_id(finding.get("Id")))
        finding_id = self.required_text(finding, "Id", "")
        if skip_guardduty and is_guardduty_finding(finding):
            return Acknowledged(GUARDDUTY_COPY_REASON, finding_id)
        sample = self.is_sample()
        if sample and ignore_samples:
            return Acknowledged(
                f"{self.where('Sample')}: a sample finding; sample findings are ignored here", finding_id
            )
        if sample:
            self.note(
                "a sample finding (Sample, or GuardDuty's additionalInfo.sample): triaged, never acted on"
            )
            self.not_actionable.append("a sample finding")
        if self.envelope.custom_action is not None:
            self.note(f"sent by the Security Hub custom action '{escaped(self.envelope.custom_action, 64)}'")
        instead = "the other of CreatedAt and UpdatedAt, else the event's time, stands in"
        updated_at = self.moment(finding, "UpdatedAt", "", instead=instead, required=True)
        created_at = self.moment(finding, "CreatedAt", "", instead=instead, required=True)
        fallback = updated_at or created_at or self.envelope_time(self.envelope) or UNKNOWN_TIME
        version = updated_at.isoformat() if updated_at is not None else self.unread_version(fallback)
        resources = self.resources()
        own = own_values(address for resource in resources for address in resource.addresses)
        iocs = self.iocs(self.ioc_candidates(), own)
        finding_type = self.finding_type()
        severity = self.severity()
        account = self.account_id(
            [(self.where("AwsAccountId"), finding.get("AwsAccountId")), ("account", self.envelope.account)]
        )
        region = self.finding_region()
        self.targets_elsewhere(account, region)
        subjects = self.alert_subjects()
        return Alert(
            id=finding_id,
            source=sources.SECURITYHUB,
            type=finding_type,
            title=self.loose_text(finding, "Title") or finding_type,
            severity=severity,
            created_at=created_at or fallback,
            updated_at=updated_at or fallback,
            version=version,
            account=account,
            region=region,
            resources=resources,
            subjects=subjects,
            iocs=tuple(iocs.values()),
            notes=self.alert_notes(),
            not_actionable=self.alert_not_actionable(),
            sample=sample,
            product=self.product_arn(),
        )

    def product_arn(self) -> str:
        """The finding's `ProductArn` as written ('' when it is no text): which product generated it."""
        product_arn = self.finding.get("ProductArn")
        return product_arn if isinstance(product_arn, str) else ""

    def acknowledged(self) -> str | None:
        """Why someone has dealt with the finding already (the field that says so), or None."""
        workflow = self.loose_object(self.finding, "Workflow")
        status = (self.loose_text(workflow, "Status") or "").upper()
        if status in ACKNOWLEDGED_WORKFLOW:
            return f"{self.where('Workflow.Status')} is {status}"
        legacy_state = (self.loose_text(self.finding, "WorkflowState") or "").upper()
        if not status and legacy_state == "RESOLVED":
            return f"{self.where('WorkflowState')} is RESOLVED"
        record_state = (self.loose_text(self.finding, "RecordState") or "").upper()
        if record_state == ARCHIVED:
            return f"{self.where('RecordState')} is ARCHIVED"
        compliance = self.loose_object(self.finding, "Compliance")
        if (self.loose_text(compliance, "Status") or "").upper() == PASSED:
            return f"a passed check: {self.where('Compliance.Status')} is PASSED"
        return None

    def is_sample(self) -> bool:
        """ASFF's `Sample`, or GuardDuty's sample flag flattened into `ProductFields`."""
        if is_true(self.finding.get("Sample")):
            return True
        fields = self.loose_object(self.finding, "ProductFields")
        for key, value in fields.items():
            if not isinstance(key, str) or not _names_field(key, _SAMPLE_PRODUCT_FIELDS):
                continue
            if is_true(value) or embedded_flag(value, "sample"):
                return True
        return False

    def unread_version(self, fallback: datetime) -> str:
        """A version when `UpdatedAt` does not read: its raw text, else the time standing in for it."""
        raw = raw_version(self.finding.get("UpdatedAt"))
        if raw is not None:
            return raw
        return fallback.isoformat() if fallback != UNKNOWN_TIME else "unversioned"

    def finding_type(self) -> str:
        """The first of `Types`, else of `FindingProviderFields.Types` (where a provider's
        BatchImportFindings puts them), else the generator; a stand-in, noted, when none is there."""
        provider = self.loose_object(self.finding, "FindingProviderFields")
        for types in (self.finding.get("Types"), provider.get("Types")):
            if isinstance(types, list):
                for value in types:
                    if isinstance(value, str) and value:
                        return value
        generator = self.loose_text(self.finding, "GeneratorId")
        if generator:
            return generator
        self.malformed(self.where("Types"), "missing, and no GeneratorId", "'unknown' stands in")
        return "unknown"

    def severity(self) -> Severity:
        """`Severity`, else `FindingProviderFields.Severity` (where a provider's BatchImportFindings puts
        it, and from which Security Hub sets `Severity`): the first `Label` or `Normalized` of either,
        else the product's own score (`Product`, `Original`), guessed; critical, noted, when none can be
        read."""
        provider = self.loose_object(self.finding, "FindingProviderFields")
        places = [("Severity", self.finding.get("Severity"))]
        places.append(("FindingProviderFields.Severity", provider.get("Severity")))
        objects: list[tuple[str, dict[str, Any]]] = []
        for path, severity in places:
            if isinstance(severity, dict):
                objects.append((self.where(path), severity))
            elif severity is not None:
                self.malformed(self.where(path), f"expected an object, got {json_kind(severity)}", "not read")
        for field, severity in objects:
            score = self.documented_severity(severity, field)
            if score is not None:
                return score
        for field, severity in objects:
            score = self.product_severity(severity, field)
            if score is not None:
                return score
        if all(severity is None for _, severity in places):
            return self.unreadable_severity(
                self.where("Severity"), "missing, and no FindingProviderFields.Severity"
            )
        return self.unreadable_severity(
            self.where("Severity"), "no Label, Normalized, Product or Original to read"
        )

    def documented_severity(self, severity: Mapping[str, Any], field: str) -> Severity | None:
        """`Label` (placed in its band by `Normalized` when they agree), else `Normalized` / 10; None when
        neither reads (what is malformed is noted)."""
        label = severity.get("Label")
        normalized = self.normalized(severity.get("Normalized"), f"{field}.Normalized")
        if isinstance(label, str) and label.upper() in _LABEL_SCORES:
            score = _LABEL_SCORES[label.upper()]
            if normalized is not None and _label_of_normalized(normalized) == label.upper():
                score = round(normalized / 10, 1)
            elif normalized is None and severity.get("Normalized") is not None:
                self.note(
                    f"{field}.Normalized: expected a number from 0 to 100, got"
                    f" {shown(severity.get('Normalized'))}; not read: {field}.Label gives the severity"
                )
            return Severity(score=score, informational=label.upper() == INFORMATIONAL)
        if label is not None:
            self.malformed(
                f"{field}.Label",
                f"expected one of {', '.join(_LABEL_SCORES)}, got {shown(label)}",
                "not read",
            )
        if normalized is not None:
            # Security Hub labels a Normalized 0 INFORMATIONAL.
            informational = _label_of_normalized(normalized) == INFORMATIONAL
            return Severity(score=round(normalized / 10, 1), informational=informational)
        if severity.get("Normalized") is not None:
            self.malformed(
                f"{field}.Normalized",
                f"expected a number from 0 to 100, got {shown(severity.get('Normalized'))}",
                "not read",
            )
        return None

    def normalized(self, value: Any, field: str) -> float | None:
        """`Severity.Normalized` when it is a number from 0 to 100; one written as a string of digits
        ("70", as a relay re-encoded it) is read, noted; None otherwise."""
        number = _normalized(value)
        if number is None and isinstance(value, str) and _NUMBER_TEXT.fullmatch(value.strip()):
            number = _normalized(float(value.strip()))
            if number is not None:
                self.note(f"{field}: a number written as a string ({shown(value)}): read as {number:g}")
        return number

    def product_severity(self, severity: Mapping[str, Any], field: str) -> Severity | None:
        """The product's own score (the deprecated `Product`, else `Original`), noted as guessed: its
        scale is the product's (0-10 as it is, above 10 read as 0-100). None when neither reads."""
        for key in ("Product", "Original"):
            own = _product_score(severity.get(key))
            if own is not None:
                score = own if own <= 10 else round(own / 10, 1)
                self.malformed(
                    f"{field}.{key}",
                    "neither Label nor Normalized, which AWS requires",
                    f"{GUESSED_SEVERITY} from the product's own score ({own:g}): {score:g}",
                )
                return Severity(score=score)
        return None

    def unreadable_severity(self, field: str, problem: str) -> Severity:
        """The stand-in severity, noted."""
        self.malformed(field, problem, UNREADABLE_SEVERITY_NOTE)
        return UNREADABLE_SEVERITY

    def finding_region(self) -> str:
        """The finding's `Region`, else the event's, else the Region in `ProductArn`."""
        product_arn = self.finding.get("ProductArn")
        match = _ARN_REGION.match(product_arn) if isinstance(product_arn, str) else None
        return self.region_name(
            [
                (self.where("Region"), self.finding.get("Region")),
                ("region", self.envelope.region),
                (self.where("ProductArn"), match["region"] if match else None),
            ]
        )

    # --- resources ------------------------------------------------------------------------------

    def resources(self) -> tuple[Resource, ...]:
        """The instances, access keys, buckets and objects of `Resources[]`; none, and the alert not
        actionable, when `Resources` is not as ASFF documents it (a list of one resource or more)."""
        listed = self.finding.get("Resources")
        if listed is None or listed == []:
            # Without its resources, the alert's own addresses are unknown too: one could be looked up.
            expected = "expected a list of one resource or more, got"
            problem = (
                "missing (ASFF requires at least one resource)"
                if "Resources" not in self.finding
                else f"{expected} null"
                if listed is None
                else f"{expected} an empty list"
            )
            self.malformed(self.where("Resources"), problem, "the alert names no resource")
            return ()
        try:
            return self.resources_of()
        except InvalidAlertError as error:
            # Without its resources, the alert's own addresses are unknown too: one could be looked up.
            self.malformed(str(error.field), error.reason, "no resource is read")
            return ()

    def resources_of(self) -> tuple[Resource, ...]:
        """Every resource of `Resources[]` a response could act on."""
        found: list[Resource] = []
        for path, resource in self.objects(self.finding, "Resources", ""):
            resource_type = self.text(resource, "Type", path)
            details = self.object(resource, "Details", path) or {}
            resource_id = self.text(resource, "Id", path) or ""
            if resource_type in _TARGET_TYPES:
                self.target_places.append((path, resource_id, resource.get("Region")))
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
                    scanned = self.loose_object(details, "AwsS3Object")
                    version_id, etag = self.loose_text(scanned, "VersionId"), self.loose_text(scanned, "ETag")
                    found.append(Resource.s3_object(bucket, key, version_id=version_id, etag=etag))
            elif resource_type not in _TARGET_TYPES:
                self.resource_subject(resource, resource_type, details, path)
        return tuple(found)

    def resource_subject(
        self, resource: Mapping[str, Any], resource_type: str | None, details: Mapping[str, Any], path: str
    ) -> None:
        """Keep a resource no response acts on as what the alert is about: its `Type`, its `Id` (an ARN
        for AWS's resources) and the name its `Details` give, where vtriage knows the member."""
        if resource_type is None:
            self.note(
                f"{self.where(path + '.Type')}: missing; the resource is not kept as what the alert is about"
            )
            return
        name_key = _SUBJECT_NAMES.get(resource_type)
        at = f"{path}.Details.{resource_type}"
        names = self.loose_object(details, resource_type)
        name = self.subject_name(names, name_key, at) if name_key else None
        self.subject(resource_type, resource, path, ("Id",), name)

    def targets_elsewhere(self, account: str, region: str) -> None:
        """A target whose ARN (`Resources[].Id`) or `Resources[].Region` names another account or Region
        than the finding's is not one to act on here (its id could name a local resource too): the alert
        is triaged and ticketed, never acted on, with the resource's place in the reason."""
        for path, resource_id, declared_region in self.target_places:
            claims: list[tuple[str, str, Any, str]] = []  # (what, field, value, the finding's)
            if resource_id.startswith("arn:"):
                arn = _ARN.fullmatch(resource_id)
                if arn is None:
                    self.malformed(
                        self.where(f"{path}.Id"),
                        f"{shown(resource_id)} is no ARN as AWS writes them"
                        " (arn:partition:service:region:account-id:resource)",
                        "the resource's place is unknown: not acted on",
                    )
                    continue
                claims.append(("account", f"{path}.Id", arn["account"], account))
                claims.append(("Region", f"{path}.Id", arn["region"], region))
            claims.append(("Region", f"{path}.Region", declared_region, region))
            elsewhere: dict[tuple[str, str], list[str]] = {}  # (what, its value) -> the fields saying it
            for what, field, value, ours in claims:
                if value in (None, "") or ours in (value, UNKNOWN):
                    continue
                shown_value = escaped(value, 64) if isinstance(value, str) else shown(value)
                elsewhere.setdefault((what, shown_value), []).append(self.where(field))
            if elsewhere:
                places = " and ".join(
                    f"{what} '{value}' ({', '.join(fields)})" for (what, value), fields in elsewhere.items()
                )
                self.malformed(
                    self.where(path),
                    f"the resource lives in {places}, not in the finding's account '{escaped(account, 64)}'"
                    f" and Region '{escaped(region, 64)}': vtriage acts on a resource only where the finding"
                    " lives",
                    "not acted on",
                )

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
        return Resource(
            type=ResourceType.ACCESS_KEY,
            id=key_id,
            user_name=user,
            user_type=self.text(key, "PrincipalType", at),
        )

    # --- IOCs: never refuse ----------------------------------------------------------------------

    def ioc_candidates(self) -> list[Candidate]:
        """Every place an indicator may be, in order."""
        finding = self.finding
        found: list[Candidate] = []
        for path, indicator in self.branches(finding, "ThreatIntelIndicators", ""):
            indicator_type = self.loose_text(indicator, "Type") or ""
            known = _THREAT_INTEL_TYPES.get(indicator_type.upper())
            value = indicator.get("Value")
            if known is not None and value is not None and value != "":
                ioc_type, algorithm = known
                found.append(Candidate(ioc_type, value, f"{path}.Value", algorithm))
        network = self.branch(finding, "Network", "")
        if network is not None:
            for key, ioc_type in _NETWORK_FIELDS:
                found += self.candidate(ioc_type, network, key, "Network")
        for threat_path, threat in self.branches(finding, "Threats", ""):
            for file_path, file in self.branches(threat, "FilePaths", threat_path):
                # The algorithm is not stated: the length says it (a sha512 is kept, skipped).
                found += self.candidate(IocType.FILE, file, "Hash", file_path)
        found += self.product_field_candidates()
        return found

    def product_field_candidates(self) -> list[Candidate]:
        """GuardDuty's remote addresses, domains and hashes, flattened into `ProductFields`."""
        if "ProductFields" in self.finding and self.finding["ProductFields"] is None:
            self.note(
                f"{self.where('ProductFields')}: expected an object, got null; not read for IOCs nor for"
                " GuardDuty's sample flag"
            )
            return []
        fields = self.branch(self.finding, "ProductFields", "")
        if not fields:
            return []
        found: list[Candidate] = []
        for key, value in fields.items():
            if not isinstance(key, str) or len(key) > _MAX_PRODUCT_FIELD_KEY or "localIpDetails" in key:
                continue
            plain = _PRODUCT_FIELD_INDEX.sub("", key)
            for ending, ioc_type in _GUARDDUTY_PRODUCT_FIELDS:
                if plain.endswith(ending) and value is not None and value != "":
                    # The key is the sender's: the path shows it escaped.
                    algorithm = declared_algorithm(key) if ioc_type is IocType.FILE else None
                    found.append(Candidate(ioc_type, value, f"ProductFields.{escaped(key)}", algorithm))
                    break
        return found


def _product_score(value: Any) -> float | None:
    """A product's own severity score from 0 to 100: `Product` is a number, `Original` a string."""
    if isinstance(value, str) and len(value) <= 16:
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 100:
        return float(value)
    return None


def _normalized(value: Any) -> float | None:
    """`Severity.Normalized` when it is a number from 0 to 100."""
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 100:
        return float(value)
    return None


def _label_of_normalized(normalized: float) -> str:
    """The label Security Hub gives a Normalized severity: 0, 1-39, 40-69, 70-89, 90-100."""
    if normalized == 0:
        return INFORMATIONAL
    if normalized < 40:
        return "LOW"
    if normalized < 70:
        return "MEDIUM"
    if normalized < 90:
        return "HIGH"
    return "CRITICAL"


def _names_field(key: str, names: tuple[str, ...]) -> bool:
    """Whether a ProductFields key is one of `names`, alone or after a `/` (`aws/guardduty/service/...`)."""
    return any(key == name or key.endswith("/" + name) for name in names)


def _after(text: str, prefix: str) -> str:
    return text[len(prefix) :] if text.startswith(prefix) else text
