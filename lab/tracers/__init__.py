"""Tracer backends behind one small interface.

A backend opens a :class:`TraceSession` for one configuration; the session takes a probe set
in (:meth:`TraceSession.attach`) and gives counts out (:meth:`TraceSession.measure`), plus
what could not be attached and why. Every result records which backend produced it and
whether it was simulated.

Backends are registered in :data:`BACKENDS`, one line each: the ``--backend`` choices, their
help text and what ``auto`` picks all come from there, so a new backend is one module (with an
``open_session(ctx)`` context manager) plus one :class:`Backend` line. The driver hands the
backend a :class:`SessionContext` rather than the backend reaching up into the driver: the
context boots the guest (for backends that need one) and records per-configuration facts.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import UsageError
from ..tomlfile import load_toml

if TYPE_CHECKING:
    from ..guest.configs import GuestConfig
    from ..guest.vm import Guest

__all__ = [
    "ProbeSpec",
    "Attachment",
    "Measurement",
    "TraceSession",
    "SessionContext",
    "Backend",
    "BACKENDS",
    "AUTO",
    "backend_names",
    "backend_help",
    "get_backend",
    "resolve_auto",
    "load_probe_set",
    "DEFAULT_PROBE_SET",
    "INLINE_HINTS",
    "refuse_options",
]

DEFAULT_PROBE_SET = Path(__file__).with_name("probes.toml")

#: Inline wrappers people ask for by name, and the real symbol to probe instead.
INLINE_HINTS = {
    "kmap_atomic": "__kmap_local_page_prot (every call) or __kmap_local_pfn_prot (highmem only)",
    "kmap_local_page": "__kmap_local_page_prot",
    "kunmap_atomic": "kunmap_local_indexed",
    "kunmap_local": "kunmap_local_indexed",
    "pte_offset_map": "__kmap_local_page_prot (pte_offset_map is a macro around kmap_atomic)",
    "pte_free": "___pte_free_tlb (pte_free is inline; use nr_page_table_pages as a gauge)",
    "zap_pte_range": "___pte_free_tlb or flush_tlb_mm_range (zap_pte_range is inlined)",
    "copy_pte_range": "__kmap_local_page_prot (copy_pte_range is inlined)",
    "free_pte_range": "___pte_free_tlb (free_pte_range is inlined)",
    "context_switch": "switch_mm_irqs_off or the sched:sched_switch tracepoint",
}


@dataclass(frozen=True)
class ProbeSpec:
    """One counter: a kprobe on ``symbol`` or a tracepoint counted per value of ``key``."""

    name: str
    kind: str  # "kprobe" | "tracepoint"
    group: str
    help: str
    symbol: str = ""
    tracepoint: str = ""  # "tlb:tlb_flush"
    key: str = ""  # tracepoint field to split counts by, e.g. "reason"
    # How reports lead with it (probes.toml explains; lab/report.py reads them): its place
    # among the headline counters (0: not one), charted on the dashboard, a named figure.
    headline: int = 0
    chart: bool = False
    figure: str = ""
    labels: dict[str, str] = field(default_factory=dict, compare=False, hash=False)


@dataclass
class Attachment:
    """What a session managed to attach: counters present, and those absent with the reason."""

    attached: list[str]
    absent: dict[str, str]
    hints: dict[str, str] = field(default_factory=dict)


@dataclass
class Measurement:
    """Counts over one workload execution, plus the memory and timing context around it."""

    counts: dict[str, int]
    meminfo_before: dict[str, int]
    meminfo_after: dict[str, int]
    vmstat_delta: dict[str, int]
    report: dict[str, Any]
    guest_elapsed_ns: int
    extra: dict[str, Any] = field(default_factory=dict)


class TraceSession(Protocol):
    """One configuration, one guest (or model), several measurements."""

    backend: str
    simulated: bool
    #: What the last :meth:`attach` got (empty before it): recorded with every measurement.
    attachment: Attachment

    @property
    def console_log(self) -> Path | None:
        """The guest's console log, scanned for kernel warnings per measurement; None for a
        model (nothing to scan)."""
        ...

    def attach(self, probes: list[ProbeSpec]) -> Attachment:
        """Install the probe set; never fails for an absent symbol, records it instead."""
        ...

    def measure(self, workload: str, params: dict[str, int], argv: list[str]) -> Measurement:
        """Run the workload once and return the counter deltas over it."""
        ...

    def close(self) -> None:
        """Remove probes and release the guest."""
        ...


@dataclass(frozen=True)
class SessionContext:
    """What the driver gives a backend to open one configuration's session.

    ``boot_guest(extras=())`` boots the configuration (console and boot facts go into the run)
    and powers it off on exit; ``extras`` names optional image parts the backend needs
    ("ebpf": its BPF object and loader in the initramfs); ``set_meta`` records facts about the
    configuration in the run's manifest.
    """

    config: GuestConfig
    timing: str
    boot_guest: Callable[..., AbstractContextManager[Guest]]
    set_meta: Callable[[dict[str, Any]], None]
    #: The guest RAM asked for (MiB): a model answers for a guest of this size.
    mem_mib: int | None = None
    #: Backend-specific options (ebpf: "stack" = a symbol to collect kernel stacks for,
    #: "latency" = a function to time); a backend ignores none silently: see its opener.
    options: dict[str, str] = field(default_factory=dict)


#: Opens a session for one configuration; the session is valid inside the ``with``.
Opener = Callable[[SessionContext], AbstractContextManager[TraceSession]]


def refuse_options(ctx: SessionContext, backend: str) -> None:
    """A backend without options says so rather than ignoring one (stacks asked of ftrace)."""
    if ctx.options:
        raise UsageError(f"the {backend} backend takes no {', '.join(sorted(ctx.options))} "
                         "option: use --backend ebpf")


def _lazy_attr(module: str, name: str) -> Callable[..., Any]:
    """``module.name(...)``, imported on first call: listing backends (for --help) must not
    import every backend's dependencies."""

    def call(*args: Any) -> Any:
        return getattr(importlib.import_module(module, __package__), name)(*args)

    return call


def _lazy(module: str) -> Opener:
    """``module``'s ``open_session``, imported on first use."""
    return _lazy_attr(module, "open_session")


@dataclass(frozen=True)
class Backend:
    """One registered tracer backend.

    ``needs_guest``: it boots the real guest (``auto`` picks the first such backend when a guest
    can boot here, else the first that does not). ``timing``: a fixed timing label for every
    result ("modelled"), or None when the boot options decide (icount or realtime).
    """

    name: str
    help: str
    open: Opener
    simulated: bool
    needs_guest: bool
    timing: str | None = None
    #: Where its numbers come from, one line, for ``auto``'s fallback warning (a model's
    #: provenance); None for a backend that measures.
    provenance: Callable[[], str] | None = None
    #: ``preflight(configs, workloads)``: raise UsageError before anything runs when the
    #: backend cannot answer them (a model lacking a configuration), so a trace does not
    #: measure two configurations and then fail on the third.
    preflight: Callable[[list[str], list[str]], None] | None = None


AUTO = "auto"

#: The registry: name -> backend, in the order --help lists them.
BACKENDS: dict[str, Backend] = {b.name: b for b in (
    Backend("ftrace", "real guest", _lazy(".ftrace"), simulated=False, needs_guest=True),
    Backend("ebpf", "real guest, BPF programs loaded by libbpf", _lazy(".ebpf"),
            simulated=False, needs_guest=True,
            preflight=_lazy_attr(".ebpf_build", "preflight")),
    Backend("sim", "model fitted to real runs, labelled SIMULATED", _lazy(".sim"),
            simulated=True, needs_guest=False, timing="modelled",
            provenance=_lazy_attr(".sim", "provenance"),
            preflight=_lazy_attr(".sim", "preflight")),
)}


def backend_names() -> tuple[str, ...]:
    """Every valid ``--backend`` value: ``auto`` plus the registered backends."""
    return (AUTO, *BACKENDS)


def backend_help() -> str:
    """The ``--backend`` option's help: each backend with its one-line help, then auto."""
    return ", ".join([*(f"{b.name} ({b.help})" for b in BACKENDS.values()), AUTO]) + "."


def get_backend(name: str) -> Backend:
    """The registered backend ``name`` (not ``auto``); UsageError listing the choices."""
    try:
        return BACKENDS[name]
    except KeyError:
        raise UsageError(
            f"unknown backend {name!r}: choose {', '.join(backend_names())}") from None


def resolve_auto(guest_can_boot: bool) -> Backend:
    """What ``auto`` means here: the first backend needing a guest when one can boot, else the
    first that needs none."""
    return next(b for b in BACKENDS.values() if b.needs_guest == guest_can_boot)


def load_probe_set(path: Path | None = None) -> list[ProbeSpec]:
    """Read a probe-set TOML file (default: lab/tracers/probes.toml)."""
    path = path or DEFAULT_PROBE_SET
    data = load_toml(path, "probe set")
    probes: list[ProbeSpec] = []
    for entry in data.get("probe", []):
        kind = entry.get("kind", "kprobe")
        if kind not in ("kprobe", "tracepoint"):
            raise UsageError(f"{path}: probe {entry.get('name')!r} has unknown kind {kind!r}")
        name = entry.get("name") or entry.get("symbol") or entry.get("tracepoint")
        if not name:
            raise UsageError(f"{path}: a probe has neither name nor symbol")
        headline, chart, figure = (entry.get("headline", 0), entry.get("chart", False),
                                   entry.get("figure", ""))
        if (type(headline) is not int or headline < 0 or not isinstance(chart, bool)
                or not isinstance(figure, str)):
            raise UsageError(f"{path}: probe {name!r}: headline must be a whole number >= 0, "
                             "chart true or false, figure a label")
        if kind == "kprobe" and entry.get("symbol", name) in INLINE_HINTS:
            sym = entry.get("symbol", name)
            raise UsageError(f"{sym} is inline and cannot be probed: use {INLINE_HINTS[sym]}")
        probes.append(
            ProbeSpec(
                name=name,
                kind=kind,
                group=entry.get("group", "other"),
                help=entry.get("help", ""),
                symbol=entry.get("symbol", name if kind == "kprobe" else ""),
                tracepoint=entry.get("tracepoint", ""),
                key=entry.get("key", ""),
                headline=headline,
                chart=chart,
                figure=figure,
            )
        )
    names = [p.name for p in probes]
    if len(set(names)) != len(names):
        raise UsageError(f"{path}: probe names must be unique")
    return probes
