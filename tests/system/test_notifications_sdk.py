"""An offset lifecycle notification through metronome-sdk in strict mode on the local stack, received
as a user would: an SQS queue subscribed to the alerts topic, filtered on the test's own customer.
The close-billing-periods workflow (fired through the local schedule route) delivers it."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import metronome
import pytest

from tests.system.conftest import API_KEY
from tests.system.usage_events import DAY, HOUR, UTC, current_hour, rfc3339, unique

pytestmark = pytest.mark.system

ROUTE = "/local/schedules/close-billing-periods"


def _received(tail, expect: int, timeout: float = 60.0) -> list[dict]:
    """What reached the queue: at least `expect` messages (or the timeout), then one empty long poll,
    so that a message sent twice would still be read."""
    messages: list[dict] = []
    started = time.monotonic()
    while True:
        batch = tail.poll(wait_seconds=1)
        messages += batch
        if not batch and (len(messages) >= expect or time.monotonic() - started >= timeout):
            return messages


def test_an_offset_notification_is_published_once_by_the_close_workflow(local_stack, api):
    from infra.cli.tail import TopicTail
    from infra.local.runtime import STACK_NAME

    with metronome.Metronome(bearer_token=API_KEY, base_url=local_stack.base_url, max_retries=0,
                             _strict_response_validation=True) as sdk:
        tag = unique("notify")
        customer = sdk.v1.customers.create(name=tag).data.id
        card = sdk.v1.contracts.rate_cards.create(name=f"{tag} card").data.id
        end = current_hour() + 3 * DAY + HOUR
        contract = sdk.v1.contracts.create(
            customer_id=customer, rate_card_id=card, starting_at=rfc3339(current_hour() - DAY), ending_before=rfc3339(end),
        ).data.id

        with pytest.raises(metronome.BadRequestError) as refused:
            sdk.v2.notifications.offset.create(name=tag, policy={"type": "contract.renewed", "offset": "-P3D"})
        assert refused.value.body["field"] == "policy.type"
        assert {c.policy.type for c in sdk.v2.notifications.system.list().data} >= {"contract.end", "invoice.finalized"}
        off = sdk.v2.notifications.offset.edit(policy={"type": "invoice.finalized"}, is_enabled=False).data
        assert (off.type, off.is_enabled) == ("SYSTEM", False)

        created = sdk.v2.notifications.offset.create(name=tag, policy={"type": "contract.end", "offset": "-P3D"}).data
        assert sdk.v2.notifications.offset.retrieve(id=created.id).data.policy.offset == "-P3D"
        # Due a moment from now rather than at the next hour: the run then closes periods as of now,
        # as the stack's own hourly tick would, for the other tests sharing the stack.
        due = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
        offset = f"-PT{int((end - due).total_seconds())}S"
        edited = sdk.v2.notifications.offset.edit(id=created.id, policy={"type": "contract.end", "offset": offset}).data
        assert edited.policy.offset == offset
        assert created.id in [c.id for c in sdk.v2.notifications.offset.list()]

        tail = TopicTail("alerts", STACK_NAME, local_stack.aws_endpoint, {"customer_id": [customer]})
        try:
            for _ in range(2):  # a second run publishes nothing again
                response = api.post(ROUTE, json={"time": rfc3339(due)})
                assert response.status_code == 200, response.text
                assert response.json()["status"] == "SUCCEEDED"
            (message,) = _received(tail, expect=1)
        finally:
            tail.close()

        assert message["type"] == "contract.end"
        assert message["properties"]["notification_id"] == created.id
        assert message["properties"]["contract_id"] == contract
        assert message["properties"]["event_timestamp"] == rfc3339(end)
        assert message["properties"]["timestamp"] == rfc3339(due)

        archived = sdk.v2.notifications.offset.archive(id=created.id).data
        assert archived.archived_at is not None
        assert created.id not in [c.id for c in sdk.v2.notifications.offset.list()]
        assert created.id in [c.id for c in sdk.v2.notifications.offset.list(archive_filter="ARCHIVED")]


def test_a_contract_created_inside_its_offset_window_is_notified_late_by_the_next_run(local_stack, api):
    """Given "7 days before the contract end" and a run already past now, when a contract ending in
    3 days is created, then the next run publishes its notice once (due 4 days ago), and the run
    after publishes nothing."""
    from infra.cli.tail import TopicTail
    from infra.local.runtime import STACK_NAME

    def close_run() -> None:
        # A moment from now, as the stack's own tick would be (see the test above).
        due = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
        response = api.post(ROUTE, json={"time": rfc3339(due)})
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "SUCCEEDED"

    with metronome.Metronome(bearer_token=API_KEY, base_url=local_stack.base_url, max_retries=0,
                             _strict_response_validation=True) as sdk:
        tag = unique("late")
        created = sdk.v2.notifications.offset.create(name=tag, policy={"type": "contract.end", "offset": "-P7D"}).data
        try:
            close_run()  # its watermark is now past every contract end of the next 7 days
            customer = sdk.v1.customers.create(name=tag).data.id
            card = sdk.v1.contracts.rate_cards.create(name=f"{tag} card").data.id
            end = current_hour() + 3 * DAY
            contract = sdk.v1.contracts.create(
                customer_id=customer, rate_card_id=card, starting_at=rfc3339(current_hour() - DAY), ending_before=rfc3339(end),
            ).data.id
            tail = TopicTail("alerts", STACK_NAME, local_stack.aws_endpoint, {"customer_id": [customer]})
            try:
                close_run()
                close_run()  # publishes nothing again
                (message,) = _received(tail, expect=1)
            finally:
                tail.close()
        finally:
            sdk.v2.notifications.offset.archive(id=created.id)  # the stack is shared: later contracts are not its business

    assert message["type"] == "contract.end"
    assert message["properties"]["notification_id"] == created.id
    assert message["properties"]["contract_id"] == contract
    assert message["properties"]["event_timestamp"] == rfc3339(end)
    assert message["properties"]["timestamp"] == rfc3339(end - 7 * DAY)
