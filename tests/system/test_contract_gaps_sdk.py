"""Fields a user drives through Metronome's official SDK (strict response validation) on the local
stack: a migrated contract's invoice_generation_starting_at, an override for a recurring commit's
commits and for a billing frequency, a customer-level credit edited, a transition removing
true-ups."""

from __future__ import annotations

import pytest

from tests.system.test_commits_credits_sdk import _segment, _setup
from tests.system.usage_events import DAY, HOUR, current_hour, rfc3339, unique

pytestmark = pytest.mark.system

WEEK = 7 * DAY


def test_a_migrated_contract_with_a_recurring_commit_override_and_a_customer_credit_edit(sdk):
    tag = unique("gaps")
    start = current_hour() - 10 * DAY
    ids = _setup(sdk, tag, start)
    customer = sdk.v1.customers.create(name=tag).data.id

    contract_id = sdk.v1.contracts.create(
        customer_id=customer, rate_card_id=ids["card"], starting_at=rfc3339(start),
        # Weekly from the contract's start; Tally bills usage from the second week on.
        usage_statement_schedule={"frequency": "WEEKLY", "day": "CONTRACT_START",
                                  "invoice_generation_starting_at": rfc3339(start + WEEK)},
        recurring_commits=[{
            "product_id": ids["commit"], "priority": 1, "starting_at": rfc3339(start), "temporary_id": "weekly",
            "access_amount": {"unit_price": 100, "quantity": 1}, "commit_duration": {"value": 1},
        }],
        overrides=[{
            "starting_at": rfc3339(start), "type": "MULTIPLIER", "multiplier": 0.5, "is_commit_specific": True,
            "override_specifiers": [{"product_id": ids["api"], "recurring_commit_ids": ["weekly"]}],
        }],
    ).data.id

    contract = sdk.v1.contracts.retrieve(customer_id=customer, contract_id=contract_id).data
    (specifier,) = contract.current.overrides[0].override_specifiers
    assert specifier.recurring_commit_ids == [contract.current.recurring_commits[0].id]  # the temporary id resolved
    usage = [(i.start_timestamp, i.type) for i in sdk.v1.customers.invoices.list(customer_id=customer).data if i.type == "USAGE"]
    assert usage == [(start + WEEK, "USAGE")]  # no invoice for the first week: it is left to history

    with pytest.raises(Exception) as refused:  # a start inside a week
        sdk.v1.contracts.create(
            customer_id=customer, rate_card_id=ids["card"], starting_at=rfc3339(start),
            usage_statement_schedule={"frequency": "WEEKLY", "day": "CONTRACT_START",
                                      "invoice_generation_starting_at": rfc3339(start + WEEK + HOUR)})
    assert refused.value.status_code == 400
    assert "usage_statement_schedule.invoice_generation_starting_at" in str(refused.value)

    # A customer-level credit, edited: 100 -> 150 and a new name.
    credit_id = sdk.v1.customers.credits.create(
        customer_id=customer, product_id=ids["commit"], priority=2, name="Welcome",
        access_schedule=_segment(100, start, start + 4 * WEEK),
    ).data.id
    (credit,) = sdk.v1.customers.credits.list(customer_id=customer).data
    segment_id = credit.access_schedule.schedule_items[0].id
    assert sdk.v2.contracts.edit_credit(
        customer_id=customer, credit_id=credit_id, name="Welcome back",
        access_schedule={"update_schedule_items": [{"id": segment_id, "amount": 150}]},
    ).data.id == credit_id
    (credit,) = sdk.v1.customers.credits.list(customer_id=customer).data
    assert (credit.name, credit.access_schedule.schedule_items[0].amount) == ("Welcome back", 150)

    # A renewal that removes the old contract's future true-ups is accepted and shown.
    renewal = sdk.v1.contracts.create(
        customer_id=customer, rate_card_id=ids["card"], starting_at=rfc3339(start + 2 * WEEK),
        transition={"from_contract_id": contract_id, "type": "RENEWAL", "future_invoice_behavior": {"trueup": "REMOVE"}},
    ).data.id
    old = sdk.v1.contracts.retrieve(customer_id=customer, contract_id=contract_id).data
    assert [(t.to_contract_id, t.type) for t in old.current.transitions] == [(renewal, "RENEWAL")]
    assert old.current.ending_before == start + 2 * WEEK
