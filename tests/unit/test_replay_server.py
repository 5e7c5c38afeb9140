"""The VirusTotal replay server, spoken to over loopback HTTP as a client of the real API would."""

from __future__ import annotations

import http.client
import json
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from vtriage.virustotal.objects import url_id
from vtriage_local.replay import ReplayServer, bundled_recordings

FILE_SHA256 = "4bc00f7d638e042da764e8648c03c0db46700599dd4f08d117e3e9e8b538519b"
FILE_SHA1 = "44392b16e2db656104579e83d603b363bf91ccb2"
FILE_MD5 = "546bb6ef89bebfb053999777f6930d7e"
URL = "http://soclosebutyetqq.com/69.exe"
URL_SHA256 = "7d83e9f686ff0122ded311f27aababf6922800a45a23a4dacc860b56ccada4cb"


@pytest.fixture(scope="module")
def bundled_replay() -> Iterator[ReplayServer]:
    """The replay server on the bundled recordings, with no key required."""
    with ReplayServer(bundled_recordings()) as server:
        yield server


def get(server: ReplayServer, path: str, api_key: str | None = None) -> requests.Response:
    headers = {"x-apikey": api_key} if api_key is not None else {}
    return requests.get(f"{server.base_url}/{path}", headers=headers, timeout=5)


def recorded_bytes(collection: str, name: str) -> bytes:
    return (bundled_recordings() / collection / name).read_bytes()


@pytest.mark.parametrize(
    "identifier",
    [FILE_SHA256, FILE_SHA1, FILE_MD5, FILE_SHA256.upper(), FILE_MD5.upper()],
    ids=["sha256", "sha1", "md5", "sha256-upper", "md5-upper"],
)
def test_a_file_report_is_found_by_any_of_its_hashes(bundled_replay: ReplayServer, identifier: str) -> None:
    # When a client asks for the file by one of its hashes
    response = get(bundled_replay, f"files/{identifier}")

    # Then it gets the recorded report, unchanged, as JSON
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.content == recorded_bytes("files", f"{FILE_SHA256}.json")


def test_a_url_report_is_found_by_its_url_and_by_its_own_id(bundled_replay: ReplayServer) -> None:
    # When a client asks for the URL by the URL identifier of the URL, and by VirusTotal's SHA-256 id
    by_url = get(bundled_replay, f"urls/{url_id(URL)}")
    by_id = get(bundled_replay, f"urls/{URL_SHA256}")

    # Then both find the recorded report
    assert by_url.status_code == 200
    assert by_url.json()["data"]["attributes"]["url"] == URL
    assert by_id.content == by_url.content


def test_another_url_is_not_found(bundled_replay: ReplayServer) -> None:
    response = get(bundled_replay, f"urls/{url_id(URL + '?x=1')}")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NotFoundError"


@pytest.mark.parametrize(
    ("path", "recording"),
    [
        ("domains/tawuhoju.com", "domains/tawuhoju.com.json"),
        ("domains/TAWUHOJU.com", "domains/tawuhoju.com.json"),
        ("ip_addresses/23.129.64.215", "ip_addresses/23.129.64.215.json"),
        ("domains/telemetry-sync.net", "domains/synthetic-telemetry-sync.net.json"),
        ("domains/aws.amazon.com", "domains/synthetic-aws.amazon.com.json"),
        (f"files/{FILE_SHA256}?relationships=contacted_ips", f"files/{FILE_SHA256}.json"),
    ],
)
def test_domains_and_ips_are_found_by_their_id(
    bundled_replay: ReplayServer, path: str, recording: str
) -> None:
    response = get(bundled_replay, path)

    assert response.status_code == 200
    assert response.content == (bundled_recordings() / recording).read_bytes()


def test_an_unknown_object_answers_404_not_found_as_virustotal_does(bundled_replay: ReplayServer) -> None:
    response = get(bundled_replay, "domains/never-seen.example")

    assert response.status_code == 404
    assert response.json() == {
        "error": {"code": "NotFoundError", "message": 'Domain "never-seen.example" not found'}
    }


@pytest.mark.parametrize(
    "path",
    [
        "/api/v3/comments/x",
        f"/api/v3/files/{FILE_SHA256}/contacted_ips",
        "/api/v3/files/",
        "/api/v2/files/x",
        "/",
    ],
)
def test_an_unknown_path_answers_404_not_found(bundled_replay: ReplayServer, path: str) -> None:
    host, port = urllib.parse.urlsplit(bundled_replay.base_url).netloc.split(":")
    response = requests.get(f"http://{host}:{port}{path}", timeout=5)

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NotFoundError"


def test_a_path_that_tries_to_leave_the_recordings_folder_finds_nothing(bundled_replay: ReplayServer) -> None:
    # Given raw request paths that try to climb out of the folder, plain and percent-encoded
    netloc = urllib.parse.urlsplit(bundled_replay.base_url).netloc
    statuses = []
    for path in (
        "/api/v3/files/../../../../etc/passwd",
        "/api/v3/files/..%2F..%2F..%2Fpyproject.toml",
        "/api/v3/domains/..%2Fdomains%2Ftawuhoju.com",
    ):
        connection = http.client.HTTPConnection(netloc, timeout=5)
        connection.request("GET", path)
        statuses.append(connection.getresponse().status)
        connection.close()

    # Then none of them is served
    assert statuses == [404, 404, 404]


def test_every_request_is_counted_whatever_its_answer() -> None:
    with ReplayServer(bundled_recordings(), api_key="right-key") as server:
        get(server, "domains/tawuhoju.com", api_key="right-key")
        get(server, "domains/unknown.example", api_key="right-key")
        get(server, "domains/tawuhoju.com")
        get(server, "nowhere", api_key="right-key")

        assert server.request_count == 4


def test_with_a_key_configured_a_missing_or_wrong_key_answers_401() -> None:
    with ReplayServer(bundled_recordings(), api_key="right-key") as server:
        missing = get(server, "domains/tawuhoju.com")
        wrong = get(server, "domains/tawuhoju.com", api_key="wrong-key")
        right = get(server, "domains/tawuhoju.com", api_key="right-key")

    assert (missing.status_code, missing.json()["error"]["code"]) == (401, "AuthenticationRequiredError")
    assert (wrong.status_code, wrong.json()["error"]["code"]) == (401, "WrongCredentialsError")
    assert right.status_code == 200


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        ("429", 429, "QuotaExceededError"),
        ("503", 503, "TransientError"),
        ("500", 500, "InternalError"),
        ("timeout", 504, "DeadlineExceededError"),
    ],
)
def test_a_certain_fault_answers_as_virustotal_would(fault: str, status: int, code: str) -> None:
    # Given a server where the fault always happens (the timeout held for no time, to keep the test fast)
    with ReplayServer(bundled_recordings(), faults={fault: 1.0}, timeout_sleep_s=0) as server:
        # When a client asks for a recorded object
        response = get(server, "domains/tawuhoju.com")

    # Then it gets the fault, in VirusTotal's error shape
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


def test_random_faults_are_reproducible_with_the_same_seed() -> None:
    def statuses(seed: int) -> list[int]:
        with ReplayServer(bundled_recordings(), faults={"429": 0.3, "503": 0.2}, seed=seed) as server:
            return [get(server, "domains/tawuhoju.com").status_code for _ in range(30)]

    first, again, other = statuses(7), statuses(7), statuses(8)

    assert first == again
    assert {200, 429, 503} <= set(first)
    assert first != other


def test_scripted_faults_come_first_and_carry_retry_after() -> None:
    with ReplayServer(bundled_recordings(), retry_after_s=3) as server:
        server.fail_next("429", count=2)
        answers = [get(server, "domains/tawuhoju.com") for _ in range(3)]

    assert [answer.status_code for answer in answers] == [429, 429, 200]
    assert answers[0].headers["Retry-After"] == "3"
    assert "Retry-After" not in answers[2].headers


def test_latency_delays_but_does_not_change_the_answer() -> None:
    with ReplayServer(bundled_recordings(), latency_ms=20) as server:
        response = get(server, "domains/tawuhoju.com")

    assert response.status_code == 200


def test_the_bundled_recordings_hold_the_four_real_reports_and_two_synthetic_domains() -> None:
    server = ReplayServer(bundled_recordings())

    assert server.index.count == 6
    names = sorted(path.name for path in bundled_recordings().rglob("*.json"))
    assert [name for name in names if name.startswith("synthetic-")] == [
        "synthetic-aws.amazon.com.json",
        "synthetic-telemetry-sync.net.json",
    ]


def test_a_recording_linked_from_outside_the_folder_is_not_served(tmp_path: Path) -> None:
    # Given a recordings folder holding one real recording and a link to a file outside it
    outside = tmp_path / "secret.json"
    outside.write_text(json.dumps({"data": {"id": "outside.example", "type": "domain"}}))
    domains = tmp_path / "recordings" / "domains"
    domains.mkdir(parents=True)
    (domains / "tawuhoju.com.json").write_bytes(recorded_bytes("domains", "tawuhoju.com.json"))
    (domains / "outside.example.json").symlink_to(outside)

    # When the server loads the folder and a client asks for both
    with ReplayServer(tmp_path / "recordings") as server:
        inside = get(server, "domains/tawuhoju.com")
        linked = get(server, "domains/outside.example")

    # Then only the recording inside the folder is served
    assert inside.status_code == 200
    assert linked.status_code == 404


def test_a_recording_that_is_not_a_virustotal_answer_is_refused_with_its_name(tmp_path: Path) -> None:
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "broken.json").write_text("<html>not json</html>")

    with pytest.raises(ValueError, match=r"broken\.json is not JSON"):
        ReplayServer(tmp_path)


def test_a_missing_recordings_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        ReplayServer(tmp_path / "nowhere")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"host": "0.0.0.0"}, "loopback only"),
        ({"faults": {"404": 0.5}}, "unknown faults"),
        ({"faults": {"429": 1.5}}, "between 0 and 1"),
        ({"faults": {"429": 0.7, "503": 0.7}}, "at most 1"),
    ],
)
def test_unsafe_or_impossible_settings_are_refused(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ReplayServer(bundled_recordings(), **options)  # type: ignore[arg-type]


def test_the_base_url_is_only_known_once_started() -> None:
    server = ReplayServer(bundled_recordings())

    with pytest.raises(RuntimeError, match="not started"):
        _ = server.base_url
    with server:
        assert server.base_url.startswith("http://127.0.0.1:")
        assert server.base_url.endswith("/api/v3")
