"""A profile diff a reader can trust: which rows are more than a few ticks of chance.

The tick data is shaped like `lab profile` on forkstorm ×3 (~830 kernel ticks per side, a few
symbols with tens of ticks, a long tail of ones and twos), drawn with a fixed seed.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from lab.profile import annotate, diff_profiles, kernel_ticks
from lab.profile_run import repeat_side
from lab.stats import holm, split_test

#: forkstorm's kernel profile, roughly: the share of kernel ticks per symbol on highpte
SHARES = {"copy_page_range": 0.16, "zap_pte_range": 0.12, "__kmap_local_pfn_prot": 0.06,
          "kunmap_local_indexed": 0.05, "clear_page_rep": 0.08, "do_wp_page": 0.05,
          "unmap_page_range": 0.04, "release_pages": 0.04, "__handle_mm_fault": 0.04,
          "page_remove_rmap": 0.03, "_raw_spin_lock": 0.03, "filemap_map_pages": 0.03}


def draw(total: int, shares: dict[str, float], seed: int, tail: int = 120) -> dict[str, int]:
    """Multinomial ticks: the named symbols, then a tail of ``tail`` rarely hit ones."""
    rng = np.random.default_rng(seed)
    rest = 1 - sum(shares.values())
    names = [*shares, *(f"tail_{i:03d}" for i in range(tail))]
    p = [*shares.values(), *([rest / tail] * tail)]
    counts = rng.multinomial(total, p)
    out = {n: int(c) for n, c in zip(names, counts, strict=True) if c}
    out["default_idle"] = 4000   # idle: reported apart, never in the rows
    return out


def profile(a: dict[str, int], b: dict[str, int]) -> dict:
    return {"configs": ["highpte", "ukva"], "rows": diff_profiles(a, b),
            "totals": {"highpte": {"ticks": kernel_ticks(a)}, "ukva": {"ticks": kernel_ticks(b)}}}


def test_split_test_is_scipys_binomial_with_the_totals_split() -> None:
    assert split_test(40, 20, 1000, 1000) == pytest.approx(
        sps.binomtest(20, 60, 0.5).pvalue)
    assert split_test(30, 30, 1000, 3000) == pytest.approx(sps.binomtest(30, 60, 0.75).pvalue)
    assert math.isnan(split_test(0, 0, 10, 10)) and math.isnan(split_test(3, 1, 0, 10))


def test_holm_known_values_and_order() -> None:
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    adj = holm([0.5, float("nan"), 0.001])
    assert adj[0] == pytest.approx(0.5) and math.isnan(adj[1]) and adj[2] == pytest.approx(0.002)


def test_a_big_looking_difference_on_830_ticks_is_not_significant() -> None:
    # the same kernel twice: every difference is sampling noise
    a, b = draw(830, SHARES, seed=1), draw(830, SHARES, seed=2)
    prof = annotate(profile(a, b))
    assert prof["ticks"] == {"highpte": 830, "ukva": 830}
    top, bottom = prof["rows"][0], prof["rows"][-1]
    assert top["delta"] >= 8 and bottom["delta"] <= -8     # looks like a finding...
    assert not any(r["significant"] for r in prof["rows"])  # ...and is not
    assert top["p_holm"] > 0.05 and "Holm" in prof["method"]
    assert "default_idle" not in {r["symbol"] for r in prof["rows"]}


def test_a_real_difference_is_marked_and_only_it() -> None:
    # ukva: kmap/kunmap of PTE pages mostly gone, a new pmd_alloc_ukva; the rest unchanged
    shares = dict(SHARES, __kmap_local_pfn_prot=0.01, kunmap_local_indexed=0.01)
    shares["pmd_alloc_ukva"] = 0.02
    shares["do_wp_page"] = 0.035   # a moderate change: needs enough ticks to be seen
    a, b = draw(10_000, SHARES, seed=3), draw(10_000, shares, seed=4)
    prof = annotate(profile(a, b))
    marked = {r["symbol"] for r in prof["rows"] if r["significant"]}
    assert marked == {"__kmap_local_pfn_prot", "kunmap_local_indexed", "pmd_alloc_ukva",
                      "do_wp_page"}
    # the same change on ~830 ticks: too few ticks to tell the moderate one from chance
    small = annotate(profile(draw(830, SHARES, seed=7), draw(830, shares, seed=8)))
    row = next(r for r in small["rows"] if r["symbol"] == "do_wp_page")
    assert row["delta"] <= -15 and row["p"] < 0.05 and not row["significant"]  # Holm


def test_old_profiles_without_totals_are_annotated_from_their_rows() -> None:
    prof = annotate({"configs": ["a", "b"], "rows": [
        {"symbol": "f", "a_ticks": 60, "b_ticks": 20, "delta": -40},
        {"symbol": "g", "a_ticks": 1, "b_ticks": 3, "delta": 2}]})
    assert prof["ticks"] == {"a": 61, "b": 23}
    assert [r["symbol"] for r in prof["rows"]] == ["g", "f"]


def test_repeat_until_the_target_tick_count() -> None:
    state = {"ticks": 0}

    def once() -> int:
        state["ticks"] += 300
        return 1000

    def read() -> dict[str, int]:
        return {"copy_page_range": state["ticks"], "default_idle": 99_999}

    ticks, ops, runs = repeat_side(once, read, repeat=3, target_ticks=1000)
    assert (runs, ops, kernel_ticks(ticks)) == (4, 4000, 1200)
    state["ticks"] = 0
    assert repeat_side(once, read, repeat=2)[2] == 2
    state["ticks"] = 0
    assert repeat_side(once, read, repeat=1, target_ticks=10**9, max_repeat=5)[2] == 5
