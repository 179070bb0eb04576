"""Products: what is sold, how its raw metric quantity becomes a billed quantity, and its versions.

A product changes through versions keyed by an hour-aligned `starting_at` (an update may be dated
in the past or the future). The first version also governs any time before it, so rates dated
earlier than a product's creation still resolve to a name and settings.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_DOWN, ROUND_HALF_UP, ROUND_UP, Decimal
from enum import Enum

from tally.billing.errors import InvalidInput
from tally.billing.pricing.money import PRICING_CONTEXT
from tally.billing.pricing.validation import as_decimal, hour_aligned


class ProductType(str, Enum):
    USAGE = "USAGE"
    FIXED = "FIXED"
    SUBSCRIPTION = "SUBSCRIPTION"
    COMPOSITE = "COMPOSITE"


class ConversionOperation(str, Enum):
    MULTIPLY = "MULTIPLY"
    DIVIDE = "DIVIDE"


class RoundingMethod(str, Enum):
    # Named as Metronome names them; mapped to Python's modes of the same meaning (away from zero,
    # toward zero), so a negative quantity rounds symmetrically to a positive one.
    ROUND_UP = "ROUND_UP"
    ROUND_DOWN = "ROUND_DOWN"
    ROUND_HALF_UP = "ROUND_HALF_UP"

    @property
    def decimal_mode(self) -> str:
        return {"ROUND_UP": ROUND_UP, "ROUND_DOWN": ROUND_DOWN, "ROUND_HALF_UP": ROUND_HALF_UP}[self.value]


@dataclass(frozen=True, slots=True)
class QuantityConversion:
    conversion_factor: Decimal
    operation: ConversionOperation
    name: str | None = None


@dataclass(frozen=True, slots=True)
class QuantityRounding:
    decimal_places: int
    rounding_method: RoundingMethod


@dataclass(frozen=True, slots=True)
class ProductVersion:
    starting_at: datetime
    name: str
    billable_metric_id: str | None = None  # USAGE
    composite_product_ids: tuple[str, ...] = ()  # COMPOSITE
    composite_tags: tuple[str, ...] = ()  # COMPOSITE
    quantity_conversion: QuantityConversion | None = None  # USAGE
    quantity_rounding: QuantityRounding | None = None  # USAGE
    pricing_group_key: tuple[str, ...] = ()  # USAGE
    presentation_group_key: tuple[str, ...] = ()  # USAGE
    tags: tuple[str, ...] = ()

    @property
    def group_keys(self) -> tuple[str, ...]:
        """The keys usage is split by: pricing keys first, then presentation keys."""
        return self.pricing_group_key + tuple(k for k in self.presentation_group_key if k not in self.pricing_group_key)

    def covers(self, product_id: str, tags: tuple[str, ...]) -> bool:
        """Whether this (composite) version prices a share of the spend on the given product."""
        return product_id in self.composite_product_ids or any(tag in self.composite_tags for tag in tags)


@dataclass(frozen=True, slots=True)
class Product:
    id: str
    type: ProductType
    versions: tuple[ProductVersion, ...]  # sorted by starting_at, at least one
    archived_at: datetime | None = None
    _starts: tuple[datetime, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_starts", tuple(v.starting_at for v in self.versions))

    def at(self, instant: datetime) -> ProductVersion:
        return self.versions[max(bisect_right(self._starts, instant) - 1, 0)]

    @property
    def version_boundaries(self) -> tuple[datetime, ...]:
        return self._starts[1:]

    def updated(self, version: ProductVersion) -> Product:
        """A copy with `version` taking effect at its starting_at (replacing one dated the same)."""
        kept = [v for v in self.versions if v.starting_at != version.starting_at]
        versions = tuple(sorted([*kept, version], key=lambda v: v.starting_at))
        return Product(self.id, self.type, versions, self.archived_at)


def convert_quantity(raw: Decimal, version: ProductVersion) -> Decimal:
    """Raw metric quantity → conversion → rounding: the quantity a line shows and is priced on."""
    quantity = raw
    conversion = version.quantity_conversion
    if conversion is not None:
        if conversion.operation is ConversionOperation.MULTIPLY:
            quantity = PRICING_CONTEXT.multiply(quantity, conversion.conversion_factor)
        else:
            quantity = PRICING_CONTEXT.divide(quantity, conversion.conversion_factor)
    rounding = version.quantity_rounding
    if rounding is not None:
        quantity = quantity.quantize(
            Decimal(1).scaleb(-rounding.decimal_places), rounding=rounding.rounding_method.decimal_mode, context=PRICING_CONTEXT
        )
    return quantity


def validate_product_version(product_type: ProductType, version: ProductVersion) -> None:
    """Field names are those of the create/update request body."""
    hour_aligned(version.starting_at, "starting_at")
    if not version.name or not version.name.strip():
        raise InvalidInput("name", "must be a non-empty string")
    if product_type is ProductType.USAGE and not version.billable_metric_id:
        raise InvalidInput("billable_metric_id", "is required for USAGE products")
    if product_type is not ProductType.USAGE:
        for name in ("billable_metric_id", "quantity_conversion", "quantity_rounding"):
            if getattr(version, name):
                raise InvalidInput(name, "is only valid for USAGE products")
        for name in ("pricing_group_key", "presentation_group_key"):
            if getattr(version, name):
                raise InvalidInput(name, "is only valid for USAGE products")
    if product_type is ProductType.COMPOSITE:
        if not version.composite_product_ids and not version.composite_tags:
            raise InvalidInput("composite_product_ids", "COMPOSITE products need composite_product_ids or composite_tags")
    elif version.composite_product_ids or version.composite_tags:
        raise InvalidInput("composite_product_ids", "is only valid for COMPOSITE products")
    conversion = version.quantity_conversion
    if conversion is not None:
        factor = as_decimal(conversion.conversion_factor, "quantity_conversion.conversion_factor")
        if factor <= 0:
            raise InvalidInput("quantity_conversion.conversion_factor", "must be greater than 0")
        if not isinstance(conversion.operation, ConversionOperation):
            raise InvalidInput("quantity_conversion.operation", "must be MULTIPLY or DIVIDE")
    rounding = version.quantity_rounding
    if rounding is not None:
        places = rounding.decimal_places
        if isinstance(places, bool) or not isinstance(places, int) or places < 0:
            raise InvalidInput("quantity_rounding.decimal_places", "must be a whole number, 0 or more")
        if not isinstance(rounding.rounding_method, RoundingMethod):
            raise InvalidInput("quantity_rounding.rounding_method", "must be ROUND_UP, ROUND_DOWN or ROUND_HALF_UP")
    for name in ("pricing_group_key", "presentation_group_key"):
        keys = getattr(version, name)
        if len(set(keys)) != len(keys):
            raise InvalidInput(name, "must not repeat a key")


def validate_product(product: Product) -> None:
    if not product.versions:
        raise InvalidInput("versions", "a product needs at least one version")
    for index, version in enumerate(product.versions):
        validate_product_version(product.type, version)
        if index and version.starting_at <= product.versions[index - 1].starting_at:
            raise InvalidInput("starting_at", "product versions must have distinct, increasing starting_at")
