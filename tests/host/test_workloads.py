"""Workload registry, parameter checks, report parsing, and forkstorm built and run on the host.

Bounds and defaults are read from the spec (forkstorm.toml), never typed here: the spec is the
one place they live (tests/host/test_workloads_suite.py checks the README documents the same).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from lab.errors import LabError, UsageError
from lab.guest.image import compile_program, workload_program
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
    warnings = compile_program(workload_program("forkstorm"), out, CFLAGS, gcc=gcc)
    assert warnings == "", warnings
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
    assert all(p.min <= p.default <= p.max for p in spec.params.values())
    assert spec.params["touch"].min == 0, "touch=0: fork without a pre-faulted region"
    assert spec.source.name == "forkstorm.c" and spec.source.is_file()
    assert spec.sources == (spec.source,), "one file unless the spec lists 'sources'"
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


SPEC = 'description = "d"\nunit = "op"\nstresses = "s"\nself_check = "c"\n'
PARAM = '[params.n]\ndefault = 1\nmin = 1\nmax = 4\nhelp = "h"\n'


def _workload(tmp_path: Path, name: str, sources: str | None, files: list[str]) -> None:
    for f in files:
        (tmp_path / f).write_text("")
    extra = f"sources = {sources}\n" if sources is not None else ""
    (tmp_path / f"{name}.toml").write_text(extra + SPEC + PARAM)


def test_multi_file_workload(tmp_path: Path) -> None:
    _workload(tmp_path, "w", '["w.c", "w-part.c", "w-io.c"]', ["w.c", "w-part.c", "w-io.c"])
    spec = _discover(tmp_path)["w"]
    assert [s.name for s in spec.sources] == ["w.c", "w-part.c", "w-io.c"]
    assert spec.source == tmp_path / "w.c"


@pytest.mark.parametrize(
    ("sources", "files", "needle"),
    [
        ('["w-part.c", "w.c"]', ["w.c", "w-part.c"], r"must start with w\.c"),
        ('["w.c", "w-part.c"]', ["w.c"], r"'w-part\.c' is missing"),
        ('["w.c", "other.c"]', ["w.c", "other.c"], r"'other\.c' must be named w-PART\.c"),
        ('["w.c", "../w-x.c"]', ["w.c"], r"must be named w-PART\.c"),
        ('["w.c", "w.c"]', ["w.c"], "lists a file twice"),
        ('"w.c"', ["w.c"], "must be a list"),
        (None, ["w.c", "w-part.c"], r"w-part\.c belong to no workload"),
    ],
)
def test_bad_sources_are_errors(tmp_path: Path, sources: str | None, files: list[str],
                                needle: str) -> None:
    _workload(tmp_path, "w", sources, files)
    with pytest.raises(LabError, match=needle):
        _discover(tmp_path)


def test_params_header_is_the_spec_in_c() -> None:
    """workload-params.h: indices in argv order, bounds as long literals, one table row each."""
    spec = load_workload("taskpile")
    text = spec.params_header()
    assert "taskpile.toml" in text and "do not edit" in text
    enum = re.search(r"enum \{(.*?)\};", text, re.S)
    assert enum, text
    names = [n.strip() for n in enum.group(1).split(",") if n.strip()]
    assert names == [f"PARAM_{n.upper()}" for n in spec.params] + ["NR_PARAMS"]
    for name, p in spec.params.items():
        up = name.upper()
        for what, value in (("DEFAULT", p.default), ("MIN", p.min), ("MAX", p.max)):
            assert re.search(rf"^#define PARAM_{up}_{what}\t{value}L$", text, re.M), (name, what)
    rows = re.findall(r'\{ "(\w+)", PARAM_(\w+)_DEFAULT, PARAM_\2_MIN, PARAM_\2_MAX \}', text)
    assert rows == [(n, n.upper()) for n in spec.params]


def test_bounds_must_fit_a_32_bit_long(tmp_path: Path) -> None:
    (tmp_path / "w.c").write_text("")
    (tmp_path / "w.toml").write_text(
        SPEC + '[params.n]\ndefault = 1\nmin = 1\nmax = 2147483648\nhelp = "h"\n'
    )
    with pytest.raises(LabError, match="do not fit the program's long"):
        _discover(tmp_path)


# --- parameters -----------------------------------------------------------------------------


#: forkstorm's parameters as its spec declares them (the bounds below come from here)
P = load_workload("forkstorm").params


def test_resolve_fills_defaults_and_converts() -> None:
    spec = load_workload("forkstorm")
    defaults = {name: p.default for name, p in P.items()}
    assert spec.resolve({}) == defaults
    assert spec.resolve({"procs": "50", "touch": 0}) == {**defaults, "procs": 50, "touch": 0}


@pytest.mark.parametrize(
    ("overrides", "needles"),
    [
        ({"procs": P["procs"].min - 2}, [f"procs={P['procs'].min - 2}",
                                         f"minimum {P['procs'].min}"]),
        ({"procs": P["procs"].min - 1}, [f"procs={P['procs'].min - 1}",
                                         f"minimum {P['procs'].min}"]),
        ({"procs": str(P["procs"].max + 1)}, [f"procs={P['procs'].max + 1}",
                                              f"maximum {P['procs'].max}"]),
        ({"touch": P["touch"].max + 1}, [f"touch={P['touch'].max + 1}",
                                         f"maximum {P['touch'].max}"]),
        ({"concurrency": str(P["concurrency"].min - 1)},
         [f"concurrency={P['concurrency'].min - 1}", f"minimum {P['concurrency'].min}"]),
        ({"bogus": 1}, ["'bogus'", f"procs {P['procs'].bounds()}", "touch", "concurrency"]),
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
        str(P["touch"].default),
        "--concurrency",
        str(P["concurrency"].default),
    ]
    assert spec.argv({})[0] == spec.guest_path == "/workloads/forkstorm"
    with pytest.raises(UsageError, match="concurrency"):
        spec.argv({"concurrency": P["concurrency"].max + 1})


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
