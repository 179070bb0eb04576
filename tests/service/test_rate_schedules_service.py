"""Rate schedules, commit-specific overrides and changing usage filters as use cases: moto DynamoDB,
the fake catalog and usage of the contracts tests (API calls at 2 cents until Nov 15, then 1 cent
for the first 100 of a period and 0.5 after), contracts created through the API's request model.
Totals worked by hand."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest

from tally.api.contract_models import contract_json
from tally.api.invoice_models import invoice_json
from tally.api.rate_schedule_models import contract_schedule_json
from tally.billing import exact_json
from tally.billing.errors import InvalidInput
from tally.services.catalog import ProductRecord
from tests.service.test_contracts_service import FakeUsage, _commit, _request
from tests.service.test_cycle_close import BARE, _world
from tests.service.test_contracts_service import FakeCatalog

UTC = timezone.utc
D = Decimal
NOV = datetime(2026, 11, 1, tzinfo=UTC)


def at(month: int, day: int, hour: int = 0) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=UTC)


@pytest.fixture()
def w(dynamo, clock):
    clock.now = at(11, 24, 12)
    usage = FakeUsage([])
    world = _world(dynamo, clock, FakeCatalog(), lambda customer: usage)
    world.usage = usage
    return world


def _schedule_json(w, contract_id: str, instant: datetime) -> list[dict]:
    contract, prices = w.contracts.rate_schedule(w.customer.id, contract_id, instant)
    products = w.contracts.products()
    return [
        contract_schedule_json(p, ProductRecord(products[p.product_id], at(1, 1)), contract.rate_card.id, instant)
        for p in prices
    ]


def _usage_lines(w, period_start: datetime) -> list[dict]:
    drafts, _ = w.invoices.list(w.customer.id, starting_on=period_start, limit=1)
    usage = next(d for d in drafts if d.invoice.type.value == "USAGE")
    return exact_json.loads(exact_json.dumps(invoice_json(usage, w.contracts.products())))["line_items"]


def _price(schedule_row: dict, quantity: Decimal) -> Decimal:
    """Price a quantity with a schedule row's effective rate, as a quote would: tier by tier from 0."""
    rate = schedule_row.get("override_rate") or schedule_row["list_rate"]
    if "price" in rate:
        return quantity * D(rate["price"])
    total, left = D(0), quantity
    for tier in rate["tiers"]:
        units = left if "size" not in tier else min(left, D(tier["size"]))
        total, left = total + units * D(tier["price"]), left - units
    return total


def test_the_rate_schedule_prices_usage_as_the_invoice_does(w):
    """Given a contract whose override halves API calls from Nov 20, when 150 calls land on Nov 21
    (the first of the period), then the schedule at Nov 22 quotes 100 × 0.5 + 50 × 0.25 = 62.50, the
    invoice line's total, and at Nov 10 it quotes the flat 2 cents that held until Nov 15."""
    created = w.contracts.create(_request(w.customer.id, **(BARE | {"overrides": [
        {"starting_at": "2026-11-20T00:00:00Z", "product_id": "p-calls", "type": "MULTIPLIER", "multiplier": 0.5}]})))
    w.usage.calls.append((at(11, 21), 150))

    late = [r for r in _schedule_json(w, created["id"], at(11, 22)) if r["product_id"] == "p-calls"]
    assert [(r["starting_at"], r.get("ending_before"), r["override_rate"]["tiers"]) for r in late] == [
        ("2026-11-20T00:00:00Z", None, [{"price": D("0.5"), "size": D(100)}, {"price": D("0.25")}]),
    ]
    [line] = [l for l in _usage_lines(w, NOV) if l["product_id"] == "p-calls"]
    assert (D(line["quantity"]), D(line["total"])) == (D(150), D("62.50"))
    assert _price(late[0], D(150)) == D(line["total"])

    early = [r for r in _schedule_json(w, created["id"], at(11, 10)) if r["product_id"] == "p-calls"]
    assert [(r["starting_at"], r["ending_before"], r["list_rate"]["price"], "override_rate" in r) for r in early] == [
        ("2026-10-01T00:00:00Z", "2026-11-15T00:00:00Z", D(2), False),
    ]


def test_a_commit_specific_override_prices_only_what_the_commit_pays(w):
    """Given a $1.00 prepaid commit (100 cents) named by its temporary id in a commit-specific
    override halving API calls, when 150 calls land in October at 2 cents (300 list), then the
    commit pays for 200 cents of list at 1 cent a call (100 cents, all of it), the other 100 stay on the
    invoice, and the rate schedule still shows the list price."""
    created = w.contracts.create(_request(w.customer.id, **(BARE | {
        "commits": [_commit(temporary_id="promo")],
        "overrides": [{
            "starting_at": "2026-10-01T00:00:00Z", "type": "MULTIPLIER", "multiplier": 0.5, "is_commit_specific": True,
            "override_specifiers": [{"product_id": "p-calls", "commit_ids": ["promo"]}],
        }],
    })))
    commit_id = created["commits"][0]["id"]
    assert created["overrides"][0]["override_specifiers"][0]["commit_ids"] == [commit_id]
    w.usage.calls.append((at(10, 10), 150))

    lines = _usage_lines(w, at(10, 1))
    calls = next(l for l in lines if l.get("product_id") == "p-calls")
    applied = [D(l["total"]) for l in lines if D(l["total"]) < 0]
    assert (D(calls["quantity"]), D(calls["total"]), applied) == (D(150), D("300.00"), [D("-200.00")])
    burn = w.balances.burn_down(w.customer.id)
    drawn = [(a.grant_id, a.amount, a.balance_consumed) for charges in burn.applications.values() for a in charges]
    assert drawn == [(commit_id, D("200.00"), D(100))]

    [row] = [r for r in _schedule_json(w, created["id"], at(10, 10)) if r["product_id"] == "p-calls"]
    assert "override_rate" not in row and row["list_rate"]["price"] == D(2)
    body = contract_json(w.contracts.get(w.customer.id, created["id"]), w.contracts.contract(created), w.contracts.products())
    assert (body["current"]["overrides"][0]["is_commit_specific"], body["current"]["overrides"][0]["target"]) == (True, "LIST_RATE")


@pytest.mark.parametrize(
    "override,field",
    [
        ({"is_commit_specific": True, "override_specifiers": [{"product_id": "p-calls", "commit_ids": ["nope"]}]},
         "overrides[0].override_specifiers[0].commit_ids[0]"),
        ({"override_specifiers": [{"product_id": "p-calls", "commit_ids": ["promo"]}]},
         "overrides[0].override_specifiers[0].commit_ids"),
        ({"product_id": "p-calls", "target": "COMMIT_RATE"}, "overrides[0].target"),
        ({"is_commit_specific": True, "override_specifiers": [{"product_id": "p-calls", "recurring_commit_ids": ["r"]}]},
         "overrides[0].override_specifiers[0].recurring_commit_ids[0]"),
    ],
    ids=["a commit the contract does not have", "commit ids on an override for everyone",
         "a COMMIT_RATE target on an override for everyone", "a recurring commit the contract does not have"],
)
def test_commit_specific_refusals_name_the_field_and_store_nothing(w, override, field):
    body = {"starting_at": "2026-10-01T00:00:00Z", "type": "MULTIPLIER", "multiplier": 0.5} | override
    with pytest.raises(InvalidInput) as raised:
        w.contracts.create(_request(w.customer.id, **(BARE | {"commits": [_commit(temporary_id="promo")], "overrides": [body]})))
    assert raised.value.field == field
    assert w.contracts.list(w.customer.id) == []


def test_a_usage_filter_starting_mid_contract_bills_all_usage_before_it(w):
    """Given a filter on region from Nov 10, the calls before it count whatever their region, and
    the v1 answer shows the filter as starting then (and current on Nov 24)."""
    created = w.contracts.create(_request(w.customer.id, **(BARE | {
        "usage_filter": {"group_key": "region", "group_values": ["eu"], "starting_at": "2026-11-10T00:00:00Z"}})))
    contract = w.contracts.contract(created)
    assert contract.usage_filter.starting_at == at(11, 10)
    body = contract_json(created, contract, w.contracts.products(), None)
    assert body["current"]["usage_filter"]["initial"] == {
        "group_key": "region", "group_values": ["eu"], "starting_at": "2026-11-10T00:00:00Z"}
    assert body["current"]["usage_filter"]["updates"] == []


def test_a_usage_filter_starting_after_the_contract_ends_is_refused(w):
    with pytest.raises(InvalidInput) as raised:
        w.contracts.create(_request(w.customer.id, **(BARE | {
            "ending_before": "2026-11-01T00:00:00Z",
            "usage_filter": {"group_key": "region", "group_values": ["eu"], "starting_at": "2026-12-01T00:00:00Z"}})))
    assert raised.value.field == "usage_filter.starting_at"
