"""Process identity by start ticks: immune to wall-clock steps, never fooled by a recycled pid.

The failure this guards against happened on the build machine: its virtual machine was paused
and resumed ("crng reseeded due to virtual machine fork"), the wall clock stepped, every
process's psutil ``create_time()`` moved with it, and the watchdogs of a Dask study's guests
took their live owners and guests for recycled pids: one killed a healthy guest mid-study, two
gave up guarding theirs, which then outlived their killed workers.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from lab.guest.boot import default_instance
from lab.guest.procident import is_running, start_ticks
from lab.guest.vm import Guest


@pytest.fixture
def odd_sleeper(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``sleep 300`` under a name with spaces and parentheses, as /proc/PID/stat's comm
    field shows it: a parser that splits on the first ')' or on spaces misreads every field."""
    odd = tmp_path / "a) b (c"
    shutil.copy(shutil.which("sleep") or "/bin/sleep", odd)
    proc = subprocess.Popen([str(odd), "300"])
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_start_ticks_are_psutils_start_time_without_the_wall_clock(
        odd_sleeper: subprocess.Popen[bytes]) -> None:
    ticks = start_ticks(odd_sleeper.pid)
    assert ticks is not None and ticks > 0
    hz = os.sysconf("SC_CLK_TCK")
    assert abs(psutil.boot_time() + ticks / hz
               - psutil.Process(odd_sleeper.pid).create_time()) < 0.05
    assert start_ticks(odd_sleeper.pid) == ticks, "the same process, the same ticks"
    assert start_ticks(os.getpid()) != ticks


def test_is_running_until_the_process_exits_then_never_again(
        odd_sleeper: subprocess.Popen[bytes]) -> None:
    pid, ticks = odd_sleeper.pid, start_ticks(odd_sleeper.pid)
    assert ticks is not None and is_running(pid, ticks)
    assert not is_running(pid, ticks + 1), "another start time is another process"
    odd_sleeper.send_signal(signal.SIGKILL)
    deadline = time.monotonic() + 10
    while start_ticks(pid) is not None and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert not is_running(pid, ticks), "a zombie has exited"
    odd_sleeper.wait()
    assert not is_running(pid, ticks) and start_ticks(pid) is None


def _state(**state: object) -> Guest:
    inst = default_instance()
    inst.prepare()
    inst.state_file.write_text(json.dumps({"config": "highpte",
                                           "console_log": str(inst.console_log), **state}))
    guest = Guest.recorded(inst)
    assert guest is not None
    return guest


def test_a_wall_clock_step_does_not_make_a_live_guest_stale(
        odd_sleeper: subprocess.Popen[bytes]) -> None:
    """The state of a guest recorded an hour before the clock was stepped: its create_time
    is an hour off, its start ticks are not: still ours."""
    p = psutil.Process(odd_sleeper.pid)
    guest = _state(pid=p.pid, create_time=p.create_time() - 3600,
                   start_ticks=start_ticks(p.pid), argv=p.cmdline())
    assert guest.stale_reason() is None
    assert guest.process() is not None


def test_other_start_ticks_are_a_reused_pid(odd_sleeper: subprocess.Popen[bytes]) -> None:
    p = psutil.Process(odd_sleeper.pid)
    ticks = start_ticks(p.pid)
    assert ticks is not None
    guest = _state(pid=p.pid, create_time=p.create_time(), start_ticks=ticks - 100,
                   argv=p.cmdline())
    assert "reused" in (guest.stale_reason() or "")


def _watchdog(*ids: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lab.guest.watchdog", *map(str, ids)],
                          capture_output=True, text=True, timeout=30)


def test_watchdog_kills_the_guest_of_a_gone_owner(odd_sleeper: subprocess.Popen[bytes]) -> None:
    owner = subprocess.Popen(["true"])
    owner_ticks = start_ticks(owner.pid)
    owner.wait()
    assert owner_ticks is not None
    guest = odd_sleeper.pid
    res = _watchdog(owner.pid, owner_ticks, guest, start_ticks(guest) or 0)
    assert res.returncode == 0, res.stderr
    assert odd_sleeper.wait(10) == -signal.SIGKILL


def test_watchdog_never_kills_a_process_that_is_not_its_guest(
        odd_sleeper: subprocess.Popen[bytes]) -> None:
    """The recorded guest is gone and its pid now belongs to another process (other start
    ticks), and the owner is gone too: the watchdog leaves that process alone."""
    ticks = start_ticks(odd_sleeper.pid)
    assert ticks is not None
    res = _watchdog(999_999_999, 1, odd_sleeper.pid, ticks - 1)
    assert res.returncode == 0, res.stderr
    assert odd_sleeper.poll() is None
