"""The Lambda tasks of the close-billing-periods state machine: one handler per task state.

Errors propagate: Step Functions matches their class names in Retry and Catch."""

from datetime import timedelta

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from tally import wiring
from tally.runtime import freeze_when_warm
from tally.services import cycle_close_tasks as tasks
from tally.services import notifications as notification_tasks
from tally.settings import get_settings

logger = Logger(service="tally-close-periods")


@freeze_when_warm
@logger.inject_lambda_context(clear_state=True)
def find_due_periods(event: dict, context: LambdaContext) -> dict:
    settings = get_settings()
    grace = timedelta(hours=settings.grace_period_hours)
    return tasks.find_due_periods(
        event, wiring.cycle_close_service(), grace, pages_per_execution=settings.close_pages_per_execution
    )


@freeze_when_warm
@logger.inject_lambda_context(clear_state=True)
def finalize_period(event: dict, context: LambdaContext) -> dict:
    return tasks.finalize_period(
        event, wiring.cycle_close_service(), lambda customer_id: wiring.alert_service().evaluate_customer(customer_id)
    )


@freeze_when_warm
@logger.inject_lambda_context(clear_state=True)
def publish_invoices(event: dict, context: LambdaContext) -> dict:
    return tasks.publish_invoices(event, wiring.cycle_close_service())


@freeze_when_warm
@logger.inject_lambda_context(clear_state=True)
def deliver_notifications(event: dict, context: LambdaContext) -> dict:
    return notification_tasks.deliver_notifications(event, wiring.notification_service())
