"""Recorded runs on disk: ``results/<run-id>/{manifest.json, runs.jsonl, console-*.log}``.

Data flows one way: a trace writes here, and ``lab show``, statistics, dashboards and bundles
only read from here. Each repeat is appended to runs.jsonl as one line and fsync'd, so an
interrupted trace keeps every repeat that finished; the manifest is replaced atomically.

The record schema (its keys, its version, the torn-line rule) is in lab/record.py.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .errors import LabError, UsageError
from .paths import results_dir
from .record import SCHEMA, read_jsonl

__all__ = ["SCHEMA", "RunDir", "RunSink", "new_run", "open_run", "list_runs", "write_json_atomic"]


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to a temp file in the same directory, fsync, then rename over ``path``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class RunSink(Protocol):
    """Where one boot's output goes: a run directory on the host (RunDir), or, on a Dask
    worker, an in-memory collection sent back to the host, the only writer of the run
    directory (lab/units.py)."""

    @property
    def run_id(self) -> str: ...

    def set_config_meta(self, name: str, meta: dict[str, Any]) -> None: ...

    def append_file(self, name: str, data: bytes) -> None: ...

    def write_file(self, name: str, data: bytes) -> None: ...

    def append_record(self, record: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class RunDir:
    """One recorded run."""

    path: Path

    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def manifest_path(self) -> Path:
        return self.path / "manifest.json"

    @property
    def records_path(self) -> Path:
        return self.path / "runs.jsonl"

    def manifest(self) -> dict[str, Any]:
        try:
            return json.loads(self.manifest_path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise LabError(f"run {self.run_id}: unreadable manifest.json ({e})") from e

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        write_json_atomic(self.manifest_path, manifest)

    def update_manifest(self, **changes: Any) -> None:
        m = self.manifest()
        m.update(changes)
        self.write_manifest(m)

    def set_config_meta(self, name: str, meta: dict[str, Any]) -> None:
        """Merge facts about configuration ``name`` into the manifest's ``configs``."""
        configs = self.manifest().get("configs", {})
        configs[name] = {**configs.get(name, {}), **meta}
        self.update_manifest(configs=configs)

    def append_file(self, name: str, data: bytes) -> None:
        """Append to a file of the run (a console log: a resumed run keeps every boot's)."""
        with (self.path / name).open("ab") as out:
            out.write(data)

    def write_file(self, name: str, data: bytes) -> None:
        """Write a file of the run (a kernel .config), replacing it atomically."""
        tmp = self.path / f".{name}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, self.path / name)

    def append_record(self, record: dict[str, Any]) -> None:
        """Append one repeat's record durably (one line, fsync'd)."""
        line = json.dumps(record, sort_keys=True) + "\n"
        with self.records_path.open("a") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def records(self) -> list[dict[str, Any]]:
        """Every complete record; a torn last line (from a crash) is ignored."""
        if not self.records_path.exists():
            return []
        lines = self.records_path.read_text().splitlines()
        return [rec for _, rec in read_jsonl(
            lines, lambda n: LabError(f"run {self.run_id}: runs.jsonl line {n} is corrupt"))]


def _new_run_id(workload: str) -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{workload}-{secrets.token_hex(2)}"


def new_run(workload: str, manifest: dict[str, Any], root: Path | None = None) -> RunDir:
    """Create ``results/<run-id>/`` with its manifest."""
    root = root or results_dir()
    root.mkdir(parents=True, exist_ok=True)
    path = root / _new_run_id(workload)
    path.mkdir()
    run = RunDir(path)
    run.write_manifest({"schema": SCHEMA, "run_id": run.run_id, **manifest})
    return run


def open_run(run_id: str, root: Path | None = None) -> RunDir:
    """Find a run by id, unique id prefix, path, or ``latest`` (the newest run); UsageError when
    unknown or ambiguous."""
    as_path = Path(run_id)
    if (as_path / "manifest.json").is_file():
        return RunDir(as_path.resolve())
    if "/" in run_id:   # a path, not an id (glob() would refuse an absolute one)
        raise UsageError(f"no run {run_id!r}: {as_path} is not a run directory "
                         "(no manifest.json)")
    root = root or results_dir()
    if run_id == "latest":
        newest = next(list_runs(root), None)
        if newest is None:
            raise UsageError(f"no runs in {root} yet (see 'lab trace')")
        return newest
    matches = sorted(p for p in root.glob(f"{run_id}*") if (p / "manifest.json").is_file())
    if len(matches) == 1:
        return RunDir(matches[0])
    if not matches:
        raise UsageError(f"no run {run_id!r} in {root} (see 'lab runs')")
    raise UsageError(f"run id {run_id!r} is ambiguous: {', '.join(p.name for p in matches[:5])}")


def list_runs(root: Path | None = None) -> Iterator[RunDir]:
    """Recorded runs, newest first."""
    root = root or results_dir()
    if not root.is_dir():
        return iter(())
    runs = [RunDir(p) for p in root.iterdir() if (p / "manifest.json").is_file()]
    return iter(sorted(runs, key=lambda r: r.manifest_path.stat().st_mtime, reverse=True))
