"""Rows for ``lab stacks`` and ``lab latency``: call sites from folded stacks, and log2
histograms, per configuration, computed once from stored records for every view (terminal,
``--json``, dashboard).

A call site is the innermost ``depth`` callers of the probed function: deep enough to tell a
COW copy (wp_page_copy) from fork's page-table copy (copy_page_range) or a zeroed new page
(pte_alloc_one → __alloc_pages), short enough to print in 80 columns.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

__all__ = ["call_sites", "stack_rows", "latency_rows", "render_stacks", "render_latency",
           "bucket_label"]


def call_sites(folded: dict[str, int], probe: str, depth: int) -> dict[str, int]:
    """Folded stacks → {"caller < its caller < ...": hits}, the probed frame itself dropped."""
    out: dict[str, int] = defaultdict(int)
    for stack, n in folded.items():
        frames = [f.split()[0] for f in stack.split(";")]
        if frames and frames[-1] == probe:
            frames = frames[:-1]
        out[" < ".join(reversed(frames[-depth:])) or "[no caller]"] += n
    return dict(out)


def stack_rows(records: list[dict[str, Any]], depth: int = 3) -> list[dict[str, Any]]:
    """Per configuration: its units, hits lost, and call sites with hits per unit, most first."""
    by_cfg: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        if r.get("stacks"):
            by_cfg[r["config"]].append(r)
    rows = []
    for cfg, recs in by_cfg.items():
        units = sum(int(r["units"]) for r in recs)
        probe = recs[0]["stacks"]["probe"]
        sites: dict[str, int] = defaultdict(int)
        folded: dict[str, int] = defaultdict(int)
        for r in recs:
            for stack, n in r["stacks"]["folded"].items():
                folded[stack] += n
        for site, n in call_sites(folded, probe, depth).items():
            sites[site] += n
        total = sum(sites.values())
        rows.append({
            "config": cfg, "probe": probe, "unit": recs[0]["unit"], "units": units,
            "hits": total, "per_unit": total / units if units else None,
            "lost": sum(int(r["stacks"].get("lost", 0)) for r in recs),
            "sites": [{"site": s, "hits": n, "per_unit": n / units if units else None,
                       "share": n / total if total else 0.0}
                      for s, n in sorted(sites.items(), key=lambda kv: (-kv[1], kv[0]))],
            "folded": dict(folded),
        })
    return rows


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def render_stacks(rows: list[dict[str, Any]], top: int = 8) -> str:
    """The top call sites per configuration, under 80 columns."""
    out = []
    for row in rows:
        head = f"{row['config']}: {row['probe']}, {row['per_unit']:.2f} per {row['unit']}"
        counts = f"({row['hits']} hits, {row['units']} {row['unit']}s, {row['lost']} lost)"
        # one line while it fits (long configuration names and counts do not): counts below
        out.extend([f"{head} {counts}"] if len(head) + 1 + len(counts) < 80
                   else [head, f"  {counts}"])
        out.append(f"  {'per ' + row['unit']:>9} {'share':>6}  call site (caller < its caller)")
        for s in row["sites"][:top]:
            out.append(f"  {s['per_unit']:9.2f} {s['share']:6.1%}  {_clip(s['site'], 59)}")
        rest = row["sites"][top:]
        if rest:
            n = sum(s["hits"] for s in rest)
            out.append(f"  {n / row['units']:9.2f} {n / row['hits']:6.1%}  "
                       f"({len(rest)} more call sites)")
        out.append("")
    return "\n".join(out).rstrip()


def bucket_label(slot: int) -> str:
    """Log2 slot ``k`` → the range of durations it holds, e.g. "1-2 us" for slot 10."""
    def ns(v: int) -> str:
        for unit, div in (("s", 10**9), ("ms", 10**6), ("us", 10**3)):
            if v >= div:
                return f"{v // div}{unit}" if v % div == 0 else f"{v / div:.3g}{unit}"
        return f"{v}ns"
    lo = 0 if slot == 0 else 1 << slot
    return f"{ns(lo)}-{ns(1 << (slot + 1))}"


def latency_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per configuration: the function, its calls and the summed log2 histogram."""
    by_cfg: dict[str, dict[int, int]] = {}
    meta: dict[str, dict[str, Any]] = {}
    for r in records:
        lat = r.get("latency")
        if not lat:
            continue
        hist = by_cfg.setdefault(r["config"], defaultdict(int))
        for k, v in lat["log2_hist"].items():
            hist[int(k)] += int(v)
        m = meta.setdefault(r["config"], {"function": lat["function"], "lost": 0, "units": 0,
                                          "unit": r["unit"], "timing": r["timing"]})
        m["lost"] += int(lat.get("lost", 0))
        m["units"] += int(r["units"])
    rows = []
    for cfg, hist in by_cfg.items():
        calls = sum(hist.values())
        rows.append({"config": cfg, **meta[cfg], "calls": calls,
                     "buckets": [{"slot": k, "range": bucket_label(k), "count": hist[k]}
                                 for k in sorted(hist)]})
    return rows


def render_latency(rows: list[dict[str, Any]]) -> str:
    """funclatency-style histograms per configuration, under 80 columns."""
    out = []
    for row in rows:
        out.append(f"{row['config']}: {row['function']}, {row['calls']} calls "
                   f"({row['calls'] / row['units']:.2f} per {row['unit']}), "
                   f"{row['timing']} guest time")
        peak = max((b["count"] for b in row["buckets"]), default=0) or 1
        for b in row["buckets"]:
            bar = "*" * round(40 * b["count"] / peak)
            out.append(f"  {b['range']:>15} {b['count']:9} |{bar:<40}|")
        out.append("")
    return "\n".join(out).rstrip()
