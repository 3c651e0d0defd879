"""Modelled cycles per unit beside icount time, for ``lab trace/show --cost-model`` (issue 12).

Kept apart from ``lab show``'s own tables (the shared report layer replaces those): these are
the only two entry points the commands call.
"""

from __future__ import annotations

import math
from typing import Any

from rich.table import Table

from .. import ui
from ..stats import bootstrap_ci
from . import load_model, per_unit, tlb_geometry

__all__ = ["costmodel_data", "print_costmodel", "cmd_list"]

_COLUMNS = [
    ("cycles", "cycles"),
    ("tlb_cycles", "TLB cyc"),
    ("invlpg", "INVLPG"),
    ("walks", "walks"),
    ("icount_ns", "icount ns"),
]


def costmodel_data(records: list[dict[str, Any]], model_name: str) -> dict[str, Any]:
    """Per workload/params/config: mean and 95 % CI per unit of each column, and the
    relative difference of modelled cycles and icount time from the first configuration."""
    model = load_model(model_name)
    rows = []
    by_cell: dict[tuple[str, str], dict[str, float]] = {}
    for (config, workload, params), vals in per_unit(model, records).items():
        row: dict[str, Any] = {"config": config, "workload": workload, "params": params,
                               "repeats": len(vals["cycles"])}
        for key, _ in _COLUMNS:
            mean, lo, hi = bootstrap_ci(vals[key])
            row[key] = {"mean": mean, "lo": lo, "hi": hi}
        base = by_cell.setdefault((workload, params), {
            "cycles": row["cycles"]["mean"], "icount_ns": row["icount_ns"]["mean"]})
        for key in ("cycles", "icount_ns"):
            row[f"{key}_vs_first"] = (row[key]["mean"] / base[key] - 1) if base[key] else None
        rows.append(row)
    recorded = sorted({g for r in records if (g := tlb_geometry(model, r)) is not None})
    return {"model": model.name, "clock_ghz": model.clock_ghz,
            "tlb_geometry_from": recorded, "rows": rows}


def _fmt(cell: dict[str, float]) -> str:
    mean, lo, hi = cell["mean"], cell["lo"], cell["hi"]
    digits = 0 if abs(mean) >= 1000 else 1
    if math.isnan(lo) or math.isnan(hi):
        return f"{mean:,.{digits}f}"
    return f"{mean:,.{digits}f} ±{(hi - lo) / 2:,.{digits}f}"


def print_costmodel(records: list[dict[str, Any]], model_name: str) -> None:
    data = costmodel_data(records, model_name)
    if not data["rows"]:
        ui.warn(f"the run has no cost-plugin counts: trace it with --cost-model {model_name}")
        return
    geo = ", ".join(data["tlb_geometry_from"])
    table = Table(title=f"per unit, modelled cycles on {data['model']} beside icount "
                  f"(TLB geometry simulated at run time: {geo}); Δ: vs the first config")
    table.add_column("workload", overflow="fold")
    table.add_column("config", overflow="fold")
    for _, title in _COLUMNS:
        table.add_column(title, justify="right", overflow="fold")
    table.add_column("Δ cyc", justify="right")
    table.add_column("Δ icount", justify="right")
    for row in sorted(data["rows"], key=lambda r: (r["workload"], r["params"])):
        dc, di = row["cycles_vs_first"], row["icount_ns_vs_first"]
        table.add_row(row["workload"], row["config"], *(_fmt(row[k]) for k, _ in _COLUMNS),
                      "-" if dc is None else f"{dc:+.1%}", "-" if di is None else f"{di:+.1%}")
    ui.out_console.print(table)


def cmd_list(json_out: bool) -> list[dict[str, Any]]:
    """``lab cost-model list``: every model with its costs and their sources."""
    from . import list_models

    out: list[dict[str, Any]] = []
    for name in list_models():
        m = load_model(name)
        out.append({"name": m.name, "description": m.description, "clock_ghz": m.clock_ghz,
                    "tlb": {k: list(v) for k, v in m.tlb.items()}, "costs": m.costs,
                    "sources": m.sources})
    if not json_out:
        for m_ in out:
            ui.out_console.print(f"[bold]{m_['name']}[/]: {m_['description']}")
            tlb = ", ".join(f"{k} {e}x{w}" if e else f"{k} -"
                            for k, (e, w) in m_["tlb"].items())
            ui.out_console.print(f"  TLB: {tlb}")
            ui.out_console.print(f"       source: {m_['sources']['tlb']['source']}")
            for k, v in m_["costs"].items():
                src = m_["sources"][k]
                ui.out_console.print(f"  {k} = {v:g} ({src['basis']}): {src['source']}",
                                     soft_wrap=True)
    return out
