"""The runner's readable report (`vtriage run` without --json) and the case table it shares with
`vtriage cases`: the banner, one row per case, each case's details, the counts, 80 columns, and what a
sender wrote shown as written, never interpreted by the terminal or by rich."""

from __future__ import annotations

import io
import re
from typing import Any

from rich.console import Console

from vtriage.models import Subject
from vtriage_local.report import ONLY_VALUES, print_report, report, something_failed
from vtriage_local.terminal import CaseRow, case_table, main_resource, plain_text

FAKE_LINK = "Approve: https://evil.example/a"
HOSTILE = f"key\r\n{FAKE_LINK}\n\u202eexe.txt"
C2_LINK = "https://www.virustotal.com/gui/domain/tawuhoju.com"
FILE_LINK = (
    "https://www.virustotal.com/gui/file/"
    + "4bc00f7d638e042da764e8648c03c0db46700599dd4f08d117e3e9e8b538519b"
)


def _printed(document: dict[str, Any], log_path: str | None = None, only: set[str] | None = None) -> str:
    """The report as `vtriage run` prints it when its output is not a terminal (a file, a pipe)."""
    output = io.StringIO()
    print_report(document, log_path, only or (), file=output)
    return output.getvalue()


def _document(*cases: dict[str, Any], virustotal: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "cases": list(cases),
        "failures": [],
        "ignored": [],
        "pending": [],
        "stats": {"records": 1, "findings": 1, "vt_requests": 0, "vt_cache_hits": 0, "duration_s": 1.0},
        "virustotal": virustotal or {"mode": "replay", "base_url": None, "recordings": "r", "bundled": True},
    }


def _ioc(**fields: Any) -> dict[str, Any]:
    return {
        "type": "domain",
        "value": "tawuhoju.com",
        "verdict": "malicious",
        "skipped_reason": None,
        "malicious": 6,
        "suspicious": 0,
        "total": 93,
        "cached": False,
        "reasons": ["malicious [engine-count]: 6 of 93 engines flag it as malicious (domain threshold 3)"],
        "link": C2_LINK,
        "found_at": "service.action.dnsRequestAction.domain",
    } | fields


def _case(**fields: Any) -> dict[str, Any]:
    """The C&C sample's case as the runner's JSON lists it, with any field overridden."""
    return {
        "case_id": "guardduty-77d095ecdc87e7ac93b3de4df165850d",
        "message_id": "synthetic-guardduty-backdoor-c2-dns.json",
        "alert_id": "963561db131bebb39f8f302239bf6f13",
        "source": "guardduty",
        "account": "123456789012",
        "region": "us-east-1",
        "type": "Backdoor:EC2/C&CActivity.B!DNS",
        "title": "Command and Control server domain name queried by EC2 instance i-0b3f6c2d9e1a47c58.",
        "resources": [{"type": "instance", "id": "i-0b3f6c2d9e1a47c58"}],
        "severity": 8,
        "severity_label": "high",
        "verdict": "malicious",
        "branch": "remediate",
        "status": "TICKETED",
        "execution_arn": "arn:aws:states:us-east-1:123456789012:execution:TriageStateMachine:x",
        "execution_status": "SUCCEEDED",
        "iocs": [_ioc()],
        "actions": [
            {
                "type": "isolate_instance",
                "target": "i-0b3f6c2d9e1a47c58",
                "status": "dry_run",
                "detail": "dry run, nothing changed: would move eni-0f4a2b7c9d1e3a865",
                "account": "123456789012",
                "region": "us-east-1",
            }
        ],
        "ticket": {"provider": "sns", "id": "VT-777D6AA551", "url": None},
        "error": None,
        "not_actionable": [],
        "sample": False,
        "notes": [],
        "repeats": [],
    } | fields


def _hostile_case() -> dict[str, Any]:
    return _case(
        type="Object:S3/MaliciousFile",
        status="FAILED",
        iocs=[
            _ioc(
                type="file",
                value="4bc00f7d638e042da764e8648c03c0db46700599dd4f08d117e3e9e8b538519b",
                reasons=[f"named {HOSTILE}"],
                link=FILE_LINK,
            )
        ],
        actions=[
            {
                "type": "quarantine_object",
                "target": f"bucket/{HOSTILE}",
                "status": "failed",
                "detail": HOSTILE,
            }
        ],
        ticket={"provider": "sns", "id": "msg\n" + FAKE_LINK, "url": None},
        error=f"quarantine of s3://bucket/{HOSTILE} failed",
    )


def _flat(text: str) -> str:
    """The text with its wrapping undone: what it says, whatever the width."""
    return " ".join(text.split())


def test_what_a_sender_wrote_is_shown_escaped_and_never_starts_a_line() -> None:
    # Given a case whose action detail, error, ticket id and IOC reason quote an S3 key with line breaks,
    # a fake approval link and a right-to-left override
    document = _document(_hostile_case())

    # When the readable report is rendered
    shown = _printed(document)

    # Then no line starts with the sender's fake approval, its link is defanged (no reader makes it a link),
    # and neither raw line breaks nor U+202E get through
    assert not any(line.lstrip().startswith("Approve:") for line in shown.splitlines())
    assert "https://evil.example" not in shown
    assert "\u202e" not in shown
    assert "\r" not in shown
    # and the escaped text is still there for a person to read
    assert "\\nApprove: hxxps://evil.example/a\\n\\u202eexe.txt" in _flat(shown)


def test_markup_and_terminal_codes_in_a_title_are_shown_as_written_never_interpreted() -> None:
    # Given a finding whose title holds rich markup, an emoji code and a terminal escape that clears the
    # screen, and whose resource holds a bell
    title = "[bold red]Approved[/bold red] [link=https://evil.example]here[/link] :warning: \x1b[2J done"
    case = _case(title=title, resources=[{"type": "instance", "id": "i-1\x07"}])

    # When the report is printed on a colour terminal, and as plain text
    terminal = io.StringIO()
    colour = Console(file=terminal, force_terminal=True, color_system="truecolor", width=200)
    for renderable in report(_document(case), width=200):
        colour.print(renderable)
    # (200 columns, so that the title fits one line: at 80 the table wraps it across its rows)
    plain = plain_text(report(_document(case), width=200), 200)

    # Then the markup and the emoji code are shown literally, the escape and the bell as visible escapes,
    # in the table and in the details
    osc8 = re.compile(r"\x1b\]8;[^;\x1b]*;([^\x1b]*)\x1b\\")
    without_codes = osc8.sub("", re.sub(r"\x1b\[[0-9;]*m", "", terminal.getvalue()))
    for shown in (plain, without_codes):
        assert (
            shown.count("[bold red]Approved[/bold red] [link=hxxps://evil.example]here[/link] :warning:") == 2
        )
        assert "\\x1b[2J done" in shown
        assert "i-1\\x07" in shown
    # and the terminal gets no code but rich's colours and one link, vtriage's to VirusTotal
    assert "\x1b" not in without_codes
    assert "\x07" not in without_codes
    assert {target for target in osc8.findall(terminal.getvalue()) if target} == {C2_LINK}


def test_the_table_has_one_row_per_case_with_verdict_branch_status_title_resource_and_iocs() -> None:
    # Given a malicious case on an instance and an unknown one without a resource
    canary = _case(
        case_id="guardduty-6837268738812d890b1f2a763a749b51",
        title="Canary:EC2/Stateless.IntegTest",
        resources=[],
        verdict="unknown",
        branch="ticket",
        iocs=[_ioc(value="0.0.0.0", skipped_reason="unspecified address", verdict="unknown"), _ioc()],
        actions=[],
    )
    document = _document(_case(), canary)

    # When the report is rendered
    lines = _printed(document).splitlines()

    # Then the table's rows follow its header, one per case, in order: number, verdict, branch, status,
    # title (cut to fit), resource and IOC count
    header = next(index for index, line in enumerate(lines) if line.split()[:3] == ["#", "verdict", "branch"])
    assert lines[header].split() == ["#", "verdict", "branch", "status", "title", "resource", "IOCs"]
    first, second = lines[header + 2], lines[header + 3]
    assert first.split()[:4] == ["1", "malicious", "remediate", "TICKETED"]
    assert "Command and Control" in first
    assert "i-0b3f6c2d9e1a47c58" in first
    assert first.endswith(" 1")
    assert second.split()[:4] == ["2", "unknown", "ticket", "TICKETED"]
    assert "Canary:EC2/Stateless" in second
    assert second.split()[-2:] == ["-", "2"]


def test_each_case_is_detailed_with_its_finding_place_and_each_iocs_verdict_reasons_and_link() -> None:
    # Given the C&C case
    shown = _printed(_document(_case()))
    flat = _flat(shown)

    # Then below the table it has its title, type, resource, account and Region, and its IOC with its
    # verdict, its counts, its reasons and its VirusTotal link whole on a line, and its action
    assert "1. Command and Control server domain name queried by EC2 instance i-0b3f6c2d9e1a47c58." in flat
    assert "finding Backdoor:EC2/C&CActivity.B!DNS, guardduty, severity 8 high" in flat
    assert "resource instance i-0b3f6c2d9e1a47c58" in flat
    assert "where account 123456789012, Region us-east-1" in flat
    assert "IOC domain tawuhoju.com malicious 6 malicious, 0 suspicious of 93 engines" in flat
    assert "6 of 93 engines flag it as malicious (domain threshold 3)" in flat
    assert C2_LINK in [line.strip() for line in shown.splitlines()]
    assert "action isolate_instance i-0b3f6c2d9e1a47c58 -> dry_run" in flat
    assert "ticket sns VT-777D6AA551" in flat


def test_printed_to_a_file_the_report_is_ascii_and_every_line_fits_80_bytes_but_a_link_alone() -> None:
    # Given the C&C sample's case and cases like the demo's others: a file IOC with a 100-character link
    # and one known by its md5 (a 68-character link), a Falcon alert with its console link, a title cut
    # in the table, a title in another script, and a Security Hub finding refused for its shape
    md5 = "546bb6ef89bebfb053999777f6930d7e"
    md5_link = f"https://www.virustotal.com/gui/file/{md5}"
    console = "https://falcon.us-2.crowdstrike.com/activity-v2/detections/" + "ab12" * 3
    s3_malware = _case(
        title="Malware Protection for S3 found a malicious file in the bucket vtriage-demo-uploads.",
        iocs=[_ioc(type="file", value=md5, link=md5_link)],
    )
    endpoint = _case(
        title="Détection: processus malveillant lancé",
        vendor={"platform": "CrowdStrike Falcon", "product": "FalconInsight", "console_url": console},
    )
    document = _document(_case(), _hostile_case(), s3_malware, endpoint)
    document["failures"] = [
        {
            "message_id": "alerts.json",
            "reason": "unknown shape: expected an EventBridge event (GuardDuty, Security Hub), ..., "
            "a Google Workspace Alert Center alert (alerts.list output, a Pub/Sub push); "
            "got keys ['findings']",
        }
    ]

    # When `vtriage run` prints it to a file, as it does whenever its output is not a terminal
    printed = _printed(document)
    lines = printed.splitlines()

    # Then it is ASCII (a tool counting bytes, as Debian's awk does, counts its characters), and every
    # line fits 80 columns but a link longer than that, alone on its line, unindented and whole
    assert printed.isascii()
    longer = [line for line in lines if len(line.encode("utf-8")) > 80]
    assert longer == [FILE_LINK]
    assert all(re.fullmatch(r"https://\S+", line) for line in longer)
    # and a shorter link, with its indent, still fits: the md5's and the console's
    assert any(line.strip() == md5_link and len(line) <= 80 for line in lines)
    assert any(line.strip() == console and len(line) <= 80 for line in lines)
    # and the C&C case shows its title and its IOC's VirusTotal link
    assert "1. Command and Control server domain name queried by EC2 instance i-0b3f6c2d9e1a47c58." in _flat(
        printed
    )
    assert C2_LINK in [line.strip() for line in lines]
    # and the title in another script is shown escaped, as a control character is
    assert "D\\xe9tection: processus malveillant lanc\\xe9" in printed


def test_on_a_terminal_the_report_keeps_the_characters_of_another_script() -> None:
    # Given a case whose title is in French
    case = _case(title="Détection: processus malveillant lancé")

    # When the report is drawn for a terminal
    terminal = io.StringIO()
    colour = Console(file=terminal, force_terminal=True, color_system=None, width=100)
    for renderable in report(_document(case), width=100):
        colour.print(renderable, crop=False)

    # Then the title is shown as written
    assert "1. Détection: processus malveillant lancé" in terminal.getvalue()


def test_an_id_a_key_or_a_path_longer_than_its_line_stays_whole_on_a_line_of_its_own() -> None:
    # Given the demo's long words: a Security Hub finding's ARN as the alert's id, an S3 object whose key
    # fills a line as an action's target, a GuardDuty finding seen through Security Hub, acknowledged with
    # its ARN, and a long path to the functions' logs
    finding_arn = (
        "arn:aws:securityhub:us-east-1:111111111111:subscription/aws-foundational-security-best-practices"
        "/v/1.0.0/EC2.7/finding/0003b335-cf3f-4f93-a025-6b1a7baced06"
    )
    guardduty_arn = (
        "arn:aws:guardduty:us-east-1:123456789012:detector/c2db5b53828d466d95f96fc901f93832"
        "/finding/2e7b9c4d1f6a8e3b5c0d2f4a6b8c1e3d"
    )
    target = "s3://vtriage-demo-uploads-123456789012/incoming/2025/03/remittance-advice.dll"
    quarantine = {
        "type": "quarantine_object",
        "target": target,
        "status": "skipped",
        "detail": "not quarantined: no quarantine bucket is configured",
    }
    document = _document(_case(alert_id=finding_arn, actions=[quarantine]))
    document["ignored"] = [
        {
            "message_id": "synthetic-securityhub-guardduty-product.json",
            "where": "detail.findings[0]",
            "alert_id": guardduty_arn,
            "reason": "a GuardDuty finding seen through Security Hub",
        }
    ]
    log = "/tmp/" + "d" * 90 + "/vtriage-x.log"

    # When the report is printed to a file, with the path of the functions' logs kept
    lines = _printed(document, log_path=log).splitlines()

    # Then each is whole, never split, on a line of its own (nothing before it, nothing glued to it),
    # and every other line fits 80 columns
    for word in (finding_arn, guardduty_arn, log):
        assert word in lines
    assert any(line.strip() == target for line in lines)
    assert [line for line in lines if len(line) > 80] == [finding_arn, guardduty_arn, log]
    # and what each is stays said: the alert's label, the action and its status, the finding's id
    flat = _flat("\n".join(lines))
    assert f"alert {finding_arn}" in flat
    assert f"action quarantine_object {target} -> skipped" in flat
    ignored = f"detail.findings[0]: a GuardDuty finding seen through Security Hub finding {guardduty_arn}"
    assert ignored in flat
    assert f"function logs: {log}" in flat


def test_a_long_reason_keeps_its_end_and_long_text_wraps_at_spaces() -> None:
    # Given a record refused with a reason of 2,600 characters whose end says what the file held, and a
    # case with a title of 50 words
    reason = "unknown shape: expected " + "one of the shapes, " * 135 + "got keys ['findings']"
    document = _document(_case(title="word " * 50, alert_id="y" * 300))
    document["failures"] = [{"message_id": "alerts.json", "reason": reason}]

    # When the report is printed to a file
    lines = _printed(document).splitlines()
    flat = _flat("\n".join(lines))

    # Then the reason keeps its start and its end, and says how much was left out between
    assert "alerts.json: unknown shape: expected one of the shapes," in flat
    assert flat.count("got keys ['findings']") == 1
    assert "characters left out] ..." in flat
    # and the title wraps at its spaces, within 80 columns, while the 300-character id stays whole
    assert [line for line in lines if len(line) > 80] == ["y" * 300]
    assert "1. " + " ".join(["word"] * 50) + " finding" in flat


def test_the_dry_run_hint_says_where_approval_links_go_by_default() -> None:
    # Given a dry-run case
    shown = _flat(_printed(_document(_case())))

    # Then the hint says the approve and reject links go to the approvals topic, and onto the ticket only
    # with ApprovalLinksInTickets=true (decision 0020: a ticket carries no link that decides by default)
    assert "links (signed, expiring, single-use) go to the approvals topic" in shown
    assert "the ticket carries the links too only with ApprovalLinksInTickets=true" in shown
    assert "ticket topic then gets" not in shown


def test_the_counts_by_verdict_branch_and_status_end_the_report_with_the_runs_figures() -> None:
    # Given three cases, one of them FAILED
    document = _document(
        _case(),
        _hostile_case(),
        _case(verdict="unknown", branch="close", status="CLOSED", iocs=[], actions=[]),
    )

    # When the report is rendered
    lines = _printed(document).splitlines()

    # Then its last lines count them by verdict, branch and status, then give the run's figures
    assert "verdicts: 2 malicious, 1 unknown" in lines
    assert "branches: 2 remediate, 1 close" in lines
    assert "statuses: 1 TICKETED, 1 CLOSED, 1 FAILED" in lines
    assert lines[-2].startswith("3 case(s), 0 repeat(s), 0 ignored, 0 pending, 0 refused")
    assert something_failed(document)


def test_the_banner_says_whether_virustotal_was_replayed_or_live() -> None:
    # Given a replayed run and a live one
    replayed = _printed(_document(_case()))
    live = _printed(
        _document(
            _case(),
            virustotal={"mode": "live", "base_url": "https://www.virustotal.com/api/v3", "recordings": None},
        )
    )

    # Then the first line says which
    assert replayed.splitlines()[0].startswith("VirusTotal: replayed from recordings")
    assert "no request left this machine" in _flat(replayed)
    assert (
        live.splitlines()[0] == "VirusTotal: LIVE, https://www.virustotal.com/api/v3 (the key in VT_API_KEY)"
    )


def test_only_keeps_the_cases_of_the_named_verdicts_or_statuses_and_the_counts_stay_the_runs() -> None:
    # Given a malicious ticketed case, a FAILED one and a harmless closed one
    closed = _case(title="Nothing to see", verdict="harmless", branch="close", status="CLOSED", actions=[])
    document = _document(_case(), _hostile_case(), closed)

    # When the report keeps only the failed ones, then the harmless ones or the failed ones
    failed = _printed(document, only={"failed"})
    either = _printed(document, only={"harmless", "failed"})

    # Then each shows the cases kept, numbered as in the run, and counts every case of the run
    assert "2. " in failed
    assert "1. Command and Control" not in failed
    assert "Nothing to see" not in failed
    assert "Showing 1 of 3 case(s) (--only failed)" in failed
    assert "statuses: 1 TICKETED, 1 CLOSED, 1 FAILED" in failed
    assert "2. " in either
    assert "3. Nothing to see" in either
    assert "1. Command and Control" not in either
    assert set(ONLY_VALUES) >= {"malicious", "suspicious", "harmless", "unknown", "failed", "ticketed"}


def test_the_local_report_never_suggests_a_rollback_it_cannot_do() -> None:
    # Given a dry-run case and a case whose isolation was done (acting for real, locally)
    done = _case(
        actions=[{**_case()["actions"][0], "status": "done", "detail": "moved"}], status="REMEDIATED"
    )
    shown = _printed(_document(_case(), done))

    # Then the report says how to let remediation act, and never names `vtriage rollback`: the local
    # stack is gone once the run ends
    assert "DryRun=false" in shown
    assert "rollback" not in shown


def test_the_table_follows_the_width_it_is_given() -> None:
    # Given a case whose title is longer than an 80-column row leaves it
    row = CaseRow(
        number=1,
        verdict="suspicious",
        branch="ticket",
        status="PENDING_ENRICHMENT",
        title="Data exfiltration through DNS queries from EC2 instance i-07d1e9a4c3b2f5086.",
        resource=main_resource([("s3_bucket", "uploads"), ("s3_object", "uploads/incoming/dropper.dll")]),
        iocs=12,
    )

    # When the table is drawn 80 and 160 columns wide
    narrow = plain_text([case_table([row], 80)], 80).splitlines()
    wide = plain_text([case_table([row], 160)], 160).splitlines()

    # Then at 80 the title is cut with "...", at 160 it is whole; the resource named is the object
    # (the most specific), with the count of the others; the header's rule is ASCII
    assert max(map(len, narrow)) <= 80
    assert "Data exfiltrati..." in narrow[2]
    assert set(narrow[1]) == {"-"}
    assert row.title in wide[2]
    assert "uploads/incoming/dropper.dll +1" in wide[2]
    assert wide[2].split()[-1] == "12"


def test_only_matching_no_case_prints_nothing_about_the_actions_of_the_cases_not_shown() -> None:
    # Given a run whose one case is malicious, ticketed, its actions planned in dry-run mode
    document = _document(_case())

    # When the report keeps only the failed cases, of which there are none
    shown = _flat(_printed(document, only={"failed"}))

    # Then it says no case is failed, says nothing of the dry-run actions of the case it does not show,
    # and still counts the run's case
    assert "No case is failed (--only)." in shown
    assert "dry-run" not in shown
    assert "Showing 0 of 1 case(s) (--only failed)" in shown
    # while the same run's report unfiltered explains them
    assert "Remediation ran in dry-run mode" in _flat(_printed(document))


def test_a_record_with_no_finding_identified_is_counted_as_a_record_not_as_a_finding() -> None:
    # Given a run of one record that is not JSON: one refusal, standing for the record, no finding
    document = _document()
    document["failures"] = [{"message_id": "notes.txt", "reason": "not JSON (Expecting value)"}]
    document["stats"].update(findings=1, records_without_findings=1)

    # When the report is rendered, Then its figures count the record apart from the findings
    assert (
        "0 case(s), 0 repeat(s), 0 ignored, 0 pending, 1 refused, of 0 finding(s) and 1 record(s) with no "
        "finding identified, in 1 record(s)"
    ) in _flat(_printed(document))
    # and a run of findings only reads as before
    assert "of 1 finding(s) in 1 record(s);" in _flat(_printed(_document(_case())))


IMAGE_RESIZER = {
    "type": "Lambda",
    "id": "arn:aws:lambda:us-east-1:123456789012:function:image-resizer",
    "name": "image-resizer",
}


def test_a_case_on_a_lambda_function_names_it_in_its_row_and_says_vtriage_takes_no_action_on_it() -> None:
    # Given the Lambda C&C sample's case as the runner's JSON lists it: no resource, one subject
    lambda_case = _case(
        type="Backdoor:Lambda/C&CActivity.B",
        title="Lambda function image-resizer is querying an IP address",
        resources=[],
        subjects=[IMAGE_RESIZER],
        branch="ticket",
        actions=[],
    )

    # When the report is rendered, wide enough for the whole row, and at 80 columns
    wide = plain_text(report(_document(lambda_case), width=140), width=140)
    shown = _printed(_document(lambda_case))

    # Then its row names the function in words, and its details say which function and that vtriage takes
    # no action on it
    [row] = [line for line in wide.splitlines() if line.split()[:2] == ["1", "malicious"]]
    assert row.split()[-4:] == ["Lambda", "function", "image-resizer", "1"]
    assert (
        "resource Lambda function image-resizer"
        " (arn:aws:lambda:us-east-1:123456789012:function:image-resizer)"
        " - vtriage takes no action on this kind of resource"
    ) in _flat(shown)


def test_a_subject_beside_resources_and_a_case_about_neither() -> None:
    # Given the rows' resource cells of a finding on an instance, on two functions, and on nothing
    resize = Subject.model_validate(IMAGE_RESIZER)
    thumbs = Subject(type="Lambda", id="arn:aws:lambda:us-east-1:123456789012:function:thumbs", name="thumbs")

    # When each is chosen
    # Then a resource comes first, then the first subject with how many others, else "-"
    assert main_resource([("instance", "i-0b3f6c2d9e1a47c58")], [resize]) == "i-0b3f6c2d9e1a47c58"
    assert main_resource([], [resize, thumbs]) == "Lambda function image-resizer +1"
    assert main_resource([], []) == "-"


def test_a_vendor_alerts_users_are_shown_whole_as_many_as_fit_then_how_many_more() -> None:
    # Given a Google Workspace case about fifty users (the runner's JSON keeps them all), and one about
    # 600, of which the case keeps 500
    users = [f"user{index:02}@corp-example.org" for index in range(50)]
    vendor = {"platform": "Google Workspace", "product": "Google Operations", "tenant": "02umwv6u"}
    fifty = _case(vendor={**vendor, "user": ", ".join(users[:10]) + " and 40 more", "users": users})
    many = [f"user{index:03}@corp-example.org" for index in range(500)]
    six_hundred = _case(vendor={**vendor, "user": "...", "users": many, "users_left_out": 100})

    # When `vtriage run` prints them
    printed = _flat(_printed(_document(fifty, six_hundred)))

    # Then each vendor line names whole users, then counts every other one the alert names; none is cut in
    # its middle
    assert "characters]" not in printed
    shown_users = re.findall(
        r"user (user\d+@corp-example\.org(?:, user\d+@corp-example\.org)*) and (\d+) more", printed
    )
    assert len(shown_users) == 2
    for (listed, more), total in zip(shown_users, (50, 600), strict=True):
        names = listed.split(", ")
        assert len(names) >= 5
        assert len(names) + int(more) == total
