"""Workloads: static i386 C programs run in the guest, each described by a TOML spec beside it.

A workload NAME is ``NAME.toml`` (its description, unit and parameter bounds) and the C program
the initramfs builder compiles to ``/workloads/NAME``: ``NAME.c``, plus ``NAME-PART.c`` files when
the spec lists them in ``sources``. Keeping the bounds as data lets the CLI reject a bad
``--param`` on the host, in milliseconds, instead of after a guest boot; the program's own table
is generated from the same data (:meth:`WorkloadSpec.params_header`), so the two cannot
disagree. Every workload prints one JSON report line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import LabError, UsageError
from ..tomlfile import load_toml

__all__ = [
    "WORKLOADS_DIR",
    "GUEST_DIR",
    "REPORT_KEYS",
    "ParamSpec",
    "WorkloadSpec",
    "list_workloads",
    "load_workload",
    "workload_sources",
    "PARAMS_HEADER",
    "parse_param_args",
    "parse_report",
]

WORKLOADS_DIR = Path(__file__).resolve().parent
#: Where the initramfs puts the compiled workloads.
GUEST_DIR = "/workloads"
#: Keys every report line carries, and their types: results and dashboards rely on them.
REPORT_KEYS: dict[str, type] = {
    "workload": str,
    "unit": str,
    "ops": int,
    "errors": int,
    "elapsed_ns": int,
    "params": dict,
}

#: The header the image builder generates from a spec; workload.h includes it.
PARAMS_HEADER = "workload-params.h"
#: ``struct param`` holds longs, and the programs are i386: 32 bits.
_LONG_MIN, _LONG_MAX = -(2**31 - 1), 2**31 - 1

_NAME_RE = re.compile(r"[a-z][a-z0-9_]*")
_INT_RE = re.compile(r"[+-]?[0-9]+")


@dataclass(frozen=True)
class ParamSpec:
    """One integer parameter of a workload, passed to the program as ``--NAME VALUE``."""

    name: str
    default: int
    min: int
    max: int
    help: str

    def bounds(self) -> str:
        """The valid range as text, e.g. ``"1..1000000"``."""
        return f"{self.min}..{self.max}"


@dataclass(frozen=True)
class WorkloadSpec:
    """A workload as declared in its TOML file, with the C sources it is built from."""

    name: str
    description: str
    unit: str
    stresses: str
    self_check: str
    params: dict[str, ParamSpec]
    #: ``NAME.c`` (the one with ``main``) first, then the spec's other ``sources``.
    sources: tuple[Path, ...]

    @property
    def source(self) -> Path:
        """The program's main file, ``NAME.c``."""
        return self.sources[0]

    def params_header(self) -> str:
        """The C side of the parameter table: the text of ``workload-params.h``.

        ``PARAM_<NAME>`` indexes ``params[]`` in spec (argv) order; ``PARAM_<NAME>_DEFAULT``,
        ``_MIN`` and ``_MAX`` size the programs' arrays; ``PARAM_TABLE`` initialises the
        ``struct param`` table that ``parse_params()`` fills. Generated, never written by hand:
        the bounds the program enforces are the ones the host checks.
        """
        upper = {name: name.upper() for name in self.params}
        lines = [
            f"/* Generated from {self.name}.toml by lab/workloads (WorkloadSpec.params_header):",
            " * do not edit; change the spec instead. */",
            "#ifndef LAB_WORKLOAD_PARAMS_H",
            "#define LAB_WORKLOAD_PARAMS_H",
            "",
            "enum {",
            *(f"\tPARAM_{upper[n]}," for n in self.params),
            "\tNR_PARAMS",
            "};",
            "",
        ]
        for n, p in self.params.items():
            lines += [
                f"#define PARAM_{upper[n]}_DEFAULT\t{p.default}L",
                f"#define PARAM_{upper[n]}_MIN\t{p.min}L",
                f"#define PARAM_{upper[n]}_MAX\t{p.max}L",
            ]
        lines += ["", "#define PARAM_TABLE { \\"]
        lines += [
            f'\t{{ "{n}", PARAM_{upper[n]}_DEFAULT, PARAM_{upper[n]}_MIN, '
            f"PARAM_{upper[n]}_MAX }}, \\"
            for n in self.params
        ]
        lines += ["}", "", "#endif /* LAB_WORKLOAD_PARAMS_H */", ""]
        return "\n".join(lines)

    @property
    def guest_path(self) -> str:
        """Where the compiled program lives in the guest, e.g. ``/workloads/forkstorm``."""
        return f"{GUEST_DIR}/{self.name}"

    def _valid(self) -> str:
        return ", ".join(f"{p.name} {p.bounds()}" for p in self.params.values())

    def resolve(self, overrides: Mapping[str, str | int],
                above_max: bool = False) -> dict[str, int]:
        """Fill defaults and check ``overrides`` against the spec, before anything boots.

        Returns every parameter in spec order, e.g. ``{"procs": 50, "touch": 16, ...}``.
        Raises :class:`UsageError` naming the parameter and the bound or the valid names.
        ``above_max``: a model (the sim backend) may be asked beyond what the program takes
        (taskpile's 10,000 tasks); it labels such answers EXTRAPOLATED.
        """
        values = {name: p.default for name, p in self.params.items()}
        for name, raw in overrides.items():
            spec = self.params.get(name)
            if spec is None:
                raise UsageError(
                    f"unknown parameter '{name}' for workload {self.name}; valid: {self._valid()}"
                )
            value = _to_int(raw)
            if value is None:
                raise UsageError(
                    f"parameter {name}={raw!r} is not an integer "
                    f"(workload {self.name}: {name} {spec.bounds()})"
                )
            if value < spec.min or (value > spec.max and not above_max):
                if value < spec.min:
                    side = f"below its minimum {spec.min}"
                else:
                    side = f"above its maximum {spec.max}"
                raise UsageError(
                    f"parameter {name}={value} is {side} (workload {self.name}: {self._valid()})"
                )
            values[name] = value
        return values

    def argv(self, params: Mapping[str, int], above_max: bool = False) -> list[str]:
        """The guest command line, e.g. ``["/workloads/forkstorm", "--procs", "1000", ...]``.

        ``params`` is checked with :meth:`resolve` again (missing ones take their defaults),
        so an argv built here never carries a value the program would reject.
        """
        argv = [self.guest_path]
        for name, value in self.resolve(params, above_max).items():
            argv += [f"--{name}", str(value)]
        return argv


def _to_int(raw: str | int) -> int | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw
    text = str(raw).strip()
    return int(text, 10) if _INT_RE.fullmatch(text) else None


def _load_spec(path: Path) -> WorkloadSpec:
    """Read one ``NAME.toml``; a malformed spec or a missing source is a lab bug (exit 1)."""
    name = path.stem
    if not _NAME_RE.fullmatch(name):
        raise LabError(f"{path}: workload name '{name}' must match [a-z][a-z0-9_]*")
    source = path.with_suffix(".c")
    if not source.is_file():
        raise LabError(f"{path}: workload '{name}' has a spec but no program ({source.name})")
    data = load_toml(path, "workload spec", LabError)

    def text(table: Mapping[str, Any], key: str, where: str) -> str:
        value = table.get(key)
        if not isinstance(value, str) or not value:
            raise LabError(f"{path}: {where}'{key}' must be a non-empty string")
        return value

    def integer(table: Mapping[str, Any], key: str, where: str) -> int:
        value = table.get(key)
        if not isinstance(value, int) or isinstance(value, bool):
            raise LabError(f"{path}: {where}'{key}' must be an integer")
        return value

    raw_params = data.get("params")
    if not isinstance(raw_params, dict) or not raw_params:
        raise LabError(f"{path}: needs at least one [params.NAME] table")
    params: dict[str, ParamSpec] = {}
    for pname, table in raw_params.items():
        where = f"[params.{pname}] "
        if not _NAME_RE.fullmatch(pname) or not isinstance(table, dict):
            raise LabError(f"{path}: {where}is not a valid parameter table")
        p = ParamSpec(
            name=pname,
            default=integer(table, "default", where),
            min=integer(table, "min", where),
            max=integer(table, "max", where),
            help=text(table, "help", where),
        )
        if not p.min <= p.default <= p.max:
            raise LabError(f"{path}: {where}default {p.default} is outside {p.bounds()}")
        if p.min < _LONG_MIN or p.max > _LONG_MAX:
            raise LabError(f"{path}: {where}bounds {p.bounds()} do not fit the program's long")
        params[pname] = p
    return WorkloadSpec(
        name=name,
        description=text(data, "description", ""),
        unit=text(data, "unit", ""),
        stresses=text(data, "stresses", ""),
        self_check=text(data, "self_check", ""),
        params=params,
        sources=_sources(path, name, data.get("sources")),
    )


def _sources(path: Path, name: str, raw: Any) -> tuple[Path, ...]:
    """The spec's ``sources`` (default ``["NAME.c"]``): NAME.c first, then NAME-PART.c files.

    One naming rule keeps the directory readable: every file of a program starts with its name.
    """
    if raw is None:
        raw = [f"{name}.c"]
    if not isinstance(raw, list) or not all(isinstance(s, str) for s in raw):
        raise LabError(f"{path}: 'sources' must be a list of file names")
    if raw[:1] != [f"{name}.c"]:
        raise LabError(f"{path}: 'sources' must start with {name}.c (the file with main)")
    if len(set(raw)) != len(raw):
        raise LabError(f"{path}: 'sources' lists a file twice")
    part = re.compile(re.escape(name) + r"-[a-z0-9][a-z0-9_-]*\.c")
    for extra in raw[1:]:
        if not part.fullmatch(extra):
            raise LabError(f"{path}: source '{extra}' must be named {name}-PART.c, beside it")
        if not (path.parent / extra).is_file():
            raise LabError(f"{path}: source '{extra}' is missing")
    return tuple(path.parent / s for s in raw)


def _discover(directory: Path = WORKLOADS_DIR) -> dict[str, WorkloadSpec]:
    """Every spec in ``directory``, by name; re-read each call (a few small files).

    A ``.c`` file that no spec lists would silently never be built: that is an error too.
    """
    specs = {path.stem: _load_spec(path) for path in sorted(directory.glob("*.toml"))}
    listed = {src.name for spec in specs.values() for src in spec.sources}
    stray = sorted(p.name for p in directory.glob("*.c") if p.name not in listed)
    if stray:
        raise LabError(
            f"{directory}: {', '.join(stray)} belong to no workload "
            "(list them in a spec's 'sources', named NAME-PART.c)"
        )
    return specs


def list_workloads() -> list[str]:
    """Names of the workloads shipped with the lab, sorted."""
    return list(_discover())


def load_workload(name: str) -> WorkloadSpec:
    """The spec for ``name``; an unknown name is a :class:`UsageError` listing the valid ones."""
    specs = _discover()
    if name not in specs:
        raise UsageError(f"unknown workload '{name}'; valid: {', '.join(specs) or '(none)'}")
    return specs[name]


def workload_sources() -> dict[str, Path]:
    """Name -> main C source (``NAME.c``); the initramfs builder uses the specs' ``sources``."""
    return {name: spec.source for name, spec in _discover().items()}


def parse_param_args(items: list[str]) -> dict[str, str]:
    """Parse repeated CLI ``--param NAME=VALUE`` items into a dict (values checked later).

    >>> parse_param_args(["procs=1000", "touch=8"])
    {'procs': '1000', 'touch': '8'}
    """
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name or not value:
            raise UsageError(f"malformed --param '{item}': expected NAME=VALUE, e.g. procs=1000")
        if name in out:
            raise UsageError(f"--param {name} given twice ({name}={out[name]}, {item})")
        out[name] = value
    return out


def parse_report(stdout: str) -> dict[str, Any]:
    """The workload's report: the last stdout line that is a JSON object with a "workload" key.

    Other lines (shell noise, kernel messages) are skipped. A missing report, or one without
    the keys in :data:`REPORT_KEYS`, raises :class:`LabError`: the run cannot be recorded.
    """
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if not isinstance(obj, dict) or "workload" not in obj:
            continue
        for key, kind in REPORT_KEYS.items():
            value = obj.get(key)
            if not isinstance(value, kind) or isinstance(value, bool):
                raise LabError(f"workload report lacks '{key}' ({kind.__name__}): {line[:200]}")
        return obj
    tail = stdout.strip().splitlines()[-1:] or ["(no output)"]
    raise LabError(
        "no workload report (a JSON line with a 'workload' key) in the output; "
        f"last line: {tail[0][:200]}"
    )
