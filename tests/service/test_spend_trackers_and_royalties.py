"""Spend trackers, the threshold discount cap they measure, and reseller royalties through the
services on moto DynamoDB. The contract of tests/service/test_thresholds.py: from Dec 1 2026, billed
monthly, API calls at a flat 10 cents; amounts in USD cents, worked by hand next to each assertion.
"""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest

from tally.api.contract_amend_models import ContractAmend
from tally.api.contract_edit_models import edit_json
from tally.api.contract_models import ContractView, contract_json
from tally.api.contract_v2_models import contract_v2_json
from tally.billing import exact_json
from tally.billing.errors import InvalidInput
from tests.service.test_thresholds import (  # noqa: F401  (w is the fixture)
    _calls,
    _commits,
    _contract,
    _edit,
    _purchases,
    _spend,
    _usage_total,
    w,
)

UTC = timezone.utc
D = Decimal


def _tracker(alias: str, sources: list[str], discounted: str | None = None) -> dict:
    spec = {"sources": sources, "spend_type": "COMMIT_PURCHASE"} | ({"discounted": discounted} if discounted else {})
    return {"alias": alias, "credit_type_id": "2714e483-4ff1-48e4-9e25-ac732e8f24f2", "reset_frequency": "BILLING_PERIOD",
            "applicable_spend_specifiers": [spec]}


def _manual_commit(amount: int, *, discounted: bool | None = None) -> dict:
    """A commit bought on Dec 1 that only the setup product draws down (so it leaves the usage
    draft, and the threshold, alone)."""
    commit = {
        "type": "PREPAID", "product_id": "p-setup", "applicable_product_ids": ["p-setup"],
        "access_schedule": {"schedule_items": [{"amount": amount, "starting_at": "2026-12-01T00:00:00Z",
                                                "ending_before": "2027-01-01T00:00:00Z"}]},
        "invoice_schedule": {"schedule_items": [{"timestamp": "2026-12-01T00:00:00Z", "amount": amount}]},
    }
    if discounted is not None:
        commit["spend_tracker_attributes"] = {"counts_as_discounted": discounted}
    return commit


def _v1(w, contract: dict, now: datetime | None = None) -> dict:
    document = w.contracts.get(w.customer.id, contract["id"])
    view = ContractView(now or w.clock.now, figures=w.balances.figures(w.customer.id, with_balances=False))
    return contract_json(document, w.contracts.contract(document), w.contracts.products(), view)


def _spent(body: dict) -> dict[str, Decimal]:
    return {t["alias"]: t["accumulated_spend"]["amount"] for t in body["spend_trackers"]}


TRACKERS = [
    _tracker("recharges", ["THRESHOLD_RECHARGE"]),
    _tracker("discounted", ["THRESHOLD_RECHARGE", "MANUAL"], "DISCOUNTED_ONLY"),
    _tracker("manual", ["MANUAL"], "UNDISCOUNTED_ONLY"),
]
CAPPED = {"payment_fraction": 0.9, "cap": {"amount": 2000, "spend_tracker_alias": "recharges"}}


def test_a_capped_discount_applies_until_the_tracker_has_counted_the_cap_and_again_next_period(w):
    contract = _contract(w, spend_trackers=TRACKERS, commits=[_manual_commit(500), _manual_commit(300, discounted=True)],
                         spend_threshold_configuration=_spend(1000, discount_configuration=CAPPED))
    _calls(w, datetime(2026, 12, 3, 9, tzinfo=UTC), 400)  # 4000 spent, none collected
    w.clock.now = crossed = datetime(2026, 12, 3, 10, tzinfo=UTC)
    assert w.service.evaluate_customer(w.customer.id).charged == 4
    # Each crossing buys 1000. Tracked before each: 0, 900, 1800 (below the 2000 cap: paid 900),
    # then 2700 (reached: paid in full).
    assert _purchases(w) == [(datetime(2026, 12, 1, tzinfo=UTC), D(500)), (datetime(2026, 12, 1, tzinfo=UTC), D(300))] + [
        (crossed, D("900.00")), (crossed, D("900.00")), (crossed, D("900.00")), (crossed, D("1000.00"))]
    assert _usage_total(w) == 0  # 4000 - 4 × 1000

    v1 = _v1(w, contract)
    # recharges 3 × 900 + 1000; discounted 3 × 900 + the manual 300; manual: the undiscounted 500.
    assert _spent(v1) == {"recharges": D(3700), "discounted": D(3000), "manual": D(500)}
    assert v1["spend_trackers"] == v1["current"]["spend_trackers"]
    assert v1["spend_trackers"][0]["accumulated_spend"] | {"amount": None} == {
        "amount": None, "period_starting_at": "2026-12-01T00:00:00Z", "period_ending_before": "2027-01-01T00:00:00Z"}
    bought = sorted((c["invoice_schedule"]["schedule_items"][0]["amount"], c.get("spend_tracker_attributes") or {})
                    for c in _commits(w, contract))
    discounted = {"counts_as_discounted": True}
    assert bought == [(300, discounted), (500, {}), (900, discounted), (900, discounted), (900, discounted), (1000, {})]

    # January: the tracker starts from 0 again, so the discount applies again.
    _calls(w, datetime(2027, 1, 2, tzinfo=UTC), 100)
    w.clock.now = january = datetime(2027, 1, 2, 3, tzinfo=UTC)
    assert w.service.evaluate_customer(w.customer.id).charged == 1
    assert _purchases(w)[-1] == (january, D("900.00"))
    assert _spent(_v1(w, contract))["recharges"] == D(900)


def test_trackers_are_added_and_archived_by_edits_and_shown_on_v2_and_in_the_history(w):
    contract = _contract(w, spend_trackers=TRACKERS[:1], commits=[_manual_commit(500)])
    record = _edit(w, contract, add_spend_trackers=[TRACKERS[2]], archive_spend_trackers=["recharges"])
    document = w.contracts.get(w.customer.id, contract["id"])
    engine = w.contracts.contract(document)
    v2 = contract_v2_json(document, engine, w.contracts.products(), ContractView(w.clock.now))
    assert [(t["alias"], t["accumulated_spend"]["amount"]) for t in v2["spend_trackers"]] == [("manual", D(500))]
    assert [(t["alias"], t["archived_at"]) for t in document["archived_spend_trackers"]] == [("recharges", record["timestamp"])]
    history = edit_json(record, document, engine, w.contracts.products(), ContractView(w.clock.now))
    assert history["add_spend_trackers"][0]["alias"] == "manual"
    assert history["archive_spend_trackers"] == ["recharges"]
    # An archived alias may be used again.
    _edit(w, contract, add_spend_trackers=[TRACKERS[0]])
    assert [t["alias"] for t in w.contracts.get(w.customer.id, contract["id"])["spend_trackers"]] == ["manual", "recharges"]


@pytest.mark.parametrize("body, field", [
    ({"archive_spend_trackers": ["recharges"]}, "archive_spend_trackers[0]"),
    ({"archive_spend_trackers": ["nope"]}, "archive_spend_trackers[0]"),
    ({"add_spend_trackers": [TRACKERS[0]]}, "add_spend_trackers[0].alias"),
    ({"add_spend_trackers": [_tracker("x", ["MANUAL"]) | {"credit_type_id": "credits"}]}, "add_spend_trackers[0].credit_type_id"),
    ({"update_spend_threshold_configuration": {"discount_configuration": {"cap": {"amount": 5, "spend_tracker_alias": "nope"}}}},
     "update_spend_threshold_configuration.discount_configuration.cap.spend_tracker_alias"),
    ({"add_reseller_royalties": [{"reseller_type": "AWS", "fraction": 1.5}]}, "add_reseller_royalties[0].fraction"),
    ({"add_reseller_royalties": [{"reseller_type": "AWS", "gcp_options": {"gcp_offer_id": "g"}}]}, "add_reseller_royalties[0].gcp_options"),
    ({"add_reseller_royalties": [{"reseller_type": "AWS", "starting_at": "2026-11-01T00:00:00Z"}]}, "add_reseller_royalties[0].starting_at"),
    ({"add_reseller_royalties": [{"reseller_type": "GCP", "fraction": 0.1, "netsuite_reseller_id": "n",
                                  "starting_at": "2026-12-01T00:00:00Z", "applicable_product_ids": ["nope"]}]},
     "add_reseller_royalties[0].applicable_product_ids[0]"),
    ({"add_reseller_royalties": [{"reseller_type": "AWS"}]}, "add_reseller_royalties[0]"),
    ({"add_spend_trackers": [_tracker(f"t{n}", ["MANUAL"]) for n in range(20)]}, "add_spend_trackers"),
], ids=["archiving the tracker a cap measures", "archiving an unknown alias", "an alias twice", "not the fiat credit type",
        "a cap on an unknown tracker", "a royalty fraction over 1", "GCP options on an AWS royalty",
        "a royalty change before the current segment", "a royalty on an unknown product", "a royalty change of nothing",
        "a 21st tracker"])
def test_edits_refused_name_their_field_and_change_nothing(w, body, field):
    contract = _contract(w, spend_trackers=TRACKERS[:1], reseller_royalties=[AWS],
                         spend_threshold_configuration=_spend(1000, discount_configuration=CAPPED))
    before = w.contracts.get(w.customer.id, contract["id"])
    with pytest.raises(InvalidInput) as refused:
        _edit(w, contract, **body)
    assert refused.value.field == field
    assert w.contracts.get(w.customer.id, contract["id"]) == before
    assert w.edits.history(w.customer.id, contract["id"]) == []


def test_a_contract_with_a_cap_on_no_tracker_is_refused(w):
    with pytest.raises(InvalidInput) as refused:
        _contract(w, spend_threshold_configuration=_spend(1000, discount_configuration=CAPPED))
    assert refused.value.field == "spend_threshold_configuration.discount_configuration.cap.spend_tracker_alias"


# -- reseller royalties -------------------------------------------------------------------------
AWS = {"reseller_type": "AWS", "fraction": 0.1, "netsuite_reseller_id": "ns-aws", "starting_at": "2026-12-01T00:00:00Z",
       "applicable_product_ids": ["p-calls"], "aws_options": {"aws_account_number": "123", "aws_offer_id": "offer-1"}}
SEGMENT = {"reseller_type": "AWS", "fraction": D("0.1"), "netsuite_reseller_id": "ns-aws", "starting_at": "2026-12-01T00:00:00Z",
           "applicable_product_ids": ["p-calls"], "aws_account_number": "123", "aws_offer_id": "offer-1"}


def test_royalties_are_stored_with_their_dates_changed_by_edits_and_amendments_and_bill_nothing(w):
    contract = _contract(w, reseller_royalties=[AWS])
    _calls(w, datetime(2026, 12, 3, tzinfo=UTC), 30)
    assert _usage_total(w) == D(300)  # 30 calls × 10: the royalty takes nothing off
    record = _edit(w, contract, add_reseller_royalties=[{"reseller_type": "AWS", "starting_at": "2027-01-01T00:00:00Z",
                                                         "fraction": 0.2}])
    amend = ContractAmend.model_validate(exact_json.loads(exact_json.dumps({
        "customer_id": w.customer.id, "contract_id": contract["id"], "starting_at": "2027-02-01T00:00:00Z",
        "reseller_royalties": [{"reseller_type": "GCP", "fraction": 0.05, "netsuite_reseller_id": "ns-gcp",
                                "starting_at": "2027-02-01T00:00:00Z", "applicable_product_tags": ["ai"],
                                "gcp_options": {"gcp_offer_id": "g-1"}}]})))
    w.edits.edit(w.customer.id, contract["id"], amend.changes(), author="key-1")
    assert _usage_total(w) == D(300)

    document = w.contracts.get(w.customer.id, contract["id"])
    engine = w.contracts.contract(document)
    view = ContractView(w.clock.now)
    aws_2027 = SEGMENT | {"fraction": D("0.2"), "starting_at": "2027-01-01T00:00:00Z"}
    gcp = {"reseller_type": "GCP", "fraction": D("0.05"), "netsuite_reseller_id": "ns-gcp",
           "starting_at": "2027-02-01T00:00:00Z", "applicable_product_tags": ["ai"], "gcp_offer_id": "g-1"}
    v1 = contract_json(document, engine, w.contracts.products(), view)
    assert v1["current"]["reseller_royalties"] == [SEGMENT | {"ending_before": "2027-01-01T00:00:00Z"}, aws_2027, gcp]
    assert v1["amendments"][0]["reseller_royalties"] == [gcp]
    v2 = contract_v2_json(document, engine, w.contracts.products(), view)
    assert v2["reseller_royalties"] == [
        {"reseller_type": "AWS", "segments": [SEGMENT | {"ending_before": "2027-01-01T00:00:00Z"}, aws_2027]},
        {"reseller_type": "GCP", "segments": [gcp]},
    ]
    history = edit_json(record, document, engine, w.contracts.products(), view)
    assert history["add_reseller_royalties"] == [{"reseller_type": "AWS", "fraction": D("0.2"),
                                                  "starting_at": "2027-01-01T00:00:00Z"}]


@pytest.mark.parametrize("royalty, field", [
    (AWS | {"starting_at": "2026-12-01T00:30:00Z"}, "reseller_royalties[0].starting_at"),
    (AWS | {"fraction": -0.1}, "reseller_royalties[0].fraction"),
    ({k: v for k, v in AWS.items() if k != "applicable_product_ids"}, "reseller_royalties[0].applicable_product_ids"),
], ids=["not on the hour", "a negative fraction", "no applicable products"])
def test_a_contract_with_a_bad_royalty_is_refused_naming_the_field(w, royalty, field):
    with pytest.raises(InvalidInput) as refused:
        _contract(w, reseller_royalties=[royalty])
    assert refused.value.field == field
    assert w.contracts.list(w.customer.id) == []
