"""A contract names the billing provider configuration its invoices go to, through metronome-sdk in
strict mode on the local stack with localstripe (issue 17). The customer has two Stripe customers;
a weekly contract naming the second has its closed week (7 calls at 25 cents: 175 cents) delivered
by the delivery function, through its queue, to the second only. Another contract gets a
configuration by a v2 edit effective at the start of its next week.
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone

import metronome
import pytest
import stripe

from tests.localstripe import localstripe  # noqa: F401 - the fixture
from tests.system.conftest import API_KEY
from tests.system.usage_events import DAY, HOUR, current_hour, rfc3339, unique, usage_event

pytestmark = pytest.mark.system
SECRET_KEY = "sk_test_tally_contracts_5555"


def test_a_contract_delivers_to_the_configuration_it_names_and_an_edit_adds_one(local_stack, settle, localstripe):  # noqa: F811
    from tally import settings, wiring

    os.environ["STRIPE_API_BASE"] = localstripe.url  # as `tally local up --stripe` does
    settings.get_settings.cache_clear()
    wiring.invoice_delivery_service.cache_clear()
    client = metronome.Metronome(bearer_token=API_KEY, base_url=local_stack.base_url, max_retries=0,
                                 _strict_response_validation=True)
    tag = unique("contract-delivery")
    start = current_hour() - 9 * DAY
    metric = client.v1.billable_metrics.create(
        name=f"{tag} calls", aggregation_type="COUNT", event_type_filter={"in_values": [tag]}).data.id
    calls = client.v1.contracts.products.create(name=f"{tag} calls", type="USAGE", billable_metric_id=metric).data.id
    card = client.v1.contracts.rate_cards.create(name=f"{tag} card").data.id
    client.v1.contracts.rate_cards.rates.add(rate_card_id=card, product_id=calls, entitled=True, rate_type="FLAT",
                                            price=25, starting_at=rfc3339(start - DAY))
    client.v1.settings.billing_providers.create(billing_provider="stripe", delivery_method="direct_to_billing_provider",
                                               configuration={"stripe_secret_key": SECRET_KEY})
    stripe_sdk = stripe.StripeClient(SECRET_KEY, base_addresses={"api": localstripe.url}, max_network_retries=0)
    customer = client.v1.customers.create(name=tag, ingest_aliases=[tag]).data.id
    stripe_customers = [stripe_sdk.customers.create(params={"name": f"{tag} {n}"}).id for n in (1, 2)]
    first, second = client.v1.customers.set_billing_configurations(data=[{
        "customer_id": customer, "billing_provider": "stripe", "delivery_method": "direct_to_billing_provider",
        "configuration": {"stripe_customer_id": cus, "stripe_collection_method": "send_invoice"}} for cus in stripe_customers
    ]).data
    weekly = {"frequency": "WEEKLY", "day": "CONTRACT_START"}
    with pytest.raises(metronome.BadRequestError) as refused:  # two such configurations: name one
        client.v1.contracts.create(customer_id=customer, rate_card_id=card, starting_at=rfc3339(start),
                                   usage_statement_schedule=weekly, billing_provider_configuration={
                                       "billing_provider": "stripe", "delivery_method": "direct_to_billing_provider"})
    assert refused.value.body["field"] == "billing_provider_configuration.billing_provider_configuration_id"
    contract = client.v1.contracts.create(
        customer_id=customer, rate_card_id=card, starting_at=rfc3339(start), usage_statement_schedule=weekly,
        billing_provider_configuration={"billing_provider_configuration_id": second.id}).data.id

    v1 = client.v1.contracts.retrieve(contract_id=contract, customer_id=customer).data
    assert (v1.customer_billing_provider_configuration.id,
            v1.customer_billing_provider_configuration.configuration["stripe_customer_id"]) == (second.id, stripe_customers[1])
    v2 = client.v2.contracts.retrieve(contract_id=contract, customer_id=customer).data
    assert v2.customer_billing_provider_configuration.id == second.id
    assert [(e.billing_provider_configuration.id, e.effective_at) for e in v2.billing_provider_configuration_schedule] == [
        (second.id, start)]
    with pytest.raises(metronome.BadRequestError) as refused:  # the SDK: only a contract without one
        client.v2.contracts.edit(contract_id=contract, customer_id=customer, add_billing_provider_configuration_update={
            "billing_provider_configuration": {"billing_provider_configuration_id": first.id},
            "schedule": {"effective_at": "START_OF_NEXT_PERIOD"}})
    assert refused.value.body["field"] == "add_billing_provider_configuration_update.billing_provider_configuration"

    client.v1.usage.ingest(usage=[usage_event(f"{tag}-{n}", tag, tag, start + HOUR) for n in range(7)])
    settle()
    close = wiring.cycle_close_service()
    (week,) = close.finalize(customer, contract, start, datetime.now(timezone.utc))["finalized"]
    assert close.publish_finalized(week) is True  # invoice.finalized -> the delivery queue

    def invoices(n: int) -> list:
        return stripe_sdk.invoices.list(params={"customer": stripe_customers[n], "limit": 100}).data

    deadline = time.monotonic() + 10
    while not invoices(1) and time.monotonic() < deadline:  # the stack's pump thread may deliver it
        local_stack.queue_pump.drain()
        time.sleep(0.1)
    (delivered,) = invoices(1)
    assert (delivered.total, delivered.metadata["tally_invoice_id"]) == (175, week)
    assert invoices(0) == []

    # Another customer's contract without a configuration gets one from its next week on.
    other = client.v1.customers.create(name=f"{tag} other").data.id
    (theirs,) = client.v1.customers.set_billing_configurations(data=[{
        "customer_id": other, "billing_provider": "stripe", "delivery_method": "direct_to_billing_provider",
        "configuration": {"stripe_customer_id": stripe_customers[0]}}]).data
    later = client.v1.contracts.create(customer_id=other, rate_card_id=card, starting_at=rfc3339(start),
                                       usage_statement_schedule=weekly).data.id
    edit = client.v2.contracts.edit(contract_id=later, customer_id=other, add_billing_provider_configuration_update={
        "billing_provider_configuration": {"billing_provider": "stripe", "delivery_method": "direct_to_billing_provider"},
        "schedule": {"effective_at": "START_OF_NEXT_PERIOD"}}).data
    (entry,) = client.v2.contracts.get_edit_history(contract_id=later, customer_id=other).data
    assert entry.id == edit.id
    v2 = client.v2.contracts.retrieve(contract_id=later, customer_id=other).data
    assert [(e.billing_provider_configuration.id, e.effective_at) for e in v2.billing_provider_configuration_schedule] == [
        (theirs.id, start + 14 * DAY)]  # the week after the one holding now (day 9 of the contract)
