"""Every /v1/* route but ingest, and /v2/*: customers, metrics, usage, events, catalog, contracts;
GET /openapi.json; and the public pages, GET /pages/* (a signed token instead of an API key)."""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from tally import wiring
from tally.runtime import freeze_when_warm
from tally.api.app import build_resolver
from tally.api.routes import (
    alerts, audit_logs, balances, billing_providers, catalog, contract_edits, contracts, contracts_v2, custom_fields, customers, dashboards, events, invoices, metrics,
    named_schedules, notifications, openapi_document, packages, pages, rate_schedules, thresholds, usage,
)

logger = Logger(service="tally-api")
app = build_resolver(
    [customers.router, metrics.router, usage.router, events.router, contracts.router, contracts_v2.router, contract_edits.router, catalog.router, balances.router, alerts.router, invoices.router,
     rate_schedules.router, named_schedules.router, thresholds.router, billing_providers.router, custom_fields.router, packages.router, notifications.router, audit_logs.router,
     dashboards.router, openapi_document.router, pages.router],
    wiring.api_keys,
    audit_clock=wiring.system_clock,
    pages=wiring.page_links,
)


@freeze_when_warm
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
