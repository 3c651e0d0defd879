"""Source-build inputs and their cache key: everything that changes the image, hashed.

A build is named by :meth:`BuildInputs.key` over the source package, base config, merged
fragment options, patch bytes and toolchain, so an unchanged key re-uses the built bzImage and
two descriptions with the same inputs share it. Resolving inputs asks apt's index for versions
but downloads nothing.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from ..debian import resolve_metapackage_image, resolve_package, sha256_file
from ..errors import UsageError
from ..hostcheck import require_tool
from ..paths import cache_dir, vm_dir
from .description import KernelDescription, load_kernel_description
from .fragments import Requested, merge_fragments

__all__ = [
    "ARCH",
    "RECIPE",
    "BuildInputs",
    "PatchInput",
    "entry_dir",
    "patch_series",
    "resolve_inputs",
    "toolchain_id",
]

#: Bump when the build procedure itself changes what comes out (make flags, targets, env).
RECIPE = 1
ARCH = "i386"
_PATCH_NAME = re.compile(r"[0-9]{4}-[A-Za-z0-9._+-]+\.patch")


@dataclass(frozen=True)
class PatchInput:
    """One patch of the series, named relative to vm/patches/."""

    name: str
    path: Path
    sha256: str


@dataclass(frozen=True)
class BuildInputs:
    """Everything a build depends on; :meth:`key` hashes all of it except the kernel's name."""

    kernel: str
    package: str
    package_version: str
    package_sha256: str
    base: str
    base_id: str  # "defconfig" or the Debian image .deb's sha256 the base config comes from
    fragments: tuple[tuple[str, str], ...]  # (file name, sha256), for the record
    options: tuple[Requested, ...]  # merged fragment options, in order, plus the local version
    patches: tuple[PatchInput, ...]
    localversion: str
    toolchain: str

    def key(self) -> str:
        """Hex SHA256 over the inputs that change the image. Fragment comments do not count."""
        payload = {
            "recipe": RECIPE,
            "arch": ARCH,
            "package": [self.package, self.package_version, self.package_sha256],
            "base": [self.base, self.base_id],
            "options": [[o.symbol, o.value] for o in self.options],
            "patches": [[p.name, p.sha256] for p in self.patches],
            "localversion": self.localversion,
            "toolchain": self.toolchain,
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


@cache
def toolchain_id() -> str:
    """First lines of ``gcc --version`` and ``ld --version``: a compiler update means a rebuild."""
    lines = []
    for tool, pkg in (("gcc", "gcc"), ("ld", "binutils")):
        require_tool(tool, pkg)
        out = subprocess.run([tool, "--version"], capture_output=True, text=True, check=False)
        lines.append((out.stdout.strip().splitlines() or ["?"])[0])
    return " / ".join(lines)


def patch_series(spec: str | list[str], root: Path | None = None) -> list[PatchInput]:
    """Resolve ``patches``: a series name (every vm/patches/NAME/NNNN-*.patch, sorted) or a list
    of paths relative to vm/patches/, applied in the order given."""
    base = (root or vm_dir()) / "patches"
    if isinstance(spec, str):
        d = base / spec
        if not spec or "/" in spec or not d.is_dir():
            raise UsageError(f"patch series {spec!r}: no directory {d}")
        paths = sorted(d.glob("*.patch"))
    else:
        paths = [base / p for p in spec]
    out = []
    for p in paths:
        if not _PATCH_NAME.fullmatch(p.name) or ".." in p.relative_to(base).parts:
            raise UsageError(f"patch {p}: name it NNNN-what-it-does.patch under {base}")
        if not p.is_file():
            raise UsageError(f"patch {p}: no such file")
        out.append(PatchInput(str(p.relative_to(base)), p, sha256_file(p)))
    return out


def _fragment_files(desc: KernelDescription, root: Path) -> list[Path]:
    names = desc.data.get("fragments", [])
    if not isinstance(names, list):
        raise UsageError(f"kernel {desc.name!r}: fragments must be a list of vm/kernels/*.config")
    paths = []
    for n in names:
        p = root / "kernels" / str(n)
        if "/" in str(n) or not str(n).endswith(".config") or not p.is_file():
            raise UsageError(
                f"kernel {desc.name!r}: fragment {n!r} is not a file vm/kernels/*.config")
        paths.append(p)
    return paths


def _base_id(base: str) -> str:
    """``defconfig`` is fixed by the source; a Debian base is named by its image .deb's sha256."""
    if base == "defconfig":
        return "defconfig"
    desc = load_kernel_description(base)
    if desc.source != "debian-package":
        raise UsageError(f"base {base!r}: use 'defconfig' or a debian-package kernel's name")
    return resolve_metapackage_image(desc.data["package"], desc.data.get("arch", ARCH)).sha256


def resolve_inputs(desc: KernelDescription, root: Path | None = None) -> BuildInputs:
    """Read a ``source = "source"`` description and hash what it names (apt's index is asked
    for the package version; nothing is downloaded)."""
    root = root or vm_dir()
    d = desc.data
    package = str(d.get("package", "linux-source-6.1"))
    pkg = resolve_package(package, "all")
    frag_paths = _fragment_files(desc, root)
    texts = [(p.name, p.read_text()) for p in frag_paths]
    localversion = str(d.get("localversion", "-ukvalab"))
    if not re.fullmatch(r"-[A-Za-z0-9._+-]*", localversion):
        raise UsageError(f"kernel {desc.name!r}: localversion {localversion!r} must start with -")
    merged = merge_fragments(texts)
    lv = (("CONFIG_LOCALVERSION", f'"{localversion}"'), ("CONFIG_LOCALVERSION_AUTO", "n"))
    for sym, val in lv:
        merged[sym] = Requested(sym, val, f"{desc.name}.toml localversion")
    base = str(d.get("base", "defconfig"))
    return BuildInputs(
        kernel=desc.name, package=pkg.name, package_version=pkg.version,
        package_sha256=pkg.sha256, base=base, base_id=_base_id(base),
        fragments=tuple((p.name, sha256_file(p)) for p in frag_paths),
        options=tuple(merged.values()), patches=tuple(patch_series(d.get("patches", []), root)),
        localversion=localversion, toolchain=toolchain_id(),
    )


def entry_dir(key: str) -> Path:
    """Where the build with this key lives: $XDG_CACHE_HOME/ukva-lab/kernels/source/KEY16."""
    return cache_dir() / "kernels" / "source" / key[:16]
