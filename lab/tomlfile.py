"""The one TOML loader: every file the lab reads as TOML goes through :func:`load_toml`.

Why one: configurations, kernel descriptions, plans, probe sets, workload specs and the sim
model each used to have their own loader with its own message. Now a file that is missing,
unreadable or not TOML always says ``cannot read <what> <path>: <reason>``, and the error class
says whose fault it is (UsageError, exit 2, for files the user names or edits; LabError, exit 1,
for files shipped inside the lab).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import tomli_w

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


def dump_toml(data: dict[str, Any], header: str = "") -> str:
    """``data`` as TOML text that tomllib reads back equal, after ``header`` as comment lines:
    for files the lab writes itself (the fitted sim model). tomllib only reads; tomli-w is
    its writing counterpart."""
    comments = "".join(f"# {line}".rstrip() + "\n" for line in header.splitlines())
    return comments + tomli_w.dumps(data)
