"""SIGKILL of `lab trace` mid-run: its QEMU dies with it and the run directory is intact."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from lab.results import list_runs

from .helpers import our_qemus

pytestmark = pytest.mark.guest


def _qemu_children(pid: int) -> list[psutil.Process]:
    try:
        kids = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [k for k in kids if "qemu-system" in k.name()]


def _lines(path: Path) -> list[str]:
    try:
        return [line for line in path.read_text().splitlines() if line.strip()]
    except OSError:
        return []


def test_sigkill_mid_trace_leaves_no_qemu_and_an_intact_run(tmp_path: Path) -> None:
    results = tmp_path / "results"
    proc = subprocess.Popen(
        [sys.executable, "-m", "lab", "trace", "--workload", "forkstorm", "--config", "highpte",
         "--repeat", "20", "--param", "procs=300", "--backend", "ftrace", "--icount"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 900
        seen = 0
        while seen < 1:  # mid-run: after the first repeat is recorded, long before the 20th
            if proc.poll() is not None:
                pytest.fail(f"lab trace ended early: {proc.communicate()[1]}")
            assert time.monotonic() < deadline, "no repeat recorded within 15 min"
            seen = sum(len(_lines(p)) for p in results.glob("*/runs.jsonl"))
            time.sleep(0.2)
        # the guest measuring right now (a KVM probe boot, if any, came and went before it)
        (qemu,) = [q for q in _qemu_children(proc.pid) if q.status() != psutil.STATUS_ZOMBIE]
        qemu_cmd, qemu_ctime = qemu.cmdline(), qemu.create_time()
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    instance_dir = Path(qemu_cmd[qemu_cmd.index("-qmp") + 1].removeprefix("unix:")
                        .split(",")[0]).parent
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                p = psutil.Process(qemu.pid)
                gone = (p.create_time() != qemu_ctime or p.status() == psutil.STATUS_ZOMBIE)
            except psutil.NoSuchProcess:
                gone = True
            if gone or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert gone, f"QEMU pid {qemu.pid} outlived its SIGKILLed lab trace"
        assert our_qemus(instance_dir) == [], "a QEMU of this run is still alive"
    finally:
        try:  # never leave one behind, even when the assertion above failed
            p = psutil.Process(qemu.pid)
            if p.create_time() == qemu_ctime:
                p.kill()
        except psutil.Error:
            pass
        if instance_dir.name.startswith("ukva-lab-"):  # SIGKILL left its temporary directory
            shutil.rmtree(instance_dir, ignore_errors=True)

    (run,) = list(list_runs())
    manifest = json.loads((run.path / "manifest.json").read_text())
    assert manifest["workload"] == "forkstorm" and manifest["status"] == "running"
    assert manifest["configs"]["highpte"]["qemu_argv"] == qemu_cmd
    lines = _lines(run.path / "runs.jsonl")
    recs = [json.loads(line) for line in lines]  # every line is whole, valid JSON
    assert len(recs) >= seen and len(recs) < 20
    assert [r["repeat"] for r in recs] == list(range(len(recs)))
    assert all(r["units"] == 300 and r["report"]["errors"] == 0 for r in recs)
    assert run.records() == recs
