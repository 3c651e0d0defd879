"""Check that the host has what the lab needs, naming the Debian package when it does not.

Nothing is installed at run time: the README's set-up installs packages; this only reports.
"""

from __future__ import annotations

import shutil
import subprocess
from functools import cache

from .errors import LabError, MissingPackageError

__all__ = ["require_tool", "require_i386_arch", "require_gcc_m32"]


def require_tool(tool: str, package: str) -> str:
    """Return the tool's path or raise MissingPackageError naming ``package``."""
    path = shutil.which(tool)
    if not path:
        raise MissingPackageError(tool, package)
    return path


@cache
def require_i386_arch() -> None:
    """Debian's i386 packages must be installable (``dpkg --add-architecture i386``)."""
    require_tool("dpkg", "dpkg")
    out = subprocess.run(
        ["dpkg", "--print-foreign-architectures"], capture_output=True, text=True, check=False
    ).stdout.split()
    if "i386" not in out:
        raise LabError(
            "dpkg has no i386 architecture: run 'dpkg --add-architecture i386 && apt-get update' "
            "(the README's set-up does this)"
        )


@cache
def require_gcc_m32() -> str:
    """gcc must build static 32-bit programs (package gcc-multilib)."""
    gcc = require_tool("gcc", "gcc")
    probe = subprocess.run(
        [gcc, "-m32", "-static", "-x", "c", "-", "-o", "/dev/null"],
        input="int main(void){return 0;}\n", capture_output=True, text=True, check=False,
    )
    if probe.returncode != 0:
        raise MissingPackageError("gcc -m32 -static", "gcc-multilib")
    return gcc
