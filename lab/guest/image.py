"""The guest image: a gzip'd initramfs with busybox, the agent and the workload programs.

Built once per content key (busybox .deb, C sources, init script, compiler version) into the
cache. The cpio archive is written here rather than with cpio(1) so that it is byte-for-byte
reproducible (mtime 0, sorted) and can hold /dev/console without root.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .. import ui
from ..debian import DebPackage, extract_deb, fetch_deb, resolve_package
from ..errors import LabError
from ..hostcheck import require_gcc_m32
from ..paths import cache_dir, repo_root, vm_dir

__all__ = ["CpioEntry", "newc_archive", "ImagePlan", "plan_image", "ensure_image"]

#: Bump when the image layout changes without any input file changing.
IMAGE_FORMAT = 1
CFLAGS = ["-m32", "-static", "-O2", "-Wall", "-s"]


@dataclass(frozen=True)
class CpioEntry:
    """One archive member: a directory, a regular file, a symlink or a character device."""

    path: str
    mode: int  # full st_mode, e.g. 0o100755
    data: bytes = b""
    rdev: tuple[int, int] = (0, 0)


def _newc_header(ino: int, e: CpioEntry, nlink: int) -> bytes:
    name = e.path.encode() + b"\0"
    fields = [ino, e.mode, 0, 0, nlink, 0, len(e.data), 0, 0, e.rdev[0], e.rdev[1], len(name), 0]
    hdr = b"070701" + b"".join(b"%08X" % v for v in fields) + name
    return hdr + b"\0" * (-len(hdr) % 4)


def newc_archive(entries: list[CpioEntry]) -> bytes:
    """A "newc" cpio archive of ``entries`` (the format the kernel's initramfs unpacker reads)."""
    out = io.BytesIO()
    for ino, e in enumerate(sorted(entries, key=lambda e: e.path), 1):
        out.write(_newc_header(ino, e, 2 if e.mode & 0o040000 else 1))
        out.write(e.data + b"\0" * (-len(e.data) % 4))
    out.write(_newc_header(0, CpioEntry("TRAILER!!!", 0), 1))
    return out.getvalue() + b"\0" * (-out.tell() % 512)


@dataclass(frozen=True)
class ImagePlan:
    """What the image is made of, and where it lives in the cache."""

    key: str
    path: Path
    busybox: DebPackage
    programs: dict[str, Path]  # guest path -> C source
    init: Path
    compiler: str

    @property
    def cached(self) -> bool:
        return self.path.is_file()

    def describe(self) -> list[str]:
        if self.cached:
            return [f"image: initramfs {self.key[:16]} (cached in {self.path})"]
        lines = [f"image: download {self.busybox.spec} ({self.busybox.size / 1e6:.1f} MB)"]
        lines += [
            f"image: build {g} from {s.relative_to(repo_root())} (gcc {' '.join(CFLAGS)})"
            for g, s in self.programs.items()
        ]
        return lines + [f"image: write {self.path}"]


def _programs() -> dict[str, Path]:
    progs = {"sbin/lab-agent": vm_dir() / "guest" / "lab-agent.c",
             # tries user-mode access to kernel addresses (the UKVA window's safety test)
             "sbin/lab-peek": vm_dir() / "guest" / "lab-peek.c"}
    for src in sorted((repo_root() / "lab" / "workloads").glob("*.c")):
        progs[f"workloads/{src.stem}"] = src
    return progs


def plan_image() -> ImagePlan:
    """Resolve the image's inputs and its content key (nothing is built)."""
    gcc = require_gcc_m32()
    compiler = subprocess.run([gcc, "--version"], capture_output=True, text=True).stdout
    compiler = compiler.splitlines()[0] if compiler else "gcc"
    busybox = resolve_package("busybox-static", "i386")
    init = vm_dir() / "guest" / "init"
    programs = _programs()
    digest = hashlib.sha256(f"format={IMAGE_FORMAT}\0{compiler}\0{busybox.sha256}\0".encode())
    digest.update(" ".join(CFLAGS).encode())
    # Workloads may #include a shared header beside them: it is part of the content too.
    headers = [(f.name, f) for f in sorted((repo_root() / "lab" / "workloads").glob("*.h"))]
    for guest_path, src in [("init", init), *programs.items(), *headers]:
        digest.update(f"\0{guest_path}\0".encode() + src.read_bytes())
    key = digest.hexdigest()
    path = cache_dir() / "images" / f"initramfs-{key[:16]}.cpio.gz"
    return ImagePlan(key, path, busybox, programs, init, compiler)


def _compile(src: Path, out: Path) -> None:
    proc = subprocess.run(
        ["gcc", *CFLAGS, "-o", str(out), str(src)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise LabError(f"building {src.name} failed:\n{proc.stderr.strip()}")


def ensure_image(plan: ImagePlan) -> Path:
    """Build the initramfs unless the cache already holds it; return its path."""
    if plan.cached:
        return plan.path
    with ui.step(f"Building guest image ({len(plan.programs)} programs + busybox)"):
        deb = fetch_deb(plan.busybox)
        plan.path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=plan.path.parent) as tmp:
            extract_deb(deb, Path(tmp) / "bb")
            entries = [
                CpioEntry(d, 0o040755)
                for d in ("bin", "sbin", "dev", "proc", "sys", "tmp", "workloads", "etc", "root")
            ]
            entries += [
                CpioEntry("dev/console", 0o020600, rdev=(5, 1)),
                CpioEntry("init", 0o100755, plan.init.read_bytes()),
                CpioEntry("bin/busybox", 0o100755, (Path(tmp) / "bb/bin/busybox").read_bytes()),
                CpioEntry("bin/sh", 0o120777, b"busybox"),
            ]
            for guest_path, src in plan.programs.items():
                out = Path(tmp) / Path(guest_path).name
                _compile(src, out)
                entries.append(CpioEntry(guest_path, 0o100755, out.read_bytes()))
            blob = gzip.compress(newc_archive(entries), compresslevel=6, mtime=0)
            tmp_out = Path(tmp) / "image"
            tmp_out.write_bytes(blob)
            os.replace(tmp_out, plan.path)
    return plan.path
