"""The dead-letter queue every asynchronous path ends in, and the alarm that says it is not empty.

Created under the caller's scope with the ids "Dlq" and "DlqAlarm", so the logical ids (and the
cdk-nag acknowledgements that name them) are those the constructs always had."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.nag import acknowledge


def dead_letter_queue(scope: Construct, what_lands_here: str) -> sqs.Queue:
    """An encrypted, TLS-only queue keeping failures 14 days. `what_lands_here` completes the nag
    acknowledgement: "This queue is itself the dead-letter destination of ..."."""
    queue = sqs.Queue(
        scope,
        "Dlq",
        encryption=sqs.QueueEncryption.SQS_MANAGED,
        enforce_ssl=True,
        retention_period=Duration.days(14),
    )
    acknowledge(
        queue,
        "AwsSolutions-SQS3",
        f"This queue is itself the dead-letter destination of {what_lands_here}; "
        "a DLQ of a DLQ would only move the same failures one hop further.",
    )
    return queue


def work_queue(scope: Construct, dlq: sqs.Queue, timeout: Duration, max_receives: int) -> sqs.Queue:
    """The queue a Lambda function works from ("Queue"): encrypted, TLS-only, messages kept 14 days,
    and after `max_receives` failed receives a message moves to `dlq`."""
    return sqs.Queue(
        scope,
        "Queue",
        encryption=sqs.QueueEncryption.SQS_MANAGED,
        enforce_ssl=True,
        visibility_timeout=Duration.seconds(timeout.to_seconds() * 6),  # AWS's advice for a Lambda source
        retention_period=Duration.days(14),
        dead_letter_queue=sqs.DeadLetterQueue(queue=dlq, max_receive_count=max_receives),
    )


def dead_letter_alarm(scope: Construct, queue: sqs.Queue, description: str) -> cloudwatch.Alarm:
    """In alarm from the first message: every dead letter is something not counted, checked or billed."""
    return cloudwatch.Alarm(
        scope,
        "DlqAlarm",
        alarm_description=description,
        metric=queue.metric_approximate_number_of_messages_visible(
            period=Duration.minutes(1), statistic=cloudwatch.Stats.MAXIMUM
        ),
        threshold=1,
        comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        evaluation_periods=1,
        treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
    )
