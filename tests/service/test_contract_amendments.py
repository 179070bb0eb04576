"""Amendments (`POST /v1/contracts/amend`, the older form of an edit) as a use case: applied as an
edit, listed in the v1 contract under `amendments`, kept out of `initial`. moto DynamoDB and the
fakes of the contracts tests; the contract starts Oct 1 2026, "now" is Nov 24."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest

from tally.api.contract_amend_models import ContractAmend, amend_field
from tally.api.contract_models import contract_json
from tally.billing import exact_json
from tally.billing.errors import InvalidInput
from tests.service.test_contract_edits import drafts, lines, stored, w  # noqa: F401 - w is the fixture
from tests.service.test_cycle_close import GRACE, NOV, OCT, SEATS, _contract, _stored_records

UTC = timezone.utc
NOV_10, NOV_12 = datetime(2026, 11, 10, tzinfo=UTC), datetime(2026, 11, 12, tzinfo=UTC)


def amend(w, contract: dict, **body) -> dict:  # noqa: F811
    request = {"customer_id": w.customer.id, "contract_id": contract["id"], **body}
    parsed = ContractAmend.model_validate(exact_json.loads(exact_json.dumps(request)))
    return w.edits.edit(w.customer.id, contract["id"], parsed.changes(), author="key-amend")


AMENDMENT = {
    "starting_at": "2026-11-10T00:00:00Z",
    "overrides": [{"starting_at": "2026-11-10T00:00:00Z", "product_id": "p-calls", "type": "MULTIPLIER", "multiplier": 0.5}],
    "scheduled_charges": [{"product_id": "p-setup", "name": "Expansion fee",
                           "schedule": {"schedule_items": [{"timestamp": "2026-11-12T00:00:00Z", "amount": 400}]}}],
    "credits": [{"product_id": "p-setup", "name": "Expansion credit", "priority": 1,
                 "access_schedule": {"schedule_items": [{"amount": 30, "starting_at": "2026-11-10T00:00:00Z",
                                                         "ending_before": "2026-12-01T00:00:00Z"}]}}],
    "salesforce_opportunity_id": "opp-7",
}


def test_an_amendment_adds_its_parts_reprices_the_drafts_and_is_listed_apart_from_the_initial_terms(w):  # noqa: F811
    contract = _contract(w, subscriptions=SEATS)
    w.usage.calls += [(datetime(2026, 11, 5, tzinfo=UTC), 10), (datetime(2026, 11, 12, tzinfo=UTC), 40)]
    initial = contract_json(stored(w, contract), w.contracts.contract(stored(w, contract)), w.contracts.products())["current"]

    record = amend(w, contract, **AMENDMENT)

    # Calls (flat 2 until Nov 15): 10 before Nov 10 = 20, 40 on Nov 12 at 2 × 0.5 = 40; the credit pays 30 of the 60.
    assert lines(w, "USAGE", NOV)[:2] == [("p-calls", Decimal(10), Decimal("20.00"), NOV),
                                          ("p-calls", Decimal(40), Decimal("40.00"), NOV_10)]
    assert ("USAGE", NOV, "DRAFT", Decimal("30.00")) in drafts(w)
    assert ("SCHEDULED", NOV_12, "DRAFT", Decimal("400.00")) in drafts(w)

    document = stored(w, contract)
    body = contract_json(document, w.contracts.contract(document), w.contracts.products())
    (amendment,) = body["amendments"]
    assert (amendment["id"], amendment["starting_at"], amendment["created_by"], amendment["salesforce_opportunity_id"]) == (
        record["id"], "2026-11-10T00:00:00Z", "key-amend", "opp-7")
    assert [o["id"] for o in amendment["overrides"]] == [record["add_overrides"][0]["id"]]
    assert [c["name"] for c in amendment["scheduled_charges"]] == ["Expansion fee"]
    assert [c["name"] for c in amendment["credits"]] == ["Expansion credit"] and amendment["commits"] == []
    for kind in ("overrides", "scheduled_charges", "credits", "commits"):
        assert body["initial"][kind] == initial[kind]  # the terms as created
        assert len(body["current"][kind]) == len(initial[kind]) + len(amendment[kind])
    # An amendment is an edit: one history entry with what it added.
    (entry,) = w.edits.history(w.customer.id, contract["id"])
    assert entry["id"] == record["id"] and [o["id"] for o in entry["add_overrides"]] == [o["id"] for o in amendment["overrides"]]


def test_a_part_removed_later_leaves_the_amendment_and_the_initial_terms_stay_as_created(w):  # noqa: F811
    from tests.service.test_contract_edits import edit

    contract = _contract(w)
    record = amend(w, contract, **AMENDMENT)
    edit(w, contract, remove_overrides=[{"id": record["add_overrides"][0]["id"]}])
    document = stored(w, contract)
    body = contract_json(document, w.contracts.contract(document), w.contracts.products())
    assert body["amendments"][0]["overrides"] == [] and body["initial"]["overrides"] == []
    assert [c["name"] for c in body["initial"]["scheduled_charges"]] == []


@pytest.mark.parametrize("changes, field", [
    ({"starting_at": "2026-10-20T00:00:00Z"}, "starting_at"),  # inside the finalized October
    ({"overrides": [{"starting_at": "2026-11-10T00:00:00Z", "product_id": "p-setup", "type": "MULTIPLIER",
                     "multiplier": 2}]}, "overrides[0].product_id"),
    ({"reseller_royalties": [{"reseller_type": "GCP", "fraction": 0.1, "netsuite_reseller_id": "ns-1"}]},
     "reseller_royalties[0].starting_at"),  # a new royalty needs its start
], ids=["effective in a finalized month", "an override of a product not on the card", "reseller royalties"])
def test_a_bad_amendment_is_refused_naming_the_amend_field_and_changes_nothing(w, changes, field):  # noqa: F811
    contract = _contract(w, subscriptions=SEATS)
    w.service.finalize(w.customer.id, contract["id"], OCT, NOV + GRACE)
    before, records = stored(w, contract), _stored_records(w)
    with pytest.raises(InvalidInput) as refused:
        amend(w, contract, **(AMENDMENT | changes))
    assert amend_field(refused.value.field) == field
    assert stored(w, contract) == before and _stored_records(w) == records
    assert w.edits.history(w.customer.id, contract["id"]) == []
