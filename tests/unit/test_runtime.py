"""A warm function freezes its long-lived objects once, after its first invocation, in Lambda only."""

from __future__ import annotations

import ast
from pathlib import Path
from unittest import mock

import pytest

from tally.runtime import freeze_when_warm

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"


def test_outside_a_lambda_runtime_the_handler_is_left_as_it_is(monkeypatch):
    monkeypatch.delenv("AWS_LAMBDA_RUNTIME_API", raising=False)

    def handler(event, context):
        return event

    assert freeze_when_warm(handler) is handler


def test_in_a_lambda_runtime_the_first_invocation_collects_and_freezes_once(monkeypatch):
    monkeypatch.setenv("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001")
    calls = []

    def handler(event, context):
        calls.append(event)
        if event == "boom":
            raise RuntimeError("failed invocation")
        return {"echo": event}

    with mock.patch("gc.collect") as collect, mock.patch("gc.freeze") as freeze:
        wrapped = freeze_when_warm(handler)
        with pytest.raises(RuntimeError):
            wrapped("boom", None)  # a failed first invocation still warmed the process
        assert (collect.call_count, freeze.call_count) == (1, 1)
        assert wrapped("a", None) == {"echo": "a"}
        assert wrapped("b", None) == {"echo": "b"}
        assert (collect.call_count, freeze.call_count) == (1, 1)
    assert calls == ["boom", "a", "b"]
    assert wrapped.__wrapped__ is handler


def test_every_lambda_handler_is_wrapped_outermost():
    handlers = 0
    for path in sorted(FUNCTIONS.glob("*/handler.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef) and node.decorator_list:
                first = node.decorator_list[0]
                assert isinstance(first, ast.Name) and first.id == "freeze_when_warm", f"{path}:{node.name}"
                handlers += 1
    assert handlers >= 7  # api, ingest, aggregate, alerts and the three cycle-close steps
