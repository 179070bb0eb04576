"""Random edit sequences against a model (hypothesis; moto DynamoDB, the fake catalog and usage).

A contract with 3 seats in advance and metered calls starts Oct 1 2026; October and the Nov 1
seats are finalized; "now" is Nov 24. Each example sends a random sequence of edits (quantity
changes, half-price overrides on calls, overrides removed, one-off charges, end dates), some
effective inside the finalized month. The test keeps its own model of the contract's terms and of
which edits Metronome's rules let through, then checks:
- every edit the model refuses is refused and changes nothing, and every other one goes through;
- the drafts the service prices from the edited contract are the invoices the engine prices from
  the model's final terms, built here directly as an engine Contract;
- the finalized invoices are byte-identical to what was stored before any edit.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

from tally.api.contract_edit_models import ContractEdit
from tally.billing import exact_json
from tally.billing.errors import InvalidInput
from tally.billing.pricing import Contract, Override, ScheduledCharge, ScheduleItem, Subscription, build_draft_invoices
from tally.billing.pricing.overrides import OverrideType
from tally.billing.pricing.periods import Frequency
from tally.billing.pricing.subscriptions import CollectionSchedule, QuantityChange
from tally.billing.time import format_rfc3339
from tally.services.customers import CustomerService
from tally.services.invoices import invoice_id
from tests.conftest import examples
from tests.service.test_contract_edits import w  # noqa: F401 - the fixture
from tests.service.test_cycle_close import BARE, GRACE, NOV, OCT, SEATS, _stored_records
from tests.service.test_contracts_service import _request

UTC = timezone.utc
DAY = timedelta(days=1)
NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)
# Instants edits name: every day from Oct 15 to Dec 31, at midnight.
DAYS = [datetime(2026, 10, 15, tzinfo=UTC) + n * DAY for n in range(78)]


@dataclass
class Model:
    """The contract's terms as the test understands the edits, with what the finalized month forbids."""

    quantities: list[tuple[datetime, str, Decimal]] = field(default_factory=list)  # (at, kind, value), in the order sent
    overrides: list[tuple[str, datetime, Decimal]] = field(default_factory=list)  # (id, start, multiplier)
    charges: list[tuple[str, str, datetime, Decimal]] = field(default_factory=list)  # (id, item id, at, amount)
    end: datetime | None = None

    def schedule(self) -> tuple[Decimal, tuple[QuantityChange, ...]]:
        """Changes on their dates, in the order sent; a delta adds to the quantity in force then."""
        quantity, at_quantity = Decimal(3), {}
        for at, kind, value in sorted(self.quantities, key=lambda q: q[0]):  # sorted() is stable: order sent
            quantity = value if kind == "quantity" else quantity + value
            at_quantity[at] = quantity
        return Decimal(3), tuple(QuantityChange(at, q) for at, q in sorted(at_quantity.items()))

    def allows(self, change: tuple) -> bool:
        kind = change[0]
        if kind == "quantity":  # nothing before Nov 1; Nov 1 itself is the finalized seats invoice
            return change[1] > NOV
        if kind == "override":  # calls are usage only: from Nov 1 on
            return change[1] >= NOV
        if kind == "charge":  # after the finalized invoices, inside the contract
            return change[1] > NOV and (self.end is None or change[1] < self.end)
        if kind == "end":  # before a finalized period is allowed (Metronome's default); not before a charge
            return all(change[1] is None or at < change[1] for _, _, at, _ in self.charges)
        return bool(self.overrides)  # remove: one of the overrides added


changes = st.lists(
    st.one_of(
        st.tuples(st.just("quantity"), st.sampled_from(DAYS), st.sampled_from(["quantity", "quantity_delta"]),
                  st.integers(1, 9)),
        st.tuples(st.just("override"), st.sampled_from(DAYS), st.sampled_from(["0.5", "0.25", "2"])),
        st.tuples(st.just("charge"), st.sampled_from(DAYS), st.integers(1, 500)),
        st.tuples(st.just("end"), st.one_of(st.none(), st.sampled_from(DAYS[5:]))),
        st.tuples(st.just("remove"), st.integers(0, 5)),
    ),
    min_size=1,
    max_size=6,
)


def _body(change: tuple, model: Model, sub_id: str) -> dict:
    kind = change[0]
    if kind == "quantity":
        return {"update_subscriptions": [{"subscription_id": sub_id, "quantity_updates": [
            {"starting_at": format_rfc3339(change[1]), change[2]: change[3]}]}]}
    if kind == "override":
        return {"add_overrides": [{"starting_at": format_rfc3339(change[1]), "product_id": "p-calls",
                                   "type": "MULTIPLIER", "multiplier": change[2]}]}
    if kind == "charge":
        return {"add_scheduled_charges": [{"product_id": "p-setup", "schedule": {
            "schedule_items": [{"timestamp": format_rfc3339(change[1]), "amount": change[2]}]}}]}
    if kind == "end":
        return {"update_contract_end_date": None if change[1] is None else format_rfc3339(change[1])}
    override_id = model.overrides[change[1] % len(model.overrides)][0] if model.overrides else "none"
    return {"remove_overrides": [{"id": override_id}]}


def _record(change: tuple, model: Model, record: dict) -> None:
    kind = change[0]
    if kind == "quantity":
        model.quantities.append((change[1], "delta" if change[2] == "quantity_delta" else "quantity", Decimal(change[3])))
    elif kind == "override":
        model.overrides.append((record["add_overrides"][0]["id"], change[1], Decimal(change[2])))
    elif kind == "charge":
        charge = record["add_scheduled_charges"][0]
        model.charges.append((charge["id"], charge["schedule_items"][0]["id"], change[1], Decimal(change[2])))
    elif kind == "end":
        model.end = change[1]
    else:
        (removed,) = record["remove_overrides"]
        model.overrides = [o for o in model.overrides if o[0] != removed]


def _model_contract(w, model: Model, contract_id: str, customer_id: str, sub_id: str) -> Contract:
    initial, quantity_updates = model.schedule()
    return Contract(
        id=contract_id,
        customer_id=customer_id,
        starting_at=OCT,
        rate_card=w.contracts._catalog.rate_card("rc-std"),
        ending_before=model.end,
        overrides=tuple(Override(i, start, type=OverrideType.MULTIPLIER, product_id="p-calls", multiplier=m)
                        for i, start, m in model.overrides),
        subscriptions=(Subscription(sub_id, "p-seats", CollectionSchedule.ADVANCE, Frequency.MONTHLY, OCT, initial,
                                    quantity_updates=quantity_updates),),
        scheduled_charges=tuple(ScheduledCharge(i, "p-setup", (ScheduleItem(at, amount),))
                                for i, _, at, amount in sorted(model.charges, key=lambda c: c[2])),
    )


def _invoices(invoices) -> list[tuple]:
    return sorted(
        (i.type.value, i.starting_at, i.total, tuple((l.product_id, l.quantity, l.total, l.starting_at) for l in i.line_items))
        for i in invoices
    )


@settings(max_examples=examples(15), deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(sequence=changes)
def test_random_edits_price_as_their_final_terms_and_never_touch_a_finalized_invoice(w, sequence):  # noqa: F811
    w.clock.now = NOW
    tag = uuid.uuid4().hex[:8]
    customer = CustomerService(w.billing, w.clock).create(f"Prop {tag}", [f"prop-{tag}"], None, {})
    contract = w.contracts.create(_request(customer.id, **(BARE | {"subscriptions": SEATS})))
    sub_id = contract["subscriptions"][0]["id"]
    w.usage.calls[:] = [(datetime(2026, 10, 10, tzinfo=UTC), 10), (datetime(2026, 11, 3, tzinfo=UTC), 20),
                        (datetime(2026, 11, 18, tzinfo=UTC), 40)]
    w.service.finalize(customer.id, contract["id"], OCT, NOV + GRACE)
    w.service.finalize(customer.id, contract["id"], NOV, NOV + GRACE)
    records = [r for r in _stored_records(w) if customer.id in str(r)]
    assert len(records) == 3  # October's usage and seats, the Nov 1 seats

    note(f"edits: {sequence}")
    model, accepted = Model(), 0
    for change in sequence:
        expected = model.allows(change)
        event(f"{change[0]} {'allowed' if expected else 'refused'}")
        before = w.contracts.get(customer.id, contract["id"])
        body = {"customer_id": customer.id, "contract_id": contract["id"], **_body(change, model, sub_id)}
        request = ContractEdit.model_validate(exact_json.loads(exact_json.dumps(body)))
        try:
            record = w.edits.edit(customer.id, contract["id"], request.changes(), author="prop")
        except InvalidInput as refused:
            assert not expected, f"{change} refused: {refused}"
            assert w.contracts.get(customer.id, contract["id"]) == before
            continue
        assert expected, f"{change} went through"
        _record(change, model, record)
        accepted += 1

    assert [r for r in _stored_records(w) if customer.id in str(r)] == records
    finalized = {r.slot for r in w.store.list_for_customer(customer.id)}
    served = [d.invoice for d in w.invoices.list(customer.id)[0] if d.invoice.status == "DRAFT"]
    engine = _model_contract(w, model, contract["id"], customer.id, sub_id)
    products = w.contracts.products()
    priced = [
        invoice
        for period in engine.periods(until=NOW)
        if period.starting_at <= NOW
        for invoice in build_draft_invoices(engine, products, period, w.usage)
        if invoice_id(engine.id, invoice.starting_at, invoice.credit_type, invoice.type) not in finalized
        and not (invoice.type.value == "USAGE" and period.starting_at == OCT)  # October is closed
    ]
    assert _invoices(served) == _invoices(priced)
    assert len(w.edits.history(customer.id, contract["id"])) == accepted  # one entry per edit that went through
