"""Which process is this pid? Identity by (pid, start time in clock ticks since boot).

A pid alone is not an identity (pids are recycled), and neither is psutil's ``create_time()``:
it adds the boot time, which it reads from /proc/stat on every call as wall clock minus
uptime, so when the host's wall clock is stepped (NTP, or a virtual machine paused and resumed:
"crng reseeded due to virtual machine fork" in dmesg) every process's ``create_time()`` moves
by the step. Compared across such a step, a live QEMU looks like a recycled pid: a watchdog
then kills a healthy guest or gives up guarding one, and ``lab status`` forgets a running one.
Field 22 of /proc/PID/stat, the start time in clock ticks since boot, never changes.
"""

from __future__ import annotations


def _stat_fields(pid: int) -> list[bytes] | None:
    """/proc/PID/stat from field 3 (state) on, or None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # field 2 (comm) is in parentheses and may itself contain spaces and parentheses
    return stat[stat.rindex(b")") + 2:].split()


def start_ticks(pid: int) -> int | None:
    """The start time of process ``pid`` in clock ticks since boot; None if there is none."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None  # fields[0] is field 3, so field 22 is [19]


def is_running(pid: int, ticks: int) -> bool:
    """True while the process that started at ``ticks`` holds ``pid`` and has not exited."""
    fields = _stat_fields(pid)
    if not fields:
        return False
    return int(fields[19]) == ticks and fields[0] not in (b"Z", b"X")
