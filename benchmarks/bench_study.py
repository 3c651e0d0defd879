"""bench-study: host wall time of one `lab study` on 1 and on 2 Dask workers, in one run.

Runs ``lab study PLAN --workers 1 --new`` and then ``--workers 2 --new`` (the ftrace backend,
a fresh results directory each) and reports both wall times and their ratio (2 workers / 1;
the issue's goal is <= 0.6 on the 2-core machine). Both runs cut the plan into the same units
(one boot per configuration and cell), so the ratio is the parallelism alone, not a
different amount of booting. The kernels and the guest image must be in the cache already
(one `lab study PLAN` or `lab up` first), or the first run pays for them.

    python3 benchmarks/bench_study.py --plan analysis/ukva/plan.toml
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def study(plan: str, workers: int) -> dict:  # type: ignore[type-arg]
    with tempfile.TemporaryDirectory(prefix="ukva-bench-study-") as tmp:
        env = {**os.environ, "UKVA_LAB_RESULTS": str(Path(tmp) / "results"),
               "UKVA_LAB_STATE": str(Path(tmp) / "state")}
        t0 = time.monotonic()
        res = subprocess.run([sys.executable, "-m", "lab", "study", plan, "--backend", "ftrace",
                              "--workers", str(workers), "--new"],
                             capture_output=True, text=True, env=env, check=False)
        wall = time.monotonic() - t0
        if res.returncode != 0:
            raise SystemExit(f"lab study --workers {workers} failed ({res.returncode}): "
                             f"{res.stderr.strip()[-2000:]}")
        boots = res.stderr.count("✓ Booting")
    return {"workers": workers, "wall_s": round(wall, 1), "boots": boots}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plan", default="analysis/ukva/plan.toml")
    ap.add_argument("--json", action="store_true", help="one JSON document on stdout")
    args = ap.parse_args()
    one = study(args.plan, 1)
    two = study(args.plan, 2)
    out = {"plan": args.plan, "cpus": os.cpu_count(), "one": one, "two": two,
           "ratio": round(two["wall_s"] / one["wall_s"], 3)}
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"plan {args.plan} on {out['cpus']} CPUs")
    for r in (one, two):
        print(f"  --workers {r['workers']}: {r['wall_s']:8.1f} s wall ({r['boots']} boots)")
    print(f"  ratio 2/1: {out['ratio']:.2f} (goal <= 0.6)")


if __name__ == "__main__":
    main()
