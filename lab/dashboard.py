"""Render recorded runs into one self-contained offline HTML dashboard.

Why one file with plotly.js embedded: dashboards are attached to reviews and opened on machines
without network access, and must show the same thing years later. Everything shown comes from
stored JSON (manifest.json, runs.jsonl, profile.json) through :func:`lab.stats.summarize`; a
model's output is marked SIMULATED in a banner and in every chart title, and absent counters
read "absent", never 0.

Sections: provenance (machine, kernel, boot, QEMU, lab per run and configuration); per
workload a headline table (per-unit mean ± CI half-width, Welch vs ``baseline``) and one grid
of bar charts (key counters, guest time, meminfo change); a taskpile lowmem curve when
taskpile records carry ``report.samples``; a differential profile table for each run
directory holding ``profile.json``.

Runs merged from several machines may use one configuration name on different kernels or
hosts. Pooling those into one mean would blend different things, so such a configuration is
split into ``NAME @ host`` (or ``NAME @ kernel release``) columns, said in a note. Example::

    render_dashboard([open_run("20261125-forkstorm")], Path("dashboards/"), baseline="lowpte")
"""

from __future__ import annotations

import html
import json
import math
import re
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from .errors import LabError, UsageError
from .results import RunDir
from .stats import MEMINFO_KEYS, guest_ns_per_unit, meminfo_change, per_unit, summarize, welch

__all__ = ["render_dashboard", "KEY_COUNTERS", "SIMULATED_SUFFIX", "PROFILE_ROWS"]

#: Counters in the headline table and the per-unit bar charts, in this order.
KEY_COUNTERS = ("__kmap_local_pfn_prot", "__kmap_local_page_prot", "__pte_alloc",
                "___pte_free_tlb", "flush_tlb_mm_range", "tlb_flush")
SIMULATED_SUFFIX = " — SIMULATED"
#: Rows of a differential profile shown at each end (largest rises, largest falls).
PROFILE_ROWS = 20
_COLORS = qualitative.Plotly + qualitative.D3
_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1200px;color:#222;
padding:0 1em}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:14px}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
table.prov{font-size:12px}table.prov td{max-width:16em;overflow-wrap:anywhere}
.banner{background:#b00020;color:#fff;padding:.6em 1em;font-weight:bold;font-size:18px;
margin:.3em 0}
.banner.mixed{background:#8a5a00}
.absent{color:#888;font-style:italic}.note{color:#555;font-size:13px}
.pair{display:flex;gap:1.5em;flex-wrap:wrap}.pair>div{flex:1 1 0;min-width:26em}
.pair table{font-size:13px;width:100%}
nav a{margin-right:1em}details{margin:.3em 0 1em}code{font-size:11px}
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
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 0.1 or a == 0:
        return f"{v:.2f}"
    return f"{v:.2g}"  # e.g. 0.002 PTE pages per fault: significant digits, not "0.00"


def _kernel(v: Any, name: Any = None) -> list[str]:
    """A kernel description, one line each: name, package and version, release, .config hash."""
    lines = [_fmt(name)] if name else []
    if isinstance(v, dict):
        lines += [" ".join(_fmt(v[k]) for k in ("package", "version", "package_version")
                           if k in v),
                  f"release {_fmt(v['release'])}" if v.get("release") else "",
                  f".config sha256 {str(v['config_sha256'])[:12]}…"
                  if v.get("config_sha256") else ""]
        if not any(lines):
            lines = [_fmt(v)]
    elif v:
        lines.append(_fmt(v))
    return [x[:120] for x in lines if x] or ["—"]


def _esc(text: str) -> str:
    return html.escape(text)


# ---------------------------------------------------------------------------------------------
# where each record came from


def _config_entry(m: dict[str, Any], config: str) -> dict[str, Any]:
    per = m.get("configs")
    c = per.get(config) if isinstance(per, dict) else None
    return c if isinstance(c, dict) else {}


def _origin(m: dict[str, Any], config: str) -> tuple[str, str, str]:
    """(host, kernel identity, short kernel label) of one configuration in one run."""
    host = m.get("host")
    hostname = _fmt(host.get("hostname")) if isinstance(host, dict) else "—"
    c = _config_entry(m, config)
    k = c.get("kernel", m.get("kernel"))
    if isinstance(k, dict):
        kid = str(k.get("bzimage_sha256") or json.dumps(k, sort_keys=True))
        label = str(k.get("release") or k.get("package_version") or c.get("kernel_name") or kid)
    else:
        kid = label = _fmt(k if k is not None else c.get("kernel_name"))
    return hostname, kid, label


def _split_origins(records: list[dict[str, Any]],
                   manifests: dict[str, dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """Give a configuration measured on several hosts or kernels one label per origin."""
    origins: dict[str, dict[tuple[str, str, str], None]] = {}
    for r in records:
        o = _origin(manifests.get(str(r.get("run_id")), {}), str(r.get("config")))
        origins.setdefault(str(r.get("config")), {})[o] = None
    rename: dict[tuple[str, tuple[str, str, str]], str] = {}
    notes = []
    for config, found in sorted(origins.items()):
        if len(found) < 2:
            continue
        keys = list(found)
        hosts = {o[0] for o in keys}
        if len({(o[0], o[1]) for o in keys}) == len(hosts):
            tags = [o[0] for o in keys]                        # one kernel per host
        elif len(hosts) == 1 and len({o[2] for o in keys}) == len(keys):
            tags = [o[2] for o in keys]                        # one host, several kernels
        else:
            tags = [f"{o[0]}, {o[2]}" for o in keys]
        if len(set(tags)) < len(tags):
            tags = [f"{t} #{i + 1}" for i, t in enumerate(tags)]
        for o, tag in zip(keys, tags, strict=True):
            rename[(config, o)] = f"{config} @ {tag}"
        notes.append(f"configuration {config!r} was measured on {len(keys)} different "
                     f"machines or kernels; they are shown apart: "
                     f"{', '.join(sorted(rename[(config, o)] for o in keys))}")
    if not rename:
        return records, notes
    out = []
    for r in records:
        o = _origin(manifests.get(str(r.get("run_id")), {}), str(r.get("config")))
        label = rename.get((str(r.get("config")), o))
        out.append({**r, "config": label, "config_name": r.get("config")} if label else r)
    return out, notes


# ---------------------------------------------------------------------------------------------
# tables


def _table(head: tuple[str, ...], body: list[str], cls: str = "") -> str:
    th = "".join(f"<th>{_esc(h)}</th>" for h in head)
    klass = f' class="{cls}"' if cls else ""
    return f"<table{klass}><thead><tr>{th}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _lines(*parts: str) -> str:
    """Escaped parts of one cell, one per line, dropping the empty ones."""
    return "<br>".join(_esc(p) for p in parts if p and p != "—") or "—"


def _provenance(runs: list[RunDir], manifests: dict[str, dict[str, Any]],
                records: list[dict[str, Any]]) -> str:
    """One row per run and configuration, from manifest.json; missing keys show as "—"."""
    head = ("run", "configuration", "workload", "records", "source", "machine", "kernel",
            "kernel command line", "QEMU", "lab")
    body = []
    for run in runs:
        m = manifests.get(run.run_id, {})
        # lab.trace writes configs={name: {kernel, cmdline, timing, ...}}; older or hand-made
        # manifests may have config/configs/config_names at the top level
        per_cfg = m.get("configs") if isinstance(m.get("configs"), dict) else None
        entries = list(per_cfg.items()) if per_cfg else [
            (_fmt(m.get("configs", m.get("config_names", m.get("config")))), m)]
        host: dict[str, Any] = m["host"] if isinstance(m.get("host"), dict) else {}
        mem = host.get("mem_bytes")
        machine = _lines(_fmt(host.get("hostname")), _fmt(host.get("platform")),
                         " ".join(x for x in (
                             f"{host['cpus']} CPUs" if host.get("cpus") else "",
                             f"{mem / 2**30:.0f} GiB" if isinstance(mem, int | float) else "")
                             if x))
        lab = _lines(_fmt(m.get("lab_version")), _fmt(m.get("git_commit"))[:20])
        for name, c in entries:
            c = c if isinstance(c, dict) else {}
            recs = [r for r in records if r.get("run_id") == run.run_id
                    and (per_cfg is None or r.get("config_name", r.get("config")) == name)]
            shown = sorted({str(r.get("config")) for r in recs}) or [str(name)]
            sim = c.get("simulated", m.get("simulated"))
            if sim is None and recs:
                sim = any(bool(r.get("simulated")) for r in recs)
            source = _lines("—" if sim is None else "SIMULATED" if sim else "real guest",
                            _fmt(m.get("backend")), _fmt(c.get("timing", m.get("timing"))))
            argv = c.get("qemu_argv")
            qemu = _lines(_fmt(c.get("qemu_version")), _fmt(c.get("accel")))
            if isinstance(argv, list):
                qemu += (f"<details><summary>argv</summary><code>"
                         f"{_esc(' '.join(str(a) for a in argv))}</code></details>")
            wl = sorted({str(r.get("workload")) for r in recs}) or m.get("workloads") or [
                m.get("workload")]
            cells = (_esc(run.run_id), _esc(", ".join(shown)), _esc(", ".join(map(_fmt, wl))),
                     _esc(str(len(recs))), source, machine,
                     _lines(*_kernel(c.get("kernel", m.get("kernel")), c.get("kernel_name"))),
                     _esc(_fmt(c.get("cmdline", m.get("cmdline")))), qemu, lab)
            body.append("<tr>" + "".join(f"<td>{x}</td>" for x in cells) + "</tr>")
    hosts = sorted({_fmt(m.get("host", {}).get("hostname")) for m in manifests.values()
                    if isinstance(m.get("host"), dict)})
    summary = (f"<p class='note'>{len(runs)} run{'s' * (len(runs) != 1)}"
               + (f" from {len(hosts)} machine{'s' * (len(hosts) != 1)}: {_esc(', '.join(hosts))}"
                  if hosts else "") + ".</p>")
    return summary + _table(head, body, "prov")


def _cell(c: dict[str, Any], scale: float = 1.0) -> str:
    if "absent" in c:
        return f'<td class="absent" title="{_esc(c["absent"])}">absent</td>'
    if not c:
        return '<td class="absent">not recorded</td>'
    mean, lo, hi = (c[k] / scale for k in ("mean", "lo", "hi"))
    if math.isnan(lo):
        txt = f"{_num(mean)} (n={c['n']}, no CI)"
    else:
        txt = f"{_num(mean)} ± {_num((hi - lo) / 2)}"
    tip = f"95% CI {_num(lo)}–{_num(hi)}, CV {c['cv']:.3f}, n={c['n']}"
    noisy = " ⚠ noisy" if c.get("noisy") else ""
    return f'<td class="num" title="{_esc(tip)}">{_esc(txt)}{noisy}</td>'


def _vs(base: Any, vals: Any) -> str:
    if base is None or vals is None:
        return ""
    with warnings.catch_warnings():  # scipy's precision note on near-identical repeats
        warnings.simplefilter("ignore", RuntimeWarning)
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
              base_idx: int | None, counters: tuple[str, ...] = KEY_COUNTERS,
              extras: bool = True) -> str:
    """Counters (and guest time, meminfo change) per configuration; Welch vs the baseline."""
    lines = [(n, "counter", n, 1.0) for n in counters]
    if extras:
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
        body.append(f"<tr><th>{_esc(name)}</th>{''.join(tds)}</tr>")
    corner = "per unit" + (f" (baseline: {labels[base_idx]})" if base_idx is not None else "")
    return _table((corner, *labels), body)


# ---------------------------------------------------------------------------------------------
# charts


def _bars(fig: go.Figure, cells: list[dict[str, Any]], labels: list[str], colors: list[str],
          row: int, col: int, scale: float = 1.0) -> None:
    for label, c, color in zip(labels, cells, colors, strict=True):
        ok = bool(c) and "absent" not in c
        mean = c["mean"] / scale if ok else 0.0
        err_hi = (c["hi"] / scale - mean) if ok and not math.isnan(c["lo"]) else 0.0
        err_lo = (mean - c["lo"] / scale) if ok and not math.isnan(c["lo"]) else 0.0
        tip = (f"{_num(mean)} (95% CI {_num(c['lo'] / scale)}–{_num(c['hi'] / scale)}, "
               f"n={c['n']})" if ok else _esc(c.get("absent", "not recorded")))
        fig.add_trace(go.Bar(
            x=[label], y=[mean], name=label.replace("<br>", ""), showlegend=False,
            marker_color=color,
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


def _params_text(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(params.items())) or "none"


def _param_tags(param_sets: list[dict[str, Any]]) -> dict[str, str]:
    """Short names for a workload's parameter sets: only the parameters that differ."""
    if len(param_sets) < 2:
        return {}
    keys = sorted({k for p in param_sets for k in p})
    differ = [k for k in keys if len({json.dumps(p.get(k)) for p in param_sets}) > 1]
    return {json.dumps(p, sort_keys=True): _params_text({k: p.get(k) for k in differ})
            for p in param_sets}


def _labels(rows: list[dict[str, Any]]) -> list[str]:
    """Configuration names; params and workload are added only where needed to tell rows apart."""
    out = [r["config"] for r in rows]
    if len(set(out)) < len(out):
        out = [f"{r['config']} {_params_text(r['params'])}" for r in rows]
    if len(set(out)) < len(out):
        out = [f"{r['workload']}: {x}" for r, x in zip(rows, out, strict=True)]
    return out


def _workload_figure(workload: str, unit: str, timing: str, rows: list[dict[str, Any]],
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


def _taskpile(records: list[dict[str, Any]], color_of: dict[str, str],
              sfx: str) -> tuple[go.Figure, str] | None:
    """LowFree and PageTables against tasks alive, one line per configuration."""
    series: dict[str, dict[int, list[dict[str, Any]]]] = {}
    stops: dict[str, list[str]] = {}
    base_of: dict[str, str] = {}
    piles = [r for r in records if r.get("workload") == "taskpile"]
    tags = _param_tags([json.loads(p) for p in sorted(
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
            f"{len(samples)} samples, stopped: {_fmt(report.get('stopped_because'))}"
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
                line={"color": color_of.get(base_of[config], _COLORS[0]),
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
        _esc(f"{config}: {len(runs)} repeats; " + "; ".join(
            f"{n}× {what}" for what, n in sorted(Counter(runs).items())))
        for config, runs in sorted(stops.items())) + "</p>"
    return fig, note


def _ticks(v: float) -> str:
    return f"{v:,.0f}" if v == int(v) else f"{v:,.1f}"


def _profile_section(run: RunDir, m: dict[str, Any]) -> str:
    """A differential profile's top and bottom PROFILE_ROWS symbols by delta, as tables."""
    path = run.path / "profile.json"
    try:
        prof = json.loads(path.read_text())
        a, b = prof["configs"]
        rows = [(str(r["symbol"]), float(r["a_ticks"]), float(r["b_ticks"]), float(r["delta"]))
                for r in prof["rows"]]
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise LabError(f"run {run.run_id}: profile.json is malformed ({type(e).__name__}: {e}); "
                       "expected {configs: [A, B], rows: [{symbol, a_ticks, b_ticks, delta}]}"
                       ) from None
    rows.sort(key=lambda r: (-r[3], r[0]))
    top = rows[:PROFILE_ROWS]
    bottom = [r for r in reversed(rows[len(top):])][:PROFILE_ROWS]
    head = ("symbol", f"{a} ticks", f"{b} ticks", f"Δ ({b} − {a})")

    def body(part: list[tuple[str, float, float, float]]) -> list[str]:
        return [f"<tr><td><code>{_esc(s)}</code></td><td class='num'>{_ticks(x)}</td>"
                f"<td class='num'>{_ticks(y)}</td><td class='num'>{d:+,.0f}</td></tr>"
                for s, x, y, d in part]

    sim = SIMULATED_SUFFIX if m.get("simulated") else ""
    totals = prof.get("totals") if isinstance(prof.get("totals"), dict) else {}
    facts = [f"{_fmt(prof.get('workload', m.get('workload')))} {_fmt(prof.get('params'))}",
             _fmt(prof.get("sampler"))]
    for cfg in (a, b):
        t = totals.get(cfg)
        if isinstance(t, dict) and t.get("ticks") is not None:
            per = (f", {t['ticks'] / t['ops']:.2f} per op" if isinstance(t.get("ops"), int | float)
                   and t["ops"] else "")
            facts.append(f"{cfg}: {_ticks(float(t['ticks']))} ticks{per}")
    return (f"<h3>{_esc(f'{b} vs {a} — run {run.run_id}{sim}')}</h3>"
            f"<p class='note'>{_esc(' · '.join(x for x in facts if x and x != '—'))} "
            f"({len(rows)} symbols)</p><div class='pair'>"
            f"<div><b>Largest rises in {_esc(b)}</b>{_table(head, body(top))}</div>"
            f"<div><b>Largest falls in {_esc(b)}</b>{_table(head, body(bottom))}</div></div>")


# ---------------------------------------------------------------------------------------------


def _mixed(records: list[dict[str, Any]]) -> str:
    parts = []
    for key in ("timing", "backend"):
        seen = sorted({str(r.get(key)) for r in records})
        if len(seen) > 1:
            parts.append(f"{key} {', '.join(seen)}")
    if not parts:
        return ""
    return (f'<div class="banner mixed">MIXED ({_esc("; ".join(parts))}): shown together '
            "because --allow-mixed was given; numbers measured differently are not like for "
            "like.</div>")


def _gap_section(records: list[dict[str, Any]], gap: tuple[str, str]) -> str:
    """The share of the baseline → floor gap each other configuration recovers, per cell."""
    from .compare import gap_table

    def share(f: dict[str, Any]) -> str:
        if f["mean"] != f["mean"]:
            return "no gap"
        return _esc(f"{f['mean']:.0%}" + (f" [{f['lo']:.0%}, {f['hi']:.0%}]"
                                          if f["lo"] == f["lo"] else ""))

    body = []
    for r in gap_table(records, *gap):
        cells = [f"{r['workload']} (per {r['unit']})", r["config"]]
        html = "".join(f"<td>{_esc(c)}</td>" for c in cells)
        for label, scale in (("guest time", 1e-3), ("highmem kmaps", 1.0)):
            f = r["figures"].get(label)
            if not f:
                html += "<td>-</td><td>-</td>"
                continue
            trio = " / ".join(f"{f[k] * scale:,.2f}" for k in ("base", "floor", "candidate"))
            html += f"<td>{_esc(trio)}</td><td>{share(f)}</td>"
        body.append(f"<tr>{html}</tr>")
    if not body:
        return ""
    return (f"<p class='note'>Share of the {_esc(gap[0])} → {_esc(gap[1])} gap recovered: "
            "(baseline − candidate) / (baseline − floor), mean [95% bootstrap CI, repeats "
            "resampled per configuration]. 100% = as good as the floor.</p>"
            + _table(("workload", "config", "guest µs: base / floor / candidate", "recovered",
                      "highmem kmaps: base / floor / candidate", "removed"), body))


def _slopes_table(records: list[dict[str, Any]]) -> str:
    from .compare import taskpile_slopes

    body = []
    for cfg, s in taskpile_slopes(records).items():
        cells = [cfg] + [f"{s[k]['mean']:.2f} [{s[k]['lo']:.2f}, {s[k]['hi']:.2f}]"
                         if s[k]["mean"] == s[k]["mean"] else "-"
                         for k in ("lowmem_pages_per_task", "pagetables_pages_per_task")]
        body.append("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in cells)
                    + f"<td>{s['samples']}</td></tr>")
    return ("<p class='note'>4 kB pages per task alive: least-squares slope over every sample "
            "(LowFree + per-CPU lists falling, PageTables rising), 95% CI.</p>"
            + _table(("config", "lowmem pages/task", "PageTables pages/task", "samples"), body)
            if body else "")


def render_dashboard(runs: list[RunDir], out: Path, baseline: str | None = None,
                     allow_mixed: bool = False, gap: tuple[str, str] | None = None) -> Path:
    """Write one offline HTML dashboard for ``runs``; returns its path.

    ``out`` is a file path, or a directory to put ``dashboard-<first run id>.html`` in.
    ``baseline`` names a configuration the others are compared to (Welch test, in the table).
    ``gap`` (baseline, floor) adds the share of that gap the other configurations recover;
    by default a study plan's ``gap`` from the run manifest.
    Raises UsageError for nothing to show, an unknown baseline, or mixed timing/backends
    (unless ``allow_mixed``, which puts a MIXED banner on the page instead).
    """
    if not runs:
        raise UsageError("no runs to render")
    manifests: dict[str, dict[str, Any]] = {}
    for run in runs:
        try:
            manifests[run.run_id] = run.manifest()
        except LabError as e:
            manifests[run.run_id] = {"status": str(e)}
    profiled = [run for run in runs if (run.path / "profile.json").is_file()]
    raw = [r for run in runs for r in run.records()]
    if not raw and not profiled:
        raise UsageError(f"no records in {', '.join(r.run_id for r in runs)}: nothing to plot")
    records, notes = _split_origins(raw, manifests)
    rows = summarize(records, allow_mixed=allow_mixed) if records else []
    simulated = (any(bool(r.get("simulated")) for r in records)
                 or any(manifests[r.run_id].get("simulated") for r in profiled))
    sfx = SIMULATED_SUFFIX if simulated else ""
    if baseline is not None and rows and not any(
            row["config"] == baseline or row["config"].startswith(f"{baseline} @ ")
            for row in rows):
        known = ", ".join(sorted({row["config"] for row in rows}))
        raise UsageError(f"baseline {baseline!r} is not among the configurations: {known}")
    color_of = {c: _COLORS[i % len(_COLORS)]
                for i, c in enumerate(sorted({row["config"] for row in rows}))}

    figs: list[str] = []

    def plot(fig: go.Figure) -> str:
        figs.append(fig.to_html(full_html=False, include_plotlyjs=not figs,
                                config={"displaylogo": False, "responsive": True}))
        return figs[-1]

    sections: list[tuple[str, str, str, int]] = []   # (anchor, heading, html, level)
    # one section per workload and parameter set: per-unit figures depend on the parameters
    cells = sorted({(row["workload"], json.dumps(row["params"], sort_keys=True)) for row in rows})
    for workload, params in cells:
        wrows = [row for row in rows if row["workload"] == workload
                 and json.dumps(row["params"], sort_keys=True) == params]
        groups = [[r for r in records if r.get("config") == row["config"]
                   and r.get("workload") == workload and r.get("params", {}) == row["params"]]
                  for row in wrows]
        labels = _labels(wrows)
        base_idx = next((i for i, row in enumerate(wrows) if baseline is not None and (
            row["config"] == baseline or row["config"].startswith(f"{baseline} @ "))), None)
        unit = "/".join(sorted({str(row["unit"]) for row in wrows}))
        timing = "/".join(sorted({t for row in wrows for t in row["timing"]}))
        tags = _param_tags([json.loads(p) for w, p in cells if w == workload])
        tag = tags.get(params, "")
        name = f"{workload} ({tag})" if tag else workload
        anchor = f"w-{workload}" + (f"-{re.sub(r'[^A-Za-z0-9]+', '-', tag)}" if tag else "")
        note = ("" if base_idx is not None or baseline is None else
                f"<p class='note'>baseline {_esc(baseline)} was not measured with this "
                "workload and parameters: no comparison.</p>")
        others = sorted({n for row in wrows for n in row["counters"]} - set(KEY_COUNTERS))
        more = (f"<details><summary>{len(others)} more counters</summary>"
                f"{_headline(wrows, labels, groups, base_idx, tuple(others), False)}</details>"
                if others else "")
        fig = _workload_figure(name, unit, timing, wrows, [_wrap(x) for x in labels],
                               [color_of[row["config"]] for row in wrows], sfx)
        sections.append((anchor, f"{name} — per {unit}",
                         f"<p class='note'>parameters: {_esc(_params_text(json.loads(params)))}"
                         f"</p>{note}{_headline(wrows, labels, groups, base_idx)}{more}"
                         f"{plot(fig)}", 3))
    pile = _taskpile(records, color_of, sfx)
    if pile:
        sections.append(("taskpile", "taskpile: lowmem curve",
                         pile[1] + _slopes_table(records) + plot(pile[0]), 2))
    if gap is None:
        gap = next((tuple(m["gap"]) for m in manifests.values()  # type: ignore[misc]
                    if isinstance(m.get("gap"), list) and len(m["gap"]) == 2), None)
    gap_html = _gap_section(records, gap) if gap else ""
    if gap_html:  # a summary of the workload sections: before their headline, not among them
        gap_html = f'<h2 id="gap">Gap recovered</h2>{gap_html}'
    if profiled:
        sections.append(("profile", "Differential profiles",
                         "".join(_profile_section(run, manifests[run.run_id])
                                 for run in profiled), 2))

    workloads = sorted({row["workload"] for row in rows}) or sorted(
        {str(manifests[r.run_id].get("workload")) for r in profiled})
    title = "ukva-lab: " + ", ".join(workloads) + sfx
    banner = ('<div class="banner">SIMULATED: these numbers come from the sim model '
              '(lab/tracers/sim_model.toml), not from a guest kernel.</div>' if simulated else "")
    if allow_mixed:
        banner += _mixed(records)
    nav = ('<a href="#gap">Gap recovered</a> ' if gap_html else "") + " ".join(
        f'<a href="#{a}">{_esc(h)}</a>' for a, h, _, _ in sections)
    head = ("<h2>Headline: per unit, mean ± half-width of the 95% CI</h2><p class='note'>Hover "
            "a cell for the CI bounds and CV. “absent” means the kernel lacks the counter "
            "(recorded as absent, not 0).</p>" if rows else "")
    body = "".join(f'<h{n} id="{a}">{_esc(h)}</h{n}>{s}' for a, h, s, n in sections)
    notes_html = "".join(f"<p class='note'>{_esc(n)}</p>" for n in notes)
    page = (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>"
            f"<h1>{_esc(title)}</h1>{banner}<nav>{nav}</nav>"
            f"<h2>Provenance</h2>{_provenance(runs, manifests, records)}{notes_html}"
            f"{gap_html}{head}{body}</body></html>")
    if out.is_dir():
        out = out / f"dashboard-{runs[0].run_id}.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out
