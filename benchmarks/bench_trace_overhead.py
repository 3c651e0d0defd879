"""bench-trace: what counting costs the guest — forkstorm with and without the probes attached.

Every ftrace repeat runs the workload twice in the same boot: detached (its guest time is the
one the lab reports) and attached (the counts). Under --icount (1 vCPU, guest time = executed
instructions) both times are deterministic, so their ratio is the probes' own cost, measured
in one run. Reported per configuration: guest µs per fork clean and probed, and the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--procs", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--config", default="highpte,lowpte")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="ukva-bench-") as tmp:
        env = {**os.environ, "UKVA_LAB_RESULTS": tmp}
        cmd = [sys.executable, "-m", "lab", "trace", "--workload", "forkstorm", "--config",
               args.config, "--icount", "--backend", "ftrace", "--repeat", str(args.repeat),
               "--param", f"procs={args.procs}", "--json"]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
        run_id = json.loads(out)["run_id"]
        lines = (Path(tmp) / run_id / "runs.jsonl").read_text().splitlines()
        recs = [json.loads(line) for line in lines]
    result: dict[str, object] = {"procs": args.procs, "repeat": args.repeat, "timing": "icount"}
    for cfg in args.config.split(","):
        mine = [r for r in recs if r["config"] == cfg]
        clean = [r["guest_elapsed_ns"] / r["units"] / 1000 for r in mine]
        probed = [r["probed_elapsed_ns"] / r["units"] / 1000 for r in mine]
        hits = [sum(v for k, v in r["counts"].items() if "." not in k and k not in
                    ("tlb_flush", "sched_switch")) / r["units"] for r in mine]
        result[cfg] = {
            "guest_us_per_fork_clean": [round(x, 2) for x in clean],
            "guest_us_per_fork_probed": [round(x, 2) for x in probed],
            "kprobe_hits_per_fork": round(statistics.median(hits), 1),
            "overhead_ratio": round(statistics.median(
                p / c for p, c in zip(probed, clean, strict=True)), 4),
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
