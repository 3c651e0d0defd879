"""SMP guests under TCG: round-robin threading, and probe attach/detach cycles without lockups.

The full evidence (20 boots x 10 cycles) is `just smp-evidence`; CI runs one boot of it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import lab

pytestmark = pytest.mark.guest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "smp_probe_cycles.py"


def test_smp_guests_run_round_robin_tcg() -> None:
    res = lab("up", "--dry-run", "--cpus", "2", "--accel", "tcg")
    assert res.returncode == 0, res.stderr
    assert "-accel tcg,thread=single" in res.stdout and "-smp 2" in res.stdout
    res = lab("up", "--dry-run", "--icount")
    assert "-accel tcg " in res.stdout and "-smp 1" in res.stdout, "1 vCPU: QEMU's default"


def test_probe_attach_detach_cycles_on_two_vcpus(tmp_path: Path) -> None:
    log = tmp_path / "boots.jsonl"
    res = subprocess.run(
        [sys.executable, str(SCRIPT), "--boots", "1", "--cycles", "4", "--config", "lowpte",
         "--log", str(log)],
        capture_output=True, text=True, timeout=900,
    )
    assert res.returncode == 0, res.stderr[-2000:] + res.stdout[-2000:]
    summary = json.loads(res.stdout)
    assert summary["qemu_accel"] == ["tcg,thread=single"]
    assert summary["boots"] == 1 and summary["cycles_done"] == 4
    assert summary["soft_lockups"] == 0 and summary["lost"] == []
    assert not [e for e in summary["console_events"] if "lockup" in e or "stall" in e]
    (boot,) = [json.loads(line) for line in log.read_text().splitlines()]
    assert boot["config"] == "lowpte" and len(boot["cycle_s"]) == 4
