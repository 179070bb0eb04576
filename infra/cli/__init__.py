"""`tally`: run the local stack, manage API keys of a deployment, run the benchmarks.

One module per command group: local.py (`tally local ...`), keys.py (`tally keys ...`), quarantine.py
(`tally quarantine ...`), deliveries.py (`tally deliveries ...`), capacity.py (`tally capacity`), and the bench command here; tail.py is the SNS-topic follower behind
`tally local tail`. errors.py turns a user's mistake into one red line for every command of the app
(see TallyGroup); aws.py makes the sessions and reads the stack outputs of the commands that call AWS.
"""

from __future__ import annotations

import json
import os
from typing import Optional

import typer
from rich.console import Console

from infra.cli.capacity import capacity
from infra.cli.deliveries import deliveries_app
from infra.cli.errors import TallyGroup, UserError
from infra.cli.keys import keys_app
from infra.cli.local import local_app
from infra.cli.quarantine import quarantine_app
from infra.cli.close_index import close_index_app

app = typer.Typer(
    cls=TallyGroup,  # every command and group below runs inside errors.user_errors()
    help="Tally: usage-based billing on AWS serverless.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # a bug's traceback must not print API keys held in locals
)
app.add_typer(local_app, name="local")
app.add_typer(keys_app, name="keys")
app.add_typer(quarantine_app, name="quarantine")
app.add_typer(deliveries_app, name="deliveries")
app.command("capacity")(capacity)
app.add_typer(close_index_app, name="close-index")
console = Console()


@app.command("bench")
def bench(
    quick: bool = typer.Option(False, help="Smaller samples (CI smoke run)."),
    json_out: Optional[str] = typer.Option(None, "--json", help="Also write the figures to this JSON file."),
    part: str = typer.Option("all", help="all, offline (no local stack) or stack (the figures on the local stack)."),
) -> None:
    """Print the benchmark figures, each measured side by side with its baseline in one run."""
    from infra.bench.figures import PARTS

    if part not in PARTS:
        raise UserError(f"--part must be one of {', '.join(PARTS)}, not {part!r}")
    # Open the file first: a bad path should not cost a whole run.
    try:
        handle = open(json_out, "w") if json_out else None
    except OSError as exc:
        raise UserError(f"cannot write --json {json_out}: {exc.strerror}") from None
    from infra.bench.figures import run_all

    figures = run_all(quick=quick, console=console, part=part)
    if handle is not None:
        with handle:
            json.dump(figures, handle, indent=2)
    # The local stack's jsii and server threads are not worth a graceful shutdown here.
    os._exit(0)
