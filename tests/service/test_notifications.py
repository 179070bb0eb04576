"""Offset lifecycle notifications on moto: configurations, and delivery exactly once per
(configuration, occurrence) as the close workflow's task runs it."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from tally.adapters.dynamo.documents import DynamoContractStore, DynamoGrantStore
from tally.adapters.dynamo.notifications import DynamoLifecycleIndex, DynamoNotificationStore
from tally.billing.errors import Conflict, InvalidInput
from tally.billing.notifications import invoice_finalized_occurrence
from tally.services.notifications import NotificationNotFound, NotificationService, deliver_notifications

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
END = datetime(2026, 12, 10, tzinfo=UTC)
TOPIC = "arn:aws:sns:us-east-1:123456789012:alerts"


class Inbox:
    """A publisher that keeps what it was given; `fail` makes the next publishes raise."""

    def __init__(self) -> None:
        self.messages: list[dict] = []
        self.fail = 0
        self._lock = threading.Lock()

    def publish(self, topic_arn, message, attributes):
        with self._lock:
            if self.fail:
                self.fail -= 1
                raise ConnectionError("SNS is down")
            assert topic_arn == TOPIC
            self.messages.append({"message": dict(message), "attributes": dict(attributes)})
            return f"sns-{len(self.messages)}"

    def of_type(self, type_: str) -> list[dict]:
        return [m["message"] for m in self.messages if m["message"]["type"] == type_]


@pytest.fixture()
def world(dynamo, clock):
    clock.now = NOW
    table = dynamo["billing"]
    contracts = DynamoContractStore(table, dynamo["client"], clock)  # the clock dates late occurrences
    grants = DynamoGrantStore(table, dynamo["client"], clock)
    invoices: dict[str, object] = {}
    inbox = Inbox()

    def service() -> NotificationService:
        return NotificationService(
            DynamoNotificationStore(table, dynamo["client"]), inbox, lambda: TOPIC, clock,
            contracts=contracts.get, invoices=invoices.get, grants=grants.get,
        )

    return SimpleNamespace(
        table=table, client=dynamo["client"], contracts=contracts, grants=grants, invoices=invoices, inbox=inbox, clock=clock,
        service=service(), another=service, index=DynamoLifecycleIndex(table, dynamo["client"], clock),
    )


def _contract(contract_id: str = "c1", end: datetime = END, customer: str = "cust-1") -> dict:
    return {
        "id": contract_id,
        "customer_id": customer,
        "starting_at": "2026-11-01T00:00:00Z",
        "ending_before": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "commits": [],
        "credits": [],
    }


def run(world, at: datetime, expect_failed: bool = False, **kwargs) -> dict:
    summary = world.service.deliver_due(at, **kwargs).summary()
    assert bool(summary["failed"]) == expect_failed, summary
    return summary


# -- configurations --------------------------------------------------------------------------
def test_a_configuration_is_created_read_listed_edited_and_archived(world):
    created = world.service.create("renewal", "contract.end", "-P3D")
    assert created["policy"] == {"type": "contract.end", "offset": "-P3D"}
    assert world.service.get(created["id"])["name"] == "renewal"
    edited = world.service.edit(created["id"], "contract.end", "-P7D", name="renewal, a week ahead")
    assert (edited["name"], edited["policy"]["offset"]) == ("renewal, a week ahead", "-P7D")
    assert [c["id"] for c in world.service.list()] == [created["id"]]
    archived = world.service.archive(created["id"])
    assert archived["archived_at"] == "2026-11-24T12:00:00Z"
    assert world.service.list() == []
    assert [c["id"] for c in world.service.list("ARCHIVED")] == [created["id"]]
    with pytest.raises(InvalidInput) as caught:
        world.service.edit(created["id"], "contract.end", "-P1D")
    assert caught.value.field == "id"


@pytest.mark.parametrize(
    ("type_", "offset", "field"),
    [
        pytest.param("contract.renewed", "P1D", "policy.type", id="an unsupported lifecycle event type"),
        pytest.param("contract.end", "P1M", "policy.offset", id="an offset in months"),
        pytest.param("contract.end", "soon", "policy.offset", id="not a duration"),
    ],
)
def test_a_bad_policy_is_refused_by_name_and_nothing_is_stored(world, type_, offset, field):
    with pytest.raises(InvalidInput) as caught:
        world.service.create("bad", type_, offset)
    assert caught.value.field == field
    assert world.service.list("ALL") == []


def test_a_uniqueness_key_makes_a_second_create_a_conflict_and_an_unknown_id_is_not_found(world):
    world.service.create("once", "contract.start", "PT0S", uniqueness_key="k1")
    with pytest.raises(Conflict):
        world.service.create("twice", "contract.start", "PT0S", uniqueness_key="k1")
    assert len(world.service.list()) == 1
    with pytest.raises(NotificationNotFound):
        world.service.get("no-such-notification")


def test_the_type_of_a_configuration_cannot_change(world):
    created = world.service.create("renewal", "contract.end", "-P3D")
    with pytest.raises(InvalidInput) as caught:
        world.service.edit(created["id"], "contract.start", "-P3D")
    assert caught.value.field == "policy.type"


# -- delivery --------------------------------------------------------------------------------
def test_minus_p3d_fires_three_days_before_the_contract_end_not_earlier_and_only_once(world):
    config = world.service.create("renewal", "contract.end", "-P3D")
    world.contracts.create(_contract())
    assert run(world, END - timedelta(days=3, seconds=1))["delivered"] == 0  # one second early
    assert world.inbox.messages == []
    assert run(world, END - timedelta(days=3))["delivered"] == 1  # exactly three days before
    # the run's watermark: the next run walks only what falls due after it
    assert world.service._store.get(config["id"])["_evaluated_until"] == "2026-12-07T00:00:00Z"
    assert run(world, END - timedelta(days=2))["delivered"] == 0  # the next run
    assert run(world, END - timedelta(days=3))["delivered"] == 0  # the same run again
    (message,) = world.inbox.of_type("contract.end")
    assert {k: message["properties"][k] for k in ("notification_id", "customer_id", "contract_id", "event_timestamp", "timestamp")} == {
        "notification_id": config["id"],
        "customer_id": "cust-1",
        "contract_id": "c1",
        "event_timestamp": "2026-12-10T00:00:00Z",
        "timestamp": "2026-12-07T00:00:00Z",
    }
    assert world.inbox.messages[0]["attributes"]["customer_id"] == "cust-1"


def test_a_retried_task_and_a_concurrent_run_publish_nothing_twice(world):
    world.service.create("renewal", "contract.end", "-P3D")
    for n in range(3):
        world.contracts.create(_contract(f"c{n}", customer=f"cust-{n}"))
    at = END - timedelta(days=2)
    barrier = threading.Barrier(2)
    results: list[dict] = []

    def concurrent() -> None:
        service = world.another()
        barrier.wait()
        results.append(service.deliver_due(at).summary())
        assert results[-1]["failed"] == []

    threads = [threading.Thread(target=concurrent) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r["delivered"] for r in results) in ([0, 3], [1, 2])
    assert deliver_notifications({"time": "2026-12-08T00:00:00Z"}, world.service)["delivered"] == 0
    ids = [m["id"] for m in world.inbox.of_type("contract.end")]
    assert len(ids) == len(set(ids)) == 3


def test_an_archived_configuration_publishes_nothing(world):
    config = world.service.create("renewal", "contract.end", "-P3D")
    world.contracts.create(_contract())
    world.service.archive(config["id"])
    assert run(world, END)["delivered"] == 0
    assert world.inbox.messages == []


def test_an_edited_offset_and_name_apply_to_the_deliveries_still_to_come(world):
    config = world.service.create("renewal", "contract.end", "-P3D")
    world.contracts.create(_contract())
    run(world, END - timedelta(days=5))
    world.service.edit(config["id"], "contract.end", "-P1D", name="last call")
    assert run(world, END - timedelta(days=2))["delivered"] == 0  # -P3D would have fired by now
    assert run(world, END - timedelta(days=1))["delivered"] == 1
    (message,) = world.inbox.messages
    assert message["message"]["properties"]["notification_name"] == "last call"
    assert message["message"]["properties"]["offset"] == "-P1D"


def test_a_moved_contract_end_fires_at_the_new_end_and_the_old_one_is_stale(world):
    world.service.create("renewal", "contract.end", "-P3D")
    world.contracts.create(_contract())
    moved = world.contracts.get("c1") | {"ending_before": "2026-12-20T00:00:00Z"}
    world.contracts.replace(moved)
    assert run(world, END)["stale"] == 1
    assert world.inbox.messages == []
    assert run(world, datetime(2026, 12, 17, tzinfo=UTC))["delivered"] == 1
    (message,) = world.inbox.messages
    assert message["message"]["properties"]["event_timestamp"] == "2026-12-20T00:00:00Z"


def test_a_failed_publish_gives_the_claim_back_and_the_retry_publishes_once(world):
    config = world.service.create("renewal", "contract.end", "-P3D")
    world.contracts.create(_contract())
    world.inbox.fail = 1
    # One configuration's failure is reported and kept from the others (SNS throttling, which the
    # adapter raises as StoreUnavailable, fails the task instead, for Step Functions to retry).
    assert run(world, END, expect_failed=True)["failed"] == [{"id": config["id"], "error": "ConnectionError"}]
    assert world.inbox.messages == []
    assert run(world, END)["delivered"] == 1
    assert run(world, END)["delivered"] == 0


def test_occurrences_at_one_instant_beyond_the_budget_are_delivered_over_several_calls_once_each(world):
    world.service.create("renewal", "contract.end", "-P3D")
    for n in range(5):
        world.contracts.create(_contract(f"c{n}", customer=f"cust-{n}"))
    calls = []
    while not calls or calls[-1]["more"]:
        calls.append(run(world, END, budget=2))
    assert [c["delivered"] for c in calls] == [2, 2, 1]
    assert len({m["message"]["id"] for m in world.inbox.messages}) == len(world.inbox.messages) == 5


def test_invoice_finalized_fires_after_its_offset_for_a_finalized_invoice_only(world):
    world.service.create("dunning", "invoice.finalized", "P1D")
    finalized_at = datetime(2026, 12, 2, 1, tzinfo=UTC)
    world.invoices["inv-1"] = SimpleNamespace(status="FINALIZED", finalized_at=finalized_at)
    world.index.record([
        invoice_finalized_occurrence("inv-1", "cust-1", "c1", finalized_at),
        invoice_finalized_occurrence("inv-lost", "cust-1", "c1", finalized_at),  # its write lost the race
    ])
    assert run(world, finalized_at + timedelta(hours=23))["delivered"] == 0
    summary = run(world, finalized_at + timedelta(days=1))
    assert (summary["delivered"], summary["stale"]) == (1, 1)
    (message,) = world.inbox.of_type("invoice.finalized")
    assert message["properties"]["invoice_id"] == "inv-1"
    assert message["properties"]["invoice_finalized_date"] == "2026-12-02T01:00:00Z"


def test_segments_of_a_contracts_commits_are_indexed_and_delivered(world):
    world.service.create("commit starts", "commit.segment.start", "PT0S")
    contract = _contract() | {
        "commits": [{"id": "commit-1", "access_schedule": [
            {"id": "seg-1", "amount": 10, "starting_at": "2026-12-01T00:00:00Z", "ending_before": "2027-01-01T00:00:00Z"},
        ]}],
    }
    world.contracts.create(contract)
    assert run(world, datetime(2026, 12, 1, tzinfo=UTC))["delivered"] == 1
    (message,) = world.inbox.of_type("commit.segment.start")
    assert message["properties"]["commit_id"] == "commit-1"
    assert message["properties"]["segment_number"] == 1


def test_a_system_notification_fires_at_the_event_once_enabled_and_never_while_off(world):
    world.contracts.create(_contract())
    assert world.service.set_system_enabled("contract.end", True) == {
        "type": "SYSTEM", "policy": {"type": "contract.end"}, "is_enabled": True,
    }
    listed = {c["policy"]["type"]: c["is_enabled"] for c in world.service.system_configs()}
    assert listed["contract.end"] is True and listed["contract.start"] is False
    assert world.service.list("ALL") == []  # not an offset notification
    assert run(world, END - timedelta(seconds=1))["delivered"] == 0
    assert run(world, END)["delivered"] == 1
    (message,) = world.inbox.of_type("contract.end")
    assert message["properties"]["timestamp"] == message["properties"]["event_timestamp"] == "2026-12-10T00:00:00Z"

    later = _contract("c2", end=END + timedelta(days=1))
    world.contracts.create(later)
    world.service.set_system_enabled("contract.end", False)
    assert run(world, END + timedelta(days=2))["delivered"] == 0
    world.clock.now = END + timedelta(days=3)
    world.service.set_system_enabled("contract.end", True)  # what ended while it was off is not sent late
    assert run(world, END + timedelta(days=4))["delivered"] == 0
    assert len(world.inbox.messages) == 1


def test_an_edit_indexes_only_the_occurrences_it_changes(world):
    contract = _contract() | {
        "commits": [{"id": "commit-1", "access_schedule": [
            {"id": f"seg-{n}", "amount": 10, "starting_at": f"2026-{n:02d}-01T00:00:00Z",
             "ending_before": f"2026-{n + 1:02d}-01T00:00:00Z"} for n in range(1, 11)
        ]}],
    }
    world.contracts.create(contract)

    def indexed() -> int:
        items = world.client.scan(TableName=world.table)["Items"]
        return sum(1 for item in items if item["pk"]["S"].startswith("lifecycle#"))

    assert indexed() == 2 + 20  # start, end, and each segment's two edges
    world.contracts.replace(world.contracts.get("c1") | {"ending_before": "2026-12-20T00:00:00Z"})
    assert indexed() == 2 + 20 + 1  # the new end only


def test_a_customer_level_credit_segment_end_fires_before_it_expires_and_not_once_archived(world):
    world.service.create("credit expiring", "credit.segment.end", "-P7D")
    segment = {"id": "seg-1", "amount": 500, "starting_at": "2026-11-01T00:00:00Z", "ending_before": "2026-12-31T00:00:00Z"}
    for grant_id in ("credit-1", "credit-2"):
        world.grants.create({"id": grant_id, "customer_id": "cust-1", "type": "CREDIT", "created_at": "2026-11-24T00:00:00Z",
                             "access_schedule": [segment]})
    world.grants.replace(world.grants.get("credit-2") | {"archived_at": "2026-11-25T00:00:00Z"})
    assert run(world, datetime(2026, 12, 23, 23, tzinfo=UTC))["delivered"] == 0
    summary = run(world, datetime(2026, 12, 24, tzinfo=UTC))
    assert (summary["delivered"], summary["stale"]) == (1, 1)
    (message,) = world.inbox.of_type("credit.segment.end")
    assert message["properties"]["credit_id"] == "credit-1"
    assert "contract_id" not in message["properties"]
