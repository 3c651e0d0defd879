"""Kernels built from Debian's linux-source-6.1: base config + fragments + a patch series.

Builds live in the cache, never in the repo, under a key hashed from everything that changes
the image (source package, base config, merged fragment options, patch bytes, toolchain), so
an unchanged key re-uses the built bzImage and two descriptions with the same inputs share
it. Each build patches its own hard-linked copy of the pristine tree (GNU patch writes a new
file and renames it, so the pristine inode is never written) and runs in a temporary
directory that is renamed into place only when the bzImage exists: a failed or interrupted
build leaves no entry. ccache, keyed on relative paths, makes a rebuild after a patch edit
recompile only what the patch touched.

This module is the runner (the source tree, make and ccache, the provider); the inputs and
their key are lab/kernels/build_inputs.py and patching is lab/kernels/patching.py. Their
public names are re-exported here.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from .. import ui
from ..debian import extract_deb, fetch_deb, resolve_package, sha256_file
from ..errors import LabError
from ..hostcheck import require_tool
from ..paths import cache_dir, cache_lock
from . import KernelArtifact, load_artifact
from .build_inputs import (
    ARCH,
    BuildInputs,
    PatchInput,
    entry_dir,
    patch_series,
    resolve_inputs,
)
from .description import KernelDescription, load_kernel_description
from .fragments import DroppedOptionsError, apply_fragments, find_dropped
from .patching import PatchError, apply_patches

__all__ = [
    "BuildInputs",
    "PatchError",
    "PatchInput",
    "SourceBuiltKernel",
    "apply_patches",
    "entry_dir",
    "patch_series",
    "resolve_inputs",
]

#: Fixed identity strings make the image reproducible: same key, same bzImage bytes.
_REPRODUCIBLE_ENV = {
    "KBUILD_BUILD_TIMESTAMP": "1970-01-01 00:00:00 UTC",
    "KBUILD_BUILD_USER": "ukva-lab",
    "KBUILD_BUILD_HOST": "ukva-lab",
    "KBUILD_BUILD_VERSION": "1",
}


def source_tree(inputs: BuildInputs) -> Path:
    """The pristine tree for the package version, unpacked once into the cache."""
    dest = cache_dir() / "src" / f"{inputs.package}_{inputs.package_version}"
    with cache_lock(dest.name):
        if dest.is_dir():
            return dest
        pkg = resolve_package(inputs.package, "all")
        if pkg.sha256 != inputs.package_sha256:
            raise LabError(f"apt's {inputs.package} changed during the build: re-run")
        with ui.step(f"Downloading {pkg.name} {pkg.version} ({pkg.size / 1e6:.0f} MB)"):
            deb = fetch_deb(pkg)
        dest.parent.mkdir(parents=True, exist_ok=True)
        with ui.step(f"Unpacking {pkg.name} {pkg.version}"), tempfile.TemporaryDirectory(
            dir=dest.parent
        ) as tmp:
            extract_deb(deb, Path(tmp) / "deb")
            tars = list((Path(tmp) / "deb" / "usr" / "src").glob("linux-source-*.tar.xz"))
            if len(tars) != 1:
                raise LabError(f"{deb.name}: expected one usr/src/linux-source-*.tar.xz: {tars}")
            _run(["tar", "-xJf", str(tars[0]), "-C", tmp], what=f"unpacking {tars[0].name}")
            top = Path(tmp) / tars[0].name.removesuffix(".tar.xz")
            if not (top / "Makefile").is_file():
                raise LabError(f"{tars[0].name}: no {top.name}/Makefile inside")
            os.replace(top, dest)
        return dest


def _run(argv: list[str], what: str, cwd: Path | None = None) -> str:
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        last = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()[-1]
        raise LabError(f"{what} failed ({argv[0]} exit {proc.returncode}): {last}")
    return proc.stdout


def _make(tree: Path, obj: Path, jobs: int, *targets: str) -> list[str]:
    # obj is a direct child of tree, so Kbuild uses srctree=".." and every path ccache sees
    # is relative: the hit rate survives the per-build temporary directory.
    return ["make", "-C", str(tree), f"O={obj}", f"ARCH={ARCH}", f"-j{jobs}",
            "CC=ccache gcc", "HOSTCC=ccache gcc", "LOCALVERSION=", *targets]


def _ccache_stats(env: dict[str, str]) -> dict[str, int]:
    out = subprocess.run(["ccache", "--print-stats"], env=env, capture_output=True, text=True,
                         check=False).stdout
    return {k: int(v) for k, v in (ln.split("\t") for ln in out.splitlines() if "\t" in ln)
            if v.isdigit()}


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


@contextmanager
def _progress(description: str) -> Iterator[Callable[[str], None]]:
    """Like ui.step, but the caller can update the line (compiled-file count, last target)."""
    t0 = time.monotonic()
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=ui.err_console, transient=True) as progress:
        task = progress.add_task(description, total=None)
        yield lambda extra: progress.update(task, description=f"{description} {extra}")
    ui.err_console.print(f"[green]✓[/] {description} [dim]({time.monotonic() - t0:.1f} s)[/]")


def _logged(argv: list[str], log: Path, env: dict[str, str], update: Callable[[str], None]) -> None:
    """Run a make step with its output appended to ``log``; count compiled files for progress."""
    n = 0
    with log.open("a", buffering=1) as f:  # line-buffered: the log can be followed live
        f.write(f"$ {' '.join(argv)}\n")
        f.flush()
        with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                              text=True, bufsize=1) as proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                f.write(line)
                if m := re.match(r"\s+(CC|AS|LD|AR|HOSTCC)\s+(\S+)", line):
                    n += 1
                    update(f"[dim]({n} steps, {m.group(2)[-40:]})[/]")
        if proc.returncode != 0:
            tail = [ln for ln in log.read_text(errors="replace").splitlines()[-40:]
                    if "error" in ln.lower()]
            raise LabError(f"make {argv[-1]} failed (exit {proc.returncode}): "
                           f"{(tail or ['see the log'])[-1].strip()} (log: {log})")


def _base_config(inputs: BuildInputs) -> Path | None:
    """The Debian image's config file for a Debian base (fetched by its own provider)."""
    if inputs.base == "defconfig":
        return None
    from . import provider_for

    art = provider_for(load_kernel_description(inputs.base)).ensure(
        load_kernel_description(inputs.base))
    if art.config is None or art.meta.get("deb_sha256") != inputs.base_id:
        raise LabError(f"base {inputs.base}: its cached kernel has no config matching the index")
    return art.config


def _build(inputs: BuildInputs, jobs: int, entry: Path) -> None:
    """Build into a temporary directory beside ``entry`` and rename it into place."""
    require_tool("make", "make")
    require_tool("ccache", "ccache")
    for tool, pkg in (("flex", "flex"), ("bison", "bison"), ("bc", "bc")):
        require_tool(tool, pkg)
    pristine = source_tree(inputs)
    base_cfg = _base_config(inputs)
    key = inputs.key()
    # The log lives outside the work directory so that it survives a failure to be read;
    # on success it moves into the entry.
    log = cache_dir() / "kernels" / "source" / "logs" / f"{inputs.kernel}-{key[:16]}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(f"# ukva-lab build of {inputs.kernel}, key {key}\n")
    ui.err_console.print(f"build log: {log}", soft_wrap=True, markup=False)
    work = Path(tempfile.mkdtemp(prefix=f".build-{key[:16]}-", dir=entry.parent))
    env = {**os.environ, **_REPRODUCIBLE_ENV, "CCACHE_DIR": str(cache_dir() / "ccache"),
           "CCACHE_BASEDIR": str(work), "CCACHE_MAXSIZE": os.environ.get("CCACHE_MAXSIZE", "5G")}
    t0 = time.monotonic()
    try:
        tree, obj = work / "linux", work / "linux" / "_build"
        with ui.step(f"Copying the {inputs.package_version} tree (hard links)"):
            _run(["cp", "-al", str(pristine), str(tree)], what="cp -al of the source tree")
        if inputs.patches:
            with ui.step(f"Applying {len(inputs.patches)} patches"):
                apply_patches(tree, inputs.patches, log)
        n_frag = len(inputs.fragments)
        with ui.step(f"Configuring: {inputs.base} + {n_frag} fragments, olddefconfig"):
            obj.mkdir()
            if base_cfg is None:
                _logged(_make(tree, obj, jobs, "defconfig"), log, env, lambda _: None)
            else:
                shutil.copy(base_cfg, obj / ".config")
            requested = {o.symbol: o for o in inputs.options}
            dotconfig = obj / ".config"
            dotconfig.write_text(apply_fragments(dotconfig.read_text(), requested))
            _logged(_make(tree, obj, jobs, "olddefconfig"), log, env, lambda _: None)
            dropped = find_dropped(requested, dotconfig.read_text())
            if dropped:
                raise DroppedOptionsError(dropped)
        before, cpu0 = _ccache_stats(env), _children_cpu()
        with _progress(f"Building bzImage (-j{jobs})") as update:
            _logged(_make(tree, obj, jobs, "bzImage"), log, env, update)
        after, cpu = _ccache_stats(env), _children_cpu() - cpu0
        out = work / "entry"
        out.mkdir()
        shutil.copy(obj / "arch" / "x86" / "boot" / "bzImage", out / "bzImage")
        shutil.copy(obj / "System.map", out / "System.map")
        shutil.copy(dotconfig, out / "config")
        release = (obj / "include" / "config" / "kernel.release").read_text().strip()
        hits = sum(after.get(k, 0) - before.get(k, 0)
                   for k in ("direct_cache_hit", "preprocessed_cache_hit"))
        misses = after.get("cache_miss", 0) - before.get("cache_miss", 0)
        meta: dict[str, Any] = {
            "kernel": inputs.kernel,
            "source": "source",
            "package": inputs.package,
            "package_version": inputs.package_version,
            "package_sha256": inputs.package_sha256,
            "base": inputs.base,
            "base_id": inputs.base_id,
            "cache_key": key,
            "fragments": [{"name": n, "sha256": s} for n, s in inputs.fragments],
            "patches": [{"name": p.name, "sha256": p.sha256} for p in inputs.patches],
            "release": release,
            "localversion": inputs.localversion,
            "compiler": inputs.toolchain,
            "config_sha256": sha256_file(out / "config"),
            "bzimage_sha256": sha256_file(out / "bzImage"),
            "build_seconds": round(time.monotonic() - t0, 1),
            "make_cpu_seconds": round(cpu, 1),  # comparable across loads of a shared host
            "jobs": jobs,
            "ccache": {"hits": hits, "misses": misses},
            "log": str(entry / "build.log"),
        }
        shutil.copy(log, out / "build.log")
        KernelArtifact(inputs.kernel, out / "bzImage", None, None, meta).write(out)
        if entry.exists():
            shutil.rmtree(entry)
        os.replace(out, entry)
        log.unlink()
    finally:
        shutil.rmtree(work, ignore_errors=True)


class SourceBuiltKernel:
    """Provider for ``source = "source"`` kernel descriptions."""

    def plan(self, desc: KernelDescription) -> list[str]:
        inputs = resolve_inputs(desc)
        entry = entry_dir(inputs.key())
        if load_artifact(desc.name, entry):
            return [f"kernel: {desc.name} {inputs.package_version} (built, cached in {entry})"]
        series = ", ".join(p.name for p in inputs.patches) or "no patches"
        return [
            f"kernel: build {inputs.package} {inputs.package_version} into {entry}",
            f"kernel: {inputs.base} + {', '.join(n for n, _ in inputs.fragments)}; {series}",
        ]

    def ensure(self, desc: KernelDescription) -> KernelArtifact:
        return self.build(desc)

    def bzimage_path(self, desc: KernelDescription) -> Path:
        """Where the image is (or will be) for ``lab up --dry-run``'s QEMU command line."""
        return entry_dir(resolve_inputs(desc).key()) / "bzImage"

    def build(self, desc: KernelDescription, jobs: int | None = None, force: bool = False,
              root: Path | None = None) -> KernelArtifact:
        """Return the cached build for ``desc``'s key, building it first if needed (or forced).

        ``root`` replaces vm/ (fragments and patches are read from it), for tests."""
        inputs = resolve_inputs(desc, root)
        key = inputs.key()
        entry = entry_dir(key)
        entry.parent.mkdir(parents=True, exist_ok=True)
        with cache_lock(key[:16]):
            cached = load_artifact(desc.name, entry)
            if cached is None or force:
                _build(inputs, jobs or os.cpu_count() or 1, entry)
        artifact = load_artifact(desc.name, entry)
        if artifact is None:
            raise LabError(f"build of {desc.name} left no artifact in {entry}")
        return artifact

    def status(self, desc: KernelDescription) -> dict[str, Any]:
        """What `lab kernel list/show` print: the key, whether it is built, and the inputs."""
        inputs = resolve_inputs(desc)
        key = inputs.key()
        art = load_artifact(desc.name, entry_dir(key))
        return {
            "name": desc.name, "source": desc.source, "description": desc.description,
            "cache_key": key, "built": art is not None, "entry": str(entry_dir(key)),
            "package": inputs.package, "package_version": inputs.package_version,
            "base": inputs.base, "localversion": inputs.localversion,
            "compiler": inputs.toolchain,
            "fragments": [{"name": n, "sha256": s} for n, s in inputs.fragments],
            "options": [{"symbol": o.symbol, "value": o.value, "origin": o.origin}
                        for o in inputs.options],
            "patches": [{"name": p.name, "sha256": p.sha256} for p in inputs.patches],
            "log": art.meta.get("log") if art else None,
            "meta": art.meta if art else None,
        }
