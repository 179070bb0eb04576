"""Contract and balance responses the SDK can trust: metronome-sdk with strict response validation
(every field of its `types/` checked as it parses) on v1 and v2 contract get and list and on
customerBalances/list, balances and ledgers that agree with the balance routes, and a regenerated
invoice announced on the invoices topic at once.

Every figure is worked out by hand in the comments. Amounts are cents ("USD (cents)"), exact in
binary because the SDK parses them as floats.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import boto3
import pytest
from metronome import Metronome

from tests.system.conftest import API_KEY
from tests.system.usage_events import DAY, HOUR, current_hour, rfc3339, unique, usage_event

pytestmark = pytest.mark.system

MONTH = 31 * DAY


@pytest.fixture(scope="module")
def strict(local_stack):
    with Metronome(
        bearer_token=API_KEY, base_url=local_stack.base_url, _strict_response_validation=True, max_retries=0
    ) as client:
        yield client


def _segment(amount, start, end):
    return {"schedule_items": [{"amount": amount, "starting_at": rfc3339(start), "ending_before": rfc3339(end)}]}


def _months_after(instant: datetime, months: int) -> datetime:
    month = instant.month - 1 + months
    return instant.replace(year=instant.year + month // 12, month=month % 12 + 1)


@pytest.fixture(scope="module")
def deal(strict, local_stack):
    """A customer with one contract holding every part the SDK shows: a prepaid commit with an
    invoice schedule, a postpaid commit, a credit, a subscription, a scheduled charge and an
    override; and 15 API calls at 10 cents."""
    tag = unique("responses")
    start = current_hour() - 3 * HOUR
    if start.day > 28:  # keep "start + n months" on the same day of the month
        start -= (start.day - 28) * DAY
    metric = strict.v1.billable_metrics.create(
        name=f"{tag} api", aggregation_type="COUNT", event_type_filter={"in_values": [f"{tag}-api"]}
    ).data.id
    ids = {
        "api": strict.v1.contracts.products.create(
            name=f"{tag} API calls", type="USAGE", billable_metric_id=metric, tags=["api"]
        ).data.id,
        "seats": strict.v1.contracts.products.create(name=f"{tag} Seats", type="SUBSCRIPTION").data.id,
        "commitment": strict.v1.contracts.products.create(name=f"{tag} Commitment", type="FIXED").data.id,
        "onboarding": strict.v1.contracts.products.create(name=f"{tag} Onboarding", type="FIXED").data.id,
    }
    card = strict.v1.contracts.rate_cards.create(name=f"{tag} card").data.id
    strict.v1.contracts.rate_cards.rates.add(
        rate_card_id=card, product_id=ids["api"], entitled=True, rate_type="FLAT", price=10,
        starting_at=rfc3339(start - DAY),
    )
    strict.v1.contracts.rate_cards.rates.add(
        rate_card_id=card, product_id=ids["seats"], entitled=True, rate_type="SUBSCRIPTION", price=2500,
        billing_frequency="MONTHLY", starting_at=rfc3339(start - DAY),
    )
    customer = strict.v1.customers.create(name=tag, ingest_aliases=[tag]).data.id
    end = start + MONTH
    api_only = {"applicable_product_ids": [ids["api"]]}
    contract_id = strict.v1.contracts.create(
        customer_id=customer,
        rate_card_id=card,
        starting_at=rfc3339(start),
        name=f"{tag} contract",
        total_contract_value=98765,
        usage_statement_schedule={"frequency": "MONTHLY", "day": "CONTRACT_START"},
        commits=[
            {   # 200 cents of API calls, bought for 160 on the day the contract starts
                "product_id": ids["commitment"], "type": "PREPAID", "priority": 2, "name": "Prepaid",
                "description": "Annual prepaid commit", "custom_fields": {"campaign": "launch"},
                "access_schedule": _segment(200, start, end),
                "invoice_schedule": {"schedule_items": [{"timestamp": rfc3339(start), "amount": 160}]},
            } | api_only,
            {   # a promise to spend 1000, trued up at the end
                "product_id": ids["commitment"], "type": "POSTPAID", "priority": 3, "name": "Postpaid",
                "access_schedule": _segment(1000, start, end),
                "invoice_schedule": {"schedule_items": [{"timestamp": rfc3339(end), "amount": 1000}]},
            } | api_only,
        ],
        credits=[
            {
                "product_id": ids["commitment"], "priority": 1, "name": "Welcome credit",
                "description": "One dollar to start", "access_schedule": _segment(100, start, end),
            } | api_only,
        ],
        subscriptions=[{
            "collection_schedule": "ADVANCE",
            "initial_quantity": 2,
            "proration": {"invoice_behavior": "BILL_IMMEDIATELY", "is_prorated": True},
            "subscription_rate": {"product_id": ids["seats"], "billing_frequency": "MONTHLY"},
        }],
        scheduled_charges=[{
            "product_id": ids["onboarding"], "name": "Onboarding",
            "schedule": {"schedule_items": [{"timestamp": rfc3339(start + HOUR), "amount": 700}]},
        }],
        overrides=[{
            "product_id": ids["api"], "type": "MULTIPLIER", "multiplier": 0.5, "starting_at": rfc3339(start + 10 * DAY),
        }],
    ).data.id
    strict.v1.usage.ingest(usage=[usage_event(f"{tag}-{n}", tag, f"{tag}-api", start + HOUR) for n in range(15)])
    local_stack.pump.drain()
    # 15 calls × 10 = 150, API calls only being drawable here. In burn-down order the credit
    # (priority 1) pays 100 and the prepaid commit (priority 2) the other 50, so it keeps 150; the
    # postpaid commit (priority 3) has nothing left to pay and keeps its 1000.
    return {"ids": ids, "customer": customer, "contract": contract_id, "start": start, "end": end}


def _by_name(grants) -> dict:
    return {g.name: g for g in grants}


def test_v1_get_parses_strictly_and_fills_every_commit_and_credit_field(strict, deal):
    contract = strict.v1.contracts.retrieve(customer_id=deal["customer"], contract_id=deal["contract"]).data
    terms = contract.current
    commits, (credit,) = _by_name(terms.commits), terms.credits
    assert sorted(commits) == ["Postpaid", "Prepaid"]
    prepaid, postpaid = commits["Prepaid"], commits["Postpaid"]
    for grant in (prepaid, postpaid, credit):
        assert grant.created_at == terms.created_at  # created with the contract
        assert grant.created_by == terms.created_by
        assert grant.access_schedule.credit_type.name == "USD (cents)"
        assert (grant.balance, grant.ledger) == (None, None)  # not asked for
    assert (prepaid.priority, prepaid.description, prepaid.custom_fields) == (2, "Annual prepaid commit", {"campaign": "launch"})
    assert (postpaid.priority, postpaid.description) == (3, None)
    assert (credit.priority, credit.description) == (1, "One dollar to start")
    assert prepaid.invoice_schedule.credit_type.name == "USD (cents)"
    assert terms.total_contract_value == 98765

    # The prepaid commit's invoice item is on the SCHEDULED invoice issued at the start, beside the
    # seats (2 × 2500 in advance); the postpaid true-up's period has not begun, so no invoice yet.
    invoices = strict.v1.customers.invoices.list(customer_id=deal["customer"]).data
    purchase = next(
        i for i in invoices if i.type == "SCHEDULED" and any(line.commit_id == prepaid.id for line in i.line_items)
    )
    assert purchase.issued_at == deal["start"]
    assert sorted((line.type, line.total) for line in purchase.line_items) == [("commit_purchase", 160), ("subscription", 5000)]
    (item,) = prepaid.invoice_schedule.schedule_items
    assert (item.invoice_id, item.amount) == (purchase.id, 160)
    assert strict.v1.customers.invoices.retrieve(customer_id=deal["customer"], invoice_id=item.invoice_id).data.id == purchase.id
    assert postpaid.invoice_schedule.schedule_items[0].invoice_id is None

    # Billing periods follow the contract's anchor (its start): this month and the next.
    (subscription,) = contract.subscriptions
    periods = subscription.billing_periods
    assert (periods.current.starting_at, periods.current.ending_before) == (deal["start"], _months_after(deal["start"], 1))
    assert (periods.next.starting_at, periods.next.ending_before) == (
        _months_after(deal["start"], 1), _months_after(deal["start"], 2))
    assert periods.previous is None
    assert (contract.current.overrides[0].multiplier, contract.current.scheduled_charges[0].schedule.credit_type.name) == (
        0.5, "USD (cents)")


def _figures(grants) -> dict:
    return {g.id: (g.balance, [(e.type, e.amount) for e in g.ledger or ()]) for g in grants}


def test_balances_and_ledgers_on_v1_and_v2_agree_with_customer_balances(strict, deal):
    customer, contract_id = deal["customer"], deal["contract"]
    balances = strict.v1.contracts.list_balances(customer_id=customer, include_balance=True, include_ledgers=True).data
    expected = _figures(balances)
    names = {b.id: b.name for b in balances}
    by_name = {names[i]: figures for i, figures in expected.items()}
    assert {name: balance for name, (balance, _) in by_name.items()} == {
        "Welcome credit": 0, "Prepaid": 150, "Postpaid": 1000}
    assert by_name["Prepaid"][1] == [("PREPAID_COMMIT_SEGMENT_START", 200), ("PREPAID_COMMIT_AUTOMATED_INVOICE_DEDUCTION", -50)]
    assert by_name["Welcome credit"][1] == [("CREDIT_SEGMENT_START", 100), ("CREDIT_AUTOMATED_INVOICE_DEDUCTION", -100)]

    v1 = strict.v1.contracts.retrieve(customer_id=customer, contract_id=contract_id, include_balance=True, include_ledgers=True).data
    assert _figures(v1.current.commits + v1.current.credits) == expected
    (listed,) = strict.v1.contracts.list(customer_id=customer, include_balance=True, include_ledgers=True).data
    assert _figures(listed.current.commits + listed.current.credits) == expected
    v2 = strict.v2.contracts.retrieve(customer_id=customer, contract_id=contract_id, include_balance=True, include_ledgers=True).data
    assert _figures(v2.commits + v2.credits) == expected
    (listed_v2,) = strict.v2.contracts.list(customer_id=customer, include_balance=True, include_ledgers=True).data
    assert _figures(listed_v2.commits + listed_v2.credits) == expected

    # Balance alone: no ledger; neither: no figures at all.
    only_balance = strict.v2.contracts.retrieve(customer_id=customer, contract_id=contract_id, include_balance=True).data
    assert {g.id: (g.balance, g.ledger) for g in only_balance.commits + only_balance.credits} == {
        i: (balance, None) for i, (balance, _) in expected.items()}
    bare = strict.v2.contracts.retrieve(customer_id=customer, contract_id=contract_id).data
    assert {(g.balance, g.ledger) for g in bare.commits + bare.credits} == {(None, None)}
    (bare_v1,) = strict.v1.contracts.list(customer_id=customer).data
    assert {(g.balance, g.ledger) for g in bare_v1.current.commits + bare_v1.current.credits} == {(None, None)}
    assert bare.total_contract_value == 98765
    assert {g.created_at for g in bare.commits + bare.credits} == {bare.created_at}
    assert bare.subscriptions[0].billing_periods.current.starting_at == deal["start"]


def test_net_balance_covers_every_balance_type_unless_filtered(strict, deal):
    customer = deal["customer"]
    grants = _by_name(strict.v1.contracts.list_balances(customer_id=customer).data)

    def net(**filters):
        return strict.v1.contracts.get_net_balance(customer_id=customer, **filters).data.balance

    # Credit 0 + prepaid 150 + postpaid 1000.
    assert net() == 1150
    assert net(filters=[{"balance_types": ["PREPAID_COMMIT", "CREDIT"]}]) == 150
    assert net(filters=[{"balance_types": ["POSTPAID_COMMIT"]}]) == 1000
    # Filters are OR'd; conditions within one filter are AND'd.
    assert net(filters=[{"ids": [grants["Prepaid"].id]}, {"ids": [grants["Welcome credit"].id]}]) == 150
    assert net(filters=[{"custom_fields": {"campaign": "launch"}}]) == 150
    assert net(filters=[{"custom_fields": {"campaign": "launch"}, "balance_types": ["CREDIT"]}]) == 0
    assert net(filters=[{"balance_types": ["POSTPAID_COMMIT"]}], invoice_inclusion_mode="FINALIZED") == 1000
    # Nothing is finalized yet: without the drafts, credit 100 + prepaid 200 + postpaid 1000.
    assert net(invoice_inclusion_mode="FINALIZED") == 1300


@pytest.fixture()
def invoice_messages(local_stack):
    """Messages on a queue subscribed to the invoices topic, as a customer would receive them."""
    sqs, sns = boto3.client("sqs"), boto3.client("sns")
    queue = sqs.create_queue(QueueName=unique("regenerated-tail"))["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    topic = local_stack.deployment.outputs["InvoicesTopicArn"]
    subscription = sns.subscribe(
        TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"}
    )["SubscriptionArn"]
    received: list[dict] = []

    def about(invoice_id: str) -> list[dict]:
        while batch := sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", []):
            for message in batch:
                received.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
        return [m for m in received if m.get("properties", {}).get("invoice_id") == invoice_id]

    yield about
    sns.unsubscribe(SubscriptionArn=subscription)
    sqs.delete_queue(QueueUrl=queue)


def test_a_regenerated_invoice_is_announced_at_once(strict, local_stack, invoice_messages):
    from tally import wiring

    tag = unique("announce")
    start = current_hour() - 9 * DAY  # weekly periods: the first ended two days ago
    metric = strict.v1.billable_metrics.create(
        name=f"{tag} calls", aggregation_type="COUNT", event_type_filter={"in_values": [tag]}
    ).data.id
    calls = strict.v1.contracts.products.create(name=f"{tag} calls", type="USAGE", billable_metric_id=metric).data.id
    card = strict.v1.contracts.rate_cards.create(name=f"{tag} card").data.id
    strict.v1.contracts.rate_cards.rates.add(
        rate_card_id=card, product_id=calls, entitled=True, rate_type="FLAT", price=10, starting_at=rfc3339(start - DAY)
    )
    customer = strict.v1.customers.create(name=tag, ingest_aliases=[tag]).data.id
    contract_id = strict.v1.contracts.create(
        customer_id=customer, rate_card_id=card, starting_at=rfc3339(start),
        usage_statement_schedule={"frequency": "WEEKLY", "day": "CONTRACT_START"},
    ).data.id
    strict.v1.usage.ingest(usage=[usage_event(f"{tag}-{n}", tag, tag, start + HOUR) for n in range(4)])
    local_stack.pump.drain()
    (first,) = wiring.cycle_close_service().finalize(customer, contract_id, start, datetime.now(timezone.utc))["invoice_ids"]
    strict.v1.invoices.void(id=first)

    regenerated = strict.v1.invoices.regenerate(id=first).data.id

    (message,) = invoice_messages(regenerated)
    assert message["type"] == "invoice.finalized"
    assert (message["properties"]["regenerated_from_invoice_id"], message["properties"]["total"]) == (first, 40)
    strict.v1.invoices.regenerate(id=first)  # asking again announces nothing new
    assert len(invoice_messages(regenerated)) == 1
