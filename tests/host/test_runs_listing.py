"""`lab runs` in an 80-column terminal: every column keeps its words (issue: it used to cut
every column but the run id to two letters, `fo…`, `hi…`)."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from typer.testing import CliRunner

from lab import ui
from lab.cli import app

runner = CliRunner()


def test_runs_fit_80_columns_without_truncating_words(monkeypatch: pytest.MonkeyPatch) -> None:
    for configs in ("highpte,lowpte,ukva", "highpte,lowpte"):
        res = runner.invoke(app, ["trace", "--backend", "sim", "--repeat", "1", "--config",
                                  configs, "--workload", "forkstorm", "--param", "procs=50"])
        assert res.exit_code == 0, res.output
    buf = io.StringIO()
    monkeypatch.setattr(ui, "out_console", Console(file=buf, width=80, highlight=False,
                                                   color_system=None))
    res = runner.invoke(app, ["runs"])
    assert res.exit_code == 0, res.output
    text = buf.getvalue()
    lines = text.splitlines()
    assert lines and all(len(line) <= 80 for line in lines), text
    assert "…" not in text, text
    words = text.split()
    for word in ("forkstorm", "highpte,", "lowpte,", "lowpte", "ukva", "sim", "modelled"):
        assert word in words, f"{word!r} cut or missing:\n{text}"
    ids = [w for w in words if w.count("-") >= 3 and w[:8].isdigit()]
    assert len(ids) == 2, text
