"""bench-trace: what counting costs the guest — forkstorm with and without the probe set.

Both runs use --icount (1 vCPU, guest time = executed instructions), so guest time per fork
is deterministic and the ratio is the probes' own cost, not machine noise. Reported: guest
µs per fork with the default probe set, with an empty probe set, and their ratio.
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


def trace(results: Path, probes: Path | None, procs: int, repeat: int) -> list[float]:
    env = {**os.environ, "UKVA_LAB_RESULTS": str(results)}
    cmd = [
        sys.executable,
        "-m",
        "lab",
        "trace",
        "--workload",
        "forkstorm",
        "--config",
        "highpte",
        "--icount",
        "--backend",
        "ftrace",
        "--repeat",
        str(repeat),
        "--param",
        f"procs={procs}",
        "--json",
    ]
    if probes:
        cmd += ["--probes", str(probes)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    run_id = json.loads(out)["run_id"]
    recs = [json.loads(line) for line in (results / run_id / "runs.jsonl").read_text().splitlines()]
    return [r["guest_elapsed_ns"] / r["units"] / 1000 for r in recs]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--procs", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="ukva-bench-") as tmp:
        empty = Path(tmp) / "none.toml"
        empty.write_text("# no probes: the baseline\n")
        with_probes = trace(Path(tmp) / "r", None, args.procs, args.repeat)
        without = trace(Path(tmp) / "r", empty, args.procs, args.repeat)
    w, wo = statistics.median(with_probes), statistics.median(without)
    print(
        json.dumps(
            {
                "procs": args.procs,
                "repeat": args.repeat,
                "timing": "icount",
                "guest_us_per_fork_with_probes": [round(x, 2) for x in with_probes],
                "guest_us_per_fork_without": [round(x, 2) for x in without],
                "overhead_ratio": round(w / wo, 4),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
