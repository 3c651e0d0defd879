"""ebpf backend on the host: slot planning, loader script and output, map dumps, stacks and
histograms, the toolchain check, and that the BPF programs and the loader really build."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from lab.errors import LabError
from lab.tracers import BACKENDS, ProbeSpec, ebpf_build, load_probe_set
from lab.tracers.ebpf import (
    loader_script,
    parse_field_offsets,
    parse_loader,
    plan_slots,
)
from lab.tracers.ebpf_maps import (
    folded_stacks,
    kallsyms_table,
    log2_hist,
    parse_map_dump,
    parse_stack_map,
    symbolise,
)

PROBES = [
    ProbeSpec("__kmap_local_pfn_prot", "kprobe", "kmap", "", symbol="__kmap_local_pfn_prot"),
    ProbeSpec("pmd_alloc_ukva", "kprobe", "ukva", "", symbol="pmd_alloc_ukva"),
    ProbeSpec("static_fn", "kprobe", "x", "", symbol="static_fn"),
    ProbeSpec("tlb_flush", "tracepoint", "tlb", "", tracepoint="tlb:tlb_flush", key="reason"),
    ProbeSpec("sched_switch", "tracepoint", "sched", "", tracepoint="sched:sched_switch"),
]
ADDRS = {"__kmap_local_pfn_prot": ["c10f0000"], "static_fn": ["c1000010", "c1200020"]}


def test_backend_is_registered_as_a_real_guest_backend() -> None:
    b = BACKENDS["ebpf"]
    assert not b.simulated and b.needs_guest
    assert list(BACKENDS)[0] == "ftrace"  # auto still picks ftrace first


def test_slots_cover_every_present_probe_and_each_instance() -> None:
    slots = plan_slots(PROBES, ADDRS, {"tlb:tlb_flush": 8}, {"pmd_alloc_ukva": "absent"})
    assert slots.specs == [
        "c:0:__kmap_local_pfn_prot", "c:1:0xc1000010", "c:1:0xc1200020",
        "f:2:8:tlb:tlb_flush", "t:8:sched:sched_switch",
    ]
    assert slots.names == {
        0: "__kmap_local_pfn_prot", 1: "static_fn", 2: "tlb_flush",
        3: "tlb_flush.task_switch", 4: "tlb_flush.remote_shootdown",
        5: "tlb_flush.local_shootdown", 6: "tlb_flush.local_mm_shootdown",
        7: "tlb_flush.remote_ipi_send", 8: "sched_switch",
    }
    assert slots.owner["c:1:0xc1200020"] == "static_fn"


def test_tlb_flush_without_a_known_offset_counts_its_total_only() -> None:
    slots = plan_slots(PROBES[3:4], {}, {}, {})
    assert slots.specs == ["t:0:tlb:tlb_flush"] and slots.names == {0: "tlb_flush"}


def test_stack_and_latency_targets() -> None:
    slots = plan_slots([], ADDRS, {}, {}, stack="static_fn", latency="__kmap_local_pfn_prot")
    assert slots.specs == ["s:0xc1000010", "s:0xc1200020", "l:__kmap_local_pfn_prot"]
    with pytest.raises(LabError, match="not in this kernel"):
        plan_slots([], ADDRS, {}, {}, stack="nope")
    with pytest.raises(LabError, match="unique function"):
        plan_slots([], ADDRS, {}, {}, latency="static_fn")


def test_field_offsets_from_the_format_line() -> None:
    text = "off tlb:tlb_flush 8 4\noff x:y 12 8\nnoise\n"
    assert parse_field_offsets(text) == {"tlb:tlb_flush": 8}


def test_loader_script_turns_the_jit_on_and_replaces_the_pins() -> None:
    script = loader_script(["c:0:foo", "t:1:sched:sched_switch"])
    lines = script.splitlines()
    assert lines[0] == "echo 1 > /proc/sys/net/core/bpf_jit_enable 2>/dev/null"
    assert lines[1] == f"rm -rf {ebpf_build.PIN_DIR}"
    assert lines[2] == ("/sbin/lab-bpf /lib/lab/lab.bpf.o /sys/fs/bpf/lab c:0:foo "
                        "t:1:sched:sched_switch || exit 1")


def test_loader_output(data_dir: Path) -> None:
    out = parse_loader((data_dir / "ebpf" / "loader.txt").read_text())
    assert not out.error and not out.failed
    assert out.jit_enable == "1" and out.jited and all(out.jited.values())
    assert "c:0:__kmap_local_pfn_prot" in out.ok


def test_a_verifier_refusal_is_one_line() -> None:
    out = parse_loader("error: kp_count: R0 invalid mem access 'map_value_or_null'\n")
    assert out.error == "kp_count: R0 invalid mem access 'map_value_or_null'"
    out = parse_loader("jit kp_count 1\nfailed c:3:foo No such file or directory\n")
    assert out.failed == {"c:3:foo": "No such file or directory"}


def test_map_dumps_captured_in_the_guest(data_dir: Path) -> None:
    d = data_dir / "ebpf"
    before = parse_map_dump((d / "before-counts.txt").read_text())
    after = parse_map_dump((d / "after-counts.txt").read_text())
    assert len(after) == 256 and set(before) == set(after)
    # slot 0 is __kmap_local_pfn_prot: 100 forks on highpte, ~138 highmem kmaps each
    assert 100 * 100 < after[0] - before[0] < 200 * 100


def test_stacks_captured_in_the_guest_fold_and_symbolise(data_dir: Path) -> None:
    d = data_dir / "ebpf"
    table = kallsyms_table((d / "kallsyms.txt").read_text())
    ips = parse_stack_map((d / "after-stacks.txt").read_text())
    assert ips and all(0xc0000000 <= ip for st in ips.values() for ip in st)
    folded = folded_stacks((d / "before-stack_counts.txt").read_text(),
                           (d / "after-stack_counts.txt").read_text(),
                           (d / "after-stacks.txt").read_text(), table)
    assert all(s.split(";")[-1].startswith("__kmap_local_pfn_prot") for s in folded)
    assert any("copy_page_range" in s for s in folded)
    counts = parse_map_dump((d / "after-counts.txt").read_text())
    base = parse_map_dump((d / "before-counts.txt").read_text())
    lost = counts.get(255, 0) - base.get(255, 0)
    assert sum(folded.values()) + lost == counts[0] - base[0]


def test_symbolise_takes_the_nearest_symbol_below() -> None:
    table = kallsyms_table("c1000000 T a\nc1000100 t b\nc1000200 D data\nc1000300 t m [mod]\n")
    assert symbolise(0xc1000104, table) == "b"
    assert symbolise(0xc1000304, table) == "m [mod]"
    assert symbolise(0xb0000000, table) == "0xb0000000"


def test_latency_histogram_captured_in_the_guest(data_dir: Path) -> None:
    d = data_dir / "ebpf"
    hist = log2_hist((d / "before-lat_hist.txt").read_text(),
                     (d / "after-lat_hist.txt").read_text())
    assert hist and all(v > 0 for v in hist.values()) and max(hist) < 40


def test_missing_toolchain_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ebpf_build, "_NEEDED", (("/nonexistent/libbpf.a", "libbpf-dev:i386"),))
    monkeypatch.setattr(ebpf_build.shutil, "which", lambda _name: None)
    with pytest.raises(LabError, match=r"needs clang, libbpf-dev:i386: run ./setup.sh"):
        ebpf_build.require_toolchain()


def test_setup_installs_what_the_backend_needs() -> None:
    setup = (Path(__file__).parents[2] / "setup.sh").read_text()
    for pkg in ("clang", "libbpf-dev:i386", "libelf-dev:i386", "zlib1g-dev:i386"):
        assert pkg in setup


def test_bpf_programs_and_loader_build(tmp_path: Path) -> None:
    ebpf_build.require_toolchain()
    ebpf_build.compile_bpf(tmp_path / "lab.bpf.o")
    sections = subprocess.run(["llvm-objdump", "-h", str(tmp_path / "lab.bpf.o")],
                              capture_output=True, text=True, check=True).stdout
    assert "kprobe" in sections and "tracepoint" in sections and "kretprobe" in sections
    proc = subprocess.run(
        ["gcc", "-m32", "-static", "-O2", "-Wall", "-Wextra", "-Werror", "-o",
         str(tmp_path / "lab-bpf"), str(ebpf_build.LOADER_SOURCE), *ebpf_build.LOADER_LIBS],
        capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    file_out = subprocess.run(["file", str(tmp_path / "lab-bpf")], capture_output=True,
                              text=True).stdout
    assert "32-bit" in file_out and "statically linked" in file_out


def test_the_default_probe_set_fits_the_slots() -> None:
    probes = load_probe_set()
    addrs = {p.symbol: ["c1000000"] for p in probes if p.kind == "kprobe"}
    slots = plan_slots(probes, addrs, {"tlb:tlb_flush": 8}, {})
    assert len(slots.names) == len(probes) + 5


def test_study_and_trace_accept_the_ebpf_backend(data_dir: Path) -> None:
    from lab.study import load_plan
    from lab.trace import choose_backend

    plan = load_plan(data_dir / "study-ci.toml", "ebpf")
    assert plan.matrix.backend == "ebpf"
    assert choose_backend("ebpf", lambda: "no guest here") == "ebpf"  # never falls back


def test_backends_without_options_refuse_them() -> None:
    from contextlib import nullcontext

    from lab.config import load_config
    from lab.errors import UsageError
    from lab.tracers import SessionContext, get_backend

    ctx = SessionContext(config=load_config("highpte"), timing="icount",
                         boot_guest=lambda *a: nullcontext(), set_meta=lambda m: None,
                         options={"stack": "pgd_alloc"})
    for name in ("ftrace", "sim"):
        with pytest.raises(UsageError, match="use --backend ebpf"):
            with get_backend(name).open(ctx):
                pass


def test_a_missing_package_fails_the_trace_before_any_run_exists(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from lab.cli import app

    monkeypatch.setattr(ebpf_build, "_NEEDED", (("/nonexistent/libelf.a", "libelf-dev:i386"),))
    res = CliRunner().invoke(app, ["trace", "--backend", "ebpf", "--config", "highpte",
                                   "--repeat", "1"])
    assert res.exit_code == 1
    assert "the ebpf backend needs libelf-dev:i386: run ./setup.sh" in res.output
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").iterdir())
