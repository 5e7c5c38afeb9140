"""Approval function: sends the approve and reject links of a waiting action, takes the decision a
person makes on them through its function URL (no AWS login: the signed token is the authority), and
shows a case's page to whoever holds its signed case page link."""

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from vtriage.approval import ApprovalRequest, request_approval
from vtriage.approval_page import answer
from vtriage.composition.approval import approval_dependencies
from vtriage.config.approval import ApprovalSettings

logger = Logger()


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """A function URL request from a person, or a request for an approval: the state machine's waiting
    step's, or with ApprovalLinksInTickets=true the ticket function's."""
    settings = ApprovalSettings.from_environ()
    dependencies = approval_dependencies(settings)
    now = datetime.now(UTC)
    if "requestContext" in event:
        return answer(
            event,
            key=dependencies.signing_key(),
            store=dependencies.store,
            cases=dependencies.cases,
            callback=dependencies.callback,
            now=now,
            case_page_key=dependencies.case_page_key() if dependencies.case_page_key else None,
            widgets=dependencies.widgets,
        )
    links = request_approval(
        ApprovalRequest.model_validate(event),
        dependencies.cases,
        store=dependencies.store,
        notifier=dependencies.notifier,
        key=dependencies.signing_key(),
        now=now,
    )
    # The links are the authority to decide: they go to people, and, with ApprovalLinksInTickets=true, back
    # to the ticket function that asked (a direct invocation, for the case's ticket). By default the waiting
    # step asks, and its answer may be kept in the execution's history: it holds no link.
    if settings.approval_links_in_tickets:
        return links.model_dump(mode="json")
    return {"case_id": event["case_id"], "index": event["index"], "expires_at": str(links.expires_at)}
