"""bench-costmodel: what the cost-model plugin costs in host wall time, measured in one run.

Boots the same configuration twice, one guest at a time, both under --icount: once plain and
once with --cost-model (the plugin loaded). In each boot the same workload runs ``--runs``
times through `lab exec`; the host wall time of each run is taken. Reported: boot seconds and
the median run seconds of each, and their ratio (plugin / plain). The guest executes the same
instructions in both (icount), so the ratio is the plugin's own cost: its instrumented
translations and the callbacks on every memory access and block.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time


def _lab(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lab", *args], capture_output=True, text=True,
                          env=env, check=False)


def measure(config: str, workload: list[str], runs: int, cost_model: str | None) -> dict:  # type: ignore[type-arg]
    with tempfile.TemporaryDirectory(prefix="ukva-bench-cost-") as tmp:
        env = {**os.environ, "UKVA_LAB_STATE": tmp}
        up = ["up", "--config", config, "--icount"]
        if cost_model:
            up += ["--cost-model", cost_model]
        t0 = time.monotonic()
        res = _lab(env, *up)
        boot = time.monotonic() - t0
        try:
            if res.returncode != 0:
                raise SystemExit(f"lab up failed: {res.stderr.strip()}")
            _lab(env, "exec", "--", "true")  # the plugin's first window switches it on
            walls = []
            for _ in range(runs):
                t0 = time.monotonic()
                res = _lab(env, "exec", "--", *workload)
                walls.append(time.monotonic() - t0)
                if res.returncode != 0:
                    raise SystemExit(f"{workload[0]} failed: {res.stderr.strip()}")
        finally:
            _lab(env, "down")
    return {"boot_s": round(boot, 1), "run_s": [round(w, 2) for w in walls],
            "median_run_s": round(statistics.median(walls), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="highpte")
    ap.add_argument("--model", default="skylake")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--procs", type=int, default=1000)
    args = ap.parse_args()
    workload = ["/workloads/forkstorm", "--procs", str(args.procs)]
    plain = measure(args.config, workload, args.runs, None)
    plugin = measure(args.config, workload, args.runs, args.model)
    print(json.dumps({
        "config": args.config, "model": args.model, "workload": " ".join(workload),
        "plain": plain, "plugin": plugin,
        "run_ratio": round(plugin["median_run_s"] / plain["median_run_s"], 2),
        "boot_ratio": round(plugin["boot_s"] / plain["boot_s"], 2),
    }, indent=2))


if __name__ == "__main__":
    main()
