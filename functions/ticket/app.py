"""Ticket function: opens each case's ticket with a readable report (its VirusTotal context read from the
enrichments table), tells it which actions wait for a person and who decides (with
ApprovalLinksInTickets=true: asks the approval function to hold a waiting action and puts its links on the
ticket), and tells the ticket of each decision and of the case's outcome."""

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from vtriage.clock import utc_now
from vtriage.composition.ticket import ticket_dependencies
from vtriage.config.ticket import TicketSettings
from vtriage.ticket import ticket_task

logger = Logger()


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Carry out the ticket step the state machine's payload names (`vtriage.ticket.TicketDesk`)."""
    dependencies = ticket_dependencies(TicketSettings.from_environ())
    result = dependencies.desk.handle(ticket_task(event), utc_now())
    return result.model_dump(mode="json")
