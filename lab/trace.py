"""Drive measurements: plan → guest (or model) → raw records on disk.

A plan is a matrix: configurations × cells (one workload with its parameters and repeats).
Each configuration boots once and runs every cell and repeat in that boot. Each repeat is
appended to runs.jsonl as soon as it finishes, so an interrupted or failed run keeps what it
measured, and re-running the same matrix into the same run directory skips what is recorded.
``lab trace`` is a one-cell matrix; ``lab study`` reads the matrix from a plan file.
"""

from __future__ import annotations

import json
import platform
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import psutil

from . import __version__, ui
from .errors import GuestLostError, LabError
from .guest.boot import BootOptions, plan_boot, provision
from .guest.configs import GuestConfig
from .guest.qemu import build_qemu_argv
from .guest.vm import Guest, Instance
from .paths import repo_root
from .record import build_record
from .results import RunDir, RunSink, new_run
from .tracers import (
    AUTO,
    BACKENDS,
    Measurement,
    ProbeSpec,
    SessionContext,
    TraceSession,
    get_backend,
    resolve_auto,
)
from .workloads import WorkloadSpec

__all__ = [
    "Cell",
    "Matrix",
    "run_matrix",
    "measure_config",
    "run_status",
    "recorded_keys",
    "note_reboot",
    "run_trace",
    "start_run",
    "choose_backend",
    "host_facts",
    "git_commit",
    "record_key",
    "booted_guest",
    "preflight",
]

@dataclass(frozen=True)
class Cell:
    """One workload with fixed parameters, measured ``repeat`` times per configuration."""

    workload: WorkloadSpec
    params: dict[str, int]
    repeat: int

    @property
    def params_key(self) -> str:
        return json.dumps(self.params, sort_keys=True)


@dataclass(frozen=True)
class Matrix:
    """What to run: configurations × cells, with one backend, probe set and boot options."""

    configs: list[GuestConfig]
    cells: list[Cell]
    backend: str  # a registered backend (auto already resolved), or "profile"
    probes: list[ProbeSpec]
    boot: BootOptions
    #: backend-specific options (ebpf: {"stack": SYMBOL} or {"latency": FUNCTION})
    backend_options: tuple[tuple[str, str], ...] = ()

    @property
    def timing(self) -> str:
        """icount or realtime for a guest; the backend's own label for a model ("modelled"),
        so modelled and measured times are never mixed."""
        b = BACKENDS.get(self.backend)
        if b is not None and b.timing:
            return b.timing
        return "icount" if self.boot.icount else "realtime"

    @property
    def simulated(self) -> bool:
        b = BACKENDS.get(self.backend)
        return b is not None and b.simulated

    @property
    def total_repeats(self) -> int:
        return len(self.configs) * sum(c.repeat for c in self.cells)


def record_key(config: str, workload: str, params: dict[str, Any] | str, repeat: int) -> tuple:
    """Identifies one measurement in a run: what resume compares against."""
    p = params if isinstance(params, str) else json.dumps(params, sort_keys=True)
    return (config, workload, p, repeat)


def git_commit() -> str | None:
    """The lab checkout's commit, with ``-dirty`` when it has uncommitted changes."""
    try:
        git = ["git", "-C", str(repo_root())]
        head = subprocess.run(
            [*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "-uno"], capture_output=True, text=True
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
    """Resolve ``auto`` through the registry: the guest backend (ftrace) when a guest can boot
    here, else the simulated model (warned). Any other name must be registered."""
    if requested != AUTO:
        return get_backend(requested).name
    why_not = can_boot()
    if why_not is None:
        return resolve_auto(True).name
    chosen = resolve_auto(False)
    what = "SIMULATED " + chosen.name if chosen.simulated else chosen.name
    source = f" ({chosen.provenance()})" if chosen.provenance else ""
    ui.warn(f"no guest can boot here ({why_not}): using the {what} backend{source}")
    return chosen.name


@contextmanager
def booted_guest(
    cfg: GuestConfig, boot: BootOptions, timing: str, run: RunSink
) -> Iterator[Guest]:
    """Boot ``cfg`` for a run: its boot facts go into the manifest, its console into the run
    (appended, so a resumed run keeps every boot's console), and it is powered off whatever
    happens."""
    with tempfile.TemporaryDirectory(prefix="ukva-lab-", dir="/tmp") as tmp:
        inst = Instance(Path(tmp))
        bp, kernel = provision(plan_boot(cfg, boot, inst))
        run.set_config_meta(cfg.name, {**bp.meta, "qemu_argv": build_qemu_argv(bp.spec)})
        if kernel.config is not None:  # the .config travels with the results (and bundles)
            run.write_file(f"kernel-{cfg.name}.config", Path(kernel.config).read_bytes())
        guest: Guest | None = None
        try:
            with ui.step(
                f"Booting {cfg.name} ({bp.spec.accel}, {bp.meta['cpus']} vCPU, {timing})"
            ):
                guest = Guest.boot(inst, bp.spec, bp.meta, bp.ready_timeout)
            # exec's cost depends on it (lab-agent.c, seed_crng): every run says which it had
            run.set_config_meta(cfg.name, {"crng_ready": guest.state.get("crng_ready")})
            yield guest
        finally:
            if guest is not None:
                guest.shutdown(20)
            if inst.console_log.exists():
                run.append_file(f"console-{cfg.name}.log", inst.console_log.read_bytes())


def _open_session(m: Matrix, cfg: GuestConfig,
                  run: RunSink) -> AbstractContextManager[TraceSession]:
    """The matrix's backend, from the registry, opened on ``cfg``."""
    ctx = SessionContext(
        config=cfg, timing=m.timing,
        boot_guest=lambda extras=(): booted_guest(
            cfg, replace(m.boot, image_extras=tuple(extras)), m.timing, run),
        set_meta=lambda meta: run.set_config_meta(cfg.name, meta), mem_mib=m.boot.mem_mib,
        options=dict(m.backend_options),
    )
    return get_backend(m.backend).open(ctx)


def _record(
    m: Matrix, run: RunSink, cfg: GuestConfig, cell: Cell, i: int, session: TraceSession,
    meas: Measurement,
) -> dict[str, Any]:
    ops = int(meas.report.get("ops", 0))
    if ops <= 0:
        raise LabError(f"workload {cell.workload.name} reported no completed operations")
    return build_record(
        run_id=run.run_id, config=cfg.name, workload=cell.workload.name, params=cell.params,
        repeat=i, backend=session.backend, simulated=session.simulated, timing=m.timing,
        unit=cell.workload.unit, units=ops, absent=session.attachment.absent, meas=meas,
    )


def start_run(m: Matrix, name: str, extra: dict[str, Any] | None = None,
              results_root: Path | None = None) -> RunDir:
    """Create the run directory and its manifest for matrix ``m``."""
    first = m.cells[0]
    manifest = {
        "kind": "trace",
        "lab_version": __version__,
        "git_commit": git_commit(),
        "workload": first.workload.name if len(m.cells) == 1 else "study",
        "workloads": sorted({c.workload.name for c in m.cells}),
        "unit": first.workload.unit,
        "params": first.params,
        "repeat": first.repeat,
        "cells": [{"workload": c.workload.name, "params": c.params, "repeat": c.repeat}
                  for c in m.cells],
        "backend": m.backend,
        **({"backend_options": dict(m.backend_options)} if m.backend_options else {}),
        "simulated": m.simulated,
        "timing": m.timing,
        "config_names": [c.name for c in m.configs],
        "probe_set": [asdict(p) for p in m.probes],
        "host": host_facts(),
        "status": "running",
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **(extra or {}),
    }
    return new_run(name, manifest, results_root)


@contextmanager
def run_status(run: RunDir) -> Iterator[None]:
    """Mark ``run`` running, then complete, interrupted, guest lost or failed by how the
    block ends (the serial driver and the Dask one, lab/cluster.py, share it)."""
    run.update_manifest(status="running")
    try:
        yield
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


def recorded_keys(run: RunDir) -> set[tuple]:
    """The record keys already in ``run``: what resume skips."""
    return {record_key(r["config"], r["workload"], r["params"], r["repeat"])
            for r in run.records()}


def note_reboot(run: RunDir, config: str, reason: str, left: int) -> None:
    """The soft-lockup safety net's trace: the reason goes into the manifest, and a warning."""
    reboots = run.manifest().get("configs", {}).get(config, {}).get("reboots", [])
    run.set_config_meta(config, {"reboots": [*reboots, reason]})
    ui.warn(f"{config}: guest lost ({reason}); booting it again for the "
            f"{left} measurement(s) left (recorded in the manifest)")


def run_matrix(
    m: Matrix,
    run: RunDir,
    on_record: Callable[[dict[str, Any]], None] | None = None,
    on_skip: Callable[[int], None] | None = None,
) -> RunDir:
    """Measure every (configuration, cell, repeat) not yet in ``run``; boot once per config."""
    done = recorded_keys(run)
    get_backend(m.backend)  # an unknown backend fails before the run is marked running
    with run_status(run):
        for cfg in m.configs:
            todo = [(cell, i) for cell in m.cells for i in range(cell.repeat)
                    if record_key(cfg.name, cell.workload.name, cell.params, i) not in done]
            skipped = sum(c.repeat for c in m.cells) - len(todo)
            if skipped and on_skip:
                on_skip(skipped)
            for attempt in (1, 2):
                if not todo:
                    break
                try:
                    measure_config(m, run, cfg, todo, on_record)
                    break
                except GuestLostError as e:
                    # A soft lockup under TCG has been a vCPU that never answered an IPI
                    # (text_poke_bp while probes came off): the guest is gone, but the next
                    # boot is fine. Reboot once, keep every record made, say so.
                    if attempt == 2 or not e.reason.startswith("soft-lockup"):
                        raise
                    done = recorded_keys(run)
                    todo = [(c, i) for c, i in todo
                            if record_key(cfg.name, c.workload.name, c.params, i) not in done]
                    note_reboot(run, cfg.name, e.reason, len(todo))
    return run


def measure_config(m: Matrix, run: RunSink, cfg: GuestConfig, todo: list[tuple[Cell, int]],
                    on_record: Callable[[dict[str, Any]], None] | None) -> None:
    """One boot of ``cfg``: attach the probes, measure every (cell, repeat) in ``todo``,
    append each record as soon as it exists."""
    with _open_session(m, cfg, run) as session:
        att = session.attach(m.probes)
        run.set_config_meta(cfg.name, {"attached": att.attached, "absent": att.absent,
                                         "hints": att.hints})
        for cell, i in todo:
            label = f"{cfg.name}: {cell.workload.name} repeat {i + 1}/{cell.repeat}"
            console = _console_offset(session)
            with ui.step(label):
                meas = session.measure(cell.workload.name, cell.params,
                                       cell.workload.argv(cell.params, m.simulated))
            rec = _record(m, run, cfg, cell, i, session, meas)
            events = _console_events(session, console)
            if events:  # warnings, stalls: the numbers stand, with this next to them
                rec["console_events"] = events
                ui.warn(f"{label}: the guest kernel logged "
                        + "; ".join(f"{e['kind']}: {e['text']}" for e in events))
            run.append_record(rec)
            if on_record:
                on_record(rec)
        session.close()


def _console_offset(session: TraceSession) -> int | None:
    """Size of the session's console log now (None: a model, no console)."""
    path = session.console_log
    try:
        return path.stat().st_size if isinstance(path, Path) else None
    except OSError:
        return 0


def _console_events(session: TraceSession, offset: int | None) -> list[dict[str, str]]:
    """Kernel events (warnings, stalls, soft lockups) the console logged since ``offset``."""
    from .guest.console import read_console, scan_console

    if offset is None:
        return []
    path = session.console_log
    if not isinstance(path, Path):
        return []
    return [{"kind": e.kind, "text": e.text} for e in scan_console(read_console(path, offset))]


def preflight(m: Matrix) -> None:
    """What the backend can tell before anything runs (lab.tracers.Backend.preflight)."""
    b = BACKENDS.get(m.backend)
    if b is not None and b.preflight is not None:
        b.preflight([c.name for c in m.configs], sorted({c.workload.name for c in m.cells}))


def run_trace(m: Matrix, results_root: Path | None = None,
              on_record: Callable[[dict[str, Any]], None] | None = None) -> RunDir:
    """Run a fresh matrix into a new run directory and return it (also when it fails)."""
    preflight(m)
    run = start_run(m, m.cells[0].workload.name, results_root=results_root)
    return run_matrix(m, run, on_record)
