"""GuardDutyFindingsVia chooses which copy of a GuardDuty finding vtriage reads, so that each is read once:
GuardDuty's own event (its EventBridge rule enabled, Security Hub's copy acknowledged without a case) or
Security Hub's copy (the rule disabled, the copy read: with cross-Region aggregation, findings of every
linked Region arrive that way). Read from template.yaml as CloudFormation resolves it, the setting
through the settings model the enrich and intake functions load."""

from __future__ import annotations

import json
from typing import Any

import pytest

from vtriage.config.alerts import AlertReadingSettings
from vtriage_local.template import PROJECT_ROOT, choose_if, functions, load_template

# A member account's GuardDuty finding in eu-west-1 as Security Hub's aggregation delivers it to the home
# Region (events/PROVENANCE.md).
SECURITY_HUB_COPY = PROJECT_ROOT / "events" / "synthetic-securityhub-guardduty-member-account-c2-dns.json"
READERS = ("EnrichFunction", "IntakeFunction")


def _reads_security_hubs_copy(template: dict[str, Any], function: str, parameters: dict[str, str]) -> bool:
    """Whether the function, deployed with these parameters, makes an alert of Security Hub's copy."""
    raw = functions(template)[function].environment["SKIP_GUARDDUTY_IN_SECURITYHUB"]
    settings = AlertReadingSettings.from_environ(
        {
            "AWS_REGION": "us-east-1",
            "CASES_TABLE_NAME": "vtriage-cases",
            "SKIP_GUARDDUTY_IN_SECURITYHUB": str(choose_if(raw, template, parameters)),
        }
    )
    result = settings.intake.read(json.loads(SECURITY_HUB_COPY.read_text()))
    assert len(result.alerts) + len(result.ignored) == 1
    return bool(result.alerts)


def test_guardduty_findings_come_through_guardduty_unless_told_otherwise() -> None:
    # Given the parameter, Then it offers both paths, GuardDuty's own by default (vtriage's behaviour
    # before the parameter existed)
    parameter = load_template()["Parameters"]["GuardDutyFindingsVia"]
    assert parameter["AllowedValues"] == ["guardduty", "securityhub"]
    assert parameter["Default"] == "guardduty"


@pytest.mark.parametrize(
    "via", ["guardduty", "securityhub", None], ids=["guardduty", "securityhub", "default"]
)
def test_each_guardduty_finding_is_read_through_one_path_only(via: str | None) -> None:
    # Given the template deployed with GuardDutyFindingsVia (or without it)
    template = load_template()
    parameters = {} if via is None else {"GuardDutyFindingsVia": via}

    # When CloudFormation resolves GuardDuty's rule, and each reading function loads its settings
    rules = template["Resources"]
    guardduty_rule = choose_if(rules["GuardDutyFindingsRule"]["Properties"]["State"], template, parameters)
    security_hub_rule = choose_if(
        rules["SecurityHubFindingsRule"]["Properties"]["State"], template, parameters
    )
    copy_read = {function: _reads_security_hubs_copy(template, function, parameters) for function in READERS}

    # Then either GuardDuty's own events reach the queue and Security Hub's copy is acknowledged, or the
    # rule is disabled and the copy is read, by the enrich function and the intake alike: never both, and
    # never neither (Security Hub's rule stays enabled for its own findings)
    through_guardduty = via in {"guardduty", None}
    assert guardduty_rule == ("ENABLED" if through_guardduty else "DISABLED")
    assert security_hub_rule == "ENABLED"
    assert copy_read == dict.fromkeys(READERS, not through_guardduty)
