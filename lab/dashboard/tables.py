"""The dashboard's tables: headline (mean ± CI half-width, Δ and Welch's p from the report),
gap recovered, taskpile slopes, differential profiles. They format lab/report.py's
figures; none is computed here.
"""

from __future__ import annotations

import json
import math
from typing import Any

from ..clocks import GUEST_CLOCKS
from ..errors import LabError
from ..profile import annotate
from ..results import RunDir
from ..stats import MEMINFO_KEYS
from .fmt import KEY_COUNTERS, PROFILE_ROWS, SIMULATED_SUFFIX, esc, fmt, num, table

__all__ = ["headline_table", "profile_section", "gap_section", "slopes_table"]


def _cell(c: dict[str, Any], scale: float = 1.0) -> str:
    if "absent" in c:
        return f'<td class="absent" title="{esc(c["absent"])}">absent</td>'
    if not c:
        return '<td class="absent">not recorded</td>'
    mean, lo, hi = (c[k] / scale for k in ("mean", "lo", "hi"))
    if math.isnan(lo):
        txt = f"{num(mean)} (n={c['n']}, no CI)"
    else:
        txt = f"{num(mean)} ± {num((hi - lo) / 2)}"
    tip = f"95% CI {num(lo)}–{num(hi)}, CV {c['cv']:.3f}, n={c['n']}"
    noisy = " ⚠ noisy" if c.get("noisy") else ""
    return f'<td class="num" title="{esc(tip)}">{esc(txt)}{noisy}</td>'


def _vs(c: dict[str, Any]) -> str:
    """The report's comparison of one cell with the baseline's, as a note under it."""
    rel, p = c.get("delta_pct"), c.get("welch_p")
    if rel is None or math.isnan(rel) or math.isinf(rel):
        return ""
    ptxt = "p n/a" if p is None or math.isnan(p) else f"p={p:.2g}"
    return f"<br><span class='note'>{rel:+.0f}% vs baseline, {ptxt}</span>"


def _line(kind: str, key: str, row: dict[str, Any]) -> dict[str, Any]:
    """One headline cell of a report row."""
    if kind == "counter":
        return row["counters"].get(key, {"absent": "not recorded"})
    if kind == "time":
        return row["guest_ns_per_unit"]
    if kind == "clock":
        return row.get("clocks", {}).get(key, {})
    return row["meminfo_change_kb"][key]


def headline_table(rows: list[dict[str, Any]], labels: list[str], base_idx: int | None,
                   counters: tuple[str, ...] = KEY_COUNTERS, extras: bool = True) -> str:
    """Counters (and guest time, modelled cycles per machine model when the runs have
    cost-plugin counts, meminfo change) per configuration; Δ and Welch's p against the
    baseline row ``base_idx`` (none when None), as the report computed them."""
    lines = [(n, "counter", n, 1.0) for n in counters]
    if extras:
        lines.append(("guest time (µs)", "time", "", 1000.0))
        lines += [(f"{c} modelled cycles", "clock", c, 1.0)
                  for c in (rows[0].get("clocks", {}) if rows else {}) if c not in GUEST_CLOCKS]
        lines += [(f"{k} change (kB, whole run)", "meminfo", k, 1.0) for k in MEMINFO_KEYS]
    body = []
    for name, kind, key, scale in lines:
        tds = []
        for i, row in enumerate(rows):
            cell = _line(kind, key, row)
            td = _cell(cell, scale)
            if base_idx is not None and i != base_idx:
                td = td[:-5] + _vs(cell) + "</td>"
            tds.append(td)
        body.append(f"<tr><th>{esc(name)}</th>{''.join(tds)}</tr>")
    corner = "per unit" + (f" (baseline: {labels[base_idx]})" if base_idx is not None else "")
    return table((corner, *labels), body)


def _ticks(v: float) -> str:
    return f"{v:,.0f}" if v == int(v) else f"{v:,.1f}"


def profile_section(run: RunDir, m: dict[str, Any]) -> str:
    """A differential profile's top and bottom PROFILE_ROWS symbols by delta, as tables."""
    path = run.path / "profile.json"
    try:
        prof = annotate(json.loads(path.read_text()))
        a, b = prof["configs"]
        rows = [(str(r["symbol"]), float(r["a_ticks"]), float(r["b_ticks"]), float(r["delta"]),
                 bool(r["significant"])) for r in prof["rows"]]
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise LabError(f"run {run.run_id}: profile.json is malformed ({type(e).__name__}: {e}); "
                       "expected {configs: [A, B], rows: [{symbol, a_ticks, b_ticks, delta}]}"
                       ) from None
    top = rows[:PROFILE_ROWS]
    bottom = [r for r in reversed(rows[len(top):])][:PROFILE_ROWS]
    head = ("symbol", f"{a} ticks", f"{b} ticks", f"Δ ({b} − {a})")

    def body(part: list[tuple[str, float, float, float, bool]]) -> list[str]:
        return [f"<tr><td><code>{esc(s)}</code>{' *' if sig else ''}</td>"
                f"<td class='num'>{_ticks(x)}</td>"
                f"<td class='num'>{_ticks(y)}</td><td class='num'>{d:+,.0f}</td></tr>"
                for s, x, y, d, sig in part]

    sim = SIMULATED_SUFFIX if m.get("simulated") else ""
    totals: dict[str, Any] = prof["totals"] if isinstance(prof.get("totals"), dict) else {}
    facts = [f"{fmt(prof.get('workload', m.get('workload')))} {fmt(prof.get('params'))}",
             fmt(prof.get("sampler"))]
    for cfg in (a, b):
        t = totals.get(cfg)
        if isinstance(t, dict) and t.get("ticks") is not None:
            per = (f", {t['ticks'] / t['ops']:.2f} per op" if isinstance(t.get("ops"), int | float)
                   and t["ops"] else "")
            facts.append(f"{cfg}: {_ticks(float(t['ticks']))} ticks{per}")
    return (f"<h3>{esc(f'{b} vs {a} — run {run.run_id}{sim}')}</h3>"
            f"<p class='note'>{esc(' · '.join(x for x in facts if x and x != '—'))} "
            f"({len(rows)} symbols; * marks the {sum(r[4] for r in rows)} whose difference is "
            f"significant: {esc(prof['method'])})</p><div class='pair'>"
            f"<div><b>Largest rises in {esc(b)}</b>{table(head, body(top))}</div>"
            f"<div><b>Largest falls in {esc(b)}</b>{table(head, body(bottom))}</div></div>")


def gap_section(gap: dict[str, Any]) -> str:
    """The share of the baseline → floor gap each other configuration recovers, per cell
    (the report's ``gap``: baseline, floor, rows)."""

    def share(f: dict[str, Any]) -> str:
        if f["mean"] != f["mean"]:
            return "no gap"
        return esc(f"{f['mean']:.0%}" + (f" [{f['lo']:.0%}, {f['hi']:.0%}]"
                                         if f["lo"] == f["lo"] else ""))

    body = []
    for r in gap["rows"]:
        cells = [f"{r['workload']} (per {r['unit']})", r["config"]]
        html = "".join(f"<td>{esc(c)}</td>" for c in cells)
        for label, scale in (("guest time", 1e-3), ("highmem kmaps", 1.0)):
            f = r["figures"].get(label)
            if not f:
                html += "<td>-</td><td>-</td>"
                continue
            trio = " / ".join(f"{f[k] * scale:,.2f}" for k in ("base", "floor", "candidate"))
            html += f"<td>{esc(trio)}</td><td>{share(f)}</td>"
        body.append(f"<tr>{html}</tr>")
    if not body:
        return ""
    return (f"<p class='note'>Share of the {esc(gap['baseline'])} → {esc(gap['floor'])} gap "
            "recovered: "
            "(baseline − candidate) / (baseline − floor), mean [95% bootstrap CI, repeats "
            "resampled per configuration]. 100% = as good as the floor.</p>"
            + table(("workload", "config", "guest µs: base / floor / candidate", "recovered",
                     "highmem kmaps: base / floor / candidate", "removed"), body))


def slopes_table(slopes: dict[str, dict[str, Any]]) -> str:
    """The report's taskpile slopes: pages per task alive, per configuration."""
    body = []
    for cfg, s in slopes.items():
        cells = [cfg] + [f"{s[k]['mean']:.2f} [{s[k]['lo']:.2f}, {s[k]['hi']:.2f}]"
                         if s[k]["mean"] == s[k]["mean"] else "-"
                         for k in ("lowmem_pages_per_task", "pagetables_pages_per_task")]
        body.append("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in cells)
                    + f"<td>{s['samples']}</td></tr>")
    return ("<p class='note'>4 kB pages per task alive: least-squares slope over every sample "
            "(LowFree + per-CPU lists falling, PageTables rising), 95% CI.</p>"
            + table(("config", "lowmem pages/task", "PageTables pages/task", "samples"), body)
            if body else "")
