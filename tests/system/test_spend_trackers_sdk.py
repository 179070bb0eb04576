"""Spend trackers, a capped threshold discount and reseller royalties through metronome-sdk in
strict mode on the local stack, as a billing team drives them: create, usage, get (v1 and v2),
edit, history. Calls cost 10 cents; amounts are cents, exact in binary since the SDK parses floats.
"""

from __future__ import annotations

import metronome
import pytest

from tests.system.conftest import API_KEY
from tests.system.usage_events import DAY, current_hour, rfc3339, unique, usage_event

pytestmark = pytest.mark.system

USD = "2714e483-4ff1-48e4-9e25-ac732e8f24f2"


def _tracker(alias: str, sources: list[str]) -> dict:
    return {"alias": alias, "credit_type_id": USD, "reset_frequency": "BILLING_PERIOD",
            "applicable_spend_specifiers": [{"sources": sources, "spend_type": "COMMIT_PURCHASE"}]}


def test_a_capped_discount_measured_by_a_spend_tracker_and_reseller_royalties(local_stack, settle):
    tag = unique("trackers")
    now = current_hour()
    month = now.replace(day=1, hour=0)
    with metronome.Metronome(bearer_token=API_KEY, base_url=local_stack.base_url, max_retries=0,
                             _strict_response_validation=True) as sdk:
        metric = sdk.v1.billable_metrics.create(
            name=f"{tag} calls", aggregation_type="COUNT", event_type_filter={"in_values": [tag]}).data.id
        calls = sdk.v1.contracts.products.create(name=f"{tag} calls", type="USAGE", billable_metric_id=metric).data.id
        fixed = sdk.v1.contracts.products.create(name=f"{tag} prepaid", type="FIXED").data.id
        card = sdk.v1.contracts.rate_cards.create(name=f"{tag} card").data.id
        sdk.v1.contracts.rate_cards.rates.add(rate_card_id=card, product_id=calls, entitled=True, rate_type="FLAT",
                                              price=10, starting_at=rfc3339(month - DAY))
        customer = sdk.v1.customers.create(name=tag, ingest_aliases=[tag]).data.id
        contract_id = sdk.v1.contracts.create(
            customer_id=customer, rate_card_id=card, starting_at=rfc3339(month),
            spend_trackers=[_tracker("recharges", ["THRESHOLD_RECHARGE"])],
            spend_threshold_configuration={
                "commit": {"product_id": fixed, "name": "Early charge"}, "is_enabled": True,
                "payment_gate_config": {"payment_gate_type": "NONE"}, "threshold_amount": 1000,
                "discount_configuration": {"payment_fraction": 0.5, "cap": {"amount": 500, "spend_tracker_alias": "recharges"}},
            },
            reseller_royalties=[{"reseller_type": "AWS", "fraction": 0.25, "netsuite_reseller_id": "ns-aws",
                                 "starting_at": rfc3339(month), "applicable_product_ids": [calls],
                                 "aws_options": {"aws_account_number": "123456789012"}}],
        ).data.id

        sdk.v1.usage.ingest(usage=[usage_event(f"{tag}-{n}", tag, tag, now) for n in range(100)])  # 1000
        settle()
        sdk.v1.usage.ingest(usage=[usage_event(f"{tag}-{n}", tag, tag, now) for n in range(100, 200)])  # 2000
        settle()
        # First crossing: nothing tracked yet, 1000 for 500. Second: 500 tracked, the cap is
        # reached, 1000 for 1000. The 2000 of usage is paid by the two commits.
        invoices = sdk.v1.customers.invoices.list(customer_id=customer)
        purchases = sorted(line.total for i in invoices if i.type == "SCHEDULED" for line in i.line_items)
        assert purchases == [500, 1000]
        assert [i.total for i in invoices if i.type == "USAGE"] == [0]

        v1 = sdk.v1.contracts.retrieve(customer_id=customer, contract_id=contract_id).data
        (tracker,) = v1.spend_trackers
        assert (tracker.alias, tracker.accumulated_spend.amount) == ("recharges", 1500)
        assert tracker.accumulated_spend.period_starting_at.isoformat().startswith(month.date().isoformat())
        (royalty,) = v1.current.reseller_royalties
        assert (royalty.reseller_type, royalty.fraction, royalty.aws_account_number) == ("AWS", 0.25, "123456789012")
        assert v1.spend_threshold_configuration.discount_configuration.cap.amount == 500

        # An edit: a second tracker, and the AWS royalty's fraction from tomorrow's hour.
        tomorrow = now + DAY
        sdk.v2.contracts.edit(
            customer_id=customer, contract_id=contract_id, add_spend_trackers=[_tracker("manual", ["MANUAL"])],
            add_reseller_royalties=[{"reseller_type": "AWS", "fraction": 0.3, "starting_at": rfc3339(tomorrow)}],
        )
        v2 = sdk.v2.contracts.retrieve(customer_id=customer, contract_id=contract_id).data
        assert [(t.alias, t.accumulated_spend.amount) for t in v2.spend_trackers] == [("recharges", 1500), ("manual", 0)]
        (aws,) = v2.reseller_royalties
        assert [(s.fraction, s.ending_before) for s in aws.segments] == [(0.25, tomorrow), (0.3, None)]
        (entry,) = sdk.v2.contracts.get_edit_history(customer_id=customer, contract_id=contract_id).data
        assert [(r.reseller_type, r.fraction) for r in entry.add_reseller_royalties] == [("AWS", 0.3)]

        with pytest.raises(metronome.BadRequestError) as refused:
            sdk.v2.contracts.edit(customer_id=customer, contract_id=contract_id, archive_spend_trackers=["recharges"])
        assert "archive_spend_trackers[0]" in str(refused.value)
