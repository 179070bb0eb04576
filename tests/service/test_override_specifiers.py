"""Override specifiers limited to a recurring commit's commits (`recurring_commit_ids`) and to rates
of a billing frequency (`billing_frequency`), through the contract service on moto DynamoDB (the
recurring grants world: Oct 1 2026 to Jan 1 2027, calls at 2 cents in October, 3 seats at 1000 a
month in advance). Totals are worked by hand next to each assertion."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest

from tally.billing.errors import InvalidInput
from tests.service.test_contracts_service import _contract_count
from tests.service.test_cycle_close import NOV, SEATS, _ledger
from tests.service.test_recurring_grants import MONTHLY_COMMIT, _contract, _invoices, _stored, w  # noqa: F401

UTC = timezone.utc
D = Decimal
CREDIT_100 = {"product_id": "p-setup", "priority": 1, "access_schedule": {"schedule_items": [
    {"amount": 100, "starting_at": "2026-10-01T00:00:00Z", "ending_before": "2026-11-01T00:00:00Z"}]}}


def _half_for(spec: dict) -> dict:
    """A commit-specific multiplier of 0.5 on calls, for the payers `spec` names."""
    return {"starting_at": "2026-10-01T00:00:00Z", "type": "MULTIPLIER", "multiplier": 0.5, "is_commit_specific": True,
            "override_specifiers": [{"product_id": "p-calls", **spec}]}


def _drawn(w, grant_id: str) -> list[D]:
    return [amount for kind, amount, _, _ in _ledger(w, grant_id) if kind.value.endswith("AUTOMATED_INVOICE_DEDUCTION")]


def test_an_override_naming_a_recurring_commit_prices_the_draws_of_the_commits_it_makes_only(w):
    """150 October calls x 2 = 300. The credit (priority 1) pays the first 100 at list price; the
    recurring commit's October commit pays the other 200 of list at half: 100 from its 500."""
    contract = _contract(w, credits=[CREDIT_100], recurring_commits=[MONTHLY_COMMIT | {"temporary_id": "monthly"}],
                         overrides=[_half_for({"recurring_commit_ids": ["monthly"]})])
    w.usage.calls += [(datetime(2026, 10, 10, tzinfo=UTC), 150)]
    stored = _stored(w, contract)
    recurring_id = stored["recurring_commits"][0]["id"]
    assert stored["overrides"][0]["override_specifiers"][0]["recurring_commit_ids"] == [recurring_id]  # temporary id resolved
    october_commit = next(c for c in w.balances.grants(w.customer.id).grants if c.recurring_id == recurring_id)

    assert _drawn(w, stored["credits"][0]["id"]) == [D("-100.00")]  # list price: the override does not name it
    assert _drawn(w, october_commit.id) == [D("-100.00")]  # 200 of list at half
    assert _invoices(w)[("USAGE", datetime(2026, 10, 1, tzinfo=UTC))].total == D("0.00")


def test_an_override_limited_to_a_billing_frequency_prices_only_subscriptions_billed_so(w):
    """3 seats at 1000 a month: a 0.5 multiplier for QUARTERLY rates leaves Nov 1's 3000; one for
    MONTHLY rates makes it 1500."""
    quarterly = _contract(w, subscriptions=SEATS, overrides=[
        {"starting_at": "2026-10-01T00:00:00Z", "type": "MULTIPLIER", "multiplier": 0.5,
         "override_specifiers": [{"product_id": "p-seats", "billing_frequency": "QUARTERLY"}]}])
    assert [(i.contract_id, i.total) for (t, at), i in _invoices(w).items() if (t, at) == ("SCHEDULED", NOV)] == [
        (quarterly["id"], D("3000.00"))]
    w.contracts.archive(w.customer.id, quarterly["id"])
    monthly = _contract(w, subscriptions=SEATS, overrides=[
        {"starting_at": "2026-10-01T00:00:00Z", "type": "MULTIPLIER", "multiplier": 0.5,
         "override_specifiers": [{"product_id": "p-seats", "billing_frequency": "MONTHLY"}]}])
    assert [(i.contract_id, i.total) for (t, at), i in _invoices(w).items() if (t, at) == ("SCHEDULED", NOV)] == [
        (monthly["id"], D("1500.00"))]
    assert _stored(w, monthly)["overrides"][0]["override_specifiers"][0]["billing_frequency"] == "MONTHLY"


@pytest.mark.parametrize("override,field", [
    (_half_for({"recurring_commit_ids": ["monthly"]}) | {"is_commit_specific": False},
     "overrides[0].override_specifiers[0].recurring_commit_ids"),
    (_half_for({"recurring_commit_ids": ["nope"]}), "overrides[0].override_specifiers[0].recurring_commit_ids[0]"),
    (_half_for({"recurring_commit_ids": ["monthly"], "any_commit_or_credit_ids": ["monthly"]}),
     "overrides[0].override_specifiers[0].any_commit_or_credit_ids"),
    (_half_for({"any_commit_or_credit_ids": ["nope"]}), "overrides[0].override_specifiers[0].any_commit_or_credit_ids[0]"),
], ids=["not commit-specific", "an unknown recurring commit", "with any_commit_or_credit_ids", "an unknown id in any"])
def test_a_bad_recurring_specifier_is_refused_naming_the_field_and_nothing_is_stored(w, override, field):
    with pytest.raises(InvalidInput) as refused:
        _contract(w, recurring_commits=[MONTHLY_COMMIT | {"temporary_id": "monthly"}], overrides=[override])
    assert refused.value.field == field
    assert _contract_count(w.dynamo) == 0


def test_any_commit_or_credit_ids_may_name_a_recurring_commit(w):
    _contract(w, credits=[CREDIT_100], recurring_commits=[MONTHLY_COMMIT | {"temporary_id": "monthly"}],
              overrides=[_half_for({"any_commit_or_credit_ids": ["monthly"]})])
    w.usage.calls += [(datetime(2026, 10, 10, tzinfo=UTC), 150)]
    made = [g for g in w.balances.grants(w.customer.id).grants if g.recurring_id is not None]
    assert _drawn(w, made[0].id) == [D("-100.00")]  # as above: 200 of list at half
