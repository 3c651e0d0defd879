"""How `just test` shares the guest and docker tests between two pytest-xdist workers
(tests/conftest.py): groups stay whole, go out longest first, and the cost table names
groups that exist."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
TIERS = ("tests/guest", "tests/docker")


def _conftest() -> Any:
    """tests/conftest.py as a module (tests/ is not a package: load the file itself)."""
    spec = importlib.util.spec_from_file_location("_tests_conftest", ROOT / "tests" / "conftest.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CONFTEST = _conftest()
GROUP_SECONDS: dict[str, int] = CONFTEST.GROUP_SECONDS


def test_workers_group_as_the_controller_asked() -> None:
    """An xdist worker's options say dist "no" and loadgroup True (xdist rewrites them): it must
    group, or every test is scheduled alone and a module's guest is booted on both workers
    (the first CI run of this scheme did exactly that). Without xdist nothing is grouped."""
    def config(**option: object) -> Any:
        return SimpleNamespace(option=SimpleNamespace(**option))

    assert CONFTEST.grouped(config(dist="no", loadgroup=True))         # a worker
    assert CONFTEST.grouped(config(dist="loadgroup"))                  # --collect-only
    assert not CONFTEST.grouped(config(dist="no", loadgroup=False))    # -n 2, --dist load
    assert not CONFTEST.grouped(config())                              # no xdist at all


def collected() -> list[str]:
    """Node ids in the order the xdist scheduler receives them under `--dist loadgroup`."""
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-n", "2", "--dist",
         "loadgroup", "-p", "no:cacheprovider", *TIERS],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    return [line for line in res.stdout.splitlines() if "::" in line]


def named_groups() -> set[str]:
    """Groups the test files name with `pytest.mark.xdist_group("NAME")`."""
    return {m for tier in TIERS for f in (ROOT / tier).glob("test_*.py")
            for m in re.findall(r'xdist_group\("([^"]+)"\)', f.read_text())}


def test_groups_go_out_longest_first_and_stay_together() -> None:
    ids = collected()
    assert len(ids) > 40 and any(i.startswith("tests/docker/") for i in ids)
    # the 5-minute ukva-debug stress starts first, not last at the tail of one worker
    assert ids[0].startswith("tests/guest/test_ukva.py::TestDebugKernelStress::")
    # a module without groups of its own is one group: its tests are contiguous
    modules = [i.split("::")[0] for i in ids]
    sources = {m: (ROOT / m).read_text() for m in set(modules)}
    for m in {m for m in modules if "xdist_group(" not in sources[m]}:
        at = [k for k, x in enumerate(modules) if x == m]
        assert at == list(range(at[0], at[0] + len(at))), f"{m} split across groups"
    # the cost table names groups that exist: a module or a name a test file gives
    module_names = {Path(m).stem for m in modules}
    assert set(GROUP_SECONDS) <= module_names | named_groups(), (
        set(GROUP_SECONDS) - module_names - named_groups())
