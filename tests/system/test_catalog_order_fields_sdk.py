"""Issue 18 through metronome-sdk in strict mode on the local stack: a billable metric renamed with
PUT and read back (a change of its aggregation refused naming the field), a rate card's product
order reflected in a draft invoice's line order, and custom field values set on a subscription and
a scheduled charge of a contract read back on the contract."""

from __future__ import annotations

import pytest
from metronome import Metronome

from tests.system.conftest import API_KEY
from tests.system.usage_events import DAY, HOUR, current_hour, rfc3339, unique, usage_event

pytestmark = pytest.mark.system


def test_metric_rename_product_order_and_contract_part_values(local_stack, api):
    with Metronome(bearer_token=API_KEY, base_url=local_stack.base_url, max_retries=0,
                   _strict_response_validation=True) as sdk:
        tag = unique("order")
        start = current_hour() - 3 * HOUR

        # A metric's name changes; what it counts does not.
        metric = sdk.v1.billable_metrics.create(
            name=f"{tag} calls", aggregation_type="COUNT", event_type_filter={"in_values": [f"{tag}-api"]}
        ).data.id
        assert sdk.v1.billable_metrics.update(billable_metric_id=metric, name=f"{tag} API calls").data.id == metric
        read = sdk.v1.billable_metrics.retrieve(billable_metric_id=metric).data
        assert (read.name, read.aggregation_type) == (f"{tag} API calls", "COUNT")
        refused = api.put(f"/v1/billable-metrics/{metric}", json={"name": "x", "aggregation_type": "SUM"})
        assert refused.status_code == 400 and "aggregation_type" in refused.text
        assert sdk.v1.billable_metrics.retrieve(billable_metric_id=metric).data.name == f"{tag} API calls"

        # Three usage products (by name: Alpha, Beta, Gamma), ordered Gamma, Alpha on the card.
        products = {
            name: sdk.v1.contracts.products.create(name=f"{tag} {name}", type="USAGE", billable_metric_id=metric).data.id
            for name in ("Alpha", "Beta", "Gamma")
        }
        seats = sdk.v1.contracts.products.create(name=f"{tag} Seats", type="SUBSCRIPTION").data.id
        fee = sdk.v1.contracts.products.create(name=f"{tag} Onboarding", type="FIXED").data.id
        card = sdk.v1.contracts.rate_cards.create(name=f"{tag} card").data.id
        for product in products.values():
            sdk.v1.contracts.rate_cards.rates.add(rate_card_id=card, product_id=product, entitled=True, rate_type="FLAT",
                                                  price=10, starting_at=rfc3339(start - DAY))
        sdk.v1.contracts.rate_cards.rates.add(rate_card_id=card, product_id=seats, entitled=True, rate_type="SUBSCRIPTION",
                                              price=2500, billing_frequency="MONTHLY", starting_at=rfc3339(start - DAY))
        sdk.v1.contracts.rate_cards.product_orders.set(rate_card_id=card,
                                                       product_order=[products["Gamma"], products["Alpha"]])
        sdk.v1.contracts.rate_cards.product_orders.update(rate_card_id=card,
                                                          product_moves=[{"product_id": products["Beta"], "position": 1}])

        customer = sdk.v1.customers.create(name=tag, ingest_aliases=[tag]).data.id
        contract = sdk.v1.contracts.create(
            customer_id=customer, rate_card_id=card, starting_at=rfc3339(start),
            subscriptions=[{"collection_schedule": "ARREARS", "initial_quantity": 1,
                            "proration": {"invoice_behavior": "BILL_ON_NEXT_COLLECTION_DATE", "is_prorated": True},
                            "subscription_rate": {"product_id": seats, "billing_frequency": "MONTHLY"}}],
            scheduled_charges=[{"product_id": fee, "name": "Onboarding",
                                "schedule": {"schedule_items": [{"timestamp": rfc3339(start + HOUR), "amount": 700}]}}],
        ).data.id
        sdk.v1.usage.ingest(usage=[usage_event(f"{tag}-{n}", tag, f"{tag}-api", start + HOUR) for n in range(2)])
        local_stack.pump.drain()

        (usage_invoice,) = [i for i in sdk.v1.customers.invoices.list(customer_id=customer, status="DRAFT").data
                            if i.type == "USAGE"]
        names = {v: k for k, v in products.items()}
        ordered = [names[line.product_id] for line in usage_invoice.line_items if line.product_id in names]
        assert ordered == ["Gamma", "Beta", "Alpha"]  # the card's order, not the names'

        # Custom field values on the contract's subscription and scheduled charge.
        fields = sdk.v1.custom_fields
        fields.add_key(entity="subscription", key=f"{tag}_po", enforce_uniqueness=False)
        fields.add_key(entity="scheduled_charge", key=f"{tag}_po", enforce_uniqueness=False)
        read = sdk.v1.contracts.retrieve(customer_id=customer, contract_id=contract).data
        (subscription,), (charge,) = read.subscriptions, read.current.scheduled_charges
        fields.set_values(entity="subscription", entity_id=subscription.id, custom_fields={f"{tag}_po": "PO-sub"})
        fields.set_values(entity="scheduled_charge", entity_id=charge.id, custom_fields={f"{tag}_po": "PO-charge"})
        read = sdk.v1.contracts.retrieve(customer_id=customer, contract_id=contract).data
        assert read.subscriptions[0].custom_fields == {f"{tag}_po": "PO-sub"}
        assert read.current.scheduled_charges[0].custom_fields == {f"{tag}_po": "PO-charge"}
        missing = api.post("/v1/customFields/setValues", json={"entity": "scheduled_charge", "entity_id": subscription.id,
                                                               "custom_fields": {f"{tag}_po": "x"}})
        assert missing.status_code == 404
