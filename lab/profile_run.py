"""The profile runner: boot each configuration with the readprofile sampler, run a workload,
read /proc/profile back, and write the B − A difference into a run directory.

It sits beside the trace driver (lab/trace.py), whose run directories and guest boots it
shares; the decoding, diffing and significance marks it relies on are pure functions in
lab/profile.py.

How many repeats: ``repeat`` workload runs per side, or, with ``target_ticks``, as many as A
needs to collect that many kernel ticks (idle excluded; capped at ``max_repeat``), and then the
same number on B. Why the same number on B: the rows are raw tick differences, which compare
like for like only over the same work. The output says how many ticks each side rests on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from . import ui
from .errors import LabError
from .guest.boot import BootOptions
from .guest.configs import GuestConfig
from .profile import (
    IDLE_SYMBOLS,
    PROFILE_ARG,
    annotate,
    collect_script,
    decode_gz,
    diff_profiles,
    kernel_ticks,
    parse_profile,
    symbolize,
)
from .report import jsonable
from .results import RunDir, write_json_atomic
from .trace import Cell, Matrix, booted_guest, git_commit, host_facts, start_run
from .workloads import WorkloadSpec, parse_report

__all__ = ["run_profile", "repeat_side", "MAX_REPEAT"]

#: The most workload runs one side gets while chasing a tick target.
MAX_REPEAT = 100


def repeat_side(run_once: Callable[[], int], read: Callable[[], dict[str, int]], repeat: int,
                target_ticks: int | None = None,
                max_repeat: int = MAX_REPEAT) -> tuple[dict[str, int], int, int]:
    """Run the workload ``repeat`` times, or until ``read()`` shows ``target_ticks`` kernel
    ticks (at most ``max_repeat`` runs); returns (ticks per symbol, ops, runs made).

    ``run_once`` runs the workload once and returns its ops; ``read`` reads the cumulative
    profile. Example: with 300 kernel ticks per run, a target of 1000 takes 4 runs.
    """
    ops = runs = 0
    ticks: dict[str, int] = {}
    while True:
        ops += run_once()
        runs += 1
        if target_ticks is None:
            if runs >= repeat:
                return read(), ops, runs
            continue
        ticks = read()
        if kernel_ticks(ticks) >= target_ticks or runs >= max_repeat:
            return ticks, ops, runs


def _read_profile(guest: object) -> dict[str, int]:
    got = guest.exec(["sh", "-c", collect_script()], timeout=300)  # type: ignore[attr-defined]
    lines = [x for x in got.stdout.splitlines() if x.strip()]
    if got.rc != 0 or len(lines) != 2:
        raise LabError(f"cannot read /proc/profile: {got.stderr.strip()[-200:]}")
    return symbolize(parse_profile(decode_gz(lines[0])), decode_gz(lines[1]).decode())


def run_profile(
    configs: list[GuestConfig], workload: WorkloadSpec, params: dict[str, int], repeat: int,
    boot: BootOptions, target_ticks: int | None = None,
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
    target = target_ticks
    for cfg in configs:
        with booted_guest(cfg, boot, m.timing, run) as guest:
            reset = guest.exec(["sh", "-c", "echo 0 > /proc/profile"], timeout=60)
            if reset.rc != 0:
                raise LabError(f"cannot reset /proc/profile: {reset.stderr.strip()}")
            done = {"n": 0}

            def once(cfg: GuestConfig = cfg, guest: object = guest,
                     done: dict[str, int] = done) -> int:
                done["n"] += 1
                with ui.step(f"{cfg.name}: {workload.name} run {done['n']} (profiling)"):
                    res = guest.exec(argv)  # type: ignore[attr-defined]
                if res.rc != 0:
                    raise LabError(f"{workload.name} failed in the guest: {res.stderr[-300:]}")
                return int(parse_report(res.stdout)["ops"])

            def read(guest: object = guest) -> dict[str, int]:
                return _read_profile(guest)

            ticks, ops, runs = repeat_side(once, read, repeat, target)
        if target is not None:   # B makes as many runs as A needed: the same work
            repeat, target = runs, None
        per_config[cfg.name] = ticks
        idle = sum(n for sym, n in ticks.items() if sym in IDLE_SYMBOLS)
        totals[cfg.name] = {"ticks": kernel_ticks(ticks), "idle_ticks": idle, "ops": ops,
                            "runs": runs}
        write_json_atomic(run.path / f"profile-{cfg.name}.json",
                          {"config": cfg.name, "ops": ops, "ticks": ticks})
    a, b = (c.name for c in configs)
    prof = {
        "configs": [a, b], "workload": workload.name, "params": params, "repeat": repeat,
        "target_ticks": target_ticks, "totals": totals,
        "rows": diff_profiles(per_config[a], per_config[b]),
        "sampler": f"readprofile ({PROFILE_ARG}, timer ticks in kernel mode)",
    }
    write_json_atomic(run.path / "profile.json", jsonable(annotate(prof)))
    run.update_manifest(status="complete", git_commit=git_commit(), host=host_facts())
    return run
