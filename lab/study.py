"""Studies: a plan file names configurations × workloads × parameters × repeats × timing.

``lab study analysis/NAME/plan.toml`` (or just the folder, ``analysis/NAME/``) runs the matrix
with one boot per configuration and writes one run directory. Running the same plan again
resumes its newest unfinished run: cells already in runs.jsonl are skipped, nothing recorded
is lost. "The same plan" means the same resolved
content (its hash), not the same file name, so an edited plan starts a new run.

A published study is a folder, ``analysis/NAME/``: ``plan.toml``, the exported bundle
``NAME.labbundle.tar.gz``, the ``REPORT.md`` generated from it and a README naming the commands
(lab/notebook.py). The folder's name is the study's name, so a plan there need not repeat it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import parse_config_list
from .errors import UsageError
from .guest.boot import BootOptions
from .results import RunDir, list_runs
from .sizes import parse_mem_mib
from .tomlfile import load_toml
from .trace import Cell, Matrix
from .tracers import load_probe_set

__all__ = ["StudyPlan", "load_plan", "find_resumable", "plan_path", "PLAN_FILE"]

#: The plan's file name inside a study folder.
PLAN_FILE = "plan.toml"

_TOP_KEYS = {"name", "description", "configs", "timing", "cpus", "mem", "repeat", "backend",
             "append", "probes", "gap", "cell", "cost_model"}


@dataclass(frozen=True)
class StudyPlan:
    """A parsed plan: its matrix (backend still possibly "auto"), name and content hash."""

    name: str
    description: str
    path: Path
    matrix: Matrix
    digest: str
    gap: tuple[str, str] | None = None   # (baseline, floor): report the share a third recovers


def _resolved(data: dict[str, Any], cells: list[Cell], opts: BootOptions) -> dict[str, Any]:
    return {
        "configs": list(data["configs"]),
        "cells": [{"workload": c.workload.name, "params": c.params, "repeat": c.repeat}
                  for c in cells],
        "timing": data.get("timing", "icount"), "mem_mib": opts.mem_mib, "cpus": opts.cpus,
        "append": list(opts.append), "backend": data.get("backend", "auto"),
        "probes": data.get("probes"),
        **({"cost_model": opts.cost_model} if opts.cost_model else {}),
    }


def plan_path(path: Path) -> Path:
    """A plan file, or a study folder holding one (``analysis/ukva/`` -> its plan.toml)."""
    if path.is_dir():
        if not (path / PLAN_FILE).is_file():
            raise UsageError(f"{path} is a folder without a {PLAN_FILE}: not a study folder")
        return path / PLAN_FILE
    return path


def _default_name(path: Path) -> str:
    """A study folder's name, or a loose plan file's stem."""
    return path.parent.name if path.name == PLAN_FILE else path.stem


def load_plan(path: Path, backend: str | None = None) -> StudyPlan:
    """Read and validate a plan (a file, or a study folder); every error names the plan file
    and the bad key."""
    from .workloads import load_workload

    path = plan_path(path)
    data = load_toml(path, "plan")
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise UsageError(f"{path}: unknown keys {sorted(unknown)} (known: {sorted(_TOP_KEYS)})")
    if not data.get("configs") or not data.get("cell"):
        raise UsageError(f"{path}: a plan needs 'configs' and at least one [[cell]]")
    timing = data.get("timing", "icount")
    if timing not in ("icount", "realtime"):
        raise UsageError(f"{path}: timing must be 'icount' or 'realtime', not {timing!r}")
    configs = parse_config_list(",".join(data["configs"]))
    gap = data.get("gap")
    if gap is not None and (not isinstance(gap, list) or len(gap) != 2
                            or not set(gap) <= set(data["configs"]) or gap[0] == gap[1]):
        raise UsageError(f"{path}: gap must name two different configs of the plan "
                         f"[baseline, floor], not {gap!r}")
    default_repeat = int(data.get("repeat", 3))
    cells = []
    for n, raw in enumerate(data["cell"], 1):
        if "workload" not in raw:
            raise UsageError(f"{path}: cell {n} has no 'workload'")
        spec = load_workload(str(raw["workload"]))
        repeat = int(raw.get("repeat", default_repeat))
        if not 1 <= repeat <= 100:
            raise UsageError(f"{path}: cell {n}: repeat {repeat} out of range 1..100")
        params = spec.resolve({k: str(v) for k, v in raw.get("params", {}).items()})
        cells.append(Cell(spec, params, repeat))
    cost_model = data.get("cost_model")  # issue 12: a machine model, needs icount
    if cost_model is not None:
        from .costmodel import load_model

        if timing != "icount":
            raise UsageError(f"{path}: cost_model needs timing = 'icount'")
        cost_model = load_model(str(cost_model)).name
    opts = BootOptions(
        mem_mib=parse_mem_mib(str(data.get("mem", "8G"))),
        cpus=1 if timing == "icount" else int(data.get("cpus", 2)),
        icount=timing == "icount",
        append=tuple(str(a) for a in data.get("append", [])),
        cost_model=cost_model,
    )
    probes = load_probe_set(path.parent / data["probes"] if data.get("probes") else None)
    chosen = backend or str(data.get("backend", "auto"))
    resolved = _resolved(data, cells, opts)
    resolved["backend"] = chosen
    digest = hashlib.sha256(json.dumps(resolved, sort_keys=True).encode()).hexdigest()[:16]
    return StudyPlan(
        name=str(data.get("name", _default_name(path))),
        description=str(data.get("description", "")),
        path=path, matrix=Matrix(configs, cells, chosen, probes, opts), digest=digest,
        gap=(str(gap[0]), str(gap[1])) if gap else None,
    )


def find_resumable(plan: StudyPlan, root: Path | None = None) -> RunDir | None:
    """The newest unfinished run of exactly this plan, if any."""
    for run in list_runs(root):
        m = run.manifest()
        if m.get("plan_digest") == plan.digest and m.get("status") != "complete":
            return run
    return None
