"""The sim backend's fitted model: what a model file holds and how it predicts.

Why fitted: the old sim tallied kernel paths with hand-set rates and was off by 26-34 % on
forkstorm's highmem kmaps. Now ``lab sim fit`` (lab/simmodel/fit.py) fits, per configuration
and workload, every per-unit counter, guest time per unit, the run's meminfo changes and
taskpile's slopes as a line in the workload's parameters, from real runs; this module is the
one place that turns parameters into those lines' inputs and back into predictions, so the
fit, ``lab sim check`` and the sim backend cannot disagree about what a term means.

A term is a parameter and a transform. ``inv`` (1/x) for the parameter that counts the units
or the work each process spreads a fixed cost over -- a run's fixed cost (the driver's fork
and exec, the probes' reads) divided by the units falls as 1/units; ``lin`` for a parameter
that adds work to every unit (pages a forked child touches, files a script walks). Only the
parameters that vary in the fit data become terms; every parameter's fitted range is kept, and
a prediction outside it (or at a guest memory size outside the fitted ones) is EXTRAPOLATED.

Example::

    model = load_model()                      # vm/sim/stock-6.1.toml
    cell = model_cell(model, "highpte", "forkstorm")
    predict(cell, "__kmap_local_pfn_prot", {"procs": 500, "touch": 32, "concurrency": 4})
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UsageError
from ..paths import repo_root
from ..tomlfile import load_toml

__all__ = ["TERMS", "FORMAT", "GUEST_NS", "SLOPES", "MEMINFO_DELTA", "default_model_path",
           "load_model", "model_cell", "design_row", "predict", "rel_error", "units_of",
           "extrapolation", "mem_value", "provenance_line"]

#: Model file format (bump when a key changes meaning).
FORMAT = 2

#: Per workload: parameter -> transform ("inv": 1/x, "lin": x). See the module docstring.
TERMS: dict[str, dict[str, str]] = {
    "forkstorm": {"procs": "inv", "touch": "lin", "concurrency": "lin"},
    "faultstorm": {"procs": "lin", "mib": "inv", "passes": "inv"},
    "execstorm": {"execs": "inv", "concurrency": "lin"},
    "mmapchurn": {"procs": "lin", "threads": "lin", "iters": "inv", "pages": "lin"},
    "shellmix": {"files": "lin", "scripts": "inv", "concurrency": "lin"},
    "taskpile": {"tasks": "inv", "span_mib": "lin", "step": "inv", "min_lowfree_mib": "lin"},
}

#: Targets that are not counters: guest time per unit (ns), the run's meminfo changes (kB,
#: whole run) and taskpile's per-task slopes (4 kB pages per task alive).
GUEST_NS = "guest_ns"
MEMINFO_DELTA = ("meminfo.PageTables", "meminfo.LowFree")
SLOPES = ("lowmem_pages_per_task", "pagetables_pages_per_task", "highmem_pages_per_task")


def default_model_path() -> Path:
    """The shipped model: fitted from the committed bundles in analysis/sim-fit/ and
    analysis/sim-mem/ (README, "The sim backend")."""
    return repo_root() / "vm" / "sim" / "stock-6.1.toml"


def load_model(path: Path | None = None) -> dict[str, Any]:
    """Read a fitted model file; UsageError (one line) when it is missing or not one. A
    copy of the parsed file is kept per (path, mtime, size): a trace opens one session per
    configuration, and parsing the file each time was a fifth of a 10,000-task what-if."""
    path = path or default_model_path()
    try:
        st = path.stat()
        key: tuple[str, int, int] | None = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    except OSError:
        key = None
    if key is not None and key in _CACHE:
        return copy.deepcopy(_CACHE[key])
    model = _parse(path)
    if key is not None:
        _CACHE.clear()
        _CACHE[key] = copy.deepcopy(model)
    return model


_CACHE: dict[tuple[str, int, int], dict[str, Any]] = {}


def _parse(path: Path) -> dict[str, Any]:
    model = load_toml(path, "sim model")
    fmt = model.get("model", {}).get("format")
    if fmt != FORMAT or "configs" not in model:
        raise UsageError(f"{path} is not a fitted sim model (format {fmt!r}, this lab reads "
                         f"{FORMAT}): make one with 'lab sim fit RUN_OR_BUNDLE... -o {path}'")
    model["_path"] = str(path)
    return model


def model_cell(model: Mapping[str, Any], config: str, workload: str) -> dict[str, Any]:
    """The fitted lines of ``workload`` on ``config``; UsageError naming what the model has."""
    configs = model["configs"]
    if config not in configs:
        raise UsageError(f"the sim model {model.get('_path', '')} has no configuration "
                         f"{config!r}: it was fitted for {', '.join(sorted(configs))}")
    cells = configs[config].get("workloads", {})
    if workload not in cells:
        raise UsageError(f"the sim model has no {workload} on {config}: it was fitted for "
                         f"{', '.join(sorted(cells)) or 'no workload'}")
    return dict(cells[workload])


def design_row(terms: list[list[str]], params: Mapping[str, int | float]) -> np.ndarray:
    """[1, f(x) for each term]: the fitted line's inputs for ``params``."""
    row = [1.0]
    for name, how in terms:
        x = float(params[name])
        row.append(1.0 / x if how == "inv" else x)
    return np.array(row)


def predict(cell: Mapping[str, Any], target: str, params: Mapping[str, int | float]) -> float:
    """One target's fitted value at ``params`` (per unit, or kB per run for meminfo changes).
    Counts cannot go below zero, so neither can a prediction of one (lines extrapolate)."""
    coef = np.array(cell["targets"][target]["coef"], dtype=float)
    value = float(design_row(cell["terms"], params) @ coef)
    return value if target.startswith("meminfo.") else max(value, 0.0)


def rel_error(predicted: float, observed: float, target: str) -> float | None:
    """(predicted − observed) / |observed|: the one error measure of fit and check. A meminfo
    change is a few pages either way, often 0, so its denominator is at least one page (4 kB);
    a counter observed 0 is exact when predicted 0 and has no relative error (None) else."""
    scale = max(abs(observed), 4.0) if target.startswith("meminfo.") else abs(observed)
    if scale:
        return (predicted - observed) / scale
    return 0.0 if abs(predicted) < 1e-9 else None


def units_of(workload: str, params: Mapping[str, int]) -> int:
    """The units a workload reports (its ``ops``) for ``params``, as lab/workloads/*.toml
    define them (taskpile: the tasks asked for; the lowmem floor may stop it earlier)."""
    p = params
    if workload == "faultstorm":
        return int(p["procs"] * p["mib"] * 256 * p["passes"])
    if workload == "mmapchurn":
        return int(p["procs"] * p["threads"] * p["iters"])
    key = {"forkstorm": "procs", "execstorm": "execs", "shellmix": "scripts",
           "taskpile": "tasks"}.get(workload)
    if key is None:
        raise UsageError(f"the sim models {', '.join(TERMS)}, not {workload!r}")
    return int(p[key])


def extrapolation(model: Mapping[str, Any], cell: Mapping[str, Any],
                  params: Mapping[str, int], mem_mib: int) -> list[str]:
    """Why a prediction is EXTRAPOLATED (empty: inside what the fit saw), one phrase each,
    e.g. "tasks=10000 outside the fitted 64..128"."""
    out = []
    for name, (lo, hi) in sorted(cell["range"].items()):
        v = params.get(name)
        if v is not None and not lo <= v <= hi:
            out.append(f"{name}={v} outside the fitted {_span(lo, hi)}")
    lo, hi = cell["mem_mib"]
    if not lo <= mem_mib <= hi:
        out.append(f"mem={mem_mib}M outside the fitted {_span(lo, hi)}M")
    return out


def _span(lo: int | float, hi: int | float) -> str:
    return f"{lo}" if lo == hi else f"{lo}..{hi}"


def mem_value(model: Mapping[str, Any], config: str, key: str, mem_mib: int) -> float:
    """A start-of-run memory figure (meminfo kB, or taskpile's first sample) for a guest of
    ``mem_mib``: the configuration's fitted value at its fitted size plus the slope pooled
    over the configurations measured at two sizes (lab/simmodel/fit.py, mem_lines)."""
    c = model["configs"][config]["mem"]
    slope = float(model.get("mem", {}).get("slope", {}).get(key, 0.0))
    return float(c["at"][key]) + slope * (mem_mib - int(c["mem_mib"]))


def provenance_line(model: Mapping[str, Any]) -> str:
    """One line naming where the model came from: for the ``auto`` fallback's warning and
    every simulated run's manifest."""
    m = model["model"]
    sources = ", ".join(str(s["path"]) for s in m.get("sources", []))
    return (f"sim model {model.get('_path', '?')}, fitted {m.get('fitted_at', '?')} from "
            f"{sources} ({m.get('timing', '?')}; configs {', '.join(sorted(model['configs']))})")
