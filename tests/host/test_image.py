"""The initramfs writer: a valid newc archive, byte-for-byte reproducible."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from lab.guest.image import CpioEntry, newc_archive

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
