"""The local runner against a plain lookup loop (issue 13): `vtriage run` takes 100 distinct alerts end to
end, the stack's set-up included, while a sequential loop of vt-py only looks their 100 IOCs up, both
against the replay server at 150 ms a request; and the peak resident set of a 500-alert run.

Every alert is a C&C DNS finding (the shape of events/synthetic-guardduty-backdoor-c2-dns.json) on an
instance of its own, naming one domain; the domains recur with a Zipf-like law. Each domain's recording
is the real tawuhoju.com report of the bundled recordings, its id and counts changed. All of it is
synthetic and written to a temporary folder at run time; every count below is read from what was run.

`python -m bench.runner_speed` prints these figures alone.
"""

from __future__ import annotations

import copy
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import vt

from bench.corpus import zipf_weights
from vtriage_local.replay import ReplayServer, bundled_recordings

ROOT = Path(__file__).resolve().parents[1]
LATENCY_MS = 150
ALERTS = 100
UNIQUE_IOCS = 40
MEMORY_ALERTS = 500
API_KEY = "bench-replay-key"
_C2_EVENT = ROOT / "events" / "synthetic-guardduty-backdoor-c2-dns.json"
_DOMAIN_REPORT = bundled_recordings() / "domains" / "tawuhoju.com.json"


@dataclass(frozen=True)
class C2Corpus:
    """C&C DNS findings, each on an instance of its own and naming one domain."""

    alerts: list[dict[str, Any]]

    @property
    def domains(self) -> list[str]:
        """The domain each alert names, read from the alert, in order."""
        return [
            str(alert["detail"]["service"]["action"]["dnsRequestAction"]["domain"]) for alert in self.alerts
        ]

    @property
    def instances(self) -> set[str]:
        """The distinct instances the alerts name."""
        return {str(alert["detail"]["resource"]["instanceDetails"]["instanceId"]) for alert in self.alerts}


def c2_corpus(alerts: int = ALERTS, unique: int = UNIQUE_IOCS, seed: int = 13) -> C2Corpus:
    """`alerts` C&C DNS findings over `unique` domains: each domain once, then repeats drawn with Zipf
    weights, shuffled; finding, instance and interface ids of their own."""
    rng = random.Random(seed)
    universe = [f"synthetic-c2-{index:03d}.example-bench.net" for index in range(unique)]
    named = universe + rng.choices(universe, zipf_weights(unique), k=alerts - unique)
    rng.shuffle(named)
    template = json.loads(_C2_EVENT.read_text(encoding="utf-8"))
    made = []
    for index, domain in enumerate(named):
        alert = copy.deepcopy(template)
        finding_id = f"c2bench{index:025d}"
        instance = f"i-0{index:016x}"
        detail = alert["detail"]
        alert["id"] = f"bench-c2-{index:05d}"
        detail["id"] = finding_id
        detail["arn"] = detail["arn"].rsplit("/", 1)[0] + f"/{finding_id}"
        details = detail["resource"]["instanceDetails"]
        details["instanceId"] = instance
        details["networkInterfaces"][0]["networkInterfaceId"] = f"eni-0{index:016x}"
        details["tags"] = [{"key": "Name", "value": f"bench-{index}"}]
        action = detail["service"]["action"]["dnsRequestAction"]
        action["domain"] = action["domainWithSuffix"] = domain
        detail["title"] = f"Command and Control server domain name queried by EC2 instance {instance}."
        detail["description"] = detail["title"]
        made.append(alert)
    return C2Corpus(made)


def write_domain_recordings(folder: Path, domains: set[str], seed: int = 13) -> None:
    """A recording per domain, the bundled real domain report with its id and counts changed."""
    template = json.loads(_DOMAIN_REPORT.read_text(encoding="utf-8"))
    rng = random.Random(seed)
    target = folder / "domains"
    target.mkdir(parents=True, exist_ok=True)
    for domain in sorted(domains):
        report = copy.deepcopy(template)
        report["data"]["id"] = domain
        report["data"]["attributes"]["last_analysis_stats"]["malicious"] = rng.choice([0, 1, 4, 9, 12])
        (target / f"synthetic-{domain}.json").write_text(json.dumps(report), encoding="utf-8")


def sequential_lookups(base_url: str, domains: list[str]) -> float:
    """Seconds a plain vt-py loop takes to look every domain up, one after another, no cache."""
    host = base_url.removesuffix("/api/v3")
    started = time.perf_counter()
    with vt.Client(API_KEY, host=host) as client:
        for domain in domains:
            client.get_object(f"/domains/{domain}")
    return time.perf_counter() - started


def run_vtriage(alerts_file: Path, recordings: Path, latency_ms: int) -> tuple[float, int, dict[str, Any]]:
    """`vtriage run --json` on the file in a fresh process, as a person runs it: its seconds, its peak
    resident set in bytes and its JSON document. The peak is the process's own VmHWM, read while it runs
    (getrusage's ru_maxrss would fold in this forking parent's memory)."""
    environment = {name: value for name, value in os.environ.items() if name != "VT_API_KEY"}
    command = [
        str(Path(sys.executable).with_name("vtriage")),
        "run",
        "--json",
        "--quiet",
        "--vt-fixtures",
        str(recordings),
        "--vt-latency-ms",
        str(latency_ms),
        str(alerts_file),
    ]
    peak_kb = 0
    with tempfile.TemporaryFile("w+") as output:
        started = time.perf_counter()
        with subprocess.Popen(command, cwd=ROOT, env=environment, stdout=output) as process:
            while process.poll() is None:
                peak_kb = max(peak_kb, _peak_rss_kb(process.pid))
                time.sleep(0.02)
        elapsed = time.perf_counter() - started
        output.seek(0)
        text = output.read()
    if process.returncode != 0:
        raise RuntimeError(f"vtriage run exited {process.returncode}:\n{text[-2000:]}")
    return elapsed, peak_kb * 1024, json.loads(text)


def _peak_rss_kb(pid: int) -> int:
    """A running process's peak resident set so far (VmHWM), in kB; 0 once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="utf-8")
    except (FileNotFoundError, ProcessLookupError):
        return 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def _write_alerts(path: Path, corpus: C2Corpus) -> None:
    """The alerts as JSON Lines, one EventBridge event a line: `vtriage run` reads each as a record."""
    path.write_text("".join(json.dumps(alert) + "\n" for alert in corpus.alerts), encoding="utf-8")


def _checked(document: dict[str, Any], corpus: C2Corpus) -> None:
    cases = document["cases"]
    if len(cases) != len(corpus.alerts) or document["failures"] or document["pending"]:
        raise RuntimeError(
            f"vtriage run made {len(cases)} case(s) of {len(corpus.alerts)} alerts; failures "
            f"{document['failures'][:3]}, pending {document['pending'][:3]}"
        )


def runner_speed() -> dict[str, Any]:
    """The runner's time over the lookup loop's on the same 100 alerts, and a 500-alert run's peak RSS."""
    corpus = c2_corpus()
    large = c2_corpus(alerts=MEMORY_ALERTS)
    with tempfile.TemporaryDirectory() as folder:
        recordings = Path(folder) / "recordings"
        write_domain_recordings(recordings, set(corpus.domains) | set(large.domains))
        alerts_file, large_file = Path(folder) / "alerts.jsonl", Path(folder) / "alerts-500.jsonl"
        _write_alerts(alerts_file, corpus)
        _write_alerts(large_file, large)
        with ReplayServer(recordings, api_key=API_KEY, latency_ms=LATENCY_MS) as replay:
            loop_s = sequential_lookups(replay.base_url, corpus.domains)
            loop_requests = replay.request_count
        runner_s, runner_rss, document = run_vtriage(alerts_file, recordings, LATENCY_MS)
        _checked(document, corpus)
        large_s, large_rss, large_document = run_vtriage(large_file, recordings, LATENCY_MS)
        _checked(large_document, large)
    return {
        "runner_over_sequential_lookups": round(runner_s / loop_s, 2),
        "runner_500_peak_rss_mb": round(large_rss / 2**20, 1),
        "runner_speed": {
            "alerts": len(corpus.alerts),
            "instances": len(corpus.instances),
            "unique_iocs": len(set(corpus.domains)),
            "latency_ms": LATENCY_MS,
            "sequential_vtpy_lookups_s": round(loop_s, 2),
            "sequential_requests": loop_requests,
            "vtriage_run_s": round(runner_s, 2),
            "vtriage_run_vt_requests": document["stats"]["vt_requests"],
            "vtriage_run_cases": len(document["cases"]),
            "vtriage_run_peak_rss_mb": round(runner_rss / 2**20, 1),
            "goal": "< 1.0 (runner_over_sequential_lookups)",
        },
        "runner_500": {
            "alerts": len(large.alerts),
            "cases": len(large_document["cases"]),
            "vtriage_run_s": round(large_s, 2),
            "peak_rss_mb": round(large_rss / 2**20, 1),
            "goal": "< 300 MB",
        },
    }


if __name__ == "__main__":
    print(json.dumps(runner_speed(), indent=2))
