"""The approval page in a real browser: headless Chromium (Debian's `chromium` and `chromium-driver`,
driven by Selenium) opens an approve link that the real pipeline sent, served by the real approval
handler over a loopback HTTP server with moto behind it, on a desktop and on a phone.

A finding pushed through the intake URL is triaged by the real handlers (VirusTotal answered by the
replay server) and each of its actions waits for a person; the isolation's approve link is opened. The
test takes the screenshots the README shows (docs/screenshots/: written there only when
VTRIAGE_WRITE_SCREENSHOTS=1, else into a temporary folder and compared with them in size), and checks
what a person relies on: opening the link decided nothing, the button decides; the page fits a phone's
width and obeys its strict Content-Security-Policy (the console reports no violation, and the one
stylesheet, allowed by its hash, applies). The case page link the ticket carries is opened on the phone
too.

Without Chromium and its driver the test fails, naming the packages: `.ci/run` installs them."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.functional.conftest import event
from tests.functional.test_intake_function import function_url_request, post
from vtriage.adapters.dynamodb import DynamoCaseRepository
from vtriage.adapters.guardrails import DynamoApprovalStore
from vtriage.approval import verify
from vtriage.intake import read_document
from vtriage.models import ActionStatus, ActionType, Case
from vtriage_local.runner import Pipeline
from vtriage_local.seed import instances_named, seed_instances
from vtriage_local.stack import LocalAws
from vtriage_local.template import PROJECT_ROOT

pytestmark = pytest.mark.functional

# A GuardDuty finding of an instance talking to a C&C domain VirusTotal calls malicious (recorded): the
# compromised-instance playbook snapshots, tags and isolates it; pushed through the intake URL, each
# action waits for a person.
SAMPLE = "synthetic-guardduty-backdoor-c2-dns.json"
SCREENSHOTS = PROJECT_ROOT / "docs" / "screenshots"
WRITE_SCREENSHOTS = "VTRIAGE_WRITE_SCREENSHOTS"
DESKTOP = (1280, 900)
# An iPhone 12 to 15's screen in CSS pixels, at twice the pixels (the README's picture stays small).
PHONE = {"width": 390, "height": 844, "pixelRatio": 2.0}
PHONE_AGENT = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Mobile/15E148 Safari/604.1"
)
PACKAGES = "chromium chromium-driver"
APPROVAL_WAIT_S = 60.0
DECISION_WAIT_S = 60.0


class FunctionUrl:
    """The approval function's URL on loopback: each HTTP request becomes the event a Lambda function URL
    delivers (payload format 2.0: a form's body base64-encoded, the source address and user agent in the
    request context), answered by the real handler."""

    def __init__(self, aws: LocalAws) -> None:
        function_url = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path, _, query = self.path.partition("?")
                request = {
                    "version": "2.0",
                    "rawPath": path,
                    "rawQueryString": query,
                    "headers": {name.lower(): value for name, value in self.headers.items()},
                    "requestContext": {
                        "http": {
                            "method": self.command,
                            "path": path,
                            "sourceIp": self.client_address[0],
                            "userAgent": self.headers.get("User-Agent", ""),
                        }
                    },
                    "body": base64.b64encode(body).decode() if body else None,
                    "isBase64Encoded": bool(body),
                }
                function_url.requests.append((self.command, query))
                answer = aws.invoke("ApprovalFunction", request)
                page = str(answer.get("body") or "").encode()
                self.send_response(int(answer["statusCode"]))
                for name, value in (answer.get("headers") or {}).items():
                    self.send_header(name, str(value))
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            do_GET = do_POST = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.requests: list[tuple[str, str]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/"

    def link(self, sent: str) -> str:
        """The link an approver got, pointed at this loopback URL instead of the stack's function URL."""
        return self.url + "?" + urlsplit(sent).query

    def uses(self, link: str) -> list[str]:
        """The methods of the requests made to this link so far (the form posts to the page's own
        address), in order; a browser's other requests (its icon) left out."""
        query = urlsplit(link).query
        return [method for method, asked in self.requests if asked == query]

    @contextmanager
    def serving(self) -> Iterator[FunctionUrl]:
        self._thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()


def _browser_programs() -> tuple[str, str]:
    """Debian's Chromium and its driver; the test fails, naming the packages, when either is missing."""
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver is None:
        found = {"chromium": chromium, "chromedriver": driver}
        missing = ", ".join(name for name, path in found.items() if path is None)
        pytest.fail(
            f"the approval page's browser test needs headless Chromium and its driver ({missing} not found "
            f"on PATH): install Debian's packages with `apt-get install {PACKAGES}` (.ci/run does)"
        )
    return chromium, driver


@contextmanager
def _chromium(*, phone: bool) -> Iterator[webdriver.Chrome]:
    """Headless Chromium through Selenium and the system's chromedriver (never one downloaded), keeping
    the console's messages; as a phone (mobile emulation: its screen, pixel ratio and user agent, so the
    page's viewport tag counts) or a desktop window."""
    chromium, driver_path = _browser_programs()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--hide-scrollbars"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    if phone:
        options.add_experimental_option("mobileEmulation", {"deviceMetrics": PHONE, "userAgent": PHONE_AGENT})
    else:
        options.add_argument(f"--window-size={DESKTOP[0]},{DESKTOP[1]}")
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    try:
        if not phone:
            # The window's inner size, whatever the browser's frame takes.
            driver.execute_cdp_cmd(
                "Emulation.setDeviceMetricsOverride",
                {"width": DESKTOP[0], "height": DESKTOP[1], "deviceScaleFactor": 1, "mobile": False},
            )
        yield driver
    finally:
        driver.quit()


def _inbox(aws: LocalAws, topic: str, name: str) -> str:
    """A queue subscribed to one of the stack's topics, where its messages arrive."""
    sqs, sns = aws.client("sqs"), aws.client("sns")
    inbox = str(sqs.create_queue(QueueName=name)["QueueUrl"])
    attributes = sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])["Attributes"]
    sns.subscribe(TopicArn=aws.ref(topic), Protocol="sqs", Endpoint=attributes["QueueArn"])
    return inbox


def _case_page_link(aws: LocalAws, inbox: str) -> str:
    """The case page link of the first ticket the ticket topic delivered."""
    sqs = aws.client("sqs")
    for message in sqs.receive_message(QueueUrl=inbox, MaxNumberOfMessages=10).get("Messages", []):
        found = re.findall(r"^Case page:\s+(\S+)$", json.loads(message["Body"])["Message"], re.MULTILINE)
        if found:
            return str(found[0])
    raise AssertionError("no ticket with a case page link arrived")


def _isolation_waiting(aws: LocalAws) -> tuple[Case, str, str]:
    """The sample pushed through the intake URL and triaged by the real handlers; the case, the approve
    link of its isolation as the approvers' mailbox got it, and that approval's id. Actions wait one at a
    time, the isolation last: the approvals before it are given as a person's button would give them."""
    sqs = aws.client("sqs")
    inbox = _inbox(aws, "ApprovalTopic", "approvers")
    body = event(SAMPLE).read_text(encoding="utf-8")
    # The instance the finding names, as the local runner mirrors it: remediation finds it.
    seed_instances(aws.client("ec2"), instances_named(read_document(json.loads(body)).alerts))
    status, accepted = post(aws, function_url_request(body))
    assert status == 202
    [case_id] = accepted["case_ids"]
    _, failures = Pipeline(aws).drain()
    assert failures == []
    case = _cases(aws).get(case_id)
    assert case is not None
    key = _signing_key(aws)
    deadline = time.monotonic() + APPROVAL_WAIT_S
    while time.monotonic() < deadline:
        for message in sqs.receive_message(QueueUrl=inbox, MaxNumberOfMessages=10).get("Messages", []):
            sqs.delete_message(QueueUrl=inbox, ReceiptHandle=message["ReceiptHandle"])
            [link] = re.findall(r"^Approve:\s+(\S+)$", json.loads(message["Body"])["Message"], re.MULTILINE)
            claims = verify(parse_qs(urlsplit(link).query)["token"][0], key, datetime.now(UTC))
            if case.actions[claims.action_index].type is ActionType.ISOLATE_INSTANCE:
                return case, link, claims.approval_id
            approved = aws.invoke("ApprovalFunction", _button(link))
            assert approved["statusCode"] == 200
        time.sleep(0.05)
    raise AssertionError("no approval request for the isolation arrived")


def _button(link: str) -> dict[str, Any]:
    """The request an approval page's button sends for this link."""
    return {
        "version": "2.0",
        "rawPath": "/",
        "rawQueryString": "",
        "headers": {"content-type": "application/x-www-form-urlencoded"},
        "requestContext": {"http": {"method": "POST", "path": "/", "sourceIp": "198.51.100.7"}},
        "body": urlsplit(link).query,
        "isBase64Encoded": False,
    }


def _cases(aws: LocalAws) -> DynamoCaseRepository:
    return DynamoCaseRepository(
        aws.client("dynamodb"), aws.ref("CasesTable"), timedelta(days=90), lambda: datetime.now(UTC)
    )


def _signing_key(aws: LocalAws) -> bytes:
    name = aws.parameters["ApprovalSigningKeySecretName"]
    return str(aws.client("secretsmanager").get_secret_value(SecretId=name)["SecretString"]).encode()


def _isolation(aws: LocalAws, case_id: str) -> Any:
    case = _cases(aws).get(case_id)
    assert case is not None
    return next(action for action in case.actions if action.type is ActionType.ISOLATE_INSTANCE), case


def _approves(note: str, instance: str) -> bool:
    """Whether a line of the case's history records a person's approval of the isolation."""
    return note.startswith(f"isolate_instance {instance} approved by a person")


def _csp_violations(driver: webdriver.Chrome) -> list[str]:
    """The console's messages about the Content-Security-Policy since the last call."""
    # Selenium leaves get_log unannotated: each entry is a dict with the message's level and text.
    entries: list[dict[str, Any]] = driver.get_log("browser")  # type: ignore[no-untyped-call]
    return [
        entry["message"]
        for entry in entries
        if "Content Security Policy" in entry["message"] or "Content-Security-Policy" in entry["message"]
    ]


def _png_size(path: Path) -> tuple[int, int]:
    """A PNG's width and height, from its header."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    """Where the screenshots go: docs/screenshots when VTRIAGE_WRITE_SCREENSHOTS=1, else a temporary
    folder."""
    if os.environ.get(WRITE_SCREENSHOTS) == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        return SCREENSHOTS
    return tmp_path


def test_an_approver_opens_the_link_on_a_desktop_and_a_phone_and_only_the_button_decides(
    local_aws: LocalAws, screenshots: Path
) -> None:
    # Given Chromium and its driver (the test fails, naming the packages, without them)
    _browser_programs()
    # And an alert pushed through the intake URL, triaged by the real handlers, its isolation waiting for
    # a person, the approve link the approvers got, and the case page link its ticket carries
    tickets = _inbox(local_aws, "TicketTopic", "ticket-readers")
    case, sent_link, approval_id = _isolation_waiting(local_aws)
    case_page = _case_page_link(local_aws, tickets)
    store = DynamoApprovalStore(local_aws.client("dynamodb"), local_aws.ref("GuardrailsTable"))
    instance = _isolation(local_aws, case.case_id)[0].target

    with FunctionUrl(local_aws).serving() as function_url:
        link = function_url.link(sent_link)

        # When the approver opens it on a phone
        with _chromium(phone=True) as phone:
            phone.get(link)

            # Then the page shows the action in words, what it changes and how it is rolled back
            assert phone.find_element(By.TAG_NAME, "h1").text == "Approve: isolate the instance?"
            text = phone.find_element(By.TAG_NAME, "body").text
            assert f"Moves every network interface of instance {instance} into vtriage's quarantine" in text
            assert "Rollback puts each interface back in the security groups it had before." in text
            assert "This link works until " in text
            assert "isolate_instance" not in text
            assert "pending_approval" not in text
            # And the evidence: the IOC, its verdict and reasons, and its VirusTotal link
            assert "tawuhoju.com" in text
            virustotal = phone.find_element(By.PARTIAL_LINK_TEXT, "VirusTotal's page of it")
            assert virustotal.get_attribute("href") == "https://www.virustotal.com/gui/domain/tawuhoju.com"
            # And it is laid out for the phone: its viewport tag makes the page as wide as the screen, and
            # nothing is wider (no sideways scrolling)
            widths = phone.execute_script(
                "return [window.innerWidth, document.scrollingElement.scrollWidth];"
            )
            assert widths[0] == PHONE["width"]
            assert widths[1] <= widths[0], f"the page is {widths[1]} px wide on a {widths[0]} px phone"
            # And the strict CSP let the one stylesheet apply, and the console reports no violation
            button = phone.find_element(By.CSS_SELECTOR, "button[type=submit]")
            assert button.value_of_css_property("background-color") == "rgba(31, 136, 61, 1)"
            assert _csp_violations(phone) == []
            phone.save_screenshot(str(screenshots / "approval-phone.png"))

            # When the ticket's case page link is opened on the phone, Then it shows the case, fits the
            # phone and obeys its CSP too, and has no button
            phone.get(function_url.link(case_page))
            assert phone.find_element(By.TAG_NAME, "h1").text == case.alert.title
            assert (
                "This page shows the case and decides nothing."
                in phone.find_element(By.TAG_NAME, "body").text
            )
            assert phone.find_elements(By.TAG_NAME, "form") == []
            widths = phone.execute_script(
                "return [window.innerWidth, document.scrollingElement.scrollWidth];"
            )
            assert widths[1] <= widths[0] == PHONE["width"]
            assert _csp_violations(phone) == []

        # When the approver opens it on a desktop
        with _chromium(phone=False) as desktop:
            desktop.get(link)
            assert desktop.find_element(By.TAG_NAME, "h1").text == "Approve: isolate the instance?"
            assert desktop.execute_script("return document.scrollingElement.scrollWidth;") <= DESKTOP[0]
            assert _csp_violations(desktop) == []
            desktop.save_screenshot(str(screenshots / "approval-desktop.png"))

            # Then opening it, twice, decided nothing: the approval still waits, no decision was sent to
            # the waiting step, and the action still waits
            assert function_url.uses(link) == ["GET", "GET"]
            assert store.is_pending(approval_id, datetime.now(UTC))
            waiting, stored = _isolation(local_aws, case.case_id)
            assert waiting.status is ActionStatus.PENDING_APPROVAL
            assert not any(_approves(entry.note, instance) for entry in stored.history)

            # When the approver presses the button
            desktop.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
            # While the answer replaces the page, the old page's heading may be read as it goes: Chromium
            # then answers "Node with given id does not belong to the document"; the wait reads again.
            WebDriverWait(desktop, 30, ignored_exceptions=(WebDriverException,)).until(
                lambda browser: browser.find_element(By.TAG_NAME, "h1").text.startswith("Approved")
            )

            # Then the page says what was approved, and the console still reports no CSP violation
            assert desktop.find_element(By.TAG_NAME, "h1").text == "Approved: Isolate the instance"
            assert _csp_violations(desktop) == []
            user_agent = desktop.execute_script("return navigator.userAgent;")

    # And the decision is recorded with who made it: the browser's address and user agent
    assert function_url.uses(link) == ["GET", "GET", "POST"]
    item = store.item(approval_id)
    assert item is not None
    assert item["state"]["S"] == "approve"
    assert item["decided_by_source_ip"]["S"] == "127.0.0.1"
    assert item["decided_by_user_agent"]["S"] == user_agent
    # And the waiting step got it: the remediation went on with the isolation (in dry run, the default)
    deadline = time.monotonic() + DECISION_WAIT_S
    decided, stored = _isolation(local_aws, case.case_id)
    while decided.status is ActionStatus.PENDING_APPROVAL and time.monotonic() < deadline:
        time.sleep(0.1)
        decided, stored = _isolation(local_aws, case.case_id)
    assert decided.status is not ActionStatus.PENDING_APPROVAL
    assert any(_approves(entry.note, instance) for entry in stored.history)

    # And the screenshots are the README's: the same sizes as those in docs/screenshots
    for name in ("approval-desktop.png", "approval-phone.png"):
        assert _png_size(screenshots / name) == _png_size(SCREENSHOTS / name)
