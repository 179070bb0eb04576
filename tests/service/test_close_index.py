"""The cycle-close wake index (adapters/dynamo/close_index.py): a run reads only the customers it
names, and finds exactly what the walk over every customer finds (moto DynamoDB, the fake catalog
and usage of the contracts tests, a fake clock).

The property test creates random contracts (starts, billing days, ends, subscriptions in advance,
one-off charges, prepaid and postpaid commits, a late invoice_generation_starting_at), then moves
the clock in random steps, editing contracts now and then (new charges, new end dates), and at each
step compares the indexed find_due with the walk's, then finalizes some of what is due (a run whose
Map fails for some periods leaves them to the next run).
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import datetime, timedelta, timezone
from unittest import mock

import pytest
from hypothesis import HealthCheck, Phase, event, given, note, settings
from hypothesis import strategies as st

from tally.adapters.dynamo import close_index
from tally.adapters.dynamo.close_index import DynamoCloseIndex
from tally.billing.time import format_rfc3339, parse_rfc3339
from tally.services import cycle_close, cycle_close_tasks
from tally.services.customers import CustomerService
from tally.services.cycle_close import CycleCloseService
from tests.conftest import examples
from tests.service.test_contract_edits import edit, w  # noqa: F401 - the fixture
from tests.service.test_cycle_close import BARE, GRACE, NOV, OCT, SEATS
from tests.service.test_contracts_service import _commit, _request

UTC = timezone.utc
HOUR, DAY = timedelta(hours=1), timedelta(days=1)
JAN, FAR = datetime(2027, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)


def _walk(w) -> CycleCloseService:
    """The same service without the index: it reads every customer."""
    s = w.service
    return CycleCloseService(s._invoices, s._store, s._customers, s._publisher, s._invoices_topic, s._clock, s._grace,
                             timing=s._timing, sleep=s._sleep)


def _reads(w, monkeypatch) -> list[str]:
    """The customers whose due periods a run computes, in order (a spy on close_outlook)."""
    read: list[str] = []
    outlook = w.invoices.close_outlook

    def spy(customer_id, *args, **kwargs):
        read.append(customer_id)
        return outlook(customer_id, *args, **kwargs)

    monkeypatch.setattr(w.invoices, "close_outlook", spy)
    return read


def _due(w, as_of, service=None):
    return [(i["customer_id"], i["contract_id"], i["period_start"][:10], i["kind"])
            for i in (service or w.service).find_due(as_of, GRACE).periods]


def _paged(w, as_of, size: int, service=None) -> list[list[tuple]]:
    """find_due a page of `size` at a time, as the workflow calls it (nothing closed in between)."""
    pages, cursor = [], None
    while True:
        found = (service or w.service).find_due(as_of, GRACE, after=cursor, limit=size)
        pages.append([(i["customer_id"], i["contract_id"], i["period_start"][:10], i["kind"]) for i in found.periods])
        assert len(pages[-1]) <= 2 * size
        cursor = found.cursor
        if cursor is None:
            return pages
        assert len(pages) < 100, "the pages never end"


def _workflow(w, as_of, size: int, between_pages=lambda pages: None) -> tuple[list[list[tuple]], list[str], dict]:
    """What the state machine does (infra/constructs/cycle_close.py): the FindDuePeriods task a page
    at a time, and its Map finalizing and publishing each period of the page, until `more` is
    false. (The pages, every invoice id a finalize stored, the run's summary.)"""
    state, pages, stored = {"time": format_rfc3339(as_of)}, [], []
    while True:
        progress = cycle_close_tasks.find_due_periods(state, w.service, GRACE, page_size=size)
        if not progress["more"]:
            return pages, stored, progress["summary"]
        pages.append([(p["customer_id"], p["contract_id"], p["period_start"][:10], p["kind"]) for p in progress["periods"]])
        closed = []
        for p in progress["periods"]:
            result = w.service.finalize(p["customer_id"], p["contract_id"], parse_rfc3339(p["period_start"]), as_of)
            stored += result["finalized"]
            published = [i for i in result["invoice_ids"] if w.service.publish_finalized(i)]
            closed.append({"period": p, "status": "CLOSED", "invoice_ids": result["invoice_ids"],
                           "finalized": result["finalized"], "published": published})
        between_pages(pages)
        assert len(pages) < 100, "the run never ends"
        state = {"time": format_rfc3339(as_of), "progress": progress, "closed": closed}


def _close(w, as_of) -> None:
    """What the workflow does with a run's due periods: finalize, then publish."""
    for c, contract_id, start, _ in _due(w, as_of):
        for invoice_id in w.service.finalize(c, contract_id, parse_rfc3339(start + "T00:00:00Z"), as_of)["invoice_ids"]:
            w.service.publish_finalized(invoice_id)


def test_a_run_reads_only_the_customers_due_and_wakes_a_customer_when_its_period_ends(w, monkeypatch):  # noqa: F811
    w.clock.now = OCT + 20 * DAY
    w.contracts.create(_request(w.customer.id, **BARE))  # monthly from Oct 1
    later = CustomerService(w.billing, w.clock).create("Later", ["later"], None, {})
    w.contracts.create(_request(later.id, **(BARE | {"starting_at": "2026-10-15T00:00:00Z",
                       "usage_statement_schedule": {"frequency": "MONTHLY", "day": "CONTRACT_START"}})))
    read = _reads(w, monkeypatch)

    assert _due(w, w.clock.now) == []  # written contracts are read once, and put to sleep
    assert sorted(read) == sorted([w.customer.id, later.id])
    read.clear()
    assert _due(w, NOV - HOUR) == [] and read == []  # nobody is read before a period ends
    assert _due(w, NOV) == [] and read == [w.customer.id]  # at its end: a new period, still in grace
    read.clear()
    w.clock.now = NOV + GRACE
    assert _due(w, NOV + GRACE) == [(w.customer.id, _ids(w, w.customer.id)[0], "2026-10-01", "USAGE")]
    assert read == [w.customer.id]  # the other customer's period ends on Nov 15
    _close(w, NOV + GRACE)
    read.clear()
    assert _due(w, NOV + GRACE + HOUR) == [] and read == [w.customer.id]  # read once more, then asleep
    read.clear()
    assert _due(w, NOV + 10 * DAY) == [] and read == []


def test_an_edit_wakes_its_customer_at_once_and_a_run_does_not_overwrite_it(w, monkeypatch):  # noqa: F811
    w.clock.now = OCT + 20 * DAY
    contract = w.contracts.create(_request(w.customer.id, **BARE))
    assert _due(w, w.clock.now) == []
    read = _reads(w, monkeypatch)
    edit(w, contract, add_scheduled_charges=[{"product_id": "p-setup", "schedule": {
        "schedule_items": [{"timestamp": "2026-10-18T00:00:00Z", "amount": 700}]}}])
    assert _due(w, w.clock.now) == [(w.customer.id, contract["id"], "2026-10-01", "SCHEDULED")]
    assert read == [w.customer.id]

    # A run that read the customer before an edit cannot move its entry past the edit's.
    index = DynamoCloseIndex(w.dynamo["billing"], w.dynamo["client"])
    _close(w, w.clock.now)
    entries = index.due(w.clock.now)
    assert [e.customer_id for e in entries] == [w.customer.id]
    edit(w, contract, update_contract_end_date="2027-03-01T00:00:00Z")
    version = w.contracts.get(w.customer.id, contract["id"])["_version"]
    assert not index.advance(entries[0], version - 1, NOV)  # the entry and the version both moved on
    assert [e.customer_id for e in index.due(w.clock.now)] == [w.customer.id]


def test_a_customer_level_credit_wakes_its_customer_and_is_put_to_sleep_with_its_contracts(w, monkeypatch):  # noqa: F811
    from tests.service.test_customer_grant_edits import _credit

    w.clock.now = OCT + 20 * DAY
    w.contracts.create(_request(w.customer.id, **BARE))
    assert _due(w, w.clock.now) == []
    read = _reads(w, monkeypatch)
    _credit(w)
    index = DynamoCloseIndex(w.dynamo["billing"], w.dynamo["client"])
    assert [e.document_key.split("#")[0] for e in index.due(w.clock.now)] == ["grant"]
    assert _due(w, w.clock.now) == [] and read == [w.customer.id]
    assert index.due(NOV - HOUR) == []  # the credit's entry sleeps too: nothing is read again before Nov 1


def test_documents_stored_before_the_index_are_indexed_by_the_backfill_once(w):  # noqa: F811
    w.clock.now = NOV + GRACE
    contract = w.contracts.create(_request(w.customer.id, **BARE))
    client, table = w.dynamo["client"], w.dynamo["billing"]
    key = {"pk": {"S": f"contract#{contract['id']}"}, "sk": {"S": "#"}}
    client.update_item(TableName=table, Key=key, UpdateExpression="REMOVE gsi2pk, gsi2sk")  # as stored before
    assert _due(w, w.clock.now) == []  # invisible to the index ...
    index = DynamoCloseIndex(table, client)
    assert index.backfill() == 1
    assert index.backfill() == 0  # ... until the backfill, once
    assert _due(w, w.clock.now) == [(w.customer.id, contract["id"], "2026-10-01", "USAGE")]
    assert index.backfill(every=True) == 1 and len(index.due(OCT)) == 1  # --all: every entry due again


def _ids(w, customer_id):
    return [c["id"] for c in w.contracts.list(customer_id)]


# -- a run in pages ----------------------------------------------------------------------------------

LATE_CHARGE = [{"product_id": "p-setup", "schedule": {"schedule_items": [{"timestamp": "2026-10-25T00:00:00Z", "amount": 700}]}}]


def _all_due(w, count: int) -> list[str]:
    """`count` customers, each with a monthly contract from Oct 1, all due at NOV + GRACE: every
    other one with a one-off charge on Oct 25 too (two periods), every third with a customer-level
    credit too (two documents, so two wake entries). A run on Oct 20 put them all to sleep."""
    from tests.service.test_customer_grant_edits import _credit

    w.clock.now = OCT + 19 * DAY
    people, ids = CustomerService(w.billing, w.clock), []
    for n in range(count):
        customer = people.create(f"C{n}", [], None, {})
        w.contracts.create(_request(customer.id, **(BARE | ({"scheduled_charges": LATE_CHARGE} if n % 2 else {}))))
        if n % 3 == 0:
            _credit(type("W", (), {"customer": customer, "balances": w.balances, "clock": w.clock}))
        ids.append(customer.id)
    w.clock.now = OCT + 20 * DAY
    assert _due(w, w.clock.now) == []
    return ids


def test_a_run_reads_each_customer_due_once_in_pages_of_whole_customers(w, monkeypatch):  # noqa: F811
    ids = _all_due(w, 7)
    w.clock.now = NOV + GRACE
    expected = _due(w, w.clock.now, _walk(w))
    assert len(expected) == 10 and {c for c, *_ in expected} == set(ids)
    with mock.patch.object(cycle_close, "WALK_CHUNK", 2):  # without the index: the listing's pages, resumed
        assert sorted(p for page in _paged(w, w.clock.now, 3, _walk(w)) for p in page) == sorted(expected)
    read = _reads(w, monkeypatch)

    pages, stored, summary = _workflow(w, w.clock.now, size=3)

    assert sorted(p for page in pages for p in page) == sorted(expected)  # each due period once
    assert Counter(read) == Counter(ids)  # each customer once, the two-document ones too
    assert all(len(page) < 3 + 2 for page in pages)  # at least 3 unless the last, and one customer's more at most
    customers_by_page = [{c for c, *_ in page} for page in pages]
    assert sum(len(c) for c in customers_by_page) == len(ids)  # a customer's periods in one page
    assert len(stored) == len(set(stored)) == len(expected)  # one invoice per period, finalized once
    assert (summary["periods_closed"], summary["invoices_finalized"]) == (10, 10)
    read.clear()
    assert _workflow(w, w.clock.now, size=3)[0] == [] and sorted(read) == sorted(ids)  # read again, put to sleep
    read.clear()
    assert _workflow(w, w.clock.now + HOUR, size=3)[0] == [] and read == []


def test_a_customer_with_more_periods_than_a_page_holds_goes_out_a_page_at_a_time(w):  # noqa: F811
    w.clock.now = NOV + GRACE
    contract = w.contracts.create(_request(w.customer.id, **(BARE | {"starting_at": "2026-09-01T00:00:00Z",
                                                                      "scheduled_charges": LATE_CHARGE})))
    c, k = w.customer.id, contract["id"]

    pages, stored, _ = _workflow(w, w.clock.now, size=1)  # a page holds at most 2 periods

    assert pages == [[(c, k, "2026-09-01", "USAGE")], [(c, k, "2026-10-01", "SCHEDULED"), (c, k, "2026-10-01", "USAGE")]]
    assert len(stored) == len(set(stored)) == 3


def test_entries_that_move_while_a_run_pages_hide_no_due_period_and_close_none_twice(w, monkeypatch):  # noqa: F811
    monkeypatch.setattr(close_index, "SHARDS", 1)  # every entry in the shard the run is reading
    ids = _all_due(w, 8)
    w.clock.now = as_of = NOV + GRACE
    expected = _due(w, as_of, _walk(w))
    index = DynamoCloseIndex(w.dynamo["billing"], w.dynamo["client"])
    order = list(dict.fromkeys(e.customer_id for e in index.entries(as_of)))  # run order
    assert sorted(order) == sorted(ids)
    ahead, behind = order[-1], order[0]
    owner = lambda customer_id: type("W", (), {"customer": type("C", (), {"id": customer_id}), "edits": w.edits})  # noqa: E731
    contract = {c: w.contracts.list(c)[0] for c in (ahead, behind)}

    def meanwhile(pages):
        if len(pages) != 1:
            return
        assert behind in {c for c, *_ in pages[0]}
        # A customer not read yet is edited: its entry moves behind the run's position in its part,
        # to the end of its shard's written entries, which the run reads after its instants.
        edit(owner(ahead), contract[ahead], update_contract_end_date="2027-03-01T00:00:00Z")
        moved = [e for e in index.entries_of(ahead, as_of) if e.document_key == f"contract#{contract[ahead]['id']}"]
        assert [e.sort_key[0] for e in moved] == ["!"]  # (a customer-level credit's entry, if any, stays)
        # One read already gets a new charge, due at once: read again by this run or the next.
        edit(owner(behind), contract[behind], add_scheduled_charges=[{"product_id": "p-setup", "schedule": {
            "schedule_items": [{"timestamp": "2026-11-01T12:00:00Z", "amount": 300}]}}])

    pages, stored, _ = _workflow(w, as_of, size=2, between_pages=meanwhile)
    listed = [p for page in pages for p in page]
    assert sorted(set(listed) & set(expected)) == sorted(expected)  # the edited one's too
    assert len(listed) == len(set(listed))  # none twice
    pages_after, stored_after, _ = _workflow(w, as_of, size=2)
    late = (behind, contract[behind]["id"], "2026-11-01", "SCHEDULED")
    assert late in listed + [p for page in pages_after for p in page]  # the new charge, once
    assert late not in set(listed) & set(p for page in pages_after for p in page)
    everything = stored + stored_after
    assert len(everything) == len(set(everything))  # no invoice finalized twice
    assert _workflow(w, as_of, size=2)[0] == []


def test_a_cursor_that_find_due_never_returned_is_a_workflow_bug_named_as_such(w):  # noqa: F811
    state = {"time": format_rfc3339(NOV), "progress": {"as_of": format_rfc3339(NOV), "periods": [], "count": 0,
             "cursor": "not a cursor", "more": True, "summary": {"as_of": format_rfc3339(NOV)}}, "closed": []}
    with pytest.raises(cycle_close_tasks.InvalidTaskInput) as raised:
        cycle_close_tasks.find_due_periods(state, w.service, GRACE)
    assert raised.value.field == "cursor"


# -- equivalence with the walk -----------------------------------------------------------------------

STARTS = ["2026-09-15T00:00:00Z", "2026-10-01T00:00:00Z", "2026-10-20T00:00:00Z", "2026-12-05T00:00:00Z"]
INSTANTS = [OCT + n * DAY + h * HOUR for n in range(0, 120, 9) for h in (0, 13)]


@st.composite
def contract_shapes(draw):
    start = draw(st.sampled_from(STARTS))
    body = dict(BARE) | {"starting_at": start}
    schedule = {"frequency": draw(st.sampled_from(["MONTHLY", "QUARTERLY"])),
                "day": draw(st.sampled_from(["FIRST_OF_MONTH", "CONTRACT_START"]))}
    if draw(st.booleans()) and start == "2026-10-01T00:00:00Z" and schedule == {"frequency": "MONTHLY", "day": "FIRST_OF_MONTH"}:
        schedule["invoice_generation_starting_at"] = "2026-11-01T00:00:00Z"
    body["usage_statement_schedule"] = schedule
    if draw(st.booleans()):
        body["subscriptions"] = SEATS
    ends = draw(st.booleans())
    for at in draw(st.lists(st.sampled_from(INSTANTS), max_size=2)):
        if parse_rfc3339(start) <= at < (JAN if ends else FAR):
            body["scheduled_charges"] = body["scheduled_charges"] + [{"product_id": "p-setup", "schedule": {
                "schedule_items": [{"timestamp": format_rfc3339(at), "amount": 300}]}}]
    commit = draw(st.sampled_from([None, "PREPAID", "POSTPAID"]))
    if commit is not None and parse_rfc3339(start) <= OCT:
        body["commits"] = [_commit(type=commit, access_schedule={"schedule_items": [
            {"amount": 1000, "starting_at": format_rfc3339(OCT), "ending_before": format_rfc3339(NOV)}]},
            invoice_schedule={"schedule_items": [{"timestamp": format_rfc3339(NOV if commit == "POSTPAID" else OCT), "amount": 1000}]})]
    if ends:
        body["ending_before"] = format_rfc3339(JAN)
    return body


# No shrinking: an example costs seconds on moto, and the notes name each step anyway.
@settings(max_examples=examples(2), deadline=None, suppress_health_check=list(HealthCheck),
          phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(
    shapes=st.lists(contract_shapes(), min_size=1, max_size=2),
    steps=st.lists(st.tuples(st.integers(1, 400), st.sampled_from(["none", "none", "charge", "end"]), st.randoms()),
                   min_size=3, max_size=5),
)
def test_the_indexed_find_due_finds_what_the_walk_over_every_customer_finds(w, shapes, steps):  # noqa: F811
    walk = _walk(w)
    w.clock.now = OCT + 18 * DAY
    people = CustomerService(w.billing, w.clock)  # a customer each: concurrent contracts would need usage filters
    contracts = [w.contracts.create(_request(people.create("C", [], None, {}).id, **shape)) for shape in shapes]
    for hours, change, rnd in steps:
        w.clock.now += hours * HOUR
        as_of = w.clock.now
        contract = contracts[rnd.randrange(len(contracts))]
        if change != "none":
            owner = type("W", (), {"customer": type("C", (), {"id": contract["customer_id"]}), "edits": w.edits})
            body = ({"add_scheduled_charges": [{"product_id": "p-setup", "schedule": {"schedule_items": [
                {"timestamp": format_rfc3339(as_of - rnd.randrange(0, 48) * HOUR), "amount": 100}]}}]}
                if change == "charge" else {"update_contract_end_date": format_rfc3339(
                    max(as_of, parse_rfc3339(contract["starting_at"])).replace(hour=0) + rnd.randrange(1, 60) * DAY)})
            try:
                edit(owner, contract, **body)
                event(f"{change} edit made")
            except Exception as exc:  # noqa: BLE001 - an edit the rules refuse changes nothing
                note(f"refused {body}: {exc}")
                event(f"{change} edit refused")
        expected = _due(w, as_of, walk)
        # In pages, before a whole run reads again what the pages left due: the same periods.
        assert sorted(p for page in _paged(w, as_of, rnd.randrange(1, 3)) for p in page) == sorted(expected), f"at {as_of}"
        assert _due(w, as_of) == expected, f"at {as_of}"
        event(f"a step finds {'nothing' if not expected else 'SCHEDULED' if any(k == 'SCHEDULED' for *_, k in expected) else 'USAGE'}")
        note(f"{as_of}: {expected}")
        for c, contract_id, start, _ in expected:
            if rnd.random() < 0.8:  # the rest fail in the Map and wait for the next run
                closed = w.service.finalize(c, contract_id, parse_rfc3339(start + "T00:00:00Z"), as_of)
                for invoice_id in closed["invoice_ids"]:
                    if rnd.random() < 0.8:  # the rest are published by a later run, after the lease
                        w.service.publish_finalized(invoice_id)
    w.clock.now += 200 * DAY  # everything ended or far along: still the same
    expected = _due(w, w.clock.now, walk)
    with mock.patch.object(cycle_close, "WALK_CHUNK", 1):  # the walk in pages resumes across listing pages too
        assert sorted(p for page in _paged(w, w.clock.now, 1, walk) for p in page) == sorted(expected)
    assert _due(w, w.clock.now) == expected
