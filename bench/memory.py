"""Peak memory of the enrich function: the resident set of a process that runs the handler on one batch of
10 alerts, each naming a file whose VirusTotal report is the largest recorded one (the file report).
AWS is moto and VirusTotal the replay server, both in another process (bench.stack_process), so the
figure is what Lambda would report as the function's memory used.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.sqs import sqs_event
from bench.stack_process import ROOT
from vtriage_local.replay import bundled_recordings

ALERTS = 10
API_KEY = "bench-replay-key"
# A premium-like quota: the public API's 4 a minute would defer most of the batch.
PREMIUM_ENV = {"VT_QUOTA_PER_MINUTE": "10000", "VT_QUOTA_PER_DAY": "1000000", "VT_MAX_CONCURRENCY": "10"}
_MALWARE_EVENT = ROOT / "events" / "synthetic-guardduty-ebs-malware.json"


def largest_recording() -> Path:
    """The largest VirusTotal report among the bundled recordings."""
    return max(bundled_recordings().glob("*/*.json"), key=lambda path: path.stat().st_size)


def file_alerts(folder: Path, count: int = ALERTS) -> tuple[list[dict[str, Any]], list[int]]:
    """`count` EBS malware findings, each naming one file of its own, and under `folder`, for each file,
    the largest recorded report made that file's (its hashes changed). Returns the alerts and the
    reports' sizes in bytes."""
    source = largest_recording()
    if source.parent.name != "files":
        raise RuntimeError(f"the largest recording {source.name} is no file report: adapt the alerts")
    template = json.loads(source.read_text())
    event = json.loads(_MALWARE_EVENT.read_text())
    (folder / "files").mkdir()
    alerts, sizes = [], []
    for index in range(count):
        seed = f"synthetic-bench-file-{index}".encode()
        sha256 = hashlib.sha256(seed).hexdigest()
        report = copy.deepcopy(template)
        report["data"]["id"] = sha256
        attributes = report["data"]["attributes"]
        attributes |= {
            "sha256": sha256,
            "sha1": hashlib.sha1(seed).hexdigest(),
            "md5": hashlib.md5(seed).hexdigest(),
        }
        # Laid out as the recording is: the same bytes on the wire for the handler to read.
        text = json.dumps(report, indent=4)
        sizes.append(len(text))
        (folder / "files" / f"synthetic-{sha256}.json").write_text(text)
        alert = copy.deepcopy(event)
        alert["id"] = f"bench-memory-{index}"
        alert["detail"]["id"] = f"{index:032x}"
        alert["detail"]["arn"] = alert["detail"]["arn"].rsplit("/", 1)[0] + f"/{index:032x}"
        _name_one_file(alert["detail"]["service"], sha256)
        alerts.append(alert)
    return alerts, sizes


def _name_one_file(service: dict[str, Any], sha256: str) -> None:
    """Every detected file of the finding becomes this one."""
    threats = service["ebsVolumeScanDetails"]["scanDetections"]["threatDetectedByName"]["threatNames"]
    for threat in threats:
        for detected in threat["filePaths"]:
            detected["hash"] = sha256


def peak_rss(
    alerts: list[dict[str, Any]], environment: dict[str, str], python: str = sys.executable
) -> tuple[int, int]:
    """Peak resident set, in bytes, of a fresh process of `python` that imports the enrich handler and
    runs it on the alerts, as the kernel counts it for that process (its VmHWM); and the VirusTotal
    lookups the handler reported in its metrics, to show that every report was fetched."""
    with tempfile.TemporaryDirectory() as folder:
        event_path, result_path = Path(folder) / "event.json", Path(folder) / "result.json"
        event_path.write_text(json.dumps(sqs_event(alerts)))
        process = subprocess.run(
            [python, "-m", "bench.invoke_enrich", str(event_path), str(result_path)],
            cwd=ROOT,
            # vtriage from the layer's folder, as Lambda finds it in the layer.
            env={**os.environ, **environment, **PREMIUM_ENV, "PYTHONPATH": str(ROOT / "layers" / "common")},
            capture_output=True,
            text=True,
            check=False,
        )
        if process.returncode != 0:
            raise RuntimeError(f"the enrich process failed:\n{(process.stdout + process.stderr)[-3000:]}")
        result = json.loads(result_path.read_text())
    if result["response"]["batchItemFailures"]:
        raise RuntimeError(f"the enrich handler did not triage every alert: {result['response']}")
    return int(result["peak_rss_kb"]) * 1024, _metric(process.stdout, "VirusTotalLookups")


def _metric(log_text: str, name: str) -> int:
    """The sum of a metric over the handler's embedded-metric-format lines."""
    total = 0.0
    for line in log_text.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            total += sum(json.loads(line).get(name, []))
    return int(total)
