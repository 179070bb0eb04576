"""A daily usage chart as inline SVG: no script, no external resource, so it renders under a CSP that
allows neither. Bars, one a day, scaled to the period's largest day; the page's table beside it
carries the same figures for screen readers (the SVG is an image with a title and a summary)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from html import escape

WIDTH, HEIGHT = 720, 220
_LEFT, _RIGHT, _TOP, _BOTTOM = 56, 12, 12, 28  # room for the axis labels


@dataclass(frozen=True, slots=True)
class Day:
    starting_at: datetime
    value: Decimal | None  # None: the day has not begun (drawn as no bar)


def _nice_ceiling(value: Decimal) -> Decimal:
    """The smallest 1, 2 or 5 times a power of ten at or above `value` (an axis's top)."""
    if value <= 0:
        return Decimal(1)
    exponent = value.adjusted()
    for step in (1, 2, 5, 10):
        top = Decimal(step).scaleb(exponent)
        if top >= value:
            return top
    return Decimal(10).scaleb(exponent)  # pragma: no cover - 10 always fits


def _label(value: Decimal) -> str:
    return f"{value.normalize():,f}" if value == value.to_integral_value() else f"{value:,}"


def daily_usage_svg(chart_id: str, title: str, days: list[Day], bar_color: str, grid_color: str,
                    text_color: str, plot_color: str) -> str:
    """The chart of `days` (oldest first). `chart_id` makes the title's id unique on the page."""
    top = _nice_ceiling(max((d.value for d in days if d.value is not None), default=Decimal(0)))
    plot_w, plot_h = WIDTH - _LEFT - _RIGHT, HEIGHT - _TOP - _BOTTOM
    slot = plot_w / max(len(days), 1)
    total = sum((d.value for d in days if d.value is not None), Decimal(0))
    seen = [d for d in days if d.value is not None]
    summary = (f"{len(seen)} of {len(days)} days so far, {_label(total)} in total, at most {_label(top)} a day"
               if seen else f"no usage yet in {len(days)} days")
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" role="img" '
        f'aria-labelledby="{chart_id}-title {chart_id}-desc" class="chart">',
        f'<title id="{chart_id}-title">{escape(title)}</title>',
        f'<desc id="{chart_id}-desc">{escape(summary)}</desc>',
        f'<rect x="{_LEFT}" y="{_TOP}" width="{plot_w}" height="{plot_h}" fill="{plot_color}"/>',
    ]
    # Pixel geometry only: every figure a reader sees is written from the Decimals by _label.
    for fraction in (Decimal(0), Decimal("0.5"), Decimal(1)):
        y = _TOP + plot_h - float(fraction) * plot_h
        parts.append(f'<line x1="{_LEFT}" y1="{y:.1f}" x2="{WIDTH - _RIGHT}" y2="{y:.1f}" stroke="{grid_color}"/>')
        parts.append(f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" fill="{text_color}">'
                     f'{escape(_label(top * fraction))}</text>')
    for index, day in enumerate(days):
        x = _LEFT + index * slot
        if day.value is not None and day.value > 0:
            h = float(day.value / top) * plot_h
            parts.append(
                f'<rect x="{x + slot * 0.15:.1f}" y="{_TOP + plot_h - h:.1f}" width="{slot * 0.7:.1f}" '
                f'height="{h:.1f}" fill="{bar_color}"><title>{escape(day.starting_at.strftime("%b %-d"))}: '
                f'{escape(_label(day.value))}</title></rect>'
            )
    label_every = max(1, len(days) // 8)
    for index in range(0, len(days), label_every):
        x = _LEFT + (index + 0.5) * slot
        parts.append(f'<text x="{x:.1f}" y="{HEIGHT - 8}" text-anchor="middle" font-size="11" fill="{text_color}">'
                     f'{escape(days[index].starting_at.strftime("%b %-d"))}</text>')
    parts.append("</svg>")
    return "".join(parts)
