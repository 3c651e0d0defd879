"""The dashboard's plotly figures: one grid of bar charts per workload (charted counters,
guest time, meminfo change) and the taskpile lowmem curve. Tick labels are wrapped and
subplots sized so that no two labels overlap (the browser test measures it).
"""

from __future__ import annotations

import html
import json
import math
import re
from collections import Counter
from typing import Any

import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from ..stats import MEMINFO_KEYS
from .fmt import KEY_COUNTERS, esc, fmt, num, param_tags

__all__ = ["COLORS", "wrap", "workload_figure", "taskpile_figure"]

COLORS = qualitative.Plotly + qualitative.D3


def _bars(fig: go.Figure, cells: list[dict[str, Any]], labels: list[str], colors: list[str],
          row: int, col: int, scale: float = 1.0) -> None:
    for label, c, color in zip(labels, cells, colors, strict=True):
        ok = bool(c) and "absent" not in c
        mean = c["mean"] / scale if ok else 0.0
        err_hi = (c["hi"] / scale - mean) if ok and not math.isnan(c["lo"]) else 0.0
        err_lo = (mean - c["lo"] / scale) if ok and not math.isnan(c["lo"]) else 0.0
        tip = (f"{num(mean)} (95% CI {num(c['lo'] / scale)}–{num(c['hi'] / scale)}, "
               f"n={c['n']})" if ok else esc(c.get("absent", "not recorded")))
        fig.add_trace(go.Bar(
            x=[label], y=[mean], name=label.replace("<br>", ""), showlegend=False,
            marker_color=color,
            error_y={"type": "data", "array": [err_hi], "arrayminus": [err_lo], "visible": ok},
            # the x axis names the configuration; numbers are in the table and on hover, so the
            # only bar text is "absent", where there is no bar to read
            text=[None if ok else "absent"], textposition="outside", cliponaxis=False,
            hovertemplate=f"{label.replace('<br>', '')}: {tip}<extra></extra>",
        ), row=row, col=col)


def wrap(label: str, width: int = 12) -> str:
    """Break a long axis label after '-', '_', ' ' or '=' so 3+ labels never collide."""
    parts = re.findall(r"[^-_ =]+[-_ =]?|[-_ =]", label)
    lines, cur = [], ""
    for part in parts:
        if cur and len(cur) + len(part) > width:
            lines.append(cur)
            cur = ""
        cur += part
    lines.append(cur)
    return "<br>".join(html.escape(x, quote=False) for x in lines)


def _grid_figure(titles: list[str], suffix: str, title: str, ticks: list[str],
                 cols: int = 2) -> go.Figure:
    """Subplots sized so wrapped tick labels never reach the next row's title."""
    rows = math.ceil(len(titles) / cols)
    lines = max(t.count("<br>") + 1 for t in ticks)
    angle = -45 if len(ticks) * cols > 12 else 0
    tick_px = 18 * lines + (70 if angle else 0)
    plot_px, gap_px = 240, 60 + tick_px
    body = rows * plot_px + (rows - 1) * gap_px
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[t + suffix for t in titles],
                        vertical_spacing=gap_px / body if rows > 1 else 0.0,
                        horizontal_spacing=0.1)
    fig.update_annotations(font_size=13)
    fig.update_xaxes(tickangle=angle, automargin=True)
    fig.update_yaxes(automargin=True, rangemode="tozero")
    fig.update_layout(title=title + suffix, height=body + 100 + tick_px + 40, barmode="group",
                      margin={"t": 100, "b": tick_px + 40}, showlegend=False)
    return fig


def workload_figure(workload: str, unit: str, timing: str, rows: list[dict[str, Any]],
                    ticks: list[str], colors: list[str], sfx: str) -> go.Figure:
    """Key counters, guest time and meminfo change of one workload, one subplot each."""
    titles = [*KEY_COUNTERS, f"guest µs per {unit} ({timing})",
              *(f"{k} change (kB/run)" for k in MEMINFO_KEYS)]
    cols = 3 if len(ticks) <= 3 else 2
    fig = _grid_figure(titles, sfx, f"{workload}: per {unit} (mean, 95% CI)", ticks, cols)
    cells: list[tuple[list[dict[str, Any]], float]] = [
        ([row["counters"].get(n, {"absent": "not recorded"}) for row in rows], 1.0)
        for n in KEY_COUNTERS]
    cells.append(([row["guest_ns_per_unit"] for row in rows], 1000.0))
    cells += [([row["meminfo_change_kb"][k] for row in rows], 1.0) for k in MEMINFO_KEYS]
    for k, (cs, scale) in enumerate(cells):
        _bars(fig, cs, ticks, colors, k // cols + 1, k % cols + 1, scale)
    return fig


def taskpile_figure(records: list[dict[str, Any]], color_of: dict[str, str],
                    sfx: str) -> tuple[go.Figure, str] | None:
    """LowFree and PageTables against tasks alive, one line per configuration."""
    series: dict[str, dict[int, list[dict[str, Any]]]] = {}
    stops: dict[str, list[str]] = {}
    base_of: dict[str, str] = {}
    piles = [r for r in records if r.get("workload") == "taskpile"]
    tags = param_tags([json.loads(p) for p in sorted(
        {json.dumps(r.get("params", {}), sort_keys=True) for r in piles})])
    for r in piles:
        tag = tags.get(json.dumps(r.get("params", {}), sort_keys=True))
        name = f"{r.get('config')} {tag}" if tag else str(r.get("config"))
        report: dict[str, Any] = r["report"] if isinstance(r.get("report"), dict) else {}
        samples = report.get("samples")
        if not isinstance(samples, list):
            continue
        by_tasks = series.setdefault(name, {})
        base_of[name] = str(r.get("config"))
        for s in samples:
            if isinstance(s, dict) and isinstance(s.get("tasks"), int):
                by_tasks.setdefault(s["tasks"], []).append(s)
        stops.setdefault(name, []).append(
            f"{len(samples)} samples, stopped: {fmt(report.get('stopped_because'))}"
            + (f", low memory read from {report['low_source']}"
               if report.get("low_source") not in (None, "LowFree") else ""))
    if not series:
        return None
    keys = (("LowFree_kB", "LowFree (kB)"), ("PageTables_kB", "PageTables (kB)"))
    fig = make_subplots(rows=1, cols=2, subplot_titles=[t + sfx for _, t in keys],
                        horizontal_spacing=0.12)
    fig.update_annotations(font_size=13)
    dashes = ("solid", "dash", "dot", "dashdot", "longdash")
    for k, (config, by_tasks) in enumerate(sorted(series.items())):
        xs = sorted(by_tasks)
        for col, (key, _) in enumerate(keys, 1):
            vals = [[s[key] for s in by_tasks[x] if isinstance(s.get(key), int | float)]
                    for x in xs]
            pts = [(x, v) for x, v in zip(xs, vals, strict=True) if v]
            if not pts:
                continue
            mean = [sum(v) / len(v) for _, v in pts]
            spread = [(max(v) - m, m - min(v)) for (_, v), m in zip(pts, mean, strict=True)]
            fig.add_trace(go.Scatter(
                x=[x for x, _ in pts], y=mean, mode="lines+markers", name=config,
                legendgroup=config, showlegend=col == 1,
                # dashes tell apart configurations whose curves lie on top of each other
                line={"color": color_of.get(base_of[config], COLORS[0]),
                      "dash": dashes[k % len(dashes)]},
                error_y={"type": "data", "array": [hi for hi, _ in spread],
                         "arrayminus": [lo for _, lo in spread],
                         "visible": any(len(v) > 1 for _, v in pts)},
                hovertemplate=f"{config}: %{{y:,.0f}} kB at %{{x}} tasks<extra></extra>",
            ), row=1, col=col)
    fig.update_xaxes(title_text="tasks alive", automargin=True)
    fig.update_yaxes(title_text="kB", automargin=True)
    fig.update_layout(title="taskpile: lowmem as tasks pile up (mean over repeats, bars: "
                            "min–max)" + sfx,
                      height=480, margin={"t": 100, "b": 110},
                      legend={"orientation": "h", "x": 0, "y": -0.25})
    note = "<p class='note'>" + "<br>".join(
        esc(f"{config}: {len(runs)} repeats; " + "; ".join(
            f"{n}× {what}" for what, n in sorted(Counter(runs).items())))
        for config, runs in sorted(stops.items())) + "</p>"
    return fig, note
