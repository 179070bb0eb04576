"""POST /v1/contracts/setUsageFilter as a contract edit: moto DynamoDB, the cycle close world, API
calls at 2 cents with a `region` property. The contract starts Oct 1 2026 billing only region eu;
"now" is Nov 24 2026 12:00 and October is finalized.
"""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest

from tally.adapters.dynamo.documents import DynamoContractStore
from tally.api.contract_edit_models import edit_json
from tally.api.contract_models import ContractView, contract_json
from tally.api.usage_filter_models import UsageFilterSet
from tally.billing.errors import InvalidInput
from tally.services.contract_edits import ContractEditService
from tally.services.usage_filter_edits import request_field
from tests.service.test_contract_edits import drafts, stored
from tests.service.test_contracts_service import FakeCatalog
from tests.service.test_cycle_close import GRACE, NOV, OCT, _contract, _stored_records, _world

UTC = timezone.utc
EU = {"group_key": "region", "group_values": ["eu"]}


class RegionUsage:
    """API calls at given instants, each from a region."""

    def __init__(self, calls: list[tuple[datetime, int, str]]) -> None:
        self.calls = calls

    def quantity(self, metric_id, group_values, start, end) -> Decimal:
        region = (group_values or {}).get("region")
        return Decimal(sum(n for at, n, r in self.calls if start <= at < end and region in (None, r)))

    def group_values(self, metric_id, group_keys, start, end):
        regions = sorted({r for at, _, r in self.calls if start <= at < end})
        return [{k: (r if k == "region" else None) for k in group_keys} for r in regions]


@pytest.fixture()
def w(dynamo, clock):
    clock.now = datetime(2026, 11, 24, 12, tzinfo=UTC)
    usage = RegionUsage([
        (datetime(2026, 10, 10, tzinfo=UTC), 10, "eu"), (datetime(2026, 10, 10, tzinfo=UTC), 5, "us"),
        (datetime(2026, 11, 5, tzinfo=UTC), 10, "eu"), (datetime(2026, 11, 5, tzinfo=UTC), 20, "us"),
        (datetime(2026, 11, 10, tzinfo=UTC), 4, "eu"), (datetime(2026, 11, 10, tzinfo=UTC), 6, "us"),
    ])
    world = _world(dynamo, clock, FakeCatalog(), lambda customer: usage)
    world.edits = ContractEditService(world.contracts, DynamoContractStore(dynamo["billing"], dynamo["client"]),
                                      world.store, clock, sleep=lambda _: None)
    world.contract = _contract(world, usage_filter=EU)
    world.service.finalize(world.customer.id, world.contract["id"], OCT, NOV + GRACE)
    return world


def set_filter(w, **body) -> dict:
    """The route's work: the request model's changes, as one edit, errors named as the route names them."""
    request = UsageFilterSet.model_validate({"customer_id": w.customer.id, "contract_id": w.contract["id"], **body})
    try:
        return w.edits.edit(w.customer.id, w.contract["id"], request.changes(), author="key-1")
    except InvalidInput as exc:
        raise InvalidInput(request_field(exc.field), exc.rule) from exc


def test_a_filter_set_mid_month_reprices_the_draft_from_its_start_and_is_one_history_entry(w):
    # October (finalized): eu's 10 calls x 2 = 20. November so far: eu's 10 + 4 calls x 2 = 28.
    assert ("USAGE", OCT, "FINALIZED", Decimal("20.00")) in drafts(w)
    assert ("USAGE", NOV, "DRAFT", Decimal("28.00")) in drafts(w)
    records = _stored_records(w)

    record = set_filter(w, group_key="region", group_values=["eu", "us"], starting_at="2026-11-08T00:00:00Z")

    # Nov 1-8 eu only: 10 calls; from Nov 8 eu and us: 4 + 6. (10 + 10) x 2 = 40. October unchanged.
    assert ("USAGE", NOV, "DRAFT", Decimal("40.00")) in drafts(w)
    assert ("USAGE", OCT, "FINALIZED", Decimal("20.00")) in drafts(w)
    assert _stored_records(w) == records
    document = stored(w, w.contract)
    assert document["usage_filter"] == EU | {"updates": [
        {"group_key": "region", "group_values": ["eu", "us"], "starting_at": "2026-11-08T00:00:00Z"}]}

    (entry,) = w.edits.history(w.customer.id, w.contract["id"])
    assert entry["id"] == record["id"] and entry["created_by"] == "key-1"
    body = edit_json(entry, document, w.contracts.contract(document), w.contracts.products(), ContractView())
    assert body["add_usage_filters"] == [
        {"group_key": "region", "group_values": ["eu", "us"], "starting_at": "2026-11-08T00:00:00Z"}]
    v1 = contract_json(document, w.contracts.contract(document), w.contracts.products(), ContractView(w.clock.now))
    assert v1["current"]["usage_filter"]["current"] == {
        "group_key": "region", "group_values": ["eu", "us"], "starting_at": "2026-11-08T00:00:00Z"}

    # Set again from Nov 10, back to eu: it replaces nothing before it. Nov 8-10 eu+us (none then),
    # from Nov 10 eu's 4. 10 + 4 calls x 2 = 28; the history has two entries, the first now ending Nov 10.
    set_filter(w, group_key="region", group_values=["eu"], starting_at="2026-11-10T00:00:00Z")
    assert ("USAGE", NOV, "DRAFT", Decimal("28.00")) in drafts(w)
    document = stored(w, w.contract)
    first = edit_json(w.edits.history(w.customer.id, w.contract["id"])[0], document, w.contracts.contract(document),
                      w.contracts.products(), ContractView())
    assert first["add_usage_filters"][0]["ending_before"] == "2026-11-10T00:00:00Z"


@pytest.mark.parametrize("body, field", [
    ({"group_key": "region", "group_values": ["us"], "starting_at": "2026-10-20T00:00:00Z"}, "starting_at"),
    ({"group_key": "region", "group_values": ["us"], "starting_at": "2026-11-08T00:30:00Z"}, "starting_at"),
    ({"group_key": "plan", "group_values": ["pro"], "starting_at": "2026-11-08T00:00:00Z"}, "group_key"),
    ({"group_key": "region", "group_values": ["us", "us"], "starting_at": "2026-11-08T00:00:00Z"}, "group_values"),
], ids=["inside finalized October", "not on the hour", "a key the metric does not group by", "a repeated value"])
def test_a_bad_filter_is_refused_naming_the_field_and_changes_nothing(w, body, field):
    before = stored(w, w.contract)
    with pytest.raises(InvalidInput) as refused:
        set_filter(w, **body)
    assert refused.value.field == field
    assert stored(w, w.contract) == before
    assert w.edits.history(w.customer.id, w.contract["id"]) == []
