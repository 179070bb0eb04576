"""Counters stream → alert evaluation for the customers whose usage changed in the batch; also
`{"evaluate_alert": <id>}` (asynchronous invoke) to evaluate a new all-customer alert on everyone;
`{"evaluate_customer": <id>}` to evaluate a customer whose evaluation failed after a balance write.

A customer whose evaluation fails never stops the others'.
- Stream: it is reported through `batchItemFailures` at its first record, so the stream resumes
  there (and, after its retries, leaves the batch in the DLQ). Re-evaluating customers after it is
  harmless: a crossing already claimed is in alarm, and a pending one is republished with the same
  id (see tally.services.alerts).
- evaluate_alert: every other customer is evaluated first; then AlertNotEvaluated names the failed
  ones, so that Lambda retries the invocation and finally leaves it in the DLQ with their reasons.
"""

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from tally import wiring
from tally.runtime import freeze_when_warm
from tally.adapters.dynamo.counter_stream import counter_changes
from tally.services.alerts import not_evaluated

logger = Logger(service="tally-alerts")
metrics = Metrics(namespace="Tally", service="tally-alerts")


@freeze_when_warm
@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict, context: LambdaContext) -> dict:
    if "evaluate_alert" in event:
        alert_id = str(event["evaluate_alert"])
        outcome = wiring.alert_service().evaluate_on_every_customer(alert_id)
        metrics.add_metric(name="AlertsFired", unit=MetricUnit.Count, value=outcome.fired)
        metrics.add_metric(name="AlertEvaluationsFailed", unit=MetricUnit.Count, value=len(outcome.failed))
        if outcome.failed:
            raise not_evaluated(alert_id, outcome.failed)
        return {"fired": outcome.fired, "rearmed": outcome.rearmed}
    if "evaluate_customer" in event:  # a write moved a balance and its own evaluation failed
        outcome = wiring.alert_service().evaluate_customer(str(event["evaluate_customer"]))
        metrics.add_metric(name="AlertsFired", unit=MetricUnit.Count, value=outcome.fired)
        return {"fired": outcome.fired, "rearmed": outcome.rearmed}
    changes = counter_changes(event.get("Records") or [])
    failed = [changes.unreadable_at] if changes.unreadable_at else []
    if changes.unreadable_at:
        logger.error("unreadable counter record", extra={"sequence_number": changes.unreadable_at})
    fired = republished = charged = not_evaluated_keys = 0
    for ingest_key, result in wiring.alert_service().evaluate_usage_changes(changes.metrics_by_key).items():
        if isinstance(result, Exception):
            logger.error("alert evaluation failed", extra={"ingest_key": ingest_key, "error": repr(result)})
            failed.append(changes.first_sequence[ingest_key])
            not_evaluated_keys += 1
        else:
            fired += result.fired
            republished += result.republished
            charged += result.charged
    metrics.add_metric(name="AlertsFired", unit=MetricUnit.Count, value=fired)
    metrics.add_metric(name="ThresholdCharges", unit=MetricUnit.Count, value=charged)
    metrics.add_metric(name="AlertEvaluationsFailed", unit=MetricUnit.Count, value=not_evaluated_keys)
    metrics.add_metric(name="AlertsRepublished", unit=MetricUnit.Count, value=republished)
    first = min(failed, key=int) if failed else None
    return {"batchItemFailures": [] if first is None else [{"itemIdentifier": first}]}
