"""Issue 18, customers: setName, updateConfig (Salesforce id, ingest aliases) and archive, on moto's
DynamoDB and through the services. Archiving releases the customer's aliases in the transaction that
records archived_at; events sent under a released alias are no longer the archived customer's."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from tally.adapters.dynamo.billing import DynamoBillingStore
from tally.adapters.dynamo.events import DynamoEventStore
from tally.api.models import customer_detail_json
from tally.billing.customers import KeyHandover
from tally.billing.errors import Conflict, InvalidInput, NotFound
from tally.services.ingest import IngestService
from tally.services.usage import MetricQuery, WindowSize
from tests.service.conftest import NOW
from tests.service.test_ingest_and_metering import sum_metric, system, total, usage_event  # noqa: F401 (fixture)


def whole_day(system, customer, metric):
    (window,) = system.usage.usage([customer], [MetricQuery(metric.id)], NOW - timedelta(days=1), NOW + timedelta(days=1), WindowSize.NONE)
    return window.value


def test_set_name_renames_and_truncates_to_160_characters(system, clock):
    acme = system.customers.create("Acme", ["acme"], None, {})
    clock.now = NOW + timedelta(minutes=1)
    renamed = system.customers.set_name(acme.id, "Acme Corp")
    assert (renamed.name, renamed.updated_at, renamed.ingest_aliases) == ("Acme Corp", NOW + timedelta(minutes=1), ("acme",))
    assert system.customers.get(acme.id).name == "Acme Corp"
    assert len(system.customers.set_name(acme.id, "x" * 200).name) == 160
    with pytest.raises(InvalidInput) as error:
        system.customers.set_name(acme.id, "  ")
    assert error.value.field == "name"
    assert system.customers.get(acme.id).name == "x" * 160
    with pytest.raises(NotFound):
        system.customers.set_name("nope", "Nope")


def test_update_config_replaces_aliases_and_frees_the_old_ones(system):
    acme = system.customers.create("Acme", ["acme", "acme-old"], None, {})
    after = system.customers.update_config(acme.id, ingest_aliases=["acme", "acme-new"], salesforce_account_id="0015g00000XYZ")
    assert (after.ingest_aliases, after.salesforce_account_id) == (("acme", "acme-new"), "0015g00000XYZ")
    stored = system.customers.get(acme.id)
    assert customer_detail_json(stored)["customer_config"] == {"salesforce_account_id": "0015g00000XYZ"}
    assert customer_detail_json(stored)["current_billable_status"] == {"value": "billable"}
    assert "archived_at" not in customer_detail_json(stored)
    assert system.customers.by_alias("acme-new").id == acme.id
    assert system.customers.by_alias("acme-old") is None
    other = system.customers.create("Other", ["acme-old"], None, {})  # the freed alias is another's now
    assert system.customers.by_alias("acme-old").id == other.id


def test_update_config_with_a_taken_alias_changes_nothing(system):
    acme = system.customers.create("Acme", ["acme"], None, {})
    system.customers.create("Other", ["other"], None, {})
    with pytest.raises(Conflict, match="'other'"):
        system.customers.update_config(acme.id, ingest_aliases=["acme-2", "other"], salesforce_account_id="sf-1")
    stored = system.customers.get(acme.id)
    assert (stored.ingest_aliases, stored.salesforce_account_id) == (("acme",), None)
    assert system.customers.by_alias("acme-2") is None
    assert system.customers.by_alias("acme").id == acme.id
    with pytest.raises(InvalidInput) as error:
        system.customers.update_config(acme.id, ingest_aliases=["ok", ""])
    assert error.value.field == "ingest_aliases[1]"
    assert system.customers.get(acme.id).ingest_aliases == ("acme",)


def test_archive_releases_aliases_and_later_events_under_them_are_not_counted(system, clock):
    metric = sum_metric(system, clock)
    clock.now = NOW + timedelta(seconds=1)
    acme = system.customers.create("Acme", ["acme"], "acme-ext", {})
    system.ingest.ingest([usage_event(1, customer="acme", tokens=3)])

    clock.now = NOW + timedelta(seconds=2)
    archived = system.customers.archive(acme.id)
    assert (archived.archived_at, archived.ingest_aliases) == (NOW + timedelta(seconds=2), ())
    detail = customer_detail_json(system.customers.get(acme.id))
    assert detail["archived_at"] == "2026-11-24T12:00:02Z"
    assert detail["current_billable_status"] == {"value": "unbillable", "effective_at": "2026-11-24T12:00:02Z"}
    assert detail["ingest_aliases"] == []
    assert system.customers.by_alias("acme") is None and system.customers.by_alias("acme-ext") is None
    assert system.customers.by_alias(acme.id).id == acme.id  # its own id stays its own

    newco = system.customers.create("Newco", ["acme"], "acme-ext", {})  # aliases free for a new customer
    clock.now = NOW + timedelta(seconds=3)
    system.ingest.ingest([usage_event(2, customer="acme", tokens=5, minutes=1)])
    # Later events under the alias: one timed before the release edge (the next hour, 13:00) is
    # still the archived customer's usage (its draft keeps it); one timed after is the new owner's.
    system.ingest.ingest([usage_event(3, customer="acme", tokens=7, minutes=121)])
    system.stream()  # once: the harness feeds every stored event each time
    archived_now = system.customers.get(acme.id)
    assert whole_day(system, archived_now, metric) == Decimal(8)  # 3 + 5, timed while "acme" was its
    assert whole_day(system, newco, metric) == Decimal(7)  # none of the archived customer's usage
    assert newco.alias_since == {"acme": NOW + timedelta(hours=1), "acme-ext": NOW + timedelta(hours=1)}

    assert system.customers.archive(acme.id) == archived  # archiving again changes nothing
    with pytest.raises(InvalidInput) as error:
        system.customers.update_config(acme.id, ingest_aliases=["acme-back"])
    assert error.value.field == "ingest_aliases"
    assert system.customers.by_alias("acme-back") is None
    with pytest.raises(NotFound):
        system.customers.archive("nope")



def test_events_under_an_archived_customers_id_stop_counting_from_the_archive_instant(system, dynamo, clock):
    billing = DynamoBillingStore(dynamo["billing"], dynamo["client"])
    ingest = IngestService(DynamoEventStore(dynamo["events"], dynamo["client"]), clock, billing.handovers)
    metric = sum_metric(system, clock)
    clock.now = NOW + timedelta(seconds=1)
    acme = system.customers.create("Acme", [], None, {})
    other = system.customers.create("Other", [], None, {})
    # usage_event's timestamps: NOW - 1 h + minutes; the archive instant is NOW - 30 min (event time).
    clock.now = NOW - timedelta(minutes=30)  # a clock behind creation is fine here: only archived_at reads it
    system.customers.archive(acme.id)
    assert billing.handovers({acme.id, other.id, "nobody"}) == {acme.id: KeyHandover(ignored_from=NOW - timedelta(minutes=30))}
    clock.now = NOW + timedelta(seconds=2)
    result = ingest.ingest([
        usage_event(1, customer=acme.id, tokens=3, minutes=29),  # before the archive instant: counts
        usage_event(2, customer=acme.id, tokens=5, minutes=30),  # at it: ignored
        usage_event(3, customer=acme.id, tokens=7, minutes=59),  # after it: ignored
        usage_event(4, customer=other.id, tokens=11, minutes=59),  # another customer: counts
    ])
    assert (result.accepted, result.duplicates, result.ignored) == (4, 0, 2)
    system.stream()
    assert total(system, system.customers.get(acme.id), metric) == Decimal(3)
    assert total(system, other, metric) == Decimal(11)


def test_a_released_aliases_handover_hour_counts_for_its_new_owner_only_from_its_claim(system, dynamo, clock):
    # The counters split at hours, so the archived customer reads the alias up to the next hour
    # (13:00) and the new owner from there: ingest decides the events timed in between.
    billing = DynamoBillingStore(dynamo["billing"], dynamo["client"])
    ingest = IngestService(DynamoEventStore(dynamo["events"], dynamo["client"]), clock, billing.handovers)
    metric = sum_metric(system, clock)
    clock.now = NOW - timedelta(hours=1)  # 11:00
    acme = system.customers.create("Acme", ["acme"], None, {})
    clock.now = NOW + timedelta(minutes=10)  # 12:10: archived, "acme" released
    system.customers.archive(acme.id)
    clock.now = NOW + timedelta(minutes=20)  # 12:20: another customer claims "acme"
    newco = system.customers.create("Newco", ["acme"], None, {})
    clock.now = NOW + timedelta(hours=2)
    at = lambda minutes: {"minutes": 60 + minutes}  # usage_event times from 11:00  # noqa: E731
    result = ingest.ingest([
        usage_event(1, customer="acme", tokens=3, **at(5)),  # 12:05, before the archive: Acme's
        usage_event(2, customer="acme", tokens=5, **at(15)),  # 12:15, released and not yet claimed: no one's
        usage_event(3, customer="acme", tokens=7, **at(25)),  # 12:25, after Newco's claim: Newco's
        usage_event(4, customer="acme", tokens=11, **at(75)),  # 13:15, after the hour: Newco's
        usage_event(5, customer=acme.id, tokens=13, **at(30)),  # 12:30 under the archived id: no one's
    ])
    assert (result.accepted, result.ignored) == (5, 2)
    system.stream()
    assert whole_day(system, system.customers.get(acme.id), metric) == Decimal(3)
    assert whole_day(system, system.customers.get(newco.id), metric) == Decimal(7 + 11)
    assert billing.handovers({"acme"})["acme"] == KeyHandover(
        released=(NOW + timedelta(minutes=10), NOW + timedelta(hours=1)), owner=newco.id,
        claimed_at=NOW + timedelta(minutes=20))


def test_list_filters_combine_and_show_active_customers_unless_only_archived(system, clock):
    a = system.customers.create("A", [], None, {})
    system.customers.update_config(a.id, salesforce_account_id="sf-1")
    b = system.customers.create("B", ["bee"], None, {})
    system.customers.update_config(b.id, salesforce_account_id="sf-2")
    c = system.customers.create("C", [], None, {})
    system.customers.update_config(c.id, salesforce_account_id="sf-1")
    system.customers.archive(c.id)

    def ids(**filters):
        return [x.id for x in system.customers.list(100, None, **filters).items]

    assert sorted(ids()) == sorted([a.id, b.id])
    assert ids(only_archived=True) == [c.id]
    assert ids(customer_ids=[a.id, c.id, "nobody"]) == [a.id]  # an unknown id matches nothing
    assert ids(customer_ids=[a.id, c.id], only_archived=True) == [c.id]
    assert ids(ingest_alias="bee") == [b.id]
    assert ids(ingest_alias="bee", customer_ids=[a.id]) == [] and ids(ingest_alias="nobody") == []
    assert ids(salesforce_account_ids=["sf-1"]) == [a.id]
    assert ids(salesforce_account_ids=["sf-1"], only_archived=True) == [c.id]
    assert ids(salesforce_account_ids=["sf-2"], customer_ids=[a.id, b.id]) == [b.id]
    with pytest.raises(InvalidInput) as error:
        system.customers.list(100, None, customer_ids=[f"c{i}" for i in range(101)])
    assert error.value.field == "customer_ids"
