"""Embeddable dashboards, the pure parts: options and colors as the SDK documents them, the view
carried whole in the signed token, and the inline SVG chart."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from tally.api.dashboard_models import DashboardUrlRequest
from tally.billing.dashboards import DEFAULT_COLORS, TEXT_ON_BACKGROUND, DashboardView, checked_colors, checked_options
from tally.billing.errors import InvalidInput
from tally.billing.page_tokens import KeyRing, PageKind, SigningKey, mint, verify
from tally.rendering.html import AA_NORMAL_TEXT, contrast_ratio
from tally.rendering.usage_chart import Day, daily_usage_svg

NOW = datetime(2026, 12, 6, 12, tzinfo=timezone.utc)


def refusal(call) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        call()
    return caught.value


@pytest.mark.parametrize("text, background", TEXT_ON_BACKGROUND)
def test_every_default_text_color_passes_wcag_aa_on_each_background_it_is_drawn_on(text, background):
    assert contrast_ratio(DEFAULT_COLORS[text], DEFAULT_COLORS[background]) >= AA_NORMAL_TEXT


def test_color_overrides_are_normalized_hex_and_a_bad_one_names_its_field():
    assert checked_colors([("UsageLine_0", "#ABC"), ("Action", "0b3d91")]) == {"UsageLine_0": "#aabbcc", "Action": "#0b3d91"}
    error = refusal(lambda: checked_colors([("Action", "#0b3d91"), ("Primary_light", "blue")]))
    assert error.field == "color_overrides[1].value" and "hex color" in error.message


@pytest.mark.parametrize("overrides, field, pair", [
    ([("Action", "#7fb2ff")], "color_overrides[0].value", "Action #7fb2ff on White #ffffff"),
    # a dark background makes the default body text unreadable: the background is at fault
    ([("UsageLine_1", "#00ff00"), ("White", "#222222")], "color_overrides[1].value", "Gray_dark #111827 on White #222222"),
    ([("Gray_extralight", "#2a2a2a")], "color_overrides[0].value", "Gray_dark #111827 on Gray_extralight #2a2a2a"),
], ids=["light link on white", "dark page under dark text", "dark table header under dark text"])
def test_an_override_that_breaks_aa_contrast_on_text_is_refused_naming_it_and_the_pair(overrides, field, pair):
    error = refusal(lambda: checked_colors(overrides))
    assert error.field == field and pair in error.message and "4.5:1" in error.message


def test_a_dark_theme_whose_pairs_all_pass_is_accepted():
    dark = [("White", "#111827"), ("Gray_extralight", "#1f2937"), ("Gray_dark", "#f9fafb"), ("Gray_medium", "#d1d5db"),
            ("Primary_medium", "#93c5fd"), ("Primary_green", "#6ee7b7"), ("Primary_red", "#fca5a5"),
            ("Action", "#93c5fd"), ("Action_hover", "#bfdbfe")]
    assert checked_colors(dark)["White"] == "#111827"


@pytest.mark.parametrize("dashboard, options, field, rule", [
    ("invoices", [("invoice_type", "usage")], "dashboard_options[0].value", "USAGE, SCHEDULED"),
    ("invoices", [("invoice_status_filter", "PAID")], "dashboard_options[0].value", "VOID, FINALIZED, DRAFT"),
    ("invoices", [("hide_voided_invoices", "yes")], "dashboard_options[0].value", "true, false"),
    ("invoices", [("show_zero_usage_line_items", "true"), ("show_zero_usage_line_items", "false")],
     "dashboard_options[1].key", "given twice"),
    ("usage", [("invoice_type", "USAGE")], "dashboard_options[0].key", "invoices dashboard only"),
    ("invoices", [("hide_grant_name", "true")], "dashboard_options[0].key", "credits and commits_and_credits"),
    ("invoices", [("invoice_status_filter", "VOID"), ("hide_voided_invoices", "true")], "dashboard_options[1].value", "VOID"),
])
def test_a_dashboard_option_outside_its_documented_values_is_a_400_naming_the_field(dashboard, options, field, rule):
    error = refusal(lambda: checked_options(dashboard, options))
    assert error.field == field and rule in error.message


def test_invoice_status_filter_and_hide_voided_invoices_choose_the_statuses_listed():
    def statuses(*options):
        return DashboardView("c", "invoices", options=checked_options("invoices", list(options))).invoice_statuses

    assert statuses() == ("DRAFT", "FINALIZED", "VOID")
    assert statuses(("invoice_status_filter", "FINALIZED_AND_DRAFT")) == ("FINALIZED", "DRAFT")
    assert statuses(("hide_voided_invoices", "true")) == ("DRAFT", "FINALIZED")
    assert statuses(("invoice_status_filter", "VOID")) == ("VOID",)


def test_the_request_model_requires_a_color_name_and_value_and_parses_the_sdk_shape():
    body = {"customer_id": "c-1", "dashboard": "usage", "color_overrides": [{"value": "#123456"}]}
    assert refusal(lambda: DashboardUrlRequest.model_validate(body).to_view()).field == "color_overrides[0].name"
    view = DashboardUrlRequest.model_validate({
        "customer_id": "c-1", "dashboard": "usage",
        "color_overrides": [{"name": "UsageLine_0", "value": "#0F766E"}],
        "bm_group_key_overrides": [{"group_key_name": "region", "display_name": "Region",
                                    "value_display_names": {"eu": "Europe"}}],
    }).to_view()
    assert view.colors == {"UsageLine_0": "#0f766e"}
    assert view.override_of("region").value_name("eu") == "Europe" and view.override_of("region").value_name("us") == "us"


def test_the_whole_view_rides_in_the_signed_token_and_comes_back_equal():
    keys = KeyRing(SigningKey.from_secret("k" * 64))
    view = DashboardUrlRequest.model_validate({
        "customer_id": "c-1", "dashboard": "invoices",
        "color_overrides": [{"name": "Action", "value": "#0b3d91"}],
        "dashboard_options": [{"key": "invoice_type", "value": "USAGE"}, {"key": "hide_voided_invoices", "value": "true"}],
        "bm_group_key_overrides": [{"group_key_name": "region", "value_display_names": {"eu": "Europe"}}],
    }).to_view()
    token = mint(keys, PageKind.DASHBOARD, view.customer_id, view.scope(), NOW, timedelta(hours=1))
    claims = verify(keys, token, NOW + timedelta(minutes=59), PageKind.DASHBOARD)
    assert DashboardView.of(claims.customer_id, claims.scope) == view


def test_the_chart_is_script_free_svg_with_one_bar_per_day_of_usage_and_a_text_summary():
    days = [Day(NOW + timedelta(days=n), value) for n, value in
            enumerate([Decimal(3), Decimal(0), Decimal("7.5"), None, None])]
    svg = daily_usage_svg("chart-1", "Daily calls <&>", days, "#2563eb", "#d1d5db", "#111827", "#dbeafe")
    assert "<script" not in svg and not re.search(r"\son\w+=", svg)
    assert svg.count('fill="#2563eb"') == 2  # 3 and 7.5; a zero day and the days to come draw none
    assert "Daily calls &lt;&amp;&gt;" in svg
    assert "3 of 5 days so far, 10.5 in total, at most 10 a day" in svg  # the axis tops at a round 10
