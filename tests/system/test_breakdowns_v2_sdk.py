"""Invoice breakdowns and v2 contracts through Metronome's official SDK, unchanged, on the local stack.

Every figure is worked out by hand from the rates and the events the test sends (see comments),
and chosen exact in binary, since the SDK parses amounts as floats.
"""

from __future__ import annotations

import json
from decimal import Decimal

import metronome
import pytest

from tests.system.usage_events import DAY, HOUR, current_hour, rfc3339, unique, usage_event

pytestmark = pytest.mark.system


def _customer_with_a_contract(sdk, tag: str, start, terms=lambda products: {}):
    """Calls priced TIERED (the first 4 at 4 cents, then 1 cent), seats at 1000 cents a month, a
    setup fee of 100 cents on day 2 at noon, and a contract from `start` whose monthly periods are
    anchored at its start. `terms(products)` adds to the create body."""
    metric = sdk.v1.billable_metrics.create(
        name=f"{tag} calls", aggregation_type="COUNT", event_type_filter={"in_values": [tag]}
    ).data.id
    calls = sdk.v1.contracts.products.create(name=f"{tag} API calls", type="USAGE", billable_metric_id=metric).data.id
    seats = sdk.v1.contracts.products.create(name=f"{tag} Seats", type="SUBSCRIPTION").data.id
    setup = sdk.v1.contracts.products.create(name=f"{tag} Setup", type="FIXED").data.id
    card = sdk.v1.contracts.rate_cards.create(name=f"{tag} card").data.id
    sdk.v1.contracts.rate_cards.rates.add(
        rate_card_id=card, product_id=calls, entitled=True, rate_type="TIERED",
        tiers=[{"price": 4, "size": 4}, {"price": 1}], starting_at=rfc3339(start - DAY),
    )
    sdk.v1.contracts.rate_cards.rates.add(
        rate_card_id=card, product_id=seats, entitled=True, rate_type="SUBSCRIPTION", price=1000,
        billing_frequency="MONTHLY", starting_at=rfc3339(start - DAY),
    )
    products = {"calls": calls, "seats": seats, "setup": setup, "card": card}
    customer = sdk.v1.customers.create(name=tag, ingest_aliases=[tag]).data.id
    contract_id = sdk.v1.contracts.create(
        customer_id=customer,
        rate_card_id=card,
        starting_at=rfc3339(start),
        name=f"{tag} contract",
        usage_statement_schedule={"frequency": "MONTHLY", "day": "CONTRACT_START"},
        scheduled_charges=[{
            "product_id": setup,
            "schedule": {"schedule_items": [{"timestamp": rfc3339(start + DAY + 12 * HOUR), "amount": 100}]},
        }],
        **terms(products),
    ).data.id
    return customer, contract_id, products


def test_daily_breakdowns_split_the_live_invoice_and_tiers_carry_across_days(sdk, settle, api):
    tag = unique("breakdowns")
    # Three UTC days: the day before yesterday (day 1), yesterday (day 2) and today (day 3).
    day1 = current_hour().replace(hour=0) - 2 * DAY
    customer, contract_id, products = _customer_with_a_contract(sdk, tag, day1)
    calls = [day1 + 10 * HOUR] * 3 + [day1 + DAY + 10 * HOUR] * 4 + [day1 + 2 * DAY] * 2
    sdk.v1.usage.ingest(usage=[usage_event(f"{tag}-{n}", tag, tag, at) for n, at in enumerate(calls)])
    settle()

    breakdowns = list(sdk.v1.customers.invoices.list_breakdowns(
        customer_id=customer, starting_on=day1, ending_before=day1 + 3 * DAY, window_size="DAY",
    ))

    usage_invoice, setup_invoice = sdk.v1.customers.invoices.list(customer_id=customer).data
    by_window = [(b.breakdown_start_timestamp, b.breakdown_end_timestamp, b.type, b.id, b.total) for b in breakdowns]
    assert by_window == [
        # Day 1: 3 calls in the first tier, 3 × 4 = 12.
        (day1, day1 + DAY, "USAGE", usage_invoice.id, 12),
        # Day 2: the tier position carries over from day 1, so 1 call at 4 and 3 at 1 = 7.
        (day1 + DAY, day1 + 2 * DAY, "USAGE", usage_invoice.id, 7),
        # The setup fee is a SCHEDULED invoice, broken down into the day it is issued on.
        (day1 + DAY, day1 + 2 * DAY, "SCHEDULED", setup_invoice.id, 100),
        # Day 3: 2 more calls past the first tier, 2 × 1 = 2.
        (day1 + 2 * DAY, day1 + 3 * DAY, "USAGE", usage_invoice.id, 2),
    ]
    # Together the usage breakdowns are the usage invoice: 12 + 7 + 2 = 21.
    assert usage_invoice.total == 21 and setup_invoice.total == 100
    first = breakdowns[0]
    assert (first.start_timestamp, first.status, first.contract_id, first.customer_id) == (day1, "DRAFT", contract_id, customer)
    assert [(line.product_id, line.quantity, line.total) for line in breakdowns[1].line_items] == [(products["calls"], 4, 7)]
    tiers = breakdowns[1].line_items[0].sub_line_items[0].tiers
    assert [(t.quantity, t.price) for t in tiers] == [(1, 4), (3, 1)]

    hourly = sdk.v1.customers.invoices.list_breakdowns(
        customer_id=customer, starting_on=day1 + DAY + 9 * HOUR, ending_before=day1 + DAY + 11 * HOUR, window_size="HOUR",
    ).data
    assert [(b.breakdown_start_timestamp, b.total) for b in hourly] == [(day1 + DAY + 9 * HOUR, 0), (day1 + DAY + 10 * HOUR, 7)]

    raw = api.get(
        f"/v1/customers/{customer}/invoices/breakdowns",
        params={"starting_on": rfc3339(day1 + DAY), "ending_before": rfc3339(day1 + 2 * DAY), "limit": 1},
    )
    body = json.loads(raw.text, parse_float=Decimal)
    assert body["data"][0]["total"] == Decimal("7.00")  # exact on the wire
    assert body["data"][0]["breakdown_start_timestamp"] == rfc3339(day1 + DAY)
    assert body["next_page"] is not None  # the setup fee's breakdown is on the next page

    with pytest.raises(metronome.BadRequestError) as raised:
        sdk.v1.customers.invoices.list_breakdowns(
            customer_id=customer, starting_on=day1 + HOUR, ending_before=day1 + DAY, window_size="DAY"
        )
    assert raised.value.body["field"] == "starting_on"


def test_v2_contracts_are_the_stored_contracts_in_the_v2_shape(sdk):
    tag = unique("contract-v2")
    start = current_hour() - 3 * HOUR
    customer, contract_id, products = _customer_with_a_contract(sdk, tag, start, lambda p: {
        "overrides": [{
            "product_id": p["calls"], "type": "MULTIPLIER", "multiplier": 0.5, "starting_at": rfc3339(start + HOUR),
        }],
        "subscriptions": [{
            "collection_schedule": "ARREARS",
            "initial_quantity": 3,
            "proration": {"invoice_behavior": "BILL_ON_NEXT_COLLECTION_DATE", "is_prorated": True},
            "subscription_rate": {"product_id": p["seats"], "billing_frequency": "MONTHLY"},
        }],
    })

    contract = sdk.v2.contracts.retrieve(customer_id=customer, contract_id=contract_id).data
    assert (contract.id, contract.customer_id, contract.rate_card_id, contract.name) == (
        contract_id, customer, products["card"], f"{tag} contract")
    assert contract.starting_at == start and contract.ending_before is None and contract.archived_at is None
    assert contract.usage_statement_schedule.billing_anchor_date == start
    assert contract.usage_statement_schedule.frequency == "MONTHLY"
    (charge,) = contract.scheduled_charges
    assert charge.product.id == products["setup"]
    assert [(i.timestamp, i.amount) for i in charge.schedule.schedule_items] == [(start + DAY + 12 * HOUR, 100)]
    (override,) = contract.overrides
    assert (override.product.id, override.type, override.multiplier, override.starting_at) == (
        products["calls"], "MULTIPLIER", 0.5, start + HOUR)
    (subscription,) = contract.subscriptions
    assert (subscription.collection_schedule, subscription.subscription_rate.product.id) == ("ARREARS", products["seats"])
    assert [(q.starting_at, q.quantity) for q in subscription.quantity_schedule] == [(start, 3)]
    # Commits and credits are not supported yet, so there are none to list.
    assert (contract.commits, contract.credits, contract.transitions, contract.usage_filter) == ([], [], [], [])
    assert contract.has_more.commits is False and contract.created_by

    assert [c.id for c in sdk.v2.contracts.list(customer_id=customer)] == [contract_id]
    with pytest.raises(metronome.BadRequestError) as raised:
        sdk.v2.contracts.list(customer_id=customer, covering_date=start, starting_at=start)
    assert raised.value.body["field"] == "covering_date"

    sdk.v1.contracts.archive(customer_id=customer, contract_id=contract_id, void_invoices=True)
    assert sdk.v2.contracts.list(customer_id=customer).data == []
    (archived,) = sdk.v2.contracts.list(customer_id=customer, include_archived=True).data
    assert archived.id == contract_id and archived.archived_at is not None

    with pytest.raises(metronome.NotFoundError):
        sdk.v2.contracts.retrieve(customer_id=customer, contract_id=unique("no-such-contract"))
