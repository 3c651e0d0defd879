"""Host tests for source drift (`lab kernel check`): a series that no longer applies to the
served source is named with its patch and hunk, the pristine tree is never touched, and the
version each kernel was last built from is read back from the build cache."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from lab.kernels import drift
from lab.kernels import source_build as sb


def _tree(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "greeting.txt").write_text("line one\nhello\nline three\n")
    return path


def _patch(old: str, new: str) -> str:
    return (f"--- a/greeting.txt\n+++ b/greeting.txt\n@@ -1,3 +1,3 @@\n line one\n-{old}\n"
            f"+{new}\n line three\n")


def _series(tmp: Path, *texts: str) -> list[sb.PatchInput]:
    out = []
    for i, t in enumerate(texts, 1):
        p = tmp / f"{i:04d}-p{i}.patch"
        p.write_text(t)
        out.append(sb.PatchInput(p.name, p, "x"))
    return out


def test_a_series_that_applies_leaves_the_pristine_tree_alone(tmp_path: Path) -> None:
    pristine = _tree(tmp_path / "src" / "linux")
    ok, detail = drift.series_applies(pristine, _series(tmp_path, _patch("hello", "hullo")))
    assert ok, detail
    assert "1 patches apply" in detail
    assert (pristine / "greeting.txt").read_text() == "line one\nhello\nline three\n"
    assert sorted(p.name for p in pristine.parent.iterdir()) == ["linux"], "temp copy left"


def test_a_drifted_series_names_patch_and_hunk(tmp_path: Path) -> None:
    """The second patch was written against text the served source no longer has."""
    pristine = _tree(tmp_path / "src" / "linux")
    series = _series(tmp_path, _patch("hello", "hullo"), _patch("goodbye", "bye"))
    ok, detail = drift.series_applies(pristine, series)
    assert not ok
    assert "0002-p2.patch does not apply: hunk #1 FAILED" in detail
    assert (pristine / "greeting.txt").read_text() == "line one\nhello\nline three\n"


def test_no_series_always_applies(tmp_path: Path) -> None:
    assert drift.series_applies(tmp_path, []) == (True, "no patches")


def test_last_built_version_is_the_newest_build_of_that_kernel(tmp_path: Path) -> None:
    def entry(name: str, kernel: str, version: str, age: float) -> None:
        d = tmp_path / name
        d.mkdir()
        (d / "meta.json").write_text(json.dumps({"kernel": kernel, "package_version": version}))
        stamp = time.time() - age
        os.utime(d / "meta.json", (stamp, stamp))

    entry("a", "ukva", "6.1.176-1", 1000)
    entry("b", "ukva", "6.1.192-3", 10)
    entry("c", "built-pae", "6.1.180-1", 1)
    (tmp_path / "torn").mkdir()
    (tmp_path / "torn" / "meta.json").write_text("{not json")
    assert drift.last_built_version("ukva", tmp_path) == "6.1.192-3"
    assert drift.last_built_version("built-pae", tmp_path) == "6.1.180-1"
    assert drift.last_built_version("ukva-debug", tmp_path) is None


def test_cli_exits_1_and_names_the_hunk_when_a_series_fails(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    from lab.cli import app
    from lab.commands import kernel as kcmd

    rows = [
        {"name": "ukva", "served_version": "6.1.199-1", "last_built_version": "6.1.192-3",
         "applies": False, "detail": "patch ukva/0003-x.patch does not apply: hunk #2 FAILED"},
        {"name": "debian-686-pae", "served_version": "6.1.199-1", "last_built_version": None,
         "applies": None, "detail": "Debian's image: no patch series"},
    ]
    monkeypatch.setattr(kcmd, "check_kernels", lambda names, try_patches=True: rows)
    res = CliRunner().invoke(app, ["kernel", "check"])
    assert res.exit_code == 1
    assert "FAILS" in res.output and "0003-x.patch" in res.output and "hunk #2" in res.output
    assert "debian-686-pae" in res.output, "stock kernels are still listed"
