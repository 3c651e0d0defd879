"""Result bundles: recorded runs in one deterministic, verifiable ``NAME.labbundle.tar.gz``.

A bundle is what you mail or attach to a bug: the runs' files byte for byte, plus an index.
Layout (bundle schema 1), members sorted, ``bundle.json`` first::

    bundle.json                      format, schema, runs[] (summary + provenance), sources[],
                                     members[{path, sha256, size}] for every other member
    runs/<run-id>/manifest.json      kernel, .config sha256, cmdline, QEMU argv and version,
    runs/<run-id>/runs.jsonl         backend, lab version, host facts (see lab/trace.py)
    runs/<run-id>/console-<config>.log, profile.json, .config, ...   whatever the run dir has

Export is deterministic: the same runs give the same bytes (fixed mtime 0, uid/gid 0, empty
user names, mode 0644, gzip mtime 0 and no file name), so a bundle's sha256 names its content.

Import treats the file as hostile. Each member header is checked before any data is read
(absolute paths, ``..``, symbolic and hard links, devices, FIFOs, directories, unexpected
paths, duplicates, a per-member and a total size cap, a cap on the decompressed stream); every
member's sha256 and size must match bundle.json, and every manifest and record must parse.
Only then is it extracted, with tarfile's ``data`` filter and the same checks again, into a
temporary directory inside results/ (same filesystem), checked once more on disk, and each run
directory renamed into place. Checksums catch corruption and edits, not a sender who rewrites
bundle.json too; the structural checks are what make a hostile file harmless.

Collisions: a run id that already exists in results/ is skipped when every file of the bundled
run is there byte for byte (importing twice is a no-op), and otherwise the whole import is
refused before anything moves. Renaming to a suffixed id was rejected: the run id is inside the
manifest and every record, so it would have to rewrite data the checksums vouch for.
Example::

    info = export_bundle([open_run("20261125-2234")], Path("fork.labbundle.tar.gz"))
    result = import_bundle(Path("fork.labbundle.tar.gz"))   # result.imported, result.skipped
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import stat
import tarfile
import tempfile
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from . import __version__
from .errors import LabError, UsageError
from .paths import results_dir
from .results import SCHEMA, RunDir

__all__ = [
    "BUNDLE_FORMAT",
    "BUNDLE_SCHEMA",
    "SUFFIX",
    "Limits",
    "DEFAULT_LIMITS",
    "BundleError",
    "BundleInfo",
    "ImportResult",
    "export_bundle",
    "verify_bundle",
    "import_bundle",
    "merge_bundles",
    "extracted",
]

BUNDLE_FORMAT = "ukva-lab-bundle"
BUNDLE_SCHEMA = 1
SUFFIX = ".labbundle.tar.gz"
INDEX = "bundle.json"

_RUN_ID = r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}"
# the only dotfile carried is a kernel ``.config``; "." and ".." can never match
_FILE = r"(?:\.config|[A-Za-z0-9][A-Za-z0-9._+-]{0,127})"
_MEMBER = re.compile(rf"runs/({_RUN_ID})/({_FILE})")
_RECORD_KEYS = ("config", "workload", "counts")


@dataclass(frozen=True)
class Limits:
    """Caps a bundle must stay under, in bytes (of uncompressed member data) and members."""

    member_bytes: int = 256 * 2**20
    total_bytes: int = 2 * 2**30
    members: int = 10_000


DEFAULT_LIMITS = Limits()


class BundleError(LabError):
    """A bundle that is corrupt, hostile, in conflict with results/, or not a bundle (exit 1)."""


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
    """runs.jsonl content checked against the record schema; a torn last line is tolerated."""
    try:
        lines = data.decode("utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise BundleError(f"{where}: runs.jsonl is not UTF-8 ({e})") from None
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            if n == len(lines):  # a crash mid-append, as RunDir.records() reads it
                break
            raise BundleError(f"{where}: runs.jsonl line {n} is not JSON") from None
        if not isinstance(rec, dict):
            raise BundleError(f"{where}: runs.jsonl line {n} is not a JSON object")
        schema = rec.get("schema")
        if not isinstance(schema, int) or not 1 <= schema <= SCHEMA:
            raise BundleError(f"{where}: runs.jsonl line {n} has record schema {schema!r}; "
                              f"this lab reads 1 to {SCHEMA}")
        if rec.get("run_id") != run_id:
            raise BundleError(f"{where}: runs.jsonl line {n} belongs to run "
                              f"{rec.get('run_id')!r}, not {run_id!r}")
        missing = [k for k in _RECORD_KEYS if k not in rec]
        if missing or not isinstance(rec["counts"], dict):
            lacks = ", ".join(missing) or "a counts object"
            raise BundleError(f"{where}: runs.jsonl line {n} lacks {lacks}")
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


# ---------------------------------------------------------------------------------------------
# writing


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


# ---------------------------------------------------------------------------------------------
# reading


class _CappedReader:
    """A read()-only view of a decompressed stream that fails once it exceeds ``cap`` bytes."""

    def __init__(self, raw: gzip.GzipFile, cap: int, label: str) -> None:
        self._raw, self._cap, self._label, self._n = raw, cap, label, 0

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n if n >= 0 else self._cap + 1)
        self._n += len(data)
        if self._n > self._cap:
            raise BundleError(f"{self._label}: refused: decompresses to more than "
                              f"{self._cap} bytes (a compression bomb, or over the caps)")
        return data


@contextmanager
def _tar_stream(f: IO[bytes], label: str, limits: Limits) -> Iterator[tarfile.TarFile]:
    """The file as a sequential tar stream (nothing seeks back), decompressed under a cap."""
    f.seek(0)
    # member data, plus a header and a PAX header for each member, plus the end blocks
    cap = limits.total_bytes + limits.members * 4096 + 2**20
    try:
        with gzip.GzipFile(fileobj=f, mode="rb") as gz:
            reader: Any = _CappedReader(gz, cap, label)
            with tarfile.open(fileobj=reader, mode="r|") as tar:
                tar.errorlevel = 2
                yield tar
    except tarfile.FilterError as e:
        raise BundleError(f"{label}: refused by tarfile's data filter: {e}") from None
    except (tarfile.TarError, gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise BundleError(f"{label}: not a readable lab bundle ({e})") from None
    except OSError as e:
        raise BundleError(f"{label}: {e}") from None


def _check_member(m: tarfile.TarInfo, label: str, seen: set[str], total: int,
                  limits: Limits) -> int:
    """Refuse a hostile or unexpected member from its header alone; returns the new total."""
    name = m.name
    bad = f"{label}: refused: member {name!r}"
    if name.startswith("/") or re.match(r"[A-Za-z]:", name) or "\\" in name:
        raise BundleError(f"{bad} has an absolute path")
    if ".." in name.split("/"):
        raise BundleError(f"{bad} has a '..' path component (path traversal)")
    if m.issym():
        raise BundleError(f"{bad} is a symbolic link (to {m.linkname!r})")
    if m.islnk():
        raise BundleError(f"{bad} is a hard link (to {m.linkname!r})")
    if m.ischr() or m.isblk():
        raise BundleError(f"{bad} is a {'character' if m.ischr() else 'block'} device file")
    if m.isfifo():
        raise BundleError(f"{bad} is a FIFO")
    if m.isdir():
        raise BundleError(f"{bad} is a directory (a bundle holds only regular files)")
    if m.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):
        raise BundleError(f"{bad} has unsupported type {m.type!r} (only regular files)")
    if name != INDEX and not _MEMBER.fullmatch(name):
        raise BundleError(f"{bad} is not bundle.json or runs/<run-id>/<file>")
    if name in seen:
        raise BundleError(f"{bad} appears twice")
    seen.add(name)
    if len(seen) > limits.members:
        raise BundleError(f"{label}: refused: more than {limits.members} members")
    if m.size > limits.member_bytes:
        raise BundleError(f"{bad} is {m.size} bytes, over the per-member cap of "
                          f"{limits.member_bytes}")
    total += m.size
    if total > limits.total_bytes:
        raise BundleError(f"{label}: refused: members total over the cap of "
                          f"{limits.total_bytes} bytes")
    return total


def _scan(f: IO[bytes], label: str, limits: Limits) -> tuple[dict[str, tuple[str, int]],
                                                              dict[str, bytes]]:
    """Pass 1: check every header, hash every member; keep the JSON members' bytes."""
    hashes: dict[str, tuple[str, int]] = {}
    keep: dict[str, bytes] = {}
    seen: set[str] = set()
    total = 0
    with _tar_stream(f, label, limits) as tar:
        for m in tar:
            total = _check_member(m, label, seen, total, limits)
            src = tar.extractfile(m)
            assert src is not None  # a regular file, checked above
            h, n, buf = hashlib.sha256(), 0, io.BytesIO()
            wanted = m.name == INDEX or m.name.endswith(("/manifest.json", "/runs.jsonl"))
            while chunk := src.read(2**20):
                h.update(chunk)
                n += len(chunk)
                if wanted:
                    buf.write(chunk)
            if n != m.size:
                raise BundleError(f"{label}: member {m.name!r} is truncated")
            hashes[m.name] = (h.hexdigest(), n)
            if wanted:
                keep[m.name] = buf.getvalue()
    return hashes, keep


def _check_index(label: str, hashes: dict[str, tuple[str, int]],
                 keep: dict[str, bytes]) -> dict[str, Any]:
    """bundle.json against the members actually present, and every run's manifest/records."""
    if INDEX not in keep:
        raise BundleError(f"{label}: not a lab bundle (no bundle.json)")
    try:
        index = json.loads(keep[INDEX])
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f"{label}: bundle.json is not JSON ({e})") from None
    if not isinstance(index, dict) or index.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{label}: not a lab bundle (bundle.json format is not "
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


@contextmanager
def _open(path: Path) -> Iterator[IO[bytes]]:
    try:
        st = path.stat()
    except OSError as e:
        raise UsageError(f"cannot read bundle {path}: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(f"{path} is a {_kind(st.st_mode)}, not a bundle file")
    with path.open("rb") as f:
        yield f


def _verify(f: IO[bytes], path: Path, limits: Limits) -> BundleInfo:
    label = path.name
    hashes, keep = _scan(f, label, limits)
    index = _check_index(label, hashes, keep)
    f.seek(0)
    h = hashlib.sha256()
    size = 0
    while chunk := f.read(2**20):
        h.update(chunk)
        size += len(chunk)
    return BundleInfo(path=path, sha256=h.hexdigest(), size=size, index=index,
                      members=len(hashes), member_bytes=sum(s for _, s in hashes.values()))


def verify_bundle(path: Path, limits: Limits = DEFAULT_LIMITS) -> BundleInfo:
    """Check a bundle's structure, checksums and schema without extracting anything.

    Raises BundleError with a one-line reason (UsageError when the file cannot be read).
    """
    with _open(path) as f:
        return _verify(f, path, limits)


def _extract_checked(f: IO[bytes], info: BundleInfo, dest: Path, limits: Limits) -> None:
    """Pass 2 and 3: extract with the ``data`` filter and the header checks, then re-hash."""
    label = info.path.name
    expected = {e["path"]: e for e in info.index["members"]}
    seen: set[str] = set()

    def checked(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
        total = 0
        for m in tar:
            total = _check_member(m, label, seen, total, limits)
            if m.name != INDEX and m.name not in expected:
                raise BundleError(f"{label}: member {m.name!r} appeared after verification")
            yield m

    with _tar_stream(f, label, limits) as tar:
        tar.extractall(dest, members=checked(tar), filter="data")
    found: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(dest):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = p.relative_to(dest).as_posix()
            mode = p.lstat().st_mode
            if stat.S_ISDIR(mode) and (rel == "runs" or re.fullmatch(rf"runs/{_RUN_ID}", rel)):
                continue
            if not stat.S_ISREG(mode) or (rel != INDEX and rel not in expected):
                raise BundleError(f"{label}: extraction produced unexpected {rel!r}")
            found.add(rel)
    if found != set(expected) | {INDEX}:
        raise BundleError(f"{label}: extraction is missing members")
    for rel, e in expected.items():
        data = (dest / rel).read_bytes()
        if len(data) != e["size"] or _sha256(data) != e["sha256"]:
            raise BundleError(f"{label}: {rel!r} changed between verification and extraction")


def _safe_extract(path: Path, dest: Path, limits: Limits) -> BundleInfo:
    with _open(path) as f:
        info = _verify(f, path, limits)
        _extract_checked(f, info, dest, limits)
    return info


@contextmanager
def extracted(path: Path, limits: Limits = DEFAULT_LIMITS) -> Iterator[list[RunDir]]:
    """A verified bundle's runs in a temporary directory (removed afterwards): read, not import."""
    with tempfile.TemporaryDirectory(prefix="lab-bundle-") as tmp:
        info = _safe_extract(path, Path(tmp), limits)
        yield [RunDir(Path(tmp) / "runs" / run_id) for run_id in info.run_ids]


def _same_run(local: Path, run_id: str, staged: Path) -> str | None:
    """None when every bundled file of the run is in ``local`` byte for byte; else why not."""
    if local.is_symlink() or not local.is_dir():
        return f"results/{run_id} exists and is not a run directory"
    for name in sorted(os.listdir(staged)):
        mine = local / name
        if not mine.is_file() or mine.is_symlink():
            return f"results/{run_id} has no {name}"
        if _sha256(mine.read_bytes()) != _sha256((staged / name).read_bytes()):
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
