"""The ``sim`` backend: counts from a model fitted to real runs, for hosts without QEMU and for
what-ifs TCG is too slow for (10,000 tasks, other guest memory sizes).

Why it exists: the CLI, statistics and dashboards must work where no guest can boot, and some
questions (a pile of 10,000 tasks, a 64 GiB guest's lowmem) take a real guest hours or cannot
run on it at all. It never pretends to be real: every measurement says SIMULATED, and one
whose parameters or memory size lie outside what the model was fitted on says EXTRAPOLATED
too (in its record, `lab show`, the JSON and the manifest).

How: lab/simmodel holds the fitted lines (``lab sim fit``; the shipped model is
vm/sim/stock-6.1.toml). A measurement is each line at the parameters, times the units, with
deterministic noise of the size the real repeats showed. taskpile is piled step by step on
the fitted per-task slopes from the fitted start-of-pile memory of a guest of ``--mem``, and
stops at the lowmem floor as the real one does. Example::

    s = SimSession("highpte", seed=1)
    s.attach(load_probe_set())
    m = s.measure("forkstorm", {"procs": 500, "touch": 32, "concurrency": 4}, [])
    m.counts["__kmap_local_pfn_prot"] / 500     # highmem kmaps per fork, as fitted
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import LabError, UsageError
from ..simmodel import (
    GUEST_NS,
    MEMINFO_DELTA,
    SLOPES,
    TERMS,
    extrapolation,
    load_model,
    mem_value,
    model_cell,
    predict,
    provenance_line,
    units_of,
)
from ..simmodel.fit import MEM_KEYS
from ..workloads import load_workload
from . import Attachment, Measurement, ProbeSpec, SessionContext, load_probe_set, refuse_options

__all__ = ["SimSession", "open_session", "provenance", "preflight"]

PAGE_KB = 4


def provenance() -> str:
    """The shipped model's provenance, for ``auto``'s fallback warning."""
    try:
        return provenance_line(load_model())
    except LabError as e:
        return f"no usable sim model: {e}"


def preflight(configs: list[str], workloads: list[str]) -> None:
    """Every (configuration, workload) asked for is in the shipped model, or one UsageError
    naming what is missing and what the model has."""
    model = load_model()
    _require_configs(model, configs)
    for c in configs:
        for w in workloads:
            model_cell(model, c, w)


def _require_configs(model: dict[str, Any], configs: list[str]) -> None:
    """UsageError naming the configurations the model lacks and those it has."""
    have = model["configs"]
    missing = [c for c in configs if c not in have]
    if missing:
        raise UsageError(f"the sim model {model['_path']} has no configuration "
                         f"{', '.join(map(repr, missing))}: it was fitted for "
                         f"{', '.join(sorted(have))}")


@contextmanager
def open_session(ctx: SessionContext) -> Iterator[SimSession]:
    """The registry's opener: no guest; the configuration's facts, the model's provenance and
    any extrapolation go into the manifest."""
    refuse_options(ctx, "sim")
    cfg = ctx.config
    session = SimSession(cfg.name, mem_mib=ctx.mem_mib,
                         on_extrapolated=lambda why: ctx.set_meta({"extrapolated": why}))
    ctx.set_meta({"config": cfg.name, "kernel_name": cfg.kernel, "cmdline": " ".join(cfg.cmdline),
                  "timing": ctx.timing, "simulated": True, "mem_mib": session.mem_mib,
                  "sim_model": provenance_line(session.model),
                  "fitted_kernel": session.model["configs"][cfg.name]["kernel"]})
    yield session


class SimSession:
    """A TraceSession answered by the fitted model: ``backend = "sim"``, ``simulated = True``."""

    backend = "sim"
    simulated = True
    timing = "modelled"
    #: A model has no console to scan.
    console_log: Path | None = None

    def __init__(self, config_name: str, model_path: Path | None = None,
                 seed: int | None = None, mem_mib: int | None = None,
                 on_extrapolated: Callable[[list[str]], None] | None = None) -> None:
        self.model = load_model(model_path)
        _require_configs(self.model, [config_name])
        self.config = config_name
        self.mem_mib = int(mem_mib or self.model["configs"][config_name]["mem"]["mem_mib"])
        self.seed = 0 if seed is None else seed
        self._repeat = 0
        self._attached: list[ProbeSpec] | None = None
        self.attachment = Attachment([], {})
        self._closed = False
        self._on_extrapolated = on_extrapolated
        self.extrapolated: list[str] = []

    def attach(self, probes: list[ProbeSpec]) -> Attachment:
        """Accept the counters the fitted runs recorded on this configuration; the rest are
        absent, with the guest's reason where the runs recorded one."""
        have = {t for w in self.model["configs"][self.config]["workloads"].values()
                for t in w["targets"]}
        guest_absent = self.model["configs"][self.config].get("absent", {})
        attached, absent = [], {}
        for p in probes:
            if p.name in have:
                attached.append(p.name)
            elif p.name in guest_absent:
                absent[p.name] = f"{guest_absent[p.name]} (the fitted {self.config} runs)"
            else:
                absent[p.name] = "not in the sim model (its runs did not count it)"
        self._attached = [p for p in probes if p.name in attached]
        self.attachment = Attachment(attached=attached, absent=absent)
        return self.attachment

    def measure(self, workload: str, params: dict[str, int], argv: list[str]) -> Measurement:
        """Model one run of ``workload``; each call is the next deterministic repeat."""
        if self._closed:
            raise LabError("sim session is closed")
        if self._attached is None:
            self.attach(load_probe_set())
        if workload not in TERMS:
            raise UsageError(f"the sim backend models {', '.join(TERMS)}, not {workload!r}")
        cell = model_cell(self.model, self.config, workload)
        # the workload's own defaults and checks (beyond its maximum allowed: EXTRAPOLATED)
        params = load_workload(workload).resolve(params, above_max=True)
        why = extrapolation(self.model, cell, params, self.mem_mib)
        if why:
            self.extrapolated = sorted({*self.extrapolated, *why})
            if self._on_extrapolated:
                self._on_extrapolated(self.extrapolated)
        key = f"{self.seed}/{self.config}/{workload}/{sorted(params.items())}/{self._repeat}"
        rng = np.random.default_rng(zlib.crc32(key.encode()))
        self._repeat += 1

        def value(target: str) -> float:
            spec = cell["targets"][target]
            noise = 1.0 + float(spec["cv"]) * float(np.clip(rng.standard_normal(), -3, 3))
            return predict(cell, target, params) * noise

        report: dict[str, Any] = {"workload": workload, "unit": cell["unit"], "errors": 0,
                                  "params": dict(params), "simulated": True}
        units = units_of(workload, params)
        if workload == "taskpile":
            report.update(self._pile(cell, params, value))
            # a pile that cannot start (a huge guest's memory map leaves lowmem under the
            # floor) reached 0 tasks; a record needs a unit, so its totals count as one task
            units = max(int(report["ops"]), 1)
        counts = {t: int(round(value(t) * units)) for t in sorted(cell["targets"])
                  if any(t == p.name or t.startswith(p.name + ".") for p in self._attached or [])}
        elapsed = int(round(value(GUEST_NS) * units)) if GUEST_NS in cell["targets"] else 0
        report.update(ops=units, elapsed_ns=elapsed)
        before = {k: int(round(mem_value(self.model, self.config, k, self.mem_mib)))
                  for k in MEM_KEYS if k in self.model["configs"][self.config]["mem"]["at"]}
        after = dict(before)
        for t in MEMINFO_DELTA:
            k = t.split(".", 1)[1]
            if t in cell["targets"] and k in after:
                after[k] += int(round(value(t)))
        if why:
            report["extrapolated"] = why
        extra = {"simulated": True, "timing": self.timing, "argv": list(argv),
                 "extrapolated": why, "model": {
                     "path": self.model["_path"], "fitted_at": self.model["model"]["fitted_at"],
                     "config": self.config, "seed": self.seed, "repeat": self._repeat - 1,
                     "mem_mib": self.mem_mib}}
        return Measurement(counts=counts, meminfo_before=before, meminfo_after=after,
                           vmstat_delta={}, report=report, guest_elapsed_ns=elapsed, extra=extra)

    def _pile(self, cell: dict[str, Any], params: dict[str, int],
              value: Callable[[str], float]) -> dict[str, Any]:
        """taskpile's samples: tasks added ``step`` at a time from the fitted start of a pile on
        a guest of ``mem_mib``, each taking the fitted lowmem, PageTables and HighFree pages;
        no step starts that would take LowFree below the floor (as taskpile.c decides)."""
        def start(k: str) -> float:   # a figure the runs' samples lacked starts at 0
            if f"taskpile.{k}" not in self.model["configs"][self.config]["mem"]["at"]:
                return 0.0
            return mem_value(self.model, self.config, f"taskpile.{k}", self.mem_mib)

        low0, pcp, high0, hpcp, pt0 = (start(k) for k in (
            "LowFree_kB", "LowPcp_kB", "HighFree_kB", "HighPcp_kB", "PageTables_kB"))
        low_kb, pt_kb, high_kb = (max(value(s), 0.0) * PAGE_KB if s in cell["targets"] else 0.0
                                  for s in SLOPES)
        floor = params.get("min_lowfree_mib", 64) * 1024
        tasks, step, t = params["tasks"], params["step"], 0
        samples, stopped = [], "max_tasks"
        while True:
            samples.append({"tasks": t, "LowFree_kB": int(low0 - low_kb * t),
                            "LowPcp_kB": int(pcp), "HighFree_kB": int(high0 - high_kb * t),
                            "HighPcp_kB": int(hpcp),
                            "PageTables_kB": int(pt0 + pt_kb * t)})
            if t >= tasks:
                break
            n = min(step, tasks - t)
            if low0 - low_kb * (t + n) < floor:
                stopped = "lowmem_floor"
                break
            if high0 + hpcp - high_kb * (t + n) < 0:
                stopped = "highmem_exhausted (modelled)"
                break
            t += n
        return {"ops": t, "samples": samples, "stopped_because": stopped, "oom_killed": 0,
                "low_source": "LowFree", "pte_pages_per_task": params.get("span_mib", 0) // 2}

    def close(self) -> None:
        self._closed = True
