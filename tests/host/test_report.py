"""Host tests for lab.report: one place computes what `lab show` and the dashboard print, and
the counters they lead with come from probes.toml."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from test_dashboard import study_run

from lab.dashboard import KEY_COUNTERS, render_dashboard
from lab.errors import UsageError
from lab.report import build_report, headline, jsonable
from lab.stats import per_unit, welch
from lab.tracers import load_probe_set


def test_headline_counters_are_marked_in_probes_toml() -> None:
    h = headline()
    assert h.order[:4] == ("__kmap_local_pfn_prot", "__kmap_local_page_prot", "__pte_alloc",
                           "___pte_free_tlb")
    assert len(h.order) == 10 and "switch_mm_irqs_off" in h.order
    assert KEY_COUNTERS == h.charted == ("__kmap_local_pfn_prot", "__kmap_local_page_prot",
                                         "__pte_alloc", "___pte_free_tlb",
                                         "flush_tlb_mm_range", "tlb_flush")
    assert set(h.charted) <= set(h.order)
    assert h.figures == {"highmem kmaps": "__kmap_local_pfn_prot"}
    assert sorted(["zzz", "tlb_flush", "__pte_alloc", "aaa"], key=h.rank) == [
        "__pte_alloc", "tlb_flush", "aaa", "zzz"]


def test_probe_marks_are_checked(tmp_path: Path) -> None:
    bad = tmp_path / "p.toml"
    bad.write_text('[[probe]]\nsymbol = "pgd_alloc"\nheadline = "first"\n')
    with pytest.raises(UsageError, match="headline must be a whole number"):
        load_probe_set(bad)
    bad.write_text('[[probe]]\nsymbol = "pgd_alloc"\nchart = 1\n')
    with pytest.raises(UsageError, match="chart true or false"):
        load_probe_set(bad)
    assert next(p for p in load_probe_set() if p.name == "tlb_flush").chart


def test_comparisons_are_welch_on_the_per_unit_values(tmp_path: Path) -> None:
    run = study_run(tmp_path / "results", workloads=("forkstorm",))
    records = run.records()
    rep = build_report(records, baseline="lowpte")
    rows = {r["config"]: r for r in rep["summary"]}
    assert {r["baseline"] for r in rows.values()} == {"lowpte"}
    base = per_unit([r for r in records if r["config"] == "lowpte"], "__pte_alloc")
    mine = per_unit([r for r in records if r["config"] == "ukva"], "__pte_alloc")
    rel, p = welch(base, mine)
    cell = rows["ukva"]["counters"]["__pte_alloc"]
    assert cell["delta_pct"] == pytest.approx(rel * 100) and cell["welch_p"] == pytest.approx(p)
    assert rows["lowpte"]["counters"]["__pte_alloc"]["delta_pct"] is None
    # lowpte has no highmem kmaps at all: an infinite change is left out of JSON, not faked
    inf = rows["highpte"]["counters"]["__kmap_local_pfn_prot"]["delta_pct"]
    assert inf == np.inf and jsonable({"x": inf}) == {"x": None}
    # the default baseline is the first configuration of each cell, as `lab show` reads it
    first = build_report(records)
    assert {r["baseline"] for r in first["summary"]} == {"highpte"}
    with pytest.raises(UsageError, match="not among the configurations"):
        build_report(records, baseline="nosuch")


def test_the_dashboard_prints_the_reports_comparisons(tmp_path: Path) -> None:
    run = study_run(tmp_path / "results", workloads=("forkstorm",))
    rep = build_report(run.records(), baseline="lowpte")
    page = render_dashboard([run], tmp_path / "d.html", baseline="lowpte").read_text()
    row = re.search(r"<tr><th>__pte_alloc</th>(.*?)</tr>", page).group(1)
    for r in rep["summary"]:
        c = r["counters"]["__pte_alloc"]
        if c["delta_pct"] is not None:
            assert f"{c['delta_pct']:+.0f}% vs baseline, p={c['welch_p']:.2g}" in row
