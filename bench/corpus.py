"""A synthetic alert corpus whose IOCs repeat with a Zipf-like law, and the recordings that answer for them.

Every alert is a GuardDuty port probe (one remote IP per probe entry); every IP gets a recording built
from the real VirusTotal IP report in the bundled recordings, its id and counts changed. All of it is
synthetic and written to a temporary folder at run time.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vtriage_local.replay import bundled_recordings

# 45.0.0.0/8 is ordinary public unicast space: canonicalisation looks these up, as it would real ones.
_UNIVERSE_NETWORK = ipaddress.ip_network("45.0.0.0/8")


@dataclass(frozen=True)
class Corpus:
    """Batches of alerts (each alert a GuardDuty EventBridge event) and the IPs each alert carries."""

    batches: list[list[dict[str, Any]]]
    iocs_per_alert: list[list[str]]

    @property
    def unique_iocs(self) -> set[str]:
        """Every distinct IOC of the corpus."""
        return {ioc for iocs in self.iocs_per_alert for ioc in iocs}


def zipf_weights(size: int, exponent: float = 1.1) -> list[float]:
    """Weights of a Zipf-like law over `size` ranks."""
    return [1.0 / (rank**exponent) for rank in range(1, size + 1)]


def build_corpus(
    batches: int, alerts_per_batch: int = 10, unique_per_batch: int = 40, per_alert: int = 6, seed: int = 7
) -> Corpus:
    """`batches` batches of `alerts_per_batch` alerts holding `unique_per_batch` distinct IPs each.

    The IPs of a batch are drawn from a universe with Zipf weights, so popular ones recur across batches;
    inside a batch each alert carries a share of the batch's IPs plus repeats of its most popular ones.
    """
    rng = random.Random(seed)
    universe = [str(_UNIVERSE_NETWORK[1000 + index * 7]) for index in range(unique_per_batch * batches)]
    weights = zipf_weights(len(universe))
    all_batches: list[list[dict[str, Any]]] = []
    all_iocs: list[list[str]] = []
    for batch_index in range(batches):
        chosen: list[str] = []
        while len(chosen) < unique_per_batch:
            candidate = rng.choices(universe, weights)[0]
            if candidate not in chosen:
                chosen.append(candidate)
        share = unique_per_batch // alerts_per_batch
        batch = []
        for alert_index in range(alerts_per_batch):
            own = chosen[alert_index * share : (alert_index + 1) * share]
            repeats = rng.choices(chosen, zipf_weights(len(chosen)), k=per_alert - len(own))
            iocs = own + repeats
            all_iocs.append(iocs)
            batch.append(port_probe_event(f"{batch_index:04d}{alert_index:04d}", iocs))
        all_batches.append(batch)
    return Corpus(batches=all_batches, iocs_per_alert=all_iocs)


def port_probe_event(suffix: str, remote_ips: list[str]) -> dict[str, Any]:
    """A GuardDuty port-probe finding as EventBridge delivers it, one probe entry per remote IP."""
    finding_id = f"b0{suffix}".ljust(32, "0")
    return {
        "version": "0",
        "id": f"bench-{suffix}",
        "detail-type": "GuardDuty Finding",
        "source": "aws.guardduty",
        "account": "123456789012",
        "time": "2026-11-26T10:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": {
            "schemaVersion": "2.0",
            "accountId": "123456789012",
            "region": "us-east-1",
            "partition": "aws",
            "id": finding_id,
            "arn": f"arn:aws:guardduty:us-east-1:123456789012:detector/bench/finding/{finding_id}",
            "type": "Recon:EC2/PortProbeUnprotectedPort",
            "title": "Unprotected port on EC2 instance is being probed.",
            "description": "Synthetic benchmark finding.",
            "severity": 2,
            "createdAt": "2026-11-26T10:00:00.000Z",
            "updatedAt": "2026-11-26T10:00:00.000Z",
            "resource": {
                "resourceType": "Instance",
                "instanceDetails": {"instanceId": "i-0b3f6c2d9e1a47c58"},
            },
            "service": {
                "serviceName": "guardduty",
                "action": {
                    "actionType": "PORT_PROBE",
                    "portProbeAction": {
                        "blocked": False,
                        "portProbeDetails": [
                            {"localPortDetails": {"port": 22}, "remoteIpDetails": {"ipAddressV4": ip}}
                            for ip in remote_ips
                        ],
                    },
                },
                "count": 1,
            },
        },
    }


def write_recordings(folder: Path, ips: set[str], seed: int = 7) -> None:
    """A synthetic recording per IP, built from the bundled real IP report with its id and counts changed."""
    template = json.loads((bundled_recordings() / "ip_addresses" / "23.129.64.215.json").read_text())
    rng = random.Random(seed)
    target = folder / "ip_addresses"
    target.mkdir(parents=True, exist_ok=True)
    for ip in sorted(ips):
        report = copy.deepcopy(template)
        report["data"]["id"] = ip
        stats = report["data"]["attributes"]["last_analysis_stats"]
        stats["malicious"] = rng.choice([0, 0, 0, 1, 4, 9])
        (target / f"synthetic-{ip}.json").write_text(json.dumps(report))


def remote_ips(alert: dict[str, Any]) -> list[str]:
    """The remote IPs a port-probe alert of the corpus names, read from the alert itself."""
    details = alert["detail"]["service"]["action"]["portProbeAction"]["portProbeDetails"]
    return [str(detail["remoteIpDetails"]["ipAddressV4"]) for detail in details]
