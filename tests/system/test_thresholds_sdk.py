"""Threshold billing and auto-recharge through metronome-sdk in strict mode on the local stack, the
payment_gate.* messages received as a user would (an SQS queue subscribed to the alerts topic).

- Spend threshold, no payment gate: usage past 1000 cents issues a 1000 commit at once, bought on a
  SCHEDULED invoice, and the usage invoice goes down by it.
- Auto-recharge, external payment gate: under 500 cents of balance, a recharge to 2000 waits for
  the payment; reported paid (POST /v1/contracts/commits/threshold-billing/release, which Metronome
  documents and the SDK has no method for: `client.post`), the commit counts; reported failed, the
  configuration is off until an edit turns it on again.
Calls cost 10 cents; amounts are cents, exact in binary because the SDK parses floats.
"""

from __future__ import annotations

import metronome
import pytest

from tests.system.conftest import API_KEY
from tests.system.test_alerts_sdk import AlertInbox
from tests.system.usage_events import DAY, current_hour, rfc3339, unique, usage_event

pytestmark = pytest.mark.system

USD = "2714e483-4ff1-48e4-9e25-ac732e8f24f2"
RELEASE = "/v1/contracts/commits/threshold-billing/release"


def _ingest(sdk, events: list[dict]) -> None:
    for start in range(0, len(events), 100):  # the API takes 100 a request
        sdk.v1.usage.ingest(usage=events[start : start + 100])


def _types(messages: list[dict]) -> list[str]:
    return [m["type"] for m in messages]


def test_threshold_billing_and_auto_recharge_with_none_and_external_payment_gates(local_stack, settle):
    tag = unique("thresholds")
    now = current_hour()
    month = now.replace(day=1, hour=0)
    with metronome.Metronome(bearer_token=API_KEY, base_url=local_stack.base_url, max_retries=0,
                             _strict_response_validation=True) as sdk:
        metric = sdk.v1.billable_metrics.create(
            name=f"{tag} calls", aggregation_type="COUNT", event_type_filter={"in_values": [tag]}).data.id
        calls = sdk.v1.contracts.products.create(name=f"{tag} calls", type="USAGE", billable_metric_id=metric).data.id
        fixed = sdk.v1.contracts.products.create(name=f"{tag} prepaid", type="FIXED").data.id
        card = sdk.v1.contracts.rate_cards.create(name=f"{tag} card").data.id
        sdk.v1.contracts.rate_cards.rates.add(rate_card_id=card, product_id=calls, entitled=True, rate_type="FLAT",
                                              price=10, starting_at=rfc3339(month - DAY))
        spender = sdk.v1.customers.create(name=f"{tag} spender", ingest_aliases=[f"{tag}-s"]).data.id
        prepaid = sdk.v1.customers.create(name=f"{tag} prepaid", ingest_aliases=[f"{tag}-p"]).data.id
        inbox = AlertInbox(local_stack, {"customer_id": [spender, prepaid]})

        # -- spend threshold, no gate ----------------------------------------------------------
        spending = sdk.v1.contracts.create(
            customer_id=spender, rate_card_id=card, starting_at=rfc3339(month),
            spend_threshold_configuration={
                "commit": {"product_id": fixed, "name": "Early charge"}, "is_enabled": True,
                "payment_gate_config": {"payment_gate_type": "NONE"}, "threshold_amount": 1000,
            },
        ).data.id
        _ingest(sdk, [usage_event(f"{tag}-s{n}", f"{tag}-s", tag, now) for n in range(100)])  # 1000: reached
        settle()
        (reached,) = inbox.receive(expect=1)
        assert reached["type"] == "payment_gate.threshold_reached"
        assert {k: reached["properties"][k] for k in ("workflow_type", "customer_id", "contract_id", "crossing", "value")} == {
            "workflow_type": "spend", "customer_id": spender, "contract_id": spending, "crossing": 1, "value": 1000}
        _ingest(sdk, [usage_event(f"{tag}-s{n}", f"{tag}-s", tag, now) for n in range(100, 110)])  # 1100: 100 uncollected
        settle()
        assert inbox.receive() == []
        contract = sdk.v1.contracts.retrieve(customer_id=spender, contract_id=spending, include_balance=True).data
        assert contract.spend_threshold_configuration.threshold_amount == 1000
        (commit,) = contract.current.commits
        assert (commit.type, commit.name, commit.balance, commit.access_schedule.schedule_items[0].amount) == (
            "PREPAID", "Early charge", 0, 1000)
        invoices = {i.type: i for i in sdk.v1.customers.invoices.list(customer_id=spender)}
        assert invoices["SCHEDULED"].total == 1000  # the 1000 commit, bought at once
        assert invoices["USAGE"].total == 100  # 1100 of usage, 1000 of it paid early
        assert commit.invoice_schedule.schedule_items[0].invoice_id == invoices["SCHEDULED"].id

        # -- auto-recharge, external gate ------------------------------------------------------
        recharging = sdk.v1.contracts.create(
            customer_id=prepaid, rate_card_id=card, starting_at=rfc3339(month),
            prepaid_balance_threshold_configuration={
                "commit": {"product_id": fixed, "name": "Top-up"}, "is_enabled": True,
                "payment_gate_config": {"payment_gate_type": "EXTERNAL"}, "threshold_amount": 500,
                "recharge_to_amount": 2000,
            },
        ).data.id
        # Evaluated on create: no balance at all, a recharge of 2000 waits for its payment.
        reached, initiate = inbox.receive(expect=2)
        assert _types([reached, initiate]) == ["payment_gate.threshold_reached", "payment_gate.external_initiate"]
        first = initiate["properties"]
        assert (first["workflow_type"], first["contract_id"], first["invoice_total"], first["invoice_currency"]) == (
            "prepaid_balance", recharging, 2000, "USD")
        assert sdk.v1.contracts.get_net_balance(customer_id=prepaid, credit_type_id=USD).data.balance == 0

        assert sdk.post(RELEASE, body={"workflow_id": first["workflow_id"], "outcome": "PAID"}, cast_to=object) == {}
        (status,) = inbox.receive(expect=1)
        assert (status["type"], status["properties"]["payment_status"], status["properties"]["invoice_id"]) == (
            "payment_gate.payment_status", "paid", first["invoice_id"])
        assert sdk.v1.contracts.get_net_balance(customer_id=prepaid, credit_type_id=USD).data.balance == 2000
        assert sdk.v1.customers.invoices.retrieve(customer_id=prepaid, invoice_id=first["invoice_id"]).data.total == 2000

        _ingest(sdk, [usage_event(f"{tag}-p{n}", f"{tag}-p", tag, now) for n in range(160)])  # 1600: 400 left
        settle()
        reached, initiate = inbox.receive(expect=2)
        second = initiate["properties"]
        assert (reached["properties"]["value"], reached["properties"]["crossing"], second["invoice_total"]) == (400, 2, 1600)
        assert sdk.post(RELEASE, body={"workflow_id": second["workflow_id"], "outcome": "failed"}, cast_to=object) == {}
        (status,) = inbox.receive(expect=1)
        assert status["properties"]["payment_status"] == "failed"
        contract = sdk.v2.contracts.retrieve(customer_id=prepaid, contract_id=recharging, include_balance=True).data
        assert contract.prepaid_balance_threshold_configuration.is_enabled is False
        (commit,) = contract.commits  # the paid recharge only
        assert (commit.name, commit.balance) == ("Top-up", 400)
        assert sdk.v1.contracts.get_net_balance(customer_id=prepaid, credit_type_id=USD).data.balance == 400
        (listed,) = sdk.v1.contracts.list_balances(customer_id=prepaid, include_balance=True, include_ledgers=True).data
        assert (listed.id, listed.balance, [e.type for e in listed.ledger]) == (
            commit.id, 400, ["PREPAID_COMMIT_SEGMENT_START", "PREPAID_COMMIT_AUTOMATED_INVOICE_DEDUCTION"])

        # Turned on again by an edit: evaluated at once, a third crossing, waiting for its payment.
        sdk.v2.contracts.edit(customer_id=prepaid, contract_id=recharging,
                              update_prepaid_balance_threshold_configuration={"is_enabled": True})
        reached, initiate = inbox.receive(expect=2)
        assert (reached["properties"]["crossing"], initiate["properties"]["invoice_total"]) == (3, 1600)
        (edit,) = sdk.v2.contracts.get_edit_history(customer_id=prepaid, contract_id=recharging).data
        assert edit.update_prepaid_balance_threshold_configuration.is_enabled is True

        # A workflow nobody started is a 404; a stripe_config without the STRIPE gate is refused naming it.
        with pytest.raises(metronome.NotFoundError):
            sdk.post(RELEASE, body={"workflow_id": "5576ba1f-4a33-b473-3f05-6162d87b4a33", "outcome": "paid"}, cast_to=object)
        with pytest.raises(metronome.BadRequestError) as refused:
            sdk.v2.contracts.edit(customer_id=spender, contract_id=spending, update_spend_threshold_configuration={
                "payment_gate_config": {"payment_gate_type": "EXTERNAL", "stripe_config": {"payment_type": "INVOICE"}}})
        assert "update_spend_threshold_configuration.payment_gate_config.stripe_config" in str(refused.value)
        assert inbox.receive() == []
