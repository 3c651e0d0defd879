"""``lab sim check``: a fitted model's error against real runs, per counter.

Why a separate step from the fit: the error a model states for itself (its fit error) is on
the points it was fitted to; what a user needs is its error where it was not fitted. Checking
against held-out runs (analysis/sim-holdout/) is that number, and the README's table and the
host test both come from :func:`check_rows`, so they cannot drift apart.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from ..errors import UsageError
from ..report import headline
from ..results import RunDir
from . import GUEST_NS, SLOPES, extrapolation, model_cell, predict, rel_error
from .fit import record_targets

__all__ = ["check_rows", "headline_targets", "worst_by_target", "label"]


def headline_targets() -> list[str]:
    """What the issue's error bound covers: the headline counters of probes.toml, guest time,
    and taskpile's lowmem and PageTables slopes."""
    return [*headline().order, GUEST_NS, *SLOPES[:2]]


def label(target: str) -> str:
    return {GUEST_NS: "guest time per unit"}.get(target, target)


def check_rows(model: dict[str, Any], runs: list[RunDir]) -> list[dict[str, Any]]:
    """One row per (config, workload, params, target) the runs and the model share: the
    observed mean per unit over the repeats, the model's value, and the relative error
    (predicted − observed) / observed (lab.simmodel.rel_error).
    Raises UsageError when the runs are simulated or share nothing with the model."""
    groups: dict[tuple[str, str, str, int], list[dict[str, Any]]] = {}
    for run in runs:
        m = run.manifest()
        if m.get("simulated"):
            raise UsageError(f"run {run.run_id} is SIMULATED: check the model against real runs")
        for rec in run.records():
            cfg = str(rec.get("config"))
            mem = m.get("configs", {}).get(cfg, {}).get("mem_mib", 0)
            key = (cfg, str(rec.get("workload")), json.dumps(rec.get("params"), sort_keys=True),
                   int(mem))
            groups.setdefault(key, []).append(rec)
    rows: list[dict[str, Any]] = []
    skipped = []
    for (cfg, workload, pkey, mem), recs in sorted(groups.items()):
        try:
            cell = model_cell(model, cfg, workload)
        except UsageError as e:
            skipped.append(str(e))
            continue
        params = json.loads(pkey)
        outside = extrapolation(model, cell, params, mem)
        per_rec = [record_targets(r) for r in recs]
        for target in sorted(cell["targets"]):
            vals = [pr[target] for pr in per_rec if math.isfinite(pr.get(target, math.nan))]
            if not vals:
                continue
            obs = float(np.mean(vals))
            pred = predict(cell, target, params)
            err = rel_error(pred, obs, target)
            rows.append({"config": cfg, "workload": workload, "params": params, "mem_mib": mem,
                         "target": target, "observed": obs, "predicted": pred, "error": err,
                         "n": len(vals), "extrapolated": outside})
    if not rows:
        raise UsageError("the runs share no (configuration, workload) with the model"
                         + (f": {skipped[0]}" if skipped else ""))
    return rows


def worst_by_target(rows: list[dict[str, Any]]) -> dict[tuple[str, str], float | None]:
    """(workload, target) -> the largest |error| over configurations and parameter points
    (None: some observed 0 with a non-zero prediction)."""
    out: dict[tuple[str, str], float | None] = {}
    for r in rows:
        key = (r["workload"], r["target"])
        e = None if r["error"] is None else abs(r["error"])
        if key not in out:
            out[key] = e
        elif out[key] is not None:
            out[key] = None if e is None else max(e, out[key] or 0.0)
    return out
