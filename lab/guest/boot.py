"""Turn a configuration and boot options into a BootSpec: the plan step before any guest runs.

``plan_boot`` resolves everything (kernel, image, accelerator, command line) and reports what
would be downloaded or built; ``provision`` then does it. ``--dry-run`` stops between the two.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import UsageError
from ..hostcheck import require_tool
from ..kernels import KernelArtifact, provider_for
from ..kernels.description import load_kernel_description
from ..paths import state_dir
from ..sizes import parse_mem_mib
from . import accel as accel_mod
from .configs import GuestConfig, load_boot_defaults
from .image import ImagePlan, ensure_image, plan_image
from .qemu import SMP_TCG_THREAD, BootSpec, kernel_cmdline, qemu_version
from .vm import Instance

__all__ = ["BootOptions", "BootPlan", "plan_boot", "provision"]


@dataclass(frozen=True)
class BootOptions:
    """What the user chose on the command line (None = the default from vm/guest.toml)."""

    mem_mib: int | None = None
    cpus: int | None = None
    icount: bool = False
    accel: str = "auto"
    append: tuple[str, ...] = ()
    #: a machine model in lab/costmodel/models (issue 12): loads the counting plugin, implies
    #: icount
    cost_model: str | None = None
    #: optional image parts a tracer backend needs ("ebpf": its BPF object and loader)
    image_extras: tuple[str, ...] = ()


@dataclass
class BootPlan:
    """Everything needed to boot one configuration, and what is still to fetch or build."""

    config: GuestConfig
    spec: BootSpec
    image: ImagePlan
    kernel_actions: list[str]
    ready_timeout: float
    meta: dict[str, Any] = field(default_factory=dict)

    def actions(self) -> list[str]:
        return self.kernel_actions + self.image.describe()


def plan_boot(config: GuestConfig, opts: BootOptions, instance: Instance) -> BootPlan:
    """Resolve a boot without side effects (besides reading apt's index)."""
    defaults = load_boot_defaults()
    require_tool(defaults.qemu, "qemu-system-x86")
    if opts.cpus is not None and not 1 <= opts.cpus <= 8:
        raise UsageError(f"--cpus {opts.cpus} out of range: 1 to 8")
    if opts.accel not in ("auto", "tcg", "kvm"):
        raise UsageError(f"unknown accelerator {opts.accel!r}: choose auto, tcg or kvm")
    if opts.accel == "kvm" and (opts.icount or opts.cost_model):
        what = "--cost-model" if opts.cost_model else "--icount"
        raise UsageError(f"{what} needs TCG (KVM has no icount and no TCG plugins): drop "
                         f"--accel kvm, or drop {what} to measure hardware time under KVM")
    if opts.cost_model:
        opts = replace(opts, icount=True)
    mem = opts.mem_mib if opts.mem_mib is not None else parse_mem_mib(defaults.mem)
    cpus = 1 if opts.icount else (opts.cpus or defaults.cpus)
    desc = load_kernel_description(config.kernel)
    provider = provider_for(desc)
    kernel_actions = provider.plan(desc)
    bzimage = provider.bzimage_path(desc)
    image = plan_image(opts.image_extras)
    cmdline = kernel_cmdline([*defaults.cmdline, *config.cmdline, *opts.append])
    qver = qemu_version(defaults.qemu)
    accel = accel_mod.requested_accel(opts.accel, opts.icount)
    if accel == "auto":
        known = accel_mod.cached_verdict(qver)
        if known is None:
            kernel_actions = [
                *kernel_actions,
                "accel: probe whether KVM runs the guest "
                f"(a boot of up to {accel_mod.PROBE_TIMEOUT:.0f} s; tcg shown below)",
            ]
        accel = known or "tcg"
    plugin, plugin_actions = _plan_plugin(opts, defaults.qemu, instance, cmdline)
    kernel_actions = [*kernel_actions, *plugin_actions]
    spec = BootSpec(
        qemu=defaults.qemu,
        kernel=bzimage,
        initrd=image.path,
        cmdline=cmdline,
        mem_mib=mem,
        cpus=cpus,
        cpu_model=defaults.cpu,
        machine=defaults.machine,
        accel=accel,
        icount=opts.icount,
        console_log=instance.console_log,
        agent_socket=instance.agent_socket,
        qmp_socket=instance.qmp_socket,
        tcg_thread=SMP_TCG_THREAD,
        plugin=plugin,
    )
    meta = {
        "config": config.name,
        "kernel_name": desc.name,
        "cmdline": cmdline,
        "mem_mib": mem,
        "cpus": cpus,
        "icount": opts.icount,
        "timing": "icount" if opts.icount else "realtime",
        "qemu_version": qver,
        "accel_requested": opts.accel,
        "image_key": image.key,
    }
    if opts.cost_model:
        meta["cost_model"] = opts.cost_model
    return BootPlan(config, spec, image, kernel_actions, defaults.ready_timeout, meta)


def _plan_plugin(opts: BootOptions, qemu: str, instance: Instance,
                 cmdline: str) -> tuple[str, list[str]]:
    """The cost model's -plugin value and what must be built for it (issue 12)."""
    if not opts.cost_model:
        return "", []
    from .. import costmodel

    model = costmodel.load_model(opts.cost_model)
    costmodel.require_plugin_support(qemu)
    so = costmodel.plugin_path(costmodel.plugin_key(costmodel.require_gcc()))
    actions = [] if so.is_file() else [f"costmodel: build {so} (gcc {' '.join(costmodel.CFLAGS)})"]
    return costmodel.plugin_option(so, costmodel.window_file(instance.dir), model, cmdline), actions


def provision(plan: BootPlan) -> tuple[BootPlan, KernelArtifact]:
    """Fetch or build the kernel and image, settle the accelerator; returns the final plan."""
    desc = load_kernel_description(plan.config.kernel)
    kernel = provider_for(desc).ensure(desc)
    initrd = ensure_image(plan.image)
    if plan.spec.plugin:
        from ..costmodel import ensure_plugin

        ensure_plugin()
    accel = plan.spec.accel
    if (
        plan.meta["accel_requested"] == "auto"
        and accel_mod.requested_accel("auto", plan.spec.icount) == "auto"
    ):
        accel = accel_mod.probe_kvm(plan.meta["qemu_version"], kernel, initrd)
    spec = replace(plan.spec, kernel=kernel.bzimage, initrd=initrd, accel=accel)
    meta = {**plan.meta, "accel": accel, "kernel": kernel.meta}
    return replace(plan, spec=spec, meta=meta), kernel


def default_instance() -> Instance:
    """The persistent instance ``lab up`` / ``lab down`` manage."""
    return Instance(state_dir() / "vm")
