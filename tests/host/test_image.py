"""The initramfs: a valid newc archive, byte-for-byte reproducible; every program in it built
static i386 from all of its sources; a content key that any input changes."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from lab.guest.image import (
    CpioEntry,
    Program,
    _programs,
    compile_program,
    content_key,
    newc_archive,
)
from lab.workloads import WORKLOADS_DIR, _discover, list_workloads, load_workload

ENTRIES = [
    CpioEntry("bin", 0o040755),
    CpioEntry("dev", 0o040755),
    CpioEntry("dev/console", 0o020600, rdev=(5, 1)),
    CpioEntry("init", 0o100755, b"#!/bin/busybox sh\necho hi\n"),
    CpioEntry("bin/sh", 0o120777, b"busybox"),
    CpioEntry("bin/odd", 0o100644, b"x" * 1001),
]


def test_cpio_lists_what_was_written(tmp_path: Path) -> None:
    archive = tmp_path / "a.cpio"
    archive.write_bytes(newc_archive(ENTRIES))
    cpio = shutil.which("cpio")
    assert cpio, "cpio (Debian package cpio) is part of the README set-up"
    listing = subprocess.run([cpio, "-itv"], stdin=archive.open("rb"), capture_output=True,
                             text=True, check=True).stdout
    assert "dev/console" in listing and listing.count("\n") == len(ENTRIES)
    console_line = next(line for line in listing.splitlines() if line.endswith("dev/console"))
    assert console_line.startswith("crw-------") and "5,   1" in console_line
    out = tmp_path / "x"
    out.mkdir()
    subprocess.run([cpio, "-id", "--no-absolute-filenames"], cwd=out, stdin=archive.open("rb"),
                   check=True, capture_output=True)
    assert (out / "init").read_bytes() == ENTRIES[3].data
    assert (out / "bin/odd").stat().st_size == 1001
    assert (out / "bin/sh").is_symlink()


def test_archive_is_deterministic_and_order_independent() -> None:
    assert newc_archive(ENTRIES) == newc_archive(list(reversed(ENTRIES)))
    assert len(newc_archive(ENTRIES)) % 512 == 0


# --- what goes into the image: every workload's files, built and keyed ----------------------


def _copy_workloads(dest: Path) -> dict[str, Program]:
    """lab/workloads' sources, headers and specs copied to ``dest``, as image programs."""
    for f in WORKLOADS_DIR.iterdir():
        if f.suffix in (".c", ".h", ".toml"):
            shutil.copy(f, dest / f.name)
    return _copy_workloads_in_place(dest)


def test_every_workload_file_is_in_the_image() -> None:
    """Each .c beside the specs belongs to exactly one program; a split program has several."""
    programs = _programs()
    listed = [s.name for g, p in programs.items() if g.startswith("workloads/") for s in p.sources]
    assert sorted(listed) == sorted(f.name for f in WORKLOADS_DIR.glob("*.c"))
    assert len(listed) == len(set(listed))
    assert len(programs["workloads/ptstress"].sources) > 1
    assert {h.name for h in programs["workloads/ptstress"].headers} >= {"workload.h", "ptstress.h"}
    assert all(p.params_header for g, p in programs.items() if g.startswith("workloads/"))
    assert programs["sbin/lab-agent"].params_header is None


def test_content_key_covers_every_source_header_and_bound(tmp_path: Path) -> None:
    """Changing any one input file, or one bound in a spec, changes the image key."""
    init = tmp_path / "init"
    init.write_text("#!/bin/sh\n")
    src = tmp_path / "src"
    src.mkdir()
    base = content_key("gcc 12", "sha", init, _copy_workloads(src))
    assert base == content_key("gcc 12", "sha", init, _copy_workloads_in_place(src))
    files = sorted(f for f in src.iterdir() if f.suffix in (".c", ".h"))
    assert len(files) >= 9
    for f in files:
        original = f.read_text()
        f.write_text(original + "/* changed */\n")
        assert content_key("gcc 12", "sha", init, _copy_workloads_in_place(src)) != base, f.name
        f.write_text(original)
    toml = src / "ptstress.toml"
    original = toml.read_text()
    toml.write_text(original.replace("max = 86400", "max = 86401"))
    assert content_key("gcc 12", "sha", init, _copy_workloads_in_place(src)) != base
    toml.write_text(original)
    assert content_key("gcc 12", "sha", init, _copy_workloads_in_place(src)) == base
    assert content_key("gcc 13", "sha", init, _copy_workloads_in_place(src)) != base


def _copy_workloads_in_place(src: Path) -> dict[str, Program]:
    """The programs of the workloads in ``src``, as they are now."""
    return {f"workloads/{n}": Program(s.sources, s.params_header())
            for n, s in _discover(src).items()}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str]]:
    """Every program of the image, built as ensure_image builds it: guest path -> (binary,
    warnings)."""
    out = tmp_path_factory.mktemp("image-bin")
    done = {}
    for guest_path, prog in _programs().items():
        binary = out / guest_path.replace("/", "_")
        done[guest_path] = (binary, compile_program(prog, binary))
    return done


def test_every_program_builds_static_i386(built: dict[str, tuple[Path, str]]) -> None:
    assert set(built) >= {"sbin/lab-agent", "sbin/lab-peek", "workloads/ptstress"}
    for guest_path, (binary, warnings) in built.items():
        assert warnings == "", f"{guest_path}: gcc -Wall warnings:\n{warnings}"
        header = binary.read_bytes()[:20]
        assert header[:5] == b"\x7fELF\x01", f"{guest_path}: not a 32-bit ELF"
        assert int.from_bytes(header[18:20], "little") == 3, f"{guest_path}: not i386"
        dynamic = subprocess.run(["readelf", "-l", str(binary)], capture_output=True,
                                 text=True).stdout
        assert "INTERP" not in dynamic, f"{guest_path}: not static"


def test_built_workloads_enforce_the_spec_bounds(built: dict[str, tuple[Path, str]]) -> None:
    """The generated table is the one compiled in: max+1 is refused with the spec's bounds."""
    for name in list_workloads():
        binary, _ = built[f"workloads/{name}"]
        for p in load_workload(name).params.values():
            proc = subprocess.run([str(binary), f"--{p.name}", str(p.max + 1)],
                                  capture_output=True, text=True, timeout=30)
            assert proc.returncode == 2, (name, p.name, proc.stderr)
            assert f"--{p.name} {p.max + 1} out of bounds {p.bounds()}" in proc.stderr


def test_no_c_file_over_400_lines() -> None:
    """One shape for the code: a workload too long for one file is split (see 'sources')."""
    for f in [*WORKLOADS_DIR.glob("*.c"), *WORKLOADS_DIR.glob("*.h")]:
        assert len(f.read_text().splitlines()) <= 400, f.name
