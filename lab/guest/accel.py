"""Choose TCG or KVM: KVM only when a probe shows that it really runs this guest.

docs/FACTS.md: /dev/kvm exists on the build machines but KVM guests hang or die with "emulation
failure", so the existence of /dev/kvm proves nothing. The probe boots the real kernel and
image under KVM and waits for the agent; the verdict is cached per (QEMU version, host kernel),
so it costs one short boot per host set-up, and ``--dry-run`` can show the verdict.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from pathlib import Path

from .. import ui
from ..errors import LabError
from ..kernels import KernelArtifact
from ..paths import cache_dir

__all__ = ["requested_accel", "probe_kvm", "cached_verdict", "PROBE_TIMEOUT"]

PROBE_TIMEOUT = 40.0


def requested_accel(choice: str, icount: bool) -> str:
    """``auto`` stays ``auto`` until provisioning; icount always means TCG."""
    if icount:
        return "tcg"
    if choice == "auto" and not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "tcg"
    return choice


def _key(qemu_ver: str) -> str:
    return f"qemu-{qemu_ver}-host-{platform.release()}"


def _verdicts() -> dict[str, dict[str, object]]:
    try:
        return dict(json.loads((cache_dir() / "kvm-probe.json").read_text()))
    except (OSError, json.JSONDecodeError):
        return {}


def cached_verdict(qemu_ver: str) -> str | None:
    """The accelerator an earlier probe chose on this host, or None when never probed."""
    v = _verdicts().get(_key(qemu_ver))
    return str(v["accel"]) if v else None


def probe_kvm(qemu_ver: str, kernel: KernelArtifact, initrd: Path) -> str:
    """Return "kvm" if a KVM boot of this guest reaches the agent, else "tcg" (cached)."""
    known = cached_verdict(qemu_ver)
    if known:
        return known
    key, verdicts, cache = _key(qemu_ver), _verdicts(), cache_dir() / "kvm-probe.json"
    from .configs import load_boot_defaults
    from .qemu import BootSpec
    from .vm import Guest, Instance

    d = load_boot_defaults()
    verdict, why = "tcg", ""
    with ui.step("Probing whether KVM really runs this guest (once per QEMU and host kernel)"):
        with tempfile.TemporaryDirectory(prefix="ukva-kvm-", dir="/tmp") as tmp:
            inst = Instance(Path(tmp))
            spec = BootSpec(
                qemu=d.qemu,
                kernel=kernel.bzimage,
                initrd=initrd,
                cmdline=" ".join(d.cmdline),
                mem_mib=1024,
                cpus=1,
                cpu_model="host",
                machine=d.machine,
                accel="kvm",
                icount=False,
                console_log=inst.console_log,
                agent_socket=inst.agent_socket,
                qmp_socket=inst.qmp_socket,
            )
            t0 = time.monotonic()
            try:
                guest = Guest.boot(inst, spec, {"probe": True}, PROBE_TIMEOUT)
                guest.shutdown(10)
                verdict = "kvm"
            except LabError as e:
                why = str(e).split(" (console log")[0]
            why = why or f"booted in {time.monotonic() - t0:.1f} s"
    if verdict == "tcg":
        ui.warn(f"KVM does not run this guest ({why}); using TCG")
    verdicts[key] = {"accel": verdict, "why": why, "when": time.strftime("%Y-%m-%d %H:%M")}
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(verdicts, indent=2))
    return verdict
