"""``lab kernel build|list|show|check``: kernels the lab can boot, building them from source,
and whether their sources and patch series still match what Debian serves.

``build`` takes a kernel (vm/kernels/NAME.toml) or a configuration (vm/configs/NAME.toml,
meaning the kernel it boots), so ``lab kernel build built-highpte`` works.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from .. import ui
from ..config import KernelDescription, list_configs, load_config, load_kernel_description
from ..errors import UsageError
from ..kernels import provider_for
from ..kernels.drift import check_kernel
from ..paths import vm_dir
from .common import cli_errors, print_json

__all__ = [
    "app", "resolve_kernel", "kernel_status", "list_kernels", "build_kernel", "check_kernels"
]

app = typer.Typer(no_args_is_help=True, add_completion=False)


def resolve_kernel(name: str) -> KernelDescription:
    """A kernel description by its name, or the kernel a configuration of that name boots."""
    if not name or "/" in name:
        raise UsageError(f"bad kernel name {name!r}")
    if (vm_dir() / "kernels" / f"{name}.toml").is_file():
        return load_kernel_description(name)
    if name in list_configs():
        return load_kernel_description(load_config(name).kernel)
    return load_kernel_description(name)  # raises UsageError listing the known kernels


def _configs_booting(kernel: str) -> list[str]:
    return [c for c in list_configs() if load_config(c).kernel == kernel]


def kernel_status(desc: KernelDescription) -> dict[str, Any]:
    """Key, built-or-not and inputs of one kernel, whatever its source."""
    data: dict[str, Any] = provider_for(desc).status(desc)
    data["configs"] = _configs_booting(desc.name)
    return data


def list_kernels() -> list[dict[str, Any]]:
    """Every kernel under vm/kernels/, built or not, with its cache key."""
    names = sorted(p.stem for p in (vm_dir() / "kernels").glob("*.toml"))
    return [kernel_status(load_kernel_description(n)) for n in names]


def build_kernel(name: str, jobs: int | None = None, force: bool = False) -> dict[str, Any]:
    """Build (or fetch) the kernel ``name`` names; returns the artifact's metadata."""
    if jobs is not None and jobs < 1:
        raise UsageError(f"--jobs {jobs}: must be at least 1")
    desc = resolve_kernel(name)
    was_built = kernel_status(desc)["built"] and not force
    provider = provider_for(desc)
    build = getattr(provider, "build", None)
    if build is not None:
        art = build(desc, jobs=jobs, force=force)
    else:
        art = provider.ensure(desc)
    return {"kernel": desc.name, "bzimage": str(art.bzimage), "cached": was_built, **art.meta}


@app.command("build")
@cli_errors
def build_cli(
    name: Annotated[str, typer.Argument(help="Kernel (vm/kernels) or configuration name.")],
    jobs: Annotated[
        int | None, typer.Option("--jobs", "-j", help="make -jN (default: CPUs).")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be built.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Rebuild even when cached.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the build's metadata.")] = False,
) -> None:
    """Build a kernel from linux-source-6.1 into the cache (a cached key is re-used)."""
    if dry_run:
        desc = resolve_kernel(name)
        for line in provider_for(desc).plan(desc):
            ui.out_console.print(line, soft_wrap=True)
        return
    meta = build_kernel(name, jobs, force)
    if json_out:
        print_json(meta)
        return
    took = (" (cached)" if meta["cached"] else
            f", built in {meta['build_seconds']:.0f} s" if "build_seconds" in meta else "")
    ui.out_console.print(
        f"{meta['kernel']}: {meta.get('release', '?')} key {str(meta.get('cache_key', '?'))[:16]}"
        f"{took}\n  {meta['bzimage']}",
        soft_wrap=True,
    )


@app.command("list")
@cli_errors
def list_cli(
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Known kernels, built or not, with their cache keys."""
    rows = list_kernels()
    if json_out:
        print_json(rows)
        return
    ui.out_console.print(f"{'KERNEL':<16} {'SOURCE':<15} {'KEY':<16} {'BUILT':<5} CONFIGS")
    for r in rows:
        ui.out_console.print(
            f"{r['name']:<16} {r['source']:<15} {str(r['cache_key'])[:16]:<16} "
            f"{'yes' if r['built'] else 'no':<5} {','.join(r['configs']) or '-'}",
            soft_wrap=True,
        )


def _show_lines(d: dict[str, Any]) -> list[str]:
    meta = d.get("meta") or {}
    lines = [
        f"{d['name']}: {d['description']}",
        f"  source:    {d['source']}  {d.get('package', '')} {d.get('package_version', '')}",
    ]
    if "base" in d:
        lines.append(f"  base:      {d['base']}  (localversion {d['localversion']})")
        lines.append(f"  compiler:  {d['compiler']}")
    state = "built" if d["built"] else "not built"
    lines += [
        f"  cache key: {d['cache_key']}",
        f"  entry:     {d['entry']} ({state})",
        f"  configs:   {', '.join(d['configs']) or '-'}",
    ]
    if "fragments" in d:
        by_file: dict[str, list[str]] = {}
        for o in d["options"]:
            by_file.setdefault(o["origin"].split(":")[0], []).append(f"{o['symbol']}={o['value']}")
        lines.append("  fragments:")
        for f in d["fragments"]:
            lines.append(f"    {f['name']}  sha256 {f['sha256'][:12]}")
            lines += [f"      {opt}" for opt in by_file.get(f["name"], [])]
        lines.append("  patches:" + ("" if d["patches"] else "   none"))
        lines += [f"    {p['name']}  sha256 {p['sha256'][:12]}" for p in d["patches"]]
    if meta:
        if "release" in meta:
            lines.append(f"  release:   {meta['release']}")
        if "config_sha256" in meta and meta["config_sha256"]:
            lines.append(f"  .config:   sha256 {meta['config_sha256'][:16]}")
        lines.append(f"  bzImage:   sha256 {meta.get('bzimage_sha256', '?')[:16]}")
        if "build_seconds" in meta:
            cc = meta.get("ccache", {})
            lines.append(
                f"  build:     {meta['build_seconds']:.0f} s with -j{meta.get('jobs')}, "
                f"ccache {cc.get('hits', 0)} hits / {cc.get('misses', 0)} misses"
            )
        if meta.get("log"):
            lines.append(f"  build log: {meta['log']}")
    return lines


@app.command("show")
@cli_errors
def show_cli(
    name: Annotated[str, typer.Argument(help="Kernel (vm/kernels) or configuration name.")],
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """A kernel's source version, fragments and options, patches, cache key and build log."""
    data = kernel_status(resolve_kernel(name))
    if json_out:
        print_json(data)
        return
    for line in _show_lines(data):
        ui.out_console.print(line, soft_wrap=True, markup=False)


def check_kernels(names: list[str], try_patches: bool = True) -> list[dict[str, Any]]:
    """Drift rows for the named kernels (all of vm/kernels/ when none are named)."""
    if names:
        descs = [resolve_kernel(n) for n in names]
    else:
        descs = [load_kernel_description(p.stem)
                 for p in sorted((vm_dir() / "kernels").glob("*.toml"))]
    return [check_kernel(d, try_patches) for d in descs]


@app.command("check")
@cli_errors
def check_cli(
    names: Annotated[list[str] | None, typer.Argument(help="Kernels or configurations (default: all).")] = None,
    no_patches: Annotated[bool, typer.Option("--no-patches", help="Only compare versions; do not download the source to try the series.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Source drift: the version the archive serves, the version each kernel was last built
    from, and whether each patch series still applies to the served source (patch -p1 -F0).

    Exits 1 when a series no longer applies (the patch and hunk are named); stock kernels are
    listed too and never depend on a series."""
    rows = check_kernels(names or [], try_patches=not no_patches)
    if json_out:
        print_json(rows)
    else:
        ui.out_console.print(f"{'KERNEL':<15} {'SERVED':<11} {'LAST BUILT':<11} {'SERIES':<7} DETAIL")
        for r in rows:
            verdict = {True: "applies", False: "FAILS", None: "-"}[r["applies"]]
            ui.out_console.print(
                f"{r['name']:<15} {r['served_version']:<11} "
                f"{r['last_built_version'] or '-':<11} {verdict:<7} {r['detail']}",
                soft_wrap=True, markup=False,
            )
    if any(r["applies"] is False for r in rows):
        raise typer.Exit(1)
