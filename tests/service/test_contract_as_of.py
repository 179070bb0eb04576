"""v2 get's as_of_date: the contract as its edit history had it at an instant. moto DynamoDB and the
contract edit world (tests/service/test_contract_edits.py); the contract is created Nov 24 2026
12:00 and edited at 13:00 and 14:00, then archived at 14:30.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from tally.api.contract_models import ContractView
from tally.api.contract_v2_models import contract_v2_json
from tally.billing.errors import InvalidInput
from tally.billing.time import parse_rfc3339
from tests.service.test_contract_edits import edit, stored, w  # noqa: F401 (fixture)
from tests.service.test_cycle_close import SEATS, _contract

UTC = timezone.utc
T0 = datetime(2026, 11, 24, 12, tzinfo=UTC)


def v2(w, document: dict) -> dict:
    return contract_v2_json(document, w.contracts.contract(document), w.contracts.products(), ContractView(T0))


def test_the_contract_as_of_an_instant_is_the_one_its_edits_had_made_by_then(w, clock):
    contract = _contract(w, subscriptions=SEATS, name="Acme 2026")
    created = v2(w, stored(w, contract))
    clock.now = T0 + timedelta(hours=1)
    edit(w, contract, update_contract_name="Renamed", add_overrides=[
        {"starting_at": "2026-12-01T00:00:00Z", "product_id": "p-calls", "type": "MULTIPLIER", "multiplier": 0.5}])
    after_first = v2(w, stored(w, contract))
    clock.now = T0 + timedelta(hours=2)
    sub_id = stored(w, contract)["subscriptions"][0]["id"]
    edit(w, contract, update_contract_name="Second", update_subscriptions=[
        {"subscription_id": sub_id, "quantity_updates": [{"starting_at": "2026-12-01T00:00:00Z", "quantity": 5}]}])
    clock.now = T0 + timedelta(hours=2, minutes=30)
    w.contracts.archive(w.customer.id, contract["id"])
    now = v2(w, stored(w, contract))

    def as_of(hours: float) -> dict:
        return v2(w, w.edits.as_of(w.customer.id, contract["id"], T0 + timedelta(hours=hours)))

    # Before the first edit, exactly as created; from its instant on, as it left the contract.
    assert as_of(0) == as_of(0.5) == created
    assert as_of(1) == as_of(1.5) == after_first
    assert (after_first["name"], len(after_first["overrides"])) == ("Renamed", 1)
    # After the second edit and before the archive: its changes, not archived yet.
    between = as_of(2.25)
    assert between["name"] == "Second" and "archived_at" not in between
    assert [q["quantity"] for q in between["subscriptions"][0]["quantity_schedule"]] == [3, 5]
    assert as_of(3) == now and parse_rfc3339(now["archived_at"]) == T0 + timedelta(hours=2, minutes=30)

    with pytest.raises(InvalidInput) as refused:
        w.edits.as_of(w.customer.id, contract["id"], T0 - timedelta(minutes=1))
    assert refused.value.field == "as_of_date"
