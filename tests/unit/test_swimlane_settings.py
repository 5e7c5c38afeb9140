"""The ticket function's Swimlane settings: the instance, the application, the field mapping
(SWIMLANE_FIELDS, a JSON object over documented defaults), each checked when the function starts."""

from __future__ import annotations

import pytest

from vtriage.adapters.swimlane import MAPPED
from vtriage.config.enrich import EnrichSettings
from vtriage.config.ticket import SwimlaneFields, TicketSettings
from vtriage.errors import ConfigurationError

SWIMLANE = {
    "AWS_REGION": "eu-west-1",
    "CASES_TABLE_NAME": "cases",
    "TICKET_TOPIC_ARN": "arn:aws:sns:eu-west-1:123456789012:tickets",
    "TICKET_PROVIDER": "swimlane",
    "TICKET_SECRET_NAME": "vtriage/swimlane",
    "SWIMLANE_BASE_URL": "https://swimlane.example.com",
    "SWIMLANE_APPLICATION_ID": "aBcDeFgHiJkLmNoPq",
}
ENRICH = {
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
DEFAULT_MAPPING = {
    "case_id": "vtriage Case ID",
    "title": "Title",
    "severity": "Severity",
    "verdict": "Verdict",
    "report": "Description",
    "comments": "Comments",
}


@pytest.mark.parametrize("fields", [None, "", "  "])
def test_without_a_field_mapping_the_documented_defaults_stand(fields: str | None) -> None:
    # Given Swimlane configured without SWIMLANE_FIELDS, or with it empty (the template's default)
    environment = SWIMLANE if fields is None else {**SWIMLANE, "SWIMLANE_FIELDS": fields}

    # When the settings are read, Then each value goes to the field the README names
    assert TicketSettings.from_environ(environment).swimlane_fields.model_dump() == DEFAULT_MAPPING


def test_a_field_mapping_replaces_the_defaults_key_by_key_and_null_leaves_a_value_out() -> None:
    # Given a mapping naming the case id field by id and leaving the verdict out
    environment = {**SWIMLANE, "SWIMLANE_FIELDS": '{"case_id": "a1b2c", "verdict": null}'}

    # When the settings are read, Then those two change and every other value keeps its default
    assert TicketSettings.from_environ(environment).swimlane_fields.model_dump() == {
        **DEFAULT_MAPPING,
        "case_id": "a1b2c",
        "verdict": None,
    }


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ("{case_id: a1b2c}", r"SWIMLANE_FIELDS: Value error, not JSON \(Expecting property name"),
        ('["a1b2c"]', "SWIMLANE_FIELDS: Value error, must be a JSON object of the values vtriage writes"),
        ('{"priority": "Priority"}', "SWIMLANE_FIELDS.priority: Extra inputs are not permitted"),
        ('{"case_id": null}', "SWIMLANE_FIELDS.case_id: Input should be a valid string"),
        ('{"comments": ""}', "SWIMLANE_FIELDS.comments: String should have at least 1 character"),
        ('{"title": 3}', "SWIMLANE_FIELDS.title: Input should be a valid string"),
    ],
)
def test_a_field_mapping_that_cannot_be_read_stops_the_ticket_function(fields: str, problem: str) -> None:
    # Given SWIMLANE_FIELDS that is no JSON object of known values, each a field (case id and comments
    # never left out)
    environment = {**SWIMLANE, "SWIMLANE_FIELDS": fields}

    # When the ticket function reads its settings, Then it stops, naming the variable and what is wrong
    with pytest.raises(ConfigurationError, match=problem):
        TicketSettings.from_environ(environment)


@pytest.mark.parametrize("missing", ["SWIMLANE_BASE_URL", "SWIMLANE_APPLICATION_ID", "TICKET_SECRET_NAME"])
def test_swimlane_needs_its_instance_application_and_secret(missing: str) -> None:
    # Given TICKET_PROVIDER=swimlane without one of what it needs (the template passes it empty)
    environment = {**SWIMLANE, missing: ""}

    # When the settings are read, Then the error names it
    with pytest.raises(ConfigurationError, match=f"TICKET_PROVIDER=swimlane needs {missing}"):
        TicketSettings.from_environ(environment)


@pytest.mark.parametrize("application_id", ["aBc/../user", "aBc?x=1", "a" * 65])
def test_an_application_id_that_is_no_swimlane_id_is_refused(application_id: str) -> None:
    # Given an application id that would change the API's path, or too long to be an id
    environment = {**SWIMLANE, "SWIMLANE_APPLICATION_ID": application_id}

    # When the settings are read, Then the variable is named
    with pytest.raises(ConfigurationError, match="SWIMLANE_APPLICATION_ID"):
        TicketSettings.from_environ(environment)


def test_findings_naming_the_swimlane_host_are_never_looked_up_nor_acted_on() -> None:
    # Given the enrich function told the deployment's Swimlane instance
    settings = EnrichSettings.from_environ({**ENRICH, "SWIMLANE_BASE_URL": "https://SOAR.corp.example/"})

    # Then intake treats its host as the deployment's own
    assert "soar.corp.example" in settings.intake.never_act_hosts


def test_every_value_the_mapping_accepts_is_one_the_sink_writes() -> None:
    # Given the settings' field mapping and the values the Swimlane sink maps to fields
    # Then they are the same, in the same order: no key SWIMLANE_FIELDS accepts is silently unused
    assert tuple(SwimlaneFields.model_fields) == MAPPED
