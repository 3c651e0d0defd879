"""Run the real `lab` command in a subprocess and find our own QEMU processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil


def lab(*args: str, timeout: float = 600,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`lab ARGS...` exactly as a user runs it (state and results dirs come from the env,
    updated with ``env``: module-scoped guests pass their own state directory)."""
    return subprocess.run(
        [sys.executable, "-m", "lab", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def lab_json(*args: str) -> Any:
    res = lab(*args, "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def qemu_children(pid: int) -> list[psutil.Process]:
    """QEMU processes started by process ``pid`` (any depth): the guests of that command, and
    no other test's or developer's guest that happens to share /tmp's naming."""
    try:
        kids = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []
    return [k for k in kids if "qemu-system" in " ".join(_cmdline(k))]


def _cmdline(p: psutil.Process) -> list[str]:
    try:
        return p.cmdline()
    except psutil.Error:
        return []


def still_running(procs: list[psutil.Process]) -> list[psutil.Process]:
    """Those of ``procs`` still alive (the same process: pid and start time), zombies aside."""
    alive = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                alive.append(p)
        except psutil.Error:
            pass
    return alive


def our_qemus(marker: Path) -> list[psutil.Process]:
    """Live (non-zombie) QEMU processes whose command line mentions ``marker``."""
    found = []
    for p in psutil.process_iter(["name", "cmdline", "status"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if "qemu-system" in cmd and str(marker) in cmd and p.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(p)
    return found
