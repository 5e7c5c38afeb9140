"""`vtriage run` on findings about Lambda functions, which vtriage takes no action on: two functions
contacting the same address are two cases, each naming its function; the same function again is a repeat."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from tests.functional.conftest import load_event
from tests.functional.test_runner_accounting import run_cli
from vtriage_local.report import print_report

pytestmark = pytest.mark.functional

LAMBDA_C2 = "synthetic-guardduty-lambda-network.json"


def _on_function(tmp_path: Path, finding_id: str, function: str) -> Path:
    """The Lambda C&C sample as GuardDuty reports it under another finding id, on `function`."""
    event: dict[str, Any] = load_event(LAMBDA_C2)
    event["id"] = f"event-{finding_id}"
    event["detail"]["id"] = finding_id
    details = event["detail"]["resource"]["lambdaDetails"]
    details["functionName"] = function
    details["functionArn"] = f"arn:aws:lambda:us-east-1:123456789012:function:{function}"
    path = tmp_path / f"lambda-{finding_id}.json"
    path.write_text(json.dumps(event))
    return path


def test_two_functions_are_two_cases_and_the_same_function_again_is_a_repeat(tmp_path: Path) -> None:
    # Given GuardDuty's C&C finding on image-resizer, the same type and address on thumbnail-maker, and
    # image-resizer's again under another finding id
    files = [
        _on_function(tmp_path, "a" * 32, "image-resizer"),
        _on_function(tmp_path, "b" * 32, "thumbnail-maker"),
        _on_function(tmp_path, "c" * 32, "image-resizer"),
    ]

    # When one `vtriage run` runs them
    status, _, document = run_cli(*files)

    # Then each function has its case, naming it, and image-resizer's second finding is its repeat
    assert status == 0
    named = {
        case["subjects"][0]["name"]: [repeat["alert_id"] for repeat in case["repeats"]]
        for case in document["cases"]
    }
    assert named == {"image-resizer": ["c" * 32], "thumbnail-maker": []}
    # And the report says which function each case is about, and that vtriage takes no action on it
    shown = io.StringIO()
    print_report(document, file=shown)
    flat = " ".join(shown.getvalue().split())
    for function in ("image-resizer", "thumbnail-maker"):
        assert (
            f"resource Lambda function {function} (arn:aws:lambda:us-east-1:123456789012:function:{function})"
            " - vtriage takes no action on this kind of resource"
        ) in flat
