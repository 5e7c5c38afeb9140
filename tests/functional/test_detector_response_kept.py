"""A genuine detector finding keeps its automatic response (red team, items 5 and 6), through the real enrich
handler, intake function, state machine and remediate function on moto: when an identical copy of it was
pushed first through the intake URL, and when a later version of it comes after DryRun was turned off.

The finding is tests/adversarial/synthetic-genuine-c2-dns.json: warren's real GuardDuty
`Backdoor:EC2/C&CActivity.B!DNS` event moved to the deployment's Region, its domain one VirusTotal's
recorded answer flags (tests/adversarial/PROVENANCE.md), on instance i-0a1b2c3d4e5f67890, which each test
launches in the local account first.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.functional.conftest import wait_for_execution
from tests.functional.test_adversarial import ADVERSARIAL, GENUINE, INSTANCE, seed
from tests.functional.test_intake_function import SENDER, function_url_request, post
from vtriage_local.alert_files import deliveries_in
from vtriage_local.replay import ReplayServer, bundled_recordings
from vtriage_local.runner import Pipeline
from vtriage_local.stack import LocalAws

pytestmark = pytest.mark.functional

GENUINE_BODY = (ADVERSARIAL / GENUINE).read_text(encoding="utf-8")


@contextmanager
def _deployed(monkeypatch: pytest.MonkeyPatch, **parameters: str) -> Iterator[LocalAws]:
    """The local AWS with these template parameters, VirusTotal answered by its recorded replies, and the
    finding's instance launched."""
    with ReplayServer(bundled_recordings(), api_key="local-replay-key") as replay:
        monkeypatch.setenv("VT_BASE_URL", replay.base_url)
        monkeypatch.delenv("VT_API_KEY", raising=False)
        with LocalAws(parameters=parameters) as aws:
            seed(aws, INSTANCE)
            yield aws


def _case_ids(aws: LocalAws) -> set[str]:
    """The ids of every case in the cases table."""
    items = aws.client("dynamodb").scan(
        TableName=aws.ref("CasesTable"), ProjectionExpression="case_id, alert"
    )
    return {item["case_id"]["S"] for item in items["Items"] if "alert" in item}


def _delivered(aws: LocalAws, pipeline: Pipeline, body: str) -> list[str]:
    """Queue `body` on the detector rules' queue, as EventBridge does, and drain both queues through the
    enrich handler: the ids of the cases it made."""
    before = _case_ids(aws)
    for delivery in deliveries_in(body.encode(), "genuine.json"):
        pipeline.enqueue(delivery)
    outcomes, failures = pipeline.drain()
    assert (len(outcomes), failures) == (1, [])
    return sorted(_case_ids(aws) - before)


def _finished(aws: LocalAws, pipeline: Pipeline, case_id: str) -> dict[str, Any]:
    """The case once its execution has finished."""
    case = pipeline.case(case_id)
    assert case is not None, case_id
    execution = wait_for_execution(aws.client("stepfunctions"), case["execution_arn"])
    assert execution["status"] == "SUCCEEDED", execution
    finished = pipeline.case(case_id)
    assert finished is not None
    return finished


def _statuses(case: dict[str, Any]) -> dict[str, str]:
    return {action["type"]: action["status"] for action in case["actions"]}


def _groups_of_the_instance(aws: LocalAws) -> list[str]:
    """The names of the groups the finding's instance's interface is in."""
    ec2 = aws.client("ec2")
    (interface,) = ec2.describe_network_interfaces(
        Filters=[{"Name": "attachment.instance-id", "Values": [INSTANCE.id]}]
    )["NetworkInterfaces"]
    return sorted(group["GroupName"] for group in interface["Groups"])


def test_the_detectors_delivery_after_an_identical_pushed_copy_is_acted_on_automatically(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a deployment that tickets pushed alerts, and the genuine C&C finding pushed first through the
    # intake URL by a signed sender (as `vtriage send` of GuardDuty's get-findings output would), triaged:
    # no action, a ticket
    with _deployed(monkeypatch, PushedAlertActions="ticket") as aws:
        pipeline = Pipeline(aws)
        status, answer = post(aws, function_url_request(GENUINE_BODY))
        assert status == 202
        (pushed_id,) = answer["case_ids"]
        pipeline.drain()
        pushed = _finished(aws, pipeline, pushed_id)
        assert (pushed["provenance"]["channel"], pushed["actions"]) == ("intake", [])

        # When the detector rules deliver the same finding through EventBridge
        (detector_id,) = _delivered(aws, pipeline, GENUINE_BODY)

        # Then it is triaged as the detector's, in a case of its own: its four actions planned with no
        # person in the way, and run (in dry run, the default) by its own execution
        assert detector_id != pushed_id
        detector = _finished(aws, pipeline, detector_id)
        assert detector["provenance"] == {
            "channel": "detector",
            "sender": None,
            "source_ip": None,
            "user_agent": None,
        }
        assert all("needs_approval" not in action["parameters"] for action in detector["actions"])
        assert _statuses(detector) == {
            "snapshot_volumes": "dry_run",
            "tag_instance": "dry_run",
            "isolate_instance": "dry_run",
            "block_domain_dns_firewall": "skipped",
        }
        assert detector["branch"] == "remediate"
        # And the pushed copy's case is as its execution left it, each case naming the other
        after = pipeline.case(pushed_id)
        assert after is not None
        assert (after["provenance"], after["actions"], after["status"]) == (
            pushed["provenance"],
            [],
            pushed["status"],
        )
        assert after["provenance"]["sender"] == SENDER
        assert detector["variant_case_ids"] == [pushed_id]
        assert after["variant_case_ids"] == [detector_id]
        assert any(
            f"came earlier through the intake URL, signed by {SENDER}" in entry["note"]
            for entry in detector["history"]
        )


def test_a_later_version_of_a_finding_seen_in_dry_run_isolates_the_instance_once_dry_run_is_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given the genuine C&C finding triaged while the deployment ran in dry run (the default): its
    # execution ran every action in dry run, the instance untouched, and ticketed the case
    with _deployed(monkeypatch) as aws:
        pipeline = Pipeline(aws)
        (first_id,) = _delivered(aws, pipeline, GENUINE_BODY)
        first = _finished(aws, pipeline, first_id)
        assert first["status"] == "TICKETED"
        assert _statuses(first)["isolate_instance"] == "dry_run"
        assert "vtriage-quarantine" not in _groups_of_the_instance(aws)

        # When DryRun is turned off (the functions read it when they start), and GuardDuty sends the
        # finding's next version
        later = json.loads(GENUINE_BODY)
        later["detail"]["updatedAt"] = "2030-01-01T00:00:00.000Z"
        later["detail"]["service"]["count"] += 1
        with monkeypatch.context() as redeployed:
            redeployed.setenv("DRY_RUN", "false")
            (later_id,) = _delivered(aws, pipeline, json.dumps(later))
            acted = _finished(aws, pipeline, later_id)
            groups = _groups_of_the_instance(aws)

        # Then it is not folded into the dry-run case: a case of its own, whose execution isolated the
        # instance for real, its history naming the earlier case and why
        assert later_id != first_id
        assert _statuses(acted)["isolate_instance"] == "done"
        assert groups == ["vtriage-quarantine"]
        assert any(
            entry["note"].startswith(
                f"a repeat of case {first_id}, not folded into it: its actions would run"
            )
            for entry in acted["history"]
        )
        stored_first = pipeline.case(first_id)
        assert stored_first is not None
        assert stored_first.get("repeat_count", 0) == 0
