"""Host tests for the fitted sim model and the sim backend, on synthetic runs whose true lines
are known: the fit recovers them, the backend answers from them, labels what lies outside
them EXTRAPOLATED, piles taskpile to the lowmem floor, and bad input fails in one line.
(tests/host/test_sim_fitted.py does the same against the committed real bundles.)"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lab.cli import app
from lab.errors import UsageError
from lab.record import build_record
from lab.results import RunDir, list_runs, new_run
from lab.simmodel import load_model, model_cell, predict
from lab.simmodel.fit import fit_model
from lab.tomlfile import dump_toml
from lab.tracers import Measurement, ProbeSpec, load_probe_set
from lab.tracers.sim import SimSession

runner = CliRunner()
MEM = {"MemTotal": 8212908, "LowTotal": 725540, "HighTotal": 7487368, "LowFree": 700000,
       "HighFree": 7400000, "PageTables": 100}


def kmaps(procs: int, touch: int) -> float:
    """The synthetic truth: highmem kmaps per fork."""
    return 40.0 + 2.5 * touch + 3000.0 / procs


def synthetic_run(root: Path, *, simulated: bool = False, timing: str = "icount",
                  mem_mib: int = 8192, configs: tuple[str, ...] = ("highpte",)) -> RunDir:
    run = new_run("synthetic", {"simulated": simulated, "timing": timing, "configs": {
        c: {"mem_mib": mem_mib, "kernel_name": "k", "cmdline": "x"} for c in configs}}, root)
    for cfg in configs:
        for procs, touch in ((100, 0), (100, 16), (400, 16), (400, 64)):
            for rep in range(2):
                counts = {"__kmap_local_pfn_prot": round(procs * kmaps(procs, touch)) + rep,
                          "pgd_alloc": procs + 2}
                meas = Measurement(counts=counts, meminfo_before=MEM, meminfo_after=MEM,
                                   vmstat_delta={}, report={}, guest_elapsed_ns=procs * 300_000
                                   + 1_000_000, extra={})
                run.append_record(build_record(
                    run_id=run.run_id, config=cfg, workload="forkstorm",
                    params={"procs": procs, "touch": touch, "concurrency": 4}, repeat=rep,
                    backend="ftrace", simulated=simulated, timing=timing, unit="fork",
                    units=procs, absent={"pmd_alloc_ukva": "not in this kernel's kallsyms"},
                    meas=meas))
        pile = [{"tasks": t, "LowFree_kB": 600_000 - 8 * t, "LowPcp_kB": 0,
                 "HighFree_kB": 7_000_000 - 520 * t, "PageTables_kB": 100 + 512 * t}
                for t in range(0, 65, 8)]
        for tasks in (32, 64):
            meas = Measurement(counts={"__kmap_local_pfn_prot": 300 * tasks, "pgd_alloc": tasks},
                               meminfo_before=MEM, meminfo_after=MEM, vmstat_delta={},
                               report={"samples": [s for s in pile if s["tasks"] <= tasks]},
                               guest_elapsed_ns=tasks * 10_000_000, extra={})
            run.append_record(build_record(
                run_id=run.run_id, config=cfg, workload="taskpile",
                params={"tasks": tasks, "step": 8, "span_mib": 256, "min_lowfree_mib": 64},
                repeat=0, backend="ftrace", simulated=simulated, timing=timing, unit="task",
                units=tasks, absent={}, meas=meas))
    return run


def write_model(tmp_path: Path, **kw: object) -> Path:
    run = synthetic_run(tmp_path / "real", **kw)  # type: ignore[arg-type]
    path = tmp_path / "model.toml"
    path.write_text(dump_toml(fit_model({str(run.path): [run]})))
    return path


def test_fit_recovers_the_true_lines_and_states_its_error(tmp_path: Path) -> None:
    model = load_model(write_model(tmp_path))
    cell = model_cell(model, "highpte", "forkstorm")
    assert cell["terms"] == [["procs", "inv"], ["touch", "lin"]]   # concurrency never varied
    assert cell["range"] == {"concurrency": [4, 4], "procs": [100, 400], "touch": [0, 64]}
    a, inv, lin = cell["targets"]["__kmap_local_pfn_prot"]["coef"]
    assert (a, inv, lin) == pytest.approx((40.0, 3000.0, 2.5), rel=2e-3)
    assert cell["targets"]["__kmap_local_pfn_prot"]["fit_error"] < 0.005
    assert predict(cell, "guest_ns", {"procs": 200, "touch": 5}) == pytest.approx(305_000)
    tp = model_cell(model, "highpte", "taskpile")
    assert predict(tp, "lowmem_pages_per_task", {"tasks": 48}) == pytest.approx(2.0)
    assert predict(tp, "pagetables_pages_per_task", {"tasks": 48}) == pytest.approx(128.0)
    assert predict(tp, "highmem_pages_per_task", {"tasks": 48}) == pytest.approx(130.0)
    assert model["configs"]["highpte"]["absent"]["pmd_alloc_ukva"].startswith("not in")
    assert model["model"]["sources"][0]["runs"] and model["model"]["timing"] == "icount"


def test_the_model_file_is_toml_that_reads_back_equal(tmp_path: Path) -> None:
    run = synthetic_run(tmp_path / "real")
    model = fit_model({"x": [run]})
    text = dump_toml(model, header="a\nb")
    assert text.startswith("# a\n# b\n") and tomllib.loads(text) == model


@pytest.mark.parametrize("kw,why", [({"simulated": True}, "SIMULATED"),
                                    ({"timing": "modelled"}, None)])
def test_fit_refuses_simulated_runs_and_mixed_clocks(tmp_path: Path, kw: dict[str, object],
                                                     why: str | None) -> None:
    bad = synthetic_run(tmp_path / "bad", **kw)  # type: ignore[arg-type]
    good = synthetic_run(tmp_path / "good")
    with pytest.raises(UsageError, match=why or "mix clocks"):
        fit_model({"good": [good], "bad": [bad]})


def measure(model: Path, config: str = "highpte", workload: str = "forkstorm",
            params: dict[str, int] | None = None, seed: int = 1, mem_mib: int | None = None,
            probes: list[ProbeSpec] | None = None) -> Measurement:
    s = SimSession(config, model_path=model, seed=seed, mem_mib=mem_mib)
    s.attach(load_probe_set() if probes is None else probes)
    return s.measure(workload, params or {"procs": 200, "touch": 32, "concurrency": 4}, [])


def test_sim_answers_from_the_fitted_lines_deterministically(tmp_path: Path) -> None:
    path = write_model(tmp_path)
    a, b, c = measure(path), measure(path), measure(path, seed=2)
    assert a.counts == b.counts and a.guest_elapsed_ns == b.guest_elapsed_ns
    assert a.counts["__kmap_local_pfn_prot"] / 200 == pytest.approx(kmaps(200, 32), rel=0.01)
    assert a.guest_elapsed_ns == pytest.approx(200 * 305_000, rel=0.01)
    assert abs(a.counts["__kmap_local_pfn_prot"] - c.counts["__kmap_local_pfn_prot"]) < 0.01 * \
        a.counts["__kmap_local_pfn_prot"]
    assert a.report["simulated"] and a.extra["simulated"] and "extrapolated" not in a.report
    assert a.report["ops"] == 200 and a.report["unit"] == "fork"
    assert set(a.counts) == {"__kmap_local_pfn_prot", "pgd_alloc"}


def test_counters_the_runs_lacked_are_absent_with_the_guests_reason(tmp_path: Path) -> None:
    s = SimSession("highpte", model_path=write_model(tmp_path))
    att = s.attach(load_probe_set())
    assert "pmd_alloc_ukva" in att.absent and "kallsyms" in att.absent["pmd_alloc_ukva"]
    assert att.absent["tlb_flush"].startswith("not in the sim model")
    assert "__kmap_local_pfn_prot" in att.attached


def test_outside_the_fitted_range_every_output_says_extrapolated(tmp_path: Path) -> None:
    path = write_model(tmp_path)
    m = measure(path, params={"procs": 10000, "touch": 32, "concurrency": 1})
    assert m.report["extrapolated"] == m.extra["extrapolated"] == [
        "concurrency=1 outside the fitted 4", "procs=10000 outside the fitted 100..400"]
    assert measure(path, mem_mib=4096).extra["extrapolated"] == [
        "mem=4096M outside the fitted 8192M"]


def test_trace_show_and_json_say_extrapolated(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("lab.simmodel.default_model_path", lambda: write_model(tmp_path))
    res = runner.invoke(app, ["trace", "--backend", "sim", "--config", "highpte", "--repeat",
                              "2", "--param", "procs=10000", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    (row,) = doc["summary"]
    assert row["simulated"] and row["extrapolated"] == ["procs=10000 outside the fitted 100..400"]
    assert doc["manifest"]["configs"]["highpte"]["extrapolated"] == row["extrapolated"]
    assert "fitted" in doc["manifest"]["configs"]["highpte"]["sim_model"]
    human = runner.invoke(app, ["show", doc["run_id"]])
    assert "SIMULATED" in human.output and "EXTRAPOLATED" in human.output
    page = tmp_path / "d.html"
    assert runner.invoke(app, ["dashboard", doc["run_id"], "-o", str(page)]).exit_code == 0
    assert "EXTRAPOLATED: outside what the sim model was fitted on" in page.read_text()
    text = runner.invoke(app, ["report", doc["run_id"], "--format", "text"])
    assert text.exit_code == 0 and "EXTRAPOLATED (procs=10000" in text.output
    inside = runner.invoke(app, ["trace", "--backend", "sim", "--config", "highpte",
                                 "--repeat", "1", "--param", "procs=300"])
    assert inside.exit_code == 0 and "SIMULATED" in inside.output
    assert "EXTRAPOLATED" not in inside.output


def test_a_configuration_the_model_lacks_is_one_clear_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("lab.simmodel.default_model_path", lambda: write_model(tmp_path))
    res = runner.invoke(app, ["trace", "--backend", "sim", "--config", "highpte,lowpte"])
    assert res.exit_code == 2
    assert "has no configuration 'lowpte': it was fitted for highpte" in res.output
    assert not list(list_runs()), "refused before anything ran"
    res = runner.invoke(app, ["trace", "--backend", "sim", "--config", "highpte",
                              "--workload", "execstorm"])
    assert res.exit_code == 2 and "no execstorm on highpte" in res.output


def test_taskpile_piles_to_the_lowmem_floor_and_mem_moves_it(tmp_path: Path) -> None:
    low = synthetic_run(tmp_path / "a", mem_mib=8192)
    small = synthetic_run(tmp_path / "b", mem_mib=2048)
    for rec_path in (small.records_path,):   # the smaller guest starts with more lowmem free
        lines = [json.loads(x) for x in rec_path.read_text().splitlines()]
        for r in lines:
            for s in r["report"].get("samples") or []:
                s["LowFree_kB"] += 48_000
        rec_path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    path = tmp_path / "m.toml"
    path.write_text(dump_toml(fit_model({"a": [low], "b": [small]})))
    model = load_model(path)
    assert model["mem"]["slope"]["taskpile.LowFree_kB"] == pytest.approx(-48_000 / 6144)
    params = {"tasks": 4000, "step": 8, "span_mib": 256, "min_lowfree_mib": 64}
    m = measure(path, workload="taskpile", params=params)
    rep = m.report
    # 600,000 kB free, 8 kB per task, floor 65,536 kB: 66,808 tasks would fit, so max_tasks
    assert rep["stopped_because"] == "max_tasks" and rep["ops"] == 4000
    params["min_lowfree_mib"] = 585
    rep = measure(path, workload="taskpile", params=params).report
    # (600,000 - 599,040) / 8 = 120 tasks: the last whole step that stays above the floor
    assert rep["stopped_because"] == "lowmem_floor" and rep["ops"] == 120
    assert rep["samples"][-1]["LowFree_kB"] >= 585 * 1024
    params["tasks"] = 10_000
    rep = measure(path, workload="taskpile", params=params, mem_mib=2048).report
    assert rep["ops"] == 120 + 48_000 // 8 and rep["stopped_because"] == "lowmem_floor"
    assert m.counts["__kmap_local_pfn_prot"] == pytest.approx(300 * 4000, rel=0.01)


def test_auto_falls_back_to_sim_naming_the_models_provenance(
        capsys: pytest.CaptureFixture[str]) -> None:
    from lab.trace import choose_backend

    assert choose_backend("auto", lambda: "no qemu-system-x86") == "sim"
    err = " ".join(capsys.readouterr().err.split())   # rich wraps at 80 columns
    assert "using the SIMULATED sim backend (sim model" in err
    assert "vm/sim/stock-6.1.toml, fitted" in err and "from analysis/sim-fit/" in err


@pytest.mark.parametrize("argv,msg", [
    (["sim", "check", "/nonexistent/run"], "no run"),
    (["sim", "check", "RUN", "--model", "/nonexistent.toml"], "cannot read sim model"),
    (["sim", "fit", "/nonexistent/run", "-o", "/tmp/x.toml"], "no run"),
    (["sim", "fit", "nosuchid", "-o", "/tmp/x.toml"], "no run"),
])
def test_sim_commands_refuse_bad_input_in_one_line(tmp_path: Path, argv: list[str],
                                                   msg: str) -> None:
    run = synthetic_run(tmp_path / "real")
    res = runner.invoke(app, [str(run.path) if a == "RUN" else a for a in argv])
    assert res.exit_code == 2, res.output
    assert msg in res.output.lower() and len(res.output.strip().splitlines()) == 1


def test_a_file_that_is_not_a_fitted_model_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "old.toml"
    bad.write_text("[model]\nversion = 1\n")
    run = synthetic_run(tmp_path / "real")
    res = runner.invoke(app, ["sim", "check", str(run.path), "--model", str(bad)])
    assert res.exit_code == 2 and "not a fitted sim model" in res.output


def test_check_reports_the_error_per_counter(tmp_path: Path) -> None:
    path = write_model(tmp_path)
    other = synthetic_run(tmp_path / "held")
    res = runner.invoke(app, ["sim", "check", str(other.path), "--model", str(path), "--json",
                              "--all"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)["rows"]
    got = {(r["workload"], r["target"], json.dumps(r["params"], sort_keys=True)): r
           for r in rows}
    row = got[("forkstorm", "__kmap_local_pfn_prot",
               json.dumps({"concurrency": 4, "procs": 100, "touch": 16}, sort_keys=True))]
    assert abs(row["error"]) < 0.005 and row["extrapolated"] == []
    text = runner.invoke(app, ["sim", "check", str(other.path), "--model", str(path)])
    assert text.exit_code == 0 and "guest time per unit" in text.output


def test_params_take_the_workloads_defaults_and_bounds(tmp_path: Path) -> None:
    path = write_model(tmp_path)
    m = measure(path, params={"procs": 200})   # touch 16 and concurrency 4 by default
    assert m.report["params"] == {"procs": 200, "touch": 16, "concurrency": 4}
    with pytest.raises(UsageError, match="procs=0 is below its minimum 1"):
        measure(path, params={"procs": 0})
    with pytest.raises(UsageError, match="unknown parameter 'bogus'"):
        measure(path, params={"procs": 10, "bogus": 1})
