"""The OpenAPI 3.1 document of every route Tally serves.

Request bodies come from the pydantic models the routes validate with; success bodies from
metronome-sdk's response types (what a client with `_strict_response_validation=True` accepts),
or Tally's own models where the SDK has none. The document is generated here and committed as
`openapi.json` beside this module, which `GET /openapi.json` serves: metronome-sdk is a dev
dependency, so the Lambda only ever reads the file.

Regenerate the file with `python -m tally.api.openapi`; `--check` fails if it is stale.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Optional

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, create_model

from tally.api import routes
from tally.api.historical_invoice_models import CreateHistoricalInvoices
from tally.api.balance_models import (
    CustomerBalancesList,
    CustomerCommitCreate,
    CustomerCreditCreate,
    CustomerGrantsList,
    GrantEndDateUpdate,
    ManualEntryRequest,
    NetBalanceRequest,
)
from tally.api.catalog_models import (
    CreditTypeArchive,
    CreditTypeCreate,
    ProductArchive,
    ProductCreate,
    ProductGet,
    ProductList,
    ProductUpdate,
    RateAdd,
    RateCardCreate,
    RateCardId,
    RateCardList,
    RateCardProductOrderSet,
    RateCardProductsMove,
    RateCardUpdate,
    RatesAdd,
    RatesGet,
)
from tally.api.contract_models import (
    ContractArchive,
    ContractCreate,
    ContractList,
    ContractRef,
    ContractUpdateEndDate,
    SeatBalancesList,
    ScheduleProServicesInvoice,
    SubscriptionQuantityHistory,
    SubscriptionSeatsHistory,
)
from tally.api.contract_amend_models import ContractAmend
from tally.api.contract_edit_models import ContractEdit, ContractEditHistory
from tally.api.grant_edit_models import CommitEdit, CreditEdit
from tally.api.contract_v2_models import ContractV2Get, ContractV2List
from tally.api.usage_filter_models import UsageFilterSet
from tally.api import named_schedule_models as named
from tally.api import custom_field_models as cf
from tally.api import package_models as pk
from tally.api.errors import ErrorBody
from tally.api.rate_schedule_models import ContractScheduleGet, RateCardScheduleGet
from tally.api.models import (
    CustomerArchive,
    CustomerPreviewEvents,
    CustomerCreate,
    CustomerSetName,
    CustomerUpdateConfig,
    EventsSearch,
    MetricArchive,
    MetricUpdate,
    MetricCreate,
    SetIngestAliases,
    UsageGroups,
    UsageList,
)
from tally.api.page_models import InvoiceHostedUrlRequest, InvoiceHostedUrlResponse
from tally.api.pagination import MAX_LIMIT
from tally.api.routes.alerts import AlertArchive, AlertCreate, CustomerAlertList, CustomerAlertRef
from tally.api.routes.invoices import InvoiceRef
from tally.api.dashboard_models import DashboardUrlRequest
from tally.services.page_links import PUBLIC_PREFIX
from tally.api.threshold_models import ThresholdBillingRelease
from tally.api.notification_models import (
    NotificationCreate,
    NotificationEdit,
    NotificationList,
    NotificationRef,
    SystemNotificationList,
)
from tally.api.billing_provider_models import (
    AvalaraCredentialsUpsert,
    BillingConfigCreate,
    BillingProviderList,
    BillingProviderSetUp,
    CustomerBillingConfigurationsArchive,
    CustomerBillingConfigurationsGet,
    CustomerBillingConfigurationsSet,
)
from tally.billing.events import UsageEventIn
from tally.billing.limits import MAX_EVENTS_PER_REQUEST, MAX_ID_LENGTH

DOCUMENT_PATH = Path(__file__).with_name("openapi.json")
REGENERATE = "python -m tally.api.openapi"


# -- Tally's own response bodies (the SDK's method returns None for these) -----------------------
class IngestAccepted(BaseModel):
    accepted: int = Field(description="events stored for the first time")
    duplicates: int = Field(description="events whose transaction_id was already stored or repeated")


class Empty(BaseModel):
    model_config = ConfigDict(extra="forbid", title="Empty")


class OpenApiDocument(BaseModel):
    model_config = ConfigDict(extra="allow", title="OpenApiDocument")
    openapi: str


UsageBatch = Annotated[list[UsageEventIn], Field(min_length=1, max_length=MAX_EVENTS_PER_REQUEST)]


# -- query and path parameters (routes read these from the event by hand) ------------------------
@dataclass(frozen=True)
class Param:
    name: str
    schema: dict
    where: str = "query"
    required: bool = False

    def spec(self) -> dict:
        spec: dict[str, Any] = {"name": self.name, "in": self.where, "schema": self.schema}
        if self.where == "path" or self.required:
            spec["required"] = True
        elif self.schema.get("type") == "array":
            spec |= {"style": "form", "explode": False}  # one comma-separated value, as routes split it
        return spec


def _path(name: str) -> Param:
    return Param(name, {"type": "string", "minLength": 1}, "path")


_STRING = {"type": "string"}
_BOOLEAN = {"type": "boolean"}
_INSTANT = {"type": "string", "format": "date-time"}
LIMIT = Param("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT})
NEXT_PAGE = Param("next_page", _STRING)
PAGE = (LIMIT, NEXT_PAGE)
INCLUDE_ARCHIVED = Param("include_archived", _BOOLEAN)
SKIP_ZERO = Param("skip_zero_qty_line_items", _BOOLEAN)
INVOICE_FILTERS = (
    Param("status", {"type": "string", "enum": ["DRAFT", "FINALIZED", "VOID"]}),
    Param("credit_type_id", _STRING),
    Param("sort", {"type": "string", "enum": ["date_asc", "date_desc"]}),
    SKIP_ZERO,
)


# -- the operations -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Operation:
    method: str
    path: str  # OpenAPI's form: /v1/customers/{customer_id}
    response: str | type  # "module:Name" under metronome.types, or a Tally model
    body: Any = None  # the request body's pydantic model (None: no body)
    params: tuple[Param, ...] = ()
    page: str | None = None  # the response is a page of `response`, with this cursor field
    body_optional: bool = False  # list routes whose body the SDK may leave empty
    content_type: str = "application/json"  # of the 200 answer; any other is a binary body (`response` unused)

    @property
    def key(self) -> str:
        return f"{self.method} {self.path}"


_C = "/v1/customers/{customer_id}"
_PRICING = "/v1/contract-pricing"
OPERATIONS = (
    # customers
    Operation("POST", "/v1/customers", "v1.customer_create_response:CustomerCreateResponse", CustomerCreate),
    Operation("GET", "/v1/customers", "v1.customer_detail:CustomerDetail", params=(
        Param("customer_ids", {"type": "array", "items": {"type": "string"}}),
        Param("ingest_alias", _STRING),
        Param("only_archived", _BOOLEAN),
        Param("salesforce_account_ids", {"type": "array", "items": {"type": "string"}}),
        *PAGE,
    ), page="next_page"),
    Operation("GET", _C, "v1.customer_retrieve_response:CustomerRetrieveResponse", params=(_path("customer_id"),)),
    Operation("POST", f"{_C}/setIngestAliases", Empty, SetIngestAliases, (_path("customer_id"),)),
    Operation("POST", f"{_C}/setName", "v1.customer_set_name_response:CustomerSetNameResponse", CustomerSetName,
              (_path("customer_id"),)),
    Operation("POST", f"{_C}/updateConfig", Empty, CustomerUpdateConfig, (_path("customer_id"),)),
    Operation("POST", "/v1/customers/archive", "v1.customer_archive_response:CustomerArchiveResponse", CustomerArchive),
    Operation("POST", f"{_C}/previewEvents", "v1.customer_preview_events_response:CustomerPreviewEventsResponse",
              CustomerPreviewEvents, (_path("customer_id"),)),
    Operation("GET", f"{_C}/costs", "v1.customer_list_costs_response:CustomerListCostsResponse", params=(
        _path("customer_id"), Param("starting_on", _INSTANT, required=True), Param("ending_before", _INSTANT, required=True),
        *PAGE,
    ), page="next_page"),
    Operation("GET", f"{_C}/billable-metrics", "v1.customer_list_billable_metrics_response:CustomerListBillableMetricsResponse",
              params=(_path("customer_id"), INCLUDE_ARCHIVED, *PAGE), page="next_page"),
    # billable metrics
    Operation("POST", "/v1/billable-metrics/create", "v1.billable_metric_create_response:BillableMetricCreateResponse", MetricCreate),
    Operation("GET", "/v1/billable-metrics", "v1.billable_metric_list_response:BillableMetricListResponse",
              params=(INCLUDE_ARCHIVED, *PAGE), page="next_page"),
    Operation("GET", "/v1/billable-metrics/{metric_id}", "v1.billable_metric_retrieve_response:BillableMetricRetrieveResponse",
              params=(_path("metric_id"),)),
    Operation("PUT", "/v1/billable-metrics/{metric_id}", "v1.billable_metric_update_response:BillableMetricUpdateResponse",
              MetricUpdate, (_path("metric_id"),)),
    Operation("POST", "/v1/billable-metrics/archive", "v1.billable_metric_archive_response:BillableMetricArchiveResponse", MetricArchive),
    # usage
    Operation("POST", "/v1/ingest", IngestAccepted, UsageBatch),
    Operation("POST", "/v1/usage", "v1.usage_list_response:UsageListResponse", UsageList, (NEXT_PAGE,), page="next_page"),
    Operation("POST", "/v1/usage/groups", "v1.usage_list_with_groups_response:UsageListWithGroupsResponse", UsageGroups,
              PAGE, page="next_page"),
    Operation("POST", "/v1/events/search", "v1.usage_search_response:UsageSearchResponse", EventsSearch),
    # catalog
    Operation("POST", f"{_PRICING}/products/create", "v1.contracts.product_create_response:ProductCreateResponse", ProductCreate),
    Operation("POST", f"{_PRICING}/products/get", "v1.contracts.product_retrieve_response:ProductRetrieveResponse", ProductGet),
    Operation("POST", f"{_PRICING}/products/list", "v1.contracts.product_list_response:ProductListResponse", ProductList,
              PAGE, page="next_page", body_optional=True),
    Operation("POST", f"{_PRICING}/products/update", "v1.contracts.product_update_response:ProductUpdateResponse", ProductUpdate),
    Operation("POST", f"{_PRICING}/products/archive", "v1.contracts.product_archive_response:ProductArchiveResponse", ProductArchive),
    Operation("GET", "/v1/credit-types/list", "v1.pricing_unit_list_response:PricingUnitListResponse", params=PAGE, page="next_page"),
    Operation("POST", "/v1/credit-types/create", "v1.pricing_unit_create_response:PricingUnitCreateResponse", CreditTypeCreate),
    Operation("POST", "/v1/credit-types/archive", "v1.pricing_unit_archive_response:PricingUnitArchiveResponse", CreditTypeArchive),
    Operation("POST", f"{_PRICING}/rate-cards/create", "v1.contracts.rate_card_create_response:RateCardCreateResponse", RateCardCreate),
    Operation("POST", f"{_PRICING}/rate-cards/get", "v1.contracts.rate_card_retrieve_response:RateCardRetrieveResponse", RateCardId),
    Operation("POST", f"{_PRICING}/rate-cards/list", "v1.contracts.rate_card_list_response:RateCardListResponse", RateCardList,
              PAGE, page="next_page", body_optional=True),
    Operation("POST", f"{_PRICING}/rate-cards/update", "v1.contracts.rate_card_update_response:RateCardUpdateResponse", RateCardUpdate),
    Operation("POST", f"{_PRICING}/rate-cards/archive", "v1.contracts.rate_card_archive_response:RateCardArchiveResponse", RateCardId),
    Operation("POST", f"{_PRICING}/rate-cards/setRateCardProductsOrder",
              "v1.contracts.rate_cards.product_order_set_response:ProductOrderSetResponse", RateCardProductOrderSet),
    Operation("POST", f"{_PRICING}/rate-cards/moveRateCardProducts",
              "v1.contracts.rate_cards.product_order_update_response:ProductOrderUpdateResponse", RateCardProductsMove),
    Operation("POST", f"{_PRICING}/rate-cards/addRate", "v1.contracts.rate_cards.rate_add_response:RateAddResponse", RateAdd),
    Operation("POST", f"{_PRICING}/rate-cards/addRates", "v1.contracts.rate_cards.rate_add_many_response:RateAddManyResponse", RatesAdd),
    Operation("POST", f"{_PRICING}/rate-cards/getRates", "v1.contracts.rate_cards.rate_list_response:RateListResponse", RatesGet,
              PAGE, page="next_page"),
    Operation("POST", f"{_PRICING}/rate-cards/getRateSchedule",
              "v1.contracts.rate_card_retrieve_rate_schedule_response:RateCardRetrieveRateScheduleResponse", RateCardScheduleGet, PAGE),
    Operation("POST", "/v1/contracts/getContractRateSchedule",
              "v1.contract_retrieve_rate_schedule_response:ContractRetrieveRateScheduleResponse", ContractScheduleGet, PAGE),
    # named schedules
    Operation("POST", f"{_PRICING}/rate-cards/getNamedSchedule",
              "v1.contracts.named_schedule_retrieve_response:NamedScheduleRetrieveResponse", named.RateCardScheduleGet),
    Operation("POST", f"{_PRICING}/rate-cards/updateNamedSchedule", Empty, named.RateCardScheduleUpdate),
    Operation("POST", "/v1/contracts/getNamedSchedule",
              "v1.contracts.rate_cards.named_schedule_retrieve_response:NamedScheduleRetrieveResponse", named.ContractScheduleGet),
    Operation("POST", "/v1/contracts/updateNamedSchedule", Empty, named.ContractScheduleUpdate),
    Operation("POST", "/v1/contracts/listNamedSchedules",
              "v1.contracts.rate_cards.named_schedule_list_response:NamedScheduleListResponse", named.ContractSchedulesList,
              page="next_page"),
    Operation("POST", "/v1/customers/getNamedSchedule",
              "v1.customers.named_schedule_retrieve_response:NamedScheduleRetrieveResponse", named.CustomerScheduleGet),
    Operation("POST", "/v1/customers/updateNamedSchedule", Empty, named.CustomerScheduleUpdate),
    # custom fields
    Operation("POST", "/v1/customFields/addKey", Empty, cf.CustomFieldAddKey),
    Operation("POST", "/v1/customFields/listKeys", "v1.custom_field_list_keys_response:CustomFieldListKeysResponse",
              cf.CustomFieldListKeys, (NEXT_PAGE,), page="next_page", body_optional=True),
    Operation("POST", "/v1/customFields/removeKey", Empty, cf.CustomFieldRemoveKey),
    Operation("POST", "/v1/customFields/setValues", Empty, cf.CustomFieldSetValues),
    Operation("POST", "/v1/customFields/deleteValues", Empty, cf.CustomFieldDeleteValues),
    # packages
    Operation("POST", "/v1/packages/create", "v1.package_create_response:PackageCreateResponse", pk.PackageCreate),
    Operation("POST", "/v1/packages/get", "v1.package_retrieve_response:PackageRetrieveResponse", pk.PackageRef),
    Operation("POST", "/v1/packages/list", "v1.package_list_response:PackageListResponse", pk.PackageList,
              PAGE, page="next_page", body_optional=True),
    Operation("POST", "/v1/packages/archive", "v1.package_archive_response:PackageArchiveResponse", pk.PackageRef),
    Operation("POST", "/v1/packages/listContractsOnPackage",
              "v1.package_list_contracts_on_package_response:PackageListContractsOnPackageResponse",
              pk.ContractsOnPackageList, PAGE, page="next_page"),
    # contracts
    Operation("POST", "/v1/contracts/create", "v1.contract_create_response:ContractCreateResponse", ContractCreate),
    Operation("POST", "/v1/contracts/get", "v1.contract_retrieve_response:ContractRetrieveResponse", ContractRef),
    Operation("POST", "/v1/contracts/list", "shared.contract:Contract", ContractList, page="cursor"),
    Operation("POST", "/v1/contracts/updateEndDate", "v1.contract_update_end_date_response:ContractUpdateEndDateResponse", ContractUpdateEndDate),
    Operation("POST", "/v1/contracts/archive", "v1.contract_archive_response:ContractArchiveResponse", ContractArchive),
    Operation("POST", "/v1/contracts/getSubscriptionQuantityHistory",
              "v1.contract_retrieve_subscription_quantity_history_response:ContractRetrieveSubscriptionQuantityHistoryResponse",
              SubscriptionQuantityHistory),
    Operation("POST", "/v1/contracts/getSubscriptionSeatsHistory",
              "v1.contract_get_subscription_seats_history_response:ContractGetSubscriptionSeatsHistoryResponse",
              SubscriptionSeatsHistory),
    Operation("POST", "/v1/contracts/seatBalances/list",
              "v1.contract_list_seat_balances_response:ContractListSeatBalancesResponse", SeatBalancesList),
    Operation("POST", "/v1/contracts/scheduleProServicesInvoice",
              "v1.contract_schedule_pro_services_invoice_response:ContractScheduleProServicesInvoiceResponse",
              ScheduleProServicesInvoice),
    Operation("POST", "/v1/contracts/createHistoricalInvoices",
              "v1.contract_create_historical_invoices_response:ContractCreateHistoricalInvoicesResponse",
              CreateHistoricalInvoices),
    Operation("POST", "/v2/contracts/get", "v2.contract_retrieve_response:ContractRetrieveResponse", ContractV2Get),
    Operation("POST", "/v2/contracts/list", "shared.contract_v2:ContractV2", ContractV2List, page="cursor"),
    Operation("POST", "/v2/contracts/edit", "v2.contract_edit_response:ContractEditResponse", ContractEdit),
    Operation("POST", "/v2/contracts/getEditHistory", "v2.contract_get_edit_history_response:ContractGetEditHistoryResponse",
              ContractEditHistory),
    Operation("POST", "/v1/contracts/amend", "v1.contract_amend_response:ContractAmendResponse", ContractAmend),
    Operation("POST", "/v1/contracts/setUsageFilter", Empty, UsageFilterSet),
    Operation("POST", "/v2/contracts/commits/edit", "v2.contract_edit_commit_response:ContractEditCommitResponse", CommitEdit),
    Operation("POST", "/v2/contracts/credits/edit", "v2.contract_edit_credit_response:ContractEditCreditResponse", CreditEdit),
    # invoices
    Operation("GET", f"{_C}/invoices", "v1.customers.invoice:Invoice", params=(
        _path("customer_id"), Param("contract_id", _STRING), Param("starting_on", _INSTANT), Param("ending_before", _INSTANT),
        *INVOICE_FILTERS, *PAGE,
    ), page="next_page"),
    Operation("GET", f"{_C}/invoices/breakdowns", "v1.customers.invoice_list_breakdowns_response:InvoiceListBreakdownsResponse", params=(
        _path("customer_id"), Param("starting_on", _INSTANT, required=True), Param("ending_before", _INSTANT, required=True),
        Param("window_size", {"type": "string", "enum": ["HOUR", "DAY", "hour", "day"]}), *INVOICE_FILTERS, *PAGE,
    ), page="next_page"),
    Operation("GET", f"{_C}/invoices/{{invoice_id}}", "v1.customers.invoice_retrieve_response:InvoiceRetrieveResponse",
              params=(_path("customer_id"), _path("invoice_id"), SKIP_ZERO)),
    Operation("GET", f"{_C}/invoices/{{invoice_id}}/pdf", "", params=(_path("customer_id"), _path("invoice_id")),
              content_type="application/pdf"),
    Operation("POST", "/v1/invoices/void", "v1.invoice_void_response:InvoiceVoidResponse", InvoiceRef),
    Operation("POST", "/v1/invoices/regenerate", "v1.invoice_regenerate_response:InvoiceRegenerateResponse", InvoiceRef),
    # embeddable dashboards (the page itself, GET /pages/dashboards/{token}, is HTML opened by its signed link)
    Operation("POST", "/v1/dashboards/getEmbeddableUrl",
              "v1.dashboard_get_embeddable_url_response:DashboardGetEmbeddableURLResponse", DashboardUrlRequest),
    # hosted invoice pages, a Tally extension (the pages, GET /pages/invoices/{token} and
    # /pages/invoice-pdfs/{token}, are opened by their signed links)
    Operation("POST", "/v1/invoices/getHostedUrl", InvoiceHostedUrlResponse, InvoiceHostedUrlRequest),
    # commits, credits and balances
    Operation("POST", "/v1/contracts/customerCommits/create", "v1.customers.commit_create_response:CommitCreateResponse", CustomerCommitCreate),
    Operation("POST", "/v1/contracts/customerCommits/list", "shared.commit:Commit", CustomerGrantsList, page="next_page"),
    Operation("POST", "/v1/contracts/customerCommits/updateEndDate",
              "v1.customers.commit_update_end_date_response:CommitUpdateEndDateResponse", GrantEndDateUpdate),
    Operation("POST", "/v1/contracts/customerCredits/create", "v1.customers.credit_create_response:CreditCreateResponse", CustomerCreditCreate),
    Operation("POST", "/v1/contracts/customerCredits/list", "shared.credit:Credit", CustomerGrantsList, page="next_page"),
    Operation("POST", "/v1/contracts/customerCredits/updateEndDate",
              "v1.customers.credit_update_end_date_response:CreditUpdateEndDateResponse", GrantEndDateUpdate),
    Operation("POST", "/v1/contracts/customerBalances/list", "v1.contract_list_balances_response:ContractListBalancesResponse",
              CustomerBalancesList, page="next_page"),
    Operation("POST", "/v1/contracts/customerBalances/getNetBalance",
              "v1.contract_get_net_balance_response:ContractGetNetBalanceResponse", NetBalanceRequest),
    Operation("POST", "/v1/contracts/addManualBalanceLedgerEntry", Empty, ManualEntryRequest),
    Operation("POST", "/v1/contracts/commits/threshold-billing/release", Empty, ThresholdBillingRelease),
    # billing providers (where customers are charged)
    Operation("POST", "/v1/upsertAvalaraCredentials", Empty, AvalaraCredentialsUpsert),
    Operation("POST", "/v1/setUpBillingProvider", "v1.settings.billing_provider_create_response:BillingProviderCreateResponse",
              BillingProviderSetUp),
    Operation("POST", "/v1/listConfiguredBillingProviders",
              "v1.settings.billing_provider_list_response:BillingProviderListResponse", BillingProviderList,
              body_optional=True),
    Operation("POST", "/v1/setCustomerBillingProviderConfigurations",
              "v1.customer_set_billing_configurations_response:CustomerSetBillingConfigurationsResponse",
              CustomerBillingConfigurationsSet),
    Operation("POST", "/v1/getCustomerBillingProviderConfigurations",
              "v1.customer_retrieve_billing_configurations_response:CustomerRetrieveBillingConfigurationsResponse",
              CustomerBillingConfigurationsGet),
    Operation("POST", "/v1/archiveCustomerBillingProviderConfigurations",
              "v1.customer_archive_billing_configurations_response:CustomerArchiveBillingConfigurationsResponse",
              CustomerBillingConfigurationsArchive),
    Operation("POST", f"{_C}/billing-config/{{billing_provider_type}}", Empty, BillingConfigCreate,
              (_path("customer_id"), _path("billing_provider_type"))),
    Operation("GET", f"{_C}/billing-config/{{billing_provider_type}}",
              "v1.customers.billing_config_retrieve_response:BillingConfigRetrieveResponse",
              params=(_path("customer_id"), _path("billing_provider_type"))),
    Operation("DELETE", f"{_C}/billing-config/{{billing_provider_type}}", Empty,
              params=(_path("customer_id"), _path("billing_provider_type"))),
    # alerts
    Operation("POST", "/v1/alerts/create", "v1.alert_create_response:AlertCreateResponse", AlertCreate),
    Operation("POST", "/v1/alerts/archive", "v1.alert_archive_response:AlertArchiveResponse", AlertArchive),
    Operation("POST", "/v1/customer-alerts/list", "v1.customers.customer_alert:CustomerAlert", CustomerAlertList,
              (NEXT_PAGE,), page="next_page"),
    Operation("POST", "/v1/customer-alerts/get", "v1.customers.alert_retrieve_response:AlertRetrieveResponse", CustomerAlertRef),
    Operation("POST", "/v1/customer-alerts/reset", Empty, CustomerAlertRef),
    # lifecycle notifications
    Operation("POST", "/v2/notifications/create", "v2.notifications.offset_create_response:OffsetCreateResponse",
              NotificationCreate),
    Operation("POST", "/v2/notifications/get", "v2.notifications.offset_retrieve_response:OffsetRetrieveResponse",
              NotificationRef),
    Operation("POST", "/v2/notifications/edit", "v2.notifications.offset_edit_response:OffsetEditResponse", NotificationEdit),
    Operation("POST", "/v2/notifications/archive", "v2.notifications.offset_archive_response:OffsetArchiveResponse",
              NotificationRef),
    Operation("POST", "/v2/notifications/offset/list",
              "v2.lifecycle_event_offset_notification_config:LifecycleEventOffsetNotificationConfig", NotificationList,
              page="cursor", body_optional=True),
    Operation("POST", "/v2/notifications/system/list", "v2.notifications.system_list_response:SystemListResponse",
              SystemNotificationList, body_optional=True),
    # this document
    # security
    Operation("GET", "/v1/auditLogs", "v1.audit_log_list_response:AuditLogListResponse", params=(
        Param("starting_on", _INSTANT),
        Param("ending_before", _INSTANT),
        Param("sort", {"type": "string", "enum": ["date_asc", "date_desc"]}),
        Param("resource_type", {"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH}),
        Param("resource_id", {"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH}),
        *PAGE,
    ), page="next_page"),
    Operation("GET", "/v1/services", "v1.service_list_response:ServiceListResponse"),
    Operation("GET", "/openapi.json", OpenApiDocument),
)


# -- generation -----------------------------------------------------------------------------------
def registered_routes() -> dict[str, str]:
    """'METHOD /path' (OpenAPI's form) -> the handling function's name, for every route module."""
    found: dict[str, str] = {}
    for module in pkgutil.iter_modules(routes.__path__):
        router = importlib.import_module(f"{routes.__name__}.{module.name}").router
        for key, function in router._routes.items():  # Powertools keeps no public list
            rule, methods = key[0], key[1]
            path = re.sub(r"<(\w+)>", r"{\1}", rule)
            if path.startswith(PUBLIC_PREFIX):  # HTML pages opened by a signed link, not the JSON API
                continue
            for method in methods:
                found[f"{method} {path}"] = function.__name__
    return found


def _response_type(op: Operation) -> Any:
    if isinstance(op.response, str):
        module, name = op.response.split(":")
        item = getattr(importlib.import_module(f"metronome.types.{module}"), name)
    else:
        item = op.response
    if op.page is None:
        return item
    # The SDK's page classes: SyncCursorPage (next_page) and SyncBodyCursorPageCursorField (cursor).
    page_name = f"{getattr(item, '__name__', 'Item')}Page"
    return create_model(page_name, data=(list[item], ...), **{op.page: (Optional[str], None)})


def document() -> dict:
    served = registered_routes()
    documented = {op.key for op in OPERATIONS}
    if set(served) != documented:
        raise ValueError(
            f"tally.api.openapi.OPERATIONS must list exactly the served routes; undocumented: "
            f"{sorted(set(served) - documented)}, not served: {sorted(documented - set(served))}"
        )
    inputs: list[tuple[Any, Any, TypeAdapter]] = [("error", "validation", TypeAdapter(ErrorBody))]
    for op in OPERATIONS:
        if op.content_type == "application/json":
            inputs.append(((op.key, "response"), "validation", TypeAdapter(_response_type(op))))
        if op.body is not None:
            inputs.append(((op.key, "request"), "validation", TypeAdapter(op.body)))
    schemas, defs = TypeAdapter.json_schemas(inputs, ref_template="#/components/schemas/{model}")

    error = {"content": {"application/json": {"schema": schemas[("error", "validation")]}}}
    failures = {
        "4XX": {"$ref": "#/components/responses/Refused"},
        "503": {"$ref": "#/components/responses/Unavailable"},
    }
    paths: dict[str, dict] = {}
    for op in OPERATIONS:
        spec: dict[str, Any] = {"operationId": served[op.key]}
        if op.params:
            spec["parameters"] = [p.spec() for p in op.params]
        if op.body is not None:
            spec["requestBody"] = {
                "required": not op.body_optional,
                "content": {"application/json": {"schema": schemas[((op.key, "request"), "validation")]}},
            }
        if op.content_type == "application/json":
            answer = {"application/json": {"schema": schemas[((op.key, "response"), "validation")]}}
        else:
            answer = {op.content_type: {"schema": {"type": "string", "format": "binary"}}}
        spec["responses"] = {"200": {"description": "OK", "content": answer}} | failures
        paths.setdefault(op.path, {})[op.method.lower()] = spec
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Tally",
            "version": "1",
            "description": "A Metronome-compatible usage billing API: the routes Tally serves, in Metronome's shapes.",
        },
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "responses": {
                "Refused": {"description": "the request broke a rule: `field` names the field, `message` the rule"} | error,
                "Unavailable": {"description": "storage was unavailable; the request may be retried"} | error,
            },
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "a Tally API key"}},
        },
    }


def render(doc: dict) -> str:
    return json.dumps(doc, indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=REGENERATE, description=f"Write {DOCUMENT_PATH.name} from the routes' models.")
    parser.add_argument("--check", action="store_true", help="fail if the committed document is stale; write nothing")
    args = parser.parse_args(argv)
    text = render(document())
    if args.check:
        stale = not DOCUMENT_PATH.exists() or DOCUMENT_PATH.read_text() != text
        print(f"{DOCUMENT_PATH} is {'stale; run ' + REGENERATE if stale else 'current'}")
        return 1 if stale else 0
    DOCUMENT_PATH.write_text(text)
    print(f"wrote {DOCUMENT_PATH} ({len(OPERATIONS)} operations)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
