"""Stock Debian kernels: ``apt-get download`` the image package and unpack its bzImage.

The cache entry is keyed by the .deb's SHA256 from apt's index, so a new Debian point
release gives a new entry and an unchanged index re-uses the old one without a download.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from .. import ui
from ..debian import (
    DebPackage,
    extract_deb,
    fetch_deb,
    resolve_metapackage_image,
    sha256_file,
)
from ..errors import LabError
from ..paths import cache_dir, cache_lock
from . import KernelArtifact, load_artifact
from .description import KernelDescription

__all__ = ["DebianPackageKernel"]


class DebianPackageKernel:
    """Provider for ``source = "debian-package"`` kernel descriptions."""

    @staticmethod
    def _entry(desc: KernelDescription) -> tuple[DebPackage, Path]:
        """The image package apt would fetch and its cache entry (keyed by the .deb's sha256)."""
        pkg = resolve_metapackage_image(desc.data["package"], desc.data.get("arch", "i386"))
        return pkg, cache_dir() / "kernels" / "debian" / pkg.sha256[:16]

    def bzimage_path(self, desc: KernelDescription) -> Path:
        """Where ``ensure`` puts (or has put) the bzImage: known before any download."""
        return self._entry(desc)[1] / "bzImage"

    def status(self, desc: KernelDescription) -> dict[str, Any]:
        """What `lab kernel list/show` print: the key, whether it is cached, the package."""
        pkg, entry = self._entry(desc)
        art = load_artifact(desc.name, entry)
        return {
            "name": desc.name, "source": desc.source, "description": desc.description,
            "cache_key": pkg.sha256, "built": art is not None, "entry": str(entry),
            "package": pkg.name, "package_version": pkg.version,
            "meta": art.meta if art else None,
        }

    def plan(self, desc: KernelDescription) -> list[str]:
        pkg, entry = self._entry(desc)
        if load_artifact(desc.name, entry):
            return [f"kernel: {pkg.name} {pkg.version} (cached in {entry})"]
        return [
            f"kernel: download {pkg.spec} ({pkg.size / 1e6:.0f} MB) with apt-get download",
            f"kernel: unpack its bzImage, System.map and config into {entry}",
        ]

    def ensure(self, desc: KernelDescription) -> KernelArtifact:
        pkg, entry = self._entry(desc)
        cached = load_artifact(desc.name, entry)
        if cached:
            return cached
        with cache_lock(f"deb-{pkg.sha256[:16]}"):
            return load_artifact(desc.name, entry) or self._fill(desc, pkg, entry)

    def _fill(self, desc: KernelDescription, pkg: DebPackage, entry: Path) -> KernelArtifact:
        """Download and unpack the package into ``entry`` (under the entry's lock)."""
        with ui.step(f"Downloading {pkg.name} {pkg.version} ({pkg.size / 1e6:.0f} MB)"):
            deb = fetch_deb(pkg)
        entry.parent.mkdir(parents=True, exist_ok=True)
        with ui.step(f"Unpacking {deb.name}"), tempfile.TemporaryDirectory(dir=entry.parent) as tmp:
            unpacked, out = Path(tmp) / "x", Path(tmp) / "entry"
            extract_deb(deb, unpacked)
            boot = unpacked / "boot"
            vmlinuz = sorted(boot.glob("vmlinuz-*"))
            if len(vmlinuz) != 1:
                raise LabError(f"{deb.name}: expected one boot/vmlinuz-*, found {vmlinuz}")
            release = vmlinuz[0].name.removeprefix("vmlinuz-")
            out.mkdir()
            shutil.copy(vmlinuz[0], out / "bzImage")
            for src, dst in (
                (f"System.map-{release}", "System.map"),
                (f"config-{release}", "config"),
            ):
                if (boot / src).is_file():
                    shutil.copy(boot / src, out / dst)
            meta = {
                "kernel": desc.name,
                "source": "debian-package",
                "package": pkg.name,
                "package_version": pkg.version,
                "deb_sha256": pkg.sha256,
                "release": release,
                "bzimage_sha256": sha256_file(out / "bzImage"),
                "config_sha256": sha256_file(out / "config") if (out / "config").exists() else None,
            }
            KernelArtifact(desc.name, out / "bzImage", None, None, meta).write(out)
            if entry.exists():
                shutil.rmtree(entry)
            os.replace(out, entry)
        artifact = load_artifact(desc.name, entry)
        assert artifact is not None
        return artifact
