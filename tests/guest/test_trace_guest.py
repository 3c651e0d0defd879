"""`lab trace` on the real guest: what the kernel says must hold for forkstorm."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.results import list_runs

from .helpers import lab, our_qemus

pytestmark = pytest.mark.guest


def _per_fork(records: list[dict], config: str, counter: str) -> list[float]:
    return [r["counts"][counter] / r["units"] for r in records if r["config"] == config]


def test_forkstorm_highpte_vs_lowpte(tmp_path: Path) -> None:
    # touch=0: children fork and exit without COW-copying data pages, so highmem kmaps are
    # (nearly) all page-table maps; data-page kmaps would dilute the difference.
    res = lab(
        "trace",
        "--workload",
        "forkstorm",
        "--config",
        "highpte,lowpte",
        "--repeat",
        "2",
        "--param",
        "procs=200",
        "--param",
        "touch=0",
        "--backend",
        "ftrace",
        "--json",
    )
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    (run,) = list(list_runs())
    assert out["run_id"] == run.run_id
    m = run.manifest()
    assert m["status"] == "complete" and m["backend"] == "ftrace" and m["simulated"] is False
    for cfg in ("highpte", "lowpte"):
        c = m["configs"][cfg]
        assert c["kernel"]["package"].startswith("linux-image-6.1")
        assert len(c["kernel"]["bzimage_sha256"]) == 64
        assert c["qemu_argv"][0] == "qemu-system-x86_64" and c["qemu_version"]
        assert "pmd_alloc_ukva" in c["absent"] and "__kmap_local_pfn_prot" in c["attached"]
        # the agent makes the crng ready before it serves (exec's cost depends on it)
        assert c["crng_ready"] is True
        console = (run.path / f"console-{cfg}.log").read_text(errors="replace")
        assert 0 <= console.find("random: crng init done") < console.find("lab-agent: serving")
    assert "userpte=nohigh" in m["configs"]["lowpte"]["cmdline"]
    recs = run.records()
    assert len(recs) == 4 and all(r["units"] == 200 and r["report"]["errors"] == 0 for r in recs)
    high = _per_fork(recs, "highpte", "__kmap_local_pfn_prot")
    low = _per_fork(recs, "lowpte", "__kmap_local_pfn_prot")
    assert min(high) > 3 * max(low), (high, low)
    for cfg in ("highpte", "lowpte"):
        assert min(_per_fork(recs, cfg, "__pte_alloc")) > 0
        assert min(_per_fork(recs, cfg, "pgd_alloc")) >= 1.0, "every fork creates an mm"
    for r in recs:
        assert "pmd_alloc_ukva" in r["absent"] and "pmd_alloc_ukva" not in r["counts"]
        assert r["meminfo_before"]["HighTotal"] > 4 * 1024 * 1024
        assert r["guest_elapsed_ns"] > 0 and r["host"]["qemu_cpu_seconds"] > 0
        assert (
            sum(v for k, v in r["counts"].items() if k.startswith("tlb_flush."))
            == r["counts"]["tlb_flush"]
        )
    # no QEMU of this run outlives it: each boot's instance directory (console, agent and QMP
    # sockets) is its own, so this ignores guests that another xdist worker has running
    # (matching every /tmp/ukva-lab-* QEMU did not, and failed when one was)
    for cfg, c in m["configs"].items():
        console = next(a for a in c["qemu_argv"] if "console.log" in a)
        instance = Path(console.split("path=", 1)[1].split(",", 1)[0]).parent
        assert instance.name.startswith("ukva-lab-"), (cfg, console)
        assert our_qemus(instance) == [], (cfg, instance)
