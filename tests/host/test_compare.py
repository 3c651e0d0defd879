"""Host tests for lab.compare: the share of a gap a configuration recovers, taskpile slopes,
and how `lab show` / study plans carry them."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lab.cli import app
from lab.compare import gap_recovered, gap_table, taskpile_slopes
from lab.errors import UsageError
from lab.results import RunDir, new_run
from lab.study import load_plan

PARAMS = {"procs": 4, "mib": 32}


def rec(config: str, rep: int, ns: float, kmaps: float, units: int = 1000,
        workload: str = "faultstorm") -> dict:
    return {"schema": 1, "run_id": "r", "config": config, "workload": workload,
            "params": PARAMS, "repeat": rep, "backend": "tracefs", "simulated": False,
            "timing": "icount", "unit": "fault", "units": units,
            "counts": {"__kmap_local_pfn_prot": int(kmaps * units)}, "absent": {},
            "guest_elapsed_ns": ns * units, "report": {}}


def test_gap_recovered_known_values() -> None:
    g = gap_recovered(np.array([10.0, 10.0]), np.array([6.0, 6.0]), np.array([7.0, 7.0]))
    assert g["mean"] == pytest.approx(0.75) and g["gap"] == pytest.approx(4.0)
    assert g["lo"] == pytest.approx(0.75) and g["hi"] == pytest.approx(0.75)


def test_gap_recovered_ci_brackets_mean_and_widens_with_noise() -> None:
    rng = np.random.default_rng(1)
    a, b, c = 10 + rng.normal(0, 0.1, 5), 6 + rng.normal(0, 0.1, 5), 7 + rng.normal(0, 0.1, 5)
    tight = gap_recovered(a, b, c)
    loose = gap_recovered(10 + rng.normal(0, 1, 5), 6 + rng.normal(0, 1, 5),
                          7 + rng.normal(0, 1, 5))
    assert tight["lo"] <= tight["mean"] <= tight["hi"]
    assert 0.6 < tight["mean"] < 0.9
    assert (loose["hi"] - loose["lo"]) > (tight["hi"] - tight["lo"])


def test_gap_recovered_beyond_floor_and_worse_than_baseline() -> None:
    assert gap_recovered([10.0], [6.0], [5.0])["mean"] == pytest.approx(1.25)
    assert gap_recovered([10.0], [6.0], [11.0])["mean"] == pytest.approx(-0.25)


def test_gap_ci_is_scipys_percentile_bootstrap() -> None:
    """The CI is scipy.stats.bootstrap's (one bootstrap in the lab, not a hand-rolled one);
    a configuration with one repeat is a fixed value, not resampled."""
    from scipy import stats as sps

    from lab.stats import RNG_KW

    rng = np.random.default_rng(7)
    a, b, c = 10 + rng.normal(0, 0.3, 4), 6 + rng.normal(0, 0.3, 4), 7 + rng.normal(0, 0.3, 4)
    g = gap_recovered(a, b, c, seed=3)
    res = sps.bootstrap((a, b, c), lambda x, y, z, axis: (x.mean(axis) - z.mean(axis))
                        / (x.mean(axis) - y.mean(axis)), vectorized=True, n_resamples=4000,
                        method="percentile", **{RNG_KW: np.random.default_rng(3)})
    assert g["lo"] == pytest.approx(res.confidence_interval.low)
    assert g["hi"] == pytest.approx(res.confidence_interval.high)
    one = gap_recovered(a, np.array([6.0]), c)
    assert one["lo"] < one["mean"] < one["hi"]
    assert gap_recovered([10.0], [6.0], [7.0]) == {"mean": 0.75, "lo": 0.75, "hi": 0.75,
                                                   "gap": 4.0}


def test_no_gap_is_nan_not_a_number_made_up() -> None:
    g = gap_recovered([5.0, 5.0], [5.0, 5.0], [4.0, 4.0])
    assert math.isnan(g["mean"]) and g["gap"] == 0


def test_gap_table_per_cell_and_figure() -> None:
    records = [rec("hi", r, 5.8 + r * 0.01, 3.0) for r in range(3)]
    records += [rec("lo", r, 5.4 + r * 0.01, 1.0) for r in range(3)]
    records += [rec("ukva", r, 5.5 + r * 0.01, 1.004) for r in range(3)]
    records += [rec("hi", 0, 340, 139, workload="forkstorm")]   # no floor: skipped
    rows = gap_table(records, "hi", "lo")
    assert [(r["workload"], r["config"]) for r in rows] == [("faultstorm", "ukva")]
    f = rows[0]["figures"]
    assert f["guest time"]["mean"] == pytest.approx(0.75, abs=1e-6)
    assert f["highmem kmaps"]["mean"] == pytest.approx(0.998, abs=1e-3)
    assert f["highmem kmaps"]["base"] == pytest.approx(3.0)


def pile(config: str, low_per_task_kb: float, pt_per_task_kb: float, rep: int = 0) -> dict:
    samples = [{"tasks": t, "LowFree_kB": int(600_000 - low_per_task_kb * t - 7 * rep),
                "LowPcp_kB": 1000 + (t % 3), "PageTables_kB": int(500 + pt_per_task_kb * t)}
               for t in range(0, 257, 32)]
    return {"config": config, "workload": "taskpile", "params": {"tasks": 256},
            "report": {"samples": samples}}


def test_taskpile_slopes_in_pages_per_task() -> None:
    recs = [pile("built-highpte", 40.0, 4096.0, r) for r in range(2)] + [pile("ukva", 52.0, 4108.0)]
    s = taskpile_slopes(recs)
    assert s["built-highpte"]["lowmem_pages_per_task"]["mean"] == pytest.approx(10.0, abs=0.01)
    assert s["ukva"]["lowmem_pages_per_task"]["mean"] == pytest.approx(13.0, abs=0.01)
    assert s["ukva"]["pagetables_pages_per_task"]["mean"] == pytest.approx(1027.0, abs=0.01)
    low = s["ukva"]["lowmem_pages_per_task"]
    assert low["lo"] <= low["mean"] <= low["hi"]
    assert s["built-highpte"]["samples"] == 18 and s["ukva"]["max_tasks"] == 256


def test_taskpile_slopes_need_three_task_counts() -> None:
    r = pile("x", 40.0, 4096.0)
    r["report"]["samples"] = r["report"]["samples"][:2]
    assert math.isnan(taskpile_slopes([r])["x"]["lowmem_pages_per_task"]["mean"])
    assert taskpile_slopes([rec("hi", 0, 1, 1)]) == {}


def test_plan_gap_must_name_two_of_its_configs(tmp_path: Path) -> None:
    plan = tmp_path / "p.toml"
    body = ('configs = ["highpte", "lowpte"]\n{gap}\n[[cell]]\nworkload = "faultstorm"\n')
    plan.write_text(body.format(gap='gap = ["highpte", "lowpte"]'))
    assert load_plan(plan).gap == ("highpte", "lowpte")
    for bad in ('gap = ["highpte", "ukva"]', 'gap = ["highpte"]', 'gap = ["lowpte", "lowpte"]'):
        plan.write_text(body.format(gap=bad))
        with pytest.raises(UsageError, match="gap must name"):
            load_plan(plan)


def test_shipped_ukva_plan_declares_its_gap() -> None:
    plan = load_plan(Path(__file__).parents[2] / "analysis" / "ukva" / "plan.toml")
    assert plan.gap == ("built-highpte", "built-lowpte")
    assert plan.matrix.boot.icount


def three_config_run(tmp_path: Path) -> RunDir:
    """A stored run: faultstorm on hi/lo/ukva (ukva recovers 75 % of the time gap) and a
    taskpile on hi and ukva (10 and 13 lowmem pages per task), with a plan-style gap."""
    names = ["hi", "lo", "ukva"]
    run = new_run("faultstorm", {"configs": names, "config_names": names, "backend": "ftrace",
                                 "timing": "icount", "gap": ["hi", "lo"]},
                  root=tmp_path / "results")
    for cfg, ns, k in (("hi", 5.8, 3.0), ("lo", 5.4, 1.0), ("ukva", 5.5, 1.004)):
        for r in range(3):
            run.append_record({**rec(cfg, r, ns + r * 0.01, k), "run_id": run.run_id})
    for p in (pile("hi", 40.0, 4096.0), pile("ukva", 52.0, 4108.0)):
        run.append_record({**rec(p["config"], 0, 1, 1, workload="taskpile"), **p,
                           "run_id": run.run_id, "unit": "task"})
    return run


def test_show_gap_option(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UKVA_LAB_RESULTS", str(tmp_path / "results"))
    run = three_config_run(tmp_path)
    runner = CliRunner()
    out = runner.invoke(app, ["show", run.run_id, "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    row = next(r for r in data["gap"]["rows"] if r["workload"] == "faultstorm")
    assert row["figures"]["guest time"]["mean"] == pytest.approx(0.75, abs=1e-6)
    low = data["taskpile_slopes"]["ukva"]["lowmem_pages_per_task"]
    assert low["mean"] == pytest.approx(13.0, abs=0.01)
    human = runner.invoke(app, ["show", run.run_id], env={"COLUMNS": "200"})
    assert human.exit_code == 0, human.output
    assert "gap recovered" in human.output and "75%" in human.output
    assert "taskpile" in human.output
    swapped = runner.invoke(app, ["show", run.run_id, "--gap", "lo,hi", "--json"])
    row = next(r for r in json.loads(swapped.output)["gap"]["rows"]
               if r["workload"] == "faultstorm")
    assert row["figures"]["guest time"]["mean"] == pytest.approx(0.25, abs=1e-6)
    bad = runner.invoke(app, ["show", run.run_id, "--gap", "hi,nope"])
    assert bad.exit_code == 2 and "configurations" in bad.output


def test_dashboard_shows_the_gap_and_the_slopes(tmp_path: Path) -> None:
    from lab.dashboard import render_dashboard

    run = three_config_run(tmp_path)
    page = render_dashboard([run], tmp_path / "d.html").read_text()
    assert 'id="gap"' in page and "hi → lo gap recovered" in page
    assert "<td>75% [" in page          # guest time 5.81 → 5.51 of 5.81 → 5.41
    assert "lowmem pages/task" in page and "<td>13.00 [" in page
    other = render_dashboard([run], tmp_path / "e.html", gap=("lo", "hi")).read_text()
    assert "lo → hi gap recovered" in other and "<td>25% [" in other


def test_a_study_folder_is_its_plan_and_names_it(tmp_path: Path) -> None:
    root = Path(__file__).parents[2] / "analysis"
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        plan = load_plan(folder)           # the folder stands for its plan.toml
        assert plan.path == folder / "plan.toml" and plan.name == folder.name
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "plan.toml").write_text(
        'configs = ["highpte", "lowpte"]\n[[cell]]\nworkload = "forkstorm"\n')
    assert load_plan(tmp_path / "mine").name == "mine"
    with pytest.raises(UsageError, match="without a plan.toml"):
        load_plan(tmp_path)
