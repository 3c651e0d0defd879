"""``lab runs`` and ``lab show``: what is recorded, and what one run measured."""

from __future__ import annotations

import textwrap
from typing import Annotated, Any

import typer

from .. import ui
from ..report import SCHEMA_VERSION, jsonable
from ..results import list_runs
from .common import JsonOpt, cli_errors, print_json
from .costmodel_opts import cost_model_name
from .show_render import print_show, show_data

__all__ = ["runs", "show", "runs_lines"]


def runs_lines(items: list[dict[str, Any]], width: int) -> list[str]:
    """One line per run with its short columns, and its configurations on the line below,
    wrapped at ``width``: a run id is ~30 characters and a study names several
    configurations, so one row each would squeeze every column to two letters in 80."""
    id_w = max([len("run"), *(len(it["run_id"]) for it in items)])
    wl_w = max([len("workload"), *(len(str(it["workload"])) for it in items)])
    lines = [f"{'run':<{id_w}}  {'workload':<{wl_w}}  {'backend':<7}  {'timing':<8}  "
             f"{'n':>3}  status"]
    for it in items:
        lines.append(f"{it['run_id']:<{id_w}}  {it['workload']!s:<{wl_w}}  "
                     f"{it['backend']!s:<7}  {it['timing']!s:<8}  {it['records']:>3}  "
                     f"{it['status']}")
        configs = ", ".join(it["configs"] or []) or "-"
        lines += textwrap.wrap(configs, width=max(width, 40), initial_indent="  configs: ",
                               subsequent_indent=" " * 11, break_on_hyphens=False)
    return lines


@cli_errors
def runs(
    json_out: JsonOpt = False,
) -> None:
    """Recorded runs, newest first."""
    # --json: a list, one object per run, each carrying the schema version
    # (docs/json-schema.md): a list stays a list for every reader written before the version.
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
    for line in runs_lines(items, ui.out_console.width):
        ui.out_console.print(line, soft_wrap=True, markup=False, highlight=False)


@cli_errors
def show(
    run: Annotated[str, typer.Argument(help="Run id (or unique prefix, path, or 'latest').")],
    gap: Annotated[str | None, typer.Option(help="BASELINE,FLOOR: also show the share of the baseline → floor gap (guest time, highmem kmaps) each other configuration recovers. Default: the study plan's 'gap'.")] = None,
    cost_model: Annotated[str | None, typer.Option("--cost-model", help="Price the run's recorded cost-plugin counts with this machine model only (lab cost-model list); default: every model, when the run has counts.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Counts per configuration, per workload unit, with their spread across repeats; with
    cost-plugin counts, time in modelled cycles beside icount, and the gap in each clock."""
    cost_model = cost_model_name(cost_model)
    if json_out:
        print_json(jsonable(show_data(run, gap, cost_model)))
    else:
        print_show(run, gap, cost_model)
