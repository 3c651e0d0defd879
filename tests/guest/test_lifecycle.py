"""`lab up` / `status` / `exec` / `down` on the real 32-bit PAE guest, and its failure paths."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .helpers import lab, lab_json, our_qemus

pytestmark = pytest.mark.guest

GIB_KB = 1024 * 1024


def test_up_status_exec_down(tmp_path: Path) -> None:
    up = lab("up")
    assert up.returncode == 0, up.stderr
    assert "agent ready in" in up.stdout
    try:
        st = lab_json("status")
        assert st["running"] is True and st["config"] == "highpte"
        assert st["HighTotal_kB"] > 4 * GIB_KB, "HighMem must exist for page tables to live there"
        assert st["LowTotal_kB"] < 1 * GIB_KB
        assert st["kernel"].endswith("686-pae")
        assert st["qemu_rss_bytes"] > 0 and st["qemu_cpu_seconds"] > 0
        uname = lab("exec", "--", "uname", "-m")
        assert uname.returncode == 0 and uname.stdout.strip() == "i686"
        failing = lab("exec", "--", "sh", "-c", "echo out; echo err >&2; exit 7")
        assert (failing.returncode, failing.stdout, failing.stderr) == (7, "out\n", "err\n")
        again = lab("up")
        assert again.returncode == 1 and "already running" in again.stderr
        assert len(our_qemus(tmp_path)) == 1
    finally:
        down = lab("down")
    assert down.returncode == 0 and "guest down" in down.stdout
    assert our_qemus(tmp_path) == []


def test_panic_in_running_guest_is_reported(tmp_path: Path) -> None:
    assert lab("up", "--config", "lowpte").returncode == 0
    assert "userpte=nohigh" in lab("exec", "--", "cat", "/proc/cmdline").stdout
    crash = lab("exec", "--", "sh", "-c", "echo c > /proc/sysrq-trigger")
    assert crash.returncode == 3, crash.stderr
    assert "guest lost: panic: Kernel panic - not syncing: sysrq triggered crash" in crash.stderr
    assert "console log:" in crash.stderr
    assert our_qemus(tmp_path) == []
    assert lab("up", "--config", "lowpte").returncode == 0, "a new boot works after a panic"
    lab("down")
    assert our_qemus(tmp_path) == []


def test_boot_panic_is_reported(tmp_path: Path) -> None:
    res = lab("up", "--append", "rdinit=/nonexistent", "--append", "init=/nonexistent")
    assert res.returncode == 3, res.stderr
    assert "guest lost: panic: Kernel panic - not syncing" in res.stderr
    log = Path(res.stderr.split("console log: ")[1].split(")")[0])
    assert log.is_file() and "Kernel panic" in log.read_text()
    assert our_qemus(tmp_path) == []


def test_ctrl_c_during_boot_leaves_no_qemu(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "lab", "up"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    deadline = time.monotonic() + 120
    while not our_qemus(tmp_path):
        assert time.monotonic() < deadline and proc.poll() is None, "QEMU never started"
        time.sleep(0.1)
    time.sleep(1.0)  # in the middle of the boot
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert our_qemus(tmp_path) == []
    assert lab("status", "--json").returncode == 0
