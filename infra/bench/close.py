"""Figure 11 of `tally bench`: what one cycle-close run reads (find_due), with the wake index
(adapters/dynamo/close_index.py) and with the walk over every customer it replaced.

Worlds on moto in-process, side by side: SMALL customers all due, and the same number due among
BIG customers. In each, MADE due customers and one not-due customer are created through the
services (customer create, contract create: monthly, first of the month, from Oct 1; or from Oct 15
on its start day). The other customers are copies of those at the item level (customer, alias,
contract and lifecycle items with new ids, written with BatchWriteItem), because creating 100,000
contracts through the services on moto takes hours on a shared 2-core machine: a copy holds the
items the services wrote, the due ones as written (due at once), the not-due ones as a run that
read them left them (asleep until Nov 15). Every read request and item read during one
find_due call is counted (GetItem, BatchGetItem, Query, Scan; a GSI query's items included).

The all-due rows: the small world's customers, all due (monthly billing at midnight on the 1st: a
run on Oct 20 read each and put it to sleep until Nov 2), then with more copies all due, each time
closed by a run paged as the
workflow pages it (find_due with the task's cursor, PAGE_SIZE periods a page; nothing is finalized
between pages, which changes nothing here: no customer is put to sleep while it has periods due),
counting every item read by the whole run per due customer. The code before the cursor ran one
whole find_due per page (it read every customer still due, then dropped those behind its cursor):
one unpaged find_due is measured in the same world, times the pages the run took. With the Map
finalizing between pages, a page of that code read the customers not closed yet plus the page
just closed, so about half of that: still growing with the number due.
"""

from __future__ import annotations

import os
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterator
from unittest import mock

from infra.bench.invoice import Clock

UTC = timezone.utc
SETUP_AT = datetime(2026, 10, 20, tzinfo=UTC)
AS_OF = datetime(2026, 11, 2, 1, tzinfo=UTC)  # Oct 1 contracts' October is past its 24 h grace; Oct 15 ones are not
MADE = 5  # due customers per world created through the services; the others are copies of the first
GOAL = 2.0  # the index's run over BIG customers reads at most this many times the items of SMALL all due
ALL_DUE_GOAL = 1.1  # items read per due customer by a paged run: the larger world's over the smaller's


@dataclass(frozen=True)
class CloseSizes:
    due: int  # customers due, in both worlds
    big: int  # customers in the big world, `due` of them due
    walk_big: int  # customers of the big world the walk (before the index) is measured on

    all_due: tuple[int, int]  # customers all due: `due` (the small world), then as many more
    page: int  # periods per page of the all-due runs (the workflow's PAGE_SIZE, smaller in --quick)

    @classmethod
    def for_run(cls, quick: bool) -> "CloseSizes":
        from tally.services.cycle_close_tasks import PAGE_SIZE

        if quick:
            return cls(due=5, big=500, walk_big=50, all_due=(5, 15), page=2)
        return cls(due=1_000, big=100_000, walk_big=5_000, all_due=(1_000, 5_000), page=PAGE_SIZE)


@dataclass
class RunReads:
    requests: int = 0
    items: int = 0
    periods: int = 0
    pages: int = 1


class _ReadCounter:
    def __init__(self) -> None:
        self.reads = RunReads()
        self.on = False

    def count(self, operation: str, answer: dict) -> None:
        if not self.on:
            return
        if operation in ("Query", "Scan"):
            self.reads.requests += 1
            self.reads.items += len(answer.get("Items", ()))
        elif operation == "GetItem":
            self.reads.requests += 1
            self.reads.items += 1 if answer.get("Item") else 0
        elif operation == "BatchGetItem":
            self.reads.requests += 1
            self.reads.items += sum(len(items) for items in answer.get("Responses", {}).values())


_WRITES = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}


@contextmanager
def _counting(counter: _ReadCounter) -> Iterator[None]:
    """Count the reads; and make moto's Query read its partition only, as DynamoDB does (moto
    walks and sorts every item of the table for every query: hours at 100,000 customers). The
    items of each GSI partition are kept from one write to the next; a query's partition is given
    to moto's own query per thread (the services read in parallel threads). A Query's result,
    already DynamoDB JSON, is written with json.dumps. Results and pagination are moto's own."""
    import json
    import threading

    from botocore.client import BaseClient
    from moto.dynamodb.models.table import Table
    from moto.dynamodb.responses import DynamoResult

    original_call, original_query, original_all = BaseClient._make_api_call, Table.query, Table.all_items
    original_result = DynamoResult.execute_result
    partitions: dict[tuple[int, str], dict[str, list]] = {}
    lock, local = threading.Lock(), threading.local()

    def counted(client, operation: str, params: dict):
        if operation in _WRITES:
            with lock:
                partitions.clear()
        answer = original_call(client, operation, params)
        counter.count(operation, answer)
        return answer

    def by_value(table, index_name: str) -> dict[str, list]:
        with lock:
            found = partitions.get((id(table), index_name))
            if found is None:
                index = next(i for i in table.global_indexes if i.name == index_name)
                attr = next(k["AttributeName"] for k in index.schema if k["KeyType"] == "HASH")
                found = {}
                for part in list(table.items.values()):
                    for item in list(part.values()):
                        value = item.attrs.get(attr)
                        if value is not None:
                            found.setdefault(value.value, []).append(item)
                partitions[(id(table), index_name)] = found
            return found

    def query(self, hash_key, *args, **kwargs):
        index_name = args[6] if len(args) > 6 else kwargs.get("index_name")
        if hash_key is None or (not index_name and not self.range_key_attr):
            return original_query(self, hash_key, *args, **kwargs)
        if index_name:
            partition = by_value(self, index_name).get(hash_key.value, [])
        else:
            partition = list(self.items.get(hash_key, {}).values())
        local.partition = (self, partition)
        try:
            return original_query(self, hash_key, *args, **kwargs)
        finally:
            local.partition = None

    def all_items(self):
        given = getattr(local, "partition", None)
        return given[1] if given is not None and given[0] is self else original_all(self)

    def execute_result(self, context):
        if context.operation_model.name == "Query":
            try:
                return 200, {"Content-Type": "application/x-amz-json-1.0"}, json.dumps(self.result)
            except TypeError:  # binary values: moto's serializer encodes them
                pass
        return original_result(self, context)

    with mock.patch.object(BaseClient, "_make_api_call", counted), mock.patch.object(Table, "query", query), \
            mock.patch.object(Table, "all_items", all_items), mock.patch.object(DynamoResult, "execute_result", execute_result):
        yield


def _create_tables(client, prefix: str) -> dict[str, str]:
    """Billing (gsi1, gsi2), events and counters tables, keyed as the CDK app defines them."""
    keys = {"KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"},
                                     {"AttributeName": "sk", "AttributeType": "S"}],
            "BillingMode": "PAY_PER_REQUEST"}
    names = {kind: f"{prefix}-{kind}" for kind in ("billing", "events", "counters")}
    gsis = [{"IndexName": f"gsi{n}", "KeySchema": [{"AttributeName": f"gsi{n}pk", "KeyType": "HASH"},
                                                   {"AttributeName": f"gsi{n}sk", "KeyType": "RANGE"}],
             "Projection": {"ProjectionType": "ALL" if n == 1 else "KEYS_ONLY"}} for n in (1, 2)]
    client.create_table(
        TableName=names["billing"], GlobalSecondaryIndexes=gsis,
        **{**keys, "AttributeDefinitions": keys["AttributeDefinitions"] + [
            {"AttributeName": f"gsi{n}{k}", "AttributeType": "S"} for n in (1, 2) for k in ("pk", "sk")]},
    )
    client.create_table(TableName=names["events"], **keys)
    client.create_table(TableName=names["counters"], **keys)
    return names


class _World:
    """One deployment's billing table, with the services of `tally.wiring` pointed at it."""

    def __init__(self, tables: dict[str, str], clock) -> None:
        from tally import wiring
        from tally.adapters.dynamo.client import dynamodb

        self.tables = tables
        self.client = dynamodb()
        self.customers = wiring.customer_service()
        self.contracts = wiring.contract_service()
        self.close = wiring.cycle_close_service()
        self.clock = clock
        self.rate_card_id = wiring.catalog_service().create_rate_card("Bench close").id

    def open(self, due: bool) -> tuple[str, str]:
        from tally.api.contract_models import ContractCreate

        customer = self.customers.create("Bench close customer", [], None, {})
        body = ContractCreate.model_validate({
            "customer_id": customer.id, "rate_card_id": self.rate_card_id, "name": "Close 2026",
            "starting_at": "2026-10-01T00:00:00Z" if due else "2026-10-15T00:00:00Z",
            "usage_statement_schedule": {"frequency": "MONTHLY", "day": "FIRST_OF_MONTH" if due else "CONTRACT_START"},
        })
        return customer.id, self.contracts.create(body.to_document())["id"]

    def copy(self, customer_id: str, contract_id: str, copies: int) -> None:
        """`copies` customers made of the items of this one, with new ids (BatchWriteItem)."""
        from tally.adapters.dynamo.close_index import shard_of

        table = self.tables["billing"]
        items, kwargs = [], {"TableName": table}
        while True:
            page = self.client.scan(**kwargs)
            items += [i for i in page["Items"] if any(
                customer_id in v.get("S", "") or contract_id in v.get("S", "") for v in i.values())]
            if not page.get("LastEvaluatedKey"):
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        pending = []
        for _ in range(copies):
            new_customer, new_contract = str(uuid.uuid4()), str(uuid.uuid4())
            for item in items:
                copy = {k: ({"S": v["S"].replace(customer_id, new_customer).replace(contract_id, new_contract)}
                            if "S" in v else v) for k, v in item.items()}
                if "gsi2pk" in copy:
                    copy["gsi2pk"] = {"S": shard_of(new_customer)}
                pending.append({"PutRequest": {"Item": copy}})
        for start in range(0, len(pending), 25):
            request = {table: pending[start : start + 25]}
            while request:
                request = self.client.batch_write_item(RequestItems=request).get("UnprocessedItems") or None

    def run_paged(self, counter: _ReadCounter, page: int, at: datetime = AS_OF) -> RunReads:
        """One run as the workflow pages it: find_due a page at a time after the previous page's
        cursor, until none is left; every page's reads counted."""
        from tally import wiring

        self.clock.now = at
        grace = timedelta(hours=wiring.get_settings().grace_period_hours)
        counter.reads, counter.on = RunReads(pages=0), True
        periods, cursor = 0, None
        try:
            while True:
                found = self.close.find_due(at, grace, after=cursor, limit=page)
                periods += len(found.periods)
                counter.reads.pages += 1
                cursor = found.cursor
                if cursor is None:
                    break
        finally:
            counter.on = False
        counter.reads.periods = periods
        return counter.reads

    def run(self, counter: _ReadCounter, index: bool = True, at: datetime = AS_OF) -> RunReads:
        """One find_due as of `at`, its reads counted; without `index`, the walk over every customer."""
        from tally import wiring
        from tally.services.cycle_close import CycleCloseService

        service = self.close
        if not index:
            s = service
            service = CycleCloseService(s._invoices, s._store, s._customers, s._publisher, s._invoices_topic,
                                        s._clock, s._grace, timing=s._timing, sleep=s._sleep)
        self.clock.now = at
        counter.reads, counter.on = RunReads(), True
        try:
            found = service.find_due(at, timedelta(hours=wiring.get_settings().grace_period_hours))
        finally:
            counter.on = False
        counter.reads.periods = len(found.periods)
        return counter.reads


@contextmanager
def _world(client, prefix: str, clock: Clock) -> Iterator[_World]:
    from tally import wiring

    tables = _create_tables(client, prefix)
    names = {"BILLING_TABLE": tables["billing"], "EVENTS_TABLE": tables["events"], "COUNTERS_TABLE": tables["counters"]}
    with mock.patch.dict(os.environ, names), mock.patch.object(wiring, "system_clock", clock):
        wiring.reset()
        try:
            yield _World(tables, clock)
        finally:
            wiring.reset()


def measure(sizes: CloseSizes, progress: Callable[[str], None] = lambda _: None) -> dict[str, RunReads]:
    """The reads of one run in each world: SMALL all due, BIG with as many due; the index's and,
    on `walk_big` customers, the walk's."""
    import boto3
    from moto import mock_aws

    settings = {"AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
                "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled"}
    results: dict[str, RunReads] = {}
    counter = _ReadCounter()
    with mock.patch.dict(os.environ, settings), mock_aws(), _counting(counter):
        client = boto3.client("dynamodb")
        for name, total in (("small", sizes.due), ("big", sizes.big), ("walk_big", sizes.walk_big)):
            began = time.perf_counter()
            clock = Clock(SETUP_AT)
            with _world(client, f"tally-bench-close-{name}", clock) as world:
                made = [world.open(due=True) for _ in range(min(sizes.due, MADE))]
                world.copy(*made[0], sizes.due - len(made))  # as written: due at once
                template = world.open(due=False) if total > sizes.due else None
                world.run(counter, at=SETUP_AT)  # a run reads each new contract once and puts it to sleep
                if template is not None:
                    world.copy(*template, total - sizes.due - 1)  # asleep, as the template
                if name == "small":
                    results["walk_small"] = world.run(counter, index=False)
                results[name] = world.run(counter, index=name != "walk_big")
                if name == "small":
                    _all_due(world, counter, sizes, made[0], results)
            progress(f"{name}: {total:,} customers, {sizes.due:,} due, in {time.perf_counter() - began:.1f} s")
    return results


def _all_due(world: _World, counter: _ReadCounter, sizes: CloseSizes, made: tuple[str, str],
             results: dict[str, RunReads]) -> None:
    """In the world of `due` customers all due: a paged run; then as many again `all_due[1]` (copies,
    read once on Oct 20 and asleep until Nov 2 as the others) and a paged run and an unpaged one.
    (The unpaged find_due over `due` is the world's `small` run.)"""
    small_n, big_n = sizes.all_due
    results[f"all_due_{small_n}"] = world.run_paged(counter, sizes.page)
    results[f"all_due_{small_n}_whole"] = results["small"]
    world.copy(*made, big_n - small_n)
    world.run(counter, at=SETUP_AT)  # reads the copies once: asleep until Nov 2, as the others
    results[f"all_due_{big_n}"] = world.run_paged(counter, sizes.page)
    results[f"all_due_{big_n}_whole"] = world.run(counter)


def figure_close(report, quick: bool, progress: Callable[[str], None] = lambda _: None) -> None:
    """Figure 11 rows: items read by one cycle-close run, big world against small, index and walk."""
    from infra.bench.report import Row as row

    sizes = CloseSizes.for_run(quick)
    r = measure(sizes, progress)
    index_ratio = r["big"].items / r["small"].items
    walk_ratio = r["walk_big"].items / r["walk_small"].items
    report.figures |= {
        "close_small_items_read": r["small"].items, "close_small_read_requests": r["small"].requests,
        "close_big_items_read": r["big"].items, "close_big_read_requests": r["big"].requests,
        "close_big_vs_small_items": index_ratio,
        "close_walk_small_items_read": r["walk_small"].items, "close_walk_big_items_read": r["walk_big"].items,
        "close_walk_big_vs_small_items": walk_ratio,
    }
    report.rows.append(row(
        f"11 cycle-close run reads, {sizes.big:,} customers ({sizes.due:,} due) vs {sizes.due:,} all due",
        f"{r['big'].items:,} items, {r['big'].requests:,} requests ({r['big'].periods:,} periods found)",
        f"{r['small'].items:,} items, {r['small'].requests:,} requests ({r['small'].periods:,} periods found)",
        f"{index_ratio:.2f}×", f"≤ {GOAL:.0f}×", "met" if index_ratio <= GOAL else "missed",
    ))
    report.rows.append(row(
        f"11 before the index (walk of every customer), {sizes.walk_big:,} customers ({sizes.due:,} due) vs {sizes.due:,}",
        f"{r['walk_big'].items:,} items, {r['walk_big'].requests:,} requests",
        f"{r['walk_small'].items:,} items, {r['walk_small'].requests:,} requests",
        f"{walk_ratio:.2f}×", "", "",
    ))
    small_n, big_n = sizes.all_due
    small, big = r[f"all_due_{small_n}"], r[f"all_due_{big_n}"]
    per_customer = {n: r[f"all_due_{n}"].items / n for n in sizes.all_due}
    before = {n: r[f"all_due_{n}_whole"].items * r[f"all_due_{n}"].pages / n for n in sizes.all_due}
    all_due_ratio = per_customer[big_n] / per_customer[small_n]
    before_ratio = before[big_n] / before[small_n]
    report.figures |= {
        "close_all_due_small_items_per_customer": per_customer[small_n],
        "close_all_due_big_items_per_customer": per_customer[big_n],
        "close_all_due_big_vs_small_per_customer": all_due_ratio,
        "close_all_due_before_small_items_per_customer": before[small_n],
        "close_all_due_before_big_items_per_customer": before[big_n],
        "close_all_due_before_big_vs_small_per_customer": before_ratio,
    }
    report.rows.append(row(
        f"11 all due, one run paged as the workflow pages it ({sizes.page} a page): items read per due customer, "
        f"{big_n:,} due vs {small_n:,}",
        f"{per_customer[big_n]:.1f} ({big.items:,} items, {big.requests:,} requests, {big.pages} pages, "
        f"{big.periods:,} periods)",
        f"{per_customer[small_n]:.1f} ({small.items:,} items, {small.requests:,} requests, {small.pages} pages, "
        f"{small.periods:,} periods)",
        f"{all_due_ratio:.2f}×", f"≤ {ALL_DUE_GOAL}×", "met" if all_due_ratio <= ALL_DUE_GOAL else "missed",
    ))
    report.rows.append(row(
        f"11 all due, before the cursor (a whole find_due per page), {big_n:,} due vs {small_n:,}",
        f"{before[big_n]:,.1f} per customer ({r[f'all_due_{big_n}_whole'].items:,} items a page × {big.pages})",
        f"{before[small_n]:,.1f} per customer ({r[f'all_due_{small_n}_whole'].items:,} items a page × {small.pages})",
        f"{before_ratio:.2f}×", "", "",
    ))
    report.notes.append(
        f"11 all due: the small world ({min(small_n, MADE)} customers created through the services, the others "
        f"item-level copies), then with {big_n - small_n:,} more copies; a run on {SETUP_AT:%b %d} read each and put "
        f"it to sleep until its October closes. The "
        f"paged run's reads include the wake index's chunks and each customer's own entries (gsi1, keys only). "
        f"'Before the cursor' is one unpaged find_due measured in the same world (it also reads each customer's own "
        f"entries, about 1 item the old code did not) times the pages of the paged run "
        f"(the old code's every page read every customer still due; with the Map closing a page between calls, "
        f"about half of that, still growing with the number due)."
    )
    report.notes.append(
        f"11: one find_due call as of {AS_OF:%Y-%m-%d %H:%M} UTC, moto in-process; reads counted per request and item "
        f"(GSI queries included). Per world, {min(sizes.due, MADE)} due customers and one not-due customer are created "
        f"through the services; the others are item-level copies of those (creating {sizes.big:,} contracts through "
        f"the services on moto takes hours). The walk is measured on {sizes.walk_big:,} customers: it reads every "
        f"customer, so its items grow with the customer count."
    )
