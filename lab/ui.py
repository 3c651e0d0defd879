"""Human-facing progress and messages, on stderr so that --json output on stdout stays clean."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

__all__ = ["err_console", "out_console", "step", "overall", "Overall", "warn", "info"]

err_console = Console(stderr=True, highlight=False)
out_console = Console(highlight=False)


@contextmanager
def step(description: str) -> Iterator[None]:
    """Show a spinner with elapsed time while a long step runs, then a ✓ line with its duration."""
    t0 = time.monotonic()
    # Logs and CI get one line per step; under a study's progress bar (Rich allows one live
    # display at a time) the line prints above the bar.
    if _overall_active or not err_console.is_terminal:
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


_overall_active = False


class Overall:
    """Handle for the overall progress bar: ``advance(n)`` after each finished unit of work."""

    def __init__(self, progress: Progress | None, task: int | None) -> None:
        self._progress, self._task = progress, task

    def advance(self, n: int = 1) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, n)  # type: ignore[arg-type]


@contextmanager
def overall(total: int, description: str) -> Iterator[Overall]:
    """One progress bar with an ETA over a long multi-step job (a study); steps print above it."""
    global _overall_active
    if not err_console.is_terminal:
        yield Overall(None, None)
        return
    from rich.progress import BarColumn, MofNCompleteColumn, TimeRemainingColumn

    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=err_console,
    ) as progress:
        task = progress.add_task(description, total=total)
        _overall_active = True
        try:
            yield Overall(progress, task)
        finally:
            _overall_active = False


def warn(message: str) -> None:
    """A visible warning that does not stop the command."""
    err_console.print(f"[yellow]warning:[/] {message}")


def info(message: str) -> None:
    """A plain progress line."""
    err_console.print(message)
