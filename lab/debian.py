"""Fetch and unpack Debian packages with apt, into the content-addressed cache.

Packages are identified by the SHA256 that apt's index gives; the downloaded file is checked
against it, so a cached .deb is re-used exactly when the index still names the same bytes.
apt-cache's deb822 output is read with python-debian's ``debian.deb822`` parser rather than by
hand: it knows the format's corners (continuation lines, comments, several stanzas).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from debian.deb822 import Deb822

from .errors import LabError
from .hostcheck import require_i386_arch, require_tool
from .paths import cache_dir

__all__ = ["DebPackage", "apt_show", "resolve_package", "fetch_deb", "extract_deb", "sha256_file"]


@dataclass(frozen=True)
class DebPackage:
    """One exact package version as apt's index describes it."""

    name: str
    arch: str
    version: str
    sha256: str
    size: int
    depends: str

    @property
    def spec(self) -> str:
        return f"{self.name}:{self.arch}={self.version}"


def sha256_file(path: Path) -> str:
    """Hex SHA256 of a file (hashlib.file_digest: chunked, without holding it in memory)."""
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _apt_index_stamp() -> str:
    """Changes whenever apt's index does (apt-get update) or dpkg's architectures do."""
    parts = []
    for p in (Path("/var/lib/apt/lists"), Path("/var/lib/dpkg/arch")):
        try:
            st = p.stat()
            parts.append(f"{p}:{st.st_mtime_ns}")
        except OSError:
            parts.append(f"{p}:-")
    lists = Path("/var/lib/apt/lists")
    if lists.is_dir():
        parts += [f"{f.name}:{f.stat().st_mtime_ns}" for f in sorted(lists.glob("*_Packages*"))]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def apt_show(name: str, arch: str) -> dict[str, str]:
    """The candidate version's fields from ``apt-cache show`` (deb822 stanza as a dict).

    apt-cache takes seconds on a loaded machine, and a boot asks several times, so answers
    are memoised on disk, keyed by the state of apt's index: an ``apt-get update`` that brings
    new versions invalidates them.
    """
    memo = cache_dir() / "apt-show" / f"{_apt_index_stamp()}.json"
    try:
        known = json.loads(memo.read_text())
    except (OSError, json.JSONDecodeError):
        known = {}
    key = f"{name}:{arch}"
    if key not in known:
        known[key] = _apt_show_uncached(name, arch)
        memo.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(known, indent=1, sort_keys=True))
        os.replace(tmp, memo)
    return dict(known[key])


def _apt_show_uncached(name: str, arch: str) -> dict[str, str]:
    require_tool("apt-cache", "apt")
    if arch != "amd64":
        require_i386_arch()
    proc = subprocess.run(
        ["apt-cache", "show", "--no-all-versions", f"{name}:{arch}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0 or not proc.stdout.strip():
        raise LabError(
            f"apt does not know {name}:{arch}: run 'apt-get update' (README set-up) "
            f"({proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else 'no candidate'})"
        )
    # the first stanza (the candidate); continuation lines are kept one per line, stripped
    stanza = Deb822(proc.stdout.splitlines())
    return {k: "\n".join(part.strip() for part in v.split("\n")) for k, v in stanza.items()}


def resolve_package(name: str, arch: str) -> DebPackage:
    """Describe the candidate version of ``name:arch``."""
    f = apt_show(name, arch)
    return DebPackage(
        name=f.get("Package", name),
        arch=arch,
        version=f["Version"],
        sha256=f["SHA256"],
        size=int(f.get("Size", "0")),
        depends=f.get("Depends", ""),
    )


def resolve_metapackage_image(meta: str, arch: str) -> DebPackage:
    """``linux-image-686-pae`` depends on exactly one versioned image: return that package."""
    dep = resolve_package(meta, arch).depends
    m = re.match(r"\s*(linux-image-[^\s,(]+)", dep)
    if not m:
        raise LabError(f"cannot find the kernel image {meta}:{arch} depends on (Depends: {dep!r})")
    return resolve_package(m.group(1), arch)


def fetch_deb(pkg: DebPackage) -> Path:
    """Download ``pkg`` into the cache (once) and return the verified .deb path."""
    dest = cache_dir() / "debs" / f"{pkg.name}_{pkg.sha256[:16]}.deb"
    if dest.is_file() and sha256_file(dest) == pkg.sha256:
        return dest
    require_tool("apt-get", "apt")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        os.chmod(tmp, 0o755)  # apt's _apt user must be able to write here when not root
        proc = subprocess.run(
            ["apt-get", "download", "-q", pkg.spec],
            cwd=tmp,
            capture_output=True,
            text=True,
            check=False,
        )
        debs = list(Path(tmp).glob("*.deb"))
        if proc.returncode != 0 or len(debs) != 1:
            last = (proc.stderr.strip().splitlines() or ["no file"])[-1]
            raise LabError(f"apt-get download {pkg.spec} failed: {last}")
        got = sha256_file(debs[0])
        if got != pkg.sha256:
            raise LabError(f"{pkg.spec}: downloaded sha256 {got} does not match apt's {pkg.sha256}")
        os.replace(debs[0], dest)
    return dest


def extract_deb(deb: Path, dest: Path) -> None:
    """Unpack a .deb's data into ``dest`` (dpkg-deb -x; no maintainer scripts run)."""
    require_tool("dpkg-deb", "dpkg")
    dest.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["dpkg-deb", "-x", str(deb), str(dest)], capture_output=True, text=True)
    if proc.returncode != 0:
        shutil.rmtree(dest, ignore_errors=True)
        raise LabError(f"dpkg-deb -x {deb.name} failed: {proc.stderr.strip()}")
