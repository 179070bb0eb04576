"""Seat-based subscriptions, proration options and recurring or uninvoiced scheduled charges as use
cases: contract create and /v2/contracts/edit through their request models, moto DynamoDB, the
fake catalog of the contracts tests (seats at 1000 cents a month, a FIXED "p-setup"), the real
cycle close to finalize periods.

The contract starts on Oct 1 2026 and bills monthly from the 1st; "now" is Nov 24 2026 12:00, or
Dec 2 where a test looks at December's invoices (drafts are listed up to the period holding now).
November has 30 days: a change on Nov 16 covers half of it, one on Nov 11 two thirds.
"""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest

from tally.api.contract_edit_models import edit_json
from tally.api.contract_models import ContractView, contract_json
from tally.billing.errors import InvalidInput
from tests.service.test_contract_edits import DEC, NOV_16, drafts, edit, lines, stored, w  # noqa: F401 (fixture)
from tests.service.test_cycle_close import GRACE, NOV, OCT, SEATS, _contract

UTC = timezone.utc
D = Decimal
NOV_11 = datetime(2026, 11, 11, tzinfo=UTC)
DEC_2 = datetime(2026, 12, 2, 12, tzinfo=UTC)

SEAT_BASED = [{
    "collection_schedule": "ADVANCE",
    "proration": {"is_prorated": True, "invoice_behavior": "BILL_ON_NEXT_COLLECTION_DATE"},
    "subscription_rate": {"product_id": "p-seats", "billing_frequency": "MONTHLY"},
    "quantity_management_mode": "SEAT_BASED",
    "seat_config": {"seat_group_key": "user_id", "initial_seat_ids": ["ann", "bob"], "initial_unassigned_seats": 1},
}]


def seat_history(w, contract: dict) -> list[tuple]:
    sub_id = stored(w, contract)["subscriptions"][0]["id"]
    return [(s.starting_at, s.ending_before, list(s.seats.assigned), s.seats.total)
            for s in w.contracts.subscription_seats(w.customer.id, contract["id"], sub_id)]


def seat_edit(w, contract: dict, **seat_updates) -> dict:
    sub_id = stored(w, contract)["subscriptions"][0]["id"]
    return edit(w, contract, update_subscriptions=[{"subscription_id": sub_id, "seat_updates": seat_updates}])


def test_seats_added_and_removed_price_the_subscription_and_make_its_seat_history(w):
    w.clock.now = DEC_2
    contract = _contract(w, subscriptions=SEAT_BASED)  # ann, bob and one unassigned seat: 3 seats
    assert lines(w, "SCHEDULED", NOV) == [("p-seats", D(3), D("3000.00"), NOV)]  # 3 × 1000 on Nov 1

    # Nov 16: cy fills the unassigned seat, di is a fourth seat. Billed on the next collection
    # date: 1 seat × 1000 × 15/30 = 500 on November's usage invoice, not on one of its own.
    record = seat_edit(w, contract, add_seat_ids=[{"seat_ids": ["cy", "di"], "starting_at": "2026-11-16T00:00:00Z"}])
    assert lines(w, "USAGE", NOV) == [("p-seats", D(1), D("500.00"), NOV_16)]
    assert [d for d in drafts(w) if d[1] == NOV_16] == []
    assert lines(w, "SCHEDULED", NOV) == [("p-seats", D(3), D("3000.00"), NOV)]

    # Dec 1: ann leaves; December is billed in advance for 3 seats (3 × 1000).
    seat_edit(w, contract, remove_seat_ids=[{"seat_ids": ["ann"], "starting_at": "2026-12-01T00:00:00Z"}])
    assert lines(w, "SCHEDULED", DEC) == [("p-seats", D(3), D("3000.00"), DEC)]

    assert seat_history(w, contract) == [
        (OCT, NOV_16, ["ann", "bob"], 3),
        (NOV_16, DEC, ["ann", "bob", "cy", "di"], 4),
        (DEC, None, ["bob", "cy", "di"], 3),
    ]
    sub_id = stored(w, contract)["subscriptions"][0]["id"]
    quantities = w.contracts.subscription_quantity_history(w.customer.id, contract["id"], sub_id)["history"]
    assert [(h["starting_at"], h["quantity"]) for h in quantities] == [(OCT, 3), (NOV_16, 4), (DEC, 3)]
    assert w.contracts.contract_seat_ids(w.customer.id, contract["id"]) == ["ann", "bob", "cy", "di"]

    document = stored(w, contract)
    engine = w.contracts.contract(document)
    body = contract_json(document, engine, w.contracts.products(), ContractView())
    [sub] = body["subscriptions"]
    assert (sub["quantity_management_mode"], sub["seat_config"], sub["proration"]) == (
        "SEAT_BASED", {"seat_group_key": "user_id"},
        {"invoice_behavior": "BILL_ON_NEXT_COLLECTION_DATE", "is_prorated": True})
    assert [(q["starting_at"], q["quantity"]) for q in sub["quantity_schedule"]] == [
        ("2026-10-01T00:00:00Z", 3), ("2026-11-16T00:00:00Z", 4), ("2026-12-01T00:00:00Z", 3)]
    shown = edit_json(record, document, engine, w.contracts.products(), ContractView())
    assert shown["update_subscriptions"] == [{"id": sub_id, "seat_updates": {
        "add_seat_ids": [{"seat_ids": ["cy", "di"], "starting_at": "2026-11-16T00:00:00Z"}]}}]


def test_unassigned_seats_change_the_quantity_and_seat_ids_fill_them_first(w):
    w.clock.now = DEC_2
    contract = _contract(w, subscriptions=SEAT_BASED)
    seat_edit(w, contract,
              add_unassigned_seats=[{"quantity": 2, "starting_at": "2026-11-16T00:00:00Z"}],
              remove_unassigned_seats=[{"quantity": 9, "starting_at": "2026-12-01T00:00:00Z"}],
              add_seat_ids=[{"seat_ids": ["cy"], "starting_at": "2026-12-01T00:00:00Z"}])
    # Nov 16: 3 unassigned seats, 5 in all. Dec 1: cy fills one (5), then the 2 unassigned left go (3).
    assert seat_history(w, contract) == [
        (OCT, NOV_16, ["ann", "bob"], 3),
        (NOV_16, DEC, ["ann", "bob"], 5),
        (DEC, None, ["ann", "bob", "cy"], 3),
    ]
    # 2 seats × 1000 × 15/30 = 1000 at November's end; December in advance: 3 × 1000.
    assert lines(w, "USAGE", NOV) == [("p-seats", D(2), D("1000.00"), NOV_16)]
    assert lines(w, "SCHEDULED", DEC) == [("p-seats", D(3), D("3000.00"), DEC)]


SEAT_REFUSALS = [
    ("a seat change off the hour", {"add_seat_ids": [{"seat_ids": ["cy"], "starting_at": "2026-11-16T00:30:00Z"}]},
     "update_subscriptions[0].seat_updates.add_seat_ids[0].starting_at"),
    ("a seat change before the subscription", {"remove_seat_ids": [{"seat_ids": ["ann"], "starting_at": "2026-09-01T00:00:00Z"}]},
     "update_subscriptions[0].seat_updates.remove_seat_ids[0].starting_at"),
    ("the second of one kind in a finalized month", {"add_unassigned_seats": [
        {"quantity": 1, "starting_at": "2026-11-16T00:00:00Z"}, {"quantity": 1, "starting_at": "2026-10-16T00:00:00Z"}]},
     "update_subscriptions[0].seat_updates.add_unassigned_seats[1].starting_at"),
]


@pytest.mark.parametrize("seat_updates,field", [c[1:] for c in SEAT_REFUSALS], ids=[c[0] for c in SEAT_REFUSALS])
def test_a_bad_seat_change_is_refused_naming_the_field_and_changes_nothing(w, seat_updates, field):
    contract = _contract(w, subscriptions=SEAT_BASED)
    w.service.finalize(w.customer.id, contract["id"], OCT, NOV + GRACE)  # October is final
    before = stored(w, contract)
    with pytest.raises(InvalidInput) as refused:
        seat_edit(w, contract, **seat_updates)
    assert refused.value.field == field
    assert stored(w, contract) == before


def test_quantity_updates_and_seat_histories_are_for_their_own_mode(w):
    contract = _contract(w, subscriptions=SEAT_BASED + SEATS)
    seat_sub, quantity_sub = (s["id"] for s in stored(w, contract)["subscriptions"])
    with pytest.raises(InvalidInput) as refused:
        edit(w, contract, update_subscriptions=[{"subscription_id": seat_sub, "quantity_updates": [
            {"starting_at": "2026-11-16T00:00:00Z", "quantity": 9}]}])
    assert refused.value.field == "update_subscriptions[0].quantity_updates"
    with pytest.raises(InvalidInput) as refused:
        w.contracts.subscription_seats(w.customer.id, contract["id"], quantity_sub)
    assert refused.value.field == "subscription_id"


def test_seat_ids_of_named_subscriptions_must_be_seat_based(w):
    contract = _contract(w, subscriptions=SEAT_BASED + SEATS)
    seat_sub, quantity_sub = (s["id"] for s in stored(w, contract)["subscriptions"])
    assert w.contracts.contract_seat_ids(w.customer.id, contract["id"], [seat_sub]) == ["ann", "bob"]
    with pytest.raises(InvalidInput) as refused:
        w.contracts.contract_seat_ids(w.customer.id, contract["id"], [seat_sub, quantity_sub])
    assert refused.value.field == "subscription_ids[1]"


def test_proration_rounding_set_by_an_edit_rounds_the_prorated_drafts(w):
    contract = _contract(w, subscriptions=SEATS)  # 3 seats in advance, BILL_IMMEDIATELY
    sub_id = stored(w, contract)["subscriptions"][0]["id"]
    edit(w, contract, update_subscriptions=[{"subscription_id": sub_id, "quantity_updates": [
        {"starting_at": "2026-11-11T00:00:00Z", "quantity_delta": 2}]}])
    # 2 seats × 1000 × 20/30 = 1333.33...
    assert lines(w, "SCHEDULED", NOV_11) == [("p-seats", D(2), D("1333.33"), NOV_11)]
    edit(w, contract, update_subscriptions=[{"subscription_id": sub_id,
                                             "proration_rounding": {"decimal_places": -2, "rounding_method": "CEILING"}}])
    assert lines(w, "SCHEDULED", NOV_11) == [("p-seats", D(2), D(1400), NOV_11)]  # up to whole dollars
    assert lines(w, "SCHEDULED", NOV) == [("p-seats", D(3), D("3000.00"), NOV)]  # a whole month: not prorated
    edit(w, contract, update_subscriptions=[{"subscription_id": sub_id, "proration_rounding": None}])
    assert lines(w, "SCHEDULED", NOV_11) == [("p-seats", D(2), D("1333.33"), NOV_11)]


# -- scheduled charges ------------------------------------------------------------------------------
RECURRING = {"product_id": "p-setup", "name": "Support", "schedule": {"recurring_schedule": {
    "amount_distribution": "DIVIDED_ROUNDED", "frequency": "MONTHLY", "amount": 1000,
    "starting_at": "2026-10-01T00:00:00Z", "ending_before": "2027-01-01T00:00:00Z"}}}


def test_a_recurring_charge_is_billed_item_by_item_and_an_uninvoiced_one_never(w):
    recorded = {"product_id": "p-setup", "name": "Paid elsewhere",
                "schedule": {"do_not_invoice": True, "schedule_items": [{"timestamp": "2026-11-05T00:00:00Z", "amount": 99}]}}
    w.clock.now = DEC_2
    contract = _contract(w, scheduled_charges=[RECURRING, recorded])
    # 1000 over Oct, Nov and Dec: 333.33, 333.33 and the 333.34 left, each on a SCHEDULED invoice on the 1st.
    assert [(d[1], d[3]) for d in drafts(w) if d[0] == "SCHEDULED"] == [(OCT, D("333.33")), (NOV, D("333.33")), (DEC, D("333.34"))]
    document = stored(w, contract)
    body = contract_json(document, w.contracts.contract(document), w.contracts.products(), ContractView())
    support, elsewhere = body["current"]["scheduled_charges"]
    assert [(i["timestamp"], i["amount"]) for i in support["schedule"]["schedule_items"]] == [
        ("2026-10-01T00:00:00Z", D("333.33")), ("2026-11-01T00:00:00Z", D("333.33")), ("2026-12-01T00:00:00Z", D("333.34"))]
    assert "do_not_invoice" not in support["schedule"] and elsewhere["schedule"]["do_not_invoice"] is True
    assert [(i["timestamp"], i["amount"]) for i in elsewhere["schedule"]["schedule_items"]] == [("2026-11-05T00:00:00Z", 99)]


def test_a_recurring_charge_added_by_an_edit_and_one_past_the_contract_refused_naming_its_end(w):
    w.clock.now = DEC_2
    contract = _contract(w, ending_before="2027-01-01T00:00:00Z")
    record = edit(w, contract, add_scheduled_charges=[dict(RECURRING, schedule={"recurring_schedule": dict(
        RECURRING["schedule"]["recurring_schedule"], amount_distribution="EACH", amount=250,
        starting_at="2026-12-01T00:00:00Z")})])
    assert [i["timestamp"] for i in record["add_scheduled_charges"][0]["schedule_items"]] == ["2026-12-01T00:00:00Z"]
    assert ("SCHEDULED", DEC, "DRAFT", D("250.00")) in drafts(w)

    before = stored(w, contract)
    past_the_end = dict(RECURRING["schedule"]["recurring_schedule"], ending_before="2027-03-01T00:00:00Z")
    with pytest.raises(InvalidInput) as refused:
        edit(w, contract, add_scheduled_charges=[dict(RECURRING, schedule={"recurring_schedule": past_the_end})])
    assert refused.value.field == "add_scheduled_charges[0].schedule.recurring_schedule.ending_before"
    assert stored(w, contract) == before
    with pytest.raises(InvalidInput) as refused:
        _contract(w, ending_before="2026-12-01T00:00:00Z", scheduled_charges=[RECURRING])
    assert refused.value.field == "scheduled_charges[0].schedule.recurring_schedule.ending_before"


def test_a_recurring_charge_whose_items_an_edit_changed_is_named_by_its_items(w):
    contract = _contract(w, ending_before="2027-01-01T00:00:00Z", scheduled_charges=[RECURRING])
    charge = stored(w, contract)["scheduled_charges"][0]
    with pytest.raises(InvalidInput) as refused:
        edit(w, contract, update_scheduled_charges=[{"scheduled_charge_id": charge["id"], "invoice_schedule": {
            "add_schedule_items": [{"timestamp": "2027-02-01T00:00:00Z", "amount": 5}]}}])
    # The added item is past the contract; the recurring schedule is not what put it there.
    assert refused.value.field == "update_scheduled_charges[0].schedule.schedule_items[3].timestamp"
