"""Names and formatting every dashboard section shares: numbers, manifest values, escaped
HTML tables, parameter labels. Nothing here computes a statistic.
"""

from __future__ import annotations

import html
import json
import math
from typing import Any

from ..report import headline

__all__ = ["KEY_COUNTERS", "SIMULATED_SUFFIX", "PROFILE_ROWS", "fmt", "num", "esc", "table",
           "cell_lines", "params_text", "param_tags", "config_labels"]

#: Counters in the headline table and the per-unit bar charts, in this order: those
#: lab/tracers/probes.toml marks ``chart = true``.
KEY_COUNTERS = headline().charted
SIMULATED_SUFFIX = " — SIMULATED"
#: Rows of a differential profile shown at each end (largest rises, largest falls).
PROFILE_ROWS = 20


def fmt(v: Any) -> str:
    """Manifest values of any shape as one readable line."""
    if v is None or v == "":
        return "—"
    if isinstance(v, str):
        return v
    if isinstance(v, list | tuple):
        return " ".join(fmt(x) for x in v)
    if isinstance(v, dict):
        return "; ".join(f"{k}: {fmt(x)}" for k, x in v.items())
    return str(v)


def num(v: float) -> str:
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


def esc(text: str) -> str:
    return html.escape(text)


def table(head: tuple[str, ...], body: list[str], cls: str = "") -> str:
    th = "".join(f"<th>{esc(h)}</th>" for h in head)
    klass = f' class="{cls}"' if cls else ""
    return f"<table{klass}><thead><tr>{th}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def cell_lines(*parts: str) -> str:
    """Escaped parts of one cell, one per line, dropping the empty ones."""
    return "<br>".join(esc(p) for p in parts if p and p != "—") or "—"


def params_text(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(params.items())) or "none"


def param_tags(param_sets: list[dict[str, Any]]) -> dict[str, str]:
    """Short names for a workload's parameter sets: only the parameters that differ."""
    if len(param_sets) < 2:
        return {}
    keys = sorted({k for p in param_sets for k in p})
    differ = [k for k in keys if len({json.dumps(p.get(k)) for p in param_sets}) > 1]
    return {json.dumps(p, sort_keys=True): params_text({k: p.get(k) for k in differ})
            for p in param_sets}


def config_labels(rows: list[dict[str, Any]]) -> list[str]:
    """Configuration names; params and workload are added only where needed to tell rows apart."""
    out = [r["config"] for r in rows]
    if len(set(out)) < len(out):
        out = [f"{r['config']} {params_text(r['params'])}" for r in rows]
    if len(set(out)) < len(out):
        out = [f"{r['workload']}: {x}" for r, x in zip(rows, out, strict=True)]
    return out
