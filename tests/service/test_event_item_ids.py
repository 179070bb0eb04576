"""An original receipt's id is derived from its item (transaction id and ingest stamp), not stored:
37 bytes less per stored event. Each read of the same receipt gives the same id, receipts of other
transaction ids or other ingests other ids, and items written before, with an `id`, keep theirs."""

from __future__ import annotations

from datetime import timedelta

from tally.adapters.dynamo.events import ORIGINAL, DynamoEventStore, event_item, stamps, stored_event
from tally.billing.events import UsageEvent
from tests.service.conftest import NOW


def usage(transaction_id: str) -> UsageEvent:
    return UsageEvent(transaction_id=transaction_id, customer_id="acme", event_type="call",
                      timestamp=NOW - timedelta(minutes=5), properties={"tokens": 3})


def test_an_original_is_stored_without_an_id_and_read_with_a_stable_one(dynamo):
    store = DynamoEventStore(dynamo["events"], dynamo["client"])
    assert store.put_new([usage("t1"), usage("t2")], NOW) == []
    item = dynamo["client"].get_item(TableName=dynamo["events"],
                                     Key={"pk": {"S": "txn#t1"}, "sk": {"S": ORIGINAL}})["Item"]
    assert "id" not in item
    first, again = store.find(["t1"]), store.find(["t1"])
    assert [s.id for s in first] == [s.id for s in again] and len(first[0].id) == 32
    assert first[0].id != store.find(["t2"])[0].id
    scanned = {s.event.transaction_id: s.id for s in store.scan_ingested_before(NOW + timedelta(seconds=1))}
    assert scanned == {"t1": first[0].id, "t2": store.find(["t2"])[0].id}, "the scan derives the same ids"


def test_the_same_transaction_id_ingested_again_after_its_window_gets_another_id():
    ingested, expires = stamps(NOW)
    later, later_expires = stamps(NOW + timedelta(days=40))
    assert stored_event(event_item(usage("t1"), ingested, expires, ORIGINAL)).id != \
        stored_event(event_item(usage("t1"), later, later_expires, ORIGINAL)).id


def test_items_written_with_an_id_keep_it_and_duplicates_keep_their_own(dynamo):
    store = DynamoEventStore(dynamo["events"], dynamo["client"])
    ingested, expires = stamps(NOW)
    legacy = event_item(usage("t3"), ingested, expires, ORIGINAL) | {"id": {"S": "a1b2c3" * 5 + "007"}}
    dynamo["client"].put_item(TableName=dynamo["events"], Item=legacy)
    assert store.put_new([usage("t3")], NOW + timedelta(minutes=1)) == [usage("t3")]
    store.put_duplicate_receipts([usage("t3")], NOW + timedelta(minutes=1))
    original, duplicate = store.find(["t3"])
    assert original.id == "a1b2c3" * 5 + "007" and not original.is_duplicate
    assert duplicate.is_duplicate and duplicate.id not in (original.id, "")
