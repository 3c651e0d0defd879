"""The one TOML loader: every file the lab reads as TOML goes through :func:`load_toml`.

Why one: configurations, kernel descriptions, plans, probe sets, workload specs and the sim
model each used to have their own loader with its own message. Now a file that is missing,
unreadable or not TOML always says ``cannot read <what> <path>: <reason>``, and the error class
says whose fault it is (UsageError, exit 2, for files the user names or edits; LabError, exit 1,
for files shipped inside the lab).
"""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path
from typing import Any

from .errors import LabError, UsageError

__all__ = ["load_toml", "dump_toml"]


def load_toml(path: Path, what: str, error: type[LabError] = UsageError) -> dict[str, Any]:
    """Parse ``path``; raise ``error("cannot read <what> <path>: <reason>")`` when it cannot."""
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except OSError as e:
        raise error(f"cannot read {what} {path}: {e.strerror or e}") from e
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise error(f"cannot read {what} {path}: not valid TOML: {e}") from e


def _key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() else json.dumps(k)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)  # a JSON string is a TOML basic string
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_key(str(k))} = {_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def dump_toml(data: dict[str, Any], header: str = "") -> str:
    """``data`` as TOML text (tomllib reads it back equal), for files the lab writes itself
    (the fitted sim model). Why here: tomllib only reads, and one small writer beside the one
    loader beats a dependency. Dicts become tables, except dicts inside lists and dicts whose
    values are all scalars (written as inline tables); a list of dicts
    is an array of tables."""
    out = [f"# {line}".rstrip() for line in header.splitlines()]

    def table(d: dict[str, Any], path: list[str], array: bool = False) -> None:
        scalars = {k: v for k, v in d.items() if not _is_table(v)}
        if path:
            name = ".".join(_key(p) for p in path)
            out.extend(["", f"[[{name}]]" if array else f"[{name}]"])
        out.extend(f"{_key(str(k))} = {_value(v)}" for k, v in scalars.items())
        for k, v in d.items():
            if isinstance(v, dict) and _is_table(v):
                table(v, [*path, str(k)])
            elif isinstance(v, list) and _is_table(v):
                for item in v:
                    table(item, [*path, str(k)], array=True)

    table(data, [])
    return "\n".join(out).lstrip("\n") + "\n"


def _is_table(v: Any) -> bool:
    """A dict with a dict or list-of-dicts inside, or a non-empty list of dicts: written as
    (array) tables; a flat dict is written inline."""
    if isinstance(v, list):
        return bool(v) and all(isinstance(x, dict) for x in v)
    return isinstance(v, dict) and (not v or any(isinstance(x, dict) or _is_table(x)
                                                 for x in v.values()))
