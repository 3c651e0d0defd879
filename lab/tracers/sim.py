"""The ``sim`` backend: a labelled model of 6.1's PTE-page kmaps, for hosts without QEMU.

Why it exists: the CLI, statistics and dashboards must be developable and testable where no
guest can boot, and a model written down path by path says what the real counts *should* be,
so a surprising measurement has something to disagree with. It never pretends to be real:
every :class:`~lab.tracers.Measurement` it returns says ``simulated`` in its report and extra.

How it works: the model (lab/tracers/sim_model.py) tallies primitive kernel events per path
and applies the configuration's rule; this module turns that into a session: probe selection,
deterministic noise per repeat, modelled guest time and meminfo. Example::

    s = SimSession("highpte", seed=1)
    s.attach(load_probe_set())
    m = s.measure("forkstorm", {"procs": 300, "touch": 0, "concurrency": 1}, [])
    m.counts["__kmap_local_pfn_prot"] / 300     # ~ highmem kmaps per fork
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..errors import LabError, UsageError
from . import Attachment, Measurement, ProbeSpec, SessionContext, load_probe_set
from .sim_model import (
    DEFAULT_MODEL,
    MODELLED_SYMBOLS,
    MODELLED_TRACEPOINTS,
    TLB_REASONS,
    UKVA_SYMBOLS,
    WORKLOADS,
    Tally,
    counts_from_tally,
    load_model,
)

__all__ = ["SimSession", "open_session", "Tally", "DEFAULT_MODEL", "WORKLOADS", "load_model",
           "counts_from_tally"]


@contextmanager
def open_session(ctx: SessionContext) -> Iterator[SimSession]:
    """The registry's opener: no guest; the configuration's facts go into the manifest."""
    cfg = ctx.config
    ctx.set_meta({"config": cfg.name, "kernel_name": cfg.kernel, "cmdline": " ".join(cfg.cmdline),
                  "timing": ctx.timing, "simulated": True})
    yield SimSession(cfg.name)


def _noise(rng: np.random.Generator, frac: float) -> float:
    return 1.0 + frac * float(np.clip(rng.standard_normal(), -3.0, 3.0))


# Tally fields that address-space layout moves (the rest are exact: processes, execs, touches).
_NOISY = ("pte_maps_own", "pte_maps_foreign", "data_kmaps", "flush_local", "flush_remote",
          "user_invlpg", "sched_switches", "faults")


class SimSession:
    """A TraceSession answered by the model: ``backend = "sim"``, ``simulated = True``."""

    backend = "sim"
    simulated = True
    timing = "modelled"
    #: A model has no console to scan.
    console_log: Path | None = None

    def __init__(self, config_name: str, model_path: Path | None = None,
                 seed: int | None = None) -> None:
        self.model_path = model_path or DEFAULT_MODEL
        self.model = load_model(self.model_path)
        if config_name not in self.model["configs"]:
            known = ", ".join(sorted(self.model["configs"]))
            raise UsageError(f"sim model has no configuration {config_name!r}: choose from {known}")
        self.config = config_name
        self.seed = 0 if seed is None else seed
        self._repeat = 0
        self._attached: list[ProbeSpec] | None = None
        self.attachment = Attachment([], {})
        self._closed = False

    def attach(self, probes: list[ProbeSpec]) -> Attachment:
        """Accept what the modelled kernel has; the rest is absent with the reason."""
        attached, absent = [], {}
        is_ukva = bool(self.model["configs"][self.config]["ukva"])
        for p in probes:
            if p.kind == "kprobe" and p.symbol in UKVA_SYMBOLS and not is_ukva:
                absent[p.name] = f"{p.symbol} not in the modelled {self.config} kernel (no UKVA)"
            elif (p.kind == "kprobe" and p.symbol in MODELLED_SYMBOLS) or (
                    p.kind == "tracepoint" and p.tracepoint in MODELLED_TRACEPOINTS):
                attached.append(p.name)
            else:
                absent[p.name] = "not modelled by the sim backend"
        self._attached = [p for p in probes if p.name in attached]
        self.attachment = Attachment(attached=attached, absent=absent)
        return self.attachment

    def measure(self, workload: str, params: dict[str, int], argv: list[str]) -> Measurement:
        """Model one run of ``workload``; each call is the next deterministic repeat."""
        if self._closed:
            raise LabError("sim session is closed")
        if self._attached is None:
            self.attach(load_probe_set())
        if workload not in WORKLOADS:
            raise UsageError(f"sim backend does not model workload {workload!r}: "
                             f"choose from {', '.join(sorted(WORKLOADS))}")
        units, paths = WORKLOADS[workload](self.model, dict(params))
        total = Tally()
        for t in paths.values():
            total.add(t)
        key = f"{self.seed}/{self.config}/{workload}/{sorted(params.items())}/{self._repeat}"
        rng = np.random.default_rng(zlib.crc32(key.encode()))
        self._repeat += 1
        frac = float(self.model["model"]["noise_fraction"])
        for name in _NOISY:
            setattr(total, name, getattr(total, name) * _noise(rng, frac))
        exact = counts_from_tally(total, self.model, self.config)
        counts = {name: int(round(v)) for name, v in self._select(exact).items()}
        # guest time covers the whole job; the workload's own elapsed_ns only its loop
        speed = _noise(rng, frac)
        elapsed = self._elapsed_ns(total, exact, params, speed)
        loop = Tally()
        for p, t in paths.items():
            if p != "driver":
                loop.add(t)
        loop_ns = self._elapsed_ns(loop, counts_from_tally(loop, self.model, self.config),
                                   params, speed)
        before, after = self._meminfo(rng)
        report = {"workload": workload, "unit": self.model["workloads"][workload]["unit"],
                  "ops": units, "errors": 0, "elapsed_ns": loop_ns, "params": dict(params),
                  "simulated": True}
        extra = {"simulated": True, "timing": self.timing, "argv": list(argv), "model": {
            "path": str(self.model_path), "version": self.model["model"]["version"],
            "config": self.config, "seed": self.seed, "repeat": self._repeat - 1,
            "highmem_kmaps": self._highmem_split(total),
            "per_unit_by_path": {p: _rounded(asdict(t), units) for p, t in paths.items()},
            "peak_kb": self._peak(params, paths),
        }}
        return Measurement(counts=counts, meminfo_before=before, meminfo_after=after,
                           vmstat_delta={"pgfault": int(round(total.faults))}, report=report,
                           guest_elapsed_ns=elapsed, extra=extra)

    def close(self) -> None:
        self._closed = True

    # -- helpers --------------------------------------------------------------------------------

    def _select(self, exact: dict[str, float]) -> dict[str, float]:
        """Counters for the attached probes only, named as the probe set names them."""
        out: dict[str, float] = {}
        for p in self._attached or []:
            if p.kind == "kprobe" and p.symbol in exact:
                out[p.name] = exact[p.symbol]
            elif p.tracepoint == "tlb:tlb_flush":
                out[p.name] = exact["tlb_flush"]
                if p.key == "reason":
                    out.update({f"{p.name}.{r}": exact[f"tlb_flush.{r}"] for r in TLB_REASONS})
            elif p.tracepoint == "sched:sched_switch":
                out[p.name] = exact["sched_switch"]
        return out

    def _highmem_split(self, t: Tally) -> dict[str, float]:
        """Highmem kmaps split into PTE-page maps and the non-PTE (data page) baseline."""
        c, k = self.model["configs"][self.config], self.model["kernel"]
        pte = (t.pte_maps_foreign + (0.0 if c["ukva"] else t.pte_maps_own)) * float(
            bool(c["pte_pages_in_highmem"]))
        return {"pte": round(pte, 3),
                "data": round(t.data_kmaps * k["user_pages_highmem_fraction"], 3)}

    def _elapsed_ns(self, t: Tally, exact: dict[str, float], params: dict[str, int],
                    speed: float) -> int:
        tm, c = self.model["timing"], self.model["configs"][self.config]
        ns = (t.forks * tm["ns_per_fork"] + t.execs * tm["ns_per_exec"]
              + t.touched_pages * tm["ns_per_touched_page"]
              + exact["__kmap_local_pfn_prot"] * tm["ns_per_highmem_kmap"])
        if c["ukva"]:
            ns += t.mm_created * tm["ns_per_ukva_mm"]
        cpus = min(int(params.get("concurrency", 4)), int(self.model["guest"]["vcpus"]))
        ns /= 1.0 + (cpus - 1) * tm["parallel_efficiency"]
        return int(round(ns * speed))

    def _meminfo(self, rng: np.random.Generator) -> tuple[dict[str, int], dict[str, int]]:
        g = self.model["guest"]
        keys = ("MemTotal", "LowTotal", "HighTotal", "LowFree", "HighFree", "PageTables")
        before = {key: int(g[key]) for key in keys}
        jitter = int(round(rng.standard_normal() * 2)) * int(g["page_kb"])   # a few pages
        after = dict(before)
        after["LowFree"] -= int(g["lowfree_residual_kb"]) + jitter
        after["HighFree"] -= int(g["highfree_residual_kb"])
        return before, after

    def _peak(self, params: dict[str, int], paths: dict[str, Tally]) -> dict[str, float]:
        """Page-table memory while `concurrency` children live (meminfo after shows none of it)."""
        g, c, k = self.model["guest"], self.model["configs"][self.config], self.model["kernel"]
        fork = paths.get("fork")
        if fork is None or not fork.forks:
            return {}
        live = min(int(params.get("concurrency", 4)), int(fork.forks))
        per_child = fork.pte_alloc / fork.forks + (k["ukva_pages_per_mm"] if c["ukva"] else 0)
        kb = live * per_child * g["page_kb"]
        low = kb if not c["pte_pages_in_highmem"] else live * (
            k["ukva_pages_per_mm"] if c["ukva"] else 0) * g["page_kb"]
        return {"PageTables": round(kb, 1), "LowFree_drop": round(low, 1)}


def _rounded(d: dict[str, float], units: int) -> dict[str, float]:
    return {key: round(v / units, 3) for key, v in d.items() if v}
