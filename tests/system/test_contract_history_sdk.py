"""A live contract's history through metronome-sdk in strict mode on the local stack: archived parts
stay listed with archived_at, `client.v1.contracts.set_usage_filter` re-prices the draft and is one
history entry, and `client.v2.contracts.retrieve(as_of_date=...)` shows the contract as it was.
Each contract starts 3 days ago and bills monthly from its start; calls cost 10 cents.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import metronome
import pytest

from tests.system.conftest import API_KEY
from tests.system.usage_events import DAY, HOUR, current_hour, rfc3339, unique, usage_event

pytestmark = pytest.mark.system

CALL = 10  # cents


@pytest.fixture(scope="module")
def strict(local_stack):
    with metronome.Metronome(bearer_token=API_KEY, base_url=local_stack.base_url, max_retries=0,
                             _strict_response_validation=True) as client:
        yield client


@pytest.fixture(scope="module")
def card(strict):
    """(tag, calls product, goodwill product, rate card): calls grouped by region, at 10 cents."""
    tag = unique("history")
    metric = strict.v1.billable_metrics.create(
        name=f"{tag} calls", aggregation_type="COUNT", event_type_filter={"in_values": [tag]}, group_keys=[["region"]],
    ).data.id
    calls = strict.v1.contracts.products.create(name=f"{tag} calls", type="USAGE", billable_metric_id=metric).data.id
    goodwill = strict.v1.contracts.products.create(name=f"{tag} goodwill", type="FIXED").data.id
    card = strict.v1.contracts.rate_cards.create(name=f"{tag} card").data.id
    strict.v1.contracts.rate_cards.rates.add(rate_card_id=card, product_id=calls, entitled=True, rate_type="FLAT",
                                             price=CALL, starting_at=rfc3339(current_hour() - 10 * DAY))
    return tag, calls, goodwill, card


def _start() -> datetime:
    return current_hour() - 3 * DAY


def _contract(sdk, card, start: datetime | None = None, **more) -> tuple[str, str, datetime]:
    """(customer, contract id, start) of a new customer's contract from `start` (3 days ago)."""
    tag, _, _, rate_card = card
    customer_tag = unique(tag)
    customer = sdk.v1.customers.create(name=customer_tag, ingest_aliases=[customer_tag]).data.id
    start = start or _start()
    contract_id = sdk.v1.contracts.create(
        customer_id=customer, rate_card_id=rate_card, starting_at=rfc3339(start),
        usage_statement_schedule={"frequency": "MONTHLY", "day": "CONTRACT_START"}, **more,
    ).data.id
    return customer, contract_id, start


def _usage_total(sdk, customer: str) -> float:
    (draft,) = [i for i in sdk.v1.customers.invoices.list(customer_id=customer).data if i.type == "USAGE"]
    return draft.total


def test_archived_credit_and_charge_stay_listed_with_archived_at(strict, card):
    sdk = strict
    _, calls, goodwill, _ = card
    start = _start()
    customer, contract_id, _ = _contract(sdk, card, start, credits=[{
        "product_id": goodwill, "name": "Goodwill", "applicable_product_ids": [calls],
        "access_schedule": {"schedule_items": [{"amount": 1000, "starting_at": rfc3339(start),
                                                "ending_before": rfc3339(start + 30 * DAY)}]},
    }], scheduled_charges=[{"product_id": goodwill, "name": "Training", "schedule": {"schedule_items": [
        {"timestamp": rfc3339(start + 10 * DAY), "amount": 700}]}}])
    contract = sdk.v2.contracts.retrieve(customer_id=customer, contract_id=contract_id).data
    (credit,), (charge,) = contract.credits, contract.scheduled_charges

    edited = sdk.v2.contracts.edit(customer_id=customer, contract_id=contract_id, archive_credits=[{"id": credit.id}],
                                   archive_scheduled_charges=[{"id": charge.id}]).data
    (entry,) = sdk.v2.contracts.get_edit_history(customer_id=customer, contract_id=contract_id).data
    archived_at = entry.timestamp
    assert entry.id == edited.id

    v2 = sdk.v2.contracts.retrieve(customer_id=customer, contract_id=contract_id, include_balance=True,
                                   include_ledgers=True).data
    (shown,), (shown_charge,) = v2.credits, v2.scheduled_charges
    assert (shown.id, shown.archived_at, shown.balance) == (credit.id, archived_at, 0)
    # Nothing was finalized from it: granted at the start, all 1000 gone when archived.
    assert [(e.type, e.amount, e.timestamp) for e in shown.ledger] == [
        ("CREDIT_SEGMENT_START", 1000, start), ("CREDIT_EXPIRATION", -1000, archived_at)]
    assert (shown_charge.id, shown_charge.archived_at) == (charge.id, archived_at)
    v1 = sdk.v1.contracts.retrieve(customer_id=customer, contract_id=contract_id).data
    assert [(c.id, c.archived_at) for c in v1.current.scheduled_charges] == [(charge.id, archived_at)]
    assert [(c.id, c.model_extra["archived_at"]) for c in v1.current.credits] == [(credit.id, rfc3339_exact(archived_at))]
    (listed,) = sdk.v2.contracts.list(customer_id=customer).data
    assert [c.archived_at for c in listed.credits] == [archived_at]
    # customerBalances/list shows it with include_archived only.
    assert [b.id for b in sdk.v1.contracts.list_balances(customer_id=customer, include_archived=True).data] == [credit.id]
    assert sdk.v1.contracts.list_balances(customer_id=customer).data == []
    # Archived, the charge is billed nowhere: no SCHEDULED invoice.
    assert [i.type for i in sdk.v1.customers.invoices.list(customer_id=customer).data] == ["USAGE"]


def rfc3339_exact(instant: datetime) -> str:
    """How Tally writes an instant: microseconds only when not zero."""
    instant = instant.astimezone(timezone.utc)
    return instant.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if instant.microsecond else "%Y-%m-%dT%H:%M:%SZ")


def test_set_usage_filter_reprices_the_draft_and_is_one_history_entry(strict, card, settle):
    sdk = strict
    tag, calls, _, _ = card
    customer, contract_id, start = _contract(sdk, card, usage_filter={"group_key": "region", "group_values": ["eu"]})
    alias = sdk.v1.customers.retrieve(customer_id=customer).data.ingest_aliases[0]
    # Day 1: eu 3, us 4. Day 2: eu 1, us 2.
    sdk.v1.usage.ingest(usage=[
        *(usage_event(f"{alias}-a{n}", alias, tag, start + HOUR, region="eu") for n in range(3)),
        *(usage_event(f"{alias}-b{n}", alias, tag, start + HOUR, region="us") for n in range(4)),
        usage_event(f"{alias}-c", alias, tag, start + 2 * DAY, region="eu"),
        *(usage_event(f"{alias}-d{n}", alias, tag, start + 2 * DAY, region="us") for n in range(2)),
    ])
    settle()
    assert _usage_total(sdk, customer) == (3 + 1) * CALL  # eu only

    assert sdk.v1.contracts.set_usage_filter(
        customer_id=customer, contract_id=contract_id, group_key="region", group_values=["eu", "us"],
        starting_at=rfc3339(start + DAY)) is None
    # eu's 3 before the change, then eu and us: 3 + 1 + 2 = 6 calls.
    assert _usage_total(sdk, customer) == 6 * CALL

    with pytest.raises(metronome.BadRequestError) as refused:
        sdk.v1.contracts.set_usage_filter(customer_id=customer, contract_id=contract_id, group_key="region",
                                          group_values=["us"], starting_at=rfc3339(start + DAY + timedelta(minutes=30)))
    assert json.loads(refused.value.response.text)["field"] == "starting_at"

    (entry,) = sdk.v2.contracts.get_edit_history(customer_id=customer, contract_id=contract_id).data
    assert [(f.group_key, f.group_values, f.starting_at, f.ending_before) for f in entry.add_usage_filters] == [
        ("region", ["eu", "us"], start + DAY, None)]
    usage_filter = sdk.v1.contracts.retrieve(customer_id=customer, contract_id=contract_id).data.current.usage_filter
    assert [(u.group_values, u.starting_at) for u in usage_filter.updates] == [(["eu", "us"], start + DAY)]
    v2 = sdk.v2.contracts.retrieve(customer_id=customer, contract_id=contract_id).data
    assert [(f.group_values, f.starting_at) for f in v2.usage_filter] == [(["eu"], start), (["eu", "us"], start + DAY)]


def test_a_contract_as_of_a_date_is_the_one_its_edits_had_made_by_then(strict, card):
    sdk = strict
    customer, contract_id, start = _contract(sdk, card, name="First")
    created = sdk.v2.contracts.retrieve(customer_id=customer, contract_id=contract_id).data
    sdk.v2.contracts.edit(customer_id=customer, contract_id=contract_id, update_contract_name="Second")
    (entry,) = sdk.v2.contracts.get_edit_history(customer_id=customer, contract_id=contract_id).data

    def named_as_of(instant: datetime) -> str | None:
        return sdk.v2.contracts.retrieve(customer_id=customer, contract_id=contract_id,
                                         as_of_date=rfc3339_exact(instant)).data.name

    assert named_as_of(created.created_at) == "First"
    assert named_as_of(entry.timestamp - timedelta(microseconds=1)) == "First"
    assert named_as_of(entry.timestamp) == "Second"
    with pytest.raises(metronome.BadRequestError) as refused:
        named_as_of(created.created_at - timedelta(seconds=1))
    assert json.loads(refused.value.response.text)["field"] == "as_of_date"
    with pytest.raises(metronome.BadRequestError):  # Metronome: not with include_ledgers
        sdk.v2.contracts.retrieve(customer_id=customer, contract_id=contract_id, as_of_date=rfc3339(start),
                                  include_ledgers=True)
