"""What contract and balance answers show beyond the stored documents: the invoice that bills each
commit invoice item, balances and ledgers from the one burn-down, every balance type in the net
balance. moto DynamoDB and the cycle close world (tests/service/test_cycle_close.py): a contract
from Oct 1 2026, billed monthly; API calls at 2 cents.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from tally.api.contract_models import ContractView, contract_json
from tally.billing.balances import BalanceFilter, GrantKind
from tally.billing.errors import InvalidInput
from tally.billing.pricing import USD_CENTS, InvoiceType
from tally.services.invoices import invoice_id
from tests.service.test_contracts_service import FakeCatalog, FakeUsage, _commit, _request
from tests.service.test_cycle_close import _world

UTC = timezone.utc
OCT, NOV, DEC, JAN = (datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC),
                      datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))
GRACE = timedelta(hours=24)
BARE = {"overrides": [], "subscriptions": [], "scheduled_charges": []}


@pytest.fixture()
def w(dynamo, clock):
    clock.now = datetime(2026, 11, 24, 12, tzinfo=UTC)
    usage = FakeUsage([])
    world = _world(dynamo, clock, FakeCatalog(), lambda customer: usage)
    world.usage = usage
    return world


def _segment(amount, start="2026-10-01T00:00:00Z", end="2027-01-01T00:00:00Z") -> dict:
    return {"schedule_items": [{"amount": amount, "starting_at": start, "ending_before": end}]}


def _scheduled(contract_id: str, at: datetime) -> str:
    return invoice_id(contract_id, at, USD_CENTS, InvoiceType.SCHEDULED)


def test_each_commit_invoice_item_links_the_scheduled_invoice_that_bills_it_once_that_invoice_exists(w):
    contract = w.contracts.create(_request(w.customer.id, **BARE, commits=[
        _commit(name="Prepaid", access_schedule=_segment(300), invoice_schedule={"schedule_items": [
            {"timestamp": "2026-10-01T00:00:00Z", "amount": 100}, {"timestamp": "2026-12-05T00:00:00Z", "amount": 100}]}),
        _commit(name="Postpaid", type="POSTPAID", access_schedule=_segment(1000),
                invoice_schedule={"schedule_items": [{"timestamp": "2027-01-01T00:00:00Z", "amount": 1000}]}),
    ]))
    prepaid, postpaid = w.contracts.get(w.customer.id, contract["id"])["commits"]
    october_item, december_item = (i["id"] for i in prepaid["invoice_schedule"])
    (true_up_item,) = (i["id"] for i in postpaid["invoice_schedule"])

    def links() -> dict:
        return w.balances.figures(w.customer.id, with_balances=False).invoice_ids

    def invoice_holding(commit_id: str):
        drafts, _ = w.invoices.list(w.customer.id)
        return [d for d in drafts if d.invoice.type is InvoiceType.SCHEDULED
                and any(line.commit_id == commit_id for line in d.invoice.line_items)]

    # Nov 24: October's purchase has its invoice; December's and the January true-up do not yet.
    october = _scheduled(contract["id"], OCT)
    assert links() == {october_item: october}
    assert [d.id for d in invoice_holding(prepaid["id"])] == [october]

    # Finalized, voided and regenerated: the link follows the invoice that bills the item now.
    w.service.finalize(w.customer.id, contract["id"], OCT, NOV)
    assert links() == {october_item: october}
    w.service.void(october)
    assert links() == {october_item: october}  # the voided invoice, until it is regenerated
    regenerated = w.service.regenerate(october)
    assert regenerated != october and links() == {october_item: regenerated}

    w.clock.now = datetime(2026, 12, 10, tzinfo=UTC)
    december = _scheduled(contract["id"], datetime(2026, 12, 5, tzinfo=UTC))
    assert links() == {october_item: regenerated, december_item: december}
    assert december in [d.id for d in invoice_holding(prepaid["id"])]

    w.clock.now = datetime(2027, 1, 2, tzinfo=UTC)
    true_up = _scheduled(contract["id"], JAN)
    assert links()[true_up_item] == true_up
    assert [d.id for d in invoice_holding(postpaid["id"])] == [true_up]

    # Shown as each schedule item's invoice_id in the contract's answer.
    document = w.contracts.get(w.customer.id, contract["id"])
    view = ContractView(w.clock.now, figures=w.balances.figures(w.customer.id, with_balances=False))
    body = contract_json(document, w.contracts.contract(document), w.contracts.products(), view)
    shown = {c["name"]: [i.get("invoice_id") for i in c["invoice_schedule"]["schedule_items"]] for c in body["current"]["commits"]}
    assert shown == {"Prepaid": [regenerated, december], "Postpaid": [true_up]}


def test_an_archived_contract_links_no_invoice(w):
    contract = w.contracts.create(_request(w.customer.id, **BARE, commits=[_commit(
        access_schedule=_segment(100), invoice_schedule={"schedule_items": [{"timestamp": "2026-10-01T00:00:00Z", "amount": 80}]})]))
    assert len(w.balances.figures(w.customer.id, with_balances=False).invoice_ids) == 1
    w.contracts.archive(w.customer.id, contract["id"])
    assert w.balances.figures(w.customer.id, with_balances=False).invoice_ids == {}


def test_balances_and_ledgers_in_a_contracts_answer_are_the_burn_downs(w):
    contract = w.contracts.create(_request(w.customer.id, **BARE, credits=[
        _commit(type=None, name="Credit", priority=1, access_schedule=_segment(100))]))
    w.usage.calls += [(datetime(2026, 11, 10, tzinfo=UTC), 30)]  # 60 cents: the credit pays them
    document = w.contracts.get(w.customer.id, contract["id"])
    figures = w.balances.figures(w.customer.id, with_balances=True)

    def credit(view: ContractView) -> dict:
        return contract_json(document, w.contracts.contract(document), w.contracts.products(), view)["current"]["credits"][0]

    shown = credit(ContractView(figures=figures, include_balance=True, include_ledgers=True))
    assert shown["balance"] == Decimal(40)
    assert [(e["type"], e["amount"]) for e in shown["ledger"]] == [
        ("CREDIT_SEGMENT_START", Decimal(100)), ("CREDIT_AUTOMATED_INVOICE_DEDUCTION", Decimal("-60.00"))]
    assert sum(e["amount"] for e in shown["ledger"]) == shown["balance"]
    only_balance = credit(ContractView(figures=figures, include_balance=True))
    assert (only_balance["balance"], "ledger" in only_balance) == (Decimal(40), False)
    plain = credit(ContractView(figures=w.balances.figures(w.customer.id, with_balances=False)))
    assert ("balance" in plain, "ledger" in plain) == (False, False)
    assert (plain["created_at"], plain["created_by"], plain["priority"]) == (document["created_at"], "api", Decimal(1))


def test_the_net_balance_covers_postpaid_commits_unless_filtered_out(w):
    w.contracts.create(_request(w.customer.id, **BARE, commits=[
        _commit(name="Prepaid", priority=2, access_schedule=_segment(200), custom_fields={"campaign": "launch"}),
        _commit(name="Postpaid", type="POSTPAID", priority=3, access_schedule=_segment(1000),
                invoice_schedule={"schedule_items": [{"timestamp": "2027-01-01T00:00:00Z", "amount": 1000}]}),
    ]))
    w.usage.calls += [(datetime(2026, 11, 10, tzinfo=UTC), 150)]  # 300 cents: prepaid 200, postpaid 100

    def net(*filters, drafts=True):
        return w.balances.net_balance(w.customer.id, USD_CENTS.id, include_drafts=drafts, filters=filters)

    assert net() == Decimal(900)  # 0 + 900
    assert net(drafts=False) == Decimal(1200)
    assert net(BalanceFilter(kinds=frozenset({GrantKind.PREPAID, GrantKind.CREDIT}))) == 0
    assert net(BalanceFilter(kinds=frozenset({GrantKind.POSTPAID}))) == Decimal(900)
    assert net(BalanceFilter(custom_fields={"campaign": "launch"}), drafts=False) == Decimal(200)
    assert net(BalanceFilter(ids=frozenset({"no-such-grant"}))) == 0


def test_per_group_amounts_must_add_up_to_the_entry_and_are_kept_with_it(w):
    contract = w.contracts.create(_request(w.customer.id, **BARE, credits=[
        _commit(type=None, name="Credit", priority=1, access_schedule=_segment(100))]))
    credit = w.contracts.get(w.customer.id, contract["id"])["credits"][0]
    segment = credit["access_schedule"][0]["id"]
    with pytest.raises(InvalidInput) as refused:
        w.balances.add_manual_entry(w.customer.id, credit["id"], segment, Decimal(30), "seats", OCT,
                                    None, {"seat-1": Decimal(10), "seat-2": Decimal(10)})
    assert refused.value.field == "per_group_amounts"
    w.balances.add_manual_entry(w.customer.id, credit["id"], segment, Decimal(30), "seats", OCT,
                                None, {"seat-1": Decimal(10), "seat-2": Decimal(20)})
    assert w.balances.net_balance(w.customer.id, USD_CENTS.id, include_drafts=True) == Decimal(130)
    (entry,) = w.balances._manual.list_for_customer(w.customer.id)
    assert entry["per_group_amounts"] == {"seat-1": Decimal(10), "seat-2": Decimal(20)}
