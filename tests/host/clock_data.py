"""Records with cost-plugin counts for the host tests of the clocks (report, show, dashboard,
README blocks).

``real_records()`` are a real run, unedited (tests/host/data/costmodel-faultstorm/README.md):
faultstorm on highpte and lowpte, 3 repeats, counted with the skylake geometry.

``derived_records()`` are DERIVED from them, not measured: the lab has no three-configuration
run with cost counts yet, and the gap needs three. highpte and lowpte are relabelled
built-highpte and built-lowpte; "ukva" is made, repeat by repeat, as lowpte plus a quarter of
the highpte − lowpte difference in every count, cost-plugin count and guest time (so it
recovers about 75 % of the gap in every clock); and the whole set is repeated as a second
workload ("forkstorm", units halved, so twice the per-unit figures and the same shares).
Tests must compare the report with figures computed by hand from these records, never with
the 75 %.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from lab.results import RunDir, new_run

DATA = Path(__file__).parent / "data" / "costmodel-faultstorm"
GAP = ("built-highpte", "built-lowpte")
#: The share of the highpte − lowpte difference the derived "ukva" keeps.
KEEP = 0.25


def real_records() -> list[dict[str, Any]]:
    return [json.loads(line) for line in (DATA / "runs.jsonl").read_text().splitlines()]


def _mix(hi: Any, lo: Any) -> Any:
    if isinstance(hi, bool) or not isinstance(hi, int | float) or not isinstance(lo, int | float):
        return lo
    return lo + round(KEEP * (hi - lo))


def _mix_dict(hi: dict[str, Any], lo: dict[str, Any]) -> dict[str, Any]:
    return {k: _mix(hi.get(k), v) for k, v in lo.items()}


def derived_records(run_id: str = "derived") -> list[dict[str, Any]]:
    """DERIVED (see the module's docstring): built-highpte, built-lowpte and ukva on two
    workloads, three repeats each, every record with cost-plugin counts."""
    real = real_records()
    by_cfg = {c: sorted((r for r in real if r["config"] == c), key=lambda r: r["repeat"])
              for c in ("highpte", "lowpte")}
    out = []
    for hi, lo in zip(by_cfg["highpte"], by_cfg["lowpte"], strict=True):
        ukva = copy.deepcopy(lo)
        ukva.update(config="ukva", counts=_mix_dict(hi["counts"], lo["counts"]),
                    guest_elapsed_ns=_mix(hi["guest_elapsed_ns"], lo["guest_elapsed_ns"]))
        ukva["costmodel"]["counts"] = _mix_dict(hi["costmodel"]["counts"],
                                                lo["costmodel"]["counts"])
        for rec, cfg in ((hi, GAP[0]), (lo, GAP[1]), (ukva, "ukva")):
            out.append({**copy.deepcopy(rec), "config": cfg, "run_id": run_id})
    forks = [{**copy.deepcopy(r), "workload": "forkstorm", "unit": "fork",
              "units": r["units"] // 2} for r in out]
    return out + forks


def derived_run(root: Path, *, costs: bool = True) -> RunDir:
    """A stored study-like run of :func:`derived_records`, with the plan's gap; ``costs``
    False strips the cost-plugin counts (a run traced without a cost model)."""
    names = [GAP[0], GAP[1], "ukva"]
    run = new_run("study", {"configs": names, "config_names": names, "backend": "ftrace",
                            "timing": "icount", "kind": "study", "plan_name": "derived",
                            "gap": list(GAP)}, root=root)
    for r in derived_records(run.run_id):
        if not costs:
            r.pop("costmodel", None)
        run.append_record(r)
    return run
