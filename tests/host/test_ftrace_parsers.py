"""ftrace backend: scripts and parsers, fed with tracefs output captured in the real guest."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.errors import UsageError
from lab.tracers import ProbeSpec, load_probe_set
from lab.tracers.ftrace import (
    TRACEFS,
    counts_delta,
    parse_hist,
    parse_kprobe_profile,
    parse_preflight,
    setup_script,
    toggle_script,
)


def test_kprobe_profile(data_dir: Path) -> None:
    # after 100 forks (touch 16) on highpte and a few execs: p0 = __kmap_local_pfn_prot,
    # p1 = __pte_alloc
    prof = parse_kprobe_profile((data_dir / "kprobe_profile.txt").read_text())
    assert prof == {"p0": 16762, "p1": 472}


def test_hist(data_dir: Path) -> None:
    total, per_key = parse_hist((data_dir / "tlb_flush.hist").read_text())
    assert total == 2704
    assert per_key == {"4": 2, "0": 356, "3": 2346}
    assert sum(per_key.values()) == total


PROBES = [
    ProbeSpec("__kmap_local_pfn_prot", "kprobe", "kmap", "", symbol="__kmap_local_pfn_prot"),
    ProbeSpec("pmd_alloc_ukva", "kprobe", "ukva", "", symbol="pmd_alloc_ukva"),
    ProbeSpec("static_fn", "kprobe", "x", "", symbol="static_fn"),
    ProbeSpec("tlb_flush", "tracepoint", "tlb", "", tracepoint="tlb:tlb_flush", key="reason"),
    ProbeSpec("nope", "tracepoint", "x", "", tracepoint="nope:nope"),
]


def test_preflight_absent_and_duplicates() -> None:
    out = "\n".join(
        [
            "sym cd26ee70 T __kmap_local_pfn_prot",
            "sym cd000010 t static_fn",
            "sym cd000020 t static_fn",
            "tp tlb:tlb_flush",
        ]
    )
    addrs, tps, absent = parse_preflight(out, PROBES)
    assert addrs["static_fn"] == ["cd000010", "cd000020"]
    assert tps == {"tlb:tlb_flush"}
    assert set(absent) == {"pmd_alloc_ukva", "nope"}
    assert "kallsyms" in absent["pmd_alloc_ukva"]
    script = setup_script(PROBES, addrs)
    # unique symbol by name, duplicated static symbol at each address
    assert "p:ukvalab/p0_0 __kmap_local_pfn_prot" in script
    assert "p:ukvalab/p2_0 0xcd000010" in script and "p:ukvalab/p2_1 0xcd000020" in script
    assert "pmd_alloc_ukva" not in script
    assert "hist:keys=reason" in script
    assert "echo 0 > tracing_on" in script, "counting must not fill the ring buffer"


def test_counts_delta_sums_instances_and_splits_reasons(data_dir: Path) -> None:
    hist_before = "{ reason: 0 } hitcount: 10\nTotals:\n    Hits: 10\n"
    hist_after = (data_dir / "tlb_flush.hist").read_text()
    before = {
        f"{TRACEFS}/kprobe_profile": "  p0_0  100  0\n  p2_0  5  0\n  p2_1  1  0\n",
        f"{TRACEFS}/events/tlb/tlb_flush/hist": hist_before,
    }
    after = {
        f"{TRACEFS}/kprobe_profile": "  p0_0  350  0\n  p2_0  9  0\n  p2_1  4  0\n",
        f"{TRACEFS}/events/tlb/tlb_flush/hist": hist_after,
    }
    counts = counts_delta(
        PROBES, ["__kmap_local_pfn_prot", "static_fn", "tlb_flush"], before, after
    )
    assert counts["__kmap_local_pfn_prot"] == 250
    assert counts["static_fn"] == 7
    assert counts["tlb_flush"] == 2694
    assert counts["tlb_flush.task_switch"] == 346
    assert counts["tlb_flush.local_mm_shootdown"] == 2346
    assert counts["tlb_flush.remote_ipi_send"] == 2
    assert "pmd_alloc_ukva" not in counts, "absent probes are never reported as 0"


def test_default_probe_set_covers_the_issue() -> None:
    names = {p.name for p in load_probe_set()}
    for sym in [
        "__kmap_local_pfn_prot",
        "__kmap_local_page_prot",
        "kunmap_local_indexed",
        "__pte_alloc",
        "pte_alloc_one",
        "___pte_free_tlb",
        "__pmd_alloc",
        "pgd_alloc",
        "pgd_free",
        "pmd_alloc_ukva",
        "pmd_free_ukva",
        "flush_tlb_mm_range",
        "native_flush_tlb_one_user",
        "flush_tlb_one_kernel",
        "switch_mm_irqs_off",
        "tlb_flush",
        "sched_switch",
    ]:
        assert sym in names


def test_inline_symbol_gets_a_hint(tmp_path: Path) -> None:
    f = tmp_path / "p.toml"
    f.write_text('[[probe]]\nsymbol = "kmap_atomic"\n')
    with pytest.raises(UsageError, match="__kmap_local_page_prot"):
        load_probe_set(f)


def test_toggle_detaches_kprobes_and_triggers() -> None:
    attached = ["__kmap_local_pfn_prot", "tlb_flush"]
    off = toggle_script(PROBES, attached, False)
    on = toggle_script(PROBES, attached, True)
    assert "echo 0 > events/ukvalab/enable" in off and "echo 1 > events/ukvalab/enable" in on
    assert "'!hist:keys=reason" in off and "'hist:keys=reason" in on
    assert "nope" not in off, "probes that never attached are left alone"
