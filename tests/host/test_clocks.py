"""Time in each clock (icount, modelled cycles per machine model) through the one report layer:
the figures equal what a hand computation from the records gives, `lab show` and its JSON
carry them, the dashboard opens with them, the README block shows them side by side, and a
run without cost counts reports exactly what it did before.

The records: a real cost-plugin run and records DERIVED from it (tests/host/clock_data.py
says how); every expected number below is computed here from those records, by hand.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest
from clock_data import GAP, derived_records, derived_run, real_records
from scipy import stats as sps
from typer.testing import CliRunner

from lab.cli import app
from lab.clocks import clocks
from lab.costmodel import MODELS_DIR, list_models
from lab.dashboard import render_dashboard
from lab.errors import UsageError
from lab.notebook import report_doc
from lab.render import render
from lab.report import build_report, jsonable

runner = CliRunner()
SCHEMA = Path(__file__).parents[2] / "docs" / "schema" / "show.schema.json"


def hand_cycles(model: str, rec: dict[str, Any]) -> float:
    """Modelled cycles per unit written out from the model file's prices (docs/cost-model.md,
    "Pricing"), independently of lab.costmodel.modelled_cycles."""
    cost = {k: v["value"] for k, v in
            tomllib.loads((MODELS_DIR / f"{model}.toml").read_text())["cost"].items()}
    c = rec["costmodel"]["counts"]
    l1 = sum(c[f"{t}_l1_miss_{m}"] for t in ("itlb", "dtlb") for m in ("user", "kernel"))
    walks = sum(c[f"{t}_walk_{m}"] for t in ("itlb", "dtlb") for m in ("user", "kernel"))
    total = ((c["insn_user"] + c["insn_kernel"]) * cost["insn"]
             + (c["rep_insns_user"] + c["rep_insns_kernel"]) * cost["rep_startup"]
             + (c["rep_bytes_user"] + c["rep_bytes_kernel"]) / cost["rep_bytes_per_cycle"]
             + c["invlpg"] * cost["invlpg"] + c["cr3_writes"] * cost["cr3_write"]
             + c["cr4_writes"] * cost["cr4_write"]
             + (l1 - walks) * cost["stlb_hit"] + walks * cost["walk"]
             + c["loads"] * cost["load"] + c["stores"] * cost["store"])
    return total / rec["units"]


def per_config(records: list[dict[str, Any]], workload: str, model: str | None
               ) -> dict[str, np.ndarray]:
    out: dict[str, list[float]] = {}
    for r in records:
        if r["workload"] == workload:
            out.setdefault(r["config"], []).append(
                hand_cycles(model, r) if model else r["guest_elapsed_ns"] / r["units"])
    return {k: np.array(v) for k, v in out.items()}


@pytest.mark.parametrize("model", ["skylake", "p4-2003", None])
def test_gap_recovered_in_each_clock_is_the_hand_computation(model: str | None) -> None:
    records = derived_records()
    rep = build_report(records, gap=GAP)
    for workload in ("faultstorm", "forkstorm"):
        v = per_config(records, workload, model)
        b, f, c = v[GAP[0]].mean(), v[GAP[1]].mean(), v["ukva"].mean()
        row = next(r for r in rep["gap"]["rows"] if r["workload"] == workload)
        share = row["clocks"][model or "icount"]
        assert share["mean"] == pytest.approx((b - c) / (b - f), rel=1e-12)
        assert share["gap"] == pytest.approx(b - f, rel=1e-12)
        assert (share["base"], share["floor"], share["candidate"]) == pytest.approx((b, f, c))
        assert share["gap_pct"] == pytest.approx(100 * (b - f) / f, rel=1e-12)
        p = sps.ttest_ind(v[GAP[1]], v[GAP[0]], equal_var=False).pvalue
        assert share["gap_p"] == pytest.approx(p, rel=1e-9)
        assert share["lo"] <= share["mean"] <= share["hi"] and share["hi"] > share["lo"]
    # icount in the clocks is guest time in the figures: the same share, the same CI
    if model is None:
        assert row["clocks"]["icount"] == row["figures"]["guest time"]


def test_clock_cells_are_summarised_and_compared_like_guest_time() -> None:
    records = real_records()
    rep = build_report(records)
    assert [c["name"] for c in rep["clocks"]] == ["icount", "skylake", "p4-2003"]
    assert rep["clocks"][1] | {"description": ""} == {
        "name": "skylake", "unit": "cycles", "label": "skylake cycles", "model": "skylake",
        "description": "", "clock_ghz": 3.0, "counted_with": ["skylake"]}
    rows = {r["config"]: r for r in rep["summary"]}
    assert rows["highpte"]["clocks"]["icount"] == rows["highpte"]["guest_ns_per_unit"]
    v = per_config(records, "faultstorm", "skylake")
    hi, lo = rows["highpte"]["clocks"]["skylake"], rows["lowpte"]["clocks"]["skylake"]
    assert hi["mean"] == pytest.approx(v["highpte"].mean(), rel=1e-12) and hi["n"] == 3
    assert hi["cv"] == pytest.approx(v["highpte"].std(ddof=1) / v["highpte"].mean())
    assert hi["delta_pct"] is None and hi["delta_lo_pct"] is None   # the baseline's own row
    assert lo["delta_pct"] == pytest.approx(
        100 * (v["lowpte"].mean() - v["highpte"].mean()) / v["highpte"].mean(), rel=1e-12)
    t = sps.ttest_ind(v["lowpte"], v["highpte"], equal_var=False)
    ci = t.confidence_interval()
    assert lo["welch_p"] == pytest.approx(t.pvalue, rel=1e-9)
    assert (lo["delta_lo_pct"], lo["delta_hi_pct"]) == pytest.approx(
        (100 * ci.low / v["highpte"].mean(), 100 * ci.high / v["highpte"].mean()), rel=1e-9)
    assert lo["delta_lo_pct"] < lo["delta_pct"] < lo["delta_hi_pct"] < 0


def test_cost_models_choose_the_clocks_and_record_counts_decides_the_counts(
        monkeypatch: pytest.MonkeyPatch) -> None:
    records = real_records()
    only = build_report(records, cost_models=["p4-2003"])
    assert [c["name"] for c in only["clocks"]] == ["icount", "p4-2003"]
    assert set(only["summary"][0]["clocks"]) == {"icount", "p4-2003"}
    with pytest.raises(UsageError, match="unknown cost model"):
        build_report(records, cost_models=["k6"])
    # which counts price a model is record_counts' call alone: a model it gives none for
    # is no clock at all
    import lab.clocks as lc

    real = lc.record_counts
    monkeypatch.setattr(lc, "record_counts",
                        lambda m, r: None if m.name == "p4-2003" else real(m, r))
    assert [c.name for c in clocks(records)] == ["icount", "skylake"]


def test_without_cost_counts_the_report_is_what_it_was() -> None:
    plain = [{k: v for k, v in r.items() if k != "costmodel"} for r in derived_records()]
    rep = build_report(plain, gap=GAP)
    assert "clocks" not in rep
    assert all("clocks" not in r for r in rep["summary"] + rep["gap"]["rows"])
    assert clocks(plain) == [] and set(list_models()) == {"skylake", "p4-2003"}


def test_show_json_carries_the_clocks_and_validates(tmp_path: Path) -> None:
    run = derived_run(tmp_path / "results")
    res = runner.invoke(app, ["show", run.run_id, "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text())).validate(data)
    assert [c["label"] for c in data["clocks"]] == ["icount ns", "skylake cycles",
                                                    "p4-2003 cycles"]
    row = data["summary"][0]
    assert set(row["clocks"]) == {"icount", "skylake", "p4-2003"}
    assert {"mean", "lo", "hi", "n", "cv", "noisy", "delta_pct", "delta_lo_pct",
            "delta_hi_pct", "welch_p"} <= set(row["clocks"]["skylake"])
    gap = data["gap"]["rows"][0]
    assert set(gap["clocks"]) == {"icount", "skylake", "p4-2003"}
    assert {"gap_pct", "gap_p"} <= set(gap["clocks"]["skylake"]) | set(
        gap["figures"]["highmem kmaps"])
    assert "costmodel" not in data   # the old separate table is gone: one report layer
    one = json.loads(runner.invoke(app, ["show", run.run_id, "--json", "--cost-model",
                                         "p4-2003"]).stdout)
    assert [c["name"] for c in one["clocks"]] == ["icount", "p4-2003"]
    assert set(one["gap"]["rows"][0]["clocks"]) == {"icount", "p4-2003"}


def test_show_prints_cycles_beside_guest_time_and_the_gap_in_each_clock(tmp_path: Path) -> None:
    run = derived_run(tmp_path / "results")
    res = runner.invoke(app, ["show", run.run_id], env={"COLUMNS": "80"})
    assert res.exit_code == 0, res.output
    out = res.output
    rep = build_report(run.records(), gap=GAP)
    assert "skylake cycles" in out and "p4-2003 cycles" in out and "guest µs" in out
    assert "gap in each clock" in out
    table = out[out.index("gap in each clock"):]
    for name in ("icount", "skylake", "p4-2003"):
        share = rep["gap"]["rows"][0]["clocks"][name]
        cost, got = re.escape(f"{share['gap_pct']:+.1f}%"), re.escape(f"{share['mean']:.0%} [")
        assert re.search(rf"{name}\s+{cost} p=\S+\s+{got}", table), name
    assert "leaves out caches" in out
    assert max(len(line) for line in out.splitlines()) <= 80
    plain = derived_run(tmp_path / "results", costs=False)
    bare = runner.invoke(app, ["show", plain.run_id], env={"COLUMNS": "80"}).output
    assert "cycles" not in bare and "gap in each clock" not in bare
    warned = runner.invoke(app, ["show", plain.run_id, "--cost-model", "skylake"],
                           env={"COLUMNS": "80"})
    assert warned.exit_code == 0 and "no cost-plugin counts" in warned.output


def test_dashboard_opens_with_the_answer_in_each_clock(tmp_path: Path) -> None:
    run = derived_run(tmp_path / "results")
    page = render_dashboard([run], tmp_path / "d.html").read_text(encoding="utf-8")
    answer = page.index('id="answer"')
    assert answer < page.index("<h2>Provenance</h2>") < page.index('id="gap"')
    figs = [json.loads(m) for m in re.findall(
        r'Plotly\.newPlot\(\s*"[^"]+",\s*(\[.*?\]),\s*\{"template"', page, re.S)]
    layouts = re.findall(r'"title":\{"text":"([^"]*)"', page)
    share, delta = figs[0], figs[1]
    names = ["icount (guest ns)", "skylake (modelled cycles)", "p4-2003 (modelled cycles)"]
    assert [t["name"] for t in share] == names
    assert [t["name"] for t in delta if t["xaxis"] == "x"] == names
    assert any("gap recovered" in t and "icount" in t and "skylake" in t and "p4-2003" in t
               for t in layouts)
    assert any(t.startswith("\\u0394 % per unit from the baseline") for t in layouts)
    rep = build_report(run.records(), gap=GAP)
    row = next(r for r in rep["gap"]["rows"] if r["workload"] == "faultstorm")
    for trace, name in zip(share, ("icount", "skylake", "p4-2003"), strict=True):
        i = trace["x"].index("faultstorm")
        assert trace["y"][i] == pytest.approx(100 * row["clocks"][name]["mean"])
        assert trace["error_y"]["array"][i] == pytest.approx(
            100 * (row["clocks"][name]["hi"] - row["clocks"][name]["mean"]))
    ukva = next(r for r in rep["summary"] if r["config"] == "ukva"
                and r["workload"] == "faultstorm")
    sky = next(t for t in delta if t["name"].startswith("skylake") and t["xaxis"] == "x2")
    assert sky["y"][sky["x"].index("faultstorm")] == pytest.approx(
        ukva["clocks"]["skylake"]["delta_pct"])
    cell = ukva["clocks"]["skylake"]
    assert (f"<td>ukva vs built-highpte</td><td class='num'>"
            f"{ukva['clocks']['icount']['delta_pct']:+.1f}%") in page   # Δ in numbers too
    assert f"{cell['delta_pct']:+.1f}% [{cell['delta_lo_pct']:+.1f}, " in page
    assert "skylake modelled cycles" in page    # the headline table's row
    assert "leaves out caches" in page


def test_dashboard_answer_renders_in_a_browser_without_overlaps(tmp_path: Path) -> None:
    from test_dashboard_browser import PROBE, console_messages, run_chromium

    run = derived_run(tmp_path / "results")
    static = render_dashboard([run], tmp_path / "d.html").read_text(encoding="utf-8")
    figures = static.count("Plotly.newPlot")
    probed = tmp_path / "probed.html"
    probed.write_text(static.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    res = run_chromium(tmp_path, "--window-size=1024,1600", "--virtual-time-budget=15000",
                       "--dump-dom", probed.as_uri())
    assert res.returncode == 0, res.stderr[-2000:]
    assert console_messages(res.stderr) == []
    probe = json.loads(re.search(r'<pre id="probe">(.*?)</pre>', res.stdout, re.S).group(1)
                       .replace("&quot;", '"').replace("&amp;", "&"))
    assert probe["plots"] == figures and probe["overlaps"] == []


def test_readme_block_shows_both_clocks_side_by_side_and_what_the_model_leaves_out(
        tmp_path: Path) -> None:
    run = derived_run(tmp_path / "results")
    doc = jsonable(report_doc([run]))
    block = render(doc, "markdown", brief=True)
    head = next(line for line in block.splitlines() if line.startswith("| workload"))
    assert head == ("| workload | C | cost: icount | cost: skylake | cost: p4-2003 | "
                    "recovered: icount | recovered: skylake | recovered: p4-2003 |")
    fault = next(line for line in block.splitlines() if line.startswith("| faultstorm | ukva"))
    row = next(r for r in doc["report"]["gap"]["rows"] if r["workload"] == "faultstorm")
    cells = [c.strip() for c in fault.strip("|").split("|")]
    for i, name in enumerate(("icount", "skylake", "p4-2003")):
        assert cells[2 + i].startswith(f"{row['clocks'][name]['gap_pct']:+.1f}%")
        assert cells[5 + i].startswith(f"{row['clocks'][name]['mean']:.0%} [")
    for words in ("caches", "branch prediction", "out-of-order overlap", "page-walk caches"):
        assert words in block
    text = render(doc, "text")
    assert all(len(line) < 80 and line.isascii() for line in text.splitlines())
    plain = jsonable(report_doc([derived_run(tmp_path / "results", costs=False)]))
    bare = render(plain, "markdown", brief=True)
    assert "cost: icount" not in bare and "leaves out" not in bare
    assert bare.startswith("## Share of the built-highpte → built-lowpte gap recovered")
