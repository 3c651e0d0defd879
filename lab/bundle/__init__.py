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

The package follows the seams: :mod:`.index` (format, schema, bundle.json), :mod:`.reading`
(hostile input: safe tar reading, verification, extraction), :mod:`.writing` (export, merge)
and :mod:`.importing` (into results/). The public names are all re-exported here.
"""

from __future__ import annotations

from .importing import import_bundle
from .index import (
    BUNDLE_FORMAT,
    BUNDLE_SCHEMA,
    DEFAULT_LIMITS,
    SUFFIX,
    BundleError,
    BundleInfo,
    ImportResult,
    Limits,
    NotABundleError,
)
from .reading import extracted, verify_bundle
from .writing import export_bundle, merge_bundles

__all__ = [
    "BUNDLE_FORMAT",
    "BUNDLE_SCHEMA",
    "SUFFIX",
    "Limits",
    "DEFAULT_LIMITS",
    "BundleError",
    "NotABundleError",
    "BundleInfo",
    "ImportResult",
    "export_bundle",
    "verify_bundle",
    "import_bundle",
    "merge_bundles",
    "extracted",
]
