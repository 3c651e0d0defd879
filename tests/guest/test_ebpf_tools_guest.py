"""`lab stacks` and `lab latency` end to end: a real guest, the ebpf backend's stackcount and
funclatency, stored with the run and printed again from it.

On highpte the highmem kmaps per fork come from fork's page-table copy, page faults mapping
PTE pages and COW copies. On ukva (built from source, ~20 min cold) what remains per fork is
COW copies' two page copies and the child side of copy_page_range(); fork zeroes a new PTE
page through the same kmap that fills it (0008), so zeroing no longer shows on its own.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from lab.results import list_runs

from .helpers import lab

pytestmark = [pytest.mark.guest, pytest.mark.timeout(3600)]


def _last_run() -> str:
    return max(list_runs(), key=lambda r: r.path.stat().st_mtime).run_id


def _stacks(config: str, procs: int = 100) -> list[dict[str, Any]]:
    res = lab("stacks", "--workload", "forkstorm", "--config", config, "--param",
              f"procs={procs}", "--probe", "__kmap_local_pfn_prot", "--depth", "8", "--json",
              timeout=2400)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def _kind(site: str) -> str:
    """What a call site is doing, from any of its frames (innermost first)."""
    frames = site.split(" < ")
    if "wp_page_copy" in frames:
        return "cow copy"
    if "pte_alloc_one" in frames:
        return "zeroing a new PTE page"
    if "kernel_init_pages" in frames:
        return "zeroing a new page"
    if "exit_mmap" in frames:
        return "exit zaps page tables"
    if "copy_page_range" in frames:
        return "fork page-table copy"
    if "handle_mm_fault" in frames:
        return "fault maps a PTE page"
    return site


def _per_kind(row: dict[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for s in row["sites"]:
        out[_kind(s["site"])] = out.get(_kind(s["site"]), 0.0) + s["per_unit"]
    return out


def test_lab_stacks_on_highpte_finds_fork_fault_and_cow_call_sites() -> None:
    (row,) = _stacks("highpte")
    assert row["config"] == "highpte" and row["units"] == 100
    # stack-map hash collisions, counted: within 0.1 % in serial CI runs, 97-98 of ~13,840
    # (0.7 %) in both runs on two xdist workers (cause not established)
    assert row["lost"] <= 0.01 * row["hits"]
    kinds = _per_kind(row)
    for kind in ("cow copy", "fork page-table copy", "fault maps a PTE page",
                 "zeroing a new PTE page"):
        assert kinds.get(kind, 0) > 1, kinds
    assert 100 < row["per_unit"] < 200
    text = lab("stacks", "--run", _last_run(), timeout=60)
    assert text.returncode == 0, text.stderr
    assert max(map(len, text.stdout.splitlines())) < 80 and "copy_page_range" in text.stdout


def test_lab_latency_on_highpte_times_every_fault() -> None:
    res = lab("latency", "--workload", "faultstorm", "--config", "highpte", "--param",
              "mib=4", "--function", "handle_mm_fault", "--json", timeout=1200)
    assert res.returncode == 0, res.stderr
    (row,) = json.loads(res.stdout)
    assert row["function"] == "handle_mm_fault" and row["timing"] == "icount"
    assert row["lost"] == 0 and row["calls"] >= row["units"]  # every fault, plus a few more
    assert all(b["count"] > 0 for b in row["buckets"])
    # a page fault takes microseconds of guest time, not nanoseconds or seconds
    peak = max(row["buckets"], key=lambda b: b["count"])
    assert 10 <= peak["slot"] <= 20, row["buckets"]


def test_ukva_kmaps_left_per_fork_are_cow_copies_and_the_fork_child_side() -> None:
    rows = {r["config"]: r for r in _stacks("built-highpte,ukva", procs=200)}
    base, ukva = _per_kind(rows["built-highpte"]), _per_kind(rows["ukva"])
    print(json.dumps({"built-highpte": base, "ukva": ukva}, indent=1))
    named = ("cow copy", "fork page-table copy")
    assert all(ukva.get(k, 0) > 0.5 for k in named), ukva
    # anything else (an exec's page copies, an exit of an mm that is not current) is noise
    assert sum(v for k, v in ukva.items() if k not in named) < 0.02 * rows["ukva"]["per_unit"]
    # faults no longer kmap the current mm's PTE pages, exit zaps through the window, and
    # fork's new PTE pages are zeroed through the kmap that fills them
    for kind in ("fault maps a PTE page", "zeroing a new PTE page"):
        assert base[kind] > 1 and ukva.get(kind, 0) < 0.05 * base[kind], kind
    # an exit that is preempted part-way resumes lazy on another mm and finishes on kmap:
    # ~0.6 per fork of ~11 (0.58 of 11.2 failed a 5 % bound in one CI run, 2026-12-04)
    kind = "exit zaps page tables"
    assert base[kind] > 1 and ukva.get(kind, 0) < 0.1 * base[kind], kind
    # fork maps only the child's side
    ratio = ukva["fork page-table copy"] / base["fork page-table copy"]
    assert 0.35 < ratio < 0.65, ratio
    # a COW fault kmaps the old and the new page, and on highpte its PTE page too (inlined
    # into wp_page_copy here): ukva keeps two of the three
    cow = ukva["cow copy"] / base["cow copy"]
    assert 0.6 < cow < 0.72, cow
