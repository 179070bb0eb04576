"""Spend trackers, the capped threshold discount they measure, and reseller royalty segments: the
pure rules (billing/spend_trackers.py, billing/thresholds.py decide, billing/reseller_royalties.py).
Amounts in USD cents, worked by hand next to each assertion."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest

from tally.billing.errors import InvalidInput
from tally.billing.pricing import USD_CENTS
from tally.billing.pricing.periods import Period
from tally.billing.reseller_royalties import apply_change, validate_royalties
from tally.billing.spend_trackers import Purchase, SpendTracker, commit_purchases, validate_trackers
from tally.billing.thresholds import ThresholdConfig, ThresholdKind, decide

UTC = timezone.utc
D = Decimal
DEC = Period(datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))


def _tracker(sources, discounted=None, credit_type_id=USD_CENTS.id) -> dict:
    spec = {"sources": sources, "spend_type": "COMMIT_PURCHASE"} | ({"discounted": discounted} if discounted else {})
    return {"alias": "t", "credit_type_id": credit_type_id, "reset_frequency": "BILLING_PERIOD",
            "applicable_spend_specifiers": [spec]}


def _commit(amount, at, *, threshold=False, discounted=None, type_="PREPAID") -> dict:
    doc = {"type": type_, "invoice_schedule": [{"timestamp": at, "amount": D(amount), "quantity": D(1), "unit_price": D(amount)}]}
    if threshold:
        doc["threshold_workflow_id"] = "wf"
    if discounted is not None:
        doc["spend_tracker_attributes"] = {"counts_as_discounted": discounted}
    return doc


PURCHASES = commit_purchases([
    _commit(900, "2026-12-03T10:00:00Z", threshold=True, discounted=True),   # recharge, discounted
    _commit(1000, "2026-12-08T00:00:00Z", threshold=True),                   # recharge, full price
    _commit(500, "2026-12-01T00:00:00Z"),                                    # manual
    _commit(300, "2026-12-31T23:00:00Z", discounted=True),                   # manual, discounted
    _commit(700, "2027-01-01T00:00:00Z"),                                    # January: another period
    _commit(400, "2026-12-05T00:00:00Z", type_="POSTPAID"),                  # a true-up, not a purchase
])


@pytest.mark.parametrize("sources, discounted, spend", [
    (["THRESHOLD_RECHARGE"], None, D(1900)),                    # 900 + 1000
    (["MANUAL"], "ANY", D(800)),                                # 500 + 300 (January's 700 is not December's)
    (["THRESHOLD_RECHARGE", "MANUAL"], "DISCOUNTED_ONLY", D(1200)),  # 900 + 300
    (["THRESHOLD_RECHARGE", "MANUAL"], "UNDISCOUNTED_ONLY", D(1500)),  # 1000 + 500
], ids=["recharges", "manual purchases", "discounted of both", "undiscounted of both"])
def test_a_tracker_adds_up_the_purchases_its_specifiers_match_in_the_billing_period(sources, discounted, spend):
    assert SpendTracker.of(_tracker(sources, discounted)).spend(PURCHASES, DEC, USD_CENTS.id) == spend


def test_purchases_are_the_invoice_items_of_prepaid_commits_only():
    assert [(p.amount, p.source, p.discounted) for p in PURCHASES] == [
        (D(900), "THRESHOLD_RECHARGE", True), (D(1000), "THRESHOLD_RECHARGE", False), (D(500), "MANUAL", False),
        (D(300), "MANUAL", True), (D(700), "MANUAL", False)]


@pytest.mark.parametrize("trackers, field", [
    ([_tracker(["MANUAL"]), _tracker(["THRESHOLD_RECHARGE"])], "spend_trackers[1].alias"),
    ([_tracker(["MANUAL"], credit_type_id="credits")], "spend_trackers[0].credit_type_id"),
    ([_tracker([])], "spend_trackers[0].applicable_spend_specifiers[0].sources"),
], ids=["an alias twice", "not the contract's fiat", "no source"])
def test_trackers_refused_name_their_field(trackers, field):
    with pytest.raises(InvalidInput) as refused:
        validate_trackers(trackers, USD_CENTS.id)
    assert refused.value.field == field


def _capped(cap=D(2000)) -> ThresholdConfig:
    return ThresholdConfig.of(ThresholdKind.SPEND, {
        "is_enabled": True, "threshold_amount": D(1000), "payment_gate_config": {"payment_gate_type": "NONE"},
        "commit": {"product_id": "p"}, "revision": "r",
        "discount_configuration": {"payment_fraction": D("0.9"), "cap": {"amount": cap, "spend_tracker_alias": "t"}},
    })


@pytest.mark.parametrize("tracked, invoiced, discounted", [
    (D(0), D("900.00"), True),        # 1000 × 0.9
    (D(1999), D("900.00"), True),     # still below the cap
    (D(2000), D("1000.00"), False),   # reached: the discount stops applying
    (D(2700), D("1000.00"), False),
], ids=["nothing tracked yet", "just below the cap", "at the cap", "past the cap"])
def test_a_capped_discount_applies_until_the_tracked_spend_reaches_the_cap(tracked, invoiced, discounted):
    crossing = decide(_capped(), [], D(1000), USD_CENTS, tracked)
    assert crossing is not None
    assert (crossing.access_amount, crossing.invoice_amount, crossing.discounted) == (D(1000), invoiced, discounted)


# -- reseller royalties -------------------------------------------------------------------------
AWS = {"reseller_type": "AWS", "fraction": D("0.1"), "netsuite_reseller_id": "ns-aws", "starting_at": "2026-12-01T00:00:00Z",
       "applicable_product_ids": ["p-calls"], "aws_account_number": "123", "aws_offer_id": "offer-1"}


def test_a_later_start_ends_the_current_segment_and_starts_the_next_with_its_terms():
    after = apply_change([dict(AWS, ending_before="2027-06-01T00:00:00Z")],
                         {"reseller_type": "AWS", "starting_at": "2027-01-01T00:00:00Z", "fraction": D("0.2")}, "c")
    assert after == [
        dict(AWS, ending_before="2027-01-01T00:00:00Z"),
        # the latest's terms, the new fraction, and the end the first one had
        dict(AWS, fraction=D("0.2"), starting_at="2027-01-01T00:00:00Z", ending_before="2027-06-01T00:00:00Z"),
    ]


def test_a_change_without_a_start_updates_the_current_segment_and_a_null_end_removes_it():
    after = apply_change([dict(AWS, ending_before="2027-06-01T00:00:00Z")],
                         {"reseller_type": "AWS", "ending_before": None, "reseller_contract_value": D(5000)}, "c")
    assert after == [dict(AWS, reseller_contract_value=D(5000))]


def test_a_royalty_of_a_new_reseller_type_starts_alongside():
    gcp = {"reseller_type": "GCP", "fraction": D("0.05"), "netsuite_reseller_id": "ns-gcp",
           "starting_at": "2026-12-01T00:00:00Z", "applicable_product_tags": ["ai"], "gcp_offer_id": "g-1"}
    after = apply_change([AWS], gcp, "c")
    assert after == [AWS, gcp]
    validate_royalties(after)  # two types at once is fine


@pytest.mark.parametrize("change, field", [
    ({"reseller_type": "AWS", "fraction": D("1.5")}, "c.fraction"),
    ({"reseller_type": "AWS", "starting_at": "2026-11-01T00:00:00Z", "fraction": D("0.2")}, "c.starting_at"),
    ({"reseller_type": "AWS", "starting_at": "2027-01-01T00:30:00Z"}, "c.starting_at"),
    ({"reseller_type": "AWS", "gcp_offer_id": "g"}, "c.gcp_options"),
    ({"reseller_type": "GCP", "fraction": D("0.1"), "netsuite_reseller_id": "n", "starting_at": "2026-12-01T00:00:00Z"},
     "c.applicable_product_ids"),
    ({"reseller_type": "GCP_PRO_SERVICE", "fraction": D("0.1"), "starting_at": "2026-12-01T00:00:00Z"}, "c.netsuite_reseller_id"),
], ids=["a fraction over 1", "before the current segment", "not on the hour", "GCP options on AWS",
        "no applicable products", "a new royalty without its reseller id"])
def test_royalty_changes_refused_name_their_field(change, field):
    with pytest.raises(InvalidInput) as refused:
        apply_change([AWS], change, "c")
    assert refused.value.field == field


def test_two_segments_of_one_reseller_type_at_once_are_refused():
    with pytest.raises(InvalidInput) as refused:
        validate_royalties([AWS, dict(AWS, starting_at="2027-01-01T00:00:00Z")])
    assert refused.value.field == "reseller_royalties[1].starting_at"
