"""The report layer: every figure `lab show`, `lab show --json` and the dashboard print.

Why one layer: the same numbers used to be computed twice (`lab show` and the dashboard each
ran their own Welch tests, and named their headline counters in their own lists), and two
copies drift. :func:`build_report` computes, once, over stored records:

- per (configuration, workload, parameters): each counter per unit, guest time per unit and
  the meminfo change, as mean, 95 % bootstrap CI, n, CV and the "noisy" mark
  (:func:`lab.stats.summarize`);
- for each of those cells, the difference from the baseline configuration's cell with the
  same workload and parameters: Δ % of the mean and Welch's p (:func:`lab.stats.welch`);
- with a gap (BASE, FLOOR), the share of it each other configuration recovers, with its
  bootstrap CI (:func:`lab.compare.gap_table`);
- when records carry cost-plugin counts, all of the above for time in each clock: icount
  and modelled cycles per machine model (:mod:`lab.clocks`), as ``clocks`` in each row and
  each gap row, described by the report's ``clocks`` list;
- taskpile's lowmem and PageTables pages per task (:func:`lab.compare.taskpile_slopes`) and
  the task counts each configuration reached, and why it stopped (:func:`taskpile_reached`);
- each run's provenance, from its manifest (:func:`provenance`).

Renderers only format what it returns. Which counters lead a table is data, not code: the
``headline``, ``chart`` and ``figure`` marks in lab/tracers/probes.toml (:func:`headline`).
The JSON form is versioned (:data:`SCHEMA_VERSION`, docs/json-schema.md); :func:`jsonable`
turns the report into strict JSON (no NaN or Infinity: null).
"""

from __future__ import annotations

import functools
import json
import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from .clocks import GUEST_CLOCKS, clocks
from .compare import GUEST_TIME, Figure, gap_table, taskpile_slopes
from .errors import UsageError
from .stats import (
    MEMINFO_KEYS,
    Record,
    guest_ns_per_unit,
    meminfo_change,
    per_unit,
    summarize,
    welch,
    welch_ci,
)
from .tracers import load_probe_set

__all__ = [
    "SCHEMA_VERSION",
    "Headline",
    "headline",
    "build_report",
    "group_key",
    "matches",
    "figure_cells",
    "jsonable",
    "GUEST_TIME",
    "taskpile_reached",
    "provenance",
]

#: Version of the JSON that `lab show --json` and `lab runs --json` print. Bump it when a key
#: changes meaning or goes away; adding a key keeps it (docs/json-schema.md).
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Headline:
    """The counters reports lead with, as probes.toml marks them.

    ``order``: `lab show` lists these first, in this order (``headline = N``).
    ``charted``: the dashboard's headline table and bar charts (``chart = true``).
    ``figures``: label -> counter of the named per-unit figures (``figure = "LABEL"``) that
    `lab show` compares with the baseline, besides guest time.
    """

    order: tuple[str, ...]
    charted: tuple[str, ...]
    figures: dict[str, str]

    def rank(self, name: str) -> tuple[int, str]:
        """Sort key: headline counters in their order, then the rest alphabetically."""
        return (self.order.index(name) if name in self.order else len(self.order), name)


@functools.cache
def headline() -> Headline:
    """The marks of the default probe set (the one file that names the headline counters)."""
    probes = load_probe_set()
    marked = sorted((p for p in probes if p.headline), key=lambda p: p.headline)
    return Headline(order=tuple(p.name for p in marked),
                    charted=tuple(p.name for p in sorted(
                        (p for p in probes if p.chart), key=lambda p: (p.headline or 1 << 30))),
                    figures={p.figure: p.name for p in probes if p.figure})


def group_key(workload: Any, params: Any) -> tuple[str, str]:
    """The cell a row or record belongs to: per-unit figures depend on the parameters."""
    return str(workload), json.dumps(params or {}, sort_keys=True)


def matches(config: str, baseline: str) -> bool:
    """A configuration name is the baseline, or one origin of it (``NAME @ host``)."""
    return config == baseline or config.startswith(f"{baseline} @ ")


_NO_COMPARISON = {"delta_pct": None, "welch_p": None, "delta_lo_pct": None,
                  "delta_hi_pct": None}


def _compare(base: np.ndarray | None, vals: np.ndarray | None) -> dict[str, float | None]:
    """Δ % of the mean from the baseline's, its 95 % CI (Welch's interval) and Welch's p;
    None where there is nothing."""
    if base is None or vals is None:
        return dict(_NO_COMPARISON)
    with warnings.catch_warnings():  # scipy's precision note on near-identical repeats
        warnings.simplefilter("ignore", RuntimeWarning)
        rel, p = welch(base, vals)
        lo, hi = welch_ci(base, vals)
    return {"delta_pct": rel * 100, "welch_p": p, "delta_lo_pct": lo * 100,
            "delta_hi_pct": hi * 100}


def _values(recs: list[Record],
            clock_figures: dict[str, Figure]) -> dict[tuple[str, str], np.ndarray | None]:
    """Per-record values of every figure a row's cells summarise, keyed like the cells."""
    names = {n for r in recs for n in r.get("counts", {})}
    out: dict[tuple[str, str], np.ndarray | None] = {
        ("counters", n): per_unit(recs, n) for n in names}
    out[("guest_ns_per_unit", "")] = guest_ns_per_unit(recs)
    out.update({("meminfo_change_kb", k): meminfo_change(recs, k) for k in MEMINFO_KEYS})
    out.update({("clocks", k): get(recs) for k, get in clock_figures.items()})
    return out


def _cells(row: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    out = {("counters", n): c for n, c in row["counters"].items()}
    out[("guest_ns_per_unit", "")] = row["guest_ns_per_unit"]
    out.update({("meminfo_change_kb", k): c for k, c in row["meminfo_change_kb"].items()})
    out.update({("clocks", k): c for k, c in row.get("clocks", {}).items()})
    return out


def build_report(records: list[Record], *, baseline: str | None = None,
                 gap: tuple[str, str] | None = None, allow_mixed: bool = False,
                 seed: int = 0, cost_models: list[str] | None = None) -> dict[str, Any]:
    """Everything a report shows, computed once. Example::

        rep = build_report(run.records(), gap=("built-highpte", "built-lowpte"))
        rep["summary"][1]["counters"]["__pte_alloc"]   # {mean, lo, hi, n, cv, noisy,
                                                        #  delta_pct, welch_p}

    ``baseline``: the configuration each row is compared with, per workload and parameters;
    None takes the first configuration of each (`lab show`'s rule). A row whose cell has no
    baseline (the baseline was not measured with those parameters) says ``baseline: None``.
    Every summarised cell gains ``delta_pct``, its CI ``delta_lo_pct``/``delta_hi_pct`` and
    ``welch_p`` (None in the baseline's own row or where either side lacks the figure).

    ``cost_models``: when records carry cost-plugin counts, the machine models to give
    modelled cycles in (None: every model in lab/costmodel/models). The report then lists
    its ``clocks`` (guest time first), and every row and gap row has a ``clocks`` cell per
    clock, computed exactly like guest time. Raises UsageError for a baseline no record has,
    an unknown model, or mixed timing modes or backends unless ``allow_mixed``.
    """
    clock_list = clocks(records, cost_models)
    figures = {c.name: c.figure for c in clock_list}
    rows = summarize(records, allow_mixed=allow_mixed, seed=seed,
                     clocks=figures) if records else []
    if baseline is not None and rows and not any(matches(r["config"], baseline) for r in rows):
        known = ", ".join(sorted({r["config"] for r in rows}))
        raise UsageError(f"baseline {baseline!r} is not among the configurations: {known}")
    by_cell: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        by_cell.setdefault(group_key(row["workload"], row["params"]), []).append(row)
    for key, group in by_cell.items():
        base = group[0] if baseline is None else next(
            (r for r in group if matches(r["config"], baseline)), None)
        values = {r["config"]: _values([x for x in records if str(x.get("config")) == r["config"]
                                        and group_key(x.get("workload"), x.get("params")) == key],
                                       figures)
                  for r in group}
        for row in group:
            row["baseline"] = base["config"] if base else None
            for k, cell in _cells(row).items():
                if "mean" not in cell:   # absent or not recorded: nothing to compare
                    continue
                if base is None or row is base:
                    cell.update(_NO_COMPARISON)
                else:
                    cell.update(_compare(values[base["config"]].get(k), values[row["config"]][k]))
    report: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "baseline": baseline,
                              "summary": rows}
    if clock_list:
        report["clocks"] = [c.describe() for c in clock_list]
    if gap:
        report["gap"] = {"baseline": gap[0], "floor": gap[1],
                         "rows": gap_table(records, *gap, seed=seed, clocks=figures)}
    slopes = taskpile_slopes(records)
    if slopes:
        report["taskpile_slopes"] = slopes
        report["taskpile_reached"] = taskpile_reached(records)
    return report


def taskpile_reached(records: list[Record]) -> dict[str, dict[str, Any]]:
    """Per configuration: how many tasks each taskpile repeat reached, out of how many asked,
    and why it stopped (``max_tasks``, or low memory: the lowmem floor is the finding).

    Why: a slope says what a task costs; the count reached says how far the configuration got
    before lowmem ran out, which is the HIGHPTE argument in one number.
    Example: {"lowpte": {"requested": 512, "reached": [384], "stopped_because": ["lowmem"]}}.
    """
    out: dict[str, dict[str, Any]] = {}
    for r in records:
        rep = r.get("report")
        if r.get("workload") != "taskpile" or not isinstance(rep, dict):
            continue
        tasks = [s["tasks"] for s in rep.get("samples") or []
                 if isinstance(s, dict) and isinstance(s.get("tasks"), int)]
        if not tasks:
            continue
        row = out.setdefault(str(r.get("config")), {
            "requested": (r.get("params") or {}).get("tasks"), "reached": [],
            "stopped_because": []})
        row["reached"].append(max(tasks))
        row["stopped_because"].append(str(rep.get("stopped_because") or "?"))
    return dict(sorted(out.items()))


def _kernel_facts(k: Any) -> dict[str, Any]:
    if not isinstance(k, dict):
        return {"kernel": k}
    return {key: k.get(key) for key in ("source", "package", "package_version", "release",
                                        "config_sha256", "bzimage_sha256", "patches")
            if k.get(key) is not None}


def provenance(run_id: str, manifest: dict[str, Any]) -> dict[str, Any]:
    """Where one run's numbers came from, as a report prints it: the lab (version, commit),
    backend, clock (timing), host and status, and per configuration the kernel (source
    package version, release, .config sha256), the kernel command line and the QEMU version.

    Why here: the provenance is what makes a pasted number checkable, and every renderer must
    state the same facts.
    """
    host: dict[str, Any] = manifest["host"] if isinstance(manifest.get("host"), dict) else {}
    per: dict[str, Any] = (manifest["configs"] if isinstance(manifest.get("configs"), dict)
                           else {})
    configs = {}
    for name in manifest.get("config_names") or list(per):
        c: dict[str, Any] = per[name] if isinstance(per.get(name), dict) else {}
        configs[str(name)] = {"kernel_name": c.get("kernel_name"),
                              **_kernel_facts(c.get("kernel")),
                              "cmdline": c.get("cmdline"), "qemu_version": c.get("qemu_version"),
                              "accel": c.get("accel"), "reboots": c.get("reboots"),
                              "crng_ready": c.get("crng_ready")}
    return {"run_id": run_id, "kind": manifest.get("kind"), "plan": manifest.get("plan_name"),
            "backend": manifest.get("backend"), "simulated": bool(manifest.get("simulated")),
            "timing": manifest.get("timing"), "lab_version": manifest.get("lab_version"),
            "git_commit": manifest.get("git_commit"), "host": host.get("hostname"),
            "started_at": manifest.get("started_at"), "status": manifest.get("status"),
            "configs": configs,
            # a simulated run: its model, and where it answered outside the fitted range
            **({"sim_model": sorted({str(c["sim_model"]) for c in per.values()
                                     if isinstance(c, dict) and c.get("sim_model")}),
                "extrapolated": sorted({str(w) for c in per.values() if isinstance(c, dict)
                                        for w in c.get("extrapolated") or []})}
               if manifest.get("simulated") else {})}


def figure_cells(row: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A row's named figures by label (counter figures, guest time, then modelled cycles per
    machine model: ``skylake cycles``), as summarised."""
    out = {label: row["counters"].get(name, {}) for label, name in headline().figures.items()}
    out[GUEST_TIME] = row["guest_ns_per_unit"]
    out.update({f"{name} cycles": cell for name, cell in row.get("clocks", {}).items()
                if name not in GUEST_CLOCKS})
    return out


def jsonable(data: Any) -> Any:
    """Strict JSON: NaN and ±Infinity (a single repeat's CI, an undefined share) become null,
    which every JSON parser reads (Python's NaN token is not JSON)."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: jsonable(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [jsonable(v) for v in data]
    return data

