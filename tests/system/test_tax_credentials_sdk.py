"""Avalara credentials for a delivery method (POST /v1/upsertAvalaraCredentials), through
metronome-sdk in strict mode on the local stack: the password goes to Secrets Manager, the
method's listing shows the environment and username and never the password, a second upsert
replaces them, and an unknown delivery method id is a 400 naming it with nothing written."""

from __future__ import annotations

import json

import boto3
import metronome
import pytest

pytestmark = pytest.mark.system


def _listed(sdk, method_id: str) -> dict:
    (method,) = [m for m in sdk.v1.settings.billing_providers.list().data if m.delivery_method_id == method_id]
    return method.delivery_method_configuration


def test_avalara_credentials_are_kept_in_the_vault_and_shown_without_the_password(sdk, local_stack):
    method = sdk.v1.settings.billing_providers.create(
        billing_provider="stripe", delivery_method="direct_to_billing_provider",
        configuration={"stripe_secret_key": "sk_test_tally_tax_0001"}).data.delivery_method_id

    sdk.v1.settings.upsert_avalara_credentials(avalara_environment="SANDBOX", avalara_username="acme-tax",
                                               avalara_password="hunter2-sandbox", delivery_method_ids=[method])
    sdk.v1.settings.upsert_avalara_credentials(avalara_environment="PRODUCTION", avalara_username="acme-tax-prod",
                                               avalara_password="hunter2-production", delivery_method_ids=[method],
                                               commit_transactions=True)

    shown = _listed(sdk, method)
    assert shown["avalara_environment"] == "PRODUCTION" and shown["avalara_username"] == "acme-tax-prod"
    assert shown["avalara_commit_transactions"] is True
    assert "hunter2" not in json.dumps(shown)
    secrets = boto3.client("secretsmanager", endpoint_url=local_stack.aws_endpoint, region_name="us-east-1")
    (name,) = [s["Name"] for s in secrets.list_secrets()["SecretList"] if s["Name"].endswith(f"/{method}/avalara")]
    assert json.loads(secrets.get_secret_value(SecretId=name)["SecretString"]) == {
        "username": "acme-tax-prod", "password": "hunter2-production"}

    with pytest.raises(metronome.BadRequestError) as refused:
        sdk.v1.settings.upsert_avalara_credentials(avalara_environment="SANDBOX", avalara_username="x",
                                                   avalara_password="y", delivery_method_ids=[method, "no-such-method"])
    assert refused.value.body["field"] == "delivery_method_ids[1]"
    assert _listed(sdk, method)["avalara_username"] == "acme-tax-prod"  # nothing written
