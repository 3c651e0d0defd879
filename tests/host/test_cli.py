"""The CLI: --help everywhere, hostile input gives one error line and exit 2, nothing boots."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lab.cli import app
from lab.results import list_runs

runner = CliRunner()


@pytest.mark.parametrize(
    "cmd",
    [[], ["up"], ["status"], ["exec"], ["down"], ["trace"], ["runs"], ["show"], ["dashboard"],
     ["study"], ["profile"]],
)
def test_help(cmd: list[str]) -> None:
    res = runner.invoke(app, [*cmd, "--help"])
    assert res.exit_code == 0, res.output
    assert "Usage" in res.output


@pytest.mark.parametrize(
    "args,message",
    [
        (["up", "--config", "nohigh"], "highpte, lowpte"),
        (["up", "--mem", "8X"], "malformed memory size"),
        (["up", "--mem", "100G"], "out of range"),
        (["up", "--cpus", "0"], "out of range"),
        (["up", "--accel", "xen"], "unknown accelerator"),
        (["up", "--append", "a b"], "cannot be passed safely"),
        (["trace", "--workload", "nope"], "unknown workload"),
        (["trace", "--param", "procs=-5"], "procs"),
        (["trace", "--param", "procs"], "NAME=VALUE"),
        (["trace", "--param", "bogus=1"], "bogus"),
        (["trace", "--config", "highpte,nope"], "unknown configuration"),
        (["trace", "--repeat", "0"], "--repeat"),
        (["trace", "--backend", "perf"], "unknown backend"),
        (["show", "no-such-run"], "no run"),
        (["dashboard", "no-such-run"], "no run"),
    ],
)
def test_bad_input_exits_2_with_one_line(args: list[str], message: str) -> None:
    res = runner.invoke(app, args)
    assert res.exit_code == 2, res.output
    assert "error:" in res.output and message in res.output
    assert not list(list_runs()), "nothing may be recorded for rejected input"


def test_commands_are_listed_in_their_order() -> None:
    """The command modules are split by job; `lab --help` lists their commands as before."""
    res = runner.invoke(app, ["--help"], env={"COLUMNS": "200"})
    listed = re.findall(r"^│ (\w+) {2,}", res.output, re.M)
    mine = ["trace", "runs", "show", "dashboard", "study", "profile"]
    assert [n for n in listed if n in mine] == mine


def test_exec_and_down_without_guest() -> None:
    res = runner.invoke(app, ["exec", "--", "true"])
    assert res.exit_code == 1 and "lab up" in res.output
    res = runner.invoke(app, ["down"])
    assert res.exit_code == 0 and "no guest running" in res.output
    res = runner.invoke(app, ["status", "--json"])
    assert res.exit_code == 0 and json.loads(res.output) == {"running": False}


def test_dry_run_prints_the_exact_command_and_boots_nothing(tmp_path: Path) -> None:
    res = runner.invoke(app, ["up", "--dry-run", "--icount", "--config", "lowpte"])
    assert res.exit_code == 0, res.output
    argv_line = res.output.strip().splitlines()[-1]
    assert argv_line.startswith("qemu-system-x86_64 ")
    assert "-icount shift=0,sleep=off" in argv_line and "-smp 1" in argv_line
    assert "userpte=nohigh" in argv_line and "-cpu Nehalem" in argv_line
    assert "image:" in res.output and "kernel:" in res.output
    assert not (tmp_path / "state" / "vm" / "state.json").exists()
