"""Which detector a document comes from, told without loading the reader that reads it.

Each detector has its reader (`vtriage.intake.guardduty`, `.securityhub`, `.ocsf`, `.falcon`,
`.workspace`), which imports the field readers they share. `read_document` recognises a document's shape
with the checks here and imports the reader of that shape only when it reads one: a function's cold start
loads no reader, and a deployment fed by one detector never loads the others'. The name each detector
gives its alerts' `source` is here too, for code that tells alerts apart by detector.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Each detector's `Alert.source`.
GUARDDUTY = "guardduty"
SECURITYHUB = "securityhub"
OCSF = "ocsf"
FALCON = "falcon"
WORKSPACE = "workspace"

# The `source` of GuardDuty's and of Security Hub's EventBridge events; Security Hub's carry ASFF findings
# or, under their own detail-type, OCSF findings.
GUARDDUTY_EVENT_SOURCE = "aws.guardduty"
SECURITYHUB_EVENT_SOURCE = "aws.securityhub"
ASFF_DETAIL_TYPE = "Security Hub Findings - Imported"
ASFF_CUSTOM_ACTION_DETAIL_TYPE = "Security Hub Findings - Custom Action"
ASFF_DETAIL_TYPES = (ASFF_DETAIL_TYPE, ASFF_CUSTOM_ACTION_DETAIL_TYPE)
OCSF_DETAIL_TYPE = "Findings Imported V2"

# The only `resourceType` of a Malware Protection for S3 scan result.
MALWARE_SCAN_RESOURCE_TYPE = "S3_OBJECT"

# The schema version every ASFF finding carries, and attributes ASFF requires that no GuardDuty finding
# has (GuardDuty's own findings carry `SchemaVersion` "2.0", `AccountId`, `Resource` and `Type`).
ASFF_SCHEMA_VERSION = "2018-10-08"
_ASFF_ONLY_KEYS = ("AwsAccountId", "Resources", "GeneratorId", "Types", "FindingProviderFields")

# What a queue subscribed to an SNS topic receives without raw message delivery: SNS's JSON envelope, the
# published document as a string in `Message`.
SNS_NOTIFICATION = "Notification"

# The keys of a CrowdStrike Alerts API response.
_FALCON_RESPONSE_KEYS = frozenset({"meta", "resources", "errors"})


def is_sns_envelope(document: Mapping[str, Any]) -> bool:
    """Whether the document is a message SNS delivered with its envelope (`Type`, `TopicArn`, and the
    published `Message` or the `MessageId` of a notification or a subscription's confirmation)."""
    published = "Message" in document or "MessageId" in document
    return "Type" in document and "TopicArn" in document and published


def is_eventbridge_event(document: Mapping[str, Any]) -> bool:
    """Whether the document has the EventBridge envelope (GuardDuty's or any other detector's)."""
    return any(key in document for key in ("detail-type", "source", "detail"))


def is_guardduty_get_findings_output(document: Mapping[str, Any]) -> bool:
    """Whether the document is get-findings output: `aws guardduty get-findings` (`Findings`, also the
    shape of Security Hub's when it holds no ASFF finding, as an empty page), or the GuardDuty API's own
    GetFindings response, whose only key is `findings` (camelCase, as the API's findings are)."""
    return "Findings" in document or set(document) == {"findings"}


def is_bare_guardduty_finding(document: Mapping[str, Any]) -> bool:
    """Whether the document is one GuardDuty finding, camelCase (the API) or PascalCase (boto3)."""
    camel = "type" in document and ("schemaVersion" in document or "service" in document)
    pascal = "Type" in document and ("SchemaVersion" in document or "Service" in document)
    return camel or pascal


def is_malware_scan_result(document: Mapping[str, Any]) -> bool:
    """Whether the document is a GuardDuty Malware Protection for S3 scan result: the `detail` of a
    `GuardDuty Malware Protection Object Scan Result` event delivered alone. By its own fields: what the
    scan found (`scanResultDetails`, or the `scanStatus` beside it) and what it scanned (`s3ObjectDetails`,
    or `resourceType` 'S3_OBJECT'); no GuardDuty finding has either (its `schemaVersion` is no mark)."""
    scanned = "scanResultDetails" in document or "scanStatus" in document
    s3_object = "s3ObjectDetails" in document or document.get("resourceType") == MALWARE_SCAN_RESOURCE_TYPE
    return scanned and s3_object


def is_securityhub_event(document: Mapping[str, Any]) -> bool:
    """Whether the document is an EventBridge event from Security Hub."""
    return document.get("source") == SECURITYHUB_EVENT_SOURCE


def is_asff_finding(document: Mapping[str, Any]) -> bool:
    """Whether the document is one ASFF finding, by ASFF's own marks: its `SchemaVersion` (2018-10-08), or
    a `ProductArn` beside another attribute no GuardDuty finding has (`AwsAccountId`, `Resources`,
    `GeneratorId`, `Types`, `FindingProviderFields`). A finding missing one required attribute (its
    account, say) is still ASFF: the reader notes what is missing."""
    if document.get("SchemaVersion") == ASFF_SCHEMA_VERSION:
        return True
    return "ProductArn" in document and any(key in document for key in _ASFF_ONLY_KEYS)


def securityhub_findings_key(document: Mapping[str, Any]) -> str | None:
    """The key holding a page of ASFF findings: `Findings` (`aws securityhub get-findings` output) or
    `findings` (the `detail` of a Security Hub event, delivered alone as an EventBridge target with
    InputPath `$.detail` delivers it); None when neither is a list holding an ASFF finding."""
    for key in ("Findings", "findings"):
        findings = document.get(key)
        if isinstance(findings, list) and any(
            isinstance(finding, dict) and is_asff_finding(finding) for finding in findings
        ):
            return key
    return None


def is_securityhub_get_findings_output(document: Mapping[str, Any]) -> bool:
    """Whether the document is a page of ASFF findings: get-findings output, or a Security Hub event's
    `detail` alone (see `securityhub_findings_key`)."""
    return securityhub_findings_key(document) is not None


def is_ocsf_finding(document: Mapping[str, Any]) -> bool:
    """Whether the document is an OCSF event (it has a `class_uid`)."""
    return "class_uid" in document


def is_falcon_stream_event(document: Mapping[str, Any]) -> bool:
    """Whether the document is a Falcon Event Streams event (`metadata.eventType` beside an `event`)."""
    metadata = document.get("metadata")
    return isinstance(metadata, dict) and "eventType" in metadata and "event" in document


def is_falcon_alert_entity(document: Mapping[str, Any]) -> bool:
    """Whether the document is one alert entity of Falcon's Alerts API (it has a `composite_id`)."""
    return "composite_id" in document


def is_falcon_entities_response(document: Mapping[str, Any]) -> bool:
    """Whether the document is an Alerts API response: `meta` beside a list of `resources`, or nothing but
    CrowdStrike's response keys (`resources`, `errors`, `meta`) with a list of resources or of errors (an
    empty page, an error response)."""
    if "meta" in document and isinstance(document.get("resources"), list):
        return True
    only_response_keys = bool(document) and set(document) <= _FALCON_RESPONSE_KEYS
    has_list = isinstance(document.get("resources"), list) or isinstance(document.get("errors"), list)
    return only_response_keys and has_list


def is_falcon_alert(document: Mapping[str, Any]) -> bool:
    """Whether the document is one Falcon alert: a stream event or an alert entity."""
    return is_falcon_stream_event(document) or is_falcon_alert_entity(document)


def is_falcon_document(document: Mapping[str, Any]) -> bool:
    """Whether the document is any Falcon delivery vtriage reads."""
    return is_falcon_alert(document) or is_falcon_entities_response(document)


def is_workspace_alert(document: Mapping[str, Any]) -> bool:
    """Whether the document is one Google Workspace Alert Center `Alert`."""
    return "alertId" in document and any(
        key in document for key in ("customerId", "data", "type", "createTime", "metadata")
    )


def is_workspace_alert_list(document: Mapping[str, Any]) -> bool:
    """Whether the document is Alert Center's `alerts.list` output."""
    return isinstance(document.get("alerts"), list)


def is_pubsub_push(document: Mapping[str, Any]) -> bool:
    """Whether the document is a Cloud Pub/Sub push message (`message.data` beside a subscription, or
    Alert Center's `alertcenter_*` attributes)."""
    message = document.get("message")
    if not isinstance(message, dict) or "data" not in message:
        return False
    attributes = message.get("attributes")
    named = isinstance(attributes, dict) and any(str(key).startswith("alertcenter_") for key in attributes)
    return "subscription" in document or named


def is_empty_workspace_page(document: Mapping[str, Any]) -> bool:
    """Whether the document is a page of `alerts.list` with no alert: Google's JSON leaves an empty list
    out, so such a page is `{}`, or holds only `nextPageToken`."""
    return set(document) <= {"nextPageToken"}


def is_workspace_document(document: Mapping[str, Any]) -> bool:
    """Whether the document is any Google Workspace delivery vtriage reads."""
    return (
        is_workspace_alert(document)
        or is_workspace_alert_list(document)
        or is_pubsub_push(document)
        or is_empty_workspace_page(document)
    )
