"""lab stacks / lab latency rows and their renderings, the dashboard's flame graphs, and the
commands' hostile arguments — from stacks and a histogram captured in the real guest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import pytest
from typer.testing import CliRunner

from lab.callsites import (
    bucket_label,
    call_sites,
    latency_rows,
    render_latency,
    render_stacks,
    stack_rows,
)
from lab.cli import app
from lab.dashboard.ebpf_figs import flame_tree, latency_section, stacks_section
from lab.tracers.ebpf_maps import folded_stacks, kallsyms_table, log2_hist

PROBE = "__kmap_local_pfn_prot"


@pytest.fixture
def records(data_dir: Path) -> list[dict[str, Any]]:
    """Two configurations' records: the captured highpte run (100 forks), and the same with
    the COW copies taken away (what a patch removing them would record)."""
    d = data_dir / "ebpf"
    table = kallsyms_table((d / "kallsyms.txt").read_text())
    folded = folded_stacks((d / "before-stack_counts.txt").read_text(),
                           (d / "after-stack_counts.txt").read_text(),
                           (d / "after-stacks.txt").read_text(), table)
    hist = log2_hist((d / "before-lat_hist.txt").read_text(),
                     (d / "after-lat_hist.txt").read_text())
    base = {"workload": "forkstorm", "unit": "fork", "units": 100, "timing": "icount",
            "latency": {"function": "handle_mm_fault", "unit": "ns", "lost": 0,
                        "log2_hist": {str(k): v for k, v in hist.items()}}}
    no_cow = {s: n for s, n in folded.items() if "wp_page_copy" not in s}
    return [{**base, "config": "highpte", "stacks": {"probe": PROBE, "lost": 0,
                                                      "folded": folded}},
            {**base, "config": "nocow", "stacks": {"probe": PROBE, "lost": 0,
                                                    "folded": no_cow}}]


def test_call_sites_drop_the_probe_and_keep_the_innermost_callers() -> None:
    folded = {"a;b;c;__kmap_local_pfn_prot": 3, "x;b;c;__kmap_local_pfn_prot": 2, "p": 1}
    assert call_sites(folded, PROBE, 2) == {"c < b": 5, "p": 1}


def test_stack_rows_from_guest_stacks(records: list[dict[str, Any]]) -> None:
    rows = {r["config"]: r for r in stack_rows(records, depth=2)}
    hp = rows["highpte"]
    assert hp["hits"] == sum(records[0]["stacks"]["folded"].values())
    assert abs(sum(s["share"] for s in hp["sites"]) - 1) < 1e-9
    top = [s["site"] for s in hp["sites"][:4]]
    assert "copy_user_highpage.constprop.0 < wp_page_copy" in top  # COW copies, 2 kmaps each
    assert "handle_mm_fault < do_user_addr_fault" in top            # PTE pages mapped by faults
    assert rows["nocow"]["per_unit"] < hp["per_unit"]


def test_render_stacks_fits_80_columns(records: list[dict[str, Any]]) -> None:
    text = render_stacks(stack_rows(records, depth=8), top=5)
    assert max(map(len, text.splitlines())) < 80
    assert text.startswith("highpte: __kmap_local_pfn_prot, ")
    assert "more call sites" in text
    # a long configuration name and hits lost (CI once lost 97 of 13,839 stacks) still fit:
    # the counts move to a line of their own
    rows = stack_rows(records, depth=8)
    rows[0].update(config="built-highpte", lost=97)
    lines = render_stacks(rows, top=5).splitlines()
    assert max(map(len, lines)) < 80
    assert lines[0] == f"built-highpte: __kmap_local_pfn_prot, {rows[0]['per_unit']:.2f} per fork"
    assert lines[1].startswith("  (") and lines[1].endswith(", 97 lost)")


def test_latency_rows_and_render(records: list[dict[str, Any]]) -> None:
    (row, _) = latency_rows(records)
    assert row["calls"] == sum(records[0]["latency"]["log2_hist"].values())
    text = render_latency([row])
    assert max(map(len, text.splitlines())) < 80 and "icount guest time" in text
    assert bucket_label(0) == "0ns-2ns" and bucket_label(10) == "1.02us-2.05us"


def test_flame_tree_sums_to_its_root() -> None:
    tree = flame_tree({"a;b": 2, "a;c": 1, "d": 4}, "cfg")
    assert tree == {"cfg": 7, "cfg;a": 3, "cfg;a;b": 2, "cfg;a;c": 1, "cfg;d": 4}


def test_dashboard_draws_a_flame_graph_per_config_and_a_differential(
        records: list[dict[str, Any]]) -> None:
    figs: list[go.Figure] = []

    def plot(fig: go.Figure) -> str:
        figs.append(fig)
        return "<div></div>"

    assert stacks_section(records, "", plot)
    assert len(figs) == 3 and all(isinstance(f.data[0], go.Icicle) for f in figs)
    diff = figs[2].data[0]
    colors = dict(zip(diff.ids, diff.marker.colors, strict=True))
    cow = [k for k in colors if k.endswith("wp_page_copy")]
    assert cow and all(colors[k] < 0 for k in cow)   # nocow removed them: blue
    figs.clear()
    assert latency_section(records, "", plot)
    assert "deterministic" in figs[0].layout.title.text


@pytest.mark.parametrize("args, message", [
    (["stacks", "--probe", "kmap_atomic"], "is inline and cannot be probed"),
    (["stacks", "--probe", "a;b"], "is not a kernel symbol name"),
    (["stacks", "--depth", "0"], "--depth must be 1 to 8"),
    (["latency", "--function", "../x"], "is not a kernel symbol name"),
    (["stacks", "--run", "nope"], "nope"),
])
def test_hostile_arguments_exit_nonzero_with_one_line(args: list[str], message: str) -> None:
    res = CliRunner().invoke(app, args)
    assert res.exit_code != 0
    assert message in res.output and res.output.count("error:") == 1
