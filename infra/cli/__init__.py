"""`tally`: run the local stack, manage API keys of a deployment, run the benchmarks.

One module per command group: local.py (`tally local ...`), keys.py (`tally keys ...`), quarantine.py
(`tally quarantine ...`), and the
bench command here; tail.py is the SNS-topic follower behind `tally local tail`.
"""

from __future__ import annotations

import json
import os
from typing import Optional

import typer
from rich.console import Console

from infra.cli.keys import keys_app
from infra.cli.local import local_app
from infra.cli.quarantine import quarantine_app

app = typer.Typer(help="Tally: usage-based billing on AWS serverless.", no_args_is_help=True)
app.add_typer(local_app, name="local")
app.add_typer(keys_app, name="keys")
app.add_typer(quarantine_app, name="quarantine")
console = Console()


@app.command("bench")
def bench(
    quick: bool = typer.Option(False, help="Smaller samples (CI smoke run)."),
    json_out: Optional[str] = typer.Option(None, "--json", help="Also write the figures to this JSON file."),
) -> None:
    """Print the benchmark figures, each measured side by side with its baseline in one run."""
    from infra.bench.figures import run_all

    figures = run_all(quick=quick, console=console)
    if json_out:
        with open(json_out, "w") as handle:
            json.dump(figures, handle, indent=2)
    # The local stack's jsii and server threads are not worth a graceful shutdown here.
    os._exit(0)
