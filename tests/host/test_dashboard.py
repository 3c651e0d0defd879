"""Host tests for lab.dashboard: one offline HTML file, honest labels, built from stored runs."""

from __future__ import annotations

import hashlib
import json
import random
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lab.cli import app
from lab.dashboard import KEY_COUNTERS, PROFILE_ROWS, render_dashboard
from lab.errors import LabError, UsageError
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
    assert page.count("Plotly.newPlot") == 1   # one grid of charts per workload
    for config in ("highpte", "lowpte", "ukva"):
        assert f"<th>{config}</th>" in page
    assert '<div class="banner">SIMULATED' in page
    titles = chart_titles(page)
    assert len(titles) >= 2   # the figure's title and its subplot titles
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


# ---------------------------------------------------------------------------------------------
# several workloads, several machines: what bundles bring together

#: workload -> unit, as the guest workloads report them
WORKLOADS = {"forkstorm": "fork", "execstorm": "exec", "faultstorm": "fault",
             "mmapchurn": "mmap", "shellmix": "command", "taskpile": "task"}
CONFIGS = ("highpte", "lowpte", "ukva")


def taskpile_samples(config: str, tasks: int = 64, step: int = 8) -> list[dict[str, int]]:
    """PageTables grows with the tasks everywhere; LowFree falls with it only for lowmem PTEs."""
    per_task_pt = 512  # kB: 128 PTE pages of 4 kB
    low_cost = per_task_pt + 64 if config == "lowpte" else 64
    return [{"tasks": n, "PageTables_kB": 512 + n * per_task_pt, "LowFree_kB": 650_000 - n *
             low_cost, "HighFree_kB": 7_400_000 - n * (1024 + (0 if config == "lowpte" else 512))}
            for n in range(0, tasks + 1, step)]


def study_run(root: Path, configs: tuple[str, ...] = CONFIGS,
              workloads: tuple[str, ...] = tuple(WORKLOADS), repeats: int = 3,
              host: str = "lab-a", release: str = "6.1.0-50-686-pae", backend: str = "ftrace",
              timing: str = "icount", seed: int = 1) -> RunDir:
    """A realistic (made-up) multi-workload run of a real-guest kind, full manifest included."""
    kernel = {"package": f"linux-image-{release}", "package_version": "6.1.176-1",
              "release": release, "source": "debian-package",
              "config_sha256": hashlib.sha256(f"config {release}".encode()).hexdigest(),
              "bzimage_sha256": hashlib.sha256(release.encode()).hexdigest()}
    manifest = {
        "kind": "study", "backend": backend, "simulated": False, "timing": timing,
        "workload": "study", "workloads": sorted(workloads), "lab_version": "0.1.0",
        "git_commit": "3361f6cbae33eb08cb071b8650db64bad954ac93", "status": "complete",
        "started_at": "2026-11-25T22:58:29+0000",
        "host": {"hostname": host, "platform": "Linux-6.1.0-x86_64-with-glibc2.36",
                 "cpus": 8, "mem_bytes": 32 * 2**30, "python": "3.11.2"},
        "configs": {c: {"config": c, "kernel_name": "debian-686-pae", "kernel": kernel,
                        "cmdline": "console=ttyS0,115200 panic=-1" + (
                            " userpte=nohigh" if c == "lowpte" else ""),
                        "qemu_version": "7.2.22", "accel": "tcg", "timing": timing,
                        "qemu_argv": ["qemu-system-x86_64", "-accel", "tcg", "-m", "8192M",
                                      "-icount", "shift=0,sleep=off"]} for c in configs}}
    run = new_run("study", manifest, root=root)
    rng = random.Random(seed)
    for i, config in enumerate(configs):
        for w in workloads:
            units = 64 if w == "taskpile" else 200
            for rep in range(repeats):
                def n(per_unit: float, units: int = units) -> int:
                    return int(units * per_unit * rng.uniform(0.97, 1.03))
                kmap = 0 if config == "lowpte" else 55.0
                counts = {"__kmap_local_pfn_prot": n(kmap * (0.2 if config == "ukva" else 1)),
                          "__kmap_local_page_prot": n(64), "__pte_alloc": n(4 + i * 0.1),
                          "___pte_free_tlb": n(4), "flush_tlb_mm_range": n(11),
                          "tlb_flush": n(7.5 - i), "sched_switch": n(2.6)}
                absent = {} if config == "ukva" else {
                    "pmd_alloc_ukva": "not in this kernel's kallsyms"}
                if config == "ukva":
                    counts["pmd_alloc_ukva"] = n(1)
                report: dict = {"ops": units}
                if w == "taskpile":
                    report.update(samples=taskpile_samples(config), stopped_because="max_tasks",
                                  low_source="LowFree")
                run.append_record({
                    "schema": 1, "run_id": run.run_id, "config": config, "workload": w,
                    "params": {"procs": units}, "repeat": rep, "backend": backend,
                    "simulated": False, "timing": timing, "unit": WORKLOADS[w], "units": units,
                    "counts": counts, "absent": absent,
                    "meminfo_before": {"PageTables": 80, "LowFree": 700_000},
                    "meminfo_after": {"PageTables": 80 + rep, "LowFree": 699_000 - 10 * i},
                    "vmstat_delta": {}, "report": report,
                    "guest_elapsed_ns": n(1_000_000 * (1.2 if config == "highpte" else 1)),
                    "host": {}, "recorded_at": "2026-11-25T23:00:00+0000"})
    return run


def write_profile(run: RunDir, n: int = 50) -> None:
    rows = [{"symbol": f"sym_{k:02d}", "a_ticks": 100, "b_ticks": 100 + (n // 2 - k) * 3,
             "delta": (n // 2 - k) * 3} for k in range(n)]
    (run.path / "profile.json").write_text(json.dumps({
        "configs": ["highpte", "lowpte"], "rows": rows, "workload": "forkstorm",
        "sampler": "readprofile (profile=2)",
        "totals": {"highpte": {"ops": 600, "ticks": 728}, "lowpte": {"ops": 600, "ticks": 663}}}))


def test_several_workloads_and_three_configs_in_one_dashboard(tmp_path):
    run = study_run(tmp_path / "results")
    page = render_dashboard([run], tmp_path / "d.html", baseline="lowpte").read_text()
    assert "SIMULATED" not in page
    assert page.count("Plotly.newPlot") == len(WORKLOADS) + 1   # + the taskpile curve
    for w, unit in WORKLOADS.items():
        assert f'<h3 id="w-{w}">{w} — per {unit}</h3>' in page
    # one headline table per workload, the baseline marked, the others compared with it
    # (twice: the key counters and the "more counters" table)
    assert page.count("<th>per unit (baseline: lowpte)</th>") == 2 * len(WORKLOADS)
    assert page.count("vs baseline") >= len(WORKLOADS) * 2
    # the more-counters table lists what is not a key counter
    assert "sched_switch" in page and "pmd_alloc_ukva" in page
    # guest time per unit and its timing mode are in every grid
    assert "guest \\u00b5s per fork (icount)" in page   # as escaped in plotly's JSON


def test_taskpile_lowmem_curve_per_configuration(tmp_path):
    run = study_run(tmp_path / "results", workloads=("forkstorm", "taskpile"))
    page = render_dashboard([run], tmp_path / "d.html").read_text()
    assert '<h2 id="taskpile">taskpile: lowmem curve</h2>' in page
    figs = [json.loads(m) for m in re.findall(
        r'Plotly\.newPlot\(\s*"[^"]+",\s*(\[.*?\]),\s*\{"template"', page, re.S)]
    curve = next(f for f in figs if f and f[0].get("type") == "scatter")
    lines = {(t["name"], t["yaxis"]): t for t in curve}
    assert {name for name, _ in lines} == set(CONFIGS)
    low = lines[("lowpte", "y")]
    assert low["x"] == list(range(0, 65, 8))
    assert low["y"][-1] < lines[("highpte", "y")]["y"][-1]   # LowFree falls only for lowmem PTEs
    assert lines[("lowpte", "y2")]["y"] == lines[("highpte", "y2")]["y"]   # PageTables: same
    assert "stopped: max_tasks" in page


def test_differential_profile_top_and_bottom(tmp_path):
    run = study_run(tmp_path / "results", workloads=("forkstorm",))
    write_profile(run, n=50)
    page = render_dashboard([run], tmp_path / "d.html").read_text()
    sec = page[page.index('<h2 id="profile">'):]
    assert "lowpte vs highpte" in sec and "Δ (lowpte − highpte)" in sec
    rises, falls = sec.split("Largest falls")
    assert rises.count("<code>sym_") == PROFILE_ROWS == falls.count("<code>sym_")
    assert "sym_00" in rises and "sym_49" in falls and "sym_25" not in page  # delta 0: middle
    assert rises.index("sym_00") < rises.index("sym_01")
    assert "1.21 per op" in sec   # 728 ticks / 600 ops


def test_profile_only_run_renders_and_bad_profile_is_an_error(tmp_path):
    run = new_run("profile-forkstorm", {"kind": "profile", "backend": "profile",
                                        "workload": "forkstorm"}, root=tmp_path)
    write_profile(run, n=10)
    page = render_dashboard([run], tmp_path / "d.html").read_text()
    assert page.count("<code>sym_") == 10 and "Plotly.newPlot" not in page
    (run.path / "profile.json").write_text('{"configs": ["a"], "rows": []}')
    with pytest.raises(LabError, match="profile.json is malformed"):
        render_dashboard([run], tmp_path / "d.html")


def test_same_configuration_from_two_machines_is_shown_apart(tmp_path):
    a = study_run(tmp_path / "r", configs=("highpte", "lowpte"), workloads=("forkstorm",),
                  host="lab-a", release="6.1.0-50-686-pae")
    b = study_run(tmp_path / "r", configs=("highpte", "lowpte"), workloads=("forkstorm",),
                  host="lab-b", release="6.1.0-41-686-pae", seed=2)
    page = render_dashboard([a, b], tmp_path / "d.html", baseline="lowpte").read_text()
    for label in ("highpte @ lab-a", "highpte @ lab-b", "lowpte @ lab-a", "lowpte @ lab-b"):
        assert f"<th>{label}" in page
    assert "measured on 2 different machines or kernels" in page
    assert "6.1.0-50-686-pae" in page and "6.1.0-41-686-pae" in page
    assert "2 runs from 2 machines: lab-a, lab-b" in page


def test_mixed_timing_is_refused_with_the_flag_named_and_marked_when_allowed(tmp_path):
    a = study_run(tmp_path / "r", workloads=("forkstorm",), timing="icount")
    b = study_run(tmp_path / "r", workloads=("forkstorm",), timing="realtime", host="lab-b")
    runner = CliRunner()
    res = runner.invoke(app, ["dashboard", str(a.path), str(b.path),
                              "-o", str(tmp_path / "x.html")])
    assert res.exit_code == 2
    assert "records mix timing icount, realtime" in res.output and "--allow-mixed" in res.output
    assert not (tmp_path / "x.html").exists()
    res = runner.invoke(app, ["dashboard", str(a.path), str(b.path), "--allow-mixed",
                              "-o", str(tmp_path / "x.html")])
    assert res.exit_code == 0, res.output
    assert '<div class="banner mixed">MIXED (timing icount, realtime)' in (
        tmp_path / "x.html").read_text()


def test_open_uses_the_webbrowser_module(tmp_path, monkeypatch):
    opened = []
    monkeypatch.setattr("webbrowser.open", lambda url: opened.append(url) or True)
    run = study_run(tmp_path / "r", workloads=("forkstorm",))
    out = tmp_path / "d.html"
    res = CliRunner().invoke(app, ["dashboard", str(run.path), "-o", str(out), "--open"])
    assert res.exit_code == 0, res.output
    assert opened == [out.resolve().as_uri()]


def test_parameter_sets_get_their_own_sections_and_baselines(tmp_path):
    """touch=0 and touch=16 forkstorms are different experiments: never one table, and each
    configuration is compared with the baseline run with the same parameters."""
    run = new_run("forkstorm", {"configs": ["highpte", "lowpte"]}, root=tmp_path)
    for touch, pte in ((0, 670), (16, 1670)):
        for config in ("highpte", "lowpte"):
            for rep in range(2):
                r = record(run, config, rep, {"__pte_alloc": pte + rep}, {})
                run.append_record({**r, "params": {**PARAMS, "touch": touch}})
    page = render_dashboard([run], tmp_path / "d.html", baseline="highpte").read_text()
    assert '<h3 id="w-forkstorm-touch-0">forkstorm (touch=0) — per fork</h3>' in page
    assert '<h3 id="w-forkstorm-touch-16">forkstorm (touch=16) — per fork</h3>' in page
    assert page.count("<th>per unit (baseline: highpte)</th>") == 2
    # same parameters, same counts: +0% in both sections (not +149% across them)
    assert page.count("+0% vs baseline") >= 2 and "+149%" not in page
    ticks = set(re.findall(r'"x":\["([^"]*)"\]', page))
    assert ticks == {"highpte", "lowpte"}   # no parameters (or escaped JSON) in the labels
