"""A live contract changed through `client.v2.contracts.edit`, with metronome-sdk in strict mode on
the local stack: seats added mid-month with an override and a credit archived, then the contract
ended early; the drafts re-price at once, the history holds one entry per edit, and the finalized
month stays byte-identical. Totals are worked by hand in the comments.

The contract started 33 days ago and bills monthly from its start, so its first period has ended
(and passed the 24 h grace) and the second holds "now". Proration is by time over the whole
period, so the figures depend on the month's length: they are computed from the periods the API
answers with, in hours, exactly as written in the comments.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import ROUND_HALF_UP, Decimal

import metronome
import pytest

from tests.system.conftest import API_KEY
from tests.system.usage_events import DAY, HOUR, current_hour, rfc3339, unique, usage_event

pytestmark = pytest.mark.system

CLOSE = "/local/schedules/close-billing-periods"
MINUTE = HOUR / 60
SEAT = 2500  # cents a month
CALL = 10  # cents


@pytest.fixture(scope="module")
def strict(local_stack):
    with metronome.Metronome(bearer_token=API_KEY, base_url=local_stack.base_url, max_retries=0,
                             _strict_response_validation=True) as client:
        yield client


def _close_periods(api) -> None:
    response = api.post(CLOSE, json={"time": rfc3339(datetime.now(timezone.utc))}, timeout=300)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "SUCCEEDED", response.text


def _raw(api, path: str) -> dict:
    response = api.get(path)
    assert response.status_code == 200, response.text
    return json.loads(response.text, parse_float=Decimal)


def _cents(amount: Decimal) -> Decimal:
    """A line total: USD cents to two decimal places, half up (one rounding per line)."""
    return amount.quantize(Decimal("0.01"), ROUND_HALF_UP)


def _hours(start: datetime, end: datetime) -> int:
    return int((end - start) / HOUR)


def _key_id() -> str:
    from tally import wiring
    from tally.services.api_keys import hash_api_key

    (key,) = [k for k in wiring.api_keys().list() if k.key_hash == hash_api_key(API_KEY)]
    return key.key_id


def test_seats_an_override_and_an_archived_credit_mid_month_then_an_early_end(strict, api, settle):
    sdk = strict
    tag = unique("edits")
    start = current_hour() - 33 * DAY
    metric = sdk.v1.billable_metrics.create(
        name=f"{tag} calls", aggregation_type="COUNT", event_type_filter={"in_values": [tag]}
    ).data.id
    calls = sdk.v1.contracts.products.create(name=f"{tag} calls", type="USAGE", billable_metric_id=metric).data.id
    seats = sdk.v1.contracts.products.create(name=f"{tag} seats", type="SUBSCRIPTION").data.id
    goodwill = sdk.v1.contracts.products.create(name=f"{tag} goodwill", type="FIXED").data.id
    card = sdk.v1.contracts.rate_cards.create(name=f"{tag} card").data.id
    sdk.v1.contracts.rate_cards.rates.add(rate_card_id=card, product_id=calls, entitled=True, rate_type="FLAT",
                                          price=CALL, starting_at=rfc3339(start - DAY))
    sdk.v1.contracts.rate_cards.rates.add(rate_card_id=card, product_id=seats, entitled=True, rate_type="SUBSCRIPTION",
                                          price=SEAT, billing_frequency="MONTHLY", starting_at=rfc3339(start - DAY))
    customer = sdk.v1.customers.create(name=tag, ingest_aliases=[tag]).data.id
    contract_id = sdk.v1.contracts.create(
        customer_id=customer, rate_card_id=card, starting_at=rfc3339(start),
        usage_statement_schedule={"frequency": "MONTHLY", "day": "CONTRACT_START"},
        subscriptions=[{
            "collection_schedule": "ADVANCE", "initial_quantity": 10,
            "proration": {"invoice_behavior": "BILL_IMMEDIATELY", "is_prorated": True},
            "subscription_rate": {"product_id": seats, "billing_frequency": "MONTHLY"},
        }],
        credits=[{
            "product_id": goodwill, "name": "Goodwill", "priority": 1, "applicable_product_ids": [calls],
            "access_schedule": {"schedule_items": [{"amount": 1000, "starting_at": rfc3339(start),
                                                    "ending_before": rfc3339(start + 90 * DAY)}]},
        }],
    ).data.id
    contract = sdk.v2.contracts.retrieve(customer_id=customer, contract_id=contract_id).data
    (subscription,) = contract.subscriptions
    (credit,) = contract.credits

    # 3 calls in the first month, 4 in the second, all before "now"'s hour.
    now_hour = current_hour()
    sdk.v1.usage.ingest(usage=[usage_event(f"{tag}-a{n}", tag, tag, start + HOUR) for n in range(3)]
                        + [usage_event(f"{tag}-b{n}", tag, tag, now_hour - HOUR) for n in range(4)])
    settle()

    def invoices() -> list:
        return sdk.v1.customers.invoices.list(customer_id=customer).data

    usage_invoices = [i for i in invoices() if i.type == "USAGE"]
    first, second = usage_invoices
    p2, p3 = second.start_timestamp, second.end_timestamp
    assert (first.start_timestamp, first.end_timestamp) == (start, p2)
    assert p2 < now_hour - HOUR < p3

    # The first month closes: its usage (3 × 10 = 30, paid by the credit: 0) and both seat
    # invoices issued so far (10 × 2500 = 25000 on the first day of each month).
    _close_periods(api)
    finalized = [i for i in invoices() if i.status == "FINALIZED"]
    assert sorted((i.type, i.start_timestamp, i.total) for i in finalized) == [
        ("SCHEDULED", start, 25000), ("SCHEDULED", p2, 25000), ("USAGE", start, 0)]
    frozen = {i.id: api.get(f"/v1/customers/{customer}/invoices/{i.id}").text for i in finalized}
    # The second month's draft before any edit: 4 calls × 10 = 40, paid by the credit.
    assert [(i.total, [(l.product_id, l.total) for l in i.line_items]) for i in invoices()
            if i.type == "USAGE" and i.status == "DRAFT"] == [(0, [(calls, 40), (goodwill, -40)])]

    # -- mid-month: 5 more seats and half-price calls from this hour, and the credit archived --------
    t = now_hour
    edited = sdk.v2.contracts.edit(
        customer_id=customer, contract_id=contract_id, uniqueness_key=f"{tag}-mid-month",
        update_subscriptions=[{"subscription_id": subscription.id,
                               "quantity_updates": [{"starting_at": rfc3339(t), "quantity_delta": 5}]}],
        add_overrides=[{"product_id": calls, "type": "MULTIPLIER", "multiplier": 0.5, "starting_at": rfc3339(t)}],
        archive_credits=[{"id": credit.id}],
    ).data
    assert edited.edit.id == edited.id and len(edited.edit.add_overrides) == 1
    assert [a.id for a in edited.edit.archive_credits] == [credit.id]
    sdk.v1.usage.ingest(usage=[usage_event(f"{tag}-c{n}", tag, tag, t + MINUTE) for n in range(2)])
    settle()

    with pytest.raises(metronome.ConflictError):  # the same uniqueness key again: Metronome's 409
        sdk.v2.contracts.edit(customer_id=customer, contract_id=contract_id, uniqueness_key=f"{tag}-mid-month",
                              update_contract_name="again")
    with pytest.raises(metronome.BadRequestError) as refused:  # a change inside the finalized month
        sdk.v2.contracts.edit(customer_id=customer, contract_id=contract_id, update_subscriptions=[{
            "subscription_id": subscription.id,
            "quantity_updates": [{"starting_at": rfc3339(start + DAY), "quantity": 1}]}])
    assert "update_subscriptions[0].quantity_updates[0].starting_at" in refused.value.response.text

    # The 5 seats are charged when they start, for the rest of the month, on their own invoice:
    # 5 × 2500 × (hours from t to the month's end) / (hours in the month).
    new_seats = _cents(Decimal(5 * SEAT) * _hours(t, p3) / _hours(p2, p3))
    scheduled = {i.start_timestamp: i for i in invoices() if i.type == "SCHEDULED"}
    assert sorted(scheduled) == [start, p2, t]
    assert [(l.product_id, l.quantity, l.starting_at) for l in scheduled[t].line_items] == [(seats, 5, t)]
    raw = _raw(api, f"/v1/customers/{customer}/invoices/{scheduled[t].id}")["data"]
    assert (raw["status"], raw["total"]) == ("DRAFT", new_seats)
    # The second month's usage, with no credit to draw from now: 4 calls × 10 = 40 before t, and
    # 2 calls × 10 × 0.5 = 10 after it: 50.
    (draft,) = [i for i in invoices() if i.type == "USAGE" and i.status == "DRAFT"]
    assert ([(l.product_id, l.quantity, l.total) for l in draft.line_items], draft.total) == (
        [(calls, 4, 40), (calls, 2, 10)], 50)

    quantities = sdk.v1.contracts.retrieve_subscription_quantity_history(
        customer_id=customer, contract_id=contract_id, subscription_id=subscription.id).data.history
    assert [(h.starting_at, h.data[0].quantity) for h in quantities] == [(start, 10), (t, 15)]
    (shown,) = sdk.v1.contracts.retrieve(customer_id=customer, contract_id=contract_id).data.subscriptions
    # Only the current quantity and future changes, as the SDK documents: the 10 seats ended at t.
    assert [(q.starting_at, q.ending_before, q.quantity) for q in shown.quantity_schedule] == [(t, None, 15)]

    # -- the contract ends two days after t --------------------------------------------------------
    end = t + 2 * DAY
    sdk.v2.contracts.edit(customer_id=customer, contract_id=contract_id, update_contract_end_date=rfc3339(end))
    # The new seats are charged up to the end only: 5 × 2500 × 48 h / (hours in the month).
    ended_seats = _cents(Decimal(5 * SEAT) * 48 / _hours(p2, p3))
    raw = _raw(api, f"/v1/customers/{customer}/invoices/{scheduled[t].id}")["data"]
    assert raw["total"] == ended_seats
    (draft,) = [i for i in invoices() if i.type == "USAGE" and i.status == "DRAFT"]
    assert (draft.start_timestamp, draft.end_timestamp, draft.total) == (p2, end, 50)
    assert sdk.v2.contracts.retrieve(customer_id=customer, contract_id=contract_id).data.ending_before == end

    # -- one history entry per edit, with who and when ---------------------------------------------
    history = sdk.v2.contracts.get_edit_history(customer_id=customer, contract_id=contract_id).data
    assert [h.id for h in history][0] == edited.id and len(history) == 2
    mid, ending = history
    assert [(u.id, [(q.starting_at, q.quantity_delta) for q in u.quantity_updates]) for u in mid.update_subscriptions] == [
        (subscription.id, [(t, 5)])]
    assert [(o.product.id, o.multiplier, o.starting_at) for o in mid.add_overrides] == [(calls, 0.5, t)]
    assert [c.id for c in mid.archive_credits] == [credit.id]
    assert mid.uniqueness_key == f"{tag}-mid-month"
    assert ending.update_contract_end_date == end
    assert mid.timestamp <= ending.timestamp
    assert {h.model_extra["created_by"] for h in history} == {_key_id()}

    # -- the finalized month never changed ---------------------------------------------------------
    for invoice_id, text in frozen.items():
        assert api.get(f"/v1/customers/{customer}/invoices/{invoice_id}").text == text
    assert sorted(i.id for i in invoices() if i.status == "FINALIZED") == sorted(frozen)

    # The older v1 route is an edit too: one more history entry; its refusal names its own field.
    sdk.v1.contracts.update_end_date(customer_id=customer, contract_id=contract_id, ending_before=rfc3339(end + DAY))
    with pytest.raises(metronome.BadRequestError) as refused:
        sdk.v1.contracts.update_end_date(customer_id=customer, contract_id=contract_id, ending_before=rfc3339(start - DAY))
    assert json.loads(refused.value.response.text)["field"] == "ending_before"
    history = sdk.v2.contracts.get_edit_history(customer_id=customer, contract_id=contract_id).data
    assert [h.update_contract_end_date for h in history] == [None, end, end + DAY]


def test_an_amendment_through_the_v1_route_is_listed_on_the_contract_and_in_the_edit_history(strict, api, settle):
    sdk = strict
    tag = unique("amend")
    start = current_hour() - 3 * DAY
    metric = sdk.v1.billable_metrics.create(
        name=f"{tag} calls", aggregation_type="COUNT", event_type_filter={"in_values": [tag]}
    ).data.id
    calls = sdk.v1.contracts.products.create(name=f"{tag} calls", type="USAGE", billable_metric_id=metric).data.id
    fee = sdk.v1.contracts.products.create(name=f"{tag} fee", type="FIXED").data.id
    card = sdk.v1.contracts.rate_cards.create(name=f"{tag} card").data.id
    sdk.v1.contracts.rate_cards.rates.add(rate_card_id=card, product_id=calls, entitled=True, rate_type="FLAT",
                                          price=CALL, starting_at=rfc3339(start - DAY))
    customer = sdk.v1.customers.create(name=tag, ingest_aliases=[tag]).data.id
    contract_id = sdk.v1.contracts.create(customer_id=customer, rate_card_id=card, starting_at=rfc3339(start),
                                          usage_statement_schedule={"frequency": "MONTHLY", "day": "CONTRACT_START"}).data.id
    sdk.v1.usage.ingest(usage=[usage_event(f"{tag}-{n}", tag, tag, start + DAY + HOUR) for n in range(4)])
    settle()

    amended = start + DAY
    amendment_id = sdk.v1.contracts.amend(
        customer_id=customer, contract_id=contract_id, starting_at=rfc3339(amended),
        overrides=[{"product_id": calls, "type": "MULTIPLIER", "multiplier": 0.5, "starting_at": rfc3339(amended)}],
        scheduled_charges=[{"product_id": fee, "schedule": {"schedule_items": [{"timestamp": rfc3339(amended), "amount": 700}]}}],
    ).data.id
    with pytest.raises(metronome.BadRequestError) as refused:
        sdk.v1.contracts.amend(customer_id=customer, contract_id=contract_id, starting_at=rfc3339(amended),
                               overrides=[{"product_id": fee, "type": "MULTIPLIER", "multiplier": 2,
                                           "starting_at": rfc3339(amended)}])
    assert json.loads(refused.value.response.text)["field"] == "overrides[0].product_id"

    contract = sdk.v1.contracts.retrieve(customer_id=customer, contract_id=contract_id).data
    (amendment,) = contract.amendments
    assert (amendment.id, amendment.starting_at, amendment.created_by) == (amendment_id, amended, _key_id())
    assert [(o.product.id, o.multiplier) for o in amendment.overrides] == [(calls, 0.5)]
    assert [c.schedule.schedule_items[0].amount for c in amendment.scheduled_charges] == [700]
    assert (contract.initial.overrides, contract.initial.scheduled_charges) == ([], [])
    assert [o.id for o in contract.current.overrides] == [o.id for o in amendment.overrides]
    # The draft re-prices: 4 calls × 10 × 0.5 = 20; the fee is on its own invoice, issued that day.
    invoices = sdk.v1.customers.invoices.list(customer_id=customer).data
    assert sorted((i.type, i.total) for i in invoices) == [("SCHEDULED", 700), ("USAGE", 20)]
    (entry,) = sdk.v2.contracts.get_edit_history(customer_id=customer, contract_id=contract_id).data
    assert entry.id == amendment_id and [o.id for o in entry.add_overrides] == [o.id for o in amendment.overrides]


def test_a_commit_edited_through_commits_edit_reprices_the_drafts_and_is_in_the_history(strict, api, settle):
    sdk = strict
    tag = unique("commit-edit")
    start = current_hour() - 3 * DAY
    metric = sdk.v1.billable_metrics.create(
        name=f"{tag} calls", aggregation_type="COUNT", event_type_filter={"in_values": [tag]}
    ).data.id
    calls = sdk.v1.contracts.products.create(name=f"{tag} calls", type="USAGE", billable_metric_id=metric).data.id
    prepay = sdk.v1.contracts.products.create(name=f"{tag} prepay", type="FIXED").data.id
    card = sdk.v1.contracts.rate_cards.create(name=f"{tag} card").data.id
    sdk.v1.contracts.rate_cards.rates.add(rate_card_id=card, product_id=calls, entitled=True, rate_type="FLAT",
                                          price=CALL, starting_at=rfc3339(start - DAY))
    customer = sdk.v1.customers.create(name=tag, ingest_aliases=[tag]).data.id
    contract_id = sdk.v1.contracts.create(
        customer_id=customer, rate_card_id=card, starting_at=rfc3339(start),
        usage_statement_schedule={"frequency": "MONTHLY", "day": "CONTRACT_START"},
        commits=[{"product_id": prepay, "type": "PREPAID", "access_schedule": {"schedule_items": [
            {"amount": 100, "starting_at": rfc3339(start), "ending_before": rfc3339(start + 60 * DAY)}]},
            "invoice_schedule": {"schedule_items": [{"timestamp": rfc3339(start), "amount": 100}]}}],
    ).data.id
    sdk.v1.usage.ingest(usage=[usage_event(f"{tag}-{n}", tag, tag, start + DAY + HOUR) for n in range(4)])
    settle()
    (commit,) = sdk.v2.contracts.retrieve(customer_id=customer, contract_id=contract_id).data.commits
    # 4 calls x 10 = 40, all paid by the commit.
    assert sorted((i.type, i.total) for i in sdk.v1.customers.invoices.list(customer_id=customer).data) == [
        ("SCHEDULED", 100), ("USAGE", 0)]

    assert sdk.v2.contracts.edit_commit(
        customer_id=customer, commit_id=commit.id,
        access_schedule={"update_schedule_items": [{"id": commit.access_schedule.schedule_items[0].id, "amount": 30}]},
        invoice_schedule={"add_schedule_items": [{"timestamp": rfc3339(start + 2 * DAY), "quantity": 2, "unit_price": 15}]},
        name="Prepay (reduced)",
    ).data.id == commit.id

    # The commit now pays 30 of the 40: the usage draft is 10; 2 x 15 = 30 is billed two days in.
    assert sorted((i.type, i.total) for i in sdk.v1.customers.invoices.list(customer_id=customer).data) == [
        ("SCHEDULED", 30), ("SCHEDULED", 100), ("USAGE", 10)]
    (after,) = sdk.v2.contracts.retrieve(customer_id=customer, contract_id=contract_id).data.commits
    assert (after.name, after.access_schedule.schedule_items[0].amount) == ("Prepay (reduced)", 30)
    (entry,) = sdk.v2.contracts.get_edit_history(customer_id=customer, contract_id=contract_id).data
    assert entry.created_by == _key_id() and [u.id for u in entry.update_commits] == [commit.id]
    with pytest.raises(metronome.BadRequestError) as refused:
        sdk.v2.contracts.edit_commit(customer_id=customer, commit_id="not-a-commit", name="x")
    assert json.loads(refused.value.response.text)["field"] == "commit_id"
