"""Alerts through Metronome's official SDK on the local stack, received as a user would: an SQS queue
subscribed to the alerts topic on the local AWS endpoint.

Each test subscribes its own queue with a filter policy on its own customers (message attributes),
so messages of other tests never reach it.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import metronome
import pytest

from tests.system.usage_events import DAY, HOUR, current_hour, rfc3339, unique, usage_event

pytestmark = pytest.mark.system

MONTH = 31 * DAY


class AlertInbox:
    """An SQS queue subscribed to the alerts topic on the local AWS endpoint, through the same code
    as `tally local tail alerts` (raw delivery, so a body is the envelope)."""

    def __init__(self, local_stack, filter_policy: dict) -> None:
        from infra.local.runtime import STACK_NAME
        from infra.cli.tail import TopicTail

        # what `tally local up` prints as the AWS endpoint; any AWS client works against it
        self.tail = TopicTail("alerts", STACK_NAME, local_stack.aws_endpoint, filter_policy)
        self._read: list[dict] = []  # read by the draining thread, not yet returned by receive()
        self._arrived = threading.Condition()
        self._draining = False

    @contextmanager
    def draining(self):
        """Read the queue from a thread while the block runs, so that it never piles up. moto's SQS
        walks the whole queue for every message sent or received (each recomputes the queue's
        attributes), so 1,000 messages left in the queue cost about a minute to send and read."""
        stop = threading.Event()

        def drain() -> None:
            while not stop.is_set():
                batch = self.tail.poll(wait_seconds=1)  # a long poll: no busy loop on an empty queue
                if batch:
                    with self._arrived:
                        self._read += batch
                        self._arrived.notify_all()

        reader = threading.Thread(target=drain, name="alert-inbox", daemon=True)
        self._draining = True
        reader.start()
        try:
            yield self
        finally:
            stop.set()
            reader.join()
            self._draining = False

    def _poll(self) -> list[dict]:
        """What the draining thread read (waiting a moment for it), else what the queue holds."""
        with self._arrived:
            if self._draining and not self._read:
                self._arrived.wait(timeout=0.05)
            batch, self._read = self._read, []
        return batch if batch or self._draining else self.tail.poll(wait_seconds=0)

    def receive(self, quiet_for: float = 0.3, expect: int = 0, timeout: float = 120.0) -> list[dict]:
        """Everything delivered so far: read until at least `expect` messages came (or `timeout`
        seconds passed) and the queue then stays empty for `quiet_for` seconds, so that a message
        sent twice would still be read. Waiting for a count, not only for a quiet spell, keeps a
        slow moment of the machine from ending the read early."""
        messages: list[dict] = []
        started = quiet_since = time.monotonic()
        while True:
            batch = self._poll()
            now = time.monotonic()
            if batch:
                quiet_since = now
            messages += batch
            if now - quiet_since >= quiet_for and (len(messages) >= expect or now - started >= timeout):
                return messages


def _own_alerts(sdk, customer: str, statuses: list[str] | None = None) -> list:
    """The customer's own alerts: the list also holds every alert for all customers, which other
    tests of the session may have created."""
    listed = sdk.v1.customers.alerts.list(customer_id=customer, **({"alert_statuses": statuses} if statuses else {}))
    return [a for a in listed if a.alert.customer_id == customer]


def _calls_metric(sdk, tag: str) -> str:
    return sdk.v1.billable_metrics.create(
        name=f"{tag} calls", aggregation_type="COUNT", event_type_filter={"in_values": [f"{tag}-call"]}
    ).data.id


def _calls(tag: str, alias: str, first: int, count: int, at) -> list[dict]:
    return [usage_event(f"{tag}-{n}", alias, f"{tag}-call", at) for n in range(first, first + count)]


def test_usage_alert_fires_once_per_crossing_and_reset_re_arms_it(sdk, local_stack, settle):
    tag = unique("usage-alert")
    metric = _calls_metric(sdk, tag)
    customer = sdk.v1.customers.create(name=tag, ingest_aliases=[tag]).data.id
    inbox = AlertInbox(local_stack, {"customer_id": [customer]})
    alert = sdk.v1.alerts.create(
        alert_type="usage_threshold_reached", name="10 calls", threshold=10, customer_id=customer,
        billable_metric_id=metric,
    ).data.id
    at = current_hour()

    sdk.v1.usage.ingest(usage=_calls(tag, tag, 0, 9, at))
    settle()
    assert inbox.receive() == []
    assert sdk.v1.customers.alerts.retrieve(alert_id=alert, customer_id=customer).data.customer_status == "ok"

    sdk.v1.usage.ingest(usage=_calls(tag, tag, 9, 3, at))  # 12 calls: crossed
    settle()
    (message,) = inbox.receive()
    assert message["id"] == f"{alert}:{customer}:1"
    assert message["type"] == "alerts.usage_threshold_reached"
    assert message["attributes"] == {
        "type": "alerts.usage_threshold_reached", "customer_id": customer,
        "alert_type": "usage_threshold_reached", "alert_id": alert,
    }
    properties = message["properties"]
    assert (properties["threshold"], properties["value"], properties["billable_metric_id"]) == (10, 12, metric)
    status = sdk.v1.customers.alerts.retrieve(alert_id=alert, customer_id=customer).data
    assert status.customer_status == "in_alarm" and status.alert.threshold == 10

    sdk.v1.usage.ingest(usage=_calls(tag, tag, 12, 20, at))  # still past it: nothing new
    settle()
    assert inbox.receive() == []

    # Reset re-arms the alert and evaluates it at once: 32 calls is still past 10, a new crossing.
    sdk.v1.customers.alerts.reset(alert_id=alert, customer_id=customer)
    (again,) = inbox.receive()
    assert again["id"] == f"{alert}:{customer}:2" and again["properties"]["value"] == 32
    assert [(a.alert.id, a.customer_status) for a in _own_alerts(sdk, customer)] == [(alert, "in_alarm")]

    sdk.v1.alerts.archive(id=alert)
    assert _own_alerts(sdk, customer) == []
    (archived,) = _own_alerts(sdk, customer, ["ARCHIVED"])
    assert archived.alert.status == "archived" and archived.customer_status is None


def test_spend_and_low_credit_balance_alerts_follow_the_draft_invoice_and_the_burn_down(sdk, local_stack, settle):
    tag = unique("spend-alert")
    start = current_hour() - 3 * HOUR
    metric = _calls_metric(sdk, tag)
    product = sdk.v1.contracts.products.create(name=f"{tag} calls", type="USAGE", billable_metric_id=metric).data.id
    grant = sdk.v1.contracts.products.create(name=f"{tag} credit", type="FIXED").data.id
    card = sdk.v1.contracts.rate_cards.create(name=f"{tag} card").data.id
    sdk.v1.contracts.rate_cards.rates.add(  # 10 cents a call
        rate_card_id=card, product_id=product, entitled=True, rate_type="FLAT", price=10, starting_at=rfc3339(start - DAY),
    )
    customer = sdk.v1.customers.create(name=tag, ingest_aliases=[tag]).data.id
    sdk.v1.contracts.create(
        customer_id=customer, rate_card_id=card, starting_at=rfc3339(start),
        usage_statement_schedule={"frequency": "MONTHLY", "day": "CONTRACT_START"},
    )
    sdk.v1.customers.credits.create(  # $1 of free credit
        customer_id=customer, product_id=grant, priority=1, name="Welcome credit",
        access_schedule={"schedule_items": [{"amount": 100, "starting_at": rfc3339(start), "ending_before": rfc3339(start + MONTH)}]},
    )
    inbox = AlertInbox(local_stack, {"customer_id": [customer]})
    spend_only = AlertInbox(local_stack, {"customer_id": [customer], "alert_type": ["spend_threshold_reached"]})
    spend = sdk.v1.alerts.create(alert_type="spend_threshold_reached", name="$2 spent", threshold=200, customer_id=customer).data.id
    low = sdk.v1.alerts.create(alert_type="low_credit_balance_reached", name="credit under 30c", threshold=30, customer_id=customer).data.id
    assert inbox.receive() == []  # evaluated on create: 0 spent, 100 of credit left

    sdk.v1.usage.ingest(usage=_calls(tag, tag, 0, 8, current_hour()))  # 80 cents: credit 100 → 20
    settle()
    (message,) = inbox.receive()
    assert (message["id"], message["type"]) == (f"{low}:{customer}:1", "alerts.low_credit_balance_reached")
    assert (message["properties"]["value"], message["properties"]["threshold"]) == (20, 30)

    sdk.v1.usage.ingest(usage=_calls(tag, tag, 8, 15, current_hour()))  # 230 cents: past $2
    settle()
    (message,) = inbox.receive()  # the credit is spent (0 left) but its alarm is already raised
    assert (message["id"], message["type"]) == (f"{spend}:{customer}:1", "alerts.spend_threshold_reached")
    assert message["properties"]["value"] == 230  # spend before credits: 23 × 10
    assert [m["id"] for m in spend_only.receive()] == [f"{spend}:{customer}:1"]  # a filter policy on alert_type

    statuses = {a.alert.id: a.customer_status for a in _own_alerts(sdk, customer)}
    assert statuses == {spend: "in_alarm", low: "in_alarm"}


def test_an_alert_for_all_customers_is_evaluated_on_everyone_when_created(sdk, local_stack, settle):
    """Created without customer_id, the alert starts the alerts function asynchronously, which
    evaluates it on every customer: one already past the threshold gets its message."""
    tag = unique("all-customers")
    metric = _calls_metric(sdk, tag)
    busy = sdk.v1.customers.create(name=f"{tag} busy", ingest_aliases=[f"{tag}-busy"]).data.id
    quiet = sdk.v1.customers.create(name=f"{tag} quiet", ingest_aliases=[f"{tag}-quiet"]).data.id
    sdk.v1.usage.ingest(usage=_calls(tag, f"{tag}-busy", 0, 5, current_hour()) + _calls(tag, f"{tag}-quiet", 5, 1, current_hour()))
    settle()
    inbox = AlertInbox(local_stack, {"customer_id": [busy, quiet]})
    alert = sdk.v1.alerts.create(
        alert_type="usage_threshold_reached", name="5 calls", threshold=5, billable_metric_id=metric, uniqueness_key=tag,
    ).data.id
    assert [m["id"] for m in inbox.receive()] == [f"{alert}:{busy}:1"]
    listed = {a.alert.id: a.customer_status for a in sdk.v1.customers.alerts.list(customer_id=quiet)}
    assert listed[alert] == "ok"
    with pytest.raises(metronome.ConflictError):
        sdk.v1.alerts.create(alert_type="usage_threshold_reached", name="again", threshold=5,
                             billable_metric_id=metric, uniqueness_key=tag)
    sdk.v1.alerts.archive(id=alert)  # all-customer alerts apply to every later test's customers


def _granted(template: dict, handler: str) -> set[tuple[str, str]]:
    """(action, logical id) pairs the function's role allows, from the synthesized template."""
    from tests.infra.conftest import referenced_ids

    resources = template["Resources"]
    (function,) = [r for r in resources.values() if r["Type"] == "AWS::Lambda::Function" and r["Properties"]["Handler"] == handler]
    role = function["Properties"]["Role"]["Fn::GetAtt"][0]
    granted = set()
    for policy in (r for r in resources.values() if r["Type"] == "AWS::IAM::Policy"):
        if {"Ref": role} in policy["Properties"]["Roles"]:
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
                actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                granted |= {(a, logical) for a in actions for logical in referenced_ids(statement["Resource"])}
    return granted


def test_the_alerts_function_calls_only_what_its_role_grants(sdk, local_stack, settle):
    """moto does not enforce IAM. So: record every AWS call the alerts function makes while it
    evaluates a usage, a spend and a low-balance alert, all three crossing for the first time, and
    check each call against its role in the synthesized template."""
    from tally.adapters.dynamo.client import dynamodb
    from tally.adapters.sns import sns_client

    tag = unique("alerts-iam")
    start = current_hour() - HOUR
    metric = _calls_metric(sdk, tag)
    product = sdk.v1.contracts.products.create(name=f"{tag} calls", type="USAGE", billable_metric_id=metric).data.id
    card = sdk.v1.contracts.rate_cards.create(name=f"{tag} card").data.id
    sdk.v1.contracts.rate_cards.rates.add(
        rate_card_id=card, product_id=product, entitled=True, rate_type="FLAT", price=10, starting_at=rfc3339(start - DAY),
    )
    grant = sdk.v1.contracts.products.create(name=f"{tag} credit", type="FIXED").data.id
    customer = sdk.v1.customers.create(name=tag, ingest_aliases=[tag]).data.id
    sdk.v1.contracts.create(customer_id=customer, rate_card_id=card, starting_at=rfc3339(start))
    sdk.v1.customers.credits.create(
        customer_id=customer, product_id=grant, priority=1, name="credit",
        access_schedule={"schedule_items": [{"amount": 5, "starting_at": rfc3339(start), "ending_before": rfc3339(start + MONTH)}]},
    )
    sdk.v1.usage.ingest(usage=_calls(tag, tag, 0, 2, current_hour()))
    settle()
    # Created after the usage and not evaluated on create: the invocation below crosses all three.
    for alert_type, extra in (("usage_threshold_reached", {"billable_metric_id": metric}),
                              ("spend_threshold_reached", {}), ("low_credit_balance_reached", {})):
        sdk.v1.alerts.create(alert_type=alert_type, name=alert_type, threshold=1, customer_id=customer,
                             evaluate_on_create=False, **extra)

    logical = {physical: logical_id for logical_id, physical in local_stack.deployment.resources.items()}
    calls: set[tuple[str, str]] = set()

    def record(params, model, **_):
        action = f"{model.service_model.endpoint_prefix}:{model.name}"
        targets = [params.get("TableName") or params.get("TopicArn")] + list(params.get("RequestItems") or [])
        calls.update((action, logical.get(t, t)) for t in targets if t)

    function = next(name for lid, name in local_stack.deployment.functions.items() if lid.startswith("AlertsFunction"))
    record_of_the_counter = {
        "eventName": "MODIFY",
        "dynamodb": {"SequenceNumber": "1", "Keys": {"pk": {"S": f"m#{metric}#k#{tag}"}, "sk": {"S": "d"}}},
    }
    clients = (dynamodb(), sns_client())
    for client in clients:
        client.meta.events.register("provide-client-params.*.*", record)
    try:
        result = local_stack.lambdas.invoke(function, {"Records": [record_of_the_counter]})
    finally:
        for client in clients:
            client.meta.events.unregister("provide-client-params.*.*", record)

    assert result == {"batchItemFailures": []}
    assert {action for action, _ in calls} >= {"dynamodb:Query", "dynamodb:PutItem", "sns:Publish"}
    assert sum(1 for action, _ in calls if action == "sns:Publish") == 1  # one topic
    not_granted = calls - _granted(local_stack.template, "functions.alerts.handler.handler")
    assert not_granted == set(), f"calls the alerts role does not allow: {not_granted}"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"alert_type": "usage_threshold_reached", "threshold": -1}, "threshold"),
        ({"alert_type": "usage_threshold_reached", "threshold": "ten"}, "threshold"),
        ({"alert_type": "usage_threshold_reached", "threshold": 1.5}, "threshold"),  # a COUNT metric
        ({"alert_type": "usage_threshold_reached", "threshold": 5, "billable_metric_id": "no-such-metric"}, "billable_metric_id"),
        ({"alert_type": "spend_threshold_reached", "threshold": 5, "credit_type_id": "no-such-unit", "billable_metric_id": None}, "credit_type_id"),
        ({"alert_type": "low_credit_balance_reached", "threshold": -0.5, "billable_metric_id": None}, "threshold"),
    ],
    ids=["negative", "a string", "fractional on a COUNT metric", "unknown metric", "unknown credit type", "negative balance"],
)
def test_bad_alerts_are_a_400_naming_the_field_and_store_nothing(sdk, api, body, field):
    tag = unique("bad-alert")
    metric = _calls_metric(sdk, tag)
    customer = sdk.v1.customers.create(name=tag).data.id
    request = {"name": "bad", "customer_id": customer, "billable_metric_id": metric, **body}
    response = api.post("/v1/alerts/create", json={k: v for k, v in request.items() if v is not None})
    assert response.status_code == 400, response.text
    assert response.json()["field"] == field
    assert _own_alerts(sdk, customer, ["ENABLED", "ARCHIVED"]) == []


def test_a_burst_of_customers_crossing_at_once_get_exactly_one_message_each(sdk, api, local_stack, settle):
    """100 customers, each crossing an all-customer usage alert in one burst of ingest requests
    (300 events, several stream batches of counter records): exactly 100 messages, one per
    customer, none twice. The same at 1,000 customers, with racing deliveries, runs in process:
    tests/service/test_alerts_service.py (here 1,000 took 70 to 85 s of the suite)."""
    customers_wanted = 100
    tag = unique("alert-load")
    metric = _calls_metric(sdk, tag)
    alert = sdk.v1.alerts.create(
        alert_type="usage_threshold_reached", name="3 calls", threshold=3, billable_metric_id=metric,
        evaluate_on_create=False,
    ).data.id
    inbox = AlertInbox(local_stack, {"alert_id": [alert]})

    def create(n: int) -> str:
        response = api.post("/v1/customers", json={"name": f"{tag} #{n}", "ingest_aliases": [f"{tag}-{n}"]})
        assert response.status_code == 200, response.text
        return response.json()["data"]["id"]

    created = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        customers = list(pool.map(create, range(customers_wanted)))
    created = time.monotonic() - created
    at = current_hour()
    events = [usage_event(f"{tag}-{n}-{k}", f"{tag}-{n}", f"{tag}-call", at) for n in range(customers_wanted) for k in range(3)]
    batches = [events[i : i + 100] for i in range(0, len(events), 100)]

    def post(batch: list[dict]) -> None:
        response = api.post("/v1/ingest", json=batch)
        assert response.status_code == 200, response.text

    with inbox.draining():
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=8) as pool:  # one burst
            list(pool.map(post, batches))
        settle(timeout=300)  # every counter written and every alert evaluated: all is published
        settled = time.monotonic() - started
        messages = inbox.receive(quiet_for=1.0, expect=customers_wanted)
    elapsed = time.monotonic() - started
    messages += inbox.receive()  # anything the draining thread read after that, or still queued

    ids = [m["id"] for m in messages]
    assert len(ids) == customers_wanted, f"{len(ids)} messages for {customers_wanted} crossings"
    assert len(set(ids)) == customers_wanted, "a crossing was published twice"
    assert {m["properties"]["customer_id"] for m in messages} == set(customers)
    assert set(ids) == {f"{alert}:{c}:1" for c in customers}
    print(f"\n{customers_wanted} customers created in {created:.1f} s; {customers_wanted} crossings published "
          f"in {settled:.1f} s and read in {elapsed:.1f} s after the burst")
