"""Host tests for lab.stats: CIs, Welch against scipy, noise, grouping and refusal to mix."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from lab.errors import UsageError
from lab.stats import (
    bootstrap_ci,
    cv,
    guest_ns_per_unit,
    is_noisy,
    meminfo_change,
    per_unit,
    summarize,
    welch,
)


def rec(config="highpte", counts=None, units=100, absent=None, timing="icount", backend="tracefs",
        ns=35_000_000, repeat=0, params=None, simulated=False):
    return {
        "schema": 1, "run_id": "r1", "config": config, "workload": "forkstorm",
        "params": params or {"procs": units}, "repeat": repeat, "backend": backend,
        "simulated": simulated, "timing": timing, "unit": "fork", "units": units,
        "counts": counts if counts is not None else {"__pte_alloc": 670 + repeat},
        "absent": absent or {}, "meminfo_before": {"PageTables": 100, "LowFree": 5000},
        "meminfo_after": {"PageTables": 104, "LowFree": 4900 - repeat}, "vmstat_delta": {},
        "report": {}, "guest_elapsed_ns": ns + repeat * 1000, "host": {}, "recorded_at": "",
    }


def test_per_unit_divides_by_units_and_refuses_absent():
    recs = [rec(counts={"a": 200}, units=100), rec(counts={"a": 330}, units=110)]
    assert per_unit(recs, "a").tolist() == [2.0, 3.0]
    assert per_unit(recs, "missing") is None
    partly = [rec(counts={"a": 1}), rec(counts={}, absent={"a": "no symbol"})]
    assert per_unit(partly, "a") is None


def test_bootstrap_ci_contains_the_mean_and_narrows_with_n():
    rng = np.random.default_rng(3)
    small, big = rng.normal(190, 6, 5), rng.normal(190, 6, 200)
    m, lo, hi = bootstrap_ci(small)
    assert m == pytest.approx(small.mean())
    assert lo < m < hi
    m2, lo2, hi2 = bootstrap_ci(big)
    assert lo2 < m2 < hi2
    assert hi2 - lo2 < hi - lo
    assert lo2 < 190 < hi2          # the true mean, with a 200-sample CI of ~+-0.8


def test_bootstrap_ci_is_reproducible_and_degenerate_cases():
    x = [1.0, 4.0, 2.0, 8.0]
    assert bootstrap_ci(x, seed=5) == bootstrap_ci(x, seed=5)
    m, lo, hi = bootstrap_ci([42.0])
    assert m == 42.0 and math.isnan(lo) and math.isnan(hi)
    assert bootstrap_ci([7.0, 7.0, 7.0]) == (7.0, 7.0, 7.0)
    assert all(math.isnan(v) for v in bootstrap_ci([]))


def test_welch_matches_scipy_on_a_known_example():
    a = [190.1, 188.4, 192.3, 189.9, 191.0]
    b = [37.2, 38.9, 36.5, 38.0]
    rel, p = welch(a, b)
    expected = sps.ttest_ind(a, b, equal_var=False)
    assert p == pytest.approx(expected.pvalue, rel=1e-12)
    assert rel == pytest.approx((np.mean(b) - np.mean(a)) / np.mean(a))
    assert rel == pytest.approx(-0.80220, abs=1e-5)
    # a textbook case with overlapping samples: not significant
    rel2, p2 = welch([1, 2, 3, 4, 5], [2, 3, 4, 5, 6])
    assert rel2 == pytest.approx(1 / 3)
    assert p2 == pytest.approx(sps.ttest_ind([1, 2, 3, 4, 5], [2, 3, 4, 5, 6],
                                             equal_var=False).pvalue)
    assert 0.3 < p2 < 0.4


def test_welch_exact_and_small_samples():
    assert welch([5, 5, 5], [5, 5]) == (0.0, 1.0)
    assert welch([5, 5, 5], [6, 6]) == (pytest.approx(0.2), 0.0)
    rel, p = welch([5], [6, 7])
    assert rel == pytest.approx(0.3) and math.isnan(p)


def test_cv_and_is_noisy():
    assert cv([10, 10, 10]) == 0.0
    assert cv([9, 10, 11]) == pytest.approx(0.1)
    assert math.isnan(cv([3]))
    assert is_noisy([9, 10, 11]) and not is_noisy([99, 100, 101])
    assert not is_noisy([5])


def test_summarize_groups_by_config_and_reports_per_unit():
    recs = [rec("highpte", repeat=i) for i in range(4)]
    recs += [rec("lowpte", repeat=i) for i in range(3)]
    rows = summarize(recs)
    assert [r["config"] for r in rows] == ["highpte", "lowpte"]
    hi = rows[0]
    assert hi["n"] == 4 and hi["unit"] == "fork"
    c = hi["counters"]["__pte_alloc"]
    assert c["mean"] == pytest.approx(6.715) and c["n"] == 4
    assert c["lo"] <= c["mean"] <= c["hi"]
    assert hi["guest_ns_per_unit"]["mean"] == pytest.approx(350_015)
    assert hi["meminfo_change_kb"]["PageTables"]["mean"] == 4
    assert hi["meminfo_change_kb"]["LowFree"]["mean"] == pytest.approx(-101.5)
    assert guest_ns_per_unit(recs[:1]).tolist() == [350_000.0]
    assert meminfo_change(recs[:1], "HighFree") is None


def test_summarize_marks_absent_counters_as_absent():
    recs = [rec("lowpte", counts={"__pte_alloc": 5}, absent={"pmd_alloc_ukva": "no symbol"})]
    row = summarize(recs)[0]
    assert row["counters"]["pmd_alloc_ukva"] == {"absent": "no symbol"}
    assert "mean" not in row["counters"]["pmd_alloc_ukva"]


def test_summarize_refuses_mixed_timing_and_backends():
    with pytest.raises(UsageError, match="timing") as e:
        summarize([rec(timing="icount"), rec(timing="wallclock")])
    assert "allow_mixed" in str(e.value)
    with pytest.raises(UsageError, match="backend"):
        summarize([rec(backend="tracefs"), rec(backend="sim", simulated=True)])
    rows = summarize([rec(timing="icount"), rec(timing="wallclock")], allow_mixed=True)
    assert rows[0]["timing"] == ["icount", "wallclock"]


def test_summarize_keeps_different_params_apart():
    rows = summarize([rec(params={"procs": 100, "touch": 0}),
                      rec(params={"procs": 100, "touch": 64})])
    assert len(rows) == 2
