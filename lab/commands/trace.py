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
from .common import AppendOpt, CpusOpt, IcountOpt, JsonOpt, MemOpt, cli_errors, print_json

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


# cost model (issue 12)
CostModelOpt = Annotated[
    str | None,
    typer.Option("--cost-model", help="Machine model (lab cost-model list): count with the TCG "
                 "cost plugin and show modelled cycles; implies --icount."),
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
    icount: IcountOpt = False,
    mem: MemOpt = "8G",
    cpus: CpusOpt = 2,
    append: AppendOpt = None,
    probes: Annotated[
        Path | None, typer.Option(help="Probe-set TOML (default: lab/tracers/probes.toml).")
    ] = None,
    cost_model: CostModelOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Count kmaps, page-table pages and TLB flushes while a workload runs, per configuration."""
    from ..trace import Cell, Matrix, choose_backend, run_trace

    if not 1 <= repeat <= 1000:
        raise UsageError(f"--repeat {repeat} out of range: 1 to 1000")
    spec = load_workload(workload)
    params = spec.resolve(parse_param_args(param or []))
    configs = parse_config_list(config)
    probe_set = load_probe_set(probes)
    boot = BootOptions(
        mem_mib=parse_mem_mib(mem), cpus=cpus, icount=icount or cost_model is not None,
        append=tuple(append or ()), cost_model=_cost_model_name(cost_model),
    )
    chosen = choose_backend(backend, _can_boot)
    if cost_model and chosen != "ftrace":  # cost model (issue 12): needs the real guest
        raise UsageError(f"--cost-model needs the ftrace backend (a real guest), not {chosen}")
    plan = Matrix(configs, [Cell(spec, params, repeat)], chosen, probe_set, boot)
    run = run_trace(plan)
    if json_out:
        print_json(_with_costmodel(_show_data(run.run_id), run.run_id, cost_model))
    else:
        _print_show(run.run_id)
        _print_costmodel(run.run_id, cost_model)
        ui.out_console.print(f"run {run.run_id} recorded in {run.path}")


# ---- cost model (issue 12): kept apart from the report code, which is being refactored ----
def _cost_model_name(name: str | None) -> str | None:
    """Validate --cost-model before anything boots (exit 2 on an unknown model)."""
    if name is None:
        return None
    from ..costmodel import load_model

    return load_model(name).name


def _with_costmodel(data: dict[str, Any], run_id: str, model: str | None) -> dict[str, Any]:
    if model:
        from ..costmodel.show import costmodel_data

        data["costmodel"] = costmodel_data(open_run(run_id).records(), model)
    return data


def _print_costmodel(run_id: str, model: str | None) -> None:
    if model:
        from ..costmodel.show import print_costmodel

        print_costmodel(open_run(run_id).records(), model)


def _gap_of(manifest: dict[str, Any], gap: str | None) -> tuple[str, str] | None:
    """--gap A,B, else the study plan's gap, else none."""
    if gap is None:
        g = manifest.get("gap")
        return (str(g[0]), str(g[1])) if isinstance(g, list) and len(g) == 2 else None
    names = [n.strip() for n in gap.split(",") if n.strip()]
    if len(names) != 2 or names[0] == names[1]:
        raise UsageError(f"--gap needs two different configurations BASELINE,FLOOR, got {gap!r}")
    known = set(manifest.get("config_names") or [])
    if known and not set(names) <= known:
        raise UsageError(f"--gap {gap}: the run has configurations {', '.join(sorted(known))}")
    return names[0], names[1]


def _show_data(run_id: str, gap: str | None = None) -> dict[str, Any]:
    from ..compare import gap_table, taskpile_slopes
    from ..stats import summarize

    run = open_run(run_id)
    records = run.records()
    manifest = run.manifest()
    data: dict[str, Any] = {"run_id": run.run_id, "manifest": manifest,
                            "summary": summarize(records)}
    pair = _gap_of(manifest, gap)
    if pair:
        data["gap"] = {"baseline": pair[0], "floor": pair[1],
                       "rows": gap_table(records, *pair)}
    slopes = taskpile_slopes(records)
    if slopes:
        data["taskpile_slopes"] = slopes
    return data


def _fmt_cell(cell: dict[str, Any]) -> str:
    if "absent" in cell:
        return "absent"
    mean, lo, hi = cell.get("mean"), cell.get("lo"), cell.get("hi")
    if mean is None:
        return "-"
    if lo is None or hi is None or lo != lo or hi != hi:  # NaN bounds: a single repeat
        return f"{mean:,.1f}"
    return f"{mean:,.1f} ±{(hi - lo) / 2:,.1f}" + (" (noisy)" if cell.get("noisy") else "")


def _comparisons(rows: list[dict[str, Any]], records: list[dict[str, Any]]) -> list[str]:
    """Relative difference of each config against the first, with Welch's p, per headline."""
    from ..stats import guest_ns_per_unit, per_unit, welch

    if len(rows) < 2:
        return []
    base = rows[0]["config"]
    lines = []

    def recs(cfg: str) -> list[dict[str, Any]]:
        return [r for r in records if r["config"] == cfg and r["workload"] == rows[0]["workload"]
                and r["params"] == rows[0]["params"]]

    for row in rows[1:]:
        parts = []
        for label, get in (("highmem kmaps", lambda rs: per_unit(rs, "__kmap_local_pfn_prot")),
                           ("guest time", guest_ns_per_unit)):
            a, b = get(recs(base)), get(recs(row["config"]))
            if a is None or b is None or len(a) < 2 or len(b) < 2:
                continue
            rel, p = welch(a, b)
            parts.append(f"{label} {rel:+.1%} (Welch p={p:.2g})")
        if parts:
            lines.append(f"{row['config']} vs {base}: " + ", ".join(parts))
    return lines


def _fmt_share(f: dict[str, Any]) -> str:
    if f["mean"] != f["mean"]:  # NaN: no gap to recover
        return "no gap"
    ci = f" [{f['lo']:.0%}, {f['hi']:.0%}]" if f["lo"] == f["lo"] else ""
    return f"{f['mean']:.0%}{ci}"


def _print_derived(data: dict[str, Any]) -> None:
    """The gap-recovered table and the taskpile slopes, when the run has them."""
    from rich.table import Table

    if data.get("gap", {}).get("rows"):
        g = data["gap"]
        table = Table(title=f"share of the {g['baseline']} → {g['floor']} gap recovered "
                            "(mean [95% bootstrap CI]; per unit: baseline / floor / candidate)",
                      title_justify="left")
        for col in ("workload", "config", "guest µs", "recovered", "highmem kmaps", "removed"):
            table.add_column(col, justify="left" if col in ("workload", "config") else "right")
        for r in g["rows"]:
            t, k = r["figures"].get("guest time"), r["figures"].get("highmem kmaps")
            table.add_row(
                f"{r['workload']} (per {r['unit']})", r["config"],
                f"{t['base'] / 1e3:,.2f} / {t['floor'] / 1e3:,.2f} / {t['candidate'] / 1e3:,.2f}"
                if t else "-", _fmt_share(t) if t else "-",
                f"{k['base']:,.2f} / {k['floor']:,.2f} / {k['candidate']:,.2f}" if k else "-",
                _fmt_share(k) if k else "-")
        ui.out_console.print(table)
    slopes = data.get("taskpile_slopes")
    if slopes:
        table = Table(title="taskpile: 4 kB pages per task alive (least-squares slope over all "
                            "samples, 95% CI)", title_justify="left")
        for col in ("config", "lowmem", "PageTables", "samples", "most tasks"):
            table.add_column(col, justify="left" if col == "config" else "right")
        for cfg, s in slopes.items():
            cells = [f"{s[k]['mean']:.2f} [{s[k]['lo']:.2f}, {s[k]['hi']:.2f}]"
                     if s[k]["mean"] == s[k]["mean"] else "-"
                     for k in ("lowmem_pages_per_task", "pagetables_pages_per_task")]
            table.add_row(cfg, *cells, str(s["samples"]), str(s["max_tasks"]))
        ui.out_console.print(table)


def _print_show(run_id: str, gap: str | None = None) -> None:
    from rich.table import Table

    data = _show_data(run_id, gap)
    m = data["manifest"]
    records = open_run(run_id).records()
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in data["summary"]:
        groups.setdefault(f"{r['workload']} {r['params']}", []).append(r)
    for label, rows in groups.items():
        sim = any(r["simulated"] for r in rows)
        title = (f"{label} — per {rows[0]['unit']}, mean ±95% CI half-width over repeats — "
                 f"{m.get('backend')}, {m.get('timing')}" + (" — SIMULATED" if sim else ""))
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
        table.add_row("guest µs", *[
            _fmt_cell({k: (v / 1000 if isinstance(v, float) else v)
                       for k, v in r["guest_ns_per_unit"].items()}) for r in rows])
        for key in ("PageTables", "LowFree"):
            table.add_row(f"Δ{key} kB (run)",
                          *[_fmt_cell(r["meminfo_change_kb"][key]) for r in rows])
        ui.out_console.print(table)
        for line in _comparisons(rows, records):
            ui.out_console.print(line)
    _print_derived(data)
    noted = [r for r in records if r.get("console_events")]
    if noted:
        ui.warn(f"{len(noted)} measurement(s) happened while the guest kernel logged "
                + "; ".join(sorted({f"{e['kind']} ({r['config']} {r['workload']})"
                                    for r in noted for e in r["console_events"]}))
                + ": see console_events in runs.jsonl and the run's console logs")
    if m.get("status") != "complete":
        ui.warn(f"run status: {m.get('status')}")


@cli_errors
def runs(
    json_out: JsonOpt = False,
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
    run: Annotated[str, typer.Argument(help="Run id (or unique prefix, path, or 'latest').")],
    gap: Annotated[str | None, typer.Option(help="BASELINE,FLOOR: also show the share of the baseline → floor gap (guest time, highmem kmaps) each other configuration recovers. Default: the study plan's 'gap'.")] = None,
    cost_model: Annotated[str | None, typer.Option("--cost-model", help="Also price the run's recorded cost-plugin counts with this machine model (lab cost-model list).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Counts per configuration, per workload unit, with their spread across repeats."""
    _cost_model_name(cost_model)
    if json_out:
        print_json(_with_costmodel(_show_data(run, gap), run, cost_model))
    else:
        _print_show(run, gap)
        _print_costmodel(run, cost_model)


@cli_errors
def dashboard(
    run_ids: Annotated[list[str], typer.Argument(help="Run ids (or prefixes, paths), or .labbundle.tar.gz files to show without importing.")],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="HTML file to write.")
    ] = None,
    baseline: Annotated[str | None, typer.Option(help="Configuration to compare against.")] = None,
    allow_mixed: Annotated[bool, typer.Option("--allow-mixed", help="Show runs of different timing modes or tracer backends together (marked MIXED).")] = False,
    gap: Annotated[str | None, typer.Option(help="BASELINE,FLOOR: add the share of that gap each other configuration recovers. Default: a study plan's 'gap'.")] = None,
    open_browser: Annotated[bool, typer.Option("--open", help="Open the dashboard in a web browser.")] = False,
) -> None:
    """Write one self-contained (offline) HTML dashboard comparing configurations."""
    import webbrowser
    from contextlib import ExitStack

    from ..bundle import extracted
    from ..dashboard import render_dashboard

    with ExitStack() as stack:
        found = []
        for r in run_ids:
            if r.endswith(".tar.gz") and Path(r).is_file():
                found += stack.enter_context(extracted(Path(r)))
            else:
                found.append(open_run(r))
        out = output or dashboards_dir() / f"{found[0].run_id}.html"
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            pair = _gap_of(found[0].manifest(), gap) if gap else None
            path = render_dashboard(found, out, baseline=baseline, allow_mixed=allow_mixed,
                                    gap=pair)
        except UsageError as e:
            # stats.check_comparable names its keyword argument; say the flag instead
            raise UsageError(str(e).replace("allow_mixed=True", "--allow-mixed")) from None
    ui.out_console.print(f"dashboard written: {path}")
    if open_browser and not webbrowser.open(path.resolve().as_uri()):
        ui.warn(f"no web browser found: open {path} yourself")


@cli_errors
def study(
    plan_file: Annotated[Path, typer.Argument(help="A study plan, e.g. analysis/highpte-cost.toml.")],
    backend: Annotated[str | None, typer.Option(help="Override the plan's backend: ftrace, sim, auto.")] = None,
    new: Annotated[bool, typer.Option("--new", help="Start a new run even if an unfinished run of this plan exists.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Run a plan's matrix (configurations × workloads × repeats), one boot per configuration.

    Re-running an interrupted study resumes it: finished cells are skipped, nothing is lost.
    """
    from dataclasses import replace

    from ..study import find_resumable, load_plan
    from ..trace import choose_backend, run_matrix, start_run

    plan = load_plan(plan_file, backend)
    m = replace(plan.matrix, backend=choose_backend(plan.matrix.backend, _can_boot))
    if m.boot.cost_model and m.backend != "ftrace":  # cost model (issue 12)
        raise UsageError(f"{plan_file}: cost_model needs the ftrace backend, not {m.backend}")
    run = None if new else find_resumable(plan)
    if run is None:
        run = start_run(m, plan.name, {"kind": "study", "plan": str(plan_file),
                                       "plan_name": plan.name, "plan_digest": plan.digest,
                                       "description": plan.description,
                                       **({"gap": list(plan.gap)} if plan.gap else {})})
    else:
        ui.info(f"resuming {run.run_id}: {len(run.records())} of {m.total_repeats} measurements recorded")
    with ui.overall(m.total_repeats, f"study {plan.name}") as bar:
        run_matrix(m, run, on_record=lambda _r: bar.advance(), on_skip=bar.advance)
    if json_out:
        print_json(_with_costmodel(_show_data(run.run_id), run.run_id, m.boot.cost_model))
    else:
        _print_show(run.run_id)
        _print_costmodel(run.run_id, m.boot.cost_model)
        ui.out_console.print(f"study {plan.name} recorded in {run.path}")


@cli_errors
def profile(
    workload: Annotated[str, typer.Option(help=f"Workload: {', '.join(list_workloads())}.")] = "forkstorm",
    config: Annotated[str, typer.Option(help="Two configurations A,B: rows are B minus A.")] = "highpte,lowpte",
    param: Annotated[list[str] | None, typer.Option(help="Workload parameter NAME=VALUE (repeatable).")] = None,
    repeat: Annotated[int, typer.Option(help="Workload runs per configuration (ticks add up).")] = 3,
    icount: IcountOpt = False,
    top: Annotated[int, typer.Option(help="Rows to print from each end.")] = 15,
    json_out: JsonOpt = False,
) -> None:
    """Differential kernel profile (readprofile, profile=2): per-symbol tick deltas B − A."""
    import json

    from ..profile import run_profile

    if not 1 <= repeat <= 100 or top < 1:
        raise UsageError("--repeat must be 1..100 and --top at least 1")
    spec = load_workload(workload)
    params = spec.resolve(parse_param_args(param or []))
    configs = parse_config_list(config)
    if len(configs) != 2:
        raise UsageError(f"--config needs exactly two configurations A,B, got {config!r}")
    run = run_profile(configs, spec, params, repeat, BootOptions(icount=icount))
    data = json.loads((run.path / "profile.json").read_text())
    if json_out:
        print_json(data)
        return
    a, b = data["configs"]
    rows = data["rows"]
    tot = data["totals"]
    ui.out_console.print(
        f"{workload} {params} ×{repeat}: {a} {tot[a]['ticks']} ticks, {b} {tot[b]['ticks']} ticks "
        f"(kernel-mode timer ticks, idle loop excluded; run {run.run_id})")
    for label, part in ((f"largest increases ({b} − {a})", rows[:top]),
                        (f"largest decreases ({b} − {a})", list(reversed(rows[-top:])))):
        ui.out_console.print(f"\n{label}:")
        for r in part:
            ui.out_console.print(f"  {r['delta']:+7d}  {r['symbol']:<40} {r['a_ticks']:>7} → {r['b_ticks']}")


def register(app: typer.Typer) -> None:
    """Add these commands to the root app."""
    app.command("trace")(trace)
    app.command("runs")(runs)
    app.command("show")(show)
    app.command("dashboard")(dashboard)
    app.command("study")(study)
    app.command("profile")(profile)
