"""The ticket function's adapters: the configured provider, with its credentials from Secrets Manager."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import cache

import requests
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

from vtriage.adapters.dynamodb import DynamoCaseRepository
from vtriage.adapters.http_tickets import BasicCredentials, BearerToken
from vtriage.adapters.jira import JiraTicketSink
from vtriage.adapters.servicenow import ServiceNowTicketSink
from vtriage.adapters.sns import SnsTicketSink
from vtriage.adapters.swimlane import SwimlaneTicketSink
from vtriage.adapters.webhook import WebhookTicketSink
from vtriage.approval import case_page_link
from vtriage.clock import utc_now
from vtriage.composition import SECRET_MAX_AGE_SECONDS, aws_client, case_repository, secrets_provider
from vtriage.config import TicketSettings
from vtriage.errors import ConfigurationError
from vtriage.ports import TicketSink
from vtriage.ticket import CasePageLink

logger = Logger(child=True)


@dataclass(frozen=True)
class TicketDependencies:
    """What the ticket function acts through."""

    cases: DynamoCaseRepository
    sink: TicketSink
    # The case page link of a case, made now; None when none is configured or its key cannot be read.
    case_page_link: Callable[[str, datetime], CasePageLink | None]


@cache
def ticket_dependencies(settings: TicketSettings) -> TicketDependencies:
    """The ticket function's adapters, built once per container."""
    return TicketDependencies(
        cases=case_repository(settings), sink=ticket_sink(settings), case_page_link=case_page_links(settings)
    )


def case_page_links(settings: TicketSettings) -> Callable[[str, datetime], CasePageLink | None]:
    """What makes each ticket's case page link (APPROVAL_URL, signed with the key CASE_PAGE_KEY_SECRET
    names): None when neither is set, and when the key cannot be read, so that the ticket opens without
    the link rather than not at all."""
    secrets = secrets_provider(settings)

    def link(case_id: str, now: datetime) -> CasePageLink | None:
        if settings.approval_url is None or settings.case_page_key_secret is None:
            return None
        try:
            key = str(secrets().get(settings.case_page_key_secret, max_age=SECRET_MAX_AGE_SECONDS)).encode()
        except GetParameterError as error:
            logger.warning("the ticket goes without its case page link", extra={"reason": str(error)})
            return None
        return case_page_link(settings.approval_url, case_id, key, now, settings.case_page_link_valid_for)

    return link


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
