"""Applying a kernel patch series, strictly: no fuzz, and failures named hunk by hunk.

Each build patches its own hard-linked copy of the pristine tree; GNU patch writes a new file
and renames it, so the pristine inode is never written.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from ..errors import LabError
from ..hostcheck import require_tool
from .build_inputs import PatchInput

__all__ = ["PatchError", "apply_patches"]


class PatchError(LabError):
    """A patch of the series does not apply; names the patch and its failed hunks."""

    def __init__(self, patch: str, detail: str, log: Path | None = None) -> None:
        where = f" (log: {log})" if log else ""
        super().__init__(f"patch {patch} does not apply: {detail}{where}")
        self.patch = patch
        self.detail = detail


def _failed_hunks(output: str) -> str:
    """``hunk #2 FAILED at 466 in mm/memory.c; ...`` from GNU patch's output, or its last line."""
    current, failed = "?", []
    for line in output.splitlines():
        if m := re.match(r"(?:patching|checking) file '?([^']+?)'?$", line):
            current = m.group(1)
        elif m := re.match(r"Hunk #(\d+) FAILED at (\d+)", line):
            failed.append(f"hunk #{m.group(1)} FAILED at line {m.group(2)} of {current}")
        elif "can't find file to patch" in line or "No file to patch" in line:
            failed.append(f"a file it patches does not exist ({line.strip()})")
        elif "malformed patch" in line or "Only garbage" in line:
            failed.append(line.strip().removeprefix("patch: **** "))
        elif "Reversed (or previously applied)" in line:
            failed.append(f"{current} looks already patched (reversed or previously applied)")
    if failed:
        return "; ".join(failed)
    return (output.strip().splitlines() or ["patch failed with no output"])[-1]


def apply_patches(tree: Path, patches: list[PatchInput] | tuple[PatchInput, ...],
                  log: Path | None = None) -> None:
    """Apply the series in order with ``patch -p1 -F0``: no fuzz, so a patch that only applies
    'roughly' is caught here rather than in a mis-built kernel. Output goes to ``log``."""
    require_tool("patch", "patch")
    for p in patches:
        proc = subprocess.run(
            ["patch", "-p1", "-F0", "--forward", "--batch", "--no-backup-if-mismatch",
             "--reject-file=-", "-d", str(tree), "-i", str(p.path)],
            capture_output=True, text=True, check=False,
        )
        if log:
            with log.open("a") as f:
                out = (proc.stdout + proc.stderr).rstrip("\n")
                f.write(f"$ patch -p1 -F0 < {p.name}\n{out}\n")
        if proc.returncode != 0:
            raise PatchError(p.name, _failed_hunks(proc.stdout + proc.stderr), log)
