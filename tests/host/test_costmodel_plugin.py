"""The cost-model TCG plugin, compiled here: the lab's build into the content-keyed cache, its
exports, and its counting fed by a stand-in for QEMU's plugin API
(tests/host/data/costmodel_harness.c, which includes the plugin's source), so the decoding,
the window logic, the TLB model and the version check are tested without QEMU."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from lab import costmodel
from lab.errors import LabError, MissingPackageError

HARNESS = Path(__file__).with_name("data") / "costmodel_harness.c"


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "ukva-lab"


def test_build_goes_to_the_content_keyed_cache(cache: Path) -> None:
    so = costmodel.ensure_plugin()
    key = costmodel.plugin_key()
    assert so == cache / "costmodel" / f"costmodel-{key[:16]}.so" and so.is_file()
    syms = subprocess.run(["nm", "-D", "--defined-only", str(so)], capture_output=True,
                          text=True, check=True).stdout.split()
    assert "qemu_plugin_install" in syms and "qemu_plugin_version" in syms
    exported = [s for s in syms if s.startswith("qemu_") or s.startswith("on_")]
    assert sorted(exported) == ["qemu_plugin_install", "qemu_plugin_version"], exported
    undefined = subprocess.run(["nm", "-D", "--undefined-only", str(so)], capture_output=True,
                               text=True, check=True).stdout
    wanted = {line.split()[-1] for line in undefined.splitlines() if "qemu_plugin" in line}
    header = costmodel.PLUGIN_SOURCES[1].read_text()
    assert wanted and all(f"{w}(" in header for w in wanted), "declared in our own header"
    qemu = shutil.which("qemu-system-x86_64")
    if qemu:  # every call the plugin makes is exported by the installed QEMU
        have = subprocess.run(["nm", "-D", "--defined-only", qemu], capture_output=True,
                              text=True, check=True).stdout.split()
        assert wanted <= set(have), wanted - set(have)
    mtime = so.stat().st_mtime_ns
    assert costmodel.ensure_plugin() == so and so.stat().st_mtime_ns == mtime, "rebuilt"


def test_key_follows_the_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = costmodel.plugin_key()
    copies = []
    for src in costmodel.PLUGIN_SOURCES:
        dst = tmp_path / src.name
        shutil.copy(src, dst)
        copies.append(dst)
    monkeypatch.setattr(costmodel, "PLUGIN_SOURCES", tuple(copies))
    assert costmodel.plugin_key() == before, "the key is content, not path"
    copies[1].write_text(copies[1].read_text() + "\n/* changed */\n")
    assert costmodel.plugin_key() != before


def test_missing_compiler_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(costmodel.shutil, "which", lambda _name: None)
    with pytest.raises(MissingPackageError, match="gcc"):
        costmodel.ensure_plugin()


def test_qemu_without_plugin_support_is_one_line(tmp_path: Path) -> None:
    for name, helptext in (("qemu-noplug", "-icount\n-kernel bzImage\n"),
                           ("qemu-plug", "-plugin [file=]<file>[,<argname>=<argvalue>]\n")):
        fake = tmp_path / name
        fake.write_text(f"#!/bin/sh\nprintf '%s' '{helptext}'\n")
        fake.chmod(0o755)
    costmodel.require_plugin_support.cache_clear()
    with pytest.raises(LabError, match="no TCG plugin support") as e:
        costmodel.require_plugin_support(str(tmp_path / "qemu-noplug"))
    assert "\n" not in str(e.value)
    costmodel.require_plugin_support(str(tmp_path / "qemu-plug"))
    with pytest.raises(MissingPackageError, match="qemu-system-x86"):
        costmodel.require_plugin_support(str(tmp_path / "nowhere"))
    costmodel.require_plugin_support.cache_clear()


def test_debian_qemu_has_plugin_support() -> None:
    if not shutil.which("qemu-system-x86_64"):
        pytest.fail("qemu-system-x86_64 missing: the set-up installs qemu-system-x86")
    costmodel.require_plugin_support("qemu-system-x86_64")


# ---- the plugin's counting, through the stand-in API -----------------------------------------


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("h") / "harness"
    proc = subprocess.run(
        ["gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-I", str(costmodel.PLUGIN_SOURCES[0].parent),
         "-o", str(out), str(HARNESS)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return out


def _run(harness: Path, tmp_path: Path, scenario: str, *args: str,
         version: tuple[int, int] = (1, 1)) -> tuple[int, str, list[dict]]:  # type: ignore[type-arg]
    out = tmp_path / f"{scenario}-{len(list(tmp_path.iterdir()))}.jsonl"  # a fresh file
    res = subprocess.run([str(harness), str(version[0]), str(version[1]), scenario,
                          f"out={out}", *args], capture_output=True, text=True, check=True)
    code = int(res.stdout.split()[1])
    recs = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    return code, res.stderr, recs


@pytest.mark.parametrize("version, ok", [((1, 1), True), ((0, 1), True), ((1, 3), True),
                                         ((2, 2), False), ((0, 0), False)])
def test_install_checks_the_api_version(harness: Path, tmp_path: Path,
                                        version: tuple[int, int], ok: bool) -> None:
    code, err, recs = _run(harness, tmp_path, "none", version=version)
    if ok:
        assert code == 0 and recs[0]["event"] == "install" and recs[0]["api"] == list(version)
    else:
        assert code != 0 and not recs
        assert "incompatible QEMU" in err and "API 1" in err and err.count("\n") <= 2


@pytest.mark.parametrize("arg, needle", [("bogus=1", "unknown argument"),
                                         ("pti=maybe", "bad value"),
                                         ("stlb=10:3", "bad TLB geometry"),
                                         ("dtlb=0:0", "need entries"),
                                         ("invlpg_lo=0xzz", "bad value")])
def test_install_refuses_bad_arguments(harness: Path, tmp_path: Path, arg: str,
                                       needle: str) -> None:
    code, err, _ = _run(harness, tmp_path, "none", arg)
    assert code != 0 and needle in err


def test_decoding_and_rep_counting(harness: Path, tmp_path: Path) -> None:
    code, _, recs = _run(harness, tmp_path, "decode", "model=skylake")
    assert code == 0
    install, first, w = recs
    assert first["event"] == "window" and first["seq"] == 1 and w["seq"] == 2
    assert w["model"] == "skylake" and w["pti"] is True and not w["partial"]
    # invlpg (%eax) and invlpg 8(%ebp) count; rdtscp (0f 01 /7, mod 3) does not
    assert w["invlpg"] == 2
    assert w["cr3_writes"] == 1 and w["cr4_writes"] == 1  # mov to cr0 is neither
    # user: a look-alike nopl, a 4 KiB rep stosl (1,025 executions), the end marker
    assert w["exec_user"] == 1027 and w["insn_user"] == 3
    assert (w["rep_exec_user"], w["rep_iters_user"], w["rep_bytes_user"],
            w["rep_insns_user"]) == (1025, 1024, 4096, 1)
    # kernel: 7 plain instructions, rep movsw x3 (2 bytes each), repe cmpsb x2 (2 loads each)
    assert w["insn_kernel"] == 9 and w["rep_insns_kernel"] == 2
    assert w["rep_iters_kernel"] == 5 and w["rep_bytes_kernel"] == 3 * 2 + 2 * 1
    assert w["loads"] == 3 + 4 and w["stores"] == 1024 + 3
    assert w["dtlb_access_user"] == 1024 and w["dtlb_l1_miss_user"] == 1
    # the kernel's direct map is keyed by 2 MiB page: both addresses are one entry
    assert w["dtlb_l1_miss_kernel"] == 1


def _tlb_windows(harness: Path, tmp_path: Path, *args: str) -> list[dict]:  # type: ignore[type-arg]
    code, _, recs = _run(harness, tmp_path, "tlb", *args)
    assert code == 0
    return [r for r in recs if r.get("event") == "window"][1:]


def test_tlb_reach_and_lru(harness: Path, tmp_path: Path) -> None:
    reach, _, _ = _tlb_windows(harness, tmp_path)
    # 100 pages twice: > 64-entry L1 (every access misses), < 1536-entry STLB (walks once)
    # 8 more pages twice: the second pass hits
    assert reach["dtlb_access_user"] == 216
    assert reach["dtlb_l1_miss_user"] == 100 + 100 + 8
    assert reach["dtlb_walk_user"] == 100 + 8
    # without a second level every first-level miss is a walk
    reach, _, _ = _tlb_windows(harness, tmp_path, "stlb=0:0")
    assert reach["dtlb_walk_user"] == reach["dtlb_l1_miss_user"] == 208
    # a fully associative 128-entry L1 holds all 108 pages: only the first pass misses
    reach, _, _ = _tlb_windows(harness, tmp_path, "dtlb=128:64")
    assert reach["dtlb_l1_miss_user"] == 108


def test_invlpg_drops_the_kmap_window_only(harness: Path, tmp_path: Path) -> None:
    _, inv, _ = _tlb_windows(harness, tmp_path)
    assert inv["invlpg"] == 1
    # kmap page: miss, hit, invalidated, miss (L1 and second level); direct map: one miss
    assert inv["dtlb_l1_miss_kernel"] == 3 and inv["dtlb_walk_kernel"] == 3
    # with the window moved below the direct map, INVLPG drops 4 KiB entries only: same
    _, inv, _ = _tlb_windows(harness, tmp_path, "invlpg_lo=0xc0000000")
    assert inv["dtlb_walk_kernel"] == 3
    # with the window above the kmap page nothing is dropped
    _, inv, _ = _tlb_windows(harness, tmp_path, "invlpg_lo=0xfff00000")
    assert inv["dtlb_walk_kernel"] == 2


def test_cr3_write_keeps_global_kernel_entries_only_without_pti(harness: Path,
                                                               tmp_path: Path) -> None:
    _, _, cr3 = _tlb_windows(harness, tmp_path, "pti=on")
    assert cr3["cr3_writes"] == 1
    assert cr3["dtlb_walk_user"] == 2 and cr3["dtlb_walk_kernel"] == 2
    _, _, cr3 = _tlb_windows(harness, tmp_path, "pti=off")
    assert cr3["dtlb_walk_user"] == 2 and cr3["dtlb_walk_kernel"] == 1


def test_the_plugin_builds_against_a_system_header_too(tmp_path: Path) -> None:
    """docs/cost-model.md: -DCOSTMODEL_SYSTEM_HEADER -I <qemu>/include/qemu uses QEMU's own
    qemu-plugin.h; here our header stands in for it under that name."""
    inc = tmp_path / "inc"
    inc.mkdir()
    shutil.copy(costmodel.PLUGIN_SOURCES[1], inc / "qemu-plugin.h")
    src = tmp_path / "costmodel.c"
    shutil.copy(costmodel.PLUGIN_SOURCES[0], src)  # its own header is not beside it here
    proc = subprocess.run(["gcc", *costmodel.CFLAGS, "-DCOSTMODEL_SYSTEM_HEADER", "-I", str(inc),
                           "-o", str(tmp_path / "x.so"), str(src)], capture_output=True,
                          text=True, env={**os.environ, "LC_ALL": "C"})
    assert proc.returncode == 0, proc.stderr


def test_itlb_per_block_and_page(harness: Path, tmp_path: Path) -> None:
    """One ITLB lookup per executed block, for its first and (if another page) its last
    byte's page; the kernel's direct map is one 2 MiB entry."""
    code, _, recs = _run(harness, tmp_path, "itlb")
    assert code == 0
    w = recs[-1]
    assert w["itlb_access"] == 4                       # four block executions
    assert w["itlb_l1_miss_user"] == 2 and w["itlb_walk_user"] == 2   # two pages, once
    assert w["itlb_l1_miss_kernel"] == 1 and w["itlb_walk_kernel"] == 1
    assert w["exec_user"] == 2 * 2 + 1 and w["exec_kernel"] == 2      # + the end marker


# ---- every model's geometry in one run ---------------------------------------------------------

P4_GEO = "p4-2003/128:4/0:0/64:64/0:0/0:0"
TINY_GEO = "tiny/8:2/2:2/8:2/2:2/32:4"   # small enough for every array to thrash


def test_geometries_beside_the_run_time_one(harness: Path, tmp_path: Path) -> None:
    """geo= adds a geometry; the run-time one's counts stay where they were, the others' are
    under geometries[NAME] with the same keys; INVLPG drops the same window in each."""
    plain = _tlb_windows(harness, tmp_path)
    code, _, recs = _run(harness, tmp_path, "tlb", "model=skylake", f"geo={P4_GEO}",
                         f"geo={TINY_GEO}")
    assert code == 0
    install = recs[0]
    assert install["geometries"] == {
        "p4-2003": {"itlb": [128, 4], "dtlb": [64, 64], "itlb2m": [0, 0], "dtlb2m": [0, 0],
                    "stlb": [0, 0]},
        "tiny": {"itlb": [8, 2], "dtlb": [8, 2], "itlb2m": [2, 2], "dtlb2m": [2, 2],
                 "stlb": [32, 4]}}
    reach, inv, cr3 = [r for r in recs if r.get("event") == "window"][1:]
    for mine, before in zip((reach, inv, cr3), plain, strict=True):
        assert {k: v for k, v in mine.items() if k not in ("geometries", "model")} == \
            {k: v for k, v in before.items() if k != "model"}, "the run-time counts moved"
        assert set(mine["geometries"]) == {"p4-2003", "tiny"}
        for counts in mine["geometries"].values():
            assert set(counts) == set(costmodel.TLB_COUNT_KEYS)
    # 108 pages, 100 of them round-robin twice: the P4's 64-entry LRU DTLB misses each one,
    # and without a second level each miss walks
    p4 = reach["geometries"]["p4-2003"]
    assert p4["dtlb_l1_miss_user"] == p4["dtlb_walk_user"] == 208
    # INVLPG: the kmap page walks again in every geometry, the direct-map page does not
    for counts in (inv, *inv["geometries"].values()):
        assert counts["dtlb_l1_miss_kernel"] == counts["dtlb_walk_kernel"] == 3
        assert counts["dtlb_l1_miss_kmap"] == counts["dtlb_walk_kmap"] == 2
    assert cr3["geometries"]["p4-2003"]["dtlb_walk_user"] == 2
    # the kmap counter follows the window INVLPG drops
    _, inv, _ = _tlb_windows(harness, tmp_path, "invlpg_lo=0xfff00000", f"geo={P4_GEO}")
    assert inv["dtlb_walk_kmap"] == inv["geometries"]["p4-2003"]["dtlb_walk_kmap"] == 0


@pytest.mark.parametrize("arg, needle", [
    ("geo=p4", "bad value"),
    ("geo=/128:4/0:0/64:64/0:0/0:0", "bad value"),
    ("geo=p4/128:4/0:0/64:64/0:0", "bad value"),
    ("geo=p4/128:4/0:0/64:64/0:0/0:0/1:1", "bad value"),
    ("geo=p4/128:4/0:0/64:64/0:0/x", "bad value"),
    ('geo=p"4/128:4/0:0/64:64/0:0/0:0', "bad value"),
    ("geo=p4/128:3/0:0/64:64/0:0/0:0", "bad TLB geometry in geo="),
    ("geo=p4/128:4/0:0/0:0/0:0/0:0", "need entries"),
    ('model=a"b', "bad value"),
])
def test_install_refuses_bad_geometries(harness: Path, tmp_path: Path, arg: str,
                                        needle: str) -> None:
    code, err, recs = _run(harness, tmp_path, "none", arg)
    assert code != 0 and needle in err and not recs


def test_install_refuses_duplicate_and_too_many_geometries(harness: Path, tmp_path: Path) -> None:
    code, err, _ = _run(harness, tmp_path, "none", "model=p4-2003", f"geo={P4_GEO}")
    assert code != 0 and "two geometries with one name: p4-2003" in err
    many = [f"geo=g{i}/8:2/0:0/8:2/0:0/0:0" for i in range(8)]
    assert _run(harness, tmp_path, "none", *many[:7])[0] == 0
    code, err, _ = _run(harness, tmp_path, "none", *many)
    assert code != 0 and "bad value: geo=g7" in err


class _RefTlb:
    """A plain LRU set-associative TLB, each set a most-recent-first list of (key, global)."""

    def __init__(self, entries: int, ways: int) -> None:
        self.ways = ways
        self.sets: list[list[tuple[int, bool]]] = [[] for _ in range(entries // ways)] \
            if entries else []

    def access(self, key: int, glob: bool) -> bool:
        s = self.sets[(key >> 2) % len(self.sets)]
        for i, (k, _) in enumerate(s):
            if k == key:
                s.insert(0, s.pop(i))
                return True
        if len(s) == self.ways:
            s.pop()
        s.insert(0, (key, glob))
        return False

    def flush(self, keep_global: bool) -> None:
        for s in self.sets:
            s[:] = [e for e in s if keep_global and e[1]]

    def flush_range(self, lo: int) -> None:
        for s in self.sets:
            s[:] = [e for e in s if not (not e[0] & 2 and e[0] >> 2 >= lo >> 12)]


def _reference(trace: list[str], geometry: dict[str, tuple[int, int]],
               pti: bool) -> dict[str, int]:
    """The counts of one geometry for the harness's "mix" trace, simulated without the
    plugin's shortcuts."""
    t = {k: _RefTlb(*v) for k, v in geometry.items()}
    n = dict.fromkeys(costmodel.TLB_COUNT_KEYS, 0)

    def translate(addr: int, side: str) -> None:
        kernel = addr >= 0xC0000000
        large = kernel and 0xC0000000 <= addr < 0xF8000000
        kmap = side == "dtlb" and not large and addr >= 0xFF000000
        key = ((addr >> 21 if large else addr >> 12) << 2) | (int(large) << 1) | 1
        big = t[f"{side}2m"]
        l1 = big if large and big.sets else t[side]
        if l1.access(key, kernel and not pti):
            return
        mode = "kernel" if kernel else "user"
        n[f"{side}_l1_miss_{mode}"] += 1
        n["dtlb_l1_miss_kmap"] += kmap
        if t["stlb"].sets and t["stlb"].access(key, kernel and not pti):
            return
        n[f"{side}_walk_{mode}"] += 1
        n["dtlb_walk_kmap"] += kmap

    for line in trace:
        op, *args = line.split()
        if op == "D":
            translate(int(args[0]), "dtlb")
        elif op == "I":
            first, last = int(args[0]), int(args[1])
            translate(first, "itlb")
            if last >> 12 != first >> 12:
                translate(last, "itlb")
        elif op == "V":
            for x in t.values():
                x.flush_range(0xFF000000)
        else:
            for x in t.values():
                x.flush(keep_global=op == "C")
    return n


@pytest.mark.parametrize("pti", ["on", "off"])
def test_every_geometry_matches_a_reference_lru_model(harness: Path, tmp_path: Path,
                                                      pti: str) -> None:
    """40,000 pseudo-random lookups (a quarter of them repeating the last page), INVLPGs, CR3
    and CR4 writes: each geometry's counts equal those of a plain LRU simulation."""
    out = tmp_path / "mix.jsonl"
    res = subprocess.run([str(harness), "1", "1", "mix", f"out={out}", f"pti={pti}",
                          f"geo={P4_GEO}", f"geo={TINY_GEO}"], capture_output=True, text=True,
                         check=True)
    trace = res.stdout.splitlines()[1:]
    w = [json.loads(line) for line in out.read_text().splitlines()][-1]
    sky = {"itlb": (128, 8), "itlb2m": (8, 8), "dtlb": (64, 4), "dtlb2m": (32, 4),
           "stlb": (1536, 12)}
    p4 = {"itlb": (128, 4), "itlb2m": (0, 0), "dtlb": (64, 64), "dtlb2m": (0, 0), "stlb": (0, 0)}
    tiny = {"itlb": (8, 2), "itlb2m": (2, 2), "dtlb": (8, 2), "dtlb2m": (2, 2), "stlb": (32, 4)}
    got = {"skylake": {k: w[k] for k in costmodel.TLB_COUNT_KEYS}, **w["geometries"]}
    for name, geometry in (("skylake", sky), ("p4-2003", p4), ("tiny", tiny)):
        assert got[name] == _reference(trace, geometry, pti == "on"), name
    assert got["tiny"]["dtlb_walk_kmap"] > 100 and got["p4-2003"]["itlb_walk_kernel"] > 100
