"""Threshold billing and auto-recharge through the services, on moto DynamoDB: a contract from
Dec 1 2026, billed monthly, its API calls at a flat 10 cents. Every amount is worked out by hand next
to its assertion (USD cents).

Crossings are claimed with a conditional write keyed by (contract, configuration kind, crossing):
evaluators racing on one crossing make one commit, one invoice line and one message.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from types import SimpleNamespace

import pytest

from tally.adapters.dynamo.billing import DynamoBillingStore
from tally.adapters.dynamo.documents import DynamoContractStore, DynamoDocumentStore
from tally.adapters.dynamo.invoices import DynamoInvoiceStore
from tally.adapters.dynamo.thresholds import DynamoThresholdStore
from tally.api.balance_models import CustomerCreditCreate, customer_grant_document
from tally.api.contract_edit_models import ContractEdit, edit_json
from tally.api.contract_models import ContractView, contract_json
from tally.api.contract_v2_models import contract_v2_json
from tally.billing import exact_json
from tally.billing.errors import InvalidInput, NotFound
from tally.billing.pricing import USD_CENTS, InvoiceType, Rate, RateCard, RateType
from tally.billing.thresholds import ChargeStatus, PaymentOutcome, ThresholdKind, workflow_id
from tally.services.balances import BalanceService, GrantBook
from tally.services.contract_edits import ContractEditService
from tally.services.contracts import ContractService
from tally.services.customers import CustomerService
from tally.services.cycle_close import CloseTiming, CycleCloseService
from tally.services.invoices import InvoiceService, invoice_id
from tally.services.thresholds import ThresholdBillingService, ThresholdContention, ThresholdGrants
from tests.service.test_contracts_service import JAN, FakeCatalog, FakeUsage, _request

UTC = timezone.utc
D = Decimal
DEC = datetime(2026, 12, 1, tzinfo=UTC)
JAN_2027 = datetime(2027, 1, 1, tzinfo=UTC)
TOPIC = "arn:aws:sns:us-east-1:123456789012:alerts"
BARE = {"overrides": [], "subscriptions": [], "scheduled_charges": [], "starting_at": "2026-12-01T00:00:00Z",
        "rate_card_id": "rc-flat"}
NONE_GATE = {"payment_gate_type": "NONE"}
EXTERNAL_GATE = {"payment_gate_type": "EXTERNAL"}


class Publisher:
    """What reached SNS, exactly as sent; `failures`: the next publishes that raise."""

    def __init__(self) -> None:
        self.messages: list[dict] = []
        self.attributes: list[dict] = []
        self.failures = 0
        self._lock = threading.Lock()

    def publish(self, topic_arn, message, attributes) -> str:
        assert topic_arn == TOPIC
        with self._lock:
            if self.failures:
                self.failures -= 1
                raise ConnectionError("SNS unavailable")
            self.messages.append(exact_json.loads(exact_json.dumps(message)))
            self.attributes.append(dict(attributes))
            return f"sns-{len(self.messages)}"

    def ids(self) -> list[str]:
        return [m["id"] for m in self.messages]


class Meeting:
    """Makes the next `n` evaluators meet at their first reading, so all of them have read the same
    state before any of them claims: a real race."""

    def __init__(self) -> None:
        self._barrier: threading.Barrier | None = None
        self._met: set[int] = set()
        self._lock = threading.Lock()

    def of(self, n: int) -> None:
        self._barrier, self._met = threading.Barrier(n), set()

    def meet(self) -> None:
        with self._lock:
            me = threading.get_ident()
            if self._barrier is None or me in self._met:
                return
            self._met.add(me)
        try:
            self._barrier.wait(timeout=5)
        except threading.BrokenBarrierError:
            pass


class MeetingBalances:
    """The balance service, meeting others before the burn-down an auto-recharge reads."""

    def __init__(self, balances: BalanceService, meeting: Meeting) -> None:
        self._balances, self._meeting = balances, meeting

    def grants(self, customer_id):
        return self._balances.grants(customer_id)

    def burn_down(self, customer_id):
        self._meeting.meet()
        return self._balances.burn_down(customer_id)

    def balances_burn_down(self, customer_id):
        self._meeting.meet()
        return self._balances.balances_burn_down(customer_id)


class MeetingInvoices:
    def __init__(self, invoices: InvoiceService, meeting: Meeting) -> None:
        self._invoices, self._meeting = invoices, meeting

    def list(self, customer_id, **kwargs):
        self._meeting.meet()
        return self._invoices.list(customer_id, **kwargs)


@pytest.fixture()
def w(dynamo, clock):
    clock.now = datetime(2026, 12, 1, tzinfo=UTC)
    client, table = dynamo["client"], dynamo["billing"]
    catalog = FakeCatalog()
    catalog.cards["rc-flat"] = RateCard("rc-flat", "Flat", (Rate("p-calls", JAN, RateType.FLAT, price=D(10)),))
    billing = DynamoBillingStore(table, client)
    contract_store = DynamoContractStore(table, client)
    contracts = ContractService(contract_store, billing, catalog, clock)
    thresholds = DynamoThresholdStore(table, client)
    grant_docs = DynamoDocumentStore(table, "grant", "created_at", client)
    manual_docs = DynamoDocumentStore(table, "ledger_entry", "timestamp", client)
    book = GrantBook(contracts, grant_docs, manual_docs, clock, threshold_commits=ThresholdGrants(thresholds).of_contract)
    usage = FakeUsage([])
    invoice_store = DynamoInvoiceStore(table, client)
    invoices = InvoiceService(contracts, lambda customer: usage, clock, book, invoice_store)
    balances = BalanceService(contracts, book, grant_docs, manual_docs, invoices, clock)
    publisher, meeting = Publisher(), Meeting()
    service = ThresholdBillingService(
        contracts, contract_store, MeetingInvoices(invoices, meeting), MeetingBalances(balances, meeting), thresholds,
        publisher, lambda: TOPIC, clock, lease=timedelta(seconds=5), sleep=lambda seconds: None,
    )
    invoice_publisher = SimpleNamespace(publish=lambda topic, message, attributes: "sns-1")
    close = CycleCloseService(invoices, invoice_store, billing, invoice_publisher, lambda: "invoices-topic", clock,
                              timedelta(hours=24), timing=CloseTiming(backoff=0), sleep=lambda _: None)
    return SimpleNamespace(
        contracts=contracts, invoices=invoices, balances=balances, service=service, publisher=publisher, usage=usage,
        clock=clock, meeting=meeting, store=thresholds, dynamo=dynamo, close=close,
        edits=ContractEditService(contracts, contract_store, invoice_store, clock, sleep=lambda _: None),
        customer=CustomerService(billing, clock).create("Acme", ["acme"], None, {}),
    )


def _contract(w, **parts) -> dict:
    return w.contracts.create(_request(w.customer.id, **(BARE | parts)))


def _spend(threshold=1000, gate=NONE_GATE, **more) -> dict:
    return {"commit": {"product_id": "p-setup", "name": "Early charge"}, "is_enabled": True,
            "payment_gate_config": gate, "threshold_amount": threshold, **more}


def _recharge(threshold=500, recharge_to=2000, gate=NONE_GATE, **more) -> dict:
    return {"commit": {"product_id": "p-setup", "name": "Top-up"}, "is_enabled": True, "payment_gate_config": gate,
            "threshold_amount": threshold, "recharge_to_amount": recharge_to, **more}


def _calls(w, at: datetime, n: int) -> None:
    w.usage.calls.append((at, n))


def _invoices(w) -> list:
    return [d.invoice for d in w.invoices.list(w.customer.id)[0]]


def _usage_total(w) -> Decimal:
    (usage,) = [i for i in _invoices(w) if i.type is InvoiceType.USAGE]
    return usage.total


def _purchases(w) -> list[tuple[datetime, Decimal]]:
    return [(i.starting_at, line.total) for i in _invoices(w) if i.type is InvoiceType.SCHEDULED
            for line in i.line_items if line.type.value == "commit_purchase"]


def _commits(w, contract: dict) -> list[dict]:
    """The contract's commits as v1 get shows them, with balances."""
    document = w.contracts.get(w.customer.id, contract["id"])
    view = ContractView(w.clock.now, figures=w.balances.figures(w.customer.id, with_balances=True), include_balance=True)
    return contract_json(document, w.contracts.contract(document), w.contracts.products(), view)["current"]["commits"]


def _edit(w, contract: dict, **body) -> dict:
    request = {"customer_id": w.customer.id, "contract_id": contract["id"], **body}
    parsed = ContractEdit.model_validate(exact_json.loads(exact_json.dumps(request)))
    return w.edits.edit(w.customer.id, contract["id"], parsed.changes(), author="key-1")


# -- spend thresholds (threshold billing) ---------------------------------------------------------
def test_spend_threshold_charges_each_time_the_uncollected_spend_reaches_it(w):
    contract = _contract(w, spend_threshold_configuration=_spend(1000))
    _calls(w, datetime(2026, 12, 3, 9, tzinfo=UTC), 60)  # 600
    w.clock.now = datetime(2026, 12, 3, 10, 30, tzinfo=UTC)
    assert w.service.evaluate_customer(w.customer.id).charged == 0
    assert w.publisher.messages == []

    _calls(w, datetime(2026, 12, 3, 10, tzinfo=UTC), 50)  # 1100: past 1000
    first = w.clock.now
    assert w.service.evaluate_customer(w.customer.id).charged == 1
    # A commit of 1000 over December, bought at once: the usage invoice goes down by it.
    assert _purchases(w) == [(first, D("1000.00"))]
    assert _usage_total(w) == D("100.00")  # 1100 - 1000
    assert w.service.evaluate_customer(w.customer.id).charged == 0  # 100 uncollected: nothing more

    _calls(w, datetime(2026, 12, 8, tzinfo=UTC), 150)  # 2600 spent, 1600 uncollected
    w.clock.now = second = datetime(2026, 12, 8, 1, tzinfo=UTC)
    assert w.service.evaluate_customer(w.customer.id).charged == 1
    assert _usage_total(w) == D("600.00")  # 2600 - 2 × 1000
    assert _purchases(w) == [(first, D("1000.00")), (second, D("1000.00"))]

    wf = [workflow_id(contract["id"], ThresholdKind.SPEND, n) for n in (1, 2)]
    assert w.publisher.ids() == [f"payment_gate.threshold_reached:{wf[0]}", f"payment_gate.threshold_reached:{wf[1]}"]
    message = w.publisher.messages[0]
    assert message["properties"] == {
        "workflow_type": "spend", "workflow_id": wf[0], "customer_id": w.customer.id, "contract_id": contract["id"],
        "timestamp": "2026-12-03T10:30:00Z", "threshold_amount": 1000, "value": D("1100.00"), "crossing": 1,
    }
    assert w.publisher.attributes[0] == {"type": "payment_gate.threshold_reached", "customer_id": w.customer.id,
                                         "contract_id": contract["id"], "workflow_type": "spend"}

    # The commits are the contract's, drawn down in full by the usage already spent.
    commits = _commits(w, contract)
    assert [(c["type"], c["name"], c["priority"], c["balance"]) for c in commits] == [("PREPAID", "Early charge", 100, 0)] * 2
    assert commits[0]["access_schedule"]["schedule_items"][0] | {"id": None} == {
        "id": None, "amount": 1000, "starting_at": "2026-12-01T00:00:00Z", "ending_before": "2027-01-01T00:00:00Z"}
    assert commits[0]["invoice_schedule"]["schedule_items"][0]["invoice_id"] == invoice_id(
        contract["id"], first, USD_CENTS, InvoiceType.SCHEDULED)


def test_the_next_cycle_close_run_finalizes_the_invoice_a_crossing_issued(w):
    contract = _contract(w, spend_threshold_configuration=_spend(1000))
    _calls(w, datetime(2026, 12, 2, tzinfo=UTC), 120)  # 1200
    w.clock.now = crossed = datetime(2026, 12, 2, 5, 20, tzinfo=UTC)
    w.service.evaluate_customer(w.customer.id)
    w.clock.now = datetime(2026, 12, 2, 6, tzinfo=UTC)  # the hourly run
    (due,) = w.close.find_due(w.clock.now, timedelta(hours=24)).periods
    assert (due["contract_id"], due["kind"]) == (contract["id"], "SCHEDULED")
    finalized = w.close.finalize(w.customer.id, contract["id"], DEC, w.clock.now)["finalized"]
    assert finalized == [invoice_id(contract["id"], crossed, USD_CENTS, InvoiceType.SCHEDULED)]
    (scheduled,) = [d for d in w.invoices.list(w.customer.id)[0] if d.invoice.type is InvoiceType.SCHEDULED]
    assert (scheduled.invoice.status, scheduled.invoice.total) == ("FINALIZED", D("1000.00"))
    assert _usage_total(w) == D("200.00")  # 1200 - 1000, still a draft


def test_a_spend_threshold_with_a_discount_invoices_the_paid_fraction(w):
    _contract(w, spend_threshold_configuration=_spend(1000, discount_configuration={"payment_fraction": 0.9}))
    _calls(w, datetime(2026, 12, 2, tzinfo=UTC), 100)  # 1000
    w.clock.now = datetime(2026, 12, 2, 5, tzinfo=UTC)
    w.service.evaluate_customer(w.customer.id)
    assert [amount for _, amount in _purchases(w)] == [D("900.00")]  # 1000 granted for 900
    assert _usage_total(w) == 0


def test_racing_evaluators_make_one_spend_charge(w):
    contract = _contract(w, spend_threshold_configuration=_spend(1000))
    _calls(w, datetime(2026, 12, 2, tzinfo=UTC), 130)  # 1300
    w.clock.now = datetime(2026, 12, 2, 5, tzinfo=UTC)
    w.meeting.of(4)
    with ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = list(pool.map(lambda _: w.service.evaluate_customer(w.customer.id), range(4)))
    assert sum(o.charged for o in outcomes) == 1
    assert len(w.store.charges(contract["id"])) == 1
    assert len(w.publisher.messages) == 1 and _usage_total(w) == D("300.00")


# -- prepaid balance thresholds (auto-recharge) ---------------------------------------------------
def test_auto_recharge_tops_the_balance_up_each_time_it_comes_down_to_the_threshold(w):
    contract = _contract(w, prepaid_balance_threshold_configuration=_recharge(500, 2000))
    # Created with no balance at all: evaluated at once, it recharges to 2000.
    assert w.service.evaluate_customer(w.customer.id).charged == 1
    assert w.balances.net_balance(w.customer.id, USD_CENTS.id, include_drafts=True) == D(2000)

    _calls(w, datetime(2026, 12, 5, 9, tzinfo=UTC), 120)  # 1200: 800 left, above 500
    w.clock.now = datetime(2026, 12, 5, 10, tzinfo=UTC)
    assert w.service.evaluate_customer(w.customer.id).charged == 0
    _calls(w, datetime(2026, 12, 5, 13, tzinfo=UTC), 40)  # 400 more: 400 left, at or below 500
    w.clock.now = recharged = datetime(2026, 12, 5, 13, 40, tzinfo=UTC)
    assert w.service.evaluate_customer(w.customer.id).charged == 1
    # Recharged by 1600, back to 2000; bought at once, usage invoice 0.
    assert w.balances.net_balance(w.customer.id, USD_CENTS.id, include_drafts=True) == D(2000)
    assert _purchases(w) == [(DEC, D("2000.00")), (recharged, D("1600.00"))]
    assert _usage_total(w) == 0

    commits = _commits(w, contract)
    assert [c["access_schedule"]["schedule_items"][0]["amount"] for c in commits] == [2000, 1600]
    # From the crossing's hour for a year (the default duration).
    assert [(s["starting_at"], s["ending_before"]) for c in commits for s in c["access_schedule"]["schedule_items"]] == [
        ("2026-12-01T00:00:00Z", "2027-12-01T00:00:00Z"), ("2026-12-05T13:00:00Z", "2027-12-05T13:00:00Z")]
    # The first (same priority, ending first) paid all 1600 of usage, the new one is whole.
    assert [c["balance"] for c in commits] == [400, 1600]
    assert len(w.publisher.messages) == 2


def test_racing_evaluators_make_one_recharge(w):
    contract = _contract(w, prepaid_balance_threshold_configuration=_recharge(500, 2000, is_enabled=False))
    _calls(w, datetime(2026, 12, 2, tzinfo=UTC), 10)
    w.clock.now = datetime(2026, 12, 2, 5, tzinfo=UTC)
    _edit(w, contract, update_prepaid_balance_threshold_configuration={"is_enabled": True})
    w.meeting.of(2)
    with ThreadPoolExecutor(max_workers=2) as pool:  # two evaluations at once
        outcomes = list(pool.map(lambda _: w.service.evaluate_customer(w.customer.id), range(2)))
    assert sorted(o.charged for o in outcomes) == [0, 1]
    (charge,) = w.store.charges(contract["id"])
    assert charge.document["commit"]["access_schedule"][0]["amount"] == D(2000)  # 0 left: all of it
    assert len(w.publisher.messages) == 1
    # 100 of usage since Dec 1 was overage before the recharge (its access starts Dec 2 05:00).
    assert w.balances.net_balance(w.customer.id, USD_CENTS.id, include_drafts=True) == D(2000)


def test_balances_left_out_of_the_recharge_do_not_hold_it_back(w):
    _contract(w, prepaid_balance_threshold_configuration=_recharge(
        500, 2000, threshold_balance_specifiers=[{"exclude": [{"custom_field_filters": [
            {"entity": "ContractCreditOrCommit", "key": "purpose", "value": "ai_trial"}]}]}],
    ))
    trial = CustomerCreditCreate.model_validate({
        "customer_id": w.customer.id, "product_id": "p-setup", "priority": 1, "custom_fields": {"purpose": "ai_trial"},
        "access_schedule": {"schedule_items": [{"amount": 5000, "starting_at": "2026-12-01T00:00:00Z",
                                                "ending_before": "2027-01-01T00:00:00Z"}]},
    })
    w.balances.create_customer_grant(customer_grant_document(trial, w.clock.now))
    assert w.service.evaluate_customer(w.customer.id).charged == 1  # the 5000 trial credit does not count
    assert w.balances.net_balance(w.customer.id, USD_CENTS.id, include_drafts=True) == D(7000)


# -- the external payment gate --------------------------------------------------------------------
def test_an_external_gate_grants_the_commit_once_the_payment_is_reported_paid(w):
    contract = _contract(w, spend_threshold_configuration=_spend(1000, EXTERNAL_GATE))
    _calls(w, datetime(2026, 12, 2, tzinfo=UTC), 110)  # 1100
    w.clock.now = crossed = datetime(2026, 12, 2, 5, tzinfo=UTC)
    assert w.service.evaluate_customer(w.customer.id).charged == 1
    wf = workflow_id(contract["id"], ThresholdKind.SPEND, 1)
    invoice = invoice_id(contract["id"], crossed, USD_CENTS, InvoiceType.SCHEDULED)
    assert [(m["type"], m["id"]) for m in w.publisher.messages] == [
        ("payment_gate.threshold_reached", f"payment_gate.threshold_reached:{wf}"),
        ("payment_gate.external_initiate", f"payment_gate.external_initiate:{wf}"),
    ]
    assert w.publisher.messages[1]["properties"] == {
        "workflow_type": "spend", "workflow_id": wf, "customer_id": w.customer.id, "contract_id": contract["id"],
        "invoice_id": invoice, "invoice_total": D("1000.00"), "invoice_currency": "USD",
    }
    # Pending payment: nothing is granted or invoiced, and no further crossing is decided.
    assert _purchases(w) == [] and _usage_total(w) == D("1100.00")
    _calls(w, datetime(2026, 12, 2, 3, tzinfo=UTC), 200)  # 3100
    assert w.service.evaluate_customer(w.customer.id).charged == 0

    w.clock.now = paid_at = datetime(2026, 12, 2, 7, tzinfo=UTC)
    released = w.service.release(wf, PaymentOutcome.PAID)
    assert released.status is ChargeStatus.PAID
    assert w.publisher.messages[-1] == {"id": f"payment_gate.payment_status:{wf}", "type": "payment_gate.payment_status",
                                        "properties": {"workflow_type": "spend", "workflow_id": wf, "customer_id": w.customer.id,
                                                       "contract_id": contract["id"], "invoice_id": invoice,
                                                       "payment_status": "paid", "timestamp": "2026-12-02T07:00:00Z"}}
    # The invoice announced is the one the commit is bought on; the usage invoice goes down by 1000.
    (scheduled,) = [d for d in w.invoices.list(w.customer.id)[0] if d.invoice.type is InvoiceType.SCHEDULED]
    assert (scheduled.id, scheduled.invoice.total) == (invoice, D("1000.00"))
    assert _usage_total(w) == D("2100.00")
    # Reporting it again changes nothing, and publishes nothing.
    assert w.service.release(wf, PaymentOutcome.PAID).settled_at == paid_at
    assert len(w.publisher.messages) == 3
    with pytest.raises(InvalidInput) as refused:
        w.service.release(wf, PaymentOutcome.FAILED)
    assert refused.value.field == "outcome"
    # Paid, the next crossing (2100 uncollected) is decided, and waits for its own payment.
    assert w.service.evaluate_customer(w.customer.id).charged == 1
    assert [c.status for c in w.store.charges(contract["id"])] == [ChargeStatus.PAID, ChargeStatus.PENDING_PAYMENT]


def test_a_failed_external_payment_grants_nothing_and_turns_the_configuration_off_until_updated(w):
    contract = _contract(w, prepaid_balance_threshold_configuration=_recharge(500, 2000, EXTERNAL_GATE))
    w.service.evaluate_customer(w.customer.id)
    wf = workflow_id(contract["id"], ThresholdKind.PREPAID_BALANCE, 1)
    w.clock.now = datetime(2026, 12, 1, 2, tzinfo=UTC)
    assert w.service.release(wf.upper().lower(), PaymentOutcome.FAILED).status is ChargeStatus.FAILED
    assert w.publisher.messages[-1]["properties"]["payment_status"] == "failed"
    assert w.balances.net_balance(w.customer.id, USD_CENTS.id, include_drafts=True) == 0 and _purchases(w) == []
    stored = w.contracts.get(w.customer.id, contract["id"])
    assert stored["prepaid_balance_threshold_configuration"]["is_enabled"] is False
    assert w.service.evaluate_customer(w.customer.id).charged == 0

    # Turned on again by an edit: evaluated, a new crossing (2), waiting for its payment.
    _edit(w, contract, update_prepaid_balance_threshold_configuration={"is_enabled": True})
    assert w.service.evaluate_customer(w.customer.id).charged == 1
    assert [(c.document["crossing"], c.status) for c in w.store.charges(contract["id"])] == [
        (1, ChargeStatus.FAILED), (2, ChargeStatus.PENDING_PAYMENT)]


def test_releases_of_unknown_or_ungated_workflows_are_refused(w):
    contract = _contract(w, spend_threshold_configuration=_spend(1000))
    _calls(w, datetime(2026, 12, 2, tzinfo=UTC), 100)
    w.clock.now = datetime(2026, 12, 2, 5, tzinfo=UTC)
    w.service.evaluate_customer(w.customer.id)
    with pytest.raises(NotFound):
        w.service.release(workflow_id(contract["id"], ThresholdKind.SPEND, 2), PaymentOutcome.PAID)
    with pytest.raises(InvalidInput) as refused:
        w.service.release(workflow_id(contract["id"], ThresholdKind.SPEND, 1), PaymentOutcome.PAID)
    assert refused.value.field == "workflow_id"


# -- messages exactly once ------------------------------------------------------------------------
def test_a_crash_before_the_publish_is_republished_with_the_same_id_after_the_lease(w):
    contract = _contract(w, spend_threshold_configuration=_spend(1000))
    _calls(w, datetime(2026, 12, 2, tzinfo=UTC), 100)
    w.clock.now = datetime(2026, 12, 2, 5, tzinfo=UTC)
    w.publisher.failures = 1
    with pytest.raises(ConnectionError):
        w.service.evaluate_customer(w.customer.id)  # claimed, not published: the stream retries
    assert w.publisher.messages == []
    assert _usage_total(w) == 0  # the commit counts from the claim
    outcome = w.service.evaluate_customer(w.customer.id)
    assert (outcome.charged, outcome.republished) == (0, 1)
    assert w.publisher.ids() == [f"payment_gate.threshold_reached:{workflow_id(contract['id'], ThresholdKind.SPEND, 1)}"]
    assert w.service.evaluate_customer(w.customer.id) == type(outcome)()  # published and cleared: nothing more


def test_a_contract_whose_charges_keep_changing_gives_up_for_the_stream_to_retry(w):
    _contract(w, spend_threshold_configuration=_spend(1000))
    _calls(w, datetime(2026, 12, 2, tzinfo=UTC), 100)
    w.clock.now = datetime(2026, 12, 2, 5, tzinfo=UTC)
    w.service._store = SimpleNamespace(charges=w.store.charges, claim=lambda *args: None)  # always loses the race
    with pytest.raises(ThresholdContention):
        w.service.evaluate_customer(w.customer.id)


# -- contracts and edits --------------------------------------------------------------------------
def test_configurations_show_on_v1_and_v2_contracts_and_in_the_edit_history(w):
    contract = _contract(w, spend_threshold_configuration=_spend(1000))
    record = _edit(w, contract, update_spend_threshold_configuration={"threshold_amount": 2500, "commit": {"priority": 5}},
                   add_prepaid_balance_threshold_configuration=_recharge(500, 2000, is_enabled=False))
    document = w.contracts.get(w.customer.id, contract["id"])
    view = ContractView(w.clock.now)
    v1 = contract_json(document, w.contracts.contract(document), w.contracts.products(), view)
    v2 = contract_v2_json(document, w.contracts.contract(document), w.contracts.products(), view)
    spend = {"commit": {"product_id": "p-setup", "name": "Early charge", "priority": 5}, "is_enabled": True,
             "payment_gate_config": {"payment_gate_type": "NONE"}, "threshold_amount": 2500}
    for body in (v1, v1["current"], v2):
        assert body["spend_threshold_configuration"] == spend
        assert body["prepaid_balance_threshold_configuration"]["recharge_to_amount"] == 2000
    history = edit_json(record, document, w.contracts.contract(document), w.contracts.products(), view)
    assert history["update_spend_threshold_configuration"] == {"threshold_amount": 2500, "commit": {"priority": 5}}
    assert history["add_prepaid_balance_threshold_configuration"]["threshold_amount"] == 500


@pytest.mark.parametrize(
    "body, field",
    [
        pytest.param({"add_spend_threshold_configuration": _spend(1000)}, "add_spend_threshold_configuration",
                     id="a second spend threshold"),
        pytest.param({"update_prepaid_balance_threshold_configuration": {"threshold_amount": 10}},
                     "update_prepaid_balance_threshold_configuration", id="an update of a threshold the contract has not"),
        pytest.param({"update_spend_threshold_configuration": {"commit": {"product_id": "p-calls"}}},
                     "update_spend_threshold_configuration.commit.product_id", id="a commit product that is not FIXED"),
        pytest.param({"update_spend_threshold_configuration": {"threshold_amount": -1}},
                     "update_spend_threshold_configuration.threshold_amount", id="a negative threshold"),
        pytest.param({"add_prepaid_balance_threshold_configuration": _recharge(500, 2000, EXTERNAL_GATE) | {"commit": {"product_id": "nope"}}},
                     "add_prepaid_balance_threshold_configuration.commit.product_id", id="an unknown commit product"),
    ],
)
def test_edits_refused_name_their_field_and_change_nothing(w, body, field):
    contract = _contract(w, spend_threshold_configuration=_spend(1000))
    before = w.contracts.get(w.customer.id, contract["id"])
    with pytest.raises(InvalidInput) as refused:
        _edit(w, contract, **body)
    assert refused.value.field == field
    assert w.contracts.get(w.customer.id, contract["id"]) == before


def test_a_contract_created_with_a_stripe_config_without_the_stripe_gate_or_an_unknown_product_is_refused(w):
    with pytest.raises(InvalidInput) as refused:
        _contract(w, spend_threshold_configuration=_spend(1000, {"payment_gate_type": "NONE",
                                                                 "stripe_config": {"payment_type": "INVOICE"}}))
    assert refused.value.field == "spend_threshold_configuration.payment_gate_config.stripe_config"
    with pytest.raises(InvalidInput) as refused:
        _contract(w, spend_threshold_configuration=_spend(1000) | {"commit": {"product_id": "p-calls"}})
    assert refused.value.field == "spend_threshold_configuration.commit.product_id"
