"""Balance checkpoints: cycle close stores one per customer with each finalization (each grant's
segments as of the start of the first period that still has a draft), and reads of the current
drafts and of the balances start from it. Property: for random histories of months with usage, a
prepaid commit, a credit and rollover, finalized in turn, with voids, regenerates, contract edits
of the grants, customer-level credits dated in the past and backdated manual ledger entries, every
draft and every balance read through the checkpoint equals the whole replay's, after every step.
moto DynamoDB, the contracts tests' catalog, a fake clock."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tally.api.balance_models import CustomerCreditCreate, customer_grant_document
from tally.api.contract_edit_models import ContractEdit
from tally.billing import exact_json
from tally.billing.balances import net_balance
from tally.billing.errors import InvalidInput, NotFound, TallyError
from tally.billing.pricing import USD_CENTS, InvoiceType
from tally.adapters.dynamo.documents import DynamoContractStore
from tally.services.contract_edits import ContractEditService
from tally.services.invoices import InvoiceService, invoice_id
from tests.service.test_contracts_service import FakeCatalog, FakeUsage, _commit, _request
from tests.service.test_cycle_close import BARE, SEATS, _world
from tests.service.test_invoice_reuse_property import GRACE, MONTHS, _rfc

UTC = timezone.utc
OCT = MONTHS[0]

steps = st.lists(
    st.one_of(
        st.tuples(st.just("void"), st.integers(0, 3), st.booleans()),  # a month's USAGE invoice, then regenerate?
        st.tuples(st.just("manual"), st.integers(0, 3), st.integers(-300, 300)),  # dated in that month
        st.tuples(st.just("credit"), st.integers(0, 3), st.integers(1, 400)),  # customer-level, from that month
        st.tuples(st.just("edit"), st.integers(0, 4), st.integers(0, 700)),  # a commit segment's amount
    ),
    max_size=2,
)
histories = st.fixed_dictionaries({
    "calls": st.lists(st.integers(0, 400), min_size=5, max_size=5),  # API calls in each month (2 cents each)
    "commit": st.lists(st.integers(0, 600), min_size=5, max_size=5),  # a prepaid commit's monthly segments
    "rollover": st.sampled_from([None, "0.5"]),
    "credit": st.integers(100, 1500),  # a free credit over the five months
    "seats": st.booleans(),
    "closed": st.integers(1, 4),  # months finalized, from October
    "steps": st.lists(steps, min_size=4, max_size=4),  # after each month's finalization
})


class _World:
    def __init__(self, dynamo, clock) -> None:
        self.usages: dict[str, FakeUsage] = {}
        self.w = _world(dynamo, clock, FakeCatalog(), lambda customer: self.usages[customer.id])
        w = self.w
        self.reference = InvoiceService(w.contracts, lambda c: self.usages[c.id], clock, w.balances._book, w.store,
                                        reuse_settled=False)
        self.edits = ContractEditService(w.contracts, DynamoContractStore(dynamo["billing"], dynamo["client"]), w.store,
                                         clock, sleep=lambda _: None)


def _answers(service: InvoiceService, customer_id: str, drafts: list[str]) -> list:
    invoices = []
    for invoice_id_ in drafts:
        try:
            invoices.append(service.get(customer_id, invoice_id_).invoice)
        except NotFound:
            invoices.append(None)
    burn = service.balances_burn_down(customer_id) if service._reuse_settled else service.burn_down(customer_id)
    return invoices + [burn.balances, burn.true_ups, burn.unapplied_manual, burn.unapplied_frozen, net_balance(burn)]


def _same(world: _World, customer_id: str, contract_id: str, month: datetime) -> None:
    """The open month's drafts (USAGE, and SCHEDULED at its start) and the balances, both ways."""
    drafts = [invoice_id(contract_id, month, USD_CENTS), invoice_id(contract_id, month, USD_CENTS, InvoiceType.SCHEDULED)]
    assert _answers(world.w.invoices, customer_id, drafts) == _answers(world.reference, customer_id, drafts)


def _step(world: _World, customer_id: str, contract: dict, step: tuple, latest: int) -> None:
    """One change of the past: its month is at most `latest`, the month finalized last."""
    w = world.w
    kind, month, value = step
    month = min(month, latest)
    try:
        if kind == "void":
            usage = next((r for r in w.store.list_for_customer(customer_id)
                          if r.period_start == MONTHS[month] and r.invoice.type.value == "USAGE" and r.status == "FINALIZED"), None)
            if usage is not None:
                w.service.void(usage.id)
                if value:
                    w.service.regenerate(usage.id)
        elif kind == "manual":
            grants = w.balances.grants(customer_id).grants
            segments = [(g.id, s) for g in grants for s in g.access_schedule if s.covers(MONTHS[month] + timedelta(days=2))]
            if segments:
                grant_id, segment = segments[0]
                w.balances.add_manual_entry(customer_id, grant_id, segment.id, Decimal(value), "backdated",
                                            MONTHS[month] + timedelta(days=2), None)
        elif kind == "credit":
            request = CustomerCreditCreate.model_validate({
                "customer_id": customer_id, "product_id": "p-setup", "priority": 2,
                "access_schedule": {"schedule_items": [{"amount": value, "starting_at": _rfc(MONTHS[month]),
                                                        "ending_before": _rfc(MONTHS[month + 1])}]},
            })
            w.balances.create_customer_grant(customer_grant_document(request, w.clock.now))
        elif kind == "edit":
            commits = w.contracts.get(customer_id, contract["id"]).get("commits") or []
            if commits:
                segments = commits[0]["access_schedule"]
                segment = segments[min(month, len(segments) - 1)]
                request = {"customer_id": customer_id, "contract_id": contract["id"], "update_commits": [
                    {"commit_id": commits[0]["id"], "access_schedule": {"update_schedule_items": [
                        {"id": segment["id"], "amount": value}]}}]}
                parsed = ContractEdit.model_validate(exact_json.loads(exact_json.dumps(request)))
                world.edits.edit(customer_id, contract["id"], parsed.changes(), author="test", uniqueness_key=None,
                                 allow_ending_before_finalized=False)
    except (InvalidInput, TallyError):
        pass  # refused as it would change a finalized drawdown or overdraw: nothing changed


def _history(steps: list, closed: int = 2, credit: int = 1000) -> dict:
    return {"calls": [100] * 5, "commit": [150] * 5, "rollover": None, "credit": credit, "seats": False, "closed": closed,
            "steps": steps + [[]] * (4 - len(steps))}


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(history=histories)
@example(history=_history([[("void", 0, False)]]))  # October's credit drawdown given back
@example(history=_history([[("manual", 0, -250), ("credit", 0, 120)], [("edit", 1, 90)]], closed=3))
def test_reads_through_the_checkpoint_equal_the_whole_replay(dynamo, clock, history):
    world = getattr(test_reads_through_the_checkpoint_equal_the_whole_replay, "world", None)
    if world is None or world.w.store._table != dynamo["billing"]:
        world = test_reads_through_the_checkpoint_equal_the_whole_replay.world = _World(dynamo, clock)
    w = world.w
    clock.now = OCT - timedelta(days=1)
    customer_id = w.customer.id if not world.usages else None
    if customer_id is None:
        from tally.services.customers import CustomerService
        customer_id = CustomerService(w.billing, clock).create(f"Acme {len(world.usages)}", [f"acme-ckpt-{len(world.usages)}"], None, {}).id
    world.usages[customer_id] = FakeUsage([(MONTHS[n] + timedelta(days=3), calls) for n, calls in enumerate(history["calls"])])
    segments = [{"amount": amount, "starting_at": _rfc(MONTHS[n]), "ending_before": _rfc(MONTHS[n + 1])}
                for n, amount in enumerate(history["commit"])]
    commit = _commit(access_schedule={"schedule_items": segments})
    if history["rollover"]:
        commit["rollover_fraction"] = Decimal(history["rollover"])
    grants = {"commits": [commit]}
    grants["credits"] = [_commit(type=None, priority=1, access_schedule={"schedule_items": [
        {"amount": history["credit"], "starting_at": _rfc(OCT), "ending_before": _rfc(MONTHS[5])}]})]
    contract = w.contracts.create(_request(customer_id, **(BARE | {"subscriptions": SEATS if history["seats"] else []} | grants)))

    for n in range(history["closed"]):
        clock.now = MONTHS[n + 1] + GRACE
        w.service.finalize(customer_id, contract["id"], MONTHS[n], clock.now)
        clock.now = MONTHS[n + 1] + timedelta(days=5)  # mid-month: the next month's draft is open
        checkpoint = w.store.checkpoint(customer_id)
        assert checkpoint is None or checkpoint.burn.at <= MONTHS[n + 1]
        _same(world, customer_id, contract["id"], MONTHS[n + 1])
        for step in history["steps"][n]:
            _step(world, customer_id, contract, step, n)
            _same(world, customer_id, contract["id"], MONTHS[n + 1])


def test_a_finalization_stores_a_checkpoint_that_reads_use_and_a_void_drops(dynamo, clock):
    """Three months finalized: the checkpoint is at January 1st, and the January draft reads no
    stored invoice. Voiding October gives its credit drawdown back: the checkpoint is dropped, and
    the next read replays everything and stores a new one (so does a read after a contract edit or
    a backdated ledger entry)."""
    world = _World(dynamo, clock)
    w = world.w
    customer_id = w.customer.id
    world.usages[customer_id] = FakeUsage([(MONTHS[n] + timedelta(days=3), 100) for n in range(4)])
    segments = [{"amount": 150, "starting_at": _rfc(MONTHS[n]), "ending_before": _rfc(MONTHS[n + 1])} for n in range(4)]
    credit = _commit(type=None, priority=1, access_schedule={"schedule_items": [
        {"amount": 300, "starting_at": _rfc(OCT), "ending_before": _rfc(MONTHS[5])}]})
    contract = w.contracts.create(_request(customer_id, **(BARE | {
        "commits": [_commit(access_schedule={"schedule_items": segments})], "credits": [credit]})))
    october = None
    for n in range(3):
        clock.now = MONTHS[n + 1] + GRACE
        finalized = w.service.finalize(customer_id, contract["id"], MONTHS[n], clock.now)
        october = october or finalized["finalized"][0]
    clock.now = MONTHS[3] + timedelta(days=5)
    checkpoint = w.store.checkpoint(customer_id)
    assert checkpoint is not None and checkpoint.burn.at == MONTHS[3] and checkpoint.listed_from == MONTHS[3]
    assert w.store.list_since(customer_id, checkpoint.listed_from) == []  # the draft reads no stored invoice
    _same(world, customer_id, contract["id"], MONTHS[3])
    # A ledger entry dated in October: the digest no longer matches, the next read makes another.
    before = w.store.checkpoint(customer_id).burn.manual_digest
    credit = w.contracts.get(customer_id, contract["id"])["credits"][0]
    w.balances.add_manual_entry(customer_id, credit["id"], credit["access_schedule"][0]["id"], Decimal(25), "goodwill",
                                OCT + timedelta(days=4), None)
    _same(world, customer_id, contract["id"], MONTHS[3])
    assert w.store.checkpoint(customer_id).burn.manual_digest != before
    assert w.store.checkpoint(customer_id).burn.at == MONTHS[3]
    w.service.void(october)
    assert w.store.checkpoint(customer_id) is None
    _same(world, customer_id, contract["id"], MONTHS[3])
    # That read made a new one, at October (awaiting its regenerate), which the next reads use.
    assert w.store.checkpoint(customer_id).burn.at == OCT
    _same(world, customer_id, contract["id"], MONTHS[3])
    # A contract edit (a new scheduled charge in January): the one stored does not hold, a read
    # makes another.
    world.edits.edit(customer_id, contract["id"], ContractEdit.model_validate({
        "customer_id": customer_id, "contract_id": contract["id"], "add_scheduled_charges": [
            {"product_id": "p-setup", "schedule": {"schedule_items": [{"timestamp": "2027-01-10T00:00:00Z", "amount": 70}]}}],
    }).changes(), author="test", uniqueness_key=None, allow_ending_before_finalized=False)
    assert w.store.checkpoint(customer_id).contracts != ((contract["id"], stored_version(w, customer_id, contract["id"])),)
    _same(world, customer_id, contract["id"], MONTHS[3])
    assert w.store.checkpoint(customer_id).contracts == ((contract["id"], stored_version(w, customer_id, contract["id"])),)


def stored_version(w, customer_id: str, contract_id: str) -> int:
    return w.contracts.get(customer_id, contract_id)["_version"]
