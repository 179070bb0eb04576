"""Custom field keys per entity type, and their values on entities (/v1/customFields/*).

A key is registered for one entity type before a value of it may be set on an entity of that type.
A key registered with enforce_uniqueness holds each value for one entity at most: the value is
claimed (its own item) before the entity is written, and released when overwritten or deleted.
Every entity write is conditional on what was read (a customer's fields, a product's or rate
card's revision, a contract's version, a metric's definition): a concurrent write of the entity is a 409, never lost.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Callable, Mapping, Protocol

from tally.billing.errors import Conflict, InvalidInput, NotFound
from tally.billing.limits import MAX_CUSTOM_FIELD_KEY_LENGTH, MAX_CUSTOM_FIELD_VALUE_LENGTH, MAX_CUSTOM_FIELDS
from tally.billing.time import format_sortable

# Every entity type metronome-sdk 4.12 names.
ENTITIES = (
    "alert",
    "billable_metric",
    "charge",
    "commit",
    "contract_credit",
    "contract_product",
    "contract",
    "credit_grant",
    "customer_plan",
    "customer",
    "discount",
    "invoice",
    "plan",
    "professional_service",
    "product",
    "rate_card",
    "scheduled_charge",
    "subscription",
    "package_commit",
    "package_credit",
    "package_subscription",
    "package_scheduled_charge",
)
# The entity types whose values may be set and deleted.
WRITABLE = (
    "customer", "contract", "product", "rate_card", "billable_metric", "commit", "contract_credit",
    "subscription", "scheduled_charge", "discount", "professional_service", "contract_product", "alert",
    "invoice",
    "package_commit", "package_credit", "package_subscription", "package_scheduled_charge",
)
# Plan-era entities (a `charge` is a plan's charge, its values on plan charge lists): Tally has no plans.
LEGACY = ("plan", "customer_plan", "credit_grant", "charge")
# Customer-level commits and credits (their own documents).
GRANT_TYPES = {"commit": ("PREPAID", "POSTPAID"), "contract_credit": ("CREDIT",)}
# The parts of a contract, by the document lists they are kept in (a commit or credit not found
# among the customer-level ones is looked for in its contract).
CONTRACT_PARTS = {
    "subscription": ("subscriptions",),
    "scheduled_charge": ("scheduled_charges", "archived_scheduled_charges"),
    "discount": ("discounts",),
    "professional_service": ("professional_services",),
    "commit": ("commits", "archived_commits"),
    "contract_credit": ("credits", "archived_credits"),
}


# The parts of a package (services/packages.py), by the list each is kept in.
PACKAGE_PARTS = {
    "package_commit": "commits",
    "package_credit": "credits",
    "package_subscription": "subscriptions",
    "package_scheduled_charge": "scheduled_charges",
}


@dataclass(frozen=True, slots=True)
class KeyDefinition:
    entity: str
    key: str
    enforce_uniqueness: bool


class CustomFieldStore(Protocol):
    def add_key(self, definition: KeyDefinition) -> None: ...
    def get_key(self, entity: str, key: str) -> KeyDefinition | None: ...
    def keys(self) -> list[KeyDefinition]: ...
    def remove_key(self, entity: str, key: str) -> None: ...
    def claim_value(self, entity: str, key: str, value: str, entity_id: str) -> bool: ...
    def release_value(self, entity: str, key: str, value: str, entity_id: str) -> None: ...
    def replace_customer_fields(self, customer_id: str, before: dict[str, str], after: dict[str, str], at: str) -> None: ...
    def metric_fields(self, metric_id: str) -> dict[str, str] | None: ...
    def replace_metric_fields(self, metric_id: str, before: dict[str, str], after: dict[str, str]) -> None: ...


def _entity(entity: str) -> str:
    if entity not in ENTITIES:
        raise InvalidInput("entity", f"must be one of {', '.join(ENTITIES)}")
    return entity


def _key(key: str, field: str = "key") -> str:
    if not key:
        raise InvalidInput(field, "must be a non-empty string")
    if len(key) > MAX_CUSTOM_FIELD_KEY_LENGTH:
        raise InvalidInput(field, f"must be at most {MAX_CUSTOM_FIELD_KEY_LENGTH} characters")
    return key


class CustomFieldService:
    def __init__(
        self, store: CustomFieldStore, customers, catalog, contracts, clock: Callable[[], datetime], grants=None,
        packages=None, alerts=None, invoices=None,
    ) -> None:
        """customers: a CustomerStore; catalog: a CatalogStore; contracts: a ContractStore; grants: the
        customer-level commit and credit documents (a DynamoDocumentStore of kind grant); packages:
        a PackageStore (services/packages.py); alerts: an AlertStore; invoices: the InvoiceStore of
        finalized, voided and historical invoices."""
        self._invoices = invoices
        self._grants = grants
        self._packages = packages
        self._alerts = alerts
        self._store = store
        self._customers = customers
        self._catalog = catalog
        self._contracts = contracts
        self._clock = clock

    # -- keys ------------------------------------------------------------------------------------
    def add_key(self, entity: str, key: str, enforce_uniqueness: bool) -> KeyDefinition:
        definition = KeyDefinition(_entity(entity), _key(key), enforce_uniqueness)
        self._store.add_key(definition)
        return definition

    def list_keys(self, entities: list[str] | None) -> list[KeyDefinition]:
        wanted = {_entity(e) for e in entities} if entities else None
        return [d for d in self._store.keys() if wanted is None or d.entity in wanted]

    def remove_key(self, entity: str, key: str) -> None:
        self._store.remove_key(_entity(entity), _key(key))

    # -- values ----------------------------------------------------------------------------------
    def set_values(self, entity: str, entity_id: str, values: Mapping[str, str]) -> dict[str, str]:
        entity = _writable(entity)
        definitions = {}
        for key, value in values.items():
            _key(key, f"custom_fields.{key}")
            if not isinstance(value, str) or len(value) > MAX_CUSTOM_FIELD_VALUE_LENGTH:
                raise InvalidInput(f"custom_fields.{key}", f"must be a string of at most {MAX_CUSTOM_FIELD_VALUE_LENGTH} characters")
            definition = self._store.get_key(entity, key)
            if definition is None:
                raise InvalidInput(f"custom_fields.{key}", f"is not a custom field key of {entity} (add it with /v1/customFields/addKey)")
            definitions[key] = definition
        before = self._read(entity, entity_id)
        after = {**before, **values}
        if len(after) > MAX_CUSTOM_FIELDS:
            raise InvalidInput("custom_fields", f"an entity holds at most {MAX_CUSTOM_FIELDS} custom fields")
        claimed: list[tuple[str, str]] = []
        try:
            for key, value in values.items():
                if definitions[key].enforce_uniqueness and before.get(key) != value:
                    if not self._store.claim_value(entity, key, value, entity_id):
                        raise Conflict(f"custom_fields.{key}: another {entity} already has the value {value!r} (the key enforces uniqueness)")
                    claimed.append((key, value))
            self._write(entity, entity_id, before, after)
        except Exception:
            for key, value in claimed:  # nothing half-written: the claims made for this write go
                self._store.release_value(entity, key, value, entity_id)
            raise
        for key, value in values.items():
            old = before.get(key)
            if definitions[key].enforce_uniqueness and old is not None and old != value:
                self._store.release_value(entity, key, old, entity_id)
        return after

    def delete_values(self, entity: str, entity_id: str, keys: list[str]) -> dict[str, str]:
        entity = _writable(entity)
        for key in keys:
            _key(key, "keys")
        before = self._read(entity, entity_id)
        after = {k: v for k, v in before.items() if k not in keys}
        if after != before:
            self._write(entity, entity_id, before, after)
            for key in keys:
                if key in before:
                    definition = self._store.get_key(entity, key)
                    if definition is not None and definition.enforce_uniqueness:
                        self._store.release_value(entity, key, before[key], entity_id)
        return after

    def values(self, entity: str, entity_id: str) -> dict[str, str]:
        return self._read(_writable(entity), entity_id)

    # -- entities --------------------------------------------------------------------------------
    def _read(self, entity: str, entity_id: str) -> dict[str, str]:
        return dict(self._load(entity, entity_id)[1])

    def _load(self, entity: str, entity_id: str):
        if entity == "customer":
            found = self._customers.get(entity_id)
            fields = None if found is None else found.custom_fields
        elif entity in ("product", "contract_product"):  # a contract-pricing product, by either name
            found = self._catalog.get_product(entity_id)
            fields = None if found is None else found.custom_fields
        elif entity == "billable_metric":
            found = fields = self._store.metric_fields(entity_id)
        elif entity in GRANT_TYPES and (grant := self._grant(entity, entity_id)) is not None:
            found, fields = grant, grant.get("custom_fields") or {}
        elif entity in CONTRACT_PARTS:
            found = self._contract_part(entity, entity_id)
            fields = None if found is None else (found[1].get("custom_fields") or {})
        elif entity in PACKAGE_PARTS:
            found = self._package_part(entity, entity_id)
            fields = None if found is None else (found[1].get("custom_fields") or {})
        elif entity == "alert":
            found = None if self._alerts is None else self._alerts.get(entity_id)
            fields = None if found is None else found.custom_fields
        elif entity == "invoice":
            found = None if self._invoices is None else self._invoices.get(entity_id)
            if found is None:  # a draft is computed each time it is read: nothing to keep values on
                raise NotFound(f"entity_id: invoice {entity_id} not found (values are set on finalized invoices)")
            fields = found.custom_fields
        elif entity == "rate_card":
            got = self._catalog.get_rate_card(entity_id)
            found = None if got is None else got[0]
            fields = None if found is None else found.custom_fields
        else:  # contract
            found = self._contracts.get(entity_id)
            fields = None if found is None else (found.get("custom_fields") or {})
        if found is None:
            raise NotFound(f"entity_id: {entity} {entity_id} not found")
        return found, fields

    def _write(self, entity: str, entity_id: str, before: dict[str, str], after: dict[str, str]) -> None:
        found, fields = self._load(entity, entity_id)
        if dict(fields) != before:
            raise Conflict(f"{entity} {entity_id} changed while its custom fields were being set; retry")
        if entity == "customer":
            self._store.replace_customer_fields(entity_id, before, after, format_sortable(self._clock()))
        elif entity == "billable_metric":
            self._store.replace_metric_fields(entity_id, before, after)
        elif entity == "alert":
            self._alerts.replace_custom_fields(found, dict(after))  # conditional on the alert read
        elif entity == "invoice":
            self._invoices.replace_custom_fields(found, dict(after))  # conditional on the values read
        elif entity in ("product", "contract_product"):
            self._catalog.put_product(replace(found, custom_fields=dict(after), revision=found.revision + 1), found.revision)
        elif entity == "rate_card":
            self._catalog.put_rate_card(replace(found, custom_fields=dict(after), revision=found.revision + 1), found.revision)
        elif entity in CONTRACT_PARTS and isinstance(found, tuple):
            contract, part, where = found
            parts = list(contract[where])
            parts[parts.index(part)] = {**part, "custom_fields": dict(after)}
            self._contracts.replace({**contract, where: parts})  # conditional on the contract's version read
        elif entity in PACKAGE_PARTS and isinstance(found, tuple):
            package, part, where = found
            parts = list(package[where])
            parts[parts.index(part)] = {**part, "custom_fields": dict(after)}
            self._packages.replace({**package, where: parts})  # conditional on the package's version read
        elif entity in GRANT_TYPES:
            self._grants.replace({**found, "custom_fields": dict(after)})
        else:
            self._contracts.replace({**found, "custom_fields": dict(after)})


    def _grant(self, entity: str, grant_id: str) -> dict | None:
        found = self._grants.get(grant_id) if self._grants is not None else None
        return found if found is not None and found.get("type") in GRANT_TYPES[entity] else None

    def _package_part(self, entity: str, part_id: str) -> tuple[dict, dict, str] | None:
        """(the package, the part, the list holding it), or None."""
        package_id = None if self._packages is None else self._packages.part_owner(part_id)
        package = None if package_id is None else self._packages.get(package_id)
        where = PACKAGE_PARTS[entity]
        for part in (package or {}).get(where) or ():
            if part.get("id") == part_id:
                return package, part, where
        return None

    def _contract_part(self, entity: str, part_id: str) -> tuple[dict, dict, str] | None:
        """(the contract, the part, the list holding it), or None."""
        contract_id = self._contracts.part_owner(part_id)
        contract = None if contract_id is None else self._contracts.get(contract_id)
        for where in CONTRACT_PARTS[entity] if contract is not None else ():
            for part in contract.get(where) or ():
                if part.get("id") == part_id:
                    return contract, part, where
        return None


def _writable(entity: str) -> str:
    _entity(entity)
    if entity in LEGACY:
        raise InvalidInput("entity", f"{entity} is a legacy plan-era entity: Tally has no plans (use contracts)")
    if entity not in WRITABLE:
        raise InvalidInput("entity", f"{entity}: setting custom field values is not supported yet (supported: {', '.join(WRITABLE)})")
    return entity
