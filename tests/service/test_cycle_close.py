"""Cycle close as a use case: finding due periods, finalizing once, publishing once, late events,
void and regenerate. moto DynamoDB, the fake catalog and usage of the contracts tests, a fake clock
and a fake SNS publisher.

The contract starts on Oct 1 and bills monthly; API calls cost 2 cents until Nov 15 (flat).
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from types import SimpleNamespace

import pytest

from tally.adapters.dynamo.billing import DynamoBillingStore, DynamoMetricStore
from tally.adapters.dynamo.close_index import DynamoCloseIndex
from tally.adapters.dynamo.counters import DynamoCounterStore
from tally.adapters.dynamo.documents import DynamoContractStore, DynamoDocumentStore
from tally.adapters.dynamo.events import DynamoEventStore
from tally.adapters.dynamo.invoices import DynamoInvoiceStore
from tally.billing.balances import LedgerEntryType as T
from tally.billing.counters import StreamedEvent, sequence_key
from tally.billing.errors import InvalidInput, NotFound
from tally.billing.metrics import Aggregation, BillableMetric
from tally.billing.pricing import Product, ProductType, ProductVersion, Rate, RateCard, RateType
from tally.services.aggregate import AggregateService
from tally.services.balances import BalanceService, GrantBook
from tally.services.contracts import ContractService
from tally.services.customers import CustomerService
from tally.services.cycle_close import CloseTiming, CycleCloseService, InvoiceNotFound
from tally.services.ingest import IngestService
from tally.services.invoice_records import regenerated_invoice_id
from tally.services.invoices import InvoiceService, PeriodNotFound, invoice_id
from tally.services.metrics import MetricService
from tally.services.rating_usage import CounterUsageSource
from tally.services.usage import MetricQuery, UsageService, WindowSize
from tests.service.test_contracts_service import FakeCatalog, FakeUsage, _commit, _request

UTC = timezone.utc
OCT, NOV, DEC, JAN = (datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC),
                      datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))
HOUR, DAY = timedelta(hours=1), timedelta(days=1)
GRACE = timedelta(hours=24)
TOPIC = "arn:aws:sns:us-east-1:123456789012:invoices"


class FakePublisher:
    def __init__(self) -> None:
        self.messages: list[tuple[str, dict, dict]] = []
        self.failures = 0  # the next publishes that raise
        self._lock = threading.Lock()

    def publish(self, topic_arn, message, attributes) -> str:
        with self._lock:
            if self.failures:
                self.failures -= 1
                raise RuntimeError("SNS is down")
            self.messages.append((topic_arn, json.loads(json.dumps(message, default=str)), dict(attributes)))
            return f"sns-{len(self.messages)}"


def _world(dynamo, clock, catalog, usage_for):
    client, table = dynamo["client"], dynamo["billing"]
    billing = DynamoBillingStore(table, client)
    contracts = ContractService(DynamoContractStore(table, client), billing, catalog, clock)
    grant_docs = DynamoDocumentStore(table, "grant", "created_at", client)
    manual_docs = DynamoDocumentStore(table, "ledger_entry", "timestamp", client)
    book = GrantBook(contracts, grant_docs, manual_docs, clock)
    store = DynamoInvoiceStore(table, client)
    invoices = InvoiceService(contracts, usage_for, clock, book, store)
    publisher = FakePublisher()
    service = CycleCloseService(
        invoices, store, billing, publisher, lambda: TOPIC, clock, GRACE, timing=CloseTiming(backoff=0), sleep=lambda _: None,
        index=DynamoCloseIndex(table, client),
    )
    return SimpleNamespace(
        billing=billing, contracts=contracts, invoices=invoices, store=store, publisher=publisher, service=service,
        balances=BalanceService(contracts, book, grant_docs, manual_docs, invoices, clock), clock=clock, dynamo=dynamo,
        customer=CustomerService(billing, clock).create("Acme", ["acme"], None, {}),
    )


@pytest.fixture()
def w(dynamo, clock):
    clock.now = datetime(2026, 11, 24, 12, tzinfo=UTC)
    usage = FakeUsage([])
    world = _world(dynamo, clock, FakeCatalog(), lambda customer: usage)
    world.usage = usage
    return world


BARE = {"overrides": [], "subscriptions": [], "scheduled_charges": []}
SEATS = [{  # 3 seats at 1000, billed monthly in advance
    "collection_schedule": "ADVANCE",
    "proration": {"is_prorated": True, "invoice_behavior": "BILL_IMMEDIATELY"},
    "subscription_rate": {"product_id": "p-seats", "billing_frequency": "MONTHLY"},
    "initial_quantity": 3,
}]
ONBOARDING = [{"product_id": "p-setup", "schedule": {"schedule_items": [{"timestamp": "2026-10-01T00:00:00Z", "amount": 5000}]}}]


def _credit(amount: int, start: str = "2026-10-01T00:00:00Z", end: str = "2027-01-01T00:00:00Z") -> dict:
    return _commit(type=None, access_schedule={"schedule_items": [{"amount": amount, "starting_at": start, "ending_before": end}]})


def _contract(w, **changes) -> dict:
    return w.contracts.create(_request(w.customer.id, **(BARE | changes)))


def _stored_records(w) -> list[dict]:
    items = w.dynamo["client"].scan(TableName=w.dynamo["billing"])["Items"]
    return [item for item in items if item["pk"]["S"].startswith("invoice#")]


def _ledger(w, grant_id: str) -> list[tuple]:
    burn = w.balances.burn_down(w.customer.id)
    return [(e.type, e.amount, e.invoice_id, e.pending) for e in burn.ledger if e.grant_id == grant_id]


# --- find_due -------------------------------------------------------------------------------------


def test_find_due_lists_a_usage_period_once_its_end_plus_the_grace_has_passed_and_scheduled_invoices_at_issue(w):
    with_seats = _contract(w, subscriptions=SEATS)  # seats in advance, on the 1st
    contract_id, cid = with_seats["id"], w.customer.id

    def due(as_of):
        return [(i["contract_id"], i["period_start"], i["kind"]) for i in w.service.find_due(as_of, GRACE).periods]

    # Nov 1 12:00: October's usage waits for its grace; the seats billed on Oct 1 and Nov 1 are due.
    assert due(NOV + 12 * HOUR) == [
        (contract_id, "2026-10-01T00:00:00Z", "SCHEDULED"),
        (contract_id, "2026-11-01T00:00:00Z", "SCHEDULED"),
    ]
    assert due(NOV + GRACE) == [
        (contract_id, "2026-10-01T00:00:00Z", "SCHEDULED"),
        (contract_id, "2026-10-01T00:00:00Z", "USAGE"),
        (contract_id, "2026-11-01T00:00:00Z", "SCHEDULED"),
    ]
    items = w.service.find_due(NOV + GRACE, GRACE).periods
    assert json.loads(json.dumps(items)) == items  # task payloads
    assert set(items[0]) == {"customer_id", "contract_id", "period_start", "kind"} and items[0]["customer_id"] == cid

    w.service.finalize(cid, contract_id, OCT, NOV + GRACE)
    assert due(NOV + GRACE) == [(contract_id, "2026-11-01T00:00:00Z", "SCHEDULED")]
    w.contracts.archive(cid, contract_id)
    assert due(NOV + GRACE) == []  # an archived contract's periods are not closed


def test_finalize_stores_each_invoice_once_and_a_second_call_returns_the_same_ids(w):
    contract = _contract(w, scheduled_charges=ONBOARDING)  # onboarding on Oct 1
    w.usage.calls += [(datetime(2026, 10, 10, tzinfo=UTC), 10)]
    drafts = {d.invoice.type.value: d for d in w.invoices.list(w.customer.id, ending_before=NOV)[0]}

    first = w.service.finalize(w.customer.id, contract["id"], OCT, NOV + GRACE)
    assert first["invoice_ids"] == [drafts["USAGE"].id, drafts["SCHEDULED"].id]  # the drafts' ids are kept
    assert first["finalized"] == first["invoice_ids"]
    again = w.service.finalize(w.customer.id, contract["id"], OCT, NOV + GRACE)
    assert again == {"invoice_ids": first["invoice_ids"], "finalized": []}
    assert len(_stored_records(w)) == 2

    usage = w.invoices.get(w.customer.id, drafts["USAGE"].id)
    assert (usage.invoice.status, usage.invoice.total) == ("FINALIZED", Decimal("20.00"))
    assert [d.id for d in w.invoices.list(w.customer.id, status="FINALIZED")[0]] == first["invoice_ids"]
    assert [d.invoice.status for d in w.invoices.list(w.customer.id)[0]] == ["FINALIZED", "FINALIZED", "DRAFT"]
    assert w.invoices.list(w.customer.id, status="DRAFT")[0][0].invoice.starting_at == NOV


def test_finalize_before_the_grace_has_passed_stores_only_what_is_due(w):
    contract = _contract(w, scheduled_charges=ONBOARDING)
    result = w.service.finalize(w.customer.id, contract["id"], OCT, NOV + HOUR)
    assert len(result["finalized"]) == 1  # the onboarding charge, issued Oct 1; usage waits
    assert w.invoices.list(w.customer.id, status="DRAFT")[0][0].invoice.type.value == "USAGE"


def test_concurrent_finalizations_store_one_invoice_and_one_set_of_ledger_entries(w):
    contract = _contract(w, credits=[_credit(100)])
    credit_id = w.contracts.get(w.customer.id, contract["id"])["credits"][0]["id"]
    w.usage.calls += [(datetime(2026, 10, 10, tzinfo=UTC), 30)]  # 60 cents, all paid by the credit
    results, errors = [], []
    start = threading.Barrier(8)

    def close():
        try:
            start.wait()
            results.append(w.service.finalize(w.customer.id, contract["id"], OCT, NOV + GRACE))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=close) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    (october,) = {tuple(r["invoice_ids"]) for r in results}
    assert sorted(i for r in results for i in r["finalized"]) == list(october)  # each stored by exactly one call
    assert len(_stored_records(w)) == 1
    assert _ledger(w, credit_id) == [
        (T.CREDIT_SEGMENT_START, Decimal(100), None, False),
        (T.CREDIT_AUTOMATED_INVOICE_DEDUCTION, Decimal("-60.00"), october[0], False),  # finalized: not pending
    ]


def test_a_finalized_invoice_is_served_from_storage_whatever_changes_later(w):
    contract = _contract(w, credits=[_credit(100)])
    w.usage.calls += [(datetime(2026, 10, 10, tzinfo=UTC), 30)]
    (october,) = w.service.finalize(w.customer.id, contract["id"], OCT, NOV + GRACE)["finalized"]
    before = w.invoices.get(w.customer.id, october)

    # A rate change on the card, more usage in October and a manual entry on the credit.
    catalog = w.contracts._catalog
    catalog.cards["rc-std"] = RateCard("rc-std", "Standard", tuple(
        replace(r, price=Decimal(7)) if r.product_id == "p-calls" and r.rate_type is RateType.FLAT else r
        for r in catalog.cards["rc-std"].rates))
    w.usage.calls += [(datetime(2026, 10, 20, tzinfo=UTC), 50)]
    credit = w.balances.grants(w.customer.id).grants[0]
    w.balances.add_manual_entry(w.customer.id, credit.id, credit.access_schedule[0].id, Decimal(-10), "fee", OCT + DAY, None)

    after = w.invoices.get(w.customer.id, october)
    assert after == before and after.invoice.total == Decimal("0.00")
    assert [line.total for line in after.invoice.line_items] == [Decimal("60.00"), Decimal("-60.00")]
    deduction = [e for e in w.balances.burn_down(w.customer.id).ledger if e.invoice_id == october]
    assert [(e.type, e.amount) for e in deduction] == [(T.CREDIT_AUTOMATED_INVOICE_DEDUCTION, Decimal("-60.00"))]
    assert w.balances.net_balance(w.customer.id, None, include_drafts=True) == Decimal(30)  # 100 - 10 - 60


def test_a_manual_entry_cannot_take_what_a_finalized_invoice_drew(w):
    contract = _contract(w, credits=[_credit(100)])
    w.usage.calls += [(datetime(2026, 10, 10, tzinfo=UTC), 30)]
    w.service.finalize(w.customer.id, contract["id"], OCT, NOV + GRACE)
    credit = w.balances.grants(w.customer.id).grants[0]
    with pytest.raises(InvalidInput) as refused:
        w.balances.add_manual_entry(w.customer.id, credit.id, credit.access_schedule[0].id, Decimal(-50), "x", OCT + DAY, None)
    assert refused.value.field == "amount"


# --- publishing -----------------------------------------------------------------------------------


def test_publishing_twice_sends_one_message_with_a_stable_id(w):
    contract = _contract(w)
    w.usage.calls += [(datetime(2026, 10, 10, tzinfo=UTC), 10)]
    (october,) = w.service.finalize(w.customer.id, contract["id"], OCT, NOV + GRACE)["invoice_ids"]

    assert w.service.publish_finalized(october) is True
    assert w.service.publish_finalized(october) is False
    ((topic, message, attributes),) = w.publisher.messages
    assert topic == TOPIC
    assert (message["id"], message["type"]) == (f"invoice.finalized:{october}", "invoice.finalized")
    assert message["properties"]["total"] == "20.00" and message["properties"]["invoice_id"] == october
    assert attributes == {"type": "invoice.finalized", "customer_id": w.customer.id}
    with pytest.raises(InvoiceNotFound):
        w.service.publish_finalized(str(uuid.uuid4()))


def test_overlapping_publishers_send_one_message(w):
    contract = _contract(w)
    (october,) = w.service.finalize(w.customer.id, contract["id"], OCT, NOV + GRACE)["invoice_ids"]
    results = []
    start = threading.Barrier(6)

    def publish():
        start.wait()
        results.append(w.service.publish_finalized(october))

    threads = [threading.Thread(target=publish) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 5 + [True]
    assert len(w.publisher.messages) == 1


def test_a_failed_publish_can_be_retried_at_once_and_a_crashed_one_after_the_lease(w):
    contract = _contract(w)
    (october,) = w.service.finalize(w.customer.id, contract["id"], OCT, NOV + GRACE)["invoice_ids"]
    w.publisher.failures = 1
    with pytest.raises(RuntimeError):
        w.service.publish_finalized(october)
    assert w.service.publish_finalized(october) is True  # the claim was given back

    w.usage.calls += [(datetime(2026, 11, 10, tzinfo=UTC), 5)]
    w.clock.now = DEC + 2 * DAY
    (november,) = w.service.finalize(w.customer.id, contract["id"], NOV, DEC + GRACE)["invoice_ids"]
    # A publisher that crashed after claiming: nobody publishes while its claim is fresh...
    assert w.store.claim_publication(november, "crashed", w.clock.now, w.clock.now - timedelta(minutes=15))
    assert w.service.publish_finalized(november) is False
    assert [i["period_start"] for i in w.service.find_due(DEC + 2 * DAY, GRACE).periods] == []
    # ...and once the lease has expired, the next run lists the period again and publishes it.
    w.clock.now += timedelta(minutes=16)
    assert [i["period_start"] for i in w.service.find_due(w.clock.now, GRACE).periods] == ["2026-11-01T00:00:00Z"]
    assert w.service.publish_finalized(november) is True
    assert [m["id"] for _, m, _ in w.publisher.messages] == [f"invoice.finalized:{october}", f"invoice.finalized:{november}"]


# --- late events ----------------------------------------------------------------------------------


class MeteredCatalog(FakeCatalog):
    """The fake catalog, with API calls metered by a real metric: 10 cents a call."""

    def __init__(self, metric: BillableMetric) -> None:
        super().__init__()
        self.metered = metric
        self._products["p-calls"] = Product(
            "p-calls", ProductType.USAGE, (ProductVersion(OCT, "API calls", billable_metric_id=metric.id),)
        )
        self.cards["rc-std"] = RateCard("rc-std", "Standard", (Rate("p-calls", OCT, RateType.FLAT, price=Decimal(10)),))

    def metric(self, metric_id):
        return self.metered if metric_id == self.metered.id else None


def test_a_late_event_counts_in_usage_but_changes_no_finalized_invoice_only_the_open_draft(dynamo, clock):
    client = dynamo["client"]
    events, counters = DynamoEventStore(dynamo["events"], client), DynamoCounterStore(dynamo["counters"], client)
    metrics = DynamoMetricStore(DynamoBillingStore(dynamo["billing"], client))
    clock.now = NOV + 9 * DAY
    metric = MetricService(metrics, clock).create(
        BillableMetric("", "calls", Aggregation.COUNT, None, None, (), ())
    )
    clock.now += HOUR
    w = _world(dynamo, clock, MeteredCatalog(metric), lambda customer: CounterUsageSource(customer, metrics, counters))
    contract = w.contracts.create(_request(w.customer.id, starting_at="2026-11-01T00:00:00Z", credits=[
        _credit(1000, "2026-11-01T00:00:00Z", "2027-01-01T00:00:00Z")], **BARE))
    sequence = iter(range(10**6))

    def ingest(*instants):
        before = clock.now
        IngestService(events, clock).ingest([
            {"transaction_id": f"t-{uuid.uuid4().hex}", "customer_id": "acme", "event_type": "call",
             "timestamp": at.strftime("%Y-%m-%dT%H:%M:%SZ")} for at in instants
        ])
        streamed = [StreamedEvent(sequence_key(10**20 + next(sequence)), s.event, s.ingested_at)
                    for s in events.scan_ingested_before(clock.now + HOUR) if s.ingested_at >= before]
        AggregateService(counters, metrics).apply_batch("shard-1", streamed)

    def november_usage():
        (window,) = UsageService(w.billing, metrics, counters).usage([w.customer], [MetricQuery(metric.id)], NOV, DEC, WindowSize.NONE)
        return window.value

    ingest(NOV + 5 * DAY, NOV + 8 * DAY)  # 2 calls: 20 cents, paid by the credit
    clock.now = DEC + GRACE + HOUR
    (november,) = w.service.finalize(w.customer.id, contract["id"], NOV, clock.now)["finalized"]
    finalized = w.invoices.get(w.customer.id, november)
    ledger = [e for e in w.balances.burn_down(w.customer.id).ledger if e.invoice_id == november]

    ingest(NOV + 20 * DAY, DEC + 1 * DAY)  # a late November call, and one in December
    assert november_usage() == Decimal(3)  # the late event counts in usage...
    assert w.invoices.get(w.customer.id, november) == finalized  # ...and lands on no invoice
    assert finalized.invoice.subtotal == Decimal("20.00")
    assert [e for e in w.balances.burn_down(w.customer.id).ledger if e.invoice_id == november] == ledger
    december = w.invoices.list(w.customer.id, status="DRAFT")[0][0]
    assert (december.invoice.starting_at, december.invoice.subtotal) == (DEC, Decimal("10.00"))  # the open draft moves
    assert w.service.find_due(clock.now, GRACE).periods == []  # and nothing reopens November


# --- void and regenerate --------------------------------------------------------------------------


def test_void_gives_the_drawdowns_back_and_regenerate_bills_the_period_again_from_current_data(w):
    contract = _contract(w, credits=[_credit(100)])
    credit_id = w.contracts.get(w.customer.id, contract["id"])["credits"][0]["id"]
    w.usage.calls += [(datetime(2026, 10, 10, tzinfo=UTC), 30)]  # 60 cents
    (october,) = w.service.finalize(w.customer.id, contract["id"], OCT, NOV + GRACE)["invoice_ids"]

    def balance():
        return w.balances.net_balance(w.customer.id, None, include_drafts=True)

    assert balance() == Decimal(40)
    assert w.service.void(october) == october
    assert w.service.void(october) == october  # voiding again changes nothing
    assert balance() == Decimal(100)  # the drawdown is given back
    assert [(t, a) for t, a, i, _ in _ledger(w, credit_id) if i == october] == [
        (T.CREDIT_CANCELED, Decimal("60.00")), (T.CREDIT_AUTOMATED_INVOICE_DEDUCTION, Decimal("-60.00"))]
    voided = w.invoices.get(w.customer.id, october)
    assert voided.invoice.status == "VOID"
    assert [d.id for d in w.invoices.list(w.customer.id, status="VOID")[0]] == [october]
    assert w.service.find_due(NOV + GRACE, GRACE).periods == []  # a voided period waits for a regenerate

    w.usage.calls += [(datetime(2026, 10, 20, tzinfo=UTC), 20)]  # the correction: 20 calls were missing
    regenerated = w.service.regenerate(october)
    assert regenerated == regenerated_invoice_id(october) != october
    assert w.service.regenerate(october) == regenerated  # twice: the same invoice
    corrected = w.invoices.get(w.customer.id, regenerated)
    assert (corrected.invoice.status, corrected.invoice.subtotal, corrected.invoice.total) == (
        "FINALIZED", Decimal("100.00"), Decimal("0.00"))
    assert corrected.regenerated_from_invoice_id == october
    assert balance() == Decimal(0)
    assert len(_stored_records(w)) == 2
    assert [(d.id, d.invoice.status) for d in w.invoices.list(w.customer.id, ending_before=NOV)[0]] == [
        (regenerated, "FINALIZED"), (october, "VOID")]
    assert w.service.finalize(w.customer.id, contract["id"], OCT, NOV + GRACE)["invoice_ids"] == [regenerated]
    # The regenerate announced it at once, and once only.
    assert [(m["type"], m["properties"]["invoice_id"]) for _, m, _ in w.publisher.messages] == [
        ("invoice.finalized", regenerated)]
    assert w.publisher.messages[0][1]["properties"]["regenerated_from_invoice_id"] == october
    assert w.service.find_due(w.clock.now, GRACE).periods == []


def test_a_regenerated_invoice_whose_announcement_failed_is_published_by_the_next_run_without_waiting_for_the_lease(w):
    contract = _contract(w)
    w.usage.calls += [(datetime(2026, 10, 10, tzinfo=UTC), 30)]
    (october,) = w.service.finalize(w.customer.id, contract["id"], OCT, NOV + GRACE)["invoice_ids"]
    assert w.service.publish_finalized(october)
    w.service.void(october)

    w.publisher.failures = 1  # SNS refuses the regenerate's own announcement
    regenerated = w.service.regenerate(october)  # the invoice is stored all the same
    assert w.invoices.get(w.customer.id, regenerated).invoice.status == "FINALIZED"
    assert [m["properties"]["invoice_id"] for _, m, _ in w.publisher.messages] == [october]

    # The very next run lists it (no 15-minute lease to wait out: the claim was given back) and
    # announces it, once.
    (due,) = w.service.find_due(w.clock.now, GRACE).periods
    assert (due["contract_id"], due["period_start"], due["kind"]) == (contract["id"], "2026-10-01T00:00:00Z", "USAGE")
    ids = w.service.finalize(w.customer.id, contract["id"], OCT, w.clock.now)["invoice_ids"]
    assert [w.service.publish_finalized(i) for i in ids] == [True]
    assert [m["properties"]["invoice_id"] for _, m, _ in w.publisher.messages] == [october, regenerated]
    assert w.service.find_due(w.clock.now, GRACE).periods == []
    # Regenerating again returns the same invoice and announces nothing more.
    assert w.service.regenerate(october) == regenerated
    assert len(w.publisher.messages) == 2


def test_a_regenerate_retried_after_its_announcement_failed_announces_it(w):
    contract = _contract(w)
    (october,) = w.service.finalize(w.customer.id, contract["id"], OCT, NOV + GRACE)["invoice_ids"]
    w.service.void(october)
    w.publisher.failures = 1
    regenerated = w.service.regenerate(october)
    assert w.publisher.messages == []
    assert w.service.regenerate(october) == regenerated  # the client's retry
    assert [m["properties"]["invoice_id"] for _, m, _ in w.publisher.messages] == [regenerated]


@pytest.mark.parametrize(
    "action, target, error, field",
    [
        ("void", "draft", InvalidInput, "id"),
        ("void", "unknown", NotFound, None),
        ("void", "not-a-uuid", InvalidInput, "id"),
        ("regenerate", "draft", InvalidInput, "id"),
        ("regenerate", "finalized", InvalidInput, "id"),
        ("regenerate", "unknown", NotFound, None),
    ],
    ids=["void a draft", "void an unknown id", "void a malformed id", "regenerate a draft",
         "regenerate an invoice not voided", "regenerate an unknown id"],
)
def test_corrections_of_the_wrong_invoice_are_refused_and_change_nothing(w, action, target, error, field):
    contract = _contract(w)
    (october,) = w.service.finalize(w.customer.id, contract["id"], OCT, NOV + GRACE)["invoice_ids"]
    ids = {
        "draft": invoice_id(contract["id"], NOV, w.invoices.list(w.customer.id, status="DRAFT")[0][0].invoice.credit_type),
        "unknown": str(uuid.uuid4()),
        "not-a-uuid": "nope",
        "finalized": october,
    }
    with pytest.raises(error) as refused:
        getattr(w.service, action)(ids[target])
    if field is not None:
        assert refused.value.field == field
    assert w.invoices.get(w.customer.id, october).invoice.status == "FINALIZED"
    assert len(_stored_records(w)) == 1


def test_finalizing_a_period_the_contract_does_not_have_is_a_named_error(w):
    contract = _contract(w)
    with pytest.raises(PeriodNotFound):
        w.service.finalize(w.customer.id, contract["id"], OCT + DAY, NOV + GRACE)


# --- postpaid true-ups ----------------------------------------------------------------------------


def test_a_postpaid_true_up_is_billed_at_its_invoice_date_once_the_usage_it_settles_is_final(w):
    postpaid = _commit(type="POSTPAID", access_schedule={"schedule_items": [
        {"amount": 1000, "starting_at": "2026-10-01T00:00:00Z", "ending_before": "2026-11-01T00:00:00Z"}]},
        invoice_schedule={"schedule_items": [{"timestamp": "2026-11-01T00:00:00Z", "amount": 1000}]})
    contract = _contract(w, commits=[postpaid])
    commit_id = w.contracts.get(w.customer.id, contract["id"])["commits"][0]["id"]
    w.usage.calls += [(datetime(2026, 10, 10, tzinfo=UTC), 30)]  # 60 cents toward the 1000 promised

    def due(as_of):
        return [(i["period_start"][:10], i["kind"]) for i in w.service.find_due(as_of, GRACE).periods]

    assert due(NOV + GRACE) == [("2026-10-01", "USAGE")]  # the true-up waits for October's usage
    assert w.service.finalize(w.customer.id, contract["id"], NOV, NOV + GRACE)["finalized"] == []
    w.service.finalize(w.customer.id, contract["id"], OCT, NOV + GRACE)
    assert due(NOV + GRACE) == [("2026-11-01", "SCHEDULED")]
    (true_up,) = w.service.finalize(w.customer.id, contract["id"], NOV, NOV + GRACE)["finalized"]
    invoice = w.invoices.get(w.customer.id, true_up).invoice
    assert [(line.type.value, line.total) for line in invoice.line_items] == [("postpaid_trueup", Decimal("940.00"))]
    assert _ledger(w, commit_id)[-1] == (T.POSTPAID_COMMIT_TRUEUP, Decimal("-940.00"), None, False)  # settled
