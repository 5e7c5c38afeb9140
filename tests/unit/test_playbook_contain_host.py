"""Planning `contain_host`: which Falcon alerts' hosts the default playbooks contain, where eligibility lets
it run (only a CrowdStrike Falcon alert of the deployment's own tenant, never an AWS action on it), and
the host the intake reads from each kind of Falcon alert. The alerts are real (tests/corpus); the
verdicts are given."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.factories import make_alert, make_case
from vtriage.eligibility import Place, eligibility, falcon_cid, requiring_approval
from vtriage.intake import IntakeOptions
from vtriage.intake.body import decode_body
from vtriage.models import (
    NEEDS_APPROVAL_PARAMETER,
    Action,
    ActionType,
    Alert,
    IocOutcome,
    IocType,
    Provenance,
    Resource,
    ResourceType,
    Verdict,
)
from vtriage.playbook import ActionSpec, IpBlockMethod, Match, Playbook, Playbooks, plan_actions
from vtriage.remediate import refusal

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
ENDPOINT = "elastic-integrations__crowdstrike_alert_test-alert_1.json"
STREAM = "elastic-integrations__crowdstrike_falcon_test-falcon-epp-detection-summary_2.json"
LEGACY = "elastic-integrations__crowdstrike_falcon_test-falcon-detection-summary_1.json"
IDENTITY = "elastic-integrations__crowdstrike_alert_test-alert_2.json"
WORKSPACE = "elastic-integrations__google_workspace_alert_test-alert_3.json"
CID = "92012896127c4a948236ba7601b886b0"
DEVICE_ID = "2ce412d17b334ad4adc8c1c54dbfec4b"
FILE = "b26a6791b72753d2317efd5e1363d93fdd33e611c8b9e08a3b24ea4d755b81fd"
EXTERNAL_IP = "81.2.69.142"
DETECTOR = Provenance(channel="detector")
OWN = Place(own_account="123456789012", falcon_cid=CID)


def load(name: str) -> Any:
    return json.loads((CORPUS / name).read_text())


def the_alert(document: Any) -> Alert:
    """The document's one alert, read as the enrich function reads a message body."""
    result = IntakeOptions().read(decode_body(json.dumps(document)))
    assert (result.refused, result.ignored) == ((), ())
    [alert] = result.alerts
    return alert


def looked_up(*found: tuple[IocType, str], verdict: Verdict = Verdict.MALICIOUS) -> list[IocOutcome]:
    """IOCs as VirusTotal judged them, all with `verdict`."""
    return [
        IocOutcome(type=ioc_type, value=value, found_at="given", verdict=verdict) for ioc_type, value in found
    ]


def planned(
    alert: Alert,
    iocs: list[IocOutcome],
    place: Place = OWN,
    provenance: Provenance = DETECTOR,
    ip_block_method: IpBlockMethod = "waf",
) -> tuple[list[Action], Alert]:
    """What the enrich step plans on the alert (eligibility, the default playbooks, the actions placed
    where the alert lives, approval for pushed alerts), and the alert as its case keeps it."""
    allowed = eligibility(alert, provenance, place, "approval")
    kept = allowed.applied_to(alert)
    actions = allowed.placed(plan_actions(kept, iocs, ip_block_method=ip_block_method))
    if allowed.approval is not None:
        actions = requiring_approval(actions, allowed.approval)
    return actions, kept


# ---------------------------------------------------------------- the host an alert names


def test_an_alerts_api_endpoint_detection_names_its_device_as_the_falcon_host() -> None:
    # Given a real Alerts API endpoint detection, When it is read
    alert = the_alert(load(ENDPOINT))

    # Then its host is the device it happened on, by its device id, with the tenant it belongs to
    assert alert.resources == (Resource(type=ResourceType.FALCON_HOST, id=DEVICE_ID),)
    assert alert.vendor is not None
    assert (alert.vendor.tenant, alert.vendor.host) == (CID, "ABC709-1175")


def test_an_event_streams_detection_names_its_agent_as_the_falcon_host() -> None:
    # Given a real EppDetectionSummaryEvent, When it is read
    alert = the_alert(load(STREAM))

    # Then its host is the event's AgentId, in lower case
    assert alert.resources == (
        Resource(type=ResourceType.FALCON_HOST, id="c8d1292a8a904216aa25ab728f4b45fd"),
    )


@pytest.mark.parametrize("key", ["SensorId", "AgentIdString"])
def test_the_other_stream_spellings_of_the_agent_id_name_the_host(key: str) -> None:
    # Given the stream event naming its agent under another key, in capitals
    document = load(STREAM)
    del document["event"]["AgentId"]
    document["event"][key] = "C8D1292A8A904216AA25AB728F4B45FD"

    # Then the host is read all the same
    assert the_alert(document).resources == (
        Resource(type=ResourceType.FALCON_HOST, id="c8d1292a8a904216aa25ab728f4b45fd"),
    )


@pytest.mark.parametrize(
    "value", ["sensorid123", "0" * 32, 42, "2ce412d17b334ad4adc8c1c54dbfec4b; rm -rf"], ids=str
)
def test_a_device_id_that_is_none_names_no_host_and_says_why(value: Any) -> None:
    # Given an endpoint detection whose device id is not one (the legacy sample's own is "sensorid123")
    document = load(ENDPOINT)
    document["device"]["device_id"] = value

    # When it is read
    alert = the_alert(document)

    # Then it names no host, the alert stands, and a note names the field
    assert alert.resources == ()
    assert any(note.startswith("device.device_id: ") and "no host to act on" in note for note in alert.notes)


def test_an_identity_detection_names_no_host_to_contain() -> None:
    # Given an identity detection (its agent_id is a sensor elsewhere: no device of the detection's own)
    alert = the_alert(load(IDENTITY))

    # Then it names no host, so nothing may be contained for it
    assert alert.resources == ()
    assert the_alert(load(LEGACY)).resources == ()


# ---------------------------------------------------------------- what the default playbooks plan


def test_a_malicious_file_on_a_host_of_the_own_tenant_contains_the_host_and_nothing_in_aws() -> None:
    # Given a detection whose file, remote address and a domain are malicious, in the deployment's tenant
    alert = the_alert(load(ENDPOINT))
    iocs = looked_up((IocType.FILE, FILE), (IocType.IP, EXTERNAL_IP), (IocType.DOMAIN, "tawuhoju.com"))

    # When the enrich step plans, with the WAF as the deployment's IP block
    actions, kept = planned(alert, iocs)

    # Then its host is contained and no AWS action is planned (no WAF, no DNS Firewall block): a Falcon
    # alert names no AWS account or Region
    assert [(action.type, action.target) for action in actions] == [(ActionType.CONTAIN_HOST, DEVICE_ID)]
    assert actions[0].detail == "planned by playbook malicious-file-on-falcon-host"
    assert kept.not_actionable == ()
    allowed = eligibility(alert, DETECTOR, OWN, "approval")
    assert allowed.elsewhere == (
        "a CrowdStrike Falcon alert names no AWS account or Region: vtriage takes no AWS action on it"
        " (a person decides, from its ticket)"
    )


@pytest.mark.parametrize(
    ("found", "contained"),
    [
        ((IocType.FILE, FILE), True),
        ((IocType.URL, "http://soclosebutyetqq.com/69.exe"), True),
        ((IocType.DOMAIN, "tawuhoju.com"), True),
        ((IocType.IP, EXTERNAL_IP), False),
    ],
)
def test_an_address_alone_does_not_contain_a_host(found: tuple[IocType, str], contained: bool) -> None:
    # Given a detection with one malicious IOC of a type (an address may be the host's own NAT's)
    alert = the_alert(load(ENDPOINT))

    # When the enrich step plans
    actions, _ = planned(alert, looked_up(found))

    # Then the host is contained for a malicious file, URL or domain, not for an address alone
    assert (ActionType.CONTAIN_HOST in {action.type for action in actions}) is contained


@pytest.mark.parametrize("verdict", [Verdict.SUSPICIOUS, Verdict.HARMLESS, Verdict.UNKNOWN])
def test_no_host_is_contained_without_a_malicious_verdict(verdict: Verdict) -> None:
    # Given a detection whose file VirusTotal does not call malicious
    alert = the_alert(load(ENDPOINT))

    # Then nothing is planned
    assert planned(alert, looked_up((IocType.FILE, FILE), verdict=verdict))[0] == []


# ---------------------------------------------------------------- where it may run


def test_an_alert_of_another_tenant_gets_no_action_and_says_why() -> None:
    # Given the deployment's own tenant is another CID than the alert's
    alert = the_alert(load(ENDPOINT))
    place = Place(own_account="123456789012", falcon_cid="0f1e2d3c4b5a69788796a5b4c3d2e1f0")

    # When the enrich step plans for a malicious file
    actions, kept = planned(alert, looked_up((IocType.FILE, FILE)), place)

    # Then nothing is planned, and the case says neither an AWS action nor a containment may run
    assert actions == []
    assert kept.not_actionable == (
        "a CrowdStrike Falcon alert names no AWS account or Region: vtriage takes no AWS action on it"
        " (a person decides, from its ticket)",
        f"the alert's Falcon customer id '{CID}' is not this deployment's (0f1e2d3c4b5a69788796a5b4c3d2e1f0):"
        " vtriage contains hosts only in its own Falcon tenant (FalconCid)",
    )


def test_without_a_tenant_of_its_own_the_deployment_contains_no_host() -> None:
    # Given a deployment with no Falcon tenant configured
    alert = the_alert(load(ENDPOINT))

    # When the enrich step plans for a malicious file
    actions, kept = planned(alert, looked_up((IocType.FILE, FILE)), Place(own_account="123456789012"))

    # Then nothing is planned, and the case says how to turn it on
    assert actions == []
    assert any("no Falcon tenant is configured (FalconCid)" in reason for reason in kept.not_actionable)


def test_a_workspace_alert_is_never_contained_nor_acted_on() -> None:
    # Given a Workspace alert whose attachment is malicious, and a playbook containing any host
    alert = the_alert(load(WORKSPACE))
    anything = Playbooks(
        playbooks=(Playbook(name="contain-anything", actions=(ActionSpec(type=ActionType.CONTAIN_HOST),)),)
    )
    iocs = looked_up((IocType.FILE, "50d858e0985ecc7f60418aaf0cc5ab587f42c2570a884095a9e8ccacd0f6545c"))

    # When eligibility decides
    allowed = eligibility(alert, DETECTOR, OWN, "approval")

    # Then nothing may run on it, and no host could be contained anyway
    assert allowed.not_actionable
    assert plan_actions(allowed.applied_to(alert), iocs, anything) == []
    assert OWN.reasons_against_action(alert, ActionType.CONTAIN_HOST) == [
        "only a CrowdStrike Falcon alert's host is contained (contain_host), in the deployment's own"
        " Falcon tenant"
    ]


def test_an_aws_alert_naming_a_falcon_host_never_contains_it() -> None:
    # Given an AWS alert that names a Falcon host all the same (a custom detector's), and a playbook for it
    host = Resource(type=ResourceType.FALCON_HOST, id=DEVICE_ID)
    alert = make_alert(resources=(host,))
    playbooks = Playbooks(
        playbooks=(Playbook(name="contain", actions=(ActionSpec(type=ActionType.CONTAIN_HOST),)),)
    )

    # When the enrich step plans, and when such an action reaches the remediate function all the same
    allowed = eligibility(alert, DETECTOR, OWN, "approval")
    actions = allowed.placed(plan_actions(alert, looked_up((IocType.FILE, FILE)), playbooks))
    case = make_case(alert, actions=[Action(type=ActionType.CONTAIN_HOST, target=DEVICE_ID)])

    # Then it is not planned, and it is refused before it runs
    assert actions == []
    assert "only a CrowdStrike Falcon alert's host is contained" in (
        refusal(case, OWN, ActionType.CONTAIN_HOST) or ""
    )


def test_the_aws_refusal_stands_for_a_falcon_alert_the_deployment_may_contain() -> None:
    # Given a Falcon alert of the deployment's own tenant, with an AWS action on it all the same
    alert = the_alert(load(ENDPOINT))
    case = make_case(alert, actions=[Action(type=ActionType.BLOCK_IP_WAF, target=EXTERNAL_IP)])

    # Then every AWS action is refused before it runs, and only the host's containment may run
    for action in ActionType:
        reason = refusal(case, OWN, action)
        if action is ActionType.CONTAIN_HOST:
            assert reason is None
        else:
            assert reason is not None
            assert "a CrowdStrike Falcon alert names no AWS account or Region" in reason


def test_a_pushed_falcon_alert_waits_for_a_person_or_is_ticketed_as_the_deployment_chooses() -> None:
    # Given the detection pushed through the intake URL
    alert = the_alert(load(ENDPOINT))
    pushed = Provenance(channel="intake", sender="arn:aws:sts::123456789012:assumed-role/edr-forwarder/s")
    iocs = looked_up((IocType.FILE, FILE))

    # When the enrich step plans under each choice
    waiting, _ = planned(alert, iocs, provenance=pushed)
    ticketed = eligibility(alert, pushed, OWN, "ticket")

    # Then its containment waits for a person (PushedAlertActions=approval), or none is planned (ticket)
    assert [(action.type, action.parameters.get(NEEDS_APPROVAL_PARAMETER)) for action in waiting] == [
        (ActionType.CONTAIN_HOST, "true")
    ]
    assert "PushedAlertActions=approval" in waiting[0].detail
    assert any("PushedAlertActions=ticket" in reason for reason in ticketed.not_actionable)


def test_a_playbook_may_ask_a_person_to_approve_each_containment() -> None:
    # Given a playbook whose containment needs approval
    playbooks = Playbooks(
        playbooks=(
            Playbook(
                name="contain-with-approval",
                match=Match(resource_types=(ResourceType.FALCON_HOST,)),
                actions=(ActionSpec(type=ActionType.CONTAIN_HOST, needs_approval=True),),
            ),
        )
    )

    # When it plans on a detection from the detector channel
    [action] = plan_actions(the_alert(load(ENDPOINT)), looked_up((IocType.FILE, FILE)), playbooks)

    # Then the action carries the parameter the remediate function waits on
    assert action.parameters == {NEEDS_APPROVAL_PARAMETER: "true"}


@pytest.mark.parametrize(
    ("given", "read"),
    [
        ("92012896127C4A948236BA7601B886B0-4E", CID),
        (f"  {CID} ", CID),
        ("4446934rf3fdb64ec3056ddfb96e", None),
        (f"{CID}-4", None),
        ("", None),
    ],
)
def test_a_falcon_cid_is_read_in_either_of_its_forms(given: str, read: str | None) -> None:
    # Given a CID as the console shows it (capitals, checksum), as the API does, or no CID at all
    # Then it is read in the API's form, or not at all
    assert falcon_cid(given) == read


def test_the_alerts_tenant_is_compared_in_the_apis_form() -> None:
    # Given the alert's CID in the console's form, and the deployment's in the API's
    alert = the_alert(load(ENDPOINT))
    assert alert.vendor is not None
    shouting = alert.model_copy(
        update={"vendor": alert.vendor.model_copy(update={"tenant": "92012896127C4A948236BA7601B886B0-4E"})}
    )

    # Then they are the same tenant
    assert OWN.host_reasons_against(shouting) == []
