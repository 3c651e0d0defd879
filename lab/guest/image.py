"""The guest image: a gzip'd initramfs with busybox, the agent and the workload programs.

Built once per content key (busybox .deb, C sources and headers, the parameter headers generated
from the workload specs, init script, compiler version) into the cache. A workload is compiled
from every file its spec lists (``sources``), with its generated ``workload-params.h`` on the
include path. The cpio archive is written here rather than with cpio(1) so that it is byte-for-byte
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
from ..paths import cache_dir, cache_lock, repo_root, vm_dir
from ..workloads import PARAMS_HEADER, list_workloads, load_workload

__all__ = [
    "CpioEntry",
    "newc_archive",
    "Program",
    "ImagePlan",
    "plan_image",
    "ensure_image",
    "compile_program",
    "content_key",
    "workload_program",
    "agent_program",
]

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
class Program:
    """One static i386 program: the C files linked into it and, for a workload, its
    generated parameter header (None for the agent and lab-peek)."""

    sources: tuple[Path, ...]
    params_header: str | None = None
    #: libraries linked after the sources (the eBPF loader's libbpf)
    libs: tuple[str, ...] = ()

    @property
    def headers(self) -> tuple[Path, ...]:
        """The headers beside its sources, which they may #include (workload.h, their own)."""
        dirs = sorted({s.parent for s in self.sources})
        return tuple(h for d in dirs for h in sorted(d.glob("*.h")))

    def key_material(self) -> bytes:
        """Everything about the program that the image's content key must cover: every
        source and header by name and content, and the generated parameter header."""
        parts = [f"{f.name}\0".encode() + f.read_bytes() for f in (*self.sources, *self.headers)]
        if self.params_header is not None:
            parts.append(f"{PARAMS_HEADER}\0{self.params_header}".encode())
        if self.libs:
            parts.append(" ".join(self.libs).encode())
        return b"\0".join(parts)


def agent_program() -> Program:
    """The guest agent: its line protocol (lab-agent.c) and its BPF map reader."""
    guest = vm_dir() / "guest"
    return Program((guest / "lab-agent.c", guest / "lab-agent-bpf.c"))


def workload_program(name: str) -> Program:
    """The program for workload ``name``, as its spec describes it."""
    spec = load_workload(name)
    return Program(spec.sources, spec.params_header())


@dataclass(frozen=True)
class ImagePlan:
    """What the image is made of, and where it lives in the cache."""

    key: str
    path: Path
    busybox: DebPackage
    programs: dict[str, Program]  # guest path -> what it is built from
    init: Path
    compiler: str
    #: optional parts a backend asked for ("ebpf": the BPF object and its loader)
    extras: tuple[str, ...] = ()

    @property
    def cached(self) -> bool:
        return self.path.is_file()

    def describe(self) -> list[str]:
        if self.cached:
            return [f"image: initramfs {self.key[:16]} (cached in {self.path})"]
        lines = [f"image: download {self.busybox.spec} ({self.busybox.size / 1e6:.1f} MB)"]
        if "ebpf" in self.extras:
            lines.append("image: build lib/lab/lab.bpf.o (clang -target bpf)")
        lines += [
            f"image: build {g} from "
            f"{' '.join(str(s.relative_to(repo_root())) for s in p.sources)}"
            f" (gcc {' '.join(CFLAGS)})"
            for g, p in self.programs.items()
        ]
        return lines + [f"image: write {self.path}"]


def _programs(extras: tuple[str, ...] = ()) -> dict[str, Program]:
    progs = {"sbin/lab-agent": agent_program(),
             # tries user-mode access to kernel addresses (the UKVA window's safety test)
             "sbin/lab-peek": Program((vm_dir() / "guest" / "lab-peek.c",))}
    for name in list_workloads():
        progs[f"workloads/{name}"] = workload_program(name)
    if "ebpf" in extras:
        from ..tracers import ebpf_build

        progs[ebpf_build.LOADER] = Program((ebpf_build.LOADER_SOURCE,),
                                           libs=ebpf_build.LOADER_LIBS)
    return progs


def plan_image(extras: tuple[str, ...] = ()) -> ImagePlan:
    """Resolve the image's inputs and its content key (nothing is built).

    ``extras``: optional parts ("ebpf"), each checked for its host toolchain here, so a
    missing package is named before anything boots."""
    unknown = set(extras) - {"ebpf"}
    if unknown:
        raise LabError(f"unknown image extras: {', '.join(sorted(unknown))}")
    gcc = require_gcc_m32()
    compiler = subprocess.run([gcc, "--version"], capture_output=True, text=True).stdout
    compiler = compiler.splitlines()[0] if compiler else "gcc"
    busybox = resolve_package("busybox-static", "i386")
    init = vm_dir() / "guest" / "init"
    programs = _programs(extras)
    key = content_key(compiler, busybox.sha256, init, programs)
    if "ebpf" in extras:
        from ..tracers import ebpf_build

        ebpf_build.require_toolchain()
        key = hashlib.sha256(key.encode() + ebpf_build.key_material()).hexdigest()
    path = cache_dir() / "images" / f"initramfs-{key[:16]}.cpio.gz"
    return ImagePlan(key, path, busybox, programs, init, compiler, tuple(extras))


def content_key(compiler: str, busybox_sha256: str, init: Path,
                programs: dict[str, Program]) -> str:
    """The image's cache key: a change to any input (any program's sources, headers or spec
    parameters, the init script, busybox, the compiler or its flags) gives a new image."""
    digest = hashlib.sha256(f"format={IMAGE_FORMAT}\0{compiler}\0{busybox_sha256}\0".encode())
    digest.update(" ".join(CFLAGS).encode())
    digest.update(b"\0init\0" + init.read_bytes())
    for guest_path, prog in sorted(programs.items()):
        digest.update(f"\0{guest_path}\0".encode() + prog.key_material())
    return digest.hexdigest()


def compile_program(
    prog: Program, out: Path, cflags: list[str] | None = None, gcc: str = "gcc"
) -> str:
    """Compile and link ``prog`` into ``out``; returns gcc's warnings (stderr), if any.

    A workload's ``workload-params.h`` is written to a private directory put first on the
    include path, never beside the sources, so a stale copy cannot shadow the spec. The host
    tests build with this too (adding -Wextra -Werror), so they test what the guest runs.
    """
    with tempfile.TemporaryDirectory(prefix="lab-build-") as gen:
        include: list[str] = []
        if prog.params_header is not None:
            (Path(gen) / PARAMS_HEADER).write_text(prog.params_header)
            include = ["-I", gen]
        proc = subprocess.run(
            [gcc, *(CFLAGS if cflags is None else cflags), *include, "-o", str(out),
             *(str(s) for s in prog.sources), *prog.libs],
            capture_output=True,
            text=True,
        )
    if proc.returncode != 0:
        names = " ".join(s.name for s in prog.sources)
        raise LabError(f"building {names} failed:\n{proc.stderr.strip()}")
    return proc.stderr


def ensure_image(plan: ImagePlan) -> Path:
    """Build the initramfs unless the cache already holds it; return its path."""
    if plan.cached:
        return plan.path
    with cache_lock(f"image-{plan.key[:16]}"):
        return plan.path if plan.cached else _build(plan)


def _build(plan: ImagePlan) -> Path:
    """Compile the programs and write the cpio archive (under the image's cache lock)."""
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
            for guest_path, prog in plan.programs.items():
                out = Path(tmp) / Path(guest_path).name
                compile_program(prog, out)
                entries.append(CpioEntry(guest_path, 0o100755, out.read_bytes()))
            if "ebpf" in plan.extras:
                from ..tracers import ebpf_build

                obj = Path(tmp) / "lab.bpf.o"
                ebpf_build.compile_bpf(obj)
                entries += [CpioEntry("lib", 0o040755), CpioEntry("lib/lab", 0o040755),
                            CpioEntry(ebpf_build.BPF_OBJECT, 0o100644, obj.read_bytes())]
            blob = gzip.compress(newc_archive(entries), compresslevel=6, mtime=0)
            tmp_out = Path(tmp) / "image"
            tmp_out.write_bytes(blob)
            os.replace(tmp_out, plan.path)
    return plan.path
