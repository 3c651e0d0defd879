"""Kernels the guest can boot, behind one small interface.

A kernel description (vm/kernels/NAME.toml) names its ``source``; each source kind is one
module here, registered in :data:`PROVIDERS`. A provider can say what it would do
(``plan``, for --dry-run) and can produce a :class:`KernelArtifact` (``ensure``), cached
outside the repo and keyed by content.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..errors import UsageError
from .description import KernelDescription

__all__ = ["KernelArtifact", "KernelProvider", "PROVIDERS", "provider_for", "load_artifact"]


@dataclass(frozen=True)
class KernelArtifact:
    """A bootable kernel in the cache, with what runs must record about it."""

    name: str
    bzimage: Path
    system_map: Path | None
    config: Path | None
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def write(self, directory: Path) -> None:
        """Store the metadata beside the image (meta.json)."""
        (directory / "meta.json").write_text(json.dumps(self.meta, indent=2, sort_keys=True))


def load_artifact(name: str, directory: Path) -> KernelArtifact | None:
    """Read back a cached kernel written by a provider, or None when incomplete."""
    meta_path = directory / "meta.json"
    bz = directory / "bzImage"
    if not (meta_path.is_file() and bz.is_file()):
        return None
    sm, cfg = directory / "System.map", directory / "config"
    return KernelArtifact(
        name=name,
        bzimage=bz,
        system_map=sm if sm.is_file() else None,
        config=cfg if cfg.is_file() else None,
        meta=json.loads(meta_path.read_text()),
    )


class KernelProvider(Protocol):
    """Turns a kernel description into a bootable kernel."""

    def plan(self, desc: KernelDescription) -> list[str]:
        """Human lines saying what ``ensure`` would download or build (nothing is done)."""
        ...

    def ensure(self, desc: KernelDescription) -> KernelArtifact:
        """Return the cached kernel, fetching or building it first when needed."""
        ...

    def bzimage_path(self, desc: KernelDescription) -> Path:
        """Where the bzImage is (or will be) in the cache: known before it exists."""
        ...

    def status(self, desc: KernelDescription) -> dict[str, Any]:
        """Cache key, built or not, and the inputs, for `lab kernel list/show`."""
        ...


def _providers() -> dict[str, KernelProvider]:
    from .debian_package import DebianPackageKernel
    from .source_build import SourceBuiltKernel

    return {"debian-package": DebianPackageKernel(), "source": SourceBuiltKernel()}


PROVIDERS = _providers()


def provider_for(desc: KernelDescription) -> KernelProvider:
    """The provider for ``desc.source``; UsageError naming the known kinds otherwise."""
    try:
        return PROVIDERS[desc.source]
    except KeyError:
        raise UsageError(
            f"kernel {desc.name!r}: unknown source {desc.source!r} "
            f"(known: {', '.join(sorted(PROVIDERS))})"
        ) from None
