"""Threshold billing and auto-recharge on the Metronome-compatible API: the request models of
`spend_threshold_configuration` and `prepaid_balance_threshold_configuration` (contract create, and
the edit's add_* and update_*), the stored documents they become (services/thresholds.py), and the
release of an external payment gate. Field names follow metronome-sdk
(types/shared_params/spend_threshold_configuration*.py, prepaid_balance_threshold_configuration*.py,
payment_gate_config*.py, base_threshold_commit.py, update_base_threshold_commit.py and
v2/contract_edit_params.py)."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, StringConstraints

from tally.api.balance_models import SpecifierIn
from tally.api.models import MAX_NAME_LENGTH, Request
from tally.billing.errors import InvalidInput
from tally.billing.limits import MAX_CUSTOM_FIELD_KEY_LENGTH, MAX_CUSTOM_FIELD_VALUE_LENGTH, MAX_ID_LENGTH, MAX_IDS_PER_REQUEST
from tally.billing.thresholds import PaymentOutcome, ThresholdKind, validate_config

Id = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_LENGTH)]
Ids = Annotated[list[Id], Field(max_length=MAX_IDS_PER_REQUEST)]


def _drop_none(values: dict) -> dict:
    return {k: v for k, v in values.items() if v is not None}


class StripeConfigIn(Request):
    """payment_gate_config.stripe_config (metronome-sdk shared_params/payment_gate_config.py)."""

    payment_type: Literal["INVOICE", "PAYMENT_INTENT"] | None = None  # "If left blank, will default to INVOICE"
    invoice_metadata: dict[Annotated[str, StringConstraints(min_length=1, max_length=40)],
                           Annotated[str, StringConstraints(max_length=500)]] | None = Field(default=None, max_length=20)

    def to_document(self, path: str) -> dict:
        payment_type = self.payment_type or "INVOICE"
        if self.invoice_metadata is not None and payment_type != "INVOICE":
            raise InvalidInput(f"{path}.invoice_metadata", "is only for payment_type INVOICE")
        if self.invoice_metadata and any(key.startswith("tally_") for key in self.invoice_metadata):
            raise InvalidInput(f"{path}.invoice_metadata", "keys starting with tally_ are Tally's own")
        return _drop_none({"payment_type": payment_type, "invoice_metadata": self.invoice_metadata})


class PaymentGateConfigIn(Request):
    payment_gate_type: Literal["NONE", "STRIPE", "EXTERNAL"]
    precalculated_tax_config: Any = None
    stripe_config: StripeConfigIn | None = None
    tax_type: Literal["NONE", "STRIPE", "ANROK", "PRECALCULATED"] | None = None

    def to_document(self, path: str) -> dict:
        if self.stripe_config is not None and self.payment_gate_type != "STRIPE":
            raise InvalidInput(f"{path}.stripe_config", "is only for the STRIPE payment gate")
        if self.tax_type not in (None, "NONE"):
            raise InvalidInput(f"{path}.tax_type", "only NONE is supported (Tally calculates no tax)")
        if self.precalculated_tax_config is not None:
            raise InvalidInput(f"{path}.precalculated_tax_config", "is only for tax_type PRECALCULATED, which is not supported")
        document = _drop_none({"payment_gate_type": self.payment_gate_type, "tax_type": self.tax_type})
        if self.payment_gate_type == "STRIPE":
            # Charged through the customer's Stripe billing configuration when a crossing is claimed
            # (services/threshold_payments.py); stored with its payment_type, as the SDK answers it.
            stripe_config = self.stripe_config or StripeConfigIn()
            document["stripe_config"] = stripe_config.to_document(f"{path}.stripe_config")
        return document


class DurationIn(Request):
    unit: Literal["DAYS", "WEEKS", "MONTHS", "YEARS"]
    value: int


class ThresholdCommitIn(Request):
    """BaseThresholdCommit: the commit product names the invoice line of the charge."""

    product_id: Id
    description: str | None = Field(default=None, max_length=MAX_NAME_LENGTH)
    name: str | None = Field(default=None, max_length=MAX_NAME_LENGTH)
    priority: Decimal | None = None

    def to_document(self) -> dict:
        return _drop_none(
            {"product_id": self.product_id, "name": self.name, "description": self.description, "priority": self.priority}
        )


class PrepaidThresholdCommitIn(ThresholdCommitIn):
    applicable_product_ids: Ids | None = None
    applicable_product_tags: Ids | None = None
    duration: DurationIn | None = None
    rate_type: Literal["COMMIT_RATE", "LIST_RATE"] | None = None
    rollover_fraction: Decimal | None = None
    specifiers: list[SpecifierIn] | None = Field(default=None, max_length=MAX_IDS_PER_REQUEST)

    def to_document(self) -> dict:
        return super().to_document() | _drop_none(
            {
                "applicable_product_ids": self.applicable_product_ids,
                "applicable_product_tags": self.applicable_product_tags,
                "duration": None if self.duration is None else self.duration.model_dump(),
                "rate_type": self.rate_type,
                "rollover_fraction": self.rollover_fraction,
                "specifiers": None if self.specifiers is None else [s.model_dump(exclude_none=True) for s in self.specifiers],
            }
        )


class DiscountCapIn(Request):
    """The discount stops applying once the spend tracker `spend_tracker_alias` (of the same
    contract) has accumulated `amount` in the billing period (billing/spend_trackers.py)."""

    amount: Decimal
    spend_tracker_alias: str = Field(min_length=1, max_length=MAX_NAME_LENGTH)

    def to_document(self) -> dict:
        return {"amount": self.amount, "spend_tracker_alias": self.spend_tracker_alias}


class DiscountConfigurationIn(Request):
    payment_fraction: Decimal
    cap: DiscountCapIn | None = None

    def to_document(self, path: str) -> dict:
        document: dict[str, Any] = {"payment_fraction": self.payment_fraction}
        if self.cap is not None:
            document["cap"] = self.cap.to_document()
        return document


class CustomFieldFilterIn(Request):
    entity: Literal["Commit", "ContractCredit", "ContractCreditOrCommit"]
    key: str = Field(min_length=1, max_length=MAX_CUSTOM_FIELD_KEY_LENGTH)
    value: str = Field(max_length=MAX_CUSTOM_FIELD_VALUE_LENGTH)


class ExcludeIn(Request):
    custom_field_filters: list[CustomFieldFilterIn] = Field(min_length=1, max_length=MAX_IDS_PER_REQUEST)


class BalanceSpecifierIn(Request):
    exclude: list[ExcludeIn] = Field(max_length=MAX_IDS_PER_REQUEST)


def _specifiers(specifiers: list[BalanceSpecifierIn] | None) -> list[dict] | None:
    return None if specifiers is None else [s.model_dump() for s in specifiers]


def _revision() -> str:
    return str(uuid.uuid4())


class SpendThresholdConfigurationIn(Request):
    commit: ThresholdCommitIn
    is_enabled: bool
    payment_gate_config: PaymentGateConfigIn
    threshold_amount: Decimal
    discount_configuration: DiscountConfigurationIn | None = None

    def to_document(self, path: str) -> dict:
        document = _drop_none(
            {
                "commit": self.commit.to_document(),
                "is_enabled": self.is_enabled,
                "payment_gate_config": self.payment_gate_config.to_document(f"{path}.payment_gate_config"),
                "threshold_amount": self.threshold_amount,
                "discount_configuration": None
                if self.discount_configuration is None
                else self.discount_configuration.to_document(f"{path}.discount_configuration"),
                "revision": _revision(),
            }
        )
        validate_config(ThresholdKind.SPEND, document, path)
        return document


class PrepaidBalanceThresholdConfigurationIn(Request):
    commit: PrepaidThresholdCommitIn
    is_enabled: bool
    payment_gate_config: PaymentGateConfigIn
    recharge_to_amount: Decimal
    threshold_amount: Decimal
    custom_credit_type_id: Id | None = None
    discount_configuration: DiscountConfigurationIn | None = None
    threshold_balance_specifiers: list[BalanceSpecifierIn] | None = Field(default=None, max_length=MAX_IDS_PER_REQUEST)

    def to_document(self, path: str) -> dict:
        document = _drop_none(
            {
                "commit": self.commit.to_document(),
                "is_enabled": self.is_enabled,
                "payment_gate_config": self.payment_gate_config.to_document(f"{path}.payment_gate_config"),
                "recharge_to_amount": self.recharge_to_amount,
                "threshold_amount": self.threshold_amount,
                "custom_credit_type_id": self.custom_credit_type_id,
                "discount_configuration": None
                if self.discount_configuration is None
                else self.discount_configuration.to_document(f"{path}.discount_configuration"),
                "threshold_balance_specifiers": _specifiers(self.threshold_balance_specifiers),
                "revision": _revision(),
            }
        )
        validate_config(ThresholdKind.PREPAID_BALANCE, document, path)
        return document


# -- updates (the edit's update_*_threshold_configuration) -----------------------------------------
def _set_fields(model: Request, path: str, required: tuple[str, ...]) -> dict:
    """The fields the update sends, as given; a null clears a field, except those in `required`."""
    update: dict[str, Any] = {}
    for name in model.model_fields_set:
        value = getattr(model, name)
        if value is None and name in required:
            raise InvalidInput(f"{path}.{name}", "must not be null")
        update[name] = value
    return update


class UpdateThresholdCommitIn(Request):
    """UpdateBaseThresholdCommit."""

    description: str | None = Field(default=None, max_length=MAX_NAME_LENGTH)
    name: str | None = Field(default=None, max_length=MAX_NAME_LENGTH)
    priority: Decimal | None = None
    product_id: Id | None = None

    def to_update(self, path: str) -> dict:
        return _set_fields(self, path, ("product_id",))


class UpdatePrepaidThresholdCommitIn(UpdateThresholdCommitIn):
    applicable_product_ids: Ids | None = None
    applicable_product_tags: Ids | None = None
    duration: DurationIn | None = None
    rate_type: Literal["COMMIT_RATE", "LIST_RATE"] | None = None
    rollover_fraction: Decimal | None = None
    specifiers: list[SpecifierIn] | None = Field(default=None, max_length=MAX_IDS_PER_REQUEST)

    def to_update(self, path: str) -> dict:
        update = super().to_update(path)
        if update.get("duration") is not None:
            update["duration"] = self.duration.model_dump()  # type: ignore[union-attr]
        if update.get("specifiers") is not None:
            update["specifiers"] = [s.model_dump(exclude_none=True) for s in self.specifiers or ()]
        return update


class UpdateDiscountConfigurationIn(Request):
    cap: DiscountCapIn | None = None  # null removes the cap
    payment_fraction: Decimal | None = None

    def to_update(self, path: str) -> dict:
        update = {name: getattr(self, name) for name in self.model_fields_set}
        if self.cap is not None:
            update["cap"] = self.cap.to_document()
        return update


class UpdateSpendThresholdConfigurationIn(Request):
    commit: UpdateThresholdCommitIn | None = None
    discount_configuration: UpdateDiscountConfigurationIn | None = None
    is_enabled: bool | None = None
    payment_gate_config: PaymentGateConfigIn | None = None
    threshold_amount: Decimal | None = None

    not_null: ClassVar[tuple[str, ...]] = ("commit", "is_enabled", "payment_gate_config", "threshold_amount")

    def to_update(self, path: str) -> dict:
        update = _set_fields(self, path, self.not_null)
        if self.commit is not None:
            update["commit"] = self.commit.to_update(f"{path}.commit")
        if self.discount_configuration is not None:
            update["discount_configuration"] = self.discount_configuration.to_update(f"{path}.discount_configuration")
        if self.payment_gate_config is not None:
            update["payment_gate_config"] = self.payment_gate_config.to_document(f"{path}.payment_gate_config")
        if not update:
            raise InvalidInput(path, "names no change")
        return update


class UpdatePrepaidBalanceThresholdConfigurationIn(UpdateSpendThresholdConfigurationIn):
    commit: UpdatePrepaidThresholdCommitIn | None = None  # type: ignore[assignment]
    custom_credit_type_id: Id | None = None
    recharge_to_amount: Decimal | None = None
    threshold_balance_specifiers: list[BalanceSpecifierIn] | None = Field(default=None, max_length=MAX_IDS_PER_REQUEST)

    not_null: ClassVar[tuple[str, ...]] = (*UpdateSpendThresholdConfigurationIn.not_null, "recharge_to_amount")

    def to_update(self, path: str) -> dict:
        update = super().to_update(path)
        if self.threshold_balance_specifiers is not None:
            update["threshold_balance_specifiers"] = _specifiers(self.threshold_balance_specifiers)
        return update


def threshold_edit_changes(edit: Any) -> dict:
    """The normalized threshold changes of a ContractEdit (api/contract_edit_models.py)."""
    changes: dict[str, Any] = {}
    for kind in ThresholdKind:
        add, update = getattr(edit, f"add_{kind.value}"), getattr(edit, f"update_{kind.value}")
        if add is not None:
            changes[f"add_{kind.value}"] = add.to_document(f"add_{kind.value}")
        if update is not None:
            changes[f"update_{kind.value}"] = update.to_update(f"update_{kind.value}")
    return changes


class ThresholdBillingRelease(Request):
    """POST /v1/contracts/commits/threshold-billing/release (Metronome's "Release external payment
    gate threshold commit"; not in metronome-sdk 4.x)."""

    workflow_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH)
    outcome: Literal["paid", "PAID", "failed", "FAILED"]

    def payment_outcome(self) -> PaymentOutcome:
        try:
            uuid.UUID(self.workflow_id)
        except ValueError as exc:
            raise InvalidInput("workflow_id", "must be the workflow_id of a payment_gate.external_initiate message (a UUID)") from exc
        return PaymentOutcome(self.outcome.lower())
