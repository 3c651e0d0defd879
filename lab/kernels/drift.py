"""Source drift: which kernel source the archive serves now, what each kernel was built from,
and whether each patch series still applies.

Debian's archive keeps only the newest ``linux-source-6.1``, so a patch series written against
one version can stop applying the day a new one is published. ``lab kernel check`` asks apt's
index for the served version (no download unless a series must be tried), reads the version
each kernel was last built from out of the build cache, and applies each series to a
hard-linked copy of the served tree exactly as a build would (``patch -p1 -F0``), so a series
that no longer applies is named with its patch and hunk before anyone waits for a build.
Stock (Debian package) kernels are reported too; they never depend on a series.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from ..debian import resolve_metapackage_image
from ..errors import LabError
from ..paths import cache_dir
from .description import KernelDescription
from .source_build import PatchError, PatchInput, apply_patches, resolve_inputs, source_tree

__all__ = ["last_built_version", "series_applies", "check_kernel"]


def last_built_version(kernel: str, root: Path | None = None) -> str | None:
    """The source version of the newest cached build of ``kernel`` (any key), or None."""
    builds = (root or cache_dir() / "kernels" / "source")
    newest: tuple[float, str] | None = None
    for meta in builds.glob("*/meta.json"):
        try:
            data = json.loads(meta.read_text())
        except (OSError, ValueError):
            continue
        if data.get("kernel") != kernel or "package_version" not in data:
            continue
        stamp = meta.stat().st_mtime
        if newest is None or stamp > newest[0]:
            newest = (stamp, str(data["package_version"]))
    return newest[1] if newest else None


def series_applies(pristine: Path,
                   patches: list[PatchInput] | tuple[PatchInput, ...]) -> tuple[bool, str]:
    """Apply ``patches`` to a hard-linked copy of ``pristine``; (ok, what happened).

    ``patch`` replaces each file it changes rather than writing through the link, so the
    pristine tree stays untouched (the same property the build relies on)."""
    if not patches:
        return True, "no patches"
    with tempfile.TemporaryDirectory(prefix=".check-", dir=pristine.parent) as tmp:
        tree = Path(tmp) / "linux"
        proc = subprocess.run(["cp", "-al", str(pristine), str(tree)], capture_output=True,
                              text=True, check=False)
        if proc.returncode != 0:
            raise LabError(f"cp -al of {pristine} failed: {proc.stderr.strip()}")
        try:
            apply_patches(tree, patches)
        except PatchError as e:
            return False, str(e)
    return True, f"{len(patches)} patches apply with -F0"


def check_kernel(desc: KernelDescription, try_patches: bool = True) -> dict[str, Any]:
    """One kernel's drift report: served version, last built version, series verdict."""
    if desc.source == "debian-package":
        pkg = resolve_metapackage_image(desc.data["package"], desc.data.get("arch", "i386"))
        return {"name": desc.name, "source": desc.source, "package": pkg.name,
                "served_version": pkg.version, "last_built_version": None,
                "patches": 0, "applies": None, "detail": "Debian's image: no patch series"}
    inputs = resolve_inputs(desc)
    row: dict[str, Any] = {
        "name": desc.name, "source": desc.source, "package": inputs.package,
        "served_version": inputs.package_version,
        "last_built_version": last_built_version(desc.name),
        "patches": len(inputs.patches), "applies": None, "detail": "not checked",
    }
    if try_patches:
        ok, detail = series_applies(source_tree(inputs), inputs.patches)
        row["applies"], row["detail"] = ok, detail
    return row
