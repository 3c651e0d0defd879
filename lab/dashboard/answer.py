"""The section the dashboard opens with: the answer, as pictures, in each clock.

Why first and why these two charts: the lab's question is "how much does HIGHPTE cost, and
how much of that does a candidate take back", and the effects are a few percent of guest
time. So the page leads with (1) the share of the baseline → floor gap each configuration
recovers, per workload, with its bootstrap CI, and (2) Δ % from the baseline with its CI, per
workload: dots with whiskers around 0, never bars from zero that would hide a 5 % effect.
Both are drawn once per clock the report has (icount; modelled cycles per machine model, when
the runs carry cost-plugin counts), side by side, and every title and legend entry says which
clock a figure is in. The numbers are the report's (lab/report.py); nothing is computed here.
"""

from __future__ import annotations

import json
import math
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..clocks import clock_words
from ..report import GUEST_TIME
from .fmt import cell_lines, esc, param_tags, table

__all__ = ["answer_section", "clock_names"]

#: One colour per clock, in the report's order (icount first).
CLOCK_COLORS = ("#444444", "#1f77b4", "#d62728", "#2ca02c", "#9467bd")


def clock_names(report: dict[str, Any]) -> list[tuple[str, str]]:
    """(key, legend name) per clock: the report's clocks, or guest time alone without them."""
    clocks = report.get("clocks")
    if not clocks:
        return [("", f"{GUEST_TIME} (ns)")]
    return [(c["name"], f"{c['name']} ({'modelled cycles' if c['model'] else 'guest ns'})")
            for c in clocks]


def _cell_label(rows: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
    """x-axis label per (workload, params): the workload, plus the parameters that differ."""
    cells = sorted({(r["workload"], json.dumps(r["params"], sort_keys=True)
                     if isinstance(r["params"], dict) else str(r["params"])) for r in rows})
    out = {}
    for w, p in cells:
        tags = param_tags([json.loads(q) for x, q in cells if x == w])
        out[(w, p)] = f"{w} ({tags[p]})" if tags.get(p) else w
    return out


def _dots(fig: go.Figure, x: list[str], pts: list[dict[str, Any] | None], name: str,
          color: str, keys: tuple[str, str, str], scale: float, show: bool, col: int,
          tip: str) -> None:
    """One clock's dots with CI whiskers in subplot ``col`` (None points are left out)."""
    mean, lo, hi = keys
    xs, ys, up, down, text = [], [], [], [], []
    for label, p in zip(x, pts, strict=True):
        if not p or p.get(mean) is None or not math.isfinite(p[mean]):
            continue
        m = float(p[mean]) * scale
        bounds = [p.get(lo), p.get(hi)]
        if all(isinstance(b, int | float) and math.isfinite(b) for b in bounds):
            b_lo, b_hi = (float(b or 0) * scale for b in bounds)
            up.append(b_hi - m)
            down.append(m - b_lo)
            text.append(f"{m:.1f}% [{b_lo:.1f}%, {b_hi:.1f}%]")
        else:
            up.append(0.0)
            down.append(0.0)
            text.append(f"{m:.1f}% (no CI)")
        xs.append(label)
        ys.append(m)
    fig.add_trace(go.Scatter(
        x=xs, y=ys, mode="markers", name=name, legendgroup=name, showlegend=show,
        marker={"color": color, "size": 10},
        error_y={"type": "data", "array": up, "arrayminus": down, "visible": True},
        text=text, hovertemplate=f"%{{x}}, {esc(name)}: %{{text}} {esc(tip)}<extra></extra>",
    ), row=1, col=col)


def _clocks_line(names: list[tuple[str, str]]) -> str:
    return "in each clock: " + ", ".join(n for _, n in names)


def _refs(fig: go.Figure, refs: tuple[float, ...], panels: int) -> None:
    """Dotted reference lines (0 = the baseline, 100 % = the floor; the y-axis title names
    them), drawn once the subplots hold their dots (plotly skips empty subplots)."""
    for col in range(1, panels + 1):
        for ref in refs:
            fig.add_hline(y=ref, line={"color": "#666", "dash": "dot", "width": 1.5},
                          row=1, col=col)


def _figure(panels: list[str], title: str) -> go.Figure:
    """Subplots side by side; what the y axis is, is said in each subplot's title (every
    title of a SIMULATED page ends so, and axis titles would not)."""
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=panels, shared_yaxes=True,
                        horizontal_spacing=0.06)
    fig.update_yaxes(zeroline=False, ticksuffix="%")
    fig.update_xaxes(automargin=True)
    fig.update_annotations(font_size=13)
    fig.update_layout(title=title, height=460, scattermode="group", scattergap=0.5,
                      margin={"t": 110, "b": 90},
                      legend={"orientation": "h", "x": 0, "y": -0.18})
    return fig


def gap_figure(report: dict[str, Any], sfx: str) -> go.Figure | None:
    """Share of the gap recovered, per workload (x), clock (colour) and candidate (panel)."""
    g = report.get("gap")
    if not g or not g["rows"]:
        return None
    labels = _cell_label(g["rows"])
    cands = sorted({r["config"] for r in g["rows"]})
    names = clock_names(report)
    fig = _figure([f"{c}: % of the gap recovered (0 = {g['baseline']}, 100 = {g['floor']})"
                   f"{sfx}" for c in cands],
                  f"Share of the {g['baseline']} → {g['floor']} gap recovered per workload "
                  f"(mean, 95% bootstrap CI)<br><sup>{_clocks_line(names)}</sup>{sfx}")
    for i, (key, name) in enumerate(names):
        for k, cand in enumerate(cands, 1):
            rows = [r for r in g["rows"] if r["config"] == cand]
            pts = [(r.get("clocks", {}).get(key) if key else r["figures"].get(GUEST_TIME))
                   for r in rows]
            _dots(fig, [labels[(r["workload"], r["params"])] for r in rows], pts, name,
                  CLOCK_COLORS[i % len(CLOCK_COLORS)], ("mean", "lo", "hi"), 100.0, k == 1,
                  k, "of the gap (0% = baseline, 100% = floor)")
    _refs(fig, (0.0, 100.0), len(cands))
    return fig


def delta_figure(report: dict[str, Any], sfx: str) -> go.Figure | None:
    """Δ % from the baseline with its 95 % CI, per workload (x), clock (colour) and
    configuration (panel); the baseline's own rows are the 0 line."""
    rows = [r for r in report["summary"] if r.get("baseline") and r["config"] != r["baseline"]]
    if not rows:
        return None
    labels = _cell_label(rows)
    configs = sorted({r["config"] for r in rows})
    bases = sorted({r["baseline"] for r in rows})
    names = clock_names(report)
    base_of = {c: ", ".join(sorted({r["baseline"] for r in rows if r["config"] == c}))
               for c in configs}
    fig = _figure([f"{c}: Δ % from {base_of[c]}{sfx}" for c in configs],
                  f"Δ % per unit from the baseline ({', '.join(bases)}) per workload (mean, "
                  f"95% CI, Welch)<br><sup>{_clocks_line(names)}</sup>{sfx}")
    for i, (key, name) in enumerate(names):
        for k, cfg in enumerate(configs, 1):
            mine = [r for r in rows if r["config"] == cfg]
            pts = [(r.get("clocks", {}).get(key) if key else r["guest_ns_per_unit"])
                   for r in mine]
            _dots(fig, [labels[(r["workload"], json.dumps(r["params"], sort_keys=True))]
                        for r in mine], pts, name, CLOCK_COLORS[i % len(CLOCK_COLORS)],
                  ("delta_pct", "delta_lo_pct", "delta_hi_pct"), 1.0, k == 1, k,
                  "from the baseline")
    _refs(fig, (0.0,), len(configs))
    return fig


def _share(f: dict[str, Any] | None) -> str:
    if not f or f.get("mean") is None or not math.isfinite(f["mean"]):
        return "no gap" if f else "—"
    ci = (f" [{f['lo']:.0%}, {f['hi']:.0%}]" if f.get("lo") is not None
          and math.isfinite(f["lo"]) else "")
    cost = f.get("gap_pct")
    p = f.get("gap_p")
    head = (f"cost {cost:+.1f}%" + (f" (p={p:.2g})" if p is not None and math.isfinite(p)
                                    else "")) if cost is not None and math.isfinite(cost) else ""
    return cell_lines(head, f"recovered {f['mean']:.0%}{ci}")


def _numbers(report: dict[str, Any]) -> str:
    """The answer as numbers: per workload and candidate, per clock, the baseline's cost over
    the floor and the share recovered."""
    g = report.get("gap")
    if not g or not g["rows"]:
        return ""
    names = clock_names(report)
    body = []
    for r in g["rows"]:
        cells = [r.get("clocks", {}).get(k) if k else r["figures"].get(GUEST_TIME)
                 for k, _ in names]
        tds = "".join(f"<td class='num'>{_share(f)}</td>" for f in cells)
        body.append(f"<tr><td>{esc(r['workload'])}</td><td>{esc(r['config'])}</td>{tds}</tr>")
    return table(("workload", "config", *(n for _, n in names)), body)


def _delta(c: dict[str, Any] | None) -> str:
    if not c or c.get("delta_pct") is None or not math.isfinite(c["delta_pct"]):
        return "—"
    lo, hi, p = c.get("delta_lo_pct"), c.get("delta_hi_pct"), c.get("welch_p")
    ci = (f" [{lo:+.1f}, {hi:+.1f}]" if lo is not None and hi is not None
          and math.isfinite(lo) and math.isfinite(hi) else "")
    return cell_lines(f"{c['delta_pct']:+.1f}%{ci}",
                      f"p={p:.2g}" if p is not None and math.isfinite(p) else "")


def _delta_numbers(report: dict[str, Any]) -> str:
    """The Δ chart as numbers: per workload and configuration, Δ % [95% CI] and Welch's p in
    each clock."""
    rows = [r for r in report["summary"] if r.get("baseline") and r["config"] != r["baseline"]]
    names = clock_names(report)
    body = []
    for r in rows:
        cells = [r.get("clocks", {}).get(k) if k else r["guest_ns_per_unit"] for k, _ in names]
        body.append(f"<tr><td>{esc(r['workload'])}</td><td>{esc(r['config'])} vs "
                    f"{esc(r['baseline'])}</td>"
                    + "".join(f"<td class='num'>{_delta(c)}</td>" for c in cells) + "</tr>")
    return table(("workload", "Δ % per unit", *(n for _, n in names)), body) if body else ""


def answer_section(report: dict[str, Any], sfx: str,
                   plot: Any) -> str:
    """The page's opening section: the two charts, drawn with ``plot`` (the page's figure
    embedder), and the table of their numbers. Empty unless the report has a gap or
    modelled cycles: without either, the per-workload sections already are the answer."""
    if not report.get("clocks") and not (report.get("gap") or {}).get("rows"):
        return ""
    figs = [f for f in (gap_figure(report, sfx), delta_figure(report, sfx)) if f is not None]
    if not figs:
        return ""
    names = clock_names(report)
    words = clock_words(report.get("clocks", []))
    which = (f"Clocks: {words}" if words else
             f"Clock: {names[0][1]} only (these runs carry no cost-plugin counts; trace with "
             "--cost-model to add modelled cycles).")
    g = report.get("gap")
    what = (f"Gap: {g['baseline']} (baseline, 0%) → {g['floor']} (floor, 100%); cost is "
            f"{g['baseline']} vs {g['floor']} per unit (Welch's p). " if g else "")
    return (f'<h2 id="answer">The answer, in each clock</h2><p class="note">{esc(what)}'
            f"{esc(which)}</p>" + "".join(plot(f) for f in figs) + _numbers(report)
            + _delta_numbers(report))
