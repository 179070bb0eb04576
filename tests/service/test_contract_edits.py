"""Contract edits as a use case: moto DynamoDB, the fake catalog and usage of the contracts tests, a
fake clock, the real cycle close to finalize periods.

Requests go through the API's request model (`ContractEdit.changes`), so the mapping of Metronome's
edit body is covered here too. The contract starts on Oct 1 2026 and bills monthly from the 1st;
"now" is Nov 24 2026 12:00. November has 30 days, so a change on Nov 16 covers exactly half of it.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from tally.adapters.dynamo.documents import DynamoContractStore
from tally.api.contract_edit_models import ContractEdit, edit_json
from tally.api.contract_models import ContractView
from tally.billing import exact_json
from tally.billing.errors import Conflict, InvalidInput
from tally.services.contract_edits import ContractEditService, apply_edit
from tests.service.test_cycle_close import BARE, GRACE, NOV, OCT, SEATS, _contract, _stored_records, _world
from tests.service.test_contracts_service import FakeCatalog, FakeUsage

UTC = timezone.utc
DEC = datetime(2026, 12, 1, tzinfo=UTC)
NOV_16 = datetime(2026, 11, 16, tzinfo=UTC)
KEY = "key-1"


@pytest.fixture()
def w(dynamo, clock):
    clock.now = datetime(2026, 11, 24, 12, tzinfo=UTC)
    usage = FakeUsage([])
    world = _world(dynamo, clock, FakeCatalog(), lambda customer: usage)
    world.usage = usage
    world.contract_store = DynamoContractStore(dynamo["billing"], dynamo["client"])
    world.edits = ContractEditService(world.contracts, world.contract_store, world.store, clock, sleep=lambda _: None)
    return world


def edit(w, contract: dict, *, uniqueness_key=None, author=KEY, **body) -> dict:
    """An edit as the API takes it: the request model's changes (numbers exact)."""
    request = {"customer_id": w.customer.id, "contract_id": contract["id"], **body}
    if uniqueness_key is not None:
        request["uniqueness_key"] = uniqueness_key
    parsed = ContractEdit.model_validate(exact_json.loads(exact_json.dumps(request)))
    return w.edits.edit(
        w.customer.id, contract["id"], parsed.changes(), author=author, uniqueness_key=parsed.uniqueness_key,
        allow_ending_before_finalized=parsed.allow_contract_ending_before_finalized_invoice,
    )


def stored(w, contract: dict) -> dict:
    return w.contracts.get(w.customer.id, contract["id"])


def drafts(w) -> list[tuple]:
    """(type, issued or period start, status, total) of every invoice, in listing order."""
    return [(d.invoice.type.value, d.invoice.starting_at, d.invoice.status, d.invoice.total) for d in w.invoices.list(w.customer.id)[0]]


def lines(w, type_: str, starting_at: datetime) -> list[tuple]:
    (invoice,) = [d.invoice for d in w.invoices.list(w.customer.id)[0]
                  if d.invoice.type.value == type_ and d.invoice.starting_at == starting_at]
    return [(line.product_id, line.quantity, line.total, line.starting_at) for line in invoice.line_items]


def seats(w, contract: dict, quantity_updates: list[dict], **more) -> dict:
    sub_id = stored(w, contract)["subscriptions"][0]["id"]
    return edit(w, contract, update_subscriptions=[{"subscription_id": sub_id, "quantity_updates": quantity_updates, **more}])


def seat_history(w, contract: dict) -> list[tuple]:
    sub_id = stored(w, contract)["subscriptions"][0]["id"]
    history = w.contracts.subscription_quantity_history(w.customer.id, contract["id"], sub_id)["history"]
    return [(h["starting_at"], h["quantity"]) for h in history]


# -- subscriptions ---------------------------------------------------------------------------------
def test_seats_added_mid_month_in_advance_are_charged_prorated_when_they_start(w):
    contract = _contract(w, subscriptions=SEATS)  # 3 seats at 1000 a month, in advance
    before = drafts(w)

    seats(w, contract, [{"starting_at": "2026-11-16T00:00:00Z", "quantity_delta": 2}])

    # The 2 seats are charged on Nov 16 for the rest of November: 2 × 1000 × 15/30 days = 1000.
    assert drafts(w) == before + [("SCHEDULED", NOV_16, "DRAFT", Decimal("1000.00"))]
    assert lines(w, "SCHEDULED", NOV_16) == [("p-seats", Decimal(2), Decimal("1000.00"), NOV_16)]
    assert lines(w, "SCHEDULED", NOV) == [("p-seats", Decimal(3), Decimal("3000.00"), NOV)]  # Nov 1 as it was
    assert seat_history(w, contract) == [(OCT, Decimal(3)), (NOV_16, Decimal(5))]

    # Down to 4 from Nov 20: in advance, a decrease is not refunded; the history shows it.
    seats(w, contract, [{"starting_at": "2026-11-20T00:00:00Z", "quantity": 4}])
    assert drafts(w) == before + [("SCHEDULED", NOV_16, "DRAFT", Decimal("1000.00"))]
    assert seat_history(w, contract) == [(OCT, Decimal(3)), (NOV_16, Decimal(5)), (NOV + timedelta(days=19), Decimal(4))]


def test_seats_added_mid_month_in_arrears_split_the_month_on_the_usage_invoice(w):
    arrears = [dict(SEATS[0], collection_schedule="ARREARS", proration={"is_prorated": True})]
    contract = _contract(w, subscriptions=arrears)

    seats(w, contract, [{"starting_at": "2026-11-16T00:00:00Z", "quantity_delta": 2}])

    # 3 seats for the first half (3 × 1000 × 15/30 = 1500), 5 for the second (5 × 1000 × 15/30 = 2500).
    assert lines(w, "USAGE", NOV) == [
        ("p-seats", Decimal(3), Decimal("1500.00"), NOV),
        ("p-seats", Decimal(5), Decimal("2500.00"), NOV_16),
    ]
    assert lines(w, "USAGE", OCT) == [("p-seats", Decimal(3), Decimal("3000.00"), OCT)]


def test_quantity_changes_apply_on_their_dates_in_the_order_sent(w):
    contract = _contract(w, subscriptions=SEATS)
    # Metronome's example: 12 on a day, then a delta of -1 the same day, makes 11 from that day. A
    # delta sent later for an earlier day adds to the quantity then, and a later absolute quantity
    # still sets it.
    seats(w, contract, [{"starting_at": "2026-12-10T00:00:00Z", "quantity": 12},
                        {"starting_at": "2026-12-10T00:00:00Z", "quantity_delta": -1}])
    seats(w, contract, [{"starting_at": "2026-12-01T00:00:00Z", "quantity_delta": 4},
                        {"starting_at": "2026-12-20T00:00:00Z", "quantity_delta": 2}])
    assert seat_history(w, contract) == [
        (OCT, Decimal(3)), (DEC, Decimal(7)), (datetime(2026, 12, 10, tzinfo=UTC), Decimal(11)),
        (datetime(2026, 12, 20, tzinfo=UTC), Decimal(13)),
    ]


def test_a_subscription_can_be_added_and_ended_early(w):
    contract = _contract(w)
    record = edit(w, contract, add_subscriptions=[dict(SEATS[0], starting_at="2026-11-16T00:00:00Z")])
    # Half of November in advance: 3 × 1000 × 15/30 = 1500, issued when it starts.
    assert lines(w, "SCHEDULED", NOV_16) == [("p-seats", Decimal(3), Decimal("1500.00"), NOV_16)]

    sub_id = record["add_subscriptions"][0]["id"]
    assert [s["id"] for s in stored(w, contract)["subscriptions"]] == [sub_id]
    edit(w, contract, update_subscriptions=[{"subscription_id": sub_id, "ending_before": "2026-11-21T00:00:00Z",
                                             "name": "Seats (trial)"}])
    # Charged in advance up to its end: 3 × 1000 × 5/30 = 500.
    assert lines(w, "SCHEDULED", NOV_16) == [("p-seats", Decimal(3), Decimal("500.00"), NOV_16)]
    assert stored(w, contract)["subscriptions"][0]["name"] == "Seats (trial)"


# -- every other change ----------------------------------------------------------------------------
def test_overrides_are_added_and_removed_and_the_drafts_reprice(w):
    contract = _contract(w, overrides=[{"starting_at": "2026-11-20T00:00:00Z", "product_id": "p-calls",
                                        "type": "MULTIPLIER", "multiplier": 0.5}])
    w.usage.calls += [(datetime(2026, 11, 10, tzinfo=UTC), 50)]  # 50 calls at 2 = 100
    assert lines(w, "USAGE", NOV)[0][2] == Decimal("100.00")

    record = edit(w, contract, add_overrides=[{"starting_at": "2026-11-05T00:00:00Z", "product_id": "p-calls",
                                               "type": "OVERWRITE", "overwrite_rate": {"rate_type": "FLAT", "price": 3}}])
    assert lines(w, "USAGE", NOV)[0][2] == Decimal("150.00")  # 50 × 3

    (initial, added) = stored(w, contract)["overrides"]
    assert added["id"] == record["add_overrides"][0]["id"] and added["created_at"] == "2026-11-24T12:00:00Z"
    edit(w, contract, remove_overrides=[{"id": added["id"]}, {"id": initial["id"]}])
    assert lines(w, "USAGE", NOV)[0][2] == Decimal("100.00")
    assert stored(w, contract)["overrides"] == []


def test_scheduled_charges_are_added_updated_and_archived(w):
    contract = _contract(w)
    record = edit(w, contract, add_scheduled_charges=[{
        "product_id": "p-setup", "name": "Migration",
        "schedule": {"schedule_items": [{"timestamp": "2026-11-15T00:00:00Z", "amount": 700}]},
    }])
    nov_15, nov_18 = datetime(2026, 11, 15, tzinfo=UTC), datetime(2026, 11, 18, tzinfo=UTC)
    assert ("SCHEDULED", nov_15, "DRAFT", Decimal("700.00")) in drafts(w)

    charge = record["add_scheduled_charges"][0]
    item_id = charge["schedule_items"][0]["id"]
    edit(w, contract, update_scheduled_charges=[{
        "scheduled_charge_id": charge["id"],
        "invoice_schedule": {
            "update_schedule_items": [{"id": item_id, "quantity": 3, "unit_price": 300}],
            "add_schedule_items": [{"timestamp": "2026-11-18T00:00:00Z", "amount": 100}],
        },
    }])
    assert [d for d in drafts(w) if d[0] == "SCHEDULED"] == [
        ("SCHEDULED", nov_15, "DRAFT", Decimal("900.00")), ("SCHEDULED", nov_18, "DRAFT", Decimal("100.00"))]

    edit(w, contract, archive_scheduled_charges=[{"id": charge["id"]}])
    assert [d for d in drafts(w) if d[0] == "SCHEDULED"] == []
    document = stored(w, contract)
    assert document["scheduled_charges"] == []
    assert [(c["id"], c["archived_at"]) for c in document["archived_scheduled_charges"]] == [(charge["id"], "2026-11-24T12:00:00Z")]


def test_credits_and_commits_are_added_and_archived(w):
    contract = _contract(w)
    w.usage.calls += [(datetime(2026, 11, 10, tzinfo=UTC), 50)]  # 100 in November
    record = edit(w, contract, add_credits=[{
        "product_id": "p-setup", "name": "Goodwill", "priority": 1,
        "access_schedule": {"schedule_items": [{"amount": 60, "starting_at": "2026-11-01T00:00:00Z",
                                                "ending_before": "2026-12-01T00:00:00Z"}]},
    }], add_commits=[{
        "product_id": "p-setup", "type": "PREPAID", "name": "Prepay",
        "access_schedule": {"schedule_items": [{"amount": 300, "starting_at": "2026-11-20T00:00:00Z",
                                                "ending_before": "2027-01-01T00:00:00Z"}]},
        "invoice_schedule": {"schedule_items": [{"timestamp": "2026-11-20T00:00:00Z", "amount": 250}]},
    }])
    nov_20 = datetime(2026, 11, 20, tzinfo=UTC)
    # The credit pays 60 of November's 100; the commit is bought on Nov 20.
    assert ("USAGE", NOV, "DRAFT", Decimal("40.00")) in drafts(w)
    assert ("SCHEDULED", nov_20, "DRAFT", Decimal("250.00")) in drafts(w)
    assert record["add_credits"][0]["created_at"] == "2026-11-24T12:00:00Z"

    edit(w, contract, archive_credits=[{"id": record["add_credits"][0]["id"]}],
         archive_commits=[{"id": record["add_commits"][0]["id"]}])
    assert ("USAGE", NOV, "DRAFT", Decimal("100.00")) in drafts(w)
    assert [d for d in drafts(w) if d[1] == nov_20] == []
    document = stored(w, contract)
    assert (document["credits"], document["commits"]) == ([], [])
    assert [g["name"] for g in document["archived_credits"] + document["archived_commits"]] == ["Goodwill", "Prepay"]
    assert w.balances.grants(w.customer.id).grants == ()


def test_the_end_date_name_and_payment_terms_change(w):
    contract = _contract(w, subscriptions=SEATS)
    edit(w, contract, update_contract_end_date="2026-11-16T00:00:00Z", update_contract_name="Acme (ending)",
         update_net_payment_terms_days=45)
    document = stored(w, contract)
    assert (document["ending_before"], document["name"], document["net_payment_terms_days"]) == (
        "2026-11-16T00:00:00Z", "Acme (ending)", Decimal(45))
    # November is now a half period: the seats in advance for it cost 3 × 1000 × 15/30 = 1500.
    assert lines(w, "SCHEDULED", NOV) == [("p-seats", Decimal(3), Decimal("1500.00"), NOV)]
    edit(w, contract, update_contract_end_date=None, update_contract_name=None)
    document = stored(w, contract)
    assert "ending_before" not in document and "name" not in document


# -- refusals --------------------------------------------------------------------------------------
REFUSED = [
    ("an unknown override", {"remove_overrides": [{"id": "nope"}]}, "remove_overrides[0].id"),
    ("an unknown subscription", {"update_subscriptions": [{"subscription_id": "nope", "name": "x"}]},
     "update_subscriptions[0].subscription_id"),
    ("a quantity going negative", {"update_subscriptions": [{"subscription_id": "SUB", "quantity_updates": [
        {"starting_at": "2026-11-16T00:00:00Z", "quantity_delta": -4}]}]}, "update_subscriptions[0].quantity_updates"),
    ("a quantity change off the hour", {"update_subscriptions": [{"subscription_id": "SUB", "quantity_updates": [
        {"starting_at": "2026-11-16T00:30:00Z", "quantity": 4}]}]}, "update_subscriptions[0].quantity_updates[0].starting_at"),
    ("a quantity change before the subscription", {"update_subscriptions": [{"subscription_id": "SUB", "quantity_updates": [
        {"starting_at": "2026-09-16T00:00:00Z", "quantity": 4}]}]}, "update_subscriptions[0].quantity_updates[0].starting_at"),
    ("both quantity and delta", {"update_subscriptions": [{"subscription_id": "SUB", "quantity_updates": [
        {"starting_at": "2026-11-16T00:00:00Z", "quantity": 4, "quantity_delta": 1}]}]},
     "update_subscriptions[0].quantity_updates[0].quantity"),
    ("a zero delta", {"update_subscriptions": [{"subscription_id": "SUB", "quantity_updates": [
        {"starting_at": "2026-11-16T00:00:00Z", "quantity_delta": 0}]}]},
     "update_subscriptions[0].quantity_updates[0].quantity_delta"),
    ("a subscription ending before it starts", {"update_subscriptions": [{"subscription_id": "SUB",
                                                                          "ending_before": "2026-09-01T00:00:00Z"}]},
     "update_subscriptions[0].ending_before"),
    ("an override of a product not on the card", {"add_overrides": [{"starting_at": "2026-11-05T00:00:00Z",
                                                                       "product_id": "p-setup", "type": "MULTIPLIER",
                                                                       "multiplier": 2}]}, "add_overrides[0].product_id"),
    ("a subscription to a usage product", {"add_subscriptions": [dict(SEATS[0], subscription_rate={
        "product_id": "p-calls", "billing_frequency": "MONTHLY"})]}, "add_subscriptions[0].subscription_rate.product_id"),
    ("a charge after the contract", {"update_contract_end_date": "2026-12-01T00:00:00Z", "add_scheduled_charges": [
        {"product_id": "p-setup", "schedule": {"schedule_items": [{"timestamp": "2026-12-15T00:00:00Z", "amount": 1}]}}]},
     "add_scheduled_charges[0].schedule.schedule_items[0].timestamp"),
    ("an end before the start", {"update_contract_end_date": "2026-09-01T00:00:00Z"}, "update_contract_end_date"),
    ("an unknown credit", {"archive_credits": [{"id": "nope"}]}, "archive_credits[0].id"),
    ("a discount with no schedule", {"add_discounts": [{"product_id": "p-setup", "schedule": {}}]}, "add_discounts[0].schedule"),
    ("an unknown commit", {"update_commits": [{"commit_id": "c", "name": "x"}]}, "update_commits[0].commit_id"),
    ("a commit update naming no change", {"update_commits": [{"commit_id": "c"}]}, "update_commits[0]"),
    ("seat updates of a QUANTITY_ONLY subscription", {"update_subscriptions": [{"subscription_id": "SUB", "seat_updates": {
        "add_seat_ids": [{"seat_ids": ["ann"], "starting_at": "2026-11-16T00:00:00Z"}]}}]},
     "update_subscriptions[0].seat_updates"),
    ("seat updates naming no change", {"update_subscriptions": [{"subscription_id": "SUB", "seat_updates": {}}]},
     "update_subscriptions[0].seat_updates"),
    ("nothing to change", {}, "body"),
]


@pytest.mark.parametrize("changes, field", [case[1:] for case in REFUSED], ids=[case[0] for case in REFUSED])
def test_a_bad_edit_is_refused_naming_the_field_and_changes_nothing(w, changes, field):
    contract = _contract(w, subscriptions=SEATS)
    before = stored(w, contract)
    sub_id = before["subscriptions"][0]["id"]
    body = exact_json.loads(exact_json.dumps(changes).replace('"SUB"', f'"{sub_id}"'))
    with pytest.raises(InvalidInput) as refused:
        edit(w, contract, **body)
    assert refused.value.field == field
    assert stored(w, contract) == before
    assert w.edits.history(w.customer.id, contract["id"]) == []


# -- finalized invoices ----------------------------------------------------------------------------
def _finalize_october_and_the_november_seats(w, contract: dict) -> list[dict]:
    """October's USAGE and SCHEDULED invoices and November's seats (issued Nov 1) finalized."""
    w.usage.calls += [(datetime(2026, 10, 10, tzinfo=UTC), 10)]
    w.service.finalize(w.customer.id, contract["id"], OCT, NOV + GRACE)
    w.service.finalize(w.customer.id, contract["id"], NOV, NOV + GRACE)
    return _stored_records(w)


FROZEN = [
    ("seats from mid-October", "update_subscriptions",
     {"update_subscriptions": [{"subscription_id": "SUB", "quantity_updates": [{"starting_at": "2026-10-15T00:00:00Z", "quantity": 4}]}]},
     "update_subscriptions[0].quantity_updates[0].starting_at"),
    ("seats from Nov 1, billed on the finalized seats invoice", "update_subscriptions",
     {"update_subscriptions": [{"subscription_id": "SUB", "quantity_updates": [{"starting_at": "2026-11-01T00:00:00Z", "quantity": 4}]}]},
     "update_subscriptions[0].quantity_updates"),
    ("a discount on the seats from Nov 1", "add_overrides",
     {"add_overrides": [{"starting_at": "2026-11-01T00:00:00Z", "product_id": "p-seats", "type": "MULTIPLIER", "multiplier": 0.5}]},
     "add_overrides[0].starting_at"),
    ("an override from October", "add_overrides",
     {"add_overrides": [{"starting_at": "2026-10-20T00:00:00Z", "product_id": "p-calls", "type": "MULTIPLIER", "multiplier": 0.5}]},
     "add_overrides[0].starting_at"),
    ("removing an override in force in October", "remove_overrides", {"remove_overrides": [{"id": "OVERRIDE"}]},
     "remove_overrides[0].id"),
    ("a charge in October", "add_scheduled_charges",
     {"add_scheduled_charges": [{"product_id": "p-setup", "schedule": {"schedule_items": [{"timestamp": "2026-10-20T00:00:00Z", "amount": 5}]}}]},
     "add_scheduled_charges[0].schedule.schedule_items[0].timestamp"),
    ("a charge on the finalized Nov 1 invoice", "add_scheduled_charges",
     {"add_scheduled_charges": [{"product_id": "p-setup", "schedule": {"schedule_items": [{"timestamp": "2026-11-01T00:00:00Z", "amount": 5}]}}]},
     "add_scheduled_charges[0].schedule.schedule_items[0].timestamp"),
    ("a subscription from October", "add_subscriptions", {"add_subscriptions": [dict(SEATS[0], starting_at="2026-10-15T00:00:00Z")]},
     "add_subscriptions[0].starting_at"),
    ("the seats ending in October", "update_subscriptions",
     {"update_subscriptions": [{"subscription_id": "SUB", "ending_before": "2026-10-20T00:00:00Z"}]},
     "update_subscriptions[0].ending_before"),
    ("the contract ending in October, not allowed", "update_contract_end_date",
     {"update_contract_end_date": "2026-10-20T00:00:00Z", "allow_contract_ending_before_finalized_invoice": False},
     "update_contract_end_date"),
    ("the contract ending mid-November, not allowed (the seats were billed for all of it)", "update_contract_end_date",
     {"update_contract_end_date": "2026-11-16T00:00:00Z", "allow_contract_ending_before_finalized_invoice": False},
     "update_contract_end_date"),
]


@pytest.mark.parametrize("changes, field", [case[2:] for case in FROZEN], ids=[case[0] for case in FROZEN])
def test_an_edit_that_would_change_a_finalized_invoice_is_refused(w, changes, field):
    contract = _contract(w, subscriptions=SEATS, overrides=[
        {"starting_at": "2026-10-05T00:00:00Z", "product_id": "p-calls", "type": "MULTIPLIER", "multiplier": 0.5}])
    records = _finalize_october_and_the_november_seats(w, contract)
    before = stored(w, contract)
    body = exact_json.dumps(changes).replace('"SUB"', f'"{before["subscriptions"][0]["id"]}"')
    body = body.replace('"OVERRIDE"', f'"{before["overrides"][0]["id"]}"')

    with pytest.raises(InvalidInput) as refused:
        edit(w, contract, **exact_json.loads(body))

    assert refused.value.field == field
    assert stored(w, contract) == before
    assert _stored_records(w) == records


def test_changes_after_the_finalized_invoices_go_through_and_leave_them_byte_identical(w):
    contract = _contract(w, subscriptions=SEATS)
    records = _finalize_october_and_the_november_seats(w, contract)
    finalized = [(d.id, d.invoice) for d in w.invoices.list(w.customer.id, status="FINALIZED")[0]]
    assert len(finalized) == 3

    seats(w, contract, [{"starting_at": "2026-11-16T00:00:00Z", "quantity_delta": 2}])
    edit(w, contract, add_overrides=[{"starting_at": "2026-11-01T00:00:00Z", "product_id": "p-calls",
                                      "type": "MULTIPLIER", "multiplier": 0.5}])  # usage only: November is open
    edit(w, contract, update_contract_end_date="2026-11-21T00:00:00Z")  # allowed by default (Metronome's)

    assert _stored_records(w) == records
    assert [(d.id, d.invoice) for d in w.invoices.list(w.customer.id, status="FINALIZED")[0]] == finalized
    # The new seats, up to the new end: 2 × 1000 × 5/30 days of November = 333.33 (rounded half up).
    assert lines(w, "SCHEDULED", NOV_16) == [("p-seats", Decimal(2), Decimal("333.33"), NOV_16)]


def test_ending_before_a_finalized_period_when_allowed_keeps_its_invoices_listed(w):
    contract = _contract(w, subscriptions=SEATS)
    records = _finalize_october_and_the_november_seats(w, contract)
    finalized = [(d.id, d.invoice) for d in w.invoices.list(w.customer.id, status="FINALIZED")[0]]
    listed = [(d.id, d.invoice) for d in w.invoices.list(w.customer.id)[0] if d.invoice.status == "FINALIZED"]
    assert len(finalized) == 3 and listed == finalized

    edit(w, contract, update_contract_end_date="2026-10-20T00:00:00Z", allow_contract_ending_before_finalized_invoice=True)

    assert stored(w, contract)["ending_before"] == "2026-10-20T00:00:00Z"
    assert _stored_records(w) == records
    # November's seats invoice is past the new end, and still listed as it was, with October's.
    assert [(d.id, d.invoice) for d in w.invoices.list(w.customer.id, status="FINALIZED")[0]] == finalized
    assert [(d.id, d.invoice) for d in w.invoices.list(w.customer.id)[0]] == finalized  # no draft: nothing after Oct 20
    assert [d.id for d in w.invoices.list(w.customer.id, starting_on=NOV)[0]] == [finalized[-1][0]]


# -- history, uniqueness, races --------------------------------------------------------------------
def test_each_edit_is_one_history_entry_with_who_and_when_and_replays_to_the_contract(w, clock):
    contract = _contract(w, subscriptions=SEATS)
    created = stored(w, contract)
    first = seats(w, contract, [{"starting_at": "2026-11-16T00:00:00Z", "quantity_delta": 2}])
    clock.now += timedelta(hours=1)
    second = edit(w, contract, author="key-2", add_overrides=[{"starting_at": "2026-11-05T00:00:00Z", "product_id": "p-calls",
                                                                "type": "MULTIPLIER", "multiplier": 0.5}],
                  update_contract_name="Renamed")

    history = w.edits.history(w.customer.id, contract["id"])
    assert [h["id"] for h in history] == [first["id"], second["id"]]
    assert [(h["created_by"], h["timestamp"]) for h in history] == [
        (KEY, "2026-11-24T12:00:00Z"), ("key-2", "2026-11-24T13:00:00Z")]
    assert history[0]["update_subscriptions"][0]["quantity_updates"] == [
        {"starting_at": "2026-11-16T00:00:00Z", "quantity_delta": Decimal(2)}]

    replayed = created
    for record in history:
        replayed = apply_edit(replayed, record)
    assert {k: v for k, v in replayed.items() if k != "_version"} == {
        k: v for k, v in stored(w, contract).items() if k != "_version"}

    document = stored(w, contract)
    body = edit_json(history[1], document, w.contracts.contract(document), w.contracts.products(), ContractView())
    assert body["add_overrides"][0]["id"] == stored(w, contract)["overrides"][0]["id"]
    assert (body["update_contract_name"], body["created_by"]) == ("Renamed", "key-2")


def test_the_same_uniqueness_key_twice_is_one_edit_and_a_conflict(w):
    contract = _contract(w, subscriptions=SEATS)
    change = [{"starting_at": "2026-11-16T00:00:00Z", "quantity_delta": 2}]
    sub_id = stored(w, contract)["subscriptions"][0]["id"]
    body = {"update_subscriptions": [{"subscription_id": sub_id, "quantity_updates": change}]}
    edit(w, contract, uniqueness_key="add-2-seats", **body)
    with pytest.raises(Conflict):
        edit(w, contract, uniqueness_key="add-2-seats", **body)
    assert len(w.edits.history(w.customer.id, contract["id"])) == 1
    assert seat_history(w, contract)[-1] == (NOV_16, Decimal(5))
    edit(w, contract, uniqueness_key="add-2-more-seats", **body)  # another key is another edit
    assert seat_history(w, contract)[-1] == (NOV_16, Decimal(7))


class RacingReads:
    """The contract service, with each thread's first read of a contract held until every thread
    has read it: all edits start from the same version."""

    def __init__(self, contracts, parties: int) -> None:
        self._contracts = contracts
        self._barrier = threading.Barrier(parties)
        self._local = threading.local()

    def get(self, customer_id, contract_id):
        document = self._contracts.get(customer_id, contract_id)
        if not getattr(self._local, "raced", False):
            self._local.raced = True
            self._barrier.wait(timeout=30)
        return document

    def __getattr__(self, name):
        return getattr(self._contracts, name)


class BlindWrites(DynamoContractStore):
    """The store without its version condition: the last writer wins. Writes take turns, so no two
    pick the same sequence number: otherwise the history item's own condition refuses one, the
    service retries it from a fresh read, and whether anything is lost came down to thread timing."""

    _turn = threading.Lock()

    def commit_edit(self, document, edit, uniqueness_key=None, invoices_written=None):
        with self._turn:
            version = self.get(document["id"])["_version"]
            super().commit_edit(dict(document, _version=version), dict(edit, sequence=version + 1), uniqueness_key, invoices_written)


def _race(w, store, parties: int) -> list:
    contract = _contract(w, subscriptions=SEATS)
    sub_id = stored(w, contract)["subscriptions"][0]["id"]
    service = ContractEditService(RacingReads(w.contracts, parties), store, w.store, w.clock, sleep=lambda _: None)
    outcomes = []

    def one(n: int) -> None:
        request = ContractEdit.model_validate({
            "customer_id": w.customer.id, "contract_id": contract["id"],
            "update_subscriptions": [{"subscription_id": sub_id, "quantity_updates": [
                {"starting_at": "2026-11-16T00:00:00Z", "quantity_delta": 1}]}],
            "add_overrides": [{"starting_at": f"2026-11-{10 + n:02d}T00:00:00Z", "product_id": "p-calls",
                               "type": "MULTIPLIER", "multiplier": 0.5}],
        })
        try:
            outcomes.append(service.edit(w.customer.id, contract["id"], request.changes(), author=f"key-{n}"))
        except Exception as exc:  # noqa: BLE001 - asserted below
            outcomes.append(exc)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(parties)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [contract, outcomes]


def test_concurrent_edits_of_one_contract_keep_every_change(w):
    contract, outcomes = _race(w, DynamoContractStore(w.dynamo["billing"], w.dynamo["client"]), parties=4)

    assert [o for o in outcomes if isinstance(o, Exception)] == []
    assert seat_history(w, contract)[-1] == (NOV_16, Decimal(3 + 4))
    assert len(stored(w, contract)["overrides"]) == 4
    history = w.edits.history(w.customer.id, contract["id"])
    assert sorted(h["id"] for h in history) == sorted(o["id"] for o in outcomes)
    assert [h["sequence"] for h in history] == [2, 3, 4, 5]


def test_without_the_version_condition_the_same_race_loses_changes(w):
    """The race above is real: writing blindly, edits made from the same read overwrite each other."""
    contract, outcomes = _race(w, BlindWrites(w.dynamo["billing"], w.dynamo["client"]), parties=4)
    assert seat_history(w, contract)[-1][1] < Decimal(3 + 4) or len(stored(w, contract)["overrides"]) < 4


def test_an_edit_racing_a_finalization_sees_it_on_retry(w, monkeypatch):
    """An invoice finalized between an edit's read of the invoices and its write makes the write
    fail, and the retry refuses a change the finalized invoice would miss."""
    contract = _contract(w, subscriptions=SEATS)
    w.usage.calls += [(datetime(2026, 10, 10, tzinfo=UTC), 10)]
    real = w.edits._finalized
    calls = []

    def finalized_then_close(document):
        result = real(document)
        if not calls:  # October is finalized right after this edit counted the invoices
            w.service.finalize(w.customer.id, contract["id"], OCT, NOV + GRACE)
        calls.append(result)
        return result

    monkeypatch.setattr(w.edits, "_finalized", finalized_then_close)
    with pytest.raises(InvalidInput) as refused:
        seats(w, contract, [{"starting_at": "2026-10-15T00:00:00Z", "quantity": 4}])
    assert refused.value.field == "update_subscriptions[0].quantity_updates[0].starting_at"
    assert len(calls) == 2
    assert w.edits.history(w.customer.id, contract["id"]) == []


def test_an_edit_committed_between_a_close_pricing_and_its_write_is_priced_by_the_close(w, monkeypatch):
    """The other order: the cycle close has read and priced the contract when an edit commits
    (its invoice count is still unchanged, so the edit goes through). The close's write, conditional
    on the contract's version, fails, and the retry prices the edited contract."""
    contract = _contract(w)
    w.usage.calls += [(datetime(2026, 10, 10, tzinfo=UTC), 10)]  # 10 calls at 2 = 20
    real = w.invoices.close_period
    calls = []

    def priced_then_edited(*args, **kwargs):
        close = real(*args, **kwargs)
        if not calls:  # the edit lands between the close's pricing and its write
            edit(w, contract, add_overrides=[{"starting_at": "2026-10-05T00:00:00Z", "product_id": "p-calls",
                                              "type": "OVERWRITE", "overwrite_rate": {"rate_type": "FLAT", "price": 3}}])
        calls.append(close)
        return close

    monkeypatch.setattr(w.invoices, "close_period", priced_then_edited)
    result = w.service.finalize(w.customer.id, contract["id"], OCT, NOV + GRACE)

    assert len(calls) == 2  # priced again after the edit
    (record,) = [w.store.get(i) for i in result["finalized"]]
    assert record.invoice.total == Decimal("30.00")  # 10 calls at the override's 3, not the card's 2
    assert len(w.edits.history(w.customer.id, contract["id"])) == 1


def test_an_edit_committed_between_a_regenerate_pricing_and_its_write_is_priced_by_the_regenerate(w, monkeypatch):
    """Regenerate, like finalize, is conditional on the contract's version: an edit committed after
    it priced the voided slot fails its write, and the retry prices the edited contract."""
    contract = _contract(w)
    w.usage.calls += [(datetime(2026, 10, 10, tzinfo=UTC), 10)]  # 10 calls at 2 = 20
    (october,) = w.service.finalize(w.customer.id, contract["id"], OCT, NOV + GRACE)["invoice_ids"]
    w.service.void(october)
    real = w.invoices.regenerated
    calls = []

    def priced_then_edited(*args, **kwargs):
        record = real(*args, **kwargs)
        if not calls:  # the edit lands between the regenerate's pricing and its write
            edit(w, contract, add_overrides=[{"starting_at": "2026-10-05T00:00:00Z", "product_id": "p-calls",
                                              "type": "OVERWRITE", "overwrite_rate": {"rate_type": "FLAT", "price": 3}}])
        calls.append(record.invoice.total)
        return record

    monkeypatch.setattr(w.invoices, "regenerated", priced_then_edited)
    regenerated = w.service.regenerate(october)

    assert calls == [Decimal("20.00"), Decimal("30.00")]  # priced again after the edit
    assert w.store.get(regenerated).invoice.total == Decimal("30.00")  # 10 calls at the override's 3
    assert len(w.edits.history(w.customer.id, contract["id"])) == 1
