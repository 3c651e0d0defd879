"""``lab bundle export|verify|import|merge``: recorded runs as one file to mail or attach.

    lab bundle export RUN... -o NAME.labbundle.tar.gz   # deterministic: same runs, same bytes
    lab bundle verify FILE                               # integrity and schema, extracts nothing
    lab bundle import FILE                               # into results/, never overwriting
    lab bundle merge A B... -o C                         # several machines' runs in one file

The format and the safety checks are described in lab/bundle/__init__.py.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from .. import ui
from ..bundle import SUFFIX, BundleInfo, export_bundle, import_bundle, merge_bundles, verify_bundle
from ..results import open_run
from .common import cli_errors, print_json

__all__ = ["app"]

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Share runs: export, verify, import and merge .labbundle.tar.gz files.")

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _kib(n: int) -> str:
    return f"{n / 1024:,.1f} KiB"


def _print_info(info: BundleInfo, verb: str, seconds: float) -> None:
    ui.out_console.print(
        f"{verb} {info.path} ({_kib(info.size)}, {info.members} members, "
        f"{_kib(info.member_bytes)} uncompressed, {seconds:.2f} s)\n  sha256 {info.sha256}",
        soft_wrap=True)
    for r in info.index["runs"]:
        host = r.get("host", {}).get("hostname", "?")
        kernels = sorted({str(k.get("release") or k.get("kernel_name") or "?")
                          for k in r.get("kernels", {}).values()}) or ["?"]
        ui.out_console.print(
            f"  {r['run_id']}  {r.get('workload')}  {','.join(r.get('configs', []))}  "
            f"{r.get('records')} records  {r.get('backend')}/{r.get('timing')}  "
            f"host {host}  kernel {','.join(kernels)}", soft_wrap=True, markup=False)


def _result(info: BundleInfo, seconds: float) -> dict[str, Any]:
    return {**info.as_dict(), "seconds": round(seconds, 3)}


@app.command("export")
@cli_errors
def export_cli(
    runs: Annotated[list[str], typer.Argument(help="Run ids (or unique prefixes, or paths).")],
    output: Annotated[Path | None, typer.Option("-o", "--output", help=f"Bundle to write (default: ./<first run id>{SUFFIX}); replaced atomically.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Write runs (records, manifests, console logs) to one deterministic bundle file."""
    found = list({r.run_id: r for r in (open_run(x) for x in runs)}.values())
    out = output or Path(f"{found[0].run_id}{SUFFIX}")
    t0 = time.monotonic()
    info = export_bundle(found, out)
    took = time.monotonic() - t0
    if json_out:
        print_json(_result(info, took))
    else:
        _print_info(info, "bundle written:", took)


@app.command("verify")
@cli_errors
def verify_cli(
    bundle: Annotated[Path, typer.Argument(help="A .labbundle.tar.gz file.")],
    json_out: JsonOpt = False,
) -> None:
    """Check a bundle's checksums, structure and schema without importing or extracting it."""
    t0 = time.monotonic()
    info = verify_bundle(bundle)
    took = time.monotonic() - t0
    if json_out:
        print_json(_result(info, took))
    else:
        _print_info(info, "bundle ok:", took)


@app.command("import")
@cli_errors
def import_cli(
    bundle: Annotated[Path, typer.Argument(help="A .labbundle.tar.gz file.")],
    json_out: JsonOpt = False,
) -> None:
    """Verify a bundle and add its runs to results/, never overwriting anything.

    A run already there byte for byte is skipped; the same run id with other content refuses
    the whole import before anything is moved.
    """
    t0 = time.monotonic()
    res = import_bundle(bundle)
    took = time.monotonic() - t0
    if json_out:
        print_json({**res.as_dict(), "seconds": round(took, 3)})
        return
    for run_id in res.imported:
        ui.out_console.print(f"imported {run_id}")
    for run_id in res.skipped:
        ui.out_console.print(f"skipped {run_id}: already in {res.root}, identical")
    ui.out_console.print(
        f"{len(res.imported)} imported, {len(res.skipped)} already present, into {res.root} "
        f"({took:.2f} s)", soft_wrap=True)


@app.command("merge")
@cli_errors
def merge_cli(
    bundles: Annotated[list[Path], typer.Argument(help="Two or more .labbundle.tar.gz files.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Bundle to write; replaced atomically.")],
    json_out: JsonOpt = False,
) -> None:
    """Combine bundles (e.g. from several machines) into one, keeping their provenance.

    Each run keeps its manifest (host, kernel, lab version); bundle.json lists the input
    bundles and their sha256 under "sources".
    """
    t0 = time.monotonic()
    info = merge_bundles(bundles, output)
    took = time.monotonic() - t0
    if json_out:
        print_json(_result(info, took))
    else:
        _print_info(info, "merged bundle written:", took)
