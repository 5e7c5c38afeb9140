"""Playbooks: the shipped defaults, matching, targets and parameters, validation, and routing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.factories import make_alert, make_case
from vtriage.config.enrich import EnrichSettings
from vtriage.errors import ConfigurationError
from vtriage.intake import read_document
from vtriage.models import (
    Action,
    ActionStatus,
    ActionType,
    Alert,
    Branch,
    IocOutcome,
    IocType,
    Resource,
    ResourceType,
    Severity,
    Verdict,
)
from vtriage.playbook import choose_branch, default_playbooks, load_playbooks, plan_actions

INSTANCE = Resource(type=ResourceType.INSTANCE, id="i-0abc1234def567890", vpc_id="vpc-0a1b2c3d")
KEY = Resource(type=ResourceType.ACCESS_KEY, id="AKIAIOSFODNN7EXAMPLE", user_name="ci-deployer")
OBJECT = Resource(type=ResourceType.S3_OBJECT, id="uploads/invoice.exe", bucket="uploads", key="invoice.exe")
SHA256 = "4bc00f7d638e042da764e8648c03c0db46700599dd4f08d117e3e9e8b538519b"


def ioc(ioc_type: IocType, value: str, verdict: Verdict, skipped_reason: str | None = None) -> IocOutcome:
    """An IOC as the case shows it after enrichment."""
    return IocOutcome(
        type=ioc_type, value=value, found_at="service.action", verdict=verdict, skipped_reason=skipped_reason
    )


def planned(actions: list[Action]) -> list[tuple[str, str, dict[str, str]]]:
    """What an analyst reads of a plan: type, target and parameters of each action."""
    return [(action.type.value, action.target, action.parameters) for action in actions]


def write_playbooks(tmp_path: Path, document: Any) -> Path:
    path = tmp_path / "playbooks.json"
    path.write_text(json.dumps(document))
    return path


# ---------------------------------------------------------------- the shipped defaults


def test_a_confirmed_command_and_control_finding_on_an_instance_snapshots_tags_and_isolates_it() -> None:
    # Given a C&C DNS finding on an instance whose domain VirusTotal calls malicious
    alert = make_alert(type="Backdoor:EC2/C&CActivity.B!DNS", resources=(INSTANCE,))
    iocs = [ioc(IocType.DOMAIN, "tawuhoju.com", Verdict.MALICIOUS)]

    # When the default playbooks plan it
    actions = plan_actions(alert, iocs)

    # Then the instance is snapshotted, tagged and isolated, in that order, and the domain blocked
    assert planned(actions) == [
        ("snapshot_volumes", INSTANCE.id, {}),
        ("tag_instance", INSTANCE.id, {}),
        ("isolate_instance", INSTANCE.id, {}),
        ("block_domain_dns_firewall", "tawuhoju.com", {}),
    ]
    assert all(action.detail.startswith("planned by playbook ") for action in actions)


@pytest.mark.parametrize(
    "finding_type",
    [
        "Trojan:EC2/DropPoint!DNS",
        "CryptoCurrency:EC2/BitcoinTool.B!DNS",
        "TTPs/Command and Control/Backdoor",
        "Backdoor:EC2/C&CActivity.B",
        "command and control",
    ],
)
def test_every_compromise_marker_in_any_case_makes_the_instance_a_culprit(finding_type: str) -> None:
    # Given a finding of that type on an instance with a malicious IP
    alert = make_alert(type=finding_type, resources=(INSTANCE,))

    # When it is planned
    actions = plan_actions(alert, [ioc(IocType.IP, "23.129.64.215", Verdict.MALICIOUS)])

    # Then the instance is isolated
    assert ("isolate_instance", INSTANCE.id) in [(action.type.value, action.target) for action in actions]


def test_a_probe_against_an_instance_leaves_the_instance_alone() -> None:
    # Given a port probe on an instance from a malicious IP: the instance is the target, not the culprit
    alert = make_alert(type="Recon:EC2/PortProbeUnprotectedPort", resources=(INSTANCE,))

    # When it is planned with the default IP block (none)
    actions = plan_actions(alert, [ioc(IocType.IP, "23.129.64.215", Verdict.MALICIOUS)])

    # Then nothing is planned: a person decides
    assert actions == []


def test_a_compromise_that_virustotal_only_suspects_plans_nothing() -> None:
    # Given a trojan finding whose only IOC is suspicious
    alert = make_alert(type="Trojan:EC2/DNSDataExfiltration", resources=(INSTANCE,))

    # When it is planned, Then nothing is: a suspicion goes to a person
    assert plan_actions(alert, [ioc(IocType.DOMAIN, "telemetry-sync.net", Verdict.SUSPICIOUS)]) == []


def test_skipped_iocs_never_trigger_a_playbook() -> None:
    # Given a C&C finding whose only IP is a documentation address, kept as skipped
    alert = make_alert(type="Backdoor:EC2/C&CActivity.B", resources=(INSTANCE,))
    skipped = ioc(IocType.IP, "198.51.100.7", Verdict.MALICIOUS, skipped_reason="documentation address")

    # When it is planned, Then nothing is
    assert plan_actions(alert, [skipped]) == []


def test_the_ip_block_follows_the_configured_method() -> None:
    # Given a probe from a malicious IP on an instance in a VPC, and a harmless IP beside it
    alert = make_alert(type="Recon:EC2/PortProbeUnprotectedPort", resources=(INSTANCE,))
    iocs = [ioc(IocType.IP, "23.129.64.215", Verdict.MALICIOUS), ioc(IocType.IP, "8.8.8.8", Verdict.HARMLESS)]

    # When it is planned with each method
    by_method = {
        method: planned(plan_actions(alert, iocs, ip_block_method=method)) for method in ("waf", "nacl")
    }

    # Then only the malicious IP is blocked: in the WAF IP set, or in the network ACLs of the instance's
    # subnets, which the remediate function reads from the instance itself (never the alert's VPC)
    assert by_method == {
        "waf": [("block_ip_waf", "23.129.64.215", {})],
        "nacl": [("block_ip_nacl", "23.129.64.215", {"instance_id": "i-0abc1234def567890"})],
    }


def test_a_nacl_block_needs_an_instance() -> None:
    # Given a malicious IP calling the API: no instance in the alert
    alert = make_alert(type="UnauthorizedAccess:IAMUser/TorIPCaller", resources=(KEY,))

    # When it is planned with the NACL method
    actions = plan_actions(
        alert, [ioc(IocType.IP, "23.129.64.215", Verdict.MALICIOUS)], ip_block_method="nacl"
    )

    # Then no NACL block is planned (there is no instance whose subnets it would guard), only the key is
    # disabled
    assert planned(actions) == [("disable_access_key", KEY.id, {"user_name": "ci-deployer"})]


def test_a_malicious_ip_calling_the_api_with_a_key_disables_the_key_of_its_user() -> None:
    # Given a Tor exit node VirusTotal calls malicious, calling the API with an access key
    alert = make_alert(type="UnauthorizedAccess:IAMUser/TorIPCaller", resources=(KEY,))

    # When it is planned
    actions = plan_actions(alert, [ioc(IocType.IP, "23.129.64.215", Verdict.MALICIOUS)])

    # Then the key is disabled, with the user it belongs to
    assert planned(actions) == [("disable_access_key", "AKIAIOSFODNN7EXAMPLE", {"user_name": "ci-deployer"})]


def test_a_key_whose_user_is_unknown_is_not_planned() -> None:
    # Given an access key the finding names without its user
    alert = make_alert(
        type="UnauthorizedAccess:IAMUser/TorIPCaller",
        resources=(Resource(type=ResourceType.ACCESS_KEY, id="AKIAIOSFODNN7EXAMPLE"),),
    )

    # When it is planned, Then nothing is: the key cannot be disabled without its user
    assert plan_actions(alert, [ioc(IocType.IP, "23.129.64.215", Verdict.MALICIOUS)]) == []


# Documents of tests/corpus (PROVENANCE.md), each naming an access key: the AWS CLI's documented get-findings
# output (an IAM user's temporary credentials, ASIA...), a root user finding (UserType Root, an ASIA key),
# a hand-written AccessKeyLeak test event (an IAM user's long-term key, AKIA...).
CORPUS = Path(__file__).resolve().parents[1] / "corpus"
MALICIOUS_CALLER = [ioc(IocType.IP, "23.129.64.215", Verdict.MALICIOUS)]


def corpus_alert(name: str) -> Alert:
    """The first alert of a corpus document, in an account vtriage acts in (the root user finding names a
    13-digit account, which alone keeps it from action)."""
    alert = read_document(json.loads((CORPUS / name).read_text())).alerts[0]
    return alert.model_copy(update={"account": "123456789012", "not_actionable": ()})


@pytest.mark.parametrize(
    ("document", "said"),
    [
        (
            "aws-cli__guardduty_get-findings.json",
            "temporary credentials (ASIA...) from AWS STS cannot be disabled: deny the user's sessions "
            "issued before now (aws:TokenIssueTime) and disable the long-term key that issued them",
        ),
        (
            "guardduty-soar__root-user-forensics_event.json",
            "the root user's access keys are managed by the root user: vtriage cannot disable them",
        ),
    ],
    ids=["iam-user-temporary-credentials", "root-user"],
)
def test_a_key_no_update_can_disable_is_skipped_with_why_and_the_case_goes_to_a_person(
    document: str, said: str
) -> None:
    # Given a real finding naming a key UpdateAccessKey cannot disable, and a malicious caller
    alert = corpus_alert(document)

    # When the default playbooks plan it
    actions = plan_actions(alert, MALICIOUS_CALLER)

    # Then the key's action is planned skipped, saying why and what to do instead, and nothing else runs
    [action] = actions
    assert (action.type, action.target, action.status) == (
        ActionType.DISABLE_ACCESS_KEY,
        alert.resources[0].id,
        ActionStatus.SKIPPED,
    )
    assert action.detail.startswith("not run, nothing changed: " + said)
    assert "malicious-api-caller" in action.detail
    # And the case goes to a ticket (the remediate function would have nothing to run), not to remediation
    assert choose_branch(_case(alert, Verdict.MALICIOUS, actions)) is Branch.TICKET


def test_an_iam_users_long_term_key_from_a_real_finding_is_planned() -> None:
    # Given the AccessKeyLeak test event: an IAM user's long-term key (AKIA...)
    alert = corpus_alert("soar-lab__readme_accesskeyleak_test_event.json")

    # When it is planned with a malicious caller, Then the key is disabled, the case remediated
    actions = plan_actions(alert, MALICIOUS_CALLER)
    assert planned(actions) == [
        ("disable_access_key", "AKIAIOSFODNN7EXAMPLE", {"user_name": "soar-test-user"})
    ]
    assert actions[0].status is ActionStatus.PLANNED
    assert choose_branch(_case(alert, Verdict.MALICIOUS, actions)) is Branch.REMEDIATE


@pytest.mark.parametrize(
    ("key_id", "user_type", "said"),
    [
        ("ASIAIOSFODNN7EXAMPLE", "AssumedRole", "revoke the role's sessions"),
        ("ASIAIOSFODNN7EXAMPLE", None, "temporary credentials (ASIA...)"),
        ("AKIAIOSFODNN7EXAMPLE", "Root", "the root user's access keys are managed by the root user"),
        ("AKIAIOSFODNN7EXAMPLE", "FederatedUser", "a principal of type FederatedUser, not an IAM user"),
        ("SSSSSSSSSSSSSSS", "IAMUser", "not an IAM user's long-term access key id (AKIA...)"),
    ],
)
def test_only_an_iam_users_long_term_key_is_planned_to_run(
    key_id: str, user_type: str | None, said: str
) -> None:
    # Given a finding naming a key of this kind, held by this kind of principal
    key = Resource(type=ResourceType.ACCESS_KEY, id=key_id, user_name="ci-deployer", user_type=user_type)
    alert = make_alert(type="UnauthorizedAccess:IAMUser/TorIPCaller", resources=(key,))

    # When it is planned, Then its action is skipped with the reason
    [action] = plan_actions(alert, MALICIOUS_CALLER)
    assert action.status is ActionStatus.SKIPPED
    assert said in action.detail
    # And an IAM user's long-term key, or one whose holder the finding does not name, is planned to run
    for holder in ("IAMUser", None):
        long_term = key.model_copy(update={"id": "AKIAIOSFODNN7EXAMPLE", "user_type": holder})
        [runs] = plan_actions(alert.model_copy(update={"resources": (long_term,)}), MALICIOUS_CALLER)
        assert runs.status is ActionStatus.PLANNED


def test_malware_in_an_s3_object_quarantines_the_object() -> None:
    # Given a malicious file found in an S3 object
    alert = make_alert(type="Object:S3/MaliciousFile", resources=(OBJECT,))

    # When it is planned
    actions = plan_actions(alert, [ioc(IocType.FILE, SHA256, Verdict.MALICIOUS)])

    # Then the object is quarantined, named by its location, with its bucket and key
    assert planned(actions) == [
        ("quarantine_object", "s3://uploads/invoice.exe", {"bucket": "uploads", "key": "invoice.exe"})
    ]


def test_the_quarantine_names_the_version_and_etag_the_finding_scanned() -> None:
    # Given a malicious file in an S3 object whose finding names the version and ETag it scanned
    scanned = OBJECT.model_copy(
        update={"version_id": "3HL4kqtJlcpXroD", "etag": "546bb6ef89bebfb053999777f6930d7e"}
    )
    alert = make_alert(type="Object:S3/MaliciousFile", resources=(scanned,))

    # When it is planned
    actions = plan_actions(alert, [ioc(IocType.FILE, SHA256, Verdict.MALICIOUS)])

    # Then the action carries both, so that it moves that object and no other written at the key since
    assert planned(actions) == [
        (
            "quarantine_object",
            "s3://uploads/invoice.exe",
            {
                "bucket": "uploads",
                "key": "invoice.exe",
                "version_id": "3HL4kqtJlcpXroD",
                "etag": "546bb6ef89bebfb053999777f6930d7e",
            },
        )
    ]


def test_a_malicious_domain_without_any_resource_is_blocked() -> None:
    # Given an OCSF C&C finding that names no resource, with a malicious domain and a malicious IP
    alert = make_alert(type="Command and Control", resources=())
    iocs = [
        ioc(IocType.DOMAIN, "tawuhoju.com", Verdict.MALICIOUS),
        ioc(IocType.IP, "23.129.64.215", Verdict.MALICIOUS),
    ]

    # When it is planned with the default IP block (none)
    actions = plan_actions(alert, iocs)

    # Then only the domain block is planned
    assert planned(actions) == [("block_domain_dns_firewall", "tawuhoju.com", {})]


def test_every_instance_of_the_alert_is_acted_on_and_nothing_twice() -> None:
    # Given a C&C finding naming two instances, with two malicious domains
    second = Resource(type=ResourceType.INSTANCE, id="i-0fedcba9876543210", vpc_id="vpc-0a1b2c3d")
    alert = make_alert(type="Backdoor:EC2/C&CActivity.B!DNS", resources=(INSTANCE, second))
    iocs = [
        ioc(IocType.DOMAIN, "a-evil.com", Verdict.MALICIOUS),
        ioc(IocType.DOMAIN, "a-evil.com", Verdict.MALICIOUS),
    ]

    # When it is planned
    actions = plan_actions(alert, iocs)

    # Then each instance is isolated once and the domain is blocked once
    targets = [(action.type.value, action.target) for action in actions]
    assert targets.count(("isolate_instance", INSTANCE.id)) == 1
    assert targets.count(("isolate_instance", second.id)) == 1
    assert targets.count(("block_domain_dns_firewall", "a-evil.com")) == 1


# ---------------------------------------------------------------- custom playbooks and validation


def test_a_custom_file_with_glob_patterns_and_a_dry_run_action_plans_as_written(tmp_path: Path) -> None:
    # Given a team's file: miners found by a glob pattern are isolated, always in dry run, and tagged
    path = write_playbooks(
        tmp_path,
        {
            "playbooks": [
                {
                    "name": "miners",
                    "match": {
                        "finding_types": ["CryptoCurrency:EC2/*"],
                        "verdicts": [],
                        "resource_types": ["instance"],
                    },
                    "actions": [{"type": "isolate_instance", "dry_run": True}, {"type": "tag_instance"}],
                }
            ]
        },
    )

    # When it is loaded and a miner finding with no IOC at all is planned, and a backdoor finding
    playbooks = load_playbooks(path)
    miner = plan_actions(
        make_alert(type="CryptoCurrency:EC2/BitcoinTool.B", resources=(INSTANCE,)), [], playbooks
    )
    backdoor = plan_actions(make_alert(type="Backdoor:EC2/Spambot", resources=(INSTANCE,)), [], playbooks)

    # Then the miner is isolated in dry run whatever the global setting, and the backdoor matches nothing
    assert planned(miner) == [
        ("isolate_instance", INSTANCE.id, {"dry_run": "true"}),
        ("tag_instance", INSTANCE.id, {}),
    ]
    assert backdoor == []


@pytest.mark.parametrize(
    ("document", "named"),
    [
        (
            {"playbooks": [{"name": "x", "actions": [{"type": "reboot_instance"}]}]},
            "playbooks.0.actions.0.type",
        ),
        (
            {
                "playbooks": [
                    {
                        "name": "x",
                        "match": {"finding_type": ["Trojan"]},
                        "actions": [{"type": "tag_instance"}],
                    }
                ]
            },
            "playbooks.0.match.finding_type",
        ),
        ({"playbooks": [{"name": "x", "actions": []}]}, "playbooks.0.actions"),
        (
            {
                "playbooks": [
                    {"name": "x", "match": {"verdicts": ["evil"]}, "actions": [{"type": "tag_instance"}]}
                ]
            },
            "playbooks.0.match.verdicts.0",
        ),
        (
            {
                "playbooks": [
                    {
                        "name": "x",
                        "match": {"ioc_types": ["ip"]},
                        "actions": [{"type": "block_domain_dns_firewall"}],
                    }
                ]
            },
            "actions.0.type: block_domain_dns_firewall acts on domain IOCs",
        ),
        (
            {"playbooks": [{"name": "x", "match": {"verdicts": []}, "actions": [{"type": "block_ip"}]}]},
            "match.verdicts must not be empty",
        ),
        (
            {
                "playbooks": [
                    {
                        "name": "x",
                        "match": {"resource_types": ["access_key"]},
                        "actions": [{"type": "isolate_instance"}],
                    }
                ]
            },
            "acts on instance resources",
        ),
        (
            {
                "playbooks": [
                    {"name": "x", "actions": [{"type": "tag_instance"}]},
                    {"name": "x", "actions": [{"type": "tag_instance"}]},
                ]
            },
            "two playbooks are named 'x'",
        ),
    ],
)
def test_an_invalid_file_stops_with_a_configuration_error_naming_the_field(
    tmp_path: Path, document: dict[str, Any], named: str
) -> None:
    # Given a playbooks file with one mistake
    path = write_playbooks(tmp_path, document)

    # When it is loaded, Then it is refused, naming the file, the setting and the field at fault
    with pytest.raises(ConfigurationError) as refused:
        load_playbooks(path)
    message = str(refused.value)
    assert str(path) in message
    assert "PLAYBOOKS_PATH" in message
    assert named in message


def test_a_missing_or_broken_file_is_a_configuration_error(tmp_path: Path) -> None:
    # Given a path with no file, and a file that is not JSON
    broken = tmp_path / "broken.json"
    broken.write_text("{playbooks: ")

    # When they are loaded, Then each is refused with what is wrong
    with pytest.raises(ConfigurationError, match="cannot be read"):
        load_playbooks(tmp_path / "absent.json")
    with pytest.raises(ConfigurationError, match="not JSON"):
        load_playbooks(broken)


def test_the_shipped_file_names_every_default_playbook() -> None:
    # Given the shipped playbooks, When they are loaded, Then the six defaults are there, in order
    assert [playbook.name for playbook in default_playbooks().playbooks] == [
        "compromised-instance",
        "malicious-remote-ip",
        "malicious-api-caller",
        "malware-in-s3-object",
        "malicious-domain",
        "malicious-file-on-falcon-host",
    ]


# ---------------------------------------------------------------- settings


ENVIRONMENT = {
    "AWS_REGION": "eu-west-1",
    "CASES_TABLE_NAME": "cases",
    "ENRICHMENTS_TABLE_NAME": "enrichments",
    "STATE_MACHINE_ARN": "arn:aws:states:eu-west-1:123456789012:stateMachine:triage",
    "DEAD_LETTER_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/dlq",
    "VT_API_KEY_SECRET_NAME": "vtriage/virustotal-api-key",
    "ALERT_QUEUE_ARN": "arn:aws:sqs:eu-west-1:123456789012:AlertQueue",
    "PUSHED_ALERT_QUEUE_ARN": "arn:aws:sqs:eu-west-1:123456789012:PushedAlertQueue",
    "OWN_ACCOUNT_ID": "123456789012",
}


def test_playbook_settings_default_to_no_ip_block_medium_severity_and_a_day_of_repeats() -> None:
    # Given the enrich settings with none of the playbook variables, When they are read
    settings = EnrichSettings.from_environ(ENVIRONMENT)

    # Then the shipped playbooks, no IP block, tickets from medium severity and a 24 h repeat window apply
    assert settings.playbooks_path is None
    assert (settings.ip_block_method, settings.ticket_min_severity, settings.repeat_window_hours) == (
        "none",
        "medium",
        24,
    )


def test_playbook_settings_are_read_in_any_case_and_bad_values_are_named() -> None:
    # Given the variables set by a person, in capitals
    settings = EnrichSettings.from_environ(
        ENVIRONMENT | {"IP_BLOCK_METHOD": "NACL", "TICKET_MIN_SEVERITY": "High", "REPEAT_WINDOW_HOURS": "6"}
    )
    assert (settings.ip_block_method, settings.ticket_min_severity, settings.repeat_window_hours) == (
        "nacl",
        "high",
        6,
    )

    # When one is not a value they take, Then the error names the variable
    with pytest.raises(ConfigurationError, match="IP_BLOCK_METHOD"):
        EnrichSettings.from_environ(ENVIRONMENT | {"IP_BLOCK_METHOD": "iptables"})
    with pytest.raises(ConfigurationError, match="TICKET_MIN_SEVERITY"):
        EnrichSettings.from_environ(ENVIRONMENT | {"TICKET_MIN_SEVERITY": "urgent"})


# ---------------------------------------------------------------- routing


def _case(alert: Alert, verdict: Verdict, actions: list[Action] | None = None) -> Any:
    return make_case(alert, verdict=verdict, actions=actions or [])


def test_a_malicious_case_with_actions_is_remediated() -> None:
    # Given a malicious case with an isolation planned, When it is routed, Then it is remediated
    alert = make_alert(severity=Severity(score=2))
    case = _case(alert, Verdict.MALICIOUS, [Action(type=ActionType.ISOLATE_INSTANCE, target=INSTANCE.id)])
    assert choose_branch(case) is Branch.REMEDIATE


@pytest.mark.parametrize("verdict", [Verdict.MALICIOUS, Verdict.SUSPICIOUS])
def test_a_malicious_case_without_actions_or_a_suspicious_one_goes_to_a_person_at_any_severity(
    verdict: Verdict,
) -> None:
    # Given a low-severity case VirusTotal incriminates and no action, When it is routed, Then a ticket
    assert choose_branch(_case(make_alert(severity=Severity(score=1)), verdict)) is Branch.TICKET


def test_a_suspicious_case_with_actions_is_not_remediated() -> None:
    # Given a playbook that planned an action on a suspicious case, When it is routed, Then a person decides
    case = _case(make_alert(), Verdict.SUSPICIOUS, [Action(type=ActionType.TAG_INSTANCE, target=INSTANCE.id)])
    assert choose_branch(case) is Branch.TICKET


@pytest.mark.parametrize(
    ("score", "verdict", "threshold", "branch"),
    [
        (5.0, Verdict.UNKNOWN, "medium", Branch.TICKET),
        (4.0, Verdict.HARMLESS, "medium", Branch.TICKET),
        (3.9, Verdict.UNKNOWN, "medium", Branch.CLOSE),
        (8.0, Verdict.HARMLESS, "medium", Branch.TICKET),
        (5.0, Verdict.UNKNOWN, "high", Branch.CLOSE),
        (9.5, Verdict.UNKNOWN, "critical", Branch.TICKET),
        (1.0, Verdict.UNKNOWN, "low", Branch.TICKET),
        (0.0, Verdict.UNKNOWN, "low", Branch.TICKET),
    ],
)
def test_an_alert_virustotal_does_not_incriminate_is_ticketed_from_the_severity_threshold(
    score: float, verdict: Verdict, threshold: str, branch: Branch
) -> None:
    # Given an alert of this severity with only unknown or harmless IOCs (or none)
    case = _case(make_alert(severity=Severity(score=score)), verdict)

    # When it is routed with this threshold, Then it is ticketed at or above it and closed below it
    assert choose_branch(case, threshold) is branch


@pytest.mark.parametrize(("threshold", "branch"), [("low", Branch.TICKET), ("medium", Branch.CLOSE)])
def test_an_informational_alert_is_ranked_low_against_the_ticket_threshold(
    threshold: str, branch: Branch
) -> None:
    # Given an alert the detector rated informational, VirusTotal incriminating nothing
    case = _case(make_alert(severity=Severity(score=0, informational=True)), Verdict.UNKNOWN)

    # When it is routed, Then it is ranked as any low alert: ticketed from "low", closed under "medium"
    assert choose_branch(case, threshold) is branch


def test_a_case_stored_without_the_informational_flag_loads_as_it_did() -> None:
    # Given a severity as cases stored before the flag was kept, and one rated informational
    stored_before = Severity.model_validate({"score": 0.0})
    informational = Severity(score=0.0, informational=True)

    # Then the old one reads as it did, and an item stores the flag only when it is set
    assert (stored_before.label, stored_before.shown_label) == ("low", "low")
    assert stored_before.model_dump(mode="json") == {"score": 0.0}
    assert Severity.model_validate(informational.model_dump(mode="json")) == informational


def test_an_unknown_threshold_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="TICKET_MIN_SEVERITY"):
        choose_branch(_case(make_alert(), Verdict.UNKNOWN), "urgent")
