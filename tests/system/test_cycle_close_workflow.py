"""The close-billing-periods workflow on the local stack: the synthesized state machine runs in
moto's executor, its tasks run the real handlers, and the local schedule route starts it.

Faults are injected inside this process only: `wiring.cycle_close_service` is swapped for a spy
that delegates to the real service (or, in the workflow-only tests, to a fake) and raises for the
customer ids a test names. Nothing of it ships in the Lambda code.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime, timedelta

import boto3
import httpx
import pytest

from tests.system.conftest import API_KEY
from tests.system.usage_events import DAY, HOUR, UTC, current_hour, rfc3339, unique, usage_event

pytestmark = pytest.mark.system

ROUTE = "/local/schedules/close-billing-periods"


class FaultInjected(Exception):
    """Raised by the spy for a customer a test chose; reaches Step Functions as `FaultInjected`."""


class FakeCycleClose:
    """Periods stay due until finalized; one invoice per period; each published once."""

    def __init__(self, periods: list[dict], skipped: list[dict] | None = None) -> None:
        self.periods = periods
        self.skipped = skipped or []
        self.finalized: set[str] = set()
        self.published: set[str] = set()

    def find_due(self, as_of, grace, after=None, limit=None):
        """Pages as the real one does: `periods` in run order, `limit` at a time."""
        from tally.services.cycle_close import DueCloses

        start = int(after or 0)
        end = len(self.periods) if limit is None else min(start + limit, len(self.periods))
        page = [p for p in self.periods[start:end] if p["contract_id"] not in self.finalized]
        return DueCloses(page, self.skipped if start == 0 else [], str(end) if end < len(self.periods) else None)

    def finalize(self, customer_id, contract_id, period_start, as_of):
        invoice = f"invoice-{contract_id}"
        fresh = [] if contract_id in self.finalized else [invoice]
        self.finalized.add(contract_id)
        return {"invoice_ids": [invoice], "finalized": fresh}

    def publish_finalized(self, invoice_id):
        if invoice_id in self.published:
            return False
        self.published.add(invoice_id)
        return True


class Spy:
    """Records every call; `failing[customer_id]` lists errors that finalize raises, one per call,
    before it goes through."""

    def __init__(self, service) -> None:
        self.service = service
        self.calls: list[tuple] = []
        self.failing: dict[str, list[Exception]] = {}

    def find_due(self, as_of, grace, after=None, limit=None):
        self.calls.append(("find_due", as_of, grace))
        return self.service.find_due(as_of, grace, after, limit)

    def finalize(self, customer_id, contract_id, period_start, as_of):
        self.calls.append(("finalize", customer_id, contract_id, period_start, as_of))
        errors = self.failing.get(customer_id)
        if errors:
            raise errors.pop(0)
        return self.service.finalize(customer_id, contract_id, period_start, as_of)

    def publish_finalized(self, invoice_id):
        self.calls.append(("publish", invoice_id))
        return self.service.publish_finalized(invoice_id)

    def of(self, kind: str) -> list[tuple]:
        return [call for call in self.calls if call[0] == kind]


class NoAlerts:
    """Fake periods belong to customers that do not exist, so their balance alerts are not read."""

    def evaluate_customer(self, customer_id: str) -> None:
        return None


def install(monkeypatch, service) -> Spy:
    spy = Spy(service)
    monkeypatch.setattr("tally.wiring.cycle_close_service", lambda: spy, raising=False)
    if isinstance(service, FakeCycleClose):
        monkeypatch.setattr("tally.wiring.alert_service", lambda: NoAlerts(), raising=False)
    return spy


def fire(api, time_: str | None = "2025-02-02T01:00:00Z", **body) -> dict:
    if time_ is not None:
        body["time"] = time_
    response = api.post(ROUTE, json=body)
    assert response.status_code == 200, response.text
    return response.json()


def dlq_messages(local_stack) -> list[dict]:
    sqs = boto3.client("sqs")
    url = local_stack.deployment.outputs["CycleCloseDlqUrl"]
    found = []
    while True:
        batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        if not batch:
            return found
        for message in batch:
            found.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


@pytest.fixture()
def dead_letters(local_stack):
    """The DLQ emptied before the test; call it for what arrived since."""
    dlq_messages(local_stack)
    return lambda: dlq_messages(local_stack)


def period(customer: str, start: str = "2025-01-01T00:00:00Z") -> dict:
    return {"customer_id": customer, "contract_id": f"contract-{customer}", "period_start": start, "kind": "USAGE"}


# -- the route ---------------------------------------------------------------------------------
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer tally_not_a_key"}], ids=["no key", "unknown key"])
def test_the_schedule_route_needs_a_valid_api_key(local_stack, monkeypatch, headers):
    spy = install(monkeypatch, FakeCycleClose([period("acme")]))

    response = httpx.post(f"{local_stack.base_url}{ROUTE}", json={"time": "2025-02-02T01:00:00Z"}, headers=headers)

    assert response.status_code == 401
    assert response.json()["type"] == "unauthorized"
    assert spy.calls == []


def test_the_route_wants_a_json_object(api, monkeypatch):
    spy = install(monkeypatch, FakeCycleClose([]))
    response = api.post(ROUTE, content=b"[1]", headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["field"] == "body"
    assert spy.calls == []


# -- the workflow itself, with a fake service ----------------------------------------------------
def test_every_due_period_is_closed_and_a_failing_one_is_dead_lettered_without_blocking_the_rest(
    api, monkeypatch, dead_letters
):
    fake = FakeCycleClose([period(f"customer-{n}") for n in range(7)])
    spy = install(monkeypatch, fake)
    spy.failing["customer-3"] = [FaultInjected("finalize exploded")]

    started = time.monotonic()
    result = fire(api, "2025-02-02T01:00:00Z")
    elapsed = time.monotonic() - started

    assert result["status"] == "SUCCEEDED", (result.get("error"), result.get("cause"))
    summary = result["output"]
    assert summary["as_of"] == "2025-02-02T01:00:00Z"
    assert (summary["periods_closed"], summary["invoices_finalized"], summary["invoices_published"]) == (6, 6, 6)
    assert summary["periods_dead_lettered"] == 1
    (failed,) = summary["dead_lettered"]
    assert (failed["period"]["customer_id"], failed["error"]) == ("customer-3", "FaultInjected")
    assert fake.published == {f"invoice-contract-customer-{n}" for n in range(7) if n != 3}

    (message,) = dead_letters()
    assert message["period"] == period("customer-3")
    assert message["as_of"] == "2025-02-02T01:00:00Z"
    assert message["error"]["Error"] == "FaultInjected"
    assert "finalize exploded" in message["error"]["Cause"]
    assert "-close-billing-periods:" in message["execution"]
    assert elapsed < 5, "a non-retryable error is not retried"


def test_a_contract_whose_due_periods_cannot_be_found_is_dead_lettered_by_name_and_the_rest_close(
    api, monkeypatch, dead_letters
):
    skipped = [
        {"customer_id": "customer-far", "contract_id": "contract-far", "error": "ValueError",
         "cause": "year 10000 is out of range"},
        {"customer_id": "customer-unlisted", "contract_id": None, "error": "KeyError", "cause": "'starting_at'"},
    ]
    fake = FakeCycleClose([period(f"customer-{n}") for n in range(3)], skipped)
    install(monkeypatch, fake)

    result = fire(api, "2025-02-02T01:00:00Z")

    assert result["status"] == "SUCCEEDED", (result.get("error"), result.get("cause"))
    summary = result["output"]
    assert (summary["periods_closed"], summary["invoices_published"]) == (3, 3)
    assert summary["contracts_skipped"] == 2
    assert summary["skipped"] == skipped
    messages = sorted(dead_letters(), key=lambda m: m["contract"]["customer_id"])
    assert [(m["contract"], m["error"]) for m in messages] == [
        ({"customer_id": "customer-far", "contract_id": "contract-far"},
         {"Error": "ValueError", "Cause": "year 10000 is out of range"}),
        ({"customer_id": "customer-unlisted", "contract_id": None}, {"Error": "KeyError", "Cause": "'starting_at'"}),
    ]
    assert all(m["as_of"] == "2025-02-02T01:00:00Z" and "-close-billing-periods:" in m["execution"] for m in messages)


def test_running_again_finalizes_and_publishes_nothing_new(api, monkeypatch, dead_letters):
    fake = FakeCycleClose([period("acme"), period("globex")])
    install(monkeypatch, fake)
    first = fire(api)
    fake.finalized.clear()  # as if the first run's finalize had not been recorded: it is retried

    second = fire(api)

    assert first["output"]["invoices_published"] == 2
    assert second["status"] == "SUCCEEDED"
    assert (second["output"]["invoices_finalized"], second["output"]["invoices_published"]) == (2, 0)
    assert dead_letters() == []


def test_a_transient_error_is_retried_with_the_short_local_interval(api, monkeypatch, dead_letters):
    from tally.services.ports import StoreUnavailable

    spy = install(monkeypatch, FakeCycleClose([period("acme")]))
    spy.failing["acme"] = [StoreUnavailable("throttled"), StoreUnavailable("throttled")]
    started = time.monotonic()
    result = fire(api)

    assert result["status"] == "SUCCEEDED"
    assert result["output"]["periods_closed"] == 1
    assert len(spy.of("finalize")) == 3
    assert time.monotonic() - started < 5  # two local waits of 1 s, not 2 s + 4 s
    assert dead_letters() == []


MALFORMED = {
    "no time": {},
    "time is not a date": {"time": "last tuesday"},
    "time has no timezone": {"time": "2025-02-02T01:00:00"},
}


@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_scheduled_event_fails_the_execution_with_a_named_error_and_writes_nothing(
    api, monkeypatch, dead_letters, body
):
    spy = install(monkeypatch, FakeCycleClose([period("acme")]))

    response = api.post(ROUTE, json=body)

    assert response.status_code == 200
    result = response.json()
    assert (result["status"], result["error"], result["output"]) == ("FAILED", "InvalidScheduledEvent", None)
    assert spy.calls == []
    assert dead_letters() == []


def test_the_schedule_fires_on_its_own_while_the_stack_is_up(local_stack, monkeypatch):
    from infra.local.workflows import LocalWorkflows

    spy = install(monkeypatch, FakeCycleClose([]))
    # A second ticker over the session's deployed workflows, ticking fast (the stack's own ticks hourly).
    ticker = LocalWorkflows(local_stack.template, local_stack.deployment.resources, "Tally", "us-east-1", "123456789012")
    ticker.state_machines = local_stack.workflows.state_machines
    ticker.schedules = {n: s for n, s in local_stack.workflows.schedules.items() if n == "close-billing-periods"}
    lines: list[str] = []
    ticker.start_schedules(interval=0.3, log=lines.append)
    try:
        deadline = time.monotonic() + 10
        while not lines and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        ticker.stop()
        # A tick already under way runs to its end: wait for it, or its execution would call the
        # next test's spy (it found that test's periods and closed them before that test's run).
        for thread in ticker._threads:
            thread.join(timeout=120)

    assert lines and "SUCCEEDED" in lines[0], lines
    ((_, as_of, grace),) = spy.of("find_due")[:1]
    assert abs((datetime.now(UTC) - as_of).total_seconds()) < 10
    assert grace == timedelta(hours=24)


def test_the_cli_fires_the_schedule_through_the_route(local_stack, monkeypatch):
    spy = install(monkeypatch, FakeCycleClose([period("initech")]))
    run = subprocess.run(
        [sys.executable, "-m", "infra.cli", "local", "close-periods", "--as-of", "2025-03-01T00:00:00Z",
         "--endpoint", local_stack.base_url, "--api-key", API_KEY],
        capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr[-2000:]
    result = json.loads(run.stdout)
    assert result["status"] == "SUCCEEDED"
    assert result["output"]["as_of"] == "2025-03-01T00:00:00Z"
    assert result["output"]["periods_closed"] == 1
    assert spy.of("find_due")[0][1] == datetime(2025, 3, 1, tzinfo=UTC)

    calls = len(spy.calls)
    refused = subprocess.run(
        [sys.executable, "-m", "infra.cli", "local", "close-periods", "--as-of", "soon",
         "--endpoint", local_stack.base_url, "--api-key", API_KEY],
        capture_output=True, text=True, timeout=120,
    )
    # The CLI checks --as-of with the schedule's own event model, so a bad one never starts a run.
    assert refused.returncode == 2
    assert "--as-of 'soon'" in refused.stderr and refused.stdout == ""
    assert len(spy.calls) == calls


# -- end to end, with the real CycleCloseService ---------------------------------------------------
@pytest.fixture()
def real(monkeypatch):
    """A spy around the deployment's own CycleCloseService (skips until that service exists)."""
    from tally import wiring

    if not hasattr(wiring, "cycle_close_service"):
        pytest.skip("tally.services.cycle_close has not landed")
    return install(monkeypatch, wiring.cycle_close_service())


@pytest.fixture()
def invoice_messages(local_stack):
    """invoice.finalized messages on a queue subscribed to the invoices topic, as a customer would."""
    sqs, sns = boto3.client("sqs"), boto3.client("sns")
    queue = sqs.create_queue(QueueName=unique("invoices-tail"))["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    topic = local_stack.deployment.outputs["InvoicesTopicArn"]
    subscription = sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn,
                                 Attributes={"RawMessageDelivery": "true"})["SubscriptionArn"]
    received: list[dict] = []

    def messages_about(invoice_id: str) -> list[dict]:
        while batch := sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", []):
            for message in batch:
                received.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
        return [m for m in received if invoice_id in json.dumps(m)]

    yield messages_about
    sns.unsubscribe(SubscriptionArn=subscription)
    sqs.delete_queue(QueueUrl=queue)


def customer_with_a_closed_month(sdk, settle, tag: str, calls: int = 3) -> tuple[str, str, datetime]:
    """A customer on a monthly contract that started 33 days ago, so its first period ended at least
    two days ago (more than the 24 h grace), with `calls` calls at 25 cents each in that period."""
    start = current_hour() - 33 * DAY
    metric = sdk.v1.billable_metrics.create(
        name=f"{tag} calls", aggregation_type="COUNT", event_type_filter={"in_values": [tag]}
    ).data.id
    product = sdk.v1.contracts.products.create(name=f"{tag} calls", type="USAGE", billable_metric_id=metric).data.id
    card = sdk.v1.contracts.rate_cards.create(name=f"{tag} card").data.id
    sdk.v1.contracts.rate_cards.rates.add(
        rate_card_id=card, product_id=product, entitled=True, rate_type="FLAT", price=25,
        starting_at=rfc3339(start - DAY),
    )
    customer = sdk.v1.customers.create(name=tag, ingest_aliases=[tag]).data.id
    contract = sdk.v1.contracts.create(
        customer_id=customer, rate_card_id=card, starting_at=rfc3339(start),
        usage_statement_schedule={"frequency": "MONTHLY", "day": "CONTRACT_START"},
    ).data.id
    sdk.v1.usage.ingest(usage=[usage_event(f"{tag}-{n}", tag, tag, start + HOUR) for n in range(calls)])
    settle()
    return customer, contract, start


def first_period_invoice(api, customer: str, start: datetime) -> dict:
    listed = api.get(f"/v1/customers/{customer}/invoices")
    assert listed.status_code == 200, listed.text
    (invoice,) = [
        i for i in listed.json()["data"]
        if i["type"] == "USAGE" and i["start_timestamp"] in (rfc3339(start), start.isoformat())
    ]
    return invoice


def test_a_period_that_ended_more_than_the_grace_ago_is_finalized_once_and_announced_once(
    sdk, settle, api, real, invoice_messages, dead_letters
):
    customer, contract, start = customer_with_a_closed_month(sdk, settle, unique("close"))
    assert first_period_invoice(api, customer, start)["status"] == "DRAFT"

    result = fire(api, rfc3339(datetime.now(UTC)))

    assert result["status"] == "SUCCEEDED", (result.get("error"), result.get("cause"))
    invoice = first_period_invoice(api, customer, start)
    assert (invoice["status"], invoice["total"]) == ("FINALIZED", 75)  # 3 calls × 25 cents
    finalized_for_us = [c for c in real.of("finalize") if c[2] == contract]
    assert finalized_for_us and all(c[3] == start for c in finalized_for_us)
    assert len(invoice_messages(invoice["id"])) == 1

    # A second trigger changes nothing: same invoice, no new message, nothing dead-lettered.
    again = fire(api, rfc3339(datetime.now(UTC)))
    assert again["status"] == "SUCCEEDED", again
    assert first_period_invoice(api, customer, start) == invoice
    assert len(invoice_messages(invoice["id"])) == 1
    assert [m for m in dead_letters() if m["period"]["customer_id"] == customer] == []


def test_a_period_whose_finalize_fails_goes_to_the_dlq_while_the_others_close(
    sdk, settle, api, real, dead_letters
):
    failing, _, failing_start = customer_with_a_closed_month(sdk, settle, unique("close-fails"))
    healthy, _, healthy_start = customer_with_a_closed_month(sdk, settle, unique("close-ok"))
    real.failing[failing] = [FaultInjected("ledger write refused")]

    result = fire(api, rfc3339(datetime.now(UTC)))

    assert result["status"] == "SUCCEEDED", (result.get("error"), result.get("cause"))
    assert first_period_invoice(api, healthy, healthy_start)["status"] == "FINALIZED"
    assert first_period_invoice(api, failing, failing_start)["status"] == "DRAFT"
    (message,) = [m for m in dead_letters() if m["period"]["customer_id"] == failing]
    assert message["error"]["Error"] == "FaultInjected"
    assert failing in [d["period"]["customer_id"] for d in result["output"]["dead_lettered"]]

    # The period stays due: the next run (the fault gone) closes it.
    assert fire(api, rfc3339(datetime.now(UTC)))["status"] == "SUCCEEDED"
    assert first_period_invoice(api, failing, failing_start)["status"] == "FINALIZED"


def test_two_overlapping_executions_finalize_and_announce_each_period_once(
    sdk, settle, api, local_stack, invoice_messages, dead_letters
):
    """Two schedules firing at once (an hourly tick and an operator's manual run, say) race through
    the same periods: still one invoice, one set of drawdowns and one message per invoice."""
    from concurrent.futures import ThreadPoolExecutor

    customers = [customer_with_a_closed_month(sdk, settle, unique("overlap"), calls=n + 1) for n in range(3)]
    now = rfc3339(datetime.now(UTC))

    def run(_: int) -> dict:
        with httpx.Client(base_url=local_stack.base_url, headers={"Authorization": f"Bearer {API_KEY}"},
                          timeout=600) as client:
            response = client.post(ROUTE, json={"time": now})
            assert response.status_code == 200, response.text
            return response.json()

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(run, range(2)))
    assert [r["status"] for r in results] == ["SUCCEEDED", "SUCCEEDED"], results

    for n, (customer, _, start) in enumerate(customers):
        invoice = first_period_invoice(api, customer, start)
        assert (invoice["status"], invoice["total"]) == ("FINALIZED", 25 * (n + 1))
        usage_invoices = [
            i for i in api.get(f"/v1/customers/{customer}/invoices").json()["data"]
            if i["type"] == "USAGE" and i["status"] == "FINALIZED"
        ]
        assert [i["id"] for i in usage_invoices] == [invoice["id"]]  # one invoice, not two
        assert len(invoice_messages(invoice["id"])) == 1  # one message, whichever run sent it
        assert [m for m in dead_letters() if m["period"]["customer_id"] == customer] == []


# -- continue as new ---------------------------------------------------------------------------
class SmallPages(FakeCycleClose):
    """Pages of 2 periods, whatever page size the task asks for."""

    def find_due(self, as_of, grace, after=None, limit=None):
        return super().find_due(as_of, grace, after, 2)


@pytest.fixture()
def two_pages_per_execution(monkeypatch):
    """The deployment setting the bound comes from, set tiny for this test only."""
    from tally.settings import get_settings

    monkeypatch.setenv("TALLY_CLOSE_PAGES_PER_EXECUTION", "2")
    get_settings.cache_clear()
    yield
    monkeypatch.delenv("TALLY_CLOSE_PAGES_PER_EXECUTION")
    get_settings.cache_clear()


def test_a_run_longer_than_an_executions_pages_continues_as_new_and_closes_every_period_once(
    local_stack, monkeypatch, dead_letters, two_pages_per_execution
):
    """9 periods, 2 a page, 2 pages an execution: pages 1-2, 3-4 and 5 in three executions, each
    started by the one before under a name derived from the run's event and the pages read."""
    fake = SmallPages([period(f"customer-{n}") for n in range(9)])
    spy = install(monkeypatch, fake)
    workflows = local_stack.workflows
    event = {**workflows.event_for("close-billing-periods", datetime(2025, 2, 2, 1, tzinfo=UTC)),
             "id": "0f8a7c9e-continue-as-new"}

    result = workflows.run("close-billing-periods", event)

    assert result["status"] == "SUCCEEDED", (result.get("error"), result.get("cause"))
    first, second, third = result["executions"]
    assert second.endswith("-after-page-2") and third.endswith("-after-page-4")
    assert second.rsplit(":", 1)[-1].startswith("close-20250202T010000Z-")
    summary = result["output"]  # the last execution's: the whole run's
    assert (summary["periods_closed"], summary["invoices_finalized"], summary["invoices_published"]) == (9, 9, 9)
    assert summary["as_of"] == "2025-02-02T01:00:00Z"
    finalized = [call[1] for call in spy.of("finalize")]
    assert sorted(finalized) == [f"customer-{n}" for n in range(9)]  # each once
    assert fake.published == {f"invoice-contract-customer-{n}" for n in range(9)}
    sfn = boto3.client("stepfunctions")
    handed_over = json.loads(sfn.describe_execution(executionArn=first)["output"])
    assert handed_over["continued_as"] == second.rsplit(":", 1)[-1]
    assert handed_over["summary"]["periods_closed"] == 4  # pages 1 and 2
    carried = json.loads(sfn.describe_execution(executionArn=second)["input"])
    assert carried["progress"]["cursor"] == "4" and carried["AWS_STEP_FUNCTIONS_STARTED_BY_EXECUTION_ID"] == first
    assert dead_letters() == []

    # The same event again (EventBridge redelivered it): its first execution finds nothing new to
    # close, and its continuation, of the same name, is refused as a duplicate: nothing runs twice.
    calls = len(spy.calls)
    again = workflows.run("close-billing-periods", event)

    assert again["status"] == "SUCCEEDED", again
    assert again["executions"][0] != first and again["executions"][1:] == [second, third]  # not new ones
    history = sfn.get_execution_history(executionArn=again["executions"][0], maxResults=1000)["events"]
    refused = [e["taskFailedEventDetails"]["error"] for e in history if e["type"] == "TaskFailed"]
    assert refused == ["StepFunctions.ExecutionAlreadyExistsException"]
    assert [c for c in spy.calls[calls:] if c[0] == "finalize"] == []
    assert fake.published == {f"invoice-contract-customer-{n}" for n in range(9)}
