"""bench-trace: what counting costs the guest — forkstorm with and without the probes attached.

Every ftrace repeat runs the workload twice in the same boot: detached (its guest time is the
one the lab reports) and attached (the counts). Under --icount (1 vCPU, guest time = executed
instructions) both times are deterministic, so their ratio is the probes' own cost, measured
in one run. Reported per backend (ftrace, ebpf) and configuration: guest µs per fork clean and
probed, the ratio, and the cost per probe hit: (probed - clean) guest ns over every hit the
probe set counted (kprobes and tracepoints).
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
    ap.add_argument("--backend", default="ftrace,ebpf")
    args = ap.parse_args()
    result: dict[str, object] = {"procs": args.procs, "repeat": args.repeat, "timing": "icount"}
    for backend in args.backend.split(","):
        result[backend] = _bench(backend, args)
    print(json.dumps(result, indent=2))


def _bench(backend: str, args: argparse.Namespace) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="ukva-bench-") as tmp:
        env = {**os.environ, "UKVA_LAB_RESULTS": tmp}
        cmd = [sys.executable, "-m", "lab", "trace", "--workload", "forkstorm", "--config",
               args.config, "--icount", "--backend", backend, "--repeat", str(args.repeat),
               "--param", f"procs={args.procs}", "--json"]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
        run_id = json.loads(out)["run_id"]
        lines = (Path(tmp) / run_id / "runs.jsonl").read_text().splitlines()
        recs = [json.loads(line) for line in lines]
    result: dict[str, object] = {}
    for cfg in args.config.split(","):
        mine = [r for r in recs if r["config"] == cfg]
        clean = [r["guest_elapsed_ns"] / r["units"] / 1000 for r in mine]
        probed = [r["probed_elapsed_ns"] / r["units"] / 1000 for r in mine]
        hits = [sum(v for k, v in r["counts"].items() if "." not in k) / r["units"]
                for r in mine]
        result[cfg] = {
            "guest_us_per_fork_clean": [round(x, 2) for x in clean],
            "guest_us_per_fork_probed": [round(x, 2) for x in probed],
            "probe_hits_per_fork": round(statistics.median(hits), 1),
            "overhead_ratio": round(statistics.median(
                p / c for p, c in zip(probed, clean, strict=True)), 4),
            "guest_ns_per_hit": round(statistics.median(
                1000 * (p - c) / h for p, c, h in zip(probed, clean, hits, strict=True)), 1),
        }
    return result


if __name__ == "__main__":
    main()
