"""/v1/customFields/* through metronome-sdk in strict mode on the local stack: keys per entity type,
values set on a customer and a product and read back on their own reads, deleted, and an
unregistered key refused with a 400 naming it (raw JSON), the customer unchanged."""

from __future__ import annotations

import metronome
import pytest

from tests.system.conftest import API_KEY
from tests.system.usage_events import unique

pytestmark = pytest.mark.system


def test_custom_field_keys_and_values_round_trip(local_stack, api):
    with metronome.Metronome(bearer_token=API_KEY, base_url=local_stack.base_url, max_retries=0,
                             _strict_response_validation=True) as sdk:
        tag = unique("cf").replace("-", "_")
        fields = sdk.v1.custom_fields
        fields.add_key(entity="customer", key=f"{tag}_region", enforce_uniqueness=False)
        fields.add_key(entity="customer", key=f"{tag}_erp", enforce_uniqueness=True)
        fields.add_key(entity="product", key=f"{tag}_sku", enforce_uniqueness=False)
        mine = [(k.entity, k.key, k.enforce_uniqueness) for k in fields.list_keys(entities=["customer", "product"])
                if k.key.startswith(tag)]
        assert sorted(mine) == [("customer", f"{tag}_erp", True), ("customer", f"{tag}_region", False),
                                ("product", f"{tag}_sku", False)]

        customer = sdk.v1.customers.create(name=f"{tag} Acme").data.id
        other = sdk.v1.customers.create(name=f"{tag} Other").data.id
        product = sdk.v1.contracts.products.create(name=f"{tag} fee", type="FIXED").data.id
        fields.set_values(entity="customer", entity_id=customer, custom_fields={f"{tag}_region": "eu", f"{tag}_erp": "E-1"})
        fields.set_values(entity="product", entity_id=product, custom_fields={f"{tag}_sku": "SKU-7"})
        assert sdk.v1.customers.retrieve(customer_id=customer).data.custom_fields == {f"{tag}_region": "eu", f"{tag}_erp": "E-1"}
        assert sdk.v1.contracts.products.retrieve(id=product).data.custom_fields == {f"{tag}_sku": "SKU-7"}

        refused = api.post("/v1/customFields/setValues",
                           json={"entity": "customer", "entity_id": customer, "custom_fields": {f"{tag}_nope": "x"}})
        assert refused.status_code == 400 and f"custom_fields.{tag}_nope" in refused.text
        taken = api.post("/v1/customFields/setValues",
                         json={"entity": "customer", "entity_id": other, "custom_fields": {f"{tag}_erp": "E-1"}})
        assert taken.status_code == 409

        fields.delete_values(entity="customer", entity_id=customer, keys=[f"{tag}_region"])
        assert sdk.v1.customers.retrieve(customer_id=customer).data.custom_fields == {f"{tag}_erp": "E-1"}
        fields.remove_key(entity="product", key=f"{tag}_sku")
        assert [k.key for k in fields.list_keys(entities=["product"]) if k.key.startswith(tag)] == []
