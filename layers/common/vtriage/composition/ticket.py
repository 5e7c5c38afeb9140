"""The ticket function's adapters: the configured provider, with its credentials from Secrets Manager; the
enrichments table, read for each report; with ApprovalLinksInTickets=true, the approval function, asked to
hold a waiting action and answer its links for the ticket."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import requests
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

from vtriage.adapters.approval_requests import LambdaApprovalRequests
from vtriage.adapters.dynamodb import DynamoEnrichmentRecords
from vtriage.adapters.http_tickets import BasicCredentials, BearerToken
from vtriage.adapters.jira import JiraTicketSink
from vtriage.adapters.servicenow import ServiceNowTicketSink
from vtriage.adapters.sns import SnsTicketSink
from vtriage.adapters.swimlane import SwimlaneTicketSink
from vtriage.adapters.webhook import WebhookTicketSink
from vtriage.approval import case_page_link
from vtriage.clock import utc_now
from vtriage.composition import (
    SECRET_MAX_AGE_SECONDS,
    aws_client,
    built_once,
    case_repository,
    secrets_provider,
)
from vtriage.config.ticket import TicketSettings
from vtriage.errors import ConfigurationError
from vtriage.ports import TicketSink
from vtriage.ticket import CasePageLink, TicketDesk

logger = Logger(child=True)


@dataclass(frozen=True)
class TicketDependencies:
    """What the ticket function acts through: its steps over its adapters."""

    desk: TicketDesk


@built_once
def ticket_dependencies(settings: TicketSettings) -> TicketDependencies:
    """The ticket function's adapters, built once per container; the ticket provider when a step first
    needs it (reading its secret may fail: that must not stop an approval from being asked for)."""
    return TicketDependencies(
        desk=TicketDesk(
            cases=case_repository(settings),
            sink=lazy_ticket_sink(settings),
            enrichments=DynamoEnrichmentRecords(aws_client(settings, "dynamodb"), settings.enrichments_table)
            if settings.enrichments_table
            else None,
            # Only with ApprovalLinksInTickets=true may the ticket function ask for a link that decides (its
            # role may invoke the approval function then alone); by default it never does.
            approvals=LambdaApprovalRequests(aws_client(settings, "lambda"), settings.approval_function_name)
            if settings.approval_links_in_tickets and settings.approval_function_name
            else None,
            case_page_link=case_page_links(settings),
        )
    )


def lazy_ticket_sink(settings: TicketSettings) -> Callable[[], TicketSink]:
    """The configured provider, made on the first call and kept; a secret that cannot be read is a
    ConfigurationError naming it, raised by the call (and tried again by the next one)."""
    lock = threading.Lock()
    made: list[TicketSink] = []

    def sink() -> TicketSink:
        with lock:
            if not made:
                try:
                    made.append(ticket_sink(settings))
                except GetParameterError as error:
                    raise ConfigurationError(
                        f"the ticket provider's secret cannot be read: {error}"
                    ) from None
            return made[0]

    return sink


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
