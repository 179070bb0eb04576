"""Threshold billing's external payment gate: POST /v1/contracts/commits/threshold-billing/release.

Metronome documents this route ("Release external payment gate threshold commit"); metronome-sdk
4.x has no method for it, so a client posts it with the SDK's generic `client.post`."""

from __future__ import annotations

from aws_lambda_powertools.event_handler.api_gateway import Router

from tally import wiring
from tally.api.models import read_body
from tally.api.threshold_models import ThresholdBillingRelease
from tally.billing.thresholds import ChargeStatus

router = Router()


@router.post("/v1/contracts/commits/threshold-billing/release")
def release_threshold_commit() -> dict:
    """The outcome of an EXTERNAL gate's payment, for the workflow_id of its
    payment_gate.external_initiate message: paid releases the commit, failed cancels it (and turns
    the configuration off). Answers `{}` as Metronome does."""
    body = ThresholdBillingRelease.model_validate(read_body(router.current_event))
    charge = wiring.threshold_billing().release(body.workflow_id, body.payment_outcome())
    if charge.status is ChargeStatus.PAID:
        # The commit counts now: uncollected spend went down (a further crossing may be due).
        wiring.alert_service().evaluate_after_write(charge.document["customer_id"])
    return {}
