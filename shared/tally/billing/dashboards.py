"""Embeddable dashboards (metronome-sdk types/v1/dashboard_get_embeddable_url_params.py): what one
signed dashboard URL shows, its options, and its colors.

Everything a page needs besides the customer's data travels inside the signed token (its
DashboardScope), so a URL can be neither widened (another customer, another dashboard) nor
restyled without the signing key."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Mapping

from tally.billing.errors import InvalidInput
from tally.billing.page_tokens import DashboardScope
from tally.rendering.html import AA_NORMAL_TEXT, contrast_ratio

DASHBOARDS = ("invoices", "usage", "credits", "commits_and_credits")
# How long a minted URL stays valid: an embedding app mints one per page view, so an hour is ample,
# and a leaked link is worthless soon after.
URL_LIFETIME = timedelta(hours=1)

# The palette's names are the SDK's ColorOverride names. Each default passes WCAG AA where it is
# drawn as text (tests/unit/test_dashboards.py measures them).
DEFAULT_COLORS: dict[str, str] = {
    "Gray_dark": "#111827",  # body text
    "Gray_medium": "#4b5563",  # captions, secondary text
    "Gray_light": "#d1d5db",  # borders, chart grid
    "Gray_extralight": "#f3f4f6",  # table headers, striped rows
    "White": "#ffffff",  # page background
    "Primary_medium": "#1d4ed8",  # headings
    "Primary_light": "#dbeafe",  # the chart's plot area
    **{f"UsageLine_{n}": color for n, color in enumerate(
        ("#2563eb", "#059669", "#d97706", "#7c3aed", "#db2777", "#0891b2", "#65a30d", "#dc2626", "#4f46e5", "#475569")
    )},
    "Primary_green": "#047857",  # finalized invoices, credits added
    "Primary_red": "#b91c1c",  # voided invoices, amounts drawn
    "Progress_bar": "#1d4ed8",  # a grant's remaining balance
    "Progress_bar_background": "#dbeafe",
    "Action": "#1d4ed8",  # links
    "Action_hover": "#1e3a8a",
}

# (text color, background it is drawn on): the pairs that must reach AA's 4.5:1 for normal text.
# The chart's lines and the progress bar carry no text (their figures are in the tables), so they
# are not measured.
TEXT_ON_BACKGROUND: tuple[tuple[str, str], ...] = (
    ("Gray_dark", "White"),
    ("Gray_dark", "Gray_extralight"),
    ("Gray_medium", "White"),
    ("Primary_medium", "White"),
    ("Primary_green", "White"),
    ("Primary_green", "Gray_extralight"),
    ("Primary_red", "White"),
    ("Primary_red", "Gray_extralight"),
    ("Action", "White"),
    ("Action", "Gray_extralight"),
    ("Action_hover", "White"),
    ("Action_hover", "Gray_extralight"),
)

_HEX = re.compile(r"#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})")

# Option key -> the values it takes (None: any id), and the dashboards it changes.
_TRUE_FALSE = ("true", "false")
OPTIONS: dict[str, tuple[tuple[str, ...] | None, tuple[str, ...]]] = {
    "show_zero_usage_line_items": (_TRUE_FALSE, ("invoices",)),
    "contract_id": (None, ("invoices",)),
    "invoice_type": (("USAGE", "SCHEDULED"), ("invoices",)),
    "invoice_status_filter": (("VOID", "FINALIZED", "DRAFT", "FINALIZED_AND_DRAFT", "ALL"), ("invoices",)),
    "hide_voided_invoices": (_TRUE_FALSE, ("invoices",)),
    # values as an invoice's billable_status reads
    "billable_status_filter": (("billable", "unbillable", "all"), ("invoices",)),
    "hide_grant_name": (_TRUE_FALSE, ("credits", "commits_and_credits")),
    "credit_ledger_credit_type_id": (None, ("credits", "commits_and_credits")),
}
_STATUSES = {
    "VOID": ("VOID",),
    "FINALIZED": ("FINALIZED",),
    "DRAFT": ("DRAFT",),
    "FINALIZED_AND_DRAFT": ("FINALIZED", "DRAFT"),
    "ALL": ("DRAFT", "FINALIZED", "VOID"),
}


def normal_hex(value: str, field_name: str) -> str:
    """`#RRGGBB` in lower case, from `#RGB`, `#RRGGBB` or either without `#`."""
    match = _HEX.fullmatch(value)
    if match is None:
        raise InvalidInput(field_name, "must be a hex color such as #1d4ed8 or #fff")
    digits = match.group(1).lower()
    if len(digits) == 3:
        digits = "".join(c * 2 for c in digits)
    return f"#{digits}"


@dataclass(frozen=True, slots=True)
class GroupKeyOverride:
    group_key_name: str
    display_name: str | None = None
    value_display_names: Mapping[str, str] = field(default_factory=dict)

    def value_name(self, value: str | None) -> str:
        if value is None:
            return "(none)"
        return self.value_display_names.get(value, value)


@dataclass(frozen=True, slots=True)
class DashboardView:
    """One dashboard of one customer, as a URL was minted for it."""

    customer_id: str
    dashboard: str
    colors: Mapping[str, str] = field(default_factory=dict)  # overrides only
    options: Mapping[str, str] = field(default_factory=dict)
    group_key_overrides: tuple[GroupKeyOverride, ...] = ()

    @property
    def palette(self) -> dict[str, str]:
        return DEFAULT_COLORS | dict(self.colors)

    def option(self, key: str, default: str | None = None) -> str | None:
        return self.options.get(key, default)

    def flag(self, key: str) -> bool:
        return self.options.get(key) == "true"

    @property
    def invoice_statuses(self) -> tuple[str, ...]:
        """The statuses the invoices dashboard lists (invoice_status_filter, then hide_voided_invoices)."""
        statuses = _STATUSES[self.options.get("invoice_status_filter", "ALL")]
        if self.flag("hide_voided_invoices"):
            statuses = tuple(s for s in statuses if s != "VOID")
        return statuses

    @property
    def grant_kinds(self) -> tuple[str, ...]:
        """`credits` lists credits; `commits_and_credits` both (Metronome's document types)."""
        return ("CREDIT",) if self.dashboard == "credits" else ("PREPAID", "POSTPAID", "CREDIT")

    def override_of(self, group_key: str) -> GroupKeyOverride | None:
        return next((o for o in self.group_key_overrides if o.group_key_name == group_key), None)

    # -- the token's scope ------------------------------------------------------------------------
    def scope(self) -> DashboardScope:
        """What the signed URL is scoped to besides the customer: the dashboard and its whole view."""
        return DashboardScope(
            self.dashboard,
            tuple(self.options.items()),
            tuple(self.colors.items()),
            tuple(
                (o.group_key_name, o.display_name or "", tuple(o.value_display_names.items()))
                for o in self.group_key_overrides
            ),
        )

    @classmethod
    def of(cls, customer_id: str, scope: DashboardScope) -> DashboardView:
        """The view a verified token carries (its signature proved that we minted it so)."""
        return cls(
            customer_id=customer_id,
            dashboard=scope.dashboard,
            colors=dict(scope.color_overrides),
            options=dict(scope.options),
            group_key_overrides=tuple(
                GroupKeyOverride(name, display or None, dict(values)) for name, display, values in scope.group_keys
            ),
        )


def checked_options(dashboard: str, options: list[tuple[str, str]]) -> dict[str, str]:
    """`dashboard_options` as a mapping, each value one its key documents, each key once and only on
    a dashboard it changes (a silently ignored option would hide the embedder's mistake)."""
    result: dict[str, str] = {}
    for index, (key, value) in enumerate(options):
        allowed, dashboards = OPTIONS[key]
        if key in result:
            raise InvalidInput(f"dashboard_options[{index}].key", f"{key} is given twice")
        if dashboard not in dashboards:
            raise InvalidInput(f"dashboard_options[{index}].key", f"{key} applies to the {' and '.join(dashboards)} dashboard only")
        if allowed is not None and value not in allowed:
            raise InvalidInput(f"dashboard_options[{index}].value", f"{key} must be one of {', '.join(allowed)}")
        if allowed is None and not value:
            raise InvalidInput(f"dashboard_options[{index}].value", f"{key} must be an id")
        result[key] = value
    if result.get("hide_voided_invoices") == "true" and result.get("invoice_status_filter") == "VOID":
        index = next(i for i, (k, _) in enumerate(options) if k == "hide_voided_invoices")
        raise InvalidInput(f"dashboard_options[{index}].value", "hides the only status invoice_status_filter VOID lists")
    return result


def checked_colors(overrides: list[tuple[str, str]]) -> dict[str, str]:
    """`color_overrides` as a mapping of normalized hex colors. An override that would leave text
    below WCAG AA's 4.5:1 against a background it is drawn on is refused (a 400 naming the override
    and the pair), so that no embedded page is ever unreadable; the embedder picks another shade."""
    result: dict[str, str] = {}
    index_of: dict[str, int] = {}
    for index, (name, value) in enumerate(overrides):
        if name in result:
            raise InvalidInput(f"color_overrides[{index}].name", f"{name} is given twice")
        result[name] = normal_hex(value, f"color_overrides[{index}].value")
        index_of[name] = index
    palette = DEFAULT_COLORS | result
    for text, background in TEXT_ON_BACKGROUND:
        if text not in result and background not in result:
            continue
        ratio = contrast_ratio(palette[text], palette[background])
        if ratio < AA_NORMAL_TEXT:
            at_fault = text if text in result else background
            raise InvalidInput(
                f"color_overrides[{index_of[at_fault]}].value",
                f"{text} {palette[text]} on {background} {palette[background]} has a contrast of {ratio:.2f}:1; "
                f"text needs at least {AA_NORMAL_TEXT}:1 (WCAG AA)",
            )
    return result
