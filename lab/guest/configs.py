"""What a guest boots: the defaults every boot shares and one configuration's kernel and args.

These types live in the guest layer, not in lab/config.py, so data flows one way: the plan
layer (lab/config.py, which loads and validates configurations by name) imports them and
re-exports them, and the guest never imports the plan layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..paths import vm_dir
from ..tomlfile import load_toml

__all__ = ["BootDefaults", "GuestConfig", "load_boot_defaults"]


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
class GuestConfig:
    """vm/configs/NAME.toml: a kernel plus the arguments it boots with."""

    name: str
    description: str
    kernel: str
    cmdline: tuple[str, ...]


def load_boot_defaults(root: Path | None = None) -> BootDefaults:
    """Read vm/guest.toml."""
    path = (root or vm_dir()) / "guest.toml"
    boot = load_toml(path, "boot defaults")["boot"]
    return BootDefaults(
        qemu=str(boot["qemu"]),
        cpu=str(boot["cpu"]),
        machine=str(boot["machine"]),
        mem=str(boot["mem"]),
        cpus=int(boot["cpus"]),
        ready_timeout=float(boot["ready_timeout"]),
        cmdline=tuple(str(a) for a in boot["cmdline"]),
    )
