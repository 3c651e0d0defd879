"""The Docker image's recipe without docker: its content key, and its packages against setup.sh."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _key(root: Path) -> str:
    out = subprocess.run([str(root / "vm/docker/image.sh"), "--key"], capture_output=True,
                         text=True, check=True).stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{16}", out), out
    return out


def test_key_follows_the_files_that_go_into_the_image(tmp_path: Path) -> None:
    for name in ("Dockerfile", ".dockerignore", "pyproject.toml", "README.md"):
        shutil.copy(REPO / name, tmp_path / name)
    for tree in ("lab", "vm"):
        shutil.copytree(REPO / tree, tmp_path / tree,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    key = _key(tmp_path)
    assert key == _key(REPO)
    (tmp_path / "lab/__pycache__").mkdir(exist_ok=True)
    (tmp_path / "lab/__pycache__/x.pyc").write_bytes(b"\0")  # .dockerignore leaves these out
    (tmp_path / "tests").mkdir()  # not in the build context either
    (tmp_path / "tests/t.py").write_text("x = 1\n")
    assert _key(tmp_path) == key
    with (tmp_path / "vm/guest/init").open("a") as f:
        f.write("\n")
    assert _key(tmp_path) != key


def test_dockerignore_admits_what_the_key_covers() -> None:
    admitted = {line[1:] for line in (REPO / ".dockerignore").read_text().splitlines()
                if line.startswith("!")}
    assert admitted == {"pyproject.toml", "README.md", "lab", "vm"}


def _packages(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9][a-z0-9.+-]+", text)}


def test_image_has_the_packages_setup_installs() -> None:
    setup = (REPO / "setup.sh").read_text()
    listed = re.search(r"PACKAGES=\((.*?)\n\)", setup, re.S)
    assert listed
    wanted = _packages(re.sub(r"#.*", "", listed.group(1)))
    # the image brings its own Python (stage 1), renders no dashboards in a browser, and is
    # not itself a docker host
    wanted -= {"python3", "python3-venv", "python3-dev", "chromium", "debootstrap"}
    stage2 = (REPO / "Dockerfile").read_text().split("FROM debian:bookworm\n", 1)[1]
    assert wanted <= _packages(stage2), wanted - _packages(stage2)
    assert "dpkg --add-architecture i386" in stage2
