"""Importing bundles into results/: all or nothing, never overwriting a run.

A run already there byte for byte is skipped; a different run under the same id refuses the
whole import before anything moves (see the package docstring for why runs are not renamed).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from datetime import datetime
from pathlib import Path

from ..paths import results_dir
from .index import DEFAULT_LIMITS, BundleError, ImportResult, Limits, _file_sha256
from .reading import _safe_extract

__all__ = ["import_bundle"]


def _same_run(local: Path, run_id: str, staged: Path) -> str | None:
    """None when every bundled file of the run is in ``local`` byte for byte; else why not."""
    if local.is_symlink() or not local.is_dir():
        return f"results/{run_id} exists and is not a run directory"
    for name in sorted(os.listdir(staged)):
        mine = local / name
        if not mine.is_file() or mine.is_symlink():
            return f"results/{run_id} has no {name}"
        if _file_sha256(mine) != _file_sha256(staged / name):
            return f"results/{run_id}/{name} differs"
    return None


def _started(manifest_path: Path) -> float:
    """A run's start time (for ``lab runs`` ordering): manifest started_at, else now."""
    try:
        when = json.loads(manifest_path.read_text()).get("started_at")
        return datetime.strptime(when, "%Y-%m-%dT%H:%M:%S%z").timestamp()
    except (OSError, ValueError, TypeError, AttributeError):
        return time.time()


def import_bundle(path: Path, root: Path | None = None,
                  limits: Limits = DEFAULT_LIMITS) -> ImportResult:
    """Verify ``path`` and move its runs into results/; never overwrites, all or nothing.

    A run already present byte for byte is skipped (see ImportResult.skipped); a run id that
    exists with different content makes the whole import fail before anything is moved.
    """
    root = (root or results_dir()).resolve()
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=".lab-import-") as tmp:
        staging = Path(tmp)
        info = _safe_extract(path, staging, limits)
        result = ImportResult(bundle=info, root=root)
        conflicts = []
        for run_id in info.run_ids:
            target, staged = root / run_id, staging / "runs" / run_id
            if not os.path.lexists(target):
                result.imported.append(run_id)
                continue
            why = _same_run(target, run_id, staged)
            if why is None:
                result.skipped.append(run_id)
            else:
                conflicts.append(why)
        if conflicts:
            raise BundleError(
                f"{path.name}: refused, nothing imported: {'; '.join(conflicts)} (the bundle "
                "has a different run under the same id; move the local run away or import "
                "into another results directory with UKVA_LAB_RESULTS)")
        for run_id in result.imported:
            staged = staging / "runs" / run_id
            when = _started(staged / "manifest.json")
            for p in (*staged.iterdir(), staged):
                os.utime(p, (when, when))
            if os.path.lexists(root / run_id):  # appeared since the check above
                raise BundleError(f"{path.name}: results/{run_id} appeared during the import; "
                                  f"imported so far: {', '.join(result.imported) or 'none'}")
            # rename(2) never replaces a non-empty directory, so nothing recorded can be lost
            os.rename(staged, root / run_id)
    return result
