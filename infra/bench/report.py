"""The rows and figures one `tally bench` run reports, and the figures other modules add."""

from __future__ import annotations

from dataclasses import dataclass, field

# Figures of their own modules, (label, "module:function"), run by figures.run_all in this order:
# OFFLINE as figure(report, quick) before the local stack starts; STACK as
# figure(report, quick, tally, stack) on it, after figure 2 (the stream pump stopped).
OFFLINE_FIGURES: list[tuple[str, str]] = [
    ("8 hot keys: counter writes per item at 10k events/s", "infra.bench.hot_keys:figure_hot_keys"),
    ("10 cost per million events (real handlers, in-process moto)", "infra.bench.cost:figure_cost"),
    ("11 cycle-close run reads: wake index vs every customer", "infra.bench.close:figure_close"),
    ("12 draft with commits and credits, month 1 and month 24", "infra.bench.invoice_history:figure_history"),
    ("13 metric create and its backfill job over stored events", "infra.bench.backfill:figure_backfill"),
]
STACK_FIGURES: list[tuple[str, str]] = [
    ("7 DynamoDB capacity per accepted event", "infra.bench.wru:figure_wru"),
]


@dataclass
class Row:
    figure: str
    measured: str
    baseline: str
    ratio: str
    goal: str
    verdict: str  # "met", "missed" or "" (no goal)


@dataclass
class Report:
    figures: dict[str, float] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def registered(name: str):
    """The figure function a registry entry names."""
    import importlib

    module, _, function = name.partition(":")
    return getattr(importlib.import_module(module), function)
