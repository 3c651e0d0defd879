"""Safe reading: a bundle file is hostile until proven otherwise.

Each member header is checked before any data is read, the decompressed stream is capped,
every member is hashed against bundle.json, and extraction uses tarfile's ``data`` filter with
the same header checks again, then re-hashes what landed on disk.

The filters (PEP 706) are in the standard library from Python 3.11.4. Debian bookworm's python3
is 3.11.2, so there the same module comes from ``backports.tarfile`` (CPython's tarfile,
packaged on PyPI; pyproject.toml asks for it only below 3.11.4): set-up on a fresh bookworm
and the Docker image use Debian's own interpreter instead of building one.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib
import io
import os
import re
import stat
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from ..errors import UsageError
from ..results import RunDir
from .index import (
    _MEMBER,
    _RUN_ID,
    DEFAULT_LIMITS,
    INDEX,
    BundleError,
    BundleInfo,
    Limits,
    NotABundleError,
    _check_index,
    _file_sha256,
    _kind,
)

__all__ = ["verify_bundle", "extracted", "tarfile"]

if not hasattr(tarfile, "data_filter"):  # Python < 3.11.4: the backport (module docstring)
    tarfile = importlib.import_module("backports.tarfile")  # type: ignore[assignment]


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
        raise NotABundleError(f"{label}: not a readable lab bundle ({e})") from None
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


@contextmanager
def _open(path: Path) -> Iterator[io.BufferedReader]:
    try:
        st = path.stat()
    except OSError as e:
        raise UsageError(f"cannot read bundle {path}: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(f"{path} is a {_kind(st.st_mode)}, not a bundle file")
    with path.open("rb") as f:
        yield f


def _verify(f: io.BufferedReader, path: Path, limits: Limits) -> BundleInfo:
    label = path.name
    hashes, keep = _scan(f, label, limits)
    index = _check_index(label, hashes, keep)
    f.seek(0)
    sha256 = hashlib.file_digest(f, "sha256").hexdigest()
    size = f.tell()
    return BundleInfo(path=path, sha256=sha256, size=size, index=index,
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
        p = dest / rel
        if p.stat().st_size != e["size"] or _file_sha256(p) != e["sha256"]:
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
