"""The QEMU command line is built in one pure function; check what it promises."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from lab.errors import UsageError
from lab.guest.qemu import BootSpec, build_qemu_argv, format_argv, kernel_cmdline

SPEC = BootSpec(
    qemu="qemu-system-x86_64", kernel=Path("/c/bzImage"), initrd=Path("/c/initrd.gz"),
    cmdline="console=ttyS0,115200 panic=-1", mem_mib=8192, cpus=2, cpu_model="Nehalem",
    machine="pc", accel="tcg", icount=False, console_log=Path("/s/console.log"),
    agent_socket=Path("/s/agent.sock"), qmp_socket=Path("/s/qmp.sock"),
)


def _opt(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


def test_default_boot() -> None:
    argv = build_qemu_argv(SPEC)
    assert argv[0] == "qemu-system-x86_64"
    assert _opt(argv, "-cpu") == ["Nehalem"] and _opt(argv, "-accel") == ["tcg"]
    assert _opt(argv, "-m") == ["8192M"] and _opt(argv, "-smp") == ["2"]
    assert _opt(argv, "-append") == [SPEC.cmdline]
    assert "-no-reboot" in argv, "a panic must end QEMU, not reboot the guest"
    assert "-icount" not in argv
    # console first (ttyS0), agent second (ttyS1)
    assert _opt(argv, "-serial") == ["chardev:console", "chardev:agent"]
    assert any("path=/s/console.log" in c for c in _opt(argv, "-chardev"))
    assert _opt(argv, "-qmp") == ["unix:/s/qmp.sock,server=on,wait=off"]


def test_icount_forces_one_vcpu() -> None:
    argv = build_qemu_argv(replace(SPEC, icount=True, cpus=4))
    assert _opt(argv, "-icount") == ["shift=0,sleep=off"]
    assert _opt(argv, "-smp") == ["1"]


def test_icount_refuses_kvm() -> None:
    with pytest.raises(UsageError, match="TCG"):
        build_qemu_argv(replace(SPEC, icount=True, accel="kvm"))


def test_format_argv_quotes_for_the_shell() -> None:
    line = format_argv(build_qemu_argv(SPEC))
    assert "-append 'console=ttyS0,115200 panic=-1'" in line


def test_kernel_cmdline_quoting() -> None:
    assert kernel_cmdline(["console=ttyS0", "userpte=nohigh"]) == "console=ttyS0 userpte=nohigh"
    for bad in ["a b", 'x="y"', "x\n", "$(reboot)", "a;b", ""]:
        with pytest.raises(UsageError):
            kernel_cmdline([bad])
    with pytest.raises(UsageError, match="limit"):
        kernel_cmdline(["x=" + "a" * 2100])
