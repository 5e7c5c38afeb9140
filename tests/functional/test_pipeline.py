"""The whole pipeline on the sample events: queue → enrich handler → VirusTotal replay → DynamoDB →
state machine on moto's engine → remediate and ticket handlers."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pytest

from tests.functional.conftest import EVENTS, event, run_pipeline
from vtriage_cli.main import main as vtriage
from vtriage_local.alert_files import read_deliveries
from vtriage_local.replay import bundled_recordings
from vtriage_local.runner import Pipeline
from vtriage_local.stack import LocalAws

RECORDINGS = bundled_recordings()
REAL_SAMPLES_WITH_DOCUMENTATION_ADDRESSES = [
    "guardduty-ec2-canary-outbound-ssh.json",
    "guardduty-iam-recon-malicious-ip-caller.json",
    "guardduty-s3-pentest-parrot-linux.json",
]


def test_command_and_control_alert_plans_isolation_in_dry_run_and_opens_a_ticket() -> None:
    # Given a C&C DNS finding on an instance whose domain 6 VirusTotal engines flag
    # When it runs through the whole pipeline
    document = run_pipeline(event("synthetic-guardduty-backdoor-c2-dns.json"))

    # Then the case is malicious, went down the remediate branch, and the execution succeeded
    [case] = document["cases"]
    assert (case["verdict"], case["branch"], case["execution_status"]) == (
        "malicious",
        "remediate",
        "SUCCEEDED",
    )
    [domain] = [ioc for ioc in case["iocs"] if ioc["type"] == "domain"]
    assert (domain["value"], domain["verdict"], domain["malicious"]) == ("tawuhoju.com", "malicious", 6)
    assert any("6 of" in reason for reason in domain["reasons"])
    # and the compromised-instance and malicious-domain playbooks were only planned: dry-run is the
    # default, and the account has no DNS Firewall domain list, so the domain block is skipped
    instance = "i-0b3f6c2d9e1a47c58"
    assert [(action["type"], action["target"], action["status"]) for action in case["actions"]] == [
        ("snapshot_volumes", instance, "dry_run"),
        ("tag_instance", instance, "dry_run"),
        ("isolate_instance", instance, "dry_run"),
        ("block_domain_dns_firewall", "tawuhoju.com", "skipped"),
    ]
    [isolation] = [action for action in case["actions"] if action["type"] == "isolate_instance"]
    assert "vtriage-quarantine" in isolation["detail"]
    # and a ticket was opened for a person
    assert case["ticket"] is not None
    assert case["ticket"]["provider"] == "sns"
    assert document["stats"]["vt_requests"] == 1
    assert document["failures"] == []


def test_malicious_caller_of_an_access_key_plans_disabling_the_key_and_opens_a_ticket() -> None:
    # Given a Tor exit node calling the API with an access key
    document = run_pipeline(event("synthetic-guardduty-iam-tor-caller.json"))

    # Then the IP is malicious, the malicious-api-caller playbook plans disabling the key, and a person
    # gets a ticket (no IP block: IP_BLOCK_METHOD is none by default)
    [case] = document["cases"]
    assert (case["verdict"], case["branch"]) == ("malicious", "remediate")
    assert [ioc["value"] for ioc in case["iocs"] if ioc["verdict"] == "malicious"] == ["23.129.64.215"]
    assert [(action["type"], action["target"]) for action in case["actions"]] == [
        ("disable_access_key", "AKIAIOSFODNN7EXAMPLE")
    ]
    # The runner mirrors the alert's key in the local account, so the dry run names what it would change
    assert case["actions"][0]["status"] == "dry_run"
    assert "Inactive" in case["actions"][0]["detail"]
    assert case["ticket"] is not None


def test_suspicious_domain_goes_to_a_ticket() -> None:
    # Given a DNS finding whose domain one engine flags
    document = run_pipeline(event("synthetic-guardduty-ec2-suspicious-dns.json"))

    # Then it is suspicious, ticketed, and nothing is remediated
    [case] = document["cases"]
    assert (case["verdict"], case["branch"], case["execution_status"]) == (
        "suspicious",
        "ticket",
        "SUCCEEDED",
    )
    assert case["actions"] == []
    assert case["ticket"] is not None


@pytest.mark.parametrize("sample", REAL_SAMPLES_WITH_DOCUMENTATION_ADDRESSES)
def test_real_medium_findings_with_only_documentation_addresses_are_ticketed_without_a_lookup(
    sample: str,
) -> None:
    # Given a real medium-severity GuardDuty sample whose remote addresses are documentation ranges
    # (or 0.0.0.0): nothing VirusTotal could look up
    document = run_pipeline(event(sample))

    # Then no VirusTotal request is spent and every IOC is kept as skipped, and since the detector rates
    # it medium (the default TICKET_MIN_SEVERITY), a person gets a ticket rather than the case closing
    [case] = document["cases"]
    assert document["stats"]["vt_requests"] == 0
    assert case["iocs"], "the addresses stay on the case"
    assert all(ioc["skipped_reason"] for ioc in case["iocs"])
    assert case["severity_label"] == "medium"
    assert (case["verdict"], case["branch"], case["status"]) == ("unknown", "ticket", "TICKETED")
    assert case["actions"] == []
    assert case["ticket"] is not None


def test_a_low_severity_finding_with_nothing_to_look_up_is_closed_with_its_record_kept() -> None:
    # Given a real Security Hub control finding rated informational, with no IOC
    document = run_pipeline(event("securityhub-afsbp-ec2.7-ebs-default-encryption.json"))

    # Then the case is closed below the ticket threshold, and kept
    [case] = document["cases"]
    assert (case["verdict"], case["severity"], case["severity_label"]) == ("unknown", 0, "informational")
    assert (case["branch"], case["status"], case["ticket"]) == ("close", "CLOSED", None)


def test_get_findings_output_domain_unknown_to_virustotal_is_ticketed_for_its_high_severity() -> None:
    # Given real `aws guardduty get-findings` output with a DNS request to a domain the recordings lack
    document = run_pipeline(event("guardduty-getfindings-trojan-droppoint-dns.json"))

    # Then the lookup answers 404, which is a result (unknown), not a failure
    [case] = document["cases"]
    [domain] = [ioc for ioc in case["iocs"] if ioc["type"] == "domain"]
    assert (domain["value"], domain["verdict"], domain["skipped_reason"]) == ("3322.org", "unknown", None)
    # and with nothing confirmed no action is planned, but GuardDuty rates it high: a person looks
    assert (case["severity_label"], case["branch"], case["actions"]) == ("high", "ticket", [])
    assert document["stats"]["vt_requests"] == 1


def test_a_finding_delivered_twice_makes_one_case_one_execution_and_one_lookup() -> None:
    # Given the same finding delivered twice in one run
    sample = event("synthetic-guardduty-iam-tor-caller.json")
    document = run_pipeline(sample, sample)

    # Then there is one case, run once, and VirusTotal was asked once
    assert document["stats"]["records"] == 2
    [case] = document["cases"]
    assert document["stats"]["vt_requests"] == 1
    assert document["failures"] == []
    # and the second delivery is listed under the case it met, named apart from the first
    assert case["message_id"] == sample.name
    assert case["repeats"] == [
        {"alert_id": case["alert_id"], "message_id": f"{sample.name} (2)", "same_finding": True}
    ]


def test_same_indicator_in_a_later_alert_comes_from_the_cache() -> None:
    # Given two different findings that share the IP 23.129.64.215, delivered in one batch
    document = run_pipeline(
        event("synthetic-guardduty-iam-tor-caller.json"), event("synthetic-guardduty-portprobe.json")
    )

    # Then the IP is looked up once and the second case is answered without a request
    assert len(document["cases"]) == 2
    assert document["stats"]["vt_requests"] == 1
    assert document["stats"]["vt_cache_hits"] == 1
    cached = [ioc for case in document["cases"] for ioc in case["iocs"] if ioc["cached"]]
    assert [ioc["value"] for ioc in cached] == ["23.129.64.215"]


def test_broken_records_are_rejected_with_reasons_kept_and_parked_without_blocking_the_good_one(
    local_aws: LocalAws,
) -> None:
    # Given an SQS batch with a valid finding, a body that is not JSON, and a finding without an id
    pipeline = Pipeline(local_aws)
    for delivery in read_deliveries(EVENTS / "invalid" / "sqs-batch-mixed.json"):
        pipeline.enqueue(delivery)

    # When the enrich handler receives the batch
    outcomes, failures = pipeline.drain()

    # Then the valid record became a case and the two others were rejected with reasons naming the problem
    assert len(outcomes) == 1
    reasons = sorted(failure["reason"] for failure in failures)
    assert len(reasons) == 2
    assert any("not JSON" in reason for reason in reasons)
    assert any("detail.id: missing" in reason for reason in reasons)
    # and both wait in the dead-letter queue with their reason, none left in the alert queue
    sqs = local_aws.client("sqs")
    parked = sqs.receive_message(
        QueueUrl=local_aws.ref("AlertDeadLetterQueue"), MaxNumberOfMessages=10, MessageAttributeNames=["All"]
    )["Messages"]
    assert (
        sorted(message["MessageAttributes"]["vtriage_reason"]["StringValue"] for message in parked) == reasons
    )
    attributes = sqs.get_queue_attributes(
        QueueUrl=local_aws.ref("AlertQueue"), AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    assert attributes["ApproximateNumberOfMessages"] == "0"


def test_cli_json_follows_the_contract_and_exits_2_when_records_are_rejected() -> None:
    # Given the mixed batch and a valid alert
    stdout = io.StringIO()

    # When the CLI runs them with --json
    with contextlib.redirect_stdout(stdout):
        status = vtriage(
            [
                "run",
                "--json",
                str(EVENTS / "invalid" / "sqs-batch-mixed.json"),
                str(event("synthetic-guardduty-iam-tor-caller.json")),
            ]
        )

    # Then stdout is one JSON document with the contract's keys, and the status says records were rejected
    document = json.loads(stdout.getvalue())
    assert status == 2
    assert {"cases", "ignored", "pending", "failures", "stats"} <= set(document)
    assert {"records", "vt_requests", "vt_cache_hits", "duration_s"} <= set(document["stats"])
    assert document["stats"]["records"] == 4
    assert len(document["failures"]) == 2
    assert all(
        {"message_id", "reason"} <= set(failure) <= {"message_id", "reason", "alert_id", "where"}
        for failure in document["failures"]
    )
    case_keys = {
        "case_id",
        "message_id",
        "repeats",
        "alert_id",
        "source",
        "type",
        "severity",
        "verdict",
        "branch",
        "execution_arn",
        "execution_status",
        "iocs",
        "actions",
        "ticket",
    }
    ioc_keys = {
        "type",
        "value",
        "verdict",
        "skipped_reason",
        "malicious",
        "suspicious",
        "total",
        "cached",
        "reasons",
    }
    for case in document["cases"]:
        assert case_keys <= set(case)
        assert all(ioc_keys <= set(ioc) for ioc in case["iocs"])
        assert all({"type", "target", "status", "detail"} <= set(action) for action in case["actions"])


def test_cli_exits_1_on_a_missing_file() -> None:
    # Given a path that does not exist, When the CLI runs it, Then it is a usage error
    with contextlib.redirect_stderr(io.StringIO()) as stderr:
        status = vtriage(["run", "no-such-alert.json"])
    assert status == 1
    assert "no-such-alert.json" in stderr.getvalue()


def test_malicious_ip_probing_an_instance_is_ticketed_not_isolated() -> None:
    # Given a low-severity port probe on an instance from an IP VirusTotal flags, and a documentation address
    document = run_pipeline(event("synthetic-guardduty-portprobe.json"))

    # Then the case is malicious, ticketed for a person, and the instance (the target) is left alone
    [case] = document["cases"]
    assert (case["verdict"], case["branch"], case["status"]) == ("malicious", "ticket", "TICKETED")
    assert case["actions"] == []
    skipped = {ioc["value"]: ioc["skipped_reason"] for ioc in case["iocs"] if ioc["skipped_reason"]}
    assert skipped == {"198.51.100.7": "documentation address (RFC 5737)"}


def test_recordings_given_with_vt_fixtures_answer_instead_of_the_bundled_ones(tmp_path: Path) -> None:
    # Given a recordings folder where 3322.org is a domain seven engines flag
    report = json.loads((RECORDINGS / "domains" / "tawuhoju.com.json").read_text())
    report["data"]["id"] = "3322.org"
    report["data"]["attributes"]["last_analysis_stats"]["malicious"] = 7
    (tmp_path / "domains").mkdir()
    (tmp_path / "domains" / "anything.json").write_text(json.dumps(report))

    # When the get-findings sample runs against it
    document = run_pipeline(event("guardduty-getfindings-trojan-droppoint-dns.json"), recordings=tmp_path)

    # Then the verdict comes from that folder
    [case] = document["cases"]
    [domain] = [ioc for ioc in case["iocs"] if ioc["type"] == "domain"]
    assert (domain["value"], domain["verdict"], domain["malicious"]) == ("3322.org", "malicious", 7)


def test_parameter_overrides_let_remediation_act_on_the_local_instance() -> None:
    # Given the C&C sample, When it runs with DryRun=false as a template parameter
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        status = vtriage(
            [
                "run",
                "--json",
                "--parameter-overrides",
                "DryRun=false",
                str(event("synthetic-guardduty-backdoor-c2-dns.json")),
            ]
        )

    # Then the snapshot, the tag and the isolation were done, not only planned (the domain block is
    # skipped: the account has no DNS Firewall domain list)
    [case] = json.loads(stdout.getvalue())["cases"]
    assert status == 0
    assert {action["type"]: action["status"] for action in case["actions"]} == {
        "snapshot_volumes": "done",
        "tag_instance": "done",
        "isolate_instance": "done",
        "block_domain_dns_firewall": "skipped",
    }
    # And the case is remediated: the instance is isolated, and the domain block, which the local account
    # configures no DNS Firewall list for, is the deployment's choice, not a containment that failed
    assert case["status"] == "REMEDIATED"
    assert case["not_contained"] == []


def test_an_unknown_template_parameter_is_a_usage_error() -> None:
    with contextlib.redirect_stderr(io.StringIO()) as stderr:
        status = vtriage(
            ["run", "--parameter-overrides", "DryRn=false", str(event("synthetic-guardduty-portprobe.json"))]
        )
    assert status == 1
    assert "DryRn" in stderr.getvalue()


def test_a_guardduty_finding_seen_through_security_hub_is_acknowledged_without_a_second_case() -> None:
    # Given a GuardDuty finding as Security Hub imports it (GuardDuty's own rule delivers the original)
    document = run_pipeline(event("synthetic-securityhub-guardduty-product.json"))

    # Then it makes no case, is not a failure, and the run says why it was left alone
    assert document["cases"] == []
    assert document["failures"] == []
    [ignored] = document["ignored"]
    assert "Security Hub" in ignored["reason"]


def test_security_hub_threat_intel_of_a_custom_product_on_an_instance_waits_for_a_person() -> None:
    # Given a Security Hub C&C finding on an instance whose indicators VirusTotal flags, imported under
    # the account's own custom product (not one of AWS's integrated products)
    document = run_pipeline(event("synthetic-securityhub-threat-intel.json"))

    # Then the instance's snapshot, tag and isolation are planned, each waiting for a person (as for a
    # pushed alert), naming the product: nothing acts until a person has decided, and the case's ticket
    # opened before the first approval was asked for
    [case] = document["cases"]
    assert (case["source"], case["verdict"], case["branch"]) == ("securityhub", "malicious", "remediate")
    assert [(action["type"], action["status"]) for action in case["actions"]] == [
        ("snapshot_volumes", "pending_approval"),
        ("tag_instance", "pending_approval"),
        ("isolate_instance", "pending_approval"),
        ("block_domain_dns_firewall", "pending_approval"),
    ]
    assert all("product/123456789012/default" in action["detail"] for action in case["actions"])
    assert case["ticket"]["provider"] == "sns"
    assert case["status"] == "ENRICHED"


# ---------------------------------------------------------------- the place and identity of a finding

C2_SAMPLE = "synthetic-guardduty-backdoor-c2-dns.json"


def _run_json(*arguments: str) -> dict[str, Any]:
    """`vtriage run --json ARGUMENTS`, as a user runs it, as a document."""
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        vtriage(["run", "--json", *arguments])
    document: dict[str, Any] = json.loads(stdout.getvalue())
    return document


def _written(tmp_path: Path, name: str, document: Any) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(document), encoding="utf-8")
    return str(path)


def test_a_finding_naming_another_account_changes_nothing_with_dry_run_off_and_is_ticketed(
    tmp_path: Path,
) -> None:
    # Given the C&C sample rewritten to name an account that is not the local deployment's
    forged = json.loads(event(C2_SAMPLE).read_text(encoding="utf-8"))
    forged["detail"]["accountId"] = "999999999999"
    forged["account"] = "999999999999"

    # When it runs through the whole pipeline with DryRun=false
    document = _run_json("--parameter-overrides", "DryRun=false", _written(tmp_path, "forged.json", forged))

    # Then nothing is planned nor done, a person gets a ticket, and the case says why
    [case] = document["cases"]
    assert case["verdict"] == "malicious"
    assert case["actions"] == []
    assert (case["branch"], case["status"]) == ("ticket", "TICKETED")
    assert case["ticket"] is not None
    assert any("names account '999999999999'" in reason for reason in case["not_actionable"])
    assert case["provenance"]["channel"] == "detector"


def test_a_finding_naming_a_region_act_regions_does_not_list_changes_nothing_and_is_ticketed(
    tmp_path: Path,
) -> None:
    # Given the C&C sample rewritten to name another Region than the one the deployment acts in
    forged = json.loads(event(C2_SAMPLE).read_text(encoding="utf-8"))
    forged["detail"]["region"] = "eu-west-3"

    # When it runs with DryRun=false on a deployment restricted to its own Region (ActRegions)
    path = _written(tmp_path, "elsewhere.json", forged)
    document = _run_json(
        "--parameter-overrides", "DryRun=false", "--parameter-overrides", "ActRegions=us-east-1", path
    )

    # Then nothing is done, and the reason names the Region
    [case] = document["cases"]
    assert case["actions"] == []
    assert case["status"] == "TICKETED"
    assert any("names Region 'eu-west-3'" in reason for reason in case["not_actionable"])


def test_a_benign_document_borrowing_a_genuine_findings_id_and_version_does_not_swallow_it(
    tmp_path: Path,
) -> None:
    # Given a benign, low-severity document that borrows the C&C finding's id and updatedAt, sent first,
    # then the genuine high-severity finding
    genuine = json.loads(event(C2_SAMPLE).read_text(encoding="utf-8"))
    benign = json.loads(json.dumps(genuine))
    benign["detail"].update(
        severity=1,
        type="Recon:EC2/PortProbeUnprotectedPort",
        title="Unprotected port on EC2 instance is being probed.",
    )
    benign["detail"]["service"]["action"] = {"actionType": "PORT_PROBE"}
    first = _written(tmp_path, "benign.json", benign)
    second = str(event(C2_SAMPLE))

    # When both run through the whole pipeline on the real handlers, one after the other
    document = _run_json(first, second)

    # Then each is a case of its own under the one finding id: the genuine one is remediated (in dry
    # run, the default) and ticketed
    cases = {case["message_id"]: case for case in document["cases"]}
    benign_case, genuine_case = cases["benign.json"], cases[C2_SAMPLE]
    assert benign_case["alert_id"] == genuine_case["alert_id"] == genuine["detail"]["id"]
    assert benign_case["case_id"] != genuine_case["case_id"]
    assert genuine_case["verdict"] == "malicious"
    assert {action["type"]: action["status"] for action in genuine_case["actions"]}["isolate_instance"] == (
        "dry_run"
    )
    assert genuine_case["ticket"] is not None
    # And each case names the other
    assert genuine_case["variant_case_ids"] == [benign_case["case_id"]]
    assert benign_case["variant_case_ids"] == [genuine_case["case_id"]]
    assert document["failures"] == []


def test_a_true_redelivery_of_a_finding_stays_one_case_naming_no_other() -> None:
    # Given the C&C sample delivered twice
    document = run_pipeline(event(C2_SAMPLE), event(C2_SAMPLE))

    # Then it is one case, with the second delivery its duplicate, and no other content noted
    [case] = document["cases"]
    assert case["variant_case_ids"] == []
