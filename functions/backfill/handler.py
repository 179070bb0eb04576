"""Backfill queue -> a metric's backfill job, one scan segment a few pages at a time
(tally.services.backfill). Each message names a metric and a segment; the function sends the
segment's next message itself while pages are left, delayed while the job's settle time runs.

A message that fails (a store unavailable, a crash) is reported in `batchItemFailures` and comes
back after the queue's visibility timeout; the run resumes from the segment's checkpoint, and a
page whose counters were half written is applied exactly once (the counters' page marks). After
MAX_RECEIVES it is parked in the DLQ (alarmed); redriven, it resumes the same way."""

import json

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from tally import wiring
from tally.runtime import freeze_when_warm
from tally.services.backfill import RunOutcome

logger = Logger(service="tally-backfill")
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def run_record(record: SQSRecord) -> str:
    message = json.loads(record.body)
    metric_id, segment = str(message["metric_id"]), int(message["segment"])
    service = wiring.backfill_service()
    run = service.run(metric_id, segment)
    if run.outcome is RunOutcome.MORE:
        wiring.backfill_queue().send(metric_id, [segment], 0)
    elif run.outcome is RunOutcome.WAIT:
        wiring.backfill_queue().send(metric_id, [segment], run.delay_seconds)
    logger.info("backfill segment", extra={"metric_id": metric_id, "segment": segment,
                                           "outcome": run.outcome.value, "pages": run.pages})
    return run.outcome.value


@freeze_when_warm
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict, context: LambdaContext) -> dict:
    return process_partial_response(event=event, record_handler=run_record, processor=processor, context=context)
