"""``lab runs`` and ``lab show``: what is recorded, and what one run measured."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from .. import ui
from ..report import SCHEMA_VERSION, jsonable
from ..results import list_runs
from .common import JsonOpt, cli_errors, print_json
from .show_render import print_show, show_data

__all__ = ["runs", "show"]


@cli_errors
def runs(
    json_out: JsonOpt = False,
) -> None:
    """Recorded runs, newest first."""
    # --json: a list, one object per run, each carrying the schema version
    # (docs/json-schema.md): a list stays a list for every reader written before the version.
    from rich.table import Column, Table

    items: list[dict[str, Any]] = []
    for run in list_runs():
        m = run.manifest()
        items.append(
            {
                "schema_version": SCHEMA_VERSION,
                "run_id": run.run_id,
                "workload": m.get("workload"),
                "configs": m.get("config_names"),
                "backend": m.get("backend"),
                "timing": m.get("timing"),
                "records": len(run.records()),
                "status": m.get("status"),
                "started_at": m.get("started_at"),
            }
        )
    if json_out:
        print_json(items)
        return
    table = Table(
        Column("run", no_wrap=True), "workload", "configs", "backend", "timing", "records", "status"
    )
    for it in items:
        table.add_row(
            it["run_id"],
            str(it["workload"]),
            ",".join(it["configs"] or []),
            str(it["backend"]),
            str(it["timing"]),
            str(it["records"]),
            str(it["status"]),
        )
    ui.out_console.print(table)


@cli_errors
def show(
    run: Annotated[str, typer.Argument(help="Run id (or unique prefix, path, or 'latest').")],
    gap: Annotated[str | None, typer.Option(help="BASELINE,FLOOR: also show the share of the baseline → floor gap (guest time, highmem kmaps) each other configuration recovers. Default: the study plan's 'gap'.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Counts per configuration, per workload unit, with their spread across repeats."""
    if json_out:
        print_json(jsonable(show_data(run, gap)))
    else:
        print_show(run, gap)
