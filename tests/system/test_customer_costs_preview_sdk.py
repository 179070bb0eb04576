"""Issue 18, customers, through Metronome's SDK in strict mode: previewEvents (replace and merge,
nothing stored), the costs list (per day, paged), and archiving, which ends the customer's contract
at the next hour while its invoice list stays readable.

A COUNT metric priced FLAT 10 cents a call; the contract starts 3 h ago, so the current period is
[start, start + 1 month) and 2 calls are stored at start + 10 min.
"""

from __future__ import annotations

import metronome
import pytest

from tests.system.usage_events import DAY, HOUR, current_hour, rfc3339, unique, usage_event

pytestmark = pytest.mark.system


def test_preview_costs_and_archive_ending_the_contract(sdk, settle):
    tag = unique("costs")
    start = current_hour() - 3 * HOUR
    metric = sdk.v1.billable_metrics.create(
        name=f"{tag} calls", aggregation_type="COUNT", event_type_filter={"in_values": [tag]}
    ).data.id
    calls = sdk.v1.contracts.products.create(name=f"{tag} API calls", type="USAGE", billable_metric_id=metric).data.id
    card = sdk.v1.contracts.rate_cards.create(name=f"{tag} card").data.id
    sdk.v1.contracts.rate_cards.rates.add(
        rate_card_id=card, product_id=calls, entitled=True, rate_type="FLAT", price=10, starting_at=rfc3339(start - DAY)
    )
    customer = sdk.v1.customers.create(name=tag, ingest_aliases=[tag]).data.id
    contract = sdk.v1.contracts.create(
        customer_id=customer, rate_card_id=card, starting_at=rfc3339(start),
        usage_statement_schedule={"frequency": "MONTHLY", "day": "CONTRACT_START"},
    ).data.id
    at = start + HOUR / 6
    sdk.v1.usage.ingest(usage=[usage_event(f"{tag}-{n}", tag, tag, at) for n in range(2)])
    settle()

    # previewEvents: 3 calls alone (30), or on top of the 2 stored (50); the stored draft stays 20.
    events = [{"event_type": tag, "timestamp": rfc3339(at), "properties": {}} for _ in range(3)]
    (alone,) = sdk.v1.customers.preview_events(customer_id=customer, events=events).data
    (merged,) = sdk.v1.customers.preview_events(customer_id=customer, events=events, mode="merge").data
    assert (alone.status, alone.total, merged.total) == ("DRAFT", 30, 50)
    assert [(line.product_id, line.quantity) for line in merged.line_items] == [(calls, 5)]
    (draft,) = sdk.v1.customers.invoices.list(customer_id=customer).data
    assert draft.total == 20
    with pytest.raises(metronome.BadRequestError) as refused:  # ingest's rule, named events[0]
        sdk.v1.customers.preview_events(customer_id=customer, events=[{"event_type": tag, "timestamp": "yesterday"}])
    assert "events[0].timestamp" in str(refused.value)

    # costs: one entry per day (a page of one day each), the 20 cents on the day of the calls.
    first_day = at.replace(hour=0, minute=0)
    days = list(sdk.v1.customers.list_costs(
        customer_id=customer, starting_on=first_day, ending_before=first_day + 2 * DAY, limit=1
    ))
    assert [d.start_timestamp for d in days] == [first_day, first_day + DAY]
    usd = next(iter(days[0].credit_types.values()))
    assert (usd.name, usd.cost) == ("USD (cents)", 20)
    assert [(line.name, line.cost) for line in usd.line_item_breakdown] == [(f"{tag} API calls", 20)]
    assert sum(t.cost for t in days[1].credit_types.values()) == 0

    # Archive: the contract ends at the next hour; the invoice list still reads, ending there.
    assert sdk.v1.customers.archive(id=customer).data.id == customer
    archived_at = sdk.v1.customers.retrieve(customer_id=customer).data.archived_at
    edge = archived_at.replace(minute=0, second=0, microsecond=0) + (HOUR if archived_at.minute or archived_at.second
                                                                      or archived_at.microsecond else 0 * HOUR)
    ended = sdk.v1.contracts.retrieve(customer_id=customer, contract_id=contract).data
    assert ended.current.ending_before == edge
    (still,) = sdk.v1.customers.invoices.list(customer_id=customer).data
    assert (still.id, still.total, still.end_timestamp) == (draft.id, 20, edge)
