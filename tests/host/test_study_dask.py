"""`lab study --workers/--scheduler` without a guest: the unit cut, dedupe, the host-side
merge, the CLI's usage errors, and one sim-backend study on a real 2-worker LocalCluster."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lab import cluster
from lab.cli import app
from lab.results import list_runs, new_run
from lab.study import load_plan
from lab.trace import record_key
from lab.units import CollectSink, Unit, UnitResult, fresh_records, plan_units

runner = CliRunner()
PLAN = Path(__file__).parents[1] / "data" / "study-ci.toml"


def _rec(config: str, workload: str, repeat: int, **extra: object) -> dict[str, object]:
    return {"config": config, "workload": workload, "params": {"procs": 1}, "repeat": repeat,
            **extra}


def test_units_are_one_boot_per_config_and_cell_in_plan_order() -> None:
    m = load_plan(PLAN, "sim").matrix
    units = plan_units(m, set(), "run-x", "abc")
    assert [(u.config, u.workload, u.repeats) for u in units] == [
        ("highpte", "forkstorm", (0, 1)), ("highpte", "faultstorm", (0, 1)),
        ("lowpte", "forkstorm", (0, 1)), ("lowpte", "faultstorm", (0, 1))]
    assert [u.index for u in units] == [1, 2, 3, 4]
    assert {u.run_id for u in units} == {"run-x"} and {u.lab_commit for u in units} == {"abc"}


def test_units_leave_out_what_is_recorded() -> None:
    m = load_plan(PLAN, "sim").matrix
    fork = m.cells[0]
    done = {record_key("highpte", "forkstorm", fork.params, 0),
            record_key("lowpte", "forkstorm", fork.params, 0),
            record_key("lowpte", "forkstorm", fork.params, 1)}
    units = plan_units(m, done, "r", None)
    assert [(u.config, u.workload, u.repeats, u.index) for u in units] == [
        ("highpte", "forkstorm", (1,), 1), ("highpte", "faultstorm", (0, 1), 2),
        ("lowpte", "faultstorm", (0, 1), 4)]
    assert units[0].cell_repeat == 2, "labels still say repeat 2/2"


def test_fresh_records_drop_duplicates_and_keep_order() -> None:
    done = {record_key("a", "w", {"procs": 1}, 0)}
    first = [_rec("a", "w", 0, n=1), _rec("a", "w", 1, n=2), _rec("b", "w", 0, n=3)]
    assert [r["n"] for r in fresh_records(first, done)] == [2, 3]
    again = [_rec("b", "w", 0, n=4), _rec("a", "w", 2, n=5)]  # the same unit, run twice
    assert [r["n"] for r in fresh_records(again, done)] == [5]
    assert len(done) == 4


def _unit(**kw: object) -> Unit:
    from lab.guest.boot import BootOptions

    base = dict(index=1, run_id="r", config="highpte", workload="forkstorm",
                params={"procs": 1}, cell_repeat=2, repeats=(0, 1), backend="ftrace",
                probes=(), boot=BootOptions(), lab_commit=None)
    return Unit(**{**base, **kw})  # type: ignore[arg-type]


def test_merge_writes_once_and_appends_consoles(tmp_path: Path) -> None:
    run = new_run("t", {"configs": {}}, tmp_path)
    res = UnitResult(_unit(), worker={"hostname": "w1", "address": "tcp://127.0.0.1:1"})
    sink = CollectSink(res)
    sink.set_config_meta("highpte", {"cpus": 1})
    sink.set_config_meta("highpte", {"attached": ["x"]})
    sink.append_file("console-highpte.log", b"boot 1\n")
    sink.write_file("kernel-highpte.config", b"CONFIG_X=y\n")
    sink.append_record(_rec("highpte", "forkstorm", 0))
    sink.append_record(_rec("highpte", "forkstorm", 1))
    done: set[tuple] = set()
    assert len(cluster.merge_result(run, res, done)) == 2
    assert cluster.merge_result(run, res, done) == [], "a second arrival records nothing"
    assert len(run.records()) == 2
    m = run.manifest()
    assert m["configs"]["highpte"] == {"cpus": 1, "attached": ["x"]}
    assert m["workers"] == {"tcp://127.0.0.1:1": {"hostname": "w1", "platform": None,
                                                 "cpus": None}}
    assert (run.path / "console-highpte.log").read_bytes() == b"boot 1\nboot 1\n"
    assert (run.path / "kernel-highpte.config").read_text() == "CONFIG_X=y\n"


@pytest.mark.parametrize("args,message", [
    (["--workers", "0"], "--workers 0 out of range"),
    (["--workers", "2", "--scheduler", "tcp://127.0.0.1:8786"], "give one of them"),
    (["--scheduler", "127.0.0.1:8786"], "tcp://HOST:8786"),
])
def test_cluster_options_usage_errors(args: list[str], message: str) -> None:
    res = runner.invoke(app, ["study", str(PLAN), "--backend", "sim", *args])
    assert res.exit_code == 2, res.output
    assert message in res.output and res.output.count("error:") == 1
    assert list(list_runs()) == [], "no run directory for a usage error"


def test_unreachable_scheduler_is_one_line_and_exit_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT", 2)
    res = runner.invoke(app, ["study", str(PLAN), "--backend", "sim",
                              "--scheduler", "tcp://127.0.0.1:9"])
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: cannot reach the Dask scheduler at "
                                                   "tcp://127.0.0.1:9"), res.output
    assert list(list_runs()) == []


def test_sim_study_on_two_local_workers_matches_one_worker() -> None:
    # A real LocalCluster (2 processes); the sim backend keeps it guest-free and deterministic.
    # Not compared with the serial driver: its boots hold every cell, and what a cell measures
    # depends on what ran before it in the boot (the sim model's noise does too).
    res = runner.invoke(app, ["study", str(PLAN), "--backend", "sim", "--workers", "2",
                              "--json"])
    assert res.exit_code == 0, res.output
    (run,) = list(list_runs())
    recs = run.records()
    keys = [record_key(r["config"], r["workload"], r["params"], r["repeat"]) for r in recs]
    assert len(keys) == 8 and len(set(keys)) == 8
    m = run.manifest()
    assert m["status"] == "complete" and m["cluster"] == {"workers": 2}
    assert 1 <= len(m["workers"]) <= 2
    serial = runner.invoke(app, ["study", str(PLAN), "--backend", "sim", "--new", "--workers",
                                 "1", "--json"])
    assert serial.exit_code == 0, serial.output
    again = next(r for r in list_runs() if r.run_id != run.run_id)

    def counts(rs: list[dict]) -> dict:
        return {(r["config"], r["workload"], r["repeat"]): json.dumps(r["counts"], sort_keys=True)
                for r in rs}

    assert counts(again.records()) == counts(recs)


def _fake_guest(lockups: int):  # type: ignore[no-untyped-def]
    """A measure_unit whose forkstorm guest has a soft lockup after its first repeat, in its
    first ``lockups`` boots: the host's safety net is the subject, not the guest."""

    def measure(unit: Unit) -> UnitResult:
        res = UnitResult(unit, worker={"hostname": "fake"})
        for i in unit.repeats:
            res.records.append({"config": unit.config, "workload": unit.workload,
                                "params": unit.params, "repeat": i, "attempt": unit.attempt})
            if unit.workload == "forkstorm" and unit.attempt <= lockups:
                res.error = ("GuestLostError", "soft-lockup: CPU#0 stuck for 22s!")
                break
        return res

    return measure


@pytest.fixture
def thread_client():  # type: ignore[no-untyped-def]
    """A real in-process LocalCluster (threads): a monkeypatched measure_unit reaches it."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      resources={"guest": 1}, dashboard_address=":0") as c, Client(c) as client:
        yield client


def test_a_soft_lockup_boots_the_unit_again_once(tmp_path: Path, thread_client,  # type: ignore[no-untyped-def]
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from lab.trace import start_run

    monkeypatch.setattr(cluster, "measure_unit", _fake_guest(lockups=1))
    m = load_plan(PLAN, "sim").matrix
    run = start_run(m, "t", results_root=tmp_path)
    cluster.run_matrix_dask(m, run, thread_client, check_commit=False)
    recs = run.records()
    keys = [(r["config"], r["workload"], r["repeat"]) for r in recs]
    assert len(keys) == 8 and len(set(keys)) == 8
    assert {(r["config"], r["repeat"], r["attempt"]) for r in recs
            if r["workload"] == "forkstorm"} == {(c, i, i + 1) for c in ("highpte", "lowpte")
                                                 for i in (0, 1)}
    man = run.manifest()
    assert man["status"] == "complete"
    assert man["configs"]["highpte"]["reboots"] == ["soft-lockup: CPU#0 stuck for 22s!"]


def test_a_second_soft_lockup_ends_the_run_keeping_its_records(
        tmp_path: Path, thread_client, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    from lab.errors import GuestLostError
    from lab.trace import start_run

    monkeypatch.setattr(cluster, "measure_unit", _fake_guest(lockups=2))
    m = load_plan(PLAN, "sim").matrix
    run = start_run(m, "t", results_root=tmp_path)
    with pytest.raises(GuestLostError, match="soft-lockup"):
        cluster.run_matrix_dask(m, run, thread_client, check_commit=False)
    assert run.manifest()["status"].startswith("guest lost: soft-lockup")
    kept = [(r["config"], r["workload"], r["repeat"]) for r in run.records()]
    assert len(kept) == len(set(kept)) and any(w == "forkstorm" for _, w, _ in kept)


def test_a_run_keeps_its_cut_when_resumed() -> None:
    from lab.trace import start_run

    plan = load_plan(PLAN, "sim")
    run = start_run(plan.matrix, plan.name, {"kind": "study", "plan_digest": plan.digest})
    res = runner.invoke(app, ["study", str(PLAN), "--backend", "sim", "--workers", "1"])
    assert res.exit_code == 2, res.output
    assert f"unfinished run {run.run_id}" in res.output and "--new" in res.output
    assert res.output.count("error:") == 1


def test_an_interrupted_dask_run_resumes_on_more_workers() -> None:
    first = runner.invoke(app, ["study", str(PLAN), "--backend", "sim", "--workers", "1"])
    assert first.exit_code == 0, first.output
    (run,) = list(list_runs())
    lines = run.records_path.read_text().splitlines()
    run.records_path.write_text("\n".join(lines[:3]) + "\n")  # as if stopped after 3
    run.update_manifest(status="interrupted")
    res = runner.invoke(app, ["study", str(PLAN), "--backend", "sim", "--workers", "2"])
    assert res.exit_code == 0, res.output
    assert f"resuming {run.run_id}: 3 of 8" in res.output
    assert run.records_path.read_text().splitlines()[:3] == lines[:3], "nothing lost"
    keys = [record_key(r["config"], r["workload"], r["params"], r["repeat"])
            for r in run.records()]
    assert len(keys) == 8 and len(set(keys)) == 8
    assert run.manifest()["status"] == "complete"


def test_an_interrupted_serial_run_resumes_serially() -> None:
    """The cut's manifest key must not collide with the run's workload unit ("fork")."""
    first = runner.invoke(app, ["study", str(PLAN), "--backend", "sim"])
    assert first.exit_code == 0, first.output
    (run,) = list(list_runs())
    assert "boot_per" not in run.manifest() and run.manifest()["unit"] != "configuration"
    lines = run.records_path.read_text().splitlines()
    run.records_path.write_text("\n".join(lines[:3]) + "\n")
    run.update_manifest(status="interrupted")
    res = runner.invoke(app, ["study", str(PLAN), "--backend", "sim"])
    assert res.exit_code == 0, res.output
    assert f"resuming {run.run_id}: 3 of 8" in res.output
    assert run.manifest()["status"] == "complete" and len(run.records()) == 8
    dask = runner.invoke(app, ["study", str(PLAN), "--backend", "sim", "--workers", "1"])
    assert dask.exit_code == 0 and len(list(list_runs())) == 2, "a complete run is not resumed"
    (new,) = [r for r in list_runs() if r.run_id != run.run_id]
    assert new.manifest()["boot_per"] == "configuration × cell"


def _model(seconds_per_unit: dict[tuple[str, str], float]) -> dict[str, object]:
    """A model with one constant guest-time line per (configuration, workload)."""
    configs: dict[str, dict[str, dict[str, object]]] = {}
    for (cfg, wl), s in seconds_per_unit.items():
        configs.setdefault(cfg, {"workloads": {}})["workloads"][wl] = {
            "terms": [], "targets": {"guest_ns": {"coef": [s * 1e9]}}}
    return {"configs": configs}


def test_units_go_out_longest_first_by_the_models_guest_time() -> None:
    from lab.unit_order import longest_first

    m = load_plan(PLAN, "sim").matrix   # forkstorm 100 procs, faultstorm 2 procs × 4 MiB
    units = plan_units(m, set(), "r", None)
    # per unit: forkstorm 100 forks, faultstorm 2 × 4 × 256 = 2048 faults
    model = _model({("highpte", "forkstorm"): 1e-3, ("highpte", "faultstorm"): 1e-4,
                    ("lowpte", "forkstorm"): 2e-3, ("lowpte", "faultstorm"): 1e-5})
    order = longest_first(units, model)
    assert [(u.config, u.workload) for u in order] == [
        ("highpte", "faultstorm"), ("lowpte", "forkstorm"), ("highpte", "forkstorm"),
        ("lowpte", "faultstorm")]
    assert order[0].estimated_guest_s == pytest.approx(2048 * 1e-4 * 2)   # two repeats
    # A configuration the model lacks takes the mean of the others; a workload it lacks
    # ranks first; with no model the plan order stays.
    model = _model({("highpte", "forkstorm"): 1e-3, ("other", "forkstorm"): 3e-3})
    order = longest_first(units, model)
    assert [(u.config, u.workload) for u in order][:2] == [("highpte", "faultstorm"),
                                                          ("lowpte", "faultstorm")]
    assert order[2].config == "lowpte" and order[2].estimated_guest_s == pytest.approx(0.4)
    assert [u.estimated_guest_s for u in order[:2]] == [None, None]
    assert [u.index for u in longest_first(units, {"configs": {}})] == [1, 2, 3, 4]


def test_two_workers_never_idle_while_units_wait(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Units that ask for a worker resource are bound to a worker when submitted; submitted
    all at once, one worker ran six of eight while the other idled. The host hands them out
    as slots free up: each worker takes the next unit as soon as it is done."""
    import threading
    import time

    from distributed import Client, LocalCluster

    from lab.trace import start_run

    spans: list[tuple[str, str, float, float]] = []
    lock = threading.Lock()
    secs = {"forkstorm": 0.9, "faultstorm": 0.3}

    def measure(unit: Unit) -> UnitResult:
        t0 = time.monotonic()
        time.sleep(secs[unit.workload])
        res = UnitResult(unit, worker={"hostname": "fake"})
        res.records = [{"config": unit.config, "workload": unit.workload,
                        "params": unit.params, "repeat": i} for i in unit.repeats]
        with lock:
            spans.append((threading.current_thread().name, f"{unit.config}/{unit.workload}",
                          t0, time.monotonic()))
        return res

    monkeypatch.setattr(cluster, "measure_unit", measure)
    m = load_plan(PLAN, "sim").matrix
    m = type(m)(m.configs * 2, m.cells, m.backend, m.probes, m.boot)   # 8 units
    model = _model({("highpte", "forkstorm"): 1e-3, ("highpte", "faultstorm"): 1e-5,
                    ("lowpte", "forkstorm"): 1e-3, ("lowpte", "faultstorm"): 1e-5})
    monkeypatch.setattr("lab.unit_order.load_model", lambda: model)
    run = start_run(m, "t", results_root=tmp_path)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      resources={"guest": 1}, dashboard_address=":0") as c, Client(c) as client:
        cluster.run_matrix_dask(m, run, client, check_commit=False)
    assert len(spans) == 8
    # The forkstorm units (the long ones) started first, two at a time.
    first = sorted(spans, key=lambda s: s[2])
    assert {s[1].split("/")[1] for s in first[:4]} == {"forkstorm"}
    # No worker waited while a unit was still to start: a worker's next unit began within
    # 0.25 s of its last one's end, up to the last unit started.
    last_start = first[-1][2]
    for thread in {s[0] for s in spans}:
        mine = sorted((s for s in spans if s[0] == thread), key=lambda s: s[2])
        gaps = [b[2] - a[3] for a, b in itertools.pairwise(mine)
                if b[2] <= last_start]
        assert all(g < 0.25 for g in gaps), (thread, gaps, spans)
    assert [len([s for s in spans if s[0] == t]) for t in {s[0] for s in spans}] == [4, 4]
    log = run.manifest()["unit_log"]
    assert len(log) == 8 and all(e["estimated_guest_s"] is not None for e in log)
