"""Host tests for source-built kernels: fragments, dropped options, cache keys, patch failures."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from lab.config import KernelDescription
from lab.debian import DebPackage
from lab.errors import UsageError
from lab.kernels import build_inputs as bi
from lab.kernels import source_build as sb
from lab.kernels.fragments import (
    DroppedOptionsError,
    apply_fragments,
    find_dropped,
    merge_fragments,
    parse_dotconfig,
    parse_fragment,
)

SAMPLE_CONFIG = """\
#
# Automatically generated file; DO NOT EDIT.
#
CONFIG_X86_32=y
# CONFIG_NOHIGHMEM is not set
CONFIG_HIGHMEM4G=y
# CONFIG_HIGHMEM64G is not set
CONFIG_HIGHMEM=y
# CONFIG_DEBUG_TLBFLUSH is not set
CONFIG_NR_CPUS=8
CONFIG_LOCALVERSION=""
"""


# -- fragments -------------------------------------------------------------------------------

def test_parse_fragment_reads_set_unset_and_skips_comments() -> None:
    reqs = parse_fragment(
        '# a comment\n\nCONFIG_HIGHPTE=y\n# CONFIG_SWAP is not set\nCONFIG_LOCALVERSION="-x"\n'
        "CONFIG_NR_CPUS=4\nCONFIG_PHYSICAL_START=0x1000000\n",
        "a.config",
    )
    assert [(r.symbol, r.value) for r in reqs] == [
        ("CONFIG_HIGHPTE", "y"), ("CONFIG_SWAP", "n"), ("CONFIG_LOCALVERSION", '"-x"'),
        ("CONFIG_NR_CPUS", "4"), ("CONFIG_PHYSICAL_START", "0x1000000"),
    ]
    assert reqs[0].origin == "a.config:3"


@pytest.mark.parametrize("line", ["HIGHPTE=y", "CONFIG_HIGHPTE = y", "CONFIG_X=yes", "CONFIG_S=-x"])
def test_parse_fragment_rejects_garbage_naming_file_and_line(line: str) -> None:
    with pytest.raises(UsageError, match=r"bad\.config:2"):
        parse_fragment(f"CONFIG_OK=y\n{line}\n", "bad.config")


def test_merge_later_fragment_overrides_earlier_keeping_order() -> None:
    merged = merge_fragments([
        ("a.config", "CONFIG_A=y\nCONFIG_B=y\n"),
        ("b.config", "# CONFIG_A is not set\nCONFIG_C=m\n"),
    ])
    assert list(merged) == ["CONFIG_A", "CONFIG_B", "CONFIG_C"]
    assert merged["CONFIG_A"].value == "n" and merged["CONFIG_A"].origin == "b.config:1"


def test_apply_replaces_old_lines_and_appends_requests() -> None:
    req = merge_fragments([("f.config", "CONFIG_HIGHMEM64G=y\n# CONFIG_HIGHMEM is not set\n")])
    out = apply_fragments(SAMPLE_CONFIG, req)
    assert "# CONFIG_HIGHMEM64G is not set" not in out and "CONFIG_HIGHMEM=y" not in out
    assert out.rstrip().splitlines()[-2:] == ["CONFIG_HIGHMEM64G=y", "# CONFIG_HIGHMEM is not set"]
    assert "CONFIG_HIGHMEM4G=y" in out  # the choice is settled by kconfig reading the last =y


def test_find_dropped_reports_silently_dropped_options() -> None:
    req = merge_fragments([(
        "f.config",
        "CONFIG_HIGHMEM=y\nCONFIG_DEBUG_TLBFLUSH=y\nCONFIG_GONE=y\n# CONFIG_ABSENT is not set\n"
        "CONFIG_NR_CPUS=8\nCONFIG_LOCALVERSION=\"-ukvalab\"\n",
    )])
    dropped = {d.want.symbol: d.got for d in find_dropped(req, SAMPLE_CONFIG)}
    assert dropped == {"CONFIG_DEBUG_TLBFLUSH": "n", "CONFIG_GONE": None,
                       "CONFIG_LOCALVERSION": '""'}
    msg = str(DroppedOptionsError(find_dropped(req, SAMPLE_CONFIG)))
    assert "CONFIG_DEBUG_TLBFLUSH=y (f.config:2) became not set" in msg
    assert "CONFIG_GONE=y (f.config:3) became absent" in msg


def test_parse_dotconfig() -> None:
    cfg = parse_dotconfig(SAMPLE_CONFIG)
    assert cfg["CONFIG_HIGHMEM4G"] == "y" and cfg["CONFIG_HIGHMEM64G"] == "n"
    assert cfg["CONFIG_NR_CPUS"] == "8"


def test_shipped_fragments_parse() -> None:
    from lab.paths import vm_dir

    frags = sorted((vm_dir() / "kernels").glob("*.config"))
    assert frags
    for f in frags:
        assert parse_fragment(f.read_text(), f.name) or f.name == "debian-certs.config"


# -- cache key -------------------------------------------------------------------------------

@dataclass
class FakeVm:
    root: Path
    state: dict[str, str]


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeVm:
    """A tiny vm/ tree, a fake apt index and a fixed toolchain: no apt, no gcc needed."""
    root = tmp_path / "vm"
    (root / "kernels").mkdir(parents=True)
    (root / "patches" / "k").mkdir(parents=True)
    (root / "kernels" / "a.config").write_text("# PAE\nCONFIG_HIGHPTE=y\n")
    (root / "kernels" / "b.config").write_text("CONFIG_KPROBES=y\n")
    (root / "patches" / "k" / "0001-one.patch").write_text(_patch("hello", "hullo"))
    state = {"version": "6.1.176-1", "toolchain": "gcc 12.2.0 / ld 2.40"}
    for mod in (bi, sb):  # resolving inputs (bi) and fetching the source tree (sb)
        monkeypatch.setattr(mod, "resolve_package", lambda name, arch: DebPackage(
            name, arch, state["version"], "ab" * 32, 1, ""))
    monkeypatch.setattr(bi, "toolchain_id", lambda: state["toolchain"])
    monkeypatch.setattr(bi, "vm_dir", lambda: root)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return FakeVm(root, state)


def _desc(name: str = "k", **over: object) -> KernelDescription:
    data: dict[str, object] = {"source": "source", "package": "linux-source-6.1",
                               "base": "defconfig", "fragments": ["a.config", "b.config"],
                               "patches": "k", "localversion": "-ukvalab"}
    data.update(over)
    return KernelDescription(name=name, source="source", description="", data=data)


def _key(root: Path, desc: KernelDescription | None = None) -> str:
    return sb.resolve_inputs(desc or _desc(), root).key()


def test_key_is_stable_and_ignores_name_and_comments(fake: FakeVm) -> None:
    vmroot = fake.root
    k = _key(vmroot)
    assert k == _key(vmroot)
    assert k == _key(vmroot, _desc("other-name"))
    (vmroot / "kernels" / "a.config").write_text("# reworded comment\n\nCONFIG_HIGHPTE=y\n")
    assert k == _key(vmroot)


@pytest.mark.parametrize("change", [
    "source version", "compiler", "fragment option", "fragment order", "patch edit",
    "patch added", "no patches", "base", "localversion",
])
def test_key_changes_with_every_input(fake: FakeVm, change: str,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    vmroot, state = fake.root, fake.state
    before = _key(vmroot)
    desc = _desc()
    if change == "source version":
        state["version"] = "6.1.177-1"
    elif change == "compiler":
        state["toolchain"] = "gcc 12.3.0 / ld 2.40"
    elif change == "fragment option":
        (vmroot / "kernels" / "b.config").write_text("CONFIG_KPROBES=y\nCONFIG_FTRACE=y\n")
    elif change == "fragment order":
        (vmroot / "kernels" / "b.config").write_text("# CONFIG_HIGHPTE is not set\n")
        before = _key(vmroot)
        desc = _desc(fragments=["b.config", "a.config"])
    elif change == "patch edit":
        (vmroot / "patches" / "k" / "0001-one.patch").write_text(_patch("hello", "hallo"))
    elif change == "patch added":
        (vmroot / "patches" / "k" / "0002-two.patch").write_text(_patch("b", "c"))
    elif change == "no patches":
        desc = _desc(patches=[])
    elif change == "base":
        monkeypatch.setattr(bi, "_base_id", lambda base: "deb-sha")
        desc = _desc(base="debian-686-pae")
    elif change == "localversion":
        desc = _desc(localversion="-other")
    assert _key(vmroot, desc) != before


def test_localversion_is_requested_and_checked(fake: FakeVm) -> None:
    opts = {o.symbol: o.value for o in sb.resolve_inputs(_desc(), fake.root).options}
    assert opts["CONFIG_LOCALVERSION"] == '"-ukvalab"'
    assert opts["CONFIG_LOCALVERSION_AUTO"] == "n"


@pytest.mark.parametrize("over,msg", [
    ({"fragments": ["../x.config"]}, "fragment"),
    ({"fragments": ["missing.config"]}, "fragment"),
    ({"fragments": "a.config"}, "must be a list"),
    ({"patches": "nope"}, "patch series"),
    ({"patches": ["k/bad-name.patch"]}, "NNNN"),
    ({"localversion": "ukvalab"}, "localversion"),
])
def test_bad_descriptions_are_usage_errors(fake: FakeVm, over: dict[str, Any], msg: str) -> None:
    with pytest.raises(UsageError, match=msg):
        sb.resolve_inputs(_desc(**over), fake.root)


# -- patches ---------------------------------------------------------------------------------

def _patch(old: str, new: str, name: str = "greeting.txt") -> str:
    return (f"--- a/{name}\n+++ b/{name}\n@@ -1,3 +1,3 @@\n line one\n-{old}\n+{new}\n"
            " line three\n")


def _tree(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "greeting.txt").write_text("line one\nhello\nline three\n")
    (path / "Makefile").write_text("all:\n")
    return path


def _series(tmp: Path, *texts: str) -> list[sb.PatchInput]:
    d = tmp / "series"
    d.mkdir(exist_ok=True)
    out = []
    for i, t in enumerate(texts, 1):
        p = d / f"{i:04d}-p{i}.patch"
        p.write_text(t)
        out.append(sb.PatchInput(p.name, p, "x"))
    return out


def test_patching_a_hardlinked_copy_leaves_the_pristine_tree_alone(tmp_path: Path) -> None:
    pristine = _tree(tmp_path / "pristine")
    subprocess.run(["cp", "-al", str(pristine), str(tmp_path / "copy")], check=True)
    assert os.stat(tmp_path / "copy" / "greeting.txt").st_ino == os.stat(
        pristine / "greeting.txt").st_ino
    sb.apply_patches(tmp_path / "copy", _series(tmp_path, _patch("hello", "hullo")))
    assert "hullo" in (tmp_path / "copy" / "greeting.txt").read_text()
    assert "hello" in (pristine / "greeting.txt").read_text()


def test_broken_patch_names_patch_hunk_and_file(tmp_path: Path) -> None:
    tree = _tree(tmp_path / "t")
    series = _series(tmp_path, _patch("hello", "hullo"), _patch("not there", "x"))
    with pytest.raises(sb.PatchError) as e:
        sb.apply_patches(tree, series)
    assert e.value.patch == "0002-p2.patch"
    assert "0002-p2.patch does not apply: hunk #1 FAILED at line 1 of greeting.txt" in str(e.value)


def test_fuzz_is_refused(tmp_path: Path) -> None:
    tree = _tree(tmp_path / "t")
    (tree / "greeting.txt").write_text("line ONE\nhello\nline three\n")
    with pytest.raises(sb.PatchError, match="FAILED"):
        sb.apply_patches(tree, _series(tmp_path, _patch("hello", "hullo")))


def test_patch_for_a_missing_file(tmp_path: Path) -> None:
    tree = _tree(tmp_path / "t")
    with pytest.raises(sb.PatchError, match="does not exist"):
        sb.apply_patches(tree, _series(tmp_path, _patch("a", "b", name="mm/nothere.c")))


def test_garbage_and_already_applied_patches(tmp_path: Path) -> None:
    tree = _tree(tmp_path / "t")
    with pytest.raises(sb.PatchError, match="garbage"):
        sb.apply_patches(tree, _series(tmp_path, "this is not a patch\n"))
    good = _series(tmp_path, _patch("hello", "hullo"))
    sb.apply_patches(tree, good)
    with pytest.raises(sb.PatchError, match="already patched"):
        sb.apply_patches(tree, good)


def test_broken_patch_leaves_no_cache_entry(fake: FakeVm, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole build path up to patching, on a fake tree: no entry, no temp dir, a log."""
    vmroot = fake.root
    (vmroot / "patches" / "k" / "0002-broken.patch").write_text(_patch("nope", "x"))
    pristine = _tree(tmp_path / "pristine")
    monkeypatch.setattr(sb, "source_tree", lambda inputs: pristine)
    desc = _desc()
    key = _key(vmroot, desc)
    with pytest.raises(sb.PatchError, match=r"k/0002-broken\.patch does not apply: hunk #1"):
        sb.SourceBuiltKernel().build(desc, jobs=1)
    entry = sb.entry_dir(key)
    assert not entry.exists()
    assert [p.name for p in entry.parent.iterdir()] == ["logs"]
    log = entry.parent / "logs" / f"k-{key[:16]}.log"
    assert "0002-broken.patch" in log.read_text()
    assert "hello" in (pristine / "greeting.txt").read_text()


# -- CLI -------------------------------------------------------------------------------------

def test_cli_exit_codes() -> None:
    from lab.cli import app

    runner = CliRunner()
    assert runner.invoke(app, ["kernel", "--help"]).exit_code == 0
    r = runner.invoke(app, ["kernel", "build", "no-such-kernel"])
    assert r.exit_code == 2 and "unknown kernel" in r.output
    r = runner.invoke(app, ["kernel", "build", "built-pae", "--jobs", "0"])
    assert r.exit_code == 2 and "--jobs" in r.output
    assert runner.invoke(app, ["kernel", "show", "../etc"]).exit_code == 2
