"""Contract transitions (`transition` on contract create) as a use case: the new contract starts
where the old one now ends, in one write with the old contract's edit record. moto DynamoDB and the
fakes of the contracts tests; the old contract starts Oct 1 2026 with 3 seats at 1000 a month in
advance, "now" is Nov 24; API calls cost 2 until Nov 15."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest

from tally.adapters.dynamo.documents import DynamoContractStore
from tally.api.contract_models import ContractCreate, contract_json
from tally.billing import exact_json
from tally.billing.errors import InvalidInput
from tally.services.contract_transitions import ContractTransitionService
from tests.service.test_contract_edits import drafts, edit, stored, w  # noqa: F401 - w is the fixture
from tests.service.test_cycle_close import BARE, GRACE, NOV, OCT, SEATS, _contract, _stored_records
from tests.service.test_contracts_service import _commit, _request

UTC = timezone.utc
DEC = datetime(2026, 12, 1, tzinfo=UTC)
NOV_10 = datetime(2026, 11, 10, tzinfo=UTC)
JAN = datetime(2027, 1, 1, tzinfo=UTC)


def transition(w, old: dict, type_: str, starting_at: str, **more) -> dict:  # noqa: F811
    body = _request(w.customer.id, **(BARE | {"starting_at": starting_at, "name": "Acme 2027"}),
                    transition={"from_contract_id": old["id"], "type": type_, **more})
    parsed = ContractCreate.model_validate(exact_json.loads(exact_json.dumps(body)))
    service = ContractTransitionService(w.contracts, w.edits, DynamoContractStore(w.dynamo["billing"], w.dynamo["client"]))
    return service.create(parsed.to_document(), parsed.uniqueness_key, "key-renew")


def v1(w, contract: dict) -> dict:  # noqa: F811
    document = stored(w, contract)
    return contract_json(document, w.contracts.contract(document), w.contracts.products())["current"]


def test_a_renewal_starts_where_the_old_contract_now_ends_and_both_show_the_transition(w):  # noqa: F811
    old = _contract(w, subscriptions=SEATS)
    w.usage.calls += [(datetime(2026, 11, 5, tzinfo=UTC), 10)]
    assert [p.ending_before for p in w.contracts.contract(stored(w, old)).periods(until=JAN)][-1] == datetime(2027, 2, 1, tzinfo=UTC)

    new = transition(w, old, "RENEWAL", "2026-12-01T00:00:00Z")

    assert stored(w, old)["ending_before"] == "2026-12-01T00:00:00Z"
    link = {"from_contract_id": old["id"], "to_contract_id": new["id"], "type": "RENEWAL"}
    assert v1(w, old)["transitions"] == [link] and v1(w, new)["transitions"] == [link]
    # The old contract's November is billed as before (10 calls x 2 = 20, the Nov 1 seats 3000);
    # its billing periods stop at Dec 1 (no December seats), where the renewal's begin.
    assert ("USAGE", NOV, "DRAFT", Decimal("20.00")) in drafts(w)
    assert ("SCHEDULED", NOV, "DRAFT", Decimal("3000.00")) in drafts(w)
    assert [p.ending_before for p in w.contracts.contract(stored(w, old)).periods(until=JAN)][-1] == DEC
    # The new end is an edit of the old contract, recorded once, by the key that made it.
    (entry,) = w.edits.history(w.customer.id, old["id"])
    assert (entry["update_contract_end_date"], entry["created_by"]) == ("2026-12-01T00:00:00Z", "key-renew")


def test_a_supersede_mid_month_ends_the_old_contracts_billing_there_and_is_kept_off_the_sdk_list(w):  # noqa: F811
    old = _contract(w, subscriptions=SEATS)
    w.usage.calls += [(datetime(2026, 11, 5, tzinfo=UTC), 10), (datetime(2026, 11, 12, tzinfo=UTC), 40)]

    new = transition(w, old, "SUPERSEDE", "2026-11-10T00:00:00Z")

    # The old contract's November stops at Nov 10: 10 calls x 2 = 20; the 40 calls of Nov 12 are the
    # new contract's (40 x 2 = 80). No December seats from the old one.
    totals = {(t, s, status): total for t, s, status, total in drafts(w)}
    assert totals[("USAGE", NOV, "DRAFT")] == Decimal("20.00")
    assert ("USAGE", NOV_10, "DRAFT", Decimal("80.00")) in drafts(w)
    assert [p.ending_before for p in w.contracts.contract(stored(w, old)).periods(until=JAN)][-1] == NOV_10
    assert stored(w, old)["transitions"][0]["type"] == "SUPERSEDE"
    assert v1(w, old)["transitions"] == [] and v1(w, new)["transitions"] == []  # the SDK's type is RENEWAL only


@pytest.mark.parametrize("change, field", [
    ({"starting_at": "2026-10-20T00:00:00Z"}, "starting_at"),  # inside the finalized October
    ({"starting_at": "2026-09-20T00:00:00Z"}, "starting_at"),  # before the old contract starts
    ({"from_contract_id": "nope"}, "transition.from_contract_id"),
], ids=["ends the old one in a finalized month", "starts before the old one", "an unknown contract"])
def test_a_bad_transition_is_refused_naming_the_field_and_writes_nothing(w, change, field):  # noqa: F811
    old = _contract(w, subscriptions=SEATS)
    w.service.finalize(w.customer.id, old["id"], OCT, NOV + GRACE)
    before, records = stored(w, old), _stored_records(w)
    start = change.pop("starting_at", "2026-12-01T00:00:00Z")
    with pytest.raises(InvalidInput) as refused:
        transition(w, old if "from_contract_id" not in change else {"id": change.pop("from_contract_id")},
                   "RENEWAL", start, **change)
    assert refused.value.field == field
    assert stored(w, old) == before and _stored_records(w) == records
    assert [c["id"] for c in w.contracts.list(w.customer.id)] == [old["id"]]


def test_a_contract_is_transitioned_from_once(w):  # noqa: F811
    old = _contract(w)
    transition(w, old, "RENEWAL", "2026-12-01T00:00:00Z")
    with pytest.raises(InvalidInput) as refused:
        transition(w, old, "RENEWAL", "2026-11-20T00:00:00Z")
    assert refused.value.field == "transition.from_contract_id"
    assert stored(w, old)["ending_before"] == "2026-12-01T00:00:00Z"


@pytest.mark.parametrize("fraction, renewal_total", [(None, Decimal("80.00")), (Decimal("0.5"), Decimal("40.00"))],
                         ids=["a commit without rollover ends with the old contract",
                              "rollover_fraction 0.5: half of what is left serves the renewal"])
def test_a_renewal_carries_the_rolled_over_part_of_a_commit(w, fraction, renewal_total):  # noqa: F811
    commit = _commit(access_schedule={"schedule_items": [
        {"amount": 100, "starting_at": "2026-10-01T00:00:00Z", "ending_before": "2027-01-01T00:00:00Z"}]},
        rollover_fraction=fraction)
    old = _contract(w, commits=[commit])
    w.usage.calls += [(datetime(2026, 11, 5, tzinfo=UTC), 10), (datetime(2026, 11, 12, tzinfo=UTC), 40)]

    transition(w, old, "RENEWAL", "2026-11-10T00:00:00Z")

    # The old contract's 10 calls (20) are paid by the commit, which has 80 left at Nov 10; half of
    # it (40) rolls over and pays half of the renewal's 40 calls x 2 = 80.
    assert ("USAGE", NOV, "DRAFT", Decimal("0.00")) in drafts(w)
    assert ("USAGE", NOV_10, "DRAFT", renewal_total) in drafts(w)


POSTPAID_500 = _commit(type="POSTPAID", access_schedule={"schedule_items": [
    {"amount": 500, "starting_at": "2026-10-01T00:00:00Z", "ending_before": "2026-12-01T00:00:00Z"}]},
    invoice_schedule={"schedule_items": [{"timestamp": "2026-12-01T00:00:00Z", "amount": 500}]})


@pytest.mark.parametrize("trueup, true_up_total", [(None, Decimal("480.00")), ("AS_IS", Decimal("480.00")), ("REMOVE", None)],
                         ids=["by default the true-up is billed", "AS_IS bills it", "REMOVE leaves it out"])
def test_future_invoice_behavior_decides_whether_the_old_contracts_true_up_is_billed(w, trueup, true_up_total):  # noqa: F811
    """A 500 postpaid commit to Dec 1, true-up on Dec 1; 10 calls x 2 = 20 used before a Nov 10
    supersede: the true-up is 500 - 20 = 480 (AS_IS), or removed."""
    old = _contract(w, commits=[POSTPAID_500])
    w.usage.calls += [(datetime(2026, 11, 5, tzinfo=UTC), 10)]
    more = {} if trueup is None else {"future_invoice_behavior": {"trueup": trueup}}

    transition(w, old, "SUPERSEDE", "2026-11-10T00:00:00Z", **more)
    w.clock.now = datetime(2026, 12, 2, tzinfo=UTC)  # the true-up is due

    scheduled = [(at, total) for t, at, _, total in drafts(w) if t == "SCHEDULED"]
    assert scheduled == ([] if true_up_total is None else [(DEC, true_up_total)])
    assert ("USAGE", NOV, "DRAFT", Decimal("20.00")) in drafts(w)  # postpaid draws are paid in arrears
    assert stored(w, old)["transitions"][0]["future_invoice_behavior"] == {"trueup": trueup or "AS_IS"}
    if true_up_total is not None:  # and cycle close finalizes it with the old contract's last period
        w.clock.now = datetime(2026, 12, 3, tzinfo=UTC)
        for period in (OCT, NOV, NOV):  # the true-up waits until the usage it settles is finalized
            result = w.service.finalize(w.customer.id, old["id"], period, w.clock.now)
        assert sorted(w.store.get(i).invoice.total for i in result["invoice_ids"]) == [Decimal("20.00"), true_up_total]
