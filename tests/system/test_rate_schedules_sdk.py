"""Prices as a customer sees them, through metronome-sdk with strict response validation on the
local stack: a rate card's schedule, a contract's rates after its overrides (quoted to the cent of
the invoice), a TIERED_PERCENTAGE composite, a commit-specific override, a usage filter that starts
mid-contract, and named schedules of a rate card, a contract and a customer.

Amounts are cents ("USD (cents)"), exact in binary because the SDK parses them as floats.
"""

from __future__ import annotations

import metronome
import pytest
from metronome import Metronome

from tests.system.conftest import API_KEY
from tests.system.usage_events import DAY, HOUR, current_hour, rfc3339, unique, usage_event

pytestmark = pytest.mark.system


@pytest.fixture(scope="module")
def strict(local_stack):
    with Metronome(
        bearer_token=API_KEY, base_url=local_stack.base_url, _strict_response_validation=True, max_retries=0
    ) as client:
        yield client


def _segments(answer) -> list[tuple]:
    return [(s.starting_at, s.ending_before, s.value) for s in answer.data]


def test_a_quote_is_what_the_invoice_charges_and_schedules_keep_their_values(strict, local_stack):
    tag = unique("quotes")
    start = current_hour() - 3 * HOUR
    metric = strict.v1.billable_metrics.create(
        name=f"{tag} calls", aggregation_type="COUNT", event_type_filter={"in_values": [f"{tag}-call"]},
        group_keys=[["region"]],
    ).data.id
    api = strict.v1.contracts.products.create(
        name=f"{tag} API calls", type="USAGE", billable_metric_id=metric, pricing_group_key=["region"], tags=["api"],
    ).data.id
    support = strict.v1.contracts.products.create(
        name=f"{tag} Support", type="COMPOSITE", composite_tags=["api"]).data.id
    commitment = strict.v1.contracts.products.create(name=f"{tag} Commitment", type="FIXED").data.id

    # The card: API calls at 10, 20 in the EU, 12 from day 20; support at 10% of the first 1000 of spend, then 5%.
    card = strict.v1.contracts.rate_cards.create(name=f"{tag} card").data.id
    add = strict.v1.contracts.rate_cards.rates.add
    add(rate_card_id=card, product_id=api, entitled=True, rate_type="FLAT", price=10, starting_at=rfc3339(start - DAY))
    add(rate_card_id=card, product_id=api, entitled=True, rate_type="FLAT", price=12, starting_at=rfc3339(start + 20 * DAY))
    add(rate_card_id=card, product_id=api, entitled=True, rate_type="FLAT", price=20, starting_at=rfc3339(start - DAY),
        pricing_group_values={"region": "eu"})
    tiered = add(rate_card_id=card, product_id=support, entitled=True, rate_type="TIERED_PERCENTAGE",
                 tiers=[{"price": 0.1, "size": 1000}, {"price": 0.05}], starting_at=rfc3339(start - DAY)).data
    assert (tiered.rate_type, [(t.price, t.size) for t in tiered.tiers]) == ("TIERED_PERCENTAGE", [(0.1, 1000), (0.05, None)])

    schedule = strict.v1.contracts.rate_cards.retrieve_rate_schedule(
        rate_card_id=card, starting_at=rfc3339(start), selectors=[{"product_id": api}])
    assert [(r.starting_at, r.ending_before, r.rate.price, r.pricing_group_values) for r in schedule.data] == [
        (start - DAY, start + 20 * DAY, 10, None), (start + 20 * DAY, None, 12, None), (start - DAY, None, 20, {"region": "eu"})]

    # The contract: 20% off API calls for ten days; a 300-cent complimentary commit whose draws pay
    # half price (commit-specific, named by its temporary id); usage filtered to us/eu from day 15.
    customer = strict.v1.customers.create(name=tag, ingest_aliases=[tag]).data.id
    contract = strict.v1.contracts.create(
        customer_id=customer, rate_card_id=card, starting_at=rfc3339(start),
        overrides=[
            {"product_id": api, "type": "MULTIPLIER", "multiplier": 0.8,
             "starting_at": rfc3339(start), "ending_before": rfc3339(start + 10 * DAY)},
            {"type": "MULTIPLIER", "multiplier": 0.5, "starting_at": rfc3339(start), "is_commit_specific": True,
             "override_specifiers": [{"product_id": api, "commit_ids": ["launch"]}]},
        ],
        commits=[{
            "product_id": commitment, "type": "PREPAID", "temporary_id": "launch", "applicable_product_ids": [api],
            "access_schedule": {"schedule_items": [
                {"amount": 300, "starting_at": rfc3339(start), "ending_before": rfc3339(start + 30 * DAY)}]},
        }],
        usage_filter={"group_key": "region", "group_values": ["us", "eu"], "starting_at": rfc3339(start + 15 * DAY)},
    ).data.id

    quote = strict.v1.contracts.retrieve_rate_schedule(customer_id=customer, contract_id=contract, at=start + 2 * HOUR)
    rows = [(r.product_id, r.pricing_group_values, r.starting_at, r.ending_before, r.list_rate.price,
             r.override_rate.price if r.override_rate else None, r.rate_card_id) for r in quote.data]
    assert rows == [
        (api, None, start, start + 10 * DAY, 10, 8, card),
        (api, {"region": "eu"}, start, start + 10 * DAY, 20, 16, card),
        (support, None, start, None, None, None, card),
    ]
    assert [(t.price, t.size) for t in quote.data[2].list_rate.tiers] == [(0.1, 1000), (0.05, None)]
    later = strict.v1.contracts.retrieve_rate_schedule(
        customer_id=customer, contract_id=contract, at=start + 25 * DAY, selectors=[{"pricing_group_values": {"region": "eu"}}])
    assert [(r.starting_at, r.ending_before, r.list_rate.price, r.override_rate) for r in later.data] == [
        (start + 10 * DAY, None, 20, None)]

    # 100 calls from the US: the quote says 8 each, so 800 on the invoice; support 10% of it, 80.
    # The commit pays at half list, 5 a call: its 300 cover 60 calls, 480 of list; 320 stay billed.
    strict.v1.usage.ingest(usage=[
        usage_event(f"{tag}-{n}", tag, f"{tag}-call", start + HOUR, region="us") for n in range(100)])
    local_stack.pump.drain()
    [invoice] = [i for i in strict.v1.customers.invoices.list(customer_id=customer).data if i.type == "USAGE"]
    lines = sorted((line.type, line.product_id, line.total) for line in invoice.line_items)
    commit_id = strict.v1.contracts.retrieve(customer_id=customer, contract_id=contract).data.current.commits[0].id
    assert ("usage", api, 100 * quote.data[0].override_rate.price) in lines
    assert ("usage", support, 80) in lines
    assert [line.total for line in invoice.line_items if line.type == "applied_commit_or_credit"] == [-480]
    assert invoice.total == 800 + 80 - 480
    balance = strict.v1.contracts.get_net_balance(customer_id=customer)
    assert balance.data.balance == 0

    v1 = strict.v1.contracts.retrieve(customer_id=customer, contract_id=contract).data
    assert v1.current.overrides[1].is_commit_specific is True
    assert v1.current.overrides[1].override_specifiers[0].commit_ids == [commit_id]
    assert (v1.current.usage_filter.initial.starting_at, v1.current.usage_filter.current) == (start + 15 * DAY, None)
    v2 = strict.v2.contracts.retrieve(customer_id=customer, contract_id=contract).data
    assert [(f.group_values, f.starting_at, f.ending_before) for f in v2.usage_filter] == [(["us", "eu"], start + 15 * DAY, None)]

    # Named schedules: a range inside a value splits it; properties tell a contract's schedules apart.
    named = strict.v1.contracts.named_schedules
    named.update(rate_card_id=card, schedule_name="tier", starting_at=start, value={"name": "gold", "discount": 10})
    named.update(rate_card_id=card, schedule_name="tier", starting_at=start + DAY, ending_before=start + 2 * DAY, value="silver")
    assert _segments(named.retrieve(rate_card_id=card, schedule_name="tier")) == [
        (start, start + DAY, {"name": "gold", "discount": 10}),
        (start + DAY, start + 2 * DAY, "silver"),
        (start + 2 * DAY, None, {"name": "gold", "discount": 10}),
    ]
    assert _segments(named.retrieve(rate_card_id=card, schedule_name="tier", covering_date=start + DAY)) == [
        (start + DAY, start + 2 * DAY, "silver")]

    on_contract = strict.v1.contracts.rate_cards.named_schedules
    on_contract.update(customer_id=customer, contract_id=contract, schedule_name="fx", starting_at=start, value=1.25,
                       properties={"currency": "EUR"})
    assert _segments(on_contract.retrieve(customer_id=customer, contract_id=contract, schedule_name="fx",
                                          properties={"currency": "EUR"})) == [(start, None, 1.25)]
    listed = list(on_contract.list(customer_id=customer, contract_id=contract))
    assert [(s.contract_id, s.schedule_name, s.properties) for s in listed] == [(contract, "fx", {"currency": "EUR"})]

    strict.v1.customers.named_schedules.update(customer_id=customer, schedule_name="plan", starting_at=start, value=["a", "b"])
    assert _segments(strict.v1.customers.named_schedules.retrieve(customer_id=customer, schedule_name="plan")) == [
        (start, None, ["a", "b"])]

    with pytest.raises(metronome.BadRequestError) as raised:
        strict.v1.customers.named_schedules.update(
            customer_id=customer, schedule_name="plan", starting_at=start + DAY, ending_before=start, value=1)
    assert raised.value.body["field"] == "ending_before"
