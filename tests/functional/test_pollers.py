"""The Falcon and Workspace pollers: the real handlers on the template's stack (moto), against loopback
servers that answer as CrowdStrike's and Google's APIs document.

- The fake Falcon API: `POST /oauth2/token` (form `client_id`, `client_secret`; 201 with a bearer token
  and its `expires_in`), `GET /alerts/queries/alerts/v2` (FQL `created_timestamp:>='...'`, `sort`,
  `limit`, `offset`; the composite ids with `meta.pagination`), `POST /alerts/entities/alerts/v2`
  (`{"composite_ids": [...]}`; the entities in `resources`). An unknown or expired token is answered 401,
  a throttled request 429 with `X-RateLimit-RetryAfter` (the epoch second it may be retried from), each
  with CrowdStrike's error body (`errors[].message`).
- The fake Google: a token endpoint that takes the service account's signed assertion (the JWT bearer
  grant), checks its signature with the account's public key and its claims (issuer, subject, scope,
  audience), and the Alert Center's `alerts.list` (`filter` `createTime >= "..."`, `orderBy`, `pageSize`,
  `pageToken` and `nextPageToken`; fewer alerts a page than asked, as Google may), answering 401 to an
  unknown token and 429 to a throttled request in Google's error shape. google-auth runs unchanged
  against it, with a key made for the test.

The alerts the fake vendors serve are real samples (tests/corpus, see its PROVENANCE.md), each given the
creation time (and, for Workspace, whose samples share one id, a distinct `alertId`) the fake vendor
created it at. What the pollers queue must be exactly what the vendor served.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.functional.test_ticket_providers import Answer, LoopbackServer, Received, json_answer
from vtriage.adapters.dynamodb import DynamoCaseRepository
from vtriage.adapters.falcon import FalconAuthError
from vtriage.adapters.poll_state import cursor_key
from vtriage.adapters.workspace import SCOPE, WorkspaceAuthError
from vtriage.clock import utc_now
from vtriage.composition.falcon_poller import falcon_poller
from vtriage.composition.workspace_poller import workspace_poller
from vtriage.errors import TransientError
from vtriage.models import Case
from vtriage.polling import SOURCE_ATTRIBUTE
from vtriage_local.replay import ReplayServer, bundled_recordings
from vtriage_local.runner import Pipeline
from vtriage_local.stack import LocalAws
from vtriage_local.template import PROJECT_ROOT

pytestmark = pytest.mark.functional

CORPUS = PROJECT_ROOT / "tests" / "corpus"
FALCON_SAMPLES = [
    "elastic-integrations__crowdstrike_alert_test-alert_1.json",
    "elastic-integrations__crowdstrike_alert_test-alert_2.json",
    "elastic-integrations__crowdstrike_alert_test-correlation-detection_1.json",
    "elastic-integrations__crowdstrike_alert_test-correlation-detection_2.json",
]
FALCON_ENTITIES_RESPONSE = "demisto-content__crowdstrike_ioa_alerts_v2_entities_response.json"
WORKSPACE_SAMPLES = [
    "elastic-integrations__google_workspace_alert_test-alert_1.json",
    "elastic-integrations__google_workspace_alert_test-alert_3.json",
    "elastic-integrations__google_workspace_alert_test-alert_4.json",
    "elastic-integrations__google_workspace_alert_test-alert_6.json",
    "elastic-integrations__google_workspace_alert_test-alert_7.json",
]
FALCON_SECRET = "vtriage/falcon-api-client"
WORKSPACE_SECRET = "vtriage/workspace-service-account"
ADMIN = "security-admin@example.com"
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
CLIENT_ID = "synthetic-falcon-client-id"
CLIENT_SECRET = "synthetic-falcon-client-secret-5f2c"
# An EventBridge scheduled event, as the schedule invokes each poller (the pollers read nothing of it).
SCHEDULED_EVENT = {
    "version": "0",
    "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
    "detail-type": "Scheduled Event",
    "source": "aws.events",
    "account": "123456789012",
    "time": "2026-05-01T10:00:00Z",
    "region": "us-east-1",
    "resources": ["arn:aws:events:us-east-1:123456789012:rule/vtriage-FalconPollerFunctionPoll"],
    "detail": {},
}


def load(name: str) -> Any:
    """A corpus document."""
    return json.loads((CORPUS / name).read_text(encoding="utf-8"))


def rfc3339(moment: datetime) -> str:
    """A time as both vendors write it, with nanoseconds as CrowdStrike does."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"


def vendor_time(text: str) -> datetime:
    """A time as a vendor writes it, read back (fractions beyond microseconds cut)."""
    return datetime.fromisoformat(text)


# --- the fake vendors --------------------------------------------------------------------------------


@dataclass
class FakeVendor:
    """What both fake vendors share: the tokens they issued, requests they answer 429 to, the time each
    request came."""

    server: LoopbackServer = field(init=False)
    token_lifetime: int = 1799
    tokens: dict[str, float] = field(default_factory=dict)
    token_requests: int = 0
    throttle_next: int = 0
    retry_after_seconds: int = 1
    request_times: list[tuple[str, float]] = field(default_factory=list)
    answered: list[tuple[str, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, request: Received) -> Answer:
        """Answer as the vendor does, recording when the request came and the status it got."""
        self.request_times.append((request.path, time.time()))
        status, headers, body = self.respond(request)
        self.answered.append((request.path, status))
        return status, headers, body

    def respond(self, request: Received) -> Answer:
        """The vendor's answer to one request."""
        raise NotImplementedError

    def issue_token(self) -> tuple[str, int]:
        """A new bearer token, valid `token_lifetime` seconds."""
        with self.lock:
            self.token_requests += 1
            token = f"token-{uuid.uuid4().hex}"
            self.tokens[token] = time.time() + self.token_lifetime
        return token, self.token_lifetime

    def bearer_is_valid(self, request: Received) -> bool:
        """The request carries a token this vendor issued and that has not expired."""
        header = str(request.headers.get("Authorization", ""))
        token = header.removeprefix("Bearer ")
        return header.startswith("Bearer ") and self.tokens.get(token, 0) > time.time()

    def revoke_tokens(self) -> None:
        """Every token issued so far stops working (what an expiry the client did not expect does)."""
        self.tokens.clear()

    def throttled(self) -> bool:
        """Whether this request is one of the next ones to answer 429."""
        with self.lock:
            if self.throttle_next > 0:
                self.throttle_next -= 1
                return True
        return False


@dataclass
class FalconApi(FakeVendor):
    """CrowdStrike's OAuth2 and Alerts API v2, as documented (see the module docstring)."""

    alerts: list[dict[str, Any]] = field(default_factory=list)
    fail_entities_after: int | None = None
    # Every request is refused 401, whatever its token (an API client without the Alerts: Read scope).
    refuse_every_token: bool = False

    def __post_init__(self) -> None:
        self.server = LoopbackServer(self.answer)

    def add(self, entity: dict[str, Any], created: datetime) -> dict[str, Any]:
        """Serve this entity as created at `created`; the entity as served."""
        served = {**entity, "created_timestamp": rfc3339(created)}
        self.alerts.append(served)
        return served

    def respond(self, request: Received) -> Answer:
        if request.path == "/oauth2/token" and request.method == "POST":
            form = parse_qs(request.body.decode())
            if form.get("client_id") != [CLIENT_ID] or form.get("client_secret") != [CLIENT_SECRET]:
                return falcon_error(401, "access denied, invalid client")
            token, lifetime = self.issue_token()
            return json_answer(201, {"access_token": token, "token_type": "bearer", "expires_in": lifetime})
        if self.throttled():
            return falcon_error(
                429,
                "API rate limit exceeded.",
                {
                    "X-RateLimit-Limit": "6000",
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-RetryAfter": str(int(time.time()) + self.retry_after_seconds),
                },
            )
        if self.refuse_every_token or not self.bearer_is_valid(request):
            return falcon_error(401, "access denied, invalid bearer token")
        if request.path == "/alerts/queries/alerts/v2" and request.method == "GET":
            return self.query(request)
        if request.path == "/alerts/entities/alerts/v2" and request.method == "POST":
            if self.fail_entities_after is not None:
                if self.fail_entities_after == 0:
                    return falcon_error(500, "internal server error")
                self.fail_entities_after -= 1
            wanted = request.json()["composite_ids"]
            by_id = {alert["composite_id"]: alert for alert in self.alerts}
            return json_answer(200, {"meta": {}, "resources": [by_id[i] for i in wanted if i in by_id]})
        return falcon_error(404, "no such route")

    def query(self, request: Received) -> Answer:
        (fql,) = request.query["filter"]
        match = re.fullmatch(r"created_timestamp:>='([0-9T:Z-]+)'", fql)
        assert match, f"an FQL filter this fake does not read: {fql}"
        assert request.query["sort"] == ["created_timestamp|asc"]
        since = datetime.fromisoformat(match.group(1))
        offset, limit = int(request.query["offset"][0]), int(request.query["limit"][0])
        assert 1 <= limit <= 10_000
        matching = sorted(
            (alert for alert in self.alerts if vendor_time(alert["created_timestamp"]) >= since),
            key=lambda alert: vendor_time(alert["created_timestamp"]),
        )
        page = [alert["composite_id"] for alert in matching[offset : offset + limit]]
        pagination = {"offset": offset, "limit": limit, "total": len(matching)}
        return json_answer(200, {"meta": {"pagination": pagination}, "resources": page, "errors": []})

    def queries(self) -> list[Received]:
        """The query requests received, in order."""
        return [r for r in self.server.received if r.path == "/alerts/queries/alerts/v2"]


def falcon_error(status: int, message: str, headers: dict[str, str] | None = None) -> Answer:
    """An error answer as CrowdStrike's API gives it."""
    body = {
        "meta": {"query_time": 0.0, "trace_id": str(uuid.uuid4())},
        "errors": [{"code": status, "message": message}],
    }
    return json_answer(status, body, headers)


def falcon_samples() -> list[dict[str, Any]]:
    """The real Falcon alert entities: the Elastic samples and the entities of XSOAR's recorded response."""
    entities = [load(name) for name in FALCON_SAMPLES]
    entities.extend(load(FALCON_ENTITIES_RESPONSE)["resources"])
    assert len({entity["composite_id"] for entity in entities}) == len(entities)
    return entities


@dataclass
class GoogleApis(FakeVendor):
    """Google's OAuth 2.0 token endpoint for service accounts and the Alert Center's `alerts.list`."""

    token_lifetime: int = 3600
    public_key: Any = None
    client_email: str = ""
    alerts: list[dict[str, Any]] = field(default_factory=list)
    page_size: int = 2
    # Google refuses the delegation (the client id is not granted the scope for this domain).
    refuse_delegation: bool = False
    assertions: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.server = LoopbackServer(self.answer)

    @property
    def token_uri(self) -> str:
        return f"{self.server.base_url}/token"

    def add(self, sample: dict[str, Any], created: datetime) -> dict[str, Any]:
        """Serve this alert as created at `created`, under an id of its own; the alert as served."""
        served = {**sample, "alertId": str(uuid.uuid4()), "createTime": rfc3339(created)}
        self.alerts.append(served)
        return served

    def respond(self, request: Received) -> Answer:
        if request.path == "/token" and request.method == "POST":
            return self.token(request)
        if self.throttled():
            return google_error(429, "Quota exceeded for quota metric 'Read requests'.", "RESOURCE_EXHAUSTED")
        if not self.bearer_is_valid(request):
            return google_error(401, "Request had invalid authentication credentials.", "UNAUTHENTICATED")
        if request.path == "/v1beta1/alerts" and request.method == "GET":
            return self.list_alerts(request)
        return google_error(404, "Not found.", "NOT_FOUND")

    def token(self, request: Received) -> Answer:
        form = parse_qs(request.body.decode())
        assert form["grant_type"] == ["urn:ietf:params:oauth:grant-type:jwt-bearer"]
        claims = verified_jwt(form["assertion"][0], self.public_key)
        self.assertions.append(claims)
        # Google documents the assertion's audience as its token endpoint, whatever URL it is posted to.
        expected = {"iss": self.client_email, "sub": ADMIN, "scope": SCOPE, "aud": GOOGLE_TOKEN_AUDIENCE}
        if any(claims.get(name) != value for name, value in expected.items()) or claims["exp"] < time.time():
            return json_answer(400, {"error": "invalid_grant", "error_description": "Invalid JWT."})
        if self.refuse_delegation:
            return json_answer(
                401,
                {
                    "error": "unauthorized_client",
                    "error_description": "Client is unauthorized to retrieve access tokens using this "
                    "method, or client not authorized for any of the scopes requested.",
                },
            )
        token, lifetime = self.issue_token()
        return json_answer(200, {"access_token": token, "expires_in": lifetime, "token_type": "Bearer"})

    def list_alerts(self, request: Received) -> Answer:
        (query,) = request.query["filter"]
        match = re.fullmatch(r'createTime >= "([0-9T:Z-]+)"', query)
        assert match, f"a filter this fake does not read: {query}"
        assert request.query["orderBy"] == ["createTime asc"]
        since = datetime.fromisoformat(match.group(1))
        matching = sorted(
            (alert for alert in self.alerts if vendor_time(alert["createTime"]) >= since),
            key=lambda alert: vendor_time(alert["createTime"]),
        )
        start = int(base64.b64decode(request.query["pageToken"][0])) if "pageToken" in request.query else 0
        # Google may return fewer alerts than asked: this fake returns at most its own page size.
        size = min(int(request.query["pageSize"][0]), self.page_size)
        document: dict[str, Any] = {"alerts": matching[start : start + size]}
        if start + size < len(matching):
            document["nextPageToken"] = base64.b64encode(str(start + size).encode()).decode()
        return json_answer(200, document)


def google_error(status: int, message: str, reason: str) -> Answer:
    """An error answer as Google's APIs give it."""
    return json_answer(status, {"error": {"code": status, "message": message, "status": reason}})


def verified_jwt(assertion: str, public_key: Any) -> dict[str, Any]:
    """The claims of an RS256 JWT whose signature the public key verifies (raises otherwise)."""
    header, claims, signature = assertion.split(".")

    def decoded(part: str) -> bytes:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))

    assert json.loads(decoded(header))["alg"] == "RS256"
    public_key.verify(decoded(signature), f"{header}.{claims}".encode(), padding.PKCS1v15(), hashes.SHA256())
    result: dict[str, Any] = json.loads(decoded(claims))
    return result


def service_account_key(token_uri: str) -> tuple[dict[str, str], Any]:
    """A service account key file as Google issues it (synthetic: a key made now), and its public key."""
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    key = {
        "type": "service_account",
        "project_id": "synthetic-vtriage-project",
        "private_key_id": uuid.uuid4().hex,
        "private_key": pem,
        "client_email": "vtriage-poller@synthetic-vtriage-project.iam.gserviceaccount.com",
        "client_id": "100000000000000000001",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/vtriage-poller",
        "universe_domain": "googleapis.com",
    }
    return key, private_key.public_key()


# --- the stack ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stack:
    """The template's stack with both pollers configured, and the way to run one."""

    aws: LocalAws

    def poll(self, function: str) -> dict[str, Any]:
        """Invoke the poller's real handler as its schedule does; its report."""
        report: dict[str, Any] = self.aws.invoke(function, SCHEDULED_EVENT)
        return report

    def queued(self) -> list[tuple[dict[str, Any], dict[str, str]]]:
        """What waits on the detector queue, in order, taken off it: (body, message attributes)."""
        sqs, url = self.aws.client("sqs"), self.aws.ref("AlertQueue")
        found: list[tuple[dict[str, Any], dict[str, str]]] = []
        while True:
            messages = sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
            ).get("Messages", [])
            if not messages:
                return found
            for message in messages:
                attributes = {k: v["StringValue"] for k, v in message.get("MessageAttributes", {}).items()}
                found.append((json.loads(message["Body"]), attributes))
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])

    def cursor(self, source: str) -> str | None:
        """The poller's cursor as the guardrails table keeps it."""
        item = (
            self.aws.client("dynamodb")
            .get_item(TableName=self.aws.ref("GuardrailsTable"), Key={"key": {"S": cursor_key(source)}})
            .get("Item")
        )
        return str(item["cursor"]["S"]) if item else None

    def cases(self) -> list[Case]:
        """Every case of the cases table."""
        cases = DynamoCaseRepository(
            self.aws.client("dynamodb"), self.aws.ref("CasesTable"), timedelta(days=90), utc_now
        )
        return cases.list_cases()


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    """The template's stack on moto with both pollers configured; VirusTotal replayed."""
    with ReplayServer(bundled_recordings(), api_key="local-replay-key") as replay:
        monkeypatch.setenv("VT_BASE_URL", replay.base_url)
        monkeypatch.delenv("VT_API_KEY", raising=False)
        parameters = {
            "FalconApiSecretName": FALCON_SECRET,
            "WorkspaceServiceAccountSecretName": WORKSPACE_SECRET,
            "WorkspaceDelegatedAdmin": ADMIN,
        }
        with LocalAws(parameters=parameters) as aws:
            # A page of two: every scenario crosses page boundaries.
            monkeypatch.setenv("POLL_PAGE_SIZE", "2")
            # Each test's poller is built anew, as a new container would (tokens included).
            falcon_poller.cache_clear()
            workspace_poller.cache_clear()
            yield Stack(aws)
            falcon_poller.cache_clear()
            workspace_poller.cache_clear()


@pytest.fixture
def falcon(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[FalconApi]:
    """The fake Falcon API, with the API client's credentials in the poller's secret."""
    api = FalconApi()
    with api.server:
        stack.aws.client("secretsmanager").create_secret(
            Name=FALCON_SECRET,
            SecretString=json.dumps({"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}),
        )
        monkeypatch.setenv("FALCON_BASE_URL", api.server.base_url)
        yield api


@pytest.fixture
def google(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[GoogleApis]:
    """The fake Google token endpoint and Alert Center, with a service account key in the poller's secret."""
    apis = GoogleApis()
    with apis.server:
        key, public_key = service_account_key(apis.token_uri)
        apis.public_key, apis.client_email = public_key, key["client_email"]
        stack.aws.client("secretsmanager").create_secret(Name=WORKSPACE_SECRET, SecretString=json.dumps(key))
        monkeypatch.setenv("WORKSPACE_ALERT_CENTER_URL", apis.server.base_url)
        yield apis


def recent(minutes_ago: float) -> datetime:
    """A moment this many minutes ago."""
    return datetime.now(UTC) - timedelta(minutes=minutes_ago)


def served_falcon_alerts(
    falcon: FalconApi, count: int, first_minutes_ago: float = 60
) -> list[dict[str, Any]]:
    """`count` real samples served as created a minute apart, oldest first."""
    samples = falcon_samples()
    assert count <= len(samples)
    return [
        falcon.add(sample, recent(first_minutes_ago - index)) for index, sample in enumerate(samples[:count])
    ]


def served_workspace_alerts(
    google: GoogleApis, count: int, first_minutes_ago: float = 60
) -> list[dict[str, Any]]:
    """`count` real samples served as created a minute apart, oldest first."""
    samples = [load(name) for name in WORKSPACE_SAMPLES]
    assert count <= len(samples)
    return [
        google.add(sample, recent(first_minutes_ago - index)) for index, sample in enumerate(samples[:count])
    ]


def cursor_of(alert_time: str) -> str:
    """The cursor the guardrails table keeps for an alert created at this time (microseconds)."""
    return vendor_time(alert_time).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --- Falcon ------------------------------------------------------------------------------------------


def test_the_first_falcon_poll_queues_each_new_alert_unchanged_page_by_page_and_keeps_its_cursor(
    stack: Stack, falcon: FalconApi
) -> None:
    # Given six real Falcon alerts created in the last hour, read two a page
    served = served_falcon_alerts(falcon, 6)

    # When the Falcon poller runs for the first time
    report = stack.poll("FalconPollerFunction")

    # Then each alert is queued once, oldest first, exactly as CrowdStrike served it, naming its poller
    queued = stack.queued()
    assert [body for body, _ in queued] == served
    assert all(attributes == {SOURCE_ATTRIBUTE: "falcon"} for _, attributes in queued)
    assert (report["queued"], report["already_queued"], report["complete"]) == (6, 0, True)
    # And it read three pages, each page's entities by their composite ids
    assert [r.query["offset"] for r in falcon.queries()] == [["0"], ["2"], ["4"]]
    entity_requests = [r.json() for r in falcon.server.received if r.path == "/alerts/entities/alerts/v2"]
    assert entity_requests == [
        {"composite_ids": [a["composite_id"] for a in served[i : i + 2]]} for i in (0, 2, 4)
    ]
    # And it read back the first window (24 hours), with one token
    first_filter = falcon.queries()[0].query["filter"][0]
    assert abs(vendor_time(first_filter.split("'")[1]) - recent(24 * 60)) < timedelta(minutes=1)
    assert falcon.token_requests == 1
    # And the cursor is the newest alert's creation time
    assert stack.cursor("falcon") == cursor_of(served[-1]["created_timestamp"])


def test_a_second_falcon_poll_queues_only_the_alerts_created_since(stack: Stack, falcon: FalconApi) -> None:
    # Given a first poll that queued three alerts
    served = served_falcon_alerts(falcon, 3)
    stack.poll("FalconPollerFunction")
    assert len(stack.queued()) == 3

    # When the poller runs again with nothing new, then once more after one new alert
    quiet = stack.poll("FalconPollerFunction")
    nothing = stack.queued()
    newer = falcon.add(falcon_samples()[3], recent(1))
    report = stack.poll("FalconPollerFunction")

    # Then the quiet poll queues none of the alerts it reads again in its overlap
    assert nothing == []
    assert (quiet["queued"], quiet["already_queued"]) == (0, 3)
    # And the next queues the new alert alone, and the cursor moves to it
    assert [body for body, _ in stack.queued()] == [newer]
    assert report["queued"] == 1
    assert stack.cursor("falcon") == cursor_of(newer["created_timestamp"])
    # And each later poll read from its cursor less the overlap (15 minutes), not the first window
    later_filter = falcon.queries()[-1].query["filter"][0]
    cursor = vendor_time(served[-1]["created_timestamp"])
    assert vendor_time(later_filter.split("'")[1]) == (cursor - timedelta(minutes=15)).replace(microsecond=0)


def test_falcon_failing_mid_way_leaves_the_cursor_after_what_was_queued_and_the_next_poll_goes_on(
    stack: Stack, falcon: FalconApi
) -> None:
    # Given five alerts, and CrowdStrike failing the entities of the second page
    served = served_falcon_alerts(falcon, 5)
    falcon.fail_entities_after = 1

    # When the poller runs, Then the poll fails as a transient error
    with pytest.raises(TransientError, match="HTTP 500"):
        stack.poll("FalconPollerFunction")

    # And the first page was queued, and the cursor stops after it
    assert [body for body, _ in stack.queued()] == served[:2]
    assert stack.cursor("falcon") == cursor_of(served[1]["created_timestamp"])

    # When CrowdStrike recovers and the next poll runs
    falcon.fail_entities_after = None
    stack.poll("FalconPollerFunction")

    # Then it queues the rest, and none twice
    assert [body for body, _ in stack.queued()] == served[2:]


def test_an_expired_falcon_token_is_renewed_before_it_is_refused(stack: Stack, falcon: FalconApi) -> None:
    # Given tokens that CrowdStrike lets live two seconds, and a first poll with one of them
    falcon.token_lifetime = 2
    served_falcon_alerts(falcon, 1)
    stack.poll("FalconPollerFunction")

    # When the next poll comes after the token expired
    time.sleep(2.2)
    report = stack.poll("FalconPollerFunction")

    # Then the poller took a new token first: no request was refused
    assert falcon.token_requests == 2
    assert report["already_queued"] == 1
    assert [status for _, status in falcon.answered if status >= 400] == []


def test_a_falcon_token_refused_with_401_is_renewed_once_and_the_poll_goes_on(
    stack: Stack, falcon: FalconApi
) -> None:
    # Given a first poll, then CrowdStrike no longer honouring the token it issued (revoked)
    served = served_falcon_alerts(falcon, 2)
    stack.poll("FalconPollerFunction")
    stack.queued()
    falcon.revoke_tokens()
    newer = falcon.add(falcon_samples()[2], recent(1))

    # When the poller runs
    stack.poll("FalconPollerFunction")

    # Then it took a second token after the one 401, and queued the new alert alone
    assert falcon.token_requests == 2
    assert [status for _, status in falcon.answered if status >= 400] == [401]
    assert [body for body, _ in stack.queued()] == [newer]
    assert stack.cursor("falcon") == cursor_of(newer["created_timestamp"])
    assert len(served) == 2


def test_a_falcon_api_client_refused_with_a_fresh_token_fails_the_poll_naming_the_scope(
    stack: Stack, falcon: FalconApi
) -> None:
    # Given an API client whose every token CrowdStrike refuses (it lacks the Alerts: Read scope)
    served_falcon_alerts(falcon, 2)
    falcon.refuse_every_token = True

    # When the poller runs
    with pytest.raises(FalconAuthError) as refused:
        stack.poll("FalconPollerFunction")

    # Then it renewed the token once, no more, and says what the client needs, never its secret
    assert falcon.token_requests == 2
    assert "Alerts: Read" in str(refused.value)
    assert CLIENT_SECRET not in str(refused.value)
    # And nothing was queued, and no cursor kept
    assert stack.queued() == []
    assert stack.cursor("falcon") is None


def test_a_rate_limited_falcon_request_waits_until_crowdstrike_says_then_succeeds(
    stack: Stack, falcon: FalconApi
) -> None:
    # Given CrowdStrike answering the first query 429, retry from the next epoch second
    served = served_falcon_alerts(falcon, 2)
    falcon.throttle_next = 1

    # When the poller runs
    stack.poll("FalconPollerFunction")

    # Then the query was sent again no earlier than CrowdStrike allowed, and the alerts were queued
    times = [at for path, at in falcon.request_times if path == "/alerts/queries/alerts/v2"]
    assert len(times) == 2
    assert int(times[1]) >= int(times[0]) + falcon.retry_after_seconds
    assert [body for body, _ in stack.queued()] == served


def test_a_falcon_rate_limit_that_lasts_fails_the_poll_after_a_bounded_number_of_waits(
    stack: Stack, falcon: FalconApi
) -> None:
    # Given CrowdStrike answering 429 to every API request
    served_falcon_alerts(falcon, 2)
    falcon.throttle_next = 1000

    # When the poller runs
    started = time.monotonic()
    with pytest.raises(TransientError, match="rate limit"):
        stack.poll("FalconPollerFunction")

    # Then it gave up after three waits (four requests), within seconds, having queued nothing
    assert len([path for path, _ in falcon.request_times if path == "/alerts/queries/alerts/v2"]) == 4
    assert time.monotonic() - started < 10
    assert stack.queued() == []


def test_polled_falcon_alerts_become_cases_as_the_detector_rules_findings_do(
    stack: Stack, falcon: FalconApi
) -> None:
    # Given two real Falcon alerts polled onto the detector queue
    served = served_falcon_alerts(falcon, 2)
    stack.poll("FalconPollerFunction")

    # When the enrich function reads the queue
    outcomes, failures = Pipeline(stack.aws).drain(wait_s=0)

    # Then each alert is one case of the Falcon source, under the vendor's own id
    assert failures == []
    assert len(outcomes) == 2
    cases = stack.cases()
    assert sorted(case.alert.source for case in cases) == ["falcon", "falcon"]
    assert sorted(case.alert.id for case in cases) == sorted(a["composite_id"] for a in served)


def test_a_falcon_alert_whose_text_sqs_cannot_carry_raw_is_queued_and_becomes_a_case(
    stack: Stack, falcon: FalconApi
) -> None:
    # Given a real Falcon alert whose description (text an attacker may choose) holds a terminal escape,
    # a NUL and a lone surrogate, as CrowdStrike's JSON would escape them
    sample = falcon_samples()[0]
    sample["description"] = "dropper \x1b[2Jcleared\x00 and \ud800 end"
    served = falcon.add(sample, recent(30))

    # When the Falcon poller runs and the enrich function reads the queue
    report = stack.poll("FalconPollerFunction")
    outcomes, failures = Pipeline(stack.aws).drain(wait_s=0)

    # Then the alert is queued and becomes its case: the control characters kept as the sender wrote
    # them, the surrogate UTF-8 cannot encode replaced by U+FFFD
    assert report["queued"] == 1
    assert failures == []
    assert len(outcomes) == 1
    [case] = stack.cases()
    assert case.alert.id == served["composite_id"]
    assert "dropper \x1b[2Jcleared\x00 and \ufffd end" in case.alert.title


# --- Google Workspace --------------------------------------------------------------------------------


def test_the_first_workspace_poll_queues_each_new_alert_unchanged_as_the_delegated_admin(
    stack: Stack, google: GoogleApis
) -> None:
    # Given five real Alert Center alerts created in the last hour, served two a page
    served = served_workspace_alerts(google, 5)

    # When the Workspace poller runs for the first time
    report = stack.poll("WorkspacePollerFunction")

    # Then each alert is queued once, oldest first, exactly as Google served it, naming its poller
    queued = stack.queued()
    assert [body for body, _ in queued] == served
    assert all(attributes == {SOURCE_ATTRIBUTE: "workspace"} for _, attributes in queued)
    assert (report["queued"], report["complete"]) == (5, True)
    # And it followed nextPageToken over three pages
    lists = [r for r in google.server.received if r.path == "/v1beta1/alerts"]
    assert ["pageToken" in r.query for r in lists] == [False, True, True]
    # And google-auth signed one assertion, as the service account, for the administrator and the scope
    assert len(google.assertions) == 1
    assert google.assertions[0]["sub"] == ADMIN
    assert google.assertions[0]["scope"] == SCOPE
    # And the cursor is the newest alert's creation time
    assert stack.cursor("workspace") == cursor_of(served[-1]["createTime"])


def test_a_workspace_alert_whose_text_sqs_cannot_carry_raw_is_queued_and_becomes_a_case(
    stack: Stack, google: GoogleApis
) -> None:
    # Given a real Alert Center alert whose subject line (a phisher chooses it) holds a terminal escape
    # and a lone surrogate, as Google's JSON would escape them
    sample = load(WORKSPACE_SAMPLES[0])
    messages = sample["data"].get("messages", [{}])
    subject = "invoice \x1b[2J\ud800 due"
    sample["data"]["messages"] = [{**message, "subjectText": subject} for message in messages]
    served = google.add(sample, recent(30))

    # When the Workspace poller runs and the enrich function reads the queue
    report = stack.poll("WorkspacePollerFunction")
    outcomes, failures = Pipeline(stack.aws).drain(wait_s=0)

    # Then the alert is queued and becomes its case, under Google's own alert id
    assert report["queued"] == 1
    assert failures == []
    assert len(outcomes) == 1
    [case] = stack.cases()
    assert case.alert.id == served["alertId"]


def test_a_second_workspace_poll_queues_none_of_the_alerts_it_queued_before(
    stack: Stack, google: GoogleApis
) -> None:
    # Given a first poll that queued three alerts
    served_workspace_alerts(google, 3)
    stack.poll("WorkspacePollerFunction")
    assert len(stack.queued()) == 3

    # When the poller runs again, then after one new alert
    quiet = stack.poll("WorkspacePollerFunction")
    nothing = stack.queued()
    newer = google.add(load(WORKSPACE_SAMPLES[4]), recent(1))
    stack.poll("WorkspacePollerFunction")

    # Then the quiet poll queued none, and the next the new alert alone, with the token of the first
    assert nothing == []
    assert (quiet["queued"], quiet["already_queued"]) == (0, 3)
    assert [body for body, _ in stack.queued()] == [newer]
    assert google.token_requests == 1


def test_a_workspace_token_is_renewed_when_it_expires_and_once_when_it_is_refused(
    stack: Stack, google: GoogleApis
) -> None:
    # Given tokens that Google lets live just past google-auth's refresh margin (3 min 45 s), and a first
    # poll with one of them
    google.token_lifetime = 225 + 2
    served_workspace_alerts(google, 1)
    stack.poll("WorkspacePollerFunction")

    # When the next poll comes after it expired, and another after Google revoked the token it holds
    time.sleep(2.2)
    stack.poll("WorkspacePollerFunction")
    after_expiry = google.token_requests
    google.revoke_tokens()
    newer = google.add(load(WORKSPACE_SAMPLES[1]), recent(1))
    stack.queued()
    stack.poll("WorkspacePollerFunction")

    # Then google-auth took a new token for the expired one before using it, and one more after the 401
    assert after_expiry == 2
    assert google.token_requests == 3
    assert [status for _, status in google.answered if status >= 400] == [401]
    assert [body for body, _ in stack.queued()] == [newer]


def test_a_rate_limited_alerts_list_backs_off_then_succeeds(stack: Stack, google: GoogleApis) -> None:
    # Given Google answering the first alerts.list 429 (no Retry-After)
    served = served_workspace_alerts(google, 2)
    google.throttle_next = 1

    # When the poller runs
    stack.poll("WorkspacePollerFunction")

    # Then it waited (a second) and asked again, and queued the alerts
    times = [at for path, at in google.request_times if path == "/v1beta1/alerts"]
    assert len(times) == 2
    assert times[1] - times[0] >= 0.9
    assert [body for body, _ in stack.queued()] == served


def test_a_refused_delegation_fails_the_workspace_poll_naming_the_scope(
    stack: Stack, google: GoogleApis
) -> None:
    # Given a service account whose client id the domain did not grant the scope
    served_workspace_alerts(google, 2)
    google.refuse_delegation = True

    # When the poller runs
    with pytest.raises(WorkspaceAuthError) as refused:
        stack.poll("WorkspacePollerFunction")

    # Then the error names the scope and the delegation, and nothing is queued
    assert SCOPE in str(refused.value)
    assert "delegation" in str(refused.value)
    assert "PRIVATE KEY" not in str(refused.value)
    assert stack.queued() == []


def test_polled_workspace_alerts_become_cases_as_the_detector_rules_findings_do(
    stack: Stack, google: GoogleApis
) -> None:
    # Given two real Alert Center alerts polled onto the detector queue
    served = served_workspace_alerts(google, 2)
    stack.poll("WorkspacePollerFunction")

    # When the enrich function reads the queue
    outcomes, failures = Pipeline(stack.aws).drain(wait_s=0)

    # Then each alert is one case of the Workspace source, under Google's alert id
    assert failures == []
    assert len(outcomes) == 2
    cases = stack.cases()
    assert sorted(case.alert.source for case in cases) == ["workspace", "workspace"]
    assert sorted(case.alert.id for case in cases) == sorted(a["alertId"] for a in served)
