"""`lab trace --backend sim` end to end: records on disk, labelled simulated, resumable data."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from lab.cli import app
from lab.results import list_runs

runner = CliRunner()


def test_sim_trace_records_and_show() -> None:
    res = runner.invoke(app, ["trace", "--backend", "sim", "--repeat", "3", "--param", "procs=200",
                              "--param", "touch=0", "--json"])
    assert res.exit_code == 0, res.output
    (run,) = list(list_runs())
    m = run.manifest()
    assert m["backend"] == "sim" and m["simulated"] is True and m["status"] == "complete"
    assert m["timing"] == "modelled"
    assert m["params"] == {"procs": 200, "touch": 0, "concurrency": 4}
    assert {p["name"] for p in m["probe_set"]} >= {"__kmap_local_pfn_prot", "pmd_alloc_ukva"}
    recs = run.records()
    assert [(r["config"], r["repeat"]) for r in recs] == [
        ("highpte", 0), ("highpte", 1), ("highpte", 2), ("lowpte", 0), ("lowpte", 1), ("lowpte", 2)]
    for r in recs:
        assert r["simulated"] is True and r["backend"] == "sim" and r["units"] == 200
        assert "pmd_alloc_ukva" in r["absent"] and "pmd_alloc_ukva" not in r["counts"]
    out = json.loads(res.stdout)
    assert out["run_id"] == run.run_id
    human = runner.invoke(app, ["show", run.run_id])
    assert human.exit_code == 0 and "SIMULATED" in human.output and "absent" in human.output
    listing = runner.invoke(app, ["runs"])
    assert run.run_id[:15] in listing.output


def test_interrupted_trace_keeps_finished_repeats(monkeypatch: pytest.MonkeyPatch) -> None:
    from lab.tracers import sim

    real = sim.SimSession.measure
    calls = {"n": 0}

    def flaky(self: sim.SimSession, *a: object, **k: object) -> object:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(self, *a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(sim.SimSession, "measure", flaky)
    res = runner.invoke(app, ["trace", "--backend", "sim", "--repeat", "5"])
    assert res.exit_code == 130
    (run,) = list(list_runs())
    assert run.manifest()["status"] == "interrupted"
    assert len(run.records()) == 2


def test_dashboard_of_a_sim_run(tmp_path: object) -> None:
    res = runner.invoke(app, ["trace", "--backend", "sim", "--repeat", "2"])
    assert res.exit_code == 0, res.output
    (run,) = list(list_runs())
    out = run.path / "d.html"
    res = runner.invoke(app, ["dashboard", run.run_id, "-o", str(out)])
    assert res.exit_code == 0, res.output
    html = out.read_text()
    assert "SIMULATED" in html and "highpte" in html and "lowpte" in html
    assert "<script src=" not in html, "the dashboard must work offline"


def _lose_guest_on_call(monkeypatch: pytest.MonkeyPatch, lost_on: set[int], reason: str) -> None:
    from lab.errors import GuestLostError
    from lab.tracers import sim

    real = sim.SimSession.measure
    calls = {"n": 0}

    def flaky(self: sim.SimSession, *a: object, **k: object) -> object:
        calls["n"] += 1
        if calls["n"] in lost_on:
            raise GuestLostError(reason, "/tmp/console.log")
        return real(self, *a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(sim.SimSession, "measure", flaky)


def test_soft_lockup_reboots_once_and_keeps_every_record(monkeypatch: pytest.MonkeyPatch) -> None:
    why = "soft-lockup: BUG: soft lockup - CPU#1 stuck for 22s! [sh:500]"
    _lose_guest_on_call(monkeypatch, {3}, why)
    res = runner.invoke(app, ["trace", "--backend", "sim", "--repeat", "4"])
    assert res.exit_code == 0, res.output
    (run,) = list(list_runs())
    m = run.manifest()
    assert m["status"] == "complete"
    assert m["configs"]["highpte"]["reboots"] == [why]
    assert "reboots" not in m["configs"]["lowpte"]
    keys = [(r["config"], r["repeat"]) for r in run.records()]
    assert sorted(keys) == [(c, i) for c in ("highpte", "lowpte") for i in range(4)]
    assert len(keys) == len(set(keys))   # nothing measured twice


def test_a_second_soft_lockup_or_a_panic_ends_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    _lose_guest_on_call(monkeypatch, {2, 3}, "soft-lockup: BUG: soft lockup - CPU#0 stuck")
    res = runner.invoke(app, ["trace", "--backend", "sim", "--repeat", "4"])
    assert res.exit_code == 3
    (run,) = list(list_runs())
    assert run.manifest()["status"].startswith("guest lost: soft-lockup")
    assert len(run.records()) == 1


def test_a_panic_is_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    _lose_guest_on_call(monkeypatch, {2}, "panic: Kernel panic - not syncing: Fatal exception")
    res = runner.invoke(app, ["trace", "--backend", "sim", "--repeat", "4"])
    assert res.exit_code == 3
    (run,) = list(list_runs())
    assert len(run.records()) == 1 and "reboots" not in run.manifest()["configs"]["highpte"]
