"""A deterministic hardware-cost model beside icount (issue 12).

Three parts, all pure functions except the plugin build:

- **Machine models** are data (``models/NAME.toml``): a TLB geometry and a price per counted
  event, each with its source. The plugin simulates every model's TLB geometry in the same run
  (the run-time model's counts at the top level of a window record, the others' under
  ``geometries``), so any model can re-price a run with its own TLB's misses.
- **Applying a model** turns the raw per-window counts the plugin recorded
  (``record["costmodel"]``) into modelled cycles: ``Σ count × cost``. Nothing here boots a
  guest, so any stored run can be re-priced with any model.
- **The plugin** (``plugin/costmodel.c``) is built with the host's gcc into the content-keyed
  cache, like the guest's workloads, and loaded with QEMU's ``-plugin``.

docs/cost-model.md says what is counted and every approximation.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import tempfile
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import LabError, MissingPackageError, UsageError
from ..paths import cache_dir

__all__ = [
    "Model",
    "COST_KEYS",
    "TLB_KEYS",
    "TLB_COUNT_KEYS",
    "TLB_GEOMETRY",
    "MODELS_DIR",
    "PLUGIN_SOURCES",
    "list_models",
    "load_model",
    "modelled_cycles",
    "record_counts",
    "pti_enabled",
    "plugin_key",
    "plugin_path",
    "ensure_plugin",
    "require_plugin_support",
    "plugin_option",
    "read_windows",
    "window_file",
    "require_gcc",
    "new_window",
]

MODELS_DIR = Path(__file__).with_name("models")
PLUGIN_DIR = Path(__file__).with_name("plugin")
PLUGIN_SOURCES = (PLUGIN_DIR / "costmodel.c", PLUGIN_DIR / "qemu_plugin_api.h")
CFLAGS = ("-shared", "-fPIC", "-O2", "-Wall", "-fvisibility=hidden")
#: Bump when the build changes without a source changing.
PLUGIN_FORMAT = 1

#: Every price a model must give (cycles, except rep_bytes_per_cycle).
COST_KEYS = (
    "insn", "rep_startup", "rep_bytes_per_cycle", "invlpg", "cr3_write", "cr4_write",
    "stlb_hit", "walk", "load", "store",
)
TLB_KEYS = ("itlb", "itlb2m", "dtlb", "dtlb2m", "stlb")
#: The counts that depend on the TLB geometry: the plugin keeps them per geometry (a window
#: record's top level: the run-time model's; ``geometries[NAME]``: every other model's).
#: ``dtlb_*_kmap`` count again the data-side misses and walks in the INVLPG (kmap) window.
TLB_COUNT_KEYS = (
    *(f"{s}_{kind}_{mode}" for s in ("itlb", "dtlb") for kind in ("l1_miss", "walk")
      for mode in ("user", "kernel")),
    "dtlb_l1_miss_kmap", "dtlb_walk_kmap",
)
#: The key ``record_counts`` adds: the model whose TLB geometry the TLB counts come from.
TLB_GEOMETRY = "tlb_geometry"
#: A model's name goes into the plugin's arguments and its JSON records as is.
_NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,63}")
#: The kernel's direct map (lowmem) on the 3G/1G split is mapped with 2 MiB pages; the kmap,
#: fixmap and vmalloc areas above it with 4 KiB pages. INVLPG drops every 4 KiB entry at or
#: above INVLPG_LO, because a 7.2 plugin cannot see its target: PKMAP_BASE of the kernels
#: built from source (NR_CPUS=8), so the fixmap's kmap_local slots, where kunmaps flush, are
#: above it in every lab kernel, and the UKVA window just below it (0xFF000000-0xFF600000)
#: is not: a real INVLPG of a kmap slot leaves a window entry in place. The stock kernel
#: (NR_CPUS=32) has its pkmap, LDT and part of cpu_entry_area there instead, which no
#: INVLPG targets (docs/cost-model.md).
KERNEL_BASE = 0xC0000000
LARGE_RANGE = (0xC0000000, 0xF8000000)
INVLPG_LO = 0xFF600000


@dataclass(frozen=True)
class Model:
    """One machine: TLB geometry for the plugin, a price per event, and where each came from."""

    name: str
    description: str
    clock_ghz: float
    tlb: dict[str, tuple[int, int]]
    costs: dict[str, float]
    sources: dict[str, dict[str, str]]
    path: Path

    def plugin_args(self) -> dict[str, str]:
        """The run-time geometry: ``itlb=E:W`` ... ``stlb=E:W``."""
        return {k: f"{e}:{w}" for k, (e, w) in self.tlb.items()}

    def geometry_arg(self) -> str:
        """This model's geometry as one more simulated beside the run-time one:
        ``geo=NAME/ITLB/ITLB2M/DTLB/DTLB2M/STLB``'s value, each part ``E:W``."""
        return "/".join([self.name, *(f"{e}:{w}" for e, w in (self.tlb[k] for k in TLB_KEYS))])


def list_models() -> list[str]:
    return sorted(p.stem for p in MODELS_DIR.glob("*.toml"))


def _bad(path: Path, what: str) -> UsageError:
    return UsageError(f"cost model {path.name}: {what}")


def _parse_model(path: Path) -> Model:
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise _bad(path, f"cannot read: {e}") from e
    tlb_raw = data.get("tlb", {})
    tlb: dict[str, tuple[int, int]] = {}
    for k in TLB_KEYS:
        v = tlb_raw.get(k)
        if (not isinstance(v, list) or len(v) != 2
                or not all(isinstance(x, int) and x >= 0 for x in v)):
            raise _bad(path, f"tlb.{k} must be [entries, ways]")
        entries, ways = v
        if entries and (not ways or entries % ways or ways > 64):
            raise _bad(path, f"tlb.{k}: {entries} entries in {ways} ways is no set-associative TLB")
        if not entries and k in ("itlb", "dtlb"):
            raise _bad(path, f"tlb.{k} needs entries")
        tlb[k] = (entries, ways)
    if not tlb_raw.get("source"):
        raise _bad(path, "tlb needs a source")
    costs: dict[str, float] = {}
    sources: dict[str, dict[str, str]] = {"tlb": {"source": str(tlb_raw["source"]),
                                                  "basis": str(tlb_raw.get("basis", ""))}}
    cost_raw = data.get("cost", {})
    unknown = set(cost_raw) - set(COST_KEYS)
    if unknown:
        raise _bad(path, f"unknown costs {sorted(unknown)}")
    for k in COST_KEYS:
        entry = cost_raw.get(k)
        if not isinstance(entry, dict) or not isinstance(entry.get("value"), int | float):
            raise _bad(path, f"cost.{k} needs a value")
        value = float(entry["value"])
        if value < 0 or not math.isfinite(value) or (k == "rep_bytes_per_cycle" and value <= 0):
            raise _bad(path, f"cost.{k} = {value} is out of range")
        if not entry.get("source"):
            raise _bad(path, f"cost.{k} cites no source")
        costs[k] = value
        sources[k] = {"source": str(entry["source"]), "basis": str(entry.get("basis", "")),
                      "unit": str(entry.get("unit", "")), "note": str(entry.get("note", ""))}
    name = str(data.get("name", path.stem))
    if name != path.stem:
        raise _bad(path, f"name {name!r} differs from the file name")
    if not _NAME_RE.fullmatch(name):
        raise _bad(path, "a model's name is at most 63 of A-Z a-z 0-9 . _ -")
    return Model(name, str(data.get("description", "")), float(data.get("clock_ghz", 1.0)),
                 tlb, costs, sources, path)


def load_model(name: str, directory: Path | None = None) -> Model:
    """The model ``name`` (UsageError naming the known ones when there is none)."""
    path = (directory or MODELS_DIR) / f"{name}.toml"
    if not path.is_file() or "/" in name:
        known = ", ".join(list_models())
        raise UsageError(f"unknown cost model {name!r}: choose {known}")
    return _parse_model(path)


# ---- applying a model (pure) -------------------------------------------------------------

def _c(counts: dict[str, Any], key: str) -> float:
    return float(counts.get(key) or 0)


def modelled_cycles(model: Model, counts: dict[str, Any]) -> dict[str, float]:
    """Σ count × cost over one window's raw plugin counts, by component, plus ``total``.

    ``tlb`` charges a first-level miss that hits the second level ``stlb_hit`` and a walk
    ``walk``; a model without a second level sees every miss as a walk.
    """
    c = costs = model.costs
    insns = _c(counts, "insn_user") + _c(counts, "insn_kernel")
    rep_insns = _c(counts, "rep_insns_user") + _c(counts, "rep_insns_kernel")
    rep_bytes = _c(counts, "rep_bytes_user") + _c(counts, "rep_bytes_kernel")
    l1 = sum(_c(counts, f"{s}_l1_miss_{m}") for s in ("itlb", "dtlb") for m in ("user", "kernel"))
    walks = sum(_c(counts, f"{s}_walk_{m}") for s in ("itlb", "dtlb") for m in ("user", "kernel"))
    out = {
        "insn": insns * c["insn"],
        "rep": rep_insns * c["rep_startup"] + rep_bytes / c["rep_bytes_per_cycle"],
        "invlpg": _c(counts, "invlpg") * c["invlpg"],
        "cr3": _c(counts, "cr3_writes") * c["cr3_write"],
        "cr4": _c(counts, "cr4_writes") * c["cr4_write"],
        "tlb": (l1 - walks) * costs["stlb_hit"] + walks * costs["walk"],
        "mem": _c(counts, "loads") * c["load"] + _c(counts, "stores") * c["store"],
    }
    out["total"] = sum(out.values())
    return out


def record_counts(model: Model, record: dict[str, Any]) -> dict[str, Any] | None:
    """The raw counts of one record's measured window to price with MODEL, or None when the
    record has none (traced without a cost model, or no units).

    Why a function: the TLB counts depend on the TLB geometry simulated, so which counts
    belong to which model is decided here, once, for every caller. The TLB counts
    (``TLB_COUNT_KEYS``) are MODEL's own geometry's when the record has them (the run-time
    model's, or ``geometries[MODEL]``, simulated beside it); a record of an older run has the
    run-time geometry's only, and keeps them. ``counts[TLB_GEOMETRY]`` names the model whose
    geometry they are; ``geometries`` itself is not returned."""
    cm = record.get("costmodel")
    if not cm or not cm.get("counts") or (record.get("units") or 0) <= 0:
        return None
    counts = dict(cm["counts"])
    others = counts.pop("geometries", None)
    source = str(cm.get("model") or counts.get("model") or "")
    own = others.get(model.name) if isinstance(others, dict) else None
    if model.name != source and isinstance(own, dict):
        for key in TLB_COUNT_KEYS:
            counts.pop(key, None)
            if key in own:
                counts[key] = own[key]
        source = model.name
    counts[TLB_GEOMETRY] = source
    return counts


def pti_enabled(cmdline: str) -> bool:
    """PTI is on unless the boot's command line turns it off (the stock 686-pae default)."""
    args = cmdline.split()
    return not ("nopti" in args or "pti=off" in args or "mitigations=off" in args)


# ---- the plugin ----------------------------------------------------------------------------

@functools.cache
def _compiler_id(gcc: str) -> str:
    out = subprocess.run([gcc, "--version"], capture_output=True, text=True).stdout
    return out.splitlines()[0] if out else gcc


def plugin_key(gcc: str = "gcc") -> str:
    """sha256 of the plugin's sources, flags and compiler: its cache key."""
    digest = hashlib.sha256(f"format={PLUGIN_FORMAT}\0{_compiler_id(gcc)}\0".encode())
    digest.update(" ".join(CFLAGS).encode())
    for src in PLUGIN_SOURCES:
        digest.update(f"\0{src.name}\0".encode() + src.read_bytes())
    return digest.hexdigest()


def plugin_path(key: str) -> Path:
    return cache_dir() / "costmodel" / f"costmodel-{key[:16]}.so"


def require_gcc() -> str:
    gcc = shutil.which("gcc")
    if not gcc:
        raise MissingPackageError("gcc", "gcc")
    return gcc


def ensure_plugin() -> Path:
    """Build the plugin unless the cache holds it for these sources and this compiler."""
    gcc = require_gcc()
    path = plugin_path(plugin_key(gcc))
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        out = Path(tmp) / "costmodel.so"
        proc = subprocess.run(
            [gcc, *CFLAGS, "-o", str(out), str(PLUGIN_SOURCES[0])],
            capture_output=True, text=True,
        )
        if proc.returncode != 0:
            raise LabError(f"building the cost-model plugin failed:\n{proc.stderr.strip()}")
        os.replace(out, path)
    return path


@functools.cache
def require_plugin_support(qemu: str) -> None:
    """QEMU must be built with TCG plugins (its -help lists -plugin)."""
    path = shutil.which(qemu)
    if not path:
        raise MissingPackageError(qemu, "qemu-system-x86")
    out = subprocess.run([path, "-help"], capture_output=True, text=True, check=False).stdout
    if "-plugin" not in out:
        raise LabError(f"{qemu} has no TCG plugin support (-plugin): --cost-model needs a QEMU "
                       "built with --enable-plugins (Debian's qemu-system-x86 7.2 has it)")


def plugin_option(so: Path, out: Path, model: Model, cmdline: str,
                  others: Sequence[Model] | None = None) -> str:
    """The value of QEMU's ``-plugin`` option for ``model`` on a boot with ``cmdline``: its
    TLB geometry first (``itlb=E:W``...), then one ``geo=NAME/ITLB/ITLB2M/DTLB/DTLB2M/STLB``
    for each of ``others`` (default: every other model in MODELS_DIR, by name), simulated in
    the same run so any model can re-price the run with its own TLB's counts."""
    if others is None:
        others = [load_model(n) for n in list_models() if n != model.name]
    args = [
        ("out", str(out)),
        ("model", model.name),
        ("pti", "on" if pti_enabled(cmdline) else "off"),
        ("kernel_base", hex(KERNEL_BASE)),
        ("large_lo", hex(LARGE_RANGE[0])),
        ("large_hi", hex(LARGE_RANGE[1])),
        ("invlpg_lo", hex(INVLPG_LO)),
        *model.plugin_args().items(),
        *(("geo", m.geometry_arg()) for m in others if m.name != model.name),
    ]
    for k, v in [("file", str(so)), *args]:
        if "," in v:
            raise UsageError(f"cost-model plugin {k} {v!r} contains a comma")
    return ",".join([f"file={so}", *(f"{k}={v}" for k, v in args)])


def window_file(instance_dir: Path) -> Path:
    """Where a guest instance's plugin appends its window records."""
    return instance_dir / "costmodel.jsonl"


def read_windows(path: Path) -> list[dict[str, Any]]:
    """The plugin's window records in ``path`` (its install line and torn lines skipped)."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and rec.get("event") == "window":
            out.append(rec)
    return out


def new_window(path: Path, seen: int) -> dict[str, Any]:
    """The one window recorded since ``seen`` windows were in ``path``."""
    windows = read_windows(path)
    if len(windows) != seen + 1:
        raise LabError(f"the cost-model plugin recorded {len(windows) - seen} windows for one "
                       f"measurement, expected 1 ({path})")
    rec = dict(windows[-1])
    if rec.get("partial"):
        raise LabError("the cost-model plugin's window is partial (the first window of a boot "
                       f"switches instrumentation on): {path}")
    rec.pop("event", None)
    return rec
