"""Backfill queue -> backfill jobs (tally.services.backfill). Three kinds of message:
- a job's start, `{"metric_id"}` (sent by metric create, delayed by the settle time, or by the
  sweep): it forms a scan with the jobs waiting, or finds that one carries it;
- a scan segment, `{"metric_id": <the scan's leader>, "segment"}`: a few pages of it, from its
  checkpoint; the function sends the segment's next message itself while pages are left, delayed
  while the scan's start is ahead;
- the EventBridge schedule's event (`"source": "aws.events"`, put on this queue by the rule): the
  sweep, which starts the jobs waiting past their bound (a create that died before its start).

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
    service = wiring.backfill_service()
    if message.get("source") == "aws.events":
        started = service.sweep()
        logger.info("backfill sweep", extra={"jobs_started": started, "as_of": message.get("time")})
        return "swept"
    metric_id = str(message["metric_id"])
    if message.get("segment") is None:
        start = service.start(metric_id)
        logger.info("backfill start", extra={"metric_id": metric_id, "outcome": start.outcome.value,
                                             "scan": start.scan, "metrics": start.members})
        return start.outcome.value
    segment = int(message["segment"])
    run = service.run(metric_id, segment)
    if run.outcome is RunOutcome.MORE:
        wiring.backfill_queue().send(metric_id, [segment], 0)
    elif run.outcome is RunOutcome.WAIT:
        wiring.backfill_queue().send(metric_id, [segment], run.delay_seconds)
    logger.info("backfill segment", extra={"scan": metric_id, "segment": segment,
                                           "outcome": run.outcome.value, "pages": run.pages})
    return run.outcome.value


@freeze_when_warm
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict, context: LambdaContext) -> dict:
    return process_partial_response(event=event, record_handler=run_record, processor=processor, context=context)
