"""Figure 6 of `tally bench`: alert latency, from the ingest 200 of the event that crosses a usage
alert to the alert's SNS message received on an SQS subscription, on the live local stack.

Baseline, same run and same endpoint: a bare SNS publish to the alerts topic until its SQS receipt,
so the ratio shows what the pipeline (stream pump, aggregator, counters stream, alert evaluation)
adds to the delivery channel itself.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Callable

from infra.bench.load import usage_events

ALERT_GOAL_MS = 2_000.0
ALERT_TIMEOUT_S = 15.0
RECEIVE_POLL_S = 0.005


def _samples(quick: bool) -> int:
    return 20 if quick else 200


def _wait_for(tail, wanted: Callable[[dict], bool], since: float) -> float:
    """Milliseconds from `since` until a message `wanted` is received."""
    while True:
        for message in tail.poll(wait_seconds=0):
            if wanted(message):
                return (time.perf_counter() - since) * 1000
        if time.perf_counter() - since > ALERT_TIMEOUT_S:
            raise RuntimeError(f"no alert message within {ALERT_TIMEOUT_S} s of the ingest 200")
        time.sleep(RECEIVE_POLL_S)


def figure_alert_latency(report: Any, quick: bool, tally: Any, stack: Any, row: Callable[..., Any],
                         percentile: Callable[[list[float], float], float]) -> None:
    """`row` and `percentile` are the harness's Row and _percentile (infra/bench/figures.py)."""
    from infra.local.runtime import STACK_NAME
    from infra.cli.tail import TopicTail
    from tally.adapters.sns import SnsPublisher

    samples = _samples(quick)
    metric_id = tally.metric_ids["COUNT"]
    tail = TopicTail("alerts", STACK_NAME, stack.aws_endpoint, {"alert_type": ["usage_threshold_reached", "bench"]})
    lags_ms: list[float] = []
    bare_ms: list[float] = []
    publisher = SnsPublisher()
    try:
        for n in range(samples):
            alias = f"bench-alerts-{uuid.uuid4().hex[:8]}"
            customer_id = tally.create_customer(f"bench alerts #{n}", alias)
            tally._post("/v1/alerts/create", {
                "alert_type": "usage_threshold_reached", "name": "first call", "threshold": 1,
                "customer_id": customer_id, "billable_metric_id": metric_id,
            })
            tally.ingest(usage_events(1, alias, tally.now(), tally.rng))
            accepted_at = time.perf_counter()
            lags_ms.append(_wait_for(tail, lambda m: m["properties"].get("customer_id") == customer_id, accepted_at))

            marker = str(uuid.uuid4())
            sent_at = time.perf_counter()
            publisher.publish(tail.topic_arn, {"id": marker, "type": "bench", "properties": {}}, {"alert_type": "bench"})
            bare_ms.append(_wait_for(tail, lambda m: m["id"] == marker, sent_at))
    finally:
        tail.close()
    p50, p99 = percentile(lags_ms, 50), percentile(lags_ms, 99)
    bare_p50, bare_p99 = percentile(bare_ms, 50), percentile(bare_ms, 99)
    report.figures |= {
        "alert_latency_p50_ms": p50,
        "alert_latency_p99_ms": p99,
        "bare_sns_to_sqs_p50_ms": bare_p50,
        "alert_latency_vs_bare_sns": p50 / bare_p50,
    }
    report.rows.append(
        row(f"6  alert latency p50 / p99 ({samples} crossings)", f"{p50:.0f} / {p99:.0f} ms",
            f"bare SNS → SQS {bare_p50:.0f} / {bare_p99:.0f} ms", f"{p50 / bare_p50:.1f}×",
            f"p99 ≤ {ALERT_GOAL_MS:.0f} ms", "met" if p99 <= ALERT_GOAL_MS else "missed")
    )
    report.notes.append(
        f"6: one customer and one usage alert (threshold 1) per sample, one event each; time from the "
        f"ingest 200 to the alert's message received on an SQS queue subscribed to the alerts topic "
        f"(raw delivery, polled every {RECEIVE_POLL_S * 1000:.0f} ms through the moto endpoint). It spans "
        f"the events stream pump, the aggregator, the counters stream pump (no batching window), the "
        f"alert evaluation and SNS → SQS. Baseline: a bare publish to the same topic until its receipt."
    )
