"""OCSF intake: Detection and Security Findings become Alerts, with observables and refanged free text; passed
checks and findings dealt with are ignored; a finding's own device is never looked up."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.unit.timing import time_ratio
from vtriage.intake import FindingRefusal, IgnoredFinding, IntakeResult, read_document
from vtriage.models import Alert, Subject

EVENTS = Path(__file__).resolve().parents[2] / "events"
DEFANGED = "synthetic-ocsf-detection-finding-defanged.json"


def load() -> Any:
    return json.loads((EVENTS / DEFANGED).read_text())


def alerts_of(document: Any, **options: Any) -> list[Alert]:
    """The alerts of a document in which every finding is an alert or ignored: none is refused."""
    result = read_document(document, **options)
    assert result.refused == ()
    return list(result.alerts)


def iocs_of(document: Any) -> list[tuple[str, str, str | None]]:
    [alert] = alerts_of(document)
    return [(ioc.type.value, ioc.value, ioc.skipped_reason) for ioc in alert.iocs]


def test_defanged_sample_reads_as_the_detector_wrote_it() -> None:
    # Given the OCSF Detection Finding with defanged indicators in its text
    [alert] = alerts_of(load())

    # Then the alert's fields come from the finding
    assert alert.source == "ocsf"
    assert alert.id == "edr-7f3c2a91-4d5e-4b6a-9c8d-1e2f3a4b5c6d"
    assert alert.type == "Command and Control"
    assert alert.title == "Beacon to known command-and-control infrastructure"
    assert (alert.severity.score, alert.severity.label) == (7.0, "high")
    assert (alert.account, alert.region) == ("123456789012", "us-east-1")
    assert alert.created_at.isoformat() == "2025-03-18T16:01:41+00:00"
    assert alert.version == "2025-03-18T16:02:05+00:00"
    # And the observables come first (the device's host name WEB01, without a dot, is no domain and no
    # IOC), then the free text in order
    assert [(ioc.value, ioc.found_at, ioc.skipped_reason) for ioc in alert.iocs][:3] == [
        ("23.129.64.215", "observables[0].value", None),
        ("http://soclosebutyetqq.com/69.exe", "message", None),
        ("tawuhoju.com", "finding_info.desc", None),
    ]
    assert "WEB01" not in [ioc.value for ioc in alert.iocs]
    assert alert.notes == ()


def test_a_security_finding_reads_its_id_from_finding() -> None:
    # Given the same content as a class 2001 Security Finding (OCSF 1.0)
    document = load()
    document["class_uid"] = 2001
    document["finding"] = document.pop("finding_info")

    # When it is parsed, then the id and IOCs are the same
    [alert] = alerts_of(document)
    assert alert.id == "edr-7f3c2a91-4d5e-4b6a-9c8d-1e2f3a4b5c6d"
    assert ("domain", "tawuhoju.com", None) in iocs_of(document)


def test_security_hub_v2_event_and_custom_event_give_the_same_alert_as_the_bare_finding() -> None:
    # Given the finding alone, in Security Hub's `Findings Imported V2` event, and as a custom event's detail
    finding = load()
    v2 = {
        "version": "0",
        "id": "e51603d1-054a-ad9d-9f49-8d82d6e81acf",
        "detail-type": "Findings Imported V2",
        "source": "aws.securityhub",
        "account": "123456789012",
        "time": "2025-03-18T16:02:07Z",
        "region": "us-east-1",
        "resources": [],
        "detail": {"findings": [copy.deepcopy(finding)]},
    }
    custom = {**v2, "detail-type": "EDR Detection", "source": "example.edr", "detail": copy.deepcopy(finding)}

    # When each is parsed, then it is the same alert
    [from_bare] = alerts_of(finding)
    assert alerts_of(v2) == [from_bare]
    assert alerts_of(custom) == [from_bare]


@pytest.mark.parametrize(
    ("severity_id", "score", "label"),
    [
        (0, 0.0, "low"),
        (1, 1.0, "low"),
        (2, 2.0, "low"),
        (3, 5.0, "medium"),
        (4, 7.0, "high"),
        (5, 9.0, "critical"),
        (6, 10.0, "critical"),
        (99, 0.0, "low"),
    ],
)
def test_severity_id_maps_into_the_matching_band(severity_id: int, score: float, label: str) -> None:
    document = load()
    document["severity_id"] = severity_id

    [alert] = alerts_of(document)

    assert (alert.severity.score, alert.severity.label) == (score, label)


@pytest.mark.parametrize(
    ("severity_id", "caption", "shown"),
    [
        (1, "Informational", "informational"),
        (None, "Informational", "informational"),
        (0, "Unknown", "low"),
        (2, "Low", "low"),
        (99, "Other", "low"),
    ],
)
def test_an_informational_finding_is_shown_informational_and_ranked_low(
    severity_id: int | None, caption: str, shown: str
) -> None:
    # Given the Detection Finding rated by its severity_id, or by its caption alone
    document = load()
    document["severity_id"] = severity_id
    document["severity"] = caption
    if severity_id is None:
        del document["severity_id"]

    # When it is read
    [alert] = alerts_of(document)

    # Then a person reads "informational" where OCSF says Informational (id 1), and triage ranks it low
    assert alert.severity.shown_label == shown
    assert alert.severity.label == "low"


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("status_id", 3, "status_id is 3 (Suppressed)"),
        ("status_id", 4, "status_id is 4 (Resolved)"),
        ("status_id", 5, "status_id is 5 (Archived)"),
        ("status_id", 6, "status_id is 6 (Deleted)"),
        ("state_id", 4, "state_id is 4 (Resolved, OCSF 1.0.0-rc.2)"),
        ("state_id", 3, "state_id is 3 (Suppressed, OCSF 1.0.0-rc.2)"),
        ("status_code", "PASS", "a passed check: status_code is 'PASS'"),
        (
            "compliance",
            {"status_id": 1, "status": "Pass"},
            "a passed check: compliance.status_id is 1 (Pass)",
        ),
    ],
)
def test_a_finding_dealt_with_or_a_passed_check_is_ignored_with_its_reason(
    field: str, value: Any, reason: str
) -> None:
    # Given a finding suppressed, resolved, archived or deleted (by today's status_id or rc.2's state_id),
    # or a check that passed (Prowler's status_code PASS, a compliance status of Pass)
    document = load()
    document[field] = value
    if field != "status_id":
        del document["status_id"]
    del document["status"]  # the caption of status_id, which the sample gives as "New"

    # When it is read
    result = read_document(document)

    # Then it makes no ticket: it is ignored, with the field that says so
    assert (result.alerts, result.refused) == ((), ())
    assert result.ignored == (
        IgnoredFinding(where="", reason=reason, alert_id="edr-7f3c2a91-4d5e-4b6a-9c8d-1e2f3a4b5c6d"),
    )


def test_a_guardduty_finding_in_ocsf_can_be_skipped_naming_the_template_parameter() -> None:
    # Given the OCSF sample as GuardDuty's own finding, as Security Hub exports it
    document = load()
    document["metadata"]["product"]["name"] = "GuardDuty"

    # When GuardDuty findings seen through Security Hub are skipped
    result = read_document(document, skip_guardduty_in_securityhub=True)

    # Then it makes no alert, and its reason names the template parameter that reads them instead
    assert result.alerts == ()
    assert [ignored.reason for ignored in result.ignored] == [
        "a GuardDuty finding seen through Security Hub: GuardDuty reaches the queue directly (to read"
        " GuardDuty's findings through Security Hub instead, set the template parameter"
        " GuardDutyFindingsVia=securityhub; SKIP_GUARDDUTY_IN_SECURITYHUB)"
    ]
    # And by default it is an alert
    assert len(alerts_of(document)) == 1


def test_a_failed_check_is_triaged() -> None:
    document = load()
    document["status_code"] = "FAIL"
    document["compliance"] = {"status_id": 3, "status": "Fail"}

    assert len(alerts_of(document)) == 1


def test_the_findings_own_device_and_resources_are_never_looked_up() -> None:
    # Given a finding naming its own device's public address and a resource whose uid is an address,
    # both also given as observables
    document = load()
    document["device"]["ip"] = "54.210.17.33"
    document["resources"] = [{"uid": "3.120.0.7", "type": "AwsEc2Instance"}]
    document["observables"] = [
        {"name": "device.ip", "type_id": 2, "value": "54.210.17.33"},
        {"name": "resources[0].uid", "type_id": 2, "value": "3.120.0.7"},
        {"name": "dst_endpoint.ip", "type_id": 2, "value": "23.129.64.215"},
    ]

    # When it is read, then the finding's own addresses are skipped as its own and the remote one looked up
    assert iocs_of(document)[:3] == [
        ("ip", "54.210.17.33", "address of the alert's own resource"),
        ("ip", "3.120.0.7", "address of the alert's own resource"),
        ("ip", "23.129.64.215", None),
    ]


def test_an_observable_named_as_the_device_is_its_own_even_without_a_device_object() -> None:
    document = load()
    del document["device"]
    document["observables"] = [{"name": "device.ip", "type_id": 2, "value": "54.210.17.33"}]

    assert iocs_of(document)[0] == ("ip", "54.210.17.33", "address of the alert's own resource")


def test_observables_by_type_id_hash_kind_by_length() -> None:
    # Given observables of every type VirusTotal knows, and of others it does not
    document = load()
    del document["device"]
    document["message"] = document["finding_info"]["desc"] = document["finding_info"]["title"] = (
        "nothing here"
    )
    md5 = "D41D8CD98F00B204E9800998ECF8427F"
    document["observables"] = [
        {"name": "a", "type_id": 1, "value": "Tawuhoju.COM"},
        {"name": "b", "type_id": 2, "value": "2606:4700:4700:0:0:0:0:1111"},
        {"name": "c", "type_id": 6, "value": "hxxp://soclosebutyetqq[.]com/69.exe"},
        {"name": "d", "type_id": 8, "value": md5},
        {"name": "e", "type_id": 8, "value": "a" * 128},
        {"name": "f", "type_id": 1, "value": "WEB01"},
        {"name": "g", "type_id": 4, "value": "alice"},
        {"name": "h", "type_id": 5, "value": "alice@tawuhoju.com"},
    ]

    # When it is parsed, then each known type gives its canonical IOC; what VirusTotal cannot look up
    # (a sha512) is kept skipped with the reason; a host name without a dot (a machine's name on its own
    # network) is no domain, and other types give nothing
    assert iocs_of(document) == [
        ("domain", "tawuhoju.com", None),
        ("ip", "2606:4700:4700::1111", None),
        ("url", "http://soclosebutyetqq.com/69.exe", None),
        ("file", md5.lower(), None),
        (
            "file",
            "a" * 128,
            "a sha512 (128 hex digits): VirusTotal looks files up by md5, sha1 or sha256 only",
        ),
    ]


def test_a_host_name_without_a_dot_is_no_domain_and_every_real_domain_stays_one() -> None:
    # Given Hostname observables (type_id 1): bare machine names, and names with a dot, defanged or not
    document = load()
    del document["device"]
    document["message"] = document["finding_info"]["desc"] = document["finding_info"]["title"] = "nothing"
    document["observables"] = [
        {"name": "dst_endpoint.hostname", "type_id": 1, "value": "FILESRV"},
        {"name": "device.hostname", "type_id": 1, "value": "WEB01."},
        {"name": "src_endpoint.hostname", "type_id": 1, "value": "tawuhoju[.]com"},
        {"name": "dst_endpoint.domain", "type_id": 1, "value": "ip-10-0-1-25.ec2.internal"},
        {"name": "dst_endpoint.ip", "type_id": 1, "value": "2606:4700:4700::1111"},
    ]

    # When it is parsed
    iocs = iocs_of(document)

    # Then a name without a dot (a machine's name on its own network) gives no IOC at all; a name with a
    # dot is a domain as before (looked up, or skipped with the reason it is internal)
    assert [value for _, value, _ in iocs] == [
        "tawuhoju.com",
        "ip-10-0-1-25.ec2.internal",
        "2606:4700:4700::1111",
    ]
    assert iocs[0] == ("domain", "tawuhoju.com", None)


def test_a_hostile_observable_is_kept_skipped_and_the_finding_goes_on() -> None:
    document = load()
    document["observables"][0]["value"] = "23.129.64.215/../../files"

    [alert] = alerts_of(document)

    assert (alert.iocs[0].value, alert.iocs[0].found_at, alert.iocs[0].skipped_reason) == (
        "23.129.64.215/../../files",
        "observables[0].value",
        "a network prefix ('/') is not an IP address: '23.129.64.215/../../files'",
    )


def test_hostile_free_text_is_never_a_reason_to_refuse_and_never_an_ioc() -> None:
    # Given prose full of things that are not indicators, or hostile ones
    document = load()
    document["observables"] = []
    document["message"] = "see evil.com/../../files/x and W64/BURNTCIGAR.CA!tr; setup.py ran; v1.2"
    document["finding_info"]["desc"] = "host\r\nX: evil[.]com\u200b and 999.1.1.1 and edr-7f3c2a91"
    document["finding_info"]["title"] = "x" * 70000

    # When it is parsed, then it is accepted with only the clean indicators
    assert iocs_of(document) == []


def test_the_findings_own_uid_is_not_taken_for_a_hash() -> None:
    # Given a finding whose uid is 32 hex digits, quoted in its own description
    document = load()
    uid = "963561db131bebb39f8f302239bf6f13"
    document["finding_info"]["uid"] = uid
    document["finding_info"]["desc"] = f"Finding {uid} matched."
    document["observables"] = []
    document["message"] = ""

    assert iocs_of(document) == []


def _bad_class(document: dict[str, Any]) -> None:
    document["class_uid"] = 4001


def _class_as_list(document: dict[str, Any]) -> None:
    document["class_uid"] = [2004]


def _no_uid(document: dict[str, Any]) -> None:
    del document["finding_info"]["uid"]


def _uid_as_number(document: dict[str, Any]) -> None:
    document["finding_info"]["uid"] = 42


def _no_finding_info(document: dict[str, Any]) -> None:
    del document["finding_info"]


@pytest.mark.parametrize(
    ("break_it", "reason"),
    [
        (_bad_class, "class_uid: unsupported OCSF class 4001: expected 2001 (Security Finding)"),
        (_class_as_list, "class_uid: unsupported OCSF class a list: expected 2001 (Security Finding)"),
        (_no_uid, "finding_info.uid: missing"),
        (_uid_as_number, "finding_info.uid: expected a string, got a number"),
        (_no_finding_info, "finding_info: missing"),
    ],
    ids=lambda value: getattr(value, "__name__", None),
)
def test_a_finding_that_cannot_be_identified_is_refused_naming_the_field(break_it: Any, reason: str) -> None:
    document = load()
    break_it(document)

    result = read_document(document)

    assert (result.alerts, result.ignored) == ((), ())
    [refused] = result.refused
    assert refused.where == ""
    assert refused.reason.startswith(reason)


def _severity_word(document: dict[str, Any]) -> None:
    document["severity_id"] = "High"


def _time_as_text(document: dict[str, Any]) -> None:
    document["finding_info"]["modified_time"] = "yesterday"


def _account_with_slash(document: dict[str, Any]) -> None:
    document["cloud"]["account"]["uid"] = "../123"


@pytest.mark.parametrize(
    ("break_it", "not_actionable"),
    [
        (_severity_word, "severity_id: expected one of 0, 1, 2, 3, 4, 5, 6, 99, got 'High'"),
        (
            _time_as_text,
            "finding_info.modified_time: expected an ISO 8601 timestamp with a time zone, got 'yesterday'",
        ),
        (
            _account_with_slash,
            "cloud.account.uid: expected at most 64 letters, digits and ._:-, got '../123'",
        ),
    ],
    ids=lambda value: getattr(value, "__name__", None),
)
def test_a_malformed_identity_field_keeps_the_alert_noted_and_never_acted_on(
    break_it: Any, not_actionable: str
) -> None:
    document = load()
    break_it(document)

    [alert] = alerts_of(document)

    assert alert.not_actionable == (not_actionable,)
    assert len(alert.iocs) == 6


def test_a_severity_id_that_cannot_be_read_falls_back_to_the_caption_then_to_critical() -> None:
    # Given a finding whose severity_id is a word, with and without the `severity` caption
    with_caption = load()
    with_caption["severity_id"] = "High"
    without = load()
    without["severity_id"] = "High"
    del without["severity"]

    # Then the caption stands in, else critical, so that a person sees it
    assert [alert.severity.label for alert in alerts_of(with_caption)] == ["high"]
    assert [alert.severity.label for alert in alerts_of(without)] == ["critical"]


def test_a_finding_without_time_takes_its_modified_time() -> None:
    document = load()
    del document["time"]

    [alert] = alerts_of(document)

    assert alert.version == "2025-03-18T16:02:05+00:00"
    assert alert.not_actionable == ()


def test_a_finding_from_outside_aws_has_an_unknown_account_and_region() -> None:
    document = load()
    del document["cloud"]

    [alert] = alerts_of(document)

    assert (alert.account, alert.region) == ("unknown", "unknown")
    assert alert.not_actionable == ("cloud.account.uid: missing", "cloud.region: missing")


def test_a_finding_of_another_cloud_keeps_its_account_and_is_never_acted_on() -> None:
    # Given a finding on an Azure subscription, its times in seconds (OCSF says milliseconds)
    document = load()
    document["cloud"] = {"provider": "azure", "account": {"uid": "6c63340e-8a77-447a-9a9f-6c8277e6bc83"}}
    document["time"] = 1730901296
    del document["finding_info"]["created_time"], document["finding_info"]["modified_time"]

    # When it is read
    [alert] = alerts_of(document)

    # Then the subscription is its account, the time read as seconds, and nothing runs automatically
    assert alert.account == "6c63340e-8a77-447a-9a9f-6c8277e6bc83"
    assert alert.updated_at.isoformat() == "2024-11-06T13:54:56+00:00"
    assert alert.not_actionable == (
        "time: 1730901296 is seconds, not the milliseconds OCSF specifies",
        "cloud.account.uid: '6c63340e-8a77-447a-9a9f-6c8277e6bc83' is no AWS account",
        "cloud.region: missing",
    )


def test_an_array_of_findings_gives_each_its_own_fate() -> None:
    # Given a JSON array of OCSF findings, as Prowler writes its OCSF output: a failed check, a passed
    # one, and an item that is no finding
    failed = load()
    failed["status_code"] = "FAIL"
    passed = copy.deepcopy(failed)
    passed["finding_info"]["uid"] = "prowler-check-passed"
    passed["status_code"] = "PASS"
    document = [failed, passed, {"hello": "world"}]

    # When it is read
    result: IntakeResult = read_document(document)

    # Then each stands once: an alert, an ignored passed check, and a refusal naming the item
    assert [alert.id for alert in result.alerts] == ["edr-7f3c2a91-4d5e-4b6a-9c8d-1e2f3a4b5c6d"]
    assert [(ignored.where, ignored.alert_id) for ignored in result.ignored] == [
        ("[1]", "prowler-check-passed")
    ]
    assert result.refused == (
        FindingRefusal(where="[2]", reason="[2]: unknown shape: expected a finding; got keys ['hello']"),
    )


def test_a_v2_event_with_a_finding_that_cannot_be_read_costs_only_that_finding() -> None:
    finding = load()
    broken = copy.deepcopy(finding)
    del broken["finding_info"]
    event = {
        "version": "0",
        "detail-type": "Findings Imported V2",
        "source": "aws.securityhub",
        "account": "123456789012",
        "region": "us-east-1",
        "detail": {"findings": [broken, finding]},
    }

    result = read_document(event)

    assert [alert.id for alert in result.alerts] == ["edr-7f3c2a91-4d5e-4b6a-9c8d-1e2f3a4b5c6d"]
    assert result.refused == (
        FindingRefusal(where="detail.findings[0]", reason="detail.findings[0].finding_info: missing"),
    )


def test_free_text_is_read_in_time_linear_in_its_length() -> None:
    # Given findings whose message ends in a long run of closing brackets (trimming it was quadratic)
    document = load()

    def read(size: int) -> IntakeResult:
        document["message"] = "beacon to tawuhoju[.]com" + ")" * size
        document["finding_info"]["desc"] = "(" * size + "evil.com" + "." * size
        return read_document(document)

    # When each is read, then 8 times the length costs about 8 times the time, not 64
    assert time_ratio(read, 4000) < 30


# --- ids as vendors write them; acknowledged before anything could refuse; free text past the cap ------

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
PROWLER_MUTED = "defectdojo__aws_prowler_v3plus_many_vuln_after_4_5_0.ocsf.json"
UID_VARIANTS = "synthetic-ocsf-prowler-uid-variants.json"


def load_corpus(name: str) -> Any:
    return json.loads((CORPUS / name).read_text())


def test_finding_ids_as_vendors_write_them_are_accepted_each_its_own_case() -> None:
    # Given failed Prowler checks whose uids are 129 characters long, hold a space, a '#' or a '|'
    document = load_corpus(UID_VARIANTS)
    written = [finding["finding_info"]["uid"] for finding in document]

    # When they are read
    result = read_document(document)

    # Then none is refused: each is an alert under the id its vendor wrote, with a case of its own
    assert (result.refused, result.ignored) == ((), ())
    assert [alert.id for alert in result.alerts] == written
    assert len({alert.case_id for alert in result.alerts}) == len(written)
    assert {len(written[0]), len(written[4])} == {129}


def test_security_hubs_own_control_finding_arn_is_an_ocsf_id() -> None:
    # Given Security Hub's OCSF finding (ocsf/examples), still active and failing, under the 155-character
    # ARN that Security Hub gives an AFSBP control finding (as in the ASR solution's test data)
    document = load_corpus("ocsf-examples__security_hub_security_finding.json")
    document["state_id"] = 1
    document["compliance"]["status"] = "FAILED"
    [asff] = load_corpus("asr__afsbp-ec2.7_imported_envelope.json")["detail"]["findings"]
    document["finding"]["uid"] = asff["Id"]

    # When it is read, then it is an alert under that ARN
    [alert] = alerts_of(document)
    assert alert.id == asff["Id"]
    assert len(alert.id) > 128


def test_a_muted_prowler_check_is_ignored_not_refused_whatever_its_id() -> None:
    # Given Prowler's real output: three failed checks, muted (status_id 3), the first with a uid of 129
    # characters; two of them carry the caption "New"
    document = load_corpus(PROWLER_MUTED)

    # When it is read
    result = read_document(document)

    # Then each is ignored with the field that says so, the disagreeing caption shown, and none refused
    assert (result.alerts, result.refused) == ((), ())
    assert [(ignored.where, ignored.reason) for ignored in result.ignored] == [
        ("[0]", "[0].status_id is 3 (Suppressed; [0].status says 'New')"),
        ("[1]", "[1].status_id is 3 (Suppressed; [1].status says 'New')"),
        ("[2]", "[2].status_id is 3 (Suppressed)"),
    ]
    assert result.ignored[0].alert_id == document[0]["finding_info"]["uid"]


@pytest.mark.parametrize("break_it", ["no uid", "uid a number", "no finding_info"])
def test_an_acknowledged_finding_is_ignored_even_when_it_could_not_be_identified(break_it: str) -> None:
    # Given Prowler's muted check whose id is missing or unreadable
    document = load_corpus(PROWLER_MUTED)[0]
    if break_it == "no uid":
        del document["finding_info"]["uid"]
    elif break_it == "uid a number":
        document["finding_info"]["uid"] = 42
    else:
        del document["finding_info"]

    # When it is read, then it is ignored as muted: nobody needs a refusal of a finding already dealt with
    result = read_document(document)
    assert (result.alerts, result.refused) == ((), ())
    [ignored] = result.ignored
    assert ignored.reason.startswith("status_id is 3 (Suppressed")
    assert ignored.alert_id is None


def test_free_text_past_the_cap_is_noted_with_where_it_was_cut() -> None:
    # Given SecurityScorecard's malware finding (ocsf/examples), whose message names the sinkholed domain,
    # read from its message alone (no observables), then again behind 70,000 characters of log lines
    document = load_corpus("ocsf-examples__ssc_malware_infection_detected_sample.json")[0]
    del document["observables"]
    document["finding"]["desc"] = document["finding"]["title"] = "infection found"
    [alert] = alerts_of(copy.deepcopy(document))
    padding = "Nov 15 17:59:59 sinkhole dns[1]: query answered from the sinkhole zone\n"
    document["message"] = padding * (70_000 // len(padding) + 1) + document["message"]

    # When it is read
    [cut] = alerts_of(document)

    # Then the domain past the cap is not looked up, and the alert says the text was cut, and where
    assert ("open-internet.nl", None) in {(ioc.value, ioc.skipped_reason) for ioc in alert.iocs}
    assert "open-internet.nl" not in {ioc.value for ioc in cut.iocs}
    [note] = [note for note in cut.notes if note.startswith("message: ")]
    match = re.fullmatch(
        r"message: ([0-9,]+) characters of free text, read for IOCs only up to character ([0-9,]+)"
        r" \(the cap is 65,536\): an IOC after that is not looked up",
        note,
    )
    assert match is not None, note
    length, extent = (int(group.replace(",", "")) for group in match.groups())
    assert length == len(document["message"])
    # cut at the cap, or just before it where a line of the padding ends
    assert 65_536 - len(padding) < extent <= 65_536
    assert document["message"][extent].isspace()
    assert not any(note.startswith("message: ") for note in alert.notes)


def test_a_token_the_cap_cuts_through_is_not_read_as_another_indicator() -> None:
    # Given a message whose 65,536th character falls inside the domain 'evil-c2.com' (cut: 'evil-c2.co')
    document = load()
    head = "x " * ((65_536 - len("see evil-c2.co")) // 2)
    document["message"] = head + "see evil-c2.com and more"
    document["finding_info"]["desc"] = "none"
    document["finding_info"]["title"] = "none"

    # When it is read
    [alert] = alerts_of(document)

    # Then neither the cut value nor the whole one is looked up from the message, and the cut is noted
    from_message = {ioc.value for ioc in alert.iocs if ioc.found_at == "message"}
    assert not from_message & {"evil-c2.co", "evil-c2.com"}
    assert any(note.startswith("message: ") and "an IOC after that" in note for note in alert.notes)


# --- what the alert is about: vtriage acts on no OCSF resource ----------------------------------------

PROWLER = "secobserve__prowler_multiple_findings.json"
AKS_DEV = (
    "/subscriptions/6c63340e-8a77-447a-9a9f-6c8277e6bc83/resourcegroups/rg-aks/providers/"
    "Microsoft.ContainerService/managedClusters/aks-dev"
)


def test_prowlers_findings_name_the_cluster_they_are_about() -> None:
    # Given Prowler's real JSON-OCSF output on AKS clusters
    document = json.loads((CORPUS / PROWLER).read_text())

    # When it is read
    alerts = alerts_of(document)

    # Then each alert names its cluster by its type, uid and name
    assert alerts[0].subjects == (
        Subject(type="Microsoft.ContainerService/ManagedClusters", id=AKS_DEV, name="aks-dev"),
    )
    assert [alert.subjects[0].name for alert in alerts] == ["aks-dev", "aks-dev", "aks-prod"]


def test_a_resource_not_as_ocsf_documents_it_is_noted_and_the_others_kept() -> None:
    # Given the defanged sample with three resources: a string, one with neither uid nor name, and a
    # Lambda function named by its uid alone
    document = load()
    document["resources"] = [
        "arn:aws:lambda:us-east-1:123456789012:function:loose",
        {"type": "AwsLambdaFunction"},
        {"type": "AwsLambdaFunction", "uid": "arn:aws:lambda:us-east-1:123456789012:function:kept"},
    ]

    # When it is read
    [alert] = alerts_of(document)

    # Then the function named is kept, and the two others are noted with their place
    assert alert.subjects == (
        Subject(type="AwsLambdaFunction", id="arn:aws:lambda:us-east-1:123456789012:function:kept"),
    )
    notes = " ".join(alert.notes)
    assert "resources[0]: expected an object, got a string; not kept" in notes
    assert "resources[1].uid or resources[1].name: missing" in notes


OKTA_STUFFING = "msaad00-cloud-ai-security-skills__okta_credential_stuffing_findings.ocsf.json"
OKTA_PUBLIC = "synthetic-ocsf-okta-stuffing-public-addresses.json"
FAILED_LOGIN_SOURCES = ["185.220.101.34", "45.137.21.9", "185.220.101.35", "45.137.21.10", "185.220.101.36"]


def observables_only(observables: list[Any]) -> Any:
    """The defanged sample with nothing to read but `observables` (no device, no IOC in its text)."""
    document = load()
    del document["device"]
    document["message"] = document["finding_info"]["desc"] = document["finding_info"]["title"] = "nothing"
    document["observables"] = observables
    return document


def test_a_real_findings_observables_without_type_id_are_read_by_their_caption_and_noted() -> None:
    # Given a real Detection Finding (an Okta credential-stuffing detector's) whose observables carry only
    # the `type` caption, and the same with its failed-login source addresses public
    real = load_corpus(OKTA_STUFFING)
    public = load_corpus(OKTA_PUBLIC)

    # When each is read
    [alert] = alerts_of(real)
    [public_alert] = alerts_of(public)

    # Then the six 'IP Address' observables are IOCs, each at its place: the public ones looked up, the
    # documentation ones kept with the reason
    assert [(ioc.value, ioc.found_at, ioc.skipped_reason) for ioc in public_alert.iocs][:6] == [
        ("198.51.100.99", "observables[4].value", "documentation address (RFC 5737)"),
        *(
            (address, f"observables[{index}].value", None)
            for index, address in enumerate(FAILED_LOGIN_SOURCES, 5)
        ),
    ]
    assert [ioc.found_at for ioc in alert.iocs][:6] == [
        f"observables[{index}].value" for index in range(4, 10)
    ]
    # And the case says what was read by its caption, and what was not read, and where
    assert alert.notes[:2] == (
        "observables[4, 5, 6, 7, 8, 9].type_id: missing (OCSF requires it); the type caption 'IP Address'"
        " stands in",
        "observables[0, 1, 2, 3, 10, 11, 12, 13 and 2 more].type_id: missing (OCSF requires it), and the type"
        " caption ('User Name', 'Other') is none VirusTotal looks up: not read for IOCs",
    )


@pytest.mark.parametrize(
    ("caption", "value", "ioc"),
    [
        ("IP Address", "45.137.21.9", ("ip", "45.137.21.9")),
        ("ip address", "45.137.21.9", ("ip", "45.137.21.9")),
        (" HOSTNAME ", "tawuhoju.com", ("domain", "tawuhoju.com")),
        ("URL String", "hxxp://soclosebutyetqq[.]com/69.exe", ("url", "http://soclosebutyetqq.com/69.exe")),
        ("Hash", "44D88612FEA8A8F36DE82E1278ABB02F", ("file", "44d88612fea8a8f36de82e1278abb02f")),
        (
            "File Hash",
            "3395856ce81f2b7382dee72602f798b642f14140",
            ("file", "3395856ce81f2b7382dee72602f798b642f14140"),
        ),
    ],
)
def test_each_caption_ocsf_gives_a_type_virustotal_knows_stands_in_whatever_its_case(
    caption: str, value: str, ioc: tuple[str, str]
) -> None:
    # Given an observable without type_id whose caption is OCSF's for a type VirusTotal looks up
    document = observables_only([{"name": "src_endpoint.ip", "type": caption, "value": value}])

    # When it is read
    [alert] = alerts_of(document)

    # Then it is that IOC, looked up, and the missing type_id noted
    assert [(item.type.value, item.value, item.skipped_reason) for item in alert.iocs] == [(*ioc, None)]
    assert alert.notes == (
        f"observables[0].type_id: missing (OCSF requires it); the type caption {caption.strip()!r} stands in",
    )


@pytest.mark.parametrize(
    ("caption", "value", "ioc"),
    [
        ("IP  Address", "45.137.21.9", ("ip", "45.137.21.9")),
        ("IP\u00a0Address", "45.137.21.9", ("ip", "45.137.21.9")),
        ("IP\t\u2003Address", "45.137.21.9", ("ip", "45.137.21.9")),
        ("ip_address", "45.137.21.9", ("ip", "45.137.21.9")),
        ("IP-Address", "45.137.21.9", ("ip", "45.137.21.9")),
        ("IPv4 Address", "45.137.21.9", ("ip", "45.137.21.9")),
        ("IPV6_ADDRESS", "2001:4860:4860::8888", ("ip", "2001:4860:4860::8888")),
        ("url_string", "http://soclosebutyetqq.com/69.exe", ("url", "http://soclosebutyetqq.com/69.exe")),
        ("File-Hash", "44d88612fea8a8f36de82e1278abb02f", ("file", "44d88612fea8a8f36de82e1278abb02f")),
    ],
)
def test_a_caption_spelt_with_other_spaces_underscores_or_hyphens_or_naming_the_ip_family_stands_in(
    caption: str, value: str, ioc: tuple[str, str]
) -> None:
    # Given an observable without type_id whose caption is OCSF's with its words apart as producers write
    # them (two spaces, a no-break space, an underscore, a hyphen), or 'IPv4/IPv6 Address'
    document = observables_only([{"name": "src_endpoint.ip", "type": caption, "value": value}])

    # When it is read
    [alert] = alerts_of(document)

    # Then it is that IOC, looked up, the caption as written named in the note
    assert [(item.type.value, item.value, item.skipped_reason) for item in alert.iocs] == [(*ioc, None)]
    assert alert.notes == (
        f"observables[0].type_id: missing (OCSF requires it); the type caption {caption!r} stands in",
    )


def test_captions_that_differ_only_by_their_spaces_are_one_note_naming_every_observable() -> None:
    # Given 'IP Address' written three ways and 'IPv4 Address', none with a type_id
    document = observables_only(
        [
            {"name": "a", "type": "ip address", "value": "45.137.21.9"},
            {"name": "b", "type": "IP  Address", "value": "45.137.21.10"},
            {"name": "c", "type": "IPv4 Address", "value": "185.220.101.35"},
            {"name": "d", "type": "ip_address", "value": "185.220.101.36"},
        ]
    )

    # When it is read, then every address is looked up, one note per caption, as first written
    [alert] = alerts_of(document)
    assert [ioc.value for ioc in alert.iocs] == [
        "45.137.21.9",
        "45.137.21.10",
        "185.220.101.35",
        "185.220.101.36",
    ]
    assert alert.notes == (
        "observables[0, 1, 3].type_id: missing (OCSF requires it); the type caption 'ip address' stands in",
        "observables[2].type_id: missing (OCSF requires it); the type caption 'IPv4 Address' stands in",
    )


def test_a_caption_that_only_looks_like_a_type_virustotal_knows_is_not_read() -> None:
    # Given captions that are no OCSF type's once their spaces are made one: a bare family, words run
    # together, a type OCSF has that VirusTotal does not look up
    document = observables_only(
        [
            {"name": "a", "type": "IPv4", "value": "45.137.21.9"},
            {"name": "b", "type": "IPAddress", "value": "45.137.21.10"},
            {"name": "c", "type": "MAC_Address", "value": "18:36:F3:98:4F:9A"},
        ]
    )

    # When it is read, then nothing is guessed, and each caption is named
    [alert] = alerts_of(document)
    assert alert.iocs == ()
    assert alert.notes == (
        "observables[0, 1, 2].type_id: missing (OCSF requires it), and the type caption ('IPv4', 'IPAddress',"
        " 'MAC_Address') is none VirusTotal looks up: not read for IOCs",
    )


def test_every_distinct_caption_not_read_is_named_up_to_twenty_and_the_rest_counted() -> None:
    # Given observables without type_id under 23 captions no type VirusTotal knows has, five of them
    # repeats of another's words with other case or spacing
    captions = [f"Custom Type {index}" for index in range(23)]
    repeats = ["custom_type_0", "CUSTOM  TYPE 1", "Custom-Type-2", "custom type 3", "Custom\u00a0Type 4"]
    document = observables_only(
        [{"name": "x", "type": caption, "value": "45.137.21.9"} for caption in [*captions, *repeats]]
    )

    # When it is read
    [alert] = alerts_of(document)

    # Then the note names the first twenty distinct captions, as first written, and counts the rest
    named = ", ".join(repr(caption) for caption in captions[:20])
    assert alert.notes == (
        "observables[0, 1, 2, 3, 4, 5, 6, 7 and 20 more].type_id: missing (OCSF requires it), and the type"
        f" caption ({named} and 3 more) is none VirusTotal looks up: not read for IOCs",
    )


@pytest.mark.parametrize(
    ("type_id", "said"),
    [
        ("2", "expected an integer, got '2'"),
        (-1, "-1 is no OCSF observable type"),
        (2.0, "expected an integer, got 2.0"),
        (99, "99 (Other)"),
        (0, "0 (Unknown)"),
    ],
)
def test_a_type_id_that_names_no_type_lets_the_caption_stand_in_saying_what_was_wrong(
    type_id: Any, said: str
) -> None:
    # Given an 'IP Address' observable whose type_id is no OCSF type, or says Unknown or Other
    document = observables_only(
        [{"name": "src_endpoint.ip", "type_id": type_id, "type": "IP Address", "value": "45.137.21.9"}]
    )

    # When it is read, then the caption stands in, noted with what the type_id said
    [alert] = alerts_of(document)
    assert [(ioc.value, ioc.skipped_reason) for ioc in alert.iocs] == [("45.137.21.9", None)]
    assert alert.notes == (f"observables[0].type_id: {said}; the type caption 'IP Address' stands in",)


@pytest.mark.parametrize(
    ("type_id", "caption", "value", "read_as", "said"),
    [
        (4, "IP Address", "23.129.64.215", "ip", "the value is an IP address, read as the caption says"),
        (2, "Hostname", "tawuhoju.com", "domain", "the value is a domain, read as the caption says"),
        (1, "IP Address", "185.220.101.34", "ip", "the value is an IP address, read as the caption says"),
        (8, "URL String", "http://tawuhoju.com/x", "url", "the value is a URL, read as the caption says"),
        (
            2,
            "Hostname",
            "45.137.21.9",
            "ip",
            "the value is not a domain: read as type_id says (an IP address)",
        ),
        (
            2,
            "Hostname",
            "not an address",
            "ip",
            "the value is neither a domain nor an IP address: read as type_id says (an IP address)",
        ),
        (4, "Hostname", "alice", None, "the value is not a domain, and type_id 4 is no IOC type: not read"),
    ],
)
def test_a_type_id_and_a_caption_that_disagree_are_noted_and_the_value_read_as_the_type_it_is(
    type_id: int, caption: str, value: str, read_as: str | None, said: str
) -> None:
    # Given an observable whose type_id and type caption name two types (a User Name captioned 'IP
    # Address', an IP Address captioned 'Hostname', ...)
    document = observables_only([{"name": "x", "type_id": type_id, "type": caption, "value": value}])

    # When it is read
    [alert] = alerts_of(document)

    # Then the value is read as the caption's type when it is of that type and not of the type_id's, else
    # as the type_id says; and the case says where the two disagree, and what was read
    assert [ioc.type.value for ioc in alert.iocs] == ([read_as] if read_as else [])
    assert alert.notes == (
        f"observables[0]: type_id {type_id} and the type caption '{caption}' disagree; {said}",
    )


def test_an_other_observable_with_its_sources_own_caption_says_nothing_more() -> None:
    # Given an Other (99) observable with its source's own caption, as QRadar writes them, and a User Name
    # (4) captioned as OCSF does
    document = observables_only(
        [
            {"name": "offense_type", "type_id": 99, "type": "Other", "value": "45.137.21.10"},
            {"name": "user.name", "type_id": 4, "type": "User Name", "value": "45.137.21.9"},
        ]
    )

    # When it is read, then neither is an IOC, and nothing is noted: their types are given
    [alert] = alerts_of(document)
    assert (alert.iocs, alert.notes) == ((), ())


def test_a_caption_in_full_width_letters_is_read_and_one_hidden_by_invisible_characters_is_noted() -> None:
    # Given Unknown (0) observables captioned in full-width letters, with a zero-width space inside a word,
    # beside a zero-width space between words, with terminal controls, and reversed by a bidi override
    document = observables_only(
        [
            {"name": "a", "type_id": 0, "type": "\uff29\uff30 Address", "value": "185.220.101.37"},
            {"name": "b", "type_id": 0, "type": "IP\u200bAddress", "value": "45.137.21.10"},
            {"name": "c", "type_id": 0, "type": "IP\u200b Address", "value": "45.137.21.9"},
            {"name": "d", "type_id": 0, "type": "IP Address\x1b[31m RED", "value": "185.220.101.36"},
            {"name": "e", "type_id": 0, "type": "\u202eIP Address", "value": "185.220.101.38"},
        ]
    )

    # When it is read
    [alert] = alerts_of(document)

    # Then the full-width caption and the one whose zero-width space sits beside a real one are read
    # (noted once: one caption), and every other observable is named in a note, its caption escaped,
    # never dropped without a word
    assert [ioc.value for ioc in alert.iocs] == ["185.220.101.37", "45.137.21.9"]
    assert alert.notes == (
        "observables[0, 2].type_id: 0 (Unknown); the type caption '\uff29\uff30 Address' stands in",
        "observables[1, 3, 4].type_id: 0 (Unknown), and the type caption ('IP\\u200bAddress', 'IP"
        " Address\\x1b[31m RED', '\\u202eIP Address') is none VirusTotal looks up: not read for IOCs",
    )


def test_an_observable_no_type_says_is_noted_escaped_never_dropped_without_a_word() -> None:
    # Given observables without type_id: one without a caption, one with a caption OCSF does not have, one
    # with a hostile caption, one with no value (nothing to read), and ten 'Other' ones
    document = observables_only(
        [
            {"name": "a", "value": "45.137.21.9"},
            {"name": "b", "type": "IPv4", "value": "45.137.21.10"},
            {"name": "c", "type": "IP\x1b[2J\nAddress", "value": "45.137.21.11"},
            {"name": "d", "type": "IP Address"},
            *({"name": "e", "type": "Other", "value": str(index)} for index in range(10)),
        ]
    )

    # When it is read
    [alert] = alerts_of(document)

    # Then no IOC is guessed, and each observable not read is named in a note, its caption escaped
    assert alert.iocs == ()
    assert alert.notes == (
        "observables[0, 1, 2, 4, 5, 6, 7, 8 and 5 more].type_id: missing (OCSF requires it), and the type"
        " caption ('IPv4', 'IP\\x1b[2J\\nAddress', 'Other') is none VirusTotal looks up: not read for IOCs",
    )
    assert "\x1b" not in " ".join(alert.notes)


SECURITY_LAKE_SUPPRESSED = "elastic-integrations__amazon_security_lake_test-findings_3.json"
SECURITY_LAKE_NEW = "synthetic-ocsf-detection-finding-evidences.json"
OWN_INSTANCE = "i-0a1b2c3d4e5f60789"


def evidences_only(evidences: Any, **fields: Any) -> Any:
    """The defanged sample with nothing to read but `evidences` (and `fields`): no device, no observable,
    no IOC in its text."""
    document = observables_only([])
    del document["observables"]
    document["evidences"] = evidences
    document.update(fields)
    return document


def test_a_detection_findings_evidences_are_its_iocs_each_found_where_it_is() -> None:
    # Given a Detection Finding (OCSF 1.1.0, Amazon Security Lake's test data) whose IOCs are all in its
    # one evidence: endpoints with intermediate addresses, a DNS query, a file, a process, an actor; no
    # observables
    document = load_corpus(SECURITY_LAKE_NEW)

    # When it is read
    [alert] = alerts_of(document)

    # Then each address, host name and hash VirusTotal knows is looked up, named by its field's path
    assert [(ioc.type.value, ioc.value, ioc.found_at, ioc.skipped_reason) for ioc in alert.iocs] == [
        ("ip", "135.11.251.187", "evidences[0].src_endpoint.ip", None),
        ("ip", "141.220.224.128", "evidences[0].src_endpoint.intermediate_ips[0]", None),
        ("ip", "133.184.5.152", "evidences[0].src_endpoint.intermediate_ips[1]", None),
        ("ip", "41.251.197.63", "evidences[0].dst_endpoint.ip", None),
        ("domain", "brakes.travel", "evidences[0].dst_endpoint.hostname", None),
        ("ip", "43.42.170.135", "evidences[0].dst_endpoint.intermediate_ips[0]", None),
        ("ip", "161.178.9.23", "evidences[0].dst_endpoint.intermediate_ips[1]", None),
        ("domain", "monroe.museum", "evidences[0].query.hostname", None),
        (
            "file",
            "eb108a6bbdaf145d08d811956465ad4382629cf361e1f696e021be3abadb6d47",
            "evidences[0].file.hashes[1].value",
            None,
        ),
        (
            "file",
            "77f4de0c4db55dec736561ac64c7ea6b",
            "evidences[0].process.parent_process.file.hashes[1].value",
            None,
        ),
    ]
    # And the case says which process ancestry was not read
    ancestors = ": the process's ancestors above its parent are not read for IOCs"
    assert [note for note in alert.notes if "ancestors" in note] == [
        f"evidences[0].process.parent_process.parent_process{ancestors}",
        f"evidences[0].actor.process.parent_process.parent_process{ancestors}",
    ]


def test_the_real_suppressed_finding_with_evidences_is_ignored_whatever_they_hold() -> None:
    # Given the same Detection Finding as Elastic's test data has it: suppressed
    result = read_document(load_corpus(SECURITY_LAKE_SUPPRESSED))

    # Then it is ignored with the field that says so, neither refused nor triaged
    assert (result.alerts, result.refused) == ((), ())
    [ignored] = result.ignored
    assert ignored.reason == "status_id is 3 (Suppressed)"


def test_a_value_found_in_both_observables_and_evidences_is_one_ioc_at_its_first_place() -> None:
    # Given a C2 address named both as an observable and as an evidence's destination
    document = evidences_only(
        [{"dst_endpoint": {"ip": "23.129.64.215", "port": 443}, "query": {"hostname": "tawuhoju.com"}}],
        observables=[{"name": "dst_endpoint.ip", "type_id": 2, "value": "23.129.64.215"}],
    )

    # When it is read, then it is one IOC, found at the observable; the evidence's other IOC follows
    [alert] = alerts_of(document)
    assert [(ioc.value, ioc.found_at) for ioc in alert.iocs] == [
        ("23.129.64.215", "observables[0].value"),
        ("tawuhoju.com", "evidences[0].query.hostname"),
    ]


def test_an_endpoint_that_is_the_findings_own_instance_is_never_looked_up() -> None:
    # Given the finding's own EC2 instance (a resource, by its ARN) calling out to a C2 address: the
    # source endpoint names the instance (instance_uid) with its public address and host name
    document = evidences_only(
        [
            {
                "src_endpoint": {
                    "ip": "54.210.17.33",
                    "hostname": "shop.pay-portal.net",
                    "instance_uid": OWN_INSTANCE,
                },
                "dst_endpoint": {"ip": "23.129.64.215", "hostname": "tawuhoju.com"},
            }
        ],
        resources=[
            {"type": "AwsEc2Instance", "uid": f"arn:aws:ec2:us-east-1:123456789012:instance/{OWN_INSTANCE}"}
        ],
    )

    # When it is read
    [alert] = alerts_of(document)

    # Then the instance's own address and name are kept skipped as its own, and the remote side looked up
    assert [(ioc.value, ioc.skipped_reason) for ioc in alert.iocs] == [
        ("54.210.17.33", "address of the alert's own resource"),
        ("shop.pay-portal.net", "address of the alert's own resource"),
        ("23.129.64.215", None),
        ("tawuhoju.com", None),
    ]


def test_the_device_of_the_finding_or_of_an_evidence_is_its_own() -> None:
    # Given endpoints whose addresses are the finding's device's, and an evidence's device's
    document = evidences_only(
        [
            {"src_endpoint": {"ip": "54.210.17.33"}, "dst_endpoint": {"ip": "23.129.64.215"}},
            {"device": {"ip": "3.120.0.7", "hostname": "web01.pay-portal.net"}},
            {"src_endpoint": {"ip": "3.120.0.7", "hostname": "web01.pay-portal.net"}},
        ],
        device={"ip": "54.210.17.33", "hostname": "WEB01"},
    )

    # When it is read, then each own address is kept skipped as its own, never looked up
    [alert] = alerts_of(document)
    assert [(ioc.found_at, ioc.skipped_reason) for ioc in alert.iocs] == [
        ("evidences[0].src_endpoint.ip", "address of the alert's own resource"),
        ("evidences[0].dst_endpoint.ip", None),
        ("evidences[2].src_endpoint.ip", "address of the alert's own resource"),
        ("evidences[2].src_endpoint.hostname", "address of the alert's own resource"),
    ]


def test_a_private_or_documentation_address_in_evidences_is_kept_skipped_with_its_reason() -> None:
    document = evidences_only(
        [
            {
                "src_endpoint": {"ip": "10.0.1.5"},
                "dst_endpoint": {"ip": "203.0.113.9", "intermediate_ips": ["::1"]},
            }
        ]
    )

    [alert] = alerts_of(document)
    assert [(ioc.value, ioc.skipped_reason) for ioc in alert.iocs] == [
        ("10.0.1.5", "private address"),
        ("203.0.113.9", "documentation address (RFC 5737)"),
        ("::1", "loopback address"),
    ]


def test_urls_and_host_names_in_evidences_are_read_a_bare_host_name_is_none() -> None:
    # Given an evidence's URL object, an HTTP request's URL, a DNS query of a bare machine name and an
    # endpoint whose domain is a Windows domain's name
    document = evidences_only(
        [
            {
                "url": {"url_string": "http://soclosebutyetqq.com/69.exe", "hostname": "soclosebutyetqq.com"},
                "http_request": {"url": {"url_string": "https://tawuhoju.com/gate.php"}},
                "query": {"hostname": "FILESRV"},
                "dst_endpoint": {"domain": "CORP", "hostname": "c2.tawuhoju.com"},
            }
        ]
    )

    # When it is read, then the URLs and the domains with a dot are IOCs, the bare names none
    [alert] = alerts_of(document)
    assert [(ioc.type.value, ioc.value, ioc.found_at) for ioc in alert.iocs] == [
        ("domain", "c2.tawuhoju.com", "evidences[0].dst_endpoint.hostname"),
        ("url", "http://soclosebutyetqq.com/69.exe", "evidences[0].url.url_string"),
        ("domain", "soclosebutyetqq.com", "evidences[0].url.hostname"),
        ("url", "https://tawuhoju.com/gate.php", "evidences[0].http_request.url.url_string"),
    ]


MD5 = "44d88612fea8a8f36de82e1278abb02f"
SHA1 = "3395856ce81f2b7382dee72602f798b642f14140"
SHA256 = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f"
SHA512 = (
    "cc805d5fab1fd71a4ab352a9c533e65fb2d5b885518f4e565e68847223b8e6b8"
    "5cb48f3afad842726d99239c9e36505c64b0dc9a061d9e507d833277ada336ab"
)


@pytest.mark.parametrize(
    ("fingerprint", "ioc"),
    [
        ({"algorithm_id": 1, "algorithm": "MD5", "value": MD5.upper()}, (MD5, None)),
        ({"algorithm_id": 2, "value": SHA1}, (SHA1, None)),
        ({"algorithm_id": 3, "algorithm": "SHA-256", "value": SHA256}, (SHA256, None)),
        (
            {"algorithm_id": 4, "algorithm": "SHA-512", "value": SHA512},
            (SHA512, "a sha512 (128 hex digits): VirusTotal looks files up by md5, sha1 or sha256 only"),
        ),
        (
            {"algorithm_id": 3, "value": SHA1},
            (
                SHA1,
                "the field declares sha256, but the value has 40 hex digits (a sha1): not looked up as"
                " another algorithm",
            ),
        ),
        ({"algorithm_id": 99, "algorithm": "sha256", "value": SHA256}, (SHA256, None)),
        ({"algorithm_id": -1, "algorithm": "SHA_1", "value": SHA1}, (SHA1, None)),
        ({"algorithm_id": 0, "algorithm": "Unknown", "value": MD5}, (MD5, None)),
        ({"value": SHA256}, (SHA256, None)),
        ({"algorithm_id": "3", "value": SHA256}, (SHA256, None)),
    ],
)
def test_a_files_hash_is_read_by_its_algorithm_id_else_its_caption_else_its_length(
    fingerprint: dict[str, Any], ioc: tuple[str, str | None]
) -> None:
    # Given an evidence's file with one fingerprint
    document = evidences_only([{"file": {"name": "69.exe", "hashes": [fingerprint]}}])

    # When it is read, then it is that file IOC, looked up or kept skipped with the reason
    [alert] = alerts_of(document)
    assert [(item.value, item.skipped_reason) for item in alert.iocs] == [ioc]
    assert alert.iocs[0].found_at == "evidences[0].file.hashes[0].value"


@pytest.mark.parametrize(
    "fingerprint",
    [
        {"algorithm_id": 5, "algorithm": "CTPH", "value": SHA256},
        {"algorithm_id": 6, "algorithm": "TLSH", "value": SHA256},
        {"algorithm_id": 7, "algorithm": "quickXorHash", "value": SHA256},
        {"algorithm_id": 99, "algorithm": "magic", "value": SHA256},
        {"algorithm_id": 3},
    ],
)
def test_a_fingerprint_of_another_algorithm_or_without_value_is_no_ioc(fingerprint: dict[str, Any]) -> None:
    document = evidences_only([{"file": {"hashes": [fingerprint]}}])

    [alert] = alerts_of(document)
    assert (alert.iocs, alert.notes) == ((), ())


def test_a_process_and_its_parent_give_their_files_hashes_the_ancestors_above_are_noted() -> None:
    # Given an actor process, its parent and its grandparent, each with a file hash
    def process(value: str, parent: dict[str, Any] | None = None) -> dict[str, Any]:
        node: dict[str, Any] = {"file": {"hashes": [{"algorithm_id": 2, "value": value}]}}
        if parent is not None:
            node["parent_process"] = parent
        return node

    grandparent = process("0" * 39 + "1")
    document = evidences_only([{"actor": {"process": process(SHA1, process("1" * 40, grandparent))}}])

    # When it is read, then the process's and its parent's hashes are IOCs, and the grandparent noted
    [alert] = alerts_of(document)
    assert [(ioc.value, ioc.found_at) for ioc in alert.iocs] == [
        (SHA1, "evidences[0].actor.process.file.hashes[0].value"),
        ("1" * 40, "evidences[0].actor.process.parent_process.file.hashes[0].value"),
    ]
    assert alert.notes == (
        "evidences[0].actor.process.parent_process.parent_process: the process's ancestors above its parent"
        " are not read for IOCs",
    )


def test_a_malformed_evidence_is_noted_where_it_is_and_costs_only_itself() -> None:
    # Given evidences where OCSF's objects are lists or text, a fingerprint that is a string, an address
    # that is a number, beside a good destination
    document = evidences_only(
        [
            "23.129.64.215",
            {
                "src_endpoint": ["45.137.21.9"],
                "dst_endpoint": {"ip": 3232235777},
                "file": {"hashes": {"value": MD5}},
                "process": {"file": {"hashes": ["sha1:" + SHA1]}},
            },
            {"dst_endpoint": {"ip": "23.129.64.215"}},
        ]
    )

    # When it is read
    [alert] = alerts_of(document)

    # Then the alert stands with the good address looked up, the number kept skipped with its reason, and
    # each part not read named in a note
    assert [(ioc.value, ioc.found_at, ioc.skipped_reason) for ioc in alert.iocs] == [
        ("3232235777", "evidences[1].dst_endpoint.ip", "expected a string, got int"),
        ("23.129.64.215", "evidences[2].dst_endpoint.ip", None),
    ]
    assert alert.notes == (
        "evidences[0]: expected an object, got a string; not read for IOCs",
        "evidences[1].src_endpoint: expected an object, got a list; not read for IOCs",
        "evidences[1].file.hashes: expected a list, got an object; not read for IOCs",
        "evidences[1].process.file.hashes[0]: expected an object, got a string; not read for IOCs",
    )


@pytest.mark.parametrize("evidences", [{"dst_endpoint": {"ip": "23.129.64.215"}}, "23.129.64.215", 7])
def test_evidences_that_are_no_list_are_noted_and_the_finding_triaged(evidences: Any) -> None:
    document = evidences_only(evidences)

    [alert] = alerts_of(document)
    assert alert.iocs == ()
    assert len(alert.notes) == 1
    assert alert.notes[0].startswith("evidences: expected a list, got ")
    assert alert.notes[0].endswith("; not read for IOCs")


def test_evidences_in_a_v2_event_are_named_under_the_finding() -> None:
    # Given a finding with a malformed evidence in Security Hub's Findings Imported V2 event
    finding = evidences_only([7, {"dst_endpoint": {"ip": "23.129.64.215"}}])
    event = {
        "detail-type": "Findings Imported V2",
        "source": "aws.securityhub",
        "detail": {"findings": [finding]},
    }

    # When it is read, then the note names the evidence inside the event, and the IOC is read
    [alert] = alerts_of(event)
    assert [ioc.value for ioc in alert.iocs] == ["23.129.64.215"]
    assert (
        alert.notes[0]
        == "detail.findings[0].evidences[0]: expected an object, got a number; not read for IOCs"
    )
