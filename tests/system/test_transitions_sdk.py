"""A contract renewed through `client.v1.contracts.create(transition=...)`, with metronome-sdk in
strict mode on the local stack: the old contract now ends where the renewal starts, both show the
transition in v1 and v2 get, each bills the usage of its own stretch, and the old contract's edit
history holds the new end. Totals are worked by hand in the comments."""

from __future__ import annotations

import metronome
import pytest

from tests.system.conftest import API_KEY
from tests.system.usage_events import DAY, HOUR, current_hour, rfc3339, unique, usage_event

pytestmark = pytest.mark.system

CALL = 10  # cents


def test_a_renewal_takes_over_where_the_old_contract_now_ends(local_stack, settle):
    with metronome.Metronome(bearer_token=API_KEY, base_url=local_stack.base_url, max_retries=0,
                             _strict_response_validation=True) as sdk:
        tag = unique("renewal")
        start = current_hour() - 10 * DAY
        renewal_start = start + 5 * DAY
        metric = sdk.v1.billable_metrics.create(
            name=f"{tag} calls", aggregation_type="COUNT", event_type_filter={"in_values": [tag]}
        ).data.id
        calls = sdk.v1.contracts.products.create(name=f"{tag} calls", type="USAGE", billable_metric_id=metric).data.id
        card = sdk.v1.contracts.rate_cards.create(name=f"{tag} card").data.id
        sdk.v1.contracts.rate_cards.rates.add(rate_card_id=card, product_id=calls, entitled=True, rate_type="FLAT",
                                              price=CALL, starting_at=rfc3339(start - DAY))
        customer = sdk.v1.customers.create(name=tag, ingest_aliases=[tag]).data.id
        schedule = {"frequency": "MONTHLY", "day": "CONTRACT_START"}
        old = sdk.v1.contracts.create(customer_id=customer, rate_card_id=card, starting_at=rfc3339(start),
                                      usage_statement_schedule=schedule).data.id
        new = sdk.v1.contracts.create(
            customer_id=customer, rate_card_id=card, starting_at=rfc3339(renewal_start), usage_statement_schedule=schedule,
            transition={"from_contract_id": old, "type": "RENEWAL", "future_invoice_behavior": {"trueup": "AS_IS"}},
        ).data.id

        link = (old, new, "RENEWAL")
        for contract_id in (old, new):
            v1 = sdk.v1.contracts.retrieve(customer_id=customer, contract_id=contract_id).data
            v2 = sdk.v2.contracts.retrieve(customer_id=customer, contract_id=contract_id).data
            assert [(t.from_contract_id, t.to_contract_id, t.type) for t in v1.current.transitions] == [link]
            assert [(t.from_contract_id, t.to_contract_id, t.type) for t in v2.transitions] == [link]
        assert sdk.v2.contracts.retrieve(customer_id=customer, contract_id=old).data.ending_before == renewal_start
        (entry,) = sdk.v2.contracts.get_edit_history(customer_id=customer, contract_id=old).data
        assert entry.update_contract_end_date == renewal_start

        # 3 calls before the renewal (the old contract's: 3 x 10 = 30), 4 after it (the renewal's: 40).
        sdk.v1.usage.ingest(usage=[usage_event(f"{tag}-a{n}", tag, tag, start + HOUR) for n in range(3)]
                            + [usage_event(f"{tag}-b{n}", tag, tag, renewal_start + HOUR) for n in range(4)])
        settle()
        drafts = sdk.v1.customers.invoices.list(customer_id=customer).data
        assert sorted((i.contract_id == new, i.type, i.start_timestamp, i.total) for i in drafts) == [
            (False, "USAGE", start, 30), (True, "USAGE", renewal_start, 40)]
        assert [i.end_timestamp for i in drafts if i.contract_id == old] == [renewal_start]

        # The old contract's one period, migrated: 7 calls from the system it came from (7 x 10 = 70)
        # are stored FINALIZED in place of the 30 Tally metered, and a retry changes nothing.
        fiat = [i for i in drafts if i.contract_id == old][0].credit_type.id
        migrated = {"customer_id": customer, "contract_id": old, "credit_type_id": fiat,
                    "inclusive_start_date": rfc3339(start), "exclusive_end_date": rfc3339(renewal_start),
                    "issue_date": rfc3339(renewal_start),
                    "usage_line_items": [{"product_id": calls, "inclusive_start_date": rfc3339(start),
                                          "exclusive_end_date": rfc3339(renewal_start), "quantity": 7}]}
        (created,) = sdk.v1.contracts.create_historical_invoices(invoices=[migrated], preview=False).data
        assert (created.status, created.total, created.start_timestamp, created.end_timestamp) == (
            "FINALIZED", 70, start, renewal_start)
        (again,) = sdk.v1.contracts.create_historical_invoices(invoices=[migrated], preview=False).data
        assert again.id == created.id
        assert sorted((i.contract_id == new, i.status, i.total) for i in sdk.v1.customers.invoices.list(customer_id=customer).data) == [
            (False, "FINALIZED", 70), (True, "DRAFT", 40)]

        # The same renewal again is refused: a contract is transitioned from once.
        with pytest.raises(metronome.BadRequestError) as refused:
            sdk.v1.contracts.create(customer_id=customer, rate_card_id=card, starting_at=rfc3339(renewal_start),
                                    transition={"from_contract_id": old, "type": "RENEWAL"})
        assert "transition.from_contract_id" in str(refused.value)

