"""A live line for a long wait, on stderr so that stdout stays what scripts parse."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

_stderr = Console(stderr=True)


@contextmanager
def long_step(description: str, console: Console | None = None) -> Iterator[None]:
    """Show a spinner, `description` and the elapsed time while the block runs; then one dim line with
    the duration. On a pipe nothing animates; only the final line is written. Default console: stderr."""
    console = console or _stderr
    began = time.perf_counter()
    if console.is_terminal:
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                      console=console, transient=True) as progress:
            progress.add_task(description, total=None)
            yield
    else:  # rich would still write a stray blank line to a pipe
        yield
    console.print(f"[dim]{description}: {time.perf_counter() - began:.1f} s[/dim]", soft_wrap=True)
