"""One customer carried through a quarter with metronome-sdk in strict mode on the local stack
(issue 16's "Done when"): a contract with a prepaid commit, a monthly recurring credit, a goodwill
credit and a 10-seat subscription; mid-month 1, one `client.v2.contracts.edit` adds 5 seats, a
discount and an override and archives the goodwill credit; month 1 closes; a second edit ends the
contract early, in month 3. Every draft, SCHEDULED invoice, balance and history entry is checked
against totals worked by hand in the comments, and the finalized invoices stay byte-identical.

Time. The contract starts 33 days before this hour and bills monthly from its start, so month 1
(M1, [start, p2)) has ended and passed its 24 h grace, M2 ([p2, p3)) holds "now", and M3
([p3, p4)) is ahead. Events can be backdated 34 days, so M1's usage is real. The mid-month edit is
made now but effective at t1 = start + 15 days: M1 is still open (nothing closed yet), so it is
allowed, and re-prices M1's draft. Seats are prorated by time over their month, so those figures
are computed from the periods (in hours), exactly as written in the comments.

The second test is the issue's "tried as a new user": 5 seats added to a live contract mid-month.
"""

from __future__ import annotations

import calendar
import json
from datetime import datetime, timezone
from decimal import ROUND_HALF_UP, Decimal

import metronome
import pytest

from tests.system.conftest import API_KEY
from tests.system.usage_events import DAY, HOUR, current_hour, rfc3339, unique, usage_event

pytestmark = pytest.mark.system

CLOSE = "/local/schedules/close-billing-periods"
SEAT = 3000  # cents a seat a month, billed in advance
CALL = 100  # cents a call; half price from t1 (the override)
COMMIT = 1000  # prepaid, for calls, over the quarter; bought on the first day
MONTHLY = 200  # the recurring credit, for calls, one per month
GOODWILL = 300  # a one-off credit for calls, archived by the mid-month edit
DISCOUNT = 1000  # off M2's SCHEDULED invoice (added by the mid-month edit)


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
    """A prorated amount: USD cents to two decimal places, half up (rounded once)."""
    return amount.quantize(Decimal("0.01"), ROUND_HALF_UP)


def _hours(start: datetime, end: datetime) -> int:
    return int((end - start) / HOUR)


def _months_after(start: datetime, months: int) -> datetime:
    """The same day `months` calendar months later (the month's last day when it is shorter)."""
    year, month = divmod(start.month - 1 + months, 12)
    year, month = start.year + year, month + 1
    return start.replace(year=year, month=month, day=min(start.day, calendar.monthrange(year, month)[1]))


def _key_id() -> str:
    from tally import wiring
    from tally.services.api_keys import hash_api_key

    (key,) = [k for k in wiring.api_keys().list() if k.key_hash == hash_api_key(API_KEY)]
    return key.key_id


def _catalog(sdk, tag: str, start: datetime) -> tuple[str, str, str, str]:
    metric = sdk.v1.billable_metrics.create(
        name=f"{tag} calls", aggregation_type="COUNT", event_type_filter={"in_values": [tag]}).data.id
    calls = sdk.v1.contracts.products.create(name=f"{tag} calls", type="USAGE", billable_metric_id=metric).data.id
    seats = sdk.v1.contracts.products.create(name=f"{tag} seats", type="SUBSCRIPTION").data.id
    fixed = sdk.v1.contracts.products.create(name=f"{tag} fixed", type="FIXED").data.id
    card = sdk.v1.contracts.rate_cards.create(name=f"{tag} card").data.id
    sdk.v1.contracts.rate_cards.rates.add(rate_card_id=card, product_id=calls, entitled=True, rate_type="FLAT",
                                          price=CALL, starting_at=rfc3339(start - DAY))
    sdk.v1.contracts.rate_cards.rates.add(rate_card_id=card, product_id=seats, entitled=True, rate_type="SUBSCRIPTION",
                                          price=SEAT, billing_frequency="MONTHLY", starting_at=rfc3339(start - DAY))
    return calls, seats, fixed, card


def _ten_seats(seats: str) -> dict:
    return {"collection_schedule": "ADVANCE", "initial_quantity": 10,
            "proration": {"invoice_behavior": "BILL_IMMEDIATELY", "is_prorated": True},
            "subscription_rate": {"product_id": seats, "billing_frequency": "MONTHLY"}}


def test_a_quarter_seats_discount_override_and_archived_credit_mid_month_then_an_early_end(strict, api, settle):
    sdk = strict
    tag = unique("quarter")
    start = current_hour() - 33 * DAY
    p2, p3, p4 = (_months_after(start, k) for k in (1, 2, 3))
    t1 = start + 15 * DAY
    calls, seats, fixed, card = _catalog(sdk, tag, start)
    customer = sdk.v1.customers.create(name=tag, ingest_aliases=[tag]).data.id

    def for_the_quarter(amount):
        return {"schedule_items": [{"amount": amount, "starting_at": rfc3339(start), "ending_before": rfc3339(p4)}]}

    contract_id = sdk.v1.contracts.create(
        customer_id=customer, rate_card_id=card, starting_at=rfc3339(start), ending_before=rfc3339(p4),
        usage_statement_schedule={"frequency": "MONTHLY", "day": "CONTRACT_START"},
        subscriptions=[_ten_seats(seats)],
        commits=[{"product_id": fixed, "type": "PREPAID", "name": "Prepaid", "priority": 2,
                  "applicable_product_ids": [calls], "access_schedule": for_the_quarter(COMMIT),
                  "invoice_schedule": {"schedule_items": [{"timestamp": rfc3339(start), "amount": COMMIT}]}}],
        recurring_credits=[{"product_id": fixed, "name": "Monthly", "priority": 1, "starting_at": rfc3339(start),
                            "applicable_product_ids": [calls], "access_amount": {"unit_price": MONTHLY, "quantity": 1},
                            "commit_duration": {"value": 1}}],
        credits=[{"product_id": fixed, "name": "Goodwill", "priority": 1, "applicable_product_ids": [calls],
                  "access_schedule": for_the_quarter(GOODWILL)}],
    ).data.id
    contract = sdk.v2.contracts.retrieve(customer_id=customer, contract_id=contract_id).data
    (subscription,) = contract.subscriptions
    (commit,) = contract.commits
    (goodwill,) = [c for c in contract.credits if c.name == "Goodwill"]
    monthly = sorted((c for c in contract.credits if c.name == "Monthly"),
                     key=lambda c: c.access_schedule.schedule_items[0].starting_at)
    # One credit of 200 a month, each for its own month: M1, M2, M3.
    assert [(c.access_schedule.schedule_items[0].starting_at, c.access_schedule.schedule_items[0].ending_before,
             c.access_schedule.schedule_items[0].amount) for c in monthly] == [
        (start, p2, MONTHLY), (p2, p3, MONTHLY), (p3, p4, MONTHLY)]
    m1_credit, m2_credit, m3_credit = (c.id for c in monthly)

    # Usage: M1 6 calls before t1 and 4 after it; M2 10 calls in the hour before this one.
    now_hour = current_hour()
    sdk.v1.usage.ingest(usage=[usage_event(f"{tag}-a{n}", tag, tag, start + HOUR) for n in range(6)]
                        + [usage_event(f"{tag}-b{n}", tag, tag, t1 + HOUR) for n in range(4)]
                        + [usage_event(f"{tag}-c{n}", tag, tag, now_hour - HOUR) for n in range(10)])
    settle()

    def invoices() -> dict:
        listed = sdk.v1.customers.invoices.list(customer_id=customer).data
        found = {(i.type, i.start_timestamp): i for i in listed}
        assert len(found) == len(listed)
        return found

    def usage(invoice) -> tuple:
        """(status, usage lines, {grant: applied}, total)"""
        return (invoice.status, [(l.product_id, l.quantity, l.total) for l in invoice.line_items if l.type == "usage"],
                {l.commit_id: l.total for l in invoice.line_items if l.type == "applied_commit_or_credit"},
                invoice.total)

    def scheduled_total(invoice) -> Decimal:
        return _raw(api, f"/v1/customers/{customer}/invoices/{invoice.id}")["data"]["total"]

    def net(mode: str = "FINALIZED_AND_DRAFT"):
        return sdk.v1.contracts.get_net_balance(customer_id=customer, invoice_inclusion_mode=mode).data.balance

    def balances(**params) -> dict:
        listed = sdk.v1.contracts.list_balances(customer_id=customer, include_balance=True, **params).data
        return {b.id: b.balance for b in listed}

    def on_contract() -> dict:
        got = sdk.v2.contracts.retrieve(customer_id=customer, contract_id=contract_id, include_balance=True).data
        return {g.id: (g.balance, g.archived_at) for g in [*got.commits, *got.credits]}

    # -- before any edit ------------------------------------------------------------------------
    found = invoices()
    assert sorted(found) == [("SCHEDULED", start), ("SCHEDULED", p2), ("USAGE", start), ("USAGE", p2)]
    assert found[("USAGE", start)].end_timestamp == p2 and found[("USAGE", p2)].end_timestamp == p3
    # M1: 10 calls x 100 = 1000; the credits pay 200 + 300 and the commit the other 500: 0.
    assert usage(found[("USAGE", start)]) == (
        "DRAFT", [(calls, 10, 1000)], {m1_credit: -200, goodwill.id: -300, commit.id: -500}, 0)
    # M2: 10 calls x 100 = 1000; its credit pays 200, the commit its last 500: 300.
    assert usage(found[("USAGE", p2)]) == ("DRAFT", [(calls, 10, 1000)], {m2_credit: -200, commit.id: -500}, 300)
    # In advance: 10 seats x 3000 = 30000 each month, and the commit bought on the first day: 1000.
    assert scheduled_total(found[("SCHEDULED", start)]) == 31000
    assert scheduled_total(found[("SCHEDULED", p2)]) == 30000
    # Balances now (in M2): the commit 1000 - 500 - 500 = 0, M2's credit 200 - 200 = 0, goodwill 0;
    # M1's credit is over and M3's not begun (0, as the SDK documents). Finalized invoices only:
    # nothing is finalized, so the commit 1000 + M2's credit 200 + goodwill 300 = 1500.
    assert (net(), net("FINALIZED")) == (0, 1500)
    assert balances() == {commit.id: 0, goodwill.id: 0, m1_credit: 0, m2_credit: 0, m3_credit: 0}

    # -- mid-month 1: one edit adds 5 seats, half-price calls and a discount from t1, and archives
    # the goodwill credit --------------------------------------------------------------------------
    edited = sdk.v2.contracts.edit(
        customer_id=customer, contract_id=contract_id, uniqueness_key=f"{tag}-mid-month",
        update_subscriptions=[{"subscription_id": subscription.id,
                               "quantity_updates": [{"starting_at": rfc3339(t1), "quantity_delta": 5}]}],
        add_overrides=[{"product_id": calls, "type": "MULTIPLIER", "multiplier": 0.5, "starting_at": rfc3339(t1)}],
        add_discounts=[{"product_id": fixed, "name": "Loyalty",
                        "schedule": {"schedule_items": [{"timestamp": rfc3339(p2), "amount": DISCOUNT}]}}],
        archive_credits=[{"id": goodwill.id}],
    ).data
    (discount,) = edited.edit.add_discounts
    found = invoices()
    assert sorted(found) == [("SCHEDULED", start), ("SCHEDULED", t1), ("SCHEDULED", p2), ("USAGE", start), ("USAGE", p2)]
    # M1: 6 x 100 + 4 x 100 x 0.5 = 800; M1's credit 200, the commit 600 (goodwill is gone): 0.
    assert usage(found[("USAGE", start)]) == (
        "DRAFT", [(calls, 6, 600), (calls, 4, 200)], {m1_credit: -200, commit.id: -600}, 0)
    # M2: 10 x 100 x 0.5 = 500; its credit 200, the commit 300 of the 400 left: 0.
    assert usage(found[("USAGE", p2)]) == ("DRAFT", [(calls, 10, 500)], {m2_credit: -200, commit.id: -300}, 0)
    # The 5 seats from t1 on their own invoice: 5 x 3000 x (hours t1 -> p2) / (hours in M1).
    new_seats = _cents(Decimal(5 * SEAT) * _hours(t1, p2) / _hours(start, p2))
    assert [(l.product_id, l.quantity, l.starting_at, l.ending_before) for l in found[("SCHEDULED", t1)].line_items] == [
        (seats, 5, t1, p2)]
    assert scheduled_total(found[("SCHEDULED", t1)]) == new_seats
    assert scheduled_total(found[("SCHEDULED", start)]) == 31000
    # M2 in advance: 15 seats x 3000 = 45000, less the discount: 44000.
    assert [(l.type, l.quantity, l.total) for l in found[("SCHEDULED", p2)].line_items] == [
        ("subscription", 15, 45000), ("scheduled", 1, -DISCOUNT)]
    assert found[("SCHEDULED", p2)].line_items[1].discount_id == discount.id
    assert scheduled_total(found[("SCHEDULED", p2)]) == 44000
    # Balances: the commit 1000 - 600 - 300 = 100; finalized only: 1000 + M2's credit 200 = 1200.
    assert (net(), net("FINALIZED")) == (100, 1200)
    live = {commit.id: 100, m1_credit: 0, m2_credit: 0, m3_credit: 0}
    assert balances() == live
    assert balances(include_archived=True) == dict(live, **{goodwill.id: 0})
    assert on_contract() == dict({g: (b, None) for g, b in live.items()}, **{goodwill.id: (0, edited.edit.timestamp)})
    quantities = sdk.v1.contracts.retrieve_subscription_quantity_history(
        customer_id=customer, contract_id=contract_id, subscription_id=subscription.id).data.history
    assert [(h.starting_at, h.data[0].quantity) for h in quantities] == [(start, 10), (t1, 15)]

    # -- month 1 closes: its usage invoice and the three SCHEDULED invoices issued by p2 -----------
    _close_periods(api)
    found = invoices()
    finalized = sorted(key for key, i in found.items() if i.status == "FINALIZED")
    assert finalized == [("SCHEDULED", start), ("SCHEDULED", t1), ("SCHEDULED", p2), ("USAGE", start)]
    frozen = {found[key].id: api.get(f"/v1/customers/{customer}/invoices/{found[key].id}").text for key in finalized}
    assert [json.loads(frozen[found[key].id], parse_float=Decimal)["data"]["total"] for key in finalized] == [
        31000, new_seats, 44000, 0]

    def unchanged() -> None:
        for invoice_id, text in frozen.items():
            assert api.get(f"/v1/customers/{customer}/invoices/{invoice_id}").text == text

    # M1 drew 600 of the commit for good: finalized only, 1000 - 600 = 400 and M2's credit 200.
    assert (net(), net("FINALIZED")) == (100, 600)
    assert usage(found[("USAGE", p2)]) == ("DRAFT", [(calls, 10, 500)], {m2_credit: -200, commit.id: -300}, 0)
    # Seats can no longer change inside the finalized month: a 400 naming the field, nothing written.
    with pytest.raises(metronome.BadRequestError) as refused:
        sdk.v2.contracts.edit(customer_id=customer, contract_id=contract_id, update_subscriptions=[{
            "subscription_id": subscription.id,
            "quantity_updates": [{"starting_at": rfc3339(start + DAY), "quantity": 1}]}])
    assert json.loads(refused.value.response.text)["field"] == "update_subscriptions[0].quantity_updates[0].starting_at"
    unchanged()

    # -- month 3: the contract ends early, ten days in ------------------------------------------
    end = p3 + 10 * DAY
    ending = sdk.v2.contracts.edit(customer_id=customer, contract_id=contract_id,
                                   update_contract_end_date=rfc3339(end)).data
    unchanged()
    assert sorted(invoices()) == sorted(found)  # nothing issued or dropped before the end
    assert usage(invoices()[("USAGE", p2)]) == ("DRAFT", [(calls, 10, 500)], {m2_credit: -200, commit.id: -300}, 0)
    contract = sdk.v2.contracts.retrieve(customer_id=customer, contract_id=contract_id, include_balance=True).data
    assert contract.ending_before == end
    # The seats end with the contract, and only their current quantity (15 since t1) is listed.
    (seats,) = contract.subscriptions
    assert seats.ending_before == end
    assert [(q.starting_at, q.ending_before, q.quantity) for q in seats.quantity_schedule] == [(t1, end, 15)]
    # The seats' next billing period is cut at the end too.
    (periods,) = [s.billing_periods for s in contract.subscriptions]
    assert [(p.starting_at, p.ending_before) for p in (periods.previous, periods.current, periods.next)] == [
        (start, p2), (p2, p3), (p3, end)]
    # The commit's purchase still links to the finalized SCHEDULED invoice of the first day.
    assert [i.invoice_id for c in contract.commits for i in c.invoice_schedule.schedule_items] == [
        found[("SCHEDULED", start)].id]
    # M3's credit is cut at the end and prorated (Metronome's default, FIRST_AND_LAST):
    # 200 x (hours p3 -> end) / (hours in M3) = 200 x 240 / (hours in M3).
    (m3,) = [c for c in contract.credits if c.id == m3_credit]
    (item,) = m3.access_schedule.schedule_items
    assert (item.starting_at, item.ending_before) == (p3, end)
    assert Decimal(str(item.amount)) == _cents(Decimal(MONTHLY) * 240 / _hours(p3, p4))
    assert (net(), net("FINALIZED")) == (100, 600)
    assert balances() == live

    # Every balance explained by its ledger (v1 list, include_ledgers): the commit 1000, M1's
    # finalized 600 and M2's draft 300: 100 left; each monthly credit 200 spent by its own month,
    # M3's not begun (no entry yet); goodwill's 300 expired when the edit archived it.
    (listed,) = sdk.v1.contracts.list(customer_id=customer, include_balance=True, include_ledgers=True).data
    ledgers = {g.id: (g.balance, [(e.type, e.amount) for e in g.ledger])
               for g in [*listed.current.commits, *listed.current.credits]}
    spent = (0, [("CREDIT_SEGMENT_START", MONTHLY), ("CREDIT_AUTOMATED_INVOICE_DEDUCTION", -MONTHLY)])
    assert ledgers == {
        commit.id: (100, [("PREPAID_COMMIT_SEGMENT_START", COMMIT), ("PREPAID_COMMIT_AUTOMATED_INVOICE_DEDUCTION", -600),
                          ("PREPAID_COMMIT_AUTOMATED_INVOICE_DEDUCTION", -300)]),
        m1_credit: spent, m2_credit: spent, m3_credit: (0, []),
        goodwill.id: (0, [("CREDIT_SEGMENT_START", GOODWILL), ("CREDIT_EXPIRATION", -GOODWILL)]),
    }
    (expired,) = [g.ledger[-1] for g in listed.current.credits if g.id == goodwill.id]
    assert expired.timestamp == edited.edit.timestamp

    # -- the history: one entry per edit, who and when, what changed ------------------------------
    history = sdk.v2.contracts.get_edit_history(customer_id=customer, contract_id=contract_id).data
    assert [h.id for h in history] == [edited.id, ending.id]
    mid, last = history
    assert mid.uniqueness_key == f"{tag}-mid-month" and mid.timestamp == edited.edit.timestamp
    assert [(u.id, [(q.starting_at, q.quantity_delta) for q in u.quantity_updates]) for u in mid.update_subscriptions] == [
        (subscription.id, [(t1, 5)])]
    assert [(o.product.id, o.type, o.multiplier, o.starting_at) for o in mid.add_overrides] == [
        (calls, "MULTIPLIER", 0.5, t1)]
    assert [(d.id, d.product.id, [(s.timestamp, s.amount) for s in d.schedule.schedule_items]) for d in mid.add_discounts] == [
        (discount.id, fixed, [(p2, DISCOUNT)])]
    assert [c.id for c in mid.archive_credits] == [goodwill.id]
    assert (mid.update_contract_end_date, last.update_contract_end_date) == (None, end)
    assert (last.add_overrides, last.archive_credits, last.update_subscriptions) == (None, None, None)
    assert mid.timestamp <= last.timestamp
    assert {h.created_by for h in history} == {_key_id()}
    # The archived credit stays on the contract, with when it was archived.
    v1 = sdk.v1.contracts.retrieve(customer_id=customer, contract_id=contract_id).data
    (archived,) = [c for c in v1.current.credits if c.id == goodwill.id]
    assert datetime.fromisoformat(archived.model_extra["archived_at"]) == edited.edit.timestamp


def test_a_new_user_adds_five_seats_mid_month_and_sees_a_prorated_charge_and_one_history_entry(strict, api):
    sdk = strict
    tag = unique("new-user")
    start = current_hour() - 3 * DAY
    _, seats, _, card = _catalog(sdk, tag, start)
    customer = sdk.v1.customers.create(name=tag).data.id
    contract_id = sdk.v1.contracts.create(
        customer_id=customer, rate_card_id=card, starting_at=rfc3339(start),
        usage_statement_schedule={"frequency": "MONTHLY", "day": "CONTRACT_START"},
        subscriptions=[_ten_seats(seats)]).data.id
    (subscription,) = sdk.v2.contracts.retrieve(customer_id=customer, contract_id=contract_id).data.subscriptions

    now = current_hour()
    sdk.v2.contracts.edit(customer_id=customer, contract_id=contract_id, update_subscriptions=[{
        "subscription_id": subscription.id, "quantity_updates": [{"starting_at": rfc3339(now), "quantity_delta": 5}]}])

    listed = sdk.v1.customers.invoices.list(customer_id=customer).data
    (usage,) = [i for i in listed if i.type == "USAGE"]
    end = usage.end_timestamp
    assert (usage.start_timestamp, usage.total) == (start, 0)
    first, added = sorted((i for i in listed if i.type == "SCHEDULED"), key=lambda i: i.start_timestamp)
    # The month's 10 seats were billed on its first day: 10 x 3000 = 30000, unchanged.
    assert (first.start_timestamp, [(l.quantity, l.total) for l in first.line_items], first.total) == (
        start, [(10, 30000)], 30000)
    # The 5 new seats, on an invoice of their own issued now, for the rest of the month only:
    # 5 x 3000 x (hours now -> month end) / (hours in the month).
    owed = _cents(Decimal(5 * SEAT) * _hours(now, end) / _hours(start, end))
    raw = _raw(api, f"/v1/customers/{customer}/invoices/{added.id}")["data"]
    assert (added.start_timestamp, raw["status"], raw["total"]) == (now, "DRAFT", owed)
    assert [(l.product_id, l.quantity, l.starting_at, l.ending_before, l.is_prorated) for l in added.line_items] == [
        (seats, 5, now, end, True)]
    (entry,) = sdk.v2.contracts.get_edit_history(customer_id=customer, contract_id=contract_id).data
    assert [(u.id, [(q.starting_at, q.quantity_delta) for q in u.quantity_updates]) for u in entry.update_subscriptions] == [
        (subscription.id, [(now, 5)])]
