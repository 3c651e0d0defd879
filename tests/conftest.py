"""Shared fixtures: every test gets its own results and VM-state directories; and how the
tests that boot guests share two pytest-xdist workers.

The download/build cache ($XDG_CACHE_HOME/ukva-lab) is shared on purpose: it is keyed by
content, and re-downloading the kernel per test would only test the network. Two workers
filling one entry at once are serialised by the lab's own cache lock (`lab.paths.cache_lock`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"

#: Seconds each xdist group took in a warm CI run on the 2-core machine with both workers busy
#: (`just test`, 2026-12-03, `--durations`). Under `--dist loadgroup` a group (a module's tests
#: unless a test names its own `xdist_group`) runs on one worker, so tests that share a booted
#: guest or a module's run stay together; the groups are handed out longest first, so the two
#: workers end together instead of one idling while the other runs the 6-minute ukva-debug
#: stress last. Groups not listed count as a minute; a wrong figure costs time, not results.
GROUP_SECONDS = {
    "ukva-debug": 420, "test_ukva": 300, "test_costmodel": 300, "test_study_dask": 290,
    "study-resume": 210, "ukva-guest": 200, "test_study_ebpf": 170, "study-profile": 160,
    "test_image": 130, "test_workloads_guest": 110, "test_lifecycle": 100,
    "test_ebpf_guest": 100, "ebpf-stacks-ukva": 85, "ebpf-stacks": 70, "test_trace_guest": 60,
    "ukva-nopti": 55, "test_orphan": 50, "ebpf-latency": 50, "test_smp_tcg": 40,
}


def xdist_group(item: pytest.Item) -> str:
    """The test's `xdist_group` mark, else its module's name."""
    mark = item.get_closest_marker("xdist_group")
    if mark is not None:
        return str(mark.kwargs.get("name", mark.args[0] if mark.args else ""))
    return item.nodeid.split("::", 1)[0].rsplit("/", 1)[-1].removesuffix(".py")


def grouped(config: pytest.Config) -> bool:
    """Whether this process collects for `--dist loadgroup`. The xdist workers, which do the
    collecting, see `dist` set to "no" and `loadgroup` set to True; a process that collects
    without workers (`--collect-only`) still sees `dist`."""
    option = config.option
    return bool(getattr(option, "loadgroup", False)) or getattr(option, "dist", "no") == "loadgroup"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under `--dist loadgroup`: mark every test with its group (before xdist reads the marks)
    and order the groups longest first, a group's tests in their file order. Otherwise the
    tests run in file order (vm/patches/ukva/tests/mutate.sh relies on it with -x)."""
    if not grouped(config):
        return
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(xdist_group(item)))
    items.sort(key=lambda item: -GROUP_SECONDS.get(xdist_group(item), 60))


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UKVA_LAB_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("UKVA_LAB_STATE", str(tmp_path / "state"))


@pytest.fixture
def data_dir() -> Path:
    return DATA
