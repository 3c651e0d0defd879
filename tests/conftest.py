"""Shared fixtures: every test gets its own results and VM-state directories.

The download/build cache ($XDG_CACHE_HOME/ukva-lab) is shared on purpose: it is keyed by
content, and re-downloading the kernel per test would only test the network.
"""

from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UKVA_LAB_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("UKVA_LAB_STATE", str(tmp_path / "state"))


@pytest.fixture
def data_dir() -> Path:
    return DATA
