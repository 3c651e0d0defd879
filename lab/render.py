"""A report as text a kernel engineer pastes into a mail, or as Markdown for the repository.

Why two formats from one function: a number in REPORT.md, in the README block and in a mail
must be the same number, so every section is laid out once, as (heading, table) blocks, and
only the last step differs. ``text`` is plain ASCII, every line under 80 columns, no tabs or
colour: it survives any mail client unchanged (a table too wide for 79 columns is printed as
one "column: value" stanza per row instead of being wrapped). ``markdown`` is GitHub tables.

Nothing here computes a statistic: the figures come from :func:`lab.report.build_report`, the
provenance from :func:`lab.report.provenance`, the profile marks from
:func:`lab.profile.annotate`; this module only chooses what to show and formats it.
"""

from __future__ import annotations

import json
import math
import textwrap
from typing import Any

from .clocks import clock_words
from .report import GUEST_TIME, figure_cells, headline

__all__ = ["render", "FORMATS", "WIDTH", "PROFILE_ROWS"]

FORMATS = ("text", "markdown")
#: Text lines stay strictly below this many columns.
WIDTH = 80
#: Rows shown from each end of a differential profile.
PROFILE_ROWS = 15

_ASCII = str.maketrans({"µ": "u", "Δ": "d", "−": "-", "→": "->", "—": "-", "±": "+/-",
                        "×": "x", "…": "...", "Σ": "sum"})


def _num(x: Any) -> str:
    """A figure with the precision a reader can use: 4 significant digits, thousands apart."""
    if not isinstance(x, int | float) or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    a = abs(x)
    if a >= 999.95:
        return f"{x:,.0f}"
    if a >= 100:
        return f"{x:.1f}"
    if a >= 1 or a == 0:
        return f"{x:.2f}"
    return f"{x:.3g}"


def _p(p: Any) -> str:
    if not isinstance(p, int | float) or not math.isfinite(p):
        return ""
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _pct(x: Any) -> str:
    if not isinstance(x, int | float) or not math.isfinite(x):
        return ""
    return f"{x:+.1f}%"


def _share(f: dict[str, Any]) -> str:
    if not math.isfinite(f.get("mean", math.nan)):
        return "no gap"
    ci = (f" [{f['lo']:.0%}, {f['hi']:.0%}]"
          if math.isfinite(f.get("lo", math.nan)) and math.isfinite(f.get("hi", math.nan))
          else "")
    return f"{f['mean']:.0%}{ci}"


def _table(head: list[str], rows: list[list[str]], fmt: str, right: set[int]) -> list[str]:
    """GitHub table, or padded text columns; text too wide becomes one stanza per row."""
    if fmt == "markdown":
        sep = ["---:" if i in right else "---" for i in range(len(head))]
        return [f"| {' | '.join(r)} |" for r in (head, sep,
                                                   *[[c.replace("|", "\\|") for c in r]
                                                     for r in rows])]
    widths = [max(len(r[i]) for r in (head, *rows)) for i in range(len(head))]
    if sum(widths) + 2 * (len(head) - 1) + 2 < WIDTH:
        def line(r: list[str]) -> str:
            return "  " + "  ".join(c.rjust(w) if i in right else c.ljust(w)
                                    for i, (c, w) in enumerate(zip(r, widths, strict=True))
                                    ).rstrip()
        return [line(head), line(["-" * w for w in widths]), *map(line, rows)]
    key = max(len(h) for h in head)
    out: list[str] = []
    for r in rows:
        for h, c in zip(head, r, strict=True):
            out += textwrap.wrap(f"{h.ljust(key)}  {c}", WIDTH - 1, initial_indent="  ",
                                 subsequent_indent=" " * (key + 4)) or [""]
        out.append("")
    return out


def _heading(title: str, fmt: str, level: int) -> list[str]:
    if fmt == "markdown":
        return ["", f"{'#' * level} {title}", ""]
    rule = "=" if level <= 2 else "-"
    title = title[:WIDTH - 1]
    return ["", title, rule * len(title)]


def _para(text: str, fmt: str) -> list[str]:
    if fmt == "markdown":
        return [text, ""]
    return [*textwrap.wrap(text, WIDTH - 1), ""]


def _params(p: Any) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted((p or {}).items())) or "defaults"


def _provenance(doc: dict[str, Any], fmt: str) -> list[str]:
    out = _heading("Provenance", fmt, 2)
    for r in doc["runs"]:
        sim = " SIMULATED (the sim model, not a guest kernel)" if r["simulated"] else ""
        if r.get("extrapolated"):
            sim += " EXTRAPOLATED (" + "; ".join(r["extrapolated"]) + ")"
        plan = f", plan {r['plan']}" if r["plan"] else ""
        out += _para(f"Run {r['run_id']} ({r['kind'] or '?'}{plan}): backend "
                     f"{r['backend']}, clock {r['timing']}{sim}; lab "
                     f"{r['lab_version']} at commit {str(r['git_commit'] or '?')[:12]}; host "
                     f"{r['host']}; started {r['started_at']}; status {r['status']}.", fmt)
        rows = []
        for name, c in r["configs"].items():
            kernel = " ".join(str(c[k]) for k in ("package", "package_version") if c.get(k)) \
                or str(c.get("kernel_name") or "-")
            rows.append([name, kernel, str(c.get("release") or "-"),
                         str(c.get("config_sha256") or "-")[:12],
                         str(c.get("qemu_version") or "-"), str(c.get("cmdline") or "-")])
        if rows and fmt == "markdown":
            out += _table(["config", "kernel (source version)", "release", ".config sha256",
                           "QEMU", "kernel command line"], rows, fmt, set())
            out.append("")
        for row in rows if fmt == "text" else []:   # one wrapped stanza per configuration
            out += textwrap.wrap(f"{row[0]}: kernel {row[1]}, release {row[2]}, .config "
                                 f"sha256 {row[3]}, QEMU {row[4]}, command line: {row[5]}",
                                 WIDTH - 1, initial_indent="  ", subsequent_indent="      ",
                                 break_on_hyphens=False)
        out.append("")
    return out


def _figures(row: dict[str, Any], brief: bool) -> dict[str, dict[str, Any]]:
    cells = figure_cells(row)
    if not brief:
        behind = set(headline().figures.values())   # already shown under their label
        for name in headline().charted:
            if name not in behind and name in row["counters"] and "mean" in row["counters"][name]:
                cells.setdefault(name, row["counters"][name])
    return cells


def _headline(doc: dict[str, Any], fmt: str, brief: bool) -> list[str]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in doc["report"]["summary"]:
        groups.setdefault(json.dumps([r["workload"], r["params"]], sort_keys=True),
                          []).append(r)
    if not groups:
        return []
    out = _heading("Per unit: mean, 95% CI, change from the baseline (Welch's p)", fmt, 2)
    for rows in groups.values():
        first = rows[0]
        ns = {r["n"] for r in rows}
        out += _para(f"{first['workload']} ({_params(first['params'])}), per "
                     f"{first['unit']}, baseline {first.get('baseline') or '-'}"
                     + (f", {ns.pop()} repeats each:" if len(ns) == 1 else ":"), fmt)
        table: list[list[str]] = []
        labels = list(dict.fromkeys(k for r in rows for k in _figures(r, brief)))
        for label in labels:
            for i, r in enumerate(rows):
                c = _figures(r, brief).get(label, {})
                scale = 1e-3 if label == GUEST_TIME else 1.0
                name = f"{label} (µs)" if label == GUEST_TIME else label
                if "mean" not in c:
                    cells = ["absent" if "absent" in c else "-", "", "", ""]
                else:
                    ci = (f"[{_num(c['lo'] * scale)}, {_num(c['hi'] * scale)}]"
                          if c.get("lo") is not None and math.isfinite(c["lo"]) else "")
                    cells = [_num(c["mean"] * scale), ci, _pct(c.get("delta_pct")),
                             _p(c.get("welch_p"))]
                cfg = r["config"] if len({x["n"] for x in rows}) == 1 else \
                    f"{r['config']} (n={r['n']})"
                table.append([name if i == 0 else "", cfg, *cells])
        out += _table(["figure", "config", "mean", "95% CI", "change", "p"], table, fmt,
                      {2, 4, 5})
        out.append("")
    return out


def _gap(doc: dict[str, Any], fmt: str) -> list[str]:
    g = doc["report"].get("gap")
    if not g or not g["rows"]:
        return []
    out = _heading(f"Share of the {g['baseline']} → {g['floor']} gap recovered", fmt, 2)
    out += _para(f"(B − C) / (B − F) per unit, B = {g['baseline']}, F = {g['floor']}, C the "
                 "candidate; 95% bootstrap CI over the repeats. 100% is as good as the floor.",
                 fmt)
    rows = []
    for r in g["rows"]:
        for label, f in r["figures"].items():
            scale = 1e-3 if label == GUEST_TIME else 1.0
            rows.append([r["workload"], r["config"],
                         f"{label} (µs)" if label == GUEST_TIME else label,
                         " / ".join(_num(f[k] * scale) for k in ("base", "floor", "candidate")),
                         _share(f)])
    out += _table(["workload", "C", "per unit", "B / F / C", "recovered"], rows, fmt, {3, 4})
    out.append("")
    return out


def _clocks(doc: dict[str, Any], fmt: str) -> list[str]:
    """Time in each clock side by side (icount, modelled cycles per machine model): the
    baseline's cost over the floor and the share of that gap each candidate recovers; just
    the clocks' description when there is no gap (the figures table has the cycles)."""
    clocks = doc["report"].get("clocks") or []
    words = clock_words(clocks)
    if not words:
        return []
    g = doc["report"].get("gap") or {}
    rows = [r for r in g.get("rows", []) if r.get("clocks")]
    if not rows:
        return _para(f"Clocks. {words}", fmt)
    b, f = g["baseline"], g["floor"]
    out = _heading(f"{b} vs {f} in each clock: cost and share recovered", fmt, 2)
    out += _para(f"cost: ({b} − {f}) / {f} per unit in that clock, Welch's p; recovered: "
                 f"({b} − C) / ({b} − {f}), C the candidate, 95% bootstrap CI over the "
                 f"repeats. {words}", fmt)
    names = [c["name"] for c in clocks]

    def cost(x: dict[str, Any] | None) -> str:
        if not x or not _pct(x.get("gap_pct")):
            return "-"
        p = _p(x.get("gap_p"))
        return _pct(x["gap_pct"]) + (f" (p{p})" if p.startswith("<") else
                                     f" (p={p})" if p else "")

    table = [[r["workload"], r["config"],
              *(cost(r["clocks"].get(n)) for n in names),
              *(_share(r["clocks"][n]) if n in r["clocks"] else "-" for n in names)]
             for r in rows]
    out += _table(["workload", "C", *(f"cost: {n}" for n in names),
                   *(f"recovered: {n}" for n in names)], table, fmt,
                  set(range(2, 2 + 2 * len(names))))
    out.append("")
    return out


def _taskpile(doc: dict[str, Any], fmt: str) -> list[str]:
    slopes = doc["report"].get("taskpile_slopes")
    if not slopes:
        return []
    reached = doc["report"].get("taskpile_reached", {})
    out = _heading("taskpile: 4 kB pages per task alive, and tasks reached", fmt, 2)
    rows = []
    for cfg, s in slopes.items():
        cells = [f"{_num(s[k]['mean'])} [{_num(s[k]['lo'])}, {_num(s[k]['hi'])}]"
                 for k in ("lowmem_pages_per_task", "pagetables_pages_per_task")]
        got = reached.get(cfg, {})
        tasks = ", ".join(str(n) for n in got.get("reached", [])) or "-"
        why = ", ".join(sorted(set(got.get("stopped_because", [])))) or "-"
        req = got.get("requested")
        rows.append([cfg, *cells, f"{tasks} of {req}" if req else tasks, why])
    out += _table(["config", "lowmem", "PageTables", "tasks reached", "stopped"], rows, fmt,
                  {1, 2, 3})
    out.append("")
    return out


def _profile(prof: dict[str, Any], fmt: str) -> list[str]:
    a, b = prof["configs"]
    t = prof.get("totals") or {}
    out = _heading(f"Differential profile: {b} − {a}, {prof.get('workload')} "
                   f"({_params(prof.get('params'))})", fmt, 2)
    sides = []
    for c in (a, b):
        s = t.get(c) or {}
        sides.append(f"{c} {prof['ticks'][c]:,} kernel ticks"
                     + (f" over {s['runs']} runs" if s.get("runs") else "")
                     + (f", {s['ops']:,} ops" if isinstance(s.get("ops"), int) else ""))
    rows = prof["rows"]
    marked = sum(r["significant"] for r in rows)
    out += _para(f"Run {prof['run_id']}{' (SIMULATED)' if prof.get('simulated') else ''}. "
                 f"{'; '.join(sides)} (readprofile timer ticks, idle loop excluded). "
                 f"Largest rises first, largest falls last. * marks the {marked} of "
                 f"{len(rows)} rows whose difference is significant ({prof['method']}); "
                 "unmarked rows may be chance.", fmt)
    shown = rows if len(rows) <= 2 * PROFILE_ROWS else [
        *rows[:PROFILE_ROWS], None, *rows[-PROFILE_ROWS:]]
    table = [["...", "", "", "", "", f"({len(rows) - 2 * PROFILE_ROWS} rows)"] if r is None
             else [f"{r['delta']:+,}", f"{r['a_ticks']:,}", f"{r['b_ticks']:,}",
                   _p(r.get("p_holm")), "*" if r["significant"] else "", r["symbol"][:40]]
             for r in shown]
    out += _table(["delta", a[:14], b[:14], "p (Holm)", "", "symbol"], table, fmt,
                  {0, 1, 2, 3})
    out.append("")
    return out


def render(doc: dict[str, Any], fmt: str = "text", brief: bool = False) -> str:
    """The report of ``doc`` (:func:`lab.notebook.report_doc`) in ``fmt`` (text or markdown).

    ``brief``: the README block: the named figures only (or just the gap table when there is
    one), no provenance (the block names the kernels and links to REPORT.md) and no profile.
    When the runs carry cost-plugin counts, both forms also give the gap in each clock
    (icount and modelled cycles per machine model) side by side, and what the model leaves
    out; without them the output is what it was before the cost model.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r}: one of {', '.join(FORMATS)}")
    lines: list[str] = []
    if not brief:
        title = doc["title"] + (" (SIMULATED)" if doc["simulated"] else "")
        lines += [f"# {title}", ""] if fmt == "markdown" else [title[:WIDTH - 1],
                                                                 "#" * min(len(title), 79)]
        if doc.get("description"):
            lines += ["", *_para(doc["description"], fmt)]
        lines += _provenance(doc, fmt)
        for note in doc.get("notes", []):
            lines += _para(f"Note: {note}.", fmt)
    # the README block of a study with a gap table leads with it: it already carries the
    # three configurations' means; the full table is in REPORT.md
    gap = _gap(doc, fmt)
    lines += (([] if brief and gap else _headline(doc, fmt, brief)) + _clocks(doc, fmt) + gap
              + _taskpile(doc, fmt))
    if not brief:
        for prof in doc.get("profiles", []):
            lines += _profile(prof, fmt)
    text = "\n".join(lines).strip("\n") + "\n"
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text.translate(_ASCII) if fmt == "text" else text
