"""The design vtriage is priced beside (issue 13): a Lambda function invoked once per alert, as an EventBridge
rule would invoke it, with no cache and no batching. It reads the alert's IOCs, looks each one up in
VirusTotal with a plain sequential HTTP request, and writes one item per alert to DynamoDB. It neither
remediates, nor tickets, nor starts a workflow: it is the floor a team starts from, not an equivalent.

bench.cost invokes it once per alert of its corpus, against the same replay server at the same latency as
vtriage, measures each invocation and prices it as it prices vtriage's functions.

It reads its settings from the environment, as a Lambda function does: NAIVE_TABLE_NAME, VT_BASE_URL
(the API root, ".../api/v3") and VT_API_KEY (an environment variable: no Secrets Manager call). Its
DynamoDB client is created on the first invocation and kept, as a warm container keeps it.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any
from urllib.parse import quote

import boto3
import requests

# The VirusTotal collection each kind of IOC is looked up in.
COLLECTIONS = {"domain": "domains", "ip": "ip_addresses"}
_TIMEOUT_S = 30


def iocs_of(alert: dict[str, Any]) -> list[tuple[str, str]]:
    """The (kind, value) IOCs a GuardDuty EventBridge event names, in order, each once: the domain a DNS
    request asked for, and the remote IPs of a network connection, a port probe or an API call."""
    action = alert.get("detail", {}).get("service", {}).get("action", {})
    found: list[tuple[str, str]] = []
    domain = action.get("dnsRequestAction", {}).get("domain")
    if domain:
        found.append(("domain", str(domain)))
    remotes = [action.get("networkConnectionAction", {}), action.get("awsApiCallAction", {})]
    remotes += action.get("portProbeAction", {}).get("portProbeDetails", [])
    for remote in remotes:
        ip = remote.get("remoteIpDetails", {}).get("ipAddressV4")
        if ip:
            found.append(("ip", str(ip)))
    return list(dict.fromkeys(found))


@cache
def _dynamodb(endpoint_url: str | None) -> Any:
    """The container's DynamoDB client (one per endpoint: the bench starts a local AWS per run)."""
    return boto3.client("dynamodb", endpoint_url=endpoint_url)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Look the alert's IOCs up one after another, then store one item for the alert."""
    base_url = os.environ["VT_BASE_URL"]
    headers = {"x-apikey": os.environ["VT_API_KEY"]}
    verdicts: list[dict[str, Any]] = []
    for kind, value in iocs_of(event):
        response = requests.get(
            f"{base_url}/{COLLECTIONS[kind]}/{quote(value, safe='')}", headers=headers, timeout=_TIMEOUT_S
        )
        response.raise_for_status()
        stats = response.json()["data"]["attributes"]["last_analysis_stats"]
        malicious, suspicious = int(stats.get("malicious", 0)), int(stats.get("suspicious", 0))
        verdict = "malicious" if malicious else "suspicious" if suspicious else "clean"
        verdicts.append(
            {
                "M": {
                    "ioc": {"S": value},
                    "type": {"S": kind},
                    "malicious": {"N": str(malicious)},
                    "suspicious": {"N": str(suspicious)},
                    "verdict": {"S": verdict},
                }
            }
        )
    detail = event.get("detail", {})
    _dynamodb(os.environ.get("AWS_ENDPOINT_URL")).put_item(
        TableName=os.environ["NAIVE_TABLE_NAME"],
        Item={
            "alert_id": {"S": str(event.get("id", ""))},
            "finding_id": {"S": str(detail.get("id", ""))},
            "title": {"S": str(detail.get("title", ""))},
            "iocs": {"L": verdicts},
        },
    )
    return {"alert_id": event.get("id"), "lookups": len(verdicts)}
