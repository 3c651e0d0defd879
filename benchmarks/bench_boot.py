"""bench-boot: warm `lab up` to ready vs a bare QEMU boot of the same kernel and initramfs.

"Ready" is the same point for both: the guest agent answers a ping on ttyS1. The bare boot
runs the identical QEMU argv (from build_qemu_argv) and pings the socket itself, so the ratio
is the lab's own overhead (Python start-up, planning, cache checks, state, progress).
Reported: median of N runs each, and their ratio (goal <= 1.3). Needs a warm cache: the
first `lab up` is run once, untimed, before measuring.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def lab(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "lab", *args], check=True, capture_output=True)


def timed_lab_up() -> float:
    t0 = time.monotonic()
    lab("up")
    dt = time.monotonic() - t0
    lab("down")
    return dt


def timed_bare_boot(argv: list[str], sock: Path) -> float:
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                s = socket.socket(socket.AF_UNIX)
                s.connect(str(sock))
                break
            except OSError:
                time.sleep(0.05)
        s.settimeout(0.5)
        buf = b""
        while b'"pong":true' not in buf:
            s.sendall(b"1 ping -\n")
            try:
                buf += s.recv(4096)
            except TimeoutError:
                pass
        return time.monotonic() - t0
    finally:
        proc.kill()
        proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    from lab.config import load_config
    from lab.guest.boot import BootOptions, plan_boot, provision
    from lab.guest.qemu import build_qemu_argv
    from lab.guest.vm import Instance

    with tempfile.TemporaryDirectory(prefix="ukva-bench-", dir="/tmp") as tmp:
        os.environ["UKVA_LAB_STATE"] = str(Path(tmp) / "state")
        lab("up")  # warm the cache (download, image, KVM probe) untimed
        lab("down")
        inst = Instance(Path(tmp) / "bare")
        plan, _ = provision(plan_boot(load_config("highpte"), BootOptions(), inst))
        argv = build_qemu_argv(plan.spec)
        lab_times, bare_times = [], []
        for _ in range(args.runs):  # interleaved, so drifting machine load hits both alike
            lab_times.append(timed_lab_up())
            inst.prepare()
            bare_times.append(timed_bare_boot(argv, inst.agent_socket))
    lab_med, bare_med = statistics.median(lab_times), statistics.median(bare_times)
    result = {
        "runs": args.runs,
        "lab_up_seconds": [round(t, 2) for t in lab_times],
        "bare_qemu_seconds": [round(t, 2) for t in bare_times],
        "lab_up_median": round(lab_med, 2),
        "bare_qemu_median": round(bare_med, 2),
        "ratio": round(lab_med / bare_med, 3),
        "goal": "<= 1.3",
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
