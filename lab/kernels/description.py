"""Kernel descriptions (vm/kernels/NAME.toml): where a kernel comes from.

The type lives in the kernels layer, which is what consumes it; lab/config.py (the plan layer)
re-exports it, and nothing here imports the plan layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..paths import vm_dir
from ..tomlfile import load_toml

__all__ = ["KernelDescription", "load_kernel_description"]


@dataclass(frozen=True)
class KernelDescription:
    """vm/kernels/NAME.toml: where a kernel comes from (a Debian package or a source build)."""

    name: str
    source: str
    description: str
    data: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


def load_kernel_description(name: str, root: Path | None = None) -> KernelDescription:
    """Load vm/kernels/NAME.toml."""
    root = root or vm_dir()
    path = root / "kernels" / f"{name}.toml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in (root / "kernels").glob("*.toml")))
        raise UsageError(f"unknown kernel {name!r}: known kernels are {known}")
    data = load_toml(path, "kernel description")
    if "source" not in data:
        raise UsageError(f"{path}: missing key 'source'")
    return KernelDescription(
        name=name, source=str(data["source"]), description=str(data.get("description", "")),
        data=data,
    )
