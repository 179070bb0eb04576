"""Recurring credits and commits, a discount and professional services through metronome-sdk in
strict mode on the local stack, over three months: every balance, applied line and SCHEDULED
invoice is worked out by hand in the comments.

The contract runs from the first of the month before last (M0) to the first of next month (M3),
billed monthly from the first of each month, so each recurrence is a whole month (no proration).
Events can be backdated 34 days at most, so M0 has no usage; M1's is stamped on its last day and
M2's in its first hour. Amounts are cents, exact in binary because the SDK parses floats.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import metronome
import pytest

from tests.system.conftest import API_KEY
from tests.system.usage_events import DAY, HOUR, UTC, rfc3339, unique, usage_event

pytestmark = pytest.mark.system

CALL = 64  # cents
CREDIT = 1024  # a month, half of what is left rolls into the next month
COMMIT, PRICE = 4096, 2048  # a month of usage, bought for 2048 at each month's start
DISCOUNT = 256  # off M1's SCHEDULED invoice


def _month_starts() -> tuple[datetime, datetime, datetime, datetime]:
    m2 = datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    m1 = (m2 - DAY).replace(day=1)
    return (m1 - DAY).replace(day=1), m1, m2, (m2 + timedelta(days=32)).replace(day=1)


def test_a_monthly_credit_with_rollover_and_a_recurring_prepaid_commit_over_three_months(local_stack, settle):
    m0, m1, m2, m3 = _month_starts()
    tag = unique("recurring")
    with metronome.Metronome(bearer_token=API_KEY, base_url=local_stack.base_url, max_retries=0,
                             _strict_response_validation=True) as sdk:
        metric = sdk.v1.billable_metrics.create(
            name=f"{tag} calls", aggregation_type="COUNT", event_type_filter={"in_values": [tag]}).data.id
        calls = sdk.v1.contracts.products.create(name=f"{tag} calls", type="USAGE", billable_metric_id=metric).data.id
        fixed = sdk.v1.contracts.products.create(name=f"{tag} plan", type="FIXED").data.id
        card = sdk.v1.contracts.rate_cards.create(name=f"{tag} card").data.id
        sdk.v1.contracts.rate_cards.rates.add(rate_card_id=card, product_id=calls, entitled=True, rate_type="FLAT",
                                              price=CALL, starting_at=rfc3339(m0 - DAY))
        customer = sdk.v1.customers.create(name=tag, ingest_aliases=[tag]).data.id
        contract_id = sdk.v1.contracts.create(
            customer_id=customer, rate_card_id=card, starting_at=rfc3339(m0), ending_before=rfc3339(m3),
            recurring_credits=[{
                "product_id": fixed, "name": "Monthly credit", "priority": 1, "starting_at": rfc3339(m0),
                "access_amount": {"unit_price": CREDIT, "quantity": 1}, "commit_duration": {"value": 1},
                "rollover_fraction": 0.5,
            }],
            recurring_commits=[{
                "product_id": fixed, "name": "Monthly commit", "priority": 2, "starting_at": rfc3339(m0),
                "access_amount": {"unit_price": COMMIT, "quantity": 1}, "commit_duration": {"value": 1},
                "invoice_amount": {"unit_price": PRICE, "quantity": 1, "credit_type_id": "2714e483-4ff1-48e4-9e25-ac732e8f24f2"},
            }],
            discounts=[{"product_id": fixed, "name": "Launch discount",
                        "schedule": {"schedule_items": [{"timestamp": rfc3339(m1), "amount": DISCOUNT}]}}],
            professional_services=[{"product_id": fixed, "description": "Onboarding", "max_amount": 10000,
                                    "quantity": 4, "unit_price": 1500}],
        ).data.id

        # M1: 100 calls, 6400. M2: 10 calls, 640.
        sdk.v1.usage.ingest(usage=[usage_event(f"{tag}-a{n}", tag, tag, m2 - DAY) for n in range(100)])
        sdk.v1.usage.ingest(usage=[usage_event(f"{tag}-b{n}", tag, tag, m2 + HOUR) for n in range(10)])
        settle()

        contract = sdk.v2.contracts.retrieve(customer_id=customer, contract_id=contract_id, include_balance=True).data
        (recurring_credit,) = contract.recurring_credits
        (recurring_commit,) = contract.recurring_commits
        assert (recurring_credit.rollover_fraction, recurring_commit.invoice_amount.unit_price) == (0.5, PRICE)
        credits = sorted(contract.credits, key=lambda c: c.access_schedule.schedule_items[0].starting_at)
        commits = sorted(contract.commits, key=lambda c: c.access_schedule.schedule_items[0].starting_at)
        assert [c.access_schedule.schedule_items[0].starting_at for c in credits] == [m0, m1, m2]
        assert {c.recurring_credit_id for c in credits} == {recurring_credit.id}
        assert {c.recurring_commit_id for c in commits} == {recurring_commit.id}
        # Now (in M2) only M2's grants count. M2's credit paid all 640 of M2 (M1's credit had nothing
        # left to roll over): 1024 - 640 = 384. M2's commit is untouched: 4096.
        assert [c.balance for c in credits] == [0, 0, 384]
        assert [c.balance for c in commits] == [0, 0, COMMIT]
        assert sdk.v1.contracts.get_net_balance(customer_id=customer).data.balance == 384 + COMMIT
        v1 = sdk.v1.contracts.retrieve(customer_id=customer, contract_id=contract_id).data
        assert len(v1.current.recurring_credits) == 1 and len(v1.current.commits) == 3

        # M0's credit: nothing used, half (512) rolls into M1 and the rest expires; M1 spends the rollover.
        balances = sdk.v1.contracts.list_balances(customer_id=customer, include_ledgers=True, include_balance=True).data
        m0_credit = next(b for b in balances if b.id == credits[0].id)
        assert [(e.type, e.amount) for e in m0_credit.ledger] == [
            ("CREDIT_SEGMENT_START", CREDIT), ("CREDIT_ROLLOVER", -512), ("CREDIT_EXPIRATION", -512),
            ("CREDIT_SEGMENT_START", 512), ("CREDIT_AUTOMATED_INVOICE_DEDUCTION", -512)]
        for balance in (b for b in balances if b.id in {c.id for c in credits + commits}):
            assert sum(e.amount for e in balance.ledger) == balance.balance  # every balance explained

        invoices = {(i.type, i.start_timestamp): i for i in sdk.v1.customers.invoices.list(customer_id=customer).data}

        def applied(month: datetime) -> dict:
            return {l.commit_id: l.total for l in invoices[("USAGE", month)].line_items if l.type == "applied_commit_or_credit"}

        # M1, 6400: the rollover from M0 first (512), M1's credit (1024), M1's commit (4096): 768 left.
        assert applied(m1) == {credits[0].id: -512, credits[1].id: -1024, commits[1].id: -COMMIT}
        assert invoices[("USAGE", m1)].total == 768
        # M2, 640: M2's credit.
        assert applied(m2) == {credits[2].id: -640} and invoices[("USAGE", m2)].total == 0
        assert invoices[("USAGE", m0)].total == 0
        # Each month's commit is bought on the SCHEDULED invoice at its start; M1's has the discount.
        for month, commit in zip((m0, m1, m2), commits):
            purchase = [(l.type, l.commit_id, l.total) for l in invoices[("SCHEDULED", month)].line_items if l.commit_id]
            assert purchase == [("commit_purchase", commit.id, PRICE)]
        discounted = invoices[("SCHEDULED", m1)]
        assert [(l.discount_id is not None, l.total) for l in discounted.line_items if l.type == "scheduled"] == [(True, -DISCOUNT)]
        assert discounted.total == PRICE - DISCOUNT

        # Professional services: 2 of the term's 4 at 1500, on the invoice issued in a week.
        (service,) = v1.current.professional_services
        issued = m2 + 7 * DAY
        (scheduled,) = sdk.v1.contracts.schedule_pro_services_invoice(
            customer_id=customer, contract_id=contract_id, issued_at=rfc3339(issued),
            line_items=[{"professional_service_id": service.id, "quantity": 2}]).data
        assert (scheduled.type, scheduled.start_timestamp, scheduled.total) == ("SCHEDULED", issued, 3000)
        assert [(l.professional_service_id, l.quantity, l.unit_price) for l in scheduled.line_items] == [(service.id, 2, 1500)]
        # 3000 of 10000 scheduled: 7001 more is refused, naming the line.
        with pytest.raises(metronome.BadRequestError) as refused:
            sdk.v1.contracts.schedule_pro_services_invoice(
                customer_id=customer, contract_id=contract_id, issued_at=rfc3339(issued),
                line_items=[{"professional_service_id": service.id, "amount": 7001}])
        assert refused.value.body["field"] == "line_items[0].amount"
