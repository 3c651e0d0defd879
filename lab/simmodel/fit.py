"""``lab sim fit``: fit the sim model from real runs or bundles.

Why least squares on records, not a hand-set rate: the old model's rates were read off a few
traces and drifted from the guest by a quarter to a third; a fit is redone in seconds when
the kernels or workloads change, and it states its own error.

What is fitted, per (configuration, workload): for every counter the runs recorded, its count
per unit; guest time per unit; the run's PageTables and LowFree changes; for taskpile the
lowmem, PageTables and HighFree pages per task alive. Each is ``coef · [1, f(x)...]`` over the
terms of lab/simmodel (the workload's parameters that vary in the data, each as x or 1/x),
solved by ``numpy.linalg.lstsq`` over every record. Start-of-run memory figures are fitted
against the guest's RAM (:func:`mem_lines`) for the lowmem curves of other guest sizes.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from ..compare import taskpile_slopes
from ..errors import UsageError
from ..results import RunDir
from . import FORMAT, GUEST_NS, MEMINFO_DELTA, SLOPES, TERMS, design_row, rel_error, units_of

__all__ = ["fit_model", "record_targets", "mem_lines", "kernel_label", "MEM_KEYS",
           "TASKPILE_START"]

Record = dict[str, Any]

#: meminfo figures (kB) at the start of a run that move with the guest's RAM.
MEM_KEYS = ("MemTotal", "LowTotal", "HighTotal", "LowFree", "HighFree", "PageTables")
#: taskpile's first sample (before any task), the start of its lowmem curve.
TASKPILE_START = ("LowFree_kB", "LowPcp_kB", "HighFree_kB", "HighPcp_kB", "PageTables_kB")


def record_targets(rec: Record) -> dict[str, float]:
    """Every fitted quantity one record gives: counts per unit, guest ns per unit, meminfo
    changes over the run (kB) and, for taskpile, the per-task slopes (NaN when it has fewer
    than three samples)."""
    units = float(rec["units"])
    out = {name: float(v) / units for name, v in rec.get("counts", {}).items()}
    if isinstance(rec.get("guest_elapsed_ns"), int | float):
        out[GUEST_NS] = float(rec["guest_elapsed_ns"]) / units
    before, after = rec.get("meminfo_before") or {}, rec.get("meminfo_after") or {}
    for target in MEMINFO_DELTA:
        key = target.split(".", 1)[1]
        if key in before and key in after:
            out[target] = float(after[key] - before[key])
    if rec.get("workload") == "taskpile":
        slopes = taskpile_slopes([rec]).get(str(rec.get("config")), {})
        for name in SLOPES:
            out[name] = float(slopes.get(name, {}).get("mean", math.nan))
    return out


def _mem_of(run: RunDir, rec: Record) -> int:
    mem = run.manifest().get("configs", {}).get(str(rec["config"]), {}).get("mem_mib")
    if not isinstance(mem, int):
        raise UsageError(f"run {run.run_id}: configuration {rec['config']} has no mem_mib in "
                         "its manifest: cannot place it on the memory axis")
    return mem


def _fit_target(target: str, x: np.ndarray, cells: list[int], y: np.ndarray,
                ) -> dict[str, Any]:
    """One target: coefficients, the pooled repeat-to-repeat CV, and the fit error (the
    largest |fitted − mean| / |mean| over the fitted parameter points, :func:`rel_error`)."""
    ok = np.isfinite(y)
    x, y, idx = x[ok], y[ok], np.array(cells)[ok]
    coef = np.linalg.lstsq(x, y, rcond=None)[0]
    errs, variances = [], []
    for c in sorted(set(idx.tolist())):
        sel = idx == c
        mean, fitted = float(y[sel].mean()), float(x[sel][0] @ coef)
        err = rel_error(fitted, mean, target)
        errs.append(math.inf if err is None else abs(err))
        if sel.sum() > 1:
            variances.append(float(y[sel].var(ddof=1)))
    scale = abs(float(y.mean())) if len(y) else 0.0
    cv = math.sqrt(float(np.mean(variances))) / scale if variances and scale else 0.0
    return {"coef": [round(float(c), 9) for c in coef], "cv": round(cv, 6),
            "fit_error": round(max(errs), 6) if errs else 0.0}


def _fit_cell(workload: str, recs: list[tuple[Record, int]]) -> dict[str, Any]:
    params = [r["params"] for r, _ in recs]
    names = sorted({k for p in params for k in p})
    rng = {k: [min(p[k] for p in params), max(p[k] for p in params)] for k in names}
    terms = [[k, how] for k, how in TERMS[workload].items()
             if k in rng and rng[k][0] != rng[k][1]]
    keys = sorted({json.dumps(p, sort_keys=True) for p in params})
    cells = [keys.index(json.dumps(p, sort_keys=True)) for p in params]
    x = np.array([design_row(terms, p) for p in params])
    per_rec = [record_targets(r) for r, _ in recs]
    common = set.intersection(*(set(t) for t in per_rec))
    targets = {t: _fit_target(t, x, cells, y) for t in sorted(common)
               if np.isfinite(y := np.array([pr[t] for pr in per_rec])).any()}
    mems = [m for _, m in recs]
    return {"unit": recs[0][0].get("unit"), "terms": terms, "range": rng,
            "mem_mib": [min(mems), max(mems)], "points": len(keys), "records": len(recs),
            "targets": targets}


def mem_lines(points: dict[str, list[tuple[str, int, float]]],
              ) -> tuple[dict[str, float], dict[str, dict[str, tuple[int, float]]]]:
    """Start-of-run memory figures against guest RAM: per key, one slope (kB per MiB) pooled
    over configurations (a fixed intercept each: the kernels differ in size, the mem_map and
    the zone split move alike), and per configuration its value at its most-measured size.
    ``points``: key -> [(config, mem_mib, value)]. No configuration at two sizes: slope 0."""
    slopes: dict[str, float] = {}
    at: dict[str, dict[str, tuple[int, float]]] = {}
    for key, pts in sorted(points.items()):
        configs = sorted({c for c, _, _ in pts})
        for c in configs:
            mine = [(m, v) for cc, m, v in pts if cc == c]
            ref = max(Counter(m for m, _ in mine).most_common(),
                      key=lambda mc: (mc[1], mc[0]))[0]
            at.setdefault(c, {})[key] = (ref, float(np.mean([v for m, v in mine if m == ref])))
        if len({m for _, m, _ in pts}) < 2 or not any(
                len({m for cc, m, _ in pts if cc == c}) > 1 for c in configs):
            slopes[key] = 0.0
            continue
        x = np.array([[float(cc == c) for c in configs] + [float(m)] for cc, m, _ in pts])
        y = np.array([v for _, _, v in pts])
        slopes[key] = round(float(np.linalg.lstsq(x, y, rcond=None)[0][-1]), 6)
    return slopes, at


def kernel_label(meta: dict[str, Any]) -> str:
    """A configuration's kernel as the model records it: package or source version and
    the bzImage's hash (so `lab sim check` can tell a run of another build)."""
    k = meta.get("kernel") or {}
    name = " ".join(str(x) for x in (k.get("package") or meta.get("kernel_name"),
                                     k.get("package_version")) if x)
    sha = str(k.get("bzimage_sha256") or "")[:12]
    return f"{name} (bzImage {sha})" if sha else name


def _source(arg: str, runs: list[RunDir]) -> dict[str, Any]:
    """A fit input as given, its run ids and, for a bundle or a study folder (its bundle),
    the bundle's sha256: the model names exactly the bytes it was fitted from."""
    from ..notebook import study_folder

    folder = study_folder(Path(arg))
    path = folder.bundle if folder else Path(arg)
    src: dict[str, Any] = {"path": arg, "runs": [r.run_id for r in runs]}
    if path.is_file():
        src["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    return src


def fit_model(sources: dict[str, list[RunDir]], command: str = "") -> dict[str, Any]:
    """The model dict (as the model file holds it) fitted from ``sources``: argument as given
    -> its runs. Refuses simulated runs and mixed clocks (one clock per model)."""
    from ..trace import git_commit

    recs: list[tuple[Record, int]] = []
    kernels: dict[str, set[str]] = {}
    absent: dict[str, dict[str, str]] = {}
    cmdlines: dict[str, set[str]] = {}
    timings: set[str] = set()
    for arg, runs in sources.items():
        for run in runs:
            m = run.manifest()
            if m.get("simulated"):
                raise UsageError(f"{arg}: run {run.run_id} is SIMULATED; fit only real runs")
            for rec in run.records():
                if rec.get("workload") not in TERMS or rec.get("simulated"):
                    continue
                if int(rec["units"]) != units_of(rec["workload"], rec["params"]) and \
                        rec["workload"] != "taskpile":
                    raise UsageError(f"{arg}: run {run.run_id} {rec['workload']} reports "
                                     f"{rec['units']} units for {rec['params']}: not what "
                                     "the workload's definition gives")
                cfg = str(rec["config"])
                meta = m.get("configs", {}).get(cfg, {})
                kernels.setdefault(cfg, set()).add(kernel_label(meta))
                cmdlines.setdefault(cfg, set()).add(str(meta.get("cmdline", "")))
                absent.setdefault(cfg, {}).update(rec.get("absent") or {})
                timings.add(str(rec.get("timing")))
                recs.append((rec, _mem_of(run, rec)))
    if not recs:
        raise UsageError(f"no real records of {', '.join(TERMS)} in {', '.join(sources)}")
    if len(timings) > 1:
        raise UsageError(f"the runs mix clocks ({', '.join(sorted(timings))}): fit one clock")
    groups: dict[tuple[str, str], list[tuple[Record, int]]] = {}
    points: dict[str, list[tuple[str, int, float]]] = {}
    for rec, mem in recs:
        cfg = str(rec["config"])
        groups.setdefault((cfg, rec["workload"]), []).append((rec, mem))
        for key in MEM_KEYS:
            if isinstance((rec.get("meminfo_before") or {}).get(key), int | float):
                points.setdefault(key, []).append((cfg, mem, rec["meminfo_before"][key]))
        samples = (rec.get("report") or {}).get("samples") or []
        if rec["workload"] == "taskpile" and samples and isinstance(samples[0], dict):
            for key in TASKPILE_START:
                if isinstance(samples[0].get(key), int | float):
                    points.setdefault(f"taskpile.{key}", []).append((cfg, mem, samples[0][key]))
    slopes, at = mem_lines(points)
    configs: dict[str, Any] = {}
    for (cfg, workload), grp in sorted(groups.items()):
        c = configs.setdefault(cfg, {
            "kernel": "; ".join(sorted(kernels[cfg])), "cmdline": "; ".join(sorted(cmdlines[cfg])),
            "absent": dict(sorted(absent[cfg].items())),
            "mem": {"mem_mib": max(m for m, _ in at.get(cfg, {}).values()) if at.get(cfg)
                    else grp[0][1],
                    "at": {k: round(v, 1) for k, (_, v) in sorted(at.get(cfg, {}).items())}},
            "workloads": {}})
        c["workloads"][workload] = _fit_cell(workload, grp)
    mems = sorted({m for _, m in recs})
    return {
        "model": {"format": FORMAT, "fitted_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                  "lab_commit": git_commit() or "?", "timing": timings.pop(),
                  "command": command, "records": len(recs),
                  "sources": [_source(a, r) for a, r in sources.items()]},
        "mem": {"fitted_mib": [mems[0], mems[-1]], "slope": slopes},
        "configs": configs,
    }
