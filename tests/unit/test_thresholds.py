"""Threshold billing and auto-recharge, the pure part: when a crossing is due, what it buys, and
the configurations the API accepts (tally.billing.thresholds, services/thresholds.merged,
api/threshold_models)."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest
from pydantic import ValidationError

from tally.api.threshold_models import (
    PrepaidBalanceThresholdConfigurationIn,
    SpendThresholdConfigurationIn,
    ThresholdBillingRelease,
    UpdatePrepaidBalanceThresholdConfigurationIn,
    UpdateSpendThresholdConfigurationIn,
)
from tally.billing.errors import InvalidInput
from tally.billing.pricing import USD_CENTS
from tally.billing.thresholds import (
    ChargeState,
    ChargeStatus,
    PaymentGate,
    ThresholdConfig,
    ThresholdKind,
    decide,
    recharge_window,
    validate_config,
    workflow_id,
)
from tally.services.thresholds import merged, sets_threshold

SPEND, PREPAID = ThresholdKind.SPEND, ThresholdKind.PREPAID_BALANCE
D = Decimal


def config(kind=SPEND, threshold="1000", recharge_to=None, fraction=None, enabled=True, revision="r1", commit=None,
           excluded=None) -> ThresholdConfig:
    doc = {
        "revision": revision,
        "is_enabled": enabled,
        "threshold_amount": D(threshold),
        "payment_gate_config": {"payment_gate_type": "NONE"},
        "commit": commit or {"product_id": "p"},
    }
    if recharge_to is not None:
        doc["recharge_to_amount"] = D(recharge_to)
    if fraction is not None:
        doc["discount_configuration"] = {"payment_fraction": D(fraction)}
    if excluded is not None:
        doc["threshold_balance_specifiers"] = [{"exclude": excluded}]
    return ThresholdConfig.of(kind, doc)


def charge(n, status=ChargeStatus.GRANTED, revision="r1") -> ChargeState:
    return ChargeState(n, status, revision)


# -- when a crossing is due -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "the_config, charges, value, expected",
    [
        pytest.param(config(), [], "999.99", None, id="spend just under the threshold: nothing"),
        pytest.param(config(), [], "1000", (1, "1000", "1000"), id="spend reaching the threshold: crossing 1 of the threshold"),
        pytest.param(config(), [], "2500", (1, "1000", "1000"), id="spend far past it: one threshold per crossing"),
        pytest.param(config(), [charge(1), charge(2)], "1000", (3, "1000", "1000"), id="spend: crossings go on counting"),
        pytest.param(config(fraction="0.855"), [], "1000", (1, "1000", "855.00"), id="spend with a discount: invoice the paid fraction"),
        pytest.param(config(fraction="0.3333"), [], "1000", (1, "1000", "333.30"), id="discounted invoice rounded once, in cents"),
        pytest.param(config(PREPAID, "500", "2000"), [], "500.01", None, id="balance above the threshold: nothing"),
        pytest.param(config(PREPAID, "500", "2000"), [], "500", (1, "1500", "1500"), id="balance down to the threshold: recharge to the amount"),
        pytest.param(config(PREPAID, "500", "2000"), [], "0", (1, "2000", "2000"), id="no balance at all: recharge all of it"),
        pytest.param(config(PREPAID, "500", "2000", "0.9"), [charge(4)], "120", (5, "1880", "1692.00"), id="recharge discounted, crossing 5"),
        pytest.param(config(enabled=False), [], "5000", None, id="a disabled configuration never crosses"),
        pytest.param(config(), [], None, None, id="no value (outside the contract): nothing"),
        pytest.param(config(), [charge(1, ChargeStatus.PENDING_PAYMENT)], "5000", None, id="a payment awaited blocks the next crossing"),
        pytest.param(config(), [charge(1, ChargeStatus.PAID)], "1000", (2, "1000", "1000"), id="once paid, the next crossing is decided"),
        pytest.param(config(), [charge(1, ChargeStatus.FAILED)], "5000", None, id="a failed payment turns its revision off"),
        pytest.param(config(revision="r2"), [charge(1, ChargeStatus.FAILED, "r1")], "1000", (2, "1000", "1000"),
                     id="an update after a failed payment turns it on again"),
    ],
)
def test_decide(the_config, charges, value, expected):
    crossing = decide(the_config, charges, None if value is None else D(value), USD_CENTS)
    if expected is None:
        assert crossing is None
    else:
        assert (crossing.number, crossing.access_amount, crossing.invoice_amount) == (expected[0], D(expected[1]), D(expected[2]))
        assert crossing.value == D(value)


def test_a_crossings_workflow_id_is_stable_and_names_contract_kind_and_number():
    ids = {workflow_id(c, k, n) for c in ("c1", "c2") for k in ThresholdKind for n in (1, 2)}
    assert len(ids) == 8
    assert workflow_id("c1", SPEND, 1) == workflow_id("c1", SPEND, 1)


@pytest.mark.parametrize(
    "duration, ending_before",
    [
        pytest.param(None, datetime(2027, 1, 31, 10, tzinfo=timezone.utc), id="no duration: one year"),
        pytest.param({"unit": "MONTHS", "value": 1}, datetime(2026, 2, 28, 10, tzinfo=timezone.utc), id="a month from Jan 31 ends Feb 28"),
        pytest.param({"unit": "WEEKS", "value": 2}, datetime(2026, 2, 14, 10, tzinfo=timezone.utc), id="two weeks"),
        pytest.param({"unit": "DAYS", "value": 30}, datetime(2026, 3, 2, 10, tzinfo=timezone.utc), id="thirty days"),
        pytest.param({"unit": "YEARS", "value": 2}, datetime(2028, 1, 31, 10, tzinfo=timezone.utc), id="two years"),
    ],
)
def test_a_recharge_lasts_its_duration_from_the_crossings_hour(duration, ending_before):
    hour = datetime(2026, 1, 31, 10, tzinfo=timezone.utc)
    commit = {"product_id": "p"} | ({"duration": duration} if duration else {})
    assert recharge_window(config(PREPAID, "5", "20", commit=commit), hour) == (hour, ending_before)


@pytest.mark.parametrize(
    "is_credit, custom_fields, excluded",
    [
        pytest.param(True, {"credit_type": "ai_trial"}, True, id="a credit tagged ai_trial is left out"),
        pytest.param(False, {"credit_type": "ai_trial"}, False, id="a commit tagged ai_trial is not: the filter names credits"),
        pytest.param(False, {"promo": "june", "active": "true"}, True, id="a commit with both promo fields is left out"),
        pytest.param(False, {"promo": "june"}, False, id="one of two fields is not enough (AND within a filter)"),
        pytest.param(True, {}, False, id="an untagged balance counts"),
    ],
)
def test_balances_left_out_of_an_auto_recharge(is_credit, custom_fields, excluded):
    the_config = config(PREPAID, "5", "20", excluded=[
        {"custom_field_filters": [{"entity": "ContractCredit", "key": "credit_type", "value": "ai_trial"}]},
        {"custom_field_filters": [{"entity": "ContractCreditOrCommit", "key": "promo", "value": "june"},
                                  {"entity": "Commit", "key": "active", "value": "true"}]},
    ])
    assert the_config.excludes(is_credit, custom_fields) is excluded


# -- configurations -------------------------------------------------------------------------------
SPEND_BODY = {
    "commit": {"product_id": "p", "name": "Early charge"},
    "is_enabled": True,
    "payment_gate_config": {"payment_gate_type": "NONE"},
    "threshold_amount": 1000,
}
PREPAID_BODY = SPEND_BODY | {"threshold_amount": 500, "recharge_to_amount": 2000}


def test_a_spend_configuration_is_stored_as_sent_with_a_revision():
    document = SpendThresholdConfigurationIn.model_validate(SPEND_BODY | {"discount_configuration": {"payment_fraction": 0.9}}).to_document("c")
    revision = document.pop("revision")
    assert revision and document == {
        "commit": {"product_id": "p", "name": "Early charge"},
        "is_enabled": True,
        "payment_gate_config": {"payment_gate_type": "NONE"},
        "threshold_amount": D(1000),
        "discount_configuration": {"payment_fraction": D("0.9")},
    }


@pytest.mark.parametrize(
    "model, body, field",
    [
        pytest.param(SpendThresholdConfigurationIn, SPEND_BODY | {"payment_gate_config": {
                         "payment_gate_type": "STRIPE", "stripe_config": {"payment_type": "PAYMENT_INTENT",
                                                                          "invoice_metadata": {"po": "1"}}}},
                     "c.payment_gate_config.stripe_config.invoice_metadata", id="invoice_metadata without INVOICE"),
        pytest.param(SpendThresholdConfigurationIn, SPEND_BODY | {"payment_gate_config": {"payment_gate_type": "EXTERNAL", "tax_type": "ANROK"}},
                     "c.payment_gate_config.tax_type", id="no tax provider"),
        pytest.param(SpendThresholdConfigurationIn, SPEND_BODY | {"threshold_amount": 0}, "c.threshold_amount", id="a zero threshold"),
        pytest.param(SpendThresholdConfigurationIn, SPEND_BODY | {"discount_configuration": {"payment_fraction": 1.5}},
                     "c.discount_configuration.payment_fraction", id="a payment fraction over 1"),
        pytest.param(SpendThresholdConfigurationIn, SPEND_BODY | {"discount_configuration": {"payment_fraction": 0.5, "cap": {"amount": 0, "spend_tracker_alias": "t"}}},
                     "c.discount_configuration.cap.amount", id="a discount cap of nothing"),
        pytest.param(PrepaidBalanceThresholdConfigurationIn, PREPAID_BODY | {"recharge_to_amount": 500},
                     "c.recharge_to_amount", id="recharging to the threshold itself"),
        pytest.param(PrepaidBalanceThresholdConfigurationIn, PREPAID_BODY | {"commit": {"product_id": "p", "duration": {"unit": "DAYS", "value": 0}}},
                     "c.commit.duration.value", id="a commit lasting no time"),
        pytest.param(PrepaidBalanceThresholdConfigurationIn, PREPAID_BODY | {"commit": {"product_id": "p", "applicable_product_ids": ["a"], "specifiers": [{"product_id": "a"}]}},
                     "c.commit.specifiers", id="specifiers with applicable products"),
    ],
)
def test_configurations_refused_name_their_field(model, body, field):
    with pytest.raises(InvalidInput) as refused:
        model.model_validate(body).to_document("c")
    assert refused.value.field == field


def test_a_recharge_to_amount_belongs_to_prepaid_balance_thresholds_only():
    with pytest.raises(ValidationError):
        SpendThresholdConfigurationIn.model_validate(SPEND_BODY | {"recharge_to_amount": 2000})
    with pytest.raises(InvalidInput) as refused:
        validate_config(SPEND, SPEND_BODY | {"recharge_to_amount": 2000}, "spend_threshold_configuration")
    assert refused.value.field == "spend_threshold_configuration.recharge_to_amount"


def test_an_update_merges_field_by_field_and_a_null_clears():
    stored = PrepaidBalanceThresholdConfigurationIn.model_validate(
        PREPAID_BODY | {"commit": {"product_id": "p", "priority": 5, "name": "Top-up"}, "discount_configuration": {"payment_fraction": 0.9}}
    ).to_document("c")
    update = UpdatePrepaidBalanceThresholdConfigurationIn.model_validate(
        {"threshold_amount": 600, "recharge_to_amount": 2700, "commit": {"priority": None}, "discount_configuration": None}
    ).to_update("u")
    after = merged(stored, update)
    assert (after["threshold_amount"], after["recharge_to_amount"]) == (D(600), D(2700))
    assert after["commit"] == {"product_id": "p", "name": "Top-up"}
    assert "discount_configuration" not in after and after["payment_gate_config"] == stored["payment_gate_config"]


@pytest.mark.parametrize(
    "body, field",
    [
        pytest.param({"threshold_amount": None}, "u.threshold_amount", id="a threshold cannot be cleared"),
        pytest.param({"commit": {"product_id": None}}, "u.commit.product_id", id="nor the commit's product"),
        pytest.param({}, "u", id="an update naming no change"),
        pytest.param({"payment_gate_config": {"payment_gate_type": "EXTERNAL", "stripe_config": {"payment_type": "INVOICE"}}},
                     "u.payment_gate_config.stripe_config", id="a stripe_config without the STRIPE gate"),
    ],
)
def test_updates_refused_name_their_field(body, field):
    with pytest.raises(InvalidInput) as refused:
        UpdateSpendThresholdConfigurationIn.model_validate(body).to_update("u")
    assert refused.value.field == field


def test_creates_and_edits_that_set_a_configuration_are_evaluated_at_once():
    assert sets_threshold({"spend_threshold_configuration": {}})
    assert sets_threshold({"update_prepaid_balance_threshold_configuration": {"is_enabled": True}})
    assert not sets_threshold({"add_commits": []})


@pytest.mark.parametrize(
    "body, outcome",
    [
        pytest.param({"workflow_id": "5576ba1f-4a33-b473-3f05-6162d87b4a33", "outcome": "PAID"}, "paid", id="PAID"),
        pytest.param({"workflow_id": "5576ba1f-4a33-b473-3f05-6162d87b4a33", "outcome": "failed"}, "failed", id="failed"),
    ],
)
def test_a_release_takes_either_case_of_outcome(body, outcome):
    assert ThresholdBillingRelease.model_validate(body).payment_outcome().value == outcome


def test_a_release_names_a_workflow_id_that_is_no_uuid():
    with pytest.raises(InvalidInput) as refused:
        ThresholdBillingRelease.model_validate({"workflow_id": "nope", "outcome": "paid"}).payment_outcome()
    assert refused.value.field == "workflow_id"


def test_payment_gates_parse():
    assert config().payment_gate is PaymentGate.NONE
