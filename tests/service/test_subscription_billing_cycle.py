"""A subscription's billing_cycle_config: its own anchor_date (service periods drawn from it, not
the contract's billing anchor) and invoice_placement (in-advance charges on the USAGE invoice).
The world of tests/service/test_contract_edits.py: a contract from Oct 1 2026 billed monthly from
the 1st, seats at 1000 a month, now Nov 24 2026 12:00."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest

from tally.api.contract_models import ContractView, contract_json
from tally.billing.errors import InvalidInput
from tests.service.test_contract_edits import drafts, lines, stored, w  # noqa: F401 (fixture)
from tests.service.test_contracts_service import _contract_count
from tests.service.test_cycle_close import NOV, OCT, _contract

UTC = timezone.utc
D = Decimal
OCT_15, NOV_15 = datetime(2026, 10, 15, tzinfo=UTC), datetime(2026, 11, 15, tzinfo=UTC)


def seats(**cycle) -> list[dict]:
    return [{
        "collection_schedule": cycle.pop("collection_schedule", "ADVANCE"),
        "proration": {"is_prorated": True},
        "subscription_rate": {"product_id": "p-seats", "billing_frequency": "MONTHLY"},
        "initial_quantity": 3,
        "billing_cycle_config": cycle,
    }]


def test_an_anchor_date_draws_the_subscriptions_periods_from_it(w):
    contract = _contract(w, subscriptions=seats(anchor_date="2026-10-15T00:00:00Z"))
    # Its periods run from the 15th: Oct 1 to 15 is 14 of the 30 days of Sep 15 to Oct 15,
    # 3 × 1000 × 14/30 = 1400; then 3000 each on Oct 15 and Nov 15, each on its own SCHEDULED invoice.
    assert lines(w, "SCHEDULED", OCT) == [("p-seats", D(3), D("1400.00"), OCT)]
    assert lines(w, "SCHEDULED", OCT_15) == [("p-seats", D(3), D("3000.00"), OCT_15)]
    assert lines(w, "SCHEDULED", NOV_15) == [("p-seats", D(3), D("3000.00"), NOV_15)]
    assert lines(w, "USAGE", OCT) == [] and lines(w, "USAGE", NOV) == []
    document = stored(w, contract)
    [sub] = contract_json(document, w.contracts.contract(document), w.contracts.products(), ContractView(w.clock.now))["subscriptions"]
    assert sub["billing_cycle_config"] == {"anchor_date": "2026-10-15T00:00:00Z", "invoice_placement": "ON_SCHEDULED_INVOICE"}
    assert sub["billing_periods"]["current"] == {"starting_at": "2026-11-15T00:00:00Z", "ending_before": "2026-12-15T00:00:00Z"}


def test_on_usage_invoice_puts_in_advance_charges_on_the_usage_invoice_of_their_period(w):
    contract = _contract(w, subscriptions=seats(anchor_date="2026-10-15T00:00:00Z", invoice_placement="ON_USAGE_INVOICE"))
    assert lines(w, "USAGE", OCT) == [("p-seats", D(3), D("1400.00"), OCT), ("p-seats", D(3), D("3000.00"), OCT_15)]
    assert lines(w, "USAGE", NOV) == [("p-seats", D(3), D("3000.00"), NOV_15)]
    assert [d for d in drafts(w) if d[0] == "SCHEDULED"] == []
    document = stored(w, contract)
    [sub] = contract_json(document, w.contracts.contract(document), w.contracts.products(), ContractView(w.clock.now))["subscriptions"]
    assert sub["billing_cycle_config"] == {"anchor_date": "2026-10-15T00:00:00Z", "invoice_placement": "ON_USAGE_INVOICE"}


@pytest.mark.parametrize(
    ("cycle", "field"),
    [
        ({"anchor_date": "2026-10-15T00:30:00Z"}, "subscriptions[0].billing_cycle_config.anchor_date"),
        ({"collection_schedule": "ARREARS", "invoice_placement": "ON_SCHEDULED_INVOICE"},
         "subscriptions[0].billing_cycle_config.invoice_placement"),
    ],
)
def test_a_billing_cycle_config_tally_cannot_follow_is_refused_and_nothing_is_written(w, cycle, field):
    before = _contract_count(w.dynamo)
    with pytest.raises(InvalidInput) as refused:
        _contract(w, subscriptions=seats(**cycle))
    assert refused.value.field == field
    assert _contract_count(w.dynamo) == before
