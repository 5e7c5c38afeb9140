"""Ticket function: opens a ticket with a readable case report, stored on the case and sent to SNS."""

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from vtriage.clock import utc_now
from vtriage.composition.ticket import ticket_dependencies
from vtriage.config import TicketSettings
from vtriage.models import TaskInput
from vtriage.ticket import open_ticket

logger = Logger()


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Open (or return the existing) ticket for the case named in the payload."""
    dependencies = ticket_dependencies(TicketSettings.from_environ())
    task, now = TaskInput.model_validate(event), utc_now()
    case_page = dependencies.case_page_link(task.case_id, now)
    result = open_ticket(task, dependencies.cases, dependencies.sink, now, case_page=case_page)
    return result.model_dump(mode="json")
