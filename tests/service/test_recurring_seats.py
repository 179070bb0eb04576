"""Recurring commits and credits linked to a subscription (`subscription_config`, POOLED): access
per seat, following the subscription's quantity (or seats) through contract edits. The world of
tests/service/test_recurring_grants.py: a contract from Oct 1 2026 to Jan 1 2027 billed monthly,
API calls (p-calls) at 1 cent for the first 100 of a month and 0.5 after from Nov 15. November
has 30 days: an increase on Nov 16 covers 15 of them, half the month.
"""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest

from tally.api.contract_models import ContractView, contract_json
from tally.api.contract_v2_models import contract_v2_json
from tally.billing.errors import InvalidInput
from tests.service.test_contracts_service import _contract_count
from tests.service.test_cycle_close import NOV
from tests.service.test_recurring_grants import _contract, _edit, _invoices, _made, _stored, w  # noqa: F401 (fixture)

UTC = timezone.utc
D = Decimal

SUBSCRIPTION = {  # 10 seats, billed monthly in advance
    "collection_schedule": "ADVANCE",
    "proration": {"is_prorated": True, "invoice_behavior": "BILL_IMMEDIATELY"},
    "subscription_rate": {"product_id": "p-seats", "billing_frequency": "MONTHLY"},
    "initial_quantity": 10,
    "temporary_id": "team",
}
PER_SEAT_CREDIT = {  # 500 a seat each month, prorated for seats added mid-month, for API calls only
    "product_id": "p-setup", "priority": 1, "name": "Seat credit", "starting_at": "2026-10-01T00:00:00Z",
    "access_amount": {"unit_price": 500}, "commit_duration": {"value": 1}, "applicable_product_ids": ["p-calls"],
    "subscription_config": {"subscription_id": "team", "apply_seat_increase_config": {"is_prorated": True}},
}
PER_SEAT_COMMIT = {  # 100 a seat each month, complimentary; seats added mid-month get a whole month's
    "product_id": "p-setup", "priority": 2, "name": "Seat commit", "starting_at": "2026-10-01T00:00:00Z",
    "access_amount": {"unit_price": 100}, "commit_duration": {"value": 1}, "applicable_product_ids": ["p-calls"],
    "subscription_config": {"subscription_id": "team", "allocation": "POOLED", "apply_seat_increase_config": {"is_prorated": False}},
}


SEATLESS = [SUBSCRIPTION, {k: v for k, v in SUBSCRIPTION.items() if k != "initial_quantity"} | {
    "temporary_id": "seatless", "quantity_management_mode": "SEAT_BASED",
    "seat_config": {"seat_group_key": "user_id", "initial_seat_ids": [], "initial_unassigned_seats": 2}}]


def _segments(grants: list[dict]) -> list[list[tuple]]:
    return [[(i["starting_at"], i["ending_before"], i["amount"]) for i in g["access_schedule"]["schedule_items"]] for g in grants]


def test_a_per_seat_recurring_credit_and_commit_follow_the_seats_and_a_mid_month_increase(w):
    w.clock.now = datetime(2026, 11, 24, tzinfo=UTC)
    contract = _contract(w, subscriptions=[SUBSCRIPTION], recurring_credits=[PER_SEAT_CREDIT], recurring_commits=[PER_SEAT_COMMIT])
    document = _stored(w, contract)
    sub_id = document["subscriptions"][0]["id"]
    assert [r["subscription_config"]["subscription_id"] for r in document["recurring_credits"] + document["recurring_commits"]] == [sub_id, sub_id]
    # 10 seats: 10 × 500 = 5000 of credit and 10 × 100 = 1000 of commit each month.
    assert _segments(_made(w, contract, "credits"))[:2] == [
        [("2026-10-01T00:00:00Z", "2026-11-01T00:00:00Z", 5000)], [("2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z", 5000)]]
    before = [c["id"] for c in _made(w, contract, "credits")]

    # Nov 16: 5 more seats. The credit adds 5 × 500 × 15/30 = 1250 to November's, from Nov 16;
    # the commit, not prorated, 5 × 100 = 500. December has 15 seats: 7500 and 1500.
    _edit(w, contract, update_subscriptions=[
        {"subscription_id": sub_id, "quantity_updates": [{"starting_at": "2026-11-16T00:00:00Z", "quantity_delta": 5}]}])
    w.clock.now = datetime(2026, 12, 20, tzinfo=UTC)
    credits, commits = _made(w, contract, "credits"), _made(w, contract, "commits")
    assert [c["id"] for c in credits] == before  # the same grants, derived again from the seats
    assert _segments(credits) == [
        [("2026-10-01T00:00:00Z", "2026-11-01T00:00:00Z", 5000)],
        [("2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z", 5000), ("2026-11-16T00:00:00Z", "2026-12-01T00:00:00Z", D("1250.00"))],
        [("2026-12-01T00:00:00Z", "2027-01-01T00:00:00Z", 7500)],
    ]
    assert _segments(commits) == [
        [("2026-10-01T00:00:00Z", "2026-11-01T00:00:00Z", 1000)],
        [("2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z", 1000), ("2026-11-16T00:00:00Z", "2026-12-01T00:00:00Z", 500)],
        [("2026-12-01T00:00:00Z", "2027-01-01T00:00:00Z", 1500)],
    ]
    assert credits[1]["subscription_config"] == {
        "subscription_id": sub_id, "allocation": "POOLED", "apply_seat_increase_config": {"is_prorated": True}}

    # Nov 20, 14000 calls: 100 × 1 + 13900 × 0.5 = 7050. The credit pays 5000 + 1250 = 6250 (a line
    # per access segment), the commit the other 800 of its 1500; nothing is left to pay.
    w.usage.calls.append((datetime(2026, 11, 20, tzinfo=UTC), 14000))
    usage = _invoices(w)[("USAGE", NOV)]
    applied = sorted((line.commit_id, line.total) for line in usage.line_items if line.commit_id)
    assert applied == sorted([(credits[1]["id"], D(-5000)), (credits[1]["id"], D("-1250.00")), (commits[1]["id"], D("-800.00"))])
    assert usage.total == D(0)

    # v1 and v2 show the link, and the access amount has no quantity (it is per seat).
    document = _stored(w, contract)
    v1 = contract_json(document, w.contracts.contract(document), w.contracts.products(), ContractView(w.clock.now))
    v2 = contract_v2_json(document, w.contracts.contract(document), w.contracts.products(), ContractView(w.clock.now))
    for terms in (v1["current"], v2):
        (credit,) = terms["recurring_credits"]
        assert credit["access_amount"] == {"credit_type_id": credit["access_amount"]["credit_type_id"], "unit_price": 500, "access_type": "SPEND"}
        assert credit["subscription_config"]["subscription_id"] == sub_id


def test_a_per_seat_credit_added_by_an_edit_with_a_seat_based_subscription_follows_its_seats(w):
    w.clock.now = datetime(2026, 11, 24, tzinfo=UTC)
    contract = _contract(w)
    seat_based = {**SUBSCRIPTION, "initial_quantity": None, "quantity_management_mode": "SEAT_BASED", "starting_at": "2026-11-01T00:00:00Z",
                  "seat_config": {"seat_group_key": "user_id", "initial_seat_ids": ["ann", "bob"]}}
    seat_based = {k: v for k, v in seat_based.items() if v is not None}
    _edit(w, contract, add_subscriptions=[seat_based], add_recurring_credits=[dict(PER_SEAT_CREDIT, starting_at="2026-11-01T00:00:00Z")])
    sub_id = _stored(w, contract)["subscriptions"][0]["id"]
    # Nov 16 cy and di join, Nov 20 ann leaves and Nov 25 eve joins: back to the 4 November has had,
    # so only the Nov 16 increase grants: 2 × 500 × 15/30 = 500.
    _edit(w, contract, update_subscriptions=[{"subscription_id": sub_id, "seat_updates": {
        "add_seat_ids": [{"seat_ids": ["cy", "di"], "starting_at": "2026-11-16T00:00:00Z"},
                         {"seat_ids": ["eve"], "starting_at": "2026-11-25T00:00:00Z"}],
        "remove_seat_ids": [{"seat_ids": ["ann"], "starting_at": "2026-11-20T00:00:00Z"}]}}])
    w.clock.now = datetime(2026, 12, 2, tzinfo=UTC)
    assert _segments(_made(w, contract, "credits")) == [
        [("2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z", 1000), ("2026-11-16T00:00:00Z", "2026-12-01T00:00:00Z", D("500.00"))],
        [("2026-12-01T00:00:00Z", "2027-01-01T00:00:00Z", 2000)],  # bob, cy, di, eve
    ]


@pytest.mark.parametrize(
    ("credit", "field"),
    [
        ({"subscription_config": {"subscription_id": "nope", "apply_seat_increase_config": {"is_prorated": True}}},
         "recurring_credits[0].subscription_config.subscription_id"),
        ({"access_amount": {"unit_price": 500, "quantity": 2}}, "recurring_credits[0].access_amount.quantity"),
        ({"subscription_config": None}, "recurring_credits[0].access_amount.quantity"),
        ({"subscription_config": {"subscription_id": "team", "allocation": "INDIVIDUAL", "apply_seat_increase_config": {"is_prorated": True}}},
         "recurring_credits[0].subscription_config.allocation"),
        # No seat is assigned yet, so no credit is made: the product is still checked (p-calls is usage).
        ({"product_id": "p-calls", "subscription_config": {"subscription_id": "seatless", "allocation": "INDIVIDUAL",
                                                           "apply_seat_increase_config": {"is_prorated": True}}},
         "recurring_credits[0].product_id"),
    ],
)
def test_a_bad_subscription_link_is_refused_naming_the_field_and_nothing_is_written(w, credit, field):
    before = _contract_count(w.dynamo)
    with pytest.raises(InvalidInput) as refused:
        _contract(w, subscriptions=SEATLESS, recurring_credits=[{k: v for k, v in (PER_SEAT_CREDIT | credit).items() if v is not None}])
    assert refused.value.field == field
    assert _contract_count(w.dynamo) == before


def test_a_quantity_only_subscription_made_seat_based_keeps_its_history_and_its_linked_credit_follows_seats(w):
    w.clock.now = datetime(2026, 11, 24, tzinfo=UTC)
    contract = _contract(w, subscriptions=[SUBSCRIPTION], recurring_credits=[PER_SEAT_CREDIT])
    sub_id = _stored(w, contract)["subscriptions"][0]["id"]
    _edit(w, contract, update_subscriptions=[
        {"subscription_id": sub_id, "quantity_updates": [{"starting_at": "2026-11-16T00:00:00Z", "quantity": 12}]}])
    invoices_before = {k: (v.total, [(l.product_id, l.quantity, l.total) for l in v.line_items]) for k, v in _invoices(w).items()}

    # Made SEAT_BASED: its 10 then 12 become unassigned seats. On Dec 1 ann and bob fill two of them
    # (still 12) and one more unassigned seat makes 13.
    _edit(w, contract, update_subscriptions=[{
        "subscription_id": sub_id,
        "quantity_management_mode_update": {"quantity_management_mode": "SEAT_BASED", "seat_config": {"seat_group_key": "user_id"}},
        "seat_updates": {"add_seat_ids": [{"seat_ids": ["ann", "bob"], "starting_at": "2026-12-01T00:00:00Z"}],
                         "add_unassigned_seats": [{"quantity": 1, "starting_at": "2026-12-01T00:00:00Z"}]}}])
    sub = _stored(w, contract)["subscriptions"][0]
    assert (sub["quantity_management_mode"], sub["seat_config"]["seat_group_key"], sub["seat_config"]["initial_unassigned_seats"]) == (
        "SEAT_BASED", "user_id", 10)
    history = w.contracts.subscription_quantity_history(w.customer.id, contract["id"], sub_id)["history"]
    NOV_16, DEC = datetime(2026, 11, 16, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)
    assert [(h["starting_at"], h["quantity"]) for h in history] == [(datetime(2026, 10, 1, tzinfo=UTC), 10), (NOV_16, 12), (DEC, 13)]
    seats = w.contracts.subscription_seats(w.customer.id, contract["id"], sub_id)
    assert [(s.starting_at, list(s.seats.assigned), s.seats.unassigned) for s in seats] == [
        (datetime(2026, 10, 1, tzinfo=UTC), [], 10), (NOV_16, [], 12), (DEC, ["ann", "bob"], 11)]
    # October and November are billed as before; December's credit is 13 × 500 = 6500.
    after = {k: (v.total, [(l.product_id, l.quantity, l.total) for l in v.line_items]) for k, v in _invoices(w).items()}
    assert {k: v for k, v in after.items() if k[1] < DEC} == {k: v for k, v in invoices_before.items() if k[1] < DEC}
    w.clock.now = datetime(2026, 12, 2, tzinfo=UTC)
    assert [s[0][2] for s in _segments(_made(w, contract, "credits"))] == [5000, 5000, 6500]
    document = _stored(w, contract)
    [shown] = contract_v2_json(document, w.contracts.contract(document), w.contracts.products(), ContractView(w.clock.now))["subscriptions"]
    assert (shown["quantity_management_mode"], shown["seat_config"]) == ("SEAT_BASED", {"seat_group_key": "user_id"})


@pytest.mark.parametrize(
    ("quantity", "mode", "rule"),
    [
        (10, "SEAT_BASED", "the subscription is SEAT_BASED already"),
        (D("2.5"), "QUANTITY_ONLY", "the subscription's quantity 2.5 is not a whole number of seats"),
    ],
)
def test_a_mode_update_that_cannot_be_made_is_refused_and_changes_nothing(w, quantity, mode, rule):
    w.clock.now = datetime(2026, 11, 24, tzinfo=UTC)
    sub = {**SUBSCRIPTION, "initial_quantity": quantity}
    if mode == "SEAT_BASED":
        sub = {k: v for k, v in sub.items() if k != "initial_quantity"} | {
            "quantity_management_mode": "SEAT_BASED", "seat_config": {"seat_group_key": "user_id", "initial_seat_ids": ["ann"]}}
    contract = _contract(w, subscriptions=[sub])
    before = _stored(w, contract)
    with pytest.raises(InvalidInput) as refused:
        _edit(w, contract, update_subscriptions=[{"subscription_id": before["subscriptions"][0]["id"], "quantity_management_mode_update": {
            "quantity_management_mode": "SEAT_BASED", "seat_config": {"seat_group_key": "user_id"}}}])
    assert (refused.value.field, refused.value.rule) == ("update_subscriptions[0].quantity_management_mode_update", rule)
    assert _stored(w, contract) == before


def test_an_individual_allocation_makes_a_credit_per_seat_that_only_its_usage_draws(w):
    w.clock.now = datetime(2026, 11, 24, tzinfo=UTC)
    seat_based = {k: v for k, v in SUBSCRIPTION.items() if k != "initial_quantity"} | {
        "quantity_management_mode": "SEAT_BASED", "starting_at": "2026-11-01T00:00:00Z",
        "seat_config": {"seat_group_key": "user_id", "initial_seat_ids": ["ann", "bob"], "initial_unassigned_seats": 1}}
    individual = PER_SEAT_CREDIT | {"starting_at": "2026-11-01T00:00:00Z", "subscription_config": {
        "subscription_id": "team", "allocation": "INDIVIDUAL", "apply_seat_increase_config": {"is_prorated": True}}}
    contract = _contract(w, subscriptions=[seat_based], recurring_credits=[individual])
    sub_id = _stored(w, contract)["subscriptions"][0]["id"]
    # Nov 16: ann leaves, cy joins (filling the unassigned seat): 500 × 15/30 = 250 for cy.
    _edit(w, contract, update_subscriptions=[{"subscription_id": sub_id, "seat_updates": {
        "add_seat_ids": [{"seat_ids": ["cy"], "starting_at": "2026-11-16T00:00:00Z"}],
        "remove_seat_ids": [{"seat_ids": ["ann"], "starting_at": "2026-11-16T00:00:00Z"}]}}])
    w.clock.now = datetime(2026, 12, 2, tzinfo=UTC)
    credits = _made(w, contract, "credits")
    assert [(c["access_schedule"]["schedule_items"][0]["starting_at"], c["access_schedule"]["schedule_items"][0]["amount"])
            for c in credits] == [("2026-11-01T00:00:00Z", 500), ("2026-11-01T00:00:00Z", 500), ("2026-11-16T00:00:00Z", D("250.00")),
                                  ("2026-12-01T00:00:00Z", 500), ("2026-12-01T00:00:00Z", 500)]
    # Each draws only for its seat's API calls (a presentation or pricing group key of user_id).
    assert [c["specifiers"] for c in credits[:1]] == [[
        {"product_id": "p-calls", "presentation_group_values": {"user_id": "ann"}},
        {"product_id": "p-calls", "pricing_group_values": {"user_id": "ann"}}]]
    assert "applicable_product_ids" not in credits[0] or credits[0]["applicable_product_ids"] == []
    assert len({c["id"] for c in credits}) == 5


def test_subscription_config_on_a_plain_commit_is_refused_pointing_at_recurring_grants(w):
    before = _contract_count(w.dynamo)
    commit = {"type": "PREPAID", "product_id": "p-setup", "subscription_config": {"subscription_id": "team"},
              "access_schedule": {"schedule_items": [{"amount": 100, "starting_at": "2026-10-01T00:00:00Z",
                                                      "ending_before": "2026-11-01T00:00:00Z"}]}}
    with pytest.raises(InvalidInput) as refused:
        _contract(w, subscriptions=[SUBSCRIPTION], commits=[commit])
    assert refused.value.field == "commits[0].subscription_config"
    assert "recurring_credits[].subscription_config" in refused.value.rule
    assert _contract_count(w.dynamo) == before


def test_a_quantity_recurring_credit_grants_units_of_usage_each_month(w):
    w.clock.now = datetime(2026, 11, 24, tzinfo=UTC)
    units = {"product_id": "p-setup", "priority": 1, "name": "1000 calls a month", "starting_at": "2026-10-01T00:00:00Z",
             "access_amount": {"unit_price": 1, "quantity": 1000, "access_type": "QUANTITY"}, "commit_duration": {"value": 1},
             "applicable_product_ids": ["p-calls"]}
    contract = _contract(w, recurring_credits=[units])
    # October, 30 calls at 2 = 60: all paid, 30 of 1000 units spent. November 20, 14000 calls:
    # 100 × 1 + 13900 × 0.5 = 7050, of which the 1000 units pay 7050 × 1000/14000 = 503.571… → 503.57.
    w.usage.calls += [(datetime(2026, 10, 10, tzinfo=UTC), 30), (datetime(2026, 11, 20, tzinfo=UTC), 14000)]
    invoices = _invoices(w)
    assert invoices[("USAGE", datetime(2026, 10, 1, tzinfo=UTC))].total == D(0)
    assert invoices[("USAGE", NOV)].total == D("6546.43")
    credits = _made(w, contract, "credits")
    assert [(c["access_schedule"]["schedule_items"][0]["amount"], c["balance"]) for c in credits[:2]] == [(1000, 0), (1000, 0)]
    document = _stored(w, contract)
    (shown,) = contract_v2_json(document, w.contracts.contract(document), w.contracts.products(), ContractView(w.clock.now))["recurring_credits"]
    assert shown["access_amount"] == {"credit_type_id": "00000000-0000-0000-0000-000000000000", "unit_price": 1, "quantity": 1000,
                                      "access_type": "QUANTITY"}


def test_a_plain_quantity_credit_pays_units_and_a_postpaid_quantity_commit_is_refused(w):
    w.clock.now = datetime(2026, 11, 24, tzinfo=UTC)
    schedule = {"access_type": "QUANTITY", "schedule_items": [
        {"amount": 500, "starting_at": "2026-11-01T00:00:00Z", "ending_before": "2026-12-01T00:00:00Z"}]}
    credit = {"product_id": "p-setup", "name": "500 calls", "access_schedule": schedule, "applicable_product_ids": ["p-calls"]}
    before = _contract_count(w.dynamo)
    with pytest.raises(InvalidInput) as refused:
        _contract(w, commits=[credit | {"type": "POSTPAID", "invoice_schedule": {"schedule_items": [
            {"timestamp": "2026-12-01T00:00:00Z", "amount": 500}]}}])
    assert refused.value.field == "commits[0].access_schedule.access_type"
    assert _contract_count(w.dynamo) == before
    _contract(w, credits=[credit])
    # Nov 20, 2000 calls: 100 × 1 + 1900 × 0.5 = 1050; 500 units pay 1050 × 500/2000 = 262.50.
    w.usage.calls.append((datetime(2026, 11, 20, tzinfo=UTC), 2000))
    assert _invoices(w)[("USAGE", NOV)].total == D("787.50")


def test_seat_balances_list_each_seats_own_credits(w):
    from tally.services.seat_balances import SeatWindow, seat_grants, seat_json

    w.clock.now = datetime(2026, 11, 24, tzinfo=UTC)
    seat_based = {k: v for k, v in SUBSCRIPTION.items() if k != "initial_quantity"} | {
        "quantity_management_mode": "SEAT_BASED", "starting_at": "2026-11-01T00:00:00Z",
        "seat_config": {"seat_group_key": "user_id", "initial_seat_ids": ["ann", "bob"]}}
    individual = PER_SEAT_CREDIT | {"starting_at": "2026-11-01T00:00:00Z", "subscription_config": {
        "subscription_id": "team", "allocation": "INDIVIDUAL", "apply_seat_increase_config": {"is_prorated": True}}}
    contract = _contract(w, subscriptions=[seat_based], recurring_credits=[individual])
    sub_id = _stored(w, contract)["subscriptions"][0]["id"]
    _edit(w, contract, update_subscriptions=[{"subscription_id": sub_id, "seat_updates": {
        "remove_seat_ids": [{"seat_ids": ["ann"], "starting_at": "2026-12-01T00:00:00Z"}]}}])
    w.clock.now = datetime(2026, 12, 2, tzinfo=UTC)
    grants = seat_grants(_stored(w, contract), w.clock.now)
    figures = w.balances.figures(w.customer.id, with_balances=True)
    # Dec 2: bob's November 500 has expired, his December 500 is whole; ann has only November's.
    bob = seat_json("bob", grants["bob"], figures, SeatWindow(), include_grants=True, include_ledgers=False)
    assert bob["balances"] == [{"credit_type_id": bob["balances"][0]["credit_type_id"], "access_type": "SPEND",
                                "balance": 500, "starting_balance": 1000}]
    assert [(c["start_date"], c["balance"]) for c in bob["credits"]] == [("2026-11-01T00:00:00Z", 0), ("2026-12-01T00:00:00Z", 500)]
    december = SeatWindow(covering_date=datetime(2026, 12, 15, tzinfo=UTC))
    ann = seat_json("ann", grants["ann"], figures, december, include_grants=True, include_ledgers=True)
    assert (ann["balances"], ann["credits"], ann["commits"]) == ([], [], [])
