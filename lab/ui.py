"""Human-facing progress and messages, on stderr so that --json output on stdout stays clean."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

__all__ = ["err_console", "out_console", "step", "warn", "info"]

err_console = Console(stderr=True, highlight=False)
out_console = Console(highlight=False)


@contextmanager
def step(description: str) -> Iterator[None]:
    """Show a spinner with elapsed time while a long step runs, then a ✓ line with its duration."""
    t0 = time.monotonic()
    if not err_console.is_terminal:  # logs and CI: one line when done, no spinner frames
        yield
        err_console.print(f"✓ {description} ({time.monotonic() - t0:.1f} s)")
        return
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    ) as progress:
        progress.add_task(description, total=None)
        yield
    err_console.print(f"[green]✓[/] {description} [dim]({time.monotonic() - t0:.1f} s)[/]")


def warn(message: str) -> None:
    """A visible warning that does not stop the command."""
    err_console.print(f"[yellow]warning:[/] {message}")


def info(message: str) -> None:
    """A plain progress line."""
    err_console.print(message)
