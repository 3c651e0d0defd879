"""The ``ebpf`` backend: host-compiled BPF programs, loaded in the guest by a static libbpf loader.

Same probe set, same record format and the same two-run measurement as ``ftrace`` (a detached
run for guest time, an attached run for counts); only the counting differs. Each probe gets a
slot in a per-CPU array (the x86-32 JIT has no atomics), passed to one shared program as the
BPF cookie; a symbol with several kallsyms instances is attached at each address into the same
slot. The loader pins maps and links under /sys/fs/bpf/lab and exits; the agent reads the
pinned counters in-process before and after the workload (``bpf:`` snapshot paths), so the
reading adds no fork to what is counted. Detaching is removing the pins.

Optionally the probed run also collects kernel stacks for one symbol (stackcount) or a log2
histogram of one function's duration (funclatency): see :mod:`.ebpf_maps`.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from ..errors import LabError
from ..guest.agent import ExecResult
from ..guest.vm import Guest
from . import INLINE_HINTS, Attachment, ProbeSpec, SessionContext
from .ebpf_build import BPF_OBJECT, LOADER, PIN_DIR
from .ebpf_maps import folded_stacks, kallsyms_table, log2_hist, parse_map_dump
from .ftrace import TLB_FLUSH_REASONS, TRACEFS, FtraceSession, parse_preflight, preflight_script

__all__ = [
    "EbpfSession", "open_session", "Slots", "plan_slots", "loader_script", "parse_loader",
    "LoaderOutput", "field_offset_script", "parse_field_offsets", "JIT_SYSCTL",
]

JIT_SYSCTL = "/proc/sys/net/core/bpf_jit_enable"
_COUNTS = f"bpf:{PIN_DIR}/counts"
#: Slots the programs keep for themselves (lab.bpf.c: SLOT_STACK_LOST, SLOT_LAT_LOST).
NR_SLOTS, SLOT_STACK_LOST, SLOT_LAT_LOST = 256, 255, 254


@dataclass(frozen=True)
class Slots:
    """Which counter slot holds what: {slot: count name} and the loader's specs."""

    names: dict[int, str]
    specs: list[str]
    #: spec -> the probe it belongs to
    owner: dict[str, str]


def field_offset_script(probes: list[ProbeSpec]) -> str:
    """Guest shell lines printing ``off TRACEPOINT OFFSET SIZE`` for each split tracepoint's
    key field (run before the preflight script, which ends in ``exit``)."""
    lines = []
    for p in probes:
        if p.kind == "tracepoint" and p.key:
            sub, _, ev = p.tracepoint.partition(":")
            lines.append(f"sed -n 's/.*field:[^;]* {p.key};[^o]*offset:\\([0-9]*\\);"
                         f"[^s]*size:\\([0-9]*\\);.*/off {p.tracepoint} \\1 \\2/p' "
                         f"{TRACEFS}/events/{sub}/{ev}/format 2>/dev/null")
    return "\n".join(lines)


def parse_field_offsets(text: str) -> dict[str, int]:
    """``off tlb:tlb_flush 8 4`` lines → {tracepoint: offset} for 4-byte fields."""
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0] == "off" and parts[3] == "4":
            out[parts[1]] = int(parts[2])
    return out


def plan_slots(probes: list[ProbeSpec], addrs: dict[str, list[str]], offsets: dict[str, int],
               absent: dict[str, str], stack: str = "", latency: str = "") -> Slots:
    """Give every present probe its slot(s) and the loader spec(s) that fill them.

    tlb:tlb_flush is split by reason like the ftrace backend does (its total, then one slot
    per enum tlb_flush_reason value); a tracepoint whose key field has no 4-byte offset in
    the format file is counted in total only, which is all ftrace reports for it too.
    """
    names: dict[int, str] = {}
    specs: list[str] = []
    owner: dict[str, str] = {}
    slot = 0
    for p in probes:
        if p.name in absent:
            continue
        names[slot] = p.name
        if p.kind == "kprobe":
            sites = addrs.get(p.symbol, [])
            for target in ([p.symbol] if len(sites) == 1 else [f"0x{a}" for a in sites]):
                specs.append(f"c:{slot}:{target}")
                owner[specs[-1]] = p.name
            slot += 1
            continue
        sub, _, ev = p.tracepoint.partition(":")
        if p.tracepoint == "tlb:tlb_flush" and p.tracepoint in offsets:
            specs.append(f"f:{slot}:{offsets[p.tracepoint]}:{sub}:{ev}")
            for i, reason in enumerate(TLB_FLUSH_REASONS):
                names[slot + 1 + i] = f"{p.name}.{reason}"
            slot += 1 + len(TLB_FLUSH_REASONS)
        else:
            specs.append(f"t:{slot}:{sub}:{ev}")
            slot += 1
        owner[specs[-1]] = p.name
    if slot > SLOT_LAT_LOST:
        raise LabError(f"too many counters for the ebpf backend ({slot}; at most {SLOT_LAT_LOST})")
    for what, sym in (("s", stack), ("l", latency)):
        if sym:
            sites = addrs.get(sym, [])
            if not sites:
                raise LabError(f"{sym} is not in this kernel's kallsyms"
                               + (f" (inline; probe {INLINE_HINTS[sym]})" if sym in INLINE_HINTS
                                  else ""))
            if what == "l" and len(sites) > 1:
                raise LabError(f"{sym} has {len(sites)} instances in kallsyms: a latency "
                               "histogram needs a unique function")
            for target in ([sym] if len(sites) == 1 else [f"0x{a}" for a in sites]):
                specs.append(f"{what}:{target}")
    return Slots(names, specs, owner)


def loader_script(specs: list[str]) -> str:
    """Turn the JIT on, replace any earlier attachment, load and attach; report the JIT."""
    return "\n".join([
        f"echo 1 > {JIT_SYSCTL} 2>/dev/null",
        f"rm -rf {PIN_DIR}",
        f"{shlex.join(['/' + LOADER, '/' + BPF_OBJECT, PIN_DIR, *specs])} || exit 1",
        f"echo jit_enable $(cat {JIT_SYSCTL} 2>/dev/null || echo absent)",
    ])


@dataclass
class LoaderOutput:
    """What the loader said: attached specs, refused ones (why), JIT facts, a load error."""

    ok: list[str]
    failed: dict[str, str]
    jited: dict[str, bool]
    jit_enable: str
    error: str


def parse_loader(text: str) -> LoaderOutput:
    out = LoaderOutput([], {}, {}, "", "")
    for line in text.splitlines():
        word, _, rest = line.partition(" ")
        if word == "ok":
            out.ok.append(rest)
        elif word == "failed":
            spec, _, why = rest.partition(" ")
            out.failed[spec] = why
        elif word == "jit" and len(rest.split()) == 2:
            out.jited[rest.split()[0]] = rest.split()[1] == "1"
        elif word == "jit_enable":
            out.jit_enable = rest.strip()
        elif word == "error:" and not out.error:
            out.error = rest.strip()
    return out


@contextmanager
def open_session(ctx: SessionContext) -> Iterator[EbpfSession]:
    """The registry's opener: boot the configuration with the eBPF parts in its image."""
    unknown = set(ctx.options) - {"stack", "latency"}
    if unknown:
        raise LabError(f"the ebpf backend has no option {', '.join(sorted(unknown))}")
    with ctx.boot_guest(("ebpf",)) as guest:
        session = EbpfSession(guest, ctx.options.get("stack", ""), ctx.options.get("latency", ""))
        yield session
        if session.loader:
            ctx.set_meta({"ebpf": session.jit_facts()})


class EbpfSession(FtraceSession):
    """Counts in a booted guest with BPF programs; measures like :class:`FtraceSession`."""

    backend = "ebpf"
    simulated = False

    def __init__(self, guest: Guest, stack: str = "", latency: str = "") -> None:
        super().__init__(guest)
        self.stack, self.latency = stack, latency
        self.slots = Slots({}, [], {})
        self.loader: LoaderOutput | None = None
        self._kallsyms: list[tuple[int, str]] | None = None

    def jit_facts(self) -> dict[str, Any]:
        """Whether the JIT was asked for and which programs it compiled (recorded per run)."""
        assert self.loader is not None
        return {"jit_enable": self.loader.jit_enable, "jited": self.loader.jited}

    def attach(self, probes: list[ProbeSpec]) -> Attachment:
        self.probes = probes
        extra = [ProbeSpec(name=s, kind="kprobe", group="", help="", symbol=s)
                 for s in (self.stack, self.latency) if s]
        pre = self.guest.exec(["sh", "-c", field_offset_script(probes) + "\n"
                               + preflight_script([*probes, *extra])], timeout=120)
        addrs, _tps, absent = parse_preflight(pre.stdout, probes)
        self.slots = plan_slots(probes, addrs, parse_field_offsets(pre.stdout), absent,
                                self.stack, self.latency)
        out = self._load()
        for spec, why in out.failed.items():
            name = self.slots.owner.get(spec)
            if name is None:
                raise LabError(f"cannot attach {spec[2:]} for "
                               f"{'stacks' if spec[0] == 's' else 'latency'}: {why}")
            absent.setdefault(name, f"bpf attach refused: {why}")
        attached = [p.name for p in probes if p.name not in absent]
        # a probe the kernel refused at attach time keeps no counter: absent, never 0
        self.slots = replace(self.slots, names={
            slot: name for slot, name in self.slots.names.items()
            if name in attached or name.rsplit(".", 1)[0] in attached})
        hints = {p.name: INLINE_HINTS[p.symbol] for p in probes if p.symbol in INLINE_HINTS}
        self.attachment = Attachment(attached, absent, hints)
        return self.attachment

    def _load(self) -> LoaderOutput:
        res = self.guest.exec(["sh", "-c", loader_script(self.slots.specs)], timeout=120)
        out = parse_loader(res.stdout)
        if out.error or res.rc != 0:
            why = out.error or (res.stderr.strip() or res.stdout.strip())[-200:]
            raise LabError(f"cannot load the BPF programs in the guest: {why}")
        self.loader = out
        return out

    def _toggle(self, on: bool) -> None:
        if not on:
            res = self.guest.exec(["rm", "-rf", PIN_DIR], timeout=60)
            if res.rc != 0:
                raise LabError(f"cannot detach the BPF programs: {res.stderr.strip()[-200:]}")
            return
        before = self.loader
        out = self._load()
        if before and set(out.ok) != set(before.ok):
            raise LabError("re-attaching the BPF programs attached a different set: "
                           f"{sorted(set(before.ok) ^ set(out.ok))}")

    def snapshot_paths(self) -> list[str]:
        paths = [_COUNTS]
        if self.stack:
            paths += [f"bpf:{PIN_DIR}/stack_counts", f"bpf:{PIN_DIR}/stacks"]
        if self.latency:
            paths.append(f"bpf:{PIN_DIR}/lat_hist")
        return [*paths, "/proc/meminfo", "/proc/vmstat"]

    def counts(self, before: dict[str, str | None],
               after: dict[str, str | None]) -> dict[str, int]:
        if after.get(_COUNTS) is None:
            raise LabError(f"the guest could not read {_COUNTS[4:]} after the workload")
        b, a = parse_map_dump(before.get(_COUNTS) or ""), parse_map_dump(after[_COUNTS] or "")
        return {name: a.get(slot, 0) - b.get(slot, 0) for slot, name in self.slots.names.items()}

    def extra_results(self, res: ExecResult) -> dict[str, object]:
        """The probed run's stacks (folded, symbolised with the guest's kallsyms) and latency
        histogram, with how many hits each lost."""
        out: dict[str, Any] = {"ebpf": self.jit_facts()}
        b = parse_map_dump(res.before.get(_COUNTS) or "")
        a = parse_map_dump(res.after.get(_COUNTS) or "")
        lost = {k: a.get(s, 0) - b.get(s, 0)
                for k, s in (("stacks_lost", SLOT_STACK_LOST), ("latency_lost", SLOT_LAT_LOST))}
        if self.stack:
            if self._kallsyms is None:
                ks = self.guest.exec(["cat", "/proc/kallsyms"], timeout=120)
                self._kallsyms = kallsyms_table(ks.stdout)
            out["stacks"] = {
                "probe": self.stack, "lost": lost["stacks_lost"],
                "folded": folded_stacks(res.before.get(f"bpf:{PIN_DIR}/stack_counts") or "",
                                        res.after.get(f"bpf:{PIN_DIR}/stack_counts") or "",
                                        res.after.get(f"bpf:{PIN_DIR}/stacks") or "",
                                        self._kallsyms)}
        if self.latency:
            out["latency"] = {
                "function": self.latency, "unit": "ns", "lost": lost["latency_lost"],
                "log2_hist": log2_hist(res.before.get(f"bpf:{PIN_DIR}/lat_hist") or "",
                                       res.after.get(f"bpf:{PIN_DIR}/lat_hist") or "")}
        return out


