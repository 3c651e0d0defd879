"""Host tests for the sim backend: the model's stated properties, determinism and labelling."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.errors import LabError, UsageError
from lab.tracers import ProbeSpec, load_probe_set
from lab.tracers.sim import DEFAULT_MODEL, SimSession

FORK = {"procs": 300, "touch": 0, "concurrency": 1}


def measure(config: str, params: dict[str, int] | None = None, seed: int = 1,
            model_path: Path | None = None, probes: list[ProbeSpec] | None = None):
    s = SimSession(config, model_path=model_path, seed=seed)
    s.attach(load_probe_set() if probes is None else probes)
    return s.measure("forkstorm", dict(params or FORK), ["forkstorm", "300"])


def per_fork(m, counter: str) -> float:
    return m.counts[counter] / m.report["ops"]


def model_variant(tmp_path: Path, **forkstorm: object) -> Path:
    """A copy of the shipped model with [workloads.forkstorm] keys overridden."""
    lines = DEFAULT_MODEL.read_text().splitlines()
    start = lines.index("[workloads.forkstorm]")
    for key, value in forkstorm.items():
        i = next(i for i in range(start, len(lines)) if lines[i].split("=")[0].strip() == key)
        lines[i] = f"{key} = {json.dumps(value)}"
    path = tmp_path / "model.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_highpte_kmaps_more_than_three_times_lowpte():
    hi, lo = measure("highpte"), measure("lowpte")
    assert per_fork(hi, "__kmap_local_pfn_prot") > 3 * per_fork(lo, "__kmap_local_pfn_prot")


def test_lowpte_has_no_pte_page_kmaps_beyond_the_data_baseline():
    lo, hi = measure("lowpte"), measure("highpte")
    split = lo.extra["model"]["highmem_kmaps"]
    assert split["pte"] == 0
    # what lowpte does kmap is the modelled non-PTE (data page) baseline, nothing more
    assert lo.counts["__kmap_local_pfn_prot"] == pytest.approx(split["data"], abs=1)
    assert per_fork(lo, "__kmap_local_pfn_prot") < 0.25 * per_fork(hi, "__kmap_local_pfn_prot")
    # ...while pte_offset_map still goes through kmap_atomic, which returns page_address
    assert lo.counts["__kmap_local_page_prot"] > 3 * lo.counts["__kmap_local_pfn_prot"]


def test_ukva_fewer_than_highpte_but_fork_child_side_still_kmaps():
    hi, uk = measure("highpte"), measure("ukva")
    assert 0 < uk.counts["__kmap_local_pfn_prot"] < hi.counts["__kmap_local_pfn_prot"]
    paths = uk.extra["model"]["per_unit_by_path"]
    assert paths["fork"]["pte_maps_foreign"] > 0          # copy_pte_range's dst side
    assert uk.extra["model"]["highmem_kmaps"]["pte"] > 0
    assert uk.extra["model"]["highmem_kmaps"]["pte"] < hi.extra["model"]["highmem_kmaps"]["pte"]


def test_counts_scale_linearly_with_procs():
    small = measure("highpte", {"procs": 100, "touch": 8, "concurrency": 1})
    big = measure("highpte", {"procs": 1000, "touch": 8, "concurrency": 1})
    for name in ("__kmap_local_pfn_prot", "__pte_alloc", "___pte_free_tlb", "flush_tlb_mm_range"):
        assert per_fork(big, name) == pytest.approx(per_fork(small, name), rel=0.08), name
    assert big.counts["__kmap_local_pfn_prot"] > 8 * small.counts["__kmap_local_pfn_prot"]


def test_touch_adds_cow_work():
    none = measure("lowpte", {"procs": 200, "touch": 0, "concurrency": 1})
    some = measure("lowpte", {"procs": 200, "touch": 64, "concurrency": 1})
    # each touched page is one COW copy: two data kmaps (copy_user_highpage) and one flush
    assert per_fork(some, "__kmap_local_pfn_prot") - per_fork(none, "__kmap_local_pfn_prot") \
        == pytest.approx(2 * 64 * 0.98, rel=0.1)
    assert per_fork(some, "flush_tlb_mm_range") - per_fork(none, "flush_tlb_mm_range") \
        == pytest.approx(64, rel=0.1)


def test_pmd_alloc_ukva_absent_except_on_ukva_where_it_counts_mms(tmp_path):
    for config in ("highpte", "lowpte"):
        m = measure(config)
        assert "pmd_alloc_ukva" not in m.counts and "pmd_free_ukva" not in m.counts
        s = SimSession(config)
        att = s.attach(load_probe_set())
        assert "pmd_alloc_ukva" in att.absent and "UKVA" in att.absent["pmd_alloc_ukva"]
    uk = measure("ukva")
    # one mm per child, plus the agent's fork and exec of the driver (include_driver)
    assert uk.counts["pmd_alloc_ukva"] == FORK["procs"] + 2 == uk.counts["pgd_alloc"]
    assert uk.counts["pmd_free_ukva"] == uk.counts["pmd_alloc_ukva"]
    alone = measure("ukva", model_path=model_variant(tmp_path, include_driver=False))
    assert alone.counts["pmd_alloc_ukva"] == FORK["procs"]


def test_page_tables_balance():
    for config in ("highpte", "lowpte", "ukva"):
        m = measure(config, {"procs": 50, "touch": 700, "concurrency": 4})
        assert m.counts["pte_alloc_one"] == m.counts["___pte_free_tlb"]
        assert m.counts["kunmap_local_indexed"] == m.counts["__kmap_local_page_prot"]
        assert m.counts["flush_tlb_one_kernel"] == m.counts["__kmap_local_pfn_prot"]
        assert m.meminfo_after["PageTables"] == m.meminfo_before["PageTables"]


def test_busybox_true_profile_lands_near_facts(tmp_path):
    """docs/FACTS.md, 300 forks of busybox true: ~57000 vs ~11500 highmem kmaps, ~2000 __pte_alloc,
    ~7500 flush_tlb_mm_range; icount 0.35 s vs 0.29 s."""
    path = model_variant(tmp_path, child_exec=True, include_driver=False)
    hi, lo = measure("highpte", model_path=path), measure("lowpte", model_path=path)
    assert hi.counts["__kmap_local_pfn_prot"] == pytest.approx(57000, rel=0.15)
    assert lo.counts["__kmap_local_pfn_prot"] == pytest.approx(11500, rel=0.15)
    assert hi.counts["__pte_alloc"] == pytest.approx(2000, rel=0.15)
    assert hi.counts["flush_tlb_mm_range"] == pytest.approx(7500, rel=0.15)
    assert hi.guest_elapsed_ns == pytest.approx(0.35e9, rel=0.1)
    assert lo.guest_elapsed_ns == pytest.approx(0.29e9, rel=0.1)


def test_highmem_kmaps_cost_guest_time():
    hi, lo, uk = measure("highpte"), measure("lowpte"), measure("ukva")
    assert hi.guest_elapsed_ns > uk.guest_elapsed_ns > lo.guest_elapsed_ns


def test_deterministic_with_seed_and_noise_is_small():
    a, b = measure("highpte", seed=7), measure("highpte", seed=7)
    c = measure("highpte", seed=8)
    assert a.counts == b.counts and a.guest_elapsed_ns == b.guest_elapsed_ns
    assert a.counts != c.counts
    k1, k2 = a.counts["__kmap_local_pfn_prot"], c.counts["__kmap_local_pfn_prot"]
    assert abs(k1 - k2) / k1 < 0.1
    s = SimSession("highpte", seed=7)
    s.attach(load_probe_set())
    r1, r2 = (s.measure("forkstorm", FORK, []) for _ in range(2))
    assert r1.counts != r2.counts                       # repeats differ...
    assert r1.counts == a.counts                        # ...but the first repeat is reproducible


def test_every_output_says_simulated():
    s = SimSession("lowpte")
    assert s.backend == "sim" and s.simulated is True
    m = measure("lowpte")
    assert m.report["simulated"] is True and m.extra["simulated"] is True
    assert {"workload", "unit", "ops", "errors", "elapsed_ns", "params"} <= set(m.report)
    assert m.report["workload"] == "forkstorm" and m.report["unit"] == "fork"
    assert m.report["ops"] == 300 and m.report["errors"] == 0
    assert {"PageTables", "LowFree", "HighFree"} <= set(m.meminfo_before)


def test_counter_names_follow_the_probe_set():
    m = measure("highpte")
    for name in ("tlb_flush", "tlb_flush.task_switch", "tlb_flush.remote_shootdown",
                 "tlb_flush.local_shootdown", "tlb_flush.local_mm_shootdown",
                 "tlb_flush.remote_ipi_send", "sched_switch", "__pte_alloc", "pgd_alloc"):
        assert name in m.counts, name
    reasons = [v for k, v in m.counts.items() if k.startswith("tlb_flush.")]
    assert m.counts["tlb_flush"] == pytest.approx(sum(reasons), abs=len(reasons))


def test_unmodelled_probe_is_absent_not_zero():
    probes = [ProbeSpec(name="tlb_finish_mmu", kind="kprobe", group="x", help="",
                        symbol="tlb_finish_mmu"),
              ProbeSpec(name="__pte_alloc", kind="kprobe", group="pte", help="",
                        symbol="__pte_alloc")]
    s = SimSession("highpte")
    att = s.attach(probes)
    assert att.attached == ["__pte_alloc"]
    assert att.absent == {"tlb_finish_mmu": "not modelled by the sim backend"}
    m = s.measure("forkstorm", FORK, [])
    assert set(m.counts) == {"__pte_alloc"}


def test_concurrency_brings_remote_flushes_and_less_time():
    one = measure("highpte", {"procs": 200, "touch": 0, "concurrency": 1})
    four = measure("highpte", {"procs": 200, "touch": 0, "concurrency": 4})
    assert one.counts["tlb_flush.remote_ipi_send"] == 0
    assert four.counts["tlb_flush.remote_ipi_send"] > 0
    assert four.guest_elapsed_ns < one.guest_elapsed_ns


@pytest.mark.parametrize("params", [
    {"touch": 0}, {"procs": 0}, {"procs": 10, "touch": -1}, {"procs": 10, "concurrency": 0},
    {"procs": 10, "bogus": 1},
])
def test_bad_params_are_usage_errors(params):
    with pytest.raises(UsageError):
        SimSession("highpte").measure("forkstorm", params, [])


def test_unknown_workload_config_and_closed_session():
    with pytest.raises(UsageError, match="forkstorm"):
        SimSession("highpte").measure("mmapstorm", {"procs": 1}, [])
    with pytest.raises(UsageError, match="highpte"):
        SimSession("nosuch")
    with pytest.raises(UsageError):
        SimSession("highpte", model_path=Path("/nonexistent/model.toml"))
    s = SimSession("highpte")
    s.close()
    with pytest.raises(LabError):
        s.measure("forkstorm", FORK, [])
