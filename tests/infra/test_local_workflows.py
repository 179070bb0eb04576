"""What the local runtime changes in the synthesized workflow (only retry waits), and the event its
schedule tick sends."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from infra.local.workflows import local_definition, rate_seconds, scheduled_event
from tests.infra.test_cycle_close import definition_of


def all_retriers(states: dict) -> list[dict]:
    found = []
    for state in states.values():
        found += state.get("Retry", [])
        if "ItemProcessor" in state:
            found += all_retriers(state["ItemProcessor"]["States"])
    return found


def test_locally_every_retry_waits_one_second_and_nothing_else_changes(synth):
    _, machine = synth.one("AWS::StepFunctions::StateMachine", "CycleCloseStateMachine")
    deployed = definition_of(machine)

    local = local_definition(deployed)

    before, after = all_retriers(deployed["States"]), all_retriers(local["States"])
    assert len(after) == len(before) >= 7
    for prod, here in zip(before, after):
        assert here["IntervalSeconds"] == here["MaxDelaySeconds"] == 1
        assert {k: v for k, v in here.items() if k not in ("IntervalSeconds", "MaxDelaySeconds")} == {
            k: v for k, v in prod.items() if k not in ("IntervalSeconds", "MaxDelaySeconds")
        }
    assert set(local["States"]) == set(deployed["States"])
    assert any(r["IntervalSeconds"] == 2 for r in before), "the deployed definition is left as it was"


@pytest.mark.parametrize(
    ("expression", "seconds"),
    [("rate(1 hour)", 3600), ("rate(15 minutes)", 900), ("rate(1 day)", 86400), ("cron(0 * * * ? *)", None)],
)
def test_rate_expressions_become_tick_intervals(expression, seconds):
    assert rate_seconds(expression) == seconds


def test_the_tick_sends_the_event_eventbridge_would():
    at = datetime(2025, 2, 2, 3, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
    event = scheduled_event("arn:aws:events:us-east-1:123456789012:rule/r", at, "us-east-1", "123456789012")
    assert {k: v for k, v in event.items() if k != "id"} == {
        "version": "0",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": "2025-02-02T01:00:00Z",
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/r"],
        "detail": {},
    }
    assert len(event["id"]) == 36
