"""Run directories: durable appends, torn lines, id lookup."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.errors import LabError, UsageError
from lab.results import list_runs, new_run, open_run


def test_append_and_read_back(tmp_path: Path) -> None:
    run = new_run("forkstorm", {"backend": "sim"}, tmp_path)
    run.append_record({"repeat": 0, "units": 10})
    run.append_record({"repeat": 1, "units": 10})
    assert [r["repeat"] for r in run.records()] == [0, 1]
    assert run.manifest()["backend"] == "sim" and run.manifest()["schema"] == 1
    run.update_manifest(status="complete")
    assert run.manifest()["status"] == "complete"


def test_torn_last_line_is_ignored_but_corruption_inside_is_not(tmp_path: Path) -> None:
    run = new_run("forkstorm", {}, tmp_path)
    run.append_record({"repeat": 0})
    with run.records_path.open("a") as f:
        f.write('{"repeat": 1, "uni')  # a crash mid-write
    assert len(run.records()) == 1
    run.records_path.write_text('{"repeat": 0}\nnot json\n{"repeat": 2}\n')
    with pytest.raises(LabError, match="line 2"):
        run.records()


def test_open_run_by_prefix_and_errors(tmp_path: Path) -> None:
    a = new_run("forkstorm", {}, tmp_path)
    assert open_run(a.run_id, tmp_path).path == a.path
    assert open_run(str(a.path)).path == a.path
    with pytest.raises(UsageError, match="no run"):
        open_run("nope", tmp_path)
    new_run("forkstorm", {}, tmp_path)
    with pytest.raises(UsageError, match="ambiguous"):
        open_run(a.run_id[:8], tmp_path)
    assert len(list(list_runs(tmp_path))) == 2
    newest = max(list_runs(tmp_path), key=lambda r: r.manifest_path.stat().st_mtime)
    assert open_run("latest", tmp_path).path == newest.path


def test_latest_without_runs(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no runs"):
        open_run("latest", tmp_path)
