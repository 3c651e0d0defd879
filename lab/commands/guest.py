"""``lab up``, ``lab status``, ``lab exec``, ``lab down``: the persistent guest's lifecycle."""

from __future__ import annotations

import fcntl
import os
import time
from typing import Annotated, Any

import typer

from .. import ui
from ..config import list_configs, load_config
from ..errors import LabError
from ..guest.boot import BootOptions, default_instance, plan_boot, provision
from ..guest.qemu import build_qemu_argv, format_argv
from ..guest.vm import Guest
from ..parsing import parse_meminfo
from ..sizes import parse_mem_mib
from .common import AppendOpt, CpusOpt, IcountOpt, JsonOpt, MemOpt, cli_errors, print_json

__all__ = ["up", "status", "exec_cmd", "down", "guest_status"]


def _boot_lock() -> int:
    fd = os.open(default_instance().ensure_dir() / "boot.lock", os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise LabError("another 'lab up' is booting the guest right now") from None
    return fd


@cli_errors
def up(
    config: Annotated[
        str, typer.Option(help=f"Configuration under vm/configs/: {', '.join(list_configs())}.")
    ] = "highpte",
    mem: MemOpt = "8G",
    cpus: CpusOpt = 2,
    icount: IcountOpt = False,
    accel: Annotated[
        str, typer.Option(help="auto (KVM only if a probe boot works), tcg or kvm.")
    ] = "auto",
    append: AppendOpt = None,
    timeout: Annotated[
        float | None, typer.Option(help="Seconds to wait for the agent (default: vm/guest.toml).")
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Print the QEMU command and what would be fetched or built; do nothing.",
        ),
    ] = False,
    cost_model: Annotated[
        str | None,
        typer.Option("--cost-model", help="Load the cost plugin with this machine model "
                     "(implies --icount); each `lab exec` is one window (issue 12)."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Provision and boot the 32-bit PAE guest; return once its agent answers."""
    cfg = load_config(config)
    opts = BootOptions(
        mem_mib=parse_mem_mib(mem),
        cpus=cpus,
        icount=icount,
        accel=accel,
        append=tuple(append or ()),
        cost_model=cost_model,
    )
    inst = default_instance()
    running = Guest.running(inst)
    if running and not dry_run:
        raise LabError(
            f"a guest is already running (config {running.state.get('config')}, "
            f"pid {running.state.get('pid')}): 'lab down' first"
        )
    plan = plan_boot(cfg, opts, inst)
    if dry_run:
        for line in plan.actions():
            ui.out_console.print(line, soft_wrap=True)
        typer.echo(format_argv(build_qemu_argv(plan.spec)))
        return
    lock = _boot_lock()
    try:
        plan, _kernel = provision(plan)
        t0 = time.monotonic()
        with ui.step(
            f"Booting {cfg.name} ({plan.spec.mem_mib // 1024} GiB, "
            f"{plan.meta['cpus']} vCPU, {plan.spec.accel})"
        ):
            guest = Guest.boot(
                inst,
                plan.spec,
                plan.meta,
                timeout if timeout is not None else plan.ready_timeout,
                die_with_parent=False,  # the one guest meant to outlive its command
            )
    finally:
        os.close(lock)
    if json_out:
        print_json(guest_status(guest))
    else:
        ui.out_console.print(
            f"guest up: {cfg.name}, kernel {guest.state.get('release')}, "
            f"agent ready in {time.monotonic() - t0:.1f} s (console: {inst.console_log})"
        )


def guest_status(guest: Guest | None, agent_timeout: float = 10.0) -> dict[str, Any]:
    """The guest's state as data: host process facts plus what the guest reports.

    A QEMU that is gone, or whose pid now belongs to another program, gives ``running``
    False with ``lost`` (and ``stale``); a live QEMU whose agent does not answer a ping within
    ``agent_timeout`` s gives ``agent_answers`` False and no guest facts (nothing blocks).
    """
    if guest is None:
        return {"running": False}
    stale = guest.stale_reason()
    proc = guest.process()
    st = guest.state
    out: dict[str, Any] = {
        "running": proc is not None,
        "config": st.get("config"),
        "kernel": st.get("release"),
        "cmdline": st.get("cmdline"),
        "accel": st.get("accel"),
        "timing": st.get("timing"),
        "qemu_pid": st.get("pid"),
        "console_log": st.get("console_log"),
        "ready_seconds": st.get("ready_seconds"),
    }
    if proc is None:
        out["stale"] = stale
        lost = guest.lost_reason(settle=0)
        out["lost"] = lost if not stale or "exited" in stale else f"{lost}; {stale}"
        return out
    with proc.oneshot():
        cpu = proc.cpu_times()
        out["qemu_cpu_seconds"] = round(cpu.user + cpu.system, 2)
        out["qemu_rss_bytes"] = proc.memory_info().rss
    out["agent_answers"] = guest.agent_answers(agent_timeout)
    if not out["agent_answers"]:
        return out
    res = guest.exec(["cat", "/proc/uptime", "/proc/meminfo"], timeout=30)
    first, _, rest = res.stdout.partition("\n")
    out["uptime_seconds"] = float(first.split()[0])
    mem = parse_meminfo(rest)
    for key in (
        "MemTotal",
        "HighTotal",
        "LowTotal",
        "MemFree",
        "HighFree",
        "LowFree",
        "PageTables",
    ):
        out[f"{key}_kB"] = mem.get(key)
    return out


@cli_errors
def status(
    json_out: JsonOpt = False,
) -> None:
    """Is the guest running? Its configuration, kernel, uptime, memory and QEMU's CPU and RSS."""
    inst = default_instance()
    guest = Guest.recorded(inst)
    data = guest_status(guest)
    if guest is not None and not data["running"]:
        guest.forget()  # stale: QEMU gone or its pid reused; the console log is kept
        data["cleaned"] = True
    if json_out:
        print_json(data)
        return
    if not data["running"]:
        msg = "no guest running"
        if data.get("lost"):
            msg += (
                f" (the last one was lost: {data['lost']}; its state was cleaned up; "
                f"console: {data['console_log']})"
            )
        ui.out_console.print(msg, soft_wrap=True)
        return
    if not data["agent_answers"]:
        ui.out_console.print(
            f"not answering: {data['config']} (QEMU pid {data['qemu_pid']} alive, "
            f"cpu {data['qemu_cpu_seconds']:.1f} s) but its agent did not answer a ping; "
            f"'lab down' stops it (console: {data['console_log']})",
            soft_wrap=True,
        )
        return
    gib = 1024 * 1024
    ui.out_console.print(
        f"running: {data['config']}  kernel {data['kernel']}  accel {data['accel']}  "
        f"uptime {data['uptime_seconds']:.0f} s\n"
        f"memory:  MemTotal {data['MemTotal_kB'] / gib:.2f} GiB  "
        f"HighTotal {data['HighTotal_kB'] / gib:.2f} GiB  LowTotal {data['LowTotal_kB'] / 1024:.0f} MiB\n"
        f"qemu:    pid {data['qemu_pid']}  cpu {data['qemu_cpu_seconds']:.1f} s  "
        f"rss {data['qemu_rss_bytes'] / 2**20:.0f} MiB\n"
        f"cmdline: {data['cmdline']}",
        soft_wrap=True,
    )


@cli_errors
def exec_cmd(
    command: Annotated[list[str], typer.Argument(help="The command and its arguments (after --).")],
    timeout: Annotated[
        float, typer.Option(help="Kill the command after this many seconds (0: never).")
    ] = 0,
    json_out: JsonOpt = False,
) -> None:
    """Run a command in the guest; its stdout, stderr and exit code come back."""
    if timeout < 0:
        raise LabError("--timeout must be 0 or positive")
    guest = Guest.running(default_instance())
    if guest is None:
        raise LabError("no guest running: 'lab up' first")
    res = guest.exec(command, timeout=timeout)
    if json_out:
        print_json(
            {
                "rc": res.rc,
                "signal": res.signal,
                "timed_out": res.timed_out,
                "stdout": res.stdout,
                "stderr": res.stderr,
                "wall_ns": res.wall_ns,
            }
        )
    else:
        typer.echo(res.stdout, nl=False)
        typer.echo(res.stderr, nl=False, err=True)
        if res.timed_out:
            ui.warn(f"killed after {timeout:g} s")
    raise typer.Exit(res.rc if res.rc >= 0 else 128 + res.signal)


@cli_errors
def down(
    timeout: Annotated[
        float, typer.Option(help="Seconds for a clean power-off before QEMU is killed.")
    ] = 30,
) -> None:
    """Power the guest off (agent, then QMP quit, then kill); nothing is left behind."""
    inst = default_instance()
    guest = Guest.running(inst)
    if guest is None:
        stale = Guest.recorded(inst)
        if stale is not None:
            reason = stale.stale_reason() or "state without a process"
            stale.forget()
            ui.out_console.print(f"no guest running (cleaned up stale state: {reason})")
        else:
            inst.state_file.unlink(missing_ok=True)
            ui.out_console.print("no guest running")
        return
    how = guest.shutdown(timeout)
    ui.out_console.print(f"guest down ({how})")
