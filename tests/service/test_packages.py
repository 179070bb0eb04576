"""Packages as use cases: create, read, list, archive, aliases, and contracts made from them, with the
package store in memory and on moto (contracts on moto: their package links are written in the
contract's own transaction). Bodies go through the API's request models, as the routes send them."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from metronome.types.v1.package_retrieve_response import PackageRetrieveResponse
from pydantic import ValidationError

from tally.adapters.dynamo.billing import DynamoBillingStore
from tally.adapters.dynamo.catalog import DynamoCatalogStore
from tally.adapters.dynamo.custom_fields import DynamoCustomFieldStore
from tally.adapters.dynamo.documents import DynamoContractStore
from tally.adapters.dynamo.packages import DynamoPackageStore
from tally.adapters.memory import MemoryPackageStore
from tally.api.contract_models import ContractCreate
from tally.api.package_models import PackageCreate, package_json
from tally.billing import exact_json
from tally.billing.errors import Conflict, InvalidInput, NotFound
from tally.billing.time import parse_rfc3339
from tally.services.contracts import ContractService
from tally.services.custom_fields import CustomFieldService
from tally.services.customers import CustomerService
from tally.services.packages import PackageService, cursor_problem
from tests.service.test_contracts_service import FakeCatalog

UTC = timezone.utc


def _to_request(body: dict) -> dict:
    return ContractCreate.model_validate(body).to_document()


@pytest.fixture(params=["memory", "moto"])
def world(request, dynamo, clock):
    clock.now = datetime(2026, 1, 10, 12, tzinfo=UTC)
    billing = DynamoBillingStore(dynamo["billing"], dynamo["client"])
    contract_store = DynamoContractStore(dynamo["billing"], dynamo["client"])
    contracts = ContractService(contract_store, billing, FakeCatalog(), clock)
    store = MemoryPackageStore() if request.param == "memory" else DynamoPackageStore(dynamo["billing"], dynamo["client"])
    packages = PackageService(store, contract_store, contracts, _to_request, clock)
    customers = CustomerService(billing, clock)
    fields = CustomFieldService(DynamoCustomFieldStore(dynamo["billing"], dynamo["client"]), billing,
                                DynamoCatalogStore(dynamo["billing"], dynamo["client"]), contract_store, clock, packages=store)
    return {"packages": packages, "contracts": contracts, "clock": clock, "customers": customers, "fields": fields,
            "customer": customers.create("Acme", [], None, {})}


def _package(**changes) -> dict:
    body = {
        "name": "Starter",
        "contract_name": "Starter plan",
        "rate_card_id": "rc-std",
        "duration": {"unit": "YEARS", "value": 1},
        "commits": [{
            "product_id": "p-setup", "type": "PREPAID", "name": "Launch credit", "custom_fields": {"erp": "C-1"},
            "access_schedule": {"schedule_items": [
                {"amount": 500, "starting_at_offset": {"unit": "MONTHS", "value": 1}, "duration": {"unit": "MONTHS", "value": 1}}]},
            "invoice_schedule": {"schedule_items": [
                {"date_offset": {"unit": "DAYS", "value": 0}, "quantity": 1, "unit_price": 400}]},
        }],
        "overrides": [{
            "override_specifiers": [{"product_id": "p-calls"}], "type": "MULTIPLIER", "multiplier": 0.5,
            "starting_at_offset": {"unit": "WEEKS", "value": 2}, "duration": {"unit": "DAYS", "value": 10},
        }],
        "scheduled_charges": [{"product_id": "p-setup", "schedule": {"schedule_items": [
            {"date_offset": {"unit": "DAYS", "value": 3}, "quantity": 2, "unit_price": 2500}]}}],
        "subscriptions": [{
            "collection_schedule": "ADVANCE", "proration": {"is_prorated": True},
            "subscription_rate": {"product_id": "p-seats", "billing_frequency": "MONTHLY"}, "initial_quantity": 3,
        }],
        "usage_statement_schedule": {"frequency": "MONTHLY", "day": "FIRST_OF_MONTH"},
    }
    body.update(changes)
    return PackageCreate.model_validate(exact_json.loads(exact_json.dumps({k: v for k, v in body.items() if v is not None})))


def _create(world, **changes) -> dict:
    body = _package(**changes)
    return world["packages"].create(body.terms(), body.uniqueness_key)


def _contract(world, customer_id: str, starting_at: str, **fields) -> dict:
    request = {"customer_id": customer_id, "starting_at": starting_at, **fields}
    body = _to_request(world["packages"].contract_create_body(request))
    return world["contracts"].create(body, fields.get("uniqueness_key"))


def test_a_package_reads_back_as_metronome_shows_it(world):
    created = _create(
        world, aliases=[{"name": "starter"}],
        credits=[{"product_id": "p-setup", "priority": 1, "access_schedule": {"schedule_items": [
            {"amount": 50, "starting_at_offset": {"unit": "DAYS", "value": 0}, "duration": {"unit": "YEARS", "value": 1}}]}}],
        overrides=[{"override_specifiers": [{"product_id": "p-calls"}], "type": "OVERWRITE",
                    "overwrite_rate": {"rate_type": "FLAT", "price": 1}, "starting_at_offset": {"unit": "DAYS", "value": 0}}],
        recurring_commits=[{"product_id": "p-setup", "priority": 1, "commit_duration": {"value": 1},
                            "access_amount": {"unit_price": 100, "quantity": 1},
                            "starting_at_offset": {"unit": "MONTHS", "value": 0}}],
    )

    package = world["packages"].get(created["id"])
    shown = package_json(package, world["packages"].alias_windows([package])[package["id"]],
                         FakeCatalog().products(), {})
    parsed = PackageRetrieveResponse.model_validate({"data": shown}).data
    assert parsed.name == "Starter" and parsed.contract_name == "Starter plan" and parsed.rate_card_id == "rc-std"
    assert parsed.commits[0].product.name == "Onboarding"
    assert parsed.commits[0].access_schedule.schedule_items[0].starting_at_offset.unit == "MONTHS"
    assert parsed.commits[0].custom_fields == {"erp": "C-1"}
    assert parsed.overrides[0].override_specifiers[0].product_id == "p-calls"
    assert parsed.overrides[0].overwrite_rate.price == 1 and parsed.overrides[0].product.name == "API calls"
    assert parsed.credits[0].access_schedule.schedule_items[0].duration.unit == "YEARS"
    assert parsed.recurring_commits[0].access_amount.unit_price == 100 and parsed.recurring_commits[0].rate_type == "LIST_RATE"
    assert parsed.subscriptions[0].proration.invoice_behavior == "BILL_IMMEDIATELY"
    assert [a.name for a in parsed.aliases] == ["starter"]
    assert parsed.duration.value == 1 and parsed.archived_at is None
    made = world["contracts"].get(world["customer"].id, _contract(
        world, world["customer"].id, "2026-02-01T00:00:00Z", package_id=created["id"])["id"])
    assert [len(made[k]) for k in ("commits", "credits", "overrides", "recurring_commits")] == [1, 1, 1, 1]
    assert made["recurring_commits"][0]["starting_at"] == "2026-02-01T00:00:00Z"


def test_offsets_resolve_against_the_contract_start_month_ends_clamped(world):
    package = _create(world)
    customer = world["customer"]

    made = _contract(world, customer.id, "2026-01-31T00:00:00Z", package_id=package["id"], custom_fields={"deal": "D-9"}, uniqueness_key="k-1")

    stored = world["contracts"].get(customer.id, made["id"])
    assert stored["package_id"] == package["id"] and stored["name"] == "Starter plan"
    assert stored["ending_before"] == "2027-01-31T00:00:00Z"
    access = stored["commits"][0]["access_schedule"][0]
    assert (access["starting_at"], access["ending_before"]) == ("2026-02-28T00:00:00Z", "2026-03-28T00:00:00Z")
    assert stored["commits"][0]["invoice_schedule"][0]["timestamp"] == "2026-01-31T00:00:00Z"
    override = stored["overrides"][0]
    assert (override["starting_at"], override["ending_before"]) == ("2026-02-14T00:00:00Z", "2026-02-24T00:00:00Z")
    assert stored["scheduled_charges"][0]["schedule_items"][0]["timestamp"] == "2026-02-03T00:00:00Z"
    assert stored["subscriptions"][0]["starting_at"] == "2026-01-31T00:00:00Z"
    # Layered over the package: the request's own custom fields and uniqueness key.
    assert stored["custom_fields"] == {"deal": "D-9"} and stored["uniqueness_key"] == "k-1"
    # An ordinary contract: its engine object prices the override at the resolved dates.
    engine = world["contracts"].contract(stored)
    assert engine.overrides[0].starting_at == datetime(2026, 2, 14, tzinfo=UTC)
    with pytest.raises(Conflict):
        _contract(world, customer.id, "2026-01-31T00:00:00Z", package_id=package["id"], uniqueness_key="k-1")


def test_an_alias_names_the_package_it_was_last_given_to_at_the_contract_start(world):
    first = _create(world, aliases=[{"name": "starter"}])
    world["clock"].now += timedelta(minutes=1)
    second = _create(world, name="Starter v2", aliases=[{"name": "starter", "starting_at": "2026-06-01T00:00:00Z"}])
    customer = world["customer"]

    early = _contract(world, customer.id, "2026-03-01T00:00:00Z", package_alias="starter")
    late = _contract(world, world["customers"].create("Beta", [], None, {}).id, "2026-07-01T00:00:00Z",
                     package_alias="starter")

    assert early["package_id"] == first["id"] and late["package_id"] == second["id"]
    windows = world["packages"].alias_windows([first, second])
    assert windows[first["id"]] == [{"name": "starter", "starting_at": None, "ending_before": "2026-06-01T00:00:00Z"}]
    assert windows[second["id"]] == [{"name": "starter", "starting_at": "2026-06-01T00:00:00Z", "ending_before": None}]
    world["packages"].archive(first["id"])
    with pytest.raises(InvalidInput) as refused:
        _contract(world, customer.id, "2026-03-01T00:00:00Z", package_alias="starter")
    assert refused.value.field == "package_alias" and "archived" in refused.value.rule
    with pytest.raises(InvalidInput) as unknown:
        _contract(world, customer.id, "2026-03-01T00:00:00Z", package_alias="nobody")
    assert unknown.value.field == "package_alias"


def test_uniqueness_keys_and_repeated_aliases_are_refused_and_nothing_is_written(world):
    _create(world, uniqueness_key="pkg-1")
    with pytest.raises(Conflict):
        _create(world, uniqueness_key="pkg-1")
    with pytest.raises(InvalidInput) as twice:
        _create(world, aliases=[{"name": "a"}, {"name": "a"}])
    assert twice.value.field == "aliases[1].name"
    with pytest.raises(InvalidInput):  # the terms make no valid contract: an unknown product
        _create(world, name="Broken", scheduled_charges=[{"product_id": "p-nope", "schedule": {"schedule_items": [
            {"date_offset": {"unit": "DAYS", "value": 0}, "quantity": 1, "unit_price": 1}]}}])
    with pytest.raises(ValidationError, match="at most 1200 MONTHS"):
        _package(duration={"unit": "MONTHS", "value": 1201})
    names = [p["name"] for p in world["packages"].list("ALL", None, 10)[0]]
    assert names == ["Starter"]


def test_packages_list_in_pages_and_archive_filters(world):
    made = []
    for name in ("A", "B", "C"):
        made.append(_create(world, name=name))
        world["clock"].now += timedelta(seconds=1)
    packages = world["packages"]

    first, cursor = packages.list("ALL", None, 2)
    cursor_problem(cursor)  # a cursor it returned is one it takes
    second, last = packages.list("ALL", cursor, 2)
    assert [p["name"] for p in first] == ["A", "B"] and [p["name"] for p in second] == ["C"] and last is None

    archived = packages.archive(made[1]["id"])
    assert packages.archive(made[1]["id"])["archived_at"] == archived["archived_at"]  # twice: unchanged
    assert [p["name"] for p in packages.list("NOT_ARCHIVED", None, 10)[0]] == ["A", "C"]
    assert [p["name"] for p in packages.list("ARCHIVED", None, 10)[0]] == ["B"]
    with pytest.raises(InvalidInput) as refused:
        _contract(world, world["customer"].id, "2026-02-01T00:00:00Z", package_id=made[1]["id"])
    assert refused.value.field == "package_id"
    with pytest.raises(NotFound):
        packages.archive("no-such-package")


def test_contracts_on_a_package_are_paged_and_filtered(world):
    package = _create(world, duration={"unit": "MONTHS", "value": 2})
    other = _create(world, name="Other")
    customers = [world["customer"], *(world["customers"].create(n, [], None, {}) for n in ("B", "C"))]
    made = [_contract(world, c.id, start, package_id=package["id"])
            for c, start in zip(customers, ("2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z"))]
    _contract(world, customers[0].id, "2026-05-01T00:00:00Z", package_id=other["id"])
    packages = world["packages"]

    page, cursor = packages.contracts_on(package["id"], None, None, False, None, 2)
    cursor_problem(cursor)
    rest, end = packages.contracts_on(package["id"], None, None, False, cursor, 2)
    assert [c["id"] for c in page + rest] == [m["id"] for m in made] and end is None

    covering = parse_rfc3339("2026-02-15T00:00:00Z")  # the first ended 2026-03-01, the third starts then
    assert [c["id"] for c in packages.contracts_on(package["id"], covering, None, False, None, 10)[0]] == [m["id"] for m in made[:2]]
    since = parse_rfc3339("2026-02-01T00:00:00Z")
    assert [c["id"] for c in packages.contracts_on(package["id"], None, since, False, None, 10)[0]] == [m["id"] for m in made[1:]]
    world["contracts"].archive(customers[2].id, made[2]["id"])
    assert len(packages.contracts_on(package["id"], None, None, False, None, 10)[0]) == 2
    assert len(packages.contracts_on(package["id"], None, None, True, None, 10)[0]) == 3
    with pytest.raises(InvalidInput):
        packages.contracts_on(package["id"], covering, since, False, None, 10)


def test_custom_field_values_on_a_package_part_are_set_by_its_id_and_reach_later_contracts(world):
    package = _create(world)
    fields, packages = world["fields"], world["packages"]
    commit_id = package["commits"][0]["id"]
    charge_id = package["scheduled_charges"][0]["id"]
    fields.add_key("package_commit", "erp", enforce_uniqueness=False)
    fields.add_key("package_scheduled_charge", "sku", enforce_uniqueness=False)

    assert fields.set_values("package_commit", commit_id, {"erp": "C-2"}) == {"erp": "C-2"}
    fields.set_values("package_scheduled_charge", charge_id, {"sku": "S-1"})

    stored = packages.get(package["id"])
    assert stored["commits"][0]["custom_fields"] == {"erp": "C-2"}
    assert stored["scheduled_charges"][0]["custom_fields"] == {"sku": "S-1"}
    made = _contract(world, world["customer"].id, "2026-02-01T00:00:00Z", package_id=package["id"])
    assert world["contracts"].get(world["customer"].id, made["id"])["commits"][0]["custom_fields"] == {"erp": "C-2"}
    with pytest.raises(NotFound):  # a commit id is not a credit's
        fields.set_values("package_credit", commit_id, {})
    assert fields.delete_values("package_commit", commit_id, ["erp"]) == {}


def test_an_alias_schedule_is_written_only_over_the_version_it_was_computed_from(world):
    first = _create(world, aliases=[{"name": "pro"}])
    store = world["packages"]._store
    stale = store.alias_schedules(["pro"])["pro"]
    _create(world, name="Pro v2", aliases=[{"name": "pro", "starting_at": "2026-06-01T00:00:00Z"}])

    late = {"id": "late-package", "name": "Late", "created_at": "2026-01-10T12:00:00Z", "aliases": []}
    with pytest.raises(Conflict):  # a concurrent create read the schedule before the v2 took it
        store.create(late, {"pro": (stale[0] + [{"package_id": "late-package", "starting_at": None, "ending_before": None}],
                                    stale[1])}, None)
    assert store.get("late-package") is None
    assert [w["ending_before"] for w in world["packages"].alias_windows([first])[first["id"]]] == ["2026-06-01T00:00:00Z"]


@pytest.mark.parametrize("cursor", ["garbage", "2026-01-01T00:00:00.000000Z#", "x#y"])
def test_a_list_cursor_this_api_never_returned_is_a_400(cursor):
    with pytest.raises(InvalidInput) as refused:
        cursor_problem(cursor)
    assert refused.value.field == "next_page"
