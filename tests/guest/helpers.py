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


def our_qemus(marker: Path) -> list[psutil.Process]:
    """Live (non-zombie) QEMU processes whose command line mentions ``marker``."""
    found = []
    for p in psutil.process_iter(["name", "cmdline", "status"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if "qemu-system" in cmd and str(marker) in cmd and p.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(p)
    return found
