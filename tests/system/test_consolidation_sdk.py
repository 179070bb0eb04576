"""A consolidated invoice through metronome-sdk in strict mode on the local stack: a parent with
parent_behavior CONCATENATE, two children with payer PARENT and usage_statement_behavior
CONSOLIDATE. The parent's USAGE_CONSOLIDATED draft lists its own and its children's lines with
their origin, links the three invoices, and is billed to the parent; the children's invoices stay
readable, name the parent as payer and are unbillable. Totals are worked by hand in the comments."""

from __future__ import annotations

import metronome
import pytest

from tests.system.conftest import API_KEY
from tests.system.usage_events import DAY, HOUR, current_hour, rfc3339, unique, usage_event

pytestmark = pytest.mark.system

CALL = 10  # cents


def test_a_parent_sees_its_childrens_usage_on_its_consolidated_invoice(local_stack, settle):
    with metronome.Metronome(bearer_token=API_KEY, base_url=local_stack.base_url, max_retries=0,
                             _strict_response_validation=True) as sdk:
        tag = unique("consolidated")
        start = current_hour() - 3 * DAY
        metric = sdk.v1.billable_metrics.create(
            name=f"{tag} calls", aggregation_type="COUNT", event_type_filter={"in_values": [tag]}
        ).data.id
        calls = sdk.v1.contracts.products.create(name=f"{tag} calls", type="USAGE", billable_metric_id=metric).data.id
        card = sdk.v1.contracts.rate_cards.create(name=f"{tag} card").data.id
        sdk.v1.contracts.rate_cards.rates.add(rate_card_id=card, product_id=calls, entitled=True, rate_type="FLAT",
                                              price=CALL, starting_at=rfc3339(start - DAY))
        schedule = {"frequency": "MONTHLY", "day": "CONTRACT_START"}
        parent_customer = sdk.v1.customers.create(name=f"{tag} group", ingest_aliases=[f"{tag}-p"]).data.id
        parent = sdk.v1.contracts.create(
            customer_id=parent_customer, rate_card_id=card, starting_at=rfc3339(start), usage_statement_schedule=schedule,
            hierarchy_configuration={"parent_behavior": {"invoice_consolidation_type": "CONCATENATE"}},
        ).data.id
        kids, contracts = [], []
        for name in ("a", "b"):
            kid = sdk.v1.customers.create(name=f"{tag} {name}", ingest_aliases=[f"{tag}-{name}"]).data.id
            contracts.append(sdk.v1.contracts.create(
                customer_id=kid, rate_card_id=card, starting_at=rfc3339(start), usage_statement_schedule=schedule,
                hierarchy_configuration={"parent": {"contract_id": parent, "customer_id": parent_customer},
                                         "payer": "PARENT", "usage_statement_behavior": "CONSOLIDATE"},
            ).data.id)
            kids.append(kid)

        # The parent 5 calls x 10 = 50, child a 30 x 10 = 300, child b 40 x 10 = 400: 750 consolidated.
        sdk.v1.usage.ingest(usage=[usage_event(f"{tag}-p{n}", f"{tag}-p", tag, start + HOUR) for n in range(5)]
                            + [usage_event(f"{tag}-a{n}", f"{tag}-a", tag, start + HOUR) for n in range(30)]
                            + [usage_event(f"{tag}-b{n}", f"{tag}-b", tag, start + HOUR) for n in range(40)])
        settle()

        listed = sdk.v1.customers.invoices.list(customer_id=parent_customer).data
        (own,) = [i for i in listed if i.type == "USAGE"]
        (consolidated,) = [i for i in listed if i.type == "USAGE_CONSOLIDATED"]
        (usage_a,), (usage_b,) = ([i for i in sdk.v1.customers.invoices.list(customer_id=k).data if i.type == "USAGE"]
                                  for k in kids)
        assert [own.total, usage_a.total, usage_b.total, consolidated.total] == [50, 300, 400, 750]
        assert (consolidated.status, consolidated.billable_status) == ("DRAFT", "billable")
        assert (consolidated.payer.contract_id, consolidated.payer.customer_id) == (parent, parent_customer)
        assert [(c.contract_id, c.customer_id, c.invoice_id) for c in consolidated.constituent_invoices] == [
            (parent, parent_customer, own.id), (contracts[0], kids[0], usage_a.id), (contracts[1], kids[1], usage_b.id)]
        billed = [(line.origin.customer_id, line.origin.invoice_id, line.total) for line in consolidated.line_items if line.total]
        assert billed == [(parent_customer, own.id, 50), (kids[0], usage_a.id, 300), (kids[1], usage_b.id, 400)]
        again = sdk.v1.customers.invoices.retrieve(customer_id=parent_customer, invoice_id=consolidated.id).data
        assert again.total == 750 and again.type == "USAGE_CONSOLIDATED"

        # The constituents: readable on their customers, paid by the parent, not billed on their own.
        assert (usage_a.payer.customer_id, usage_a.billable_status, own.billable_status) == (
            parent_customer, "unbillable", "unbillable")
        child = sdk.v2.contracts.retrieve(customer_id=kids[0], contract_id=contracts[0]).data.hierarchy_configuration
        assert (child.payer, child.usage_statement_behavior) == ("PARENT", "CONSOLIDATE")
        v1 = sdk.v1.contracts.retrieve(customer_id=parent_customer, contract_id=parent).data.current.hierarchy_configuration
        assert v1.parent_behavior.invoice_consolidation_type == "CONCATENATE"
