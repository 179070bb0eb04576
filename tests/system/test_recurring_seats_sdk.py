"""A per-seat recurring credit through metronome-sdk in strict mode on the local stack: linked to a
10-seat subscription created with it (by temporary_id), then 5 seats added by an edit ten days
into this month, prorated; the subscription made SEAT_BASED by a second edit; its own
billing_cycle_config shown; a QUANTITY recurring credit (units of usage) beside it. Amounts are cents; the prorated one is worked from the month's length.

The contract runs from the first of last month (M1) to the first of next month (M3), billed monthly
from the first, so each recurrence is a whole month.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import metronome
import pytest

from tests.system.conftest import API_KEY
from tests.system.usage_events import DAY, UTC, rfc3339, unique

pytestmark = pytest.mark.system

PER_SEAT = 62  # cents of credit a seat each month
SEAT = 1000  # cents a seat each month


def test_a_per_seat_recurring_credit_follows_the_subscriptions_seats_through_edits(local_stack):
    m2 = datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    m1, m3 = (m2 - DAY).replace(day=1), (m2 + timedelta(days=32)).replace(day=1)
    increase = m2 + 10 * DAY
    tag = unique("seatcredit")
    with metronome.Metronome(bearer_token=API_KEY, base_url=local_stack.base_url, max_retries=0,
                             _strict_response_validation=True) as sdk:
        seats = sdk.v1.contracts.products.create(name=f"{tag} seats", type="SUBSCRIPTION").data.id
        fixed = sdk.v1.contracts.products.create(name=f"{tag} credit", type="FIXED").data.id
        card = sdk.v1.contracts.rate_cards.create(name=f"{tag} card").data.id
        sdk.v1.contracts.rate_cards.rates.add(rate_card_id=card, product_id=seats, entitled=True, rate_type="SUBSCRIPTION",
                                              price=SEAT, billing_frequency="MONTHLY", starting_at=rfc3339(m1 - DAY))
        customer = sdk.v1.customers.create(name=tag).data.id
        contract_id = sdk.v1.contracts.create(
            customer_id=customer, rate_card_id=card, starting_at=rfc3339(m1), ending_before=rfc3339(m3),
            subscriptions=[{
                "collection_schedule": "ADVANCE", "proration": {"is_prorated": True},
                "subscription_rate": {"product_id": seats, "billing_frequency": "MONTHLY"},
                "initial_quantity": 10, "temporary_id": "team",
                "billing_cycle_config": {"invoice_placement": "ON_SCHEDULED_INVOICE"},
            }],
            recurring_credits=[{
                "product_id": fixed, "name": "Seat credit", "priority": 1, "starting_at": rfc3339(m1),
                "access_amount": {"unit_price": PER_SEAT}, "commit_duration": {"value": 1},
                "subscription_config": {"subscription_id": "team", "apply_seat_increase_config": {"is_prorated": True}},
            }, {
                "product_id": fixed, "name": "1000 units", "priority": 2, "starting_at": rfc3339(m1),
                "access_amount": {"unit_price": 1, "quantity": 1000, "access_type": "QUANTITY"}, "commit_duration": {"value": 1},
            }],
        ).data.id
        contract = sdk.v2.contracts.retrieve(customer_id=customer, contract_id=contract_id).data
        (sub,) = contract.subscriptions
        recurring, units = sorted(contract.recurring_credits, key=lambda r: r.priority)[:2]
        assert (units.access_amount.access_type, units.access_amount.credit_type_id) == (
            "QUANTITY", "00000000-0000-0000-0000-000000000000")
        assert recurring.subscription_config.subscription_id == sub.id
        assert (recurring.subscription_config.allocation, recurring.access_amount.quantity) == ("POOLED", None)
        assert (sub.billing_cycle_config.anchor_date, sub.billing_cycle_config.invoice_placement) == (m1, "ON_SCHEDULED_INVOICE")

        # 5 more seats ten days into M2: 5 × 62 × (the rest of M2 over all of it), rounded to cents.
        sdk.v2.contracts.edit(customer_id=customer, contract_id=contract_id, update_subscriptions=[{
            "subscription_id": sub.id, "quantity_updates": [{"starting_at": rfc3339(increase), "quantity_delta": 5}]}])
        # Made SEAT_BASED (its seats so far unassigned); ann fills one from M2, and a credit of 100 a
        # month for each seat of her own (INDIVIDUAL) starts then.
        sdk.v2.contracts.edit(customer_id=customer, contract_id=contract_id, update_subscriptions=[{
            "subscription_id": sub.id,
            "quantity_management_mode_update": {"quantity_management_mode": "SEAT_BASED", "seat_config": {"seat_group_key": "user_id"}},
            "seat_updates": {"add_seat_ids": [{"seat_ids": ["ann"], "starting_at": rfc3339(m2)}]}}])
        sdk.v2.contracts.edit(customer_id=customer, contract_id=contract_id, add_recurring_credits=[{
            "product_id": fixed, "name": "Own credit", "priority": 3, "starting_at": rfc3339(m2),
            "access_amount": {"unit_price": 100}, "commit_duration": {"value": 1},
            "subscription_config": {"subscription_id": sub.id, "allocation": "INDIVIDUAL", "apply_seat_increase_config": {"is_prorated": True}},
        }])
        (seat,) = sdk.v1.contracts.list_seat_balances(customer_id=customer, contract_id=contract_id,
                                                      include_credits_and_commits=True, include_ledgers=True).data
        assert (seat.seat_id, [(b.balance, b.starting_balance, b.access_type) for b in seat.balances], seat.commits) == (
            "ann", [(100, 100, "SPEND")], [])
        (own,) = seat.credits
        assert (own.start_date, own.end_date, own.balance, [(e.type, e.amount) for e in own.ledger_entries]) == (
            m2, m3, 100, [("CREDIT_SEGMENT_START", 100)])

        prorated = (Decimal(5 * PER_SEAT) * Decimal((m3 - increase).total_seconds()) / Decimal((m3 - m2).total_seconds())).quantize(
            Decimal("0.01"), ROUND_HALF_UP)
        for contract in (sdk.v2.contracts.retrieve(customer_id=customer, contract_id=contract_id).data,
                         sdk.v1.contracts.retrieve(customer_id=customer, contract_id=contract_id).data.current):
            credits = sorted((c for c in contract.credits if c.recurring_credit_id == recurring.id),
                             key=lambda c: c.access_schedule.schedule_items[0].starting_at)
            assert [[(i.starting_at, i.amount) for i in c.access_schedule.schedule_items] for c in credits] == [
                [(m1, 620)],  # 10 seats × 62
                [(m2, 620), (increase, float(prorated))],
            ]
            assert {c.subscription_config.subscription_id for c in credits} == {sub.id}
        (sub,) = sdk.v2.contracts.retrieve(customer_id=customer, contract_id=contract_id).data.subscriptions
        assert (sub.quantity_management_mode, sub.seat_config.seat_group_key) == ("SEAT_BASED", "user_id")
        history = sdk.v2.contracts.get_edit_history(customer_id=customer, contract_id=contract_id).data
        assert len(history) == 3
