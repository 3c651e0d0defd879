"""What `lab show` prints, and the data behind it: one run's report (lab/report.py) as
tables on the terminal, or as the versioned JSON document (docs/json-schema.md).

Shared by `lab show`, and by `lab trace` and `lab study`, which show what they measured.
Nothing here computes a statistic: it formats what :func:`lab.report.build_report` returns.
"""

from __future__ import annotations

from typing import Any

from .. import ui
from ..clocks import clock_words
from ..errors import UsageError
from ..report import build_report, figure_cells, headline
from ..results import open_run

__all__ = ["gap_of", "show_data", "print_show"]


def gap_of(manifest: dict[str, Any], gap: str | None) -> tuple[str, str] | None:
    """--gap A,B, else the study plan's gap, else none."""
    if gap is None:
        g = manifest.get("gap")
        return (str(g[0]), str(g[1])) if isinstance(g, list) and len(g) == 2 else None
    names = [n.strip() for n in gap.split(",") if n.strip()]
    if len(names) != 2 or names[0] == names[1]:
        raise UsageError(f"--gap needs two different configurations BASELINE,FLOOR, got {gap!r}")
    known = set(manifest.get("config_names") or [])
    if known and not set(names) <= known:
        raise UsageError(f"--gap {gap}: the run has configurations {', '.join(sorted(known))}")
    return names[0], names[1]


def show_data(run_id: str, gap: str | None = None,
              cost_model: str | None = None) -> dict[str, Any]:
    """One run's report with the run's id and manifest: what `lab show --json` prints.

    When the run has cost-plugin counts, time is also given in modelled cycles under every
    machine model, or only ``cost_model`` (the report's ``clocks``)."""
    run = open_run(run_id)
    records = run.records()
    manifest = run.manifest()
    report = build_report(records, gap=gap_of(manifest, gap),
                          cost_models=[cost_model] if cost_model else None)
    return {"schema_version": report.pop("schema_version"), "run_id": run.run_id,
            "manifest": manifest, **report}


def _fmt_cell(cell: dict[str, Any]) -> str:
    if "absent" in cell:
        return "absent"
    mean, lo, hi = cell.get("mean"), cell.get("lo"), cell.get("hi")
    if mean is None:
        return "-"
    if lo is None or hi is None or lo != lo or hi != hi:  # NaN bounds: a single repeat
        return f"{mean:,.1f}"
    return f"{mean:,.1f} ±{(hi - lo) / 2:,.1f}" + (" (noisy)" if cell.get("noisy") else "")


def _comparisons(rows: list[dict[str, Any]]) -> list[str]:
    """Relative difference of each config against the first, with its 95% CI and Welch's p,
    per figure (time in each clock among them)."""
    if len(rows) < 2:
        return []
    base = rows[0]
    lines = []
    for row in rows[1:]:
        parts = []
        for label, cell in figure_cells(row).items():
            ref = figure_cells(base)[label]
            if "mean" not in cell or "mean" not in ref or min(cell["n"], ref["n"]) < 2:
                continue
            lo, hi = cell.get("delta_lo_pct"), cell.get("delta_hi_pct")
            ci = (f" [{lo:+.1f}, {hi:+.1f}]" if lo is not None and hi is not None
                  and lo == lo and hi == hi and lo != hi else "")
            parts.append(f"{label} {cell['delta_pct']:+.1f}%{ci} "
                         f"(Welch p={cell['welch_p']:.2g})")
        if parts:
            lines.append(f"{row['config']} vs {base['config']}: " + ", ".join(parts))
    return lines


def _fmt_share(f: dict[str, Any]) -> str:
    if f["mean"] != f["mean"]:  # NaN: no gap to recover
        return "no gap"
    ci = f" [{f['lo']:.0%}, {f['hi']:.0%}]" if f["lo"] == f["lo"] else ""
    return f"{f['mean']:.0%}{ci}"


def _fmt_cost(f: dict[str, Any]) -> str:
    pct, p = f.get("gap_pct"), f.get("gap_p")
    if pct is None or pct != pct or abs(pct) == float("inf"):
        return "-"
    return f"{pct:+.1f}%" + ("" if p is None or p != p else f" p={p:.2g}")


def _print_clock_gap(data: dict[str, Any]) -> None:
    """The gap table in each clock: the baseline's cost over the floor and the share each
    candidate recovers, time measured in icount and in modelled cycles per machine model."""
    from rich import box
    from rich.table import Table

    g = data.get("gap", {})
    rows = [r for r in g.get("rows", []) if r.get("clocks")]
    if not rows:
        return
    table = Table(title=f"{g['baseline']} → {g['floor']} gap in each clock: cost = "
                        f"{g['baseline']} vs {g['floor']} (Welch p), recovered = mean [95% "
                        "CI]", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("workload", "config", "clock", "cost", "recovered"):
        table.add_column(col, justify="right" if col in ("cost", "recovered") else "left")
    for r in rows:
        for i, (name, f) in enumerate(r["clocks"].items()):
            table.add_row(r["workload"] if i == 0 else "", r["config"] if i == 0 else "",
                          name, _fmt_cost(f), _fmt_share(f))
        table.add_section()
    ui.out_console.print(table)


def _print_derived(data: dict[str, Any]) -> None:
    """The gap-recovered tables (in each clock too) and the taskpile slopes, when the run has
    them."""
    from rich.table import Table

    if data.get("gap", {}).get("rows"):
        g = data["gap"]
        table = Table(title=f"share of the {g['baseline']} → {g['floor']} gap recovered "
                            "(mean [95% bootstrap CI]; per unit: baseline / floor / candidate)",
                      title_justify="left")
        for col in ("workload", "config", "guest µs", "recovered", "highmem kmaps", "removed"):
            table.add_column(col, justify="left" if col in ("workload", "config") else "right")
        for r in g["rows"]:
            t, k = r["figures"].get("guest time"), r["figures"].get("highmem kmaps")
            table.add_row(
                f"{r['workload']} (per {r['unit']})", r["config"],
                f"{t['base'] / 1e3:,.2f} / {t['floor'] / 1e3:,.2f} / {t['candidate'] / 1e3:,.2f}"
                if t else "-", _fmt_share(t) if t else "-",
                f"{k['base']:,.2f} / {k['floor']:,.2f} / {k['candidate']:,.2f}" if k else "-",
                _fmt_share(k) if k else "-")
        ui.out_console.print(table)
    _print_clock_gap(data)
    slopes = data.get("taskpile_slopes")
    if slopes:
        table = Table(title="taskpile: 4 kB pages per task alive (least-squares slope over all "
                            "samples, 95% CI)", title_justify="left")
        for col in ("config", "lowmem", "PageTables", "samples", "most tasks"):
            table.add_column(col, justify="left" if col == "config" else "right")
        for cfg, s in slopes.items():
            cells = [f"{s[k]['mean']:.2f} [{s[k]['lo']:.2f}, {s[k]['hi']:.2f}]"
                     if s[k]["mean"] == s[k]["mean"] else "-"
                     for k in ("lowmem_pages_per_task", "pagetables_pages_per_task")]
            table.add_row(cfg, *cells, str(s["samples"]), str(s["max_tasks"]))
        ui.out_console.print(table)


def print_show(run_id: str, gap: str | None = None, cost_model: str | None = None) -> None:
    """One table per workload and parameter set, the comparison lines, the derived tables,
    and warnings for kernel messages logged during a measurement or an unfinished run.

    With cost-plugin counts, modelled cycles per unit (every model, or ``cost_model``) are
    rows beside guest time, compared with the baseline like it, and the gap table is given
    in each clock."""
    from rich.table import Table

    data = show_data(run_id, gap, cost_model)
    m = data["manifest"]
    records = open_run(run_id).records()
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in data["summary"]:
        groups.setdefault(f"{r['workload']} {r['params']}", []).append(r)
    lead = headline()
    for label, rows in groups.items():
        sim = any(r["simulated"] for r in rows)
        beyond = sorted({w for r in rows for w in r.get("extrapolated") or []})
        title = (f"{label} — per {rows[0]['unit']}, mean ±95% CI half-width over repeats — "
                 f"{m.get('backend')}, {m.get('timing')}" + (" — SIMULATED" if sim else "")
                 + (" — EXTRAPOLATED" if beyond else ""))
        table = Table(title=title, title_justify="left")
        table.add_column("counter")
        for r in rows:
            table.add_column(f"{r['config']} (n={r['n']})", justify="right")
        for name in sorted({n for r in rows for n in r["counters"]}, key=lead.rank):
            table.add_row(name, *[_fmt_cell(r["counters"].get(name, {"absent": ""})) for r in rows])
        table.add_row("guest µs", *[
            _fmt_cell({k: (v / 1000 if isinstance(v, float) else v)
                       for k, v in r["guest_ns_per_unit"].items()}) for r in rows])
        for clock in data.get("clocks", []):
            if clock["model"]:
                table.add_row(clock["label"], *[_fmt_cell(r["clocks"].get(clock["name"], {}))
                                                for r in rows])
        for key in ("PageTables", "LowFree"):
            table.add_row(f"Δ{key} kB (run)",
                          *[_fmt_cell(r["meminfo_change_kb"][key]) for r in rows])
        ui.out_console.print(table)
        if beyond:
            ui.out_console.print("EXTRAPOLATED: the sim model was not fitted here ("
                                 + "; ".join(beyond) + ")", soft_wrap=True)
        for line in _comparisons(rows):
            ui.out_console.print(line)
    _print_derived(data)
    noted = [r for r in records if r.get("console_events")]
    if noted:
        ui.warn(f"{len(noted)} measurement(s) happened while the guest kernel logged "
                + "; ".join(sorted({f"{e['kind']} ({r['config']} {r['workload']})"
                                    for r in noted for e in r["console_events"]}))
                + ": see console_events in runs.jsonl and the run's console logs")
    if cost_model and not data.get("clocks"):
        ui.warn(f"the run has no cost-plugin counts: trace it with --cost-model {cost_model}")
    elif data.get("clocks"):
        ui.out_console.print(f"Clocks: {clock_words(data['clocks'])}", soft_wrap=False)
    if m.get("status") != "complete":
        ui.warn(f"run status: {m.get('status')}")
