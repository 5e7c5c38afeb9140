"""`vtriage run` accounts for every finding of every record exactly once (a case, a repeat folded into a
case, ignored, pending or a failure), and no file crashes it: the real CLI on the local stack."""

from __future__ import annotations

import contextlib
import copy
import io
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.functional.conftest import EVENTS, event, load_event
from tests.functional.test_samples import deployed_intake
from vtriage.errors import InvalidAlertError
from vtriage.intake.body import decode_body
from vtriage_cli.main import main as vtriage
from vtriage_local.accounting import UNACCOUNTED
from vtriage_local.alert_files import read_deliveries
from vtriage_local.preflight import distinct_source_ids
from vtriage_local.report import print_report

pytestmark = pytest.mark.functional

Finding = tuple[str, str | None]  # (the record's message id, the finding's id when it has one)


def run_cli(*arguments: str | Path) -> tuple[int, str, dict[str, Any]]:
    """`vtriage run --json --verbose ARGUMENTS`: its status, its stdout, and stdout as a document."""
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(io.StringIO()):
        status = vtriage(["run", "--json", "--verbose", *map(str, arguments)])
    return status, stdout.getvalue(), json.loads(stdout.getvalue())


def findings_in_files(paths: list[Path]) -> Counter[Finding]:
    """Every finding the files hold, read as the deployed enrich function reads them; a record in which
    none can be identified (or that holds none) counts once, without an id."""
    intake = deployed_intake()
    found: Counter[Finding] = Counter()
    deliveries = distinct_source_ids([delivery for path in paths for delivery in read_deliveries(path)])
    for delivery in deliveries:
        try:
            result = intake.read(decode_body(delivery.body))
        except InvalidAlertError:
            found[(delivery.source_id, None)] += 1
            continue
        ids = [
            *(alert.id for alert in result.alerts),
            *(refusal.alert_id for refusal in result.refused),
            *(ignored.alert_id for ignored in result.ignored),
        ]
        found.update((delivery.source_id, alert_id) for alert_id in ids or [None])
    return found


def accounted(document: dict[str, Any]) -> Counter[Finding]:
    """Every finding the runner's document lists, wherever it lists it."""
    listed: Counter[Finding] = Counter()
    for case in document["cases"]:
        listed[(case["message_id"], case["alert_id"])] += 1
        listed.update((repeat["message_id"], repeat["alert_id"]) for repeat in case["repeats"])
    for key in ("ignored", "pending", "failures"):
        listed.update((entry["message_id"], entry.get("alert_id")) for entry in document[key])
    return listed


def test_every_finding_of_every_sample_and_invalid_record_is_accounted_for_exactly_once() -> None:
    # Given every file of events/, its valid samples, its invalid ones and its SQS events, in one run
    paths = sorted(EVENTS.rglob("*.json"))

    # When `vtriage run --json` runs them
    status, _, document = run_cli(*paths)

    # Then each finding of each record appears exactly once: a case, a repeat, ignored, pending or refused
    expected = findings_in_files(paths)
    assert accounted(document) == expected
    assert document["stats"]["findings"] == sum(expected.values())
    # and every failure says what was wrong, none is a finding the runner could not place
    assert document["failures"], "events/invalid holds records no pipeline can triage"
    assert all(failure["reason"] and failure["reason"] != UNACCOUNTED for failure in document["failures"])
    assert any("not JSON" in failure["reason"] for failure in document["failures"])
    # and findings delivered twice (the SQS samples repeat two of the files) are repeats of one case
    same = [repeat for case in document["cases"] for repeat in case["repeats"] if repeat["same_finding"]]
    assert len(same) >= 2
    # and refused findings make the status 2
    assert status == 2


def test_in_one_security_hub_event_a_finding_refused_alone_and_one_ignored_are_listed_beside_the_case(
    tmp_path: Path,
) -> None:
    # Given a Security Hub event holding a threat-intel finding, a copy of it that lost its Id, and a
    # GuardDuty finding seen through Security Hub (which the deployment acknowledges without a case)
    document = load_event("synthetic-securityhub-threat-intel.json")
    [finding] = document["detail"]["findings"]
    without_id = copy.deepcopy(finding)
    del without_id["Id"]
    [guardduty] = load_event("synthetic-securityhub-guardduty-product.json")["detail"]["findings"]
    document["detail"]["findings"] = [finding, without_id, guardduty]
    path = tmp_path / "synthetic-securityhub-three-findings.json"
    path.write_text(json.dumps(document))

    # When the runner runs it
    status, _, result = run_cli(path)

    # Then the first finding is a case, the second a failure at its place saying what it lacks, and the
    # third is ignored with the reason, each named by the record they came in
    [case] = result["cases"]
    assert (case["message_id"], case["alert_id"]) == (path.name, finding["Id"])
    [failure] = result["failures"]
    assert (failure["message_id"], failure["where"]) == (path.name, "detail.findings[1]")
    assert "Id" in failure["reason"]
    [ignored] = result["ignored"]
    assert (ignored["message_id"], ignored["alert_id"]) == (path.name, guardduty["Id"])
    assert "Security Hub" in ignored["reason"]
    assert accounted(result) == findings_in_files([path])
    assert status == 2


def _dns_finding(base: dict[str, Any], finding_id: str, domain: str) -> dict[str, Any]:
    finding = copy.deepcopy(base)
    finding["Id"] = finding_id
    finding["Arn"] = finding["Arn"].rsplit("/", 1)[0] + "/" + finding_id
    finding["Service"]["Action"]["DnsRequestAction"]["Domain"] = domain
    return finding


def test_more_than_a_hundred_cases_are_all_reported_each_with_the_repeats_folded_into_it(
    tmp_path: Path,
) -> None:
    # Given an SQS event of 11 get-findings records holding 105 findings on distinct domains and 5 repeats
    # of the first one (other finding ids, same instance, type and domain)
    [base] = load_event("guardduty-getfindings-trojan-droppoint-dns.json")["Findings"]
    findings = [_dns_finding(base, f"{index:032x}", f"drop{index}.3322.org") for index in range(105)]
    repeats = [_dns_finding(base, f"feed{index:028x}", "drop0.3322.org") for index in range(1, 6)]
    everything = findings + repeats
    bodies = [json.dumps({"Findings": everything[start : start + 10]}) for start in range(0, 110, 10)]
    records = [{"messageId": f"record-{index}", "body": body} for index, body in enumerate(bodies)]
    path = tmp_path / "synthetic-sqs-110-findings.json"
    path.write_text(json.dumps({"Records": records}))

    # When the runner runs it
    status, _, document = run_cli(path)

    # Then every case is reported (more than one page of executions), each execution finished
    assert sorted(case["alert_id"] for case in document["cases"]) == sorted(f["Id"] for f in findings)
    assert {case["execution_status"] for case in document["cases"]} == {"SUCCEEDED"}
    # and the first finding's case lists the five repeats folded into it, with the record each came in
    [first] = [case for case in document["cases"] if case["alert_id"] == findings[0]["Id"]]
    assert {(r["alert_id"], r["message_id"]) for r in first["repeats"]} == {
        (f["Id"], "record-10") for f in repeats
    }
    assert len(first["repeats"]) == 5
    assert [case["repeats"] for case in document["cases"] if case is not first] == [[]] * 104
    assert accounted(document) == findings_in_files([path])
    assert (document["failures"], document["pending"], status) == ([], [], 0)


def test_records_still_deferred_when_the_runner_stops_waiting_are_pending_with_exit_status_2() -> None:
    # Given a VirusTotal quota of one request a minute and three alerts with distinct IOCs
    paths = [
        event("synthetic-guardduty-iam-tor-caller.json"),
        event("synthetic-guardduty-backdoor-c2-dns.json"),
        event("synthetic-guardduty-ec2-suspicious-dns.json"),
    ]

    # When the runner does not wait for the quota to reopen
    status, _, document = run_cli(
        "--parameter-overrides", "VirusTotalQuotaPerMinute=1", "--deferred-wait-s", "0", *paths
    )

    # Then what the quota held back is listed as pending, saying why, and the status is 2
    assert document["pending"], "one request a minute cannot enrich three alerts at once"
    assert all("pending" in entry["reason"] and "quota" in entry["reason"] for entry in document["pending"])
    assert accounted(document) == findings_in_files(paths)
    assert document["failures"] == []
    assert status == 2


def test_poison_files_beside_a_genuine_alert_are_refused_alone_with_their_reasons(tmp_path: Path) -> None:
    # Given a genuine alert and files no pipeline can triage, each for its own reason
    deep = '{"Details": ' * 1200 + '"bottom"' + "}" * 1200
    poison = {
        "synthetic-not-json.json": b"{ this is not JSON",
        "synthetic-empty.json": b"",
        "synthetic-latin-1.json": '{"detail": "caf\u00e9"}'.encode("latin-1"),
        "synthetic-nested-1200-deep.json": (
            '{"Findings": [{"Id": "deep", "Resources": [{"Type": "Other", "Details": ' + deep + "}]}]}"
        ).encode(),
        "synthetic-sqs-lone-surrogate-body.json": b'{"Records": [{"messageId": "m-1", "body": "\\udc00{}"}]}',
        "synthetic-sqs-no-records.json": b'{"Records": []}',
    }
    for name, content in poison.items():
        (tmp_path / name).write_bytes(content)
    genuine = event("synthetic-guardduty-iam-tor-caller.json")
    # and a genuine alert whose title's escape decodes to a lone surrogate: that costs only the value
    surrogate = tmp_path / "synthetic-guardduty-c2-dns-lone-surrogate-title.json"
    c2_text = event("synthetic-guardduty-backdoor-c2-dns.json").read_text()
    surrogate.write_text(c2_text.replace('"title": "', '"title": "\\ud800', 1))
    paths = [*sorted(tmp_path.iterdir()), genuine]

    # When the runner runs them together
    status, stdout, document = run_cli(*paths)

    # Then stdout is one JSON document, the genuine alerts are cases, and each poison record one failure
    assert json.loads(stdout) == document
    assert sorted(case["message_id"] for case in document["cases"]) == sorted([genuine.name, surrogate.name])
    [kept] = [case for case in document["cases"] if case["message_id"] == surrogate.name]
    assert kept["title"].startswith("\ufffd")
    reasons = {failure["message_id"]: failure["reason"] for failure in document["failures"]}
    # (the SQS event's record is named by its messageId, as SQS names it)
    assert sorted(reasons) == sorted({*poison, "m-1"} - {"synthetic-sqs-lone-surrogate-body.json"})
    assert "not JSON" in reasons["synthetic-not-json.json"]
    assert "empty" in reasons["synthetic-empty.json"]
    assert "not UTF-8" in reasons["synthetic-latin-1.json"]
    assert "nested deeper" in reasons["synthetic-nested-1200-deep.json"]
    assert "surrogate" in reasons["m-1"]
    assert "without records" in reasons["synthetic-sqs-no-records.json"]
    assert accounted(document) == findings_in_files(paths)
    assert status == 2
    # and the readable report of the same run names each of them, with nothing a terminal cannot show
    printed = io.StringIO()
    print_report(document, file=printed)
    report = printed.getvalue()
    assert all(line.isprintable() for line in report.splitlines())
    assert all(message_id in report for message_id in reasons)


def test_alerts_on_two_instances_that_share_a_private_address_both_run(tmp_path: Path) -> None:
    # Given the C&C sample, and a second finding on another instance of the same VPC with the same private
    # address (two VPCs can reuse a range; moto refuses a second holder of an address in one subnet)
    other = load_event("synthetic-guardduty-backdoor-c2-dns.json")
    other["id"] = other["detail"]["id"] = "0" * 31 + "1"
    details = other["detail"]["resource"]["instanceDetails"]
    details["instanceId"] = "i-0aaaaaaaaaaaaaaa1"
    details["networkInterfaces"][0]["networkInterfaceId"] = "eni-0aaaaaaaaaaaaaaa1"
    path = tmp_path / "synthetic-guardduty-backdoor-c2-dns-second-instance.json"
    path.write_text(json.dumps(other))

    # When both run with remediation acting for real
    status, _, document = run_cli(
        "--parameter-overrides", "DryRun=false", event("synthetic-guardduty-backdoor-c2-dns.json"), path
    )

    # Then neither crashes the run: both instances are mirrored and isolated
    isolated = sorted(
        action["target"]
        for case in document["cases"]
        for action in case["actions"]
        if action["type"] == "isolate_instance" and action["status"] == "done"
    )
    assert isolated == ["i-0aaaaaaaaaaaaaaa1", "i-0b3f6c2d9e1a47c58"]
    assert (document["failures"], status) == ([], 0)


def test_a_folder_given_as_a_file_is_a_usage_error_that_names_it(tmp_path: Path) -> None:
    # Given a folder among the files, When the runner is called, Then it says so and exits 1
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        status = vtriage(["run", str(tmp_path), str(event("synthetic-guardduty-portprobe.json"))])
    assert status == 1
    assert f"{tmp_path} is a directory" in stderr.getvalue()


CORPUS = Path(__file__).resolve().parents[1] / "corpus"


def test_a_cases_sample_flag_notes_and_reasons_against_action_are_in_the_json_and_the_report() -> None:
    # Given real documents: GuardDuty's generated IAM sample, QRadar's offense as OCSF (no severity, so
    # critical is a guess) and a hand-written AccessKeyLeak event without `service`
    sample = CORPUS / "gd-automated-response__guardduty_iam_event.json"
    guessed = CORPUS / "ocsf-examples__qradar_offense.json"
    no_service = CORPUS / "soar-lab__readme_accesskeyleak_test_event.json"

    # When the runner runs them
    _, _, document = run_cli(sample, guessed, no_service)

    # Then each case says in the JSON what intake found: a sample, its notes, why it is not acted on
    cases = {case["message_id"]: case for case in document["cases"]}
    assert {"sample", "notes", "not_actionable"} <= set(cases[sample.name])
    assert cases[sample.name]["sample"] is True
    assert (
        "a GuardDuty sample finding (service.additionalInfo.sample)" in cases[sample.name]["not_actionable"]
    )
    assert cases[guessed.name]["sample"] is False
    assert (
        "severity_id: missing; severity guessed: scored critical so that a person sees it"
        in cases[guessed.name]["notes"]
    )
    assert cases[no_service.name]["not_actionable"] == ["detail.service: missing"]
    # and the readable report shows them, each on lines of its own after its label
    printed = io.StringIO()
    print_report(document, file=printed)
    report = printed.getvalue()
    lines, flat = report.splitlines(), " ".join(report.split())
    assert "   sample    generated by its detector to test a pipeline; never acted on" in lines
    assert "severity 9 critical (guessed: see the notes)" in flat
    assert "   not acted detail.service: missing" in lines
    assert any(line.startswith("   note      detail.service: missing; the detection") for line in lines)
    assert (
        "note detail.service: missing; the detection (action, evidence, sample flag) is unknown:"
        " no IOC is read from it"
    ) in flat


def test_a_get_findings_page_with_no_finding_is_ignored_and_counted_as_a_record_without_one(
    tmp_path: Path,
) -> None:
    # Given the GuardDuty API's GetFindings response with no finding (as elastic/integrations' GuardDuty
    # pipeline test data holds one), beside a file that is not JSON
    empty = tmp_path / "guardduty-empty-page.json"
    empty.write_text('{"findings":[]}', encoding="utf-8")
    notes = tmp_path / "notes.txt"
    notes.write_text("not an alert", encoding="utf-8")

    # When `vtriage run` runs the empty page alone, then beside the other file
    status, _, document = run_cli(empty)
    _, _, both = run_cli(empty, notes)

    # Then the page is ignored saying it holds no finding: nothing refused, no case, status 0
    assert status == 0
    assert (document["cases"], document["failures"]) == ([], [])
    [ignored] = document["ignored"]
    assert (ignored["message_id"], ignored["where"]) == ("guardduty-empty-page.json", "findings")
    assert "findings is empty: a page of get-findings with no finding" in ignored["reason"]
    # and the figures count it as a record with no finding, not as a finding
    assert (document["stats"]["records"], document["stats"]["records_without_findings"]) == (1, 1)
    # and the file that is not JSON is one refused record, counted beside it the same way
    assert [failure["message_id"] for failure in both["failures"]] == ["notes.txt"]
    assert (
        both["stats"]["records"],
        both["stats"]["findings"],
        both["stats"]["records_without_findings"],
    ) == (
        2,
        2,
        2,
    )
