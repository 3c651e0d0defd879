"""`lab study` end to end on the real guest: one boot per configuration, killed and resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from lab.results import list_runs

from .helpers import lab, qemu_children, still_running

pytestmark = pytest.mark.guest

PLAN = Path(__file__).parent.parent / "data" / "study-ci.toml"


def test_study_killed_midway_resumes_without_losing_anything(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "lab", "study", str(PLAN), "--backend",
                             "ftrace"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=os.environ.copy())
    deadline = time.monotonic() + 600
    first: list[str] = []
    guests: list[psutil.Process] = []
    while not first:  # wait until the study has recorded something, then interrupt it
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline
        runs = list(list_runs())
        if runs and runs[0].records_path.exists():
            first = runs[0].records_path.read_text().splitlines()
        guests = qemu_children(proc.pid) or guests
        time.sleep(0.5)
    guests = qemu_children(proc.pid) or guests
    assert guests, "the study's guest was seen while it ran"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    (run,) = list(list_runs())
    assert run.manifest()["status"] == "interrupted"
    kept = run.records_path.read_text().splitlines()
    assert 1 <= len(kept) < 8 and kept[: len(first)] == first
    assert still_running(guests) == [], "Ctrl-C must not leave the study's QEMU behind"

    res = lab("study", str(PLAN), "--backend", "ftrace", "--json")
    assert res.returncode == 0, res.stderr
    assert "resuming" in res.stderr
    (again,) = list(list_runs())
    assert again.run_id == run.run_id, "the same run directory is resumed"
    recs = again.records()
    keys = [(r["config"], r["workload"], r["repeat"]) for r in recs]
    assert len(keys) == 8 and len(set(keys)) == 8, "every cell exactly once"
    assert again.records_path.read_text().splitlines()[: len(kept)] == kept, "nothing lost"
    assert again.manifest()["status"] == "complete"
    assert {r["timing"] for r in recs} == {"icount"}
    summary = json.loads(res.stdout)["summary"]
    assert {(s["config"], s["workload"]) for s in summary} == {
        (c, w) for c in ("highpte", "lowpte") for w in ("forkstorm", "faultstorm")}
    # One boot per configuration per invocation: console logs hold one boot each time.
    for cfg in ("highpte", "lowpte"):
        log = (again.path / f"console-{cfg}.log").read_text()
        assert 1 <= log.count("lab-agent: serving") <= 2


def test_profile_diff(tmp_path: Path) -> None:
    # faultstorm: every fault maps its PTE page, a highmem kmap under highpte only.
    res = lab("profile", "--workload", "faultstorm", "--config", "highpte,lowpte",
              "--param", "procs=4", "--param", "mib=64", "--repeat", "3", "--icount", "--json")
    assert res.returncode == 0, res.stderr
    prof = json.loads(res.stdout)
    assert prof["configs"] == ["highpte", "lowpte"]
    assert all(prof["totals"][c]["ticks"] > 100 for c in prof["configs"])
    rows = prof["rows"]
    assert rows == sorted(rows, key=lambda r: (-r["delta"], r["symbol"]))
    assert not {r["symbol"] for r in rows} & {"default_idle", "do_idle"}, "idle is left out"
    (run,) = [r for r in list_runs() if (r.path / "profile.json").exists()]
    ticks = {c: json.loads((run.path / f"profile-{c}.json").read_text())["ticks"]
             for c in prof["configs"]}
    highmem_path = ("__kmap_local_pfn_prot", "flush_tlb_one_kernel")
    high, low = (sum(ticks[c].get(s, 0) for s in highmem_path) for c in prof["configs"])
    assert high > low, (high, low)
