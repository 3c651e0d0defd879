"""Guest configurations are data: one TOML file per configuration under vm/configs/.

A configuration names a kernel description (vm/kernels/NAME.toml) and the extra kernel
command-line arguments to boot it with. Adding a configuration means adding a file, never
an if-chain in code.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import UsageError
from .paths import vm_dir

__all__ = [
    "BootDefaults",
    "GuestConfig",
    "KernelDescription",
    "load_boot_defaults",
    "list_configs",
    "load_config",
    "load_kernel_description",
    "parse_config_list",
]


@dataclass(frozen=True)
class BootDefaults:
    """vm/guest.toml: what every boot shares (QEMU binary, CPU model, memory, console args)."""

    qemu: str
    cpu: str
    machine: str
    mem: str
    cpus: int
    ready_timeout: float
    cmdline: tuple[str, ...]


@dataclass(frozen=True)
class KernelDescription:
    """vm/kernels/NAME.toml: where a kernel comes from (a Debian package or a source build)."""

    name: str
    source: str
    description: str
    data: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class GuestConfig:
    """vm/configs/NAME.toml: a kernel plus the arguments it boots with."""

    name: str
    description: str
    kernel: str
    cmdline: tuple[str, ...]


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"{path}: not valid TOML: {e}") from e


def load_boot_defaults(root: Path | None = None) -> BootDefaults:
    """Read vm/guest.toml."""
    boot = _read_toml((root or vm_dir()) / "guest.toml")["boot"]
    return BootDefaults(
        qemu=str(boot["qemu"]),
        cpu=str(boot["cpu"]),
        machine=str(boot["machine"]),
        mem=str(boot["mem"]),
        cpus=int(boot["cpus"]),
        ready_timeout=float(boot["ready_timeout"]),
        cmdline=tuple(str(a) for a in boot["cmdline"]),
    )


def list_configs(root: Path | None = None) -> list[str]:
    """Names of the configurations shipped under vm/configs/, sorted."""
    return sorted(p.stem for p in ((root or vm_dir()) / "configs").glob("*.toml"))


def load_config(name: str, root: Path | None = None) -> GuestConfig:
    """Load one configuration; an unknown name is a UsageError listing the valid ones."""
    root = root or vm_dir()
    path = root / "configs" / f"{name}.toml"
    if not name or "/" in name or not path.is_file():
        valid = ", ".join(list_configs(root))
        raise UsageError(f"unknown configuration {name!r}: choose from {valid}")
    data = _read_toml(path)
    try:
        return GuestConfig(
            name=name,
            description=str(data.get("description", "")),
            kernel=str(data["kernel"]),
            cmdline=tuple(str(a) for a in data.get("cmdline", [])),
        )
    except KeyError as e:
        raise UsageError(f"{path}: missing key {e.args[0]!r}") from e


def load_kernel_description(name: str, root: Path | None = None) -> KernelDescription:
    """Load vm/kernels/NAME.toml."""
    root = root or vm_dir()
    path = root / "kernels" / f"{name}.toml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in (root / "kernels").glob("*.toml")))
        raise UsageError(f"unknown kernel {name!r}: known kernels are {known}")
    data = _read_toml(path)
    if "source" not in data:
        raise UsageError(f"{path}: missing key 'source'")
    return KernelDescription(
        name=name, source=str(data["source"]), description=str(data.get("description", "")),
        data=data,
    )


def parse_config_list(text: str, root: Path | None = None) -> list[GuestConfig]:
    """Parse ``highpte,lowpte`` into loaded configurations, rejecting unknown and repeated names."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise UsageError("no configuration given: choose from " + ", ".join(list_configs(root)))
    if len(set(names)) != len(names):
        raise UsageError(f"configuration listed twice in {text!r}")
    return [load_config(n, root) for n in names]
