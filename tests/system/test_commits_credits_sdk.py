"""Commits, credits, balances and the ledger through Metronome's official SDK, on the local stack.

Every figure is worked out by hand in the comments. Amounts are cents ("USD (cents)"), chosen
exact in binary because the SDK parses them as floats.
"""

from __future__ import annotations

import metronome
import pytest

from tests.system.usage_events import DAY, HOUR, current_hour, rfc3339, unique, usage_event

pytestmark = pytest.mark.system

MONTH = 31 * DAY


def _setup(sdk, tag: str, start):
    """API calls at 10 cents and storage writes at 5 cents, and a FIXED product to sell commits under."""
    ids = {}
    for name, price in (("api", 10), ("storage", 5)):
        metric = sdk.v1.billable_metrics.create(
            name=f"{tag} {name}", aggregation_type="COUNT", event_type_filter={"in_values": [f"{tag}-{name}"]}
        ).data.id
        ids[name] = sdk.v1.contracts.products.create(
            name=f"{tag} {name}", type="USAGE", billable_metric_id=metric, tags=[name]
        ).data.id
    ids["commit"] = sdk.v1.contracts.products.create(name=f"{tag} Commitment", type="FIXED").data.id
    ids["card"] = sdk.v1.contracts.rate_cards.create(name=f"{tag} card").data.id
    for name, price in (("api", 10), ("storage", 5)):
        sdk.v1.contracts.rate_cards.rates.add(
            rate_card_id=ids["card"], product_id=ids[name], entitled=True, rate_type="FLAT", price=price,
            starting_at=rfc3339(start - DAY),
        )
    return ids


def _segment(amount, start, end):
    return {"schedule_items": [{"amount": amount, "starting_at": rfc3339(start), "ending_before": rfc3339(end)}]}


def test_credits_and_commits_burn_down_in_order_and_every_balance_is_explained_by_its_ledger(sdk, settle):
    tag = unique("commits")
    start = current_hour() - 3 * HOUR
    ids = _setup(sdk, tag, start)
    customer = sdk.v1.customers.create(name=tag, ingest_aliases=[tag]).data.id
    end = start + MONTH

    contract_id = sdk.v1.contracts.create(
        customer_id=customer,
        rate_card_id=ids["card"],
        starting_at=rfc3339(start),
        usage_statement_schedule={"frequency": "MONTHLY", "day": "CONTRACT_START"},
        commits=[
            {   # 200 cents of any usage, bought for 160
                "product_id": ids["commit"], "type": "PREPAID", "priority": 2, "name": "Prepaid",
                "access_schedule": _segment(200, start, end),
                "invoice_schedule": {"schedule_items": [{"timestamp": rfc3339(start), "amount": 160}]},
            },
            {   # a promise to spend 1000, trued up at the end
                "product_id": ids["commit"], "type": "POSTPAID", "priority": 3, "name": "Postpaid",
                "access_schedule": _segment(1000, start, end),
                "invoice_schedule": {"schedule_items": [{"timestamp": rfc3339(end), "amount": 1000}]},
            },
        ],
    ).data.id
    # A new user's first step: grant $1 of free credit, for API calls only, at customer level.
    credit_id = sdk.v1.customers.credits.create(
        customer_id=customer, product_id=ids["commit"], priority=1, name="Welcome credit",
        access_schedule=_segment(100, start, end), applicable_product_ids=[ids["api"]],
    ).data.id

    def net_balance(mode="FINALIZED_AND_DRAFT"):
        return sdk.v1.contracts.get_net_balance(customer_id=customer, invoice_inclusion_mode=mode).data.balance

    # Every balance type: the credit (100), the prepaid commit (200) and what the postpaid commit covers (1000).
    assert net_balance() == 1300
    assert [c.id for c in sdk.v1.customers.credits.list(customer_id=customer).data] == [credit_id]
    assert sdk.v1.customers.commits.list(customer_id=customer).data == []  # both commits are the contract's
    listed = sdk.v1.customers.commits.list(customer_id=customer, include_contract_commits=True).data
    assert sorted(c.name for c in listed) == ["Postpaid", "Prepaid"]

    at = start + HOUR
    events = [usage_event(f"{tag}-a{n}", tag, f"{tag}-api", at) for n in range(15)]
    events += [usage_event(f"{tag}-s{n}", tag, f"{tag}-storage", at) for n in range(40)]
    sdk.v1.usage.ingest(usage=events)
    settle()

    # API calls 15 × 10 = 150; storage writes 40 × 5 = 200. In burn-down order:
    #   the credit (priority 1, API only) pays 100 of the API calls;
    #   the prepaid commit (priority 2) pays the other 50, then 150 of storage: it is spent;
    #   the postpaid commit (priority 3) takes the last 50 of storage, which stays on the invoice
    #   (postpaid usage is paid as billed; the commit only counts it toward the promise).
    usage_invoice, purchase = sdk.v1.customers.invoices.list(customer_id=customer).data
    applied = {
        line.commit_id: line.total for line in usage_invoice.line_items if line.type == "applied_commit_or_credit"
    }
    commits = {c.name: c.id for c in sdk.v1.contracts.retrieve(customer_id=customer, contract_id=contract_id).data.current.commits}
    assert applied == {credit_id: -100, commits["Prepaid"]: -200, commits["Postpaid"]: -50}
    assert (usage_invoice.subtotal, usage_invoice.total) == (350, 50)  # 350 - 100 - 200
    assert (purchase.type, [(l.type, l.total) for l in purchase.line_items]) == ("SCHEDULED", [("commit_purchase", 160)])

    balances = sdk.v1.contracts.list_balances(customer_id=customer, include_ledgers=True, include_balance=True).data
    by_id = {b.id: b for b in balances}
    assert {i: b.balance for i, b in by_id.items()} == {credit_id: 0, commits["Prepaid"]: 0, commits["Postpaid"]: 950}
    for balance in balances:  # every balance is the sum of its ledger
        assert sum(entry.amount for entry in balance.ledger) == balance.balance
    assert [(e.type, e.amount) for e in by_id[credit_id].ledger] == [
        ("CREDIT_SEGMENT_START", 100), ("CREDIT_AUTOMATED_INVOICE_DEDUCTION", -100)]
    assert [(e.type, e.amount) for e in by_id[commits["Postpaid"]].ledger] == [
        ("POSTPAID_COMMIT_INITIAL_BALANCE", 1000), ("POSTPAID_COMMIT_AUTOMATED_INVOICE_DEDUCTION", -50)]
    # Only the postpaid commit's 950 is left; drafts are pending until finalized.
    assert net_balance() == 950 and net_balance("FINALIZED") == 1300

    # A manual top-up of 25 on the credit moves 25 of API calls off the prepaid commit, which then
    # covers 25 more storage, so the postpaid commit takes 25 instead of 50. Total 350 - 125 - 200 = 25.
    credit_segment = by_id[credit_id].access_schedule.schedule_items[0].id
    sdk.v1.contracts.add_manual_balance_entry(
        id=credit_id, customer_id=customer, segment_id=credit_segment, amount=25, reason="goodwill",
        timestamp=rfc3339(start),
    )
    usage_invoice = sdk.v1.customers.invoices.list(customer_id=customer).data[0]
    assert usage_invoice.total == 25
    ledger = next(b for b in sdk.v1.contracts.list_balances(customer_id=customer, include_ledgers=True).data if b.id == credit_id).ledger
    assert [(e.type, e.amount) for e in ledger] == [
        ("CREDIT_SEGMENT_START", 100), ("CREDIT_MANUAL", 25), ("CREDIT_AUTOMATED_INVOICE_DEDUCTION", -125)]

    # Taking 500 off the spent prepaid commit would overdraw it: refused, nothing stored.
    prepaid_segment = by_id[commits["Prepaid"]].access_schedule.schedule_items[0].id
    with pytest.raises(metronome.BadRequestError) as raised:
        sdk.v1.contracts.add_manual_balance_entry(
            id=commits["Prepaid"], customer_id=customer, segment_id=prepaid_segment, amount=-500, reason="oops",
            timestamp=rfc3339(start),
        )
    assert raised.value.body["field"] == "amount"
    assert sdk.v1.customers.invoices.list(customer_id=customer).data[0].total == 25


@pytest.mark.parametrize(
    "commit,field",
    [
        ({"type": "POSTPAID", "invoice_schedule": {"schedule_items": [{"timestamp": "{end}", "amount": 90}]}},
         "commits[0].invoice_schedule.schedule_items[0].amount"),
        ({"type": "PREPAID", "rollover_fraction": 2}, "commits[0].rollover_fraction"),
        ({"type": "PREPAID", "applicable_product_ids": ["no-such-product"]}, "commits[0].applicable_product_ids[0]"),
    ],
    ids=["a postpaid invoice unlike its access amount", "a rollover fraction above one", "an unknown product"],
)
def test_bad_commits_are_refused_naming_the_field(sdk, commit, field):
    tag = unique("badcommit")
    start = current_hour()
    ids = _setup(sdk, tag, start)
    customer = sdk.v1.customers.create(name=tag).data.id
    body = {"product_id": ids["commit"], "access_schedule": _segment(100, start, start + MONTH)} | commit
    if "invoice_schedule" in body:
        body["invoice_schedule"]["schedule_items"][0]["timestamp"] = rfc3339(start + MONTH)
    with pytest.raises(metronome.BadRequestError) as raised:
        sdk.v1.contracts.create(customer_id=customer, rate_card_id=ids["card"], starting_at=rfc3339(start), commits=[body])
    assert raised.value.body["field"] == field
    assert sdk.v1.contracts.list(customer_id=customer).data == []
