"""The runner's readable report: what a sender wrote never starts a line of its own."""

from __future__ import annotations

from typing import Any

from vtriage_local.report import render

FAKE_LINK = "Approve: https://evil.example/a"
HOSTILE = f"key\r\n{FAKE_LINK}\n\u202eexe.txt"


def _document(case: dict[str, Any]) -> dict[str, Any]:
    return {
        "cases": [case],
        "failures": [],
        "ignored": [],
        "pending": [],
        "stats": {"records": 1, "findings": 1, "vt_requests": 0, "vt_cache_hits": 0, "duration_s": 1.0},
    }


def _case() -> dict[str, Any]:
    return {
        "case_id": "guardduty-0123",
        "alert_id": "finding-1",
        "source": "guardduty",
        "account": "123456789012",
        "region": "us-east-1",
        "type": "Object:S3/MaliciousFile",
        "severity": 8.0,
        "severity_label": "high",
        "verdict": "malicious",
        "branch": "remediate",
        "status": "FAILED",
        "execution_status": "SUCCEEDED",
        "iocs": [
            {
                "type": "file",
                "value": "4bc00f7d638e042da764e8648c03c0db46700599dd4f08d117e3e9e8b538519b",
                "verdict": "malicious",
                "skipped_reason": None,
                "malicious": 50,
                "suspicious": 0,
                "total": 70,
                "cached": False,
                "reasons": [f"named {HOSTILE}"],
            }
        ],
        "actions": [
            {
                "type": "quarantine_object",
                "target": f"bucket/{HOSTILE}",
                "status": "failed",
                "detail": HOSTILE,
            }
        ],
        "ticket": {"provider": "sns", "id": "msg\n" + FAKE_LINK, "url": None},
        "error": f"quarantine of s3://bucket/{HOSTILE} failed",
    }


def test_what_a_sender_wrote_is_shown_escaped_and_never_starts_a_line() -> None:
    # Given a case whose action detail, error, ticket id and IOC reason quote an S3 key with line breaks,
    # a fake approval link and a right-to-left override
    document = _document(_case())

    # When the readable report is rendered
    report = render(document)

    # Then no line starts with the sender's fake link, and neither raw line breaks nor U+202E get through
    assert not any(line.lstrip().startswith(FAKE_LINK) for line in report.splitlines())
    assert "\u202e" not in report
    assert "\r" not in report
    # and the escaped text is still there for a person to read
    assert "\\n" + FAKE_LINK in report
