"""The ebpf backend in the real guest, cross-checked against ftrace in the same boot.

One stock 686-pae guest (highpte, icount) with the eBPF parts in its image. Both backends are
attached at once (a kprobe event and a BPF perf-link on the same addresses; the tlb_flush and
sched_switch tracepoints counted by a hist trigger and by BPF) and read around one execution
of forkstorm: every counter must agree within 1 %. Then the ebpf session measures on its own,
as `lab trace --backend ebpf` does, and its counts must still be the workload's.
"""

from __future__ import annotations

import base64
import subprocess
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.config import load_config
from lab.guest.boot import BootOptions, plan_boot, provision
from lab.guest.vm import Guest, Instance
from lab.tracers import load_probe_set
from lab.tracers.ebpf import EbpfSession
from lab.tracers.ebpf_build import CLANG_FLAGS, LOADER
from lab.tracers.ftrace import FtraceSession
from lab.workloads import load_workload, parse_report

pytestmark = [pytest.mark.guest, pytest.mark.timeout(1800)]

DATA = Path(__file__).parents[1] / "data"

PROCS = 300
PARAMS = {"procs": PROCS, "touch": 16, "concurrency": 4}


@pytest.fixture(scope="module")
def guest() -> Iterator[Guest]:
    with tempfile.TemporaryDirectory(prefix="ukva-lab-ebpf-", dir="/tmp") as tmp:
        inst = Instance(Path(tmp))
        opts = BootOptions(icount=True, image_extras=("ebpf",))
        bp, _kernel = provision(plan_boot(load_config("highpte"), opts, inst))
        g = Guest.boot(inst, bp.spec, bp.meta, bp.ready_timeout)
        try:
            yield g
        finally:
            g.shutdown(20)


def _argv() -> list[str]:
    return load_workload("forkstorm").argv(PARAMS)


#: Static functions that appear several times in an i386 kernel's kallsyms (one copy per
#: compilation unit); those with two or more instances in this guest are probed together.
MULTI = ("cpumask_weight", "jhash", "native_read_msr", "native_write_msr", "find_next_bit",
         "bitmap_zero", "bitmap_copy", "cpu_online", "init_once", "put_page")


def _kprobe_hits(guest: Guest) -> dict[str, int]:
    """Hits so far of each of our kprobes (one per address), from kprobe_profile."""
    profile = guest.exec(["cat", "/sys/kernel/tracing/kprobe_profile"]).stdout
    return {w[0]: int(w[1]) for w in map(str.split, profile.splitlines()) if len(w) >= 2}


def test_a_symbol_with_several_instances_is_counted_at_each(guest: Guest,
                                                            tmp_path: Path) -> None:
    """First in this module, in a fresh boot: later tests leave the slab caches warm, and a
    warm cache runs no constructor (init_once)."""
    kallsyms = guest.exec(["cat", "/proc/kallsyms"]).stdout.splitlines()
    instances = Counter(f[2] for f in map(str.split, kallsyms) if len(f) >= 3 and f[1] in "tT")
    multi = [s for s in MULTI if instances[s] >= 2]
    assert multi, {s: instances[s] for s in MULTI}
    path = tmp_path / "probes.toml"
    path.write_text("".join(f'[[probe]]\nsymbol = "{s}"\n\n' for s in [*multi, "pgd_alloc"]))
    probes = load_probe_set(path)
    ftrace, ebpf = FtraceSession(guest), EbpfSession(guest)
    fa, ea = ftrace.attach(probes), ebpf.attach(probes)
    assert fa.attached == ea.attached and set(fa.absent) == set(ea.absent)
    # new inodes on tmpfs, procfs and sysfs: slab constructors (init_once) of several files
    churn = ("for i in $(seq 1 400); do echo > /tmp/multi$i; done; "
             "ls -lR /proc/self/ /sys/kernel/mm > /dev/null 2>&1; rm -f /tmp/multi*")
    before = _kprobe_hits(guest)
    res = guest.exec(["sh", "-c", churn],
                     snapshots=[*ebpf.snapshot_paths()[:1], *ftrace.snapshot_paths()])
    assert res.rc == 0, res.stderr
    f, e = ftrace.counts(res.before, res.after), ebpf.counts(res.before, res.after)
    assert set(f) == set(e) == set(fa.attached), "a refused probe is absent, never 0"
    # ftrace has one kprobe per address (p<i>_0, p<i>_1, ...): where several addresses of
    # one symbol were hit, the ebpf count can only match if it too counted at every one
    after = _kprobe_hits(guest)
    hits = {ev: n - before.get(ev, 0) for ev, n in after.items()}
    proven = []
    for i, p in enumerate(probes):
        sites = [n for ev, n in hits.items() if ev.startswith(f"p{i}_")]
        # the profile's reads enclose the snapshots' (and a few forks of their own)
        assert p.name not in fa.attached or sum(sites) >= f[p.name], (p.name, sites, f)
        print(f"{p.name}: {instances[p.name]} instances, hits per address in the run {sites}, "
              f"ftrace {f.get(p.name)}, ebpf {e.get(p.name)}, absent {fa.absent.get(p.name)}")
        if p.name in fa.attached:
            assert abs(f[p.name] - e[p.name]) <= 0.01 * max(f[p.name], e[p.name]), p.name
            if p.name != "pgd_alloc" and f[p.name] > 0:
                assert len(sites) == instances[p.name], (p.name, sites)
                if sum(1 for n in sites if n > 0) >= 2 and f[p.name] > max(sites):
                    proven.append(p.name)
    assert proven, "no symbol with several instances was hit at two of them"
    guest.exec(["sh", "-c", "echo 0 > /sys/kernel/tracing/events/ukvalab/enable"])


def test_ebpf_and_ftrace_agree_on_one_execution(guest: Guest) -> None:
    probes = load_probe_set()
    ftrace, ebpf = FtraceSession(guest), EbpfSession(guest)
    fa, ea = ftrace.attach(probes), ebpf.attach(probes)
    assert fa.attached == ea.attached and set(fa.absent) == set(ea.absent)
    res = guest.exec(_argv(), snapshots=[*ebpf.snapshot_paths()[:1], *ftrace.snapshot_paths()])
    assert res.rc == 0, res.stderr
    assert int(parse_report(res.stdout)["ops"]) == PROCS
    f, e = ftrace.counts(res.before, res.after), ebpf.counts(res.before, res.after)
    assert set(f) == set(e)
    table = "\n".join(f"{k:40} {f[k]:>9} {e[k]:>9}" for k in sorted(f))
    print(f"\n{'counter':40} {'ftrace':>9} {'ebpf':>9}\n{table}")
    for k in f:
        assert abs(f[k] - e[k]) <= 0.01 * max(f[k], e[k]), f"{k}: ftrace {f[k]}, ebpf {e[k]}"
    # and the counts are the workload's, not zeros agreeing with zeros
    assert f["pgd_alloc"] >= PROCS and e["__kmap_local_pfn_prot"] > 50 * PROCS
    assert sum(v for k, v in e.items() if k.startswith("tlb_flush.")) == e["tlb_flush"]
    guest.exec(["sh", "-c", "echo 0 > /sys/kernel/tracing/events/ukvalab/enable"])


def test_ebpf_session_measures_with_the_jit(guest: Guest) -> None:
    ebpf = EbpfSession(guest)
    ebpf.attach(load_probe_set())
    m = ebpf.measure("forkstorm", PARAMS, _argv())
    assert m.extra["ebpf"]["jit_enable"] == "1"
    assert all(m.extra["ebpf"]["jited"].values()), m.extra["ebpf"]
    assert m.counts["pgd_alloc"] >= PROCS and m.counts["pgd_free"] >= PROCS
    assert 100 * PROCS < m.counts["__kmap_local_pfn_prot"] < 200 * PROCS
    # detached for the clean run, attached for the counted one: probes cost guest time
    assert m.extra["probe_overhead"] > 1.0
    res = guest.exec(["ls", "/sys/fs/bpf/lab"])
    assert "counts" in res.stdout and "link0" in res.stdout


def test_a_verifier_refusal_is_one_line_and_attaches_nothing(guest: Guest,
                                                            tmp_path: Path) -> None:
    obj = tmp_path / "bad.bpf.o"
    subprocess.run(["clang", *CLANG_FLAGS, "-c", str(DATA / "bpf-bad.bpf.c"), "-o", str(obj)],
                   check=True)
    blob = base64.b64encode(obj.read_bytes()).decode()
    put = guest.exec(["sh", "-c", f"echo {blob} | base64 -d > /tmp/bad.bpf.o"])
    assert put.rc == 0, put.stderr
    res = guest.exec(["/" + LOADER, "/tmp/bad.bpf.o", "/sys/fs/bpf/bad", "c:0:pgd_alloc"])
    assert res.rc == 1
    (line,) = res.stdout.splitlines()
    assert line.startswith("error: kp_count: ") and "invalid mem access" in line, line
    assert guest.exec(["ls", "/sys/fs/bpf/bad"]).rc != 0  # nothing pinned, nothing attached
