"""`make bench`: the figures issues 4 and 14 ask for, each a ratio or a measure taken in one run on this
machine.

1. throughput: the real enrich handler (moto for AWS) against what teams write today, a sequential
   loop over every IOC with vt-py and no cache, both against the replay server at 150 ms a request.
   The executions the handler starts are recorded, not run: in AWS they run in Step Functions, not
   in the function's time; the figure with moto running them in this process is printed beside it;
2. VirusTotal requests per unique IOC over the corpus replayed twice (new finding versions, so only
   the cache can spare a request);
3. cold start: a fresh interpreter importing the enrich handler and building its adapters against one
   importing only the runtime dependencies it is built on (bench.cold_start);
4. peak memory: the resident set of a process running the enrich handler on 10 alerts whose reports are
   the largest recorded one, moto and the replay server in another process (bench.memory);
5. the local runner (issue 13): `vtriage run` on 100 alerts end to end over a vt-py loop only looking
   their IOCs up, and the peak resident set of a 500-alert run (bench.runner_speed);
6. the AWS cost of 1,000 alerts at us-east-1 list prices, per service, counted from a metered run of the
   runner's 100 alerts, beside a per-alert Lambda with no cache and no batching (bench.cost).

Every count in the results is counted from what was run, never typed in.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import vt

from bench.cold_start import cold_start, runtime_interpreter
from bench.corpus import Corpus, build_corpus, remote_ips, write_recordings
from bench.cost import cost_per_1000_alerts
from bench.goals import goal_lines, goals_met
from bench.memory import API_KEY, PREMIUM_ENV, file_alerts, peak_rss
from bench.runner_speed import runner_speed
from bench.sqs import sqs_event
from bench.stack_process import stack_in_subprocess
from vtriage_local.replay import ReplayServer
from vtriage_local.stack import LocalAws

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results.json"
LATENCY_MS = 150
BATCHES = 5


def _new_versions(batches: list[list[dict[str, Any]]]) -> list[list[dict[str, Any]]]:
    """The same findings updated later: new cases, the same IOCs."""
    updated = copy.deepcopy(batches)
    for batch in updated:
        for alert in batch:
            alert["detail"]["updatedAt"] = "2026-11-26T11:00:00.000Z"
    return updated


def _baseline(replay: ReplayServer, iocs_per_alert: list[list[str]]) -> float:
    host = replay.base_url.removesuffix("/api/v3")
    started = time.perf_counter()
    with vt.Client(API_KEY, host=host) as client:
        for iocs in iocs_per_alert:
            for ip in iocs:
                client.get_object(f"/ip_addresses/{ip}")
    return time.perf_counter() - started


def _enrich_corpus(
    replay: ReplayServer, corpus: Corpus, *, run_state_machines: bool
) -> tuple[float, int, int]:
    """Seconds the enrich handler takes over the corpus's batches (its cold start included); the
    VirusTotal requests of that pass and of a second one over new versions of the same findings; the
    number of passes."""
    passes = [corpus.batches, _new_versions(corpus.batches)]
    # The handlers log JSON lines to stdout, as in Lambda: keep them out of the table.
    with (
        contextlib.redirect_stdout(io.StringIO()),
        LocalAws(vt_api_key=API_KEY, run_state_machines=run_state_machines) as aws,
    ):
        # After the stack set the template's environment: these override it.
        os.environ.update(PREMIUM_ENV)
        before = replay.request_count
        elapsed = 0.0
        for index, batches in enumerate(passes):
            started = time.perf_counter()
            for batch in batches:
                response = aws.invoke("EnrichFunction", sqs_event(batch))
                assert not response["batchItemFailures"], response
            if index == 0:
                elapsed = time.perf_counter() - started
        requests = replay.request_count - before
        if run_state_machines:
            _wait_for_executions(aws)
    return elapsed, requests, len(passes)


def _wait_for_executions(aws: LocalAws, timeout_s: float = 300) -> None:
    """Let moto finish the executions the handler started, so that none is cut off when it stops."""
    stepfunctions = aws.client("stepfunctions")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        running = stepfunctions.list_executions(
            stateMachineArn=aws.ref("TriageStateMachine"), statusFilter="RUNNING"
        )["executions"]
        if not running:
            return
        time.sleep(0.5)


def throughput_and_requests() -> dict[str, Any]:
    """Figures 1 and 2.

    The figure is the enrich function's: the executions it starts are recorded but not run. In AWS they
    run in the Step Functions service, not in the function's time; locally moto would run them in this
    very process, on the same two cores as the function measured. A second pass with them running is
    printed beside it, for what it costs on this machine.
    """
    corpus = build_corpus(batches=BATCHES)
    with tempfile.TemporaryDirectory() as folder:
        write_recordings(Path(folder), corpus.unique_iocs)
        with ReplayServer(Path(folder), api_key=API_KEY, latency_ms=LATENCY_MS) as replay:
            baseline_s = _baseline(replay, corpus.iocs_per_alert)
            baseline_requests = replay.request_count
            os.environ["VT_BASE_URL"] = replay.base_url
            vtriage_s, vtriage_requests, passes = _enrich_corpus(replay, corpus, run_state_machines=False)
            in_process_s, _, _ = _enrich_corpus(replay, corpus, run_state_machines=True)
    # Counted from the alerts sent, not from the parameters the corpus was built with.
    ips_per_alert = [remote_ips(alert) for batch in corpus.batches for alert in batch]
    unique = len({ip for ips in ips_per_alert for ip in ips})
    return {
        "throughput": {
            "batches": len(corpus.batches),
            "alerts": len(ips_per_alert),
            "unique_iocs_per_batch": [
                len({ip for alert in batch for ip in remote_ips(alert)}) for batch in corpus.batches
            ],
            "ioc_occurrences": sum(len(ips) for ips in ips_per_alert),
            "latency_ms": LATENCY_MS,
            "baseline_vtpy_sequential_s": round(baseline_s, 2),
            "baseline_requests": baseline_requests,
            "vtriage_s": round(vtriage_s, 2),
            "speedup": round(baseline_s / vtriage_s, 2),
            "goal": ">= 5.0",
            "vtriage_with_executions_run_in_process_s": round(in_process_s, 2),
            "speedup_with_executions_run_in_process": round(baseline_s / in_process_s, 2),
        },
        "requests_per_unique_ioc": {
            "unique_iocs": unique,
            "passes": passes,
            "vt_requests": vtriage_requests,
            "ratio": round(vtriage_requests / unique, 2),
            "goal": "1.00",
        },
    }


def memory_and_cold_start() -> dict[str, Any]:
    """Figures 3 and 4, each in a fresh process of its own beside one stack process (moto and the
    replay server) serving the alerts' reports: the cold start samples use the enrich function's
    environment in that stack, as template.yaml gives it."""
    with tempfile.TemporaryDirectory() as folder:
        alerts, sizes = file_alerts(Path(folder))
        interpreter = runtime_interpreter()
        with stack_in_subprocess(Path(folder), API_KEY) as environment:
            rss_bytes, lookups = peak_rss(alerts, environment, interpreter[0])
            cold = cold_start(environment, alerts[0], interpreter)
    return {
        "peak_memory": {
            "alerts": len(alerts),
            "reports": "the VirusTotal file report (the largest recorded), one per alert",
            "report_kb": round(max(sizes) / 1024, 1),
            "virustotal_lookups": lookups,
            "peak_rss_mb": round(rss_bytes / 2**20, 1),
            "python": interpreter[1],
            "goal": "< 128",
        },
        "cold_start": cold,
    }


def main() -> int:
    """Run every benchmark, print a table, write bench/results.json."""
    results: dict[str, Any] = (
        throughput_and_requests() | memory_and_cold_start() | runner_speed() | cost_per_1000_alerts()
    )
    # The two figures issue 14 names, at the top.
    results = {
        "peak_rss_mb": results["peak_memory"]["peak_rss_mb"],
        "cold_start_over_dependency_floor": results["cold_start"]["handler_over_dependencies"],
    } | results
    results["goals_met"] = goals_met(results)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    cost = results["cost_per_1000_alerts"]
    reference = [
        ("AWS cost of 1,000 alerts, us-east-1 (USD)", results["cost_per_1000_alerts_usd"]),
        *(
            (f"  of which {service}", usd)
            for service, usd in cost["vtriage"]["usd_per_1000_alerts_by_service"].items()
        ),
        (
            "same alerts, per-alert Lambda, no cache or batching",
            cost["naive_per_alert_lambda"]["usd_per_1000_alerts"],
        ),
        (
            "throughput speedup, executions run in-process",
            results["throughput"]["speedup_with_executions_run_in_process"],
        ),
        ("cold start, handler / boto3 + client", results["cold_start"]["handler_over_boto3"]),
        (
            "cold start, runtime dependencies / boto3 + client",
            results["cold_start"]["dependencies_over_boto3"],
        ),
    ]
    for line in goal_lines(results):
        print(line)
    print("for reference (no goal):")
    for name, value in reference:
        print(f"{name:<50} {value:>10}")
    print(f"cold start and enrich peak memory measured in: {results['cold_start']['python']}")
    print(f"details: {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
