"""Builds the services a function needs from settings and the DynamoDB adapters, once per process."""

from __future__ import annotations

from datetime import timedelta
from functools import lru_cache

from tally.adapters.clock import system_clock
from tally.adapters.backfill_queue import SqsBackfillQueue
from tally.adapters.dynamo.backfills import DynamoBackfillStore, DynamoSegmentScan
from tally.adapters.dynamo.billing import DynamoApiKeyStore, DynamoBillingStore, DynamoMetricStore
from tally.adapters.dynamo.catalog import DynamoCatalogStore
from tally.adapters.dynamo.close_index import DynamoCloseIndex
from tally.adapters.dynamo.documents import DynamoContractStore, DynamoDocumentStore, DynamoGrantStore
from tally.adapters.dynamo.notifications import DynamoLifecycleIndex, DynamoNotificationStore
from tally.adapters.dynamo.counters import DynamoCounterStore
from tally.adapters.dynamo.events import DynamoEventStore
from tally.adapters.dynamo.invoices import DynamoInvoiceStore
from tally.adapters.dynamo.named_schedules import DynamoNamedScheduleStore
from tally.adapters.dynamo.alerts import DynamoAlertStore
from tally.adapters.dynamo.thresholds import DynamoThresholdStore
from tally.adapters.lambda_invoke import AsyncInvoker
from tally.adapters.memory import MemoryCounterStore
from tally.adapters.sns import SnsPublisher
from tally.services.aggregate import AggregateService, unsuffixed_writes_until
from tally.services.alerts import AlertService, LiveReadings
from tally.services.api_keys import ApiKeyService
from tally.services.notifications import NotificationService
from tally.services.backfill import BackfillService
from tally.services.balances import BalanceService, GrantBook
from tally.services.professional_services import ProServiceInvoicing
from tally.services.breakdowns import BreakdownService
from tally.services.catalog import CatalogService
from tally.services.historical_invoices import HistoricalInvoiceService
from tally.services.contract_transitions import ContractTransitionService
from tally.services.hierarchy import HierarchyService
from tally.services.contract_edits import ContractEditService
from tally.services.contracts import ContractService
from tally.services.customer_grant_edits import CustomerGrantEditService
from tally.services.cycle_close import CycleCloseService
from tally.services.customer_archive import CustomerArchiving
from tally.services.customer_costs import CustomerCostService
from tally.services.event_preview import EventPreviewService
from tally.services.customers import CustomerService
from tally.services.events_search import EventSearchService
from tally.services.ingest import IngestService
from tally.services.invoices import InvoiceService
from tally.services.metrics import MetricService
from tally.services.named_schedules import NamedScheduleService, ServiceOwners
from tally.services.rating_usage import CounterUsageSource
from tally.services.thresholds import ThresholdBillingService, ThresholdGrants
from tally.services.usage import UsageService
from tally.settings import get_settings


@lru_cache(maxsize=1)
def billing_store() -> DynamoBillingStore:
    return DynamoBillingStore(get_settings().require("billing_table"))


@lru_cache(maxsize=1)
def metric_store() -> DynamoMetricStore:
    return DynamoMetricStore(billing_store())


@lru_cache(maxsize=1)
def event_store() -> DynamoEventStore:
    return DynamoEventStore(get_settings().require("events_table"))


@lru_cache(maxsize=1)
def counter_store() -> DynamoCounterStore:
    return DynamoCounterStore(get_settings().require("counters_table"))


@lru_cache(maxsize=1)
def api_keys() -> ApiKeyService:
    return ApiKeyService(DynamoApiKeyStore(billing_store()), system_clock)


@lru_cache(maxsize=1)
def ingest_service() -> IngestService:
    return IngestService(event_store(), system_clock, billing_store().handovers)


@lru_cache(maxsize=1)
def aggregate_service() -> AggregateService:
    # Built once per process: records created past its start plus a grace were never applied to
    # unsuffixed counter items (services/aggregate.py).
    return AggregateService(counter_store(), metric_store(), system_clock, unsuffixed_writes_until(system_clock()))


@lru_cache(maxsize=1)
def customer_service() -> CustomerService:
    return CustomerService(billing_store(), system_clock)


@lru_cache(maxsize=1)
def backfill_queue() -> SqsBackfillQueue:
    return SqsBackfillQueue(lambda: get_settings().require("backfill_queue_url"))


@lru_cache(maxsize=1)
def backfill_service() -> BackfillService:
    settings = get_settings()
    return BackfillService(
        metric_store(),
        DynamoSegmentScan(settings.require("events_table")),
        counter_store(),
        DynamoBackfillStore(settings.require("billing_table")),
        backfill_queue(),
        system_clock,
        settle=timedelta(seconds=settings.backfill_settle_seconds),
        segments=settings.backfill_segments,
        stuck_after=None if settings.backfill_stuck_after_seconds is None
        else timedelta(seconds=settings.backfill_stuck_after_seconds),
        unsuffixed_until=unsuffixed_writes_until(system_clock()),  # as the aggregator's (services/backfill.py)
    )


@lru_cache(maxsize=1)
def metric_service() -> MetricService:
    return MetricService(metric_store(), system_clock, backfill_service())


@lru_cache(maxsize=1)
def catalog_service() -> CatalogService:
    return CatalogService(DynamoCatalogStore(get_settings().require("billing_table")), metric_store(), system_clock)


@lru_cache(maxsize=1)
def usage_service() -> UsageService:
    return UsageService(billing_store(), metric_store(), counter_store())


@lru_cache(maxsize=1)
def event_search_service() -> EventSearchService:
    return EventSearchService(event_store(), billing_store(), metric_store(), backfill_service())


@lru_cache(maxsize=1)
def contract_service() -> ContractService:
    # catalog_service() is the catalog's factory, defined in this module too.
    return ContractService(DynamoContractStore(get_settings().require("billing_table")), billing_store(), catalog_service(), system_clock)


def _documents(kind: str, sort_field: str) -> DynamoDocumentStore:
    if kind == "grant":  # customer-level commits and credits index their segments (notifications)
        return DynamoGrantStore(get_settings().require("billing_table"))
    return DynamoDocumentStore(get_settings().require("billing_table"), kind, sort_field)


@lru_cache(maxsize=1)
def grant_book() -> GrantBook:
    return GrantBook(
        contract_service(), _documents("grant", "created_at"), _documents("ledger_entry", "timestamp"), system_clock,
        threshold_commits=ThresholdGrants(threshold_store()).of_contract,
    )


@lru_cache(maxsize=1)
def threshold_store() -> DynamoThresholdStore:
    return DynamoThresholdStore(get_settings().require("billing_table"))


@lru_cache(maxsize=1)
def threshold_billing() -> ThresholdBillingService:
    return ThresholdBillingService(
        contract_service(),
        DynamoContractStore(get_settings().require("billing_table")),
        invoice_service(),
        balance_service(),
        threshold_store(),
        publisher(),
        # payment_gate.* messages are threshold notifications: the alerts topic (services/thresholds.py)
        lambda: get_settings().require("alerts_topic_arn"),
        system_clock,
    )


@lru_cache(maxsize=1)
def invoice_store() -> DynamoInvoiceStore:
    return DynamoInvoiceStore(get_settings().require("billing_table"))


@lru_cache(maxsize=1)
def invoice_service() -> InvoiceService:
    return InvoiceService(
        contract_service(),
        lambda customer: CounterUsageSource(customer, metric_store(), counter_store()),
        system_clock,
        grant_book(),
        invoice_store(),
    )


@lru_cache(maxsize=1)
def cycle_close_service() -> CycleCloseService:
    return CycleCloseService(
        invoice_service(),
        invoice_store(),
        billing_store(),
        publisher(),
        lambda: get_settings().require("invoices_topic_arn"),  # only publishing needs it
        system_clock,
        timedelta(hours=get_settings().grace_period_hours),
        lifecycle=DynamoLifecycleIndex(get_settings().require("billing_table")).record,
        index=DynamoCloseIndex(get_settings().require("billing_table")),
    )


@lru_cache(maxsize=1)
def notification_service() -> NotificationService:
    table = get_settings().require("billing_table")
    return NotificationService(
        DynamoNotificationStore(table),
        publisher(),
        lambda: get_settings().require("alerts_topic_arn"),  # only delivery needs it
        system_clock,
        contracts=DynamoContractStore(table).get,
        invoices=invoice_store().get,
        grants=DynamoGrantStore(table).get,
    )


@lru_cache(maxsize=1)
def contract_edit_service() -> ContractEditService:
    return ContractEditService(
        contract_service(), DynamoContractStore(get_settings().require("billing_table")), invoice_store(), system_clock
    )


@lru_cache(maxsize=1)
def event_preview_service() -> EventPreviewService:
    # MemoryCounterStore: the preview's counters live and die with the request.
    return EventPreviewService(
        customer_service(), invoice_service(), metric_store(), counter_store(), event_store(), MemoryCounterStore, system_clock
    )


@lru_cache(maxsize=1)
def customer_cost_service() -> CustomerCostService:
    return CustomerCostService(breakdown_service())


@lru_cache(maxsize=1)
def customer_archiving() -> CustomerArchiving:
    return CustomerArchiving(customer_service(), contract_service(), contract_edit_service())


@lru_cache(maxsize=1)
def customer_grant_edit_service() -> CustomerGrantEditService:
    return CustomerGrantEditService(_documents("grant", "created_at"), invoice_store(), contract_service())


@lru_cache(maxsize=1)
def contract_transition_service() -> ContractTransitionService:
    return ContractTransitionService(
        contract_service(), contract_edit_service(), DynamoContractStore(get_settings().require("billing_table"))
    )


@lru_cache(maxsize=1)
def hierarchy_service() -> HierarchyService:
    return HierarchyService(contract_service(), DynamoContractStore(get_settings().require("billing_table")))


@lru_cache(maxsize=1)
def historical_invoice_service() -> HistoricalInvoiceService:
    return HistoricalInvoiceService(contract_service(), invoice_store(), system_clock)


@lru_cache(maxsize=1)
def pro_service_invoicing() -> ProServiceInvoicing:
    return ProServiceInvoicing(
        contract_service(), DynamoContractStore(get_settings().require("billing_table")), invoice_store(), system_clock
    )


@lru_cache(maxsize=1)
def balance_service() -> BalanceService:
    return BalanceService(
        contract_service(),
        grant_book(),
        _documents("grant", "created_at"),
        _documents("ledger_entry", "timestamp"),
        invoice_service(),
        system_clock,
    )


@lru_cache(maxsize=1)
def breakdown_service() -> BreakdownService:
    return BreakdownService(invoice_service())


@lru_cache(maxsize=1)
def named_schedule_service() -> NamedScheduleService:
    return NamedScheduleService(
        DynamoNamedScheduleStore(get_settings().require("billing_table")),
        ServiceOwners(catalog_service(), contract_service()),
        system_clock,
    )


@lru_cache(maxsize=1)
def publisher() -> SnsPublisher:
    return SnsPublisher()


def _credit_type_known(credit_type_id: str) -> bool:
    from tally.billing.errors import NotFound

    try:
        catalog_service().credit_type(credit_type_id)
    except NotFound:
        return False
    return True


@lru_cache(maxsize=1)
def alert_service() -> AlertService:
    settings = get_settings()
    function = settings.alerts_function_name
    return AlertService(
        DynamoAlertStore(settings.require("billing_table")),
        billing_store(),
        metric_store(),
        _credit_type_known,
        LiveReadings(metric_store(), counter_store(), invoice_service(), balance_service(), system_clock),
        publisher(),
        lambda: get_settings().require("alerts_topic_arn"),
        system_clock,
        evaluate_later=AsyncInvoker(function).invoke if function else None,
        thresholds=threshold_billing(),
        family=invoice_service().family,
    )


@lru_cache(maxsize=1)
def billing_provider_service():
    from tally.adapters.dynamo.billing_providers import customer_config_documents, delivery_method_documents
    from tally.adapters.secrets import SecretsManagerVault
    from tally.services.billing_providers import BillingProviderService

    table = get_settings().require("billing_table")
    return BillingProviderService(
        delivery_method_documents(table), customer_config_documents(table), SecretsManagerVault(),
        customer_service(), lambda: get_settings().billing_provider_secrets_prefix, system_clock,
    )


@lru_cache(maxsize=1)
def delivery_state_store():
    from tally.adapters.dynamo.billing_providers import DynamoDeliveryStateStore

    return DynamoDeliveryStateStore(get_settings().require("billing_table"))


@lru_cache(maxsize=1)
def invoice_delivery_service():
    # Imported here: only the delivery function ships with (and loads) the stripe SDK's use.
    from tally.adapters.secrets import SecretsManagerVault
    from tally.adapters.stripe_gateway import StripeGateway
    from functools import partial

    from tally.services.invoice_delivery import InvoiceDeliveryService
    from tally.services.threshold_payments import collected_by_gate

    settings = get_settings()
    return InvoiceDeliveryService(
        invoice_store(), billing_provider_service(), delivery_state_store(),
        SecretsManagerVault(), StripeGateway(settings.stripe_api_base), publisher(),
        lambda: get_settings().require("invoices_topic_arn"), system_clock,
        contracts=DynamoContractStore(settings.require("billing_table")).get,  # the configuration a contract names
        # an invoice a threshold's STRIPE payment gate collected already is recorded, not billed again
        collected=partial(collected_by_gate, threshold_store()),
    )


@lru_cache(maxsize=1)
def aws_invoice_delivery_service():
    """Invoices delivered through AWS: AWS Marketplace metering, a customer's SNS topic or SQS queue."""
    from tally.adapters.aws_destinations import AwsDestinations
    from tally.adapters.dynamo.aws_deliveries import DynamoAwsDeliveryStore
    from tally.adapters.dynamo.billing_providers import delivery_method_documents
    from tally.api.invoice_models import invoice_json
    from tally.services.aws_invoice_delivery import AwsInvoiceDelivery
    from tally.services.invoices import DraftInvoice

    table = get_settings().require("billing_table")

    def render(record) -> dict:  # the invoice as GET /v1/customers/{id}/invoices/{invoice_id} answers it
        draft = DraftInvoice(record.id, record.invoice, None, record.regenerated_from_invoice_id)
        return invoice_json(draft, contract_service().products())

    return AwsInvoiceDelivery(
        invoice_store(), billing_provider_service(), delivery_method_documents(table).get,
        DynamoAwsDeliveryStore(table), delivery_state_store(), AwsDestinations(), render, publisher(),
        lambda: get_settings().require("invoices_topic_arn"), system_clock,
        contracts=DynamoContractStore(table).get,  # the configuration a contract names
    )


@lru_cache(maxsize=1)
def threshold_payment_service():
    """The STRIPE payment gate's charges (the delivery function). Its ThresholdBillingService only
    settles crossings: it reads no usage, so the function needs no counters or events table."""
    from tally.adapters.secrets import SecretsManagerVault
    from tally.adapters.stripe_payments import StripePayments
    from tally.services.threshold_payments import ThresholdPaymentService

    settings = get_settings()
    settling = ThresholdBillingService(
        contract_service(), DynamoContractStore(settings.require("billing_table")), None, None, threshold_store(),
        publisher(), lambda: get_settings().require("alerts_topic_arn"), system_clock,
    )
    return ThresholdPaymentService(settling, threshold_store(), billing_provider_service(), SecretsManagerVault(),
                                   StripePayments(settings.stripe_api_base), system_clock,
                                   contracts=DynamoContractStore(settings.require("billing_table")).get)


def reset() -> None:
    """Forget cached settings and clients (the local runtime redeploys within one process)."""
    import sys

    from tally.adapters.dynamo.client import dynamodb
    from tally.settings import get_settings

    from tally.adapters.backfill_queue import sqs_client
    from tally.adapters.lambda_invoke import lambda_client
    from tally.adapters.sns import sns_client

    from tally.adapters.secrets import secrets_client

    get_settings.cache_clear()
    secrets_client.cache_clear()
    dynamodb.cache_clear()
    sns_client.cache_clear()
    lambda_client.cache_clear()
    sqs_client.cache_clear()
    module = sys.modules[__name__]
    for name in dir(module):
        candidate = getattr(module, name)
        if hasattr(candidate, "cache_clear") and getattr(candidate, "__module__", None) == __name__:
            candidate.cache_clear()


@lru_cache(maxsize=1)
def custom_field_service():
    from tally.adapters.dynamo.custom_fields import DynamoCustomFieldStore
    from tally.adapters.dynamo.packages import DynamoPackageStore
    from tally.services.custom_fields import CustomFieldService

    table = get_settings().require("billing_table")
    return CustomFieldService(
        DynamoCustomFieldStore(table), billing_store(), DynamoCatalogStore(table), DynamoContractStore(table), system_clock,
        _documents("grant", "created_at"), DynamoPackageStore(table), alerts=DynamoAlertStore(table),
        invoices=DynamoInvoiceStore(table),
    )


@lru_cache(maxsize=1)
def package_service():
    from tally.adapters.dynamo.packages import DynamoPackageStore
    from tally.api.contract_models import ContractCreate  # a package is checked as the contract create it makes
    from tally.services.packages import PackageService

    table = get_settings().require("billing_table")
    return PackageService(
        DynamoPackageStore(table), DynamoContractStore(table), contract_service(),
        lambda body: ContractCreate.model_validate(body).to_document(), system_clock,
    )


@lru_cache(maxsize=1)
def audit_log_service():
    from tally.adapters.dynamo.audit import DynamoAuditLogStore
    from tally.services.audit_logs import AuditLogService

    return AuditLogService(DynamoAuditLogStore(get_settings().require("billing_table")))


@lru_cache(maxsize=1)
def deployment_services():
    from tally.adapters.network import addresses_of
    from tally.services.deployment_services import DeploymentServices

    settings = get_settings()
    return DeploymentServices(settings.api_url, settings.region, settings.egress_ips, addresses_of)


@lru_cache(maxsize=1)
def page_links():
    """Mints and verifies public page links (tally.services.page_links), signed with the stack's
    generated key, read on first use and cached (tally.adapters.secrets.PageSigningKeys)."""
    from tally.adapters.secrets import PageSigningKeys
    from tally.services.page_links import PageLinks

    keys = PageSigningKeys(lambda: get_settings().require("page_signing_secret_arn"))
    return PageLinks(keys, system_clock, lambda: get_settings().api_url)


@lru_cache(maxsize=1)
def dashboard_service():
    from tally.services.dashboards import DashboardService

    return DashboardService(
        invoice_service(), usage_service(), balance_service(), contract_service().products,
        metric_store().all, catalog_service().credit_type_names, page_links(), system_clock,
    )
