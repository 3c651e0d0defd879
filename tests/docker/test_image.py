"""The Docker image (issue 14): built once per content key, and the lab runs in it off the
network (``--network none``): a sim trace, and a real-guest trace of the stock highpte kernel
that the image carries in its cache.

Needs a docker daemon (`.ci/run` starts one with vm/docker/dockerd.sh). Without one these tests
fail with a message saying so; UKVA_LAB_NO_DOCKER=1 skips them on a machine that has no docker,
but never under CI.
"""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from lab.results import list_runs

REPO = Path(__file__).resolve().parents[2]
IMAGE_SH = REPO / "vm" / "docker" / "image.sh"

# whichever test runs first builds the image when it is cold (base, apt, pip, the stock kernel:
# minutes); the docker commands themselves carry shorter timeouts
pytestmark = pytest.mark.timeout(3600)


def _require_docker() -> None:
    try:
        ok = subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    if ok:
        return
    if os.environ.get("UKVA_LAB_NO_DOCKER") == "1" and not os.environ.get("CI"):
        pytest.skip("UKVA_LAB_NO_DOCKER=1: the docker tests are skipped on this machine")
    pytest.fail("no docker daemon answers `docker info`: start one (vm/docker/dockerd.sh start "
                "as root), or set UKVA_LAB_NO_DOCKER=1 to skip these tests outside CI",
                pytrace=False)


@pytest.fixture(scope="module")
def image() -> str:
    """The image's content-key tag, built by vm/docker/image.sh unless already there."""
    _require_docker()
    proc = subprocess.run([str(IMAGE_SH)], capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout.strip().splitlines()[-1]


def _lab(image: str, results: Path, *args: str,
         timeout: float = 600) -> subprocess.CompletedProcess:
    results.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "-v", f"{results}:/lab/results",
         image, "lab", *args],
        capture_output=True, text=True, timeout=timeout,
    )


def test_image_is_keyed_by_content_and_not_rebuilt(image: str) -> None:
    key = subprocess.run([str(IMAGE_SH), "--key"], capture_output=True, text=True, check=True)
    assert image == f"ukva-lab:{key.stdout.strip()}"
    t0 = time.monotonic()
    again = subprocess.run([str(IMAGE_SH)], capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert "up to date (no build)" in again.stdout and time.monotonic() - t0 < 60
    labels = subprocess.run(["docker", "image", "inspect", "-f", "{{json .Config.Labels}}",
                             image], capture_output=True, text=True, check=True)
    assert json.loads(labels.stdout)["org.ukva-lab.key"] == key.stdout.strip()


_FILTER_PROBE = """
import sys
from lab.bundle.reading import tarfile
link = tarfile.TarInfo("escape")
link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
try:
    tarfile.data_filter(link, "/tmp")
    refused = "accepted"
except tarfile.FilterError as e:
    refused = type(e).__name__
print(sys.base_prefix, sys.version_info[:3] >= (3, 11, 4), tarfile.__name__, refused)
"""


def test_the_image_runs_debians_python_with_the_extraction_filters(image: str) -> None:
    """The image's Python is bookworm's own (no interpreter built or downloaded); where it is
    older than 3.11.4 the lab reads bundles with backports.tarfile, whose data filter refuses
    a link out of the destination as the standard library's does."""
    proc = subprocess.run(["docker", "run", "--rm", "--network", "none", image, "python3", "-c",
                           _FILTER_PROBE], capture_output=True, text=True, timeout=120)
    prefix, new_enough, module, refused = proc.stdout.split()
    assert prefix == "/usr", proc.stdout + proc.stderr
    assert module == ("tarfile" if new_enough == "True" else "backports.tarfile")
    assert refused == "AbsoluteLinkError", proc.stdout


def test_bundle_export_and_import_in_container(image: str, tmp_path: Path) -> None:
    """A run made in the container is exported and imported again there (extraction with the
    data filter, on the image's Python), and a file that is not a bundle is refused in one
    line."""
    results = tmp_path / "results"
    res = _lab(image, results, "trace", "--workload", "forkstorm", "--backend", "sim",
               "--param", "procs=20", "--json")
    assert res.returncode == 0, res.stderr
    run_id = json.loads(res.stdout)["run_id"]
    exported = _lab(image, results, "bundle", "export", run_id,
                    "-o", "/lab/results/b.labbundle.tar.gz")
    assert exported.returncode == 0, exported.stderr
    (results / run_id).rename(tmp_path / "moved-away")
    imported = _lab(image, results, "bundle", "import", "/lab/results/b.labbundle.tar.gz")
    assert imported.returncode == 0, imported.stderr
    assert [r.run_id for r in list_runs()] == [run_id]
    hostile = results / "evil.labbundle.tar.gz"
    with tarfile.open(hostile, "w:gz") as tar:
        link = tarfile.TarInfo("runs/x/escape")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    refused = _lab(image, results, "bundle", "import", "/lab/results/evil.labbundle.tar.gz")
    assert refused.returncode != 0 and len(refused.stderr.strip().splitlines()) == 1, refused


def test_sim_trace_in_container(image: str, tmp_path: Path) -> None:
    results = tmp_path / "results"
    res = _lab(image, results, "trace", "--workload", "forkstorm", "--backend", "sim",
               "--repeat", "2", "--param", "procs=50", "--json")
    assert res.returncode == 0, res.stderr
    (run,) = list(list_runs())  # the container wrote into the mounted results volume
    assert json.loads(res.stdout)["run_id"] == run.run_id
    m = run.manifest()
    assert m["backend"] == "sim" and m["simulated"] is True and m["status"] == "complete"
    assert {r["config"] for r in run.records()} == {"highpte", "lowpte"}


@pytest.mark.guest
def test_real_guest_trace_in_container(image: str, tmp_path: Path) -> None:
    # the stock highpte kernel and the guest image are in the image's cache: no network needed
    results = tmp_path / "results"
    res = _lab(image, results, "trace", "--workload", "forkstorm", "--config", "highpte",
               "--repeat", "1", "--param", "procs=50", "--param", "touch=0", "--icount",
               "--backend", "ftrace", "--json", timeout=900)
    assert res.returncode == 0, res.stderr
    (run,) = list(list_runs())
    m = run.manifest()
    assert m["status"] == "complete" and m["backend"] == "ftrace" and m["simulated"] is False
    c = m["configs"]["highpte"]
    assert c["kernel"]["package"].startswith("linux-image-6.1") and c["accel"] == "tcg"
    (rec,) = run.records()
    assert rec["units"] == 50 and rec["counts"]["__kmap_local_pfn_prot"] > 0
