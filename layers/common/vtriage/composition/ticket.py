"""The ticket function's adapters: the configured provider, with its credentials from Secrets Manager."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import requests

from vtriage.adapters.dynamodb import DynamoCaseRepository
from vtriage.adapters.http_tickets import BasicCredentials, BearerToken
from vtriage.adapters.jira import JiraTicketSink
from vtriage.adapters.servicenow import ServiceNowTicketSink
from vtriage.adapters.sns import SnsTicketSink
from vtriage.adapters.swimlane import SwimlaneTicketSink
from vtriage.adapters.webhook import WebhookTicketSink
from vtriage.clock import utc_now
from vtriage.composition import SECRET_MAX_AGE_SECONDS, aws_client, case_repository, secrets_provider
from vtriage.config import TicketSettings
from vtriage.errors import ConfigurationError
from vtriage.ports import TicketSink


@dataclass(frozen=True)
class TicketDependencies:
    """What the ticket function acts through."""

    cases: DynamoCaseRepository
    sink: TicketSink


@cache
def ticket_dependencies(settings: TicketSettings) -> TicketDependencies:
    """The ticket function's adapters, built once per container."""
    return TicketDependencies(cases=case_repository(settings), sink=ticket_sink(settings))


def ticket_sink(settings: TicketSettings) -> TicketSink:
    """The configured ticket provider; the vendors' credentials come from the ticket secret."""
    if settings.ticket_provider == "sns":
        return SnsTicketSink(aws_client(settings, "sns"), settings.ticket_topic_arn, utc_now)
    assert settings.ticket_secret_name is not None  # the settings validator requires it for vendors
    secret = secrets_provider(settings)().get(
        settings.ticket_secret_name, transform="json", max_age=SECRET_MAX_AGE_SECONDS
    )
    if not isinstance(secret, dict):
        raise ConfigurationError(f"the secret {settings.ticket_secret_name} must hold a JSON object")
    fields = {str(key): str(value) for key, value in secret.items()}
    session = requests.Session()
    try:
        if settings.ticket_provider == "jira":
            assert settings.jira_base_url is not None
            assert settings.jira_project_key is not None
            return JiraTicketSink(
                session,
                settings.jira_base_url,
                BasicCredentials(fields["email"], fields["api_token"]),
                settings.jira_project_key,
                settings.jira_issue_type,
                now=utc_now,
            )
        if settings.ticket_provider == "servicenow":
            assert settings.servicenow_base_url is not None
            credentials: BasicCredentials | BearerToken = (
                BearerToken(fields["access_token"])
                if "access_token" in fields
                else BasicCredentials(fields["username"], fields["password"])
            )
            return ServiceNowTicketSink(session, settings.servicenow_base_url, credentials, now=utc_now)
        if settings.ticket_provider == "swimlane":
            assert settings.swimlane_base_url is not None
            assert settings.swimlane_application_id is not None
            return SwimlaneTicketSink(
                session,
                settings.swimlane_base_url,
                fields["access_token"],
                settings.swimlane_application_id,
                settings.swimlane_fields.model_dump(),
                now=utc_now,
            )
        return WebhookTicketSink(
            session, fields["url"], now=utc_now, signing_secret=fields.get("signing_secret")
        )
    except ConfigurationError as error:
        raise ConfigurationError(f"the secret {settings.ticket_secret_name}, key 'url': {error}") from None
    except KeyError as missing:
        raise ConfigurationError(
            f"the secret {settings.ticket_secret_name} lacks the key {missing} "
            f"that {settings.ticket_provider} needs"
        ) from None
