"""Guest configurations are data: one TOML file per configuration under vm/configs/.

A configuration names a kernel description (vm/kernels/NAME.toml) and the extra kernel
command-line arguments to boot it with. Adding a configuration means adding a file, never
an if-chain in code.

This is the plan layer: it finds configurations by name and validates them. The types the
guest and kernel layers need (GuestConfig, BootDefaults, KernelDescription) live in those
layers and are re-exported here, so nothing below imports this module.
"""

from __future__ import annotations

from pathlib import Path

from .errors import UsageError
from .guest.configs import BootDefaults, GuestConfig, load_boot_defaults
from .kernels.description import KernelDescription, load_kernel_description
from .paths import vm_dir
from .tomlfile import load_toml

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
    data = load_toml(path, "configuration")
    try:
        return GuestConfig(
            name=name,
            description=str(data.get("description", "")),
            kernel=str(data["kernel"]),
            cmdline=tuple(str(a) for a in data.get("cmdline", [])),
        )
    except KeyError as e:
        raise UsageError(f"{path}: missing key {e.args[0]!r}") from e


def parse_config_list(text: str, root: Path | None = None) -> list[GuestConfig]:
    """Parse ``highpte,lowpte`` into loaded configurations, rejecting unknown and repeated names."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise UsageError("no configuration given: choose from " + ", ".join(list_configs(root)))
    if len(set(names)) != len(names):
        raise UsageError(f"configuration listed twice in {text!r}")
    return [load_config(n, root) for n in names]
