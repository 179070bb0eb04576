"""Customer hierarchies on the Metronome-compatible API: `hierarchy_configuration` on contract
create (types/v1/contract_create_params.py HierarchyConfiguration) and on commits and credits
(types/shared_params/commit_hierarchy_configuration.py), and their JSON (types/shared/
hierarchy_configuration.py, contract_v2.py). The rules are in billing/hierarchy.py."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from tally.api.models import Request
from tally.billing.errors import InvalidInput
from tally.billing.hierarchy import DEFAULT_PAYER, DEFAULT_STATEMENT_BEHAVIOR, children_of, parent_of
from tally.billing.limits import MAX_ID_LENGTH

FIELD = "hierarchy_configuration"


class ContractLinkIn(Request):
    contract_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH)
    customer_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH)


class ParentBehaviorIn(Request):
    invoice_consolidation_type: Literal["CONCATENATE", "NONE"] | None = None


class HierarchyConfigurationIn(Request):
    parent: ContractLinkIn | None = None
    parent_behavior: ParentBehaviorIn | None = None
    payer: Literal["SELF", "PARENT"] | None = None
    usage_statement_behavior: Literal["CONSOLIDATE", "SEPARATE"] | None = None

    def to_document(self) -> dict:
        """A child's {parent, payer, usage_statement_behavior} or a parent's {parent_behavior}."""
        if self.parent is None:
            for name in ("payer", "usage_statement_behavior"):
                if getattr(self, name) is not None:
                    raise InvalidInput(f"{FIELD}.{name}", "is a child's setting: give parent too")
            if self.parent_behavior is None:
                raise InvalidInput(FIELD, "give parent (a child contract) or parent_behavior (a parent contract)")
            return {"parent_behavior": self._parent_behavior()}
        if self.parent_behavior is not None:
            raise InvalidInput(f"{FIELD}.parent_behavior", "is a parent's setting; a child contract cannot be a parent")
        # A consolidated invoice is billed to the parent, so a child whose statements go onto it
        # cannot pay its own (billing/consolidation.py).
        if self.usage_statement_behavior == "CONSOLIDATE" and self.payer != "PARENT":
            raise InvalidInput(f"{FIELD}.usage_statement_behavior", "CONSOLIDATE needs payer PARENT: the parent pays the consolidated invoice")
        return {
            "parent": {"contract_id": self.parent.contract_id, "customer_id": self.parent.customer_id},
            "payer": self.payer or DEFAULT_PAYER,
            "usage_statement_behavior": self.usage_statement_behavior or DEFAULT_STATEMENT_BEHAVIOR,
        }

    def _parent_behavior(self) -> dict:
        assert self.parent_behavior is not None
        kind = self.parent_behavior.invoice_consolidation_type
        return {"invoice_consolidation_type": kind or "NONE"}


def hierarchy_json(contract: dict) -> dict[str, Any] | None:
    """The contract's hierarchy_configuration as the SDK shows it: a child's parent and settings,
    or a parent's children (and parent_behavior); None for a contract in no hierarchy."""
    config = contract.get(FIELD)
    if not config:
        return None
    parent = parent_of(contract)
    if parent is not None:
        return {"parent": dict(parent), "payer": config.get("payer"), "usage_statement_behavior": config.get("usage_statement_behavior")}
    shown: dict[str, Any] = {"children": [dict(c) for c in children_of(contract)]}
    if config.get("parent_behavior"):
        shown["parent_behavior"] = dict(config["parent_behavior"])
    return shown
