"""Where customers are charged: account-level billing providers and customer billing provider
configurations (metronome-sdk 4.x: client.v1.settings.billing_providers, client.v1.customers
.set_billing_configurations / retrieve_billing_configurations / archive_billing_configurations,
and the older client.v1.customers.billing_config). Secrets are never answered: a Stripe key shows
masked."""

from __future__ import annotations

import logging

from aws_lambda_powertools.event_handler.api_gateway import Router

from tally import wiring
from tally.api.billing_provider_models import (
    AvalaraCredentialsUpsert,
    BillingConfigCreate,
    BillingProviderList,
    BillingProviderSetUp,
    CustomerBillingConfigurationsArchive,
    CustomerBillingConfigurationsGet,
    CustomerBillingConfigurationsSet,
)
from tally.api.models import read_body
from tally.services.invoice_delivery import announce_void
from tally.settings import get_settings

router = Router()
logger = logging.getLogger(__name__)
# Metronome's ExternalInvoice fields Tally records (services/invoice_delivery.py).
_EXTERNAL_FIELDS = ("billing_provider_type", "billing_provider_error", "external_status", "invoice_id", "invoiced_total")


def announce_invoice_void(invoice_id: str) -> None:
    """After POST /v1/invoices/void: invoice.voided, so the delivery function voids the provider's
    invoice too. The void stands if this fails (logged); a regenerate voids it at the provider anyway."""
    try:
        record = wiring.invoice_store().get(invoice_id)
        if record is not None:
            announce_void(wiring.publisher(), get_settings().require("invoices_topic_arn"), invoice_id, record.customer_id)
    except Exception:  # noqa: BLE001 - the void is done; only its announcement failed
        logger.warning("invoice %s is voided but invoice.voided was not published", invoice_id, exc_info=True)


def with_external_invoices(invoices: list[dict]) -> list[dict]:
    """Invoices as the API answers them, each delivered one with its `external_invoice` (Metronome's
    field: the provider, its invoice id and status, or the provider's error)."""
    stored = [i["id"] for i in invoices if i.get("status") in ("FINALIZED", "VOID")]
    if not stored:
        return invoices
    delivered = wiring.delivery_state_store().external_invoices(stored)
    for invoice in invoices:
        external = delivered.get(invoice["id"])
        if external is not None:
            invoice["external_invoice"] = {k: external.get(k) for k in _EXTERNAL_FIELDS}
    return invoices


@router.post("/v1/setUpBillingProvider")
def set_up_billing_provider() -> dict:
    body = BillingProviderSetUp.model_validate(read_body(router.current_event))
    method_id = wiring.billing_provider_service().set_up(body.billing_provider, body.delivery_method, body.configuration)
    return {"data": {"delivery_method_id": method_id}}


@router.post("/v1/upsertAvalaraCredentials")
def upsert_avalara_credentials() -> dict:
    body = AvalaraCredentialsUpsert.model_validate(read_body(router.current_event))
    wiring.billing_provider_service().upsert_avalara_credentials(
        body.avalara_environment, body.avalara_username, body.avalara_password, body.delivery_method_ids,
        body.commit_transactions)
    return {}


@router.post("/v1/listConfiguredBillingProviders")
def list_configured_billing_providers() -> dict:
    # The SDK may send no body at all (its only field is optional).
    BillingProviderList.model_validate(read_body(router.current_event) if (router.current_event.body or "").strip() else {})
    service = wiring.billing_provider_service()
    return {"data": [service.delivery_method_json(m) for m in service.delivery_methods()], "next_page": None}


@router.post("/v1/setCustomerBillingProviderConfigurations")
def set_customer_billing_provider_configurations() -> dict:
    body = CustomerBillingConfigurationsSet.model_validate(read_body(router.current_event))
    created = wiring.billing_provider_service().set_customer_configurations(
        [entry.model_dump(exclude_none=True) for entry in body.data]
    )
    return {"data": [{"id": d["id"], "billing_provider": d["billing_provider"], "configuration": d["configuration"],
                      "customer_id": d["customer_id"], "delivery_method_id": d["delivery_method_id"],
                      "tax_provider": d["tax_provider"]} for d in created]}


@router.post("/v1/getCustomerBillingProviderConfigurations")
def get_customer_billing_provider_configurations() -> dict:
    body = CustomerBillingConfigurationsGet.model_validate(read_body(router.current_event))
    service = wiring.billing_provider_service()
    configurations = service.customer_configurations(body.customer_id, body.include_archived)
    return {"data": [service.configuration_json(c) for c in configurations]}


@router.post("/v1/archiveCustomerBillingProviderConfigurations")
def archive_customer_billing_provider_configurations() -> dict:
    body = CustomerBillingConfigurationsArchive.model_validate(read_body(router.current_event))
    ids = wiring.billing_provider_service().archive_customer_configurations(
        body.customer_id, body.customer_billing_provider_configuration_ids
    )
    return {"data": {"customer_billing_provider_configuration_ids": ids, "customer_id": body.customer_id}}


@router.post("/v1/customers/<customer_id>/billing-config/<billing_provider_type>")
def set_billing_config(customer_id: str, billing_provider_type: str) -> dict:
    body = BillingConfigCreate.model_validate(read_body(router.current_event))
    wiring.billing_provider_service().set_billing_config(customer_id, billing_provider_type, body.model_dump())
    return {}


@router.get("/v1/customers/<customer_id>/billing-config/<billing_provider_type>")
def get_billing_config(customer_id: str, billing_provider_type: str) -> dict:
    return {"data": wiring.billing_provider_service().billing_config(customer_id, billing_provider_type)}


@router.delete("/v1/customers/<customer_id>/billing-config/<billing_provider_type>")
def delete_billing_config(customer_id: str, billing_provider_type: str) -> dict:
    wiring.billing_provider_service().delete_billing_config(customer_id, billing_provider_type)
    return {}
