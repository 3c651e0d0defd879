"""What the eBPF backend adds to the guest image, and the host toolchain that builds it.

The BPF programs (``bpf/lab.bpf.c``) are compiled on the host with ``clang -target bpf``; the
loader (``bpf/lab-bpf.c``) is linked static for i386 against Debian's libbpf, libelf and zlib
(the ``:i386`` -dev packages setup.sh installs). Both go into the initramfs only when a run
asks for the ebpf backend, so the other backends need none of these packages.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

from ..errors import LabError

__all__ = [
    "BPF_SOURCE", "LOADER_SOURCE", "LOADER_LIBS", "BPF_OBJECT", "LOADER", "PIN_DIR",
    "require_toolchain", "clang_version", "compile_bpf", "key_material", "preflight",
]

BPF_DIR = Path(__file__).with_name("bpf")
BPF_SOURCE = BPF_DIR / "lab.bpf.c"
LOADER_SOURCE = BPF_DIR / "lab-bpf.c"
LOADER_LIBS = ("-lbpf", "-lelf", "-lz")
#: Where they live in the guest, and where the loader pins maps and links.
BPF_OBJECT = "lib/lab/lab.bpf.o"
LOADER = "sbin/lab-bpf"
PIN_DIR = "/sys/fs/bpf/lab"

_MULTIARCH = "/usr/include/x86_64-linux-gnu"  # asm/types.h for linux/bpf.h
#: (file that must exist, Debian package that ships it)
_NEEDED = (
    ("/usr/include/bpf/bpf_helpers.h", "libbpf-dev:i386"),
    ("/usr/lib/i386-linux-gnu/libbpf.a", "libbpf-dev:i386"),
    ("/usr/lib/i386-linux-gnu/libelf.a", "libelf-dev:i386"),
    ("/usr/lib/i386-linux-gnu/libz.a", "zlib1g-dev:i386"),
)
CLANG_FLAGS = ["-target", "bpf", "-O2", "-g", "-Wall", "-I", _MULTIARCH]


def require_toolchain() -> str:
    """The clang to use; LabError naming every missing package in one line otherwise."""
    missing = [] if shutil.which("clang") else ["clang"]
    missing += [pkg for path, pkg in _NEEDED if not Path(path).exists() and pkg not in missing]
    if missing:
        raise LabError(f"the ebpf backend needs {', '.join(missing)}: run ./setup.sh "
                       f"(or apt-get install {' '.join(missing)})")
    return "clang"


def preflight(configs: list[str], workloads: list[str]) -> None:
    """The registry's preflight: a missing package is named before a run directory exists."""
    require_toolchain()


def clang_version(clang: str = "clang") -> str:
    out = subprocess.run([clang, "--version"], capture_output=True, text=True).stdout
    return out.splitlines()[0] if out else clang


def compile_bpf(out: Path, clang: str = "clang") -> None:
    """Compile the BPF programs into ``out`` (an ELF object libbpf opens in the guest)."""
    proc = subprocess.run([clang, *CLANG_FLAGS, "-c", str(BPF_SOURCE), "-o", str(out)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise LabError(f"building {BPF_SOURCE.name} failed:\n{proc.stderr.strip()}")


def key_material() -> bytes:
    """What the image key must cover for the eBPF parts: sources, flags, clang, libbpf."""
    libbpf = Path(_NEEDED[1][0])
    parts = [BPF_SOURCE.read_bytes(), " ".join(CLANG_FLAGS).encode(),
             clang_version().encode(), " ".join(LOADER_LIBS).encode(),
             hashlib.sha256(libbpf.read_bytes()).hexdigest().encode() if libbpf.exists() else b""]
    return b"\0".join(parts)
