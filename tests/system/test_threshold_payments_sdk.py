"""Auto-recharge with the STRIPE payment gate, through metronome-sdk in strict mode on the local stack
with localstripe (issue 17): the customer's Stripe customer has a card on file; the contract's
configuration (recharge to 2000 cents under 500) is evaluated at once on create, the crossing is
announced on the alerts topic, the delivery function receives it through its queue and charges a
PaymentIntent of 2000 cents; then, and only then, the 2000 commit counts.
"""

from __future__ import annotations

import os
import time

import metronome
import pytest
import stripe

from tests.localstripe import localstripe  # noqa: F401 - the fixture
from tests.system.conftest import API_KEY
from tests.system.test_alerts_sdk import AlertInbox
from tests.system.usage_events import DAY, current_hour, rfc3339, unique

pytestmark = pytest.mark.system
SECRET_KEY = "sk_test_tally_recharge_5555"


def test_an_auto_recharge_is_charged_through_stripe_once_and_then_granted(local_stack, localstripe):  # noqa: F811
    from tally import settings, wiring

    os.environ["STRIPE_API_BASE"] = localstripe.url  # as `tally local up --stripe` does
    settings.get_settings.cache_clear()
    wiring.threshold_payment_service.cache_clear()
    tag = unique("recharge")
    month = current_hour().replace(day=1, hour=0)
    stripe_sdk = stripe.StripeClient(SECRET_KEY, base_addresses={"api": localstripe.url}, max_network_retries=0)
    stripe_customer = stripe_sdk.customers.create(params={"name": tag}).id
    card = stripe_sdk.payment_methods.attach("pm_card_visa", params={"customer": stripe_customer}).id
    stripe_sdk.customers.update(stripe_customer, params={"invoice_settings": {"default_payment_method": card}})
    with metronome.Metronome(bearer_token=API_KEY, base_url=local_stack.base_url, max_retries=0,
                             _strict_response_validation=True) as sdk:
        fixed = sdk.v1.contracts.products.create(name=f"{tag} prepaid", type="FIXED").data.id
        rate_card = sdk.v1.contracts.rate_cards.create(name=f"{tag} card").data.id
        customer = sdk.v1.customers.create(name=tag).data.id
        method = sdk.v1.settings.billing_providers.create(
            billing_provider="stripe",  # type: ignore[arg-type] - the SDK lists marketplaces; Tally takes Stripe too
            delivery_method="direct_to_billing_provider", configuration={"stripe_secret_key": SECRET_KEY},
        ).data.delivery_method_id
        sdk.v1.customers.set_billing_configurations(data=[{
            "customer_id": customer, "billing_provider": "stripe", "delivery_method_id": method,
            "configuration": {"stripe_customer_id": stripe_customer},
        }])
        inbox = AlertInbox(local_stack, {"customer_id": [customer]})

        contract = sdk.v1.contracts.create(
            customer_id=customer, rate_card_id=rate_card, starting_at=rfc3339(month - DAY),
            prepaid_balance_threshold_configuration={
                "commit": {"product_id": fixed, "name": "Top-up"}, "is_enabled": True,
                "payment_gate_config": {"payment_gate_type": "STRIPE", "stripe_config": {"payment_type": "PAYMENT_INTENT"}},
                "threshold_amount": 500, "recharge_to_amount": 2000,
            },
        ).data.id

        def intents() -> list:
            return [i for i in stripe_sdk.payment_intents.list(params={"limit": 100}).auto_paging_iter()
                    if i.metadata.get("tally_contract_id") == contract]

        deadline = time.monotonic() + 10  # the stack's queue pump thread may be the one charging: wait for it
        while not (intents() and intents()[0].status == "succeeded") and time.monotonic() < deadline:
            local_stack.queue_pump.drain()
            time.sleep(0.1)
        local_stack.queue_pump.drain()
        (intent,) = intents()
        assert (intent.status, intent.amount, intent.customer) == ("succeeded", 2000, stripe_customer)

        reached, paid = inbox.receive(expect=2)
        assert (reached["type"], reached["properties"]["payment_gate_type"]) == ("payment_gate.threshold_reached", "STRIPE")
        assert paid["type"] == "payment_gate.payment_status"
        assert {k: paid["properties"][k] for k in ("payment_status", "billing_provider", "stripe_id")} == {
            "payment_status": "paid", "billing_provider": "stripe", "stripe_id": intent.id}
        got = sdk.v1.contracts.retrieve(customer_id=customer, contract_id=contract, include_balance=True).data
        assert got.prepaid_balance_threshold_configuration.payment_gate_config.stripe_config.payment_type == "PAYMENT_INTENT"
        (commit,) = got.current.commits
        assert (commit.name, commit.balance, commit.access_schedule.schedule_items[0].amount) == ("Top-up", 2000, 2000)
        # Tally settles a STRIPE gate itself: the external release is refused, naming the field.
        with pytest.raises(metronome.BadRequestError) as refused:
            sdk.post("/v1/contracts/commits/threshold-billing/release", cast_to=object,
                     body={"workflow_id": reached["properties"]["workflow_id"], "outcome": "paid"})
        assert refused.value.body["field"] == "workflow_id"
        assert len(intents()) == 1 and inbox.receive() == []
