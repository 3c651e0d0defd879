"""The shipped sim model against the committed real bundles (issue 15).

Fit on analysis/sim-fit/ and analysis/sim-mem/, check on analysis/sim-holdout/ (parameter
values the fit never saw): every headline counter and guest time within 10 % where the README
says it holds, the README's table exactly what the bundles give, the shipped model exactly
what a refit gives, and the what-ifs (10,000 tasks, other guest sizes) in under a second,
labelled EXTRAPOLATED. No guest boots here; these tests claim nothing about the guest."""

from __future__ import annotations

import json
import math
import re
import shutil
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from lab.cli import app
from lab.notebook import open_runs
from lab.results import RunDir
from lab.simmodel import default_model_path, load_model
from lab.simmodel.check import check_rows, headline_targets, markdown_table

ROOT = Path(__file__).parents[2]
FIT = ["analysis/sim-fit/", "analysis/sim-mem/"]
HOLDOUT = "analysis/sim-holdout/"
BOUND = 0.10
runner = CliRunner()


@pytest.fixture(scope="module")
def refit(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("model") / "model.toml"
    res = runner.invoke(app, ["sim", "fit", *(str(ROOT / f) for f in FIT), "-o", str(out)])
    assert res.exit_code == 0, res.output
    return load_model(out)


@pytest.fixture(scope="module")
def held_out(refit: dict[str, Any]) -> list[dict[str, Any]]:
    with ExitStack() as stack:
        return check_rows(refit, open_runs(stack, [str(ROOT / HOLDOUT)]))


def same_model_numbers(a: Any, b: Any, path: str = "") -> list[str]:
    """Where two loaded models differ: strings, keys and list lengths exactly, numbers to a
    relative 1e-6. A least-squares fit is the same fit on another CPU only to ~1e-12 (BLAS
    picks its kernels by the CPU's vector units: a fresh CI machine gave 951459.630927456 for
    the committed 951459.630927842); a real change to the data moves a coefficient by far
    more than 1e-6."""
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{path}: keys {sorted(a.keys() ^ b.keys())}"]
        return [d for k in a for d in same_model_numbers(a[k], b[k], f"{path}.{k}")]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} vs {len(b)} items"]
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True))
                for d in same_model_numbers(x, y, f"{path}[{i}]")]
    numbers = (int, float)
    if (isinstance(a, numbers) and isinstance(b, numbers)
            and not isinstance(a, bool) and not isinstance(b, bool)):
        return [] if math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-6) else [f"{path}: {a} vs {b}"]
    return [] if a == b else [f"{path}: {a!r} vs {b!r}"]


def test_model_comparison_tolerates_cpu_rounding_but_not_a_refit() -> None:
    model = {"c": {"coef": [951459.630927842, -0.0], "kernel": "k"}}
    assert not same_model_numbers(model, {"c": {"coef": [951459.630927456, 0.0], "kernel": "k"}})
    assert same_model_numbers(model, {"c": {"coef": [951460.6, -0.0], "kernel": "k"}})
    assert same_model_numbers(model, {"c": {"coef": [951459.630927842, -0.0], "kernel": "j"}})
    assert same_model_numbers(model, {"c": {"coef": [951459.630927842], "kernel": "k"}})


def test_the_shipped_model_is_what_the_committed_bundles_give(refit: dict[str, Any]) -> None:
    shipped = load_model()
    assert not same_model_numbers(shipped["configs"], refit["configs"], "configs")
    assert not same_model_numbers(shipped["mem"], refit["mem"], "mem")
    assert [s["sha256"] for s in shipped["model"]["sources"]] == [
        s["sha256"] for s in refit["model"]["sources"]]
    assert [s["path"] for s in shipped["model"]["sources"]] == FIT
    assert set(shipped["configs"]) == {"highpte", "lowpte", "built-highpte", "built-lowpte",
                                       "ukva"}
    for cfg in shipped["configs"].values():
        assert set(cfg["workloads"]) == {"faultstorm", "forkstorm", "execstorm", "mmapchurn",
                                         "shellmix", "taskpile"}


def test_held_out_points_are_inside_the_fitted_range_and_never_fitted(
        held_out: list[dict[str, Any]], refit: dict[str, Any]) -> None:
    assert held_out and not [r for r in held_out if r["extrapolated"]]
    with ExitStack() as stack:
        fitted = {(r.get("workload"), json.dumps(r.get("params"), sort_keys=True))
                  for run in open_runs(stack, [str(ROOT / f) for f in FIT])
                  for r in run.records()}
    assert not {(r["workload"], json.dumps(r["params"], sort_keys=True))
                for r in held_out} & fitted


def test_every_headline_figure_within_ten_percent_on_held_out_runs(
        held_out: list[dict[str, Any]]) -> None:
    lead = set(headline_targets())
    checked = [r for r in held_out if r["target"] in lead]
    assert {r["workload"] for r in checked} == {"faultstorm", "forkstorm", "execstorm",
                                                "mmapchurn", "shellmix", "taskpile"}
    assert {r["config"] for r in checked} == {"highpte", "lowpte", "built-highpte",
                                              "built-lowpte", "ukva"}
    missed = {(r["workload"], r["config"], r["target"]): r["error"] for r in checked
              if r["error"] is None or abs(r["error"]) > BOUND}
    assert not missed, "\n".join(f"{k}: {v}" for k, v in sorted(missed.items(), key=str))
    guest = [r for r in checked if r["target"] == "guest_ns"]
    assert len(guest) == 30
    # guest time on crng-ready boots: the 15 % exec-cost miss of the older bundles is gone
    assert max(abs(r["error"]) for r in guest) < 0.02


def test_the_readme_table_is_what_the_bundles_give(held_out: list[dict[str, Any]]) -> None:
    text = (ROOT / "README.md").read_text()
    m = re.search(r"<!-- sim-check:begin -->\n(.*?)<!-- sim-check:end -->", text, re.S)
    assert m, "README.md lacks the sim-check block"
    want = markdown_table(load_model(), held_out, HOLDOUT)
    assert m.group(1) == want, ("regenerate with: lab sim check analysis/sim-holdout/ "
                                "--format markdown")


def _timed(argv: list[str]) -> tuple[float, Any]:
    """CPU seconds of the command in this process (imports done), and its result. CPU, not
    wall: on a loaded 2-core host the runs' fsyncs alone have taken 0.4 s of waiting; the
    wall time is asserted loosely below."""
    start, wall = time.process_time(), time.perf_counter()
    res = runner.invoke(app, argv)
    assert time.perf_counter() - wall < 3.0
    return time.process_time() - start, res


def test_ten_thousand_tasks_in_under_a_second_labelled_extrapolated() -> None:
    assert default_model_path().is_file()
    runner.invoke(app, ["--version"])  # imports done: the command's own time below
    took, res = _timed(["trace", "--workload", "taskpile", "--config", "highpte,lowpte",
                        "--backend", "sim", "--param", "tasks=10000", "--json"])
    assert res.exit_code == 0, res.output
    assert took < 1.0, f"{took:.2f} s"
    doc = json.loads(res.stdout)
    rows = {r["config"]: r for r in doc["summary"]}
    assert all(r["simulated"] and any("tasks=10000" in w for w in r["extrapolated"])
               for r in rows.values())
    reached = doc["taskpile_reached"]
    assert set(reached["lowpte"]["stopped_because"]) == {"lowmem_floor"}
    assert min(reached["highpte"]["reached"]) > 3 * max(reached["lowpte"]["reached"])
    took, res = _timed(["trace", "--workload", "forkstorm", "--config", "highpte,lowpte",
                        "--backend", "sim", "--param", "procs=10000"])
    assert res.exit_code == 0 and took < 1.0, f"{took:.2f} s"
    assert "EXTRAPOLATED" in res.output and "SIMULATED" in res.output


def test_lowmem_curves_for_other_guest_sizes() -> None:
    def reached(mem: str) -> tuple[int, list[str]]:
        res = runner.invoke(app, ["trace", "--workload", "taskpile", "--config", "lowpte",
                                  "--backend", "sim", "--repeat", "1", "--mem", mem, "--param",
                                  "tasks=4000", "--param", "span_mib=512", "--json"])
        assert res.exit_code == 0, res.output
        doc = json.loads(res.stdout)
        return (int(doc["taskpile_reached"]["lowpte"]["reached"][0]),
                doc["summary"][0]["extrapolated"])

    (small, why3), (big, why8), (huge, why32) = reached("3G"), reached("8G"), reached("32G")
    # a bigger guest spends more lowmem on its memory map: fewer tasks before the floor
    assert small > big > huge > 0
    assert not any("mem=" in w for w in why3 + why8)
    assert any("mem=32768M outside" in w for w in why32)


def _check(study: str) -> list[dict[str, Any]]:
    with ExitStack() as stack:
        return check_rows(load_model(), open_runs(stack, [str(ROOT / study)]))


def test_the_issues_forkstorm_example_is_now_within_three_percent() -> None:
    """Issue 15's example: the hand-set model gave 101.4 and 39.5 highmem kmaps per fork
    (procs=1000 touch=16) where analysis/highpte-cost/'s guest gave 137.2 and 60.1. That
    study, re-recorded on crng-ready boots (2026-12-03), gives 139.2 and 61.1: one of its three
    runs per configuration had the layout with one more PTE page per fork (README, sim-holdout),
    two more kmaps. Kmaps and guest time within 3 %."""
    rows = {(r["config"], r["target"]): r for r in _check("analysis/highpte-cost/")
            if r["workload"] == "forkstorm"}
    for cfg in ("highpte", "lowpte"):
        for target, bound in (("__kmap_local_pfn_prot", 0.03), ("guest_ns", 0.03)):
            r = rows[(cfg, target)]
            assert abs(r["error"]) < bound, (cfg, target, r["error"])
            assert r["other_kernel"] is None
            assert r["extrapolated"] == ["procs=1000 outside the fitted 300..800"]
    # the study is the issue's example: 137.2 per fork, or 2 more in a run with one more PTE page
    assert 137.0 < rows[("highpte", "__kmap_local_pfn_prot")]["observed"] < 139.5


def test_check_names_runs_of_another_kernel_build(tmp_path: Path) -> None:
    """The held-out runs used the builds the model was fitted on: no row names another
    kernel. The same runs with the ukva bzImage's hash changed in their manifest (as after a
    rebuild of the series): every ukva row names the run's kernel, and only the ukva rows."""
    assert {r["other_kernel"] for r in _check(HOLDOUT)} == {None}
    with ExitStack() as stack:
        (run,) = open_runs(stack, [str(ROOT / HOLDOUT)])
        copy = shutil.copytree(run.path, tmp_path / run.path.name)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["configs"]["ukva"]["kernel"]["bzimage_sha256"] = "0123456789ab" + "0" * 52
    (copy / "manifest.json").write_text(json.dumps(manifest))
    rows = check_rows(load_model(), [RunDir(copy)])
    named = {r["other_kernel"] for r in rows if r["config"] == "ukva"}
    assert named == {"linux-source-6.1 6.1.192-3 (bzImage 0123456789ab)"}
    assert {r["other_kernel"] for r in rows if r["config"] != "ukva"} == {None}
