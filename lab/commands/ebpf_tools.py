"""``lab stacks`` and ``lab latency``: the ebpf backend's stackcount and funclatency.

Each runs a trace with ``--backend ebpf`` (one boot per configuration, icount by default so
guest time is deterministic) with stacks or a latency histogram collected in the probed run,
stores it as a run like ``lab trace`` does, and prints per configuration from the stored
records (``--run`` prints a stored run again without booting).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from .. import ui
from ..callsites import latency_rows, render_latency, render_stacks, stack_rows
from ..config import list_configs, parse_config_list
from ..errors import UsageError
from ..guest.boot import BootOptions
from ..results import open_run
from ..sizes import parse_mem_mib
from ..tracers import INLINE_HINTS, load_probe_set
from ..workloads import list_workloads, load_workload, parse_param_args
from .common import JsonOpt, MemOpt, cli_errors, print_json

__all__ = ["stacks", "latency"]

WorkloadOpt = Annotated[str, typer.Option(help=f"Workload: {', '.join(list_workloads())}.")]
ConfigOpt = Annotated[str, typer.Option(
    help=f"Comma-separated configurations: {', '.join(list_configs())}.")]
ParamOpt = Annotated[list[str] | None, typer.Option(
    help="Workload parameter NAME=VALUE (repeatable).")]
RepeatOpt = Annotated[int, typer.Option(help="Repeats per configuration (all in one boot).")]
IcountOpt = Annotated[bool, typer.Option(
    help="Deterministic guest time (-icount shift=0, 1 vCPU); --no-icount for wall time.")]
RunOpt = Annotated[str | None, typer.Option(
    help="Print a stored run (its run id) instead of measuring.")]


def _symbol(name: str, what: str) -> str:
    if not name or not all(c.isalnum() or c in "_." for c in name):
        raise UsageError(f"{what} {name!r} is not a kernel symbol name")
    if name in INLINE_HINTS:
        raise UsageError(f"{name} is inline and cannot be probed: use {INLINE_HINTS[name]}")
    return name


def _measure(workload: str, config: str, param: list[str] | None, repeat: int, icount: bool,
             mem: str, option: tuple[str, str]) -> list[dict[str, Any]]:
    """Run the trace with ``option`` for the ebpf backend; the run's records."""
    from ..trace import Cell, Matrix, run_trace

    if not 1 <= repeat <= 100:
        raise UsageError(f"--repeat {repeat} out of range: 1 to 100")
    spec = load_workload(workload)
    params = spec.resolve(parse_param_args(param or []))
    configs = parse_config_list(config)
    boot = BootOptions(mem_mib=parse_mem_mib(mem), icount=icount)
    m = Matrix(configs, [Cell(spec, params, repeat)], "ebpf", load_probe_set(), boot,
               backend_options=(option,))
    run = run_trace(m)
    ui.info(f"run {run.run_id} recorded in {run.path}")
    return run.records()


def _stored(run_id: str, key: str) -> list[dict[str, Any]]:
    recs = open_run(run_id).records()
    if not any(r.get(key) for r in recs):
        raise UsageError(f"run {run_id} has no {key} (measure with lab {key})")
    return recs


@cli_errors
def stacks(
    probe: Annotated[str, typer.Option(help="Kernel symbol whose callers to count.")]
    = "__kmap_local_pfn_prot",
    workload: WorkloadOpt = "forkstorm",
    config: ConfigOpt = "highpte,lowpte",
    param: ParamOpt = None,
    repeat: RepeatOpt = 1,
    icount: IcountOpt = True,
    mem: MemOpt = "8G",
    depth: Annotated[int, typer.Option(help="Callers that make a call site (1 to 8).")] = 3,
    top: Annotated[int, typer.Option(help="Call sites shown per configuration.")] = 8,
    run: RunOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Kernel call sites of a probe per configuration (stackcount, with the ebpf backend)."""
    if not 1 <= depth <= 8 or top < 1:
        raise UsageError("--depth must be 1 to 8 and --top at least 1")
    recs = (_stored(run, "stacks") if run else
            _measure(workload, config, param, repeat, icount, mem,
                     ("stack", _symbol(probe, "--probe"))))
    rows = stack_rows(recs, depth)
    if json_out:
        print_json([{k: v for k, v in r.items() if k != "folded"} for r in rows])
    else:
        typer.echo(render_stacks(rows, top))


@cli_errors
def latency(
    function: Annotated[str, typer.Option(help="Kernel function to time (entry to return).")]
    = "handle_mm_fault",
    workload: WorkloadOpt = "faultstorm",
    config: ConfigOpt = "highpte,lowpte",
    param: ParamOpt = None,
    repeat: RepeatOpt = 1,
    icount: IcountOpt = True,
    mem: MemOpt = "8G",
    run: RunOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Log2 histograms of a kernel function's duration per configuration (funclatency)."""
    recs = (_stored(run, "latency") if run else
            _measure(workload, config, param, repeat, icount, mem,
                     ("latency", _symbol(function, "--function"))))
    rows = latency_rows(recs)
    if json_out:
        print_json(rows)
    else:
        typer.echo(render_latency(rows))
