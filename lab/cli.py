"""The ``lab`` command: the root app only wires commands and sub-apps together."""

from __future__ import annotations

import typer

from . import __version__
from .commands import bundle, dashboards, ebpf_tools, guest, kernel, measure, reports, results, sim
from .costmodel import cli as costmodel_cli

__all__ = ["app", "main"]

app = typer.Typer(
    name="lab",
    help=(
        "ukva-lab: measure what highmem page tables (CONFIG_HIGHPTE) cost on a real 32-bit PAE "
        "Linux guest, and what UKVA saves.\n\n"
        "Exit codes: 0 ok, 1 runtime error, 2 usage error, 3 guest lost (panic, oops, hang), "
        "130 interrupted."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

app.command("up")(guest.up)
app.command("status")(guest.status)
app.command("exec", context_settings={"allow_interspersed_args": False})(guest.exec_cmd)
app.command("down")(guest.down)
app.add_typer(kernel.app, name="kernel", help="Build and list kernels (linux-source-6.1).")
app.add_typer(bundle.app, name="bundle", help="Share runs: export, verify, import, merge.")
app.command("trace")(measure.trace)
app.command("runs")(results.runs)
app.command("show")(results.show)
app.command("dashboard")(dashboards.dashboard)
app.command("report")(reports.report)
app.command("study")(measure.study)
app.command("profile")(measure.profile)
app.command("stacks")(ebpf_tools.stacks)
app.command("latency")(ebpf_tools.latency)
app.add_typer(sim.app, name="sim")
app.add_typer(costmodel_cli.app, name="cost-model",
              help="Machine models for the cost plugin's counts: list them with their sources.")


@app.callback(invoke_without_command=True)
def _root(
    version: bool = typer.Option(False, "--version", help="Print the lab's version and exit."),
) -> None:
    if version:
        typer.echo(__version__)
        raise typer.Exit()


def main() -> None:
    """Console-script entry point."""
    app()
