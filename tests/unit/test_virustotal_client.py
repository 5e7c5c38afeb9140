"""The VirusTotal client and its typed errors, on loopback: the replay server and a scripted server."""

from __future__ import annotations

import base64
import json
import pickle
import random
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from vtriage.adapters.virustotal import DEEP_RELATIONSHIPS, VirusTotalClient, error_from_response
from vtriage.config.virustotal import DEFAULT_VT_BASE_URL
from vtriage.errors import ConfigurationError, TransientError, VtriageError
from vtriage.models import Ioc, IocType, Verdict
from vtriage.verdict import assess_ioc, load_policy
from vtriage.virustotal.errors import (
    ERRORS_BY_CODE,
    VirusTotalError,
    VirusTotalForbiddenError,
    VirusTotalNotAvailableYet,
    VirusTotalNotFoundError,
    VirusTotalQuotaExceededError,
    VirusTotalTransientError,
    VirusTotalUnavailableError,
    VirusTotalWrongCredentialsError,
)
from vtriage.virustotal.objects import NOTES_KEY, gui_link, object_ref, url_id
from vtriage_local.replay import ReplayServer, bundled_recordings

API_KEY = "k3y-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd"
FILE_SHA256 = "4bc00f7d638e042da764e8648c03c0db46700599dd4f08d117e3e9e8b538519b"
FILE_MD5 = "546bb6ef89bebfb053999777f6930d7e"
URL = "http://soclosebutyetqq.com/69.exe"


def ioc(ioc_type: IocType, value: str) -> Ioc:
    return Ioc(type=ioc_type, value=value, found_at="finding.service.action")


class SleepRecorder:
    """Stands in for time.sleep: records each delay instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
def vt_sleep() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
def vt_session() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def make_client(
    session: requests.Session, base_url: str, sleep: SleepRecorder, **options: Any
) -> VirusTotalClient:
    return VirusTotalClient(session, API_KEY, base_url, sleep=sleep, rng=random.Random(1), **options)


# --- identifiers and links ---------------------------------------------------------------------------


def test_the_url_id_matches_virustotals_documented_example() -> None:
    # VirusTotal's docs: base64.urlsafe_b64encode("http://www.somedomain.com/this/is/my/url").strip("=")
    assert url_id("http://www.somedomain.com/this/is/my/url") == (
        "aHR0cDovL3d3dy5zb21lZG9tYWluLmNvbS90aGlzL2lzL215L3VybA"
    )


@given(st.text(min_size=1))
def test_a_url_id_is_unpadded_url_safe_base64_of_the_url(url: str) -> None:
    identifier = url_id(url)

    assert not set(identifier) & {"=", "+", "/"}
    padded = identifier + "=" * (-len(identifier) % 4)
    assert base64.urlsafe_b64decode(padded).decode() == url


@pytest.mark.parametrize(
    ("indicator", "collection", "identifier", "link"),
    [
        (
            ioc(IocType.FILE, FILE_MD5),
            "files",
            FILE_MD5,
            f"https://www.virustotal.com/gui/file/{FILE_MD5}",
        ),
        (
            ioc(IocType.URL, URL),
            "urls",
            "aHR0cDovL3NvY2xvc2VidXR5ZXRxcS5jb20vNjkuZXhl",
            "https://www.virustotal.com/gui/url/aHR0cDovL3NvY2xvc2VidXR5ZXRxcS5jb20vNjkuZXhl",
        ),
        (
            ioc(IocType.DOMAIN, "tawuhoju.com"),
            "domains",
            "tawuhoju.com",
            "https://www.virustotal.com/gui/domain/tawuhoju.com",
        ),
        (
            ioc(IocType.IP, "23.129.64.215"),
            "ip_addresses",
            "23.129.64.215",
            "https://www.virustotal.com/gui/ip-address/23.129.64.215",
        ),
    ],
    ids=["file", "url", "domain", "ip"],
)
def test_each_ioc_type_has_its_collection_id_and_gui_link(
    indicator: Ioc, collection: str, identifier: str, link: str
) -> None:
    assert object_ref(indicator) == (collection, identifier)
    assert gui_link(indicator) == link


# --- lookups against the replay server ---------------------------------------------------------------


@pytest.fixture(scope="module")
def keyed_replay() -> Iterator[ReplayServer]:
    """The replay server on the bundled recordings, requiring API_KEY."""
    with ReplayServer(bundled_recordings(), api_key=API_KEY) as server:
        yield server


@pytest.mark.parametrize(
    ("indicator", "expected_id"),
    [
        (ioc(IocType.DOMAIN, "tawuhoju.com"), "tawuhoju.com"),
        (ioc(IocType.FILE, FILE_MD5), FILE_SHA256),
        (ioc(IocType.URL, URL), "7d83e9f686ff0122ded311f27aababf6922800a45a23a4dacc860b56ccada4cb"),
        (ioc(IocType.IP, "23.129.64.215"), "23.129.64.215"),
    ],
    ids=["domain", "file-by-md5", "url", "ip"],
)
def test_a_lookup_returns_the_data_object_in_one_request(
    keyed_replay: ReplayServer,
    vt_session: requests.Session,
    vt_sleep: SleepRecorder,
    indicator: Ioc,
    expected_id: str,
) -> None:
    # Given a client of the replay server
    client = make_client(vt_session, keyed_replay.base_url, vt_sleep)
    received_before = keyed_replay.request_count

    # When it looks an IOC up
    data = client.lookup(indicator)

    # Then it gets the `data` object, with one request sent and received, and no waiting
    assert data is not None
    assert data["id"] == expected_id
    assert "last_analysis_stats" in data["attributes"]
    assert client.requests_sent == 1
    assert keyed_replay.request_count - received_before == 1
    assert vt_sleep.delays == []


def test_an_ioc_virustotal_never_saw_is_none_after_one_request(
    keyed_replay: ReplayServer, vt_session: requests.Session, vt_sleep: SleepRecorder
) -> None:
    client = make_client(vt_session, keyed_replay.base_url, vt_sleep)

    assert client.lookup(ioc(IocType.DOMAIN, "never-seen.example")) is None
    assert client.requests_sent == 1
    assert vt_sleep.delays == []


def test_a_wrong_key_is_a_configuration_error_not_retried_and_never_shown(
    keyed_replay: ReplayServer, vt_session: requests.Session, vt_sleep: SleepRecorder
) -> None:
    # Given a client whose key the server does not accept
    wrong_key = "wrong-" + API_KEY
    client = VirusTotalClient(vt_session, wrong_key, keyed_replay.base_url, sleep=vt_sleep)

    # When it looks an IOC up
    with pytest.raises(VirusTotalWrongCredentialsError) as caught:
        client.lookup(ioc(IocType.DOMAIN, "tawuhoju.com"))

    # Then the typed 401 error is raised after a single request, as a configuration error
    error = caught.value
    assert isinstance(error, ConfigurationError)
    assert not isinstance(error, TransientError)
    assert (error.code, error.http_status) == ("WrongCredentialsError", 401)
    assert client.requests_sent == 1
    assert vt_sleep.delays == []
    # and the key appears nowhere a log or a ticket could show it
    for text in (str(error), repr(error), error.message, repr(client)):
        assert wrong_key not in text
        assert API_KEY not in text


def test_a_quota_error_then_success_is_retried_after_the_retry_after_delay(
    vt_session: requests.Session, vt_sleep: SleepRecorder
) -> None:
    # Given a server that answers the next request with 429 QuotaExceededError and Retry-After: 2
    with ReplayServer(bundled_recordings(), retry_after_s=2) as server:
        server.fail_next("429")
        client = make_client(vt_session, server.base_url, vt_sleep)

        # When the client looks an IOC up
        data = client.lookup(ioc(IocType.DOMAIN, "tawuhoju.com"))

        # Then it waited as told, asked again, and got the object
        assert data is not None
        assert data["id"] == "tawuhoju.com"
        assert vt_sleep.delays == [2.0]
        assert client.requests_sent == 2
        assert server.request_count == 2


def test_a_long_retry_after_is_capped_by_the_back_off_cap(
    vt_session: requests.Session, vt_sleep: SleepRecorder
) -> None:
    with ReplayServer(bundled_recordings(), retry_after_s=60) as server:
        server.fail_next("429")
        client = make_client(vt_session, server.base_url, vt_sleep, backoff_cap=8.0)

        assert client.lookup(ioc(IocType.DOMAIN, "tawuhoju.com")) is not None

    assert vt_sleep.delays == [8.0]


def test_without_retry_after_the_back_off_grows_with_full_jitter(
    vt_session: requests.Session, vt_sleep: SleepRecorder
) -> None:
    # Given a server that fails the next three requests with 429 and no Retry-After
    with ReplayServer(bundled_recordings()) as server:
        server.fail_next("429", count=3)
        client = make_client(vt_session, server.base_url, vt_sleep, backoff_base=0.5, backoff_cap=1.5)

        # When the client looks up, with four attempts
        data = client.lookup(ioc(IocType.DOMAIN, "tawuhoju.com"))

    # Then each wait is drawn between 0 and base * 2^n, never above the cap
    assert data is not None
    assert len(vt_sleep.delays) == 3
    for attempt, delay in enumerate(vt_sleep.delays):
        assert 0.0 <= delay <= min(1.5, 0.5 * 2**attempt)
    assert len(set(vt_sleep.delays)) == 3


def test_server_errors_are_retried_then_raised_as_a_transient_error(
    vt_session: requests.Session, vt_sleep: SleepRecorder
) -> None:
    # Given a server that always answers 503 TransientError
    with ReplayServer(bundled_recordings(), faults={"503": 1.0}) as server:
        client = make_client(vt_session, server.base_url, vt_sleep, max_attempts=3)

        # When the client looks an IOC up
        with pytest.raises(VirusTotalTransientError) as caught:
            client.lookup(ioc(IocType.DOMAIN, "tawuhoju.com"))

        # Then it tried three times, waited between attempts only, and raised the typed error saying so
        assert isinstance(caught.value, TransientError)
        assert caught.value.http_status == 503
        assert client.requests_sent == 3
        assert caught.value.attempts == 3
        assert server.request_count == 3
        assert len(vt_sleep.delays) == 2


def test_an_undocumented_server_error_is_retried_and_keeps_its_code(
    vt_session: requests.Session, vt_sleep: SleepRecorder
) -> None:
    with ReplayServer(bundled_recordings(), faults={"500": 1.0}) as server:
        client = make_client(vt_session, server.base_url, vt_sleep, max_attempts=2)

        with pytest.raises(VirusTotalUnavailableError) as caught:
            client.lookup(ioc(IocType.IP, "23.129.64.215"))

    assert (caught.value.code, caught.value.http_status, caught.value.attempts) == ("InternalError", 500, 2)
    assert client.requests_sent == 2


def test_a_read_timeout_is_retried_then_raised_as_unavailable(
    vt_session: requests.Session, vt_sleep: SleepRecorder
) -> None:
    # Given a server that holds every answer longer than the client's read timeout
    with ReplayServer(bundled_recordings(), faults={"timeout": 1.0}, timeout_sleep_s=5) as server:
        client = make_client(vt_session, server.base_url, vt_sleep, timeout=(1.0, 0.2), max_attempts=2)

        # When the client looks an IOC up
        with pytest.raises(VirusTotalUnavailableError) as caught:
            client.lookup(ioc(IocType.DOMAIN, "tawuhoju.com"))

    # Then it gave up on each attempt and raised a retryable error
    assert (caught.value.code, caught.value.attempts) == ("Timeout", 2)
    assert isinstance(caught.value, TransientError)
    assert client.requests_sent == 2
    assert len(vt_sleep.delays) == 1


def test_a_refused_connection_is_retried_then_raised_as_unavailable(
    vt_session: requests.Session, vt_sleep: SleepRecorder
) -> None:
    # Given a loopback port nobody listens on
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = make_client(vt_session, f"http://127.0.0.1:{port}/api/v3", vt_sleep, max_attempts=3)

    with pytest.raises(VirusTotalUnavailableError) as caught:
        client.lookup(ioc(IocType.DOMAIN, "tawuhoju.com"))

    assert (caught.value.code, caught.value.attempts) == ("ConnectionError", 3)
    assert client.requests_sent == 3
    assert API_KEY not in str(caught.value)


def test_concurrent_lookups_count_every_request_the_server_received(vt_sleep: SleepRecorder) -> None:
    # Given one client shared by several workers, and a server that throttles a third of the requests
    with (
        ReplayServer(bundled_recordings(), faults={"429": 0.3}, seed=3) as server,
        requests.Session() as session,
    ):
        client = make_client(session, server.base_url, vt_sleep, max_attempts=20)
        indicators = [
            ioc(IocType.DOMAIN, "tawuhoju.com"),
            ioc(IocType.FILE, FILE_MD5),
            ioc(IocType.URL, URL),
        ] * 4
        results: list[dict[str, Any] | None] = []

        def work(indicator: Ioc) -> None:
            results.append(client.lookup(indicator))

        # When they all look up at once
        workers = [threading.Thread(target=work, args=(indicator,)) for indicator in indicators]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()

        # Then every lookup succeeded, and the client counted exactly the requests the server received
        assert len(results) == 12
        assert all(result is not None for result in results)
        assert client.requests_sent == server.request_count
        assert client.requests_sent == 12 + len(vt_sleep.delays)


def test_an_unusable_base_url_is_an_error_not_retried(
    vt_session: requests.Session, vt_sleep: SleepRecorder
) -> None:
    # Given a base URL no HTTP client can use (a mistyped VT_BASE_URL)
    client = make_client(vt_session, "ftp://127.0.0.1/api/v3", vt_sleep)

    # When an IOC is looked up, Then a VirusTotal error says so at once, without retrying
    with pytest.raises(VirusTotalError) as caught:
        client.lookup(ioc(IocType.DOMAIN, "tawuhoju.com"))
    assert caught.value.code == "RequestError"
    assert not isinstance(caught.value, TransientError)
    assert client.requests_sent == 1
    assert vt_sleep.delays == []


def test_a_skipped_ioc_is_refused_without_a_request(
    keyed_replay: ReplayServer, vt_session: requests.Session, vt_sleep: SleepRecorder
) -> None:
    client = make_client(vt_session, keyed_replay.base_url, vt_sleep)
    skipped = Ioc(type=IocType.IP, value="10.0.0.5", found_at="resource.ip", skipped_reason="private address")

    with pytest.raises(ValueError, match="private address"):
        client.lookup(skipped)
    assert client.requests_sent == 0


def test_a_client_needs_a_key() -> None:
    with pytest.raises(ValueError, match="API key"):
        VirusTotalClient(requests.Session(), "", DEFAULT_VT_BASE_URL)


# --- what goes on the wire, against a scripted server ------------------------------------------------


Script = list[tuple[int, bytes, dict[str, str]]]


class ScriptedServer:
    """A loopback server answering from a script of (status, body, headers), recording each request."""

    def __init__(self, script: Script) -> None:
        self.script = list(script)
        self.requests: list[tuple[str, dict[str, str]]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.requests.append((self.path, dict(self.headers.items())))
                status, body, headers = owner.script.pop(0) if owner.script else (404, b"{}", {})
                body = body.replace(b"{key}", (self.headers.get("x-apikey") or "").encode())
                self.send_response(status)
                for name, value in {"Content-Length": str(len(body)), **headers}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self._httpd.server_address[1]}/api/v3"

    def __enter__(self) -> ScriptedServer:
        threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def vt_error_body(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


def test_the_key_goes_in_the_x_apikey_header_and_the_id_is_percent_encoded(
    vt_session: requests.Session, vt_sleep: SleepRecorder
) -> None:
    # Given a domain value carrying path and query characters (defence in depth: callers canonicalise)
    hostile = ioc(IocType.DOMAIN, "a/../files/x?y=1#z")
    with ScriptedServer([(404, vt_error_body("NotFoundError", "not found"), {})]) as server:
        client = make_client(vt_session, server.base_url, vt_sleep)

        # When it is looked up
        assert client.lookup(hostile) is None

    # Then the value stays one path segment, and the key travels only in its header
    path, headers = server.requests[0]
    assert path == "/api/v3/domains/a%2F..%2Ffiles%2Fx%3Fy%3D1%23z?relationships=resolutions"
    assert headers["x-apikey"] == API_KEY
    assert API_KEY not in path


def test_a_bad_request_is_not_retried(vt_session: requests.Session, vt_sleep: SleepRecorder) -> None:
    script: Script = [(400, vt_error_body("BadRequestError", "bad"), {})] * 3
    with ScriptedServer(script) as server:
        client = make_client(vt_session, server.base_url, vt_sleep)

        with pytest.raises(VirusTotalError) as caught:
            client.lookup(ioc(IocType.FILE, FILE_MD5))

    assert (caught.value.code, caught.value.http_status) == ("BadRequestError", 400)
    assert len(server.requests) == 1


def test_a_key_echoed_back_by_a_server_is_scrubbed_from_the_error(
    vt_session: requests.Session, vt_sleep: SleepRecorder
) -> None:
    # Given a server (a misbehaving gateway) that quotes the key it received in its error message
    script: Script = [(403, vt_error_body("ForbiddenError", "key {key} may not do this"), {})]
    with ScriptedServer(script) as server:
        client = make_client(vt_session, server.base_url, vt_sleep)

        with pytest.raises(VirusTotalForbiddenError) as caught:
            client.lookup(ioc(IocType.FILE, FILE_MD5))

    # Then the error says what happened without the key
    assert isinstance(caught.value, ConfigurationError)
    assert "key [redacted] may not do this" in str(caught.value)
    assert API_KEY not in str(caught.value)
    assert API_KEY not in repr(caught.value)


def test_a_gateway_page_instead_of_json_is_retried_as_unavailable(
    vt_session: requests.Session, vt_sleep: SleepRecorder
) -> None:
    script = [(502, b"<html><body>Bad Gateway</body></html>", {"Content-Type": "text/html"})] * 2
    with ScriptedServer(script) as server:
        client = make_client(vt_session, server.base_url, vt_sleep, max_attempts=2)

        with pytest.raises(VirusTotalUnavailableError) as caught:
            client.lookup(ioc(IocType.FILE, FILE_MD5))

    assert caught.value.code == "HTTP502"
    assert "Bad Gateway" in caught.value.message
    assert len(server.requests) == 2


def test_a_redirect_is_not_followed_so_the_key_never_leaves(
    vt_session: requests.Session, vt_sleep: SleepRecorder
) -> None:
    # Given a server that redirects elsewhere (the key would travel with a followed redirect)
    with ScriptedServer([]) as elsewhere:
        script = [(302, b"", {"Location": f"{elsewhere.base_url}/files/{FILE_MD5}"})]
        with ScriptedServer(script) as server:
            client = make_client(vt_session, server.base_url, vt_sleep)

            with pytest.raises(VirusTotalError) as caught:
                client.lookup(ioc(IocType.FILE, FILE_MD5))

    assert caught.value.code == "UnexpectedRedirectError"
    assert elsewhere.requests == []


def test_a_200_that_is_not_a_virustotal_object_is_an_error(
    vt_session: requests.Session, vt_sleep: SleepRecorder
) -> None:
    with ScriptedServer([(200, b"<html>captive portal</html>", {})]) as server:
        client = make_client(vt_session, server.base_url, vt_sleep)

        with pytest.raises(VirusTotalError) as caught:
            client.lookup(ioc(IocType.FILE, FILE_MD5))

    assert caught.value.code == "InvalidResponseError"
    assert not isinstance(caught.value, TransientError)


# --- the error factory -------------------------------------------------------------------------------

DOCUMENTED = [
    (400, "BadRequestError"),
    (400, "InvalidArgumentError"),
    (400, "NotAvailableYet"),
    (400, "UnselectiveContentQueryError"),
    (400, "UnsupportedContentQueryError"),
    (401, "AuthenticationRequiredError"),
    (401, "UserNotActiveError"),
    (401, "WrongCredentialsError"),
    (403, "ForbiddenError"),
    (404, "NotFoundError"),
    (409, "AlreadyExistsError"),
    (424, "FailedDependencyError"),
    (429, "QuotaExceededError"),
    (429, "TooManyRequestsError"),
    (503, "TransientError"),
    (504, "DeadlineExceededError"),
]


@pytest.mark.parametrize(("status", "code"), DOCUMENTED)
def test_every_documented_error_code_has_its_own_class(status: int, code: str) -> None:
    error = error_from_response(status, vt_error_body(code, "what happened"))

    assert type(error).__name__ == f"VirusTotal{code}"
    assert (error.code, error.message, error.http_status) == (code, "what happened", status)
    assert type(error).default_status == status
    assert isinstance(error, VtriageError)
    assert isinstance(error, TransientError) == (status in (429, 503, 504))
    assert isinstance(error, ConfigurationError) == (status in (401, 403))


def test_the_documented_codes_are_all_mapped() -> None:
    assert sorted(ERRORS_BY_CODE) == sorted(code for _, code in DOCUMENTED)
    assert ERRORS_BY_CODE["NotAvailableYet"] is VirusTotalNotAvailableYet


def test_an_unknown_code_keeps_its_code_on_the_base_class() -> None:
    error = error_from_response(418, vt_error_body("TeapotError", "short and stout"))

    assert type(error) is VirusTotalError
    assert (error.code, error.message, error.http_status) == ("TeapotError", "short and stout", 418)


@pytest.mark.parametrize("body", [b"", b"not json", b"[1, 2]", b'{"error": "flat"}', None])
def test_a_body_that_is_not_virustotals_json_is_tolerated(body: bytes | None) -> None:
    error = error_from_response(429, body)

    assert isinstance(error, VirusTotalUnavailableError)
    assert error.code == "HTTP429"
    assert error.http_status == 429


def test_an_error_keeps_its_code_through_pickling() -> None:
    error = error_from_response(429, vt_error_body("QuotaExceededError", "daily quota"))
    error.attempts = 4

    restored = pickle.loads(pickle.dumps(error))

    assert isinstance(restored, VirusTotalQuotaExceededError)
    assert (restored.code, restored.message, restored.http_status) == (
        "QuotaExceededError",
        "daily quota",
        429,
    )
    assert restored.attempts == 4
    assert str(restored) == str(error) == "VirusTotal QuotaExceededError (HTTP 429): daily quota"


def test_not_found_is_a_plain_virustotal_error() -> None:
    error = error_from_response(404, vt_error_body("NotFoundError", 'Domain "x.example" not found'))

    assert isinstance(error, VirusTotalNotFoundError)
    assert not isinstance(error, TransientError | ConfigurationError)


# --- relationships in the lookup, and deep context ----------------------------------------------------

VT_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "vt"


def fixture_body(name: str) -> bytes:
    """A real VirusTotal answer `{"data": {...}}` from tests/fixtures/vt, as bytes."""
    return (VT_FIXTURES / name).read_bytes()


def collection_body(*names: str) -> bytes:
    """A relationship answer holding full real objects: `{"data": [...], "meta": {...}}`."""
    objects = [json.loads(fixture_body(name))["data"] for name in names]
    return json.dumps({"data": objects, "meta": {"count": len(objects)}}).encode()


@pytest.mark.parametrize(
    ("indicator", "fixture", "query"),
    [
        (ioc(IocType.DOMAIN, "tawuhoju.com"), "opencti__vt_test_domain.json", "?relationships=resolutions"),
        (ioc(IocType.IP, "23.129.64.215"), "demisto__TestData_ip.json", "?relationships=resolutions"),
        (
            ioc(IocType.URL, URL),
            "opencti__vt_test_url.json",
            "?relationships=last_serving_ip_address,network_location",
        ),
        (
            ioc(IocType.FILE, FILE_SHA256),
            "opencti__vt_test_file.json",
            "?relationships=contacted_domains,contacted_ips",
        ),
    ],
    ids=["domain", "ip", "url", "file"],
)
def test_the_default_lookup_asks_for_relationships_in_its_one_request(
    vt_session: requests.Session, vt_sleep: SleepRecorder, indicator: Ioc, fixture: str, query: str
) -> None:
    # Given a server answering a real report
    with ScriptedServer([(200, fixture_body(fixture), {})]) as server:
        client = make_client(vt_session, server.base_url, vt_sleep)

        # When an IOC is looked up with the default configuration
        data = client.lookup(indicator)

    # Then exactly one request went out, asking for the type's relationships as descriptors
    assert data is not None
    assert len(server.requests) == 1
    assert client.requests_sent == 1
    collection, identifier = object_ref(indicator)
    assert server.requests[0][0] == f"/api/v3/{collection}/{identifier}{query}"
    assert NOTES_KEY not in data
    assert client.requests_per_lookup(indicator.type) == 1


def test_deep_context_fetches_each_relationship_once_and_counts_every_request(
    vt_session: requests.Session, vt_sleep: SleepRecorder
) -> None:
    # Given a server answering the real domain report, then its URLs, communicating files and resolutions
    resolutions = json.dumps(
        {
            "data": [
                {
                    "type": "resolution",
                    "id": "198.51.100.7tawuhoju.com",
                    "attributes": {
                        "ip_address": "198.51.100.7",
                        "host_name": "tawuhoju.com",
                        "date": 1600000000,
                    },
                }
            ]
        }
    ).encode()
    script: Script = [
        (200, fixture_body("opencti__vt_test_domain.json"), {}),
        (200, collection_body("opencti__vt_test_url.json"), {}),
        (200, collection_body("opencti__vt_test_file.json"), {}),
        (200, resolutions, {}),
    ]
    with ScriptedServer(script) as server:
        client = make_client(vt_session, server.base_url, vt_sleep, deep_context=True, deep_context_limit=5)

        # When the domain is looked up with deep context
        data = client.lookup(ioc(IocType.DOMAIN, "tawuhoju.com"))

    # Then one request per deep relationship followed the lookup, each counted
    assert [path for path, _ in server.requests] == [
        "/api/v3/domains/tawuhoju.com?relationships=resolutions",
        "/api/v3/domains/tawuhoju.com/urls?limit=5",
        "/api/v3/domains/tawuhoju.com/communicating_files?limit=5",
        "/api/v3/domains/tawuhoju.com/resolutions?limit=5",
    ]
    assert client.requests_sent == 4 == client.requests_per_lookup(IocType.DOMAIN)
    assert len(DEEP_RELATIONSHIPS[IocType.DOMAIN]) == 3
    # and the context shows the detected URL, the communicating file and the dated resolution, with no note
    assert data is not None
    enrichment = assess_ioc(ioc(IocType.DOMAIN, "tawuhoju.com"), data, load_policy(None), datetime.now(UTC))
    assert enrichment.context["detected_urls"][0]["url"] == "http://soclosebutyetqq.com/69.exe"
    assert enrichment.context["communicating_files"][0]["malicious"] == 47
    assert enrichment.context["resolutions"] == [{"ip": "198.51.100.7", "date": "2020-09-13T12:26:40Z"}]
    assert enrichment.note is None


def test_a_failed_secondary_call_keeps_the_primary_report_with_a_note(
    vt_session: requests.Session, vt_sleep: SleepRecorder
) -> None:
    # Given a public key: the domain report comes back, its URLs are premium-only (403), and the
    # communicating files answer 500 on every attempt
    script: Script = [
        (200, fixture_body("opencti__vt_test_domain.json"), {}),
        (403, vt_error_body("ForbiddenError", "You are not allowed to perform the requested operation"), {}),
        (500, vt_error_body("InternalError", "boom"), {}),
        (500, vt_error_body("InternalError", "boom"), {}),
    ]
    with ScriptedServer(script) as server:
        client = make_client(vt_session, server.base_url, vt_sleep, deep_context=True, max_attempts=2)

        # When the domain is looked up with deep context
        data = client.lookup(ioc(IocType.DOMAIN, "tawuhoju.com"))

    # Then the primary report is returned, the 403 was not retried, the 500 was, and after that transient
    # failure the resolutions were not asked for (sparing the quota)
    assert data is not None
    assert data["id"] == "tawuhoju.com"
    assert len(server.requests) == 4
    assert client.requests_sent == 4
    # and the enrichment keeps the verdict of the primary report, with a note saying what is missing
    enrichment = assess_ioc(ioc(IocType.DOMAIN, "tawuhoju.com"), data, load_policy(None), datetime.now(UTC))
    assert enrichment.verdict is Verdict.MALICIOUS
    assert enrichment.note is not None
    assert "deep context: urls not fetched (VirusTotal ForbiddenError (HTTP 403)" in enrichment.note
    assert "deep context: communicating_files not fetched" in enrichment.note
    assert "deep context: resolutions not asked for after that failure" in enrichment.note
    assert API_KEY not in enrichment.note


def test_deep_context_spends_nothing_more_on_an_ioc_virustotal_never_saw(
    vt_session: requests.Session, vt_sleep: SleepRecorder
) -> None:
    with ScriptedServer([(404, vt_error_body("NotFoundError", "not found"), {})]) as server:
        client = make_client(vt_session, server.base_url, vt_sleep, deep_context=True)

        assert client.lookup(ioc(IocType.IP, "198.51.100.9")) is None

    assert client.requests_sent == 1
    assert client.requests_per_lookup(IocType.IP) == 4


def test_deep_context_is_off_by_default_and_its_limit_is_checked(vt_session: requests.Session) -> None:
    assert VirusTotalClient(vt_session, API_KEY, DEFAULT_VT_BASE_URL).deep_context is False
    with pytest.raises(ValueError, match="deep_context_limit"):
        VirusTotalClient(vt_session, API_KEY, DEFAULT_VT_BASE_URL, deep_context=True, deep_context_limit=0)


# --- VT Augment's widget -----------------------------------------------------------------------------


def test_a_widget_is_asked_for_with_the_observable_and_its_colours_and_read_from_the_answer(
    vt_session: requests.Session, vt_sleep: SleepRecorder
) -> None:
    # Given VirusTotal answering the widget endpoint as its documentation shows
    answer = {
        "data": {
            "url": "https://www.virustotal.com/ui/widget/html/OTEzZjdhMDBl",
            "detection_ratio": {"detections": 5, "total": 71},
        }
    }
    with ScriptedServer([(200, json.dumps(answer).encode(), {})]) as server:
        client = make_client(vt_session, server.base_url, vt_sleep)

        # When a URL's widget is minted with two theme colours
        widget = client.widget("http://a.example/x?y=1", {"bg1": "#FFFFFF", "fg1": "1a1a1a"})

    # Then one GET asked for it, the observable and colours as query parameters, the key in its header
    [(path, headers)] = server.requests
    assert path == "/api/v3/widget/url?query=http%3A%2F%2Fa.example%2Fx%3Fy%3D1&fg1=%231a1a1a&bg1=%23ffffff"
    assert headers["x-apikey"] == API_KEY
    # And the widget is the URL to frame with VirusTotal's detection ratio
    assert (widget.url, widget.ratio) == ("https://www.virustotal.com/ui/widget/html/OTEzZjdhMDBl", "5/71")
    assert client.requests_sent == 1


def test_a_key_not_licensed_for_vt_augment_is_refused_once_and_an_answer_framing_another_site_too(
    vt_session: requests.Session, vt_sleep: SleepRecorder
) -> None:
    # Given VirusTotal refusing the key (403), then a server answering a widget URL of another site
    elsewhere = {"data": {"url": "https://evil.example/ui/widget/html/x"}}
    script: Script = [
        (403, vt_error_body("ForbiddenError", "You are not allowed to perform the requested operation"), {}),
        (200, json.dumps(elsewhere).encode(), {}),
    ]
    with ScriptedServer(script) as server:
        client = make_client(vt_session, server.base_url, vt_sleep)

        # When widgets are minted, Then the 403 is raised at once, not retried
        with pytest.raises(VirusTotalForbiddenError):
            client.widget("tawuhoju.com")
        assert len(server.requests) == 1
        # And an answer naming no widget page of VirusTotal's is refused, never handed on to be framed
        with pytest.raises(VirusTotalError, match="no widget URL of VirusTotal's"):
            client.widget("tawuhoju.com")
    # And an unknown colour is refused before anything is sent
    with pytest.raises(ValueError, match="unknown widget colours"):
        client.widget("tawuhoju.com", {"fg9": "#000000"})
    assert len(server.requests) == 2
