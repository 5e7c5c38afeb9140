"""Containing a CrowdStrike Falcon host (`contain_host`): the remediate function's real handler, step by
step as the state machine calls it, on the template's stack (moto), against a loopback server that
answers as CrowdStrike's API documents.

- The fake Falcon API: `POST /oauth2/token` (form `client_id`, `client_secret`; 201 with a bearer token
  and its `expires_in`); the Hosts API's `GET /devices/entities/devices/v2?ids=` (the devices it knows, in
  `resources`: `device_id`, `cid`, `hostname`, `tags`, `status`; 404 with CrowdStrike's error body for
  an id it does not) and `POST /devices/entities/devices-actions/v2?action_name=contain|lift_containment`
  (`{"ids": [...]}`; 202 naming the devices acted on in `resources[].id`; a device contained turns
  `containment_pending`, then `contained` when next read, as a sensor applies it; lifting goes through
  `lift_containment_pending` to `normal`). An unknown or expired token is answered 401, a throttled
  request 429 with `X-RateLimit-RetryAfter`, each with CrowdStrike's error body (`errors[].message`).
  Checked against FalconPy's endpoint definitions (`_endpoint/_hosts.py`: GetDeviceDetailsV2,
  PerformActionV2) and the device fields the Hosts API returns.

The alert is a real Alerts API entity (tests/corpus, see its PROVENANCE.md: an endpoint detection on the
Windows laptop ABC709-1175, device 2ce412d17b334ad4adc8c1c54dbfec4b, CID
92012896127c4a948236ba7601b886b0), triaged by the enrich step's own code into the template's cases table;
VirusTotal's answer for its detected file is a recorded file report that 47 engines flag
(tests/fixtures/vt/opencti__vt_test_file.json, recorded for another file: the stand-in for a malicious
verdict). The device the fake Falcon serves is the alert's own `device` object, as the Hosts API lists it.
"""

from __future__ import annotations

import contextlib
import io
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests

from tests.functional.test_ticket_providers import Answer, LoopbackServer, Received, json_answer
from vtriage.adapters.dynamodb import DynamoCaseRepository
from vtriage.adapters.falcon import FalconApiError, FalconClient, FalconCredentials, FalconHostContainment
from vtriage.adapters.guardrails import DynamoBlastRadius
from vtriage.clock import utc_now
from vtriage.composition.remediate import remediator
from vtriage.config.enrich import EnrichSettings
from vtriage.enrich.lookups import Lookups
from vtriage.enrich.triage import Triage, TriageRules
from vtriage.fakes import FakeExecutionStarter, FakeThreatIntel, InMemoryEnrichmentCache
from vtriage.intake import IntakeOptions
from vtriage.intake.body import decode_body
from vtriage.models import Action, ActionStatus, ActionType, Alert, Case, Channel, Provenance
from vtriage.ticket import render_report
from vtriage.verdict import VerdictPolicy
from vtriage_cli.main import main as vtriage
from vtriage_local.stack import LocalAws
from vtriage_local.template import PROJECT_ROOT

pytestmark = pytest.mark.functional

ALERT = PROJECT_ROOT / "tests" / "corpus" / "elastic-integrations__crowdstrike_alert_test-alert_1.json"
VT_FILE_REPORT = PROJECT_ROOT / "tests" / "fixtures" / "vt" / "opencti__vt_test_file.json"
CID = "92012896127c4a948236ba7601b886b0"
DEVICE_ID = "2ce412d17b334ad4adc8c1c54dbfec4b"
HOSTNAME = "ABC709-1175"
ANOTHER_CID = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
SECRET = "vtriage/falcon-api-client"
CLIENT_ID = "synthetic-falcon-client-id"
CLIENT_SECRET = "synthetic-falcon-client-secret-7d41"
PROTECTED_TAG = "FalconGroupingTags/vtriage-protected"
HOST = f"host {HOSTNAME} ({DEVICE_ID})"
WHERE = f"{HOST} in Falcon CID {CID}"

DEVICES = "/devices/entities/devices/v2"
ACTIONS = "/devices/entities/devices-actions/v2"


# --- the fake Falcon API --------------------------------------------------------------------------


@dataclass
class FalconHosts:
    """CrowdStrike's OAuth2 and Hosts API, as documented (see the module docstring)."""

    devices: dict[str, dict[str, Any]] = field(default_factory=dict)
    tokens: dict[str, float] = field(default_factory=dict)
    # The next requests answered 429; every token issued so far stops working after this many more
    # requests are answered (a token that expired earlier than the client thought).
    throttle_next: int = 0
    revoke_tokens_after: int | None = None
    # Whether a pending change is applied by the time a device is read again (its sensor is online); and
    # what Falcon answers a device action with instead of acting (202, no device acted on, this error).
    sensor_online: bool = True
    action_refused: str | None = None
    # The device actions carried out, in order: (action_name, ids).
    carried_out: list[tuple[str, list[str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.server = LoopbackServer(self.respond)

    def serve(self, device: dict[str, Any], **changes: Any) -> dict[str, Any]:
        """Know this device (the Hosts API's fields), with these changes; the device as served."""
        served = {**device, **changes}
        self.devices[str(served["device_id"])] = served
        return served

    def respond(self, request: Received) -> Answer:
        if request.path == "/oauth2/token" and request.method == "POST":
            form = parse_qs(request.body.decode())
            if form.get("client_id") != [CLIENT_ID] or form.get("client_secret") != [CLIENT_SECRET]:
                return falcon_error(401, "access denied, invalid client")
            token = f"token-{uuid.uuid4().hex}"
            with self.lock:
                self.tokens[token] = time.time() + 1799
            return json_answer(201, {"access_token": token, "token_type": "bearer", "expires_in": 1799})
        with self.lock:
            throttled = self.throttle_next > 0
            self.throttle_next -= int(throttled)
        if throttled:
            retry = {"X-RateLimit-Limit": "6000", "X-RateLimit-Remaining": "0"}
            retry["X-RateLimit-RetryAfter"] = str(int(time.time()) + 1)
            return falcon_error(429, "API rate limit exceeded.", retry)
        token = str(request.headers.get("Authorization", "")).removeprefix("Bearer ")
        if self.tokens.get(token, 0) <= time.time():
            return falcon_error(401, "access denied, invalid bearer token")
        with self.lock:
            if self.revoke_tokens_after is not None:
                self.revoke_tokens_after -= 1
                if self.revoke_tokens_after < 0:
                    self.tokens.clear()
                    self.revoke_tokens_after = None
                    return falcon_error(401, "access denied, invalid bearer token")
        if request.path == DEVICES and request.method == "GET":
            return self.details(request.query.get("ids", []))
        if request.path == ACTIONS and request.method == "POST":
            return self.act(request.query.get("action_name", [""])[0], request.json()["ids"])
        return falcon_error(404, "no such route")

    def details(self, ids: list[str]) -> Answer:
        found = [self.devices[i] for i in ids if i in self.devices]
        if not found:
            return falcon_error(404, "No matching devices found")
        # A sensor online applies a pending change by the time a device is read again.
        for device in found if self.sensor_online else []:
            device["status"] = {"containment_pending": "contained", "lift_containment_pending": "normal"}.get(
                device["status"], device["status"]
            )
        meta = {"query_time": 0.004, "powered_by": "device-api", "trace_id": str(uuid.uuid4())}
        return json_answer(200, {"meta": meta, "resources": found, "errors": []})

    def act(self, action_name: str, ids: list[str]) -> Answer:
        if action_name not in ("contain", "lift_containment"):
            return falcon_error(400, f"invalid action_name {action_name}")
        if self.action_refused is not None:
            error = {"code": 409, "message": self.action_refused}
            return json_answer(202, {"meta": {}, "resources": [], "errors": [error]})
        pending = "containment_pending" if action_name == "contain" else "lift_containment_pending"
        acted = []
        for device_id in ids:
            if device_id in self.devices:
                self.devices[device_id]["status"] = pending
                acted.append({"id": device_id, "path": ""})
        self.carried_out.append((action_name, [entity["id"] for entity in acted]))
        meta = {"query_time": 0.2, "powered_by": "device-api", "trace_id": str(uuid.uuid4())}
        return json_answer(202, {"meta": meta, "resources": acted, "errors": []})

    def actions(self) -> list[tuple[str, list[str]]]:
        """The device actions Falcon carried out, in order: (action_name, ids)."""
        return list(self.carried_out)

    def answered(self) -> list[str]:
        """The paths requested, in order."""
        return [r.path for r in self.server.received]


def falcon_error(status: int, message: str, headers: dict[str, str] | None = None) -> Answer:
    """An error answer as CrowdStrike's API gives it."""
    body = {
        "meta": {"query_time": 0.0, "trace_id": str(uuid.uuid4())},
        "errors": [{"code": status, "message": message}],
        "resources": [],
    }
    return json_answer(status, body, headers)


# --- the stack --------------------------------------------------------------------------------------


def falcon_alert(**changes: Any) -> Alert:
    """The real Falcon alert, read as the enrich function reads a message body (with these changes)."""
    entity = {**json.loads(ALERT.read_text()), **changes}
    [alert] = IntakeOptions().read(decode_body(json.dumps(entity))).alerts
    return alert


def the_hosts_view_of_the_alerts_device() -> dict[str, Any]:
    """The alert's device as the Hosts API lists it: the same fields, with its grouping tags."""
    return {**json.loads(ALERT.read_text())["device"], "tags": []}


@dataclass(frozen=True)
class Stack:
    """The template's stack with host containment configured, and the way to work it."""

    aws: LocalAws

    @property
    def cases(self) -> DynamoCaseRepository:
        """The cases table, as the functions read it."""
        return DynamoCaseRepository(
            self.aws.client("dynamodb"), self.aws.ref("CasesTable"), timedelta(days=90), utc_now
        )

    def triage(self, alert: Alert, channel: Channel = "detector") -> Case:
        """The alert triaged by the enrich step's own code, with the deployment's settings (its place
        and playbooks), into the cases table; VirusTotal calls the detected file malicious."""
        settings = EnrichSettings.from_environ()
        report = json.loads(VT_FILE_REPORT.read_text())["data"]
        intel = FakeThreatIntel({f"file#{json.loads(ALERT.read_text())['sha256']}": report})
        lookups = Lookups(intel, InMemoryEnrichmentCache(now=utc_now), VerdictPolicy(), utc_now)
        rules = TriageRules(settings.place, pushed_alert_actions=settings.pushed_alert_actions)
        Triage(self.cases, FakeExecutionStarter(), lookups, rules, utc_now).triage(
            alert, Provenance(channel=channel)
        )
        case = self.cases.get(alert.case_id)
        assert case is not None
        return case

    def step(self, step: str, case_id: str, **fields: Any) -> dict[str, Any]:
        """The remediate function's real handler, invoked as the state machine invokes it."""
        answer: dict[str, Any] = self.aws.invoke(
            "RemediateFunction", {"step": step, "case_id": case_id, **fields}
        )
        return answer

    def remediate(self, case_id: str) -> dict[str, Any]:
        """The remediate branch of one execution: plan, run each item needing no person, finish; what
        finish raised, if anything, as the state machine's Catch sees it."""
        plan = self.step("plan", case_id)
        for item in plan["items"]:
            if not item["approval"]:
                self.step("run", case_id, index=item["index"])
        try:
            return self.step("finish", case_id)
        except Exception as error:  # the state machine's Catch takes any error to the ticket
            return {"error": f"{type(error).__name__}: {error}"}

    def case(self, case_id: str) -> Case:
        case = self.cases.get(case_id)
        assert case is not None
        return case

    def rollback(self, case_id: str) -> dict[str, Any]:
        """`vtriage rollback CASE_ID --json`, as an operator runs it with the function's settings."""
        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(io.StringIO()):
            status = vtriage(["rollback", case_id, "--json"])
        assert status == 0, stdout.getvalue()
        result: dict[str, Any] = json.loads(stdout.getvalue())
        return result


Deploy = Callable[..., Stack]


@pytest.fixture
def falcon() -> Iterator[FalconHosts]:
    """The fake Falcon API, knowing the alert's device."""
    api = FalconHosts()
    api.serve(the_hosts_view_of_the_alerts_device(), status="normal")
    with api.server:
        yield api


@pytest.fixture
def deploy(falcon: FalconHosts, monkeypatch: pytest.MonkeyPatch) -> Iterator[Deploy]:
    """Deploy the template on moto with host containment configured (the API client's secret and the
    alert's CID) and these parameters over it; the remediate function calls the fake Falcon API."""
    with contextlib.ExitStack() as stacks:

        def deployed(**parameters: str) -> Stack:
            aws = stacks.enter_context(
                LocalAws(parameters={"FalconApiSecretName": SECRET, "FalconCid": CID, **parameters})
            )
            aws.client("secretsmanager").create_secret(
                Name=SECRET, SecretString=json.dumps({"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET})
            )
            monkeypatch.setenv("FALCON_BASE_URL", falcon.server.base_url)
            # Each test's function is built anew, as a new container would (its Falcon token too).
            remediator.cache_clear()
            return Stack(aws)

        yield deployed
        remediator.cache_clear()


def contain_host_of(case: Case) -> Action:
    [action] = [action for action in case.actions if action.type is ActionType.CONTAIN_HOST]
    return action


# --- the scenarios ------------------------------------------------------------------------------------


def test_a_malicious_detection_on_a_falcon_host_contains_it_and_the_case_says_where(
    deploy: Deploy, falcon: FalconHosts
) -> None:
    # Given a deployment acting for real, and the Falcon detection triaged: its file is malicious
    stack = deploy(DryRun="false")
    case = stack.triage(falcon_alert())

    # Then only the host's containment is planned: no AWS action on a Falcon alert
    assert [(action.type, action.target) for action in case.actions] == [(ActionType.CONTAIN_HOST, DEVICE_ID)]
    assert case.alert.not_actionable == ()

    # When the remediate function runs the case's remediation
    finished = stack.remediate(case.case_id)

    # Then Falcon was asked to contain that one device, after reading it
    assert finished == {"case_id": case.case_id, "changed": False}
    assert falcon.actions() == [("contain", [DEVICE_ID])]
    assert falcon.answered() == ["/oauth2/token", DEVICES, ACTIONS]
    assert falcon.devices[DEVICE_ID]["status"] == "containment_pending"
    # And the case and its ticket say what was done where
    action = contain_host_of(stack.case(case.case_id))
    assert action.status is ActionStatus.DONE
    assert action.detail.startswith(f"contained: {WHERE}")
    assert (action.before or {})["status"] == "normal"
    assert (action.after or {})["status"] == "containment_pending"
    report = render_report(stack.case(case.case_id)).text()
    assert f"(contain_host): {DEVICE_ID}: done - contained: {WHERE}" in report
    assert f"- falcon_host: {DEVICE_ID}" in report


def test_in_dry_run_the_host_is_read_and_nothing_is_changed(deploy: Deploy, falcon: FalconHosts) -> None:
    # Given a deployment with the template's default, dry run
    stack = deploy()
    case = stack.triage(falcon_alert())

    # When the remediate function runs the case's remediation
    stack.remediate(case.case_id)

    # Then the host was read, never acted on, and the case says what would have been done
    assert falcon.actions() == []
    assert falcon.devices[DEVICE_ID]["status"] == "normal"
    action = contain_host_of(stack.case(case.case_id))
    assert action.status is ActionStatus.DRY_RUN
    assert action.detail == f"dry run, nothing changed: would contain {WHERE}"


def test_a_host_carrying_the_protected_grouping_tag_is_never_contained(
    deploy: Deploy, falcon: FalconHosts
) -> None:
    # Given the host tagged, in Falcon, with the protected grouping tag
    falcon.serve(
        the_hosts_view_of_the_alerts_device(),
        status="normal",
        tags=["FalconGroupingTags/Laptops", PROTECTED_TAG],
    )
    stack = deploy(DryRun="false")
    case = stack.triage(falcon_alert())

    # When the remediate function runs the case's remediation
    stack.remediate(case.case_id)

    # Then nothing is sent to Falcon but the read, and the case says why
    assert falcon.actions() == []
    action = contain_host_of(stack.case(case.case_id))
    assert action.status is ActionStatus.SKIPPED
    assert action.detail == (f"not contained: {HOST} carries the protected grouping tag {PROTECTED_TAG}")


def test_a_host_contained_already_is_left_as_it_is_and_its_rollback_lifts_nothing(
    deploy: Deploy, falcon: FalconHosts
) -> None:
    # Given the host contained already (a person, or another tool, contained it)
    falcon.serve(the_hosts_view_of_the_alerts_device(), status="contained")
    stack = deploy(DryRun="false")
    case = stack.triage(falcon_alert())

    # When the remediate function runs the case's remediation, and an operator rolls the case back
    stack.remediate(case.case_id)
    action = contain_host_of(stack.case(case.case_id))
    rolled_back = stack.rollback(case.case_id)

    # Then Falcon was asked for nothing: the action is done, changing nothing, and its rollback leaves the
    # containment someone else made
    assert action.status is ActionStatus.DONE
    assert action.detail == f"already contained: {HOST} is contained in Falcon CID {CID}"
    assert falcon.actions() == []
    assert falcon.devices[DEVICE_ID]["status"] == "contained"
    [undone] = rolled_back["actions"]
    assert undone["status"] == "rolled_back"
    assert undone["detail"] == f"already as before: {HOST} was contained before this case acted"


def test_the_blast_radius_cap_holds_a_containment_for_a_person_once_the_hour_is_spent(
    deploy: Deploy, falcon: FalconHosts
) -> None:
    # Given a deployment allowing one action an hour, spent by another case's action this hour
    stack = deploy(DryRun="false", MaxActionsPerHour="1")
    spent = DynamoBlastRadius(stack.aws.client("dynamodb"), stack.aws.ref("GuardrailsTable"), 1, utc_now)
    assert spent.acquire()
    case = stack.triage(falcon_alert())

    # When the remediate function plans the case's remediation
    plan = stack.step("plan", case.case_id)

    # Then the containment waits for a person, and nothing reached Falcon
    assert [item["approval"] for item in plan["items"]] == [True]
    action = contain_host_of(stack.case(case.case_id))
    assert action.status is ActionStatus.PENDING_APPROVAL
    assert "the blast-radius cap of 1 action per hour is reached" in action.detail
    assert falcon.server.received == []


def test_rollback_lifts_the_containment_this_case_made(deploy: Deploy, falcon: FalconHosts) -> None:
    # Given the host contained by the case's remediation
    stack = deploy(DryRun="false")
    case = stack.triage(falcon_alert())
    stack.remediate(case.case_id)

    # When an operator rolls the case back (`vtriage rollback`), and once more
    result = stack.rollback(case.case_id)
    again = stack.rollback(case.case_id)

    # Then Falcon was asked to lift the containment of that device, once, and the case says so
    assert falcon.actions() == [("contain", [DEVICE_ID]), ("lift_containment", [DEVICE_ID])]
    assert falcon.devices[DEVICE_ID]["status"] == "lift_containment_pending"
    assert result["complete"] is True
    [undone] = result["actions"]
    assert undone["status"] == "rolled_back"
    assert undone["detail"] == f"rolled back: lifted the containment of {WHERE}"
    assert again["actions"] == []
    assert contain_host_of(stack.case(case.case_id)).status is ActionStatus.ROLLED_BACK


def test_an_alert_of_another_falcon_tenant_is_never_contained(deploy: Deploy, falcon: FalconHosts) -> None:
    # Given a deployment whose own Falcon tenant is another CID than the alert's
    stack = deploy(DryRun="false", FalconCid=ANOTHER_CID)

    # When the alert is triaged
    case = stack.triage(falcon_alert())

    # Then nothing is planned, and the case says why: the alert is ticketed
    assert case.actions == []
    assert any(
        f"the alert's Falcon customer id '{CID}' is not this deployment's ({ANOTHER_CID})" in reason
        for reason in case.alert.not_actionable
    )
    assert any("names no AWS account or Region" in reason for reason in case.alert.not_actionable)

    # And a containment planned on it all the same (by another deployment) is refused before it runs
    planned = stack.case(case.case_id)
    planned.actions = [Action(type=ActionType.CONTAIN_HOST, target=DEVICE_ID)]
    planned.alert = planned.alert.model_copy(update={"not_actionable": ()})
    stack.cases.save(planned)
    finished = stack.remediate(case.case_id)
    action = contain_host_of(stack.case(case.case_id))
    assert action.status is ActionStatus.SKIPPED
    assert f"is not this deployment's ({ANOTHER_CID})" in action.detail
    assert "RemediationError" in finished["error"]
    assert falcon.server.received == []


def test_a_device_of_another_tenant_under_the_same_api_client_is_never_contained(
    deploy: Deploy, falcon: FalconHosts
) -> None:
    # Given an API client that also sees another tenant's hosts (a parent CID's), and the alert's device
    # id answered as a host of that other tenant
    falcon.serve(the_hosts_view_of_the_alerts_device(), status="normal", cid=ANOTHER_CID)
    stack = deploy(DryRun="false")
    case = stack.triage(falcon_alert())

    # When the remediate function runs the case's remediation
    stack.remediate(case.case_id)

    # Then the live host's tenant refuses it: nothing is contained
    assert falcon.actions() == []
    action = contain_host_of(stack.case(case.case_id))
    assert action.status is ActionStatus.SKIPPED
    assert f"is in Falcon CID {ANOTHER_CID}, not this deployment's ({CID})" in action.detail


def test_a_device_falcon_does_not_know_fails_the_action_for_a_person(
    deploy: Deploy, falcon: FalconHosts
) -> None:
    # Given a device Falcon no longer knows (removed from the console since the detection)
    falcon.devices.clear()
    stack = deploy(DryRun="false")
    case = stack.triage(falcon_alert())

    # When the remediate function runs the case's remediation
    finished = stack.remediate(case.case_id)

    # Then nothing is contained, the action failed saying so, and the case goes to its ticket with it
    assert falcon.actions() == []
    action = contain_host_of(stack.case(case.case_id))
    assert action.status is ActionStatus.FAILED
    assert (
        action.detail == f"not contained: no device {DEVICE_ID} in Falcon CID {CID} (removed, or never there)"
    )
    assert "RemediationError" in finished["error"]


def test_a_rate_limit_and_a_refused_token_on_the_way_still_contain_the_host_once(
    deploy: Deploy, falcon: FalconHosts
) -> None:
    # Given Falcon rate-limiting the first request, and refusing the token once the host has been read
    stack = deploy(DryRun="false")
    case = stack.triage(falcon_alert())
    falcon.throttle_next = 1
    falcon.revoke_tokens_after = 1

    # When the remediate function runs the case's remediation
    stack.remediate(case.case_id)

    # Then the client waited out the 429, took a new token after the 401, and contained the host once
    assert [(request.method, request.path) for request in falcon.server.received] == [
        ("POST", "/oauth2/token"),
        ("GET", DEVICES),  # 429
        ("GET", DEVICES),
        ("POST", ACTIONS),  # 401
        ("POST", "/oauth2/token"),
        ("POST", ACTIONS),
    ]
    assert falcon.actions() == [("contain", [DEVICE_ID])]
    assert contain_host_of(stack.case(case.case_id)).status is ActionStatus.DONE


def test_a_pushed_falcon_alert_waits_for_a_person_before_its_host_is_contained(
    deploy: Deploy, falcon: FalconHosts
) -> None:
    # Given the alert pushed through the intake URL (PushedAlertActions=approval, the default)
    stack = deploy(DryRun="false")
    case = stack.triage(falcon_alert(), channel="intake")

    # When the remediate function plans the case's remediation
    plan = stack.step("plan", case.case_id)

    # Then the containment waits for a person's approval, and nothing reached Falcon
    assert [item["approval"] for item in plan["items"]] == [True]
    action = contain_host_of(stack.case(case.case_id))
    assert action.status is ActionStatus.PENDING_APPROVAL
    assert "PushedAlertActions=approval" in action.detail
    assert falcon.server.received == []


def test_without_the_api_client_the_containment_is_skipped_with_the_reason(
    deploy: Deploy, falcon: FalconHosts
) -> None:
    # Given a deployment naming its Falcon tenant but no API client (FalconApiSecretName empty)
    stack = deploy(DryRun="false", FalconApiSecretName="")
    case = stack.triage(falcon_alert())

    # When the remediate function runs the case's remediation
    finished = stack.remediate(case.case_id)

    # Then the containment is planned and skipped, saying what to configure, and Falcon is never called
    assert finished == {"case_id": case.case_id, "changed": False}
    action = contain_host_of(stack.case(case.case_id))
    assert action.status is ActionStatus.SKIPPED
    assert action.detail == (
        "not contained: no Falcon API client is configured for host containment (FalconApiSecretName); "
        "the host is left as it is, for a person"
    )
    assert falcon.server.received == []


# --- the actuator on its own, against the same fake Falcon -----------------------------------------


@pytest.fixture
def containment(falcon: FalconHosts) -> FalconHostContainment:
    """The actuator the remediate function builds, with a client of the fake Falcon."""
    client = FalconClient(
        requests.Session(), falcon.server.base_url, FalconCredentials(CLIENT_ID, CLIENT_SECRET)
    )
    return FalconHostContainment(lambda: client, CID, PROTECTED_TAG)


def contain(target: str = DEVICE_ID) -> Action:
    return Action(type=ActionType.CONTAIN_HOST, target=target, parameters={"case_id": "falcon-0123"})


@pytest.mark.parametrize(
    ("status", "detail"),
    [
        (
            "lift_containment_pending",
            f"not contained: {HOST}'s containment is being lifted in Falcon (lift_containment_pending): a "
            "person released it, and vtriage does not contain it again",
        ),
        (
            "quarantined",
            f"not contained: {HOST} has a containment status vtriage does not know (quarantined)",
        ),
    ],
)
def test_a_host_being_released_or_in_a_state_vtriage_does_not_know_is_left_alone(
    containment: FalconHostContainment, falcon: FalconHosts, status: str, detail: str
) -> None:
    # Given the host in that state, its sensor offline (the state lasts)
    falcon.serve(the_hosts_view_of_the_alerts_device(), status=status)
    falcon.sensor_online = False

    # When the containment runs for real
    outcome = containment.run(contain(), dry_run=False)

    # Then nothing is asked of Falcon, and the action says why
    assert (outcome.status, outcome.detail) == (ActionStatus.SKIPPED, detail)
    assert falcon.actions() == []


def test_a_target_that_is_no_device_id_fails_before_any_request(
    containment: FalconHostContainment, falcon: FalconHosts
) -> None:
    # Given an action whose target is not a device id (a planned action edited by hand)
    outcome = containment.run(contain("ABC709-1175\nApprove: https://evil.example.net"), dry_run=False)

    # Then it fails naming the target, escaped, and Falcon hears nothing
    assert outcome.status is ActionStatus.FAILED
    assert outcome.detail == (
        "not contained: ABC709-1175\\nApprove: hxxps://evil.example.net is not a Falcon device id"
    )
    assert falcon.server.received == []


def test_falcon_acting_on_no_device_is_an_error_that_names_what_it_said(
    containment: FalconHostContainment, falcon: FalconHosts
) -> None:
    # Given Falcon answering the containment with no device acted on and an error
    falcon.action_refused = "host is offline"

    # When the containment runs for real, Then the error says what Falcon said (the remediate function
    # records it as the action's failure)
    with pytest.raises(FalconApiError, match=f"contain of device {DEVICE_ID}: host is offline"):
        containment.run(contain(), dry_run=False)


def test_a_rollback_with_nothing_recorded_or_nothing_left_to_lift_changes_nothing(
    containment: FalconHostContainment, falcon: FalconHosts
) -> None:
    # Given an action that recorded no state, and one whose containment a person lifted already
    done = containment.run(contain(), dry_run=False)
    falcon.devices[DEVICE_ID]["status"] = "normal"

    # When each is rolled back
    unrecorded = containment.rollback(contain())
    lifted = containment.rollback(done)

    # Then neither asks Falcon to lift anything, and each says why
    assert unrecorded.detail == "nothing to undo: no state of the host was recorded"
    assert (lifted.status, lifted.detail) == (
        ActionStatus.ROLLED_BACK,
        f"already as before: {HOST} is normal in Falcon CID {CID}",
    )
    assert falcon.actions() == [("contain", [DEVICE_ID])]


def test_a_rollback_fails_for_a_person_when_the_host_is_gone_or_in_another_tenant(
    containment: FalconHostContainment, falcon: FalconHosts
) -> None:
    # Given a host contained by the case, then moved to another tenant, then removed from Falcon
    done = containment.run(contain(), dry_run=False)
    falcon.devices[DEVICE_ID]["cid"] = ANOTHER_CID
    moved = containment.rollback(done)
    falcon.devices.clear()
    gone = containment.rollback(done)

    # Then neither rollback lifts anything, and each failure says why
    assert (moved.status, moved.detail) == (
        ActionStatus.FAILED,
        f"rollback failed: {HOST} is in Falcon CID {ANOTHER_CID}, not {CID}",
    )
    assert (gone.status, gone.detail) == (
        ActionStatus.FAILED,
        f"rollback failed: no device {DEVICE_ID} in Falcon CID {CID}",
    )
    assert falcon.actions() == [("contain", [DEVICE_ID])]
