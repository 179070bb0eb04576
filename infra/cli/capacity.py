"""`tally capacity`: the capacity plan for 1k, 10k and 100k events/s and the cost per million events,
from measured per-event units.

The units come from the last measurement saved to .build/bench/units.json (`tally bench` saves one);
without one, or with --measure, a short measurement runs first (the real ingest, aggregate and alerts handlers on
an in-process moto, a few seconds) and is saved the same way. --units reads another saved file, such
as infra/bench/readme_units.json, the run the README quotes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from infra.cli.errors import USAGE, UserError

console = Console()
MIN_WIDTH = 140


def capacity(
    measure: bool = typer.Option(False, "--measure", help="Measure the units now instead of reading the last bench's."),
    units_file: Optional[Path] = typer.Option(None, "--units", help="Read the units from this saved JSON file."),
    markdown: bool = typer.Option(False, "--markdown", help="Print the README's tables as Markdown."),
) -> None:
    """Print the capacity plan and the cost per million events (on-demand and provisioned tables), from measured per-event units."""
    from infra.bench import plan
    from infra.bench import prices
    from infra.bench.cost import COST_GOAL_USD, MODE_NAMES, MODES, breakdown_rows, cost_per_million, total
    from infra.bench.units import UNITS_FILE, Units, measure_units

    if units_file is not None and measure:
        raise UserError("--measure and --units exclude each other: measure now, or read a saved file", USAGE)
    if units_file is not None:
        try:
            units = Units.from_json(units_file.read_text())
        except OSError as exc:
            raise UserError(f"cannot read --units {units_file}: {exc.strerror}") from None
        except (ValueError, TypeError) as exc:
            raise UserError(f"--units {units_file} is not a units file saved by tally bench ({exc})") from None
        source = str(units_file)
    elif not measure and (saved := _saved(UNITS_FILE)) is not None:
        units = saved
        source = f"{UNITS_FILE} (measured {units.measured_at}{', quick' if units.quick else ''})"
    else:
        if not markdown:
            console.print("[dim]measuring the per-event units (real handlers, in-process moto)...[/dim]")
        units = measure_units(quick=True)
        units.save()
        source = f"a measurement just now, saved to {UNITS_FILE}"
    if markdown:
        print(plan.markdown(units))
        return

    out = console
    if out.width < MIN_WIDTH:  # piped output defaults to 80 columns: too narrow for the tables
        out = Console(file=console.file, width=MIN_WIDTH, color_system=console.color_system,
                      force_terminal=console.is_terminal)
    out.print(f"[dim]units from {source}[/dim]")
    measured = Table(title=f"Measured units ({units.events:,} events, {units.events_per_post}-event posts)")
    for column in plan.UNITS_HEADER:
        measured.add_column(column, justify="left" if column == "path" else "right")
    for row in plan.units_rows(units):
        measured.add_row(*row)
    out.print(measured)

    header, rows = plan.plan_rows(units)
    table = Table(title="Capacity plan (default quotas, us-east-1)")
    table.add_column("", style="bold")
    for column in header[1:]:
        table.add_column(column, justify="right", style="cyan")
    for row in rows:
        table.add_row(*row)
    out.print(table)

    for mode in MODES:
        lines = cost_per_million(units, mode)
        whole = total(lines)
        verdict = "goal met" if whole <= COST_GOAL_USD else "goal missed"
        cost = Table(title=f"Cost per million events, {MODE_NAMES[mode]} (us-east-1 list prices of "
                           f"{prices.TAKEN_ON}): ≤ ${COST_GOAL_USD} {verdict}")
        for column, justify in (("service", "left"), ("item", "left"), ("per million events", "right"),
                                ("cost", "right"), ("share", "right")):
            cost.add_column(column, justify=justify)
        for row in breakdown_rows(lines):
            cost.add_row(*row, style="bold" if row[0] == "Total" else None)
        out.print(cost)
    unconfirmed = [name for name, price in prices.PRICES.items() if price.confirmed.startswith("NOT CONFIRMED")]
    out.print(f"[dim]Prices and quotas with their sources: infra/bench/prices.py. Not confirmed: "
                  f"{', '.join(unconfirmed) or 'none'}; {plan.PARTITION_SIZE_SOURCE}.[/dim]")


def _saved(path: Path):
    """The units saved at `path`, or None when there are none readable (a run of an older layout)."""
    from infra.bench.units import Units

    try:
        return Units.from_json(path.read_text())
    except (OSError, ValueError, TypeError):
        return None
