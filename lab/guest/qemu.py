"""Build the QEMU command line in one place, as a pure function of a BootSpec.

``lab up --dry-run`` prints exactly what :func:`build_qemu_argv` returns (shlex-joined), and
the unit tests check it, so what is shown is what runs.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..errors import MissingPackageError, UsageError

__all__ = [
    "BootSpec",
    "build_qemu_argv",
    "kernel_cmdline",
    "format_argv",
    "qemu_version",
    "MAX_CMDLINE",
]

#: x86's COMMAND_LINE_SIZE.
MAX_CMDLINE = 2048
_SAFE_ARG = re.compile(r"[A-Za-z0-9_.,:/=+@%-]+")


@dataclass(frozen=True)
class BootSpec:
    """Everything one boot needs; paths are absolute."""

    qemu: str
    kernel: Path
    initrd: Path
    cmdline: str
    mem_mib: int
    cpus: int
    cpu_model: str
    machine: str
    accel: str  # "tcg" or "kvm"
    icount: bool
    console_log: Path
    agent_socket: Path
    qmp_socket: Path
    # cost model (issue 12): the value of QEMU's -plugin option, "" for none
    plugin: str = ""


def kernel_cmdline(args: list[str] | tuple[str, ...]) -> str:
    """Join kernel arguments, refusing any that the kernel's parser would split or mangle."""
    for a in args:
        if not _SAFE_ARG.fullmatch(a):
            raise UsageError(
                f"kernel argument {a!r} cannot be passed safely: use letters, digits and _.,:/=+@%-"
            )
    line = " ".join(args)
    if len(line) >= MAX_CMDLINE:
        raise UsageError(
            f"kernel command line is {len(line)} bytes; the limit is {MAX_CMDLINE - 1}"
        )
    return line


def build_qemu_argv(spec: BootSpec) -> list[str]:
    """Return the full QEMU argv for ``spec``.

    Two serial ports: ttyS0 is the kernel console, appended to a log file; ttyS1 is the agent's
    channel, a Unix socket the host connects to. ``-no-reboot`` turns the guest's panic=-1
    reboot and its power-off into QEMU exiting. ``--icount`` pins guest time to instructions
    (deterministic; FACTS.md: QEMU 7.2 hangs in SMP bring-up with icount, so it forces 1 vCPU).
    """
    if spec.icount and spec.accel != "tcg":
        raise UsageError("--icount needs TCG; it cannot be combined with KVM")
    if spec.plugin and not spec.icount:  # cost model: deterministic counts need icount
        raise UsageError("a TCG plugin (--cost-model) needs --icount")
    cpus = 1 if spec.icount else spec.cpus
    argv = [
        spec.qemu,
        "-name",
        "ukva-lab",
        "-machine",
        spec.machine,
        "-accel",
        spec.accel,
        "-cpu",
        spec.cpu_model,
        "-m",
        f"{spec.mem_mib}M",
        "-smp",
        str(cpus),
        "-nodefaults",
        "-display",
        "none",
        "-no-reboot",
        "-kernel",
        str(spec.kernel),
        "-initrd",
        str(spec.initrd),
        "-append",
        spec.cmdline,
        "-chardev",
        f"file,id=console,path={spec.console_log},append=on",
        "-serial",
        "chardev:console",
        "-chardev",
        f"socket,id=agent,path={spec.agent_socket},server=on,wait=off",
        "-serial",
        "chardev:agent",
        "-qmp",
        f"unix:{spec.qmp_socket},server=on,wait=off",
    ]
    if spec.icount:
        argv += ["-icount", "shift=0,sleep=off"]
    if spec.plugin:
        argv += ["-plugin", spec.plugin]
    return argv


def format_argv(argv: list[str]) -> str:
    """The argv as one copy-pasteable shell line."""
    return shlex.join(argv)


def qemu_version(binary: str) -> str:
    """``QEMU emulator version 7.2.x`` → ``7.2.x``; MissingPackageError when not installed."""
    if not shutil.which(binary):
        raise MissingPackageError(binary, "qemu-system-x86")
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False).stdout
    m = re.search(r"version\s+(\S+)", out)
    return m.group(1) if m else out.strip().splitlines()[0] if out.strip() else "unknown"
