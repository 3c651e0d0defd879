"""Per-unit statistics over runs.jsonl records: means, bootstrap CIs, Welch tests, noise.

Pure functions over stored records (see lab/results.py for the schema), so dashboards, ``lab
show`` and notebooks agree on every number. Why bootstrap: repeats are few (3-10) and counts
from randomised layouts are not normal; why refuse mixed timing modes or backends: icount guest
time and wall-clock time, or a model and a guest, are different quantities that a mean would
silently blend.
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
from scipy import stats as sps

from .errors import LabError, UsageError

__all__ = [
    "per_unit",
    "guest_ns_per_unit",
    "meminfo_change",
    "bootstrap_ci",
    "welch",
    "welch_ci",
    "cv",
    "is_noisy",
    "check_comparable",
    "summarize",
    "MEMINFO_KEYS",
    "RNG_KW",
    "split_test",
    "holm",
]

#: meminfo fields whose change over a run summarize() reports (kB).
MEMINFO_KEYS = ("PageTables", "LowFree")

Record = dict[str, Any]

# scipy >= 1.15 takes `rng`; older releases only `random_state` (SPEC 7 transition).
RNG_KW = "rng" if "rng" in inspect.signature(sps.bootstrap).parameters else "random_state"


def _units(r: Record) -> float:
    units = r.get("units")
    if not isinstance(units, int | float) or units <= 0:
        raise LabError(f"record {r.get('run_id')}#{r.get('repeat')} has no positive 'units'")
    return float(units)


def per_unit(records: list[Record], counter: str) -> np.ndarray | None:
    """``counts[counter] / units`` per record; None when any record lacks the counter.

    A counter absent from a kernel is recorded under ``absent``, never as 0, and an average
    of present and absent is meaningless, so partial absence also gives None.
    Example: ``per_unit(recs, "__pte_alloc")`` -> array([6.7, 6.6, 6.8]) PTE pages per fork.
    """
    if not records or any(counter not in r.get("counts", {}) for r in records):
        return None
    return np.array([r["counts"][counter] / _units(r) for r in records], dtype=float)


def guest_ns_per_unit(records: list[Record]) -> np.ndarray | None:
    """Guest time per unit (ns); None when a record has no guest time."""
    if not records or any(not isinstance(r.get("guest_elapsed_ns"), int | float) for r in records):
        return None
    return np.array([r["guest_elapsed_ns"] / _units(r) for r in records], dtype=float)


def meminfo_change(records: list[Record], key: str) -> np.ndarray | None:
    """``meminfo_after[key] - meminfo_before[key]`` per record (kB, whole run, not per unit)."""
    out = []
    for r in records:
        before, after = r.get("meminfo_before") or {}, r.get("meminfo_after") or {}
        if key not in before or key not in after:
            return None
        out.append(after[key] - before[key])
    return np.array(out, dtype=float) if out else None


def bootstrap_ci(values: Iterable[float], confidence: float = 0.95, n_resamples: int = 2000,
                 seed: int = 0) -> tuple[float, float, float]:
    """(mean, lo, hi) with a bootstrap CI of the mean (BCa, percentile if BCa degenerates).

    n == 0 gives all NaN; n == 1 gives the value with NaN bounds (no spread to resample);
    identical values give a zero-width interval. Example: ``bootstrap_ci([1, 2, 3])``.
    """
    x = np.asarray(list(values), dtype=float)
    x = x[~np.isnan(x)]
    if x.size == 0:
        return (math.nan, math.nan, math.nan)
    mean = float(x.mean())
    if x.size == 1:
        return (mean, math.nan, math.nan)
    if np.all(x == x[0]):
        return (mean, mean, mean)
    lo, hi = math.nan, math.nan
    for method in ("BCa", "percentile"):
        with np.errstate(all="ignore"):
            res = sps.bootstrap((x,), np.mean, confidence_level=confidence,
                                n_resamples=n_resamples, method=method,
                                **{RNG_KW: np.random.default_rng(seed)})
        lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
        if not (math.isnan(lo) or math.isnan(hi)):
            break
    return (mean, lo, hi)


def _welch(a: Iterable[float], b: Iterable[float],
           confidence: float = 0.95) -> tuple[float, float, float, float]:
    """(rel, p, lo, hi): the one Welch test behind :func:`welch` and :func:`welch_ci`."""
    x, y = np.asarray(list(a), dtype=float), np.asarray(list(b), dtype=float)
    if x.size == 0 or y.size == 0:
        return (math.nan, math.nan, math.nan, math.nan)
    ma, mb = float(x.mean()), float(y.mean())
    if ma == 0:
        rel = 0.0 if mb == 0 else math.copysign(math.inf, mb)
    else:
        rel = (mb - ma) / abs(ma)
    if x.size < 2 or y.size < 2:
        return (rel, math.nan, math.nan, math.nan)
    if np.all(x == x[0]) and np.all(y == y[0]):
        return (rel, 1.0 if ma == mb else 0.0, rel, rel)
    res = sps.ttest_ind(y, x, equal_var=False)
    ci = res.confidence_interval(confidence_level=confidence)
    lo, hi = ((float(ci.low) / abs(ma), float(ci.high) / abs(ma)) if ma != 0
              else (math.nan, math.nan))
    return (rel, float(res.pvalue), lo, hi)


def welch(a: Iterable[float], b: Iterable[float]) -> tuple[float, float]:
    """(relative difference of b's mean from a's, Welch's two-sided p-value).

    ``a`` is the baseline: rel_diff = (mean(b) - mean(a)) / |mean(a)|. With zero variance in
    both groups (deterministic icount/norandmaps runs) the difference is exact: p is 0.0 when
    the means differ and 1.0 when they are equal. Fewer than 2 values on a side gives NaN p.
    """
    rel, p, _, _ = _welch(a, b)
    return (rel, p)


def welch_ci(a: Iterable[float], b: Iterable[float],
             confidence: float = 0.95) -> tuple[float, float]:
    """The CI of :func:`welch`'s relative difference: Welch's t interval of
    ``mean(b) - mean(a)``, over ``|mean(a)|``.

    Why this interval: it is the test's own, so it excludes 0 exactly when Welch's p is below
    1 - confidence, and a chart of the difference with this CI agrees with the p printed
    beside it. The baseline mean in the denominator is taken as exact (its spread is in the
    numerator's interval already). Zero variance on both sides gives the exact difference
    (a zero-width interval); fewer than 2 values on a side, or a baseline mean of 0, NaN.
    Example: ``welch_ci([10, 10.2, 9.8], [11, 11.1, 10.9])`` -> about (0.058, 0.142).
    """
    _, _, lo, hi = _welch(a, b, confidence)
    return (lo, hi)


def cv(values: Iterable[float]) -> float:
    """Coefficient of variation (sample sd / |mean|); NaN for n < 2 or a zero mean of non-zeros."""
    x = np.asarray(list(values), dtype=float)
    if x.size < 2:
        return math.nan
    mean = float(x.mean())
    sd = float(x.std(ddof=1))
    if mean == 0:
        return 0.0 if sd == 0 else math.nan
    return sd / abs(mean)


def is_noisy(values: Iterable[float], threshold: float = 0.05) -> bool:
    """True when the CV exceeds ``threshold``; False when it cannot be told (n < 2)."""
    c = cv(values)
    return not math.isnan(c) and c > threshold


def check_comparable(records: list[Record], allow_mixed: bool = False) -> None:
    """Refuse records from different timing modes or backends unless ``allow_mixed``."""
    if allow_mixed:
        return
    problems = []
    for key, why in (("timing", "guest times from different clocks are not comparable"),
                     ("backend", "counts from different tracers (or a model) are not comparable")):
        seen = sorted({str(r.get(key)) for r in records})
        if len(seen) > 1:
            problems.append(f"records mix {key} {', '.join(seen)} ({why})")
    if problems:
        raise UsageError("; ".join(problems)
                         + "; select runs of one kind, or pass allow_mixed=True")


def _ci_cell(values: np.ndarray | None, seed: int) -> dict[str, Any]:
    if values is None:
        return {}
    mean, lo, hi = bootstrap_ci(values, seed=seed)
    return {"mean": mean, "lo": lo, "hi": hi, "cv": cv(values), "n": int(values.size),
            "noisy": is_noisy(values)}


def _absent_reason(records: list[Record], counter: str) -> str:
    reasons = sorted({r.get("absent", {}).get(counter, "") for r in records} - {""})
    missing = sum(counter not in r.get("counts", {}) for r in records)
    if missing < len(records):
        return f"absent in {missing} of {len(records)} records" + (
            f" ({'; '.join(reasons)})" if reasons else "")
    return "; ".join(reasons) or "not recorded"


def summarize(records: list[Record], allow_mixed: bool = False, seed: int = 0,
              clocks: dict[str, Callable[[list[Record]], np.ndarray | None]] | None = None,
              ) -> list[dict[str, Any]]:
    """One row per (config, workload, params): per-unit mean/CI/CV/n of every counter.

    Each row: config, workload, params, unit, n, backends, timing, simulated, extrapolated
    (why a simulated row is outside its model's fitted range; empty otherwise), run_ids,
    counters{name: {mean, lo, hi, cv, n, noisy} or {absent: why}}, guest_ns_per_unit{...},
    meminfo_change_kb{PageTables: {...}, LowFree: {...}}. Records whose params differ are kept
    in separate rows (per-unit figures depend on them). With ``clocks`` (name -> per-unit
    series of a group of records, lab/clocks.py), also clocks{name: {...} or {} where the
    row's records lack that clock}: time in each clock is summarised like guest time.
    """
    check_comparable(records, allow_mixed)
    groups: dict[tuple[str, str, str], list[Record]] = {}
    for r in records:
        key = (str(r.get("config")), str(r.get("workload")),
               json.dumps(r.get("params", {}), sort_keys=True))
        groups.setdefault(key, []).append(r)
    rows = []
    for (config, workload, params), recs in sorted(groups.items()):
        names = sorted({n for r in recs for n in (*r.get("counts", {}), *r.get("absent", {}))})
        counters: dict[str, dict[str, Any]] = {}
        for name in names:
            vals = per_unit(recs, name)
            counters[name] = _ci_cell(vals, seed) if vals is not None else {
                "absent": _absent_reason(recs, name)}
        rows.append({
            "config": config, "workload": workload, "params": json.loads(params),
            "unit": recs[0].get("unit"), "n": len(recs),
            "backends": sorted({str(r.get("backend")) for r in recs}),
            "timing": sorted({str(r.get("timing")) for r in recs}),
            "simulated": any(bool(r.get("simulated")) for r in recs),
            "extrapolated": sorted({str(w) for r in recs for w in r.get("extrapolated") or []}),
            "run_ids": sorted({str(r.get("run_id")) for r in recs}),
            "counters": counters,
            "guest_ns_per_unit": _ci_cell(guest_ns_per_unit(recs), seed),
            "meminfo_change_kb": {k: _ci_cell(meminfo_change(recs, k), seed) for k in MEMINFO_KEYS},
            **({"clocks": {name: _ci_cell(get(recs), seed) for name, get in clocks.items()}}
               if clocks else {}),
        })
    return rows


def split_test(a: int, b: int, total_a: int, total_b: int) -> float:
    """Two-sided p that ``a`` and ``b`` ticks of one symbol differ only by chance.

    Why a binomial test: profile ticks are counts. Given the symbol's a + b ticks, under the
    null (the symbol takes the same share of each side's kernel time) each tick lands on side
    B with probability total_b / (total_a + total_b), so b ~ Binomial(a + b, that share).
    Example: 40 vs 20 ticks of 1000 vs 1000 gives p ~ 0.013; 6 vs 1 gives p ~ 0.125.
    NaN when a side has no ticks at all (nothing to compare with).
    """
    n = a + b
    if n == 0 or total_a <= 0 or total_b <= 0:
        return math.nan
    return float(sps.binomtest(b, n, total_b / (total_a + total_b)).pvalue)


def holm(pvalues: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input's order (NaN stays NaN, uncounted).

    Why: a profile diff tests every symbol at once; out of hundreds of rows some reach p < 0.05
    by chance. Holm controls the chance of even one false mark, like Bonferroni, but rejects
    more when several rows are truly different.
    """
    idx = sorted((i for i, p in enumerate(pvalues) if not math.isnan(p)), key=lambda i: pvalues[i])
    m = len(idx)
    out = [math.nan] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(idx):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out
