"""smp-evidence: SMP guests under TCG through repeated probe attach/detach, counting lockups.

Twice in CI, the stock kernel on 2 vCPUs under multi-threaded TCG printed ``BUG: soft lockup``
while the lab took its probes off (text_poke_bp waiting for the other vCPU to answer an IPI)
and never recovered (tests/data/console-soft-lockup.log). The lab now runs SMP guests with
round-robin TCG (``-accel tcg,thread=single``). This script is the evidence: it boots the
stock kernel on 2 vCPUs in real time (no icount) ``--boots`` times, alternating the
configurations, and in each boot runs ``--cycles`` cycles of

  attach   the ftrace backend's attach (pre-flight, define and enable every kprobe, add the
           hist triggers: text patching on both vCPUs),
  measure  the backend's measurement of a short forkstorm (detach, run, attach, run),
  detach   kprobes disabled and hist triggers removed, as between the timing passes.

A boot that ends in a soft lockup (or any fatal console event, or a dead QEMU) is counted and
the next boot starts. Reported: boots, cycles done, lockups and other console events, median
boot and cycle wall times, total wall time. ``--thread multi`` runs the old configuration
(one host thread per vCPU) for the wall-time comparison. One JSON line per boot goes to
``--log`` as it finishes; the summary is printed as JSON at the end.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from lab.config import load_config
from lab.errors import GuestLostError, LabError
from lab.guest.boot import BootOptions, plan_boot, provision
from lab.guest.console import read_console, scan_console
from lab.guest.qemu import build_qemu_argv
from lab.guest.vm import Guest, Instance
from lab.tracers import load_probe_set
from lab.tracers.ftrace import FtraceSession, toggle_script
from lab.workloads import load_workload


def one_boot(config: str, thread: str, cycles: int, procs: int) -> dict[str, Any]:
    """Boot ``config`` on 2 vCPUs, run the cycles, power off; what happened, as data."""
    out: dict[str, Any] = {"config": config, "thread": thread, "cycles_done": 0,
                           "cycle_s": [], "lost": None}
    probes = load_probe_set()
    wl = load_workload("forkstorm")
    params = {"procs": procs, "touch": 4, "concurrency": 4}
    t_start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ukva-smp-", dir="/tmp") as tmp:
        inst = Instance(Path(tmp))
        bp, _kernel = provision(plan_boot(load_config(config),
                                          BootOptions(cpus=2, accel="tcg"), inst))
        spec = replace(bp.spec, tcg_thread=thread)
        out["qemu_accel"] = build_qemu_argv(spec)[build_qemu_argv(spec).index("-accel") + 1]
        guest: Guest | None = None
        try:
            t0 = time.monotonic()
            guest = Guest.boot(inst, spec, bp.meta, bp.ready_timeout)
            out["boot_s"] = round(time.monotonic() - t0, 2)
            session = FtraceSession(guest)
            for _ in range(cycles):
                t0 = time.monotonic()
                att = session.attach(probes)
                session.measure("forkstorm", params, wl.argv(params))
                res = guest.exec(["sh", "-c", toggle_script(probes, att.attached, False)],
                                 timeout=120)
                if res.rc != 0:
                    raise LabError(f"detach failed: {res.stderr[-200:]}")
                out["cycle_s"].append(round(time.monotonic() - t0, 2))
                out["cycles_done"] += 1
        except GuestLostError as e:
            out["lost"] = e.reason
            guest = None  # watch() already killed it
        except LabError as e:
            out["lost"] = f"error: {e}"
        finally:
            if guest is not None:
                guest.shutdown(20)
            events = scan_console(read_console(inst.console_log))
            out["console_events"] = [f"{e.kind}: {e.text}" for e in events]
            out["soft_lockup"] = any(e.kind == "soft-lockup" for e in events)
    out["wall_s"] = round(time.monotonic() - t_start, 2)
    return out


def summarise(boots: list[dict[str, Any]], wall: float) -> dict[str, Any]:
    cycles = [c for b in boots for c in b["cycle_s"]]
    boot_s = [b["boot_s"] for b in boots if "boot_s" in b]
    return {
        "thread": sorted({b["thread"] for b in boots}),
        "qemu_accel": sorted({b.get("qemu_accel", "") for b in boots}),
        "boots": len(boots),
        "configs": {c: sum(b["config"] == c for b in boots) for c in {b["config"] for b in boots}},
        "cycles_done": sum(b["cycles_done"] for b in boots),
        "soft_lockups": sum(b["soft_lockup"] for b in boots),
        "lost": [b["lost"] for b in boots if b["lost"]],
        "console_events": sorted({e for b in boots for e in b["console_events"]}),
        "median_boot_s": round(statistics.median(boot_s), 2) if boot_s else None,
        "median_cycle_s": round(statistics.median(cycles), 2) if cycles else None,
        "wall_s": round(wall, 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--boots", type=int, default=20)
    ap.add_argument("--cycles", type=int, default=10)
    ap.add_argument("--procs", type=int, default=50, help="forks per forkstorm run")
    ap.add_argument("--config", default="highpte,lowpte", help="alternated between boots")
    ap.add_argument("--thread", choices=["single", "multi"], default="single")
    ap.add_argument("--log", type=Path, help="append one JSON line per boot here")
    args = ap.parse_args()
    configs = args.config.split(",")
    boots: list[dict[str, Any]] = []
    t0 = time.monotonic()
    for i in range(args.boots):
        b = one_boot(configs[i % len(configs)], args.thread, args.cycles, args.procs)
        b["boot"] = i + 1
        boots.append(b)
        print(f"boot {i + 1}/{args.boots} {b['config']}: {b['cycles_done']} cycles, "
              f"boot {b.get('boot_s')} s, lost: {b['lost']}", file=sys.stderr, flush=True)
        if args.log:
            args.log.parent.mkdir(parents=True, exist_ok=True)
            with args.log.open("a") as f:
                f.write(json.dumps(b) + "\n")
    summary = summarise(boots, time.monotonic() - t0)
    print(json.dumps(summary, indent=2))
    clean = summary["soft_lockups"] == 0 and not summary["lost"]
    return 0 if clean and summary["cycles_done"] == args.boots * args.cycles else 1


if __name__ == "__main__":
    sys.exit(main())
