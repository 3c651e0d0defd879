"""``lab trace``, ``lab study``, ``lab profile``: the commands that boot guests and measure.

Each ends by showing what it measured the way `lab show` does (show_render), so a fresh run
and a stored one read the same.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .. import ui
from ..config import list_configs, parse_config_list
from ..errors import LabError, UsageError
from ..guest.boot import BootOptions
from ..paths import repo_root
from ..report import jsonable
from ..sizes import parse_mem_mib
from ..tracers import AUTO, BACKENDS, backend_help, load_probe_set
from ..workloads import list_workloads, load_workload, parse_param_args
from .common import AppendOpt, CpusOpt, IcountOpt, JsonOpt, MemOpt, cli_errors, print_json
from .costmodel_opts import CostModelOpt, cost_model_name
from .show_render import print_show, show_data

__all__ = ["trace", "study", "profile"]


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
        str, typer.Option(help=backend_help())
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
    raw_params = parse_param_args(param or [])
    spec.resolve(raw_params, above_max=True)   # a bad name or value fails before auto warns
    configs = parse_config_list(config)
    probe_set = load_probe_set(probes)
    boot = BootOptions(
        mem_mib=parse_mem_mib(mem), cpus=cpus, icount=icount or cost_model is not None,
        append=tuple(append or ()), cost_model=cost_model_name(cost_model),
    )
    chosen = choose_backend(backend, _can_boot)
    # a model may be asked beyond the program's limits (it says EXTRAPOLATED); a guest not
    params = spec.resolve(raw_params, above_max=BACKENDS[chosen].simulated)
    if cost_model and chosen != "ftrace":  # the plugin counts in a real guest only
        raise UsageError(f"--cost-model needs the ftrace backend (a real guest), not {chosen}")
    plan = Matrix(configs, [Cell(spec, params, repeat)], chosen, probe_set, boot)
    run = run_trace(plan)
    if json_out:
        print_json(jsonable(show_data(run.run_id)))
    else:
        print_show(run.run_id)
        ui.out_console.print(f"run {run.run_id} recorded in {run.path}")


@cli_errors
def study(
    plan_file: Annotated[Path, typer.Argument(help="A study plan or its folder, e.g. analysis/highpte-cost/plan.toml or analysis/ukva/.")],
    backend: Annotated[str | None, typer.Option(help=f"Override the plan's backend: {', '.join([*BACKENDS, AUTO])}.")] = None,
    new: Annotated[bool, typer.Option("--new", help="Start a new run even if an unfinished run of this plan exists.")] = False,
    publish: Annotated[bool, typer.Option("--publish", help="Then export the run as the study folder's bundle and regenerate its REPORT.md, README.md and the README block (lab report FOLDER).")] = False,
    readme: Annotated[Path | None, typer.Option(help="With --publish: the README whose block to rewrite (default: the repository's).")] = None,
    workers: Annotated[int | None, typer.Option(help="Run on a local Dask cluster of N worker processes, one guest each; one boot per (configuration, cell).")] = None,
    scheduler: Annotated[str | None, typer.Option(help="Run on an existing Dask cluster, e.g. tcp://head:8786 (workers started with --resources guest=1; README).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Run a plan's matrix (configurations × workloads × repeats), one boot per configuration
    (with --workers/--scheduler: one per configuration and cell, spread over Dask workers).

    Re-running an interrupted study resumes it: finished cells are skipped, nothing is lost.
    """
    from contextlib import ExitStack
    from dataclasses import replace

    from ..cluster import check_options
    from ..notebook import study_folder
    from ..study import find_resumable, load_plan
    from ..trace import choose_backend, preflight, run_matrix, start_run

    check_options(workers, scheduler)
    plan = load_plan(plan_file, backend)
    folder = study_folder(plan.path)
    if publish and folder is None:
        raise UsageError(f"--publish needs the plan in a study folder (analysis/NAME/plan.toml),"
                         f" not {plan.path}")
    m = replace(plan.matrix, backend=choose_backend(plan.matrix.backend, _can_boot))
    if m.boot.cost_model and m.backend != "ftrace":  # the plugin counts in a real guest only
        raise UsageError(f"{plan_file}: cost_model needs the ftrace backend, not {m.backend}")
    if publish and m.simulated and folder is not None and folder.path.resolve().is_relative_to(
            repo_root()):
        raise UsageError(f"--publish: the {m.backend} backend is SIMULATED; the repository "
                         "publishes only numbers measured on a guest kernel")
    preflight(m)
    dask = workers is not None or scheduler is not None
    # One boot per configuration, or (Dask) per configuration and cell: a run keeps its cut.
    cut = "configuration × cell" if dask else "configuration"
    run = None if new else find_resumable(plan)
    # "boot_per", not "unit": a run's manifest already has "unit" (the workload's, e.g. fork)
    if run is not None and run.manifest().get("boot_per", "configuration") != cut:
        raise UsageError(f"the unfinished run {run.run_id} of this plan has one boot per "
                         f"{run.manifest().get('boot_per', 'configuration')}, this would boot once "
                         f"per {cut}: resume it {'without' if dask else 'with'} "
                         "--workers/--scheduler, or pass --new")
    with ExitStack() as stack:
        client = None
        if dask:  # the cluster first: no run directory if it cannot be had
            from ..cluster import dask_client

            client = stack.enter_context(dask_client(workers, scheduler))
        if run is None:
            run = start_run(m, plan.name, {"kind": "study", "plan": str(plan.path),
                                           "plan_name": plan.name, "plan_digest": plan.digest,
                                           "description": plan.description,
                                           **({"gap": list(plan.gap)} if plan.gap else {}),
                                           **({"boot_per": cut} if dask else {})})
        else:
            ui.info(f"resuming {run.run_id}: {len(run.records())} of {m.total_repeats} measurements recorded")
        with ui.overall(m.total_repeats, f"study {plan.name}") as bar:
            if client is None:
                run_matrix(m, run, on_record=lambda _r: bar.advance(), on_skip=bar.advance)
            else:
                from ..cluster import run_matrix_dask

                run.update_manifest(cluster={"workers": workers} if workers else
                                    {"scheduler": scheduler})
                run_matrix_dask(m, run, client, on_record=lambda _r: bar.advance(),
                                on_skip=bar.advance, check_commit=scheduler is not None)
    if json_out:
        print_json(jsonable(show_data(run.run_id)))
    else:
        print_show(run.run_id)
        ui.out_console.print(f"study {plan.name} recorded in {run.path}")
    if publish and folder is not None:
        from ..bundle import export_bundle
        from ..notebook import publish_folder

        info = export_bundle([run], folder.bundle)
        for path in [info.path, *publish_folder(folder, readme)]:
            ui.out_console.print(f"published: {path}", soft_wrap=True)


@cli_errors
def profile(
    workload: Annotated[str, typer.Option(help=f"Workload: {', '.join(list_workloads())}.")] = "forkstorm",
    config: Annotated[str, typer.Option(help="Two configurations A,B: rows are B minus A.")] = "highpte,lowpte",
    param: Annotated[list[str] | None, typer.Option(help="Workload parameter NAME=VALUE (repeatable).")] = None,
    repeat: Annotated[int, typer.Option(help="Workload runs per configuration (ticks add up).")] = 3,
    ticks: Annotated[int | None, typer.Option(help="Instead of --repeat: run A until it has this many kernel ticks (idle excluded, at most 100 runs), then B as many times. ~830 ticks leave most rows noise; 10000 marks the real ones.")] = None,
    icount: IcountOpt = False,
    fmt: Annotated[str, typer.Option("--format", help="text (plain, < 80 columns, for a mail) or markdown.")] = "text",
    json_out: JsonOpt = False,
) -> None:
    """Differential kernel profile (readprofile, profile=2): per-symbol tick deltas B − A,
    largest rises first and largest falls last; * marks the rows whose difference is
    significant (binomial split test, Holm-corrected over the rows)."""
    from ..notebook import report_doc
    from ..profile_run import run_profile
    from ..render import FORMATS, render

    if not 1 <= repeat <= 100 or (ticks is not None and ticks < 1) or fmt not in FORMATS:
        raise UsageError("--repeat must be 1..100, --ticks at least 1, --format text or markdown")
    spec = load_workload(workload)
    params = spec.resolve(parse_param_args(param or []))
    configs = parse_config_list(config)
    if len(configs) != 2:
        raise UsageError(f"--config needs exactly two configurations A,B, got {config!r}")
    run = run_profile(configs, spec, params, repeat, BootOptions(icount=icount), ticks)
    doc = report_doc([run], title=f"ukva-lab profile: {workload}")
    if json_out:
        print_json(jsonable(doc["profiles"][0]))
        return
    typer.echo(render(doc, fmt), nl=False)
    ui.out_console.print(f"profile recorded in {run.path}", soft_wrap=True)
