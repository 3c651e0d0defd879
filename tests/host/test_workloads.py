"""Workload registry, parameter checks, report parsing, and forkstorm built and run on the host."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from lab.errors import LabError, UsageError
from lab.workloads import (
    _discover,
    list_workloads,
    load_workload,
    parse_param_args,
    parse_report,
    workload_sources,
)

CFLAGS = ["-m32", "-static", "-O2", "-Wall", "-Wextra", "-Werror"]


@pytest.fixture(scope="module")
def forkstorm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """forkstorm.c built as the lab builds it (static i386); gcc-multilib is required, no skip."""
    gcc = shutil.which("gcc")
    assert gcc, "gcc not found: install gcc and gcc-multilib (declared requirements)"
    out = tmp_path_factory.mktemp("bin") / "forkstorm"
    src = load_workload("forkstorm").source
    proc = subprocess.run([gcc, *CFLAGS, "-o", str(out), str(src)], capture_output=True, text=True)
    assert proc.returncode == 0, f"gcc -m32 -static failed (gcc-multilib missing?):\n{proc.stderr}"
    header = out.read_bytes()[:20]
    assert header[:4] == b"\x7fELF" and header[4] == 1, "not a 32-bit ELF"
    assert int.from_bytes(header[18:20], "little") == 3, "not i386 (EM_386)"
    return out


def run(binary: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=120)


# --- registry -------------------------------------------------------------------------------


def test_forkstorm_spec_loads() -> None:
    assert "forkstorm" in list_workloads()
    spec = load_workload("forkstorm")
    assert spec.unit == "fork"
    assert spec.stresses and spec.self_check and spec.description
    assert list(spec.params) == ["procs", "touch", "concurrency"]
    procs = spec.params["procs"]
    assert (procs.default, procs.min, procs.max) == (1000, 1, 1_000_000)
    assert (spec.params["touch"].min, spec.params["touch"].max) == (0, 65536)
    assert spec.params["concurrency"].default == 4
    assert spec.source.name == "forkstorm.c" and spec.source.is_file()
    assert workload_sources()["forkstorm"] == spec.source


def test_unknown_workload_lists_valid_ones() -> None:
    with pytest.raises(UsageError, match="forkstorm"):
        load_workload("nosuch")


def test_spec_without_program_is_an_error(tmp_path: Path) -> None:
    shutil.copy(load_workload("forkstorm").source.with_suffix(".toml"), tmp_path / "orphan.toml")
    with pytest.raises(LabError, match=r"no program \(orphan\.c\)"):
        _discover(tmp_path)


def test_spec_default_out_of_bounds_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "w.c").write_text("")
    (tmp_path / "w.toml").write_text(
        'description = "d"\nunit = "op"\nstresses = "s"\nself_check = "c"\n'
        '[params.n]\ndefault = 5\nmin = 1\nmax = 4\nhelp = "h"\n'
    )
    with pytest.raises(LabError, match=r"default 5 is outside 1\.\.4"):
        _discover(tmp_path)


# --- parameters -----------------------------------------------------------------------------


def test_resolve_fills_defaults_and_converts() -> None:
    spec = load_workload("forkstorm")
    assert spec.resolve({}) == {"procs": 1000, "touch": 16, "concurrency": 4}
    assert spec.resolve({"procs": "50", "touch": 0}) == {"procs": 50, "touch": 0, "concurrency": 4}


@pytest.mark.parametrize(
    ("overrides", "needles"),
    [
        ({"procs": -1}, ["procs=-1", "minimum 1"]),
        ({"procs": 0}, ["procs=0", "minimum 1"]),
        ({"procs": "1000001"}, ["procs=1000001", "maximum 1000000"]),
        ({"touch": 65537}, ["touch=65537", "maximum 65536"]),
        ({"concurrency": "0"}, ["concurrency=0", "minimum 1"]),
        ({"bogus": 1}, ["'bogus'", "procs 1..1000000", "touch", "concurrency"]),
        ({"procs": "abc"}, ["procs='abc'", "not an integer"]),
        ({"procs": "1.5"}, ["procs='1.5'", "not an integer"]),
        ({"procs": "1e3"}, ["procs='1e3'", "not an integer"]),
        ({"procs": ""}, ["procs=''", "not an integer"]),
        ({"procs": True}, ["procs=True", "not an integer"]),
    ],
)
def test_resolve_rejects(overrides: dict[str, str | int], needles: list[str]) -> None:
    with pytest.raises(UsageError) as info:
        load_workload("forkstorm").resolve(overrides)
    message = str(info.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message


def test_argv() -> None:
    spec = load_workload("forkstorm")
    assert spec.argv(spec.resolve({"procs": "50"})) == [
        "/workloads/forkstorm",
        "--procs",
        "50",
        "--touch",
        "16",
        "--concurrency",
        "4",
    ]
    assert spec.argv({})[0] == spec.guest_path == "/workloads/forkstorm"
    with pytest.raises(UsageError, match="concurrency"):
        spec.argv({"concurrency": 2000})


def test_parse_param_args() -> None:
    assert parse_param_args(["procs=50", " touch = 8 "]) == {"procs": "50", "touch": "8"}
    assert parse_param_args([]) == {}


@pytest.mark.parametrize("items", [["procs"], ["=5"], ["procs="], ["procs=1", "procs=2"]])
def test_parse_param_args_rejects(items: list[str]) -> None:
    with pytest.raises(UsageError, match="procs|NAME=VALUE"):
        parse_param_args(items)


# --- reports --------------------------------------------------------------------------------

REPORT = (
    '{"workload":"forkstorm","unit":"fork","ops":50,"errors":0,"elapsed_ns":5551547,'
    '"params":{"procs":50,"touch":8,"concurrency":4}}'
)


def test_parse_report_skips_noise_and_takes_the_last() -> None:
    older = REPORT.replace('"ops":50', '"ops":7')
    out = f'{older}\n[    1.23] random: crng init done\n{{not json\n{{"x": 1}}\n{REPORT}\r\n$ \n'
    report = parse_report(out)
    assert report["ops"] == 50 and report["params"]["touch"] == 8


def test_parse_report_without_report() -> None:
    with pytest.raises(LabError, match="no workload report.*last line: boom"):
        parse_report('{"x": 1}\nboom\n')
    with pytest.raises(LabError, match="no output"):
        parse_report("")


def test_parse_report_missing_key() -> None:
    with pytest.raises(LabError, match="'elapsed_ns'"):
        parse_report(REPORT.replace('"elapsed_ns"', '"elapsed"'))


# --- forkstorm itself, run on the host (static i386 binaries execute on x86_64) ----------------


def test_forkstorm_runs_and_checks_itself(forkstorm: Path) -> None:
    spec = load_workload("forkstorm")
    params = spec.resolve({"procs": 50, "touch": 8, "concurrency": 4})
    proc = run(forkstorm, *spec.argv(params)[1:])
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert len(proc.stdout.splitlines()) == 1
    report = parse_report(proc.stdout)
    assert report["workload"] == "forkstorm" and report["unit"] == spec.unit
    assert report["ops"] == 50 and report["errors"] == 0
    assert report["elapsed_ns"] > 0
    assert report["params"] == params


def test_forkstorm_without_touch(forkstorm: Path) -> None:
    report = parse_report(run(forkstorm, "--procs", "3", "--touch", "0").stdout)
    assert (report["ops"], report["errors"]) == (3, 0)


def _hostile() -> list[list[str]]:
    cases = [
        ["--procs"],
        ["--procs", "x"],
        ["--procs", "12abc"],
        ["--bogus", "1"],
        ["foo"],
        ["--procs", "99999999999999999999"],
        ["--procs", ""],
    ]
    for p in load_workload("forkstorm").params.values():  # the C bounds match the spec
        cases += [[f"--{p.name}", str(p.min - 1)], [f"--{p.name}", str(p.max + 1)]]
    return cases


@pytest.mark.parametrize("args", _hostile(), ids=" ".join)
def test_forkstorm_bad_args_exit_2(forkstorm: Path, args: list[str]) -> None:
    proc = run(forkstorm, *args)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.startswith("forkstorm: ")


def test_forkstorm_help(forkstorm: Path) -> None:
    proc = run(forkstorm, "--help")
    assert proc.returncode == 0 and "--procs" in proc.stdout
