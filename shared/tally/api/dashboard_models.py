"""POST /v1/dashboards/getEmbeddableUrl (metronome-sdk types/v1/dashboard_get_embeddable_url_params.py)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tally.api.models import Request
from tally.billing.dashboards import (
    DEFAULT_COLORS,
    DashboardView,
    GroupKeyOverride,
    checked_colors,
    checked_options,
)
from tally.billing.errors import InvalidInput
from tally.billing.limits import MAX_ID_LENGTH, MAX_NAME_LENGTH, MAX_PROPERTY_NAME_LENGTH, MAX_USAGE_GROUP_VALUES

ColorName = Literal[tuple(DEFAULT_COLORS)]  # type: ignore[valid-type]
OptionKey = Literal[
    "show_zero_usage_line_items",
    "contract_id",
    "invoice_type",
    "invoice_status_filter",
    "hide_voided_invoices",
    "billable_status_filter",
    "hide_grant_name",
    "credit_ledger_credit_type_id",
]


class ColorOverrideIn(Request):
    # Both optional in the SDK's type; an override without either overrides nothing, so each is required.
    name: ColorName | None = None
    value: str | None = Field(default=None, max_length=16)


class DashboardOptionIn(Request):
    key: OptionKey
    value: str = Field(max_length=MAX_ID_LENGTH)


class GroupKeyOverrideIn(Request):
    group_key_name: str = Field(min_length=1, max_length=MAX_PROPERTY_NAME_LENGTH)
    display_name: str | None = Field(default=None, min_length=1, max_length=MAX_NAME_LENGTH)
    value_display_names: dict[str, str] | None = Field(default=None, max_length=MAX_USAGE_GROUP_VALUES)


class DashboardUrlRequest(Request):
    customer_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH)
    dashboard: Literal["invoices", "usage", "credits", "commits_and_credits"]
    bm_group_key_overrides: list[GroupKeyOverrideIn] | None = Field(default=None, max_length=MAX_USAGE_GROUP_VALUES)
    color_overrides: list[ColorOverrideIn] | None = Field(default=None, max_length=len(DEFAULT_COLORS) * 2)
    dashboard_options: list[DashboardOptionIn] | None = Field(default=None, max_length=16)

    def to_view(self) -> DashboardView:
        """The view the URL will show: options and colors checked (a 400 naming the field)."""
        colors = []
        for index, override in enumerate(self.color_overrides or ()):
            if override.name is None:
                raise InvalidInput(f"color_overrides[{index}].name", "is required")
            if override.value is None:
                raise InvalidInput(f"color_overrides[{index}].value", "is required")
            colors.append((override.name, override.value))
        groups = []
        for index, override in enumerate(self.bm_group_key_overrides or ()):
            if any(o.group_key_name == override.group_key_name for o in groups):
                raise InvalidInput(f"bm_group_key_overrides[{index}].group_key_name", f"{override.group_key_name} is given twice")
            for value, name in (override.value_display_names or {}).items():
                if len(value) > MAX_NAME_LENGTH or not name or len(name) > MAX_NAME_LENGTH:
                    raise InvalidInput(
                        f"bm_group_key_overrides[{index}].value_display_names",
                        f"each value and display name must be 1 to {MAX_NAME_LENGTH} characters",
                    )
            groups.append(GroupKeyOverride(override.group_key_name, override.display_name, override.value_display_names or {}))
        return DashboardView(
            customer_id=self.customer_id,
            dashboard=self.dashboard,
            colors=checked_colors(colors),
            options=checked_options(self.dashboard, [(o.key, o.value) for o in self.dashboard_options or ()]),
            group_key_overrides=tuple(groups),
        )
