"""A child's usage draws its parent's shared balance, so the parent's balance alerts are evaluated
when the child's counters change (AlertService with `family`). moto DynamoDB for the alert states,
the readings faked as in the alerts service tests."""

from __future__ import annotations

from decimal import Decimal

from tally.services.alerts import AlertService
from tests.service.test_alerts_service import TOPIC, USD, add_customer, make_world


def test_a_childs_usage_evaluates_its_parents_balance_alerts_once_per_batch(dynamo):
    world = make_world(dynamo)
    parent, child, stranger = add_customer(world), add_customer(world, aliases=["kid"]), add_customer(world)
    families = {child.id: [parent.id], parent.id: [child.id]}
    service = AlertService(
        world.store, world.customers, world.metrics, lambda ct: ct == USD, world.values, world.publisher,
        lambda: TOPIC, world.service._clock, family=lambda customer_id: families.get(customer_id, []),
    )
    low = service.create(name="low commit", alert_type="low_remaining_commit_balance_reached", threshold=500,
                         customer_id=parent.id, evaluate_on_create=False)
    calls = service.create(name="parent calls", alert_type="usage_threshold_reached", threshold=1,
                           customer_id=parent.id, billable_metric_id="m-calls", evaluate_on_create=False)
    other = service.create(name="other low", alert_type="low_remaining_commit_balance_reached", threshold=500,
                           customer_id=stranger.id, evaluate_on_create=False)
    # The parent's commit is down to 300 (the child drew 700 of 1000); the parent's own usage is 5.
    world.values.by_customer.update({parent.id: Decimal(300), child.id: Decimal(0), stranger.id: Decimal(10)})

    outcome = service.evaluate_usage_changes({"kid": {"m-calls"}})

    # The parent's balance alert fires; its usage alert and the stranger's alert are not evaluated.
    assert world.publisher.published == [f"{low.id}:{parent.id}:1"]
    assert outcome["kid"].fired == 1
    assert calls.id not in " ".join(world.publisher.published) and other.id not in " ".join(world.publisher.published)
