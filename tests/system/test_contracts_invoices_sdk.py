"""Contracts and draft invoices through Metronome's official SDK, unchanged, on the local stack.

Every total is worked out by hand from the rates and the events the test sends (see comments).
The SDK parses amounts as floats, so the figures are chosen exact in binary.
"""

from __future__ import annotations

import json
from decimal import Decimal

import metronome
import pytest

from tests.system.usage_events import DAY, HOUR, current_hour, rfc3339, unique, usage_event

pytestmark = pytest.mark.system

MINUTE = HOUR / 60


def _catalog(sdk, tag: str, start):
    """A COUNT metric, a usage and a subscription product, and a rate card where the usage price
    changes from FLAT 10 to TIERED (first 4 units at 4, then 1) at start + 2 h."""
    metric = sdk.v1.billable_metrics.create(
        name=f"{tag} calls", aggregation_type="COUNT", event_type_filter={"in_values": [tag]}
    ).data.id
    calls = sdk.v1.contracts.products.create(name=f"{tag} API calls", type="USAGE", billable_metric_id=metric).data.id
    seats = sdk.v1.contracts.products.create(name=f"{tag} Seats", type="SUBSCRIPTION").data.id
    stranger = sdk.v1.contracts.products.create(name=f"{tag} Not on the card", type="USAGE", billable_metric_id=metric).data.id
    card = sdk.v1.contracts.rate_cards.create(name=f"{tag} card").data.id
    change = start + 2 * HOUR
    sdk.v1.contracts.rate_cards.rates.add(
        rate_card_id=card, product_id=calls, entitled=True, rate_type="FLAT", price=10,
        starting_at=rfc3339(start - DAY), ending_before=rfc3339(change),
    )
    sdk.v1.contracts.rate_cards.rates.add(
        rate_card_id=card, product_id=calls, entitled=True, rate_type="TIERED",
        tiers=[{"price": 4, "size": 4}, {"price": 1}], starting_at=rfc3339(change),
    )
    sdk.v1.contracts.rate_cards.rates.add(
        rate_card_id=card, product_id=seats, entitled=True, rate_type="SUBSCRIPTION", price=2500,
        billing_frequency="MONTHLY", starting_at=rfc3339(start - DAY),
    )
    return {"metric": metric, "calls": calls, "seats": seats, "stranger": stranger, "card": card}


def test_a_contract_with_an_override_and_a_subscription_is_invoiced_from_metered_usage(sdk, settle, api):
    tag = unique("contract")
    # The contract starts 3 h ago and its periods are anchored at its start (CONTRACT_START), so
    # the current period is [start, start + 1 month) whatever the date.
    start = current_hour() - 3 * HOUR
    catalog = _catalog(sdk, tag, start)
    customer = sdk.v1.customers.create(name=tag, ingest_aliases=[tag]).data.id

    contract_id = sdk.v1.contracts.create(
        customer_id=customer,
        rate_card_id=catalog["card"],
        starting_at=rfc3339(start),
        name=f"{tag} contract",
        usage_statement_schedule={"frequency": "MONTHLY", "day": "CONTRACT_START"},
        overrides=[{
            "product_id": catalog["calls"], "type": "MULTIPLIER", "multiplier": 0.5,
            "starting_at": rfc3339(start + HOUR),
        }],
        subscriptions=[{
            "collection_schedule": "ADVANCE",
            "initial_quantity": 2,
            "proration": {"invoice_behavior": "BILL_IMMEDIATELY", "is_prorated": True},
            "subscription_rate": {"product_id": catalog["seats"], "billing_frequency": "MONTHLY"},
        }],
    ).data.id

    calls = [start + 10 * MINUTE] * 2 + [start + HOUR + 10 * MINUTE] + [start + 2 * HOUR + 10 * MINUTE] * 4
    sdk.v1.usage.ingest(usage=[usage_event(f"{tag}-{n}", tag, tag, at) for n, at in enumerate(calls)])
    settle()

    invoice, scheduled = sdk.v1.customers.invoices.list(customer_id=customer).data
    assert (invoice.status, invoice.type, invoice.contract_id, invoice.customer_id) == ("DRAFT", "USAGE", contract_id, customer)
    # 2 seats × 2500, charged in advance for the whole first month (it starts on the anchor), on a
    # SCHEDULED invoice issued when the month starts.
    assert (scheduled.type, scheduled.start_timestamp, scheduled.issued_at, scheduled.total) == ("SCHEDULED", start, start, 5000)
    [seats] = scheduled.line_items
    assert (seats.product_id, seats.quantity, seats.total, seats.starting_at, seats.is_prorated) == (
        catalog["seats"], 2, 5000, start, False)
    assert invoice.start_timestamp == start
    assert invoice.credit_type.name == "USD (cents)"
    lines = [(line.product_id, line.quantity, line.total) for line in invoice.line_items]
    assert lines == [
        # First hour: FLAT 10, no override yet: 2 calls × 10 = 20.
        (catalog["calls"], 2, 20),
        # Second hour: the 0.5 multiplier applies: 1 call × 10 × 0.5 = 5.
        (catalog["calls"], 1, 5),
        # From start + 2 h: TIERED, halved. Tiers count over the period, so the 4 calls start at
        # position 3: 1 call in the first tier (4 × 0.5 = 2) and 3 past it (1 × 0.5 each = 1.5).
        # 2 + 1.5 = 3.5.
        (catalog["calls"], 4, 3.5),
    ]
    # 20 + 5 + 3.5 = 28.5 cents.
    assert (invoice.subtotal, invoice.total) == (28.5, 28.5)
    first, halved, tiered = invoice.line_items
    assert (first.unit_price, first.list_price) == (10, None)
    assert (halved.unit_price, halved.list_price.price, halved.list_price.rate_type) == (5, 10, "FLAT")
    assert [(t.quantity, t.price, t.subtotal) for t in tiered.sub_line_items[0].tiers] == [(1, 2, 2), (3, 0.5, 1.5)]

    same = sdk.v1.customers.invoices.retrieve(customer_id=customer, invoice_id=invoice.id).data
    assert (same.id, same.total) == (invoice.id, invoice.total)
    raw = json.loads(api.get(f"/v1/customers/{customer}/invoices/{invoice.id}").text, parse_float=Decimal)["data"]
    assert (raw["total"], raw["line_items"][2]["total"]) == (Decimal("28.50"), Decimal("3.50"))  # exact on the wire

    contract = sdk.v1.contracts.retrieve(customer_id=customer, contract_id=contract_id).data
    assert contract.id == contract_id and contract.customer_id == customer
    assert contract.current.rate_card_id == catalog["card"]
    assert contract.current.overrides[0].product.id == catalog["calls"]
    assert contract.current.overrides[0].multiplier == 0.5
    assert contract.current.usage_statement_schedule.billing_anchor_date == start
    (subscription,) = contract.subscriptions
    assert subscription.subscription_rate.product.id == catalog["seats"]
    assert subscription.quantity_schedule[0].quantity == 2

    history = sdk.v1.contracts.retrieve_subscription_quantity_history(
        customer_id=customer, contract_id=contract_id, subscription_id=subscription.id
    ).data
    assert [(h.starting_at, h.data[0].quantity, h.data[0].unit_price) for h in history.history] == [(start, 2, 2500)]

    assert [c.id for c in sdk.v1.contracts.list(customer_id=customer)] == [contract_id]
    sdk.v1.contracts.update_end_date(customer_id=customer, contract_id=contract_id, ending_before=rfc3339(start + 30 * DAY))
    assert sdk.v1.contracts.retrieve(customer_id=customer, contract_id=contract_id).data.current.ending_before == start + 30 * DAY

    sdk.v1.contracts.archive(customer_id=customer, contract_id=contract_id, void_invoices=True)
    assert sdk.v1.contracts.list(customer_id=customer).data == []
    assert [c.id for c in sdk.v1.contracts.list(customer_id=customer, include_archived=True)] == [contract_id]
    assert sdk.v1.customers.invoices.list(customer_id=customer).data == []


def test_bad_contracts_are_refused_with_the_field_named_and_unknown_customers_are_404(sdk):
    tag = unique("bad-contract")
    start = current_hour() - 3 * HOUR
    catalog = _catalog(sdk, tag, start)
    customer = sdk.v1.customers.create(name=tag).data.id

    with pytest.raises(metronome.BadRequestError) as raised:
        sdk.v1.contracts.create(
            customer_id=customer, rate_card_id=catalog["card"], starting_at=rfc3339(start),
            overrides=[{"product_id": catalog["stranger"], "type": "MULTIPLIER", "multiplier": 2, "starting_at": rfc3339(start)}],
        )
    assert raised.value.body["field"] == "overrides[0].product_id"

    with pytest.raises(metronome.BadRequestError) as raised:
        sdk.v1.contracts.create(customer_id=customer, rate_card_id=unique("no-such-card"), starting_at=rfc3339(start))
    assert raised.value.body["field"] == "rate_card_id"

    with pytest.raises(metronome.BadRequestError) as raised:
        sdk.v1.contracts.create(
            customer_id=customer, rate_card_id=catalog["card"], starting_at=rfc3339(start),
            subscriptions=[{
                "collection_schedule": "ADVANCE", "initial_quantity": -1,
                "proration": {"invoice_behavior": "BILL_IMMEDIATELY", "is_prorated": True},
                "subscription_rate": {"product_id": catalog["seats"], "billing_frequency": "MONTHLY"},
            }],
        )
    assert raised.value.body["field"] == "subscriptions[0].initial_quantity"
    assert sdk.v1.contracts.list(customer_id=customer, include_archived=True).data == []

    with pytest.raises(metronome.NotFoundError):
        sdk.v1.contracts.create(customer_id=unique("nobody"), rate_card_id=catalog["card"], starting_at=rfc3339(start))
