"""Updates of a contract's commits and credits (`update_commits`, `update_credits`, and the
commits/edit and credits/edit routes' service): moto DynamoDB, the world of the contract edit tests.

The contract starts on Oct 1 2026 and bills monthly; API calls cost 2 until Nov 15. "Now" is
Nov 24 2026 12:00, and October is finalized before each edit.
"""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest

from tally.api.grant_edit_models import CommitEdit
from tally.billing.errors import InvalidInput
from tally.services.grant_edits import edit_grant
from tests.service.test_contract_edits import drafts, edit, stored, w  # noqa: F401 - w is the fixture
from tests.service.test_cycle_close import GRACE, NOV, OCT, _contract, _credit

UTC = timezone.utc
DEC = datetime(2026, 12, 1, tzinfo=UTC)
NOV_15 = datetime(2026, 11, 15, tzinfo=UTC)


def usage_total(w, start: datetime) -> Decimal:
    (total,) = [d[3] for d in drafts(w) if d[0] == "USAGE" and d[1] == start]
    return total


def credit_edit(w, contract, credit_id, **update):
    return edit(w, contract, update_credits=[{"credit_id": credit_id, **update}])


@pytest.fixture()
def credited(w):
    """A 100 credit from Oct 1 to Jan 1; October's 30 calls (60) are finalized, drawing 60 from it;
    November's 50 calls are 100, of which the credit's last 40 pay: the draft is 60."""
    contract = _contract(w, credits=[_credit(100)])
    w.usage.calls += [(datetime(2026, 10, 10, tzinfo=UTC), 30), (datetime(2026, 11, 10, tzinfo=UTC), 50)]
    w.service.finalize(w.customer.id, contract["id"], OCT, NOV + GRACE)
    (credit,) = stored(w, contract)["credits"]
    assert usage_total(w, OCT) == Decimal(0) and usage_total(w, NOV) == Decimal(60)
    return contract, credit


def test_a_credit_is_topped_up_extended_and_given_a_segment_and_the_draft_reprices(w, credited):
    contract, credit = credited
    segment = credit["access_schedule"][0]["id"]

    credit_edit(w, contract, credit["id"], access_schedule={"update_schedule_items": [{"id": segment, "amount": 120}]})
    assert usage_total(w, NOV) == Decimal(40)  # 100 - (120 - 60 drawn in October)

    record = credit_edit(w, contract, credit["id"], name="Trial (extended)", priority=2, access_schedule={
        "add_schedule_items": [{"amount": 25, "starting_at": "2027-02-01T00:00:00Z", "ending_before": "2027-03-01T00:00:00Z"}],
        "update_schedule_items": [{"id": segment, "amount": 145, "ending_before": "2027-02-01T00:00:00Z"}],
    })
    assert usage_total(w, NOV) == Decimal(15)  # 100 - (145 - 60)
    assert usage_total(w, OCT) == Decimal(0)  # finalized, as it was
    (after,) = stored(w, contract)["credits"]
    added = record["update_credits"][0]["access_schedule"]["add_schedule_items"][0]["id"]
    assert [(s["id"], s["amount"], s["ending_before"]) for s in after["access_schedule"]] == [
        (segment, Decimal(145), "2027-02-01T00:00:00Z"), (added, Decimal(25), "2027-03-01T00:00:00Z")]
    assert (after["name"], after["priority"]) == ("Trial (extended)", Decimal(2))
    history = w.edits.history(w.customer.id, contract["id"])
    assert [sorted(h) for h in history][-1] == sorted(record)
    assert [h["update_credits"][0]["id"] for h in history] == [credit["id"], credit["id"]]


@pytest.mark.parametrize("access, field", [
    ({"update_schedule_items": [{"id": "SEG", "amount": 50}]}, "update_schedule_items[0].amount"),
    ({"remove_schedule_items": [{"id": "SEG"}], "add_schedule_items": [
        {"amount": 100, "starting_at": "2027-01-01T00:00:00Z", "ending_before": "2027-02-01T00:00:00Z"}]},
     "remove_schedule_items[0].id"),
    ({"update_schedule_items": [{"id": "SEG", "ending_before": "2026-10-20T00:00:00Z"}]}, "update_schedule_items[0].ending_before"),
    ({"update_schedule_items": [{"id": "SEG", "starting_at": "2026-10-15T00:00:00Z"}]}, "update_schedule_items[0].starting_at"),
], ids=["below what October drew", "removing a segment October drew from", "ending before October's drawdown",
        "starting after October's drawdown"])
def test_a_finalized_drawdown_never_changes(w, credited, access, field):
    contract, credit = credited
    segment = credit["access_schedule"][0]["id"]
    access = {k: [dict(i, id=segment) if i.get("id") == "SEG" else i for i in v] for k, v in access.items()}
    before = stored(w, contract)

    with pytest.raises(InvalidInput) as refused:
        credit_edit(w, contract, credit["id"], access_schedule=access)

    assert refused.value.field == f"update_credits[0].access_schedule.{field}"
    assert stored(w, contract) == before and w.edits.history(w.customer.id, contract["id"]) == []


def test_a_commit_invoice_schedule_and_products_change_through_commits_edit_and_never_a_finalized_item(w):
    commit = {"product_id": "p-setup", "type": "PREPAID", "access_schedule": {"schedule_items": [
        {"amount": 1000, "starting_at": "2026-10-01T00:00:00Z", "ending_before": "2027-01-01T00:00:00Z"}]},
        "invoice_schedule": {"schedule_items": [{"timestamp": "2026-10-01T00:00:00Z", "amount": 500},
                                                {"timestamp": "2026-12-01T00:00:00Z", "amount": 500}]}}
    contract = _contract(w, commits=[commit])
    w.service.finalize(w.customer.id, contract["id"], OCT, NOV + GRACE)  # the Oct 1 purchase of 500
    (stored_commit,) = stored(w, contract)["commits"]
    oct_item, dec_item = (i["id"] for i in stored_commit["invoice_schedule"])

    def commits_edit(**body):
        request = CommitEdit.model_validate({"customer_id": w.customer.id, "commit_id": stored_commit["id"], **body})
        return edit_grant(w.edits, w.contracts, w.customer.id, "commits", request.to_update(), "key-1")

    with pytest.raises(InvalidInput) as refused:
        commits_edit(invoice_schedule={"update_schedule_items": [{"id": oct_item, "amount": 400}]})
    assert refused.value.field == "invoice_schedule.update_schedule_items[0].id"
    with pytest.raises(InvalidInput) as refused:
        commits_edit(invoice_schedule={"add_schedule_items": [{"timestamp": "2026-10-15T00:00:00Z", "amount": 1}]})
    assert refused.value.field == "invoice_schedule.add_schedule_items[0].timestamp"
    with pytest.raises(InvalidInput) as refused:
        commits_edit(applicable_contract_ids=["c-1"])
    assert refused.value.field == "applicable_contract_ids"

    commits_edit(
        invoice_schedule={"update_schedule_items": [{"id": dec_item, "amount": 700}],
                          "add_schedule_items": [{"timestamp": "2026-11-15T00:00:00Z", "quantity": 2, "unit_price": 150}]},
        applicable_product_ids=["p-calls"], rate_type="COMMIT_RATE",
    )
    w.clock.now = DEC + GRACE / 2  # Dec 1's invoice is out
    scheduled = [(d[1], d[2], d[3]) for d in drafts(w) if d[0] == "SCHEDULED"]
    assert scheduled == [(OCT, "FINALIZED", Decimal("500.00")), (NOV_15, "DRAFT", Decimal("300.00")),
                         (DEC, "DRAFT", Decimal("700.00"))]  # 2 x 150 on Nov 15, 700 on Dec 1
    (after,) = stored(w, contract)["commits"]
    assert (after["applicable_product_ids"], after["rate_type"]) == (["p-calls"], "COMMIT_RATE")
    (entry,) = w.edits.history(w.customer.id, contract["id"])
    assert entry["created_by"] == "key-1" and entry["update_commits"][0]["id"] == stored_commit["id"]
