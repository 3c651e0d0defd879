"""Bundle index and schema: the format's constants, limits and result types, bundle.json
built from runs and checked against the members actually present, and each run's manifest and
records checked against the schema (the record rules themselves are lab/record.py's).
"""

from __future__ import annotations

import hashlib
import json
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import EXIT_USAGE, LabError
from ..record import SCHEMA, read_jsonl, record_problem

__all__ = [
    "BUNDLE_FORMAT",
    "BUNDLE_SCHEMA",
    "SUFFIX",
    "INDEX",
    "Limits",
    "NotABundleError",
    "DEFAULT_LIMITS",
    "BundleError",
    "BundleInfo",
    "ImportResult",
]

BUNDLE_FORMAT = "ukva-lab-bundle"
BUNDLE_SCHEMA = 1
SUFFIX = ".labbundle.tar.gz"
INDEX = "bundle.json"

_RUN_ID = r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}"
# the only dotfile carried is a kernel ``.config``; "." and ".." can never match
_FILE = r"(?:\.config|[A-Za-z0-9][A-Za-z0-9._+-]{0,127})"
_MEMBER = re.compile(rf"runs/({_RUN_ID})/({_FILE})")


@dataclass(frozen=True)
class Limits:
    """Caps a bundle must stay under, in bytes (of uncompressed member data) and members."""

    member_bytes: int = 256 * 2**20
    total_bytes: int = 2 * 2**30
    members: int = 10_000


DEFAULT_LIMITS = Limits()


class BundleError(LabError):
    """A bundle that is corrupt, hostile or in conflict with results/ (exit 1)."""


class NotABundleError(BundleError):
    """A file that is not a gzipped tar at all: the user named the wrong file (exit 2, like
    every other bad argument), as opposed to a bundle damaged in transit."""

    exit_code = EXIT_USAGE


@dataclass(frozen=True)
class BundleInfo:
    """A verified bundle: its file's sha256 and size, its bundle.json, and its member totals."""

    path: Path
    sha256: str
    size: int
    index: dict[str, Any]
    members: int
    member_bytes: int

    @property
    def run_ids(self) -> list[str]:
        return [r["run_id"] for r in self.index["runs"]]

    def as_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "sha256": self.sha256, "size": self.size,
                "schema": self.index["schema"], "members": self.members,
                "member_bytes": self.member_bytes, "runs": self.index["runs"],
                "sources": self.index["sources"]}


@dataclass
class ImportResult:
    """What an import did: runs moved into results/, and runs already there (identical)."""

    bundle: BundleInfo
    root: Path
    imported: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"bundle": str(self.bundle.path), "sha256": self.bundle.sha256,
                "results": str(self.root), "imported": self.imported, "skipped": self.skipped}


# ---------------------------------------------------------------------------------------------
# shared checks


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISLNK, "symbolic link"), (stat.S_ISDIR, "directory"),
                       (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
                       (stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket")):
        if test(mode):
            return name
    return "special file"


def _carried(name: str) -> bool:
    """Whether a run directory's file goes into a bundle: not dotfiles (write_json_atomic's
    temp files are ".manifest.json.XXXXXXXX"), except a kernel ``.config``."""
    return not name.startswith(".") or name == ".config"


def _parse_records(run_id: str, data: bytes, where: str) -> list[dict[str, Any]]:
    """runs.jsonl content checked against the record schema; a torn last line is tolerated
    (lab/record.py's rule, the same as RunDir.records())."""
    try:
        lines = data.decode("utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise BundleError(f"{where}: runs.jsonl is not UTF-8 ({e})") from None
    out = []
    for n, rec in read_jsonl(
            lines, lambda n: BundleError(f"{where}: runs.jsonl line {n} is not JSON")):
        problem = record_problem(rec, run_id)
        if problem:
            raise BundleError(f"{where}: runs.jsonl line {n} {problem}")
        out.append(rec)
    return out


def _parse_manifest(run_id: str, data: bytes, where: str) -> dict[str, Any]:
    try:
        m = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f"{where}: manifest.json is not JSON ({e})") from None
    if not isinstance(m, dict):
        raise BundleError(f"{where}: manifest.json is not a JSON object")
    if m.get("run_id", run_id) != run_id:
        raise BundleError(f"{where}: manifest.json names run {m.get('run_id')!r}, not {run_id!r}")
    schema = m.get("schema", 1)
    if not isinstance(schema, int) or not 1 <= schema <= SCHEMA:
        raise BundleError(f"{where}: manifest schema {schema!r}; this lab reads 1 to {SCHEMA}")
    return m


def _pick(d: Any, keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: d[k] for k in keys if isinstance(d, dict) and k in d}


def _run_summary(run_id: str, manifest: dict[str, Any],
                 records: list[dict[str, Any]]) -> dict[str, Any]:
    """bundle.json's line for a run: enough to see where it came from without opening it."""
    kernels: dict[str, Any] = {}
    configs = manifest.get("configs")
    if isinstance(configs, dict):
        for name, c in sorted(configs.items()):
            kernels[name] = {
                "kernel_name": c.get("kernel_name") if isinstance(c, dict) else None,
                **_pick(c.get("kernel") if isinstance(c, dict) else None,
                        ("package", "package_version", "release", "source", "config_sha256",
                         "bzimage_sha256")),
                **_pick(c, ("cmdline", "qemu_version", "timing")),
            }
    return {
        "run_id": run_id,
        "workload": manifest.get("workload"),
        "workloads": sorted({str(r.get("workload")) for r in records}),
        "kind": manifest.get("kind"),
        "configs": sorted({str(r.get("config")) for r in records}),
        "records": len(records),
        "backend": manifest.get("backend"),
        "timing": manifest.get("timing"),
        "simulated": manifest.get("simulated"),
        "status": manifest.get("status"),
        "lab_version": manifest.get("lab_version"),
        "git_commit": manifest.get("git_commit"),
        "host": _pick(manifest.get("host"), ("hostname", "platform", "cpus", "mem_bytes")),
        "kernels": kernels,
    }


def _build_index(runs: dict[str, list[tuple[str, bytes]]],
                 sources: list[dict[str, Any]]) -> bytes:
    summaries: list[dict[str, Any]] = []
    members: list[dict[str, Any]] = []
    for run_id, files in sorted(runs.items()):
        data = dict((name.rsplit("/", 1)[1], blob) for name, blob in files)
        where = f"run {run_id}"
        manifest = _parse_manifest(run_id, data["manifest.json"], where)
        records = _parse_records(run_id, data.get("runs.jsonl", b""), where)
        summaries.append(_run_summary(run_id, manifest, records))
        members += [{"path": n, "sha256": _sha256(b), "size": len(b)} for n, b in files]
    index = {
        "format": BUNDLE_FORMAT,
        "schema": BUNDLE_SCHEMA,
        "created_by": {"lab_version": __version__},
        "runs": summaries,
        "sources": sources,
        "members": sorted(members, key=lambda m: m["path"]),
    }
    return (json.dumps(index, indent=2, sort_keys=True) + "\n").encode()


def _check_index(label: str, hashes: dict[str, tuple[str, int]],
                 keep: dict[str, bytes]) -> dict[str, Any]:
    """bundle.json against the members actually present, and every run's manifest/records."""
    if INDEX not in keep:
        raise NotABundleError(f"{label}: not a lab bundle (no bundle.json)")
    try:
        index = json.loads(keep[INDEX])
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f"{label}: bundle.json is not JSON ({e})") from None
    if not isinstance(index, dict) or index.get("format") != BUNDLE_FORMAT:
        raise NotABundleError(f"{label}: not a lab bundle (bundle.json format is not "
                          f"{BUNDLE_FORMAT!r})")
    schema = index.get("schema")
    if not isinstance(schema, int) or schema < 1:
        raise BundleError(f"{label}: bundle.json has no valid schema version")
    if schema > BUNDLE_SCHEMA:
        raise BundleError(f"{label}: bundle schema {schema} is newer than this lab reads "
                          f"({BUNDLE_SCHEMA}); upgrade ukva-lab")
    listed = index.get("members")
    if not isinstance(listed, list) or not all(
            isinstance(e, dict) and isinstance(e.get("path"), str) for e in listed):
        raise BundleError(f"{label}: bundle.json has no valid members list")
    by_path = {e["path"]: e for e in listed}
    present = set(hashes) - {INDEX}
    unlisted, missing = sorted(present - set(by_path)), sorted(set(by_path) - present)
    if unlisted:
        raise BundleError(f"{label}: member {unlisted[0]!r} is not listed in bundle.json")
    if missing:
        raise BundleError(f"{label}: member {missing[0]!r} is listed in bundle.json but missing")
    for path in sorted(present):
        sha, size = hashes[path]
        entry = by_path[path]
        if entry.get("size") != size or entry.get("sha256") != sha:
            said = f"{entry.get('size')} bytes sha256 {str(entry.get('sha256'))[:12]}"
            raise BundleError(f"{label}: member {path!r} fails its checksum (bundle.json: "
                              f"{said}…, "
                              f"found {size} bytes sha256 {sha[:12]}…): altered or corrupt")
    run_ids = sorted({_MEMBER.fullmatch(p).group(1) for p in present})  # type: ignore[union-attr]
    runs = index.get("runs")
    if not isinstance(runs, list) or not all(isinstance(r, dict) for r in runs) or sorted(
            str(r.get("run_id")) for r in runs) != run_ids:
        raise BundleError(f"{label}: bundle.json's runs do not match the run directories "
                          f"({', '.join(run_ids) or 'none'})")
    if not isinstance(index.get("sources"), list):
        raise BundleError(f"{label}: bundle.json has no sources list")
    for run_id in run_ids:
        where = f"{label}: run {run_id}"
        if f"runs/{run_id}/manifest.json" not in keep:
            raise BundleError(f"{where}: no manifest.json")
        _parse_manifest(run_id, keep[f"runs/{run_id}/manifest.json"], where)
        _parse_records(run_id, keep.get(f"runs/{run_id}/runs.jsonl", b""), where)
    return index
