"""Where the lab keeps things: the repo's recipes, the download/build cache, VM state, results.

Nothing machine-specific is hard-coded: the cache follows XDG_CACHE_HOME, state follows
XDG_STATE_HOME, and results default to ./results (override with UKVA_LAB_RESULTS).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "repo_root",
    "vm_dir",
    "cache_dir",
    "cache_lock",
    "state_dir",
    "ensure_state_dir",
    "private_dir",
    "results_dir",
    "dashboards_dir",
]


def repo_root() -> Path:
    """The checkout the lab runs from (the package is installed editable, see README)."""
    return Path(__file__).resolve().parent.parent


def vm_dir() -> Path:
    """The guest recipe: configurations, kernels, init and agent sources."""
    return repo_root() / "vm"


def _xdg(var: str, default: str) -> Path:
    base = os.environ.get(var) or str(Path.home() / default)
    return Path(base) / "ukva-lab"


def cache_dir() -> Path:
    """Downloads, built kernels and guest images, keyed by content: $XDG_CACHE_HOME/ukva-lab."""
    return _xdg("XDG_CACHE_HOME", ".cache")


@contextmanager
def cache_lock(name: str) -> Iterator[None]:
    """Serialise filling one cache entry across lab processes (two Dask workers on one
    machine missing the same kernel or image fill it once; the other waits, then finds it)."""
    path = cache_dir() / "locks" / f"{name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def state_dir() -> Path:
    """The running `lab up` guest's sockets, pid and console log: $XDG_STATE_HOME/ukva-lab."""
    override = os.environ.get("UKVA_LAB_STATE")
    return Path(override) if override else _xdg("XDG_STATE_HOME", ".local/state")


def private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) and make it 0700, whatever the umask said."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def ensure_state_dir() -> Path:
    """state_dir(), created private to the user (0700): it holds the guest's control sockets."""
    return private_dir(state_dir())


def results_dir() -> Path:
    """Recorded runs: $UKVA_LAB_RESULTS or ./results."""
    return Path(os.environ.get("UKVA_LAB_RESULTS") or "results").resolve()


def dashboards_dir() -> Path:
    """Rendered dashboards default to the repo's dashboards/ folder."""
    return repo_root() / "dashboards"
