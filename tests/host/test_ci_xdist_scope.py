"""`just test` runs the guest and docker tests on two pytest-xdist workers with
`--dist loadscope`: the tests of one module (or one class) must stay on one worker, or a
module-scoped guest or run is booted on both and the suite does its slowest work twice.

Checked on a throw-away suite with the same pytest and xdist: a module fixture counts its
set-ups. (xdist 3.8's `--dist loadgroup` looked like the tool for this but groups nothing on
pytest 9: it renames `item._nodeid`, which pytest 9 no longer reads. This test would have
caught that too.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SUITE = '''
import os, time, pytest
LOG = os.environ["SETUPS"]

@pytest.fixture(scope="module")
def guest():
    with open(LOG, "a") as f:
        f.write(__name__ + " " + os.environ["PYTEST_XDIST_WORKER"] + "\\n")

class TestBoot:
    @pytest.fixture(scope="class")
    def booted(self):
        with open(LOG, "a") as f:
            f.write(__name__ + ".TestBoot " + os.environ["PYTEST_XDIST_WORKER"] + "\\n")

    def test_a(self, booted): time.sleep(0.2)
    def test_b(self, booted): time.sleep(0.2)

def test_1(guest): time.sleep(0.2)
def test_2(guest): time.sleep(0.2)
def test_3(guest): time.sleep(0.2)
'''


def test_loadscope_keeps_a_modules_and_a_classs_tests_on_one_worker(tmp_path: Path) -> None:
    modules = ["test_one", "test_two", "test_three"]
    for name in modules:
        (tmp_path / f"{name}.py").write_text(SUITE)
    log = tmp_path / "setups.txt"
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-n", "2", "--dist", "loadscope",
         "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={"SETUPS": str(log), "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "15 passed" in res.stdout
    setups = log.read_text().split("\n")[:-1]
    scopes = [line.split()[0] for line in setups]
    # each module fixture and each class fixture set up exactly once, whichever worker ran it
    assert sorted(scopes) == sorted(modules + [f"{m}.TestBoot" for m in modules]), setups
    assert {line.split()[1] for line in setups} == {"gw0", "gw1"}, "both workers had work"
