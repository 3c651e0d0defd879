"""`lab show --json` and `lab runs --json` against their published schemas (docs/schema/).

Real output, not a hand-written sample: a sim trace end to end, and a stored run with three
configurations, a gap, taskpile slopes and a single-repeat cell (whose CI does not exist and
must read null, not NaN). If the code and docs/json-schema.md drift apart, this fails.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from test_compare import three_config_run
from typer.testing import CliRunner

from lab.cli import app
from lab.report import SCHEMA_VERSION

SCHEMAS = Path(__file__).parents[2] / "docs" / "schema"
runner = CliRunner()


def schema(name: str) -> jsonschema.protocols.Validator:
    s = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(s)
    return jsonschema.Draft202012Validator(s)


def strict_json(text: str) -> Any:
    """Parse as any JSON reader would: NaN and Infinity are not JSON."""
    def refuse(token: str) -> None:
        raise AssertionError(f"{token} in JSON output")
    return json.loads(text, parse_constant=refuse)


def test_schema_versions_agree_with_the_code() -> None:
    for name in ("show", "runs"):
        text = (SCHEMAS / f"{name}.schema.json").read_text()
        assert f'"schema_version": {{"const": {SCHEMA_VERSION}}}' in text
    doc = (SCHEMAS.parent / "json-schema.md").read_text()
    assert f"**Schema version: {SCHEMA_VERSION}.**" in doc


def test_sim_trace_and_runs_json_validate() -> None:
    res = runner.invoke(app, ["trace", "--backend", "sim", "--repeat", "3",
                              "--config", "highpte,lowpte,ukva", "--param", "procs=100", "--json"])
    assert res.exit_code == 0, res.output
    data = strict_json(res.stdout)
    schema("show").validate(data)
    assert data["schema_version"] == SCHEMA_VERSION
    shown = runner.invoke(app, ["show", data["run_id"], "--json"])
    assert shown.exit_code == 0, shown.output
    assert strict_json(shown.stdout) == data
    listing = runner.invoke(app, ["runs", "--json"])
    assert listing.exit_code == 0, listing.output
    runs = strict_json(listing.stdout)
    schema("runs").validate(runs)
    assert [r["run_id"] for r in runs] == [data["run_id"]]
    assert runs[0]["schema_version"] == SCHEMA_VERSION and runs[0]["records"] == 9


def test_show_json_rows_carry_spread_and_the_baseline_comparison(tmp_path: Path) -> None:
    run = three_config_run(tmp_path)
    res = runner.invoke(app, ["show", run.run_id, "--json"])
    assert res.exit_code == 0, res.output
    data = strict_json(res.stdout)
    schema("show").validate(data)
    assert data["baseline"] is None and "gap" in data and "taskpile_slopes" in data
    faults = {r["config"]: r for r in data["summary"] if r["workload"] == "faultstorm"}
    assert {r["baseline"] for r in faults.values()} == {"hi"}   # the first configuration
    base, lo = faults["hi"]["counters"]["__kmap_local_pfn_prot"], faults["lo"]["counters"][
        "__kmap_local_pfn_prot"]
    assert base["delta_pct"] is None and base["welch_p"] is None
    assert lo["delta_pct"] == pytest.approx(-66.67, abs=0.01) and lo["welch_p"] == 0.0
    assert {"mean", "lo", "hi", "n", "cv", "noisy"} <= set(lo)
    t = faults["ukva"]["guest_ns_per_unit"]
    assert t["delta_pct"] == pytest.approx(-5.16, abs=0.01) and 0 < t["welch_p"] < 0.001
    single = next(r for r in data["summary"] if r["workload"] == "taskpile" and r["n"] == 1)
    cell = single["counters"]["__kmap_local_pfn_prot"]
    assert cell["lo"] is None and cell["hi"] is None and cell["cv"] is None   # not NaN


def test_the_schema_is_not_vacuous(tmp_path: Path) -> None:
    run = three_config_run(tmp_path)
    data = strict_json(runner.invoke(app, ["show", run.run_id, "--json"]).stdout)
    v = schema("show")
    broken = json.loads(json.dumps(data))
    del broken["summary"][0]["counters"]["__kmap_local_pfn_prot"]["n"]
    assert not v.is_valid(broken)
    broken = json.loads(json.dumps(data))
    broken["schema_version"] = SCHEMA_VERSION + 1
    assert not v.is_valid(broken)
    broken = json.loads(json.dumps(data))
    broken["summary"][1]["counters"]["__kmap_local_pfn_prot"]["delta_pct"] = "-66%"
    assert not v.is_valid(broken)
    assert not schema("runs").is_valid([{"run_id": "x"}])
