"""A parent and two child customers through metronome-sdk in strict mode on the local stack: the
parent's commit, shared with its children (hierarchy_configuration.child_access), pays for their
usage; v1 and v2 get show both sides of the hierarchy; an edit of the commit's child access
re-prices the drafts and is in the edit history. Totals are worked by hand in the comments."""

from __future__ import annotations

import json

import metronome
import pytest

from tests.system.conftest import API_KEY
from tests.system.usage_events import DAY, HOUR, current_hour, rfc3339, unique, usage_event

pytestmark = pytest.mark.system

CALL = 10  # cents


def test_children_draw_their_parents_commit(local_stack, settle):
    with metronome.Metronome(bearer_token=API_KEY, base_url=local_stack.base_url, max_retries=0,
                             _strict_response_validation=True) as sdk:
        tag = unique("hierarchy")
        start = current_hour() - 3 * DAY
        metric = sdk.v1.billable_metrics.create(
            name=f"{tag} calls", aggregation_type="COUNT", event_type_filter={"in_values": [tag]}
        ).data.id
        calls = sdk.v1.contracts.products.create(name=f"{tag} calls", type="USAGE", billable_metric_id=metric).data.id
        prepay = sdk.v1.contracts.products.create(name=f"{tag} prepay", type="FIXED").data.id
        card = sdk.v1.contracts.rate_cards.create(name=f"{tag} card").data.id
        sdk.v1.contracts.rate_cards.rates.add(rate_card_id=card, product_id=calls, entitled=True, rate_type="FLAT",
                                              price=CALL, starting_at=rfc3339(start - DAY))
        schedule = {"frequency": "MONTHLY", "day": "CONTRACT_START"}
        parent_customer = sdk.v1.customers.create(name=f"{tag} group", ingest_aliases=[f"{tag}-p"]).data.id
        parent = sdk.v1.contracts.create(
            customer_id=parent_customer, rate_card_id=card, starting_at=rfc3339(start), usage_statement_schedule=schedule,
            hierarchy_configuration={"parent_behavior": {"invoice_consolidation_type": "NONE"}},
            commits=[{"product_id": prepay, "type": "PREPAID", "hierarchy_configuration": {"child_access": {"type": "ALL"}},
                      "access_schedule": {"schedule_items": [
                          {"amount": 1000, "starting_at": rfc3339(start), "ending_before": rfc3339(start + 60 * DAY)}]}}],
        ).data.id
        kids, contracts = [], []
        for name in ("a", "b"):
            kid = sdk.v1.customers.create(name=f"{tag} {name}", ingest_aliases=[f"{tag}-{name}"]).data.id
            contracts.append(sdk.v1.contracts.create(
                customer_id=kid, rate_card_id=card, starting_at=rfc3339(start), usage_statement_schedule=schedule,
                hierarchy_configuration={"parent": {"contract_id": parent, "customer_id": parent_customer}},
            ).data.id)
            kids.append(kid)

        # Child a: 30 calls x 10 = 300; child b: 40 x 10 = 400; the commit pays both: 1000 - 700 = 300.
        sdk.v1.usage.ingest(usage=[usage_event(f"{tag}-a{n}", f"{tag}-a", tag, start + HOUR) for n in range(30)]
                            + [usage_event(f"{tag}-b{n}", f"{tag}-b", tag, start + HOUR) for n in range(40)])
        settle()

        def usage_totals() -> list:
            return [[i.total for i in sdk.v1.customers.invoices.list(customer_id=k).data if i.type == "USAGE"] for k in kids]

        assert usage_totals() == [[0], [0]]
        (commit,) = sdk.v2.contracts.retrieve(customer_id=parent_customer, contract_id=parent, include_balance=True).data.commits
        assert (commit.balance, commit.hierarchy_configuration.child_access.type) == (300, "ALL")

        v1 = sdk.v1.contracts.retrieve(customer_id=parent_customer, contract_id=parent).data.current.hierarchy_configuration
        assert [(c.contract_id, c.customer_id) for c in v1.children] == list(zip(contracts, kids))
        assert v1.parent_behavior.invoice_consolidation_type == "NONE"
        child = sdk.v2.contracts.retrieve(customer_id=kids[0], contract_id=contracts[0]).data.hierarchy_configuration
        assert (child.parent.contract_id, child.parent.customer_id, child.payer, child.usage_statement_behavior) == (
            parent, parent_customer, "SELF", "SEPARATE")

        # Only child a keeps access: b's 400 is billed to b, a still draws 300 (700 left).
        sdk.v2.contracts.edit_commit(customer_id=parent_customer, commit_id=commit.id, hierarchy_configuration={
            "child_access": {"type": "CONTRACT_IDS", "contract_ids": [contracts[0]]}})
        assert usage_totals() == [[0], [400]]
        (after,) = sdk.v2.contracts.retrieve(customer_id=parent_customer, contract_id=parent, include_balance=True).data.commits
        assert (after.balance, after.hierarchy_configuration.child_access.contract_ids) == (700, [contracts[0]])
        (entry,) = sdk.v2.contracts.get_edit_history(customer_id=parent_customer, contract_id=parent).data
        assert entry.update_commits[0].hierarchy_configuration.child_access.type == "CONTRACT_IDS"

        # A credit added for b alone pays 200 of b's 400 (draft 200); the history lists it with its access.
        sdk.v2.contracts.edit(customer_id=parent_customer, contract_id=parent, add_credits=[{
            "product_id": prepay, "hierarchy_configuration": {"child_access": {"type": "CONTRACT_IDS", "contract_ids": [contracts[1]]}},
            "access_schedule": {"schedule_items": [
                {"amount": 200, "starting_at": rfc3339(start), "ending_before": rfc3339(start + 60 * DAY)}]}}])
        assert usage_totals() == [[0], [200]]
        added = sdk.v2.contracts.get_edit_history(customer_id=parent_customer, contract_id=parent).data[-1].add_credits
        assert added[0].hierarchy_configuration.child_access.contract_ids == [contracts[1]]

        # A child cannot be a parent: one level only, refused naming the field.
        third = sdk.v1.customers.create(name=f"{tag} c", ingest_aliases=[f"{tag}-c"]).data.id
        with pytest.raises(metronome.BadRequestError) as refused:
            sdk.v1.contracts.create(customer_id=third, rate_card_id=card, starting_at=rfc3339(start),
                                    hierarchy_configuration={"parent": {"contract_id": contracts[0], "customer_id": kids[0]}})
        assert json.loads(refused.value.response.text)["field"] == "hierarchy_configuration.parent.contract_id"
