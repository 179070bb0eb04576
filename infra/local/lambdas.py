"""Runs Lambda handlers in-process, by their Handler string, with Lambda-shaped results."""

from __future__ import annotations

import importlib
import json
import os
import threading
import traceback
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass
class FunctionSpec:
    name: str
    handler: str  # "package.module.function"
    environment: dict[str, str] = field(default_factory=dict)
    timeout: int = 30
    memory: int = 512
    arn: str = ""


class LocalContext:
    """The attributes of the Lambda context object our handlers and Powertools read."""

    def __init__(self, spec: FunctionSpec) -> None:
        self.function_name = spec.name
        self.function_version = "$LATEST"
        self.invoked_function_arn = spec.arn or f"arn:aws:lambda:us-east-1:123456789012:function:{spec.name}"
        self.memory_limit_in_mb = spec.memory
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{spec.name}"
        self.log_stream_name = "local"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


class FunctionError(Exception):
    def __init__(self, payload: dict) -> None:
        super().__init__(payload.get("errorMessage", "function error"))
        self.payload = payload


# Functions that serve HTTP through Powertools' resolver, which keeps the request being served in
# class attributes (BaseRouter.current_event): one per process. On AWS an execution environment
# serves one request at a time, so that holds; in this one process, concurrent requests to the
# same function would read each other's bodies (seen as a customer create claiming another
# request's alias). They run one at a time per function here, as one environment would.
ONE_REQUEST_AT_A_TIME = ("functions.api.", "functions.ingest.")


class LocalLambdas:
    """Registry of the stack's functions. Environment variables of every function are applied to
    the process once at deploy time (they do not conflict: same tables, same region)."""

    def __init__(self) -> None:
        self._specs: dict[str, FunctionSpec] = {}
        self._handlers: dict[str, Callable[..., Any]] = {}
        self._import_lock = threading.Lock()
        self._one_at_a_time: dict[str, threading.Lock] = {}

    def register(self, spec: FunctionSpec) -> None:
        self._specs[spec.name] = spec
        if spec.handler.startswith(ONE_REQUEST_AT_A_TIME):
            self._one_at_a_time[spec.name] = threading.Lock()
        for key, value in spec.environment.items():
            os.environ[key] = value

    def names(self) -> list[str]:
        return list(self._specs)

    def spec(self, name_or_arn: str) -> FunctionSpec:
        name = name_or_arn.rsplit(":function:", 1)[-1].split(":")[0]
        return self._specs[name]

    def _handler(self, spec: FunctionSpec) -> Callable[..., Any]:
        handler = self._handlers.get(spec.name)
        if handler is None:
            with self._import_lock:  # import once; never held while a handler runs
                module_name, _, attribute = spec.handler.rpartition(".")
                handler = getattr(importlib.import_module(module_name), attribute)
                self._handlers[spec.name] = handler
        return handler

    def invoke(self, name_or_arn: str, event: Any) -> Any:
        """Call the handler; raise FunctionError with Lambda's error payload if it raises."""
        spec = self.spec(name_or_arn)
        handler = self._handler(spec)
        serial = self._one_at_a_time.get(spec.name)
        try:
            if serial is None:
                return handler(event, LocalContext(spec))
            with serial:  # never re-entered: an HTTP function does not invoke itself
                return handler(event, LocalContext(spec))
        except Exception as exc:  # noqa: BLE001 - becomes a Lambda function error, as on AWS
            raise FunctionError(
                {
                    "errorMessage": str(exc),
                    "errorType": type(exc).__name__,
                    "stackTrace": traceback.format_exception(exc)[-5:],
                }
            ) from exc

    def invoke_json(self, name_or_arn: str, payload: str) -> tuple[str, bool]:
        """For moto's invoke path: JSON in, (JSON out, errored) back."""
        try:
            return json.dumps(self.invoke(name_or_arn, json.loads(payload) if payload else {}), default=str), False
        except FunctionError as exc:
            return json.dumps(exc.payload), True
