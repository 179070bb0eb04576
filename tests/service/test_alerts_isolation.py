"""One customer's alert evaluation raising never stops the others' (DESIGN.md, hard part 8; issue
14): the DynamoDB alert store on moto, readings that raise for the customers a test breaks (as
they would for a customer whose contract no longer parses), a fake publisher.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from types import SimpleNamespace

import pytest

from tally.adapters.dynamo.alerts import DynamoAlertStore
from tally.adapters.memory import MemoryCustomerStore, MemoryMetricStore
from tally.billing.metrics import Aggregation, BillableMetric
from tally.services.alerts import AlertNotEvaluated, AlertService, not_evaluated
from tests.service.test_alerts_service import TOPIC, USD, Publisher, Values, add_customer, utc_now


class ReadingsBrokenFor(Values):
    """Readings that raise a plain ValueError (no TallyError) for the customers in `broken`."""

    def __init__(self) -> None:
        super().__init__()
        self.broken: set[str] = set()

    def for_customer(self, customer):
        if customer.id in self.broken:
            raise ValueError("year 10000 is out of range")
        return super().for_customer(customer)


@pytest.fixture()
def world(dynamo):
    customers, metrics = MemoryCustomerStore(), MemoryMetricStore()
    metrics.put(BillableMetric("m-calls", "calls", Aggregation.COUNT, None, None, (), ()))
    values, publisher = ReadingsBrokenFor(), Publisher()
    service = AlertService(
        DynamoAlertStore(dynamo["billing"], dynamo["client"]), customers, metrics, lambda ct: ct == USD,
        values, publisher, lambda: TOPIC, utc_now,
    )
    return SimpleNamespace(service=service, values=values, publisher=publisher, customers=customers)


def calls_alert(world, customer=None, evaluate_on_create=False):
    return world.service.create(
        name="calls over 100", alert_type="usage_threshold_reached", threshold=100,
        customer_id=customer.id if customer else None, billable_metric_id="m-calls",
        evaluate_on_create=evaluate_on_create,
    )


def test_an_all_customer_alert_is_evaluated_on_everyone_else_and_the_broken_customer_is_named(world):
    customers = [add_customer(world) for _ in range(5)]
    broken = customers[2]
    world.values.broken.add(broken.id)
    world.values.by_customer.update({c.id: Decimal(500) for c in customers})
    alert = calls_alert(world)

    outcome = world.service.evaluate_on_every_customer(alert.id)

    assert outcome.fired == 4
    assert sorted(world.publisher.published) == sorted(f"{alert.id}:{c.id}:1" for c in customers if c is not broken)
    (failed,) = outcome.failed
    assert failed.customer_id == broken.id and isinstance(failed.error, ValueError)


def test_the_message_for_the_dlq_names_each_customer_and_its_reason_and_stays_bounded(world):
    customers = [add_customer(world) for _ in range(25)]
    for customer in customers:
        world.values.broken.add(customer.id)
    alert = calls_alert(world)

    outcome = world.service.evaluate_on_every_customer(alert.id)
    error = not_evaluated(alert.id, outcome.failed)

    assert len(outcome.failed) == 25
    assert str(error).startswith(f"alert {alert.id} not evaluated for 25 customer(s): ")
    assert f"{outcome.failed[0].customer_id} (ValueError: year 10000 is out of range)" in str(error)
    assert str(error).endswith("; and 5 more")


def test_creating_an_alert_for_a_customer_whose_evaluation_raises_still_answers_with_the_alert(world, caplog):
    customer = add_customer(world)
    world.values.broken.add(customer.id)

    with caplog.at_level(logging.ERROR):
        alert = calls_alert(world, customer, evaluate_on_create=True)

    # Stored and returned once: a retried create would have made a second alert.
    assert [a.id for a, _ in world.service.customer_alerts(customer.id)] == [alert.id]
    assert any(customer.id in r.getMessage() and r.exc_info for r in caplog.records)


def test_counter_changes_evaluate_every_other_customer_and_report_the_failed_one(world):
    ok, broken = add_customer(world, aliases=["ok"]), add_customer(world, aliases=["broken"])
    world.values.broken.add(broken.id)
    world.values.by_customer.update({ok.id: Decimal(500), broken.id: Decimal(500)})
    alert = calls_alert(world)

    outcome = world.service.evaluate_usage_changes({"broken": {"m-calls"}, "ok": {"m-calls"}})

    assert isinstance(outcome["broken"], ValueError)
    assert outcome["ok"].fired == 1
    assert world.publisher.published == [f"{alert.id}:{ok.id}:1"]


# -- the alerts function's evaluate_alert invocation ---------------------------------------------------
class LambdaContext:
    function_name = "alerts"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:alerts"
    aws_request_id = "isolation"


def test_the_function_evaluates_everyone_else_then_fails_the_invocation_naming_the_customer(world, monkeypatch):
    from functions.alerts.handler import handler

    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    monkeypatch.setattr("tally.wiring.alert_service", lambda: world.service, raising=False)
    ok, broken = add_customer(world), add_customer(world)
    world.values.broken.add(broken.id)
    world.values.by_customer.update({ok.id: Decimal(500), broken.id: Decimal(500)})
    alert = calls_alert(world)

    # Lambda retries the invocation, then leaves it in the alerts DLQ with this message.
    with pytest.raises(AlertNotEvaluated, match=f"{broken.id} \\(ValueError: year 10000 is out of range\\)"):
        handler({"evaluate_alert": alert.id}, LambdaContext())
    assert world.publisher.published == [f"{alert.id}:{ok.id}:1"]

    # A retry (the fault still there) publishes nothing twice.
    with pytest.raises(AlertNotEvaluated):
        handler({"evaluate_alert": alert.id}, LambdaContext())
    assert world.publisher.published == [f"{alert.id}:{ok.id}:1"]

    world.values.broken.clear()
    assert handler({"evaluate_alert": alert.id}, LambdaContext()) == {"fired": 1, "rearmed": 0}


def test_a_balance_write_whose_evaluation_raises_stands_and_hands_the_customer_to_the_alerts_function(world, monkeypatch):
    from functions.alerts.handler import handler

    handed: list[dict] = []
    world.service._evaluate_later = handed.append
    customer = add_customer(world)
    alert = calls_alert(world, customer)
    world.values.by_customer[customer.id] = Decimal(500)
    world.values.broken.add(customer.id)

    world.service.evaluate_after_write(customer.id)  # does not raise: the write is done
    assert handed == [{"evaluate_customer": customer.id}] and world.publisher.published == []

    # The alerts function evaluates it (Lambda retries it on error, then its DLQ keeps it).
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    monkeypatch.setattr("tally.wiring.alert_service", lambda: world.service, raising=False)
    with pytest.raises(ValueError, match="year 10000"):
        handler(handed[0], LambdaContext())
    world.values.broken.clear()
    assert handler(handed[0], LambdaContext()) == {"fired": 1, "rearmed": 0}
    assert world.publisher.published == [f"{alert.id}:{customer.id}:1"]
