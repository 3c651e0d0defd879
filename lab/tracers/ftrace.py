"""The ``ftrace`` backend: kprobes and tracepoint hist triggers through the guest's tracefs.

Counting stays in the guest kernel: kprobe hits are read from ``kprobe_profile`` (nhit) and
tracepoints are counted by hist triggers, with ``tracing_on`` at 0 so no event is written to
the ring buffer or shipped to the host. The agent reads these files immediately before and
after the workload (no fork of its own in between); counts are the differences.

The shell scripts and the parsers here are pure functions, testable on captured guest output.
"""

from __future__ import annotations

import re
import shlex
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import LabError
from ..guest.agent import ExecResult
from ..guest.vm import Guest
from ..parsing import parse_meminfo, parse_vmstat
from . import INLINE_HINTS, Attachment, Measurement, ProbeSpec, SessionContext, refuse_options

__all__ = [
    "FtraceSession",
    "open_session",
    "TRACEFS",
    "TLB_FLUSH_REASONS",
    "preflight_script",
    "parse_preflight",
    "setup_script",
    "toggle_script",
    "parse_kprobe_profile",
    "parse_hist",
    "counts_delta",
]

TRACEFS = "/sys/kernel/tracing"
GROUP = "ukvalab"
#: enum tlb_flush_reason (include/linux/mm_types.h), in order.
TLB_FLUSH_REASONS = [
    "task_switch",
    "remote_shootdown",
    "local_shootdown",
    "local_mm_shootdown",
    "remote_ipi_send",
]
_EVENT_NAME = re.compile(r"p(\d+)_(\d+)$")


def preflight_script(probes: list[ProbeSpec]) -> str:
    """A guest shell script listing every kallsyms line (addr type name) for the probed symbols,
    and which tracepoints exist."""
    syms = " ".join(sorted({p.symbol for p in probes if p.kind == "kprobe"}))
    lines = [
        f"awk -v want={shlex.quote(syms)} "
        '\'BEGIN{n=split(want,a," ");for(i=1;i<=n;i++)w[a[i]]=1} '
        '($3 in w)&&($4==""){print "sym",$1,$2,$3}\' /proc/kallsyms',
    ]
    for p in probes:
        if p.kind == "tracepoint":
            sub, _, ev = p.tracepoint.partition(":")
            lines.append(f"[ -d {TRACEFS}/events/{sub}/{ev} ] && echo tp {p.tracepoint}")
    lines.append("exit 0")
    return "\n".join(lines)


def parse_preflight(
    text: str, probes: list[ProbeSpec]
) -> tuple[dict[str, list[str]], set[str], dict[str, str]]:
    """→ ({symbol: [addresses]}, {present tracepoints}, {probe name: why absent})."""
    addrs: dict[str, list[str]] = defaultdict(list)
    tps: set[str] = set()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0] == "sym" and parts[2].lower() == "t":
            addrs[parts[3]].append(parts[1])
        elif len(parts) == 2 and parts[0] == "tp":
            tps.add(parts[1])
    absent: dict[str, str] = {}
    for p in probes:
        if p.kind == "kprobe" and p.symbol not in addrs:
            why = "not in this kernel's kallsyms"
            if p.symbol in INLINE_HINTS:
                why += f" (inline; probe {INLINE_HINTS[p.symbol]})"
            absent[p.name] = why
        elif p.kind == "tracepoint" and p.tracepoint not in tps:
            absent[p.name] = f"tracepoint {p.tracepoint} not in this kernel"
    return dict(addrs), tps, absent


def _hist_spec(p: ProbeSpec) -> str:
    return f"hist:keys={p.key or 'common_cpu'}:vals=hitcount:size=256"


def _trigger_path(p: ProbeSpec) -> str:
    sub, _, ev = p.tracepoint.partition(":")
    return f"events/{sub}/{ev}/trigger"


def toggle_script(probes: list[ProbeSpec], attached: list[str], on: bool) -> str:
    """Attach (on) or detach (off) the counting without forgetting the kprobe definitions.

    Detached, the kprobes are unregistered (no int3 left in the text) and the hist triggers
    removed, so a run in between costs exactly what it costs untraced. kprobe nhit survives
    disable/enable; hist counts restart, which the before/after snapshots absorb.
    """
    lines = [f"cd {TRACEFS} || exit 1"]
    if any(p.kind == "kprobe" and p.name in attached for p in probes):
        lines.append(f"echo {1 if on else 0} > events/{GROUP}/enable")
    for p in probes:
        if p.kind == "tracepoint" and p.name in attached:
            lines.append(f"echo '{'' if on else '!'}{_hist_spec(p)}' > {_trigger_path(p)}")
    return "\n".join(lines)


def setup_script(probes: list[ProbeSpec], addrs: dict[str, list[str]]) -> str:
    """Define one kprobe per symbol instance and one hist trigger per tracepoint.

    A symbol with several kallsyms instances (static functions) is probed at each address
    (kprobe_events refuses a non-unique name); each definition is reported as ok/failed so
    one refusal does not stop the others.
    """
    out = [
        f"cd {TRACEFS} || exit 1",
        "echo 0 > tracing_on",
        # Undo an earlier attach in this boot: our kprobe group and our hist triggers only
        # (a loop over every event's trigger file costs ~40 s of forks under TCG).
        f"[ -d events/{GROUP} ] && echo 0 > events/{GROUP}/enable",
        "echo > kprobe_events",
    ]
    for p in probes:
        if p.kind == "tracepoint":
            sub, _, ev = p.tracepoint.partition(":")
            out.append(
                f"echo '!hist:keys={p.key or 'common_cpu'}:vals=hitcount:size=256' "
                f"> events/{sub}/{ev}/trigger 2>/dev/null"
            )
    for i, p in enumerate(probes):
        if p.kind == "kprobe":
            sites = addrs.get(p.symbol, [])
            targets = [p.symbol] if len(sites) == 1 else [f"0x{a}" for a in sites]
            for j, target in enumerate(targets):
                ev = f"p{i}_{j}"
                out.append(
                    f"if echo 'p:{GROUP}/{ev} {target}' >> kprobe_events 2>/dev/null && "
                    f"echo 1 > events/{GROUP}/{ev}/enable; then echo ok {ev}; "
                    f"else echo failed {ev} $(tail -n 2 error_log | head -n 1 | cut -c1-120); fi"
                )
        else:
            out.append(
                f"if echo '{_hist_spec(p)}' > {_trigger_path(p)}; "
                f"then echo ok tp{i}; else echo failed tp{i}; fi"
            )
    out.append("exit 0")
    return "\n".join(out)


def parse_kprobe_profile(text: str) -> dict[str, int]:
    """``kprobe_profile`` → {event name: nhit}."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1].isdigit():
            out[parts[0].rpartition("/")[2]] = int(parts[1])
    return out


def parse_hist(text: str) -> tuple[int, dict[str, int]]:
    """A hist trigger's output → (total hits, {key value: hitcount})."""
    total = 0
    per_key: dict[str, int] = {}
    for line in text.splitlines():
        m = re.match(r"\{\s*\w+:\s*(\S+)\s*\}\s*hitcount:\s*(\d+)", line)
        if m:
            per_key[m.group(1)] = per_key.get(m.group(1), 0) + int(m.group(2))
        m = re.match(r"\s*Hits:\s*(\d+)", line)
        if m:
            total = int(m.group(1))
    return total, per_key


def _tracepoint_counts(p: ProbeSpec, text: str | None) -> dict[str, int]:
    if text is None:
        return {}
    total, per_key = parse_hist(text)
    counts = {p.name: total}
    if p.tracepoint == "tlb:tlb_flush":
        for idx, reason in enumerate(TLB_FLUSH_REASONS):
            counts[f"{p.name}.{reason}"] = per_key.get(str(idx), 0)
    return counts


def counts_delta(
    probes: list[ProbeSpec],
    attached: list[str],
    before: dict[str, str | None],
    after: dict[str, str | None],
) -> dict[str, int]:
    """Per-probe counts over one run, from the tracefs files read before and after it."""
    prof_path = f"{TRACEFS}/kprobe_profile"
    b = parse_kprobe_profile(before.get(prof_path) or "")
    a = parse_kprobe_profile(after.get(prof_path) or "")
    counts: dict[str, int] = {}
    for i, p in enumerate(probes):
        if p.name not in attached:
            continue
        if p.kind == "kprobe":
            evs = [e for e in a if (m := _EVENT_NAME.match(e)) and int(m.group(1)) == i]
            counts[p.name] = sum(a[e] - b.get(e, 0) for e in evs)
        else:
            path = _hist_path(p)
            cb, ca = _tracepoint_counts(p, before.get(path)), _tracepoint_counts(p, after.get(path))
            counts.update({k: v - cb.get(k, 0) for k, v in ca.items()})
    return counts


def _hist_path(p: ProbeSpec) -> str:
    sub, _, ev = p.tracepoint.partition(":")
    return f"{TRACEFS}/events/{sub}/{ev}/hist"


class _CostWindows:
    """Cost model (issue 12): the plugin's record of the next agent window, if it is loaded.

    The agent marks every run; the detached (timing) run and the attached (counting) run
    each get their own window, so the clean counts price the workload and the probed ones
    compare with the kprobes of the same execution."""

    def __init__(self, guest: Guest) -> None:
        from ..costmodel import read_windows, window_file

        self.path = window_file(guest.instance.dir) if guest.state.get("cost_model") else None
        self.seen = len(read_windows(self.path)) if self.path else 0

    def take(self) -> dict[str, int] | None:
        from ..costmodel import new_window

        return new_window(self.path, self.seen) if self.path else None


@contextmanager
def open_session(ctx: SessionContext) -> Iterator[FtraceSession]:
    """The registry's opener: boot the configuration, count in it, power it off after."""
    refuse_options(ctx, "ftrace")
    with ctx.boot_guest() as guest:
        yield FtraceSession(guest)


class FtraceSession:
    """Counts in a booted guest through tracefs."""

    backend = "ftrace"
    simulated = False

    def __init__(self, guest: Guest) -> None:
        self.guest = guest
        self.probes: list[ProbeSpec] = []
        self.attachment = Attachment([], {})

    @property
    def console_log(self) -> Path:
        """The guest's console, so each measurement can record what the kernel said during it."""
        return self.guest.instance.console_log

    def attach(self, probes: list[ProbeSpec]) -> Attachment:
        self.probes = probes
        pre = self.guest.exec(["sh", "-c", preflight_script(probes)], timeout=120)
        addrs, _tps, absent = parse_preflight(pre.stdout, probes)
        setup = self.guest.exec(["sh", "-c", setup_script(probes, addrs)], timeout=120)
        if setup.rc != 0:
            raise LabError(f"cannot set up tracing in the guest: {setup.stderr.strip()[-200:]}")
        failed = {
            line.split()[1]: " ".join(line.split()[2:])
            for line in setup.stdout.splitlines()
            if line.startswith("failed ")
        }
        attached = []
        for i, p in enumerate(probes):
            if p.name in absent:
                continue
            mine = [k for k in failed if k == f"tp{i}" or k.startswith(f"p{i}_")]
            if mine:
                absent[p.name] = f"tracefs refused it: {failed[mine[0]] or 'see error_log'}"
            else:
                attached.append(p.name)
        hints = {p.name: INLINE_HINTS[p.symbol] for p in probes if p.symbol in INLINE_HINTS}
        self.attachment = Attachment(attached, absent, hints)
        return self.attachment

    def snapshot_paths(self) -> list[str]:
        paths = [f"{TRACEFS}/kprobe_profile"]
        paths += [
            _hist_path(p)
            for p in self.probes
            if p.kind == "tracepoint" and p.name in self.attachment.attached
        ]
        return [*paths, "/proc/meminfo", "/proc/vmstat"]

    def counts(self, before: dict[str, str | None],
               after: dict[str, str | None]) -> dict[str, int]:
        """Per-probe counts over the probed run, from the snapshots around it."""
        return counts_delta(self.probes, self.attachment.attached, before, after)

    def extra_results(self, res: ExecResult) -> dict[str, object]:
        """What else a backend took from the probed run (the ebpf backend's stacks)."""
        return {}

    def _toggle(self, on: bool) -> None:
        script = toggle_script(self.probes, self.attachment.attached, on)
        res = self.guest.exec(["sh", "-c", script], timeout=120)
        if res.rc != 0:
            raise LabError(f"cannot {'attach' if on else 'detach'} the probes: {res.stderr[-200:]}")

    def _run(self, workload: str, argv: list[str], snapshots: list[str]) -> ExecResult:
        res = self.guest.exec(argv, snapshots=snapshots)
        if res.rc != 0:
            tail = (res.stderr.strip() or res.stdout.strip())[-300:]
            raise LabError(f"workload {workload} failed in the guest (exit {res.rc}): {tail}")
        return res

    def measure(self, workload: str, params: dict[str, int], argv: list[str]) -> Measurement:
        """Run the workload twice: detached for its guest time, then attached for its counts.

        Probes on the kmap paths cost ~400 instructions a hit and highpte hits them more
        often than lowpte, so time taken under probes would inflate exactly the difference
        being measured. The probed run's own time is kept too: their ratio is the overhead.
        """
        from ..workloads import parse_report

        self._toggle(False)
        cm = _CostWindows(self.guest)  # cost model (issue 12): the plugin's window per run
        clean = parse_report(self._run(workload, argv, []).stdout)
        cm_clean = cm.take()
        self._toggle(True)
        proc = self.guest.process()
        host0 = proc.cpu_times() if proc else None
        cm = _CostWindows(self.guest)
        res = self._run(workload, argv, self.snapshot_paths())
        cm_probed = cm.take()
        report = parse_report(res.stdout)
        vm_b = parse_vmstat(res.before.get("/proc/vmstat") or "")
        vm_a = parse_vmstat(res.after.get("/proc/vmstat") or "")
        proc = self.guest.process()
        host: dict[str, float | int] = {}
        if proc and host0:
            cpu = proc.cpu_times()
            host = {
                "qemu_cpu_seconds": round(cpu.user + cpu.system - host0.user - host0.system, 3),
                "qemu_rss_bytes": proc.memory_info().rss,
            }
        probed_ns = int(report.get("elapsed_ns", res.wall_ns))
        clean_ns = int(clean.get("elapsed_ns", 0))
        return Measurement(
            counts=self.counts(res.before, res.after),
            meminfo_before=parse_meminfo(res.before.get("/proc/meminfo") or ""),
            meminfo_after=parse_meminfo(res.after.get("/proc/meminfo") or ""),
            vmstat_delta={k: v - vm_b.get(k, 0) for k, v in vm_a.items() if k.startswith("nr_tlb")},
            report=report,
            guest_elapsed_ns=clean_ns,
            extra={**self.extra_results(res),
                   "host": host, "agent_wall_ns": res.wall_ns, "probed_elapsed_ns": probed_ns,
                   "clean_report": clean,
                   "probe_overhead": round(probed_ns / clean_ns, 4) if clean_ns else None,
                   **({"costmodel": {"model": self.guest.state["cost_model"],
                                     "counts": cm_clean, "probed_counts": cm_probed}}
                      if cm_clean is not None else {})},
        )

    def close(self) -> None:
        """Probes vanish with the guest; the trace driver powers it off."""
