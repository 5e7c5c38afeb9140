"""What a person reads: a sender's values escaped on one labelled line, vtriage's links first."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.factories import make_alert, make_case
from vtriage.approval_links import ApprovalLinks
from vtriage.display import one_line, printable
from vtriage.models import (
    Action,
    ActionStatus,
    ActionType,
    Case,
    IocOutcome,
    IocType,
    Provenance,
    Resource,
    ResourceType,
    Verdict,
)
from vtriage.report import LINKS_HEADER, REPORT_HEADER, comment_text
from vtriage.ticket import CasePageLink, approval_comment, approval_report_links, render_report

APPROVE = "https://abc.lambda-url.us-east-1.on.aws/?token=genuine-approve"
REJECT = "https://abc.lambda-url.us-east-1.on.aws/?token=genuine-reject"
CASE_PAGE = CasePageLink(
    url="https://abc.lambda-url.us-east-1.on.aws/?view=genuine-page",
    expires_at=datetime(2024, 6, 1, tzinfo=UTC),
)
FAKE_LINES = "Quarterly scan\r\n\r\nApprove: https://evil.example/approve\n  Reject: http://evil.example/x"


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("line one\nline two", "line one\\nline two"),
        ("carriage\rreturn\ttab", "carriage\\rreturn\\ttab"),
        ("nul\x00 and del\x7f", "nul\\x00 and del\\x7f"),
        ("file\u202efdp.exe", "file\\u202efdp.exe"),
        ("zero\u200bwidth, line\u2028separator", "zero\\u200bwidth, line\\u2028separator"),
        ("tag \U000e0041 character", "tag \\U000e0041 character"),
        ("see https://evil.example/a and HTTP://x", "see hxxps://evil.example/a and HxxP://x"),
        ("ftp://files.example and www.example.com", "fxp://files.example and www[.]example.com"),
        ("Café, 東京, naïve", "Café, 東京, naïve"),
    ],
)
def test_control_and_format_characters_become_visible_escapes(value: str, shown: str) -> None:
    # Given a sender's value, When it is shown, Then it is one line with every such character visible
    assert one_line(value) == shown


def test_a_long_value_is_cut_with_the_count_of_what_was_left_out() -> None:
    # Given a 1 KB S3 key full of line breaks
    key = ("uploads/2024/\n" * 80)[:1024]

    # When it is shown with a limit of 100 characters
    shown = one_line(key, limit=100)

    # Then it stays on one line, cut, and says how much is missing
    assert "\n" not in shown
    assert shown.startswith("uploads/2024/\\nuploads/2024/\\n")
    assert shown.endswith("more characters]")
    assert len(shown) < 130


def test_an_operators_value_is_kept_copyable_but_cannot_break_the_line() -> None:
    # Given the operator's VirusTotal URL and a long log path, and a value with a line break and an override
    url = "http://127.0.0.1:8443/api/v3"
    path = "/tmp/" + "nested/" * 60 + "vtriage.log"

    # When each is printed in one of vtriage's own lines
    # Then the URL and the path are whole and not defanged, so they can be copied
    assert printable(url) == url
    assert printable(path) == path
    # and a line break or a right-to-left override still shows as its escape, as one_line writes it
    assert printable("a\nb\u202ec https://x") == "a\\nb\\u202ec https://x"
    assert printable("a\nb\u202ec") == one_line("a\nb\u202ec")


def test_escaping_twice_changes_nothing() -> None:
    # Given a value escaped once (as intake keeps a skipped IOC's value)
    once = one_line("evil\n\u202ehost https://x")

    # When it is shown again, Then it reads the same
    assert one_line(once) == once


def injected_case() -> tuple[Case, ApprovalLinks]:
    """A case whose every sender-controlled field tries to start lines of its own."""
    alert = make_alert(
        id="finding\nApprove: https://evil.example/id",
        title=FAKE_LINES,
        resources=(
            Resource(
                type=ResourceType.S3_OBJECT,
                id="arn:aws:s3:::uploads/" + "a\n" * 10,
                bucket="uploads",
                key="report.pdf\nApprove: https://evil.example/key\u202e",
            ),
        ),
    )
    case = make_case(
        alert,
        verdict=Verdict.MALICIOUS,
        iocs=[
            IocOutcome(
                type=IocType.URL,
                value="https://evil.example/payload",
                found_at="detail.title",
                verdict=Verdict.MALICIOUS,
                malicious=5,
                total=90,
                reasons=["5 engines\nApprove: https://evil.example/reason"],
            ),
            IocOutcome(
                type=IocType.DOMAIN,
                value="bad\\nname",
                found_at="detail.x",
                skipped_reason="not a domain: 'bad\\nname'",
            ),
        ],
        actions=[
            Action(
                type=ActionType.QUARANTINE_OBJECT,
                target="uploads/report.pdf\nApprove: https://evil.example/target",
                status=ActionStatus.PENDING_APPROVAL,
                detail="waits\r\nReject: https://evil.example/detail",
            )
        ],
    )
    links = ApprovalLinks(approve_url=APPROVE, reject_url=REJECT, expires_at=datetime(2024, 5, 2, tzinfo=UTC))
    return case, links


def test_no_sender_value_can_start_a_line_or_come_before_the_real_links() -> None:
    # Given a case whose title, id, S3 key, IOC, reason, target and detail carry fake approval lines
    case, _ = injected_case()

    # When its report is rendered with its case page link, as its ticket opens
    text = render_report(case, case_page=CASE_PAGE).text()
    lines = text.splitlines()

    # Then it opens with vtriage's header, and the real link is the first link, under the fixed header
    assert lines[0].startswith(REPORT_HEADER)
    assert lines.index(LINKS_HEADER) < lines.index(f"Case page: {CASE_PAGE.url}")
    # And no line starts with Approve or Reject: every fake one stays on its label's line
    assert [line for line in lines if line.strip().startswith(("Approve:", "Reject:"))] == []
    # And no reader can make a link of the sender's URLs (defanged), nor reverse the text after a key
    assert "https://evil.example" not in text
    assert "Approve: hxxps://evil.example/key\\u202e" in text
    assert "\u202e" not in text
    assert "\r" not in text
    # And the title is one labelled line, escaped
    title = "Title: Quarterly scan\\r\\n\\r\\nApprove: hxxps://evil.example/approve\\n  Reject: hxxp://"
    assert title in text


def test_no_sender_value_comes_before_the_real_approval_links_on_the_ticket() -> None:
    # Given the injected case, its action waiting for a person
    case, links = injected_case()

    # When its approval links are put on its ticket, as plain text (SNS, ServiceNow, Swimlane)
    text = comment_text(approval_comment(case, 0, links), approval_report_links(links))
    lines = text.splitlines()

    # Then the real links come first, under the fixed header, and are the only lines starting so
    assert lines[:3] == [LINKS_HEADER, f"Approve: {APPROVE}", f"Reject:  {REJECT}"]
    assert [line for line in lines if line.strip().startswith(("Approve:", "Reject:"))] == lines[1:3]
    # And the sender's target and detail stay on their labelled lines, defanged
    assert "https://evil.example" not in text
    assert "Why it waits: waits\\r\\nReject: hxxps://evil.example/detail" in lines


def test_each_line_is_vtriages_label_then_the_value() -> None:
    # Given the injected case's report
    case, _ = injected_case()
    report = render_report(case, case_page=CASE_PAGE)

    # Then every line's label is vtriage's own words, never a sender's value
    labels = {line.label.strip() for line in report.lines}
    assert all("evil" not in label and "\n" not in label for label in labels)
    assert all("\n" not in line.value for line in report.lines)


def test_who_sent_a_pushed_alert_and_its_other_contents_are_shown_escaped() -> None:
    # Given a case pushed through the intake by a sender whose user agent holds a fake approval line,
    # and another content delivered under the same finding id and version
    case = make_case(
        make_alert(),
        provenance=Provenance(
            channel="intake",
            sender="arn:aws:sts::123456789012:assumed-role/forwarder/i-1",
            source_ip="203.0.113.9",
            user_agent="curl/8\nApprove: https://evil.example/ua",
        ),
        variant_case_ids=["guardduty-0123456789abcdef0123456789abcdef"],
    )

    # When its report is rendered
    lines = render_report(case).text().splitlines()

    # Then the channel and the sender are on one labelled line, the user agent escaped and defanged
    [sent] = [line for line in lines if line.startswith("  Sent through: ")]
    assert sent == (
        "  Sent through: the intake URL, signed by arn:aws:sts::123456789012:assumed-role/forwarder/i-1; "
        "from 203.0.113.9; agent curl/8\\nApprove: hxxps://evil.example/ua"
    )
    # And the other content's case is named
    assert "Same finding id and version, other content: guardduty-0123456789abcdef0123456789abcdef" in lines
