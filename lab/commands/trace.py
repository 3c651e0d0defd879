"""``lab trace``, ``lab runs``, ``lab show``, ``lab dashboard``: measure, list, read, draw."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from .. import ui
from ..config import list_configs, parse_config_list
from ..errors import LabError, UsageError
from ..guest.boot import BootOptions
from ..paths import dashboards_dir
from ..results import list_runs, open_run
from ..sizes import parse_mem_mib
from ..tracers import load_probe_set
from ..workloads import list_workloads, load_workload, parse_param_args
from .common import cli_errors, print_json

__all__ = ["register"]

#: Counters ``lab show`` puts first (per unit); the rest follow alphabetically.
HEADLINE = [
    "__kmap_local_pfn_prot",
    "__kmap_local_page_prot",
    "__pte_alloc",
    "___pte_free_tlb",
    "pgd_alloc",
    "pmd_alloc_ukva",
    "flush_tlb_mm_range",
    "flush_tlb_one_kernel",
    "tlb_flush",
    "switch_mm_irqs_off",
]


def _can_boot() -> str | None:
    """Why no guest can boot on this host, or None when one can."""
    from ..config import load_boot_defaults
    from ..hostcheck import require_gcc_m32, require_i386_arch, require_tool

    try:
        require_tool(load_boot_defaults().qemu, "qemu-system-x86")
        require_i386_arch()
        require_gcc_m32()
    except LabError as e:
        return str(e)
    return None


@cli_errors
def trace(
    workload: Annotated[
        str, typer.Option(help=f"Workload: {', '.join(list_workloads())}.")
    ] = "forkstorm",
    config: Annotated[
        str, typer.Option(help=f"Comma-separated configurations: {', '.join(list_configs())}.")
    ] = "highpte,lowpte",
    repeat: Annotated[int, typer.Option(help="Repeats per configuration (all in one boot).")] = 5,
    param: Annotated[
        list[str] | None, typer.Option(help="Workload parameter NAME=VALUE (repeatable).")
    ] = None,
    backend: Annotated[
        str, typer.Option(help="ftrace (real guest), sim (labelled model), auto.")
    ] = "auto",
    icount: Annotated[bool, typer.Option(help="Deterministic guest time (1 vCPU, TCG).")] = False,
    mem: Annotated[str, typer.Option(help="Guest RAM.")] = "8G",
    cpus: Annotated[int, typer.Option(help="vCPUs (1 with --icount).")] = 2,
    append: Annotated[
        list[str] | None, typer.Option(help="Extra kernel argument (repeatable).")
    ] = None,
    probes: Annotated[
        Path | None, typer.Option(help="Probe-set TOML (default: lab/tracers/probes.toml).")
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the run's summary as JSON.")
    ] = False,
) -> None:
    """Count kmaps, page-table pages and TLB flushes while a workload runs, per configuration."""
    from ..trace import TracePlan, choose_backend, run_trace

    if not 1 <= repeat <= 1000:
        raise UsageError(f"--repeat {repeat} out of range: 1 to 1000")
    spec = load_workload(workload)
    params = spec.resolve(parse_param_args(param or []))
    configs = parse_config_list(config)
    probe_set = load_probe_set(probes)
    boot = BootOptions(
        mem_mib=parse_mem_mib(mem), cpus=cpus, icount=icount, append=tuple(append or ())
    )
    chosen = choose_backend(backend, _can_boot)
    plan = TracePlan(configs, spec, params, repeat, chosen, probe_set, boot)
    run = run_trace(plan)
    if json_out:
        print_json(_show_data(run.run_id))
    else:
        _print_show(run.run_id)
        ui.out_console.print(f"run {run.run_id} recorded in {run.path}")


def _show_data(run_id: str) -> dict[str, Any]:
    from ..stats import summarize

    run = open_run(run_id)
    records = run.records()
    return {"run_id": run.run_id, "manifest": run.manifest(), "summary": summarize(records)}


def _fmt_cell(cell: dict[str, Any]) -> str:
    if "absent" in cell:
        return "absent"
    mean, lo, hi = cell.get("mean"), cell.get("lo"), cell.get("hi")
    if mean is None:
        return "-"
    if lo is None or hi is None or lo != lo or hi != hi:  # NaN bounds: a single repeat
        return f"{mean:,.1f}"
    return f"{mean:,.1f} ±{(hi - lo) / 2:,.1f}" + (" (noisy)" if cell.get("noisy") else "")


def _print_show(run_id: str) -> None:
    from rich.table import Table

    data = _show_data(run_id)
    m = data["manifest"]
    rows = data["summary"]
    sim = any(r["simulated"] for r in rows) or m.get("simulated")
    title = (
        f"{m.get('workload')} {m.get('params')} — per {m.get('unit')}, mean ±95% CI half-width "
        f"over repeats — {m.get('backend')}, {m.get('timing')}" + (" — SIMULATED" if sim else "")
    )
    table = Table(title=title, title_justify="left")
    table.add_column("counter")
    for r in rows:
        table.add_column(f"{r['config']} (n={r['n']})", justify="right")
    names = sorted(
        {n for r in rows for n in r["counters"]},
        key=lambda n: (HEADLINE.index(n) if n in HEADLINE else len(HEADLINE), n),
    )
    for name in names:
        table.add_row(name, *[_fmt_cell(r["counters"].get(name, {"absent": ""})) for r in rows])
    table.add_row(
        "guest µs",
        *[
            _fmt_cell(
                {
                    k: (v / 1000 if isinstance(v, float) else v)
                    for k, v in r["guest_ns_per_unit"].items()
                }
            )
            for r in rows
        ],
    )
    for key in ("PageTables", "LowFree"):
        table.add_row(f"Δ{key} kB (run)", *[_fmt_cell(r["meminfo_change_kb"][key]) for r in rows])
    ui.out_console.print(table)
    if m.get("status") != "complete":
        ui.warn(f"run status: {m.get('status')}")


@cli_errors
def runs(
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Recorded runs, newest first."""
    from rich.table import Column, Table

    items: list[dict[str, Any]] = []
    for run in list_runs():
        m = run.manifest()
        items.append(
            {
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
    run: Annotated[str, typer.Argument(help="Run id (or unique prefix, or path).")],
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Counts per configuration, per workload unit, with their spread across repeats."""
    if json_out:
        print_json(_show_data(run))
    else:
        _print_show(run)


@cli_errors
def dashboard(
    run_ids: Annotated[list[str], typer.Argument(help="One or more run ids.")],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="HTML file to write.")
    ] = None,
    baseline: Annotated[str | None, typer.Option(help="Configuration to compare against.")] = None,
) -> None:
    """Write one self-contained (offline) HTML dashboard comparing configurations."""
    from ..dashboard import render_dashboard

    found = [open_run(r) for r in run_ids]
    out = output or dashboards_dir() / f"{found[0].run_id}.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    path = render_dashboard(found, out, baseline=baseline)
    ui.out_console.print(f"dashboard written: {path}")


def register(app: typer.Typer) -> None:
    """Add these commands to the root app."""
    app.command("trace")(trace)
    app.command("runs")(runs)
    app.command("show")(show)
    app.command("dashboard")(dashboard)
