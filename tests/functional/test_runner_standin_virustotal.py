"""`vtriage run` against a stand-in VirusTotal of one's own on this machine: VT_API_KEY and VT_BASE_URL set,
the base URL on loopback. Such answers spend no VirusTotal quota, so the run applies none, as with the
replay server: the template's default (the public API's 4 lookups a minute) would defer every lookup past
the fourth and leave those alerts pending for minutes."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.functional.conftest import event
from vtriage_local.preflight import VirusTotalSource
from vtriage_local.replay import bundled_recordings

pytestmark = pytest.mark.functional

STAND_IN_KEY = "stand-in-key"
DOMAINS = [
    f"stand-in-c2-{index}.example-standin.net" for index in range(6)
]  # more than the public API's 4 a minute
RUN_TIMEOUT_S = 300


class StandInVirusTotal(ThreadingHTTPServer):
    """Answers GET /api/v3/domains/<domain> with the bundled real tawuhoju.com report made that domain's,
    404 NotFoundError otherwise, as VirusTotal does; keeps the paths and keys it was asked with."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Answer)
        self.daemon_threads = True
        self.report = json.loads((bundled_recordings() / "domains" / "tawuhoju.com.json").read_text())
        self.asked: list[tuple[str, str | None]] = []

    @property
    def base_url(self) -> str:
        """The API's root, as VT_BASE_URL takes it."""
        return f"http://127.0.0.1:{self.server_address[1]}/api/v3"


class _Answer(BaseHTTPRequestHandler):
    server: StandInVirusTotal

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test reads what was asked from the server."""

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        self.server.asked.append((path, self.headers.get("x-apikey")))
        parts = path.strip("/").split("/")
        if parts[:3] == ["api", "v3", "domains"] and len(parts) == 4 and parts[3] in DOMAINS:
            report = copy.deepcopy(self.server.report)
            report["data"]["id"] = parts[3]
            status, body = 200, report
        else:
            status, body = 404, {"error": {"code": "NotFoundError", "message": f"{self.path} not found"}}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def stand_in() -> Iterator[StandInVirusTotal]:
    server = StandInVirusTotal()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def c2_alerts(path: Path) -> None:
    """The C&C sample once per stand-in domain, each a finding of its own on an instance of its own, as
    JSON Lines."""
    template = json.loads(event("synthetic-guardduty-backdoor-c2-dns.json").read_text())
    lines = []
    for index, domain in enumerate(DOMAINS):
        alert = copy.deepcopy(template)
        detail = alert["detail"]
        alert["id"] = f"stand-in-{index}"
        detail["id"] = f"standin{index:026d}"
        detail["arn"] = detail["arn"].rsplit("/", 1)[0] + f"/{detail['id']}"
        instance = f"i-0{index:016x}"
        detail["resource"]["instanceDetails"]["instanceId"] = instance
        detail["resource"]["instanceDetails"]["networkInterfaces"][0]["networkInterfaceId"] = (
            f"eni-0{index:016x}"
        )
        action = detail["service"]["action"]["dnsRequestAction"]
        action["domain"] = action["domainWithSuffix"] = domain
        detail["title"] = detail["description"] = (
            f"Command and Control server domain name queried by {instance}."
        )
        lines.append(json.dumps(alert))
    path.write_text("\n".join(lines) + "\n")


def test_a_live_run_against_a_stand_in_on_loopback_spends_no_quota(
    stand_in: StandInVirusTotal, tmp_path: Path
) -> None:
    # Given six C&C findings naming six domains, and a stand-in VirusTotal on loopback that knows them
    alerts = tmp_path / "alerts.jsonl"
    c2_alerts(alerts)
    variables = {name: value for name, value in os.environ.items() if name != "COLUMNS"}
    variables |= {"VT_API_KEY": STAND_IN_KEY, "VT_BASE_URL": stand_in.base_url, "TMPDIR": str(tmp_path)}

    # When `vtriage run --json` runs them live against it, as a user's shell starts it
    done = subprocess.run(
        [sys.executable, "-m", "vtriage_cli.main", "run", "--json", str(alerts)],
        capture_output=True,
        env=variables,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )

    # Then every finding is a malicious case and none is pending: no lookup waited for a quota window
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    document = json.loads(done.stdout)
    assert document["pending"] == []
    assert document["failures"] == []
    assert sorted(case["iocs"][0]["value"] for case in document["cases"]) == sorted(DOMAINS)
    assert {case["verdict"] for case in document["cases"]} == {"malicious"}
    # and each domain was asked of the stand-in once, with the key, and nothing else was asked
    assert sorted(stand_in.asked) == sorted((f"/api/v3/domains/{domain}", STAND_IN_KEY) for domain in DOMAINS)
    assert document["stats"]["vt_requests"] == len(DOMAINS)
    # and the run says where VirusTotal answered from, and that no quota was applied
    assert document["virustotal"] == {
        "mode": "live",
        "base_url": stand_in.base_url,
        "recordings": None,
        "on_this_machine": True,
    }
    assert "on this machine, so no VirusTotal quota is applied" in done.stderr.decode()
    # and the progress names the operator's URL as it is (not defanged as a sender's link is), to be copied
    assert f"VirusTotal is live: {stand_in.base_url} (VT_API_KEY is set)" in done.stderr.decode()


@pytest.mark.parametrize(
    ("base_url", "on_this_machine"),
    [
        ("https://www.virustotal.com/api/v3", False),
        ("https://vt-gateway.example.com/api/v3", False),
        ("http://127.0.0.1:8080/api/v3", True),
        ("http://localhost:8080/api/v3", True),
        ("http://[::1]:8080/api/v3", True),
    ],
)
def test_only_a_base_url_on_loopback_is_on_this_machine(base_url: str, on_this_machine: bool) -> None:
    # Given a live VirusTotal at the base URL
    source = VirusTotalSource(api_key="a-key", base_url=base_url)

    # When the run asks whether its answers come from this machine
    # Then only loopback is: VirusTotal itself and a gateway keep the template's quota
    assert source.on_this_machine is on_this_machine
    assert source.describe()["on_this_machine"] is on_this_machine
