"""The page: sections in order, banners (SIMULATED, MIXED), navigation, one offline file.

Every number on it comes from one :func:`lab.report.build_report` call over the runs'
records (relabelled per origin first): the page decides what to show, not what it is. It
opens with the answer as pictures, in each clock (answer.py), before the provenance.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from ..errors import LabError, UsageError
from ..report import build_report
from ..results import RunDir
from .answer import answer_section
from .charts import COLORS, taskpile_figure, workload_figure, wrap
from .ebpf_figs import latency_section, stacks_section
from .fmt import KEY_COUNTERS, SIMULATED_SUFFIX, config_labels, esc, param_tags, params_text
from .provenance import provenance_table, split_origins
from .tables import gap_section, headline_table, profile_section, slopes_table

__all__ = ["render_dashboard"]

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


def _mixed(records: list[dict[str, Any]]) -> str:
    parts = []
    for key in ("timing", "backend"):
        seen = sorted({str(r.get(key)) for r in records})
        if len(seen) > 1:
            parts.append(f"{key} {', '.join(seen)}")
    if not parts:
        return ""
    return (f'<div class="banner mixed">MIXED ({esc("; ".join(parts))}): shown together '
            "because --allow-mixed was given; numbers measured differently are not like for "
            "like.</div>")


def render_dashboard(runs: list[RunDir], out: Path, baseline: str | None = None,
                     allow_mixed: bool = False, gap: tuple[str, str] | None = None,
                     cost_models: list[str] | None = None) -> Path:
    """Write one offline HTML dashboard for ``runs``; returns its path.

    ``out`` is a file path, or a directory to put ``dashboard-<first run id>.html`` in.
    ``baseline`` names a configuration the others are compared to (Welch test, in the table).
    ``gap`` (baseline, floor) adds the share of that gap the other configurations recover;
    by default a study plan's ``gap`` from the run manifest. ``cost_models``: the machine
    models to give modelled cycles in when the runs carry cost-plugin counts (default: all).
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
    records, notes = split_origins(raw, manifests)
    if gap is None:
        gap = next((tuple(m["gap"]) for m in manifests.values()  # type: ignore[misc]
                    if isinstance(m.get("gap"), list) and len(m["gap"]) == 2), None)
    report = build_report(records, baseline=baseline, gap=gap, allow_mixed=allow_mixed,
                          cost_models=cost_models)
    rows = report["summary"]
    simulated = (any(bool(r.get("simulated")) for r in records)
                 or any(manifests[r.run_id].get("simulated") for r in profiled))
    sfx = SIMULATED_SUFFIX if simulated else ""
    color_of = {c: COLORS[i % len(COLORS)]
                for i, c in enumerate(sorted({row["config"] for row in rows}))}

    figs: list[str] = []

    def plot(fig: go.Figure) -> str:
        figs.append(fig.to_html(full_html=False, include_plotlyjs=not figs,
                                config={"displaylogo": False, "responsive": True}))
        return figs[-1]

    answer = answer_section(report, sfx, plot)   # first: it carries plotly.js for the page
    sections: list[tuple[str, str, str, int]] = []   # (anchor, heading, html, level)
    # one section per workload and parameter set: per-unit figures depend on the parameters
    cells = sorted({(row["workload"], json.dumps(row["params"], sort_keys=True)) for row in rows})
    for workload, params in cells:
        wrows = [row for row in rows if row["workload"] == workload
                 and json.dumps(row["params"], sort_keys=True) == params]
        labels = config_labels(wrows)
        base_idx = next((i for i, row in enumerate(wrows) if baseline is not None
                         and row["config"] == row["baseline"]), None)
        unit = "/".join(sorted({str(row["unit"]) for row in wrows}))
        timing = "/".join(sorted({t for row in wrows for t in row["timing"]}))
        tags = param_tags([json.loads(p) for w, p in cells if w == workload])
        tag = tags.get(params, "")
        name = f"{workload} ({tag})" if tag else workload
        anchor = f"w-{workload}" + (f"-{re.sub(r'[^A-Za-z0-9]+', '-', tag)}" if tag else "")
        note = ("" if base_idx is not None or baseline is None else
                f"<p class='note'>baseline {esc(baseline)} was not measured with this "
                "workload and parameters: no comparison.</p>")
        others = sorted({n for row in wrows for n in row["counters"]} - set(KEY_COUNTERS))
        more = (f"<details><summary>{len(others)} more counters</summary>"
                f"{headline_table(wrows, labels, base_idx, tuple(others), False)}</details>"
                if others else "")
        fig = workload_figure(name, unit, timing, wrows, [wrap(x) for x in labels],
                              [color_of[row["config"]] for row in wrows], sfx)
        sections.append((anchor, f"{name} — per {unit}",
                         f"<p class='note'>parameters: {esc(params_text(json.loads(params)))}"
                         f"</p>{note}{headline_table(wrows, labels, base_idx)}{more}"
                         f"{plot(fig)}", 3))
    pile = taskpile_figure(records, color_of, sfx)
    if pile:
        sections.append(("taskpile", "taskpile: lowmem curve",
                         pile[1] + slopes_table(report.get("taskpile_slopes", {}))
                         + plot(pile[0]), 2))
    flames = stacks_section(records, sfx, plot)
    if flames:
        sections.append(("stacks", "Call stacks (ebpf)", flames, 2))
    lat = latency_section(records, sfx, plot)
    if lat:
        sections.append(("latency", "Latency (ebpf)", lat, 2))
    gap_html = gap_section(report["gap"]) if "gap" in report else ""
    if gap_html:  # a summary of the workload sections: before their headline, not among them
        gap_html = f'<h2 id="gap">Gap recovered</h2>{gap_html}'
    if profiled:
        sections.append(("profile", "Differential profiles",
                         "".join(profile_section(run, manifests[run.run_id])
                                 for run in profiled), 2))

    workloads = sorted({row["workload"] for row in rows}) or sorted(
        {str(manifests[r.run_id].get("workload")) for r in profiled})
    title = "ukva-lab: " + ", ".join(workloads) + sfx
    beyond = sorted({w for r in records for w in r.get("extrapolated") or []})
    banner = ('<div class="banner">SIMULATED: these numbers come from the sim model fitted to '
              'real runs (lab sim fit; see the provenance), not from a guest kernel.</div>'
              if simulated else "")
    if beyond:
        banner += ('<div class="banner">EXTRAPOLATED: outside what the sim model was fitted on '
                   f'({esc("; ".join(beyond))}).</div>')
        title += " EXTRAPOLATED"
    if allow_mixed:
        banner += _mixed(records)
    nav = ('<a href="#answer">The answer</a> ' if answer else "") + (
        '<a href="#gap">Gap recovered</a> ' if gap_html else "") + " ".join(
        f'<a href="#{a}">{esc(h)}</a>' for a, h, _, _ in sections)
    head = ("<h2>Headline: per unit, mean ± half-width of the 95% CI</h2><p class='note'>Hover "
            "a cell for the CI bounds and CV. “absent” means the kernel lacks the counter "
            "(recorded as absent, not 0).</p>" if rows else "")
    body = "".join(f'<h{n} id="{a}">{esc(h)}</h{n}>{s}' for a, h, s, n in sections)
    notes_html = "".join(f"<p class='note'>{esc(n)}</p>" for n in notes)
    page = (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>"
            f"<h1>{esc(title)}</h1>{banner}<nav>{nav}</nav>{answer}"
            f"<h2>Provenance</h2>{provenance_table(runs, manifests, records)}{notes_html}"
            f"{gap_html}{head}{body}</body></html>")
    if out.is_dir():
        out = out / f"dashboard-{runs[0].run_id}.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out
