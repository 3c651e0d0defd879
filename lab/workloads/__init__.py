"""Workloads: static i386 C programs run in the guest, each described by a TOML spec beside it.

A workload NAME is two files in this directory: ``NAME.c`` (the program; the initramfs builder
compiles it to ``/workloads/NAME``) and ``NAME.toml`` (its description, unit and parameter
bounds). Keeping the bounds as data lets the CLI reject a bad ``--param`` on the host, in
milliseconds, instead of after a guest boot. Every workload prints one JSON report line.
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
    """A workload as declared in its TOML file, with the C source it is built from."""

    name: str
    description: str
    unit: str
    stresses: str
    self_check: str
    params: dict[str, ParamSpec]
    source: Path

    @property
    def guest_path(self) -> str:
        """Where the compiled program lives in the guest, e.g. ``/workloads/forkstorm``."""
        return f"{GUEST_DIR}/{self.name}"

    def _valid(self) -> str:
        return ", ".join(f"{p.name} {p.bounds()}" for p in self.params.values())

    def resolve(self, overrides: Mapping[str, str | int]) -> dict[str, int]:
        """Fill defaults and check ``overrides`` against the spec, before anything boots.

        Returns every parameter in spec order, e.g. ``{"procs": 50, "touch": 16, ...}``.
        Raises :class:`UsageError` naming the parameter and the bound or the valid names.
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
            if value < spec.min or value > spec.max:
                if value < spec.min:
                    side = f"below its minimum {spec.min}"
                else:
                    side = f"above its maximum {spec.max}"
                raise UsageError(
                    f"parameter {name}={value} is {side} (workload {self.name}: {self._valid()})"
                )
            values[name] = value
        return values

    def argv(self, params: Mapping[str, int]) -> list[str]:
        """The guest command line, e.g. ``["/workloads/forkstorm", "--procs", "1000", ...]``.

        ``params`` is checked with :meth:`resolve` again (missing ones take their defaults),
        so an argv built here never carries a value the program would reject.
        """
        argv = [self.guest_path]
        for name, value in self.resolve(params).items():
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
    """Read one ``NAME.toml``; a malformed spec or a missing ``NAME.c`` is a lab bug (exit 1)."""
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
        params[pname] = p
    return WorkloadSpec(
        name=name,
        description=text(data, "description", ""),
        unit=text(data, "unit", ""),
        stresses=text(data, "stresses", ""),
        self_check=text(data, "self_check", ""),
        params=params,
        source=source,
    )


def _discover(directory: Path = WORKLOADS_DIR) -> dict[str, WorkloadSpec]:
    """Every spec in ``directory``, by name; re-read each call (a few small files)."""
    return {path.stem: _load_spec(path) for path in sorted(directory.glob("*.toml"))}


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
    """Name -> C source, for the initramfs builder (each becomes ``/workloads/NAME``)."""
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
