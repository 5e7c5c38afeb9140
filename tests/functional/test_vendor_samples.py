"""Real CrowdStrike Falcon and Google Workspace alerts through the whole local pipeline, as a new user runs
them: `vtriage run --json` on files of tests/corpus. Each becomes a case with the IOCs an analyst looks
up, is ticketed when its severity says so, and gets no AWS action, saying why."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pytest

from vtriage_cli.main import main as vtriage
from vtriage_local.report import print_report

pytestmark = pytest.mark.functional

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
FALCON_ENDPOINT = CORPUS / "elastic-integrations__crowdstrike_alert_test-alert_1.json"
FALCON_STREAM = CORPUS / "elastic-integrations__crowdstrike_falcon_test-falcon-epp-detection-summary_2.json"
WORKSPACE_ALLOW_LIST = CORPUS / "elastic-integrations__google_workspace_alert_test-alert_3.json"
WORKSPACE_PUSHED = CORPUS / "synthetic-workspace-pubsub-push-badwhitelist.json"

# The Pub/Sub notification of the allow-list alert: the same alert, so one of the two is folded into the
# other's case as a repeat.
NOTIFICATION_ID = "9876543210987654"
WORKSPACE_ID = "91840a82-3af0-46d7-95ec-625c1cf0c3f7"
ENDPOINT_ID = "92012896127c4a8236ba7601b886b0:ind:2ce412d17b334ad4adc8c1c54dbfec4b:399748687993-5761-42627600"
# alert id -> (source, the IOCs looked up, ticketed?)
EXPECTED: dict[str, tuple[str, set[tuple[str, str]], bool]] = {
    ENDPOINT_ID: (
        "falcon",
        {
            ("file", "b26a6791b72753d2317efd5e1363d93fdd33e611c8b9e08a3b24ea4d755b81fd"),
            ("file", "0b25d56bd2b4d8a6df45beff7be165117fbf7ba6ba2c07744f039143866335e4"),
            ("file", "caef4ae19056eeb122a0540508fa8984cea960173ada0dc648cb846d6ef5dd33"),
            ("ip", "81.2.69.142"),
        },
        False,  # Low, and nothing VirusTotal incriminates: closed, its record kept
    ),
    "44be50f58ccfcfcfcfcfcfcfcffc:ind:c8d1292a8a904216aa25ab728f4b45fd:11111111111-2222-3333333": (
        "falcon",
        {
            ("file", "29aa689f38158d2e8941fa54e436f0260890af31cecad1e8799e5c2df7bc1ecc"),
            ("url", "https://github.com/redcanaryco/atomic-red-team.git"),
        },
        True,  # High: a person sees it
    ),
    WORKSPACE_ID: (
        "workspace",
        {
            ("file", "50d858e0985ecc7f60418aaf0cc5ab587f42c2570a884095a9e8ccacd0f6545c"),
            ("file", "228b48a56dbc2ecf10393227ac9c9dc943881fd7a55452e12a09107476bef2b2"),
            ("domain", "sales.com"),
            ("ip", "89.160.20.128"),
        },
        True,
    ),
}


def run_json(*paths: Path) -> tuple[int, dict[str, Any]]:
    """`vtriage run --json FILES`, as a user types it: its exit status and its JSON document."""
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(io.StringIO()):
        status = vtriage(["run", "--json", *map(str, paths)])
    return status, json.loads(stdout.getvalue())


def test_falcon_and_workspace_alerts_become_cases_with_their_iocs_and_no_aws_action() -> None:
    # Given real Falcon alerts (an Alerts API entity, an Event Streams event) and a Workspace alert, as
    # alerts.get returns it and as its Pub/Sub notification
    files = (FALCON_ENDPOINT, FALCON_STREAM, WORKSPACE_ALLOW_LIST, WORKSPACE_PUSHED)

    # When a user runs them through the local pipeline
    status, document = run_json(*files)

    # Then each is a case, with its vendor's IOCs looked up and nothing refused or lost; the notification
    # of an alert already triaged is folded into that alert's case
    assert status == 0
    assert (document["failures"], document["pending"], document["ignored"]) == ([], [], [])
    cases = {case["alert_id"]: case for case in document["cases"]}
    [workspace] = [case for case in cases.values() if case["source"] == "workspace"]
    ids = {workspace["alert_id"], *(repeat["alert_id"] for repeat in workspace["repeats"])}
    assert ids == {WORKSPACE_ID, NOTIFICATION_ID}
    cases[WORKSPACE_ID] = cases.pop(workspace["alert_id"])
    assert set(cases) == set(EXPECTED)
    for alert_id, (source, iocs, ticketed) in EXPECTED.items():
        case = cases[alert_id]
        looked_up = {(ioc["type"], ioc["value"]) for ioc in case["iocs"] if ioc["skipped_reason"] is None}
        assert (case["source"], looked_up) == (source, iocs), alert_id
        # And no AWS action is planned or run: the alert names no AWS account or Region, as the case says
        assert case["actions"] == []
        assert (case["account"], case["region"]) == ("none", "none")
        platform = "CrowdStrike Falcon" if source == "falcon" else "Google Workspace"
        assert f"a {platform} alert names no AWS account or Region" in " ".join(case["not_actionable"])
        # And a person sees it when its severity says so
        assert (case["ticket"] is not None) == ticketed, alert_id
        assert case["execution_status"] == "SUCCEEDED"
    # And the case names the vendor's product, host, user and console link, in the JSON and the report
    endpoint = cases[ENDPOINT_ID]["vendor"]
    assert (endpoint["platform"], endpoint["host"], endpoint["user"]) == (
        "CrowdStrike Falcon",
        "ABC709-1175",
        "mohit.jha",
    )
    assert endpoint["console_url"].startswith("https://falcon.us-2.crowdstrike.com/activity-v2/detections/")
    # (each on lines of its own after its label; its words, whatever the report's width)
    printed = io.StringIO()
    print_report(document, file=printed)
    report = printed.getvalue()
    flat = " ".join(report.split())
    assert "   vendor    CrowdStrike Falcon; product FalconInsight; customer" in report
    assert (
        "vendor CrowdStrike Falcon; product FalconInsight; customer 92012896127c4a948236ba7601b886b0;" in flat
    )
    assert "   vendor    Google Workspace; product Gmail phishing; customer 02umwv6u; user" in report
    assert (
        "vendor Google Workspace; product Gmail phishing; customer 02umwv6u; user example@example.com" in flat
    )


def test_phishing_to_twelve_recipients_differing_beyond_the_tenth_is_two_cases_naming_every_recipient(
    tmp_path: Path,
) -> None:
    # Given the real phishing alert sent to twelve recipients twice, under two alert ids: the same ten
    # recipients, then two others each (as `vtriage run` reads a JSON Lines file)
    document = json.loads(
        (CORPUS / "elastic-integrations__google_workspace_alert_test-alert_1.json").read_text()
    )
    shared = [f"staff{index:02}@corp-example.org" for index in range(10)]
    others = {
        "phish-A": ["zz-ceo@corp-example.org", "zz-cfo@corp-example.org"],
        "phish-B": ["zz-intern1@corp-example.org", "zz-intern2@corp-example.org"],
    }
    message = document["data"]["messages"][0]
    alerts = [
        {
            **document,
            "alertId": alert_id,
            "data": {
                **document["data"],
                "messages": [{**message, "recipient": r} for r in [*shared, *extra]],
            },
        }
        for alert_id, extra in others.items()
    ]
    path = tmp_path / "phishing.jsonl"
    path.write_text("".join(json.dumps(alert) + "\n" for alert in alerts))

    # When a user runs them through the local pipeline
    status, document_out = run_json(path)

    # Then each is a case of its own, neither folded into the other, and each case's JSON names every one
    # of its twelve recipients
    assert status == 0
    cases = {case["alert_id"]: case for case in document_out["cases"]}
    assert set(cases) == set(others)
    for alert_id, extra in others.items():
        assert cases[alert_id]["repeats"] == []
        assert cases[alert_id]["vendor"]["users"] == [*shared, *extra]
