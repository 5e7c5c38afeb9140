"""`vtriage run` on a case whose actions wait for a person's approval: nobody approves in a local run, so
the runner does not wait for such an execution (it used to wait its two minutes for every execution to
finish), and its report and JSON say plainly that the case waits for a person. The real command runs, in
this process, against the real stack on moto."""

from __future__ import annotations

import json
import re

import pytest

from tests.functional.conftest import event
from tests.functional.test_runner_cli import C2, CANARY, in_process

pytestmark = pytest.mark.functional

# Well under the runner's two-minute wait for the executions, and over what a loaded machine takes.
QUICK_S = 30.0
WAITING = "waiting for a person's approval"


def test_a_run_whose_actions_wait_for_a_person_ends_without_waiting_for_them() -> None:
    # Given the C&C sample acting for real with the hour's allowance of actions spent (each action that
    # changes something then waits for a person), and the canary sample, which is only ticketed
    # When the runner runs both
    status, stdout, _ = in_process(
        "run",
        "--json",
        "--quiet",
        "--parameter-overrides",
        "DryRun=false",
        "--parameter-overrides",
        "MaxActionsPerHour=0",
        str(event(C2)),
        str(event(CANARY)),
    )

    # Then it ends well within its two-minute wait for the executions, with status 0: nothing refused,
    # nothing pending
    document = json.loads(stdout)
    assert document["stats"]["duration_s"] < QUICK_S
    assert (status, document["failures"], document["pending"]) == (0, [], [])
    waiting, ticketed = document["cases"]
    # and the C&C case says its execution waits for a person's approval, reached once the ticket opened:
    # with an allowance of 0 every action that changes something waits (none runs, not even the hour's
    # first), and the DNS Firewall block, which no list is configured for, is skipped without asking
    assert (waiting["execution_status"], waiting["waiting_for_approval"]) == ("RUNNING", True)
    assert [(action["type"], action["status"]) for action in waiting["actions"]] == [
        ("snapshot_volumes", "pending_approval"),
        ("tag_instance", "pending_approval"),
        ("isolate_instance", "pending_approval"),
        ("block_domain_dns_firewall", "skipped"),
    ]
    assert waiting["ticket"]["provider"] == "sns"
    # and the canary's execution, which waits for nobody, finished before the runner stopped
    assert (ticketed["execution_status"], ticketed["waiting_for_approval"]) == ("SUCCEEDED", False)


def test_the_report_says_the_case_waits_for_a_persons_approval() -> None:
    # Given a Security Hub finding of a custom product (treated as a pushed alert: a person approves
    # each of its actions), as the template deploys by default
    # When the runner reports on it
    status, stdout, _ = in_process("run", "--quiet", str(event("synthetic-securityhub-threat-intel.json")))

    # Then it ends well within its two-minute wait for the executions (the duration on its last line)
    flat = " ".join(stdout.split())
    duration = re.search(r"; (\d+\.\d) s$", flat)
    assert duration is not None, flat[-300:]
    assert float(duration.group(1)) < QUICK_S
    # and the report says the case's execution and each of its actions wait for a person's approval,
    # and counts the case so, neither refused nor pending nor failed (no function log kept)
    assert f"execution RUNNING, {WAITING}" in flat
    for action in ("snapshot_volumes", "tag_instance", "isolate_instance", "block_domain_dns_firewall"):
        assert re.search(rf"{action} \S+ -> {WAITING}", flat), action
    assert f"1 case(s) {WAITING}" in flat
    assert "1 case(s), 0 repeat(s), 0 ignored, 0 pending, 0 refused" in flat
    assert "function logs" not in stdout
    assert status == 0
    # in lines that fit 80 columns (but VirusTotal's links, each kept whole on a line of its own)
    assert max(len(line) for line in stdout.splitlines() if "https://" not in line) <= 80
