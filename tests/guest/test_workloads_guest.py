"""Every workload in the real guest, small, and what the kernel says its counters must do."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lab.results import list_runs

from .helpers import lab

pytestmark = pytest.mark.guest

PLAN = Path(__file__).parent.parent / "data" / "workloads-ci.toml"


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], dict[str, Any]]:
    import os

    root = tmp_path_factory.mktemp("wl")
    os.environ["UKVA_LAB_RESULTS"] = str(root / "results")
    os.environ["UKVA_LAB_STATE"] = str(root / "state")
    res = lab("study", str(PLAN), "--backend", "ftrace", "--json", timeout=1800)
    assert res.returncode == 0, res.stderr
    (run,) = list(list_runs())
    assert run.manifest()["status"] == "complete"
    return {(r["config"], r["workload"]): r for r in run.records()}


def per_unit(r: dict[str, Any], counter: str) -> float:
    return r["counts"][counter] / r["units"]


def test_every_workload_verified_its_work(records: dict) -> None:
    for (cfg, wl), r in records.items():
        assert r["report"]["errors"] == 0, (cfg, wl, r["report"])
        assert r["units"] > 0 and r["guest_elapsed_ns"] > 0


def test_forkstorm_one_mm_per_fork(records: dict) -> None:
    for cfg in ("highpte", "lowpte"):
        assert 1.0 <= per_unit(records[(cfg, "forkstorm")], "pgd_alloc") < 1.1


def test_faultstorm_pte_pages_follow_touched_memory(records: dict) -> None:
    for cfg in ("highpte", "lowpte"):
        r = records[(cfg, "faultstorm")]
        procs, mib = r["params"]["procs"], r["params"]["mib"]
        assert r["units"] == procs * mib * 256
        expected = procs * mib / 2  # one PTE page maps 2 MiB
        # plus each process's own text, stack and heap tables, and the agent's fork
        assert expected <= r["counts"]["__pte_alloc"] <= expected + 8 * procs + 8
    # Each fault maps its PTE page; under highpte that is a highmem kmap, under lowpte not
    # (both still kmap the fresh highmem data page to zero it).
    high = per_unit(records[("highpte", "faultstorm")], "__kmap_local_pfn_prot")
    low = per_unit(records[("lowpte", "faultstorm")], "__kmap_local_pfn_prot")
    assert high - low >= 0.8, (high, low)


def test_execstorm_creates_two_mms_per_exec(records: dict) -> None:
    for cfg in ("highpte", "lowpte"):
        assert 2.0 <= per_unit(records[(cfg, "execstorm")], "pgd_alloc") < 2.2


def _taskpile_slopes(r: dict[str, Any]) -> tuple[float, float]:
    s = r["report"]["samples"]
    n = np.array([x["tasks"] for x in s], dtype=float)
    pt = np.array([x["PageTables_kB"] for x in s], dtype=float)
    # free lowmem includes the per-CPU page lists LowFree leaves out (they absorb tens of MiB)
    low = np.array([x["LowFree_kB"] + x.get("LowPcp_kB", 0) for x in s], dtype=float)
    assert len(n) >= 3
    return float(np.polyfit(n, pt, 1)[0]), float(np.polyfit(n, low, 1)[0])


def test_taskpile_page_tables_eat_lowmem_only_without_highpte(records: dict) -> None:
    span = records[("lowpte", "taskpile")]["params"]["span_mib"]
    pte_kb_per_task = span / 2 * 4  # one 4 kB PTE page per 2 MiB touched
    pt_low, lowfree_low = _taskpile_slopes(records[("lowpte", "taskpile")])
    pt_high, lowfree_high = _taskpile_slopes(records[("highpte", "taskpile")])
    # PageTables grows ~linearly, by about one PTE page per 2 MiB per task, either way
    for pt in (pt_low, pt_high):
        assert 0.9 * pte_kb_per_task <= pt <= 1.5 * pte_kb_per_task, pt
    # lowpte: LowFree falls by at least the page tables; highpte: far less
    assert -lowfree_low >= 0.9 * pte_kb_per_task, lowfree_low
    assert -lowfree_high < 0.5 * -lowfree_low, (lowfree_high, lowfree_low)


def test_mmapchurn_flushes_and_shoots_down(records: dict) -> None:
    for cfg in ("highpte", "lowpte"):
        r = records[(cfg, "mmapchurn")]
        assert per_unit(r, "flush_tlb_mm_range") >= 1.0, "each munmap flushes the range"
    remote = sum(records[(c, "mmapchurn")]["counts"]["tlb_flush.remote_ipi_send"]
                 for c in ("highpte", "lowpte"))
    assert remote > 0, "two threads of one mm on two vCPUs need remote shootdowns"


def test_shellmix_runs_many_processes(records: dict) -> None:
    for cfg in ("highpte", "lowpte"):
        r = records[(cfg, "shellmix")]
        assert r["units"] == r["params"]["scripts"]
        assert per_unit(r, "pgd_alloc") > 5, "each script forks and execs several applets"
    assert json.dumps(records[("highpte", "shellmix")]["report"])
