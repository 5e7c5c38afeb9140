"""Cold start of the enrich function against the floor of its runtime dependencies, in the same run.

Each sample is a fresh interpreter: one imports the handler module and builds the function's adapters
(what a first invocation does before its first request), one imports only the runtime dependencies the
function is built on and makes one client. They alternate, so that both see the same machine; the
figure is the ratio of their medians.

The interpreter is the functions' runtime (template.yaml's Globals: Python 3.13) with the layer's
locked dependencies (layers/common/requirements.txt, hashes checked), in a virtual environment made
once per lock under .bench/: Python versions differ in what the same imports cost (on 3.12 the
handler's imports set off garbage collections over the dependencies' heap that 3.13's do not). Where
this machine has no such Python (vtriage_local.runtime_python looks on PATH, in pyenv and with uv) or
the environment cannot be made (PyPI out of reach), the samples run in this interpreter, and the
results say so.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.memory import PREMIUM_ENV
from bench.sqs import sqs_event
from vtriage_local.runtime_python import find_runtime_python, runtime_name

ROOT = Path(__file__).resolve().parents[1]
RUNS = 31
LAYER_LOCK = ROOT / "layers" / "common" / "requirements.txt"
RUNTIME_ENVIRONMENTS = ROOT / ".bench"
# vtriage from the layer's folder, as Lambda finds it in the layer; the bench package from the root.
LAYER_PATH = {"PYTHONPATH": str(ROOT / "layers" / "common")}

# The handler as Lambda starts it: its module (Logger and Metrics made at import), then, on the first
# invocation, the settings and the composition root's adapters.
HANDLER = """
import sys, time
started = time.perf_counter()
sys.path.insert(0, "functions/enrich")
import app
from vtriage.composition.enrich import batch_factory
from vtriage.config.enrich import EnrichSettings
batch_factory(EnrichSettings.from_environ())
print(time.perf_counter() - started)
"""
# What the enrich function cannot do without, imported in the handler's order (powertools before
# pydantic, so that the batch utility skips its pydantic record models), with one pydantic model with
# a constrained field (which loads pydantic's field machinery) and one client: the floor of any
# handler on these runtime dependencies.
DEPENDENCIES = """
import time
started = time.perf_counter()
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.batch import BatchProcessor
import boto3
import requests
from pydantic import BaseModel, Field
class Setting(BaseModel):
    name: str = Field(min_length=1)
boto3.client("dynamodb")
print(time.perf_counter() - started)
"""
# The first invocation after that start, on one alert (a new finding each run): the start defers what a
# record needs (its models, the Secrets Manager provider, the Step Functions client) to here, so this
# figure shows what the start no longer pays for.
FIRST_RECORD = """
import json, os, sys, time
sys.path.insert(0, "functions/enrich")
import app
from bench.invoke_enrich import Context
from vtriage.composition.enrich import batch_factory
from vtriage.config.enrich import EnrichSettings
batch_factory(EnrichSettings.from_environ())
with open(os.environ["BENCH_FIRST_RECORD_EVENT"]) as event_file:
    event = json.load(event_file)
started = time.perf_counter()
response = app.lambda_handler(event, Context())
elapsed = time.perf_counter() - started
assert not response["batchItemFailures"], response
print(elapsed)
"""
BOTO3 = """
import time
started = time.perf_counter()
import boto3
boto3.client("dynamodb")
print(time.perf_counter() - started)
"""


def runtime_interpreter() -> tuple[str, str]:
    """The interpreter the samples run in, and what it is: the functions' runtime Python in a virtual
    environment holding the layer's locked dependencies, or this interpreter where that cannot be."""
    runtime = runtime_name()
    found = find_runtime_python(runtime)
    this_one = f"{sys.version.split()[0]}, this interpreter"
    if found is None:
        return sys.executable, f"{this_one}: no {runtime} on this machine (PATH, pyenv, uv)"
    lock_digest = hashlib.sha256(LAYER_LOCK.read_bytes()).hexdigest()[:12]
    environment = RUNTIME_ENVIRONMENTS / f"{runtime}-{lock_digest}"
    python = environment / "bin" / "python"
    installed = environment / ".installed"
    if not installed.exists():
        print(
            f"making the {runtime} environment for the cold start: {environment.relative_to(ROOT)}",
            flush=True,
        )
        steps = (
            [str(found), "-m", "venv", "--clear", str(environment)],
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             "--require-hashes", "--no-deps", "--requirement", str(LAYER_LOCK)],
        )  # fmt: skip
        for step in steps:
            completed = subprocess.run(step, capture_output=True, text=True, check=False)
            if completed.returncode != 0:
                last_line = (completed.stderr.strip().splitlines() or ["no output"])[-1]
                return (
                    sys.executable,
                    f"{this_one}: the {runtime} environment could not be made ({last_line})",
                )
        installed.write_text(LAYER_LOCK.read_text())
    version = subprocess.run(
        [str(python), "-c", "import platform; print(platform.python_version())"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    return str(python), f"{version}, the functions' runtime ({runtime}) with the layer's locked dependencies"


def compile_project(python: str) -> None:
    """Write vtriage's and the handler's bytecode for `python`, as the layer's build does
    (layers/common/Makefile): on Lambda both sides load bytecode, and an interpreter that writes none
    (PYTHONDONTWRITEBYTECODE) would compile vtriage at every start and the figure would measure the
    compiler."""
    folders = [str(ROOT / "layers" / "common" / "vtriage"), str(ROOT / "functions" / "enrich")]
    subprocess.run([python, "-m", "compileall", "-q", *folders], capture_output=True, check=True)


def _seconds(python: str, script: str, environment: dict[str, str]) -> float:
    output = subprocess.run(
        [python, "-c", script], cwd=ROOT, env=environment, capture_output=True, text=True, check=True
    )
    return float(output.stdout.strip().splitlines()[-1])


def first_record_seconds(python: str, alert: dict[str, Any], environment: dict[str, str], runs: int) -> float:
    """Median seconds of the first invocation after a start, each run on the alert as a new finding."""
    samples = []
    with tempfile.TemporaryDirectory() as folder:
        event_path = Path(folder) / "event.json"
        for run in range(runs):
            fresh = copy.deepcopy(alert)
            fresh["id"] = f"{alert['id']}-first-record-{run}"
            fresh["detail"]["id"] = f"{alert['detail']['id']}firstrecord{run}"
            event_path.write_text(json.dumps(sqs_event([fresh])))
            # A premium-like quota: the public API's 4 lookups a minute would defer the later runs' alert.
            record_environment = environment | PREMIUM_ENV | {"BENCH_FIRST_RECORD_EVENT": str(event_path)}
            samples.append(_seconds(python, FIRST_RECORD, record_environment))
    return statistics.median(samples)


def cold_start(
    function_environment: dict[str, str],
    first_record_alert: dict[str, Any],
    interpreter: tuple[str, str],
    runs: int = RUNS,
) -> dict[str, Any]:
    """Medians of `runs` fresh interpreters of each kind, in the enrich function's environment; and of
    the first invocation after a start, on `first_record_alert`."""
    python, described = interpreter
    compile_project(python)
    environment = {**os.environ, **function_environment, **LAYER_PATH}
    samples: dict[str, list[float]] = {"handler": [], "dependencies": [], "boto3": []}
    for _ in range(runs):
        for name, script in (("handler", HANDLER), ("dependencies", DEPENDENCIES), ("boto3", BOTO3)):
            samples[name].append(_seconds(python, script, environment))
    handler_s, dependencies_s, boto3_s = (statistics.median(samples[name]) for name in samples)
    first_record_s = first_record_seconds(python, first_record_alert, environment, runs=11)
    return {
        "python": described,
        "runs": runs,
        "enrich_handler_s": round(handler_s, 3),
        "runtime_dependencies_alone_s": round(dependencies_s, 3),
        "boto3_dynamodb_client_s": round(boto3_s, 3),
        "handler_over_dependencies": round(handler_s / dependencies_s, 2),
        "goal": "<= 1.10",
        "handler_over_boto3": round(handler_s / boto3_s, 2),
        "dependencies_over_boto3": round(dependencies_s / boto3_s, 2),
        "first_record_after_start_s": round(first_record_s, 3),
    }
