"""Units of distributed work: one boot of one configuration for one cell's repeats.

``lab study --workers N`` (lab/cluster.py) cuts a plan into units, sends each to a Dask worker
as a plain description (names, parameters, repeat numbers: never a kernel image), and gets
back the records and what the boot wrote (boot facts, console, the kernel's .config). The host
is the only writer of the run directory.

Why one (configuration, cell) per boot and not one configuration per boot (the serial
driver's unit): a plan has few configurations (analysis/ukva has three), so two workers could
not share three equal units better than 2:1; a cell per boot gives a dozen or more units. A
cell's repeats stay in one boot, as in the serial driver. The cut depends on the plan alone,
never on the number of workers, so a study gives the same numbers on 1 worker or 20
(tests/guest/test_study_dask.py).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

from .guest.boot import BootOptions
from .trace import Matrix, record_key
from .tracers import ProbeSpec

__all__ = ["Unit", "UnitResult", "plan_units", "fresh_records", "measure_unit", "CollectSink"]


@dataclass(frozen=True)
class Unit:
    """One boot's worth of work, as plain data: what a worker needs and nothing it can find
    itself (configurations, workloads and kernels are resolved by name on the worker)."""

    index: int                # the unit's place in the plan (configs × cells order)
    run_id: str
    config: str
    workload: str
    params: dict[str, int]
    cell_repeat: int          # the cell's repeats in the plan (labels: "repeat 2/5")
    repeats: tuple[int, ...]  # which of them this boot measures
    backend: str
    probes: tuple[ProbeSpec, ...]
    boot: BootOptions
    lab_commit: str | None    # the host's checkout: a worker on another commit refuses
                              # (None: not checked, a LocalCluster shares the checkout)
    attempt: int = 1          # 2: the soft-lockup safety net's second boot
    estimated_guest_s: float | None = None  # the sim model's guest time of these repeats
                                            # (lab/unit_order.py; only orders the units)

    @property
    def label(self) -> str:
        return f"{self.config}: {self.workload} ×{len(self.repeats)}"


@dataclass
class UnitResult:
    """What came back from one unit: records in repeat order, and what the boot wrote."""

    unit: Unit
    records: list[dict[str, Any]] = field(default_factory=list)
    meta: dict[str, dict[str, Any]] = field(default_factory=dict)
    appended: dict[str, bytes] = field(default_factory=dict)
    written: dict[str, bytes] = field(default_factory=dict)
    log: str = ""                      # the worker's progress lines, printed by the host
    error: tuple[str, str] | None = None  # (LabError class name, message or guest-lost reason)
    worker: dict[str, Any] = field(default_factory=dict)   # host facts of the worker
    seconds: float = 0.0


def plan_units(m: Matrix, done: set[tuple], run_id: str,
               lab_commit: str | None) -> list[Unit]:
    """The units still to run: one per (configuration, cell) with repeats not in ``done``, in
    plan order (configs outer, cells inner). Independent of how many workers will run them."""
    units = []
    index = 0
    for cfg in m.configs:
        for cell in m.cells:
            index += 1
            left = tuple(i for i in range(cell.repeat)
                         if record_key(cfg.name, cell.workload.name, cell.params, i) not in done)
            if left:
                units.append(Unit(index, run_id, cfg.name, cell.workload.name, dict(cell.params),
                                  cell.repeat, left, m.backend, tuple(m.probes), m.boot,
                                  lab_commit))
    return units


def fresh_records(records: list[dict[str, Any]], done: set[tuple]) -> list[dict[str, Any]]:
    """Those of ``records`` whose key is not in ``done`` (which they are added to), in order:
    a unit that ran twice (a worker died after finishing it, a resubmission) records once."""
    fresh = []
    for rec in records:
        key = record_key(rec["config"], rec["workload"], rec["params"], rec["repeat"])
        if key not in done:
            done.add(key)
            fresh.append(rec)
    return fresh


class CollectSink:
    """A RunSink in memory, on the worker: everything a boot would write, kept for the host."""

    def __init__(self, result: UnitResult) -> None:
        self._result = result

    @property
    def run_id(self) -> str:
        return self._result.unit.run_id

    def set_config_meta(self, name: str, meta: dict[str, Any]) -> None:
        self._result.meta[name] = {**self._result.meta.get(name, {}), **meta}

    def append_file(self, name: str, data: bytes) -> None:
        self._result.appended[name] = self._result.appended.get(name, b"") + data

    def write_file(self, name: str, data: bytes) -> None:
        self._result.written[name] = data

    def append_record(self, record: dict[str, Any]) -> None:
        self._result.records.append(record)


def measure_unit(unit: Unit) -> UnitResult:
    """Run ``unit`` here (on a Dask worker): boot, measure, power off; return everything.

    A LabError (a lost guest, a failing workload) comes back as data with the records made
    before it, so the host keeps them and applies the serial driver's rules (reboot once
    after a soft lockup; otherwise stop). Anything else is a bug and raises.
    """
    import time

    from rich.console import Console

    from . import ui
    from .config import parse_config_list
    from .errors import GuestLostError, LabError
    from .trace import Cell, git_commit, host_facts, measure_config
    from .workloads import load_workload

    t0 = time.monotonic()
    result = UnitResult(unit, worker=host_facts())
    mine = git_commit() if unit.lab_commit is not None else None
    if _commit(unit.lab_commit) != _commit(mine):
        result.error = ("UsageError", f"the worker on {result.worker['hostname']} runs lab "
                        f"commit {mine}, the study {unit.lab_commit}: install the same "
                        "commit on every worker")
        return result
    # The step lines go to the host with the result instead of a worker's stderr.
    saved, ui.err_console = ui.err_console, Console(file=io.StringIO(), width=100)
    try:
        (cfg,) = parse_config_list(unit.config)
        spec = load_workload(unit.workload)
        cell = Cell(spec, unit.params, unit.cell_repeat)
        m = Matrix([cfg], [cell], unit.backend, list(unit.probes), unit.boot)
        measure_config(m, CollectSink(result), cfg, [(cell, i) for i in unit.repeats], None)
    except GuestLostError as e:
        result.error = ("GuestLostError", e.reason)
    except LabError as e:
        result.error = (type(e).__name__, str(e))
    finally:
        out = ui.err_console.file
        ui.err_console = saved
        result.log = out.getvalue() if isinstance(out, io.StringIO) else ""
        result.seconds = round(time.monotonic() - t0, 1)
    return result


def _commit(described: str | None) -> str | None:
    """The commit alone: uncommitted edits ("-dirty") are not compared, or editing the
    checkout while a local study runs would stop it."""
    return described.removesuffix("-dirty") if described else None
