"""Render recorded runs into one self-contained offline HTML dashboard.

Why one file with plotly.js embedded: dashboards are attached to reviews and opened on machines
without network access, and must show the same thing years later. Everything shown comes from
stored JSON (manifest.json, runs.jsonl) through :func:`lab.stats.summarize`; a model's output
is marked SIMULATED in a banner and in every chart title, and absent counters read "absent",
never 0. Example::

    render_dashboard([open_run("20261125-forkstorm")], Path("dashboards/"), baseline="lowpte")
"""

from __future__ import annotations

import html
import json
import math
import re
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from .errors import LabError, UsageError
from .results import RunDir
from .stats import MEMINFO_KEYS, guest_ns_per_unit, meminfo_change, per_unit, summarize, welch

__all__ = ["render_dashboard", "KEY_COUNTERS", "SIMULATED_SUFFIX"]

#: Counters in the headline table and the per-unit bar charts, in this order.
KEY_COUNTERS = ("__kmap_local_pfn_prot", "__kmap_local_page_prot", "__pte_alloc",
                "___pte_free_tlb", "flush_tlb_mm_range", "tlb_flush")
SIMULATED_SUFFIX = " — SIMULATED"
_COLORS = qualitative.Plotly + qualitative.D3
_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:14px}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.banner{background:#b00020;color:#fff;padding:.6em 1em;font-weight:bold;font-size:18px}
.absent{color:#888;font-style:italic}.note{color:#555;font-size:13px}
"""


def _fmt(v: Any) -> str:
    """Manifest values of any shape as one readable line."""
    if v is None or v == "":
        return "—"
    if isinstance(v, str):
        return v
    if isinstance(v, list | tuple):
        return " ".join(_fmt(x) for x in v)
    if isinstance(v, dict):
        return "; ".join(f"{k}: {_fmt(x)}" for k, x in v.items())
    return str(v)


def _num(v: float) -> str:
    if v is None or math.isnan(v):
        return "—"
    a = abs(v)
    return f"{v:,.0f}" if a >= 1000 else f"{v:.1f}" if a >= 10 else f"{v:.2f}"


def _kernel(v: Any, name: Any = None) -> str:
    """A kernel description: its name plus the identifying fields of its metadata, if any."""
    if isinstance(v, dict):
        keys = [k for k in ("package", "version", "release", "source", "sha256") if k in v]
        v = "; ".join(f"{k}: {_fmt(v[k])}" for k in keys) if keys else _fmt(v)
    text = " — ".join(x for x in (_fmt(name) if name else "", _fmt(v) if v else "") if x)
    return text[:200] or "—"


def _provenance(runs: list[RunDir], records: list[dict[str, Any]]) -> str:
    """One row per run and configuration, from manifest.json; missing keys show as "—"."""
    head = ("run", "configuration", "workload", "records", "backend", "simulated", "timing",
            "kernel", "kernel command line")
    body = []
    for run in runs:
        try:
            m = run.manifest()
        except LabError as e:
            m = {"status": str(e)}
        # lab.trace writes configs={name: {kernel, cmdline, timing, ...}}; older or hand-made
        # manifests may have config/configs/config_names at the top level
        per_cfg = m.get("configs") if isinstance(m.get("configs"), dict) else None
        entries = list(per_cfg.items()) if per_cfg else [
            (_fmt(m.get("configs", m.get("config_names", m.get("config")))), m)]
        for name, c in entries:
            c = c if isinstance(c, dict) else {}
            recs = [r for r in records if r.get("run_id") == run.run_id
                    and (per_cfg is None or r.get("config") == name)]
            sim = c.get("simulated", m.get("simulated"))
            if sim is None and recs:
                sim = any(bool(r.get("simulated")) for r in recs)
            cells = (run.run_id, str(name), _fmt(m.get("workload")), str(len(recs)),
                     _fmt(m.get("backend")),
                     "—" if sim is None else "SIMULATED" if sim else "real guest",
                     _fmt(c.get("timing", m.get("timing"))),
                     _kernel(c.get("kernel", m.get("kernel")), c.get("kernel_name")),
                     _fmt(c.get("cmdline", m.get("cmdline"))))
            body.append("<tr>" + "".join(f"<td>{html.escape(x)}</td>" for x in cells) + "</tr>")
    return _table(head, body)


def _table(head: tuple[str, ...], body: list[str]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _cell(c: dict[str, Any], scale: float = 1.0) -> str:
    if "absent" in c:
        return f'<td class="absent" title="{html.escape(c["absent"])}">absent</td>'
    if not c:
        return '<td class="absent">not recorded</td>'
    mean, lo, hi = (c[k] / scale for k in ("mean", "lo", "hi"))
    if math.isnan(lo):
        txt = f"{_num(mean)} (n={c['n']}, no CI)"
    else:
        txt = f"{_num(mean)} ± {_num((hi - lo) / 2)}"
    tip = f"95% CI {_num(lo)}–{_num(hi)}, CV {c['cv']:.3f}, n={c['n']}"
    noisy = " ⚠ noisy" if c.get("noisy") else ""
    return f'<td class="num" title="{html.escape(tip)}">{html.escape(txt)}{noisy}</td>'


def _vs(base: Any, vals: Any) -> str:
    if base is None or vals is None:
        return ""
    rel, p = welch(base, vals)
    if math.isnan(rel) or math.isinf(rel):
        return ""
    ptxt = "p n/a" if math.isnan(p) else f"p={p:.2g}"
    return f"<br><span class='note'>{rel:+.0%} vs baseline, {ptxt}</span>"


def _line(kind: str, key: str, row: dict[str, Any],
          recs: list[dict[str, Any]]) -> tuple[dict[str, Any], Any]:
    """One headline cell's summary and its raw per-record values (for Welch)."""
    if kind == "counter":
        return row["counters"].get(key, {"absent": "not recorded"}), per_unit(recs, key)
    if kind == "time":
        return row["guest_ns_per_unit"], guest_ns_per_unit(recs)
    return row["meminfo_change_kb"][key], meminfo_change(recs, key)


def _headline(rows: list[dict[str, Any]], labels: list[str], groups: list[list[dict[str, Any]]],
              base_idx: int | None) -> str:
    """Key counters, guest time and meminfo change per configuration; Welch vs the baseline."""
    lines = [(n, "counter", n, 1.0) for n in KEY_COUNTERS]
    lines.append(("guest time (µs)", "time", "", 1000.0))
    lines += [(f"{k} change (kB, whole run)", "meminfo", k, 1.0) for k in MEMINFO_KEYS]
    body = []
    for name, kind, key, scale in lines:
        tds = []
        for i, row in enumerate(rows):
            cell, vals = _line(kind, key, row, groups[i])
            td = _cell(cell, scale)
            if base_idx is not None and i != base_idx:
                base = _line(kind, key, rows[base_idx], groups[base_idx])[1]
                td = td[:-5] + _vs(base, vals) + "</td>"
            tds.append(td)
        body.append(f"<tr><th>{html.escape(name)}</th>{''.join(tds)}</tr>")
    return _table(("per unit", *labels), body)


def _bars(fig: go.Figure, cells: list[dict[str, Any]], labels: list[str], row: int, col: int,
          scale: float = 1.0) -> None:
    for i, (label, c) in enumerate(zip(labels, cells, strict=True)):
        ok = bool(c) and "absent" not in c
        mean = c["mean"] / scale if ok else 0.0
        err_hi = (c["hi"] / scale - mean) if ok and not math.isnan(c["lo"]) else 0.0
        err_lo = (mean - c["lo"] / scale) if ok and not math.isnan(c["lo"]) else 0.0
        tip = (f"{_num(mean)} (95% CI {_num(c['lo'] / scale)}–{_num(c['hi'] / scale)}, "
               f"n={c['n']})" if ok else html.escape(c.get("absent", "not recorded")))
        fig.add_trace(go.Bar(
            x=[label], y=[mean], name=label.replace("<br>", ""), showlegend=False,
            marker_color=_COLORS[i % len(_COLORS)],
            error_y={"type": "data", "array": [err_hi], "arrayminus": [err_lo], "visible": ok},
            # the x axis names the configuration; numbers are in the table and on hover, so the
            # only bar text is "absent", where there is no bar to read
            text=[None if ok else "absent"], textposition="outside", cliponaxis=False,
            hovertemplate=f"{label.replace('<br>', '')}: {tip}<extra></extra>",
        ), row=row, col=col)


def _wrap(label: str, width: int = 12) -> str:
    """Break a long axis label after '-', '_', ' ' or '=' so 3+ labels never collide."""
    parts = re.findall(r"[^-_ =]+[-_ =]?|[-_ =]", label)
    lines, cur = [], ""
    for part in parts:
        if cur and len(cur) + len(part) > width:
            lines.append(cur)
            cur = ""
        cur += part
    lines.append(cur)
    return "<br>".join(html.escape(x) for x in lines)


def _grid_figure(titles: list[str], suffix: str, title: str, ticks: list[str],
                 cols: int = 2) -> go.Figure:
    """Subplots sized so wrapped tick labels never reach the next row's title."""
    rows = math.ceil(len(titles) / cols)
    lines = max(t.count("<br>") + 1 for t in ticks)
    angle = -45 if len(ticks) > 6 else 0
    tick_px = 18 * lines + (70 if angle else 0)
    plot_px, gap_px = 260, 60 + tick_px
    body = rows * plot_px + (rows - 1) * gap_px
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[t + suffix for t in titles],
                        vertical_spacing=gap_px / body if rows > 1 else 0.0,
                        horizontal_spacing=0.1)
    fig.update_xaxes(tickangle=angle, automargin=True)
    fig.update_yaxes(automargin=True, rangemode="tozero")
    fig.update_layout(title=title + suffix, height=body + 100 + tick_px + 40, barmode="group",
                      margin={"t": 100, "b": tick_px + 40}, showlegend=False)
    return fig


def _labels(rows: list[dict[str, Any]]) -> list[str]:
    """Configuration names; params and workload are added only where needed to tell rows apart."""
    out = [r["config"] for r in rows]
    if len(set(out)) < len(out):
        out = [f"{r['config']} {json.dumps(r['params'], sort_keys=True)}" for r in rows]
    if len(set(out)) < len(out):
        out = [f"{r['workload']}: {x}" for r, x in zip(rows, out, strict=True)]
    return out


def render_dashboard(runs: list[RunDir], out: Path, baseline: str | None = None,
                     allow_mixed: bool = False) -> Path:
    """Write one offline HTML dashboard for ``runs``; returns its path.

    ``out`` is a file path, or a directory to put ``dashboard-<first run id>.html`` in.
    ``baseline`` names a configuration the others are compared to (Welch test, in the table).
    Raises UsageError for no records, an unknown baseline, or mixed timing/backends.
    """
    if not runs:
        raise UsageError("no runs to render")
    records = [r for run in runs for r in run.records()]
    if not records:
        raise UsageError(f"no records in {', '.join(r.run_id for r in runs)}: nothing to plot")
    rows = summarize(records, allow_mixed=allow_mixed)
    groups = [[r for r in records if r.get("config") == row["config"]
               and r.get("workload") == row["workload"]
               and r.get("params", {}) == row["params"]] for row in rows]
    labels = _labels(rows)
    ticks = [_wrap(x) for x in labels]
    base_idx = None
    if baseline is not None:
        matches = [i for i, row in enumerate(rows) if row["config"] == baseline]
        if not matches:
            known = ", ".join(sorted({row["config"] for row in rows}))
            raise UsageError(f"baseline {baseline!r} is not among the configurations: {known}")
        base_idx = matches[0]
    simulated = any(bool(r.get("simulated")) for r in records)
    sfx = SIMULATED_SUFFIX if simulated else ""
    units = sorted({str(row["unit"]) for row in rows})
    per = "/".join(units)

    figs = []
    fig = _grid_figure(list(KEY_COUNTERS), sfx, f"Counts per {per} (mean, 95% CI)", ticks)
    for k, name in enumerate(KEY_COUNTERS):
        cells = [row["counters"].get(name, {"absent": "not recorded"}) for row in rows]
        _bars(fig, cells, ticks, k // 2 + 1, k % 2 + 1)
    figs.append(fig)
    fig = _grid_figure([f"guest time per {per} (µs)"], sfx, f"Guest time per {per}", ticks, 1)
    _bars(fig, [row["guest_ns_per_unit"] for row in rows], ticks, 1, 1, 1000.0)
    figs.append(fig)
    titles = [f"{k} change over a run (kB)" for k in MEMINFO_KEYS]
    fig = _grid_figure(titles, sfx, "meminfo after − before", ticks)
    for k, key in enumerate(MEMINFO_KEYS):
        _bars(fig, [row["meminfo_change_kb"][key] for row in rows], ticks, 1, k + 1)
    figs.append(fig)

    title = "ukva-lab: " + ", ".join(sorted({row["workload"] for row in rows})) + sfx
    banner = ('<div class="banner">SIMULATED: these numbers come from the sim model '
              '(lab/tracers/sim_model.toml), not from a guest kernel.</div>' if simulated else "")
    plots = "".join(f.to_html(full_html=False, include_plotlyjs=(i == 0),
                              config={"displaylogo": False, "responsive": True})
                    for i, f in enumerate(figs))
    page = (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
            f"<h1>{html.escape(title)}</h1>{banner}"
            f"<h2>Provenance</h2>{_provenance(runs, records)}"
            f"<h2>Headline (per {html.escape(per)}, mean ± half-width of the 95% CI)</h2>"
            f"{_headline(rows, labels, groups, base_idx)}"
            f"<p class='note'>Hover a cell for the CI bounds and CV. “absent” means the kernel "
            f"lacks the counter (recorded as absent, not 0).</p>{plots}</body></html>")
    if out.is_dir():
        out = out / f"dashboard-{runs[0].run_id}.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out
