"""`lab study --workers N` on the real guest: a real Dask LocalCluster, two guests at once.

The same plan on 1 and on 2 workers gives the same counts and icount guest times (the unit
cut depends on the plan only; norandmaps in the plan); a worker killed mid-unit takes its QEMU
with it, its unit runs again, and the run ends complete with every measurement exactly once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from lab.results import RunDir, list_runs

from .helpers import lab, qemu_children, still_running

pytestmark = pytest.mark.guest

PLAN = Path(__file__).parent.parent / "data" / "study-dask.toml"
CELLS = 4  # 1 configuration × (forkstorm ×2 + faultstorm ×2)


def _by_key(run: RunDir) -> dict[tuple, dict[str, Any]]:
    recs = run.records()
    keys = [(r["config"], r["workload"], r["repeat"]) for r in recs]
    assert len(keys) == CELLS and len(set(keys)) == CELLS, f"every cell exactly once: {keys}"
    return {(r["config"], r["workload"], r["repeat"]): r for r in recs}


def _study(workers: int) -> RunDir:
    t0 = time.monotonic()
    res = lab("study", str(PLAN), "--backend", "ftrace", "--workers", str(workers), "--new",
              "--json")
    assert res.returncode == 0, res.stderr
    run = next(list_runs())
    m = run.manifest()
    assert m["status"] == "complete" and m["cluster"] == {"workers": workers}
    print(f"--workers {workers}: {time.monotonic() - t0:.1f} s", file=sys.stderr)
    return run


def test_one_and_two_workers_measure_the_same() -> None:
    one, two = _study(1), _study(2)
    a, b = _by_key(one), _by_key(two)
    assert len(two.manifest()["workers"]) == 2, "both workers ran a unit"
    for key in a:
        assert a[key]["timing"] == b[key]["timing"] == "icount"
        assert a[key]["counts"] == b[key]["counts"], key
        assert a[key]["guest_elapsed_ns"] == b[key]["guest_elapsed_ns"], key
    for run in (one, two):  # one boot per (configuration, cell): two boots in the console
        assert (run.path / "console-highpte.log").read_text().count("lab-agent: serving") == 2


def test_killed_worker_unit_runs_again_nothing_lost_or_twice() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "lab", "study", str(PLAN), "--backend",
                             "ftrace", "--workers", "2", "--new"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=os.environ.copy())
    deadline = time.monotonic() + 600
    victim: psutil.Process | None = None
    while victim is None:  # a guest that has run a few seconds: kill the worker that owns it
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline
        for q in qemu_children(proc.pid):
            if time.time() - q.create_time() > 5:
                victim = q
                break
        time.sleep(0.5)
    worker = victim.parent()
    assert worker is not None and worker.pid != proc.pid, "QEMU runs under a worker process"
    worker.send_signal(signal.SIGKILL)
    gone_by = time.monotonic() + 15
    while still_running([victim]) and time.monotonic() < gone_by:
        time.sleep(0.25)
    assert still_running([victim]) == [], "the killed worker's QEMU must die with it"
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    run = next(list_runs())
    assert run.manifest()["status"] == "complete"
    recs = _by_key(run)
    assert {r["workload"] for r in recs.values()} == {"forkstorm", "faultstorm"}
    assert len(run.manifest()["workers"]) >= 2
