"""Every sample in events/ runs through the whole local pipeline (`vtriage run`) and its cases show exactly
the IOCs the table in tests/unit/test_intake_samples.py writes down: the same table the parser is held
to, here met end to end, through the queue, the enrich handler and the state machine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.functional.conftest import EVENTS, run_pipeline
from tests.unit.test_intake_samples import EXPECTED
from vtriage.intake import IntakeOptions
from vtriage.intake.body import decode_body
from vtriage_local.template import choose_if, functions, load_template

pytestmark = pytest.mark.functional

# (type, value, skipped?) as a case lists each IOC.
IocRow = tuple[str, str, bool]
AlertKey = tuple[str, str]

# Samples whose every alert the deployed enrich function acknowledges without a case: a GuardDuty finding
# seen through Security Hub, since GuardDuty reaches the queue through its own rule (GuardDutyFindingsVia's
# default).
NO_CASE_AS_DEPLOYED = {
    "synthetic-securityhub-guardduty-product.json",
    "synthetic-securityhub-guardduty-member-account-c2-dns.json",
}


def samples() -> list[Path]:
    """Every sample a user runs with `vtriage run events/*.json`: the files directly in events/."""
    return sorted(EVENTS.glob("*.json"))


def deployed_intake() -> IntakeOptions:
    """How the template's enrich function reads alerts, where it differs from the parser's defaults."""
    template = load_template()
    environment = functions(template)["EnrichFunction"].environment
    skip = choose_if(environment["SKIP_GUARDDUTY_IN_SECURITYHUB"], template, {})
    return IntakeOptions(skip_guardduty_in_securityhub=skip == "true")


def expected_cases() -> tuple[dict[AlertKey, tuple[str, set[IocRow]]], set[str]]:
    """(source, alert id) → (sample, the IOC set its case must show), from the shared table; and the
    samples the deployed enrich function makes no case of.

    The parser only says which alert ids a file holds, so that each case maps back to its file; the
    IOCs compared are the ones the pipeline put on the cases.
    """
    deployed = deployed_intake()
    table: dict[AlertKey, tuple[str, set[IocRow]]] = {}
    without_case: set[str] = set()
    for path in samples():
        source, per_alert = EXPECTED[path.name]
        document = decode_body(path.read_text())
        alerts = IntakeOptions().read(document).alerts
        assert len(alerts) == len(per_alert), f"{path.name}: the table lists {len(per_alert)} alerts"
        kept = {alert.id for alert in deployed.read(document).alerts}
        for alert, iocs in zip(alerts, per_alert, strict=True):
            if alert.id not in kept:
                without_case.add(path.name)
                continue
            rows = {(ioc_type, value, not looked_up) for ioc_type, value, looked_up in iocs}
            table[(source, alert.id)] = (path.name, rows)
    return table, without_case


def test_the_table_covers_every_sample_in_events() -> None:
    # Given every file directly in events/
    names = {path.name for path in samples()}

    # Then each has its expected IOCs written down, and the table names no file that is gone
    assert names == set(EXPECTED), "a sample without expected IOCs, or expected IOCs without a sample"


@pytest.fixture(scope="module")
def pipeline_run() -> dict[str, Any]:
    """One `vtriage run --json` over every sample, as `make demo` runs them."""
    return run_pipeline(*samples())


def test_every_sample_runs_through_the_pipeline_without_a_rejected_record(
    pipeline_run: dict[str, Any],
) -> None:
    # Then no record was rejected or left pending, every triage execution finished, and only the samples
    # the deployment acknowledges without a case are ignored
    assert (pipeline_run["failures"], pipeline_run["pending"]) == ([], [])
    # A case whose actions wait for a person (a custom product's import is treated as a pushed alert)
    # keeps its execution running until someone decides; every other execution finished
    waiting = [
        case
        for case in pipeline_run["cases"]
        if case["actions"] and all(action["status"] == "pending_approval" for action in case["actions"])
    ]
    assert {case["execution_status"] for case in waiting} <= {"RUNNING"}
    finished = [case for case in pipeline_run["cases"] if case not in waiting]
    assert {case["execution_status"] for case in finished} == {"SUCCEEDED"}
    assert {ignored["message_id"] for ignored in pipeline_run["ignored"]} == NO_CASE_AS_DEPLOYED
    # and nothing failed, as `make demo` shows them: an action the deployment has not configured (the S3
    # quarantine without a bucket, the DNS Firewall block without a domain list) is skipped with its reason
    assert [case["message_id"] for case in pipeline_run["cases"] if case["status"] == "FAILED"] == []
    failed = [
        (action["type"], action["detail"])
        for case in pipeline_run["cases"]
        for action in case["actions"]
        if action["status"] == "failed"
    ]
    assert failed == []


def test_every_sample_gives_its_expected_iocs_end_to_end(pipeline_run: dict[str, Any]) -> None:
    # Given the expected IOCs of every alert the samples hold, but those the deployment only acknowledges
    expected, without_case = expected_cases()
    assert without_case == NO_CASE_AS_DEPLOYED

    # When the cases of the run are mapped back to their samples
    found: dict[AlertKey, tuple[str, set[IocRow]]] = {}
    for case in pipeline_run["cases"]:
        key = (case["source"], case["alert_id"])
        assert key not in found, f"two cases for one alert: {key}"
        rows = [(ioc["type"], ioc["value"], ioc["skipped_reason"] is not None) for ioc in case["iocs"]]
        assert len(rows) == len(set(rows)), f"{key}: an IOC listed twice"
        found[key] = (expected.get(key, ("(no sample)", set()))[0], set(rows))

    # Then every alert made one case, and each case shows exactly the IOCs written down for it
    assert found == expected
