"""The close-billing-periods task handlers, with a fake CycleCloseService in place of the real one.

What the state machine relies on: the scheduled event's `time` becomes "as of"; a bad event fails
with InvalidScheduledEvent before the service is asked anything; pages follow a cursor and fold
into the run's summary; errors keep their class names (Step Functions matches them).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest

from functions.close_periods import handler
from tally.services import cycle_close_tasks
from tally.services.cycle_close import DueCloses
from tally.services.cycle_close_tasks import InvalidScheduledEvent, InvalidTaskInput
from tally.services.ports import StoreUnavailable
from tally.settings import get_settings

EVENTS = Path(__file__).resolve().parents[2] / "events"
SCHEDULED = json.loads((EVENTS / "eventbridge/close_billing_periods_scheduled.json").read_text())
FINALIZE_INPUT = json.loads((EVENTS / "stepfunctions/finalize_period_input.json").read_text())
UTC = timezone.utc


def due(customer: str, start: str = "2025-01-01T00:00:00Z", kind: str = "USAGE") -> dict:
    return {"customer_id": customer, "contract_id": f"contract-{customer}", "period_start": start, "kind": kind}


class FakeCycleClose:
    """Records calls; periods stay due until finalized; `failing` customers raise on finalize."""

    def __init__(
        self, periods: list[dict], failing: dict[str, Exception] | None = None, skipped: list[dict] | None = None
    ) -> None:
        self.periods = periods
        self.skipped = skipped or []
        self.failing = failing or {}
        self.finalized: set[str] = set()
        self.published: set[str] = set()
        self.calls: list[tuple] = []
        self.alerts = FakeAlerts()

    def find_due(self, as_of: datetime, grace: timedelta, after: str | None = None, limit: int | None = None) -> DueCloses:
        """Pages as the real one does: `periods` in run order, `limit` at a time, the cursor the
        index of the next one; a page lists those of its periods not finalized, and the skipped
        contracts when it reads them (the first page)."""
        self.calls.append(("find_due", as_of, grace))
        start = int(after or 0)
        end = len(self.periods) if limit is None else min(start + limit, len(self.periods))
        page = [p for p in self.periods[start:end] if p["contract_id"] not in self.finalized]
        return DueCloses(page, self.skipped if start == 0 else [], str(end) if end < len(self.periods) else None)

    def finalize(self, customer_id, contract_id, period_start, as_of) -> dict:
        self.calls.append(("finalize", customer_id, contract_id, period_start, as_of))
        if customer_id in self.failing:
            raise self.failing[customer_id]
        invoice = f"invoice-{contract_id}"
        fresh = [] if contract_id in self.finalized else [invoice]
        self.finalized.add(contract_id)
        return {"invoice_ids": [invoice], "finalized": fresh}

    def publish_finalized(self, invoice_id: str) -> bool:
        self.calls.append(("publish", invoice_id))
        if invoice_id in self.published:
            return False
        self.published.add(invoice_id)
        return True


class FakeAlerts:
    def __init__(self) -> None:
        self.evaluated: list[str] = []

    def evaluate_customer(self, customer_id: str) -> None:
        self.evaluated.append(customer_id)


@pytest.fixture()
def service(monkeypatch):
    fake = FakeCycleClose([due("acme"), due("globex", "2024-12-01T00:00:00Z")])
    # raising=False: the handlers reach the service only through wiring.cycle_close_service().
    monkeypatch.setattr("tally.wiring.cycle_close_service", lambda: fake, raising=False)
    monkeypatch.setattr("tally.wiring.alert_service", lambda: fake.alerts, raising=False)
    return fake


@pytest.fixture()
def context():
    return SimpleNamespace(
        function_name="close-periods",
        function_version="$LATEST",
        invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:close-periods",
        memory_limit_in_mb=512,
        aws_request_id="request-1",
        log_group_name="/aws/lambda/close-periods",
        log_stream_name="local",
    )


@pytest.fixture()
def grace_hours(monkeypatch):
    def set_hours(hours: int | None) -> None:
        if hours is None:
            monkeypatch.delenv("TALLY_GRACE_PERIOD_HOURS", raising=False)
        else:
            monkeypatch.setenv("TALLY_GRACE_PERIOD_HOURS", str(hours))
        get_settings.cache_clear()

    yield set_hours
    get_settings.cache_clear()


def test_the_scheduled_events_time_is_the_as_of_instant_and_grace_defaults_to_24_hours(service, context, grace_hours):
    grace_hours(None)

    progress = handler.find_due_periods(SCHEDULED, context)

    assert service.calls == [("find_due", datetime(2025, 2, 2, 1, tzinfo=UTC), timedelta(hours=24))]
    assert progress["as_of"] == "2025-02-02T01:00:00Z"
    # oldest period first
    assert [p["customer_id"] for p in progress["periods"]] == ["globex", "acme"]
    assert progress["count"] == 2
    assert progress["summary"] == {
        "as_of": "2025-02-02T01:00:00Z",
        "periods_closed": 0,
        "invoices_finalized": 0,
        "invoices_published": 0,
        "periods_dead_lettered": 0,
        "dead_lettered": [],
        "contracts_skipped": 0,
        "skipped": [],
    }
    assert progress["skipped"] == []


def test_the_grace_period_comes_from_the_deployments_setting(service, context, grace_hours):
    grace_hours(48)
    handler.find_due_periods(SCHEDULED, context)
    assert service.calls[0][2] == timedelta(hours=48)


def test_an_offset_time_is_read_as_the_same_instant_in_utc(service, context):
    progress = handler.find_due_periods({**SCHEDULED, "time": "2025-02-02T03:00:00+02:00"}, context)
    assert progress["as_of"] == "2025-02-02T01:00:00Z"


MALFORMED = {
    "no time": {key: value for key, value in SCHEDULED.items() if key != "time"},
    "time is not a date": {**SCHEDULED, "time": "yesterday"},
    "time has no timezone": {**SCHEDULED, "time": "2025-02-02T01:00:00"},
    "time is a number": {**SCHEDULED, "time": 1738458000},
    "event is not an object": ["2025-02-02T01:00:00Z"],
}


@pytest.mark.parametrize("event", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_scheduled_event_fails_with_a_named_error_before_anything_is_read(service, context, event):
    with pytest.raises(InvalidScheduledEvent) as raised:
        handler.find_due_periods(event, context)

    assert type(raised.value).__name__ == "InvalidScheduledEvent"  # the name Step Functions sees
    assert raised.value.field == "time" or isinstance(event, list)
    assert service.calls == []


def test_pages_follow_the_cursor_and_fold_each_pages_outcomes_into_the_summary():
    periods = [due(f"customer-{n:02d}") for n in range(5)]
    fake = FakeCycleClose(periods)
    grace = timedelta(hours=24)

    first = cycle_close_tasks.find_due_periods(SCHEDULED, fake, grace, page_size=2)
    assert [p["customer_id"] for p in first["periods"]] == ["customer-00", "customer-01"]

    # The Map's outcomes for page one: one closed, one dead-lettered (it stays due).
    closed = [
        {"period": first["periods"][0], "status": "CLOSED", "invoice_ids": ["i-0"], "finalized": ["i-0"], "published": ["i-0"]},
        {"period": first["periods"][1], "status": "DEAD_LETTERED", "error": "Conflict"},
    ]
    fake.finalized.add("contract-customer-00")
    second = cycle_close_tasks.find_due_periods({**SCHEDULED, "progress": first, "closed": closed}, fake, grace, page_size=2)

    # The failed period is behind the cursor: it is not retried in this run (the next run will).
    assert [p["customer_id"] for p in second["periods"]] == ["customer-02", "customer-03"]
    assert second["summary"]["periods_closed"] == 1
    assert second["summary"]["invoices_finalized"] == 1
    assert second["summary"]["invoices_published"] == 1
    assert second["summary"]["periods_dead_lettered"] == 1
    assert second["summary"]["dead_lettered"][0]["period"]["customer_id"] == "customer-01"

    third = cycle_close_tasks.find_due_periods({**SCHEDULED, "progress": second, "closed": []}, fake, grace, page_size=2)
    fourth = cycle_close_tasks.find_due_periods({**SCHEDULED, "progress": third, "closed": []}, fake, grace, page_size=2)
    assert [p["customer_id"] for p in third["periods"]] == ["customer-04"]
    assert fourth["count"] == 0 and fourth["periods"] == []
    # Every call closes as of the first page's instant.
    assert {call[1] for call in fake.calls} == {datetime(2025, 2, 2, 1, tzinfo=UTC)}


def test_after_its_pages_an_execution_hands_the_cursor_and_summary_to_a_named_continuation():
    fake = FakeCycleClose([due(f"customer-{n:02d}") for n in range(5)])
    grace = timedelta(hours=24)

    def step(state: dict) -> dict:
        return cycle_close_tasks.find_due_periods(state, fake, grace, page_size=2, pages_per_execution=2)

    def closing(page: dict) -> list[dict]:
        return [{"period": p, "status": "CLOSED", "invoice_ids": [p["contract_id"]], "finalized": [p["contract_id"]],
                 "published": [p["contract_id"]]} for p in page["periods"]]

    first = step(SCHEDULED)
    second = step({**SCHEDULED, "progress": first, "closed": closing(first)})
    handover = step({**SCHEDULED, "progress": second, "closed": closing(second)})
    # No page read: the summary of pages 1-2, the cursor after page 2, and the next execution's name.
    reads = len(fake.calls)
    assert (handover["periods"], handover["more"], handover["cursor"]) == ([], True, second["cursor"])
    assert handover["summary"]["periods_closed"] == 4
    assert handover["continue_as"] == f"close-20250202T010000Z-{handover['run']}-after-page-2"
    assert handover["run"] != "run" and len(handover["continue_as"]) <= 80

    # The new execution's input: the event's time and this progress, nothing else.
    third = step({"time": SCHEDULED["time"], "progress": handover})
    assert [p["customer_id"] for p in third["periods"]] == ["customer-04"] and len(fake.calls) == reads + 1
    assert (third["page"], third["execution_pages"], third["continue_as"]) == (3, 1, None)
    last = step({"time": SCHEDULED["time"], "progress": third, "closed": closing(third)})
    assert (last["more"], last["summary"]["periods_closed"]) == (False, 5)

    # The same event again names the same continuation (refused as a duplicate); another event not.
    again = step({**SCHEDULED, "progress": step(SCHEDULED), "closed": []})
    assert step({**SCHEDULED, "progress": again, "closed": []})["continue_as"] == handover["continue_as"]
    other = {**SCHEDULED, "id": "another-event"}
    other_second = step({**other, "progress": step(other), "closed": []})
    assert step({**other, "progress": other_second, "closed": []})["continue_as"] != handover["continue_as"]


def test_the_pages_an_execution_reads_come_from_the_deployment(monkeypatch):
    monkeypatch.setenv("TALLY_CLOSE_PAGES_PER_EXECUTION", "3")
    get_settings.cache_clear()
    try:
        assert get_settings().close_pages_per_execution == 3
    finally:
        monkeypatch.delenv("TALLY_CLOSE_PAGES_PER_EXECUTION")
        get_settings.cache_clear()
    from tally.billing.limits import CLOSE_PAGES_PER_EXECUTION

    assert get_settings().close_pages_per_execution == CLOSE_PAGES_PER_EXECUTION == 4


def test_a_period_listed_twice_is_closed_once():
    fake = FakeCycleClose([due("acme"), due("acme")])
    progress = cycle_close_tasks.find_due_periods(SCHEDULED, fake, timedelta(hours=24))
    assert progress["count"] == 1


def test_finalize_passes_utc_instants_and_returns_the_invoices(service, context):
    result = handler.finalize_period(FINALIZE_INPUT, context)

    (call,) = service.calls
    assert call == (
        "finalize",
        FINALIZE_INPUT["period"]["customer_id"],
        FINALIZE_INPUT["period"]["contract_id"],
        datetime(2025, 1, 1, tzinfo=UTC),
        datetime(2025, 2, 2, 1, tzinfo=UTC),
    )
    invoice = f"invoice-{FINALIZE_INPUT['period']['contract_id']}"
    assert result == {"invoice_ids": [invoice], "finalized": [invoice]}
    # idempotent: a retry finalizes nothing new
    assert handler.finalize_period(FINALIZE_INPUT, context) == {"invoice_ids": [invoice], "finalized": []}
    # the ledger is written for good: the customer's balance alerts are evaluated after each call
    assert service.alerts.evaluated == [FINALIZE_INPUT["period"]["customer_id"]] * 2


def test_service_errors_keep_their_class_name_for_retry_and_catch(context, monkeypatch):
    customer = FINALIZE_INPUT["period"]["customer_id"]
    fake = FakeCycleClose([], failing={customer: StoreUnavailable("billing table throttled")})
    monkeypatch.setattr("tally.wiring.cycle_close_service", lambda: fake, raising=False)

    with pytest.raises(StoreUnavailable):
        handler.finalize_period(FINALIZE_INPUT, context)


@pytest.mark.parametrize(
    "task",
    [{"as_of": "2025-02-02T01:00:00Z"}, {**FINALIZE_INPUT, "period": {**FINALIZE_INPUT["period"], "kind": "WEEKLY"}}],
    ids=["no period", "unknown kind"],
)
def test_a_malformed_task_input_is_a_named_error_and_reaches_no_service(service, context, task):
    with pytest.raises(InvalidTaskInput):
        handler.finalize_period(task, context)
    assert service.calls == []


def test_publish_reports_only_the_invoices_published_now(service, context):
    service.published.add("invoice-a")

    result = handler.publish_invoices({"invoice_ids": ["invoice-a", "invoice-b"]}, context)

    assert result == {"published": ["invoice-b"]}
    assert handler.publish_invoices({"invoice_ids": ["invoice-a", "invoice-b"]}, context) == {"published": []}
