"""The stack's Step Functions workflows and EventBridge schedules, run locally.

- moto's CloudFormation puts state machines in a backend that never executes them, so each one is
  created again, from the definition CloudFormation deployed (the template's, with its Lambda ARNs
  and queue URLs resolved), in moto's executing backend. Its tasks invoke the real handlers through
  the in-process Lambda redirect (moto_patches).
- Retry waits are real sleeps in moto, so the local copy waits 1 s (ASL's minimum) between
  attempts; states, error names, attempts and catches are unchanged.
- EventBridge schedules never fire in moto. A tick thread per scheduled rule starts its state
  machine every interval with the event EventBridge would send, and `run` does the same on demand
  (POST /local/schedules/<name> and `tally local close-periods`). A rule whose target is an SQS
  queue (the backfill sweep) gets the event sent to that queue instead, as EventBridge does; the
  queue pump then hands it to the queue's function like any other message.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

LOCAL_RETRY_SECONDS = 1  # ASL accepts no less
_RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}
_DONE = {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}


def local_definition(definition: dict) -> dict:
    """`definition` with every Retry waiting LOCAL_RETRY_SECONDS between attempts (a copy)."""
    copy = json.loads(json.dumps(definition))

    def visit(states: dict) -> None:
        for state in states.values():
            for retrier in state.get("Retry", []):
                retrier["IntervalSeconds"] = LOCAL_RETRY_SECONDS
                retrier["MaxDelaySeconds"] = LOCAL_RETRY_SECONDS
            for nested in (state.get("ItemProcessor"), state.get("Iterator"), *state.get("Branches", [])):
                if nested:
                    visit(nested["States"])

    visit(copy["States"])
    return copy


def rate_seconds(expression: str) -> int | None:
    """Seconds between runs of a `rate(...)` expression; None for `cron(...)` (not emulated)."""
    match = _RATE.match(expression.strip())
    if match is None:
        return None
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2).rstrip("s")]


def scheduled_event(rule_arn: str, at: datetime, region: str, account: str) -> dict:
    """The event an EventBridge schedule sends its target (`time` in whole seconds, UTC)."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account,
        "time": at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [rule_arn],
        "detail": {},
    }


@dataclass(frozen=True)
class Schedule:
    name: str  # the target's short name: close-billing-periods (a queue's: the rule's, backfill-sweep)
    rule_arn: str
    expression: str
    state_machine_arn: str | None
    queue_url: str | None = None  # an SQS target: the event is sent there


def _kebab(logical_id: str) -> str:
    """`BackfillSweep1A2B3C4D` -> `backfill-sweep` (a logical id without CDK's hash suffix)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "-", re.sub(r"[0-9A-F]{8}$", "", logical_id)).lower()


class LocalWorkflows:
    def __init__(self, template: dict, resources: dict[str, str], stack_name: str, region: str, account: str) -> None:
        self._template = template
        self._resources = resources  # logical id -> physical id
        self._stack_prefix = f"{stack_name}-"
        self._region = region
        self._account = account
        self.state_machines: dict[str, str] = {}  # short name -> ARN
        self.schedules: dict[str, Schedule] = {}  # short name -> its schedule
        self._stopped = threading.Event()
        self._threads: list[threading.Thread] = []
        self._client = None

    @property
    def client(self):
        """One Step Functions client (clients are slow to make, and thread-safe)."""
        if self._client is None:
            import boto3

            self._client = boto3.client("stepfunctions")
        return self._client

    def deploy(self) -> None:
        import boto3
        from moto.stepfunctions.models import stepfunctions_backends

        # moto logs every state failure at ERROR, a caught one too (a dead-lettered period); the
        # execution's own error and cause are what matter, and `wait` returns them.
        logging.getLogger("moto.stepfunctions.parser.asl.component.eval_component").setLevel(logging.CRITICAL)
        deployed = stepfunctions_backends[self._account][self._region]  # where CloudFormation put them
        executing = self.client  # mock_aws runs with execute_state_machine: this backend executes
        by_logical_id: dict[str, str] = {}
        for logical, resource in self._template["Resources"].items():
            if resource["Type"] != "AWS::StepFunctions::StateMachine":
                continue
            machine = deployed.describe_state_machine(self._resources[logical])
            created = executing.create_state_machine(
                name=machine.name,
                definition=json.dumps(local_definition(json.loads(machine.definition))),
                roleArn=machine.roleArn,
            )
            by_logical_id[logical] = created["stateMachineArn"]
            self.state_machines[machine.name.removeprefix(self._stack_prefix)] = created["stateMachineArn"]

        events = boto3.client("events")
        for logical, resource in self._template["Resources"].items():
            props = resource.get("Properties", {})
            if resource["Type"] != "AWS::Events::Rule" or "ScheduleExpression" not in props:
                continue
            rule = events.describe_rule(Name=self._resources[logical])
            for target in props.get("Targets", []):
                arn = by_logical_id.get(target["Arn"].get("Ref", "")) if isinstance(target["Arn"], dict) else None
                queue = target["Arn"].get("Fn::GetAtt", [""])[0] if isinstance(target["Arn"], dict) else ""
                if arn is None and self._template["Resources"].get(queue, {}).get("Type") == "AWS::SQS::Queue":
                    name = _kebab(logical)
                    self.schedules[name] = Schedule(name, rule["Arn"], props["ScheduleExpression"], None,
                                                    self._queue_url(self._resources[queue]))
                    continue
                if arn is None:
                    continue
                name = arn.rsplit(":", 1)[-1].removeprefix(self._stack_prefix)
                self.schedules[name] = Schedule(name, rule["Arn"], props["ScheduleExpression"], arn)

    def _queue_url(self, physical_id: str) -> str:
        if physical_id.startswith("http"):
            return physical_id
        import boto3

        return boto3.client("sqs").get_queue_url(QueueName=physical_id.rsplit(":", 1)[-1])["QueueUrl"]

    # -- running -------------------------------------------------------------------------------
    def event_for(self, name: str, at: datetime) -> dict:
        return scheduled_event(self.schedules[name].rule_arn, at, self._region, self._account)

    def start(self, name: str, event: dict) -> str:
        execution = self.client.start_execution(
            stateMachineArn=self.state_machines[name], name=str(uuid.uuid4()), input=json.dumps(event)
        )
        return execution["executionArn"]

    def wait(self, execution_arn: str, timeout: float = 300.0) -> dict:
        """The execution's status and parsed output (plus error and cause if it failed) once it
        ends, or its RUNNING status after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            described = self.client.describe_execution(executionArn=execution_arn)
            if described["status"] in _DONE or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        result: dict[str, Any] = {"status": described["status"], "execution_arn": execution_arn}
        result["output"] = json.loads(described["output"]) if described.get("output") else None
        for field in ("error", "cause"):
            if described.get(field) is not None:
                result[field] = described[field]
        return result

    def run(self, name: str, event: dict, timeout: float = 300.0) -> dict:
        """Start the workflow and wait for the run to end: an execution that continued as new
        (output `continued_as`, the close-billing-periods workflow) is followed to the one that
        ends the run, whose result this is; `executions` lists every execution's ARN in order."""
        schedule = self.schedules.get(name)
        if schedule is not None and schedule.queue_url is not None:
            return self.enqueue(name, event)
        deadline = time.monotonic() + timeout
        result = self.wait(self.start(name, event), timeout)
        executions = [result["execution_arn"]]
        while result["status"] == "SUCCEEDED" and isinstance(result["output"], dict) and result["output"].get("continued_as"):
            next_arn = self.execution_arn(name, result["output"]["continued_as"])
            result = self.wait(next_arn, max(0.0, deadline - time.monotonic()))
            executions.append(next_arn)
        return {**result, "executions": executions}

    def execution_arn(self, name: str, execution_name: str) -> str:
        """The ARN of state machine `name`'s execution called `execution_name`."""
        machine = self.state_machines[name]
        return f"{machine.replace(':stateMachine:', ':execution:', 1)}:{execution_name}"

    def enqueue(self, name: str, event: dict) -> dict:
        """Send the scheduled event to the rule's queue, as EventBridge's SQS target does."""
        import boto3

        sent = boto3.client("sqs").send_message(QueueUrl=self.schedules[name].queue_url, MessageBody=json.dumps(event))
        return {"status": "QUEUED", "message_id": sent["MessageId"], "output": None}

    # -- EventBridge's part --------------------------------------------------------------------
    def start_schedules(self, interval: float | None = None, log: Callable[[str], None] = print) -> None:
        """A tick thread per schedule: every `interval` seconds (default: the rule's rate), start the
        state machine with the scheduled event, as EventBridge would. The first run is one interval
        after start, as for a new rule."""
        for schedule in self.schedules.values():
            every = interval or rate_seconds(schedule.expression)
            if every is None:
                log(f"schedule {schedule.name}: {schedule.expression} is not emulated locally (only rate())")
                continue
            thread = threading.Thread(
                target=self._tick, args=(schedule, every, log), name=f"schedule-{schedule.name}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def _tick(self, schedule: Schedule, every: float, log: Callable[[str], None]) -> None:
        next_run = time.monotonic() + every
        while not self._stopped.wait(max(0.0, next_run - time.monotonic())):
            next_run += every
            try:
                event = self.event_for(schedule.name, datetime.now(timezone.utc))
                result = self.run(schedule.name, event)
                outcome = result.get("error") or json.dumps(result["output"])
                log(f"schedule {schedule.name} as of {event['time']}: {result['status']} {outcome}")
            except Exception as exc:  # noqa: BLE001 - keep ticking, as EventBridge would
                log(f"schedule {schedule.name}: could not run: {exc!r}")

    def stop(self) -> None:
        self._stopped.set()

    # -- POST /local/schedules/<name> ------------------------------------------------------------
    def schedule_route(self, name: str) -> Callable[[dict, bytes], tuple[int, dict]]:
        """The local-only route that fires schedule `name` now, as of the body's `time`, and waits.

        `time` is passed on unchecked: validating the scheduled event is the state machine's job
        (a bad one fails the execution with InvalidScheduledEvent), as it is on AWS."""

        def fire(headers: dict, body: bytes) -> tuple[int, dict]:
            from tally import wiring
            from tally.billing.errors import Unauthorized

            try:
                wiring.api_keys().verify(headers.get("authorization"))
            except Unauthorized as exc:
                return 401, {"message": exc.message, "type": exc.kind}
            try:
                request = json.loads(body or b"{}")
            except ValueError:
                request = None
            if not isinstance(request, dict):
                return 400, {"message": 'body: must be a JSON object such as {"time": "2025-01-01T00:00:00Z"}',
                             "type": "invalid_request", "field": "body"}
            event = self.event_for(name, datetime.now(timezone.utc))
            if "time" in request:
                event["time"] = request["time"]
            else:
                del event["time"]
            return 200, self.run(name, event)

        return fire

    def local_routes(self) -> dict[tuple[str, str], Callable[[dict, bytes], tuple[int, dict]]]:
        return {("POST", f"/local/schedules/{name}"): self.schedule_route(name) for name in self.schedules}
