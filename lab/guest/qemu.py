"""Build the QEMU command line in one place, as a pure function of a BootSpec.

``lab up --dry-run`` prints exactly what :func:`build_qemu_argv` returns (shlex-joined), and
the unit tests check it, so what is shown is what runs.
"""

from __future__ import annotations

import ctypes
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ..errors import MissingPackageError, UsageError
from .procident import start_ticks

__all__ = [
    "BootSpec",
    "build_qemu_argv",
    "kernel_cmdline",
    "format_argv",
    "qemu_version",
    "spawn_qemu",
    "MAX_CMDLINE",
    "SMP_TCG_THREAD",
]

#: x86's COMMAND_LINE_SIZE.
MAX_CMDLINE = 2048
#: How the lab's SMP guests run under TCG. Multi-threaded TCG (one host thread per vCPU)
#: hung 2-vCPU guests in text_poke_bp: a vCPU never answered the IPI while probes came off
#: (tests/data/console-soft-lockup.log). Round-robin TCG runs every vCPU in one host thread
#: and has not (benchmarks/smp_probe_cycles.py; README "Soft lockups under TCG").
SMP_TCG_THREAD = "single"
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
    #: TCG threading of an SMP guest: "single" (round-robin: one host thread runs every vCPU),
    #: "multi" (a host thread per vCPU) or None (QEMU's default, multi). The lab's guests use
    #: SMP_TCG_THREAD (README, "Soft lockups under TCG"). Ignored under KVM and for 1 vCPU.
    tcg_thread: str | None = None
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
    (deterministic; docs/FACTS.md: QEMU 7.2 hangs in SMP bring-up with icount, so it forces 1 vCPU).
    """
    if spec.icount and spec.accel != "tcg":
        raise UsageError("--icount needs TCG; it cannot be combined with KVM")
    if spec.plugin and not spec.icount:  # cost model: deterministic counts need icount
        raise UsageError("a TCG plugin (--cost-model) needs --icount")
    cpus = 1 if spec.icount else spec.cpus
    accel = spec.accel
    if spec.tcg_thread not in (None, "single", "multi"):
        raise UsageError(f"unknown TCG threading {spec.tcg_thread!r}: single or multi")
    if accel == "tcg" and cpus > 1 and spec.tcg_thread:
        accel += f",thread={spec.tcg_thread}"
    argv = [
        spec.qemu,
        "-name",
        "ukva-lab",
        "-machine",
        spec.machine,
        "-accel",
        accel,
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


# -- starting QEMU ----------------------------------------------------------------------------

_PR_SET_PDEATHSIG = 1
_prctl: Any
try:  # resolved before any fork: the child must not dlopen anything
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux
    _prctl = None

def _child_setup(parent: int, pdeathsig: bool) -> None:
    """Runs in the forked child before exec (async-signal-safe calls only, no imports)."""
    os.umask(0o077)  # QEMU's sockets (QMP, agent) private to the user whatever the umask
    if pdeathsig and _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl: nobody will signal us
            os.kill(os.getpid(), signal.SIGKILL)


def spawn_qemu(argv: list[str], stderr: IO[bytes] | IO[str], *, die_with_parent: bool
               ) -> subprocess.Popen[bytes]:
    """Start QEMU in its own session (Ctrl-C reaches the lab, which then stops QEMU itself).

    ``die_with_parent``: the guest belongs to this process (a trace, study, profile, test) and
    must not outlive it, even on SIGKILL. PR_SET_PDEATHSIG fires when the *thread* that forked
    exits, so it is used only when forking from the main thread (which lives as long as the
    process); from any other thread a small watchdog process (``lab.guest.watchdog``) polls
    this one instead. ``lab up`` passes False: that guest is long-lived on purpose.
    """
    parent = os.getpid()
    main = threading.current_thread() is threading.main_thread()
    pdeath = die_with_parent and main
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        start_new_session=True,
        preexec_fn=lambda: _child_setup(parent, pdeath),  # noqa: PLW1509 - see _child_setup
    )
    if die_with_parent and not main:
        ids = [str(x) for pid in (parent, proc.pid) for x in (pid, start_ticks(pid))]
        subprocess.Popen(
            [sys.executable, "-m", "lab.guest.watchdog", *ids],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    return proc
