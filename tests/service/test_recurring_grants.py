"""Recurring commits and credits, discounts and professional services through the services, on moto
DynamoDB: the cycle close world (tests/service/test_cycle_close.py), a contract from Oct 1 2026 to
Jan 1 2027 billed monthly; API calls at 2 cents until Nov 15, then 1 cent for the first 100 of a
month and 0.5 after. Every total is worked out by hand next to its assertion.
"""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest

from tally.adapters.dynamo.documents import DynamoContractStore
from tally.api.contract_edit_models import ContractEdit, edit_json
from tally.api.contract_models import ContractView, ScheduleProServicesInvoice, contract_json
from tally.api.contract_v2_models import contract_v2_json
from tally.billing import exact_json
from tally.billing.errors import InvalidInput
from tally.billing.pricing import USD_CENTS, InvoiceType
from tally.services.contract_edits import ContractEditService
from tally.services.invoices import invoice_id
from tally.services.professional_services import ProServiceInvoicing
from tests.service.test_contracts_service import FakeCatalog, FakeUsage, _request
from tests.service.test_cycle_close import BARE, GRACE, NOV, OCT, _stored_records, _world

UTC = timezone.utc
D = Decimal
DEC = datetime(2026, 12, 1, tzinfo=UTC)
JAN_2027 = "2027-01-01T00:00:00Z"

MONTHLY_CREDIT = {  # 100 a month, half of what is left rolls into the next month; burns first
    "product_id": "p-setup", "priority": 1, "name": "Monthly credit", "starting_at": "2026-10-01T00:00:00Z",
    "access_amount": {"unit_price": 100, "quantity": 1}, "commit_duration": {"value": 1}, "rollover_fraction": 0.5,
}
MONTHLY_COMMIT = {  # 500 of usage a month, bought for 400 at the start of each month
    "product_id": "p-setup", "priority": 2, "name": "Monthly commit", "starting_at": "2026-10-01T00:00:00Z",
    "access_amount": {"unit_price": 500, "quantity": 1}, "commit_duration": {"value": 1},
    "invoice_amount": {"unit_price": 400, "quantity": 1, "credit_type_id": USD_CENTS.id},
}


@pytest.fixture()
def w(dynamo, clock):
    clock.now = datetime(2026, 12, 20, tzinfo=UTC)
    usage = FakeUsage([])
    world = _world(dynamo, clock, FakeCatalog(), lambda customer: usage)
    world.usage = usage
    store = DynamoContractStore(dynamo["billing"], dynamo["client"])
    world.edits = ContractEditService(world.contracts, store, world.store, clock, sleep=lambda _: None)
    world.pro_services = ProServiceInvoicing(world.contracts, store, world.store, clock)
    return world


def _contract(w, **parts) -> dict:
    return w.contracts.create(_request(w.customer.id, **(BARE | {"ending_before": JAN_2027} | parts)))


def _stored(w, contract: dict) -> dict:
    return w.contracts.get(w.customer.id, contract["id"])


def _edit(w, contract: dict, **body) -> dict:
    request = {"customer_id": w.customer.id, "contract_id": contract["id"], **body}
    parsed = ContractEdit.model_validate(exact_json.loads(exact_json.dumps(request)))
    return w.edits.edit(w.customer.id, contract["id"], parsed.changes(), author="key-1")


def _invoices(w) -> dict[tuple[str, datetime], object]:
    return {(d.invoice.type.value, d.invoice.starting_at): d.invoice for d in w.invoices.list(w.customer.id)[0]}


def _made(w, contract: dict, kind: str) -> list[dict]:
    """The contract's commits or credits (those its recurring ones made included), as v1 get shows them."""
    document = _stored(w, contract)
    view = ContractView(w.clock.now, figures=w.balances.figures(w.customer.id, with_balances=True), include_balance=True)
    return contract_json(document, w.contracts.contract(document), w.contracts.products(), view)["current"][kind]


def test_a_monthly_credit_with_rollover_and_a_monthly_prepaid_commit_over_three_months(w):
    contract = _contract(w, recurring_credits=[MONTHLY_CREDIT], recurring_commits=[MONTHLY_COMMIT])
    w.usage.calls += [
        (datetime(2026, 10, 10, tzinfo=UTC), 30),  # 30 × 2 = 60
        (datetime(2026, 11, 10, tzinfo=UTC), 400),  # 400 × 2 = 800
        (datetime(2026, 12, 10, tzinfo=UTC), 150),  # 100 × 1 + 50 × 0.5 = 125
    ]
    credits, commits = _made(w, contract, "credits"), _made(w, contract, "commits")
    credit_ids = [c["id"] for c in credits]
    commit_ids = [c["id"] for c in commits]
    recurring = _stored(w, contract)
    assert {c["recurring_credit_id"] for c in credits} == {recurring["recurring_credits"][0]["id"]}
    assert {c["recurring_commit_id"] for c in commits} == {recurring["recurring_commits"][0]["id"]}
    assert [(c["access_schedule"]["schedule_items"][0]["starting_at"], c["access_schedule"]["schedule_items"][0]["amount"])
            for c in credits] == [("2026-10-01T00:00:00Z", 100), ("2026-11-01T00:00:00Z", 100), ("2026-12-01T00:00:00Z", 100)]
    assert [c["created_at"] for c in commits] == ["2026-10-01T00:00:00Z", "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z"]

    invoices = _invoices(w)

    def applied(month: datetime) -> list[tuple]:
        return [(line.commit_id, line.total) for line in invoices[("USAGE", month)].line_items if line.commit_id]

    # October: the credit (priority 1) pays all 60; 40 is left, 20 of it rolls into November.
    assert applied(OCT) == [(credit_ids[0], D("-60.00"))]
    # November, 800: the rollover first (20, October's credit), then November's credit (100), then
    # November's commit (500); 180 is left to pay.
    assert sorted(applied(NOV)) == sorted([(credit_ids[0], D("-20.00")), (credit_ids[1], D("-100.00")),
                                           (commit_ids[1], D("-500.00"))])
    assert invoices[("USAGE", NOV)].total == D("180.00")
    # December, 125: November's credit had nothing left to roll over; December's credit pays 100,
    # December's commit 25.
    assert sorted(applied(DEC)) == sorted([(credit_ids[2], D("-100.00")), (commit_ids[2], D("-25.00"))])
    assert invoices[("USAGE", DEC)].total == D(0)
    # Each month's commit is bought on the SCHEDULED invoice at the month's start.
    for month, commit_id in zip((OCT, NOV, DEC), commit_ids):
        scheduled = invoices[("SCHEDULED", month)]
        assert [(l.type.value, l.commit_id, l.total) for l in scheduled.line_items] == [("commit_purchase", commit_id, D("400.00"))]

    # Dec 20: only December's grants are active: the credit is spent, the commit has 500 - 25.
    assert [c["balance"] for c in credits] == [0, 0, 0]
    assert [c["balance"] for c in _made(w, contract, "commits")] == [0, 0, D(475)]
    assert w.balances.net_balance(w.customer.id, USD_CENTS.id, include_drafts=True) == D(475)
    october_ledger = [(e.type.value, e.amount) for e in w.balances.burn_down(w.customer.id).grant_ledger(credit_ids[0])]
    assert october_ledger == [
        ("CREDIT_SEGMENT_START", D(100)), ("CREDIT_AUTOMATED_INVOICE_DEDUCTION", D("-60.00")),
        ("CREDIT_ROLLOVER", D("-20.00")), ("CREDIT_EXPIRATION", D("-20.00")),
        ("CREDIT_SEGMENT_START", D("20.00")), ("CREDIT_AUTOMATED_INVOICE_DEDUCTION", D("-20.00")),
    ]


def test_recurring_grants_show_in_v1_and_v2_answers(w):
    contract = _contract(w, recurring_credits=[MONTHLY_CREDIT], recurring_commits=[dict(MONTHLY_COMMIT, recurrence_frequency="MONTHLY")])
    document = _stored(w, contract)
    v1 = contract_json(document, w.contracts.contract(document), w.contracts.products(), ContractView(w.clock.now))
    v2 = contract_v2_json(document, w.contracts.contract(document), w.contracts.products(), ContractView(w.clock.now))
    for terms in (v1["current"], v1["initial"], v2):
        (commit,) = terms["recurring_commits"]
        assert (commit["access_amount"]["unit_price"], commit["invoice_amount"]["unit_price"], commit["anchor_date"],
                commit["proration"], commit["recurrence_frequency"]) == (500, 400, "2026-10-01T00:00:00Z", "FIRST_AND_LAST", "MONTHLY")
        (credit,) = terms["recurring_credits"]
        assert (credit["rollover_fraction"], credit["priority"], credit["contract"]) == (D("0.5"), 1, {"id": contract["id"]})
        assert len(terms["commits"]) == 3 and len(terms["credits"]) == 3


def test_a_first_period_cut_by_a_mid_month_start_is_prorated_and_so_is_its_invoice(w):
    # Oct 16 to Nov 1 is 16 of October's 31 days: access 6200 × 16/31 = 3200, invoice 3100 × 16/31 = 1600.
    commit = dict(MONTHLY_COMMIT, starting_at="2026-10-16T00:00:00Z", access_amount={"unit_price": 6200, "quantity": 1},
                  invoice_amount={"unit_price": 3100, "quantity": 1, "credit_type_id": USD_CENTS.id})
    _contract(w, recurring_commits=[commit], ending_before="2026-12-01T00:00:00Z")
    invoices = _invoices(w)
    assert [l.total for l in invoices[("SCHEDULED", datetime(2026, 10, 16, tzinfo=UTC))].line_items] == [D("1600.00")]
    assert [l.total for l in invoices[("SCHEDULED", NOV)].line_items] == [D("3100.00")]
    burn = w.balances.burn_down(w.customer.id)
    assert sorted(b.starting_amount for b in burn.balances) == [D("3200.00"), D(6200)]


def test_an_edit_adds_a_recurring_credit_and_updates_a_recurring_commit_for_what_has_not_started(w):
    w.clock.now = datetime(2026, 11, 24, tzinfo=UTC)
    contract = _contract(w, recurring_commits=[MONTHLY_COMMIT])
    commit_id = _stored(w, contract)["recurring_commits"][0]["id"]
    record = _edit(
        w, contract,
        add_recurring_credits=[dict(MONTHLY_CREDIT, starting_at="2026-12-01T00:00:00Z")],
        update_recurring_commits=[{"recurring_commit_id": commit_id, "access_amount": {"unit_price": 800},
                                   "invoice_amount": {"unit_price": 600}}],
    )
    # October's and November's commits had started on Nov 24: unchanged. December's is new.
    commits = _made(w, contract, "commits")
    assert [c["access_schedule"]["schedule_items"][0]["amount"] for c in commits] == [500, 500, 800]
    invoices = _invoices(w)
    assert [l.total for l in invoices[("SCHEDULED", NOV)].line_items] == [D("400.00")]
    w.clock.now = datetime(2026, 12, 2, tzinfo=UTC)
    assert [l.total for l in _invoices(w)[("SCHEDULED", DEC)].line_items] == [D("600.00")]
    credits = _made(w, contract, "credits")
    assert [c["access_schedule"]["schedule_items"][0]["starting_at"] for c in credits] == ["2026-12-01T00:00:00Z"]
    # The current definition, and one history entry with both changes.
    document = _stored(w, contract)
    (shown,) = contract_json(document, w.contracts.contract(document), w.contracts.products())["current"]["recurring_commits"]
    assert (shown["access_amount"]["unit_price"], shown["invoice_amount"]["unit_price"]) == (800, 600)
    entry = edit_json(record, document, w.contracts.contract(document), w.contracts.products(), ContractView())
    assert [c["starting_at"] for c in entry["add_recurring_credits"]] == ["2026-12-01T00:00:00Z"]
    assert entry["update_recurring_commits"] == [{"id": commit_id, "access_amount": {"unit_price": 800},
                                                  "invoice_amount": {"unit_price": 600}}]
    assert len(w.edits.history(w.customer.id, contract["id"])) == 1


def test_an_update_can_start_billing_a_complimentary_recurring_commit(w):
    w.clock.now = datetime(2026, 11, 24, tzinfo=UTC)
    complimentary = {k: v for k, v in MONTHLY_COMMIT.items() if k != "invoice_amount"}
    contract = _contract(w, recurring_commits=[complimentary])
    commit_id = _stored(w, contract)["recurring_commits"][0]["id"]
    with pytest.raises(InvalidInput) as refused:
        _edit(w, contract, update_recurring_commits=[{"recurring_commit_id": commit_id, "invoice_amount": {"unit_price": 300}}])
    assert refused.value.field == "update_recurring_commits[0].invoice_amount"
    _edit(w, contract, update_recurring_commits=[{"recurring_commit_id": commit_id,
                                                  "invoice_amount": {"unit_price": 300, "quantity": 2}}])
    w.clock.now = datetime(2026, 12, 2, tzinfo=UTC)
    invoices = _invoices(w)
    assert ("SCHEDULED", NOV) not in invoices  # November's commit stays complimentary
    assert [l.total for l in invoices[("SCHEDULED", DEC)].line_items] == [D("600.00")]  # 2 × 300
    document = _stored(w, contract)
    (shown,) = contract_json(document, w.contracts.contract(document), w.contracts.products())["current"]["recurring_commits"]
    assert shown["invoice_amount"] == {"unit_price": 300, "quantity": 2, "credit_type_id": USD_CENTS.id}


FROZEN = [
    ("a recurring commit billed on the finalized October invoice", {"add_recurring_commits": [MONTHLY_COMMIT]},
     "add_recurring_commits[0].starting_at"),
    ("a discount on the finalized Nov 1 invoice", {"add_discounts": [
        {"product_id": "p-setup", "schedule": {"schedule_items": [{"timestamp": "2026-11-01T00:00:00Z", "amount": 50}]}}]},
     "add_discounts[0].schedule.schedule_items[0].timestamp"),
    ("an update of an unknown recurring commit", {"update_recurring_commits": [{"recurring_commit_id": "nope", "rate_type": "COMMIT_RATE"}]},
     "update_recurring_commits[0].recurring_commit_id"),
    ("a recurring credit of a usage product", {"add_recurring_credits": [dict(MONTHLY_CREDIT, product_id="p-calls",
                                                                            starting_at="2026-12-01T00:00:00Z")]},
     "add_recurring_credits[0].product_id"),
    ("a recurring credit linked to a subscription the contract does not have", {"add_recurring_credits": [dict(
        MONTHLY_CREDIT, access_amount={"unit_price": 100}, starting_at="2026-12-01T00:00:00Z",
        subscription_config={"subscription_id": "s", "apply_seat_increase_config": {"is_prorated": True}})]},
     "add_recurring_credits[0].subscription_config.subscription_id"),
]


@pytest.mark.parametrize("changes, field", [c[1:] for c in FROZEN], ids=[c[0] for c in FROZEN])
def test_an_edit_of_recurring_grants_or_discounts_is_refused_naming_the_field_and_changes_nothing(w, changes, field):
    w.clock.now = datetime(2026, 11, 24, tzinfo=UTC)
    contract = _contract(w, scheduled_charges=[
        {"product_id": "p-setup", "schedule": {"schedule_items": [{"timestamp": "2026-11-01T00:00:00Z", "amount": 5000}]}}])
    w.service.finalize(w.customer.id, contract["id"], OCT, NOV + GRACE)
    w.service.finalize(w.customer.id, contract["id"], NOV, NOV + GRACE)  # the Nov 1 SCHEDULED invoice
    before, records = _stored(w, contract), _stored_records(w)
    with pytest.raises(InvalidInput) as refused:
        _edit(w, contract, **changes)
    assert refused.value.field == field
    assert _stored(w, contract) == before and _stored_records(w) == records


def test_discounts_come_off_their_scheduled_invoices_and_show_on_the_contract(w):
    contract = _contract(w, scheduled_charges=[
        {"product_id": "p-setup", "schedule": {"schedule_items": [{"timestamp": "2026-11-01T00:00:00Z", "amount": 5000}]}}],
        discounts=[{"product_id": "p-setup", "name": "Launch discount", "schedule": {"recurring_schedule": {
            "amount_distribution": "EACH", "frequency": "MONTHLY", "starting_at": "2026-11-01T00:00:00Z",
            "ending_before": JAN_2027, "quantity": 2, "unit_price": 750}}}])
    invoices = _invoices(w)
    # Nov 1: 5000 - 2 × 750 = 3500. Dec 1: the discount alone, -1500.
    assert [(l.name, l.total) for l in invoices[("SCHEDULED", NOV)].line_items] == [
        ("Launch discount", D("-1500.00")), ("Onboarding", D("5000.00"))]
    assert invoices[("SCHEDULED", NOV)].total == D("3500.00")
    assert invoices[("SCHEDULED", DEC)].total == D("-1500.00")
    document = _stored(w, contract)
    (discount,) = contract_json(document, w.contracts.contract(document), w.contracts.products())["current"]["discounts"]
    assert [(i["timestamp"], i["amount"]) for i in discount["schedule"]["schedule_items"]] == [
        ("2026-11-01T00:00:00Z", 1500), ("2026-12-01T00:00:00Z", 1500)]


CONSULTING = {"product_id": "p-setup", "max_amount": 30000, "quantity": 10, "unit_price": 2000, "description": "Consulting"}


def _schedule(w, contract: dict, issued_at: str, *lines: dict) -> str:
    body = ScheduleProServicesInvoice.model_validate(exact_json.loads(exact_json.dumps(
        {"customer_id": w.customer.id, "contract_id": contract["id"], "issued_at": issued_at, "line_items": list(lines)})))
    return w.pro_services.schedule(w.customer.id, contract["id"], body.issued(), body.lines(), body.header())


def test_professional_services_are_billed_on_the_invoice_issued_when_scheduled_up_to_their_max_amount(w):
    contract = _contract(w, professional_services=[CONSULTING])
    (term,) = _stored(w, contract)["professional_services"]
    # 3 at the term's 2000, and 2500 as one amount: 8500 on the Dec 5 invoice.
    invoice = _schedule(w, contract, "2026-12-05T00:00:00Z", {"professional_service_id": term["id"], "quantity": 3},
                        {"professional_service_id": term["id"], "amount": 2500, "metadata": "PO-7"})
    assert invoice == invoice_id(contract["id"], datetime(2026, 12, 5, tzinfo=UTC), USD_CENTS, InvoiceType.SCHEDULED)
    scheduled = _invoices(w)[("SCHEDULED", datetime(2026, 12, 5, tzinfo=UTC))]
    assert [(l.quantity, l.unit_price, l.total, l.professional_service_id, l.metadata) for l in scheduled.line_items] == [
        (D(3), D(2000), D("6000.00"), term["id"], None), (D(1), D(2500), D("2500.00"), term["id"], "PO-7")]
    # 8500 scheduled of 30000: 11 more at 2000 (22000) would make 30500.
    before = _stored(w, contract)
    with pytest.raises(InvalidInput) as refused:
        _schedule(w, contract, "2026-12-15T00:00:00Z", {"professional_service_id": term["id"], "quantity": 11})
    assert refused.value.field == "line_items[0].quantity" and _stored(w, contract) == before
    with pytest.raises(InvalidInput) as refused:
        _schedule(w, contract, "2026-12-15T00:00:00Z", {"professional_service_id": "nope", "amount": 1})
    assert refused.value.field == "line_items[0].professional_service_id"
    # 10 more at a price of their own, 2150: 8500 + 21500 = 30000, exactly the most.
    _schedule(w, contract, "2026-12-15T00:00:00Z", {"professional_service_id": term["id"], "quantity": 10, "unit_price": 2150})
    assert _invoices(w)[("SCHEDULED", datetime(2026, 12, 15, tzinfo=UTC))].total == D("21500.00")
    document = _stored(w, contract)
    (shown,) = contract_json(document, w.contracts.contract(document), w.contracts.products())["current"]["professional_services"]
    assert (shown["max_amount"], shown["quantity"], shown["unit_price"], shown["description"]) == (30000, 10, 2000, "Consulting")


def test_a_professional_services_invoice_is_never_scheduled_on_a_finalized_one(w):
    contract = _contract(w, professional_services=[CONSULTING], scheduled_charges=[
        {"product_id": "p-setup", "schedule": {"schedule_items": [{"timestamp": "2026-11-01T00:00:00Z", "amount": 5000}]}}])
    w.service.finalize(w.customer.id, contract["id"], NOV, NOV + GRACE)
    term_id = _stored(w, contract)["professional_services"][0]["id"]
    with pytest.raises(InvalidInput) as refused:
        _schedule(w, contract, "2026-11-01T00:00:00Z", {"professional_service_id": term_id, "quantity": 1})
    assert refused.value.field == "issued_at"
    with pytest.raises(InvalidInput) as refused:
        _schedule(w, contract, "2027-02-01T00:00:00Z", {"professional_service_id": term_id, "quantity": 1})
    assert refused.value.field == "issued_at"  # after the contract


def test_an_amendment_adds_a_discount_and_professional_services_listed_with_it(w):
    from tally.api.contract_amend_models import ContractAmend

    w.clock.now = datetime(2026, 11, 24, tzinfo=UTC)
    contract = _contract(w)
    request = {"customer_id": w.customer.id, "contract_id": contract["id"], "starting_at": "2026-12-01T00:00:00Z",
               "discounts": [{"product_id": "p-setup", "schedule": {"schedule_items": [{"timestamp": "2026-12-01T00:00:00Z", "amount": 70}]}}],
               "professional_services": [CONSULTING]}
    parsed = ContractAmend.model_validate(exact_json.loads(exact_json.dumps(request)))
    w.edits.edit(w.customer.id, contract["id"], parsed.changes(), author="key-1")
    w.clock.now = datetime(2026, 12, 2, tzinfo=UTC)
    assert _invoices(w)[("SCHEDULED", DEC)].total == D("-70.00")
    document = _stored(w, contract)
    body = contract_json(document, w.contracts.contract(document), w.contracts.products())
    (amendment,) = body["amendments"]
    assert [d["id"] for d in amendment["discounts"]] == [d["id"] for d in document["discounts"]]
    assert [p["description"] for p in amendment["professional_services"]] == ["Consulting"]
    assert body["initial"]["discounts"] == [] and len(body["current"]["discounts"]) == 1
