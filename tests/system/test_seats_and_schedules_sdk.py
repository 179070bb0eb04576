"""Seats and recurring charges through metronome-sdk in strict mode, on the local stack: a SEAT_BASED
subscription billed in advance whose added seats wait for the next collection date, rounded up to
whole cents; a recurring scheduled charge added by an edit and one that is never invoiced; the
seat history and seat balances routes. Totals are worked by hand in the comments.

The contract started 3 days ago and bills monthly from its start, so "now" is in its first period;
proration is by time over the whole period, so figures are computed from the period the API
answers with, in hours, as written in the comments.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from decimal import Decimal

import metronome
import pytest

from tests.system.conftest import API_KEY
from tests.system.usage_events import DAY, HOUR, current_hour, rfc3339, unique

pytestmark = pytest.mark.system

SEAT = 3000  # cents a month


@pytest.fixture(scope="module")
def strict(local_stack):
    with metronome.Metronome(bearer_token=API_KEY, base_url=local_stack.base_url, max_retries=0,
                             _strict_response_validation=True) as client:
        yield client


def _raw(api, path: str) -> dict:
    response = api.get(path)
    assert response.status_code == 200, response.text
    return json.loads(response.text, parse_float=Decimal)


def _hours(start: datetime, end: datetime) -> int:
    return int((end - start) / HOUR)


def test_seats_wait_for_the_next_collection_date_and_recurring_charges_bill_item_by_item(strict, api):
    sdk = strict
    tag = unique("seats")
    start = current_hour() - 3 * DAY
    seats = sdk.v1.contracts.products.create(name=f"{tag} seats", type="SUBSCRIPTION").data.id
    support = sdk.v1.contracts.products.create(name=f"{tag} support", type="FIXED").data.id
    card = sdk.v1.contracts.rate_cards.create(name=f"{tag} card").data.id
    sdk.v1.contracts.rate_cards.rates.add(rate_card_id=card, product_id=seats, entitled=True, rate_type="SUBSCRIPTION",
                                          price=SEAT, billing_frequency="MONTHLY", starting_at=rfc3339(start - DAY))
    customer = sdk.v1.customers.create(name=tag).data.id
    subscription = {
        "collection_schedule": "ADVANCE",
        "proration": {"invoice_behavior": "BILL_ON_NEXT_COLLECTION_DATE", "is_prorated": True,
                      "rounding": {"decimal_places": 0, "rounding_method": "CEILING"}},
        "subscription_rate": {"product_id": seats, "billing_frequency": "MONTHLY"},
        "quantity_management_mode": "SEAT_BASED",
        "seat_config": {"seat_group_key": "user_id", "initial_seat_ids": ["ann", "bob"], "initial_unassigned_seats": 1},
    }
    common = dict(customer_id=customer, rate_card_id=card, starting_at=rfc3339(start),
                  usage_statement_schedule={"frequency": "MONTHLY", "day": "CONTRACT_START"})

    # ARREARS bills increases at the period's end only: BILL_IMMEDIATELY is refused, naming the field.
    with pytest.raises(metronome.BadRequestError) as refused:
        sdk.v1.contracts.create(**common, subscriptions=[dict(subscription, collection_schedule="ARREARS", proration={
            "invoice_behavior": "BILL_IMMEDIATELY", "is_prorated": True})])
    assert json.loads(refused.value.response.text)["field"] == "subscriptions[0].proration.invoice_behavior"

    contract_id = sdk.v1.contracts.create(**common, subscriptions=[subscription], scheduled_charges=[{
        "product_id": support, "name": "Paid elsewhere",
        "schedule": {"do_not_invoice": True, "schedule_items": [{"timestamp": rfc3339(start + DAY), "amount": 777}]},
    }]).data.id
    (sub,) = sdk.v2.contracts.retrieve(customer_id=customer, contract_id=contract_id).data.subscriptions
    assert (sub.quantity_management_mode, sub.seat_config.seat_group_key) == ("SEAT_BASED", "user_id")
    assert (sub.proration.invoice_behavior, sub.proration.rounding.decimal_places, sub.proration.rounding.rounding_method) == (
        "BILL_ON_NEXT_COLLECTION_DATE", 0, "CEILING")
    assert [(q.starting_at, q.quantity) for q in sub.quantity_schedule] == [(start, 3)]  # 2 seats + 1 unassigned

    def invoices() -> list:
        return sdk.v1.customers.invoices.list(customer_id=customer).data

    (usage,) = [i for i in invoices() if i.type == "USAGE"]
    p2 = usage.end_timestamp

    # -- an edit: cy fills the unassigned seat and di adds one now; ann leaves a day later; and
    # support, 1000.01 over this month and the next, DIVIDED_ROUNDED: 500.00, then the 500.01 left.
    t = current_hour()
    edited = sdk.v2.contracts.edit(
        customer_id=customer, contract_id=contract_id,
        update_subscriptions=[{"subscription_id": sub.id, "seat_updates": {
            "add_seat_ids": [{"seat_ids": ["cy", "di"], "starting_at": rfc3339(t)}],
            "remove_seat_ids": [{"seat_ids": ["ann"], "starting_at": rfc3339(t + DAY)}],
        }}],
        add_scheduled_charges=[{"product_id": support, "name": "Support", "schedule": {"recurring_schedule": {
            "amount_distribution": "DIVIDED_ROUNDED", "frequency": "MONTHLY", "amount": 1000.01,
            "starting_at": rfc3339(start), "ending_before": rfc3339(p2 + DAY)}}}],
    ).data
    (update,) = edited.edit.update_subscriptions
    assert [(a.seat_ids, a.starting_at) for a in update.seat_updates.add_seat_ids] == [(["cy", "di"], t)]
    assert [(r.seat_ids, r.starting_at) for r in update.seat_updates.remove_seat_ids] == [(["ann"], t + DAY)]
    (added,) = edited.edit.add_scheduled_charges
    assert [(i.timestamp, i.amount) for i in added.schedule.schedule_items] == [(start, 500), (p2, 500.01)]

    # In advance on the first day: 3 seats × 3000 = 9000, and support's first 500.00: 9500.
    (first,) = [i for i in invoices() if i.type == "SCHEDULED"]
    raw = _raw(api, f"/v1/customers/{customer}/invoices/{first.id}")["data"]
    assert (first.start_timestamp, raw["total"]) == (start, Decimal("9500.00"))
    assert sorted((l.product_id, l.quantity) for l in first.line_items) == sorted([(seats, 3), (support, 1)])
    # The fourth seat waits for the next collection date, on this month's usage invoice:
    # 1 × 3000 × (hours from t to the month's end) / (hours in the month), rounded up to a whole cent.
    # ann leaving a day later is not refunded.
    owed = Decimal(math.ceil(Decimal(SEAT) * _hours(t, p2) / _hours(start, p2)))
    (usage,) = [i for i in invoices() if i.type == "USAGE"]
    raw = _raw(api, f"/v1/customers/{customer}/invoices/{usage.id}")["data"]
    assert ([(l["product_id"], l["quantity"], l["total"]) for l in raw["line_items"]], raw["total"]) == (
        [(seats, 1, owed)], owed)
    assert [(l.starting_at, l.ending_before, l.is_prorated) for l in usage.line_items] == [(t, p2, True)]

    # -- the seat history ------------------------------------------------------------------------
    def history(**params) -> list[tuple]:
        page = sdk.v1.contracts.get_subscription_seats_history(
            customer_id=customer, contract_id=contract_id, subscription_id=sub.id, **params)
        return [(h.starting_at, h.ending_before, h.assigned_seat_ids, h.total_quantity) for h in page.data], page.next_page

    everything = [(start, t, ["ann", "bob"], 3), (t, t + DAY, ["ann", "bob", "cy", "di"], 4),
                  (t + DAY, None, ["bob", "cy", "di"], 3)]
    assert history() == (everything, None)
    assert history(covering_date=t + HOUR) == (everything[1:2], None)
    assert history(starting_at=t + DAY) == (everything[2:], None)
    assert history(limit=2) == (everything[:2], "2")
    assert history(limit=2, cursor="2") == (everything[2:], None)
    quantities = sdk.v1.contracts.retrieve_subscription_quantity_history(
        customer_id=customer, contract_id=contract_id, subscription_id=sub.id).data.history
    assert [(h.starting_at, h.data[0].quantity) for h in quantities] == [(start, 3), (t, 4), (t + DAY, 3)]

    # -- seat balances: every seat, none holding a grant of its own ------------------------------
    page = sdk.v1.contracts.list_seat_balances(customer_id=customer, contract_id=contract_id, limit=3,
                                               include_credits_and_commits=True)
    assert [(s.seat_id, s.balances, s.commits, s.credits) for s in page.data] == [
        (seat, [], [], []) for seat in ("ann", "bob", "cy", "di")[:3]]
    assert (page.pagination.seats_included, page.pagination.seats_available_for_next_page, page.pagination.next_page) == (
        3, 1, "3")
    page = sdk.v1.contracts.list_seat_balances(customer_id=customer, contract_id=contract_id, cursor="3")
    assert [s.seat_id for s in page.data] == ["di"] and page.pagination.next_page is None
    with pytest.raises(metronome.BadRequestError) as refused:
        sdk.v1.contracts.list_seat_balances(customer_id=customer, contract_id=contract_id, seat_ids=["di", "zed"])
    assert json.loads(refused.value.response.text)["field"] == "seat_ids[1]"
    page = sdk.v1.contracts.list_seat_balances(customer_id=customer, contract_id=contract_id, seat_ids=["di", "zed"],
                                               skip_missing_seat_ids=True)
    assert [s.seat_id for s in page.data] == ["di"]

    # -- the contract as v1 shows it: the charge never invoiced is kept, flagged -----------------
    current = sdk.v1.contracts.retrieve(customer_id=customer, contract_id=contract_id).data.current
    by_name = {c.name: c for c in current.scheduled_charges}
    assert by_name["Paid elsewhere"].schedule.do_not_invoice is True
    assert [(i.timestamp, i.amount) for i in by_name["Paid elsewhere"].schedule.schedule_items] == [(start + DAY, 777)]
    assert [(i.timestamp, i.amount) for i in by_name["Support"].schedule.schedule_items] == [(start, 500), (p2, 500.01)]
    assert all(line.product_id != support or line.total != 777 for i in invoices() for line in i.line_items)
    (entry,) = sdk.v2.contracts.get_edit_history(customer_id=customer, contract_id=contract_id).data
    assert [a.seat_ids for a in entry.update_subscriptions[0].seat_updates.add_seat_ids] == [["cy", "di"]]
