"""Writing bundles: deterministic export (same runs, same bytes) and merging several bundles.

Every bundle written is verified by the reading side before it is returned, so a bundle this
lab writes is one it will import.
"""

from __future__ import annotations

import gzip
import io
import os
import re
import stat
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..results import RunDir
from .index import (
    _FILE,
    _RUN_ID,
    DEFAULT_LIMITS,
    INDEX,
    BundleError,
    BundleInfo,
    Limits,
    _build_index,
    _carried,
    _kind,
    _parse_manifest,
    _pick,
)
from .reading import _safe_extract, verify_bundle

__all__ = ["export_bundle", "merge_bundles"]


def _run_members(run_id: str, path: Path, limits: Limits) -> list[tuple[str, bytes]]:
    """A run directory's carried files as (member path, bytes), read once (a consistent copy)."""
    if not re.fullmatch(_RUN_ID, run_id):
        raise UsageError(f"run id {run_id!r} cannot go in a bundle (letters, digits, . _ + -)")
    out = []
    for p in sorted(path.iterdir()):
        if not _carried(p.name):
            continue
        st = p.lstat()
        if not stat.S_ISREG(st.st_mode):
            raise UsageError(f"run {run_id}: {p.name} is a {_kind(st.st_mode)}; a bundle carries "
                             "only regular files (move it out of the run directory)")
        if not re.fullmatch(_FILE, p.name):
            raise UsageError(f"run {run_id}: file name {p.name!r} cannot go in a bundle "
                             "(letters, digits, . _ + -)")
        if st.st_size > limits.member_bytes:
            raise UsageError(f"run {run_id}: {p.name} is {st.st_size} bytes, over the "
                             f"{limits.member_bytes}-byte member cap that import enforces")
        out.append((f"runs/{run_id}/{p.name}", p.read_bytes()))
    if not any(name.endswith("/manifest.json") for name, _ in out):
        raise UsageError(f"run {run_id}: no manifest.json in {path}")
    return out


def _write_tar(out: Path, entries: list[tuple[str, bytes]]) -> None:
    """Write members in the given order, with every varying header field fixed; atomic."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.")
    try:
        with os.fdopen(fd, "wb") as raw:
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9,
                               mtime=0) as gz:
                with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
                    for name, data in entries:
                        ti = tarfile.TarInfo(name)
                        ti.size, ti.mtime, ti.mode = len(data), 0, 0o644
                        ti.uid = ti.gid = 0
                        ti.uname = ti.gname = ""
                        tar.addfile(ti, io.BytesIO(data))
            raw.flush()
            os.fsync(raw.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_bundle(runs: dict[str, list[tuple[str, bytes]]], sources: list[dict[str, Any]],
                  out: Path, limits: Limits) -> BundleInfo:
    index = _build_index(runs, sources)
    entries = [(INDEX, index)] + sorted(e for files in runs.values() for e in files)
    total = sum(len(b) for _, b in entries)
    if len(entries) > limits.members or total > limits.total_bytes:
        raise UsageError(f"{len(entries)} members, {total} bytes: over the import caps "
                         f"({limits.members} members, {limits.total_bytes} bytes); split it")
    _write_tar(out, entries)
    return verify_bundle(out, limits)


def export_bundle(runs: list[RunDir], out: Path, limits: Limits = DEFAULT_LIMITS) -> BundleInfo:
    """Write ``runs`` to one bundle at ``out`` (replaced atomically); returns it verified.

    Deterministic: the same run files give the same bytes. Raises UsageError for no runs, a
    run without manifest.json, or a run directory holding a link, device or subdirectory.
    """
    if not runs:
        raise UsageError("no runs to export")
    members: dict[str, list[tuple[str, bytes]]] = {}
    for run in runs:
        members[run.run_id] = _run_members(run.run_id, run.path, limits)
    hosts = sorted({str(_pick(_parse_manifest(run_id, dict(files)[
        f"runs/{run_id}/manifest.json"], f"run {run_id}").get("host"), ("hostname",))
        .get("hostname", "?")) for run_id, files in members.items()})
    sources = [{"bundle": None, "sha256": None, "hosts": hosts, "runs": sorted(members)}]
    return _write_bundle(members, sources, out, limits)


def merge_bundles(inputs: list[Path], out: Path, limits: Limits = DEFAULT_LIMITS) -> BundleInfo:
    """One bundle holding every run of ``inputs``, with each input recorded under "sources".

    A run present in several inputs with identical files is kept once; with different files
    the merge is refused. Each run keeps its own manifest (host, kernel, lab version).
    """
    if len(inputs) < 2:
        raise UsageError("merge needs two or more bundles")
    runs: dict[str, list[tuple[str, bytes]]] = {}
    origin: dict[str, str] = {}
    sources: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="lab-merge-") as tmp:
        for i, src in enumerate(inputs):
            dest = Path(tmp) / str(i)
            dest.mkdir()
            info = _safe_extract(src, dest, limits)
            for s in info.index["sources"]:
                s = dict(s) if isinstance(s, dict) else {"note": s}
                if s.get("bundle") is None:  # the input's own export
                    s.update(bundle=src.name, sha256=info.sha256)
                if s not in sources:
                    sources.append(s)
            for run_id in info.run_ids:
                files = _run_members(run_id, dest / "runs" / run_id, limits)
                if run_id in runs and runs[run_id] != files:
                    raise BundleError(f"refused: run {run_id} is in {origin[run_id]} and "
                                      f"{src.name} with different content")
                runs.setdefault(run_id, files)
                origin.setdefault(run_id, src.name)
        return _write_bundle(runs, sources, out, limits)
