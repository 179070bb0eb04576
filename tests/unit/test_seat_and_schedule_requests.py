"""Subscription and scheduled charge bodies of contract create (and of /v2/contracts/edit, which
takes the same models) as the documents Tally stores: SEAT_BASED seats, proration, recurring
schedules and do_not_invoice. Each refusal names its field. Amounts are USD cents."""

from __future__ import annotations

from decimal import Decimal, localcontext

import pytest

from tally.api.contract_edit_models import ContractEdit
from tally.api.contract_models import ScheduledChargeIn, SubscriptionIn
from tally.billing import exact_json
from tally.billing.errors import InvalidInput

D = Decimal


def parsed(model, body: dict):
    return model.model_validate(exact_json.loads(exact_json.dumps(body)))


def subscription(**fields) -> dict:
    return {
        "collection_schedule": "ADVANCE",
        "proration": {"is_prorated": True},
        "subscription_rate": {"product_id": "p-seats", "billing_frequency": "MONTHLY"},
        "initial_quantity": 3,
    } | fields


SEAT_BASED = {"quantity_management_mode": "SEAT_BASED", "initial_quantity": None,
              "seat_config": {"seat_group_key": "user_id", "initial_seat_ids": ["ann", "bob"], "initial_unassigned_seats": 3}}


def document(body: dict) -> dict:
    return parsed(SubscriptionIn, {k: v for k, v in body.items() if v is not None}).to_document("subscriptions[0]")


def test_a_seat_based_subscription_is_stored_with_its_seats_and_their_count_as_its_quantity():
    stored = document(subscription(**SEAT_BASED))
    assert stored["quantity_management_mode"] == "SEAT_BASED"
    assert stored["seat_config"] == {"seat_group_key": "user_id", "initial_seat_ids": ["ann", "bob"],
                                     "initial_unassigned_seats": 3}
    assert stored["initial_quantity"] == 5  # 2 assigned + 3 unassigned


BEHAVIOURS = [
    ("ADVANCE defaults to BILL_IMMEDIATELY", "ADVANCE", None, "BILL_IMMEDIATELY"),
    ("ARREARS defaults to BILL_ON_NEXT_COLLECTION_DATE, its only choice", "ARREARS", None, "BILL_ON_NEXT_COLLECTION_DATE"),
    ("ADVANCE may bill increases on the next collection date", "ADVANCE", "BILL_ON_NEXT_COLLECTION_DATE",
     "BILL_ON_NEXT_COLLECTION_DATE"),
]


@pytest.mark.parametrize("schedule,sent,stored", [c[1:] for c in BEHAVIOURS], ids=[c[0] for c in BEHAVIOURS])
def test_invoice_behaviour(schedule, sent, stored):
    proration = {"is_prorated": True} | ({"invoice_behavior": sent} if sent else {})
    assert document(subscription(collection_schedule=schedule, proration=proration))["invoice_behavior"] == stored


def test_proration_rounding_is_stored_as_a_whole_number_of_places_and_a_method():
    stored = document(subscription(proration={"is_prorated": True, "rounding": {"decimal_places": -2, "rounding_method": "CEILING"}}))
    assert stored["proration_rounding"] == {"decimal_places": D(-2), "rounding_method": "CEILING"}


SUBSCRIPTION_REFUSALS = [
    ("BILL_IMMEDIATELY for ARREARS", subscription(collection_schedule="ARREARS", proration={
        "invoice_behavior": "BILL_IMMEDIATELY"}), "subscriptions[0].proration.invoice_behavior"),
    ("rounding to half a place", subscription(proration={"rounding": {"decimal_places": 1.5, "rounding_method": "FLOOR"}}),
     "subscriptions[0].proration.rounding.decimal_places"),
    ("rounding to 13 places", subscription(proration={"rounding": {"decimal_places": 13, "rounding_method": "FLOOR"}}),
     "subscriptions[0].proration.rounding.decimal_places"),
    ("SEAT_BASED without seat_config", subscription(**(SEAT_BASED | {"seat_config": None})), "subscriptions[0].seat_config"),
    ("seat_config on a QUANTITY_ONLY subscription", subscription(seat_config=SEAT_BASED["seat_config"]),
     "subscriptions[0].seat_config"),
    ("a seat id twice", subscription(**(SEAT_BASED | {"seat_config": {"seat_group_key": "u", "initial_seat_ids": ["a", "a"]}})),
     "subscriptions[0].seat_config.initial_seat_ids[1]"),
    ("a blank seat id", subscription(**(SEAT_BASED | {"seat_config": {"seat_group_key": "u", "initial_seat_ids": [" "]}})),
     "subscriptions[0].seat_config.initial_seat_ids[0]"),
    ("half an unassigned seat", subscription(**(SEAT_BASED | {"seat_config": {
        "seat_group_key": "u", "initial_seat_ids": [], "initial_unassigned_seats": 0.5}})),
     "subscriptions[0].seat_config.initial_unassigned_seats"),
    ("an initial quantity that is not the seats", subscription(**(SEAT_BASED | {"initial_quantity": 4})),
     "subscriptions[0].initial_quantity"),
    ("QUANTITY_ONLY without a quantity", subscription(initial_quantity=None), "subscriptions[0].initial_quantity"),
]


@pytest.mark.parametrize("body,field", [c[1:] for c in SUBSCRIPTION_REFUSALS], ids=[c[0] for c in SUBSCRIPTION_REFUSALS])
def test_a_bad_subscription_is_refused_naming_the_field(body, field):
    with pytest.raises(InvalidInput) as refused:
        document(body)
    assert refused.value.field == field


# -- scheduled charges ------------------------------------------------------------------------------
def charge(schedule: dict) -> dict:
    return parsed(ScheduledChargeIn, {"product_id": "p-setup", "schedule": schedule}).to_document("scheduled_charges[0]")


def recurring(**fields) -> dict:
    return {"recurring_schedule": {"amount_distribution": "DIVIDED_ROUNDED", "frequency": "MONTHLY", "amount": 1000,
                                   "starting_at": "2026-01-01T00:00:00Z", "ending_before": "2026-04-01T00:00:00Z"} | fields}


def items(stored: dict) -> list[tuple]:
    return [(i["timestamp"][:10], i["quantity"], i["unit_price"]) for i in stored["schedule_items"]]


RECURRING = [
    ("DIVIDED_ROUNDED: 1000 over 3 months is 333.33 twice and the 333.34 left on the last",
     recurring(), [("2026-01-01", 1, D("333.33")), ("2026-02-01", 1, D("333.33")), ("2026-03-01", 1, D("333.34"))]),
    ("EACH: every quarter bills 2 × 500", recurring(amount_distribution="EACH", frequency="QUARTERLY", amount=None,
                                                    quantity=2, unit_price=500, ending_before="2027-01-01T00:00:00Z"),
     [("2026-01-01", 2, 500), ("2026-04-01", 2, 500), ("2026-07-01", 2, 500), ("2026-10-01", 2, 500)]),
    ("monthly from Jan 31 counts from the start: Feb 28, Mar 31, Apr 30",
     recurring(amount_distribution="EACH", amount=100, starting_at="2026-01-31T00:00:00Z", ending_before="2026-05-01T00:00:00Z"),
     [("2026-01-31", 1, 100), ("2026-02-28", 1, 100), ("2026-03-31", 1, 100), ("2026-04-30", 1, 100)]),
    ("SEMI_ANNUAL: 1200 over a year is 600 twice",
     recurring(frequency="SEMI_ANNUAL", amount=1200, ending_before="2027-01-01T00:00:00Z"),
     [("2026-01-01", 1, 600), ("2026-07-01", 1, 600)]),
]


@pytest.mark.parametrize("schedule,expected", [c[1:] for c in RECURRING], ids=[c[0] for c in RECURRING])
def test_a_recurring_schedule_is_stored_as_the_items_it_makes(schedule, expected):
    stored = charge(schedule)
    assert items(stored) == expected
    assert stored["recurring_schedule"]["items"] == len(expected)


def test_divided_splits_the_amount_exactly_so_the_items_add_up_to_it():
    stored = charge(recurring(amount_distribution="DIVIDED"))
    prices = [i["unit_price"] for i in stored["schedule_items"]]
    with localcontext(prec=38):  # DynamoDB's digits, as pricing adds
        assert sum(prices) == 1000
    assert prices[0] == prices[1] and str(prices[0]).startswith("333.3333333333")


def test_do_not_invoice_is_kept_with_the_charge():
    assert charge({**recurring(), "do_not_invoice": True})["do_not_invoice"] is True
    assert "do_not_invoice" not in charge({**recurring(), "do_not_invoice": False})


CHARGE_REFUSALS = [
    ("both items and a recurring schedule", {**recurring(), "schedule_items": [{"timestamp": "2026-01-01T00:00:00Z", "amount": 1}]},
     "scheduled_charges[0].schedule"),
    ("neither", {}, "scheduled_charges[0].schedule"),
    ("an amount and a unit price", recurring(unit_price=5, quantity=1), "scheduled_charges[0].schedule.recurring_schedule.amount"),
    ("an end before the start", recurring(ending_before="2025-12-01T00:00:00Z"),
     "scheduled_charges[0].schedule.recurring_schedule.ending_before"),
    ("more than 1,200 items", recurring(starting_at="2000-01-01T00:00:00Z", ending_before="2200-01-01T00:00:00Z"),
     "scheduled_charges[0].schedule.recurring_schedule.ending_before"),
]


@pytest.mark.parametrize("schedule,field", [c[1:] for c in CHARGE_REFUSALS], ids=[c[0] for c in CHARGE_REFUSALS])
def test_a_bad_schedule_is_refused_naming_the_field(schedule, field):
    with pytest.raises(InvalidInput) as refused:
        charge(schedule)
    assert refused.value.field == field


# -- seat updates through /v2/contracts/edit --------------------------------------------------------
def test_seat_updates_are_kept_one_change_each_in_the_sdk_field_order():
    edit = parsed(ContractEdit, {"customer_id": "c", "contract_id": "k", "update_subscriptions": [{
        "subscription_id": "s",
        "seat_updates": {
            "remove_unassigned_seats": [{"quantity": 1, "starting_at": "2026-02-01T00:00:00Z"}],
            "remove_seat_ids": [{"seat_ids": ["ann"], "starting_at": "2026-02-01T00:00:00Z"}],
            "add_unassigned_seats": [{"quantity": 2, "starting_at": "2026-02-01T00:00:00Z"}],
            "add_seat_ids": [{"seat_ids": ["cy", "di"], "starting_at": "2026-02-01T00:00:00Z"},
                             {"seat_ids": ["ed"], "starting_at": "2026-01-15T00:00:00Z"}],
        },
        "proration_rounding": {"decimal_places": 0, "rounding_method": "HALF_UP"},
    }]}).changes()
    [update] = edit["update_subscriptions"]
    assert [{k: v for k, v in c.items() if k != "starting_at"} for c in update["seat_updates"]] == [
        {"add_seat_ids": ["cy", "di"]}, {"add_seat_ids": ["ed"]}, {"add_unassigned_seats": 2},
        {"remove_seat_ids": ["ann"]}, {"remove_unassigned_seats": 1},
    ]
    assert update["proration_rounding"] == {"decimal_places": 0, "rounding_method": "HALF_UP"}


@pytest.mark.parametrize("seat_updates,field", [
    ({"add_unassigned_seats": [{"quantity": 0, "starting_at": "2026-02-01T00:00:00Z"}]},
     "update_subscriptions[0].seat_updates.add_unassigned_seats[0].quantity"),
    ({"remove_seat_ids": [{"seat_ids": ["a", "a"], "starting_at": "2026-02-01T00:00:00Z"}]},
     "update_subscriptions[0].seat_updates.remove_seat_ids[0].seat_ids[1]"),
    ({"add_seat_ids": [{"seat_ids": ["a"], "starting_at": "someday"}]},
     "update_subscriptions[0].seat_updates.add_seat_ids[0].starting_at"),
], ids=["no seats added", "a seat removed twice", "a date that is not one"])
def test_a_bad_seat_update_is_refused_naming_the_field(seat_updates, field):
    body = {"customer_id": "c", "contract_id": "k",
            "update_subscriptions": [{"subscription_id": "s", "seat_updates": seat_updates}]}
    with pytest.raises(InvalidInput) as refused:
        parsed(ContractEdit, body).changes()
    assert refused.value.field == field
