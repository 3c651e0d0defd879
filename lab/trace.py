"""Drive a trace: plan → guest (or model) → raw records on disk.

One boot per configuration; every repeat of that configuration runs in that boot. Each repeat
is appended to runs.jsonl as soon as it finishes, so an interrupted or failed trace keeps what
it measured; the manifest says how the trace ended.
"""

from __future__ import annotations

import platform
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

from . import __version__, ui
from .config import GuestConfig
from .errors import GuestLostError, LabError, UsageError
from .guest.boot import BootOptions, plan_boot, provision
from .guest.qemu import build_qemu_argv
from .guest.vm import Guest, Instance
from .paths import repo_root
from .results import SCHEMA, RunDir, new_run
from .tracers import Measurement, ProbeSpec, TraceSession
from .workloads import WorkloadSpec

__all__ = ["TracePlan", "run_trace", "choose_backend", "host_facts", "git_commit"]

BACKENDS = ("auto", "ftrace", "sim")


@dataclass(frozen=True)
class TracePlan:
    """What to run: configurations × one workload × repeats, with one backend."""

    configs: list[GuestConfig]
    workload: WorkloadSpec
    params: dict[str, int]
    repeat: int
    backend: str  # "ftrace" | "sim" (auto already resolved)
    probes: list[ProbeSpec]
    boot: BootOptions

    @property
    def timing(self) -> str:
        """icount or realtime for a guest; "modelled" for the sim backend (never mixed)."""
        if self.backend == "sim":
            return "modelled"
        return "icount" if self.boot.icount else "realtime"


def git_commit() -> str | None:
    """The lab checkout's commit, with ``-dirty`` when it has uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "-C", str(repo_root()), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo_root()), "status", "--porcelain", "-uno"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        return head + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def host_facts() -> dict[str, Any]:
    """Which machine measured this: enough to tell runs from different hosts apart."""
    return {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "cpus": psutil.cpu_count(),
        "mem_bytes": psutil.virtual_memory().total,
        "python": platform.python_version(),
    }


def choose_backend(requested: str, can_boot: Callable[[], str | None]) -> str:
    """Resolve ``auto``: ftrace when a guest can boot here, else the simulated model (warned)."""
    if requested not in BACKENDS:
        raise UsageError(f"unknown backend {requested!r}: choose {', '.join(BACKENDS)}")
    if requested != "auto":
        return requested
    why_not = can_boot()
    if why_not is None:
        return "ftrace"
    ui.warn(f"no guest can boot here ({why_not}): using the SIMULATED backend")
    return "sim"


@contextmanager
def _ftrace_session(plan: TracePlan, cfg: GuestConfig, run: RunDir) -> Iterator[TraceSession]:
    from .tracers.ftrace import FtraceSession

    with tempfile.TemporaryDirectory(prefix="ukva-lab-", dir="/tmp") as tmp:
        inst = Instance(Path(tmp))
        bp = plan_boot(cfg, plan.boot, inst)
        bp, _kernel = provision(bp)
        run.update_manifest(
            configs={
                **run.manifest().get("configs", {}),
                cfg.name: {**bp.meta, "qemu_argv": build_qemu_argv(bp.spec)},
            }
        )
        guest: Guest | None = None
        try:
            with ui.step(
                f"Booting {cfg.name} ({bp.spec.accel}, {bp.meta['cpus']} vCPU, {plan.timing})"
            ):
                guest = Guest.boot(inst, bp.spec, bp.meta, bp.ready_timeout)
            yield FtraceSession(guest)
        finally:
            if guest is not None:
                guest.shutdown(20)
            if inst.console_log.exists():
                shutil.copy(inst.console_log, run.path / f"console-{cfg.name}.log")


@contextmanager
def _sim_session(plan: TracePlan, cfg: GuestConfig, run: RunDir) -> Iterator[TraceSession]:
    from .tracers.sim import SimSession

    run.update_manifest(
        configs={
            **run.manifest().get("configs", {}),
            cfg.name: {
                "config": cfg.name,
                "kernel_name": cfg.kernel,
                "cmdline": " ".join(cfg.cmdline),
                "timing": plan.timing,
                "simulated": True,
            },
        }
    )
    yield SimSession(cfg.name)


def _record(
    plan: TracePlan, run: RunDir, cfg: GuestConfig, i: int, session: TraceSession, m: Measurement
) -> dict[str, Any]:
    ops = int(m.report.get("ops", 0))
    if ops <= 0:
        raise LabError(f"workload {plan.workload.name} reported no completed operations")
    att = getattr(session, "attachment", None)
    return {
        "schema": SCHEMA,
        "run_id": run.run_id,
        "config": cfg.name,
        "workload": plan.workload.name,
        "params": plan.params,
        "repeat": i,
        "backend": session.backend,
        "simulated": session.simulated,
        "timing": plan.timing,
        "unit": plan.workload.unit,
        "units": ops,
        "counts": m.counts,
        "absent": att.absent if att else {},
        "meminfo_before": m.meminfo_before,
        "meminfo_after": m.meminfo_after,
        "vmstat_delta": m.vmstat_delta,
        "report": m.report,
        "guest_elapsed_ns": m.guest_elapsed_ns,
        "host": m.extra.get("host", {}),
        "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def run_trace(
    plan: TracePlan,
    results_root: Path | None = None,
    on_record: Callable[[dict[str, Any]], None] | None = None,
) -> RunDir:
    """Run the plan and return its run directory (also when it fails part-way)."""
    manifest = {
        "kind": "trace",
        "lab_version": __version__,
        "git_commit": git_commit(),
        "workload": plan.workload.name,
        "unit": plan.workload.unit,
        "params": plan.params,
        "repeat": plan.repeat,
        "backend": plan.backend,
        "simulated": plan.backend == "sim",
        "timing": plan.timing,
        "config_names": [c.name for c in plan.configs],
        "probe_set": [asdict(p) for p in plan.probes],
        "host": host_facts(),
        "status": "running",
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    run = new_run(plan.workload.name, manifest, results_root)
    opener = _sim_session if plan.backend == "sim" else _ftrace_session
    argv = plan.workload.argv(plan.params)
    try:
        for cfg in plan.configs:
            with opener(plan, cfg, run) as session:
                att = session.attach(plan.probes)
                cfgs = run.manifest()["configs"]
                cfgs[cfg.name].update(attached=att.attached, absent=att.absent, hints=att.hints)
                run.update_manifest(configs=cfgs)
                for i in range(plan.repeat):
                    with ui.step(f"{cfg.name}: {plan.workload.name} repeat {i + 1}/{plan.repeat}"):
                        m = session.measure(plan.workload.name, plan.params, argv)
                    rec = _record(plan, run, cfg, i, session, m)
                    run.append_record(rec)
                    if on_record:
                        on_record(rec)
                session.close()
    except KeyboardInterrupt:
        run.update_manifest(status="interrupted", ended_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        raise
    except GuestLostError as e:
        run.update_manifest(status=f"guest lost: {e.reason}")
        raise
    except LabError as e:
        run.update_manifest(status=f"failed: {e}")
        raise
    run.update_manifest(status="complete", ended_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    return run
