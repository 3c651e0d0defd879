"""Host tests for lab.dashboard: one offline HTML file, honest labels, built from stored runs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from lab.dashboard import KEY_COUNTERS, render_dashboard
from lab.errors import UsageError
from lab.results import RunDir, new_run
from lab.tracers import load_probe_set
from lab.tracers.sim import SimSession

PARAMS = {"procs": 100, "touch": 4, "concurrency": 1}


def sim_run(root: Path, configs=("highpte", "lowpte", "ukva"), repeats: int = 3) -> RunDir:
    run = new_run("forkstorm", {"configs": list(configs), "backend": "sim", "simulated": True,
                                "kernel": "6.1 (modelled)", "cmdline": {"lowpte": "userpte=nohigh"},
                                "timing": "modelled"}, root=root)
    for config in configs:
        s = SimSession(config, seed=11)
        att = s.attach(load_probe_set())
        for rep in range(repeats):
            m = s.measure("forkstorm", PARAMS, ["forkstorm"])
            run.append_record(record(run, config, rep, m.counts, att.absent, backend="sim",
                                     simulated=True, timing="modelled", ns=m.guest_elapsed_ns,
                                     before=m.meminfo_before, after=m.meminfo_after))
    return run


def record(run: RunDir, config: str, rep: int, counts: dict[str, int], absent: dict[str, str],
           backend: str = "tracefs", simulated: bool = False, timing: str = "icount",
           ns: int = 300_000_000, before: dict[str, int] | None = None,
           after: dict[str, int] | None = None) -> dict:
    return {"schema": 1, "run_id": run.run_id, "config": config, "workload": "forkstorm",
            "params": PARAMS, "repeat": rep, "backend": backend, "simulated": simulated,
            "timing": timing, "unit": "fork", "units": PARAMS["procs"], "counts": counts,
            "absent": absent, "meminfo_before": before or {"PageTables": 200, "LowFree": 600000},
            "meminfo_after": after or {"PageTables": 200, "LowFree": 599900 - rep},
            "vmstat_delta": {}, "report": {}, "guest_elapsed_ns": ns + rep, "host": {},
            "recorded_at": ""}


def chart_titles(page: str) -> list[str]:
    """Figure titles and subplot titles from the embedded plotly JSON."""
    titles = re.findall(r'"title":\{"text":"([^"]*)"', page)
    titles += re.findall(r'"annotations":\[(.*?)\]', page)
    return titles


def test_simulated_dashboard_is_offline_and_labelled(tmp_path):
    run = sim_run(tmp_path / "results")
    out = render_dashboard([run], tmp_path / "d.html", baseline="highpte")
    page = out.read_text(encoding="utf-8")
    assert out == tmp_path / "d.html"
    # plotly.js is embedded, nothing is fetched: no external scripts, no CDN bundle
    assert "plotly.js v" in page and len(page) > 3_000_000
    assert not re.search(r"<script[^>]+src=", page)
    assert "cdn.plot.ly/plotly" not in page
    assert page.count("Plotly.newPlot") == 3
    for config in ("highpte", "lowpte", "ukva"):
        assert f"<th>{config}</th>" in page
    assert '<div class="banner">SIMULATED' in page
    titles = chart_titles(page)
    assert len(titles) >= 3
    figure_titles = re.findall(r'"title":\{"text":"([^"]*)"', page)
    assert figure_titles and all(t.endswith("\\u2014 SIMULATED") for t in figure_titles)
    subplot_titles = re.findall(r'"text":"([^"]*)","x"', page)
    assert len(subplot_titles) >= len(KEY_COUNTERS)
    assert all("SIMULATED" in t for t in subplot_titles)
    assert run.run_id in page and "userpte=nohigh" in page and "modelled" in page
    assert "vs baseline" in page


def test_real_dashboard_has_no_simulated_marker_and_shows_absent(tmp_path):
    run = new_run("forkstorm", {"config": "lowpte"}, root=tmp_path)   # sparse manifest
    for rep in range(3):
        run.append_record(record(run, "lowpte", rep,
                                 {"__kmap_local_page_prot": 11000 + rep, "__pte_alloc": 670},
                                 {"__kmap_local_pfn_prot": "symbol not in /proc/kallsyms"}))
    out = render_dashboard([run], tmp_path)
    page = out.read_text(encoding="utf-8")
    assert out.parent == tmp_path and out.name.endswith(".html")
    assert "SIMULATED" not in page
    row = re.search(r"<tr><th>__kmap_local_pfn_prot</th>(.*?)</tr>", page).group(1)
    assert ">absent<" in row and "0.00" not in row
    assert "symbol not in /proc/kallsyms" in row
    row = re.search(r"<tr><th>__pte_alloc</th>(.*?)</tr>", page).group(1)
    assert "6.70 ± 0.00" in row
    # the bar charts carry the absent marker too, not a zero bar with a number
    assert '"text":["absent"]' in page


def test_refuses_what_it_cannot_show_honestly(tmp_path):
    run = sim_run(tmp_path / "a", configs=("highpte",), repeats=2)
    with pytest.raises(UsageError, match="baseline"):
        render_dashboard([run], tmp_path / "x.html", baseline="nosuch")
    real = new_run("forkstorm", {"config": "lowpte", "backend": "tracefs"}, root=tmp_path / "b")
    real.append_record(record(real, "lowpte", 0, {"__pte_alloc": 670}, {}))
    with pytest.raises(UsageError, match="backend"):
        render_dashboard([run, real], tmp_path / "x.html")
    empty = new_run("forkstorm", {}, root=tmp_path / "c")
    with pytest.raises(UsageError, match="no records"):
        render_dashboard([empty], tmp_path / "x.html")


def test_many_long_configuration_names_are_wrapped_not_overlapping(tmp_path):
    names = ("highpte", "lowpte", "ukva", "highpte-norandmaps-icount", "lowpte-norandmaps-icount")
    run = new_run("forkstorm", {"configs": list(names)}, root=tmp_path)
    for i, name in enumerate(names):
        for rep in range(2):
            run.append_record(record(run, name, rep, {"__pte_alloc": 670 + i + rep}, {}))
    page = render_dashboard([run], tmp_path / "d.html").read_text(encoding="utf-8")
    fig = json.loads(re.search(r'Plotly\.newPlot\(\s*"[^"]+",\s*(\[.*?\]),\s*\{"template"',
                               page, re.S).group(1))
    ticks = {x for trace in fig for x in trace["x"]}
    assert "highpte-<br>norandmaps-<br>icount" in ticks
    assert all(len(line) <= 12 for t in ticks for line in t.split("<br>"))


def test_provenance_reads_per_configuration_manifest_entries(tmp_path):
    """lab.trace writes configs={name: {kernel, cmdline, timing, ...}}: one row per config."""
    run = new_run("forkstorm", {
        "backend": "ftrace", "simulated": False, "timing": "icount", "workload": "forkstorm",
        "configs": {
            "highpte": {"kernel_name": "debian-686-pae", "cmdline": "console=ttyS0 panic=-1",
                        "kernel": {"package": "linux-image-6.1.0-41-686-pae",
                                   "version": "6.1.176-1"}},
            "lowpte": {"kernel_name": "debian-686-pae",
                       "cmdline": "console=ttyS0 panic=-1 userpte=nohigh"},
        }}, root=tmp_path)
    for config in ("highpte", "lowpte"):
        for rep in range(2):
            run.append_record(record(run, config, rep, {"__pte_alloc": 670 + rep}, {}))
    page = render_dashboard([run], tmp_path / "d.html").read_text(encoding="utf-8")
    prov = page[page.index("<h2>Provenance</h2>"):page.index("<h2>Headline")]
    assert prov.count(f"<td>{run.run_id}</td>") == 2
    assert "userpte=nohigh" in prov and "6.1.176-1" in prov and "real guest" in prov
    assert "icount" in prov and "ftrace" in prov
