"""A metric created over stored events answers at once; its backfill job runs on the local stack's
queue, and the metric shows its status and progress through the SDK in strict mode (Metronome's
billable metric responses allow fields beyond their own: `backfill_status`, `backfill_progress`)."""

from __future__ import annotations

import pytest

from tests.system.usage_events import HOUR, current_hour, unique, usage_event, usage_value

pytestmark = pytest.mark.system


def test_a_late_metric_is_waiting_then_completed_and_counts_earlier_and_later_events_once(sdk, settle, backfilled):
    tag, hour = unique("backfill"), current_hour()
    customer = sdk.v1.customers.create(name=tag).data.id
    sdk.v1.usage.ingest(usage=[usage_event(f"{tag}-{i}", customer, tag, hour + HOUR / 8, tokens=i) for i in range(1, 5)])
    settle()

    metric = sdk.v1.billable_metrics.create(
        name=f"{tag} tokens", aggregation_type="SUM", aggregation_key="tokens", event_type_filter={"in_values": [tag]}
    ).data.id
    early = sdk.v1.billable_metrics.retrieve(billable_metric_id=metric).data
    assert early.backfill_status in ("waiting", "running", "completed")  # which one depends on timing
    assert early.backfill_progress["segments"] >= 1
    # Ingested after the create: the live path's, whether the job has run yet or not.
    sdk.v1.usage.ingest(usage=[usage_event(f"{tag}-5", customer, tag, hour + HOUR / 4, tokens=5)])
    settle()

    done = backfilled(metric)[metric]
    assert done.backfill_progress["events_counted"] == 4  # the job counted the four earlier ones only
    assert done.backfill_progress["segments_done"] == done.backfill_progress["segments"]
    assert done.backfill_progress["events_scanned"] >= 5 and "completed_at" in done.backfill_progress
    assert usage_value(sdk, customer, metric, hour, hour + HOUR) == 15  # 1 + 2 + 3 + 4, then 5
    listed = [m for m in sdk.v1.billable_metrics.list() if m.id == metric]
    assert [m.backfill_status for m in listed] == ["completed"]
    (searched,) = sdk.v1.usage.search(transaction_ids=[f"{tag}-1"])
    assert metric in {m.id for m in searched.matched_billable_metrics or []}


def test_a_job_whose_create_died_before_its_start_is_completed_by_the_scheduled_sweep(sdk, settle, backfilled,
                                                                                     local_stack, api):
    """What a create killed between storing its metric and sending its start leaves behind (its job,
    waiting for a scan, and the metric, pending), made directly in the stack's table; then the sweep's
    schedule fires (locally on demand, as EventBridge would: its event sent to the backfill queue)."""
    from datetime import datetime, timedelta, timezone

    import uuid

    import boto3

    from tally.adapters.dynamo.backfills import DynamoBackfillStore
    from tally.adapters.dynamo.billing import DynamoBillingStore, DynamoMetricStore
    from tally.billing.backfill import new_job
    from tally.billing.metrics import Aggregation, BillableMetric, EventTypeFilter

    tag, hour = unique("stuck"), current_hour()
    customer = sdk.v1.customers.create(name=tag).data.id
    sdk.v1.usage.ingest(usage=[usage_event(f"{tag}-{i}", customer, tag, hour + HOUR / 8, tokens=i) for i in range(1, 4)])
    settle()
    client = boto3.client("dynamodb", endpoint_url=local_stack.aws_endpoint)
    billing = local_stack.table("BillingTableName")
    metric_id, died_at = str(uuid.uuid4()), datetime.now(timezone.utc) - timedelta(hours=1)
    DynamoBackfillStore(billing, client).create(new_job(metric_id, timedelta(seconds=2), 8, died_at))
    DynamoMetricStore(DynamoBillingStore(billing, client)).put(BillableMetric(
        metric_id, f"{tag} tokens", Aggregation.SUM, "tokens", EventTypeFilter((tag,)), (), (), created_at=died_at))
    assert sdk.v1.billable_metrics.retrieve(billable_metric_id=metric_id).data.backfill_status == "waiting"

    swept = api.post("/local/schedules/backfill-sweep", json={})
    assert swept.status_code == 200 and swept.json()["status"] == "QUEUED"
    done = backfilled(metric_id)[metric_id]
    assert done.backfill_progress["events_counted"] == 3
    assert usage_value(sdk, customer, metric_id, hour, hour + HOUR) == 6  # 1 + 2 + 3, each once
