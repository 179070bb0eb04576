"""Reading invoices reuses what settled periods stored instead of pricing them again: a closed
period's usage is not priced again, and stored drawdowns that only took from settled segments
are left out of a read's burn-down. Property: for any history of finalized months, commits,
credits, seats in advance, voids and regenerates, every invoice a read answers (drafts, finalized
and voided ones) is the one the whole re-pricing answers. moto DynamoDB, the contracts tests'
catalog, a fake clock."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tally.adapters.dynamo.billing import DynamoBillingStore
from tally.adapters.dynamo.documents import DynamoContractStore, DynamoDocumentStore
from tally.adapters.dynamo.invoices import DynamoInvoiceStore
from tally.services import invoices as invoices_module
from tally.services.balances import GrantBook
from tally.services.contracts import ContractService
from tally.services.customers import CustomerService
from tally.services.cycle_close import CloseTiming, CycleCloseService
from tally.services.invoices import InvoiceService
from tests.service.test_contracts_service import FakeCatalog, FakeUsage, _commit, _request
from tests.service.test_cycle_close import BARE, SEATS, TOPIC, FakePublisher

UTC = timezone.utc
OCT = datetime(2026, 10, 1, tzinfo=UTC)
GRACE = timedelta(hours=24)
MONTHS = [datetime(2026 + (9 + n) // 12, (9 + n) % 12 + 1, 1, tzinfo=UTC) for n in range(6)]  # Oct 2026 ..


def _rfc(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


histories = st.fixed_dictionaries({
    "closed": st.integers(1, 3),  # months finalized before the read, from October
    "calls": st.lists(st.integers(0, 400), min_size=5, max_size=5),  # API calls in each month (2 cents each)
    "commit": st.lists(st.integers(0, 600), min_size=5, max_size=5),  # a prepaid commit's monthly segments
    "credit": st.integers(0, 1500),  # a free credit over the five months
    "seats": st.booleans(),  # seats billed in advance: SCHEDULED invoices in every period
    "void": st.one_of(st.none(), st.integers(0, 2)),  # a finalized USAGE invoice voided (then regenerated)
    "regenerate": st.booleans(),
})


class _World:
    def __init__(self, dynamo, clock) -> None:
        client, table = dynamo["client"], dynamo["billing"]
        self.clock = clock
        self.billing = DynamoBillingStore(table, client)
        self.contracts = ContractService(DynamoContractStore(table, client), self.billing, FakeCatalog(), clock)
        book = GrantBook(self.contracts, DynamoDocumentStore(table, "grant", "created_at", client),
                         DynamoDocumentStore(table, "ledger_entry", "timestamp", client), clock)
        self.store = DynamoInvoiceStore(table, client)
        self.usages: dict[str, FakeUsage] = {}

        def usage_for(customer):
            return self.usages[customer.id]

        self.invoices = InvoiceService(self.contracts, usage_for, clock, book, self.store)
        self.repriced = InvoiceService(self.contracts, usage_for, clock, book, self.store, reuse_settled=False)
        self.close = CycleCloseService(self.invoices, self.store, self.billing, FakePublisher(), lambda: TOPIC, clock,
                                       GRACE, timing=CloseTiming(backoff=0), sleep=lambda _: None)
        self.customers = 0

    def customer(self) -> str:
        self.customers += 1
        customer = CustomerService(self.billing, self.clock).create(
            f"Acme {self.customers}", [f"acme-reuse-{self.customers}"], None, {})
        return customer.id


def _answers(service: InvoiceService, customer_id: str) -> list:
    page, _ = service.list(customer_id, limit=100)
    drafts = [service.get(customer_id, d.id) for d in page if d.invoice.status == "DRAFT"]
    return [(d.id, d.invoice, d.regenerated_from_invoice_id) for d in page + drafts]


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=histories)
def test_a_read_reusing_settled_periods_answers_the_invoices_re_pricing_answers(dynamo, clock, monkeypatch, history):
    w = getattr(test_a_read_reusing_settled_periods_answers_the_invoices_re_pricing_answers, "world", None)
    if w is None or w.store._table != dynamo["billing"]:
        w = test_a_read_reusing_settled_periods_answers_the_invoices_re_pricing_answers.world = _World(dynamo, clock)
    clock.now = OCT - timedelta(days=1)
    customer_id = w.customer()
    w.usages[customer_id] = FakeUsage([(MONTHS[n] + timedelta(days=3), calls) for n, calls in enumerate(history["calls"])])
    segments = [{"amount": amount, "starting_at": _rfc(MONTHS[n]), "ending_before": _rfc(MONTHS[n + 1])}
                for n, amount in enumerate(history["commit"]) if amount]
    grants = {"commits": [_commit(access_schedule={"schedule_items": segments})] if segments else []}
    if history["credit"]:
        grants["credits"] = [_commit(type=None, priority=1, access_schedule={"schedule_items": [
            {"amount": history["credit"], "starting_at": _rfc(OCT), "ending_before": _rfc(MONTHS[5])}]})]
    contract = w.contracts.create(_request(customer_id, **(BARE | {"subscriptions": SEATS if history["seats"] else []} | grants)))

    for n in range(history["closed"]):
        w.clock.now = MONTHS[n + 1] + GRACE
        finalized = w.close.finalize(customer_id, contract["id"], MONTHS[n], w.clock.now)
        if history["void"] == n:
            usage_invoice = next(i for i in finalized["invoice_ids"] if w.store.get(i).invoice.type.value == "USAGE")
            w.close.void(usage_invoice)
            if history["regenerate"]:
                w.close.regenerate(usage_invoice)
    w.clock.now = MONTHS[history["closed"]] + timedelta(days=20)  # the open month's draft, mid-month

    reused = _answers(w.invoices, customer_id)
    monkeypatch.setattr(invoices_module._NoUsage, "measures_nothing", False)  # closed periods priced in full
    repriced = _answers(w.repriced, customer_id)
    monkeypatch.undo()

    assert reused == repriced
    assert any(invoice.status == "DRAFT" for _, invoice, _ in reused)
