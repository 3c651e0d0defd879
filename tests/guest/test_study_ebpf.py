"""`lab study --backend ebpf` end to end: the CLI, the plan, the ebpf backend in a real guest,
the records. Serially and on one Dask worker (whose boot must carry the eBPF image parts).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.results import list_runs

from .helpers import lab

pytestmark = [pytest.mark.guest, pytest.mark.timeout(1800)]

PLAN = Path(__file__).parent.parent / "data" / "study-ebpf.toml"


@pytest.mark.parametrize("workers", [[], ["--workers", "1"]], ids=["serial", "dask"])
def test_study_with_the_ebpf_backend_counts_in_the_guest(workers: list[str]) -> None:
    res = lab("study", str(PLAN), "--backend", "ebpf", "--new", "--json", *workers,
              timeout=1500)
    assert res.returncode == 0, res.stderr
    run = max(list_runs(), key=lambda r: r.path.stat().st_mtime)
    m = run.manifest()
    assert m["backend"] == "ebpf" and m["status"] == "complete"
    # the JIT was on and every program was JITed (the x86-32 JIT's limits are respected)
    ebpf = m["configs"]["highpte"]["ebpf"]
    assert ebpf["jit_enable"] == "1" and ebpf["jited"] and all(ebpf["jited"].values()), ebpf
    recs = {r["workload"]: r for r in run.records()}
    assert set(recs) == {"forkstorm", "faultstorm"}
    assert {r["backend"] for r in recs.values()} == {"ebpf"}
    fork, fault = recs["forkstorm"], recs["faultstorm"]
    # highmem PTE pages: every fork kmaps well over a hundred times, every fault about three
    assert 100 < fork["counts"]["__kmap_local_pfn_prot"] / fork["units"] < 200, fork["counts"]
    assert fork["counts"]["pgd_alloc"] >= fork["units"]
    assert 2.5 < fault["counts"]["__kmap_local_pfn_prot"] / fault["units"] < 4, fault["counts"]
    summary = json.loads(res.stdout)["summary"]
    assert {s["workload"] for s in summary} == {"forkstorm", "faultstorm"}
