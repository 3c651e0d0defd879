"""The runs.jsonl record schema in one place: build a record, check one, read the file.

Why one module: the driver writes records, the store reads them back and bundles validate
them from untrusted files. Each used to carry its own copy of the schema number, the keys and
the rule for a torn last line; now they share this one.

One record (schema 1) has these keys:
  schema, run_id, config, workload, params, repeat, backend, simulated, timing,
  unit, units, counts{name: int}, absent{name: why}, meminfo_before{k: kB},
  meminfo_after{k: kB}, vmstat_delta{k: int}, report{...}, guest_elapsed_ns,
  probed_elapsed_ns, probe_overhead, host{...}, recorded_at
and optionally console_events[{kind, text}], extrapolated[why] (a simulated repeat
outside the sim model's fitted range), and from the ebpf backend ebpf{jit_enable, jited},
stacks{probe, lost, folded{"outer;...;probed": hits}} and latency{function, unit, lost,
log2_hist{slot: count}}. Counts are raw totals over the repeat; divide by
``units`` for per-unit figures. guest_elapsed_ns comes from a run of the same workload with the
probes detached (ftrace backend): probes cost time, and more of it where they fire more.
probed_elapsed_ns is the counted run's own time; probe_overhead = probed / clean.

The torn-line rule: records are appended one line at a time, so a crash mid-append can leave
the last line incomplete. That line is ignored; a bad line anywhere else is corruption.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from .tracers import Measurement

__all__ = ["SCHEMA", "REQUIRED_KEYS", "build_record", "record_problem", "read_jsonl"]

SCHEMA = 1

#: Keys every record must have for the lab to read it (checked on untrusted input).
REQUIRED_KEYS = ("config", "workload", "counts")


def build_record(
    *, run_id: str, config: str, workload: str, params: dict[str, int], repeat: int,
    backend: str, simulated: bool, timing: str, unit: str, units: int,
    absent: dict[str, str], meas: Measurement,
) -> dict[str, Any]:
    """One repeat's record, as appended to runs.jsonl."""
    rec: dict[str, Any] = {
        "schema": SCHEMA,
        "run_id": run_id,
        "config": config,
        "workload": workload,
        "params": params,
        "repeat": repeat,
        "backend": backend,
        "simulated": simulated,
        "timing": timing,
        "unit": unit,
        "units": units,
        "counts": meas.counts,
        "absent": absent,
        "meminfo_before": meas.meminfo_before,
        "meminfo_after": meas.meminfo_after,
        "vmstat_delta": meas.vmstat_delta,
        "report": meas.report,
        "guest_elapsed_ns": meas.guest_elapsed_ns,
        "probed_elapsed_ns": meas.extra.get("probed_elapsed_ns"),
        "probe_overhead": meas.extra.get("probe_overhead"),
        "host": meas.extra.get("host", {}),
        "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    # The cost-model plugin's raw counts for this repeat's windows (lab/costmodel): stored
    # raw, so any machine model can price them later without re-running.
    if meas.extra.get("costmodel"):
        rec["costmodel"] = meas.extra["costmodel"]
    # A model asked outside what it was fitted on (the sim backend): why, one phrase each.
    if meas.extra.get("extrapolated"):
        rec["extrapolated"] = list(meas.extra["extrapolated"])
    # The ebpf backend: whether its programs ran JIT-compiled, and the probed run's folded
    # stacks and latency histogram when the run asked for them.
    for key in ("ebpf", "stacks", "latency"):
        if meas.extra.get(key):
            rec[key] = meas.extra[key]
    return rec


def record_problem(rec: Any, run_id: str) -> str | None:
    """Why ``rec`` is not a readable record of run ``run_id`` (a phrase following "line N"),
    or None when it is."""
    if not isinstance(rec, dict):
        return "is not a JSON object"
    schema = rec.get("schema")
    if not isinstance(schema, int) or not 1 <= schema <= SCHEMA:
        return f"has record schema {schema!r}; this lab reads 1 to {SCHEMA}"
    if rec.get("run_id") != run_id:
        return f"belongs to run {rec.get('run_id')!r}, not {run_id!r}"
    missing = [k for k in REQUIRED_KEYS if k not in rec]
    if missing or not isinstance(rec["counts"], dict):
        return f"lacks {', '.join(missing) or 'a counts object'}"
    return None


def read_jsonl(lines: list[str], corrupt: Callable[[int], Exception]) -> list[tuple[int, Any]]:
    """(line number, parsed value) for each non-blank line; a torn last line is dropped, any
    other line that is not JSON raises ``corrupt(line number)``."""
    out: list[tuple[int, Any]] = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            out.append((n, json.loads(line)))
        except json.JSONDecodeError:
            if n == len(lines):  # a crash mid-append
                break
            raise corrupt(n) from None
    return out
