"""The dashboard's ebpf sections: a flame graph (icicle) of each configuration's call stacks
for the probed symbol, a differential one between the first two configurations, and the
latency histograms. They read the records' ``stacks`` and ``latency`` (lab/callsites.py
computes the rows), never re-measure.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

import plotly.graph_objects as go

from ..callsites import latency_rows, stack_rows
from .fmt import esc

__all__ = ["flame_tree", "stacks_section", "latency_section"]

#: Stacks below this share of the hits are folded into their parent (keeps the page light).
MIN_SHARE = 0.002


def flame_tree(folded: dict[str, float], root: str) -> dict[str, float]:
    """Folded stacks → {node path: value}, every prefix of every stack a node (root first)."""
    tree: dict[str, float] = defaultdict(float)
    for stack, n in folded.items():
        path = root
        tree[path] += n
        for frame in stack.split(";"):
            path += ";" + frame.split()[0]
            tree[path] += n
    return dict(tree)


def _icicle(tree: dict[str, float], colors: dict[str, float] | None, title: str,
            hover: str) -> go.Figure:
    total = max(tree.values(), default=0.0) or 1.0
    ids = [p for p, v in tree.items() if v >= MIN_SHARE * total]
    # the scale spans the call sites, not the root (whose change is every site's summed)
    span = max((abs(colors[p]) for p in ids if ";" in p), default=1.0) if colors else 1.0
    fig = go.Figure(go.Icicle(
        ids=ids, labels=[p.rsplit(";", 1)[-1] for p in ids],
        parents=[p.rsplit(";", 1)[0] if ";" in p else "" for p in ids],
        values=[tree[p] for p in ids], branchvalues="total",
        tiling={"orientation": "v", "flip": "y"}, maxdepth=12,
        marker=({"colors": [colors[p] for p in ids],
                 "colorscale": "RdBu_r", "cmin": -span, "cmax": span, "showscale": True,
                 "colorbar": {"title": "Δ per unit"}} if colors is not None else {}),
        hovertemplate=hover, root={"color": "lightgrey"},
    ))
    fig.update_layout(title=title, height=560, margin={"t": 60, "l": 10, "r": 10, "b": 10})
    return fig


def stacks_section(records: list[dict[str, Any]], sfx: str,
                   plot: Callable[[go.Figure], str]) -> str:
    """One flame graph per configuration, then B minus A for the first two; "" without
    stacks."""
    rows = stack_rows(records)
    if not rows:
        return ""
    out = []
    per_unit = {}
    for row in rows:
        units = row["units"] or 1
        folded = {s: n / units for s, n in row["folded"].items()}
        per_unit[row["config"]] = folded
        tree = flame_tree(folded, row["config"])
        out.append(plot(_icicle(
            tree, None, f"{row['config']}: stacks reaching {row['probe']}, "
            f"{row['per_unit']:.2f} per {row['unit']} (lost {row['lost']}){sfx}",
            "%{id}<br>%{value:.3f} per unit<extra></extra>")))
    if len(rows) >= 2:
        a, b = rows[0]["config"], rows[1]["config"]
        ta, tb = flame_tree(per_unit[a], "both"), flame_tree(per_unit[b], "both")
        keys = list(dict.fromkeys([*ta, *tb]))
        both = {k: ta.get(k, 0.0) + tb.get(k, 0.0) for k in keys}
        delta = {k: tb.get(k, 0.0) - ta.get(k, 0.0) for k in keys}
        out.append(
            f"<p class='note'>Differential: box width is {esc(a)} and {esc(b)} together per "
            f"{esc(rows[0]['unit'])}; colour is {esc(b)} minus {esc(a)} per unit (red: "
            f"{esc(b)} adds these call sites, blue: it removes them).</p>")
        out.append(plot(_icicle(
            both, delta, f"{b} minus {a}: stacks reaching {rows[0]['probe']}{sfx}",
            "%{id}<br>both: %{value:.3f} per unit<br>Δ: %{color:+.3f}<extra></extra>")))
    return "".join(out)


def latency_section(records: list[dict[str, Any]], sfx: str,
                    plot: Callable[[go.Figure], str]) -> str:
    """funclatency histograms, one bar series per configuration; "" without latency."""
    rows = latency_rows(records)
    if not rows:
        return ""
    fig = go.Figure()
    slots = sorted({b["slot"] for row in rows for b in row["buckets"]})
    labels = {b["slot"]: b["range"] for row in rows for b in row["buckets"]}
    for row in rows:
        by = {b["slot"]: b["count"] / row["units"] for b in row["buckets"]}
        fig.add_trace(go.Bar(x=[labels[s] for s in slots], y=[by.get(s, 0.0) for s in slots],
                             name=row["config"]))
    timing = {row["timing"] for row in rows}
    note = ("under icount guest time is instructions executed, so these durations are "
            "deterministic: host load does not move them" if timing == {"icount"} else
            "realtime guest clock: host load moves these bars between runs")
    fig.update_layout(
        title=f"{rows[0]['function']} duration (log2 buckets, guest time) per "
              f"{rows[0]['unit']}{sfx}<br><sup>{note}</sup>",
        barmode="group", height=460, xaxis_title="duration", yaxis_type="log",
        yaxis_title=f"calls per "
        f"{rows[0]['unit']}", margin={"t": 90})
    return plot(fig)
