"""Guest test: build built-pae (cached between runs), boot it, and check from inside the guest
that what the fragments asked for is what the running kernel has.

The first run on a machine is a cold kernel build (~8-15 min on 2 cores); later runs re-use
the cache entry by key and take only the boot.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.config import KernelDescription, load_config, load_kernel_description
from lab.guest.boot import BootOptions, plan_boot, provision
from lab.guest.vm import Guest, Instance
from lab.kernels import KernelArtifact
from lab.kernels.fragments import find_dropped, parse_dotconfig
from lab.kernels.source_build import PatchError, SourceBuiltKernel, entry_dir, resolve_inputs
from lab.paths import vm_dir

pytestmark = [pytest.mark.guest, pytest.mark.timeout(3600)]

CONFIG = "built-highpte"
TLB_COUNTERS = ("nr_tlb_remote_flush", "nr_tlb_remote_flush_received",
                "nr_tlb_local_flush_all", "nr_tlb_local_flush_one")


def build_built_kernel(config: str = CONFIG, jobs: int | None = None) -> KernelArtifact:
    """Build (or re-use) the kernel a configuration boots; the lead's CI can call this alone."""
    desc = load_kernel_description(load_config(config).kernel)
    return SourceBuiltKernel().build(desc, jobs=jobs)


def guest_kernel_problems(config_text: str, vmstat: str, config: str = CONFIG) -> list[str]:
    """What is wrong with a running built kernel, judged from its /proc/config.gz (unzipped)
    and /proc/vmstat: fragment options not set as asked, nr_tlb_* counters missing.
    Empty = good."""
    desc = load_kernel_description(load_config(config).kernel)
    requested = {o.symbol: o for o in resolve_inputs(desc).options}
    text = config_text
    problems = [f"{d.want.symbol}={d.want.value} ({d.want.origin}) is {d.got} in the guest"
                for d in find_dropped(requested, text)]
    fields = {line.split()[0] for line in vmstat.splitlines() if line.strip()}
    problems += [f"/proc/vmstat has no {c}" for c in TLB_COUNTERS if c not in fields]
    return problems


@pytest.fixture(scope="module")
def built() -> KernelArtifact:
    return build_built_kernel()


@pytest.fixture(scope="module")
def guest(built: KernelArtifact, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guest]:
    inst = Instance(tmp_path_factory.mktemp("vm"))
    plan = plan_boot(load_config(CONFIG), BootOptions(accel="tcg"), inst)
    plan, _kernel = provision(plan)
    g = Guest.boot(inst, plan.spec, plan.meta, plan.ready_timeout)
    try:
        yield g
    finally:
        g.shutdown(30)


def test_artifact_records_what_runs_need(built: KernelArtifact) -> None:
    meta = built.meta
    for key in ("cache_key", "patches", "config_sha256", "bzimage_sha256", "package_version",
                "compiler", "release"):
        assert key in meta
    assert meta["release"].endswith("-ukvalab")
    assert built.system_map and built.config
    assert Path(meta["log"]).is_file()
    assert parse_dotconfig(built.config.read_text())["CONFIG_HIGHPTE"] == "y"


def test_cache_hit_rebuilds_nothing(built: KernelArtifact) -> None:
    again = build_built_kernel()
    assert again.bzimage == built.bzimage and again.meta == built.meta


def test_guest_runs_the_built_kernel_with_the_fragment_options(guest: Guest,
                                                               built: KernelArtifact) -> None:
    assert guest.state.get("release") == built.meta["release"]
    cfg = guest.exec(["zcat", "/proc/config.gz"], timeout=60)  # busybox zcat
    assert cfg.rc == 0, cfg.stderr
    vmstat = guest.exec(["cat", "/proc/vmstat"], timeout=60)
    assert vmstat.rc == 0, vmstat.stderr
    assert "CONFIG_HIGHPTE=y" in cfg.stdout
    assert guest_kernel_problems(cfg.stdout, vmstat.stdout) == []


BROKEN = """\
--- a/mm/highmem.c
+++ b/mm/highmem.c
@@ -1,3 +1,3 @@
-this line is not in mm/highmem.c
+neither is this one
 nor this
 nor that
"""


def test_broken_patch_on_the_real_tree_fails_clearly(tmp_path: Path) -> None:
    """A copy of vm/ whose series has one broken patch: a PatchError naming the patch and its
    hunk, and no entry (nor temporary directory) left in the cache."""
    root = tmp_path / "vm"
    shutil.copytree(vm_dir() / "kernels", root / "kernels")
    (root / "patches" / "broken").mkdir(parents=True)
    (root / "patches" / "broken" / "0001-broken.patch").write_text(BROKEN)
    base = load_kernel_description("built-pae")
    desc = KernelDescription("broken", "source", "", {**base.data, "patches": "broken"})
    key = resolve_inputs(desc, root).key()
    with pytest.raises(PatchError, match=r"broken/0001-broken\.patch does not apply: "
                                         r"hunk #1 FAILED at line 1 of mm/highmem\.c"):
        SourceBuiltKernel().build(desc, jobs=1, root=root)
    assert not entry_dir(key).exists()
    assert not list(entry_dir(key).parent.glob(f".build-{key[:16]}-*"))
    log = entry_dir(key).parent / "logs" / f"broken-{key[:16]}.log"
    assert "0001-broken.patch" in log.read_text()
    log.unlink()
