"""The order a study's units go to the Dask workers: longest first, by the sim model's estimate.

Why: units differ in length (a boot plus one cell's repeats: in analysis/ukva's plan the model
gives a taskpile unit 7.5 s of guest time, a faultstorm unit 0.7 s), and whatever runs last
runs alone. Dask cannot order them well by itself: it binds a task that asks for a worker
resource to a worker when the task is submitted, before any duration is known. In a trial of
8 sleeping tasks (four of 8 s, four of 3 s) submitted at once to two workers, one worker ran
six of them and the other sat idle for 6 s: 28 s for 44 s of work. So lab/cluster.py keeps only
as many units in flight as the cluster has guest slots and hands out the rest in this order
(longest-processing-time-first): 22 s in the same trial, the best possible.

The estimate is the fitted model's guest time per workload unit (vm/sim/stock-6.1.toml) ×
the workload's units × the repeats left. It only ranks units, so the boot every unit pays is
left out, and a clock other than icount ranks the same way. A configuration the model was not
fitted on takes the mean of the configurations that were; a workload it has no line for
ranks first (unknown may be long). A unit's estimate never changes a figure: only the order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from statistics import fmean
from typing import Any

from .errors import LabError
from .simmodel import GUEST_NS, load_model, predict, units_of
from .units import Unit

__all__ = ["estimated_guest_seconds", "longest_first"]


def estimated_guest_seconds(model: Mapping[str, Any] | None, unit: Unit) -> float | None:
    """The model's guest seconds for ``unit``'s repeats (no boot), or None when it cannot say."""
    if model is None:
        return None
    configs = model.get("configs", {})
    lines = [configs[unit.config]["workloads"][unit.workload]] \
        if unit.workload in configs.get(unit.config, {}).get("workloads", {}) \
        else [c["workloads"][unit.workload] for c in configs.values()
              if unit.workload in c.get("workloads", {})]
    try:
        per_unit_ns = fmean(predict(line, GUEST_NS, unit.params) for line in lines)
        units = units_of(unit.workload, unit.params)
    except (KeyError, LabError, ValueError):  # no line, a parameter the fit lacks, no units
        return None
    return per_unit_ns * units * len(unit.repeats) / 1e9


def longest_first(units: list[Unit], model: Mapping[str, Any] | None = None) -> list[Unit]:
    """``units`` in the order to hand them out, each carrying its estimate: unknown lengths,
    then longest first; ties (and a machine without a usable model) keep plan order."""
    if model is None:
        try:
            model = load_model()
        except (LabError, OSError):
            model = None
    estimated = [replace(u, estimated_guest_s=estimated_guest_seconds(model, u)) for u in units]

    def rank(u: Unit) -> tuple[float, int]:
        est = u.estimated_guest_s
        return (-float("inf") if est is None else -est, u.index)

    return sorted(estimated, key=rank)
