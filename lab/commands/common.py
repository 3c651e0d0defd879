"""What every command shares: error-to-exit-code mapping and JSON output."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer

from ..errors import EXIT_INTERRUPTED, LabError
from ..ui import err_console

__all__ = [
    "cli_errors",
    "print_json",
    "MemOpt",
    "CpusOpt",
    "IcountOpt",
    "AppendOpt",
    "JsonOpt",
]

# The boot options `lab up`, `lab trace` and `lab profile` share, spelled once.
MemOpt = Annotated[str, typer.Option(help="Guest RAM, e.g. 8G; above 4G is what makes HighMem.")]
CpusOpt = Annotated[int, typer.Option(help="vCPUs (forced to 1 with --icount).")]
IcountOpt = Annotated[
    bool, typer.Option(help="Deterministic guest time: -icount shift=0,sleep=off, 1 vCPU (TCG).")
]
AppendOpt = Annotated[list[str] | None, typer.Option(help="Extra kernel argument (repeatable).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]

F = TypeVar("F", bound=Callable[..., Any])


def cli_errors(fn: F) -> F:
    """Turn LabError into one ``error: ...`` line and its exit code; Ctrl-C into exit 130."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except LabError as e:
            err_console.print(f"[red]error:[/] {e}", soft_wrap=True)
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            err_console.print("[red]error:[/] interrupted")
            raise typer.Exit(EXIT_INTERRUPTED) from None

    return wrapper  # type: ignore[return-value]


def print_json(data: Any) -> None:
    """Machine output: stable keys, one document on stdout."""
    typer.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
