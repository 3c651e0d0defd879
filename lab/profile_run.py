"""The profile runner: boot each configuration with the readprofile sampler, run a workload,
read /proc/profile back, and write the B − A difference into a run directory.

It sits beside the trace driver (lab/trace.py), whose run directories and guest boots it
shares; the decoding and diffing it relies on are pure functions in lab/profile.py.
"""

from __future__ import annotations

from dataclasses import replace

from . import ui
from .errors import LabError
from .guest.boot import BootOptions
from .guest.configs import GuestConfig
from .profile import (
    IDLE_SYMBOLS,
    PROFILE_ARG,
    collect_script,
    decode_gz,
    diff_profiles,
    parse_profile,
    symbolize,
)
from .results import RunDir, write_json_atomic
from .trace import Cell, Matrix, booted_guest, git_commit, host_facts, start_run
from .workloads import WorkloadSpec, parse_report

__all__ = ["run_profile"]


def run_profile(
    configs: list[GuestConfig], workload: WorkloadSpec, params: dict[str, int], repeat: int,
    boot: BootOptions,
) -> RunDir:
    """Profile ``workload`` on each configuration (one boot each); write profile.json; return
    the run directory. The first configuration is A, the second B: rows are B − A."""
    if len(configs) != 2:
        raise LabError("lab profile compares exactly two configurations: --config A,B")
    boot = replace(boot, append=(*boot.append, PROFILE_ARG))
    m = Matrix(configs, [Cell(workload, params, repeat)], "profile", [], boot)
    run = start_run(m, f"profile-{workload.name}", {"kind": "profile"})
    per_config: dict[str, dict[str, int]] = {}
    totals: dict[str, dict[str, int]] = {}
    argv = workload.argv(params)
    for cfg in configs:
        with booted_guest(cfg, boot, m.timing, run) as guest:
            reset = guest.exec(["sh", "-c", "echo 0 > /proc/profile"], timeout=60)
            if reset.rc != 0:
                raise LabError(f"cannot reset /proc/profile: {reset.stderr.strip()}")
            ops = 0
            for i in range(repeat):
                with ui.step(f"{cfg.name}: {workload.name} repeat {i + 1}/{repeat} (profiling)"):
                    res = guest.exec(argv)
                if res.rc != 0:
                    raise LabError(f"{workload.name} failed in the guest: {res.stderr[-300:]}")
                ops += int(parse_report(res.stdout)["ops"])
            got = guest.exec(["sh", "-c", collect_script()], timeout=300)
            lines = [x for x in got.stdout.splitlines() if x.strip()]
            if got.rc != 0 or len(lines) != 2:
                raise LabError(f"cannot read /proc/profile: {got.stderr.strip()[-200:]}")
            ticks = symbolize(parse_profile(decode_gz(lines[0])), decode_gz(lines[1]).decode())
        per_config[cfg.name] = ticks
        idle = sum(n for sym, n in ticks.items() if sym in IDLE_SYMBOLS)
        totals[cfg.name] = {"ticks": sum(ticks.values()) - idle, "idle_ticks": idle, "ops": ops}
        write_json_atomic(run.path / f"profile-{cfg.name}.json",
                          {"config": cfg.name, "ops": ops, "ticks": ticks})
    a, b = (c.name for c in configs)
    write_json_atomic(run.path / "profile.json", {
        "configs": [a, b], "workload": workload.name, "params": params, "repeat": repeat,
        "totals": totals, "rows": diff_profiles(per_config[a], per_config[b]),
        "sampler": f"readprofile ({PROFILE_ARG}, timer ticks in kernel mode)",
    })
    run.update_manifest(status="complete", git_commit=git_commit(), host=host_facts())
    return run
