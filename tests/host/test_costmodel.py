"""Cost model (issue 12) on the host: models as data, the pricing arithmetic, the QEMU argv,
the KVM refusal and the window records. No QEMU boots here."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from lab import costmodel
from lab.clocks import cycles_per_unit
from lab.costmodel import (
    COST_KEYS,
    list_models,
    load_model,
    modelled_cycles,
    new_window,
    plugin_option,
    pti_enabled,
    read_windows,
    record_counts,
)
from lab.errors import LabError, UsageError
from lab.guest.qemu import BootSpec, build_qemu_argv

SPEC = BootSpec(
    qemu="qemu-system-x86_64", kernel=Path("/c/bzImage"), initrd=Path("/c/initrd.gz"),
    cmdline="console=ttyS0,115200 panic=-1", mem_mib=8192, cpus=2, cpu_model="Nehalem",
    machine="pc", accel="tcg", icount=True, console_log=Path("/s/console.log"),
    agent_socket=Path("/s/agent.sock"), qmp_socket=Path("/s/qmp.sock"),
)

# ---- models ----------------------------------------------------------------------------------


def test_shipped_models_load_and_cite_a_source_for_every_cost() -> None:
    assert {"skylake", "p4-2003"} <= set(list_models())
    for name in ("skylake", "p4-2003"):
        m = load_model(name)
        assert set(m.costs) == set(COST_KEYS)
        for key in (*COST_KEYS, "tlb"):
            assert len(m.sources[key]["source"]) > 20, f"{name}.{key} cites nothing"
            assert m.sources[key]["basis"] in ("vendor", "measured", "estimate"), (name, key)
        assert m.tlb["itlb"][0] > 0 and m.tlb["dtlb"][0] > 0
    sky, p4 = load_model("skylake"), load_model("p4-2003")
    assert sky.tlb["stlb"] == (1536, 12) and p4.tlb["stlb"] == (0, 0)
    assert p4.costs["cr3_write"] > sky.costs["cr3_write"]  # a NetBurst pipeline flush


def test_unknown_model_names_the_known_ones() -> None:
    with pytest.raises(UsageError, match="skylake"):
        load_model("pentium-pro")
    with pytest.raises(UsageError):
        load_model("../models/skylake")


def _write_model(tmp_path: Path, text: str) -> Path:
    src = (costmodel.MODELS_DIR / "skylake.toml").read_text()
    path = tmp_path / "m.toml"
    path.write_text(src.replace('name = "skylake"', 'name = "m"') + text)
    return path


@pytest.mark.parametrize("edit, needle", [
    (lambda s: s.replace("stlb = [1536, 12]", "stlb = [1536, 10]"), "set-associative"),
    (lambda s: s.replace("dtlb = [64, 4] ", "dtlb = [0, 0] "), "needs entries"),
    (lambda s: s.replace("[cost.walk]\nvalue = 30.0", "[cost.walk]\nvalue = -1.0"), "range"),
    (lambda s: s.replace("value = 16.0", "value = 0.0"), "range"),
    (lambda s: s + "\n[cost.l3_miss]\nvalue = 1\nsource = 'x'\n", "unknown costs"),
    (lambda s: s.replace('name = "m"', 'name = "other"'), "file name"),
])
def test_bad_models_are_refused(tmp_path: Path, edit, needle: str) -> None:  # type: ignore[no-untyped-def]
    src = (costmodel.MODELS_DIR / "skylake.toml").read_text().replace('name = "skylake"',
                                                                      'name = "m"')
    (tmp_path / "m.toml").write_text(edit(src))
    with pytest.raises(UsageError, match=needle):
        load_model("m", tmp_path)


def test_a_cost_without_source_is_refused(tmp_path: Path) -> None:
    src = (costmodel.MODELS_DIR / "skylake.toml").read_text().replace('name = "skylake"',
                                                                      'name = "m"')
    lines = src.splitlines()
    i = lines.index("[cost.invlpg]")
    j = next(k for k in range(i, len(lines)) if lines[k].startswith("source"))
    (tmp_path / "m.toml").write_text("\n".join(lines[:j] + lines[j + 1:]))
    with pytest.raises(UsageError, match="invlpg cites no source"):
        load_model("m", tmp_path)


# ---- the arithmetic --------------------------------------------------------------------------


def test_a_4k_rep_stosl_costs_the_rep_rate_not_1024_instructions() -> None:
    """What the plugin records for one 4 KiB `rep stosl` (1 instruction, 1,024 iterations,
    4,096 bytes; icount charges 1,025 executions) is priced at the model's rep rate."""
    counts = {"exec_user": 1025, "insn_user": 1, "rep_exec_user": 1025, "rep_iters_user": 1024,
              "rep_bytes_user": 4096, "rep_insns_user": 1, "stores": 1024}
    for name in ("skylake", "p4-2003"):
        m = load_model(name)
        cyc = modelled_cycles(m, counts)
        want_rep = m.costs["rep_startup"] + 4096 / m.costs["rep_bytes_per_cycle"]
        assert cyc["rep"] == pytest.approx(want_rep)
        assert cyc["insn"] == pytest.approx(m.costs["insn"])
        assert cyc["total"] == pytest.approx(want_rep + m.costs["insn"] + 1024 * m.costs["store"])
        # the 1,025 executions icount charges are not priced as instructions
        assert modelled_cycles(m, {**counts, "exec_user": 1})["total"] == cyc["total"]
    sky = load_model("skylake")
    assert modelled_cycles(sky, counts)["total"] == pytest.approx(35 + 256 + 1)


def test_every_counted_event_is_priced() -> None:
    m = load_model("skylake")
    base = modelled_cycles(m, {})
    assert base["total"] == 0
    one = {"insn_kernel": 10, "invlpg": 2, "cr3_writes": 3, "cr4_writes": 1,
           "dtlb_l1_miss_kernel": 5, "dtlb_walk_kernel": 2, "itlb_l1_miss_user": 1,
           "itlb_walk_user": 1}
    cyc = modelled_cycles(m, one)
    assert cyc["insn"] == 10 * m.costs["insn"]
    assert cyc["invlpg"] == 2 * m.costs["invlpg"]
    assert cyc["cr3"] == 3 * m.costs["cr3_write"] and cyc["cr4"] == m.costs["cr4_write"]
    # 6 first-level misses, 3 of them walks: 3 second-level hits + 3 walks
    assert cyc["tlb"] == 3 * m.costs["stlb_hit"] + 3 * m.costs["walk"]
    assert cyc["total"] == pytest.approx(sum(v for k, v in cyc.items() if k != "total"))
    # a model without a second level: every first-level miss is a walk
    p4 = load_model("p4-2003")
    assert modelled_cycles(p4, {"dtlb_l1_miss_user": 4, "dtlb_walk_user": 4})["tlb"] == \
        4 * p4.costs["walk"]


def test_cycles_per_unit_uses_raw_counts_and_needs_them_in_every_record() -> None:
    m = load_model("skylake")
    rec = {"config": "highpte", "workload": "faultstorm", "params": {"mib": 1}, "units": 10,
           "guest_elapsed_ns": 5000,
           "costmodel": {"model": "skylake", "counts": {"insn_user": 100, "invlpg": 20,
                                                        "dtlb_walk_user": 30,
                                                        "dtlb_l1_miss_user": 30}}}
    plain = {"config": "lowpte", "workload": "faultstorm", "params": {"mib": 1}, "units": 10}
    cycles = cycles_per_unit(m)
    assert cycles([plain]) is None and cycles([rec, plain]) is None
    assert cycles([rec]).tolist() == [pytest.approx((100 + 20 * 250 + 30 * 30) / 10)]
    counts = record_counts(m, rec)
    assert counts is not None and counts["invlpg"] / rec["units"] == 2.0
    assert counts["dtlb_walk_user"] / rec["units"] == 3.0


def _tlb(walk: int, miss: int, kmap: int = 0) -> dict[str, int]:
    return {"dtlb_walk_user": walk, "dtlb_l1_miss_user": miss, "dtlb_walk_kmap": kmap,
            "dtlb_l1_miss_kmap": kmap}


def _geo_record(geometries: bool) -> dict:  # type: ignore[type-arg]
    counts = {"model": "skylake", "insn_user": 100, "invlpg": 2, **_tlb(10, 40, 3)}
    if geometries:
        counts["geometries"] = {"p4-2003": _tlb(40, 40, 5), "other": _tlb(1, 1)}
    return {"config": "highpte", "workload": "w", "params": {}, "units": 10,
            "costmodel": {"model": "skylake", "counts": counts}}


def test_record_counts_takes_each_models_own_tlb_geometry() -> None:
    sky, p4 = load_model("skylake"), load_model("p4-2003")
    rec = _geo_record(geometries=True)
    mine = record_counts(sky, rec)
    assert mine is not None and mine["tlb_geometry"] == "skylake"
    assert mine["dtlb_walk_user"] == 10 and mine["dtlb_walk_kmap"] == 3
    assert "geometries" not in mine
    theirs = record_counts(p4, rec)
    assert theirs is not None and theirs["tlb_geometry"] == "p4-2003"
    assert theirs["dtlb_walk_user"] == theirs["dtlb_l1_miss_user"] == 40
    assert theirs["dtlb_walk_kmap"] == 5
    assert theirs["insn_user"] == 100 and theirs["invlpg"] == 2   # not geometry: shared
    # keys the other geometry lacks are not taken from the run-time one
    assert "itlb_walk_user" not in theirs
    assert rec["costmodel"]["counts"]["dtlb_walk_user"] == 10, "the record is not changed"
    # pricing and per-unit figures follow
    assert modelled_cycles(p4, theirs)["tlb"] == 40 * p4.costs["walk"]
    assert cycles_per_unit(p4)([rec]).tolist() == [modelled_cycles(p4, theirs)["total"] / 10]
    assert theirs["dtlb_walk_user"] / rec["units"] == 4.0
    assert theirs["dtlb_walk_kmap"] / rec["units"] == 0.5
    assert mine["dtlb_walk_user"] / rec["units"] == 1.0


def test_record_counts_of_an_older_run_keep_the_run_time_geometry() -> None:
    """A record without per-geometry counts (traced before they existed) prices any model
    with the run-time geometry's TLB counts, and says so."""
    p4 = load_model("p4-2003")
    rec = _geo_record(geometries=False)
    counts = record_counts(p4, rec)
    assert counts is not None and counts["tlb_geometry"] == "skylake"
    assert counts["dtlb_walk_user"] == 10 and counts["dtlb_l1_miss_user"] == 40
    assert record_counts(p4, {**rec, "units": 0}) is None
    assert record_counts(p4, {"config": "x", "units": 3}) is None


# ---- boot plumbing ---------------------------------------------------------------------------


def test_pti_follows_the_command_line() -> None:
    assert pti_enabled("console=ttyS0 panic=-1")
    assert not pti_enabled("console=ttyS0 nopti")
    assert not pti_enabled("pti=off")
    assert not pti_enabled("mitigations=off quiet")
    assert pti_enabled("nopti=1x")  # not the nopti switch


def test_plugin_option_carries_geometry_window_and_pti(tmp_path: Path) -> None:
    m = load_model("p4-2003")
    opt = plugin_option(Path("/c/cm.so"), tmp_path / "w.jsonl", m, "console=ttyS0 nopti")
    parts = dict(p.split("=", 1) for p in opt.split(","))
    assert parts["file"] == "/c/cm.so" and parts["out"] == str(tmp_path / "w.jsonl")
    assert parts["pti"] == "off" and parts["model"] == "p4-2003"
    assert parts["dtlb"] == "64:64" and parts["stlb"] == "0:0"
    assert parts["invlpg_lo"] == "0xff600000" and parts["large_hi"] == "0xf8000000"
    with pytest.raises(UsageError, match="comma"):
        plugin_option(Path("/c/a,b.so"), tmp_path / "w", m, "")


def test_plugin_option_passes_every_other_models_geometry(tmp_path: Path) -> None:
    """The run-time model's geometry as itlb=..., every other model's as one geo= each
    (NAME/ITLB/ITLB2M/DTLB/DTLB2M/STLB, E:W each), so one run serves every model."""
    sky = load_model("skylake")
    opt = plugin_option(Path("/c/cm.so"), tmp_path / "w.jsonl", sky, "console=ttyS0")
    pairs = [p.split("=", 1) for p in opt.split(",")]
    geos = [v for k, v in pairs if k == "geo"]
    assert len(geos) == len(list_models()) - 1
    assert "p4-2003/128:4/0:0/64:64/0:0/0:0" in geos
    assert not any(g.startswith("skylake/") for g in geos)
    assert dict(pairs)["dtlb"] == "64:4" and dict(pairs)["stlb"] == "1536:12"
    # the other way round; and an explicit list (none: the run-time geometry alone)
    p4 = load_model("p4-2003")
    opt = plugin_option(Path("/c/cm.so"), tmp_path / "w.jsonl", p4, "")
    assert "geo=skylake/128:8/8:8/64:4/32:4/1536:12" in opt.split(",")
    assert "geo=" not in plugin_option(Path("/c/cm.so"), tmp_path / "w", p4, "", others=[])
    assert p4.geometry_arg() == "p4-2003/128:4/0:0/64:64/0:0/0:0"


def test_a_model_name_must_suit_the_plugin(tmp_path: Path) -> None:
    src = (costmodel.MODELS_DIR / "p4-2003.toml").read_text()
    (tmp_path / "a b.toml").write_text(src.replace('name = "p4-2003"', 'name = "a b"'))
    with pytest.raises(UsageError, match="63 of"):
        load_model("a b", tmp_path)


def test_argv_loads_the_plugin_only_with_icount() -> None:
    argv = build_qemu_argv(replace(SPEC, plugin="file=/c/cm.so,out=/s/w"))
    i = argv.index("-plugin")
    assert argv[i + 1] == "file=/c/cm.so,out=/s/w"
    assert argv[argv.index("-icount") + 1] == "shift=0,sleep=off"
    assert argv[argv.index("-smp") + 1] == "1"
    assert "-plugin" not in build_qemu_argv(SPEC)
    with pytest.raises(UsageError, match="icount"):
        build_qemu_argv(replace(SPEC, icount=False, plugin="file=/c/cm.so"))


def _lab(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    import os

    env = {**os.environ, "UKVA_LAB_STATE": str(tmp_path / "state"),
           "UKVA_LAB_RESULTS": str(tmp_path / "results")}
    return subprocess.run([sys.executable, "-m", "lab", *args], capture_output=True, text=True,
                          env=env, timeout=120)


@pytest.mark.parametrize("args, needle", [
    (["up", "--icount", "--accel", "kvm", "--dry-run"], "--icount needs TCG"),
    (["up", "--cost-model", "skylake", "--accel", "kvm", "--dry-run"], "--cost-model needs TCG"),
    (["up", "--cost-model", "k6", "--dry-run"], "unknown cost model 'k6'"),
    (["trace", "--cost-model", "k6", "--backend", "sim"], "unknown cost model 'k6'"),
    (["trace", "--cost-model", "skylake", "--backend", "sim"], "needs the ftrace backend"),
    (["show", "latest", "--cost-model", "k6"], "unknown cost model"),
])
def test_usage_errors_exit_2(tmp_path: Path, args: list[str], needle: str) -> None:
    res = _lab(*args, tmp_path=tmp_path)
    assert res.returncode == 2, res.stderr
    assert needle in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr


def test_dry_run_shows_the_plugin_and_icount(tmp_path: Path) -> None:
    res = _lab("up", "--cost-model", "skylake", "--dry-run", tmp_path=tmp_path)
    assert res.returncode == 0, res.stderr
    line = res.stdout.strip().splitlines()[-1]
    assert "-icount shift=0,sleep=off" in line and "-smp 1" in line
    assert "-plugin file=" in line and "model=skylake" in line and "pti=on" in line
    assert str(tmp_path / "state") in line  # the window file lives with the instance


def test_cost_model_list(tmp_path: Path) -> None:
    res = _lab("cost-model", "list", "--json", tmp_path=tmp_path)
    assert res.returncode == 0, res.stderr
    models = {m["name"]: m for m in json.loads(res.stdout)}
    assert set(models) >= {"skylake", "p4-2003"}
    assert all(models["skylake"]["sources"][k]["source"] for k in COST_KEYS)
    text = _lab("cost-model", "list", tmp_path=tmp_path).stdout
    assert "Molnar" in text and "skylake" in text


def test_study_plan_cost_model(tmp_path: Path) -> None:
    from lab.study import load_plan

    plan = tmp_path / "p.toml"
    body = 'configs = ["highpte"]\n[[cell]]\nworkload = "tlbtouch"\n'
    plan.write_text('cost_model = "skylake"\n' + body)
    p = load_plan(plan)
    assert p.matrix.boot.cost_model == "skylake" and p.matrix.boot.icount
    plan.write_text('cost_model = "skylake"\ntiming = "realtime"\n' + body)
    with pytest.raises(UsageError, match="icount"):
        load_plan(plan)
    plan.write_text('cost_model = "nope"\n' + body)
    with pytest.raises(UsageError, match="unknown cost model"):
        load_plan(plan)


# ---- the window records ----------------------------------------------------------------------


def test_windows_are_read_after_a_torn_line_and_one_new_one_is_taken(tmp_path: Path) -> None:
    path = tmp_path / "w.jsonl"
    install = {"event": "install", "api": [1, 1]}
    w1 = {"event": "window", "seq": 1, "partial": True, "invlpg": 1}
    w2 = {"event": "window", "seq": 2, "partial": False, "invlpg": 7}
    path.write_text("\n".join(json.dumps(x) for x in (install, w1)) + "\n{\"event\":\"wi")
    assert read_windows(path) == [w1]
    with pytest.raises(LabError, match="partial"):
        new_window(path, 0)
    path.write_text("\n".join(json.dumps(x) for x in (install, w1, w2)) + "\n")
    got = new_window(path, 1)
    assert got["invlpg"] == 7 and "event" not in got
    with pytest.raises(LabError, match="2 windows"):
        new_window(path, 0)
    with pytest.raises(LabError, match="0 windows"):
        new_window(path, 2)
    assert read_windows(tmp_path / "missing") == []


# ---- tlbtouch, the calibration workload --------------------------------------------------------


@pytest.fixture(scope="module")
def tlbtouch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from lab.guest.image import compile_program, workload_program

    out = tmp_path_factory.mktemp("bin") / "tlbtouch"
    warnings = compile_program(workload_program("tlbtouch"), out,
                               ["-m32", "-static", "-O2", "-Wall", "-Wextra", "-Werror"])
    assert not warnings, warnings
    return out


def test_tlbtouch_spec_is_complete() -> None:
    """Its bounds live in tlbtouch.toml only (the C table is generated from it)."""
    from lab.workloads import load_workload

    spec = load_workload("tlbtouch")
    assert spec.unit == "touch" and spec.description and spec.self_check
    assert set(spec.params) == {"pages", "passes", "clears"}
    assert "PARAM_TABLE" in spec.source.read_text()


def test_tlbtouch_runs_and_checks_itself(tlbtouch: Path) -> None:
    from lab.workloads import load_workload, parse_report

    spec = load_workload("tlbtouch")
    params = spec.resolve({"pages": "100", "passes": "3", "clears": "5"})
    proc = subprocess.run([str(tlbtouch), *spec.argv(params)[1:]], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0 and proc.stderr == ""
    report = parse_report(proc.stdout)
    assert report["ops"] == 300 and report["errors"] == 0 and report["params"] == params
    for bad in (["--pages", "0"], ["--clears", "100001"], ["--passes", "x"], ["--bogus", "1"]):
        res = subprocess.run([str(tlbtouch), *bad], capture_output=True, text=True, timeout=60)
        assert res.returncode == 2 and res.stderr.startswith("tlbtouch: ")
    dis = subprocess.run(["objdump", "-d", str(tlbtouch)], capture_output=True, text=True).stdout
    assert "rep stos %eax,%es:(%edi)" in dis, "the clear must be one rep stosl"
