"""GuardDuty findings as normalised Alerts: their IOCs and the resources a response could act on.

Three deliveries of the same finding are understood: the EventBridge event (`GuardDuty Finding`,
camelCase `detail`), the bare finding (camelCase), and `aws guardduty get-findings` output (PascalCase
under `Findings[]`, each finding on its own). PascalCase keys are turned into camelCase one by one, so a
finding reads the same whichever way it came, while reasons still name each field the way the sender
spelt it.

A finding is refused only when it cannot be identified: no `id`. Anything else that is not as GuardDuty
documents it degrades: an identity field (account, Region, times, severity, type) gets a stand-in and
makes the alert not actionable, and so does a missing `service` (GuardDuty puts the detection itself,
its action, evidence, count and sample flag, under it); a value where an IOC belongs is kept as a
skipped IOC. An EventBridge event whose `detail` is written in PascalCase (as some tools write them) is
read as a PascalCase bare finding is. A finding without `accountId` (or `region`) lives where its own
`arn` says, when that is this finding's GuardDuty ARN (noted); one whose ARN names another account or
Region than its fields is not acted on.

GuardDuty's sample findings (`service.additionalInfo.sample`, as "Generate sample findings" makes them)
are triaged, marked as samples and never acted on; `ignore_samples` ignores them instead.

Malware Protection for S3 also reports on its own, without a detector: the EventBridge event
`GuardDuty Malware Protection Object Scan Result` names the bucket and key of a scanned object. An
object with threats found becomes an Alert on that object; any other scan result is acknowledged. The
event's `detail` delivered alone (an EventBridge target with InputPath `$.detail`, a forwarder) is read
the same, recognised by its own fields (`sources.is_malware_scan_result`); the account, Region and time
only the event gives are missing, noted, and it is not acted on.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from vtriage.display import escaped, json_kind, shown
from vtriage.errors import InvalidAlertError
from vtriage.intake import sources
from vtriage.intake.fields import (
    PLACEHOLDER_PREFIX,
    UNKNOWN,
    UNKNOWN_TIME,
    UNREADABLE_SEVERITY,
    UNREADABLE_SEVERITY_NOTE,
    Candidate,
    Envelope,
    Fields,
    embedded_flag,
    event_detail,
    is_true,
    own_values,
    raw_version,
)
from vtriage.intake.outcomes import Acknowledged, Finding, peek_id
from vtriage.models import Alert, Ioc, IocType, Resource, ResourceType, Severity, Subject

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
_NOT_MD5_ETAG = (
    "an S3 ETag that is no MD5 (an object uploaded in parts, or encrypted with SSE-KMS or SSE-C): no hash"
    " to look up"
)
# Members read here whose wire (camelCase) name is not their PascalCase name with a lower-case first letter.
_CAMEL_EXCEPTIONS = {"SourceIps": "sourceIPs"}
_PASCAL_EXCEPTIONS = {camel: pascal for pascal, camel in _CAMEL_EXCEPTIONS.items()}
SAMPLE_REASON = "a GuardDuty sample finding (service.additionalInfo.sample)"
# A GuardDuty finding's own ARN: arn:<partition>:guardduty:<Region>:<account>:detector/<id>/finding/<id>.
# It names the account and Region the finding lives in, as `accountId` and `region` do.
_FINDING_ARN = re.compile(
    r"arn:aws(?:-[a-z]+)*:guardduty:(?P<region>[a-z]{2}(?:-[a-z]+)+-\d):(?P<account>\d{12})"
    r":detector/[0-9A-Za-z]+/finding/(?P<finding>[0-9A-Za-z]+)"
)
_UNVERSIONED_FINDING = "unversioned"
# The resource types no response acts on, and where GuardDuty's API Reference names each one (`Resource`:
# its details object, the members holding its ARN or id, in that order, and its name): the alert keeps
# which one it is about (`vtriage.models.Subject`).
_SUBJECT_DETAILS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "Lambda": ("lambdaDetails", ("functionArn", "functionName"), "functionName"),
    "EKSCluster": ("eksClusterDetails", ("arn", "name"), "name"),
    "ECSCluster": ("ecsClusterDetails", ("arn", "name"), "name"),
    "Container": ("containerDetails", ("id", "name"), "name"),
    "RDSDBInstance": (
        "rdsDbInstanceDetails",
        ("dbInstanceArn", "dbInstanceIdentifier"),
        "dbInstanceIdentifier",
    ),
    "RDSLimitlessDB": (
        "rdsLimitlessDbDetails",
        ("dbShardGroupArn", "dbShardGroupIdentifier"),
        "dbShardGroupIdentifier",
    ),
}
# The Kubernetes workload (pod, deployment, ...) an EKS finding names under
# `resource.kubernetesDetails.kubernetesWorkloadDetails`, kept beside its cluster. Its type is GuardDuty's
# name for the thing (`KubernetesWorkloadDetails`), not the workload's own `type`: that one is free text
# (the API Reference says "Pod, Deployment"; a real finding says "pods"), and one spelling of it must not
# make another case of the same pod.
KUBERNETES_WORKLOAD = "KubernetesWorkload"


def findings_of_event(event: Mapping[str, Any], *, ignore_samples: bool = False) -> list[Finding]:
    """The one finding of a GuardDuty EventBridge event: a `GuardDuty Finding`, or a Malware Protection
    for S3 scan result. An event cut down to its `detail` (no `source`, no `detail-type`) whose detail
    is a GuardDuty finding is read as GuardDuty's, noted and not actionable. Raises InvalidAlertError
    when the event is not one GuardDuty sends."""
    detail_value = event.get("detail")
    unsourced = (
        event.get("source") is None
        and event.get("detail-type") is None
        and isinstance(detail_value, dict)
        and sources.is_bare_guardduty_finding(detail_value)
    )
    if not unsourced:
        _check_source(event)
        if event.get("detail-type") == MALWARE_SCAN_DETAIL_TYPE:
            scan = event_detail(event)
            envelope, event_id = Envelope.of(event), event.get("id")
            event_id = event_id if isinstance(event_id, str) and event_id else None
            return [
                Finding(
                    where="",
                    read=lambda: _malware_scan(scan, envelope, event_id, prefix="detail."),
                    content=scan,
                )
            ]
        _check_detail_type(event, EVENT_DETAIL_TYPE)
    detail = event_detail(event)
    envelope = Envelope.of(event)

    def read() -> Alert | Acknowledged:
        # Some tools write the detail in boto3's PascalCase: read as the bare finding is, named as sent.
        pascal = _is_pascal_case(detail)
        finding = _camel_case(detail) if pascal else detail
        reader = _FindingReader(finding, prefix="detail.", pascal=pascal, envelope=envelope)
        if unsourced:
            reader.malformed(
                "source",
                "missing, and no detail-type",
                "read as GuardDuty's: its detail is a GuardDuty finding",
            )
        return reader.outcome(ignore_samples=ignore_samples)

    return [
        Finding(where="", read=read, content=detail, alert_id=peek_id(detail.get("id", detail.get("Id"))))
    ]


def findings_of_get_findings(output: Mapping[str, Any], *, ignore_samples: bool = False) -> list[Finding]:
    """One finding per item of get-findings output, each read on its own: `aws guardduty get-findings`
    (`Findings`) or the API's own response (`findings`, see `sources.is_guardduty_get_findings_output`).
    A page with no finding is acknowledged, saying so: a poller's empty page is no fault of its sender."""
    key = "Findings" if "Findings" in output else "findings"
    findings = output.get(key)
    if not isinstance(findings, list):
        raise InvalidAlertError(f"expected a list of findings, got {json_kind(findings)}", field=key)
    if not findings:
        reason = f"{key} is empty: a page of get-findings with no finding, nothing to triage"
        return [Finding(where=key, read=lambda: Acknowledged(reason), content=output)]
    return [
        _listed_finding(finding, f"{key}[{index}]", ignore_samples=ignore_samples)
        for index, finding in enumerate(findings)
    ]


def finding_of_bare(finding: Mapping[str, Any], *, where: str = "", ignore_samples: bool = False) -> Finding:
    """One bare GuardDuty finding, camelCase or PascalCase, at `where` in its document."""
    return _listed_finding(finding, where, ignore_samples=ignore_samples)


def _listed_finding(finding: Any, where: str, *, ignore_samples: bool) -> Finding:
    def read() -> Alert | Acknowledged:
        if not isinstance(finding, dict):
            raise InvalidAlertError(
                f"expected a finding object, got {json_kind(finding)}", field=where or None
            )
        pascal = _is_pascal_case(finding)
        camel = _camel_case(finding) if pascal else finding
        prefix = where + "." if where else ""
        return _FindingReader(camel, prefix=prefix, pascal=pascal).outcome(ignore_samples=ignore_samples)

    alert_id = peek_id(finding.get("Id", finding.get("id"))) if isinstance(finding, dict) else None
    return Finding(where=where, read=read, content=finding, alert_id=alert_id)


def finding_of_scan_result(detail: Mapping[str, Any], *, where: str = "") -> Finding:
    """A Malware Protection for S3 scan result delivered as its event's `detail` alone (an EventBridge
    target with InputPath `$.detail`, a forwarder; see `sources.is_malware_scan_result`), at `where` in
    its document. It is read as inside its event, but what only the event gives is missing: the account
    and Region ('unknown' stands in, so nothing is acted on automatically: no AWS action runs where the
    finding's place is not known), the time and the event's id; each is noted."""

    def read() -> Alert | Acknowledged:
        prefix = where + "." if where else ""
        return _malware_scan(dict(detail), Envelope(), None, prefix=prefix, alone=True)

    return Finding(where=where, read=read, content=detail)


def _malware_scan(
    detail: dict[str, Any], envelope: Envelope, event_id: str | None, *, prefix: str, alone: bool = False
) -> Alert | Acknowledged:
    """The Alert of a `GuardDuty Malware Protection Object Scan Result` (its event's `detail`, named
    with `prefix`; `envelope` and `event_id` what its event says around it), on the scanned object;
    acknowledged when the scan found no threat (or could not scan): there is then nothing to triage.
    `alone`: the detail came without its event, noted.

    The event carries no finding id and no hash: the alert is the object (its ARN), versioned by the
    object's version id, else its ETag, else the event's id, so that a redelivered event, or a rescan
    of the same upload, is the same case. An ETag that is an MD5 is the one IOC (see `_MD5_ETAG`).
    """
    fields = Fields(prefix=prefix)
    if alone:
        fields.malformed(
            "source",
            "missing, and no detail-type: a Malware Protection for S3 scan result's detail alone, without"
            " its EventBridge event",
            "read as GuardDuty's scan result by its own fields; the account, Region, time and id only the"
            " event gives are missing",
        )
    resource_type = fields.text(detail, "resourceType", "")
    if resource_type is not None and resource_type != sources.MALWARE_SCAN_RESOURCE_TYPE:
        raise InvalidAlertError(
            f"unsupported resource type {shown(resource_type)}: expected 'S3_OBJECT'",
            field=fields.where("resourceType"),
        )
    result = fields.required_object(detail, "scanResultDetails", "")
    status = fields.required_text(result, "scanResultStatus", "scanResultDetails")
    at = "s3ObjectDetails"
    item = fields.required_object(detail, at, "")
    bucket = fields.required_text(item, "bucketName", at)
    key = fields.required_text(item, "objectKey", at)
    # The key is the uploader's choice: the id and title show it escaped, the resource keeps it as it is.
    alert_id = f"arn:aws:s3:::{bucket}/{_printable(key)}"
    if status != _THREATS_FOUND:
        return Acknowledged(
            f"{fields.where('scanResultDetails.scanResultStatus')} is {shown(status)}: no threat found",
            alert_id,
        )
    threats = [
        name
        for path, threat in fields.branches(result, "threats", "scanResultDetails")
        if (name := fields.loose_text(threat, "name"))
    ]
    etag = fields.loose_text(item, "eTag")
    version_id = fields.loose_text(item, "versionId")
    # The event's time is when GuardDuty published the scan result: the only time the event has.
    moment = fields.event_time(envelope, instead=f"{UNKNOWN_TIME.isoformat()} stands in") or UNKNOWN_TIME
    if version_id and version_id != _UNVERSIONED:
        version = f"version-{version_id}"
    elif etag:
        version = f"etag-{etag}"
    elif event_id:
        version = f"event-{event_id}"
    else:
        fields.note("id: missing, and no versionId or eTag to tell this scan result apart from a rescan")
        version = _UNVERSIONED_FINDING
    iocs: tuple[Ioc, ...] = ()
    if etag and _MD5_ETAG.fullmatch(etag.strip('"')):
        iocs = tuple(
            fields.iocs([Candidate(IocType.FILE, etag.strip('"'), f"{at}.eTag", "md5")], frozenset()).values()
        )
    elif etag:
        iocs = (
            Ioc(type=IocType.FILE, value=escaped(etag), found_at=f"{at}.eTag", skipped_reason=_NOT_MD5_ETAG),
        )
    named = ", ".join(_printable(name) for name in threats) or "an unnamed threat"
    account = fields.account_id([("account", envelope.account)])
    region = fields.region_name([("region", envelope.region)])
    return Alert(
        id=alert_id,
        source=sources.GUARDDUTY,
        type=MALWARE_SCAN_ALERT_TYPE,
        title=f"Malware Protection for S3 found {named} in s3://{bucket}/{_printable(key)}",
        severity=Severity(score=MALWARE_SCAN_SEVERITY),
        created_at=moment,
        updated_at=moment,
        version=version,
        account=account,
        region=region,
        resources=(
            Resource(type=ResourceType.S3_BUCKET, id=bucket, bucket=bucket),
            Resource.s3_object(bucket, key, version_id=version_id, etag=etag),
        ),
        iocs=iocs,
        notes=fields.alert_notes(),
        not_actionable=fields.alert_not_actionable(),
    )


def _printable(text: str) -> str:
    """The text with every character that is not printable (CR, LF, controls) escaped as Python does."""
    return "".join(character if character.isprintable() else repr(character)[1:-1] for character in text)


def _check_source(event: Mapping[str, Any]) -> None:
    source = event.get("source")
    expected = sources.GUARDDUTY_EVENT_SOURCE
    if source == expected:
        return
    if source is None:
        raise InvalidAlertError(
            f"missing: an EventBridge event from GuardDuty has source {expected!r}", field="source"
        )
    raise InvalidAlertError(
        f"unsupported event source {shown(source)}: expected {expected!r}, 'aws.securityhub',"
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


class _FindingReader(Fields):
    """Reads one camelCase finding; names each field as it appears in the sender's document (camel or
    Pascal case)."""

    def __init__(
        self,
        finding: dict[str, Any],
        *,
        prefix: str,
        pascal: bool,
        envelope: Envelope | None = None,
    ) -> None:
        super().__init__(prefix)
        self.pascal = pascal
        self.finding = finding
        self.envelope = envelope or Envelope()
        # (field, value) of the instance's `availabilityZone`: where the instance says it lives.
        self.instance_zone: tuple[str, Any] | None = None

    def where(self, path: str) -> str:
        """A finding path as the sender's document spells it."""
        if self.pascal:
            path = ".".join(_pascal_segment(segment) for segment in path.split("."))
        return self.prefix + path

    def outcome(self, *, ignore_samples: bool) -> Alert | Acknowledged:
        """The normalised Alert; Acknowledged for a sample finding when samples are ignored.

        Raises InvalidAlertError only when the finding cannot be identified (no id).
        """
        finding = self.finding
        finding_id = self.required_text(finding, "id", "")
        service = self.service()
        sample = self.is_sample(service)
        if sample and ignore_samples:
            return Acknowledged(f"{SAMPLE_REASON}; sample findings are ignored here", finding_id)
        if sample:
            self.note(f"{SAMPLE_REASON}: GuardDuty generated it to test a pipeline; triaged, never acted on")
            self.not_actionable.append(SAMPLE_REASON)
        finding_type = self.finding_type()
        updated_at, version = self.updated_at_and_version(service)
        created_at = self.moment(
            finding, "createdAt", "", instead="updatedAt, else the event's time, stands in", required=True
        )
        created_at = created_at or updated_at or self.envelope_time(self.envelope) or UNKNOWN_TIME
        resources = self.resources()
        own = own_values(address for item in resources for address in item.addresses)
        iocs = self.iocs(self.ioc_candidates(service), own)
        severity = self.severity()
        arn = self.own_arn(finding_id)
        account = self.placed_by_arn(
            "accountId", arn, "account", self.account_id, ("account", self.envelope.account)
        )
        region = self.placed_by_arn(
            "region", arn, "region", self.region_name, ("region", self.envelope.region)
        )
        self.instance_elsewhere(region)
        subjects = self.alert_subjects()
        return Alert(
            id=finding_id,
            source=sources.GUARDDUTY,
            type=finding_type,
            title=self.loose_text(finding, "title") or finding_type,
            severity=severity,
            created_at=created_at,
            updated_at=updated_at or created_at,
            version=version,
            account=account,
            region=region,
            resources=resources,
            subjects=subjects,
            iocs=tuple(iocs.values()),
            notes=self.alert_notes(),
            not_actionable=self.alert_not_actionable(),
            sample=sample,
        )

    # --- the finding's own fields -------------------------------------------------------------

    def own_arn(self, finding_id: str) -> re.Match[str] | None:
        """The finding's own `arn`, when it is a GuardDuty finding's ARN naming this finding (its id):
        it names the account and Region the finding lives in. Any other value is not read."""
        value = self.finding.get("arn")
        if not isinstance(value, str):
            return None
        match = _FINDING_ARN.fullmatch(value)
        return match if match is not None and match["finding"] == finding_id else None

    def placed_by_arn(
        self,
        key: str,
        arn: re.Match[str] | None,
        part: str,
        read: Callable[[Sequence[tuple[str, Any]]], str],
        envelope_choice: tuple[str, Any],
    ) -> str:
        """The account (or Region) the finding lives in, from its own `key` (accountId, region), read by
        `read` (`account_id`, `region_name`). Missing there, the finding's own ARN names it (noted), before
        the event around the finding. Named by both, they must agree: otherwise the finding's own value
        stands and the alert is not acted on, with both named."""
        field = self.where(key)
        value = self.finding.get(key)
        if arn is not None and (value is None or value == ""):
            where = self.where("arn")
            self.note(
                f"{field}: missing; the {part} {arn[part]} is taken from the finding's own ARN ({where})"
            )
            return str(arn[part])
        chosen: str = read([(field, value), envelope_choice])
        if arn is not None and chosen != UNKNOWN and value == chosen and arn[part] != chosen:
            self.malformed(
                self.where("arn"),
                f"names {part} {arn[part]}, but {field} names {escaped(chosen, 64)}: the finding's place is "
                "uncertain",
                f"{field} stands",
            )
        return chosen

    def service(self) -> Mapping[str, Any]:
        """`service`, where GuardDuty puts the detection itself (its action, evidence, count and sample
        flag). Without it the finding is still identified by its id, type, account and resource: it is
        triaged, noted, and not acted on automatically, since whether it is a sample cannot be told."""
        service = self.finding.get("service")
        if isinstance(service, dict):
            return service
        problem = "missing" if service is None else f"expected an object, got {json_kind(service)}"
        self.malformed(
            self.where("service"),
            problem,
            "the detection (action, evidence, sample flag) is unknown: no IOC is read from it",
        )
        return {}

    def is_sample(self, service: Mapping[str, Any]) -> bool:
        """Whether GuardDuty generated the finding as a sample: `additionalInfo.sample`, or `sample` in
        the JSON object of `additionalInfo.value` (as the API and get-findings give it)."""
        info = self.loose_object(service, "additionalInfo")
        return is_true(info.get("sample")) or embedded_flag(info.get("value"), "sample")

    def finding_type(self) -> str:
        """`type`; a stand-in, noted, when it is missing or not a string."""
        value = self.finding.get("type")
        if isinstance(value, str) and value:
            return value
        problem = "missing" if value is None or value == "" else f"expected a string, got {json_kind(value)}"
        self.malformed(self.where("type"), problem, "'unknown' stands in")
        return "unknown"

    def severity(self) -> Severity:
        """GuardDuty's 0-10 score; critical, noted, when it cannot be read."""
        value = self.finding.get("severity")
        if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 10:
            return Severity(score=float(value))
        problem = "missing" if value is None else f"expected a number from 0 to 10, got {shown(value)}"
        self.malformed(self.where("severity"), problem, UNREADABLE_SEVERITY_NOTE)
        return UNREADABLE_SEVERITY

    def updated_at_and_version(self, service: Mapping[str, Any]) -> tuple[datetime | None, str]:
        """When the finding last changed, and the version that names this state of it: `updatedAt`, else
        `service.count`, else the raw `updatedAt` text, else a stand-in (noted)."""
        updated_at = self.moment(
            self.finding, "updatedAt", "", instead="service.count, else the raw text, versions the finding"
        )
        if updated_at is not None:
            return updated_at, updated_at.isoformat()
        count = service.get("count")
        if isinstance(count, int) and not isinstance(count, bool):
            return None, f"count-{count}"
        raw = raw_version(self.finding.get("updatedAt"))
        if raw is not None:
            return None, raw
        self.malformed(
            self.where("updatedAt"),
            "missing, and no service.count to tell this finding's versions apart",
            f"{_UNVERSIONED_FINDING!r} stands in: a later update of the finding is the same case",
        )
        return None, _UNVERSIONED_FINDING

    # --- resources ------------------------------------------------------------------------------

    def resources(self) -> tuple[Resource, ...]:
        """What a response could act on, by the finding's resource type; none, and the alert not
        actionable, when `resource` is not as GuardDuty documents it.

        GuardDuty's sample findings fill in details of every kind whatever the resource type, so
        only the details that the resource type names are read: an S3 finding's sample instance
        must never be isolated.
        """
        try:
            resource = self.object(self.finding, "resource", "")
            if resource is None:
                self.note(f"{self.where('resource')}: missing; the alert names no resource")
                return ()
            return self.resources_of(resource)
        except InvalidAlertError as error:
            # Without its resources, the alert's own addresses are unknown too: one could be looked up.
            self.malformed(str(error.field), error.reason, "no resource is read")
            return ()

    def resources_of(self, resource: Mapping[str, Any]) -> tuple[Resource, ...]:
        """The resources of `resource`, by its `resourceType`; a type no response acts on (a Lambda
        function, a cluster, a container, a database) is kept as what the alert is about instead."""
        resource_type = self.text(resource, "resourceType", "resource")
        if resource_type in _SUBJECT_DETAILS:
            details_key, id_keys, name_key = _SUBJECT_DETAILS[resource_type]
            details = self.branch(resource, details_key, "resource")
            if details is None:
                self.note(
                    f"{self.where('resource.' + details_key)}: missing; the alert names no {resource_type}"
                )
            else:
                at = f"resource.{details_key}"
                self.subject(resource_type, details, at, id_keys, self.subject_name(details, name_key, at))
            if resource_type == "EKSCluster":
                self.kubernetes_workload(resource)
            return ()
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

    def kubernetes_workload(self, resource: Mapping[str, Any]) -> None:
        """Keep the Kubernetes workload an EKS finding names (`kubernetesDetails.kubernetesWorkloadDetails`)
        as what the alert is about: id `namespace/name`, named by its name. A name or namespace that is no
        usable text is noted with its field; without a name, no workload is kept."""
        at = "resource.kubernetesDetails"
        kubernetes = self.branch(resource, "kubernetesDetails", "resource")
        workload = self.branch(kubernetes, "kubernetesWorkloadDetails", at) if kubernetes else None
        if workload is None:
            return
        at = f"{at}.kubernetesWorkloadDetails"
        name = self.subject_name(workload, "name", at)
        namespace = self.subject_name(workload, "namespace", at)
        if name is None:
            self.note(
                f"{self.where(at + '.name')}: no usable name; the alert does not say which Kubernetes"
                " workload it is about"
            )
            return
        if namespace is None:
            self.note(
                f"{self.where(at + '.namespace')}: no usable namespace; the workload is named by its name"
            )
        identifier = f"{namespace}/{name}" if namespace else name
        self.subjects.append(Subject(type=KUBERNETES_WORKLOAD, id=identifier, name=name))

    def instance(self, resource: Mapping[str, Any]) -> Resource:
        """The EC2 instance, with its VPC, network interfaces and its own addresses."""
        at = "resource.instanceDetails"
        details = self.required_object(resource, "instanceDetails", "resource")
        instance_id = self.required_text(details, "instanceId", at)
        self.instance_zone = (f"{at}.availabilityZone", details.get("availabilityZone"))
        vpc_id: str | None = None
        interface_ids: list[str] = []
        addresses: list[str] = []
        for path, interface in self.objects(details, "networkInterfaces", at):
            vpc_id = vpc_id or self.text(interface, "vpcId", path)
            interface_id = self.text(interface, "networkInterfaceId", path)
            if interface_id and interface_id not in interface_ids:
                interface_ids.append(interface_id)
            candidates = [self.text(interface, "privateIpAddress", path)]
            for private_path, private in self.objects(interface, "privateIpAddresses", path):
                candidates.append(self.text(private, "privateIpAddress", private_path))
            candidates.append(self.text(interface, "publicIp", path))
            candidates.extend(value for _, value in self.texts(interface, "ipv6Addresses", path))
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

    def instance_elsewhere(self, region: str) -> None:
        """An instance whose Availability Zone is in another Region than the finding's is not one to act
        on here (GuardDuty names an instance by its id alone, which could name a local one too): the alert
        is triaged and ticketed, never acted on, with the zone in the reason. A sample's placeholder zone
        is no place (samples are never acted on anyway)."""
        if self.instance_zone is None or region == UNKNOWN:
            return
        field, zone = self.instance_zone
        if not isinstance(zone, str) or not zone or zone.startswith(PLACEHOLDER_PREFIX):
            return
        if not re.fullmatch(re.escape(region) + r"(?:[a-z]|-[a-z0-9-]+)", zone):
            self.malformed(
                self.where(field),
                f"the instance is in Availability Zone '{escaped(zone, 64)}', not in the finding's Region"
                f" '{escaped(region, 64)}': vtriage acts on a resource only where the finding lives",
                "not acted on",
            )

    def access_key(self, resource: Mapping[str, Any], *, required: bool) -> Resource | None:
        """The IAM access key, the user it belongs to and the kind of principal that holds it (IAMUser, Root,
        AssumedRole, ...)."""
        details = self.object(resource, "accessKeyDetails", "resource", required=required)
        if details is None:
            return None
        at = "resource.accessKeyDetails"
        key_id = self.text(details, "accessKeyId", at, required=required)
        if key_id is None:
            return None
        return Resource(
            type=ResourceType.ACCESS_KEY,
            id=key_id,
            user_name=self.text(details, "userName", at),
            user_type=self.text(details, "userType", at),
        )

    def buckets(self, resource: Mapping[str, Any]) -> list[Resource]:
        """The S3 buckets, and the objects GuardDuty names in them."""
        found: list[Resource] = []
        for path, bucket in self.objects(resource, "s3BucketDetails", "resource"):
            name = self.required_text(bucket, "name", path)
            found.append(Resource(type=ResourceType.S3_BUCKET, id=name, bucket=name))
            for object_path, item in self.objects(bucket, "s3ObjectDetails", path):
                key = self.text(item, "key", object_path)
                if key:
                    version_id, etag = self.loose_text(item, "versionId"), self.loose_text(item, "eTag")
                    found.append(Resource.s3_object(name, key, version_id=version_id, etag=etag))
        return found

    # --- IOCs: never refuse ----------------------------------------------------------------------

    def ioc_candidates(self, service: Mapping[str, Any]) -> list[Candidate]:
        """Every place GuardDuty puts an indicator, in order."""
        found: list[Candidate] = []
        at = "service.action"
        action = self.branch(service, "action", "service") or {}
        for kind in ("networkConnectionAction", "awsApiCallAction", "rdsLoginAttemptAction"):
            details = self.branch(action, kind, at)
            if details is not None:
                found += self.remote_ips(details, f"{at}.{kind}")
        port_probe = self.branch(action, "portProbeAction", at)
        if port_probe is not None:
            for path, probe in self.branches(port_probe, "portProbeDetails", f"{at}.portProbeAction"):
                found += self.remote_ips(probe, path)
        api_call = self.branch(action, "awsApiCallAction", at)
        if api_call is not None:
            # The caller's domain: an AWS service's own endpoint when a service made the call, which
            # the never-act list of `canonical` keeps from any lookup or action.
            domain_details = self.branch(api_call, "domainDetails", f"{at}.awsApiCallAction")
            if domain_details is not None:
                found += self.candidate(
                    IocType.DOMAIN, domain_details, "domain", f"{at}.awsApiCallAction.domainDetails"
                )
        dns_request = self.branch(action, "dnsRequestAction", at)
        if dns_request is not None:
            found += self.candidate(IocType.DOMAIN, dns_request, "domain", f"{at}.dnsRequestAction")
        kubernetes = self.branch(action, "kubernetesApiCallAction", at)
        if kubernetes is not None:
            path = f"{at}.kubernetesApiCallAction"
            found += self.remote_ips(kubernetes, path)
            found += self.candidate_list(IocType.IP, kubernetes, "sourceIPs", path)
        found += self.threat_intelligence_hashes(service)
        found += self.malware_scan_hashes(service)
        found += self.malware_threat_hashes(service)
        found += self.s3_object_hashes()
        found += self.runtime_hashes(service)
        found += self.attack_sequence_candidates(service)
        return found

    def remote_ips(self, parent: Mapping[str, Any], at: str) -> list[Candidate]:
        """The IPv4 and IPv6 addresses of `remoteIpDetails` under `parent`."""
        details = self.branch(parent, "remoteIpDetails", at)
        if details is None:
            return []
        path = f"{at}.remoteIpDetails"
        return [
            *self.candidate(IocType.IP, details, "ipAddressV4", path),
            *self.candidate(IocType.IP, details, "ipAddressV6", path),
        ]

    def threat_intelligence_hashes(self, service: Mapping[str, Any]) -> list[Candidate]:
        """File hashes a threat list matched, from `service.evidence`."""
        evidence = self.branch(service, "evidence", "service")
        if evidence is None:
            return []
        found: list[Candidate] = []
        for path, detail in self.branches(evidence, "threatIntelligenceDetails", "service.evidence"):
            found += self.candidate(IocType.FILE, detail, "threatFileSha256", path)
        return found

    def malware_scan_hashes(self, service: Mapping[str, Any]) -> list[Candidate]:
        """File hashes of an EBS malware scan: `ebsVolumeScanDetails...threatNames[].filePaths[].hash`."""
        at = "service.ebsVolumeScanDetails"
        scan = self.branch(service, "ebsVolumeScanDetails", "service")
        detections = self.branch(scan, "scanDetections", at) if scan else None
        by_name = (
            self.branch(detections, "threatDetectedByName", f"{at}.scanDetections") if detections else None
        )
        if by_name is None:
            return []
        found: list[Candidate] = []
        names_at = f"{at}.scanDetections.threatDetectedByName"
        for threat_path, threat in self.branches(by_name, "threatNames", names_at):
            for file_path, file in self.branches(threat, "filePaths", threat_path):
                found += self.candidate(IocType.FILE, file, "hash", file_path)
        return found

    def malware_threat_hashes(self, service: Mapping[str, Any]) -> list[Candidate]:
        """File hashes of the newer Malware Protection findings (for S3 with a detector, on-demand and
        backup scans): `service.malwareScanDetails.threats[]`, its `itemPaths[]` and `itemDetails[]`."""
        at = "service.malwareScanDetails"
        scan = self.branch(service, "malwareScanDetails", "service")
        if scan is None:
            return []
        found: list[Candidate] = []
        for threat_path, threat in self.branches(scan, "threats", at):
            found += self.candidate(IocType.FILE, threat, "hash", threat_path)
            for kind in ("itemPaths", "itemDetails"):
                for item_path, item in self.branches(threat, kind, threat_path):
                    found += self.candidate(IocType.FILE, item, "hash", item_path)
        return found

    def runtime_hashes(self, service: Mapping[str, Any]) -> list[Candidate]:
        """Hashes of Runtime Monitoring: the process's executable, and in `context` the processes that
        modified or were targeted and the kernel module loaded. GuardDuty documents no hash for the
        process's `lineage[]` (only its executable paths), so none is read there."""
        at = "service.runtimeDetails"
        runtime = self.branch(service, "runtimeDetails", "service")
        if runtime is None:
            return []
        found: list[Candidate] = []
        process = self.branch(runtime, "process", at)
        if process is not None:
            found += self.candidate(IocType.FILE, process, "executableSha256", f"{at}.process")
        context = self.branch(runtime, "context", at)
        if context is not None:
            context_at = f"{at}.context"
            for kind in ("modifyingProcess", "targetProcess"):
                other = self.branch(context, kind, context_at)
                if other is not None:
                    found += self.candidate(IocType.FILE, other, "executableSha256", f"{context_at}.{kind}")
            found += self.candidate(IocType.FILE, context, "moduleSha256", context_at)
        return found

    def attack_sequence_candidates(self, service: Mapping[str, Any]) -> list[Candidate]:
        """An attack sequence's network endpoints (IP and domain) and its actors' process hashes:
        `service.detection.sequence`."""
        detection = self.branch(service, "detection", "service")
        sequence = self.branch(detection, "sequence", "service.detection") if detection else None
        if sequence is None:
            return []
        at = "service.detection.sequence"
        found: list[Candidate] = []
        for path, endpoint in self.branches(sequence, "endpoints", at):
            found += self.candidate(IocType.IP, endpoint, "ip", path)
            found += self.candidate(IocType.DOMAIN, endpoint, "domain", path)
        for path, actor in self.branches(sequence, "actors", at):
            process = self.branch(actor, "process", path)
            if process is not None:
                found += self.candidate(IocType.FILE, process, "sha256", f"{path}.process")
        return found

    def s3_object_hashes(self) -> list[Candidate]:
        """Hashes of the S3 objects a Malware Protection finding names."""
        resource = self.branch(self.finding, "resource", "")
        if resource is None:
            return []
        found: list[Candidate] = []
        for bucket_path, bucket in self.branches(resource, "s3BucketDetails", "resource"):
            for object_path, item in self.branches(bucket, "s3ObjectDetails", bucket_path):
                found += self.candidate(IocType.FILE, item, "hash", object_path)
        return found


def _is_pascal_case(finding: Mapping[str, Any]) -> bool:
    return "id" not in finding and ("Id" in finding or "SchemaVersion" in finding or "Type" in finding)


def _camel_case(document: dict[str, Any]) -> dict[str, Any]:
    """The same document with every object key's first letter lower-cased, as GuardDuty's API spells it.

    Iterative, so that no nesting of the sender's reaches Python's recursion limit.
    """
    root: dict[str, Any] = {}
    pending: list[tuple[Any, Any]] = [(document, root)]
    while pending:
        source, target = pending.pop()
        pairs = source.items() if isinstance(source, dict) else enumerate(source)
        for key, item in pairs:
            copy: Any = (
                {} if isinstance(item, dict) else [None] * len(item) if isinstance(item, list) else item
            )
            if isinstance(source, dict):
                target[_camel_key(key)] = copy
            else:
                target[key] = copy
            if isinstance(item, dict | list):
                pending.append((item, copy))
    return root


def _camel_key(key: Any) -> Any:
    if not isinstance(key, str):
        return key
    return _CAMEL_EXCEPTIONS.get(key, key[:1].lower() + key[1:])


def _pascal_segment(segment: str) -> str:
    name, bracket, index = segment.partition("[")
    name = _PASCAL_EXCEPTIONS.get(name, name[:1].upper() + name[1:])
    return name + bracket + index
