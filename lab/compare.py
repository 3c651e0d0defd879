"""Figures that compare three or more configurations: gap recovered, taskpile lowmem slopes.

The UKVA question is not "is B faster than A" but "how much of the HIGHPTE cost does a
candidate take away": with a baseline A (built-highpte), a floor B (built-lowpte: no page
tables in highmem at all) and a candidate C (ukva), the share of the A → B gap that C
recovers is ``(mean(A) - mean(C)) / (mean(A) - mean(B))``: 1 means C is as good as having
no highmem page tables, 0 means no better than A. It applies to any per-unit figure (guest
time, highmem kmaps: the figures probes.toml marks, see :func:`gap_figures`). The CI comes
from a percentile bootstrap (scipy.stats.bootstrap, like every other CI in the lab) that
resamples the three configurations' repeats independently; with 3 repeats each it is wide,
and it is reported as such rather than hidden.

taskpile's lowmem cost per process is the slope of LowFree (plus the per-CPU page lists,
which hide pages that are free) against tasks alive, by least squares over every sample
of every repeat: one figure per configuration, in 4 kB pages per task.
"""

from __future__ import annotations

import functools
import json
import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import stats as sps

from .stats import RNG_KW, Record, guest_ns_per_unit, per_unit, welch
from .tracers import load_probe_set

__all__ = ["gap_recovered", "gap_table", "taskpile_slopes", "gap_figures", "GUEST_TIME"]

#: The label of guest time per unit among the figures.
GUEST_TIME = "guest time"

PAGE_KB = 4.0

Figure = Callable[[list[Record]], "np.ndarray | None"]


def _counter_figure(counter: str) -> Figure:
    return lambda recs: per_unit(recs, counter)


@functools.cache
def gap_figures() -> dict[str, Figure]:
    """Per-unit figures the gap table reports, by label: guest time, then every counter the
    default probes.toml marks with ``figure = "LABEL"`` (highmem kmaps), so the counter
    behind a label is named in one place."""
    figures: dict[str, Figure] = {GUEST_TIME: guest_ns_per_unit}
    for p in load_probe_set():
        if p.figure:
            figures[p.figure] = _counter_figure(p.name)
    return figures


def gap_recovered(base: np.ndarray, floor: np.ndarray, cand: np.ndarray,
                  confidence: float = 0.95, n_resamples: int = 4000,
                  seed: int = 0) -> dict[str, float]:
    """Share of the base → floor gap that cand recovers, with a bootstrap percentile CI.

    Returns mean, lo, hi and the gap itself (``mean(base) - mean(floor)``, in the figure's
    unit). When the gap is zero the share is undefined: NaN, never a made-up 0 or 1.
    Example: base [10, 10], floor [6, 6], cand [7, 7] -> mean 0.75.
    """
    a, b, c = (np.asarray(x, dtype=float) for x in (base, floor, cand))
    gap = float(a.mean() - b.mean())
    if gap == 0 or not all(x.size for x in (a, b, c)):
        return {"mean": math.nan, "lo": math.nan, "hi": math.nan, "gap": gap}
    mean = float((a.mean() - c.mean()) / gap)
    # scipy resamples only what has spread to resample: a single repeat is a fixed value
    # (it cannot be resampled, and every resample of it would be itself).
    samples = [x for x in (a, b, c) if x.size > 1]
    if not samples:
        return {"mean": mean, "lo": mean, "hi": mean, "gap": gap}

    def share(*resampled: np.ndarray, axis: int = -1) -> np.ndarray:
        it = iter(resampled)
        ma, mb, mc = (next(it).mean(axis=axis) if x.size > 1 else x.mean() for x in (a, b, c))
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(ma != mb, (ma - mc) / (ma - mb), np.nan)

    with warnings.catch_warnings():  # a resample with no gap left is undefined: dropped below
        warnings.simplefilter("ignore")
        res = sps.bootstrap(samples, share, vectorized=True, n_resamples=n_resamples,
                            confidence_level=confidence, method="percentile",
                            **{RNG_KW: np.random.default_rng(seed)})
    lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if math.isnan(lo) or math.isnan(hi):
        shares = np.asarray(res.bootstrap_distribution, dtype=float)
        shares = shares[~np.isnan(shares)]
        tail = (1 - confidence) / 2 * 100
        lo, hi = (float(np.percentile(shares, tail)), float(np.percentile(shares, 100 - tail))
                  ) if shares.size else (math.nan, math.nan)
    return {"mean": mean, "lo": lo, "hi": hi, "gap": gap}


def _cell_key(r: Record) -> tuple[str, str]:
    return str(r.get("workload")), json.dumps(r.get("params", {}), sort_keys=True)


def _shares(figures: dict[str, Figure], base: list[Record], floor: list[Record],
            cand: list[Record], seed: int) -> dict[str, dict[str, float]]:
    """Per figure: gap_recovered, the three means, and the gap as a change of the baseline
    from the floor (``gap_pct``, with Welch's ``gap_p``): what the baseline costs, the
    question the share answers a part of. A figure one side lacks is left out."""
    out = {}
    for label, get in figures.items():
        a, b, c = get(base), get(floor), get(cand)
        if a is None or b is None or c is None:
            continue
        with warnings.catch_warnings():  # scipy's precision note on near-identical repeats
            warnings.simplefilter("ignore", RuntimeWarning)
            rel, p = welch(b, a)
        out[label] = {**gap_recovered(a, b, c, seed=seed), "base": float(a.mean()),
                      "floor": float(b.mean()), "candidate": float(c.mean()),
                      "gap_pct": rel * 100, "gap_p": p}
    return out


def gap_table(records: list[Record], base: str, floor: str, seed: int = 0,
              clocks: dict[str, Figure] | None = None) -> list[dict[str, Any]]:
    """For every workload cell and every other configuration: the share of each gap_figures()
    gap (base → floor) that the configuration recovers. Cells lacking base or floor are
    skipped; a figure a configuration lacks (e.g. no guest time) is left out of its row.

    ``clocks`` (name -> per-unit time series, lab/clocks.py): each row also gets ``clocks``,
    the same shares with time measured in each clock (icount, modelled cycles per model)."""
    cells: dict[tuple[str, str], dict[str, list[Record]]] = {}
    for r in records:
        cells.setdefault(_cell_key(r), {}).setdefault(str(r.get("config")), []).append(r)
    rows = []
    for (workload, params), by_cfg in sorted(cells.items()):
        if base not in by_cfg or floor not in by_cfg:
            continue
        for cfg in sorted(set(by_cfg) - {base, floor}):
            trio = (by_cfg[base], by_cfg[floor], by_cfg[cfg])
            row = {"workload": workload, "params": params, "config": cfg,
                   "base": base, "floor": floor, "unit": by_cfg[cfg][0].get("unit"),
                   "figures": _shares(gap_figures(), *trio, seed=seed)}
            if clocks:
                row["clocks"] = _shares(clocks, *trio, seed=seed)
            rows.append(row)
    return rows


def _free_kb(sample: dict[str, Any], zone: str) -> float | None:
    """Free kB of ``zone`` ("Low" or "High") in a taskpile sample: ``{zone}Free_kB`` plus the
    per-CPU lists (``{zone}Pcp_kB``): pages parked on a CPU's list are not in the free count,
    and the stock kernel parks many."""
    free = sample.get(f"{zone}Free_kB")
    if not isinstance(free, int | float):
        return None
    pcp = sample.get(f"{zone}Pcp_kB", 0)  # older taskpile reports have no per-CPU lists
    return float(free) + (float(pcp) if isinstance(pcp, int | float) else 0.0)


def taskpile_slopes(records: list[Record]) -> dict[str, dict[str, Any]]:
    """Per configuration: lowmem, PageTables and highmem used per task alive (least-squares
    slope over every taskpile sample, in 4 kB pages per task, with a 95 % CI), and the
    samples used."""
    points: dict[str, list[tuple[float, float | None, float | None, float | None]]] = {}
    for r in records:
        if r.get("workload") != "taskpile" or not isinstance(r.get("report"), dict):
            continue
        for s in r["report"].get("samples") or []:
            if isinstance(s, dict) and isinstance(s.get("tasks"), int):
                pt = s.get("PageTables_kB")
                points.setdefault(str(r.get("config")), []).append(
                    (float(s["tasks"]), _free_kb(s, "Low"),
                     float(pt) if isinstance(pt, int | float) else None, _free_kb(s, "High")))
    out: dict[str, dict[str, Any]] = {}
    for cfg, pts in sorted(points.items()):
        row: dict[str, Any] = {"samples": len(pts),
                               "max_tasks": int(max(p[0] for p in pts))}
        for label, idx, sign in (("lowmem_pages_per_task", 1, -1.0),
                                 ("pagetables_pages_per_task", 2, 1.0),
                                 ("highmem_pages_per_task", 3, -1.0)):
            xy = [(p[0], p[idx]) for p in pts if p[idx] is not None]
            if len({x for x, _ in xy}) < 3:
                row[label] = {"mean": math.nan, "lo": math.nan, "hi": math.nan}
                continue
            fit = sps.linregress([x for x, _ in xy], [y for _, y in xy])
            half = float(sps.t.ppf(0.975, len(xy) - 2) * fit.stderr)
            slope = sign * float(fit.slope) / PAGE_KB
            row[label] = {"mean": slope, "lo": slope - half / PAGE_KB,
                          "hi": slope + half / PAGE_KB}
        out[cfg] = row
    return out
