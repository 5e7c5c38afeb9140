"""Google Workspace Alert Center intake, on real alerts (tests/corpus, their provenance in its PROVENANCE.md):
read by the payload's `@type`, never by the type text; the attachments, the sender's domain and the
addresses an analyst would look up are looked up; the customer's own domains, an internal sender and a
public mail provider never are; an alert with no IOC is still a case; alerts.list output and Pub/Sub
pushes are understood; a redelivery is the same case; and no Workspace alert can get an AWS action."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import pytest

from tests.factories import make_case
from vtriage.eligibility import Place, eligibility
from vtriage.fakes import FakeAlertQueue
from vtriage.intake import IntakeOptions, IntakeResult
from vtriage.intake.body import decode_body
from vtriage.intake_api import accept_alert
from vtriage.models import MAX_VENDOR_USERS, Alert, Provenance
from vtriage.ticket import render_report

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
PHISHING = "elastic-integrations__google_workspace_alert_test-alert_1.json"
ALLOW_LIST = "elastic-integrations__google_workspace_alert_test-alert_3.json"
LEAKED_PASSWORD = "elastic-integrations__google_workspace_alert_test-alert_4.json"
STATE_SPONSORED = "elastic-integrations__google_workspace_alert_test-alert_6.json"
DEVICE = "elastic-integrations__google_workspace_alert_test-alert_7.json"
OPERATIONS = "elastic-integrations__google_workspace_alert_test-alert_5.json"
DLP = "elastic-integrations__google_workspace_alert_test-alert_10.json"
ADMIN_ACTION = "elastic-integrations__google_workspace_alert_test-alert_12.json"
SUSPENSION = "elastic-integrations__google_workspace_alert_test-alert_13.json"
LISTED = "demisto-content__gsuite_list_alert_response.json"
PUSHED = "synthetic-workspace-pubsub-push-badwhitelist.json"
ATTACHMENTS = {
    "50d858e0985ecc7f60418aaf0cc5ab587f42c2570a884095a9e8ccacd0f6545c",
    "228b48a56dbc2ecf10393227ac9c9dc943881fd7a55452e12a09107476bef2b2",
}


def load(name: str) -> Any:
    return json.loads((CORPUS / name).read_text())


def read(document: Any) -> IntakeResult:
    """The document as the enrich function reads a message body."""
    return IntakeOptions().read(decode_body(json.dumps(document)))


def the_alert(document: Any) -> Alert:
    result = read(document)
    assert (result.refused, result.ignored) == ((), ())
    [alert] = result.alerts
    return alert


def looked_up(alert: Alert) -> set[str]:
    return {ioc.value for ioc in alert.iocs if ioc.skipped_reason is None}


def skipped(alert: Alert) -> dict[str, str]:
    return {ioc.value: ioc.skipped_reason for ioc in alert.iocs if ioc.skipped_reason is not None}


# (sample, its type, what an analyst looks up, what must never be looked up)
SAMPLES = [
    (
        PHISHING,
        "MailPhishing",
        {*ATTACHMENTS, "5fb1679e08674059b72e271d8902c11a127bb5301b055dc77fa03932ada56a56"},
        {"example.com"},
    ),
    (ALLOW_LIST, "BadWhitelist", {*ATTACHMENTS, "sales.com", "89.160.20.128"}, {"example.com"}),
    (LEAKED_PASSWORD, "AccountWarning", {"89.160.20.128"}, {"example.com", "foo@example.com"}),
    (STATE_SPONSORED, "StateSponsoredAttack", set(), {"example.com"}),
    (DEVICE, "DeviceCompromised", set(), {"fake.com"}),
    (DLP, "DlpRuleViolation", set(), set()),
    (SUSPENSION, "AccountSuspensionWarning", set(), {"admin.google.com"}),
    (PUSHED, "BadWhitelist", {*ATTACHMENTS, "sales.com", "89.160.20.128"}, {"example.com"}),
]


@pytest.mark.parametrize(
    ("sample", "payload_type", "wanted", "never"), SAMPLES, ids=[case[0] for case in SAMPLES]
)
def test_a_real_alert_center_alert_looks_up_what_an_analyst_would_and_nothing_of_the_customers(
    sample: str, payload_type: str, wanted: set[str], never: set[str]
) -> None:
    # Given a real Alert Center alert (or its Pub/Sub push)
    document = load(sample)

    # When intake reads it
    alert = the_alert(document)

    # Then it is typed by its payload, looks up exactly what an analyst would, never the customer's own
    assert (alert.source, alert.type) == ("workspace", payload_type)
    assert looked_up(alert) == wanted
    assert not never & looked_up(alert)


def test_an_alert_without_an_ioc_is_still_a_case_routed_by_its_severity() -> None:
    # Given a government attack warning (HIGH), and the same marked LOW
    high = the_alert(load(STATE_SPONSORED))
    document = load(STATE_SPONSORED)
    document["metadata"]["severity"] = "LOW"
    low = the_alert(document)

    # Then each is a case with no IOC, at its severity
    assert (high.iocs, high.severity.label) == ((), "high")
    assert (low.iocs, low.severity.label) == ((), "low")


def test_the_payload_type_decides_never_the_type_text() -> None:
    # Given the allow-list alert whose type text claims a leaked password, and the leaked password alert
    # whose type text claims phishing
    mail = load(ALLOW_LIST)
    mail["type"] = "Leaked password"
    login = load(LEAKED_PASSWORD)
    login["type"] = "User reported phishing"

    # Then each is read as its @type says
    assert the_alert(mail).type == "BadWhitelist"
    assert "sales.com" in looked_up(the_alert(mail))
    assert the_alert(login).type == "AccountWarning"
    assert looked_up(the_alert(login)) == {"89.160.20.128"}


SENDERS = [
    # (fromHeader, isInternal, the domain looked up, or the reason the sender's domain is skipped)
    ("Billing Team <billing@invoices-portal.top>", None, "invoices-portal.top", None),
    ("attacker@evil-phish.top", None, "evil-phish.top", None),
    ("it-support@acme-corp.com", None, None, "customer's own domain"),
    ("hr@mail.acme-corp.com", None, None, "customer's own domain"),
    ("payroll@acme.co.uk", None, None, "customer's own domain"),
    ("ceo.personal@gmail.com", None, None, "public mail provider"),
    ("someone@partner-firm.com", True, None, "inside the organisation"),
    ("someone@partner-firm.com", "True", None, "inside the organisation"),
    ("no address at all", None, None, "not an e-mail address"),
]


@pytest.mark.parametrize(("sender", "internal", "domain", "reason"), SENDERS)
def test_the_senders_domain_is_looked_up_unless_it_is_the_customers_internal_or_a_mail_provider(
    sender: str, internal: Any, domain: str | None, reason: str | None
) -> None:
    # Given the allow-list alert of a customer acme-corp.com whose recipient is at acme.co.uk, whose
    # malicious entity is the outside sender and whose assignee works at a security provider
    document = load(ALLOW_LIST)
    data = document["data"]
    data["domainId"]["customerPrimaryDomain"] = "acme-corp.com"
    data["messages"][0]["recipient"] = "jane@acme.co.uk"
    data["maliciousEntity"]["fromHeader"] = sender
    data["maliciousEntity"]["entity"]["emailAddress"] = "attacker@evil-phish.top"  # the outside sender
    document["metadata"]["assignee"] = "analyst@mssp-partner.com"
    if internal is not None:
        data["isInternal"] = internal

    # When intake reads it
    alert = the_alert(document)
    [ioc] = [ioc for ioc in alert.iocs if ioc.found_at == "data.maliciousEntity.fromHeader"]

    # Then the sender's domain is looked up, or skipped with the reason
    if domain is not None:
        assert (ioc.value, ioc.skipped_reason) == (domain, None)
    else:
        assert reason is not None
        assert reason in (ioc.skipped_reason or "")


def test_a_bad_value_costs_only_itself_and_says_why() -> None:
    # Given the allow-list alert with an address that is no address and an attachment hash that is no hash
    document = load(ALLOW_LIST)
    document["data"]["sourceIp"] = "999.1.1.1"
    document["data"]["messages"][0]["attachmentsSha256Hash"][1] = "d41d8cd98f00b204e9800998ecf8427e"

    # When intake reads it
    alert = the_alert(document)

    # Then the alert stands with its other IOCs, each bad value kept skipped with its reason
    reasons = skipped(alert)
    assert "sales.com" in looked_up(alert)
    assert "not an IP address" in reasons["999.1.1.1"]
    assert "declares sha256" in reasons["d41d8cd98f00b204e9800998ecf8427e"]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"deleted": True}, "deleted is true: marked for deletion"),
        ({"metadata": {"status": "CLOSED", "severity": "HIGH"}}, "metadata.status is 'CLOSED'"),
    ],
)
def test_a_deleted_or_closed_alert_is_acknowledged_without_a_case(
    change: dict[str, Any], reason: str
) -> None:
    # Given a real alert deleted or closed in the Alert Center
    document = {**load(ALLOW_LIST), **change}

    # Then no case, and the reason says which field
    result = read(document)
    assert result.alerts == ()
    assert reason in result.ignored[0].reason


def test_alerts_list_output_reads_each_alert_on_its_own() -> None:
    # Given the placeholder alerts.list output, with one item that is no alert
    document = load(LISTED)
    document["alerts"].insert(2, "demo_alertId")

    # When intake reads it
    result = read(document)

    # Then each alert is a case (placeholders kept skipped, nothing looked up) and the string refused alone
    assert len(result.alerts) == 9
    assert not any(looked_up(alert) for alert in result.alerts)
    [refused] = result.refused
    assert (refused.where, refused.reason) == (
        "alerts[2]",
        "alerts[2]: expected an Alert Center alert, got a string",
    )


def pushed(alert: dict[str, Any], **message: Any) -> dict[str, Any]:
    """A Pub/Sub push request carrying the alert as its base64 data."""
    data = base64.b64encode(json.dumps(alert).encode()).decode()
    return {
        "message": {
            "data": data,
            "messageId": "1234567890",
            "publishTime": "2022-07-12T10:49:30Z",
            **message,
        },
        "subscription": "projects/example-project/subscriptions/vtriage",
    }


def test_a_pushed_alert_is_the_same_case_as_the_alert_listed_and_a_redelivery_too() -> None:
    # Given one alert as alerts.get returns it, pushed through Pub/Sub twice (a redelivery)
    alert = load(ALLOW_LIST)

    # When each is read
    cases = {the_alert(alert).case_id, the_alert(pushed(alert)).case_id, the_alert(pushed(alert)).case_id}

    # Then they are one case, identified by the alertId
    assert len(cases) == 1
    assert the_alert(pushed(alert)).id == "91840a82-3af0-46d7-95ec-625c1cf0c3f7"


@pytest.mark.parametrize(
    ("document", "said"),
    [
        ({"alerts": []}, "alerts is empty"),
        ({"nextPageToken": "abc"}, "no alerts (Google's JSON leaves an empty list out)"),
        ({}, "no alerts (Google's JSON leaves an empty list out)"),
    ],
    ids=["an empty list", "a page token alone", "nothing"],
)
def test_a_page_of_alerts_list_with_no_alert_is_ignored_saying_so(
    document: dict[str, Any], said: str
) -> None:
    # Given a page of alerts.list with no alert, as Google writes one (an empty list is left out)
    # When intake reads it
    result = IntakeOptions().read(decode_body(json.dumps(document)))

    # Then nothing is refused and no case is made: the page is ignored, with the reason
    assert (result.alerts, result.refused) == ((), ())
    [ignored] = result.ignored
    assert ignored.reason == f"{said}: a page of alerts.list with no alert, nothing to triage"


def test_a_new_etag_or_assignee_is_the_same_case_and_another_status_severity_or_address_another() -> None:
    # Given the real leaked-password alert
    alert = load(LEAKED_PASSWORD)
    first = the_alert(alert)

    # When the same alert at the same updateTime comes with another etag and another assignee
    volatile = copy.deepcopy(alert)
    volatile["etag"] = volatile["metadata"]["etag"] = "XXXXXXXXXXX="
    volatile["metadata"]["assignee"] = "secops@example.com"

    # Then it is the same case: no second ticket
    assert the_alert(volatile).case_id == first.case_id
    # And a document under that id and updateTime with another status, severity, login address or user
    # is a case of its own (decision 11)
    for path, value in (
        (("metadata", "status"), "IN_PROGRESS"),
        (("metadata", "severity"), "LOW"),
        (("data", "loginDetails", "ipAddress"), "81.2.69.142"),
        (("data", "email"), "cfo@example.com"),
    ):
        other = copy.deepcopy(alert)
        parent = other
        for key in path[:-1]:
            parent = parent[key]
        parent[path[-1]] = value
        assert the_alert(other).case_id != first.case_id, path


def test_a_notification_is_identified_by_its_message_and_a_deletion_is_acknowledged() -> None:
    # Given the documented notification (attributes beside the payload), delivered twice, then deleted
    notification = load(PUSHED)
    deleted = copy.deepcopy(notification)
    deleted["message"]["attributes"]["alertcenter_resource_status"] = "DELETED"

    # Then the deliveries are one case named by the message id, and the deletion is no case
    assert the_alert(notification).case_id == the_alert(copy.deepcopy(notification)).case_id
    assert the_alert(notification).id == "9876543210987654"
    result = read(deleted)
    assert result.alerts == ()
    assert "DELETED" in result.ignored[0].reason


@pytest.mark.parametrize("data", ["not base64!", base64.b64encode(b"<xml/>").decode(), ""])
def test_a_push_whose_data_is_no_json_is_refused_naming_the_field(data: str) -> None:
    # Given a Pub/Sub push whose data is not base64-encoded JSON
    document = pushed({}, data=data)

    # Then it is refused, saying where
    result = read(document)
    assert result.alerts == ()
    assert result.refused[0].reason.startswith("message.data: ")


def test_the_case_names_the_workspace_product_user_and_investigation_link_escaped() -> None:
    # Given the account suspension warning, whose investigation tool link has no scheme
    alert = the_alert(load(SUSPENSION))
    leaked = the_alert(load(LEAKED_PASSWORD))

    # When their cases are reported
    lines = {line.label: line.value for line in render_report(make_case(alert)).lines}
    user_line = {line.label: line.value for line in render_report(make_case(leaked)).lines}["User"]

    # Then the vendor's terms are there, escaped (the link defanged), the affected user named
    assert lines["Platform"] == "Google Workspace"
    assert lines["Product"] == "Google identity"
    assert lines["Customer"] == "02umwv6u"
    assert lines["Console"] == "hxxps://admin.google.com/ac/ac/investigate?alert=xxxx"
    assert user_line == "foo@example.com"


def named_user(alert: Alert) -> str | None:
    """The `User` line of the alert's case as its ticket shows it."""
    return {line.label: line.value for line in render_report(make_case(alert)).lines}.get("User")


def test_google_operations_dlp_and_sensitive_admin_alerts_name_the_user_they_are_about() -> None:
    # Given a real Google Operations incident naming its affected user, and the real DLP violation and
    # sensitive admin action whose triggering user and actor are Google's placeholder 'string', given
    # their addresses
    operations = load(OPERATIONS)
    dlp = load(DLP)
    dlp["data"]["ruleViolationInfo"]["triggeringUserEmail"] = "dana@acme-corp.com"
    admin = load(ADMIN_ACTION)
    admin["data"]["actorEmail"] = "root-admin@acme-corp.com"

    # When intake reads them and their cases are reported
    users = [named_user(the_alert(document)) for document in (operations, dlp, admin)]

    # Then each case names the user in the vendor's terms: the affected user, the user who broke the
    # rule, the administrator who took the action
    assert users == ["test@example.com", "dana@acme-corp.com", "root-admin@acme-corp.com"]
    # And a placeholder where an address belongs names no one
    assert [named_user(the_alert(load(name))) for name in (DLP, ADMIN_ACTION)] == [None, None]


def operations_affecting(*users: str) -> Any:
    """The real Google Operations incident, naming `users` as its affected users."""
    document = load(OPERATIONS)
    document["data"]["affectedUserEmails"] = list(users)
    return document


def test_a_google_operations_incident_names_every_affected_user() -> None:
    # Given the real Google Operations incident naming two affected users, one of them twice in another case
    document = operations_affecting(
        "Victim.One@corp-example.org", "victim.two@corp-example.org", "victim.one@corp-example.org"
    )

    # When its case is reported
    alert = the_alert(document)

    # Then the case names each user once, in alphabetical order
    assert named_user(alert) == "Victim.One@corp-example.org, victim.two@corp-example.org"


def test_the_same_users_in_another_order_are_the_same_case_and_other_users_another() -> None:
    # Given one incident delivered with its affected users in one order, then in the other, then naming
    # only one of them
    first = the_alert(operations_affecting("victim.two@corp-example.org", "Victim.One@corp-example.org"))
    again = the_alert(operations_affecting("Victim.One@corp-example.org", "victim.two@corp-example.org"))
    fewer = the_alert(operations_affecting("Victim.One@corp-example.org"))

    # Then the two orders are one case; fewer users are a case of their own (decision 11)
    assert again.case_id == first.case_id
    assert fewer.case_id != first.case_id


def recipients(document: Any, *addresses: str) -> Any:
    """The document with its messages sent to `addresses`, one each."""
    for message, address in zip(document["data"]["messages"], addresses, strict=True):
        message["recipient"] = address
    return document


def test_a_mail_alert_to_the_same_recipients_in_another_order_repeats_and_to_others_does_not() -> None:
    # Given the real phishing alert (two messages, their attachments' hashes its IOCs) sent to two
    # recipients, another alert of the same attachments to the same recipients in the other order and
    # spelling, and one to someone else
    first = the_alert(recipients(load(PHISHING), "zoe@example.com", "adam@example.com"))
    reordered = recipients(load(PHISHING), "Adam@example.com", "zoe@example.com")
    reordered["alertId"] = "another-alert"
    elsewhere = recipients(load(PHISHING), "zoe@example.com", "eve@example.com")
    elsewhere["alertId"] = "a-third-alert"

    # Then the reordered one repeats the first, and the one to someone else is another person's case
    assert the_alert(reordered).repeat_key == first.repeat_key
    assert the_alert(elsewhere).repeat_key != first.repeat_key


def test_an_incident_affecting_many_users_names_ten_counts_the_rest_and_keeps_every_one() -> None:
    # Given an incident naming twelve affected users
    users = [f"user{index:02}@corp-example.org" for index in range(12, 0, -1)]

    # When its case is reported, then the first ten in alphabetical order are named, the rest counted
    named = ", ".join(f"user{index:02}@corp-example.org" for index in range(1, 11))
    alert = the_alert(operations_affecting(*users))
    assert named_user(alert) == f"{named} and 2 more"
    # And the case keeps all twelve
    assert alert.vendor is not None
    assert alert.vendor.users == tuple(sorted(users))


def mailed_to(*addresses: str) -> Any:
    """The real phishing alert, its first message (its attachments the alert's IOCs) sent to each of
    `addresses`."""
    document = load(PHISHING)
    first = document["data"]["messages"][0]
    document["data"]["messages"] = [{**copy.deepcopy(first), "recipient": address} for address in addresses]
    return document


def test_mail_alerts_to_twelve_recipients_differing_beyond_the_tenth_are_two_cases_naming_every_one() -> None:
    # Given two phishing alerts of the same attachments, each to twelve recipients: the same ten, then two
    # others each (the line a person reads names the first ten alike)
    shared = [f"staff{index:02}@corp-example.org" for index in range(10)]
    first_document = mailed_to(*shared, "zz-ceo@corp-example.org", "zz-cfo@corp-example.org")
    second_document = mailed_to(*shared, "zz-intern1@corp-example.org", "zz-intern2@corp-example.org")
    second_document["alertId"] = "another-alert"

    # When both are read
    first, second = the_alert(first_document), the_alert(second_document)

    # Then neither repeats the other: each is its own case, keeping every one of its recipients
    assert named_user(first) == named_user(second) == ", ".join(shared) + " and 2 more"
    assert first.repeat_key != second.repeat_key
    assert first.vendor is not None
    assert second.vendor is not None
    assert first.vendor.users == (*shared, "zz-ceo@corp-example.org", "zz-cfo@corp-example.org")
    assert second.vendor.users == (*shared, "zz-intern1@corp-example.org", "zz-intern2@corp-example.org")
    # And one alert delivered again with its two last recipients swapped for others is another case
    second_document["alertId"] = first_document["alertId"]
    assert the_alert(second_document).case_id != first.case_id


def test_an_alert_naming_ten_users_or_fewer_keeps_the_case_id_and_repeat_key_it_had() -> None:
    # Given the real phishing alert sent to two recipients, whose case id and repeat key were computed
    # before every user was kept (commit b24a8ce)
    document = recipients(load(PHISHING), "zoe@example.com", "Adam@example.com")

    # When it is read
    alert = the_alert(document)

    # Then its case id and repeat key are those it had: its case is the same case, its repeats repeat it
    assert alert.case_id == "workspace-b9ffbb7f4dac64156140517f9c28f6aa"
    assert alert.repeat_key == "repeat#69f11489122acb998f961d89d5c116f4a30316a6"


def test_an_alert_naming_more_users_than_a_case_keeps_says_so_and_still_tells_them_apart() -> None:
    # Given two incidents naming 600 affected users, the same but for the last one
    users = [f"user{index:03}@corp-example.org" for index in range(599)]
    first = the_alert(operations_affecting(*users, "zz-one@corp-example.org"))
    second = the_alert(operations_affecting(*users, "zz-two@corp-example.org"))

    # Then the case keeps the first MAX_VENDOR_USERS users, saying how many more the alert names
    assert first.vendor is not None
    assert first.vendor.users == tuple(users[:MAX_VENDOR_USERS])
    assert first.vendor.users_left_out == 600 - MAX_VENDOR_USERS
    assert (
        f"users: the alert names 600; the first {MAX_VENDOR_USERS} in alphabetical order are kept,"
        f" {600 - MAX_VENDOR_USERS} more left out (the case's identity holds them all)"
    ) in first.notes
    # And the two are told apart by the user left out: two cases, neither repeating the other
    assert first.case_id != second.case_id
    assert first.repeat_key != second.repeat_key


def test_a_mail_alert_names_every_recipient_when_no_affected_user_is_named() -> None:
    # Given the real phishing alert, its two messages sent to two recipients
    document = recipients(load(PHISHING), "zoe@example.com", "adam@example.com")

    # When its case is reported, then both recipients are named
    assert named_user(the_alert(document)) == "adam@example.com, zoe@example.com"


def test_the_user_a_sender_names_is_shown_escaped() -> None:
    # Given a sensitive admin action whose actor's address carries terminal controls and a line break
    document = load(ADMIN_ACTION)
    document["data"]["actorEmail"] = "root\x1b[2J@acme-corp.com\nStatus: resolved"

    # When its case is reported, then the user is on one line, its controls escaped
    assert named_user(the_alert(document)) == "root\\x1b[2J@acme-corp.com\\nStatus: resolved"


def test_a_link_that_is_not_the_admin_console_is_never_shown_as_one() -> None:
    # Given an alert whose investigation link points elsewhere
    document = load(SUSPENSION)
    document["securityInvestigationToolLink"] = "https://admin.google.com.evil.example.net/investigate"

    # Then no console link, noted
    alert = the_alert(document)
    assert alert.vendor is not None
    assert alert.vendor.console_url is None
    assert any("not a link into the vendor's console" in note for note in alert.notes)


def test_no_workspace_alert_ever_gets_an_aws_action() -> None:
    # Given a phishing alert stripped of the reason intake gave it, from the detector channel
    alert = the_alert(load(ALLOW_LIST)).model_copy(update={"not_actionable": ()})

    # When eligibility decides where it lives
    allowed = eligibility(
        alert, Provenance(channel="detector"), Place(own_account="123456789012"), "approval"
    )

    # Then the place refuses it, in words a person understands
    assert allowed.not_actionable == (
        "a Google Workspace alert names no AWS account or Region: vtriage takes no AWS action on it"
        " (a person decides, from its ticket)",
    )


def test_the_intake_url_queues_the_document_as_sent_and_names_its_alerts() -> None:
    # Given a real multi-alert document as a sender pushes it
    body = (CORPUS / LISTED).read_text()
    queue = FakeAlertQueue()

    # When the intake reads it as the enrich function will
    accepted = accept_alert(body, queue, options=IntakeOptions(), stamp={})

    # Then it is queued unchanged, each alert named
    assert queue.bodies == [body]
    assert list(accepted.alert_ids) == ["demo_alertId"] * 9
